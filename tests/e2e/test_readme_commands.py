"""Every command of README.md, docs/**/*.md and datasets/README.md (bash blocks and inline `python ...` / `make ...`
spans) names an existing script, target or file, uses flags that script accepts (checked against its --help), names
option files that exist and validate, and every network a README/docs inference or export command builds from
--arch/--arch_args or -opt can be built. Links between the pages point at files and headings that exist."""
import glob
import json
import os.path as osp
import re
import shlex
import subprocess
import sys
import textwrap

import pytest

from helpers import REPO_ROOT, subprocess_env


def documents():
    """README.md, every docs/**/*.md and datasets/README.md, relative to the repository root."""
    pages = ['README.md', 'datasets/README.md']
    pages += sorted(osp.relpath(p, REPO_ROOT) for p in glob.glob(osp.join(REPO_ROOT, 'docs', '**', '*.md'),
                                                                  recursive=True))
    return [p for p in pages if osp.isfile(osp.join(REPO_ROOT, p))]


def _read(page):
    with open(osp.join(REPO_ROOT, page), encoding='utf-8') as handle:
        return handle.read()


def _command_lines(text):
    """Shell command lines of ``text``: its bash blocks (continuation lines joined, comments dropped) and its inline
    code spans that start with ``python`` or ``make``."""
    lines = []
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
        joined = re.sub(r'\\\n\s*', ' ', block)
        for line in joined.splitlines():
            line = line.split(' #')[0].strip()
            if line and not line.startswith('#'):
                lines.append(line)
    prose = re.sub(r'```.*?```', '', text, flags=re.S)
    spans = [span.strip() for span in re.findall(r'`((?:python|make) [^`\n]+)`', prose)]
    # a make span is targets and VAR=value words; anything else (`make demo: exit status 0`) is quoted output
    lines += [s for s in spans if s.startswith('python') or re.fullmatch(r'make( [\w.-]+(=\S+)?)+', s)]
    return lines


def readme_commands(pages=None):
    """(page, line, argv) for each shell command of the pages (default: every document)."""
    commands = []
    for page in pages or documents():
        for line in _command_lines(_read(page)):
            line = re.sub(r'\[([^\]]*)\]', r'\1', line)  # optional parts, e.g. [--overwrite]
            commands.append((page, line, shlex.split(line)))
    return commands


def script_of(argv):
    for token in argv:
        if token.endswith('.py') and ('/' in token):
            return token
    return None


def help_texts(scripts):
    """``--help`` output of each script, all run in one process (imports shared)."""
    program = textwrap.dedent('''
        import contextlib, io, json, runpy, sys
        sys.path.insert(0, {root!r})
        out = {{}}
        for script in {scripts!r}:
            buffer = io.StringIO()
            sys.argv = [script, '--help']
            with contextlib.redirect_stdout(buffer):
                try:
                    runpy.run_path(script, run_name='__main__')
                except SystemExit:
                    pass
            out[script] = buffer.getvalue()
        print(json.dumps(out))
    ''').format(root=REPO_ROOT, scripts=sorted(scripts))
    result = subprocess.run([sys.executable, '-c', program], cwd=REPO_ROOT, env=subprocess_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def option_files_named(commands):
    """{options/x.yml: first 'page: line' naming it} of every option file the commands name."""
    named = {}
    for page, line, argv in commands:
        for token in argv:
            if token.startswith('options/') and token.endswith(('.yml', '.yaml')):
                named.setdefault(token, f'{page}: {line}')
    return named


def test_every_documented_command_uses_existing_scripts_flags_and_files():
    commands = readme_commands()
    assert len(commands) > 60
    assert {page for page, _, _ in commands} >= {'README.md', 'docs/training.md', 'docs/inference.md', 'docs/data.md'}
    scripts = {script_of(argv) for _, _, argv in commands if script_of(argv)}
    scripts = {s for s in scripts if osp.isfile(osp.join(REPO_ROOT, s))}
    helps = help_texts(scripts)
    make_targets = set(re.findall(r'^([\w-]+):', open(osp.join(REPO_ROOT, 'Makefile')).read(), re.M))
    problems = []
    for page, line, argv in commands:
        where = f'{page}: {line}'
        if argv[0] == 'make':
            problems += [f'{where}: no make target {t}' for t in argv[1:] if '=' not in t and t not in make_targets]
            continue
        script = script_of(argv)
        if script is None:
            continue  # pip install -e . / cp ... : not a script of this repository
        if not osp.isfile(osp.join(REPO_ROOT, script)):
            problems.append(f'{where}: {script} does not exist')
            continue
        usage = helps[script]
        for token in argv[argv.index(script) + 1:]:
            flag = token.split('=')[0]
            if flag.startswith('-') and not re.match(r'-\d', flag) and not re.search(rf'(^|[\s,\[]){re.escape(flag)}\b',
                                                                                    usage):
                problems.append(f'{where}: {script} has no flag {flag}')
            if token.startswith('options/') and not osp.isfile(osp.join(REPO_ROOT, token)):
                problems.append(f'{where}: {token} does not exist')
    assert not problems, '\n'.join(problems)


def test_option_files_the_documents_name_validate(monkeypatch):
    """Every key known, every type registered, every argument taken. The files an option file points at (data,
    pretrained networks, VGG weights) are not part of a clean clone, so only their existence is not checked."""
    import yaml

    from ext import options
    from ext.utils.option_file import OptionFileLoader
    monkeypatch.setattr(options._Validator, 'existing_path', lambda self, key, value, hint='': None)
    monkeypatch.setattr(options._Validator, 'vgg_weights', lambda self, key, vgg_type: None)
    named = option_files_named(readme_commands())
    assert len(named) >= 15
    problems = []
    for option_file, where in sorted(named.items()):
        path = osp.join(REPO_ROOT, option_file)
        if not osp.isfile(path):
            problems.append(f'{where}: {option_file} does not exist')
            continue
        with open(path, encoding='utf-8') as handle:
            opt = yaml.load(handle, Loader=OptionFileLoader)
        opt = options.resolve_paths(opt, REPO_ROOT)
        opt.update(is_train=not osp.basename(option_file).startswith('test_'), auto_resume=False)
        try:
            options.validate_options(opt, source=option_file, root_path=REPO_ROOT, is_train=opt['is_train'])
        except options.OptionError as error:
            problems.append(f'{where}:\n{error}')
    assert not problems, '\n'.join(problems)


def test_networks_of_documented_inference_commands_build():
    import ext  # noqa: F401
    from ext.inference.loading import build_network, read_network_options
    built = 0
    for _, line, argv in readme_commands():
        if script_of(argv) not in ('scripts/inference.py', 'scripts/export_onnx.py'):
            continue
        if '--arch' in argv:
            args = json.loads(argv[argv.index('--arch_args') + 1]) if '--arch_args' in argv else {}
            build_network({'type': argv[argv.index('--arch') + 1], **args}, line)
            built += 1
        if '-opt' in argv:
            options = read_network_options(osp.join(REPO_ROOT, argv[argv.index('-opt') + 1]))
            build_network(options['network_g'], line)
            built += 1
    assert built >= 2


def slug(heading):
    """GitHub's anchor of a markdown heading."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(page):
    text = re.sub(r'```.*?```', '', _read(page), flags=re.S)
    return {slug(h) for h in re.findall(r'^#{1,6} (.+)$', text, re.M)}


def test_links_between_the_documents_point_at_existing_files_and_headings():
    problems = []
    for page in documents():
        text = re.sub(r'```.*?```', '', _read(page), flags=re.S)
        for target in re.findall(r'\]\(([^)\s]+)\)', text):
            if re.match(r'[a-z]+://', target):
                continue
            path, _, anchor = target.partition('#')
            resolved = osp.normpath(osp.join(osp.dirname(page), path)) if path else page
            if not osp.exists(osp.join(REPO_ROOT, resolved)):
                problems.append(f'{page}: link to {target}: {resolved} does not exist')
            elif anchor and resolved.endswith('.md') and anchor not in anchors(resolved):
                problems.append(f'{page}: link to {target}: no heading #{anchor} in {resolved}')
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('page', ['README.md'])
def test_the_readme_reads_in_ten_minutes(page):
    lines = _read(page).splitlines()
    assert len(lines) <= 250, len(lines)
