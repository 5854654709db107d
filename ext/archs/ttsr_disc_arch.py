"""TTSR discriminator (VGG-style, fixed input size).

Yang et al., "Learning Texture Transformer Network for Image Super-Resolution", CVPR 2020.
"""
import torch.nn as nn

from ext.registry import register


@register()
class TTSRDiscriminator(nn.Module):
    """Ten 3x3 convs (32..512 channels, every second one stride 2) and two linear layers.

    Input in [0, 1], ``in_size`` x ``in_size`` (160 for CUFED); it is mapped to [-1, 1] inside, as
    upstream's discriminator sees it, so converted weights behave the same. Keys follow MMagic
    (``body.{0,2,..,18}``, ``last.{0,2}``).

    Args:
        in_channels (int): image channels.
        in_size (int): input height and width, a multiple of 32.
    """

    def __init__(self, in_channels=3, in_size=160):
        super().__init__()
        if in_size % 32:
            raise ValueError(f'TTSRDiscriminator: in_size must be a multiple of 32, got {in_size}')
        self.in_size = in_size
        layers, channels = [], in_channels
        for index, width in enumerate((32, 32, 64, 64, 128, 128, 256, 256, 512, 512)):
            layers += [nn.Conv2d(channels, width, 3, 2 if index % 2 else 1, 1), nn.LeakyReLU(0.2)]
            channels = width
        self.body = nn.Sequential(*layers)
        self.last = nn.Sequential(nn.Linear((in_size // 32)**2 * 512, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 1))

    def forward(self, x):
        if x.shape[-2:] != (self.in_size, self.in_size):
            raise ValueError(f'TTSRDiscriminator: expected {self.in_size}x{self.in_size} inputs, got '
                             f'{tuple(x.shape[-2:])}; set network_d.in_size to the GT size')
        return self.last(self.body(x * 2 - 1).flatten(1))
