"""Real-ESRNet: the generator pre-training stage of Real-ESRGAN / A-ESRGAN (pixel loss on synthetic data)."""
import torch

from ext.models.ext_sr_model import ExtSRModel
from ext.models.image_validation import SideBySideGrids
from ext.models.option_keys import OptionKeys
from ext.models.realesrgan_synthesis import RealESRGANSynthesis
from ext.registry import register


@register()
class RealESRNetPretrainModel(ExtSRModel):
    """Real-ESRNet: train the generator alone on Real-ESRGAN's synthetic degradations.

    Paper: Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
    Data", ICCVW 2021 (stage 1; its ``net_g`` initialises the A-ESRGAN generator). Same training as
    BasicSR's ``RealESRNetModel`` (``SRModel`` losses, EMA), but on any device: :class:`ExtSRModel`'s step
    on the pairs of :class:`~ext.models.realesrgan_synthesis.RealESRGANSynthesis`. Validation also saves
    ``lq | output | gt`` grids.

    Option keys, top level: ``gt_usm`` (default true: USM-sharpen the GT, then make the LQ from it and
    train against it) and the synthesis's (``gt_size``, ``queue_size``, ``high_order_degradation`` and the
    degradation keys). ``train``: :class:`ExtSRModel`'s (SRModel's, ``ema_warmup`` and the speed keys).
    """

    policies = ExtSRModel.policies + (RealESRGANSynthesis, )
    option_keys = OptionKeys({'gt_usm'})

    def __init__(self, opt):
        super().__init__(opt)
        self.synthesis = RealESRGANSynthesis(opt, self.device, self.is_train)

    @torch.no_grad()
    def feed_data(self, data):
        if not (self.is_train and self.synthesis.enabled):
            super().feed_data(data)  # the dataset's own pair
            return
        sharpen = self.opt.get('gt_usm', True)
        self.lq, self.gt = self.synthesis.training_pair(data, sharpen_source=sharpen, sharpen_target=sharpen)

    def resumable_parts(self):
        return {**super().resumable_parts(), 'pair_queue': self.synthesis.pair_queue}

    def validation_extras(self):
        return (SideBySideGrids(), )
