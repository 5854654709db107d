"""FFHQ inpainting data: the hashed split, the seed's box and blur, scripts/prepare_ffhq_inpaint.py
(folders, LMDB, unreadable files, atomic output) and FFHQInpaintDataset agreeing with it pixel for pixel."""
import os
import os.path as osp
import shutil

import cv2
import lmdb
import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from ext.data import inpaint_pairs
from ext.data.ffhq_inpaint_dataset import FFHQInpaintDataset
from helpers import REPO_ROOT, load_script, run_script, skimage_rgb

SCRIPT = osp.join(REPO_ROOT, 'scripts', 'prepare_ffhq_inpaint.py')


def read_png_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def lmdb_image(lmdb_path, key):
    with lmdb.open(str(lmdb_path), readonly=True, lock=False) as env, env.begin() as txn:
        data = txn.get(key.encode('ascii'))
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def as_uint8(tensor):
    return (tensor.numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)


@pytest.fixture(scope='module')
def face_folder(tmp_path_factory):
    """Faces shipped with scikit-image: LFW crops (25x25 grey, upscaled; one in a sub-folder), the
    astronaut (square) and coffee (not square), plus a broken file."""
    import skimage.data
    root = tmp_path_factory.mktemp('faces')
    lfw = skimage.data.lfw_subset()
    os.makedirs(root / 'batch01')
    for index in range(14):
        side = 40 if index == 13 else 80  # one face smaller than the largest output size
        face = cv2.resize((lfw[index] * 255).round().astype(np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(root / ('batch01' if index == 13 else '.') / f'{index:05d}.png'), face)
    cv2.imwrite(str(root / 'astronaut.png'), cv2.cvtColor(skimage_rgb('astronaut'), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / 'coffee.jpg'), cv2.cvtColor(skimage_rgb('coffee'), cv2.COLOR_RGB2BGR))
    (root / 'truncated.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
    return root


@pytest.fixture(scope='module')
def prepared(face_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp('prepared') / 'ffhq_inpaint'
    result = run_script([SCRIPT, '--input', str(face_folder), '--output', str(out), '--sizes', '64', '32',
                         '--test_fraction', '0.3', '--workers', '2'], cwd=str(face_folder))
    return out, result


# --- split, box, blur -------------------------------------------------------------------------

def test_split_is_a_stable_seeded_hash_near_90_10():
    names = [f'{i:05d}.png' for i in range(3000)]
    splits = {n: inpaint_pairs.split_of(n) for n in names}
    assert 0.08 < sum(s == 'test' for s in splits.values()) / len(names) < 0.12
    # added files move nothing; neither do folders or extensions; another seed is another split
    more = {n: inpaint_pairs.split_of(n) for n in names + [f'new_{i}.png' for i in range(500)]}
    assert all(more[n] == splits[n] for n in names)
    assert all(inpaint_pairs.split_of(f'images1024x1024/12000/{n[:-4]}.jpg') == splits[n] for n in names[:200])
    reseeded = [inpaint_pairs.split_of(n, seed=1) for n in names]
    assert sum(a != splits[n] for a, n in zip(reseeded, names)) > 200


def test_seed_box_and_random_boxes():
    assert inpaint_pairs.box_pixels(160, 160) == (80, 80, 128, 128)  # [0.5w:0.8w, 0.5h:0.8h]
    assert inpaint_pairs.box_pixels(384, 384) == (192, 192, 307, 307)
    assert inpaint_pairs.box_pixels(512, 256) == (256, 128, 409, 204)
    assert inpaint_pairs.box_mask(160, 160, (80, 80, 128, 128)).sum() == 48 * 48  # 9 % of the image
    positions = [inpaint_pairs.box_position(inpaint_pairs.box_generator(f'{i:05d}.png')) for i in range(200)]
    for size in (64, 160, 384):
        boxes = [inpaint_pairs.box_pixels(size, size, position=p) for p in positions]
        assert len(set(boxes)) > 100
        fixed = inpaint_pairs.box_pixels(size, size)
        for left, top, right, bottom in boxes:  # the seed box's pixel size, anywhere inside the image
            assert 0 <= left and right <= size and 0 <= top and bottom <= size
            assert (right - left, bottom - top) == (fixed[2] - fixed[0], fixed[3] - fixed[1])
        assert min(b[0] for b in boxes) < size * 0.1 and max(b[2] for b in boxes) > size * 0.9
    assert inpaint_pairs.box_position(inpaint_pairs.box_generator('00007.png')) == \
        inpaint_pairs.box_position(inpaint_pairs.box_generator('other/00007.jpg'))  # per file name
    with pytest.raises(ValueError, match='box_x'):
        inpaint_pairs.box_pixels(64, 64, (0.8, 0.5))


def test_blur_is_pil_gaussian_on_the_box_only():
    image = skimage_rgb('astronaut')[::4, ::4].copy()  # 128x128
    box = (40, 50, 90, 100)
    ref = inpaint_pairs.blur_box(image, box, 5)
    pil = Image.fromarray(image)
    expected = np.asarray(pil.crop(box).filter(ImageFilter.GaussianBlur(5)))  # the seed's crop/blur/paste
    np.testing.assert_array_equal(ref[50:100, 40:90], expected)
    outside = np.ones(image.shape[:2], bool)
    outside[50:100, 40:90] = False
    np.testing.assert_array_equal(ref[outside], image[outside])
    assert np.abs(ref[50:100, 40:90].astype(int) - image[50:100, 40:90]).mean() > 3
    # with context: exactly the box of a whole-image blur, though only a margin is blurred
    whole = np.asarray(pil.filter(ImageFilter.GaussianBlur(5)))
    for box in ((40, 50, 90, 100), (0, 0, 30, 20), (100, 90, 128, 128)):
        left, top, right, bottom = box
        context = inpaint_pairs.blur_box(image, box, 5, context=True)
        np.testing.assert_array_equal(context[top:bottom, left:right], whole[top:bottom, left:right])


# --- the script -------------------------------------------------------------------------------

def test_script_writes_sizes_split_pairs_and_meta_info(face_folder, prepared):
    out, result = prepared
    assert 'truncated.png' in result.stderr and 'unreadable' in result.stderr
    assert ("note: 1 images are smaller than 64 px and were upscaled (bicubic), e.g. ['batch01/00013.png']"
            in result.stderr)
    assert not [p for p in os.listdir(out.parent) if 'partial' in p]
    inputs = [f'{i:05d}.png' for i in range(13)] + ['batch01/00013.png', 'astronaut.png', 'coffee.jpg']
    expected = {rel: inpaint_pairs.split_of(rel, 0.3) for rel in inputs}
    assert {'train', 'test'} == set(expected.values())
    for size in (64, 32):
        listed = {}
        for split in ('train', 'test'):
            folder = out / str(size) / split
            with open(folder / 'meta_info.txt') as handle:
                lines = handle.read().splitlines()
            assert all(line.endswith(f' ({size},{size},3)') for line in lines)
            listed.update({line.split(' ')[0]: split for line in lines})
            boxes = {line.split(' ')[0]: tuple(int(v) for v in line.split(' ')[1:])
                     for line in (folder / 'boxes.txt').read_text().splitlines()}
            seed_box = inpaint_pairs.box_pixels(size, size)
            for line in lines:
                name = line.split(' ')[0]
                gt, ref = read_png_rgb(folder / 'gt' / name), read_png_rgb(folder / 'ref' / name)
                assert gt.shape == ref.shape == (size, size, 3)
                assert boxes[name[:-4]] == seed_box
                left, top, right, bottom = seed_box
                changed = np.argwhere((gt != ref).any(axis=2))
                assert changed.size and changed.min(0).tolist() >= [top, left]
                assert changed.max(0).tolist() <= [bottom - 1, right - 1]
        assert listed == {osp.splitext(rel)[0] + '.png': split for rel, split in expected.items()}
    coffee = read_png_rgb(out / '64' / expected['coffee.jpg'] / 'gt' / 'coffee.png')
    np.testing.assert_array_equal(coffee, inpaint_pairs.square_resize(read_png_rgb(face_folder / 'coffee.jpg'), 64))
    assert read_png_rgb(face_folder / 'coffee.jpg').shape[:2] == (400, 600)  # centre-cropped to a square


def test_script_reruns_identically_and_added_files_keep_their_split(face_folder, prepared, tmp_path):
    out, _ = prepared
    failed = run_script([SCRIPT, '--input', str(face_folder), '--output', str(out), '--sizes', '32'],
                        cwd=str(tmp_path), check=False)
    assert failed.returncode != 0 and 'already exists' in failed.stderr
    bigger = tmp_path / 'faces'
    shutil.copytree(face_folder, bigger)
    for index in range(3):
        cv2.imwrite(str(bigger / f'added{index}.png'), cv2.cvtColor(skimage_rgb('chelsea')[index * 50:][:64, :64],
                                                                     cv2.COLOR_RGB2BGR))
    again = tmp_path / 'again'
    run_script([SCRIPT, '--input', str(bigger), '--output', str(again), '--sizes', '32', '--test_fraction', '0.3',
                '--workers', '1'], cwd=str(tmp_path))
    everything = set()
    for split in ('train', 'test'):
        before, after = ({line.split(' ')[0] for line in (root / '32' / split / 'meta_info.txt').read_text().splitlines()}
                         for root in (out, again))
        everything |= after
        assert before <= after and all(name.startswith('added') for name in after - before)
        for name in before:
            assert (out / '32' / split / 'ref' / name).read_bytes() == \
                (again / '32' / split / 'ref' / name).read_bytes()
    assert len(everything) == 19 and 'batch01/00013.png' in everything


def test_script_rejects_bad_flags(face_folder, tmp_path, capsys):
    script = load_script(SCRIPT)  # main(argv) in this process: argparse's exit status 2 and message, no start-up
    for flags, message in ((['--sizes', '30'], 'multiples of 4'), (['--box_x', '0.9', '0.2'], 'box_x'),
                           (['--test_fraction', '2'], 'test_fraction')):
        with pytest.raises(SystemExit) as stop:
            script.main(['--input', str(face_folder), '--output', str(tmp_path / 'x'), *flags])
        stderr = capsys.readouterr().err
        assert stop.value.code == 2 and message in stderr, stderr
    assert not (tmp_path / 'x').exists()


# --- the dataset ------------------------------------------------------------------------------

def dataset(phase='val', **opt):
    return FFHQInpaintDataset({'name': 'faces', 'phase': phase, 'scale': 4, 'io_backend': {'type': 'disk'}, **opt})


def test_dataset_rebuilds_the_script_pairs_pixel_for_pixel(face_folder, prepared):
    out, _ = prepared
    for split in ('train', 'test'):
        folder = out / '64' / split
        data = dataset(dataroot_gt=str(folder / 'gt'))
        raw_data = dataset(dataroot_gt=str(face_folder), split=split, test_fraction=0.3, image_size=64)
        raw_index = {osp.splitext(osp.relpath(p, face_folder))[0]: i for i, p in enumerate(raw_data.paths)}
        assert len(data) == len((folder / 'meta_info.txt').read_text().splitlines()) > 0
        for index in range(len(data)):
            item = data[index]
            rel = osp.relpath(item['gt_path'], folder / 'gt')
            script_ref = read_png_rgb(folder / 'ref' / rel)
            np.testing.assert_array_equal(as_uint8(item['ref']), script_ref)
            # from the raw images (cropped and resized on the fly) the pairs are the same too
            raw_item = raw_data[raw_index[osp.splitext(rel)[0]]]
            np.testing.assert_array_equal(as_uint8(raw_item['gt']), read_png_rgb(folder / 'gt' / rel))
            np.testing.assert_array_equal(as_uint8(raw_item['ref']), script_ref)


def test_dataset_lmdb_random_boxes_match_the_script(face_folder, tmp_path):
    out = tmp_path / 'lmdb_out'
    run_script([SCRIPT, '--input', str(face_folder), '--output', str(out), '--sizes', '32', '--format', 'lmdb',
                '--random_box', '--box_seed', '3', '--blur_context', '--workers', '1'], cwd=str(tmp_path))
    folder = out / '32' / 'train'
    data = FFHQInpaintDataset({'name': 'faces', 'phase': 'val', 'scale': 4, 'dataroot_gt': str(folder / 'gt.lmdb'),
                               'io_backend': {'type': 'lmdb'}, 'random_box': True, 'box_seed': 3,
                               'blur_context': True})
    boxes = {line.split(' ')[0]: [int(v) for v in line.split(' ')[1:]]
             for line in (folder / 'boxes.txt').read_text().splitlines()}
    assert len(data) == len(boxes) and len({tuple(b) for b in boxes.values()}) > 1
    for index in range(len(data)):
        item = data[index]
        key = item['gt_path']
        assert item['box'].tolist() == boxes[key]
        np.testing.assert_array_equal(as_uint8(item['ref']), lmdb_image(folder / 'ref.lmdb', key))
        left, top, right, bottom = boxes[key]
        assert item['mask'][0, top:bottom, left:right].min() == 1
        assert item['mask'].sum() == (right - left) * (bottom - top)


def test_dataset_items_follow_the_seed(prepared):
    out, _ = prepared
    folder = out / '64' / 'train'
    item = dataset(dataroot_gt=str(folder / 'gt'))[0]
    ref = as_uint8(item['ref'])
    lq_expected = np.asarray(Image.fromarray(ref).resize((16, 16), Image.BICUBIC))  # the reference /4
    np.testing.assert_array_equal(as_uint8(item['lq']), lq_expected)
    up = np.asarray(Image.fromarray(lq_expected).resize((64, 64), Image.BICUBIC))
    np.testing.assert_array_equal(as_uint8(item['lq_up']), up)
    torch.testing.assert_close(item['ref_down_up'], item['lq_up'])
    assert item['mask'].shape == (1, 64, 64) and item['box'].tolist() == [32, 32, 51, 51]
    clean = dataset(dataroot_gt=str(folder / 'gt'), lq_source='gt')[0]
    np.testing.assert_array_equal(as_uint8(clean['lq']),
                                  np.asarray(Image.fromarray(as_uint8(item['gt'])).resize((16, 16), Image.BICUBIC)))


def test_dataset_is_deterministic_for_validation_and_random_for_training(prepared):
    out, _ = prepared
    root = str(out / '64' / 'train' / 'gt')
    val = dataset(dataroot_gt=root, random_box=True)
    assert all(torch.equal(val[i]['ref'], val[i]['ref']) and torch.equal(val[i]['box'], val[i]['box'])
               for i in range(3))
    train = dataset('train', dataroot_gt=root, random_box=True, use_flip=True)
    import random
    random.seed(0)
    boxes = [tuple(train[0]['box'].tolist()) for _ in range(8)]
    assert len(set(boxes)) > 4
    assert all(b[2] - b[0] == 19 and b[3] - b[1] == 19 for b in boxes)  # the seed box's size at 64 px
    fixed = dataset('train', dataroot_gt=root, use_flip=True)
    assert {tuple(fixed[0]['box'].tolist()) for _ in range(4)} == {(32, 32, 51, 51)}


def test_dataset_meta_info_and_option_errors(prepared, tmp_path):
    out, _ = prepared
    folder = out / '64' / 'train'
    names = (folder / 'meta_info.txt').read_text().splitlines()[:2]
    subset = tmp_path / 'subset.txt'
    subset.write_text('\n'.join(names) + '\n')
    data = dataset(dataroot_gt=str(folder / 'gt'), meta_info_file=str(subset))
    assert [osp.basename(p) for p in data.paths] == [n.split(' ')[0] for n in names]
    subset.write_text('missing.png (64,64,3)\n')
    with pytest.raises(FileNotFoundError, match='missing.png'):
        dataset(dataroot_gt=str(folder / 'gt'), meta_info_file=str(subset))
    with pytest.raises(ValueError, match='box_y'):
        dataset(dataroot_gt=str(folder / 'gt'), box_y=[0.5, 1.5])
    with pytest.raises(ValueError, match='image_size'):
        dataset(dataroot_gt=str(folder / 'gt'), image_size=30)
    with pytest.raises(ValueError, match='lq_source'):
        dataset(dataroot_gt=str(folder / 'gt'), lq_source='lr')
