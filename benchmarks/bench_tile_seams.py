#!/usr/bin/env python
"""Tile seams: tiled against untiled output of one network, for photos, tile sizes and paddings, side by side.

For each photo (scikit-image samples of different kinds, reduced by ``--reduce``; ``--crop H W`` takes the
top-left part), each tile and each padding it reports the largest and mean absolute difference in gray levels
(8-bit output) from the untiled run, the same with each ``--color_fix`` mode applied to both, the time, and the
input pixels the network ran on (the windows, context included) per pixel of the image: the cost of the padding
without the noise of a shared machine. Paddings:

* a number;
* ``auto``: what ``--tile_pad auto`` takes (:func:`ext.inference.tile_pad.auto_tile_pad`, measured once);
* ``probe1``: the padding ``auto`` took before, one astronaut strip cut on one side to half a gray level
  (:func:`ext.inference.tile_pad.measure_tile_pad` with its defaults).

It also prints, for a large image (``--cost_size``), the window pixels per image pixel of each tile and padding:
the time ratio of the paddings for a convolutional network. Without --model_path the network is a randomly
initialised RRDBNet of the x4plus shape, which barely reaches beyond a few pixels: pass the released weights
(``scripts/convert_ncnn_checkpoint.py --released RealESRGAN_x4plus``) for the numbers that matter.

  python benchmarks/bench_tile_seams.py --model_path RealESRGAN_x4plus.pth --tiles 64 128 --pads probe1 auto \\
      --json benchmarks/results/tile_seams_x4plus.json
"""
import argparse
import json
import os.path as osp
import sys
import time

import numpy as np

from photo_samples import add_photo_arguments, reduced_photo

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'camera')
FIX_MODES = ('wavelet', 'adain')


def photo_input(name, reduce, crop=None):
    """The scikit-image sample as RGB, reduced by ``reduce`` (area), optionally its top-left ``crop`` (H, W)."""
    image = reduced_photo(name, reduce, gray_as_rgb=True)[1]
    return np.ascontiguousarray(image[:crop[0], :crop[1]] if crop else image)


def window_pixels(height, width, tile, tile_pad, size_multiple=1):
    """Input pixels the network runs on to tile a ``height`` x ``width`` image, per image pixel."""
    from ext.inference.tiling import plan_tiles
    _, _, tiles = plan_tiles(height, width, tile, tile_pad, size_multiple=size_multiple)
    return sum((bottom - top) * (right - left) for _, (top, bottom, left, right) in tiles) / (height * width)


def pad_label(label, value):
    return str(value) if str(value) == label else f'{value} ({label})'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model_path', help='checkpoint (any inference source); default: random x4plus RRDBNet')
    add_photo_arguments(parser, PHOTOS)
    parser.add_argument('--crop', type=int, nargs=2, metavar=('H', 'W'), help='top-left crop of the reduced photo')
    parser.add_argument('--tiles', type=int, nargs='+', default=[64, 128])
    parser.add_argument('--pads', nargs='+', default=['probe1', 'auto'], help='numbers, auto, probe1')
    parser.add_argument('--cost_size', type=int, default=1024, help='image side of the cost table (input px)')
    args = parser.parse_args()

    import torch

    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from ext.inference import load_upscaler
    from ext.inference.tile_pad import auto_tile_pad, measure_tile_pad
    from ext.inference.tiling import TiledUpscaler
    from ext.utils.atomic_io import atomic_write_text
    from ext.utils.color_fix import fix_image_colors
    torch.set_num_threads(args.threads)
    if args.model_path:
        upscaler = load_upscaler(args.model_path, device=args.device)
        net, scale, what = upscaler.net, upscaler.scale, upscaler.description
    else:
        from basicsr.archs.rrdbnet_arch import RRDBNet
        torch.manual_seed(0)
        net, scale = RRDBNet(3, 3, num_feat=64, num_block=23, num_grow_ch=32, scale=4).eval().to(args.device), 4
        what = 'random RRDBNet x4plus shape'
    measurers = {'auto': auto_tile_pad, 'probe1': measure_tile_pad}
    pads = {}
    for label in args.pads:
        if label in measurers:
            start = time.time()
            value = measurers[label](net, scale, device=args.device)
            pads[label] = {'tile_pad': value, 'probe_seconds': round(time.time() - start, 1)}
            print(f'{label}: tile_pad {value} (probe {time.time() - start:.0f}s)', flush=True)
        else:
            pads[label] = {'tile_pad': int(label)}
    from ext.utils import run_record
    results = {'model': what, 'device': args.device, 'threads': args.threads, 'torch': torch.__version__,
               'reduce': args.reduce, 'crop': args.crop, 'pads': pads, 'photos': {},
               # machine (CPU model, cores, threads, load), date, command, commit, budget: for the docs' tables
               **run_record.record(REPO_ROOT, args.threads, f'tiles {args.tiles}, pads {args.pads}')}
    print(f'{what}\n| photo | size | tile | tile_pad | max diff | mean diff | max diff with color fix | time '
          '| window px per px |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |', flush=True)
    for name in args.photos:
        image = photo_input(name, args.reduce, args.crop)
        height, width = image.shape[:2]
        start = time.time()
        reference = TiledUpscaler(net, scale, tile=0, device=args.device).upscale(image)
        fixed_references = {mode: fix_image_colors(reference, image, mode).astype(int) for mode in FIX_MODES}
        reference = reference.astype(int)
        row = {'size': [height, width], 'untiled_seconds': round(time.time() - start, 1), 'runs': []}
        print(f'| {name} | {height}x{width} | untiled | | | | | {row["untiled_seconds"]:.0f}s | 1 |', flush=True)
        for tile in args.tiles:
            if tile >= max(height, width):
                continue  # one tile: untiled
            for label, pad in pads.items():
                value = pad['tile_pad']
                start = time.time()
                out = TiledUpscaler(net, scale, tile=tile, tile_pad=value, device=args.device).upscale(image)
                seconds = time.time() - start
                diff = np.abs(out.astype(int) - reference)
                run = {'tile': tile, 'pad': label, 'tile_pad': value, 'max_diff': int(diff.max()),
                       'mean_diff': round(float(diff.mean()), 4), 'seconds': round(seconds, 1),
                       'window_pixels_per_pixel': round(window_pixels(height, width, tile, value), 3),
                       'max_diff_with_color_fix': {mode: int(np.abs(fix_image_colors(out, image, mode) - fixed).max())
                                                   for mode, fixed in fixed_references.items()}}
                row['runs'].append(run)
                fixes = ', '.join(f'{mode} {diff}' for mode, diff in run['max_diff_with_color_fix'].items())
                print(f"| {name} | {height}x{width} | {tile} | {pad_label(label, value)} | {run['max_diff']} | "
                      f"{run['mean_diff']:.3f} | {fixes} | {seconds:.0f}s | {run['window_pixels_per_pixel']:.2f} |",
                      flush=True)
        results['photos'][name] = row
        if args.json:
            atomic_write_text(args.json, json.dumps(results, indent=2) + '\n')
    side = args.cost_size
    cost = {str(tile): {label: round(window_pixels(side, side, tile, pad['tile_pad']), 3)
                        for label, pad in pads.items()} for tile in sorted(set(args.tiles) | {256, 512})}
    results['window_pixels_per_pixel_at_cost_size'] = {'size': side, 'by_tile': cost}
    print(f'\nwindow pixels per image pixel, {side}x{side} input:\n| tile | '
          + ' | '.join(pad_label(label, pad['tile_pad']) for label, pad in pads.items()) + ' |')
    for tile, by_pad in cost.items():
        print(f'| {tile} | ' + ' | '.join(f'{value:.2f}' for value in by_pad.values()) + ' |')
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2) + '\n')


if __name__ == '__main__':
    main()
