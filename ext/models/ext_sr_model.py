"""BasicSR's SRModel with this package's training speed options and EMA warm-up (the ESRGAN PSNR stage)."""
from collections import OrderedDict

from basicsr.models.sr_model import SRModel
from ext.models.ema_schedule import EMASchedule
from ext.models.policy_hooks import PolicyHooks
from ext.models.train_speed import TrainSpeed
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
class ExtSRModel(PolicyHooks, SRModel):
    """Single-image SR trained on pixel (+ perceptual) losses: BasicSR's ``SRModel`` step (the PSNR stage
    of ESRGAN, Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks",
    ECCVW 2018) with the options BasicSR lacks. Same losses, logs (``l_pix``, ``l_percep``,
    ``l_style``), checkpoints and validation as ``SRModel``.

    Option keys, ``train``: SRModel's (``optim_g``, ``scheduler``, ``total_iter``, ``warmup_iter``,
    ``ema_decay``, ``pixel_opt``, ``perceptual_opt``), those of its policies: ``ema_warmup``
    (:class:`~ext.models.ema_schedule.EMASchedule`) and the speed keys
    (:class:`~ext.models.train_speed.TrainSpeed`: ``use_amp``, ``amp_bf16``, ``use_channels_last``,
    ``use_compile``, ``compile_mode``, ``compile_backend``, ``accum_iter``, ``fast_matmul``): autocast
    around the generator forward, the losses in float32 (the VGG features of the perceptual loss
    included).
    """

    policies = (TrainSpeed, EMASchedule)

    def __init__(self, opt):
        self.speed, self.ema = TrainSpeed(opt), EMASchedule(opt)
        super().__init__(opt)
        self.speed.setup(self)

    def optimize_parameters(self, current_iter):
        self.speed.accumulate(self, self.train_step)
        self.ema.update(self, current_iter)

    def train_step(self):
        """One generator step on the current (micro-)batch: the pixel and perceptual losses."""
        self.speed.zero_grad(self.optimizer_g)
        with self.speed.autocast():
            self.output = self.net_g(self.lq)
        loss_dict = pixel_and_perceptual_terms(self, self.output.float(), self.gt)
        self.speed.backward(sum(loss_dict.values()), self.optimizer_g, terms=loss_dict)
        self.speed.step(self.optimizer_g)
        self.log_dict = self.reduce_loss_dict(loss_dict)
