"""Read and write network checkpoints safely: BasicSR ``.pth`` layouts and ``.safetensors``.

Layouts read (by :func:`load_network_file`):

* BasicSR / Real-ESRGAN: ``{'params': state_dict, 'params_ema': state_dict}`` (either key);
* a plain state dict (``{name: tensor}``), e.g. ESRGAN's original releases;
* common wrappers: ``state_dict``, ``model_state_dict``, ``model``, ``net``;
* keys prefixed by ``module.`` (DataParallel / DDP) or ``_orig_mod.`` (``torch.compile``).

``.pth``/``.pt``/``.ckpt`` files are read with ``torch.load(weights_only=True)``: a file whose pickle
would construct arbitrary Python objects (and so could run any code) is refused with
:class:`UnsafeCheckpointError` instead of being executed.

``.safetensors`` files (the default of traiNNer-redux, read by spandrel and chaiNNer) hold tensors
only. A checkpoint with one param key is written as a plain state dict, readable by every tool; one
with several keys (``params`` and ``params_ema``) prefixes each tensor name with ``<key>.`` and lists
the keys in the file's metadata.

Stable API for training and tools::

    save_network_file({'params': net.state_dict(), 'params_ema': ema.state_dict()}, 'net_g_1000.safetensors')
    state_dict = load_network_file('net_g_1000.pth', param_key='params_ema')   # falls back to 'params'
    load_into_network(net, state_dict, source='net_g_1000.pth')                # clear mismatch report
    network_file_name('net_g', 1000, 'safetensors')  # -> 'net_g_1000.safetensors'
    find_network_file(models_dir, 'net_g', 1000)     # whichever of .pth / .safetensors exists
    checkpoint_looks_complete(path)                  # written to the end? (for auto-resume)
"""
import json
import os
import re
import os.path as osp
import pickle
import warnings
from collections import OrderedDict

import torch

from ext.utils.atomic_io import atomic_torch_save, atomic_write_bytes

SAFETENSORS_EXTENSIONS = ('.safetensors', '.sft')
TORCH_EXTENSIONS = ('.pth', '.pt', '.ckpt', '.bin')
CHECKPOINT_EXTENSIONS = TORCH_EXTENSIONS + SAFETENSORS_EXTENSIONS

# Wrapper keys that hold the network's state dict, in the order they are tried for param_key='auto'.
PREFERRED_PARAM_KEYS = ('params_ema', 'params', 'state_dict', 'model_state_dict', 'model', 'net')
# Prefixes added by wrappers around a network; stripped from every key.
WRAPPER_PREFIXES = ('module.', '_orig_mod.')

_PARAM_KEYS_METADATA = 'ext.param_keys'
# What network a checkpoint holds ({'network': {'type': ..., **kwargs}, 'scale': int}), so that the file
# alone rebuilds it: a key of the .pth dict, a JSON string in the .safetensors metadata.
NETWORK_OPTIONS_KEY = 'network_options'
_NETWORK_OPTIONS_METADATA = 'ext.network_options'


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used; the message names the file and says why."""

    def __str__(self):
        return self.args[0]


class UnsafeCheckpointError(CheckpointError):
    """The file's pickle references Python code beyond tensors and containers; it was not loaded."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's parameter names or shapes do not match the network."""


def is_safetensors(path):
    return str(path).lower().endswith(SAFETENSORS_EXTENSIONS)


def _unsafe_reason(error):
    text = str(error)
    found = re.search(r'GLOBAL ([\w.]+)', text)
    if found:
        return f'it references {found.group(1)}'
    found = re.search(r'Unsupported operand (\d+)', text)
    if found:
        return f'it uses pickle opcode {found.group(1)}, which the weights-only loader does not accept'
    return 'it references Python objects'


def _unsafe_message(path, error):
    return (f'refused to load {path}: the file is a pickle that needs Python code beyond tensors and '
            f'containers ({_unsafe_reason(error)}). '
            f'Loading it would let the file run arbitrary code, so it is only read with '
            f'torch.load(weights_only=True). If you trust its source, re-save just the weights in a '
            f'separate Python session, e.g. torch.save(torch.load(path, weights_only=False)["params"], '
            f'"clean.pth"), or convert it to .safetensors.')


def _looks_unsafe(error):
    text = str(error)
    return 'Weights only load failed' in text or 'Unsupported global' in text or 'Unsupported operand' in text


def _read_torch(path):
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        if _looks_unsafe(error):
            raise UnsafeCheckpointError(_unsafe_message(path, error)) from None
        raise CheckpointError(f'cannot read {path}: not a PyTorch checkpoint or the file is damaged '
                              f'({str(error).strip().splitlines()[0]})') from None
    except FileNotFoundError:
        raise
    except Exception as error:  # torch raises RuntimeError, EOFError, KeyError, ... for damaged files
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ''
        raise CheckpointError(f'cannot read {path}: not a PyTorch checkpoint or the file is truncated/damaged '
                              f'({type(error).__name__}: {detail})') from None


def _read_safetensors(path, with_options=False):
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(path, framework='pt', device='cpu') as handle:
            metadata = handle.metadata() or {}
            tensors = OrderedDict((name, handle.get_tensor(name)) for name in handle.keys())
    except (SafetensorError, OSError, ValueError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise CheckpointError(f'cannot read {path}: not a valid .safetensors file ({error})') from None
    if with_options:
        return _read_safetensors_layout(path, metadata, tensors), _options_from_metadata(path, metadata)
    return _read_safetensors_layout(path, metadata, tensors)


def _options_from_metadata(path, metadata):
    text = metadata.get(_NETWORK_OPTIONS_METADATA)
    if not text:
        return None
    try:
        options = json.loads(text)
    except ValueError:
        raise CheckpointError(f'cannot read {path}: metadata {_NETWORK_OPTIONS_METADATA!r} is not JSON') from None
    return options if isinstance(options, dict) else None


def _read_safetensors_layout(path, metadata, tensors):
    keys = metadata.get(_PARAM_KEYS_METADATA)
    if not keys:
        return tensors
    try:
        keys = json.loads(keys)
    except ValueError:
        raise CheckpointError(f'cannot read {path}: metadata {_PARAM_KEYS_METADATA!r} is not a JSON list') from None
    if len(keys) == 1 and not any(name.startswith(f'{keys[0]}.') for name in tensors):
        return {keys[0]: tensors}
    nested = {key: OrderedDict() for key in keys}
    for name, tensor in tensors.items():
        key, _, rest = name.partition('.')
        if key not in nested or not rest:
            raise CheckpointError(f'cannot read {path}: tensor {name!r} does not start with one of the param keys '
                                  f'{keys} listed in its metadata')
        nested[key][rest] = tensor
    return nested


def read_checkpoint(path):
    """Everything a checkpoint file holds, on the CPU, without running pickled code.

    Returns a dict: for a BasicSR checkpoint ``{'params': ..., 'params_ema': ...}``, for a plain
    state dict ``{name: tensor}``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: the pickle references arbitrary Python objects.
        CheckpointError: the file is not a checkpoint or is damaged.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    content = _read_safetensors(path) if is_safetensors(path) else _read_torch(path)
    if not isinstance(content, dict):
        raise CheckpointError(f'{path} holds a {type(content).__name__}, not a state dict or a dict of state dicts')
    return content


def strip_wrapper_prefixes(state_dict):
    """Remove ``module.`` / ``_orig_mod.`` (DDP, DataParallel, torch.compile) from the start of every key."""
    stripped = OrderedDict()
    for name, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if name.startswith(prefix):
                    name, changed = name[len(prefix):], True
        stripped[name] = value
    return stripped


def is_state_dict(value):
    return isinstance(value, dict) and len(value) > 0 and all(torch.is_tensor(v) for v in value.values())


def select_params(checkpoint, param_key='params', source='checkpoint'):
    """Pick the network's state dict out of a checkpoint's content.

    Args:
        checkpoint (dict): what :func:`read_checkpoint` returned.
        param_key (str | None): key to use. ``'params_ema'`` falls back to ``'params'`` when absent
            (BasicSR's rule), both fall back to other trainers' wrappers (``state_dict``, ``model``, ...);
            ``'auto'`` or None tries :data:`PREFERRED_PARAM_KEYS` in order; any other key must exist.
            A plain state dict is returned whatever the key.
        source (str): the file name, for messages.

    Returns:
        (str | None, OrderedDict): the key used (None for a plain state dict) and the state dict,
        with wrapper prefixes removed.
    """
    if is_state_dict(checkpoint):
        return None, strip_wrapper_prefixes(checkpoint)
    generic = PREFERRED_PARAM_KEYS[2:]  # state_dict, model_state_dict, model, net: other trainers' wrappers
    if param_key in (None, 'auto'):
        candidates = PREFERRED_PARAM_KEYS
    elif param_key == 'params_ema':
        candidates = ('params_ema', 'params') + generic
    elif param_key == 'params':
        candidates = ('params', ) + generic
    else:
        candidates = (param_key, )
    for key in candidates:
        value = checkpoint.get(key)
        if isinstance(value, dict):
            if not is_state_dict(value):
                bad = sorted(k for k, v in value.items() if not torch.is_tensor(v))[:5]
                raise CheckpointError(f'{source}: {key!r} is not a state dict (entries that are not tensors: {bad})')
            return key, strip_wrapper_prefixes(value)
    available = sorted(str(k) for k in checkpoint)
    raise CheckpointError(f'{source} has no network weights under {param_key!r}; its top-level keys are '
                          f'{available[:20]}{" ..." if len(available) > 20 else ""}. Choose one of them as the '
                          f'param key.')


def load_network_file(path, param_key='params'):
    """The state dict of one network from a ``.pth``/``.safetensors`` file (see :func:`select_params`)."""
    return select_params(read_checkpoint(path), param_key, source=os.fspath(path))[1]


def load_network_and_options(path, param_key='params'):
    """``(state_dict, network_options)``: :func:`load_network_file` plus the network options the file
    records (``{'network': {'type': ..., ...}, 'scale': ...}``, written by this package's training), or None."""
    path = os.fspath(path)
    if is_safetensors(path) and osp.isfile(path):
        content, options = _read_safetensors(path, with_options=True)
    else:
        content = read_checkpoint(path)
        options = content.get(NETWORK_OPTIONS_KEY) if isinstance(content, dict) else None
        options = options if isinstance(options, dict) else None
    return select_params(content, param_key, source=path)[1], options


def _json_options(network_options):
    """``network_options`` as plain JSON types (OrderedDicts, tuples from YAML loaders), or a clear error."""
    try:
        return json.loads(json.dumps(network_options))
    except (TypeError, ValueError) as error:
        raise TypeError(f'network_options must hold JSON values only (str, numbers, lists, dicts): {error}') from None


def _clean_state_dict(state_dict, what):
    if not isinstance(state_dict, dict):
        raise TypeError(f'{what} must be a state dict (name -> tensor), got {type(state_dict).__name__}')
    clean = OrderedDict()
    for name, value in strip_wrapper_prefixes(state_dict).items():
        if not torch.is_tensor(value):
            raise TypeError(f'{what}[{name!r}] is a {type(value).__name__}; checkpoints hold tensors only')
        clean[name] = value.detach().cpu()
    return clean


def save_network_file(save_dict, path, network_options=None):
    """Write ``{param_key: state_dict}`` to ``path`` atomically; the format follows the extension.

    ``.safetensors``: tensors only (see the module docstring for the layout); anything else: a
    ``torch.save`` pickle of ``{param_key: state_dict}`` that loads with ``weights_only=True``.
    Keys lose their ``module.`` prefixes and tensors move to the CPU, as BasicSR's ``save_network``.
    ``network_options`` (e.g. ``{'network': opt['network_g'], 'scale': 4}``) is stored beside the weights
    (key ``network_options`` of the .pth dict, ``ext.network_options`` metadata of a .safetensors) so that
    inference rebuilds the network from the file alone; BasicSR and Real-ESRGAN ignore it.
    """
    path = os.fspath(path)
    if not isinstance(save_dict, dict) or not save_dict:
        raise TypeError('save_network_file() takes a non-empty dict {param_key: state_dict}')
    clean = {str(key): _clean_state_dict(value, f'save_dict[{key!r}]') for key, value in save_dict.items()}
    options = _json_options(network_options) if network_options else None
    if not is_safetensors(path):
        atomic_torch_save(dict(clean, **({NETWORK_OPTIONS_KEY: options} if options else {})), path)
        return path
    from safetensors.torch import save as safetensors_bytes
    keys = list(clean)
    if len(keys) == 1:
        tensors = dict(clean[keys[0]])
    else:
        bad = [key for key in keys if '.' in key]
        if bad:
            raise ValueError(f'param keys written to one .safetensors file cannot contain dots: {bad}')
        tensors = {f'{key}.{name}': tensor for key in keys for name, tensor in clean[key].items()}
    tensors = _unshare(tensors)
    metadata = {'format': 'pt', _PARAM_KEYS_METADATA: json.dumps(keys)}
    if options:
        metadata[_NETWORK_OPTIONS_METADATA] = json.dumps(options)
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))
    return path


def _unshare(tensors):
    """safetensors refuses tensors that share memory (tied weights, views); give each its own copy."""
    seen = set()
    result = {}
    for name, tensor in tensors.items():
        storage = (tensor.untyped_storage().data_ptr(), tensor.device.type) if tensor.numel() else None
        if storage is not None and storage in seen or not tensor.is_contiguous():
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        elif storage is not None:
            seen.add(storage)
        result[name] = tensor
    return result


def compare_state_dicts(expected, actual):
    """(missing, unexpected, shape mismatches) of ``actual`` against ``expected``'s names and shapes."""
    missing = [name for name in expected if name not in actual]
    unexpected = [name for name in actual if name not in expected]
    mismatched = [(name, tuple(expected[name].shape), tuple(actual[name].shape)) for name in expected
                  if name in actual and tuple(expected[name].shape) != tuple(actual[name].shape)]
    return missing, unexpected, mismatched


def describe_mismatch(missing, unexpected, mismatched, expected='network', actual='checkpoint', limit=8):
    """One line listing the differences :func:`compare_state_dicts` found (``actual`` against ``expected``)."""
    def listing(names):
        return ', '.join(names[:limit]) + (f' ... (+{len(names) - limit} more)' if len(names) > limit else '')

    parts = []
    if mismatched:
        parts.append(f'{len(mismatched)} shape mismatch(es): ' + listing(
            [f'{name} {actual} {tuple(got)} vs {expected} {tuple(want)}' for name, want, got in mismatched]))
    if missing:
        parts.append(f'{len(missing)} missing from the {actual}: {listing(missing)}')
    if unexpected:
        parts.append(f'{len(unexpected)} not in the {expected}: {listing(unexpected)}')
    return '; '.join(parts)


def load_into_network(net, state_dict, strict=True, source='checkpoint'):
    """``net.load_state_dict`` with a readable error naming ``source`` and the first differing keys.

    With ``strict=False`` only matching names with matching shapes are loaded and the differences are
    returned (and warned about) instead of raised.
    """
    expected = net.state_dict()
    missing, unexpected, mismatched = compare_state_dicts(expected, state_dict)
    if missing or unexpected or mismatched:
        message = (f'{source} does not match the network {type(net).__name__}: '
                   f'{describe_mismatch(missing, unexpected, mismatched)}. Check the architecture options '
                   f'(e.g. num_feat, num_block, scale) and the param key.')
        if strict:
            raise CheckpointMismatchError(message)
        warnings.warn(message, stacklevel=2)
        bad = {name for name, _, _ in mismatched}
        state_dict = OrderedDict((k, v) for k, v in state_dict.items() if k in expected and k not in bad)
    net.load_state_dict(state_dict, strict=strict)
    return missing, unexpected, mismatched


# --- helpers for training code that saves and resumes networks in either format ----------------
NETWORK_FILE_FORMATS = {'pth': '.pth', 'safetensors': '.safetensors'}


def network_file_name(net_label, label, checkpoint_format='pth'):
    """BasicSR's network file name (``net_g_1000.pth``) in ``checkpoint_format`` ('pth' or 'safetensors')."""
    if checkpoint_format not in NETWORK_FILE_FORMATS:
        raise ValueError(f'checkpoint format must be one of {sorted(NETWORK_FILE_FORMATS)}, got {checkpoint_format!r}')
    return f'{net_label}_{label}{NETWORK_FILE_FORMATS[checkpoint_format]}'


def find_network_file(folder, net_label, label):
    """The existing ``<net_label>_<label>.{pth,safetensors}`` in ``folder`` (newest if both), or None."""
    found = [osp.join(folder, network_file_name(net_label, label, fmt)) for fmt in NETWORK_FILE_FORMATS]
    found = [path for path in found if osp.isfile(path)]
    return max(found, key=osp.getmtime) if found else None


def checkpoint_looks_complete(path):
    """Cheap check that a checkpoint file was written to the end (no tensor data is read).

    ``.pth``: a readable zip directory (torch.save's format); ``.safetensors``: the header parses and the
    file is exactly as long as the header says.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        return False
    if not is_safetensors(path):
        import zipfile
        return zipfile.is_zipfile(path)
    try:
        with open(path, 'rb') as handle:
            prefix = handle.read(8)
            if len(prefix) != 8:
                return False
            header_size = int.from_bytes(prefix, 'little')
            if header_size <= 0 or header_size > osp.getsize(path) - 8:
                return False
            header = json.loads(handle.read(header_size))
        ends = [entry['data_offsets'][1] for name, entry in header.items() if name != '__metadata__']
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False
    return osp.getsize(path) == 8 + header_size + max(ends, default=0)
