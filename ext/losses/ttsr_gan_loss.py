"""Adversarial losses of the two TTSR recipes: WGAN-GP (original) and vanilla (MMagic).

Yang et al., "Learning Texture Transformer Network for Image Super-Resolution", CVPR 2020;
Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ext.registry import register


@register()
class TTSRGANLoss(nn.Module):
    """GAN loss with an optional gradient penalty.

    * ``'wgan_gp'`` (original): D minimises ``mean(D(fake)) - mean(D(real)) + gp_weight * GP`` with
      ``GP = mean((||grad D(x_hat)||_2 - 1)^2)`` on random interpolations; G minimises ``-mean(D(fake))``.
    * ``'vanilla'`` (MMagic): BCE with logits against ``real_label_val`` / ``fake_label_val``.

    ``forward(pred, target_is_real, is_disc=False)`` as BasicSR's GANLoss: ``loss_weight`` applies to
    the generator term only. :meth:`discriminator_loss` gives D's whole loss.

    Images arrive in [0, 1] (BasicSR). The gradient norm depends on the scale of the image it is taken
    against: upstream's images are in [-1, 1], where the same gradient is half as large as against
    [0, 1]. ``gp_value_range`` says which scale the penalty measures; the default [-1, 1] makes
    ``GP`` (and so the Lipschitz bound it enforces) upstream's exactly with :class:`TTSRDiscriminator`.

    Args:
        gan_type (str): 'wgan_gp' or 'vanilla'.
        loss_weight (float): generator weight (TTSR: 1e-3).
        gp_weight (float): gradient-penalty weight (10); used by 'wgan_gp' only.
        gp_value_range (list[float]): ``[low, high]``, the value range of the images the penalty's
            gradient is taken against (default [-1, 1], upstream; [0, 1] gives twice upstream's norm).
        real_label_val, fake_label_val (float): targets of 'vanilla'.
    """

    def __init__(self, gan_type='wgan_gp', loss_weight=1e-3, gp_weight=10.0, gp_value_range=(-1.0, 1.0),
                 real_label_val=1.0, fake_label_val=0.0):
        super().__init__()
        if gan_type not in ('wgan_gp', 'vanilla'):
            raise ValueError(f"TTSRGANLoss: gan_type must be 'wgan_gp' or 'vanilla', got {gan_type!r}")
        try:
            low, high = (float(v) for v in gp_value_range)
        except (TypeError, ValueError):
            low = high = None
        if low is None or not low < high:
            raise ValueError(f'TTSRGANLoss: gp_value_range must be [low, high] with low < high, got {gp_value_range!r}')
        self.gan_type, self.loss_weight, self.gp_weight = gan_type, loss_weight, gp_weight
        self.gp_low, self.gp_span = low, high - low
        self.real_label_val, self.fake_label_val = real_label_val, fake_label_val

    def forward(self, pred, target_is_real, is_disc=False):
        pred = pred.float()  # a half-precision logit under autocast: the loss in float32
        if self.gan_type == 'wgan_gp':
            loss = -pred.mean() if target_is_real else pred.mean()
        else:
            target = pred.new_full(pred.shape, self.real_label_val if target_is_real else self.fake_label_val)
            loss = F.binary_cross_entropy_with_logits(pred, target)
        return loss if is_disc else loss * self.loss_weight

    def gradient_penalty(self, net_d, real, fake):
        """``mean((||grad D(x_hat)||_2 - 1)^2)``, x_hat uniformly between real and fake per sample, the
        gradient taken against x_hat in ``gp_value_range`` (``real``/``fake``/``net_d`` work in [0, 1]).

        Always float32 with autocast off (a double backward through half-precision logits loses the
        penalty's small gradients), and through the module itself when ``net_d`` is a ``torch.compile``
        wrapper (compiled graphs do not support the double backward)."""
        net_d = getattr(net_d, '_orig_mod', net_d)
        real, fake = real.detach().float(), fake.detach().float()
        with torch.autocast(device_type=real.device.type, enabled=False):
            alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device, dtype=real.dtype)
            interpolated = alpha * real + (1 - alpha) * fake  # affine maps keep interpolations
            scaled = (interpolated * self.gp_span + self.gp_low).requires_grad_(True)
            grad, = torch.autograd.grad(net_d((scaled - self.gp_low) / self.gp_span).sum(), scaled, create_graph=True)
            return ((grad.flatten(1).norm(2, dim=1) - 1)**2).mean()

    def discriminator_loss(self, net_d, real, fake):
        """D's loss on ``real`` and ``fake`` (detached); returns ``(total, {name: term})``."""
        fake = fake.detach()
        pred_real, pred_fake = net_d(real), net_d(fake)
        terms = {'l_d_real': self(pred_real, True, is_disc=True), 'l_d_fake': self(pred_fake, False, is_disc=True)}
        if self.gan_type == 'wgan_gp' and self.gp_weight > 0:
            terms['l_d_gp'] = self.gp_weight * self.gradient_penalty(net_d, real, fake)
        terms['out_d_real'], terms['out_d_fake'] = pred_real.detach().mean(), pred_fake.detach().mean()
        total = sum(v for k, v in terms.items() if k.startswith('l_'))
        return total, terms
