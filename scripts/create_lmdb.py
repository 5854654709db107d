"""Pack images into an LMDB in BasicSR's format, readable by ``FileClient('lmdb')`` and every BasicSR dataset.

Each record is the PNG encoding of the image as OpenCV reads it (``IMREAD_UNCHANGED``), under the
key ``<path relative to the root, without extension>``; ``<output>.lmdb/meta_info.txt`` has one
line per record, ``{key}.png ({h},{w},{c}) {compress_level}``, exactly as
``basicsr.utils.lmdb_util.make_lmdb_from_imgs`` writes it. Unlike upstream:

- the map size is computed from the images' dimensions (and grown if ever short), so no
  ``MDB_MAP_FULL`` (BasicSR #239);
- characters that break BasicSR's readers (dots, spaces, non-ASCII) are replaced by '_' in keys
  (:func:`ext.data.lmdb_keys.lmdb_key`); two files mapping to one key is an error naming both;
- the database is built in a temporary folder and renamed into place when complete, so a killed
  run never leaves a half-written LMDB; an existing output is kept unless ``--overwrite``;
- images are read and PNG-encoded by parallel workers; unreadable files are named and skipped.

Examples::

    # the material layout: keys like multiscale/brick_01T0, selected later by any meta-info list
    python scripts/create_lmdb.py --meta_info datasets/materials/meta_info/meta_info_multiscale.txt \\
        --root datasets/materials --output datasets/materials/multiscale.lmdb
    # folders (keys relative to --root, default: the folder itself, or the common parent of several)
    python scripts/create_lmdb.py --input datasets/DIV2K/DIV2K_train_HR_sub --output datasets/DIV2K/train_HR_sub.lmdb
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this checkout's ext, installed or not
from ext.utils.atomic_io import atomic_folder, atomic_write_text  # noqa: E402
from ext.utils.image_files import (UnreadableImage, encode_image, list_images, read_image,  # noqa: E402
                                   report_unreadable)
from ext.data.lmdb_keys import lmdb_key, meta_info_line  # noqa: E402
from ext.utils.parallel import add_workers_argument, parallel_imap, parallel_map  # noqa: E402

PAGE = 4096


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--input', nargs='+', help='image folder(s), searched recursively')
    source.add_argument('--meta_info', nargs='+', help='meta-info list(s): image paths relative to --root')
    parser.add_argument('--root', help='folder the keys are relative to (default: for --input one folder: itself, '
                                       'several: their common parent; for --meta_info: the folder above the list\'s)')
    parser.add_argument('--output', required=True, help='LMDB folder to create; must end with .lmdb')
    parser.add_argument('--compress_level', type=int, default=1, choices=range(10), metavar='0-9',
                        help='PNG compression level of the records (default: %(default)s, as BasicSR)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing output LMDB')
    parser.add_argument('--batch', type=int, default=256, help='records per write transaction (default: %(default)s)')
    add_workers_argument(parser)
    args = parser.parse_args(argv)
    if not args.output.endswith('.lmdb'):
        parser.error(f"--output {args.output!r} must end with '.lmdb' (BasicSR's readers require it)")
    if osp.exists(args.output) and not args.overwrite:
        parser.error(f'--output {args.output!r} already exists; pass --overwrite to replace it')
    if args.batch < 1:
        parser.error('--batch must be >= 1')
    return args


def collect_images(args):
    """``[(relative path, absolute path)]`` in a stable order."""
    if args.meta_info:
        root = args.root or osp.dirname(osp.dirname(osp.abspath(args.meta_info[0])))
        relatives = []
        for meta_info in args.meta_info:
            if not osp.isfile(meta_info):
                raise SystemExit(f'error: meta info file {meta_info!r} does not exist')
            with open(meta_info, encoding='utf-8') as handle:
                relatives.extend(line.strip() for line in handle if line.strip())
        relatives = list(dict.fromkeys(relatives))  # drop repeats, keep order
    else:
        folders = [osp.abspath(folder) for folder in args.input]
        root = args.root or (folders[0] if len(folders) == 1 else osp.commonpath(folders))
        relatives = []
        for folder in folders:
            prefix = osp.relpath(folder, osp.abspath(root)).replace('\\', '/')
            if prefix.startswith('..'):
                raise SystemExit(f'error: --input {folder!r} is not inside --root {root!r}')
            relatives.extend(path if prefix == '.' else f'{prefix}/{path}' for path in list_images(folder))
    if not relatives:
        raise SystemExit('error: no images to pack')
    return [(relative, osp.join(root, relative)) for relative in relatives]


def check_keys(entries):
    """LMDB keys of ``entries``; exits naming the files when two map to one key."""
    keys, owner, clashes = [], {}, []
    for relative, _ in entries:
        key = lmdb_key(relative)
        if key in owner:
            clashes.append(f'  {owner[key]!r} and {relative!r} -> key {key!r}')
        owner.setdefault(key, relative)
        keys.append(key)
    if clashes:
        raise SystemExit('error: these files would share an LMDB key (keys are paths without extension, with '
                         "characters other than letters, digits, '_', '-', '/' replaced by '_'); rename one of "
                         'each pair:\n' + '\n'.join(clashes))
    return keys


def size_bound(path):
    """Upper bound of the bytes one record takes in the LMDB, from the image header; 0 if unreadable."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # reported when the record itself is read
        return 0
    png_bound = width * height * 4 + height + width * height // 1000 + 1024  # raw BGRA, row filters, zlib
    return (png_bound // PAGE + 2) * PAGE  # LMDB overflow pages plus leaf/branch entries


def encode_one(job):
    """``(png bytes, shape, None)`` or ``(None, None, error)``."""
    path, compress_level = job
    try:
        image = read_image(path)
        return encode_image(image, '.png', compress_level), image.shape, None
    except UnreadableImage as error:
        return None, None, str(error)
    except ValueError as error:  # OpenCV cannot write it as PNG
        return None, None, f'{path}: {error}'


def write_batch(env, records):
    """Put ``records`` in one transaction, doubling the map size if LMDB reports it full."""
    import lmdb
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in records:
                    txn.put(key.encode('ascii'), value)
            return
        except lmdb.MapFullError:
            env.set_mapsize(env.info()['map_size'] * 2)


def build(args, entries, keys, tmp_path):
    import lmdb
    bounds = parallel_map(size_bound, [path for _, path in entries], args.workers, desc='sizes')
    map_size = int(sum(bounds) * 1.1) + 16 * 1024 * 1024
    env = lmdb.open(tmp_path, map_size=map_size, subdir=True, meminit=False, map_async=True,
                     mode=0o777)  # files 0666, the folder 0777, less the umask (lmdb: 0644 / 0755)
    meta_lines, failures, pending = [], [], []
    try:
        jobs = [(path, args.compress_level) for _, path in entries]
        for key, (data, shape, error) in zip(keys, parallel_imap(encode_one, jobs, args.workers, desc='lmdb')):
            if error:
                failures.append(error)
                continue
            pending.append((key, data))
            meta_lines.append(meta_info_line(key, shape, args.compress_level))
            if len(pending) >= args.batch:
                write_batch(env, pending)
                pending = []
        if pending:
            write_batch(env, pending)
        env.sync()
    finally:
        env.close()
    if not meta_lines:
        raise SystemExit('error: none of the images could be read; no LMDB written')
    atomic_write_text(osp.join(tmp_path, 'meta_info.txt'), ''.join(f'{line}\n' for line in meta_lines))
    return len(meta_lines), failures


def main(argv=None):
    args = parse_args(argv)
    entries = collect_images(args)
    keys = check_keys(entries)
    os.makedirs(osp.dirname(osp.abspath(args.output)), exist_ok=True)
    with atomic_folder(args.output) as tmp_path:  # --overwrite: the complete new database replaces the old one
        count, failures = build(args, entries, keys, tmp_path)
    print(f'{count} images written to {args.output} (meta_info.txt inside).')
    report_unreadable(failures)
    return 0


if __name__ == '__main__':
    sys.exit(main())
