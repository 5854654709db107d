"""Out of memory on a tile: the image is retried with half the tile down to 32 px, each retry logged; then that
file fails with the message and the other files go on. The OOM is injected on the CPU by a network that raises
PyTorch's CUDA error for inputs larger than a limit."""
import logging
import os
import weakref

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import ext  # noqa: F401  (BasicSR 1.4.2 imports only after ext.compat)
from basicsr.utils.registry import ARCH_REGISTRY
from ext.inference import LoadedNetwork, Upscaler
from ext.inference.oom_retry import retry_tile_sizes
from ext.inference.tiling import TiledUpscaler, TileOutOfMemoryError
from helpers import REPO_ROOT, load_script, skimage_rgb

inference = load_script(os.path.join(REPO_ROOT, 'scripts', 'inference.py'))
RETRY_LOGGER = 'ext.inference.oom_retry'


class OutOfMemoryAbove(nn.Module):
    """x2 convolution + pixel shuffle (receptive radius 1 input pixel) that raises the CUDA out-of-memory error
    for inputs with a side over ``limit`` pixels, like a device too small for larger tiles."""

    def __init__(self, limit=40):
        super().__init__()
        torch.manual_seed(0)
        self.limit = limit
        self.conv = nn.Conv2d(3, 3 * 4, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.sides = []
        self.failed_inputs = []  # weak references to the inputs that ran out of memory
        self.alive_at_retry = []  # how many of them were still referenced when the next forward began

    def forward(self, x):
        self.sides.append(max(x.shape[-2:]))
        self.alive_at_retry.append(sum(ref() is not None for ref in self.failed_inputs))
        if max(x.shape[-2:]) > self.limit:
            self.failed_inputs.append(weakref.ref(x))
            raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 12.00 GiB')
        return torch.sigmoid(self.shuffle(self.conv(x)))


def photo_bgr(size):
    return np.ascontiguousarray(skimage_rgb('coffee')[50:50 + size, 100:100 + size, ::-1])


def upscaler(net, tile, min_size=0):
    return Upscaler(LoadedNetwork(net, 2, 3, None, min_size, True, 'OutOfMemoryAbove'), tile=tile, tile_pad=4,
                    device='cpu')


def retries(caplog):
    return [record.getMessage() for record in caplog.records if record.name == RETRY_LOGGER]


def test_retry_tile_sizes_halve_down_to_the_smallest():
    assert retry_tile_sizes(256, 1000) == [128, 64, 32]
    assert retry_tile_sizes(48, 1000) == [32]
    assert retry_tile_sizes(32, 1000) == []
    assert retry_tile_sizes(512, 200) == [100, 50, 32]  # a tile over the image is the image: halve from its size
    assert retry_tile_sizes(256, 1000, smallest=64) == [128, 64]


def test_out_of_memory_retries_with_half_the_tile_and_logs_each_retry(caplog):
    net = OutOfMemoryAbove(limit=40)  # a 32-px tile with 4 px of context on each side fits, 50 does not
    image = photo_bgr(100)
    with caplog.at_level(logging.WARNING, logger=RETRY_LOGGER):
        out = upscaler(net, tile=128).upscale(image)
    messages = retries(caplog)
    assert len(messages) == 2
    assert 'out of memory on cpu for tile 1/1' in messages[0] and 'retrying this image with tile 50' in messages[0]
    assert 'retrying this image with tile 32' in messages[1]
    reference = TiledUpscaler(OutOfMemoryAbove(limit=1000), 2, tile=0).upscale(np.ascontiguousarray(image[:, :, ::-1]))
    np.testing.assert_array_equal(out, reference[:, :, ::-1])  # the retried tiles are still seamless
    assert max(net.sides[-16:]) <= 40
    assert max(net.alive_at_retry) == 0  # a retry does not hold the failed tile's tensors (device memory on a GPU)

    caplog.clear()
    net.sides.clear()
    with caplog.at_level(logging.WARNING, logger=RETRY_LOGGER):
        upscaler(net, tile=128).upscale(image)
    assert len(retries(caplog)) == 2 and net.sides[0] > 40  # the next image starts again at the tile asked for


def test_out_of_memory_at_the_smallest_tile_fails_with_the_sizes_tried(caplog):
    net = OutOfMemoryAbove(limit=30)
    with caplog.at_level(logging.WARNING, logger=RETRY_LOGGER):
        with pytest.raises(TileOutOfMemoryError, match=r'already the smallest tile tried \(32 px\).*'
                                                       r'\(tried tile sizes 64, 32\)'):
            upscaler(net, tile=64).upscale(photo_bgr(100))
    assert len(retries(caplog)) == 1
    with pytest.raises(TileOutOfMemoryError, match=r'tried tile sizes 128, 64\)'):
        upscaler(net, tile=128, min_size=64).upscale(photo_bgr(100))  # the network's minimum size is the floor


def test_untiled_run_is_not_retried(caplog):
    """--tile 0 asks for untiled output: the error says to pass --tile instead of tiling on its own."""
    with caplog.at_level(logging.WARNING, logger=RETRY_LOGGER):
        with pytest.raises(TileOutOfMemoryError, match=r'--tile 0\); pass --tile 512 or smaller'):
            upscaler(OutOfMemoryAbove(limit=40), tile=0).upscale(photo_bgr(64))
    assert retries(caplog) == []


def test_cli_retries_and_the_file_that_still_fails_does_not_stop_the_others(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setitem(ARCH_REGISTRY._obj_map, 'OutOfMemoryAbove', OutOfMemoryAbove)
    torch.save({'params': OutOfMemoryAbove().state_dict()}, tmp_path / 'oom.pth')
    folder = tmp_path / 'in'
    folder.mkdir()
    for name, size in (('a_small', 24), ('b_large', 100), ('c_small', 30)):
        cv2.imwrite(str(folder / f'{name}.png'), photo_bgr(size))
    common = ['-i', str(folder), '--arch', 'OutOfMemoryAbove', '--model_path', str(tmp_path / 'oom.pth'),
              '--scale', '2', '--device', 'cpu', '--tile', '64', '--tile_pad', '4']
    with caplog.at_level(logging.WARNING, logger=RETRY_LOGGER):
        assert inference.main(common + ['-o', str(tmp_path / 'fits'), '--arch_args', '{"limit": 40}']) == 0
    assert [message.split('; ')[-1] for message in retries(caplog)] == ['retrying this image with tile 32']
    assert cv2.imread(str(tmp_path / 'fits' / 'b_large_out.png')).shape == (200, 200, 3)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=RETRY_LOGGER):
        assert inference.main(common + ['-o', str(tmp_path / 'small'), '--arch_args', '{"limit": 32}']) == 1
    err = capsys.readouterr().err
    assert f'{folder / "b_large.png"}: out of memory on cpu' in err and 'tried tile sizes 64, 32' in err
    assert len(retries(caplog)) == 1
    assert sorted(os.listdir(tmp_path / 'small')) == ['a_small_out.png', 'c_small_out.png']
