"""Probe the from-scratch demo's A-ESRGAN stage: train a variant of its options, score it on validation photos.

Why it exists: ``scripts/run_demo.py --from_scratch`` trains Real-ESRNet, then an A-ESRGAN stage from it, and that
stage collapsed (streaks, colour cast, border frame). This script reruns the stage from a finished demo's
option file with some keys changed (``--set train.optim_g.lr=1e-5``, YAML values), through ``ext/train.py``
on one thread, and scores its generator (EMA), every saved checkpoint and the Real-ESRNet generator it starts
from on the demo's *validation* photos (astronaut 256 px, chelsea 304 px; never on held-out ones): clean x4
area downscales and ``--draws`` degradations of each made the training way (fixed seeds). Per generator: PSNR-Y
against the original, the border error ratio (outer 4 px / interior), the per-channel mean colour offset and
the texture ratio (mean |Laplacian| of the output over the original's). Writes ``<workdir>/<variant>.json``
and a picture of centre crops (bicubic | Real-ESRNet | checkpoints ... | original).

    python benchmarks/aesrgan_stage_probe.py --base results/demo_scratch/demo_material_aesrgan.yml \\
        --variant gan0 --set train.gan_opt.loss_weight=0
"""
import argparse
import copy
import glob
import json
import os
import os.path as osp
import re
import sys

import cv2
import numpy as np
import yaml

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, osp.join(REPO_ROOT, 'benchmarks', 'learning'))

VALIDATION = (('astronaut', 256), ('chelsea', 304))  # the demo's validation photos and sizes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--base', required=True, help="the finished demo's A-ESRGAN option file")
    parser.add_argument('--variant', required=True, help='name of this variant (its experiment and JSON)')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='dotted option key and YAML value to change; repeatable')
    parser.add_argument('--workdir', default=osp.join(REPO_ROOT, 'results', 'aesrgan_probe'))
    parser.add_argument('--draws', type=int, default=4, help='degradations per photo (default: %(default)s)')
    parser.add_argument('--score_only', action='store_true', help='score the base run itself (no training)')
    return parser.parse_args(argv)


def variant_options(base, variant, settings, workdir):
    opt = copy.deepcopy(base)
    for setting in settings:
        key, value = setting.split('=', 1)
        *parents, leaf = key.split('.')
        node = opt
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = yaml.safe_load(value)
    opt['name'] = f'probe_{variant}'
    opt['path']['experiments_root'] = osp.join(workdir, 'experiments', opt['name'])
    return opt


def checkpoints(experiment):
    """{iteration: path} of the saved generators, the final one included."""
    found = {}
    for path in glob.glob(osp.join(experiment, 'models', 'net_g_*.pth')):
        match = re.search(r'net_g_(\d+)\.pth$', path)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def scored_inputs(option, draws):
    import common
    from ext.data.degraded_pairs import TrainingDegradation
    degradations = [TrainingDegradation(option, seed=1 + draw) for draw in range(draws)]
    inputs = []
    for name, side in VALIDATION:
        original = common.crop_to_multiple(common.photo_rgb(name, side), 4)
        h, w = original.shape[:2]
        inputs.append((name, 'clean', original, cv2.resize(original, (w // 4, h // 4), interpolation=cv2.INTER_AREA)))
        inputs += [(name, f'draw {d + 1}', original, degrade.uint8(original, name))
                   for d, degrade in enumerate(degradations)]
    return inputs


def score(image, original):
    import common
    from ext.metrics.output_bias import border_error_ratio, mean_colour_offset
    return {'psnr': common.psnr_y(image, original), 'border_ratio': border_error_ratio(image, original),
            'colour_offset': mean_colour_offset(image, original, crop_border=4),
            'texture_ratio': common.texture_ratio(image, original)}


def summarise(rows):
    """Means over the clean inputs and over the degraded ones."""
    out = {}
    for kind in ('clean', 'degraded'):
        picked = [r for r in rows if (r['input'] == 'clean') == (kind == 'clean')]
        out[kind] = {'psnr': float(np.mean([r['psnr'] for r in picked])),
                     'border_ratio_worst': float(max(r['border_ratio'] for r in picked)),
                     'colour_offset_mean': [float(np.mean([r['colour_offset'][c] for r in picked])) for c in range(3)],
                     'colour_offset_worst': float(max(max(abs(v) for v in r['colour_offset']) for r in picked)),
                     'texture_ratio': float(np.mean([r['texture_ratio'] for r in picked]))}
    return out


def main(argv=None):
    args = parse_args(argv)
    import torch
    import common
    torch.set_num_threads(1)
    with open(args.base, encoding='utf-8') as handle:
        base = yaml.safe_load(handle)
    os.makedirs(args.workdir, exist_ok=True)
    if args.score_only:
        experiment, times = base['path']['experiments_root'], {}
    else:
        opt = variant_options(base, args.variant, args.set, args.workdir)
        times = common.timed_training(opt, args.workdir, threads=1)
        experiment = opt['path']['experiments_root']
    generators = {'init': base['path']['pretrain_network_g'],
                  **{f'it{k}': p for k, p in checkpoints(experiment).items()}}
    network = base['network_g']
    inputs = scored_inputs(base, args.draws)
    results, pictures = {}, {}
    for label, path in generators.items():
        net = common.load_generator(network, path, 'params_ema')
        rows = []
        for name, kind, original, lq in inputs:
            with torch.no_grad():
                output = common.to_rgb(net(common.to_tensor(lq)))
            rows.append({'photo': name, 'input': kind, **score(output, original)})
            if kind in ('clean', 'draw 1'):
                panels = pictures.setdefault((name, kind), {'bicubic': common.bicubic_up(lq, 4), 'original': original})
                panels[label] = output
        results[label] = {'summary': summarise(rows), 'per_input': rows}
        rounded = {kind: {m: round(v, 3) if isinstance(v, float) else [round(x, 2) for x in v] for m, v in s.items()}
                   for kind, s in results[label]['summary'].items()}
        print(f'{args.variant} {label}: {json.dumps(rounded)}', flush=True)
    from ext.utils import run_record
    from ext.utils.atomic_io import atomic_write_text
    record = {'variant': args.variant, 'settings': args.set, 'training': times, 'results': results,
              **run_record.record(REPO_ROOT, 1, 'full')}
    atomic_write_text(osp.join(args.workdir, f'{args.variant}.json'), json.dumps(record, indent=1))
    rows = [common.crop_row([images['bicubic'], *(images[label] for label in generators), images['original']], 112)
            for images in pictures.values()]
    print('picture:', common.write_rows(osp.join(args.workdir, f'{args.variant}.png'), rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
