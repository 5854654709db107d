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
import os
import os.path as osp
import sys


def _import_ext():
    try:
        import ext  # noqa: F401
    except ImportError:  # run from a checkout without installing: the repository root is one level up
        sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
        import ext  # noqa: F401


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


def check_photo(path, size, multiple):
    import cv2
    import numpy as np
    if path:
        from ext.inference import read_image
        image = read_image(path)
        image = cv2.cvtColor(image[..., :3] if image.ndim == 3 else image, cv2.COLOR_BGR2RGB if image.ndim == 3
                             else cv2.COLOR_GRAY2RGB)
    else:
        import skimage.data
        image = skimage.data.astronaut()[100:, 150:]
    height, width = (min(size[0], image.shape[0]) // multiple) * multiple, (min(size[1], image.shape[1]) // multiple
                                                                             ) * multiple
    from ext.utils.tiled_inference import max_value_of
    return np.ascontiguousarray(image[:height, :width]).astype(np.float32) / max_value_of(image.dtype)


def main(argv=None):
    args = build_parser().parse_args(argv)
    _import_ext()
    from ext.inference import UsageError, load_network, probe_scale, read_image, reference_tensor
    from ext.onnx_export import DEFAULT_OPSET, ExportError, export_onnx, verify_onnx
    try:
        if args.model_path and args.model_path.lower().endswith('.onnx'):
            raise UsageError(f'{args.model_path} is already an ONNX model')
        loaded = load_network(args.model_path, opt=args.opt, arch=args.arch,
                              arch_args=args.arch_args if args.arch else None, param_key=args.param_key)
        net = loaded.net.eval()
        multiple = loaded.size_multiple or 1
        scale = args.scale or loaded.scale
        if loaded.takes_reference and not scale:
            raise UsageError('pass --scale for a reference-based network')
        scale = scale or probe_scale(net, loaded.in_channels, multiple, 'cpu')
        multiple = loaded.size_multiple or {1: 4, 2: 2}.get(scale, 1)
        if loaded.in_channels == 1:
            raise UsageError(f'{loaded.description}: 1-channel networks are not supported by the check here')
        photo = check_photo(args.check_image, args.check_size, multiple)
        ref = None
        if loaded.takes_reference:
            if args.check_ref:
                ref = reference_tensor(read_image(args.check_ref), scale)[0].permute(1, 2, 0).numpy()
            else:
                import skimage.data
                ref = skimage.data.coffee()[:photo.shape[0] * scale, :photo.shape[1] * scale].astype('float32') / 255
    except UsageError as error:
        print(f'export_onnx.py: error: {error}', file=sys.stderr)
        return 2
    opset = args.opset or DEFAULT_OPSET
    print(f'{loaded.description}: x{scale}, opset {opset}, {"fp16" if args.fp16 else "fp32"}', file=sys.stderr)
    try:
        export_onnx(net, args.output, scale, in_channels=loaded.in_channels, size_multiple=multiple, opset=opset,
                    fp16=args.fp16, architecture=loaded.description.split(' from ')[0])
        report = verify_onnx(args.output, net, photo, ref=ref)
    except ExportError as error:
        if osp.exists(args.output):
            os.remove(args.output)
        print(f'export_onnx.py: error: {error}', file=sys.stderr)
        return 1
    print(f'onnxruntime check ({report["provider"]}, {photo.shape[0]}x{photo.shape[1]} photo, output in [0, 1]): '
          f'max abs {report["max_abs"]:.2e}, mean abs {report["mean_abs"]:.2e} <= {report["tolerance"]:g}: passed')
    print(f'wrote {args.output} ({osp.getsize(args.output) / 1e6:.1f} MB)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
