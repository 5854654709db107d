"""Masked-image pairs for inpainting: an image, a hole mask (from files, the FFHQ box rule or random
free-form strokes and boxes) and the image with the hole filled."""
import hashlib
import math
import os.path as osp
import random

import cv2
import numpy as np
import torch
from torch.utils import data

from ext.data import inpaint_pairs
from ext.data.gt_image_paths import GTImageFiles, list_images_recursive
from ext.registry import register

MASK_MODES = ('file', 'box', 'random')
RANDOM_MASK_DEFAULTS = {
    'strokes': [1, 4],  # free-form strokes per mask (inclusive range)
    'boxes': [0, 2],  # rectangles per mask
    'stroke_vertices': [4, 10],
    'stroke_width': [0.03, 0.10],  # fractions of the shorter side
    'stroke_step': [0.05, 0.20],  # segment length, fraction of the shorter side
    'box_size': [0.15, 0.45],  # box side, fraction of each side
    'hole_fraction': [0.0, 0.6],  # redraw until the hole covers this share of the image (up to 10 tries)
}


def _unit_seed(*parts):
    digest = hashlib.sha256('\0'.join(str(p) for p in parts).encode('utf-8')).digest()
    return int.from_bytes(digest[:8], 'big')


def random_mask(height, width, rng, spec=None):
    """float32 ``height`` x ``width`` mask (1 = hole) of free-form strokes and boxes drawn from ``rng``
    (a ``numpy.random.Generator``); ``spec`` overrides :data:`RANDOM_MASK_DEFAULTS`."""
    spec = {**RANDOM_MASK_DEFAULTS, **(spec or {})}
    short = min(height, width)
    low, high = spec['hole_fraction']
    for _ in range(10):
        mask = np.zeros((height, width), np.uint8)
        for _ in range(int(rng.integers(spec['strokes'][0], spec['strokes'][1] + 1))):
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            thickness = max(1, int(round(rng.uniform(*spec['stroke_width']) * short)))
            angle = rng.uniform(0, 2 * math.pi)
            for _ in range(int(rng.integers(spec['stroke_vertices'][0], spec['stroke_vertices'][1] + 1))):
                angle += rng.uniform(-math.pi / 2, math.pi / 2)
                step = rng.uniform(*spec['stroke_step']) * short
                nx = float(np.clip(x + step * math.cos(angle), 0, width - 1))
                ny = float(np.clip(y + step * math.sin(angle), 0, height - 1))
                cv2.line(mask, (int(x), int(y)), (int(nx), int(ny)), 1, thickness)
                x, y = nx, ny
        for _ in range(int(rng.integers(spec['boxes'][0], spec['boxes'][1] + 1))):
            bw = max(1, int(rng.uniform(*spec['box_size']) * width))
            bh = max(1, int(rng.uniform(*spec['box_size']) * height))
            left, top = int(rng.integers(0, width - bw + 1)), int(rng.integers(0, height - bh + 1))
            mask[top:top + bh, left:left + bw] = 1
        if low <= mask.mean() <= high and mask.any():
            break
    if not mask.any():  # never an empty hole: one pixel-wide stroke at least
        mask[height // 2, width // 4:max(width // 4 + 1, 3 * width // 4)] = 1
    return mask.astype(np.float32)


def read_mask_file(path, height, width):
    """A mask image (white or non-zero = hole) resized (nearest) to ``height`` x ``width``, float32 0/1."""
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise FileNotFoundError(f'mask file {path!r} cannot be read as an image')
    if mask.ndim == 3:
        mask = mask[..., 3] if mask.shape[2] == 4 else mask.max(axis=2)
    if mask.shape != (height, width):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    threshold = 127 if mask.dtype == np.uint8 and mask.max() > 1 else 0.5
    return (mask > threshold).astype(np.float32)


HOLE_FILLS = ('mean', 'smooth')  # besides a constant in [0, 1]


def check_hole_fill(hole_fill, name='MaskedImageDataset'):
    """``hole_fill`` if valid (a number in [0, 1], 'mean' or 'smooth'), else a ValueError naming the key."""
    if isinstance(hole_fill, str):
        if hole_fill in HOLE_FILLS:
            return hole_fill
    elif isinstance(hole_fill, (int, float)) and not isinstance(hole_fill, bool) and 0 <= hole_fill <= 1:
        return hole_fill
    raise ValueError(f"{name}: hole_fill must be a number in [0, 1], 'mean' or 'smooth', got {hole_fill!r}")


def check_random_scale(random_scale, name='MaskedImageDataset'):
    """``random_scale`` as a (low, high) tuple of floats with 0 < low <= high, or None; else a ValueError."""
    if random_scale is None:
        return None
    if (isinstance(random_scale, (list, tuple)) and len(random_scale) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in random_scale)
            and 0 < random_scale[0] <= random_scale[1]):
        return float(random_scale[0]), float(random_scale[1])
    raise ValueError(f'{name}: random_scale must be [low, high] with 0 < low <= high, got {random_scale!r}')


def rescaled_crop(image, factor, crop_size=None, rng=random):
    """A random ``crop_size`` square of ``image`` rescaled by ``factor`` (area interpolation when
    shrinking, bicubic when enlarging), ``factor`` raised where needed so that the rescaled image holds
    the crop. Only the window that becomes the crop (``crop_size / factor`` pixels) is resized, so a
    large image costs no more than a small one. Without ``crop_size``: the whole image rescaled."""
    h, w = image.shape[:2]
    if not crop_size:
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        return _resize(image, *size, cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    crop_size = int(crop_size)
    window = min(h, w, max(1, round(crop_size / factor)))  # the source pixels that become the crop
    top, left = rng.randint(0, h - window), rng.randint(0, w - window)
    patch = image[top:top + window, left:left + window]
    if window == crop_size:
        return patch
    return _resize(patch, crop_size, crop_size, cv2.INTER_AREA if window > crop_size else cv2.INTER_CUBIC)


def _resize(image, width, height, interpolation):
    out = cv2.resize(image, (width, height), interpolation=interpolation)
    return out.reshape(height, width, *image.shape[2:])


def push_pull_fill(image, known):
    """Fill the unknown pixels of ``image`` (H x W x C float) smoothly from the known ones, keeping
    the known pixels exactly: the push-pull pyramid of Gortler et al., "The Lumigraph", SIGGRAPH 1996.

    Pull: each coarser level is the weighted mean of 2x2 blocks (area resampling, so any size works),
    its weight the sum of the block's weights clamped to 1, until every pixel of a level has some
    known data. Push: from the coarsest level down, each level keeps its own colour in proportion to
    its weight and takes the rest from the coarser level upsampled bilinearly. A hole pixel thus gets
    a blend of the nearby known colours, smoother the farther it is from the hole's border.

    ``known``: H x W weights, 1 = known, 0 = hole (values in between are partial weights). Without any
    known pixel the result is 0.5 everywhere. Returns a float32 array of ``image``'s shape.
    """
    image = np.asarray(image, np.float32)
    weight = np.clip(np.asarray(known, np.float32), 0, 1)
    if weight.shape != image.shape[:2]:
        raise ValueError(f'push_pull_fill: known of shape {weight.shape} does not match the image {image.shape}')
    if not (weight > 0).any():
        return np.full_like(image, 0.5)
    squeeze = image.ndim == 2
    colour = image[..., None] if squeeze else image
    levels = [(colour, weight)]
    while weight.min() <= 0:  # pull
        height, width = weight.shape
        size = (max(1, (width + 1) // 2), max(1, (height + 1) // 2))
        mean_weight = _resize(weight, *size, cv2.INTER_AREA)
        weighted = _resize(colour * weight[..., None], *size, cv2.INTER_AREA)
        colour = weighted / np.maximum(mean_weight, 1e-12)[..., None]
        weight = np.minimum(1.0, mean_weight * (width * height) / (size[0] * size[1]))  # the block's sum
        levels.append((colour, weight))
    colour = levels[-1][0]
    for own, weight in reversed(levels[:-1]):  # push
        height, width = weight.shape
        coarse = _resize(colour, width, height, cv2.INTER_LINEAR)
        colour = weight[..., None] * own + (1 - weight[..., None]) * coarse
    return colour[..., 0] if squeeze else colour


def fill_hole(image, mask, hole_fill=0.5):
    """``image`` (H x W x C float in [0, 1]) with the hole (``mask`` H x W, 1 = hole) filled as
    :class:`MaskedImageDataset` does it for ``hole_fill``: a constant, 'mean' (the mean colour of the
    known pixels) or 'smooth' (:func:`push_pull_fill`). Known pixels are kept."""
    image = np.asarray(image, np.float32)
    mask = np.asarray(mask, np.float32)
    check_hole_fill(hole_fill, 'fill_hole')
    if hole_fill == 'smooth':
        filled = push_pull_fill(image, 1 - mask)
    else:
        if hole_fill == 'mean':
            known = mask < 0.5
            fill = image[known].mean(axis=0) if known.any() else np.full(image.shape[2], 0.5, np.float32)
        else:
            fill = np.full(image.shape[2], float(hole_fill), np.float32)
        filled = np.broadcast_to(fill[None, None, :], image.shape)
    return (image * (1 - mask[..., None]) + filled * mask[..., None]).astype(np.float32)


def _chw(image):
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


@register()
class MaskedImageDataset(data.Dataset):
    """Inpainting pairs from clean images: ``gt``, a hole ``mask`` and ``lq`` = ``gt`` with the hole
    filled (pix2pix and VGG-encoder inpainting GANs; Isola et al., CVPR 2017, https://arxiv.org/abs/1611.07004).

    Items (float [0, 1] RGB CHW): ``lq`` (the masked image: hole pixels = ``hole_fill``), ``mask``
    (1 x H x W, 1 = hole; models feed ``cat(lq, mask)`` to the generator and pass the mask to the
    masked PSNR/SSIM metrics), ``gt``, ``lq_path``, ``gt_path``, ``mask_path`` (``''`` unless read from
    a file).

    Masks (``mask_mode``):
        'file': mask images from ``dataroot_mask`` (white / non-zero = hole), resized nearest to the
            image; ``mask_pairing``: 'name' (same file name, any extension), 'cycle' (mask
            ``index % count``) or 'random' (any mask, drawn per sample in training, per file name
            otherwise).
        'box': the FFHQ inpainting box rule of :mod:`ext.data.inpaint_pairs` (``box_x``, ``box_y``
            fractions, default [0.5, 0.8] each; ``random_box`` moves it).
        'random': free-form strokes and boxes (:func:`random_mask`; ``random_mask`` overrides
            :data:`RANDOM_MASK_DEFAULTS`).
    Training draws random masks and boxes from the sample's seed (``ext.engine.sampling`` seeds every draw of
    a training set from (manual_seed, rank, epoch, position), so a resumed run draws the same
    masks); validation and test masks are fixed per file name and ``mask_seed``, identical in every run.

    Option keys: ``dataroot_gt`` (an image folder, searched recursively, or a BasicSR LMDB with
    ``io_backend: {type: lmdb}``), ``meta_info_file``, ``image_size`` (centre-crop and resize to this
    square first, PIL bicubic; 256 or 512 in the option files), ``crop_size`` (random crop in training, centre
    crop otherwise), ``use_flip`` (horizontal, training), ``mask_mode``, ``dataroot_mask``, ``mask_pairing``,
    ``box_x``, ``box_y``, ``random_box``, ``random_mask``, ``mask_seed`` (0), ``random_scale`` ([low, high]:
    in training, the image is rescaled by a factor drawn uniformly from this range before the crop, area
    interpolation when shrinking and bicubic when enlarging, the factor raised where needed so that the
    image still holds ``crop_size``: the crop covers ``crop_size / factor`` pixels of the image, and only
    those are resized; none by default), ``use_rot`` (false: in training, also a random
    vertical flip and a random transpose, so with ``use_flip`` each crop is one of the 8 rotations and
    mirrorings of the square), ``hole_fill``: what the hole
    pixels of ``lq`` hold, a constant in [0, 1] (0.5, i.e. 0 in pix2pix's [-1, 1]: pix2pix's input),
    'mean' (the mean colour of the known pixels) or 'smooth' (a push-pull pyramid fill, Gortler et al.
    1996, :func:`push_pull_fill`: every hole pixel gets a smooth blend of the nearby known colours; pair
    it with ``Pix2PixUNetGenerator(residual=True)`` so the network learns a correction of that fill).
    :func:`fill_hole` is the same fill for code that builds inputs itself.
    """

    option_keys = frozenset({'dataroot_gt', 'meta_info_file', 'image_size', 'crop_size', 'use_flip', 'mask_mode',
                             'dataroot_mask', 'mask_pairing', 'box_x', 'box_y', 'random_box', 'random_mask',
                             'mask_seed', 'hole_fill', 'random_scale', 'use_rot'})

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        name = opt.get('name', 'MaskedImageDataset')
        self.train_phase = opt.get('phase') == 'train'
        self.mask_mode = opt.get('mask_mode', 'random')
        if self.mask_mode not in MASK_MODES:
            raise ValueError(f'{name}: mask_mode must be one of {MASK_MODES}, got {self.mask_mode!r}')
        self.mask_seed = opt.get('mask_seed', 0)
        self.image_size = opt.get('image_size')
        self.crop_size = opt.get('crop_size')
        for key in ('image_size', 'crop_size'):
            value = opt.get(key)
            if value is not None and (int(value) != value or value < 8):
                raise ValueError(f'{name}: {key} must be an integer >= 8, got {value!r}')
        self.hole_fill = check_hole_fill(opt.get('hole_fill', 0.5), name)
        self.random_scale = check_random_scale(opt.get('random_scale'), name)
        self.use_rot = opt.get('use_rot', False)
        if not isinstance(self.use_rot, bool):
            raise ValueError(f'{name}: use_rot must be true or false, got {self.use_rot!r}')
        try:
            self.box_x, self.box_y = inpaint_pairs.check_box(opt.get('box_x', inpaint_pairs.DEFAULT_BOX_X),
                                                             opt.get('box_y', inpaint_pairs.DEFAULT_BOX_Y))
        except ValueError as error:
            raise ValueError(f'{name}: {error}') from None
        self.random_box = bool(opt.get('random_box', False))
        spec = opt.get('random_mask') or {}
        unknown = sorted(set(spec) - set(RANDOM_MASK_DEFAULTS))
        if unknown:
            raise ValueError(f'{name}: random_mask: unknown keys {unknown}; expected some of '
                             f'{sorted(RANDOM_MASK_DEFAULTS)}')
        self.random_mask_spec = {**RANDOM_MASK_DEFAULTS, **spec}

        self.gt_files = GTImageFiles(opt, name)
        self.paths = self.gt_files.paths

        self.mask_paths = []
        if self.mask_mode == 'file':
            if not opt.get('dataroot_mask'):
                raise ValueError(f"{name}: mask_mode 'file' needs dataroot_mask (a folder of mask images)")
            self.mask_paths = list_images_recursive(opt['dataroot_mask'])
            if not self.mask_paths:
                raise ValueError(f"{name}: no mask images in {opt['dataroot_mask']}")
            self.mask_pairing = opt.get('mask_pairing', 'cycle')
            if self.mask_pairing not in ('name', 'cycle', 'random'):
                raise ValueError(f"{name}: mask_pairing must be 'name', 'cycle' or 'random', got {self.mask_pairing!r}")
            if self.mask_pairing == 'name':
                by_stem = {osp.splitext(osp.basename(p))[0]: p for p in self.mask_paths}
                missing = [p for p in self.paths if inpaint_pairs.split_name(p) not in by_stem]
                if missing:
                    raise FileNotFoundError(f"{name}: no mask in {opt['dataroot_mask']} for {len(missing)} images "
                                            f'(mask_pairing: name), e.g. {missing[:3]}')
                self.mask_by_stem = by_stem

    def __len__(self):
        return len(self.gt_files)

    def read_gt(self, index):
        gt = self.gt_files.read(index)
        if self.image_size is not None:
            gt = inpaint_pairs.square_resize(gt, int(self.image_size))
        if self.train_phase and self.random_scale is not None:
            return np.ascontiguousarray(rescaled_crop(gt, random.uniform(*self.random_scale), self.crop_size))
        if self.crop_size is not None:
            size = int(self.crop_size)
            h, w = gt.shape[:2]
            if min(h, w) < size:
                raise ValueError(f'{self.paths[index]}: image of {h}x{w} is smaller than crop_size {size}')
            if self.train_phase:
                top, left = random.randint(0, h - size), random.randint(0, w - size)
            else:
                top, left = (h - size) // 2, (w - size) // 2
            gt = gt[top:top + size, left:left + size]
        return np.ascontiguousarray(gt)

    def mask_rng(self, path):
        """Training: the sample's own seed (set per draw by ext.engine.sampling); otherwise fixed per file."""
        if self.train_phase:
            return np.random.default_rng(random.getrandbits(64))
        return np.random.default_rng(_unit_seed('mask', self.mask_seed, inpaint_pairs.split_name(path)))

    def make_mask(self, index, height, width):
        path = self.paths[index]
        if self.mask_mode == 'box':
            position = None
            if self.random_box:
                rng = random if self.train_phase else inpaint_pairs.box_generator(path, self.mask_seed)
                position = inpaint_pairs.box_position(rng)
            box = inpaint_pairs.box_pixels(width, height, self.box_x, self.box_y, position)
            return inpaint_pairs.box_mask(height, width, box), ''
        if self.mask_mode == 'random':
            return random_mask(height, width, self.mask_rng(path), self.random_mask_spec), ''
        if self.mask_pairing == 'name':
            mask_path = self.mask_by_stem[inpaint_pairs.split_name(path)]
        elif self.mask_pairing == 'cycle':
            mask_path = self.mask_paths[index % len(self.mask_paths)]
        else:
            mask_path = self.mask_paths[int(self.mask_rng(path).integers(len(self.mask_paths)))]
        return read_mask_file(mask_path, height, width), mask_path

    def __getitem__(self, index):
        path = self.paths[index]
        gt = self.read_gt(index)
        if self.train_phase and self.opt.get('use_flip', True) and random.random() < 0.5:
            gt = gt[:, ::-1]  # horizontal only unless use_rot: photos and faces are upright
        if self.train_phase and self.use_rot:
            if random.random() < 0.5:
                gt = gt[::-1]
            if random.random() < 0.5:
                gt = gt.transpose(1, 0, 2)
        gt = gt.astype(np.float32) / 255.0
        mask, mask_path = self.make_mask(index, gt.shape[0], gt.shape[1])
        lq = fill_hole(gt, mask, self.hole_fill)
        return {'lq': _chw(lq), 'gt': _chw(gt), 'mask': torch.from_numpy(mask[None].copy()),
                'lq_path': path, 'gt_path': path, 'mask_path': mask_path}
