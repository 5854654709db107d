"""Files written atomically get the permissions the umask gives any new file (mkstemp's are 0600).

A group sharing an experiment folder must be able to read checkpoints, states, images and data sets.
"""
import os
import os.path as osp
import stat
import sys

import pytest
import torch
import yaml

import ext  # noqa: F401
from ext.utils import atomic_io
from ext.utils.checkpoint import save_network_file
from helpers import REPO_ROOT, write_image_folder

sys.path.insert(0, osp.join(REPO_ROOT, 'scripts'))
import create_lmdb  # noqa: E402
import generate_meta_info  # noqa: E402
import generate_multiscale  # noqa: E402


@pytest.fixture(params=[0o022, 0o027, 0o002], ids=lambda mask: f'umask{mask:03o}')
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def assert_normal_files(folder, umask):
    """Every file under ``folder`` has mode 0666 & ~umask; no temporary file is left."""
    files = [osp.join(top, name) for top, _, names in os.walk(folder) for name in names]
    assert files
    for path in files:
        assert not osp.basename(path).startswith('.'), f'temporary file left: {path}'
        assert mode(path) == 0o666 & ~umask, f'{path}: {mode(path):o}, expected {0o666 & ~umask:o}'


def test_atomic_writers_follow_the_umask(tmp_path, umask):
    atomic_io.atomic_write_bytes(tmp_path / 'a.bin', b'x')
    atomic_io.atomic_write_text(tmp_path / 'b.txt', 'y')
    atomic_io.atomic_torch_save({'w': torch.ones(2)}, tmp_path / 'c.pth')
    save_network_file({'params': {'w': torch.ones(2)}}, tmp_path / 'net_g_1.pth')
    save_network_file({'params': {'w': torch.ones(2)}}, tmp_path / 'net_g_1.safetensors')
    # replacing a private file gives the new one the umask's permissions, not the old file's
    private = tmp_path / 'old.txt'
    private.write_text('old')
    private.chmod(0o600)
    atomic_io.atomic_write_text(private, 'new')
    assert private.read_text() == 'new'
    assert_normal_files(tmp_path, umask)
    # a failed write leaves nothing behind
    with pytest.raises(RuntimeError), atomic_io.atomic_open(tmp_path / 'd.bin') as handle:
        handle.write(b'partial')
        raise RuntimeError('killed mid-write')
    assert not osp.exists(tmp_path / 'd.bin') and not [n for n in os.listdir(tmp_path) if n.startswith('.')]


def test_training_checkpoints_and_states_follow_the_umask(tmp_path, umask):
    from basicsr.models import build_model
    with open(osp.join(REPO_ROOT, 'options', 'train_realesrnet_x4plus.yml')) as handle:
        opt = yaml.safe_load(handle)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=0, queue_size=4)
    opt['datasets']['train']['batch_size_per_gpu'] = 2
    opt['network_g'].update(num_feat=4, num_block=1, num_grow_ch=4)
    models, states = tmp_path / 'models', tmp_path / 'training_states'
    models.mkdir()
    states.mkdir()
    opt['path'] = {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                   'models': str(models), 'training_states': str(states)}
    model = build_model(opt)
    model.save(0, 2)  # net_g_2.pth (params + params_ema) and 2.state, through ext.compat's atomic writers (ext.engine.resume for the .state)
    assert sorted(os.listdir(models)) == ['net_g_2.pth'] and sorted(os.listdir(states)) == ['2.state']
    assert_normal_files(tmp_path, umask)


def test_data_scripts_outputs_follow_the_umask(tmp_path, umask):
    root = tmp_path / 'materials'
    write_image_folder(str(root / 'HR'), 2, 48, names=('brick', 'gravel'))
    generate_multiscale.main(['--input', str(root / 'HR'), '--output', str(root / 'multiscale'), '--workers', '1'])
    meta = str(root / 'meta_info' / 'meta_info.txt')
    generate_meta_info.main(['--input', str(root / 'HR'), str(root / 'multiscale'), '--root', str(root),
                             '--meta_info', meta, '--workers', '1'])
    lmdb_path = str(tmp_path / 'out' / 'multiscale.lmdb')
    create_lmdb.main(['--meta_info', meta, '--root', str(root), '--output', lmdb_path, '--workers', '1'])
    assert sorted(os.listdir(lmdb_path)) == ['data.mdb', 'lock.mdb', 'meta_info.txt']
    assert_normal_files(root / 'multiscale', umask)
    assert_normal_files(root / 'meta_info', umask)
    assert_normal_files(lmdb_path, umask)
    assert mode(lmdb_path) == 0o777 & ~umask  # the database folder, as any new folder
