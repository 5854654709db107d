"""Every component ext registers builds through MMEngine's root registries as ``ext.<name>``.

A new component must get build arguments in BUILD_ARGS (or build without any): the test fails
for a registered name it does not know, so nothing registered goes unbuilt.
"""
import os.path as osp

import pytest
import torch
from mmengine.registry import DATASETS, METRICS, MODELS

import ext  # noqa: F401
from ext.registry import REGISTERED
from helpers import write_image_folder, write_paired_folders

ROOT_REGISTRY = {'arch': MODELS, 'model': MODELS, 'loss': MODELS, 'dataset': DATASETS, 'metric': METRICS}
TINY_TTSR = dict(mid_channels=8, num_blocks=(1, 1, 1, 1), load_pretrained_vgg=False)
KERNEL_OPTIONS = dict(
    blur_kernel_size=21, kernel_list=['iso', 'aniso'], kernel_prob=[0.5, 0.5], sinc_prob=0.1, blur_sigma=[0.2, 3],
    betag_range=[0.5, 4], betap_range=[1, 2], blur_kernel_size2=21, kernel_list2=['iso', 'aniso'],
    kernel_prob2=[0.5, 0.5], sinc_prob2=0.1, blur_sigma2=[0.2, 1.5], betag_range2=[0.5, 4], betap_range2=[1, 2],
    final_sinc_prob=0.8)


def model_opt(network_g, **extra):
    """A test-time (is_train False) BasicSR model option dict: builds the generator only."""
    return dict(opt=dict(name='build', model_type='x', scale=4, num_gpu=0, is_train=False, dist=False, rank=0,
                         world_size=1, network_g=network_g, path={'pretrain_network_g': None}, **extra))


RRDB = {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'num_grow_ch': 4}


@pytest.fixture(scope='module')
def build_args(tmp_path_factory):
    root = tmp_path_factory.mktemp('build_data')
    photos = osp.dirname(write_image_folder(str(root / 'photos'), 2, 64)[0])
    write_image_folder(str(root / 'refs'), 2, 64, seed=3)
    pairs = write_paired_folders(str(root / 'pairs'), 2, 64)
    cufed5 = root / 'CUFED5'
    for index, path in enumerate(write_image_folder(str(root / 'cufed5_src'), 6, 64)):
        (cufed5 / '').mkdir(exist_ok=True)
        osp.os.replace(path, cufed5 / f'000_{index}.png')
    dataset = lambda **opt: dict(opt=dict(name='build', phase='train', scale=4, io_backend={'type': 'disk'}, **opt))  # noqa
    return {
        'AttentionUNetDiscriminatorSN': dict(num_in_ch=3, num_feat=8),
        'UNetDiscriminatorAesrgan': dict(num_in_ch=3, num_feat=8),
        'MultiScaleAttentionUNetDiscriminator': dict(num_in_ch=3, num_feat=8, num_D=2),
        'multiscale': dict(num_in_ch=3, num_feat=8, num_D=2),
        'TTSRNet': dict(TINY_TTSR),
        'LTE': dict(load_pretrained_vgg=False),
        'TTSRTextureExtractor': dict(load_pretrained_vgg=False),
        'TTSRDiscriminator': dict(in_channels=3, in_size=32),
        'TTSRGANLoss': dict(gan_type='wgan_gp'),
        'TransferalPerceptualLoss': dict(),
        'TTSRPerceptualLoss': dict(),  # needs the VGG file: the vgg19_env fixture provides it
        'AESRGANModel': model_opt(RRDB),
        'MultiScaleRealESRGANModel': model_opt(RRDB),
        'RealESRNetPretrainModel': model_opt(RRDB),
        'ExtSRModel': model_opt(RRDB),
        'ExtESRGANModel': model_opt(RRDB),
        'TTSRModel': model_opt(dict(type='TTSRNet', **TINY_TTSR)),
        'TTSRInpaintModel': model_opt(dict(type='TTSRNet', **TINY_TTSR)),
        'MaterialMultiscaleDataset': dataset(dataroot_gt=photos, gt_size=48, use_hflip=True, use_rot=False,
                                             **KERNEL_OPTIONS),
        'RefCUFEDDataset': dataset(dataroot_gt=photos, dataroot_ref=str(root / 'refs')),
        'CUFED5Dataset': dataset(dataroot=str(cufed5), ref_level=1),
        'FFHQInpaintDataset': dataset(dataroot_gt=photos),
        'Pix2PixUNetGenerator': dict(image_size=32, num_feat=4),
        'PatchGANDiscriminator': dict(num_feat=4),
        'VGGUNetGenerator': dict(encoder_blocks=2, decoder_feat=[8, 8], bottleneck_feat=8, load_pretrained_vgg=False),
        'VGGPatchDiscriminator': dict(num_blocks=2, head_feat=4, load_pretrained_vgg=False),
        'HoleWeightedL1Loss': dict(),
        'InpaintPerceptualLoss': dict(),  # needs the VGG file: the vgg19_env fixture provides it
        'Pix2PixInpaintModel': model_opt(dict(type='Pix2PixUNetGenerator', image_size=32, num_feat=4)),
        'MaskedImageDataset': dataset(dataroot_gt=photos, crop_size=32),
        'ESRGANRRDBNet': dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, num_grow_ch=4,
                              upsampler='nearest', interpolating_init=True),
        'ESRGANVGGDiscriminator': dict(input_size=64, block_channels=[4, 4, 8, 8], fc_features=[8], spectral_norm=True),
        'ESRGANPairedDataset': dataset(dataroot_gt=pairs[0], dataroot_lq=pairs[1], gt_size=32),
    }


def _registered_names():
    return sorted(f'{kind}:{name}' for kind, name in REGISTERED)


@pytest.mark.parametrize('entry', _registered_names())
def test_every_registered_component_builds_through_mmengine(entry, build_args, vgg19_env):
    kind, name = entry.split(':')
    if name not in build_args and kind not in ('metric', ):
        pytest.fail(f'no build arguments for registered {kind} {name!r}: add them to BUILD_ARGS in this file')
    registry = ROOT_REGISTRY[kind]
    obj = REGISTERED[(kind, name)]
    if kind == 'metric':  # BasicSR metrics are functions of (img, img2, ...): look up, then call
        assert registry.get(f'ext.{name}') is obj
        return
    built = registry.build(dict(type=f'ext.{name}', **build_args[name]))
    assert isinstance(built, obj)
    if kind == 'dataset':
        assert len(built) > 0 and isinstance(built[0], dict)
    if kind == 'arch' and isinstance(built, torch.nn.Module):
        assert sum(p.numel() for p in built.parameters()) > 0
