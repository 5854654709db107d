"""The whole material workflow of seed 004 on a small embedded data set, on CPU, in minutes.

1. builds a small "material" set from the photos and textures shipped inside scikit-image (brick,
   grass, gravel, coffee, rocket, ...) plus two one-coloured swatches, a held-out photo (chelsea:
   fur stands in for the carpets seed 004 found hardest) and two validation pairs;
2. runs the prep chain exactly as for real data: ``generate_multiscale.py`` -> ``generate_meta_info.py
   --check`` -> ``filter_low_texture.py`` (drops the swatches, writes a contact sheet) ->
   ``create_lmdb.py`` -> ``make_val_pairs.py``;
3. trains as seed 004 did, both stages through ``ext/train.py --auto_resume`` on the reduced LMDB,
   with validation and its lq | output | gt grids: Real-ESRNet (L1 only) to initialise the
   generator, then A-ESRGAN (``AESRGANModel``: RRDBNet generator, two-scale attention U-Net
   discriminator ``multiscale``). The options are ``options/train_realesrnet_x4plus.yml`` and
   ``options/train_multiaesrgan_x4plus.yml`` with small sizes (written to ``<workdir>/*.yml``).
   No VGG weights are downloaded, so the perceptual loss is left out unless ``--vgg_weights`` is
   given (the real configuration keeps it);
4. super-resolves the held-out photo with tiled inference (``scripts/inference.py --tile``);
5. writes ``side_by_side.png`` (bicubic | A-ESRGAN | original) and the training curves
   (``scripts/plot_curves.py``), and prints where everything is.

Run again and it resumes (``--auto_resume``) instead of starting over; ``--fresh`` starts over.
``--minimal`` is a smoke-test budget (tiny images, a few iterations) used by the test suite.

    python scripts/run_demo.py                 # the full demo, < 10 minutes on 2 CPU cores
    python scripts/run_demo.py --minimal --workdir /tmp/demo
"""
import argparse
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
sys.path.insert(0, SCRIPTS)
from _common import atomic_write_text, write_image  # noqa: E402

ESRNET_OPTIONS = osp.join(REPO_ROOT, 'options', 'train_realesrnet_x4plus.yml')
AESRGAN_OPTIONS = osp.join(REPO_ROOT, 'options', 'train_multiaesrgan_x4plus.yml')
ESRNET_NAME = 'demo_material_realesrnet'
NAME = 'demo_material_aesrgan'
TRAIN_IMAGES = ('brick', 'grass', 'gravel', 'coffee', 'rocket', 'astronaut', 'camera', 'immunohistochemistry')
VAL_IMAGES = ('coins', 'hubble_deep_field')
HELD_OUT = 'chelsea'

# Iterations of the two stages (Real-ESRNet L1 pre-training, then A-ESRGAN from it), validation/checkpoint
# interval, GT crop (>= 80: Real-ESRGAN's 0.15x downscale must leave room for the 21-tap blur), batch,
# generator and discriminator sizes, and the largest side of the source images.
BUDGETS = {
    'full': dict(esrnet_iter=500, total_iter=300, val_freq=100, gt_size=96, batch=4, num_block=2, num_feat=32,
                 num_feat_d=16, source_size=512, train_images=TRAIN_IMAGES),
    'minimal': dict(esrnet_iter=2, total_iter=4, val_freq=2, gt_size=80, batch=2, num_block=1, num_feat=8,
                    num_feat_d=8, source_size=96, train_images=TRAIN_IMAGES[:3]),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workdir', help='where data, experiments and pictures go (default: <repository>/results/demo, '
                                          'with --minimal results/demo_minimal)')
    parser.add_argument('--minimal', action='store_true', help='smoke-test budget: tiny images, 4 iterations')
    parser.add_argument('--total_iter', '--iters', type=int,
                        help='A-ESRGAN iterations (default: 300; minimal: 4)')
    parser.add_argument('--esrnet_iter', type=int,
                        help='Real-ESRNet (L1) pre-training iterations; 0 trains A-ESRGAN from scratch '
                             '(default: 500; minimal: 2)')
    parser.add_argument('--fresh', action='store_true', help='delete the work folder first instead of resuming')
    parser.add_argument('--vgg_weights', help='torchvision VGG19 weights file: keeps the perceptual loss')
    parser.add_argument('--workers', type=int, default=2, help='workers of the prep scripts (default: %(default)s)')
    args = parser.parse_args(argv)
    args.budget = dict(BUDGETS['minimal' if args.minimal else 'full'])
    for key in ('total_iter', 'esrnet_iter'):
        if getattr(args, key) is not None:
            args.budget[key] = getattr(args, key)
    if args.budget['total_iter'] < 1 or args.budget['esrnet_iter'] < 0:
        parser.error('--total_iter must be >= 1 and --esrnet_iter >= 0')
    # a separate default folder per budget: resuming a run with other network sizes would fail
    args.workdir = osp.abspath(args.workdir or osp.join(REPO_ROOT, 'results', 'demo_minimal' if args.minimal else 'demo'))
    return args


class Steps:
    """Numbered, timed progress lines."""

    def __init__(self, total):
        self.total, self.index, self.start = total, 0, time.time()

    def __call__(self, message):
        self.index += 1
        print(f'\n[{self.index}/{self.total}] {message}  (t = {time.time() - self.start:.0f} s)', flush=True)


def run(args, what):
    """Run a script of this repository with this Python, showing its output; stop the demo if it fails."""
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO_ROOT + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    env.setdefault('OPENCV_LOG_LEVEL', 'ERROR')
    # One BLAS/OpenMP thread: these small convolutions barely gain from two, and on a busy machine two
    # spinning threads were 7x slower per iteration than one (measured on the 2-core CI machine).
    env.setdefault('OMP_NUM_THREADS', '1')
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


def skimage_bgr(name):
    import skimage.data
    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3][..., ::-1])


def fit(image, largest_side):
    h, w = image.shape[:2]
    if max(h, w) <= largest_side:
        return image
    factor = largest_side / max(h, w)
    return cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)


def build_material_set(root, photos, budget):
    """HR material images (textures, photos, two one-coloured swatches), validation sources, a held-out photo."""
    size = budget['source_size']
    for name in budget['train_images']:
        write_image(osp.join(root, 'HR', f'{name}.png'), fit(skimage_bgr(name), size))
    rng = np.random.default_rng(0)
    # what seed 004 removed by hand: one-coloured samples, here a plain beige (with sensor noise) and a grey fade
    plain = np.full((size * 3 // 4, size, 3), (150, 190, 215), np.float32) + rng.normal(0, 1.5, (size * 3 // 4, size, 3))
    write_image(osp.join(root, 'HR', 'swatch_plain_beige.png'), plain.clip(0, 255).astype(np.uint8))
    fade = np.tile(np.linspace(90, 140, size, dtype=np.float32)[:, None, None], (1, size, 3))
    write_image(osp.join(root, 'HR', 'swatch_grey_fade.png'), fade.astype(np.uint8))
    for name in VAL_IMAGES:
        image = fit(skimage_bgr(name), size)
        crop = min(128, image.shape[0], image.shape[1])
        write_image(osp.join(photos, 'val', f'{name}.png'), image[:crop, :crop])
    held_out = fit(skimage_bgr(HELD_OUT), 452 if size >= 452 else size)
    h, w = (s - s % 4 for s in held_out.shape[:2])
    held_out = held_out[:h, :w]
    write_image(osp.join(photos, f'{HELD_OUT}_original.png'), held_out)
    lq = cv2.resize(held_out, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    write_image(osp.join(photos, f'{HELD_OUT}_lq.png'), lq)
    return osp.join(photos, f'{HELD_OUT}_lq.png'), osp.join(photos, f'{HELD_OUT}_original.png')


def demo_options(args, base_options, name, data, experiments, total_iter, pretrain_network_g=None):
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
    opt['network_g'].update(num_feat=b['num_feat'], num_block=b['num_block'], num_grow_ch=b['num_feat'] // 2)
    if 'network_d' in opt:
        opt['network_d'].update(num_feat=b['num_feat_d'])
    opt['path'] = {'pretrain_network_g': pretrain_network_g, 'param_key_g': 'params_ema', 'strict_load_g': True,
                   'resume_state': None, 'experiments_root': osp.join(experiments, name)}
    t = opt['train']
    t['ema_decay'] = 0.99  # 0.999 averages over more iterations than the demo runs
    if 'network_d' not in opt:
        t['optim_g']['lr'] = 5e-4  # L1 pre-training tolerates a faster start; the GAN stage keeps upstream's 1e-4
    t['scheduler']['milestones'] = [max(1, total_iter * 3 // 4)]
    t['total_iter'] = total_iter
    if args.vgg_weights:
        opt['path']['vgg_weights'] = osp.abspath(args.vgg_weights)
    else:
        t.pop('perceptual_opt', None)
    val_freq = min(b['val_freq'], total_iter)
    opt['val'].update(val_freq=val_freq, save_img=True)
    opt['logger'].update(print_freq=max(1, min(20, total_iter // 10)), save_checkpoint_freq=val_freq,
                         use_tb_logger=False)  # curves come from the train log (tensorboard would write into the repo)
    opt['dist_params']['backend'] = 'gloo'
    return opt


def side_by_side(lq_path, result_path, original_path, output):
    """``bicubic | A-ESRGAN | original`` with a caption band."""
    result = cv2.imread(result_path)
    original = cv2.imread(original_path)
    h, w = result.shape[:2]
    bicubic = cv2.resize(cv2.imread(lq_path), (w, h), interpolation=cv2.INTER_CUBIC)
    original = cv2.resize(original, (w, h), interpolation=cv2.INTER_AREA) if original.shape[:2] != (h, w) else original
    panels = []
    for image, caption in ((bicubic, 'bicubic x4'), (result, 'A-ESRGAN x4 (demo)'), (original, 'original')):
        band = np.full((28, w, 3), 255, np.uint8)
        cv2.putText(band, caption, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(np.concatenate([band, image], axis=0))
    spacer = np.full((h + 28, 6, 3), 255, np.uint8)
    write_image(output, np.concatenate([panels[0], spacer, panels[1], spacer, panels[2]], axis=1))


def main(argv=None):
    args = parse_args(argv)
    if args.fresh and osp.isdir(args.workdir):
        shutil.rmtree(args.workdir)
    data = osp.join(args.workdir, 'datasets', 'materials')
    photos = osp.join(args.workdir, 'photos')
    experiments = osp.join(args.workdir, 'experiments')
    experiments_root = osp.join(experiments, NAME)
    workers = ['--workers', str(args.workers)]
    steps = Steps(9)
    print(f'A-ESRGAN material demo ({"minimal" if args.minimal else "full"} budget) in {args.workdir}')

    steps('building a small material set from the photos and textures inside scikit-image')
    lq_path, original_path = build_material_set(data, photos, args.budget)

    steps('multiscale copies (scales 0.75, 0.5, 1/3 and shortest edge 400, as upstream)')
    shortest_edge = '400' if not args.minimal else '64'
    run([osp.join(SCRIPTS, 'generate_multiscale.py'), '--input', osp.join(data, 'HR'), '--output',
         osp.join(data, 'multiscale'), '--shortest_edge', shortest_edge, *workers], 'generate_multiscale.py')

    steps('meta info (every original and multiscale image, each checked to open)')
    meta = osp.join(data, 'meta_info', 'meta_info_multiscale.txt')
    run([osp.join(SCRIPTS, 'generate_meta_info.py'), '--input', osp.join(data, 'HR'), osp.join(data, 'multiscale'),
         '--root', data, '--meta_info', meta, '--check', *workers], 'generate_meta_info.py')

    steps('the "reduced" list: one-coloured and pattern-less images dropped by texture score')
    reduced = osp.join(data, 'meta_info', 'meta_info_multiscale_reduced.txt')
    run([osp.join(SCRIPTS, 'filter_low_texture.py'), '--meta_info', meta, '--root', data, '--kept', reduced,
         *workers], 'filter_low_texture.py')

    steps('LMDB of the multiscale set (BasicSR format) and the validation pairs')
    run([osp.join(SCRIPTS, 'create_lmdb.py'), '--meta_info', meta, '--root', data, '--output',
         osp.join(data, 'multiscale.lmdb'), '--overwrite', *workers], 'create_lmdb.py')
    run([osp.join(SCRIPTS, 'make_val_pairs.py'), '--input', osp.join(photos, 'val'), '--gt', osp.join(data, 'val', 'gt'),
         '--lq', osp.join(data, 'val', 'lq_x4'), '--scale', '4', *workers], 'make_val_pairs.py')

    if not args.vgg_weights:
        print('\nnote: no VGG19 weights are downloaded, so the demo trains without the perceptual loss (pass '
              '--vgg_weights FILE to keep it; the real configuration options/train_multiaesrgan_x4plus.yml uses it)')
    pretrained = None
    steps(f'stage 1: Real-ESRNet (L1 only) for {args.budget["esrnet_iter"]} iterations, the generator\'s '
          'initialisation (ext/train.py --auto_resume)')
    if args.budget['esrnet_iter']:
        esrnet_yml = osp.join(args.workdir, f'{ESRNET_NAME}.yml')
        atomic_write_text(esrnet_yml, yaml.safe_dump(demo_options(
            args, ESRNET_OPTIONS, ESRNET_NAME, data, experiments, args.budget['esrnet_iter']), sort_keys=False))
        run([osp.join(REPO_ROOT, 'ext', 'train.py'), '-opt', esrnet_yml, '--auto_resume'], 'Real-ESRNet training')
        pretrained = osp.join(experiments, ESRNET_NAME, 'models', 'net_g_latest.pth')
    else:
        print('  skipped (--esrnet_iter 0): A-ESRGAN starts from scratch')

    steps(f'stage 2: A-ESRGAN (two-scale attention U-Net discriminator) for {args.budget["total_iter"]} '
          'iterations (ext/train.py --auto_resume)')
    options_path = osp.join(args.workdir, f'{NAME}.yml')
    atomic_write_text(options_path, yaml.safe_dump(demo_options(
        args, AESRGAN_OPTIONS, NAME, data, experiments, args.budget['total_iter'], pretrained), sort_keys=False))
    run([osp.join(REPO_ROOT, 'ext', 'train.py'), '-opt', options_path, '--auto_resume'], 'A-ESRGAN training')

    steps(f'tiled inference on the held-out photo ({HELD_OUT}, never seen in training)')
    model_path = osp.join(experiments_root, 'models', 'net_g_latest.pth')
    inference_dir = osp.join(args.workdir, 'inference')
    tile = '32' if args.minimal else '64'
    run([osp.join(SCRIPTS, 'inference.py'), '-i', lq_path, '-o', inference_dir, '-opt', options_path,
         '--model_path', model_path, '--tile', tile, '--device', 'cpu', '--suffix', 'aesrgan', '--ext', 'png'],
        'inference.py')
    result_path = osp.join(inference_dir, f'{HELD_OUT}_lq_aesrgan.png')
    comparison = osp.join(args.workdir, 'side_by_side.png')
    side_by_side(lq_path, result_path, original_path, comparison)

    steps('training curves')
    curves = osp.join(args.workdir, 'curves')
    for name in ([ESRNET_NAME] if args.budget['esrnet_iter'] else []) + [NAME]:
        run([osp.join(SCRIPTS, 'plot_curves.py'), '--input', osp.join(experiments, name), '--output',
             osp.join(curves, name)], 'plot_curves.py')

    grids = osp.join(experiments_root, 'visualization')
    print(f'''
Done in {time.time() - steps.start:.0f} s. Outputs:
  side by side (bicubic | A-ESRGAN | original): {comparison}
  training curves:                              {curves}/<stage>/losses.png, metrics.png, other.png
  validation grids (lq | output | gt):          {grids}/<image>/<image>_<iter>_grid.png
  checkpoints and train log:                    {experiments_root}
  data: reduced list {reduced}
        dropped images (contact sheet) {osp.join(data, 'meta_info', 'meta_info_multiscale_dropped.png')}
        LMDB {osp.join(data, 'multiscale.lmdb')}
  options used:                                 {options_path}
A few minutes of CPU training on a dozen images shows the workflow, not the quality of a real run
(seed 004: 150k iterations on 6,125 photos, from a pre-trained Real-ESRNet, with the perceptual loss).
Run it again to resume; train on your own photos with the same scripts (README, section material-data).''')
    return 0


if __name__ == '__main__':
    sys.exit(main())
