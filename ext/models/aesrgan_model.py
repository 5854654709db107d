"""A-ESRGAN training: Real-ESRGAN's synthetic data, a GAN loss summed over every discriminator output."""
from collections import OrderedDict
from numbers import Real

import torch

from basicsr.losses.loss_util import get_refined_artifact_map
from basicsr.models.srgan_model import SRGANModel
from ext.errors import OptionError
from ext.models.ema_schedule import EMASchedule
from ext.models.image_validation import SideBySideGrids
from ext.models.option_keys import OptionKeys
from ext.models.policy_hooks import PolicyHooks
from ext.models.realesrgan_synthesis import RealESRGANSynthesis
from ext.models.train_speed import TrainSpeed
from ext.registry import register


def _as_list(predictions):
    return list(predictions) if isinstance(predictions, (list, tuple)) else [predictions]


def _scale_logs(prefix, values, reduce=sum):
    """``{prefix_scale0: v0, ..., prefix: reduce(values)}``; no per-scale entries for a single output."""
    logs = OrderedDict()
    if len(values) > 1:
        logs.update((f'{prefix}_scale{index}', value) for index, value in enumerate(values))
    logs[prefix] = reduce(values)
    return logs


def _mean(values):
    return sum(values) / len(values)


@register(aliases=('AESRGANModel', ))
class MultiScaleRealESRGANModel(PolicyHooks, SRGANModel):
    """Real-ESRGAN GAN training with one or several discriminators' outputs (A-ESRGAN).

    Papers: Wei et al., "A-ESRGAN: Training Real-World Blind Super-Resolution with Attention U-Net
    Discriminators", arXiv:2112.10046; Wang et al., "Real-ESRGAN", ICCVW 2021. Also registered under
    A-ESRGAN's name ``AESRGANModel``. Runs on CPU and GPU (BasicSR's ``RealESRGANModel`` is CUDA-only).

    Each iteration synthesizes LQ images from GT with Real-ESRGAN's second-order degradations, passes
    them through the training-pair queue (:class:`~ext.models.realesrgan_synthesis.RealESRGANSynthesis`),
    then (every ``net_d_iters`` after ``net_d_init_iters``) updates G with pixel (+ optional LDL),
    perceptual and GAN losses, updates D, and updates the EMA generator. ``network_d`` may return one
    logit map (``UNetDiscriminatorAesrgan``) or a list of them (``multiscale``); the GAN loss is
    ``sum_i w_i * GANLoss(pred_i)`` on both the G and the D side, as upstream when every ``w_i`` is 1.
    Logged: ``l_g_gan``, ``l_d_real``, ``l_d_fake`` (weighted sums) and, with several outputs, their
    ``*_scale<i>`` terms, plus ``out_d_real``/``out_d_fake`` (mean logit, averaged over scales) and their
    ``*_scale<i>`` values. Validation also saves ``lq | output | gt`` grids.

    Option keys, top level: ``l1_gt_usm`` (default true), ``percep_gt_usm`` (true), ``gan_gt_usm``
    (false): train each loss against the USM-sharpened GT or the plain GT; the synthesis's (``gt_size``,
    ``queue_size``, ``high_order_degradation`` and the degradation keys). ``train``: SRGANModel's
    (``ema_decay``, ``optim_g``/``optim_d``, ``pixel_opt``, ``ldl_opt``, ``perceptual_opt``, ``gan_opt``,
    ``net_d_iters``, ``net_d_init_iters``, ...), ``gan_scale_weights`` (list, one weight per
    discriminator output, finest first; default 1 each), ``ema_warmup``
    (:class:`~ext.models.ema_schedule.EMASchedule`) and the speed keys of
    :class:`~ext.models.train_speed.TrainSpeed` (autocast around the forwards, losses in float32).
    """

    policies = (TrainSpeed, EMASchedule, RealESRGANSynthesis)
    option_keys = OptionKeys({'l1_gt_usm', 'percep_gt_usm', 'gan_gt_usm'})
    train_option_keys = OptionKeys({'gan_scale_weights'})

    def __init__(self, opt):
        self.speed = TrainSpeed(opt, batch_keys=('lq', 'gt', 'gt_usm'))
        self.ema = EMASchedule(opt)
        super().__init__(opt)
        self.speed.setup(self)
        self.synthesis = RealESRGANSynthesis(opt, self.device, self.is_train)

    def init_training_settings(self):
        if not self.opt['train'].get('gan_opt'):
            raise OptionError('train.gan_opt is missing: the GAN model needs a GAN loss (e.g. type: GANLoss, '
                              'gan_type: vanilla, loss_weight: 0.1)')
        super().init_training_settings()
        net_d = self.get_bare_model(self.net_d)
        num_outputs = getattr(net_d, 'num_D', 1)
        weights = self.opt['train'].get('gan_scale_weights')
        if weights is None:
            weights = [1.0] * num_outputs
        if (not isinstance(weights, (list, tuple)) or len(weights) != num_outputs
                or not all(isinstance(w, Real) and w >= 0 for w in weights)):
            raise OptionError(f'train.gan_scale_weights must be a list of {num_outputs} non-negative numbers (one per '
                              f'output of network_d {self.opt["network_d"]["type"]}, finest first), got {weights!r}')
        self.gan_scale_weights = [float(w) for w in weights]
        multiple = getattr(net_d, 'required_multiple', None)
        gt_size = self.opt.get('gt_size')
        if multiple and gt_size and self.opt.get('high_order_degradation', True) and gt_size % multiple:
            raise OptionError(f'gt_size {gt_size} is not a multiple of {multiple}, which network_d '
                              f'{self.opt["network_d"]["type"]} needs; use e.g. gt_size: '
                              f'{max(multiple, gt_size - gt_size % multiple)}')

    @torch.no_grad()
    def feed_data(self, data):
        if self.is_train and self.synthesis.enabled:
            # the LQ from the sharpened GT (Real-ESRGAN); each loss picks its target (_targets)
            self.lq, self.gt = self.synthesis.training_pair(data, sharpen_source=True, sharpen_target=False)
        else:
            super().feed_data(data)  # the dataset's own pair
        if 'gt' in data:
            self.gt_usm = self.synthesis.usm_sharpener(self.gt)  # after the queue: gt may be another batch's

    def resumable_parts(self):
        return {**super().resumable_parts(), 'pair_queue': self.synthesis.pair_queue}

    def validation_extras(self):
        return (SideBySideGrids(), )

    def _discriminate(self, image):
        with self.speed.autocast():
            predictions = [p.float() for p in _as_list(self.net_d(image))]
        if len(predictions) != len(self.gan_scale_weights):
            raise ValueError(f'network_d returned {len(predictions)} outputs but train.gan_scale_weights has '
                             f'{len(self.gan_scale_weights)} weights')
        return predictions

    def _gan_terms(self, predictions, target_is_real, is_disc):
        return [weight * self.cri_gan(prediction, target_is_real, is_disc=is_disc)
                for weight, prediction in zip(self.gan_scale_weights, predictions)]

    def _targets(self):

        def pick(key, default):
            return self.gt_usm if self.opt.get(key, default) else self.gt

        return pick('l1_gt_usm', True), pick('percep_gt_usm', True), pick('gan_gt_usm', False)

    def optimize_parameters(self, current_iter):
        self.speed.accumulate(self, self.train_step, current_iter)
        self.ema.update(self, current_iter)

    def train_step(self, current_iter):
        """G's step (held during ``net_d_init_iters``), then D's, on the current (micro-)batch."""
        l1_gt, percep_gt, gan_gt = self._targets()
        loss_dict = OrderedDict()

        # generator
        for p in self.net_d.parameters():
            p.requires_grad = False
        self.speed.zero_grad(self.optimizer_g)
        with self.speed.autocast():
            self.output = self.net_g(self.lq)
        output = self.output.float()  # the losses in float32
        if current_iter % self.net_d_iters == 0 and current_iter > self.net_d_init_iters:
            l_g_total = 0
            if self.cri_pix:
                loss_dict['l_g_pix'] = self.cri_pix(output, l1_gt)
                l_g_total = l_g_total + loss_dict['l_g_pix']
            if self.cri_ldl:
                with torch.no_grad():
                    with self.speed.autocast():
                        output_ema = self.net_g_ema(self.lq).float()
                weight = get_refined_artifact_map(self.gt, output, output_ema, 7)
                loss_dict['l_g_ldl'] = self.cri_ldl(weight * output, weight * self.gt)
                l_g_total = l_g_total + loss_dict['l_g_ldl']
            if self.cri_perceptual:
                l_g_percep, l_g_style = self.cri_perceptual(output, percep_gt)
                for name, value in (('l_g_percep', l_g_percep), ('l_g_style', l_g_style)):
                    if value is not None:
                        loss_dict[name] = value
                        l_g_total = l_g_total + value
            gan_terms = self._gan_terms(self._discriminate(self.output), True, is_disc=False)
            loss_dict.update(_scale_logs('l_g_gan', gan_terms))
            l_g_total = l_g_total + loss_dict['l_g_gan']
            self.speed.backward(l_g_total, self.optimizer_g, terms=loss_dict)
            self.speed.step(self.optimizer_g)

        # discriminator: real and fake backward separately, as upstream
        for p in self.net_d.parameters():
            p.requires_grad = True
        self.speed.zero_grad(self.optimizer_d)
        for kind, image, is_real in (('real', gan_gt, True), ('fake', self.output.detach().clone(), False)):
            predictions = self._discriminate(image)
            terms = self._gan_terms(predictions, is_real, is_disc=True)
            loss_dict.update(_scale_logs(f'l_d_{kind}', terms))
            loss_dict.update(_scale_logs(f'out_d_{kind}', [torch.mean(p.detach()) for p in predictions], _mean))
            self.speed.backward(loss_dict[f'l_d_{kind}'], self.optimizer_d, terms=loss_dict)
        self.speed.step(self.optimizer_d)
        self.log_dict = self.reduce_loss_dict(loss_dict)
