"""What inference knows about a network once it is loaded, whatever it was loaded from (a checkpoint,
spandrel, onnxruntime): :class:`LoadedNetwork`, whether its forward takes a reference, its image output,
and its scale when nothing records it."""
import inspect

import torch

from ext.errors import UsageError


class LoadedNetwork:
    """A network ready for inference and what the tiling needs to know about it.

    Made by :func:`ext.inference.load_network`; :class:`ext.inference.Upscaler` runs it.

    Attributes:
        net (nn.Module): in eval mode, on the CPU (an ONNX model: an onnxruntime session that acts as one).
        scale (int | None): the upscaling factor; None when nothing records it (:func:`probe_scale`).
        in_channels (int): input channels (1: gray, 3: RGB).
        size_multiple (int | None): input sizes must be multiples of it; None when the source does not say.
        min_size (int): smallest input side the network takes.
        supports_half (bool): whether it runs in float16.
        description (str): what was loaded from where, for messages.
        network_opt (dict | None): the ``network_g`` options it was built from (``{'type': ..., ...}``);
            None for networks spandrel or onnxruntime recognised.
    """

    def __init__(self, net, scale, in_channels, size_multiple, min_size, supports_half, description,
                 network_opt=None):
        self.net = net
        self.scale = scale
        self.in_channels = in_channels
        self.size_multiple = size_multiple
        self.min_size = min_size
        self.supports_half = supports_half
        self.description = description
        self.network_opt = network_opt

    @property
    def takes_reference(self):
        """True for reference-based networks (TTSR-like): their forward takes ``ref``."""
        return forward_accepts(self.net, 'ref')


def forward_accepts(net, name):
    """True when ``net.forward`` takes an argument called ``name`` (e.g. ``'ref'`` for TTSR-like nets)."""
    try:
        parameters = inspect.signature(net.forward).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters


def run_network(net, tensor, **extra_inputs):
    """``net(tensor, **extra_inputs)``; the first output of networks that also return others (TTSR's textures)."""
    result = net(tensor, **extra_inputs)
    return result[0] if isinstance(result, (list, tuple)) else result


def probe_scale(net, in_channels, size_multiple, device):
    """The upscaling factor of ``net``, from one forward pass on a small zero image."""
    size = max(16, size_multiple * 4)
    with torch.inference_mode():
        output = run_network(net, torch.zeros(1, in_channels, size, size, device=device))
    if output.shape[-1] % size or output.shape[-2] != output.shape[-1]:
        raise UsageError(f'cannot infer the network scale (input {size}px -> output {tuple(output.shape)}); '
                         f'pass --scale')
    return output.shape[-1] // size
