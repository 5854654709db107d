"""Non-finite losses and gradients: the optimizer step skipped and named, and the run stopped when it lasts.

A GAN run that goes NaN either keeps training on NaN weights (every later checkpoint broken) or dies
without saying which term did it. Here, before each optimizer step, the loss that was backpropagated
and the gradients are checked: when one is not finite, the step is skipped (the weights, the EMA copy
and the GradScaler stay as they were), and the log names the loss term(s), the iteration and the
network. After ``max_skips`` iterations in a row with a skipped step, every rank stops after that
iteration with exit status 3 and no checkpoint of it (:func:`ext.engine.stopping.request_stop`);
``--auto_resume`` restarts from the last good checkpoint. The count is part of the ``.state``.

The check runs in this package's training models (their :class:`~ext.models.train_speed.TrainSpeed`
calls it); BasicSR's own models step their optimizers themselves.

Option key, ``train``:
    nan_guard (mapping, or false to turn it off): ``max_skips`` (int >= 1, default 10).
"""
import torch
from basicsr.utils import get_root_logger

from ext.engine.progress import PROGRESS
from ext.engine.stopping import request_stop
from ext.errors import EXIT_GUARD, OptionError

TRAIN_OPTION_KEYS = frozenset({'nan_guard'})
GUARD_KEYS = frozenset({'max_skips'})


def _all_finite(tensors):
    tensors = [t for t in tensors if t is not None]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())  # one host sync


class NaNGuard:
    """The non-finite check of one model's optimizer steps (see the module docstring)."""

    def __init__(self, opt):
        spec = (opt.get('train') or {}).get('nan_guard', {})
        if spec is False or spec is None:
            spec, self.enabled = {}, False
        else:
            self.enabled = True
        if not isinstance(spec, dict) or set(spec) - GUARD_KEYS:
            raise OptionError(f'train.nan_guard: expected false or a mapping with keys {sorted(GUARD_KEYS)}, '
                              f'got {spec!r}')
        self.max_skips = spec.get('max_skips', 10)
        if isinstance(self.max_skips, bool) or not isinstance(self.max_skips, int) or self.max_skips < 1:
            raise OptionError(f'train.nan_guard.max_skips must be an integer >= 1, got {self.max_skips!r}')
        self.network_of = {}  # id(optimizer) -> the name of the network it updates
        self.pending = {}  # id(optimizer) -> names of the non-finite loss terms of this step
        self.skipped = set()  # (iteration, id(optimizer)) of the current iteration's skipped steps
        self.in_a_row = 0  # iterations in a row with a skipped step, up to the last one
        self.last_skipped_iter = None

    def name_networks(self, model):
        """Remember which of ``model``'s networks each of its optimizers updates (for the messages)."""
        for optimizer in model.optimizers:
            ids = {id(p) for group in optimizer.param_groups for p in group['params']}
            names = [name for name in ('net_g', 'net_d') if getattr(model, name, None) is not None
                     and any(id(p) in ids for p in getattr(model, name).parameters())]
            self.network_of[id(optimizer)] = ' and '.join(names) or 'the network'

    def loss_is_finite(self, loss, optimizer, terms=None):
        """False (and the step of ``optimizer`` marked for skipping) when ``loss`` is not finite."""
        if not self.enabled or bool(torch.isfinite(loss.detach()).all()):
            return True
        bad = [name for name, value in (terms or {}).items()
               if torch.is_tensor(value) and not bool(torch.isfinite(value.detach()).all())]
        self.pending.setdefault(id(optimizer), []).extend(bad or ['the total loss'])
        return False

    def allows_step(self, optimizer, check_gradients=True):
        """Whether ``optimizer`` may step now; a step refused is logged and counted (its gradients are
        cleared). ``check_gradients``: false where a GradScaler handles infinite gradients itself."""
        if not self.enabled:
            return True
        terms = self.pending.pop(id(optimizer), None)
        if terms is None and check_gradients:
            grads = [p.grad for group in optimizer.param_groups for p in group['params']]
            if _all_finite(grads):
                return True
            what = 'non-finite gradients'
        elif terms is None:
            return True
        else:
            what = f'non-finite loss term(s) {", ".join(dict.fromkeys(terms))}'
        optimizer.zero_grad()
        self._count_skip(optimizer, what)
        return False

    def _count_skip(self, optimizer, what):
        iteration = PROGRESS.current_iter
        if iteration is None or iteration != self.last_skipped_iter:
            consecutive = iteration is not None and self.last_skipped_iter == iteration - 1
            self.in_a_row = self.in_a_row + 1 if consecutive else 1
            self.last_skipped_iter = iteration
            self.skipped = set()
        self.skipped.add((iteration, id(optimizer)))
        network = self.network_of.get(id(optimizer), 'the network')
        get_root_logger().warning(f'NaN guard: iteration {iteration}: {what} in the step of {network}; the step is '
                                  f'skipped ({self.in_a_row} iteration(s) in a row, train.nan_guard.max_skips '
                                  f'{self.max_skips}).')
        if self.in_a_row >= self.max_skips:
            request_stop(f'NaN guard: {self.in_a_row} iterations in a row had non-finite losses or gradients (last: '
                         f'{what} in the step of {network}). Their steps were skipped and no checkpoint of this '
                         'iteration is written: --auto_resume restarts from the last good checkpoint (lower the '
                         'learning rate or the loss weights first).', EXIT_GUARD, save_checkpoint=False)

    def skipped_step(self, optimizer, iteration):
        """True when the step of ``optimizer`` in ``iteration`` was skipped (the EMA then keeps still)."""
        return (iteration, id(optimizer)) in self.skipped

    def state_dict(self):
        return {'in_a_row': self.in_a_row, 'last_skipped_iter': self.last_skipped_iter}

    def load_state_dict(self, state):
        self.in_a_row, self.last_skipped_iter = int(state['in_a_row']), state['last_skipped_iter']
