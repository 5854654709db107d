"""The training set seeded per draw, the sampler that resumes inside an epoch, and epochs that reach
``total_iter``.

BasicSR restarts the epoch's data order on resume and draws augmentations from the process's global
streams, which loader workers fork; here the sampler hands out ``(index, seed)`` pairs whose seed is a
function of (manual_seed, rank, epoch, position) only, and skips the batches a resumed run already
trained, so a run killed in the middle of an epoch continues with exactly the samples it would have drawn.
"""
import itertools
import math

import torch
from basicsr.data.data_sampler import EnlargedSampler

from ext.data.image_reader import BadImageFile
from ext.engine.bad_data import BadFileGuard, BadTrainingData
from ext.engine.dist import own_rank_entry
from ext.engine.progress import PROGRESS
from ext.engine.seeding import sample_seed
from ext.errors import OptionError
from ext.utils.random_states import seeded, set_rng_state


class PerSampleSeededDataset(torch.utils.data.Dataset):
    """A training set whose samples take their augmentation randomness from a seed per draw.

    The sampler hands out ``(index, seed)`` pairs; ``random``, ``numpy`` and torch's CPU generator
    are seeded for that sample and given back unchanged to the caller. Augmentations are then a
    function of (manual_seed, rank, epoch, position) whatever the number of loader workers, so a run
    resumed in the middle of an epoch draws exactly the samples the killed run would have drawn.
    Plain integer indices read the wrapped dataset as they are.

    A sample whose file is bad (:class:`~ext.data.image_reader.BadImageFile`: missing, empty,
    truncated, not an image) is replaced by another one, chosen and seeded by a hash of the draw's
    seed and the attempt: the replacement does not depend on which files were already known to be
    bad, so resume stays exact. :class:`~ext.engine.bad_data.BadFileGuard` logs and limits the bad files.
    """

    def __init__(self, dataset, bad_files=None):
        self.dataset = dataset
        self.bad_files = bad_files or BadFileGuard(len(dataset))
        dataset.bad_files_guarded = True  # datasets with a retry loop of their own leave bad files to the guard

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):  # the wrapped dataset's attributes (opt, paths, ...)
        if name in ('dataset', 'bad_files'):  # not set yet while unpickling in a worker
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def _read(self, index, seed):
        if seed is None:
            return self.dataset[index]
        with seeded(seed):
            return self.dataset[index]

    def __getitem__(self, item):
        index, seed = item if isinstance(item, tuple) else (item, None)
        base = index if seed is None else seed
        for attempt in range(self.bad_files.retries + 1):
            if attempt:
                seed = sample_seed(base, 'replacement', attempt, len(self))
                index = seed % len(self)
            if self.bad_files.is_bad[index]:
                continue  # known bad: skipped without reading, the same draw as reading it again
            try:
                return self._read(index, seed)
            except BadImageFile as error:
                self.bad_files.report(index, error)
        raise BadTrainingData(f'no readable training sample in {self.bad_files.retries + 1} draws in a row '
                              f'(datasets.train.bad_file_retries); bad files: {self.bad_files.listing()}')


def build_dataset_seeded_for_training(original, dataset_opt):
    """BasicSR's ``build_dataset``; a training set comes wrapped in :class:`PerSampleSeededDataset`."""
    dataset = original(dataset_opt)
    if dataset_opt.get('phase') != 'train':
        return dataset
    return PerSampleSeededDataset(dataset, BadFileGuard.from_options(len(dataset), dataset_opt))


class ResumableEnlargedSampler(EnlargedSampler):
    """EnlargedSampler that can continue an epoch in the middle, at the sample a run stopped, and
    that hands a :class:`PerSampleSeededDataset` ``(index, seed)`` pairs once ``seed`` is set."""

    _resume_point = None  # (epoch, samples to skip, callback run before the first sample)
    seed = None

    def resume_within_epoch(self, epoch, skip_samples, on_first_sample=None):
        self._resume_point = (epoch, skip_samples, on_first_sample)

    def __iter__(self):
        skip, on_first_sample = 0, None
        if self._resume_point is not None and self._resume_point[0] == self.epoch:
            _, skip, on_first_sample = self._resume_point
            self._resume_point = None
        if on_first_sample is not None:
            on_first_sample()
        draws = itertools.islice(enumerate(super().__iter__()), skip, None)  # seeds keep their positions
        for position, index in draws:
            yield index if self.seed is None else (index, sample_seed(self.seed, self.rank, self.epoch, position))


def epochs_reaching_total_iter(result, opt, logger):
    """``create_train_val_dataloader``'s result with an epoch count that reaches ``total_iter``.

    BasicSR counts ``ceil(samples / batch)`` iterations per epoch, but its loader drops the last incomplete batch,
    so a run whose data is not a multiple of the batch ended early without a word (the demo's 38 images at batch 4
    trained 1,809 of 2,000 iterations; 10 images at batch 4, 1,336). Epochs are counted with the loader's length.
    """
    train_loader, train_sampler, val_loaders, total_epochs, total_iters = result
    if train_loader is None:
        return result
    per_epoch = len(train_loader)
    if per_epoch == 0:
        train = opt['datasets']['train']
        raise OptionError(f"datasets.train: {len(train_loader.dataset)} samples (dataset_enlarge_ratio "
                          f"{train.get('dataset_enlarge_ratio', 1)}) do not fill one batch of batch_size_per_gpu "
                          f"{train['batch_size_per_gpu']} x {opt.get('world_size', 1)} process(es); the loader drops "
                          'incomplete batches, so nothing would be trained')
    needed = math.ceil(total_iters / per_epoch)
    if needed > total_epochs:
        logger.info(f'{per_epoch} full batches per epoch (the last incomplete one is dropped): {needed} epochs '
                    f'for {total_iters} iterations.')
    return train_loader, train_sampler, val_loaders, max(total_epochs, needed), total_iters


def create_dataloaders_resumable(original, opt, logger):
    """BasicSR's ``create_train_val_dataloader`` with full epochs, seeded draws, and the sampler placed at
    the position of a pending resume (its random states restored right before its first sample)."""
    result = epochs_reaching_total_iter(original(opt, logger), opt, logger)
    train_loader, train_sampler = result[0], result[1]
    if isinstance(train_sampler.dataset, PerSampleSeededDataset):
        train_sampler.seed = opt['manual_seed']
    PROGRESS.train_sampler = train_sampler
    PROGRESS.iters_per_epoch, PROGRESS.batch_size = len(train_loader), train_loader.batch_size
    state, PROGRESS.pending_resume = PROGRESS.pending_resume, None
    if state is None:
        return result
    consumed = state['iter'] - state['epoch'] * PROGRESS.iters_per_epoch
    rng = state.get('rng')
    if state.get('iters_per_epoch') != PROGRESS.iters_per_epoch or not 0 <= consumed <= PROGRESS.iters_per_epoch:
        logger.warning(f"Resume: the data loader has {PROGRESS.iters_per_epoch} iterations per epoch, the saved "
                       f"run had {state.get('iters_per_epoch')}; epoch {state['epoch']} restarts from its first "
                       f'batch and the random states are not restored.')
        return result
    rank_rng = own_rank_entry(rng, opt['rank'], 'the random streams') if rng else None
    train_sampler.resume_within_epoch(
        state['epoch'], consumed * PROGRESS.batch_size,
        on_first_sample=(lambda: set_rng_state(rank_rng)) if rank_rng else None)
    logger.info(f"Resume: skipping the {consumed} batches already trained in epoch {state['epoch']}"
                f"{'' if rank_rng else ' (no random states in this .state file)'}.")
    return result
