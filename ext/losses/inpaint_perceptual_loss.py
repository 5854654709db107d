"""The seed's perceptual loss: MSE of VGG19 features of the conv outputs before the first pools."""
import torch.nn as nn
import torch.nn.functional as F

from ext.archs.ttsr_lte_arch import ImageNetNormalize, load_vgg19_weights, vgg19_features, vgg19_layer_names
from ext.registry import register

SEED_LAYERS = {'relu1_2': 1.0, 'relu2_2': 1.0, 'relu3_4': 1.0}  # the last convs before pool1, pool2, pool3


@register()
class InpaintPerceptualLoss(nn.Module):
    """``loss_weight * sum_l w_l * criterion(VGG_l(pred), VGG_l(target))`` over VGG19 layers.

    The seed (pix2pix / VGG inpainting GAN): the features of "the first 3 conv outputs before the
    max pool layers" (relu1_2, relu2_2, relu3_4: each conv with its ReLU, as Keras' VGG19 layers),
    mean squared error, weight 0.5. Images in [0, 1], ImageNet-normalised inside; the VGG19 weights
    come from disk (:func:`ext.utils.pretrained.find_vgg_weights`), never downloaded, and are frozen.

    Args:
        loss_weight (float): 0.5.
        layer_weights (dict): BasicSR VGG19 layer names -> weights (default relu1_2, relu2_2, relu3_4, 1 each: the reproduced
            inpainting runs' layers; docs/methods/pix2pix_inpaint.md).
        criterion (str): 'mse' (default) or 'l1'.
        vgg_weights_path (str | None): explicit VGG19 file instead of the lookup.
    """
    uses_vgg_weights = True

    def __init__(self, loss_weight=0.5, layer_weights=None, criterion='mse', vgg_weights_path=None):
        super().__init__()
        from ext.utils.pretrained import find_vgg_weights
        names = vgg19_layer_names()
        self.layer_weights = dict(layer_weights or SEED_LAYERS)
        unknown = [name for name in self.layer_weights if name not in names]
        if unknown or not self.layer_weights:
            raise ValueError(f'InpaintPerceptualLoss: unknown VGG19 layers {unknown}; choose from {names}')
        if criterion not in ('mse', 'l1'):
            raise ValueError(f"InpaintPerceptualLoss: criterion must be 'mse' or 'l1', got {criterion!r}")
        self.loss_weight, self.criterion = float(loss_weight), F.mse_loss if criterion == 'mse' else F.l1_loss
        self.indices = {names.index(name): name for name in self.layer_weights}
        self.normalize = ImageNetNormalize()
        self.vgg = load_vgg19_weights(vgg19_features(max(self.indices) + 1),
                                      vgg_weights_path or find_vgg_weights('vgg19')).eval()
        for param in self.vgg.parameters():
            param.requires_grad = False

    def train(self, mode=True):  # the VGG stays in eval mode
        super().train(mode)
        self.vgg.eval()
        return self

    def features(self, x):
        found, h = {}, self.normalize(x)
        for index, layer in enumerate(self.vgg):
            h = layer(h)
            if index in self.indices:
                found[self.indices[index]] = h
                if len(found) == len(self.indices):
                    break
        return found

    def forward(self, pred, target):
        pred_features, target_features = self.features(pred), self.features(target.detach())
        total = sum(self.layer_weights[name] * self.criterion(pred_features[name], target_features[name])
                    for name in self.layer_weights)
        return total * self.loss_weight
