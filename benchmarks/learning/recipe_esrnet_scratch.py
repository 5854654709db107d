"""Real-ESRNet from random weights (L1 on Real-ESRGAN's synthetic degradations) against bicubic.

Splits (``SPLITS``): trains on ``common.TRAIN_PHOTOS``; validation: chelsea, clock, moon (the budget, crop
size, lr and target were chosen on them); held-out: ``common.HELD_OUT_PHOTOS``, never used to choose anything.
Every figure is given for both splits (mean over seeds with min and max); the check is on held-out.

Trains ``options/train_realesrnet_x4plus.yml`` (``RealESRNetPretrainModel``, EMA warm-up on) with a small
RRDBNet (32 features, 2 blocks) on the training photos through ``ext/train.py``: 2000 iterations of batch 4,
96-px crops of 128-px degraded regions (upstream: 400), lr 5e-4 with a cosine decay to 2 %, L1 against the
plain (not USM-sharpened) GT (the JSON records each seed's wall and CPU seconds). Scored on each split's photos (largest side 512,
cropped to a multiple of 64) degraded the training way, ``DRAWS`` fixed-seed degradations of each: the items
are the (photo, draw) pairs, PSNR-Y against the original. The bar is the better of MATLAB's and OpenCV's
bicubic up-scaling of the same degraded input; the control is the untrained network. Also in the details:
plain x4 area downscales (``clean``), where a network trained on heavy degradations is expected to smooth.
Variant notes: ``docs/experiments/esrnet_scratch.md``.
"""
import os.path as osp

import numpy as np

import common
import realesrgan_util as util
from checks import Check

TITLE = 'Real-ESRNet x4 from scratch (small RRDBNet) vs bicubic, on photos degraded the training way'
METRIC = 'PSNR-Y (dB, crop 4), inputs degraded the training way'
SPLITS = common.SPLITS
BASELINES = common.SR_BASELINES
CONTROL = 'the untrained network (random init)'
CHECKS = (Check('the model beats the strongest bicubic on held-out photos degraded the training way'), )
NETWORK = dict(type='RRDBNet', num_in_ch=3, num_out_ch=3, scale=4, num_feat=32, num_block=2, num_grow_ch=16)
ITERATIONS = {'full': 2000, 'smoke': 4}
LR = 5e-4  # from scratch on a short budget (upstream 2e-4 over 1M iterations), cosine down to 2 % of it
CROP_PAD_SIZE = 128  # region degraded before the 96-px crop (upstream 400: 17x the pixels for one crop)
DRAWS = {'full': 4, 'smoke': 1}
SCORED_SIDE = 512
PICTURE_CROP = 96


def score_split(photos, networks, draws):
    """Scores of every (photo, draw), the clean-input PSNRs (details) and the picture rows (first draw:
    OpenCV bicubic | model | original; clean input: model)."""
    scores = {'items': [], METRIC: {}}
    clean, rows = {}, []
    for photo, (original, lqs) in util.scored_inputs(photos, largest_side=SCORED_SIDE, draws=draws,
                                                     multiple=64).items():
        clean_model = util.super_resolve(networks['model'], lqs['clean'])
        for draw, lq in enumerate(lqs['degraded']):
            outputs = common.sr_baselines(lq, 4)
            outputs.update((entry, util.super_resolve(net, lq)) for entry, net in networks.items())
            scores['items'].append(f'{photo} draw {draw + 1}')
            for entry, image in outputs.items():
                scores[METRIC].setdefault(entry, []).append(common.psnr_y(image, original))
            if draw == 0:
                rows.append(common.crop_row([outputs['bicubic (OpenCV)'], outputs['model'], clean_model, original],
                                            PICTURE_CROP))
        clean[photo] = {'bicubic (OpenCV)': round(common.psnr_y(common.bicubic_up(lqs['clean'], 4), original), 3),
                        'model': round(common.psnr_y(clean_model, original), 3)}
    return scores, clean, rows


def run(ctx):
    import torch
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from basicsr.archs import build_network
    torch.set_num_threads(ctx.threads)
    dataroot, meta = util.write_training_set(osp.join(ctx.shared_dir, 'data'))
    name = 'bench_esrnet_scratch'
    iterations = ITERATIONS[ctx.budget]
    opt = util.training_options('train_realesrnet_x4plus.yml', name, ctx.workdir, dataroot, meta, iterations,
                                gt_size=96, batch=4, seed=ctx.seed, network_g=NETWORK)
    opt['datasets']['train']['crop_pad_size'] = CROP_PAD_SIZE
    opt['train']['optim_g']['lr'] = LR
    opt['train']['scheduler'] = {'type': 'CosineAnnealingRestartLR', 'periods': [iterations],
                                 'restart_weights': [1], 'eta_min': LR * 0.02}
    opt['gt_usm'] = False
    training = common.timed_training(opt, ctx.workdir, ctx.threads)
    torch.manual_seed(ctx.seed)
    networks = {'model': common.load_generator(NETWORK, osp.join(opt['path']['experiments_root'], 'models',
                                                                 'net_g_latest.pth'), 'params_ema'),
                'control': build_network(dict(NETWORK)).eval()}
    scores, details, pictures = {}, {}, []
    for split in ('validation', 'held_out'):
        scores[split], details[f'{split}: clean x4 downscales, PSNR-Y'], rows = score_split(
            common.scored_photos(ctx, SPLITS, split), networks, DRAWS[ctx.budget])
        if ctx.save_pictures:
            pictures.append(common.write_rows(
                osp.join(ctx.picture_dir, f'{split}_degraded_bicubic_model_clean_model_original.png'), rows))
    gains = np.array(scores['held_out'][METRIC]['model']) - np.maximum(
        scores['held_out'][METRIC]['bicubic (OpenCV)'], scores['held_out'][METRIC]['bicubic (MATLAB)'])
    details['held_out: gain per draw over the better bicubic of that draw'] = {
        item: round(float(g), 3) for item, g in zip(scores['held_out']['items'], gains)}
    return {'scores': scores, 'pictures': pictures, 'details': details,
            'training': dict(training, iterations=iterations)}
