"""--tile_pad auto on the released Real-ESRGAN x4plus (converted from the installed ncnn package): tiled output
stays within 2 gray levels of untiled at tiles 64 and 128 on bundled photos of kinds the auto probe does not
contain (a cat's fur, a cup of coffee, a rocket on its launch tower).

x4plus takes seconds per 64 x 64 px on two CPU cores, so the photos are three 16-row strips of 160 px, stacked:
the tiles of 64 and 128 columns cut them where the padding matters, on both sides of each cut. The measurement
of ``auto`` itself (three passes of 96 x 256 px) is most of the time."""
import cv2
import numpy as np
import pytest
import torch

from ext.inference import LoadedNetwork, Upscaler
from ext.inference.tile_pad import MOSAIC_STRIPS
from ext.inference.tiling import TiledUpscaler, plan_tiles
from helpers import released_x4plus, skimage_rgb

# (sample, first row) of the photo reduced x2: none of them is in the auto probe
STRIPS = (('chelsea', 44), ('coffee', 84), ('rocket', 68))


def photo_strips(width=160, rows=16):
    strips = []
    for name, top in STRIPS:
        photo = skimage_rgb(name)
        half = cv2.resize(photo, (photo.shape[1] // 2, photo.shape[0] // 2), interpolation=cv2.INTER_AREA)
        strips.append(half[top:top + rows, :width])
    return np.ascontiguousarray(np.concatenate(strips))


@pytest.fixture(scope='module')
def x4plus():
    return LoadedNetwork(released_x4plus(), 4, 3, None, 0, True, 'RealESRGAN_x4plus')


@pytest.mark.slow(35)
def test_automatic_pad_keeps_the_released_x4plus_seam_free_at_tiles_64_and_128(x4plus):
    assert not {name for name, _ in STRIPS} & {name for name, _ in MOSAIC_STRIPS}
    image = photo_strips()
    with torch.backends.mkldnn.flags(enabled=True):  # conftest turns oneDNN off; these few large shapes want it
        upscaler = Upscaler(x4plus, tile=64, tile_pad='auto', device='cpu')
        assert upscaler.tile_pad_source.startswith('measured')
        pad = upscaler.tiler.tile_pad
        assert 64 < pad < 128  # the previous probe took 48, which left 7 gray levels on a photo
        untiled = TiledUpscaler(x4plus.net, 4, tile=0).upscale(image).astype(int)
        for tile in (64, 128):
            windows = [window for _, window in plan_tiles(*image.shape[:2], tile, pad)[2]]
            assert any(right - left < image.shape[1] for _, _, left, right in windows)  # the padding is cut
            tiled = TiledUpscaler(x4plus.net, 4, tile=tile, tile_pad=pad).upscale(image).astype(int)
            assert np.abs(tiled - untiled).max() <= 2, (tile, pad)
