"""DISTS (Ding et al., "Image Quality Assessment: Unifying Structure and Texture Similarity", TPAMI 2020) as a
BasicSR validation metric, from the ``DISTS-pytorch`` package (MIT), with local weights only.

    val:
      metrics:
        dists:
          type: calculate_dists
          better: lower              # required: BasicSR tracks the best value as higher otherwise
          backbone_weights: ~        # torchvision's vgg16-397923af.pth (file or folder)
          dists_weights: ~           # alpha/beta; default: weights.pt shipped in the DISTS-pytorch wheel

The VGG16 file is found like VGG19 (ext/utils/pretrained.py) and never downloaded.
"""
import os.path as osp
import threading
import types

import torch

from ext.metrics.lpips_metric import check_lower_is_better, images_to_tensors, metric_device
from ext.registry import register

_cache = {}
_lock = threading.Lock()


def packaged_dists_weights():
    import DISTS_pytorch
    return osp.join(osp.dirname(DISTS_pytorch.__file__), 'weights.pt')


def build_dists(backbone_weights=None, dists_weights=None, device=None):
    """A ``DISTS_pytorch.DISTS`` with its VGG16 from a local torchvision file (cached per settings)."""
    from DISTS_pytorch import DISTS_pt

    from ext.utils.pretrained import find_torchvision_weights, load_torchvision_features
    backbone_path = find_torchvision_weights('vgg16', backbone_weights, 'val.metrics.<name>.backbone_weights')
    dists_weights = dists_weights or packaged_dists_weights()
    if not osp.isfile(dists_weights):
        raise FileNotFoundError(f'calculate_dists: dists_weights {dists_weights!r} does not exist (it ships in the '
                                f'DISTS-pytorch wheel: pip install DISTS-pytorch)')
    device = metric_device(device)
    key = (backbone_path, dists_weights, str(device))
    with _lock:
        if key not in _cache:
            vgg = types.SimpleNamespace(features=load_torchvision_features('vgg16', backbone_path))
            # DISTS.__init__ calls models.vgg16(pretrained=True), a download: hand it the local network instead
            original = DISTS_pt.models
            DISTS_pt.models = types.SimpleNamespace(vgg16=lambda **_: vgg)
            try:
                model = DISTS_pt.DISTS(load_weights=False)
            finally:
                DISTS_pt.models = original
            weights = torch.load(dists_weights, map_location='cpu', weights_only=True)
            model.alpha.data, model.beta.data = weights['alpha'], weights['beta']
            _cache[key] = model.eval().to(device)
        return _cache[key]


@register()
def calculate_dists(img, img2, crop_border=0, input_order='HWC', backbone_weights=None, dists_weights=None,
                    device=None, better=None):
    """DISTS between two images (0 for identical, lower is more similar); BasicSR metric signature."""
    check_lower_is_better('calculate_dists', better)
    model = build_dists(backbone_weights, dists_weights, device)
    first, second = images_to_tensors(img, img2, crop_border, input_order)
    device = model.alpha.device
    with torch.no_grad():
        return float(model(first.to(device), second.to(device), batch_average=True))
