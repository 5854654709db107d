"""The separable USM sharpener reproduces BasicSR's USMSharp, and the Real-ESRGAN models use it."""
import numpy as np
import pytest
import skimage.data
import torch

import ext  # noqa: F401
from basicsr.utils import USMSharp
from ext.models.usm_sharp import SeparableUSMSharp


def photo_batch(size):
    crops = [np.asarray(getattr(skimage.data, name)())[:size[0], :size[1], :3] for name in ('astronaut', 'coffee')]
    return torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).copy()).float().div(255)


@pytest.mark.parametrize('radius', [50, 7])
@pytest.mark.parametrize('size', [(128, 128), (61, 96)])
def test_matches_basicsr_usm(radius, size):
    images = torch.cat([photo_batch(size), torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))])
    reference, separable = USMSharp(radius), SeparableUSMSharp(radius)
    expected = reference(images)
    assert (expected - images).abs().max() > 0.05  # the photos are really sharpened
    assert torch.allclose(separable(images), expected, atol=1e-5)
    # a lower threshold: a few residuals sit at it, where float rounding may flip a pixel of the hard mask
    # (each flip moves its neighbourhood's soft mask by at most one kernel weight)
    difference = (separable(images, weight=1.0, threshold=3) - reference(images, weight=1.0, threshold=3)).abs()
    assert difference.mean() < 1e-5 and difference.max() < 1e-3  # under a quarter of a grey level


def test_real_esrgan_models_sharpen_with_it(tmp_path):
    from ext.models.realesrgan_synthesis import RealESRGANSynthesis

    probe = RealESRGANSynthesis({}, torch.device('cpu'), is_train=False)
    assert isinstance(probe.usm_sharpener, SeparableUSMSharp)
