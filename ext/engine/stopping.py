"""Stopping cleanly: SIGTERM / SIGINT (spot instances, Ctrl-C, torchrun), guards and bad data.

BasicSR dies on a signal and loses everything since the last periodic checkpoint; a guard that raises
on one DDP rank leaves the others waiting in a collective. Here a signal or a guard only asks for a stop
(:func:`request_stop`); at the end of each iteration (when the loop asks its prefetcher for the next
batch) the ranks agree (all-reduce) and every rank stops after the same iteration: for a signal after
saving the networks and the ``.state`` of that iteration (exit status 0, ``--auto_resume`` continues
exactly), for a guard or bad data without saving (exit status 3 or 2). A second signal exits at once;
checkpoints are written atomically, so the previous one stays whole. A step that runs out of memory
ends the run with exit status 4 and a message naming the iteration, the batch and patch sizes and the
keys that lower memory; nothing is saved for that half-updated step.
"""
import gc
import os
import signal
import sys
import threading
import time

import torch
from basicsr.utils import get_root_logger

from ext.engine.bad_data import BadTrainingData
from ext.engine.dist import distributed, rank
from ext.engine.progress import PROGRESS
from ext.engine.resume import saved_files
from ext.errors import EXIT_BAD_DATA, EXIT_GUARD, EXIT_OUT_OF_MEMORY, is_out_of_memory

REPEATED_SIGNAL_GRACE_S = 1.0  # torchrun forwards the SIGINT that a terminal already sent to every process


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
        if distributed():
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
        reasons = [(f'rank {index}: ' if len(requests) > 1 else '') + each[0]
                   for index, each in enumerate(requests) if each is not None]
        return '; '.join(reasons), max(each[1] for each in requests if each is not None), level == 1


STOP = StopControl()


def request_stop(reason, exit_code=EXIT_GUARD, save_checkpoint=False):
    """Ask the training loop to stop every rank after the current iteration (a guard's ``action: stop``).

    ``save_checkpoint``: write the networks and the .state of that iteration first (signals do; a guard
    that saw the model diverge does not, so ``--auto_resume`` takes the last periodic checkpoint)."""
    STOP.ask(reason, exit_code, save_checkpoint)


def stop_after_iteration():
    """At the end of an iteration: stop every rank if any asked to (saving first for a signal)."""
    iteration = PROGRESS.current_iter
    if iteration is None or iteration == STOP.checked_iter:
        return  # the first batch of an epoch: the previous iteration was checked already
    STOP.checked_iter = iteration
    decision = STOP.agree()
    if decision is None:
        return
    reason, exit_code, save = decision
    logger, model = get_root_logger(), PROGRESS.model
    if not save:
        logger.error(f'Stopping after iteration {iteration}: {reason}')
        raise TrainingStopped(reason, exit_code, iteration)
    logger.warning(f'Stopping after iteration {iteration} ({reason}): saving the networks and the training state.')
    if iteration % model.opt['logger']['save_checkpoint_freq'] != 0:  # else the loop saved it just now
        model.save(PROGRESS.train_sampler.epoch, iteration)
    saved = saved_files(model.opt, iteration) if rank() == 0 else []
    logger.info(f'Saved iteration {iteration}: {", ".join(saved)}. Continue with --auto_resume.')
    raise TrainingStopped(reason, 0, iteration, saved)


def next_batch_stopping_together(original, self):
    """The prefetcher's next(): first the end-of-iteration stop agreement, then the batch; a data error
    on any rank stops every rank."""
    stop_after_iteration()
    try:
        batch = original(self)
    except BadTrainingData as error:
        STOP.ask(f'{type(error).__name__}: {error}', EXIT_BAD_DATA, save_checkpoint=False)
        batch = None
    decision = STOP.agree(save_kinds=(False, ))  # the batch is drawn: only stops without a checkpoint now
    if decision is not None:
        get_root_logger().error(f'Stopping: {decision[0]}')
        raise TrainingStopped(decision[0], decision[1], PROGRESS.current_iter)
    return batch


def out_of_memory_advice(error):
    """What ran out of memory, where, and the keys that lower memory."""
    model = PROGRESS.model
    opt = model.opt if model is not None else {}
    train_set = (opt.get('datasets') or {}).get('train') or {}
    batch, patch = train_set.get('batch_size_per_gpu', '?'), opt.get('gt_size', train_set.get('gt_size', '?'))
    accum = (opt.get('train') or {}).get('accum_iter', 1)
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (f'out of memory in iteration {PROGRESS.current_iter} (batch_size_per_gpu {batch}, gt_size {patch}, '
            f'accum_iter {accum}): {first_line}. To use less memory lower datasets.train.batch_size_per_gpu or '
            'gt_size, split the batch with train.accum_iter, or set train.use_amp (with amp_bf16 on CPU). No '
            'checkpoint was written for this iteration; --auto_resume continues from the last one.')


def train_pipeline_stopping_cleanly(original, root_path):
    """BasicSR's train_pipeline with the signal handlers installed; a stop ends the process with its status."""
    STOP.reset()
    STOP.install()
    try:
        original(root_path)
        decision = STOP.agree()  # asked for during the final validation (every rank gets here)
        stopped = TrainingStopped(decision[0], decision[1] if not decision[2] else 0) if decision else None
    except TrainingStopped as error:
        stopped = error
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        stopped = TrainingStopped(out_of_memory_advice(error), EXIT_OUT_OF_MEMORY, PROGRESS.current_iter)
        get_root_logger().error(stopped.reason)
    finally:
        STOP.uninstall()
    this_rank = rank()
    if distributed():  # BasicSR leaves the group up at the normal end; gloo's exit-time teardown can abort
        import torch.distributed as dist
        # The model's DDP reducer holds the process group: left to the interpreter's exit (PROGRESS and a stop's
        # traceback keep the model alive), its teardown raced gloo's and aborted a rank (SIGABRT, "terminate
        # called without an active exception") about one run in four. Release it while every rank is here.
        PROGRESS.model = None
        if stopped is not None:
            stopped.__traceback__ = stopped.__context__ = None
        gc.collect()
        together = stopped is None or stopped.exit_code != EXIT_OUT_OF_MEMORY  # else the others are mid-step
        try:  # every rank past its last collective before any closes its connections
            if together:
                dist.barrier()
        except RuntimeError:  # a rank already gone: tear down what is left
            pass
        dist.destroy_process_group()
    if stopped is None:
        return
    if this_rank == 0 or stopped.exit_code:
        if stopped.exit_code == 0:
            where = f' after iteration {stopped.iteration}' if stopped.iteration is not None else ''
            print(f'Training stopped{where} ({stopped.reason}); saved: {", ".join(stopped.saved) or "-"}. '
                  'Continue with --auto_resume.', file=sys.stderr)
        else:
            print(f'error: training stopped: {stopped.reason}', file=sys.stderr)
    raise SystemExit(stopped.exit_code)
