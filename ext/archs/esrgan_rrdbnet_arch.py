"""BasicSR's RRDBNet with a choice of upsampler: nearest interpolation + conv, or sub-pixel conv."""
import torch
from torch import nn

from basicsr.archs.rrdbnet_arch import RRDBNet
from ext.registry import register

UPSAMPLERS = ('nearest', 'pixelshuffle')


@register()
class ESRGANRRDBNet(RRDBNet):
    """RRDBNet (ESRGAN, Wang et al. 2018, https://arxiv.org/abs/1809.00219) whose x4 upsampler is selectable
    (nearest + conv, or sub-pixel convolution).

    ``upsampler: nearest`` is BasicSR's ``RRDBNet`` unchanged (same state-dict keys, so ESRGAN and
    Real-ESRGAN weights load). ``upsampler: pixelshuffle`` makes ``conv_up1``/``conv_up2`` produce 4x the
    features and doubles the resolution with ``PixelShuffle(2)`` after each (Shi et al. 2016), at the same
    cost. The RRDB trunk (3 residual dense blocks of 5 convs, residual scaling 0.2) is BasicSR's.

    ``interpolating_init: true`` (an initialisation only; the architecture and its keys are unchanged)
    sets the first ``num_in_ch`` feature channels of the LR-to-HR path so that the untrained network
    outputs a smooth (bilinear-like) x4 interpolation of its input: ``conv_first``, ``conv_hr`` and
    ``conv_last`` pass those channels through, ``conv_up1``/``conv_up2`` smooth them with a [1, 2, 1]^2 / 16
    kernel after each nearest x2, and the trunk's and the other channels' contributions to them start at
    zero (the rest at a tenth of their default). Training then starts from an interpolation instead of
    noise, which matters on small budgets (the learning check of benchmarks/learning/recipe_esrgan_psnr.py).

    Option keys (``network_g``): num_in_ch, num_out_ch, scale (x4 only for 'pixelshuffle' and
    ``interpolating_init``), num_feat (64), num_block (23 in the paper; 16 in options/train_esrgan_psnr_x4.yml), num_grow_ch (32),
    upsampler ('nearest'), interpolating_init (false).
    """

    def __init__(self, num_in_ch, num_out_ch, scale=4, num_feat=64, num_block=23, num_grow_ch=32,
                 upsampler='nearest', interpolating_init=False):
        super().__init__(num_in_ch, num_out_ch, scale=scale, num_feat=num_feat, num_block=num_block,
                         num_grow_ch=num_grow_ch)
        if upsampler not in UPSAMPLERS:
            raise ValueError(f'ESRGANRRDBNet: upsampler must be one of {UPSAMPLERS}, got {upsampler!r}')
        if upsampler == 'pixelshuffle' and scale != 4:
            raise ValueError(f"ESRGANRRDBNet: upsampler 'pixelshuffle' is for scale 4, got scale {scale}")
        self.upsampler = upsampler
        if upsampler == 'pixelshuffle':
            self.conv_up1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.shuffle = nn.PixelShuffle(2)
        if interpolating_init:
            if upsampler != 'nearest' or scale != 4 or num_in_ch != num_out_ch or num_feat < num_in_ch:
                raise ValueError('ESRGANRRDBNet: interpolating_init needs upsampler nearest, scale 4, '
                                 f'num_in_ch == num_out_ch <= num_feat; got {upsampler}, {scale}, {num_in_ch}, '
                                 f'{num_out_ch}, {num_feat}')
            self._init_interpolating(num_in_ch)

    @torch.no_grad()
    def _init_interpolating(self, channels):
        smooth = torch.tensor([1.0, 2.0, 1.0])
        smooth = torch.outer(smooth, smooth) / 16
        centre = torch.zeros(3, 3)
        centre[1, 1] = 1.0
        for conv, kernel in ((self.conv_first, centre), (self.conv_body, None), (self.conv_up1, smooth),
                             (self.conv_up2, smooth), (self.conv_hr, centre), (self.conv_last, centre)):
            if conv is self.conv_last:  # every output is a pass-through; the other features start small
                conv.weight.mul_(0.1)
                conv.weight[:, :channels] = 0
            else:
                conv.weight[:channels] = 0
            conv.bias[:channels] = 0
            if kernel is not None:
                for c in range(channels):
                    conv.weight[c, c] = kernel

    def forward(self, x):
        if self.upsampler == 'nearest':
            return super().forward(x)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.shuffle(self.conv_up1(feat)))
        feat = self.lrelu(self.shuffle(self.conv_up2(feat)))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))

