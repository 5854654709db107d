"""Images in and out of inference: OpenCV's layout (gray, BGR, BGRA; uint8, uint16 or float32 in [0, 1])
read and written whole, and reference images as the tensors reference-based networks take."""
import os.path as osp

import cv2
import numpy as np
import torch

from ext.errors import InputError
from ext.utils.atomic_io import atomic_write_bytes

IMAGE_EXTENSIONS = ('png', 'jpg', 'jpeg', 'webp', 'bmp', 'tif', 'tiff')
SIXTEEN_BIT_EXTENSIONS = ('png', 'tif', 'tiff')


def max_value_of(dtype):
    """Largest pixel value of an image dtype: 255 for uint8, 65535 for uint16, 1.0 for floats."""
    dtype = np.dtype(dtype)
    if dtype.kind == 'u':
        return float(np.iinfo(dtype).max)
    if dtype.kind == 'f':
        return 1.0
    raise TypeError(f'unsupported image dtype {dtype}; expected uint8, uint16 or float')


def check_image(image, where):
    """``image`` when inference can take it (gray, BGR or BGRA; uint8, uint16 or float32), else InputError."""
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        raise InputError(f'{where}: unsupported pixel type {image.dtype}; expected 8-bit, 16-bit or float32')
    if image.ndim not in (2, 3) or image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise InputError(f'{where}: unsupported shape {image.shape}; expected gray, BGR or BGRA')
    return image


def read_image(path):
    """The image as OpenCV decodes it with IMREAD_UNCHANGED (gray, BGR or BGRA; 8/16 bit or float)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)  # with imdecode, also reads non-ASCII paths
    except OSError as error:
        raise InputError(f'{path}: cannot read the file ({error.strerror or error})') from None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputError(f'{path}: not an image OpenCV can decode (empty, damaged or another kind of file)')
    return check_image(image, path)


def write_image(path, image):
    """Encode ``image`` by ``path``'s extension and write it atomically (a crash leaves no partial file)."""
    ok, encoded = cv2.imencode(osp.splitext(path)[1], image)
    if not ok:
        raise InputError(f'{path}: OpenCV cannot encode a {image.dtype} image with shape {image.shape} in this format')
    atomic_write_bytes(path, encoded.tobytes())
    return path


def reference_tensor(image, scale, where='reference'):
    """An OpenCV-layout reference image as a (1, 3, H, W) RGB float tensor in [0, 1], cropped to a multiple of
    ``scale``."""
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    image = image[:, :, :3]
    height, width = (image.shape[0] // scale) * scale, (image.shape[1] // scale) * scale
    if height == 0 or width == 0:
        raise InputError(f'{where}: reference smaller than the scale {scale}')
    rgb = np.ascontiguousarray(image[:height, :width, ::-1]).astype(np.float32) / max_value_of(image.dtype)
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)


def read_reference(path, scale):
    """:func:`reference_tensor` of the image file ``path``."""
    return reference_tensor(read_image(path), scale, path)
