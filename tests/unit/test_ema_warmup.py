"""EMA warm-up (train.ema_warmup): decays, every net_g_ema model of the package, exact on resume, off = upstream."""
import copy

import pytest
import torch

import ext  # noqa: F401
from basicsr.models import build_model
from ext.models.ema_schedule import warmup_ema_decay
from ext.options import OptionError
from test_aesrgan_model import tiny_model_opt


def test_decay_schedule():
    assert warmup_ema_decay(0.999, 0) == pytest.approx(0.1)
    assert warmup_ema_decay(0.999, 80) == pytest.approx(0.9)
    assert warmup_ema_decay(0.99, 10_000) == 0.99  # capped by ema_decay
    assert all(warmup_ema_decay(0.999, t) < warmup_ema_decay(0.999, t + 1) for t in range(2000))
    with pytest.raises(ValueError):
        warmup_ema_decay(0.999, -1)


def _paired_batch(seed):
    generator = torch.Generator().manual_seed(seed)
    gt = torch.rand(2, 3, 32, 32, generator=generator)
    return {'lq': torch.nn.functional.avg_pool2d(gt, 4), 'gt': gt}


def _model(option_file, warmup):
    opt = tiny_model_opt(option_file)
    opt['high_order_degradation'] = False  # paired batches: the EMA is what is tested, not the degradations
    opt['train']['ema_decay'] = 0.999
    if warmup is None:
        opt['train'].pop('ema_warmup', None)
    else:
        opt['train']['ema_warmup'] = warmup
    torch.manual_seed(0)
    return build_model(opt)


def _params(net):
    return {k: v.detach().clone() for k, v in net.named_parameters()}


@pytest.mark.parametrize('option_file, warmup', [
    ('train_realesrnet_x4plus.yml', True), ('train_realesrnet_x4plus.yml', False),
    ('train_realesrnet_x4plus.yml', None), ('train_multiaesrgan_x4plus.yml', True)])
def test_each_update_uses_the_warmup_decay_or_upstreams(option_file, warmup):
    model = _model(option_file, warmup)
    for current_iter in (1, 2):
        ema_before = _params(model.net_g_ema)
        model.feed_data(_paired_batch(current_iter))
        model.optimize_parameters(current_iter)
        decay = warmup_ema_decay(0.999, current_iter - 1) if warmup else 0.999
        net = _params(model.net_g)
        for name, value in _params(model.net_g_ema).items():
            torch.testing.assert_close(value, ema_before[name] * decay + net[name] * (1 - decay))


def test_ttsr_model_declares_the_option():
    from ext.models.ttsr_inpaint_model import TTSRInpaintModel
    from ext.models.ttsr_model import TTSRModel
    from ext.models.ema_schedule import EMASchedule
    for cls in (TTSRModel, TTSRInpaintModel):
        assert EMASchedule in cls.policies and 'ema_warmup' in cls.train_option_keys


def test_resumed_run_continues_with_exactly_the_same_ema():
    straight = _model('train_realesrnet_x4plus.yml', True)
    for it in range(1, 5):
        straight.feed_data(_paired_batch(it))
        straight.optimize_parameters(it)

    first = _model('train_realesrnet_x4plus.yml', True)
    for it in (1, 2):
        first.feed_data(_paired_batch(it))
        first.optimize_parameters(it)
    # what a checkpoint + .state hold: net_g (params), net_g_ema (params_ema), optimizer; iteration 2
    saved = (copy.deepcopy(first.net_g.state_dict()), copy.deepcopy(first.net_g_ema.state_dict()),
             copy.deepcopy(first.optimizers[0].state_dict()))
    resumed = _model('train_realesrnet_x4plus.yml', True)
    resumed.net_g.load_state_dict(saved[0])
    resumed.net_g_ema.load_state_dict(saved[1])
    resumed.optimizers[0].load_state_dict(saved[2])
    for it in (3, 4):
        resumed.feed_data(_paired_batch(it))
        resumed.optimize_parameters(it)
    for name, value in _params(resumed.net_g_ema).items():
        assert torch.equal(value, _params(straight.net_g_ema)[name]), name


def test_a_non_boolean_option_is_an_error():
    model = _model('train_realesrnet_x4plus.yml', 'yes')
    model.feed_data(_paired_batch(1))
    with pytest.raises(OptionError, match='train.ema_warmup must be true or false'):
        model.optimize_parameters(1)
