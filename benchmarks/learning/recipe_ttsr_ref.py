"""TTSR-rec (reference-based x4 SR, L1 only) on a CPU budget: does it learn, and does it use its reference?

Splits (``SPLITS``): trains on ``common.TRAIN_PHOTOS``; validation: chelsea, clock, moon (the SR recipes'
validation photos; every setting below was chosen on them); held-out: page, cell and the right view of the
stereo motorcycle, which no recipe had scored before (the other recipes' held-out photos stay theirs: no
setting of this recipe was chosen on them either). Every figure is given for both splits, mean over seeds
with min and max; the checks are on held-out.

References are made the way CUFED pairs a target with a similar photo: the reference of a crop is another view
of the same scene, a window of the same photo whose centre is shifted by up to a quarter of the crop,
rescaled by 0.8-1.25 and rotated by up to 5 degrees (bicubic warp, borders reflected), so it is never
pixel-aligned. Photos at largest side 512. Training: 64 px crops of the training photos with their 64 px
reference views, written once (each pair under one of the 8 flips/rotations, the same for crop and
reference: the dataset's own augmentation draws them independently, which would turn most references
against their targets). ``RefCUFEDDataset`` makes the input as TTSR's CUFED pipeline does (PIL bicubic /4).
Scored: ``CROPS_PER_PHOTO`` fixed 96 px crops of each photo with their reference views, the input made the
same way; PSNR-Y with a 4-pixel border crop.

Entries: ``model`` the trained network with the true reference; ``control`` the same network given an
unrelated reference (the view of the same crop index of the next photo of the split); ``untrained`` the
network as training starts it, with the true reference; the bar is the better of MATLAB's and OpenCV's bicubic
up-scaling of the input. Also scored: the mean soft attention ``S`` (the cosine relevance of the best
reference patch, averaged over the input's positions) with the true and the unrelated reference.

Network: ``TTSRNet`` at ``MID_CHANNELS`` features and ``NUM_BLOCKS`` residual blocks; its texture extractor
(VGG19 to relu3_1) starts random because ImageNet VGG weights are not available offline, and trains at
``EXTRACTOR_LR``. Trained through ``ext/train.py`` (``TTSRModel`` without a discriminator: TTSR-rec), Adam with
a cosine decay, batch ``BATCH``, ``ITERATIONS`` iterations. Variant notes:
``docs/experiments/ttsr_ref.md``.
"""
import math
import os
import os.path as osp
import zlib

import cv2
import numpy as np

import common
import ttsr_util
from checks import Check

TITLE = 'TTSR-rec (CPU-sized, random-init texture extractor): true reference vs unrelated reference vs bicubic'
METRIC = 'PSNR-Y (dB, crop 4)'
ATTENTION = 'mean soft attention S'
SPLITS = {'train': common.TRAIN_PHOTOS, 'validation': common.VALIDATION_PHOTOS,
          'held_out': ('page', 'cell', 'stereo_motorcycle_right')}
BASELINES = common.SR_BASELINES
CONTROL = 'the trained network given an unrelated reference (a view of another photo of the split)'
UNTRAINED = 'untrained'
MIN_REFERENCE_GAIN_DB = 0.3  # chosen on validation: docs/experiments/ttsr_ref.md
CHECKS = (
    Check('TTSR with the true reference beats the strongest bicubic on held-out photos', control=UNTRAINED),
    Check(f'the true reference beats an unrelated one by more than {MIN_REFERENCE_GAIN_DB} dB (the reference is '
          'used)', reference='control', min_gain=MIN_REFERENCE_GAIN_DB),
)

PHOTO_SIDE = 512
TRAIN_SIZE, SCORED_SIZE = 64, 96  # crop and reference sizes (multiples of 4)
MAX_SHIFT = 0.25  # of the crop size
SCALE_RANGE = (0.8, 1.25)
MAX_ROTATION_DEG = 5.0
CROPS_PER_PHOTO = 6
MID_CHANNELS, NUM_BLOCKS = 16, (1, 1, 1, 1)
NETWORK = ttsr_util.network_options(MID_CHANNELS, NUM_BLOCKS)
BUDGETS = {'full': {'iterations': 600, 'batch': 8, 'lr': 1e-3, 'extractor_lr': 0, 'warmup': 20,
                    'pairs_per_photo': 200},
           'smoke': {'iterations': 2, 'batch': 2, 'lr': 1e-3, 'extractor_lr': 0, 'warmup': -1,
                     'pairs_per_photo': 2}}
# extractor_lr 0: the random texture extractor frozen, chosen on the validation photos (docs/experiments/ttsr_ref.md)
PICTURE_ZOOM = 2


def load_photo(name):
    """A bundled photo at ``PHOTO_SIDE``; ``stereo_motorcycle_right`` is the stereo pair's right view."""
    if name == 'stereo_motorcycle_right':
        import skimage.data
        right = skimage.data.stereo_motorcycle()[1]
        h, w = right.shape[:2]
        factor = PHOTO_SIDE / max(h, w)
        return cv2.resize(right, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
    return common.photo_rgb(name, PHOTO_SIDE)


def reference_view(photo, top, left, size, rng):
    """Another view of ``photo[top:top + size, left:left + size]``: the window's centre shifted, rescaled and
    rotated (see the module docstring)."""
    scale = math.exp(rng.uniform(math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1])))
    angle = math.radians(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    shift_y, shift_x = rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2) * size
    half = (size - 1) / 2
    centre_x, centre_y = left + half + shift_x, top + half + shift_y
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    # reference pixel p shows the photo at centre + scale * rotation(angle) * (p - half)
    matrix = np.array([[cos, -sin, centre_x - (cos - sin) * half], [sin, cos, centre_y - (sin + cos) * half]])
    return cv2.warpAffine(photo, matrix, (size, size), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT_101)


def crop_with_view(photo, size, rng):
    h, w = photo.shape[:2]
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return np.ascontiguousarray(photo[top:top + size, left:left + size]), reference_view(photo, top, left, size, rng)


def dihedral(image, index):
    image = np.rot90(image, index % 4)
    return np.ascontiguousarray(image[:, ::-1] if index >= 4 else image)


def prepare_training_pairs(folder, pairs_per_photo):
    """``folder/gt`` and ``folder/ref``: crops and their reference views, matched by name (written once)."""
    gt_dir, ref_dir = osp.join(folder, 'gt'), osp.join(folder, 'ref')
    done = osp.join(folder, '.complete')
    if not osp.isfile(done):
        rng = np.random.default_rng(0)
        for name in SPLITS['train']:
            photo = load_photo(name)
            for index in range(pairs_per_photo):
                gt, ref = crop_with_view(photo, TRAIN_SIZE, rng)
                turn = int(rng.integers(8))
                common.write_image(osp.join(gt_dir, f'{name}_{index:04d}.png'), dihedral(gt, turn))
                common.write_image(osp.join(ref_dir, f'{name}_{index:04d}.png'), dihedral(ref, turn))
        os.makedirs(folder, exist_ok=True)
        open(done, 'w').write(f'{pairs_per_photo * len(SPLITS["train"])}\n')
    return gt_dir, ref_dir


def scored_items(photos, crops_per_photo):
    """[(item name, gt, true reference, input)] with fixed crops and views of each photo."""
    from ext.data.ref_sr_util import lq_pair
    items = []
    for name in photos:
        photo = load_photo(name)
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        for index in range(crops_per_photo):
            gt, ref = crop_with_view(photo, SCORED_SIZE, rng)
            items.append((f'{name}_{index}', gt, ref, lq_pair(gt, ttsr_util.SCALE)[0]))
    return items


def score_split(items, crops_per_photo, networks):
    """Scores of every entry, the mean attention per entry, and picture rows (the first crop of each photo)."""
    psnr, attention, rows = {}, {'model': [], 'control': []}, []
    for position, (name, gt, ref, lq) in enumerate(items):
        unrelated = items[(position + crops_per_photo) % len(items)][2]  # same crop index, next photo
        outputs = common.sr_baselines(lq, ttsr_util.SCALE)
        outputs['model'], model_attention = ttsr_util.super_resolve(networks['model'], lq, ref)
        outputs['control'], control_attention = ttsr_util.super_resolve(networks['model'], lq, unrelated)
        outputs[UNTRAINED], _ = ttsr_util.super_resolve(networks[UNTRAINED], lq, ref)
        for entry, image in outputs.items():
            psnr.setdefault(entry, []).append(common.psnr_y(image, gt))
        attention['model'].append(model_attention)
        attention['control'].append(control_attention)
        if position % crops_per_photo == 0:
            rows.append((ref, unrelated, outputs['bicubic (MATLAB)'], outputs['model'], outputs['control'], gt))
    names = [name for name, *_ in items]
    return {'items': names, METRIC: psnr, ATTENTION: attention}, rows


def run(ctx):
    import torch
    torch.set_num_threads(ctx.threads)
    budget = BUDGETS[ctx.budget]
    gt_dir, ref_dir = prepare_training_pairs(osp.join(ctx.shared_dir, f'train_pairs_{ctx.budget}'),
                                             budget['pairs_per_photo'])
    dataset = {'name': 'bundled_photo_views', 'type': 'RefCUFEDDataset', 'dataroot_gt': gt_dir,
               'dataroot_ref': ref_dir, 'io_backend': {'type': 'disk'}, 'ref_fit': 'pad', 'use_flip': False,
               'use_rot': False, 'dataset_enlarge_ratio': 1}
    opt = ttsr_util.rec_options('ttsr_ref', 'TTSRModel', ctx.workdir, dataset, NETWORK, budget, ctx.seed)
    model, training = ttsr_util.train_and_load(opt, ctx)
    networks = {'model': model, UNTRAINED: ttsr_util.untrained(NETWORK, ctx.seed)}
    crops = 1 if ctx.smoke else CROPS_PER_PHOTO
    scores, pictures, details = {}, [], {}
    for split in ('validation', 'held_out'):
        scores[split], rows = score_split(scored_items(SPLITS[split], crops), crops, networks)
        if ctx.save_pictures:
            path = osp.join(ctx.picture_dir, f'{split}_ref_unrelated_bicubic_output_output-unrelated_gt.png')
            pictures.append(ttsr_util.grid(rows, path, PICTURE_ZOOM))
        details[f'{split} per photo ({METRIC})'] = ttsr_util.mean_by_photo(
            scores[split]['items'], scores[split][METRIC], SPLITS[split])
        details[f'{split} per photo ({ATTENTION})'] = ttsr_util.mean_by_photo(
            scores[split]['items'], scores[split][ATTENTION], SPLITS[split])
    details['network'] = f'mid_channels {MID_CHANNELS}, num_blocks {list(NUM_BLOCKS)}'
    details['budget'] = {k: v for k, v in budget.items()}
    return {'scores': scores, 'pictures': pictures, 'details': details,
            'training': dict(training, iterations=budget['iterations'])}
