#!/usr/bin/env python
"""The GPU measurements in one command (about 7 of at most 9 minutes on one GPU): one JSON and one markdown table.

1. Tiled inference of Real-ESRGAN's released x4plus (astronaut 512^2, tile 256, tile_pad 10): images/s and peak
   CUDA memory in fp32, fp16, bf16 (and bf16 + channels_last) against the RealESRGANer-style fp32 baseline, with
   the gray-level difference to fp32 (benchmarks/bench_tiled_inference.py's run_precision).
2. TTSR at 384^2 GT / Ref, batch 4: peak CUDA memory of a training step in fp32 and bf16.
3. A-ESRGAN x4plus-size training steps (RRDBNet 23 x 64, gt 256, batch 12, two-scale attention U-Net D, VGG
   perceptual loss): iterations/s in fp32, bf16, bf16 + channels_last and + torch.compile, the ratios to fp32,
   and the mean generator loss over the last --loss-window iterations of a short run from the same seed, data
   and degradation draws (benchmarks/bench_train_step.py's runs, one subprocess each).

Parts run in that order within --budget seconds: each run gets what is left as its timeout, and a part the
budget does not reach is listed as skipped. Without a CUDA device the suite refuses with one line (exit status
1); --smoke runs every part on the CPU with tiny sizes (the test suite does, so the script cannot rot; its
figures mean nothing).

  python benchmarks/gpu_suite.py                        # benchmarks/results/gpu_suite.json, results/gpu_suite.md
  python benchmarks/gpu_suite.py --budget 480 --json gpu.json --markdown gpu.md
  python benchmarks/gpu_suite.py --smoke                # CPU, tiny sizes, about a minute
"""
import argparse
import datetime
import json
import math
import os
import os.path as osp
import sys
import tempfile
import time

HERE = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(HERE)
for path in (REPO_ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from ext.utils import run_record  # noqa: E402  (light: torch only when the machine is recorded)

TRAIN_CONFIGS = ('fp32', 'bf16', 'bf16_cl', 'bf16_cl_compile')
TTSR_CONFIGS = ('fp32', 'bf16')
INFERENCE_VARIANTS = ('realesrganer', 'fp32', 'fp16', 'bf16', 'bf16_cl')
# --smoke: bench_train_step's sizes shrunk to seconds on a CPU; torch.compile is left out (minutes on a CPU)
SMOKE_TRAIN = ['--no-vgg', '--threads', '1', '--aesrgan-batch', '2', '--aesrgan-gt-size', '32',
               '--aesrgan-source-size', '80', '--aesrgan-num-feat', '8', '--aesrgan-num-block', '1',
               '--ttsr-batch', '1', '--ttsr-lr-size', '8', '--ttsr-mid-channels', '8', '--ttsr-num-blocks', '1,1,1,1']
SMOKE_TRAIN_CONFIGS = ('fp32', 'bf16_cl')
SMOKE_INFERENCE = {'size': 24, 'tile': 16, 'blocks': 1, 'repeats': 1}
TTSR_CASE = {'ttsr_lr_size': 96, 'ttsr_batch': 4}  # 384^2 GT / Ref


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--smoke', action='store_true', help='CPU, tiny sizes: checks that every part still runs')
    parser.add_argument('--budget', type=float, default=540, help='seconds for the whole suite (default: %(default)s)')
    parser.add_argument('--json', help='default: benchmarks/results/gpu_suite.json (committed: the docs are '
                                       'generated from it); with --smoke results/gpu_suite_smoke.json')
    parser.add_argument('--markdown', default=osp.join(REPO_ROOT, 'results', 'gpu_suite.md'))
    parser.add_argument('--train-iters', type=int, default=30, help='timed training iterations (default: %(default)s)')
    parser.add_argument('--train-warmup', type=int, default=5, help='untimed first iterations (default: %(default)s)')
    parser.add_argument('--loss-window', type=int, default=10,
                        help='the loss compared is the mean over the last N iterations (default: %(default)s)')
    parser.add_argument('--inference-repeats', type=int, default=3, help='timed rounds (default: %(default)s)')
    parser.add_argument('--model_path', help='x4plus checkpoint (default: convert the released one)')
    args = parser.parse_args(argv)
    args.json = args.json or run_record.default_json(REPO_ROOT, args.smoke, 'gpu_suite_smoke.json', 'gpu_suite.json')
    args.command = run_record.script_argv(__file__, argv)
    return args


class Budget:
    """Seconds left of ``total``; a run gets what is left as its timeout."""

    def __init__(self, total):
        self.deadline = time.monotonic() + total

    def left(self):
        return self.deadline - time.monotonic()


def inference_part(args, device, budget):
    import bench_tiled_inference as tiled
    import torch
    smoke = SMOKE_INFERENCE if args.smoke else {'size': 512, 'tile': 256, 'blocks': 23,
                                                   'repeats': args.inference_repeats}
    net, what = tiled.x4plus_network(args.model_path, smoke['blocks'])
    image = tiled.astronaut_bgr(smoke['size'])
    results = tiled.run_precision(net, image, INFERENCE_VARIANTS, smoke['tile'], 10, device, smoke['repeats'])
    del net
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return {'network': what, 'size': smoke['size'], 'tile': smoke['tile'], 'tile_pad': 10,
            'repeats': smoke['repeats'], 'results': results, 'seconds_left': budget.left()}


def training_args(args, device):
    import bench_train_step as steps
    argv = ['--device', device.type, '--iters', str(args.train_iters), '--warmup', str(args.train_warmup),
            '--loss-window', str(args.loss_window)]
    if args.smoke:
        argv = ['--device', 'cpu', '--iters', '2', '--warmup', '0', '--loss-window', '1', *SMOKE_TRAIN]
    train_args = steps.fill_defaults(steps.parse_args(argv), device.type)
    return steps, train_args


def run_configs(steps, train_args, system, configs, env, workdir, budget, overrides=None):
    """bench_train_step runs of ``configs``, each with the budget left as its timeout."""
    results = {}
    for config in configs:
        left = budget.left()
        if left < 20:
            results[config] = {'ok': False, 'skipped': True, 'error': 'skipped: the --budget was spent'}
            continue
        train_args.timeout = max(1, int(left))
        print(f'  {system} {config} ...', flush=True)
        results[config] = steps.run_config(train_args, system, config, env, workdir, overrides)
    return results


def ttsr_part(steps, train_args, env, workdir, budget, smoke):
    overrides = None if smoke else dict(TTSR_CASE, iters=3, warmup=1, loss_window=1)
    results = run_configs(steps, train_args, 'ttsr', TTSR_CONFIGS[:1] if smoke else TTSR_CONFIGS, env, workdir,
                          budget, overrides)
    return {'title': steps.describe(train_args, 'ttsr', overrides), 'results': results}


def training_part(steps, train_args, env, workdir, budget, smoke):
    configs = SMOKE_TRAIN_CONFIGS if smoke else TRAIN_CONFIGS
    results = run_configs(steps, train_args, 'aesrgan', configs, env, workdir, budget)
    steps.add_ratios(results)
    return {'title': steps.describe(train_args, 'aesrgan'), 'results': results,
            'iters': train_args.iters, 'warmup': train_args.warmup, 'loss_window': train_args.loss_window}


def _cell(value, spec):
    return format(value, spec) if isinstance(value, (int, float)) and math.isfinite(value) else '-'


def _failed(result):
    text = result.get('error', '?') if result.get('skipped') else f'FAILED: {result.get("error", "?")}'
    return text.replace('|', '/')


def markdown(report):
    """The report as markdown tables, headed by the device and the date."""
    lines = [f'# GPU suite on {report["device"]}', '',
             f'{report["date"]}; torch {report["torch"]}, CUDA {report["cuda"]}; '
             f'{"--smoke (CPU, tiny sizes: the figures mean nothing)" if report["smoke"] else "full sizes"}; '
             f'{report["seconds"]:.0f} s of a {report["budget_s"]:.0f} s budget', '']
    inference = report['parts'].get('inference')
    if inference:
        lines += [f'## Tiled x4plus inference ({inference["network"]}; {inference["size"]}^2, '
                  f'tile {inference["tile"]}, '
                  f'tile_pad {inference["tile_pad"]}, best of {inference["repeats"]})', '',
                  '| variant | images/s | x fp32 | x RealESRGANer | peak memory growth (MiB) | diff to fp32 mean / max '
                  '(gray levels) |', '| --- | ---: | ---: | ---: | ---: | ---: |']
        for variant, result in inference['results'].items():
            if not result.get('ok'):
                lines.append(f'| {variant} | {_failed(result)} | | | | |')
                continue
            difference = result.get('difference_to_fp32') or {}
            lines.append(f'| {variant} | {_cell(result["images_per_s"], ".2f")} | '
                         f'{_cell(result.get("speed_vs_fp32"), ".2f")} | '
                         f'{_cell(result.get("speed_vs_realesrganer"), ".2f")} | '
                         f'{_cell(result["peak_growth_mb"], ".0f")} | '
                         f'{_cell(difference.get("mean"), ".3f")} / {_cell(difference.get("max"), "d")} |')
        lines.append('')
    ttsr = report['parts'].get('ttsr')
    if ttsr:
        lines += [f'## {ttsr["title"]}', '', '| config | peak memory (GiB) | iterations/s |', '| --- | ---: | ---: |']
        for config, result in ttsr['results'].items():
            lines.append(f'| {config} | {_cell(result["peak_memory_bytes"] / 2**30, ".2f")} | '
                         f'{_cell(result["iters_per_s"], ".2f")} |' if result.get('ok') else
                         f'| {config} | {_failed(result)} | |')
        lines.append('')
    training = report['parts'].get('training')
    if training:
        lines += [f'## {training["title"]}', '',
                  f'{training["warmup"]} warm-up + {training["iters"]} timed iterations; G loss: mean over the last '
                  f'{training["loss_window"]}', '',
                  '| config | iterations/s | x fp32 | step ms | peak memory (GiB) | G loss | vs fp32 |',
                  '| --- | ---: | ---: | ---: | ---: | ---: | ---: |']
        for config, result in training['results'].items():
            if not result.get('ok'):
                lines.append(f'| {config} | {_failed(result)} | | | | | |')
                continue
            relative = result.get('loss_rel_diff')
            lines.append(f'| {config} | {_cell(result["iters_per_s"], ".3f")} | '
                         f'{_cell(result.get("throughput_ratio"), ".2f")} | {_cell(result["step_ms_median"], ".0f")} | '
                         f'{_cell(result["peak_memory_bytes"] / 2**30, ".2f")} | {_cell(result["loss_g"], ".4f")} | '
                         f'{_cell(100 * relative if relative is not None else None, "+.2f")} % |')
        lines.append('')
    for part, error in report.get('errors', {}).items():
        lines.append(f'{part}: FAILED: {error}')
    return '\n'.join(lines).rstrip() + '\n'


def write_atomically(path, text):
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    partial = path + '.partial'
    with open(partial, 'w') as handle:
        handle.write(text)
    os.replace(partial, path)


def main(argv=None):
    args = parse_args(argv)
    started = time.monotonic()
    budget = Budget(args.budget)
    import torch
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit(f'gpu_suite.py: no CUDA device (torch {torch.__version__} sees none); run it on a GPU '
                         'machine, or pass --smoke for the CPU check')
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    device = torch.device('cpu' if args.smoke else 'cuda')
    name = 'CPU (--smoke)' if args.smoke else torch.cuda.get_device_name(device)
    report = {'device': name, 'smoke': args.smoke, 'torch': torch.__version__, 'cuda': torch.version.cuda,
              'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
              'budget_s': args.budget, 'parts': {}, 'errors': {}}
    # the command line and the commit, for the docs' tables (the device above is the GPU's name)
    report.update(command=run_record.command(REPO_ROOT, args.command), **run_record.commit(REPO_ROOT),
                  host=run_record.machine(torch.get_num_threads()))
    print(f'GPU suite on {name}, torch {torch.__version__}; budget {args.budget:.0f} s', flush=True)
    steps, train_args = training_args(args, device)
    with tempfile.TemporaryDirectory(prefix='gpu_suite_') as workdir:
        env, vgg_note = steps.ensure_vgg_weights(train_args, workdir)
        report['vgg'] = vgg_note
        parts = (('inference', lambda: inference_part(args, device, budget)),
                 ('ttsr', lambda: ttsr_part(steps, train_args, env, workdir, budget, args.smoke)),
                 ('training', lambda: training_part(steps, train_args, env, workdir, budget, args.smoke)))
        for part, run in parts:
            print(f'{part} ...', flush=True)
            try:
                report['parts'][part] = run()
            except Exception as error:  # one broken part must not cost the others' figures
                report['errors'][part] = f'{type(error).__name__}: {error}'.splitlines()[0]
    report['seconds'] = time.monotonic() - started
    table = markdown(report)
    write_atomically(args.json, json.dumps(report, indent=2, default=str))
    write_atomically(args.markdown, table)
    print('\n' + table)
    print(f'written: {args.json}, {args.markdown}')
    return 1 if report['errors'] else 0


if __name__ == '__main__':
    sys.exit(main())
