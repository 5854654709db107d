"""Where and when a measurement was made: the context the benchmarks and the demo write beside their figures
(CPU model, cores, threads, load, versions, date, command, commit), so a figure in the docs can name them."""
import datetime
import os
import os.path as osp
import platform
import shlex
import subprocess
import sys


def now():
    """The local time with its UTC offset, to the second (ISO 8601)."""
    return datetime.datetime.now().astimezone().isoformat(timespec='seconds')


def machine(threads):
    """The CPU model (``/proc/cpuinfo``), cores, the threads a run used, the load average at the call and the
    Python, torch and system versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as handle:
            cpu = next((line.split(':', 1)[1].strip() for line in handle if line.startswith('model name')), cpu)
    except OSError:
        pass
    import torch
    return {'cpu': cpu, 'cores': os.cpu_count(), 'threads': threads,
            'load_average': list(os.getloadavg()) if hasattr(os, 'getloadavg') else None,
            'python': platform.python_version(), 'torch': torch.__version__, 'system': platform.platform()}


def command(root, argv=None):
    """This process's command line, the script relative to ``root``."""
    argv = list(sys.argv if argv is None else argv)
    script = osp.relpath(osp.abspath(argv[0]), root) if argv else ''
    return ' '.join(shlex.quote(a) for a in [script] + argv[1:])


def script_argv(script, argv=None):
    """The command line of a script's ``main(argv)``: the script's absolute path, then ``argv`` (default: this
    process's arguments), for :func:`record`."""
    return [osp.abspath(script)] + list(sys.argv[1:] if argv is None else argv)


def default_json(root, trial, trial_name, committed_name):
    """Where a benchmark writes its JSON when not told: a trial run (quick or smoke: figures not for the docs) to
    ``<root>/results/<trial_name>`` (ignored by git), a full run to the committed ``<root>/benchmarks/results/``."""
    return osp.join(root, 'results', trial_name) if trial else osp.join(root, 'benchmarks', 'results', committed_name)


def commit(root):
    """``{'commit': git HEAD of root, 'uncommitted_changes': [tracked files that differ from it]}`` (None values
    outside a git checkout)."""
    def git(*args):
        return subprocess.run(['git', *args], cwd=root, capture_output=True, text=True).stdout
    try:
        head = git('rev-parse', 'HEAD').strip() or None
        changed = [line[3:] for line in git('status', '--porcelain', '--untracked-files=no').splitlines()]
    except OSError:
        return {'commit': None, 'uncommitted_changes': None}
    return {'commit': head, 'uncommitted_changes': changed if head else None}


def record(root, threads, budget, argv=None):
    """The fields every results JSON carries: machine, date, command (``argv``, default this process's),
    commit, budget."""
    return {'machine': machine(threads), 'date': now(), 'command': command(root, argv), **commit(root),
            'budget': budget}
