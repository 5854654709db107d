"""TTSR networks: shapes, value ranges, the texture extractor's VGG initialisation, registration."""
import pytest
import torch

import ext  # noqa: F401  (registers the components)
from basicsr.utils.registry import ARCH_REGISTRY
from ext.archs.ttsr_disc_arch import TTSRDiscriminator
from ext.archs.ttsr_lte_arch import TTSRTextureExtractor
from ext.archs.ttsr_net_arch import TTSRNet
from ext.registry import MODELS


TINY = dict(mid_channels=8, num_blocks=(1, 1, 1, 1), load_pretrained_vgg=False)


def test_ttsrnet_shapes_range_and_textures():
    torch.manual_seed(0)
    net = TTSRNet(**TINY).eval()
    lq, ref = torch.rand(2, 3, 6, 10), torch.rand(2, 3, 28, 20)
    with torch.no_grad():
        out, soft, textures = net(lq, ref, return_textures=True)
    assert out.shape == (2, 3, 24, 40)
    assert 0 <= out.min() and out.max() <= 1
    assert soft.shape == (2, 1, 6, 10)
    assert [tuple(t.shape) for t in textures] == [(2, 256, 6, 10), (2, 128, 12, 20), (2, 64, 24, 40)]
    assert -1 - 1e-6 <= soft.min() and soft.max() <= 1 + 1e-6  # cosine relevance
    # the generator's state holds the extractor; its normalisation is frozen (buffers)
    state = net.state_dict()
    assert {'extractor.img_normalize.weight', 'extractor.slice2.5.weight', 'extractor.slice3.10.bias',
            'sfe.conv_first.weight', 'csfi3.conv_merge4.weight', 'merge_features.conv_last2.weight'} <= set(state)
    assert 'extractor.img_normalize.weight' not in dict(net.named_parameters())


def test_ttsrnet_given_or_computed_inputs_and_search_modes():
    torch.manual_seed(0)
    net = TTSRNet(**TINY).eval()
    plain = TTSRNet(**TINY, search_mode='plain').eval()
    plain.load_state_dict(net.state_dict())
    lq, ref = torch.rand(1, 3, 5, 7), torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        lq_up, ref_down_up = net.prepare_inputs(lq, ref)
        out = net(lq, ref)
        torch.testing.assert_close(net(lq, ref, lq_up, ref_down_up), out)
        torch.testing.assert_close(plain(lq, ref), out, rtol=0, atol=1e-5)
        # other up-sampled inputs change the result: they are used when given
        assert (net(lq, ref, lq_up=torch.zeros_like(lq_up)) - out).abs().max() > 1e-4
    with pytest.raises(ValueError, match='multiple of 4'):
        net(lq, ref[..., :22])
    with pytest.raises(ValueError, match='texture_channels'):
        TTSRNet(texture_channels=32, load_pretrained_vgg=False)


def test_ttsrnet_backward_reaches_extractor_and_main_network():
    torch.manual_seed(0)
    net = TTSRNet(**TINY)
    out = net(torch.rand(2, 3, 4, 4), torch.rand(2, 3, 16, 16))
    out.mean().backward()
    assert getattr(net.extractor.slice3, '10').weight.grad.abs().sum() > 0
    assert net.conv_first1.weight.grad.abs().sum() > 0


def test_extractor_loads_vgg19_from_disk(vgg19_weights, vgg19_env):
    state = torch.load(vgg19_weights, weights_only=True)
    extractor = TTSRTextureExtractor()  # found through $SRGAN_TOOLKIT_VGG_WEIGHTS, nothing downloaded
    for index, slice_name in ((0, 'slice1'), (2, 'slice2'), (5, 'slice2'), (7, 'slice3'), (10, 'slice3')):
        torch.testing.assert_close(getattr(getattr(extractor, slice_name), str(index)).weight, state[f'features.{index}.weight'])
    level3, level2, level1 = extractor(torch.rand(1, 3, 16, 12))
    assert level3.shape == (1, 256, 4, 3) and level2.shape == (1, 128, 8, 6) and level1.shape == (1, 64, 16, 12)
    # ImageNet normalisation: a mean-colour image maps to zero before the first conv
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    assert extractor.img_normalize(mean).abs().max() < 1e-6


def test_discriminator_and_registries():
    disc = TTSRDiscriminator(in_size=64)
    assert disc(torch.rand(3, 3, 64, 64)).shape == (3, 1)
    assert [k for k in disc.state_dict() if k.endswith('weight')][-3:] == ['body.18.weight', 'last.0.weight',
                                                                            'last.2.weight']
    with pytest.raises(ValueError, match='64x64'):
        disc(torch.rand(1, 3, 32, 32))
    assert ARCH_REGISTRY.get('TTSRNet') is TTSRNet and ARCH_REGISTRY.get('LTE') is TTSRTextureExtractor
    built = MODELS.build(dict(type='ext.TTSRNet', **TINY))
    assert isinstance(built, TTSRNet)
