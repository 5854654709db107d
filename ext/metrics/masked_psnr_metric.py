"""PSNR inside or outside a region (the blurred box of the FFHQ inpainting pairs)."""
import numpy as np
import torch

from basicsr.metrics.metric_util import reorder_image, to_y_channel
from ext.registry import register

REGIONS = ('inside', 'outside')


def region_mask(mask, shape, region, crop_border=0):
    """Boolean ``H x W`` selection of ``region`` ('inside' or 'outside' the mask's non-zero pixels)
    for images of ``shape`` (H, W, ...), cropped by ``crop_border`` like the images.

    ``mask``: numpy array or tensor of H x W, 1 x H x W, H x W x 1 or 1 x 1 x H x W.
    """
    if mask is None:
        raise ValueError('masked metrics need the region mask (the "mask" of the validation data): use a '
                         'model that passes it, such as TTSRInpaintModel, with a dataset that returns it, '
                         'such as FFHQInpaintDataset')
    if region not in REGIONS:
        raise ValueError(f'masked metrics: region must be one of {REGIONS}, got {region!r}')
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = squeezed = np.asarray(mask)
    while squeezed.ndim > 2 and squeezed.shape[0] == 1:  # N x C x H x W, C x H x W
        squeezed = squeezed[0]
    if squeezed.ndim == 3 and squeezed.shape[-1] == 1:  # H x W x 1
        squeezed = squeezed[..., 0]
    if squeezed.shape != tuple(shape[:2]):
        raise ValueError(f'masked metrics: mask of shape {mask.shape} does not match images of {tuple(shape[:2])}')
    inside = squeezed > 0.5
    if crop_border:
        inside = inside[crop_border:-crop_border, crop_border:-crop_border]
    return inside if region == 'inside' else ~inside


def prepare_images(img, img2, crop_border, input_order='HWC', test_y_channel=False):
    """BasicSR's preparation: HWC order, border crop, optional Y channel, float64 in [0, 255]."""
    if img.shape != img2.shape:
        raise ValueError(f'image shapes differ: {img.shape} and {img2.shape}')
    if input_order not in ('HWC', 'CHW'):
        raise ValueError(f"input_order must be 'HWC' or 'CHW', got {input_order!r}")
    img, img2 = reorder_image(img, input_order=input_order), reorder_image(img2, input_order=input_order)
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border, ...]
    if test_y_channel:
        img, img2 = to_y_channel(img), to_y_channel(img2)
    return img.astype(np.float64), img2.astype(np.float64)


def empty_region_error(region, crop_border):
    return ValueError(f'masked metrics: no pixel {region} the mask after cropping {crop_border} border pixels')


@register()
def calculate_masked_psnr(img, img2, crop_border, mask=None, region='inside', input_order='HWC',
                          test_y_channel=False):
    """PSNR over the pixels inside (``region: inside``) or outside (``outside``) the mask.

    For the FFHQ inpainting pairs the mask is the blurred box, so ``inside`` says whether the hole is
    filled and ``outside`` whether the rest of the face is preserved; with a mask covering the whole
    image it equals BasicSR's ``calculate_psnr``.

    Args:
        img, img2 (ndarray): images in [0, 255] (BasicSR's validation passes uint8 BGR HWC).
        crop_border (int): pixels cropped at each edge of the images and the mask.
        mask: the region, H x W (any of the shapes :func:`region_mask` takes); passed by the model
            (``TTSRInpaintModel``) with the images, not set in the options.
        region (str): 'inside' or 'outside'.
        input_order (str): 'HWC' or 'CHW'.
        test_y_channel (bool): on the Y channel of YCbCr.
    """
    selected = region_mask(mask, reorder_image(img, input_order=input_order).shape, region, crop_border)
    img, img2 = prepare_images(img, img2, crop_border, input_order, test_y_channel)
    if not selected.any():
        raise empty_region_error(region, crop_border)
    mse = np.mean((img[selected] - img2[selected])**2)
    if mse == 0:
        return float('inf')
    return float(10. * np.log10(255. * 255. / mse))
