"""Training speed options (ext/models/train_speed.py) for every model of the package, on CPU with tiny networks:
ExtSRModel / ExtESRGANModel (the SRModel / ESRGAN path), RealESRNetPretrainModel, MultiScaleRealESRGANModel
(A-ESRGAN), TTSRModel, TTSRInpaintModel and Pix2PixInpaintModel. Each option trains; bf16 tracks fp32 over 50
iterations; the losses unstable in half precision (VGG features, WGAN-GP's penalty) stay in float32; accumulation
over 2 x B matches one batch of 2B where the networks have no batch-dependent layers, and what holds where they
have (pix2pix's BatchNorm + dropout, ESRGAN's BatchNorm discriminator and relativistic means); bad
combinations are refused naming the key; the speed state survives a resume.

Real-ESRNet and A-ESRGAN also have tests through their degradation pipeline in test_train_speed.py; here
their batches are set directly (what the degradation leaves: lq, gt, gt_usm), so only the networks cost time."""
import copy
import functools

import pytest
import torch
import torch.nn.functional as F

import ext  # noqa: F401
from basicsr.models import build_model
from basicsr.utils import set_random_seed
from ext.models.train_speed import SPEED_KEYS
from ext.options import OptionError
from helpers import SKIMAGE_PHOTOS, skimage_rgb
from test_aesrgan_model import tiny_model_opt
from test_ttsr_model import model_options as ttsr_options

BF16 = {'use_amp': True, 'amp_bf16': True}
ADAM = {'type': 'Adam', 'lr': 1e-3, 'betas': [0.9, 0.99]}
SGD = {'type': 'SGD', 'lr': 1e-2}
SCHEDULER = {'type': 'MultiStepLR', 'milestones': [1000], 'gamma': 0.5}
TINY_RRDB = {'type': 'ESRGANRRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1,
             'num_grow_ch': 4}
TINY_VGG_D = {'type': 'ESRGANVGGDiscriminator', 'num_in_ch': 3, 'input_size': 32, 'block_channels': [8, 8, 16, 16],
              'fc_features': [16]}  # BatchNorm after every conv but the first (ESRGAN's)
# BasicSR's PerceptualLoss on conv1_2 only (its VGG is cut after the last layer it needs)
PERCEPTUAL = {'type': 'PerceptualLoss', 'layer_weights': {'conv1_2': 1.0}, 'vgg_type': 'vgg19', 'use_input_norm': True,
              'range_norm': False, 'perceptual_weight': 0.1, 'style_weight': 0, 'criterion': 'l1'}
ORIGINAL_TTSR = {'gan_opt': {'type': 'TTSRGANLoss', 'gan_type': 'wgan_gp', 'loss_weight': 1e-3},
                 'd_steps_first': True, 'disc_repeat': 2,
                 'tpl_opt': {'type': 'TransferalPerceptualLoss', 'loss_weight': 1e-2, 'use_attention': False,
                             'convention': 'original'}}


# --- tiny data: crops of scikit-image's photos ---------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _photo(index):
    return torch.from_numpy(skimage_rgb(SKIMAGE_PHOTOS[index % len(SKIMAGE_PHOTOS)])).permute(2, 0, 1).float() / 255


def photo_crops(count, size, seed):
    generator = torch.Generator().manual_seed(seed)
    crops = []
    for index in range(count):
        image = _photo(seed + index)
        top = int(torch.randint(0, image.shape[1] - size, (1, ), generator=generator))
        left = int(torch.randint(0, image.shape[2] - size, (1, ), generator=generator))
        crops.append(image[:, top:top + size, left:left + size])
    return torch.stack(crops)


def downscale(gt, scale=4):
    return F.interpolate(gt, scale_factor=1 / scale, mode='bicubic', antialias=True, align_corners=False).clamp(0, 1)


def box_mask(batch, size):
    mask = torch.zeros(batch, 1, size, size)
    mask[..., size // 4:size // 2, size // 4:3 * size // 4] = 1
    return mask


def sr_batch(batch, seed, size=32):
    gt = photo_crops(batch, size, seed)
    return {'lq': downscale(gt), 'gt': gt, 'lq_path': [str(i) for i in range(batch)]}


def ttsr_batch(batch, seed, size=32, mask=False):
    data = sr_batch(batch, seed, size)
    data['ref'] = photo_crops(batch, size, seed + 3)
    if mask:
        data['mask'] = box_mask(batch, size)
    return data


def inpaint_batch(batch, seed, size=16):
    gt = photo_crops(batch, size, seed)
    mask = box_mask(batch, size)
    return {'lq': gt * (1 - mask) + 0.5 * mask, 'mask': mask, 'gt': gt, 'lq_path': [str(i) for i in range(batch)]}


# --- the models at tiny sizes ---------------------------------------------------------------------------
def _base(model_type, batch):
    return {'name': 'speed', 'model_type': model_type, 'scale': 4, 'num_gpu': 0, 'dist': False, 'rank': 0,
            'world_size': 1, 'is_train': True, 'datasets': {'train': {'batch_size_per_gpu': batch}},
            'network_g': dict(TINY_RRDB), 'path': {'pretrain_network_g': None, 'strict_load_g': True,
                                                   'resume_state': None},
            'train': {'ema_decay': 0.9, 'optim_g': dict(ADAM), 'scheduler': dict(SCHEDULER), 'total_iter': 1000,
                      'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}}}


def sr_options(batch):
    return _base('ExtSRModel', batch)


def esrgan_options(batch):
    opt = _base('ExtESRGANModel', batch)
    opt['network_d'] = dict(TINY_VGG_D)
    opt['train'].update(optim_d=dict(ADAM), net_d_iters=1, net_d_init_iters=0,
                        gan_opt={'type': 'GANLoss', 'gan_type': 'vanilla', 'loss_weight': 0.005})
    return opt


def esrnet_options(batch):
    return tiny_model_opt('train_realesrnet_x4plus.yml', batch=batch)


def aesrgan_options(batch):
    return tiny_model_opt('train_multiaesrgan_x4plus.yml', batch=batch)  # its perceptual loss removed


def ttsr_model_options(batch, model_type='TTSRModel', **train):
    opt = ttsr_options(pixel_init_iters=0, **train)
    opt.update(model_type=model_type, datasets={'train': {'batch_size_per_gpu': batch}})
    return opt


def ttsr_original_options(batch):
    """The original recipe: D first, twice per iteration, WGAN-GP, transferal perceptual loss."""
    return ttsr_model_options(batch, **ORIGINAL_TTSR)


def ttsr_inpaint_options(batch):
    """TTSR inpainting at 16 px without D (TTSRModel's D steps are tested on ttsr): the box-weighted pixel loss,
    MMagic's transferal perceptual loss and the saturation guard."""
    return _without_discriminator(ttsr_model_options(batch, 'TTSRInpaintModel', box_pixel_weight=4.0,
                                                     saturation_guard={'action': 'warn', 'max_fraction': 1.0}))


def pix2pix_options(batch, norm='batch', dropout=0.5):
    """pix2pix's U-Net (BatchNorm, one dropout block at this size) and PatchGAN, conditional, lsgan."""
    return {'name': 'speed', 'model_type': 'Pix2PixInpaintModel', 'scale': 1, 'num_gpu': 0, 'dist': False,
            'is_train': True, 'rank': 0, 'world_size': 1, 'datasets': {'train': {'batch_size_per_gpu': batch}},
            'network_g': {'type': 'Pix2PixUNetGenerator', 'image_size': 16, 'num_feat': 8, 'max_mult': 2,
                          'norm': norm, 'dropout': dropout},
            'network_d': {'type': 'PatchGANDiscriminator', 'in_channels': 7, 'num_feat': 8, 'n_layers': 1,
                          'norm': norm},
            'path': {'pretrain_network_g': None, 'resume_state': None},
            'train': {'ema_decay': 0.9, 'optim_g': {'type': 'Adam', 'lr': 1e-3, 'betas': [0.5, 0.999]},
                      'optim_d': {'type': 'Adam', 'lr': 1e-3, 'betas': [0.5, 0.999]},
                      'scheduler': dict(SCHEDULER), 'total_iter': 1000,
                      'pixel_opt': {'type': 'HoleWeightedL1Loss', 'loss_weight': 10.0},
                      'gan_opt': {'type': 'GANLoss', 'gan_type': 'lsgan', 'loss_weight': 1.0},
                      'plateau': {'monitor': 'l_d_total', 'target': 'g', 'patience': 1, 'min_delta': 1.0}}}


def _without_discriminator(opt):
    """A model's options without its discriminator and GAN loss (TTSR-rec; pix2pix reconstruction only)."""
    opt = copy.deepcopy(opt)
    opt.pop('network_d', None)
    for key in ('gan_opt', 'optim_d', 'd_steps_first', 'disc_repeat', 'plateau'):
        opt['train'].pop(key, None)
    return opt


class Spec:
    """One model at tiny sizes: ``options(batch)``, ``data(batch, seed)``, how batches reach it, the pixel
    loss it logs."""

    def __init__(self, options, data, pixel_log, direct=False):
        self.options, self.data, self.pixel_log, self.direct = options, data, pixel_log, direct

    def build(self, batch=2, options=None, **train):
        opt = copy.deepcopy(options or self.options(batch))
        opt['train'].update(train)
        set_random_seed(0)
        return build_model(opt)

    def feed(self, model, data):
        if self.direct:  # what the Real-ESRGAN models' feed_data leaves, without a degradation draw
            model.lq, model.gt = data['lq'].clone(), data['gt'].clone()
            if 'gt_usm' in model.speed.batch_keys:
                model.gt_usm = data['gt'].clone()
        else:
            model.feed_data(data)

    def train(self, model, iterations, batch=2, first=1, pool=2):
        batches = [self.data(batch, seed) for seed in range(pool)]
        for iteration in range(first, first + iterations):
            self.feed(model, batches[iteration % pool])
            model.optimize_parameters(iteration)
        return model


SPECS = {
    'sr': Spec(sr_options, sr_batch, 'l_pix'),
    'esrgan': Spec(esrgan_options, sr_batch, 'l_g_pix'),
    'esrnet': Spec(esrnet_options, sr_batch, 'l_pix', direct=True),
    'aesrgan': Spec(aesrgan_options, sr_batch, 'l_g_pix', direct=True),
    'ttsr': Spec(ttsr_original_options, ttsr_batch, 'l_g_pix'),
    'ttsr_inpaint': Spec(ttsr_inpaint_options, functools.partial(ttsr_batch, size=16, mask=True), 'l_g_pix'),
    'pix2pix': Spec(pix2pix_options, inpaint_batch, 'l_g_pix'),
}
MODEL_CLASSES = {'sr': 'ExtSRModel', 'esrgan': 'ExtESRGANModel', 'esrnet': 'RealESRNetPretrainModel',
                 'aesrgan': 'MultiScaleRealESRGANModel', 'ttsr': 'TTSRModel', 'ttsr_inpaint': 'TTSRInpaintModel',
                 'pix2pix': 'Pix2PixInpaintModel'}


# a VGG-feature loss for each model (loaded from the vgg19_env fixture's random VGG19; 2-4 s per build, so
# only where a test needs it)
TTSR_PERCEPTUAL = {'type': 'TTSRPerceptualLoss', 'loss_weight': 1e-2, 'layer': 'relu1_2'}
VGG_LOSSES = {'sr': PERCEPTUAL, 'esrgan': PERCEPTUAL, 'esrnet': PERCEPTUAL, 'aesrgan': PERCEPTUAL,
              'ttsr': TTSR_PERCEPTUAL, 'ttsr_inpaint': TTSR_PERCEPTUAL,
              'pix2pix': {'type': 'InpaintPerceptualLoss', 'loss_weight': 0.5, 'layer_weights': {'relu1_2': 1.0}}}


def _weights(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _assert_same_weights(one, two, atol, nets=('net_g', 'net_d', 'net_g_ema')):
    for name in nets:
        if getattr(one, name, None) is None:
            continue
        expected = _weights(one.get_bare_model(getattr(one, name)))
        actual = _weights(two.get_bare_model(getattr(two, name)))
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=atol, msg=f'{name}.{key}')


def _count_steps(model):
    """{'g': [...], 'd': [...]}: one entry per optimizer step, from here on."""
    steps = {}
    for name in ('g', 'd'):
        optimizer = getattr(model, f'optimizer_{name}', None)
        if optimizer is not None:
            steps[name] = []
            optimizer.register_step_post_hook(lambda *_, key=name: steps[key].append(1))
    return steps


def _finite_log(model):
    log = model.get_current_log()
    return all(torch.isfinite(torch.tensor(float(v))) for v in log.values())


# --- the keys ---------------------------------------------------------------------------------------------
def test_every_model_accepts_the_speed_keys():
    from basicsr.utils.registry import MODEL_REGISTRY
    from ext.models.train_speed import TrainSpeed
    for name in (*MODEL_CLASSES.values(), 'AESRGANModel'):
        cls = MODEL_REGISTRY.get(name)
        assert TrainSpeed in cls.policies, name
        assert set(SPEED_KEYS) <= cls.train_option_keys, name


# --- each option trains each model -------------------------------------------------------------------------
OPTIONS = {
    'bf16': BF16,
    'channels_last': {'use_channels_last': True},
    # eager: inductor needs a C++ toolchain and minutes here (one inductor test is in test_train_speed.py)
    'compile': {'use_compile': True, 'use_compile_d': True, 'compile_backend': 'eager'},
    'accum2': {'accum_iter': 2},
}


@pytest.mark.parametrize('option', list(OPTIONS))
@pytest.mark.parametrize('name', list(SPECS))
def test_each_speed_option_trains_each_model(name, option, tmp_path):
    spec = SPECS[name]
    train = dict(OPTIONS[option])
    has_d = bool(spec.options(2).get('network_d'))
    if not has_d:
        train.pop('use_compile_d', None)
    model = spec.build(batch=2, **train)
    steps = _count_steps(model)
    spec.train(model, 2, batch=2)
    log = model.get_current_log()
    assert _finite_log(model), log
    assert spec.pixel_log in log
    assert model.output.shape[0] == 2 and model.gt.shape[0] == 2  # the whole batch is back after the step
    # every optimizer steps once per iteration, whatever the option (TTSR's original recipe: D twice)
    assert len(steps['g']) == 2
    if has_d:
        assert len(steps['d']) == 2 * getattr(model, 'disc_repeat', 1)
    if name == 'ttsr':
        assert {'l_g_pix', 'l_g_tpl', 'l_g_gan', 'l_d_real', 'l_d_fake', 'l_d_gp'} <= set(log)
    if option == 'bf16':
        assert model.output.dtype == torch.bfloat16  # the autocast really ran
    else:
        assert model.output.dtype == torch.float32
    if option == 'channels_last':
        for net_name in ('net_g', 'net_d', 'net_g_ema'):
            net = getattr(model, net_name, None)
            if net is None:
                continue
            convs = [m for m in model.get_bare_model(net).modules() if isinstance(m, torch.nn.Conv2d)]
            assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs), net_name
        assert model.lq.is_contiguous(memory_format=torch.channels_last)
        if name.startswith('ttsr'):
            assert model.ref.is_contiguous(memory_format=torch.channels_last)
    if option == 'compile':
        assert hasattr(model.net_g, '_orig_mod') and (not has_d or hasattr(model.net_d, '_orig_mod'))
        model.opt['path']['models'] = str(tmp_path)
        for net_name in ('net_g', 'net_d') if has_d else ('net_g', ):
            model.save_network(getattr(model, net_name), net_name, 2)
            saved = torch.load(tmp_path / f'{net_name}_2.pth', map_location='cpu', weights_only=True)['params']
            assert set(saved) == set(model.get_bare_model(getattr(model, net_name)).state_dict()), net_name
            assert not any('_orig_mod' in key for key in saved)


# --- bf16 tracks fp32 ---------------------------------------------------------------------------------------
BF16_ITERATIONS, BF16_WINDOW, BF16_TOLERANCE = 50, 10, 0.05
# bf16 convolutions are slow on CPU (no oneDNN in the tests): A-ESRGAN's attention U-Net discriminators and
# TTSR's VGG texture extractor took 10-220 s for 2 x 50 iterations on 2 shared cores, ESRGAN's VGG
# discriminator 18-33 s; the others 8-15 s
SLOW_BF16 = {'esrgan', 'aesrgan', 'ttsr', 'ttsr_inpaint'}


def _tracking_spec(name):
    """The model for the 50-iteration comparison: TTSR at 16 px without D (its discriminator needs 32 px)."""
    spec = SPECS[name]
    if name not in ('ttsr', 'ttsr_inpaint'):
        return spec, spec.options(2)
    opt = _without_discriminator(spec.options(2))
    del opt['train']['tpl_opt']
    return Spec(spec.options, functools.partial(ttsr_batch, size=16, mask=name == 'ttsr_inpaint'), spec.pixel_log), opt


@pytest.mark.parametrize('name', [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_BF16 else n for n in SPECS])
def test_bf16_losses_track_fp32_over_50_iterations(name):
    """The pixel loss of a bf16-autocast run, averaged over its last 10 of 50 iterations on two tiny batches,
    is within 5 % of the fp32 run's (bf16 keeps ~3 significant digits), every logged value is finite, and
    bf16 learns (the same average below that of the first 3 iterations)."""
    spec, opt = _tracking_spec(name)
    batch = 1 if name.startswith('ttsr') else 2
    opt['datasets']['train']['batch_size_per_gpu'] = batch
    pixel = {}
    for label, train in (('fp32', {}), ('bf16', BF16)):
        model = spec.build(options=opt, **train)
        batches = [spec.data(batch, seed) for seed in range(2)]
        losses = []
        for iteration in range(1, BF16_ITERATIONS + 1):
            spec.feed(model, batches[iteration % 2])
            model.optimize_parameters(iteration)
            assert _finite_log(model), (label, iteration, model.get_current_log())
            losses.append(model.get_current_log()[spec.pixel_log])
        pixel[label] = torch.tensor(losses)
    fp32, bf16 = (pixel[label][-BF16_WINDOW:].mean().item() for label in ('fp32', 'bf16'))
    print(f'{name}: {spec.pixel_log} mean of the last {BF16_WINDOW}: fp32 {fp32:.5f} bf16 {bf16:.5f} '
          f'ratio {bf16 / fp32:.4f}')
    assert abs(bf16 / fp32 - 1) < BF16_TOLERANCE
    assert bf16 < pixel['bf16'][:3].mean().item()


# --- losses unstable in half precision stay in float32 ------------------------------------------------------
def _record_dtypes(modules, into):
    """Forward hooks appending the output dtype of every convolution inside ``modules``."""
    handles = []
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv2d):
                handles.append(layer.register_forward_hook(lambda _m, _i, out: into.append(out.dtype)))
    return handles


@pytest.mark.parametrize('name', list(SPECS))
def test_losses_unstable_in_half_precision_run_in_float32_under_bf16(name, monkeypatch, vgg19_env):
    spec = SPECS[name]
    model = spec.build(batch=2, perceptual_opt=dict(VGG_LOSSES[name]), **BF16)
    backward_dtypes, vgg_dtypes, d_dtypes, gp = [], [], [], []
    original_backward = model.speed.backward

    def backward(loss, optimizer, **kwargs):
        backward_dtypes.append(loss.dtype)
        return original_backward(loss, optimizer, **kwargs)

    monkeypatch.setattr(model.speed, 'backward', backward)
    _record_dtypes([model.cri_perceptual], vgg_dtypes)
    if getattr(model, 'net_d', None) is not None:
        _record_dtypes([model.net_d], d_dtypes)
    cri_gan = getattr(model, 'cri_gan', None)
    if hasattr(cri_gan, 'gradient_penalty'):
        original_gp = cri_gan.gradient_penalty

        def gradient_penalty(net_d, real, fake):
            seen = len(d_dtypes)
            value = original_gp(net_d, real, fake)
            gp.append((value.dtype, set(d_dtypes[seen:])))
            return value

        monkeypatch.setattr(cri_gan, 'gradient_penalty', gradient_penalty)
    cri_tpl = getattr(model, 'cri_tpl', None)
    tpl_inputs = []
    if cri_tpl is not None:
        cri_tpl.register_forward_pre_hook(lambda _m, args: tpl_inputs.append({a.dtype for a in args[0]}))

    spec.train(model, 2, batch=2)
    assert model.output.dtype == torch.bfloat16
    assert backward_dtypes and set(backward_dtypes) == {torch.float32}  # every loss backpropagated is float32
    assert vgg_dtypes and set(vgg_dtypes) == {torch.float32}  # the perceptual loss's VGG features
    if d_dtypes:  # the discriminator itself runs under autocast
        assert torch.bfloat16 in d_dtypes
    if name == 'ttsr':  # WGAN-GP: the penalty and the D forward it differentiates twice in float32
        assert gp and all(dtype == torch.float32 and seen == {torch.float32} for dtype, seen in gp)
        assert tpl_inputs and all(dtypes == {torch.float32} for dtypes in tpl_inputs)  # texture features


# --- accumulation ---------------------------------------------------------------------------------------------
def _random_ttsr_batch(size=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {'lq': torch.rand(size, 3, 8, 8, generator=generator),
            'gt': torch.rand(size, 3, 32, 32, generator=generator),
            'ref': torch.rand(size, 3, 32, 32, generator=generator), 'lq_path': [str(i) for i in range(size)]}


@pytest.mark.parametrize('recipe', ['mmagic', 'original'])
def test_ttsr_accumulating_two_half_batches_equals_one_batch(recipe):
    # TTSRNet and TTSRDiscriminator have no batch-dependent layers; 'original' steps D twice before G
    # (d_steps_first, disc_repeat 2) with WGAN-GP, 'mmagic' steps G then D with the vanilla GAN
    # SGD: Adam turns the float noise of gradients that are ~0 into lr-sized steps (2e-3 after 6 D steps)
    extra = dict(ORIGINAL_TTSR if recipe == 'original' else {}, optim_g=dict(SGD), optim_d=dict(SGD))
    models, steps = {}, {}
    for accum in (1, 2):
        opt = ttsr_options(accum_iter=accum, **extra)
        opt['model_type'] = 'TTSRModel'
        set_random_seed(0)
        models[accum] = model = build_model(opt)
        steps[accum] = _count_steps(model)
        set_random_seed(1)  # the penalty's interpolation draws
        for iteration in range(1, 4):
            model.feed_data(_random_ttsr_batch(4, seed=iteration % 3))
            model.optimize_parameters(iteration)
    one, two = models[1], models[2]
    assert two.output.shape == (4, 3, 32, 32) and two.lq.shape[0] == 4
    _assert_same_weights(one, two, atol=1e-7)
    for key, value in one.get_current_log().items():
        assert two.get_current_log()[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key
    # one G step per iteration, disc_repeat (2) D steps after the 1-iteration warm-up, as without accumulation
    assert len(steps[2]['g']) == len(steps[1]['g']) == 3 and len(steps[2]['d']) == len(steps[1]['d']) == 4


def _pix2pix_batch_free(batch):
    """pix2pix without batch-dependent layers: InstanceNorm, no dropout (the accumulation machinery stays)."""
    return pix2pix_options(batch, norm='instance', dropout=0.0)


def _sr_with_perceptual(batch):
    opt = sr_options(batch)
    opt['train']['perceptual_opt'] = dict(PERCEPTUAL)
    return opt


@pytest.mark.parametrize('name, options', [
    ('sr', _sr_with_perceptual),  # RRDBNet + VGG perceptual loss, EMA
    ('ttsr_inpaint', ttsr_inpaint_options),  # box weights and soft attention follow the micro-batch
    ('pix2pix', _pix2pix_batch_free),  # D steps first: the micro-batches' outputs previewed, then replayed
], ids=['sr', 'ttsr_inpaint', 'pix2pix_instance_norm'])
def test_accumulating_two_half_batches_equals_one_batch(name, options, vgg19_env):
    # SGD: Adam turns the float noise of gradients that are ~0 into lr-sized steps
    spec = SPECS[name]
    models, steps = {}, {}
    for accum in (1, 2):
        opt = options(4)
        opt['train'].update(optim_g=dict(SGD), accum_iter=accum)
        if 'optim_d' in opt['train']:
            opt['train']['optim_d'] = dict(SGD)
        opt['train'].pop('plateau', None)
        models[accum] = model = spec.build(options=opt)
        steps[accum] = _count_steps(model)
        set_random_seed(1)
        spec.train(model, 3, batch=4)
    one, two = models[1], models[2]
    assert two.output.shape[0] == 4 and two.lq.shape[0] == 4
    _assert_same_weights(one, two, atol=1e-6)
    for key, value in one.get_current_log().items():
        assert two.get_current_log()[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert {k: len(v) for k, v in steps[2].items()} == {k: len(v) for k, v in steps[1].items()}


def _parameters(net):
    return {k: p.detach().clone() for k, p in net.named_parameters()}


@pytest.mark.parametrize('name', ['esrgan', 'pix2pix'])
def test_accumulation_with_batch_dependent_layers_steps_each_optimizer_and_the_ema_once(name):
    """ESRGAN's VGG discriminator has BatchNorm and the relativistic means are taken per micro-batch;
    pix2pix has BatchNorm and dropout: not equal to one big batch, but G, D and the EMA follow the
    accumulated step (one update per iteration) and the logs and outputs cover the whole batch."""
    spec = SPECS[name]
    model = spec.build(batch=4, accum_iter=2)
    steps = _count_steps(model)
    batches = [spec.data(4, seed) for seed in range(2)]
    for iteration in range(1, 4):
        before = _parameters(model.net_g_ema)
        spec.feed(model, batches[iteration % 2])
        model.optimize_parameters(iteration)
        # one EMA update after both micro-batches: ema = d * ema + (1 - d) * g
        g, decay = _parameters(model.get_bare_model(model.net_g)), model.ema_decay
        for key, value in _parameters(model.net_g_ema).items():
            torch.testing.assert_close(value, decay * before[key] + (1 - decay) * g[key], msg=key)
        assert model.output.shape[0] == model.gt.shape[0] == 4
    assert len(steps['g']) == len(steps['d']) == 3
    for optimizer in (model.optimizer_g, model.optimizer_d):
        assert {int(state['step']) for state in optimizer.state.values()} == {3}


def test_pix2pix_accumulation_trains_d_on_the_outputs_g_is_scored_on_and_updates_batchnorm_once_per_micro_batch(
        monkeypatch):
    """pix2pix steps D before G's loss: under accumulation each micro-batch's output is previewed without
    gradients for D, then recomputed with gradients for G. The two must be the same images (dropout masks
    replayed, BatchNorm in train mode on the same micro-batch), and the previews must leave the BatchNorm
    running statistics alone: they count one update per micro-batch forward with gradients."""
    spec = SPECS['pix2pix']
    model = spec.build(batch=4, accum_iter=2)
    bare = model.get_bare_model(model.net_g)
    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in bare.modules())
    norms = [m for m in bare.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms
    previews = []
    original = model.speed.preview_micro_batches

    def preview(model, forward, net):
        outputs = original(model, forward, net)
        previews.append(torch.cat(outputs))
        return outputs

    monkeypatch.setattr(model.speed, 'preview_micro_batches', preview)
    batches = [spec.data(4, seed) for seed in range(2)]
    for iteration in range(1, 4):
        spec.feed(model, batches[iteration % 2])
        model.optimize_parameters(iteration)
        assert torch.equal(previews[-1], model.output)  # what D was trained on is what G's loss saw
        assert all(int(m.num_batches_tracked) == 2 * iteration for m in norms)
    # the dropout is live: two forwards of the same batch without replay differ
    with torch.no_grad():
        first, second = (bare(model.generator_input()) for _ in range(2))
    assert not torch.equal(first, second)


# --- exact resume ---------------------------------------------------------------------------------------------
def _save_and_load_state(model, tmp_path, iteration):
    model.opt['path'].update(models=str(tmp_path), training_states=str(tmp_path))
    model.save(0, iteration)
    return torch.load(tmp_path / f'{iteration}.state', map_location='cpu', weights_only=False)


@pytest.mark.parametrize('name', ['sr', 'esrgan', 'ttsr_inpaint', 'pix2pix'])
def test_speed_state_is_in_the_state_file_and_restored_next_to_the_models_own(name, tmp_path):
    spec = SPECS[name]
    model = spec.build(batch=2, accum_iter=2, **BF16)
    spec.train(model, 1, batch=2)
    # bf16 has no GradScaler; give optimizer 0 a float16-style one with a moved scale, as CUDA would have
    scaler = torch.amp.GradScaler('cpu', init_scale=1024.0, growth_interval=7)
    scaler._lazy_init_scale_growth_tracker(torch.device('cpu'))
    scaler.update(new_scale=128.0)
    model.speed.grad_scalers[0] = scaler
    state = _save_and_load_state(model, tmp_path, 1)
    extra = state['extra_by_rank'][0]
    assert extra['train_speed']['accum_position'] == 0 and set(extra['train_speed']['grad_scalers']) == {0}
    own = {'pix2pix': 'plateau', 'ttsr_inpaint': 'saturation_streak'}.get(name)
    if own:
        assert own in extra  # the model's own extra state is kept next to the speed state
    fresh = spec.build(batch=2, accum_iter=2, **BF16)
    fresh.resume_training(state)  # BasicSR's resume, with ext.engine.resume's extra state
    assert fresh.speed.grad_scalers[0].get_scale() == 128.0
    assert fresh.speed.grad_scalers[0].state_dict() == scaler.state_dict()
    if name == 'pix2pix':
        assert fresh.plateau.state_dict() == model.plateau.state_dict()


def test_pix2pix_with_bf16_and_accumulation_resumes_exactly(tmp_path):
    """4 iterations in one go against 2, a checkpoint (.pth + .state as ext/train.py writes them), a fresh
    model resumed from it and 2 more: bitwise the same G, EMA, D and plateau (BatchNorm, dropout replay,
    bf16 autocast, accum_iter 2)."""
    from ext.utils.random_states import set_rng_state as _set_rng_state
    spec = SPECS['pix2pix']
    train = dict(BF16, accum_iter=2, ema_warmup=True)
    batches = [spec.data(4, seed) for seed in range(2)]

    def run(model, first, last):
        for iteration in range(first, last + 1):
            spec.feed(model, batches[iteration % 2])
            model.optimize_parameters(iteration)
        return model

    whole = run(spec.build(batch=4, **train), 1, 4)
    half = run(spec.build(batch=4, **train), 1, 2)
    state = _save_and_load_state(half, tmp_path, 2)
    resumed = spec.build(batch=4, **train)
    resumed.load_network(resumed.net_g, str(tmp_path / 'net_g_2.pth'), True, 'params')
    resumed.load_network(resumed.net_g_ema, str(tmp_path / 'net_g_2.pth'), True, 'params_ema')
    resumed.load_network(resumed.net_d, str(tmp_path / 'net_d_2.pth'), True, 'params')
    resumed.resume_training(state)
    _set_rng_state(state['rng'][0])
    run(resumed, 3, 4)
    _assert_same_weights(whole, resumed, atol=0)
    assert resumed.plateau.state_dict() == whole.plateau.state_dict()
    assert resumed.get_current_log() == whole.get_current_log()


# --- invalid combinations -------------------------------------------------------------------------------------
@pytest.mark.parametrize('train, key', [
    ({'accum_iter': 3}, 'accum_iter'),  # does not divide batch 4
    ({'accum_iter': 0}, 'accum_iter'),
    ({'use_amp': True}, 'use_amp'),  # float16 + GradScaler on CPU
    ({'amp_bf16': True}, 'amp_bf16'),  # without use_amp
    ({'use_channels_last': 'yes'}, 'use_channels_last'),
    ({'compile_mode': 'max-autotune'}, 'compile_mode'),  # without use_compile
    ({'compile_backend': 'eager'}, 'compile_backend'),
    ({'use_compile_d': 1}, 'use_compile_d'),
    ({'fast_matmul': 'on'}, 'fast_matmul'),
])
@pytest.mark.parametrize('name', ['sr', 'esrgan', 'ttsr', 'ttsr_inpaint', 'pix2pix'])
def test_invalid_speed_options_are_refused_before_training_naming_the_key(name, train, key):
    with pytest.raises(OptionError, match=f'train.{key}'):
        SPECS[name].build(batch=4, **train)


@pytest.mark.parametrize('name', ['sr', 'esrnet', 'ttsr_rec', 'pix2pix_no_d'])
def test_compiling_a_missing_discriminator_is_refused_naming_the_key(name):
    if name in ('ttsr_rec', 'pix2pix_no_d'):
        spec = SPECS[name.split('_')[0]]
        opt = _without_discriminator(spec.options(2))
    else:
        spec, opt = SPECS[name], SPECS[name].options(2)
    with pytest.raises(OptionError, match='train.use_compile_d'):
        spec.build(options=opt, use_compile=True, use_compile_d=True, compile_backend='eager')
