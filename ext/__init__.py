"""BasicSR / MMEngine plug-in: A-ESRGAN, TTSR, ESRGAN recipes and their data tools.

Importing ``ext`` does two things, here and nowhere else:

1. it applies the table of :mod:`ext.engine.patching`: the fixes to BasicSR 1.4.2 for today's stack
   (:mod:`ext.compat`) and the package's training engine (:mod:`ext.engine`) in BasicSR's loop;
2. it imports every module named ``*_arch.py``, ``*_model.py``, ``*_dataset.py``, ``*_loss.py`` or
   ``*_metric.py`` under this package, so that their ``@register()`` decorators run: adding a
   component is adding a file.
"""
import importlib
import os
import os.path as osp

from ext import compat  # noqa: F401  (first: its import shim must precede every import of basicsr)
from ext.engine import patching

patching.apply()

from ext.registry import MODULE_SUFFIXES  # noqa: E402

__version__ = '0.1.0'
PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def component_modules(package_dir=PACKAGE_DIR, package_name=__name__):
    """Dotted names of the component modules under ``package_dir``, sorted."""
    names = []
    for folder, subfolders, files in os.walk(package_dir):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(('.', '_')))
        relative = osp.relpath(folder, package_dir)
        prefix = package_name if relative == '.' else f"{package_name}.{relative.replace(os.sep, '.')}"
        for file_name in sorted(files):
            stem, extension = osp.splitext(file_name)
            if extension == '.py' and stem.endswith(tuple(MODULE_SUFFIXES)):
                names.append(f'{prefix}.{stem}')
    return names


def import_components(package_dir=PACKAGE_DIR, package_name=__name__):
    return [importlib.import_module(name) for name in component_modules(package_dir, package_name)]


import_components()
