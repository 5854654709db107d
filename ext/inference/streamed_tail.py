"""The high-resolution tail of RRDBNet-style networks, run in horizontal strips.

RRDBNet (ESRGAN, Real-ESRGAN's x4plus, this package's ESRGAN and A-ESRGAN generators) ends with 3x3
convolutions at twice and four times the input resolution, with 64 channels: for a 256 px tile at x4, each
full-resolution tensor is 64 x 1024 x 1024 floats (268 MB), and two or three live at once. From the first
upsampling on, every layer only mixes neighbouring rows, so :class:`StreamedTailNetwork` runs those layers on
horizontal strips of bounded size, each with the rows of context its convolutions need, and writes each strip's
rows of the (3-channel) output: no upsampled 64-channel tensor of the whole tile exists, and the output equals
the unstreamed forward up to float rounding.

:func:`find_tail` recognises the networks by their modules (not by name alone): BasicSR's ``RRDBNet`` and this
package's ``ESRGANRRDBNet`` (both upsamplers) as long as their forward is the class's own, and spandrel's
``RRDBNet`` (a checkpoint recognised by spandrel, e.g. the released Real-ESRGAN x4plus). Any other network
runs as it is.
"""
import collections
import math

import torch
from torch import nn

__all__ = ['TailPlan', 'StreamedTailNetwork', 'find_tail', 'wrap_streamed_tail', 'row_geometry', 'run_in_strips']

# each output strip holds about this many pixels (rows x output width), with every channel of the tail
DEFAULT_STRIP_PIXELS = 1 << 17
MIN_STRIP_ROWS = 16

# modules that map each pixel on its own: a strip of their input gives the same strip of their output
ELEMENTWISE = (nn.LeakyReLU, nn.ReLU, nn.PReLU, nn.Identity, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.GELU, nn.ELU,
               nn.Hardtanh)

TailPlan = collections.namedtuple('TailPlan', 'head layers finish name')
TailPlan.__doc__ = """How a network splits into a low-resolution head and a row-local tail.

``head(x)`` returns the features the tail takes; ``layers`` are the tail's modules in order (each one
:func:`row_geometry` knows); ``finish(output, x)`` (or None) maps the tail's output to the network's (a crop);
``name`` says what was recognised, for messages."""


def row_geometry(module):
    """``(context, factor)`` of a module that computes each output row from nearby input rows: output rows
    ``[a, b)`` need input rows ``[a - context, b + context)`` (``factor`` 1), or ``[a // factor, b / factor)``
    for an exact row upsampling (``context`` 0). None for any other module."""
    if isinstance(module, nn.Conv2d):
        kernel, dilation = module.kernel_size[0], module.dilation[0]
        context = dilation * (kernel - 1) // 2
        padding = module.padding if isinstance(module.padding, tuple) else None
        if module.stride != (1, 1) or kernel % 2 == 0 or module.padding_mode != 'zeros':
            return None
        if module.padding != 'same' and (padding is None or padding[0] != context):
            return None  # an output row would not sit where its input row is
        return context, 1
    if isinstance(module, nn.Upsample):
        factor = module.scale_factor
        factor = factor[0] if isinstance(factor, tuple) else factor
        # nearest with a power-of-two factor: output row i is input row i // factor, exactly, in any strip
        if module.mode == 'nearest' and module.size is None and factor and float(factor).is_integer():
            factor = int(factor)
            if factor >= 1 and factor & (factor - 1) == 0:
                return 0, factor
        return None
    if isinstance(module, nn.PixelShuffle):
        return 0, module.upscale_factor
    if isinstance(module, ELEMENTWISE):
        return 0, 1
    return None


def _needed_rows(geometry, heights, start, stop):
    """For output rows ``[start, stop)`` of the last layer, the rows each layer's input must hold, first layer
    first."""
    needed = []
    for (context, factor), height in zip(reversed(geometry), reversed(heights[:-1])):
        if factor == 1:
            start, stop = max(start - context, 0), min(stop + context, height)
        else:
            start, stop = start // factor, min(-(-stop // factor), height)
        needed.append((start, stop))
    return needed[::-1]


def run_in_strips(modules, features, strip_pixels=DEFAULT_STRIP_PIXELS, out=None):
    """``modules`` (row-local, see :func:`row_geometry`) applied in turn to ``features`` (N, C, H, W), computed in
    horizontal strips of about ``strip_pixels`` output pixels; returns the output (written into ``out`` when
    given). Equal to ``nn.Sequential(*modules)(features)`` up to float rounding."""
    geometry = [row_geometry(module) for module in modules]
    if any(each is None for each in geometry) or not modules:
        raise ValueError('run_in_strips: every module must work row by row (see row_geometry)')
    heights = [features.shape[-2]]
    for _, factor in geometry:
        heights.append(heights[-1] * factor)
    width = features.shape[-1] * math.prod(factor for _, factor in geometry)
    rows = max(MIN_STRIP_ROWS, strip_pixels // max(width, 1))
    for start in range(0, heights[-1], rows):
        stop = min(start + rows, heights[-1])
        needed = _needed_rows(geometry, heights, start, stop)
        first, last = needed[0]
        strip = features[:, :, first:last]
        if getattr(modules[0], 'inplace', False):
            strip = strip.clone()  # the next strip reads some of these rows again
        origin = first  # the row (of the current layer's input) that the strip's row 0 is
        for module, (context, factor), height, (want_first, want_last) in zip(modules, geometry, heights, needed):
            if factor > 1 and (want_first, want_last) != (origin, origin + strip.shape[-2]):
                # cropped before an upsampling only: the upsampling's output is dense, whereas a cropped view
                # would make each convolution copy its input
                strip = strip[:, :, want_first - origin:want_last - origin]
                origin, first, last = want_first, want_first, want_last
            strip = module(strip)
            if factor == 1:  # rows within `context` of a cut lack context; those at the image borders do not
                first, last = first + (context if first > 0 else 0), last - (context if last < height else 0)
            else:
                origin, first, last = origin * factor, first * factor, last * factor
        assert first <= start and stop <= last, 'strip context miscounted'
        if out is None:
            out = strip.new_empty((strip.shape[0], strip.shape[1], heights[-1], strip.shape[-1]))
        out[:, :, start:stop] = strip[:, :, start - origin:stop - origin]
    return out


class StreamedTailNetwork(nn.Module):
    """A network whose layers from the first upsampling on run in strips (:func:`run_in_strips`); made by
    :func:`wrap_streamed_tail`.

    Args:
        net (nn.Module): the network (kept as ``net``; its weights, device and dtype are used as they are).
        plan (TailPlan): how ``net`` splits (:func:`find_tail`).
        strip_pixels (int): output pixels per strip (rows x output width, at least 16 rows): smaller bounds
            memory tighter, larger repeats fewer context rows.
    """

    def __init__(self, net, plan, strip_pixels=DEFAULT_STRIP_PIXELS):
        super().__init__()
        self.net = net
        self.plan = plan
        self.strip_pixels = int(strip_pixels)

    def forward(self, x):
        output = run_in_strips(self.plan.layers, self.plan.head(x), self.strip_pixels)
        return self.plan.finish(output, x) if self.plan.finish else output


def _basicsr_rrdbnet(net):
    from basicsr.archs.arch_util import pixel_unshuffle
    from basicsr.archs.rrdbnet_arch import RRDBNet

    from ext.archs.esrgan_rrdbnet_arch import ESRGANRRDBNet
    forward = type(net).forward
    if not isinstance(net, RRDBNet) or forward not in (RRDBNet.forward, ESRGANRRDBNet.forward):
        return None
    shuffled = forward is ESRGANRRDBNet.forward and net.upsampler == 'pixelshuffle'
    if net.scale not in (1, 2, 4) or shuffled and net.scale != 4:
        return None
    nearest = nn.Upsample(scale_factor=2, mode='nearest')

    def trunk(x):  # RRDBNet.forward up to the upsampling
        if net.scale in (1, 2):
            x = pixel_unshuffle(x, scale=4 // net.scale)
        feat = net.conv_first(x)
        return feat + net.conv_body(net.body(feat))

    if shuffled:  # ESRGANRRDBNet's sub-pixel upsampler: each conv_up makes 4x the channels before a shuffle
        layers = (net.conv_up1, net.shuffle, net.lrelu, net.conv_up2, net.shuffle, net.lrelu, net.conv_hr, net.lrelu,
                  net.conv_last)
    else:
        layers = (nearest, net.conv_up1, net.lrelu, nearest, net.conv_up2, net.lrelu, net.conv_hr, net.lrelu,
                  net.conv_last)
    return TailPlan(trunk, layers, None, f'{type(net).__name__} (conv_up1 to conv_last)')


def _spandrel_rrdbnet(net):
    try:
        from spandrel.architectures.ESRGAN import ESRGAN as RRDBNet
        from spandrel.architectures.ESRGAN.__arch.RRDB import pad_to_multiple
    except ImportError:
        return None
    if not isinstance(net, RRDBNet) or type(net).forward is not RRDBNet.forward:
        return None
    model = net.model
    split = _sequential_tail_start(model) if isinstance(model, nn.Sequential) else None
    if split is None:
        return None
    trunk, finish, factor = model[:split], None, net.shuffle_factor
    head = trunk
    if factor:  # x1/x2 files: RRDBNet.forward pads and unshuffles the input, and crops the output
        def head(x):
            return trunk(torch.pixel_unshuffle(pad_to_multiple(x, factor, mode='reflect'), downscale_factor=factor))

        def finish(output, x):
            scale = net.scale // factor
            return output[:, :, :x.shape[-2] * scale, :x.shape[-1] * scale]
    return TailPlan(head, tuple(model[split:]), finish, f'spandrel RRDBNet (model[{split}:])')


def _sequential_tail_start(model):
    """Index where the row-local layers from the first upsampling (or the convolution feeding a first pixel
    shuffle) to the end of ``model`` begin, or None."""
    modules = list(model)
    start = len(modules)
    while start > 0 and row_geometry(modules[start - 1]) is not None:
        start -= 1
    upsamplings = [index for index in range(start, len(modules)) if row_geometry(modules[index])[1] > 1]
    if not upsamplings:
        return None
    split = upsamplings[0]
    if isinstance(modules[split], nn.PixelShuffle) and split > start and isinstance(modules[split - 1], nn.Conv2d):
        split -= 1
    return split


def find_tail(net):
    """The :class:`TailPlan` of a network :class:`StreamedTailNetwork` can stream, else None."""
    if isinstance(net, StreamedTailNetwork):
        return None
    for recognise in (_basicsr_rrdbnet, _spandrel_rrdbnet):
        plan = recognise(net)
        if plan is not None:
            return plan
    return None


def wrap_streamed_tail(net, strip_pixels=DEFAULT_STRIP_PIXELS):
    """``net`` with its high-resolution tail streamed (:class:`StreamedTailNetwork`) when :func:`find_tail`
    recognises it, else None."""
    plan = find_tail(net)
    return StreamedTailNetwork(net, plan, strip_pixels) if plan else None
