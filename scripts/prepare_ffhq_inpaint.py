"""Prepare FFHQ inpainting pairs for TTSR (docs/methods/ffhq_inpaint.md): clean faces and references whose
box is blurred, at several sizes, split into train and test.

For every readable image under --input (any size, sub-folders included; FFHQ is 1024x1024) and every
--sizes value: the face centre-cropped to a square and resized (PIL bicubic), i.e. the ground truth,
and the same face with the box [0.5w:0.8w, 0.5h:0.8h] blurred by PIL GaussianBlur(5), i.e. the
reference (the network's input is the reference scaled down x4; FFHQInpaintDataset computes it).
The split is a seeded hash of each file name: re-runs and added files never move an image.

Output (--format folder)::

    <output>/<size>/<split>/gt/<name>.png      clean face
    <output>/<size>/<split>/ref/<name>.png     blurred box
    <output>/<size>/<split>/meta_info.txt      '<name>.png (h,w,3)' per image (BasicSR meta info)
    <output>/<size>/<split>/boxes.txt          '<name> left top right bottom' (pixels)
    <output>/prepare_ffhq_inpaint.json         the settings and counts

With --format lmdb, ``gt/`` and ``ref/`` are BasicSR LMDBs ``gt.lmdb`` and ``ref.lmdb`` (each with
its meta_info.txt). Everything is written under a temporary folder and renamed to --output when
complete. Unreadable files are listed at the end and skipped.

Train with ``dataroot_gt: <output>/160/train/gt`` (options/train_ttsr_ffhq_inpaint_160.yml) and the
same box options; the dataset rebuilds exactly these references from the clean faces.

Example::

    python scripts/prepare_ffhq_inpaint.py --input datasets/ffhq/images1024x1024 \\
        --output datasets/ffhq_inpaint --sizes 512 384 256 160 --workers 8
"""
import argparse
import json
import os
import os.path as osp
import sys

import cv2

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this checkout's ext, installed or not
from ext.data import inpaint_pairs  # noqa: E402
from ext.utils.atomic_io import atomic_folder, atomic_write_bytes, atomic_write_text  # noqa: E402
from ext.utils.image_files import (UnreadableImage, encode_image, list_images, read_image,  # noqa: E402
                                   report_unreadable)
from ext.data.lmdb_keys import lmdb_key, meta_info_line  # noqa: E402
from ext.utils.parallel import add_workers_argument, parallel_imap  # noqa: E402

SCALE = 4


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='folder of face images (searched recursively)')
    parser.add_argument('--output', required=True, help='dataset folder to create (see the layout above)')
    parser.add_argument('--sizes', type=int, nargs='+', default=list(inpaint_pairs.DEFAULT_SIZES),
                        help='square sizes to write, multiples of 4 (default: %(default)s)')
    parser.add_argument('--test_fraction', type=float, default=inpaint_pairs.DEFAULT_TEST_FRACTION,
                        help='share of the images in the test split (default: %(default)s, i.e. 90/10)')
    parser.add_argument('--split_seed', type=int, default=0, help='seed of the split hash (default: %(default)s)')
    parser.add_argument('--box_x', type=float, nargs=2, default=list(inpaint_pairs.DEFAULT_BOX_X),
                        metavar=('START', 'END'), help='horizontal box fractions (default: %(default)s)')
    parser.add_argument('--box_y', type=float, nargs=2, default=list(inpaint_pairs.DEFAULT_BOX_Y),
                        metavar=('START', 'END'), help='vertical box fractions (default: %(default)s)')
    parser.add_argument('--blur_radius', type=float, default=inpaint_pairs.DEFAULT_BLUR_RADIUS,
                        help='PIL GaussianBlur radius (default: %(default)s)')
    parser.add_argument('--blur_context', action='store_true',
                        help='blur the box together with its surroundings (default: the box on its own)')
    parser.add_argument('--random_box', action='store_true',
                        help='move the box (same size) to a position drawn per file name (reproducible)')
    parser.add_argument('--box_seed', type=int, default=0, help='seed of the random boxes (default: %(default)s)')
    parser.add_argument('--format', choices=('folder', 'lmdb'), default='folder', help='output format')
    parser.add_argument('--compress_level', type=int, default=1, choices=range(10), metavar='0-9',
                        help='PNG compression (default: %(default)s)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --output')
    add_workers_argument(parser)
    args = parser.parse_args(argv)
    bad_sizes = [s for s in args.sizes if s < SCALE or s % SCALE]
    if bad_sizes:
        parser.error(f'--sizes must be multiples of {SCALE}, got {bad_sizes}')
    if len(set(args.sizes)) != len(args.sizes):
        parser.error(f'--sizes has duplicates: {args.sizes}')
    if not 0 <= args.test_fraction <= 1:
        parser.error(f'--test_fraction must be in [0, 1], got {args.test_fraction}')
    if args.blur_radius < 0:
        parser.error(f'--blur_radius must be >= 0, got {args.blur_radius}')
    try:
        inpaint_pairs.check_box(args.box_x, args.box_y)
    except ValueError as error:
        parser.error(f'--{error}')
    return args


def make_pairs(job):
    """``(rel, [(size, gt png, ref png, box), ...], error, upscaled)`` for one input image."""
    path, rel, args = job
    try:
        image = read_image(path, cv2.IMREAD_COLOR)  # the decoder the dataset uses (OpenCV)
    except UnreadableImage as error:
        return rel, None, str(error), False
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    upscaled = min(rgb.shape[:2]) < max(args.sizes)
    position = inpaint_pairs.box_position(inpaint_pairs.box_generator(rel, args.box_seed)) if args.random_box else None
    results = []
    for size in args.sizes:
        gt = inpaint_pairs.square_resize(rgb, size)
        ref, box = inpaint_pairs.make_reference(gt, args.box_x, args.box_y, position, args.blur_radius,
                                                args.blur_context)
        encoded = [encode_image(cv2.cvtColor(x, cv2.COLOR_RGB2BGR), '.png', args.compress_level) for x in (gt, ref)]
        results.append((size, *encoded, box))
    return rel, results, None, upscaled


class FolderWriter:

    def __init__(self, folder):
        self.folder = folder

    def put(self, kind, name, png):
        atomic_write_bytes(osp.join(self.folder, kind, f'{name}.png'), png, make_dirs=True)

    def close(self, meta_lines):
        pass


class LmdbWriter:

    def __init__(self, folder, map_size):
        import lmdb
        os.makedirs(folder, exist_ok=True)
        self.folder = folder
        self.envs = {kind: lmdb.open(osp.join(folder, f'{kind}.lmdb'), map_size=map_size, meminit=False,
                                     map_async=True, mode=0o777)  # files 0666 less the umask (lmdb: 0644)
                     for kind in ('gt', 'ref')}

    def put(self, kind, key, png):
        with self.envs[kind].begin(write=True) as txn:
            txn.put(key.encode('ascii'), png)

    def close(self, meta_lines):
        for kind, env in self.envs.items():
            env.sync()
            env.close()
            atomic_write_text(osp.join(self.folder, f'{kind}.lmdb', 'meta_info.txt'),
                              ''.join(f'{line}\n' for line in meta_lines))


def output_names(rels, fmt):
    """{relative input path: output name}; refuses inputs whose names collide."""
    names, seen = {}, {}
    for rel in rels:
        name = lmdb_key(rel) if fmt == 'lmdb' else osp.splitext(rel)[0]
        if name in seen:
            raise SystemExit(f'error: {seen[name]} and {rel} would both be written as {name!r}; rename one')
        seen[name] = names[rel] = name
    return names


def main(argv=None):
    args = parse_args(argv)
    output = osp.abspath(args.output)
    if osp.exists(output) and not args.overwrite:
        raise SystemExit(f'error: {output} already exists; pass --overwrite to replace it')
    rels = list_images(args.input)
    if not rels:
        raise SystemExit(f'error: no images in {args.input}')
    names = output_names(rels, args.format)
    splits = {rel: inpaint_pairs.split_of(rel, args.test_fraction, args.split_seed) for rel in rels}

    writers, metas, boxes, failures, small = {}, {}, {}, [], []
    with atomic_folder(output) as temp:  # an existing --output is replaced only by the complete new one
        for size in args.sizes:
            for split in inpaint_pairs.SPLITS:
                folder = osp.join(temp, str(size), split)
                count = sum(1 for rel in rels if splits[rel] == split)
                if args.format == 'lmdb':
                    map_size = max(count, 1) * size * size * 3 * 4 + 64 * 2**20
                    writers[size, split] = LmdbWriter(folder, map_size)
                else:
                    writers[size, split] = FolderWriter(folder)
                metas[size, split], boxes[size, split] = [], []
        jobs = [(osp.join(args.input, rel), rel, args) for rel in rels]
        for rel, results, error, upscaled in parallel_imap(make_pairs, jobs, args.workers, desc='FFHQ inpaint pairs'):
            if error:
                failures.append(error)
                continue
            small += [rel] if upscaled else []
            split, name = splits[rel], names[rel]
            for size, gt_png, ref_png, box in results:
                writers[size, split].put('gt', name, gt_png)
                writers[size, split].put('ref', name, ref_png)
                metas[size, split].append(meta_info_line(name, (size, size, 3), args.compress_level)
                                          if args.format == 'lmdb' else f'{name}.png ({size},{size},3)')
                boxes[size, split].append(f'{name} {" ".join(str(v) for v in box)}')
        for (size, split), writer in writers.items():
            writer.close(metas[size, split])
            folder = osp.join(temp, str(size), split)
            if args.format == 'folder':
                atomic_write_text(osp.join(folder, 'meta_info.txt'), ''.join(f'{m}\n' for m in metas[size, split]),
                                  make_dirs=True)
            atomic_write_text(osp.join(folder, 'boxes.txt'), ''.join(f'{b}\n' for b in boxes[size, split]),
                              make_dirs=True)
        written = {split: len(metas[args.sizes[0], split]) for split in inpaint_pairs.SPLITS}
        if not sum(written.values()):
            raise SystemExit('error: no readable image; nothing written')
        settings = {key: getattr(args, key) for key in ('sizes', 'test_fraction', 'split_seed', 'box_x', 'box_y',
                                                         'blur_radius', 'blur_context', 'random_box', 'box_seed',
                                                         'format')}
        settings.update(input=osp.abspath(args.input), counts=written, skipped=len(failures))
        atomic_write_text(osp.join(temp, 'prepare_ffhq_inpaint.json'), json.dumps(settings, indent=2) + '\n',
                          make_dirs=True)
    print(f"{written['train']} train and {written['test']} test images at sizes {args.sizes} written to {output}.")
    if small:
        print(f'note: {len(small)} images are smaller than {max(args.sizes)} px and were upscaled (bicubic), '
              f'e.g. {small[:3]}', file=sys.stderr)
    report_unreadable(failures)
    return 0


if __name__ == '__main__':
    sys.exit(main())
