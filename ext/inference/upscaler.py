"""The inference object: a loaded network, its tiling and its image modes (:class:`Upscaler`), and the one
call that makes it from a checkpoint (:func:`load_upscaler`)."""
import os
import os.path as osp
import sys
import time

import torch

from ext.errors import UsageError
from ext.inference.images import check_image, read_image, read_reference, reference_tensor, write_image
from ext.inference.loading import load_network, resolve_device
from ext.inference.network import probe_scale
from ext.inference.oom_retry import upscale_with_smaller_tiles
from ext.inference.precision import (PRECISION_DTYPES, check_device_precision, check_network_precision,
                                     prepare_network, resolve_precision, unsupported_precision)
from ext.inference.streamed_tail import wrap_streamed_tail
from ext.inference.tile_pad import auto_tile_pad
from ext.inference.tiling import MIN_TILE, TiledUpscaler, upscale_image
from ext.utils.color_fix import check_color_fix

# tile_pad='auto' on a reference-based network: its output depends on the whole reference, which a border
# probe of the input alone does not exercise
REFERENCE_TILE_PAD = 16


def _checked_device(tile, tile_pad, pre_pad, size_multiple, scale, device, precision):
    """The torch device, after checking the numeric options (cheap: before any network is loaded)."""
    if int(tile or 0) < 0 or pre_pad < 0 or (tile_pad != 'auto' and int(tile_pad) < 0):
        raise UsageError('--tile, --tile_pad and --pre_pad must be >= 0')
    if size_multiple is not None and size_multiple < 1:
        raise UsageError(f'--size_multiple must be >= 1, got {size_multiple}')
    if scale is not None and scale < 1:
        raise UsageError(f'--scale must be >= 1, got {scale}')
    device = resolve_device(device)
    check_device_precision(precision, device)
    return device


def _check_color_fix(mode):
    try:
        return check_color_fix(mode)
    except ValueError as error:
        raise UsageError(f'--{error}') from None


class Upscaler:
    """A loaded network with its tiling engine: super-resolves OpenCV-layout images (gray, BGR or BGRA;
    uint8, uint16 or float32 in [0, 1]) and returns them in the same mode and depth.

    Made by :func:`load_upscaler`, or from a network already loaded: ``Upscaler(load_network(...), tile=256)``.
    :meth:`upscale` keeps nothing between calls (a reference is an argument of the call), so calls may
    interleave and threads may share one upscaler.

    Args:
        loaded (LoadedNetwork): the network (:func:`ext.inference.load_network`); moved to ``device`` and
            converted to ``precision`` / ``channels_last`` in place.
        scale (int | None): the network scale (default: from the model, else one probe run).
        tile (int): tile size in input pixels, 0 for the whole image at once.
        tile_pad (int | 'auto'): context pixels per tile side; ``'auto'`` measures, on this network, how far a
            tile border changes its output (:func:`ext.inference.tile_pad.auto_tile_pad`), so tiled output
            stays within 2 gray levels of untiled.
        pre_pad (int): reflected pixels at the right/bottom border (cropped afterwards).
        size_multiple (int | None): pad inputs to a multiple of this (default: from the model; 2 for x2, 4 for
            x1).
        device (str): ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ...
        fp16 (bool): half precision (CUDA only); the same as ``precision='fp16'``.
        self_ensemble (bool): average over the 8 flips / transposes of each tile (8x slower; not for
            reference-based networks).
        verbose (bool): print the measured ``tile_pad`` to stderr.
        precision (str): ``fp32``, ``bf16`` (CPU and CUDA; fast on CPUs with AVX-512 BF16 or AMX) or ``fp16``
            (CUDA only): the weights are converted once (:mod:`ext.inference.precision`); ``tile_pad='auto'``
            is measured in fp32 all the same.
        channels_last (bool): weights in the channels_last memory layout (with bf16 on a CPU: oneDNN's fastest
            path).
        stream_tail (bool): run the layers after the last upsampling of RRDBNet-style networks in strips
            (:mod:`ext.inference.streamed_tail`): the same output with far less memory per tile; other networks
            run as they are.
        color_fix (str): ``'none'``, ``'wavelet'`` (the output's detail on the bicubic input's low-frequency
            colour) or ``'adain'`` (per-channel mean and std of the bicubic input): :mod:`ext.utils.color_fix`.

    Out of memory on a tile: the image is tried again with half the tile, down to 32 px (or the network's
    minimum size), each retry logged; then :class:`ext.inference.tiling.TileOutOfMemoryError`
    (:mod:`ext.inference.oom_retry`).

    Attributes: ``net``, ``scale``, ``in_channels``, ``description``, ``device``, ``takes_reference``
    (TTSR-like networks need ``ref=``), ``loaded``, ``tiler`` (:class:`ext.inference.tiling.TiledUpscaler`:
    ``tile``, ``tile_pad``, ``device``, ``dtype``), ``tile_pad_source`` ('given' or how it was found),
    ``precision``, ``channels_last`` and ``streamed_tail`` (what runs in strips, or None).
    """

    def __init__(self, loaded, scale=None, tile=0, tile_pad='auto', pre_pad=0, size_multiple=None, device='auto',
                 fp16=False, self_ensemble=False, verbose=False, precision='fp32', channels_last=False,
                 stream_tail=True, color_fix='none'):
        precision = resolve_precision(precision, fp16)
        device = _checked_device(tile, tile_pad, pre_pad, size_multiple, scale, device, precision)
        _check_color_fix(color_fix)
        tile = int(tile or 0)
        if scale:
            loaded.scale = scale
        if loaded.in_channels not in (1, 3):
            raise UsageError(f'{loaded.description} takes {loaded.in_channels} input channels; only 1- (gray) and '
                             f'3-channel (RGB) networks are supported')
        if self_ensemble and loaded.takes_reference:
            raise UsageError(f'--self_ensemble flips the input only, not the reference; {loaded.description} takes '
                             'a reference image: drop --self_ensemble')
        check_network_precision(loaded, precision, channels_last)
        net = loaded.net.to(device)
        if not loaded.scale:
            if loaded.takes_reference:
                raise UsageError('cannot infer the scale of a reference-based network; pass --scale')
            loaded.scale = probe_scale(net, loaded.in_channels, loaded.size_multiple or 4, device)
        multiple = size_multiple or loaded.size_multiple or {1: 4, 2: 2}.get(loaded.scale, 1)
        source = 'given'
        if tile_pad == 'auto':
            if tile == 0:
                tile_pad, source = 0, 'unused (no tiling)'
            elif loaded.takes_reference:
                tile_pad, source = REFERENCE_TILE_PAD, 'default for reference-based networks (not measured)'
            else:
                start = time.time()
                # in fp32: the rounding noise of bf16/fp16 would read as a wider receptive field
                tile_pad = auto_tile_pad(net, loaded.scale, in_channels=loaded.in_channels, size_multiple=multiple,
                                         device=device)
                source = f'measured on the network in {time.time() - start:.1f}s'
                if verbose:
                    print(f'tile_pad {tile_pad} ({source})', file=sys.stderr)
        net = prepare_network(net, precision, channels_last)
        streamed = wrap_streamed_tail(net) if stream_tail else None
        self.loaded = loaded
        self.net = net
        self.tiler = TiledUpscaler(streamed or net, loaded.scale, tile=tile, tile_pad=int(tile_pad), pre_pad=pre_pad,
                                   size_multiple=multiple, min_size=loaded.min_size, device=device,
                                   dtype=PRECISION_DTYPES[precision], self_ensemble=self_ensemble)
        self.tile_pad_source = source
        self.precision = precision
        self.channels_last = bool(channels_last)
        self.streamed_tail = streamed.plan.name if streamed else None
        self.color_fix = color_fix

    scale = property(lambda self: self.tiler.scale)
    in_channels = property(lambda self: self.loaded.in_channels)
    description = property(lambda self: self.loaded.description)
    takes_reference = property(lambda self: self.loaded.takes_reference)
    device = property(lambda self: self.tiler.device)

    def upscale(self, image, ref=None, outscale=None, alpha_upsampler='network', progress=None, color_fix=None):
        """Super-resolve one image (OpenCV layout, any mode/depth) and return it in the same mode and depth.

        Args:
            image (np.ndarray): gray (H x W or H x W x 1), BGR or BGRA; uint8, uint16 or float32 in [0, 1].
            ref (np.ndarray | torch.Tensor | None): the reference of a reference-based network, an
                OpenCV-layout image or a (1, 3, H, W) RGB tensor in [0, 1].
            outscale (float | None): resize the result (Lanczos) to this factor of the input size.
            alpha_upsampler (str): 'network' or 'resize' for the alpha channel of BGRA images.
            progress (callable | None): ``progress(done, total)`` after each tile.
            color_fix (str | None): this call's colour fix (default: the upscaler's ``color_fix``).
        """
        check_image(image, 'image')
        if self.takes_reference and ref is None:
            raise UsageError(f'{type(self.net).__name__} is reference-based: pass ref=')
        if ref is not None and not self.takes_reference:
            raise UsageError(f'ref given, but {type(self.net).__name__}.forward takes no reference')
        extra_inputs = None
        if ref is not None:
            if not torch.is_tensor(ref):
                ref = reference_tensor(check_image(ref, 'ref'), self.scale)
            extra_inputs = {'ref': ref}
        color_fix = _check_color_fix(self.color_fix if color_fix is None else color_fix)
        try:
            return upscale_with_smaller_tiles(
                lambda tiler: upscale_image(tiler, image, in_channels=self.in_channels,
                                            alpha_upsampler=alpha_upsampler, outscale=outscale, progress=progress,
                                            extra_inputs=extra_inputs, color_fix=color_fix),
                self.tiler, max(image.shape[:2]), smallest=max(MIN_TILE, self.loaded.min_size))
        except (NotImplementedError, RuntimeError) as error:
            refusal = unsupported_precision(error, self.precision, self.description, self.device)
            if refusal is None:
                raise
            raise refusal from error

    def upscale_file(self, input_path, output_path, ref=None, **kwargs):
        """Read ``input_path``, upscale it (keywords of :meth:`upscale`) and write ``output_path`` atomically."""
        if isinstance(ref, str):
            ref = read_reference(ref, self.scale)
        os.makedirs(osp.dirname(osp.abspath(output_path)), exist_ok=True)
        return write_image(output_path, self.upscale(read_image(input_path), ref=ref, **kwargs))


def load_upscaler(model_path=None, opt=None, arch=None, arch_args=None, param_key='auto', scale=None, tile=0,
                  tile_pad='auto', pre_pad=0, size_multiple=None, device='auto', fp16=False, verbose=False,
                  self_ensemble=False, precision='fp32', channels_last=False, stream_tail=True, color_fix='none'):
    """Load a network (:func:`ext.inference.load_network`) and return an :class:`Upscaler` for it.

    Args:
        model_path (str): ``.pth`` / ``.safetensors`` / ``.onnx``; with ``opt`` it defaults to the YAML's
            ``path.pretrain_network_g``.
        opt (str): a training YAML whose ``network_g`` defines the network.
        arch (str), arch_args (dict | JSON str): a registry architecture and its keyword arguments.
        param_key (str): ``auto`` (``params_ema``, else ``params``), ``params``, ...
        scale, tile, tile_pad, pre_pad, size_multiple, device, fp16, verbose, self_ensemble, precision,
            channels_last, stream_tail, color_fix: the options of :class:`Upscaler`, checked before the network
            is loaded.
    """
    _checked_device(tile, tile_pad, pre_pad, size_multiple, scale, device, resolve_precision(precision, fp16))
    _check_color_fix(color_fix)
    loaded = load_network(model_path, opt=opt, arch=arch, arch_args=arch_args, param_key=param_key)
    return Upscaler(loaded, scale=scale, tile=tile, tile_pad=tile_pad, pre_pad=pre_pad, size_multiple=size_multiple,
                    device=device, fp16=fp16, self_ensemble=self_ensemble, verbose=verbose, precision=precision,
                    channels_last=channels_last, stream_tail=stream_tail, color_fix=color_fix)
