"""The NaN guard (ext/engine/nan_guard.py): a step whose loss or gradients are not finite is skipped (weights,
EMA and GradScaler untouched), named (term, iteration, network) and counted; too many in a row stop the run.
Control: the same models with ``nan_guard: false`` end with non-finite weights."""
import logging

import pytest
import torch

import ext  # noqa: F401
from basicsr.utils import get_root_logger
from ext.engine.stopping import STOP
from ext.errors import EXIT_GUARD
from test_train_speed_models import SPECS, _weights


def _parameters(net):
    """The trained weights (a forward in training mode still moves BatchNorm's running statistics)."""
    return {k: v.detach().clone() for k, v in net.named_parameters()}


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _nan_from(loss, first, disc=None):
    """``loss`` that returns NaN from iteration ``first`` on (for D's or G's call only when ``disc`` is given)."""
    from ext.engine.progress import PROGRESS

    def poisoned(*args, **kwargs):
        value = loss(*args, **kwargs)
        hit = PROGRESS.current_iter >= first and (disc is None or kwargs.get('is_disc', False) == disc)
        return value * float('nan') if hit else value

    return poisoned


def _run(spec, model, first, last):
    batches = [spec.data(2, seed) for seed in range(2)]
    for iteration in range(first, last + 1):
        spec.feed(model, batches[iteration % 2])
        model.update_learning_rate(iteration)  # what the loop calls first: the engine notes the iteration
        model.optimize_parameters(iteration)


# (model, loss attribute, D's call (True) / G's call (False) / any (None), the network whose step is skipped, term)
CASES = [('aesrgan', 'cri_gan', False, 'net_g', 'l_g_gan'), ('ttsr', 'cri_pix', None, 'net_g', 'l_g_pix'),
         ('pix2pix', 'cri_gan', True, 'net_d', 'l_d_real')]


@pytest.mark.parametrize('name, attribute, disc, network, term', CASES, ids=[c[0] for c in CASES])
def test_a_nan_loss_term_skips_the_step_names_it_and_stops_after_max_skips(name, attribute, disc, network, term):
    spec = SPECS[name]
    model = spec.build(nan_guard={'max_skips': 2})
    _run(spec, model, 1, 1)
    setattr(model, attribute, _nan_from(getattr(model, attribute), 2, disc))
    kept = (network, 'net_g_ema') if network == 'net_g' else (network, )  # G skipped: its average keeps still too
    before = {net: _parameters(model.get_bare_model(getattr(model, net))) for net in kept}
    records = _Records()
    get_root_logger().addHandler(records)
    STOP.reset()
    try:
        _run(spec, model, 2, 2)
        assert STOP.request is None
        for net, weights in before.items():  # the poisoned step changed nothing, nor the average
            after = _parameters(model.get_bare_model(getattr(model, net)))
            assert all(torch.equal(after[k], weights[k]) for k in weights), net
        assert any(f'iteration 2: non-finite loss term(s) {term}' in m and f'step of {network}' in m
                   for m in records.messages), records.messages
        assert model.speed.state_dict()['nan_guard'] == {'in_a_row': 1, 'last_skipped_iter': 2}
        _run(spec, model, 3, 3)  # the second in a row: every rank is asked to stop, without a checkpoint
        reason, exit_code, save_checkpoint = STOP.request
        assert exit_code == EXIT_GUARD and not save_checkpoint
        assert '2 iterations in a row' in reason and '--auto_resume restarts from the last good checkpoint' in reason
    finally:
        STOP.reset()
        get_root_logger().removeHandler(records)
    for net in ('net_g', 'net_d'):
        assert all(torch.isfinite(v).all() for v in _weights(model.get_bare_model(getattr(model, net))).values())


@pytest.mark.parametrize('name, attribute, disc, network, term', CASES, ids=[c[0] for c in CASES])
def test_control_without_the_guard_the_weights_go_non_finite(name, attribute, disc, network, term):
    spec = SPECS[name]
    model = spec.build(nan_guard=False)
    setattr(model, attribute, _nan_from(getattr(model, attribute), 1, disc))
    _run(spec, model, 1, 1)
    weights = _weights(model.get_bare_model(getattr(model, network)))
    assert not all(torch.isfinite(v).all() for v in weights.values())


def test_non_finite_gradients_skip_the_step_and_the_count_resumes():
    spec = SPECS['sr']
    model = spec.build()
    first = next(model.net_g.parameters())
    hook = first.register_hook(lambda grad: grad * float('nan'))
    before = _weights(model.net_g)
    STOP.reset()
    _run(spec, model, 1, 1)
    assert all(torch.equal(v, before[k]) for k, v in _weights(model.net_g).items())
    state = model.speed.state_dict()
    assert state['nan_guard'] == {'in_a_row': 1, 'last_skipped_iter': 1}
    hook.remove()
    resumed = spec.build()
    resumed.speed.load_state_dict(state)
    assert resumed.speed.nan_guard.in_a_row == 1 and resumed.speed.nan_guard.last_skipped_iter == 1
    _run(spec, model, 2, 2)  # finite again: trains
    assert not all(torch.equal(v, before[k]) for k, v in _weights(model.net_g).items())


def test_bad_nan_guard_options_are_named():
    from ext.errors import OptionError
    for value in ({'max_skip': 3}, {'max_skips': 0}, 'yes'):
        with pytest.raises(OptionError, match='train.nan_guard'):
            SPECS['sr'].build(nan_guard=value)
