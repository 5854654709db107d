"""Bad training files (missing, zero-byte, truncated, not an image) and unusable pretrained networks:
named in the log once, replaced by deterministic draws, a clean stop when there are too many."""
import logging
import os
import os.path as osp

import pytest
import torch

from helpers import (TRAIN_PY, base_train_options, iteration_logs, read_logs, run_script, run_train,
                     write_options, write_paired_folders)


def spoil(gt_dir, lq_dir, names):
    """One bad file of each kind among ``names`` (GT or LQ side); returns {path: expected reason}."""
    zero, truncated, text, missing = (osp.join(folder, name) for folder, name in
                                      zip((gt_dir, lq_dir, gt_dir, lq_dir), names))
    open(zero, 'wb').close()
    with open(truncated, 'rb') as handle:
        content = handle.read()
    with open(truncated, 'wb') as handle:
        handle.write(content[:len(content) // 2])
    with open(text, 'w') as handle:
        handle.write('a text file with an image name\n')
    os.remove(missing)
    return {zero: 'empty file (0 bytes)', truncated: 'truncated PNG file', text: 'not a decodable image',
            missing: 'missing file'}


@pytest.fixture
def spoilt_pairs(tmp_path):
    """40 GT 32 px / LQ 8 px pairs listed in a meta-info file; 4 of them (10 %) have a bad file."""
    gt_dir, lq_dir = write_paired_folders(str(tmp_path / 'pairs'), 40, 32)
    names = sorted(os.listdir(gt_dir))
    meta = tmp_path / 'meta_info.txt'
    meta.write_text(''.join(f'{name}\n' for name in names))
    bad = spoil(gt_dir, lq_dir, [names[3], names[14], names[25], names[36]])
    return gt_dir, lq_dir, str(meta), bad


def paired_dataset(gt_dir, lq_dir, meta, **extra):
    from basicsr.data.paired_image_dataset import PairedImageDataset
    return PairedImageDataset({'phase': 'train', 'scale': 4, 'dataroot_gt': gt_dir, 'dataroot_lq': lq_dir,
                               'meta_info_file': meta, 'io_backend': {'type': 'disk'}, 'gt_size': 32,
                               'use_hflip': True, 'use_rot': True, **extra})


def test_basicsr_dataset_names_the_bad_file_and_why(spoilt_pairs):
    """BasicSR alone: AttributeError ('NoneType' ... 'astype') or OpenCV's !buf.empty(), no file name."""
    from ext.data.image_reader import BadImageFile
    gt_dir, lq_dir, meta, bad = spoilt_pairs
    dataset = paired_dataset(gt_dir, lq_dir, meta)
    for index in (3, 14, 25, 36):
        with pytest.raises(BadImageFile) as info:
            dataset[index]
        assert info.value.path in bad and bad[info.value.path] in str(info.value), str(info.value)
    assert dataset[0]['gt'].shape == (3, 32, 32)


def test_this_packages_datasets_say_empty_file(tmp_path):
    """A zero-byte file in a reference-SR dataset: "empty file", not OpenCV's !buf.empty() assertion."""
    from basicsr.utils import FileClient
    from ext.data.image_reader import BadImageFile
    from ext.data.ref_sr_util import read_rgb
    empty = tmp_path / 'face.png'
    empty.write_bytes(b'')
    with pytest.raises(BadImageFile, match=r'face\.png: empty file \(0 bytes\)'):
        read_rgb(FileClient('disk'), str(empty), 'gt')


def test_replacement_draws_are_deterministic_and_each_bad_file_logged_once(spoilt_pairs):
    from basicsr.utils import get_root_logger
    from ext.engine.bad_data import BadFileGuard, BadTrainingData
    from ext.engine.sampling import PerSampleSeededDataset
    from ext.engine.seeding import sample_seed
    gt_dir, lq_dir, meta, bad = spoilt_pairs
    draws = [(index, sample_seed(0, 0, 0, index)) for index in range(40)]
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    get_root_logger().addHandler(handler)
    try:
        first = PerSampleSeededDataset(paired_dataset(gt_dir, lq_dir, meta))
        once = [first[draw]['gt'] for draw in draws]
        again = [first[draw]['gt'] for draw in draws]  # the bad files are known now: skipped, not read
        fresh = PerSampleSeededDataset(paired_dataset(gt_dir, lq_dir, meta))
        reversed_order = [fresh[draw]['gt'] for draw in reversed(draws)][::-1]
    finally:
        get_root_logger().removeHandler(handler)
    for a, b, c in zip(once, again, reversed_order):
        assert torch.equal(a, b) and torch.equal(a, c)
    messages = [record.getMessage() for record in records]
    for path in bad:
        assert sum(path in message for message in messages) == 2, path  # once per run (two runs here)

    strict = PerSampleSeededDataset(paired_dataset(gt_dir, lq_dir, meta), BadFileGuard(40, max_share=0.05))
    with pytest.raises(BadTrainingData, match=r'3 of the 40 training samples cannot be read, more than '
                                              r'datasets.train.bad_file_max_share \(0.05\)'):
        for draw in draws:
            strict[draw]


def train_options(tmp_path, spoilt_pairs, name, **loader):
    gt_dir, lq_dir, meta, _ = spoilt_pairs
    opt = base_train_options(name, str(tmp_path), gt_dir, lq_dir, gt_size=32, total_iter=12)
    opt['datasets']['train'].update(meta_info_file=meta, batch_size_per_gpu=4, **loader)
    opt['logger']['save_checkpoint_freq'] = 100
    return opt


@pytest.mark.slow
def test_training_with_10_percent_bad_files_logs_each_once_and_too_many_stop_cleanly(tmp_path, spoilt_pairs):
    _, _, _, bad = spoilt_pairs
    opt = train_options(tmp_path, spoilt_pairs, 'bad_files')
    run_train(opt, str(tmp_path))  # 12 iterations of batch 4: every sample of the first epoch drawn
    log = read_logs(opt['path']['experiments_root'])
    assert max(iteration_logs(log)) == 12
    for path, reason in bad.items():
        assert log.count(f'Bad training file {path}: {reason}') == 1, path

    strict = train_options(tmp_path, spoilt_pairs, 'bad_files_strict', bad_file_max_share=0.05)
    result = run_train(strict, str(tmp_path), check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
    message = [line for line in result.stderr.splitlines() if line.startswith('error: training stopped: ')]
    assert len(message) == 1 and 'more than datasets.train.bad_file_max_share (0.05)' in message[0]
    assert sum(path in message[0] for path in bad) == 3


class RunsCodeWhenUnpickled:
    def __reduce__(self):
        return print, ('this pickle ran code',)


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['unsafe', 'missing'])
def test_unusable_pretrained_network_stops_like_an_option_error(tmp_path, kind):
    gt_dir, lq_dir = write_paired_folders(str(tmp_path / 'pairs'), 2, 32)
    opt = base_train_options(f'pretrained_{kind}', str(tmp_path), gt_dir, lq_dir, total_iter=1)
    path = tmp_path / 'net_g.pth'
    if kind == 'unsafe':
        torch.save({'params': {}, 'hook': RunsCodeWhenUnpickled()}, path)
    opt['path']['pretrain_network_g'] = str(path)
    yml = write_options(str(tmp_path / 'pretrained.yml'), opt)
    result = run_script([TRAIN_PY, '-opt', yml], cwd=str(tmp_path), check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1, result.stderr[-3000:]
    if kind == 'unsafe':
        assert errors[0].startswith(f'error: refused to load {path}: the file is a pickle')
    else:
        assert f"path.pretrain_network_g: '{path}' does not exist" in result.stderr
