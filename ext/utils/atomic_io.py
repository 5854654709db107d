"""Atomic writes for the package: the torch-free ones of :mod:`ext_light.atomic_io` (bytes, text, an open
file) and :func:`atomic_torch_save`. A reader sees the old file or the whole new one, never a torn one."""
import torch

from ext_light.atomic_io import atomic_open, atomic_write_bytes, atomic_write_text  # noqa: F401  (the package's)


def atomic_torch_save(obj, path):
    """``torch.save`` that never leaves a partial file at ``path``."""
    with atomic_open(path, 'wb') as handle:
        torch.save(obj, handle)
