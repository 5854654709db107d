"""Session fixtures shared by the test suite (CPU only, everything generated locally)."""
import os
import os.path as osp

import pytest
import torch

import ext

ext.activate()  # the BasicSR fixes and every component, for the in-process tests

os.environ.setdefault('OPENCV_LOG_LEVEL', 'ERROR')
torch.set_num_threads(1 if os.environ.get('PYTEST_XDIST_WORKER') else min(2, os.cpu_count() or 1))
# oneDNN generates kernels for every new shape (seconds each in tests with many tiny shapes); the native
# CPU kernels do not. Only this process: training runs in subprocesses keep PyTorch's defaults.
torch.backends.mkldnn.enabled = False


def pytest_configure(config):
    """Under pytest-xdist, hand tests out one at a time (``--maxschedchunk 1``) unless the command line says
    otherwise. xdist's default first gives each worker a block of consecutive tests (a quarter of the suite
    each): with the longest-first order below, one worker got every slow test and ran 235 s after the other
    had finished (a 642 s suite measured, worker ends 641 s and 406 s)."""
    if getattr(config.option, 'maxschedchunk', 0) is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(config, items):
    """Longest first: tests marked ``slow`` start before the rest, the ones with the largest ``slow(seconds)``
    first, so that with ``-n 2`` no long test is left to run alone at the end (the order is deterministic, as
    xdist requires of every worker's collection)."""
    def expected_seconds(item):
        marker = item.get_closest_marker('slow')
        return 0 if marker is None else (marker.args[0] if marker.args else 20)
    items.sort(key=lambda item: -expected_seconds(item))  # stable: otherwise the collection order


@pytest.fixture(scope='session')
def vgg19_weights(tmp_path_factory):
    """A randomly initialised torchvision VGG19 state dict saved under torchvision's file name.

    Stands in for the ImageNet weights, which are never downloaded: the loading code is the real one.
    """
    import torchvision
    folder = tmp_path_factory.mktemp('pretrained')
    path = osp.join(folder, 'vgg19-dcbb9e9d.pth')
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg19(weights=None).state_dict(), path)
    return path


@pytest.fixture
def vgg19_env(vgg19_weights, monkeypatch):
    """Point this process and its subprocesses at :func:`vgg19_weights` through the environment."""
    from ext.utils.pretrained import VGG_WEIGHTS_ENV
    monkeypatch.setenv(VGG_WEIGHTS_ENV, vgg19_weights)
    return {VGG_WEIGHTS_ENV: vgg19_weights}
