"""The random states of a process and the seed of each draw of the training set.

A run resumed from a ``.state`` file continues exactly: the states of Python's, NumPy's and torch's
generators are saved per rank and restored right before the first batch is drawn, validation never
draws from the training streams, and each training sample takes its augmentations from a seed that
depends only on where it stands in the run (:func:`sample_seed`), whatever the number of loader workers.
"""
import contextlib
import hashlib
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
    """Seed Python's, NumPy's and torch's CPU generator with ``seed`` for the block (CPU streams only),
    then give them back unchanged to the caller."""
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


def sample_seed(seed, rank, epoch, position):
    """The seed of one draw of the training set: a hash of where it stands in the run."""
    digest = hashlib.blake2b(f'{seed}:{rank}:{epoch}:{position}'.encode(), digest_size=8).digest()
    return int.from_bytes(digest, 'little') % 2**32


def validation_keeping_random_states(original, self, *args, **kwargs):
    """Validation must not draw from the training streams (a val DataLoader iterator takes a seed from
    torch's generator): a run resumed from a checkpoint taken at a validation iteration would diverge."""
    with random_state_kept():
        return original(self, *args, **kwargs)
