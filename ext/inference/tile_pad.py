"""How much context a tile needs: measured on the network itself, since a deep network's receptive field
(RRDBNet: hundreds of convolutions) is far wider than any practical tile padding while the influence of far
pixels decays. :func:`auto_tile_pad` is what ``tile_pad='auto'`` of :func:`ext.inference.load_upscaler` runs:
:func:`measure_tile_pad` on a mosaic of photos, cut on both sides, with a tolerance that leaves room for
photos the probe does not contain."""
import numpy as np
import torch

from ext.inference.network import run_network
from ext.inference.tiling import LUMA_RGB, reflect_indices, round_up


# The auto probe: 32-row strips (sample, first row) of scikit-image photos reduced x2, dense in detail as the
# inputs of super-resolution are: a face with hair and badges, stained tissue, gravel.
MOSAIC_STRIPS = (('astronaut', 40), ('immunohistochemistry', 100), ('gravel', 50))
MOSAIC_STRIP_ROWS = 32
# Per tile border, in [0, 1] units. A corner tile sees two borders and 8-bit rounding adds one level, so 0.5 gray
# level per border keeps tiled output within 2 levels of untiled on the probe; on the bundled photos outside the
# probe the error at a given distance from a border reached up to 5x the mosaic's, hence a fifth of that.
AUTO_TOLERANCE = 0.1 / 255
AUTO_START = 128


def probe_mosaic():
    """The auto probe (:data:`MOSAIC_STRIPS` stacked), H x W x 3 float32 in [0, 1]; None without scikit-image."""
    try:
        import cv2
        import skimage.data
    except ImportError:  # pragma: no cover - scikit-image is a dependency
        return None
    strips = []
    for name, top in MOSAIC_STRIPS:
        photo = getattr(skimage.data, name)()
        photo = np.stack([photo] * 3, axis=-1) if photo.ndim == 2 else photo[:, :, :3]
        half = cv2.resize(photo, (photo.shape[1] // 2, photo.shape[0] // 2), interpolation=cv2.INTER_AREA)
        strips.append(half[top:top + MOSAIC_STRIP_ROWS])
    return np.concatenate(strips).astype(np.float32) / 255


def _probe_image(height, width, in_channels, seed=0, photo=None):
    """``photo`` (H x W x 3 in [0, 1]; by default a textured crop of scikit-image's astronaut), mirrored to
    ``height`` x ``width`` when smaller, as an NCHW tensor."""
    if photo is None:
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


def _column_errors(whole, part, scale):
    """Largest absolute difference per input column of two outputs of the same columns, in [0, 1] units."""
    diff = (whole.float().clamp(0, 1) - part.float().clamp(0, 1)).abs().amax(dim=(0, 1, 2))
    return diff.view(-1, scale).amax(dim=1).cpu().numpy()


@torch.inference_mode()
def border_error_profile(net, scale, width, height=64, in_channels=3, size_multiple=1, device='cpu',
                         dtype=torch.float32, photo=None, both_sides=False):
    """How much a tile border changes the network's output, by distance from the border (input pixels).

    Runs ``net`` on a probe photo ``height`` x ``width`` and on its left half (a tile that ends at the
    middle column), and returns ``errors`` with ``errors[d - 1]`` = the largest absolute difference (in
    [0, 1] units, over rows, channels and the ``scale`` output columns of an input column) at input
    column ``d`` pixels left of the cut, for ``d = 1 .. width // 2``. With ``both_sides`` the right half
    runs too (a tile that starts at the cut) and ``errors`` is the larger of the two sides. ``photo``: the
    probe content (H x W x 3 in [0, 1], mirrored to the size; default: an astronaut crop).
    """
    width = round_up(width, 2 * size_multiple)
    height = round_up(height, size_multiple)
    cut = width // 2
    probe = _probe_image(height, width, in_channels, photo=photo).to(device, dtype)
    whole = run_network(net, probe)
    errors = _column_errors(whole[..., :cut * scale], run_network(net, probe[..., :cut].contiguous()), scale)
    errors = errors[::-1].copy()  # index 0: the column next to the cut
    if both_sides:
        right = _column_errors(whole[..., cut * scale:], run_network(net, probe[..., cut:].contiguous()), scale)
        errors = np.maximum(errors, right)
    return errors


def measure_tile_pad(net, scale, in_channels=3, size_multiple=1, device='cpu', dtype=torch.float32,
                     tolerance=0.5 / 255, start=64, limit=256, height=64, photo=None, both_sides=False):
    """The tile padding after which a tile border changes ``net``'s output by at most ``tolerance``.

    The padding is measured with :func:`border_error_profile` (``photo``, ``both_sides``) on a probe photo of
    ``2 * pad`` columns, doubled from ``start`` up to ``limit`` input pixels until the error falls below
    ``tolerance`` (0.5 gray level per border: a corner tile sees two borders, and 8-bit rounding adds at most
    one level, so tiled output stays within 2 gray levels of untiled on the probe). Returns a multiple of
    ``size_multiple``; ``limit`` when even that does not reach the tolerance.
    """
    reach = start
    while True:
        errors = border_error_profile(net, scale, 2 * reach, height=height, in_channels=in_channels,
                                      size_multiple=size_multiple, device=device, dtype=dtype, photo=photo,
                                      both_sides=both_sides)
        above = np.nonzero(errors > tolerance)[0]
        needed = int(above[-1]) + 1 if above.size else 0  # context columns that still matter
        if needed < len(errors) - 4 * size_multiple or reach >= limit:
            return min(round_up(max(needed, 1), size_multiple), round_up(limit, size_multiple))
        reach *= 2


def auto_tile_pad(net, scale, in_channels=3, size_multiple=1, device='cpu', dtype=torch.float32):
    """What ``tile_pad='auto'`` runs: :func:`measure_tile_pad` on :func:`probe_mosaic` (three photos of different
    kinds), cut on both sides, to :data:`AUTO_TOLERANCE`, from a 2 x 128 px probe.

    The released x4plus gets 84-88 px (measured with ``benchmarks/bench_tile_seams.py``). The probe costs
    about three forward passes of a 96 x 256 px image on the network's device.
    """
    photo = probe_mosaic()
    height = photo.shape[0] if photo is not None else 64
    return measure_tile_pad(net, scale, in_channels=in_channels, size_multiple=size_multiple, device=device,
                            dtype=dtype, tolerance=AUTO_TOLERANCE, start=AUTO_START, height=height, photo=photo,
                            both_sides=True)
