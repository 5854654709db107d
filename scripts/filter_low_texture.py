"""Split a meta-info list into textured images (kept) and one-coloured / pattern-less ones (dropped).

A material-photo A-ESRGAN project (docs/methods/aesrgan.md) trained a second model on a "reduced" set from
which one-coloured and pattern-less photos had been removed by hand. This script does it by a measured texture score
(:mod:`ext.data.texture_score`: mean Sobel gradient magnitude of a copy with a 128-pixel shortest
edge, in grey levels of a [0, 1] image) and a threshold. It writes

- the kept list (default ``<meta_info>_reduced.txt``; a meta-info file for training),
- the dropped list (default ``<meta_info>_dropped.txt``), with each score,
- a contact sheet PNG of the dropped images with their scores, highest first, so a person can see
  whether the threshold cuts into real texture (default ``<meta_info>_dropped.png``),
- optionally every score (``--scores``, tab-separated) to choose a threshold from.

The score distribution is printed. Unreadable images are left out of both lists and named.

Example::

    python scripts/filter_low_texture.py --meta_info datasets/materials/meta_info/meta_info_multiscale.txt \\
        --root datasets/materials --threshold 0.008 \\
        --kept datasets/materials/meta_info/meta_info_multiscale_reduced.txt
"""
import argparse
import math
import os
import os.path as osp
import sys

import cv2
import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this checkout's ext, installed or not
from ext.utils.atomic_io import atomic_write_bytes, atomic_write_text  # noqa: E402
from ext.utils.image_files import (UnreadableImage, encode_image, list_images, read_image,  # noqa: E402
                                   report_unreadable)
from ext.utils.parallel import add_workers_argument, parallel_map  # noqa: E402
from ext.data.texture_score import texture_score  # noqa: E402

DEFAULT_THRESHOLD = 0.008  # between a smooth ramp (0.006) and a soft photo (moon, 0.010)
THUMBNAIL = 128


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--meta_info', help='meta-info list to filter (paths relative to --root)')
    source.add_argument('--input', help='or: a folder of images (paths relative to it)')
    parser.add_argument('--root', help='data root of --meta_info (default: the folder above the list\'s folder)')
    parser.add_argument('--threshold', type=float, default=DEFAULT_THRESHOLD,
                        help='images scoring below it are dropped (default: %(default)s)')
    parser.add_argument('--score_size', type=int, default=128,
                        help='shortest edge of the copy that is scored (default: %(default)s)')
    parser.add_argument('--kept', help='output list of kept paths (default: <input>_reduced.txt)')
    parser.add_argument('--dropped', help='output list of dropped paths and scores (default: <input>_dropped.txt)')
    parser.add_argument('--contact_sheet', help='PNG of the dropped images (default: <input>_dropped.png)')
    parser.add_argument('--sheet_max', type=int, default=400, help='at most this many thumbnails (default: %(default)s)')
    parser.add_argument('--scores', help='optional tab-separated file of every path and its score')
    add_workers_argument(parser)
    args = parser.parse_args(argv)
    if args.meta_info:
        if not osp.isfile(args.meta_info):
            parser.error(f'--meta_info {args.meta_info!r} does not exist')
        args.root = args.root or osp.dirname(osp.dirname(osp.abspath(args.meta_info)))
        base = osp.splitext(args.meta_info)[0]
    else:
        args.root = args.input
        base = osp.join(osp.dirname(osp.abspath(args.input)), osp.basename(osp.normpath(args.input)))
    args.kept = args.kept or f'{base}_reduced.txt'
    args.dropped = args.dropped or f'{base}_dropped.txt'
    args.contact_sheet = args.contact_sheet or f'{base}_dropped.png'
    if args.threshold < 0:
        parser.error(f'--threshold {args.threshold} must be >= 0')
    return args


def read_list(meta_info):
    with open(meta_info, encoding='utf-8') as handle:
        return [line.strip() for line in handle if line.strip()]


def thumbnail(image, size=THUMBNAIL):
    """``size`` x ``size`` BGR uint8 thumbnail, letterboxed on grey."""
    if image.dtype != np.uint8:
        image = (image.astype(np.float32) / (65535.0 if image.dtype == np.uint16 else 1.0) * 255).clip(0, 255)
        image = image.astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = image[..., :3]
    h, w = image.shape[:2]
    factor = size / max(h, w)
    small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    canvas = np.full((size, size, 3), 96, np.uint8)
    top, left = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    canvas[top:top + small.shape[0], left:left + small.shape[1]] = small
    return canvas


def score_one(job):
    """``(score or None, thumbnail if dropped, error message)`` of one image."""
    path, threshold, score_size = job
    try:
        image = read_image(path)
    except UnreadableImage as error:
        return None, None, str(error)
    score = texture_score(image, size=score_size)
    return score, (thumbnail(image) if score < threshold else None), None


def contact_sheet(tiles, labels, columns=8, label_height=18):
    """One image of ``tiles`` in rows of ``columns``, each with its label underneath."""
    rows = math.ceil(len(tiles) / columns)
    cell_h = THUMBNAIL + label_height
    sheet = np.full((rows * cell_h, columns * THUMBNAIL, 3), 255, np.uint8)
    for index, (tile, label) in enumerate(zip(tiles, labels)):
        top, left = (index // columns) * cell_h, (index % columns) * THUMBNAIL
        sheet[top:top + THUMBNAIL, left:left + THUMBNAIL] = tile
        cv2.putText(sheet, label, (left + 3, top + THUMBNAIL + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return sheet


def main(argv=None):
    args = parse_args(argv)
    paths = read_list(args.meta_info) if args.meta_info else list_images(args.input)
    if not paths:
        raise SystemExit('error: nothing to filter: the input list is empty')
    jobs = [(osp.join(args.root, path), args.threshold, args.score_size) for path in paths]
    results = parallel_map(score_one, jobs, args.workers, desc='texture score')

    kept, dropped, failures, all_scores = [], [], [], []
    for path, (score, tile, error) in zip(paths, results):
        if error:
            failures.append(error)
            continue
        all_scores.append((path, score))
        (dropped if score < args.threshold else kept).append((path, score, tile))

    if all_scores:
        values = np.array([score for _, score in all_scores])
        percentiles = np.percentile(values, [0, 10, 25, 50, 75, 90, 100])
        print('texture score percentiles (0/10/25/50/75/90/100): ' + ' '.join(f'{v:.4f}' for v in percentiles))
    atomic_write_text(args.kept, ''.join(f'{path}\n' for path, _, _ in kept), make_dirs=True)
    dropped.sort(key=lambda entry: -entry[1])  # closest to the threshold first: those are the ones to check
    atomic_write_text(args.dropped, ''.join(f'{path}\t{score:.5f}\n' for path, score, _ in dropped), make_dirs=True)
    if args.scores:
        atomic_write_text(args.scores, ''.join(f'{path}\t{score:.5f}\n' for path, score in all_scores), make_dirs=True)
    print(f'threshold {args.threshold}: kept {len(kept)} -> {args.kept}; dropped {len(dropped)} -> {args.dropped}')
    if dropped:
        shown = dropped[:args.sheet_max]
        labels = [f'{score:.4f} {osp.basename(path)}'[:22] for path, score, _ in shown]
        sheet = contact_sheet([tile for _, _, tile in shown], labels)
        atomic_write_bytes(args.contact_sheet, encode_image(sheet, '.png'), make_dirs=True)
        more = f' (first {len(shown)} of {len(dropped)})' if len(shown) < len(dropped) else ''
        print(f'contact sheet of the dropped images{more}: {args.contact_sheet}')
    else:
        if osp.exists(args.contact_sheet):  # a sheet from an earlier run would show the wrong images
            os.remove(args.contact_sheet)
        print('no image was dropped; no contact sheet written')
    report_unreadable(failures, what='unreadable files left out of both lists')
    if not all_scores:
        raise SystemExit('error: none of the listed images could be read')
    return 0


if __name__ == '__main__':
    sys.exit(main())
