"""Make validation pairs: GT images cropped to a multiple of the scale and their bicubic downscales.

For each image of ``--input`` it writes the GT (centre-cropped to at most ``--max_size`` pixels
per side and to a multiple of ``--scale``) to ``--gt`` and its bicubic x``scale`` downscale
(Pillow BICUBIC, anti-aliased like MATLAB's ``imresize``) under the same name to ``--lq``: the
layout BasicSR's ``PairedImageDataset`` validates on. Unreadable inputs are named and skipped.

Example (the material layout)::

    python scripts/make_val_pairs.py --input datasets/materials/val_photos \\
        --gt datasets/materials/val/gt --lq datasets/materials/val/lq_x4 --scale 4
"""
import argparse
import io
import os.path as osp
import sys

from PIL import Image

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this checkout's ext, installed or not
from ext.utils.atomic_io import atomic_write_bytes  # noqa: E402
from ext.utils.image_files import UnreadableImage, list_images, open_pil, report_unreadable  # noqa: E402
from ext.utils.parallel import add_workers_argument, parallel_map  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='folder of high-resolution images')
    parser.add_argument('--gt', required=True, help='output folder of the GT images')
    parser.add_argument('--lq', required=True, help='output folder of the low-resolution images')
    parser.add_argument('--scale', type=int, default=4, help='downscale factor (default: %(default)s)')
    parser.add_argument('--max_size', type=int, default=0,
                        help='centre-crop the GT to at most this many pixels per side; 0 keeps it whole (default)')
    add_workers_argument(parser)
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error(f'--scale {args.scale} must be >= 1')
    if args.max_size and args.max_size < args.scale:
        parser.error(f'--max_size {args.max_size} must be 0 or >= --scale')
    return args


def _save_png(image, path):
    buffer = io.BytesIO()
    image.save(buffer, format='PNG')
    atomic_write_bytes(path, buffer.getvalue(), make_dirs=True)


def make_pair(job):
    relative, input_root, gt_root, lq_root, scale, max_size = job
    try:
        image = open_pil(osp.join(input_root, relative))
    except UnreadableImage as error:
        return str(error)
    image = image.convert('RGB')
    width, height = image.size
    if max_size:
        width, height = min(width, max_size), min(height, max_size)
    width, height = width - width % scale, height - height % scale
    if width < scale or height < scale:
        return f'{osp.join(input_root, relative)}: {image.size[0]}x{image.size[1]} is smaller than the scale {scale}'
    left, top = (image.size[0] - width) // 2, (image.size[1] - height) // 2
    gt = image.crop((left, top, left + width, top + height))
    name = osp.splitext(relative)[0] + '.png'
    _save_png(gt, osp.join(gt_root, name))
    _save_png(gt.resize((width // scale, height // scale), resample=Image.BICUBIC), osp.join(lq_root, name))
    return None


def main(argv=None):
    args = parse_args(argv)
    inputs = list_images(args.input)
    if not inputs:
        raise SystemExit(f'error: no images found under {args.input!r}')
    jobs = [(relative, args.input, args.gt, args.lq, args.scale, args.max_size) for relative in inputs]
    failures = [message for message in parallel_map(make_pair, jobs, args.workers, desc='val pairs') if message]
    print(f'{len(inputs) - len(failures)} pairs written to {args.gt} and {args.lq}.')
    report_unreadable(failures, what='images skipped')
    return 0


if __name__ == '__main__':
    sys.exit(main())
