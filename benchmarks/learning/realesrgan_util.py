"""Shared by the Real-ESRNet / x4plus recipes: a material set of the bundled photos, option files, scoring.

Not a recipe (no ``recipe_`` prefix). Training data: ``common.TRAIN_PHOTOS`` written to disk with a
``MaterialMultiscaleDataset`` meta info; the model synthesises its LQ with Real-ESRGAN's second-order
degradation as in real training. Scored inputs (validation and held-out photos): each photo downscaled x4 by
area (``clean``) and degraded the training way with fixed seeds (``degraded``, ext.data.degraded_pairs).
"""
import os.path as osp

import cv2
import numpy as np
import yaml

import common

OPTIONS = osp.join(common.REPO_ROOT, 'options')


def write_training_set(root, largest_side=384):
    """The training photos as PNGs under ``root/HR`` and their meta info; returns (dataroot, meta_info)."""
    names = []
    for name in common.TRAIN_PHOTOS:
        common.write_image(osp.join(root, 'HR', f'{name}.png'), common.photo_rgb(name, largest_side))
        names.append(f'HR/{name}.png')
    meta = osp.join(root, 'meta_info.txt')
    from ext.utils.atomic_io import atomic_write_text
    atomic_write_text(meta, '\n'.join(names) + '\n')
    return root, meta


def training_options(option_file, name, workdir, dataroot, meta_info, total_iter, gt_size, batch, seed,
                     network_g=None, pretrain_network_g=None, **train_updates):
    """An option file of ``options/`` on the bundled photos: no validation (the recipe scores afterwards)."""
    with open(osp.join(OPTIONS, option_file), encoding='utf-8') as handle:
        opt = yaml.safe_load(handle)
    opt.update(name=name, gt_size=gt_size, queue_size=batch * 4, manual_seed=seed)
    train_set = opt['datasets']['train']
    train_set.update(dataroot_gt=dataroot, meta_info=meta_info, gt_size=gt_size, batch_size_per_gpu=batch,
                     num_worker_per_gpu=1, persistent_workers=True)
    opt['datasets'] = {'train': train_set}
    opt.pop('val', None)
    if network_g:
        opt['network_g'] = dict(network_g)
    opt['path'] = {'pretrain_network_g': pretrain_network_g, 'param_key_g': 'params_ema', 'strict_load_g': True,
                   'resume_state': None, 'experiments_root': osp.join(workdir, 'experiments', name)}
    t = opt['train']
    t.pop('perceptual_opt', None)  # no VGG19 weights offline
    t.update(total_iter=total_iter, ema_warmup=True, **train_updates)
    t['scheduler']['milestones'] = [max(1, total_iter * 3 // 4)]
    opt['logger'].update(print_freq=max(1, total_iter // 10), save_checkpoint_freq=total_iter, use_tb_logger=False)
    opt['dist_params']['backend'] = 'gloo'
    return opt


def scored_inputs(photos, seed=1, largest_side=256, draws=1, multiple=4):
    """{name: (original_rgb, {'clean': lq, 'degraded': [lq, ...]})}, LQ as uint8 RGB at a quarter of the size.

    ``degraded`` holds ``draws`` LQ images degraded the training way with seeds ``seed``, ``seed + 1``, ...:
    one draw of so random a degradation (blur sigma 0.2-3, noise, JPEG 30-95, twice) is no measurement, the
    gain over bicubic of one draw ranges over about 3 dB. ``multiple``: originals are cropped to it;
    64 keeps the LQ a multiple of 16, where BasicSR's ``DiffJPEG`` needs no padding (it pads with zeros, which
    darkens the last block row and column of every JPEG pass).
    """
    from ext.data.degraded_pairs import TrainingDegradation
    with open(osp.join(OPTIONS, 'train_realesrnet_x4plus.yml'), encoding='utf-8') as handle:
        option = yaml.safe_load(handle)
    degradations = [TrainingDegradation(option, seed=seed + draw) for draw in range(draws)]
    inputs = {}
    for name in photos:
        original = common.crop_to_multiple(common.photo_rgb(name, largest_side), multiple)
        h, w = original.shape[:2]
        clean = cv2.resize(original, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
        degraded = [degrade.uint8(original, name) for degrade in degradations]
        inputs[name] = (original, {'clean': clean, 'degraded': degraded})
    return inputs


def super_resolve(net, lq_rgb):
    import torch
    with torch.no_grad():
        return common.to_rgb(net(common.to_tensor(lq_rgb)))


def niqe(rgb, crop_border=4):
    from ext.metrics.niqe_metric import calculate_niqe_sr
    return calculate_niqe_sr(np.ascontiguousarray(rgb[..., ::-1]), crop_border)
