"""End-to-end runs of ext/train.py and ext/test.py: training, validation, checkpoints, resume, DDP."""
import glob
import os
import os.path as osp
import random
import re
import shutil
import signal
import time
import uuid

import pytest
import torch

from helpers import (REPO_ROOT, free_port, TEST_PY, TRAIN_PY, base_train_options, read_logs, run_script, run_train, write_options,
                     write_paired_folders)

FAULT_DRIVER = osp.join(REPO_ROOT, 'tests', 'train_with_fault.py')


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """8 training and 2 validation pairs cut from scikit-image photos (GT 64 px, bicubic LQ 16 px)."""
    root = tmp_path_factory.mktemp('photos')
    train = write_paired_folders(str(root / 'train'), 8, 64, seed=0)
    val = write_paired_folders(str(root / 'val'), 2, 64, seed=1)
    return {'train': train, 'val': val}


def esrgan_options(name, workdir, photos, total_iter=4, val=True):
    opt = base_train_options(name, workdir, *photos['train'], *(photos['val'] if val else (None, None)),
                             gt_size=32, total_iter=total_iter)
    opt['model_type'] = 'ESRGANModel'
    opt['network_d'] = {'type': 'UNetDiscriminatorSN', 'num_in_ch': 3, 'num_feat': 8}
    opt['path'].update(strict_load_d=True)
    opt['train'].update(
        ema_decay=0.9,
        optim_d={'type': 'Adam', 'lr': 1e-3, 'weight_decay': 0, 'betas': [0.9, 0.99]},
        gan_opt={'type': 'GANLoss', 'gan_type': 'vanilla', 'real_label_val': 1.0, 'fake_label_val': 0.0,
                 'loss_weight': 0.1},
        net_d_iters=1, net_d_init_iters=0)
    return opt


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def max_difference(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_esrgan_trains_validates_checkpoints_and_tests(photos, tmp_path, vgg19_env):
    opt = esrgan_options('esrgan', str(tmp_path), photos)
    opt['train']['perceptual_opt'] = {
        'type': 'PerceptualLoss', 'layer_weights': {'conv1_2': 0.1, 'conv3_4': 1, 'conv5_4': 1}, 'vgg_type': 'vgg19',
        'use_input_norm': True, 'perceptual_weight': 1.0, 'style_weight': 0, 'range_norm': False, 'criterion': 'l1'}
    result = run_train(opt, str(tmp_path), env=vgg19_env)
    log = result.stdout + result.stderr
    assert 'l_g_percep' in log and 'l_d_real' in log and '# psnr:' in log

    root = opt['path']['experiments_root']
    net_g = load(osp.join(root, 'models', 'net_g_4.pth'))
    assert set(net_g) == {'params', 'params_ema', 'network_options'}
    assert all(torch.isfinite(v).all() for v in net_g['params'].values())
    assert set(load(osp.join(root, 'models', 'net_d_4.pth'))) == {'params', 'network_options'}
    state = load(osp.join(root, 'training_states', '4.state'))
    assert state['iter'] == 4 and len(state['optimizers']) == 2 and len(state['rng']) == 1

    test_opt = {
        'name': 'esrgan_test', 'model_type': 'SRModel', 'scale': 4, 'num_gpu': 'auto', 'manual_seed': 0,
        'datasets': {'test_1': {'name': 'photos', 'type': 'PairedImageDataset', 'dataroot_gt': photos['val'][0],
                                'dataroot_lq': photos['val'][1], 'io_backend': {'type': 'disk'}}},
        'network_g': opt['network_g'],
        'path': {'pretrain_network_g': osp.join(root, 'models', 'net_g_latest.pth'), 'param_key_g': 'params_ema',
                 'strict_load_g': True, 'results_root': str(tmp_path / 'results')},
        'val': {'save_img': True, 'suffix': None,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': True}}},
    }
    yml = write_options(str(tmp_path / 'test.yml'), test_opt)
    tested = run_script([TEST_PY, '-opt', yml], cwd=str(tmp_path))
    assert '# psnr:' in tested.stdout + tested.stderr
    assert len(glob.glob(str(tmp_path / 'results' / 'visualization' / 'photos' / '*.png'))) == 2


def test_debug_flag_and_force_yml(photos, tmp_path):
    opt = esrgan_options('flags', str(tmp_path), photos, total_iter=50, val=False)
    result = run_train(opt, str(tmp_path), ['--debug', '--force_yml', 'train:total_iter=3'])
    root = opt['path']['experiments_root']
    assert glob.glob(osp.join(root, 'train_debug_flags_*.log'))  # BasicSR's debug naming
    log = result.stdout + result.stderr
    assert 'iter:       3' in log and 'iter:       4' not in log  # forced total_iter, print_freq 1
    assert osp.isfile(osp.join(root, 'models', 'net_g_latest.pth'))


def test_auto_resume_from_another_working_directory(photos, tmp_path):
    """Default experiments folder (<repo>/experiments/<name>) while the command runs elsewhere;
    checkpoints in .safetensors (logger.checkpoint_format)."""
    name = f'pytest_cwd_{uuid.uuid4().hex[:8]}'
    opt = esrgan_options(name, str(tmp_path), photos, total_iter=4, val=False)
    opt['logger']['checkpoint_format'] = 'safetensors'
    del opt['path']['experiments_root']
    root = osp.join(REPO_ROOT, 'experiments', name)
    first, second = tmp_path / 'a', tmp_path / 'b'
    first.mkdir()
    second.mkdir()
    try:
        run_train(opt, str(first))
        opt['train']['total_iter'] = 6
        result = run_train(opt, str(second), ['--auto_resume'])
        assert 'Resuming training from epoch: 0, iter: 4' in result.stdout + result.stderr
        assert osp.isfile(osp.join(root, 'models', 'net_g_6.safetensors'))
        assert not glob.glob(osp.join(root, 'models', '*.pth'))
        assert not glob.glob(osp.join(REPO_ROOT, 'experiments', f'{name}_archived_*'))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        for archived in glob.glob(osp.join(REPO_ROOT, 'experiments', f'{name}_archived_*')):
            shutil.rmtree(archived, ignore_errors=True)


def resume_options(name, workdir, photos):
    opt = esrgan_options(name, workdir, photos, total_iter=10)
    opt['logger']['save_checkpoint_freq'] = 3  # 4 iterations per epoch: states at 3, 6, 9 fall inside epochs
    opt['val']['val_freq'] = 3  # validation at checkpoint iterations must not shift the random streams
    return opt


@pytest.fixture(scope='module')
def uninterrupted(photos, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp('uninterrupted'))
    opt = resume_options('uninterrupted', workdir, photos)
    run_train(opt, workdir)
    models = osp.join(opt['path']['experiments_root'], 'models')
    return load(osp.join(models, 'net_g_latest.pth')), load(osp.join(models, 'net_d_latest.pth'))


def _killed_then_resumed(photos, workdir, fault_args, name, workers=0):
    opt = resume_options(name, workdir, photos)
    opt['datasets']['train']['num_worker_per_gpu'] = workers
    yml = write_options(osp.join(workdir, f'{name}.yml'), opt)
    killed = run_script([FAULT_DRIVER, *fault_args, '-opt', yml, '--auto_resume'], cwd=workdir, check=False)
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = run_script([TRAIN_PY, '-opt', yml, '--auto_resume'] if 'basicsr' not in name else
                         [FAULT_DRIVER, '--basicsr-resume', '-opt', yml, '--auto_resume'], cwd=workdir)
    models = osp.join(opt['path']['experiments_root'], 'models')
    return (resumed.stdout + resumed.stderr, load(osp.join(models, 'net_g_latest.pth')),
            load(osp.join(models, 'net_d_latest.pth')), opt)


@pytest.mark.parametrize('fault, resumed_at, workers', [
    (('--kill-after-state', '6'), 6, 0), (('--kill-in-state-write', '6'), 3, 0), (('--kill-after-state', '6'), 6, 2)],
    ids=['sigkill-after-checkpoint', 'sigkill-during-checkpoint-write', 'sigkill-with-2-loader-workers'])
def test_sigkill_then_auto_resume_equals_an_uninterrupted_run(photos, tmp_path, uninterrupted, fault, resumed_at,
                                                              workers):
    """Bitwise the same weights; loader workers only change where samples are made, not what they are."""
    log, net_g, net_d, opt = _killed_then_resumed(photos, str(tmp_path), fault, 'killed', workers=workers)
    assert f'Resuming training from epoch: {resumed_at // 4}, iter: {resumed_at}' in log
    states = os.listdir(osp.join(opt['path']['experiments_root'], 'training_states'))
    assert all(not s.startswith('6.state') or s == '6.state' for s in states if not s.startswith('.'))
    base_g, base_d = uninterrupted
    for key in ('params', 'params_ema'):
        assert max_difference(net_g[key], base_g[key]) == 0, key
    assert max_difference(net_d['params'], base_d['params']) == 0


def test_basicsr_resume_alone_would_not_reproduce_the_run(photos, tmp_path, uninterrupted):
    """Control for the test above: with BasicSR's resume (epoch restarted) the weights differ."""
    _, net_g, _, _ = _killed_then_resumed(photos, str(tmp_path), ('--kill-after-state', '6'), 'killed_basicsr')
    assert max_difference(net_g['params'], uninterrupted[0]['params']) > 0


def test_ddp_two_processes_on_gloo_keep_parameters_equal(photos, tmp_path):
    opt = esrgan_options('ddp', str(tmp_path), photos, total_iter=4, val=False)
    yml = write_options(str(tmp_path / 'ddp.yml'), opt)
    dump = tmp_path / 'dump'
    dump.mkdir()
    result = run_script(['-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port()}', FAULT_DRIVER,
                         '--dump-params', str(dump), '-opt', yml, '--launcher', 'pytorch'],
                        cwd=str(tmp_path), env={'OMP_NUM_THREADS': '1'})
    assert 'DistributedDataParallel' in result.stdout + result.stderr
    rank0, rank1 = load(dump / 'rank0_iter4.pth'), load(dump / 'rank1_iter4.pth')
    assert max_difference(rank0, rank1) == 0
    assert max_difference(rank0, load(dump / 'rank0_iter2.pth')) > 0  # it did train


def test_sigterm_saves_exits_0_and_auto_resume_equals_an_uninterrupted_run(photos, tmp_path, uninterrupted):
    """A spot instance's SIGTERM at a random iteration: that iteration is finished, its networks and .state
    are written, the run exits 0; --auto_resume then gives bitwise the uninterrupted run's weights."""
    iteration = random.choice([1, 2, 4, 5, 7, 8])  # not a checkpoint iteration (3, 6, 9)
    workdir = str(tmp_path)
    opt = resume_options('sigterm', workdir, photos)
    yml = write_options(osp.join(workdir, 'sigterm.yml'), opt)
    started = time.monotonic()
    stopped = run_script([FAULT_DRIVER, '--sigterm-at-iter', str(iteration), '-opt', yml], cwd=workdir, check=False)
    assert stopped.returncode == 0, (iteration, stopped.stderr[-3000:])
    assert time.monotonic() - started < 60
    root = opt['path']['experiments_root']
    log = read_logs(root)
    assert f'Stopping after iteration {iteration} (received SIGTERM)' in log, iteration
    assert f'iter:{iteration:8,d}' in log and f'iter:{iteration + 1:8,d}' not in log  # finished, then stopped
    saved = f"{root}/models/net_g_{iteration}.pth, {root}/models/net_d_{iteration}.pth, " \
            f"{root}/training_states/{iteration}.state"
    assert f'Saved iteration {iteration}: {saved}. Continue with --auto_resume.' in log
    resumed = run_script([TRAIN_PY, '-opt', yml, '--auto_resume'], cwd=workdir)
    assert f'iter: {iteration}.' in resumed.stdout + resumed.stderr
    models = osp.join(root, 'models')
    base_g, base_d = uninterrupted
    net_g, net_d = load(osp.join(models, 'net_g_latest.pth')), load(osp.join(models, 'net_d_latest.pth'))
    for key in ('params', 'params_ema'):
        assert max_difference(net_g[key], base_g[key]) == 0, (iteration, key)
    assert max_difference(net_d['params'], base_d['params']) == 0, iteration


def test_second_sigterm_exits_at_once_and_keeps_the_previous_checkpoint(photos, tmp_path, uninterrupted):
    """SIGTERM at iteration 5, a second one while its .state is being written: the process exits at once
    (128 + SIGTERM), 5.state never appears, and --auto_resume continues exactly from 3.state."""
    workdir = str(tmp_path)
    opt = resume_options('sigterm_twice', workdir, photos)
    yml = write_options(osp.join(workdir, 'sigterm_twice.yml'), opt)
    killed = run_script([FAULT_DRIVER, '--sigterm-at-iter', '5', '--second-signal-in-state-write', '5', '-opt', yml],
                        cwd=workdir, check=False)
    ended = time.time()
    assert killed.returncode == 128 + signal.SIGTERM, killed.stderr[-3000:]
    second_signal = float(re.search(r'second signal sent at ([\d.]+)', killed.stderr).group(1))
    assert ended - second_signal < 10  # at once, not after the 30 s the fault driver would still sleep
    assert 'SIGTERM again: exiting now' in killed.stderr
    states = osp.join(opt['path']['experiments_root'], 'training_states')
    assert sorted(name for name in os.listdir(states) if not name.startswith('.')) == ['3.state']
    resumed = run_script([TRAIN_PY, '-opt', yml, '--auto_resume'], cwd=workdir)
    assert 'Resuming training from epoch: 0, iter: 3' in resumed.stdout + resumed.stderr
    net_g = load(osp.join(opt['path']['experiments_root'], 'models', 'net_g_latest.pth'))
    assert max_difference(net_g['params'], uninterrupted[0]['params']) == 0


def test_out_of_memory_in_a_step_stops_cleanly_with_advice_and_resumes(photos, tmp_path):
    """BasicSR dies with the bare CUDA traceback; here the run ends with status 4, names the iteration, the batch
    and patch sizes and the keys that lower memory, and writes nothing for the half-updated step."""
    workdir = str(tmp_path)
    opt = esrgan_options('oom', workdir, photos, total_iter=4, val=False)
    yml = write_options(osp.join(workdir, 'oom.yml'), opt)
    failed = run_script([FAULT_DRIVER, '--oom-at-iter', '3', '-opt', yml], cwd=workdir, check=False)
    assert failed.returncode == 4, failed.stderr[-3000:]
    assert 'out of memory in iteration 3 (batch_size_per_gpu 2, gt_size 32, accum_iter 1)' in failed.stderr
    for key in ('batch_size_per_gpu', 'gt_size', 'train.accum_iter', 'train.use_amp', '--auto_resume'):
        assert key in failed.stderr.split('out of memory in iteration 3')[1]
    assert 'Traceback' not in failed.stderr
    states = osp.join(opt['path']['experiments_root'], 'training_states')
    assert sorted(os.listdir(states)) == ['2.state']
    resumed = run_script([TRAIN_PY, '-opt', yml, '--auto_resume'], cwd=workdir)
    assert 'Resuming training from epoch: 0, iter: 2' in resumed.stdout + resumed.stderr
    assert osp.isfile(osp.join(opt['path']['experiments_root'], 'models', 'net_g_4.pth'))


def test_a_run_whose_loss_stays_nan_stops_with_status_3_after_max_skips(photos, tmp_path):
    workdir = str(tmp_path)
    opt = esrgan_options('nan', workdir, photos, total_iter=8, val=False)
    opt['model_type'] = 'ExtESRGANModel'
    opt['train']['nan_guard'] = {'max_skips': 3}
    yml = write_options(osp.join(workdir, 'nan.yml'), opt)
    stopped = run_script([FAULT_DRIVER, '--nan-loss-from-iter', '3', '-opt', yml], cwd=workdir, check=False)
    assert stopped.returncode == 3, stopped.stderr[-3000:]
    log = read_logs(opt['path']['experiments_root'])
    assert 'NaN guard: iteration 3: non-finite loss term(s) l_g_pix in the step of net_g' in log
    assert 'error: training stopped: NaN guard: 3 iterations in a row' in stopped.stderr
    assert '--auto_resume restarts from the last good checkpoint' in stopped.stderr
    states = sorted(os.listdir(osp.join(opt['path']['experiments_root'], 'training_states')))
    assert states == ['2.state', '4.state']  # nothing written for iteration 5, where it stopped
    net_g = load(osp.join(opt['path']['experiments_root'], 'models', 'net_g_4.pth'))
    assert all(torch.isfinite(v).all() for v in net_g['params'].values())
