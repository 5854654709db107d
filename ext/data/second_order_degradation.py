"""Real-ESRGAN's second-order degradation (GT -> LQ), on any device.

Paper: Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
Data", ICCVW 2021. BasicSR 1.4.2 ships it inside ``RealESRGANModel``/``RealESRNetModel`` with ``.cuda()``
hard-coded; here it is composed from BasicSR's pieces (``DiffJPEG``, ``filter2D``, ``random_add_*_noise_pt``)
as a module on whatever device it is moved to. The training models synthesise their LQ with it
(:mod:`ext.models.realesrgan_synthesis`) and :mod:`ext.data.degraded_pairs` makes validation sets with it.
Not a component file: it registers nothing.
"""
import math
import random

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from basicsr.data.degradations import random_add_gaussian_noise_pt, random_add_poisson_noise_pt
from basicsr.utils import DiffJPEG, img_process_util
from ext.errors import OptionError

# Top-level option keys of the degradation (upstream names; "2" = second pass).
FIRST_PASS_KEYS = ('resize_prob', 'resize_range', 'gaussian_noise_prob', 'noise_range', 'poisson_scale_range',
                   'gray_noise_prob', 'jpeg_range')
SECOND_PASS_KEYS = ('second_blur_prob', ) + tuple(f'{key}2' for key in FIRST_PASS_KEYS)
DEGRADATION_KEYS = FIRST_PASS_KEYS + SECOND_PASS_KEYS
RESIZE_MODES = ('area', 'bilinear', 'bicubic')


def _filter2d(img, kernel):
    # looked up at call time so ext.compat's channels_last fix applies
    return img_process_util.filter2D(img, kernel)


class SecondOrderDegradation(nn.Module):
    """Real-ESRGAN's two-pass degradation: blur, resize, noise, JPEG; twice; then final sinc + JPEG.

    Randomness comes from Python's ``random``, NumPy's and torch's global generators (as upstream),
    which BasicSR seeds and this package's resume restores.

    Args:
        opt (dict): The option file's top level: ``scale`` and every key of ``DEGRADATION_KEYS``.
    """

    def __init__(self, opt):
        super().__init__()
        missing = [key for key in DEGRADATION_KEYS if key not in opt]
        if missing:
            raise OptionError(f'the Real-ESRGAN degradation needs the top-level option key(s) {", ".join(missing)} '
                              '(see options/train_multiaesrgan_x4plus.yml for upstream values)')
        self.opt = {key: opt[key] for key in DEGRADATION_KEYS}
        self.scale = opt['scale']
        self.jpeger = DiffJPEG(differentiable=False)

    @staticmethod
    def _resize_factor(probabilities, scale_range):
        direction = random.choices(['up', 'down', 'keep'], probabilities)[0]
        if direction == 'up':
            return np.random.uniform(1, scale_range[1])
        if direction == 'down':
            return np.random.uniform(scale_range[0], 1)
        return 1

    def _noise(self, out, suffix):
        opt = self.opt
        if np.random.uniform() < opt[f'gaussian_noise_prob{suffix}']:
            return random_add_gaussian_noise_pt(out, sigma_range=opt[f'noise_range{suffix}'], clip=True, rounds=False,
                                                gray_prob=opt[f'gray_noise_prob{suffix}'])
        return random_add_poisson_noise_pt(out, scale_range=opt[f'poisson_scale_range{suffix}'],
                                           gray_prob=opt[f'gray_noise_prob{suffix}'], clip=True, rounds=False)

    def _jpeg(self, out, suffix):
        quality = out.new_zeros(out.size(0)).uniform_(*self.opt[f'jpeg_range{suffix}'])
        return self.jpeger(torch.clamp(out, 0, 1), quality=quality)  # clamp first: JPEG of >1 values rings

    def minimum_gt_size(self, blur_size, sinc_size):
        """Smallest GT side whose blur / sinc filtering stays valid after the strongest first-pass downscale.

        filter2D reflect-pads by ``kernel // 2``, which must be smaller than the image: the second blur
        runs after a resize by down to ``resize_range[0]``, the final sinc filter at ``1 / scale``.
        """
        size = max(blur_size // 2 + 1, (sinc_size // 2 + 1) * self.scale)
        while math.floor(size * self.opt['resize_range'][0]) <= blur_size // 2:
            size += 1
        return size

    def check_size(self, gt, kernel2, sinc_kernel):
        needed = self.minimum_gt_size(kernel2.shape[-1], sinc_kernel.shape[-1])
        if min(gt.shape[-2:]) < needed:
            raise ValueError(
                f'GT images of {gt.shape[-2]}x{gt.shape[-1]} are too small for the Real-ESRGAN degradation: with '
                f'resize_range[0] {self.opt["resize_range"][0]}, {kernel2.shape[-1]}-tap blur kernels and scale '
                f'{self.scale} they must be at least {needed} px (the GT the dataset returns: its crop_pad_size, '
                f'or gt_size for datasets without one); '
                f'or raise resize_range[0] / lower blur_kernel_size')

    @torch.no_grad()
    def forward(self, gt, kernel1, kernel2, sinc_kernel):
        """Degrade ``gt`` (B, C, H, W in [0, 1]) into an 8-bit-rounded LQ of size (H/scale, W/scale)."""
        opt = self.opt
        self.check_size(gt, kernel2, sinc_kernel)
        height, width = gt.shape[2:]
        # first pass
        out = _filter2d(gt, kernel1)
        out = F.interpolate(out, scale_factor=self._resize_factor(opt['resize_prob'], opt['resize_range']),
                            mode=random.choice(RESIZE_MODES))
        out = self._jpeg(self._noise(out, ''), '')
        # second pass
        if np.random.uniform() < opt['second_blur_prob']:
            out = _filter2d(out, kernel2)
        factor = self._resize_factor(opt['resize_prob2'], opt['resize_range2'])
        out = F.interpolate(out, size=(int(height / self.scale * factor), int(width / self.scale * factor)),
                            mode=random.choice(RESIZE_MODES))
        out = self._noise(out, '2')
        # [resize back + sinc] and JPEG in either order; other orders give twisted lines (Real-ESRGAN)
        target = (height // self.scale, width // self.scale)
        if np.random.uniform() < 0.5:
            out = _filter2d(F.interpolate(out, size=target, mode=random.choice(RESIZE_MODES)), sinc_kernel)
            out = self._jpeg(out, '2')
        else:
            out = self._jpeg(out, '2')
            out = _filter2d(F.interpolate(out, size=target, mode=random.choice(RESIZE_MODES)), sinc_kernel)
        return torch.clamp((out * 255.0).round(), 0, 255) / 255.
