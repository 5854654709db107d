"""Reference-based SR training pairs in the CUFED layout (TTSR, SRNTT)."""
import os
import os.path as osp

from torch.utils import data

from ext.data.lmdb_keys import read_lmdb_keys
from ext.data.ref_sr_util import LazyFileClient, fit_reference, lq_pair, mod_crop, random_flip_rot, to_tensor
from ext.registry import register

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def list_images(folder):
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder {folder!r} does not exist')
    return sorted(name for name in os.listdir(folder)
                  if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith('.'))


@register()
class RefCUFEDDataset(data.Dataset):
    """CUFED training pairs for TTSR: ``train/input`` (GT, 160x160) with ``train/ref`` (reference).

    Yang et al., "Learning Texture Transformer Network for Image Super-Resolution", CVPR 2020;
    Zhang et al., "Image Super-Resolution by Neural Texture Transfer" (SRNTT, CUFED), CVPR 2019.

    Items: ``lq`` (GT bicubic /4), ``lq_up`` (lq bicubic x4), ``gt``, ``ref`` and ``ref_down_up`` (ref
    /4 then x4), float [0, 1] RGB CHW, all resizing PIL bicubic as the original; plus ``lq_path``,
    ``gt_path``, ``ref_path``. The GT is mod-cropped to the scale; the reference is brought to the GT
    size (``ref_fit``). In the train phase flips and rot90 are drawn independently for the
    (lq, lq_up, gt) group and the (ref, ref_down_up) group, as the original.

    Option keys: ``dataroot_gt`` (folder, or ``.lmdb`` with ``io_backend: {type: lmdb}``),
    ``dataroot_ref`` (likewise; on disk pairs are matched by sorted order, in LMDBs by key),
    ``ref_fit`` ('pad': zero-pad smaller refs after computing ``ref_down_up``, the original;
    'resize': resize refs to the GT size), ``use_flip`` (true), ``use_rot`` (true).
    """

    option_keys = frozenset({'dataroot_gt', 'dataroot_ref', 'ref_fit', 'use_flip', 'use_rot'})

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.scale = opt.get('scale', 4)
        self.ref_fit = opt.get('ref_fit', 'pad')
        if self.ref_fit not in ('pad', 'resize'):
            raise ValueError(f"{opt.get('name', 'dataset')}: ref_fit must be 'pad' or 'resize', got {self.ref_fit!r}")
        io_backend_opt = dict(opt.get('io_backend') or {'type': 'disk'})
        gt_root, ref_root = opt['dataroot_gt'], opt['dataroot_ref']
        if io_backend_opt['type'] == 'lmdb':
            io_backend_opt.update(db_paths=[gt_root, ref_root], client_keys=['gt', 'ref'])
            self.gt_paths = read_lmdb_keys(gt_root)
            ref_keys = set(read_lmdb_keys(ref_root))
            missing = [key for key in self.gt_paths if key not in ref_keys]
            if missing:
                raise ValueError(f'{ref_root}: no reference for {len(missing)} GT keys of {gt_root}, e.g. {missing[:3]}')
            self.ref_paths = list(self.gt_paths)
        else:
            gt_names, ref_names = list_images(gt_root), list_images(ref_root)
            if len(gt_names) != len(ref_names):
                raise ValueError(f'{gt_root} has {len(gt_names)} images but {ref_root} has {len(ref_names)}; '
                                 f'CUFED pairs them by sorted order, so the counts must match')
            self.gt_paths = [osp.join(gt_root, name) for name in gt_names]
            self.ref_paths = [osp.join(ref_root, name) for name in ref_names]
        if not self.gt_paths:
            raise ValueError(f'no images in {gt_root}')
        self.files = LazyFileClient(io_backend_opt)

    def __len__(self):
        return len(self.gt_paths)

    def load_pair(self, index):
        return self.files.read_rgb(self.gt_paths[index], 'gt'), self.files.read_rgb(self.ref_paths[index], 'ref')

    def __getitem__(self, index):
        gt, ref = self.load_pair(index)
        gt = mod_crop(gt, self.scale)
        if min(gt.shape[:2]) < self.scale:
            raise ValueError(f'{self.gt_paths[index]}: GT of {gt.shape[0]}x{gt.shape[1]} is smaller than the scale')
        lq, lq_up = lq_pair(gt, self.scale)
        ref, ref_down_up = fit_reference(ref, gt.shape[0], gt.shape[1], self.ref_fit, self.scale)
        if self.opt.get('phase') == 'train':
            lq, lq_up, gt = random_flip_rot([lq, lq_up, gt], self.opt.get('use_flip', True), self.opt.get('use_rot', True))
            ref, ref_down_up = random_flip_rot([ref, ref_down_up], self.opt.get('use_flip', True),
                                               self.opt.get('use_rot', True))
        return {'lq': to_tensor(lq), 'lq_up': to_tensor(lq_up), 'gt': to_tensor(gt), 'ref': to_tensor(ref),
                'ref_down_up': to_tensor(ref_down_up), 'lq_path': self.gt_paths[index],
                'gt_path': self.gt_paths[index], 'ref_path': self.ref_paths[index]}
