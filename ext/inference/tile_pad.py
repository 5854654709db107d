"""How much context a tile needs: measured on the network itself, since a deep network's receptive field
(RRDBNet: hundreds of convolutions) is far wider than any practical tile padding while the influence of far
pixels decays. :func:`measure_tile_pad` is what ``tile_pad='auto'`` of :func:`ext.inference.load_upscaler`
runs."""
import numpy as np
import torch

from ext.inference.network import run_network
from ext.inference.tiling import LUMA_RGB, reflect_indices, round_up


def _probe_image(height, width, in_channels, seed=0):
    """A textured natural photo (scikit-image's astronaut, tiled by mirroring when larger) in [0, 1], NCHW."""
    try:
        import skimage.data
        photo = skimage.data.astronaut()[60:316, 120:376].astype(np.float32) / 255  # face, badge, flag: detail
    except Exception:  # pragma: no cover - scikit-image is a dependency; keep the probe working without it
        photo = np.random.default_rng(seed).random((256, 256, 3), dtype=np.float32)
    rows, cols = reflect_indices(0, height, photo.shape[0]), reflect_indices(0, width, photo.shape[1])
    photo = photo[rows[:, None], cols[None, :]]
    if in_channels == 1:
        photo = photo @ np.array(LUMA_RGB, dtype=np.float32)[:, None]
    return torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).unsqueeze(0)


@torch.inference_mode()
def border_error_profile(net, scale, width, height=64, in_channels=3, size_multiple=1, device='cpu',
                         dtype=torch.float32):
    """How much a tile border changes the network's output, by distance from the border (input pixels).

    Runs ``net`` on a probe photo ``height`` x ``width`` and on its left half (a tile that ends at the
    middle column), and returns ``errors`` with ``errors[d - 1]`` = the largest absolute difference (in
    [0, 1] units, over rows, channels and the ``scale`` output columns of an input column) at input
    column ``d`` pixels left of the cut, for ``d = 1 .. width // 2``.
    """
    width = round_up(width, 2 * size_multiple)
    height = round_up(height, size_multiple)
    cut = width // 2
    probe = _probe_image(height, width, in_channels).to(device, dtype)
    whole = run_network(net, probe)[..., :cut * scale].float()
    half = run_network(net, probe[..., :cut].contiguous()).float()
    diff = (whole.clamp(0, 1) - half.clamp(0, 1)).abs().amax(dim=(0, 1, 2))  # per output column
    per_input_column = diff.view(cut, scale).amax(dim=1).cpu().numpy()
    return per_input_column[::-1].copy()  # index 0: the column next to the cut


def measure_tile_pad(net, scale, in_channels=3, size_multiple=1, device='cpu', dtype=torch.float32,
                     tolerance=0.5 / 255, start=64, limit=256, height=64):
    """The tile padding after which a tile border changes ``net``'s output by at most ``tolerance``.

    The padding is measured with :func:`border_error_profile` on a probe photo of ``2 * pad`` columns,
    doubled from ``start`` up to ``limit`` input pixels until the error falls below ``tolerance`` (0.5 gray
    level per border: a corner tile sees two borders, and 8-bit rounding adds at most one level, so tiled
    output stays within 2 gray levels of untiled). Returns a multiple of ``size_multiple``; ``limit``
    when even that does not reach the tolerance.
    """
    reach = start
    while True:
        errors = border_error_profile(net, scale, 2 * reach, height=height, in_channels=in_channels,
                                      size_multiple=size_multiple, device=device, dtype=dtype)
        above = np.nonzero(errors > tolerance)[0]
        needed = int(above[-1]) + 1 if above.size else 0  # context columns that still matter
        if needed < len(errors) - 4 * size_multiple or reach >= limit:
            return min(round_up(max(needed, 1), size_multiple), round_up(limit, size_multiple))
        reach *= 2
