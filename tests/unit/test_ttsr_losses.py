"""TTSR losses: transferal perceptual (both conventions), relu5_1 MSE perceptual, WGAN-GP / vanilla."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import ext  # noqa: F401
from ext.losses.ttsr_gan_loss import TTSRGANLoss
from ext.losses.ttsr_perceptual_loss import TTSRPerceptualLoss
from ext.losses.ttsr_transferal_perceptual_loss import TransferalPerceptualLoss


def levels(seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(2, c, s, s, generator=generator) for c, s in ((16, 4), (8, 8), (4, 16))]


def test_transferal_perceptual_conventions():
    sr, textures = levels(0), levels(1)
    soft = torch.rand(2, 1, 4, 4)
    mses = [F.mse_loss(a, b) for a, b in zip(sr, textures)]
    original = TransferalPerceptualLoss(loss_weight=0.5)
    mmagic = TransferalPerceptualLoss(loss_weight=0.5, convention='mmagic')
    torch.testing.assert_close(original(sr, textures), 0.5 * sum(mses) / 3)
    torch.testing.assert_close(mmagic(sr, textures), 0.5 * sum(mses))  # 3x the original

    def up(x, factor):
        return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode='bicubic', align_corners=False)

    weights_original = [torch.sigmoid(up(soft, f)) for f in (1, 2, 4)]
    weights_mmagic = [torch.sigmoid(soft), up(soft, 2), up(soft, 4)]
    for loss, weights, reduce in ((TransferalPerceptualLoss(1., True, 'original'), weights_original, 3),
                                  (TransferalPerceptualLoss(1., True, 'mmagic'), weights_mmagic, 1)):
        expected = sum(F.mse_loss(a * w, b * w) for a, b, w in zip(sr, textures, weights)) / reduce
        torch.testing.assert_close(loss(sr, textures, soft), expected)
    with pytest.raises(ValueError, match='soft attention'):
        TransferalPerceptualLoss(use_attention=True)(sr, textures)


def test_perceptual_is_mse_of_vgg19_relu5_1(vgg19_env):
    from basicsr.archs.vgg_arch import VGGFeatureExtractor
    loss = TTSRPerceptualLoss(loss_weight=0.01)
    reference = VGGFeatureExtractor(['relu5_1'], vgg_type='vgg19', use_input_norm=True, range_norm=False)
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = 0.01 * F.mse_loss(reference(x)['relu5_1'], reference(y)['relu5_1'])
        torch.testing.assert_close(loss(x, y), expected, rtol=1e-4, atol=1e-10)
    assert not any(p.requires_grad for p in loss.parameters())
    with pytest.raises(ValueError, match='relu9_1'):
        TTSRPerceptualLoss(layer='relu9_1')


class LinearCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(12, 1)

    def forward(self, x):
        return self.linear(x.flatten(1))


def test_wgan_gp_and_vanilla():
    torch.manual_seed(0)
    critic = LinearCritic()
    real, fake = torch.rand(4, 3, 2, 2), torch.rand(4, 3, 2, 2)
    wgan = TTSRGANLoss('wgan_gp', loss_weight=1e-3, gp_weight=10.)
    # a linear critic of [0, 1] images has gradient w everywhere, w / 2 against the same images in
    # [-1, 1] (the default gp_value_range, upstream's): GP = (||w|| / 2 - 1)^2
    expected_gp = (critic.linear.weight.norm() / 2 - 1)**2
    torch.testing.assert_close(wgan.gradient_penalty(critic, real, fake), expected_gp)
    torch.testing.assert_close(TTSRGANLoss('wgan_gp', gp_value_range=[0, 1]).gradient_penalty(critic, real, fake),
                               (critic.linear.weight.norm() - 1)**2)
    total, terms = wgan.discriminator_loss(critic, real, fake)
    torch.testing.assert_close(total, critic(fake).mean() - critic(real).mean() + 10 * expected_gp)
    total.backward()
    assert critic.linear.weight.grad.abs().sum() > 0
    torch.testing.assert_close(wgan(critic(fake), True), -1e-3 * critic(fake).mean())
    vanilla = TTSRGANLoss('vanilla', loss_weight=1e-3)
    pred = torch.randn(4, 1)
    torch.testing.assert_close(vanilla(pred, True), 1e-3 * F.binary_cross_entropy_with_logits(pred, torch.ones(4, 1)))
    total, terms = vanilla.discriminator_loss(critic, real, fake)
    assert 'l_d_gp' not in terms
    torch.testing.assert_close(total, F.softplus(-critic(real)).mean() + F.softplus(critic(fake)).mean())
    with pytest.raises(ValueError, match='gan_type'):
        TTSRGANLoss('hinge')
