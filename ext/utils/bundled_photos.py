"""Real photos and textures shipped inside the scikit-image wheel (``skimage.data``: astronaut, brick, chelsea,
coffee, grass, gravel, ...), so the demo, the tests and the benchmarks train and score on real images without
downloading anything. Arrays are uint8 HxWx3; grey samples are stacked to three channels."""
import math

import cv2
import numpy as np

# The held-out split of the demo and of the SR learning benchmarks (docs/results.md, "How learning is measured"): in
# none of their training sets, and none of their settings was chosen on them. Of other kinds than the training
# and validation photos: a colour street scene, a colour fundus photo (black surround), a graphic with flat
# colours and sharp edges, grey handwriting on a board. Keep them out of training.
HELD_OUT_PHOTOS = ('stereo_motorcycle', 'retina', 'logo', 'text')


def photo_rgb(name, largest_side=None):
    """The sample ``name`` as RGB, shrunk (area interpolation) to ``largest_side`` pixels on its longer side
    when it is larger. A stereo sample (``stereo_motorcycle``) gives its left view; an RGBA one its colours."""
    import skimage.data  # here: only the callers that use a photo pay for it
    sample = getattr(skimage.data, name)()
    image = np.asarray(sample[0] if isinstance(sample, tuple) else sample)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = np.ascontiguousarray(image[..., :3]).astype(np.uint8)
    h, w = image.shape[:2]
    if largest_side and max(h, w) > largest_side:
        factor = largest_side / max(h, w)
        image = cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
    return image


def photo_bgr(name, largest_side=None):
    """:func:`photo_rgb` in OpenCV's channel order (what ``cv2.imwrite`` and the data scripts take)."""
    return np.ascontiguousarray(photo_rgb(name, largest_side)[..., ::-1])


def photo_crop(name, size, rng):
    """A ``size`` x ``size`` RGB crop of the sample ``name`` at a position drawn from ``rng`` (a
    ``numpy.random.Generator``: the row, then the column); a sample whose shorter side is below ``size`` is
    enlarged (bicubic) first."""
    image = photo_rgb(name)
    h, w = image.shape[:2]
    if min(h, w) < size:
        factor = size / min(h, w)
        image = cv2.resize(image, (math.ceil(w * factor), math.ceil(h * factor)), interpolation=cv2.INTER_CUBIC)
        h, w = image.shape[:2]
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return np.ascontiguousarray(image[top:top + size, left:left + size])
