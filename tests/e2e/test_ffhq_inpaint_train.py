"""TTSR inpainting trained through ext/train.py from the shipped FFHQ option files, shrunk to tiny
faces: the seed's Exp2-3 losses with masked metrics at validation, ext/test.py, and the
saturation guard stopping a run whose generator outputs white images."""
import copy
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch
import yaml

from helpers import (REPO_ROOT, TEST_PY, experiment_dir, free_port, iteration_logs, read_logs, run_script, run_train,
                     skimage_rgb, write_options)

pytestmark = pytest.mark.slow

SIZE = 32


def read_yaml(name):
    with open(osp.join(REPO_ROOT, 'options', name)) as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope='module')
def faces(tmp_path_factory):
    """Train and test folders of clean faces: scikit-image's LFW faces (25x25, grey) and the astronaut."""
    import skimage.data
    root = tmp_path_factory.mktemp('ffhq_inpaint')
    lfw = skimage.data.lfw_subset()
    for split, indices in (('train', range(6)), ('test', range(100, 102))):
        folder = root / split
        os.makedirs(folder)
        for index in indices:
            face = cv2.resize((lfw[index] * 255).round().astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(folder / f'{index:05d}.png'), face)
    astronaut = cv2.resize(skimage_rgb('astronaut')[20:220, 140:340], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(root / 'test' / 'astronaut.png'), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    return root


def tiny(opt, name, workdir, faces, total_iter):
    """The shipped option file on tiny faces and a tiny TTSR, every other setting kept."""
    opt = copy.deepcopy(opt)
    opt['name'] = name
    opt['num_gpu'] = 0
    opt['datasets']['train'].update(dataroot_gt=str(faces / 'train'), num_worker_per_gpu=0, batch_size_per_gpu=2)
    opt['datasets']['val'].update(dataroot_gt=str(faces / 'test'))
    opt['network_g'].update(mid_channels=8, num_blocks=[1, 1, 1, 1], search_memory_mb=16)
    if 'network_d' in opt:
        opt['network_d']['in_size'] = SIZE
    opt['path']['experiments_root'] = osp.join(workdir, 'experiments', name)
    opt['train'].update(total_iter=total_iter)
    opt['val']['val_freq'] = 2
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False)
    return opt






def metric_values(text, name):
    return [float(v) for v in re.findall(rf'# {name}: (-?[\d.]+|inf)', text)]


def test_exp2_3_options_train_validate_and_test(faces, tmp_path, vgg19_env):
    opt = tiny(read_yaml('train_ttsr_ffhq_inpaint_160.yml'), 'ffhq_inpaint_tiny', str(tmp_path), faces, total_iter=3)
    opt['train'].update(pixel_init_iters=2, box_pixel_weight=4.0)
    run_train(opt, str(tmp_path), env=vgg19_env)
    exp_dir = experiment_dir(opt, str(tmp_path))

    text = read_logs(exp_dir)
    logs = iteration_logs(text)
    assert set(logs) >= {1, 2, 3}
    for key in ('l_g_pix', 'l_pix_box', 'l_pix_rest', 'out_saturated'):
        assert f'{key}:' in logs[1], logs[1]
    assert 'l_g_gan' not in logs[2]  # still the L1 warm-up
    for key in ('l_g_percep', 'l_g_tpl', 'l_g_gan', 'l_d_real', 'l_d_gp'):  # the seed's four losses after it
        assert f'{key}:' in logs[3], (key, logs[3])
    # whole-image and masked metrics at validation, and a saturation report
    for name in ('psnr', 'ssim', 'psnr_box', 'psnr_rest', 'ssim_box', 'ssim_rest'):
        values = metric_values(text, name)
        assert values and all(np.isfinite(v) for v in values), name
    assert re.search(r'saturated output pixels [\d.]+%', text)
    assert osp.isfile(osp.join(exp_dir, 'visualization', 'astronaut', 'astronaut_2.png'))
    net_g = osp.join(exp_dir, 'models', 'net_g_2.pth')
    assert 'extractor.slice1.0.weight' in torch.load(net_g, weights_only=True)['params']

    # the test option file evaluates that network with the same metrics
    test_opt = read_yaml('test_ttsr_ffhq_inpaint.yml')
    test_opt['datasets']['test_1']['dataroot_gt'] = str(faces / 'test')
    test_opt['network_g'].update(mid_channels=8, num_blocks=[1, 1, 1, 1], search_memory_mb=16)
    test_opt['path'].update(pretrain_network_g=net_g, results_root=str(tmp_path / 'results'))
    test_opt['num_gpu'] = 0
    result = run_script([TEST_PY, '-opt', write_options(str(tmp_path / 'test.yml'), test_opt)], cwd=str(tmp_path))
    test_log = read_logs(str(tmp_path / 'results'))
    for name in ('psnr', 'psnr_box', 'psnr_rest', 'ssim_box', 'ssim_rest'):
        assert metric_values(test_log, name), (name, result.stdout[-2000:])
    assert osp.isfile(osp.join(tmp_path, 'results', 'visualization', test_opt['datasets']['test_1']['name'],
                               f"astronaut_{test_opt['name']}.png"))


def white_generator_options(faces, tmp_path, name, guard):
    """A generator whose last convolution is biased far above 1 gives white images (clamped, so the
    L1 gradient cannot bring it back, as the seed's epoch 3)."""
    opt = tiny(read_yaml('train_ttsr_ffhq_inpaint_384.yml'), name, str(tmp_path), faces, total_iter=6)
    opt['datasets']['train'].update(use_flip=False)
    opt['network_g']['load_pretrained_vgg'] = False
    opt['train']['saturation_guard'] = guard

    import ext  # noqa: F401
    from basicsr.archs import build_network
    net = build_network({k: v for k, v in opt['network_g'].items()})
    state = net.state_dict()
    last_bias = [k for k in state if k.startswith('merge_features') and k.endswith('bias')][-1]
    state[last_bias] = torch.full_like(state[last_bias], 50.0)
    white = str(tmp_path / 'white.pth')
    torch.save({'params': state}, white)
    opt['path']['pretrain_network_g'] = white
    return opt


def test_saturation_guard_stops_a_white_generator(faces, tmp_path):
    """The guard stops after the iteration that exhausts its patience, logs why, exits with status 3."""
    opt = white_generator_options(faces, tmp_path, 'ffhq_inpaint_white',
                                  {'action': 'stop', 'max_fraction': 0.5, 'tolerance': 0.004, 'patience': 2})
    result = run_train(opt, str(tmp_path), check=False)
    assert result.returncode == 3, result.stderr[-3000:]
    assert 'error: training stopped: OutputSaturationError: saturated outputs at iteration 2' in result.stderr
    assert 'Traceback' not in result.stderr
    text = read_logs(experiment_dir(opt, str(tmp_path)))
    assert 'Stopping: saturated outputs at iteration 2' in text  # patience 2: not at iteration 1
    assert float(re.search(r"out_saturated: ([\d.e+-]+)", iteration_logs(text)[1]).group(1)) > 0.9
    assert 3 not in iteration_logs(text)


def test_saturation_guard_at_rank_0_validation_stops_both_ddp_ranks(faces, tmp_path):
    """2-process gloo DDP: validation (and so its saturation check) runs on rank 0 only; its stop is
    agreed with rank 1 at the end of the iteration, both ranks stop after iteration 2 with status 3."""
    opt = white_generator_options(faces, tmp_path, 'ffhq_inpaint_white_ddp',
                                  {'action': 'stop', 'max_fraction': 0.5, 'tolerance': 0.004, 'patience': 100})
    yml = write_options(str(tmp_path / 'white_ddp.yml'), opt)
    result = run_script(['-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port()}',
                         osp.join(REPO_ROOT, 'ext', 'train.py'), '-opt', yml, '--launcher', 'pytorch'],
                        cwd=str(tmp_path), env={'OMP_NUM_THREADS': '1'}, check=False, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    exited = re.findall(r'rank\s*: (\d) \(local_rank: \d\)\s*exitcode\s*:\s*(\d+)', output)
    # the guard's exit status on whichever rank torchrun saw exit first (it SIGTERMs the other one, whose
    # "-15" the pattern skips); both ranks logging the agreed stop is checked below
    assert exited and all(code == '3' for _, code in exited), output[-4000:]
    stop = 'Stopping after iteration 2: rank 0: OutputSaturationError: saturated outputs at validation'
    assert output.count(stop) == 2  # logged by both ranks
    text = read_logs(experiment_dir(opt, str(tmp_path)))
    assert stop in text and 3 not in iteration_logs(text)
