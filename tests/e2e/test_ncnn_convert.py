"""ncnn -> PyTorch conversion of the released Real-ESRGAN models, checked against the ncnn package itself."""
import os.path as osp
import shutil

import numpy as np
import pytest
import torch

from helpers import REPO_ROOT, run_script, skimage_rgb
from ext.utils.checkpoint import load_network_file
from ext.utils.ncnn_convert import NcnnConversionError, convert_ncnn, ncnn_forward, released_model_files

CONVERT = osp.join(REPO_ROOT, 'scripts', 'convert_ncnn_checkpoint.py')


def _uint8(rgb01):
    return np.clip(np.round(rgb01 * 255), 0, 255).astype(np.int16)


def _torch_forward(conversion, rgb01):
    from basicsr.archs import build_network
    net = build_network(dict(conversion.network_opt))
    net.load_state_dict(conversion.state_dict, strict=True)
    with torch.no_grad():
        out = net.eval()(torch.from_numpy(np.ascontiguousarray(rgb01.transpose(2, 0, 1))).unsqueeze(0))
    return out[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize('name, crop, expected', [
    ('RealESRGAN_x4plus', (slice(80, 96), slice(200, 216)),  # astronaut's face (x4plus is slow on CPU)
     dict(type='RRDBNet', num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32)),
    ('realesr-animevideov3', (slice(100, 124), slice(180, 204)),
     dict(type='SRVGGNetCompact', num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4, act_type='prelu')),
])
def test_converted_model_matches_ncnn_on_a_real_photo(name, crop, expected):
    param, bin_path = released_model_files(name)
    conversion = convert_ncnn(param, bin_path)
    assert conversion.network_opt == expected
    rgb01 = skimage_rgb('astronaut')[crop].astype(np.float32) / 255
    reference = _uint8(ncnn_forward(param, bin_path, rgb01))
    converted = _uint8(_torch_forward(conversion, rgb01))
    assert converted.shape == reference.shape == (rgb01.shape[0] * 4, rgb01.shape[1] * 4, 3)
    difference = np.abs(converted - reference)
    assert difference.mean() <= 0.5 and difference.max() <= 4, (difference.mean(), difference.max())
    assert reference.std() > 10  # a real picture came out, not a constant


def test_script_writes_a_checkpoint_that_loads_strictly(tmp_path):
    output = tmp_path / 'animevideov3.safetensors'
    result = run_script([CONVERT, '--released', 'realesr-animevideov3_x2', str(output), '--options_out',
                         str(tmp_path / 'net.yml')], cwd=str(tmp_path))
    assert '--outscale 2' in result.stdout  # the x2 file is the x4 network plus a bicubic x0.5 resize
    state_dict = load_network_file(str(output), 'params_ema')
    from basicsr.archs import build_network
    import yaml
    network_opt = yaml.safe_load(open(tmp_path / 'net.yml'))['network_g']
    build_network(network_opt).load_state_dict(state_dict, strict=True)
    assert state_dict['body.1.weight'].shape == (64, )  # PReLU slopes


def _copy_pair(tmp_path, name):
    param, bin_path = released_model_files(name)
    shutil.copy(param, tmp_path / 'model.param')
    shutil.copy(bin_path, tmp_path / 'model.bin')
    return tmp_path / 'model.param', tmp_path / 'model.bin'


def test_unmappable_layer_is_named(tmp_path):
    param, _ = _copy_pair(tmp_path, 'realesr-animevideov3')
    lines = param.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith('PReLU'))
    name = lines[index].split()[1]
    lines[index] = lines[index].replace('PReLU', 'Sigmoid', 1).split(' 0=')[0]
    param.write_text('\n'.join(lines) + '\n')
    with pytest.raises(NcnnConversionError, match=f'layer {name} \\(Sigmoid, layer {index - 2}\\) cannot be mapped'):
        convert_ncnn(param)
    result = run_script([CONVERT, str(param), str(tmp_path / 'out.pth')], cwd=str(tmp_path), check=False)
    assert result.returncode == 2 and name in result.stderr and not osp.exists(tmp_path / 'out.pth')


def test_wrong_shapes_and_truncated_weights_are_reported(tmp_path):
    param, bin_path = _copy_pair(tmp_path, 'realesr-animevideov3')
    data = bin_path.read_bytes()
    bin_path.write_bytes(data[:len(data) // 2])
    with pytest.raises(NcnnConversionError, match='ends at byte .* while reading the weights of layer'):
        convert_ncnn(param)
    bin_path.write_bytes(data + b'\0' * 8)
    with pytest.raises(NcnnConversionError, match='8 bytes are left'):
        convert_ncnn(param)
    bin_path.write_bytes(data)
    text = param.read_text()
    param.write_text(text.replace('0=64 1=3 4=1 5=1 6=36864', '0=64 1=3 4=1 5=1 6=36800', 1))
    with pytest.raises(NcnnConversionError, match='weight count 36800'):
        convert_ncnn(param)
    param.write_text('7767517\n1 1\nInput in 0 1 data\n')
    with pytest.raises(NcnnConversionError, match='no Convolution layer'):
        convert_ncnn(param)
    with pytest.raises(FileNotFoundError, match='missing.bin'):
        convert_ncnn(param, tmp_path / 'missing.bin')
