"""TTSR training: reconstruction warm-up, then reconstruction + perceptual + transferal + GAN losses."""
from collections import OrderedDict

import torch

from ext import compat  # noqa: F401  (shims before basicsr)
from basicsr.losses import build_loss
from basicsr.models.srgan_model import SRGANModel
from ext.models.ema_warmup import EMAWarmupMixin
from ext.models.gan_setup import build_ema_and_discriminator
from ext.options import OptionError
from ext.registry import register


def _set_requires_grad(net, flag):
    for param in net.parameters():
        param.requires_grad = flag


@register()
class TTSRModel(EMAWarmupMixin, SRGANModel):
    """Reference-based x4 SR with TTSR (Yang et al., "Learning Texture Transformer Network for
    Image Super-Resolution", CVPR 2020), for ``network_g: {type: TTSRNet}``.

    Batches hold ``lq``, ``ref`` and, when the pipeline computes them, ``lq_up``, ``ref_down_up``,
    ``gt`` (training/validation) and an optional ``mask`` (kept as ``self.mask`` for subclasses;
    unused here). Without ``network_d`` this trains the reconstruction-only TTSR-rec.

    Each iteration: one generator forward; for the first ``pixel_init_iters`` *global* iterations
    only ``pixel_opt`` is used (so the warm-up survives a resume, unlike MMagic's counter), after that
    also ``perceptual_opt``, ``tpl_opt`` (transferal perceptual) and ``gan_opt``; then (after the
    warm-up) ``disc_repeat`` discriminator steps on the detached output, before the generator step
    with ``d_steps_first`` (original TTSR) or after it (MMagic).

    Option keys, ``train``: SRGANModel's (``ema_decay``, ``ema_warmup``, ``optim_g``, ``optim_d``, ``scheduler``,
    ``total_iter``, ``warmup_iter``) and ``pixel_opt``, ``perceptual_opt``, ``tpl_opt``, ``gan_opt``
    (``TTSRGANLoss`` for WGAN-GP; any BasicSR ``GANLoss`` also works), ``pixel_init_iters`` (0),
    ``disc_repeat`` (1), ``d_steps_first`` (false), ``extractor_lr`` (learning rate of the texture
    extractor, a second parameter group of ``optim_g``; default ``optim_g.lr``; TTSR: 1e-5),
    ``pixel_value_range`` (``[low, high]``, default [-1, 1]: the value range the ``pixel_opt`` loss
    compares output and GT in; both upstream recipes take their L1 on [-1, 1] images, twice its value
    on BasicSR's [0, 1], while their perceptual and transferal losses see [0, 1], as here).
    Validation metrics are BasicSR's: ``calculate_psnr``/``calculate_ssim`` with
    ``test_y_channel: true, crop_border: 0`` (TTSR paper) or ``false, 4`` (MMagic's RGB protocol).
    """

    pixel_low, pixel_span = -1.0, 2.0  # pixel_value_range [-1, 1] until the training options say otherwise
    train_option_keys = frozenset({'pixel_init_iters', 'disc_repeat', 'd_steps_first', 'extractor_lr',
                                   'pixel_value_range'}) | EMAWarmupMixin.ema_option_keys

    def init_training_settings(self):
        train_opt = self.opt['train']
        build_ema_and_discriminator(self)

        def loss(key):
            return build_loss(train_opt[key]).to(self.device) if train_opt.get(key) else None

        self.cri_pix, self.cri_perceptual = loss('pixel_opt'), loss('perceptual_opt')
        self.cri_tpl, self.cri_gan = loss('tpl_opt'), loss('gan_opt')
        self.pixel_init_iters = int(train_opt.get('pixel_init_iters', 0))
        self.disc_repeat = int(train_opt.get('disc_repeat', 1))
        self.d_steps_first = bool(train_opt.get('d_steps_first', False))
        problems = []
        if (self.net_d is None) != (self.cri_gan is None):
            problems.append('train.gan_opt and network_d: give both (GAN training) or neither (reconstruction only)')
        if self.pixel_init_iters > 0 and self.cri_pix is None:
            problems.append('train.pixel_init_iters: the warm-up trains pixel_opt only, but pixel_opt is missing')
        if not any((self.cri_pix, self.cri_perceptual, self.cri_tpl, self.cri_gan)):
            problems.append('train: no loss configured (pixel_opt, perceptual_opt, tpl_opt, gan_opt)')
        if self.disc_repeat < 1:
            problems.append(f'train.disc_repeat: must be >= 1, got {self.disc_repeat}')
        value_range = train_opt.get('pixel_value_range', [-1, 1])
        try:
            low, high = (float(v) for v in value_range)
        except (TypeError, ValueError):
            low = high = None
        if low is None or not low < high:
            problems.append(f'train.pixel_value_range: expected [low, high] with low < high, got {value_range!r}')
        else:
            self.pixel_low, self.pixel_span = low, high - low
        if problems:
            raise OptionError('TTSRModel: ' + '; '.join(problems))
        self.setup_optimizers()
        self.setup_schedulers()

    @property
    def extractor(self):
        return self.get_bare_model(self.net_g).extractor

    def setup_optimizers(self):
        train_opt = self.opt['train']
        optim_opt = dict(train_opt['optim_g'])
        optim_type, lr = optim_opt.pop('type'), optim_opt.pop('lr')
        extractor_ids = {id(p) for p in self.extractor.parameters()}
        main = [p for p in self.net_g.parameters() if id(p) not in extractor_ids and p.requires_grad]
        extractor = [p for p in self.extractor.parameters() if p.requires_grad]
        groups = [{'params': main}]
        if extractor:
            groups.append({'params': extractor, 'lr': train_opt.get('extractor_lr', lr)})
        self.optimizer_g = self.get_optimizer(optim_type, groups, lr, **optim_opt)
        self.optimizers.append(self.optimizer_g)
        if self.net_d is not None:
            optim_opt = dict(train_opt['optim_d'])
            optim_type = optim_opt.pop('type')
            self.optimizer_d = self.get_optimizer(optim_type, self.net_d.parameters(), **optim_opt)
            self.optimizers.append(self.optimizer_d)

    def feed_data(self, data):
        def get(key):
            return data[key].to(self.device) if data.get(key) is not None else None

        self.lq, self.ref = get('lq'), get('ref')
        self.lq_up, self.ref_down_up, self.mask = get('lq_up'), get('ref_down_up'), get('mask')
        if 'gt' in data:
            self.gt = get('gt')

    def to_pixel_range(self, image):
        """A [0, 1] image in ``pixel_value_range``, where the pixel loss compares."""
        return image * self.pixel_span + self.pixel_low

    def in_warmup(self, current_iter):
        return current_iter <= self.pixel_init_iters

    def texture_features(self, image):
        """Texture-extractor features of ``image`` with the extractor's current weights, frozen
        (upstream's ``LTE_copy``): the gradient reaches ``image`` only."""
        extractor = self.extractor
        frozen = {name: param.detach() for name, param in extractor.named_parameters()}
        return torch.func.functional_call(extractor, frozen, (image, ))

    def optimize_discriminator(self, loss_dict):
        _set_requires_grad(self.net_d, True)
        fake = self.output.detach()
        for _ in range(self.disc_repeat):
            self.optimizer_d.zero_grad()
            if hasattr(self.cri_gan, 'discriminator_loss'):
                l_d_total, terms = self.cri_gan.discriminator_loss(self.net_d, self.gt, fake)
            else:  # BasicSR GANLoss
                pred_real, pred_fake = self.net_d(self.gt), self.net_d(fake)
                terms = {'l_d_real': self.cri_gan(pred_real, True, is_disc=True),
                         'l_d_fake': self.cri_gan(pred_fake, False, is_disc=True),
                         'out_d_real': pred_real.detach().mean(), 'out_d_fake': pred_fake.detach().mean()}
                l_d_total = terms['l_d_real'] + terms['l_d_fake']
            l_d_total.backward()
            self.optimizer_d.step()
        loss_dict.update(terms)

    def optimize_parameters(self, current_iter):
        warmup = self.in_warmup(current_iter)
        need_textures = self.cri_tpl is not None and not warmup
        result = self.net_g(self.lq, self.ref, self.lq_up, self.ref_down_up, return_textures=need_textures)
        self.output, soft_attention, textures = result if need_textures else (result, None, None)
        loss_dict = OrderedDict()
        train_gan = self.net_d is not None and not warmup
        if train_gan and self.d_steps_first:
            self.optimize_discriminator(loss_dict)

        if self.net_d is not None:
            _set_requires_grad(self.net_d, False)
        self.optimizer_g.zero_grad()
        terms = OrderedDict()
        if self.cri_pix is not None:
            terms['l_g_pix'] = self.cri_pix(self.to_pixel_range(self.output), self.to_pixel_range(self.gt))
        if not warmup:
            if self.cri_perceptual is not None:
                percep = self.cri_perceptual(self.output, self.gt)
                percep = percep[0] if isinstance(percep, tuple) else percep  # BasicSR's returns (percep, style)
                if percep is not None:
                    terms['l_g_percep'] = percep
            if self.cri_tpl is not None:
                terms['l_g_tpl'] = self.cri_tpl(self.texture_features(self.output), textures, soft_attention)
            if self.cri_gan is not None:
                terms['l_g_gan'] = self.cri_gan(self.net_d(self.output), True, is_disc=False)
        l_g_total = sum(terms.values()) if terms else None
        if l_g_total is not None:
            l_g_total.backward()
            self.optimizer_g.step()
        loss_dict.update(terms)
        loss_dict['l_g_total'] = l_g_total.detach() if terms else torch.zeros((), device=self.device)

        if train_gan and not self.d_steps_first:
            self.optimize_discriminator(loss_dict)
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def test(self):
        # The bare network: under DDP the wrapper's forward broadcasts buffers, a collective that rank 0
        # would run alone during validation.
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            self.output = net(self.lq, self.ref, self.lq_up, self.ref_down_up)
        net.train(was_training)

    def save(self, epoch, current_iter):
        if hasattr(self, 'net_g_ema'):
            self.save_network([self.net_g, self.net_g_ema], 'net_g', current_iter, param_key=['params', 'params_ema'])
        else:
            self.save_network(self.net_g, 'net_g', current_iter)
        if self.net_d is not None:
            self.save_network(self.net_d, 'net_d', current_iter)
        self.save_training_state(epoch, current_iter)
