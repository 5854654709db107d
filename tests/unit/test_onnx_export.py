"""scripts/export_onnx.py: exports checked by onnxruntime, dynamic sizes, fp16, .onnx inference with tiles."""
import numpy as np
import pytest
import torch

import ext  # noqa: F401
from basicsr.archs.rrdbnet_arch import RRDBNet
from basicsr.archs.srvgg_arch import SRVGGNetCompact
from ext.inference import load_upscaler
from ext.inference.onnx import onnx_metadata
from ext.utils.checkpoint import save_network_file
from helpers import load_script, skimage_rgb


export_onnx = load_script('export_onnx')
RRDB_X2 = {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'num_grow_ch': 4,
           'scale': 2}


@pytest.fixture
def rrdb_x2(tmp_path):
    """A pixel-unshuffle x2 RRDBNet as training writes it: weights plus its network options."""
    torch.manual_seed(0)
    net = RRDBNet(**{k: v for k, v in RRDB_X2.items() if k != 'type'}).eval()
    path = save_network_file({'params': net.state_dict()}, tmp_path / 'net_g_x2.pth',
                             network_options={'network': RRDB_X2, 'scale': 2})
    return net, str(path)


def test_rrdbnet_x2_export_is_checked_by_onnxruntime_and_runs_tiled(tmp_path, rrdb_x2, capsys):
    net, model_path = rrdb_x2
    onnx_path = tmp_path / 'x2.onnx'
    assert export_onnx.main(['--model_path', model_path, '-o', str(onnx_path)]) == 0
    out = capsys.readouterr().out
    assert 'onnxruntime check (CPUExecutionProvider, 72x88 photo' in out and 'passed' in out
    max_abs = float(out.split('max abs ')[1].split(',')[0])
    assert max_abs <= 1e-3
    assert onnx_metadata(onnx_path) == {'scale': '2', 'in_channels': '3', 'size_multiple': '2',
                                        'architecture': 'RRDBNet', 'fp16': '0', 'takes_reference': '0'}
    # the .onnx file in the tiled inference, at a size the export never saw, equals PyTorch
    photo = np.ascontiguousarray(skimage_rgb('coffee')[40:90, 60:126, ::-1])
    from_onnx = load_upscaler(str(onnx_path), tile=24, tile_pad=8, device='cpu').upscale(photo)
    from_torch = load_upscaler(model_path, tile=24, tile_pad=8, device='cpu').upscale(photo)
    assert from_onnx.shape == (100, 132, 3)
    assert np.abs(from_onnx.astype(int) - from_torch.astype(int)).max() <= 1
    # fp16: half weights, float16 in and out, still close to fp32 PyTorch
    assert export_onnx.main(['--model_path', model_path, '-o', str(tmp_path / 'x2_fp16.onnx'), '--fp16']) == 0
    assert 'fp16' in capsys.readouterr().err
    assert onnx_metadata(tmp_path / 'x2_fp16.onnx')['fp16'] == '1'


def test_published_compact_network_through_spandrel(tmp_path, capsys):
    torch.manual_seed(1)
    net = SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, upscale=4).eval()
    torch.save({'params_ema': net.state_dict()}, tmp_path / 'compact.pth')  # no recorded options: spandrel
    assert export_onnx.main(['--model_path', str(tmp_path / 'compact.pth'), '-o', str(tmp_path / 'c.onnx'),
                             '--opset', '18', '--check_size', '40', '52']) == 0
    assert 'check (CPUExecutionProvider, 40x52 photo' in capsys.readouterr().out
    assert onnx_metadata(tmp_path / 'c.onnx')['scale'] == '4'


def test_ttsr_refuses_with_the_reason(tmp_path, capsys):
    from ext.archs.ttsr_net_arch import TTSRNet
    net = TTSRNet(mid_channels=8, num_blocks=(1, 1, 1, 1), load_pretrained_vgg=False)
    save_network_file({'params': net.state_dict()}, tmp_path / 'ttsr.pth', network_options={
        'network': {'type': 'TTSRNet', 'mid_channels': 8, 'num_blocks': [1, 1, 1, 1]}, 'scale': 4})
    assert export_onnx.main(['--model_path', str(tmp_path / 'ttsr.pth'), '-o', str(tmp_path / 't.onnx'),
                             '--check_size', '8', '8']) == 1
    err = capsys.readouterr().err
    assert 'torch.onnx.export failed for TTSRNet' in err and 'reference-based' in err and 'tracing' in err
    assert len(err.splitlines()) <= 3  # the reason, not the traced graph
    assert not (tmp_path / 't.onnx').exists()
