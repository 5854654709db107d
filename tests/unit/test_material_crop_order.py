"""Real-ESRGAN's crop order: degrade a crop_pad_size region, then take the gt_size training crop.

Cropping to gt_size first (this package's former order) makes every border of the training LQ a
border of the degraded image, where blur and resizing saw reflect padding instead of the picture.
"""
import os.path as osp
import random

import pytest
import torch
import yaml

import ext  # noqa: F401
from basicsr.models import build_model
from basicsr.utils import set_random_seed
from basicsr.utils.registry import DATASET_REGISTRY
from helpers import REPO_ROOT, write_image_folder

GT_SIZE, SCALE, BATCH = 80, 4, 2


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('materials'))
    write_image_folder(osp.join(root, 'HR'), 4, 160, names=('brick', 'gravel', 'grass', 'coffee'))
    return root


def options(root, crop_pad_size):
    """train_realesrnet_x4plus.yml with a tiny network and a pool that never fills (batches pass through);
    without the GT sharpening, whose 101-tap filter dominates the time on a CPU."""
    with open(osp.join(REPO_ROOT, 'options', 'train_realesrnet_x4plus.yml')) as handle:
        opt = yaml.safe_load(handle)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=0, gt_size=GT_SIZE, queue_size=BATCH * 16,
               gt_usm=False)
    train = opt['datasets']['train']
    train.update(dataroot_gt=root, meta_info=None, io_backend={'type': 'disk'}, gt_size=GT_SIZE,
                 crop_pad_size=crop_pad_size, batch_size_per_gpu=BATCH, scale=SCALE, phase='train')
    opt['network_g'].update(num_feat=4, num_block=1, num_grow_ch=4)
    opt['path'] = {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None}
    opt['train'].pop('perceptual_opt', None)
    return opt


def training_pairs(root, crop_pad_size, batches=6):
    """``[(degraded region, training lq, dataset gt, training gt)]`` per sample, from the model's feed_data."""
    opt = options(root, crop_pad_size)
    set_random_seed(0)
    dataset = DATASET_REGISTRY.get('MaterialMultiscaleDataset')(opt['datasets']['train'])
    model = build_model(opt)
    degraded = []
    model.synthesis.degradation.register_forward_hook(lambda module, inputs, output: degraded.append(output))
    pairs = []
    for _ in range(batches):
        data = torch.utils.data.default_collate([dataset[random.randrange(len(dataset))] for _ in range(BATCH)])
        model.feed_data(data)
        pairs += zip(degraded[-1], model.lq, data['gt'], model.gt)
    return pairs


def crop_offset(region, crop):
    """``(top, left)`` where ``crop`` lies in ``region`` exactly, or None."""
    size = crop.shape[-1]
    for top in range(region.shape[-2] - size + 1):
        for left in range(region.shape[-1] - size + 1):
            if torch.equal(region[:, top:top + size, left:left + size], crop):
                return top, left
    return None


def test_training_lq_is_cut_from_inside_a_larger_degraded_region(photos):
    lq_size = GT_SIZE // SCALE
    touching = []
    pairs = training_pairs(photos, crop_pad_size=128)
    for degraded, lq, region, gt in pairs:
        assert degraded.shape[-1] == 128 // SCALE and lq.shape[-1] == lq_size  # degraded first, cropped after
        offset = crop_offset(degraded, lq)
        assert offset is not None, 'the training LQ must be a crop of the degraded region'
        top, left = offset
        # its GT is the same window of the dataset's region
        assert torch.equal(gt, region[:, top * SCALE:(top + lq_size) * SCALE, left * SCALE:(left + lq_size) * SCALE])
        touching.append(min(top, left) == 0 or max(top, left) == degraded.shape[-1] - lq_size)
    # only crops drawn at the very edge (one offset per batch, as upstream) share a border with the
    # degraded image: 1 - (11/13)^2, about 28 % of the batches here
    assert sum(touching) <= len(pairs) // 2, f'{sum(touching)} of {len(pairs)} training LQs touch the degraded border'


def test_former_order_behind_crop_pad_size_equal_to_gt_size(photos):
    for degraded, lq, region, gt in training_pairs(photos, crop_pad_size=GT_SIZE, batches=1):
        # the whole degraded image is the training LQ: all four of its borders are degraded padding
        assert torch.equal(degraded, lq) and torch.equal(region, gt)
