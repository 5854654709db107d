"""Folders of images through an :class:`ext.inference.Upscaler`: the input list, the output names, the
references matched by name, the loop that keeps going past a bad file, and ``scripts/inference.py``'s
runner (:func:`run_cli`)."""
import os
import os.path as osp
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from ext.errors import InputError, UsageError
from ext.inference.images import IMAGE_EXTENSIONS, SIXTEEN_BIT_EXTENSIONS, read_image, read_reference, write_image
from ext.inference.tiling import TileOutOfMemoryError
from ext.inference.upscaler import load_upscaler


def list_inputs(path):
    """``[path]`` for a file, else the visible files of the folder ``path``, sorted; UsageError when none."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise UsageError(f'input {path} does not exist')
    files = sorted(osp.join(path, name) for name in os.listdir(path)
                   if not name.startswith('.') and osp.isfile(osp.join(path, name)))
    if not files:
        raise UsageError(f'input folder {path} is empty')
    return files


def find_reference(ref, input_path):
    """The reference of ``input_path``: ``ref`` itself when it is a file, else the file of the folder ``ref``
    with the same stem (InputError when there is none)."""
    if osp.isfile(ref):
        return ref
    stem = osp.splitext(osp.basename(input_path))[0]
    matches = sorted(name for name in os.listdir(ref) if osp.splitext(name)[0] == stem)
    if not matches:
        raise InputError(f'{input_path}: no reference named {stem}.* in {ref}')
    return osp.join(ref, matches[0])


def output_path(input_path, image, output, suffix='out', ext='auto'):
    """``output/<stem>_<suffix>.<ext>`` for ``image`` read from ``input_path``; ``ext='auto'`` keeps the input's
    format where it can hold the image (png for alpha, for 16 bits and for unknown extensions)."""
    stem, extension = osp.splitext(osp.basename(input_path))
    extension = extension[1:].lower() if ext == 'auto' else ext.lower().lstrip('.')
    if ext == 'auto':
        if image.ndim == 3 and image.shape[2] == 4:
            extension = 'png'  # keep the alpha channel
        elif extension not in IMAGE_EXTENSIONS:
            extension = 'png'
    if image.dtype == np.uint16 and extension not in SIXTEEN_BIT_EXTENSIONS:
        extension = 'png'  # jpg/webp/bmp cannot hold 16-bit samples
    name = f'{stem}_{suffix}' if suffix else stem
    return osp.join(output, f'{name}.{extension}')


def check_file_options(input, ext='auto', ref=None, outscale=None):
    """The input files, after checking the options about files (cheap: before any network is loaded)."""
    if outscale is not None and outscale <= 0:
        raise UsageError(f'--outscale must be > 0, got {outscale}')
    if ext != 'auto' and ext.lower().lstrip('.') not in IMAGE_EXTENSIONS:
        raise UsageError(f'--ext {ext}: expected auto or one of {", ".join(IMAGE_EXTENSIONS)}')
    if ref and not osp.exists(ref):
        raise UsageError(f'--ref {ref} does not exist')
    return list_inputs(input)


def upscale_paths(upscaler, input, output='results', suffix='out', ext='auto', ref=None, alpha_upsampler='network',
                  outscale=None, color_fix=None):
    """Upscale an image file or every file of a folder into ``output``; returns ``(written, failures)``.

    A file that fails (not an image, out of memory on a tile even after the retries with smaller tiles, no
    reference, a failed write) is reported by name and skipped; reading the next image and writing the
    previous one overlap the network's work. ``color_fix`` overrides the upscaler's (``none``, ``wavelet``,
    ``adain``).
    """
    inputs = check_file_options(input, ext, ref, outscale)
    if upscaler.takes_reference and not ref:
        raise UsageError(f'{type(upscaler.net).__name__} is reference-based: pass --ref (an image or a folder)')
    if ref and not upscaler.takes_reference:
        raise UsageError(f'--ref given, but {type(upscaler.net).__name__}.forward takes no reference')
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as error:
        raise UsageError(f'cannot create the output folder {output}: {error.strerror or error}') from None
    tiler = upscaler.tiler
    pad = f', tile_pad {tiler.tile_pad} ({upscaler.tile_pad_source})' if tiler.tile else ''
    fix = color_fix or upscaler.color_fix
    tqdm.write(f'{upscaler.description}: x{upscaler.scale}, tile {tiler.tile or "off"}{pad}, device {tiler.device}, '
               + (f'color fix {fix}, ' if fix != 'none' else '') + f'{len(inputs)} input(s)', file=sys.stderr)
    failures, written = [], []
    references = {}

    def reference_for(path):
        ref_path = find_reference(ref, path)
        if ref_path not in references:
            references.clear()  # keep one reference tensor at a time
            references[ref_path] = read_reference(ref_path, upscaler.scale)
        return references[ref_path]

    def finish(future, path, target):
        try:
            written.append(future.result())
        except InputError as error:
            failures.append((path, str(error)))
            bar.write(f'FAILED {error}', file=sys.stderr)
        except OSError as error:  # e.g. a full disk: the temporary file is removed, nothing half-written stays
            message = f'{path}: cannot write {target}: {error.strerror or error}'
            failures.append((path, message))
            bar.write(f'FAILED {message}', file=sys.stderr)

    start = time.time()
    with ThreadPoolExecutor(max_workers=2) as pool, tqdm(total=len(inputs), unit='img', file=sys.stderr) as bar:
        def tile_progress(done, total):
            if total > 1:
                bar.set_postfix_str(f'tile {done}/{total}', refresh=False)

        next_read = pool.submit(read_image, inputs[0])
        pending_write = None
        for index, path in enumerate(inputs):
            current = next_read
            next_read = pool.submit(read_image, inputs[index + 1]) if index + 1 < len(inputs) else None
            bar.set_description(osp.basename(path)[-30:])
            try:
                image = current.result()
                target = output_path(path, image, output, suffix, ext)
                if osp.abspath(target) == osp.abspath(path):
                    raise InputError(f'{path}: the output would overwrite the input; set --suffix or -o')
                result = upscaler.upscale(image, ref=reference_for(path) if ref else None, outscale=outscale,
                                          alpha_upsampler=alpha_upsampler, progress=tile_progress,
                                          color_fix=color_fix)
            except (InputError, TileOutOfMemoryError) as error:
                message = str(error) if isinstance(error, InputError) else f'{path}: {error}'
                failures.append((path, message))
                bar.write(f'FAILED {message}', file=sys.stderr)
                bar.update(1)
                continue
            except UsageError:
                raise
            except Exception as error:
                raise RuntimeError(f'{path}: {type(error).__name__}: {error}') from error
            if pending_write is not None:
                finish(*pending_write)
            pending_write = (pool.submit(write_image, target, result), path, target)
            bar.update(1)
        if pending_write is not None:
            finish(*pending_write)
    tqdm.write(f'{len(written)} written to {output} in {time.time() - start:.1f}s'
               + (f', {len(failures)} failed:' if failures else ''), file=sys.stderr)
    for _, message in failures:
        tqdm.write(f'  {message}', file=sys.stderr)
    return written, failures


def run_cli(args, prog='inference.py'):
    """What ``scripts/inference.py`` does with its parsed arguments; returns the exit status (0, 1 or 2)."""
    try:
        tile_pad = args.tile_pad if args.tile_pad == 'auto' else int(args.tile_pad)
    except ValueError:
        print(f'{prog}: error: --tile_pad must be an integer or auto, got {args.tile_pad}', file=sys.stderr)
        return 2
    try:
        check_file_options(args.input, args.ext, args.ref, args.outscale)
        upscaler = load_upscaler(args.model_path, opt=args.opt, arch=args.arch,
                                 arch_args=args.arch_args if args.arch else None, param_key=args.param_key,
                                 scale=args.scale, tile=args.tile, tile_pad=tile_pad, pre_pad=args.pre_pad,
                                 size_multiple=args.size_multiple, device=args.device, fp16=args.fp16,
                                 self_ensemble=args.self_ensemble, precision=args.precision,
                                 channels_last=args.channels_last, color_fix=args.color_fix)
        _, failures = upscale_paths(upscaler, args.input, args.output, suffix=args.suffix, ext=args.ext,
                                    ref=args.ref, alpha_upsampler=args.alpha_upsampler, outscale=args.outscale)
    except UsageError as error:
        print(f'{prog}: error: {error}', file=sys.stderr)
        return 2
    return 1 if failures else 0
