"""A-ESRGAN's multi-scale discriminator: attention U-Net discriminators on an image pyramid."""
from torch import nn

from ext.archs.aesrgan_unet_discriminator_arch import AttentionUNetDiscriminatorSN, check_input_size
from ext.registry import register


@register(aliases=('multiscale', ))
class MultiScaleAttentionUNetDiscriminator(nn.Module):
    """``num_D`` attention U-Net discriminators, each on a 2x average-pooled copy of the previous input.

    Paper: Wei et al., "A-ESRGAN: Training Real-World Blind Super-Resolution with Attention U-Net
    Discriminators", arXiv:2112.10046 (the "Multi" model). Also registered under A-ESRGAN's name
    ``multiscale``; submodules are upstream's (``layer0``.. ``layer{num_D-1}``, ``downsample``), so
    ``A_ESRGAN_Multi_D.pth`` loads with ``strict=True``.

    ``forward`` returns a list of logit maps, finest first, in upstream's order: element ``i`` comes
    from ``layer{num_D-1-i}`` applied to the input average-pooled ``i`` times (so with ``num_D=2``,
    ``layer1`` sees full resolution and ``layer0`` half resolution).

    Option keys (``network_d``):
        num_in_ch (int): Input channels.
        num_feat (int): Base channels of every scale's discriminator (64 upstream).
        num_D (int): Number of scales (2 upstream).

    Input height and width must be multiples of ``8 * 2 ** (num_D - 1)`` (:attr:`required_multiple`).
    """

    def __init__(self, num_in_ch, num_feat=64, num_D=2):
        super().__init__()
        if not isinstance(num_D, int) or num_D < 1:
            raise ValueError(f'num_D must be a positive integer, got {num_D!r}')
        self.num_D = num_D
        for index in range(num_D):
            self.add_module(f'layer{index}', AttentionUNetDiscriminatorSN(num_in_ch, num_feat=num_feat))
        self.downsample = nn.AvgPool2d(4, stride=2, padding=[1, 1])

    @property
    def required_multiple(self):
        return AttentionUNetDiscriminatorSN.required_multiple * 2**(self.num_D - 1)

    def forward(self, x):
        check_input_size(type(self).__name__, x, self.required_multiple)
        outputs = []
        for scale in range(self.num_D):
            if scale:
                x = self.downsample(x)
            outputs.append(getattr(self, f'layer{self.num_D - 1 - scale}')(x))
        return outputs
