"""A U-Net generator whose encoder is ImageNet VGG19, for inpainting (docs/methods/pix2pix_inpaint.md)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ext.archs.pix2pix_unet_arch import images_to_signed, norm_layer, pad_to_multiple
from ext.archs.ttsr_lte_arch import ImageNetNormalize, load_vgg19_weights, vgg19_features
from ext.registry import register

# torchvision VGG19 ``features`` slices of the five blocks, each ending at its last ReLU (relu1_2, relu2_2,
# relu3_4, relu4_4, relu5_4); the max-pool between blocks is index 4, 9, 18, 27, 36.
VGG19_BLOCKS = ((0, 4), (5, 9), (10, 18), (19, 27), (28, 36))
VGG19_BLOCK_WIDTHS = (64, 128, 256, 512, 512)


class VGG19Encoder(nn.Module):
    """VGG19's first ``num_blocks`` conv blocks behind ImageNet normalisation; returns each block's
    last ReLU output (relu1_2, relu2_2, relu3_4, ...), the later ones after 2x2 max-pooling.

    Extra input channels (a mask, a condition) go through a zero-initialised 3x3 convolution added
    to conv1_1's output, so at the start the encoder computes exactly the pretrained VGG features of
    the image and the extra channels are learnt; that convolution is not part of
    :meth:`vgg_parameters` (it is never frozen).

    Input: N x (3 + extra_channels) x H x W, the image in [0, 1] first.
    """

    def __init__(self, num_blocks=5, extra_channels=1, load_pretrained_vgg=True, vgg_weights_path=None):
        super().__init__()
        if not 1 <= num_blocks <= len(VGG19_BLOCKS):
            raise ValueError(f'VGG19 encoder: num_blocks must be in [1, {len(VGG19_BLOCKS)}], got {num_blocks}')
        self.num_blocks = num_blocks
        features = vgg19_features(VGG19_BLOCKS[num_blocks - 1][1])
        if load_pretrained_vgg:
            from ext.utils.pretrained import find_vgg_weights
            load_vgg19_weights(features, vgg_weights_path or find_vgg_weights('vgg19'))
        self.normalize = ImageNetNormalize()
        self.vgg = features  # torchvision's indices, so its weights load one to one
        self.extra = None
        if extra_channels:
            self.extra = nn.Conv2d(extra_channels, VGG19_BLOCK_WIDTHS[0], 3, 1, 1)
            nn.init.zeros_(self.extra.weight)
            nn.init.zeros_(self.extra.bias)

    def vgg_parameters(self):
        return self.vgg.parameters()

    def forward(self, x):
        image, extra = x[:, :3], x[:, 3:]
        h = self.vgg[0](self.normalize(image))  # conv1_1
        if self.extra is not None:
            h = h + self.extra(extra)
        outputs = []
        start = 1
        for block, (_, end) in enumerate(VGG19_BLOCKS[:self.num_blocks]):
            if block > 0:
                h = F.max_pool2d(h, 2)
            for index in range(start, end):
                h = self.vgg[index](h)
            outputs.append(h)
            start = end + 1
        return outputs


class ConvNormReLU(nn.Sequential):

    def __init__(self, in_ch, out_ch, norm):
        super().__init__(nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=norm != 'batch'), norm_layer(norm, out_ch),
                         nn.ReLU(inplace=True))


@register()
class VGGUNetGenerator(nn.Module):
    """U-Net generator whose encoder is ImageNet VGG19 (the second inpainting generator): the skip
    connections are relu1_2, relu2_2, relu3_4, relu4_4 and relu5_4; below the last block a learnt
    bottleneck at 1/32 scale; each decoder stage upsamples x2 (bilinear), concatenates the skip and
    applies two 3x3 conv-norm-ReLU layers; the last stage also sees the masked input itself (the
    colours VGG's normalised features blur: without it a VGG-encoder generator gave uniform colours).
    Images in [0, 1]; the output is ``(tanh + 1) / 2``.

    The mask (the channels after the first 3) enters through a zero-initialised convolution added
    to conv1_1 (see :class:`VGG19Encoder`), so the pretrained encoder starts exact. Training can
    freeze the VGG layers (``encoder_parameters``; ``Pix2PixInpaintModel``'s
    ``freeze_encoder_iters``) while the other layers learn, then unfreeze them.

    Args:
        in_channels (int): 3 image channels + mask channels (4).
        out_channels (int): 3.
        encoder_blocks (int): VGG19 blocks used (5; fewer for small images or tiny tests).
        decoder_feat (sequence | None): decoder widths, deepest first (default: the VGG widths).
        bottleneck_feat (int): 512.
        norm (str): 'batch', 'instance' or 'none' (decoder and bottleneck).
        load_pretrained_vgg (bool): initialise the encoder from torchvision's ImageNet VGG19 found
            on disk (:func:`ext.utils.pretrained.find_vgg_weights`; never downloaded). False for
            tests or when a trained checkpoint is loaded afterwards.
        vgg_weights_path (str | None): explicit VGG19 file instead of the lookup.
        frozen_encoder (bool): start with the VGG layers frozen (requires_grad False).
    """

    def __init__(self, in_channels=4, out_channels=3, encoder_blocks=5, decoder_feat=None, bottleneck_feat=512,
                 norm='batch', load_pretrained_vgg=True, vgg_weights_path=None, frozen_encoder=False):
        super().__init__()
        if in_channels < 3:
            raise ValueError(f'VGGUNetGenerator: in_channels must be >= 3 (image first), got {in_channels}')
        self.in_channels = in_channels
        self.encoder = VGG19Encoder(encoder_blocks, in_channels - 3, load_pretrained_vgg, vgg_weights_path)
        skips = list(VGG19_BLOCK_WIDTHS[:encoder_blocks])[::-1]  # deepest first
        widths = list(decoder_feat) if decoder_feat is not None else skips
        if len(widths) != encoder_blocks:
            raise ValueError(f'VGGUNetGenerator: decoder_feat needs {encoder_blocks} widths (one per VGG block), '
                             f'got {widths}')
        self.bottleneck = nn.Sequential(ConvNormReLU(skips[0], bottleneck_feat, norm),
                                        ConvNormReLU(bottleneck_feat, bottleneck_feat, norm))
        self.up = nn.ModuleList()
        previous = bottleneck_feat
        for level, (skip, width) in enumerate(zip(skips, widths)):
            extra = in_channels if level == encoder_blocks - 1 else 0  # the full-resolution stage sees the input
            self.up.append(nn.Sequential(ConvNormReLU(previous + skip + extra, width, norm),
                                         ConvNormReLU(width, width, norm)))
            previous = width
        self.last = nn.Sequential(nn.Conv2d(previous, out_channels, 3, 1, 1), nn.Tanh())
        self.set_encoder_trainable(not frozen_encoder)

    def encoder_parameters(self):
        """The pretrained VGG layers (what ``freeze_encoder_iters`` freezes)."""
        return self.encoder.vgg_parameters()

    def set_encoder_trainable(self, trainable):
        for param in self.encoder_parameters():
            param.requires_grad = trainable

    def forward(self, x):
        multiple = 2**self.encoder.num_blocks
        x, (h, w) = pad_to_multiple(x, multiple)
        skips = self.encoder(x)
        y = self.bottleneck(F.max_pool2d(skips[-1], 2))
        for level, (block, skip) in enumerate(zip(self.up, reversed(skips))):
            y = F.interpolate(y, size=skip.shape[-2:], mode='bilinear', align_corners=False)
            parts = [y, skip]
            if level == len(self.up) - 1:
                parts.append(images_to_signed(x, 3))
            y = block(torch.cat(parts, dim=1))
        return (self.last(y)[..., :h, :w] + 1) / 2
