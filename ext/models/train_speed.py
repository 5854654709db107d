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

Resume: the GradScaler states are saved in the ``.state`` (``extra_training_state``, merged with the
model's own extra state). The accumulation position saved is always 0: a checkpoint is taken between
iterations and an iteration contains all its micro-batches.

Use: put :class:`TrainSpeedMixin` first in the model's bases (before ``EMAWarmupMixin``), add
``TrainSpeedMixin.speed_option_keys`` to ``train_option_keys``, list the batch tensors in
``accumulate_batch_keys``, and call ``self.autocast()``, ``self.zero_grad(opt)``,
``self.backward(loss, opt)`` and ``self.step(opt)`` instead of the raw torch calls; losses that are
unstable in half precision (gradient penalties, VGG features) go under ``self.full_precision()`` on
``.float()`` inputs. A model whose iteration cannot be split by re-running it per micro-batch (a
discriminator stepped before the generator's loss, several discriminator steps) sets
``splits_micro_batches = True`` and loops ``for index in self.micro_batches():`` itself, once per phase.
"""
import contextlib
import functools

import torch

SPEED_KEYS = ('use_amp', 'amp_bf16', 'use_channels_last', 'use_compile', 'use_compile_d', 'compile_mode',
              'compile_backend', 'accum_iter', 'fast_matmul')
_BOOL_KEYS = ('use_amp', 'amp_bf16', 'use_channels_last', 'use_compile', 'use_compile_d', 'fast_matmul')
STATE_KEY = 'train_speed'


def _error(message):
    from ext.errors import OptionError
    return OptionError(message)


def parse_speed_options(opt):
    """The validated speed settings of a BasicSR option dict; :class:`ext.options.OptionError` if invalid."""
    train = opt.get('train') or {}
    settings = {}
    for key in _BOOL_KEYS:
        value = train.get(key, False)
        if not isinstance(value, bool):
            raise _error(f'train.{key} must be true or false, got {value!r}')
        settings[key] = value
    for key, default in (('compile_mode', None), ('compile_backend', 'inductor')):
        value = train.get(key, default)
        if value is not None and not isinstance(value, str):
            raise _error(f'train.{key} must be a string, got {value!r}')
        settings[key] = value
    accum = train.get('accum_iter', 1)
    if isinstance(accum, bool) or not isinstance(accum, int) or accum < 1:
        raise _error(f'train.accum_iter must be an integer >= 1, got {accum!r}')
    settings['accum_iter'] = accum
    if accum > 1 and opt.get('is_train', True):
        batch = ((opt.get('datasets') or {}).get('train') or {}).get('batch_size_per_gpu')
        if isinstance(batch, int) and batch % accum:
            raise _error(f'train.accum_iter {accum} does not divide datasets.train.batch_size_per_gpu {batch} '
                         '(the configured batch is the effective batch, split into accum_iter micro-batches)')
    if settings['amp_bf16'] and not settings['use_amp']:
        raise _error('train.amp_bf16 is true but train.use_amp is false: set use_amp: true for bf16 autocast')
    on_cuda = opt.get('num_gpu', 0) != 0 and torch.cuda.is_available()
    if settings['use_amp'] and not settings['amp_bf16'] and not on_cuda:
        raise _error('train.use_amp without amp_bf16 (float16 with a GradScaler) needs a CUDA device; '
                     'on CPU set amp_bf16: true')
    given = [key for key in ('compile_mode', 'compile_backend') if train.get(key) is not None]
    if given and not (settings['use_compile'] or settings['use_compile_d']):
        names = ' and '.join(f'train.{key}' for key in given)
        raise _error(f'{names} {"is" if len(given) == 1 else "are"} set but train.use_compile and '
                     'train.use_compile_d are false')
    return settings


def _accumulating(optimize_parameters):

    @functools.wraps(optimize_parameters)
    def wrapper(self, current_iter, *args, **kwargs):
        if self._in_iteration:  # a nested wrapper (super() call): pass through
            return optimize_parameters(self, current_iter, *args, **kwargs)
        speed = self.speed_settings()
        names = [n for n in self.accumulate_batch_keys if getattr(self, n, None) is not None]
        if speed['use_channels_last']:
            for name in names:
                tensor = getattr(self, name)
                if tensor.dim() == 4:
                    setattr(self, name, tensor.contiguous(memory_format=torch.channels_last))
        count = speed['accum_iter']
        self._in_iteration = True
        try:
            if count == 1 or self.splits_micro_batches:
                return optimize_parameters(self, current_iter, *args, **kwargs)
            logs, outputs = [], []
            for _ in self.micro_batches():
                optimize_parameters(self, current_iter, *args, **kwargs)
                logs.append(dict(getattr(self, 'log_dict', {}) or {}))
                if getattr(self, 'output', None) is not None:
                    outputs.append(self.output.detach())
            if len(outputs) == count:
                self.output = torch.cat(outputs)
            self.log_dict = type(self.log_dict)(mean_logs(logs))
        finally:
            self._in_iteration = False

    wrapper.accumulates_micro_batches = True
    return wrapper


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


class TrainSpeedMixin:
    """Speed options for a BasicSR model (see the module docstring); put it first in the bases."""

    speed_option_keys = frozenset(SPEED_KEYS)
    accumulate_batch_keys = ('lq', 'gt')  # tensors split into micro-batches
    splits_micro_batches = False  # True: optimize_parameters loops over self.micro_batches() itself
    _micro_count = _micro_index = None
    _in_iteration = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)  # EMAWarmupMixin's wrapper goes inside (once per micro-batch)
        own = cls.__dict__.get('optimize_parameters')
        if own is not None and not getattr(own, 'accumulates_micro_batches', False):
            cls.optimize_parameters = _accumulating(own)

    def __init__(self, opt):
        self._speed = parse_speed_options(opt)
        self._grad_scalers = {}
        super().__init__(opt)
        speed = self._speed
        if speed['fast_matmul'] and self.device.type == 'cuda':
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        for name in ('net_g', 'net_d', 'net_g_ema'):
            net = getattr(self, name, None)
            if net is not None and speed['use_channels_last']:
                net.to(memory_format=torch.channels_last)
        if speed['use_compile'] and self.is_train:
            self.net_g = torch.compile(self.net_g, mode=speed['compile_mode'], backend=speed['compile_backend'])
        if speed['use_compile_d'] and self.is_train:
            if getattr(self, 'net_d', None) is None:
                raise _error(f'train.use_compile_d is true but {type(self).__name__} has no discriminator '
                             '(network_d); remove the key or set it to false')
            self.net_d = torch.compile(self.net_d, mode=speed['compile_mode'], backend=speed['compile_backend'])

    def speed_settings(self):
        return self._speed

    def get_bare_model(self, net):
        # a torch.compile wrapper (around the module or its DDP wrapper): save / load the module itself
        net = super().get_bare_model(getattr(net, '_orig_mod', net))
        return getattr(net, '_orig_mod', net)

    def micro_batches(self):
        """Yield the micro-batch indices of this iteration with the ``accumulate_batch_keys`` tensors set
        to that micro-batch (the whole batch again afterwards), for ``splits_micro_batches`` models; the
        helpers ``zero_grad`` / ``step`` act on the first / last index of each such loop."""
        count = self._speed['accum_iter']
        full = {n: getattr(self, n) for n in self.accumulate_batch_keys if getattr(self, n, None) is not None}
        self._micro_count = count
        try:
            for index in range(count):
                self._micro_index = index
                for name, tensor in full.items():
                    setattr(self, name, tensor.chunk(count)[index] if count > 1 else tensor)
                yield index
        finally:
            self._micro_count = self._micro_index = None
            for name, tensor in full.items():
                setattr(self, name, tensor)

    def preview_micro_batches(self, forward, net):
        """The no-grad output of ``forward()`` for each micro-batch, exactly as the forward with gradients
        will produce it later when ``replay_micro_batch(index)`` precedes it: for a discriminator that
        steps before the generator's loss under accumulation. The random state (dropout) is recorded per
        micro-batch and the running statistics of ``net``'s normalisation layers are restored afterwards,
        so they are updated once per micro-batch, by the forward with gradients."""
        buffers = {name: buffer.detach().clone() for name, buffer in net.named_buffers()}
        self._replay_states = []
        outputs = []
        with torch.no_grad():
            for _ in self.micro_batches():
                self._replay_states.append(_random_state(self.device))
                outputs.append(forward().detach())
        with torch.no_grad():
            for name, buffer in net.named_buffers():
                buffer.copy_(buffers[name])
        return outputs

    def replay_micro_batch(self, index):
        """Rewind the random state to where ``preview_micro_batches`` drew micro-batch ``index``."""
        _set_random_state(self.device, self._replay_states[index])

    @_accumulating
    def optimize_parameters(self, current_iter):
        return super().optimize_parameters(current_iter)

    # --- helpers the models call instead of raw torch calls ------------------------------------------
    def autocast(self):
        if not self._speed['use_amp']:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self._speed['amp_bf16'] else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def full_precision(self):
        """Autocast off (float32 for ``.float()`` inputs): for gradient penalties and VGG features."""
        if not self._speed['use_amp']:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, enabled=False)

    def _first_micro_batch(self):
        return not self._micro_index

    def _last_micro_batch(self):
        return self._micro_count is None or self._micro_index == self._micro_count - 1

    def _scaler(self, optimizer):
        if not self._speed['use_amp'] or self._speed['amp_bf16']:
            return None
        index = self._optimizer_index(optimizer)
        if index not in self._grad_scalers:
            self._grad_scalers[index] = torch.amp.GradScaler(self.device.type)
        return self._grad_scalers[index]

    def _optimizer_index(self, optimizer):
        for index, each in enumerate(self.optimizers):
            if each is optimizer:
                return index
        raise ValueError('the optimizer is not in self.optimizers')

    def zero_grad(self, optimizer):
        if self._first_micro_batch():
            optimizer.zero_grad()

    def backward(self, loss, optimizer):
        count = self._micro_count or 1
        loss = loss / count if count > 1 else loss
        scaler = self._scaler(optimizer)
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def step(self, optimizer):
        if not self._last_micro_batch():
            return
        scaler = self._scaler(optimizer)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()

    def model_ema(self, decay=0.999):
        if self._last_micro_batch():  # once per iteration, after the last micro-batch
            return super().model_ema(decay=decay)

    # --- exact resume ---------------------------------------------------------------------------------
    def extra_training_state(self):
        parent = getattr(super(), 'extra_training_state', None)
        state = dict(parent()) if parent is not None else {}
        state[STATE_KEY] = {'grad_scalers': {i: s.state_dict() for i, s in self._grad_scalers.items()},
                            'accum_position': 0}  # checkpoints fall between iterations
        return state

    def load_extra_training_state(self, state):
        state = dict(state)
        mine = state.pop(STATE_KEY, None)
        parent = getattr(super(), 'load_extra_training_state', None)
        if parent is not None:
            parent(state)
        if mine is None:
            return
        for index, scaler_state in mine.get('grad_scalers', {}).items():
            scaler = self._grad_scalers.get(index)
            if scaler is None:
                scaler = self._grad_scalers[index] = torch.amp.GradScaler(self.device.type)
            scaler.load_state_dict(scaler_state)
