"""Masked PSNR/SSIM on known inputs, the model's box-weighted L1 and saturation guard, and the
shipped FFHQ option files (seed hyper-parameters, validation)."""
import copy
import logging
import math
import os.path as osp

import numpy as np
import pytest
import torch
import yaml

import ext  # noqa: F401
from basicsr.losses.basic_loss import L1Loss
from basicsr.metrics import calculate_metric, calculate_psnr, calculate_ssim
from basicsr.utils.registry import METRIC_REGISTRY, MODEL_REGISTRY
from ext.metrics.masked_psnr_metric import calculate_masked_psnr
from ext.metrics.masked_ssim_metric import calculate_masked_ssim
from ext.models.ttsr_inpaint_model import (OutputSaturationError, RegionWeightedPixelLoss, SaturationGuard,
                                           saturated_fraction)
from ext.options import OptionError, validate_options
from ext.registry import METRICS
from helpers import REPO_ROOT, skimage_rgb

BOX = (16, 20, 48, 44)  # left, top, right, bottom on 64x64


@pytest.fixture(scope='module')
def pair():
    """A 64x64 photo, its copy with +10 on every pixel of the box's centre (8 px from the box edge),
    and the box mask."""
    img = skimage_rgb('astronaut')[100:164, 200:264].copy()
    img = np.clip(img, 20, 235).astype(np.uint8)
    left, top, right, bottom = BOX
    out = img.copy()
    out[top + 8:bottom - 8, left + 8:right - 8] += 10
    mask = np.zeros((64, 64), np.float32)
    mask[top:bottom, left:right] = 1
    return img, out, mask


def test_masked_psnr_on_known_errors(pair):
    img, out, mask = pair
    left, top, right, bottom = BOX
    changed = (bottom - top - 16) * (right - left - 16)
    expected = 10 * math.log10(255**2 / (100 * changed / ((bottom - top) * (right - left))))
    assert calculate_masked_psnr(out, img, 0, mask=mask) == pytest.approx(expected, abs=1e-9)
    assert calculate_masked_psnr(out, img, 0, mask=mask, region='outside') == float('inf')
    # the whole image: BasicSR's PSNR; the hole's PSNR is lower than it (the error is concentrated there)
    whole = calculate_psnr(out, img, 0)
    assert calculate_masked_psnr(out, img, 0, mask=np.ones_like(mask)) == pytest.approx(whole, abs=1e-12)
    assert whole > expected
    for crop, y in ((4, True), (0, True), (4, False)):
        assert calculate_masked_psnr(out, img, crop, mask=torch.ones(1, 1, 64, 64), test_y_channel=y) == \
            pytest.approx(calculate_psnr(out, img, crop, test_y_channel=y), abs=1e-12)
    # an error only outside the box
    outside_error = img.copy()
    outside_error[:8] += 5
    assert calculate_masked_psnr(outside_error, img, 0, mask=mask) == float('inf')
    assert calculate_masked_psnr(outside_error, img, 0, mask=mask, region='outside') == pytest.approx(
        10 * math.log10(255**2 / (25 * 8 * 64 / (64 * 64 - mask.sum()))), abs=1e-9)


def test_masked_ssim_on_known_errors(pair):
    img, out, mask = pair
    inside = calculate_masked_ssim(out, img, 0, mask=mask)
    assert 0 < inside < 0.999
    # no window centred outside the box reaches the changed pixels (8 px in, window radius 5)
    assert calculate_masked_ssim(out, img, 0, mask=mask, region='outside') == pytest.approx(1.0, abs=1e-12)
    for crop, y in ((0, False), (4, True)):
        assert calculate_masked_ssim(out, img, crop, mask=np.ones((64, 64, 1)), test_y_channel=y) == \
            pytest.approx(calculate_ssim(out, img, crop, test_y_channel=y), abs=1e-12)


def test_masked_metrics_errors_and_registration(pair):
    img, out, mask = pair
    with pytest.raises(ValueError, match='mask'):
        calculate_masked_psnr(out, img, 0)
    with pytest.raises(ValueError, match='does not match'):
        calculate_masked_ssim(out, img, 0, mask=np.ones((32, 32)))
    with pytest.raises(ValueError, match='region'):
        calculate_masked_psnr(out, img, 0, mask=mask, region='box')
    with pytest.raises(ValueError, match='no pixel inside'):
        calculate_masked_psnr(out, img, 0, mask=np.zeros((64, 64)))
    # BasicSR calls metrics with the val dict's keys: the model adds the mask next to the images
    data = {'img': out, 'img2': img, 'mask': mask}
    outside = {'type': 'calculate_masked_psnr', 'crop_border': 0, 'region': 'outside'}
    assert calculate_metric(data, outside) == float('inf')
    assert METRIC_REGISTRY.get('calculate_masked_ssim') is calculate_masked_ssim
    assert METRICS.get('calculate_masked_psnr') is calculate_masked_psnr


def test_box_weighted_pixel_loss_is_a_weighted_mean():
    torch.manual_seed(0)
    pred, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:5, 3:7] = 1
    loss = RegionWeightedPixelLoss(L1Loss(loss_weight=1.0), 4.0, lambda: mask)
    error = (pred - target).abs()
    weights = (1 + 3 * mask).expand_as(error)
    torch.testing.assert_close(loss(pred, target), (error * weights).sum() / weights.sum())
    torch.testing.assert_close(RegionWeightedPixelLoss(L1Loss(), 1.0, lambda: mask)(pred, target), error.mean())
    with pytest.raises(RuntimeError, match='mask'):
        RegionWeightedPixelLoss(L1Loss(), 4.0, lambda: None)(pred, target)


def test_saturation_guard_warns_after_patience_and_ignores_white_ground_truth():
    white, gt = torch.ones(1, 3, 8, 8), torch.rand(1, 3, 8, 8) * 0.5 + 0.25
    assert saturated_fraction(white, 1 / 255) == 1.0 and saturated_fraction(gt, 1 / 255) == 0.0
    assert saturated_fraction(torch.full((1, 3, 4, 4), float('nan')), 1 / 255) == 1.0
    guard = SaturationGuard.from_options({'action': 'warn', 'patience': 2, 'max_fraction': 0.5})
    assert guard.excess(white, gt) == 1.0 and guard.excess(white, white) == 0.0  # a white photo is no alarm
    from basicsr.utils import get_root_logger
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = get_root_logger()
    logger.addHandler(handler)
    try:
        guard.check(1.0, 'iteration 1')
        guard.check(0.1, 'iteration 2')  # a normal batch resets the count
        guard.check(1.0, 'iteration 3')
        assert not records
        guard.check(1.0, 'iteration 4')
    finally:
        logger.removeHandler(handler)
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert 'saturated outputs at iteration 4' in records[0].getMessage()
    assert '2 iterations in a row' in records[0].getMessage()
    stop = SaturationGuard.from_options({'action': 'stop'})
    from ext.engine.stopping import STOP
    from ext.errors import EXIT_GUARD
    STOP.reset()
    try:  # a stop is asked of the training loop, which every rank leaves together after the iteration
        stop.check(0.9, 'validation on faces', persistent=False)
        reason, exit_code, save_checkpoint = STOP.request
    finally:
        STOP.reset()
    assert reason.startswith(f'{OutputSaturationError.__name__}: saturated outputs at validation on faces')
    assert exit_code == EXIT_GUARD and not save_checkpoint
    assert SaturationGuard.from_options({'action': 'off'}) is None and SaturationGuard.from_options(None) is None
    with pytest.raises(OptionError, match=r'saturation_guard.patiense.*saturation_guard.action'):
        SaturationGuard.from_options({'patiense': 3, 'action': 'halt'})


# --- the shipped option files -----------------------------------------------------------------

def load_option_file(name, data_root):
    with open(osp.join(REPO_ROOT, 'options', name)) as handle:
        opt = yaml.safe_load(handle)
    for spec in opt['datasets'].values():
        spec['dataroot_gt'] = str(data_root)
    return opt


@pytest.mark.parametrize('name', ['train_ttsr_ffhq_inpaint_160.yml', 'train_ttsr_ffhq_inpaint_384.yml',
                                  'test_ttsr_ffhq_inpaint.yml'])
def test_option_files_validate(name, tmp_path, vgg19_env):
    opt = load_option_file(name, tmp_path)
    opt['path'].pop('pretrain_network_g', None)
    validate_options(copy.deepcopy(opt), source=name, is_train=name.startswith('train'))
    assert MODEL_REGISTRY.get(opt['model_type']).__name__ == 'TTSRInpaintModel'
    metrics = opt['val']['metrics']
    assert {spec['type'] for spec in metrics.values()} == {
        'calculate_psnr', 'calculate_ssim', 'calculate_masked_psnr', 'calculate_masked_ssim'}
    assert {spec.get('region') for spec in metrics.values()} == {None, 'inside', 'outside'}
    opt['datasets'][next(iter(opt['datasets']))]['box_z'] = [0, 1]  # a typo is caught
    with pytest.raises(OptionError, match='box_z'):
        validate_options(opt, source=name, is_train=name.startswith('train'))


def test_option_files_hold_the_seed_hyper_parameters(tmp_path):
    exp3 = load_option_file('train_ttsr_ffhq_inpaint_160.yml', tmp_path)
    train = exp3['train']
    assert exp3['datasets']['train']['batch_size_per_gpu'] == 8 and exp3['network_d']['in_size'] == 160
    assert (train['pixel_opt']['loss_weight'], train['perceptual_opt']['loss_weight'], train['tpl_opt']['loss_weight'],
            train['gan_opt']['loss_weight']) == (1.0, 0.01, 0.01, 0.01)
    exp4 = load_option_file('train_ttsr_ffhq_inpaint_384.yml', tmp_path)
    assert exp4['datasets']['train']['batch_size_per_gpu'] == 1 and 'network_d' not in exp4
    assert [k for k in exp4['train'] if k.endswith('_opt')] == ['pixel_opt']
    for opt in (exp3, exp4):
        for spec in opt['datasets'].values():
            assert (spec['box_x'], spec['box_y'], spec['blur_radius'], spec['lq_source']) == ([0.5, 0.8], [0.5, 0.8], 5,
                                                                                             'ref')
    for name, size in (('train_ttsr_ffhq_inpaint_160.yml', 160), ('train_ttsr_ffhq_inpaint_384.yml', 384)):
        with open(osp.join(REPO_ROOT, 'options', name)) as handle:
            datasets = yaml.safe_load(handle)['datasets']
        assert [spec['dataroot_gt'] for spec in datasets.values()] == [
            f'datasets/ffhq_inpaint/{size}/train/gt', f'datasets/ffhq_inpaint/{size}/test/gt']
