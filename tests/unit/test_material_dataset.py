"""MaterialMultiscaleDataset on disk and in an LMDB: crops, kernels, unreadable files, flat-crop rejection."""
import logging
import os.path as osp
import random
import sys

import cv2
import numpy as np
import pytest
import torch

from helpers import REPO_ROOT, skimage_rgb, write_image_folder

import ext  # noqa: F401
from basicsr.utils.registry import DATASET_REGISTRY
from ext.data.texture_score import texture_score
from ext.registry import DATASETS

sys.path.insert(0, osp.join(REPO_ROOT, 'scripts'))
import create_lmdb  # noqa: E402

KERNEL_OPTIONS = {
    'blur_kernel_size': 21, 'kernel_list': ['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso',
                                            'plateau_aniso'],
    'kernel_prob': [0.45, 0.25, 0.12, 0.03, 0.12, 0.03], 'sinc_prob': 0.1, 'blur_sigma': [0.2, 3],
    'betag_range': [0.5, 4], 'betap_range': [1, 2],
    'blur_kernel_size2': 21, 'kernel_list2': ['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso',
                                              'plateau_aniso'],
    'kernel_prob2': [0.45, 0.25, 0.12, 0.03, 0.12, 0.03], 'sinc_prob2': 0.1, 'blur_sigma2': [0.2, 1.5],
    'betag_range2': [0.5, 4], 'betap_range2': [1, 2], 'final_sinc_prob': 0.8,
}


def dataset_options(root, **overrides):
    opt = {'name': 'materials', 'type': 'MaterialMultiscaleDataset', 'phase': 'train', 'dataroot_gt': root,
           'io_backend': {'type': 'disk'}, 'gt_size': 32, 'crop_pad_size': 40, 'use_hflip': True, 'use_rot': False,
           **KERNEL_OPTIONS}
    opt.update(overrides)
    return opt


def build(opt):
    return DATASET_REGISTRY.get('MaterialMultiscaleDataset')(opt)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    """``HR/`` with 4 real crops of 48 px plus one of 24 px; meta-info lists of all and of two."""
    folder = str(tmp_path_factory.mktemp('materials'))
    write_image_folder(osp.join(folder, 'HR'), 4, 48, names=('brick', 'gravel', 'grass', 'coffee'))
    cv2.imwrite(osp.join(folder, 'HR', 'small.v1.png'), cv2.cvtColor(skimage_rgb('rocket')[:24, :24],
                                                                    cv2.COLOR_RGB2BGR))
    with open(osp.join(folder, 'all.txt'), 'w') as handle:
        handle.write('HR/0000.png\nHR/0001.png\nHR/0002.png\nHR/0003.png\nHR/small.v1.png\n')
    with open(osp.join(folder, 'reduced.txt'), 'w') as handle:
        handle.write('HR/0001.png\nHR/small.v1.png\n')
    return folder


def test_disk_sample_matches_realesrgan_dataset_contract(root):
    dataset = build(dataset_options(root, meta_info=osp.join(root, 'all.txt')))
    assert len(dataset) == 5
    random.seed(0)
    np.random.seed(0)
    for index in range(len(dataset)):
        sample = dataset[index]
        assert set(sample) == {'gt', 'kernel1', 'kernel2', 'sinc_kernel', 'gt_path'}
        # the region degraded before the model's gt_size crop
        assert sample['gt'].shape == (3, 40, 40) and sample['gt'].dtype == torch.float32
        assert 0 <= float(sample['gt'].min()) and float(sample['gt'].max()) <= 1
        for key in ('kernel1', 'kernel2', 'sinc_kernel'):
            assert sample[key].shape == (21, 21) and abs(float(sample[key].sum()) - 1) < 1e-3
    assert sample['gt_path'] == osp.join(root, 'HR', 'small.v1.png')  # 24 px: reflect-padded up to 40
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch['gt'].shape == (2, 3, 40, 40) and batch['kernel1'].shape == (2, 21, 21)


def test_crop_pad_size_default_and_errors(root):
    opt = dataset_options(root)
    del opt['crop_pad_size']
    assert build(opt)[0]['gt'].shape == (3, 400, 400)  # upstream's fixed pad/crop size
    with pytest.raises(ValueError, match=r'crop_pad_size \(24.*must be >= gt_size \(32\)'):
        build(dataset_options(root, crop_pad_size=24))
    with pytest.raises(ValueError, match='crop_pad_size 90 must be a multiple of scale 4'):
        build(dataset_options(root, crop_pad_size=90, gt_size=80, scale=4))
    with pytest.raises(ValueError, match='crop_pad_size >= 44'):
        build(dataset_options(root, crop_pad_size=40, scale=4))


def test_crop_is_a_window_of_the_image(root):
    dataset = build(dataset_options(root, meta_info=osp.join(root, 'all.txt'), use_hflip=False, gt_size=32,
                                    crop_pad_size=40))
    image = cv2.imread(osp.join(root, 'HR', '0000.png'))[..., ::-1].astype(np.float32) / 255
    crop = dataset[0]['gt'].permute(1, 2, 0).numpy()
    matches = [(top, left) for top in range(9) for left in range(9)
               if np.allclose(image[top:top + 40, left:left + 40], crop)]
    assert len(matches) == 1


def test_kernel_size_option_and_errors(root):
    dataset = build(dataset_options(root, blur_kernel_size=15, blur_kernel_size2=9))
    sample = dataset[0]
    assert sample['kernel1'].shape == (15, 15) and sample['kernel2'].shape == (9, 9)
    assert sample['sinc_kernel'].shape == (15, 15)
    assert len(dataset) == 5  # no meta_info: every image under the root
    with pytest.raises(ValueError, match='blur_kernel_size'):
        build(dataset_options(root, blur_kernel_size=20))
    opt = dataset_options(root)
    del opt['kernel_prob2']
    with pytest.raises(KeyError, match='kernel_prob2'):
        build(opt)
    assert {'min_texture_score', 'texture_tries', 'meta_info', 'blur_sigma2'} <= build(opt | KERNEL_OPTIONS).option_keys


def test_lmdb_backend_and_meta_info_selection(root, tmp_path):
    lmdb_path = str(tmp_path / 'materials.lmdb')
    create_lmdb.main(['--meta_info', osp.join(root, 'all.txt'), '--root', root, '--output', lmdb_path,
                      '--workers', '1'])
    everything = build(dataset_options(lmdb_path, io_backend={'type': 'lmdb'}))
    assert everything.paths == ['HR/0000', 'HR/0001', 'HR/0002', 'HR/0003', 'HR/small_v1']
    reduced = DATASETS.build(dict(type='ext.MaterialMultiscaleDataset',  # MMEngine route, same class
                                  opt=dataset_options(lmdb_path, meta_info=osp.join(root, 'reduced.txt'),
                                                      use_hflip=False)))
    assert reduced.paths == ['HR/0001', 'HR/small_v1']
    disk = build(dataset_options(root, meta_info=osp.join(root, 'reduced.txt'), use_hflip=False))
    random.seed(3)
    from_lmdb = reduced[0]
    random.seed(3)
    from_disk = disk[0]
    assert from_lmdb['gt_path'] == 'HR/0001' and torch.equal(from_lmdb['gt'], from_disk['gt'])
    bad_list = tmp_path / 'other.txt'
    bad_list.write_text('HR/0001.png\nmultiscale/0001T0.png\n')
    with pytest.raises(ValueError, match='multiscale/0001T0'):
        build(dataset_options(lmdb_path, meta_info=str(bad_list)))
    with pytest.raises(ValueError, match='.lmdb'):
        build(dataset_options(root, io_backend={'type': 'lmdb'}))


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_unreadable_or_missing_file_is_logged_once_and_replaced(root, tmp_path):
    (tmp_path / 'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 32)
    meta = tmp_path / 'meta.txt'
    meta.write_text(f"{osp.join(root, 'HR', '0000.png')}\n{tmp_path / 'corrupt.png'}\n{tmp_path / 'missing.png'}\n")
    dataset = build(dataset_options('/', meta_info=str(meta)))
    records = _Records()
    logger = logging.getLogger('basicsr')
    logger.addHandler(records)
    try:
        random.seed(0)
        paths = [dataset[index]['gt_path'] for index in (1, 2, 1, 2, 1)]
    finally:
        logger.removeHandler(records)
    assert set(paths) == {osp.join(root, 'HR', '0000.png')}
    assert len([m for m in records.messages if 'corrupt.png' in m]) == 1
    assert len([m for m in records.messages if 'missing.png' in m]) == 1

    meta.write_text(f"{tmp_path / 'corrupt.png'}\n{tmp_path / 'missing.png'}\n")
    hopeless = build(dataset_options('/', meta_info=str(meta), max_read_failures=6))
    with pytest.raises(RuntimeError, match='6 unreadable files in a row'):
        hopeless[0]


def test_flat_crops_rejected_with_bounded_tries(tmp_path):
    image = np.full((256, 256, 3), 128, np.uint8)  # one-coloured, except a textured 64 px corner
    image[:64, :64] = cv2.cvtColor(skimage_rgb('gravel')[:64, :64], cv2.COLOR_RGB2BGR)
    (tmp_path / 'HR').mkdir()
    cv2.imwrite(str(tmp_path / 'HR' / 'tile.png'), image)
    threshold = 0.01
    plain = build(dataset_options(str(tmp_path), crop_pad_size=48, use_hflip=False))
    picky = build(dataset_options(str(tmp_path), crop_pad_size=48, use_hflip=False, min_texture_score=threshold,
                                  texture_tries=200))
    random.seed(0)
    plain_scores = [texture_score(plain[0]['gt'].permute(1, 2, 0).numpy()) for _ in range(20)]
    picky_scores = [texture_score(picky[0]['gt'].permute(1, 2, 0).numpy()) for _ in range(20)]
    assert sum(score < threshold for score in plain_scores) >= 10
    assert all(score >= threshold for score in picky_scores)
    # bounded: an entirely flat image still yields a crop after texture_tries draws
    cv2.imwrite(str(tmp_path / 'HR' / 'tile.png'), np.full((64, 64, 3), 7, np.uint8))
    flat = build(dataset_options(str(tmp_path), crop_pad_size=48, min_texture_score=threshold, texture_tries=3))
    assert flat[0]['gt'].shape == (3, 48, 48)


def test_training_set_leaves_bad_files_to_the_shared_guard(root, tmp_path):
    """Wrapped for training, bad files go to the engine's guard: logged once, replaced from the seed, limited."""
    from ext.engine.bad_data import BadFileGuard, BadTrainingData
    from ext.engine.sampling import PerSampleSeededDataset
    (tmp_path / 'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 32)
    (tmp_path / 'empty.png').write_bytes(b'')
    good = [osp.join(root, 'HR', f'000{i}.png') for i in range(4)]
    meta = tmp_path / 'meta.txt'
    meta.write_text('\n'.join(good[:2] + [str(tmp_path / 'corrupt.png')] + good[2:] + [str(tmp_path / 'empty.png')]))

    def draws(max_share):
        dataset = build(dataset_options('/', meta_info=str(meta)))
        wrapped = PerSampleSeededDataset(dataset, BadFileGuard(len(dataset), max_share, 10))
        records = _Records()
        logger = logging.getLogger('basicsr')
        logger.addHandler(records)
        try:
            return [wrapped[(index, 1000 + index)]['gt_path'] for index in range(len(dataset))], records.messages
        finally:
            logger.removeHandler(records)

    paths, messages = draws(0.5)
    assert set(paths) <= set(good) and draws(0.5)[0] == paths  # replacements follow the seeds
    for name in ('corrupt.png', 'empty.png'):
        assert len([m for m in messages if name in m]) == 1, messages
    assert any('empty file' in m for m in messages)
    assert not any('MaterialMultiscaleDataset: cannot read' in m for m in messages)  # no second retry loop
    with pytest.raises(BadTrainingData, match='bad_file_max_share'):
        draws(0.2)


@pytest.fixture(scope='module')
def pairs(tmp_path_factory):
    """``HR/`` crops of 64 px and their x4 area-downscaled ``LR/`` images under the same names."""
    folder = str(tmp_path_factory.mktemp('pairs'))
    paths = write_image_folder(osp.join(folder, 'HR'), 3, 64, names=('brick', 'gravel', 'coffee'))
    import os
    os.makedirs(osp.join(folder, 'LR'))
    for path in paths:
        image = cv2.imread(path)
        cv2.imwrite(osp.join(folder, 'LR', osp.basename(path)), cv2.resize(image, (16, 16),
                                                                           interpolation=cv2.INTER_AREA))
    return folder


def _draw(dataset, seed):
    from ext.utils.random_states import seeded
    with seeded(seed):
        return dataset[seed % len(dataset)]


def test_real_pairs_mix_with_synthetic_ones_by_lq_prob(pairs):
    """Real-ESRGAN's datasets train on synthetic LR only; with dataroot_lq and lq_prob a sample is the real pair
    with that probability, cropped with its GT; without real pairs drawn, the samples are exactly as before."""
    base = dataset_options(osp.join(pairs, 'HR'), scale=4, crop_pad_size=48, gt_size=32)
    plain = build(base)
    never = build(dict(base, dataroot_lq=osp.join(pairs, 'LR'), lq_prob=0))
    always = build(dict(base, dataroot_lq=osp.join(pairs, 'LR'), dataroot_lq_prob=1.0))  # traiNNer-redux's name
    half = build(dict(base, dataroot_lq=osp.join(pairs, 'LR'), lq_prob=0.5))
    for seed in range(6):
        reference, synthetic = _draw(plain, seed), _draw(never, seed)
        assert torch.equal(reference['gt'], synthetic['gt']) and 'lq' not in reference
        assert synthetic['lq_is_real'] == 0 and synthetic['lq'].shape == (3, 12, 12) and not synthetic['lq'].any()
        real = _draw(always, seed)
        assert real['lq_is_real'] == 1 and real['lq'].shape == (3, 12, 12) and real['gt'].shape == (3, 48, 48)
        downscaled = torch.nn.functional.interpolate(real['gt'][None], scale_factor=0.25, mode='area')[0]
        assert (downscaled - real['lq']).abs().mean() < 0.03  # the LQ of the same window, not another one
        assert torch.equal(_draw(half, seed)['lq'], _draw(half, seed)['lq'])  # a function of the seed
    kinds = {float(_draw(half, seed)['lq_is_real']) for seed in range(20)}
    assert kinds == {0.0, 1.0}


def test_real_pair_options_are_checked(pairs):
    base = dataset_options(osp.join(pairs, 'HR'), scale=4, crop_pad_size=48, gt_size=32)
    for overrides, message in (({'lq_prob': 0.5}, 'needs dataroot_lq'),
                               ({'dataroot_lq': osp.join(pairs, 'LR'), 'lq_prob': 1.5}, 'probability in'),
                               ({'dataroot_lq': osp.join(pairs, 'LR'), 'lq_prob': 0.5, 'dataroot_lq_prob': 0.5},
                                'not both')):
        with pytest.raises(ValueError, match=message):
            build(dict(base, **overrides))
    wrong = build(dict(base, dataroot_lq=osp.join(pairs, 'HR'), lq_prob=1.0))  # the GT folder given as LQ
    with pytest.raises(ValueError, match=r'the LQ image .*0000.png is 64x64, expected 16x16'):
        _draw(wrong, 0)


def test_real_esrgan_models_train_on_the_real_lq_of_real_pairs():
    from ext.models.realesrgan_synthesis import RealESRGANSynthesis
    from test_aesrgan_model import tiny_model_opt
    opt = tiny_model_opt('train_multiaesrgan_x4plus.yml', batch=2)
    opt.update(gt_size=80, queue_size=2)
    synthesis = RealESRGANSynthesis(opt, torch.device('cpu'), is_train=True)
    pulse = torch.zeros(2, 21, 21)
    pulse[:, 10, 10] = 1
    data = {'gt': torch.rand(2, 3, 80, 80), 'kernel1': pulse, 'kernel2': pulse, 'sinc_kernel': pulse,
            'lq': torch.rand(2, 3, 20, 20), 'lq_is_real': torch.tensor([1.0, 0.0])}
    lq, gt = synthesis.training_pair(data, sharpen_source=False, sharpen_target=False)  # the queue is filling
    assert torch.equal(lq[0], data['lq'][0]) and not torch.equal(lq[1], data['lq'][1])
    assert torch.equal(gt, data['gt'])
