"""Every fix this package makes to BasicSR 1.4.2 on today's stack, in one place.

BasicSR 1.4.2 is the newest release; on torch >= 2.6 / torchvision >= 0.17 it cannot be
imported, cannot resume or run DDP without CUDA, restarts from iteration 0 when launched
from another directory, writes checkpoints non-atomically, restarts the epoch's data
order on resume and stops short of ``total_iter`` when the data is not a multiple of the
batch. Each fix below is small, named after what it fixes, and has a test in
``tests/test_compat.py`` that fails without it. The originals are kept in ``ORIGINALS``.

Importing this module applies the import shim; :func:`apply` (called by ``import ext``)
applies the rest. Both are idempotent.
"""
import hashlib
import inspect
import itertools
import json
import math
import os
import random
import re
import signal
import sys
import threading
import time
import types
import warnings
from os import path as osp

import numpy as np
import torch


# --- 1. torchvision >= 0.17 removed transforms.functional_tensor ---------------------------
# basicsr/data/degradations.py imports rgb_to_grayscale from it, and basicsr/__init__.py imports
# everything, so `import basicsr` fails. Must run before the first basicsr import.
def install_functional_tensor_shim():
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401  (old torchvision has it)
        return
    except ImportError:
        pass
    from torchvision.transforms import functional
    shim = types.ModuleType(name)
    shim.rgb_to_grayscale = functional.rgb_to_grayscale
    sys.modules[name] = shim


install_functional_tensor_shim()

import basicsr.train  # noqa: E402
import basicsr.test  # noqa: E402
from basicsr.archs import vgg_arch  # noqa: E402
from basicsr.data.data_sampler import EnlargedSampler  # noqa: E402
from basicsr.losses.basic_loss import PerceptualLoss  # noqa: E402
from basicsr.models import base_model, realesrgan_model, realesrnet_model, sr_model  # noqa: E402
from basicsr.data import prefetch_dataloader  # noqa: E402
from basicsr.utils import dist_util, file_client, img_process_util, img_util, options  # noqa: E402
from basicsr.utils.misc import check_resume  # noqa: E402

from ext.data.image_reader import BadImageFile, decode_image, read_image_bytes  # noqa: E402
from ext.utils import checkpoint  # noqa: E402
from ext.utils.atomic_io import atomic_torch_save  # noqa: E402
from ext.utils.pretrained import PretrainedWeightsNotFound, find_vgg_weights, how_to_obtain_network  # noqa: E402

ORIGINALS = {}
_applied = False


def _replace(owner, attr, new):
    key = f'{getattr(owner, "__name__", owner)}.{attr}'
    ORIGINALS.setdefault(key, getattr(owner, attr))
    setattr(owner, attr, new)


def _rank():
    return dist_util.get_dist_info()[0]


# --- 2. torch >= 2.0's launcher passes --local-rank; BasicSR only accepts --local_rank --------
def normalize_local_rank_argv(argv):
    """Rewrite ``--local-rank[=N]`` into BasicSR's ``--local_rank[=N]``."""
    return [re.sub(r'^--local-rank(?==|$)', '--local_rank', arg) for arg in argv]


def _parse_options_accepting_local_rank(root_path, is_train=True):
    sys.argv = normalize_local_rank_argv(sys.argv)
    return ORIGINALS['basicsr.utils.options.parse_options'](root_path, is_train)


# --- 3. DDP without CUDA: BasicSR hard-codes NCCL, set_device and device_ids ----------------
def _init_dist_pytorch_cpu_aware(backend, **kwargs):
    import torch.distributed as dist
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        local_rank = int(os.environ.get('LOCAL_RANK', os.environ['RANK']))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    else:
        backend = 'gloo'  # NCCL needs GPUs
    dist.init_process_group(backend=backend, **kwargs)


def _model_to_device_cpu_ddp(self, net):
    if self.opt['dist'] and self.device.type == 'cpu':
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(
            net.to(self.device), device_ids=None, find_unused_parameters=self.opt.get('find_unused_parameters', False))
    return ORIGINALS['BaseModel.model_to_device'](self, net)


# --- 3b. BasicSR 1.4.2's get_optimizer knows only Adam ------------------------------------
def _get_optimizer_from_torch(self, optim_type, params, lr, **kwargs):
    optimizer_class = getattr(torch.optim, optim_type, None)
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, torch.optim.Optimizer)):
        raise NotImplementedError(f"optimizer '{optim_type}' is not a torch.optim optimizer")
    if 'betas' in kwargs:  # YAML's `betas: [0, 0.9]` gives ints, which torch rejects next to floats
        kwargs['betas'] = tuple(float(beta) for beta in kwargs['betas'])
    return optimizer_class(params, lr, **kwargs)


# --- 4. filter2D on channels_last tensors (DiffJPEG output; CPU reflect-pad keeps the layout) --
def _filter2d_any_memory_format(img, kernel):
    return ORIGINALS['basicsr.utils.img_process_util.filter2D'](img.contiguous(), kernel)


# --- 5. VGG weights offline: BasicSR downloads them when a cwd-relative file is missing -------
def _vgg_init_offline(self, layer_name_list, vgg_type='vgg19', *args, **kwargs):
    vgg_arch.VGG_PRETRAIN_PATH = find_vgg_weights(vgg_type)  # raises with instructions when absent
    ORIGINALS['VGGFeatureExtractor.__init__'](self, layer_name_list, vgg_type, *args, **kwargs)


# --- 5b. PerceptualLoss(criterion='l2') calls the non-existent torch.nn.L2loss --------------
def _perceptual_loss_init_with_l2(self, *args, **kwargs):
    signature = inspect.signature(ORIGINALS['PerceptualLoss.__init__']).bind(self, *args, **kwargs)
    signature.apply_defaults()
    if signature.arguments['criterion'] != 'l2':
        return ORIGINALS['PerceptualLoss.__init__'](*signature.args, **signature.kwargs)
    signature.arguments['criterion'] = 'l1'
    ORIGINALS['PerceptualLoss.__init__'](*signature.args, **signature.kwargs)
    self.criterion_type, self.criterion = 'l2', torch.nn.MSELoss()


# --- 6. checkpoints written atomically (a kill mid-write used to leave a torn newest file) ----
def _save_with_retry(obj, path, what, writer=None):
    for _ in range(3):
        try:
            (writer or atomic_torch_save)(obj, path)
            return
        except OSError as error:  # e.g. a full disk or a flaky network file system
            last_error = error
    from basicsr.utils import get_root_logger
    get_root_logger().error(f'Could not save {what} to {path}: {last_error}. The previous checkpoint is intact.')


@dist_util.master_only
def _save_network_atomically(self, net, net_label, current_iter, param_key='params'):
    label = 'latest' if current_iter == -1 else current_iter
    nets = net if isinstance(net, list) else [net]
    keys = param_key if isinstance(param_key, list) else [param_key]
    if len(nets) != len(keys):
        raise ValueError(f'save_network: {len(nets)} networks but {len(keys)} param keys')
    save_dict = {key: self.get_bare_model(each_net).state_dict() for each_net, key in zip(nets, keys)}
    file_format = (self.opt.get('logger') or {}).get('checkpoint_format', 'pth')
    path = osp.join(self.opt['path']['models'], checkpoint.network_file_name(net_label, label, file_format))
    options = _network_options_of(self.opt, net_label)
    _save_with_retry(save_dict, path, f'network {net_label}',
                     writer=lambda obj, target: checkpoint.save_network_file(obj, target, network_options=options))


def _network_options_of(opt, net_label):
    """What a saved network file records about its network (net_g -> opt['network_g'] and the scale)."""
    section = opt.get(f'network_{net_label[len("net_"):]}') if net_label.startswith('net_') else None
    if not isinstance(section, dict):
        return None
    options = {'network': dict(section), 'scale': opt.get('scale'), 'option_key': f'network_{net_label[4:]}'}
    try:
        json.dumps(options)
    except (TypeError, ValueError):  # an option value JSON cannot hold: save the weights without the record
        return None
    return options


# --- 6b. networks load from .pth or .safetensors, never running pickled code; a missing file says
#         where it comes from (BasicSR: a bare FileNotFoundError from torch.load) ----------------
def _load_network_any_format(self, net, load_path, strict=True, param_key='params'):
    from basicsr.utils import get_root_logger
    net = self.get_bare_model(net)
    if not osp.isfile(load_path):
        raise PretrainedWeightsNotFound(
            f'pretrained network {load_path!r} not found. {how_to_obtain_network(load_path)}.')
    state_dict = checkpoint.load_network_file(load_path, param_key)
    get_root_logger().info(f'Loading {net.__class__.__name__} model from {load_path}, with param key: [{param_key}].')
    self._print_different_keys_loading(net, state_dict, strict)
    net.load_state_dict(state_dict, strict=strict)


# --- 7. exact resume: BasicSR restarts the epoch's data order and drops the random states -----
# The .state now also holds every rank's RNG states, the loader length and a model's own extra
# state (e.g. a training-pair queue) if it defines extra_training_state()/load_extra_training_state().
# On resume the sampler skips the batches already consumed in that epoch and restores the RNG
# states right before the first batch is drawn, which is where the killed run saved them. Training
# samples draw their augmentations from a seed per draw, so runs with loader workers resume exactly too.
def _rng_state():
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state = {'python': random.getstate(),
             'numpy': (kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, cached),
             'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    random.setstate(state['python'])
    kind, key, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _distributed():
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized()


def _gather_on_rank0(obj):
    """``[obj of rank 0, obj of rank 1, ...]`` on rank 0 (``None`` elsewhere); ``[obj]`` without DDP.
    A collective: every rank calls it."""
    import torch.distributed as dist
    if not _distributed():
        return [obj]
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


class TrainProgress:
    """What the running job knows about its data loader, its model and a pending resume."""
    iters_per_epoch = None
    batch_size = None
    pending_resume = None  # the loaded .state until its position is handed to the sampler
    train_sampler = None
    model = None
    current_iter = None  # the iteration being trained (set as it starts)


PROGRESS = TrainProgress()


def _save_training_state_resumable(self, epoch, current_iter):
    """BasicSR's .state plus, for every rank, its random states and its model's extra state (e.g.
    the training-pair queue, different on each rank), gathered on rank 0 which writes the file."""
    if current_iter == -1:  # the end of training: BasicSR saves the *_latest networks only
        epoch, current_iter = _final_position(self)
        if current_iter is not None:  # a checkpoint of the last iteration, as a periodic one (resume needs both)
            self.save(epoch, current_iter)
        return
    mine = {'rng': _rng_state()}
    if hasattr(self, 'extra_training_state'):
        mine['extra'] = self.extra_training_state()
    per_rank = _gather_on_rank0(mine)  # collective: every rank calls save_training_state
    if _rank() != 0:
        return
    state = {
        'epoch': epoch,
        'iter': current_iter,
        'optimizers': [o.state_dict() for o in self.optimizers],
        'schedulers': [s.state_dict() for s in self.schedulers],
        'rng': [each['rng'] for each in per_rank],
        'iters_per_epoch': PROGRESS.iters_per_epoch,
    }
    if 'extra' in mine:
        state['extra_by_rank'] = [each['extra'] for each in per_rank]
    path = osp.join(self.opt['path']['training_states'], f'{current_iter}.state')
    _save_with_retry(state, path, 'training state')


def _final_position(model):
    """(epoch, iteration) for a ``.state`` at the end of training, or (None, None) when one exists already.

    BasicSR writes no state at the end unless ``total_iter`` is a multiple of ``save_checkpoint_freq``, so
    ``--auto_resume`` on a finished run went back to the last periodic state and trained its tail again. The
    rule needs no file check, so every rank of a distributed run takes the same branch of the collective.
    """
    current_iter, per_epoch = PROGRESS.current_iter, PROGRESS.iters_per_epoch
    if PROGRESS.model is not model or current_iter is None or not per_epoch:
        return None, None  # nothing trained in this process (e.g. a run resumed at its end)
    if current_iter % int(model.opt['logger']['save_checkpoint_freq']) == 0:
        return None, None  # the periodic save of the last iteration wrote it
    return (current_iter - 1) // per_epoch, current_iter  # the epoch whose batch it was


def own_rank_entry(entries, rank, what):
    """``entries[rank]`` of a per-rank list saved by a run; a warning (resume not exact) and rank 0's
    entry when the saved run had fewer processes than this one."""
    world_size = dist_util.get_dist_info()[1]
    if len(entries) != world_size and rank == 0:
        from basicsr.utils import get_root_logger
        get_root_logger().warning(f'Resume: the saved run had {len(entries)} process(es), this one has {world_size}; '
                                  f'{what} of ranks without a saved one start from rank 0\'s: the run does not '
                                  'continue exactly')
    return entries[rank] if rank < len(entries) else entries[0]


def _validation_keeping_random_states(self, *args, **kwargs):
    """Validation must not draw from the training streams (a val DataLoader iterator takes a seed from
    torch's generator): a run resumed from a checkpoint taken at a validation iteration would diverge."""
    saved = _rng_state()
    try:
        return ORIGINALS['BaseModel.validation'](self, *args, **kwargs)
    finally:
        _set_rng_state(saved)


def _test_on_the_bare_network(self):
    """SRModel.test on the bare generator: under DDP the wrapper's forward broadcasts buffers (BatchNorm
    statistics, ...), a collective that rank 0 would run alone during validation and hang on."""
    wrapped = self.net_g
    self.net_g = self.get_bare_model(wrapped)
    try:
        return ORIGINALS['SRModel.test'](self)
    finally:
        self.net_g = wrapped


def _resume_training_with_extra(self, resume_state):
    """Also restores this rank's own extra state (``extra_by_rank``; ``extra``: rank 0's only, as
    written by earlier versions, which every rank then takes)."""
    ORIGINALS['BaseModel.resume_training'](self, resume_state)
    if not hasattr(self, 'load_extra_training_state'):
        return
    if 'extra_by_rank' in resume_state:
        self.load_extra_training_state(own_rank_entry(resume_state['extra_by_rank'], self.opt['rank'], 'the model '
                                                      'state (training-pair queue, guards)'))
    elif 'extra' in resume_state:
        self.load_extra_training_state(resume_state['extra'])


def sample_seed(seed, rank, epoch, position):
    """The seed of one draw of the training set: a hash of where it stands in the run."""
    digest = hashlib.blake2b(f'{seed}:{rank}:{epoch}:{position}'.encode(), digest_size=8).digest()
    return int.from_bytes(digest, 'little') % 2**32


# --- 7b. bad training files: BasicSR's datasets die on the first one (AttributeError on None, OpenCV's
#         !buf.empty()), without its name. Files are read through ext.data.image_reader (section 10);
#         the training set logs each bad file once and draws another sample, deterministically.
class BadTrainingData(RuntimeError):
    """Too many training files cannot be read; training stops (exit status 2, as an option error)."""

    def __str__(self):
        text = str(self.args[0]) if self.args else ''
        marker = f'{type(self).__name__}: '  # re-raised from a loader worker: keep the message, not the traceback
        return text.rsplit(marker, 1)[-1].strip() if 'Original Traceback' in text else text


class BadFileGuard:
    """The bad files of one training set: each logged once, the run stopped when there are too many.

    ``is_bad`` is one flag per sample in shared memory, so loader workers (forked or spawned) see
    each other's finds and a file is logged once per run whatever the number of workers.

    Option keys of ``datasets.train``:
        bad_file_max_share (float, default 0.1): stop when more than this share of the samples is bad.
        bad_file_retries (int, default 10): other samples tried for one draw before stopping.
    """

    def __init__(self, size, max_share=0.1, retries=10):
        self.max_share, self.retries = float(max_share), int(retries)
        if not 0 <= self.max_share <= 1 or self.retries < 0:
            from ext.options import OptionError
            raise OptionError(f'datasets.train: bad_file_max_share must be in [0, 1] (got {max_share}) and '
                              f'bad_file_retries >= 0 (got {retries})')
        self.size = size
        self.is_bad = torch.zeros(max(size, 1), dtype=torch.uint8).share_memory_()
        self.seen = {}  # index -> message, found in this process

    def report(self, index, error):
        """Log ``error`` (a :class:`BadImageFile`) the first time sample ``index`` fails; stop when too many."""
        self.seen[index] = str(error)
        if self.is_bad[index]:
            return
        self.is_bad[index] = 1
        from basicsr.utils import get_root_logger
        get_root_logger().warning(f'Bad training file {error.path}: {error.reason}; another sample is drawn instead '
                                  '(reported once)')
        bad = int(self.is_bad.sum())
        if bad > self.max_share * self.size:
            raise BadTrainingData(f'{bad} of the {self.size} training samples cannot be read, more than '
                                  f'datasets.train.bad_file_max_share ({self.max_share:g}): {self.listing()}')

    def listing(self, limit=20):
        messages = sorted(set(self.seen.values()))
        text = '; '.join(messages[:limit]) + (f' (+{len(messages) - limit} more)' if len(messages) > limit else '')
        others = int(self.is_bad.sum()) - len(self.seen)
        return text + (f' (+{others} found by other loader workers, named in the log)' if others > 0 else '')


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
    bad, so resume stays exact. :class:`BadFileGuard` logs and limits the bad files.
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
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        random.seed(seed)
        np.random.seed(seed)
        torch.random.default_generator.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])

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


def _build_dataset_seeded_for_training(dataset_opt):
    dataset = ORIGINALS['basicsr.train.build_dataset'](dataset_opt)
    if dataset_opt.get('phase') != 'train':
        return dataset
    guard = BadFileGuard(len(dataset), dataset_opt.get('bad_file_max_share', 0.1),
                         dataset_opt.get('bad_file_retries', 10))
    return PerSampleSeededDataset(dataset, guard)


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
        from ext.options import OptionError
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


def _create_dataloaders_resumable(opt, logger):
    result = epochs_reaching_total_iter(ORIGINALS['basicsr.train.create_train_val_dataloader'](opt, logger), opt,
                                        logger)
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
        on_first_sample=(lambda: _set_rng_state(rank_rng)) if rank_rng else None)
    logger.info(f"Resume: skipping the {consumed} batches already trained in epoch {state['epoch']}"
                f"{'' if rank_rng else ' (no random states in this .state file)'}.")
    return result


# --- 8. resume: states found from the experiment path, loaded on CPU, a torn newest state skipped
_STATE_FILE = re.compile(r'^(\d+)\.state$')


def load_state_file(path):
    """Load a ``.state`` file on any machine, allowing only tensors and plain containers."""
    return torch.load(path, map_location='cpu', weights_only=True)


def _network_labels(opt):
    ignored = opt['path'].get('ignore_resume_networks') or []
    return [key[len('network_'):] for key in opt if key.startswith('network_') and key not in ignored]


def _incomplete_networks(opt, iteration):
    """Network files of ``iteration`` that are missing or torn (any checkpoint format)."""
    missing = []
    for label in _network_labels(opt):
        path = checkpoint.find_network_file(opt['path']['models'], f'net_{label}', iteration)
        if path is None or not checkpoint.checkpoint_looks_complete(path):
            missing.append(path or osp.join(opt['path']['models'], f'net_{label}_{iteration}.*'))
    return missing


def saved_state_iterations(opt):
    """Iterations of the ``<iter>.state`` files in the run's ``training_states``, newest first (none read)."""
    state_dir = opt['path']['training_states']
    if not osp.isdir(state_dir):
        return []
    return sorted((int(m.group(1)) for m in map(_STATE_FILE.match, os.listdir(state_dir)) if m), reverse=True)


def find_resume_state(opt):
    """Newest readable ``.state`` under ``opt['path']['training_states']`` whose networks exist."""
    state_dir = opt['path']['training_states']
    for iteration in saved_state_iterations(opt):
        path = osp.join(state_dir, f'{iteration}.state')
        try:
            state = load_state_file(path)
        except Exception as error:  # torn or foreign file: fall back to the previous one
            warnings.warn(f'auto_resume: skipping unreadable training state {path} ({type(error).__name__}: {error})')
            continue
        missing = _incomplete_networks(opt, iteration)
        if missing:
            warnings.warn(f'auto_resume: skipping {path}: its network files are missing or incomplete: {missing}')
            continue
        return path, state
    return None, None


def load_resume_state(opt):
    if opt['auto_resume']:
        path, state = find_resume_state(opt)
        if path is not None:
            opt['path']['resume_state'] = path
    elif opt['path'].get('resume_state'):
        path = opt['path']['resume_state']
        if not osp.isfile(path):
            raise FileNotFoundError(f'path.resume_state: {path} does not exist')
        state = load_state_file(path)
    else:
        return None
    if path is None:
        return None
    check_resume(opt, state['iter'])
    for label in _network_labels(opt):  # check_resume assumes .pth; the run may save .safetensors
        found = checkpoint.find_network_file(opt['path']['models'], f'net_{label}', state['iter'])
        if found is not None:
            opt['path'][f'pretrain_network_{label}'] = found
    PROGRESS.pending_resume = state
    return state


# --- 9. stopping cleanly: SIGTERM / SIGINT (spot instances, Ctrl-C, torchrun) and guards ----------
# BasicSR dies on a signal and loses everything since the last periodic checkpoint; a guard that
# raises on one DDP rank leaves the others waiting in a collective. Here a signal or a guard only asks
# for a stop; at the end of each iteration (when the loop asks its prefetcher for the next batch) the
# ranks agree (all-reduce) and every rank stops after the same iteration: for a signal after saving
# the networks and the .state of that iteration (exit status 0, --auto_resume continues exactly), for
# a guard or bad data without saving (exit status 3 or 2). A second signal exits at once; checkpoints
# are written atomically, so the previous one stays whole.
REPEATED_SIGNAL_GRACE_S = 1.0  # torchrun forwards the SIGINT that a terminal already sent to every process
EXIT_GUARD, EXIT_BAD_DATA = 3, 2


class TrainingStopped(Exception):
    """Every rank agreed to stop after ``iteration``; ``exit_code`` 0 when a checkpoint was saved for it."""

    def __init__(self, reason, exit_code, iteration=None, saved=()):
        super().__init__(reason)
        self.reason, self.exit_code, self.iteration, self.saved = reason, exit_code, iteration, list(saved)


class StopControl:
    """This process's stop request and signal handlers; :data:`STOP` is the one instance."""

    def __init__(self):
        self.request = None  # (reason, exit_code, save_checkpoint)
        self.first_signal_time = None
        self.checked_iter = None
        self._handlers = {}
        self._owner_pid = None

    def ask(self, reason, exit_code=0, save_checkpoint=True):
        """Ask every rank to stop after the current iteration (saving a checkpoint only if every asker wants it)."""
        if self.request is None:
            self.request = (reason, exit_code, save_checkpoint)
        else:
            old_reason, old_code, old_save = self.request
            self.request = (f'{old_reason}; {reason}', max(old_code, exit_code), old_save and save_checkpoint)

    def reset(self):
        self.request, self.first_signal_time, self.checked_iter = None, None, None

    # --- signals
    def install(self, signals=(signal.SIGTERM, signal.SIGINT)):
        if threading.current_thread() is not threading.main_thread():
            return
        self._owner_pid = os.getpid()
        for signum in signals:
            self._handlers[signum] = signal.signal(signum, self._on_signal)

    def uninstall(self):
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers = {}

    def _on_signal(self, signum, frame):
        if os.getpid() != self._owner_pid:
            return  # a forked loader worker: the training process stops it
        name = signal.Signals(signum).name
        now = time.monotonic()
        if self.first_signal_time is None:
            self.first_signal_time = now
            self.ask(f'received {name}', 0, True)
            os.write(2, f'\n{name}: finishing the current iteration, then saving a checkpoint and exiting '
                        f'(a second signal exits at once)\n'.encode())
        elif now - self.first_signal_time > REPEATED_SIGNAL_GRACE_S:
            os.write(2, f'\n{name} again: exiting now; the checkpoints already written are complete\n'.encode())
            os._exit(128 + signum)

    # --- agreement
    def agree(self, save_kinds=(True, False)):
        """``(reason, exit_code, save_checkpoint)`` if any rank asked to stop (a collective under DDP), else None.

        Only requests whose ``save_checkpoint`` is in ``save_kinds`` count; the others stay pending."""
        import torch.distributed as dist
        local = self.request if self.request is not None and self.request[2] in save_kinds else None
        level = 0 if local is None else 1 if local[2] else 2  # 2: a rank refuses the checkpoint
        if _distributed():
            device = torch.device('cuda', torch.cuda.current_device()) if dist.get_backend() == 'nccl' else 'cpu'
            flag = torch.tensor([level], dtype=torch.int32, device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            level = int(flag.item())
            if level == 0:
                return None
            requests = [None] * dist.get_world_size()
            dist.all_gather_object(requests, local)
        elif level == 0:
            return None
        else:
            requests = [local]
        if local is not None:
            self.request = None
        reasons = [(f'rank {rank}: ' if len(requests) > 1 else '') + each[0]
                   for rank, each in enumerate(requests) if each is not None]
        return '; '.join(reasons), max(each[1] for each in requests if each is not None), level == 1


STOP = StopControl()


def request_stop(reason, exit_code=EXIT_GUARD, save_checkpoint=False):
    """Ask the training loop to stop every rank after the current iteration (a guard's ``action: stop``).

    ``save_checkpoint``: write the networks and the .state of that iteration first (signals do; a guard
    that saw the model diverge does not, so ``--auto_resume`` takes the last periodic checkpoint)."""
    STOP.ask(reason, exit_code, save_checkpoint)


def _saved_files(opt, iteration):
    files = [checkpoint.find_network_file(opt['path']['models'], f'net_{label}', iteration)
             for label in _network_labels(opt)]
    state = osp.join(opt['path']['training_states'], f'{iteration}.state')
    return [path for path in files if path] + ([state] if osp.isfile(state) else [])


def _stop_after_iteration():
    """At the end of an iteration: stop every rank if any asked to (saving first for a signal)."""
    iteration = PROGRESS.current_iter
    if iteration is None or iteration == STOP.checked_iter:
        return  # the first batch of an epoch: the previous iteration was checked already
    STOP.checked_iter = iteration
    decision = STOP.agree()
    if decision is None:
        return
    from basicsr.utils import get_root_logger
    reason, exit_code, save = decision
    logger, model = get_root_logger(), PROGRESS.model
    if not save:
        logger.error(f'Stopping after iteration {iteration}: {reason}')
        raise TrainingStopped(reason, exit_code, iteration)
    logger.warning(f'Stopping after iteration {iteration} ({reason}): saving the networks and the training state.')
    if iteration % model.opt['logger']['save_checkpoint_freq'] != 0:  # else the loop saved it just now
        model.save(PROGRESS.train_sampler.epoch, iteration)
    saved = _saved_files(model.opt, iteration) if _rank() == 0 else []
    logger.info(f'Saved iteration {iteration}: {", ".join(saved)}. Continue with --auto_resume.')
    raise TrainingStopped(reason, 0, iteration, saved)


def _next_batch_stopping_together(self):
    """The prefetcher's next(): first the end-of-iteration stop agreement, then the batch; a data error
    on any rank stops every rank."""
    _stop_after_iteration()
    try:
        original = next(ORIGINALS[f'{cls.__name__}.next'] for cls in type(self).__mro__
                        if f'{cls.__name__}.next' in ORIGINALS)
        batch = original(self)
    except BadTrainingData as error:
        STOP.ask(f'{type(error).__name__}: {error}', EXIT_BAD_DATA, save_checkpoint=False)
        batch = None
    decision = STOP.agree(save_kinds=(False, ))  # the batch is drawn: only stops without a checkpoint now
    if decision is not None:
        from basicsr.utils import get_root_logger
        get_root_logger().error(f'Stopping: {decision[0]}')
        raise TrainingStopped(decision[0], decision[1], PROGRESS.current_iter)
    return batch


def _update_learning_rate_noting_the_iteration(self, current_iter, *args, **kwargs):
    PROGRESS.model, PROGRESS.current_iter = self, current_iter  # the loop calls it first in every iteration
    return ORIGINALS['BaseModel.update_learning_rate'](self, current_iter, *args, **kwargs)


def _train_pipeline_stopping_cleanly(root_path):
    """BasicSR's train_pipeline with the signal handlers installed; a stop ends the process with its status."""
    STOP.reset()
    STOP.install()
    try:
        ORIGINALS['basicsr.train.train_pipeline'](root_path)
        decision = STOP.agree()  # asked for during the final validation (every rank gets here)
        stopped = TrainingStopped(decision[0], decision[1] if not decision[2] else 0) if decision else None
    except TrainingStopped as error:
        stopped = error
    finally:
        STOP.uninstall()
    rank = _rank()
    if _distributed():  # BasicSR leaves the group up at the normal end; gloo's exit-time teardown can abort
        import torch.distributed as dist
        try:  # every rank past its last collective before any closes its connections
            dist.barrier()
        except RuntimeError:  # a rank already gone: tear down what is left
            pass
        dist.destroy_process_group()
    if stopped is None:
        return
    if rank == 0 or stopped.exit_code:
        if stopped.exit_code == 0:
            where = f' after iteration {stopped.iteration}' if stopped.iteration is not None else ''
            print(f'Training stopped{where} ({stopped.reason}); saved: {", ".join(stopped.saved) or "-"}. '
                  'Continue with --auto_resume.', file=sys.stderr)
        else:
            print(f'error: training stopped: {stopped.reason}', file=sys.stderr)
    raise SystemExit(stopped.exit_code)


# --- 10. image files read through one guarded reader (BasicSR: no file name in any decoding error) --
def _file_client_get_naming_the_file(self, filepath, client_key='default'):
    return read_image_bytes(self, filepath, client_key)


def _imfrombytes_naming_the_file(content, flag='color', float32=False):
    return decode_image(content, getattr(content, 'path', None), flag, float32)


def _replace_imported_name(name, original, new):
    """Replace ``name`` in every basicsr module that imported it by name (``from ... import name``)."""
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith('basicsr') and getattr(module, name, None) is original:
            setattr(module, name, new)


def apply():
    """Apply every fix (idempotent)."""
    global _applied
    if _applied:
        return
    _applied = True
    install_functional_tensor_shim()
    _replace(options, 'parse_options', _parse_options_accepting_local_rank)
    basicsr.train.parse_options = basicsr.test.parse_options = _parse_options_accepting_local_rank
    _replace(dist_util, '_init_dist_pytorch', _init_dist_pytorch_cpu_aware)
    _replace(base_model.BaseModel, 'model_to_device', _model_to_device_cpu_ddp)
    _replace(base_model.BaseModel, 'get_optimizer', _get_optimizer_from_torch)
    _replace(img_process_util, 'filter2D', _filter2d_any_memory_format)
    realesrgan_model.filter2D = realesrnet_model.filter2D = _filter2d_any_memory_format  # imported by name
    _replace(vgg_arch.VGGFeatureExtractor, '__init__', _vgg_init_offline)
    _replace(PerceptualLoss, '__init__', _perceptual_loss_init_with_l2)
    _replace(base_model.BaseModel, 'save_network', _save_network_atomically)
    _replace(base_model.BaseModel, 'load_network', _load_network_any_format)
    _replace(base_model.BaseModel, 'save_training_state', _save_training_state_resumable)
    _replace(base_model.BaseModel, 'resume_training', _resume_training_with_extra)
    _replace(base_model.BaseModel, 'validation', _validation_keeping_random_states)
    _replace(sr_model.SRModel, 'test', _test_on_the_bare_network)
    _replace(basicsr.train, 'EnlargedSampler', ResumableEnlargedSampler)
    _replace(basicsr.train, 'build_dataset', _build_dataset_seeded_for_training)
    _replace(basicsr.train, 'create_train_val_dataloader', _create_dataloaders_resumable)
    _replace(basicsr.train, 'load_resume_state', load_resume_state)
    _replace(base_model.BaseModel, 'update_learning_rate', _update_learning_rate_noting_the_iteration)
    _replace(prefetch_dataloader.CPUPrefetcher, 'next', _next_batch_stopping_together)
    _replace(prefetch_dataloader.CUDAPrefetcher, 'next', _next_batch_stopping_together)
    _replace(basicsr.train, 'train_pipeline', _train_pipeline_stopping_cleanly)
    _replace(file_client.FileClient, 'get', _file_client_get_naming_the_file)
    _replace(img_util, 'imfrombytes', _imfrombytes_naming_the_file)
    _replace_imported_name('imfrombytes', ORIGINALS['basicsr.utils.img_util.imfrombytes'],
                           _imfrombytes_naming_the_file)
