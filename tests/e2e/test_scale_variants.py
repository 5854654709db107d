"""x2 / x1 Real-ESRNet and A-ESRGAN option files and the paired fine-tune, trained a few iterations each."""
import math
import os
import os.path as osp

import cv2
import pytest

from helpers import REPO_ROOT, run_script, run_train, write_image_folder, write_paired_folders
from test_aesrgan_training import load, load_option_file, logged_losses, shrink, tiny_data  # noqa: F401

pytestmark = pytest.mark.slow


def degraded_val_pairs(root, scale, count=2, size=64):
    """GT crops and their x``scale`` bicubic LQ (x1: a JPEG-compressed copy of the same size)."""
    gt_paths = write_image_folder(osp.join(root, 'gt'), count, size, seed=3)
    lq_dir = osp.join(root, f'lq_x{scale}')
    os.makedirs(lq_dir)
    for path in gt_paths:
        gt = cv2.imread(path)
        if scale == 1:
            lq = cv2.imdecode(cv2.imencode('.jpg', gt, [cv2.IMWRITE_JPEG_QUALITY, 30])[1], cv2.IMREAD_COLOR)
        else:
            lq = cv2.resize(gt, (size // scale, size // scale), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(osp.join(lq_dir, osp.basename(path)), lq)
    return osp.join(root, 'gt'), lq_dir


def test_x2_realesrnet_then_x2_multiscale_aesrgan(tmp_path, tiny_data):  # noqa: F811
    val_gt, val_lq = degraded_val_pairs(str(tmp_path / 'val_x2'), 2)
    data = dict(tiny_data, val_gt=val_gt, val_lq=val_lq)
    stage1 = shrink('train_realesrnet_x2plus.yml', 'esrnet_x2', tmp_path, data, total_iter=2)
    assert stage1['scale'] == stage1['network_g']['scale'] == 2
    run_train(stage1, str(tmp_path))
    root1 = stage1['path']['experiments_root']
    generator = load(f'{root1}/models/net_g_latest.pth')
    assert generator['params']['conv_first.weight'].shape[1] == 12  # pixel-unshuffled input
    assert generator['network_options'] == {'network': stage1['network_g'], 'scale': 2, 'option_key': 'network_g'}
    # validation outputs have the GT's size
    assert cv2.imread(f'{root1}/visualization/0000/0000_2.png').shape == (64, 64, 3)

    stage2 = shrink('train_multiaesrgan_x2plus.yml', 'multi_x2', tmp_path, data, total_iter=2)
    stage2['path'].update(pretrain_network_g=f'{root1}/models/net_g_latest.pth', param_key_g='params_ema')
    run_train(stage2, str(tmp_path))
    losses = logged_losses(stage2['path']['experiments_root'])[2]
    assert {'l_g_gan_scale0', 'l_g_gan_scale1', 'l_d_real'} <= set(losses)
    assert all(math.isfinite(v) for v in losses.values())


def test_x1_restoration(tmp_path, tiny_data):  # noqa: F811
    val_gt, val_lq = degraded_val_pairs(str(tmp_path / 'val_x1'), 1)
    opt = shrink('train_realesrnet_x1.yml', 'esrnet_x1', tmp_path, dict(tiny_data, val_gt=val_gt, val_lq=val_lq),
                 total_iter=2)
    assert opt['scale'] == opt['network_g']['scale'] == 1
    result = run_train(opt, str(tmp_path))
    root = opt['path']['experiments_root']
    assert load(f'{root}/models/net_g_latest.pth')['params']['conv_first.weight'].shape[1] == 48
    assert '# psnr:' in result.stdout + result.stderr
    assert cv2.imread(f'{root}/visualization/0000/0000_2.png').shape == (64, 64, 3)


def test_finetune_a_released_generator_on_paired_data(tmp_path):
    """The paired fine-tune option file on a tiny LR/HR folder: meta info from the project's script, a
    pretrained generator (as a released file: params_ema), held-out validation with PSNR and LPIPS."""
    import torch
    from basicsr.archs.rrdbnet_arch import RRDBNet

    from test_perceptual_metrics import random_trunk_file
    train_hr, train_lr = write_paired_folders(str(tmp_path / 'pairs' / 'train'), count=3, gt_size=64)
    val_hr, val_lr = write_paired_folders(str(tmp_path / 'pairs' / 'val'), count=2, gt_size=64, seed=7)
    os.rename(train_hr, tmp_path / 'pairs' / 'train' / 'hr')
    os.rename(train_lr, tmp_path / 'pairs' / 'train' / 'lr')
    meta = tmp_path / 'pairs' / 'meta_info_pairs.txt'
    run_script([osp.join(REPO_ROOT, 'scripts', 'generate_meta_info.py'), '--input', str(tmp_path / 'pairs/train/hr'),
                '--root', str(tmp_path / 'pairs/train/hr'), '--meta_info', str(meta), '--check'], cwd=str(tmp_path))
    assert meta.read_text().split() == ['0000.png', '0001.png', '0002.png']

    opt = load_option_file('finetune_aesrgan_x4plus_paired.yml')
    assert opt['high_order_degradation'] is False and opt['model_type'] == 'MultiScaleRealESRGANModel'
    torch.manual_seed(0)
    released = RRDBNet(3, 3, num_feat=8, num_block=1, num_grow_ch=4)
    torch.save({'params_ema': released.state_dict()}, tmp_path / 'RealESRGAN_x4plus.pth')
    random_trunk_file(tmp_path, 'alexnet')
    train = opt['datasets']['train']
    train.update(dataroot_gt=str(tmp_path / 'pairs/train/hr'), dataroot_lq=str(tmp_path / 'pairs/train/lr'),
                 meta_info_file=str(meta), gt_size=32, num_worker_per_gpu=0, batch_size_per_gpu=2)
    opt['datasets']['val'].update(dataroot_gt=val_hr, dataroot_lq=val_lr)
    opt.update(name='finetune_paired', gt_size=32)
    opt['network_g'].update(num_feat=8, num_block=1, num_grow_ch=4)
    opt['network_d']['num_feat'] = 8
    opt['path'].update(pretrain_network_g=str(tmp_path / 'RealESRGAN_x4plus.pth'),
                       experiments_root=str(tmp_path / 'experiments' / 'finetune_paired'))
    opt['train'].update(total_iter=2, net_d_init_iters=1)
    opt['train'].pop('perceptual_opt')
    opt['val'].update(val_freq=2, save_img=False)
    opt['val']['metrics']['lpips'] = {'type': 'calculate_lpips', 'better': 'lower', 'backbone_weights': str(tmp_path)}
    opt['logger'] = {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False}
    result = run_train(opt, str(tmp_path))
    log = result.stdout + result.stderr
    assert 'RealESRGAN_x4plus.pth, with param key: [params_ema]' in log
    assert '# psnr:' in log and '# lpips:' in log
    lpips_value = float(log.split('# lpips:')[1].split()[0])
    assert 0 < lpips_value < 1
    losses = logged_losses(opt['path']['experiments_root'])[2]
    assert {'l_g_pix', 'l_g_gan', 'l_d_real'} <= set(losses) and all(math.isfinite(v) for v in losses.values())
