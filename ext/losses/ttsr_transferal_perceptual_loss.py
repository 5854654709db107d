"""TTSR's transferal perceptual loss.

Yang et al., "Learning Texture Transformer Network for Image Super-Resolution", CVPR 2020.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ext.registry import register


@register()
class TransferalPerceptualLoss(nn.Module):
    """MSE between the texture-extractor features of the SR image and the transferred textures.

    ``forward(sr_features, textures, soft_attention=None)`` takes both as levels 3, 2, 1 (coarse to
    fine) and the soft attention ``[N, 1, h, w]`` at level 3. The textures are not detached, so the
    gradient also reaches the texture extractor through them, as in the original.

    Args:
        loss_weight (float): weight (TTSR: 1e-2).
        use_attention (bool): weight both sides by the soft attention (original ``--tpl_use_S``,
            default off in both upstream recipes).
        convention (str): 'original' averages the three levels and applies ``sigmoid`` to the
            upsampled attention at every level; 'mmagic' sums the levels (3x the original at the same
            weight) and applies ``sigmoid`` only at level 3, raw bicubic attention elsewhere.
    """

    def __init__(self, loss_weight=1e-2, use_attention=False, convention='original'):
        super().__init__()
        if convention not in ('original', 'mmagic'):
            raise ValueError(f"TransferalPerceptualLoss: convention must be 'original' or 'mmagic', got {convention!r}")
        self.loss_weight, self.use_attention, self.convention = loss_weight, use_attention, convention

    def attention_maps(self, soft_attention, num_levels):
        maps = []
        for level in range(num_levels):
            scaled = soft_attention if level == 0 else F.interpolate(
                soft_attention, scale_factor=2**level, mode='bicubic', align_corners=False)
            maps.append(torch.sigmoid(scaled) if self.convention == 'original' or level == 0 else scaled)
        return maps

    def forward(self, sr_features, textures, soft_attention=None):
        if len(sr_features) != len(textures):
            raise ValueError(f'TransferalPerceptualLoss: {len(sr_features)} feature levels but {len(textures)} textures')
        if self.use_attention:
            if soft_attention is None:
                raise ValueError('TransferalPerceptualLoss(use_attention=True) needs the soft attention')
            weights = self.attention_maps(soft_attention, len(textures))
        else:
            weights = [1.] * len(textures)
        loss = sum(F.mse_loss(feature * w, texture * w) for feature, texture, w in zip(sr_features, textures, weights))
        if self.convention == 'original':
            loss = loss / len(textures)
        return loss * self.loss_weight
