"""The measured tables of README.md and docs/ cannot drift from the measurements: every generated region (between
``<!-- generated:NAME -->`` and ``<!-- end generated -->``) and docs/host_fixes.md equal what benchmarks/report.py
makes of the committed JSON, and a tampered copy (a table edited by hand, a JSON changed after the docs were
generated, a region deleted) fails the check."""
import json
import os.path as osp
import shutil

import pytest

from helpers import REPO_ROOT, load_script

REPORT = osp.join(REPO_ROOT, 'benchmarks', 'report.py')
BENCH_LEARNING = osp.join(REPO_ROOT, 'benchmarks', 'bench_learning.py')

# A recipe without training for bench_learning.py: per seed, the model scores 0.5 + seed / 10 above the stronger
# of two baselines on each of three items; the control scores as that baseline.
FAKE_RECIPE = """
from checks import Check

TITLE = 'fake'
METRIC = 'score'
SPLITS = {'train': ('brick', ), 'validation': ('clock', ), 'held_out': ('logo', )}
BASELINES = ('weak', 'strong')
CONTROL = 'nothing learned'
CHECKS = (Check('the model beats the strongest baseline'), )


def run(ctx):
    strong = [10.0, 11.0, 12.0]
    entries = {'weak': [s - 5 for s in strong], 'strong': strong, 'model': [s + 0.5 + ctx.seed / 10 for s in strong],
               'control': strong}
    split = {'items': ['a', 'b', 'c'], METRIC: entries}
    return {'scores': {'validation': split, 'held_out': split}, 'training': {'wall_s': 0, 'cpu_s': 0}}
"""


@pytest.fixture(scope='module')
def report():
    return load_script(REPORT)


def copy_of_the_docs(root):
    """README.md, docs/ and benchmarks/results/ of this checkout under ``root`` (what report.py reads and writes)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(osp.join(REPO_ROOT, 'README.md'), root / 'README.md')
    shutil.copytree(osp.join(REPO_ROOT, 'docs'), root / 'docs')
    shutil.copytree(osp.join(REPO_ROOT, 'benchmarks', 'results'), root / 'benchmarks' / 'results')
    return root


def test_committed_generated_regions_match_the_committed_json(report):
    stale = [page for page, (current, new) in report.generate(REPO_ROOT).items() if current != new]
    assert not stale, (f'{", ".join(stale)} differ from what benchmarks/report.py makes of the committed JSON: run '
                       'python benchmarks/report.py and commit the result')


def test_every_measured_table_names_its_machine_date_command_and_budget_or_the_command_that_makes_it(report):
    generated = report.generate(REPO_ROOT)
    assert set(generated) >= set(report.REQUIRED) | set(report.WHOLE_PAGES)
    index_tables = ('methods', 'learning-summary')  # they point at the full tables
    for page, (_, text) in generated.items():
        for region in text.split('<!-- generated:')[1:]:
            name, body = region.split(' -->', 1)
            body = body.split('<!-- end generated -->')[0]
            if name in index_tables or page in report.WHOLE_PAGES:
                continue
            for part in body.split('*Not measured yet')[1:]:
                assert '(run: `python ' in part.split('\n')[0], (page, name)
            if '*Not measured yet' not in body:
                for word in ('machine:', 'date:', 'budget:', 'command:'):
                    assert word in body, (page, name, word)


def test_a_hand_edited_table_fails_the_check(report, tmp_path, capsys):
    root = copy_of_the_docs(tmp_path)
    page = root / 'docs' / 'results.md'
    text = page.read_text()
    region = text.split('<!-- generated:color-fix -->')[1].split('<!-- end generated -->')[0]
    row = next(line for line in region.splitlines() if line.startswith('| wavelet |'))
    page.write_text(text.replace(row, row.replace('| wavelet |', '| wavelet (edited) |'), 1))
    assert report.main(['--check', '--root', str(root)]) == 1
    assert 'docs/results.md' in capsys.readouterr().out
    assert report.main(['--root', str(root)]) == 0  # regenerating repairs it
    assert report.main(['--check', '--root', str(root)]) == 0 and page.read_text() == text


def test_a_json_changed_after_the_docs_were_generated_fails_the_check(report, tmp_path):
    root = copy_of_the_docs(tmp_path)
    path = root / 'benchmarks' / 'results' / 'color_fix_x4plus.json'
    data = json.loads(path.read_text())
    data['mean_over_photos']['wavelet']['psnr_rgb'] += 1.0
    path.write_text(json.dumps(data))
    assert report.main(['--check', '--root', str(root)]) == 1


def test_a_deleted_region_or_an_unknown_one_is_an_error(report, tmp_path):
    root = copy_of_the_docs(tmp_path)
    page = root / 'docs' / 'speed.md'
    original = page.read_text()
    page.write_text(original.replace('<!-- generated:gpu-suite -->', '<!-- gone -->'))
    assert report.main(['--check', '--root', str(root)]) == 2
    page.write_text(original + '\n<!-- generated:no-such-table -->\n<!-- end generated -->\n')
    assert report.main(['--check', '--root', str(root)]) == 2


def test_a_learning_result_is_rendered_with_its_seeds_baseline_control_and_checks(report, tmp_path):
    """A recipe's JSON as bench_learning.py writes it (a fake recipe without training, three seeds) replaces the
    "not measured yet" placeholder of its method page and the README's headline."""
    recipes = tmp_path / 'recipes'
    recipes.mkdir()
    (recipes / 'recipe_fake.py').write_text(FAKE_RECIPE)
    bench = load_script(BENCH_LEARNING)
    assert bench.main(['--workdir', str(tmp_path / 'work'), '--results', str(tmp_path / 'results'),
                       '--recipe_dir', str(recipes), '--seeds', '3']) == 0
    root = copy_of_the_docs(tmp_path / 'copy')
    shutil.copy(tmp_path / 'results' / 'fake.json', root / 'benchmarks' / 'results' / 'learning' / 'esrgan_psnr.json')
    assert report.main(['--check', '--root', str(root)]) == 1  # the committed pages still say "not measured yet"
    assert report.main(['--root', str(root)]) == 0
    page = (root / 'docs' / 'methods' / 'esrgan.md').read_text()
    region = page.split('<!-- generated:learning-esrgan_psnr -->')[1].split('<!-- end generated -->')[0]
    assert 'Not measured yet' not in region
    for expected in ('seeds 0, 1, 2', 'strong 11.000', '+0.600 [+0.500, +0.700]', '9/9', 'Control (nothing learned)',
                     '**PASS** the model beats the strongest baseline', 'date: ', 'budget: full', 'command: `python ',
                     'bench_learning.py'):
        assert expected in region, expected
    readme = (root / 'README.md').read_text()
    assert 'PSNR stage: +0.60 [+0.50, +0.70] score over strong, 3 seeds, checks pass' in readme
    assert report.main(['--check', '--root', str(root)]) == 0


def test_gpu_and_training_step_tables_name_the_device(report, tmp_path):
    root = copy_of_the_docs(tmp_path)
    step = {'ok': True, 'iters_per_s': 2.0, 'throughput_ratio': 1.0, 'step_ms_median': 500.0,
            'peak_memory_bytes': 2**31, 'loss_g': 0.5, 'loss_rel_diff': 0.0}
    suite = {'device': 'NVIDIA H100 80GB HBM3', 'smoke': False, 'torch': '2', 'cuda': '12', 'date': '2026-12-08T10:00:00+00:00',
             'budget_s': 540, 'seconds': 500.0, 'command': 'benchmarks/gpu_suite.py', 'errors': {},
             'parts': {'training': {'title': 'A-ESRGAN', 'iters': 30, 'warmup': 5, 'loss_window': 10,
                                    'results': {'fp32': step, 'bf16_cl_compile': {
                                        'ok': False, 'skipped': True, 'error': 'the --budget was spent'}}}}}
    (root / 'benchmarks' / 'results' / 'gpu_suite.json').write_text(json.dumps(suite))
    assert report.main(['--root', str(root)]) == 0
    text = (root / 'docs' / 'speed.md').read_text()
    region = text.split('<!-- generated:gpu-suite -->')[1].split('<!-- end generated -->')[0]
    assert 'GPU: NVIDIA H100 80GB HBM3' in region and 'date: 2026-12-08' in region and 'budget: 540 s' in region
    assert '| fp32 | 2.000 | 1.00 | 500 | 2048 | 0.5000 | +0.00 % |' in region
    assert 'skipped: the --budget was spent' in region


def test_host_fixes_page_lists_every_patch_with_a_test_that_exists(report):
    from ext.engine.patching import PATCHES
    page = report.render_host_fixes(REPO_ROOT)
    assert page.count('\n| `') == len(PATCHES) + 2  # + the two import-time changes (ext.import_hooks, ext/__init__)
    assert 'NOT FOUND' not in page
    for patch in PATCHES:
        assert f'.{patch.name}`' in page and patch.test in page


def test_a_demo_result_is_rendered_with_its_splits_and_checks(report, tmp_path):
    """scripts/run_demo.py's metrics.json, made with its own summary() and check() from scores of two photos."""
    from ext.utils import run_record
    demo = load_script('run_demo')
    methods = [('bicubic', 'bicubic x4 (OpenCV)'), ('x4plus', 'released x4plus (control)'), ('finetuned', 'fine-tuned')]

    def scores(psnr):
        return {m: {'niqe': 5.0 + i, 'psnr': psnr + i, 'ssim': 0.5, 'border_ratio': 0.9, 'colour_offset': [1.0, 0, -1.0]}
                for i, (m, _) in enumerate(methods)}
    results = {'validation': {'chelsea': scores(20.0)}, 'held_out': {'logo': scores(25.0), 'logo draw 1': scores(22.0)}}
    record = {**run_record.record(REPO_ROOT, 1, 'full', [osp.join(REPO_ROOT, 'scripts', 'run_demo.py')]),
              'splits': {'validation': ['chelsea'], 'held_out': ['logo']}, 'degraded_draws': 1,
              'methods': dict(methods), 'summary': demo.summary(results, methods), 'checks_enforced': True,
              'checks': [demo.check('learning: the fine-tune beats x4plus', 'learning', 1.0, 0.0, 'released x4plus', 0.0)],
              'seconds': 123}
    root = copy_of_the_docs(tmp_path)
    (root / 'benchmarks' / 'results' / 'demo').mkdir(exist_ok=True)
    (root / 'benchmarks' / 'results' / 'demo' / 'finetune.json').write_text(json.dumps(record))
    assert report.main(['--root', str(root)]) == 0
    readme = (root / 'README.md').read_text().split('<!-- generated:demo-held-out -->')[1].split('<!-- end')[0]
    assert 'held-out photos (logo), downscaled x4 (area)' in readme and 'validation photos' not in readme
    assert '| fine-tuned | 7.00 | 27.00 | 0.500 | +1.0/+0.0/-1.0 | 0.90 |' in readme
    assert '**PASS** learning: the fine-tune beats x4plus' in readme and 'command: `python scripts/run_demo.py' in readme
    results_page = (root / 'docs' / 'results.md').read_text()
    assert 'validation photos (chelsea), downscaled x4 (area)' in results_page
