"""ext.inference.tiling: seamless tiles, one padded tile at a time on the device, image modes, OOM; the
Upscaler keeps no per-image state (reentrant with references)."""
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from ext.inference.tiling import TiledUpscaler, TileOutOfMemoryError, plan_tiles, reflect_indices, upscale_image
from helpers import skimage_rgb


class ConvShuffleNet(nn.Module):
    """Three 3x3 convs (receptive radius 3 input pixels) and a pixel shuffle; x1 uses a pixel unshuffle first."""

    def __init__(self, scale, channels=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.scale = scale
        unshuffle = 4 if scale == 1 else 1
        inner = channels * unshuffle * unshuffle
        self.unshuffle = nn.PixelUnshuffle(unshuffle) if unshuffle > 1 else nn.Identity()
        self.body = nn.Sequential(nn.Conv2d(inner, 12, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(12, 12, 3, 1, 1),
                                  nn.LeakyReLU(0.2), nn.Conv2d(12, channels * (scale * unshuffle) ** 2, 3, 1, 1),
                                  nn.PixelShuffle(scale * unshuffle))

    def forward(self, x):
        return torch.sigmoid(self.body(self.unshuffle(x)))


class RecordingNet(nn.Module):
    """Wraps a network and records the shape and device of every input it is given."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self.inner(x)


class ChannelGainNet(nn.Module):
    """Nearest x``scale`` upsampling times a per-RGB-channel gain: shows channel order and depth handling."""

    def __init__(self, scale=2, gains=(1.0, 0.5, 0.25)):
        super().__init__()
        self.scale = scale
        self.register_buffer('gains', torch.tensor(gains).view(1, -1, 1, 1))

    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=self.scale, mode='nearest') * self.gains


def photo(height, width, name='astronaut'):
    image = skimage_rgb(name)
    return np.ascontiguousarray(image[120:120 + height, 180:180 + width])


@pytest.mark.parametrize('scale,tile,tile_pad,pre_pad,multiple', [
    (4, 16, 3, 0, 1),
    (2, 23, 5, 3, 2),   # tile not a multiple of anything, pre-padding
    (1, 20, 16, 0, 4),  # pixel unshuffle by 4: radius 3 convs at 1/4 resolution = 12+3 px
])
def test_tiled_equals_untiled_inside_the_image(scale, tile, tile_pad, pre_pad, multiple):
    net = ConvShuffleNet(scale).eval()
    image = photo(45, 61).astype(np.float32) / 255
    untiled = TiledUpscaler(net, scale, tile=0, pre_pad=pre_pad, size_multiple=multiple).upscale(image)
    recorder = RecordingNet(net)
    tiled = TiledUpscaler(recorder, scale, tile=tile, tile_pad=tile_pad, pre_pad=pre_pad,
                          size_multiple=multiple).upscale(image)
    assert len(recorder.shapes) > 4
    assert tiled.shape == untiled.shape == (45 * scale, 61 * scale, 3)
    np.testing.assert_allclose(tiled, untiled, rtol=0, atol=1e-5)


def test_too_little_context_shows_seams():
    """The equality above is not vacuous: with tile_pad below the receptive radius the tiles differ."""
    net = ConvShuffleNet(2).eval()
    image = photo(40, 40).astype(np.float32) / 255
    untiled = TiledUpscaler(net, 2, tile=0).upscale(image)
    tiled = TiledUpscaler(net, 2, tile=16, tile_pad=1).upscale(image)
    assert np.abs(tiled - untiled).max() > 1e-3


def test_device_sees_one_padded_tile_at_a_time():
    net = RecordingNet(ConvShuffleNet(2).eval())
    image = photo(120, 90)
    tile, pad = 32, 8
    output = TiledUpscaler(net, 2, tile=tile, tile_pad=pad).upscale(image)
    assert isinstance(output, np.ndarray) and output.dtype == np.uint8 and output.shape == (240, 180, 3)
    assert len(net.shapes) == 4 * 3
    assert max(h for _, _, h, _ in net.shapes) <= tile + 2 * pad
    assert max(w for _, _, _, w in net.shapes) <= tile + 2 * pad


def test_tiles_partition_the_image_and_windows_stay_aligned():
    padded_h, padded_w, tiles = plan_tiles(50, 37, tile=12, tile_pad=5, pre_pad=3, size_multiple=4)
    assert (padded_h, padded_w) == (56, 40)
    covered = np.zeros((50, 37), dtype=int)
    for (top, bottom, left, right), (w_top, w_bottom, w_left, w_right) in tiles:
        covered[top:bottom, left:right] += 1
        assert w_top <= max(top - 5, 0) and w_bottom >= min(bottom + 5, padded_h)
        assert w_top % 4 == 0 and w_bottom % 4 == 0 and w_left % 4 == 0 and w_right % 4 == 0
        assert w_bottom <= padded_h and w_right <= padded_w
    assert (covered == 1).all()
    np.testing.assert_array_equal(reflect_indices(3, 9, 5), np.pad(np.arange(5), (0, 4), mode='reflect')[3:9])


class OutOfMemoryAbove(nn.Module):
    """Raises the CUDA OOM error PyTorch raises when an input is larger than ``limit`` pixels per side."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit
        self.inner = ConvShuffleNet(2).eval()

    def forward(self, x):
        if max(x.shape[-2:]) > self.limit:
            raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 20.00 GiB')
        return self.inner(x)


def test_out_of_memory_on_a_tile_suggests_a_smaller_tile():
    image = photo(90, 90)
    with pytest.raises(TileOutOfMemoryError, match=r'tile 1/1 .*--tile 0.*--tile 512 or smaller'):
        TiledUpscaler(OutOfMemoryAbove(64), 2, tile=0).upscale(image)
    with pytest.raises(TileOutOfMemoryError, match=r'tile 1/4 \(input rows 0:58.*smaller --tile than 48 \(e.g. 32\)'):
        TiledUpscaler(OutOfMemoryAbove(50), 2, tile=48, tile_pad=10).upscale(image)
    output = TiledUpscaler(OutOfMemoryAbove(64), 2, tile=32, tile_pad=10).upscale(image)
    assert output.shape == (180, 180, 3)


def expected_channel_gain(image_bgr, scale, gains_rgb=(1.0, 0.5, 0.25)):
    up = cv2.resize(image_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST).astype(np.float64)
    gains_bgr = np.array(gains_rgb[::-1])
    return up * gains_bgr


@pytest.mark.parametrize('dtype', [np.uint8, np.uint16])
def test_color_modes_keep_channel_order_and_depth(dtype):
    rgb = photo(20, 24)
    bgr = rgb[:, :, ::-1].astype(dtype) * (257 if dtype == np.uint16 else 1)
    upscaler = TiledUpscaler(ChannelGainNet(2), 2, tile=8, tile_pad=2)
    out = upscale_image(upscaler, bgr)
    assert out.dtype == dtype and out.shape == (40, 48, 3)
    np.testing.assert_allclose(out, expected_channel_gain(bgr, 2), atol=0.51)
    # 16-bit samples keep their low byte: no round trip through 8 bits
    if dtype == np.uint16:
        assert (out % 257 != 0).any()


@pytest.mark.parametrize('dtype', [np.uint8, np.uint16])
def test_gray_image_through_a_color_network_comes_back_gray(dtype):
    gray = cv2.cvtColor(photo(20, 24), cv2.COLOR_RGB2GRAY).astype(dtype) * (257 if dtype == np.uint16 else 1)
    out = upscale_image(TiledUpscaler(ChannelGainNet(2, gains=(1.0, 1.0, 1.0)), 2, tile=8, tile_pad=2), gray)
    assert out.dtype == dtype and out.shape == (40, 48)
    np.testing.assert_allclose(out, cv2.resize(gray, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST), atol=1)


def test_rgba_alpha_is_upscaled_by_the_network_or_resized():
    rgb = photo(16, 20)
    alpha = np.tile(np.linspace(0, 255, 20).astype(np.uint8), (16, 1))
    bgra = np.dstack([rgb[:, :, ::-1], alpha])
    upscaler = TiledUpscaler(ChannelGainNet(2, gains=(1.0, 1.0, 1.0)), 2, tile=8, tile_pad=2)
    by_network = upscale_image(upscaler, bgra, alpha_upsampler='network')
    assert by_network.shape == (32, 40, 4) and by_network.dtype == np.uint8
    np.testing.assert_array_equal(by_network[:, :, 3], cv2.resize(alpha, None, fx=2, fy=2,
                                                                   interpolation=cv2.INTER_NEAREST))
    resized = upscale_image(upscaler, bgra, alpha_upsampler='resize')
    np.testing.assert_array_equal(resized[:, :, 3], cv2.resize(alpha, (40, 32), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_array_equal(resized[:, :, :3], by_network[:, :, :3])


def test_single_channel_network_runs_each_color_channel():
    bgr = photo(16, 16)[:, :, ::-1].copy()
    net = ChannelGainNet(2, gains=(0.5, ))
    out = upscale_image(TiledUpscaler(net, 2), bgr, in_channels=1)
    up = cv2.resize(bgr, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    np.testing.assert_allclose(out, up * 0.5, atol=0.51)


def test_outscale_resizes_after_the_network():
    out = upscale_image(TiledUpscaler(ChannelGainNet(4), 4, tile=10), photo(20, 30), outscale=2.5)
    assert out.shape == (50, 75, 3)


class ReferenceNet(nn.Module):
    """A reference-based toy: adds the mean color of the whole reference to an upscaled input."""

    def __init__(self):
        super().__init__()
        self.seen_refs = []

    def forward(self, lq, ref, lq_up=None, ref_down_up=None):
        self.seen_refs.append(tuple(ref.shape))
        return nn.functional.interpolate(lq, scale_factor=2, mode='nearest') * 0.5 + ref.mean((2, 3), keepdim=True)


def test_reference_is_passed_whole_with_every_tile():
    ref = torch.rand(1, 3, 24, 28)
    image = photo(30, 30).astype(np.float32) / 255
    net = ReferenceNet()
    tiled = TiledUpscaler(net, 2, tile=10, tile_pad=2).upscale(image, extra_inputs={'ref': ref})
    assert net.seen_refs == [(1, 3, 24, 28)] * 9
    untiled = TiledUpscaler(net, 2).upscale(image, extra_inputs={'ref': ref})
    np.testing.assert_allclose(tiled, untiled, atol=1e-6)


def test_network_with_the_wrong_scale_is_a_clear_error():
    with pytest.raises(ValueError, match=r'expected \(1, C, 40, 40\) for scale 4.*--scale'):
        TiledUpscaler(ChannelGainNet(2), 4).upscale(photo(10, 10))


class DoubleMinusOnce(nn.Module):
    """Nearest x2 computed as 2*up - up: an infinite input turns into NaN, as in a real convolution stack."""

    def forward(self, x):
        up = nn.functional.interpolate(x, scale_factor=2, mode='nearest')
        return 2 * up - up


def test_half_precision_tiles_keep_16_bit_values():
    """16-bit samples are normalised before the cast: float16 cannot hold values above 65504."""
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    image = np.full((8, 8, 3), 65535, dtype=np.uint16)
    image[:4] = 1000
    upscaler = TiledUpscaler(DoubleMinusOnce(), 2, tile=4, tile_pad=2, device=device, dtype=torch.float16)
    out = upscaler.upscale(image)
    assert out[8:].min() == 65535 and out[8:].max() == 65535
    assert np.abs(out[:8].astype(int) - 1000).max() <= 1


class LongReachNet(nn.Module):
    """x2 network whose output depends on pixels ~24 px away (12 dilated-by-2 3x3 convs with residuals), so a
    fixed 10-px tile padding shows seams, as trained RRDBNets do (random RRDBNets barely reach a few pixels)."""

    def __init__(self, seed=0, layers=12):
        super().__init__()
        torch.manual_seed(seed)
        self.head = nn.Conv2d(3, 16, 3, 1, 1)
        self.body = nn.ModuleList(nn.Conv2d(16, 16, 3, 1, 2, dilation=2) for _ in range(layers))
        self.tail = nn.Sequential(nn.Conv2d(16, 12, 3, 1, 1), nn.PixelShuffle(2))
        for conv in self.body:
            nn.init.normal_(conv.weight, std=1 / 12)
            nn.init.constant_(conv.bias, 0.05)

    def forward(self, x):
        feat = self.head(x)
        for conv in self.body:
            feat = feat + nn.functional.leaky_relu(conv(feat), 0.2)
        return torch.sigmoid(self.tail(feat))


def test_measured_tile_pad_removes_the_seams_a_fixed_pad_leaves():
    from ext.inference.tile_pad import border_error_profile, measure_tile_pad
    net = LongReachNet().eval()
    image = photo(100, 140)
    untiled = TiledUpscaler(net, 2, tile=0).upscale(image).astype(int)
    fixed = TiledUpscaler(net, 2, tile=64, tile_pad=10).upscale(image).astype(int)
    assert np.abs(fixed - untiled).max() > 2  # Real-ESRGAN's default padding leaves seams on this network
    errors = border_error_profile(net, 2, 128)
    pad = measure_tile_pad(net, 2)
    assert 10 < pad <= 64 and errors[pad:].max() <= 0.5 / 255 < errors[pad - 1]
    for tile in (64, 80):
        tiled = TiledUpscaler(net, 2, tile=tile, tile_pad=pad).upscale(image).astype(int)
        assert np.abs(tiled - untiled).max() <= 2


def test_rrdbnet_with_the_default_automatic_pad_matches_untiled():
    """The default tile_pad='auto' of load_upscaler on an RRDBNet (random, small: see the README's table for the
    released x4plus weights) keeps tiled output within 2 gray levels of untiled at tile 64."""
    from basicsr.archs.rrdbnet_arch import RRDBNet

    from ext.inference import load_upscaler
    from ext.utils.checkpoint import save_network_file
    import tempfile
    torch.manual_seed(0)
    options = {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 16, 'num_block': 2, 'num_grow_ch': 8}
    net = RRDBNet(3, 3, num_feat=16, num_block=2, num_grow_ch=8).eval()
    with tempfile.TemporaryDirectory() as folder:
        path = save_network_file({'params': net.state_dict()}, f'{folder}/net_g.pth',
                                 network_options={'network': options, 'scale': 4})
        upscaler = load_upscaler(path, tile=64, device='cpu')
    assert upscaler.tile_pad_source.startswith('measured') and upscaler.tiler.tile_pad >= 1
    image = photo(80, 100)[:, :, ::-1]
    tiled = upscaler.upscale(image).astype(int)
    untiled = TiledUpscaler(net, 4, tile=0).upscale(np.ascontiguousarray(image[:, :, ::-1]))[:, :, ::-1].astype(int)
    assert np.abs(tiled - untiled).max() <= 2


class Lockstep(nn.Module):
    """A reference-based network whose forward waits for the other thread's: two upscale calls run their tiles
    in turn, so a reference kept on a shared object between tiles would reach the other call's tiles."""

    def __init__(self, inner, parties=2):
        super().__init__()
        self.inner = inner
        self.barrier = threading.Barrier(parties, timeout=60)

    def forward(self, lq, ref, lq_up=None, ref_down_up=None):
        self.barrier.wait()
        return self.inner(lq, ref)


def test_upscale_is_reentrant_with_two_references():
    """Two calls with different references, nested (one inside the other's progress callback) and from two
    threads in lockstep, each give what the call alone gives."""
    from ext.archs.ttsr_net_arch import TTSRNet
    from ext.inference import LoadedNetwork, Upscaler
    torch.manual_seed(0)
    ttsr = TTSRNet(mid_channels=8, num_blocks=(1, 1, 1, 1), load_pretrained_vgg=False).eval()
    lq = np.ascontiguousarray(photo(16, 16)[:, :, ::-1]).astype(np.float32) / 255
    refs = [np.ascontiguousarray(skimage_rgb(name)[100:132, 100:132, ::-1]) for name in ('coffee', 'chelsea')]

    def upscaler(net):
        return Upscaler(LoadedNetwork(net, 4, 3, None, 0, True, 'TTSRNet'), tile=8, tile_pad=4, device='cpu')

    plain = upscaler(ttsr)
    alone = [plain.upscale(lq, ref=ref) for ref in refs]
    assert np.abs(alone[0] - alone[1]).max() > 1e-3  # the reference matters

    nested = []

    def progress(done, total):
        if done == 1:  # the second call runs whole between the first call's first and second tiles
            nested.append(plain.upscale(lq, ref=refs[1]))

    first = plain.upscale(lq, ref=refs[0], progress=progress)
    np.testing.assert_allclose(first, alone[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(nested[0], alone[1], rtol=0, atol=1e-6)

    shared = upscaler(Lockstep(ttsr))
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = list(pool.map(lambda ref: shared.upscale(lq, ref=ref), refs))
    for got, expected in zip(threaded, alone):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
