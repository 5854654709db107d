"""ext.registry: one decorator, both hosts; module discovery by file suffix; clear name clashes."""
import importlib
import sys

import pytest
import torch
from mmengine.registry import DATASETS as ROOT_DATASETS
from mmengine.registry import MODELS as ROOT_MODELS

import ext
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY
from ext import registry
from ext.registry import RegistryConflictError, register


@pytest.fixture
def scratch_names():
    """Names registered by a test are removed afterwards, from both hosts."""
    names = []
    yield names
    for kind, name in names:
        basicsr_registry, mmengine_registry = registry.KINDS[kind]
        basicsr_registry._obj_map.pop(name, None)
        mmengine_registry._module_dict.pop(name, None)
        registry.REGISTERED.pop((kind, name), None)


def _write_package(tmp_path, package, files):
    root = tmp_path / package
    root.mkdir()
    (root / '__init__.py').write_text('')
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent != root and not (path.parent / '__init__.py').exists():
            (path.parent / '__init__.py').write_text('')
        path.write_text(text)
    sys.path.insert(0, str(tmp_path))
    return root


ARCH_MODULE = '''
import torch
from ext.registry import register

@register(aliases=('tiny_upstream_name',))
class ScratchTinyNet(torch.nn.Module):
    """A two-layer test network."""

    def __init__(self, num_feat=4):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, num_feat, 3, padding=1)

    def forward(self, x):
        return self.conv(x)
'''

LOSS_MODULE = '''
import torch
from ext.registry import register

@register()
class ScratchL2Loss(torch.nn.Module):
    def __init__(self, loss_weight=1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred, target):
        return self.loss_weight * ((pred - target) ** 2).mean()
'''

DATASET_MODULE = '''
from torch.utils.data import Dataset
from ext.registry import register

@register()
class ScratchDataset(Dataset):
    def __init__(self, opt):
        self.opt = opt

    def __len__(self):
        return 3
'''


def test_component_files_are_discovered_by_suffix_and_registered_in_both_hosts(tmp_path, scratch_names):
    scratch_names += [('arch', 'ScratchTinyNet'), ('arch', 'tiny_upstream_name'), ('loss', 'ScratchL2Loss'),
                      ('dataset', 'ScratchDataset')]
    root = _write_package(tmp_path, 'scratch_plugin', {
        'archs/tiny_arch.py': ARCH_MODULE,
        'losses/scratch_l2_loss.py': LOSS_MODULE,
        'data/scratch_dataset.py': DATASET_MODULE,
        'archs/not_a_component.py': 'raise RuntimeError("must not be imported")',
    })
    try:
        names = ext.component_modules(str(root), 'scratch_plugin')
        assert names == ['scratch_plugin.archs.tiny_arch', 'scratch_plugin.data.scratch_dataset',
                         'scratch_plugin.losses.scratch_l2_loss']
        ext.import_components(str(root), 'scratch_plugin')
    finally:
        sys.path.remove(str(tmp_path))

    net_class = ARCH_REGISTRY.get('ScratchTinyNet')
    assert ARCH_REGISTRY.get('tiny_upstream_name') is net_class
    assert LOSS_REGISTRY.get('ScratchL2Loss').__name__ == 'ScratchL2Loss'
    assert DATASET_REGISTRY.get('ScratchDataset').__name__ == 'ScratchDataset'
    # MMEngine: through ext's child registry and through the root registry with the scope prefix.
    net = registry.MODELS.build(dict(type='ScratchTinyNet', num_feat=5))
    assert isinstance(net, net_class) and net.conv.out_channels == 5
    assert isinstance(ROOT_MODELS.build(dict(type='ext.tiny_upstream_name')), net_class)
    assert ROOT_MODELS.build(dict(type='ext.ScratchL2Loss', loss_weight=2.0))(torch.ones(1), torch.zeros(1)) == 2
    assert len(ROOT_DATASETS.build(dict(type='ext.ScratchDataset', opt={}))) == 3


def test_a_name_taken_by_basicsr_fails_with_a_clear_message(scratch_names):
    scratch_names.append(('arch', 'FreshName'))
    with pytest.raises(RegistryConflictError) as error:

        @register('arch', aliases=('FreshName', 'RRDBNet'))
        class RRDBNetLookalike(torch.nn.Module):
            pass

    message = str(error.value)
    assert "'RRDBNet'" in message and 'basicsr.archs.rrdbnet_arch.RRDBNet' in message and 'Rename' in message
    assert 'FreshName' not in ARCH_REGISTRY  # nothing half-registered
    assert ARCH_REGISTRY.get('RRDBNet').__module__ == 'basicsr.archs.rrdbnet_arch'


def test_a_name_taken_by_another_plugin_in_mmengine_fails(scratch_names):
    scratch_names.append(('loss', 'OtherPluginLoss'))
    registry.MODELS.register_module(name='OtherPluginLoss', module=type('OtherPluginLoss', (), {}))
    with pytest.raises(RegistryConflictError, match="MMEngine registry 'model'"):

        @register('loss')
        class OtherPluginLoss(torch.nn.Module):
            pass


def test_kind_is_inferred_from_the_file_name_or_must_be_given():
    with pytest.raises(ValueError, match='cannot infer'):

        @register()
        class NotInAComponentFile:  # defined in test_registry.py
            pass

    with pytest.raises(ValueError, match='unknown kind'):
        register('optimizer')(type('X', (), {}))
    with pytest.raises(TypeError):
        register(type('Y', (), {}))


def test_reimporting_a_component_module_is_not_a_clash(tmp_path, scratch_names):
    scratch_names.append(('arch', 'ReloadedNet'))
    _write_package(tmp_path, 'reload_plugin', {'reloaded_arch.py': ARCH_MODULE.replace(
        'ScratchTinyNet', 'ReloadedNet').replace("aliases=('tiny_upstream_name',)", '')})
    try:
        module = importlib.import_module('reload_plugin.reloaded_arch')
        importlib.reload(module)
    finally:
        sys.path.remove(str(tmp_path))
    assert ARCH_REGISTRY.get('ReloadedNet') is module.ReloadedNet
