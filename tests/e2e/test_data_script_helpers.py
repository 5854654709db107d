"""The data scripts' helpers in ext.utils: a folder built through atomic_folder replaces its target only when
complete; a pool whose fork server preloads ext gives what one process gives."""
import os
import os.path as osp

import pytest

from ext.utils.atomic_io import atomic_folder
from helpers import REPO_ROOT, run_script, write_image_folder


def _fill(folder, name, text):
    os.makedirs(folder)
    with open(osp.join(folder, name), 'w') as handle:
        handle.write(text)


def test_atomic_folder_replaces_its_target_only_with_a_complete_folder(tmp_path):
    target = tmp_path / 'data.lmdb'
    with atomic_folder(str(target)) as building:
        assert building == str(tmp_path / f'data.partial-{os.getpid()}.lmdb')
        _fill(building, 'a', 'first')
        assert not target.exists()
    assert os.listdir(target) == ['a']
    with pytest.raises(KeyboardInterrupt), atomic_folder(str(target)) as building:  # e.g. Ctrl-C half way
        _fill(building, 'b', 'second')
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ['data.lmdb'] and os.listdir(target) == ['a']
    with atomic_folder(str(target)) as building:
        _fill(building, 'b', 'second')
    assert os.listdir(tmp_path) == ['data.lmdb'] and os.listdir(target) == ['b']


def test_workers_forked_from_a_server_that_preloaded_ext_give_what_one_process_gives(tmp_path):
    """prepare_sr_benchmark's workers need the package's MATLAB bicubic (torch): its fork server imports it."""
    write_image_folder(str(tmp_path / 'raw'), 5, 50)
    prepare = osp.join(REPO_ROOT, 'scripts', 'prepare_sr_benchmark.py')
    for workers in ('1', '2'):
        run_script([prepare, '--input', str(tmp_path / 'raw'), '--output', str(tmp_path / workers), '--workers',
                    workers], cwd=str(tmp_path))
    for folder in ('HR', osp.join('LR_bicubic', 'X4')):
        names = sorted(os.listdir(tmp_path / '1' / folder))
        assert len(names) == 5 and sorted(os.listdir(tmp_path / '2' / folder)) == names
        for name in names:
            assert (tmp_path / '1' / folder / name).read_bytes() == (tmp_path / '2' / folder / name).read_bytes()


FORK_SERVER_PROBE = """
import operator, os, sys
from ext.utils.parallel import parallel_map
if __name__ == '__main__':  # the workers run this file again, as every script's workers do
    assert 'torch' not in sys.modules  # the data scripts' helpers are light
    for _ in range(2):  # two pools, one fork server
        servers = set(parallel_map(operator.call, [os.getppid] * 2, workers=2, desc='pids', preload=['torch']))
        assert len(servers) == 1 and os.getpid() not in servers
        server, = servers
        print('libtorch_cpu' in open(f'/proc/{server}/maps').read())
"""


def test_the_fork_server_imports_what_a_job_preloads_so_workers_do_not_import_it_again(tmp_path):
    """Python 3.11's fork server preloads neither ``__main__`` nor the parent's sys.path: by default every
    worker of every pool imported its heavy modules again (torch: seconds a pool). A job's ``preload`` (here
    torch) is imported once, by the workers' parent, the fork server; the parent script never imports it."""
    script = tmp_path / 'probe.py'
    script.write_text(FORK_SERVER_PROBE)
    result = run_script([str(script)], cwd=str(tmp_path), env={'PYTHONPATH': REPO_ROOT})
    assert result.stdout.split() == ['True', 'True'], result.stdout + result.stderr[-2000:]
