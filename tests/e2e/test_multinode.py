"""More than one machine: two "nodes" of one process each on this machine, started as a cluster would start
them (torchrun --nnodes 2 --node_rank 0/1 with a shared rendezvous, and SLURM's launcher), on gloo."""
import os
import os.path as osp
import subprocess

import pytest
import torch

from helpers import PYTHON, free_port, subprocess_env, write_options, write_paired_folders
from test_train import FAULT_DRIVER, esrgan_options, load, max_difference


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp('photos')
    return {'train': write_paired_folders(str(root / 'train'), 8, 64, seed=0)}


def _options(name, workdir, photos):
    opt = esrgan_options(name, workdir, photos, total_iter=6, val=False)
    opt['logger']['save_checkpoint_freq'] = 3  # 8 photos, batch 2, 2 ranks: 2 iterations per epoch
    return opt


def _two_nodes(yml, workdir, *driver_args):
    """Start node 0 and node 1 (one process each) against one rendezvous; their exit statuses and outputs."""
    port = free_port()
    nodes = [subprocess.Popen(
        [PYTHON, '-m', 'torch.distributed.run', '--nnodes=2', f'--node_rank={rank}', '--nproc_per_node=1',
         '--master_addr=127.0.0.1', f'--master_port={port}', FAULT_DRIVER, *driver_args, '-opt', yml,
         '--launcher', 'pytorch'], cwd=workdir, env=subprocess_env({'OMP_NUM_THREADS': '1'}),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    return [node.returncode for node in nodes], outputs


@pytest.mark.slow(30)
def test_two_nodes_keep_parameters_equal_and_resume_exactly_after_a_kill(photos, tmp_path):
    runs = {}
    for name, fault in (('uninterrupted', ()), ('killed', ('--kill-after-state', '3'))):
        workdir = tmp_path / name
        workdir.mkdir()
        dump = workdir / 'dump'
        dump.mkdir()
        opt = _options(name, str(workdir), photos)
        yml = write_options(str(workdir / f'{name}.yml'), opt)
        codes, outputs = _two_nodes(yml, str(workdir), '--dump-params', str(dump), *fault)
        if fault:
            assert all(code != 0 for code in codes), outputs  # every process of both nodes killed
            codes, outputs = _two_nodes(yml, str(workdir), '--dump-params', str(dump), '--auto_resume')
            assert 'Resuming training from epoch: 1, iter: 3' in outputs[0] + outputs[1]
        assert codes == [0, 0], outputs
        assert max_difference(load(dump / 'rank0_iter6.pth'), load(dump / 'rank1_iter6.pth')) == 0
        runs[name] = load(osp.join(opt['path']['experiments_root'], 'models', 'net_g_latest.pth'))
    for key in ('params', 'params_ema'):
        assert max_difference(runs['killed'][key], runs['uninterrupted'][key]) == 0, key


def test_slurm_launcher_runs_on_cpus_with_gloo(photos, tmp_path, monkeypatch):
    """BasicSR's SLURM start-up divides by torch.cuda.device_count() (ZeroDivisionError without GPUs) and uses
    NCCL; srun's environment is faked here, with an scontrol that names this machine as the first host."""
    from basicsr.utils import dist_util
    from ext.engine.patching import original
    if torch.cuda.is_available():
        pytest.skip('checks the CPU-only path')
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    scontrol = bin_dir / 'scontrol'
    scontrol.write_text('#!/bin/sh\necho 127.0.0.1\necho 127.0.0.2\n')
    scontrol.chmod(0o755)
    port = free_port()
    slurm = {'SLURM_NTASKS': '2', 'SLURM_NODELIST': 'node[1-2]', 'SLURM_LOCALID': '0',
             'PATH': f'{bin_dir}{os.pathsep}{os.environ["PATH"]}'}
    monkeypatch.setenv('SLURM_PROCID', '0')
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ZeroDivisionError):
        original(dist_util, '_init_dist_slurm')('nccl', port=port)

    opt = esrgan_options('slurm', str(tmp_path), photos, total_iter=2, val=False)
    opt['dist_params']['port'] = port
    yml = write_options(str(tmp_path / 'slurm.yml'), opt)
    dump = tmp_path / 'dump'
    dump.mkdir()
    tasks = [subprocess.Popen([PYTHON, FAULT_DRIVER, '--dump-params', str(dump), '-opt', yml, '--launcher', 'slurm'],
                              cwd=str(tmp_path), env=subprocess_env({**slurm, 'SLURM_PROCID': str(rank),
                                                                     'OMP_NUM_THREADS': '1'}),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    outputs = [task.communicate(timeout=300)[0] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs
    assert 'DistributedDataParallel' in outputs[0]
    assert max_difference(load(dump / 'rank0_iter2.pth'), load(dump / 'rank1_iter2.pth')) == 0
