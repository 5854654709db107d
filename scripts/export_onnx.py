#!/usr/bin/env python
"""Export a generator to ONNX (dynamic height/width) and check it with onnxruntime against PyTorch.

The network comes from the same sources as scripts/inference.py: a checkpoint this package wrote (it records
its network_g), a published architecture spandrel recognises (RRDBNet/ESRGAN, Real-ESRGAN compact, ...),
-opt train.yml (network_g) or --arch Name --arch_args JSON. The check runs the export with onnxruntime and
the network with PyTorch on a real photo (scikit-image's astronaut, or --check_image) and prints the max and
mean absolute difference in [0, 1]; it fails (exit 1, no output file kept) above 1e-3 for fp32 / 2e-2 for fp16.

Examples:
  python scripts/export_onnx.py --model_path RealESRGAN_x4plus.pth -o RealESRGAN_x4plus.onnx
  python scripts/export_onnx.py --model_path experiments/x/models/net_g_latest.pth -o net_g.onnx --fp16
  python scripts/inference.py -i photo.png --model_path net_g.onnx --tile 256      # same tiling, onnxruntime
"""
import argparse
import os.path as osp
import sys


sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this checkout's ext, installed or not
import ext  # noqa: E402  (light: no torch until ext.activate())


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model_path', help='.pth / .safetensors checkpoint; with -opt defaults to '
                        'path.pretrain_network_g of the YAML')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('-opt', '--opt', help='training YAML whose network_g defines the network')
    source.add_argument('--arch', help='architecture name in the registry (e.g. RRDBNet, SRVGGNetCompact)')
    parser.add_argument('--arch_args', default='{}', help='JSON object of --arch keyword arguments')
    parser.add_argument('--param_key', default='auto', help='checkpoint key (default auto: params_ema, else params)')
    parser.add_argument('--scale', type=int, help='network scale (default: from the model or a probe run)')
    parser.add_argument('-o', '--output', required=True, help='the .onnx file to write')
    parser.add_argument('--opset', type=int, help='ONNX opset (default: 17, run by every onnxruntime provider)')
    parser.add_argument('--fp16', action='store_true', help='half-precision weights, input and output')
    parser.add_argument('--check_image', help='photo for the onnxruntime check (default: scikit-image astronaut)')
    parser.add_argument('--check_size', type=int, nargs=2, default=(72, 88), metavar=('H', 'W'),
                        help='crop of the check photo, in input pixels; differs from the traced size so the '
                        'dynamic axes are tested (default: 72 88)')
    parser.add_argument('--check_ref', help='reference image for the check of reference-based networks')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
    from ext.inference import UsageError, load_network
    from ext.inference.onnx import DEFAULT_OPSET, ExportError, export_checked, plan_export
    try:
        if args.model_path and args.model_path.lower().endswith('.onnx'):
            raise UsageError(f'{args.model_path} is already an ONNX model')
        loaded = load_network(args.model_path, opt=args.opt, arch=args.arch,
                              arch_args=args.arch_args if args.arch else None, param_key=args.param_key)
        plan = plan_export(loaded, scale=args.scale, check_image=args.check_image, check_size=args.check_size,
                           check_ref=args.check_ref)
    except UsageError as error:
        print(f'export_onnx.py: error: {error}', file=sys.stderr)
        return 2
    opset = args.opset or DEFAULT_OPSET
    print(f'{loaded.description}: x{plan.scale}, opset {opset}, {"fp16" if args.fp16 else "fp32"}', file=sys.stderr)
    try:
        report = export_checked(plan, args.output, opset=opset, fp16=args.fp16)
    except ExportError as error:
        print(f'export_onnx.py: error: {error}', file=sys.stderr)
        return 1
    photo = plan.photo
    print(f'onnxruntime check ({report["provider"]}, {photo.shape[0]}x{photo.shape[1]} photo, output in [0, 1]): '
          f'max abs {report["max_abs"]:.2e}, mean abs {report["mean_abs"]:.2e} <= {report["tolerance"]:g}: passed')
    print(f'wrote {args.output} ({osp.getsize(args.output) / 1e6:.1f} MB)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
