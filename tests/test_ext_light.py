"""ext_light, the toolkit's torch-free half: its modules and the data scripts start without torch, BasicSR or
ext; a folder built through it replaces its target only when complete; a pool whose fork server preloads ext
gives what one process gives."""
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest

from ext_light.atomic_io import atomic_folder
from helpers import REPO_ROOT, run_script, subprocess_env, write_image_folder

LIGHT_MODULES = sorted(f'ext_light.{name[:-3]}' for name in os.listdir(osp.join(REPO_ROOT, 'ext_light'))
                       if name.endswith('.py') and name != '__init__.py')
DATA_SCRIPTS = ('create_lmdb', 'extract_subimages', 'filter_low_texture', 'generate_meta_info', 'generate_multiscale',
                'make_degraded_val', 'make_val_pairs', 'plot_curves', 'prepare_cufed', 'prepare_ffhq_inpaint',
                'prepare_sr_benchmark', 'run_demo')


def test_ext_light_and_the_data_scripts_start_without_torch():
    scripts = [osp.join(REPO_ROOT, 'scripts', f'{name}.py') for name in DATA_SCRIPTS]
    program = textwrap.dedent(f'''
        import contextlib, importlib, io, runpy, sys
        for name in {LIGHT_MODULES!r}:
            importlib.import_module(name)
        for script in {scripts!r}:
            sys.argv = [script, '--help']
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    runpy.run_path(script, run_name='__main__')
                except SystemExit:
                    pass
        print(sorted(name for name in ('torch', 'torchvision', 'basicsr', 'ext') if name in sys.modules))
    ''')
    result = subprocess.run([sys.executable, '-c', program], cwd=REPO_ROOT, env=subprocess_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(LIGHT_MODULES) >= 8 and result.stdout.strip().splitlines()[-1] == '[]'


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
