"""Training speed options for BasicSR models: mixed precision, channels_last, torch.compile, gradient
accumulation and TF32 (key names as traiNNer-redux's).

Keys in ``train`` (all optional):

- ``use_amp`` (bool, false): autocast the forward passes and losses; ``amp_bf16`` (bool, false) picks
  bfloat16 (no GradScaler; works on CPU), otherwise float16 with one ``torch.amp.GradScaler`` per
  optimizer (CUDA only).
- ``use_channels_last`` (bool, false): networks and fed batches in ``torch.channels_last``.
- ``use_compile`` (bool, false): ``torch.compile(net_g, mode=compile_mode, backend=compile_backend)``;
  ``compile_mode`` (str or null), ``compile_backend`` (str, default ``inductor``). Checkpoints are
  saved from and loaded into the bare module (``_orig_mod``), so their keys are unchanged.
- ``accum_iter`` (int >= 1, 1): the configured ``batch_size_per_gpu`` stays the effective batch and is
  split into ``accum_iter`` micro-batches inside ``optimize_parameters``; the optimizers step and the
  EMA updates once per iteration, after the last micro-batch; the schedulers still count iterations.
- ``use_compile_d`` (bool, false): also ``torch.compile`` the discriminator (same mode and backend);
  an error for a model without ``network_d``. Checkpoint keys stay unchanged as for the generator.
- ``fast_matmul`` (bool, false): TF32 matmul and cuDNN on CUDA (no effect on CPU).
- ``nan_guard`` (mapping or false): the steps with a non-finite loss or gradient are skipped, named and
  limited (``max_skips``, default 10): :mod:`ext.engine.nan_guard`.

Resume: the GradScaler states are saved in the ``.state`` (the model's extra training state, under
``train_speed``). The accumulation position saved is always 0: a checkpoint is taken between
iterations and an iteration contains all its micro-batches.

Use: a model owns a :class:`TrainSpeed` (``self.speed = TrainSpeed(opt, batch_keys)`` before BasicSR
builds it, ``self.speed.setup(self)`` after) and lists it in ``policies``. Its training step calls
``self.speed.autocast()``, ``zero_grad(opt)``, ``backward(loss, opt)`` and ``step(opt)`` instead of the raw
torch calls; losses that are unstable in half precision (gradient penalties, VGG features) go under
``self.speed.full_precision()`` on ``.float()`` inputs. A step that can be re-run per micro-batch is run
through ``self.speed.accumulate(model, step, ...)``; an iteration that cannot (a discriminator stepped
before the generator's loss, several discriminator steps) calls ``prepare_batch(model)`` and loops
``for index in self.speed.micro_batches(model):`` itself, once per phase.
"""
import contextlib

import torch

from ext.engine.nan_guard import NaNGuard
from ext.engine.nan_guard import TRAIN_OPTION_KEYS as NAN_GUARD_KEYS
from ext.errors import OptionError

SPEED_KEYS = ('use_amp', 'amp_bf16', 'use_channels_last', 'use_compile', 'use_compile_d', 'compile_mode',
              'compile_backend', 'accum_iter', 'fast_matmul')
_BOOL_KEYS = ('use_amp', 'amp_bf16', 'use_channels_last', 'use_compile', 'use_compile_d', 'fast_matmul')


def parse_speed_options(opt):
    """The validated speed settings of a BasicSR option dict; :class:`ext.errors.OptionError` if invalid."""
    train = opt.get('train') or {}
    settings = {}
    for key in _BOOL_KEYS:
        value = train.get(key, False)
        if not isinstance(value, bool):
            raise OptionError(f'train.{key} must be true or false, got {value!r}')
        settings[key] = value
    for key, default in (('compile_mode', None), ('compile_backend', 'inductor')):
        value = train.get(key, default)
        if value is not None and not isinstance(value, str):
            raise OptionError(f'train.{key} must be a string, got {value!r}')
        settings[key] = value
    accum = train.get('accum_iter', 1)
    if isinstance(accum, bool) or not isinstance(accum, int) or accum < 1:
        raise OptionError(f'train.accum_iter must be an integer >= 1, got {accum!r}')
    settings['accum_iter'] = accum
    if accum > 1 and opt.get('is_train', True):
        batch = ((opt.get('datasets') or {}).get('train') or {}).get('batch_size_per_gpu')
        if isinstance(batch, int) and batch % accum:
            raise OptionError(f'train.accum_iter {accum} does not divide datasets.train.batch_size_per_gpu {batch} '
                         '(the configured batch is the effective batch, split into accum_iter micro-batches)')
    if settings['amp_bf16'] and not settings['use_amp']:
        raise OptionError('train.amp_bf16 is true but train.use_amp is false: set use_amp: true for bf16 autocast')
    on_cuda = opt.get('num_gpu', 0) != 0 and torch.cuda.is_available()
    if settings['use_amp'] and not settings['amp_bf16'] and not on_cuda:
        raise OptionError('train.use_amp without amp_bf16 (float16 with a GradScaler) needs a CUDA device; '
                     'on CPU set amp_bf16: true')
    given = [key for key in ('compile_mode', 'compile_backend') if train.get(key) is not None]
    if given and not (settings['use_compile'] or settings['use_compile_d']):
        names = ' and '.join(f'train.{key}' for key in given)
        raise OptionError(f'{names} {"is" if len(given) == 1 else "are"} set but train.use_compile and '
                     'train.use_compile_d are false')
    return settings


def mean_logs(logs):
    """The mean of each entry present in every one of ``logs`` (dicts of numbers or tensors), in the
    first's order: the logged values of an accumulated iteration (equal micro-batches)."""
    keys = [k for k in logs[0] if all(k in each for each in logs)]
    return [(k, sum(each[k] for each in logs) / len(logs)) for k in keys]


def _random_state(device):
    cuda = torch.cuda.get_rng_state(device) if device.type == 'cuda' else None
    return torch.get_rng_state(), cuda


def _set_random_state(device, state):
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)



def uncompiled(net):
    """``net`` without its ``torch.compile`` wrapper (the module whose state dict has the plain keys)."""
    return getattr(net, '_orig_mod', net)


class TrainSpeed:
    """The training speed policy of one model (see the module docstring for the option keys).

    Args:
        opt (dict): The model's options; the ``train`` keys are checked here, before the model is built.
        batch_keys (tuple[str]): The model's batch tensors (attributes) that micro-batches split.
    """

    train_option_keys = frozenset(SPEED_KEYS) | NAN_GUARD_KEYS
    state_key = 'train_speed'  # of the model's extra training state (the .state files of earlier runs too)

    def __init__(self, opt, batch_keys=('lq', 'gt')):
        self.settings = parse_speed_options(opt)
        self.nan_guard = NaNGuard(opt)
        self.accum_iter = self.settings['accum_iter']
        self.batch_keys = tuple(batch_keys)
        self.grad_scalers = {}  # optimizer index -> GradScaler (float16 autocast only)
        self.device, self.optimizers = None, ()
        self._micro_count = self._micro_index = None
        self._replay_states = []

    def setup(self, model):
        """Once BasicSR has built ``model`` (networks, optimizers): TF32, channels_last networks and
        ``torch.compile``."""
        speed = self.settings
        self.device, self.optimizers = model.device, model.optimizers
        self.nan_guard.name_networks(model)
        if speed['fast_matmul'] and self.device.type == 'cuda':
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        for name in ('net_g', 'net_d', 'net_g_ema'):
            net = getattr(model, name, None)
            if net is not None and speed['use_channels_last']:
                net.to(memory_format=torch.channels_last)
        if speed['use_compile'] and model.is_train:
            model.net_g = torch.compile(model.net_g, mode=speed['compile_mode'], backend=speed['compile_backend'])
        if speed['use_compile_d'] and model.is_train:
            if getattr(model, 'net_d', None) is None:
                raise OptionError(f'train.use_compile_d is true but {type(model).__name__} has no discriminator '
                                  '(network_d); remove the key or set it to false')
            model.net_d = torch.compile(model.net_d, mode=speed['compile_mode'], backend=speed['compile_backend'])

    # --- the batch and its micro-batches ---------------------------------------------------------------------
    def prepare_batch(self, model):
        """Put ``model``'s batch tensors in the networks' memory format, once per iteration, before its
        first forward."""
        if not self.settings['use_channels_last']:
            return
        for name in self.batch_keys:
            tensor = getattr(model, name, None)
            if tensor is not None and tensor.dim() == 4:
                setattr(model, name, tensor.contiguous(memory_format=torch.channels_last))

    def accumulate(self, model, step, *args):
        """One training iteration of ``model``: ``step(*args)`` on each micro-batch (the whole batch when
        ``accum_iter`` is 1), then ``model.log_dict`` the mean of the micro-batches' logs and
        ``model.output`` their outputs together; the optimizers step after the last micro-batch."""
        self.prepare_batch(model)
        if self.accum_iter == 1:
            step(*args)
            return
        logs, outputs = [], []
        for _ in self.micro_batches(model):
            step(*args)
            logs.append(dict(getattr(model, 'log_dict', {}) or {}))
            if getattr(model, 'output', None) is not None:
                outputs.append(model.output.detach())
        if len(outputs) == self.accum_iter:
            model.output = torch.cat(outputs)
        model.log_dict = type(model.log_dict)(mean_logs(logs))

    def micro_batches(self, model):
        """Yield the micro-batch indices of this iteration with ``model``'s ``batch_keys`` tensors set to
        that micro-batch (the whole batch again afterwards); ``zero_grad`` / ``step`` act on the first /
        last index of each such loop."""
        count = self.accum_iter
        full = {n: getattr(model, n) for n in self.batch_keys if getattr(model, n, None) is not None}
        self._micro_count = count
        try:
            for index in range(count):
                self._micro_index = index
                for name, tensor in full.items():
                    setattr(model, name, tensor.chunk(count)[index] if count > 1 else tensor)
                yield index
        finally:
            self._micro_count = self._micro_index = None
            for name, tensor in full.items():
                setattr(model, name, tensor)

    def preview_micro_batches(self, model, forward, net):
        """The no-grad output of ``forward()`` for each micro-batch, exactly as the forward with gradients
        will produce it later when ``replay_micro_batch(index)`` precedes it: for a discriminator that
        steps before the generator's loss under accumulation. The random state (dropout) is recorded per
        micro-batch and the running statistics of ``net``'s normalisation layers are restored afterwards,
        so they are updated once per micro-batch, by the forward with gradients."""
        buffers = {name: buffer.detach().clone() for name, buffer in net.named_buffers()}
        self._replay_states = []
        outputs = []
        with torch.no_grad():
            for _ in self.micro_batches(model):
                self._replay_states.append(_random_state(self.device))
                outputs.append(forward().detach())
        with torch.no_grad():
            for name, buffer in net.named_buffers():
                buffer.copy_(buffers[name])
        return outputs

    def replay_micro_batch(self, index):
        """Rewind the random state to where ``preview_micro_batches`` drew micro-batch ``index``."""
        _set_random_state(self.device, self._replay_states[index])

    # --- in place of the raw torch calls ---------------------------------------------------------------------
    def autocast(self):
        if not self.settings['use_amp']:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.settings['amp_bf16'] else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def full_precision(self):
        """Autocast off (float32 for ``.float()`` inputs): for gradient penalties and VGG features."""
        if not self.settings['use_amp']:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, enabled=False)

    def zero_grad(self, optimizer):
        if not self._micro_index:  # the first micro-batch, or no split
            optimizer.zero_grad()

    def backward(self, loss, optimizer, terms=None):
        """``loss.backward()`` for ``optimizer``'s step; a non-finite loss is not backpropagated and that step
        will be skipped (the NaN guard), naming the non-finite entries of ``terms`` (the loss dict)."""
        if not self.nan_guard.loss_is_finite(loss, optimizer, terms):
            return
        count = self._micro_count or 1
        loss = loss / count if count > 1 else loss
        scaler = self._scaler(optimizer)
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def step(self, optimizer):
        if self._micro_count is not None and self._micro_index != self._micro_count - 1:
            return  # not the last micro-batch: the gradients accumulate
        scaler = self._scaler(optimizer)
        if not self.nan_guard.allows_step(optimizer, check_gradients=scaler is None):
            return  # a GradScaler skips steps with infinite (scaled) gradients itself
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()

    def _scaler(self, optimizer):
        if not self.settings['use_amp'] or self.settings['amp_bf16']:
            return None
        index = next((i for i, each in enumerate(self.optimizers) if each is optimizer), None)
        if index is None:
            raise ValueError('the optimizer is not in the model\'s optimizers')
        if index not in self.grad_scalers:
            self.grad_scalers[index] = torch.amp.GradScaler(self.device.type)
        return self.grad_scalers[index]

    # --- exact resume ------------------------------------------------------------------------------------------
    def state_dict(self):
        return {'grad_scalers': {i: s.state_dict() for i, s in self.grad_scalers.items()},
                'accum_position': 0,  # checkpoints fall between iterations
                'nan_guard': self.nan_guard.state_dict()}

    def load_state_dict(self, state):
        if 'nan_guard' in state:
            self.nan_guard.load_state_dict(state['nan_guard'])
        for index, scaler_state in state.get('grad_scalers', {}).items():
            scaler = self.grad_scalers.get(index)
            if scaler is None:
                scaler = self.grad_scalers[index] = torch.amp.GradScaler(self.device.type)
            scaler.load_state_dict(scaler_state)
