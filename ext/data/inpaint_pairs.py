"""FFHQ inpainting pairs for TTSR (docs/methods/ffhq_inpaint.md): the split, the box, the blurred reference.

One implementation shared by ``scripts/prepare_ffhq_inpaint.py`` (which writes the pairs) and
:class:`ext.data.ffhq_inpaint_dataset.FFHQInpaintDataset` (which builds them on the fly), so both
give the same pixels for the same options.

* Split: a file belongs to the test split when a seeded SHA-256 of its name (basename without the
  extension) falls below ``test_fraction``; adding or removing files never moves another file, and
  every re-run gives the same split (about 90/10 by default, not exactly 18000/2000).
* Box: fractions ``box_x = (0.5, 0.8)``, ``box_y = (0.5, 0.8)`` of the width and height, i.e. the
  seed's ``[0.5w:0.8w, 0.5h:0.8h]`` (9 % of the image). In random mode the box keeps its pixel size
  and moves; its position is drawn from a generator (seeded per file name for reproducible data)
  as two numbers in [0, 1), so every image size gets the same relative place.
* Reference: the box blurred with PIL ``ImageFilter.GaussianBlur(blur_radius)`` (5 by default).
  By default the box is cut out, blurred on its own and pasted back (PIL's usual
  ``crop().filter().paste()``, so the blur sees replicated box edges); with ``blur_context`` it is
  blurred together with the pixels around it (no seam at the box edge).

Arrays are uint8 HxWx3 RGB. Only numpy, Pillow and the standard library are imported.
"""
import hashlib
import math
import random

import numpy as np
from PIL import Image, ImageFilter

DEFAULT_SIZES = (512, 384, 256, 160)
DEFAULT_BOX_X = (0.5, 0.8)
DEFAULT_BOX_Y = (0.5, 0.8)
DEFAULT_BLUR_RADIUS = 5.0
DEFAULT_TEST_FRACTION = 0.1
SPLITS = ('train', 'test')


def split_name(path):
    """The name the split is hashed from: the file's basename without its extension, so moving a
    file to another folder or re-encoding it (png -> jpg) keeps its split."""
    base = path.replace('\\', '/').rsplit('/', 1)[-1]
    return base.rsplit('.', 1)[0] if '.' in base else base


def _unit_hash(*parts):
    """A number in [0, 1) from a SHA-256 of ``parts`` (stable across runs, machines, Python versions)."""
    digest = hashlib.sha256('\0'.join(str(p) for p in parts).encode('utf-8')).digest()
    return int.from_bytes(digest[:8], 'big') / 2**64


def split_of(path, test_fraction=DEFAULT_TEST_FRACTION, seed=0):
    """'train' or 'test' for the image at ``path`` (see the module docstring)."""
    if not 0 <= test_fraction <= 1:
        raise ValueError(f'test_fraction must be in [0, 1], got {test_fraction}')
    return 'test' if _unit_hash('split', seed, split_name(path)) < test_fraction else 'train'


def check_box(box_x, box_y):
    """``(box_x, box_y)`` as float pairs; raises ValueError naming the bad value."""
    checked = []
    for key, value in (('box_x', box_x), ('box_y', box_y)):
        try:
            start, end = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f'{key} must be two fractions [start, end], got {value!r}') from None
        if not 0 <= start < end <= 1:
            raise ValueError(f'{key} must satisfy 0 <= start < end <= 1, got {value!r}')
        checked.append((start, end))
    return tuple(checked)


def box_generator(path, seed=0):
    """The generator of the random box of ``path``: the same for every run and every image size."""
    return random.Random(int(_unit_hash('box', seed, split_name(path)) * 2**53))


def box_position(rng):
    """A random box position ``(u, v)`` in [0, 1)^2 drawn from ``rng`` (a ``random.Random`` or the
    ``random`` module); :func:`box_pixels` maps it to every image size alike."""
    return rng.random(), rng.random()


def box_pixels(width, height, box_x=DEFAULT_BOX_X, box_y=DEFAULT_BOX_Y, position=None):
    """``(left, top, right, bottom)`` in pixels of the box on a ``width`` x ``height`` image.

    Edges are ``floor(fraction * size)``, as ``int()`` slicing of ``[0.5w:0.8w]`` gives (at least one
    pixel). With ``position`` (from :func:`box_position`) the box keeps that pixel size and moves:
    ``u`` = 0 puts it at the left edge, ``u`` -> 1 at the right one, every offset equally likely.
    """
    (x0, x1), (y0, y1) = check_box(box_x, box_y)

    def span(start, end, size, u):
        first = min(size - 1, int(math.floor(start * size + 1e-9)))
        last = max(first + 1, min(size, int(math.floor(end * size + 1e-9))))
        if u is None:
            return first, last
        extent = last - first
        first = min(size - extent, int(u * (size - extent + 1)))
        return first, first + extent

    u, v = position if position is not None else (None, None)
    left, right = span(x0, x1, width, u)
    top, bottom = span(y0, y1, height, v)
    return left, top, right, bottom


def box_mask(height, width, box):
    """float32 ``height`` x ``width`` mask, 1 inside ``box`` (left, top, right, bottom), 0 outside."""
    mask = np.zeros((height, width), dtype=np.float32)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = 1
    return mask


def blur_box(image, box, radius=DEFAULT_BLUR_RADIUS, context=False):
    """Copy of ``image`` whose ``box`` is blurred with PIL ``GaussianBlur(radius)``.

    ``context=False``: the box is blurred on its own (crop, filter, paste). ``context=True``:
    as if the whole image were blurred and only the box kept (only a margin around the box is
    blurred, wide enough that the result is identical).
    """
    if radius <= 0:
        return np.array(image, copy=True)
    left, top, right, bottom = box
    height, width = image.shape[:2]
    pil = Image.fromarray(np.ascontiguousarray(image))
    if context:
        margin = int(math.ceil(4 * radius)) + 4  # beyond the support of PIL's 3-pass box blur
        outer = (max(0, left - margin), max(0, top - margin), min(width, right + margin), min(height, bottom + margin))
        blurred = np.asarray(pil.crop(outer).filter(ImageFilter.GaussianBlur(radius)))
        region = blurred[top - outer[1]:bottom - outer[1], left - outer[0]:right - outer[0]]
    else:
        region = np.asarray(pil.crop(box).filter(ImageFilter.GaussianBlur(radius)))
    out = np.array(image, copy=True)
    out[top:bottom, left:right] = region
    return out


def square_resize(image, size):
    """Centre-crop ``image`` to a square and resize it to ``size`` x ``size`` (PIL bicubic, which
    antialiases when shrinking). An image already of that size is returned unchanged."""
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(image[top:top + side, left:left + side])
    if side == size:
        return square
    return np.asarray(Image.fromarray(square).resize((size, size), Image.BICUBIC))


def make_reference(gt, box_x=DEFAULT_BOX_X, box_y=DEFAULT_BOX_Y, position=None, radius=DEFAULT_BLUR_RADIUS,
                   context=False):
    """``(ref, box)`` for the clean image ``gt``: ``gt`` with the box (see :func:`box_pixels`) blurred."""
    height, width = gt.shape[:2]
    box = box_pixels(width, height, box_x, box_y, position)
    return blur_box(gt, box, radius, context), box
