#!/usr/bin/env python
"""Make a validation set whose LQ images come from the training degradation, with a fixed seed.

For each GT image of ``--gt`` (e.g. the ``val/gt`` folder of ``make_val_pairs.py``) it writes
``<name>_degraded.png`` to ``--lq``: the GT degraded by the second-order degradation of the training
options ``--opt`` (blur kernels, resizes, noise, JPEG, final sinc; ``scale`` from the options), from a
seed derived from ``--seed`` and the file name, so every run and machine gets the same images. Validate
on it with a ``PairedImageDataset`` whose ``filename_tmpl`` is ``'{}_degraded'`` (see
``datasets.val_degraded`` in ``options/train_multiaesrgan_x4plus.yml``). GT sides must be multiples of
the scale and large enough for the degradation's kernels (>= 88 px for the upstream options at x4).

Example::

    python scripts/make_degraded_val.py --gt datasets/materials/val/gt --lq datasets/materials/val/lq_x4_degraded \\
        --opt options/train_multiaesrgan_x4plus.yml
"""
import argparse
import os.path as osp
import sys

import cv2
import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this checkout's ext, installed or not
from ext.utils.image_files import UnreadableImage, list_images, read_image, report_unreadable, write_image  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--gt', required=True, help='folder of GT images')
    parser.add_argument('--lq', required=True, help='output folder of the degraded LQ images')
    parser.add_argument('--opt', required=True, help='training option file whose degradation is used')
    parser.add_argument('--seed', type=int, default=0, help='base seed (default: %(default)s)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from tqdm import tqdm
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from ext.data.degraded_pairs import DEGRADED_SUFFIX, TrainingDegradation
    from ext.errors import OptionError
    from ext.utils.option_file import read_option_file
    try:
        opt = read_option_file(args.opt)
        degrade = TrainingDegradation(opt, args.seed)
    except (OptionError, KeyError, ValueError) as error:
        raise SystemExit(f'error: {args.opt}: {error}')
    inputs = list_images(args.gt)
    if not inputs:
        raise SystemExit(f'error: no images found under {args.gt!r}')
    failures = []
    for relative in tqdm(inputs, desc='degraded val', unit='img'):
        path = osp.join(args.gt, relative)
        try:
            bgr = read_image(path, cv2.IMREAD_COLOR)
            name = osp.splitext(relative)[0]
            lq = degrade.uint8(bgr[..., ::-1], name)
        except (UnreadableImage, ValueError) as error:
            failures.append(f'{path}: {error}' if not str(error).startswith(path) else str(error))
            continue
        write_image(osp.join(args.lq, f'{name}{DEGRADED_SUFFIX}.png'), np.ascontiguousarray(lq[..., ::-1]))
    print(f'{len(inputs) - len(failures)} degraded LQ images written to {args.lq} (seed {args.seed}, {args.opt})')
    report_unreadable(failures, what='images skipped')
    return 1 if failures and len(failures) == len(inputs) else 0


if __name__ == '__main__':
    sys.exit(main())
