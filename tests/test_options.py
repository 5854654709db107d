"""Option validation: bad keys, types and paths fail before any data is read, naming key, file and fix."""
import copy
import os
import os.path as osp

import pytest

import ext  # noqa: F401
from ext.options import OptionError, resolve_paths, validate_options
from ext.utils import pretrained
from helpers import TRAIN_PY, base_train_options, run_script, write_image_folder, write_options


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    gt = write_image_folder(str(root / 'gt'), 2, 32)
    lq = write_image_folder(str(root / 'lq'), 2, 8)
    return str(root), osp.dirname(gt[0]), osp.dirname(lq[0])


@pytest.fixture
def opt(data, tmp_path):
    root, gt, lq = data
    opt = base_train_options('valid', str(tmp_path), gt, lq, gt, lq)
    opt.update(is_train=True, auto_resume=False)
    return opt


def _problems(opt):
    with pytest.raises(OptionError) as error:
        validate_options(opt, source='/somewhere/my_options.yml')
    message = str(error.value)
    assert message.startswith('/somewhere/my_options.yml: invalid options:')
    return message


def test_a_valid_option_dict_passes(opt):
    validate_options(opt, source='x.yml')


@pytest.mark.parametrize('edit, expected', [
    (lambda o: o['train'].update(totl_iter=o['train'].pop('total_iter')), "train.totl_iter: unknown key; did you "
                                                                         "mean 'total_iter'?"),
    (lambda o: o['logger'].update(print_frq=1), "logger.print_frq: unknown key; did you mean 'print_freq'?"),
    (lambda o: o['path'].update(pretrain_netwrk_g=None), "path.pretrain_netwrk_g: unknown key"),
    (lambda o: o['datasets']['train'].update(use_hflp=True), "datasets.train.use_hflp: unknown key; did you mean "
                                                             "'use_hflip'?"),
    (lambda o: o['network_g'].update(type='RRDBNett'), "network_g.type: unknown network 'RRDBNett'; did you mean "
                                                       "'RRDBNet'?"),
    (lambda o: o['network_g'].update(num_blocks=2), "network_g.num_blocks: RRDBNet has no argument 'num_blocks'; "
                                                    "did you mean 'num_block'?"),
    (lambda o: o.update(model_type='SRGANModle'), "model_type: unknown model 'SRGANModle'; did you mean "
                                                  "'SRGANModel'?"),
    (lambda o: o['datasets']['train'].update(type='PairedImageDatset'), "unknown dataset 'PairedImageDatset'; did "
                                                                        "you mean 'PairedImageDataset'?"),
    (lambda o: o['train']['pixel_opt'].update(type='L1loss'), "train.pixel_opt.type: unknown loss 'L1loss'; did you "
                                                              "mean 'L1Loss'?"),
    (lambda o: o['val']['metrics']['psnr'].update(type='calculate_psnt'), "val.metrics.psnr.type: unknown metric "
                                                                          "'calculate_psnt'"),
    (lambda o: o['train']['scheduler'].update(type='MultiStepLr'), "train.scheduler.type: unknown scheduler "
                                                                   "'MultiStepLr'; did you mean 'MultiStepLR'?"),
    (lambda o: o['train']['scheduler'].update(milestone=[1]), "train.scheduler.milestone: MultiStepLR has no "
                                                              "argument 'milestone'; did you mean 'milestones'?"),
    (lambda o: o['train']['optim_g'].update(type='Adma'), "train.optim_g.type: unknown optimizer 'Adma'; did you "
                                                          "mean 'Adam'?"),
    (lambda o: o['datasets']['train'].update(dataroot_gt='/no/such/folder'), "datasets.train.dataroot_gt: "
                                                                             "'/no/such/folder' does not exist"),
])
def test_each_mistake_is_named_with_the_closest_valid_name(opt, edit, expected):
    edit(opt)
    assert expected in _problems(opt)


def test_all_problems_are_reported_at_once(opt):
    opt['train']['totl_iter'] = 1
    opt['network_g']['type'] = 'RRDBNett'
    message = _problems(opt)
    assert 'train.totl_iter' in message and 'network_g.type' in message


def test_a_missing_pretrained_network_says_how_to_obtain_it(opt):
    opt['path']['pretrain_network_g'] = '/models/RealESRNet_x4plus.pth'
    message = _problems(opt)
    assert "path.pretrain_network_g: '/models/RealESRNet_x4plus.pth' does not exist" in message
    assert 'train_realesrnet_x4plus.yml' in message and 'Real-ESRGAN release' in message


def test_a_perceptual_loss_without_vgg_weights_is_named(opt, monkeypatch, tmp_path):
    monkeypatch.delenv(pretrained.VGG_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(pretrained, 'default_locations', lambda name: [str(tmp_path / name)])
    opt['train']['perceptual_opt'] = {'type': 'PerceptualLoss', 'layer_weights': {'conv5_4': 1.0}}
    message = _problems(opt)
    assert 'train.perceptual_opt' in message and 'vgg19-dcbb9e9d.pth' in message


def test_lmdb_roots_must_end_in_lmdb(opt, data):
    opt['datasets']['train']['io_backend'] = {'type': 'lmdb'}
    assert "io_backend lmdb needs a folder ending in '.lmdb'" in _problems(opt)


def test_more_gpus_than_visible_is_an_error(opt):
    opt['num_gpu'] = 8
    assert 'num_gpu: 8 GPU(s) asked for' in _problems(opt)


def test_relative_paths_are_resolved_against_the_repository_root(opt):
    opt = copy.deepcopy(opt)
    opt['datasets']['train']['dataroot_gt'] = 'datasets/materials/HR'
    opt['path']['pretrain_network_g'] = 'experiments/pretrained_models/x.pth'
    resolve_paths(opt, '/repo')
    assert opt['datasets']['train']['dataroot_gt'] == '/repo/datasets/materials/HR'
    assert opt['path']['pretrain_network_g'] == '/repo/experiments/pretrained_models/x.pth'


def test_train_py_stops_before_reading_data_with_exit_code_2(opt, tmp_path):
    opt['train']['totl_iter'] = opt['train'].pop('total_iter')
    for key in ('is_train', 'auto_resume'):
        opt.pop(key)
    yml = write_options(str(tmp_path / 'typo.yml'), opt)
    result = run_script([TRAIN_PY, '-opt', yml], cwd=str(tmp_path), check=False)
    assert result.returncode == 2
    assert f'{yml}: invalid options:' in result.stderr and "did you mean 'total_iter'" in result.stderr
    assert 'Traceback' not in result.stderr
    assert not os.path.exists(opt['path']['experiments_root'])  # nothing created
