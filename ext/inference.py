"""Importable super-resolution inference: build a network, load its weights, tile it over images.

The network comes from one of (the same rules as ``scripts/inference.py``):

* ``opt='train.yml'``: the training options' ``network_g``; the checkpoint defaults to the YAML's
  ``path.pretrain_network_g``;
* ``arch='RRDBNet', arch_args={...}``: an architecture of BasicSR's ARCH_REGISTRY (this package's included);
* only ``model_path``: a checkpoint written by this package's training records its ``network_g``
  options (``network_options`` in a ``.pth``, metadata in a ``.safetensors``) and is rebuilt from them;
  any other file is recognised by spandrel (ESRGAN/RRDBNet, Real-ESRGAN compact, SwinIR, HAT, ...);
* an ``.onnx`` file (``scripts/export_onnx.py``) runs with onnxruntime, with the same tiling.

Example::

    from ext.inference import load_upscaler
    upscaler = load_upscaler('net_g_latest.pth', tile=256)          # tile_pad: measured on the network
    sr = upscaler.upscale(cv2.imread('photo.png', cv2.IMREAD_UNCHANGED), outscale=3.5)
    upscaler.upscale_file('photo.png', 'photo_x4.png')

Images are numpy arrays in OpenCV's layout (gray, BGR, BGRA; uint8, uint16 or float in [0, 1]); they come
back in the same mode and depth.
"""
import inspect
import json
import os
import os.path as osp
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ext.errors import InputError, UsageError
from ext.registry import closest, registry_get

__all__ = ['Upscaler', 'UsageError', 'InputError', 'load_upscaler', 'load_network', 'read_image', 'write_image',
           'read_reference', 'upscale_paths', 'IMAGE_EXTENSIONS']

IMAGE_EXTENSIONS = ('png', 'jpg', 'jpeg', 'webp', 'bmp', 'tif', 'tiff')
SIXTEEN_BIT_EXTENSIONS = ('png', 'tif', 'tiff')
ONNX_EXTENSIONS = ('.onnx', )

# Constructor flags that only matter for training initialisation: every weight comes from the checkpoint
# (loaded strictly), so e.g. TTSR's texture extractor need not find ImageNet VGG19 weights on disk.
INFERENCE_INIT_OVERRIDES = {'load_pretrained_vgg': False}


# --------------------------------------------------------------------------------------------- model
class LoadedNetwork:
    """A network ready for inference and what the tiling needs to know about it."""

    def __init__(self, net, scale, in_channels, size_multiple, min_size, supports_half, description):
        self.net = net
        self.scale = scale
        self.in_channels = in_channels
        self.size_multiple = size_multiple
        self.min_size = min_size
        self.supports_half = supports_half
        self.description = description

    @property
    def takes_reference(self):
        from ext.utils.tiled_inference import forward_accepts
        return forward_accepts(self.net, 'ref')


def _in_channels_of(net, arch_args):
    for key in ('num_in_ch', 'in_channels', 'in_nc', 'in_chans', 'num_in_channels'):
        if isinstance(arch_args.get(key), int):
            return arch_args[key]
    import torch.nn as nn
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return 3


def _scale_from_args(arch_args):
    for key in ('scale', 'upscale', 'upscale_factor', 'scale_factor'):
        if isinstance(arch_args.get(key), int):
            return arch_args[key]
    return None


def probe_scale(net, in_channels, size_multiple, device):
    """The upscaling factor of ``net``, from one forward pass on a small zero image."""
    import torch
    size = max(16, size_multiple * 4)
    with torch.inference_mode():
        output = net(torch.zeros(1, in_channels, size, size, device=device))
    if isinstance(output, (list, tuple)):
        output = output[0]
    if output.shape[-1] % size or output.shape[-2] != output.shape[-1]:
        raise UsageError(f'cannot infer the network scale (input {size}px -> output {tuple(output.shape)}); '
                         f'pass --scale')
    return output.shape[-1] // size


def build_network(arch_opt, where):
    """``(net, name, kwargs)`` for ``{'type': Name, **kwargs}`` from BasicSR's ARCH_REGISTRY."""
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


def _load_yaml(path):
    import yaml
    try:
        with open(path) as handle:
            opt = yaml.safe_load(handle)
    except OSError as error:
        raise UsageError(f'cannot read the options file {path}: {error.strerror}') from None
    except yaml.YAMLError as error:
        raise UsageError(f'{path} is not valid YAML: {error}') from None
    if not isinstance(opt, dict) or not isinstance(opt.get('network_g'), dict):
        raise UsageError(f'{path} has no network_g section (the generator to run)')
    return opt


def _read_weights(model_path, param_key):
    from ext.utils.checkpoint import CheckpointError, load_network_and_options
    try:
        return load_network_and_options(model_path, param_key)
    except (FileNotFoundError, CheckpointError) as error:
        raise UsageError(str(error)) from None


def _load_into(net, state_dict, model_path):
    from ext.utils.checkpoint import CheckpointError, load_into_network
    try:
        load_into_network(net, state_dict, strict=True, source=model_path)
    except CheckpointError as error:
        raise UsageError(str(error)) from None


def _from_registry(arch_opt, where, model_path, state_dict, scale):
    net, name, arch_args = build_network(arch_opt, where)
    _load_into(net, state_dict, model_path)
    scale = scale or _scale_from_args(arch_args)
    return LoadedNetwork(net.eval(), scale, _in_channels_of(net, arch_args), getattr(net, 'size_multiple', None), 0,
                         True, f'{name} from {model_path}')


def load_network(model_path=None, opt=None, arch=None, arch_args=None, param_key='auto'):
    """Build the network the arguments describe and load its weights (on the CPU); see the module docstring.

    Returns:
        LoadedNetwork: ``net`` (eval mode), ``scale`` (None when unknown: probe it), ``in_channels``,
        ``size_multiple``, ``min_size``, ``supports_half``, ``description``.
    """
    if opt and arch:
        raise UsageError('give either opt (a training YAML) or arch (a registry name), not both')
    if model_path and str(model_path).lower().endswith(ONNX_EXTENSIONS):
        if opt or arch:
            raise UsageError(f'{model_path} is an ONNX model: it holds its own network; drop -opt/--arch')
        from ext.onnx_export import load_onnx_network
        return load_onnx_network(model_path)
    if opt or arch:
        opt_scale = None
        if opt:
            options = _load_yaml(opt)
            arch_opt, where = options['network_g'], f'{opt} network_g'
            opt_scale = options.get('scale')
            model_path = model_path or (options.get('path') or {}).get('pretrain_network_g')
        else:
            if isinstance(arch_args, str):
                try:
                    arch_args = json.loads(arch_args)
                except ValueError as error:
                    raise UsageError(f'--arch_args is not valid JSON ({error}): {arch_args}') from None
            if not isinstance(arch_args or {}, dict):
                raise UsageError(f'--arch_args must be a JSON object, got {arch_args}')
            arch_opt, where = {'type': arch, **(arch_args or {})}, '--arch'
        if not model_path:
            raise UsageError('no checkpoint: pass --model_path (or set path.pretrain_network_g in the YAML)')
        state_dict, _ = _read_weights(model_path, param_key)
        return _from_registry(arch_opt, where, model_path, state_dict, opt_scale)
    if not model_path:
        raise UsageError('give the network: --model_path alone (a published architecture or a checkpoint this '
                         'package wrote), or -opt train.yml / --arch Name with --model_path')
    state_dict, recorded = _read_weights(model_path, param_key)
    if recorded and isinstance(recorded.get('network'), dict):
        where = f'{model_path} (network options recorded in the checkpoint)'
        return _from_registry(recorded['network'], where, model_path, state_dict, recorded.get('scale'))
    return _load_with_spandrel(model_path, state_dict)


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


# --------------------------------------------------------------------------------------------- files
def list_inputs(path):
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise UsageError(f'input {path} does not exist')
    files = sorted(osp.join(path, name) for name in os.listdir(path)
                   if not name.startswith('.') and osp.isfile(osp.join(path, name)))
    if not files:
        raise UsageError(f'input folder {path} is empty')
    return files


def read_image(path):
    """The image as OpenCV decodes it with IMREAD_UNCHANGED (gray, BGR or BGRA; 8/16 bit or float)."""
    import cv2
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise InputError(f'{path}: cannot read the file ({error.strerror or error})') from None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputError(f'{path}: not an image OpenCV can decode (empty, damaged or another kind of file)')
    return _check_image(image, path)


def _check_image(image, where):
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        raise InputError(f'{where}: unsupported pixel type {image.dtype}; expected 8-bit, 16-bit or float32')
    if image.ndim not in (2, 3) or image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise InputError(f'{where}: unsupported shape {image.shape}; expected gray, BGR or BGRA')
    return image


def reference_tensor(image, scale, where='reference'):
    """An OpenCV-layout reference image as a (1, 3, H, W) RGB float tensor in [0, 1], cropped to a multiple of
    ``scale``."""
    import cv2
    import torch

    from ext.utils.tiled_inference import max_value_of
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    image = image[:, :, :3]
    height, width = (image.shape[0] // scale) * scale, (image.shape[1] // scale) * scale
    if height == 0 or width == 0:
        raise InputError(f'{where}: reference smaller than the scale {scale}')
    rgb = np.ascontiguousarray(image[:height, :width, ::-1]).astype(np.float32) / max_value_of(image.dtype)
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)


def read_reference(path, scale):
    return reference_tensor(read_image(path), scale, path)


def find_reference(ref, input_path):
    if osp.isfile(ref):
        return ref
    stem = osp.splitext(osp.basename(input_path))[0]
    matches = sorted(name for name in os.listdir(ref) if osp.splitext(name)[0] == stem)
    if not matches:
        raise InputError(f'{input_path}: no reference named {stem}.* in {ref}')
    return osp.join(ref, matches[0])


def output_path(input_path, image, output, suffix='out', ext='auto'):
    stem, extension = osp.splitext(osp.basename(input_path))
    extension = extension[1:].lower() if ext == 'auto' else ext.lower().lstrip('.')
    if ext == 'auto':
        if image.ndim == 3 and image.shape[2] == 4:
            extension = 'png'  # keep the alpha channel
        elif extension not in IMAGE_EXTENSIONS:
            extension = 'png'
    if image.dtype == np.uint16 and extension not in SIXTEEN_BIT_EXTENSIONS:
        extension = 'png'  # jpg/webp/bmp cannot hold 16-bit samples
    name = f'{stem}_{suffix}' if suffix else stem
    return osp.join(output, f'{name}.{extension}')


def write_image(path, image):
    """Encode ``image`` by ``path``'s extension and write it atomically (a crash leaves no partial file)."""
    import cv2

    from ext.utils.atomic_io import atomic_write_bytes
    ok, encoded = cv2.imencode(osp.splitext(path)[1], image)
    if not ok:
        raise InputError(f'{path}: OpenCV cannot encode a {image.dtype} image with shape {image.shape} in this format')
    atomic_write_bytes(path, encoded.tobytes())
    return path


# --------------------------------------------------------------------------------------------- API
class Upscaler:
    """A loaded network with its tiling engine; made by :func:`load_upscaler`.

    Attributes: ``net``, ``scale``, ``in_channels``, ``description``, ``tiler``
    (:class:`ext.utils.tiled_inference.TiledUpscaler`: ``tile``, ``tile_pad``, ``device``, ``dtype``) and
    ``takes_reference`` (TTSR-like networks need ``ref=``).
    """

    def __init__(self, loaded, tiler, tile_pad_source):
        self.loaded = loaded
        self.tiler = tiler
        self.tile_pad_source = tile_pad_source  # 'given' or how the automatic padding was found

    net = property(lambda self: self.tiler.net)
    scale = property(lambda self: self.tiler.scale)
    in_channels = property(lambda self: self.loaded.in_channels)
    description = property(lambda self: self.loaded.description)
    takes_reference = property(lambda self: self.loaded.takes_reference)
    device = property(lambda self: self.tiler.device)

    def upscale(self, image, ref=None, outscale=None, alpha_upsampler='network', progress=None):
        """Super-resolve one image (OpenCV layout, any mode/depth) and return it in the same mode and depth.

        Args:
            image (np.ndarray): gray (H x W or H x W x 1), BGR or BGRA; uint8, uint16 or float32 in [0, 1].
            ref (np.ndarray | torch.Tensor | None): the reference of a reference-based network, an
                OpenCV-layout image or a (1, 3, H, W) RGB tensor in [0, 1].
            outscale (float | None): resize the result (Lanczos) to this factor of the input size.
            alpha_upsampler (str): 'network' or 'resize' for the alpha channel of BGRA images.
            progress (callable | None): ``progress(done, total)`` after each tile.
        """
        import torch

        from ext.utils.tiled_inference import upscale_image
        _check_image(image, 'image')
        if self.takes_reference and ref is None:
            raise UsageError(f'{type(self.net).__name__} is reference-based: pass ref=')
        if ref is not None and not self.takes_reference:
            raise UsageError(f'ref given, but {type(self.net).__name__}.forward takes no reference')
        self.tiler.extra_inputs = {}
        if ref is not None:
            if not torch.is_tensor(ref):
                ref = reference_tensor(_check_image(ref, 'ref'), self.scale)
            self.tiler.extra_inputs = {'ref': ref.to(self.tiler.device, self.tiler.dtype)}
        try:
            return upscale_image(self.tiler, image, in_channels=self.in_channels, alpha_upsampler=alpha_upsampler,
                                 outscale=outscale, progress=progress)
        finally:
            self.tiler.extra_inputs = {}

    def upscale_file(self, input_path, output_path, ref=None, **kwargs):
        """Read ``input_path``, upscale it (keywords of :meth:`upscale`) and write ``output_path`` atomically."""
        if isinstance(ref, str):
            ref = read_reference(ref, self.scale)
        os.makedirs(osp.dirname(osp.abspath(output_path)), exist_ok=True)
        return write_image(output_path, self.upscale(read_image(input_path), ref=ref, **kwargs))


def load_upscaler(model_path=None, opt=None, arch=None, arch_args=None, param_key='auto', scale=None, tile=0,
                  tile_pad='auto', pre_pad=0, size_multiple=None, device='auto', fp16=False, verbose=False,
                  self_ensemble=False):
    """Load a network and return an :class:`Upscaler` (see the module docstring for the network sources).

    Args:
        model_path (str): ``.pth`` / ``.safetensors`` / ``.onnx``; with ``opt`` it defaults to the YAML's
            ``path.pretrain_network_g``.
        opt (str): a training YAML whose ``network_g`` defines the network.
        arch (str), arch_args (dict | JSON str): a registry architecture and its keyword arguments.
        param_key (str): ``auto`` (``params_ema``, else ``params``), ``params``, ...
        scale (int): the network scale (default: from the model or a probe run).
        tile (int): tile size in input pixels, 0 for the whole image at once.
        tile_pad (int | 'auto'): context pixels per tile side; ``'auto'`` measures, on this network, how far
            a tile border changes its output (:func:`ext.utils.tiled_inference.measure_tile_pad`), so tiled
            output equals untiled within about one gray level.
        pre_pad (int): reflected pixels at the right/bottom border (cropped afterwards).
        size_multiple (int): pad inputs to a multiple of this (default: from the model; 2 for x2, 4 for x1).
        device (str): ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ...
        fp16 (bool): half precision (CUDA only).
        self_ensemble (bool): average over the 8 flips / transposes of each tile (8x slower; not for
            reference-based networks).
    """
    import torch

    from ext.utils.tiled_inference import TiledUpscaler, measure_tile_pad
    tile = int(tile or 0)
    if tile < 0 or pre_pad < 0 or (tile_pad != 'auto' and int(tile_pad) < 0):
        raise UsageError('--tile, --tile_pad and --pre_pad must be >= 0')
    if size_multiple is not None and size_multiple < 1:
        raise UsageError(f'--size_multiple must be >= 1, got {size_multiple}')
    if scale is not None and scale < 1:
        raise UsageError(f'--scale must be >= 1, got {scale}')
    device = resolve_device(device)
    if fp16 and device.type != 'cuda':
        raise UsageError(f'--fp16 needs a CUDA device; the device is {device}. Drop --fp16 to run in float32.')
    loaded = load_network(model_path, opt=opt, arch=arch, arch_args=arch_args, param_key=param_key)
    if scale:
        loaded.scale = scale
    if loaded.in_channels not in (1, 3):
        raise UsageError(f'{loaded.description} takes {loaded.in_channels} input channels; only 1- (gray) and '
                         f'3-channel (RGB) networks are supported')
    if self_ensemble and loaded.takes_reference:
        raise UsageError(f'--self_ensemble flips the input only, not the reference; {loaded.description} takes a '
                         'reference image: drop --self_ensemble')
    if fp16 and not loaded.supports_half:
        raise UsageError(f'{loaded.description} does not support fp16; drop --fp16')
    net = loaded.net.to(device)
    if not loaded.scale:
        if loaded.takes_reference:
            raise UsageError('cannot infer the scale of a reference-based network; pass --scale')
        loaded.scale = probe_scale(net, loaded.in_channels, loaded.size_multiple or 4, device)
    if fp16:
        net = net.half()
    multiple = size_multiple or loaded.size_multiple or {1: 4, 2: 2}.get(loaded.scale, 1)
    dtype = torch.float16 if fp16 else torch.float32
    source = 'given'
    if tile_pad == 'auto':
        if tile == 0:
            tile_pad, source = 0, 'unused (no tiling)'
        elif loaded.takes_reference:
            tile_pad, source = 16, 'default for reference-based networks (not measured)'
        else:
            start = time.time()
            tile_pad = measure_tile_pad(net, loaded.scale, in_channels=loaded.in_channels, size_multiple=multiple,
                                        device=device, dtype=dtype)
            source = f'measured on the network in {time.time() - start:.1f}s'
            if verbose:
                print(f'tile_pad {tile_pad} ({source})', file=sys.stderr)
    tiler = TiledUpscaler(net, loaded.scale, tile=tile, tile_pad=int(tile_pad), pre_pad=pre_pad,
                          size_multiple=multiple, min_size=loaded.min_size, device=device, dtype=dtype,
                          self_ensemble=self_ensemble)
    return Upscaler(loaded, tiler, source)


def check_file_options(input, ext='auto', ref=None, outscale=None):
    """The input files, after checking the options about files (cheap: before any network is loaded)."""
    if outscale is not None and outscale <= 0:
        raise UsageError(f'--outscale must be > 0, got {outscale}')
    if ext != 'auto' and ext.lower().lstrip('.') not in IMAGE_EXTENSIONS:
        raise UsageError(f'--ext {ext}: expected auto or one of {", ".join(IMAGE_EXTENSIONS)}')
    if ref and not osp.exists(ref):
        raise UsageError(f'--ref {ref} does not exist')
    return list_inputs(input)


def upscale_paths(upscaler, input, output='results', suffix='out', ext='auto', ref=None, alpha_upsampler='network',
                  outscale=None):
    """Upscale an image file or every file of a folder into ``output``; returns ``(written, failures)``.

    A file that fails (not an image, out of memory on a tile, no reference, a failed write) is reported by
    name and skipped; reading the next image and writing the previous one overlap the network's work.
    """
    from tqdm import tqdm

    from ext.utils.tiled_inference import TileOutOfMemoryError
    inputs = check_file_options(input, ext, ref, outscale)
    if upscaler.takes_reference and not ref:
        raise UsageError(f'{type(upscaler.net).__name__} is reference-based: pass --ref (an image or a folder)')
    if ref and not upscaler.takes_reference:
        raise UsageError(f'--ref given, but {type(upscaler.net).__name__}.forward takes no reference')
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as error:
        raise UsageError(f'cannot create the output folder {output}: {error.strerror or error}') from None
    tiler = upscaler.tiler
    pad = f', tile_pad {tiler.tile_pad} ({upscaler.tile_pad_source})' if tiler.tile else ''
    tqdm.write(f'{upscaler.description}: x{upscaler.scale}, tile {tiler.tile or "off"}{pad}, device {tiler.device}, '
               f'{len(inputs)} input(s)', file=sys.stderr)
    failures, written = [], []
    references = {}

    def reference_for(path):
        ref_path = find_reference(ref, path)
        if ref_path not in references:
            references.clear()  # keep one reference tensor at a time
            references[ref_path] = read_reference(ref_path, upscaler.scale)
        return references[ref_path]

    def finish(future, path, target):
        try:
            written.append(future.result())
        except InputError as error:
            failures.append((path, str(error)))
            bar.write(f'FAILED {error}', file=sys.stderr)
        except OSError as error:  # e.g. a full disk: the temporary file is removed, nothing half-written stays
            message = f'{path}: cannot write {target}: {error.strerror or error}'
            failures.append((path, message))
            bar.write(f'FAILED {message}', file=sys.stderr)

    start = time.time()
    with ThreadPoolExecutor(max_workers=2) as pool, tqdm(total=len(inputs), unit='img', file=sys.stderr) as bar:
        def tile_progress(done, total):
            if total > 1:
                bar.set_postfix_str(f'tile {done}/{total}', refresh=False)

        next_read = pool.submit(read_image, inputs[0])
        pending_write = None
        for index, path in enumerate(inputs):
            current = next_read
            next_read = pool.submit(read_image, inputs[index + 1]) if index + 1 < len(inputs) else None
            bar.set_description(osp.basename(path)[-30:])
            try:
                image = current.result()
                target = output_path(path, image, output, suffix, ext)
                if osp.abspath(target) == osp.abspath(path):
                    raise InputError(f'{path}: the output would overwrite the input; set --suffix or -o')
                result = upscaler.upscale(image, ref=reference_for(path) if ref else None, outscale=outscale,
                                          alpha_upsampler=alpha_upsampler, progress=tile_progress)
            except (InputError, TileOutOfMemoryError) as error:
                message = str(error) if isinstance(error, InputError) else f'{path}: {error}'
                failures.append((path, message))
                bar.write(f'FAILED {message}', file=sys.stderr)
                bar.update(1)
                continue
            except UsageError:
                raise
            except Exception as error:
                raise RuntimeError(f'{path}: {type(error).__name__}: {error}') from error
            if pending_write is not None:
                finish(*pending_write)
            pending_write = (pool.submit(write_image, target, result), path, target)
            bar.update(1)
        if pending_write is not None:
            finish(*pending_write)
    tqdm.write(f'{len(written)} written to {output} in {time.time() - start:.1f}s'
               + (f', {len(failures)} failed:' if failures else ''), file=sys.stderr)
    for _, message in failures:
        tqdm.write(f'  {message}', file=sys.stderr)
    return written, failures


def run_cli(args, prog='inference.py'):
    """What ``scripts/inference.py`` does with its parsed arguments; returns the exit status (0, 1 or 2)."""
    try:
        tile_pad = args.tile_pad if args.tile_pad == 'auto' else int(args.tile_pad)
    except ValueError:
        print(f'{prog}: error: --tile_pad must be an integer or auto, got {args.tile_pad}', file=sys.stderr)
        return 2
    try:
        check_file_options(args.input, args.ext, args.ref, args.outscale)
        upscaler = load_upscaler(args.model_path, opt=args.opt, arch=args.arch,
                                 arch_args=args.arch_args if args.arch else None, param_key=args.param_key,
                                 scale=args.scale, tile=args.tile, tile_pad=tile_pad, pre_pad=args.pre_pad,
                                 size_multiple=args.size_multiple, device=args.device, fp16=args.fp16,
                                 self_ensemble=args.self_ensemble)
        _, failures = upscale_paths(upscaler, args.input, args.output, suffix=args.suffix, ext=args.ext,
                                    ref=args.ref, alpha_upsampler=args.alpha_upsampler, outscale=args.outscale)
    except UsageError as error:
        print(f'{prog}: error: {error}', file=sys.stderr)
        return 2
    return 1 if failures else 0
