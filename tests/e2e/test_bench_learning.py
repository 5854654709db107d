"""benchmarks/bench_learning.py: every recipe runs at its smoke budget and writes its figures, pictures and
check results; a failed check, or a learning check its control passes, makes the command exit non-zero."""
import json
import os.path as osp
import sys

import cv2
import pytest

from helpers import REPO_ROOT, load_script, run_script

BENCH = osp.join(REPO_ROOT, 'benchmarks', 'bench_learning.py')
RECIPE_DIR = osp.join(REPO_ROOT, 'benchmarks', 'learning')
RECIPES = tuple(load_script(BENCH).available_recipes(RECIPE_DIR))  # every recipe file, as the command finds them
sys.path.insert(0, RECIPE_DIR)

# A recipe without training: per seed, the model scores MODEL_GAIN (+ seed / 10) above the stronger of two
# baselines on each of three items, the control CONTROL_GAIN.
FAKE_RECIPE = '''
import common
from checks import Check

TITLE = 'fake'
METRIC = 'score'
SPLITS = {{'train': ('brick', ), 'validation': ('clock', ), 'held_out': ('logo', )}}
BASELINES = ('weak', 'strong')
CONTROL = 'nothing learned'
CHECKS = (Check('the model beats the strongest baseline'), )


def run(ctx):
    strong = [10.0, 11.0, 12.0]
    entries = {{'weak': [s - 5 for s in strong], 'strong': strong,
               'model': [s + {model_gain} + ctx.seed / 10 for s in strong],
               'control': [s + {control_gain} for s in strong]}}
    split = {{'items': ['a', 'b', 'c'], METRIC: entries}}
    return {{'scores': {{'validation': split, 'held_out': split}}, 'training': {{'wall_s': 0, 'cpu_s': 0}}}}
'''


def _fake(tmp_path, model_gain, control_gain=0.0):
    folder = tmp_path / 'recipes'
    folder.mkdir(exist_ok=True)
    (folder / 'recipe_fake.py').write_text(FAKE_RECIPE.format(model_gain=model_gain, control_gain=control_gain))
    return str(folder)


def _bench(tmp_path, *args, check=True):
    """The command in a subprocess (its exit status is what is tested)."""
    return run_script([BENCH, '--workdir', str(tmp_path / 'work'), '--results', str(tmp_path / 'results'), *args],
                      cwd=str(tmp_path), env={'OMP_NUM_THREADS': '1'}, check=check, timeout=600)


def _bench_main(tmp_path, *args):
    """``main(argv)`` in this process: its return value is the exit status (no interpreter start-up)."""
    return load_script(BENCH).main(['--workdir', str(tmp_path / 'work'), '--results', str(tmp_path / 'results'),
                                    *args])


def _record(tmp_path, name):
    return json.load(open(tmp_path / 'results' / f'{name}.json'))


def test_a_passing_check_exits_zero_and_records_the_seeds(tmp_path, capsys):
    assert _bench_main(tmp_path, '--recipe_dir', _fake(tmp_path, model_gain=0.5), '--seeds', '3') == 0
    output = capsys.readouterr().out
    record = _record(tmp_path, 'fake')
    assert record['passed'] and record['seeds'] == [0, 1, 2] and record['budget'] == 'full'
    gain = record['figures']['held_out']['model_gain']
    assert record['figures']['held_out']['strongest_baseline'] == 'strong' == gain['reference']
    assert (gain['min'], gain['mean'], gain['max']) == pytest.approx((0.5, 0.6, 0.7))
    assert gain['won'] == 9 and gain['items'] == 9
    assert record['machine']['cpu'] and record['date'] and 'bench_learning.py' in record['command']
    assert '[PASS] the model beats the strongest baseline' in output


def test_a_failed_check_exits_non_zero_and_is_named(tmp_path):
    result = _bench(tmp_path, '--recipe_dir', _fake(tmp_path, model_gain=-0.5), '--seeds', '2', check=False)
    assert result.returncode == 1, result.stdout[-2000:]
    assert 'FAILED CHECK fake: the model beats the strongest baseline' in result.stdout
    assert not _record(tmp_path, 'fake')['passed']


def test_a_learning_check_its_control_passes_fails(tmp_path, capsys):
    assert _bench_main(tmp_path, '--recipe_dir', _fake(tmp_path, model_gain=0.5, control_gain=0.1), '--seeds', '1') == 1
    assert 'cannot tell learning from nothing' in capsys.readouterr().out
    check, = _record(tmp_path, 'fake')['checks']
    assert check['passed'] and check['control_passes'] and not check['ok']


def test_smoke_budget_reports_failed_checks_and_enforces_them_on_request(tmp_path):
    recipes = _fake(tmp_path, model_gain=-0.5)
    assert _bench_main(tmp_path, '--recipe_dir', recipes, '--budget', 'smoke') == 0
    assert not _record(tmp_path, 'fake')['checks_enforced']
    assert _bench_main(tmp_path, '--recipe_dir', recipes, '--budget', 'smoke', '--enforce_checks') == 1


def test_a_photo_in_two_splits_is_refused():
    import common
    with pytest.raises(ValueError, match='chelsea is in the train and the held_out split'):
        common.check_splits({'train': ('chelsea', ), 'held_out': ('chelsea', )})
    with pytest.raises(ValueError, match='cat is in the'):
        common.check_splits({'validation': ('chelsea', ), 'held_out': ('cat', )})
    common.check_splits(common.SPLITS)


def test_lower_is_better_picks_the_lowest_baseline():
    import checks

    class Recipe:
        METRIC, LOWER_IS_BETTER, BASELINES = 'niqe', True, ('a', 'b')

    split = {'items': ['x', 'y'], 'niqe': {'a': [5.0, 5.0], 'b': [4.0, 6.0], 'model': [3.0, 7.0], 'control': [6, 6]}}
    results = checks.SeedResults(Recipe, [{'scores': {'validation': split, 'held_out': split}}], [0])
    assert results.strongest_baseline('held_out') == 'a'  # equal means: the first named
    verdict = results.evaluate(checks.Check('lower', reference='b'))
    assert verdict['subject_gain']['mean'] == pytest.approx(0.0) and verdict['subject_gain']['won'] == 1
    assert not verdict['passed'] and not verdict['control_passes']


@pytest.mark.slow(80)
def test_every_recipe_runs_at_its_smoke_budget(tmp_path):
    """Recipes cannot rot: each trains, scores both splits and writes its figures, pictures and checks."""
    assert {'esrgan_psnr', 'esrnet_scratch', 'pix2pix_inpaint', 'ttsr_inpaint', 'ttsr_ref', 'x4plus_finetune'} <= set(
        RECIPES)
    result = _bench(tmp_path, '--budget', 'smoke')
    assert result.returncode == 0, result.stdout[-3000:]
    for name in RECIPES:
        record = _record(tmp_path, name)
        assert record['budget'] == 'smoke' and record['seeds'] == [0] and not record['checks_enforced']
        assert set(record['splits']) == {'train', 'validation', 'held_out'}
        for split in ('validation', 'held_out'):
            table = record['figures'][split]
            assert {'model', 'control', *record['baselines']} <= set(table['entries']), name
            assert table['strongest_baseline'] in record['baselines']
            assert all(value == value for value in table['model_gain']['per_seed']), name  # no NaN
        assert record['checks'] and all('ok' in c and 'control_gain' in c for c in record['checks']), name
        assert record['per_seed'][0]['training']['cpu_s'] > 0, name
        assert len(record['pictures']) == 2, name
        for picture in record['pictures']:
            assert cv2.imread(picture if osp.isabs(picture) else osp.join(REPO_ROOT, picture)) is not None, picture
        assert f'=== {name} seed 0' in result.stdout
    assert 'held-out gain over the strongest baseline' in result.stdout


def test_recipe_interface_is_documented():
    text = open(BENCH).read()
    for attribute in ('TITLE', 'METRIC', 'SPLITS', 'BASELINES', 'CONTROL', 'CHECKS', 'run(ctx)', 'ctx'):
        assert attribute in text.split('"""')[1], attribute

