"""Validation that matches training: degraded LQ with fixed seeds (make_degraded_val.py) and NIQE as a metric."""
import os.path as osp

import cv2
import numpy as np
import pytest

import ext  # noqa: F401
from basicsr.metrics import calculate_metric
from ext.metrics.niqe_metric import calculate_niqe_sr
from helpers import REPO_ROOT, load_script, run_script, skimage_rgb, write_image_folder

SCRIPT = osp.join(REPO_ROOT, 'scripts', 'make_degraded_val.py')
OPTIONS = osp.join(REPO_ROOT, 'options', 'train_multiaesrgan_x4plus.yml')


def test_degraded_lq_is_the_training_degradation_with_a_fixed_seed(tmp_path):
    gt = str(tmp_path / 'gt')
    write_image_folder(gt, 2, 96)
    outputs = {}
    script = load_script('make_degraded_val')
    for run, seed in (('a', 0), ('b', 0), ('c', 5)):
        arguments = ['--gt', gt, '--lq', str(tmp_path / run), '--opt', OPTIONS, '--seed', str(seed)]
        if run == 'a':  # the command line once; in-process otherwise (each interpreter start costs seconds)
            run_script([SCRIPT, *arguments], cwd=str(tmp_path))
        else:
            assert script.main(arguments) == 0
        outputs[run] = [cv2.imread(str(tmp_path / run / f'{i:04d}_degraded.png')) for i in range(2)]
    assert all(image.shape == (24, 24, 3) for image in outputs['a'])
    assert all(np.array_equal(x, y) for x, y in zip(outputs['a'], outputs['b']))  # same seed, same set
    assert not all(np.array_equal(x, y) for x, y in zip(outputs['a'], outputs['c']))
    bicubic = cv2.resize(cv2.imread(osp.join(gt, '0000.png')), (24, 24), interpolation=cv2.INTER_CUBIC)
    assert np.abs(outputs['a'][0].astype(int) - bicubic).mean() > 1  # not a plain downscale
    with pytest.raises(SystemExit, match='degradation needs the top-level option key'):
        script.main(['--gt', gt, '--lq', str(tmp_path / 'x'), '--opt', osp.join(REPO_ROOT, 'options',
                                                                                'train_ttsr_cufed.yml')])


def test_niqe_metric_in_validation_form():
    photo = np.ascontiguousarray(skimage_rgb('chelsea')[:200, :300, ::-1])
    value = calculate_metric({'img': photo, 'img2': photo}, {'type': 'calculate_niqe_sr', 'crop_border': 4,
                                                             'better': 'lower'})
    blurred = cv2.resize(cv2.resize(photo, (75, 50), interpolation=cv2.INTER_AREA), (300, 200),
                         interpolation=cv2.INTER_CUBIC)
    assert 2 < value < calculate_niqe_sr(blurred, 4)  # lower is better: the sharp photo scores lower
    with pytest.raises(ValueError, match='at least two 96x96 blocks.*128x128 image has 1'):
        calculate_niqe_sr(photo[:128, :128], 4)
    with pytest.warns(RuntimeWarning, match='undefined'):
        assert np.isnan(calculate_niqe_sr(np.full((200, 200, 3), 128, np.uint8), 4))
