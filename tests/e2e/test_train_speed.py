"""Training speed options (ext/models/train_speed.py) on CPU: accumulation, bf16 autocast, channels_last,
compile, option errors and the resume state, for Real-ESRNet and A-ESRGAN."""
import copy

import pytest
import torch

import ext  # noqa: F401
from basicsr.models import build_model
from basicsr.utils import set_random_seed
from ext.models.ema_schedule import warmup_ema_decay
from ext.options import OptionError
from test_aesrgan_model import batch_of_real_images, tiny_model_opt
from test_aesrgan_training import tiny_data  # noqa: F401  (a fixture)

ESRNET = 'train_realesrnet_x4plus.yml'
AESRGAN = 'train_multiaesrgan_x4plus.yml'


def _model(option_file, batch=4, **train):
    opt = tiny_model_opt(option_file, batch=batch)
    opt['train'].update(train)
    set_random_seed(0)
    return build_model(opt)


def _feed(model, seed, batch=4):
    set_random_seed(100 + seed)  # the degradation and the queue draw from the global streams
    model.feed_data(batch_of_real_images(batch, 96, seed))


def _weights(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_accumulating_two_half_batches_gives_the_weights_of_one_batch_and_one_ema_update():
    torch.manual_seed(0)
    lq, gt = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 32, 32)
    models = {accum: _model(ESRNET, accum_iter=accum) for accum in (1, 2)}
    for accum, model in models.items():
        for iteration in range(1, 4):
            model.lq, model.gt = lq.clone(), gt.clone()  # the same batch for both: no degradation draw
            model.optimize_parameters(iteration)
    one, two = models[1], models[2]
    assert two.lq.shape[0] == 4 and two.output.shape[0] == 4  # the full batch is back after the step
    for net in ('net_g', 'net_g_ema'):
        expected, actual = _weights(getattr(one, net)), _weights(getattr(two, net))
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-5, msg=f'{net}.{key}')
    # the logged loss is the mean over the micro-batches, i.e. the loss of the whole batch
    assert two.get_current_log()['l_pix'] == pytest.approx(one.get_current_log()['l_pix'], rel=1e-4)


def test_aesrgan_accumulation_steps_each_optimizer_once_per_iteration():
    # its D has BatchNorm and spectral norm (batch- and call-dependent), so no exact equality here:
    # the check is that G, D and the EMA follow the accumulated step, once per iteration
    model = _model(AESRGAN, accum_iter=2)
    for iteration in range(1, 4):
        _feed(model, iteration)
        before = _weights(model.net_g_ema)
        model.optimize_parameters(iteration)
        assert model.gt.shape[0] == model.gt_usm.shape[0] == model.output.shape[0] == 4
        # one EMA update: ema = d * ema + (1 - d) * g, d the option file's (warm-up) decay of this iteration
        decay = warmup_ema_decay(0.999, iteration - 1) if model.ema.warmup else 0.999
        key = 'conv_first.weight'
        g = model.get_bare_model(model.net_g).state_dict()[key]
        torch.testing.assert_close(model.net_g_ema.state_dict()[key], decay * before[key] + (1 - decay) * g)
    for optimizer in (model.optimizer_g, model.optimizer_d):
        steps = {int(state['step']) for state in optimizer.state.values()}
        assert steps == {3}


@pytest.mark.parametrize('option_file', [ESRNET, AESRGAN])
def test_channels_last_and_compile_train_and_save_checkpoints_with_unchanged_keys(option_file, tmp_path):
    plain = _model(option_file, batch=2)
    # compile_backend eager: inductor needs a C++ toolchain and minutes on this 2-core machine
    fast = _model(option_file, batch=2, use_channels_last=True, use_compile=True, compile_backend='eager',
                  accum_iter=2, use_amp=True, amp_bf16=True)
    assert hasattr(fast.net_g, '_orig_mod')
    weight = fast.get_bare_model(fast.net_g).conv_first.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    for iteration in (1, 2):
        _feed(fast, iteration, batch=2)
        fast.optimize_parameters(iteration)
    assert fast.lq.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.isfinite(torch.tensor(list(fast.get_current_log().values()))))
    fast.opt['path']['models'] = str(tmp_path)
    fast.save_network(fast.net_g, 'net_g', 2)
    saved = torch.load(tmp_path / 'net_g_2.pth', map_location='cpu', weights_only=True)['params']
    assert set(saved) == set(plain.net_g.state_dict())
    fresh = _model(option_file, batch=2, use_compile=True, compile_backend='eager')
    fresh.load_network(fresh.net_g, str(tmp_path / 'net_g_2.pth'), True, 'params')
    for key, value in saved.items():
        assert torch.equal(fresh.get_bare_model(fresh.net_g).state_dict()[key], value)


@pytest.mark.slow
def test_inductor_compile_of_realesrnet_trains_and_saves_plain_keys(tmp_path):
    # the default backend (inductor, C++ on CPU): ~30 s wall / ~10 s CPU for 2 iterations here
    model = _model(ESRNET, batch=2, use_compile=True, use_channels_last=True)
    plain_keys = set(model.get_bare_model(model.net_g).state_dict())
    for iteration in (1, 2):
        _feed(model, iteration, batch=2)
        model.optimize_parameters(iteration)
    assert hasattr(model.net_g, '_orig_mod') and torch.isfinite(torch.tensor(model.get_current_log()['l_pix']))
    model.opt['path']['models'] = str(tmp_path)
    model.save_network(model.net_g, 'net_g', 2)
    assert set(torch.load(tmp_path / 'net_g_2.pth', map_location='cpu', weights_only=True)['params']) == plain_keys
    assert not any(key.startswith('_orig_mod') for key in plain_keys)


@pytest.mark.parametrize('train, key', [
    ({'accum_iter': 3}, 'accum_iter'),  # does not divide batch 4
    ({'accum_iter': 0}, 'accum_iter'),
    ({'accum_iter': 2.0}, 'accum_iter'),
    ({'use_amp': True}, 'use_amp'),  # float16 + GradScaler on CPU
    ({'use_amp': 'yes'}, 'use_amp'),
    ({'amp_bf16': True}, 'amp_bf16'),  # without use_amp
    ({'use_channels_last': 1}, 'use_channels_last'),
    ({'compile_mode': 'max-autotune'}, 'compile_mode'),  # without use_compile
    ({'use_compile': True, 'compile_mode': 3}, 'compile_mode'),
    ({'fast_matmul': 'on'}, 'fast_matmul'),
])
@pytest.mark.parametrize('option_file', [ESRNET, AESRGAN])
def test_invalid_speed_options_are_refused_before_training_naming_the_key(option_file, train, key):
    with pytest.raises(OptionError, match=f'train.{key}'):
        _model(option_file, **train)


def test_speed_keys_pass_the_option_check():
    from ext.models.aesrgan_model import MultiScaleRealESRGANModel
    from ext.models.realesrnet_pretrain_model import RealESRNetPretrainModel
    from ext.models.train_speed import SPEED_KEYS
    for cls in (MultiScaleRealESRGANModel, RealESRNetPretrainModel):
        assert set(SPEED_KEYS) <= cls.train_option_keys


def test_grad_scaler_state_and_position_round_trip_next_to_the_queue():
    model = _model(AESRGAN, batch=4, use_amp=True, amp_bf16=True, accum_iter=2)
    for iteration in (1, 2, 3):
        _feed(model, iteration)
        model.optimize_parameters(iteration)
    # bf16 has no scaler; give optimizer 1 (D) a float16-style one as CUDA would, with a moved scale
    scaler = torch.amp.GradScaler('cpu', init_scale=1024.0, growth_interval=7)
    scaler._lazy_init_scale_growth_tracker(torch.device('cpu'))
    scaler.update(new_scale=256.0)
    model.speed.grad_scalers[1] = scaler
    state = copy.deepcopy(model.extra_training_state())
    assert state['train_speed']['accum_position'] == 0 and set(state['train_speed']['grad_scalers']) == {1}
    assert state['pair_queue']['filled'] == 4  # the model's own extra state is kept
    fresh = _model(AESRGAN, batch=4, use_amp=True, amp_bf16=True, accum_iter=2)
    fresh.load_extra_training_state(state)
    assert fresh.speed.grad_scalers[1].get_scale() == 256.0
    assert fresh.speed.grad_scalers[1].state_dict() == scaler.state_dict()
    assert torch.equal(fresh.synthesis.pair_queue.gt, model.synthesis.pair_queue.gt)
    assert torch.equal(fresh.synthesis.pair_queue.lq, model.synthesis.pair_queue.lq)


@pytest.mark.slow
def test_aesrgan_with_bf16_and_accumulation_sigkilled_then_auto_resumed_ends_bitwise_equal(tmp_path, tiny_data):
    """ext/train.py with amp_bf16 + accum_iter 2: SIGKILL right after 2.state, --auto_resume, same weights at 4."""
    import os.path as osp
    from helpers import REPO_ROOT, run_script, write_options
    from test_aesrgan_training import FAULT_DRIVER, load, shrink
    finals = {}
    for name in ('whole', 'killed'):
        opt = shrink('train_multiaesrgan_x4plus.yml', f'speed_{name}', tmp_path, tiny_data)
        opt['train'].update(use_amp=True, amp_bf16=True, accum_iter=2)
        yml = write_options(str(tmp_path / f'{name}.yml'), opt)
        train_py = osp.join(REPO_ROOT, 'ext', 'train.py')
        if name == 'whole':
            run_script([train_py, '-opt', yml], cwd=str(tmp_path))
        else:
            killed = run_script([FAULT_DRIVER, '--kill-after-state', '2', '-opt', yml, '--auto_resume'],
                                cwd=str(tmp_path), check=False)
            assert killed.returncode == -9, killed.stderr[-3000:]
            log = run_script([train_py, '-opt', yml, '--auto_resume'], cwd=str(tmp_path))
            assert 'Resuming training from epoch: 0, iter: 2' in log.stdout + log.stderr
        root = opt['path']['experiments_root']
        finals[name] = {label: load(f'{root}/models/{label}_4.pth') for label in ('net_g', 'net_d')}
        assert 'train_speed' in load(f'{root}/training_states/4.state')['extra_by_rank'][0]
    for label, expected in finals['whole'].items():
        for key in ('params', 'params_ema') if label == 'net_g' else ('params', ):
            for param, value in expected[key].items():
                assert torch.equal(finals['killed'][label][key][param], value), f'{label} {key} {param}'
