"""TTSR for reference-based inpainting (the FFHQ blurred-box setup): box-weighted reconstruction, a guard
against saturated (white) outputs, and PSNR/SSIM inside and outside the box at validation."""
import inspect

import torch
import torch.distributed as dist
from torch import nn

from basicsr.utils import get_root_logger
from ext.engine.stopping import request_stop
from ext.errors import OptionError
from ext.models.image_validation import MaskedMetrics, ValidationExtra
from ext.models.option_keys import OptionKeys
from ext.models.ttsr_model import TTSRModel
from ext.registry import register

SATURATION_ACTIONS = ('warn', 'stop')
SATURATION_KEYS = frozenset({'action', 'max_fraction', 'tolerance', 'patience'})


class OutputSaturationError(RuntimeError):
    """Why ``train.saturation_guard`` (``action: stop``) stopped training: the outputs saturated (the
    name that starts the stop reason; the run ends with exit status 3 on every rank)."""


def saturated_fraction(images, tolerance):
    """Fraction of the pixels of ``images`` (N x C x H x W in [0, 1]) that are white (every channel
    >= 1 - tolerance), black (every channel <= tolerance) or not finite."""
    images = images.detach()
    bad = ~torch.isfinite(images).all(dim=1)
    clean = torch.nan_to_num(images, nan=0.5)
    bad |= (clean >= 1 - tolerance).all(dim=1) | (clean <= tolerance).all(dim=1)
    return bad.float().mean().item()


def saturated_excess(output, gt, tolerance):
    """Saturated share of ``output`` minus that of ``gt`` (when not None), at least 0."""
    fraction = saturated_fraction(output, tolerance)
    if gt is not None:
        fraction -= saturated_fraction(gt, tolerance)
    return max(0.0, fraction)


class SaturationGuard:
    """Watches the share of saturated output pixels beyond the ground truth's own (white
    backgrounds are not an alarm) and warns or stops once it exceeds ``max_fraction`` for
    ``patience`` consecutive training iterations, or over a whole validation set."""

    def __init__(self, action='warn', max_fraction=0.5, tolerance=1 / 255, patience=1):
        self.action, self.max_fraction = action, float(max_fraction)
        self.tolerance, self.patience = float(tolerance), int(patience)
        self.streak = 0

    @classmethod
    def from_options(cls, spec):
        """The guard of ``train.saturation_guard`` (a mapping; None or ``{action: off}``: no guard)."""
        if spec is None:
            return None
        problems = []
        if not isinstance(spec, dict):
            raise OptionError(f'train.saturation_guard: expected a mapping with keys {sorted(SATURATION_KEYS)}, '
                              f'got {spec!r}')
        for key in spec:
            if key not in SATURATION_KEYS:
                problems.append(f'train.saturation_guard.{key}: unknown key; expected one of {sorted(SATURATION_KEYS)}')
        action = spec.get('action', 'warn')
        if action in ('off', None, False):
            return None
        if action not in SATURATION_ACTIONS:
            problems.append(f"train.saturation_guard.action: expected 'warn', 'stop' or 'off', got {action!r}")
        guard = cls(action, spec.get('max_fraction', 0.5), spec.get('tolerance', 1 / 255), spec.get('patience', 1))
        if not 0 < guard.max_fraction <= 1:
            problems.append(f'train.saturation_guard.max_fraction: expected a fraction in (0, 1], '
                            f'got {guard.max_fraction}')
        if not 0 <= guard.tolerance < 0.5:
            problems.append(f'train.saturation_guard.tolerance: expected a value in [0, 0.5), got {guard.tolerance}')
        if guard.patience < 1:
            problems.append(f'train.saturation_guard.patience: expected an integer >= 1, got {guard.patience}')
        if problems:
            raise OptionError('TTSRInpaintModel: ' + '; '.join(problems))
        return guard

    def excess(self, output, gt=None):
        return saturated_excess(output, gt, self.tolerance)

    def check(self, excess, where, persistent=True):
        """Count ``excess`` and act; ``where`` names the iteration or validation set for the log."""
        if excess <= self.max_fraction:
            if persistent:
                self.streak = 0
            return
        if persistent:
            self.streak += 1
            if self.streak < self.patience:
                return
        message = (f'saturated outputs at {where}: {excess:.1%} of the output pixels are white, black or not '
                   f'finite beyond the ground truth (saturation_guard.max_fraction {self.max_fraction:.1%}'
                   + (f', {self.streak} iterations in a row' if persistent else '') + '). The generator has '
                   'diverged (the white-image epoch); resume from an earlier checkpoint with a lower '
                   'learning rate or smaller GAN/perceptual weights.')
        logger = get_root_logger()
        if self.action == 'stop':
            # every rank stops together after this iteration (ext.engine.stopping.request_stop), none waits alone in
            # a collective: the validation check runs on rank 0 only
            logger.error(f'Stopping: {message}')
            request_stop(f'{OutputSaturationError.__name__}: {message}')
            return
        logger.warning(message)


class SaturatedShare(ValidationExtra):
    """The validation hook of the saturation guard: the saturated share of the outputs beyond the ground
    truth's, averaged over the set, logged (``metrics/<set>/saturated`` in TensorBoard) and checked by
    ``guard`` (None: logged only, with a tolerance of 1/255)."""

    def __init__(self, guard):
        self.guard = guard
        self.tolerance = guard.tolerance if guard else 1 / 255
        self.total, self.count = 0.0, 0

    def image(self, image):
        self.total += saturated_excess(image.output, image.gt, self.tolerance)
        self.count += 1

    def finish(self, model, dataset_name, current_iter, tb_logger):
        saturated = self.total / self.count
        get_root_logger().info(f'Validation {dataset_name}: saturated output pixels {saturated:.2%}')
        if tb_logger:
            tb_logger.add_scalar(f'metrics/{dataset_name}/saturated', saturated, current_iter)
        if self.guard is not None:
            self.guard.check(saturated, f'validation on {dataset_name} (iteration {current_iter})', persistent=False)


class RegionWeightedPixelLoss(nn.Module):
    """A BasicSR pixel loss whose per-pixel weight is ``box_weight`` inside the region mask and 1
    outside (a weighted mean, BasicSR's ``weight=`` reduction). ``mask_source()`` gives the current
    batch's N x 1 x H x W mask."""

    def __init__(self, loss, box_weight, mask_source):
        super().__init__()
        self.loss, self.box_weight, self.mask_source = loss, float(box_weight), mask_source

    def forward(self, pred, target):
        mask = self.mask_source()
        if mask is None:
            raise RuntimeError('train.box_pixel_weight needs the box mask in the training batches; use a dataset '
                               'that returns "mask", such as FFHQInpaintDataset')
        return self.loss(pred, target, weight=1 + (self.box_weight - 1) * mask.to(pred.dtype))


@register()
class TTSRInpaintModel(TTSRModel):
    """TTSR trained to restore a blurred box from the reference (Yang et al., "Learning Texture
    Transformer Network for Image Super-Resolution", CVPR 2020), with the guards a face-inpainting
    experiment on FFHQ needed (it saturated to white images; docs/methods/ffhq_inpaint.md). Data: :class:`~ext.data.ffhq_inpaint_dataset.FFHQInpaintDataset`
    (its ``mask`` marks the box).

    Option keys, ``train``: :class:`~ext.models.ttsr_model.TTSRModel`'s, plus
        box_pixel_weight (float, default 1): weight of the ``pixel_opt`` loss inside the box relative
            to outside (a weighted mean; the pixel loss must take ``weight=``, as BasicSR's L1Loss,
            MSELoss, CharbonnierLoss). The log also shows ``l_pix_box`` and ``l_pix_rest``, the
            unweighted L1 inside and outside the box, on ``pixel_value_range`` as ``l_g_pix``.
        saturation_guard (mapping, optional): ``action`` ('warn', 'stop' or 'off'), ``max_fraction``
            (0.5: share of the output pixels saturated beyond the ground truth's own), ``tolerance``
            (1/255: how near 0 or 1 a pixel counts as saturated), ``patience`` (1: training
            iterations in a row). Every iteration logs ``out_saturated``; validation logs the share
            over the set (``metrics/<set>/saturated`` in TensorBoard) and applies the same action.
            ``stop`` ends training on every rank after the current iteration, without a checkpoint of
            it, with the reason logged and exit status 3 (``ext.engine.stopping.request_stop``).

    Validation passes the box mask to the metrics, so ``calculate_masked_psnr`` and
    ``calculate_masked_ssim`` (``region: inside|outside``) sit next to BasicSR's whole-image
    ``calculate_psnr``/``calculate_ssim``. Validation leaves the random streams as it found them.
    """

    train_option_keys = OptionKeys({'box_pixel_weight', 'saturation_guard'})

    saturation_guard = None

    def init_training_settings(self):
        super().init_training_settings()
        train_opt = self.opt['train']
        self.saturation_guard = SaturationGuard.from_options(train_opt.get('saturation_guard'))
        self.box_pixel_weight = float(train_opt.get('box_pixel_weight', 1.0))
        if self.box_pixel_weight < 0:
            raise OptionError(f'TTSRInpaintModel: train.box_pixel_weight must be >= 0, got {self.box_pixel_weight}')
        if self.box_pixel_weight != 1:
            if self.cri_pix is None:
                raise OptionError('TTSRInpaintModel: train.box_pixel_weight weights pixel_opt, which is missing')
            if 'weight' not in inspect.signature(self.cri_pix.forward).parameters:
                raise OptionError(f"TTSRInpaintModel: train.box_pixel_weight needs a pixel loss taking weight= "
                                  f"(L1Loss, MSELoss, CharbonnierLoss); {type(self.cri_pix).__name__} does not")
            self.cri_pix = RegionWeightedPixelLoss(self.cri_pix, self.box_pixel_weight, lambda: self.mask)

    def optimize_parameters(self, current_iter):
        super().optimize_parameters(current_iter)
        with torch.no_grad():
            stats = {}
            if self.mask is not None:
                # on the pixel loss's scale (pixel_value_range), so they read next to l_g_pix
                error = (self.output.detach() - self.gt).abs().mean(dim=1, keepdim=True) * self.pixel_span
                inside = self.mask.to(error.dtype)
                stats['l_pix_box'] = (error * inside).sum() / inside.sum().clamp_min(1)
                stats['l_pix_rest'] = (error * (1 - inside)).sum() / (1 - inside).sum().clamp_min(1)
            excess = None
            if self.saturation_guard is not None:
                excess = torch.tensor(self.saturation_guard.excess(self.output, self.gt), device=self.device)
                if self.opt.get('dist') and dist.is_available() and dist.is_initialized():
                    dist.all_reduce(excess)  # every rank takes the same decision, so none waits alone
                    excess /= dist.get_world_size()
                stats['out_saturated'] = excess
            if stats:
                self.log_dict.update(self.reduce_loss_dict(stats))
        if excess is not None:
            self.saturation_guard.check(excess.item(), f'iteration {current_iter}')

    def extra_training_state(self):
        state = super().extra_training_state()
        state['saturation_streak'] = torch.tensor(self.saturation_guard.streak if self.saturation_guard else 0)
        return state

    def load_extra_training_state(self, state):
        super().load_extra_training_state(state)
        if self.saturation_guard is not None and 'saturation_streak' in state:
            self.saturation_guard.streak = int(state['saturation_streak'])

    def validation_extras(self):
        return (MaskedMetrics(), SaturatedShare(self.saturation_guard))
