"""Convert an upstream TTSR checkpoint into BasicSR checkpoints for ``TTSRNet`` / ``TTSRDiscriminator``.

Formats:

* ``mmagic``: an MMagic / mmedit TTSR checkpoint (``state_dict`` with ``generator.*``,
  ``extractor.*``, ``discriminator.*``; ``extractor_copy.*``, loss and preprocessor keys are dropped);
* ``original``: a researchmm/TTSR checkpoint (``MainNet.*``, ``LTE.*``; a discriminator is never saved
  there, but ``discriminator.conv1..10/fc1/fc2`` keys are converted when present).

Writes ``OUT`` as ``{'params': ...}`` (load it with ``path.pretrain_network_g`` and
``network_g.load_pretrained_vgg: false``) and, when the input has a discriminator, ``--out_d``
(default: ``OUT`` with ``_d`` before the extension). The result is loaded into a ``TTSRNet`` built
from the shapes found, so a wrong mapping fails here, not in training. Files are written atomically.

Example::

    python scripts/convert_ttsr_checkpoint.py --format original TTSR-rec.pt experiments/pretrained_models/TTSR-rec_basicsr.pth
"""
import argparse
import os.path as osp
import re
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# original MainNet name -> MMagic/TTSRNet name, as regular expressions on the key without "MainNet."
ORIGINAL_MAIN_RULES = [
    (r'^SFE\.conv_head\.', 'sfe.conv_first.'),
    (r'^SFE\.RBs\.(\d+)\.', r'sfe.body.\1.'),
    (r'^SFE\.conv_tail\.', 'sfe.conv_last.'),
    (r'^conv11_head\.', 'conv_first1.'),
    (r'^RB11\.(\d+)\.', r'res_block1.\1.'),
    (r'^conv11_tail\.', 'conv_last1.'),
    (r'^conv12\.', 'up1.upsample_conv.'),
    (r'^conv22_head\.', 'conv_first2.'),
    (r'^ex12\.conv12\.', 'csfi2.conv1to2.'),
    (r'^ex12\.conv21\.', 'csfi2.conv2to1.'),
    (r'^ex12\.conv_merge([12])\.', r'csfi2.conv_merge\1.'),
    (r'^RB2([12])\.(\d+)\.', r'res_block2_\1.\2.'),
    (r'^conv2([12])_tail\.', r'conv_last2_\1.'),
    (r'^conv23\.', 'up2.upsample_conv.'),
    (r'^conv33_head\.', 'conv_first3.'),
    (r'^ex123\.conv12\.', 'csfi3.conv1to2.'),
    (r'^ex123\.conv13\.', 'csfi3.conv1to4.'),
    (r'^ex123\.conv21\.', 'csfi3.conv2to1.'),
    (r'^ex123\.conv23\.', 'csfi3.conv2to4.'),
    (r'^ex123\.conv31_([12])\.', r'csfi3.conv4to1_\1.'),
    (r'^ex123\.conv32\.', 'csfi3.conv4to2.'),
    (r'^ex123\.conv_merge([12])\.', r'csfi3.conv_merge\1.'),
    (r'^ex123\.conv_merge3\.', 'csfi3.conv_merge4.'),
    (r'^RB3([123])\.(\d+)\.', r'res_block3_\1.\2.'),
    (r'^conv3([123])_tail\.', r'conv_last3_\1.'),
    (r'^merge_tail\.conv13\.', 'merge_features.conv1to4.'),
    (r'^merge_tail\.conv23\.', 'merge_features.conv2to4.'),
    (r'^merge_tail\.conv_merge\.', 'merge_features.conv_merge.'),
    (r'^merge_tail\.conv_tail([12])\.', r'merge_features.conv_last\1.'),
]
ORIGINAL_LTE_RULES = [
    (r'^sub_mean\.', 'extractor.img_normalize.'),
    (r'^(slice[123])\.', r'extractor.\1.'),
]
ORIGINAL_DISC_RULES = [
    (r'^conv(\d+)\.', lambda m: f'body.{2 * (int(m.group(1)) - 1)}.'),
    (r'^fc([12])\.', lambda m: f'last.{2 * (int(m.group(1)) - 1)}.'),
]
MMAGIC_DROPPED_PREFIXES = ('extractor_copy.', 'perceptual_loss.', 'pixel_loss.', 'gan_loss.',
                           'transferal_perceptual_loss.', 'data_preprocessor.', 'transformer.')


class ConversionError(ValueError):
    pass


def _apply_rules(key, rules):
    for pattern, replacement in rules:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return None


def _strip_module(state):
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}


def unwrap_state_dict(checkpoint):
    """The flat name -> tensor mapping inside an upstream checkpoint file."""
    if isinstance(checkpoint, dict):
        for key in ('state_dict', 'model', 'params'):
            if key in checkpoint and isinstance(checkpoint[key], dict):
                return _strip_module(checkpoint[key])
    if not isinstance(checkpoint, dict):
        raise ConversionError(f'expected a state dict, got {type(checkpoint).__name__}')
    return _strip_module(checkpoint)


def convert_mmagic(state):
    """``(generator state, discriminator state or None, ignored keys)`` from an MMagic state dict."""
    net_g, net_d, ignored = {}, {}, []
    for key, value in state.items():
        if key.startswith('generator.'):
            net_g[key[len('generator.'):]] = value
        elif key.startswith('extractor.'):
            net_g[key] = value
        elif key.startswith('discriminator.'):
            net_d[key[len('discriminator.'):]] = value
        else:
            ignored.append(key)
    if not net_g:
        raise ConversionError('no generator.* / extractor.* keys: not an MMagic TTSR checkpoint '
                              '(try --format original)')
    if not any(k.startswith('extractor.') for k in net_g):
        raise ConversionError('no extractor.* keys: the checkpoint lacks the texture extractor (LTE)')
    return net_g, (net_d or None), ignored


def convert_original(state):
    """``(generator state, discriminator state or None, ignored keys)`` from a researchmm/TTSR state dict."""
    net_g, net_d, ignored, unknown = {}, {}, [], []
    if any(k.startswith(('generator.', 'extractor.')) for k in state):
        raise ConversionError('generator.* / extractor.* keys: this is an MMagic checkpoint (try --format mmagic)')
    disc_only = all(re.match(r'^(conv\d+|fc[12])\.', k) for k in state)
    for key, value in state.items():
        if key.startswith('MainNet.'):
            new = _apply_rules(key[len('MainNet.'):], ORIGINAL_MAIN_RULES)
            (unknown.append(key) if new is None else net_g.__setitem__(new, value))
        elif key.startswith('LTE.'):
            new = _apply_rules(key[len('LTE.'):], ORIGINAL_LTE_RULES)
            (unknown.append(key) if new is None else net_g.__setitem__(new, value))
        elif key.startswith('discriminator.') or disc_only:
            rest = key[len('discriminator.'):] if key.startswith('discriminator.') else key
            new = _apply_rules(rest, ORIGINAL_DISC_RULES)
            (unknown.append(key) if new is None else net_d.__setitem__(new, value))
        elif '_copy' in key or 'SearchNet' in key:
            ignored.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f'{len(unknown)} keys of the original layout have no mapping, e.g. {unknown[:5]}')
    if not net_g and not net_d:
        raise ConversionError('no MainNet.* / LTE.* keys: not an original TTSR checkpoint (try --format mmagic)')
    return net_g, (net_d or None), ignored


def network_options(net_g):
    """``TTSRNet`` keyword arguments matching the shapes of a converted generator state."""
    def count(prefix):
        pattern = re.compile(rf'^{re.escape(prefix)}\.(\d+)\.')
        return len({m.group(1) for m in map(pattern.match, net_g) if m})

    return {'in_channels': int(net_g['sfe.conv_first.weight'].shape[1]),
            'out_channels': int(net_g['merge_features.conv_last2.weight'].shape[0]),
            'mid_channels': int(net_g['sfe.conv_first.weight'].shape[0]),
            'num_blocks': [count('sfe.body'), count('res_block1'), count('res_block2_1'), count('res_block3_1')]}


def discriminator_options(net_d):
    features = int(net_d['last.0.weight'].shape[1])
    return {'in_channels': int(net_d['body.0.weight'].shape[1]), 'in_size': int(round((features / 512)**0.5)) * 32}


def verify(net_g, net_d):
    """Load the converted states into freshly built networks (strict); raise naming any mismatch."""
    sys.path.insert(0, REPO_ROOT)
    import ext
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from ext.archs.ttsr_disc_arch import TTSRDiscriminator
    from ext.archs.ttsr_net_arch import TTSRNet
    pairs = []
    if net_g:
        pairs.append(('generator', TTSRNet(**network_options(net_g), load_pretrained_vgg=False), net_g))
    if net_d:
        pairs.append(('discriminator', TTSRDiscriminator(**discriminator_options(net_d)), net_d))
    for what, net, state in pairs:
        expected = net.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = [k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)]
        if missing or unexpected or wrong:
            raise ConversionError(f'converted {what} does not match the network: missing {missing[:5]}, '
                                  f'unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}')
        net.load_state_dict(state, strict=True)


def default_out_d(out):
    stem, extension = osp.splitext(out)
    return f'{stem}_d{extension or ".pth"}'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--format', required=True, choices=('mmagic', 'original'), help='layout of IN')
    parser.add_argument('input', metavar='IN', help='upstream checkpoint (.pth / .pt)')
    parser.add_argument('output', metavar='OUT', help='BasicSR checkpoint to write for TTSRNet')
    parser.add_argument('--out_d', help='where to write the discriminator, if IN has one (default: OUT_d.pth)')
    parser.add_argument('--no_verify', action='store_true', help='skip loading the result into TTSRNet')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch
    sys.path.insert(0, REPO_ROOT)
    from ext.utils.atomic_io import atomic_torch_save
    if not osp.isfile(args.input):
        raise SystemExit(f'error: {args.input!r} does not exist')
    try:
        checkpoint = torch.load(args.input, map_location='cpu', weights_only=True)
    except Exception as error:  # noqa: BLE001
        raise SystemExit(f'error: cannot load {args.input!r} as a weights-only checkpoint: {error}') from None
    try:
        state = unwrap_state_dict(checkpoint)
        convert = convert_mmagic if args.format == 'mmagic' else convert_original
        net_g, net_d, ignored = convert(state)
        if not args.no_verify:
            verify(net_g, net_d)
    except ConversionError as error:
        raise SystemExit(f'error: {args.input}: {error}') from None
    if net_g:
        atomic_torch_save({'params': net_g}, args.output)
        print(f'generator ({len(net_g)} tensors) -> {args.output}; network_g: '
              f'{{type: TTSRNet, {", ".join(f"{k}: {v}" for k, v in network_options(net_g).items())}, '
              f'load_pretrained_vgg: false}}')
    if net_d:
        out_d = args.out_d or default_out_d(args.output)
        atomic_torch_save({'params': net_d}, out_d)
        print(f'discriminator ({len(net_d)} tensors) -> {out_d}; network_d: '
              f'{{type: TTSRDiscriminator, {", ".join(f"{k}: {v}" for k, v in discriminator_options(net_d).items())}}}')
    if ignored:
        print(f'{len(ignored)} keys dropped (frozen copies, losses, preprocessing), e.g. {ignored[:3]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
