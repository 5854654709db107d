"""A parallel map over worker processes with a progress bar, and the ``--workers`` option of the data scripts.

Workers are started by ``forkserver`` (``spawn`` where it does not exist), never by plain ``fork``: forking
a process whose OpenCV/OpenMP/torch thread pools are running can deadlock the children (e.g. a benchmark or
test that already ran a training step in-process). The fork server imports the main script once (Python's
default preload), and with it ``ext`` (torch, BasicSR: about 4 s and 1.2 GB), and forks every worker from it:
the workers start in milliseconds and share those pages instead of each importing ``ext`` again. ``preload``
names further modules a job's workers import.
"""
import collections
import itertools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import cv2
from tqdm import tqdm


def default_workers():
    return max(1, min(8, os.cpu_count() or 1))


def add_workers_argument(parser):
    parser.add_argument('--workers', '--n_thread', type=int, default=default_workers(),
                        help='parallel worker processes (default: %(default)s; 1 runs in this process)')


def _pool_context(preload=()):
    if 'forkserver' not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context('spawn')
    context = multiprocessing.get_context('forkserver')
    if preload:  # takes effect when this process starts its fork server, i.e. at its first pool
        context.set_forkserver_preload(['__main__', *preload])
    return context


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
