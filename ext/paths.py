"""Where the project's outputs live."""
import os
import os.path as osp

PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def project_root():
    """The repository root for a source checkout or an editable install, else the working directory.

    BasicSR puts ``experiments/``, ``results/`` and ``tb_logger/`` under this folder and relative
    option paths are resolved from it.
    """
    candidate = osp.dirname(PACKAGE_DIR)
    if osp.isfile(osp.join(candidate, 'setup.py')) and osp.isdir(osp.join(candidate, 'options')):
        return candidate
    return os.getcwd()
