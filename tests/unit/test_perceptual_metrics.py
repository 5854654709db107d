"""LPIPS / DISTS validation metrics: the lpips / DISTS-pytorch packages with local backbone files only."""
import numpy as np
import pytest
import torch
import torchvision

import ext  # noqa: F401
from basicsr.metrics import calculate_metric
from ext.utils.pretrained import PretrainedWeightsNotFound, torchvision_file_name
from helpers import skimage_rgb


def random_trunk_file(folder, arch, seed=0):
    """torchvision's file name for ``arch`` holding a randomly initialised trunk (features.*) only."""
    with torch.device('meta'):
        features = getattr(torchvision.models, arch)(weights=None).features
    features = features.to_empty(device='cpu')
    torch.manual_seed(seed)
    for module in features.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
            torch.nn.init.normal_(module.bias, std=0.01)
    path = folder / torchvision_file_name(arch)
    torch.save({f'features.{k}': v for k, v in features.state_dict().items()}, path)
    return path, features


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp('backbones')
    return folder, {arch: random_trunk_file(folder, arch) for arch in ('alexnet', 'vgg16')}


def photos():
    clean = np.ascontiguousarray(skimage_rgb('astronaut')[80:128, 160:208, ::-1])
    rng = np.random.default_rng(0)
    noisy = [np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255).astype(np.uint8) for sigma in (4, 24)]
    return clean, noisy


@pytest.mark.parametrize('metric', ['calculate_lpips', 'calculate_dists'])
def test_metric_through_basicsr_validation_call(weights, metric):
    folder, _ = weights
    clean, (light, heavy) = photos()
    opt = {'type': metric, 'better': 'lower', 'backbone_weights': str(folder), 'device': 'cpu'}
    same = calculate_metric({'img': clean, 'img2': clean}, opt)
    light_score = calculate_metric({'img': light, 'img2': clean}, opt)
    heavy_score = calculate_metric({'img': heavy, 'img2': clean}, opt)
    assert abs(same) < 1e-6 < light_score < heavy_score
    with pytest.raises(ValueError, match='better: lower'):
        calculate_metric({'img': clean, 'img2': clean}, {'type': metric, 'backbone_weights': str(folder)})


def test_lpips_equals_the_package_with_the_same_weights(weights):
    """Our local-file loading gives what lpips.LPIPS computes with that trunk copied in by hand."""
    import lpips
    from ext.metrics.lpips_metric import calculate_lpips
    folder, files = weights
    _, features = files['alexnet']
    reference = lpips.LPIPS(net='alex', pnet_rand=True, verbose=False).eval()
    for name, tensor in reference.net.state_dict().items():  # sliceK.<index>.weight -> features[index]
        tensor.copy_(features.state_dict()[name.split('.', 1)[1]])
    clean, (_, heavy) = photos()
    to_tensor = lambda image: torch.from_numpy(image[:, :, ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = float(reference(to_tensor(heavy), to_tensor(clean), normalize=True))
    got = calculate_lpips(heavy, clean, backbone_weights=str(folder / torchvision_file_name('alexnet')),
                          better='lower', device='cpu')
    assert got == pytest.approx(expected, rel=1e-5)


def test_missing_backbone_names_the_file_and_where_it_comes_from(tmp_path, monkeypatch):
    from ext.metrics.dists_metric import calculate_dists
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.delenv('SRGAN_TOOLKIT_VGG_WEIGHTS', raising=False)
    monkeypatch.setattr('ext.utils.pretrained.project_root', lambda: str(tmp_path))
    clean, _ = photos()
    with pytest.raises(PretrainedWeightsNotFound) as error:
        calculate_dists(clean, clean, better='lower', device='cpu')
    message = str(error.value)
    assert 'vgg16-397923af.pth' in message and 'Nothing is downloaded' in message
    assert 'https://download.pytorch.org/models/vgg16-397923af.pth' in message
    with pytest.raises(PretrainedWeightsNotFound, match='backbone_weights points to'):
        calculate_dists(clean, clean, better='lower', backbone_weights=str(tmp_path / 'nope.pth'))


@pytest.mark.parametrize('spec', ['lpips=calculate_lpips', 'dists=calculate_dists'])
def test_evaluation_cli_metrics_pick_them_by_name_as_lower_is_better(weights, spec):
    """scripts/evaluate.py's metric lookup (ext.utils.sr_benchmark) runs them with `better: lower`."""
    from ext.utils.sr_benchmark import resolve_metrics
    folder, _ = weights
    name = spec.partition('=')[0]
    (metric,) = resolve_metrics([spec], {name: {'backbone_weights': str(folder), 'device': 'cpu'}})
    clean, (light, heavy) = photos()
    assert metric.lower_is_better and metric.kwargs['better'] == 'lower'
    assert metric(clean, clean, 0) < metric(light, clean, 0) < metric(heavy, clean, 0)
