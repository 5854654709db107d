"""LMDB keys and ``meta_info.txt`` lines as BasicSR writes and reads them, made safe for any file name.

BasicSR's LMDB holds one PNG per key and a ``meta_info.txt`` with lines
``{key}.png ({h},{w},{c}) {compress_level}``; its readers take ``line.split('.')[0]`` as the key and
``FileClient('lmdb')`` encodes keys as ASCII. A file called ``oak.v2.jpg``, ``Stoff Muster.png``
or ``Kühl.png`` therefore breaks upstream. :func:`lmdb_key` maps an image path (relative to the
data root) to a key without dots, spaces or non-ASCII characters, so the LMDB stays readable by
BasicSR's own datasets; ``scripts/create_lmdb.py`` refuses inputs whose keys collide.
:class:`~ext.data.material_multiscale_dataset.MaterialMultiscaleDataset` applies the same rule to a
meta-info list, so a path list (e.g. the reduced list) selects records of the LMDB.

Needs only the standard library.
"""
import os
import re
import unicodedata

_UNSAFE = re.compile(r'[^A-Za-z0-9_\-/]')


def lmdb_key(relative_path):
    """Key of the image at ``relative_path``: the path without extension, '/' separated, and every
    character other than ASCII letters, digits, '_', '-' and '/' replaced by '_' (accents dropped).

    >>> lmdb_key('multiscale/oak.v2T0.png')
    'multiscale/oak_v2T0'
    """
    stem = os.path.splitext(relative_path.replace('\\', '/'))[0].strip('/')
    ascii_stem = unicodedata.normalize('NFKD', stem).encode('ascii', 'ignore').decode('ascii')
    return _UNSAFE.sub('_', ascii_stem)


def meta_info_line(key, shape, compress_level):
    """One line of BasicSR's LMDB ``meta_info.txt`` (without the newline)."""
    h, w = shape[:2]
    c = 1 if len(shape) == 2 else shape[2]
    return f'{key}.png ({h},{w},{c}) {compress_level}'


def parse_meta_info_line(line):
    """``(key, (h, w, c), compress_level)`` of a ``meta_info.txt`` line.

    Splits from the right, so keys written by other tools that contain dots or spaces still parse.
    """
    line = line.strip()
    try:
        name, shape, level = line.rsplit(' ', 2)
        h, w, c = (int(v) for v in shape.strip('()').split(','))
        key = name[:-len('.png')] if name.endswith('.png') else os.path.splitext(name)[0]
        return key, (h, w, c), int(level)
    except ValueError:
        raise ValueError(f"not a BasicSR LMDB meta_info line: {line!r}; expected '<key>.png (<h>,<w>,<c>) "
                         f'<compress_level>\'') from None


def read_lmdb_keys(lmdb_path):
    """Keys listed in ``<lmdb_path>/meta_info.txt``, in file order."""
    meta_path = os.path.join(lmdb_path, 'meta_info.txt')
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f'{meta_path} not found: {lmdb_path!r} is not a BasicSR LMDB '
                                f'(write one with scripts/create_lmdb.py or a dataset\'s prepare_*.py script)')
    with open(meta_path, encoding='utf-8') as handle:
        return [parse_meta_info_line(line)[0] for line in handle if line.strip()]
