"""Pack the CUFED training set (TTSR/SRNTT layout) into two BasicSR LMDBs, pairs sharing one key.

Input: ``CUFED/train/input`` (GT) and ``CUFED/train/ref`` (references), paired by sorted order as
the original TTSR code pairs them. Output: ``<output>/train_input.lmdb`` and
``<output>/train_ref.lmdb``, each with BasicSR's ``meta_info.txt``; the pair ``i`` is stored under the
key of the input file's name in both, so :class:`ext.data.ref_cufed_dataset.RefCUFEDDataset` with
``io_backend: {type: lmdb}`` pairs them by key. A pair with an unreadable file is skipped and listed.
Both databases are built under temporary names and renamed into place when complete. CUFED5 (the
test set, 126 x 6 images) is read from disk by ``CUFED5Dataset`` and needs no LMDB.

Example::

    python scripts/prepare_cufed.py --root datasets/CUFED --output datasets/CUFED
"""
import argparse
import contextlib
import os
import os.path as osp
import sys

import cv2

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this checkout's ext, installed or not
from ext.utils.atomic_io import atomic_folder, atomic_write_text  # noqa: E402
from ext.utils.image_files import (UnreadableImage, encode_image, list_images, read_image,  # noqa: E402
                                   report_unreadable)
from ext.data.lmdb_keys import lmdb_key, meta_info_line  # noqa: E402
from ext.utils.parallel import add_workers_argument, parallel_imap  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', required=True, help='CUFED folder holding train/input and train/ref')
    parser.add_argument('--output', help='folder for train_input.lmdb and train_ref.lmdb (default: --root)')
    parser.add_argument('--compress_level', type=int, default=1, choices=range(10), metavar='0-9',
                        help='PNG compression of the records (default: %(default)s, as BasicSR)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing LMDBs')
    add_workers_argument(parser)
    args = parser.parse_args(argv)
    args.output = args.output or args.root
    return args


def encode_pair(job):
    """``(input png, input shape, ref png, ref shape, error)`` for one pair."""
    input_path, ref_path, compress_level = job
    encoded = []
    for path in (input_path, ref_path):
        try:
            image = read_image(path, cv2.IMREAD_COLOR)
            encoded += [encode_image(image, '.png', compress_level), image.shape]
        except UnreadableImage as error:
            return None, None, None, None, str(error)
        except ValueError as error:  # OpenCV cannot write it as PNG
            return None, None, None, None, f'{path}: {error}'
    return (*encoded, None)


def collect_pairs(root):
    input_dir, ref_dir = osp.join(root, 'train', 'input'), osp.join(root, 'train', 'ref')
    inputs, refs = list_images(input_dir, recursive=False), list_images(ref_dir, recursive=False)
    if len(inputs) != len(refs):
        raise SystemExit(f'error: {input_dir} has {len(inputs)} images but {ref_dir} has {len(refs)}; '
                         f'CUFED pairs them by sorted order, so the counts must match')
    if not inputs:
        raise SystemExit(f'error: no images in {input_dir}')
    return [(osp.join(input_dir, a), osp.join(ref_dir, b)) for a, b in zip(inputs, refs)]


def main(argv=None):
    args = parse_args(argv)
    import lmdb
    pairs = collect_pairs(args.root)
    outputs = [osp.join(osp.abspath(args.output), name) for name in ('train_input.lmdb', 'train_ref.lmdb')]
    existing = [path for path in outputs if osp.exists(path)]
    if existing and not args.overwrite:
        raise SystemExit(f'error: {existing[0]} already exists; pass --overwrite to replace it')
    os.makedirs(args.output, exist_ok=True)
    map_size = sum(osp.getsize(a) + osp.getsize(b) for a, b in pairs) * 8 + 64 * 2**20
    metas, failures = ([], []), []
    with contextlib.ExitStack() as stack:  # both databases are built under temporary names, then renamed
        temps = [stack.enter_context(atomic_folder(path)) for path in outputs]
        envs = [lmdb.open(path, map_size=map_size, subdir=True, meminit=False, map_async=True, mode=0o777)  # umask
                for path in temps]
        try:
            jobs = [(a, b, args.compress_level) for a, b in pairs]
            for (input_path, _), result in zip(pairs, parallel_imap(encode_pair, jobs, args.workers, desc='CUFED')):
                input_png, input_shape, ref_png, ref_shape, error = result
                if error:
                    failures.append(error)
                    continue
                key = lmdb_key(osp.basename(input_path))
                for env, meta, png, shape in zip(envs, metas, (input_png, ref_png), (input_shape, ref_shape)):
                    with env.begin(write=True) as txn:
                        txn.put(key.encode('ascii'), png)
                    meta.append(meta_info_line(key, shape, args.compress_level))
            for env in envs:
                env.sync()
        finally:
            for env in envs:
                env.close()
        if not metas[0]:
            raise SystemExit('error: no readable pair; nothing written')
        for temp, meta in zip(temps, metas):
            atomic_write_text(osp.join(temp, 'meta_info.txt'), ''.join(f'{line}\n' for line in meta))
    print(f'{len(metas[0])} pairs written to {outputs[0]} and {outputs[1]}.')
    report_unreadable(failures, what='pairs skipped (unreadable file)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
