"""Every fix this package makes to BasicSR 1.4.2 on today's stack, in one place.

BasicSR 1.4.2 is the newest release; on torch >= 2.6 / torchvision >= 0.17 it cannot be
imported, cannot resume or run DDP without CUDA, restarts from iteration 0 when launched
from another directory, writes checkpoints non-atomically and restarts the epoch's data
order on resume. Each fix below is small, named after what it fixes, and has a test in
``tests/test_compat.py`` that fails without it. The originals are kept in ``ORIGINALS``.

Importing this module applies the import shim; :func:`apply` (called by ``import ext``)
applies the rest. Both are idempotent.
"""
import hashlib
import inspect
import itertools
import json
import os
import random
import re
import sys
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
from basicsr.utils import dist_util, img_process_util, options  # noqa: E402
from basicsr.utils.misc import check_resume  # noqa: E402

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


def _all_ranks_rng_states():
    import torch.distributed as dist
    mine = _rng_state()
    if not (dist.is_available() and dist.is_initialized()):
        return [mine]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)  # collective: every rank calls save_training_state
    return gathered


class TrainProgress:
    """What the running job knows about its data loader and a pending resume."""
    iters_per_epoch = None
    batch_size = None
    pending_resume = None  # the loaded .state until its position is handed to the sampler


PROGRESS = TrainProgress()


def _save_training_state_resumable(self, epoch, current_iter):
    if current_iter == -1:
        return
    rng_states = _all_ranks_rng_states()
    if _rank() != 0:
        return
    state = {
        'epoch': epoch,
        'iter': current_iter,
        'optimizers': [o.state_dict() for o in self.optimizers],
        'schedulers': [s.state_dict() for s in self.schedulers],
        'rng': rng_states,
        'iters_per_epoch': PROGRESS.iters_per_epoch,
    }
    if hasattr(self, 'extra_training_state'):
        state['extra'] = self.extra_training_state()
    path = osp.join(self.opt['path']['training_states'], f'{current_iter}.state')
    _save_with_retry(state, path, 'training state')


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
    ORIGINALS['BaseModel.resume_training'](self, resume_state)
    if 'extra' in resume_state and hasattr(self, 'load_extra_training_state'):
        self.load_extra_training_state(resume_state['extra'])


def sample_seed(seed, rank, epoch, position):
    """The seed of one draw of the training set: a hash of where it stands in the run."""
    digest = hashlib.blake2b(f'{seed}:{rank}:{epoch}:{position}'.encode(), digest_size=8).digest()
    return int.from_bytes(digest, 'little') % 2**32


class PerSampleSeededDataset(torch.utils.data.Dataset):
    """A training set whose samples take their augmentation randomness from a seed per draw.

    The sampler hands out ``(index, seed)`` pairs; ``random``, ``numpy`` and torch's CPU generator
    are seeded for that sample and given back unchanged to the caller. Augmentations are then a
    function of (manual_seed, rank, epoch, position) whatever the number of loader workers, so a run
    resumed in the middle of an epoch draws exactly the samples the killed run would have drawn.
    Plain integer indices read the wrapped dataset as they are.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):  # the wrapped dataset's attributes (opt, paths, ...)
        if name == 'dataset':  # not set yet while unpickling in a worker
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, item):
        if not isinstance(item, tuple):
            return self.dataset[item]
        index, seed = item
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


def _build_dataset_seeded_for_training(dataset_opt):
    dataset = ORIGINALS['basicsr.train.build_dataset'](dataset_opt)
    return PerSampleSeededDataset(dataset) if dataset_opt.get('phase') == 'train' else dataset


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


def _create_dataloaders_resumable(opt, logger):
    result = ORIGINALS['basicsr.train.create_train_val_dataloader'](opt, logger)
    train_loader, train_sampler = result[0], result[1]
    if isinstance(train_sampler.dataset, PerSampleSeededDataset):
        train_sampler.seed = opt['manual_seed']
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
    rank_rng = rng[opt['rank']] if rng and opt['rank'] < len(rng) else None
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
