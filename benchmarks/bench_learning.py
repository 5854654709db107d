"""Does each training recipe of this package learn? Held-out gain over a baseline, measured.

Every recipe trains through the package's own training entry point (``ext/train.py``) for a fixed
budget on the photos and textures shipped inside scikit-image, then scores the trained network and a
baseline on *held-out* photos the training never saw, and prints the gain with the time it took:

    recipe              metric               baseline         model    gain   time
    esrnet_scratch      PSNR-Y (dB, crop 4)  bicubic  25.10   25.90   +0.80  301 s

A recipe is a module ``benchmarks/learning/recipe_<name>.py`` (one per recipe, found by file name)
with ``TITLE``, ``METRIC`` (what is compared; higher is better unless ``LOWER_IS_BETTER``),
``BASELINE`` (its name) and ``run(ctx) -> dict(baseline=..., model=..., details={...})`` (optionally
``baseline_name=...`` when the recipe picks its baseline at run time); ``ctx``
gives the work folder, the budget (``'full'`` or ``'smoke'``) and helpers in ``learning/common.py``.

    python benchmarks/bench_learning.py                       # every recipe, full budget (CPU is fine)
    python benchmarks/bench_learning.py --recipes esrgan_psnr pix2pix_inpaint
    python benchmarks/bench_learning.py --budget smoke        # a few iterations each: checks the plumbing only

Budgets are iteration counts chosen to fit the time stated in each recipe on 2 CPU cores; the time
printed is measured, so a busy machine shows up as a longer time, not as a different result.
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import sys
import time
import traceback

BENCH_DIR = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(BENCH_DIR)
RECIPE_DIR = osp.join(BENCH_DIR, 'learning')
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, RECIPE_DIR)


def available_recipes():
    """{name: path} of every ``learning/recipe_<name>.py``, in name order."""
    names = sorted(f[len('recipe_'):-3] for f in os.listdir(RECIPE_DIR) if f.startswith('recipe_') and f.endswith('.py'))
    return {name: osp.join(RECIPE_DIR, f'recipe_{name}.py') for name in names}


def load_recipe(name, path):
    spec = importlib.util.spec_from_file_location(f'recipe_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for attr in ('TITLE', 'METRIC', 'BASELINE', 'run'):
        if not hasattr(module, attr):
            raise SystemExit(f'{path}: a recipe module needs {attr!r} (see benchmarks/bench_learning.py)')
    return module


def parse_args(argv=None):
    recipes = available_recipes()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--recipes', nargs='+', choices=sorted(recipes), default=sorted(recipes), metavar='NAME',
                        help=f'recipes to run (default: all of {", ".join(sorted(recipes))})')
    parser.add_argument('--budget', choices=('full', 'smoke'), default='full',
                        help="'full': the documented budget; 'smoke': a few iterations (plumbing only, gains "
                             'meaningless)')
    parser.add_argument('--workdir', default=osp.join(REPO_ROOT, 'results', 'bench_learning'),
                        help='where data, runs and pictures go (default: %(default)s)')
    parser.add_argument('--json', help='also write the results to this JSON file')
    parser.add_argument('--fresh', action='store_true', help='delete each recipe\'s work folder first')
    args = parser.parse_args(argv)
    args.paths = recipes
    return args


class Context:
    """What a recipe gets: its own work folder and the budget."""

    def __init__(self, name, workdir, budget):
        self.name, self.workdir, self.budget = name, workdir, budget
        self.smoke = budget == 'smoke'
        os.makedirs(workdir, exist_ok=True)


def format_table(rows):
    header = ('recipe', 'metric', 'baseline', '', 'model', 'gain', 'time')
    lines = [header]
    for row in rows:
        if 'error' in row:
            lines.append((row['recipe'], row.get('metric', ''), row.get('baseline_name', ''), '', 'FAILED',
                          row['error'], f"{row['seconds']:.0f} s"))
            continue
        lines.append((row['recipe'], row['metric'], row['baseline_name'], f"{row['baseline']:.3f}",
                      f"{row['model']:.3f}", f"{row['gain']:+.3f}", f"{row['seconds']:.0f} s"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return '\n'.join('  '.join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def main(argv=None):
    args = parse_args(argv)
    rows = []
    for name in args.recipes:
        recipe = load_recipe(name, args.paths[name])
        workdir = osp.join(args.workdir, name)
        if args.fresh and osp.isdir(workdir):
            import shutil
            shutil.rmtree(workdir)
        print(f'\n=== {name}: {recipe.TITLE} ({args.budget} budget) in {workdir}', flush=True)
        start = time.time()
        row = dict(recipe=name, metric=recipe.METRIC, baseline_name=recipe.BASELINE, budget=args.budget)
        try:
            result = recipe.run(Context(name, workdir, args.budget))
        except Exception as error:  # one broken recipe must not hide the others' figures
            traceback.print_exc()
            row.update(error=f'{type(error).__name__}: {error}'[:200], seconds=time.time() - start)
            rows.append(row)
            continue
        lower_is_better = getattr(recipe, 'LOWER_IS_BETTER', False)
        gain = (result['baseline'] - result['model']) if lower_is_better else (result['model'] - result['baseline'])
        row['baseline_name'] = result.get('baseline_name') or row['baseline_name']  # a recipe may pick its baseline
        row.update(baseline=float(result['baseline']), model=float(result['model']), gain=float(gain),
                   seconds=time.time() - start, details=result.get('details', {}))
        rows.append(row)
        print(f"--- {name}: {row['baseline_name']} {row['baseline']:.3f} -> model {row['model']:.3f} "
              f"(gain {gain:+.3f} {recipe.METRIC}) in {row['seconds']:.0f} s", flush=True)
        for key, value in row['details'].items():
            print(f'    {key}: {value}')
    print('\n' + format_table(rows))
    if args.json:
        from ext.utils.atomic_io import atomic_write_text
        atomic_write_text(args.json, json.dumps(rows, indent=2))
    return 1 if any('error' in row for row in rows) else 0


if __name__ == '__main__':
    sys.exit(main())
