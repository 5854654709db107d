"""A process's random generators (Python, NumPy, torch): save, restore, and seed them for one block.

Used by the engine (exact resume, per-draw seeds) and by the data code that must draw the same degradations on
every machine (:mod:`ext.data.degraded_pairs`); no BasicSR knowledge here.
"""
import contextlib
import random

import numpy as np
import torch


def rng_state():
    """This process's random states (Python, NumPy, torch CPU and CUDA), as tensors and plain containers."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state = {'python': random.getstate(),
             'numpy': (kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, cached),
             'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore what :func:`rng_state` returned."""
    random.setstate(state['python'])
    kind, key, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@contextlib.contextmanager
def random_state_kept():
    """Run the block and give the random streams back as they were before it."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


@contextlib.contextmanager
def seeded(seed):
    """Seed Python's, NumPy's and torch's CPU generator with ``seed`` (below 2**32) for the block (CPU streams
    only), then give them back unchanged to the caller."""
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.random.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])
