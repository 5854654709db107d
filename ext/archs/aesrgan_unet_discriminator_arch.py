"""A-ESRGAN's attention U-Net discriminator with spectral normalisation (one scale)."""
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from ext.registry import register


def _lrelu(x):
    return F.leaky_relu(x, negative_slope=0.2)


def check_input_size(module_name, x, multiple):
    """Raise a ValueError naming ``multiple`` when ``x``'s height or width is not a multiple of it."""
    if x.dim() != 4:
        raise ValueError(f'{module_name} expects a (batch, channels, height, width) tensor, got shape '
                         f'{tuple(x.shape)}')
    height, width = x.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(f'{module_name} needs an input height and width that are multiples of {multiple}, got '
                         f'{height}x{width}: crop or pad the input (e.g. gt_size a multiple of {multiple}).')


class AttentionGate(nn.Module):
    """Additive attention gate (Attention U-Net) on a skip feature ``x`` gated by a coarse feature ``g``.

    Submodule names (``W``, ``theta``, ``phi``, ``psi``) are A-ESRGAN's ``add_attn`` ones, so its
    checkpoints load unchanged.
    """

    def __init__(self, x_channels, g_channels=256):
        super().__init__()
        self.W = nn.Sequential(nn.Conv2d(x_channels, x_channels, 1), nn.BatchNorm2d(x_channels))
        self.theta = nn.Conv2d(x_channels, x_channels, kernel_size=2, stride=2, bias=False)
        self.phi = nn.Conv2d(g_channels, x_channels, kernel_size=1)
        self.psi = nn.Conv2d(x_channels, 1, kernel_size=1)

    def forward(self, x, g):
        theta_x = self.theta(x)
        phi_g = F.interpolate(self.phi(g), size=theta_x.shape[2:], mode='bilinear', align_corners=False)
        attention = torch.sigmoid(self.psi(F.relu(theta_x + phi_g)))
        attention = F.interpolate(attention, size=x.shape[2:], mode='bilinear', align_corners=False)
        return self.W(attention * x)


class UpsampleConcat(nn.Module):
    """Upsample the decoder feature x2, spectral-norm conv + LeakyReLU, concatenate after the skip feature.

    The submodule name ``convU`` is A-ESRGAN's ``unetCat`` one.
    """

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.convU = spectral_norm(nn.Conv2d(dim_in, dim_out, 3, 1, 1, bias=False))

    def forward(self, skip, decoder):
        decoder = F.interpolate(decoder, scale_factor=2, mode='bilinear', align_corners=False)
        return torch.cat([skip, _lrelu(self.convU(decoder))], dim=1)


@register(aliases=('UNetDiscriminatorAesrgan', ))
class AttentionUNetDiscriminatorSN(nn.Module):
    """Attention U-Net discriminator with spectral normalisation, from A-ESRGAN.

    Paper: Wei et al., "A-ESRGAN: Training Real-World Blind Super-Resolution with Attention U-Net
    Discriminators", arXiv:2112.10046. Three 3x3 stride-2 encoder stages, attention-gated skip
    connections, a decoder back to full resolution; the output is a one-channel per-pixel logit map
    of the input's size. Also registered as A-ESRGAN's ``UNetDiscriminatorAesrgan``; its state-dict
    keys are the upstream ones (``conv0``..``conv9``, ``gating``, ``attn_1..3``, ``cat_1..3``).

    Option keys (``network_d``):
        num_in_ch (int): Input channels.
        num_feat (int): Base channels (64 upstream).
        skip_connection (bool): Accepted for upstream option files; upstream ignores it and so does this
            class (the attention-gated U-Net skips are always used).

    Input height and width must be multiples of 8 (:attr:`required_multiple`).
    """

    required_multiple = 8

    def __init__(self, num_in_ch, num_feat=64, skip_connection=True):
        super().__init__()
        nf = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, nf, 3, 1, 1)
        # encoder
        self.conv1 = spectral_norm(nn.Conv2d(nf, nf * 2, 3, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(nf * 2, nf * 4, 3, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(nf * 4, nf * 8, 3, 2, 1, bias=False))
        # padding=1 on a 1x1 conv as upstream: the gate is 2 px larger and is resized in the attention gates
        self.gating = spectral_norm(nn.Conv2d(nf * 8, nf * 4, 1, 1, 1, bias=False))
        self.attn_1 = AttentionGate(nf * 4, nf * 4)
        self.attn_2 = AttentionGate(nf * 2, nf * 4)
        self.attn_3 = AttentionGate(nf, nf * 4)
        # decoder
        self.cat_1 = UpsampleConcat(nf * 8, nf * 4)
        self.cat_2 = UpsampleConcat(nf * 4, nf * 2)
        self.cat_3 = UpsampleConcat(nf * 2, nf)
        self.conv4 = spectral_norm(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def forward(self, x):
        check_input_size(type(self).__name__, x, self.required_multiple)
        x0 = _lrelu(self.conv0(x))
        x1 = _lrelu(self.conv1(x0))
        x2 = _lrelu(self.conv2(x1))
        x3 = _lrelu(self.conv3(x2))
        gate = _lrelu(self.gating(x3))

        y = _lrelu(self.conv4(self.cat_1(self.attn_1(x2, gate), x3)))
        y = _lrelu(self.conv5(self.cat_2(self.attn_2(x1, gate), y)))
        y = _lrelu(self.conv6(self.cat_3(self.attn_3(x0, gate), y)))

        y = _lrelu(self.conv7(y))
        y = _lrelu(self.conv8(y))
        return self.conv9(y)
