"""Training speed options (ext/models/train_speed.py) for TTSR, TTSR inpainting, pix2pix inpainting and the
SRModel / ESRGAN path, on CPU with tiny networks: each option trains, bf16 tracks fp32, accumulation
matches one big batch, the half-precision-unstable losses stay in float32, bad combinations are refused."""
import copy

import pytest
import torch

import ext  # noqa: F401
from basicsr.models import build_model
from basicsr.utils import set_random_seed
from ext.options import OptionError
from test_ttsr_model import model_options as ttsr_options

BF16 = {'use_amp': True, 'amp_bf16': True}


def _weights(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _assert_same_weights(one, two, atol, nets=('net_g', 'net_d', 'net_g_ema')):
    for name in nets:
        if getattr(one, name, None) is None:
            continue
        expected = _weights(one.get_bare_model(getattr(one, name)))
        actual = _weights(two.get_bare_model(getattr(two, name)))
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=atol, msg=f'{name}.{key}')


# --- TTSR ---------------------------------------------------------------------------------------------
def ttsr_batch(size=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {'lq': torch.rand(size, 3, 8, 8, generator=generator),
            'gt': torch.rand(size, 3, 32, 32, generator=generator),
            'ref': torch.rand(size, 3, 32, 32, generator=generator), 'lq_path': [str(i) for i in range(size)]}


ORIGINAL_TTSR = {'gan_opt': {'type': 'TTSRGANLoss', 'gan_type': 'wgan_gp', 'loss_weight': 1e-3},
                 'd_steps_first': True, 'disc_repeat': 2,
                 'tpl_opt': {'type': 'TransferalPerceptualLoss', 'loss_weight': 1e-2, 'use_attention': False,
                             'convention': 'original'}}


def ttsr_model(model_type='TTSRModel', **train):
    opt = ttsr_options(**train)
    opt['model_type'] = model_type
    set_random_seed(0)
    return build_model(copy.deepcopy(opt))


def train_ttsr(model, iterations, batch=4, first=1):
    for iteration in range(first, first + iterations):
        model.feed_data(ttsr_batch(batch, seed=iteration % 3))
        model.optimize_parameters(iteration)
    return model


@pytest.mark.parametrize('recipe', ['mmagic', 'original'])
def test_ttsr_accumulating_two_half_batches_equals_one_batch(recipe):
    # TTSRNet and TTSRDiscriminator have no batch-dependent layers; 'original' steps D twice before G
    # (d_steps_first, disc_repeat 2) with WGAN-GP, 'mmagic' steps G then D with the vanilla GAN
    # SGD: Adam turns the float noise of gradients that are ~0 into lr-sized steps (2e-3 after 6 D steps)
    extra = dict(ORIGINAL_TTSR if recipe == 'original' else {}, optim_g={'type': 'SGD', 'lr': 1e-2},
                 optim_d={'type': 'SGD', 'lr': 1e-2})
    models = {accum: ttsr_model(accum_iter=accum, **extra) for accum in (1, 2)}
    steps = {}
    for accum, model in models.items():
        for name in ('g', 'd'):
            steps[accum, name] = []
            getattr(model, f'optimizer_{name}').register_step_post_hook(
                lambda *_, key=(accum, name): steps[key].append(1))
        set_random_seed(1)  # the penalty's interpolation draws
        train_ttsr(model, 3)
    one, two = models[1], models[2]
    assert two.output.shape == (4, 3, 32, 32) and two.lq.shape[0] == 4
    _assert_same_weights(one, two, atol=1e-7)
    for key, value in one.get_current_log().items():
        assert two.get_current_log()[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key
    # one G step per iteration, disc_repeat (2) D steps after the 1-iteration warm-up, as without accumulation
    assert len(steps[2, 'g']) == len(steps[1, 'g']) == 3 and len(steps[2, 'd']) == len(steps[1, 'd']) == 4


@pytest.mark.parametrize('train', [
    BF16,
    {'use_channels_last': True},
    {'accum_iter': 2, **BF16, 'use_channels_last': True},
], ids=['bf16', 'channels_last', 'bf16_channels_last_accum2'])
def test_ttsr_original_recipe_trains_with_each_speed_option(train, tmp_path):
    model = train_ttsr(ttsr_model(**ORIGINAL_TTSR, **train), 3)
    log = model.get_current_log()
    assert {'l_g_pix', 'l_g_tpl', 'l_g_gan', 'l_d_real', 'l_d_fake', 'l_d_gp'} <= set(log)
    assert all(torch.isfinite(torch.tensor(list(log.values()))))
    assert model.output.shape == (4, 3, 32, 32)
    if train.get('use_channels_last'):
        weight = model.get_bare_model(model.net_g).extractor.slice1[0].weight
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
        assert model.get_bare_model(model.net_d).body[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert model.ref.is_contiguous(memory_format=torch.channels_last)
    if train.get('use_compile'):
        assert hasattr(model.net_g, '_orig_mod') and hasattr(model.net_d, '_orig_mod')
        model.opt['path']['models'] = str(tmp_path)
        model.save_network(model.net_d, 'net_d', 3)
        saved = torch.load(tmp_path / 'net_d_3.pth', map_location='cpu', weights_only=True)['params']
        assert set(saved) == set(model.net_d._orig_mod.state_dict())

