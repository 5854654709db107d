"""Real-ESRNet: the generator pre-training stage of Real-ESRGAN / A-ESRGAN (pixel loss on synthetic data)."""
from ext import compat  # noqa: F401  (shims before basicsr)
from basicsr.models.sr_model import SRModel
from ext.models.ema_warmup import EMAWarmupMixin
from ext.models.realesrgan_degradation import RealESRGANDataSynthesisMixin
from ext.registry import register


@register()
class RealESRNetPretrainModel(EMAWarmupMixin, RealESRGANDataSynthesisMixin, SRModel):
    """Real-ESRNet: train the generator alone on Real-ESRGAN's synthetic degradations.

    Paper: Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
    Data", ICCVW 2021 (stage 1; its ``net_g`` initialises the A-ESRGAN generator). Same training as
    BasicSR's ``RealESRNetModel`` (``SRModel`` losses, EMA), but on any device.

    Option keys, top level: ``gt_usm`` (default true: USM-sharpen the GT, then make the LQ from it and
    train against it), ``gt_size``, ``queue_size``, ``high_order_degradation`` and the degradation keys
    (see :mod:`ext.models.realesrgan_degradation`). ``train``: SRModel's (``ema_decay``, ``ema_warmup`` (see :mod:`ext.models.ema_warmup`), ``optim_g``,
    ``scheduler``, ``total_iter``, ``pixel_opt``, ``perceptual_opt``, ...).
    """

    train_option_keys = EMAWarmupMixin.ema_option_keys

    def __init__(self, opt):
        super().__init__(opt)
        self.setup_data_synthesis()

    def degradation_source_and_target(self, gt):
        if self.opt.get('gt_usm', True):
            gt = self.usm_sharpener(gt)
        return gt, gt
