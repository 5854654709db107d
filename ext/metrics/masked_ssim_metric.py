"""SSIM inside or outside a region (the blurred box of the FFHQ inpainting pairs)."""
import cv2
import numpy as np

from ext.metrics.masked_psnr_metric import empty_region_error, prepare_images, region_mask, reorder_image
from ext.registry import register

_C1, _C2 = (0.01 * 255)**2, (0.03 * 255)**2
_RADIUS = 5  # the 11x11 window's half size


def ssim_map(img, img2):
    """SSIM map of two single-channel float64 images in [0, 255], 11x11 Gaussian window (sigma
    1.5), valid positions only: shape (H - 10, W - 10), the map BasicSR's ``_ssim`` averages."""
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())
    valid = (slice(_RADIUS, -_RADIUS), slice(_RADIUS, -_RADIUS))

    def blur(x):
        return cv2.filter2D(x, -1, window)[valid]

    mu1, mu2 = blur(img), blur(img2)
    sigma1_sq, sigma2_sq, sigma12 = blur(img**2) - mu1**2, blur(img2**2) - mu2**2, blur(img * img2) - mu1 * mu2
    return ((2 * mu1 * mu2 + _C1) * (2 * sigma12 + _C2)) / ((mu1**2 + mu2**2 + _C1) * (sigma1_sq + sigma2_sq + _C2))


@register()
def calculate_masked_ssim(img, img2, crop_border, mask=None, region='inside', input_order='HWC',
                          test_y_channel=False):
    """SSIM averaged over the window centres inside (``region: inside``) or outside (``outside``)
    the mask; each channel's mean, then the mean over channels, as BasicSR's ``calculate_ssim``
    (which it equals for a mask covering the whole image). Windows centred near the box edge
    straddle it, so inside/outside scores blend over about 5 pixels there.

    Args:
        img, img2 (ndarray): images in [0, 255] (BasicSR's validation passes uint8 BGR HWC).
        crop_border (int): pixels cropped at each edge of the images and the mask.
        mask: the region, H x W; passed by the model (``TTSRInpaintModel``), not set in the options.
        region (str): 'inside' or 'outside'.
        input_order (str): 'HWC' or 'CHW'.
        test_y_channel (bool): on the Y channel of YCbCr.
    """
    selected = region_mask(mask, reorder_image(img, input_order=input_order).shape, region, crop_border)
    img, img2 = prepare_images(img, img2, crop_border, input_order, test_y_channel)
    if min(img.shape[:2]) <= 2 * _RADIUS:
        raise ValueError(f'masked SSIM needs images larger than 11x11 after the border crop, got {img.shape[:2]}')
    selected = selected[_RADIUS:-_RADIUS, _RADIUS:-_RADIUS]
    if not selected.any():
        raise empty_region_error(region, crop_border)
    scores = [ssim_map(img[..., c], img2[..., c])[selected].mean() for c in range(img.shape[2])]
    return float(np.mean(scores))
