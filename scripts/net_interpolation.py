#!/usr/bin/env python
"""Network interpolation (ESRGAN, Wang et al. 2018, sec. 3.4): blend a PSNR and a GAN generator.

    theta = (1 - alpha) * theta_PSNR + alpha * theta_GAN

alpha = 0 gives the PSNR-oriented network (smooth), alpha = 1 the GAN one (sharp, with artefacts);
values in between trade the two without retraining. Both checkpoints must come from the same
architecture: every parameter name and shape is checked. Integer buffers (e.g. BatchNorm's
num_batches_tracked) are taken from the nearer network.

Example:
  python scripts/net_interpolation.py --psnr_model net_g_psnr.pth --gan_model net_g_gan.pth --alpha 0.8 \\
      -o net_g_interp_0.8.pth
The output is a normal BasicSR checkpoint ({param_key: state_dict}); a .safetensors output name writes
that format instead.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this checkout's ext, installed or not

PARAM_KEY_CHOICES = ('params_ema', 'params', 'all')


class InterpolationError(ValueError):
    """The two checkpoints cannot be interpolated; the message names them and says why."""


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--psnr_model', required=True, help='checkpoint of the PSNR-oriented network (alpha = 0)')
    parser.add_argument('--gan_model', required=True, help='checkpoint of the GAN network (alpha = 1)')
    parser.add_argument('--alpha', type=float, required=True, help='weight of the GAN network, in [0, 1]')
    parser.add_argument('-o', '--output', required=True, help='output checkpoint (.pth or .safetensors)')
    parser.add_argument('--param_key', choices=PARAM_KEY_CHOICES, default='params_ema',
                        help='which weights to blend: params_ema (falls back to params where absent), params, or '
                        'all keys both checkpoints have (default: %(default)s)')
    return parser


def interpolate_state_dicts(psnr, gan, alpha, psnr_name='PSNR model', gan_name='GAN model'):
    """``(1 - alpha) * psnr + alpha * gan`` for every floating tensor; names and shapes must match."""
    from ext.utils.checkpoint import compare_state_dicts, describe_mismatch
    missing, unexpected, mismatched = compare_state_dicts(psnr, gan)
    if missing or unexpected or mismatched:
        difference = describe_mismatch(missing, unexpected, mismatched, expected=psnr_name, actual=gan_name)
        raise InterpolationError(f'{gan_name} does not have the architecture of {psnr_name}: {difference}')
    result = {}
    for name, low in psnr.items():
        high = gan[name]
        if low.is_floating_point() and high.is_floating_point():
            mixed = low.double() * (1.0 - alpha) + high.double() * alpha
            result[name] = mixed.to(low.dtype)
        else:  # integer buffers cannot be blended
            result[name] = (high if alpha >= 0.5 else low).clone()
    return result


def _param_keys(checkpoint):
    from ext.utils.checkpoint import is_state_dict
    if is_state_dict(checkpoint):
        return ['params']  # a plain state dict counts as 'params'
    return [key for key, value in checkpoint.items() if is_state_dict(value)]  # not e.g. network_options


def interpolate_checkpoints(psnr_path, gan_path, alpha, param_key='params_ema'):
    """The interpolated ``{param_key: state_dict}`` of two checkpoint files (see :func:`build_parser`)."""
    from ext.utils.checkpoint import read_checkpoint, select_params
    if not 0.0 <= alpha <= 1.0:
        raise InterpolationError(f'--alpha must be in [0, 1], got {alpha}')
    psnr_ckpt, gan_ckpt = read_checkpoint(psnr_path), read_checkpoint(gan_path)
    if param_key == 'all':
        keys = [key for key in _param_keys(psnr_ckpt) if key in _param_keys(gan_ckpt)]
        if not keys:
            raise InterpolationError(f'{psnr_path} ({_param_keys(psnr_ckpt)}) and {gan_path} '
                                     f'({_param_keys(gan_ckpt)}) have no param key in common')
    else:
        keys = [param_key]
    result = {}
    for key in keys:
        psnr_key, psnr = select_params(psnr_ckpt, key, source=psnr_path)
        gan_key, gan = select_params(gan_ckpt, key, source=gan_path)
        if (psnr_key or 'params') != key or (gan_key or 'params') != key:
            print(f'note: {key} absent; using {psnr_key or "the plain state dict"} of {psnr_path} and '
                  f'{gan_key or "the plain state dict"} of {gan_path}', file=sys.stderr)
        result[key] = interpolate_state_dicts(psnr, gan, alpha, psnr_path, gan_path)
    return result


def main(argv=None):
    args = build_parser().parse_args(argv)
    from ext.utils.checkpoint import CheckpointError, save_network_file
    try:
        result = interpolate_checkpoints(args.psnr_model, args.gan_model, args.alpha, args.param_key)
        save_network_file(result, args.output)
    except (InterpolationError, CheckpointError, FileNotFoundError) as error:
        print(f'net_interpolation.py: error: {error}', file=sys.stderr)
        return 2
    count = sum(len(state) for state in result.values())
    print(f'wrote {args.output}: alpha={args.alpha}, keys {list(result)}, {count} tensors')
    return 0


if __name__ == '__main__':
    sys.exit(main())
