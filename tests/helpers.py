"""The tests' layer over the toolkit's shared helpers (real images from scikit-image:
:mod:`ext.utils.bundled_photos`; option files and runs in a subprocess: :mod:`ext.utils.train_runner`): the
tests' photo set and image folders, their subprocess environment (one thread under xdist, no GPU), failures
that show the output, small option dicts and log parsing."""
import importlib.util
import os
import os.path as osp
import re
import sys

import cv2
import numpy as np

from ext.utils import train_runner
from ext.utils.bundled_photos import photo_crop, photo_rgb as skimage_rgb  # noqa: F401  (the tests' name)
from ext.utils.train_runner import TEST_PY, TRAIN_PY, write_options  # noqa: F401  (re-exported for the tests)

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PYTHON = sys.executable

# Real photos and textures shipped inside the scikit-image wheel (no download).
SKIMAGE_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'brick', 'grass', 'gravel', 'camera')


def load_script(name):
    """Import ``scripts/<name>.py`` (or a path to a script) as a module, to call its ``main(argv)`` in-process."""
    path = name if name.endswith('.py') else osp.join(REPO_ROOT, 'scripts', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'script_{osp.basename(path)[:-3]}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_image_folder(folder, count, size, names=SKIMAGE_PHOTOS, seed=0, suffix='.png'):
    """Write ``count`` ``size``x``size`` BGR PNG crops of real photos into ``folder``; return the paths."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        crop = photo_crop(names[index % len(names)], size, rng)
        path = osp.join(folder, f'{index:04d}{suffix}')
        cv2.imwrite(path, cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def write_paired_folders(root, count, gt_size, scale=4, seed=0):
    """GT crops and their bicubic x``scale`` downscales under ``root/gt`` and ``root/lq``."""
    gt_dir, lq_dir = osp.join(root, 'gt'), osp.join(root, 'lq')
    os.makedirs(lq_dir, exist_ok=True)
    for path in write_image_folder(gt_dir, count, gt_size, seed=seed):
        gt = cv2.imread(path)
        lq = cv2.resize(gt, (gt_size // scale, gt_size // scale), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(osp.join(lq_dir, osp.basename(path)), lq)
    return gt_dir, lq_dir


def free_port():
    """A TCP port nobody listens on now (for torchrun's rendezvous; tests run in parallel on one machine)."""
    import socket
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def subprocess_env(extra=None):
    # One thread per run when pytest-xdist runs tests side by side: two spinning OpenMP threads per process
    # on a busy 2-core machine were many times slower than one. CPU-only suite (unless TESTS_ALLOW_GPU=1): the
    # same numbers (and gloo DDP) on every machine.
    return train_runner.subprocess_env(threads=1 if os.environ.get('PYTEST_XDIST_WORKER') else 2,
                                       cpu_only=os.environ.get('TESTS_ALLOW_GPU') != '1', extra=extra)


def _checked(result, args, check):
    if check and result.returncode != 0:
        raise AssertionError(f'command failed ({result.returncode}): {" ".join(map(str, args))}\n'
                             f'--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}')
    return result


def run_script(args, cwd, env=None, timeout=600, check=True):
    """Run ``python *args`` and return the CompletedProcess; on failure the error shows the output."""
    result = train_runner.run_python(args, cwd=cwd, env=subprocess_env(env), timeout=timeout, capture_output=True)
    return _checked(result, args, check)


def run_train(opt, workdir, extra_args=(), env=None, timeout=600, check=True):
    """Write ``opt`` to ``workdir/<name>.yml`` and run ``ext/train.py`` on it from ``workdir``."""
    result = train_runner.run_train(opt, workdir, extra_args, env=subprocess_env(env), timeout=timeout,
                                    capture_output=True)
    return _checked(result, result.args[1:], check)


def experiment_dir(opt, workdir):
    """Where a run of ``opt`` writes (``path.experiments_root`` is set by :func:`base_train_options`)."""
    return opt['path']['experiments_root']


def base_train_options(name, workdir, train_gt, train_lq, val_gt=None, val_lq=None, gt_size=32, total_iter=4):
    """A small ESRGAN-style option dict on paired folders; tests override what they need."""
    opt = {
        'name': name,
        'model_type': 'SRModel',
        'scale': 4,
        'num_gpu': 'auto',
        'manual_seed': 0,
        'datasets': {
            'train': {
                'name': 'train', 'type': 'PairedImageDataset', 'dataroot_gt': train_gt, 'dataroot_lq': train_lq,
                'io_backend': {'type': 'disk'}, 'gt_size': gt_size, 'use_hflip': True, 'use_rot': True,
                'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 1, 'prefetch_mode': None,
            },
        },
        'network_g': {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1,
                      'num_grow_ch': 4},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                 'experiments_root': osp.join(workdir, 'experiments', name)},
        'train': {
            'ema_decay': 0,
            'optim_g': {'type': 'Adam', 'lr': 1e-3, 'weight_decay': 0, 'betas': [0.9, 0.99]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [100000], 'gamma': 0.5},
            'total_iter': total_iter, 'warmup_iter': -1,
            'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
        },
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False},
        'dist_params': {'backend': 'nccl', 'port': 29500},
    }
    if val_gt is not None:
        opt['datasets']['val'] = {'name': 'val', 'type': 'PairedImageDataset', 'dataroot_gt': val_gt,
                                  'dataroot_lq': val_lq, 'io_backend': {'type': 'disk'}}
        opt['val'] = {'val_freq': 2, 'save_img': False,
                      'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': False}}}
    return opt


def read_logs(folder):
    """The text of every BasicSR ``*.log`` file in ``folder`` (a run's or a test's), in name order."""
    text = ''
    for name in sorted(os.listdir(folder)):
        if name.endswith('.log'):
            with open(osp.join(folder, name)) as handle:
                text += handle.read()
    return text


def iteration_logs(log_text):
    """{iteration: log line} of BasicSR's training log."""
    return {int(m.group(1)): line for line in log_text.splitlines() if (m := re.search(r'iter:\s*(\d+),', line))}


def released_x4plus():
    """Real-ESRGAN's released x4plus converted from the installed ncnn files (the `weights` extra; offline, seconds),
    in eval mode. A missing package fails the test with the file and its source."""
    from ext.utils.ncnn_convert import build_converted_network, convert_ncnn, released_model_files
    conversion = convert_ncnn(*released_model_files('RealESRGAN_x4plus'))
    net = build_converted_network(conversion.network_opt)
    net.load_state_dict(conversion.state_dict, strict=True)
    return net.eval()
