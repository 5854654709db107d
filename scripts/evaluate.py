"""Evaluate an SR generator on benchmark sets (Set5, Set14, DIV2K-val, BSDS500, your own folders) in one
call: per-image and mean PSNR/SSIM on Y and RGB (and any registered metric), the N best and worst
images as side-by-side pictures, results as CSV and JSON. The seed's ``test.py --datasets set5,set14
--show-results N --out-dir D MODEL``.

    python scripts/evaluate.py experiments/ESRGAN_x4_DIV2K/models/net_g_latest.pth \\
        --datasets set5 set14 div2k_val bsds500 --show-results 3 --out-dir results/esrgan_eval
    python scripts/evaluate.py bicubic --datasets set5                      # the bicubic baseline alone
    python scripts/evaluate.py MODEL.pth --dataset mine=path/HR:path/LR     # any paired folders
    python scripts/evaluate.py MODEL.pth --datasets set5 --metrics psnr_y ssim_y lpips=calculate_lpips

Named sets are read from ``--dataset-root`` in the layouts of datasets/README.md (those of
``scripts/prepare_sr_benchmark.py``); a set without its LR folder gets its LR made on the fly with
MATLAB bicubic. The network is loaded as ``scripts/inference.py`` loads it (``ext.inference.load_network``):
from ``--network-opt`` (the ``network_g`` of an option file) or ``--network`` (inline YAML/JSON); without
either, a checkpoint this package's training wrote is rebuilt from the ``network_g`` it records, and any other
file is built from options/test_esrgan_x4.yml's; ``.onnx`` files run with onnxruntime. Every table also has
the bicubic baseline's scores (``bicubic_*`` columns). Metrics: ``--metrics`` names, see
``ext/utils/sr_benchmark.py`` (psnr_y, ssim_y, psnr_rgb, ssim_rgb, or any METRIC_REGISTRY type).
"""
import argparse
import csv
import io
import json
import math
import os
import os.path as osp
import sys
import time

import cv2

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # this checkout's ext, installed or not
from ext.utils.atomic_io import atomic_write_text  # noqa: E402
from ext.utils.image_files import UnreadableImage, list_images, read_image, report_unreadable, write_image  # noqa: E402

# name -> (HR folder, LR folder, LR file name template), relative to --dataset-root; {s} is the scale
BENCHMARK_SETS = {
    'set5': ('Set5/HR', 'Set5/LR_bicubic/X{s}', '{}'),
    'set14': ('Set14/HR', 'Set14/LR_bicubic/X{s}', '{}'),
    'div2k_val': ('DIV2K/DIV2K_valid_HR', 'DIV2K/DIV2K_valid_LR_bicubic/X{s}', '{}x{s}'),
    'bsds500': ('BSDS500/test/HR', 'BSDS500/test/LR_bicubic/X{s}', '{}'),
    'bsds500_val': ('BSDS500/val/HR', 'BSDS500/val/LR_bicubic/X{s}', '{}'),
}
DEFAULT_NETWORK_OPT = osp.join(REPO_ROOT, 'options', 'test_esrgan_x4.yml')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help="generator weights (.pth/.safetensors), or 'bicubic' for the baseline only")
    parser.add_argument('--datasets', nargs='+', default=[], metavar='NAME',
                        help=f'named sets (comma or space separated): {", ".join(BENCHMARK_SETS)}')
    parser.add_argument('--dataset', action='append', default=[], metavar='NAME=HR_DIR[:LR_DIR]',
                        help='a paired folder set (same file names; no LR_DIR: LR made by MATLAB bicubic); repeatable')
    parser.add_argument('--dataset-root', default=osp.join(REPO_ROOT, 'datasets'),
                        help='folder of the named sets (default: %(default)s)')
    parser.add_argument('--network-opt', default=None,
                        help='option file whose network_g builds the generator (default: the network_g the '
                        f'checkpoint records, else {DEFAULT_NETWORK_OPT})')
    parser.add_argument('--network', default=None, help='network_g inline as YAML/JSON, e.g. '
                        '\'{type: RRDBNet, num_in_ch: 3, num_out_ch: 3, num_block: 23}\'')
    parser.add_argument('--param-key', default='params', help="key of the weights in the file (default: "
                        "%(default)s; 'params_ema' for EMA weights)")
    parser.add_argument('--scale', type=int, default=None,
                        help='(default: the network\'s, from its options or a probe run; 4 for bicubic)')
    parser.add_argument('--crop-border', type=int, default=None, help='border pixels ignored by the metrics '
                        '(default: the scale)')
    parser.add_argument('--metrics', nargs='+', default=None, metavar='NAME',
                        help='metric columns (default: psnr_y ssim_y psnr_rgb ssim_rgb); the first ranks the '
                             'images unless --rank-by')
    parser.add_argument('--metric-opt', action='append', default=[], metavar='NAME=YAML',
                        help="extra keyword arguments of a metric, e.g. 'lpips={net: alex}'; repeatable")
    parser.add_argument('--rank-by', default=None, help='metric that picks the best/worst images')
    parser.add_argument('--show-results', type=int, default=0, metavar='N',
                        help='save the N best and N worst images of each set as LR | bicubic | output | HR PNGs')
    parser.add_argument('--out-dir', default=osp.join(REPO_ROOT, 'results', 'evaluate'),
                        help='where results.csv, results.json and pictures go (default: %(default)s)')
    parser.add_argument('--save-images', action='store_true', help='also save every output image')
    parser.add_argument('--tile', type=int, default=0, help='tile size in LR pixels (0: whole images)')
    parser.add_argument('--tile-pad', type=int, default=10)
    parser.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda', 'cuda:1', ... (default: auto)")
    parser.add_argument('--precision', choices=('fp32', 'bf16', 'fp16'), default='fp32',
                        help='numeric precision of the network (default: %(default)s; bf16 on CPU or CUDA, fp16 on '
                        'CUDA only): scores of bf16 differ from fp32 by the precision\'s rounding')
    parser.add_argument('--channels-last', action='store_true', help='channels_last memory layout of the weights')
    args = parser.parse_args(argv)
    args.datasets = [name.strip().lower() for entry in args.datasets for name in entry.split(',') if name.strip()]
    for name in args.datasets:
        if name not in BENCHMARK_SETS:
            parser.error(f'unknown dataset {name!r}; named sets: {", ".join(BENCHMARK_SETS)} (or use --dataset)')
    if not args.datasets and not args.dataset:
        parser.error('give at least one --datasets name or --dataset NAME=HR_DIR[:LR_DIR]')
    if args.network and args.network_opt:
        parser.error('give --network or --network-opt, not both')
    return args


def dataset_specs(args, scale):
    """[(name, hr_dir, lr_dir or None, template)] of the requested sets."""
    specs = []
    for name in args.datasets:
        hr, lr, template = BENCHMARK_SETS[name]
        hr_dir = osp.join(args.dataset_root, hr)
        lr_dir = osp.join(args.dataset_root, lr.format(s=scale))
        if not osp.isdir(hr_dir):
            raise SystemExit(f'error: dataset {name}: {hr_dir} does not exist; prepare it as datasets/README.md '
                             f'says (scripts/prepare_sr_benchmark.py)')
        specs.append((name, hr_dir, lr_dir if osp.isdir(lr_dir) else None, template.format('{}', s=scale)))
    for entry in args.dataset:
        name, _, folders = entry.partition('=')
        hr_dir, _, lr_dir = folders.partition(':') if not osp.isdir(folders) else (folders, '', '')
        if not name or not hr_dir:
            raise SystemExit(f'error: --dataset {entry!r}: expected NAME=HR_DIR[:LR_DIR]')
        for folder in (hr_dir, lr_dir):
            if folder and not osp.isdir(folder):
                raise SystemExit(f'error: --dataset {entry!r}: {folder} is not a folder')
        specs.append((name, hr_dir, lr_dir or None, '{}'))
    return specs


def _load_yaml(text_or_path, what):
    from ext.errors import OptionError
    from ext.utils.option_file import load_option_text, read_option_file
    try:
        if osp.isfile(text_or_path):
            return read_option_file(text_or_path)
        return load_option_text(text_or_path, what)
    except OptionError as error:
        raise SystemExit(f'error: {what}: {error}') from None


def build_upscaler(args):
    """The generator as ``ext.inference`` loads it (scripts/inference.py's loader), with the tiling options."""
    from ext.inference import Upscaler, UsageError, load_network
    network = None
    if args.network:
        network = _load_yaml(args.network, '--network')
        if not isinstance(network, dict) or 'type' not in network:
            raise SystemExit(f'error: the network options need a "type", got {network!r}')
    try:
        loaded = load_network(args.model, opt=args.network_opt, network=network, param_key=args.param_key,
                              default_opt=DEFAULT_NETWORK_OPT)
        return Upscaler(loaded, scale=args.scale, tile=args.tile, tile_pad=args.tile_pad, device=args.device,
                        precision=args.precision, channels_last=args.channels_last)
    except UsageError as error:
        raise SystemExit(f'error: {error}') from None


def crop_to_scale(image, scale):
    height, width = image.shape[:2]
    return image[:height - height % scale, :width - width % scale]


def load_pair(hr_path, lr_dir, template, scale):
    """(HR cropped to a multiple of the scale, LR, stem); LR made by MATLAB bicubic without ``lr_dir``."""
    from ext.utils.sr_benchmark import bicubic_downscale
    hr = crop_to_scale(read_image(hr_path, cv2.IMREAD_COLOR), scale)
    stem = osp.splitext(osp.basename(hr_path))[0]
    if lr_dir is None:
        return hr, bicubic_downscale(hr, scale), stem
    candidates = [name for name in os.listdir(lr_dir) if osp.splitext(name)[0] == template.format(stem)]
    if not candidates:
        raise UnreadableImage(f'{hr_path}: no LR image {template.format(stem)}.* in {lr_dir}')
    lr = read_image(osp.join(lr_dir, candidates[0]), cv2.IMREAD_COLOR)
    if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
        raise UnreadableImage(f'{osp.join(lr_dir, candidates[0])}: LR {lr.shape[1]}x{lr.shape[0]} does not match '
                              f'HR {hr.shape[1]}x{hr.shape[0]} / {scale}')
    return hr, lr, stem


def write_table(rows, columns, csv_path):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction='ignore')
    writer.writeheader()
    for row in rows:
        writer.writerow({key: (f'{value:.4f}' if isinstance(value, float) else value) for key, value in row.items()})
    atomic_write_text(csv_path, buffer.getvalue(), make_dirs=True)


def format_summary(summaries, metrics):
    header = ['dataset', 'images'] + [m.name for m in metrics] + [f'bicubic_{m.name}' for m in metrics]
    lines = [header]
    for name, summary in summaries.items():
        lines.append([name, str(summary['images'])] + [f"{summary[m.name]:.4f}" for m in metrics]
                     + [f"{summary['bicubic_' + m.name]:.4f}" for m in metrics])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return '\n'.join('  '.join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def main(argv=None):
    args = parse_args(argv)
    from tqdm import tqdm
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from ext.utils import sr_benchmark

    metric_kwargs = {}
    for entry in args.metric_opt:
        name, _, value = entry.partition('=')
        parsed = _load_yaml(value, f'--metric-opt {entry}')
        if not isinstance(parsed, dict):
            raise SystemExit(f'error: --metric-opt {entry!r}: expected NAME={{key: value, ...}}')
        metric_kwargs[name.strip()] = parsed
    try:
        metrics = sr_benchmark.resolve_metrics(args.metrics or sr_benchmark.DEFAULT_METRICS, metric_kwargs)
    except (KeyError, ValueError) as error:
        raise SystemExit(f'error: {error.args[0]}') from None
    names = [metric.name for metric in metrics]
    rank_metric = metrics[names.index(args.rank_by)] if args.rank_by in names else metrics[0]
    if args.rank_by and args.rank_by not in names:
        raise SystemExit(f'error: --rank-by {args.rank_by!r} is not among the metrics {names}')
    baseline_only = args.model == 'bicubic'
    upscaler = None if baseline_only else build_upscaler(args)
    scale = upscaler.scale if upscaler else args.scale or 4
    crop_border = scale if args.crop_border is None else args.crop_border
    if upscaler:
        print(f'{upscaler.description}: x{scale}', file=sys.stderr)
    specs = dataset_specs(args, scale)

    all_rows, summaries, failures = [], {}, []
    started = time.time()
    for name, hr_dir, lr_dir, template in specs:
        rows, pictures = [], {}
        for relative in tqdm(list_images(hr_dir, recursive=False), desc=name, unit='img', dynamic_ncols=True):
            try:
                hr, lr, stem = load_pair(osp.join(hr_dir, relative), lr_dir, template, scale)
            except UnreadableImage as error:
                failures.append(str(error))
                continue
            bicubic = sr_benchmark.bicubic_upscale(lr, scale)
            output = bicubic if baseline_only else upscaler.upscale(lr)
            row = {'dataset': name, 'image': stem}
            for metric in metrics:
                try:
                    row[metric.name] = metric(output, hr, crop_border)
                    row[f'bicubic_{metric.name}'] = metric(bicubic, hr, crop_border)
                except FileNotFoundError as error:  # e.g. LPIPS/DISTS weights not on disk
                    raise SystemExit(f'error: metric {metric.name} ({metric.type}): {error}') from None
            rows.append(row)
            if args.save_images:
                write_image(osp.join(args.out_dir, name, 'images', f'{stem}_sr.png'), output)
            if args.show_results:
                pictures[stem] = (lr, bicubic, output, hr)
                if len(pictures) > 4 * args.show_results + 8:  # keep only candidates for best/worst
                    order = [row['image'] for row in sr_benchmark.ranked(rows, rank_metric)]
                    keep = set(order[:args.show_results] + order[-args.show_results:])
                    pictures = {key: value for key, value in pictures.items() if key in keep}
        if not rows:
            failures.append(f'{name}: no image could be evaluated')
            continue
        summary = {'images': len(rows), **sr_benchmark.summarise(rows, metrics),
                   **sr_benchmark.summarise(rows, metrics, prefix='bicubic_')}
        summaries[name] = summary
        all_rows.extend(rows)
        if args.show_results:
            order = sr_benchmark.ranked(rows, rank_metric)
            count = min(args.show_results, len(order))
            chosen = [('best', i, row) for i, row in enumerate(order[:count], 1)]
            chosen += [('worst', i, row) for i, row in enumerate(reversed(order[-count:]), 1)]
            for kind, place, row in chosen:
                lr, bicubic, output, hr = pictures[row['image']]
                value = row[rank_metric.name]
                panels = [('LR (nearest)', sr_benchmark.nearest_upscale(lr, scale)),
                          (f"bicubic {row['bicubic_' + rank_metric.name]:.2f}", bicubic),
                          (f'output {value:.2f}', output), ('HR', hr)]
                path = osp.join(args.out_dir, name, f"{kind}{place}_{row['image']}.png")
                write_image(path, sr_benchmark.side_by_side(panels))

    if not summaries:
        report_unreadable(failures)
        raise SystemExit('error: nothing was evaluated')
    columns = ['dataset', 'image'] + names + [f'bicubic_{n}' for n in names]
    write_table(all_rows, columns, osp.join(args.out_dir, 'results.csv'))
    means = [{'dataset': name, 'image': f'MEAN ({summary["images"]} images)', **summary}
             for name, summary in summaries.items()]
    write_table(means, columns, osp.join(args.out_dir, 'summary.csv'))
    report = {'model': args.model, 'network_g': upscaler.loaded.network_opt if upscaler else None, 'scale': scale,
              'crop_border': crop_border,
              'metrics': {m.name: {'type': m.type, 'kwargs': m.kwargs, 'lower_is_better': m.lower_is_better}
                          for m in metrics},
              'summary': summaries, 'images': all_rows, 'unreadable': failures,
              'seconds': round(time.time() - started, 1)}
    atomic_write_text(osp.join(args.out_dir, 'results.json'),
                      json.dumps(report, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v)
                                 else str(v)), make_dirs=True)
    print(format_summary(summaries, metrics))
    print(f'per-image results: {osp.join(args.out_dir, "results.csv")}, summary.csv, results.json')
    report_unreadable(failures)
    return 0


if __name__ == '__main__':
    sys.exit(main())
