"""Helpers shared by the data scripts: image listing and reading, a parallel map with a progress
bar, atomic file writes and the end-of-run report of unreadable inputs.

Only numpy, OpenCV, Pillow and tqdm are imported here, so a script starts in a fraction of a
second and its worker processes stay light; the few ``ext`` helpers the scripts share with the
training code are loaded from their files by :func:`load_ext_helper` without importing torch.
"""
import collections
import importlib.util
import itertools
import multiprocessing
import os
import os.path as osp
import sys
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm', '.pnm', '.gif')


class UnreadableImage(Exception):
    """An input file is missing, truncated or not an image; the message names it."""


def load_ext_helper(name, package='data'):
    """Import ``ext/<package>/<name>.py`` as a stand-alone module (it depends on numpy/OpenCV only).

    Importing it through the ``ext`` package would pull in torch and BasicSR (4 s per process).
    """
    module_name = f'_ext_{package}_{name}'
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, osp.join(REPO_ROOT, 'ext', package, f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def default_workers():
    return max(1, min(8, os.cpu_count() or 1))


def add_workers_argument(parser):
    parser.add_argument('--workers', '--n_thread', type=int, default=default_workers(),
                        help='parallel worker processes (default: %(default)s; 1 runs in this process)')


def is_image_file(name):
    return name.lower().endswith(IMAGE_EXTENSIONS) and not osp.basename(name).startswith('.')


def list_images(folder, recursive=True):
    """Sorted image paths under ``folder``, relative to it, '/'-separated; hidden files skipped."""
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


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically (``ext/utils/atomic_io.py``), creating its folder."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    load_ext_helper('atomic_io', package='utils').atomic_write_bytes(path, data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode('utf-8'))


def encode_image(image, extension, png_compression=None):
    params = []
    if extension.lower() == '.png' and png_compression is not None:
        params = [cv2.IMWRITE_PNG_COMPRESSION, int(png_compression)]
    ok, buffer = cv2.imencode(extension, image, params)
    if not ok:
        raise ValueError(f'OpenCV cannot encode an image of shape {image.shape} as {extension}')
    return buffer.tobytes()


def write_image(path, image, png_compression=None):
    """Encode ``image`` (OpenCV layout) by ``path``'s extension and write it atomically."""
    atomic_write_bytes(path, encode_image(image, osp.splitext(path)[1], png_compression))


def _pool_context():
    # Never plain fork: forking a process whose OpenCV/OpenMP/torch thread pools are running can deadlock
    # the children (e.g. a benchmark or test that already ran a step in-process). forkserver forks from a
    # clean single-threaded server, so workers start fast and safe; spawn where it does not exist.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context('forkserver' if 'forkserver' in methods else 'spawn')


def _init_worker():
    cv2.setNumThreads(1)  # the processes are the parallelism; OpenCV's own threads would oversubscribe


def parallel_imap(function, items, workers, desc, unit='img'):
    """Yield ``function(item)`` for each item, in order, computed by ``workers`` processes, with a progress bar.

    At most a few tasks per worker are in flight, so results that hold image bytes never pile up
    in memory. ``function`` must be a module-level function (it is pickled); ``workers <= 1`` runs
    it in this process.
    """
    items = list(items)
    workers = min(workers, len(items))
    progress = tqdm(total=len(items), desc=desc, unit=unit, dynamic_ncols=True)
    try:
        if workers <= 1:
            for item in items:
                yield function(item)
                progress.update()
            return
        with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(), initializer=_init_worker) as pool:
            pending = collections.deque()
            remaining = iter(items)
            for item in itertools.islice(remaining, workers * 4):
                pending.append(pool.submit(function, item))
            while pending:
                result = pending.popleft().result()
                for item in itertools.islice(remaining, 1):
                    pending.append(pool.submit(function, item))
                yield result
                progress.update()
    finally:
        progress.close()


def parallel_map(function, items, workers, desc, unit='img'):
    """``[function(item) for item in items]`` computed by :func:`parallel_imap`."""
    return list(parallel_imap(function, items, workers, desc, unit))


def report_unreadable(failures, stream=None, what='unreadable files skipped'):
    """Print ``failures`` (messages naming each file) at the end of a run."""
    stream = stream or sys.stderr
    if failures:
        print(f'{len(failures)} {what}:', file=stream)
        for message in failures:
            print(f'  {message}', file=stream)
