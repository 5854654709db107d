"""Importable super-resolution inference: build a network, load its weights, tile it over images.

The network comes from one of (the same rules as ``scripts/inference.py``; :func:`load_network`):

* ``opt='train.yml'``: the training options' ``network_g``; the checkpoint defaults to the YAML's
  ``path.pretrain_network_g``;
* ``arch='RRDBNet', arch_args={...}``: an architecture of BasicSR's ARCH_REGISTRY (this package's included);
* only ``model_path``: a checkpoint written by this package's training records its ``network_g``
  options (``network_options`` in a ``.pth``, metadata in a ``.safetensors``) and is rebuilt from them;
  any other file is recognised by spandrel (ESRGAN/RRDBNet, Real-ESRGAN compact, SwinIR, HAT, ...);
* an ``.onnx`` file (``scripts/export_onnx.py``) runs with onnxruntime, with the same tiling.

Example::

    from ext.inference import load_upscaler
    upscaler = load_upscaler('net_g_latest.pth', tile=256)          # tile_pad: measured on the network
    fast_cpu = load_upscaler('RealESRGAN_x4plus.pth', tile=256, precision='bf16', channels_last=True)
    sr = upscaler.upscale(cv2.imread('photo.png', cv2.IMREAD_UNCHANGED), outscale=3.5)
    upscaler.upscale_file('photo.png', 'photo_x4.png')

``color_fix='wavelet'`` (or ``'adain'``) corrects the output's colors against the input
(:mod:`ext.utils.color_fix`, which training validation can call on tensors).

Images are numpy arrays in OpenCV's layout (gray, BGR, BGRA; uint8, uint16 or float in [0, 1]); they come
back in the same mode and depth.

The modules, each importing only those above it:

* :mod:`~ext.inference.network`: :class:`LoadedNetwork`, what inference knows about a loaded network;
* :mod:`~ext.inference.images`: reading and writing images, reference tensors;
* :mod:`~ext.inference.onnx`: export to ONNX, the onnxruntime check, ``.onnx`` files as networks;
* :mod:`~ext.inference.loading`: :func:`load_network` from any of the sources above;
* :mod:`~ext.inference.tiling`: tile planning and the tiled forward (:class:`~ext.inference.tiling.TiledUpscaler`);
* :mod:`~ext.inference.tile_pad`: the tile padding measured on the network (``tile_pad='auto'``);
* :mod:`~ext.inference.precision`: fp32 / bf16 / fp16 and channels_last (``precision=``, ``channels_last=``);
* :mod:`~ext.inference.streamed_tail`: the upsampled layers of RRDBNet-style networks in strips (``stream_tail=``);
* :mod:`~ext.inference.oom_retry`: out of memory on a tile retries the image with half the tile;
* :mod:`~ext.inference.upscaler`: :class:`Upscaler` and :func:`load_upscaler`;
* :mod:`~ext.inference.batch`: folders of images, output names, references by name, the CLI runner.
"""
from ext.errors import InputError, UsageError
from ext.inference.batch import run_cli, upscale_paths
from ext.inference.images import IMAGE_EXTENSIONS, read_image, read_reference, write_image
from ext.inference.loading import load_network
from ext.inference.network import LoadedNetwork
from ext.inference.upscaler import Upscaler, load_upscaler

__all__ = ['Upscaler', 'UsageError', 'InputError', 'LoadedNetwork', 'load_upscaler', 'load_network', 'read_image',
           'write_image', 'read_reference', 'upscale_paths', 'run_cli', 'IMAGE_EXTENSIONS']
