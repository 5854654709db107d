"""A-ESRGAN discriminators: upstream checkpoint layout, outputs, registry names, size errors."""
from collections import OrderedDict

import pytest
import torch
from torch.nn import functional as F

import ext  # noqa: F401
from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY
from ext.archs.aesrgan_unet_discriminator_arch import AttentionUNetDiscriminatorSN
from ext.archs.multiscale_aesrgan_discriminator_arch import MultiScaleAttentionUNetDiscriminator
from ext.registry import MODELS

# (name, kind, out_channels, in_channels, kernel) of one upstream UNetDiscriminatorSN, in nf units
# (reference notes section 1.1); 'c' = num_in_ch.
_SN = 'sn'


def _upstream_convs(nf, c):
    return [
        ('conv0', 'plain', nf, c, 3),
        ('conv1', _SN, 2 * nf, nf, 3), ('conv2', _SN, 4 * nf, 2 * nf, 3), ('conv3', _SN, 8 * nf, 4 * nf, 3),
        ('gating', _SN, 4 * nf, 8 * nf, 1),
        ('cat_1.convU', _SN, 4 * nf, 8 * nf, 3), ('cat_2.convU', _SN, 2 * nf, 4 * nf, 3),
        ('cat_3.convU', _SN, nf, 2 * nf, 3),
        ('conv4', _SN, 4 * nf, 8 * nf, 3), ('conv5', _SN, 2 * nf, 4 * nf, 3), ('conv6', _SN, nf, 2 * nf, 3),
        ('conv7', _SN, nf, nf, 3), ('conv8', _SN, nf, nf, 3), ('conv9', 'plain', 1, nf, 3),
    ]


def upstream_state_dict(num_in_ch, nf, prefix='', seed=0):
    """A random state dict in A-ESRGAN's exact key layout (keys and shapes from the reference notes)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    sd = OrderedDict()
    for name, kind, out_ch, in_ch, k in _upstream_convs(nf, num_in_ch):
        if kind == 'plain':
            sd[f'{prefix}{name}.weight'] = rand(out_ch, in_ch, k, k)
            sd[f'{prefix}{name}.bias'] = rand(out_ch)
        else:
            sd[f'{prefix}{name}.weight_orig'] = rand(out_ch, in_ch, k, k)
            sd[f'{prefix}{name}.weight_u'] = F.normalize(rand(out_ch, scale=1), dim=0)
            sd[f'{prefix}{name}.weight_v'] = F.normalize(rand(in_ch * k * k, scale=1), dim=0)
    for index, x_ch in ((1, 4 * nf), (2, 2 * nf), (3, nf)):
        p = f'{prefix}attn_{index}.'
        sd[p + 'W.0.weight'], sd[p + 'W.0.bias'] = rand(x_ch, x_ch, 1, 1), rand(x_ch)
        sd[p + 'W.1.weight'], sd[p + 'W.1.bias'] = 1 + rand(x_ch), rand(x_ch)
        sd[p + 'W.1.running_mean'], sd[p + 'W.1.running_var'] = rand(x_ch), 1 + rand(x_ch).abs()
        sd[p + 'W.1.num_batches_tracked'] = torch.tensor(7)
        sd[p + 'theta.weight'] = rand(x_ch, x_ch, 2, 2)
        sd[p + 'phi.weight'], sd[p + 'phi.bias'] = rand(x_ch, 4 * nf, 1, 1), rand(x_ch)
        sd[p + 'psi.weight'], sd[p + 'psi.bias'] = rand(1, x_ch, 1, 1), rand(1)
    return sd


def reference_forward(sd, x, prefix=''):
    """Upstream's forward in eval mode, written with torch.nn.functional straight from a state dict."""

    def conv(name, t, stride=1, padding=1):
        if f'{prefix}{name}.weight_orig' in sd:
            w = sd[f'{prefix}{name}.weight_orig']
            sigma = torch.dot(sd[f'{prefix}{name}.weight_u'], w.flatten(1) @ sd[f'{prefix}{name}.weight_v'])
            return F.conv2d(t, w / sigma, None, stride, padding)
        return F.conv2d(t, sd[f'{prefix}{name}.weight'], sd[f'{prefix}{name}.bias'], stride, padding)

    def lrelu(t):
        return F.leaky_relu(t, 0.2)

    def attention(index, feat, gate):
        p = f'{prefix}attn_{index}.'
        theta = F.conv2d(feat, sd[p + 'theta.weight'], None, 2)
        phi = F.conv2d(gate, sd[p + 'phi.weight'], sd[p + 'phi.bias'])
        phi = F.interpolate(phi, size=theta.shape[2:], mode='bilinear', align_corners=False)
        psi = torch.sigmoid(F.conv2d(F.relu(theta + phi), sd[p + 'psi.weight'], sd[p + 'psi.bias']))
        psi = F.interpolate(psi, size=feat.shape[2:], mode='bilinear', align_corners=False)
        y = F.conv2d(psi * feat, sd[p + 'W.0.weight'], sd[p + 'W.0.bias'])
        return F.batch_norm(y, sd[p + 'W.1.running_mean'], sd[p + 'W.1.running_var'], sd[p + 'W.1.weight'],
                            sd[p + 'W.1.bias'], training=False, eps=1e-5)

    def up_cat(name, skip, deep):
        deep = F.interpolate(deep, scale_factor=2, mode='bilinear', align_corners=False)
        return torch.cat([skip, lrelu(conv(name, deep))], 1)

    x0 = lrelu(conv('conv0', x))
    x1 = lrelu(conv('conv1', x0, 2))
    x2 = lrelu(conv('conv2', x1, 2))
    x3 = lrelu(conv('conv3', x2, 2))
    gate = lrelu(conv('gating', x3, 1, 1))
    y = lrelu(conv('conv4', up_cat('cat_1.convU', attention(1, x2, gate), x3)))
    y = lrelu(conv('conv5', up_cat('cat_2.convU', attention(2, x1, gate), y)))
    y = lrelu(conv('conv6', up_cat('cat_3.convU', attention(3, x0, gate), y)))
    y = lrelu(conv('conv7', y))
    y = lrelu(conv('conv8', y))
    return conv('conv9', y)


def test_single_discriminator_loads_upstream_layout_strictly_and_matches_upstream_forward():
    sd = upstream_state_dict(3, 8)
    net = ARCH_REGISTRY.get('UNetDiscriminatorAesrgan')(num_in_ch=3, num_feat=8, skip_connection=True)
    assert isinstance(net, AttentionUNetDiscriminatorSN)
    net.load_state_dict(sd, strict=True)
    net.eval()
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, 1, 32, 48)
    torch.testing.assert_close(out, reference_forward(sd, x), rtol=1e-4, atol=1e-5)


def test_multiscale_loads_upstream_checkpoint_strictly_and_orders_outputs_as_upstream(tmp_path):
    sd = OrderedDict()
    for layer in range(2):
        sd.update(upstream_state_dict(3, 8, prefix=f'layer{layer}.', seed=layer))
    path = tmp_path / 'A_ESRGAN_Multi_D.pth'
    torch.save({'params': sd}, path)  # upstream release layout
    loaded = torch.load(path, weights_only=True)['params']

    net = ARCH_REGISTRY.get('multiscale')(num_in_ch=3, num_feat=8, num_D=2)
    assert isinstance(net, MultiScaleAttentionUNetDiscriminator)
    assert len(net.state_dict()) == len(sd) == 152  # the count the reference notes give for multiscale(3)
    net.load_state_dict(loaded, strict=True)
    net.eval()
    x = torch.rand(1, 3, 64, 32)
    with torch.no_grad():
        full, half = net(x)
    # result[0] = layer1 on the input, result[1] = layer0 on AvgPool2d(4, 2, 1)(input)
    torch.testing.assert_close(full, reference_forward(sd, x, 'layer1.'), rtol=1e-4, atol=1e-5)
    pooled = F.avg_pool2d(x, 4, 2, 1)
    torch.testing.assert_close(half, reference_forward(sd, pooled, 'layer0.'), rtol=1e-4, atol=1e-5)
    assert full.shape == (1, 1, 64, 32) and half.shape == (1, 1, 32, 16)


def test_full_size_multiscale_matches_upstream_size():
    net = MultiScaleAttentionUNetDiscriminator(3)  # upstream defaults: 64 features, 2 scales
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(10.8e6, rel=0.01)


@pytest.mark.parametrize('net, size, multiple', [
    (AttentionUNetDiscriminatorSN(3, num_feat=4), 36, 8),
    (MultiScaleAttentionUNetDiscriminator(3, num_feat=4, num_D=2), 40, 16),
    (MultiScaleAttentionUNetDiscriminator(3, num_feat=4, num_D=3), 48, 32),
])
def test_bad_input_size_names_the_required_multiple(net, size, multiple):
    with pytest.raises(ValueError, match=rf'multiples of {multiple}, got {size}x{multiple * 2}'):
        net(torch.rand(1, 3, size, multiple * 2))
    outputs = net(torch.rand(1, 3, multiple, multiple))  # the multiple itself works
    assert all(o.shape[1] == 1 for o in (outputs if isinstance(outputs, list) else [outputs]))


def test_upstream_type_names_build_in_basicsr_and_mmengine():
    assert ARCH_REGISTRY.get('multiscale') is MultiScaleAttentionUNetDiscriminator
    assert ARCH_REGISTRY.get('UNetDiscriminatorAesrgan') is AttentionUNetDiscriminatorSN
    assert MODEL_REGISTRY.get('AESRGANModel').__name__ == 'MultiScaleRealESRGANModel'
    net = MODELS.build(dict(type='ext.multiscale', num_in_ch=3, num_feat=4, num_D=3))
    assert isinstance(net, MultiScaleAttentionUNetDiscriminator) and len(net(torch.rand(1, 3, 32, 32))) == 3
    single = MODELS.build(dict(type='ext.UNetDiscriminatorAesrgan', num_in_ch=1, num_feat=4))
    assert single(torch.rand(1, 1, 16, 16)).shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match='num_D'):
        MultiScaleAttentionUNetDiscriminator(3, num_D=0)
