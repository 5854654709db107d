"""Plot a training run's losses and validation metrics as PNG files.

Reads BasicSR's tensorboard event files (``tb_logger/<name>/``; tags ``losses/l_*``,
``metrics/<dataset>/<metric>`` and other scalars such as ``out_d_real``) or, when there are none,
its text logs (``experiments/<name>/train_<name>_<time>.log``: the ``[... iter: N, lr:(...)]
l_g_pix: ...`` lines and the ``Validation <dataset> # <metric>: <value>`` blocks). The logs of a
resumed run are merged; a step logged twice keeps its latest value. Writes

- ``losses.png``: one panel per loss (generator and discriminator terms),
- ``metrics.png``: one panel per validation metric and dataset,
- ``other.png``: the remaining scalars (discriminator outputs, learning rate),

and prints their paths. ``--smooth`` overlays an exponential moving average on the raw curves.

Examples::

    python scripts/plot_curves.py --input experiments/demo_material_aesrgan --input tb_logger/demo_material_aesrgan
    python scripts/plot_curves.py --input experiments/my_run/train_my_run_20240101_120000.log --output plots/
"""
import argparse
import glob
import io
import math
import os
import os.path as osp
import re
import sys
from collections import defaultdict

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this checkout's ext, installed or not
from ext.utils.atomic_io import atomic_write_bytes  # noqa: E402

TRAIN_LINE = re.compile(r'\[epoch:\s*\d+, iter:\s*([\d,]+), lr:\(([^)]*)\)\]\s*(.*)$')
VALUE = re.compile(r'([A-Za-z_][\w/]*): ([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))')
VALIDATION = re.compile(r'Validation (\S+)\s*$')
METRIC = re.compile(r'^\s*# (\w+): ([-+]?[\d.]+(?:[eE][-+]?\d+)?|nan|inf)')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', action='append', required=True,
                        help='experiment folder, tensorboard folder, event file or train log; repeatable')
    parser.add_argument('--output', help='folder for the PNG files (default: <first input folder>/plots)')
    parser.add_argument('--source', choices=['auto', 'tensorboard', 'log'], default='auto',
                        help='auto: tensorboard events when present, else the train logs (default)')
    parser.add_argument('--smooth', type=float, default=0.0,
                        help='EMA weight in [0, 1) for a smoothed overlay, e.g. 0.9 (default: 0, off)')
    args = parser.parse_args(argv)
    if not 0 <= args.smooth < 1:
        parser.error(f'--smooth {args.smooth} must be in [0, 1)')
    for path in args.input:
        if not osp.exists(path):
            parser.error(f'--input {path!r} does not exist')
    if args.output is None:
        first = args.input[0]
        args.output = osp.join(first if osp.isdir(first) else osp.dirname(osp.abspath(first)), 'plots')
    return args


def find_files(inputs):
    """``(event files, train logs)`` under ``inputs``."""
    events, logs = [], []
    for path in inputs:
        if osp.isfile(path):
            (events if 'tfevents' in osp.basename(path) else logs).append(path)
        else:
            events += glob.glob(osp.join(path, '**', '*tfevents*'), recursive=True)
            logs += glob.glob(osp.join(path, '**', 'train_*.log'), recursive=True)
    return sorted(set(events)), sorted(set(logs))


def read_tensorboard(event_files):
    """``{tag: {step: value}}`` from event files; later writes of a step win (resumed runs)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    points = defaultdict(list)  # tag -> [(wall_time, step, value)]
    for path in event_files:
        accumulator = EventAccumulator(path, size_guidance={'scalars': 0})
        accumulator.Reload()
        for tag in accumulator.Tags().get('scalars', []):
            points[tag] += [(event.wall_time, event.step, event.value) for event in accumulator.Scalars(tag)]
    series = {}
    for tag, values in points.items():
        series[tag] = {step: value for _, step, value in sorted(values)}
    return series


def read_logs(log_files):
    """``{tag: {step: value}}`` from BasicSR train logs, tagged like BasicSR's tensorboard scalars."""
    series = defaultdict(dict)
    for path in log_files:  # BasicSR names them train_<name>_<time>.log: sorted = chronological
        step, dataset = None, None
        with open(path, encoding='utf-8', errors='replace') as handle:
            for line in handle:
                train = TRAIN_LINE.search(line)
                if train:
                    step, dataset = int(train.group(1).replace(',', '')), None
                    learning_rates = [float(v) for v in train.group(2).split(',') if v.strip()]
                    for index, value in enumerate(learning_rates):
                        series['lr' if len(learning_rates) == 1 else f'lr_{index}'][step] = value
                    rest = re.sub(r'^\[eta:[^\]]*\]\s*', '', train.group(3))
                    for key, value in VALUE.findall(rest):
                        series[f'losses/{key}' if key.startswith('l_') else key][step] = float(value)
                    continue
                validation = VALIDATION.search(line)
                if validation:
                    dataset = validation.group(1)
                    continue
                metric = METRIC.search(line)
                if metric and dataset is not None and step is not None:
                    series[f'metrics/{dataset}/{metric.group(1)}'][step] = float(metric.group(2))
    return dict(series)


def group_series(series):
    groups = {'losses': {}, 'metrics': {}, 'other': {}}
    for tag, values in sorted(series.items()):
        if not values:
            continue
        head = tag.split('/', 1)[0]
        groups[head if head in ('losses', 'metrics') else 'other'][tag] = values
    return groups


def ema(values, weight):
    smoothed, current = [], None
    for value in values:
        current = value if current is None or not math.isfinite(current) else weight * current + (1 - weight) * value
        smoothed.append(current)
    return smoothed


def plot_group(title, series, path, smooth):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    columns = min(3, len(series))
    rows = math.ceil(len(series) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.4 * rows), squeeze=False)
    for axis, (tag, values) in zip(axes.flat, series.items()):
        steps = sorted(values)
        ys = [values[step] for step in steps]
        marker = 'o' if len(steps) <= 30 else None
        axis.plot(steps, ys, linewidth=1, marker=marker, markersize=3, alpha=0.4 if smooth else 1.0)
        if smooth and len(steps) > 2:
            axis.plot(steps, ema(ys, smooth), linewidth=2)
        axis.set_title(tag.split('/', 1)[1] if tag.startswith(('losses/', 'metrics/')) else tag, fontsize=10)
        axis.set_xlabel('iteration')
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(series):]:
        axis.axis('off')
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=100)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue(), make_dirs=True)


def main(argv=None):
    args = parse_args(argv)
    events, logs = find_files(args.input)
    if args.source == 'tensorboard' or (args.source == 'auto' and events):
        if not events:
            raise SystemExit(f'error: no tensorboard event files under {args.input}')
        series, used = read_tensorboard(events), events
    else:
        if not logs:
            raise SystemExit(f'error: no tensorboard event files or train_*.log files under {args.input}')
        series, used = read_logs(logs), logs
    groups = group_series(series)
    if not any(groups.values()):
        raise SystemExit(f'error: no scalars found in {", ".join(used)}')
    os.makedirs(args.output, exist_ok=True)
    titles = {'losses': 'training losses', 'metrics': 'validation metrics', 'other': 'other training scalars'}
    print(f'read {sum(len(v) for v in series.values())} points of {len(series)} series from {len(used)} file(s)')
    for name, members in groups.items():
        if members:
            path = osp.join(args.output, f'{name}.png')
            plot_group(titles[name], members, path, args.smooth)
            print(f'{titles[name]}: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
