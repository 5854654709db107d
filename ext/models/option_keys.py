"""Which option keys a model reads, declared where they are read (not a component module).

Each class in a model's MRO declares, in its own body, the keys it reads itself: ``option_keys`` (top
level), ``train_option_keys`` (``train:``) and ``val_option_keys`` (``val:``); a model class lists the
policy objects it owns in ``policies`` (e.g. ``(TrainSpeed, EMASchedule)``), and each policy class declares
the keys it reads the same way. A model's keys are the union of all of these: nothing is listed twice.
"""

SECTIONS = ('option_keys', 'train_option_keys', 'val_option_keys')


def option_key_declarations(model_class, section):
    """``(declarer, keys)`` for every class of ``model_class``'s MRO and every policy it owns that declares
    keys of ``section`` (one of :data:`SECTIONS`), each policy once."""
    if section not in SECTIONS:
        raise ValueError(f'section must be one of {SECTIONS}, got {section!r}')
    seen = set()
    for klass in model_class.__mro__:
        if section in vars(klass):
            yield klass, frozenset(vars(klass)[section])
        for policy in vars(klass).get('policies', ()):
            if policy not in seen:
                seen.add(policy)
                yield policy, frozenset(getattr(policy, section, ()))


def declared_option_keys(model_class, section):
    """Every key of ``section`` that ``model_class`` reads: the union of its declarations."""
    keys = set()
    for _, own in option_key_declarations(model_class, section):
        keys |= own
    return frozenset(keys)


class OptionKeys(frozenset):
    """The option keys one model class reads itself (a class attribute named after its section).

    ``vars(Model)[section]`` is what the class declares; ``Model.<section>`` (read on the class or an
    instance) is every key the model reads, :func:`declared_option_keys`, which is what an option check
    needs.
    """

    def __set_name__(self, owner, name):
        if name not in SECTIONS:
            raise TypeError(f'OptionKeys is for the attributes {SECTIONS}, not {name!r}')
        self.section = name

    def __get__(self, instance, owner):
        return declared_option_keys(owner, self.section)
