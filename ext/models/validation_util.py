"""Helpers shared by the models' validation loops (not a component module)."""
import os.path as osp


def validation_image_path(opt, img_name, dataset_name, current_iter):
    """Where BasicSR's SRModel saves a validation image: per image and iteration while training,
    per dataset with ``val.suffix`` (or the run name) when testing."""
    folder = opt['path']['visualization']
    if opt['is_train']:
        return osp.join(folder, img_name, f'{img_name}_{current_iter}.png')
    suffix = opt['val'].get('suffix') or opt['name']
    return osp.join(folder, dataset_name, f'{img_name}_{suffix}.png')
