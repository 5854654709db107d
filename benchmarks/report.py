#!/usr/bin/env python
"""Write the measured figures into README.md and docs/ from the committed JSON of the last runs.

No figure in the docs is typed by hand: every table of measurements sits between two markers,

    <!-- generated:NAME -->
    ...
    <!-- end generated -->

and this script rewrites what is between them from the JSON files the benchmarks and the demo write
(``docs/host_fixes.md`` is generated whole, from the ``PATCHES`` table of ``ext/engine/patching.py`` and
the import shim of ``ext/compat.py``). Every table names the machine (CPU model, cores, threads, load
average; the GPU where there is one), the date, the command and the budget recorded in its JSON; a field
the JSON does not record is said to be missing. A measurement whose JSON is not committed yet is shown as
"not measured yet" with the command that makes it.

Inputs (under --root; paths relative to it):

- ``benchmarks/results/learning/<recipe>.json``: ``benchmarks/bench_learning.py`` at the full budget, one per
  recipe of ``benchmarks/learning/recipe_<recipe>.py``;
- ``benchmarks/results/demo/finetune.json``, ``benchmarks/results/demo/from_scratch.json``:
  ``scripts/run_demo.py --json ...``;
- ``benchmarks/results/color_fix_x4plus.json`` (``bench_color_fix.py``),
  ``benchmarks/results/tile_seams_x4plus_*.json`` (``bench_tile_seams.py``),
  ``benchmarks/results/tiled_inference.json`` (``bench_tiled_inference.py``),
  ``benchmarks/results/train_step_cpu.json`` (``bench_train_step.py``),
  ``benchmarks/results/gpu_suite.json`` (``gpu_suite.py``, on a GPU).

Outputs: the generated regions of README.md and docs/**/*.md, and docs/host_fixes.md.

  python benchmarks/report.py              # rewrite every generated region
  python benchmarks/report.py --check      # exit 1 when a committed page differs (prints a diff); writes nothing
  python benchmarks/report.py --list       # which region comes from which JSON
"""
import argparse
import ast
import difflib
import glob
import json
import os
import os.path as osp
import re
import sys

BENCH_DIR = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(BENCH_DIR)
RECIPE_DIR = osp.join(BENCH_DIR, 'learning')

MARKER = re.compile(r'<!-- generated:(?P<name>[\w.-]+) -->\n(?P<body>.*?)<!-- end generated -->', re.S)
LEARNING_COMMAND = 'python benchmarks/bench_learning.py --recipes {recipes}'
DEMO_JSON = {'finetune': 'benchmarks/results/demo/finetune.json',
             'from_scratch': 'benchmarks/results/demo/from_scratch.json'}
DEMO_COMMAND = {'finetune': 'python scripts/run_demo.py --json benchmarks/results/demo/finetune.json',
                'from_scratch': 'python scripts/run_demo.py --from_scratch '
                                '--json benchmarks/results/demo/from_scratch.json'}
COLOR_FIX_JSON = 'benchmarks/results/color_fix_x4plus.json'
COLOR_FIX_COMMAND = ('python benchmarks/bench_color_fix.py --model_path RealESRGAN_x4plus.pth '
                     '--json benchmarks/results/color_fix_x4plus.json')
TILE_SEAMS_JSON = {'tile_seams_x4plus_reduced4.json': 'the bundled photos reduced x4',
                   'tile_seams_x4plus_crops.json': 'top-left crops of photos reduced x2'}
TILE_SEAMS_COMMAND = ('python benchmarks/bench_tile_seams.py --model_path RealESRGAN_x4plus.pth --tiles 64 128 '
                      '--pads probe1 auto --json benchmarks/results/tile_seams_x4plus.json')
TILED_JSON = 'benchmarks/results/tiled_inference.json'
TILED_COMMAND = {'precision': 'python benchmarks/bench_tiled_inference.py --sections precision',
                 'memory': 'python benchmarks/bench_tiled_inference.py --sections memory',
                 'tiling': 'python benchmarks/bench_tiled_inference.py --sections tiling'}
TRAIN_STEP_JSON = 'benchmarks/results/train_step_cpu.json'
TRAIN_STEP_COMMAND = ('python benchmarks/bench_train_step.py --device cpu --threads 2 '
                      '--json benchmarks/results/train_step_cpu.json')
GPU_JSON = 'benchmarks/results/gpu_suite.json'
GPU_COMMAND = 'python benchmarks/gpu_suite.py'

# The methods of the README's table: (title, papers, option files shown, more option files, docs page, recipes
# with the label of each in the headline column).
METHODS = (
    dict(title='A-ESRGAN on Real-ESRGAN degradations (Real-ESRNet, then the GAN)',
         papers=[('A-ESRGAN', 'https://arxiv.org/abs/2112.10046'), ('Real-ESRGAN', 'https://arxiv.org/abs/2107.10833')],
         options=['train_realesrnet_x4plus.yml', 'train_multiaesrgan_x4plus.yml'],
         more='x2, x1, single-D, fine-tunes', page='docs/methods/aesrgan.md',
         recipes=[('esrnet_scratch', 'Real-ESRNet from scratch'), ('x4plus_finetune', 'x4plus fine-tune')]),
    dict(title='ESRGAN two-stage recipe (PSNR, then relativistic GAN)',
         papers=[('ESRGAN', 'https://arxiv.org/abs/1809.00219')],
         options=['train_esrgan_psnr_x4.yml', 'train_esrgan_x4.yml', 'test_esrgan_x4.yml'], more='',
         page='docs/methods/esrgan.md', recipes=[('esrgan_psnr', 'PSNR stage')]),
    dict(title='TTSR reference-based SR (CUFED)',
         papers=[('TTSR', 'https://openaccess.thecvf.com/content_CVPR_2020/html/Yang_Learning_Texture_Transformer_'
                          'Network_for_Image_Super-Resolution_CVPR_2020_paper.html')],
         options=['train_ttsr_rec_cufed.yml', 'train_ttsr_cufed.yml', 'test_ttsr_cufed5.yml'], more='',
         page='docs/methods/ttsr.md', recipes=[('ttsr_ref', 'TTSR-rec')]),
    dict(title='TTSR blurred-box face inpainting (FFHQ)',
         papers=[('TTSR', 'https://openaccess.thecvf.com/content_CVPR_2020/html/Yang_Learning_Texture_Transformer_'
                          'Network_for_Image_Super-Resolution_CVPR_2020_paper.html')],
         options=['train_ttsr_ffhq_inpaint_160.yml', 'train_ttsr_ffhq_inpaint_384.yml'],
         more='test', page='docs/methods/ffhq_inpaint.md', recipes=[('ttsr_inpaint', 'box restoration')]),
    dict(title='pix2pix and VGG-encoder U-Net inpainting GANs',
         papers=[('pix2pix', 'https://arxiv.org/abs/1611.07004')],
         options=['train_pix2pix_inpaint_256.yml', 'train_vgg_inpaint_512.yml'], more='512 px, test',
         page='docs/methods/pix2pix_inpaint.md', recipes=[('pix2pix_inpaint', 'hole filling')]),
)


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
def read_json(root, relative):
    """The parsed JSON at ``root/relative``, or None when it is not there."""
    path = osp.join(root, relative)
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as handle:
        return json.load(handle)


def recipe_names():
    """Every recipe of ``benchmarks/learning/recipe_<name>.py``, in name order."""
    return sorted(osp.basename(path)[len('recipe_'):-3] for path in glob.glob(osp.join(RECIPE_DIR, 'recipe_*.py')))


def recipe_title(name):
    """The recipe's ``TITLE``, read from its source (no import: nothing runs)."""
    with open(osp.join(RECIPE_DIR, f'recipe_{name}.py'), encoding='utf-8') as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'TITLE' for t in node.targets):
            return ast.literal_eval(node.value)
    return name


def learning_path(recipe):
    return f'benchmarks/results/learning/{recipe}.json'


# --------------------------------------------------------------------------------------------------
# formatting helpers
# --------------------------------------------------------------------------------------------------
def cell(text):
    return str(text).replace('|', '/').replace('\n', ' ')


def table(header, rows):
    lines = ['| ' + ' | '.join(cell(h) for h in header) + ' |', '| ' + ' | '.join('---' for _ in header) + ' |']
    lines += ['| ' + ' | '.join(cell(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)


def number(value, spec='.3f'):
    return format(value, spec) if isinstance(value, (int, float)) and value == value else '-'


def spread(summary, signed=False, spec='.3f'):
    form = ('+' if signed else '') + spec
    return f"{format(summary['mean'], form)} [{format(summary['min'], form)}, {format(summary['max'], form)}]"


def not_measured(command, why=''):
    return f'*Not measured yet{why}* (run: `{command}`).\n'


def as_command(recorded):
    """A recorded command line (``script args``) as the command a reader runs."""
    return recorded if recorded.startswith(('python', 'make')) else f'python {recorded}'


def provenance(*, machine=None, date=None, command=None, budget=None, commit=None, uncommitted=None, gpu=None,
               missing_note=''):
    """One line naming where, when and how a table was measured, from what its JSON records."""
    parts = []
    if gpu:
        parts.append(f'GPU: {gpu}')
    if isinstance(machine, dict):
        what = f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, {machine.get('threads', '?')} " \
               f"thread{'s' if machine.get('threads') != 1 else ''}"
        load = machine.get('load_average')
        if load:
            what += ', load average ' + ' / '.join(f'{v:.1f}' for v in load) + ' at the start'
        parts.append(f'machine: {what}')
    elif machine:
        parts.append(f'machine: {machine} (CPU model not recorded)')
    else:
        parts.append('machine: not recorded')
    parts.append(f'date: {date[:10]} {date[11:16]}' if date else 'date: not recorded')
    parts.append(f'budget: {budget}' if budget else 'budget: not recorded')
    if commit:
        dirty = f' with uncommitted changes to {len(uncommitted)} file(s)' if uncommitted else ''
        parts.append(f'commit {commit[:7]}{dirty}')
    parts.append(f'command: `{as_command(command)}`' if command else 'command: not recorded')
    return '*' + '; '.join(parts) + '.*' + (f' {missing_note}' if missing_note else '') + '\n'


def record_provenance(record, **extra):
    return provenance(machine=record.get('machine'), date=record.get('date'), command=record.get('command'),
                      budget=record.get('budget'), commit=record.get('commit'),
                      uncommitted=record.get('uncommitted_changes'), **extra)


SPLIT_NAMES = {'validation': 'validation', 'held_out': 'held-out'}


# --------------------------------------------------------------------------------------------------
# learning checks (benchmarks/bench_learning.py)
# --------------------------------------------------------------------------------------------------
def headline(record, label=None):
    """The held-out gain over the strongest baseline, mean of the seeds [min, max], in one short line."""
    table_ = record['figures']['held_out']
    gain = table_['model_gain']
    failed = [c for c in record['checks'] if not c['ok']]
    seeds = len(record['seeds'])
    verdict = 'checks pass' if not failed else f'{len(failed)} of {len(record["checks"])} checks FAIL'
    smoke = '' if record.get('budget') == 'full' else f' ({record.get("budget")} budget: says nothing)'
    text = (f"{spread(gain, signed=True, spec='.2f')} {record['metric']} over {table_['strongest_baseline']}, "
            f"{seeds} seed{'s' if seeds != 1 else ''}, {verdict}{smoke}")
    return f'{label}: {text}' if label else text


def details_tables(record):
    """Per-photo tables of the recipe's details ({photo: {entry: value}}), mean over the seeds."""
    out = []
    seeds = record['per_seed']
    keys = [k for k, v in seeds[0].get('details', {}).items()
            if isinstance(v, dict) and v and all(isinstance(row, dict) for row in v.values())
            and all(isinstance(x, (int, float)) for row in v.values() for x in row.values())]
    for key in keys:
        rows_by_seed = [s.get('details', {}).get(key) for s in seeds]
        if any(not isinstance(r, dict) or set(r) != set(rows_by_seed[0]) for r in rows_by_seed):
            continue
        photos = list(rows_by_seed[0])
        entries = list(rows_by_seed[0][photos[0]])
        rows = []
        for photo in photos:
            values = []
            for entry in entries:
                per_seed = [r[photo].get(entry) for r in rows_by_seed]
                values.append(number(sum(per_seed) / len(per_seed)) if None not in per_seed else '-')
            rows.append([photo, *values])
        label = key.replace('held_out', 'held-out')
        out.append(f'{label[:1].upper()}{label[1:]}, mean over the seeds:\n\n' + table(['photo', *entries], rows))
    return out


def describe_check(check, record):
    gain, control = check['subject_gain'], check['control_gain']
    control_name = record['control'] if check['control'] == 'control' else check['control']
    verdict = 'PASS' if check['ok'] else 'FAIL'
    line = (f"**{verdict}** {check['name']} ({SPLIT_NAMES.get(check['split'], check['split'])}, {check['metric']}): "
            f"{check['subject']} − {gain['reference']} = {spread(gain, signed=True)} over the seeds, needs > "
            f"{check['min_gain']:+g}; won {gain['won']}/{gain['items']}. Control ({control_name}): "
            f"{control['mean']:+.3f}")
    if check['kind'] == 'learning':
        line += ', which fails it, as it must.' if not check['control_passes'] else \
            ', which PASSES it: the check cannot tell learning from nothing.'
    else:
        line += ' (a guard: the control passes it too).' if check['control_passes'] else ' (a guard).'
    return line


def render_learning(root, recipe):
    """The full results of one recipe: provenance, both splits, weaker baselines, other metrics, checks, time."""
    record = read_json(root, learning_path(recipe))
    if record is None:
        return not_measured(LEARNING_COMMAND.format(recipes=recipe),
                            f' (no `{learning_path(recipe)}`; the full budget writes it)')
    seeds = ', '.join(str(s) for s in record['seeds'])
    lower = ' (lower is better)' if record.get('lower_is_better') else ''
    out = [f"**{record['title']}** (`{recipe}`). Metric: {record['metric']}{lower}; seeds {seeds}; mean over the "
           f"seeds with [min, max]. Control: {record['control']}.", '', record_provenance(record)]
    if record.get('budget') != 'full':
        out += ['*This is a ' + str(record.get('budget')) + ' run: a few iterations, the figures say nothing about '
                'learning.*', '']
    rows = []
    for split in ('validation', 'held_out'):
        figures = record['figures'][split]
        strongest = figures['strongest_baseline']
        gain = figures['model_gain']
        photos = ', '.join(record['splits'].get(split, []))
        rows.append([f'{SPLIT_NAMES[split]} ({photos})', len(figures['items']),
                     f"{strongest} {number(figures['entries'][strongest]['mean'])}",
                     spread(figures['entries']['control']), spread(figures['entries']['model']),
                     spread(gain, signed=True), f"{gain['won']}/{gain['items']}"])
    out += [table(['split (photos)', 'items', 'strongest baseline', 'control', 'model', 'gain over the baseline',
                   'won'], rows), '']
    for split in ('validation', 'held_out'):
        figures = record['figures'][split]
        weaker = [f"{b} {number(figures['entries'][b]['mean'])}" for b in record['baselines']
                  if b != figures['strongest_baseline'] and b in figures['entries']]
        others = [f"{e} {spread(s)}" for e, s in figures['entries'].items()
                  if e not in record['baselines'] and e not in ('model', 'control')]
        line = f"- {SPLIT_NAMES[split]}: weaker baselines {'; '.join(weaker) or 'none'}"
        out.append(line + (f"; also {'; '.join(others)}" if others else '') + '.')
    out.append('')
    other_rows = []
    for split in ('validation', 'held_out'):
        for metric, entries in record['figures'][split].get('other_metrics', {}).items():
            for entry, summary in entries.items():
                if entry != 'items':
                    other_rows.append([SPLIT_NAMES[split], metric, entry, spread(summary)])
    if other_rows:
        out += ['Other metrics:', '', table(['split', 'metric', 'entry', 'mean [min, max]'], other_rows), '']
    enforced = '' if record.get('checks_enforced') else ' (not enforced at this budget)'
    out += [f'Checks{enforced}:', '']
    out += [f'- {describe_check(c, record)}' for c in record['checks']]
    out.append('')
    times = []
    for seed in record['per_seed']:
        training = seed.get('training', {})
        iterations = f", {training['iterations']} iterations" if 'iterations' in training else ''
        times.append(f"seed {seed['seed']}: {training.get('wall_s', 0):.0f} s wall, {training.get('cpu_s', 0):.0f} s "
                     f"CPU{iterations}")
    out += ['Training time: ' + '; '.join(times) + '.', '']
    for details in details_tables(record):
        out += [details, '']
    pictures = [p for p in record.get('pictures', []) if not osp.isabs(p) and osp.isfile(osp.join(root, p))]
    if pictures:
        out += ['Pictures (seed 0): ' + ', '.join(f'[{osp.basename(p)}](/{p})' for p in pictures) + '.', '']
    return '\n'.join(out).rstrip() + '\n'


def render_learning_summary(root):
    rows = []
    for method in METHODS:
        for recipe, label in method['recipes']:
            record = read_json(root, learning_path(recipe))
            page = f"[{label}](/{method['page']})"
            if record is None:
                rows.append([page, f'`{recipe}`', 'not measured yet', '', '', '',
                             f"`{LEARNING_COMMAND.format(recipes=recipe)}`"])
                continue
            held_out = record['figures']['held_out']
            failed = sum(not c['ok'] for c in record['checks'])
            date = (record.get('date') or '')[:10] or 'not recorded'
            rows.append([page, f'`{recipe}`', f"{record['metric']}: {spread(held_out['entries']['model'])}",
                         f"{held_out['strongest_baseline']} {number(held_out['entries'][held_out['strongest_baseline']]['mean'])}",
                         spread(held_out['model_gain'], signed=True),
                         'all pass' if not failed else f'{failed} FAIL',
                         f"{len(record['seeds'])} seeds, {record.get('budget')} budget, {date}"])
    listed = {recipe for method in METHODS for recipe, _ in method['recipes']}
    for recipe in recipe_names():
        if recipe not in listed:
            rows.append([recipe_title(recipe), f'`{recipe}`', '(no method page)', '', '', '', ''])
    return table(['method', 'recipe', 'held-out: model, mean [min, max]', 'strongest baseline',
                  'gain [min, max]', 'checks', 'run'], rows) + '\n'


def render_methods(root):
    """The README's table of methods; the last column is each recipe's held-out headline."""
    rows = []
    for method in METHODS:
        papers = ', '.join(f'[{name}]({url})' for name, url in method['papers'])
        options = ', '.join(f'[`{o}`](/options/{o})' for o in method['options'])
        if method['more']:
            options += f" (+ {method['more']})"
        measured = []
        missing = []
        for recipe, label in method['recipes']:
            record = read_json(root, learning_path(recipe))
            if record is None:
                missing.append(recipe)
            else:
                measured.append(headline(record, label))
        if missing:
            measured.append(f"not measured yet: `{LEARNING_COMMAND.format(recipes=' '.join(missing))}`")
        rows.append([method['title'], papers, options, f"[{osp.basename(method['page'])}](/{method['page']})",
                     '<br>'.join(measured)])
    return table(['method', 'paper', 'option files', 'docs', 'measured on held-out photos (mean of seeds [min, max])'],
                 rows) + '\n'


# --------------------------------------------------------------------------------------------------
# the demo (scripts/run_demo.py --json)
# --------------------------------------------------------------------------------------------------
def render_demo(root, path, splits=None):
    """The demo's score tables (of ``splits``, default all) and its checks."""
    record = read_json(root, DEMO_JSON[path])
    if record is None:
        return not_measured(DEMO_COMMAND[path], f' (no `{DEMO_JSON[path]}`)')
    captions = dict(record.get('methods', {}))
    out = [record_provenance(record)]
    for split, kinds in record.get('summary', {}).items():
        if splits and split not in splits:
            continue
        photos = ', '.join(record.get('splits', {}).get(split, []))
        for kind, methods in kinds.items():
            what = 'downscaled x4 (area)' if kind == 'clean' else \
                f"degraded the training way ({record.get('degraded_draws', '?')} draw(s) each)"
            rows = [[captions.get(m, m), number(v['niqe'], '.2f'), number(v['psnr'], '.2f'), number(v['ssim']),
                     '/'.join(f'{c:+.1f}' for c in v['colour_offset']), number(v['border_ratio_worst'], '.2f')]
                    for m, v in methods.items()]
            out += [f'{SPLIT_NAMES.get(split, split)} photos ({photos}), {what}:', '',
                    table(['method', 'NIQE (lower is better)', 'PSNR-Y (dB)', 'SSIM-Y', 'colour offset R/G/B',
                           'border ratio (worst)'], rows), '']
    checks = record.get('checks', [])
    if checks:
        out += ['Checks' + ('' if record.get('checks_enforced', True) else ' (not enforced at this budget)') + ':', '']
        for c in checks:
            control = f"control ({c['control']}): {c['control_value']:+.3f}"
            out.append(f"- **{'PASS' if c['ok'] else 'FAIL'}** {c['check']}; {control}.")
        out.append('')
    if record.get('seconds') is not None:
        out += [f"Whole run: {record['seconds']} s wall.", '']
    return '\n'.join(out).rstrip() + '\n'


STAGE_PROBES_DIR = 'benchmarks/results/demo/scratch_stage_probes'
# The probes of the from-scratch demo's A-ESRGAN stage (benchmarks/aesrgan_stage_probe.py), in the order told
STAGE_PROBES = (
    ('base', "upstream's settings as the demo ran them: GAN 0.1, L1 1, D lr 1e-4 (scored, not retrained)"),
    ('gan0', 'GAN weight 0'),
    ('gan001', 'GAN weight 0.01'),
    ('warmup50', '50-iteration generator lr warm-up'),
    ('pix5', 'L1 weight 5 (a stand-in for the missing perceptual term)'),
    ('dlr3e5', 'discriminator lr 3e-5'),
    ('dlr', 'discriminator lr 1e-5'),
    ('dlr_mse', 'discriminator lr 1e-5, MSE instead of L1 (the chosen settings)'),
    ('dlr_mse_glr', 'discriminator lr 1e-5, MSE, generator lr 2e-5'),
)


def render_stage_probes(root):
    """The A-ESRGAN stage probes on the demo's validation photos: each variant's drift from Real-ESRNet."""
    rows, first = [], None
    for name, label in STAGE_PROBES:
        record = read_json(root, f'{STAGE_PROBES_DIR}/{name}.json')
        if record is None:
            continue
        first = first or record
        results, start = record['results'], record['results']['init']
        last = max((k for k in results if k != 'init'), key=lambda k: int(k[2:]))
        summary = {k: v['summary'] for k, v in results.items()}
        shift = max(abs(a - b) for now, then in zip(results[last]['per_input'], start['per_input'])
                    for a, b in zip(now['colour_offset'], then['colour_offset']))
        curve = ' / '.join(number(summary[k]['degraded']['psnr'], '.2f') for k in results if k != 'init')
        rows.append([label, curve, number(start['summary']['degraded']['psnr'] - summary[last]['degraded']['psnr'], '.2f'),
                     number(max(summary[last][k]['border_ratio_worst'] for k in ('clean', 'degraded')), '.2f'),
                     number(shift, '.1f'), number(summary[last]['degraded']['texture_ratio']),
                     number(record['training'].get('cpu_s'), '.0f') if record.get('training') else '-'])
    if not rows:
        return not_measured('python benchmarks/aesrgan_stage_probe.py --base RUN/demo_material_aesrgan.yml '
                            '--variant NAME --set KEY=VALUE', f' (nothing in `{STAGE_PROBES_DIR}`)')
    start = first['results']['init']['summary']
    note = first.get('provenance_note')
    return '\n'.join([
        record_provenance(first, missing_note=f'({note}.)' if note else '').rstrip(),
        '',
        table(['variant', 'PSNR-Y degraded, per checkpoint (dB)', 'drop at the end (dB)', 'border ratio (worst)',
               'largest colour shift', 'texture ratio', 'CPU s'], rows),
        '',
        f"The start, the Real-ESRNet stage: {number(start['degraded']['psnr'], '.2f')} dB on the degraded inputs, "
        f"border ratio {number(max(start[k]['border_ratio_worst'] for k in ('clean', 'degraded')), '.2f')}, "
        f"texture ratio {number(start['degraded']['texture_ratio'])}.",
    ]) + '\n'


# --------------------------------------------------------------------------------------------------
# inference quality: colour fix, tile seams
# --------------------------------------------------------------------------------------------------
def legacy_provenance(data, script):
    """Provenance of a JSON written before the benchmarks recorded machine, date and command."""
    if isinstance(data.get('machine'), dict):
        return record_provenance(data)
    threads = f", {data['threads']} threads" if data.get('threads') else ''
    return provenance(machine=f"{data.get('machine', '?')}, {data.get('device', '?')}{threads}, torch "
                              f"{data.get('torch', '?')}",
                      missing_note=f'This JSON predates the recording of CPU model, date and command: it was made '
                                   f'by `{script}`; rerun it to record them.')


def render_color_fix(root):
    data = read_json(root, COLOR_FIX_JSON)
    if data is None:
        return not_measured(COLOR_FIX_COMMAND)
    photos = list(data['photos'])
    modes = list(data['mean_over_photos'])
    rows = []
    for mode in modes:
        mean = data['mean_over_photos'][mode]
        rows.append([mode, number(mean['mean_abs_offset']), number(mean['psnr_rgb'], '.2f'),
                     *[number(data['photos'][p]['modes'][mode]['psnr_rgb'], '.2f') for p in photos]])
    sizes = ', '.join(f"{p} {data['photos'][p]['input_size'][0]}x{data['photos'][p]['input_size'][1]}" for p in photos)
    return (legacy_provenance(data, 'benchmarks/bench_color_fix.py') + '\n'
            + f"{data['model']}; photos reduced x{data['reduce']} by area (input sizes: {sizes}); tile "
              f"{data['tile'] or 'none (untiled)'}. Mean absolute channel offset against the original (gray levels) "
              'and PSNR-RGB (dB), mean over the photos, then PSNR-RGB per photo:\n\n'
            + table(['mode', 'mean abs offset', 'PSNR-RGB', *photos], rows) + '\n')


def render_tile_seams(root):
    out = []
    for name, what in TILE_SEAMS_JSON.items():
        data = read_json(root, f'benchmarks/results/{name}')
        if data is None:
            out.append(not_measured(TILE_SEAMS_COMMAND))
            continue
        pads = data['pads']
        labels = list(pads)
        tiles = sorted({run['tile'] for photo in data['photos'].values() for run in photo['runs']})
        rows = []
        for photo, row in data['photos'].items():
            cells = [f"{photo} ({row['size'][0]}x{row['size'][1]})"]
            for tile in tiles:
                runs = {run['pad']: run for run in row['runs'] if run['tile'] == tile}
                cells.append(' → '.join(str(runs[label]['max_diff']) for label in labels if label in runs)
                             if runs else 'one tile (untiled)')
            first = {run['pad']: run for run in row['runs'] if run['tile'] == tiles[0]}
            cells.append(' → '.join(number(first[label]['window_pixels_per_pixel'], '.2f') for label in labels
                                    if label in first) or '-')
            rows.append(cells)
        pad_text = ' → '.join(f"{label} {pads[label]['tile_pad']} px"
                              + (f" (probe {pads[label]['probe_seconds']:.0f} s)" if 'probe_seconds' in pads[label]
                                 else '') for label in labels)
        out += [legacy_provenance(data, 'benchmarks/bench_tile_seams.py'),
                f"{data['model']}; {what}; tile_pad {pad_text}. Largest difference from the untiled output (gray "
                'levels, 8-bit), per tile size, and the input pixels the network runs on per image pixel (the '
                f'cost of the padding) at tile {tiles[0]}:', '',
                table(['photo (input px)', *[f'tile {t}' for t in tiles], f'window px per image px, tile {tiles[0]}'],
                      rows), '']
        crops_fixed = [run for photo in data['photos'].values() for run in photo['runs']
                       if run.get('max_diff_with_color_fix')]
        if crops_fixed:
            same = all(max(run['max_diff_with_color_fix'].values()) <= run['max_diff'] for run in crops_fixed)
            out += [f"With `--color_fix` applied to both outputs the largest differences are "
                    f"{'the same or smaller' if same else 'larger in some runs'} (per run in the JSON).", '']
    cost = next((d['window_pixels_per_pixel_at_cost_size'] for d in
                 (read_json(root, f'benchmarks/results/{n}') for n in TILE_SEAMS_JSON) if d), None)
    if cost:
        labels = list(next(iter(cost['by_tile'].values())))
        rows = [[tile, *[number(by_pad[label], '.2f') for label in labels]] for tile, by_pad in cost['by_tile'].items()]
        out += [f"Window pixels per image pixel at {cost['size']}x{cost['size']} input (the time ratio of the "
                'paddings for a convolutional network):', '', table(['tile', *labels], rows), '']
    return '\n'.join(out).rstrip() + '\n'


# --------------------------------------------------------------------------------------------------
# speed: tiled inference, training steps, the GPU suite
# --------------------------------------------------------------------------------------------------
def tiled_provenance(section):
    system, run = section.get('system', {}), section.get('run', {})
    machine = dict(run.get('machine') or {})
    if system:
        machine = {'cpu': system.get('cpu_model'), 'cores': system.get('cpu_count'), 'threads': system.get('threads'),
                   'load_average': system.get('load_average_start') or machine.get('load_average')}
    units = ''
    if system:
        units = ('AMX and AVX-512 BF16' if system.get('amx') else
                 ', '.join(system.get('bf16_units') or []) + ' (no AMX)' if system.get('bf16_units') else
                 'no bf16 units (bf16 emulated)')
        units = f"CPU bf16 units: {units}; torch {system.get('torch')}, oneDNN " \
                f"{'on' if system.get('onednn_enabled') else 'off'}."
    return provenance(machine=machine or None, date=run.get('date') or system.get('date'), command=run.get('command'),
                      budget=run.get('budget'), commit=run.get('commit'), uncommitted=run.get('uncommitted_changes'),
                      gpu=system.get('gpu')) + (f'\n{units}\n' if units else '')


def precision_rows(results, speed_key):
    """One table row per precision variant: its time or rate (``speed_key``), ratios, memory and difference."""
    rows = []
    for variant, entry in results.items():
        if not entry.get('ok'):
            rows.append([variant, f"failed: {entry.get('error', '?')}", '', '', '', ''])
            continue
        difference = entry.get('difference_to_fp32') or {}
        rows.append([variant, number(entry[speed_key], '.2f'), number(entry.get('speed_vs_fp32'), '.2f'),
                     number(entry.get('speed_vs_realesrganer'), '.2f'), number(entry['peak_growth_mb'], '.0f'),
                     f"{number(difference.get('mean'))} / {difference.get('max', '-')}"])
    return rows


def render_tiled(root, section):
    data = read_json(root, TILED_JSON)
    if data is None or section not in data:
        return not_measured(TILED_COMMAND[section], f' (no `{section}` section in `{TILED_JSON}`)')
    part = data[section]
    out = [tiled_provenance(part)]
    if section == 'precision':
        rows = precision_rows(part['results'], 'best_seconds')
        out += [f"{part['network']}; astronaut {part['size']}² → x4, tile {part['tile']}, tile_pad {part['tile_pad']}; "
                f"best of {part['repeats']} round(s), the variants alternating; torch threads: {part.get('threads', '?')}.", '',
                table(['variant', 's / image', '× our fp32', '× RealESRGANer', 'peak memory growth (MB)',
                       'difference to fp32 (gray levels, mean / max)'], rows)]
    elif section == 'memory':
        by_size = {}
        for row in part['rows']:
            by_size.setdefault(row['size'], {})[row['mode']] = row
        rows = []
        for size, modes in by_size.items():
            cells = [f"{size}² (output {number(next(iter(modes.values()))['output_mb'], '.0f')} MB)"]
            for mode in ('realesrganer', 'unstreamed', 'streamed'):
                row = modes.get(mode)
                if row is None:
                    cells.append('-')
                    continue
                ratio = row.get('beyond_output_vs_realesrganer')
                cells.append(f"{number(row['growth_beyond_output_mb'], '.0f')} MB"
                             + (f' ({ratio:.2f}x)' if ratio is not None and mode != 'realesrganer' else ''))
            rows.append(cells)
        out += [f"fp32, tile {part['tile']}, tile_pad {part['tile_pad']}; an x4plus-shaped RRDBNet with "
                f"{part['blocks']} block(s) and random weights (the peak is set by the 64-channel tensors after the "
                'upsampling, not by the block count); one fresh process per run. Peak memory growth of the call '
                'beyond the 8-bit output array:', '',
                table(['input', 'RealESRGANer-style', 'ours, tail not streamed', 'ours, streamed tail'], rows)]
    else:
        rows = [[f"{row['size']}²", row['mode'], number(row['seconds'], '.2f'), number(row['added_mb'], '.0f'),
                 number(row['overhead_mb'], '.0f'), number(row.get('device_peak_mb'), '.0f')] for row in part['rows']]
        throughput = part.get('throughput_s') or {}
        out += ['A compact x4 network (SRVGGNetCompact layout, random weights), tiled and untiled:', '',
                table(['input', 'mode', 'seconds', 'host memory added (MB)', 'beyond the output (MB)',
                       'device peak (MB)'], rows)]
        if throughput:
            out += ['', f"Tiled / untiled speed: {number(throughput['untiled'] / throughput['tiled'], '.2f')} "
                        f"(best of the rounds)."]
    return '\n'.join(out).rstrip() + '\n'


def step_rows(results):
    rows = []
    for config, result in results.items():
        if not result.get('ok'):
            rows.append([config, ('skipped: ' if result.get('skipped') else 'failed: ') + str(result.get('error', '?')),
                         '', '', '', '', ''])
            continue
        relative = result.get('loss_rel_diff')
        rows.append([config, number(result['iters_per_s']), number(result.get('throughput_ratio'), '.2f'),
                     number(result.get('step_ms_median'), '.0f'), number(result['peak_memory_bytes'] / 2**20, '.0f'),
                     number(result.get('loss_g'), '.4f'),
                     f"{100 * relative:+.2f} %" if isinstance(relative, (int, float)) else '-'])
    return rows


STEP_HEADER = ['config', 'iterations/s', '× fp32', 'step ms (median)', 'peak memory (MiB)', 'G loss',
               'G loss vs fp32']


def render_train_step(root):
    data = read_json(root, TRAIN_STEP_JSON)
    if data is None:
        return not_measured(TRAIN_STEP_COMMAND)
    out = [record_provenance(data), f"{data.get('device')}; torch {data.get('torch')}; {data.get('vgg', '')}", '']
    for system in data.get('systems', {}).values():
        out += [f"{system['title']}:", '', table(STEP_HEADER, step_rows(system['results'])), '']
    return '\n'.join(out).rstrip() + '\n'


def render_gpu(root):
    data = read_json(root, GPU_JSON)
    if data is None:
        return not_measured(GPU_COMMAND, ': no GPU was lent to this work so far')
    out = [provenance(machine=data.get('host'), date=data.get('date'), command=data.get('command'),
                      budget=f"{data.get('budget_s', '?')} s" + (' (--smoke)' if data.get('smoke') else ''),
                      commit=data.get('commit'), uncommitted=data.get('uncommitted_changes'), gpu=data.get('device')),
           f"torch {data.get('torch')}, CUDA {data.get('cuda')}.", '']
    parts = data.get('parts', {})
    inference = parts.get('inference')
    if inference:
        rows = precision_rows(inference['results'], 'images_per_s')
        out += [f"Tiled x4plus inference ({inference['network']}; {inference['size']}², tile {inference['tile']}, "
                f"tile_pad {inference['tile_pad']}, best of {inference['repeats']}):", '',
                table(['variant', 'images/s', '× fp32', '× RealESRGANer', 'peak memory growth (MiB)',
                       'difference to fp32 (gray levels, mean / max)'], rows), '']
    ttsr = parts.get('ttsr')
    if ttsr:
        rows = [[config, number(r['peak_memory_bytes'] / 2**30, '.2f'), number(r['iters_per_s'], '.2f')]
                if r.get('ok') else [config, str(r.get('error', '?')), ''] for config, r in ttsr['results'].items()]
        out += [f"{ttsr['title']}:", '', table(['config', 'peak memory (GiB)', 'iterations/s'], rows), '']
    training = parts.get('training')
    if training:
        out += [f"{training['title']} ({training['warmup']} warm-up + {training['iters']} timed iterations; G loss: "
                f"mean of the last {training['loss_window']}):", '', table(STEP_HEADER, step_rows(training['results'])),
                '']
    for part, error in data.get('errors', {}).items():
        out.append(f'- {part}: FAILED: {error}')
    return '\n'.join(out).rstrip() + '\n'


# --------------------------------------------------------------------------------------------------
# host fixes (ext/engine/patching.py's PATCHES and ext/compat.py's import shim): a whole page
# --------------------------------------------------------------------------------------------------
def find_test(name):
    """``tests/<file>.py::name`` of the test function ``name`` anywhere under tests/, or None."""
    pattern = re.compile(rf'^def {re.escape(name)}\(', re.M)
    for path in sorted(glob.glob(osp.join(REPO_ROOT, 'tests', '**', 'test_*.py'), recursive=True)):
        with open(path, encoding='utf-8') as handle:
            if pattern.search(handle.read()):
                return f'{osp.relpath(path, REPO_ROOT)}::{name}'
    return None


def qualified(obj):
    if isinstance(obj, type):
        return f'{obj.__module__}.{obj.__qualname__}'
    return getattr(obj, '__name__', str(obj))


def render_host_fixes(root):
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)
    from ext import import_hooks
    from ext.engine import patching
    shim_test = 'test_import_basicsr_fails_without_the_functional_tensor_shim_and_works_with_it'
    rows = [['`torchvision.transforms.functional_tensor` (a module)',
             f'`{qualified(import_hooks.FunctionalTensorShim)}`',
             'torchvision >= 0.17 removed the module; `import basicsr` fails (`import ext` installs this finder, '
             'which imports no torch)', shim_test],
            ['`basicsr.utils.registry.Registry.get`, `__contains__`, `__iter__`, `keys`',
             '`ext._activating_first` (wraps the original; installed when `basicsr` is imported)',
             'not a fix: the first lookup runs `ext.activate()` (this table and the components), so that '
             '`import ext` stays light', 'test_import_ext_is_light_and_the_first_registry_lookup_activates_it']]
    for patch in patching.PATCHES:
        replacement = patch.replacement
        name = f'`{replacement.__module__}.{getattr(replacement, "__qualname__", replacement.__name__)}`'
        if patch.wraps:
            name += ' (wraps the original)'
        rows.append([f'`{qualified(patch.owner)}.{patch.name}`', name, patch.why, patch.test])
    missing = []
    for row in rows:
        found = find_test(row[3]) if row[3] else None
        if row[3] and found is None:
            missing.append(row[3])
        row[3] = f'`{found}`' if found else (f'`{row[3]}` (NOT FOUND under tests/)' if row[3] else 'none')
    if missing:
        print(f'report.py: tests named in PATCHES but not found: {", ".join(missing)}', file=sys.stderr)
    header = ('<!-- generated by benchmarks/report.py from ext/engine/patching.py (PATCHES), ext/import_hooks.py and '
              'ext/__init__.py: '
              'do not edit; run `python benchmarks/report.py` -->\n'
              '# What this package fixes in BasicSR 1.4.2\n\n'
              'You do nothing: `ext.activate()` applies every row below once (`ext/train.py`, `ext/test.py` and the '
              'scripts call it; otherwise it runs at the first lookup in a BasicSR registry). BasicSR 1.4.2 is the '
              'newest release and breaks on today\'s PyTorch, torchvision, '
              'NumPy and OpenCV; each row replaces one BasicSR function, and each names the test that shows '
              'BasicSR\'s behaviour and the fix. `ext.engine.patching.original(owner, name)` gives a replaced '
              'function back. The fixes themselves live in `ext/compat.py` (host fixes) and `ext/engine/` (the '
              'training engine: resume, stopping, bad data); what they do for a user is in '
              '[training.md](training.md).\n\n')
    return header + table(['target (BasicSR)', 'replacement', 'why', 'test'], rows) + '\n'


# --------------------------------------------------------------------------------------------------
# regions and pages
# --------------------------------------------------------------------------------------------------
def region_renderers():
    """{region name: (render(root) -> markdown, the JSON it reads)}."""
    regions = {
        'methods': (render_methods, 'benchmarks/results/learning/*.json'),
        'demo': (lambda root: render_demo(root, 'finetune'), DEMO_JSON['finetune']),
        'demo-held-out': (lambda root: render_demo(root, 'finetune', splits=('held_out', )), DEMO_JSON['finetune']),
        'demo-from-scratch': (lambda root: render_demo(root, 'from_scratch'), DEMO_JSON['from_scratch']),
        'learning-summary': (render_learning_summary, 'benchmarks/results/learning/*.json'),
        'color-fix': (render_color_fix, COLOR_FIX_JSON),
        'tile-seams': (render_tile_seams, 'benchmarks/results/tile_seams_x4plus_*.json'),
        'train-step-cpu': (render_train_step, TRAIN_STEP_JSON),
        'gpu-suite': (render_gpu, GPU_JSON),
        'demo-stage-probes': (render_stage_probes, STAGE_PROBES_DIR),
    }
    for section in TILED_COMMAND:
        regions[f'tiled-{section}'] = ((lambda s: lambda root: render_tiled(root, s))(section), TILED_JSON)
    for recipe in recipe_names():
        regions[f'learning-{recipe}'] = ((lambda r: lambda root: render_learning(root, r))(recipe),
                                         learning_path(recipe))
    return regions


# Pages whole generated, and the regions each hand-written page must hold (a deleted marker is an error).
WHOLE_PAGES = {'docs/host_fixes.md': render_host_fixes}
REQUIRED = {
    'README.md': ['methods', 'demo-held-out'],
    'docs/results.md': ['learning-summary', 'demo', 'demo-from-scratch', 'color-fix', 'tile-seams', 'gpu-suite'],
    'docs/speed.md': ['tiled-precision', 'tiled-memory', 'tiled-tiling', 'train-step-cpu', 'gpu-suite'],
    'docs/inference.md': ['tile-seams', 'color-fix'],
    'docs/methods/aesrgan.md': ['learning-esrnet_scratch', 'learning-x4plus_finetune'],
    'docs/methods/esrgan.md': ['learning-esrgan_psnr'],
    'docs/methods/ttsr.md': ['learning-ttsr_ref'],
    'docs/methods/ffhq_inpaint.md': ['learning-ttsr_inpaint'],
    'docs/methods/pix2pix_inpaint.md': ['learning-pix2pix_inpaint'],
    'docs/experiments/demo_scratch_gan_stage.md': ['demo-stage-probes'],
}


def pages(root):
    """README.md and every docs/**/*.md under ``root`` (relative paths), sorted."""
    found = ['README.md'] if osp.isfile(osp.join(root, 'README.md')) else []
    found += sorted(osp.relpath(p, root) for p in glob.glob(osp.join(root, 'docs', '**', '*.md'), recursive=True))
    return found


def fill(text, renderers, root, page, cache):
    """``text`` with every generated region rewritten; raises ValueError for an unknown region."""
    def replace(match):
        name = match.group('name')
        if name not in renderers:
            raise ValueError(f'{page}: unknown generated region {name!r} (known: {", ".join(sorted(renderers))})')
        if name not in cache:
            cache[name] = renderers[name][0](root)
        # links to files of the repository are written from its root ('](/path)'): relative to this page here
        body = re.sub(r'\]\(/([^)]*)\)', lambda link: '](' + osp.relpath(link.group(1), osp.dirname(page) or '.') + ')',
                      cache[name])
        return f'<!-- generated:{name} -->\n{body}<!-- end generated -->'
    return MARKER.sub(replace, text)


def generate(root=REPO_ROOT):
    """``{page: (current text or None, generated text)}`` for every page with generated content."""
    renderers, cache, out, problems = region_renderers(), {}, {}, []
    for page in pages(root):
        if page in WHOLE_PAGES:
            continue
        with open(osp.join(root, page), encoding='utf-8') as handle:
            text = handle.read()
        found = [m.group('name') for m in MARKER.finditer(text)]
        problems += [f'{page}: the generated region {name!r} is missing' for name in REQUIRED.get(page, [])
                     if name not in found]
        if text.count('<!-- generated:') != len(found):
            problems.append(f'{page}: a "<!-- generated:NAME -->" marker without its "<!-- end generated -->"')
        if found:
            out[page] = (text, fill(text, renderers, root, page, cache))
    problems += [f'{page}: missing' for page in REQUIRED if not osp.isfile(osp.join(root, page))]
    if problems:
        raise ValueError('\n'.join(problems))
    for page, render in WHOLE_PAGES.items():
        path = osp.join(root, page)
        current = open(path, encoding='utf-8').read() if osp.isfile(path) else None
        out[page] = (current, render(root))
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 when a committed page differs from what the JSON gives')
    parser.add_argument('--list', action='store_true', help='print each region and the JSON it is made from')
    parser.add_argument('--root', default=REPO_ROOT,
                        help='where README.md, docs/ and benchmarks/results/ are (default: this checkout)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    root = osp.abspath(args.root)
    if args.list:
        for name, (_, source) in sorted(region_renderers().items()):
            print(f'{name:32} {source}')
        for page in WHOLE_PAGES:
            print(f'{page:32} ext/engine/patching.py (PATCHES), ext/compat.py')
        return 0
    try:
        results = generate(root)
    except ValueError as error:
        print(f'report.py: {error}', file=sys.stderr)
        return 2
    stale = [page for page, (current, new) in results.items() if current != new]
    if args.check:
        for page in stale:
            current, new = results[page]
            diff = difflib.unified_diff((current or '').splitlines(True), new.splitlines(True),
                                        f'{page} (committed)', f'{page} (from the JSON)')
            sys.stdout.writelines(list(diff)[:80])
        if stale:
            print(f'\nreport.py --check: {len(stale)} page(s) differ from the committed JSON: {", ".join(stale)}. '
                  'Run python benchmarks/report.py and commit the result.')
            return 1
        print(f'report.py --check: {len(results)} page(s) match the committed JSON.')
        return 0
    for page in stale:
        path = osp.join(root, page)
        os.makedirs(osp.dirname(path), exist_ok=True)
        partial = path + '.partial'
        with open(partial, 'w', encoding='utf-8') as handle:
            handle.write(results[page][1])
        os.replace(partial, path)
        print(f'written: {page}')
    print(f'{len(results)} page(s) generated, {len(stale)} changed.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
