"""CUFED / CUFED5 datasets: shapes, PIL-bicubic inputs, ref fitting, augment pairing, LMDB."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

import ext  # noqa: F401
from ext.data.cufed5_dataset import CUFED5Dataset
from ext.data.ref_cufed_dataset import RefCUFEDDataset
from ext.data.ref_sr_util import down_up, lq_pair
from helpers import REPO_ROOT, run_script, skimage_rgb

GT = 32
REF_SIZES = [(32, 32), (20, 28), (40, 36)]  # equal, smaller (padded), larger (cropped)


def write_rgb(path, image):
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def crop(name, h, w, top=0):
    image = skimage_rgb(name)
    return np.ascontiguousarray(image[top:top + h, 40:40 + w])


@pytest.fixture(scope='module')
def cufed(tmp_path_factory):
    root = tmp_path_factory.mktemp('CUFED')
    for sub in ('train/input', 'train/ref', 'test/CUFED5'):
        os.makedirs(root / sub)
    for index, (name, (rh, rw)) in enumerate(zip(('astronaut', 'coffee', 'chelsea'), REF_SIZES)):
        write_rgb(root / 'train/input' / f'{index:06d}.png', crop(name, GT, GT, top=100))
        write_rgb(root / 'train/ref' / f'{index:06d}.png', crop(name, rh, rw, top=140))
    for index, name in enumerate(('rocket', 'brick')):
        write_rgb(root / 'test/CUFED5' / f'{index:03d}_0.png', crop(name, 34, 30, top=10))
        for level in range(1, 6):
            write_rgb(root / 'test/CUFED5' / f'{index:03d}_{level}.png', crop(name, 20 + 2 * level, 24, top=50 + level))
    return root


def train_opt(root, phase='train', **extra):
    opt = dict(name='cufed', type='RefCUFEDDataset', phase=phase, scale=4, io_backend={'type': 'disk'},
               dataroot_gt=str(root / 'train/input'), dataroot_ref=str(root / 'train/ref'))
    opt.update(extra)
    return opt


def as_uint8(tensor):
    return (tensor.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_train_items_without_augmentation(cufed):
    dataset = RefCUFEDDataset(train_opt(cufed, phase='val'))
    assert len(dataset) == 3
    for index, (rh, rw) in enumerate(REF_SIZES):
        item = dataset[index]
        assert item['gt'].shape == item['lq_up'].shape == item['ref'].shape == item['ref_down_up'].shape == (3, GT, GT)
        assert item['lq'].shape == (3, GT // 4, GT // 4)
        assert all(0 <= item[k].min() and item[k].max() <= 1 for k in ('lq', 'gt', 'ref'))
        gt = as_uint8(item['gt'])
        lq, lq_up = lq_pair(gt)  # PIL bicubic, as the original
        assert np.array_equal(as_uint8(item['lq']), lq) and np.array_equal(as_uint8(item['lq_up']), lq_up)
        ref = cv2.cvtColor(cv2.imread(dataset.ref_paths[index]), cv2.COLOR_BGR2RGB)
        h, w = min(rh, GT), min(rw, GT)
        assert np.array_equal(as_uint8(item['ref'])[:h, :w], ref[:h, :w])
        assert np.array_equal(as_uint8(item['ref_down_up'])[:h, :w], down_up(ref)[:h, :w])  # before padding
        if rh < GT:
            assert item['ref'][:, rh:].abs().max() == 0 and item['ref_down_up'][:, rh:].abs().max() == 0
    resized = RefCUFEDDataset(train_opt(cufed, phase='val', ref_fit='resize'))[1]
    assert resized['ref'].shape == (3, GT, GT) and resized['ref'][:, -4:].abs().max() > 0


def dihedral(image):
    variants = []
    for flipped in (image, image[:, ::-1]):
        for k in range(4):
            variants.append(np.rot90(flipped, k))
    return variants


def which_transform(augmented, original):
    matches = [i for i, v in enumerate(dihedral(original)) if v.shape == augmented.shape and np.array_equal(v, augmented)]
    assert matches, 'the augmented image is not a flip/rotation of the original'
    return matches[0]


def test_augmentation_pairs_lq_with_gt_and_draws_ref_independently(cufed):
    plain = RefCUFEDDataset(train_opt(cufed, phase='val'))[0]
    dataset = RefCUFEDDataset(train_opt(cufed))
    original = {k: as_uint8(plain[k]) for k in ('lq', 'lq_up', 'gt', 'ref', 'ref_down_up')}
    differ = 0
    import random
    random.seed(0)
    for _ in range(12):
        item = dataset[0]
        found = {k: which_transform(as_uint8(item[k]), original[k]) for k in original}
        assert found['lq'] == found['lq_up'] == found['gt']
        assert found['ref'] == found['ref_down_up']
        differ += found['ref'] != found['gt']
    assert differ > 0  # the two groups are drawn independently


def test_lmdb_backend_via_prepare_script(cufed, tmp_path):
    os.makedirs(tmp_path / 'bad/train/input')
    run_script([osp.join(REPO_ROOT, 'scripts', 'prepare_cufed.py'), '--root', str(cufed), '--output',
                str(tmp_path), '--workers', '1'], cwd=tmp_path)
    assert sorted(os.listdir(tmp_path)) == ['bad', 'train_input.lmdb', 'train_ref.lmdb']
    opt = train_opt(cufed, phase='val', io_backend={'type': 'lmdb'})
    opt.update(dataroot_gt=str(tmp_path / 'train_input.lmdb'), dataroot_ref=str(tmp_path / 'train_ref.lmdb'))
    from_lmdb, from_disk = RefCUFEDDataset(opt), RefCUFEDDataset(train_opt(cufed, phase='val'))
    assert len(from_lmdb) == 3
    for index in range(3):
        for key in ('lq', 'gt', 'ref', 'ref_down_up'):
            assert torch.equal(from_lmdb[index][key], from_disk[index][key])
    # an unreadable input drops its pair (listed), the rest is written
    (cufed / 'train/input/000001.png').rename(cufed / 'train/input/000001.keep')
    (cufed / 'train/input/000001.png').write_bytes(b'not a png')
    try:
        result = run_script([osp.join(REPO_ROOT, 'scripts', 'prepare_cufed.py'), '--root', str(cufed), '--output',
                             str(tmp_path / 'again'), '--workers', '1'], cwd=tmp_path)
    finally:
        (cufed / 'train/input/000001.keep').replace(cufed / 'train/input/000001.png')
    assert '000001.png' in result.stderr and '2 pairs written' in result.stdout


def test_cufed5_single_level_and_stitched(cufed):
    root = str(cufed / 'test/CUFED5')
    level = CUFED5Dataset(dict(name='cufed5', type='CUFED5Dataset', phase='val', scale=4, dataroot=root, ref_level=3))
    assert len(level) == 2
    item = level[0]
    assert item['gt'].shape == (3, 32, 28) and item['lq'].shape == (3, 8, 7)  # mod-cropped from 34x30
    assert item['ref'].shape == item['ref_down_up'].shape == (3, 24, 24)  # 26x24 mod-cropped, whole ref
    assert item['ref_path'].endswith('000_3.png')
    stitched = CUFED5Dataset(dict(name='cufed5', type='CUFED5Dataset', phase='val', scale=4, dataroot=root,
                                  ref_level='stitched', stitch_size=32))
    item = stitched[1]
    assert item['ref'].shape == item['ref_down_up'].shape == (3, 5 * 32, 32)
    single = CUFED5Dataset(dict(name='c', type='CUFED5Dataset', phase='val', scale=4, dataroot=root, ref_level=2))[1]
    assert torch.equal(item['ref'][:, 32:32 + 24, :24], single['ref'])  # level 2 is the second block
    assert item['ref'][:, 32 + 24:64].abs().max() == 0  # zero padding below it
    with pytest.raises(ValueError, match='ref_level'):
        CUFED5Dataset(dict(name='c', dataroot=root, ref_level=6))
