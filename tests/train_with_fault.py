"""Test driver: run ext/train.py's main, but SIGKILL this process at a chosen point.

    python tests/train_with_fault.py --kill-after-state N  -opt X.yml ...   # right after N.state is saved
    python tests/train_with_fault.py --kill-in-state-write N -opt X.yml ... # half-way through writing N.state
    python tests/train_with_fault.py --dump-params DIR -opt X.yml ...       # every rank dumps net_g at each save
    python tests/train_with_fault.py --basicsr-resume -opt X.yml ...        # BasicSR's epoch-restarting resume
    python tests/train_with_fault.py --sigterm-at-iter N [--signal-rank R] -opt X.yml ...
        # SIGTERM to this process (only rank R's) as iteration N starts
    python tests/train_with_fault.py --second-signal-in-state-write N -opt X.yml ...
        # a second SIGTERM, 1.2 s after the first, half-way through writing N.state

All other arguments go to ext/train.py unchanged.
"""
import argparse
import os
import os.path as osp
import signal
import sys
import time

sys.path[0] = osp.dirname(osp.dirname(osp.abspath(__file__)))

import torch  # noqa: E402

import ext  # noqa: E402,F401
from basicsr.models import base_model  # noqa: E402
from ext import compat  # noqa: E402
from ext.engine import stopping  # noqa: E402
from ext.engine.patching import original  # noqa: E402
from ext.train import main  # noqa: E402
from ext.utils.atomic_io import atomic_open  # noqa: E402


def kill_now():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_after_state(iteration):
    save_state = base_model.BaseModel.save_training_state

    def save_then_kill(self, epoch, current_iter):
        save_state(self, epoch, current_iter)
        if current_iter == iteration:
            kill_now()

    base_model.BaseModel.save_training_state = save_then_kill


def kill_in_state_write(iteration):
    real_save = compat.atomic_torch_save

    def torn_save(obj, path):
        if osp.basename(path) == f'{iteration}.state':
            with atomic_open(path, 'wb') as handle:
                handle.write(b'PK\x03\x04 torn write')
                handle.flush()
                kill_now()
        real_save(obj, path)

    compat.atomic_torch_save = torn_save


def dump_params(folder):
    save_state = base_model.BaseModel.save_training_state  # every model's save() ends with it, on every rank

    def save_and_dump(self, epoch, current_iter):
        save_state(self, epoch, current_iter)
        rank = self.opt['rank']
        state = {k: v.detach().cpu().clone() for k, v in self.get_bare_model(self.net_g).state_dict().items()}
        torch.save(state, osp.join(folder, f'rank{rank}_iter{current_iter}.pth'))

    base_model.BaseModel.save_training_state = save_and_dump


def sigterm_at_iter(iteration, rank=None):
    update = base_model.BaseModel.update_learning_rate  # the loop calls it first in every iteration

    def update_then_signal(self, current_iter, *args, **kwargs):
        if current_iter == iteration and rank in (None, self.opt['rank']):
            os.kill(os.getpid(), signal.SIGTERM)
        return update(self, current_iter, *args, **kwargs)

    base_model.BaseModel.update_learning_rate = update_then_signal


def second_signal_in_state_write(iteration):
    real_save = compat.atomic_torch_save

    def interrupted_save(obj, path):
        if osp.basename(path) == f'{iteration}.state':
            with atomic_open(path, 'wb') as handle:
                handle.write(b'PK\x03\x04 half-written')
                handle.flush()
                time.sleep(stopping.REPEATED_SIGNAL_GRACE_S + 0.2)
                print(f'second signal sent at {time.time()}', file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)  # the handler exits before this ends
        real_save(obj, path)

    compat.atomic_torch_save = interrupted_save


def oom_at_iter(iteration):
    """The training step of ``iteration`` runs out of memory (as CUDA reports it), before updating anything."""
    import basicsr.train
    build = basicsr.train.build_model

    def build_then_fail(opt):
        model = build(opt)
        step = model.optimize_parameters

        def step_or_fail(current_iter):
            if current_iter == iteration:
                raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB (simulated)')
            return step(current_iter)

        model.optimize_parameters = step_or_fail
        return model

    basicsr.train.build_model = build_then_fail


def nan_loss_from_iter(iteration):
    """The pixel loss turns NaN from ``iteration`` on (a diverged run)."""
    import basicsr.train
    from ext.engine.progress import PROGRESS
    build = basicsr.train.build_model

    def build_then_poison(opt):
        model = build(opt)
        loss = model.cri_pix

        def poisoned(*args, **kwargs):
            value = loss(*args, **kwargs)
            return value * float('nan') if PROGRESS.current_iter >= iteration else value

        model.cri_pix = poisoned
        return model

    basicsr.train.build_model = build_then_poison


def use_basicsr_resume():
    """Undo the exact-resume fix (control runs): restart the epoch, keep the random states as they are."""
    import basicsr.train
    basicsr.train.create_train_val_dataloader = original(basicsr.train, 'create_train_val_dataloader')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--kill-after-state', type=int)
    parser.add_argument('--kill-in-state-write', type=int)
    parser.add_argument('--dump-params')
    parser.add_argument('--basicsr-resume', action='store_true')
    parser.add_argument('--sigterm-at-iter', type=int)
    parser.add_argument('--signal-rank', type=int)
    parser.add_argument('--second-signal-in-state-write', type=int)
    parser.add_argument('--oom-at-iter', type=int)
    parser.add_argument('--nan-loss-from-iter', type=int)
    faults, rest = parser.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    if faults.kill_after_state is not None:
        kill_after_state(faults.kill_after_state)
    if faults.kill_in_state_write is not None:
        kill_in_state_write(faults.kill_in_state_write)
    if faults.basicsr_resume:
        use_basicsr_resume()
    if faults.dump_params:
        dump_params(faults.dump_params)
    if faults.sigterm_at_iter is not None:
        sigterm_at_iter(faults.sigterm_at_iter, faults.signal_rank)
    if faults.second_signal_in_state_write is not None:
        second_signal_in_state_write(faults.second_signal_in_state_write)
    if faults.oom_at_iter is not None:
        oom_at_iter(faults.oom_at_iter)
    if faults.nan_loss_from_iter is not None:
        nan_loss_from_iter(faults.nan_loss_from_iter)
    main()
