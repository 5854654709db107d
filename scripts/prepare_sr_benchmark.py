"""Prepare SR training/benchmark sets (DIV2K, BSDS500, Set5, Set14, your own): HR images cropped to a
multiple of the scale and their LR images made with MATLAB-style bicubic (BasicSR's ``imresize``, with
anti-aliasing, the degradation of the ESRGAN/EDSR benchmarks), optionally packed into LMDB.

Layouts written under ``--output`` (datasets/README.md):

- ``paired`` (default; Set5, Set14, BSDS500, merged sets): ``HR/<name>.png`` and
  ``LR_bicubic/X<scale>/<name>.png`` (same file names, ``filename_tmpl: '{}'``);
- ``div2k``: ``<prefix>_HR/<name>.png`` and ``<prefix>_LR_bicubic/X<scale>/<name>x<scale>.png`` as the
  DIV2K download (``filename_tmpl: '{}x4'``), the prefix taken from the input folder
  (``DIV2K_valid_HR`` -> ``DIV2K_valid``).

Any format OpenCV/Pillow reads is accepted (BSDS500 ships ``.jpg``); outputs are PNG. Images in
sub-folders get flat names (``a/b.png`` -> ``a_b.png``); with several ``--input`` folders each name is
prefixed by its folder's name. An LR file that already exists with the right size is kept (so the
official DIV2K LR images are used when they are there) unless ``--overwrite``. Unreadable files are
skipped and listed at the end. Every file is written atomically.

Examples::

    python scripts/prepare_sr_benchmark.py --input datasets/raw/Set5 --output datasets/Set5
    python scripts/prepare_sr_benchmark.py --input datasets/BSR/BSDS500/data/images/test --output datasets/BSDS500/test
    python scripts/prepare_sr_benchmark.py --layout div2k --input datasets/DIV2K/DIV2K_valid_HR --output datasets/DIV2K
    python scripts/prepare_sr_benchmark.py \\
        --input datasets/DIV2K/DIV2K_train_HR datasets/BSR/BSDS500/data/images/train \\
        --output datasets/DIV2K_BSDS500_train --lmdb
"""
import argparse
import os.path as osp
import sys

import cv2

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this checkout's ext, installed or not
from ext.utils.atomic_io import atomic_folder  # noqa: E402
from ext.utils.image_files import (UnreadableImage, list_images, read_image, report_unreadable,  # noqa: E402
                                   write_image)
from ext.utils.parallel import add_workers_argument, parallel_imap  # noqa: E402

# The MATLAB bicubic of the package (BasicSR's imresize) needs torch: the workers' fork server imports it
# once and every worker shares it (ext.utils.parallel)
BICUBIC_MODULE = 'ext.utils.sr_benchmark'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', nargs='+', required=True, help='HR image folder(s), searched recursively')
    parser.add_argument('--output', required=True, help='output root (see the layouts above)')
    parser.add_argument('--scale', type=int, default=4, help='down-scaling factor (default: %(default)s)')
    parser.add_argument('--layout', choices=('paired', 'div2k'), default='paired', help='output layout '
                        '(default: %(default)s)')
    parser.add_argument('--lmdb', action='store_true', help="also pack HR and LR into '<folder>.lmdb' next to "
                        "each folder (BasicSR's format; LR keys equal the HR keys, so PairedImageDataset pairs them)")
    parser.add_argument('--overwrite', action='store_true', help='rewrite outputs that already exist')
    add_workers_argument(parser)
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error(f'--scale must be >= 1, got {args.scale}')
    if args.layout == 'div2k' and len(args.input) != 1:
        parser.error('--layout div2k takes exactly one --input folder (e.g. DIV2K_train_HR)')
    for folder in args.input:
        if not osp.isdir(folder):
            parser.error(f'--input {folder!r} is not a folder')
    return args


def output_folders(args):
    if args.layout == 'div2k':
        name = osp.basename(osp.normpath(args.input[0]))
        prefix = name[:-len('_HR')] if name.endswith('_HR') else name
        return (osp.join(args.output, f'{prefix}_HR'),
                osp.join(args.output, f'{prefix}_LR_bicubic', f'X{args.scale}'), f'x{args.scale}')
    return osp.join(args.output, 'HR'), osp.join(args.output, 'LR_bicubic', f'X{args.scale}'), ''


def plan_jobs(args):
    """One job per input image: (source, HR output, LR output, scale, overwrite); names checked unique."""
    hr_dir, lr_dir, lr_suffix = output_folders(args)
    jobs, owners = [], {}
    for folder in args.input:
        prefix = f'{osp.basename(osp.normpath(folder))}_' if len(args.input) > 1 else ''
        for relative in list_images(folder):
            stem = prefix + osp.splitext(relative)[0].replace('/', '_')
            if stem in owners:
                raise SystemExit(f'error: {owners[stem]!r} and {osp.join(folder, relative)!r} would both be '
                                 f'written as {stem}.png; rename one')
            owners[stem] = osp.join(folder, relative)
            jobs.append((osp.join(folder, relative), osp.join(hr_dir, f'{stem}.png'),
                         osp.join(lr_dir, f'{stem}{lr_suffix}.png'), args.scale, args.overwrite))
    if not jobs:
        raise SystemExit(f'error: no images found in {", ".join(args.input)}')
    return hr_dir, lr_dir, jobs


def _same_file(a, b):
    return osp.exists(a) and osp.exists(b) and osp.samefile(a, b)


def _size(path):
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    return None if image is None else image.shape[:2]


def prepare_one(job):
    """Returns (hr_written, lr_written, error message or None)."""
    source, hr_path, lr_path, scale, overwrite = job
    from ext.utils.sr_benchmark import bicubic_downscale  # see BICUBIC_MODULE
    try:
        hr = read_image(source, cv2.IMREAD_COLOR)
    except UnreadableImage as error:
        return False, False, str(error)
    height, width = hr.shape[:2]
    if height < scale or width < scale:
        return False, False, f'{source}: {height}x{width} is smaller than the scale {scale}'
    cropped = hr[:height - height % scale, :width - width % scale]
    hr_written = lr_written = False
    if _same_file(source, hr_path):
        if cropped.shape != hr.shape:
            return False, False, (f'{source}: would be cropped to a multiple of {scale} in place; choose an '
                                  f'--output outside the input folder')
    elif overwrite or not osp.exists(hr_path):
        write_image(hr_path, cropped)
        hr_written = True
    wanted = (cropped.shape[0] // scale, cropped.shape[1] // scale)
    if overwrite or not osp.exists(lr_path) or _size(lr_path) != wanted:
        write_image(lr_path, bicubic_downscale(cropped, scale))
        lr_written = True
    return hr_written, lr_written, None


def write_lmdb(folder, keys_from_names, workers):
    """Pack ``folder`` into ``folder.lmdb`` with scripts/create_lmdb.py's builder, keys chosen here."""
    import create_lmdb
    output = f'{osp.normpath(folder)}.lmdb'
    names = list_images(folder, recursive=False)
    entries = [(name, osp.join(folder, name)) for name in names]
    keys = [keys_from_names(osp.splitext(name)[0]) for name in names]
    args = argparse.Namespace(compress_level=1, batch=256, workers=workers)
    with atomic_folder(output) as tmp_path:
        count, failures = create_lmdb.build(args, entries, keys, tmp_path)
    return output, count, failures


def main(argv=None):
    args = parse_args(argv)
    hr_dir, lr_dir, jobs = plan_jobs(args)
    failures, hr_count, lr_count = [], 0, 0
    for hr_written, lr_written, error in parallel_imap(prepare_one, jobs, args.workers, desc='prepare',
                                                       preload=[BICUBIC_MODULE]):
        if error:
            failures.append(error)
        hr_count += hr_written
        lr_count += lr_written
    done = len(jobs) - len(failures)
    if not done:
        report_unreadable(failures)
        raise SystemExit('error: none of the images could be prepared')
    print(f'{done} pairs in {hr_dir} and {lr_dir} ({hr_count} HR and {lr_count} LR images written, the others '
          f'were already there).')
    if args.lmdb:
        suffix = f'x{args.scale}' if args.layout == 'div2k' else ''
        for folder, key in ((hr_dir, lambda stem: stem),
                            (lr_dir, lambda stem: stem[:-len(suffix)] if suffix and stem.endswith(suffix) else stem)):
            output, count, lmdb_failures = write_lmdb(folder, key, args.workers)
            failures.extend(lmdb_failures)
            print(f'{count} images packed into {output}')
    report_unreadable(failures)
    return 0


if __name__ == '__main__':
    sys.exit(main())
