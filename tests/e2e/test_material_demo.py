"""The embedded demo end to end on its minimal budget: prep chain, conversion, training, inference, pictures."""
import glob
import json
import os.path as osp

import cv2
import pytest
import yaml

from helpers import REPO_ROOT, run_script

RUN_DEMO = osp.join(REPO_ROOT, 'scripts', 'run_demo.py')


def _check_prep_chain(data):
    assert len(glob.glob(osp.join(data, 'multiscale', '*T[0-3].png'))) == 4 * 5
    meta = open(osp.join(data, 'meta_info', 'meta_info_multiscale.txt')).read().splitlines()
    reduced = open(osp.join(data, 'meta_info', 'meta_info_multiscale_reduced.txt')).read().splitlines()
    assert len(meta) == 5 * 5 and len(reduced) == 3 * 5 and not any('swatch' in line for line in reduced)
    assert cv2.imread(osp.join(data, 'meta_info', 'meta_info_multiscale_dropped.png')) is not None
    assert len(open(osp.join(data, 'multiscale.lmdb', 'meta_info.txt')).read().splitlines()) == len(meta)
    clean = sorted(osp.basename(p) for p in glob.glob(osp.join(data, 'val', 'lq_x4', '*.png')))
    degraded = sorted(osp.basename(p) for p in glob.glob(osp.join(data, 'val', 'lq_x4_degraded', '*.png')))
    assert clean and degraded == [name.replace('.png', '_degraded.png') for name in clean]


def _log(experiment):
    return ''.join(open(p).read() for p in sorted(glob.glob(osp.join(experiment, 'train_*.log'))))


@pytest.mark.slow(120)
def test_finetune_demo_on_minimal_budget_then_resumes(tmp_path):
    workdir = str(tmp_path / 'demo')
    first = run_script([RUN_DEMO, '--minimal', '--workdir', workdir, '--workers', '2'], cwd=str(tmp_path),
                       env={'OMP_NUM_THREADS': '1'}, timeout=600)
    _check_prep_chain(osp.join(workdir, 'datasets', 'materials'))

    # the released x4plus converted, then fine-tuned with a new discriminator through ext/train.py
    x4plus = osp.join(workdir, 'pretrained', 'RealESRGAN_x4plus.pth')
    experiment = osp.join(workdir, 'experiments', 'demo_material_aesrgan_x4plus')
    for name in ('net_g_latest.pth', 'net_d_latest.pth', 'net_g_2.pth'):
        assert osp.isfile(osp.join(experiment, 'models', name)), name
    log = _log(experiment)
    assert f'{x4plus}, with param key: [params_ema]' in log
    assert 'Validation materials_val\n' in log and 'Validation materials_val_degraded' in log and '# niqe:' in log
    assert glob.glob(osp.join(experiment, 'visualization', '*_degraded', '*_grid.png'))

    # inference with both generators on clean and degraded inputs of both splits, pictures, scores and checks
    lq = cv2.imread(osp.join(workdir, 'photos', 'lq', 'chelsea.png'))
    for kind, stem in (('lq', 'chelsea'), ('lq_degraded', 'logo_draw1')):
        for suffix in ('x4plus', 'finetuned'):
            result = cv2.imread(osp.join(workdir, 'inference', kind, f'{stem}_{suffix}.png'))
            assert result is not None and result.shape[2] == 3, (kind, stem, suffix)
    result = cv2.imread(osp.join(workdir, 'inference', 'lq', 'chelsea_finetuned.png'))
    assert result.shape == (lq.shape[0] * 4, lq.shape[1] * 4, 3)
    picture = cv2.imread(osp.join(workdir, 'side_by_side.png'))
    assert picture.shape[1] > 4 * result.shape[1] and picture.shape[0] > 2 * result.shape[0]
    metrics = json.load(open(osp.join(workdir, 'metrics.json')))
    assert metrics['splits']['validation'] == ['chelsea'] and metrics['splits']['held_out'] == ['logo']
    scores = metrics['per_photo']['validation']['chelsea']
    assert set(scores) == {'bicubic', 'bicubic_matlab', 'x4plus', 'finetuned'}
    assert scores['x4plus']['niqe'] < scores['bicubic']['niqe']  # the released weights are real
    assert set(metrics['per_photo']['held_out']) == {'logo', 'logo draw 1'}
    assert len(scores['finetuned']['colour_offset']) == 3 and metrics['machine']['cpu'] and metrics['date']
    assert [c['kind'] for c in metrics['checks']] == ['learning', 'guard', 'guard', 'guard']
    assert not metrics['checks_enforced'] and not metrics['checks'][0]['control_passes']
    assert [p['iteration'] for p in metrics['curve_from_iteration_0']] == [0, 2]  # the control on the curve
    assert metrics['movement']['held_out']['clean']['mean_abs_output_difference'] >= 0
    for plot in ('losses.png', 'metrics.png', 'from_iteration_0.png'):
        assert cv2.imread(osp.join(workdir, 'curves', 'demo_material_aesrgan_x4plus', plot)) is not None, plot
    assert 'side_by_side.png' in first.stdout and 'perceptual loss' in first.stdout
    assert 'Quality checks' in first.stdout and 'released x4plus' in first.stdout and 'moved' in first.stdout

    # a second run resumes from the last state and reuses the converted weights; a check forced to fail (an
    # impossible margin over x4plus) makes it exit non-zero after writing its outputs
    json_copy = str(tmp_path / 'record.json')
    second = run_script([RUN_DEMO, '--minimal', '--workdir', workdir, '--workers', '1', '--enforce_checks',
                         '--min_gain', '100', '--json', json_copy], cwd=str(tmp_path), env={'OMP_NUM_THREADS': '1'},
                        timeout=600, check=False)
    output = second.stdout + second.stderr
    assert second.returncode == 1 and "FAILED: 1 quality check" in output, second.stdout[-3000:]
    assert output.count('Resuming training from epoch: ') == 1, output[-3000:]
    assert 'Start training from epoch: 0, iter: 0' not in output and 'already converted' in output
    assert output.count('already prepared by an earlier run') == 4 and 'create_lmdb.py' not in output
    record = json.load(open(json_copy))
    assert record['checks_enforced'] and not record['passed'] and not record['checks'][0]['ok']
    assert record == json.load(open(osp.join(workdir, 'metrics.json')))


@pytest.mark.slow(90)
def test_from_scratch_demo_on_minimal_budget(tmp_path):
    workdir = str(tmp_path / 'scratch')
    result = run_script([RUN_DEMO, '--minimal', '--from_scratch', '--workdir', workdir, '--workers', '2'],
                        cwd=str(tmp_path), env={'OMP_NUM_THREADS': '1'}, timeout=600)
    _check_prep_chain(osp.join(workdir, 'datasets', 'materials'))
    experiments = osp.join(workdir, 'experiments')
    assert osp.isfile(osp.join(experiments, 'demo_material_realesrnet', 'models', 'net_g_latest.pth'))
    assert osp.isfile(osp.join(experiments, 'demo_material_aesrgan', 'models', 'net_d_latest.pth'))
    assert 'demo_material_realesrnet/models/net_g_latest.pth' in _log(osp.join(experiments, 'demo_material_aesrgan'))
    assert not osp.exists(osp.join(workdir, 'pretrained'))  # no released weights on this path
    # without VGG19 the stage trains with the settings that kept it from collapsing on the validation photos
    stage = yaml.safe_load(open(osp.join(workdir, 'demo_material_aesrgan.yml')))['train']
    assert 'perceptual_opt' not in stage and stage['optim_d']['lr'] == 1e-5 and stage['optim_g']['lr'] == 1e-4
    assert stage['pixel_opt']['type'] == 'MSELoss' and stage['gan_opt']['loss_weight'] == 0.1
    metrics = json.load(open(osp.join(workdir, 'metrics.json')))
    scores = metrics['per_photo']
    assert set(scores['validation']) == {'chelsea', 'chelsea draw 1'}
    assert set(scores['held_out']) == {'logo', 'logo draw 1'}
    assert set(scores['held_out']['logo draw 1']) == {'bicubic', 'bicubic_matlab', 'realesrnet', 'realesrnet_x8',
                                                      'aesrgan'}
    assert [c['kind'] for c in metrics['checks']] == ['learning', 'guard', 'guard', 'guard']
    assert metrics['checks'][0]['control'] == 'the untrained network' and not metrics['checks'][0]['control_passes']
    assert [p['iteration'] for p in metrics['curve_from_iteration_0']] == [0, 2, 4]
    assert 'Real-ESRNet (x8 self-ensemble) beats' in result.stdout and 'degraded the training way' in result.stdout
    assert cv2.imread(osp.join(workdir, 'side_by_side.png')) is not None
