"""TTSR's perceptual loss: MSE of VGG19 relu5_1 features.

Yang et al., "Learning Texture Transformer Network for Image Super-Resolution", CVPR 2020.
"""
import torch.nn as nn
import torch.nn.functional as F

from ext.archs.ttsr_lte_arch import ImageNetNormalize, load_vgg19_weights, vgg19_features, vgg19_layer_names
from ext.registry import register


@register()
class TTSRPerceptualLoss(nn.Module):
    """``loss_weight * MSE(VGG(sr), VGG(gt))`` at one VGG layer (relu5_1 for TTSR).

    Images in [0, 1]; ImageNet normalisation inside, as the original's ``Vgg19`` on ``(x+1)/2``.
    The VGG weights come from disk (:func:`ext.utils.pretrained.find_vgg_weights`), never downloaded.

    Args:
        loss_weight (float): weight (TTSR: 1e-2).
        layer (str): BasicSR's VGG19 layer name ('relu5_1' = torchvision ``features[29]``).
        vgg_type (str): 'vgg19' (the only one TTSR uses).
    """
    uses_vgg_weights = True

    def __init__(self, loss_weight=1e-2, layer='relu5_1', vgg_type='vgg19'):
        super().__init__()
        from ext.utils.pretrained import find_vgg_weights
        names = vgg19_layer_names()
        if vgg_type != 'vgg19':
            raise ValueError(f"TTSRPerceptualLoss: vgg_type must be 'vgg19', got {vgg_type!r}")
        if layer not in names:
            raise ValueError(f'TTSRPerceptualLoss: unknown VGG19 layer {layer!r}; one of {names}')
        self.loss_weight, self.layer = loss_weight, layer
        self.normalize = ImageNetNormalize()
        self.vgg = load_vgg19_weights(vgg19_features(names.index(layer) + 1), find_vgg_weights(vgg_type)).eval()
        for param in self.vgg.parameters():
            param.requires_grad = False

    def features(self, x):
        return self.vgg(self.normalize(x))

    def forward(self, x, gt):
        return F.mse_loss(self.features(x), self.features(gt.detach())) * self.loss_weight
