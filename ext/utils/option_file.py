"""Option files read without running code: YAML's safe subset, BasicSR's ordered mappings and ``!!float``.

BasicSR 1.4.2 reads option files with PyYAML's full ``Loader``, so a downloaded YAML holding
``!!python/object/apply:os.system [...]`` runs that command before anything is checked, and its
``--force_yml key=value`` builds Python source from the key (``exec``) and ``eval``s list values. Here
an option file is read with a safe loader (mappings as ``OrderedDict``, as BasicSR's; ``!!float 2e-4``
as a float), a tag that would construct a Python object is an :class:`~ext.errors.OptionError` naming
the file, the line and the tag, and ``--force_yml`` entries are parsed as data.
"""
import contextlib
import re
from collections import OrderedDict

import yaml

from ext.errors import OptionError

_FORCED_KEY = re.compile(r'^[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)*$')
_INT = re.compile(r'[-+]?\d+')
_FLOAT = re.compile(r'[-+]?(\d+\.\d*|\.\d+|\d+(?=[eE]))([eE][-+]?\d+)?')


class OptionFileLoader(yaml.SafeLoader):
    """PyYAML's safe loader with mappings as ``OrderedDict`` (what BasicSR's loader gives), and the
    ``--force_yml`` entries of the command line applied to the document it loads (:meth:`overrides`)."""

    forced = ()  # [(keys, value)] applied to the next documents, set by :meth:`overrides`

    @classmethod
    @contextlib.contextmanager
    def overrides(cls, forced):
        """Apply ``forced`` (from :func:`parse_forced_options`) to every document loaded in the block."""
        previous, cls.forced = cls.forced, tuple(forced)
        try:
            yield
        finally:
            cls.forced = previous

    def get_single_data(self):
        data = super().get_single_data()
        for keys, value in self.forced:
            apply_forced_option(data, keys, value)
        return data


OptionFileLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 lambda loader, node: OrderedDict(loader.construct_pairs(node)))


def yaml_error(path, error):
    """The one-line :class:`OptionError` for a ``yaml.YAMLError`` met reading ``path``: a tag that
    :class:`OptionFileLoader` refuses (it would construct a Python object), or text that is not YAML."""
    mark = getattr(error, 'problem_mark', None) or getattr(error, 'context_mark', None)
    where = f'{path}:{mark.line + 1}' if mark is not None else str(path)
    if isinstance(error, yaml.constructor.ConstructorError):
        found = re.search(r"tag '([^']+)'", str(error.problem or ''))
        tag = found.group(1) if found else error.problem
        return OptionError(f'{where}: the tag {tag} is not allowed in an option file: it would construct a Python '
                           'object (run code); option files hold plain values (numbers, strings, lists, mappings, '
                           '!!float)')
    problem = getattr(error, 'problem', None) or str(error).splitlines()[0]
    return OptionError(f'{where}: not a valid YAML option file ({problem})')


def load_option_text(text, path='<options>'):
    """The document of ``text`` (an ``OrderedDict``); an :class:`OptionError` for a tag that would run code or
    for text that is not YAML."""
    try:
        return yaml.load(text, Loader=OptionFileLoader)
    except yaml.YAMLError as error:
        raise yaml_error(path, error) from None


def read_option_file(path):
    """The options of the YAML file ``path`` (see :func:`load_option_text`)."""
    try:
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
    except OSError as error:
        raise OptionError(f'{path}: cannot read the option file ({error.strerror or error})') from None
    return load_option_text(text, path)


def _forced_value(text):
    """BasicSR's rules for a ``--force_yml`` value (``~``/``none``, ``true``/``false``, ``!!float x``, numbers,
    ``[lists]``), read as YAML data instead of ``eval``; negative numbers and ``2e-4`` are numbers too."""
    if text == '~' or text.lower() == 'none':
        return None
    if text.lower() in ('true', 'false'):
        return text.lower() == 'true'
    if text.startswith('!!float'):
        return float(text[len('!!float'):])
    if text.startswith('['):
        return load_option_text(text, '--force_yml')
    if _INT.fullmatch(text):
        return int(text)
    return float(text) if _FLOAT.fullmatch(text) else text


def parse_forced_options(entries):
    """``[(keys, value)]`` of BasicSR's ``--force_yml`` entries (``train:total_iter=1000``), without ``exec``;
    a malformed entry is an :class:`OptionError`."""
    forced = []
    for entry in entries or ():
        keys, separator, value = entry.partition('=')
        keys, value = keys.strip(), value.strip()
        if not separator or not _FORCED_KEY.match(keys):
            raise OptionError(f"--force_yml {entry!r}: expected key[:subkey...]=value with keys of letters, digits, "
                              "'_', '-' or '.' (e.g. train:total_iter=1000)")
        forced.append((keys.split(':'), _forced_value(value)))
    return forced


def apply_forced_option(opt, keys, value):
    """``opt[k1][k2]... = value``; like BasicSR, only keys that exist (or a new last key) are accepted."""
    target = opt
    for depth, key in enumerate(keys[:-1]):
        if not isinstance(target, dict) or key not in target:
            raise OptionError(f"--force_yml {':'.join(keys)}: the option file has no {':'.join(keys[:depth + 1])}")
        target = target[key]
    if not isinstance(target, dict):
        raise OptionError(f"--force_yml {':'.join(keys)}: {':'.join(keys[:-1])} is not a mapping")
    target[keys[-1]] = value
