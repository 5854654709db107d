"""Each fix in ext/compat.py: the original BasicSR 1.4.2 code fails, the fixed one works.

``original(owner, name)`` is what BasicSR had before ``import ext`` applied ext/engine/patching.py's table."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import yaml

import ext  # noqa: F401
from basicsr.archs import vgg_arch
from basicsr.losses.basic_loss import PerceptualLoss
from basicsr.models.base_model import BaseModel
from basicsr.models.sr_model import SRModel
from basicsr.utils import dist_util, img_process_util
from basicsr.utils import options as basicsr_options
from ext import compat
from ext.engine.patching import original
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


LIGHT_IMPORT_THEN_BASICSR = """
import sys
import ext.utils.atomic_io, ext.utils.image_files, ext.utils.parallel, ext.utils.train_runner, ext.data.lmdb_keys
assert 'torch' not in sys.modules, 'importing the data helpers started torch'
import ext
from basicsr.archs import build_network
from basicsr.utils import options
from mmengine.registry import MODELS
assert not ext.is_active()
build_network({'type': 'AttentionUNetDiscriminatorSN', 'num_in_ch': 3, 'num_feat': 8})  # a lookup activates
assert ext.is_active()
from ext.engine.patching import original
assert options.parse_options is not original(options, 'parse_options')  # the fixes are in
"""


def test_import_ext_is_light_and_the_first_registry_lookup_activates_it():
    """The scripts import ext's helpers without torch (0.2 s instead of 4 s); BasicSR's first registry lookup
    applies the fixes and registers the components, as ``import ext`` did before."""
    result = _python(LIGHT_IMPORT_THEN_BASICSR)
    assert result.returncode == 0, result.stderr[-3000:]


def test_mmengine_builds_an_ext_component_in_a_fresh_process():
    """MMEngine imports ``ext.registry`` for the ``ext`` scope, and its ``locations`` activate ext."""
    result = _python('import ext\nfrom mmengine.registry import MODELS\n'
                     "net = MODELS.build(dict(type='ext.AttentionUNetDiscriminatorSN', num_in_ch=3, num_feat=8))\n"
                     'assert ext.is_active() and type(net).__name__ == "AttentionUNetDiscriminatorSN"')
    assert result.returncode == 0, result.stderr[-3000:]


def _write_yaml(tmp_path):
    path = tmp_path / 'opt.yml'
    path.write_text(yaml.safe_dump({'name': 'argv', 'num_gpu': 0, 'manual_seed': 1, 'datasets': {}, 'path': {}}))
    return str(path)


def test_local_rank_with_a_dash_is_accepted(tmp_path, monkeypatch):
    argv = ['train.py', '-opt', _write_yaml(tmp_path), '--local-rank=1']
    monkeypatch.setattr(sys, 'argv', list(argv))
    with pytest.raises(SystemExit):  # argparse: unrecognized arguments: --local-rank=1
        original(basicsr_options, 'parse_options')(str(tmp_path), is_train=False)
    monkeypatch.setattr(sys, 'argv', list(argv))
    opt, args = basicsr_options.parse_options(str(tmp_path), is_train=False)
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
        original(dist_util, '_init_dist_pytorch')('nccl')
    dist_util._init_dist_pytorch('nccl')
    try:
        assert dist.get_backend() == 'gloo'
        model = BaseModel({'num_gpu': 0, 'is_train': True, 'dist': True})
        with pytest.raises((RuntimeError, AssertionError)):  # device_ids=[torch.cuda.current_device()]
            original(BaseModel, 'model_to_device')(model, torch.nn.Linear(2, 2))
        wrapped = model.model_to_device(torch.nn.Linear(2, 2))
        assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel)
        _check_validation_forward_skips_the_ddp_wrapper(model)
    finally:
        dist.destroy_process_group()


def _check_validation_forward_skips_the_ddp_wrapper(model):
    """SRModel.test under DDP: BasicSR calls the wrapper, whose forward broadcasts buffers (a collective
    that hangs when only rank 0 validates); the fix runs the bare network."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.BatchNorm2d(3))
    model.net_g, model.lq = model.model_to_device(net), torch.rand(1, 3, 8, 8)
    calls = []
    model.net_g.register_forward_pre_hook(lambda module, inputs: calls.append('ddp'))
    original(SRModel, 'test')(model)
    assert calls == ['ddp']
    SRModel.test(model)
    assert calls == ['ddp'] and model.output.shape == (1, 3, 8, 8)
    assert isinstance(model.net_g, torch.nn.parallel.DistributedDataParallel) and model.net_g.training


def test_filter2d_accepts_channels_last_tensors():
    image = torch.rand(2, 3, 16, 16).to(memory_format=torch.channels_last)
    kernel = torch.rand(2, 5, 5)
    with pytest.raises(RuntimeError, match='view'):
        original(img_process_util, 'filter2D')(image, kernel)
    expected = original(img_process_util, 'filter2D')(image.contiguous(), kernel)
    assert torch.equal(img_process_util.filter2D(image, kernel), expected)


def test_get_optimizer_accepts_any_torch_optimizer():
    model = BaseModel({'num_gpu': 0, 'is_train': True, 'dist': False})
    params = torch.nn.Linear(2, 2).parameters()
    with pytest.raises(NotImplementedError):
        original(BaseModel, 'get_optimizer')(model, 'AdamW', params, 1e-3)
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

    original(BaseModel, 'save_network')(model, good, 'net_g', 5)  # BasicSR writes in place
    assert path.read_bytes() != before  # the old checkpoint is destroyed

    path.write_bytes(before)
    model.save_network(good, 'net_g', 5)  # fixed: the failed write leaves the old file
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert torch.equal(torch.load(path, weights_only=True)['params']['weight'], good.weight.detach())
    assert sorted(os.listdir(tmp_path)) == ['net_g_5.pth']  # no temporary file left behind


def test_vgg_feature_extractor_never_downloads(tmp_path, monkeypatch, vgg19_weights):
    def no_network(*args, **kwargs):
        raise AssertionError('tried to download')

    import torchvision.models._api
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', no_network)
    monkeypatch.setattr(torchvision.models._api, 'load_state_dict_from_url', no_network)
    monkeypatch.delenv(pretrained.VGG_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(pretrained, 'default_locations', lambda name: [str(tmp_path / name)])
    monkeypatch.setattr(vgg_arch, 'VGG_PRETRAIN_PATH', str(tmp_path / 'absent.pth'))
    with pytest.raises(AssertionError, match='download'):  # BasicSR: download when the file is absent
        original(vgg_arch.VGGFeatureExtractor, '__init__')(
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
        original(BaseModel, 'load_network')(model, RRDBNet(3, 3, 8, 1, 4), str(path), True, 'params_ema')
    fresh = RRDBNet(3, 3, num_feat=8, num_block=1, num_grow_ch=4)
    model.load_network(fresh, str(path), strict=True, param_key='params_ema')
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), net.state_dict().values()))
    save_network_file({'params': net.state_dict()}, str(tmp_path / 'plain.pth'))
    model.load_network(fresh, str(tmp_path / 'plain.pth'), strict=True, param_key='params_ema')  # falls back


def test_perceptual_loss_accepts_criterion_l2(vgg19_env):
    with pytest.raises(AttributeError, match='L2loss'):
        original(PerceptualLoss, '__init__')(PerceptualLoss.__new__(PerceptualLoss), {'conv1_2': 1.0},
                                                    criterion='l2')
    loss = PerceptualLoss({'conv1_2': 1.0}, criterion='l2', perceptual_weight=1.0, style_weight=0)
    x, y = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    features_x, features_y = loss.vgg(x), loss.vgg(y)
    expected = torch.nn.functional.mse_loss(features_x['conv1_2'], features_y['conv1_2'])
    assert torch.allclose(loss(x, y)[0], expected)
    assert isinstance(PerceptualLoss({'conv1_2': 1.0}).criterion, torch.nn.L1Loss)




EVIL_OPTIONS = '''name: evil
model_type: SRModel
num_gpu: 0
manual_seed: !!python/object/apply:os.system ["touch {marker}"]
'''


def test_an_option_file_with_a_python_tag_runs_nothing_and_names_file_line_and_tag(tmp_path):
    import yaml
    marker = tmp_path / 'ran'
    text = EVIL_OPTIONS.format(marker=marker)
    basicsr_loader = original(basicsr_options, 'ordered_yaml')()[0]
    yaml.load(text, Loader=basicsr_loader)  # BasicSR's loader runs the command
    assert marker.exists()
    marker.unlink()
    yml = tmp_path / 'evil.yml'
    yml.write_text(text)
    from helpers import TRAIN_PY
    for script in (TRAIN_PY, osp.join(REPO_ROOT, 'ext', 'test.py')):
        result = subprocess.run([sys.executable, script, '-opt', str(yml)], capture_output=True, text=True,
                                env=subprocess_env(), cwd=str(tmp_path))
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f'error: {yml}:4: the tag tag:yaml.org,2002:python/object/apply:os.system is not allowed in an option '
            'file: it would construct a Python object (run code); option files hold plain values (numbers, strings, '
            'lists, mappings, !!float)']
        assert not marker.exists()


def test_force_yml_is_applied_as_data_never_executed(tmp_path, monkeypatch):
    marker = tmp_path / 'ran'
    injected = f'datasets"][open("{marker}", "w").close() or "x=1'  # a key that is Python source
    argv = ['train.py', '-opt', _write_yaml(tmp_path), '--force_yml', injected]
    monkeypatch.setattr(sys, 'argv', list(argv))
    with pytest.raises(TypeError):  # BasicSR exec()s the key, then trips over the entry it wrote
        original(basicsr_options, 'parse_options')(str(tmp_path), is_train=False)
    assert marker.exists()
    marker.unlink()
    monkeypatch.setattr(sys, 'argv', list(argv))
    from ext.errors import OptionError
    with pytest.raises(OptionError, match='--force_yml'):
        basicsr_options.parse_options(str(tmp_path), is_train=False)
    assert not marker.exists()
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', _write_yaml(tmp_path), '--force_yml', 'path:offset=-3',
                                      'path:sizes=[1, 2]', 'path:lr=2e-4', 'path:gamma=!!float 1e-1'])
    opt, args = basicsr_options.parse_options(str(tmp_path), is_train=False)
    assert opt['path']['offset'] == -3 and opt['path']['sizes'] == [1, 2]
    assert opt['path']['lr'] == 2e-4 and opt['path']['gamma'] == 0.1
    assert args.force_yml == ['path:offset=-3', 'path:sizes=[1, 2]', 'path:lr=2e-4',
                              'path:gamma=!!float 1e-1']


def test_option_files_keep_basicsr_ordered_mappings_and_float_tags(tmp_path):
    from collections import OrderedDict
    from ext.utils.option_file import read_option_file
    path = tmp_path / 'o.yml'
    path.write_text('train:\n  optim_g: {type: Adam, lr: !!float 2e-4}\n  z: 1\n  a: 2\n')
    opt = read_option_file(str(path))
    assert isinstance(opt, OrderedDict) and list(opt['train']) == ['optim_g', 'z', 'a']
    assert opt['train']['optim_g']['lr'] == 2e-4
