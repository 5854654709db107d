"""A plateau rule on a smoothed training loss (an early-stopping callback on the discriminator loss turned
into a learning-rate change); its state goes into the training state, so it survives a resume."""
import math

from ext.errors import OptionError

PLATEAU_KEYS = frozenset({'monitor', 'target', 'factor', 'patience', 'min_delta', 'smoothing', 'check_interval',
                          'max_reductions', 'min_lr'})
TARGETS = ('g', 'd')


class PlateauRule:
    """Keras ``EarlyStopping``'s rule on an exponentially smoothed loss, firing a learning-rate change
    instead of stopping: every ``check_interval`` updates, the bias-corrected moving average
    (``smoothing`` = its decay) counts as an improvement when it is below the best so far by more
    than ``min_delta``; after ``patience`` checks without one the rule fires (at most
    ``max_reductions`` times), and the wait starts again from the current value.
    """

    def __init__(self, patience=10, min_delta=0.0, smoothing=0.9, check_interval=1, max_reductions=10):
        self.patience, self.min_delta, self.smoothing = int(patience), float(min_delta), float(smoothing)
        self.check_interval, self.max_reductions = int(check_interval), int(max_reductions)
        self.steps, self.average, self.best, self.wait, self.reductions = 0, 0.0, math.inf, 0, 0

    @property
    def smoothed(self):
        """The bias-corrected moving average (nan before the first update)."""
        if self.steps == 0:
            return math.nan
        return self.average / (1 - self.smoothing**self.steps) if self.smoothing > 0 else self.average

    def update(self, value):
        """Feed one loss value; True when the rule fires."""
        value = float(value)
        if not math.isfinite(value):
            return False  # a diverged step says nothing about a plateau
        self.steps += 1
        self.average = self.smoothing * self.average + (1 - self.smoothing) * value
        if self.steps % self.check_interval:
            return False
        current = self.smoothed
        if current < self.best - self.min_delta:
            self.best, self.wait = current, 0
            return False
        self.wait += 1
        if self.wait < self.patience or self.reductions >= self.max_reductions:
            return False
        self.reductions += 1
        self.wait, self.best = 0, current
        return True

    def state_dict(self):
        return {'steps': self.steps, 'average': self.average, 'best': self.best, 'wait': self.wait,
                'reductions': self.reductions}

    def load_state_dict(self, state):
        self.steps, self.average = int(state['steps']), float(state['average'])
        self.best, self.wait, self.reductions = float(state['best']), int(state['wait']), int(state['reductions'])


class LearningRatePlateau:
    """``train.plateau``: a :class:`PlateauRule` on a logged loss that multiplies the learning rates of
    the generator's (``target: g``, ``factor`` 0.5) or the discriminator's (``target: d``,
    ``factor`` 1.1) optimizer when it fires."""

    def __init__(self, monitor='l_d_total', target='g', factor=None, min_lr=0.0, **rule):
        self.monitor, self.target = monitor, target
        self.factor = float(factor if factor is not None else (0.5 if target == 'g' else 1.1))
        self.min_lr = float(min_lr)
        self.rule = PlateauRule(**rule)

    @classmethod
    def from_options(cls, spec, model_name):
        if spec is None:
            return None
        if not isinstance(spec, dict):
            raise OptionError(f'{model_name}: train.plateau: expected a mapping with keys {sorted(PLATEAU_KEYS)}, '
                              f'got {spec!r}')
        problems = [f'train.plateau.{key}: unknown key; expected one of {sorted(PLATEAU_KEYS)}'
                    for key in spec if key not in PLATEAU_KEYS]
        target = spec.get('target', 'g')
        if target not in TARGETS:
            problems.append(f"train.plateau.target: expected 'g' (generator) or 'd' (discriminator), got {target!r}")
        for key, low in (('patience', 1), ('check_interval', 1), ('max_reductions', 0)):
            if key in spec and (not isinstance(spec[key], int) or spec[key] < low):
                problems.append(f'train.plateau.{key}: expected an integer >= {low}, got {spec[key]!r}')
        if 'smoothing' in spec and not 0 <= float(spec['smoothing']) < 1:
            problems.append(f"train.plateau.smoothing: expected a decay in [0, 1), got {spec['smoothing']!r}")
        if 'factor' in spec and not float(spec['factor']) > 0:
            problems.append(f"train.plateau.factor: expected a positive number, got {spec['factor']!r}")
        if problems:
            raise OptionError(f'{model_name}: ' + '; '.join(problems))
        return cls(**spec)

    def step(self, value, optimizers):
        """Feed ``value``; when the rule fires, scale the learning rates of ``optimizers[target]``.
        Returns the new learning rates, or None."""
        if not self.rule.update(value):
            return None
        optimizer = optimizers[self.target]
        for group in optimizer.param_groups:
            group['lr'] = max(group['lr'] * self.factor, self.min_lr)
        return [group['lr'] for group in optimizer.param_groups]

    def state_dict(self):
        return self.rule.state_dict()

    def load_state_dict(self, state):
        self.rule.load_state_dict(state)
