"""TTSR blurred-box face inpainting (docs/methods/ffhq_inpaint.md) on the bundled faces, on a CPU budget: does
the trained network restore the box better than the non-learned ways of filling or sharpening it?

Faces: the 100 faces of ``skimage.data.lfw_subset()`` (grey, 25x25), enlarged to ``IMAGE_SIZE`` px by the
dataset's own ``image_size`` (centre crop, PIL bicubic). Splits (``SPLITS``): faces 0-59 train, 60-79
validation (every setting below was chosen on them), 80-99 held-out (never used to choose anything); no other
recipe uses them. Every figure is given for both splits, mean over seeds with min and max; the check is on
held-out.

Pairs are made by ``FFHQInpaintDataset`` (``ext.data.inpaint_pairs``, the code of
``scripts/prepare_ffhq_inpaint.py``), for training and for scoring alike: the reference is the face with the
box [0.5w:0.8w, 0.5h:0.8h] blurred by PIL ``GaussianBlur(5)``; the input is the reference scaled down x4 (PIL
bicubic); the target is the clean face. Scored: PSNR (RGB, no border crop) inside the box, the main metric,
and on the whole image.

Entries: ``model`` the trained network on the true pair; ``control`` the same network when the box's
reference content is replaced by another face's (the next face of the split: its blurred box), the input
made from that reference as the pipeline makes it; ``reference swapped, input kept`` (a diagnostic: only the
full-size reference's box is replaced, the input is the true one); on the whole image also ``model, known
pixels kept`` (the output inside the box, the reference outside). Baselines (the strongest per split is the
bar, so the best Telea radius and deconvolution length of each split count): the reference copied (its
blurred box as it is); ``cv2.inpaint`` Telea of the box from the reference around it at radius 3, 5, 9 or
15 px; MATLAB's and OpenCV's bicubic up-scaling of the input; and, stronger than the issue asked, the box
deconvolved by Richardson-Lucy with the known Gaussian (sigma 5, edges replicated as PIL blurs the box) for
30, 100 or 300 iterations (own implementation, started from the blurred box).

Network: ``TTSRNet`` at ``MID_CHANNELS`` features and ``NUM_BLOCKS`` residual blocks, its texture extractor
random at the start (no ImageNet VGG weights offline). Trained through ``ext/train.py`` (``TTSRInpaintModel``
without a discriminator: L1, ``BOX_PIXEL_WEIGHT`` times heavier inside the box), Adam with a cosine decay.
Pictures (``<results>/ttsr_inpaint/<split>_masked_reference_telea_deconvolved_output_control_gt.png``, seed 0):
masked face | reference | Telea (the split's best radius) | Richardson-Lucy (the split's best length) |
output | control output | face, the first faces of each split, x2.
"""
import os
import os.path as osp

import cv2
import numpy as np

import common
import ttsr_util
from checks import Check

TITLE = 'TTSR blurred-box face inpainting (CPU-sized TTSR-rec) vs copying, Telea, deconvolution, bicubic'
METRIC = 'PSNR in the box (dB, RGB)'
WHOLE = 'PSNR whole image (dB, RGB)'


def face_names(first, end):
    return tuple(f'lfw_face_{index:03d}' for index in range(first, end))


SPLITS = {'train': face_names(0, 60), 'validation': face_names(60, 80), 'held_out': face_names(80, 100)}
TELEA_RADII = (3, 5, 9, 15)
DECONVOLUTION_ITERATIONS = (30, 100, 300)
COPIED, SWAPPED_REFERENCE_ONLY, KNOWN_KEPT = 'reference copied', 'reference swapped, input kept', 'model, known pixels kept'
BASELINES = (COPIED, *(f'Telea r{r}' for r in TELEA_RADII), *common.SR_BASELINES,
             *(f'Richardson-Lucy {n} it' for n in DECONVOLUTION_ITERATIONS))
CONTROL = "the trained network with the box's reference content (and the input made from it) another face's"
CHECKS = (Check('the model restores held-out boxes better than the strongest non-learned baseline'), )

IMAGE_SIZE = 100  # 25 px faces x4: the input is about the original face
BLUR_RADIUS = 5.0
MID_CHANNELS, NUM_BLOCKS = 16, (1, 1, 1, 1)
NETWORK = ttsr_util.network_options(MID_CHANNELS, NUM_BLOCKS)
BOX_PIXEL_WEIGHT = 4.0
BUDGETS = {'full': {'iterations': 600, 'batch': 4, 'lr': 1e-3, 'extractor_lr': 1e-4, 'warmup': 20},
           'smoke': {'iterations': 2, 'batch': 2, 'lr': 1e-3, 'extractor_lr': 1e-4, 'warmup': -1}}
PICTURED_FACES = 4
PICTURE_ZOOM = 2


def write_faces(folder, names):
    """The faces ``names`` as 25 px grey PNGs (3 channels) in ``folder``, once."""
    os.makedirs(folder, exist_ok=True)
    faces = None
    for name in names:
        path = osp.join(folder, f'{name}.png')
        if osp.isfile(path):
            continue
        if faces is None:
            import skimage.data
            faces = skimage.data.lfw_subset()
        grey = np.round(faces[int(name.rsplit('_', 1)[1])] * 255).astype(np.uint8)
        common.write_image(path, np.repeat(grey[..., None], 3, axis=2))
    return folder


def dataset_options(folder):
    return {'name': 'lfw_faces', 'type': 'FFHQInpaintDataset', 'dataroot_gt': folder, 'io_backend': {'type': 'disk'},
            'image_size': IMAGE_SIZE, 'blur_radius': BLUR_RADIUS, 'use_flip': True}


def scored_pairs(folder):
    """[(name, sample)] of the dataset outside training: uint8 RGB ``gt``, ``ref``, ``lq``, ``lq_up``,
    ``ref_down_up``, the ``box`` and its boolean ``mask``."""
    from ext.data.ffhq_inpaint_dataset import FFHQInpaintDataset
    dataset = FFHQInpaintDataset(dict(dataset_options(folder), phase='val', scale=ttsr_util.SCALE))
    pairs = []
    for index in range(len(dataset)):
        item = dataset[index]
        sample = {key: common.to_rgb(item[key][None]) for key in ('gt', 'ref', 'lq', 'lq_up', 'ref_down_up')}
        sample.update(box=tuple(int(v) for v in item['box']), mask=item['mask'][0].numpy() > 0.5)
        pairs.append((osp.splitext(osp.basename(item['gt_path']))[0], sample))
    return pairs


def gaussian_psf(sigma):
    radius = int(round(3 * sigma))
    line = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    psf = np.outer(line, line)
    return (psf / psf.sum()).astype(np.float32)


def deconvolved(ref, box, iterations):
    """The reference with its box deconvolved by Richardson-Lucy: the known Gaussian, the box's edges
    replicated as PIL blurred it on its own, starting from the blurred box (skimage's ``richardson_lucy``
    starts from a flat grey image, far worse at these lengths)."""
    left, top, right, bottom = box
    psf = gaussian_psf(BLUR_RADIUS)

    def blur(image):
        return cv2.filter2D(image, -1, psf, borderType=cv2.BORDER_REPLICATE)

    observed = ref[top:bottom, left:right].astype(np.float32) / 255
    estimate = observed.copy()
    for _ in range(iterations):
        estimate *= blur(observed / np.maximum(blur(estimate), 1e-6))
    out = ref.copy()
    out[top:bottom, left:right] = np.clip(np.round(estimate * 255), 0, 255).astype(np.uint8)
    return out


def baselines(sample):
    """{baseline: whole image} of one pair."""
    ref, mask = sample['ref'], sample['mask']
    outputs = {COPIED: ref, **common.sr_baselines(sample['lq'], ttsr_util.SCALE)}
    bgr = cv2.cvtColor(ref, cv2.COLOR_RGB2BGR)
    for radius in TELEA_RADII:
        filled = cv2.inpaint(bgr, mask.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)
        outputs[f'Telea r{radius}'] = cv2.cvtColor(filled, cv2.COLOR_BGR2RGB)
    for iterations in DECONVOLUTION_ITERATIONS:
        outputs[f'Richardson-Lucy {iterations} it'] = deconvolved(ref, sample['box'], iterations)
    return outputs


def with_other_box(ref, other_ref, box):
    """``ref`` whose box holds ``other_ref``'s box (another face's blurred box)."""
    left, top, right, bottom = box
    swapped = ref.copy()
    swapped[top:bottom, left:right] = other_ref[top:bottom, left:right]
    return swapped


def psnr(output, gt, mask=None):
    from basicsr.metrics import calculate_psnr
    from ext.metrics.masked_psnr_metric import calculate_masked_psnr
    if mask is None:
        return float(calculate_psnr(output, gt, 0, input_order='HWC'))
    return float(calculate_masked_psnr(output, gt, 0, mask=mask, region='inside'))


def score_split(pairs, net):
    """{'items', METRIC: {entry: scores}, WHOLE: {...}} and the outputs of the pictured faces."""
    from ext.data.ref_sr_util import resize_bicubic
    in_box, whole, pictured = {}, {}, []
    for position, (name, sample) in enumerate(pairs):
        gt, ref, mask = sample['gt'], sample['ref'], sample['mask']
        outputs = baselines(sample)
        outputs['model'], _ = ttsr_util.super_resolve(net, sample['lq'], ref, sample['lq_up'], sample['ref_down_up'])
        swapped = with_other_box(ref, pairs[(position + 1) % len(pairs)][1]['ref'], sample['box'])
        height, width = swapped.shape[:2]
        swapped_lq = resize_bicubic(swapped, width // ttsr_util.SCALE, height // ttsr_util.SCALE)
        outputs['control'], _ = ttsr_util.super_resolve(net, swapped_lq, swapped)
        outputs[SWAPPED_REFERENCE_ONLY], _ = ttsr_util.super_resolve(net, sample['lq'], swapped)
        for entry, image in outputs.items():
            in_box.setdefault(entry, []).append(psnr(image, gt, mask))
            whole.setdefault(entry, []).append(psnr(image, gt))
        whole.setdefault(KNOWN_KEPT, []).append(psnr(np.where(mask[..., None], outputs['model'], ref), gt))
        if position < PICTURED_FACES:
            masked = np.where(mask[..., None], np.uint8(128), gt)
            pictured.append(dict(outputs, masked=masked, gt=gt))
    names = [name for name, _ in pairs]
    return {'items': names, METRIC: in_box, WHOLE: whole}, pictured


def picture(pictured, scores, path):
    best_telea = max((f'Telea r{r}' for r in TELEA_RADII), key=lambda key: np.mean(scores[METRIC][key]))
    best_rl = max((f'Richardson-Lucy {n} it' for n in DECONVOLUTION_ITERATIONS),
                  key=lambda key: np.mean(scores[METRIC][key]))
    rows = [tuple(out[key] for key in ('masked', COPIED, best_telea, best_rl, 'model', 'control', 'gt'))
            for out in pictured]
    return ttsr_util.grid(rows, path, PICTURE_ZOOM), best_telea, best_rl


def run(ctx):
    import torch
    torch.set_num_threads(ctx.threads)
    budget = BUDGETS[ctx.budget]
    faces = {split: write_faces(osp.join(ctx.shared_dir, f'faces_{split}'), names) for split, names in SPLITS.items()}
    opt = ttsr_util.rec_options('ttsr_inpaint', 'TTSRInpaintModel', ctx.workdir,
                                dict(dataset_options(faces['train']), dataset_enlarge_ratio=50), NETWORK, budget,
                                ctx.seed)
    opt['train']['box_pixel_weight'] = BOX_PIXEL_WEIGHT
    net, training = ttsr_util.train_and_load(opt, ctx)
    scores, pictures, details = {}, [], {}
    for split in ('validation', 'held_out'):
        pairs = scored_pairs(faces[split])
        if ctx.smoke:
            pairs = pairs[:2]
        scores[split], pictured = score_split(pairs, net)
        if ctx.save_pictures:
            path = osp.join(ctx.picture_dir, f'{split}_masked_reference_telea_deconvolved_output_control_gt.png')
            path, telea, deconvolution = picture(pictured, scores[split], path)
            pictures.append(path)
            details[f'{split} pictured'] = f'{telea}, {deconvolution}'
    details['network'] = f'mid_channels {MID_CHANNELS}, num_blocks {list(NUM_BLOCKS)}'
    details['budget'] = dict(budget, box_pixel_weight=BOX_PIXEL_WEIGHT)
    return {'scores': scores, 'pictures': pictures, 'details': details,
            'training': dict(training, iterations=budget['iterations'])}
