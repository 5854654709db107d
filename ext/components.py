"""Where the components are: every module named ``*_arch.py``, ``*_model.py``, ``*_loss.py``, ``*_dataset.py`` or
``*_metric.py`` under the package. Importing one runs its ``@register()`` (:mod:`ext.registry`), so adding a
component is adding a file. Standard library only."""
import importlib
import os
import os.path as osp

PACKAGE_DIR = osp.dirname(osp.abspath(__file__))
PACKAGE_NAME = __name__.rpartition('.')[0]

# File-name suffix -> registry kind
MODULE_SUFFIXES = {'_arch': 'arch', '_model': 'model', '_loss': 'loss', '_dataset': 'dataset', '_metric': 'metric'}


def component_modules(package_dir=PACKAGE_DIR, package_name=PACKAGE_NAME):
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


def import_components(package_dir=PACKAGE_DIR, package_name=PACKAGE_NAME):
    return [importlib.import_module(name) for name in component_modules(package_dir, package_name)]
