"""GT regions and Real-ESRGAN blur kernels from a multiscale material set, on disk or in an LMDB."""
import math
import os
import os.path as osp
import random
import re

import cv2
import numpy as np
import torch

from basicsr.data.degradations import circular_lowpass_kernel, random_mixed_kernels
from basicsr.data.transforms import augment
from basicsr.utils import FileClient, get_root_logger, img2tensor
from ext.data.image_reader import BadImageFile, read_image
from ext.data.lmdb_keys import lmdb_key, read_lmdb_keys
from ext.data.texture_score import DEFAULT_SCORE_SIZE, texture_score
from ext.registry import register

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
DEFAULT_CROP_PAD_SIZE = 400  # Real-ESRGAN's RealESRGANDataset (hard-coded there)
_LMDB_META_LINE = re.compile(r'^(.*) \(\d+,\d+,\d+\) \d+$')
_KERNEL_KEYS = ('blur_kernel_size', 'kernel_list', 'kernel_prob', 'blur_sigma', 'betag_range', 'betap_range',
                'sinc_prob')


# python-lmdb refuses to open one environment twice in a process (e.g. the same LMDB for two datasets);
# share the client per process id, since an environment must not be used across a fork either.
_FILE_CLIENTS = {}


def _file_client(backend_opt):
    backend = dict(backend_opt)
    kind = backend.pop('type')
    if kind != 'lmdb':
        return FileClient(kind, **backend)
    key = (os.getpid(), tuple(backend['db_paths']))
    if key not in _FILE_CLIENTS:
        _FILE_CLIENTS[key] = FileClient(kind, **backend)
    return _FILE_CLIENTS[key]


def real_pair_options(opt, scale):
    """``(dataroot_lq or None, lq_prob)`` of a dataset's options, checked."""
    if 'lq_prob' in opt and 'dataroot_lq_prob' in opt:
        raise ValueError('MaterialMultiscaleDataset: give lq_prob or its traiNNer-redux name dataroot_lq_prob, '
                         'not both')
    probability = opt.get('lq_prob', opt.get('dataroot_lq_prob', 0))
    folder = opt.get('dataroot_lq')
    if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
        raise ValueError(f'MaterialMultiscaleDataset: lq_prob must be a probability in [0, 1], got {probability!r}')
    if probability and folder is None:
        raise ValueError(f'MaterialMultiscaleDataset: lq_prob {probability} needs dataroot_lq (the real LQ images)')
    if folder is not None and not scale:
        raise ValueError('MaterialMultiscaleDataset: dataroot_lq needs the scale of the pairs (option scale)')
    return (None if folder is None else str(folder)), float(probability)


def _pad_bottom_right(image, height, width):
    pad_h, pad_w = height - image.shape[0], width - image.shape[1]
    if pad_h or pad_w:
        border = cv2.BORDER_REFLECT_101 if min(image.shape[:2]) > 1 else cv2.BORDER_REPLICATE
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, border)
    return image


def read_path_list(meta_info):
    """Paths of a meta-info file: one per line (spaces allowed); LMDB-style lines give their name."""
    paths = []
    with open(meta_info, encoding='utf-8') as handle:
        for line in handle:
            line = line.strip()
            if line:
                match = _LMDB_META_LINE.match(line)
                paths.append(match.group(1) if match else line)
    return paths


class _KernelSampler:
    """Real-ESRGAN's random blur kernel of one degradation pass, for sizes 7..``blur_kernel_size``."""

    def __init__(self, opt, suffix):
        try:
            self.max_size = int(opt[f'blur_kernel_size{suffix}'])
            self.kernel_list = opt[f'kernel_list{suffix}']
            self.kernel_prob = opt[f'kernel_prob{suffix}']
            self.blur_sigma = opt[f'blur_sigma{suffix}']
            self.betag_range = opt[f'betag_range{suffix}']
            self.betap_range = opt[f'betap_range{suffix}']
            self.sinc_prob = opt[f'sinc_prob{suffix}']
        except KeyError as error:
            raise KeyError(f'MaterialMultiscaleDataset: option {error.args[0]!r} is missing (the kernel keys are '
                           f"RealESRGANDataset's: {', '.join(k + suffix for k in _KERNEL_KEYS)})") from None
        if self.max_size < 7 or self.max_size % 2 == 0:
            raise ValueError(f'MaterialMultiscaleDataset: blur_kernel_size{suffix} must be an odd number >= 7, '
                             f'got {self.max_size}')
        if len(self.kernel_list) != len(self.kernel_prob):
            raise ValueError(f'MaterialMultiscaleDataset: kernel_list{suffix} and kernel_prob{suffix} differ in length '
                             f'({len(self.kernel_list)} vs {len(self.kernel_prob)})')
        self.sizes = list(range(7, self.max_size + 1, 2))

    def __call__(self):
        size = random.choice(self.sizes)
        if np.random.uniform() < self.sinc_prob:
            # small kernels cannot hold a low cut-off frequency (upstream's rule)
            omega_c = np.random.uniform(np.pi / 3 if size < 13 else np.pi / 5, np.pi)
            kernel = circular_lowpass_kernel(omega_c, size, pad_to=False)
        else:
            kernel = random_mixed_kernels(self.kernel_list, self.kernel_prob, size, self.blur_sigma, self.blur_sigma,
                                          [-math.pi, math.pi], self.betag_range, self.betap_range, noise_range=None)
        pad = (self.max_size - size) // 2
        return torch.FloatTensor(np.pad(kernel, ((pad, pad), (pad, pad))))


@register()
class MaterialMultiscaleDataset(torch.utils.data.Dataset):
    """GT regions plus Real-ESRGAN degradation kernels, for material photos and their multiscale copies.

    Papers: Wang et al., "Real-ESRGAN", ICCVW 2021 (data synthesis); Wei et al., "A-ESRGAN",
    arXiv:2112.10046. Option-compatible with BasicSR's ``RealESRGANDataset`` and returns the same
    dict, ``gt`` (RGB CHW float in [0, 1]), ``kernel1``, ``kernel2``, ``sinc_kernel``, ``gt_path``,
    to be degraded on the fly by a Real-ESRGAN-style model (``AESRGANModel``, ...).

    Crop order as upstream: the GT is reflect-padded / randomly cropped to ``crop_pad_size`` (400,
    upstream's fixed size), the model degrades that whole region and only then takes its random
    ``gt_size`` training crop (``paired_random_crop``). So the border pixels of the degraded image,
    where blur and resampling saw reflect padding, rarely reach the LQ the network trains on.
    ``crop_pad_size: <gt_size>`` restores this package's former order (crop to ``gt_size``, then
    degrade: every LQ border is such a padded border); smaller values save memory and time on small
    data (the demo). Other differences from upstream:

    - optionally, a region whose :func:`~ext.data.texture_score.texture_score` is below
      ``min_texture_score`` is re-drawn, at most ``texture_tries`` times (the most textured try is
      kept), so one-coloured regions of material photos do not dominate the batches;
    - an unreadable or missing file is logged once and another sample is taken: in training by the
      package's bad-file guard (``datasets.train.bad_file_max_share`` / ``bad_file_retries``, exact on
      resume); used on its own, by a random retry of at most ``max_read_failures`` files in a row;
    - kernel sizes run over the odd numbers 7..``blur_kernel_size`` (upstream ignores the key and
      uses 7..21, which is the default 21 here) and kernels are padded to that size.

    Option keys:
        dataroot_gt (str): data root (paths in ``meta_info`` are relative to it) or an LMDB folder
            ending in ``.lmdb`` written by ``scripts/create_lmdb.py`` / BasicSR.
        meta_info (str, optional): list of image paths relative to ``dataroot_gt`` (e.g. the
            ``*_reduced.txt`` of ``scripts/filter_low_texture.py``). For an LMDB it selects records
            (key = path without extension, see :func:`~ext.data.lmdb_keys.lmdb_key`); default:
            every record of ``<lmdb>/meta_info.txt``; on disk default: every image under the root.
        io_backend (dict): ``{type: disk}`` or ``{type: lmdb}`` (a ``.lmdb`` root implies lmdb).
        gt_size (int): the training crop size (taken by the model after the degradation).
        crop_pad_size (int): size of the region cropped (reflect-padded if the image is smaller)
            before the degradation; >= ``gt_size`` and a multiple of ``scale`` (default 400, upstream).
        use_hflip, use_rot (bool): augmentations.
        blur_kernel_size, kernel_list, kernel_prob, blur_sigma, betag_range, betap_range, sinc_prob:
            first blur (as RealESRGANDataset); the same keys with suffix 2: second blur;
            final_sinc_prob: probability of the final sinc filter.
        min_texture_score (float | None): reject regions (``crop_pad_size``) below this score
            (default None: off).
        texture_tries (int): crops drawn per sample when rejecting (default 5).
        max_read_failures (int): unreadable files in a row before giving up (default 20).
        dataroot_lq (str, optional): the real LQ images of the GT images, under the same relative paths
            (an LMDB with the same keys for an LMDB ``dataroot_gt``), each ``scale`` times smaller.
        lq_prob (float, default 0; traiNNer-redux's name ``dataroot_lq_prob`` works too): the probability
            that a sample is the real pair (GT and LQ cropped together, at multiples of ``scale``, with the
            same flips; no texture re-draw) instead of a GT region for the on-the-fly degradation. With
            ``dataroot_lq``, every sample also has ``lq`` (zeros for a synthetic one) and ``lq_is_real``
            (1 or 0), which the Real-ESRGAN models use in place of the degraded LQ. The draw follows the
            sample's seed, so a resumed run continues exactly.
    """

    bad_files_guarded = False  # set by the engine's training-set wrapper, which then handles bad files

    option_keys = frozenset({'dataroot_gt', 'meta_info', 'gt_size', 'crop_pad_size', 'use_hflip', 'use_rot',
                             'final_sinc_prob', 'min_texture_score', 'texture_tries', 'max_read_failures',
                             'dataroot_lq', 'lq_prob', 'dataroot_lq_prob'}
                            | {key + suffix for key in _KERNEL_KEYS for suffix in ('', '2')})

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.file_client, self._client_pid = None, None
        self.io_backend_opt = dict(opt.get('io_backend') or {'type': 'disk'})
        self.gt_folder = str(opt['dataroot_gt'])
        if 'gt_size' not in opt:
            raise KeyError('MaterialMultiscaleDataset: option gt_size (GT crop size in pixels) is missing')
        self.gt_size = int(opt['gt_size'])
        self.crop_pad_size = int(opt.get('crop_pad_size', DEFAULT_CROP_PAD_SIZE))
        if self.crop_pad_size < self.gt_size:
            raise ValueError(f'MaterialMultiscaleDataset: crop_pad_size ({self.crop_pad_size}, the region degraded '
                             f'before the training crop) must be >= gt_size ({self.gt_size})')
        self.use_hflip = bool(opt.get('use_hflip', True))
        self.use_rot = bool(opt.get('use_rot', False))
        self.min_texture_score = opt.get('min_texture_score')
        self.texture_tries = max(1, int(opt.get('texture_tries', 5)))
        self.max_read_failures = max(1, int(opt.get('max_read_failures', 20)))
        self.kernel1 = _KernelSampler(opt, '')
        self.kernel2 = _KernelSampler(opt, '2')
        if 'final_sinc_prob' not in opt:
            raise KeyError('MaterialMultiscaleDataset: option final_sinc_prob is missing')
        self.final_sinc_prob = opt['final_sinc_prob']
        self.final_sizes = self.kernel1.sizes
        self.pulse_tensor = torch.zeros(self.kernel1.max_size, self.kernel1.max_size)
        self.pulse_tensor[self.kernel1.max_size // 2, self.kernel1.max_size // 2] = 1
        self._reported = set()
        scale = opt.get('scale')  # set by BasicSR's loader builder
        if scale and self.crop_pad_size % scale:
            raise ValueError(f'MaterialMultiscaleDataset: crop_pad_size {self.crop_pad_size} must be a multiple of '
                             f'scale {scale} (the degraded LQ is crop_pad_size / scale pixels)')
        if scale and self.crop_pad_size // scale <= self.kernel1.max_size // 2:
            # the final sinc filter runs on the whole degraded LQ with reflect padding of blur_kernel_size // 2
            raise ValueError(f'MaterialMultiscaleDataset: crop_pad_size {self.crop_pad_size} at scale {scale} gives '
                             f'{self.crop_pad_size // scale}-pixel LQ images, too small for blur_kernel_size '
                             f'{self.kernel1.max_size}; use crop_pad_size >= '
                             f'{(self.kernel1.max_size // 2 + 1) * scale}')

        self.scale = scale
        self.lq_folder, self.lq_prob = real_pair_options(opt, scale)
        if self.io_backend_opt['type'] == 'lmdb' or self.gt_folder.endswith('.lmdb'):
            self._init_lmdb()
        else:
            self._init_disk()
        if not self.paths:
            raise ValueError(f'MaterialMultiscaleDataset: no images in {opt.get("meta_info") or self.gt_folder}')

    def _init_lmdb(self):
        if not self.gt_folder.endswith('.lmdb'):
            raise ValueError(f"MaterialMultiscaleDataset: io_backend lmdb needs dataroot_gt ending in '.lmdb', "
                             f'got {self.gt_folder!r}')
        self.io_backend_opt.update(type='lmdb', db_paths=[self.gt_folder], client_keys=['gt'])
        if self.lq_folder is not None:
            if not self.lq_folder.endswith('.lmdb'):
                raise ValueError(f"MaterialMultiscaleDataset: with an LMDB dataroot_gt, dataroot_lq must be an LMDB "
                                 f"too (ending in '.lmdb'), got {self.lq_folder!r}")
            self.io_backend_opt.update(db_paths=[self.gt_folder, self.lq_folder], client_keys=['gt', 'lq'])
        stored = read_lmdb_keys(self.gt_folder)
        if self.opt.get('meta_info'):
            self.paths = [lmdb_key(path) for path in read_path_list(self.opt['meta_info'])]
            missing = sorted(set(self.paths) - set(stored))
            if missing:
                raise ValueError(f"MaterialMultiscaleDataset: {len(missing)} paths of meta_info {self.opt['meta_info']!r} "
                                 f'are not in the LMDB {self.gt_folder!r} (e.g. key {missing[0]!r}); was the LMDB '
                                 'built from another list or root?')
        else:
            self.paths = stored

    def _init_disk(self):
        if self.opt.get('meta_info'):
            relatives = read_path_list(self.opt['meta_info'])
        else:
            from basicsr.utils import scandir
            relatives = sorted(scandir(self.gt_folder, suffix=IMAGE_EXTENSIONS, recursive=True))
        self.paths = [osp.join(self.gt_folder, path) for path in relatives]

    # ------------------------------------------------------------------ loading
    def _load(self, path):
        """BGR float32 image in [0, 1]; a missing, unreadable or empty file is a ``BadImageFile``."""
        return read_image(self.file_client, path, 'gt', float32=True)

    def _load_some_image(self, index):
        """``(image, path)`` of ``index``, or of random other samples while files fail to load.

        In training, the set is wrapped by the engine's bad-file guard (``bad_files_guarded``): a bad file is
        then raised to it, which logs it once, draws the replacement from the sample's seed and stops the
        run when too large a share is bad. Used on its own, the dataset retries here.
        """
        last_error = None
        for _ in range(self.max_read_failures):
            path = self.paths[index]
            try:
                return self._load(path), path
            except Exception as error:  # I/O, decoding, missing key: all mean "take another sample"
                if self.bad_files_guarded and isinstance(error, BadImageFile):
                    raise
                last_error = f'{path}: {type(error).__name__}: {error}'
                if path not in self._reported:
                    self._reported.add(path)
                    get_root_logger().warning(f'MaterialMultiscaleDataset: cannot read {last_error}; using another '
                                              'sample instead (reported once per file)')
                index = random.randrange(len(self.paths))
        raise RuntimeError(f'MaterialMultiscaleDataset: {self.max_read_failures} unreadable files in a row under '
                           f'{self.gt_folder}; the last one: {last_error}')

    # ------------------------------------------------------------------ cropping
    def _pad_to_crop(self, image):
        h, w = image.shape[:2]
        return _pad_bottom_right(image, max(h, self.crop_pad_size), max(w, self.crop_pad_size))

    def _random_crop(self, image):
        h, w = image.shape[:2]
        size = self.crop_pad_size
        top, left = random.randint(0, h - size), random.randint(0, w - size)
        return image[top:top + size, left:left + size]

    def _textured_crop(self, image):
        """A random crop; with ``min_texture_score``, the first of ``texture_tries`` crops above it, else the
        most textured one."""
        if self.min_texture_score is None:
            return self._random_crop(image)
        best, best_score = None, -1.0
        for _ in range(self.texture_tries):
            crop = self._random_crop(image)
            score = texture_score(crop, size=DEFAULT_SCORE_SIZE)
            if score >= self.min_texture_score:
                return crop
            if score > best_score:
                best, best_score = crop, score
        return best

    # ------------------------------------------------------------------ real pairs
    def _lq_path(self, gt_path):
        if self.io_backend_opt['type'] == 'lmdb':
            return gt_path  # the same key in the LQ LMDB
        return osp.join(self.lq_folder, osp.relpath(gt_path, self.gt_folder))

    def _real_pair(self, index):
        """``(gt crop, lq crop, gt path)``: a pair of ``dataroot_gt`` / ``dataroot_lq`` cropped together."""
        image, gt_path = self._load_some_image(index)
        lq_path = self._lq_path(gt_path)
        lq = read_image(self.file_client, lq_path, 'lq', float32=True)
        scale = self.scale
        if (lq.shape[0] * scale, lq.shape[1] * scale) != image.shape[:2]:
            raise ValueError(f'MaterialMultiscaleDataset: the LQ image {lq_path} is {lq.shape[1]}x{lq.shape[0]}, '
                             f'expected {image.shape[1] // scale}x{image.shape[0] // scale} (its GT {gt_path} at '
                             f'scale {scale})')
        image, size = self._pad_to_crop(image), self.crop_pad_size
        lq = _pad_bottom_right(lq, image.shape[0] // scale, image.shape[1] // scale)
        top = random.randint(0, (image.shape[0] - size) // scale) * scale
        left = random.randint(0, (image.shape[1] - size) // scale) * scale
        gt_crop = image[top:top + size, left:left + size]
        lq_crop = lq[top // scale:(top + size) // scale, left // scale:(left + size) // scale]
        gt_crop, lq_crop = augment([np.ascontiguousarray(gt_crop), np.ascontiguousarray(lq_crop)], self.use_hflip,
                                   self.use_rot)
        return gt_crop, lq_crop, gt_path

    def __getitem__(self, index):
        if self.file_client is None or self._client_pid != os.getpid():  # new in each loader worker
            self.file_client, self._client_pid = _file_client(self.io_backend_opt), os.getpid()
        real = self.lq_prob > 0 and random.random() < self.lq_prob  # no draw without real pairs: streams unchanged
        if real:
            crop, lq_crop, gt_path = self._real_pair(index)
        else:
            image, gt_path = self._load_some_image(index)
            crop = self._textured_crop(self._pad_to_crop(image))
            crop = augment(np.ascontiguousarray(crop), self.use_hflip, self.use_rot)

        if np.random.uniform() < self.final_sinc_prob:
            size = random.choice(self.final_sizes)
            omega_c = np.random.uniform(np.pi / 3, np.pi)
            sinc_kernel = torch.FloatTensor(circular_lowpass_kernel(omega_c, size, pad_to=self.kernel1.max_size))
        else:
            sinc_kernel = self.pulse_tensor
        sample = {
            'gt': img2tensor([crop], bgr2rgb=True, float32=True)[0],
            'kernel1': self.kernel1(),
            'kernel2': self.kernel2(),
            'sinc_kernel': sinc_kernel,
            'gt_path': gt_path,
        }
        if self.lq_folder is not None:  # every sample of a batch has the keys: zeros where it is synthetic
            size = self.crop_pad_size // self.scale
            sample['lq'] = img2tensor([lq_crop], bgr2rgb=True, float32=True)[0] if real else torch.zeros(3, size, size)
            sample['lq_is_real'] = torch.tensor(float(real))
        return sample

    def __len__(self):
        return len(self.paths)
