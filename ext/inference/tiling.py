"""Tiled super-resolution inference whose device memory depends on the tile size, not the image size.

Real-ESRGAN's ``RealESRGANer`` cuts the input into tiles but keeps the whole input and the whole
output tensor on the GPU, so memory still grows with the image (Real-ESRGAN #184, #314, #437), and an
error on a tile leaves an unbound variable (#101). Here the input and the output are numpy arrays on
the host; each tile, with ``tile_pad`` pixels of context on each side, is copied to the device, run,
and only its un-padded core (times the scale) is copied back into the output array.

Seamless by construction: a tile's context is clamped to the (virtually) padded image exactly as the
untiled run sees it, so for a network whose receptive field radius is at most ``tile_pad`` input
pixels, the tiled output equals the untiled one up to float rounding. Deep networks (RRDBNet: hundreds of
convolutions) have a receptive field far larger than any practical padding, but the influence of far
pixels decays: :func:`ext.inference.tile_pad.measure_tile_pad` measures, on the network itself, how many
pixels of context make a tile border change the output by less than half a gray level (Real-ESRGAN's fixed
10 px leaves seams of dozens of gray levels with the released x4plus weights).

Padding (as Real-ESRGAN): ``pre_pad`` reflected pixels on the right and bottom, then reflection up to
a multiple of ``size_multiple`` (pixel-unshuffle networks: 2 for x2, 4 for x1). The padding is virtual:
tile windows that reach into it are gathered with reflected indices, the padded image is never built.

Stateless: :class:`TiledUpscaler` holds only its configuration; what changes from one image to the next (the
reference of a reference-based network) is an argument of :meth:`TiledUpscaler.upscale`, so one upscaler
serves interleaved calls and several threads.
"""
import functools
import math

import cv2
import numpy as np
import torch

from ext.errors import is_out_of_memory
from ext.inference.images import max_value_of
from ext.inference.network import run_network
from ext.utils.color_fix import check_color_fix, fix_image_colors

__all__ = ['TileOutOfMemoryError', 'TiledUpscaler', 'reflect_indices', 'plan_tiles', 'upscale_image']

# ITU-R BT.601 luma, as cv2.cvtColor(..., COLOR_RGB2GRAY)
LUMA_RGB = (0.299, 0.587, 0.114)
MIN_TILE = 32  # the smallest tile an out-of-memory error suggests (and ext.inference.oom_retry tries)


class TileOutOfMemoryError(RuntimeError):
    """The device ran out of memory on one tile; the message suggests a smaller ``--tile``."""

    def __str__(self):
        return self.args[0]


def reflect_indices(start, stop, size):
    """Indices ``start..stop-1`` into an axis of length ``size``, mirrored at both ends (numpy 'reflect')."""
    index = np.arange(start, stop)
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


def round_up(value, multiple):
    """The smallest multiple of ``multiple`` that is >= ``value``."""
    return int(math.ceil(value / multiple) * multiple)


def plan_tiles(height, width, tile, tile_pad, pre_pad=0, size_multiple=1, min_size=0):
    """The tiles covering a ``height`` x ``width`` image.

    Returns:
        (padded_height, padded_width, tiles): the virtual padded size and a list of
        ``(core, window)`` pairs, each a ``(top, bottom, left, right)`` box in input pixels: ``core``
        tiles the image without overlap, ``window`` is the core plus ``tile_pad`` context, clamped to
        the padded image and aligned to ``size_multiple``.
    """
    if height < 1 or width < 1:
        raise ValueError(f'empty image ({height}x{width})')
    if tile < 0 or tile_pad < 0 or pre_pad < 0 or size_multiple < 1:
        raise ValueError(f'tile ({tile}), tile_pad ({tile_pad}) and pre_pad ({pre_pad}) must be >= 0, '
                         f'size_multiple ({size_multiple}) >= 1')
    min_size = round_up(max(min_size, 1), size_multiple)
    padded_h = max(round_up(height + pre_pad, size_multiple), min_size)
    padded_w = max(round_up(width + pre_pad, size_multiple), min_size)
    if tile == 0 or (tile >= height and tile >= width):
        return padded_h, padded_w, [((0, height, 0, width), (0, padded_h, 0, padded_w))]

    def spans(length, padded):
        result = []
        for start in range(0, length, tile):
            stop = min(start + tile, length)
            low = (max(start - tile_pad, 0) // size_multiple) * size_multiple
            high = min(round_up(stop + tile_pad, size_multiple), padded)
            if high - low < min_size:  # tiny edge window: widen it inside the padded image
                high = min(low + min_size, padded)
                low = max(high - min_size, 0)
            result.append(((start, stop), (low, high)))
        return result

    tiles = [((top, bottom, left, right), (w_top, w_bottom, w_left, w_right))
             for (top, bottom), (w_top, w_bottom) in spans(height, padded_h)
             for (left, right), (w_left, w_right) in spans(width, padded_w)]
    return padded_h, padded_w, tiles


class TiledUpscaler:
    """Run an image-to-image network over a host image one padded tile at a time.

    Holds the network and the tiling options only: per-image inputs (a reference) are arguments of
    :meth:`upscale`, so calls may interleave and threads may share one instance.

    Args:
        net (nn.Module): takes ``(1, C, h, w)`` in [0, 1], returns ``(1, C', h*scale, w*scale)``.
            Put it on ``device`` (and in half precision for ``dtype=torch.float16``) beforehand.
        scale (int): the network's upscaling factor.
        tile (int): core tile size in input pixels; 0 runs the whole image at once.
        tile_pad (int): context pixels on each side of a tile; at least the network's receptive
            field radius for seamless output.
        pre_pad (int): reflected pixels added at the right and bottom before the network (and cropped
            after), which reduces border artefacts of some networks.
        size_multiple (int): the network needs input sizes divisible by this.
        min_size (int): smallest input size the network accepts.
        device (str | torch.device): where tiles run.
        dtype (torch.dtype): tile dtype on the device (``torch.float16`` for ``--fp16``).
        self_ensemble (bool): average the outputs for the 8 flips / transposes of each tile, each mapped
            back (the geometric self-ensemble of EDSR+, Lim et al., CVPRW 2017): 8x the compute, a
            steadier estimate (a slightly higher PSNR).
    """

    def __init__(self, net, scale, tile=0, tile_pad=10, pre_pad=0, size_multiple=1, min_size=0, device='cpu',
                 dtype=torch.float32, self_ensemble=False):
        if int(scale) != scale or scale < 1:
            raise ValueError(f'scale must be a positive integer, got {scale}')
        self.net = net
        self.scale = int(scale)
        self.tile = int(tile)
        self.tile_pad = int(tile_pad)
        self.pre_pad = int(pre_pad)
        self.size_multiple = int(size_multiple)
        self.min_size = int(min_size)
        self.device = torch.device(device)
        self.dtype = dtype
        self.self_ensemble = bool(self_ensemble)
        plan_tiles(1, 1, self.tile, self.tile_pad, self.pre_pad, self.size_multiple)  # validates the numbers

    def _gather(self, image, window):
        top, bottom, left, right = window
        height, width = image.shape[:2]
        rows = slice(top, bottom) if bottom <= height else reflect_indices(top, bottom, height)
        cols = slice(left, right) if right <= width else reflect_indices(left, right, width)
        if isinstance(rows, slice) and isinstance(cols, slice):
            return np.ascontiguousarray(image[rows, cols])
        if isinstance(rows, slice):
            rows = np.arange(top, bottom)
        if isinstance(cols, slice):
            cols = np.arange(left, right)
        return image[rows[:, None], cols[None, :]]

    def _to_device(self, patch, max_value):
        tensor = torch.from_numpy(patch if patch.dtype != np.uint16 else patch.astype(np.int32))
        tensor = tensor.to(self.device).permute(2, 0, 1).unsqueeze(0).contiguous()  # NCHW, as networks expect
        # normalise in float32: 16-bit values above 65504 do not exist in float16
        return tensor.float().div_(max_value).to(self.dtype)

    def _run(self, tensor, extra_inputs):
        if not self.self_ensemble:
            return run_network(self.net, tensor, **extra_inputs)
        total = None
        for transpose in (False, True):
            for flip_dims in ((), (3, ), (2, ), (2, 3)):
                view = tensor.transpose(2, 3).contiguous() if transpose else tensor  # ONNX wants dense input
                result = run_network(self.net, view.flip(flip_dims) if flip_dims else view)
                result = result.flip(flip_dims) if flip_dims else result
                result = (result.transpose(2, 3) if transpose else result).float()
                total = result if total is None else total.add_(result)
        return total.div_(8).to(tensor.dtype)

    def _describe(self, index, count, window):
        top, bottom, left, right = window
        return (f'tile {index + 1}/{count} (input rows {top}:{bottom}, cols {left}:{right}, '
                f'{bottom - top}x{right - left} px with padding)')

    def _out_of_memory(self, where, error):
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()
        if self.tile > MIN_TILE:
            hint = f'use a smaller --tile than {self.tile} (e.g. {max(self.tile // 2, MIN_TILE)})'
        elif self.tile:
            hint = f'--tile {self.tile} is already the smallest tile tried ({MIN_TILE} px)'
        else:
            hint = 'the whole image ran as one tile (--tile 0); pass --tile 512 or smaller'
        if self.device.type == 'cuda' and self.dtype == torch.float32:
            hint += ', or add --fp16'
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return TileOutOfMemoryError(f'out of memory on {self.device.type} for {where}: {hint}. ({detail})')

    @torch.inference_mode()
    def upscale(self, image, out=None, to_network=None, from_network=None, progress=None, extra_inputs=None):
        """Upscale ``image`` (H, W, C numpy array, any view) into ``out`` (host array) and return it.

        Args:
            image (np.ndarray): uint8, uint16 or float image (float in [0, 1]), H x W x C.
            out (np.ndarray | None): (H*scale, W*scale, C') array (or view) to fill; by default a new
                array of ``image``'s dtype. Integer outputs are rounded, all are clipped to the range.
            to_network (callable | None): applied to each tile tensor (1, C, h, w) in [0, 1] on the
                device before the network (e.g. BGR->RGB, gray->3 channels).
            from_network (callable | None): applied to each network output tile before it is copied
                back (e.g. RGB->BGR).
            progress (callable | None): called as ``progress(done, total)`` after each tile.
            extra_inputs (dict | None): keyword tensors passed whole with every tile (``ref``, the
                reference of a reference-based network); moved to the device once per call.
        """
        if image.ndim != 3:
            raise ValueError(f'expected an H x W x C array, got shape {image.shape}')
        if self.self_ensemble and extra_inputs:
            raise ValueError('self_ensemble flips the input only; it cannot be combined with extra inputs '
                             f'({", ".join(extra_inputs)}) such as a reference image')
        extra_inputs = {name: value.to(self.device, self.dtype) for name, value in (extra_inputs or {}).items()}
        height, width = image.shape[:2]
        in_max = max_value_of(image.dtype)
        _, _, tiles = plan_tiles(height, width, self.tile, self.tile_pad, self.pre_pad, self.size_multiple,
                                 self.min_size)
        scale = self.scale
        for index, (core, window) in enumerate(tiles):
            where = self._describe(index, len(tiles), window)
            try:
                tensor = self._to_device(self._gather(image, window), in_max)
                if to_network is not None:
                    tensor = to_network(tensor)
                result = self._run(tensor, extra_inputs)
                win_h, win_w = window[1] - window[0], window[3] - window[2]
                if result.dim() != 4 or result.shape[-2:] != (win_h * scale, win_w * scale):
                    raise ValueError(f'the network returned shape {tuple(result.shape)} for an input of '
                                     f'{tuple(tensor.shape)}; expected (1, C, {win_h * scale}, {win_w * scale}) '
                                     f'for scale {scale}. Check --scale / the architecture options.')
                top, left = (core[0] - window[0]) * scale, (core[2] - window[2]) * scale
                result = result[:, :, top:top + (core[1] - core[0]) * scale, left:left + (core[3] - core[2]) * scale]
                if from_network is not None:
                    result = from_network(result)
                if out is None:
                    out = np.empty((height * scale, width * scale, result.shape[1]), dtype=image.dtype)
                out_max = max_value_of(out.dtype)
                result = result.float().clamp_(0, 1)
                if out.dtype.kind == 'u':
                    result = result.mul_(out_max).round_()
                patch = result[0].permute(1, 2, 0).cpu().numpy()
            except (RuntimeError, MemoryError) as error:
                if is_out_of_memory(error):
                    raise self._out_of_memory(where, error) from error
                raise
            if patch.shape[2] != out.shape[2]:
                raise ValueError(f'the network returned {patch.shape[2]} channels; the output holds {out.shape[2]}')
            out[core[0] * scale:core[1] * scale, core[2] * scale:core[3] * scale] = patch
            if progress is not None:
                progress(index + 1, len(tiles))
        return out


def _bgr_rgb(tensor):
    return tensor.flip(1)


def _gray_to_rgb(tensor):
    return tensor.expand(-1, 3, -1, -1)


def _rgb_to_gray(tensor):
    r, g, b = LUMA_RGB
    return tensor[:, 0:1] * r + tensor[:, 1:2] * g + tensor[:, 2:3] * b


def upscale_image(upscaler, image, in_channels=3, alpha_upsampler='network', outscale=None, progress=None,
                  extra_inputs=None, color_fix='none'):
    """Upscale an image as OpenCV reads it (``IMREAD_UNCHANGED``) and return it in the same mode and depth.

    Gray (H x W), BGR and BGRA images in uint8, uint16 or float are accepted. A 3-channel network gets
    gray images as RGB and their result back as gray; a 1-channel network gets each color channel on
    its own. The alpha channel goes through the network as a gray image (``alpha_upsampler='network'``)
    or is resized bilinearly (``'resize'``). ``outscale`` resizes the result (Lanczos) to
    ``outscale`` x the input size when it differs from the network scale. ``progress`` and ``extra_inputs``
    go to each :meth:`TiledUpscaler.upscale` call. ``color_fix`` (``'none'``, ``'wavelet'``, ``'adain'``:
    :mod:`ext.utils.color_fix`) corrects the gray or color channels against the input, on the whole image
    after tiling, so that tiles agree.
    """
    check_color_fix(color_fix)
    if alpha_upsampler not in ('network', 'resize'):
        raise ValueError(f"alpha_upsampler must be 'network' or 'resize', got {alpha_upsampler!r}")
    if in_channels not in (1, 3):
        raise ValueError(f'only 1- and 3-channel networks are supported, got in_channels={in_channels}')
    squeeze = image.ndim == 2
    if squeeze:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f'unsupported image shape {image.shape}; expected gray, BGR or BGRA')
    height, width, channels = image.shape
    scale = upscaler.scale
    out = np.empty((height * scale, width * scale, channels), dtype=image.dtype)
    run = functools.partial(upscaler.upscale, progress=progress, extra_inputs=extra_inputs)

    def run_gray(source, target):
        if in_channels == 1:
            run(source, target)
        else:
            run(source, target, to_network=_gray_to_rgb, from_network=_rgb_to_gray)

    def run_color(source, target):
        if in_channels == 3:
            run(source, target, to_network=_bgr_rgb, from_network=_bgr_rgb)
        else:
            for channel in range(3):
                run(source[:, :, channel:channel + 1], target[:, :, channel:channel + 1])

    if channels == 1:
        run_gray(image, out)
    else:
        run_color(image[:, :, :3], out[:, :, :3])
        if channels == 4:
            if alpha_upsampler == 'network':
                run_gray(image[:, :, 3:4], out[:, :, 3:4])
            else:
                out[:, :, 3] = cv2.resize(image[:, :, 3], (width * scale, height * scale),
                                          interpolation=cv2.INTER_LINEAR)
    if color_fix != 'none':
        colors = min(channels, 3)  # alpha is coverage, not color: left as upscaled
        out[:, :, :colors] = fix_image_colors(out[:, :, :colors], image[:, :, :colors], color_fix)
    if outscale is not None and abs(outscale - scale) > 1e-9:
        size = (max(1, int(round(width * outscale))), max(1, int(round(height * outscale))))
        out = cv2.resize(out, size, interpolation=cv2.INTER_LANCZOS4)
        if out.ndim == 2:
            out = out[:, :, None]
    return out[:, :, 0] if squeeze else out
