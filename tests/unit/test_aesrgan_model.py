"""A-ESRGAN / Real-ESRNet models in-process: degradation on CPU, queue, per-scale GAN loss, option errors."""
import copy
import math
import os.path as osp

import numpy as np
import pytest
import torch
import yaml
from torch.nn import functional as F

import ext  # noqa: F401
from basicsr.models import build_model
from basicsr.utils import set_random_seed
from ext.data.second_order_degradation import SecondOrderDegradation
from ext.models.image_validation import side_by_side
from ext.models.realesrgan_synthesis import TrainingPairQueue
from ext.options import OptionError
from ext.utils.pretrained import PretrainedWeightsNotFound
from helpers import REPO_ROOT


def load_option_file(name):
    with open(osp.join(REPO_ROOT, 'options', name)) as handle:
        return yaml.safe_load(handle)


# every device this machine has: the models must run on each (CI has only the CPU)
DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def tiny_model_opt(option_file='train_multiaesrgan_x4plus.yml', batch=2, gt_size=32, queue_size=4, device='cpu'):
    """An upstream option file shrunk to tiny nets and put in the state BasicSR's parser leaves it."""
    opt = load_option_file(option_file)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=int(device == 'cuda'), gt_size=gt_size,
               queue_size=queue_size)
    opt['datasets']['train'].update(batch_size_per_gpu=batch, gt_size=gt_size)
    opt['network_g'].update(num_feat=8, num_block=1, num_grow_ch=4)
    if 'network_d' in opt:
        opt['network_d']['num_feat'] = 8
    opt['path'] = {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None}
    opt['train'].pop('perceptual_opt', None)
    return opt


def batch_of_real_images(batch, size, seed=0):
    """What RealESRGANDataset yields: GT crops of real photos plus blur / sinc kernels (21x21)."""
    from helpers import skimage_rgb, SKIMAGE_PHOTOS
    rng = np.random.default_rng(seed)
    gts = []
    for index in range(batch):
        image = skimage_rgb(SKIMAGE_PHOTOS[(seed + index) % len(SKIMAGE_PHOTOS)])
        top, left = rng.integers(0, image.shape[0] - size), rng.integers(0, image.shape[1] - size)
        gts.append(torch.from_numpy(image[top:top + size, left:left + size].copy()).permute(2, 0, 1).float() / 255.)
    kernel = torch.zeros(batch, 21, 21)
    kernel[:, 9:12, 9:12] = 1 / 9.  # a small box blur
    pulse = torch.zeros(batch, 21, 21)
    pulse[:, 10, 10] = 1
    return {'gt': torch.stack(gts), 'kernel1': kernel, 'kernel2': kernel.clone(), 'sinc_kernel': pulse}


def test_degradation_runs_on_cpu_and_gives_8bit_lq_of_a_quarter_size():
    torch.manual_seed(0)
    opt = load_option_file('train_multiaesrgan_x4plus.yml')
    data = batch_of_real_images(2, 96)
    lq = SecondOrderDegradation(opt)(data['gt'], data['kernel1'], data['kernel2'], data['sinc_kernel'])
    assert lq.shape == (2, 3, 24, 24) and lq.device.type == 'cpu'
    assert lq.min() >= 0 and lq.max() <= 1
    torch.testing.assert_close(lq * 255, (lq * 255).round(), rtol=0, atol=1e-4)
    with pytest.raises(OptionError, match='jpeg_range2'):
        SecondOrderDegradation({k: v for k, v in opt.items() if k != 'jpeg_range2'})
    # 48 px shrinks to 7 px at resize_range[0] 0.15, too small for a 21-tap blur: a clear error, not F.pad's
    small = batch_of_real_images(2, 48)
    with pytest.raises(ValueError, match=r'48x48 are too small.*at least 74 px'):
        SecondOrderDegradation(opt)(small['gt'], small['kernel1'], small['kernel2'], small['sinc_kernel'])


def test_queue_fills_then_swaps_and_its_state_round_trips_exactly():
    queue = TrainingPairQueue(4, 2, 'cpu')
    batches = [(torch.full((2, 3, 4, 4), i / 255.), torch.full((2, 3, 16, 16), (10 + i) / 255.)) for i in range(4)]
    for lq, gt in batches[:2]:  # filling: the batch passes through
        out_lq, out_gt = queue(lq, gt)
        assert torch.equal(out_lq, lq) and torch.equal(out_gt, gt)
    state = copy.deepcopy(queue.state_dict())
    assert state['lq']['uint8'].dtype == torch.uint8  # 8-bit images are stored 4x smaller

    torch.manual_seed(1)
    out_lq, out_gt = queue(*batches[2])
    held = {round(v * 255) for v in out_lq[:, 0, 0, 0].tolist()}
    assert held <= {0, 1}  # two pairs of earlier batches come out
    levels_lq = [round(v * 255) for v in out_lq[:, 0, 0, 0].tolist()]
    assert [round(v * 255) for v in out_gt[:, 0, 0, 0].tolist()] == [10 + v for v in levels_lq]  # pairs stay pairs
    assert sorted(round(v * 255) for v in queue.lq[:, 0, 0, 0].tolist()).count(2) == 2  # the new batch is held

    resumed = TrainingPairQueue(4, 2, 'cpu')
    resumed.load_state_dict(state)
    torch.manual_seed(1)
    again_lq, again_gt = resumed(*batches[2])
    assert torch.equal(again_lq, out_lq) and torch.equal(again_gt, out_gt)
    assert torch.equal(resumed.lq, queue.lq) and torch.equal(resumed.gt, queue.gt)

    non_8bit = TrainingPairQueue(2, 2, 'cpu')
    non_8bit(torch.rand(2, 3, 4, 4), torch.rand(2, 3, 8, 8))
    assert 'float' in non_8bit.state_dict()['gt']


def test_queue_size_not_divisible_by_batch_is_an_option_error_naming_both():
    with pytest.raises(OptionError, match=r'queue_size \(180\).*batch_size_per_gpu: 16'):
        TrainingPairQueue(180, 16, 'cpu')
    opt = tiny_model_opt(batch=4, queue_size=10)
    with pytest.raises(OptionError, match=r'queue_size \(10\).*batch_size_per_gpu: 4'):
        build_model(opt)


def _train_one_step(opt, seed=0, current_iter=1):
    set_random_seed(seed)  # python, numpy and torch: the degradation draws from all three
    model = build_model(opt)
    model.feed_data(batch_of_real_images(opt['datasets']['train']['batch_size_per_gpu'], 96, seed))
    model.optimize_parameters(current_iter)
    return model, model.get_current_log()


def test_gan_loss_is_summed_over_scales_with_optional_weights_and_logged_per_scale():
    model, log = _train_one_step(tiny_model_opt())
    assert model.lq.shape == (2, 3, 8, 8) and model.gt.shape == (2, 3, 32, 32)
    for prefix in ('l_g_gan', 'l_d_real', 'l_d_fake'):
        assert log[prefix] == pytest.approx(log[f'{prefix}_scale0'] + log[f'{prefix}_scale1'], rel=1e-5)
    assert log['out_d_real'] == pytest.approx((log['out_d_real_scale0'] + log['out_d_real_scale1']) / 2, rel=1e-5)
    assert all(math.isfinite(v) for v in log.values())
    assert log['l_g_gan_scale0'] != log['l_g_gan_scale1']

    weighted = tiny_model_opt()
    weighted['train']['gan_scale_weights'] = [2.0, 0.0]
    _, wlog = _train_one_step(weighted)
    assert wlog['l_g_gan_scale1'] == 0 and wlog['l_d_real_scale1'] == 0
    assert wlog['l_g_gan'] == pytest.approx(2 * log['l_g_gan_scale0'], rel=1e-5)  # same seed, same first step

    bad = tiny_model_opt()
    bad['train']['gan_scale_weights'] = [1.0]
    with pytest.raises(OptionError, match='list of 2 non-negative numbers'):
        build_model(bad)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('option_file', ['train_multiaesrgan_x4plus.yml', 'train_realesrnet_x4plus.yml'])
def test_models_keep_data_and_queue_on_their_device_and_resume_the_queue(device, option_file):
    opt = tiny_model_opt(option_file, device=device)
    model, log = _train_one_step(opt)
    for seed in (1, 2):  # the queue (size 4, batch 2) is full after two batches, then swaps
        model.feed_data(batch_of_real_images(2, 96, seed))
        model.optimize_parameters(seed + 1)
    assert all(math.isfinite(v) for v in model.get_current_log().values())
    assert model.lq.device.type == model.gt.device.type == model.synthesis.pair_queue.lq.device.type == device
    state = model.extra_training_state()
    saved_gt = state['pair_queue']['gt']
    assert state['pair_queue']['filled'] == 4 and next(iter(saved_gt.values())).device.type == 'cpu'
    # A-ESRGAN queues the plain 8-bit GT (stored as uint8); Real-ESRNet the USM-sharpened one (float)
    assert set(saved_gt) == ({'uint8'} if 'network_d' in opt else {'float'})
    fresh = build_model(opt)
    fresh.load_extra_training_state(copy.deepcopy(state))
    assert fresh.synthesis.pair_queue.lq.device.type == device
    assert torch.equal(fresh.synthesis.pair_queue.gt, model.synthesis.pair_queue.gt)
    assert torch.equal(fresh.synthesis.pair_queue.lq, model.synthesis.pair_queue.lq)


def test_generator_is_held_during_net_d_init_iters():
    opt = tiny_model_opt()
    opt['train']['net_d_init_iters'] = 5
    model, log = _train_one_step(opt, current_iter=1)
    assert 'l_g_gan' not in log and 'l_g_pix' not in log and 'l_d_real' in log


def test_single_discriminator_and_realesrnet_models_step_on_cpu():
    _, log = _train_one_step(tiny_model_opt('train_aesrgan_x4plus.yml'))
    assert 'l_g_gan' in log and 'l_g_gan_scale0' not in log
    model, log = _train_one_step(tiny_model_opt('train_realesrnet_x4plus.yml'))
    assert set(log) == {'l_pix'} and math.isfinite(log['l_pix'])
    assert model.lq.shape == (2, 3, 8, 8)


def test_gt_size_must_suit_the_discriminator():
    opt = tiny_model_opt(gt_size=40)
    with pytest.raises(OptionError, match='gt_size 40 is not a multiple of 16'):
        build_model(opt)


def test_missing_pretrained_file_names_it_and_how_to_get_it(tmp_path):
    opt = tiny_model_opt()
    opt['path']['pretrain_network_g'] = str(tmp_path / 'RealESRNet_x4plus.pth')
    with pytest.raises(PretrainedWeightsNotFound, match=r'RealESRNet_x4plus\.pth.*train_realesrnet_x4plus\.yml'):
        build_model(opt)
    opt = tiny_model_opt('train_realesrnet_x4plus.yml')
    opt['path']['pretrain_network_g'] = str(tmp_path / 'my_stage1.pth')
    with pytest.raises(PretrainedWeightsNotFound, match=r'my_stage1\.pth.*previous stage'):
        build_model(opt)


def test_side_by_side_grid_is_lq_output_gt():
    lq, output, gt = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    grid = side_by_side(lq, output, gt, gap=4)
    assert grid.shape == (32, 3 * 32 + 2 * 4, 3) and grid.dtype == np.uint8
    from basicsr.utils import tensor2img
    assert np.array_equal(grid[:, 36:68], tensor2img([output])) and np.array_equal(grid[:, 72:], tensor2img([gt]))


def test_option_files_keep_upstream_hyper_parameters():
    multi = load_option_file('train_multiaesrgan_x4plus.yml')
    single = load_option_file('train_aesrgan_x4plus.yml')
    finetune = load_option_file('finetune_multiaesrgan_x4plus.yml')
    esrnet = load_option_file('train_realesrnet_x4plus.yml')
    for opt in (multi, single, finetune, esrnet):
        assert opt['queue_size'] % opt['datasets']['train']['batch_size_per_gpu'] == 0
        assert opt['gt_size'] == 256 and opt['scale'] == 4
        assert opt['datasets']['train']['type'] == 'MaterialMultiscaleDataset'
        assert opt['datasets']['train']['meta_info'] == 'datasets/materials/meta_info/meta_info_multiscale.txt'
        assert opt['datasets']['val']['dataroot_lq'] == 'datasets/materials/val/lq_x4'
        assert opt['val']['save_img'] is True and opt['val']['metrics']['psnr']['crop_border'] == 4
        assert opt['path']['pretrain_network_g'].startswith('experiments/pretrained_models/')
        assert (opt['resize_range'], opt['noise_range2'], opt['second_blur_prob']) == ([0.15, 1.5], [1, 25], 0.8)
        assert opt['datasets']['train']['blur_sigma2'] == [0.2, 1.5]
        assert opt['network_g']['num_block'] == 23 and opt['train']['ema_decay'] == 0.999
    for opt in (multi, single, finetune):
        assert opt['model_type'] == 'AESRGANModel'
        assert (opt['l1_gt_usm'], opt['percep_gt_usm'], opt['gan_gt_usm']) == (True, True, False)
        assert opt['train']['optim_d']['lr'] == 1e-4 and opt['train']['gan_opt']['loss_weight'] == 0.1
        assert opt['train']['perceptual_opt']['layer_weights']['conv5_4'] == 1
    assert multi['network_d'] == {'type': 'multiscale', 'num_in_ch': 3, 'num_feat': 64, 'num_D': 2}
    assert single['network_d']['type'] == 'UNetDiscriminatorAesrgan'
    assert [o['datasets']['train']['batch_size_per_gpu'] for o in (multi, single, finetune, esrnet)] == [16, 6, 6, 12]
    assert multi['train']['total_iter'] == 400000 and finetune['train']['total_iter'] == 200000
    assert finetune['path']['pretrain_network_d'] == 'experiments/pretrained_models/A_ESRGAN_Multi_D.pth'
    assert esrnet['model_type'] == 'RealESRNetPretrainModel' and esrnet['gt_usm'] is True
    assert esrnet['train']['optim_g']['lr'] == 2e-4 and 'network_d' not in esrnet
    assert esrnet['train']['total_iter'] == 1000000 and set(esrnet['train']) >= {'pixel_opt'}
    assert 'perceptual_opt' not in esrnet['train']


OPTION_FILES = ('train_realesrnet_x4plus.yml', 'train_multiaesrgan_x4plus.yml', 'train_aesrgan_x4plus.yml',
                'finetune_multiaesrgan_x4plus.yml', 'finetune_multiaesrgan_x4plus_mixed.yml')


def _project_with_data(root, with_pretrained):
    """A project root holding the folders the option files point at (and, optionally, their pretrained files)."""
    for folder in ('datasets/materials/meta_info', 'datasets/materials/val/gt', 'datasets/materials/val/lq_x4',
                   'datasets/materials/val/lq_x4_degraded', 'datasets/mypairs/train/hr', 'datasets/mypairs/train/lr',
                   'experiments/pretrained_models'):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / 'datasets/materials/meta_info/meta_info_multiscale.txt').write_text('multiscale/tile_0001T0.png\n')
    (root / 'datasets/mypairs/meta_info_pairs.txt').write_text('0001.png\n')
    if with_pretrained:
        for name in ('ESRGAN_SRx4_DF2KOST_official-ff704c30.pth', 'RealESRNet_x4plus.pth', 'A_ESRGAN_Multi.pth',
                     'A_ESRGAN_Multi_D.pth'):
            (root / 'experiments/pretrained_models' / name).write_bytes(b'')


@pytest.mark.parametrize('option_file', OPTION_FILES)
def test_option_files_pass_validation_and_name_missing_pretrained_files(option_file, tmp_path, vgg19_env):
    from ext.options import resolve_paths, validate_options
    _project_with_data(tmp_path, with_pretrained=True)
    opt = resolve_paths(load_option_file(option_file), str(tmp_path))
    opt.update(is_train=True, auto_resume=False)
    validate_options(opt, source=option_file)  # every key known, every type registered, every file there

    empty = tmp_path / 'empty'
    _project_with_data(empty, with_pretrained=False)
    opt = resolve_paths(load_option_file(option_file), str(empty))
    opt.update(is_train=True, auto_resume=False)
    with pytest.raises(OptionError) as error:
        validate_options(opt, source=option_file)
    expected = {'train_realesrnet_x4plus.yml': 'ESRGAN_SRx4_DF2KOST_official-ff704c30.pth',
                'finetune_multiaesrgan_x4plus.yml': 'A_ESRGAN_Multi_D.pth',
                'finetune_multiaesrgan_x4plus_mixed.yml': 'A_ESRGAN_Multi_D.pth'}.get(option_file, 'RealESRNet_x4plus.pth')
    assert expected in str(error.value) and 'release' in str(error.value)


@pytest.mark.parametrize('usm', [True, False])
def test_each_loss_uses_the_sharpened_or_plain_gt_as_configured(usm):
    opt = tiny_model_opt()
    opt.update(l1_gt_usm=usm, percep_gt_usm=usm, gan_gt_usm=usm)
    set_random_seed(0)
    model = build_model(opt)
    model.feed_data(batch_of_real_images(2, 96))
    assert not torch.equal(model.gt_usm, model.gt)
    seen = []
    discriminate = model._discriminate
    model._discriminate = lambda image: seen.append(image) or discriminate(image)
    model.optimize_parameters(1)
    target = model.gt_usm if usm else model.gt
    assert model.get_current_log()['l_g_pix'] == pytest.approx(F.l1_loss(model.output, target).item(), rel=1e-5)
    assert torch.equal(seen[1], target)  # calls: G's fake, D's real, D's fake
