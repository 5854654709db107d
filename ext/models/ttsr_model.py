"""TTSR training: reconstruction warm-up, then reconstruction + perceptual + transferal + GAN losses."""
from collections import OrderedDict

import torch

from basicsr.losses import build_loss
from basicsr.models.srgan_model import SRGANModel
from ext.errors import OptionError
from ext.models.ema_schedule import EMASchedule
from ext.models.gan_setup import build_ema_and_discriminator
from ext.models.option_keys import OptionKeys
from ext.models.policy_hooks import PolicyHooks
from ext.models.train_speed import TrainSpeed, mean_logs
from ext.registry import register


def _set_requires_grad(net, flag):
    for param in net.parameters():
        param.requires_grad = flag


@register()
class TTSRModel(PolicyHooks, SRGANModel):
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

    Option keys, ``train``: SRGANModel's (``ema_decay``, ``optim_g``, ``optim_d``, ``scheduler``,
    ``total_iter``, ``warmup_iter``), ``ema_warmup`` (:class:`~ext.models.ema_schedule.EMASchedule`),
    ``pixel_opt``, ``perceptual_opt``, ``tpl_opt``, ``gan_opt`` (``TTSRGANLoss`` for WGAN-GP; any
    BasicSR ``GANLoss`` also works), ``pixel_init_iters`` (0),
    ``disc_repeat`` (1), ``d_steps_first`` (false), ``extractor_lr`` (learning rate of the texture
    extractor, a second parameter group of ``optim_g``; default ``optim_g.lr``; TTSR: 1e-5; 0 freezes it:
    no gradient is computed for it, as mmedit 0.x's GAN recipe never updated it),
    ``pixel_value_range`` (``[low, high]``, default [-1, 1]: the value range the ``pixel_opt`` loss
    compares output and GT in; both upstream recipes take their L1 on [-1, 1] images, twice its value
    on BasicSR's [0, 1], while their perceptual and transferal losses see [0, 1], as here).
    The speed keys of :class:`~ext.models.train_speed.TrainSpeed` (``use_amp``, ``amp_bf16``,
    ``use_channels_last``, ``use_compile``, ``use_compile_d``, ``compile_mode``, ``compile_backend``,
    ``accum_iter``, ``fast_matmul``): autocast around the generator (texture search included) and discriminator
    forwards; the pixel, perceptual (VGG) and transferal perceptual losses and the WGAN-GP penalty in
    float32. ``accum_iter`` splits ``lq``, ``gt``, ``ref``, ``lq_up``, ``ref_down_up`` and ``mask``;
    every discriminator step (``disc_repeat`` per iteration) uses the gradient of all micro-batches, and
    with ``d_steps_first`` each micro-batch's output for D comes from an extra no-grad generator forward
    (D must step before the generator's loss, which needs every micro-batch's output first).
    Validation metrics are BasicSR's: ``calculate_psnr``/``calculate_ssim`` with
    ``test_y_channel: true, crop_border: 0`` (TTSR paper) or ``false, 4`` (MMagic's RGB protocol).
    """

    pixel_low, pixel_span = -1.0, 2.0  # pixel_value_range [-1, 1] until the training options say otherwise
    policies = (TrainSpeed, EMASchedule)
    train_option_keys = OptionKeys({'pixel_init_iters', 'disc_repeat', 'd_steps_first', 'extractor_lr',
                                    'pixel_value_range'})

    def __init__(self, opt):
        self.speed = TrainSpeed(opt, batch_keys=('lq', 'gt', 'ref', 'lq_up', 'ref_down_up', 'mask'))
        self.ema = EMASchedule(opt)
        super().__init__(opt)
        self.speed.setup(self)

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
        extractor_lr = train_opt.get('extractor_lr', lr)
        if extractor_lr == 0:  # frozen: no gradient is computed for it (half the time of a small TTSR)
            _set_requires_grad(self.extractor, False)
        extractor_ids = {id(p) for p in self.extractor.parameters()}
        main = [p for p in self.net_g.parameters() if id(p) not in extractor_ids and p.requires_grad]
        extractor = [p for p in self.extractor.parameters() if p.requires_grad]
        groups = [{'params': main}]
        if extractor:
            groups.append({'params': extractor, 'lr': extractor_lr})
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

    def generate(self, need_textures):
        """The generator forward on the current (micro-)batch under autocast: ``(output, soft attention,
        textures)``, the last two None without ``need_textures``."""
        with self.speed.autocast():
            result = self.net_g(self.lq, self.ref, self.lq_up, self.ref_down_up, return_textures=need_textures)
        return result if need_textures else (result, None, None)

    def optimize_discriminator(self, loss_dict, fakes):
        """``disc_repeat`` D steps, each on the summed gradient of every micro-batch's (gt, ``fakes[i]``)."""
        _set_requires_grad(self.net_d, True)
        for _ in range(self.disc_repeat):
            logs = []
            for index in self.speed.micro_batches(self):
                self.speed.zero_grad(self.optimizer_d)
                fake = fakes[index]
                with self.speed.autocast():  # TTSRGANLoss runs its gradient penalty in float32 itself
                    if hasattr(self.cri_gan, 'discriminator_loss'):
                        l_d_total, terms = self.cri_gan.discriminator_loss(self.net_d, self.gt, fake)
                    else:  # BasicSR GANLoss
                        pred_real, pred_fake = self.net_d(self.gt).float(), self.net_d(fake).float()
                        terms = {'l_d_real': self.cri_gan(pred_real, True, is_disc=True),
                                 'l_d_fake': self.cri_gan(pred_fake, False, is_disc=True),
                                 'out_d_real': pred_real.detach().mean(), 'out_d_fake': pred_fake.detach().mean()}
                        l_d_total = terms['l_d_real'] + terms['l_d_fake']
                self.speed.backward(l_d_total, self.optimizer_d, terms=terms)
                self.speed.step(self.optimizer_d)
                logs.append({k: v.detach() for k, v in terms.items()})
        loss_dict.update(mean_logs(logs))

    def generator_terms(self, warmup, soft_attention, textures):
        """G's loss terms on ``self.output`` (float32; VGG-based ones with autocast off)."""
        output = self.output.float()
        terms = OrderedDict()
        if self.cri_pix is not None:
            terms['l_g_pix'] = self.cri_pix(self.to_pixel_range(output), self.to_pixel_range(self.gt))
        if not warmup:
            if self.cri_perceptual is not None:
                with self.speed.full_precision():
                    percep = self.cri_perceptual(output, self.gt)
                percep = percep[0] if isinstance(percep, tuple) else percep  # BasicSR's returns (percep, style)
                if percep is not None:
                    terms['l_g_percep'] = percep
            if self.cri_tpl is not None:
                attention = soft_attention.float() if soft_attention is not None else None
                with self.speed.full_precision():
                    terms['l_g_tpl'] = self.cri_tpl(self.texture_features(output), [t.float() for t in textures],
                                                    attention)
            if self.cri_gan is not None:
                with self.speed.autocast():
                    prediction = self.net_d(self.output)
                terms['l_g_gan'] = self.cri_gan(prediction.float(), True, is_disc=False)
        return terms

    def optimize_parameters(self, current_iter):
        # whole-iteration phases, each looping over the micro-batches: D may step before G, disc_repeat times
        self.speed.prepare_batch(self)
        warmup = self.in_warmup(current_iter)
        need_textures = self.cri_tpl is not None and not warmup
        train_gan = self.net_d is not None and not warmup
        loss_dict = OrderedDict()
        whole = None  # the one forward of an unsplit iteration whose D steps first
        if train_gan and self.d_steps_first:
            if self.speed.accum_iter > 1:
                with torch.no_grad():
                    fakes = [self.generate(False)[0] for _ in self.speed.micro_batches(self)]
            else:
                whole = self.generate(need_textures)
                fakes = [whole[0].detach()]
            self.optimize_discriminator(loss_dict, fakes)

        if self.net_d is not None:
            _set_requires_grad(self.net_d, False)
        logs, outputs = [], []
        for _ in self.speed.micro_batches(self):
            self.speed.zero_grad(self.optimizer_g)
            self.output, soft_attention, textures = whole if whole is not None else self.generate(need_textures)
            terms = self.generator_terms(warmup, soft_attention, textures)
            if terms:
                l_g_total = sum(terms.values())
                self.speed.backward(l_g_total, self.optimizer_g, terms=terms)
                self.speed.step(self.optimizer_g)
                terms['l_g_total'] = l_g_total
            else:
                terms['l_g_total'] = torch.zeros((), device=self.device)
            logs.append({k: v.detach() for k, v in terms.items()})
            outputs.append(self.output.detach())
        self.output = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
        loss_dict.update(mean_logs(logs))

        if train_gan and not self.d_steps_first:
            self.optimize_discriminator(loss_dict, [output.detach() for output in outputs])
        self.log_dict = self.reduce_loss_dict(loss_dict)
        self.ema.update(self, current_iter)

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
