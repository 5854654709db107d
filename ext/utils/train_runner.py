"""Run ``ext/train.py`` (or another Python program of the toolkit) in a subprocess with the environment it
wants: this checkout first on ``PYTHONPATH``, OpenCV quiet, a thread count, optionally no GPU. The tests, the
demo and the learning benchmarks start their training runs through it."""
import os
import os.path as osp
import subprocess
import sys

import yaml

from ext.utils.atomic_io import atomic_write_text

PACKAGES_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))  # the folder holding ext/
TRAIN_PY = osp.join(PACKAGES_ROOT, 'ext', 'train.py')
TEST_PY = osp.join(PACKAGES_ROOT, 'ext', 'test.py')


def subprocess_env(threads=None, cpu_only=False, extra=None):
    """This process's environment for a subprocess: ``PACKAGES_ROOT`` first on ``PYTHONPATH`` (so it imports
    this checkout's packages), ``OMP_NUM_THREADS=threads`` (when given) and ``OPENCV_LOG_LEVEL=ERROR`` unless
    already set, ``CUDA_VISIBLE_DEVICES`` empty when ``cpu_only``; then the variables of ``extra``."""
    env = dict(os.environ)
    env['PYTHONPATH'] = PACKAGES_ROOT + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    if threads is not None:
        env.setdefault('OMP_NUM_THREADS', str(threads))
    env.setdefault('OPENCV_LOG_LEVEL', 'ERROR')
    if cpu_only:
        env['CUDA_VISIBLE_DEVICES'] = ''
    env.update(extra or {})
    return env


def write_options(path, opt):
    """Write the option dict ``opt`` to ``path`` as YAML (keys in their order), atomically; returns ``path``."""
    atomic_write_text(path, yaml.safe_dump(opt, sort_keys=False), make_dirs=True)
    return path


def run_python(args, cwd=None, env=None, timeout=None, capture_output=False):
    """Run ``python *args`` with this interpreter; a ``subprocess.CompletedProcess`` (its output as text when
    ``capture_output``, else shown as it comes)."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, timeout=timeout, capture_output=capture_output,
                          text=True)


def run_train(opt, workdir, extra_args=(), env=None, timeout=None, capture_output=False):
    """Write ``opt`` to ``<workdir>/<name>.yml`` and run ``ext/train.py -opt`` on it from ``workdir``
    (``extra_args`` after it, e.g. ``--auto_resume``); see :func:`run_python`."""
    options_path = write_options(osp.join(workdir, f"{opt['name']}.yml"), opt)
    return run_python([TRAIN_PY, '-opt', options_path, *extra_args], cwd=workdir, env=env, timeout=timeout,
                      capture_output=capture_output)
