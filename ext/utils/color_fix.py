"""Colour fix of super-resolved images: give the output the colour of its bicubic-upscaled input.

GAN super-resolution shifts colours (Real-ESRGAN #285, #558, #246: warmer skin, blue added to gray, white
turned to #FEFEFE) while bicubic upscaling keeps the mean colour of the input. Two fixes, after the network:

* ``'wavelet'``: the output's high frequencies on the bicubic image's low frequencies. The low frequencies
  are what survives a cascade of dilated 3x3 blurs (the "a trous" wavelet's coarse level, as StableSR's
  wavelet colour fix), so the fix is local: an output pixel changes only through pixels within
  :data:`WAVELET_REACH` output pixels, and strips of the image give the same result as the whole image.
* ``'adain'``: each channel's mean and standard deviation matched to the bicubic image's (adaptive instance
  normalisation). Global: the statistics are those of the whole image.

Two entry points on the same arithmetic:

* :func:`fix_colors` on float tensors in [0, 1], ``(N, C, H, W)`` or ``(C, H, W)``: what a training model's
  validation calls on its output and its LQ input;
* :func:`fix_image_colors` on numpy images (H x W x C; uint8, uint16 or float in [0, 1]): what inference
  calls on the whole tiled output, in row strips so that host memory stays a small multiple of the output.

This module imports only numpy and torch, so that any layer of the package may import it.
"""
import math

import numpy as np
import torch
from torch.nn import functional as F

COLOR_FIX_MODES = ('none', 'wavelet', 'adain')
WAVELET_LEVELS = 5
# output pixels a wavelet-fixed pixel depends on, per side: the blur dilations 1, 2, 4, ... summed
WAVELET_REACH = sum(2**level for level in range(WAVELET_LEVELS))
STRIP_ROWS = 128  # input rows per strip of fix_image_colors
_EPSILON = 1e-6

__all__ = ['COLOR_FIX_MODES', 'check_color_fix', 'fix_colors', 'fix_image_colors', 'wavelet_low_pass']


def check_color_fix(mode):
    """``mode`` when it is one of :data:`COLOR_FIX_MODES`, else ValueError naming them."""
    if mode not in COLOR_FIX_MODES:
        raise ValueError(f'color_fix must be one of {", ".join(COLOR_FIX_MODES)}; got {mode!r}')
    return mode


def wavelet_low_pass(x, levels=WAVELET_LEVELS):
    """The low frequencies of ``x`` (N, C, H, W float): ``levels`` separable [1, 2, 1] / 4 blurs with
    dilations 1, 2, 4, ..., each on the replicate-padded result of the previous one."""
    for level in range(levels):
        step = 2**level
        # shifted slices, not conv2d: a 3-tap dilated blur this way is about 10x faster on the CPU
        padded = F.pad(x, (step, step, 0, 0), mode='replicate')
        x = padded[..., :-2 * step].add(padded[..., 2 * step:]).mul_(0.25).add_(padded[..., step:-step], alpha=0.5)
        padded = F.pad(x, (0, 0, step, step), mode='replicate')
        x = padded[..., :-2 * step, :].add(padded[..., 2 * step:, :]).mul_(0.25).add_(padded[..., step:-step, :],
                                                                                      alpha=0.5)
    return x


def _bicubic(low_res, size):
    return F.interpolate(low_res, size=size, mode='bicubic', align_corners=False)


def _channel_moments(x):
    """Per-image, per-channel (count, sum, sum of squares) of (N, C, H, W), in float64."""
    x = x.double()
    return x.shape[2] * x.shape[3], x.sum(dim=(2, 3)), x.square().sum(dim=(2, 3))


def _mean_std(count, total, squares):
    mean = total / count
    variance = (squares / count - mean.square()).clamp_(min=0)
    return mean, variance.sqrt()


def _adain(output, output_stats, reference_stats):
    """``output`` with each channel moved from ``output_stats`` (mean, std) to ``reference_stats``."""
    (out_mean, out_std), (ref_mean, ref_std) = output_stats, reference_stats
    gain = torch.where(out_std > _EPSILON, ref_std / out_std.clamp(min=_EPSILON), torch.ones_like(out_std))
    offset = ref_mean - out_mean * gain
    return output * gain[..., None, None].to(output.dtype) + offset[..., None, None].to(output.dtype)


def fix_colors(output, low_res, mode='wavelet'):
    """Colour-fix a super-resolved tensor against its input; returns a new tensor clamped to [0, 1].

    Args:
        output (Tensor): the network output, float in [0, 1], (N, C, H, W) or (C, H, W).
        low_res (Tensor): the network input (the LQ image), same layout and channels; upscaled bicubically to
            ``output``'s size (any size ratio).
        mode (str): ``'wavelet'``, ``'adain'`` or ``'none'`` (``output`` unchanged).
    """
    check_color_fix(mode)
    if mode == 'none':
        return output
    unbatched = output.dim() == 3
    if unbatched:
        output, low_res = output[None], low_res[None]
    if output.shape[:2] != low_res.shape[:2]:
        raise ValueError(f'output {tuple(output.shape)} and input {tuple(low_res.shape)} differ in batch or channels')
    work = output.float()
    reference = _bicubic(low_res.to(work.device, work.dtype), output.shape[-2:])
    if mode == 'wavelet':
        fixed = work + wavelet_low_pass(reference - work)  # linear low pass: high(out) + low(ref)
    else:
        fixed = _adain(work, _mean_std(*_channel_moments(work)), _mean_std(*_channel_moments(reference)))
    fixed = fixed.clamp_(0, 1).to(output.dtype)
    return fixed[0] if unbatched else fixed


def _image_max(dtype):
    return float(np.iinfo(dtype).max) if np.dtype(dtype).kind == 'u' else 1.0


def _as_tensor(rows, max_value):
    """(rows, W, C) numpy -> (1, C, rows, W) float32 in [0, 1]."""
    values = rows.astype(np.float32) if rows.dtype != np.float32 else rows
    return torch.from_numpy(np.ascontiguousarray(values)).permute(2, 0, 1)[None].div(max_value)


def _strips(height, margin, strip_rows):
    """``(core, context)`` input row ranges: cores cover ``0..height``, contexts add ``margin`` rows each side."""
    for start in range(0, height, strip_rows):
        stop = min(start + strip_rows, height)
        yield (start, stop), (max(start - margin, 0), min(stop + margin, height))


def fix_image_colors(output, image, mode='wavelet', strip_rows=STRIP_ROWS):
    """Colour-fix a super-resolved numpy image against its input; returns a new array of ``output``'s dtype.

    Args:
        output (np.ndarray): H*s x W*s x C (or H*s x W*s), uint8, uint16 or float in [0, 1], ``s`` an integer
            scale.
        image (np.ndarray): the H x W x C (or H x W) input, any of those dtypes; per-channel, so the channel
            order (RGB or BGR) does not matter.
        mode (str): ``'wavelet'``, ``'adain'`` or ``'none'`` (``output`` itself).
        strip_rows (int): input rows per strip; the result is the same for any value (the wavelet fix reads
            :data:`WAVELET_REACH` output pixels of context around each strip, adain's statistics are whole-image).
    """
    check_color_fix(mode)
    if mode == 'none':
        return output
    squeeze = output.ndim == 2
    output3, image3 = (output[:, :, None], image[:, :, None]) if squeeze else (output, image)
    height, width = image3.shape[:2]
    scale = output3.shape[0] // height
    if output3.shape[:2] != (height * scale, width * scale) or output3.shape[2] != image3.shape[2]:
        raise ValueError(f'output {output.shape} is not an integer upscaling of the input {image.shape}')
    out_max, in_max = _image_max(output.dtype), _image_max(image.dtype)
    # input rows of context: the wavelet reach in output pixels, plus the 2 input rows bicubic taps reach
    margin = math.ceil(WAVELET_REACH / scale) + 2 if mode == 'wavelet' else 2

    def load(context):
        out_rows = _as_tensor(output3[context[0] * scale:context[1] * scale], out_max)
        reference = _bicubic(_as_tensor(image3[context[0]:context[1]], in_max), out_rows.shape[-2:])
        return out_rows, reference

    strips = list(_strips(height, margin, strip_rows))
    if mode == 'adain':
        totals = [None, None]
        for core, context in strips:
            out_rows, reference = load(context)
            rows = slice((core[0] - context[0]) * scale, (core[1] - context[0]) * scale)
            for index, tensor in enumerate((out_rows, reference)):
                moments = _channel_moments(tensor[:, :, rows])
                totals[index] = moments if totals[index] is None else tuple(a + b for a, b in zip(totals[index],
                                                                                                  moments))
        output_stats, reference_stats = _mean_std(*totals[0]), _mean_std(*totals[1])
    fixed = np.empty_like(output3)
    for core, context in strips:
        out_rows, reference = load(context)
        if mode == 'wavelet':
            result = out_rows + wavelet_low_pass(reference - out_rows)
        else:
            result = _adain(out_rows, output_stats, reference_stats)
        rows = slice((core[0] - context[0]) * scale, (core[1] - context[0]) * scale)
        result = result[0, :, rows].clamp_(0, 1).mul_(out_max).permute(1, 2, 0).numpy()
        if fixed.dtype.kind == 'u':
            result = np.round(result)
        fixed[core[0] * scale:core[1] * scale] = result
    return fixed[:, :, 0] if squeeze else fixed
