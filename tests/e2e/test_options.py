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


def test_an_unknown_top_level_key_is_named_with_the_closest_valid_one(opt):
    opt['scael'] = 4
    assert "scael: unknown key; did you mean 'scale'?" in _problems(opt)


def test_a_misspelled_top_level_key_of_a_model_is_caught():
    """A-ESRGAN reads l1_gt_usm itself (ext.models.aesrgan_model declares it); BasicSR never looked at top-level
    keys, so `l1_gt_ums: false` trained silently against the sharpened GT."""
    import yaml
    from ext.paths import project_root
    path = osp.join(project_root(), 'options', 'train_multiaesrgan_x4plus.yml')
    with open(path) as handle:
        aesrgan = yaml.safe_load(handle)
    aesrgan['l1_gt_ums'] = aesrgan.pop('l1_gt_usm')
    resolve_paths(aesrgan, project_root())
    assert "l1_gt_ums: unknown key; did you mean 'l1_gt_usm'?" in _problems(aesrgan)


def test_keys_are_collected_from_the_model_class_its_bases_and_its_policies():
    from basicsr.models.srgan_model import SRGANModel
    from ext.options import declared_keys

    class Policy:
        train_option_keys = frozenset({'policy_key'})

    class Base(SRGANModel):
        option_keys = frozenset({'base_top'})
        policies = (Policy, )

    class Model(Base):
        train_option_keys = frozenset({'own_key'})

    assert {'own_key', 'policy_key', 'total_iter', 'net_d_iters'} <= declared_keys(Model, 'train_option_keys')
    assert declared_keys(Model, 'option_keys') == {'base_top'}
    assert 'policy_key' not in declared_keys(SRGANModel, 'train_option_keys')


@pytest.mark.parametrize('where', ['optimizer', 'loss', 'scheduler'])
def test_a_number_that_yaml_reads_as_a_string_is_read_as_a_number_with_a_note(opt, where):
    """YAML 1.1 reads `2e-4` (no dot) as a string; torch.optim.Adam then dies with a TypeError ('<=' between
    float and str) and BasicSR's L1Loss multiplies a string. The validator converts it and says so."""
    import torch
    with pytest.raises(TypeError):  # the control: what training did with it
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr='2e-4')
    section, key = {'optimizer': (opt['train']['optim_g'], 'lr'), 'loss': (opt['train']['pixel_opt'], 'loss_weight'),
                    'scheduler': (opt['train']['scheduler'], 'gamma')}[where]
    section[key] = '2e-4'
    notes = validate_options(opt, source='x.yml')
    assert section[key] == 2e-4 and isinstance(section[key], float)
    assert len(notes) == 1 and "'2e-4' is a string in YAML" in notes[0] and '2.0e-4' in notes[0]


def test_a_string_that_is_not_a_number_is_an_error_naming_the_key(opt):
    opt['train']['optim_g']['lr'] = 'fast'
    opt['train']['optim_g']['betas'] = [0.9, 'x']
    message = _problems(opt)
    assert "train.optim_g.lr: expected a number, got the string 'fast'" in message
    assert "train.optim_g.betas[1]: expected a number, got the string 'x'" in message


def test_train_py_trains_with_lr_2e_4_written_without_a_dot(data, tmp_path):
    root, gt, lq = data
    opt = base_train_options('sci', str(tmp_path), gt, lq, total_iter=2)
    opt['train']['optim_g']['lr'] = 'LEARNING_RATE'
    text = open(write_options(str(tmp_path / 'sci.yml'), opt)).read().replace('LEARNING_RATE', '2e-4')
    assert 'lr: 2e-4' in text
    yml = str(tmp_path / 'sci.yml')
    with open(yml, 'w') as handle:
        handle.write(text)
    result = run_script([TRAIN_PY, '-opt', yml], cwd=str(tmp_path))
    assert "train.optim_g.lr: '2e-4' is a string in YAML" in result.stderr
    log = open([osp.join(opt['path']['experiments_root'], f) for f in os.listdir(opt['path']['experiments_root'])
                if f.endswith('.log')][0]).read()
    assert 'lr: 0.0002' in log and 'End of training' in log
