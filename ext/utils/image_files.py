"""Image files for the data scripts: listing a folder, reading any format OpenCV or Pillow decodes (naming
the file when it cannot be read), encoding and writing atomically, and the end-of-run list of what was
skipped. Images are numpy arrays in OpenCV's layout (BGR/BGRA/grey, 8 or 16 bit) unless said otherwise.

Training reads its images through :mod:`ext.data.image_reader` (BasicSR's ``FileClient`` bytes, LMDB keys).
"""
import os
import os.path as osp
import sys

import cv2
import numpy as np
from PIL import Image, ImageOps

from ext.utils.atomic_io import atomic_write_bytes

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm', '.pnm', '.gif')


class UnreadableImage(Exception):
    """An input file is missing, truncated or not an image; the message names it."""


def is_image_file(name):
    return name.lower().endswith(IMAGE_EXTENSIONS) and not osp.basename(name).startswith('.')


def list_images(folder, recursive=True):
    """Sorted image paths under ``folder``, relative to it, '/'-separated; hidden files skipped.

    A missing folder ends the command with an error naming it (``SystemExit``).
    """
    if not osp.isdir(folder):
        raise SystemExit(f'error: input folder {folder!r} does not exist or is not a folder')
    found = []
    for current, subfolders, files in os.walk(folder):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith('.')) if recursive else []
        relative = osp.relpath(current, folder)
        for name in files:
            if is_image_file(name):
                found.append(name if relative == '.' else osp.join(relative, name).replace(os.sep, '/'))
    return sorted(found)


def read_image(path, flags=cv2.IMREAD_UNCHANGED):
    """Image as a numpy array in OpenCV's layout (BGR/BGRA/grey, 8 or 16 bit).

    Falls back to Pillow for what OpenCV cannot decode (e.g. GIF, some TIFFs).

    Raises:
        UnreadableImage: naming the file and why.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode also reads non-ASCII paths
    except OSError as error:
        raise UnreadableImage(f'{path}: {error.strerror or error}') from None
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        try:
            with Image.open(path) as pil_image:
                pil_image.load()
                pil_image = pil_image.convert('RGBA' if 'A' in pil_image.getbands() else 'RGB')
                image = np.asarray(pil_image)[..., ::-1].copy()
                if image.shape[2] == 4:
                    image = image[..., [2, 1, 0, 3]]  # RGBA reversed is ABGR; OpenCV wants BGRA
        except Exception as error:  # Pillow raises many types for broken files
            raise UnreadableImage(f'{path}: not a readable image ({type(error).__name__}: {error})') from None
    return image


def open_pil(path):
    """Fully decoded, EXIF-rotated Pillow image. Raises UnreadableImage."""
    try:
        with Image.open(path) as image:
            image.load()
            return ImageOps.exif_transpose(image)
    except Exception as error:
        raise UnreadableImage(f'{path}: not a readable image ({type(error).__name__}: {error})') from None


def encode_image(image, extension, png_compression=None):
    """The bytes of ``image`` (OpenCV layout) in the format of ``extension`` ('.png', '.jpg', ...)."""
    params = []
    if extension.lower() == '.png' and png_compression is not None:
        params = [cv2.IMWRITE_PNG_COMPRESSION, int(png_compression)]
    ok, buffer = cv2.imencode(extension, image, params)
    if not ok:
        raise ValueError(f'OpenCV cannot encode a {image.dtype} image of shape {image.shape} as {extension}')
    return buffer.tobytes()


def write_image(path, image, png_compression=None):
    """Encode ``image`` (OpenCV layout) by ``path``'s extension and write it atomically, creating its folder."""
    atomic_write_bytes(path, encode_image(image, osp.splitext(path)[1], png_compression), make_dirs=True)
    return path


def report_unreadable(failures, stream=None, what='unreadable files skipped'):
    """Print ``failures`` (messages naming each file) at the end of a run."""
    stream = stream or sys.stderr
    if failures:
        print(f'{len(failures)} {what}:', file=stream)
        for message in failures:
            print(f'  {message}', file=stream)
