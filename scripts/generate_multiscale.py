"""Downscale every image of a folder to several scales: more ground-truth sizes for Real-ESRGAN-style training.

Default behaviour is Real-ESRGAN's / A-ESRGAN's ``generate_multiscale_DF2K.py``: for ``name.ext`` it
writes ``nameT0.png``, ``nameT1.png``, ``nameT2.png`` at scales 0.75, 0.5 and 1/3 (``int(w * s)``,
Pillow LANCZOS) and ``nameT3.png`` with the shortest edge resized to 400 pixels, keeping the aspect
ratio. Sub-folders are mirrored. Unlike upstream, no copy is ever larger than its original
(upstream enlarges images whose shortest edge is below 400, giving blurry ground truth): such a
copy is skipped unless ``--allow_upscale``, and a copy the size of its original is that original's
pixels, kept as-is; both are listed at the end. Also unlike upstream, any image format Pillow reads
is accepted (EXIF rotation applied), work runs in parallel, every output is written atomically, and
unreadable inputs are listed at the end and skipped.

Example::

    python scripts/generate_multiscale.py --input datasets/materials/HR --output datasets/materials/multiscale
"""
import argparse
import io
import os
import os.path as osp
import sys

from PIL import Image

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this checkout's ext, installed or not
from ext.utils.atomic_io import atomic_write_bytes  # noqa: E402
from ext.utils.image_files import UnreadableImage, list_images, open_pil, report_unreadable  # noqa: E402
from ext.utils.parallel import add_workers_argument, parallel_map  # noqa: E402

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
    parser.add_argument('--allow_upscale', action='store_true',
                        help='write --shortest_edge copies larger than their original (upstream behaviour; '
                             'default: skip them)')
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
    """Write the copies of one image; returns ``(relative_path, written_count, error_message, notes)`` with
    ``notes`` = ``[(kind, message)]`` for copies skipped (``'skipped'``) or kept at the original size
    (``'kept'``)."""
    relative, input_root, output_root, scales, shortest_edge, ext, allow_upscale = job
    try:
        image = _pil_mode_for_output(open_pil(osp.join(input_root, relative)))
    except UnreadableImage as error:
        return relative, 0, str(error), []
    stem = osp.splitext(relative)[0]
    written, notes = 0, []
    for suffix, (width, height) in target_sizes(image.width, image.height, scales, shortest_edge):
        original = f'{image.width}x{image.height}'
        if width < 1 or height < 1:
            notes.append(('skipped', f'{relative} {suffix}: {width}x{height} leaves no pixels of the '
                                     f'{original} original'))
            continue
        if (width > image.width or height > image.height) and not allow_upscale:
            notes.append(('skipped', f'{relative} {suffix}: {width}x{height} would enlarge the {original} original'))
            continue
        if (width, height) == image.size:
            notes.append(('kept', f'{relative} {suffix}: the {original} original, unchanged'))
        resized = image.resize((width, height), resample=Image.LANCZOS)  # Pillow copies at the same size
        if ext in ('jpg', 'webp') and resized.mode == 'RGBA':
            resized = resized.convert('RGB')
        buffer = io.BytesIO()
        resized.save(buffer, format={'png': 'PNG', 'jpg': 'JPEG', 'webp': 'WEBP'}[ext],
                     **({'quality': 95} if ext != 'png' else {}))
        atomic_write_bytes(osp.join(output_root, f'{stem}{suffix}.{ext}'), buffer.getvalue(), make_dirs=True)
        written += 1
    return relative, written, None, notes


def report_notes(notes, stream=None, limit=20):
    """List the skipped and the kept-as-is copies (the first ``limit`` of each) with a count."""
    stream = stream or sys.stderr
    for kind, what in (('skipped', 'copies skipped (pass --allow_upscale to enlarge small originals, as upstream)'),
                       ('kept', 'copies kept as-is (the same size as their original)')):
        messages = [message for each_kind, message in notes if each_kind == kind]
        if messages:
            print(f'{len(messages)} {what}:', file=stream)
            for message in messages[:limit]:
                print(f'  {message}', file=stream)
            if len(messages) > limit:
                print(f'  ... and {len(messages) - limit} more', file=stream)


def main(argv=None):
    args = parse_args(argv)
    inputs = list_images(args.input)
    if not inputs:
        raise SystemExit(f'error: no images found under {args.input!r}')
    os.makedirs(args.output, exist_ok=True)
    jobs = [(relative, args.input, args.output, tuple(args.scales), args.shortest_edge, args.ext, args.allow_upscale)
            for relative in inputs]
    results = parallel_map(process_one, jobs, args.workers, desc='multiscale')
    failures = [error for _, _, error, _ in results if error]
    written = sum(count for _, count, _, _ in results)
    print(f'{written} images written to {args.output} from {len(inputs) - len(failures)} inputs.')
    report_notes([note for _, _, _, notes in results for note in notes])
    report_unreadable(failures)
    if len(failures) == len(inputs):
        raise SystemExit('error: none of the inputs could be read')
    return 0


if __name__ == '__main__':
    sys.exit(main())
