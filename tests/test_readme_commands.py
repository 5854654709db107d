"""Every command of README.md's code blocks names an existing script, target or file, uses flags that script
accepts (checked against its --help), and every network a README inference/export command builds from
--arch/--arch_args or -opt can be built."""
import json
import os.path as osp
import re
import shlex
import subprocess
import sys
import textwrap

import pytest

from helpers import REPO_ROOT, subprocess_env

README = osp.join(REPO_ROOT, 'README.md')


def readme_commands():
    """(line, argv) for each shell command in the README's bash blocks, continuation lines joined."""
    text = open(README, encoding='utf-8').read()
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
        joined = re.sub(r'\\\n\s*', ' ', block)
        for line in joined.splitlines():
            line = line.split(' #')[0].strip()
            if not line or line.startswith('#'):
                continue
            line = re.sub(r'\[([^\]]*)\]', r'\1', line)  # optional parts, e.g. [--overwrite]
            commands.append((line, shlex.split(line)))
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


def test_every_readme_command_uses_existing_scripts_flags_and_files():
    commands = readme_commands()
    assert len(commands) > 30
    scripts = {script_of(argv) for _, argv in commands if script_of(argv)}
    helps = help_texts(scripts)
    make_targets = set(re.findall(r'^([\w-]+):', open(osp.join(REPO_ROOT, 'Makefile')).read(), re.M))
    problems = []
    for line, argv in commands:
        if argv[0] == 'make':
            problems += [f'{line}: no make target {t}' for t in argv[1:] if '=' not in t and t not in make_targets]
            continue
        script = script_of(argv)
        if script is None:
            continue  # pip install -e . / cp ... : not a script of this repository
        if not osp.isfile(osp.join(REPO_ROOT, script)):
            problems.append(f'{line}: {script} does not exist')
            continue
        usage = helps[script]
        for token in argv[argv.index(script) + 1:]:
            flag = token.split('=')[0]
            if flag.startswith('-') and not re.match(r'-\d', flag) and not re.search(rf'(^|[\s,\[]){re.escape(flag)}\b',
                                                                                    usage):
                problems.append(f'{line}: {script} has no flag {flag}')
            if token.startswith('options/') and not osp.isfile(osp.join(REPO_ROOT, token)):
                problems.append(f'{line}: {token} does not exist')
    assert not problems, '\n'.join(problems)


def test_networks_of_readme_inference_commands_build():
    import ext  # noqa: F401
    from ext.inference.loading import build_network, read_network_options
    built = 0
    for line, argv in readme_commands():
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
