"""The pix2pix / VGG inpainting option files trained through ext/train.py on tiny images with tiny
networks (every other setting kept), ext/test.py on the test option file, and the VGG run's encoder
freeze and plateau rule continuing exactly after a SIGKILL + --auto_resume."""
import copy
import os.path as osp
import re

import pytest
import torch
import yaml

from helpers import (REPO_ROOT, TEST_PY, experiment_dir, iteration_logs, read_logs, run_script, run_train,
                     write_image_folder, write_options)

pytestmark = pytest.mark.slow

SIZE = 32
FAULT_PY = osp.join(REPO_ROOT, 'tests', 'train_with_fault.py')


def read_yaml(name):
    with open(osp.join(REPO_ROOT, 'options', name)) as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp('inpaint_photos')
    write_image_folder(str(root / 'train'), 4, 48)
    write_image_folder(str(root / 'val'), 2, 48, seed=1)
    return root


def tiny(opt, name, workdir, photos, total_iter, save_every=2):
    """The shipped option file on 32x32 images and tiny networks."""
    opt = copy.deepcopy(opt)
    opt['name'] = name
    opt['num_gpu'] = 0
    opt['datasets']['train'].update(dataroot_gt=str(photos / 'train'), image_size=SIZE, num_worker_per_gpu=0,
                                    batch_size_per_gpu=min(2, opt['datasets']['train']['batch_size_per_gpu']))
    opt['datasets']['val'].update(dataroot_gt=str(photos / 'val'), image_size=SIZE)
    if opt['network_g']['type'] == 'Pix2PixUNetGenerator':
        opt['network_g'].update(image_size=SIZE, num_feat=4)
        opt['network_d'].update(num_feat=4)
    else:
        opt['network_g'].update(load_pretrained_vgg=False, encoder_blocks=2, decoder_feat=[8, 8], bottleneck_feat=8)
        opt['network_d'].update(load_pretrained_vgg=False, num_blocks=2, head_feat=4)
    opt['path']['experiments_root'] = osp.join(workdir, 'experiments', name)
    opt['train']['total_iter'] = total_iter
    opt['val']['val_freq'] = save_every
    opt['logger'].update(print_freq=1, save_checkpoint_freq=save_every, use_tb_logger=False)
    return opt


def metric_values(text, name):
    return [float(v) for v in re.findall(rf'# {name}: (-?[\d.]+|inf)', text)]


def test_pix2pix_256_options_train_and_validate(photos, tmp_path):
    shipped = read_yaml('train_pix2pix_inpaint_256.yml')
    assert shipped['datasets']['train']['batch_size_per_gpu'] == 4 and shipped['network_g']['image_size'] == 256
    assert shipped['train']['pixel_opt']['loss_weight'] == 100
    assert shipped['train']['optim_g']['lr'] == 2e-4 and shipped['train']['optim_g']['betas'] == [0.5, 0.999]
    opt = tiny(shipped, 'pix2pix_256_tiny', str(tmp_path), photos, total_iter=2)
    run_train(opt, str(tmp_path))
    exp_dir = experiment_dir(opt, str(tmp_path))
    text = read_logs(exp_dir)
    logs = iteration_logs(text)
    for key in ('l_d_real', 'l_d_fake', 'l_g_pix', 'l_g_gan', 'l1_hole', 'l1_valid'):
        assert f'{key}:' in logs[2], (key, logs[2])
    for name in ('psnr_hole', 'ssim_hole', 'psnr'):
        assert metric_values(text, name), name
    grid = osp.join(exp_dir, 'visualization', '0000', '0000_2_grid.png')
    assert osp.isfile(grid)


def test_smooth_fill_residual_generator_and_ema_train_and_validate(photos, tmp_path):
    """The learning recipe's settings through ext/train.py: hole_fill smooth in training and validation,
    random scale and rotations in training, a contrast-normalised residual generator, an EMA copy whose
    BatchNorm statistics are averaged and saved."""
    opt = tiny(read_yaml('train_pix2pix_inpaint_256.yml'), 'pix2pix_smooth_tiny', str(tmp_path), photos,
               total_iter=2)
    for spec in opt['datasets'].values():
        spec['hole_fill'] = 'smooth'
    opt['datasets']['train'].update(crop_size=24, random_scale=[0.5, 1.5], use_rot=True)
    opt['network_g'].update(residual=True, dropout=0.0, contrast_norm=True, residual_scale=2.0)
    opt['train'].update(ema_decay=0.5, ema_warmup=True)
    run_train(opt, str(tmp_path))
    exp_dir = experiment_dir(opt, str(tmp_path))
    holes = metric_values(read_logs(exp_dir), 'psnr_hole')
    assert holes and all(0 < v < 60 for v in holes)
    saved = torch.load(osp.join(exp_dir, 'models', 'net_g_latest.pth'), weights_only=True)
    ema = saved['params_ema']
    variances = [key for key in ema if key.endswith('running_var')]
    assert variances and all(not torch.equal(ema[key], torch.ones_like(ema[key])) for key in variances)
    assert all(int(ema[key]) == 2 for key in ema if key.endswith('num_batches_tracked'))  # copied from net_g
    assert not torch.equal(ema['last.1.weight'], torch.zeros_like(ema['last.1.weight']))  # it learned a correction


def test_pix2pix_512_options_train_and_the_test_option_file(photos, tmp_path):
    shipped = read_yaml('train_pix2pix_inpaint_512.yml')
    assert shipped['datasets']['train']['batch_size_per_gpu'] == 1 and shipped['network_g']['image_size'] == 512
    opt = tiny(shipped, 'pix2pix_512_tiny', str(tmp_path), photos, total_iter=2)
    run_train(opt, str(tmp_path))
    net_g = osp.join(experiment_dir(opt, str(tmp_path)), 'models', 'net_g_latest.pth')

    test_opt = read_yaml('test_pix2pix_inpaint.yml')
    test_opt['num_gpu'] = 0
    test_opt['datasets']['test_1'].update(dataroot_gt=str(photos / 'val'), image_size=SIZE)
    test_opt['network_g'] = dict(opt['network_g'])
    test_opt['path'].update(pretrain_network_g=net_g, results_root=str(tmp_path / 'results'))
    run_script([TEST_PY, '-opt', write_options(str(tmp_path / 'test.yml'), test_opt)], cwd=str(tmp_path))
    text = read_logs(str(tmp_path / 'results'))
    holes = metric_values(text, 'psnr_hole')
    assert holes and all(v < 60 for v in holes)
    assert metric_values(text, 'psnr')[0] > holes[0]  # composited: only the hole differs from the ground truth
    folder = osp.join(tmp_path, 'results', 'visualization', test_opt['datasets']['test_1']['name'])
    assert osp.isfile(osp.join(folder, f"0000_{test_opt['name']}_grid.png"))


def vgg_options(photos, workdir, name):
    shipped = read_yaml('train_vgg_inpaint_512.yml')
    assert shipped['train']['perceptual_opt']['loss_weight'] == 0.5
    assert shipped['train']['plateau']['factor'] == 0.5 and shipped['train']['plateau']['max_reductions'] == 10
    opt = tiny(shipped, name, workdir, photos, total_iter=6)
    opt['train']['freeze_encoder_iters'] = 5  # frozen before the kill, unfrozen after the resume
    # a check every 2 iterations, patience 1: the rule fires at the 4th and the 6th iteration whatever the
    # loss does, but only if its state (updates seen, best value) survives the resume at iteration 4
    opt['train']['plateau'].update(check_interval=2, patience=1, min_delta=1e6, smoothing=0.5)
    return opt


def test_vgg_options_freeze_plateau_and_exact_resume_after_sigkill(photos, tmp_path, vgg19_env):
    straight = vgg_options(photos, str(tmp_path), 'vgg_straight')
    run_train(straight, str(tmp_path), env=vgg19_env)
    killed = vgg_options(photos, str(tmp_path), 'vgg_killed')
    yml = write_options(str(tmp_path / 'vgg_killed.yml'), killed)
    result = run_script([FAULT_PY, '--kill-after-state', '4', '-opt', yml], cwd=str(tmp_path), env=vgg19_env,
                        check=False)
    assert result.returncode == -9, result.stderr[-2000:]
    run_script([FAULT_PY, '-opt', yml, '--auto_resume'], cwd=str(tmp_path), env=vgg19_env)

    text = read_logs(experiment_dir(straight, str(tmp_path)))
    for key in ('l_g_percep', 'l_g_gan', 'plateau_smoothed'):
        assert f'{key}:' in iteration_logs(text)[1]
    assert 'Unfroze the generator\'s encoder at iteration 6' in text
    fired = re.findall(r'Plateau of the smoothed l_d_total at iteration (\d+)', text)
    assert fired == ['4', '6']
    resumed_text = read_logs(experiment_dir(killed, str(tmp_path)))
    assert re.findall(r'Plateau of the smoothed l_d_total at iteration (\d+)', resumed_text) == ['4', '6']

    def final(opt, label):
        path = osp.join(experiment_dir(opt, str(tmp_path)), 'models', f'net_{label}_latest.pth')
        return torch.load(path, weights_only=True)['params']

    for label in ('g', 'd'):
        a, b = final(straight, label), final(killed, label)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (label, key)
    states = [torch.load(osp.join(experiment_dir(opt, str(tmp_path)), 'training_states', '6.state'),
                         weights_only=True) for opt in (straight, killed)]
    assert states[0]['extra_by_rank'] == states[1]['extra_by_rank']
    assert states[0]['extra_by_rank'][0]['plateau']['reductions'] == 2
    lrs = [group['lr'] for group in states[1]['optimizers'][0]['param_groups']]
    assert lrs == pytest.approx([2e-4 / 4, 2e-5 / 4])  # halved twice, the encoder group too
