"""pix2pix-style inpainting GAN (pix2pix U-Net and VGG19-encoder U-Net generators): L1 + perceptual +
conditional adversarial losses, a frozen-then-unfrozen encoder and a plateau rule on the
discriminator loss, with masked PSNR/SSIM and lq | output | gt grids at validation."""
from collections import OrderedDict

import torch
import torch.distributed as dist

from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from ext.errors import OptionError
from ext.models.ema_schedule import EMASchedule
from ext.models.gan_setup import build_ema_and_discriminator
from ext.models.image_validation import MaskedMetrics, SideBySideGrids
from ext.models.option_keys import OptionKeys
from ext.models.plateau_rule import LearningRatePlateau
from ext.models.policy_hooks import PolicyHooks
from ext.models.train_speed import TrainSpeed, mean_logs
from ext.registry import register


def _set_requires_grad(net, flag):
    for param in net.parameters():
        param.requires_grad = flag


@register()
class Pix2PixInpaintModel(PolicyHooks, SRModel):
    """Image inpainting with a conditional GAN: pix2pix (Isola et al., "Image-to-Image Translation
    with Conditional Adversarial Networks", CVPR 2017, https://arxiv.org/abs/1611.07004) and a U-Net
    whose encoder is ImageNet VGG19 (docs/methods/pix2pix_inpaint.md).

    Data: :class:`~ext.data.masked_image_dataset.MaskedImageDataset` batches (``lq`` = masked image,
    ``mask``, ``gt``). The generator sees ``cat(lq, mask)``; a conditional discriminator
    (``conditional_d``) sees ``cat(image, lq, mask)``, the image first. Each iteration: one
    generator forward, a discriminator step on the real and the detached generated image (its loss
    halved, as pix2pix), then the generator step on ``pixel_opt`` (``HoleWeightedL1Loss``, λ = 100,
    called with the mask), ``perceptual_opt`` (``InpaintPerceptualLoss``) and ``gan_opt`` (BasicSR's
    ``GANLoss``, ``vanilla`` or ``lsgan``).

    Option keys, ``train`` (besides ``optim_g``, ``optim_d``, ``scheduler``, ``total_iter``,
    ``warmup_iter``, ``ema_decay`` (the EMA copy averages the BatchNorm running statistics too, unlike
    upstream's: :class:`~ext.models.ema_schedule.EMASchedule` with ``average_buffers``), the losses):
        conditional_d (bool, true): the discriminator also sees the generator's input.
        freeze_encoder_iters (int, 0): the generator's pretrained encoder (``encoder_parameters()``
            of ``VGGUNetGenerator``) is frozen for the first N *global* iterations, then trained, so
            the other layers learn first; the schedule follows the iteration, so a resume
            keeps it. The encoder is always in ``optim_g`` (its own group, learning rate
            ``encoder_lr``, default ``optim_g.lr``); frozen, it has no gradient and Adam skips it.
        encoder_lr (float): learning rate of the encoder group.
        plateau (mapping, optional): ``monitor`` (a logged loss, 'l_d_total'), ``target`` ('g': the
            generator's learning rate is halved; 'd': the discriminator's is multiplied by 1.1), ``factor`` (0.5 for g, 1.1 for d), ``patience`` (checks without
            improvement, 10), ``min_delta`` (0), ``smoothing`` (decay of the moving average, 0.9),
            ``check_interval`` (iterations between checks, 1), ``max_reductions`` (10), ``min_lr``
            (0). Its state is in the ``.state`` file: a SIGKILL + ``--auto_resume`` continues it
            exactly. The log shows ``plateau_smoothed`` and ``plateau_fired``.
        ema_warmup (:class:`~ext.models.ema_schedule.EMASchedule`) and the speed keys of
            :class:`~ext.models.train_speed.TrainSpeed` (``use_amp``, ``amp_bf16``,
            ``use_channels_last``, ``use_compile``, ``use_compile_d``, ``compile_mode``, ``compile_backend``,
            ``accum_iter``, ``fast_matmul``): autocast around the G and D forwards, the losses in float32.
            With ``accum_iter`` D steps on the summed gradient of every micro-batch's output, previewed
            without gradients (dropout random state recorded, BatchNorm buffers restored) and replayed
            with gradients for G: D sees exactly the images G is then scored on. BatchNorm normalises by
            micro-batch statistics, so the result is close to, not equal to, one big batch.
    ``val``: ``composite`` (true): outputs keep the known pixels and take the generator's only in
    the hole, as inpainting is evaluated. Validation passes the mask to the metrics
    (``calculate_masked_psnr`` / ``calculate_masked_ssim``, ``region: inside|outside``) and saves the
    output and a ``*_grid.png`` (lq | output | gt).
    """

    policies = (TrainSpeed, EMASchedule)
    train_option_keys = OptionKeys({'conditional_d', 'freeze_encoder_iters', 'encoder_lr', 'plateau'})
    val_option_keys = OptionKeys({'composite'})

    def __init__(self, opt):
        train_opt = opt.get('train') or {}
        if opt.get('dist') and int(train_opt.get('freeze_encoder_iters', 0) or 0) > 0:
            # DDP's reducer must accept the frozen encoder's missing gradients
            opt.setdefault('find_unused_parameters', True)
        self.encoder_frozen = None
        self.mask = None
        self.speed = TrainSpeed(opt, batch_keys=('lq', 'gt', 'mask'))
        self.ema = EMASchedule(opt, average_buffers=True)  # the generator's BatchNorm statistics too
        super().__init__(opt)
        self.speed.setup(self)

    # --- training set-up ---------------------------------------------------------------------------
    def init_training_settings(self):
        train_opt = self.opt['train']
        name = type(self).__name__
        build_ema_and_discriminator(self)

        def loss(key):
            return build_loss(train_opt[key]).to(self.device) if train_opt.get(key) else None

        self.cri_pix, self.cri_perceptual, self.cri_gan = loss('pixel_opt'), loss('perceptual_opt'), loss('gan_opt')
        self.conditional_d = bool(train_opt.get('conditional_d', True))
        self.freeze_encoder_iters = int(train_opt.get('freeze_encoder_iters', 0) or 0)
        problems = []
        if (self.net_d is None) != (self.cri_gan is None):
            problems.append('train.gan_opt and network_d: give both (GAN training) or neither (reconstruction only)')
        if not any((self.cri_pix, self.cri_perceptual, self.cri_gan)):
            problems.append('train: no loss configured (pixel_opt, perceptual_opt, gan_opt)')
        if self.freeze_encoder_iters < 0:
            problems.append(f'train.freeze_encoder_iters: must be >= 0, got {self.freeze_encoder_iters}')
        if self.freeze_encoder_iters and not hasattr(self.bare_g, 'encoder_parameters'):
            problems.append(f"train.freeze_encoder_iters: {type(self.bare_g).__name__} has no pretrained encoder "
                            '(encoder_parameters()); use VGGUNetGenerator or set it to 0')
        try:
            self.plateau = LearningRatePlateau.from_options(train_opt.get('plateau'), name)
        except TypeError as error:
            raise OptionError(f'{name}: train.plateau: {error}') from None
        if self.plateau is not None and self.plateau.target == 'd' and self.net_d is None:
            problems.append("train.plateau.target: 'd' needs a discriminator (network_d)")
        if problems:
            raise OptionError(f'{name}: ' + '; '.join(problems))
        self.setup_optimizers()
        self.setup_schedulers()

    @property
    def bare_g(self):
        return self.get_bare_model(self.net_g)

    def encoder_parameters(self):
        getter = getattr(self.bare_g, 'encoder_parameters', None)
        return list(getter()) if getter else []

    def setup_optimizers(self):
        train_opt = self.opt['train']
        optim_opt = dict(train_opt['optim_g'])
        optim_type, lr = optim_opt.pop('type'), optim_opt.pop('lr')
        encoder_ids = {id(p) for p in self.encoder_parameters()}
        # every parameter is in the optimizer from the start (a stable state layout for resumes); a frozen one
        # has no gradient, which Adam skips
        groups = [{'params': [p for p in self.net_g.parameters() if id(p) not in encoder_ids]}]
        if encoder_ids:
            groups.append({'params': self.encoder_parameters(), 'lr': float(train_opt.get('encoder_lr', lr))})
        self.optimizer_g = self.get_optimizer(optim_type, groups, lr, **optim_opt)
        self.optimizers.append(self.optimizer_g)
        if self.net_d is not None:
            optim_opt = dict(train_opt['optim_d'])
            optim_type = optim_opt.pop('type')
            self.optimizer_d = self.get_optimizer(optim_type, self.net_d.parameters(), **optim_opt)
            self.optimizers.append(self.optimizer_d)

    def set_encoder_frozen(self, frozen, current_iter=None):
        if frozen == self.encoder_frozen:
            return
        for param in self.encoder_parameters():
            param.requires_grad = not frozen
            if frozen:
                param.grad = None
        if self.encoder_frozen is not None or frozen:
            get_root_logger().info(f"{'Froze' if frozen else 'Unfroze'} the generator's encoder"
                                   + (f' at iteration {current_iter}' if current_iter is not None else '') + '.')
        self.encoder_frozen = frozen

    # --- data and forward -------------------------------------------------------------------------
    def feed_data(self, data):
        self.lq = data['lq'].to(self.device)
        if data.get('mask') is None:
            raise KeyError(f"{type(self).__name__}: the batches need a 'mask' (1 = hole); use MaskedImageDataset")
        self.mask = data['mask'].to(self.device)
        if 'gt' in data:
            self.gt = data['gt'].to(self.device)

    def generator_input(self):
        return torch.cat([self.lq, self.mask], dim=1)

    def discriminator_input(self, image):
        return torch.cat([image, self.lq, self.mask], dim=1) if self.conditional_d else image

    def _mean_over_ranks(self, value):
        value = value.detach().clone()
        if self.opt.get('dist') and dist.is_available() and dist.is_initialized():
            dist.all_reduce(value)
            value /= dist.get_world_size()
        return value

    def generate(self):
        with self.speed.autocast():
            return self.net_g(self.generator_input())

    def _discriminate(self, image):
        with self.speed.autocast():
            return self.net_d(self.discriminator_input(image)).float()

    def optimize_discriminator(self, loss_dict, fakes):
        """One D step on the summed gradient of every micro-batch's (gt, ``fakes[i]``), its loss halved."""
        _set_requires_grad(self.net_d, True)
        logs = []
        for index in self.speed.micro_batches(self):
            self.speed.zero_grad(self.optimizer_d)
            pred_fake, pred_real = self._discriminate(fakes[index]), self._discriminate(self.gt)
            l_d_fake = self.cri_gan(pred_fake, False, is_disc=True)
            l_d_real = self.cri_gan(pred_real, True, is_disc=True)
            l_d_total = (l_d_fake + l_d_real) * 0.5  # pix2pix halves D's objective (slower D than G)
            self.speed.backward(l_d_total, self.optimizer_d, terms={'l_d_real': l_d_real, 'l_d_fake': l_d_fake})
            self.speed.step(self.optimizer_d)
            logs.append(dict(l_d_real=l_d_real.detach(), l_d_fake=l_d_fake.detach(), l_d_total=l_d_total.detach(),
                             out_d_real=pred_real.detach().mean(), out_d_fake=pred_fake.detach().mean()))
        loss_dict.update(mean_logs(logs))
        _set_requires_grad(self.net_d, False)

    def generator_terms(self):
        output = self.output.float()  # the losses in float32 (the perceptual loss's VGG features included)
        terms = OrderedDict()
        if self.cri_pix is not None:
            terms['l_g_pix'] = self.cri_pix(output, self.gt, self.mask)
        if self.cri_perceptual is not None:
            terms['l_g_percep'] = self.cri_perceptual(output, self.gt)
        if self.cri_gan is not None:
            terms['l_g_gan'] = self.cri_gan(self._discriminate(self.output), True, is_disc=False)
        return terms

    def optimize_parameters(self, current_iter):
        # whole-iteration phases, each looping over the micro-batches: D steps before the generator's loss
        self.speed.prepare_batch(self)
        if self.freeze_encoder_iters:
            self.set_encoder_frozen(current_iter <= self.freeze_encoder_iters, current_iter)
        loss_dict = OrderedDict()
        whole = None  # the one generator forward of an iteration without accumulation
        previews = None
        if self.net_d is not None:  # discriminator step first (pix2pix), on the detached output
            if self.speed.accum_iter > 1:
                previews = self.speed.preview_micro_batches(self, self.generate, self.net_g)
                fakes = previews
            else:
                whole = self.generate()
                fakes = [whole.detach()]
            self.optimize_discriminator(loss_dict, fakes)

        logs, outputs = [], []
        for index in self.speed.micro_batches(self):
            self.speed.zero_grad(self.optimizer_g)
            if whole is not None:
                self.output = whole
            else:
                if previews is not None:
                    self.speed.replay_micro_batch(index)  # the output D saw: same dropout masks
                self.output = self.generate()
            terms = self.generator_terms()
            l_g_total = sum(terms.values())
            self.speed.backward(l_g_total, self.optimizer_g, terms=terms)
            self.speed.step(self.optimizer_g)
            terms['l_g_total'] = l_g_total
            with torch.no_grad():  # unweighted L1 inside and outside the hole, for the log
                error = (self.output.detach().float() - self.gt).abs().mean(dim=1, keepdim=True)
                terms['l1_hole'] = (error * self.mask).sum() / self.mask.sum().clamp_min(1)
                terms['l1_valid'] = (error * (1 - self.mask)).sum() / (1 - self.mask).sum().clamp_min(1)
            logs.append({key: value.detach() for key, value in terms.items()})
            outputs.append(self.output.detach())
        self.output = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
        loss_dict.update(mean_logs(logs))
        self.log_dict = self.reduce_loss_dict(loss_dict)
        self.ema.update(self, current_iter)
        if self.plateau is not None:
            self.step_plateau(loss_dict, current_iter)

    def step_plateau(self, loss_dict, current_iter):
        monitor = self.plateau.monitor
        if monitor not in loss_dict:
            raise OptionError(f'{type(self).__name__}: train.plateau.monitor: {monitor!r} is not a logged loss; '
                              f'one of {sorted(loss_dict)}')
        value = self._mean_over_ranks(loss_dict[monitor]).item()  # every rank takes the same decision
        optimizers = {'g': self.optimizer_g, 'd': getattr(self, 'optimizer_d', None)}
        new_lrs = self.plateau.step(value, optimizers)
        self.log_dict['plateau_smoothed'] = self.plateau.rule.smoothed
        self.log_dict['plateau_fired'] = self.plateau.rule.reductions
        if new_lrs is not None:
            rule = self.plateau.rule
            get_root_logger().info(
                f'Plateau of the smoothed {monitor} at iteration {current_iter} ({rule.smoothed:.4g}): learning '
                f'rate of net_{self.plateau.target} x{self.plateau.factor} -> {new_lrs} '
                f'({rule.reductions}/{rule.max_reductions}).')

    def resumable_parts(self):
        return {**super().resumable_parts(), 'plateau': getattr(self, 'plateau', None)}

    # --- inference and validation ------------------------------------------------------------------
    def test(self):
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.bare_g
        was_training = net.training
        net.eval()
        with torch.no_grad():
            self.output = net(self.generator_input())
            if (self.opt.get('val') or {}).get('composite', True):
                self.output = self.output * self.mask + self.lq * (1 - self.mask)
        net.train(was_training)

    def validation_extras(self):
        return (MaskedMetrics(), SideBySideGrids())

    def save(self, epoch, current_iter):
        if hasattr(self, 'net_g_ema'):
            self.save_network([self.net_g, self.net_g_ema], 'net_g', current_iter, param_key=['params', 'params_ema'])
        else:
            self.save_network(self.net_g, 'net_g', current_iter)
        if self.net_d is not None:
            self.save_network(self.net_d, 'net_d', current_iter)
        self.save_training_state(epoch, current_iter)
