#!/usr/bin/env python
"""Super-resolve images with a trained generator, tile by tile so memory stays bounded.

The network comes from one of:
  * ``-opt train.yml``: the training options' ``network_g`` (any architecture of this package or
    BasicSR); the checkpoint defaults to the YAML's ``path.pretrain_network_g``;
  * ``--arch Name --arch_args '{"num_feat": 64, ...}'``: an architecture from BasicSR's ARCH_REGISTRY;
  * only ``--model_path``: a checkpoint this package's training wrote (it records its network_g), or a
    published architecture (ESRGAN/RRDBNet, Real-ESRGAN compact, SwinIR, HAT, ...) recognised by spandrel;
  * an ``.onnx`` file from scripts/export_onnx.py, run by onnxruntime with the same tiling.

The work is done by ext.inference (load_upscaler / upscale_paths), importable from Python.

Examples:
  python scripts/inference.py -i inputs -o results --model_path RealESRGAN_x4plus.pth --tile 256
  python scripts/inference.py -i photo.png -opt options/train_aesrgan.yml --model_path net_g_150000.pth -s 3.5
  python scripts/inference.py -i lr/ --ref refs/ -opt options/ttsr.yml --model_path net_g_latest.pth
  python scripts/inference.py -i photos/ --model_path RealESRGAN_x4plus.pth --tile 256 --precision bf16 --channels_last

Gray, BGR and BGRA images in 8 or 16 bits come back in the same mode and depth. Outputs are written
to a temporary name and renamed, so a crash never leaves a half-written file; a file that fails (not
an image, out of memory even on the smallest tile, ...) is reported by name and skipped: out of memory on a
tile first retries that image with half the tile, down to 32 px. Exit status: 0 when every input was
written, 1 when some failed, 2 for a usage or model error.
"""
import argparse
import os.path as osp
import sys


sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this checkout's ext, installed or not
import ext  # noqa: E402  (light: no torch until ext.activate())


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-i', '--input', required=True, help='input image or folder of images')
    parser.add_argument('-o', '--output', default='results', help='output folder (default: %(default)s)')
    parser.add_argument('--model_path', help='network checkpoint (.pth or .safetensors); with -opt it defaults to '
                        'path.pretrain_network_g of the YAML')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('-opt', '--opt', help='training YAML whose network_g defines the network')
    source.add_argument('--arch', help='architecture name in the registry (e.g. RRDBNet, SRVGGNetCompact)')
    parser.add_argument('--arch_args', default='{}', help='JSON object of --arch keyword arguments')
    parser.add_argument('--param_key', default='auto',
                        help="checkpoint key: params_ema, params, ... (default auto: params_ema, else params)")
    parser.add_argument('--scale', type=int, help='network upscaling factor (default: from the model)')
    parser.add_argument('-s', '--outscale', type=float,
                        help='final upscaling factor, any float; the network output is resized (Lanczos) to it '
                        '(default: the network scale)')
    parser.add_argument('-t', '--tile', type=int, default=0,
                        help='tile size in input pixels, 0 for none (default: %(default)s); lower it on out-of-memory')
    parser.add_argument('--tile_pad', default='auto',
                        help='context pixels around each tile; auto measures on the network how much context keeps '
                        'tiled output within ~1 gray level of untiled (default: %(default)s)')
    parser.add_argument('--pre_pad', type=int, default=0,
                        help='reflection padding at the right/bottom border (default: %(default)s)')
    parser.add_argument('--size_multiple', type=int,
                        help='pad inputs to a multiple of this (default: from the model; 2 for x2, 4 for x1)')
    parser.add_argument('--precision', choices=('fp32', 'bf16', 'fp16'), default=None,
                        help='numeric precision of the network: fp32 (default), bf16 (CPU and CUDA; faster on CPUs '
                        'with AVX-512 BF16, several times with AMX; output within about a gray level), fp16 (CUDA '
                        'only)')
    parser.add_argument('--fp16', action='store_true', help='the same as --precision fp16 (CUDA devices only)')
    parser.add_argument('--channels_last', action='store_true',
                        help='channels_last memory layout of the weights (with --precision bf16 on a CPU: the '
                        "fastest path of PyTorch's oneDNN)")
    parser.add_argument('--self_ensemble', action='store_true',
                        help='average the outputs for the 8 flips/transposes of each tile (EDSR+ geometric '
                        'self-ensemble): 8x slower, a slightly higher PSNR; not for reference-based networks')
    parser.add_argument('--color_fix', choices=('none', 'wavelet', 'adain'), default='none',
                        help='correct the color shift of GAN outputs against the bicubic-upscaled input: wavelet keeps '
                        "the output's detail on the input's low-frequency color, adain matches each channel's mean and "
                        'std (default: %(default)s)')
    parser.add_argument('--device', default='auto', help='cpu, cuda, cuda:1, ... (default: cuda when available)')
    parser.add_argument('--ref', help='reference image, or folder of references matched to inputs by file name, '
                        'for reference-based networks (TTSR)')
    parser.add_argument('--alpha_upsampler', choices=('network', 'resize'), default='network',
                        help='how the alpha channel of RGBA images is upscaled (default: %(default)s)')
    parser.add_argument('--suffix', default='out',
                        help='appended to output names: name_<suffix>.ext (default: %(default)s)')
    parser.add_argument('--ext', default='auto',
                        help='output format: auto (as the input; png for RGBA), png, jpg, webp, tif, ... '
                        '(default: %(default)s)')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from ext.inference import run_cli
    return run_cli(args, prog='inference.py')


if __name__ == '__main__':
    sys.exit(main())
