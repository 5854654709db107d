"""scripts/convert_ttsr_checkpoint.py on randomly initialised upstream-layout state dicts.

The upstream layouts are built here from the mapping table of the reference notes (original
``MainNet.*``/``LTE.*`` and MMagic ``generator.*``/``extractor.*``/``discriminator.*``), independently
of the script's own rules.
"""
import pytest
import torch

from ext.archs.ttsr_disc_arch import TTSRDiscriminator
from ext.archs.ttsr_net_arch import TTSRNet
from helpers import load_script


NUM_BLOCKS = (1, 2, 1, 1)
# TTSRNet (= MMagic generator) prefix -> original MainNet prefix, one row per table entry.
MMAGIC_TO_ORIGINAL = [
    ('sfe.conv_first.', 'SFE.conv_head.'), ('sfe.body.', 'SFE.RBs.'), ('sfe.conv_last.', 'SFE.conv_tail.'),
    ('conv_first1.', 'conv11_head.'), ('res_block1.', 'RB11.'), ('conv_last1.', 'conv11_tail.'),
    ('up1.upsample_conv.', 'conv12.'), ('conv_first2.', 'conv22_head.'),
    ('csfi2.conv1to2.', 'ex12.conv12.'), ('csfi2.conv2to1.', 'ex12.conv21.'),
    ('csfi2.conv_merge1.', 'ex12.conv_merge1.'), ('csfi2.conv_merge2.', 'ex12.conv_merge2.'),
    ('res_block2_1.', 'RB21.'), ('res_block2_2.', 'RB22.'), ('conv_last2_1.', 'conv21_tail.'),
    ('conv_last2_2.', 'conv22_tail.'), ('up2.upsample_conv.', 'conv23.'), ('conv_first3.', 'conv33_head.'),
    ('csfi3.conv1to2.', 'ex123.conv12.'), ('csfi3.conv1to4.', 'ex123.conv13.'), ('csfi3.conv2to1.', 'ex123.conv21.'),
    ('csfi3.conv2to4.', 'ex123.conv23.'), ('csfi3.conv4to1_1.', 'ex123.conv31_1.'),
    ('csfi3.conv4to1_2.', 'ex123.conv31_2.'), ('csfi3.conv4to2.', 'ex123.conv32.'),
    ('csfi3.conv_merge1.', 'ex123.conv_merge1.'), ('csfi3.conv_merge2.', 'ex123.conv_merge2.'),
    ('csfi3.conv_merge4.', 'ex123.conv_merge3.'),
    ('res_block3_1.', 'RB31.'), ('res_block3_2.', 'RB32.'), ('res_block3_3.', 'RB33.'),
    ('conv_last3_1.', 'conv31_tail.'), ('conv_last3_2.', 'conv32_tail.'), ('conv_last3_3.', 'conv33_tail.'),
    ('merge_features.conv1to4.', 'merge_tail.conv13.'), ('merge_features.conv2to4.', 'merge_tail.conv23.'),
    ('merge_features.conv_merge.', 'merge_tail.conv_merge.'),
    ('merge_features.conv_last1.', 'merge_tail.conv_tail1.'), ('merge_features.conv_last2.', 'merge_tail.conv_tail2.'),
]


def random_state(module, seed):
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=generator) for k, v in module.state_dict().items()}


@pytest.fixture(scope='module')
def states():
    torch.manual_seed(0)
    net_g = random_state(TTSRNet(mid_channels=8, num_blocks=NUM_BLOCKS, load_pretrained_vgg=False), 1)
    net_d = random_state(TTSRDiscriminator(in_size=64), 2)
    return net_g, net_d


def to_original(net_g, net_d):
    state = {}
    for key, value in net_g.items():
        if key.startswith('extractor.'):
            rest = key[len('extractor.'):].replace('img_normalize.', 'sub_mean.')
            state[f'LTE.{rest}'] = value
            state[f'LTE_copy.{rest}'] = value.clone()  # the original filters these; the script drops them
            continue
        rows = [(new, old) for new, old in MMAGIC_TO_ORIGINAL if key.startswith(new)]
        assert len(rows) == 1, f'{key}: {rows}'
        state['MainNet.' + rows[0][1] + key[len(rows[0][0]):]] = value
    for key, value in net_d.items():
        kind, index, param = key.split('.')
        name = f'conv{int(index) // 2 + 1}' if kind == 'body' else f'fc{int(index) // 2 + 1}'
        state[f'discriminator.{name}.{param}'] = value
    return state


def to_mmagic(net_g, net_d):
    state = {(k if k.startswith('extractor.') else f'generator.{k}'): v for k, v in net_g.items()}
    state.update({f'extractor_copy.{k[len("extractor."):]}': v for k, v in net_g.items() if k.startswith('extractor.')})
    state.update({f'discriminator.{k}': v for k, v in net_d.items()})
    state['perceptual_loss.vgg.vgg_layers.0.weight'] = torch.zeros(64, 3, 3, 3)
    state['data_preprocessor.mean'] = torch.zeros(3, 1, 1)
    return {'meta': {'epoch': 1}, 'state_dict': state}


def assert_same(converted, expected):
    assert set(converted) == set(expected)
    for key, value in expected.items():
        assert torch.equal(converted[key], value), key


@pytest.mark.parametrize('layout', ['original', 'mmagic'])
def test_round_trip(layout, states, tmp_path, capsys):
    net_g, net_d = states
    checkpoint = to_original(net_g, net_d) if layout == 'original' else to_mmagic(net_g, net_d)
    source, out = tmp_path / 'upstream.pth', tmp_path / 'ttsr_basicsr.pth'
    torch.save(checkpoint, source)
    assert load_script('convert_ttsr_checkpoint').main(['--format', layout, str(source), str(out)]) == 0
    converted_g = torch.load(out, weights_only=True)
    converted_d = torch.load(tmp_path / 'ttsr_basicsr_d.pth', weights_only=True)
    assert_same(converted_g['params'], net_g)
    assert_same(converted_d['params'], net_d)
    printed = capsys.readouterr().out
    assert 'num_blocks: [1, 2, 1, 1]' in printed and 'mid_channels: 8' in printed and 'in_size: 64' in printed
    # the converted file loads strictly into the networks and reproduces the source weights' output
    net = TTSRNet(mid_channels=8, num_blocks=NUM_BLOCKS, load_pretrained_vgg=False).eval()
    net.load_state_dict(converted_g['params'])
    reference = TTSRNet(mid_channels=8, num_blocks=NUM_BLOCKS, load_pretrained_vgg=False).eval()
    reference.load_state_dict(net_g)
    lq, ref = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(lq, ref), reference(lq, ref))


def test_unmapped_or_wrong_layout_is_an_error(states, tmp_path):
    net_g, net_d = states
    script = load_script('convert_ttsr_checkpoint')
    original = to_original(net_g, net_d)
    original['MainNet.conv99_head.weight'] = torch.zeros(1)
    torch.save(original, tmp_path / 'bad.pth')
    with pytest.raises(SystemExit, match='conv99_head'):
        script.main(['--format', 'original', str(tmp_path / 'bad.pth'), str(tmp_path / 'out.pth')])
    torch.save(to_mmagic(net_g, net_d), tmp_path / 'mmagic.pth')
    with pytest.raises(SystemExit, match='try --format mmagic'):
        script.main(['--format', 'original', str(tmp_path / 'mmagic.pth'), str(tmp_path / 'out.pth')])
    assert not (tmp_path / 'out.pth').exists()
