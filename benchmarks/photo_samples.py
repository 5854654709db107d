"""What the inference benchmarks share: scikit-image's bundled photos reduced as super-resolution inputs, and the
command-line options for photos, device and the JSON file."""
import numpy as np


def reduced_photo(name, factor, gray_as_rgb=False):
    """``(photo, reduced)``: the scikit-image sample (RGB, or gray; stacked to RGB with ``gray_as_rgb``) cropped
    to a multiple of ``factor``, and its area reduction by ``factor``."""
    import cv2
    import skimage.data
    photo = getattr(skimage.data, name)()
    if photo.ndim == 2 and gray_as_rgb:
        photo = np.stack([photo] * 3, axis=-1)
    photo = photo[:, :, :3] if photo.ndim == 3 else photo
    height, width = (photo.shape[0] // factor) * factor, (photo.shape[1] // factor) * factor
    photo = np.ascontiguousarray(photo[:height, :width])
    return photo, cv2.resize(photo, (width // factor, height // factor), interpolation=cv2.INTER_AREA)


def add_photo_arguments(parser, photos):
    """``--photos`` (default ``photos``), ``--reduce``, ``--device``, ``--threads`` and ``--json``."""
    parser.add_argument('--photos', nargs='+', default=list(photos), help='scikit-image sample names')
    parser.add_argument('--reduce', type=int, default=4, help='reduction of the photos (default: %(default)s)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--json', help='write the results to this JSON file')
