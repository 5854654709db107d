"""The two import hooks that ``import ext`` installs. Standard library only: installing them imports no torch.

- :class:`FunctionalTensorShim` (a host fix): torchvision >= 0.17 has no ``transforms.functional_tensor``, which
  ``basicsr/data/degradations.py`` imports, so ``import basicsr`` fails. The finder sits at the end of
  ``sys.meta_path``, so a torchvision that still has the module keeps its own.
- :func:`after_import` runs a function once a module has been executed (``ext`` uses it on ``basicsr``; see
  :mod:`ext`).
"""
import importlib.abc
import importlib.machinery
import importlib.util
import sys

FUNCTIONAL_TENSOR = 'torchvision.transforms.functional_tensor'


class FunctionalTensorShim(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Supplies ``torchvision.transforms.functional_tensor.rgb_to_grayscale`` (all BasicSR 1.4.2 takes from it)."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.machinery.ModuleSpec(fullname, self) if fullname == FUNCTIONAL_TENSOR else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        from torchvision.transforms import functional
        module.rgb_to_grayscale = functional.rgb_to_grayscale


def install_functional_tensor_shim():
    if not any(isinstance(finder, FunctionalTensorShim) for finder in sys.meta_path):
        sys.meta_path.append(FunctionalTensorShim())


class _ThenCall(importlib.abc.Loader):
    """A module's own loader, then ``callback(module)``."""

    def __init__(self, loader, callback):
        self.loader, self.callback = loader, callback

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.callback(module)

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: the module's own loader answers
        return getattr(self.loader, name)


class _AfterImport(importlib.abc.MetaPathFinder):

    def __init__(self, name, callback):
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once, and so that the lookup below finds the real module
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenCall(spec.loader, self.callback)
        return spec


def after_import(name, callback):
    """Call ``callback(module)`` right after the top-level module ``name`` is imported (at once if it already is)."""
    if name in sys.modules:
        callback(sys.modules[name])
    elif not any(isinstance(f, _AfterImport) and f.name == name and f.callback is callback for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, callback))
