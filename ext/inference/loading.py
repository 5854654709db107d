"""Build the network a checkpoint, an option file or a registry name describes, and load its weights.

:func:`load_network` is the one loader of ``scripts/inference.py``, ``scripts/evaluate.py`` and
``scripts/export_onnx.py``; the sources are listed in its docstring.
"""
import inspect
import json
import sys

from torch import nn

from ext.errors import OptionError, UsageError
from ext.inference.network import LoadedNetwork
from ext.registry import closest, registry_get
from ext.utils.checkpoint import CheckpointError, load_into_network, load_network_and_options
from ext.utils.option_file import read_option_file

ONNX_EXTENSIONS = ('.onnx', )

# Constructor flags that only matter for training initialisation: every weight comes from the checkpoint
# (loaded strictly), so e.g. TTSR's texture extractor need not find ImageNet VGG19 weights on disk.
INFERENCE_INIT_OVERRIDES = {'load_pretrained_vgg': False}


def build_network(arch_opt, where):
    """``(net, name, kwargs)`` for ``{'type': Name, **kwargs}`` from BasicSR's ARCH_REGISTRY (this package's
    architectures included); ``where`` names the options in error messages."""
    from basicsr.utils.registry import ARCH_REGISTRY
    arch_opt = dict(arch_opt)
    name = arch_opt.pop('type', None)
    if not name:
        raise UsageError(f'{where}: no network type given')
    cls = registry_get(ARCH_REGISTRY, name)
    if cls is None:
        # BasicSR registers some of its archs as '<name>_basicsr' and resolves the bare name to them
        known = [key[:-len('_basicsr')] if key.endswith('_basicsr') else key for key in ARCH_REGISTRY.keys()]
        raise UsageError(f'{where}: unknown architecture {name!r}{closest(name, known)}')
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        parameters = {}
    for flag, value in INFERENCE_INIT_OVERRIDES.items():
        if flag in parameters:  # the checkpoint provides these weights; do not look for the files
            arch_opt[flag] = value
    try:
        return cls(**arch_opt), name, arch_opt
    except TypeError as error:
        raise UsageError(f'{where}: cannot build {name}({", ".join(f"{k}={v!r}" for k, v in arch_opt.items())}): '
                         f'{error}. Its signature is {name}{inspect.signature(cls)}') from None


def read_network_options(path):
    """The options of a YAML file (training or test options) that has a ``network_g`` section."""
    try:
        opt = read_option_file(path)
    except OptionError as error:
        raise UsageError(str(error)) from None
    if not isinstance(opt, dict) or not isinstance(opt.get('network_g'), dict):
        raise UsageError(f'{path} has no network_g section (the generator to run)')
    return opt


def _read_weights(model_path, param_key):
    try:
        return load_network_and_options(model_path, param_key)
    except (FileNotFoundError, CheckpointError) as error:
        raise UsageError(str(error)) from None


def _from_registry(arch_opt, where, model_path, state_dict, scale):
    net, name, arch_args = build_network(arch_opt, where)
    try:
        load_into_network(net, state_dict, strict=True, source=model_path)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    scale = scale or next((arch_args[key] for key in ('scale', 'upscale', 'upscale_factor', 'scale_factor')
                           if isinstance(arch_args.get(key), int)), None)
    return LoadedNetwork(net.eval(), scale, _in_channels_of(net, arch_args), getattr(net, 'size_multiple', None), 0,
                         True, f'{name} from {model_path}', network_opt=dict(arch_opt))


def _in_channels_of(net, arch_args):
    for key in ('num_in_ch', 'in_channels', 'in_nc', 'in_chans', 'num_in_channels'):
        if isinstance(arch_args.get(key), int):
            return arch_args[key]
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return 3


def _arch_options(arch, arch_args):
    if isinstance(arch_args, str):
        try:
            arch_args = json.loads(arch_args)
        except ValueError as error:
            raise UsageError(f'--arch_args is not valid JSON ({error}): {arch_args}') from None
    if not isinstance(arch_args or {}, dict):
        raise UsageError(f'--arch_args must be a JSON object, got {arch_args}')
    return {'type': arch, **(arch_args or {})}


def load_network(model_path=None, opt=None, arch=None, arch_args=None, param_key='auto', network=None,
                 default_opt=None):
    """Build the network the arguments describe and load its weights strictly, on the CPU.

    The network comes from one source:

    * ``opt``: an option file (training or test YAML) whose ``network_g`` is the network; the checkpoint
      defaults to its ``path.pretrain_network_g``;
    * ``arch`` and ``arch_args`` (a dict or a JSON string): a name of BasicSR's ARCH_REGISTRY (this
      package's architectures included) and its keyword arguments;
    * ``network``: a ``network_g`` mapping, ``{'type': Name, **kwargs}``;
    * only ``model_path``: a checkpoint written by this package's training records its ``network_g``
      (``network_options`` in a ``.pth``, metadata in a ``.safetensors``) and is rebuilt from it; a file
      that records nothing is built from ``default_opt``'s ``network_g`` when given, else recognised by
      spandrel (ESRGAN/RRDBNet, Real-ESRGAN compact, SwinIR, HAT, ...);
    * an ``.onnx`` ``model_path`` (``scripts/export_onnx.py``) runs with onnxruntime.

    Args:
        param_key (str): ``auto`` (``params_ema``, else ``params``), ``params``, ``params_ema``, ...

    Returns:
        LoadedNetwork: ``scale`` is None when neither the checkpoint nor the options give it.

    Raises:
        UsageError: the sources contradict each other, a file is missing or unreadable, or the weights do
            not fit the network; the message says which and why.
    """
    given = [name for name, value in (('opt (a YAML file)', opt), ('arch (a registry name)', arch),
                                      ('network (a network_g mapping)', network)) if value]
    if len(given) > 1:
        raise UsageError(f'give one network source, not {" and ".join(given)}')
    if model_path and str(model_path).lower().endswith(ONNX_EXTENSIONS):
        if given:
            raise UsageError(f'{model_path} is an ONNX model: it holds its own network; drop -opt/--arch')
        from ext.inference.onnx import load_onnx_network
        return load_onnx_network(model_path)
    scale = None
    if opt:
        options = read_network_options(opt)
        arch_opt, where, scale = options['network_g'], f'{opt} network_g', options.get('scale')
        model_path = model_path or (options.get('path') or {}).get('pretrain_network_g')
    elif arch:
        arch_opt, where = _arch_options(arch, arch_args), '--arch'
    elif network:
        arch_opt, where = network, 'network_g'
    elif not model_path:
        raise UsageError('give the network: --model_path alone (a published architecture or a checkpoint this '
                         'package wrote), or -opt train.yml / --arch Name with --model_path')
    if not model_path:
        raise UsageError('no checkpoint: pass --model_path (or set path.pretrain_network_g in the YAML)')
    state_dict, recorded = _read_weights(model_path, param_key)
    if not given and recorded and isinstance(recorded.get('network'), dict):
        arch_opt, scale = recorded['network'], recorded.get('scale')
        where = f'{model_path} (network options recorded in the checkpoint)'
    elif not given and default_opt:
        options = read_network_options(default_opt)
        arch_opt, scale = options['network_g'], options.get('scale')
        where = f'{default_opt} network_g (the default for a checkpoint that records no network)'
    elif not given:
        return _load_with_spandrel(model_path, state_dict)
    return _from_registry(arch_opt, where, model_path, state_dict, scale)


def _load_with_spandrel(model_path, state_dict):
    import spandrel
    try:
        descriptor = spandrel.ModelLoader(device='cpu').load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError:
        raise UsageError(f'{model_path}: spandrel does not recognise this architecture and the file records no '
                         f'network options. For this package\'s own networks pass -opt train.yml (its network_g) '
                         f'or --arch Name --arch_args JSON') from None
    except (RuntimeError, KeyError, ValueError) as error:
        raise UsageError(f'{model_path}: spandrel recognised the file but could not load it: {error}') from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UsageError(f'{model_path}: {descriptor.architecture.name} is a {type(descriptor).__name__} '
                         f'(e.g. inpainting with a mask); only image-to-image models are supported here')
    requirements = descriptor.size_requirements
    if descriptor.tiling == spandrel.ModelTiling.INTERNAL:
        print(f'note: {descriptor.architecture.name} tiles internally; --tile is usually unnecessary', file=sys.stderr)
    return LoadedNetwork(descriptor.model.eval(), descriptor.scale, descriptor.input_channels,
                         max(1, requirements.multiple_of), requirements.minimum, descriptor.supports_half,
                         f'{descriptor.architecture.name} x{descriptor.scale} (spandrel) from {model_path}')


def resolve_device(name):
    """``torch.device`` for ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``, ...; UsageError
    for a name torch does not know or a CUDA device on a machine without one."""
    import torch
    if name in (None, 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UsageError(f'--device {name}: {error}') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise UsageError(f'--device {name}: CUDA is not available on this machine; use --device cpu')
    return device
