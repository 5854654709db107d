#!/usr/bin/env python
"""Super-resolve images with a trained generator, tile by tile so memory stays bounded.

The network comes from one of:
  * ``-opt train.yml``: the training options' ``network_g`` (any architecture of this package or
    BasicSR); the checkpoint defaults to the YAML's ``path.pretrain_network_g``;
  * ``--arch Name --arch_args '{"num_feat": 64, ...}'``: an architecture from BasicSR's ARCH_REGISTRY;
  * only ``--model_path``: a published architecture (ESRGAN/RRDBNet, Real-ESRGAN compact, SwinIR, HAT,
    ...) recognised from the state dict by spandrel.

Examples:
  python scripts/inference.py -i inputs -o results --model_path RealESRGAN_x4plus.pth --tile 256
  python scripts/inference.py -i photo.png -opt options/train_aesrgan.yml --model_path net_g_150000.pth -s 3.5
  python scripts/inference.py -i lr/ --ref refs/ -opt options/ttsr.yml --model_path net_g_latest.pth

Gray, BGR and BGRA images in 8 or 16 bits come back in the same mode and depth. Outputs are written
to a temporary name and renamed, so a crash never leaves a half-written file; a file that fails (not
an image, out of memory on a tile, ...) is reported by name and skipped. Exit status: 0 when every
input was written, 1 when some failed, 2 for a usage or model error.
"""
import argparse
import difflib
import json
import os
import os.path as osp
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

IMAGE_EXTENSIONS = ('png', 'jpg', 'jpeg', 'webp', 'bmp', 'tif', 'tiff')
SIXTEEN_BIT_EXTENSIONS = ('png', 'tif', 'tiff')


# Constructor flags that only matter for training initialisation: every weight comes from the checkpoint
# (loaded strictly), so e.g. TTSR's texture extractor need not find ImageNet VGG19 weights on disk.
INFERENCE_INIT_OVERRIDES = {'load_pretrained_vgg': False}


class UsageError(Exception):
    """Bad options or a model that cannot be built/loaded: nothing can be processed."""


class InputError(Exception):
    """One input cannot be processed; the others still are."""


def _import_ext():
    try:
        import ext  # noqa: F401
    except ImportError:  # run from a checkout without installing: the repository root is one level up
        sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
        import ext  # noqa: F401


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-i', '--input', required=True, help='input image or folder of images')
    parser.add_argument('-o', '--output', default='results', help='output folder (default: %(default)s)')
    parser.add_argument('--model_path', help='network checkpoint (.pth or .safetensors); with -opt it defaults to '
                        'path.pretrain_network_g of the YAML')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('-opt', '--opt', help='training YAML whose network_g defines the network')
    source.add_argument('--arch', help='architecture name in the registry (e.g. RRDBNet, SRVGGNetCompact)')
    parser.add_argument('--arch_args', default='{}', help='JSON object of --arch keyword arguments')
    parser.add_argument('--param_key', default='auto',
                        help="checkpoint key: params_ema, params, ... (default auto: params_ema, else params)")
    parser.add_argument('--scale', type=int, help='network upscaling factor (default: from the model)')
    parser.add_argument('-s', '--outscale', type=float,
                        help='final upscaling factor, any float; the network output is resized (Lanczos) to it '
                        '(default: the network scale)')
    parser.add_argument('-t', '--tile', type=int, default=0,
                        help='tile size in input pixels, 0 for none (default: %(default)s); lower it on out-of-memory')
    parser.add_argument('--tile_pad', type=int, default=10,
                        help='context pixels around each tile (default: %(default)s)')
    parser.add_argument('--pre_pad', type=int, default=0,
                        help='reflection padding at the right/bottom border (default: %(default)s)')
    parser.add_argument('--size_multiple', type=int,
                        help='pad inputs to a multiple of this (default: from the model; 2 for x2, 4 for x1)')
    parser.add_argument('--fp16', action='store_true', help='half precision (CUDA devices only)')
    parser.add_argument('--device', default='auto', help='cpu, cuda, cuda:1, ... (default: cuda when available)')
    parser.add_argument('--ref', help='reference image, or folder of references matched to inputs by file name, '
                        'for reference-based networks (TTSR)')
    parser.add_argument('--alpha_upsampler', choices=('network', 'resize'), default='network',
                        help='how the alpha channel of RGBA images is upscaled (default: %(default)s)')
    parser.add_argument('--suffix', default='out',
                        help='appended to output names: name_<suffix>.ext (default: %(default)s)')
    parser.add_argument('--ext', default='auto',
                        help='output format: auto (as the input; png for RGBA), png, jpg, webp, tif, ... '
                        '(default: %(default)s)')
    return parser


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


def _probe_scale(net, in_channels, size_multiple, device):
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


def _build_from_registry(arch_opt, where):
    from basicsr.utils.registry import ARCH_REGISTRY
    arch_opt = dict(arch_opt)
    name = arch_opt.pop('type', None)
    if not name:
        raise UsageError(f'{where}: no network type given')
    known = list(ARCH_REGISTRY._obj_map)
    # BasicSR registers some of its archs as '<name>_basicsr' and resolves the bare name to them
    cls = ARCH_REGISTRY._obj_map.get(name) or ARCH_REGISTRY._obj_map.get(f'{name}_basicsr')
    if cls is None:
        close = difflib.get_close_matches(name, known + [k[:-len('_basicsr')] for k in known if k.endswith('_basicsr')],
                                          n=5)
        raise UsageError(f'{where}: unknown architecture {name!r}' + (f'; did you mean {close}?' if close else ''))
    import inspect
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


def _load_weights(net, model_path, param_key):
    from ext.utils.checkpoint import CheckpointError, load_into_network, load_network_file
    try:
        state_dict = load_network_file(model_path, param_key)
        load_into_network(net, state_dict, strict=True, source=model_path)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    except CheckpointError as error:
        raise UsageError(str(error)) from None


def load_network(args):
    """Build the network the options describe and load its weights (on the CPU)."""
    _import_ext()
    opt_scale = None
    if args.opt or args.arch:
        if args.opt:
            opt = _load_yaml(args.opt)
            arch_opt, where = opt['network_g'], f'{args.opt} network_g'
            opt_scale = opt.get('scale')
            model_path = args.model_path or (opt.get('path') or {}).get('pretrain_network_g')
        else:
            try:
                arch_args = json.loads(args.arch_args)
            except ValueError as error:
                raise UsageError(f'--arch_args is not valid JSON ({error}): {args.arch_args}') from None
            if not isinstance(arch_args, dict):
                raise UsageError(f'--arch_args must be a JSON object, got {args.arch_args}')
            arch_opt, where, model_path = {'type': args.arch, **arch_args}, '--arch', args.model_path
        if not model_path:
            raise UsageError('no checkpoint: pass --model_path (or set path.pretrain_network_g in the YAML)')
        net, name, arch_args = _build_from_registry(arch_opt, where)
        _load_weights(net, model_path, args.param_key)
        in_channels = _in_channels_of(net, arch_args)
        scale = args.scale or opt_scale or _scale_from_args(arch_args)
        multiple = getattr(net, 'size_multiple', None)
        return LoadedNetwork(net.eval(), scale, in_channels, multiple, 0, True, f'{name} from {model_path}')
    if not args.model_path:
        raise UsageError('give the network: --model_path alone (a published architecture), '
                         'or -opt train.yml / --arch Name with --model_path')
    return _load_with_spandrel(args.model_path, args.param_key)


def _load_with_spandrel(model_path, param_key):
    import spandrel
    from ext.utils.checkpoint import CheckpointError, load_network_file
    try:
        state_dict = load_network_file(model_path, param_key)
    except (FileNotFoundError, CheckpointError) as error:
        raise UsageError(str(error)) from None
    try:
        descriptor = spandrel.ModelLoader(device='cpu').load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError:
        raise UsageError(f'{model_path}: spandrel does not recognise this architecture. For this package\'s own '
                         f'networks pass -opt train.yml (its network_g) or --arch Name --arch_args JSON') from None
    except (RuntimeError, KeyError, ValueError) as error:
        raise UsageError(f'{model_path}: spandrel recognised the file but could not load it: '
                         f'{str(error).splitlines()[0]}') from None
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
    if name == 'auto':
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
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        raise InputError(f'{path}: unsupported pixel type {image.dtype}; expected 8-bit, 16-bit or float32')
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise InputError(f'{path}: unsupported channel count {image.shape[2]}; expected gray, RGB or RGBA')
    return image


def read_reference(path, scale):
    """A reference image as a (1, 3, H, W) RGB float tensor in [0, 1], cropped to a multiple of ``scale``."""
    import cv2
    import torch

    from ext.utils.tiled_inference import max_value_of
    image = read_image(path)
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    image = image[:, :, :3]
    height, width = (image.shape[0] // scale) * scale, (image.shape[1] // scale) * scale
    if height == 0 or width == 0:
        raise InputError(f'{path}: reference smaller than the scale {scale}')
    rgb = np.ascontiguousarray(image[:height, :width, ::-1]).astype(np.float32) / max_value_of(image.dtype)
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)


def find_reference(ref, input_path):
    if osp.isfile(ref):
        return ref
    stem = osp.splitext(osp.basename(input_path))[0]
    matches = sorted(name for name in os.listdir(ref) if osp.splitext(name)[0] == stem)
    if not matches:
        raise InputError(f'{input_path}: no reference named {stem}.* in {ref}')
    return osp.join(ref, matches[0])


def output_path(input_path, image, args):
    stem, extension = osp.splitext(osp.basename(input_path))
    extension = extension[1:].lower() if args.ext == 'auto' else args.ext.lower().lstrip('.')
    if args.ext == 'auto':
        if image.ndim == 3 and image.shape[2] == 4:
            extension = 'png'  # keep the alpha channel
        elif extension not in IMAGE_EXTENSIONS:
            extension = 'png'
    if image.dtype == np.uint16 and extension not in SIXTEEN_BIT_EXTENSIONS:
        extension = 'png'  # jpg/webp/bmp cannot hold 16-bit samples
    name = f'{stem}_{args.suffix}' if args.suffix else stem
    return osp.join(args.output, f'{name}.{extension}')


def write_image(path, image):
    import cv2

    from ext.utils.atomic_io import atomic_write_bytes
    ok, encoded = cv2.imencode(osp.splitext(path)[1], image)
    if not ok:
        raise InputError(f'{path}: OpenCV cannot encode a {image.dtype} image with shape {image.shape} in this format')
    atomic_write_bytes(path, encoded.tobytes())
    return path


# --------------------------------------------------------------------------------------------- main
def _check_options(args):
    if args.tile < 0 or args.tile_pad < 0 or args.pre_pad < 0:
        raise UsageError('--tile, --tile_pad and --pre_pad must be >= 0')
    if args.outscale is not None and args.outscale <= 0:
        raise UsageError(f'--outscale must be > 0, got {args.outscale}')
    if args.size_multiple is not None and args.size_multiple < 1:
        raise UsageError(f'--size_multiple must be >= 1, got {args.size_multiple}')
    if args.scale is not None and args.scale < 1:
        raise UsageError(f'--scale must be >= 1, got {args.scale}')
    if args.ext != 'auto' and args.ext.lower().lstrip('.') not in IMAGE_EXTENSIONS:
        raise UsageError(f'--ext {args.ext}: expected auto or one of {", ".join(IMAGE_EXTENSIONS)}')
    if args.ref and not osp.exists(args.ref):
        raise UsageError(f'--ref {args.ref} does not exist')


def prepare(args):
    """Validate options, load the network and build the tiling engine."""
    import torch

    from ext.utils.tiled_inference import TiledUpscaler
    _check_options(args)
    inputs = list_inputs(args.input)
    device = resolve_device(args.device)
    if args.fp16 and device.type != 'cuda':
        raise UsageError(f'--fp16 needs a CUDA device; the device is {device}. Drop --fp16 to run in float32.')
    loaded = load_network(args)
    if args.scale:
        loaded.scale = args.scale
    if loaded.in_channels not in (1, 3):
        raise UsageError(f'{loaded.description} takes {loaded.in_channels} input channels; only 1- (gray) and '
                         f'3-channel (RGB) networks are supported')
    if loaded.takes_reference and not args.ref:
        raise UsageError(f'{type(loaded.net).__name__} is reference-based: pass --ref (an image or a folder)')
    if args.ref and not loaded.takes_reference:
        raise UsageError(f'--ref given, but {type(loaded.net).__name__}.forward takes no reference')
    if args.fp16 and not loaded.supports_half:
        raise UsageError(f'{loaded.description} does not support fp16; drop --fp16')
    net = loaded.net.to(device)
    if not loaded.scale:
        if loaded.takes_reference:
            raise UsageError('cannot infer the scale of a reference-based network; pass --scale')
        loaded.scale = _probe_scale(net, loaded.in_channels, loaded.size_multiple or 4, device)
    if args.fp16:
        net = net.half()
    multiple = args.size_multiple or loaded.size_multiple or {1: 4, 2: 2}.get(loaded.scale, 1)
    upscaler = TiledUpscaler(net, loaded.scale, tile=args.tile, tile_pad=args.tile_pad, pre_pad=args.pre_pad,
                             size_multiple=multiple, min_size=loaded.min_size, device=device,
                             dtype=torch.float16 if args.fp16 else torch.float32)
    return inputs, loaded, upscaler


def _run(args):
    from tqdm import tqdm

    from ext.utils.tiled_inference import TileOutOfMemoryError, upscale_image
    inputs, loaded, upscaler = prepare(args)
    try:
        os.makedirs(args.output, exist_ok=True)
    except OSError as error:
        raise UsageError(f'cannot create the output folder {args.output}: {error.strerror or error}') from None
    tqdm.write(f'{loaded.description}: x{loaded.scale}, tile {args.tile or "off"}, device {upscaler.device}, '
               f'{len(inputs)} input(s)', file=sys.stderr)
    failures, written = [], []
    references = {}

    def reference_for(path):
        ref_path = find_reference(args.ref, path)
        if ref_path not in references:
            references.clear()  # keep one reference tensor at a time
            references[ref_path] = read_reference(ref_path, loaded.scale)
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
                target = output_path(path, image, args)
                if osp.abspath(target) == osp.abspath(path):
                    raise InputError(f'{path}: the output would overwrite the input; set --suffix or -o')
                upscaler.extra_inputs = {}
                if args.ref:
                    upscaler.extra_inputs = {'ref': reference_for(path).to(upscaler.device, upscaler.dtype)}
                result = upscale_image(upscaler, image, in_channels=loaded.in_channels,
                                       alpha_upsampler=args.alpha_upsampler, outscale=args.outscale,
                                       progress=tile_progress)
            except (InputError, TileOutOfMemoryError) as error:
                message = str(error) if isinstance(error, InputError) else f'{path}: {error}'
                failures.append((path, message))
                bar.write(f'FAILED {message}', file=sys.stderr)
                bar.update(1)
                continue
            except Exception as error:
                raise RuntimeError(f'{path}: {type(error).__name__}: {error}') from error
            if pending_write is not None:
                finish(*pending_write)
            pending_write = (pool.submit(write_image, target, result), path, target)
            bar.update(1)
        if pending_write is not None:
            finish(*pending_write)
    tqdm.write(f'{len(written)} written to {args.output} in {time.time() - start:.1f}s'
               + (f', {len(failures)} failed:' if failures else ''), file=sys.stderr)
    for _, message in failures:
        tqdm.write(f'  {message}', file=sys.stderr)
    return 1 if failures else 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except UsageError as error:
        print(f'inference.py: error: {error}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
