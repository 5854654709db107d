"""Export generators to ONNX, check the export with onnxruntime, and run ``.onnx`` files in the tiled inference.

The graph takes ``input`` (N, C, H, W) in [0, 1] RGB (plus ``ref`` (N, 3, Hr, Wr) for reference-based
networks) with dynamic batch, height and width, and returns ``output`` (N, C, H*scale, W*scale). The
file's metadata (``ext.scale``, ``ext.in_channels``, ``ext.size_multiple``, ``ext.architecture``) tells
the inference what the tiling needs. fp16 exports hold half weights and take/return float16.

    from ext.inference.onnx import export_onnx, verify_onnx
    export_onnx(net, 'x4plus.onnx', scale=4)
    report = verify_onnx('x4plus.onnx', net, photo_rgb_float)   # max abs difference against PyTorch

``scripts/export_onnx.py`` is :func:`plan_export` (scale, padding multiple and check photo of a loaded network)
then :func:`export_checked` (export, check, and no file left behind when the check fails).
"""
import collections
import os
import os.path as osp
import tempfile
import warnings

import cv2
import numpy as np
import torch

from ext.errors import InputError, UsageError
from ext.inference.images import max_value_of, read_image, reference_tensor
from ext.inference.network import LoadedNetwork, forward_accepts, probe_scale, run_network

__all__ = ['ExportError', 'DEFAULT_OPSET', 'export_onnx', 'verify_onnx', 'load_onnx_network', 'OnnxNetwork',
           'onnx_metadata', 'ExportPlan', 'plan_export', 'export_checked']

# onnxruntime >= 1.14 runs opset 17 on every execution provider; it is also the legacy exporter's best-tested
# opset (Resize, DepthToSpace, LayerNormalization as single nodes).
DEFAULT_OPSET = 17
_METADATA_PREFIX = 'ext.'


class ExportError(RuntimeError):
    """The network cannot be exported (or its export does not reproduce it); the message says why."""


def export_onnx(net, path, scale, in_channels=3, size_multiple=1, opset=DEFAULT_OPSET, fp16=False,
                sample_size=None, ref_size=None, architecture=None):
    """Trace ``net`` to ``path`` (atomically) with dynamic batch/height/width; returns ``path``.

    Args:
        net (nn.Module): takes (N, C, H, W) in [0, 1] (and ``ref`` for reference-based networks).
        scale (int), in_channels (int), size_multiple (int): recorded in the metadata for inference.
        opset (int): ONNX opset (default :data:`DEFAULT_OPSET`).
        fp16 (bool): export half-precision weights, inputs and outputs.
        sample_size (int | None): traced input size (default 4 * size_multiple * 8, at least 32).
        ref_size (int | None): traced reference size of reference-based networks (default 4 x sample_size).
    """
    import onnx
    dtype = torch.float16 if fp16 else torch.float32
    net = net.eval().to(dtype)
    size = sample_size or max(32, size_multiple * 8)
    size = -(-size // size_multiple) * size_multiple
    sample = torch.rand(1, in_channels, size, size, generator=torch.Generator().manual_seed(0)).to(dtype)
    inputs, names = (sample, ), ['input']
    dynamic = {'input': {0: 'batch', 2: 'height', 3: 'width'}, 'output': {0: 'batch', 2: 'out_height', 3: 'out_width'}}
    if forward_accepts(net, 'ref'):
        ref = torch.rand(1, 3, ref_size or size * scale, ref_size or size * scale).to(dtype)
        inputs, names = (sample, ref), ['input', 'ref']
        dynamic['ref'] = {0: 'batch', 2: 'ref_height', 3: 'ref_width'}
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix='.onnx.partial', dir=folder)
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter('ignore')  # TracerWarnings about shape asserts and the legacy exporter's notice
            try:
                torch.onnx.export(net, inputs, temporary, input_names=names, output_names=['output'],
                                  opset_version=opset, dynamic_axes=dynamic, do_constant_folding=True, dynamo=False)
            except Exception as error:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else ''  # not the graph dump
                hint = ''
                if len(names) > 1:
                    hint = (f'. {type(net).__name__} is reference-based: besides that operator, its texture search '
                            f'walks query chunks whose count and size Python computes from the input size, which '
                            f'tracing would freeze to the traced size, so no size-independent graph exists; run it '
                            f'with scripts/inference.py (PyTorch) instead')
                raise ExportError(f'torch.onnx.export failed for {type(net).__name__} at opset {opset}: '
                                  f'{type(error).__name__}: {reason}{hint}') from None
        model = onnx.load(temporary)
        metadata = {'scale': scale, 'in_channels': in_channels, 'size_multiple': size_multiple,
                    'architecture': architecture or type(net).__name__, 'fp16': int(bool(fp16)),
                    'takes_reference': int(len(names) > 1)}
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = _METADATA_PREFIX + key, str(value)
        onnx.checker.check_model(model)
        onnx.save(model, temporary)
        os.replace(temporary, path)
    finally:
        if osp.exists(temporary):
            os.remove(temporary)
    return path


def _session(path):
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    available = onnxruntime.get_available_providers()
    providers = [p for p in ('CUDAExecutionProvider', 'CPUExecutionProvider') if p in available]
    return onnxruntime.InferenceSession(os.fspath(path), options, providers=providers)


def onnx_metadata(path):
    import onnx
    model = onnx.load(os.fspath(path), load_external_data=False)
    return {entry.key[len(_METADATA_PREFIX):]: entry.value for entry in model.metadata_props
            if entry.key.startswith(_METADATA_PREFIX)}


def verify_onnx(path, net, image, ref=None, tolerance=None):
    """Run the export with onnxruntime and ``net`` with PyTorch on ``image``; return a dict of the check.

    Args:
        image (np.ndarray): H x W x C float32 RGB in [0, 1] (a real photo), any size the network takes.
        ref (np.ndarray | None): the reference image (H x W x 3, [0, 1]) of reference-based networks.
        tolerance (float | None): raise :class:`ExportError` when the max abs difference of the outputs
            clipped to [0, 1] exceeds it (default 1e-3 for fp32, 2e-2 for fp16).

    Returns:
        dict: ``max_abs``, ``mean_abs``, ``tolerance``, ``shape``, ``provider``, ``passed``.
    """
    session = _session(path)
    input_type = session.get_inputs()[0].type
    fp16 = 'float16' in input_type
    tolerance = tolerance if tolerance is not None else (2e-2 if fp16 else 1e-3)
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None]).astype(np.float32))
    feeds = {'input': x.numpy().astype(np.float16 if fp16 else np.float32)}
    extra_inputs = {}
    if ref is not None:
        extra_inputs['ref'] = torch.from_numpy(np.ascontiguousarray(ref.transpose(2, 0, 1)[None]).astype(np.float32))
        feeds['ref'] = extra_inputs['ref'].numpy().astype(feeds['input'].dtype)
    net = net.eval().float()
    with torch.no_grad():
        expected = run_network(net, x, **extra_inputs)
    got = session.run(['output'], feeds)[0].astype(np.float32)
    expected = expected.float().clamp(0, 1).numpy()
    if got.shape != expected.shape:
        raise ExportError(f'{path}: onnxruntime returned shape {got.shape} for an input of {tuple(x.shape)}; '
                          f'PyTorch returns {expected.shape}')
    diff = np.abs(np.clip(got, 0, 1) - expected)
    report = {'max_abs': float(diff.max()), 'mean_abs': float(diff.mean()), 'tolerance': tolerance,
              'shape': tuple(x.shape), 'provider': session.get_providers()[0], 'passed': bool(diff.max() <= tolerance)}
    if not report['passed']:
        raise ExportError(f'{path}: onnxruntime differs from PyTorch by up to {report["max_abs"]:.3g} (tolerance '
                          f'{tolerance:g}) on a {x.shape[2]}x{x.shape[3]} image; the export does not reproduce '
                          f'{type(net).__name__}')
    return report


class OnnxNetwork:
    """An onnxruntime session that behaves like a network for :class:`ext.inference.tiling.TiledUpscaler`
    (tensor in, tensor out); ``path`` is the ``.onnx`` file."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.session = _session(self.path)
        self.metadata = onnx_metadata(self.path)
        self.input_dtype = np.float16 if 'float16' in self.session.get_inputs()[0].type else np.float32
        self.input_names = [each.name for each in self.session.get_inputs()]

    def __call__(self, tensor, **extra):
        feeds = {'input': tensor.detach().float().cpu().numpy().astype(self.input_dtype)}
        for name, value in extra.items():
            if name not in self.input_names:
                raise TypeError(f'{self.path} takes no input {name!r} (its inputs: {self.input_names})')
            feeds[name] = value.detach().float().cpu().numpy().astype(self.input_dtype)
        output = self.session.run(['output'], feeds)[0]
        return torch.from_numpy(output.astype(np.float32)).to(tensor.device)

    def forward(self, input):  # the signature forward_accepts() reads; references are passed as keywords
        return self(input)

    def to(self, *args, **kwargs):
        return self

    def half(self):
        return self

    def eval(self):
        return self


class _OnnxReferenceNetwork(OnnxNetwork):
    def forward(self, input, ref):
        return self(input, ref=ref)


def load_onnx_network(path):
    """A :class:`ext.inference.network.LoadedNetwork` running ``path`` with onnxruntime."""
    if not osp.isfile(path):
        raise UsageError(f'ONNX model not found: {path}')
    try:
        metadata = onnx_metadata(path)
        names = [each.name for each in _session(path).get_inputs()]
    except Exception as error:
        raise UsageError(f'cannot load the ONNX model {path}: {type(error).__name__}: {error}') from None
    net = (_OnnxReferenceNetwork if 'ref' in names else OnnxNetwork)(path)
    scale = int(metadata['scale']) if metadata.get('scale') else None
    in_channels = int(metadata.get('in_channels', 3))
    multiple = int(metadata.get('size_multiple', 1))
    return LoadedNetwork(net, scale, in_channels, multiple, 0, False,
                         f'{metadata.get("architecture", "network")} (ONNX, onnxruntime) from {path}')


ExportPlan = collections.namedtuple('ExportPlan', 'net scale in_channels size_multiple architecture photo ref')
ExportPlan.__doc__ = """What :func:`export_checked` exports and checks: the network (``net``) with its ``scale``,
``in_channels`` and ``size_multiple`` (recorded in the file), its ``architecture`` name, the check ``photo``
(H x W x 3 float32 RGB in [0, 1]) and, for reference-based networks, the check ``ref`` (else None)."""


def _check_photo(path, size, multiple):
    """A crop of ``size`` (H, W), cut to a multiple of ``multiple``, of the photo at ``path`` (default:
    scikit-image's astronaut), as float32 RGB in [0, 1]."""
    if path:
        image = read_image(path)
        image = cv2.cvtColor(image[..., :3] if image.ndim == 3 else image,
                             cv2.COLOR_BGR2RGB if image.ndim == 3 else cv2.COLOR_GRAY2RGB)
    else:
        import skimage.data
        image = skimage.data.astronaut()[100:, 150:]
    height = (min(size[0], image.shape[0]) // multiple) * multiple
    width = (min(size[1], image.shape[1]) // multiple) * multiple
    return np.ascontiguousarray(image[:height, :width]).astype(np.float32) / max_value_of(image.dtype)


def plan_export(loaded, scale=None, check_image=None, check_size=(72, 88), check_ref=None):
    """The :class:`ExportPlan` of a :class:`~ext.inference.network.LoadedNetwork`.

    Args:
        scale (int | None): the network scale (default: the model's, else one probe run).
        check_image (str | None): the check photo (default: scikit-image's astronaut), cropped to
            ``check_size`` (H, W) input pixels: a size other than the traced one, so the dynamic axes are tested.
        check_ref (str | None): the check reference of reference-based networks (default: scikit-image's coffee).

    Raises:
        UsageError: the scale of a reference-based network is unknown, the network takes 1 channel, or a check
            image cannot be read.
    """
    net = loaded.net.eval()
    scale = scale or loaded.scale
    if loaded.takes_reference and not scale:
        raise UsageError('pass --scale for a reference-based network')
    scale = scale or probe_scale(net, loaded.in_channels, loaded.size_multiple or 1, 'cpu')
    multiple = loaded.size_multiple or {1: 4, 2: 2}.get(scale, 1)
    if loaded.in_channels == 1:
        raise UsageError(f'{loaded.description}: 1-channel networks are not supported by the check here')
    try:
        photo = _check_photo(check_image, check_size, multiple)
        ref = None
        if loaded.takes_reference and check_ref:
            ref = reference_tensor(read_image(check_ref), scale)[0].permute(1, 2, 0).numpy()
        elif loaded.takes_reference:
            import skimage.data
            ref = skimage.data.coffee()[:photo.shape[0] * scale, :photo.shape[1] * scale].astype('float32') / 255
    except InputError as error:
        raise UsageError(str(error)) from None
    return ExportPlan(net, scale, loaded.in_channels, multiple, loaded.description.split(' from ')[0], photo, ref)


def export_checked(plan, path, opset=DEFAULT_OPSET, fp16=False):
    """Export ``plan.net`` to ``path`` (:func:`export_onnx`) and check it (:func:`verify_onnx`); returns the
    check's report. On :class:`ExportError` no file is left at ``path``."""
    try:
        export_onnx(plan.net, path, plan.scale, in_channels=plan.in_channels, size_multiple=plan.size_multiple,
                    opset=opset, fp16=fp16, architecture=plan.architecture)
        return verify_onnx(path, plan.net, plan.photo, ref=plan.ref)
    except ExportError:
        if osp.exists(path):
            os.remove(path)
        raise
