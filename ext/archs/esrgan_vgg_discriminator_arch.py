"""The VGG-style discriminator of ESRGAN at any patch size, with configurable widths (docs/methods/esrgan.md)."""
import math

from torch import nn
from torch.nn.utils import spectral_norm as apply_spectral_norm

from ext.registry import register

SEED_BLOCK_CHANNELS = (64, 64, 128, 128, 256, 256, 512, 512)


@register()
class ESRGANVGGDiscriminator(nn.Module):
    """VGG-style discriminator of SRGAN/ESRGAN (Wang et al., ESRGAN, ECCV-W 2018) for any patch size.

    BasicSR's ``VGGStyleDiscriminator`` is fixed to 128 or 256 inputs and to its widths. This one builds
    ``conv -> [norm] -> LeakyReLU(0.2)`` layers from ``block_channels``: a layer whose width equals the
    previous layer's has stride 2, so the default widths halve the patch four times.
    The features are flattened and classified by fully connected layers ``fc_features`` -> 1 (one
    un-squashed logit per image, as the relativistic average GAN loss of ``ESRGANModel`` expects).

    Option keys (``network_d``):
        num_in_ch (int): input channels. Default 3.
        input_size (int): the square patch size it judges (the HR ``gt_size``); must be divisible by
            2 ** (number of stride-2 layers), e.g. 64, 96, 128, 192, 256 with the default widths.
        block_channels (list[int]): output width of each conv. Default
            [64, 64, 128, 128, 256, 256, 512, 512] (ESRGAN's).
        fc_features (list[int]): hidden fully connected sizes. Default [100].
        norm (str): 'batch' (ESRGAN) or 'none'. Default 'batch'; the first conv is never normalised.
        spectral_norm (bool): wrap every conv and linear layer in spectral normalisation. Default False.
        down_kernel_size (int): kernel of the stride-2 convs (3 as the reproduced ESRGAN runs; 4 as BasicSR's). Default 3.
    """

    def __init__(self, num_in_ch=3, input_size=128, block_channels=SEED_BLOCK_CHANNELS, fc_features=(100,),
                 norm='batch', spectral_norm=False, down_kernel_size=3):
        super().__init__()
        block_channels, fc_features = [int(c) for c in block_channels], [int(f) for f in fc_features]
        if not block_channels:
            raise ValueError('ESRGANVGGDiscriminator: block_channels must list at least one width')
        if norm not in ('batch', 'none'):
            raise ValueError(f"ESRGANVGGDiscriminator: norm must be 'batch' or 'none', got {norm!r}")
        if down_kernel_size not in (3, 4):
            raise ValueError(f'ESRGANVGGDiscriminator: down_kernel_size must be 3 or 4, got {down_kernel_size}')
        wrap = apply_spectral_norm if spectral_norm else (lambda layer: layer)
        strides = [1] + [2 if now == before else 1 for before, now in zip(block_channels, block_channels[1:])]
        self.downscale = 2 ** sum(s == 2 for s in strides)
        if input_size % self.downscale:
            fitting = [str(size) for size in (64, 96, 128, 192, 256) if size % self.downscale == 0]
            raise ValueError(f'ESRGANVGGDiscriminator: input_size {input_size} is not divisible by {self.downscale} '
                             f'(block_channels {block_channels} halve the patch {int(math.log2(self.downscale))} '
                             f'times); use a multiple of {self.downscale}'
                             + (f" such as {', '.join(fitting)}" if fitting else ''))
        self.input_size = int(input_size)

        layers, in_ch = [], num_in_ch
        for index, (out_ch, stride) in enumerate(zip(block_channels, strides)):
            kernel = down_kernel_size if stride == 2 else 3
            use_norm = norm == 'batch' and index > 0
            layers.append(wrap(nn.Conv2d(in_ch, out_ch, kernel, stride, 1, bias=not use_norm)))
            if use_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)

        side = self.input_size // self.downscale
        classifier, width = [nn.Flatten()], in_ch * side * side
        for hidden in fc_features:
            classifier += [wrap(nn.Linear(width, hidden)), nn.LeakyReLU(0.2, inplace=True)]
            width = hidden
        classifier.append(wrap(nn.Linear(width, 1)))
        self.classifier = nn.Sequential(*classifier)

    def forward(self, x):
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f'ESRGANVGGDiscriminator was built for {self.input_size}x{self.input_size} patches '
                             f'(network_d.input_size), got {tuple(x.shape[-2:])}; set input_size to the HR '
                             f'gt_size of the training data')
        return self.classifier(self.features(x))
