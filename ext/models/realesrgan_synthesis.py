"""Real-ESRGAN's on-the-fly training data synthesis, on any device: the policy object of the Real-ESRGAN
models (Real-ESRNet, A-ESRGAN); not a component module.

Paper: Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
Data", ICCVW 2021. BasicSR 1.4.2 ships this inside ``RealESRGANModel``/``RealESRNetModel`` with
``.cuda()`` hard-coded; here it is composed from BasicSR's pieces (``USMSharp`` run separably,
``paired_random_crop``) and :class:`~ext.data.second_order_degradation.SecondOrderDegradation`, and lives
on the model's device.

- :class:`RealESRGANSynthesis`: GT batch (+ the dataset's blur / sinc kernels) -> the (LQ, GT) pair to
  train on.
- :class:`TrainingPairQueue`: the training-pair pool that mixes degradations across batches; its
  content is part of the training state, so a resumed run continues exactly.
"""
import torch

from basicsr.data.transforms import paired_random_crop
from ext.data.second_order_degradation import DEGRADATION_KEYS, SecondOrderDegradation
from ext.errors import OptionError
from ext.models.usm_sharp import SeparableUSMSharp


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


class RealESRGANSynthesis:
    """The training pairs of a Real-ESRGAN model, made from its GT batches (see the module docstring).

    Crop order as Real-ESRGAN: the whole GT region the dataset returns (``crop_pad_size``, 400 upstream)
    is degraded, then a random ``gt_size`` crop of the (target, LQ) pair is trained on, so the LQ's
    borders are rarely the degraded image's borders (where blur and resizing saw padding).

    Option keys, top level: ``scale``, ``gt_size``, ``queue_size`` (default 180),
    ``high_order_degradation`` (default true; false trains on the dataset's own ``lq``) and the
    degradation keys in ``DEGRADATION_KEYS``.

    Args:
        opt (dict): The model's options.
        device (torch.device): The model's device.
        is_train (bool): A training run (else nothing is synthesised: validation and tests read the
            dataset's own ``lq``).
    """

    option_keys = frozenset({'gt_size', 'queue_size', 'high_order_degradation', *DEGRADATION_KEYS})

    def __init__(self, opt, device, is_train):
        self.device = device
        self.usm_sharpener = SeparableUSMSharp().to(device)  # Real-ESRGAN's GT sharpening
        self.enabled = is_train and opt.get('high_order_degradation', True)
        self.degradation = self.pair_queue = None
        if self.enabled:
            if 'gt_size' not in opt:
                raise OptionError('the Real-ESRGAN data synthesis needs the top-level option gt_size (GT crop size)')
            self.gt_size, self.scale = opt['gt_size'], opt['scale']
            self.degradation = SecondOrderDegradation(opt).to(device)
            batch_size = opt['datasets']['train']['batch_size_per_gpu']
            self.pair_queue = TrainingPairQueue(opt.get('queue_size', 180), batch_size, device)

    @torch.no_grad()
    def training_pair(self, data, sharpen_source, sharpen_target):
        """``(lq, gt)`` to train on from a training batch: its GT, USM-sharpened or not, degraded with the
        batch's kernels into the LQ (the dataset's real LQ where ``lq_is_real``); the (target, LQ) crop; both
        through the pool."""
        gt = data['gt'].to(self.device)
        sharpened = self.usm_sharpener(gt) if sharpen_source or sharpen_target else None
        source, target = (sharpened if sharpen_source else gt), (sharpened if sharpen_target else gt)
        lq = self.degradation(source, data['kernel1'].to(self.device), data['kernel2'].to(self.device),
                              data['sinc_kernel'].to(self.device))
        real = data.get('lq_is_real')
        if real is not None:  # a dataset's real pairs (lq_prob) replace their degraded LQ
            chosen = real.to(self.device).bool()
            lq[chosen] = data['lq'].to(self.device)[chosen]
        # the training crop, after the degradation (a no-op when the dataset already returns gt_size)
        target, lq = paired_random_crop(target, lq, self.gt_size, self.scale)
        lq, gt = self.pair_queue(lq, target)
        return lq.contiguous(), gt  # lq is a cropped view: the conv gradient layout wants a contiguous input
