"""CUFED5 test set for reference-based SR: one reference level, or the five stitched (TTSR paper)."""
import os
import os.path as osp

import numpy as np
from torch.utils import data

from basicsr.utils import FileClient
from ext.data.ref_cufed_dataset import IMAGE_EXTENSIONS
from ext.data.ref_sr_util import down_up, lq_pair, mod_crop, pad_or_crop, read_rgb, to_tensor
from ext.registry import register

NUM_LEVELS = 5


@register()
class CUFED5Dataset(data.Dataset):
    """CUFED5: 126 inputs ``XXX_0.png`` with references ``XXX_1.png`` .. ``XXX_5.png`` (level 1 is
    the most similar). Zhang et al., SRNTT, CVPR 2019; protocol of Yang et al., TTSR, CVPR 2020.

    Items as :class:`~ext.data.ref_cufed_dataset.RefCUFEDDataset` (``lq``, ``lq_up``, ``gt``, ``ref``,
    ``ref_down_up``, paths), without augmentation. GT and references are mod-cropped to the scale and
    the whole reference is used (original TTSR, level 1 gives its 26.99 dB TTSR-rec number).

    Option keys: ``dataroot`` (the ``CUFED5`` folder), ``ref_level`` (1..5, default 1, or
    'stitched': the paper's Table 1 protocol, each of the five references zero-padded to
    ``stitch_size`` x ``stitch_size`` and stacked vertically into one 5*S x S reference; its
    ``ref_down_up`` is computed per reference before padding), ``stitch_size`` (500).
    """

    option_keys = frozenset({'dataroot', 'ref_level', 'stitch_size'})

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.scale = opt.get('scale', 4)
        self.root = opt['dataroot']
        self.ref_level = opt.get('ref_level', 1)
        if self.ref_level != 'stitched' and self.ref_level not in range(1, NUM_LEVELS + 1):
            raise ValueError(f"CUFED5Dataset: ref_level must be 1..5 or 'stitched', got {self.ref_level!r}")
        self.stitch_size = int(opt.get('stitch_size', 500))
        if self.stitch_size % self.scale:
            raise ValueError(f'CUFED5Dataset: stitch_size must be a multiple of {self.scale}, got {self.stitch_size}')
        if not osp.isdir(self.root):
            raise FileNotFoundError(f'CUFED5 folder {self.root!r} does not exist')
        files = {osp.splitext(name)[0]: name for name in os.listdir(self.root)
                 if name.lower().endswith(IMAGE_EXTENSIONS)}
        self.items = []
        levels = range(1, NUM_LEVELS + 1) if self.ref_level == 'stitched' else [self.ref_level]
        for stem in sorted(s for s in files if s.endswith('_0')):
            prefix = stem[:-2]
            missing = [f'{prefix}_{level}' for level in levels if f'{prefix}_{level}' not in files]
            if missing:
                raise FileNotFoundError(f'{self.root}: {files[stem]} has no reference {missing[0]}.*')
            self.items.append((osp.join(self.root, files[stem]),
                               [osp.join(self.root, files[f'{prefix}_{level}']) for level in levels]))
        if not self.items:
            raise FileNotFoundError(f'{self.root}: no CUFED5 inputs (*_0.png)')
        self.file_client = None

    def __len__(self):
        return len(self.items)

    def stitch(self, refs, paths):
        size, parts, parts_down_up = self.stitch_size, [], []
        for ref, path in zip(refs, paths):
            if max(ref.shape[:2]) > size:
                raise ValueError(f'{path}: reference of {ref.shape[0]}x{ref.shape[1]} is larger than stitch_size {size}')
            parts.append(pad_or_crop(ref, size, size))
            parts_down_up.append(pad_or_crop(down_up(ref, self.scale), size, size))
        return np.concatenate(parts, axis=0), np.concatenate(parts_down_up, axis=0)

    def __getitem__(self, index):
        if self.file_client is None:
            self.file_client = FileClient('disk')
        gt_path, ref_paths = self.items[index]
        gt = mod_crop(read_rgb(self.file_client, gt_path, 'gt'), self.scale)
        refs = [mod_crop(read_rgb(self.file_client, path, 'ref'), self.scale) for path in ref_paths]
        lq, lq_up = lq_pair(gt, self.scale)
        if self.ref_level == 'stitched':
            ref, ref_down_up = self.stitch(refs, ref_paths)
        else:
            ref, ref_down_up = refs[0], down_up(refs[0], self.scale)
        return {'lq': to_tensor(lq), 'lq_up': to_tensor(lq_up), 'gt': to_tensor(gt), 'ref': to_tensor(ref),
                'ref_down_up': to_tensor(ref_down_up), 'lq_path': gt_path, 'gt_path': gt_path,
                'ref_path': ref_paths[0] if len(ref_paths) == 1 else ','.join(ref_paths)}
