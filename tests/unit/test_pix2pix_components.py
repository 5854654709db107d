"""pix2pix / VGG inpainting GAN (seed 002): architectures at 256 and 512, losses, masks, the plateau
rule on scripted losses, and which parameters the encoder freeze lets move."""
import copy
import math
import os.path as osp
import random

import cv2
import numpy as np
import pytest
import torch

import ext  # noqa: F401
from ext.archs.patchgan_discriminator_arch import PatchGANDiscriminator, patchgan_receptive_field
from ext.archs.pix2pix_unet_arch import Pix2PixUNetGenerator
from ext.archs.vgg_patch_discriminator_arch import VGGPatchDiscriminator
from ext.archs.vgg_unet_arch import VGGUNetGenerator
from ext.data.masked_image_dataset import MaskedImageDataset, fill_hole, push_pull_fill, random_mask
from ext.losses.hole_weighted_l1_loss import HoleWeightedL1Loss
from ext.losses.inpaint_perceptual_loss import InpaintPerceptualLoss
from ext.models.plateau_rule import LearningRatePlateau, PlateauRule
from ext.options import OptionError
from helpers import REPO_ROOT, load_script, write_image_folder

create_lmdb = load_script('create_lmdb')


def meta_shape(net, shape):
    """Output shape of ``net`` on an input of ``shape``, on the meta device (shapes only, no compute)."""
    with torch.no_grad():
        return tuple(net.to('meta')(torch.empty(shape, device='meta')).shape)


@pytest.mark.parametrize('size', [256, 512])
def test_architectures_at_the_seed_sizes(size):
    with torch.device('meta'):  # full-width networks, built and run without memory or compute
        unet = Pix2PixUNetGenerator(image_size=size)
        patch = PatchGANDiscriminator()
        vgg_unet = VGGUNetGenerator(load_pretrained_vgg=False)
        vgg_d = VGGPatchDiscriminator(load_pretrained_vgg=False)
    assert unet.num_downs == int(math.log2(size))  # down to a 1x1 bottleneck: 8 for 256, 9 for 512
    assert [next(m for m in b if isinstance(m, torch.nn.Conv2d)).out_channels for b in unet.down] == \
        [64, 128, 256] + [512] * (unet.num_downs - 3)
    assert meta_shape(unet, (1, 4, size, size)) == (1, 3, size, size)
    assert meta_shape(patch, (1, 7, size, size)) == (1, 1, size // 8 - 2, size // 8 - 2)
    assert meta_shape(vgg_unet, (1, 4, size, size)) == (1, 3, size, size)
    assert meta_shape(vgg_d, (1, 7, size, size)) == (1, 1, size // 8, size // 8)
    if size == 256:  # pix2pix's published generator size
        assert round(sum(p.numel() for p in unet.parameters()) / 1e6, 1) == 54.4


def test_pix2pix_layers_and_value_range():
    unet = Pix2PixUNetGenerator(image_size=256)
    dropouts = [i for i, block in enumerate(unet.up) if any(isinstance(m, torch.nn.Dropout) for m in block)]
    assert dropouts == [1, 2, 3]  # CD512 x 3 after the innermost block
    assert isinstance(unet.down[0][0], torch.nn.Conv2d) and len(unet.down[0]) == 1  # C64: no norm, no activation
    assert isinstance(unet.last[-1], torch.nn.Tanh)
    assert patchgan_receptive_field(3) == 70 and patchgan_receptive_field(1) == 16
    small = Pix2PixUNetGenerator(image_size=32, num_feat=8).eval()
    out = small(torch.rand(2, 4, 40, 24))  # not a multiple of 32: padded and cropped back
    assert out.shape == (2, 3, 40, 24) and out.min() >= 0 and out.max() <= 1


def test_vgg_unet_loads_vgg19_from_a_local_file_and_starts_exact(vgg19_weights):
    net = VGGUNetGenerator(encoder_blocks=2, decoder_feat=[8, 8], bottleneck_feat=8, vgg_weights_path=vgg19_weights)
    state = torch.load(vgg19_weights, weights_only=True)
    assert torch.equal(net.encoder.vgg[2].weight, state['features.2.weight'])
    image = torch.rand(1, 3, 16, 16)
    with_mask = net.encoder(torch.cat([image, torch.ones(1, 1, 16, 16)], 1))
    without = net.encoder(torch.cat([image, torch.zeros(1, 1, 16, 16)], 1))
    assert torch.equal(with_mask[-1], without[-1])  # the mask's conv starts at zero: pretrained features exact
    assert len(list(net.encoder_parameters())) == 8  # conv1_1, conv1_2, conv2_1, conv2_2 weights and biases
    net.set_encoder_trainable(False)
    assert not any(p.requires_grad for p in net.encoder_parameters())
    assert net.encoder.extra.weight.requires_grad
    with pytest.raises(FileNotFoundError, match='vgg19'):
        VGGUNetGenerator(vgg_weights_path=osp.join(osp.dirname(vgg19_weights), 'missing', 'vgg19-dcbb9e9d.pth'))


def test_losses(vgg19_weights):
    pred, target = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    target[..., :2] = 0.5  # error 0.5 left, 1 right
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 2:] = 1  # the hole is the right half
    assert HoleWeightedL1Loss(loss_weight=1, range_scale=1)(pred, target, mask).item() == pytest.approx(0.75)
    assert HoleWeightedL1Loss(loss_weight=100)(pred, target, mask).item() == pytest.approx(150)  # [-1, 1] scale
    assert HoleWeightedL1Loss(1, valid_weight=0, range_scale=1)(pred, target, mask).item() == pytest.approx(1.0)
    assert HoleWeightedL1Loss(1, hole_weight=3, range_scale=1)(pred, target, mask).item() == pytest.approx(3.5 / 4)

    percep = InpaintPerceptualLoss(vgg_weights_path=vgg19_weights)
    assert sorted(percep.indices) == [3, 8, 17]  # relu1_2, relu2_2, relu3_4: before pool1, pool2, pool3
    x, y = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    features = percep.features(x)
    expected = 0.5 * sum(torch.nn.functional.mse_loss(features[k], percep.features(y)[k]) for k in features)
    assert percep(x, y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert percep(x, x).item() == 0
    with pytest.raises(ValueError, match='relu9_9'):
        InpaintPerceptualLoss(layer_weights={'relu9_9': 1}, vgg_weights_path=vgg19_weights)


def test_masks_from_files_boxes_and_seeded_strokes(tmp_path):
    write_image_folder(str(tmp_path / 'img'), 3, 40)
    (tmp_path / 'masks').mkdir()
    hole = np.zeros((20, 20), np.uint8)
    hole[5:10, 5:15] = 255
    cv2.imwrite(str(tmp_path / 'masks' / '0001.png'), hole)
    base = {'name': 'm', 'dataroot_gt': str(tmp_path / 'img'), 'image_size': 32, 'phase': 'val'}
    by_file = MaskedImageDataset({**base, 'mask_mode': 'file', 'dataroot_mask': str(tmp_path / 'masks')})
    item = by_file[1]
    assert item['mask'].shape == (1, 32, 32) and item['mask'].sum() == 8 * 16  # resized nearest to 32x32
    assert torch.all(item['lq'][:, item['mask'][0] > 0] == 0.5)
    assert torch.equal(item['lq'][:, item['mask'][0] == 0], item['gt'][:, item['mask'][0] == 0])
    with pytest.raises(FileNotFoundError, match='mask_pairing: name'):
        MaskedImageDataset({**base, 'mask_mode': 'file', 'dataroot_mask': str(tmp_path / 'masks'),
                            'mask_pairing': 'name'})

    box = MaskedImageDataset({**base, 'mask_mode': 'box'})[0]['mask'][0]
    assert box[16:25, 16:25].all() and box.sum() == 9 * 9  # the FFHQ rule [0.5w:0.8w, 0.5h:0.8h]

    strokes = MaskedImageDataset({**base, 'mask_mode': 'random'})
    assert torch.equal(strokes[0]['mask'], strokes[0]['mask'])  # fixed per file outside training
    assert not torch.equal(strokes[0]['mask'], strokes[1]['mask'])
    other_seed = MaskedImageDataset({**base, 'mask_mode': 'random', 'mask_seed': 1})
    assert not torch.equal(strokes[0]['mask'], other_seed[0]['mask'])
    mask = random_mask(64, 64, np.random.default_rng(0), {'strokes': [0, 0], 'boxes': [1, 1]})
    rows, cols = np.nonzero(mask)
    assert mask.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # one box
    with pytest.raises(ValueError, match='mask_mode'):
        MaskedImageDataset({**base, 'mask_mode': 'circles'})


def test_smooth_hole_fill_is_local_and_keeps_the_known_pixels():
    ramp = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))  # dark left, bright right
    image = np.stack([ramp, 1 - ramp, np.full_like(ramp, 0.25)], axis=-1)
    mask = np.zeros((32, 32), np.float32)
    mask[8:24, 6:26] = 1
    hole = mask > 0.5
    filled = fill_hole(image, mask, 'smooth')
    assert filled.dtype == np.float32 and filled.shape == image.shape
    assert np.array_equal(filled[~hole], image[~hole])  # the known pixels exactly
    assert np.allclose(filled[hole][:, 2], 0.25, atol=1e-6)  # a constant channel stays constant
    # local: the hole's left side gets the dark colours around it, the right side the bright ones (a flat
    # fill cannot do that); the ramp is followed to within a few grey levels across a 20-px-wide hole
    assert filled[8:24, 6:10, 0].max() < 0.35 and filled[8:24, 22:26, 0].min() > 0.65
    assert np.abs(filled[hole][:, 0] - image[hole][:, 0]).mean() < 0.03
    assert filled.min() >= 0 and filled.max() <= 1  # blends of known colours: never outside their range
    flat = fill_hole(image, mask, 0.5)
    assert np.all(flat[hole] == 0.5) and np.array_equal(flat[~hole], image[~hole])
    mean = fill_hole(image, mask, 'mean')
    assert np.allclose(mean[hole], image[~hole].mean(axis=0), atol=1e-6)
    # odd sizes, one channel, a hole at the border and no known pixel at all
    odd = np.random.default_rng(0).random((13, 7), dtype=np.float32)
    border = np.zeros((13, 7), np.float32)
    border[:5, :] = 1
    out = push_pull_fill(odd, 1 - border)
    assert out.shape == (13, 7) and np.array_equal(out[5:], odd[5:]) and np.isfinite(out).all()
    assert np.all(push_pull_fill(odd, np.zeros((13, 7))) == 0.5)
    for bad in ('smoth', 1.5, True, None):
        with pytest.raises(ValueError, match="hole_fill must be a number in \\[0, 1\\], 'mean' or 'smooth'"):
            fill_hole(image, mask, bad)


def test_dataset_smooth_fill_from_a_folder_and_from_an_lmdb(tmp_path):
    write_image_folder(str(tmp_path / 'img'), 3, 40)
    lmdb_path = str(tmp_path / 'photos.lmdb')
    create_lmdb.main(['--input', str(tmp_path / 'img'), '--output', lmdb_path, '--workers', '1'])
    base = {'name': 'm', 'phase': 'val', 'crop_size': 32, 'mask_mode': 'random', 'hole_fill': 'smooth',
            'random_mask': {'strokes': [0, 0], 'boxes': [1, 1], 'box_size': [0.3, 0.5]}}
    disk = MaskedImageDataset({**base, 'dataroot_gt': str(tmp_path / 'img')})
    db = MaskedImageDataset({**base, 'dataroot_gt': lmdb_path, 'io_backend': {'type': 'lmdb'}})
    assert db.paths == ['0000', '0001', '0002'] and len(db) == 3
    for index in range(3):
        a, b = disk[index], db[index]
        assert b['gt_path'] == f'{index:04d}' and b['gt'].shape == (3, 32, 32)
        assert torch.equal(a['gt'], b['gt'])  # the same pixels (PNG records, lossless)
        assert torch.equal(a['mask'], b['mask'])  # validation masks follow the file name, not the backend
        assert torch.equal(a['lq'], b['lq'])
        gt, mask = b['gt'].permute(1, 2, 0).numpy(), b['mask'][0].numpy()
        assert np.array_equal(b['lq'].permute(1, 2, 0).numpy(), fill_hole(gt, mask, 'smooth'))
        hole = mask > 0.5
        assert hole.any() and not np.allclose(b['lq'][:, torch.from_numpy(hole)], 0.5)
    with pytest.raises(ValueError, match="m: hole_fill must be a number in \\[0, 1\\], 'mean' or 'smooth', "
                                         "got 'blur'"):
        MaskedImageDataset({**base, 'dataroot_gt': lmdb_path, 'io_backend': {'type': 'lmdb'}, 'hole_fill': 'blur'})


def test_dataset_random_scale_and_rotations_in_training_only(tmp_path):
    folder = tmp_path / 'img'
    folder.mkdir()
    ramp = np.tile(np.arange(48, dtype=np.uint8)[None, :] * 5, (40, 1))  # 40 x 48, brightness grows to the right
    cv2.imwrite(str(folder / 'a.png'), np.stack([ramp, ramp // 2, 255 - ramp], axis=-1))
    base = {'name': 'm', 'dataroot_gt': str(folder), 'crop_size': 32, 'mask_mode': 'random', 'use_flip': False}
    plain = MaskedImageDataset({**base, 'phase': 'train'})
    scaled = MaskedImageDataset({**base, 'phase': 'train', 'random_scale': [2.0, 2.0]})
    rotated = MaskedImageDataset({**base, 'phase': 'train', 'use_rot': True, 'use_flip': True})
    random.seed(0)

    def step(dataset):  # the ramp's mean step per pixel along the first row, in grey levels
        return float(np.diff(dataset[0]['gt'][2, 0].numpy()).mean()) * 255

    assert [step(plain) for _ in range(3)] == pytest.approx([5, 5, 5], abs=1e-3)
    assert [step(scaled) for _ in range(3)] == pytest.approx([2.5, 2.5, 2.5], abs=0.2)  # twice as large
    # never smaller than the crop: 0.1 of 40 x 48 is raised to 0.8 (the crop is the whole height, resized)
    small = MaskedImageDataset({**base, 'phase': 'train', 'random_scale': [0.1, 0.1]})
    item = small[0]['gt']
    assert item.shape == (3, 32, 32) and float(np.diff(item[2, 0].numpy()).mean()) * 255 == pytest.approx(6.25, abs=0.3)
    orientations = set()
    for _ in range(40):
        gt = rotated[0]['gt'][2].numpy()  # the ramp channel: along rows or columns, either way
        along_rows = np.allclose(gt, gt[:1], atol=1e-6)
        orientations.add((along_rows, bool(gt[0, 0] < gt[-1, -1])))
    assert orientations == {(True, True), (True, False), (False, True), (False, False)}
    val = MaskedImageDataset({**base, 'phase': 'val', 'random_scale': [2.0, 2.0], 'use_rot': True})
    assert torch.equal(val[0]['gt'], MaskedImageDataset({**base, 'phase': 'val'})[0]['gt'])  # no augmentation
    for bad in ([0, 1], [2, 1], 1.5, [1, 'x'], [True, 2]):
        with pytest.raises(ValueError, match='m: random_scale must be \\[low, high\\] with 0 < low <= high'):
            MaskedImageDataset({**base, 'phase': 'train', 'random_scale': bad})
    with pytest.raises(ValueError, match='m: use_rot must be true or false'):
        MaskedImageDataset({**base, 'phase': 'train', 'use_rot': 'yes'})


def test_residual_generator_starts_from_its_input():
    torch.manual_seed(0)
    x = torch.cat([torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)], dim=1)
    x[:, 3, 8:20, 8:20] = 1
    plain = Pix2PixUNetGenerator(image_size=32, num_feat=8, num_downs=3, dropout=0.0).eval()
    residual = Pix2PixUNetGenerator(image_size=32, num_feat=8, num_downs=3, dropout=0.0, residual=True).eval()
    with torch.no_grad():
        assert torch.equal(residual(x), x[:, :3])  # untrained: no correction, the (pre-filled) input itself
        assert not torch.allclose(plain(x), x[:, :3], atol=0.1)
        residual.load_state_dict(plain.state_dict())  # the same layers: only the output differs
        assert torch.allclose(residual(x), x[:, :3] + 2 * plain(x) - 1, atol=1e-6)
    with pytest.raises(ValueError, match=r'residual: true .* image_channels \(3\) must equal out_channels \(1\)'):
        Pix2PixUNetGenerator(out_channels=1, image_size=32, residual=True)
    with pytest.raises(ValueError, match='residual must be true or false'):
        Pix2PixUNetGenerator(image_size=32, residual='yes')


def test_contrast_normalised_residual_is_equivariant_to_gain_and_offset():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 32, 32)
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:20, 6:22] = 1
    net = Pix2PixUNetGenerator(image_size=32, num_feat=8, num_downs=3, dropout=0.0, residual=True,
                               residual_scale=2.0, contrast_norm=True).eval()
    torch.nn.init.normal_(net.last[1].weight, 0, 0.5)  # some correction, as after training
    with torch.no_grad():
        out = net(torch.cat([image, mask], 1))
        correction = out - image
        assert correction.abs().max() > 0.05
        # a gain of 0.1 and an offset: the same fill, the correction 10x smaller
        dim = net(torch.cat([0.1 * image + 0.4, mask], 1))
        assert torch.allclose(dim, 0.1 * out + 0.4, atol=1e-5)
        # the statistics are those of the known pixels only: changing the hole changes nothing of them
        moved = image.clone()
        moved[:, :, 8:20, 6:22] = 1.0
        mean, std = net.known_statistics(torch.cat([moved, mask], 1))
        known = image[0][:, mask[0, 0] == 0]
        assert mean[0].item() == pytest.approx(known.mean().item(), abs=1e-6)
        assert std[0].item() == pytest.approx(known.std(unbiased=False).item(), abs=1e-6)
        flat = torch.full((1, 3, 32, 32), 0.3)
        assert torch.allclose(net(torch.cat([flat, mask[:1]], 1)), flat, atol=2.5e-3)  # std floored at 1e-3
        # without contrast_norm the correction is residual_scale * tanh
        plain = Pix2PixUNetGenerator(image_size=32, num_feat=8, num_downs=3, dropout=0.0, residual=True).eval()
        scaled = Pix2PixUNetGenerator(image_size=32, num_feat=8, num_downs=3, dropout=0.0, residual=True,
                                      residual_scale=0.25).eval()
        torch.nn.init.normal_(plain.last[1].weight, 0, 0.5)
        scaled.load_state_dict(plain.state_dict())
        x = torch.cat([image, mask], 1)
        assert torch.allclose(scaled(x) - image, 0.25 * (plain(x) - image), atol=1e-6)
    with pytest.raises(ValueError, match='contrast_norm: true scales a correction, so it needs residual: true'):
        Pix2PixUNetGenerator(image_size=32, contrast_norm=True)
    for bad in (0, -1.0, True, 'x', float('inf')):
        with pytest.raises(ValueError, match='residual_scale must be a number > 0'):
            Pix2PixUNetGenerator(image_size=32, residual=True, residual_scale=bad)
    with pytest.raises(ValueError, match='contrast_norm must be true or false'):
        Pix2PixUNetGenerator(image_size=32, residual=True, contrast_norm=1)


@pytest.mark.parametrize('name', ['train_pix2pix_inpaint_256.yml', 'train_pix2pix_inpaint_512.yml',
                                  'train_vgg_inpaint_512.yml', 'test_pix2pix_inpaint.yml'])
def test_option_files_validate(name, tmp_path, vgg19_env):
    import yaml
    from ext.options import validate_options
    with open(osp.join(REPO_ROOT, 'options', name)) as handle:
        opt = yaml.safe_load(handle)
    for spec in opt['datasets'].values():
        spec['dataroot_gt'] = str(tmp_path)
    opt['path']['pretrain_network_g'] = None
    is_train = name.startswith('train')
    opt['is_train'] = is_train
    validate_options(copy.deepcopy(opt), source=name, is_train=is_train)
    opt['network_g']['residul'] = True  # a typo is named
    with pytest.raises(OptionError, match='residul'):
        validate_options(opt, source=name, is_train=is_train)


def test_plateau_rule_on_a_scripted_loss_sequence():
    rule = PlateauRule(patience=3, min_delta=0.01, smoothing=0.0, max_reductions=2)
    losses = [1.0, 0.9, 0.8, 0.8, 0.795, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    fired = [i for i, value in enumerate(losses) if rule.update(value)]
    # no improvement beyond 0.01 after index 2 -> fires at 5; improves at 6; fires at 9; then the cap of 2
    assert fired == [5, 9] and rule.reductions == 2

    smooth = PlateauRule(patience=1, smoothing=0.5, check_interval=2)
    assert [smooth.update(v) for v in (4.0, 2.0)] == [False, False]
    assert smooth.smoothed == pytest.approx((0.5 * 0.5 * 4 + 0.5 * 2) / (1 - 0.25))  # bias-corrected average
    assert [smooth.update(v) for v in (9.0, 9.0)] == [False, True]  # the check at the 4th update fires
    restored = PlateauRule(patience=1, smoothing=0.5, check_interval=2)
    restored.load_state_dict(smooth.state_dict())
    assert restored.state_dict() == smooth.state_dict()

    param = torch.nn.Parameter(torch.zeros(1))
    opt_g, opt_d = torch.optim.Adam([param], lr=1e-3), torch.optim.Adam([param], lr=1e-3)
    halve = LearningRatePlateau(target='g', patience=1, smoothing=0.0)
    raise_d = LearningRatePlateau(target='d', patience=1, smoothing=0.0)
    assert halve.factor == 0.5 and raise_d.factor == 1.1  # the seed and its variant
    for value in (1.0, 1.0):
        halve.step(value, {'g': opt_g, 'd': opt_d})
        raise_d.step(value, {'g': opt_g, 'd': opt_d})
    assert opt_g.param_groups[0]['lr'] == pytest.approx(5e-4) and opt_d.param_groups[0]['lr'] == pytest.approx(1.1e-3)
    with pytest.raises(OptionError, match='train.plateau.target'):
        LearningRatePlateau.from_options({'target': 'x'}, 'M')
    with pytest.raises(OptionError, match='patiense'):
        LearningRatePlateau.from_options({'patiense': 2}, 'M')


def _model(opt_overrides, tmp_path, network_g=None):
    from basicsr.models import build_model
    opt = {
        'name': 'freeze', 'model_type': 'Pix2PixInpaintModel', 'scale': 1, 'num_gpu': 0, 'dist': False,
        'is_train': True, 'rank': 0, 'world_size': 1,
        'network_g': {'type': 'VGGUNetGenerator', 'encoder_blocks': 2, 'decoder_feat': [8, 8], 'bottleneck_feat': 8,
                      'load_pretrained_vgg': False},
        'network_d': {'type': 'PatchGANDiscriminator', 'in_channels': 7, 'num_feat': 4, 'n_layers': 1},
        'path': {'models': str(tmp_path), 'training_states': str(tmp_path), 'visualization': str(tmp_path)},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3, 'betas': [0.5, 0.999]},
                  'optim_d': {'type': 'Adam', 'lr': 1e-3, 'betas': [0.5, 0.999]},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [], 'gamma': 0.5}, 'total_iter': 10,
                  'pixel_opt': {'type': 'HoleWeightedL1Loss'},
                  'gan_opt': {'type': 'GANLoss', 'gan_type': 'lsgan', 'loss_weight': 1.0}},
    }
    opt['train'].update(opt_overrides)
    if network_g is not None:
        opt['network_g'] = network_g
    return build_model(opt)


def test_encoder_frozen_then_unfrozen_moves_the_right_parameters(tmp_path):
    torch.manual_seed(0)
    model = _model({'freeze_encoder_iters': 2, 'encoder_lr': 1e-3}, tmp_path)
    net = model.bare_g
    encoder = {id(p) for p in net.encoder_parameters()}
    assert len(model.optimizer_g.param_groups) == 2  # the encoder is in the optimizer from the start
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    gt = torch.rand(2, 3, 16, 16)
    batch = {'lq': gt * (1 - mask) + 0.5 * mask, 'mask': mask, 'gt': gt}
    moved = {}
    for iteration in range(1, 5):
        before = {name: p.detach().clone() for name, p in net.named_parameters()}
        model.feed_data(batch)
        model.optimize_parameters(iteration)
        moved[iteration] = {name for name, p in net.named_parameters() if not torch.equal(before[name], p)}
    encoder_names = {name for name, p in net.named_parameters() if id(p) in encoder}
    others = {name for name, _ in net.named_parameters()} - encoder_names
    for iteration in (1, 2):  # frozen: every other layer learns, the VGG layers do not
        assert not moved[iteration] & encoder_names, iteration
        assert others <= moved[iteration] | {'encoder.extra.weight', 'encoder.extra.bias'}
    assert len(encoder_names) == 8 and 'encoder.extra.weight' in moved[2]  # the mask's conv is never frozen
    for iteration in (3, 4):  # unfrozen: the optimizer now updates the encoder too
        assert encoder_names <= moved[iteration], iteration
    assert all(p.requires_grad for p in net.encoder_parameters())


def test_ema_copy_averages_the_batchnorm_statistics(tmp_path):
    torch.manual_seed(0)
    model = _model({'ema_decay': 0.75}, tmp_path, network_g={
        'type': 'Pix2PixUNetGenerator', 'image_size': 16, 'num_feat': 4, 'dropout': 0.0, 'norm': 'batch',
        'residual': True})
    net, ema = model.bare_g, model.net_g_ema
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    gt = torch.rand(2, 3, 16, 16)
    model.feed_data({'lq': gt * (1 - mask) + 0.5 * mask, 'mask': mask, 'gt': gt})
    before = {name: b.clone() for name, b in ema.named_buffers()}
    model.optimize_parameters(1)
    means = [name for name, _ in net.named_buffers() if name.endswith('running_mean')]
    assert means  # the generator has BatchNorm layers
    for name, buffer in ema.named_buffers():
        own = dict(net.named_buffers())[name]
        if buffer.is_floating_point():  # BasicSR's model_ema leaves these at their initial values
            assert torch.allclose(buffer, 0.75 * before[name] + 0.25 * own), name
        else:
            assert torch.equal(buffer, own), name
    assert not torch.equal(dict(ema.named_buffers())[means[0]], before[means[0]])


def test_freeze_needs_an_encoder(tmp_path):
    with pytest.raises(OptionError, match='Pix2PixUNetGenerator has no pretrained encoder'):
        _model({'freeze_encoder_iters': 5}, tmp_path,
               network_g={'type': 'Pix2PixUNetGenerator', 'image_size': 16, 'num_feat': 4})
