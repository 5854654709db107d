#!/usr/bin/env python
"""Tile seams: tiled against untiled output of one network, for tile sizes and paddings, side by side.

For each (tile, tile_pad) it prints the largest and mean absolute difference in gray levels (8-bit output)
from the untiled run and the time, with ``auto`` = the padding :func:`measure_tile_pad` measures on the
network (its probe time is printed too). Without --model_path the network is a randomly initialised RRDBNet
of the x4plus shape (64 features, 23 blocks): random RRDBNets barely reach beyond a few pixels, so pass the
released weights (e.g. RealESRGAN_x4plus.pth converted from the ncnn package) for the numbers that matter.

  python benchmarks/bench_tile_seams.py --model_path RealESRGAN_x4plus.pth --tiles 64 128 --pads 10 auto
"""
import argparse
import os.path as osp
import sys
import time

import numpy as np

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model_path', help='checkpoint (any inference source); default: random x4plus RRDBNet')
    parser.add_argument('--image', default='astronaut', help='scikit-image sample name (default: %(default)s)')
    parser.add_argument('--size', type=int, nargs=2, default=(128, 150), metavar=('H', 'W'),
                        help='crop of the image, input pixels (default: 128 150)')
    parser.add_argument('--tiles', type=int, nargs='+', default=[64, 96])
    parser.add_argument('--pads', nargs='+', default=['10', 'auto'])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()

    import skimage.data
    import torch

    import ext  # noqa: F401
    from ext.inference import load_upscaler
    from ext.inference.tile_pad import measure_tile_pad
    from ext.inference.tiling import TiledUpscaler
    torch.set_num_threads(args.threads)
    if args.model_path:
        upscaler = load_upscaler(args.model_path, device=args.device)
        net, scale, what = upscaler.net, upscaler.scale, upscaler.description
    else:
        from basicsr.archs.rrdbnet_arch import RRDBNet
        torch.manual_seed(0)
        net, scale = RRDBNet(3, 3, num_feat=64, num_block=23, num_grow_ch=32, scale=4).eval().to(args.device), 4
        what = 'random RRDBNet x4plus shape'
    image = getattr(skimage.data, args.image)()
    image = np.ascontiguousarray(image[100:100 + args.size[0], 150:150 + args.size[1], :3])
    start = time.time()
    reference = TiledUpscaler(net, scale, tile=0, device=args.device).upscale(image)
    print(f'{what}; {args.image} {args.size[0]}x{args.size[1]}; untiled {time.time() - start:.1f}s', flush=True)
    start = time.time()
    auto_pad = measure_tile_pad(net, scale, device=args.device) if 'auto' in args.pads else None
    if auto_pad is not None:
        print(f'measured tile_pad: {auto_pad} ({time.time() - start:.1f}s)', flush=True)
    print('| tile | tile_pad | max diff | mean diff | time |\n| --- | --- | --- | --- | --- |')
    for tile in args.tiles:
        for pad in args.pads:
            value = auto_pad if pad == 'auto' else int(pad)
            start = time.time()
            out = TiledUpscaler(net, scale, tile=tile, tile_pad=value, device=args.device).upscale(image)
            seconds = time.time() - start
            diff = np.abs(out.astype(int) - reference.astype(int))
            label = f'{value} (auto)' if pad == 'auto' else str(value)
            print(f'| {tile} | {label} | {diff.max()} | {diff.mean():.3f} | {seconds:.1f}s |', flush=True)


if __name__ == '__main__':
    main()
