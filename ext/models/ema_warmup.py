"""EMA of the generator with a warm-up, so the averaged weights do not lag far behind early training.

BasicSR updates ``net_g_ema`` with a fixed decay from the first iteration: with decay 0.999 (0.99) the
average still holds ~37 % of the initial weights after 1,000 (100) iterations, and validation, the saved
``params_ema``, stage 2's initialisation and inference all use it. With ``train.ema_warmup: true`` the
decay at update ``t`` (0 for the first iteration) is ``min(ema_decay, (1 + t) / (10 + t))``, the
warm-up of TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` and timm's ``ModelEmaV2``-style
schedules: ~0.1 at the start, 0.9 after 80 updates, 0.99 after 890, then ``ema_decay``.

``t`` is derived from the training iteration BasicSR passes to ``optimize_parameters`` (restored
from the ``.state`` on resume), so a resumed run uses exactly the decays of an uninterrupted one; the
iteration count starts at 0 for a fine-tune from a pretrained generator, whose EMA copy starts equal
to it. Without the option (or ``false``) the behaviour is upstream's.
"""
import functools

import torch

EMA_WARMUP_KEY = 'ema_warmup'


def warmup_ema_decay(ema_decay, update):
    """Decay of EMA update ``update`` (0-based): ``min(ema_decay, (1 + update) / (10 + update))``."""
    if update < 0:
        raise ValueError(f'EMA update index must be >= 0, got {update}')
    return min(float(ema_decay), (1.0 + update) / (10.0 + update))


def _recording_iteration(optimize_parameters):

    @functools.wraps(optimize_parameters)
    def wrapper(self, current_iter, *args, **kwargs):
        outer = self._ema_iteration
        self._ema_iteration = current_iter
        try:
            return optimize_parameters(self, current_iter, *args, **kwargs)
        finally:
            self._ema_iteration = outer

    wrapper.records_ema_iteration = True
    return wrapper


class EMAWarmupMixin:
    """Mixin for BasicSR models that keep ``net_g_ema``; put it first in the bases.

    Records the iteration of ``optimize_parameters(current_iter)`` (the inherited one and any a
    subclass defines: they are wrapped when the class is created) and applies
    :func:`warmup_ema_decay` in ``model_ema`` when ``train.ema_warmup`` is true. ``model_ema(0)``
    (the initial copy) and calls outside ``optimize_parameters`` are unchanged.
    """

    ema_option_keys = frozenset({EMA_WARMUP_KEY})
    _ema_iteration = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get('optimize_parameters')
        if own is not None and not getattr(own, 'records_ema_iteration', False):
            cls.optimize_parameters = _recording_iteration(own)

    def ema_warmup_enabled(self):
        value = (self.opt.get('train') or {}).get(EMA_WARMUP_KEY, False)
        if not isinstance(value, bool):
            from ext.errors import OptionError
            raise OptionError(f'train.{EMA_WARMUP_KEY} must be true or false, got {value!r}')
        return value

    @_recording_iteration
    def optimize_parameters(self, current_iter):
        return super().optimize_parameters(current_iter)

    def model_ema(self, decay=0.999):
        if decay > 0 and self._ema_iteration is not None and self.ema_warmup_enabled():
            decay = warmup_ema_decay(decay, max(0, self._ema_iteration - 1))  # BasicSR's iterations start at 1
        return super().model_ema(decay=decay)


class EMABuffersMixin:
    """Mixin that makes ``model_ema`` average the generator's buffers too (BatchNorm's running mean and
    variance), with the same decay as the parameters; integer buffers (``num_batches_tracked``) are
    copied. BasicSR's ``model_ema`` averages ``named_parameters()`` only, so the EMA copy of a
    BatchNorm generator keeps its initial running statistics (mean 0, variance 1) and its eval-mode
    outputs, which validation, the saved ``params_ema`` and inference use, are those of statistics
    never measured. Put it after :class:`EMAWarmupMixin` in the bases, so it sees the decay in force.
    """

    def model_ema(self, decay=0.999):
        result = super().model_ema(decay=decay)
        net_g = self.get_bare_model(self.net_g)
        own = dict(net_g.named_buffers())
        with torch.no_grad():
            for name, buffer in self.net_g_ema.named_buffers():
                if buffer.is_floating_point():
                    buffer.mul_(decay).add_(own[name].to(buffer.dtype), alpha=1 - decay)
                else:
                    buffer.copy_(own[name])
        return result
