"""The package's training engine (ext/engine/) in BasicSR's loop: exact resume, per-draw seeds, bad files
named, stops agreed by every rank, epochs that reach total_iter. Each test shows what BasicSR did
(``original(owner, name)``, from before ``import ext``) where BasicSR had the behaviour at all."""
import os
import os.path as osp

import pytest
import torch

import ext  # noqa: F401
import basicsr.train as basicsr_train
from basicsr.models.base_model import BaseModel
from basicsr.utils import dist_util, img_util
from ext.engine import resume, sampling, seeding, stopping
from ext.engine.patching import PATCHES, original
from ext.engine.progress import PROGRESS
from ext.errors import EXIT_GUARD


def test_every_patch_is_applied_says_why_and_names_an_existing_test():
    import glob
    from helpers import REPO_ROOT
    sources = ''.join(open(path).read() for path in glob.glob(osp.join(REPO_ROOT, 'tests', '**', 'test_*.py'),
                                                              recursive=True))
    for patch in PATCHES:
        assert patch.why.strip(), patch.target
        assert f'def {patch.test}(' in sources, (patch.target, patch.test)
        current = getattr(patch.owner, patch.name)
        assert current is patch.replacement or getattr(current, 'replacement', None) is patch.replacement, patch.target
        assert original(patch.owner, patch.name) is not current, patch.target


def _resume_opt(tmp_path, auto_resume=True):
    root = tmp_path / 'experiments' / 'run'
    opt = {'name': 'run', 'auto_resume': auto_resume, 'network_g': {'type': 'RRDBNet'},
           'path': {'experiments_root': str(root), 'models': str(root / 'models'),
                    'training_states': str(root / 'training_states'), 'resume_state': None,
                    'pretrain_network_g': None, 'param_key_g': 'params_ema'}}
    os.makedirs(opt['path']['models'])
    os.makedirs(opt['path']['training_states'])
    return opt


def _write_checkpoint(opt, iteration, state_bytes=None):
    torch.save({'params': {'w': torch.zeros(1)}}, osp.join(opt['path']['models'], f'net_g_{iteration}.pth'))
    state_path = osp.join(opt['path']['training_states'], f'{iteration}.state')
    if state_bytes is None:
        torch.save({'epoch': 0, 'iter': iteration, 'optimizers': [], 'schedulers': []}, state_path)
    else:
        with open(state_path, 'wb') as handle:
            handle.write(state_bytes)


def test_resume_state_loads_on_a_cpu_machine(tmp_path):
    opt = _resume_opt(tmp_path, auto_resume=False)
    _write_checkpoint(opt, 4)
    opt['path']['resume_state'] = osp.join(opt['path']['training_states'], '4.state')
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, AssertionError)):  # torch.cuda.current_device()
            original(basicsr_train, 'load_resume_state')(dict(opt, path=dict(opt['path'])))
    state = resume.load_resume_state(opt)
    assert state['iter'] == 4
    assert opt['path']['pretrain_network_g'].endswith('net_g_4.pth') and opt['path']['param_key_g'] == 'params'
    PROGRESS.pending_resume = None


def test_auto_resume_finds_states_from_the_experiment_path_not_the_cwd(tmp_path, monkeypatch):
    opt = _resume_opt(tmp_path)
    _write_checkpoint(opt, 2)
    monkeypatch.chdir(tmp_path / 'experiments')  # any directory but the one BasicSR assumes
    basicsr_load = original(basicsr_train, 'load_resume_state')
    assert basicsr_load(dict(opt, path=dict(opt['path']))) is None  # BasicSR looks in ./experiments/run
    state = resume.load_resume_state(opt)
    assert state['iter'] == 2 and opt['path']['resume_state'].endswith('2.state')
    PROGRESS.pending_resume = None


def test_auto_resume_skips_a_torn_newest_state_with_a_warning(tmp_path):
    opt = _resume_opt(tmp_path)
    _write_checkpoint(opt, 3)
    _write_checkpoint(opt, 6, state_bytes=b'PK\x03\x04 torn')
    with pytest.warns(UserWarning, match='6.state'):
        state = resume.load_resume_state(opt)
    assert state['iter'] == 3
    PROGRESS.pending_resume = None


def test_auto_resume_skips_a_state_whose_networks_are_missing(tmp_path):
    opt = _resume_opt(tmp_path)
    _write_checkpoint(opt, 3)
    _write_checkpoint(opt, 6)
    os.remove(osp.join(opt['path']['models'], 'net_g_6.pth'))
    with pytest.warns(UserWarning, match='net_g_6'):
        assert resume.load_resume_state(opt)['iter'] == 3
    PROGRESS.pending_resume = None


class _WritesAMarker:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_resume_refuses_pickled_code_in_a_state_file(tmp_path):
    opt = _resume_opt(tmp_path)
    _write_checkpoint(opt, 3)
    marker = tmp_path / 'pwned'
    _write_checkpoint(opt, 6)
    torch.save({'epoch': 0, 'iter': 6, 'payload': _WritesAMarker(str(marker))},
               osp.join(opt['path']['training_states'], '6.state'))
    with pytest.warns(UserWarning, match='6.state'):
        assert resume.load_resume_state(opt)['iter'] == 3
    assert not marker.exists()
    PROGRESS.pending_resume = None


def test_resumable_sampler_continues_inside_an_epoch():
    dataset = list(range(10))
    sampler = sampling.ResumableEnlargedSampler(dataset, num_replicas=1, rank=0, ratio=1)
    sampler.set_epoch(3)
    full = list(sampler)
    calls = []
    sampler.resume_within_epoch(3, 4, on_first_sample=lambda: calls.append(1))
    assert list(sampler) == full[4:] and calls == [1]
    assert list(sampler) == full  # only once


def test_per_sample_seeds_make_augmentation_independent_of_the_caller_streams():
    import random

    class RandomCrop(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return index, random.random(), float(torch.rand(1))

    dataset = sampling.PerSampleSeededDataset(RandomCrop())
    torch.manual_seed(123)
    random.seed(123)
    before = torch.get_rng_state(), random.getstate()
    first = dataset[(2, 77)]
    assert torch.equal(torch.get_rng_state(), before[0]) and random.getstate() == before[1]  # untouched
    random.random(), torch.rand(3)  # the caller's streams moving on change nothing for the sample
    assert dataset[(2, 77)] == first and dataset[(2, 78)] != first
    assert dataset[2][0] == 2  # plain indices read the dataset as it is
    sampler = sampling.ResumableEnlargedSampler(dataset, num_replicas=1, rank=0, ratio=2)
    sampler.seed = 5
    sampler.set_epoch(1)
    drawn = list(sampler)
    assert len(drawn) == 8 and len({seed for _, seed in drawn}) == 8  # a different seed per draw
    assert drawn[3][1] == seeding.sample_seed(5, 0, 1, 3)
    sampler.resume_within_epoch(1, 6)
    assert list(sampler) == drawn[6:]  # resumed draws keep their seeds


def test_image_decoding_errors_name_the_file(tmp_path):
    """BasicSR: OpenCV's `!buf.empty()` for a zero-byte file, AttributeError on None for a non-image."""
    import cv2
    from basicsr.data import paired_image_dataset
    from basicsr.utils import FileClient
    from ext.data.image_reader import BadImageFile
    empty, text = tmp_path / 'empty.png', tmp_path / 'text.png'
    empty.write_bytes(b'')
    text.write_text('not an image')
    original_get = original(FileClient, 'get')
    original_decode = original(img_util, 'imfrombytes')
    client = FileClient('disk')
    with pytest.raises(cv2.error, match='buf.empty'):
        original_decode(original_get(client, str(empty)), float32=True)
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'astype'"):
        original_decode(original_get(client, str(text)), float32=True)
    decode = paired_image_dataset.imfrombytes  # imported by name: replaced there too
    with pytest.raises(BadImageFile, match=rf'{empty}: empty file \(0 bytes\)'):
        decode(client.get(str(empty), 'gt'), float32=True)
    with pytest.raises(BadImageFile, match=rf'{text}: not a decodable image'):
        decode(client.get(str(text), 'gt'), float32=True)
    with pytest.raises(BadImageFile, match=rf'{tmp_path / "gone.png"}: missing file'):
        client.get(str(tmp_path / 'gone.png'), 'gt')


class _ModelWithExtraState:
    def __init__(self, rank):
        self.opt, self.optimizers, self.schedulers, self.loaded = {'rank': rank}, [], [], None

    def load_extra_training_state(self, state):
        self.loaded = state


def test_each_rank_resumes_its_own_extra_state():
    """BasicSR saves rank 0's state only; the training-pair queue of every rank is saved and restored."""
    state = {'optimizers': [], 'schedulers': [], 'extra_by_rank': [{'queue': 'rank 0'}, {'queue': 'rank 1'}]}
    model = _ModelWithExtraState(rank=1)
    import unittest.mock
    with unittest.mock.patch.object(dist_util, 'get_dist_info', return_value=(1, 2)):
        BaseModel.resume_training(model, state)
    assert model.loaded == {'queue': 'rank 1'}
    old_format = _ModelWithExtraState(rank=1)  # earlier .state files: rank 0's for every rank
    BaseModel.resume_training(old_format, {'optimizers': [], 'schedulers': [], 'extra': {'queue': 'rank 0'}})
    assert old_format.loaded == {'queue': 'rank 0'}


def test_stop_requests_are_agreed_and_a_signal_asks_for_a_saved_stop():
    """BasicSR dies on SIGTERM (tests/e2e/test_train.py shows the clean stop end to end)."""
    import signal
    stop = stopping.StopControl()
    assert stop.agree() is None
    stop.install((signal.SIGUSR1, ))
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        stop.uninstall()
    assert stop.request == ('received SIGUSR1', 0, True)
    assert stop.agree(save_kinds=(False, )) is None  # after a batch is drawn: saving then would not resume exactly
    stop.ask('a guard', EXIT_GUARD, save_checkpoint=False)  # a guard refuses the checkpoint of a diverged model
    assert stop.agree(save_kinds=(False, )) == ('received SIGUSR1; a guard', EXIT_GUARD, False)
    assert stop.request is None and stop.agree() is None


def test_a_distributed_run_that_ends_normally_tears_its_process_group_down(monkeypatch):
    """BasicSR's train_pipeline returns with the process group still up; gloo's teardown at interpreter
    exit then races with its threads (a rank aborted with 'terminate called without an active exception')."""
    import torch.distributed as dist
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', '29641')

    def pipeline_leaving_the_group_up(root_path):
        dist.init_process_group('gloo', rank=0, world_size=1)

    try:
        stopping.train_pipeline_stopping_cleanly(pipeline_leaving_the_group_up, '.')
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_training_reaches_total_iter_when_the_data_is_not_a_multiple_of_the_batch(tmp_path):
    """5 pairs at batch 2: BasicSR counted 3 iterations per epoch where its loader (drop_last) gives 2, so a
    12-iteration run ended after 5 epochs x 2 = 10 iterations. The fix counts epochs with the loader's length."""
    from helpers import base_train_options, read_logs, run_train, write_paired_folders
    gt, lq = write_paired_folders(str(tmp_path / 'pairs'), 5, 64)
    opt = base_train_options('epochs', str(tmp_path), gt, lq, total_iter=12)
    opt['logger']['save_checkpoint_freq'] = 12
    run_train(opt, str(tmp_path))
    models = osp.join(opt['path']['experiments_root'], 'models')
    assert osp.isfile(osp.join(models, 'net_g_12.pth')), sorted(os.listdir(models))
    assert 'iter:      12,' in read_logs(opt['path']['experiments_root'])
    basicsr_create = original(basicsr_train, 'create_train_val_dataloader')
    assert basicsr_create is not basicsr_train.create_train_val_dataloader


def test_a_dataset_smaller_than_one_batch_is_an_option_error(tmp_path):
    from helpers import base_train_options, run_train, write_paired_folders
    gt, lq = write_paired_folders(str(tmp_path / 'pairs'), 1, 64)
    opt = base_train_options('tiny', str(tmp_path), gt, lq, total_iter=4)
    result = run_train(opt, str(tmp_path), check=False)
    assert result.returncode != 0
    assert 'datasets.train: 1 samples' in result.stderr and 'batch_size_per_gpu 2' in result.stderr


def test_a_finished_run_resumes_at_its_end_instead_of_training_its_tail_again(tmp_path):
    """total_iter 5, checkpoints every 2: BasicSR left states 2 and 4 only, so --auto_resume on the finished
    run went back to 4 and trained iteration 5 again. The end of training now writes 5.state."""
    from helpers import base_train_options, iteration_logs, read_logs, run_train, write_paired_folders
    gt, lq = write_paired_folders(str(tmp_path / 'pairs'), 4, 64)
    opt = base_train_options('finished', str(tmp_path), gt, lq, total_iter=5)
    run_train(opt, str(tmp_path))
    states = osp.join(opt['path']['experiments_root'], 'training_states')
    assert sorted(os.listdir(states)) == ['2.state', '4.state', '5.state']
    assert torch.load(osp.join(states, '5.state'), weights_only=True)['epoch'] == 2  # 2 batches per epoch
    for name in os.listdir(opt['path']['experiments_root']):
        if name.endswith('.log'):
            os.remove(osp.join(opt['path']['experiments_root'], name))
    run_train(opt, str(tmp_path), extra_args=['--auto_resume'])
    log = read_logs(opt['path']['experiments_root'])
    assert 'Resuming training from epoch: 2, iter: 5' in log
    assert not iteration_logs(log.split('Resuming training from')[1])  # nothing trained again
    assert sorted(os.listdir(states)) == ['2.state', '4.state', '5.state']


def _schedule_run(tmp_path, data, **changes):
    from helpers import base_train_options
    gt, lq = data
    opt = base_train_options('schedule', str(tmp_path), gt, lq, total_iter=4)
    opt['train']['optim_g']['lr'] = 1e-3
    opt['train']['scheduler'] = {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}
    opt['logger']['save_checkpoint_freq'] = 4
    for key, value in changes.items():
        opt['train'][key] = value
    return opt


def _logged_lrs(log):
    import re
    return {int(i): float(lr) for i, lr in re.findall(r'iter:\s+(\d+), lr:\(([0-9.e+-]+),', log)}


def test_a_resumed_run_follows_the_new_schedule_of_its_option_file(tmp_path):
    """BasicSR loads the saved milestones and lr whole: after --auto_resume the new ones were ignored (control:
    restart_scheduler false, which also names what it ignores)."""
    from helpers import read_logs, run_train, write_paired_folders
    data = write_paired_folders(str(tmp_path / 'pairs'), 4, 64)
    for restart in (True, False):
        work = tmp_path / str(restart)
        work.mkdir()
        opt = _schedule_run(work, data)
        run_train(opt, str(work))
        resumed = _schedule_run(work, data, total_iter=8, restart_scheduler=restart,
                                scheduler={'type': 'MultiStepLR', 'milestones': [6], 'gamma': 0.5})
        resumed['train']['optim_g']['lr'] = 2e-3
        run_train(resumed, str(work), extra_args=['--auto_resume'])
        log = read_logs(opt['path']['experiments_root'])
        lrs = _logged_lrs(log.split('Resuming training from')[1])
        if restart:
            assert 'train.scheduler.milestones' in log and 'train.optim_g.lr 0.001 -> 0.002' in log
            assert 'train.total_iter 4 -> 8' in log
            assert lrs == {5: 2e-3, 6: 2e-3, 7: 1e-3, 8: 1e-3}  # BasicSR steps from iteration 2: milestone 6 acts at 7
        else:
            assert 'restart_scheduler is false' in log and 'train.scheduler.milestones, train.optim_g.lr' in log
            assert lrs == {5: 1e-3, 6: 1e-3, 7: 1e-3, 8: 1e-3}


def test_the_new_schedule_is_the_one_a_fresh_run_would_have_at_that_iteration():
    from basicsr.models.lr_scheduler import CosineAnnealingRestartLR, MultiStepRestartLR
    from ext.engine.schedules import _learning_rates_at
    for scheduler_class, configuration in ((MultiStepRestartLR, {'milestones': [3, 5, 5, 9], 'gamma': 0.5,
                                                                   'restarts': [0, 7], 'restart_weights': [1, 0.5]}),
                                           (CosineAnnealingRestartLR, {'periods': [4, 6], 'restart_weights': [1, 0.5],
                                                                       'eta_min': 1e-7})):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        reference = scheduler_class(optimizer, **configuration)
        import warnings
        for last_epoch in range(1, 10):
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                reference.step()
            rates, state = _learning_rates_at(scheduler_class, configuration, [0.1], last_epoch)
            assert rates == pytest.approx([optimizer.param_groups[0]['lr']], rel=1e-12), (scheduler_class, last_epoch)
            assert state['last_epoch'] == last_epoch
