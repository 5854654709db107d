"""Systematic errors of a restored image that PSNR averages away: a colour cast and a frame along the border.

Plain functions (not registered metrics): the demo and the learning benchmarks report them beside PSNR
and NIQE. Both take uint8 (or float in [0, 255]) images of the same size, H x W x C, in one channel order.
"""
import numpy as np


def mean_colour_offset(output, original, crop_border=0):
    """Mean of ``output - original`` per channel (grey levels), ``crop_border`` pixels left out on each
    side: +3 in the first channel of an RGB pair means the output is on average 3 levels redder."""
    if output.shape != original.shape:
        raise ValueError(f'shapes differ: {output.shape} vs {original.shape}')
    if crop_border:
        output = output[crop_border:-crop_border, crop_border:-crop_border]
        original = original[crop_border:-crop_border, crop_border:-crop_border]
    difference = output.astype(np.float64) - original.astype(np.float64)
    return [float(v) for v in difference.reshape(-1, difference.shape[-1]).mean(axis=0)]


def border_error_ratio(output, original, border=4):
    """Mean absolute error in the outer ``border``-pixel band over that of the interior: about 1 for an
    output without a frame, above 1 when the border is brighter, darker or more artefacted than the rest."""
    if output.shape != original.shape:
        raise ValueError(f'shapes differ: {output.shape} vs {original.shape}')
    error = np.abs(output.astype(np.float64) - original.astype(np.float64))
    error = error.mean(axis=2) if error.ndim == 3 else error
    band = np.ones(error.shape, bool)
    band[border:-border, border:-border] = False
    return float(error[band].mean() / max(error[~band].mean(), 1e-6))
