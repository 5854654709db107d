"""TTSR's gradient penalty and reconstruction L1 on upstream's scale (researchmm/TTSR loss/loss.py).

Upstream works on [-1, 1] images; this package on [0, 1]. The upstream formulas are written out
here on [-1, 1] tensors and compared with what the package computes from the [0, 1] ones.
"""
import torch
import torch.nn.functional as F

import ext  # noqa: F401
from ext.archs.ttsr_disc_arch import TTSRDiscriminator
from ext.losses.ttsr_gan_loss import TTSRGANLoss
from ext.models.ttsr_model import TTSRModel


def images(seed, *shape):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def upstream_critic(net_d):
    """Upstream's discriminator: the same layers fed [-1, 1] images directly (no input mapping)."""
    return lambda x: net_d.last(net_d.body(x).flatten(1))


def upstream_wgan_gp_d_loss(critic, real, fake):
    """researchmm/TTSR AdversarialLoss, WGAN_GP branch, one D step: real/fake in [-1, 1]."""
    d_fake, d_real = critic(fake), critic(real)
    loss_d = (d_fake - d_real).mean()
    epsilon = torch.rand(real.size(0), 1, 1, 1).expand(real.size())
    hat = fake.mul(1 - epsilon) + real.mul(epsilon)
    hat.requires_grad = True
    gradients = torch.autograd.grad(outputs=critic(hat).sum(), inputs=hat, retain_graph=True, create_graph=True,
                                    only_inputs=True)[0]
    gradient_penalty = 10 * gradients.view(gradients.size(0), -1).norm(2, dim=1).sub(1).pow(2).mean()
    return loss_d + gradient_penalty, gradient_penalty


def test_gradient_penalty_and_d_loss_equal_upstream():
    torch.manual_seed(0)
    net_d = TTSRDiscriminator(in_size=32)
    real, fake = images(1, 3, 3, 32, 32), images(2, 3, 3, 32, 32)  # [0, 1]
    loss = TTSRGANLoss('wgan_gp', loss_weight=1e-3, gp_weight=10.0)

    torch.manual_seed(7)
    expected_total, expected_gp = upstream_wgan_gp_d_loss(upstream_critic(net_d), real * 2 - 1, fake * 2 - 1)
    torch.manual_seed(7)  # the same interpolation weights
    total, terms = loss.discriminator_loss(net_d, real, fake)
    torch.testing.assert_close(terms['l_d_gp'], expected_gp, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(total, expected_total, rtol=1e-5, atol=1e-7)
    # the generator's adversarial term: adv_w * -mean(D(sr)), D seeing [-1, 1]
    torch.testing.assert_close(loss(net_d(fake), True), 1e-3 * -upstream_critic(net_d)(fake * 2 - 1).mean())

    # the gradient itself: against [-1, 1] it is half the one against [0, 1] (the old, 2x-too-large penalty)
    torch.manual_seed(7)
    old = TTSRGANLoss('wgan_gp', gp_value_range=[0, 1])
    x = (0.3 * real + 0.7 * fake).requires_grad_(True)
    grad_01, = torch.autograd.grad(net_d(x).sum(), x)
    x_pm = (x.detach() * 2 - 1).requires_grad_(True)
    grad_pm, = torch.autograd.grad(upstream_critic(net_d)(x_pm).sum(), x_pm)
    torch.testing.assert_close(grad_01, 2 * grad_pm, rtol=1e-4, atol=1e-9)
    assert old.gp_span == 1.0 and loss.gp_span == 2.0


def test_gp_value_range_is_checked():
    for bad in ([1, -1], [0], 'x'):
        try:
            TTSRGANLoss('wgan_gp', gp_value_range=bad)
        except ValueError as error:
            assert 'gp_value_range' in str(error)
        else:
            raise AssertionError(f'gp_value_range {bad!r} must be refused')


def model_options(**train):
    opt = {
        'name': 'ttsr_scales', 'model_type': 'TTSRModel', 'scale': 4, 'num_gpu': 0, 'dist': False, 'rank': 0,
        'world_size': 1, 'is_train': True,
        'network_g': {'type': 'TTSRNet', 'mid_channels': 8, 'num_blocks': [1, 1, 1, 1], 'load_pretrained_vgg': False},
        'network_d': {'type': 'TTSRDiscriminator', 'in_size': 32},
        'path': {'pretrain_network_g': None, 'pretrain_network_d': None},
        'train': {
            'optim_g': {'type': 'Adam', 'lr': 1e-3, 'betas': [0.9, 0.999]},
            'optim_d': {'type': 'Adam', 'lr': 1e-4, 'betas': [0.0, 0.9]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5},
            'total_iter': 10, 'pixel_init_iters': 1, 'disc_repeat': 1, 'd_steps_first': True,
            'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
            'gan_opt': {'type': 'TTSRGANLoss', 'gan_type': 'wgan_gp', 'loss_weight': 1e-3, 'gp_weight': 10.0},
        },
    }
    opt['train'].update(train)
    return opt


def training_batch():
    return {'lq': images(3, 2, 3, 8, 8), 'gt': images(4, 2, 3, 32, 32), 'ref': images(5, 2, 3, 32, 32)}


def test_reconstruction_l1_equals_upstream_on_minus_one_to_one():
    torch.manual_seed(0)
    model = TTSRModel(model_options())
    model.feed_data(training_batch())
    model.optimize_parameters(1)  # warm-up iteration: the reconstruction loss only
    sr, hr = model.output.detach() * 2 - 1, model.gt * 2 - 1  # upstream's tensors: MainNet output, HR in [-1, 1]
    upstream_rec = 1.0 * F.l1_loss(sr, hr)  # rec_w * ReconstructionLoss('l1')
    torch.testing.assert_close(model.log_dict['l_g_pix'], upstream_rec.item(), rtol=1e-5, atol=1e-7)
    assert model.log_dict['l_g_pix'] > 1.9 * F.l1_loss(model.output.detach(), model.gt).item()

    # BasicSR's convention stays available, and a broken range is an option error
    torch.manual_seed(0)
    model = TTSRModel(model_options(pixel_value_range=[0, 1]))
    model.feed_data(training_batch())
    model.optimize_parameters(1)
    torch.testing.assert_close(model.log_dict['l_g_pix'], F.l1_loss(model.output.detach(), model.gt).item(),
                               rtol=1e-5, atol=1e-7)
    try:
        TTSRModel(model_options(pixel_value_range=[1, 1]))
    except ValueError as error:
        assert 'pixel_value_range' in str(error)
    else:
        raise AssertionError('an empty pixel_value_range must be refused')
