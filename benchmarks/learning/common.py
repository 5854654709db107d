"""Helpers shared by the learning-check recipes: their photo split, training runs, held-out scoring. The
photos come from :mod:`ext.utils.bundled_photos` and training runs go through :mod:`ext.utils.train_runner`."""
import copy
import os.path as osp

import cv2
import numpy as np

from ext.utils import image_files
from ext.utils.bundled_photos import photo_rgb  # noqa: F401  (the recipes' common.photo_rgb)
from ext.utils.train_runner import run_train, subprocess_env

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# Photos and textures shipped inside the scikit-image wheel. Recipes train on TRAIN_PHOTOS and score on
# HELD_OUT_PHOTOS only, so a gain is generalisation, not memorisation.
TRAIN_PHOTOS = ('astronaut', 'coffee', 'rocket', 'brick', 'grass', 'gravel', 'camera', 'immunohistochemistry',
                'hubble_deep_field', 'coins')
HELD_OUT_PHOTOS = ('chelsea', 'clock', 'moon')  # a colour photo (fur), a grey still life, a grey landscape


def write_image(path, rgb):
    """Write RGB uint8 atomically in the format of the path's extension (PNG; BMP decodes ~6x faster)."""
    return image_files.write_image(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def crop_to_multiple(image, multiple):
    h, w = image.shape[:2]
    return image[:h - h % multiple, :w - w % multiple]


def run_training(opt, workdir, extra_args=('--auto_resume',), threads=2):
    """Write ``opt`` to ``workdir/<name>.yml`` and train it with ``ext/train.py``; output is shown live."""
    result = run_train(opt, workdir, extra_args, env=subprocess_env(threads=threads))
    if result.returncode != 0:
        raise RuntimeError(f'training failed with exit status {result.returncode}: {" ".join(result.args)}')


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
