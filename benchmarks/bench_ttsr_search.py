#!/usr/bin/env python
"""TTSR search + transfer: peak memory and time, chunked (ext/archs/texture_search.py) vs upstream's plain
computation, on the LTE feature shapes of three cases:

  * LR 40^2,  Ref 160^2, batch 9 (CUFED training);
  * LR 96^2,  Ref 384^2, batch 1 (the FFHQ inpainting option files' 384x384);
  * LR 128^2, Ref 512^2, batch 1 (512x512 FFHQ faces).

Each (case, mode) runs in a fresh subprocess, so peaks do not mix: the peak is the process's peak RSS
(CPU; its high-water mark reset after the imports and inputs, on Linux) or peak allocated device memory
(CUDA) above what the inputs already took. Printed side by side:
memory and time ratios (plain / chunked) and the largest absolute difference of the outputs (soft
attention and the three textures). A plain run whose estimated size exceeds --max_gb is skipped with a
note. --full_network also measures a whole TTSRNet forward (chunked, inference) on the largest case.

  python benchmarks/bench_ttsr_search.py                   # CPU
  python benchmarks/bench_ttsr_search.py --device cuda
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

from peak_rss import peak_rss_bytes, reset_peak_rss, rss_bytes

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CASES = ((9, 40, 160), (1, 96, 384), (1, 128, 512))  # batch, LR side, Ref side


def plain_bytes(batch, lr, ref):
    """fp32 bytes of upstream's big tensors: R, Q/K unfolds, 3 value unfolds, 3 gathered, 3 textures."""
    query, keys = lr * lr, (ref // 4)**2
    values = 256 * 9 + 128 * 36 + 64 * 144
    return 4 * batch * (query * keys + 2304 * (query + keys) + values * keys + values * query + 448 * query * 16)


def features(batch, lr, ref, device):
    import torch
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=generator).to(device)

    key_side = ref // 4
    return (rand(batch, 256, lr, lr), rand(batch, 256, key_side, key_side),
            [rand(batch, 256, key_side, key_side), rand(batch, 128, 2 * key_side, 2 * key_side),
             rand(batch, 64, ref, ref)])


def base_rss_bytes():
    """What the peak is counted from: the RSS now, the peak reset to it (imports and inputs do not count)."""
    return rss_bytes() if reset_peak_rss() else peak_rss_bytes()


def worker(args):
    import torch
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sys.path.insert(0, REPO_ROOT)
    from ext.archs import texture_search as search
    batch, lr, ref = args.case
    run = search.search_transfer_plain if args.mode == 'plain' else (
        lambda q, k, v: search.search_transfer_chunked(q, k, v, memory_budget_mb=args.budget_mb))
    with torch.no_grad():
        run(*features(1, 8, 32, device))  # warm-up: CUDA context, kernels, thread pools
    query, key, values = features(batch, lr, ref, device)
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = base_rss_bytes()
    start = time.perf_counter()
    with torch.no_grad():
        soft, textures = run(query, key, values)
        if device.type == 'cuda':
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if device.type == 'cuda' else peak_rss_bytes()) - base
    torch.save({'soft': soft.cpu(), 'textures': [t.cpu() for t in textures]}, args.output)
    print(json.dumps({'peak_bytes': peak, 'seconds': seconds}))


def full_network(args):
    import torch
    sys.path.insert(0, REPO_ROOT)
    torch.set_num_threads(args.threads)
    from ext.archs.ttsr_net_arch import TTSRNet
    device = torch.device(args.device)
    net = TTSRNet(load_pretrained_vgg=False, search_memory_mb=args.budget_mb).to(device).eval()
    lq, ref = torch.rand(1, 3, 128, 128, device=device), torch.rand(1, 3, 512, 512, device=device)
    base = torch.cuda.memory_allocated() if device.type == 'cuda' else base_rss_bytes()
    start = time.perf_counter()
    with torch.no_grad():
        net(lq, ref)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if device.type == 'cuda' else peak_rss_bytes()) - base
    print(json.dumps({'peak_bytes': peak, 'seconds': seconds}))


def run_child(extra, args):
    command = [sys.executable, osp.abspath(__file__), '--device', args.device, '--threads', str(args.threads),
               '--budget_mb', str(args.budget_mb), *extra]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return None, result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f'exit {result.returncode}'
    return json.loads(result.stdout.strip().splitlines()[-1]), None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', help='cpu or cuda (default: %(default)s)')
    parser.add_argument('--threads', type=int, default=min(8, os.cpu_count() or 1), help='CPU threads')
    parser.add_argument('--budget_mb', type=float, default=256, help='chunked search memory budget (MB)')
    parser.add_argument('--max_gb', type=float, default=16, help='skip plain runs estimated above this')
    parser.add_argument('--full_network', action='store_true', help='also time a whole TTSRNet forward at 128/512')
    parser.add_argument('--worker', choices=('plain', 'chunked', 'network'), help=argparse.SUPPRESS)
    parser.add_argument('--case', type=int, nargs=3, help=argparse.SUPPRESS)
    parser.add_argument('--output', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == 'network':
        return full_network(args)
    if args.worker:
        args.mode = args.worker
        return worker(args)

    import torch
    print(f'TTSR search + transfer on {args.device}, {args.threads} threads, chunk budget {args.budget_mb:g} MB; '
          f'peak = memory added by the search (RSS on CPU, allocated on CUDA), fp32')
    header = (f'{"case (batch, LR, Ref)":<24}{"plain MB":>10}{"chunked MB":>12}{"mem ratio":>11}'
              f'{"plain s":>10}{"chunked s":>11}{"time ratio":>12}{"max |diff|":>12}')
    print(header)
    print('-' * len(header))
    with tempfile.TemporaryDirectory() as folder:
        for batch, lr, ref in CASES:
            case = [str(batch), str(lr), str(ref)]
            label = f'{batch} x {lr}^2 / {ref}^2'
            outputs, results, notes = {}, {}, []
            for mode in ('plain', 'chunked'):
                if mode == 'plain' and plain_bytes(batch, lr, ref) > args.max_gb * 2**30:
                    notes.append(f'plain skipped: needs ~{plain_bytes(batch, lr, ref) / 2**30:.1f} GiB > --max_gb')
                    continue
                outputs[mode] = osp.join(folder, f'{mode}_{lr}.pth')
                results[mode], error = run_child(['--worker', mode, '--case', *case, '--output', outputs[mode]], args)
                if error:
                    notes.append(f'{mode} failed: {error}')
                    outputs.pop(mode)
            diff = float('nan')
            if len(outputs) == 2:
                a, b = (torch.load(outputs[m], weights_only=True) for m in ('plain', 'chunked'))
                diff = max([(a['soft'] - b['soft']).abs().max().item()] +
                           [(x - y).abs().max().item() for x, y in zip(a['textures'], b['textures'])])

            def cell(mode, key, scale, width, fmt):
                return f'{results[mode][key] / scale:>{width}{fmt}}' if mode in results else f'{"-":>{width}}'

            ratio = (lambda key: f'{results["plain"][key] / max(results["chunked"][key], 1e-9):>10.2f}x'
                     if len(results) == 2 else f'{"-":>11}')
            print(f'{label:<24}{cell("plain", "peak_bytes", 2**20, 10, ".0f")}'
                  f'{cell("chunked", "peak_bytes", 2**20, 12, ".0f")}{ratio("peak_bytes")}'
                  f'{cell("plain", "seconds", 1, 10, ".2f")}{cell("chunked", "seconds", 1, 11, ".2f")}'
                  f' {ratio("seconds")}{diff:>12.2e}')
            for note in notes:
                print(f'    note: {note}')
    if args.full_network:
        result, error = run_child(['--worker', 'network'], args)
        if error:
            print(f'TTSRNet forward 1 x 128^2 / 512^2 (chunked) failed: {error}')
        else:
            print(f'TTSRNet forward (mid 64, blocks 16/16/8/4, no grad) 1 x 128^2 / 512^2, chunked search: '
                  f'peak +{result["peak_bytes"] / 2**20:.0f} MB, {result["seconds"]:.2f} s')


if __name__ == '__main__':
    main()
