"""pix2pix's PatchGAN discriminator (70x70 receptive field with 3 layers).

Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks", CVPR 2017.
"""
import torch.nn as nn

from ext.archs.pix2pix_unet_arch import Pix2PixUNetGenerator, norm_layer
from ext.registry import register


def patchgan_receptive_field(n_layers):
    """Receptive field in pixels of :class:`PatchGANDiscriminator` with ``n_layers`` (3 -> 70)."""
    field = 1
    strides = [1, 1] + [2] * n_layers  # from the output back: the output conv, the stride-1 Ck, the strided convs
    for stride in strides:
        field = (field - 1) * stride + 4
    return field


@register()
class PatchGANDiscriminator(nn.Module):
    """PatchGAN: C64-C128-C256-C512 with 4x4 convolutions (stride 2, 2, 2, 1), LeakyReLU 0.2, norm
    except on the first block, then a 1-channel 4x4 convolution: one real/fake logit per
    overlapping 70x70 patch (``n_layers`` = 3). Output: N x 1 x ~H/8 x ~W/8 logits (no sigmoid; use
    BasicSR's ``GANLoss`` with ``gan_type: vanilla`` or ``lsgan``).

    For conditional training (pix2pix's cGAN) the input is the generator's input concatenated with
    the real or generated image: ``in_channels`` = 4 (masked image + mask) + 3.

    Args:
        in_channels (int): 7 (conditional) or 3.
        num_feat (int): 64.
        n_layers (int): strided layers (3: 70x70 patches; 1: 16x16 PixelGAN-like; 5: 286x286).
        max_mult (int): 8 (512 channels).
        norm (str): 'batch' (pix2pix), 'instance' or 'none'.
    """

    def __init__(self, in_channels=7, num_feat=64, n_layers=3, max_mult=8, norm='batch'):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f'PatchGANDiscriminator: n_layers must be >= 1, got {n_layers}')
        norm_layer(norm, 1)
        bias = norm != 'batch'
        layers = [nn.Conv2d(in_channels, num_feat, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        width = num_feat
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1
            out = num_feat * min(2**i, max_mult)
            layers += [nn.Conv2d(width, out, 4, stride, 1, bias=bias), norm_layer(norm, out),
                       nn.LeakyReLU(0.2, inplace=True)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.body = nn.Sequential(*layers)
        self.receptive_field = patchgan_receptive_field(n_layers)
        self.apply(Pix2PixUNetGenerator._init_weights)

    def forward(self, x):
        return self.body(x)
