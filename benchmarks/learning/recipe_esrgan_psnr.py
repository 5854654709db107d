"""ESRGAN two-stage recipe (https://arxiv.org/abs/1809.00219) on a CPU budget: the PSNR stage must beat bicubic on held-out
photos; 200 GAN iterations from it must keep its PSNR (a guard) and, to count as learning, add texture that the
same stage with the GAN weight at 0 (its control) does not.

Splits (``SPLITS``): trains on ``common.TRAIN_PHOTOS``; validation: chelsea, clock, moon (every setting below
was chosen on them); held-out: ``common.HELD_OUT_PHOTOS``, never used to choose anything. Every figure is
given for both splits (whole photos at largest side 512, PSNR on Y with a 4-pixel border crop; mean over
seeds with min and max); the checks are on held-out.

Data: the training photos (largest side 512) cut once into 192 px HR tiles with their x4 LR tiles made by
MATLAB bicubic (BasicSR's ``imresize``, the benchmark degradation); training reads 128 px HR patches of them
through ``ESRGANPairedDataset`` (flip p=0.25 and transpose p=0.75, as options/train_esrgan_psnr_x4.yml; its LR-only JPEG and dropout are
off, because the scored LR images are clean bicubic and the budget is small). The scored LR images are the
photos shrunk x4 by MATLAB bicubic; the bar is the better of MATLAB's and OpenCV's bicubic up-scaling per split.

PSNR stage (``ExtSRModel`` through ext/train.py): ``ESRGANRRDBNet`` (= BasicSR's RRDBNet: 32 features,
2 RRDB blocks, growth 16) with ``interpolating_init`` (the untrained network outputs a bilinear-like
interpolation instead of noise; architecture and keys unchanged), L1, Adam 1e-3 with a 50-iteration linear
warm-up and a cosine decay, batch 8 of 128 px HR patches, 800 iterations. Its control is that untrained
network.

GAN stage (``ExtESRGANModel``, relativistic average GAN): G from the PSNR stage, options/train_esrgan_x4.yml's losses and learning
rates (content L1 x0.01, RaGAN x0.005, Adam 1e-4, betas 0.9/0.99, here with a 50-iteration warm-up: Adam
restarts from zero moments) and its VGG-style discriminator at half its widths. **The perceptual loss is
a stand-in**: the ImageNet VGG19 weights are not available offline, so an L1 on pixels at
``PERCEPTUAL_STAND_IN_WEIGHT`` takes its place (options/train_esrgan_x4.yml keeps VGG19 conv5_4). Its control
is the same stage with the GAN weight at 0 (pure L1 from the PSNR generator). The texture statistic is
``common.texture_ratio``: the output's mean absolute Laplacian over the original's (a PSNR model is smoother
than the original: below 1). Variant notes: ``docs/experiments/esrgan_psnr.md``.
"""
import os.path as osp

import common
from checks import GUARD, Check

TITLE = 'ESRGAN PSNR stage (RRDBNet, L1) then 200 RaGAN iterations'
METRIC = 'PSNR-Y (dB, crop 4)'
TEXTURE = 'texture ratio (mean |Laplacian| of Y, output / original)'
SPLITS = common.SPLITS
BASELINES = common.SR_BASELINES
CONTROL = 'the untrained network (interpolating init)'
GAN, GAN_CONTROL = 'GAN stage', 'GAN stage with the GAN weight 0'
MIN_GAIN_DB = 0.5
MAX_GAN_DROP_DB = 1.5
MIN_TEXTURE_GAIN = 0.02  # chosen on validation (manual_seed 0)
CHECKS = (
    Check(f'the PSNR stage beats the strongest bicubic by more than {MIN_GAIN_DB} dB on held-out photos',
          min_gain=MIN_GAIN_DB),
    Check(f'the adversarial term adds detail: the GAN stage\'s texture ratio exceeds that of the same stage with the '
          f'GAN weight 0 by more than {MIN_TEXTURE_GAIN}', subject=GAN, reference=GAN_CONTROL, control=GAN_CONTROL,
          metric=TEXTURE, lower_is_better=False, min_gain=MIN_TEXTURE_GAIN),
    Check(f'the GAN stage does not break the PSNR model (at most {MAX_GAN_DROP_DB} dB below it)', subject=GAN,
          reference='model', control=GAN_CONTROL, min_gain=-MAX_GAN_DROP_DB, kind=GUARD),
)

SCALE = 4
TILE, TILE_STRIDE = 192, 96
GT_SIZE = 128
SCORED_SIDE = 512  # largest side of the scored photos (the validation ones are no larger)
NETWORK_G = {'type': 'ESRGANRRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'scale': SCALE, 'num_feat': 32,
             'num_block': 2, 'num_grow_ch': 16, 'upsampler': 'nearest', 'interpolating_init': True}
NETWORK_D = {'type': 'ESRGANVGGDiscriminator', 'num_in_ch': 3, 'input_size': GT_SIZE,
             'block_channels': [32, 32, 64, 64, 128, 128, 256, 256], 'fc_features': [100], 'norm': 'batch',
             'spectral_norm': False}
BUDGETS = {'full': {'psnr_iter': 800, 'warmup': 50, 'lr': 1e-3, 'gan_iter': 200},
           'smoke': {'psnr_iter': 4, 'warmup': 1, 'lr': 1e-3, 'gan_iter': 2}}
PERCEPTUAL_STAND_IN_WEIGHT = 5.0  # pixel L1 in place of VGG19 conv5_4's L1 (see the notes)
GAN_WARMUP = 50  # linear lr warm-up of the GAN stage (G and D): Adam restarts from zero moments
PICTURE_CROP = 80


def prepare_training_tiles(folder):
    """HR tiles of the training photos and their bicubic LR tiles (once; reused by later runs)."""
    hr_dir, lr_dir = osp.join(folder, 'HR'), osp.join(folder, 'LR')
    done = osp.join(folder, '.complete')
    if osp.isfile(done):
        return hr_dir, lr_dir
    count = 0
    for name in SPLITS['train']:
        photo = common.crop_to_multiple(common.photo_rgb(name, largest_side=512), SCALE)
        height, width = photo.shape[:2]
        tops = range(0, max(1, height - TILE + 1), TILE_STRIDE)
        lefts = range(0, max(1, width - TILE + 1), TILE_STRIDE)
        for top in tops:
            for left in lefts:
                hr = photo[top:top + TILE, left:left + TILE]
                if min(hr.shape[:2]) < GT_SIZE:
                    continue
                stem = f'{name}_{top:04d}_{left:04d}'
                common.write_image(osp.join(hr_dir, f'{stem}.png'), hr)
                common.write_image(osp.join(lr_dir, f'{stem}.png'), common.matlab_resize(hr, 1 / SCALE))
                count += 1
    open(done, 'w').write(f'{count}\n')
    return hr_dir, lr_dir


def scored_pairs(photos):
    pairs = []
    for name in photos:
        hr = common.crop_to_multiple(common.photo_rgb(name, SCORED_SIDE), SCALE)
        pairs.append((name, hr, common.matlab_resize(hr, 1 / SCALE)))
    return pairs


def base_options(name, workdir, hr_dir, lr_dir, total_iter, seed=0):
    return {
        'name': name, 'model_type': 'ExtSRModel', 'scale': SCALE, 'num_gpu': 0, 'manual_seed': seed,
        'datasets': {'train': {
            'name': 'bundled_photos', 'type': 'ESRGANPairedDataset', 'dataroot_gt': hr_dir, 'dataroot_lq': lr_dir,
            'io_backend': {'type': 'disk'}, 'gt_size': GT_SIZE, 'flip_prob': 0.25, 'transpose_prob': 0.75,
            'lq_jpeg_prob': 0.0, 'lq_dropout_prob': 0.0,
            'use_shuffle': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 8, 'dataset_enlarge_ratio': 50,
            'prefetch_mode': None}},
        'network_g': dict(NETWORK_G),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                 'experiments_root': osp.join(workdir, 'experiments', name)},
        'train': {'ema_decay': 0, 'total_iter': total_iter},
        'logger': {'print_freq': max(1, total_iter // 10), 'save_checkpoint_freq': total_iter,
                   'use_tb_logger': False},
        'dist_params': {'backend': 'gloo', 'port': 29500},
    }


def psnr_stage_options(workdir, hr_dir, lr_dir, budget, seed):
    opt = base_options('esrgan_psnr', workdir, hr_dir, lr_dir, budget['psnr_iter'], seed)
    opt['train'].update(
        optim_g={'type': 'Adam', 'lr': budget['lr'], 'weight_decay': 0, 'betas': [0.9, 0.99]},
        scheduler={'type': 'CosineAnnealingRestartLR', 'periods': [budget['psnr_iter']], 'restart_weights': [1],
                   'eta_min': budget['lr'] * 0.01},
        warmup_iter=budget['warmup'],
        pixel_opt={'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'})
    return opt


def gan_stage_options(workdir, hr_dir, lr_dir, budget, psnr_generator, seed, gan_weight=0.005):
    opt = base_options('esrgan_gan' if gan_weight else 'esrgan_gan_weight0', workdir, hr_dir, lr_dir,
                       budget['gan_iter'], seed)
    opt['model_type'] = 'ExtESRGANModel'
    opt['network_d'] = dict(NETWORK_D)
    opt['path'].update(pretrain_network_g=psnr_generator, param_key_g='params')
    adam = {'type': 'Adam', 'lr': 1e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]}
    opt['train'].update(
        optim_g=dict(adam), optim_d=dict(adam),
        scheduler={'type': 'MultiStepLR', 'milestones': [50000, 100000, 200000, 300000], 'gamma': 0.5},
        # Adam's first steps move every weight by about lr whatever the gradient; the PSNR stage ended at 1e-5
        warmup_iter=GAN_WARMUP,
        # the perceptual stand-in plus the option file's content L1 (0.01)
        pixel_opt={'type': 'L1Loss', 'loss_weight': PERCEPTUAL_STAND_IN_WEIGHT + 0.01, 'reduction': 'mean'},
        gan_opt={'type': 'GANLoss', 'gan_type': 'vanilla', 'real_label_val': 1.0, 'fake_label_val': 0.0,
                 'loss_weight': gan_weight},
        net_d_iters=1, net_d_init_iters=0)
    return opt


def super_resolve(net, lr_rgb):
    import torch
    with torch.no_grad():
        return common.to_rgb(net(common.to_tensor(lr_rgb)))


def score_split(pairs, networks):
    """{'items', METRIC: {entry: PSNRs}, TEXTURE: {entry: ratios}}, the picture rows (centre crops: OpenCV
    bicubic | PSNR stage | GAN stage | GAN stage with weight 0 | original) and the output ranges."""
    scores = {'items': [name for name, _, _ in pairs], METRIC: {}, TEXTURE: {}}
    rows, ranges = [], {}
    for name, hr, lr in pairs:
        outputs = common.sr_baselines(lr, SCALE)
        outputs.update((entry, super_resolve(net, lr)) for entry, net in networks.items())
        for entry, image in outputs.items():
            scores[METRIC].setdefault(entry, []).append(common.psnr_y(image, hr))
            scores[TEXTURE].setdefault(entry, []).append(common.texture_ratio(image, hr))
        ranges[name] = [int(outputs['model'].min()), int(outputs['model'].max())]
        pictured = ('bicubic (OpenCV)', 'model', GAN, GAN_CONTROL)
        rows.append(common.crop_row([outputs[entry] for entry in pictured] + [hr], PICTURE_CROP))
    return scores, rows, ranges


def run(ctx):
    import torch
    torch.set_num_threads(ctx.threads)
    budget = BUDGETS[ctx.budget]
    hr_dir, lr_dir = prepare_training_tiles(osp.join(ctx.shared_dir, 'train_tiles'))

    psnr_opt = psnr_stage_options(ctx.workdir, hr_dir, lr_dir, budget, ctx.seed)
    training = {'psnr_stage': common.timed_training(psnr_opt, ctx.workdir, ctx.threads)}
    psnr_generator = osp.join(psnr_opt['path']['experiments_root'], 'models', 'net_g_latest.pth')
    generators = {}
    for entry, weight in ((GAN, 0.005), (GAN_CONTROL, 0.0)):
        opt = gan_stage_options(ctx.workdir, hr_dir, lr_dir, budget, psnr_generator, ctx.seed, gan_weight=weight)
        training[opt['name']] = common.timed_training(opt, ctx.workdir, ctx.threads)
        generators[entry] = osp.join(opt['path']['experiments_root'], 'models', 'net_g_latest.pth')

    from basicsr.archs import build_network
    torch.manual_seed(ctx.seed)
    networks = {'control': build_network(dict(NETWORK_G)).eval(),  # where the PSNR stage starts
                'model': common.load_generator(NETWORK_G, psnr_generator),
                **{entry: common.load_generator(NETWORK_G, path) for entry, path in generators.items()}}
    scores, pictures, details = {}, [], {}
    for split in ('validation', 'held_out'):
        scores[split], rows, details[f'{split}: PSNR-stage output range'] = score_split(
            scored_pairs(common.scored_photos(ctx, SPLITS, split)), networks)
        if ctx.save_pictures:
            pictures.append(common.write_rows(osp.join(ctx.picture_dir, f'{split}_bicubic_psnr_gan_gan0_hr.png'), rows))
    total = {key: sum(t[key] for t in training.values()) for key in ('wall_s', 'cpu_s')}
    details['training'] = {stage: {k: round(v, 1) for k, v in t.items()} for stage, t in training.items()}
    details['stages'] = (f"PSNR {budget['psnr_iter']} iterations; GAN {budget['gan_iter']} iterations (RaGAN x0.005, "
                         f'pixel stand-in x{PERCEPTUAL_STAND_IN_WEIGHT} + content L1 x0.01), and its control with '
                         'the GAN weight 0')
    return {'scores': scores, 'pictures': pictures, 'details': details,
            'training': dict(total, iterations=budget['psnr_iter'] + 2 * budget['gan_iter'])}
