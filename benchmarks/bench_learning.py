"""Does each training recipe of this package learn? Gains over the strongest non-learned baseline, on photos
no setting was chosen on, over seeds, with checks that fail the command.

Every recipe trains through the package's own training entry point (``ext/train.py``) on the photos shipped
inside scikit-image, once per seed (``manual_seed`` 0, 1, 2, ...), and scores on two splits:

- ``validation``: photos on which any setting of the recipe is chosen (and was, before this rule);
- ``held_out``: photos never trained on and never used to choose anything, scored only to report. A
  disappointing held-out figure is reported, not tuned away: retune on validation.

For each split it prints the mean over seeds of the model's score with the smallest and largest, the
strongest non-learned baseline of that split (weaker ones beside it), the control's score and the items won
(the layout only; the figures of the last full runs are in docs/, generated from the JSON by
``benchmarks/report.py``)::

    esrgan_psnr  PSNR-Y (dB, crop 4)  seeds 0, 1, 2
      split       items  strongest baseline     control  model [min, max]    gain [min, max]     won
      held_out    N      bicubic (OpenCV) B     C        M [min, max]        +G [min, max]       W/N

then its checks, each with its control scored the same way, and a summary table. The command exits with
status 1 when a check fails (listing them), 2 when a recipe raised; 0 when every check passed. At the smoke
budget the checks are computed and shown but not enforced unless ``--enforce_checks`` (a few iterations:
the figures say nothing).

Results go to ``<results>/<recipe>.json`` (default ``benchmarks/results/learning/`` for the full budget,
committed: the docs are generated from it; ``<workdir>/results/`` for the smoke budget): splits and photos,
seeds, per-split figures, baselines, control, checks, per-seed training time (wall and CPU seconds), the
machine (CPU model, cores, threads, load), date, command, budget and commit. Pictures (small crops, seed 0)
go to ``<results>/<recipe>/``.

Recipe interface: a module ``benchmarks/learning/recipe_<name>.py`` (found by file name; ``--recipe_dir``
reads another folder) with

- ``TITLE``: one line; ``METRIC``: the main metric's name; ``LOWER_IS_BETTER`` (default False);
- ``SPLITS``: ``{'train': names, 'validation': names, 'held_out': names}`` (photos or sets; checked to be
  disjoint); the recipe's docstring says which split each of its figures comes from;
- ``BASELINES``: names of the non-learned methods it scores; the strongest per split is the bar;
- ``CONTROL``: what its ``'control'`` entry is, in words (the untrained, unchanged or disabled model);
- ``CHECKS``: a tuple of ``checks.Check`` (``learning/checks.py``): a claim "``subject`` beats
  ``reference`` by more than ``min_gain`` on ``split``", judged on the mean over seeds. A ``learning`` check
  must fail when its control is scored in the subject's place (else it counts as failed); a ``guard``
  ("does not break ...") is passed by a no-op too and is named so;
- ``run(ctx) -> dict`` with ``scores``: ``{split: {'items': [item names], metric: {entry: [one score per
  item]}}}`` for both scored splits, the entries being ``'model'``, ``'control'``, every baseline and any
  other entry a check names; ``training``: ``{'iterations', 'wall_s', 'cpu_s'}``; ``pictures``: paths it
  wrote; ``details``: anything else worth keeping (printed and stored).

``ctx`` gives ``seed``, ``budget`` (``'full'`` or ``'smoke'``), ``smoke``, ``threads`` (use them for training
and scoring), ``workdir`` (this seed's folder), ``shared_dir`` (the recipe's folder for what does not depend on
the seed: data, the control's outputs), ``picture_dir`` and ``save_pictures`` (true for the first seed only).

    python benchmarks/bench_learning.py                       # every recipe, full budget, 3 seeds, 1 thread
    python benchmarks/bench_learning.py --recipes esrgan_psnr pix2pix_inpaint --seeds 1
    python benchmarks/bench_learning.py --budget smoke        # a few iterations each: the plumbing only

Budgets are iteration counts; the training time is measured in CPU seconds (stable on a busy machine) and
wall seconds.
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import resource
import sys
import time
import traceback

BENCH_DIR = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(BENCH_DIR)
RECIPE_DIR = osp.join(BENCH_DIR, 'learning')
RESULTS_DIR = osp.join(BENCH_DIR, 'results', 'learning')
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, RECIPE_DIR)

import checks  # noqa: E402  (benchmarks/learning/checks.py)
from ext.utils import run_record  # noqa: E402

RECIPE_ATTRIBUTES = ('TITLE', 'METRIC', 'SPLITS', 'BASELINES', 'CONTROL', 'CHECKS', 'run')
EXIT_CHECK_FAILED, EXIT_RECIPE_ERROR = 1, 2


def available_recipes(folder=RECIPE_DIR):
    """{name: path} of every ``recipe_<name>.py`` in ``folder``, in name order."""
    names = sorted(f[len('recipe_'):-3] for f in os.listdir(folder) if f.startswith('recipe_') and f.endswith('.py'))
    return {name: osp.join(folder, f'recipe_{name}.py') for name in names}


def load_recipe(name, path):
    folder = osp.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f'recipe_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = [attr for attr in RECIPE_ATTRIBUTES if not hasattr(module, attr)]
    if missing:
        raise SystemExit(f'{path}: a recipe module needs {", ".join(missing)} (see benchmarks/bench_learning.py)')
    import common
    common.check_splits(module.SPLITS)
    return module


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--recipe_dir', default=RECIPE_DIR,
                        help='folder of recipe_<name>.py files (default: %(default)s)')
    parser.add_argument('--recipes', nargs='+', metavar='NAME', help='recipes to run (default: all in --recipe_dir)')
    parser.add_argument('--budget', choices=('full', 'smoke'), default='full',
                        help="'full': the documented budget; 'smoke': a few iterations (plumbing only, figures "
                             'meaningless, checks not enforced)')
    parser.add_argument('--seeds', type=int, help='train with manual_seed 0 .. N-1 (default: 3 at the full budget, '
                                                  '1 at the smoke budget)')
    parser.add_argument('--threads', type=int, default=1,
                        help='threads of each training run and of the scoring (default: %(default)s)')
    parser.add_argument('--workdir', default=osp.join(REPO_ROOT, 'results', 'bench_learning'),
                        help='where data, runs and large pictures go (default: %(default)s)')
    parser.add_argument('--results', help='folder of the JSON results and small pictures (default: '
                                          'benchmarks/results/learning at the full budget, <workdir>/results at smoke)')
    parser.add_argument('--enforce_checks', action='store_true', help='exit non-zero on a failed check at the smoke '
                                                                      'budget too')
    parser.add_argument('--fresh', action='store_true', help="delete each recipe's work folder first")
    args = parser.parse_args(argv)
    args.command = run_record.script_argv(__file__, argv)
    args.paths = available_recipes(args.recipe_dir)
    args.recipes = args.recipes or sorted(args.paths)
    unknown = [name for name in args.recipes if name not in args.paths]
    if unknown:
        parser.error(f'unknown recipe(s) {", ".join(unknown)}; available: {", ".join(sorted(args.paths))}')
    if args.seeds is None:
        args.seeds = 3 if args.budget == 'full' else 1
    if args.seeds < 1 or args.threads < 1:
        parser.error('--seeds and --threads must be >= 1')
    args.results = args.results or (RESULTS_DIR if args.budget == 'full' else osp.join(args.workdir, 'results'))
    args.enforce = args.budget == 'full' or args.enforce_checks
    return args


class Context:
    """What a recipe's ``run`` gets for one seed (see the module docstring)."""

    def __init__(self, name, shared_dir, budget, seed, threads, picture_dir, save_pictures):
        self.name, self.budget, self.seed, self.threads = name, budget, seed, threads
        self.smoke = budget == 'smoke'
        self.shared_dir, self.workdir = shared_dir, osp.join(shared_dir, f'seed_{seed}')
        self.picture_dir, self.save_pictures = picture_dir, save_pictures
        for folder in (self.workdir, picture_dir):
            os.makedirs(folder, exist_ok=True)


def cpu_seconds():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_seeds(name, recipe, args):
    """The recipe's results per seed, each with its total wall and CPU seconds."""
    shared_dir = osp.join(args.workdir, name)
    if args.fresh and osp.isdir(shared_dir):
        import shutil
        shutil.rmtree(shared_dir)
    results = []
    for seed in range(args.seeds):
        print(f'\n=== {name} seed {seed}: {recipe.TITLE} ({args.budget} budget) in {shared_dir}', flush=True)
        ctx = Context(name, shared_dir, args.budget, seed, args.threads, osp.join(args.results, name),
                      save_pictures=seed == 0)
        start_wall, start_cpu = time.time(), cpu_seconds()
        result = recipe.run(ctx)
        result['seed'] = seed
        result['total'] = {'wall_s': time.time() - start_wall, 'cpu_s': cpu_seconds() - start_cpu}
        results.append(result)
    return results


def summarise(name, recipe, results, args, started):
    evaluation = checks.SeedResults(recipe, results, [r['seed'] for r in results])
    check_results = [evaluation.evaluate(check) for check in recipe.CHECKS]
    return {
        'recipe': name, 'title': recipe.TITLE, 'metric': recipe.METRIC,
        'lower_is_better': evaluation.lower_is_better, 'seeds': evaluation.seeds,
        'splits': {split: list(names) for split, names in recipe.SPLITS.items()},
        'baselines': list(recipe.BASELINES), 'control': recipe.CONTROL,
        'figures': {split: evaluation.split_table(split) for split in checks.SPLITS},
        'checks': check_results, 'checks_enforced': args.enforce,
        'passed': all(c['ok'] for c in check_results),
        'per_seed': [{'seed': r['seed'], 'training': r.get('training', {}), 'total': r['total'],
                      'details': r.get('details', {})} for r in results],
        'pictures': sorted({osp.relpath(p, REPO_ROOT) if p.startswith(REPO_ROOT) else p
                            for r in results for p in r.get('pictures', [])}),
        **run_record.record(REPO_ROOT, args.threads, args.budget, args.command), 'date': started,
        'finished': run_record.now(),
    }


def format_rows(rows):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return '\n'.join('  '.join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def spread(summary, signed=False):
    form = '{:+.3f}' if signed else '{:.3f}'
    return f"{form.format(summary['mean'])} [{form.format(summary['min'])}, {form.format(summary['max'])}]"


def format_recipe(record):
    seeds = ', '.join(str(s) for s in record['seeds'])
    lines = [f"\n{record['recipe']}  {record['metric']}{' (lower is better)' if record['lower_is_better'] else ''}"
             f"  seeds {seeds}  control: {record['control']}"]
    rows = [('  split', 'items', 'strongest baseline', 'control', 'model [min, max]', 'gain [min, max]', 'won')]
    for split, table in record['figures'].items():
        strongest, gain = table['strongest_baseline'], table['model_gain']
        rows.append((f'  {split}', len(table['items']), f"{strongest} {table['entries'][strongest]['mean']:.3f}",
                     f"{table['entries']['control']['mean']:.3f}", spread(table['entries']['model']),
                     spread(gain, signed=True), f"{gain['won']}/{gain['items']}"))
    lines.append(format_rows(rows))
    for split, table in record['figures'].items():
        weaker = [f"{b} {table['entries'][b]['mean']:.3f}" for b in record['baselines']
                  if b != table['strongest_baseline'] and b in table['entries']]
        others = [f"{e} {spread(s)}" for e, s in table['entries'].items()
                  if e not in record['baselines'] and e not in ('model', 'control')]
        photos = ', '.join(record['splits'][split])
        lines.append(f"  {split} ({photos}): weaker baselines: {'; '.join(weaker) or 'none'}"
                     + (f"; also: {'; '.join(others)}" if others else ''))
    lines.append('  checks' + ('' if record['checks_enforced'] else ' (not enforced at the smoke budget)') + ':')
    lines += [f'    {checks.describe_check(c)}' for c in record['checks']]
    times = '; '.join(f"seed {s['seed']}: {s['training'].get('wall_s', 0):.0f} s wall, "
                      f"{s['training'].get('cpu_s', 0):.0f} s CPU" for s in record['per_seed'])
    lines.append(f'  training: {times}')
    return '\n'.join(lines)


def summary_table(records):
    rows = [('recipe', 'held-out gain over the strongest baseline [min, max]', 'baseline', 'checks')]
    for record in records:
        if 'error' in record:
            rows.append((record['recipe'], 'ERROR', '', record['error']))
            continue
        table = record['figures']['held_out']
        failed = [c['name'] for c in record['checks'] if not c['ok']]
        rows.append((record['recipe'], spread(table['model_gain'], signed=True), table['strongest_baseline'],
                     'all pass' if not failed else f'{len(failed)} FAIL'))
    return format_rows(rows)


def main(argv=None):
    args = parse_args(argv)
    from ext.utils.atomic_io import atomic_write_text
    records = []
    for name in args.recipes:
        started = run_record.now()
        try:
            recipe = load_recipe(name, args.paths[name])
            record = summarise(name, recipe, run_seeds(name, recipe, args), args, started)
        except Exception as error:  # one broken recipe must not hide the others' figures
            traceback.print_exc()
            records.append({'recipe': name, 'error': f'{type(error).__name__}: {error}'[:300]})
            continue
        records.append(record)
        path = osp.join(args.results, f'{name}.json')
        atomic_write_text(path, json.dumps(record, indent=1), make_dirs=True)
        print(format_recipe(record) + f'\n  results: {path}', flush=True)
    print('\n' + summary_table(records))
    errors = [r['recipe'] for r in records if 'error' in r]
    failed = [(r['recipe'], c['name']) for r in records if 'error' not in r for c in r['checks'] if not c['ok']]
    for recipe, check in failed:
        print(f'FAILED CHECK {recipe}: {check}' + ('' if args.enforce else ' (not enforced: smoke budget)'))
    if errors:
        print(f'RECIPE ERROR: {", ".join(errors)}')
        return EXIT_RECIPE_ERROR
    return EXIT_CHECK_FAILED if failed and args.enforce else 0


if __name__ == '__main__':
    sys.exit(main())
