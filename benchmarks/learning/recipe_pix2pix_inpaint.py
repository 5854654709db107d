"""pix2pix inpainting (https://arxiv.org/abs/1611.07004): does the trained U-Net fill holes better than the non-learned fills?

Splits (``SPLITS``): trains on ``common.TRAIN_PHOTOS``; every setting below was chosen on the validation
photos chelsea, clock and moon; the held-out photos logo, colorwheel and microaneurysms (a graphic, a synthetic
colour wheel, a grey fundus detail) were never scored before they became held-out and report only. Every
figure of this recipe is given for both splits (mean over seeds, min, max); its check is on held-out.

The pix2pix U-Net generator (L1 on the hole only, λ = 100 on the [-1, 1] scale) trains through
``ext/train.py`` on 64x64 crops of the bundled training photos with one random box per sample (a quarter
to a half of each side), then fills boxes drawn the same way on 64x64 crops of each split's photos (192 px
largest side; 8 fixed crops of each photo). The score is the PSNR (RGB) inside the hole, the known pixels
composited back. The bar is the strongest non-learned fill of each split (``BASELINES``): ``cv2.inpaint``
Telea at radius 3, 5 or 9 px, the model's own input alone (the push-pull pre-fill, no network) and the
mean-colour fill. The control is the untrained generator: residual, with its last layer at zero, it outputs
its input (the pre-fill), so it scores no gain over the pre-fill and fails the check. Pictures
(``<results>/pix2pix_inpaint/<split>_masked_telea_prefill_model_gt.png``, seed 0): masked input | Telea at
the best radius | pre-fill alone | model | ground truth, the first crop of each photo, x2.

Input and output: the dataset fills the hole with a push-pull pyramid fill (``hole_fill: smooth``,
Gortler et al. 1996: no learning, no Telea); the scored inputs are made by the same ``fill_hole``. The
generator is ``residual`` (its input plus a learned correction, the last layer starting at zero) with
``contrast_norm``: it sees the image standardised by the mean and standard deviation of the known pixels
and its correction (at most ``residual_scale`` = 2 of those standard deviations) is scaled back by them, so
it is equivariant to a gain and an offset of the intensities, like the pre-fill. A correction learned on
the contrasty training photos is thus scaled down on a nearly flat crop instead of being added at full
strength (the previous recipe brightened flat clock holes by up to 5.6 grey levels).

Training data: the 10 training photos of ``common.TRAIN_PHOTOS`` plus grey copies of the colour ones
(two validation photos are grey), written at 512 px largest side (BMP: decoded 6x faster than PNG); the
dataset rescales each by a random factor in [0.375, 1] (``random_scale``: a crop sees the photo at 192 to
512 px, the scored photos' scale up to 2.7x closer, so objects and flat regions at several sizes) and applies
random flips, vertical flips and transposes (``use_rot``). Loss: ``HoleWeightedL1Loss`` with
``valid_weight: 0`` (the known pixels are composited back, so errors there do not count).

Budget: 5000 iterations of batch 8; a 16-channel U-Net of 4 downsamplings (64 -> 4x4), batch norm, no
dropout (at this width no decoder block reaches pix2pix's full-width rule, so ``dropout`` would act on
nothing); Adam 1e-3 (0.5, 0.999), x0.2 at 80 %; the generator scored is the EMA of its weights (0.999,
with the package's warm-up; the EMA averages the BatchNorm statistics too). The JSON records each seed's wall
and CPU seconds. ``GAN_WEIGHT`` > 0 adds pix2pix's conditional PatchGAN. The variants tried and their figures (all
measured on what are now the validation photos): ``docs/experiments/pix2pix_inpaint.md``.
"""
import os
import os.path as osp

import cv2
import numpy as np

import common
from checks import Check

TITLE = 'pix2pix U-Net inpainting vs the strongest non-learned fill (Telea, its own pre-fill, mean colour)'
METRIC = 'PSNR in the hole (dB, RGB)'
SPLITS = {'train': common.TRAIN_PHOTOS, 'validation': common.VALIDATION_PHOTOS,
          'held_out': ('logo', 'colorwheel', 'microaneurysms')}
TELEA_RADII = (3, 5, 9)
BASELINES = ('pre-fill alone', *(f'Telea r{r}' for r in TELEA_RADII), 'mean-colour fill')
CONTROL = 'the untrained generator (residual, last layer zero: it outputs its pre-filled input)'
CHECKS = (Check('the model fills held-out holes better than the strongest non-learned fill'), )

SIZE = 64
LARGEST_SIDE = 192  # photos shrunk so that a 64-px crop holds objects, not just texture
BOX_MASKS = {'strokes': [0, 0], 'boxes': [1, 1], 'box_size': [0.25, 0.5], 'hole_fraction': [0.0, 1.0]}
CROPS_PER_PHOTO = 8
PICTURED_CROPS = 1  # per photo (the committed pictures stay small)
ITERATIONS = {'full': 5000, 'smoke': 10}
GAN_WEIGHT = 0.0  # > 0 adds the conditional PatchGAN (measured worse in an earlier recipe: docs/experiments/pix2pix_inpaint.md)
G_LR = 1e-3
NORM = 'batch'
HOLE_FILL = 'smooth'  # push-pull pyramid fill of the hole (0.5: pix2pix's zero; 'mean': the mean colour)
RESIDUAL = True  # the generator outputs its (pre-filled) input + a learned correction
EMA_DECAY = 0.999  # the generator scored is the moving average of its weights (with the package's warm-up)
NUM_FEAT = 16
NUM_DOWNS = 4  # 64 -> 4x4; None: log2(SIZE) = 6 (64 -> 1x1), measured 2 dB worse
GREY_COPIES = True  # also train on grey copies of the colour training photos (two validation photos are grey)
TRAIN_SIDE = 512  # largest side of the training photos as written (the scored ones stay at LARGEST_SIDE)
RANDOM_SCALE = [LARGEST_SIDE / TRAIN_SIDE, 1.0]  # the dataset rescales each training photo by a random factor
USE_ROT = True  # the dataset's random rotations / vertical flips (use_rot)
HOLE_WEIGHT, VALID_WEIGHT = 1.0, 0.0  # HoleWeightedL1Loss weights (valid 0: the hole only)
CONTRAST_NORM = True  # the generator works in units of the known pixels' contrast (equivariant to gain/offset)
RESIDUAL_SCALE = 2.0  # the correction is at most this many times the known pixels' standard deviation


def write_photos(folder, names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        path = osp.join(folder, f'{name}.bmp')
        photo = common.photo_rgb(name, TRAIN_SIDE)
        if not osp.isfile(path):  # BMP: lossless, and decoded ~6x faster than PNG (a whole photo per sample)
            common.write_image(path, photo)
        grey_path = osp.join(folder, f'{name}_grey.bmp')
        is_colour = not (np.array_equal(photo[..., 0], photo[..., 1]) and np.array_equal(photo[..., 1], photo[..., 2]))
        if GREY_COPIES and is_colour and not osp.isfile(grey_path):
            grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
            common.write_image(grey_path, np.repeat(grey[..., None], 3, axis=2))
    return folder


def scored_samples(photos):
    """(name, gt crop uint8 RGB, mask float 0/1) for fixed crops and seeded boxes of ``photos``."""
    from ext.data.masked_image_dataset import random_mask
    rng = np.random.default_rng(2024)
    samples = []
    for name in photos:
        photo = common.photo_rgb(name, LARGEST_SIDE)
        h, w = photo.shape[:2]
        for index in range(CROPS_PER_PHOTO):
            top, left = int(rng.integers(0, h - SIZE + 1)), int(rng.integers(0, w - SIZE + 1))
            crop = np.ascontiguousarray(photo[top:top + SIZE, left:left + SIZE])
            samples.append((f'{name}_{index}', crop, random_mask(SIZE, SIZE, rng, BOX_MASKS)))
    return samples


def hole_psnr(output, gt, mask):
    from ext.metrics.masked_psnr_metric import calculate_masked_psnr
    return calculate_masked_psnr(output, gt, 0, mask=mask, region='inside')


def options(workdir, train_dir, total_iter, seed):
    opt = {
        'name': 'pix2pix_inpaint_learning',
        'model_type': 'Pix2PixInpaintModel',
        'scale': 1,
        'num_gpu': 0,
        'manual_seed': seed,
        'datasets': {'train': {
            'name': 'photos', 'type': 'MaskedImageDataset', 'dataroot_gt': train_dir, 'crop_size': SIZE,
            'use_flip': True, 'use_rot': USE_ROT, 'random_scale': RANDOM_SCALE, 'mask_mode': 'random',
            'random_mask': BOX_MASKS, 'hole_fill': HOLE_FILL,
            'use_shuffle': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 8, 'dataset_enlarge_ratio': 200,
            'prefetch_mode': None}},
        'network_g': {'type': 'Pix2PixUNetGenerator', 'in_channels': 4, 'out_channels': 3, 'image_size': SIZE,
                      'num_downs': NUM_DOWNS, 'num_feat': NUM_FEAT, 'norm': NORM, 'dropout': 0.0,
                      'residual': RESIDUAL, 'contrast_norm': CONTRAST_NORM, 'residual_scale': RESIDUAL_SCALE},
        'network_d': {'type': 'PatchGANDiscriminator', 'in_channels': 7, 'num_feat': 16, 'n_layers': 2,
                      'norm': NORM},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                 'experiments_root': osp.join(workdir, 'experiments', 'pix2pix_inpaint_learning')},
        'train': {
            'ema_decay': EMA_DECAY, 'ema_warmup': bool(EMA_DECAY),
            'optim_g': {'type': 'Adam', 'lr': G_LR, 'betas': [0.5, 0.999]},
            'optim_d': {'type': 'Adam', 'lr': 2e-4, 'betas': [0.5, 0.999]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [int(total_iter * 0.8)], 'gamma': 0.2},
            'total_iter': total_iter, 'warmup_iter': -1, 'conditional_d': True,
            'pixel_opt': {'type': 'HoleWeightedL1Loss', 'loss_weight': 100.0, 'hole_weight': HOLE_WEIGHT,
                          'valid_weight': VALID_WEIGHT, 'range_scale': 2.0},
            'gan_opt': {'type': 'GANLoss', 'gan_type': 'vanilla', 'real_label_val': 1.0, 'fake_label_val': 0.0,
                        'loss_weight': GAN_WEIGHT},
        },
        'logger': {'print_freq': 100, 'save_checkpoint_freq': total_iter, 'use_tb_logger': False},
        'dist_params': {'backend': 'nccl', 'port': 29500},
    }
    if not GAN_WEIGHT:
        del opt['network_d'], opt['train']['optim_d'], opt['train']['gan_opt']
    return opt


def fills(gt, mask, networks):
    """{entry: the crop with its hole filled} for every baseline and each of ``networks`` ({entry: net})."""
    import torch
    from ext.data.masked_image_dataset import fill_hole
    hole = mask > 0.5
    filled = {'masked': np.where(hole[..., None], np.uint8(128), gt),
              'mean-colour fill': np.where(hole[..., None], np.round(gt[~hole].mean(axis=0)).astype(np.uint8), gt)}
    for radius in TELEA_RADII:
        bgr = cv2.inpaint(cv2.cvtColor(gt, cv2.COLOR_RGB2BGR), hole.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)
        filled[f'Telea r{radius}'] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    lq = fill_hole(gt.astype(np.float32) / 255, mask, HOLE_FILL)  # the dataset's own fill: as in training
    filled['pre-fill alone'] = np.round(np.clip(lq, 0, 1) * 255).astype(np.uint8)
    x = torch.cat([torch.from_numpy(np.ascontiguousarray(lq.transpose(2, 0, 1)))[None],
                   torch.from_numpy(mask[None, None].astype(np.float32))], dim=1)
    for entry, net in networks.items():
        with torch.no_grad():
            filled[entry] = np.where(hole[..., None], common.to_rgb(net(x)), gt)  # the known pixels are kept
    return filled


def score_split(samples, networks):
    """{'items': crop names, METRIC: {entry: hole PSNRs}} and the picture rows (first crops of each photo)."""
    scores, rows = {}, []
    for index, (name, gt, mask) in enumerate(samples):
        filled = fills(gt, mask, networks)
        for entry in (*BASELINES, *networks):
            scores.setdefault(entry, []).append(hole_psnr(filled[entry], gt, mask))
        if index % CROPS_PER_PHOTO < PICTURED_CROPS:
            rows.append((filled['masked'], filled, filled['pre-fill alone'], filled['model'], gt))
    return {'items': [name for name, _, _ in samples], METRIC: scores}, rows


def grid(rows, telea, path):
    rows = [(masked, filled[telea], prefill, model, gt) for masked, filled, prefill, model, gt in rows]
    gap = np.full((SIZE, 2, 3), 255, np.uint8)
    lines = [np.concatenate([x for panel in row for x in (panel, gap)][:-1], axis=1) for row in rows]
    spacer = np.full((2, lines[0].shape[1], 3), 255, np.uint8)
    picture = np.concatenate([x for line in lines for x in (line, spacer)][:-1], axis=0)
    common.write_image(path, cv2.resize(picture, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
    return path


def run(ctx):
    import torch
    torch.set_num_threads(ctx.threads)
    total_iter = ITERATIONS[ctx.budget]
    train_dir = write_photos(osp.join(ctx.shared_dir, 'train_photos'), SPLITS['train'])
    opt = options(ctx.workdir, train_dir, total_iter, ctx.seed)
    training = common.timed_training(opt, ctx.workdir, ctx.threads)
    models = osp.join(opt['path']['experiments_root'], 'models')
    from basicsr.archs import build_network
    torch.manual_seed(ctx.seed)
    networks = {'model': common.load_generator(opt['network_g'], osp.join(models, 'net_g_latest.pth'),
                                               param_key='params_ema' if EMA_DECAY else 'params'),
                'control': build_network(dict(opt['network_g'])).eval()}
    scores, pictures, details = {}, [], {}
    for split in ('validation', 'held_out'):
        scores[split], rows = score_split(scored_samples(SPLITS[split]), networks)
        telea = max((f'Telea r{r}' for r in TELEA_RADII), key=lambda key: np.mean(scores[split][METRIC][key]))
        if ctx.save_pictures:
            pictures.append(grid(rows, telea, osp.join(ctx.picture_dir, f'{split}_masked_telea_prefill_model_gt.png')))
        per_photo = {}
        for photo in SPLITS[split]:
            picked = [i for i, name in enumerate(scores[split]['items']) if name.startswith(photo + '_')]
            per_photo[photo] = {entry: round(float(np.mean([values[i] for i in picked])), 3)
                                for entry, values in scores[split][METRIC].items()}
        details[f'{split} per photo (mean of its crops, dB)'] = per_photo
        details[f'{split} Telea radius pictured'] = telea
    return {'scores': scores, 'pictures': pictures, 'details': details,
            'training': dict(training, iterations=total_iter)}
