"""ext.utils.checkpoint: upstream layouts, weights_only refusal of code-running pickles, safetensors."""
import os
import pickle
from collections import OrderedDict

import pytest
import torch
from torch import nn

from ext.utils.checkpoint import (CheckpointError, CheckpointMismatchError, UnsafeCheckpointError, load_into_network,
                                  load_network_file, read_checkpoint, save_network_file, select_params)


def tiny_net(seed=0, num_feat=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, num_feat, 3, padding=1), nn.BatchNorm2d(num_feat), nn.Conv2d(num_feat, 3, 1))


def assert_same(a, b):
    assert sorted(a) == sorted(b)  # safetensors stores names sorted
    for name in a:
        assert torch.equal(a[name], b[name]), name


class WritesMarker:
    """Unpickling this runs ``open(marker, 'w')``: the file appears only if the pickle's code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.mark.parametrize('extension', ['.pth', '.safetensors'])
def test_basicsr_layout_roundtrip_selects_param_key(tmp_path, extension):
    params, ema = tiny_net(0).state_dict(), tiny_net(1).state_dict()
    path = save_network_file({'params': params, 'params_ema': ema}, tmp_path / f'net_g_4{extension}')
    assert_same(load_network_file(path, 'params'), params)
    assert_same(load_network_file(path, 'params_ema'), ema)
    assert_same(load_network_file(path, 'auto'), ema)  # inference prefers the EMA weights
    assert set(read_checkpoint(path)) == {'params', 'params_ema'}
    # integer buffers keep their dtype
    assert load_network_file(path)['1.num_batches_tracked'].dtype == torch.int64


@pytest.mark.parametrize('extension', ['.pth', '.safetensors'])
def test_params_ema_falls_back_to_params_as_basicsr(tmp_path, extension):
    params = tiny_net(0).state_dict()
    path = save_network_file({'params': params}, tmp_path / f'psnr{extension}')
    assert_same(load_network_file(path, 'params_ema'), params)
    with pytest.raises(CheckpointError, match=r"no network weights under 'generator'.*\['params'\]"):
        load_network_file(path, 'generator')


def test_plain_state_dict_and_wrapper_prefixes(tmp_path):
    params = tiny_net(0).state_dict()
    wrapped = OrderedDict((f'module._orig_mod.{k}', v) for k, v in params.items())
    torch.save(wrapped, tmp_path / 'plain.pth')
    torch.save({'state_dict': wrapped}, tmp_path / 'lightning.ckpt')
    for name in ('plain.pth', 'lightning.ckpt'):
        state = load_network_file(tmp_path / name, 'params')
        assert_same(state, params)
        net = tiny_net(5)
        load_into_network(net, state)
        assert_same(net.state_dict(), params)


def test_single_key_safetensors_is_a_plain_file_other_tools_read(tmp_path):
    from safetensors.torch import load_file, save_file
    params = tiny_net(0).state_dict()
    path = save_network_file({'params': OrderedDict((f'module.{k}', v) for k, v in params.items())},
                             tmp_path / 'net.safetensors')
    assert_same(load_file(path), params)
    # and a plain safetensors written by another tool (traiNNer-redux, chaiNNer) loads
    save_file({k: v.contiguous() for k, v in params.items()}, tmp_path / 'other.safetensors')
    assert_same(load_network_file(tmp_path / 'other.safetensors', 'params_ema'), params)


def test_safetensors_handles_tied_weights(tmp_path):
    shared = torch.randn(4, 4)
    path = save_network_file({'params': {'a.weight': shared, 'b.weight': shared, 'c.weight': shared.t()}},
                             tmp_path / 'tied.safetensors')
    state = load_network_file(path)
    assert torch.equal(state['a.weight'], state['b.weight']) and torch.equal(state['c.weight'], shared.t())


@pytest.mark.parametrize('writer', ['torch.save', 'pickle.dump'])
def test_pickle_that_runs_code_is_refused_and_never_executed(tmp_path, writer):
    marker = tmp_path / 'pwned'
    payload = {'params': tiny_net(0).state_dict(), 'hook': WritesMarker(str(marker))}
    path = tmp_path / 'evil.pth'
    if writer == 'torch.save':
        torch.save(payload, path)
    else:
        with open(path, 'wb') as handle:
            pickle.dump(payload, handle)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_network_file(path)
    assert str(path) in str(info.value) and 'arbitrary code' in str(info.value)
    assert not marker.exists()
    if writer == 'torch.save':
        assert 'open' in str(info.value)  # names what it would have called


def test_damaged_and_missing_files_are_clear_errors(tmp_path):
    path = save_network_file({'params': tiny_net(0).state_dict()}, tmp_path / 'net.pth')
    truncated = tmp_path / 'truncated.pth'
    with open(path, 'rb') as handle:
        truncated.write_bytes(handle.read()[:200])
    with pytest.raises(CheckpointError, match='truncated.pth: not a PyTorch checkpoint'):
        read_checkpoint(truncated)
    text = tmp_path / 'notes.safetensors'
    text.write_text('not tensors')
    with pytest.raises(CheckpointError, match='notes.safetensors: not a valid .safetensors'):
        read_checkpoint(text)
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        read_checkpoint(tmp_path / 'absent.pth')
    torch.save([torch.zeros(1)], tmp_path / 'list.pth')
    with pytest.raises(CheckpointError, match='holds a list'):
        read_checkpoint(tmp_path / 'list.pth')


def test_mismatch_names_file_keys_and_shapes(tmp_path):
    path = save_network_file({'params': tiny_net(0, num_feat=8).state_dict()}, tmp_path / 'wide.pth')
    net = tiny_net(0, num_feat=4)
    with pytest.raises(CheckpointMismatchError) as info:
        load_into_network(net, load_network_file(path), source=str(path))
    message = str(info.value)
    assert 'wide.pth' in message and '0.weight checkpoint (8, 3, 3, 3) vs network (4, 3, 3, 3)' in message
    state = load_network_file(path)
    del state['2.bias']
    state['extra.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r'missing from the checkpoint: 2\.bias.*not in the network: '
                       r'extra\.weight'):
        load_into_network(net, state)


def test_failed_save_leaves_previous_file(tmp_path):
    path = save_network_file({'params': tiny_net(0).state_dict()}, tmp_path / 'net.safetensors')
    before = open(path, 'rb').read()
    with pytest.raises(TypeError, match=r"save_dict\['params'\]\['bad'\] is a str"):
        save_network_file({'params': {'bad': 'text'}}, path)
    assert open(path, 'rb').read() == before
    assert os.listdir(tmp_path) == ['net.safetensors']


def test_select_params_on_nested_non_tensor_entries():
    with pytest.raises(CheckpointError, match="'params' is not a state dict"):
        select_params({'params': {'w': torch.zeros(1), 'step': 3}}, 'params')
    key, state = select_params({'iter': 5, 'params': {'module.w': torch.ones(1)}}, 'params')
    assert key == 'params' and list(state) == ['w']


@pytest.mark.parametrize('checkpoint_format', ['pth', 'safetensors'])
def test_training_helpers_name_find_and_check_complete_files(tmp_path, checkpoint_format):
    from ext.utils.checkpoint import checkpoint_looks_complete, find_network_file, network_file_name
    name = network_file_name('net_g', 1000, checkpoint_format)
    assert name == f'net_g_1000.{checkpoint_format}'
    assert find_network_file(tmp_path, 'net_g', 1000) is None
    path = save_network_file({'params': tiny_net(0).state_dict(), 'params_ema': tiny_net(1).state_dict()},
                             tmp_path / name)
    assert find_network_file(tmp_path, 'net_g', 1000) == str(path)
    assert checkpoint_looks_complete(path)
    with open(path, 'rb') as handle:
        data = handle.read()
    for cut in (len(data) - 1, len(data) // 2, 4):
        torn = tmp_path / f'torn.{checkpoint_format}'
        torn.write_bytes(data[:cut])
        assert not checkpoint_looks_complete(torn)
    with pytest.raises(ValueError, match='checkpoint format'):
        network_file_name('net_g', 5, 'ckpt')
