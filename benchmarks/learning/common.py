"""Helpers shared by the learning-check recipes: their photo splits, training runs, scoring and baselines.
The photos come from :mod:`ext.utils.bundled_photos` and training runs go through :mod:`ext.utils.train_runner`."""
import copy
import json
import os.path as osp
import resource
import time

import cv2
import numpy as np

from ext.utils import bundled_photos, image_files
from ext.utils.bundled_photos import photo_rgb  # noqa: F401  (the recipes' common.photo_rgb)
from ext.utils.train_runner import run_train, subprocess_env

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# Photos and textures shipped inside the scikit-image wheel, in three splits. Recipes train on TRAIN_PHOTOS,
# choose any setting on VALIDATION_PHOTOS (every setting so far was chosen on them) and score HELD_OUT_PHOTOS
# only to report: no setting is ever chosen on a held-out score.
TRAIN_PHOTOS = ('astronaut', 'coffee', 'rocket', 'brick', 'grass', 'gravel', 'camera', 'immunohistochemistry',
                'hubble_deep_field', 'coins')
VALIDATION_PHOTOS = ('chelsea', 'clock', 'moon')  # a colour photo (fur), a grey still life, a grey landscape
# The SR recipes' and the demo's held-out photos (see there). The pix2pix recipe's notes scored inpainting on
# three of them, so it has held-out photos of its own.
HELD_OUT_PHOTOS = bundled_photos.HELD_OUT_PHOTOS
SPLITS = {'train': TRAIN_PHOTOS, 'validation': VALIDATION_PHOTOS, 'held_out': HELD_OUT_PHOTOS}
SAME_PHOTO = {'cat': 'chelsea'}  # scikit-image names one photo twice


def check_splits(splits):
    """Raise ValueError when a photo is in two splits of ``splits`` ({'train': names, 'validation': ...})."""
    seen = {}
    for split, names in splits.items():
        for name in names:
            photo = SAME_PHOTO.get(name, name)
            if seen.setdefault(photo, split) != split:
                raise ValueError(f'{name} is in the {seen[photo]} and the {split} split')
    return splits


def scored_photos(ctx, splits, split):
    """The photos of ``split`` to score: all of them, or the first one at the smoke budget (plumbing only)."""
    return splits[split][:1] if ctx.smoke else splits[split]


def write_image(path, rgb):
    """Write RGB uint8 atomically in the format of the path's extension (PNG; BMP decodes ~6x faster)."""
    return image_files.write_image(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def crop_to_multiple(image, multiple):
    h, w = image.shape[:2]
    return image[:h - h % multiple, :w - w % multiple]


def run_training(opt, workdir, threads, extra_args=()):
    """Write ``opt`` to ``workdir/<name>.yml`` and train it with ``ext/train.py``; output is shown live."""
    result = run_train(opt, workdir, extra_args, env=subprocess_env(threads=threads))
    if result.returncode != 0:
        raise RuntimeError(f'training failed with exit status {result.returncode}: {" ".join(result.args)}')


def timed_training(opt, workdir, threads):
    """Train ``opt`` from scratch; returns ``{'wall_s', 'cpu_s'}`` of the training process.

    A run that already finished with the same options in this work folder is reused with its recorded times
    (so changing how a recipe scores, or a later stage, does not retrain); ``--fresh`` starts over.
    """
    import yaml
    record = osp.join(workdir, f"{opt['name']}.done.json")
    final = osp.join(opt['path']['experiments_root'], 'models', 'net_g_latest.pth')
    text = yaml.safe_dump(opt, sort_keys=True)
    if osp.isfile(record) and osp.isfile(final):
        with open(record) as handle:
            done = json.load(handle)
        if done.get('options') == text:
            print(f"reusing the finished run {opt['name']} ({done['wall_s']:.0f} s wall, {done['cpu_s']:.0f} s CPU)")
            return {'wall_s': done['wall_s'], 'cpu_s': done['cpu_s']}
    if osp.isdir(opt['path']['experiments_root']):  # an unfinished or other run: BasicSR would rename it
        import shutil
        shutil.rmtree(opt['path']['experiments_root'])
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    run_training(opt, workdir, threads)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    times = {'wall_s': time.time() - start,
             'cpu_s': (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}
    from ext.utils.atomic_io import atomic_write_text
    atomic_write_text(record, json.dumps({'options': text, **times}))
    return times


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


def matlab_resize(rgb_uint8, scale):
    """MATLAB's ``imresize`` (bicubic, antialiased when shrinking: BasicSR's port), uint8 in and out."""
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from basicsr.utils.matlab_functions import imresize
    out = imresize(rgb_uint8.astype(np.float32) / 255.0, scale)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


# The non-learned x4 up-scalings every SR recipe scores; the stronger per split is its bar.
SR_BASELINES = ('bicubic (MATLAB)', 'bicubic (OpenCV)')


def sr_baselines(lq_rgb, scale):
    """{name: output} of each of ``SR_BASELINES`` for ``lq_rgb``."""
    return {'bicubic (MATLAB)': matlab_resize(lq_rgb, scale), 'bicubic (OpenCV)': bicubic_up(lq_rgb, scale)}


def texture_ratio(output_rgb, target_rgb, crop_border=4):
    """Mean absolute Laplacian of ``output`` on Y over that of ``target``: about 1 when the output has the
    target's fine detail, below 1 when it is smoother (a PSNR-trained output), above when it adds texture."""
    def detail(rgb):
        y = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float32)
        y = y[crop_border:-crop_border, crop_border:-crop_border] if crop_border else y
        return float(np.abs(cv2.Laplacian(y, cv2.CV_32F)).mean())
    return detail(output_rgb) / max(detail(target_rgb), 1e-6)


def to_tensor(rgb):
    import torch
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div(255).unsqueeze(0)


def to_rgb(tensor):
    return (tensor.squeeze(0).clamp(0, 1).permute(1, 2, 0).mul(255).round().byte().cpu().numpy())


def load_generator(network_opt, checkpoint_path, param_key='params'):
    """Build ``network_opt`` from the registry and load ``checkpoint_path`` strictly (weights only)."""
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from basicsr.archs import build_network
    from ext.utils.checkpoint import load_into_network, load_network_file
    net = build_network(copy.deepcopy(network_opt))
    load_into_network(net, load_network_file(checkpoint_path, param_key=param_key), source=checkpoint_path)
    return net.eval()


def crop_row(images, size):
    """Side-by-side ``size``-px centre crops of ``images`` (RGB, all of one size): a small picture to commit."""
    height, width = images[0].shape[:2]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    crops = [image[top:top + size, left:left + size] for image in images]
    gap = np.full((crops[0].shape[0], 2, 3), 255, np.uint8)
    return np.concatenate([part for crop in crops for part in (crop, gap)][:-1], axis=1)


def write_rows(path, rows):
    """Write picture rows (RGB, padded to one width) one under the other; returns ``path``."""
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 2), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    return write_image(path, np.concatenate(rows, axis=0))
