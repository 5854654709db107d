"""The one guarded image reader of every training set (BasicSR's and this package's).

BasicSR's ``imfrombytes`` gets bytes without a name: a zero-byte file stops training with OpenCV's
``!buf.empty()`` assertion and a truncated or non-image file with ``'NoneType' object has no
attribute 'astype'``. Here every failure is a :class:`BadImageFile` that names the file and says
what is wrong with it (missing, empty, truncated, not an image). :mod:`ext.engine.bad_data` routes
BasicSR's ``FileClient.get`` / ``imfrombytes`` through :func:`read_image_bytes` / :func:`decode_image`,
and the training-set wrapper logs each bad file once and draws another sample (see
:class:`ext.engine.sampling.PerSampleSeededDataset`).

This module is not a component file: it registers nothing.
"""
import cv2
import numpy as np

IMREAD_FLAGS = {'color': cv2.IMREAD_COLOR, 'grayscale': cv2.IMREAD_GRAYSCALE, 'unchanged': cv2.IMREAD_UNCHANGED}
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_JPEG_START, _JPEG_END = b'\xff\xd8', b'\xff\xd9'


class BadImageFile(RuntimeError):
    """An image of a data set cannot be used. ``path`` names it, ``reason`` says why.

    Not an ``OSError``: BasicSR's ``RealESRGANDataset`` retries ``OSError`` itself (sleeping a
    second and possibly indexing past its end); a bad file is handled once, by the training-set
    wrapper, whatever the dataset.
    """

    def __init__(self, path, reason):
        super().__init__(path, reason)
        self.path, self.reason = str(path), reason

    def __str__(self):
        return f'{self.path}: {self.reason}'


class ImageBytes(bytes):
    """The content of a file with the path it was read from (what ``FileClient.get`` returns)."""

    def __new__(cls, content, path):
        self = super().__new__(cls, content)
        self.path = str(path)
        return self

    def __reduce__(self):  # pickles (to loader workers) as itself
        return ImageBytes, (bytes(self), self.path)


def _why_undecodable(content):
    head, tail = bytes(content[:8]), bytes(content[-16:])
    if head.startswith(_PNG_SIGNATURE) and b'IEND' not in tail:
        return f'truncated PNG file ({len(content)} bytes, no IEND chunk at the end)'
    if head.startswith(_JPEG_START) and _JPEG_END not in bytes(content[-1024:]):
        return f'truncated JPEG file ({len(content)} bytes, no end-of-image marker)'
    return f'not a decodable image ({len(content)} bytes; corrupt, truncated or not an image format OpenCV reads)'


def decode_image(content, path=None, flag='color', float32=False):
    """``cv2.imdecode`` of ``content`` as BasicSR's ``imfrombytes`` (BGR, HWC; float32 in [0, 1]
    when ``float32``), raising :class:`BadImageFile` naming ``path`` instead of returning None."""
    path = path or getattr(content, 'path', None) or '<image bytes>'
    if content is None:
        raise BadImageFile(path, 'missing (no such file or LMDB key)')
    if len(content) == 0:
        raise BadImageFile(path, 'empty file (0 bytes)')
    image = cv2.imdecode(np.frombuffer(content, np.uint8), IMREAD_FLAGS[flag])
    if image is None:
        raise BadImageFile(path, _why_undecodable(content))
    if float32:
        image = image.astype(np.float32) / 255.
    return image


def read_image_bytes(file_client, path, client_key='default', get=None):
    """The bytes of ``path`` (a disk path or an LMDB key) through a BasicSR ``FileClient``, as
    :class:`ImageBytes`; a missing file or key is a :class:`BadImageFile`. ``get``: the unguarded
    ``FileClient.get`` to read with (the engine routes the guarded one here); default the client's own."""
    try:
        content = (get or type(file_client).get)(file_client, path, client_key)
    except FileNotFoundError:
        raise BadImageFile(path, 'missing file') from None
    except IsADirectoryError:
        raise BadImageFile(path, 'a folder, not an image file') from None
    if content is None:  # LMDB: no such key
        raise BadImageFile(path, f'missing: no such key in the LMDB ({client_key})')
    return content if isinstance(content, ImageBytes) else ImageBytes(content, path)


def read_image(file_client, path, client_key='default', flag='color', float32=False):
    """:func:`read_image_bytes` then :func:`decode_image`."""
    return decode_image(read_image_bytes(file_client, path, client_key), path, flag, float32)
