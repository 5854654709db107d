"""Real-ESRNet: the generator pre-training stage of Real-ESRGAN / A-ESRGAN (pixel loss on synthetic data)."""
from basicsr.models.sr_model import SRModel
from ext.models.ema_warmup import EMAWarmupMixin
from ext.models.ext_sr_model import pixel_and_perceptual_terms
from ext.models.realesrgan_degradation import RealESRGANDataSynthesisMixin
from ext.models.train_speed import TrainSpeedMixin
from ext.registry import register


@register()
class RealESRNetPretrainModel(TrainSpeedMixin, EMAWarmupMixin, RealESRGANDataSynthesisMixin, SRModel):
    """Real-ESRNet: train the generator alone on Real-ESRGAN's synthetic degradations.

    Paper: Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
    Data", ICCVW 2021 (stage 1; its ``net_g`` initialises the A-ESRGAN generator). Same training as
    BasicSR's ``RealESRNetModel`` (``SRModel`` losses, EMA), but on any device.

    Option keys, top level: ``gt_usm`` (default true: USM-sharpen the GT, then make the LQ from it and
    train against it), ``gt_size``, ``queue_size``, ``high_order_degradation`` and the degradation keys
    (see :mod:`ext.models.realesrgan_degradation`). ``train``: SRModel's (``ema_decay``, ``ema_warmup`` (see :mod:`ext.models.ema_warmup`), ``optim_g``,
    ``scheduler``, ``total_iter``, ``pixel_opt``, ``perceptual_opt``, ...) and the speed keys of
    :mod:`ext.models.train_speed` (``use_amp``, ``amp_bf16``, ``use_channels_last``, ``use_compile``,
    ``compile_mode``, ``compile_backend``, ``accum_iter``, ``fast_matmul``).
    """

    option_keys = frozenset({'gt_usm'})
    train_option_keys = EMAWarmupMixin.ema_option_keys | TrainSpeedMixin.speed_option_keys

    def __init__(self, opt):
        super().__init__(opt)
        self.setup_data_synthesis()

    def degradation_source_and_target(self, gt):
        if self.opt.get('gt_usm', True):
            gt = self.usm_sharpener(gt)
        return gt, gt

    def optimize_parameters(self, current_iter):
        """SRModel's step (pixel + optional perceptual loss, EMA) through the speed helpers; the losses
        are computed in float32 on the (possibly half-precision) output."""
        self.zero_grad(self.optimizer_g)
        with self.autocast():
            self.output = self.net_g(self.lq)
        loss_dict = pixel_and_perceptual_terms(self, self.output.float(), self.gt)
        self.backward(sum(loss_dict.values()), self.optimizer_g)
        self.step(self.optimizer_g)
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
