"""The shipped TTSR option files validate and carry the upstream recipes."""
import os
import os.path as osp

import pytest
import yaml

import ext  # noqa: F401
from ext.options import validate_options
from helpers import REPO_ROOT


def load(name):
    with open(osp.join(REPO_ROOT, 'options', name)) as handle:
        return yaml.safe_load(handle)


def pointed_at(opt, folder):
    for spec in opt['datasets'].values():
        for key in spec:
            if key.startswith('dataroot'):
                spec[key] = str(folder)
    opt['path']['pretrain_network_g'] = None
    return opt


@pytest.mark.parametrize('name, is_train', [('train_ttsr_rec_cufed.yml', True), ('train_ttsr_cufed.yml', True),
                                            ('test_ttsr_cufed5.yml', False)])
def test_option_files_validate(name, is_train, tmp_path, vgg19_env):
    opt = pointed_at(load(name), tmp_path)
    opt['is_train'] = is_train
    validate_options(opt, source=name, is_train=is_train)


def test_recipes():
    rec, gan = load('train_ttsr_rec_cufed.yml')['train'], load('train_ttsr_cufed.yml')['train']
    assert set(k for k in rec if k.endswith('_opt')) == {'pixel_opt'}
    assert (gan['pixel_opt']['loss_weight'], gan['perceptual_opt']['loss_weight'], gan['tpl_opt']['loss_weight'],
            gan['gan_opt']['loss_weight']) == (1.0, 1e-2, 1e-2, 1e-3)  # rec_w, per_w, tpl_w, adv_w
    assert gan['gan_opt']['gan_type'] == 'wgan_gp' and gan['disc_repeat'] == 2
    assert gan['pixel_init_iters'] == 2 * 1319 and gan['total_iter'] == 52 * 1319
    assert rec['total_iter'] == 200 * 1319
    for train in (rec, gan):
        assert (train['optim_g']['lr'], train['extractor_lr']) == (1e-4, 1e-5)
    assert os.path.basename(load('test_ttsr_cufed5.yml')['path']['pretrain_network_g']) == 'TTSR-rec_basicsr.pth'
