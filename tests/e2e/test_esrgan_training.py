"""ESRGAN two-stage recipe (seed 003) end to end on CPU: the PSNR stage (ExtSRModel, L1) and the GAN stage
(ExtESRGANModel, relativistic average GAN, ESRGANVGGDiscriminator) train on the seed's augmentations and
resume exactly after a SIGKILL; the option files of the recipe parse and build."""
import os.path as osp

import pytest
import torch
import yaml

from helpers import REPO_ROOT, TRAIN_PY, base_train_options, run_script, write_options, write_paired_folders

FAULT_DRIVER = osp.join(REPO_ROOT, 'tests', 'train_with_fault.py')
TINY_G = {'type': 'ESRGANRRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'num_grow_ch': 4}
TINY_D = {'type': 'ESRGANVGGDiscriminator', 'num_in_ch': 3, 'input_size': 32, 'block_channels': [8, 8, 16, 16],
          'fc_features': [16]}


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp('esrgan_photos')
    return {'train': write_paired_folders(str(root / 'train'), 6, 48, seed=0),
            'val': write_paired_folders(str(root / 'val'), 1, 48, seed=1)}


def stage_options(stage, name, workdir, photos, pretrain_g=None):
    opt = base_train_options(name, workdir, *photos['train'], *photos['val'], gt_size=32, total_iter=6)
    opt['model_type'] = 'ExtSRModel'  # the recipe's option files' models
    train_set = opt['datasets']['train']
    train_set.update(type='ESRGANPairedDataset', flip_prob=0.25, transpose_prob=0.75, lq_jpeg_prob=0.5,
                     lq_jpeg_quality=[50, 95], lq_dropout_prob=0.5, lq_dropout_holes=[1, 2], lq_dropout_size=[1, 2])
    for key in ('use_hflip', 'use_rot'):
        del train_set[key]
    opt['datasets']['val'].update(type='ESRGANPairedDataset', gt_size=32)  # the seed's centre crop
    opt['network_g'] = dict(TINY_G)
    opt['logger']['save_checkpoint_freq'] = 2  # 3 iterations per epoch: the state at 4 falls inside epoch 1
    opt['val'].update(val_freq=2, metrics={'psnr': {'type': 'calculate_psnr', 'crop_border': 4,
                                                     'test_y_channel': True}})
    if stage == 'gan':
        opt['model_type'] = 'ExtESRGANModel'
        opt['network_d'] = dict(TINY_D)
        opt['path'].update(pretrain_network_g=pretrain_g, param_key_g='params', strict_load_d=True)
        adam = {'type': 'Adam', 'lr': 1e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]}
        opt['train'].update(
            optim_g=dict(adam), optim_d=dict(adam),
            pixel_opt={'type': 'L1Loss', 'loss_weight': 0.01, 'reduction': 'mean'},
            gan_opt={'type': 'GANLoss', 'gan_type': 'vanilla', 'real_label_val': 1.0, 'fake_label_val': 0.0,
                     'loss_weight': 0.005},
            net_d_iters=1, net_d_init_iters=0)
    return opt


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def same(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def uninterrupted_and_resumed(stage, workdir, photos, pretrain_g=None):
    """Final weights of a run of 6 iterations and of one SIGKILLed after its state at 4, then resumed."""
    results = {}
    for name in ('whole', 'killed'):
        opt = stage_options(stage, f'{stage}_{name}', workdir, photos, pretrain_g)
        yml = write_options(osp.join(workdir, f'{stage}_{name}.yml'), opt)
        if name == 'whole':
            log = run_script([TRAIN_PY, '-opt', yml], cwd=workdir)
        else:
            killed = run_script([FAULT_DRIVER, '--kill-after-state', '4', '-opt', yml, '--auto_resume'], cwd=workdir,
                                check=False)
            assert killed.returncode == -9, killed.stderr[-3000:]
            log = run_script([TRAIN_PY, '-opt', yml, '--auto_resume'], cwd=workdir)
        models = osp.join(opt['path']['experiments_root'], 'models')
        results[name] = (log.stdout + log.stderr, {label: load(osp.join(models, f'net_{label}_latest.pth'))
                                                   for label in (('g', 'd') if stage == 'gan' else ('g',))})
    return results


@pytest.fixture(scope='module')
def psnr_stage(photos, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp('esrgan_psnr'))
    return workdir, uninterrupted_and_resumed('psnr', workdir, photos)


def test_psnr_stage_trains_validates_and_resumes_exactly(psnr_stage):
    workdir, results = psnr_stage
    log, weights = results['whole']
    assert 'l_pix' in log and '# psnr:' in log
    resumed_log, resumed = results['killed']
    assert 'Resuming training from epoch: 1, iter: 4' in resumed_log
    assert same(weights['g']['params'], resumed['g']['params'])


def test_gan_stage_starts_from_the_psnr_stage_and_resumes_exactly(psnr_stage, photos, tmp_path):
    workdir, _ = psnr_stage
    psnr_g = osp.join(workdir, 'experiments', 'psnr_whole', 'models', 'net_g_latest.pth')
    results = uninterrupted_and_resumed('gan', str(tmp_path), photos, pretrain_g=psnr_g)
    log, weights = results['whole']
    assert f'Loading ESRGANRRDBNet model from {psnr_g}' in log
    assert 'l_g_gan' in log and 'l_d_real' in log and 'l_g_percep' not in log
    resumed_log, resumed = results['killed']
    assert 'Resuming training from epoch: 1, iter: 4' in resumed_log
    assert same(weights['g']['params'], resumed['g']['params'])
    assert same(weights['d']['params'], resumed['d']['params'])
    assert not same(weights['g']['params'], load(psnr_g)['params'])  # it did train


@pytest.mark.parametrize('name', ['train_esrgan_psnr_x4.yml', 'train_esrgan_x4.yml', 'test_esrgan_x4.yml'])
def test_option_files_hold_the_seed_hyper_parameters_and_build(name):
    from basicsr.archs import build_network
    with open(osp.join(REPO_ROOT, 'options', name)) as handle:
        opt = yaml.safe_load(handle)
    g = opt['network_g']
    assert (g['num_feat'], g['num_block'], g['num_grow_ch'], opt['scale']) == (64, 16, 32, 4)
    if name.startswith('train'):
        train_set, train = opt['datasets']['train'], opt['train']
        assert (train_set['gt_size'], train_set['batch_size_per_gpu']) == (128, 16)
        assert (train_set['flip_prob'], train_set['transpose_prob']) == (0.25, 0.75)
        assert (train_set['lq_jpeg_prob'], train_set['lq_dropout_prob']) == (0.25, 0.25)
        assert opt['datasets']['val']['dataroot_gt'].startswith('datasets/BSDS500')
    if name == 'train_esrgan_psnr_x4.yml':
        assert opt['model_type'] == 'ExtSRModel' and train['optim_g']['lr'] == 2e-4
        assert train['scheduler']['gamma'] == 0.5 and train['scheduler']['milestones'][0] == 200000
        assert 'perceptual_opt' not in train and 'gan_opt' not in train
    if name == 'train_esrgan_x4.yml':
        assert opt['model_type'] == 'ExtESRGANModel'
        assert opt['path']['pretrain_network_g'] == 'experiments/ESRGAN_PSNR_x4_DIV2K/models/net_g_latest.pth'
        assert train['perceptual_opt']['layer_weights'] == {'conv5_4': 1}
        assert train['perceptual_opt']['vgg_type'] == 'vgg19' and train['perceptual_opt']['criterion'] == 'l1'
        assert (train['pixel_opt']['loss_weight'], train['gan_opt']['loss_weight']) == (0.01, 0.005)
        assert train['optim_g']['lr'] == train['optim_d']['lr'] == 1e-4
        assert train['optim_d']['betas'] == [0.9, 0.99]
        assert train['scheduler']['milestones'] == [50000, 100000, 200000, 300000]
        d = build_network(dict(opt['network_d']))
        assert d(torch.rand(1, 3, 128, 128)).shape == (1, 1)
    if name == 'test_esrgan_x4.yml':
        assert [s['name'] for s in opt['datasets'].values()] == ['Set5', 'Set14', 'DIV2K_val', 'BSDS500_test']
        assert all(m['crop_border'] == 4 and m['test_y_channel'] for m in opt['val']['metrics'].values())
    small = dict(g, num_feat=8, num_block=1, num_grow_ch=4)
    assert build_network(small)(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
