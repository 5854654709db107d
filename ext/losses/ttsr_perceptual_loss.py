"""TTSR's perceptual loss: MSE of VGG19 relu5_1 features.

Yang et al., "Learning Texture Transformer Network for Image Super-Resolution", CVPR 2020.
"""
import torch.nn as nn
import torch.nn.functional as F
from basicsr.archs.vgg_arch import VGGFeatureExtractor

from ext.registry import register


@register()
class TTSRPerceptualLoss(nn.Module):
    """``loss_weight * MSE(VGG(sr), VGG(gt))`` at one VGG layer (relu5_1 for TTSR).

    Images in [0, 1]; ImageNet normalisation inside, as the original's ``Vgg19`` on ``(x+1)/2``.
    The VGG weights come from disk (:func:`ext.utils.pretrained.find_vgg_weights`), never downloaded.

    Args:
        loss_weight (float): weight (TTSR: 1e-2).
        layer (str): BasicSR VGG layer name ('relu5_1' = torchvision ``features[29]``).
        vgg_type (str): 'vgg19'.
    """
    uses_vgg_weights = True

    def __init__(self, loss_weight=1e-2, layer='relu5_1', vgg_type='vgg19'):
        super().__init__()
        self.loss_weight, self.layer = loss_weight, layer
        self.vgg = VGGFeatureExtractor([layer], vgg_type=vgg_type, use_input_norm=True, range_norm=False,
                                       requires_grad=False)

    def forward(self, x, gt):
        return F.mse_loss(self.vgg(x)[self.layer], self.vgg(gt.detach())[self.layer]) * self.loss_weight
