"""How much the A-ESRGAN training step costs beyond the networks' own compute, and how fast data is made.

Measured side by side in one run, on the same networks and the same batch, alternating:

- ``model step``: ``MultiScaleRealESRGANModel.optimize_parameters`` (G step with L1 + per-scale GAN
  losses, D real/fake steps, EMA update, loss logging);
- ``raw step``: the same forward/backward/optimizer calls written directly in torch (no EMA, no logging);
- ``synthesis``: ``feed_data`` (second-order degradation, crop, training-pair queue, USM) per image.
  On a GPU, BasicSR's CUDA-only ``RealESRGANModel.feed_data`` is timed next to it.

    python benchmarks/bench_aesrgan_step.py [--device cpu|cuda] [--batch 4] [--gt-size 64] [--iters 5]

Prints a table of times and ratios; the framework overhead is ``model step / raw step - 1``.
"""
import argparse
import copy
import os.path as osp
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
import yaml  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import ext  # noqa: E402
ext.activate()  # the BasicSR fixes and every component, before BasicSR code runs
from basicsr.models import build_model  # noqa: E402
from basicsr.utils import set_random_seed  # noqa: E402

OPTION_FILE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'options', 'train_multiaesrgan_x4plus.yml')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--batch', type=int, default=4, help='batch size (default 4)')
    parser.add_argument('--gt-size', type=int, default=64, help='GT crop size, a multiple of 16 (default 64)')
    parser.add_argument('--source-size', type=int, default=128,
                        help='size of the GT images the degradation starts from (RealESRGANDataset: 400)')
    parser.add_argument('--num-feat', type=int, default=16, help='RRDBNet and discriminator channels (upstream 64)')
    parser.add_argument('--num-block', type=int, default=2, help='RRDB blocks (upstream 23)')
    parser.add_argument('--num-d', type=int, default=2, help='discriminator scales (default 2)')
    parser.add_argument('--iters', type=int, default=5, help='timed iterations per variant (default 5)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed iterations first (default 1)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    return parser.parse_args(argv)


def make_options(args):
    with open(OPTION_FILE) as handle:
        opt = yaml.safe_load(handle)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=1 if args.device == 'cuda' else 0,
               gt_size=args.gt_size, queue_size=args.batch * 4)
    opt['datasets']['train'].update(batch_size_per_gpu=args.batch, gt_size=args.gt_size)
    opt['network_g'].update(num_feat=args.num_feat, num_block=args.num_block, num_grow_ch=args.num_feat // 2)
    opt['network_d'].update(num_feat=args.num_feat, num_D=args.num_d)
    opt['train']['gan_scale_weights'] = [1.0] * args.num_d
    opt['train'].pop('perceptual_opt')  # VGG weights are not always on disk; both variants skip it alike
    opt['path'] = {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None}
    return opt


def make_batch(args, seed):
    """What RealESRGANDataset yields: GT images in [0, 1] and 21x21 blur / sinc kernels."""
    generator = torch.Generator().manual_seed(seed)
    gt = torch.rand(args.batch, 3, args.source_size, args.source_size, generator=generator)
    gt = F.avg_pool2d(gt, 5, 1, 2)  # smoother than white noise, like a photo
    gt = (gt * 255).round() / 255
    kernel = torch.zeros(args.batch, 21, 21)
    kernel[:, 8:13, 8:13] = 1 / 25.
    sinc = torch.zeros(args.batch, 21, 21)
    sinc[:, 10, 10] = 1
    return {'gt': gt, 'kernel1': kernel, 'kernel2': kernel.clone(), 'sinc_kernel': sinc}


def synchronize(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def timed(function, device):
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def raw_step(net_g, net_d, opt_g, opt_d, lq, gt, gan_weight=0.1):
    """The networks' own work in one A-ESRGAN iteration, written directly."""
    net_d.requires_grad_(False)
    opt_g.zero_grad()
    output = net_g(lq)
    fake = net_d(output)
    loss_g = F.l1_loss(output, gt) + gan_weight * sum(
        F.binary_cross_entropy_with_logits(p, torch.ones_like(p)) for p in fake)
    loss_g.backward()
    opt_g.step()
    net_d.requires_grad_(True)
    opt_d.zero_grad()
    sum(F.binary_cross_entropy_with_logits(p, torch.ones_like(p)) for p in net_d(gt)).backward()
    sum(F.binary_cross_entropy_with_logits(p, torch.zeros_like(p)) for p in net_d(output.detach())).backward()
    opt_d.step()


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_random_seed(0)
    opt = make_options(args)
    model = build_model(opt)
    # the raw variant trains copies, so both start from the same weights and see the same batch
    net_g, net_d = copy.deepcopy(model.get_bare_model(model.net_g)), copy.deepcopy(model.get_bare_model(model.net_d))
    opt_g = torch.optim.Adam(net_g.parameters(), lr=1e-4, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(net_d.parameters(), lr=1e-4, betas=(0.9, 0.99))

    upstream = None
    if args.device == 'cuda':  # BasicSR's own synthesis only runs on CUDA
        upstream_opt = copy.deepcopy(opt)
        upstream_opt['model_type'] = 'RealESRGANModel'
        upstream = build_model(upstream_opt)

    batches = [make_batch(args, seed) for seed in range(4)]
    times = {'model step': [], 'raw step': [], 'synthesis (ext)': [], 'synthesis (BasicSR)': []}
    for index in range(args.warmup + args.iters):
        batch = batches[index % len(batches)]
        synthesis = timed(lambda: model.feed_data(batch), args.device)
        lq, gt = model.lq.clone(), model.gt.clone()
        model_step = timed(lambda: model.optimize_parameters(index + 1), args.device)
        raw = timed(lambda: raw_step(net_g, net_d, opt_g, opt_d, lq, gt), args.device)
        upstream_synthesis = timed(lambda: upstream.feed_data(batch), args.device) if upstream else None
        if index >= args.warmup:
            times['model step'].append(model_step)
            times['raw step'].append(raw)
            times['synthesis (ext)'].append(synthesis)
            if upstream_synthesis is not None:
                times['synthesis (BasicSR)'].append(upstream_synthesis)

    med = {name: statistics.median(values) for name, values in times.items() if values}
    device = torch.cuda.get_device_name() if args.device == 'cuda' else f'CPU, {torch.get_num_threads()} threads'
    print(f'A-ESRGAN step on {device}: batch {args.batch}, gt {args.gt_size}px from {args.source_size}px, '
          f'RRDBNet {args.num_block} blocks x {args.num_feat} ch, {args.num_d}-scale D; median of {args.iters}')
    print(f'{"what":<22}{"ms / iter":>12}{"images / s":>12}{"ratio":>10}')
    print(f'{"raw step":<22}{med["raw step"] * 1e3:>12.1f}{args.batch / med["raw step"]:>12.1f}{1:>10.2f}')
    ratio = med['model step'] / med['raw step']
    print(f'{"model step":<22}{med["model step"] * 1e3:>12.1f}{args.batch / med["model step"]:>12.1f}{ratio:>10.2f}')
    base = med['synthesis (ext)']
    for name in ('synthesis (ext)', 'synthesis (BasicSR)'):
        if name in med:
            print(f'{name:<22}{med[name] * 1e3:>12.1f}{args.batch / med[name]:>12.1f}{med[name] / base:>10.2f}')
    print(f'framework overhead of the training step: {100 * (ratio - 1):+.1f}% '
          '(EMA update, loss bookkeeping, per-scale logging)')
    print(f'synthesis / model step time: {base / med["model step"]:.2f}')
    return med


if __name__ == '__main__':
    main()
