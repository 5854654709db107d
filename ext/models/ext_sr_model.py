"""BasicSR's SRModel with this package's training speed options and EMA warm-up (the ESRGAN PSNR stage)."""
from collections import OrderedDict

from basicsr.models.sr_model import SRModel
from ext.models.ema_warmup import EMAWarmupMixin
from ext.models.train_speed import TrainSpeedMixin
from ext.registry import register


def pixel_and_perceptual_terms(model, output, gt, prefix='l_'):
    """SRModel's loss terms on ``output`` (float32): ``cri_pix`` and ``cri_perceptual`` (percep and
    style) of ``model``, each present only when configured; ``{prefix + 'pix': ..., ...}``."""
    terms = OrderedDict()
    if model.cri_pix:
        terms[prefix + 'pix'] = model.cri_pix(output, gt)
    if model.cri_perceptual:
        percep, style = model.cri_perceptual(output, gt)
        for name, value in (('percep', percep), ('style', style)):
            if value is not None:
                terms[prefix + name] = value
    return terms


@register()
class ExtSRModel(TrainSpeedMixin, EMAWarmupMixin, SRModel):
    """Single-image SR trained on pixel (+ perceptual) losses: BasicSR's ``SRModel`` step (the PSNR stage
    of ESRGAN, Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks",
    ECCVW 2018) with the options BasicSR lacks. Same losses, logs (``l_pix``, ``l_percep``,
    ``l_style``), checkpoints and validation as ``SRModel``.

    Option keys, ``train``: SRModel's (``optim_g``, ``scheduler``, ``total_iter``, ``warmup_iter``,
    ``ema_decay``, ``pixel_opt``, ``perceptual_opt``), ``ema_warmup`` (see :mod:`ext.models.ema_warmup`)
    and the speed keys of :mod:`ext.models.train_speed` (``use_amp``, ``amp_bf16``,
    ``use_channels_last``, ``use_compile``, ``compile_mode``, ``compile_backend``, ``accum_iter``,
    ``fast_matmul``): autocast around the generator forward, the losses in float32 (the VGG features of
    the perceptual loss included).
    """

    train_option_keys = EMAWarmupMixin.ema_option_keys | TrainSpeedMixin.speed_option_keys

    def optimize_parameters(self, current_iter):
        self.zero_grad(self.optimizer_g)
        with self.autocast():
            self.output = self.net_g(self.lq)
        loss_dict = pixel_and_perceptual_terms(self, self.output.float(), self.gt)
        self.backward(sum(loss_dict.values()), self.optimizer_g)
        self.step(self.optimizer_g)
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
