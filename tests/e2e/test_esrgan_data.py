"""ESRGAN (seed 003) data: the paired dataset's augmentations, the benchmark prep script, the evaluation CLI."""
import csv
import glob
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from ext.engine.sampling import PerSampleSeededDataset
from ext.engine.seeding import sample_seed
from ext.data.esrgan_paired_dataset import ESRGANPairedDataset
from helpers import REPO_ROOT, base_train_options, run_script, run_train, write_image_folder, write_paired_folders

PREPARE = osp.join(REPO_ROOT, 'scripts', 'prepare_sr_benchmark.py')
EVALUATE = osp.join(REPO_ROOT, 'scripts', 'evaluate.py')


@pytest.fixture(scope='module')
def pairs(tmp_path_factory):
    return write_paired_folders(str(tmp_path_factory.mktemp('pairs')), 3, 64, seed=0)


def dataset(pairs, **options):
    gt, lq = pairs
    opt = {'name': 't', 'type': 'ESRGANPairedDataset', 'dataroot_gt': gt, 'dataroot_lq': lq, 'phase': 'train',
           'scale': 4, 'gt_size': 32, 'io_backend': {'type': 'disk'}, 'flip_prob': 0, 'transpose_prob': 0,
           'lq_jpeg_prob': 0, 'lq_dropout_prob': 0}
    opt.update(options)
    return PerSampleSeededDataset(ESRGANPairedDataset(opt))


def test_hard_transforms_touch_only_the_lr_and_are_reproducible(pairs):
    plain = dataset(pairs)
    hard = dataset(pairs, lq_jpeg_prob=1.0, lq_jpeg_quality=[10, 20], lq_dropout_prob=1.0,
                   lq_dropout_holes=[2, 3], lq_dropout_size=[2, 3])
    for index in range(3):
        seed = sample_seed(0, 0, 0, index)
        a, b = plain[index, seed], hard[index, seed]
        assert torch.equal(a['gt'], b['gt'])  # same crop, GT untouched
        assert a['lq'].shape == b['lq'].shape == (3, 8, 8)
        assert not torch.equal(a['lq'], b['lq'])
        assert (b['lq'] == 0).all(dim=0).sum() >= 4  # at least one 2x2 hole of zeros (all channels)
        again = hard[index, seed]
        assert torch.equal(again['lq'], b['lq']) and torch.equal(again['gt'], b['gt'])
    other = hard[0, sample_seed(0, 0, 1, 0)]
    first = hard[0, sample_seed(0, 0, 0, 0)]
    assert not torch.equal(other['lq'], first['lq'])


def test_flip_and_transpose_keep_the_pair_aligned_at_the_seed_rates(pairs):
    data = dataset(pairs, flip_prob=0.25, transpose_prob=0.75)
    reference = dataset(pairs)
    transposed = flipped = 0
    draws = 200
    for position in range(draws):
        seed = sample_seed(0, 0, 0, position)
        sample, base = data[0, seed], reference[0, seed]
        lq_of_gt = torch.nn.functional.avg_pool2d(sample['gt'][None], 4)[0]
        assert (lq_of_gt - sample['lq']).abs().mean() < 0.05  # LR still is the GT's downscale
        candidates = {'id': base['gt'], 't': base['gt'].transpose(-2, -1)}
        for dims in [(-1,), (-2,), (-2, -1)]:
            candidates[f'f{dims}'] = base['gt'].flip(dims)
            candidates[f'f{dims}t'] = base['gt'].flip(dims).transpose(-2, -1)
        kind = next(key for key, value in candidates.items() if torch.equal(value, sample['gt']))
        transposed += kind.endswith('t')
        flipped += kind.startswith('f')
    assert 0.65 < transposed / draws < 0.85 and 0.15 < flipped / draws < 0.35


def test_validation_centre_crop_and_option_errors(pairs):
    gt, lq = pairs
    val = ESRGANPairedDataset({'name': 'v', 'dataroot_gt': gt, 'dataroot_lq': lq, 'phase': 'val', 'scale': 4,
                               'gt_size': 32, 'io_backend': {'type': 'disk'}})
    sample = val[0]
    full = cv2.imread(sample['gt_path'])[..., ::-1].astype(np.float32) / 255
    assert sample['gt'].shape == (3, 32, 32)
    assert np.allclose(sample['gt'].permute(1, 2, 0).numpy(), full[16:48, 16:48])
    with pytest.raises(ValueError, match='lq_jpeg_quality'):
        dataset(pairs, lq_jpeg_quality=[90, 10])
    with pytest.raises(ValueError, match='transpose_prob'):
        dataset(pairs, transpose_prob=1.5)


def test_prepare_sr_benchmark_on_a_tiny_hr_folder(tmp_path):
    raw = tmp_path / 'raw'
    write_image_folder(str(raw), 2, 50, suffix='.jpg')  # BSDS500-style .jpg, not a multiple of 4
    write_image_folder(str(raw / 'sub'), 1, 45, seed=3)
    (raw / 'broken.png').write_bytes(b'not an image')
    out = tmp_path / 'Set'
    result = run_script([PREPARE, '--input', str(raw), '--output', str(out), '--lmdb', '--workers', '1'],
                        cwd=str(tmp_path))
    assert 'broken.png' in result.stderr and '1 unreadable' in result.stderr
    names = sorted(os.listdir(out / 'HR'))
    assert names == ['0000.png', '0001.png', 'sub_0000.png']
    from basicsr.utils.matlab_functions import imresize
    for name in names:
        hr, lr = cv2.imread(str(out / 'HR' / name)), cv2.imread(str(out / 'LR_bicubic' / 'X4' / name))
        assert hr.shape[0] % 4 == 0 and hr.shape[:2] == (lr.shape[0] * 4, lr.shape[1] * 4)
        expected = np.clip(np.round(imresize(hr.astype(np.float32) / 255, 0.25) * 255), 0, 255)
        assert np.abs(lr.astype(np.float64) - expected).max() <= 1  # MATLAB bicubic, not OpenCV's
    jpeg = cv2.imread(str(raw / '0000.jpg'))
    assert np.array_equal(cv2.imread(str(out / 'HR' / '0000.png')), jpeg[:48, :48])
    # the LMDBs pair up in BasicSR's PairedImageDataset
    lmdb_set = ESRGANPairedDataset({'name': 'l', 'dataroot_gt': str(out / 'HR.lmdb'),
                                    'dataroot_lq': str(out / 'LR_bicubic' / 'X4.lmdb'), 'phase': 'val',
                                    'scale': 4, 'io_backend': {'type': 'lmdb'}})
    assert len(lmdb_set) == 3 and lmdb_set[2]['gt'].shape == (3, 44, 44)
    # DIV2K layout; existing LR files of the right size are kept
    div2k_hr = tmp_path / 'DIV2K_valid_HR'
    write_image_folder(str(div2k_hr), 2, 48)
    run_script([PREPARE, '--layout', 'div2k', '--input', str(div2k_hr), '--output', str(tmp_path / 'DIV2K'),
                '--workers', '1'], cwd=str(tmp_path))
    assert sorted(os.listdir(tmp_path / 'DIV2K' / 'DIV2K_valid_LR_bicubic' / 'X4')) == ['0000x4.png', '0001x4.png']
    again = run_script([PREPARE, '--layout', 'div2k', '--input', str(div2k_hr), '--output', str(tmp_path / 'DIV2K'),
                        '--workers', '1'], cwd=str(tmp_path))
    assert '0 HR and 0 LR images written' in again.stdout


@pytest.fixture(scope='module')
def tiny_generator(tmp_path_factory):
    folder = tmp_path_factory.mktemp('generator')
    torch.manual_seed(0)
    from ext.archs.esrgan_rrdbnet_arch import ESRGANRRDBNet
    net = ESRGANRRDBNet(3, 3, num_feat=8, num_block=1, num_grow_ch=4, interpolating_init=True)
    path = str(folder / 'net_g.pth')
    torch.save({'params': net.state_dict()}, path)
    return path


def test_evaluate_cli_tables_pictures_and_json(tmp_path, tiny_generator):
    root = tmp_path / 'datasets'
    write_image_folder(str(root / 'Set5' / 'HR'), 4, 48)  # no LR folder: made on the fly
    gt, lq = write_paired_folders(str(tmp_path / 'mine'), 2, 32, seed=4)
    out = tmp_path / 'eval'
    network = '{type: ESRGANRRDBNet, num_in_ch: 3, num_out_ch: 3, num_feat: 8, num_block: 1, num_grow_ch: 4}'
    result = run_script([EVALUATE, tiny_generator, '--datasets', 'set5', '--dataset', f'mine={gt}:{lq}',
                         '--dataset-root', str(root), '--network', network, '--show-results', '1',
                         '--out-dir', str(out)], cwd=str(tmp_path))
    assert 'psnr_y' in result.stdout and 'set5' in result.stdout and 'mine' in result.stdout
    with open(out / 'results.csv') as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {'psnr_y', 'ssim_y', 'psnr_rgb', 'ssim_rgb', 'bicubic_psnr_y'} <= set(rows[0])
    report = json.loads((out / 'results.json').read_text())
    set5 = report['summary']['set5']
    assert set5['images'] == 4 and 10 < set5['psnr_y'] < 60 and 0 < set5['ssim_rgb'] <= 1
    values = [float(r['psnr_y']) for r in rows if r['dataset'] == 'set5']
    assert abs(np.mean(values) - set5['psnr_y']) < 1e-3
    best, worst = glob.glob(str(out / 'set5' / 'best1_*.png')), glob.glob(str(out / 'set5' / 'worst1_*.png'))
    assert len(best) == len(worst) == 1
    best_name = osp.basename(best[0])[len('best1_'):-4]
    assert float(next(r for r in rows if r['image'] == best_name)['psnr_y']) == pytest.approx(max(values), abs=1e-3)
    picture = cv2.imread(best[0])
    assert picture.shape[0] == 48 and picture.shape[1] == 4 * 48 + 3 * 4  # LR | bicubic | output | HR
    # the baseline alone, and a clear error for an unknown metric
    baseline = run_script([EVALUATE, 'bicubic', '--dataset', f'mine={gt}:{lq}', '--out-dir', str(tmp_path / 'b'),
                           '--metrics', 'psnr_y'], cwd=str(tmp_path))
    assert 'mine' in baseline.stdout
    bad = run_script([EVALUATE, 'bicubic', '--dataset', f'mine={gt}', '--metrics', 'lpips'], cwd=str(tmp_path),
                     check=False)
    assert bad.returncode != 0 and "no metric named 'lpips'" in bad.stderr


def test_evaluate_rebuilds_a_trained_generator_from_its_checkpoint_alone(tmp_path):
    """A generator trained from a copy of train_esrgan_psnr_x4.yml with other sizes evaluates by its path: the
    checkpoint records its network_g (options/test_esrgan_x4.yml's 64 features and 16 blocks would not fit)."""
    gt, lq = write_paired_folders(str(tmp_path / 'data'), count=2, gt_size=32, seed=3)
    opt = base_train_options('esrgan_small', str(tmp_path), gt, lq, gt_size=32, total_iter=2)
    opt['model_type'] = 'ExtSRModel'
    opt['network_g'] = {'type': 'ESRGANRRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 12, 'num_block': 2,
                        'num_grow_ch': 6, 'upsampler': 'pixelshuffle'}
    run_train(opt, str(tmp_path))
    model_path = osp.join(opt['path']['experiments_root'], 'models', 'net_g_latest.pth')
    out = tmp_path / 'eval'
    result = run_script([EVALUATE, model_path, '--dataset', f'mine={gt}:{lq}', '--metrics', 'psnr_y',
                         '--out-dir', str(out)], cwd=str(tmp_path))
    assert 'mine' in result.stdout and f'ESRGANRRDBNet from {model_path}: x4' in result.stderr
    report = json.loads((out / 'results.json').read_text())
    assert report['network_g'] == opt['network_g'] and report['scale'] == 4
    assert report['summary']['mine']['images'] == 2 and 5 < report['summary']['mine']['psnr_y'] < 60


def test_metrics_are_selected_by_registry_type():
    """Another component's metric (e.g. LPIPS in ext/metrics/) is picked by its registered name."""
    from basicsr.utils.registry import METRIC_REGISTRY
    from ext.utils.sr_benchmark import resolve_metrics

    def calculate_fake_lpips(img, img2, crop_border, input_order='HWC', net='alex'):
        return float(np.abs(img.astype(float) - img2).mean()) + (net == 'vgg')
    calculate_fake_lpips.lower_is_better = True
    METRIC_REGISTRY._obj_map['calculate_fake_lpips'] = calculate_fake_lpips
    try:
        psnr, lpips = resolve_metrics(['psnr_y', 'lpips=calculate_fake_lpips'], {'lpips': {'net': 'vgg'}})
        a = np.zeros((16, 16, 3), np.uint8)
        assert lpips(a, a + 2, 0) == 3.0 and lpips.lower_is_better and lpips.better(1.0, 2.0)
        assert not psnr.lower_is_better and psnr(a, a + 2, 0) > 40
        with pytest.raises(KeyError, match='calculate_nothing'):
            resolve_metrics(['calculate_nothing'])
    finally:
        del METRIC_REGISTRY._obj_map['calculate_fake_lpips']
