"""BasicSR's ESRGANModel (relativistic average GAN) with this package's speed options and EMA warm-up."""
from collections import OrderedDict

import torch

from basicsr.models.srgan_model import SRGANModel
from ext.models.ema_schedule import EMASchedule
from ext.models.ext_sr_model import pixel_and_perceptual_terms
from ext.models.policy_hooks import PolicyHooks
from ext.models.train_speed import TrainSpeed
from ext.registry import register


def _set_requires_grad(net, flag):
    for param in net.parameters():
        param.requires_grad = flag


@register()
class ExtESRGANModel(PolicyHooks, SRGANModel):
    """ESRGAN's GAN stage (Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial
    Networks", ECCVW 2018): pixel + perceptual + relativistic average GAN loss for G
    (``(GAN(D(gt) - mean D(G(x)), fake) + GAN(D(G(x)) - mean D(gt), real)) / 2``), then D on the
    relativistic real and fake terms, each halved and backpropagated separately; the EMA after both. The
    same losses, logs (``l_g_pix``, ``l_g_percep``, ``l_g_gan``, ``l_d_real``, ``l_d_fake``,
    ``out_d_real``, ``out_d_fake``) and checkpoints as BasicSR's ``ESRGANModel``.

    Option keys, ``train``: SRGANModel's (``optim_g``/``optim_d``, ``scheduler``, ``total_iter``,
    ``warmup_iter``, ``ema_decay``, ``pixel_opt``, ``perceptual_opt``, ``gan_opt``, ``net_d_iters``,
    ``net_d_init_iters``), ``ema_warmup`` (:class:`~ext.models.ema_schedule.EMASchedule`) and the speed
    keys of :class:`~ext.models.train_speed.TrainSpeed`, ``use_compile_d`` included: autocast around the
    G and D forwards, every loss in float32. With ``accum_iter`` the relativistic means are taken per
    micro-batch (D(gt)'s mean over the micro-batch), and the VGG discriminator's BatchNorm sees
    micro-batches: close to, not equal to, one big batch.
    """

    policies = (TrainSpeed, EMASchedule)

    def __init__(self, opt):
        self.speed, self.ema = TrainSpeed(opt), EMASchedule(opt)
        super().__init__(opt)
        self.speed.setup(self)

    def _discriminate(self, image):
        with self.speed.autocast():
            return self.net_d(image).float()

    def optimize_parameters(self, current_iter):
        self.speed.accumulate(self, self.train_step, current_iter)
        self.ema.update(self, current_iter)

    def train_step(self, current_iter):
        """G's step (after ``net_d_init_iters``, every ``net_d_iters``), then D's, on the current
        (micro-)batch."""
        loss_dict = OrderedDict()
        _set_requires_grad(self.net_d, False)
        self.speed.zero_grad(self.optimizer_g)
        with self.speed.autocast():
            self.output = self.net_g(self.lq)
        if current_iter % self.net_d_iters == 0 and current_iter > self.net_d_init_iters:
            loss_dict.update(pixel_and_perceptual_terms(self, self.output.float(), self.gt, prefix='l_g_'))
            real_d_pred = self._discriminate(self.gt).detach()
            fake_g_pred = self._discriminate(self.output)
            l_g_real = self.cri_gan(real_d_pred - torch.mean(fake_g_pred), False, is_disc=False)
            l_g_fake = self.cri_gan(fake_g_pred - torch.mean(real_d_pred), True, is_disc=False)
            loss_dict['l_g_gan'] = (l_g_real + l_g_fake) / 2
            self.speed.backward(sum(loss_dict.values()), self.optimizer_g, terms=loss_dict)
            self.speed.step(self.optimizer_g)

        _set_requires_grad(self.net_d, True)
        self.speed.zero_grad(self.optimizer_d)
        fake = self.output.detach()
        # real and fake backpropagated separately, each against the other's detached mean (as upstream)
        fake_d_pred = self._discriminate(fake).detach()
        real_d_pred = self._discriminate(self.gt)
        l_d_real = self.cri_gan(real_d_pred - torch.mean(fake_d_pred), True, is_disc=True) * 0.5
        self.speed.backward(l_d_real, self.optimizer_d, terms={'l_d_real': l_d_real})
        fake_d_pred = self._discriminate(fake)
        l_d_fake = self.cri_gan(fake_d_pred - torch.mean(real_d_pred.detach()), False, is_disc=True) * 0.5
        self.speed.backward(l_d_fake, self.optimizer_d, terms={'l_d_fake': l_d_fake})
        self.speed.step(self.optimizer_d)
        loss_dict.update(l_d_real=l_d_real, l_d_fake=l_d_fake, out_d_real=torch.mean(real_d_pred.detach()),
                         out_d_fake=torch.mean(fake_d_pred.detach()))
        self.log_dict = self.reduce_loss_dict(loss_dict)
