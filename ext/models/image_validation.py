"""One validation loop for the image-to-image models, with hooks for what a model adds (not a component).

BasicSR's ``SRModel.nondist_validation`` scores each validation image with ``val.metrics`` and saves the
output; :func:`validate_images` does the same for every image of every batch, and lets a model add to it
through :class:`ValidationExtra` hooks: inputs for its metrics (the hole mask of the masked PSNR/SSIM),
files next to each saved output (``lq | output | gt`` grids), scores over the set (the saturated share).
No-reference metrics (NIQE) need no hook: the metrics get ``img2`` only when the set has ground truth.
"""
import os
import os.path as osp
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from basicsr.metrics import calculate_metric
from basicsr.utils import tensor2img
from ext.utils.atomic_io import atomic_write_bytes
from ext.utils.color_fix import fix_colors


def validation_image_path(opt, img_name, dataset_name, current_iter):
    """Where BasicSR's SRModel saves a validation image: per image and iteration while training,
    per dataset with ``val.suffix`` (or the run name) when testing."""
    folder = opt['path']['visualization']
    if opt['is_train']:
        return osp.join(folder, img_name, f'{img_name}_{current_iter}.png')
    suffix = opt['val'].get('suffix') or opt['name']
    return osp.join(folder, dataset_name, f'{img_name}_{suffix}.png')


def write_png(path, image):
    """Write an 8-bit BGR image as a PNG in one piece (a kill leaves the old file or none), folders made."""
    ok, encoded = cv2.imencode('.png', image)
    if not ok:
        raise OSError(f'could not encode {path}')
    os.makedirs(osp.dirname(path), exist_ok=True)
    atomic_write_bytes(path, encoded.tobytes())


def side_by_side(lq, output, gt=None, gap=4):
    """An 8-bit BGR grid ``bicubic-upscaled lq | output | gt`` (tensors 1xCxHxW in [0, 1])."""
    height, width = output.shape[-2:]
    panels = [F.interpolate(lq, size=(height, width), mode='bicubic', align_corners=False).clamp(0, 1), output]
    if gt is not None:
        height, width = min(height, gt.shape[-2]), min(width, gt.shape[-1])
        panels.append(gt)
    images = [tensor2img([panel[..., :height, :width]]) for panel in panels]
    spacer = np.full((height, gap) + images[0].shape[2:], 255, dtype=np.uint8)
    row = [images[0]]
    for image in images[1:]:
        row += [spacer, image]
    return np.concatenate(row, axis=1)


@dataclass
class ValidationImage:
    """One validation image: its tensors (1 x C x H x W, on the CPU; ``gt`` and ``mask`` None when the set
    has none), the inputs of the metrics (``img``, ``img2``) and where the output is saved (None: not)."""
    name: str
    lq: torch.Tensor
    output: torch.Tensor
    gt: Optional[torch.Tensor]
    mask: Optional[torch.Tensor]
    metric_data: dict
    path: Optional[str]


class ValidationExtra:
    """A hook of :func:`validate_images`; each method does nothing here."""

    def image(self, image):
        """Called with each :class:`ValidationImage`, after its output is saved and before its metrics."""

    def finish(self, model, dataset_name, current_iter, tb_logger):
        """Called once the set's metrics are logged (not for an empty set)."""


class MaskedMetrics(ValidationExtra):
    """Passes the batch's ``mask`` (1 = hole or box) to the metrics, for ``calculate_masked_psnr`` /
    ``calculate_masked_ssim`` (``region: inside|outside``)."""

    def image(self, image):
        if image.mask is not None:
            image.metric_data['mask'] = image.mask[0, 0].numpy()


class SideBySideGrids(ValidationExtra):
    """Saves ``<output>_grid.png`` next to each saved output: :func:`side_by_side` of lq, output and gt."""

    def image(self, image):
        if image.path is not None:
            write_png(f'{osp.splitext(image.path)[0]}_grid.png', side_by_side(image.lq, image.output, image.gt))


def validate_images(model, dataloader, current_iter, tb_logger, save_img, extras=()):
    """``model.nondist_validation`` for an image-to-image BasicSR model: ``val.metrics`` averaged over every
    image of the set (best values kept, logged as BasicSR logs them), outputs saved as BasicSR's SRModel
    saves them (``save_img``), and the ``extras`` hooks.

    The model runs with ``is_train`` false, as in Real-ESRGAN's validation, so a model that synthesises its
    training data feeds the dataset's own ``lq``; ``ext.engine.seeding`` keeps the training random streams
    untouched around every validation. ``val.color_fix`` (``none``, ``wavelet``, ``adain``) colour-fixes each
    output against the model's input before it is scored and saved (:mod:`ext.utils.color_fix`, the same fix as
    ``--color_fix`` at inference; meant for super-resolution: an inpainting input's hole has no colour to take).
    """
    dataset_name = dataloader.dataset.opt['name']
    val_opt = model.opt['val']
    metrics = val_opt.get('metrics')
    if metrics:
        model._initialize_best_metric_results(dataset_name)
        model.metric_results = {name: 0.0 for name in metrics}
    pbar = tqdm(total=len(dataloader), unit='image') if val_opt.get('pbar', False) else None
    color_fix = val_opt.get('color_fix', 'none')
    count = 0
    was_training, model.is_train = model.is_train, False
    try:
        for val_data in dataloader:
            model.feed_data(val_data)
            model.test()
            if color_fix != 'none':  # against the model's input, as --color_fix does at inference
                model.output = fix_colors(model.output, model.lq, color_fix)
            batch = {name: getattr(model, name, None) for name in ('lq', 'output', 'gt', 'mask')}
            batch = {name: None if value is None else value.detach().cpu() for name, value in batch.items()}
            for name in ('lq', 'output', 'gt'):  # a set without gt must not see the last batch's
                if hasattr(model, name):
                    delattr(model, name)
            for index in range(batch['output'].shape[0]):
                image = _validation_image(model, val_data, batch, index, dataset_name, current_iter, save_img)
                for extra in extras:
                    extra.image(image)
                for name, metric_opt in (metrics or {}).items():
                    model.metric_results[name] += calculate_metric(image.metric_data, metric_opt)
                count += 1
            if pbar is not None:
                pbar.update(1)
                pbar.set_description(f'Test {image.name}')
    finally:
        model.is_train = was_training
    if pbar is not None:
        pbar.close()
    if count == 0:
        return
    if metrics:
        for name in model.metric_results:
            model.metric_results[name] /= count
            model._update_best_metric_result(dataset_name, name, model.metric_results[name], current_iter)
        model._log_validation_metric_values(current_iter, dataset_name, tb_logger)
    for extra in extras:
        extra.finish(model, dataset_name, current_iter, tb_logger)


def _validation_image(model, val_data, batch, index, dataset_name, current_iter, save_img):
    """The :class:`ValidationImage` of image ``index`` of a batch, its output saved when ``save_img``."""

    def one(name):
        return None if batch[name] is None else batch[name][index:index + 1]

    name = osp.splitext(osp.basename(val_data['lq_path'][index]))[0]
    metric_data = {'img': tensor2img([one('output')])}
    if batch['gt'] is not None:
        metric_data['img2'] = tensor2img([one('gt')])
    path = validation_image_path(model.opt, name, dataset_name, current_iter) if save_img else None
    if path is not None:
        write_png(path, metric_data['img'])
    return ValidationImage(name, one('lq'), one('output'), one('gt'), one('mask'), metric_data, path)
