"""scripts/inference.py end to end: spandrel, -opt and --arch networks, image modes, references, error paths."""
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import ext  # noqa: F401  (BasicSR 1.4.2 imports only after ext.compat)
from basicsr.archs.rrdbnet_arch import RRDBNet
from basicsr.archs.srvgg_arch import SRVGGNetCompact
from basicsr.utils.registry import ARCH_REGISTRY
from helpers import REPO_ROOT, load_script, run_script, skimage_rgb, write_options

INFERENCE_PY = osp.join(REPO_ROOT, 'scripts', 'inference.py')


inference = load_script(INFERENCE_PY)


def photo_bgr(height, width, name='astronaut', top=100, left=150):
    return np.ascontiguousarray(skimage_rgb(name)[top:top + height, left:left + width, ::-1])


def forward_uint8(net, bgr):
    """What the network gives for an 8-bit BGR image, run whole, quantized as the script does."""
    x = torch.from_numpy(bgr[:, :, ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = net(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()[:, :, ::-1]
    return np.round(y * 255).astype(np.uint8)


def read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


@pytest.fixture
def srvgg(tmp_path):
    """A tiny Real-ESRGAN compact x2 network saved as a BasicSR checkpoint."""
    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, upscale=2).eval()
    path = tmp_path / 'compact_x2.pth'
    torch.save({'params': net.state_dict(), 'params_ema': net.state_dict()}, path)
    return net, str(path)


def test_published_architecture_through_spandrel_in_every_image_mode(tmp_path, srvgg):
    """The real CLI in a subprocess: a folder of gray, RGB, RGBA, 16-bit and broken inputs."""
    net, model_path = srvgg
    folder = tmp_path / 'in'
    folder.mkdir()
    rgb = photo_bgr(40, 44)
    cv2.imwrite(str(folder / 'a_rgb.png'), rgb)
    cv2.imwrite(str(folder / 'b_gray.png'), cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY))
    alpha = np.tile(np.linspace(0, 255, 44).astype(np.uint8), (40, 1))
    cv2.imwrite(str(folder / 'c_rgba.png'), np.dstack([rgb, alpha]))
    cv2.imwrite(str(folder / 'd_deep.png'), rgb.astype(np.uint16) * 257 + 100)
    cv2.imwrite(str(folder / 'e_photo.jpg'), rgb)
    (folder / 'f_notes.txt').write_text('not an image')
    (folder / 'g_broken.png').write_bytes((folder / 'a_rgb.png').read_bytes()[:120])
    out = tmp_path / 'out'

    result = run_script([INFERENCE_PY, '-i', str(folder), '-o', str(out), '--model_path', model_path, '--tile', '16',
                         '--tile_pad', '8'], cwd=str(tmp_path), check=False)
    assert result.returncode == 1, result.stderr
    assert 'RealESRGAN Compact x2 (spandrel)' in result.stderr
    for bad in ('f_notes.txt', 'g_broken.png'):
        assert f'{folder / bad}: not an image' in result.stderr
    assert sorted(os.listdir(out)) == ['a_rgb_out.png', 'b_gray_out.png', 'c_rgba_out.png', 'd_deep_out.png',
                                       'e_photo_out.jpg']
    color = read(out / 'a_rgb_out.png')
    assert color.shape == (80, 88, 3) and color.dtype == np.uint8
    # spandrel rebuilt the same network, and 16-px tiles with 8 px of context are seamless
    assert np.abs(color.astype(int) - forward_uint8(net, rgb)).max() <= 1
    gray = read(out / 'b_gray_out.png')
    assert gray.shape == (80, 88) and gray.dtype == np.uint8
    rgba = read(out / 'c_rgba_out.png')
    assert rgba.shape == (80, 88, 4) and rgba.dtype == np.uint8
    assert np.abs(rgba[:, :, :3].astype(int) - color).max() <= 1
    deep = read(out / 'd_deep_out.png')
    assert deep.shape == (80, 88, 3) and deep.dtype == np.uint16 and (deep % 257 != 0).any()
    assert np.abs(deep.astype(int) / 257 - color).max() <= 2
    assert read(out / 'e_photo_out.jpg').shape == (80, 88, 3)


def test_network_from_training_yaml_with_float_outscale(tmp_path):
    torch.manual_seed(0)
    network_g = {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'num_grow_ch': 4}
    net = RRDBNet(**{k: v for k, v in network_g.items() if k != 'type'}).eval()
    model_path = tmp_path / 'net_g_latest.pth'
    torch.save({'params': net.state_dict()}, model_path)
    yml = write_options(tmp_path / 'train.yml', {'name': 'x', 'scale': 4, 'network_g': network_g,
                                                  'path': {'pretrain_network_g': str(model_path)}})
    image = photo_bgr(18, 22)
    cv2.imwrite(str(tmp_path / 'lr.png'), image)
    assert inference.main(['-i', str(tmp_path / 'lr.png'), '-o', str(tmp_path / 'x4'), '-opt', str(yml),
                           '--suffix', '', '--device', 'cpu']) == 0
    np.testing.assert_allclose(read(tmp_path / 'x4' / 'lr.png'), forward_uint8(net, image), atol=1)
    assert inference.main(['-i', str(tmp_path / 'lr.png'), '-o', str(tmp_path / 'x35'), '-opt', str(yml),
                           '--model_path', str(model_path), '-s', '3.5', '--ext', 'jpg', '--tile', '10']) == 0
    assert read(tmp_path / 'x35' / 'lr_out.jpg').shape == (63, 77, 3)


def test_usage_errors_name_what_is_wrong(tmp_path, srvgg, capsys):
    _, model_path = srvgg
    cv2.imwrite(str(tmp_path / 'lr.png'), photo_bgr(16, 16))
    lr, out = str(tmp_path / 'lr.png'), str(tmp_path / 'out')

    def run(*extra):
        code = inference.main(['-i', lr, '-o', out, *extra])
        return code, capsys.readouterr().err

    code, err = run('--arch', 'SRVGGNetCompact', '--arch_args', json.dumps({'num_feat': 16, 'upscale': 2}),
                    '--model_path', model_path)
    assert code == 2 and model_path in err and 'does not match the network SRVGGNetCompact' in err
    assert 'body.0.weight checkpoint (8, 3, 3, 3) vs network (16, 3, 3, 3)' in err
    code, err = run('--model_path', model_path, '--device', 'cpu', '--fp16')
    assert code == 2 and '--fp16 needs a CUDA device' in err
    code, err = run('--arch', 'SRVGGNetCompat', '--model_path', model_path)
    assert code == 2 and "unknown architecture 'SRVGGNetCompat'" in err and 'SRVGGNetCompact' in err
    code, err = run('--arch', 'SRVGGNetCompact', '--arch_args', '{num_feat: 8}', '--model_path', model_path)
    assert code == 2 and '--arch_args is not valid JSON' in err
    torch.save({'params': {'totally.unknown': torch.zeros(3)}}, tmp_path / 'odd.pth')
    code, err = run('--model_path', str(tmp_path / 'odd.pth'))
    assert code == 2 and 'spandrel does not recognise' in err and '-opt' in err
    code, err = run('--model_path', str(tmp_path / 'absent.pth'))
    assert code == 2 and 'absent.pth' in err
    assert not osp.exists(out) or not os.listdir(out)


class OutOfMemoryOnLargeInputs(nn.Module):
    """x2 network that raises PyTorch's CUDA OOM error for inputs over 40 px, like a GPU too small for them."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3 * 4, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        if max(x.shape[-2:]) > 40:
            raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 12.00 GiB')
        return self.shuffle(self.conv(x))


def test_out_of_memory_on_one_file_keeps_the_others(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(ARCH_REGISTRY._obj_map, 'OutOfMemoryOnLargeInputs', OutOfMemoryOnLargeInputs)
    torch.save({'params': OutOfMemoryOnLargeInputs().state_dict()}, tmp_path / 'oom.pth')
    folder = tmp_path / 'in'
    folder.mkdir()
    for name, size in (('a_small', 24), ('b_large', 64), ('c_small', 30)):
        cv2.imwrite(str(folder / f'{name}.png'), photo_bgr(size, size))
    out = tmp_path / 'out'
    args = ['-i', str(folder), '-o', str(out), '--arch', 'OutOfMemoryOnLargeInputs', '--model_path',
            str(tmp_path / 'oom.pth'), '--scale', '2', '--device', 'cpu']
    assert inference.main(args) == 1
    err = capsys.readouterr().err
    assert f'{folder / "b_large.png"}: out of memory on cpu for tile 1/1' in err and '--tile 512 or smaller' in err
    assert sorted(os.listdir(out)) == ['a_small_out.png', 'c_small_out.png']
    assert inference.main(args + ['--tile', '32', '--tile_pad', '4']) == 0
    assert read(out / 'b_large_out.png').shape == (128, 128, 3)


def test_failed_write_leaves_no_partial_file(tmp_path, srvgg, monkeypatch, capsys):
    import ext.utils.atomic_io as atomic_io  # the writes of ext.utils.atomic_io
    _, model_path = srvgg
    cv2.imwrite(str(tmp_path / 'lr.png'), photo_bgr(16, 16))
    out = tmp_path / 'out'

    def disk_full(fd):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(atomic_io.os, 'fsync', disk_full)
    assert inference.main(['-i', str(tmp_path / 'lr.png'), '-o', str(out), '--model_path', model_path]) == 1
    err = capsys.readouterr().err
    assert f'{tmp_path / "lr.png"}: cannot write {out / "lr_out.png"}: No space left on device' in err
    assert os.listdir(out) == []


class TinyReferenceNet(nn.Module):
    """Reference-based toy with TTSR's call signature: x2 of the input plus the whole reference's mean color."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(0.5))

    def forward(self, lq, ref, lq_up=None, ref_down_up=None):
        up = nn.functional.interpolate(lq, scale_factor=2, mode='nearest')
        return up * self.gain + ref.mean((2, 3), keepdim=True)


def test_reference_based_network_gets_the_matching_reference(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(ARCH_REGISTRY._obj_map, 'TinyReferenceNet', TinyReferenceNet)
    torch.save({'params': TinyReferenceNet().state_dict()}, tmp_path / 'ref_net.pth')
    lr_dir, ref_dir = tmp_path / 'lr', tmp_path / 'ref'
    lr_dir.mkdir()
    ref_dir.mkdir()
    lr = photo_bgr(20, 20) // 2
    for name in ('one', 'two', 'three'):
        cv2.imwrite(str(lr_dir / f'{name}.png'), lr)
    refs = {'one': photo_bgr(48, 40, 'coffee') // 2, 'two': photo_bgr(32, 36, 'chelsea') // 2}
    for name, image in refs.items():
        cv2.imwrite(str(ref_dir / f'{name}.jpg' if name == 'two' else ref_dir / f'{name}.png'), image)
    base = ['-i', str(lr_dir), '-o', str(tmp_path / 'out'), '--arch', 'TinyReferenceNet',
            '--model_path', str(tmp_path / 'ref_net.pth'), '--scale', '2', '--tile', '8', '--tile_pad', '2']
    assert inference.main(base) == 2
    assert 'reference-based: pass --ref' in capsys.readouterr().err
    assert inference.main(base + ['--ref', str(ref_dir)]) == 1
    assert f'{lr_dir / "three.png"}: no reference named three.* in {ref_dir}' in capsys.readouterr().err
    up = cv2.resize(lr, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST).astype(np.float64) * 0.5
    for name in ('one', 'two'):
        stored = read(ref_dir / f'{name}.jpg' if name == 'two' else ref_dir / f'{name}.png').astype(np.float64)
        expected = np.clip(up + stored.reshape(-1, 3).mean(0), 0, 255)
        np.testing.assert_allclose(read(tmp_path / 'out' / f'{name}_out.png'), expected, atol=0.51)
    # one reference file for every input
    assert inference.main(base + ['--ref', str(ref_dir / 'one.png'), '-o', str(tmp_path / 'single')]) == 0
    assert len(os.listdir(tmp_path / 'single')) == 3


def dihedral_average(net, bgr):
    """The geometric self-ensemble written out: the 8 flips/transposes of the image, each output mapped back."""
    x = torch.from_numpy(bgr[:, :, ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]
    outputs = []
    with torch.no_grad():
        for turns in range(4):
            for mirror in (False, True):
                view = torch.rot90(x.flip(3) if mirror else x, turns, (2, 3))
                y = torch.rot90(net(view), -turns, (2, 3))
                outputs.append(y.flip(3) if mirror else y)
    y = torch.stack(outputs).mean(0).clamp(0, 1)[0].permute(1, 2, 0).numpy()[:, :, ::-1]
    return np.round(y * 255).astype(np.uint8)


def test_self_ensemble_averages_the_eight_flips_and_transposes(tmp_path, srvgg, monkeypatch, capsys):
    net, model_path = srvgg
    rgb = photo_bgr(24, 30)
    cv2.imwrite(str(tmp_path / 'lr.png'), rgb)
    base = ['-i', str(tmp_path / 'lr.png'), '--model_path', model_path, '--tile', '16', '--tile_pad', '8']
    assert inference.main(base + ['-o', str(tmp_path / 'plain')]) == 0
    assert inference.main(base + ['-o', str(tmp_path / 'ensemble'), '--self_ensemble']) == 0
    plain, ensemble = read(tmp_path / 'plain' / 'lr_out.png'), read(tmp_path / 'ensemble' / 'lr_out.png')
    assert np.abs(ensemble.astype(int) - dihedral_average(net, rgb)).max() <= 1  # tiled, seamless
    assert np.abs(ensemble.astype(int) - plain).max() > 8  # a random network is far from flip-equivariant
    # reference-based networks: the reference would not be flipped with the input
    monkeypatch.setitem(ARCH_REGISTRY._obj_map, 'TinyReferenceNet', TinyReferenceNet)
    torch.save({'params': TinyReferenceNet().state_dict()}, tmp_path / 'ref_net.pth')
    assert inference.main(['-i', str(tmp_path / 'lr.png'), '-o', str(tmp_path / 'ref_out'), '--arch',
                           'TinyReferenceNet', '--model_path', str(tmp_path / 'ref_net.pth'), '--scale', '2',
                           '--ref', str(tmp_path / 'lr.png'), '--self_ensemble']) == 2
    assert '--self_ensemble flips the input only' in capsys.readouterr().err


def test_help_lists_the_flags():
    result = run_script([INFERENCE_PY, '--help'], cwd=REPO_ROOT)
    for flag in ('--model_path', '-opt', '--arch_args', '--outscale', '--tile', '--tile_pad', '--pre_pad', '--fp16',
                 '--suffix', '--ext', '--device', '--ref', '--self_ensemble'):
        assert flag in result.stdout


def test_ttsr_from_its_yaml_with_a_reference_and_tiles(tmp_path):
    """The project's TTSRNet: built from a YAML (no VGG file needed: the checkpoint has the extractor)."""
    from ext.archs.ttsr_net_arch import TTSRNet
    network_g = {'type': 'TTSRNet', 'mid_channels': 8, 'num_blocks': [1, 1, 1, 1], 'load_pretrained_vgg': True}
    torch.manual_seed(0)
    net = TTSRNet(mid_channels=8, num_blocks=(1, 1, 1, 1), load_pretrained_vgg=False).eval()
    model_path = tmp_path / 'ttsr.pth'
    torch.save({'params': net.state_dict()}, model_path)
    yml = write_options(tmp_path / 'ttsr.yml', {'name': 'ttsr', 'scale': 4, 'network_g': network_g})
    lq, ref = photo_bgr(8, 12), photo_bgr(26, 30, 'coffee')  # the reference is mod-cropped to 24x28
    cv2.imwrite(str(tmp_path / 'lq.png'), lq)
    cv2.imwrite(str(tmp_path / 'ref.png'), ref)
    args = ['-i', str(tmp_path / 'lq.png'), '--ref', str(tmp_path / 'ref.png'), '-opt', str(yml),
            '--model_path', str(model_path), '--device', 'cpu']
    assert inference.main(args + ['-o', str(tmp_path / 'whole')]) == 0
    ref_rgb = torch.from_numpy(ref[:24, :28, ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]
    x = torch.from_numpy(lq[:, :, ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = np.round(net(x, ref_rgb).clamp(0, 1)[0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255)
    np.testing.assert_allclose(read(tmp_path / 'whole' / 'lq_out.png'), expected, atol=1)
    assert inference.main(args + ['-o', str(tmp_path / 'tiled'), '--tile', '8', '--tile_pad', '4']) == 0
    assert read(tmp_path / 'tiled' / 'lq_out.png').shape == (32, 48, 3)


def test_checkpoint_written_by_training_runs_through_inference(tmp_path):
    """ext/train.py writes net_g_latest.pth; inference rebuilds its generator from the same YAML."""
    from helpers import base_train_options, run_train, write_paired_folders
    gt, lq = write_paired_folders(str(tmp_path / 'data'), count=2, gt_size=64)
    opt = base_train_options('infer_e2e', str(tmp_path), gt, lq, total_iter=2)
    opt['train']['ema_decay'] = 0.9  # the checkpoint then holds params and params_ema
    run_train(opt, str(tmp_path))
    model_path = osp.join(opt['path']['experiments_root'], 'models', 'net_g_latest.pth')
    assert inference.main(['-i', lq, '-o', str(tmp_path / 'sr'), '-opt', str(tmp_path / 'infer_e2e.yml'),
                           '--model_path', model_path, '--tile', '8']) == 0
    outputs = sorted(os.listdir(tmp_path / 'sr'))
    assert outputs == ['0000_out.png', '0001_out.png']
    assert read(tmp_path / 'sr' / outputs[0]).shape == (64, 64, 3)
    # the checkpoint records its network_g: --model_path alone rebuilds the same network (spandrel cannot)
    assert inference.main(['-i', lq, '-o', str(tmp_path / 'alone'), '--model_path', model_path, '--tile', '8']) == 0
    for name in outputs:
        np.testing.assert_array_equal(read(tmp_path / 'alone' / name), read(tmp_path / 'sr' / name))


def test_recorded_network_options_in_safetensors_and_full_loading_errors(tmp_path, capsys):
    from ext.utils.checkpoint import load_network_and_options, save_network_file
    torch.manual_seed(0)
    network_g = {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'num_grow_ch': 4}
    net = RRDBNet(3, 3, num_feat=8, num_block=1, num_grow_ch=4).eval()
    recorded = save_network_file({'params': net.state_dict(), 'params_ema': net.state_dict()},
                                 tmp_path / 'net_g.safetensors', network_options={'network': network_g, 'scale': 4})
    _, options = load_network_and_options(recorded, 'params_ema')
    assert options == {'network': network_g, 'scale': 4}
    image = photo_bgr(12, 14)
    cv2.imwrite(str(tmp_path / 'lr.png'), image)
    assert inference.main(['-i', str(tmp_path / 'lr.png'), '-o', str(tmp_path / 'out'), '--model_path',
                           str(recorded)]) == 0
    assert np.abs(read(tmp_path / 'out' / 'lr_out.png').astype(int) - forward_uint8(net, image)).max() <= 1
    # without recorded options spandrel guesses the architecture, fails, and the whole reason is shown
    torch.save({'params': net.state_dict()}, tmp_path / 'bare.pth')
    assert inference.main(['-i', str(tmp_path / 'lr.png'), '-o', str(tmp_path / 'out2'), '--model_path',
                           str(tmp_path / 'bare.pth')]) == 2
    err = capsys.readouterr().err
    assert 'spandrel recognised the file but could not load it: Error(s) in loading state_dict' in err
    assert 'size mismatch' in err


def test_python_api_matches_the_cli(tmp_path, srvgg):
    from ext.inference import load_upscaler
    net, model_path = srvgg
    image = photo_bgr(30, 34)
    cv2.imwrite(str(tmp_path / 'lr.png'), image)
    assert inference.main(['-i', str(tmp_path / 'lr.png'), '-o', str(tmp_path / 'cli'), '--model_path', model_path,
                           '--tile', '16']) == 0
    upscaler = load_upscaler(model_path, tile=16, device='cpu')
    assert upscaler.scale == 2 and upscaler.tile_pad_source.startswith('measured')
    np.testing.assert_array_equal(upscaler.upscale(image), read(tmp_path / 'cli' / 'lr_out.png'))
    assert upscaler.upscale(image, outscale=1.5).shape == (45, 51, 3)
    upscaler.upscale_file(str(tmp_path / 'lr.png'), str(tmp_path / 'api' / 'sr.png'))
    np.testing.assert_array_equal(read(tmp_path / 'api' / 'sr.png'), read(tmp_path / 'cli' / 'lr_out.png'))


def test_safetensors_checkpoint_and_code_running_pickle_through_the_cli(tmp_path, srvgg, capsys):
    from ext.utils.checkpoint import save_network_file

    class WritesMarker:
        def __reduce__(self):
            return (open, (str(tmp_path / 'pwned'), 'w'))

    net, _ = srvgg
    save_network_file({'params_ema': net.state_dict()}, tmp_path / 'compact.safetensors')
    image = photo_bgr(12, 12)
    cv2.imwrite(str(tmp_path / 'lr.png'), image)
    base = ['-i', str(tmp_path / 'lr.png'), '-o', str(tmp_path / 'out')]
    assert inference.main(base + ['--model_path', str(tmp_path / 'compact.safetensors')]) == 0
    assert np.abs(read(tmp_path / 'out' / 'lr_out.png').astype(int) - forward_uint8(net, image)).max() <= 1
    torch.save({'params': net.state_dict(), 'extra': WritesMarker()}, tmp_path / 'evil.pth')
    assert inference.main(base + ['--model_path', str(tmp_path / 'evil.pth')]) == 2
    assert 'refused to load' in capsys.readouterr().err
    assert not (tmp_path / 'pwned').exists()
    (tmp_path / 'a_file').write_text('')
    assert inference.main(['-i', str(tmp_path / 'lr.png'), '-o', str(tmp_path / 'a_file'), '--model_path',
                           str(tmp_path / 'compact.safetensors')]) == 2
    assert 'cannot create the output folder' in capsys.readouterr().err
