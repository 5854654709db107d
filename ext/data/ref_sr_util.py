"""Helpers of the reference-based SR datasets (TTSR's CUFED/CUFED5, reused by the FFHQ inpainting data).

Resizing is PIL bicubic on uint8 RGB images, as the original TTSR data code; arrays are HxWx3
uint8 RGB until :func:`to_tensors`.
"""
import random

import cv2
import numpy as np
import torch
from PIL import Image

from basicsr.utils import FileClient
from ext.data.image_reader import read_image


def read_rgb(file_client, path, client_key='default'):
    """uint8 RGB image from a BasicSR ``FileClient`` (disk path or LMDB key); a missing, empty or
    undecodable file is a :class:`~ext.data.image_reader.BadImageFile` naming it."""
    image = read_image(file_client, path, client_key)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)


class LazyFileClient:
    """BasicSR's ``FileClient`` for ``io_backend_opt``, opened at the first read, so that each DataLoader worker
    opens its own (an LMDB environment must not cross a fork)."""

    def __init__(self, io_backend_opt):
        self.io_backend_opt = dict(io_backend_opt)
        self._client = None

    def read_rgb(self, path, client_key='default'):
        """:func:`read_rgb` through this client."""
        if self._client is None:
            backend = dict(self.io_backend_opt)
            self._client = FileClient(backend.pop('type'), **backend)
        return read_rgb(self._client, path, client_key)


def resize_bicubic(image, width, height):
    """PIL bicubic resize of a uint8 RGB array to ``width`` x ``height``."""
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


def mod_crop(image, scale):
    h, w = image.shape[:2]
    return image[:h - h % scale, :w - w % scale]


def down_up(image, scale=4):
    """Bicubic /scale then x scale back to the same size (TTSR's ``Ref_sr`` / ``LR_sr`` inputs)."""
    h, w = image.shape[:2]
    if h < scale or w < scale:
        raise ValueError(f'image of {h}x{w} is smaller than the scale {scale}')
    return resize_bicubic(resize_bicubic(image, w // scale, h // scale), w, h)


def lq_pair(gt, scale=4):
    """``(lq, lq_up)``: GT bicubic /scale, and that bicubic x scale (GT must be mod-cropped)."""
    h, w = gt.shape[:2]
    lq = resize_bicubic(gt, w // scale, h // scale)
    return lq, resize_bicubic(lq, w, h)


def pad_or_crop(image, height, width):
    """Zero-pad at the bottom/right (or crop from the top-left) to ``height`` x ``width``."""
    image = image[:height, :width]
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return np.ascontiguousarray(image)
    canvas = np.zeros((height, width) + image.shape[2:], dtype=image.dtype)
    canvas[:h, :w] = image
    return canvas


def fit_reference(ref, height, width, mode='pad', scale=4):
    """``(ref, ref_down_up)`` of size ``height`` x ``width``.

    'pad' (original TTSR): ``ref_down_up`` is computed on the reference as it is, then both are
    zero-padded (or cropped) to the size. 'resize' (as C2-Matching): the reference is resized to the
    size first.
    """
    if mode == 'pad':
        return pad_or_crop(ref, height, width), pad_or_crop(down_up(ref, scale), height, width)
    if mode == 'resize':
        ref = resize_bicubic(ref, width, height)
        return ref, down_up(ref, scale)
    raise ValueError(f"ref_fit must be 'pad' or 'resize', got {mode!r}")


def random_flip_rot(images, use_flip=True, use_rot=True):
    """Apply one random horizontal flip, vertical flip and rot90 (k in 0..3) to every array of
    ``images`` alike (TTSR draws these independently for the (lq, gt) group and the ref group)."""
    hflip = use_flip and random.random() < 0.5
    vflip = use_flip and random.random() < 0.5
    square = all(img.shape[0] == img.shape[1] for img in images)
    k = random.randrange(4) if use_rot and square else (2 * random.randrange(2) if use_rot else 0)
    out = []
    for img in images:
        if hflip:
            img = img[:, ::-1]
        if vflip:
            img = img[::-1]
        if k:
            img = np.rot90(img, k)
        out.append(np.ascontiguousarray(img))
    return out


def to_tensor(image):
    """uint8 HxWxC RGB -> float32 CxHxW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.)
