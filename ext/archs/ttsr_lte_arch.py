"""TTSR's learnable texture extractor (LTE).

Yang et al., "Learning Texture Transformer Network for Image Super-Resolution", CVPR 2020.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ext.registry import register

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision VGG19 ``features`` indices of the three slices (to relu1_1, relu2_1, relu3_1).
VGG_SLICES = (range(0, 2), range(2, 7), range(7, 12))


class ImageNetNormalize(nn.Module):
    """Frozen 1x1 convolution ``(x - mean) / std``.

    Weight and bias are buffers (never trained) named as upstream's ``MeanShift`` /
    ``ImgNormalize`` conv, so checkpoints map one to one.
    """

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        std_t = torch.tensor(std, dtype=torch.float32)
        self.register_buffer('weight', torch.diag(1 / std_t).view(3, 3, 1, 1))
        self.register_buffer('bias', -torch.tensor(mean, dtype=torch.float32) / std_t)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias)


# torchvision's VGG19 ``features`` configuration; BasicSR names its layers conv1_1, relu1_1, ..., pool5.
VGG19_CONFIG = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512, 512, 512, 'M')


def vgg19_layer_names():
    names, block, index = [], 1, 1
    for item in VGG19_CONFIG:
        if item == 'M':
            names.append(f'pool{block}')
            block, index = block + 1, 1
        else:
            names += [f'conv{block}_{index}', f'relu{block}_{index}']
            index += 1
    return names


def vgg19_features(num_layers):
    """torchvision's ``vgg19().features[:num_layers]`` (same indices, so its weights load), without
    building the whole VGG19 and its 100M-parameter classifier."""
    layers, channels = [], 3
    for item in VGG19_CONFIG:
        if item == 'M':
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    return nn.Sequential(*layers[:num_layers])


def load_vgg19_weights(features, path):
    """Load torchvision VGG19 weights (``features.N.*`` of the file at ``path``) into ``features``."""
    state = torch.load(path, map_location='cpu', weights_only=True, mmap=True)  # mmap: read only what is used
    if isinstance(state, dict) and 'state_dict' in state:
        state = state['state_dict']
    wanted = features.state_dict()
    found = {k: state[f'features.{k}'] for k in wanted if f'features.{k}' in state}
    if len(found) != len(wanted):
        raise ValueError(f'{path}: not a torchvision VGG19 state dict (missing '
                         f'{sorted(set(wanted) - set(found))[:3]} under "features.")')
    features.load_state_dict(found)
    return features


@register(aliases=('LTE',))
class TTSRTextureExtractor(nn.Module):
    """Learnable texture extractor: VGG19 up to relu3_1 behind ImageNet normalisation.

    Input images are in [0, 1]. ``forward`` returns the features at levels 3, 2, 1 (coarse to
    fine): ``[N, 256, H/4, W/4]``, ``[N, 128, H/2, W/2]``, ``[N, 64, H, W]``. State-dict keys keep the
    VGG indices (``slice1.0``, ``slice2.2``, ``slice2.5``, ``slice3.7``, ``slice3.10``) as upstream.

    Args:
        requires_grad (bool): train the VGG slices (TTSR: yes, at a smaller learning rate).
        load_pretrained_vgg (bool): initialise from torchvision's ImageNet VGG19, found on disk by
            :func:`ext.utils.pretrained.find_vgg_weights` (never downloaded). False for tests or when
            a converted TTSR checkpoint is loaded afterwards.
        vgg_weights_path (str | None): explicit VGG19 file instead of the lookup.
    """

    def __init__(self, requires_grad=True, load_pretrained_vgg=True, vgg_weights_path=None):
        super().__init__()
        self.img_normalize = ImageNetNormalize()
        vgg_features = vgg19_features(VGG_SLICES[-1][-1] + 1)
        if load_pretrained_vgg:
            from ext.utils.pretrained import find_vgg_weights
            load_vgg19_weights(vgg_features, vgg_weights_path or find_vgg_weights('vgg19'))
        for number, indices in enumerate(VGG_SLICES, start=1):
            block = nn.Sequential()
            for index in indices:
                block.add_module(str(index), vgg_features[index])
            setattr(self, f'slice{number}', block)
        for param in self.parameters():
            param.requires_grad = requires_grad

    def forward(self, x):
        level1 = self.slice1(self.img_normalize(x))
        level2 = self.slice2(level1)
        level3 = self.slice3(level2)
        return level3, level2, level1
