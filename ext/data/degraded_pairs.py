"""Deterministic LQ images made by the training degradation, for validation that matches training.

Real-ESRGAN / A-ESRGAN train on LQ images synthesised on the fly by the second-order degradation,
but validate on clean bicubic pairs, which says little about the inputs the model learns for. This
module degrades a GT image exactly the way the training does (the option file's blur kernels, sinc
filter, resizes, noise and JPEG: :class:`ext.data.second_order_degradation.SecondOrderDegradation`
with kernels drawn as :class:`ext.data.material_multiscale_dataset.MaterialMultiscaleDataset` draws
them), from a seed derived from ``seed`` and the image's name, so the same set comes out on every
machine and every run. ``scripts/make_degraded_val.py`` writes such a set. Not a component file.
"""
import random
import zlib

import numpy as np
import torch

from ext.data.second_order_degradation import SecondOrderDegradation
from ext.utils.random_states import seeded

DEGRADED_SUFFIX = '_degraded'  # LQ file name = GT name + suffix (PairedImageDataset filename_tmpl '{}_degraded')


def image_seed(seed, name):
    """A per-image seed: the same for a name on every machine (no Python hash randomisation)."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode('utf-8'))) % 2**31


class TrainingDegradation:
    """``__call__(gt_rgb01 HxWx3 float32, name) -> lq HxW/scale x3`` with the training's degradation.

    Args:
        opt (dict): a training option file (top-level degradation keys, ``scale``, and the kernel keys of
            ``datasets.train``).
        seed (int): base seed; each image's seed also depends on its name.
    """

    def __init__(self, opt, seed=0):
        from ext.data.material_multiscale_dataset import _KernelSampler
        from basicsr.data.degradations import circular_lowpass_kernel
        train = dict((opt.get('datasets') or {}).get('train') or {})
        self.degradation = SecondOrderDegradation(opt)
        self.kernel1, self.kernel2 = _KernelSampler(train, ''), _KernelSampler(train, '2')
        self.final_sinc_prob = float(train.get('final_sinc_prob', 0.8))
        self.scale, self.seed = int(opt['scale']), int(seed)
        self._sinc = circular_lowpass_kernel

    def _sinc_kernel(self):
        size = self.kernel1.max_size
        if np.random.uniform() < self.final_sinc_prob:
            kernel_size = random.choice(self.kernel1.sizes)
            omega_c = np.random.uniform(np.pi / 3, np.pi)
            return torch.FloatTensor(self._sinc(omega_c, kernel_size, pad_to=size))
        pulse = torch.zeros(size, size)
        pulse[size // 2, size // 2] = 1
        return pulse

    def __call__(self, gt_rgb01, name):
        h, w = gt_rgb01.shape[:2]
        if h % self.scale or w % self.scale:
            raise ValueError(f'{name}: GT of {h}x{w} is not a multiple of the scale {self.scale}')
        gt = torch.from_numpy(np.ascontiguousarray(gt_rgb01.transpose(2, 0, 1))).float().unsqueeze(0)
        with seeded(image_seed(self.seed, name)):
            kernel1, kernel2, sinc = self.kernel1()[None], self.kernel2()[None], self._sinc_kernel()[None]
            lq = self.degradation(gt, kernel1, kernel2, sinc)
        return lq[0].permute(1, 2, 0).numpy()

    def uint8(self, gt_rgb, name):
        """The same on an 8-bit RGB image: the LQ rounded to 8 bits, as a saved validation image."""
        lq = self(np.asarray(gt_rgb, np.float32) / 255., name)
        return (lq * 255).round().clip(0, 255).astype(np.uint8)
