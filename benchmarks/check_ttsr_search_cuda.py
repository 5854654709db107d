#!/usr/bin/env python
"""Chunked vs plain TTSR search on a CUDA device, values and gradients in float64 (for a machine with a
GPU; the CPU equivalent is tests/unit/test_ttsr_search.py)."""
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing
from ext.archs import texture_search as search  # noqa: E402

device = torch.device(sys.argv[1] if len(sys.argv) > 1 else 'cuda')
worst = 0.
for n, c, h, w, hr, wr, chunk, key_chunk in [(2, 8, 5, 7, 6, 9, 3, 5), (3, 16, 9, 6, 7, 11, 10, 13), (2, 256, 10, 10, 12, 12, None, None)]:
    torch.manual_seed(0)
    inputs = [torch.randn(*shape, dtype=torch.float64, device=device, requires_grad=True) for shape in
              ((n, c, h, w), (n, c, hr, wr), (n, c, hr, wr), (n, c // 2, 2 * hr, 2 * wr), (n, c // 4, 4 * hr, 4 * wr))]
    outputs = []
    for run in (lambda: search.search_transfer_plain(inputs[0], inputs[1], inputs[2:]),
                lambda: search.search_transfer_chunked(inputs[0], inputs[1], inputs[2:], chunk, key_chunk)):
        soft, textures = run()
        loss = soft.sum() + sum((t * t).sum() for t in textures)
        outputs.append([soft, *textures, *torch.autograd.grad(loss, inputs)])
    diff = max((a - b).abs().max().item() for a, b in zip(*outputs))
    worst = max(worst, diff)
    print(f'{device} N={n} C={c} LR {h}x{w} Ref/4 {hr}x{wr} chunks {chunk}/{key_chunk}: max |chunked - plain| '
          f'(outputs and gradients) = {diff:.2e}')
assert worst < 1e-9, worst
print('OK')
