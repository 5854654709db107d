"""Write a meta-info list: one image path per line, relative to a data root (Real-ESRGAN's format).

``RealESRGANDataset`` / ``MaterialMultiscaleDataset`` read it with ``dataroot_gt`` set to the root,
and ``scripts/create_lmdb.py --meta_info`` packs exactly these files.

Example (the material layout)::

    python scripts/generate_meta_info.py --input datasets/materials/HR datasets/materials/multiscale \\
        --root datasets/materials --meta_info datasets/materials/meta_info/meta_info_multiscale.txt --check

``--root`` takes one folder for all inputs or one per input (default: each input's parent folder).
``--check`` opens every image in parallel; unreadable ones are left out of the list and named.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this checkout's ext, installed or not
from ext.utils.atomic_io import atomic_write_text  # noqa: E402
from ext.utils.image_files import UnreadableImage, list_images, read_image, report_unreadable  # noqa: E402
from ext.utils.parallel import add_workers_argument, parallel_map  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', nargs='+', required=True, help='image folder(s), searched recursively')
    parser.add_argument('--root', nargs='+', default=None,
                        help='folder(s) the listed paths are relative to: one for all inputs or one per input '
                             '(default: the parent folder of each input)')
    parser.add_argument('--meta_info', required=True, help='output text file')
    parser.add_argument('--check', action='store_true', help='open every image; leave out and report unreadable ones')
    add_workers_argument(parser)
    args = parser.parse_args(argv)
    if args.root is None:
        args.root = [osp.dirname(osp.abspath(folder)) for folder in args.input]
    elif len(args.root) == 1:
        args.root = args.root * len(args.input)
    elif len(args.root) != len(args.input):
        parser.error(f'--root: got {len(args.root)} folders for {len(args.input)} inputs; give one, or one per input')
    for folder, root in zip(args.input, args.root):
        relative = osp.relpath(osp.abspath(folder), osp.abspath(root))
        if relative.startswith('..'):
            parser.error(f'--input {folder!r} is not inside its --root {root!r}')
    return args


def check_one(path):
    """None if ``path`` decodes as an image, else the error message."""
    try:
        read_image(path)
    except UnreadableImage as error:
        return str(error)
    return None


def main(argv=None):
    args = parse_args(argv)
    entries = []  # (line, absolute path)
    for folder, root in zip(args.input, args.root):
        prefix = osp.relpath(osp.abspath(folder), osp.abspath(root)).replace('\\', '/')
        images = list_images(folder)
        if not images:
            print(f'warning: no images under {folder}', file=sys.stderr)
        for relative in images:
            line = relative if prefix == '.' else f'{prefix}/{relative}'
            entries.append((line, osp.join(folder, relative)))
    entries = sorted(set(entries))
    failures = []
    if args.check:
        errors = parallel_map(check_one, [path for _, path in entries], args.workers, desc='check')
        failures = [error for error in errors if error]
        entries = [entry for entry, error in zip(entries, errors) if not error]
    if not entries:
        raise SystemExit('error: no readable images found; the meta info file was not written')
    atomic_write_text(args.meta_info, ''.join(f'{line}\n' for line, _ in entries), make_dirs=True)
    print(f'{len(entries)} paths written to {args.meta_info}.')
    report_unreadable(failures, what='unreadable files left out')
    return 0


if __name__ == '__main__':
    sys.exit(main())
