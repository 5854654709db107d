"""One decorator that registers a component into BasicSR *and* MMEngine.

BasicSR looks components up by bare name (``type: RRDBNet``) in five registries;
MMEngine/MMagic build them from a scoped name (``type='ext.RRDBNet'``) through a
child registry of its root registries. ``register`` puts a class (or function)
into both, so one component serves both hosts::

    @register()                       # kind taken from the file name: foo_arch.py -> 'arch'
    class MyDiscriminator(nn.Module): ...

    @register('arch', aliases=('multiscale',))   # also reachable under upstream's name
    class MultiScaleDiscriminator(nn.Module): ...

A name that BasicSR or another plugin already uses fails at import with
:class:`RegistryConflictError`, instead of BasicSR's bare ``AssertionError``.
"""
import difflib

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

from basicsr.utils.registry import (ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY,
                                    MODEL_REGISTRY)
from ext.components import MODULE_SUFFIXES

SCOPE = 'ext'

# MMEngine child registries: `MODELS.build(dict(type='ext.X'))` works from the root registries too.
MODELS = Registry('model', parent=MMENGINE_MODELS, scope=SCOPE, locations=[f'{SCOPE}.activation'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope=SCOPE, locations=[f'{SCOPE}.activation'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope=SCOPE, locations=[f'{SCOPE}.activation'])

# kind -> (BasicSR registry, MMEngine registry)
KINDS = {
    'arch': (ARCH_REGISTRY, MODELS),
    'model': (MODEL_REGISTRY, MODELS),
    'loss': (LOSS_REGISTRY, MODELS),
    'dataset': (DATASET_REGISTRY, DATASETS),
    'metric': (METRIC_REGISTRY, METRICS),
}


# Every (kind, name) that ext registered, for tests and tools that walk all components.
REGISTERED = {}


class RegistryConflictError(KeyError):
    """A component name is already taken in a BasicSR or MMEngine registry."""

    def __str__(self):  # KeyError would quote the whole message
        return self.args[0]


def _origin(obj):
    return f'{getattr(obj, "__module__", "?")}.{getattr(obj, "__qualname__", repr(obj))}'


def _same_component(a, b):
    """True for the same object, or the same definition imported twice (module reload)."""
    return a is b or _origin(a) == _origin(b)


def _kind_from_module(module_name):
    stem = module_name.rsplit('.', 1)[-1]
    for suffix, kind in MODULE_SUFFIXES.items():
        if stem.endswith(suffix):
            return kind
    raise ValueError(f'register(): cannot infer the component kind of module {module_name!r}; '
                     f'name the file *{"/*".join(MODULE_SUFFIXES)}.py or pass the kind, '
                     f'one of {sorted(KINDS)}')


def _check_free(obj, name, kind, basicsr_registry, mmengine_registry):
    taken = basicsr_registry._obj_map.get(name)
    where = f"BasicSR's {kind} registry"
    if taken is None:
        taken = mmengine_registry.module_dict.get(name)
        where = f"MMEngine registry '{mmengine_registry.name}' (scope '{SCOPE}')"
    if taken is not None and not _same_component(taken, obj):
        raise RegistryConflictError(
            f"cannot register {_origin(obj)} as '{name}' in {where}: that name is already taken by "
            f'{_origin(taken)}. Rename the class or pass another name/alias to ext.registry.register().')


def register(kind=None, *, name=None, aliases=()):
    """Register a class or function into BasicSR's and MMEngine's registries.

    Args:
        kind (str | None): 'arch', 'model', 'loss', 'dataset' or 'metric'. None takes it from
            the defining module's file name (``*_arch.py`` -> 'arch', ...).
        name (str | None): Registered name; default ``obj.__name__``.
        aliases (Iterable[str]): Extra names for the same object (e.g. upstream names so
            upstream YAML files run unchanged).
    """
    if isinstance(kind, type) or callable(kind):
        raise TypeError('use @register() or @register("arch"), not bare @register')

    def decorator(obj):
        obj_kind = kind or _kind_from_module(obj.__module__)
        if obj_kind not in KINDS:
            raise ValueError(f'register(): unknown kind {obj_kind!r} for {_origin(obj)}; '
                             f'expected one of {sorted(KINDS)}')
        basicsr_registry, mmengine_registry = KINDS[obj_kind]
        names = [name or obj.__name__, *aliases]
        for each in names:  # check all first: a failed registration leaves nothing behind
            _check_free(obj, each, obj_kind, basicsr_registry, mmengine_registry)
        for each in names:
            basicsr_registry._obj_map[each] = obj
            mmengine_registry.register_module(name=each, module=obj, force=True)
            REGISTERED[(obj_kind, each)] = obj
        return obj

    return decorator


# --- looking names up ----------------------------------------------------------------------------------
def _typo_distance(a, b):
    """Edit distance counting a swap of neighbours as one edit (optimal string alignment)."""
    a, b = a.lower(), b.lower()
    previous2, previous = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def closest(name, candidates):
    """'; did you mean X?' for the likeliest intended name, or ''."""
    name, candidates = str(name), sorted({str(c) for c in candidates})
    if not candidates:
        return ''
    best = min(candidates, key=lambda c: (_typo_distance(name, c), abs(len(c) - len(name))))
    if _typo_distance(name, best) > max(2, len(name) // 3):
        matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        best = matches[0] if matches else None
    return f"; did you mean '{best}'?" if best else ''


def registry_get(registry, name):
    """BasicSR's lookup (including its ``_basicsr`` fallback) without its print; None when unknown. The membership
    test is BasicSR's, so that it activates ``ext`` first (see :mod:`ext`)."""
    for key in (name, f'{name}_basicsr'):
        if key in registry:
            return registry._obj_map[key]
    return None
