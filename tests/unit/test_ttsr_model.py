"""TTSRModel step logic in-process: MMagic's order (G then D, vanilla GAN), warm-up, LTE group, mask."""
import copy

import torch

import ext  # noqa: F401
from ext.models.ttsr_model import TTSRModel


def model_options(**train):
    opt = {
        'name': 'ttsr_unit', 'model_type': 'TTSRModel', 'scale': 4, 'num_gpu': 0, 'dist': False, 'rank': 0,
        'world_size': 1, 'is_train': True,
        'network_g': {'type': 'TTSRNet', 'mid_channels': 8, 'num_blocks': [1, 1, 1, 1], 'load_pretrained_vgg': False},
        'network_d': {'type': 'TTSRDiscriminator', 'in_size': 32},
        'path': {'pretrain_network_g': None, 'pretrain_network_d': None},
        'train': {
            'ema_decay': 0.5,
            'optim_g': {'type': 'Adam', 'lr': 1e-3, 'betas': [0.9, 0.999]},
            'extractor_lr': 1e-4,
            'optim_d': {'type': 'Adam', 'lr': 1e-3, 'betas': [0.9, 0.999]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5},
            'total_iter': 10, 'pixel_init_iters': 1, 'disc_repeat': 2,
            'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
            'tpl_opt': {'type': 'TransferalPerceptualLoss', 'loss_weight': 1e-2, 'use_attention': True,
                        'convention': 'mmagic'},
            'gan_opt': {'type': 'TTSRGANLoss', 'gan_type': 'vanilla', 'loss_weight': 1e-3},
        },
    }
    opt['train'].update(train)
    return opt


def batch():
    generator = torch.Generator().manual_seed(0)
    return {'lq': torch.rand(2, 3, 8, 8, generator=generator), 'gt': torch.rand(2, 3, 32, 32, generator=generator),
            'ref': torch.rand(2, 3, 32, 32, generator=generator), 'mask': torch.ones(2, 1, 32, 32),
            'lq_path': ['a', 'b']}


def test_mmagic_order_warmup_and_lte_group():
    torch.manual_seed(0)
    model = TTSRModel(copy.deepcopy(model_options()))
    groups = model.optimizer_g.param_groups
    assert [g['lr'] for g in groups] == [1e-3, 1e-4]
    assert {id(p) for p in groups[1]['params']} == {id(p) for p in model.net_g.extractor.parameters()}
    model.feed_data(batch())  # no lq_up / ref_down_up: computed inside the network; mask kept
    assert model.mask.shape == (2, 1, 32, 32) and model.lq_up is None

    d_before = copy.deepcopy(model.net_d.state_dict())
    model.optimize_parameters(1)  # warm-up: L1 only, D untouched
    assert set(model.log_dict) == {'l_g_pix', 'l_g_total'}
    assert all(torch.equal(v, model.net_d.state_dict()[k]) for k, v in d_before.items())

    model.optimize_parameters(2)
    assert {'l_g_pix', 'l_g_tpl', 'l_g_gan', 'l_d_real', 'l_d_fake'} <= set(model.log_dict)
    assert 'l_d_gp' not in model.log_dict  # vanilla GAN has no gradient penalty
    assert not torch.equal(d_before['body.0.weight'], model.net_d.state_dict()['body.0.weight'])
    model.test()
    assert model.output.shape == (2, 3, 32, 32) and hasattr(model, 'net_g_ema')


def test_reconstruction_only_without_discriminator():
    opt = model_options()
    del opt['network_d'], opt['train']['gan_opt'], opt['train']['optim_d']
    model = TTSRModel(opt)
    assert model.net_d is None and len(model.optimizers) == 1
    model.feed_data(batch())
    model.optimize_parameters(5)
    assert set(model.log_dict) == {'l_g_pix', 'l_g_tpl', 'l_g_total'}


def test_inconsistent_options_fail_clearly():
    opt = model_options()
    del opt['train']['gan_opt']
    try:
        TTSRModel(opt)
    except ValueError as error:
        assert 'gan_opt and network_d' in str(error)
    else:
        raise AssertionError('a discriminator without gan_opt must be refused')


def test_extractor_lr_zero_freezes_the_extractor():
    opt = model_options(extractor_lr=0)
    del opt['network_d'], opt['train']['gan_opt'], opt['train']['optim_d']
    torch.manual_seed(0)
    model = TTSRModel(opt)
    assert len(model.optimizer_g.param_groups) == 1
    assert not any(p.requires_grad for p in model.net_g.extractor.parameters())
    extractor = copy.deepcopy(model.net_g.extractor.state_dict())
    main = model.net_g.conv_first1.weight.detach().clone()
    model.feed_data(batch())
    model.optimize_parameters(5)
    assert all(p.grad is None for p in model.net_g.extractor.parameters())
    assert all(torch.equal(v, model.net_g.extractor.state_dict()[k]) for k, v in extractor.items())
    assert not torch.equal(main, model.net_g.conv_first1.weight)
