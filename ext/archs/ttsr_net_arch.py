"""TTSR generator: texture extractor + search/transfer + main network with cross-scale fusion.

Yang et al., "Learning Texture Transformer Network for Image Super-Resolution", CVPR 2020.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from basicsr.archs.arch_util import ResidualBlockNoBN, default_init_weights

from ext.archs.texture_search import DEFAULT_MEMORY_BUDGET_MB, SearchTransfer
from ext.archs.ttsr_lte_arch import TTSRTextureExtractor
from ext.registry import register


def conv3x3(in_channels, out_channels, stride=1):
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1)


def conv1x1(in_channels, out_channels):
    return nn.Conv2d(in_channels, out_channels, 1, 1, 0)


def upsample(x, factor):
    return F.interpolate(x, scale_factor=factor, mode='bicubic', align_corners=False)


def residual_stack(num_blocks, channels, res_scale):
    # pytorch_init=False: kaiming x 0.1, as MMagic's ResidualBlockNoBN with res_scale 1
    return nn.Sequential(*[ResidualBlockNoBN(channels, res_scale, pytorch_init=False) for _ in range(num_blocks)])


class ShallowFeatureExtractor(nn.Module):
    """relu(conv) -> residual blocks -> conv, plus the skip (upstream ``SFE``)."""

    def __init__(self, in_channels, mid_channels, num_blocks, res_scale):
        super().__init__()
        self.conv_first = conv3x3(in_channels, mid_channels)
        self.body = residual_stack(num_blocks, mid_channels, res_scale)
        self.conv_last = conv3x3(mid_channels, mid_channels)

    def forward(self, x):
        x = F.relu(self.conv_first(x))
        return x + self.conv_last(self.body(x))


class PixelShuffleUp(nn.Module):
    """conv to 4x channels then PixelShuffle(2) (upstream ``conv12 + ps12`` / ``PixelShufflePack``)."""

    def __init__(self, channels):
        super().__init__()
        self.upsample_conv = conv3x3(channels, channels * 4)
        default_init_weights(self.upsample_conv, 1)

    def forward(self, x):
        return F.pixel_shuffle(self.upsample_conv(x), 2)


class CrossScaleFusion2(nn.Module):
    """CSFI between the x1 and x2 branches."""

    def __init__(self, channels):
        super().__init__()
        self.conv1to2 = conv1x1(channels, channels)
        self.conv2to1 = conv3x3(channels, channels, stride=2)
        self.conv_merge1 = conv3x3(channels * 2, channels)
        self.conv_merge2 = conv3x3(channels * 2, channels)

    def forward(self, x1, x2):
        x12 = F.relu(self.conv1to2(upsample(x1, 2)))
        x21 = F.relu(self.conv2to1(x2))
        return (F.relu(self.conv_merge1(torch.cat((x1, x21), 1))),
                F.relu(self.conv_merge2(torch.cat((x2, x12), 1))))


class CrossScaleFusion3(nn.Module):
    """CSFI between the x1, x2 and x4 branches."""

    def __init__(self, channels):
        super().__init__()
        self.conv1to2 = conv1x1(channels, channels)
        self.conv1to4 = conv1x1(channels, channels)
        self.conv2to1 = conv3x3(channels, channels, stride=2)
        self.conv2to4 = conv1x1(channels, channels)
        self.conv4to1_1 = conv3x3(channels, channels, stride=2)
        self.conv4to1_2 = conv3x3(channels, channels, stride=2)
        self.conv4to2 = conv3x3(channels, channels, stride=2)
        self.conv_merge1 = conv3x3(channels * 3, channels)
        self.conv_merge2 = conv3x3(channels * 3, channels)
        self.conv_merge4 = conv3x3(channels * 3, channels)

    def forward(self, x1, x2, x4):
        x12 = F.relu(self.conv1to2(upsample(x1, 2)))
        x14 = F.relu(self.conv1to4(upsample(x1, 4)))
        x21 = F.relu(self.conv2to1(x2))
        x24 = F.relu(self.conv2to4(upsample(x2, 2)))
        x41 = F.relu(self.conv4to1_2(F.relu(self.conv4to1_1(x4))))
        x42 = F.relu(self.conv4to2(x4))
        return (F.relu(self.conv_merge1(torch.cat((x1, x21, x41), 1))),
                F.relu(self.conv_merge2(torch.cat((x2, x12, x42), 1))),
                F.relu(self.conv_merge4(torch.cat((x4, x14, x24), 1))))


class MergeFeatures(nn.Module):
    """Fuse the three branches at x4 and map to the image (upstream ``MergeTail``)."""

    def __init__(self, channels, out_channels):
        super().__init__()
        self.conv1to4 = conv1x1(channels, channels)
        self.conv2to4 = conv1x1(channels, channels)
        self.conv_merge = conv3x3(channels * 3, channels)
        self.conv_last1 = conv3x3(channels, channels // 2)
        self.conv_last2 = conv1x1(channels // 2, out_channels)

    def forward(self, x1, x2, x4):
        x14 = F.relu(self.conv1to4(upsample(x1, 4)))
        x24 = F.relu(self.conv2to4(upsample(x2, 2)))
        x = F.relu(self.conv_merge(torch.cat((x4, x14, x24), 1)))
        return torch.clamp(self.conv_last2(self.conv_last1(x)), -1, 1)


def bicubic_resize(x, size):
    """Bicubic resize of [0, 1] images (antialiased when shrinking, like PIL), clamped to [0, 1]."""
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode='bicubic', align_corners=False, antialias=shrink).clamp(0, 1)


@register()
class TTSRNet(nn.Module):
    """TTSR generator (x4), with its texture extractor (LTE) and a memory-bounded texture search.

    Yang et al., "Learning Texture Transformer Network for Image Super-Resolution", CVPR 2020.

    ``forward(lq, ref, lq_up=None, ref_down_up=None)`` takes images in [0, 1] (BasicSR convention)
    and returns the x4 result in [0, 1]. ``lq_up`` (LR bicubic x4) and ``ref_down_up`` (Ref bicubic
    /4 then x4) come from the data pipeline (PIL bicubic, as the original); when absent they are
    computed here with torch's antialiased bicubic. Internally the main network works in [-1, 1]
    and clamps its output there, as upstream, so converted upstream checkpoints give upstream's
    outputs. The LTE (``extractor.*``) is part of this network's state; the model gives it its own
    learning rate. Key names follow MMagic (``scripts/convert_ttsr_checkpoint.py`` maps both layouts).

    Args:
        in_channels, out_channels (int): image channels (3).
        mid_channels (int): feature channels of the main network (64).
        texture_channels (int): channels of the finest texture level; the LTE gives 64/128/256.
        num_blocks (Sequence[int]): residual blocks of SFE, stage 1, stage 2, stage 3 (16, 16, 8, 4).
        res_scale (float): residual scaling.
        load_pretrained_vgg (bool): initialise the LTE from ImageNet VGG19 (found on disk).
        vgg_weights_path (str | None): explicit VGG19 file for the LTE.
        search_mode (str): 'chunked' (bounded memory) or 'plain' (upstream's full relevance matrix).
        search_chunk_size (int | None): query positions per search chunk; None: automatic.
        search_memory_mb (float): working-set budget of the automatic chunking.
    """

    def __init__(self, in_channels=3, out_channels=3, mid_channels=64, texture_channels=64,
                 num_blocks=(16, 16, 8, 4), res_scale=1.0, load_pretrained_vgg=True, vgg_weights_path=None,
                 search_mode='chunked', search_chunk_size=None, search_memory_mb=DEFAULT_MEMORY_BUDGET_MB):
        super().__init__()
        if texture_channels != 64:
            raise ValueError(f'TTSRNet: texture_channels must be 64 (the VGG19 texture extractor gives '
                             f'64/128/256 channels), got {texture_channels}')
        num_blocks = tuple(num_blocks)
        if len(num_blocks) != 4 or min(num_blocks) < 0:
            raise ValueError(f'TTSRNet: num_blocks must be 4 non-negative ints (SFE, stage 1, 2, 3), got {num_blocks}')
        self.scale = 4
        self.extractor = TTSRTextureExtractor(True, load_pretrained_vgg, vgg_weights_path)
        self.search = SearchTransfer(search_mode, search_chunk_size, search_memory_mb)

        self.sfe = ShallowFeatureExtractor(in_channels, mid_channels, num_blocks[0], res_scale)
        # stage 1 (x1)
        self.conv_first1 = conv3x3(4 * texture_channels + mid_channels, mid_channels)
        self.res_block1 = residual_stack(num_blocks[1], mid_channels, res_scale)
        self.conv_last1 = conv3x3(mid_channels, mid_channels)
        # stage 2 (x1, x2)
        self.up1 = PixelShuffleUp(mid_channels)
        self.conv_first2 = conv3x3(2 * texture_channels + mid_channels, mid_channels)
        self.csfi2 = CrossScaleFusion2(mid_channels)
        self.res_block2_1 = residual_stack(num_blocks[2], mid_channels, res_scale)
        self.res_block2_2 = residual_stack(num_blocks[2], mid_channels, res_scale)
        self.conv_last2_1 = conv3x3(mid_channels, mid_channels)
        self.conv_last2_2 = conv3x3(mid_channels, mid_channels)
        # stage 3 (x1, x2, x4)
        self.up2 = PixelShuffleUp(mid_channels)
        self.conv_first3 = conv3x3(texture_channels + mid_channels, mid_channels)
        self.csfi3 = CrossScaleFusion3(mid_channels)
        self.res_block3_1 = residual_stack(num_blocks[3], mid_channels, res_scale)
        self.res_block3_2 = residual_stack(num_blocks[3], mid_channels, res_scale)
        self.res_block3_3 = residual_stack(num_blocks[3], mid_channels, res_scale)
        self.conv_last3_1 = conv3x3(mid_channels, mid_channels)
        self.conv_last3_2 = conv3x3(mid_channels, mid_channels)
        self.conv_last3_3 = conv3x3(mid_channels, mid_channels)
        self.merge_features = MergeFeatures(mid_channels, out_channels)

    def search_textures(self, lq_up, ref_down_up, ref):
        """Soft attention ``[N, 1, h, w]`` and transferred textures (levels 3, 2, 1) for [0, 1] images."""
        query = self.extractor(lq_up)[0]
        key = self.extractor(ref_down_up)[0]
        values = self.extractor(ref)
        return self.search(query, key, values)

    def main_network(self, x, soft_attention, textures):
        """Upstream ``MainNet``: ``x`` in [-1, 1], output in [-1, 1]."""
        texture3, texture2, texture1 = textures
        x1 = self.sfe(x)
        # stage 1: soft-attention fusion with the level-3 texture
        x1 = x1 + self.conv_first1(torch.cat((x1, texture3), 1)) * soft_attention
        x1 = x1 + self.conv_last1(self.res_block1(x1))
        # stage 2
        x2 = F.relu(self.up1(x1))
        x2 = x2 + self.conv_first2(torch.cat((x2, texture2), 1)) * upsample(soft_attention, 2)
        x1_res, x2_res = self.csfi2(x1, x2)
        x1 = x1 + self.conv_last2_1(self.res_block2_1(x1_res))
        x2 = x2 + self.conv_last2_2(self.res_block2_2(x2_res))
        # stage 3
        x4 = F.relu(self.up2(x2))
        x4 = x4 + self.conv_first3(torch.cat((x4, texture1), 1)) * upsample(soft_attention, 4)
        x1_res, x2_res, x4_res = self.csfi3(x1, x2, x4)
        x1 = x1 + self.conv_last3_1(self.res_block3_1(x1_res))
        x2 = x2 + self.conv_last3_2(self.res_block3_2(x2_res))
        x4 = x4 + self.conv_last3_3(self.res_block3_3(x4_res))
        return self.merge_features(x1, x2, x4)

    def prepare_inputs(self, lq, ref, lq_up=None, ref_down_up=None):
        """Check the sizes and compute ``lq_up`` / ``ref_down_up`` when the pipeline did not."""
        h, w = lq.shape[-2:]
        rh, rw = ref.shape[-2:]
        if rh % 4 or rw % 4:
            raise ValueError(f'TTSRNet: the reference size must be a multiple of 4, got {rh}x{rw} '
                             f'(mod-crop or pad it in the data pipeline)')
        if lq_up is None:
            lq_up = bicubic_resize(lq, (h * 4, w * 4))
        if ref_down_up is None:
            ref_down_up = bicubic_resize(bicubic_resize(ref, (rh // 4, rw // 4)), (rh, rw))
        if tuple(lq_up.shape[-2:]) != (h * 4, w * 4) or tuple(ref_down_up.shape[-2:]) != (rh, rw):
            raise ValueError(f'TTSRNet: lq_up must be 4x lq ({h * 4}x{w * 4}) and ref_down_up the size of ref '
                             f'({rh}x{rw}); got {tuple(lq_up.shape[-2:])} and {tuple(ref_down_up.shape[-2:])}')
        return lq_up, ref_down_up

    def forward(self, lq, ref, lq_up=None, ref_down_up=None, return_textures=False):
        """x4 super-resolution of ``lq`` with textures from ``ref`` (all in [0, 1]).

        With ``return_textures`` also returns the soft attention and the textures (levels 3, 2, 1)
        for the transferal perceptual loss.
        """
        lq_up, ref_down_up = self.prepare_inputs(lq, ref, lq_up, ref_down_up)
        soft_attention, textures = self.search_textures(lq_up, ref_down_up, ref)
        out = self.main_network(lq * 2 - 1, soft_attention, textures)
        out = (out + 1) / 2
        if return_textures:
            return out, soft_attention, textures
        return out
