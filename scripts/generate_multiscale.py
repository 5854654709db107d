"""Downscale every image of a folder to several scales: more ground-truth sizes for Real-ESRGAN-style training.

Default behaviour is Real-ESRGAN's / A-ESRGAN's ``generate_multiscale_DF2K.py``: for ``name.ext`` it
writes ``nameT0.png``, ``nameT1.png``, ``nameT2.png`` at scales 0.75, 0.5 and 1/3 (``int(w * s)``,
Pillow LANCZOS) and ``nameT3.png`` with the shortest edge resized to 400 pixels, keeping the aspect
ratio (this one enlarges smaller images, as upstream does). Sub-folders are mirrored. Unlike
upstream, any image format Pillow reads is accepted (EXIF rotation applied), work runs in
parallel, every output is written atomically, and unreadable inputs are listed at the end and
skipped.

Example::

    python scripts/generate_multiscale.py --input datasets/materials/HR --output datasets/materials/multiscale
"""
import argparse
import io
import os
import os.path as osp
import sys

from PIL import Image

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import (UnreadableImage, add_workers_argument, atomic_write_bytes, list_images, open_pil,  # noqa: E402
                     parallel_map, report_unreadable)

DEFAULT_SCALES = (0.75, 0.5, 1 / 3)
DEFAULT_SHORTEST_EDGE = 400


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='folder of original images (searched recursively)')
    parser.add_argument('--output', required=True, help='folder for the downscaled copies')
    parser.add_argument('--scales', type=float, nargs='*', default=list(DEFAULT_SCALES),
                        help='scale factors in (0, 1], one output T<i> each (default: 0.75 0.5 0.3333)')
    parser.add_argument('--shortest_edge', type=int, default=DEFAULT_SHORTEST_EDGE,
                        help='also write a copy whose shortest edge has this many pixels, suffix '
                             'T<len(scales)>; 0 disables it (default: %(default)s)')
    parser.add_argument('--ext', default='png', choices=['png', 'jpg', 'webp'],
                        help='output format (default: png, as upstream; png is lossless)')
    add_workers_argument(parser)
    args = parser.parse_args(argv)
    for scale in args.scales:
        if not 0 < scale <= 1:
            parser.error(f'--scales: {scale} is not in (0, 1]')
    if args.shortest_edge < 0:
        parser.error(f'--shortest_edge: {args.shortest_edge} must be >= 0')
    if not args.scales and not args.shortest_edge:
        parser.error('nothing to do: give --scales or a --shortest_edge > 0')
    if osp.abspath(args.input) == osp.abspath(args.output):
        parser.error('--output must differ from --input (the copies would be picked up as inputs next time)')
    return args


def target_sizes(width, height, scales, shortest_edge):
    """``[(suffix, (w, h)), ...]`` as upstream computes them."""
    sizes = [(f'T{index}', (int(width * scale), int(height * scale))) for index, scale in enumerate(scales)]
    if shortest_edge:
        if width < height:
            size = (shortest_edge, int(shortest_edge * height / width))
        else:
            size = (int(shortest_edge * width / height), shortest_edge)
        sizes.append((f'T{len(scales)}', size))
    return sizes


def _pil_mode_for_output(image):
    if image.mode in ('RGB', 'RGBA', 'L'):
        return image
    has_alpha = 'A' in image.getbands() or 'transparency' in image.info
    return image.convert('RGBA' if has_alpha else 'RGB')


def process_one(job):
    """Write the copies of one image; returns ``(relative_path, written_count, error_message)``."""
    relative, input_root, output_root, scales, shortest_edge, ext = job
    try:
        image = _pil_mode_for_output(open_pil(osp.join(input_root, relative)))
    except UnreadableImage as error:
        return relative, 0, str(error)
    stem = osp.splitext(relative)[0]
    written = 0
    for suffix, (width, height) in target_sizes(image.width, image.height, scales, shortest_edge):
        if width < 1 or height < 1:
            continue  # a tiny input at a small scale has no pixels left
        resized = image.resize((width, height), resample=Image.LANCZOS)
        if ext in ('jpg', 'webp') and resized.mode == 'RGBA':
            resized = resized.convert('RGB')
        buffer = io.BytesIO()
        resized.save(buffer, format={'png': 'PNG', 'jpg': 'JPEG', 'webp': 'WEBP'}[ext],
                     **({'quality': 95} if ext != 'png' else {}))
        atomic_write_bytes(osp.join(output_root, f'{stem}{suffix}.{ext}'), buffer.getvalue())
        written += 1
    return relative, written, None


def main(argv=None):
    args = parse_args(argv)
    inputs = list_images(args.input)
    if not inputs:
        raise SystemExit(f'error: no images found under {args.input!r}')
    os.makedirs(args.output, exist_ok=True)
    jobs = [(relative, args.input, args.output, tuple(args.scales), args.shortest_edge, args.ext)
            for relative in inputs]
    results = parallel_map(process_one, jobs, args.workers, desc='multiscale')
    failures = [error for _, _, error in results if error]
    written = sum(count for _, count, _ in results)
    print(f'{written} images written to {args.output} from {len(inputs) - len(failures)} inputs.')
    report_unreadable(failures)
    if len(failures) == len(inputs):
        raise SystemExit('error: none of the inputs could be read')
    return 0


if __name__ == '__main__':
    sys.exit(main())
