"""Real-ESRGAN's on-the-fly training data synthesis, on any device, shared by the A-ESRGAN models.

Paper: Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
Data", ICCVW 2021. BasicSR 1.4.2 ships this inside ``RealESRGANModel``/``RealESRNetModel`` with
``.cuda()`` hard-coded; here it is composed from BasicSR's pieces (``DiffJPEG``, ``USMSharp`` run separably,
``filter2D``, ``random_add_*_noise_pt``, ``paired_random_crop``) and lives on the model's device.

- :class:`SecondOrderDegradation`: GT (+ the dataset's blur / sinc kernels) -> LQ.
- :class:`TrainingPairQueue`: the training-pair pool that mixes degradations across batches; its
  content is part of the training state, so a resumed run continues exactly.
- :class:`RealESRGANDataSynthesisMixin`: ``feed_data``, the queue's resume hooks and a validation
  that also saves ``lq | output | gt`` grids; mixed into a BasicSR ``SRModel`` subclass.

This module is not a component file (no ``_model`` suffix): it registers nothing.
"""
import math
import os
import os.path as osp
import random

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from basicsr.data.degradations import random_add_gaussian_noise_pt, random_add_poisson_noise_pt
from basicsr.data.transforms import paired_random_crop
from basicsr.metrics import calculate_metric
from basicsr.utils import DiffJPEG, img_process_util, tensor2img
from ext.models.usm_sharp import SeparableUSMSharp
from ext.models.validation_util import validation_image_path
from ext.errors import OptionError
from ext.utils.atomic_io import atomic_write_bytes

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


def _compact(tensor):
    """uint8 when the values are exactly k/255 (8-bit images), which makes a saved queue 4x smaller."""
    tensor = tensor.cpu()  # on the CPU: CUDA divides by a scalar as a multiply by its (rounded) reciprocal
    levels = (tensor * 255.0).round()
    if torch.equal(levels / 255., tensor):
        return {'uint8': levels.to(torch.uint8)}
    return {'float': tensor}


def _expand(packed, device):
    if 'uint8' in packed:
        return (packed['uint8'].to(torch.float32) / 255.).to(device)  # k/255 exactly as the dataset computes it
    return packed['float'].to(device)


class TrainingPairQueue:
    """Real-ESRGAN's training-pair pool on ``device``.

    The first ``size / batch`` batches only fill the pool (and pass through); after that each batch is
    swapped with ``batch`` random pairs of the shuffled pool, so one batch mixes degradations made with
    different random resize factors.

    Args:
        size (int): Pairs held (option ``queue_size``, 180 upstream); a multiple of ``batch_size``.
        batch_size (int): The training batch size per process.
        device (torch.device): Where the pool lives (the model's device).
    """

    def __init__(self, size, batch_size, device):
        if not isinstance(size, int) or size < 1:
            raise OptionError(f'queue_size must be a positive integer, got {size!r}')
        self.check_batch(size, batch_size)
        self.size, self.device = size, torch.device(device)
        self.lq = self.gt = None
        self.filled = 0

    @staticmethod
    def check_batch(size, batch_size):
        if size % batch_size:
            raise OptionError(f'queue_size ({size}) must be a multiple of the batch size per process '
                              f'(datasets.train.batch_size_per_gpu: {batch_size}); e.g. queue_size: '
                              f'{max(batch_size, size - size % batch_size)}')

    @torch.no_grad()
    def __call__(self, lq, gt):
        """Push a batch, return the batch to train on (the same one while the pool fills)."""
        batch = lq.size(0)
        if self.lq is None:
            self.check_batch(self.size, batch)
            self.lq = lq.new_zeros((self.size, *lq.shape[1:]))
            self.gt = gt.new_zeros((self.size, *gt.shape[1:]))
        elif self.lq.shape[1:] != lq.shape[1:] or self.gt.shape[1:] != gt.shape[1:]:
            raise ValueError(f'training pair queue holds lq {tuple(self.lq.shape[1:])} / gt {tuple(self.gt.shape[1:])} '
                             f'pairs, got lq {tuple(lq.shape[1:])} / gt {tuple(gt.shape[1:])}: gt_size changed?')
        if self.filled < self.size:
            self.lq[self.filled:self.filled + batch] = lq
            self.gt[self.filled:self.filled + batch] = gt
            self.filled += batch
            return lq, gt
        order = torch.randperm(self.size).to(self.device)  # CPU generator, as upstream: seeded and resumable
        self.lq, self.gt = self.lq[order], self.gt[order]
        lq_out, gt_out = self.lq[:batch].clone(), self.gt[:batch].clone()
        self.lq[:batch] = lq
        self.gt[:batch] = gt
        return lq_out, gt_out

    def state_dict(self):
        if self.lq is None:
            return {'filled': 0}
        return {'filled': self.filled, 'lq': _compact(self.lq), 'gt': _compact(self.gt)}

    def load_state_dict(self, state):
        self.filled = int(state['filled'])
        if 'lq' in state:
            self.lq, self.gt = _expand(state['lq'], self.device), _expand(state['gt'], self.device)
            if self.lq.size(0) != self.size:
                raise ValueError(f'the saved training pair queue holds {self.lq.size(0)} pairs but queue_size is '
                                 f'{self.size}; resume with the queue_size of the saved run')
        else:
            self.lq = self.gt = None


def side_by_side(lq, output, gt=None, gap=4):
    """An 8-bit BGR grid ``bicubic-upscaled lq | output | gt`` (tensors 1xCxHxW in [0, 1])."""
    height, width = output.shape[-2:]
    panels = [F.interpolate(lq, size=(height, width), mode='bicubic', align_corners=False).clamp(0, 1), output]
    if gt is not None:
        height, width = min(height, gt.shape[-2]), min(width, gt.shape[-1])
        panels.append(gt)
    images = [tensor2img([panel[..., :height, :width]]) for panel in panels]
    spacer = np.full((height, gap) + images[0].shape[2:], 255, dtype=np.uint8)
    row = [images[0]]
    for image in images[1:]:
        row += [spacer, image]
    return np.concatenate(row, axis=1)


def _write_png(path, image):
    ok, encoded = cv2.imencode('.png', image)
    if not ok:
        raise OSError(f'could not encode {path}')
    atomic_write_bytes(path, encoded.tobytes())


class RealESRGANDataSynthesisMixin:
    """``feed_data`` with Real-ESRGAN's synthesis, the queue's resume state, and validation grids.

    Mix in before a BasicSR ``SRModel`` subclass and call :meth:`setup_data_synthesis` after
    ``super().__init__``. Subclasses choose what the LQ is made from and what the target is with
    :meth:`degradation_source_and_target`.

    Crop order as Real-ESRGAN: the whole GT region the dataset returns (``crop_pad_size``, 400 upstream)
    is degraded, then a random ``gt_size`` crop of the (target, LQ) pair is trained on, so the LQ's
    borders are rarely the degraded image's borders (where blur and resizing saw padding).

    Top-level option keys: ``scale``, ``gt_size``, ``queue_size`` (default 180),
    ``high_order_degradation`` (default true; false trains on the dataset's own ``lq``) and the
    degradation keys in ``DEGRADATION_KEYS``.
    """

    option_keys = frozenset(DEGRADATION_KEYS) | {'gt_size', 'queue_size', 'high_order_degradation'}
    compute_gt_usm = False  # set ``self.gt_usm`` (USM-sharpened target) after each batch

    def setup_data_synthesis(self):
        self.usm_sharpener = SeparableUSMSharp().to(self.device)
        self.synthesizes_data = self.is_train and self.opt.get('high_order_degradation', True)
        self.degradation = self.pair_queue = None
        if self.synthesizes_data:
            if 'gt_size' not in self.opt:
                raise OptionError('the Real-ESRGAN data synthesis needs the top-level option gt_size (GT crop size)')
            self.degradation = SecondOrderDegradation(self.opt).to(self.device)
            batch_size = self.opt['datasets']['train']['batch_size_per_gpu']
            self.pair_queue = TrainingPairQueue(self.opt.get('queue_size', 180), batch_size, self.device)

    def degradation_source_and_target(self, gt):
        """``(image the LQ is made from, training target)`` for a GT batch."""
        raise NotImplementedError

    @torch.no_grad()
    def feed_data(self, data):
        if not (self.is_train and self.synthesizes_data):
            self.lq = data['lq'].to(self.device)
            if 'gt' in data:
                self.gt = data['gt'].to(self.device)
                if self.compute_gt_usm:
                    self.gt_usm = self.usm_sharpener(self.gt)
            return
        source, target = self.degradation_source_and_target(data['gt'].to(self.device))
        lq = self.degradation(source, data['kernel1'].to(self.device), data['kernel2'].to(self.device),
                              data['sinc_kernel'].to(self.device))
        # the training crop, after the degradation (a no-op when the dataset already returns gt_size)
        target, lq = paired_random_crop(target, lq, self.opt['gt_size'], self.opt['scale'])
        lq, self.gt = self.pair_queue(lq, target)
        self.lq = lq.contiguous()  # a cropped view: the conv gradient layout wants a contiguous input
        if self.compute_gt_usm:
            self.gt_usm = self.usm_sharpener(self.gt)  # after the queue: gt may be another batch's

    # --- exact resume (ext.engine.resume saves this into the .state file) ---------------------------------------
    def extra_training_state(self):
        return {'pair_queue': self.pair_queue.state_dict()} if self.pair_queue is not None else {}

    def load_extra_training_state(self, state):
        if self.pair_queue is not None and 'pair_queue' in state:
            self.pair_queue.load_state_dict(state['pair_queue'])

    # --- validation: BasicSR's metrics, plus lq | output | gt grids --------------------------------
    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        was_training = self.is_train
        self.is_train = False  # validate on the dataset's own lq, never on synthesized data
        try:  # (ext.engine.seeding keeps the training random streams untouched around every validation)
            self._validate(dataloader, current_iter, tb_logger, save_img)
        finally:
            self.is_train = was_training

    def _validate(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        metrics = self.opt['val'].get('metrics')
        if metrics:
            self.metric_results = {name: 0 for name in metrics}
            self._initialize_best_metric_results(dataset_name)
        pbar = tqdm(total=len(dataloader), unit='image') if self.opt['val'].get('pbar', False) else None
        count = 0
        for val_data in dataloader:
            img_name = osp.splitext(osp.basename(val_data['lq_path'][0]))[0]
            self.feed_data(val_data)
            self.test()
            lq, output = self.lq.detach().cpu(), self.output.detach().cpu()
            gt = self.gt.detach().cpu() if hasattr(self, 'gt') else None
            metric_data = {'img': tensor2img([output])}
            if gt is not None:
                metric_data['img2'] = tensor2img([gt])
                del self.gt
            del self.lq, self.output
            if save_img:
                path = validation_image_path(self.opt, img_name, dataset_name, current_iter)
                os.makedirs(osp.dirname(path), exist_ok=True)
                _write_png(path, metric_data['img'])
                _write_png(f'{osp.splitext(path)[0]}_grid.png', side_by_side(lq, output, gt))
            if metrics:
                for name, metric_opt in metrics.items():
                    self.metric_results[name] += calculate_metric(metric_data, metric_opt)
            count += 1
            if pbar is not None:
                pbar.update(1)
                pbar.set_description(f'Test {img_name}')
        if pbar is not None:
            pbar.close()
        if metrics:
            for name in self.metric_results:
                self.metric_results[name] /= max(count, 1)
                self._update_best_metric_result(dataset_name, name, self.metric_results[name], current_iter)
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

