"""ext.inference.streamed_tail: RRDBNet-style networks run their upsampled layers in strips, with the output of
the whole forward (max difference <= 1e-5 in fp32), no tensor of the whole upsampled tile with many channels, and
the Upscaler streams by default."""
import numpy as np
import pytest
import torch
from torch import nn

import ext  # noqa: F401  (BasicSR 1.4.2 imports only after ext.compat)
from basicsr.archs.rrdbnet_arch import RRDBNet
from basicsr.archs.srvgg_arch import SRVGGNetCompact
from ext.archs.esrgan_rrdbnet_arch import ESRGANRRDBNet
from ext.inference import LoadedNetwork, Upscaler
from ext.inference.streamed_tail import StreamedTailNetwork, find_tail, run_in_strips, wrap_streamed_tail
from helpers import skimage_rgb

SMALL = dict(num_feat=16, num_block=1, num_grow_ch=8)
STRIP_PIXELS = 16  # the smallest strips (16 rows): many cuts even on small inputs


def spandrel_esrgan(shuffle_factor=None):
    from spandrel.architectures.ESRGAN import ESRGAN
    factor = shuffle_factor or 1
    return ESRGAN(in_nc=3 * factor * factor, num_filters=16, num_blocks=1, scale=4, shuffle_factor=shuffle_factor)


NETWORKS = {
    'RRDBNet x4 (x4plus, A-ESRGAN)': (lambda: RRDBNet(3, 3, scale=4, **SMALL), (21, 30)),
    'RRDBNet x2': (lambda: RRDBNet(3, 3, scale=2, **SMALL), (22, 30)),
    'RRDBNet x1': (lambda: RRDBNet(3, 3, scale=1, **SMALL), (40, 28)),
    'ESRGANRRDBNet nearest': (lambda: ESRGANRRDBNet(3, 3, **SMALL), (21, 30)),
    'ESRGANRRDBNet pixelshuffle': (lambda: ESRGANRRDBNet(3, 3, upsampler='pixelshuffle', **SMALL), (21, 30)),
    'spandrel ESRGAN x4': (spandrel_esrgan, (21, 30)),
    'spandrel ESRGAN x2 file (shuffle_factor 2)': (lambda: spandrel_esrgan(2), (21, 30)),
}


@pytest.mark.parametrize('name', NETWORKS)
def test_streamed_forward_equals_the_whole_forward(name):
    make, (height, width) = NETWORKS[name]
    torch.manual_seed(0)
    net = make().eval()
    streamed = wrap_streamed_tail(net, strip_pixels=STRIP_PIXELS)
    assert isinstance(streamed, StreamedTailNetwork), name
    photo = skimage_rgb('astronaut')[60:60 + height, 180:180 + width].astype(np.float32) / 255
    for batch in (torch.from_numpy(photo).permute(2, 0, 1)[None].contiguous(), torch.rand(2, 3, height, width)):
        with torch.inference_mode():
            whole, strips = net(batch), streamed(batch)
        assert strips.shape == whole.shape
        assert (strips - whole).abs().max().item() <= 1e-5


def test_no_tensor_of_the_whole_upsampled_tile_exists():
    """Every output of the upsampled layers holds at most a strip and its context rows, never the whole tile."""
    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=4, **SMALL).eval()
    plan = find_tail(net)
    heights = []
    hooks = [module.register_forward_hook(lambda module, inputs, output: heights.append(output.shape[-2]))
             for module in (net.conv_up1, net.conv_up2, net.conv_hr)]
    x = torch.rand(1, 3, 64, 40)
    with torch.inference_mode():
        run_in_strips(plan.layers, plan.head(x), strip_pixels=32 * 160)  # 32 output rows of 160 columns
    for hook in hooks:
        hook.remove()
    assert len(heights) == 3 * 8  # 256 output rows in 8 strips
    assert max(heights) <= 32 + 8 < 4 * 64  # a strip, the rows its convolutions need and one of rounding


def test_networks_it_does_not_know_run_as_they_are():
    class CustomForward(RRDBNet):
        def forward(self, x):  # a changed forward: the structure can no longer be trusted
            return super().forward(x) * 0.5

    torch.manual_seed(0)
    for net in (CustomForward(3, 3, **SMALL), SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4),
                nn.Sequential(nn.Conv2d(3, 3, 3, padding=1))):
        assert find_tail(net) is None and wrap_streamed_tail(net) is None
    with pytest.raises(ValueError, match='row by row'):
        run_in_strips([nn.Conv2d(3, 3, 3, stride=2, padding=1)], torch.rand(1, 3, 8, 8))
    assert wrap_streamed_tail(wrap_streamed_tail(RRDBNet(3, 3, **SMALL))) is None  # never wrapped twice


def test_upscaler_streams_by_default_with_the_same_output():
    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=4, **SMALL).eval()
    image = np.ascontiguousarray(skimage_rgb('chelsea')[50:90, 100:148, ::-1])

    def upscaler(**options):
        return Upscaler(LoadedNetwork(net, 4, 3, None, 0, True, 'RRDBNet'), tile=24, tile_pad=6, device='cpu',
                        **options)

    streamed, whole = upscaler(), upscaler(stream_tail=False)
    assert streamed.streamed_tail == 'RRDBNet (conv_up1 to conv_last)' and whole.streamed_tail is None
    assert isinstance(streamed.tiler.net, StreamedTailNetwork) and streamed.net is net
    difference = np.abs(streamed.upscale(image).astype(int) - whole.upscale(image).astype(int))
    assert difference.max() <= 1  # float rounding may flip an 8-bit rounding
    assert (difference > 0).mean() < 1e-3


def test_streaming_in_bf16_and_channels_last():
    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=4, **SMALL).eval()
    x = torch.rand(1, 3, 20, 24)
    with torch.inference_mode():
        reference = net(x)
        net_cl = net.to(memory_format=torch.channels_last)
        streamed = wrap_streamed_tail(net_cl, strip_pixels=STRIP_PIXELS)(x)
        assert (streamed - reference).abs().max().item() <= 1e-4  # other kernels, other rounding
        net_bf16 = net_cl.to(torch.bfloat16)
        whole, strips = net_bf16(x.bfloat16()), wrap_streamed_tail(net_bf16, strip_pixels=STRIP_PIXELS)(x.bfloat16())
    assert strips.dtype == torch.bfloat16
    assert (strips.float() - whole.float()).abs().max().item() <= 2 / 255  # bf16 keeps 8 bits of mantissa
