"""Exact resume: what a ``.state`` file holds, and finding the newest usable one.

BasicSR's ``.state`` holds the optimizers and schedulers. Here it also holds every rank's random states
(:mod:`ext.utils.random_states`), the loader length (so the sampler can skip what the epoch already trained:
:mod:`ext.engine.sampling`) and a model's own extra state if it defines ``extra_training_state()`` /
``load_extra_training_state()`` (a training-pair queue, a guard's streak, GradScalers). ``--auto_resume``
finds the states from the experiment path (not the working directory), loads them on any machine with
``weights_only``, and skips a torn newest state or one whose networks are missing.
"""
import os
import re
import warnings
from os import path as osp

import torch
from basicsr.utils.misc import check_resume

from ext.compat import save_with_retry
from ext.engine import schedules
from ext.engine.dist import gather_on_rank0, own_rank_entry, rank
from ext.engine.progress import PROGRESS
from ext.utils import checkpoint
from ext.utils.random_states import rng_state

_STATE_FILE = re.compile(r'^(\d+)\.state$')


def save_training_state_resumable(self, epoch, current_iter):
    """BasicSR's .state plus, for every rank, its random states and its model's extra state (e.g.
    the training-pair queue, different on each rank), gathered on rank 0 which writes the file."""
    if current_iter == -1:  # the end of training: BasicSR saves the *_latest networks only
        epoch, current_iter = final_position(self)
        if current_iter is not None:  # a checkpoint of the last iteration, as a periodic one (resume needs both)
            self.save(epoch, current_iter)
        return
    mine = {'rng': rng_state()}
    if hasattr(self, 'extra_training_state'):
        mine['extra'] = self.extra_training_state()
    per_rank = gather_on_rank0(mine)  # collective: every rank calls save_training_state
    if rank() != 0:
        return
    state = {
        'epoch': epoch,
        'iter': current_iter,
        'optimizers': [o.state_dict() for o in self.optimizers],
        'schedulers': [s.state_dict() for s in self.schedulers],
        'rng': [each['rng'] for each in per_rank],
        'iters_per_epoch': PROGRESS.iters_per_epoch,
        'total_iter': self.opt['train'].get('total_iter'),
    }
    if 'extra' in mine:
        state['extra_by_rank'] = [each['extra'] for each in per_rank]
    path = osp.join(self.opt['path']['training_states'], f'{current_iter}.state')
    save_with_retry(state, path, 'training state')


def final_position(model):
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


def resume_training_with_extra(original, self, resume_state):
    """BasicSR's ``resume_training``; then the option file's schedule from the resumed iteration
    (:mod:`ext.engine.schedules`) and this rank's own extra state (``extra_by_rank``; ``extra``: rank 0's
    only, as written by earlier versions, which every rank then takes)."""
    wanted = schedules.option_file_schedule(self)  # before the saved states replace what the YAML built
    original(self, resume_state)
    schedules.follow_option_file(self, resume_state, wanted)
    if not hasattr(self, 'load_extra_training_state'):
        return
    if 'extra_by_rank' in resume_state:
        self.load_extra_training_state(own_rank_entry(resume_state['extra_by_rank'], self.opt['rank'], 'the model '
                                                      'state (training-pair queue, guards)'))
    elif 'extra' in resume_state:
        self.load_extra_training_state(resume_state['extra'])


def load_state_file(path):
    """Load a ``.state`` file on any machine, allowing only tensors and plain containers."""
    return torch.load(path, map_location='cpu', weights_only=True)


def network_labels(opt):
    """``g``, ``d``, ... for the run's ``network_*`` sections that a resume loads."""
    ignored = opt['path'].get('ignore_resume_networks') or []
    return [key[len('network_'):] for key in opt if key.startswith('network_') and key not in ignored]


def incomplete_networks(opt, iteration):
    """Network files of ``iteration`` that are missing or torn (any checkpoint format)."""
    missing = []
    for label in network_labels(opt):
        path = checkpoint.find_network_file(opt['path']['models'], f'net_{label}', iteration)
        if path is None or not checkpoint.checkpoint_looks_complete(path):
            missing.append(path or osp.join(opt['path']['models'], f'net_{label}_{iteration}.*'))
    return missing


def saved_files(opt, iteration):
    """The network files and the ``.state`` a run wrote for ``iteration``."""
    files = [checkpoint.find_network_file(opt['path']['models'], f'net_{label}', iteration)
             for label in network_labels(opt)]
    state = osp.join(opt['path']['training_states'], f'{iteration}.state')
    return [path for path in files if path] + ([state] if osp.isfile(state) else [])


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
        missing = incomplete_networks(opt, iteration)
        if missing:
            warnings.warn(f'auto_resume: skipping {path}: its network files are missing or incomplete: {missing}')
            continue
        return path, state
    return None, None


def load_resume_state(opt):
    """BasicSR's ``load_resume_state`` (train.py): the state to resume from, found as described above; its
    networks' files (any checkpoint format) become the pretrained networks, and the sampler gets its
    position when the loaders are built."""
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
    for label in network_labels(opt):  # check_resume assumes .pth; the run may save .safetensors
        found = checkpoint.find_network_file(opt['path']['models'], f'net_{label}', state['iter'])
        if found is not None:
            opt['path'][f'pretrain_network_{label}'] = found
    PROGRESS.pending_resume = state
    return state
