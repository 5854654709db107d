"""The seed of each draw of the training set, and validation that keeps the training streams.

A run resumed from a ``.state`` file continues exactly: the states of Python's, NumPy's and torch's
generators are saved per rank and restored right before the first batch is drawn, validation never
draws from the training streams, and each training sample takes its augmentations from a seed that
depends only on where it stands in the run (:func:`sample_seed`), whatever the number of loader workers.
Saving, restoring and seeding the generators themselves: :mod:`ext.utils.random_states`.
"""
import hashlib

from ext.utils.random_states import random_state_kept


def sample_seed(seed, rank, epoch, position):
    """The seed of one draw of the training set: a hash of where it stands in the run."""
    digest = hashlib.blake2b(f'{seed}:{rank}:{epoch}:{position}'.encode(), digest_size=8).digest()
    return int.from_bytes(digest, 'little') % 2**32


def validation_keeping_random_states(original, self, *args, **kwargs):
    """Validation must not draw from the training streams (a val DataLoader iterator takes a seed from
    torch's generator): a run resumed from a checkpoint taken at a validation iteration would diverge."""
    with random_state_kept():
        return original(self, *args, **kwargs)
