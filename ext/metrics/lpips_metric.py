"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018)
as a BasicSR validation metric, from the ``lpips`` package (BSD-2-Clause), with local weights only.

    val:
      metrics:
        lpips:
          type: calculate_lpips
          better: lower              # required: BasicSR tracks the best value as higher otherwise
          net: alex                  # alex (default, the paper's) or vgg
          backbone_weights: ~        # torchvision's alexnet-owt-7be5be79.pth / vgg16-397923af.pth (file or folder)
          linear_weights: ~          # the calibrated linear layers; default: the file shipped in the lpips wheel

The backbone file is found like VGG19 (ext/utils/pretrained.py: the option, then path.vgg_weights /
$SRGAN_TOOLKIT_VGG_WEIGHTS as folders, experiments/pretrained_models/, torch hub's cache) and never
downloaded; a missing one stops with where to get it.
"""
import os.path as osp
import threading
import types

import numpy as np
import torch

from ext.registry import register

BACKBONES = {'alex': 'alexnet', 'vgg': 'vgg16'}
_cache = {}
_lock = threading.Lock()


def check_lower_is_better(name, better):
    if better != 'lower':
        raise ValueError(f'{name}: lower values are better; set `better: lower` in val.metrics (BasicSR assumes '
                         f'higher and would keep the worst checkpoint as the best), got better={better!r}')


def metric_device(device=None):
    return torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))


def images_to_tensors(img, img2, crop_border=0, input_order='HWC'):
    """BasicSR's validation images (BGR, HWC or CHW, uint8 [0, 255] or float) as RGB NCHW float in [0, 1]."""
    from basicsr.metrics.metric_util import reorder_image
    if img.shape != img2.shape:
        raise ValueError(f'image shapes differ: {img.shape} and {img2.shape}')
    tensors = []
    for image in (img, img2):
        image = reorder_image(np.asarray(image), input_order=input_order)
        if crop_border:
            image = image[crop_border:-crop_border, crop_border:-crop_border]
        scale = 255.0 if image.dtype == np.uint8 or image.max() > 1.5 else 1.0
        rgb = np.ascontiguousarray(image[..., ::-1] if image.shape[2] == 3 else image).astype(np.float32) / scale
        tensors.append(torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0))
    return tensors


def build_lpips(net='alex', backbone_weights=None, linear_weights=None, device=None):
    """An ``lpips.LPIPS`` with its backbone from a local torchvision file (cached per settings)."""
    if net not in BACKBONES:
        raise ValueError(f'calculate_lpips: net must be one of {sorted(BACKBONES)}, got {net!r}')
    from ext.utils.pretrained import find_torchvision_weights, load_torchvision_features
    backbone_path = find_torchvision_weights(BACKBONES[net], backbone_weights, 'val.metrics.<name>.backbone_weights')
    if linear_weights is not None and not osp.isfile(linear_weights):
        raise FileNotFoundError(f'calculate_lpips: linear_weights {linear_weights!r} does not exist')
    device = metric_device(device)
    key = (net, backbone_path, linear_weights, str(device))
    with _lock:
        if key not in _cache:
            import lpips
            from lpips import pretrained_networks
            trunk = types.SimpleNamespace(features=load_torchvision_features(BACKBONES[net], backbone_path))
            # lpips builds its trunk with torchvision's alexnet/vgg16(pretrained=...), a download for True and a
            # whole classifier for False: hand it the local trunk instead
            original = pretrained_networks.tv
            pretrained_networks.tv = types.SimpleNamespace(**{BACKBONES[net]: lambda **_: trunk})
            try:
                model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, model_path=linear_weights,
                                    verbose=False)
            finally:
                pretrained_networks.tv = original
            _cache[key] = model.eval().to(device)
        return _cache[key]


@register()
def calculate_lpips(img, img2, crop_border=0, input_order='HWC', net='alex', backbone_weights=None,
                    linear_weights=None, device=None, better=None):
    """LPIPS distance between two images (lower is more similar); BasicSR metric signature."""
    check_lower_is_better('calculate_lpips', better)
    model = build_lpips(net, backbone_weights, linear_weights, device)
    first, second = images_to_tensors(img, img2, crop_border, input_order)
    device = next(model.parameters()).device
    with torch.no_grad():
        return float(model(first.to(device), second.to(device), normalize=True).mean())
