"""Prep chain (multiscale + meta info + LMDB) with parallel workers against the same work done serially.

Generates ``--count`` images (crops of scikit-image photos, ``--size`` pixels), then runs
``generate_multiscale.py``, ``generate_meta_info.py --check`` and ``create_lmdb.py`` once with
``--workers 1`` and once with ``--workers N``, alternating, ``--repeats`` times, and prints the
wall time of each step and the serial / parallel ratio. The outputs of both runs are compared
byte for byte (LMDB records and meta_info.txt), so the speed-up is for the same work.

    python benchmarks/bench_prep_chain.py [--count 200] [--workers 4]
"""
import argparse
import os
import os.path as osp
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path[:0] = [osp.join(REPO_ROOT, 'scripts'), REPO_ROOT]
import create_lmdb  # noqa: E402
import generate_meta_info  # noqa: E402
import generate_multiscale  # noqa: E402
from ext.utils.bundled_photos import photo_crop  # noqa: E402
from ext.utils.image_files import write_image  # noqa: E402
from ext.utils.parallel import default_workers  # noqa: E402

PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'brick', 'grass', 'gravel', 'camera', 'immunohistochemistry')


def make_images(folder, count, size, seed=0):
    rng = np.random.default_rng(seed)
    for index in range(count):
        crop = photo_crop(PHOTOS[index % len(PHOTOS)], size, rng)
        write_image(osp.join(folder, f'material_{index:04d}.png'), np.ascontiguousarray(crop[..., ::-1]))


def run_chain(hr, out, workers):
    """Wall seconds of each step."""
    times = {}
    flags = ['--workers', str(workers)]
    start = time.perf_counter()
    generate_multiscale.main(['--input', hr, '--output', osp.join(out, 'multiscale'), *flags])
    times['multiscale'] = time.perf_counter() - start
    start = time.perf_counter()
    meta = osp.join(out, 'meta_info.txt')
    generate_meta_info.main(['--input', hr, osp.join(out, 'multiscale'), '--root', osp.dirname(hr), '--meta_info',
                             meta, '--check', *flags])
    times['meta info --check'] = time.perf_counter() - start
    start = time.perf_counter()
    create_lmdb.main(['--meta_info', meta, '--root', osp.dirname(hr), '--output', osp.join(out, 'data.lmdb'), *flags])
    times['lmdb'] = time.perf_counter() - start
    return times


def lmdb_records(path, run_prefix):
    """Records and meta_info.txt of an LMDB, with the run's folder name taken out of the keys."""
    import lmdb
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        records = {key.decode().replace(run_prefix, ''): value for key, value in txn.cursor()}
    env.close()
    return records, open(osp.join(path, 'meta_info.txt')).read().replace(run_prefix, '')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--count', type=int, default=200, help='images to generate (default: %(default)s)')
    parser.add_argument('--size', type=int, default=480, help='their height in pixels (default: %(default)s)')
    parser.add_argument('--workers', type=int, default=default_workers(),
                        help='parallel workers (default: %(default)s, this machine\'s CPUs up to 8)')
    parser.add_argument('--repeats', type=int, default=2, help='runs of each mode (default: %(default)s)')
    args = parser.parse_args()
    if args.workers < 2:
        print(f'note: this machine has {os.cpu_count()} CPU(s); comparing 1 worker with {args.workers} measures '
              'only the overhead')
    work = tempfile.mkdtemp(prefix='bench_prep_chain_')
    try:
        hr = osp.join(work, 'materials', 'HR')
        make_images(hr, args.count, args.size)
        results = {1: [], args.workers: []}
        for repeat in range(args.repeats):
            for workers in (1, args.workers):  # alternate, so drifting machine load hits both
                out = osp.join(work, 'materials', f'run_{workers}_{repeat}')
                results[workers].append(run_chain(hr, out, workers))
        serial_run, parallel_run = 'run_1_0', f'run_{args.workers}_0'
        assert lmdb_records(osp.join(work, 'materials', serial_run, 'data.lmdb'), serial_run) == \
            lmdb_records(osp.join(work, 'materials', parallel_run, 'data.lmdb'), parallel_run), \
            'serial and parallel outputs differ'
        print(f'\nprep chain on {args.count} images of {args.size} px ({args.count * 5} after multiscale), '
              f'{os.cpu_count()} CPUs, median of {args.repeats}:')
        print(f'{"step":<20}{"1 worker":>12}{f"{args.workers} workers":>14}{"ratio":>9}')
        for step in list(results[1][0]) + ['total']:
            def median(runs):
                return statistics.median(sum(r.values()) if step == 'total' else r[step] for r in runs)
            serial, parallel = median(results[1]), median(results[args.workers])
            print(f'{step:<20}{serial:>11.2f}s{parallel:>13.2f}s{serial / parallel:>8.2f}x')
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
