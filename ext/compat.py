"""The fixes this package makes to BasicSR 1.4.2 so that it runs on today's stack.

BasicSR 1.4.2 is the newest release; on torch >= 2.6 / torchvision >= 0.17 it cannot be imported,
cannot run DDP without CUDA, knows only Adam, downloads VGG weights at run time, runs code found in
option files, writes checkpoints non-atomically and loads them with pickle. Each fix below is small, named after what it fixes, and
has a test in ``tests/e2e/test_compat.py`` that fails without it.

This module only defines the fixes (the import shim, which must precede the first ``import basicsr``, is
:mod:`ext.import_hooks`). :mod:`ext.engine.patching` lists where each one goes, beside the package's own
training engine, and applies them all when :func:`ext.activate` runs. A fix that needs the function it
replaces takes it as its first argument, ``original``.
"""
import argparse
import inspect
import json
import os
import re
import sys
from os import path as osp

import torch
import yaml


# --- torchvision >= 0.17 removed transforms.functional_tensor --------------------------------------
# basicsr/data/degradations.py imports rgb_to_grayscale from it, and basicsr/__init__.py imports everything,
# so `import basicsr` fails. That fix must be in place before anything imports basicsr, without importing torch:
# ext.import_hooks.FunctionalTensorShim, which `import ext` installs.

from basicsr.archs import vgg_arch  # noqa: E402
from basicsr.utils import dist_util, get_root_logger  # noqa: E402

from ext.utils import checkpoint  # noqa: E402
from ext.utils.option_file import OptionFileLoader, parse_forced_options, yaml_error  # noqa: E402
from ext.utils.atomic_io import atomic_torch_save  # noqa: E402
from ext.utils.pretrained import PretrainedWeightsNotFound, find_vgg_weights, how_to_obtain_network  # noqa: E402


# --- torch >= 2.0's launcher passes --local-rank; BasicSR only accepts --local_rank -----------------
def normalize_local_rank_argv(argv):
    """Rewrite ``--local-rank[=N]`` into BasicSR's ``--local_rank[=N]``."""
    return [re.sub(r'^--local-rank(?==|$)', '--local_rank', arg) for arg in argv]


# --- option files run code: BasicSR reads them with PyYAML's full Loader (a !!python/... tag runs before
#     anything is checked) and applies --force_yml with exec (keys) and eval (lists) ----------------------
def ordered_yaml_safe(original):
    """BasicSR's ``ordered_yaml()`` with the safe :class:`~ext.utils.option_file.OptionFileLoader` (ordered
    mappings and ``!!float`` kept; no Python objects)."""
    _, dumper = original()
    return OptionFileLoader, dumper


def take_force_yml(argv):
    """``(argv without --force_yml, its entries)``."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument('--force_yml', nargs='+', action='extend', default=[])
    found, rest = parser.parse_known_args(argv[1:])
    return argv[:1] + rest, found.force_yml


def parse_options_safely(original, root_path, is_train=True):
    """BasicSR's ``parse_options`` on the safe loader, with ``--local-rank`` accepted and ``--force_yml``
    applied as data by the loader (BasicSR applies it with ``exec``); a Python tag is an OptionError naming the
    file, line and tag, raised before anything runs."""
    argv, entries = take_force_yml(normalize_local_rank_argv(sys.argv))
    forced = parse_forced_options(entries)
    sys.argv = argv
    try:
        with OptionFileLoader.overrides(forced):
            opt, args = original(root_path, is_train)
    except yaml.YAMLError as error:
        mark = getattr(error, 'problem_mark', None) or getattr(error, 'context_mark', None)
        raise yaml_error(getattr(mark, 'name', '<option file>'), error) from None
    args.force_yml = entries or None
    return opt, args


# --- DDP without CUDA: BasicSR hard-codes NCCL, set_device and device_ids -------------------------
def init_dist_pytorch_cpu_aware(backend, **kwargs):
    import torch.distributed as dist
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        local_rank = int(os.environ.get('LOCAL_RANK', os.environ['RANK']))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    else:
        backend = 'gloo'  # NCCL needs GPUs
    dist.init_process_group(backend=backend, **kwargs)


def init_dist_slurm_cpu_aware(backend, port=None):
    """BasicSR's SLURM start-up without its CUDA assumptions (``proc_id % torch.cuda.device_count()``: a
    ZeroDivisionError without GPUs, and NCCL): gloo on CPUs, the local rank from ``SLURM_LOCALID``, the
    first host of the allocation as the master (``MASTER_ADDR`` if already set)."""
    import subprocess
    import torch.distributed as dist
    proc_id, ntasks = int(os.environ['SLURM_PROCID']), int(os.environ['SLURM_NTASKS'])
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    local_rank = int(os.environ.get('SLURM_LOCALID', proc_id % max(gpus, 1)))
    if gpus:
        torch.cuda.set_device(local_rank % gpus)
    else:
        backend = 'gloo'
    if 'MASTER_ADDR' not in os.environ:
        hosts = subprocess.run(['scontrol', 'show', 'hostnames', os.environ['SLURM_NODELIST']], capture_output=True,
                               text=True, check=True).stdout.split()
        os.environ['MASTER_ADDR'] = hosts[0]
    os.environ['MASTER_PORT'] = str(port) if port is not None else os.environ.get('MASTER_PORT', '29500')
    os.environ.update(WORLD_SIZE=str(ntasks), RANK=str(proc_id), LOCAL_RANK=str(local_rank))
    dist.init_process_group(backend=backend)


def model_to_device_cpu_ddp(original, self, net):
    if self.opt['dist'] and self.device.type == 'cpu':
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(
            net.to(self.device), device_ids=None, find_unused_parameters=self.opt.get('find_unused_parameters', False))
    return original(self, net)


def test_on_the_bare_network(original, self):
    """SRModel.test on the bare generator: under DDP the wrapper's forward broadcasts buffers (BatchNorm
    statistics, ...), a collective that rank 0 would run alone during validation and hang on."""
    wrapped = self.net_g
    self.net_g = self.get_bare_model(wrapped)
    try:
        return original(self)
    finally:
        self.net_g = wrapped


# --- BasicSR 1.4.2's get_optimizer knows only Adam ------------------------------------------------
def get_optimizer_from_torch(self, optim_type, params, lr, **kwargs):
    optimizer_class = getattr(torch.optim, optim_type, None)
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, torch.optim.Optimizer)):
        raise NotImplementedError(f"optimizer '{optim_type}' is not a torch.optim optimizer")
    if 'betas' in kwargs:  # YAML's `betas: [0, 0.9]` gives ints, which torch rejects next to floats
        kwargs['betas'] = tuple(float(beta) for beta in kwargs['betas'])
    return optimizer_class(params, lr, **kwargs)


# --- filter2D on channels_last tensors (DiffJPEG output; CPU reflect-pad keeps the layout) ---------
def filter2d_any_memory_format(original, img, kernel):
    return original(img.contiguous(), kernel)


# --- VGG weights offline: BasicSR downloads them when a cwd-relative file is missing ---------------
def vgg_init_offline(original, self, layer_name_list, vgg_type='vgg19', *args, **kwargs):
    vgg_arch.VGG_PRETRAIN_PATH = find_vgg_weights(vgg_type)  # raises with instructions when absent
    original(self, layer_name_list, vgg_type, *args, **kwargs)


# --- PerceptualLoss(criterion='l2') calls the non-existent torch.nn.L2loss -------------------------
def perceptual_loss_init_with_l2(original, self, *args, **kwargs):
    signature = inspect.signature(original).bind(self, *args, **kwargs)
    signature.apply_defaults()
    if signature.arguments['criterion'] != 'l2':
        return original(*signature.args, **signature.kwargs)
    signature.arguments['criterion'] = 'l1'
    original(*signature.args, **signature.kwargs)
    self.criterion_type, self.criterion = 'l2', torch.nn.MSELoss()


# --- checkpoints written atomically (a kill mid-write used to leave a torn newest file) -----------
def save_with_retry(obj, path, what, writer=None):
    """Write ``obj`` to ``path`` atomically, three tries; a failure is logged, the previous file stays whole."""
    for _ in range(3):
        try:
            (writer or atomic_torch_save)(obj, path)
            return
        except OSError as error:  # e.g. a full disk or a flaky network file system
            last_error = error
    get_root_logger().error(f'Could not save {what} to {path}: {last_error}. The previous checkpoint is intact.')


@dist_util.master_only
def save_network_atomically(self, net, net_label, current_iter, param_key='params'):
    label = 'latest' if current_iter == -1 else current_iter
    nets = net if isinstance(net, list) else [net]
    keys = param_key if isinstance(param_key, list) else [param_key]
    if len(nets) != len(keys):
        raise ValueError(f'save_network: {len(nets)} networks but {len(keys)} param keys')
    save_dict = {key: self.get_bare_model(each_net).state_dict() for each_net, key in zip(nets, keys)}
    file_format = (self.opt.get('logger') or {}).get('checkpoint_format', 'pth')
    path = osp.join(self.opt['path']['models'], checkpoint.network_file_name(net_label, label, file_format))
    options = network_options_of(self.opt, net_label)
    save_with_retry(save_dict, path, f'network {net_label}',
                    writer=lambda obj, target: checkpoint.save_network_file(obj, target, network_options=options))


def network_options_of(opt, net_label):
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


# --- networks load from .pth or .safetensors, never running pickled code; a missing file says where
#     it comes from (BasicSR: a bare FileNotFoundError from torch.load) ------------------------------
def load_network_any_format(self, net, load_path, strict=True, param_key='params'):
    net = self.get_bare_model(net)
    if not osp.isfile(load_path):
        raise PretrainedWeightsNotFound(
            f'pretrained network {load_path!r} not found. {how_to_obtain_network(load_path)}.')
    state_dict = checkpoint.load_network_file(load_path, param_key)
    get_root_logger().info(f'Loading {net.__class__.__name__} model from {load_path}, with param key: [{param_key}].')
    self._print_different_keys_loading(net, state_dict, strict)
    net.load_state_dict(state_dict, strict=strict)
