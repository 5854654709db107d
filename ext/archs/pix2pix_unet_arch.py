"""pix2pix's U-Net generator for inpainting (masked image + mask in, image out).

Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks", CVPR 2017.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ext.registry import register


def norm_layer(kind, channels):
    """'batch' (pix2pix), 'instance' or 'none'."""
    if kind == 'batch':
        return nn.BatchNorm2d(channels)
    if kind == 'instance':
        return nn.InstanceNorm2d(channels, affine=True)
    if kind in ('none', None):
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'instance' or 'none', got {kind!r}")


def depth_for_size(image_size):
    """Downsamplings that take ``image_size`` to 1x1 (pix2pix: 8 for 256, 9 for 512)."""
    depth = math.log2(image_size)
    if image_size < 8 or depth != int(depth):
        raise ValueError(f'image_size must be a power of two >= 8, got {image_size!r}')
    return int(depth)


def images_to_signed(x, image_channels):
    """The first ``image_channels`` channels from [0, 1] to pix2pix's [-1, 1]; the mask stays 0/1."""
    return torch.cat([x[:, :image_channels] * 2 - 1, x[:, image_channels:]], dim=1)


def pad_to_multiple(x, multiple):
    """Reflect-pad the bottom/right of ``x`` to a multiple of ``multiple``; returns (padded, (h, w))."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h or pad_w:
        mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (h, w)


class DownBlock(nn.Sequential):
    """Ck of the encoder: [LeakyReLU 0.2] -> conv 4x4 stride 2 -> [norm] (pix2pix's order)."""

    def __init__(self, in_ch, out_ch, norm, activation=True, use_norm=True):
        layers = [nn.LeakyReLU(0.2, inplace=False)] if activation else []
        layers += [nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=not use_norm or norm != 'batch')]
        if use_norm:
            layers.append(norm_layer(norm, out_ch))
        super().__init__(*layers)


class UpBlock(nn.Sequential):
    """CDk / Ck of the decoder: ReLU -> transposed conv 4x4 stride 2 -> norm -> [dropout]."""

    def __init__(self, in_ch, out_ch, norm, dropout=0.0):
        layers = [nn.ReLU(inplace=False), nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=norm != 'batch'),
                  norm_layer(norm, out_ch)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


@register()
class Pix2PixUNetGenerator(nn.Module):
    """pix2pix's U-Net generator: encoder C64-C128-C256-C512-C512-..., mirrored decoder with skip
    connections, dropout in the first decoder blocks, tanh output (Isola et al., CVPR 2017).

    For inpainting the input is the masked image and the mask (``in_channels`` = 3 + 1). Images
    enter and leave in [0, 1] like every BasicSR network; inside, the image channels are mapped to
    pix2pix's [-1, 1] and the output is ``(tanh + 1) / 2``, so the network is pix2pix's own.

    Args:
        in_channels (int): image channels + mask channels (4).
        out_channels (int): 3.
        image_size (int): the training size; the depth is ``log2(image_size)`` downsamplings, to a
            1x1 bottleneck (8 for 256, 9 for 512). Other sizes run too (reflect-padded to a multiple
            of ``2**depth``).
        num_downs (int | None): the depth, instead of ``image_size``.
        num_feat (int): channels of the first block (64); doubling up to ``num_feat * max_mult``.
        max_mult (int): 8 (512 channels).
        norm (str): 'batch' (pix2pix), 'instance' or 'none'. Never on the first encoder block and on
            the 1x1 bottleneck.
        dropout (float): 0.5 in the first ``dropout_blocks`` (3) decoder blocks after the innermost one
            that have the full width (pix2pix's CD512-CD512-CD512).
        image_channels (int): how many input channels are image (mapped to [-1, 1]); the rest (the
            mask) enter as they are.
        residual (bool): False (pix2pix): the output is ``(tanh + 1) / 2``. True: the output is the
            input image plus the tanh (a correction in (-1, 1) on the [0, 1] scale, not clamped); the
            last layer starts at zero, so the untrained network returns its input and learns what to
            change. Meant for an input whose hole is already filled smoothly (``MaskedImageDataset``
            ``hole_fill: smooth``). Needs ``image_channels == out_channels``.
        residual_scale (float): with ``residual``, the correction is ``residual_scale * tanh`` (1).
        contrast_norm (bool): with ``residual`` only. False: the image enters on pix2pix's [-1, 1] scale.
            True: each image is standardised by the mean and the standard deviation of its *known*
            pixels (mask channel 0; over all image channels, so colours keep their relations) and the
            correction is multiplied by that standard deviation (floored at ``1e-3``), i.e. measured in
            the image's own contrast. The generator is then equivariant to a gain and an offset of the
            intensities, like the push-pull fill it corrects: a nearly flat image gets a nearly zero
            correction, whatever the contrast of the training photos.
    """

    def __init__(self, in_channels=4, out_channels=3, image_size=256, num_downs=None, num_feat=64, max_mult=8,
                 norm='batch', dropout=0.5, dropout_blocks=3, image_channels=3, residual=False, residual_scale=1.0,
                 contrast_norm=False):
        super().__init__()
        if not isinstance(residual, bool):
            raise ValueError(f'Pix2PixUNetGenerator: residual must be true or false, got {residual!r}')
        if not isinstance(contrast_norm, bool):
            raise ValueError(f'Pix2PixUNetGenerator: contrast_norm must be true or false, got {contrast_norm!r}')
        if contrast_norm and not residual:
            raise ValueError('Pix2PixUNetGenerator: contrast_norm: true scales a correction, so it needs '
                             'residual: true')
        if (isinstance(residual_scale, bool) or not isinstance(residual_scale, (int, float))
                or not 0 < residual_scale < float('inf')):
            raise ValueError(f'Pix2PixUNetGenerator: residual_scale must be a number > 0, got {residual_scale!r}')
        self.residual_scale, self.contrast_norm = float(residual_scale), contrast_norm
        if residual and image_channels != out_channels:
            raise ValueError(f'Pix2PixUNetGenerator: residual: true adds the output to the input image, so '
                             f'image_channels ({image_channels}) must equal out_channels ({out_channels})')
        self.residual = residual
        self.num_downs = int(num_downs) if num_downs is not None else depth_for_size(image_size)
        if self.num_downs < 2:
            raise ValueError(f'Pix2PixUNetGenerator: num_downs must be >= 2, got {self.num_downs}')
        if not 0 <= image_channels <= in_channels:
            raise ValueError(f'Pix2PixUNetGenerator: image_channels must be in [0, in_channels], got {image_channels}')
        norm_layer(norm, 1)  # checks the name
        self.image_channels = image_channels
        widths = [num_feat * min(2**i, max_mult) for i in range(self.num_downs)]
        self.down = nn.ModuleList()
        previous = in_channels
        for i, width in enumerate(widths):
            first, innermost = i == 0, i == self.num_downs - 1
            self.down.append(DownBlock(previous, width, norm, activation=not first, use_norm=not (first or innermost)))
            previous = width
        # decoder, innermost first: input = previous decoder output (+ the mirrored skip)
        # dropout: the widest decoder blocks after the innermost one, at most dropout_blocks (pix2pix's CD512 x 3)
        self.up = nn.ModuleList()
        with_dropout = 0
        for j in range(self.num_downs - 1):
            level = self.num_downs - 2 - j  # the encoder level this block's output is concatenated with
            in_ch = widths[-1] if j == 0 else 2 * widths[level + 1]
            drop = j >= 1 and with_dropout < dropout_blocks and widths[level] == widths[-1] and dropout > 0
            with_dropout += drop
            self.up.append(UpBlock(in_ch, widths[level], norm, dropout if drop else 0.0))
        self.last = nn.Sequential(nn.ReLU(inplace=False), nn.ConvTranspose2d(2 * widths[0], out_channels, 4, 2, 1),
                                  nn.Tanh())
        self.apply(self._init_weights)
        if residual:  # no correction before training: the network starts as its (pre-filled) input
            nn.init.zeros_(self.last[1].weight)
            nn.init.zeros_(self.last[1].bias)

    @staticmethod
    def _init_weights(module):
        # pix2pix: N(0, 0.02) convolutions, N(1, 0.02) norm scales, zero biases
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)) and module.weight is not None:
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)

    def known_statistics(self, x):
        """Per image: the mean and standard deviation (floored at 1e-3) of the known pixels (mask
        channel 0) over all image channels, each N x 1 x 1 x 1; without a mask channel, of all pixels."""
        image = x[:, :self.image_channels]
        if x.shape[1] > self.image_channels:
            weight = (1 - x[:, self.image_channels:self.image_channels + 1]).clamp(0, 1)
        else:
            weight = torch.ones_like(image[:, :1])
        total = (weight.sum(dim=(1, 2, 3), keepdim=True) * image.shape[1]).clamp_min(1e-8)
        mean = (image * weight).sum(dim=(1, 2, 3), keepdim=True) / total
        variance = ((image - mean)**2 * weight).sum(dim=(1, 2, 3), keepdim=True) / total
        return mean, variance.clamp_min(0).sqrt().clamp_min(1e-3)

    def forward(self, x):
        image = x[:, :self.image_channels]
        if self.contrast_norm:
            mean, std = self.known_statistics(x)
            x = torch.cat([(image - mean) / std, x[:, self.image_channels:]], dim=1)
        else:
            x = images_to_signed(x, self.image_channels)
        x, (h, w) = pad_to_multiple(x, 2**self.num_downs)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            x = torch.cat([block(x), skips.pop()], dim=1)
        out = self.last(x)[..., :h, :w]
        if self.residual:
            out = out * self.residual_scale
            return image + (out * std if self.contrast_norm else out)
        return (out + 1) / 2
