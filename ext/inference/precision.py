"""The numeric precision and memory layout inference runs in: ``fp32``, ``bf16`` (CPU and CUDA), ``fp16`` (CUDA
only), each optionally with ``channels_last`` weights.

On a CPU, bf16 convolutions run on the bf16 units PyTorch's oneDNN uses (AVX-512 BF16, AMX) and channels_last is
the layout those kernels read directly; without such units bf16 is emulated and may be slower than fp32
(:func:`cpu_bf16_units` says which units the CPU has). The network's weights are converted once, so tiles run
without per-call casts.
"""
import torch
from torch import nn

from ext.errors import UsageError

__all__ = ['PRECISIONS', 'PRECISION_DTYPES', 'resolve_precision', 'check_device_precision',
           'check_network_precision', 'prepare_network', 'unsupported_precision', 'cpu_bf16_units']

PRECISIONS = ('fp32', 'bf16', 'fp16')
PRECISION_DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}

# /proc/cpuinfo flags of the units oneDNN runs bf16 convolutions on
BF16_CPU_FLAGS = ('avx512_bf16', 'amx_bf16', 'amx_tile', 'avx_ne_convert')


def resolve_precision(precision='fp32', fp16=False):
    """The precision named by ``precision`` and the ``fp16`` alias (``--fp16`` is ``--precision fp16``)."""
    precision = precision or 'fp32'
    if precision not in PRECISIONS:
        raise UsageError(f'--precision must be one of {", ".join(PRECISIONS)}; got {precision!r}')
    if fp16 and precision not in ('fp32', 'fp16'):
        raise UsageError(f'--fp16 means --precision fp16; it contradicts --precision {precision}')
    return 'fp16' if fp16 else precision


def check_device_precision(precision, device):
    """UsageError when ``device`` (a torch.device) cannot run ``precision``: cheap, before a network is loaded."""
    if precision == 'fp16' and device.type != 'cuda':
        raise UsageError(f'--precision fp16 / --fp16 needs a CUDA device; the device is {device}. On a CPU use '
                         '--precision bf16 (fast on CPUs with AVX-512 BF16 or AMX) or fp32.')
    if precision == 'bf16' and device.type == 'cuda' and not torch.cuda.is_bf16_supported():
        raise UsageError(f'--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; '
                         'use --precision fp16 or fp32')


def check_network_precision(loaded, precision, channels_last):
    """UsageError when the :class:`~ext.inference.network.LoadedNetwork` ``loaded`` cannot run ``precision`` or
    ``channels_last``."""
    if not isinstance(loaded.net, nn.Module) and (precision == 'bf16' or channels_last):
        asked = ' and '.join(flag for flag, on in (('--precision bf16', precision == 'bf16'),
                                                   ('--channels_last', channels_last)) if on)
        raise UsageError(f'{loaded.description} runs in onnxruntime, in the precision it was exported with; '
                         f'drop {asked}')
    if precision == 'fp16' and not loaded.supports_half:
        raise UsageError(f'{loaded.description} does not support fp16; drop --fp16')


def prepare_network(net, precision='fp32', channels_last=False):
    """``net`` (converted in place) with its weights in ``precision`` and, with ``channels_last``, in that memory
    layout (convolutions then produce channels_last outputs from ordinary inputs)."""
    if precision != 'fp32':
        net = net.to(PRECISION_DTYPES[precision])
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def unsupported_precision(error, precision, description, device):
    """A UsageError saying that the network cannot run in ``precision`` when ``error`` (raised by its forward) is
    a missing low-precision kernel or a dtype mismatch (e.g. TTSR's antialiased bicubic has no bf16 CPU kernel);
    else None."""
    text = str(error)
    if precision == 'fp32' or not (isinstance(error, NotImplementedError) or 'BFloat16' in text or 'Half' in text
                                   or 'dtype' in text):
        return None
    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return UsageError(f'{description} does not run in {precision} on {device.type} ({first_line}); '
                      'use --precision fp32')


def cpu_bf16_units(cpuinfo='/proc/cpuinfo'):
    """The flags of :data:`BF16_CPU_FLAGS` this CPU reports (Linux), e.g. ``['avx512_bf16']``; [] elsewhere."""
    try:
        with open(cpuinfo) as handle:
            flags = next((line.split(':', 1)[1].split() for line in handle if line.startswith('flags')), [])
    except OSError:
        return []
    return [flag for flag in BF16_CPU_FLAGS if flag in flags]
