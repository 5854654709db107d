"""Each fix in ext/compat.py: the original BasicSR 1.4.2 code fails, the fixed one works."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import yaml

import ext  # noqa: F401
import basicsr.train as basicsr_train
from basicsr.models.base_model import BaseModel
from basicsr.utils import img_process_util
from ext import compat
from ext.utils import pretrained
from helpers import REPO_ROOT, subprocess_env


def _python(code):
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=subprocess_env(),
                          cwd=REPO_ROOT)


def test_import_basicsr_fails_without_the_functional_tensor_shim_and_works_with_it():
    bare = _python('import basicsr')
    assert bare.returncode != 0 and 'functional_tensor' in bare.stderr
    fixed = _python('import ext, basicsr.data.degradations as d, torch\n'
                    'gray = d.rgb_to_grayscale(torch.rand(1, 3, 4, 4), num_output_channels=1)\n'
                    'assert gray.shape == (1, 1, 4, 4)')
    assert fixed.returncode == 0, fixed.stderr


def _write_yaml(tmp_path):
    path = tmp_path / 'opt.yml'
    path.write_text(yaml.safe_dump({'name': 'argv', 'num_gpu': 0, 'manual_seed': 1, 'datasets': {}, 'path': {}}))
    return str(path)


def test_local_rank_with_a_dash_is_accepted(tmp_path, monkeypatch):
    argv = ['train.py', '-opt', _write_yaml(tmp_path), '--local-rank=1']
    monkeypatch.setattr(sys, 'argv', list(argv))
    with pytest.raises(SystemExit):  # argparse: unrecognized arguments: --local-rank=1
        compat.ORIGINALS['basicsr.utils.options.parse_options'](str(tmp_path), is_train=False)
    monkeypatch.setattr(sys, 'argv', list(argv))
    opt, args = compat._parse_options_accepting_local_rank(str(tmp_path), is_train=False)
    assert args.local_rank == 1 and opt['name'] == 'argv'
    assert compat.normalize_local_rank_argv(['--local-rank', '3', '--local-ranks']) == [
        '--local_rank', '3', '--local-ranks']


def test_distributed_init_uses_gloo_without_cuda(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip('checks the CPU-only path')
    import torch.distributed as dist
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', '29633')
    with pytest.raises(ZeroDivisionError):  # rank % torch.cuda.device_count()
        compat.ORIGINALS['basicsr.utils.dist_util._init_dist_pytorch']('nccl')
    compat._init_dist_pytorch_cpu_aware('nccl')
    try:
        assert dist.get_backend() == 'gloo'
        model = BaseModel({'num_gpu': 0, 'is_train': True, 'dist': True})
        with pytest.raises((RuntimeError, AssertionError)):  # device_ids=[torch.cuda.current_device()]
            compat.ORIGINALS['BaseModel.model_to_device'](model, torch.nn.Linear(2, 2))
        wrapped = model.model_to_device(torch.nn.Linear(2, 2))
        assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel)
        _check_validation_forward_skips_the_ddp_wrapper(model)
    finally:
        dist.destroy_process_group()


def _check_validation_forward_skips_the_ddp_wrapper(model):
    """SRModel.test under DDP: BasicSR calls the wrapper, whose forward broadcasts buffers (a collective
    that hangs when only rank 0 validates); the fix runs the bare network."""
    from basicsr.models.sr_model import SRModel
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.BatchNorm2d(3))
    model.net_g, model.lq = model.model_to_device(net), torch.rand(1, 3, 8, 8)
    calls = []
    model.net_g.register_forward_pre_hook(lambda module, inputs: calls.append('ddp'))
    compat.ORIGINALS['SRModel.test'](model)
    assert calls == ['ddp']
    SRModel.test(model)
    assert calls == ['ddp'] and model.output.shape == (1, 3, 8, 8)
    assert isinstance(model.net_g, torch.nn.parallel.DistributedDataParallel) and model.net_g.training


def test_filter2d_accepts_channels_last_tensors():
    image = torch.rand(2, 3, 16, 16).to(memory_format=torch.channels_last)
    kernel = torch.rand(2, 5, 5)
    with pytest.raises(RuntimeError, match='view'):
        compat.ORIGINALS['basicsr.utils.img_process_util.filter2D'](image, kernel)
    expected = compat.ORIGINALS['basicsr.utils.img_process_util.filter2D'](image.contiguous(), kernel)
    assert torch.equal(img_process_util.filter2D(image, kernel), expected)


def test_get_optimizer_accepts_any_torch_optimizer():
    model = BaseModel({'num_gpu': 0, 'is_train': True, 'dist': False})
    params = torch.nn.Linear(2, 2).parameters()
    with pytest.raises(NotImplementedError):
        compat.ORIGINALS['BaseModel.get_optimizer'](model, 'AdamW', params, 1e-3)
    assert isinstance(model.get_optimizer('AdamW', params, 1e-3, weight_decay=0.01), torch.optim.AdamW)
    adam = model.get_optimizer('Adam', torch.nn.Linear(2, 2).parameters(), 1e-4, betas=[0, 0.9])  # YAML ints
    assert adam.defaults['betas'] == (0.0, 0.9)
    with pytest.raises(NotImplementedError, match='Adamm'):
        model.get_optimizer('Adamm', params, 1e-3)


def _torch_save_that_fails_half_way(obj, target, *args, **kwargs):
    """torch.save that writes some bytes, then fails like a full disk."""
    if isinstance(target, (str, os.PathLike)):
        with open(target, 'wb') as handle:
            handle.write(b'PK\x03\x04 half')
    else:
        target.write(b'PK\x03\x04 half')
    raise OSError('disk full (simulated)')


def test_network_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    model = BaseModel({'num_gpu': 0, 'is_train': True, 'dist': False, 'path': {'models': str(tmp_path)}})
    good = torch.nn.Linear(3, 3)
    model.save_network(good, 'net_g', 5)
    path = tmp_path / 'net_g_5.pth'
    before = path.read_bytes()
    monkeypatch.setattr(torch, 'save', _torch_save_that_fails_half_way)
    monkeypatch.setattr(__import__('time'), 'sleep', lambda seconds: None)  # BasicSR's retry pause

    compat.ORIGINALS['BaseModel.save_network'](model, good, 'net_g', 5)  # BasicSR writes in place
    assert path.read_bytes() != before  # the old checkpoint is destroyed

    path.write_bytes(before)
    model.save_network(good, 'net_g', 5)  # fixed: the failed write leaves the old file
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert torch.equal(torch.load(path, weights_only=True)['params']['weight'], good.weight.detach())
    assert sorted(os.listdir(tmp_path)) == ['net_g_5.pth']  # no temporary file left behind


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
            compat.ORIGINALS['basicsr.train.load_resume_state'](dict(opt, path=dict(opt['path'])))
    state = compat.load_resume_state(opt)
    assert state['iter'] == 4
    assert opt['path']['pretrain_network_g'].endswith('net_g_4.pth') and opt['path']['param_key_g'] == 'params'
    compat.PROGRESS.pending_resume = None


def test_auto_resume_finds_states_from_the_experiment_path_not_the_cwd(tmp_path, monkeypatch):
    opt = _resume_opt(tmp_path)
    _write_checkpoint(opt, 2)
    monkeypatch.chdir(tmp_path / 'experiments')  # any directory but the one BasicSR assumes
    original = compat.ORIGINALS['basicsr.train.load_resume_state']
    assert original(dict(opt, path=dict(opt['path']))) is None  # BasicSR looks in ./experiments/run
    state = compat.load_resume_state(opt)
    assert state['iter'] == 2 and opt['path']['resume_state'].endswith('2.state')
    compat.PROGRESS.pending_resume = None


def test_auto_resume_skips_a_torn_newest_state_with_a_warning(tmp_path):
    opt = _resume_opt(tmp_path)
    _write_checkpoint(opt, 3)
    _write_checkpoint(opt, 6, state_bytes=b'PK\x03\x04 torn')
    with pytest.warns(UserWarning, match='6.state'):
        state = compat.load_resume_state(opt)
    assert state['iter'] == 3
    compat.PROGRESS.pending_resume = None


def test_auto_resume_skips_a_state_whose_networks_are_missing(tmp_path):
    opt = _resume_opt(tmp_path)
    _write_checkpoint(opt, 3)
    _write_checkpoint(opt, 6)
    os.remove(osp.join(opt['path']['models'], 'net_g_6.pth'))
    with pytest.warns(UserWarning, match='net_g_6'):
        assert compat.load_resume_state(opt)['iter'] == 3
    compat.PROGRESS.pending_resume = None


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
        assert compat.load_resume_state(opt)['iter'] == 3
    assert not marker.exists()
    compat.PROGRESS.pending_resume = None


def test_vgg_feature_extractor_never_downloads(tmp_path, monkeypatch, vgg19_weights):
    from basicsr.archs import vgg_arch

    def no_network(*args, **kwargs):
        raise AssertionError('tried to download')

    import torchvision.models._api
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', no_network)
    monkeypatch.setattr(torchvision.models._api, 'load_state_dict_from_url', no_network)
    monkeypatch.delenv(pretrained.VGG_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(pretrained, 'default_locations', lambda name: [str(tmp_path / name)])
    monkeypatch.setattr(vgg_arch, 'VGG_PRETRAIN_PATH', str(tmp_path / 'absent.pth'))
    with pytest.raises(AssertionError, match='download'):  # BasicSR: download when the file is absent
        compat.ORIGINALS['VGGFeatureExtractor.__init__'](
            vgg_arch.VGGFeatureExtractor.__new__(vgg_arch.VGGFeatureExtractor), ['relu1_1'])
    with pytest.raises(pretrained.PretrainedWeightsNotFound) as error:
        vgg_arch.VGGFeatureExtractor(['relu1_1'])
    message = str(error.value)
    assert 'vgg19-dcbb9e9d.pth' in message and 'download.pytorch.org' in message
    assert pretrained.VGG_WEIGHTS_ENV in message and str(tmp_path) in message

    monkeypatch.setenv(pretrained.VGG_WEIGHTS_ENV, vgg19_weights)
    extractor = vgg_arch.VGGFeatureExtractor(['relu1_1'], use_input_norm=False)
    expected = torch.load(vgg19_weights, weights_only=True)['features.0.weight']
    assert torch.equal(extractor.vgg_net.conv1_1.weight, expected)


def test_vgg_weights_option_takes_precedence_and_a_wrong_path_is_an_error(tmp_path, monkeypatch, vgg19_weights):
    monkeypatch.setenv(pretrained.VGG_WEIGHTS_ENV, str(tmp_path / 'elsewhere.pth'))
    try:
        pretrained.configure_vgg_weights(osp.dirname(vgg19_weights), source='opt.yml')  # a folder works too
        assert pretrained.find_vgg_weights('vgg19') == vgg19_weights
        pretrained.configure_vgg_weights(str(tmp_path / 'typo.pth'), source='opt.yml')
        with pytest.raises(pretrained.PretrainedWeightsNotFound, match='typo.pth'):
            pretrained.find_vgg_weights('vgg19')
    finally:
        pretrained.configure_vgg_weights(None)
    with pytest.raises(pretrained.PretrainedWeightsNotFound, match='elsewhere.pth'):
        pretrained.find_vgg_weights('vgg19')


def test_resumable_sampler_continues_inside_an_epoch():
    dataset = list(range(10))
    sampler = compat.ResumableEnlargedSampler(dataset, num_replicas=1, rank=0, ratio=1)
    sampler.set_epoch(3)
    full = list(sampler)
    calls = []
    sampler.resume_within_epoch(3, 4, on_first_sample=lambda: calls.append(1))
    assert list(sampler) == full[4:] and calls == [1]
    assert list(sampler) == full  # only once


def test_networks_load_from_safetensors_and_pth(tmp_path):
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from ext.utils.checkpoint import save_network_file
    model = BaseModel({'num_gpu': 0, 'is_train': True, 'dist': False,
                       'path': {'models': str(tmp_path)}, 'logger': {'checkpoint_format': 'safetensors'}})
    net = RRDBNet(3, 3, num_feat=8, num_block=1, num_grow_ch=4)
    model.save_network([net, net], 'net_g', 7, param_key=['params', 'params_ema'])
    path = tmp_path / 'net_g_7.safetensors'
    assert path.is_file()
    with pytest.raises(RuntimeError):  # torch.load with BasicSR's callable map_location
        compat.ORIGINALS['BaseModel.load_network'](model, RRDBNet(3, 3, 8, 1, 4), str(path), True, 'params_ema')
    fresh = RRDBNet(3, 3, num_feat=8, num_block=1, num_grow_ch=4)
    model.load_network(fresh, str(path), strict=True, param_key='params_ema')
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), net.state_dict().values()))
    save_network_file({'params': net.state_dict()}, str(tmp_path / 'plain.pth'))
    model.load_network(fresh, str(tmp_path / 'plain.pth'), strict=True, param_key='params_ema')  # falls back


def test_perceptual_loss_accepts_criterion_l2(vgg19_env):
    from basicsr.losses.basic_loss import PerceptualLoss
    with pytest.raises(AttributeError, match='L2loss'):
        compat.ORIGINALS['PerceptualLoss.__init__'](PerceptualLoss.__new__(PerceptualLoss), {'conv1_2': 1.0},
                                                    criterion='l2')
    loss = PerceptualLoss({'conv1_2': 1.0}, criterion='l2', perceptual_weight=1.0, style_weight=0)
    x, y = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    features_x, features_y = loss.vgg(x), loss.vgg(y)
    expected = torch.nn.functional.mse_loss(features_x['conv1_2'], features_y['conv1_2'])
    assert torch.allclose(loss(x, y)[0], expected)
    assert isinstance(PerceptualLoss({'conv1_2': 1.0}).criterion, torch.nn.L1Loss)


def test_per_sample_seeds_make_augmentation_independent_of_the_caller_streams():
    import random

    class RandomCrop(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return index, random.random(), float(torch.rand(1))

    dataset = compat.PerSampleSeededDataset(RandomCrop())
    torch.manual_seed(123)
    random.seed(123)
    before = torch.get_rng_state(), random.getstate()
    first = dataset[(2, 77)]
    assert torch.equal(torch.get_rng_state(), before[0]) and random.getstate() == before[1]  # untouched
    random.random(), torch.rand(3)  # the caller's streams moving on change nothing for the sample
    assert dataset[(2, 77)] == first and dataset[(2, 78)] != first
    assert dataset[2][0] == 2  # plain indices read the dataset as it is
    sampler = compat.ResumableEnlargedSampler(dataset, num_replicas=1, rank=0, ratio=2)
    sampler.seed = 5
    sampler.set_epoch(1)
    drawn = list(sampler)
    assert len(drawn) == 8 and len({seed for _, seed in drawn}) == 8  # a different seed per draw
    assert drawn[3][1] == compat.sample_seed(5, 0, 1, 3)
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
    original_get = compat.ORIGINALS['FileClient.get']
    original_decode = compat.ORIGINALS['basicsr.utils.img_util.imfrombytes']
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
    with unittest.mock.patch.object(compat.dist_util, 'get_dist_info', return_value=(1, 2)):
        compat._resume_training_with_extra(model, state)
    assert model.loaded == {'queue': 'rank 1'}
    old_format = _ModelWithExtraState(rank=1)  # earlier .state files: rank 0's for every rank
    compat._resume_training_with_extra(old_format, {'optimizers': [], 'schedulers': [], 'extra': {'queue': 'rank 0'}})
    assert old_format.loaded == {'queue': 'rank 0'}


def test_stop_requests_are_agreed_and_a_signal_asks_for_a_saved_stop():
    """BasicSR dies on SIGTERM (tests/test_train.py shows the clean stop end to end)."""
    import signal
    stop = compat.StopControl()
    assert stop.agree() is None
    stop.install((signal.SIGUSR1, ))
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        stop.uninstall()
    assert stop.request == ('received SIGUSR1', 0, True)
    assert stop.agree(save_kinds=(False, )) is None  # after a batch is drawn: saving then would not resume exactly
    stop.ask('a guard', compat.EXIT_GUARD, save_checkpoint=False)  # a guard refuses the checkpoint of a diverged model
    assert stop.agree(save_kinds=(False, )) == ('received SIGUSR1; a guard', compat.EXIT_GUARD, False)
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
        monkeypatch.setitem(compat.ORIGINALS, 'basicsr.train.train_pipeline', pipeline_leaving_the_group_up)
        compat._train_pipeline_stopping_cleanly('.')
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
    original = compat.ORIGINALS['basicsr.train.create_train_val_dataloader']
    assert original is not basicsr_train.create_train_val_dataloader


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
