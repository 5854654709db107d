"""BasicSR / MMEngine plug-in: A-ESRGAN, TTSR, ESRGAN recipes and their data tools.

``import ext`` is light: it imports no torch, so the scripts import ext's helpers (``ext.utils.atomic_io``,
``ext.utils.image_files``, ...) and start at once. It installs the torchvision shim that ``import basicsr`` needs
(:mod:`ext.import_hooks`). :func:`activate` does the rest, here and nowhere else, once:

1. it applies the table of :mod:`ext.engine.patching`: the fixes to BasicSR 1.4.2 for today's stack
   (:mod:`ext.compat`) and the package's training engine (:mod:`ext.engine`) in BasicSR's loop;
2. it imports every module named ``*_arch.py``, ``*_model.py``, ``*_dataset.py``, ``*_loss.py`` or
   ``*_metric.py`` under this package, so that their ``@register()`` decorators run: adding a
   component is adding a file.

``activate()`` runs by itself at the first lookup in a BasicSR registry (``build_network``, ``build_model``,
``build_dataset``, ... once ``basicsr`` is imported; the one change made to BasicSR at import) and at the first
build through MMEngine's ``ext`` scope (:mod:`ext.registry`). ``ext/train.py``, ``ext/test.py`` and the scripts
that run BasicSR code call it first; so should your own code that uses BasicSR's functions directly.
"""
import functools

from ext import import_hooks
from ext.components import component_modules, import_components  # noqa: F401  (ext.component_modules, ...)

__version__ = '0.1.0'

_activation = {'done': False, 'running': False}


def activate():
    """Apply the BasicSR fixes and register every component (once; later calls, and calls made while it runs,
    return at once)."""
    if _activation['done'] or _activation['running']:
        return
    _activation['running'] = True
    try:
        from ext.engine import patching
        patching.apply()
        import_components()
        _activation['done'] = True
    finally:
        _activation['running'] = False


def is_active():
    return _activation['done']


def _activating_first(lookup):

    @functools.wraps(lookup)
    def activated_lookup(*args, **kwargs):
        activate()
        return lookup(*args, **kwargs)

    return activated_lookup


def _activate_at_the_first_registry_lookup(basicsr_module):
    from basicsr.utils.registry import Registry
    for name in ('get', '__contains__', '__iter__', 'keys'):
        setattr(Registry, name, _activating_first(getattr(Registry, name)))


import_hooks.install_functional_tensor_shim()
import_hooks.after_import('basicsr', _activate_at_the_first_registry_lookup)
