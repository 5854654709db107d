"""Helpers shared by the learning-check recipes: bundled photos, training runs, held-out scoring."""
import copy
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import yaml

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN_PY = osp.join(REPO_ROOT, 'ext', 'train.py')

# Photos and textures shipped inside the scikit-image wheel. Recipes train on TRAIN_PHOTOS and score on
# HELD_OUT_PHOTOS only, so a gain is generalisation, not memorisation.
TRAIN_PHOTOS = ('astronaut', 'coffee', 'rocket', 'brick', 'grass', 'gravel', 'camera', 'immunohistochemistry',
                'hubble_deep_field', 'coins')
HELD_OUT_PHOTOS = ('chelsea', 'clock', 'moon')  # a colour photo (fur), a grey still life, a grey landscape


def photo_rgb(name, largest_side=None):
    """A scikit-image sample as RGB uint8 (grayscale stacked to 3 channels), optionally shrunk by area."""
    import skimage.data
    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = np.ascontiguousarray(image[..., :3]).astype(np.uint8)
    h, w = image.shape[:2]
    if largest_side and max(h, w) > largest_side:
        factor = largest_side / max(h, w)
        image = cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
    return image


def write_image(path, rgb):
    """Write RGB uint8 atomically in the format of the path's extension (PNG; BMP decodes ~6x faster)."""
    from ext.utils.atomic_io import atomic_write_bytes
    ok, data = cv2.imencode(osp.splitext(path)[1], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f'could not encode {path}')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    atomic_write_bytes(path, data.tobytes())
    return path


def crop_to_multiple(image, multiple):
    h, w = image.shape[:2]
    return image[:h - h % multiple, :w - w % multiple]


def train_env(threads=2):
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO_ROOT + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    env.setdefault('OMP_NUM_THREADS', str(threads))
    env.setdefault('OPENCV_LOG_LEVEL', 'ERROR')
    return env


def run_training(opt, workdir, extra_args=('--auto_resume',), threads=2):
    """Write ``opt`` to ``workdir/<name>.yml`` and train it with ``ext/train.py``; output is shown live."""
    opt = copy.deepcopy(opt)
    yml = osp.join(workdir, f"{opt['name']}.yml")
    from ext.utils.atomic_io import atomic_write_text
    atomic_write_text(yml, yaml.safe_dump(opt, sort_keys=False))
    command = [sys.executable, TRAIN_PY, '-opt', yml, *extra_args]
    result = subprocess.run(command, cwd=workdir, env=train_env(threads))
    if result.returncode != 0:
        raise RuntimeError(f'training failed with exit status {result.returncode}: {" ".join(command)}')
    return yml


def psnr_y(output_rgb, target_rgb, crop_border=4):
    """PSNR on the Y channel (BasicSR's, ITU-R BT.601), both uint8 RGB of the same size."""
    from basicsr.metrics import calculate_psnr
    return float(calculate_psnr(output_rgb[..., ::-1], target_rgb[..., ::-1], crop_border, input_order='HWC',
                                test_y_channel=True))


def ssim_y(output_rgb, target_rgb, crop_border=4):
    from basicsr.metrics import calculate_ssim
    return float(calculate_ssim(output_rgb[..., ::-1], target_rgb[..., ::-1], crop_border, input_order='HWC',
                                test_y_channel=True))


def bicubic_up(lq_rgb, scale):
    h, w = lq_rgb.shape[:2]
    return cv2.resize(lq_rgb, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)


def to_tensor(rgb):
    import torch
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div(255).unsqueeze(0)


def to_rgb(tensor):
    return (tensor.squeeze(0).clamp(0, 1).permute(1, 2, 0).mul(255).round().byte().cpu().numpy())


def load_generator(network_opt, checkpoint_path, param_key='params'):
    """Build ``network_opt`` from the registry and load ``checkpoint_path`` strictly (weights only)."""
    import ext  # noqa: F401  registers the package's components
    from basicsr.archs import build_network
    from ext.utils.checkpoint import load_into_network, load_network_file
    net = build_network(copy.deepcopy(network_opt))
    load_into_network(net, load_network_file(checkpoint_path, param_key=param_key), source=checkpoint_path)
    return net.eval()
