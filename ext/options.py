"""Option parsing for ``ext/train.py`` and ``ext/test.py``: BasicSR's, plus three things.

1. Relative paths in an option file (data roots, meta info, pretrained networks, experiment
   roots) are taken relative to the repository root, so a command works from any directory.
2. ``path.experiments_root`` (train) and ``path.results_root`` (test) are honoured; BasicSR
   1.4.2 always uses ``<root>/experiments/<name>``.
3. The options are validated before any data is read: unknown keys (top level and in every
   section), misspelled component types, values of the wrong type and missing files fail with one
   message that names the file, the key and the closest valid name. The keys come from the
   components themselves (signatures and declared ``*option_keys``); only what BasicSR reads from raw
   option dicts is listed here, in tables that say where BasicSR reads it.
"""
import inspect
import os.path as osp
import sys

import torch

from basicsr.utils import options as basicsr_options
from basicsr.utils.registry import (ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY,
                                    MODEL_REGISTRY)
from ext.engine.bad_data import BadFileGuard
from ext.engine import schedules
from ext.engine.resume import saved_state_iterations
from ext.models.option_keys import declared_option_keys
from ext.models.realesrgan_synthesis import RealESRGANSynthesis
from ext.registry import closest, registry_get
from ext.errors import OptionError
from ext.utils import checkpoint, pretrained
from ext.utils.color_fix import COLOR_FIX_MODES
from ext.utils.option_file import parse_forced_options, read_option_file

# --- What BasicSR itself reads. Its datasets, models and loop take raw option dicts, so their keys cannot be
#     introspected: these tables list them, each with where BasicSR reads it. Everything of this package is
#     declared once, by its component (a signature, or an ``option_keys`` / ``train_option_keys`` /
#     ``val_option_keys`` attribute of the class or of a policy it owns) and collected by :func:`declared_keys`.
BASICSR_TOP_LEVEL_KEYS = frozenset({  # basicsr/utils/options.py, basicsr/train.py, basicsr/models/base_model.py
    'name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'path', 'train', 'val', 'logger',
    'dist_params', 'find_unused_parameters', 'is_train', 'dist', 'rank', 'world_size', 'auto_resume', 'root_path'})
BASICSR_LOADER_KEYS = frozenset({  # basicsr/data/__init__.py build_dataloader, basicsr/train.py
    'name', 'type', 'phase', 'scale', 'io_backend', 'use_shuffle', 'num_worker_per_gpu', 'batch_size_per_gpu',
    'dataset_enlarge_ratio', 'prefetch_mode', 'pin_memory', 'persistent_workers', 'num_prefetch_queue'})
_KERNEL_KEYS = frozenset({
    'blur_kernel_size', 'kernel_list', 'kernel_prob', 'blur_sigma', 'betag_range', 'betap_range', 'sinc_prob',
    'blur_kernel_size2', 'kernel_list2', 'kernel_prob2', 'blur_sigma2', 'betag_range2', 'betap_range2',
    'sinc_prob2', 'final_sinc_prob'})
BASICSR_DATASET_KEYS = {  # basicsr/data/<name>_dataset.py
    'PairedImageDataset': frozenset({'dataroot_gt', 'dataroot_lq', 'meta_info_file', 'filename_tmpl', 'gt_size',
                                     'use_hflip', 'use_rot', 'mean', 'std', 'color'}),
    'SingleImageDataset': frozenset({'dataroot_lq', 'meta_info_file', 'mean', 'std', 'color'}),
    'RealESRGANDataset': frozenset({'dataroot_gt', 'meta_info', 'gt_size', 'use_hflip', 'use_rot'}) | _KERNEL_KEYS,
    'RealESRGANPairedDataset': frozenset({'dataroot_gt', 'dataroot_lq', 'meta_info', 'filename_tmpl', 'gt_size',
                                          'use_hflip', 'use_rot', 'mean', 'std'}),
}
_REAL_ESRGAN_SYNTHESIS_KEYS = RealESRGANSynthesis.option_keys  # the same keys as upstream's, read the same way
BASICSR_MODEL_KEYS = {  # basicsr/models/<name>_model.py: {'option_keys' (top level) | 'train_option_keys': ...}
    'SRModel': {'train_option_keys': frozenset({'ema_decay', 'scheduler', 'total_iter', 'warmup_iter'})},
    'SRGANModel': {'train_option_keys': frozenset({'net_d_iters', 'net_d_init_iters'})},
    'RealESRNetModel': {'option_keys': _REAL_ESRGAN_SYNTHESIS_KEYS | {'gt_usm'}},
    'RealESRGANModel': {'option_keys': _REAL_ESRGAN_SYNTHESIS_KEYS | {'l1_gt_usm', 'percep_gt_usm', 'gan_gt_usm'}},
}
BASICSR_SECTION_KEYS = {  # basicsr/train.py, basicsr/utils/logger.py, basicsr/models/base_model.py
    'logger': frozenset({'print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb'}),
    'val': frozenset({'val_freq', 'save_img', 'suffix', 'metrics', 'pbar'}),
    'dist_params': frozenset({'backend', 'port'}),
}
BASICSR_PATH_KEYS = frozenset({'resume_state', 'models', 'training_states', 'log', 'visualization',
                               'ignore_resume_networks'})
PATH_KEY_PREFIXES = ('pretrain_network_', 'param_key_', 'strict_load_')  # basicsr/models/*: per network label
SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')  # basicsr/models/base_model.py
# This package's own keys of those sections (read by ext/options.py, ext/compat.py and ext/utils/pretrained.py).
OWN_SECTION_KEYS = {'logger': frozenset({'checkpoint_format'}), 'val': frozenset(), 'dist_params': frozenset()}
OWN_PATH_KEYS = frozenset({'experiments_root', 'results_root', 'vgg_weights'})
CHECKPOINT_FORMATS = ('pth', 'safetensors')
ENGINE_TRAIN_KEYS = schedules.TRAIN_OPTION_KEYS  # read by ext/engine for every model


def declared_keys(component_class, kind):
    """The keys of one kind (``option_keys``: top level; ``train_option_keys``; ``val_option_keys``) that
    ``component_class`` reads: what this package's classes and the policies they own declare
    (:func:`ext.models.option_keys.declared_option_keys`), and for BasicSR's classes in its MRO, what
    :data:`BASICSR_MODEL_KEYS` lists."""
    keys = set(declared_option_keys(component_class, kind))
    for cls in component_class.__mro__:
        keys |= BASICSR_MODEL_KEYS.get(cls.__name__.replace('_basicsr', ''), {}).get(kind, frozenset())
    return frozenset(keys)


def _uses_vgg_weights(loss_class):
    from basicsr.losses.basic_loss import PerceptualLoss
    return getattr(loss_class, 'uses_vgg_weights', False) or (
        inspect.isclass(loss_class) and issubclass(loss_class, PerceptualLoss))


def _parameters(obj):
    """``{name: inspect.Parameter}`` of the keywords ``obj`` accepts, or None when it takes ``**kwargs``."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    accepted = {}
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind is not inspect.Parameter.VAR_POSITIONAL and parameter.name != 'self':
            accepted[parameter.name] = parameter
    return accepted


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _takes_numbers(parameter):
    """True when ``parameter`` is declared numeric (a number as default, or ``float``/``int`` in its annotation),
    or a sequence of numbers (such a default)."""
    default = parameter.default
    if _is_number(default):
        return True
    if isinstance(default, (tuple, list)) and default and all(_is_number(each) for each in default):
        return True
    annotation = parameter.annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, '__name__', str(annotation))
    return annotation is not inspect.Parameter.empty and any(word in str(text) for word in ('float', 'int'))


def _as_number(text):
    try:
        return float(text)
    except ValueError:
        return None


class _Validator:

    def __init__(self, opt, source, root_path):
        self.opt, self.source, self.root_path, self.errors, self.notes = opt, source, root_path, [], []

    def error(self, key, message):
        self.errors.append(f'  {key}: {message}')

    def unknown_keys(self, section_key, section, allowed, extra_ok=lambda key: False):
        for key in section:
            if key not in allowed and not extra_ok(key):
                self.error(f'{section_key}.{key}' if section_key else key, f'unknown key{closest(key, allowed)}')

    def arguments(self, key, spec, name, accepted, ignore=('type', )):
        """Unknown arguments of ``spec`` are errors; numbers that YAML read as strings become numbers, noted."""
        if accepted is None:
            return
        for arg, value in spec.items():
            if arg in ignore:
                continue
            if arg not in accepted:
                self.error(f'{key}.{arg}', f"{name} has no argument '{arg}'{closest(arg, accepted)}")
            elif _takes_numbers(accepted[arg]):
                spec[arg] = self.number(f'{key}.{arg}', value)

    def number(self, key, value):
        """``value`` with strings that read as numbers converted (YAML 1.1 reads ``2e-4``, without a dot, as a
        string; torch then fails on ``'<=' between 'float' and 'str'``); other strings are errors."""
        if isinstance(value, (list, tuple)):
            return type(value)(self.number(f'{key}[{index}]', each) for index, each in enumerate(value))
        if not isinstance(value, str):
            return value
        number = _as_number(value)
        if number is None:
            self.error(key, f'expected a number, got the string {value!r}')
            return value
        self.notes.append(f'{key}: {value!r} is a string in YAML (write 2.0e-4 or !!float 2e-4); read as {number:g}')
        return number

    def component(self, key, spec, registry, kind, ignore=('type', )):
        if not isinstance(spec, dict) or 'type' not in spec:
            self.error(key, f'expected a mapping with a "type" ({kind} name), got {spec!r}')
            return None
        obj = registry_get(registry, spec['type'])
        if obj is None:
            self.error(f'{key}.type', f"unknown {kind} '{spec['type']}'{closest(spec['type'], registry.keys())}")
            return None
        self.arguments(key, spec, spec['type'], _parameters(obj), ignore)
        return obj

    def existing_path(self, key, value, hint=''):
        if value is not None and not osp.exists(value):
            self.error(key, f"'{value}' does not exist{hint}")

    # --- sections -------------------------------------------------------------------------
    def model(self):
        model_type = self.opt.get('model_type')
        if model_type is None:
            self.error('model_type', 'missing (e.g. SRModel, ESRGANModel)')
            return None
        model_class = registry_get(MODEL_REGISTRY, model_type)
        if model_class is None:
            self.error('model_type', f"unknown model '{model_type}'{closest(model_type, MODEL_REGISTRY.keys())}")
        return model_class

    def top_level(self, model_class):
        if model_class is None:
            return  # the model's own keys are unknown
        allowed = BASICSR_TOP_LEVEL_KEYS | declared_keys(model_class, 'option_keys')
        self.unknown_keys('', self.opt, allowed, extra_ok=lambda key: key.startswith('network_'))

    def networks(self):
        for key, spec in self.opt.items():
            if key.startswith('network_'):
                self.component(key, spec, ARCH_REGISTRY, 'network')

    def datasets(self):
        datasets = self.opt.get('datasets') or {}
        for phase, spec in datasets.items():
            key = f'datasets.{phase}'
            if phase.split('_')[0] not in ('train', 'val', 'test'):
                self.error(key, "dataset phases are 'train', 'val*' or 'test*'")
            if not isinstance(spec, dict) or 'type' not in spec:
                self.error(key, 'expected a mapping with a "type" (dataset name)')
                continue
            dataset_class = registry_get(DATASET_REGISTRY, spec['type'])
            if dataset_class is None:
                self.error(f'{key}.type',
                           f"unknown dataset '{spec['type']}'{closest(spec['type'], DATASET_REGISTRY.keys())}")
                continue
            own_keys = getattr(dataset_class, 'option_keys', None)
            if own_keys is None:
                own_keys = BASICSR_DATASET_KEYS.get(dataset_class.__name__.replace('_basicsr', ''))
            if own_keys is not None:
                self.unknown_keys(key, spec, BASICSR_LOADER_KEYS | BadFileGuard.option_keys | own_keys)
            backend = (spec.get('io_backend') or {}).get('type', 'disk')
            for name, value in spec.items():
                if (name.startswith('dataroot') or name.startswith('meta_info')) and isinstance(value, str):
                    self.existing_path(f'{key}.{name}', value)
                    if backend == 'lmdb' and name.startswith('dataroot') and not str(value).endswith('.lmdb'):
                        self.error(f'{key}.{name}', f"io_backend lmdb needs a folder ending in '.lmdb', got '{value}'")

    def train(self, model_class):
        train = self.opt.get('train')
        if train is None:
            self.error('train', 'missing section')
            return
        if model_class is not None:
            self.unknown_keys('train', train, declared_keys(model_class, 'train_option_keys') | ENGINE_TRAIN_KEYS,
                              extra_ok=lambda k: k.endswith('_opt') or k.startswith('optim_'))
        for key, spec in train.items():
            if key.endswith('_opt') and spec is not None:
                loss_class = self.component(f'train.{key}', spec, LOSS_REGISTRY, 'loss')
                if loss_class is not None and _uses_vgg_weights(loss_class):
                    self.vgg_weights(f'train.{key}', spec.get('vgg_type', 'vgg19'))
            elif key.startswith('optim_') and spec is not None:
                self.optimizer(f'train.{key}', spec)
        scheduler = train.get('scheduler')
        if scheduler is not None:
            self.scheduler(scheduler)
        if 'total_iter' not in train:
            self.error('train.total_iter', 'missing (number of training iterations)')

    def optimizer(self, key, spec):
        if not isinstance(spec, dict) or 'type' not in spec:
            self.error(key, 'expected a mapping with a "type" (a torch.optim optimizer such as Adam)')
            return
        names = [n for n, c in vars(torch.optim).items() if inspect.isclass(c) and issubclass(c, torch.optim.Optimizer)]
        if spec['type'] not in names:
            self.error(f'{key}.type', f"unknown optimizer '{spec['type']}'{closest(spec['type'], names)}")
            return
        self.arguments(key, spec, spec['type'], _parameters(getattr(torch.optim, spec['type'])))

    def scheduler(self, spec):
        from basicsr.models import lr_scheduler
        kind = spec.get('type') if isinstance(spec, dict) else None
        if kind not in SCHEDULERS:
            self.error('train.scheduler.type', f"unknown scheduler '{kind}'{closest(kind, SCHEDULERS)}")
            return
        scheduler_class = lr_scheduler.MultiStepRestartLR if kind == 'MultiStepLR' else getattr(lr_scheduler, kind)
        accepted = {name: p for name, p in _parameters(scheduler_class).items() if name != 'optimizer'}
        self.arguments('train.scheduler', spec, kind, accepted)

    def validation(self, model_class):
        val = self.opt.get('val')
        if val is None:
            return
        own = declared_keys(model_class, 'val_option_keys') if model_class else frozenset()
        self.unknown_keys('val', val, BASICSR_SECTION_KEYS['val'] | OWN_SECTION_KEYS['val'] | own)
        for name, spec in (val.get('metrics') or {}).items():
            self.component(f'val.metrics.{name}', spec, METRIC_REGISTRY, 'metric', ignore=('type', 'better'))
        if 'color_fix' in val and val['color_fix'] not in COLOR_FIX_MODES:
            self.error('val.color_fix', f"{val['color_fix']!r} is not one of {', '.join(COLOR_FIX_MODES)}"
                                        f"{closest(str(val['color_fix']), COLOR_FIX_MODES)}")

    def sections(self):
        checkpoint_format = (self.opt.get('logger') or {}).get('checkpoint_format', 'pth')
        if checkpoint_format not in CHECKPOINT_FORMATS:
            self.error('logger.checkpoint_format', f"'{checkpoint_format}' is not one of 'pth', 'safetensors'")
        for section in ('logger', 'dist_params'):
            if isinstance(self.opt.get(section), dict):
                self.unknown_keys(section, self.opt[section],
                                  BASICSR_SECTION_KEYS[section] | OWN_SECTION_KEYS[section])

    def paths(self):
        path = self.opt.get('path') or {}
        self.unknown_keys('path', path, BASICSR_PATH_KEYS | OWN_PATH_KEYS,
                          extra_ok=lambda k: k.startswith(PATH_KEY_PREFIXES))
        if self.opt.get('is_train', True) and self.opt.get('auto_resume') and saved_state_iterations(self.opt):
            # the run's own checkpoints replace the pretrained networks (the states are read once, by the resume;
            # should none be usable, loading a missing pretrained network still fails with its source)
            return
        for key, value in path.items():
            if key.startswith('pretrain_network_') and value is not None:
                self.existing_path(f'path.{key}', value, '. ' + pretrained.how_to_obtain_network(value))
        if path.get('resume_state') is not None and not self.opt.get('auto_resume'):
            self.existing_path('path.resume_state', path['resume_state'])

    def vgg_weights(self, key, vgg_type):
        try:
            pretrained.find_vgg_weights(vgg_type)
        except FileNotFoundError as error:
            self.error(key, str(error))

    def devices(self):
        num_gpu = self.opt.get('num_gpu', 'auto')
        if isinstance(num_gpu, int) and num_gpu > torch.cuda.device_count():
            self.error('num_gpu', f'{num_gpu} GPU(s) asked for but {torch.cuda.device_count()} visible; '
                                  "use 'auto' (all visible GPUs, or the CPU when there is none) or 0")

    def run(self, is_train):
        model_class = self.model()
        self.top_level(model_class)
        self.networks()
        self.datasets()
        if is_train:
            self.train(model_class)
        self.validation(model_class)
        self.sections()
        self.paths()
        self.devices()
        if self.errors:
            raise OptionError(f'{self.source}: invalid options:\n' + '\n'.join(self.errors))
        return self.notes


def validate_options(opt, source='<options>', root_path=None, is_train=True):
    """Check ``opt`` (a parsed option dict); raise :class:`OptionError` listing every problem.

    Numbers that YAML read as strings (``lr: 2e-4``) in a numeric argument of a network, loss, metric,
    optimizer or scheduler are converted in ``opt``; the returned list has one note per conversion."""
    return _Validator(opt, source, root_path).run(is_train)


def _resolve(path, root_path):
    if path is None or not isinstance(path, str):
        return path
    path = osp.expanduser(path)
    return path if osp.isabs(path) else osp.normpath(osp.join(root_path, path))


def resolve_paths(opt, root_path):
    """Make option paths absolute, relative ones taken from ``root_path`` (the repository root)."""
    for spec in (opt.get('datasets') or {}).values():
        for key in list(spec):
            if key.startswith('dataroot') or key.startswith('meta_info'):
                spec[key] = _resolve(spec[key], root_path)
    path = opt.setdefault('path', {})
    for key in list(path):
        if key.startswith('pretrain_network_') or key in ('resume_state', 'vgg_weights', 'experiments_root',
                                                         'results_root'):
            path[key] = _resolve(path[key], root_path)
    return opt


def _use_output_root(opt, args, root_path, is_train):
    """Re-base BasicSR's output folders on ``path.experiments_root`` / ``path.results_root``."""
    key = 'experiments_root' if is_train else 'results_root'
    raw = read_option_file(args.opt) or {}
    forced = dict((':'.join(keys), value) for keys, value in parse_forced_options(args.force_yml))
    wanted = forced.get(f'path:{key}') or (raw.get('path') or {}).get(key)
    if not wanted:
        return
    root = _resolve(wanted, root_path)
    if is_train:
        opt['path'].update(experiments_root=root, models=osp.join(root, 'models'), log=root,
                           training_states=osp.join(root, 'training_states'),
                           visualization=osp.join(root, 'visualization'))
    else:
        opt['path'].update(results_root=root, log=root, visualization=osp.join(root, 'visualization'))


def parse_options(root_path, is_train=True):
    """Drop-in for ``basicsr.utils.options.parse_options``: returns ``(opt, args)``."""
    opt, args = basicsr_options.parse_options(root_path, is_train)  # with ext.compat's safe loading
    source = osp.abspath(args.opt)
    resolve_paths(opt, root_path)
    _use_output_root(opt, args, root_path, is_train)
    pretrained.configure_vgg_weights(opt['path'].get('vgg_weights'), source=source)
    for note in validate_options(opt, source=source, root_path=root_path, is_train=is_train):
        print(f'note: {source}: {note}', file=sys.stderr)
    return opt, args


def main_guard(function):
    """Run an entry point; an :class:`OptionError`, a missing pretrained network or a checkpoint that cannot
    be used (refused as unsafe, damaged, mismatched) ends it with the message and exit code 2, no traceback."""
    try:
        return function()
    except (OptionError, pretrained.PretrainedWeightsNotFound, checkpoint.CheckpointError) as error:
        print(f'error: {error}', file=sys.stderr)
        raise SystemExit(2) from None
