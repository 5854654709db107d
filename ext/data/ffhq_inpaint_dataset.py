"""FFHQ inpainting pairs for TTSR built on the fly from clean faces (docs/methods/ffhq_inpaint.md)."""
import random

import torch
from torch.utils import data

from ext.data import inpaint_pairs
from ext.data.gt_image_paths import GTImageFiles
from ext.data.ref_sr_util import down_up, lq_pair, mod_crop, random_flip_rot, resize_bicubic, to_tensor
from ext.registry import register


@register()
class FFHQInpaintDataset(data.Dataset):
    """Reference-based inpainting pairs for TTSR: a face, its copy with a blurred box (the
    reference), and the reference scaled down x4 (the input), as in the FFHQ blurred-box experiment.

    TTSR: Yang et al., "Learning Texture Transformer Network for Image Super-Resolution", CVPR 2020;
    FFHQ: Karras et al., "A Style-Based Generator Architecture for GANs", CVPR 2019.

    Reads only the clean faces (``gt``) and builds the rest with :mod:`ext.data.inpaint_pairs`, the
    code ``scripts/prepare_ffhq_inpaint.py`` uses, so the on-the-fly reference equals the script's
    pixel for pixel. Items (float [0, 1] RGB CHW): ``gt``; ``ref`` (``gt`` with the box blurred);
    ``lq`` (``ref`` bicubic /4, or ``gt`` /4 with ``lq_source: gt``); ``lq_up`` (``lq`` x4);
    ``ref_down_up`` (``ref`` /4 x4); ``mask`` (1 x H x W, 1 inside the box, for region-weighted
    losses and :func:`~ext.metrics.masked_psnr_metric.calculate_masked_psnr`); ``box`` (left, top,
    right, bottom in GT pixels); ``lq_path``, ``gt_path``, ``ref_path``. Resizing is PIL bicubic.

    In the train phase the face is flipped (``use_flip``) and rotated (``use_rot``) before the box is
    placed, and ``random_box`` moves the box anywhere (same size) for every sample. In any other phase
    the data is deterministic: the box is fixed, or with ``random_box`` drawn from a generator seeded
    by the file name (the script's box for the same file).

    Option keys:
        dataroot_gt: folder of clean faces (searched recursively), or a BasicSR LMDB (``.lmdb``,
            ``io_backend: {type: lmdb}``) such as the script's ``gt.lmdb``.
        meta_info_file: optional list of the images to use (first token of each line: a path
            relative to ``dataroot_gt``), e.g. the script's ``meta_info.txt``.
        split / test_fraction / split_seed: keep only the 'train' or 'test' images of the hashed
            split (default: all images; 0.1; 0), to train straight from a raw FFHQ folder.
        image_size: centre-crop and resize every face to this square size first (default: as
            read; the size must then be a multiple of 4, else it is cropped to one).
        box_x, box_y: box fractions (default [0.5, 0.8] each: the box [0.5w:0.8w, 0.5h:0.8h]).
        blur_radius: PIL GaussianBlur radius (5). blur_context: blur the box together with its
            surroundings instead of on its own (false).
        random_box: move the box (false). box_seed: seed of the per-file boxes outside training (0).
        lq_source: 'ref' (the experiment's: the input is the scaled-down reference, blurred box included)
            or 'gt' (the input is the clean face scaled down).
        use_flip (true), use_rot (false: faces are upright).
    """

    option_keys = frozenset({'dataroot_gt', 'meta_info_file', 'split', 'test_fraction', 'split_seed', 'image_size',
                             'box_x', 'box_y', 'blur_radius', 'blur_context', 'random_box', 'box_seed',
                             'lq_source', 'use_flip', 'use_rot'})

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        name = opt.get('name', 'FFHQInpaintDataset')
        self.scale = opt.get('scale', 4)
        try:
            (self.box_x, self.box_y) = inpaint_pairs.check_box(opt.get('box_x', inpaint_pairs.DEFAULT_BOX_X),
                                                               opt.get('box_y', inpaint_pairs.DEFAULT_BOX_Y))
        except ValueError as error:
            raise ValueError(f'{name}: {error}') from None
        self.blur_radius = float(opt.get('blur_radius', inpaint_pairs.DEFAULT_BLUR_RADIUS))
        if self.blur_radius < 0:
            raise ValueError(f'{name}: blur_radius must be >= 0, got {self.blur_radius}')
        self.blur_context = bool(opt.get('blur_context', False))
        self.random_box = bool(opt.get('random_box', False))
        self.box_seed = opt.get('box_seed', 0)
        self.lq_source = opt.get('lq_source', 'ref')
        if self.lq_source not in ('ref', 'gt'):
            raise ValueError(f"{name}: lq_source must be 'ref' or 'gt', got {self.lq_source!r}")
        self.image_size = opt.get('image_size')
        if self.image_size is not None and (int(self.image_size) != self.image_size or self.image_size < self.scale
                                            or self.image_size % self.scale):
            raise ValueError(f'{name}: image_size must be a positive multiple of the scale {self.scale}, '
                             f'got {self.image_size!r}')
        self.train_phase = opt.get('phase') == 'train'

        split = opt.get('split')
        keep, selection = None, ''
        if split is not None:
            if split not in inpaint_pairs.SPLITS:
                raise ValueError(f'{name}: split must be one of {inpaint_pairs.SPLITS} or omitted, got {split!r}')
            fraction, seed = opt.get('test_fraction', inpaint_pairs.DEFAULT_TEST_FRACTION), opt.get('split_seed', 0)
            keep, selection = (lambda p: inpaint_pairs.split_of(p, fraction, seed) == split), f' for split {split!r}'
        self.gt_files = GTImageFiles(opt, name, keep, selection)
        self.paths = self.gt_files.paths

    def __len__(self):
        return len(self.gt_files)

    def read_gt(self, index):
        gt = self.gt_files.read(index)
        if self.image_size is not None:
            gt = inpaint_pairs.square_resize(gt, int(self.image_size))
        gt = mod_crop(gt, self.scale)
        if min(gt.shape[:2]) < self.scale:
            raise ValueError(f'{self.paths[index]}: image of {gt.shape[0]}x{gt.shape[1]} is smaller than the scale')
        return gt

    def box_position(self, path):
        """None (the fixed box) or the random box's position: fresh in training, per file otherwise."""
        if not self.random_box:
            return None
        rng = random if self.train_phase else inpaint_pairs.box_generator(path, self.box_seed)
        return inpaint_pairs.box_position(rng)

    def __getitem__(self, index):
        path = self.paths[index]
        gt = self.read_gt(index)
        if self.train_phase:
            gt, = random_flip_rot([gt], self.opt.get('use_flip', True), self.opt.get('use_rot', False))
        ref, box = inpaint_pairs.make_reference(gt, self.box_x, self.box_y, self.box_position(path), self.blur_radius,
                                                self.blur_context)
        ref_down_up = down_up(ref, self.scale)
        if self.lq_source == 'ref':
            h, w = ref.shape[:2]
            lq, lq_up = resize_bicubic(ref, w // self.scale, h // self.scale), ref_down_up
        else:
            lq, lq_up = lq_pair(gt, self.scale)
        mask = inpaint_pairs.box_mask(gt.shape[0], gt.shape[1], box)
        return {'lq': to_tensor(lq), 'lq_up': to_tensor(lq_up), 'gt': to_tensor(gt), 'ref': to_tensor(ref),
                'ref_down_up': to_tensor(ref_down_up), 'mask': torch.from_numpy(mask[None]),
                'box': torch.tensor(box, dtype=torch.int64), 'lq_path': path, 'gt_path': path, 'ref_path': path}
