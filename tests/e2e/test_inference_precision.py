"""bf16 / fp16 / channels_last inference (ext/inference/precision.py): bounded differences to fp32 on the released
x4plus and a real photo, the options in the API, scripts/inference.py and scripts/evaluate.py, and clear refusals
(fp16 on a CPU, bf16 for ONNX models, contradicting flags)."""
import copy
import json

import cv2
import numpy as np
import pytest
import torch

import ext  # noqa: F401  (BasicSR 1.4.2 imports only after ext.compat)
from basicsr.archs.rrdbnet_arch import RRDBNet
from ext.inference import LoadedNetwork, Upscaler, UsageError, load_upscaler
from ext.inference.precision import check_network_precision, cpu_bf16_units, resolve_precision
from helpers import REPO_ROOT, load_script, released_x4plus, run_script, skimage_rgb, write_paired_folders

INFERENCE_PY = f'{REPO_ROOT}/scripts/inference.py'
EVALUATE_PY = f'{REPO_ROOT}/scripts/evaluate.py'
SMALL = {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 16, 'num_block': 1, 'num_grow_ch': 8}


@pytest.fixture(scope='module')
def x4plus():
    """Real-ESRGAN's released x4plus, converted from the installed ncnn files (offline, seconds)."""
    return released_x4plus()


@pytest.fixture
def small_checkpoint(tmp_path):
    from ext.utils.checkpoint import save_network_file
    torch.manual_seed(0)
    options = {key: value for key, value in SMALL.items() if key != 'type'}
    net = RRDBNet(**options).eval()
    path = save_network_file({'params': net.state_dict()}, str(tmp_path / 'net_g.pth'),
                             network_options={'network': dict(SMALL), 'scale': 4})
    return net, path


def gray_levels(a, b):
    difference = np.abs(a.astype(int) - b.astype(int))
    return difference.mean(), difference.max()


def test_bf16_on_the_released_x4plus_stays_within_a_gray_level_of_fp32(x4plus):
    """The astronaut's face, 24 x 24 (x4plus is slow on CPUs): measured mean 0.3 and max 5-9 gray levels on such
    crops (benchmarks/bench_tiled_inference.py measures the whole 512^2 photo)."""
    image = np.ascontiguousarray(skimage_rgb('astronaut')[76:100, 196:220, ::-1])
    outputs = {}
    for precision, channels_last in (('fp32', False), ('bf16', True)):
        loaded = LoadedNetwork(copy.deepcopy(x4plus), 4, 3, None, 0, True, 'x4plus')  # converted in place
        upscaler = Upscaler(loaded, device='cpu', precision=precision, channels_last=channels_last)
        assert upscaler.tiler.dtype == {'fp32': torch.float32, 'bf16': torch.bfloat16}[precision]
        assert upscaler.streamed_tail
        outputs[precision] = upscaler.upscale(image)
    mean, largest = gray_levels(outputs['bf16'], outputs['fp32'])
    assert 0 < mean <= 1.0 and largest <= 24, (mean, largest)
    assert outputs['fp32'].std() > 20  # a real picture came out


def test_options_convert_the_network_and_keep_the_measured_tile_pad(small_checkpoint):
    net, path = small_checkpoint
    fp32 = load_upscaler(path, tile=32, device='cpu')
    bf16 = load_upscaler(path, tile=32, device='cpu', precision='bf16', channels_last=True)
    assert fp32.precision == 'fp32' and bf16.precision == 'bf16' and bf16.channels_last
    weight = bf16.net.conv_first.weight
    assert weight.dtype == torch.bfloat16 and weight.is_contiguous(memory_format=torch.channels_last)
    assert bf16.tiler.tile_pad == fp32.tiler.tile_pad  # measured in fp32: bf16 noise is no receptive field
    image = np.ascontiguousarray(skimage_rgb('coffee')[100:140, 200:248, ::-1])
    mean, _ = gray_levels(bf16.upscale(image), fp32.upscale(image))
    assert mean <= 1.0
    gray16 = (cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)
    assert bf16.upscale(gray16).dtype == np.uint16  # 16-bit in, 16-bit out, through bf16 tiles


def test_refusals_name_the_problem():
    with pytest.raises(UsageError, match='--fp16 needs a CUDA device.*--precision bf16'):
        load_upscaler('absent.pth', device='cpu', precision='fp16')
    with pytest.raises(UsageError, match='--fp16 needs a CUDA device'):
        load_upscaler('absent.pth', device='cpu', fp16=True)
    with pytest.raises(UsageError, match='contradicts --precision bf16'):
        resolve_precision('bf16', fp16=True)
    with pytest.raises(UsageError, match='one of fp32, bf16, fp16'):
        resolve_precision('int8')
    assert resolve_precision(None, fp16=True) == 'fp16' and resolve_precision(None) == 'fp32'

    class OnnxLike:  # onnxruntime sessions act as networks but are no torch modules
        def forward(self, x):
            return x

    loaded = LoadedNetwork(OnnxLike(), 4, 3, 1, 0, False, 'model.onnx')
    with pytest.raises(UsageError, match='in the precision it was exported with; drop --precision bf16'):
        check_network_precision(loaded, 'bf16', False)
    with pytest.raises(UsageError, match='drop --channels_last'):
        check_network_precision(loaded, 'fp32', True)
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match='CUDA is not available'):
            load_upscaler('absent.pth', device='cuda', precision='bf16')
    assert set(cpu_bf16_units()) <= {'avx512_bf16', 'amx_bf16', 'amx_tile', 'avx_ne_convert'}


def test_a_network_without_bf16_kernels_is_refused_by_name():
    """TTSR resizes with antialiased bicubic, which has no bf16 CPU kernel: a UsageError, not a traceback."""
    from ext.archs.ttsr_net_arch import TTSRNet
    torch.manual_seed(0)
    ttsr = TTSRNet(mid_channels=8, num_blocks=(1, 1, 1, 1), load_pretrained_vgg=False).eval()
    upscaler = Upscaler(LoadedNetwork(ttsr, 4, 3, None, 0, True, 'TTSRNet'), tile=8, tile_pad=4, device='cpu',
                        precision='bf16')
    image, ref = skimage_rgb('astronaut')[100:116, 100:116], skimage_rgb('coffee')[100:164, 100:164]
    with pytest.raises(UsageError, match=r"TTSRNet does not run in bf16 on cpu \(.*BFloat16.*\); use --precision fp32"):
        upscaler.upscale(image, ref=ref)


def test_inference_cli_precision_flags(tmp_path, small_checkpoint, capsys):
    _, path = small_checkpoint
    inference = load_script(INFERENCE_PY)
    image = np.ascontiguousarray(skimage_rgb('chelsea')[60:92, 120:152, ::-1])
    cv2.imwrite(str(tmp_path / 'cat.png'), image)
    common = ['-i', str(tmp_path / 'cat.png'), '--model_path', path, '--device', 'cpu', '--tile', '16']
    assert inference.main(common + ['-o', str(tmp_path / 'fp32')]) == 0
    assert inference.main(common + ['-o', str(tmp_path / 'bf16'), '--precision', 'bf16', '--channels_last']) == 0
    fp32, bf16 = (cv2.imread(str(tmp_path / name / 'cat_out.png')) for name in ('fp32', 'bf16'))
    assert fp32.shape == bf16.shape == (128, 128, 3) and gray_levels(bf16, fp32)[0] <= 1.0
    capsys.readouterr()
    assert inference.main(common + ['-o', str(tmp_path / 'x'), '--precision', 'fp16']) == 2
    assert '--fp16 needs a CUDA device' in capsys.readouterr().err
    assert inference.main(common + ['-o', str(tmp_path / 'x'), '--precision', 'bf16', '--fp16']) == 2
    assert 'contradicts --precision bf16' in capsys.readouterr().err
    help_text = run_script([INFERENCE_PY, '--help'], cwd=REPO_ROOT).stdout
    assert '--precision {fp32,bf16,fp16}' in help_text and '--channels_last' in help_text and '--fp16' in help_text


def test_evaluate_in_bf16_scores_like_fp32(tmp_path, small_checkpoint):
    _, path = small_checkpoint
    gt, lq = write_paired_folders(str(tmp_path / 'pairs'), 2, 32)
    evaluate = load_script(EVALUATE_PY)
    scores = {}
    for precision in ('fp32', 'bf16'):
        out = tmp_path / precision
        assert evaluate.main([path, '--dataset', f'mine={gt}:{lq}', '--metrics', 'psnr_rgb', '--device', 'cpu',
                              '--precision', precision, '--channels-last', '--out-dir', str(out)]) == 0
        scores[precision] = json.loads((out / 'results.json').read_text())['summary']['mine']['psnr_rgb']
    assert abs(scores['bf16'] - scores['fp32']) < 0.2, scores
