"""ESRGAN (seed 003) networks: the VGG-style discriminator at every patch size, the RRDBNet variants."""
import numpy as np
import pytest
import torch

from basicsr.archs import build_network
from basicsr.archs.rrdbnet_arch import RRDBNet
from ext.archs.esrgan_rrdbnet_arch import ESRGANRRDBNet
from ext.archs.esrgan_vgg_discriminator_arch import SEED_BLOCK_CHANNELS, ESRGANVGGDiscriminator
from helpers import skimage_rgb

SMALL = [8, 8, 16, 16, 32, 32, 64, 64]  # the seed's stride pattern (4 halvings) at a fraction of its widths


@pytest.mark.parametrize('size', [64, 96, 128, 192, 256])
@pytest.mark.parametrize('spectral_norm', [False, True], ids=['batchnorm', 'spectralnorm'])
def test_discriminator_accepts_each_supported_patch_size(size, spectral_norm):
    torch.manual_seed(0)
    net = build_network({'type': 'ESRGANVGGDiscriminator', 'input_size': size, 'block_channels': SMALL,
                         'fc_features': [16], 'spectral_norm': spectral_norm,
                         'norm': 'none' if spectral_norm else 'batch'})
    x = torch.rand(2, 3, size, size, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 1)
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    flat = net.classifier[1]
    linear = flat.module if hasattr(flat, 'module') else flat
    assert linear.in_features == 64 * (size // 16) ** 2
    assert any('weight_orig' in name for name, _ in net.named_parameters()) == spectral_norm


def test_discriminator_follows_the_seed_layout_by_default():
    net = ESRGANVGGDiscriminator(input_size=128)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == list(SEED_BLOCK_CHANNELS)
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]  # stride 2 where a width repeats
    linears = [m for m in net.classifier if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512 * 8 * 8, 100), (100, 1)]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.features) == 7  # none after the first conv


def test_discriminator_rejects_sizes_it_cannot_judge():
    with pytest.raises(ValueError, match='input_size 100 is not divisible by 16'):
        ESRGANVGGDiscriminator(input_size=100, block_channels=SMALL)
    net = ESRGANVGGDiscriminator(input_size=64, block_channels=SMALL, fc_features=[8])
    with pytest.raises(ValueError, match='built for 64x64 patches'):
        net(torch.rand(1, 3, 96, 96))


def test_rrdbnet_nearest_is_basicsr_rrdbnet():
    torch.manual_seed(0)
    ours = ESRGANRRDBNet(3, 3, num_feat=8, num_block=1, num_grow_ch=4)
    theirs = RRDBNet(3, 3, num_feat=8, num_block=1, num_grow_ch=4)
    theirs.load_state_dict(ours.state_dict())  # same keys and shapes
    x = torch.rand(1, 3, 12, 12)
    assert torch.equal(ours(x), theirs(x))


def test_rrdbnet_pixelshuffle_upsampler():
    net = ESRGANRRDBNet(3, 3, num_feat=8, num_block=1, num_grow_ch=4, upsampler='pixelshuffle')
    assert net.conv_up1.out_channels == 32
    assert net(torch.rand(1, 3, 10, 12)).shape == (1, 3, 40, 48)
    with pytest.raises(ValueError, match='upsampler'):
        ESRGANRRDBNet(3, 3, num_feat=8, num_block=1, upsampler='deconv')


def test_interpolating_init_starts_near_bicubic_and_still_trains():
    from basicsr.utils.matlab_functions import imresize
    hr = skimage_rgb('chelsea')[:128, :128].astype(np.float32) / 255
    lr = torch.from_numpy(np.ascontiguousarray(imresize(hr, 0.25).clip(0, 1).transpose(2, 0, 1)))[None]
    target = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1)))[None]

    def psnr(out, crop=4):  # zero padding darkens the outermost pixels, as the metrics' border crop allows
        error = (out.clamp(0, 1) - target)[..., crop:-crop, crop:-crop]
        return float(10 * torch.log10(1 / (error ** 2).mean()))

    torch.manual_seed(0)
    smooth = ESRGANRRDBNet(3, 3, num_feat=16, num_block=1, num_grow_ch=8, interpolating_init=True)
    torch.manual_seed(0)
    default = ESRGANRRDBNet(3, 3, num_feat=16, num_block=1, num_grow_ch=8)
    with torch.no_grad():
        bicubic = torch.from_numpy(imresize(lr[0], 4).numpy())[None]
        assert psnr(smooth(lr)) > psnr(bicubic) - 2.0  # an interpolation, not noise
        assert psnr(default(lr)) < psnr(bicubic) - 8.0
    loss = (smooth(lr) - target).abs().mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in smooth.named_parameters()
               if n.startswith(('conv_first', 'conv_last', 'body.0.rdb1.conv1')))
    with pytest.raises(ValueError, match='interpolating_init'):
        ESRGANRRDBNet(3, 3, num_feat=8, num_block=1, upsampler='pixelshuffle', interpolating_init=True)
