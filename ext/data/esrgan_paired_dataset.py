"""Paired SR dataset with the augmentations of an ESRGAN reproduction (docs/methods/esrgan.md): flips and transposes on both images,
JPEG compression and coarse dropout on the LR only."""
import random

import cv2
import numpy as np
import torch

from basicsr.data.paired_image_dataset import PairedImageDataset
from ext.registry import register

# Probabilities and ranges of the reproduced ESRGAN runs (their albumentations pipeline); CoarseDropout's defaults for the holes.
DEFAULTS = {
    'flip_prob': 0.25,
    'transpose_prob': 0.75,
    'lq_jpeg_prob': 0.25,
    'lq_jpeg_quality': [50, 95],
    'lq_dropout_prob': 0.25,
    'lq_dropout_holes': [1, 8],
    'lq_dropout_size': [1, 8],
    'lq_dropout_fill': 0.0,
}


def _range(opt, key, low, high, kind=int):
    value = opt[key]
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise ValueError(f'ESRGANPairedDataset: {key} must be [min, max], got {value!r}')
    first, last = kind(value[0]), kind(value[1])
    if not low <= first <= last <= high:
        raise ValueError(f'ESRGANPairedDataset: {key} must satisfy {low} <= min <= max <= {high}, got {value!r}')
    return first, last


def _probability(opt, key):
    value = float(opt[key])
    if not 0 <= value <= 1:
        raise ValueError(f'ESRGANPairedDataset: {key} must be a probability in [0, 1], got {opt[key]!r}')
    return value


def jpeg_round_trip(image_chw, quality):
    """A float RGB CHW tensor in [0, 1] through an OpenCV JPEG encode/decode at ``quality``."""
    rgb = (image_chw.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    ok, data = cv2.imencode('.jpg', np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f'OpenCV could not JPEG-encode an LR patch of shape {rgb.shape}')
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(decoded.transpose(2, 0, 1))).float().div_(255)


@register()
class ESRGANPairedDataset(PairedImageDataset):
    """BasicSR's ``PairedImageDataset`` (folders, meta-info lists or LMDB; same keys) with the
    augmentations of an ESRGAN reproduction (ESRGAN: Wang et al. 2018, https://arxiv.org/abs/1809.00219).

    Training (``phase: train``): BasicSR's paired random crop of ``gt_size``, then on GT and LQ alike a flip
    (horizontal, vertical or both, chosen uniformly) with ``flip_prob`` and a transpose with
    ``transpose_prob``; then on the LQ only ("hard" transforms) a JPEG round trip with ``lq_jpeg_prob`` at a
    quality drawn from ``lq_jpeg_quality`` and a coarse dropout with ``lq_dropout_prob``: a number of holes
    drawn from ``lq_dropout_holes``, each of a height and width (LQ pixels) drawn from ``lq_dropout_size``,
    filled with ``lq_dropout_fill`` (in [0, 1]). Validation: with ``gt_size`` set, the centre crop of that
    size, otherwise the whole image.

    The draws use Python's ``random``, which the training loader seeds per sample
    (``ext.engine.sampling.PerSampleSeededDataset``), so a sample is a function of (manual_seed, rank, epoch,
    position) and a resumed run draws what the killed one would have. BasicSR's own ``use_hflip`` /
    ``use_rot`` default to false here (they would add to these); ``mean``/``std`` cannot be combined with
    the hard transforms (they work on [0, 1] images).
    """

    option_keys = frozenset({'dataroot_gt', 'dataroot_lq', 'meta_info_file', 'filename_tmpl', 'gt_size', 'use_hflip',
                             'use_rot', 'mean', 'std', 'color', *DEFAULTS})

    def __init__(self, opt):
        for key, value in DEFAULTS.items():
            opt.setdefault(key, value)
        opt.setdefault('use_hflip', False)
        opt.setdefault('use_rot', False)
        super().__init__(opt)
        self.flip_prob, self.transpose_prob = _probability(opt, 'flip_prob'), _probability(opt, 'transpose_prob')
        self.jpeg_prob, self.dropout_prob = _probability(opt, 'lq_jpeg_prob'), _probability(opt, 'lq_dropout_prob')
        self.jpeg_quality = _range(opt, 'lq_jpeg_quality', 1, 100)
        self.dropout_holes = _range(opt, 'lq_dropout_holes', 0, 10_000)
        self.dropout_size = _range(opt, 'lq_dropout_size', 1, 10_000)
        self.dropout_fill = float(opt['lq_dropout_fill'])
        if (self.mean is not None or self.std is not None) and (self.jpeg_prob or self.dropout_prob):
            raise ValueError('ESRGANPairedDataset: mean/std normalisation cannot be combined with the LR-only '
                             'JPEG and dropout transforms (set lq_jpeg_prob and lq_dropout_prob to 0)')
        if opt.get('phase') == 'train' and not opt.get('gt_size'):
            raise ValueError('ESRGANPairedDataset: training needs gt_size (the HR patch size)')

    def __getitem__(self, index):
        sample = super().__getitem__(index)  # read, BasicSR's paired random crop (train), tensors
        gt, lq = sample['gt'], sample['lq']
        if self.opt['phase'] == 'train':
            gt, lq = self.spatial_transforms(gt, lq)
            lq = self.hard_transforms(lq)
        elif self.opt.get('gt_size'):
            gt, lq = self.center_crop(gt, lq, int(self.opt['gt_size']), int(self.opt['scale']), sample['gt_path'])
        sample.update(gt=gt.contiguous(), lq=lq.contiguous())
        return sample

    def spatial_transforms(self, gt, lq):
        """The same flip and transpose on both images (CHW tensors)."""
        if random.random() < self.flip_prob:
            dims = random.choice([(-1,), (-2,), (-2, -1)])  # horizontal, vertical, both
            gt, lq = gt.flip(dims), lq.flip(dims)
        if random.random() < self.transpose_prob:
            gt, lq = gt.transpose(-2, -1), lq.transpose(-2, -1)
        return gt, lq

    def hard_transforms(self, lq):
        """JPEG and coarse dropout on the LR only."""
        if random.random() < self.jpeg_prob:
            lq = jpeg_round_trip(lq, random.randint(*self.jpeg_quality))
        if random.random() < self.dropout_prob:
            lq = lq.clone()
            height, width = lq.shape[-2:]
            for _ in range(random.randint(*self.dropout_holes)):
                hole_h = min(random.randint(*self.dropout_size), height)
                hole_w = min(random.randint(*self.dropout_size), width)
                top, left = random.randint(0, height - hole_h), random.randint(0, width - hole_w)
                lq[:, top:top + hole_h, left:left + hole_w] = self.dropout_fill
        return lq

    @staticmethod
    def center_crop(gt, lq, gt_size, scale, gt_path):
        lq_size = gt_size // scale
        height, width = lq.shape[-2:]
        if height < lq_size or width < lq_size:
            raise ValueError(f'ESRGANPairedDataset: {gt_path}: the LQ image is {height}x{width}, smaller than the '
                             f'validation centre crop {lq_size}x{lq_size} (gt_size {gt_size} / scale {scale})')
        top, left = (height - lq_size) // 2, (width - lq_size) // 2
        lq = lq[:, top:top + lq_size, left:left + lq_size]
        gt = gt[:, top * scale:(top + lq_size) * scale, left * scale:(left + lq_size) * scale]
        return gt, lq
