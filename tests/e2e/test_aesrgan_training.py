"""A-ESRGAN and Real-ESRNet trained for a few iterations through ext/train.py on tiny real-image data (CPU)."""
import glob
import math
import os
import os.path as osp
import random
import re

import cv2
import pytest
import torch
import yaml

from helpers import (REPO_ROOT, free_port, read_logs, run_script, run_train, write_image_folder, write_options,
                     write_paired_folders)

FAULT_DRIVER = osp.join(REPO_ROOT, 'tests', 'train_with_fault.py')

pytestmark = pytest.mark.slow


def load_option_file(name):
    with open(osp.join(REPO_ROOT, 'options', name)) as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    """4 GT photos with a meta-info list (the layout scripts/generate_meta_info.py writes) and 2 val pairs."""
    root = tmp_path_factory.mktemp('materials')
    paths = write_image_folder(str(root / 'multiscale'), 4, 96)
    os.makedirs(root / 'meta_info')
    meta = root / 'meta_info' / 'meta_info_multiscale.txt'
    meta.write_text(''.join(f'multiscale/{osp.basename(p)}\n' for p in paths))
    val_gt, val_lq = write_paired_folders(str(root / 'val'), 2, 64)
    return {'root': str(root), 'meta': str(meta), 'val_gt': val_gt, 'val_lq': val_lq}


def shrink(option_file, name, workdir, data, total_iter=4, perceptual=False):
    """An option file of options/ shrunk to tiny nets, tiny data, a few iterations; the rest unchanged."""
    opt = load_option_file(option_file)
    opt['name'] = name
    # 80: a multiple of 16 (two-scale D) that the degradations take (0.15x resize, then a 21-tap blur)
    opt.update(gt_size=80, queue_size=4)
    train = opt['datasets']['train']
    assert train['type'] == 'MaterialMultiscaleDataset'
    train.update(dataroot_gt=data['root'], meta_info=data['meta'], gt_size=80, crop_pad_size=96,
                 num_worker_per_gpu=0, batch_size_per_gpu=2)  # degrade 96 px regions (upstream: 400), crop 80
    opt['datasets']['val'].update(dataroot_gt=data['val_gt'], dataroot_lq=data['val_lq'])
    opt['datasets'].pop('val_degraded', None)  # the degraded set: tests/e2e/test_degraded_val_niqe.py and the demo
    opt['val']['metrics'].pop('niqe', None)  # 64-px validation images hold fewer than two 96x96 NIQE blocks
    opt['network_g'].update(num_feat=8, num_block=1, num_grow_ch=4)
    if 'network_d' in opt:
        opt['network_d']['num_feat'] = 8
    opt['path'] = {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                   'experiments_root': osp.join(str(workdir), 'experiments', name)}
    opt['train']['total_iter'] = total_iter
    if not perceptual:
        opt['train'].pop('perceptual_opt', None)
    opt['val']['val_freq'] = 2
    opt['logger'] = {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False}
    return opt


def logged_losses(experiment_root, run=-1):
    """{iteration: {name: value}} from the training log of a run (default: the latest)."""
    log_file = sorted(glob.glob(osp.join(experiment_root, 'train_*.log')))[run]  # names end in a time stamp
    losses = {}
    with open(log_file) as handle:
        for line in handle:
            match = re.search(r'iter:\s*(\d+),.*\]\s+(\w+: .*)$', line)
            if match:
                pairs = re.findall(r'(\w+): ([-+.\w]+)', match.group(2))
                losses[int(match.group(1))] = {k: float(v) for k, v in pairs}
    return losses


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def test_multiscale_aesrgan_trains_validates_and_resumes_exactly(tmp_path, tiny_data, vgg19_env):
    opt = shrink('train_multiaesrgan_x4plus.yml', 'multi', tmp_path, tiny_data, perceptual=True)
    root = opt['path']['experiments_root']
    run_train(opt, str(tmp_path), env=vgg19_env)

    losses = logged_losses(root)
    assert sorted(losses) == [1, 2, 3, 4]
    for values in losses.values():
        assert all(math.isfinite(v) for v in values.values())
        assert {'l_g_pix', 'l_g_percep', 'l_g_gan', 'l_g_gan_scale0', 'l_g_gan_scale1', 'l_d_real_scale1',
                'l_d_fake_scale0', 'out_d_real_scale0', 'out_d_fake'} <= set(values)
        assert values['l_g_gan'] == pytest.approx(values['l_g_gan_scale0'] + values['l_g_gan_scale1'], rel=1e-3)
    net_g, net_d = load(f'{root}/models/net_g_4.pth'), load(f'{root}/models/net_d_4.pth')
    assert set(net_g) == {'params', 'params_ema', 'network_options'}
    assert any(k.startswith('layer1.attn_3.') for k in net_d['params'])
    assert not torch.equal(net_g['params']['conv_first.weight'], net_g['params_ema']['conv_first.weight'])
    grid = cv2.imread(f'{root}/visualization/0000/0000_4_grid.png')
    assert grid.shape == (64, 3 * 64 + 2 * 4, 3)  # bicubic lq | output | gt
    assert osp.isfile(f'{root}/visualization/0001/0001_2.png')
    assert 'pair_queue' in load(f'{root}/training_states/4.state')['extra_by_rank'][0]

    # kill after iteration 2: its checkpoint is the newest; --auto_resume must redo 3 and 4 identically
    finished = {name: load(f'{root}/models/{name}_4.pth') for name in ('net_g', 'net_d')}
    for path in glob.glob(f'{root}/models/*_4.pth') + glob.glob(f'{root}/models/*_latest.pth'):
        os.remove(path)
    os.remove(f'{root}/training_states/4.state')
    result = run_train(opt, str(tmp_path), extra_args=['--auto_resume'], env=vgg19_env)
    assert 'Resuming training from epoch: 0, iter: 2' in result.stdout + result.stderr
    resumed_losses = logged_losses(root)
    assert sorted(resumed_losses) == [3, 4]
    if torch.cuda.is_available():
        # the runs used the GPU, whose conv kernels are not bitwise repeatable: the same batches and queue
        # give the same losses to print precision, a wrong batch or queue would differ by far more
        for iteration in (3, 4):
            for key, value in resumed_losses[iteration].items():
                assert value == pytest.approx(losses[iteration][key], rel=1e-2, abs=1e-4), (iteration, key)
        return
    assert resumed_losses == {i: losses[i] for i in (3, 4)}
    for name, expected in finished.items():
        assert_same_checkpoint(load(f'{root}/models/{name}_4.pth'), expected, f'{name} after resume')


def assert_same_checkpoint(got, expected, what):
    """Bitwise-equal weights under every key, and the same recorded network options."""
    for key in expected:
        if key == 'network_options':  # the run's network options, not weights
            assert got[key] == expected[key], what
            continue
        for param, value in expected[key].items():
            assert torch.equal(got[key][param], value), f'{what}: {key} {param} differs'


def test_realesrnet_then_single_discriminator_aesrgan_from_its_generator(tmp_path, tiny_data):
    stage1 = shrink('train_realesrnet_x4plus.yml', 'esrnet', tmp_path, tiny_data, total_iter=2)
    run_train(stage1, str(tmp_path))
    root1 = stage1['path']['experiments_root']
    assert all(math.isfinite(v) for v in logged_losses(root1)[2].values())
    generator = load(f'{root1}/models/net_g_latest.pth')
    assert set(generator) == {'params', 'params_ema', 'network_options'}
    assert osp.isfile(f'{root1}/visualization/0000/0000_2_grid.png')

    # stage 2 with upstream's single-D option file (type UNetDiscriminatorAesrgan), starting from stage 1
    stage2 = shrink('train_aesrgan_x4plus.yml', 'single', tmp_path, tiny_data, total_iter=2)
    stage2['path'].update(pretrain_network_g=f'{root1}/models/net_g_latest.pth', param_key_g='params_ema')
    result = run_train(stage2, str(tmp_path))
    assert 'net_g_latest.pth, with param key: [params_ema]' in result.stdout + result.stderr
    root2 = stage2['path']['experiments_root']
    losses = logged_losses(root2)
    assert {'l_g_gan', 'l_d_real', 'l_d_fake'} <= set(losses[2]) and 'l_g_gan_scale0' not in losses[2]
    assert all(math.isfinite(v) for v in losses[2].values())
    assert set(load(f'{root2}/models/net_g_latest.pth')) == {'params', 'params_ema', 'network_options'}
    assert 'conv9.weight' in load(f'{root2}/models/net_d_latest.pth')['params']


def torchrun(args, workdir, check=True):
    return run_script(['-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port()}', *args,
                       '--launcher', 'pytorch'], cwd=workdir, env={'OMP_NUM_THREADS': '1'}, check=check)


@pytest.mark.slow(40)
def test_ddp_sigterm_on_one_rank_then_sigkill_then_auto_resume_equals_an_uninterrupted_run(tmp_path, tiny_data):
    """2-process gloo DDP A-ESRGAN. Each rank has its own training-pair queue (other images): a SIGTERM to
    rank 1 alone stops both ranks after the same iteration with a checkpoint; a SIGKILL after 4.state and
    --auto_resume then end with bitwise the weights of an uninterrupted 2-process run (CPU)."""
    def options(name):
        opt = shrink('train_multiaesrgan_x4plus.yml', name, tmp_path, tiny_data, total_iter=6)
        opt.pop('val')
        opt['datasets'].pop('val')
        opt['datasets']['train']['dataset_enlarge_ratio'] = 2  # 2 iterations per epoch
        opt['logger']['save_checkpoint_freq'] = 2
        return opt, write_options(str(tmp_path / f'{name}.yml'), opt)

    base, base_yml = options('ddp_base')
    torchrun([osp.join(REPO_ROOT, 'ext', 'train.py'), '-opt', base_yml], str(tmp_path))

    opt, yml = options('ddp_stopped')
    root = opt['path']['experiments_root']
    iteration = random.choice([1, 3])  # not a checkpoint iteration
    stopped = torchrun([FAULT_DRIVER, '--sigterm-at-iter', str(iteration), '--signal-rank', '1', '-opt', yml],
                       str(tmp_path), check=False)
    assert stopped.returncode == 0, (iteration, stopped.stderr[-4000:])
    log = read_logs(root)
    assert f'Stopping after iteration {iteration} (rank 1: received SIGTERM)' in log, iteration
    assert f'iter:{iteration + 1:8,d}' not in log
    state = load(f'{root}/training_states/{iteration}.state')
    assert len(state['rng']) == 2 and len(state['extra_by_rank']) == 2
    queues = [each['pair_queue'] for each in state['extra_by_rank']]
    assert queues[0]['filled'] == queues[1]['filled'] == min(2 * iteration, 4)
    assert not torch.equal(queues[0]['gt']['uint8'], queues[1]['gt']['uint8'])  # each rank's own pairs

    killed = torchrun([FAULT_DRIVER, '--kill-after-state', '4', '-opt', yml, '--auto_resume'], str(tmp_path),
                      check=False)
    assert killed.returncode != 0
    assert f'Resuming training from epoch: {iteration // 2}, iter: {iteration}' in killed.stdout + killed.stderr
    resumed = torchrun([osp.join(REPO_ROOT, 'ext', 'train.py'), '-opt', yml, '--auto_resume'], str(tmp_path))
    assert 'Resuming training from epoch: 1, iter: 4' in resumed.stdout + resumed.stderr
    for name in ('net_g', 'net_d'):
        assert_same_checkpoint(load(f'{root}/models/{name}_latest.pth'),
                               load(f"{base['path']['experiments_root']}/models/{name}_latest.pth"),
                               f'{name} (SIGTERM at {iteration})')


def test_real_and_synthetic_pairs_in_one_run_resume_exactly_after_sigkill(tmp_path, tiny_data):
    """dataroot_lq + lq_prob: half the samples are the user's real pairs, half degraded on the fly; the draw
    follows each sample's seed, so a SIGKILL plus --auto_resume ends bitwise where an uninterrupted run ends."""
    lq_root = tmp_path / 'lq'
    (lq_root / 'multiscale').mkdir(parents=True)
    for name in os.listdir(osp.join(tiny_data['root'], 'multiscale')):
        image = cv2.imread(osp.join(tiny_data['root'], 'multiscale', name))
        cv2.imwrite(str(lq_root / 'multiscale' / name), cv2.resize(image, (24, 24), interpolation=cv2.INTER_AREA))
    weights = {}
    for name, fault in (('mixed', None), ('mixed_killed', '2')):
        opt = shrink('train_multiaesrgan_x4plus.yml', name, tmp_path, tiny_data)
        opt['datasets']['train'].update(dataroot_lq=str(lq_root), lq_prob=0.5)
        opt['val']['val_freq'] = 100
        root = opt['path']['experiments_root']
        if fault is None:
            run_train(opt, str(tmp_path))
        else:
            yml = write_options(str(tmp_path / f'{name}.yml'), opt)
            killed = run_script([FAULT_DRIVER, '--kill-after-state', fault, '-opt', yml], cwd=str(tmp_path), check=False)
            assert killed.returncode == -9, killed.stderr[-3000:]
            resumed = run_script([osp.join(REPO_ROOT, 'ext', 'train.py'), '-opt', yml, '--auto_resume'],
                                 cwd=str(tmp_path))
            assert 'Resuming training from epoch: 0, iter: 2' in resumed.stdout + resumed.stderr
        weights[name] = {net: load(f'{root}/models/{net}_latest.pth') for net in ('net_g', 'net_d')}
    for net, expected in weights['mixed'].items():
        for key in ('params', 'params_ema') if net == 'net_g' else ('params', ):
            for param, value in expected[key].items():
                assert torch.equal(weights['mixed_killed'][net][key][param], value), (net, key, param)
