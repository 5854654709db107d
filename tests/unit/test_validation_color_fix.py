"""``val.color_fix``: validation scores and saves the colour-fixed output, as ``--color_fix`` does at inference."""
import cv2
import numpy as np
import pytest
import torch

import ext  # noqa: F401
from basicsr.models import build_model
from basicsr.utils import tensor2img
from ext.errors import OptionError
from ext.options import validate_options
from ext.utils.color_fix import fix_colors
from helpers import base_train_options, skimage_rgb


class ValidationSet(list):
    """What ``validate_images`` needs of a dataloader: batches, ``len`` and ``dataset.opt['name']``."""

    class dataset:  # noqa: N801
        opt = {'name': 'val'}


def validation_batches():
    batches = []
    for index, photo in enumerate(('astronaut', 'coffee')):
        gt = cv2.resize(skimage_rgb(photo), (64, 64), interpolation=cv2.INTER_AREA)
        lq = cv2.resize(gt, (16, 16), interpolation=cv2.INTER_AREA)
        as_tensor = lambda image: torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.  # noqa: E731
        batches.append({'lq': as_tensor(lq), 'gt': as_tensor(gt), 'lq_path': [f'{index}_{photo}.png']})
    return ValidationSet(batches)


def tiny_model(tmp_path, color_fix):
    opt = base_train_options('color_fix', str(tmp_path), 'unused', 'unused')
    opt.update(model_type='ExtSRModel', is_train=True, dist=False, rank=0, world_size=1, num_gpu=0)
    opt['path'].update(visualization=str(tmp_path / 'visualization'))
    opt['val'] = {'save_img': True, 'color_fix': color_fix,
                  'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': False}}}
    torch.manual_seed(0)
    model = build_model(opt)
    with torch.no_grad():  # an untrained net with a strong colour cast: what the fix is for
        model.net_g.conv_last.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
    return model


@pytest.mark.parametrize('mode', ['wavelet', 'adain'])
def test_validation_scores_and_saves_the_colour_fixed_output(tmp_path, mode):
    plain = tiny_model(tmp_path / 'none', 'none')
    plain.nondist_validation(validation_batches(), 1, None, save_img=True)
    fixed = tiny_model(tmp_path / mode, mode)
    fixed.nondist_validation(validation_batches(), 1, None, save_img=True)
    # the control (no fix) keeps the cast; the fix takes the input's colour
    assert fixed.metric_results['psnr'] > plain.metric_results['psnr'] + 2, (plain.metric_results, mode)

    batch = validation_batches()[0]
    fixed.feed_data(batch)
    fixed.test()
    expected = tensor2img([fix_colors(fixed.output, fixed.lq, mode)])
    [path] = (tmp_path / mode).rglob('0_astronaut_1.png')  # BasicSR's name: <image>_<iteration>
    saved = cv2.imread(str(path))
    np.testing.assert_array_equal(saved, expected)


def test_unknown_color_fix_stops_with_the_key_and_the_modes(tmp_path):
    opt = base_train_options('color_fix', str(tmp_path), str(tmp_path), str(tmp_path), val_gt=str(tmp_path),
                             val_lq=str(tmp_path))
    opt['model_type'] = 'ExtSRModel'
    opt['val']['color_fix'] = 'wavlet'
    with pytest.raises(OptionError) as error:
        validate_options(opt, source='tiny.yml')
    assert 'val.color_fix' in str(error.value) and "'wavelet'" in str(error.value)
