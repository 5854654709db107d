"""Cut large images into overlapping sub-images (faster random access for training, as in BasicSR).

Windows of ``--crop_size`` pixels start every ``--step`` pixels; a last window flush with the
right/bottom edge is added when the remainder exceeds ``--thresh_size`` (BasicSR's rule). Sub-image
``i`` of ``name.ext`` is written as ``name_s{i:03d}.ext`` (sub-folders mirrored). Images smaller
than one window are listed and skipped, as are unreadable files. Outputs are written atomically
by parallel workers; a non-empty output folder is refused unless ``--overwrite``.

Example (BasicSR's DIV2K HR setting)::

    python scripts/extract_subimages.py --input datasets/DIV2K/DIV2K_train_HR \\
        --output datasets/DIV2K/DIV2K_train_HR_sub --crop_size 480 --step 240 --thresh_size 0
"""
import argparse
import os
import os.path as osp
import re
import sys

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this checkout's ext, installed or not
from ext.utils.image_files import (UnreadableImage, list_images, read_image, report_unreadable,  # noqa: E402
                                   write_image)
from ext.utils.parallel import add_workers_argument, parallel_map  # noqa: E402

SCALE_SUFFIX = re.compile(r'x[2348]$')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='folder of images (searched recursively)')
    parser.add_argument('--output', required=True, help='folder for the sub-images')
    parser.add_argument('--crop_size', type=int, default=480, help='sub-image size in pixels (default: %(default)s)')
    parser.add_argument('--step', type=int, default=240, help='stride between windows (default: %(default)s)')
    parser.add_argument('--thresh_size', type=int, default=0,
                        help='add an edge-aligned last window when more than this many pixels remain '
                             '(default: %(default)s)')
    parser.add_argument('--compression_level', type=int, default=3, choices=range(10), metavar='0-9',
                        help='PNG compression level (default: %(default)s)')
    parser.add_argument('--strip_scale_suffix', action='store_true',
                        help="drop a trailing x2/x3/x4/x8 from names (DIV2K LR files: 0001x4.png -> 0001_s001.png)")
    parser.add_argument('--overwrite', action='store_true', help='write into a non-empty output folder')
    add_workers_argument(parser)
    args = parser.parse_args(argv)
    if args.crop_size < 1 or args.step < 1 or args.thresh_size < 0:
        parser.error('--crop_size and --step must be >= 1 and --thresh_size >= 0 '
                     f'(got {args.crop_size}, {args.step}, {args.thresh_size})')
    if osp.isdir(args.output) and os.listdir(args.output) and not args.overwrite:
        parser.error(f'--output {args.output!r} is not empty; pass --overwrite to write into it')
    return args


def window_starts(length, crop_size, step, thresh_size):
    """Top (or left) coordinates of the windows along one axis; empty if ``length < crop_size``."""
    if length < crop_size:
        return []
    starts = list(range(0, length - crop_size + 1, step))
    if length - (starts[-1] + crop_size) > thresh_size:
        starts.append(length - crop_size)
    return starts


def crop_one(job):
    """``(written count, message or None)`` for one image."""
    relative, input_root, output_root, crop_size, step, thresh_size, level, strip = job
    path = osp.join(input_root, relative)
    try:
        image = read_image(path)
    except UnreadableImage as error:
        return 0, str(error)
    h, w = image.shape[:2]
    tops, lefts = window_starts(h, crop_size, step, thresh_size), window_starts(w, crop_size, step, thresh_size)
    if not tops or not lefts:
        return 0, f'{path}: {w}x{h} is smaller than --crop_size {crop_size}'
    stem, extension = osp.splitext(relative)
    if extension.lower() in ('.gif', '.pgm', '.ppm', '.pnm'):
        extension = '.png'  # OpenCV cannot (or should not) write these
    if strip:
        stem = osp.join(osp.dirname(stem), SCALE_SUFFIX.sub('', osp.basename(stem)))
    index = 0
    for top in tops:
        for left in lefts:
            index += 1
            crop = np.ascontiguousarray(image[top:top + crop_size, left:left + crop_size])
            write_image(osp.join(output_root, f'{stem}_s{index:03d}{extension}'), crop,
                        png_compression=level)
    return index, None


def main(argv=None):
    args = parse_args(argv)
    inputs = list_images(args.input)
    if not inputs:
        raise SystemExit(f'error: no images found under {args.input!r}')
    jobs = [(relative, args.input, args.output, args.crop_size, args.step, args.thresh_size, args.compression_level,
             args.strip_scale_suffix) for relative in inputs]
    results = parallel_map(crop_one, jobs, args.workers, desc='extract')
    skipped = [message for _, message in results if message]
    print(f'{sum(count for count, _ in results)} sub-images written to {args.output}.')
    report_unreadable(skipped, what='images skipped (unreadable or smaller than one window)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
