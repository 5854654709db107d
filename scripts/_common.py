"""The names ``scripts/evaluate.py`` imports from here, now :mod:`ext_light`'s (evaluate.py is being changed
elsewhere at the moment; the other scripts import ext_light themselves). Delete this file once evaluate.py
imports ext_light too."""
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:  # this checkout's ext, installed or not
    sys.path.insert(1, REPO_ROOT)

from ext.utils import atomic_io  # noqa: E402
from ext.utils.image_files import (UnreadableImage, list_images, read_image, report_unreadable,  # noqa: E402,F401
                                   write_image)


def atomic_write_text(path, text):
    """:func:`ext.utils.atomic_io.atomic_write_text`, creating the folder (as evaluate.py expects)."""
    atomic_io.atomic_write_text(path, text, make_dirs=True)
