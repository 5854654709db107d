"""Where the clean images of the inpainting datasets come from (a folder searched recursively or a BasicSR
LMDB, optionally narrowed by a meta info file) and how they are read (not a component file)."""
import os
import os.path as osp
import re

from ext.data.lmdb_keys import read_lmdb_keys
from ext.data.ref_cufed_dataset import IMAGE_EXTENSIONS
from ext.data.ref_sr_util import LazyFileClient

# '<name> (h,w,c) [compress level]' (BasicSR meta info), or just '<name>'; names may hold spaces.
META_INFO_LINE = re.compile(r'^(.*?)(?: \(\d+,\d+,\d+\)(?: \d+)?)?$')


def list_images_recursive(folder):
    """Sorted image paths under ``folder`` (sub-folders included, hidden entries skipped)."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder {folder!r} does not exist')
    found = []
    for current, subfolders, files in os.walk(folder):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith('.'))
        found += [osp.join(current, name) for name in files
                  if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith('.')]
    return sorted(found)


def select_from_meta_info(paths, meta_info_file, root):
    """The entries of ``paths`` (relative to ``root``) that ``meta_info_file`` lists, in its order; a name
    may omit the extension (LMDB keys have none)."""
    with open(meta_info_file, encoding='utf-8') as handle:
        wanted = [META_INFO_LINE.match(line.strip()).group(1) for line in handle if line.strip()]
    by_name = {p: p for p in paths}
    by_name.update({osp.splitext(p)[0]: p for p in paths})
    missing = [w for w in wanted if w not in by_name and osp.splitext(w)[0] not in by_name]
    if missing:
        raise FileNotFoundError(f'{meta_info_file}: {len(missing)} listed images are not in {root}, '
                                f'e.g. {missing[:3]}')
    return [by_name.get(w) or by_name[osp.splitext(w)[0]] for w in wanted]


def gt_image_paths(opt, name, keep=None, selection=''):
    """``(paths, io_backend_opt)`` of a dataset's clean images: the images under ``dataroot_gt`` (a folder,
    or an LMDB with ``io_backend: {type: lmdb}``, whose keys are the paths), those in ``meta_info_file``
    when given, then those for which ``keep(relative path)`` is true. ``io_backend_opt`` is the one a
    ``FileClient`` reading them takes; a ValueError naming ``name`` (and ``selection``, what ``keep``
    selects) when none is left."""
    io_backend_opt = dict(opt.get('io_backend') or {'type': 'disk'})
    root = opt['dataroot_gt']
    lmdb = io_backend_opt['type'] == 'lmdb'
    if lmdb:
        io_backend_opt.update(db_paths=[root], client_keys=['gt'])
        paths = read_lmdb_keys(root)
    else:
        paths = [osp.relpath(path, root).replace(os.sep, '/') for path in list_images_recursive(root)]
    if opt.get('meta_info_file'):
        paths = select_from_meta_info(paths, opt['meta_info_file'], root)
    if keep is not None:
        paths = [p for p in paths if keep(p)]
    if not paths:
        raise ValueError(f'{name}: no images in {root}{selection}')
    return (paths if lmdb else [osp.join(root, p) for p in paths]), io_backend_opt


class GTImageFiles:
    """A dataset's clean images: ``paths`` (from :func:`gt_image_paths`, same arguments) and ``read(index)``,
    an RGB uint8 array."""

    def __init__(self, opt, name, keep=None, selection=''):
        self.paths, io_backend_opt = gt_image_paths(opt, name, keep, selection)
        self.files = LazyFileClient(io_backend_opt)

    def __len__(self):
        return len(self.paths)

    def read(self, index):
        return self.files.read_rgb(self.paths[index], 'gt')
