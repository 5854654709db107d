"""A VGG19-based patch discriminator, the VGG-encoder inpainting GAN's (docs/methods/pix2pix_inpaint.md)."""
import torch.nn as nn

from ext.archs.vgg_unet_arch import VGG19_BLOCK_WIDTHS, VGG19Encoder
from ext.registry import register


@register()
class VGGPatchDiscriminator(nn.Module):
    """Discriminator built on VGG19's first ``num_blocks`` conv blocks (ImageNet-initialised from a
    local file, and trained), followed by a patch head: 3x3 conv - LeakyReLU 0.2 - 3x3 conv to one
    logit per location. Output N x 1 x H/2^(num_blocks-1) x W/2^(num_blocks-1) logits, any input
    size (BasicSR's ``VGGStyleDiscriminator`` only takes 128 or 256 pixels).

    Conditional input (pix2pix's cGAN): the image first (3 channels, what the VGG sees), then the
    condition (masked image + mask), which enters through a zero-initialised convolution added to
    conv1_1 (see :class:`~ext.archs.vgg_unet_arch.VGG19Encoder`).

    Args:
        in_channels (int): 3 + condition channels (7 conditional, 3 unconditional).
        num_blocks (int): VGG19 blocks (4: features at 1/8 scale, relu4_4).
        head_feat (int): 256.
        load_pretrained_vgg (bool), vgg_weights_path (str | None): as :class:`VGGUNetGenerator`.
    """

    def __init__(self, in_channels=7, num_blocks=4, head_feat=256, load_pretrained_vgg=True, vgg_weights_path=None):
        super().__init__()
        if in_channels < 3:
            raise ValueError(f'VGGPatchDiscriminator: in_channels must be >= 3 (image first), got {in_channels}')
        self.features = VGG19Encoder(num_blocks, in_channels - 3, load_pretrained_vgg, vgg_weights_path)
        self.head = nn.Sequential(nn.Conv2d(VGG19_BLOCK_WIDTHS[num_blocks - 1], head_feat, 3, 1, 1),
                                  nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(head_feat, 1, 3, 1, 1))

    def forward(self, x):
        return self.head(self.features(x)[-1])
