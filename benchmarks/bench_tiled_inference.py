#!/usr/bin/env python
"""Peak memory and throughput of tiled inference (ext/inference/tiling.py), tiled vs untiled.

Each (size, mode) runs in a fresh subprocess so that peaks do not mix. Reported per run:
  * peak RSS of the process, and the part of it that inference added on top of the imported package, the
    loaded network and the input ("added"); the host output array (the upscaled image, unavoidable) is listed apart, so
    "overhead" = added - output is what the tiling engine itself costs;
  * on CUDA, the peak memory allocated on the device.
With tiling, overhead and device peak should stay flat from 512^2 to 2048^2 while the image area grows
16x; untiled they grow with the area. Throughput compares tiled and untiled on the same image, timed
alternately in one process (best of --repeats).

  python benchmarks/bench_tiled_inference.py                    # CPU, 512/1024/2048, tile 256
  python benchmarks/bench_tiled_inference.py --device cuda --num_feat 64 --num_conv 16
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, REPO_ROOT)


def compact_net(num_feat, num_conv, scale):
    """A Real-ESRGAN-compact-like network (SRVGGNetCompact layout): convs + PReLU + pixel shuffle + skip."""
    import torch
    from torch import nn

    class Compact(nn.Module):
        def __init__(self):
            super().__init__()
            layers = [nn.Conv2d(3, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
            for _ in range(num_conv):
                layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
            layers += [nn.Conv2d(num_feat, 3 * scale * scale, 3, 1, 1), nn.PixelShuffle(scale)]
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            return self.body(x) + nn.functional.interpolate(x, scale_factor=scale, mode='nearest')

    torch.manual_seed(0)
    return Compact().eval()


def current_rss_mb():
    with open('/proc/self/statm') as handle:
        return int(handle.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def make_image(size):
    import numpy as np
    rng = np.random.default_rng(0)
    # smooth-ish content (values do not change the cost, but keep it image-like)
    small = rng.integers(0, 256, (size // 8 + 1, size // 8 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(small, 8, 0), 8, 1)[:size, :size])


def child(args):
    import torch

    from ext.inference.tiling import TiledUpscaler
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net = compact_net(args.num_feat, args.num_conv, args.scale).to(device)
    image = make_image(args.size)
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    baseline = current_rss_mb()  # after the imports: "added" is what the inference itself takes
    upscaler = TiledUpscaler(net, args.scale, tile=args.tile, tile_pad=args.tile_pad, device=device)
    start = time.perf_counter()
    output = upscaler.upscale(image)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        'size': args.size, 'tile': args.tile, 'seconds': seconds,
        'peak_rss_mb': peak_rss_mb(), 'added_mb': peak_rss_mb() - baseline,
        'input_mb': image.nbytes / 2**20, 'output_mb': output.nbytes / 2**20,
        'device_peak_mb': torch.cuda.max_memory_allocated() / 2**20 if device.type == 'cuda' else None,
    }
    print(json.dumps(result))


def throughput(args):
    import torch

    from ext.inference.tiling import TiledUpscaler
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net = compact_net(args.num_feat, args.num_conv, args.scale).to(device)
    image = make_image(args.size)
    runs = {'tiled': TiledUpscaler(net, args.scale, tile=args.tile, tile_pad=args.tile_pad, device=device),
            'untiled': TiledUpscaler(net, args.scale, tile=0, device=device)}
    best = {name: float('inf') for name in runs}
    for name, upscaler in runs.items():  # warm-up
        upscaler.upscale(image[:64, :64])
    for _ in range(args.repeats):
        for name, upscaler in runs.items():  # alternate so both see the same machine load
            start = time.perf_counter()
            upscaler.upscale(image)
            if device.type == 'cuda':
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - start)
    print(json.dumps(best))


def run_child(args, *extra):
    command = [sys.executable, osp.abspath(__file__), *extra, '--device', args.device, '--scale', str(args.scale),
               '--num_feat', str(args.num_feat), '--num_conv', str(args.num_conv), '--tile_pad', str(args.tile_pad),
               '--threads', str(args.threads), '--repeats', str(args.repeats)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f'child failed: {" ".join(command)}\n{result.stderr[-3000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=[512, 1024, 2048], help='square input sizes')
    parser.add_argument('--tile', type=int, default=256)
    parser.add_argument('--tile_pad', type=int, default=10)
    parser.add_argument('--untiled_max', type=int, default=1024,
                        help='largest size also run untiled for the memory contrast (untiled 2048^2 x4 needs GBs)')
    parser.add_argument('--throughput_size', type=int, default=1024)
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--scale', type=int, default=4)
    parser.add_argument('--num_feat', type=int, default=16)
    parser.add_argument('--num_conv', type=int, default=4)
    parser.add_argument('--threads', type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--throughput', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--size', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.throughput:
        return throughput(args)

    print(f'network: compact x{args.scale}, num_feat {args.num_feat}, num_conv {args.num_conv}; device {args.device}; '
          f'tile {args.tile}, tile_pad {args.tile_pad}; {args.threads} threads')
    header = (f'{"input":>10} {"mode":>9} {"seconds":>8} {"peak RSS":>9} {"added":>8} {"output":>8} '
              f'{"overhead":>9} {"device peak":>12}')
    print(header + '\n' + '-' * len(header))
    rows = {}
    for size in args.sizes:
        for mode, tile in (('tiled', args.tile), ('untiled', 0)):
            if mode == 'untiled' and size > args.untiled_max:
                continue
            row = run_child(args, '--child', '--size', str(size), '--tile', str(tile))
            row['overhead_mb'] = row['added_mb'] - row['output_mb']
            rows[(size, mode)] = row
            device_peak = f'{row["device_peak_mb"]:.0f} MB' if row['device_peak_mb'] is not None else '-'
            print(f'{size:>5}x{size:<4} {mode:>9} {row["seconds"]:8.2f} {row["peak_rss_mb"]:6.0f} MB '
                  f'{row["added_mb"]:5.0f} MB {row["output_mb"]:5.0f} MB {row["overhead_mb"]:6.0f} MB '
                  f'{device_peak:>12}')

    smallest = args.sizes[0]
    print(f'\nratios against {smallest}x{smallest} (image area grows by the first column):')
    for size in args.sizes[1:]:
        area = (size / smallest) ** 2
        for mode in ('tiled', 'untiled'):
            if (size, mode) not in rows or (smallest, mode) not in rows:
                continue
            low, high = rows[(smallest, mode)], rows[(size, mode)]
            overhead = max(high['overhead_mb'], 1) / max(low['overhead_mb'], 1)
            added = max(high['added_mb'], 1) / max(low['added_mb'], 1)
            line = f'  {size}^2 {mode:>8}: area x{area:.0f}, overhead x{overhead:.2f}, added RSS x{added:.2f}'
            if high['device_peak_mb']:
                line += f', device peak x{high["device_peak_mb"] / low["device_peak_mb"]:.2f}'
            print(line)

    best = run_child(args, '--throughput', '--size', str(args.throughput_size), '--tile', str(args.tile))
    megapixels = args.throughput_size ** 2 / 1e6
    print(f'\nthroughput at {args.throughput_size}^2 (best of {args.repeats}): '
          f'tiled {megapixels / best["tiled"]:.2f} MP/s, untiled {megapixels / best["untiled"]:.2f} MP/s; '
          f'tiled/untiled speed ratio {best["untiled"] / best["tiled"]:.2f}')


if __name__ == '__main__':
    main()
