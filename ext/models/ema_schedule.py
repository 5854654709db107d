"""The generator's EMA policy: when and with what decay ``net_g_ema`` follows ``net_g`` (not a component).

Warm-up: BasicSR updates ``net_g_ema`` with a fixed decay from the first iteration: with decay 0.999
(0.99) the average still holds ~37 % of the initial weights after 1,000 (100) iterations, and
validation, the saved ``params_ema``, stage 2's initialisation and inference all use it. With
``train.ema_warmup: true`` the decay at update ``t`` (0 for the first iteration) is
``min(ema_decay, (1 + t) / (10 + t))``, the warm-up of TensorFlow's
``ExponentialMovingAverage(num_updates=...)`` and timm's ``ModelEmaV2``-style schedules: ~0.1 at the
start, 0.9 after 80 updates, 0.99 after 890, then ``ema_decay``. ``t`` is derived from the training
iteration (restored from the ``.state`` on resume), so a resumed run uses exactly the decays of an
uninterrupted one; the iteration count starts at 0 for a fine-tune from a pretrained generator, whose EMA
copy starts equal to it. Without the option (or ``false``) the behaviour is upstream's.

Buffers: BasicSR's ``model_ema`` averages ``named_parameters()`` only, so the EMA copy of a BatchNorm
generator keeps its initial running statistics (mean 0, variance 1) and its eval-mode outputs, which
validation, the saved ``params_ema`` and inference use, are those of statistics never measured. With
``average_buffers`` the floating-point buffers are averaged with the same decay as the parameters and the
integer ones (``num_batches_tracked``) copied.
"""
import torch

from ext.errors import OptionError

EMA_WARMUP_KEY = 'ema_warmup'


def warmup_ema_decay(ema_decay, update):
    """Decay of EMA update ``update`` (0-based): ``min(ema_decay, (1 + update) / (10 + update))``."""
    if update < 0:
        raise ValueError(f'EMA update index must be >= 0, got {update}')
    return min(float(ema_decay), (1.0 + update) / (10.0 + update))


class EMASchedule:
    """The EMA update of a BasicSR model's ``net_g_ema``, once per training iteration (see the module
    docstring). ``train.ema_decay`` (BasicSR's key; 0: no EMA) is the decay; ``train.ema_warmup`` (bool,
    false) warms it up.

    Args:
        opt (dict): The model's options.
        average_buffers (bool): Also average the generator's buffers (a BatchNorm generator).
    """

    train_option_keys = frozenset({EMA_WARMUP_KEY})

    def __init__(self, opt, average_buffers=False):
        self._warmup = (opt.get('train') or {}).get(EMA_WARMUP_KEY, False)
        self.average_buffers = average_buffers

    @property
    def warmup(self):
        if not isinstance(self._warmup, bool):
            raise OptionError(f'train.{EMA_WARMUP_KEY} must be true or false, got {self._warmup!r}')
        return self._warmup

    def decay(self, ema_decay, current_iter):
        """The decay of the update after training iteration ``current_iter`` (BasicSR counts from 1)."""
        return warmup_ema_decay(ema_decay, max(0, current_iter - 1)) if self.warmup else ema_decay

    def update(self, model, current_iter):
        """Move ``model.net_g_ema`` towards ``model.net_g`` after iteration ``current_iter``; nothing when
        ``model.ema_decay`` is 0."""
        if model.ema_decay <= 0:
            return
        speed = getattr(model, 'speed', None)
        if speed is not None and speed.nan_guard.skipped_step(model.optimizer_g, current_iter):
            return  # the generator kept its weights (a non-finite step): so does its average
        decay = self.decay(model.ema_decay, current_iter)
        model.model_ema(decay=decay)
        if self.average_buffers:
            own = dict(model.get_bare_model(model.net_g).named_buffers())
            with torch.no_grad():
                for name, buffer in model.net_g_ema.named_buffers():
                    if buffer.is_floating_point():
                        buffer.mul_(decay).add_(own[name].to(buffer.dtype), alpha=1 - decay)
                    else:
                        buffer.copy_(own[name])
