"""A parallel map over worker processes with a progress bar, and the ``--workers`` option of the data scripts.

Workers are started by ``forkserver`` (``spawn`` where it does not exist), never by plain ``fork``: forking
a process whose OpenCV/OpenMP/torch thread pools are running can deadlock the children (e.g. a benchmark or
test that already ran a training step in-process). The fork server imports ``ext`` (light: no torch) and the
modules a job names in ``preload`` (e.g. ``ext.utils.sr_benchmark``, torch: about 2 s) once per process, and
every worker of every pool is forked from it: the workers start in milliseconds and share those pages.

Python 3.11's fork server never preloads ``__main__`` (it reads a ``main_path`` that the parent no longer sends)
nor the parent's ``sys.path``; it only imports modules by name. Left to its default, every worker ran the main
script again and imported what it needed itself (torch: seconds per pool). So ``ext`` and ``preload`` are
imported by name, with the folder holding ``ext`` on the server's ``PYTHONPATH``.
"""
import collections
import itertools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import cv2
from tqdm import tqdm

PACKAGES_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the folder of ext/


def default_workers():
    return max(1, min(8, os.cpu_count() or 1))


def add_workers_argument(parser):
    parser.add_argument('--workers', '--n_thread', type=int, default=default_workers(),
                        help='parallel worker processes (default: %(default)s; 1 runs in this process)')


def _pool_context(preload=()):
    if 'forkserver' not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context('spawn')
    from multiprocessing import forkserver
    # takes effect when this process starts its fork server, i.e. at its first pool: later ``preload`` modules
    # are imported by the workers themselves
    forkserver.set_forkserver_preload(['ext', *preload])
    saved = os.environ.get('PYTHONPATH')
    os.environ['PYTHONPATH'] = PACKAGES_ROOT + (os.pathsep + saved if saved else '')
    try:
        forkserver.ensure_running()
    finally:
        if saved is None:
            del os.environ['PYTHONPATH']
        else:
            os.environ['PYTHONPATH'] = saved
    return multiprocessing.get_context('forkserver')


def _init_worker():
    cv2.setNumThreads(1)  # the processes are the parallelism; OpenCV's own threads would oversubscribe


def parallel_imap(function, items, workers, desc, unit='img', preload=()):
    """Yield ``function(item)`` for each item, in order, computed by ``workers`` processes, with a progress bar.

    At most a few tasks per worker are in flight, so results that hold image bytes never pile up
    in memory. ``function`` must be a module-level function (it is pickled); ``workers <= 1`` runs
    it in this process. ``preload``: names of heavy modules ``function`` imports, imported once by the
    fork server (see the module's doc).
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
        with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(preload),
                                 initializer=_init_worker) as pool:
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


def parallel_map(function, items, workers, desc, unit='img', preload=()):
    """``[function(item) for item in items]`` computed by :func:`parallel_imap`."""
    return list(parallel_imap(function, items, workers, desc, unit, preload))
