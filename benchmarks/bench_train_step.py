#!/usr/bin/env python
"""Training-step speed side by side: fp32 against the speed options of ``train`` (ext/models/train_speed.py).

For each system (A-ESRGAN: RRDBNet x4plus + two-scale attention U-Net discriminator on Real-ESRGAN
degradations; TTSR: texture transformer with LTE, perceptual, transferal and WGAN-GP losses) and each
configuration

  fp32              no speed option (the baseline the ratios are taken against)
  tf32              fast_matmul (TF32 matmul / cuDNN; CUDA only has an effect)
  bf16              use_amp + amp_bf16
  fp16              use_amp (float16 with GradScalers; CUDA only)
  bf16_cl           bf16 + use_channels_last
  bf16_cl_compile   bf16_cl + use_compile (generator; --compile-mode, --compile-backend)

a fresh subprocess builds the real model with BasicSR's ``build_model`` from an option dict, with the same
seed and the same in-process data (scikit-image photos; no download): A-ESRGAN gets GT photos and blur
kernels through ``feed_data`` (the second-order degradation and the training-pair queue, seeded alike
per iteration), TTSR gets (lq, lq_up, ref, ref_down_up, gt) made as RefCUFEDDataset makes them. After
--warmup untimed iterations, --iters timed iterations give: iterations/s of ``optimize_parameters``
(CUDA synchronised), the peak memory of a step (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the
peak resident set size of the step above the RSS before the model was built, read from VmHWM after
resetting it through /proc/self/clear_refs), and the generator loss (mean over the last --loss-window
iterations). A configuration that fails prints its error in the table; the run goes on.

The VGG19 losses (A-ESRGAN's perceptual loss; TTSR's perceptual loss and texture extractor) load
torchvision's ImageNet file from disk (ext/utils/pretrained.py); where it is absent a randomly
initialised VGG19 of the same shape stands in (same compute, noted in the output).

GPU defaults are the training recipes' sizes (A-ESRGAN gt 256 batch 12, 23 blocks x 64 ch; TTSR LR 40 /
Ref 160 batch 9, blocks 16/16/8/4 x 64 ch); CPU defaults are much smaller (printed as such) so that the
default run ends in a few minutes on 2 cores.

  python benchmarks/bench_train_step.py                          # auto device, all four default configs
  python benchmarks/bench_train_step.py --device cuda --iters 50 --json step.json
  python benchmarks/bench_train_step.py --device cuda --check-targets   # the GPU targets (slow)
"""
import argparse
import json
import math
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

HERE = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(HERE)
LEARNING_DIR = osp.join(HERE, 'learning')  # benchmarks/learning/common.py: the recipes' training photos

SYSTEMS = ('aesrgan', 'ttsr')
SYSTEM_TITLES = {'aesrgan': 'A-ESRGAN', 'ttsr': 'TTSR'}
CONFIGS = {
    'fp32': {},
    'tf32': {'fast_matmul': True},
    'bf16': {'use_amp': True, 'amp_bf16': True},
    'fp16': {'use_amp': True},
    'bf16_cl': {'use_amp': True, 'amp_bf16': True, 'use_channels_last': True},
    'bf16_cl_compile': {'use_amp': True, 'amp_bf16': True, 'use_channels_last': True, 'use_compile': True},
}
DEFAULT_CONFIGS = ('fp32', 'bf16', 'bf16_cl', 'bf16_cl_compile')

# (GPU, CPU) defaults of the sizes; the GPU ones are the training recipes'
SIZE_DEFAULTS = {
    'aesrgan_batch': (12, 2), 'aesrgan_gt_size': (256, 64), 'aesrgan_source_size': (400, 128),
    'aesrgan_num_feat': (64, 32), 'aesrgan_num_block': (23, 2),
    'ttsr_batch': (9, 2), 'ttsr_lr_size': (40, 16), 'ttsr_mid_channels': (64, 16),
    'ttsr_num_blocks': ('16,16,8,4', '2,2,1,1'),
}
RUN_DEFAULTS = {'iters': (20, 4), 'warmup': (5, 1)}

# the GPU targets (docs/speed.md): on a current data-centre GPU, the best A-ESRGAN speed configuration at least
# 2x fp32's throughput with the loss within 2 % after 1k iterations, TTSR 384^2 batch 4 under 20 GB
TARGET_THROUGHPUT = 2.0
TARGET_LOSS_REL = 0.02
TARGET_ITERATIONS = 1000
TARGET_TTSR_MEMORY_GB = 20.0
TARGET_TTSR_CASE = {'ttsr_lr_size': 96, 'ttsr_batch': 4}  # 384x384 GT / Ref, batch 4


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------
def _csv(choices):

    def parse(text):
        items = [item.strip() for item in text.split(',') if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f'unknown {unknown or text!r}; choose from {", ".join(choices)}')
        return items

    return parse


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected an integer >= 1, got {text}')
    return value


def _non_negative(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected an integer >= 0, got {text}')
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Sizes default to the GPU recipe on CUDA and to a small CPU case on the CPU (both printed).')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    parser.add_argument('--systems', type=_csv(SYSTEMS), default=list(SYSTEMS), help='comma list (aesrgan,ttsr)')
    parser.add_argument('--configs', type=_csv(tuple(CONFIGS)), default=list(DEFAULT_CONFIGS),
                        help=f'comma list from {",".join(CONFIGS)} (default {",".join(DEFAULT_CONFIGS)})')
    parser.add_argument('--iters', type=_positive, help='timed iterations (GPU 20, CPU 4)')
    parser.add_argument('--warmup', type=_non_negative, help='untimed iterations first (GPU 5, CPU 1)')
    parser.add_argument('--loss-window', type=_positive,
                        help='the loss is the mean over the last N iterations (default: max(1, iters // 10), <= 50)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=_positive, help='torch CPU threads in each run (default: torch default)')
    parser.add_argument('--compile-mode', default=None, help='train.compile_mode (default: torch default mode)')
    parser.add_argument('--compile-backend', default=None, help='train.compile_backend (default inductor)')
    parser.add_argument('--no-vgg', action='store_true',
                        help='drop the VGG19 perceptual losses and the pretrained TTSR extractor (faster, less real)')
    parser.add_argument('--json', metavar='PATH', help='also write every figure to this JSON file')
    parser.add_argument('--timeout', type=_positive, default=3600, help='seconds per configuration run')
    parser.add_argument('--check-targets', action='store_true',
                        help=f"the GPU targets: A-ESRGAN best config >= {TARGET_THROUGHPUT}x fp32 with the "
                        f'loss within {100 * TARGET_LOSS_REL:g} %% after {TARGET_ITERATIONS} iterations, TTSR '
                        f'384^2 batch 4 under {TARGET_TTSR_MEMORY_GB:g} GB (CUDA only)')
    sizes = parser.add_argument_group('sizes (GPU default / CPU default)')
    for key, (gpu, cpu) in SIZE_DEFAULTS.items():
        kind = str if key == 'ttsr_num_blocks' else _positive
        sizes.add_argument('--' + key.replace('_', '-'), type=kind, help=f'{gpu} / {cpu}')
    parser.add_argument('--worker', help=argparse.SUPPRESS)  # internal: one configuration, a JSON spec
    return parser.parse_args(argv)


def resolve_device(choice):
    import torch
    if choice == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if choice == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: torch sees no CUDA device on this machine')
    return choice


def fill_defaults(args, device):
    column = 0 if device == 'cuda' else 1
    for key, values in {**SIZE_DEFAULTS, **RUN_DEFAULTS}.items():
        if getattr(args, key) is None:
            setattr(args, key, values[column])
    try:
        args.ttsr_num_blocks = [int(v) for v in str(args.ttsr_num_blocks).split(',')]
    except ValueError:
        args.ttsr_num_blocks = None
    if not args.ttsr_num_blocks or len(args.ttsr_num_blocks) != 4 or min(args.ttsr_num_blocks) < 1:
        raise SystemExit('--ttsr-num-blocks: expected four positive integers like 16,16,8,4')
    if args.aesrgan_gt_size % 16:
        raise SystemExit(f'--aesrgan-gt-size {args.aesrgan_gt_size}: must be a multiple of 16 (two-scale D)')
    if args.aesrgan_source_size < args.aesrgan_gt_size:
        raise SystemExit(f'--aesrgan-source-size {args.aesrgan_source_size} is below --aesrgan-gt-size')
    if (4 * args.ttsr_lr_size) % 32:
        raise SystemExit(f'--ttsr-lr-size {args.ttsr_lr_size}: 4x it (the GT / Ref size) must be a multiple of 32 '
                         '(TTSRDiscriminator)')
    if args.loss_window is None:
        args.loss_window = min(50, max(1, args.iters // 10))
    args.loss_window = min(args.loss_window, args.iters)
    return args


# --------------------------------------------------------------------------------------------------
# worker: one system x one configuration, in its own process
# --------------------------------------------------------------------------------------------------
def photo_crops(count, size, seed):
    """``count`` RGB uint8 ``size`` x ``size`` crops of scikit-image photos (bundled, no download)."""
    import numpy as np
    from common import TRAIN_PHOTOS
    from ext.utils.bundled_photos import photo_crop
    rng = np.random.default_rng(seed)
    return [photo_crop(TRAIN_PHOTOS[(seed + index) % len(TRAIN_PHOTOS)], size, rng) for index in range(count)]


def _aesrgan_namespace(spec):
    return argparse.Namespace(device=spec['device'], batch=spec['aesrgan_batch'], gt_size=spec['aesrgan_gt_size'],
                              source_size=spec['aesrgan_source_size'], num_feat=spec['aesrgan_num_feat'],
                              num_block=spec['aesrgan_num_block'], num_d=2)


def aesrgan_options(spec):
    """options/train_multiaesrgan_x4plus.yml at the benchmark's sizes (bench_aesrgan_step's shrinking), VGG
    perceptual loss kept unless --no-vgg."""
    import yaml
    import bench_aesrgan_step
    opt = bench_aesrgan_step.make_options(_aesrgan_namespace(spec))
    if not spec['no_vgg']:
        with open(bench_aesrgan_step.OPTION_FILE) as handle:
            opt['train']['perceptual_opt'] = yaml.safe_load(handle)['train']['perceptual_opt']
    opt['datasets']['train']['crop_pad_size'] = spec['aesrgan_source_size']
    return opt


def aesrgan_batches(spec, count):
    """What RealESRGANDataset yields: bench_aesrgan_step's kernels with GT crops of real photos."""
    import torch
    import bench_aesrgan_step
    batches = []
    for index in range(count):
        batch = bench_aesrgan_step.make_batch(_aesrgan_namespace(spec), spec['seed'] + index)
        crops = photo_crops(spec['aesrgan_batch'], spec['aesrgan_source_size'], spec['seed'] + 10 * index)
        batch['gt'] = torch.stack([torch.from_numpy(c).permute(2, 0, 1).float() / 255. for c in crops])
        batches.append(batch)
    return batches


def ttsr_options(spec):
    """options/train_ttsr_cufed.yml at the benchmark's sizes, every loss on from the first iteration."""
    import yaml
    with open(osp.join(REPO_ROOT, 'options', 'train_ttsr_cufed.yml')) as handle:
        opt = yaml.safe_load(handle)
    gt_size = 4 * spec['ttsr_lr_size']
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=1 if spec['device'] == 'cuda' else 0)
    opt['datasets']['train']['batch_size_per_gpu'] = spec['ttsr_batch']
    opt['network_g'].update(mid_channels=spec['ttsr_mid_channels'], num_blocks=spec['ttsr_num_blocks'],
                            load_pretrained_vgg=not spec['no_vgg'])
    opt['network_d']['in_size'] = gt_size
    opt['path'] = {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None}
    opt['train']['pixel_init_iters'] = 0  # the full step (all losses, 2 D steps) from the first iteration
    if spec['no_vgg']:
        opt['train'].pop('perceptual_opt')
    return opt


def ttsr_batches(spec, count):
    """(lq, lq_up, ref, ref_down_up, gt) as RefCUFEDDataset makes them, from photo crops: the reference is
    another crop of a photo of the same kind."""
    import torch
    from ext.data.ref_sr_util import fit_reference, lq_pair, to_tensor
    gt_size = 4 * spec['ttsr_lr_size']
    batches = []
    for index in range(count):
        gts = photo_crops(spec['ttsr_batch'], gt_size, spec['seed'] + 10 * index)
        refs = photo_crops(spec['ttsr_batch'], gt_size, spec['seed'] + 10 * index + 5)
        items = {key: [] for key in ('lq', 'lq_up', 'gt', 'ref', 'ref_down_up')}
        for gt, ref in zip(gts, refs):
            lq, lq_up = lq_pair(gt)
            ref, ref_down_up = fit_reference(ref, gt_size, gt_size, 'pad')
            for key, image in (('lq', lq), ('lq_up', lq_up), ('gt', gt), ('ref', ref), ('ref_down_up', ref_down_up)):
                items[key].append(to_tensor(image))
        batches.append({key: torch.stack(values) for key, values in items.items()})
    return batches


def generator_loss(log):
    """The total generator loss of one logged iteration."""
    if 'l_g_total' in log:
        return float(log['l_g_total'])
    return float(sum(log[key] for key in ('l_g_pix', 'l_g_ldl', 'l_g_percep', 'l_g_style', 'l_g_gan') if key in log))


def run_worker(spec):
    import statistics

    import torch
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    sys.path[:0] = [HERE, LEARNING_DIR]  # once per worker: bench_aesrgan_step, peak_rss, learning/common
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from peak_rss import peak_rss_bytes, reset_peak_rss, rss_bytes
    from basicsr.models import build_model
    from basicsr.utils import set_random_seed

    device = spec['device']
    system = spec['system']
    pool = 4  # distinct batches, cycled
    if system == 'aesrgan':
        opt, batches = aesrgan_options(spec), aesrgan_batches(spec, pool)
    else:
        opt, batches = ttsr_options(spec), ttsr_batches(spec, pool)
    train = dict(CONFIGS[spec['config']])
    if train.get('use_compile'):
        if spec.get('compile_mode') is not None:
            train['compile_mode'] = spec['compile_mode']
        if spec.get('compile_backend') is not None:
            train['compile_backend'] = spec['compile_backend']
    opt['train'].update(train)

    if device == 'cuda':
        torch.cuda.synchronize()
    rss_before_model = rss_bytes()
    set_random_seed(spec['seed'])
    model = build_model(opt)

    def sync():
        if device == 'cuda':
            torch.cuda.synchronize()

    def feed(iteration):
        set_random_seed(spec['seed'] + 1000 + iteration)  # the degradation / queue draws: alike in every run
        model.feed_data(batches[iteration % pool])

    step_times, feed_times, peaks, losses, pix = [], [], [], [], []
    total = spec['warmup'] + spec['iters']
    warmup_start = time.perf_counter()
    warmup_s = None
    for iteration in range(1, total + 1):
        timed = iteration > spec['warmup']
        if timed and warmup_s is None:
            sync()
            warmup_s = time.perf_counter() - warmup_start
        sync()
        start = time.perf_counter()
        feed(iteration)
        sync()
        feed_end = time.perf_counter()
        if timed:
            if device == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            else:
                reset_peak_rss()
        model.optimize_parameters(iteration)
        sync()
        end = time.perf_counter()
        log = model.get_current_log()
        losses.append(generator_loss(log))
        pix.append(float(log.get('l_g_pix', float('nan'))))
        if timed:
            step_times.append(end - feed_end)
            feed_times.append(feed_end - start)
            peaks.append(torch.cuda.max_memory_allocated() if device == 'cuda'
                         else peak_rss_bytes() - rss_before_model)
    if warmup_s is None:
        warmup_s = 0.0
    window = spec['loss_window']
    net_g = model.get_bare_model(model.net_g)
    result = {
        'ok': True,
        'iters_per_s': len(step_times) / sum(step_times),
        'step_ms_median': 1e3 * statistics.median(step_times),
        'feed_ms_median': 1e3 * statistics.median(feed_times),
        'peak_memory_bytes': int(max(peaks)),
        'memory_kind': ('torch.cuda.max_memory_allocated during the step' if device == 'cuda' else
                        'CPU peak RSS (VmHWM) during the step above the RSS before the model was built'),
        'warmup_s': warmup_s,
        'loss_g': statistics.fmean(losses[-window:]),
        'loss_g_last': losses[-1],
        'loss_pix': statistics.fmean(pix[-window:]),
        'loss_window': window,
        'total_iterations': total,
        'output_dtype': str(model.output.dtype).replace('torch.', ''),
        'generator_params': sum(p.numel() for p in net_g.parameters()),
        'threads': torch.get_num_threads(),
    }
    with open(spec['result_path'], 'w') as handle:
        json.dump(result, handle)


# --------------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------------
def ensure_vgg_weights(args, workdir):
    """The environment for the runs: real VGG19 weights when on disk, else a random-init stand-in."""
    sys.path.insert(0, REPO_ROOT)
    from ext.utils.train_runner import subprocess_env
    env = subprocess_env()
    if args.no_vgg:
        return env, 'VGG19 losses off (--no-vgg)'
    from ext.utils.pretrained import VGG_WEIGHTS_ENV, PretrainedWeightsNotFound, find_vgg_weights
    try:
        return env, f'VGG19 weights: {find_vgg_weights("vgg19")}'
    except PretrainedWeightsNotFound:
        pass
    import torch
    import torchvision
    from ext.utils.pretrained import torchvision_file_name
    path = osp.join(workdir, torchvision_file_name('vgg19'))
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg19(weights=None).state_dict(), path)
    env[VGG_WEIGHTS_ENV] = path
    return env, 'VGG19 weights: ImageNet file not on disk, a random-init VGG19 stands in (same compute)'


def run_config(args, system, config, env, workdir, overrides=None):
    spec = {key: getattr(args, key) for key in (*SIZE_DEFAULTS, 'iters', 'warmup', 'loss_window', 'seed', 'threads',
                                                'compile_mode', 'compile_backend', 'no_vgg')}
    spec.update(overrides or {})
    spec.update(device=args.device, system=system, config=config,
                result_path=osp.join(workdir, f'{system}_{config}_{len(os.listdir(workdir))}.json'))
    command = [sys.executable, osp.abspath(__file__), '--worker', json.dumps(spec)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {'ok': False, 'error': f'timed out after {args.timeout} s (--timeout)'}
    wall = time.perf_counter() - start
    if done.returncode != 0 or not osp.isfile(spec['result_path']):
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        error = lines[-1].strip() if lines else f'exit status {done.returncode}, no output'
        return {'ok': False, 'error': error, 'stderr_tail': '\n'.join(lines[-30:]), 'wall_s': wall}
    with open(spec['result_path']) as handle:
        result = json.load(handle)
    result['wall_s'] = wall
    return result


def add_ratios(results):
    base = results.get('fp32')
    for result in results.values():
        if not result.get('ok') or not base or not base.get('ok'):
            continue
        result['throughput_ratio'] = result['iters_per_s'] / base['iters_per_s']
        result['memory_ratio'] = (result['peak_memory_bytes'] / base['peak_memory_bytes']
                                  if base['peak_memory_bytes'] > 0 else float('nan'))
        result['loss_rel_diff'] = (result['loss_g'] - base['loss_g']) / abs(base['loss_g']) if base['loss_g'] else float('nan')


def describe(args, system, overrides=None):
    values = {key: getattr(args, key) for key in SIZE_DEFAULTS}
    values.update(overrides or {})
    scale = 'the GPU recipe' if args.device == 'cuda' else 'reduced CPU case (not the recipe sizes)'
    if system == 'aesrgan':
        return (f'A-ESRGAN (MultiScaleRealESRGANModel): RRDBNet {values["aesrgan_num_block"]} blocks x '
                f'{values["aesrgan_num_feat"]} ch + 2-scale attention U-Net D, gt {values["aesrgan_gt_size"]} from '
                f'{values["aesrgan_source_size"]} px photos, batch {values["aesrgan_batch"]} [{scale}]')
    lr = values['ttsr_lr_size']
    blocks = '/'.join(str(b) for b in values['ttsr_num_blocks'])
    return (f'TTSR (TTSRModel): LR {lr}^2 / Ref {4 * lr}^2, batch {values["ttsr_batch"]}, blocks {blocks} x '
            f'{values["ttsr_mid_channels"]} ch, L1{"" if args.no_vgg else " + perceptual"} + transferal + WGAN-GP '
            f'(2 D steps) [{scale}]')


def _fmt(value, spec):
    return format(value, spec) if isinstance(value, (int, float)) and math.isfinite(value) else '-'


def print_table(title, results, args, memory_label):
    print(title)
    print(f'  {args.warmup} warm-up + {args.iters} timed iterations; loss: mean generator loss over the last '
          f'{args.loss_window} iteration(s); memory: {memory_label}')
    header = (f'  {"config":<17}{"it/s":>8}{"x fp32":>8}{"step ms":>9}{"feed ms":>9}{"peak MiB":>10}{"x fp32":>8}'
              f'{"G loss":>10}{"rel diff":>10}{"warm-up s":>11}')
    print(header)
    for config, result in results.items():
        if not result.get('ok'):
            print(f'  {config:<17}FAILED: {result["error"]}')
            continue
        rel = result.get('loss_rel_diff')
        print(f'  {config:<17}{_fmt(result["iters_per_s"], ".3f"):>8}{_fmt(result.get("throughput_ratio"), ".2f"):>8}'
              f'{_fmt(result["step_ms_median"], ".0f"):>9}{_fmt(result["feed_ms_median"], ".0f"):>9}'
              f'{_fmt(result["peak_memory_bytes"] / 2**20, ".0f"):>10}{_fmt(result.get("memory_ratio"), ".2f"):>8}'
              f'{_fmt(result["loss_g"], ".4f"):>10}{_fmt(100 * rel if rel is not None else None, "+.2f"):>9}%'
              f'{_fmt(result["warmup_s"], ".1f"):>11}')
    print()


def check_targets(args, report, env, workdir):
    """The GPU targets from the A-ESRGAN table (run for >= 1k iterations) and a TTSR 384^2 run."""
    lines = []
    if args.device != 'cuda':
        lines.append('targets: not measured, they are GPU targets and this run is on the CPU; '
                     'the GPU figures are still to be measured (run with --device cuda --check-targets)')
        return lines, {}
    checks = {}
    aesrgan = report['systems'].get('aesrgan', {}).get('results', {})
    candidates = {c: r for c, r in aesrgan.items() if c != 'fp32' and r.get('ok') and 'throughput_ratio' in r}
    good = {c: r for c, r in candidates.items() if abs(r['loss_rel_diff']) <= TARGET_LOSS_REL}
    if not candidates:
        lines.append('A-ESRGAN throughput target: no successful non-fp32 configuration next to a successful fp32')
        checks['aesrgan_throughput'] = None
    else:
        best = max(good or candidates, key=lambda c: candidates[c]['throughput_ratio'])
        result = candidates[best]
        holds = bool(good) and result['throughput_ratio'] >= TARGET_THROUGHPUT
        lines.append(f'A-ESRGAN: best config with the loss within {100 * TARGET_LOSS_REL:g} % of fp32 after '
                     f'{result["total_iterations"]} iterations: '
                     + (f'{best} at {result["throughput_ratio"]:.2f}x fp32 (loss {100 * result["loss_rel_diff"]:+.2f} %)'
                        if good else 'none (every configuration is outside the loss tolerance)')
                     + f' -> target >= {TARGET_THROUGHPUT}x {"HOLDS" if holds else "NOT MET"}')
        checks['aesrgan_throughput'] = {'config': best, 'holds': holds, 'ratio': result['throughput_ratio'],
                                        'loss_rel_diff': result['loss_rel_diff']}
    ttsr = {}
    for config in args.configs:
        overrides = dict(TARGET_TTSR_CASE, iters=3, warmup=1, loss_window=1)
        ttsr[config] = run_config(args, 'ttsr', config, env, workdir, overrides)
    under = {c: r['peak_memory_bytes'] / 1e9 for c, r in ttsr.items() if r.get('ok')}
    for config, result in ttsr.items():
        if result.get('ok'):
            gb = result['peak_memory_bytes'] / 1e9
            lines.append(f'TTSR 384^2 batch 4, {config}: peak {gb:.2f} GB -> target < {TARGET_TTSR_MEMORY_GB:g} GB '
                         f'{"HOLDS" if gb < TARGET_TTSR_MEMORY_GB else "NOT MET"}')
        else:
            lines.append(f'TTSR 384^2 batch 4, {config}: FAILED: {result["error"]}')
    checks['ttsr_384_memory'] = {'results': ttsr, 'holds': {c: gb < TARGET_TTSR_MEMORY_GB for c, gb in under.items()}}
    return lines, checks


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        run_worker(json.loads(args.worker))
        return None
    args.device = resolve_device(args.device)
    if args.check_targets and args.device != 'cuda':
        lines, _ = check_targets(args, None, None, None)
        print('\n'.join(lines))
        return None
    if args.check_targets:
        if args.iters is None:
            args.iters = TARGET_ITERATIONS - (args.warmup if args.warmup is not None else RUN_DEFAULTS['warmup'][0])
        if args.loss_window is None:
            args.loss_window = 50
    fill_defaults(args, args.device)
    import torch
    if args.device == 'cuda':
        device_name = torch.cuda.get_device_name()
        memory_label = 'torch.cuda.max_memory_allocated of a step (MiB)'
    else:
        threads = args.threads or torch.get_num_threads()
        device_name = f'CPU, {threads} torch threads (OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "unset")})'
        memory_label = 'CPU peak RSS of a step above the pre-model RSS (MiB; VmHWM, coarse)'
    report = {'device': device_name, 'device_kind': args.device, 'torch': torch.__version__,
              'iters': args.iters, 'warmup': args.warmup, 'loss_window': args.loss_window, 'seed': args.seed,
              'systems': {}}
    with tempfile.TemporaryDirectory(prefix='bench_train_step_') as workdir:
        env, vgg_note = ensure_vgg_weights(args, workdir)
        report['vgg'] = vgg_note
        print(f'training-step benchmark on {device_name}, torch {torch.__version__}; {vgg_note}')
        print(f'one subprocess per configuration, seed {args.seed}, the same photos and degradation draws in each\n')
        for system in args.systems:
            results = {}
            for config in args.configs:
                print(f'  running {SYSTEM_TITLES[system]} {config} ...', flush=True)
                results[config] = run_config(args, system, config, env, workdir)
            add_ratios(results)
            title = describe(args, system)
            report['systems'][system] = {'title': title, 'results': results}
            print()
            print_table(title, results, args, memory_label)
        if args.check_targets:
            lines, checks = check_targets(args, report, env, workdir)
            report['targets'] = checks
            print('\n'.join(lines))
    if args.json:
        sys.path.insert(0, REPO_ROOT)
        from ext.utils import run_record
        # machine (CPU model, cores, threads, load), date, command, commit: for the docs' tables
        report.update(run_record.record(REPO_ROOT, args.threads or torch.get_num_threads(),
                                        f'{args.iters} timed iterations after {args.warmup} warm-up',
                                        [osp.abspath(__file__)] + list(sys.argv[1:] if argv is None else argv)))
        target = osp.abspath(args.json)
        partial = target + '.partial'
        with open(partial, 'w') as handle:
            json.dump(report, handle, indent=2, allow_nan=True)
        os.replace(partial, target)  # never a half-written file
        print(f'figures written to {target}')
    return report


if __name__ == '__main__':
    main()
