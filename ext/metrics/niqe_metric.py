"""NIQE of a super-resolved image as a validation metric (no reference: lower is better).

BasicSR's ``calculate_niqe`` already takes (and ignores) the GT that validation passes, but it fails
with ``LinAlgError: SVD did not converge`` or returns NaN when the image holds fewer than two 96x96
blocks after ``crop_border``, and it prints NumPy warnings for flat blocks. ``calculate_niqe_sr``
is the same measure (Mittal et al., "Making a 'Completely Blind' Image Quality Analyzer", IEEE SPL
2013; BasicSR's MATLAB-matching implementation with the pristine parameters shipped in its wheel,
nothing downloaded) with a clear error for too small an image, and ``nan`` (with a warning) for an image whose blocks are too
flat to have statistics, such as an untrained network's output: validation must not stop the run. Use it with ``better: lower`` so the best-metric log
tracks the minimum::

    val:
      metrics:
        niqe: {type: calculate_niqe_sr, crop_border: 4, better: lower}
"""
import warnings

import numpy as np

from basicsr.metrics.metric_util import reorder_image
from basicsr.metrics.niqe import calculate_niqe
from ext.registry import register

NIQE_BLOCK = 96


@register()
def calculate_niqe_sr(img, crop_border, input_order='HWC', convert_to='y', img2=None, **kwargs):
    """NIQE of ``img`` (uint8/float in [0, 255], BGR, ``input_order`` 'HWC'/'CHW'); ``img2`` is ignored.

    Args:
        img (ndarray): the image to rate (validation passes the network output).
        crop_border (int): pixels left out at each edge.
        input_order (str): 'HWC' or 'CHW'.
        convert_to (str): 'y' (Y of YCbCr, as BasicSR/MATLAB) or 'gray'.
        img2: the GT passed by validation; NIQE needs no reference.

    Raises:
        ValueError: the image has fewer than two 96x96 blocks after the crop.
    """
    height, width = reorder_image(np.asarray(img), input_order=input_order).shape[:2]
    h, w = height - 2 * crop_border, width - 2 * crop_border
    blocks = max(h, 0) // NIQE_BLOCK * (max(w, 0) // NIQE_BLOCK)
    if blocks < 2:
        raise ValueError(f'NIQE needs at least two {NIQE_BLOCK}x{NIQE_BLOCK} blocks after cropping {crop_border} '
                         f'border pixels; a {height}x{width} image has {blocks}. Validate on images of at least '
                         f'{NIQE_BLOCK + 2 * crop_border}x{2 * NIQE_BLOCK + 2 * crop_border} px (GT size)')
    with warnings.catch_warnings(), np.errstate(all='ignore'):
        warnings.simplefilter('ignore', RuntimeWarning)
        try:
            value = float(calculate_niqe(img, crop_border, input_order=input_order, convert_to=convert_to))
        except np.linalg.LinAlgError:  # degenerate block statistics, e.g. the flat output of an untrained network
            value = float('nan')
    if not np.isfinite(value):
        # not an error: a validation of an early, flat output must not stop the training run
        warnings.warn(f'NIQE of a {height}x{width} image is undefined (flat blocks have no natural-scene '
                      'statistics); reporting nan', RuntimeWarning, stacklevel=2)
        return float('nan')
    return value
