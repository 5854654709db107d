"""The package's import graph: no cycles, and no import from a lower layer up to a higher one.

Read with ``ast`` (module-level and function-level imports alike), so a cycle hidden inside a function
counts too. :data:`LAYERS` is the architecture, bottom to top; a module may import its own layer and
those below it. ``ext/__init__.py`` (whose ``activate()`` applies the patches and imports every component)
stands with the entry points, at the top.
"""
import ast
import os
import os.path as osp

from helpers import REPO_ROOT

PACKAGE = osp.join(REPO_ROOT, 'ext')

# bottom to top: (layer, module prefixes)
LAYERS = (
    ('foundation', ('ext.errors', 'ext.paths', 'ext.import_hooks', 'ext.components', 'ext.utils', 'ext.registry')),
    ('host fixes', ('ext.compat', )),
    ('data', ('ext.data', )),
    ('engine', ('ext.engine', )),
    ('components', ('ext.archs', 'ext.losses', 'ext.metrics')),
    ('models', ('ext.models', )),
    ('options', ('ext.options', )),
    ('inference', ('ext.inference', )),
    ('entry points', ('ext.train', 'ext.test', 'ext.activation')),
)


def _modules():
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                module = osp.relpath(path, REPO_ROOT)[:-3].replace(os.sep, '.')
                found[module[:-len('.__init__')] if module.endswith('.__init__') else module] = path
    return found


def _imports(found):
    """module -> the package modules it imports (relative imports resolved; a name imported from a package
    counts as the submodule when one of that name exists)."""

    def resolve(name):
        while name and name not in found:
            name = name.rpartition('.')[0]
        return name or None

    edges = {}
    for module, path in found.items():
        package = module if path.endswith('__init__.py') else module.rpartition('.')[0]
        targets = set()
        for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    parts = package.split('.')[:len(package.split('.')) - node.level + 1]
                    base = '.'.join(parts + ([base] if base else []))
                names = {f'{base}.{alias.name}' for alias in node.names}
                targets.update(names)
                if not names & set(found):  # `from ext.x import name`: the module itself
                    targets.add(base)
        hits = {resolve(target) for target in targets if target.startswith('ext')}
        # a package's __init__ importing its own children is how a package is put together, not a dependency
        edges[module] = {hit for hit in hits if hit and hit != module and not (
            path.endswith('__init__.py') and hit.startswith(module + '.'))}
    return edges


def _layer(module):
    if module == 'ext':  # applies the patches and imports every component: with the entry points
        return len(LAYERS) - 1
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + '.') for prefix in prefixes):
            return index
    raise AssertionError(f'{module} is in no layer of tests/unit/test_import_graph.py: LAYERS; add it where it belongs')


def _cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle():
    assert _cycles(_imports(_modules())) == []


def test_no_module_imports_from_a_higher_layer():
    edges = _imports(_modules())
    upward = [f'{module} ({LAYERS[_layer(module)][0]}) -> {target} ({LAYERS[_layer(target)][0]})'
              for module, targets in sorted(edges.items()) for target in sorted(targets)
              if _layer(target) > _layer(module)]
    assert upward == []


def test_the_checks_see_a_cycle_and_an_upward_import():
    """Controls: a made-up graph with a cycle and an upward import fails both checks."""
    edges = {'ext.data.a': {'ext.data.b'}, 'ext.data.b': {'ext.data.a', 'ext.models.m'}, 'ext.models.m': set()}
    assert _cycles(edges) == [['ext.data.a', 'ext.data.b']]
    assert _layer('ext.models.m') > _layer('ext.data.b')


def test_no_module_imports_compat_for_its_side_effect():
    """``ext.activate()`` applies the patches once (ext/__init__.py); a bare ``from ext import compat`` elsewhere
    would hide that order again."""
    offenders = []
    for module, path in _modules().items():
        if module in ('ext', 'ext.engine.patching'):
            continue
        for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
            if isinstance(node, ast.ImportFrom) and node.module == 'ext' and any(
                    alias.name == 'compat' for alias in node.names):
                offenders.append(module)
    assert offenders == []
