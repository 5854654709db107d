"""Learning-rate schedules that follow the option file on resume.

BasicSR's ``resume_training`` loads the saved schedulers and optimizers whole, so new ``milestones``,
``periods``, ``gamma``, a new scheduler ``type`` or a new ``lr`` in the YAML were silently ignored
after ``--auto_resume`` (and a changed ``type`` mixed two schedulers' attributes). Here the schedule of
the option file applies from the resumed iteration: the schedulers take the new configuration, and
every learning rate is set to what the new schedule gives at that iteration (found by running a copy of
the new scheduler there); the optimizers keep their moments. What changed is logged.

Option key, ``train``:
    restart_scheduler (bool, default true): false keeps BasicSR's behaviour (the saved schedule goes on)
        and warns, naming the option-file keys it ignores.
"""
import warnings

import torch
from basicsr.utils import get_root_logger

from ext.errors import OptionError

TRAIN_OPTION_KEYS = frozenset({'restart_scheduler'})
# scheduler attributes that are position, not configuration
_POSITION = frozenset({'last_epoch', '_step_count', '_last_lr', '_get_lr_called_within_step', '_is_initial', 'verbose',
                       'base_lrs', 'cumulative_period'})


def _configuration(state):
    return {key: value for key, value in state.items() if key not in _POSITION}


def _initial_lrs(optimizer_state):
    return [group.get('initial_lr', group['lr']) for group in optimizer_state['param_groups']]


def option_file_schedule(model):
    """What the option file asks for, read off the freshly built schedulers and optimizers (call before the
    saved states are loaded into them)."""
    return {'schedulers': [(type(s), s.state_dict()) for s in model.schedulers],
            'lrs': [_initial_lrs(o.state_dict()) for o in model.optimizers],
            'total_iter': (model.opt.get('train') or {}).get('total_iter')}


def _changes(model, saved, wanted):
    """``[(option key, saved value, wanted value)]`` where the option file differs from the saved run."""
    changes = []
    train = model.opt.get('train') or {}
    if saved.get('total_iter') is not None and saved['total_iter'] != wanted['total_iter']:
        changes.append(('train.total_iter', saved['total_iter'], wanted['total_iter']))
    for index, ((_, fresh), old) in enumerate(zip(wanted['schedulers'], saved['schedulers'])):
        fresh, old = _configuration(fresh), _configuration(old)
        if set(fresh) != set(old):
            changes.append(('train.scheduler.type', 'the saved type', wanted['schedulers'][index][0].__name__))
        else:
            changes += [(f'train.scheduler.{key}', old[key], fresh[key]) for key in fresh if fresh[key] != old[key]]
    names = [key for key in train if key.startswith('optim_')]
    for index, (old, new) in enumerate(zip((_initial_lrs(o) for o in saved['optimizers']), wanted['lrs'])):
        if old != new:
            name = names[index] if index < len(names) else f'optimizer {index}'
            changes.append((f'train.{name}.lr', old if len(old) > 1 else old[0], new if len(new) > 1 else new[0]))
    unique = []
    for change in changes:  # one line per key (every optimizer has its scheduler)
        if change[0] not in [each[0] for each in unique]:
            unique.append(change)
    return unique


def _learning_rates_at(scheduler_class, configuration, initial_lrs, last_epoch):
    """The group learning rates, and the scheduler state, that ``scheduler_class(**configuration)`` reaches
    after ``last_epoch`` steps from ``initial_lrs``."""
    params = [{'params': [torch.zeros(1, requires_grad=True)], 'lr': lr} for lr in initial_lrs]
    optimizer = torch.optim.SGD(params, lr=initial_lrs[0])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "lr_scheduler.step() before optimizer.step()": nothing is trained here
        scheduler = scheduler_class(optimizer, **configuration)
        events = None
        if hasattr(scheduler, 'milestones') and hasattr(scheduler, 'restarts'):
            events = sorted(e for e in set(scheduler.milestones) | set(scheduler.restarts) if 0 < e <= last_epoch)
        if events is None:  # no closed form known: every step
            for _ in range(last_epoch):
                scheduler.step()
        else:  # a multi-step schedule changes the rate at its events only
            for event in events:
                scheduler.last_epoch = event - 1
                scheduler.step()
            scheduler.last_epoch = last_epoch
    return [group['lr'] for group in optimizer.param_groups], scheduler.state_dict()


def _apply(model, wanted):
    for scheduler, optimizer, (scheduler_class, fresh), lrs in zip(model.schedulers, model.optimizers,
                                                                   wanted['schedulers'], wanted['lrs']):
        if type(scheduler) is not scheduler_class:
            raise RuntimeError(f'{type(scheduler).__name__} is not {scheduler_class.__name__}')
        configuration = {key: value for key, value in model.opt['train']['scheduler'].items() if key != 'type'}
        rates, state = _learning_rates_at(scheduler_class, configuration, lrs, scheduler.last_epoch)
        scheduler.load_state_dict(state)
        for group, initial, rate in zip(optimizer.param_groups, lrs, rates):
            group['initial_lr'], group['lr'] = initial, rate


def follow_option_file(model, resume_state, wanted):
    """After BasicSR's ``resume_training``: apply the option file's schedule from the resumed iteration (or,
    with ``train.restart_scheduler: false``, keep the saved one and say what is ignored)."""
    restart = (model.opt.get('train') or {}).get('restart_scheduler', True)
    if not isinstance(restart, bool):
        raise OptionError(f'train.restart_scheduler must be true or false, got {restart!r}')
    if len(resume_state['schedulers']) != len(wanted['schedulers']):
        return  # BasicSR's resume refuses this already
    changes = _changes(model, resume_state, wanted)
    scheduling = [change for change in changes if change[0] != 'train.total_iter']
    logger = get_root_logger()
    described = '; '.join(f'{key} {old} -> {new}' for key, old, new in changes)
    if not scheduling:
        if changes:
            logger.info(f'Resume: {described}.')
        return
    if not restart:
        logger.warning(f'Resume: train.restart_scheduler is false, so the saved schedule goes on; ignored from the '
                       f'option file: {", ".join(key for key, _, _ in scheduling)} ({described}).')
        return
    _apply(model, wanted)
    rates = ', '.join(f'{group["lr"]:.3e}' for optimizer in model.optimizers for group in optimizer.param_groups)
    logger.info(f'Resume: the option file changes the schedule ({described}); it applies from iteration '
                f'{resume_state["iter"]}: learning rate(s) now {rates}.')
