"""The embedded demo end to end on its minimal budget: prep chain, both training stages, inference, pictures."""
import glob
import os.path as osp

import cv2
import pytest

from helpers import REPO_ROOT, run_script

RUN_DEMO = osp.join(REPO_ROOT, 'scripts', 'run_demo.py')


@pytest.mark.slow
def test_demo_chain_on_minimal_budget_then_resumes(tmp_path):
    workdir = str(tmp_path / 'demo')
    first = run_script([RUN_DEMO, '--minimal', '--workdir', workdir, '--workers', '2'], cwd=str(tmp_path),
                       env={'OMP_NUM_THREADS': '1'}, timeout=300)
    data = osp.join(workdir, 'datasets', 'materials')

    # prep chain: multiscale copies, meta info, the reduced list without the one-coloured swatches, LMDB
    assert len(glob.glob(osp.join(data, 'multiscale', '*T[0-3].png'))) == 4 * 5
    meta = open(osp.join(data, 'meta_info', 'meta_info_multiscale.txt')).read().splitlines()
    reduced = open(osp.join(data, 'meta_info', 'meta_info_multiscale_reduced.txt')).read().splitlines()
    assert len(meta) == 5 * 5 and len(reduced) == 3 * 5 and not any('swatch' in line for line in reduced)
    assert cv2.imread(osp.join(data, 'meta_info', 'meta_info_multiscale_dropped.png')) is not None
    assert len(open(osp.join(data, 'multiscale.lmdb', 'meta_info.txt')).read().splitlines()) == len(meta)
    assert sorted(glob.glob(osp.join(data, 'val', 'lq_x4', '*.png')))

    # both stages trained through ext/train.py; A-ESRGAN started from the Real-ESRNet generator
    experiments = osp.join(workdir, 'experiments')
    assert osp.isfile(osp.join(experiments, 'demo_material_realesrnet', 'models', 'net_g_latest.pth'))
    for name in ('net_g_latest.pth', 'net_d_latest.pth', 'net_g_4.pth'):
        assert osp.isfile(osp.join(experiments, 'demo_material_aesrgan', 'models', name)), name
    aesrgan_log = ''.join(open(p).read() for p in glob.glob(osp.join(experiments, 'demo_material_aesrgan', 'train_*.log')))
    assert 'demo_material_realesrnet/models/net_g_latest.pth' in aesrgan_log and 'Validation materials_val' in aesrgan_log
    assert glob.glob(osp.join(experiments, 'demo_material_aesrgan', 'visualization', '*', '*_grid.png'))

    # tiled inference on the held-out photo, the side-by-side picture and the curves
    result = cv2.imread(osp.join(workdir, 'inference', 'chelsea_lq_aesrgan.png'))
    lq = cv2.imread(osp.join(workdir, 'photos', 'chelsea_lq.png'))
    assert result.shape == (lq.shape[0] * 4, lq.shape[1] * 4, 3)
    side_by_side = cv2.imread(osp.join(workdir, 'side_by_side.png'))
    assert side_by_side.shape[1] > 3 * result.shape[1] and side_by_side.shape[0] > result.shape[0]
    for stage in ('demo_material_realesrnet', 'demo_material_aesrgan'):
        for plot in ('losses.png', 'metrics.png'):
            assert cv2.imread(osp.join(workdir, 'curves', stage, plot)) is not None, (stage, plot)
    assert 'side_by_side.png' in first.stdout and 'perceptual loss' in first.stdout

    # a second run resumes both stages from their last states instead of training again
    second = run_script([RUN_DEMO, '--minimal', '--workdir', workdir, '--workers', '1'], cwd=str(tmp_path),
                        env={'OMP_NUM_THREADS': '1'}, timeout=300)
    output = second.stdout + second.stderr
    assert output.count('Resuming training from epoch: ') == 2, output[-3000:]
    assert 'Start training from epoch: 0, iter: 0' not in output
