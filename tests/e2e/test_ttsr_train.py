"""TTSR training through ext/train.py on tiny CUFED-like data: every loss, the warm-up across a
resume, the LTE's own learning rate, validation on CUFED5 with the paper's Y-channel metrics."""
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch

import yaml

from helpers import (REPO_ROOT, TEST_PY, experiment_dir, iteration_logs, read_logs, run_script, run_train,
                     skimage_rgb, write_options)

pytestmark = pytest.mark.slow


def write_rgb(path, image):
    cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('CUFED')
    for sub in ('train/input', 'train/ref', 'CUFED5'):
        os.makedirs(root / sub)
    for index, name in enumerate(('astronaut', 'coffee', 'chelsea', 'rocket')):
        image = skimage_rgb(name)
        write_rgb(root / 'train/input' / f'{index:06d}.png', image[100:132, 100:132])
        write_rgb(root / 'train/ref' / f'{index:06d}.png', image[120:148, 110:142])  # 28x32: padded
    image = skimage_rgb('brick')
    write_rgb(root / 'CUFED5' / '000_0.png', image[:36, :32])
    for level in range(1, 6):
        write_rgb(root / 'CUFED5' / f'000_{level}.png', image[16 + 4 * level:40 + 4 * level, 8:8 + 4 * level + 12])
    return root


def ttsr_options(name, workdir, root, total_iter):
    return {
        'name': name, 'model_type': 'TTSRModel', 'scale': 4, 'num_gpu': 'auto', 'manual_seed': 0,
        'datasets': {
            'train': {'name': 'CUFED', 'type': 'RefCUFEDDataset', 'dataroot_gt': str(root / 'train/input'),
                      'dataroot_ref': str(root / 'train/ref'), 'io_backend': {'type': 'disk'}, 'use_flip': True,
                      'use_rot': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 1,
                      'prefetch_mode': None},
            'val': {'name': 'CUFED5', 'type': 'CUFED5Dataset', 'dataroot': str(root / 'CUFED5'), 'ref_level': 1,
                    'io_backend': {'type': 'disk'}},
        },
        'network_g': {'type': 'TTSRNet', 'mid_channels': 8, 'num_blocks': [1, 1, 1, 1], 'search_chunk_size': 7},
        'network_d': {'type': 'TTSRDiscriminator', 'in_size': 32},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                 'experiments_root': osp.join(workdir, 'experiments', name)},
        'train': {
            'ema_decay': 0,
            'optim_g': {'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.999]},
            'extractor_lr': 1e-5,
            'optim_d': {'type': 'Adam', 'lr': 1e-4, 'betas': [0.0, 0.9]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [1000], 'gamma': 0.5},
            'total_iter': total_iter, 'warmup_iter': -1,
            'pixel_init_iters': 3, 'disc_repeat': 2, 'd_steps_first': True,
            'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
            'perceptual_opt': {'type': 'TTSRPerceptualLoss', 'loss_weight': 1e-2, 'layer': 'relu5_1'},
            'tpl_opt': {'type': 'TransferalPerceptualLoss', 'loss_weight': 1e-2, 'use_attention': True,
                        'convention': 'original'},
            'gan_opt': {'type': 'TTSRGANLoss', 'gan_type': 'wgan_gp', 'loss_weight': 1e-3, 'gp_weight': 10.0},
        },
        'val': {'val_freq': 100, 'save_img': True, 'metrics': {
            'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': True},
            'ssim': {'type': 'calculate_ssim', 'crop_border': 0, 'test_y_channel': True}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False},
        'dist_params': {'backend': 'nccl', 'port': 29500},
    }






def test_all_losses_warmup_survives_resume(data_root, tmp_path, vgg19_env, vgg19_weights):
    opt = ttsr_options('ttsr_tiny', str(tmp_path), data_root, total_iter=2)
    run_train(opt, str(tmp_path), env=vgg19_env)  # iterations 1-2: warm-up (pixel_init_iters 3)
    exp_dir = experiment_dir(opt, str(tmp_path))
    assert {'net_g_2.pth', 'net_d_2.pth'} <= set(os.listdir(osp.join(exp_dir, 'models')))

    opt['train']['total_iter'] = 4
    run_train(opt, str(tmp_path), extra_args=['--auto_resume'], env=vgg19_env)  # iteration 3: warm-up, 4: all
    logs = iteration_logs(read_logs(exp_dir))
    assert set(logs) >= {1, 2, 3, 4}
    for iteration in (1, 2, 3):
        assert 'l_g_pix' in logs[iteration] and 'l_g_gan' not in logs[iteration] and 'l_d_real' not in logs[iteration]
    for key in ('l_g_pix', 'l_g_percep', 'l_g_tpl', 'l_g_gan', 'l_d_real', 'l_d_fake', 'l_d_gp'):
        assert f'{key}:' in logs[4], (key, logs[4])
    assert re.search(r'lr:\(1\.000e-04,\s*1\.000e-05,?\)', logs[4])  # main network and LTE groups

    # the LTE started from the VGG19 file and was trained; the discriminator was trained after the warm-up
    vgg = torch.load(vgg19_weights, weights_only=True)
    net_g2 = torch.load(osp.join(exp_dir, 'models', 'net_g_2.pth'), weights_only=True)['params']
    net_g4 = torch.load(osp.join(exp_dir, 'models', 'net_g_4.pth'), weights_only=True)['params']
    assert not torch.equal(net_g2['extractor.slice3.10.weight'], vgg['features.10.weight'])
    assert (net_g2['extractor.slice3.10.weight'] - vgg['features.10.weight']).abs().max() < 1e-3  # lr 1e-5
    net_d2 = torch.load(osp.join(exp_dir, 'models', 'net_d_2.pth'), weights_only=True)['params']
    net_d4 = torch.load(osp.join(exp_dir, 'models', 'net_d_4.pth'), weights_only=True)['params']
    assert not torch.equal(net_d2['body.0.weight'], net_d4['body.0.weight'])
    assert not torch.equal(net_g2['conv_first1.weight'], net_g4['conv_first1.weight'])
    text = read_logs(exp_dir)
    assert re.search(r'# psnr: [\d.]+', text) and re.search(r'# ssim: [\d.]+', text)
    saved = os.listdir(osp.join(exp_dir, 'visualization', '000_0'))
    assert saved and all(name.endswith('.png') for name in saved)

    # the shipped test options (both CUFED5 protocols) on the trained weights, through ext/test.py
    with open(osp.join(REPO_ROOT, 'options', 'test_ttsr_cufed5.yml')) as handle:
        test_opt = yaml.safe_load(handle)
    for spec in test_opt['datasets'].values():
        spec['dataroot'] = str(data_root / 'CUFED5')
    test_opt['datasets']['test_2']['stitch_size'] = 32
    test_opt['network_g'].update(mid_channels=8, num_blocks=[1, 1, 1, 1])
    test_opt['path'].update(pretrain_network_g=osp.join(exp_dir, 'models', 'net_g_4.pth'),
                            results_root=str(tmp_path / 'results'))
    run_script([TEST_PY, '-opt', write_options(str(tmp_path / 'test.yml'), test_opt)], cwd=str(tmp_path))
    text = read_logs(str(tmp_path / 'results'))
    for dataset in ('CUFED5_level1', 'CUFED5_stitched'):
        assert re.search(rf'Validation {dataset}\s+# psnr: [\d.]+', text), text[-2000:]
