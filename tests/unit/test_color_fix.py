"""--color_fix: a colour-shifting network's offset is cut (wavelet, adain), tiles agree with the fix on, gray /
BGRA / 16-bit / float images keep their mode, the default changes nothing, and the tensor API validation uses
gives what inference gives."""
import os

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import ext  # noqa: F401  (BasicSR 1.4.2 imports only after ext.compat)
from basicsr.utils.registry import ARCH_REGISTRY
from ext.errors import UsageError
from ext.inference import LoadedNetwork, Upscaler
from ext.utils.color_fix import WAVELET_REACH, fix_colors, fix_image_colors
from helpers import REPO_ROOT, load_script, skimage_rgb

inference = load_script(os.path.join(REPO_ROOT, 'scripts', 'inference.py'))

# RGB gain and offset of the shifting network: warmer, as the released x4plus on portraits
GAIN = (1.06, 1.0, 0.9)
OFFSET = (0.02, 0.0, -0.01)


class ColorShiftNet(nn.Module):
    """x2: bicubic upscaling sharpened by a 3x3 convolution (radius 1 input pixel after the upscaling), then
    a per-RGB-channel gain and offset: a network whose details are right and whose colours are off."""

    def __init__(self, scale=2, in_channels=3):
        super().__init__()
        self.scale = scale
        sharpen = torch.tensor([[0., -0.25, 0.], [-0.25, 2., -0.25], [0., -0.25, 0.]])
        self.register_buffer('sharpen', sharpen.expand(in_channels, 1, 3, 3).clone())
        self.register_buffer('gain', torch.tensor(GAIN[:in_channels]).view(1, -1, 1, 1))
        self.register_buffer('offset', torch.tensor(OFFSET[:in_channels]).view(1, -1, 1, 1))

    def forward(self, x):
        up = nn.functional.interpolate(x, scale_factor=self.scale, mode='bicubic', align_corners=False)
        up = nn.functional.conv2d(nn.functional.pad(up, (1, 1, 1, 1), mode='replicate'), self.sharpen,
                                  groups=up.shape[1])
        return up * self.gain + self.offset


def upscaler(color_fix='none', tile=0, tile_pad=8, in_channels=3):
    loaded = LoadedNetwork(ColorShiftNet(in_channels=in_channels), 2, in_channels, None, 0, True, 'ColorShiftNet')
    return Upscaler(loaded, tile=tile, tile_pad=tile_pad, device='cpu', color_fix=color_fix)


def original_and_input(name='coffee', size=160):
    """A BGR photo crop and the same crop reduced x2 (area): the ground truth and the network input."""
    bgr = np.ascontiguousarray(skimage_rgb(name)[40:40 + size, 60:60 + size, ::-1])
    return bgr, cv2.resize(bgr, (size // 2, size // 2), interpolation=cv2.INTER_AREA)


def channel_offsets(image, original):
    return image.reshape(-1, image.shape[-1]).astype(np.float64).mean(0) - original.reshape(
        -1, original.shape[-1]).astype(np.float64).mean(0)


def psnr(image, original):
    return 10 * np.log10(255**2 / np.mean((image.astype(np.float64) - original) ** 2))


@pytest.mark.parametrize('mode', ['wavelet', 'adain'])
def test_color_fix_cuts_the_offset_of_a_color_shifting_network(mode):
    original, small = original_and_input()
    shifted = upscaler().upscale(small)
    fixed = upscaler(mode).upscale(small)
    before, after = channel_offsets(shifted, original), channel_offsets(fixed, original)
    assert np.abs(before).max() > 4  # red and blue are off by several gray levels
    assert np.abs(after).max() < 0.6 and np.abs(after).max() < np.abs(before).max() / 8
    assert psnr(fixed, original) > psnr(shifted, original) + 3
    assert np.abs(upscaler().upscale(small, color_fix=mode).astype(int) - fixed).max() == 0  # per call = per upscaler
    resized = upscaler(mode).upscale(small, outscale=3)  # fixed at the network scale, then resized
    np.testing.assert_array_equal(resized, cv2.resize(fixed, (240, 240), interpolation=cv2.INTER_LANCZOS4))


@pytest.mark.parametrize('mode', ['none', 'wavelet', 'adain'])
def test_tiles_agree_with_the_color_fix_on(mode):
    """The fix runs on the whole image after tiling: tiled output equals untiled as without the fix."""
    _, small = original_and_input(size=150)
    untiled = upscaler(mode).upscale(small).astype(int)
    for tile in (16, 32):
        tiled = upscaler(mode, tile=tile, tile_pad=4).upscale(small).astype(int)
        assert np.abs(tiled - untiled).max() == 0


@pytest.mark.parametrize('mode', ['wavelet', 'adain'])
def test_strips_of_the_image_fix_give_the_whole_image_fix(mode):
    """Host memory stays bounded by fixing in row strips; the strips read enough context to be exact."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    output = cv2.resize(image, (92, 148), interpolation=cv2.INTER_NEAREST)
    whole = fix_image_colors(output, image, mode, strip_rows=1000)
    for strip_rows in (1, 5, WAVELET_REACH // 4):
        np.testing.assert_array_equal(fix_image_colors(output, image, mode, strip_rows=strip_rows), whole)


@pytest.mark.parametrize('mode', ['wavelet', 'adain'])
def test_gray_bgra_16_bit_and_float_images_keep_their_mode(mode):
    original, small = original_and_input(size=192)  # the network input: 96 x 96
    gray_net = upscaler(mode, in_channels=1)  # a 1-channel network gets gray as it is
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    out = gray_net.upscale(gray)
    assert out.shape == (192, 192) and out.dtype == np.uint8
    gray_truth = cv2.cvtColor(original, cv2.COLOR_BGR2GRAY)[:, :, None]
    shifted = upscaler(in_channels=1).upscale(gray)
    assert abs(channel_offsets(out[:, :, None], gray_truth)[0]) < abs(channel_offsets(shifted[:, :, None],
                                                                                      gray_truth)[0]) / 4
    color_out = upscaler(mode).upscale(gray)  # a 3-channel network gets gray as RGB and gives gray back
    assert color_out.shape == (192, 192) and color_out.dtype == np.uint8

    alpha = np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (96, 1))
    bgra = np.dstack([small, alpha])
    plain, fixed = upscaler().upscale(bgra), upscaler(mode).upscale(bgra)
    assert fixed.shape == (192, 192, 4)
    np.testing.assert_array_equal(fixed[:, :, 3], plain[:, :, 3])  # alpha is coverage: not color-fixed
    np.testing.assert_array_equal(fixed[:, :, :3], upscaler(mode).upscale(small))

    deep = upscaler(mode).upscale(small.astype(np.uint16) * 257)
    assert deep.dtype == np.uint16 and deep.max() > 255
    eight_bit = upscaler(mode).upscale(small)
    # the same up to the 8-bit rounding of the network output before the fix (scaled by adain's gain)
    assert np.abs(deep / 257 - eight_bit).max() < 1.5
    real = upscaler(mode).upscale(small.astype(np.float32) / 255)
    assert real.dtype == np.float32 and 0 <= real.min() and real.max() <= 1
    assert np.abs(real * 255 - eight_bit).max() < 1.5


def test_the_default_is_no_fix():
    _, small = original_and_input(size=64)
    default = Upscaler(LoadedNetwork(ColorShiftNet(), 2, 3, None, 0, True, 'ColorShiftNet'), device='cpu')
    assert default.color_fix == 'none'
    net = ColorShiftNet()
    x = torch.from_numpy(small[:, :, ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = np.round(net(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255)
    np.testing.assert_array_equal(default.upscale(small), expected)
    assert fix_colors(x, x, 'none') is x
    assert inference.build_parser().parse_args(['-i', 'x']).color_fix == 'none'
    with pytest.raises(UsageError, match='color_fix must be one of none, wavelet, adain'):
        upscaler('histogram')


@pytest.mark.parametrize('mode', ['wavelet', 'adain'])
def test_tensor_api_for_validation_matches_inference(mode):
    """What a training model's validation calls on (N, C, H, W) tensors gives what inference writes."""
    _, small = original_and_input(size=64)
    net = ColorShiftNet()
    lq = torch.from_numpy(np.ascontiguousarray(small[:, :, ::-1]).astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        sr = net(lq).clamp(0, 1)
    fixed = fix_colors(sr, lq, mode)
    assert fixed.shape == sr.shape and fixed.dtype == sr.dtype and 0 <= fixed.min() and fixed.max() <= 1
    assert torch.equal(fix_colors(sr[0], lq[0], mode), fixed[0])  # (C, H, W) as well
    batch = fix_colors(torch.cat([sr, sr.flip(-1)]), torch.cat([lq, lq.flip(-1)]), mode)
    assert torch.allclose(batch[:1], fixed, atol=1e-6)  # statistics are per image
    written = upscaler(mode).upscale(small)[:, :, ::-1].astype(int)
    assert np.abs(np.round(fixed[0].permute(1, 2, 0).numpy() * 255) - written).max() <= 1


def test_cli_color_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(ARCH_REGISTRY._obj_map, 'ColorShiftNet', ColorShiftNet)
    torch.save({'params': ColorShiftNet().state_dict()}, tmp_path / 'shift.pth')
    original, small = original_and_input()
    cv2.imwrite(str(tmp_path / 'photo.png'), small)
    offsets = {}
    for mode in ('none', 'wavelet', 'adain'):
        out = tmp_path / mode
        assert inference.main(['-i', str(tmp_path / 'photo.png'), '-o', str(out), '--arch', 'ColorShiftNet',
                               '--model_path', str(tmp_path / 'shift.pth'), '--scale', '2', '--device', 'cpu',
                               '--tile', '48', '--color_fix', mode]) == 0
        offsets[mode] = np.abs(channel_offsets(cv2.imread(str(out / 'photo_out.png')), original)).max()
    assert offsets['wavelet'] < offsets['none'] / 8 and offsets['adain'] < offsets['none'] / 8
    with pytest.raises(SystemExit):
        inference.build_parser().parse_args(['-i', 'x', '--color_fix', 'histogram'])
