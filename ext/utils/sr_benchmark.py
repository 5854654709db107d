"""Benchmark-set evaluation of SR networks: metrics picked by name from BasicSR's metric registry,
per-image scores, summaries and side-by-side pictures. ``scripts/evaluate.py`` is its command line.

A metric is a registry function ``f(img, img2, crop_border, input_order='HWC', **kwargs)`` on uint8 BGR
images (BasicSR's convention), so anything registered in ``METRIC_REGISTRY`` (BasicSR's, this package's
``ext/metrics/*_metric.py``, e.g. LPIPS/DISTS once their weights are on disk) can be selected by name.
Built-in column names: ``psnr_y``, ``ssim_y`` (ITU-R BT.601 luma, as the SR papers), ``psnr_rgb``,
``ssim_rgb``. Any other name is a registry type (``calculate_niqe``...), or ``column=type`` to choose the
column's name. A metric whose function has ``lower_is_better = True`` (or that is listed as such) is
ranked the other way round.
"""
import dataclasses
import inspect
import math

import cv2
import numpy as np


BUILTIN_METRICS = {
    'psnr_y': ('calculate_psnr', {'test_y_channel': True}),
    'ssim_y': ('calculate_ssim', {'test_y_channel': True}),
    'psnr_rgb': ('calculate_psnr', {'test_y_channel': False}),
    'ssim_rgb': ('calculate_ssim', {'test_y_channel': False}),
}
DEFAULT_METRICS = ('psnr_y', 'ssim_y', 'psnr_rgb', 'ssim_rgb')
LOWER_IS_BETTER = {'lpips', 'dists', 'niqe', 'calculate_niqe'}


@dataclasses.dataclass
class Metric:
    """One column of the table: a registry function and its keyword arguments."""
    name: str
    type: str
    function: object
    kwargs: dict
    lower_is_better: bool = False

    def __call__(self, output_bgr, target_bgr, crop_border):
        value = self.function(output_bgr, target_bgr, crop_border=crop_border, input_order='HWC', **self.kwargs)
        return float(value)

    def better(self, a, b):
        return a < b if self.lower_is_better else a > b


def resolve_metric(spec, extra_kwargs=None):
    """``'psnr_y'`` | ``'calculate_x'`` | ``'column=calculate_x'`` -> :class:`Metric`."""
    from basicsr.utils.registry import METRIC_REGISTRY
    name, _, registry_type = spec.partition('=')
    name = name.strip()
    if registry_type:
        registry_type, kwargs = registry_type.strip(), {}
    elif name in BUILTIN_METRICS:
        registry_type, kwargs = BUILTIN_METRICS[name]
    else:
        registry_type, kwargs = name, {}
    if registry_type not in METRIC_REGISTRY:
        known = sorted(set(BUILTIN_METRICS) | set(METRIC_REGISTRY.keys()))
        raise KeyError(f"metric {spec!r}: no metric named {registry_type!r} in BasicSR's METRIC_REGISTRY; "
                       f"known names: {', '.join(known)}")
    function = METRIC_REGISTRY.get(registry_type)
    kwargs = {**kwargs, **(extra_kwargs or {})}
    lower = bool(getattr(function, 'lower_is_better', False)) or any(
        word in LOWER_IS_BETTER for word in (name.lower(), registry_type.lower(), registry_type.lower()[10:]))
    if lower and 'better' in inspect.signature(function).parameters:
        kwargs.setdefault('better', 'lower')  # LPIPS/DISTS insist on it (BasicSR's validation passes it)
    return Metric(name, registry_type, function, kwargs, lower)


def resolve_metrics(specs, extra_kwargs=None):
    extra_kwargs = extra_kwargs or {}
    metrics = [resolve_metric(spec, extra_kwargs.get(spec.partition('=')[0].strip())) for spec in specs]
    names = [metric.name for metric in metrics]
    if len(set(names)) != len(names):
        raise ValueError(f'metric columns must be unique, got {names}')
    unknown = set(extra_kwargs) - set(names)
    if unknown:
        raise ValueError(f'metric options given for {sorted(unknown)}, which are not among the metrics {names}')
    return metrics


def bicubic_downscale(hr_bgr, scale):
    """MATLAB ``imresize(hr, 1/scale, 'bicubic')`` with anti-aliasing (BasicSR's), uint8 in and out."""
    from basicsr.utils.matlab_functions import imresize
    lr = imresize(hr_bgr.astype(np.float32) / 255.0, 1.0 / scale)
    return np.clip(np.round(lr * 255.0), 0, 255).astype(np.uint8)


def bicubic_upscale(lr_bgr, scale):
    """MATLAB-style bicubic up-scaling (BasicSR's ``imresize``), uint8 in and out: the papers' baseline."""
    from basicsr.utils.matlab_functions import imresize
    up = imresize(lr_bgr.astype(np.float32) / 255.0, float(scale))
    return np.clip(np.round(up * 255.0), 0, 255).astype(np.uint8)


def summarise(rows, metrics, prefix=''):
    """Mean of each metric over ``rows`` (dicts holding the metric names); NaNs ignored."""
    summary = {}
    for metric in metrics:
        values = [row[prefix + metric.name] for row in rows if not math.isnan(row[prefix + metric.name])]
        summary[prefix + metric.name] = float(np.mean(values)) if values else float('nan')
    return summary


def ranked(rows, metric):
    """``rows`` from best to worst by ``metric``."""
    return sorted(rows, key=lambda row: row[metric.name], reverse=not metric.lower_is_better)


def _label(image, text):
    out = image.copy()
    scale = max(0.4, min(out.shape[1] / 400.0, 1.2))
    thickness = max(1, int(round(scale * 2)))
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(out, (0, 0), (width + 8, height + baseline + 8), (0, 0, 0), -1)
    cv2.putText(out, text, (4, height + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)
    return out


def side_by_side(panels, gap=4):
    """Labelled panels ``[(title, BGR image)]`` of the same height, left to right, on white."""
    height = max(image.shape[0] for _, image in panels)
    width = sum(image.shape[1] for _, image in panels) + gap * (len(panels) - 1)
    canvas = np.full((height, width, 3), 255, np.uint8)
    left = 0
    for title, image in panels:
        canvas[:image.shape[0], left:left + image.shape[1]] = _label(image, title)
        left += image.shape[1] + gap
    return canvas


def nearest_upscale(lr_bgr, scale):
    return cv2.resize(lr_bgr, (lr_bgr.shape[1] * scale, lr_bgr.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
