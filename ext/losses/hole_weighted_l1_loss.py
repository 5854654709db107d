"""L1 reconstruction loss for inpainting, weighted inside and outside the hole (pix2pix's λ = 100)."""
import torch.nn as nn

from ext.registry import register


@register()
class HoleWeightedL1Loss(nn.Module):
    """``loss_weight * range_scale * weighted mean |pred - target|``, the pixel weight being
    ``hole_weight`` inside the mask and ``valid_weight`` outside.

    pix2pix (Isola et al., CVPR 2017) adds λ·L1 with λ = 100 on images in [-1, 1]; this package's
    images are in [0, 1], so the difference is multiplied by ``range_scale`` = 2 and λ = 100 means
    what it means in the paper. With the default weights (1, 1) it is plain L1;
    ``valid_weight: 0`` counts the hole only; ``hole_weight: 6`` stresses it (as partial-conv
    inpainting's 6:1).

    Called as ``loss(pred, target, mask)`` with the N x 1 x H x W mask (1 = hole); without a mask,
    every pixel has weight 1.

    Args:
        loss_weight (float): λ (100).
        hole_weight (float): weight of the pixels inside the hole (1).
        valid_weight (float): weight of the pixels outside it (1).
        range_scale (float): 2 for pix2pix's [-1, 1] scale; 1 for BasicSR's [0, 1] L1.
    """

    def __init__(self, loss_weight=100.0, hole_weight=1.0, valid_weight=1.0, range_scale=2.0):
        super().__init__()
        if hole_weight < 0 or valid_weight < 0 or hole_weight + valid_weight == 0:
            raise ValueError(f'HoleWeightedL1Loss: hole_weight and valid_weight must be >= 0 and not both 0, '
                             f'got {hole_weight}, {valid_weight}')
        self.loss_weight, self.range_scale = float(loss_weight), float(range_scale)
        self.hole_weight, self.valid_weight = float(hole_weight), float(valid_weight)

    def forward(self, pred, target, mask=None):
        error = (pred - target).abs() * self.range_scale
        if mask is None or self.hole_weight == self.valid_weight:
            return error.mean() * self.loss_weight
        mask = mask.to(error.dtype)
        weight = self.valid_weight + (self.hole_weight - self.valid_weight) * mask  # N x 1 x H x W
        total = (error * weight).sum()
        return total / (weight.sum() * error.shape[1]).clamp_min(1e-8) * self.loss_weight
