"""The material data scripts on tiny real images (scikit-image), each with a corrupt file among its inputs."""
import os
import os.path as osp
import sys

import cv2
import numpy as np
import pytest

from helpers import REPO_ROOT, run_script, skimage_rgb, write_image_folder

SCRIPTS = osp.join(REPO_ROOT, 'scripts')
sys.path.insert(0, SCRIPTS)

import create_lmdb  # noqa: E402
import extract_subimages  # noqa: E402
import filter_low_texture  # noqa: E402
import generate_meta_info  # noqa: E402
import generate_multiscale  # noqa: E402
import make_val_pairs  # noqa: E402
import plot_curves  # noqa: E402

ALL_SCRIPTS = ('generate_multiscale', 'generate_meta_info', 'filter_low_texture', 'create_lmdb', 'extract_subimages',
               'make_val_pairs', 'plot_curves', 'run_demo')
FLAT_NAME = 'flat swatch.v2.png'  # a space and a dot: both break BasicSR's meta_info parsing


@pytest.fixture(scope='module')
def material_root(tmp_path_factory):
    """``HR/`` with 4 real 64 px crops, a sub-folder JPEG, a one-coloured swatch and a corrupt file."""
    root = str(tmp_path_factory.mktemp('materials'))
    hr = osp.join(root, 'HR')
    write_image_folder(hr, 4, 64, names=('brick', 'gravel', 'astronaut', 'grass'))
    os.makedirs(osp.join(hr, 'fabrics'))
    cv2.imwrite(osp.join(hr, 'fabrics', 'chelsea.jpg'), cv2.cvtColor(skimage_rgb('chelsea')[:60, :90], cv2.COLOR_RGB2BGR))
    cv2.imwrite(osp.join(hr, FLAT_NAME), np.full((48, 72, 3), (40, 120, 200), np.uint8))
    with open(osp.join(hr, 'corrupt.png'), 'wb') as handle:
        handle.write(b'\x89PNG\r\n\x1a\n' + b'\x00' * 40)
    return root


def _multiscale(material_root, workers='1'):
    out = osp.join(material_root, 'multiscale')
    if not osp.isdir(out):
        generate_multiscale.main(['--input', osp.join(material_root, 'HR'), '--output', out, '--workers', workers])
    return out


def _meta(material_root):
    path = osp.join(material_root, 'meta_info', 'meta_info_multiscale.txt')
    if not osp.isfile(path):
        _multiscale(material_root)
        generate_meta_info.main(['--input', osp.join(material_root, 'HR'), osp.join(material_root, 'multiscale'),
                                 '--root', material_root, '--meta_info', path, '--check', '--workers', '1'])
    return path


def test_every_script_has_help(capsys):
    import importlib
    for name in ALL_SCRIPTS:  # in-process; test_generate_multiscale_custom_scales... runs one as a real CLI
        with pytest.raises(SystemExit) as exited:
            importlib.import_module(name).parse_args(['--help'])
        out = capsys.readouterr().out
        assert exited.value.code == 0 and out.startswith('usage:'), name
        assert name == 'plot_curves' or '--workers' in out, name


def test_generate_multiscale_upstream_defaults_and_unreadable(material_root, capsys):
    out = _multiscale(material_root)
    err = capsys.readouterr().err
    assert 'corrupt.png' in err and '1 unreadable files skipped' in err
    assert not any('corrupt' in name for name in os.listdir(out))
    # 64x64 brick: int(64 * s) for 0.75, 0.5, 1/3; its shortest-edge-400 copy would enlarge it: skipped
    sizes = [cv2.imread(osp.join(out, f'0000T{i}.png')).shape[:2] for i in range(3)]
    assert sizes == [(48, 48), (32, 32), (21, 21)] and not osp.exists(osp.join(out, '0000T3.png'))
    assert not [name for name in os.listdir(out) if name.endswith('T3.png')]
    # every skipped copy is reported, by file
    assert '6 copies skipped (pass --allow_upscale' in err
    assert 'fabrics/chelsea.jpg T3: 600x400 would enlarge the 90x60 original' in err
    assert cv2.imread(osp.join(out, 'flat swatch.v2T1.png')).shape[:2] == (24, 36)


def test_generate_multiscale_allow_upscale_and_kept_as_is(material_root, tmp_path, capsys):
    hr = osp.join(material_root, 'HR')
    out = str(tmp_path / 'upscaled')
    generate_multiscale.main(['--input', hr, '--output', out, '--scales', '0.5', '--allow_upscale', '--workers', '1'])
    # upstream: the shortest edge is enlarged to 400; 90x60 jpeg in a sub-folder: mirrored, aspect kept, PNG
    assert cv2.imread(osp.join(out, '0000T1.png')).shape[:2] == (400, 400)
    assert cv2.imread(osp.join(out, 'fabrics', 'chelseaT1.png')).shape[:2] == (400, 600)
    assert 'copies skipped' not in capsys.readouterr().err
    # a copy as large as its original is the original's pixels, reported as kept as-is
    same = str(tmp_path / 'same')
    generate_multiscale.main(['--input', hr, '--output', same, '--scales', '--shortest_edge', '64', '--workers', '1'])
    err = capsys.readouterr().err
    assert '4 copies kept as-is' in err and '0000.png T0: the 64x64 original, unchanged' in err
    assert np.array_equal(cv2.imread(osp.join(same, '0000T0.png')), cv2.imread(osp.join(hr, '0000.png')))
    assert '2 copies skipped' in err and f'{FLAT_NAME} T0: 96x64 would enlarge the 72x48 original' in err


def test_generate_multiscale_custom_scales_parallel_cli_matches_serial(material_root, tmp_path):
    serial, parallel = str(tmp_path / 'serial'), str(tmp_path / 'parallel')
    args = ['--input', osp.join(material_root, 'HR'), '--scales', '0.5', '--shortest_edge', '0']
    generate_multiscale.main(args + ['--output', serial, '--workers', '1'])
    result = run_script([osp.join(SCRIPTS, 'generate_multiscale.py'), *args, '--output', parallel, '--workers', '2'],
                        cwd=str(tmp_path))
    assert 'corrupt.png' in result.stderr
    names = sorted(os.listdir(serial))
    assert names == sorted(os.listdir(parallel)) and all(name.endswith('T0.png') for name in names if '.' in name)
    for name in names:
        if name.endswith('.png'):
            assert open(osp.join(serial, name), 'rb').read() == open(osp.join(parallel, name), 'rb').read()
    assert not [name for name in os.listdir(parallel) if name.startswith('.')], 'temporary files left behind'


def test_generate_meta_info_several_inputs_and_check(material_root, capsys):
    meta = _meta(material_root)
    lines = open(meta).read().splitlines()
    assert 'corrupt.png' in capsys.readouterr().err
    assert lines == sorted(lines) and len(lines) == 6 + 6 * 3  # no T3: every original is below 400 px
    assert 'HR/0000.png' in lines and 'multiscale/fabrics/chelseaT2.png' in lines and f'HR/{FLAT_NAME}' in lines
    assert not any('corrupt' in line for line in lines)
    with pytest.raises(SystemExit):
        generate_meta_info.main(['--input', osp.join(material_root, 'HR'), '--root', material_root, material_root,
                                 '--meta_info', meta])


def test_filter_low_texture_drops_flat_images_with_contact_sheet(material_root, tmp_path, capsys):
    lines = open(_meta(material_root)).read().splitlines()
    meta = str(tmp_path / 'meta_info.txt')
    with open(meta, 'w') as handle:  # plus a listed file that went missing
        handle.write(''.join(f'{line}\n' for line in lines + ['HR/gone.png', 'HR/corrupt.png']))
    kept, dropped, sheet = str(tmp_path / 'kept.txt'), str(tmp_path / 'dropped.txt'), str(tmp_path / 'sheet.png')
    filter_low_texture.main(['--meta_info', meta, '--root', material_root, '--kept', kept, '--dropped', dropped,
                             '--contact_sheet', sheet, '--workers', '1'])
    err = capsys.readouterr().err
    assert 'gone.png' in err and 'corrupt.png' in err and '2 unreadable files left out' in err
    kept_lines = open(kept).read().splitlines()
    dropped_rows = [line.split('\t') for line in open(dropped).read().splitlines()]
    assert sorted(path for path, _ in dropped_rows) == sorted(
        [f'HR/{FLAT_NAME}'] + [f'multiscale/flat swatch.v2T{i}.png' for i in range(3)])
    assert all(float(score) < filter_low_texture.DEFAULT_THRESHOLD for _, score in dropped_rows)
    assert len(kept_lines) + len(dropped_rows) == len(lines) and 'HR/0001.png' in kept_lines
    contact = cv2.imread(sheet)
    assert contact.shape[0] >= filter_low_texture.THUMBNAIL and contact.shape[1] == 8 * filter_low_texture.THUMBNAIL
    # the first tile shows the swatch colour: this is a picture of the dropped images
    assert np.abs(contact[64, 64].astype(int) - (40, 120, 200)).max() <= 2
    # a threshold above everything drops everything; 0 drops nothing and removes a stale sheet
    filter_low_texture.main(['--meta_info', meta, '--root', material_root, '--kept', kept, '--dropped', dropped,
                             '--contact_sheet', sheet, '--threshold', '0', '--workers', '1'])
    assert open(dropped).read() == '' and not osp.exists(sheet) and len(open(kept).read().splitlines()) == len(lines)


def test_create_lmdb_basicsr_format_dotted_keys_and_no_overwrite(material_root, tmp_path, capsys):
    import ext  # noqa: F401  (BasicSR's readers, routed through the guarded one)
    from basicsr.utils import FileClient, imfrombytes

    meta = _meta(material_root)
    output = str(tmp_path / 'materials.lmdb')
    create_lmdb.main(['--meta_info', meta, '--root', material_root, '--output', output, '--workers', '1'])
    meta_lines = open(osp.join(output, 'meta_info.txt')).read().splitlines()
    assert len(meta_lines) == len(open(meta).read().splitlines())
    assert 'HR/0000.png (64,64,3) 1' in meta_lines
    assert 'HR/flat_swatch_v2.png (48,72,3) 1' in meta_lines
    client = FileClient('lmdb', db_paths=[output], client_keys=['gt'])
    for line in meta_lines:
        key = line.split('.')[0]  # exactly how BasicSR's datasets read the keys
        image = imfrombytes(client.get(key, 'gt'), float32=False)
        h, w, c = (int(v) for v in line.split(' (')[1].split(')')[0].split(','))
        assert image.shape == (h, w, c)
    source = cv2.imread(osp.join(material_root, 'multiscale', 'fabrics', 'chelseaT1.png'))
    assert np.array_equal(imfrombytes(client.get('multiscale/fabrics/chelseaT1', 'gt'), float32=False), source)

    with pytest.raises(SystemExit) as refused:
        create_lmdb.main(['--input', osp.join(material_root, 'HR'), '--output', output, '--workers', '1'])
    assert refused.value.code == 2 and len(open(osp.join(output, 'meta_info.txt')).read().splitlines()) == len(meta_lines)
    capsys.readouterr()
    create_lmdb.main(['--input', osp.join(material_root, 'HR'), '--output', output, '--overwrite', '--workers', '1'])
    replaced = open(osp.join(output, 'meta_info.txt')).read().splitlines()
    assert '0000.png (64,64,3) 1' in replaced and len(replaced) == 6 and 'corrupt.png' in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ['materials.lmdb']


def test_create_lmdb_map_size_from_data_and_atomic_on_failure(tmp_path, monkeypatch):
    folder = tmp_path / 'images'
    folder.mkdir()
    # BasicSR sizes the map from the first image (x10): a tiny flat first image then noise overflowed it
    cv2.imwrite(str(folder / 'a.png'), np.zeros((8, 8, 3), np.uint8))
    noise = np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)
    for index in range(3):
        cv2.imwrite(str(folder / f'b{index}.png'), noise)
    output = str(tmp_path / 'noise.lmdb')
    create_lmdb.main(['--input', str(folder), '--output', output, '--batch', '2', '--workers', '1'])
    assert len(open(osp.join(output, 'meta_info.txt')).read().splitlines()) == 4

    calls = []

    def failing_write(env, records):
        calls.append(len(records))
        raise KeyboardInterrupt  # e.g. Ctrl-C half way
    monkeypatch.setattr(create_lmdb, 'write_batch', failing_write)
    with pytest.raises(KeyboardInterrupt):
        create_lmdb.main(['--input', str(folder), '--output', output, '--overwrite', '--batch', '2', '--workers', '1'])
    assert calls and sorted(os.listdir(tmp_path)) == ['images', 'noise.lmdb']
    assert len(open(osp.join(output, 'meta_info.txt')).read().splitlines()) == 4  # the old database is intact


def test_create_lmdb_rejects_colliding_keys(tmp_path, capsys):
    folder = tmp_path / 'images'
    folder.mkdir()
    for name in ('oak.v2.png', 'oak_v2.png'):
        cv2.imwrite(str(folder / name), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SystemExit) as error:
        create_lmdb.main(['--input', str(folder), '--output', str(tmp_path / 'x.lmdb'), '--workers', '1'])
    assert 'oak.v2.png' in str(error.value) and 'oak_v2.png' in str(error.value)
    assert not osp.exists(tmp_path / 'x.lmdb')


def test_extract_subimages_windows_and_skips(tmp_path, capsys):
    src = tmp_path / 'src'
    src.mkdir()
    image = cv2.cvtColor(skimage_rgb('coffee')[:80, :100], cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(src / 'coffee.png'), image)
    cv2.imwrite(str(src / 'tiny.png'), image[:20, :20])
    (src / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not a jpeg')
    out = str(tmp_path / 'out')
    extract_subimages.main(['--input', str(src), '--output', out, '--crop_size', '48', '--step', '32',
                            '--thresh_size', '0', '--workers', '1'])
    err = capsys.readouterr().err
    assert 'tiny.png' in err and 'broken.jpg' in err
    # rows start at 0, 32 (80 - 80 = 0 left over); columns at 0, 32 and the edge-aligned 52
    names = sorted(os.listdir(out))
    assert names == [f'coffee_s{i:03d}.png' for i in range(1, 7)]
    assert np.array_equal(cv2.imread(osp.join(out, 'coffee_s003.png')), image[0:48, 52:100])
    assert np.array_equal(cv2.imread(osp.join(out, 'coffee_s004.png')), image[32:80, 0:48])
    with pytest.raises(SystemExit):  # refuses a non-empty output folder
        extract_subimages.main(['--input', str(src), '--output', out, '--crop_size', '48', '--workers', '1'])
    extract_subimages.main(['--input', str(src), '--output', out, '--crop_size', '48', '--step', '32',
                            '--thresh_size', '30', '--overwrite', '--workers', '1'])


def test_make_val_pairs_bicubic_x4(tmp_path, capsys):
    src = tmp_path / 'photos'
    src.mkdir()
    cv2.imwrite(str(src / 'rocket.jpg'), cv2.cvtColor(skimage_rgb('rocket')[:103, :130], cv2.COLOR_RGB2BGR))
    (src / 'truncated.jpg').write_bytes(open(src / 'rocket.jpg', 'rb').read()[:300])
    gt, lq = str(tmp_path / 'gt'), str(tmp_path / 'lq_x4')
    make_val_pairs.main(['--input', str(src), '--gt', gt, '--lq', lq, '--scale', '4', '--max_size', '96',
                         '--workers', '1'])
    assert 'truncated.jpg' in capsys.readouterr().err and sorted(os.listdir(gt)) == ['rocket.png']
    assert cv2.imread(osp.join(gt, 'rocket.png')).shape == (96, 96, 3)
    assert cv2.imread(osp.join(lq, 'rocket.png')).shape == (24, 24, 3)


BASICSR_LOG = """\
2024-01-01 10:00:00,000 INFO: Start training from epoch: 0, iter: 0
2024-01-01 10:00:01,000 INFO: [demo_..][epoch:  0, iter:       1, lr:(1.000e-04,)] [eta: 0:00:10, time (data): 0.500 (0.010)] l_g_pix: 2.0000e-01 l_g_gan: 7.0000e-01 l_d_real: 6.9000e-01 out_d_real: 1.0000e-02
2024-01-01 10:00:02,000 INFO: [demo_..][epoch:  0, iter:       2, lr:(1.000e-04,)] [eta: 0:00:09, time (data): 0.500 (0.010)] l_g_pix: 1.5000e-01 l_g_gan: 6.0000e-01 l_d_real: 6.5000e-01 out_d_real: 2.0000e-02
2024-01-01 10:00:02,500 INFO: Saving models and training states.
2024-01-01 10:00:03,000 INFO: Validation materials_val
\t # psnr: 21.5000\tBest: 21.5000 @ 2 iter
\t # ssim: 0.6000\tBest: 0.6000 @ 2 iter

2024-01-01 10:00:04,000 INFO: [demo_..][epoch:  1, iter:       4, lr:(5.000e-05,)] [eta: 0:00:01, time (data): 0.500 (0.010)] l_g_pix: 1.0000e-01 l_g_gan: 5.0000e-01 l_d_real: 6.0000e-01 out_d_real: 3.0000e-02
2024-01-01 10:00:05,000 INFO: Validation materials_val
\t # psnr: 22.2500\tBest: 22.2500 @ 4 iter
\t # ssim: 0.6500\tBest: 0.6500 @ 4 iter
"""


def test_plot_curves_from_basicsr_log(tmp_path):
    experiment = tmp_path / 'experiments' / 'demo'
    experiment.mkdir(parents=True)
    (experiment / 'train_demo_20240101_100000.log').write_text(BASICSR_LOG)
    series = plot_curves.read_logs([str(experiment / 'train_demo_20240101_100000.log')])
    assert series['losses/l_g_pix'] == {1: 0.2, 2: 0.15, 4: 0.1}
    assert series['metrics/materials_val/psnr'] == {2: 21.5, 4: 22.25}
    assert series['out_d_real'][4] == pytest.approx(0.03) and series['lr'][4] == pytest.approx(5e-5)
    plot_curves.main(['--input', str(experiment), '--smooth', '0.5'])
    for name in ('losses', 'metrics', 'other'):
        image = cv2.imread(str(experiment / 'plots' / f'{name}.png'))
        assert image is not None and image.shape[0] > 200


def test_plot_curves_from_tensorboard_events_of_a_resumed_run(tmp_path):
    from torch.utils.tensorboard import SummaryWriter
    log_dir = tmp_path / 'tb_logger' / 'demo'
    for start, values in ((1, [0.5, 0.4, 0.3, 0.2]), (3, [0.25, 0.1])):  # the second run resumed at iter 2
        writer = SummaryWriter(str(log_dir))
        for step, value in enumerate(values, start=start):
            writer.add_scalar('losses/l_g_pix', value, step)
            writer.add_scalar('metrics/val/psnr', 20 + step, step)
        writer.close()
    series = plot_curves.read_tensorboard(plot_curves.find_files([str(log_dir)])[0])
    assert series['losses/l_g_pix'] == pytest.approx({1: 0.5, 2: 0.4, 3: 0.25, 4: 0.1})
    out = str(tmp_path / 'plots')
    plot_curves.main(['--input', str(tmp_path / 'tb_logger'), '--output', out])
    assert sorted(os.listdir(out)) == ['losses.png', 'metrics.png']
