"""scripts/net_interpolation.py: theta = (1 - alpha) theta_PSNR + alpha theta_GAN over params / params_ema."""
import os.path as osp

import pytest
import torch

import ext  # noqa: F401  (BasicSR 1.4.2 imports only after ext.compat)
from basicsr.archs.rrdbnet_arch import RRDBNet
from ext.utils.checkpoint import load_into_network, load_network_file, read_checkpoint
from helpers import REPO_ROOT, load_script, run_script

SCRIPT = osp.join(REPO_ROOT, 'scripts', 'net_interpolation.py')
net_interpolation = load_script(SCRIPT)


def rrdb(seed, num_feat=8):
    torch.manual_seed(seed)
    net = RRDBNet(3, 3, num_feat=num_feat, num_block=1, num_grow_ch=4)
    for parameter in net.parameters():  # distinct values everywhere, not only where init differs
        parameter.data.normal_()
    return net.state_dict()


@pytest.fixture
def checkpoints(tmp_path):
    psnr = {'params': rrdb(0), 'params_ema': rrdb(1)}
    gan = {'params': rrdb(2), 'params_ema': rrdb(3)}
    torch.save(psnr, tmp_path / 'psnr.pth')
    torch.save(gan, tmp_path / 'gan.pth')
    return psnr, gan, str(tmp_path / 'psnr.pth'), str(tmp_path / 'gan.pth')


def assert_equal_state(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize('param_key', ['params', 'params_ema'])
def test_alpha_zero_and_one_reproduce_the_inputs(tmp_path, checkpoints, param_key):
    psnr, gan, psnr_path, gan_path = checkpoints
    for alpha, expected in ((0.0, psnr), (1.0, gan)):
        out = str(tmp_path / f'interp_{alpha}.pth')
        assert net_interpolation.main(['--psnr_model', psnr_path, '--gan_model', gan_path, '--alpha', str(alpha),
                                       '-o', out, '--param_key', param_key]) == 0
        assert list(read_checkpoint(out)) == [param_key]
        assert_equal_state(load_network_file(out, param_key), expected[param_key])


def test_alpha_blends_every_parameter_and_loads_into_the_network(tmp_path, checkpoints):
    psnr, gan, psnr_path, gan_path = checkpoints
    out = str(tmp_path / 'interp.safetensors')
    assert net_interpolation.main(['--psnr_model', psnr_path, '--gan_model', gan_path, '--alpha', '0.8', '-o', out,
                                   '--param_key', 'all']) == 0
    content = read_checkpoint(out)
    assert sorted(content) == ['params', 'params_ema']
    for key in content:
        for name, value in content[key].items():
            expected = 0.2 * psnr[key][name].double() + 0.8 * gan[key][name].double()
            torch.testing.assert_close(value, expected.float(), rtol=0, atol=1e-6)
    net = RRDBNet(3, 3, num_feat=8, num_block=1, num_grow_ch=4)
    load_into_network(net, load_network_file(out, 'params_ema'))


def test_plain_state_dict_input_and_params_ema_fallback(tmp_path, capsys):
    a, b = rrdb(0), rrdb(1)
    torch.save(a, tmp_path / 'esrgan_plain.pth')  # original ESRGAN release layout
    torch.save({'params': b}, tmp_path / 'gan_params_only.pth')
    out = str(tmp_path / 'interp.pth')
    assert net_interpolation.main(['--psnr_model', str(tmp_path / 'esrgan_plain.pth'), '--gan_model',
                                   str(tmp_path / 'gan_params_only.pth'), '--alpha', '0.5', '-o', out]) == 0
    assert 'params_ema absent' in capsys.readouterr().err
    state = load_network_file(out, 'params_ema')
    torch.testing.assert_close(state['conv_first.weight'], (a['conv_first.weight'] + b['conv_first.weight']) / 2)


def test_mismatched_architectures_and_bad_alpha_are_refused(tmp_path, checkpoints, capsys):
    _, _, psnr_path, _ = checkpoints
    torch.save({'params_ema': rrdb(5, num_feat=16)}, tmp_path / 'wide.pth')
    out = tmp_path / 'never.pth'
    code = net_interpolation.main(['--psnr_model', psnr_path, '--gan_model', str(tmp_path / 'wide.pth'),
                                   '--alpha', '0.5', '-o', str(out)])
    err = capsys.readouterr().err
    assert code == 2 and 'wide.pth does not have the architecture of' in err and psnr_path in err
    assert 'conv_first.weight' in err and '(16, 3, 3, 3)' in err and '(8, 3, 3, 3)' in err
    code = net_interpolation.main(['--psnr_model', psnr_path, '--gan_model', psnr_path, '--alpha', '1.5',
                                   '-o', str(out)])
    assert code == 2 and 'must be in [0, 1]' in capsys.readouterr().err
    assert not out.exists()


def test_help():
    assert '--alpha' in run_script([SCRIPT, '--help'], cwd=REPO_ROOT).stdout
