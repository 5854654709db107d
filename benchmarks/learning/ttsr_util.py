"""What the two TTSR learning recipes share: the CPU-sized TTSR-rec options, running a trained or untrained
TTSRNet on one (input, reference) pair with the data pipeline's own bicubic resizing, and picture grids."""
import copy
import os.path as osp

import cv2
import numpy as np

import common

SCALE = 4


def network_options(mid_channels, num_blocks):
    """A TTSRNet without ImageNet VGG weights (not available offline): its texture extractor starts random."""
    return {'type': 'TTSRNet', 'in_channels': 3, 'out_channels': 3, 'mid_channels': mid_channels,
            'texture_channels': 64, 'num_blocks': list(num_blocks), 'load_pretrained_vgg': False}


def rec_options(name, model_type, workdir, dataset, network, budget, seed):
    """TTSR-rec (L1 only, no discriminator) through ``ext/train.py`` on the CPU.

    ``budget``: ``iterations``, ``batch``, ``lr`` (main network, cosine decay to 1 %, linear warm-up of
    ``warmup`` iterations) and ``extractor_lr`` (the texture extractor's group).
    """
    iterations = budget['iterations']
    dataset = dict(dataset, use_shuffle=True, num_worker_per_gpu=0, batch_size_per_gpu=budget['batch'],
                   prefetch_mode=None)
    return {
        'name': name, 'model_type': model_type, 'scale': SCALE, 'num_gpu': 0, 'manual_seed': seed,
        'datasets': {'train': dataset},
        'network_g': copy.deepcopy(network),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                 'experiments_root': osp.join(workdir, 'experiments', name)},
        'train': {
            'ema_decay': 0,
            'optim_g': {'type': 'Adam', 'lr': budget['lr'], 'betas': [0.9, 0.999]},
            'extractor_lr': budget['extractor_lr'],
            'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [iterations], 'restart_weights': [1],
                          'eta_min': budget['lr'] * 0.01},
            'total_iter': iterations, 'warmup_iter': budget['warmup'],
            'pixel_value_range': [-1, 1],
            'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
        },
        'logger': {'print_freq': max(1, iterations // 10), 'save_checkpoint_freq': iterations,
                   'use_tb_logger': False},
        'dist_params': {'backend': 'gloo', 'port': 29500},
    }


def train_and_load(opt, ctx):
    """Train ``opt`` (or reuse its finished run); returns the trained network and ``{'wall_s', 'cpu_s'}``."""
    times = common.timed_training(opt, ctx.workdir, ctx.threads)
    checkpoint = osp.join(opt['path']['experiments_root'], 'models', 'net_g_latest.pth')
    return common.load_generator(opt['network_g'], checkpoint), times


def untrained(network, seed):
    """The network as training starts it (same seed): the learning checks' control."""
    import torch
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from basicsr.archs import build_network
    torch.manual_seed(seed)
    return build_network(copy.deepcopy(network)).eval()


def pipeline_inputs(lq, ref):
    """``(lq_up, ref_down_up)`` as the datasets make them (PIL bicubic x4, and /4 then x4), uint8 RGB."""
    from ext.data.ref_sr_util import down_up, resize_bicubic
    h, w = lq.shape[:2]
    return resize_bicubic(lq, w * SCALE, h * SCALE), down_up(ref, SCALE)


def super_resolve(net, lq, ref, lq_up=None, ref_down_up=None):
    """``(output uint8 RGB, mean soft attention)`` of ``net`` on one pair (uint8 RGB arrays)."""
    import torch
    if lq_up is None or ref_down_up is None:
        lq_up, ref_down_up = pipeline_inputs(lq, ref)
    with torch.no_grad():
        output, attention, _ = net(*(common.to_tensor(image) for image in (lq, ref, lq_up, ref_down_up)),
                                   return_textures=True)
    return common.to_rgb(output), float(attention.mean())


def grid(rows, path, zoom=1):
    """Rows of panels (uint8 RGB, all of one size) with white gaps, enlarged ``zoom`` x (nearest); returns ``path``."""
    lines = [common.crop_row(panels, max(panels[0].shape[:2])) for panels in rows]
    if zoom != 1:
        lines = [cv2.resize(line, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) for line in lines]
    return common.write_rows(path, lines)


def mean_by_photo(items, entries, photos):
    """{photo: {entry: mean over that photo's items}} for items named ``<photo>_<index>``."""
    table = {}
    for photo in photos:
        picked = [i for i, item in enumerate(items) if item.rsplit('_', 1)[0] == photo]
        if picked:
            table[photo] = {entry: round(float(np.mean([values[i] for i in picked])), 3)
                            for entry, values in entries.items()}
    return table
