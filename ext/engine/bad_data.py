"""Unreadable training files: named, skipped and limited, instead of BasicSR's death on the first one.

BasicSR's datasets die on the first bad file (``AttributeError`` on None, OpenCV's ``!buf.empty()``)
without its name. Every image is read through :mod:`ext.data.image_reader` (BasicSR's ``FileClient.get``
and ``imfrombytes`` are routed there by :mod:`ext.engine.patching`), so a failure is a
:class:`~ext.data.image_reader.BadImageFile` that names the file. The training set
(:class:`ext.engine.sampling.PerSampleSeededDataset`) reports it to a :class:`BadFileGuard`, which logs
each bad file once and stops the run when there are too many.
"""
import torch
from basicsr.utils import get_root_logger

from ext.data.image_reader import decode_image, read_image_bytes
from ext.errors import OptionError


class BadTrainingData(RuntimeError):
    """Too many training files cannot be read; training stops (exit status 2, as an option error)."""

    def __str__(self):
        text = str(self.args[0]) if self.args else ''
        marker = f'{type(self).__name__}: '  # re-raised from a loader worker: keep the message, not the traceback
        return text.rsplit(marker, 1)[-1].strip() if 'Original Traceback' in text else text


class BadFileGuard:
    """The bad files of one training set: each logged once, the run stopped when there are too many.

    ``is_bad`` is one flag per sample in shared memory, so loader workers (forked or spawned) see
    each other's finds and a file is logged once per run whatever the number of workers.

    Option keys of ``datasets.train``:
        bad_file_max_share (float, default 0.1): stop when more than this share of the samples is bad.
        bad_file_retries (int, default 10): other samples tried for one draw before stopping.
    """

    option_keys = frozenset({'bad_file_max_share', 'bad_file_retries'})

    def __init__(self, size, max_share=0.1, retries=10):
        self.max_share, self.retries = float(max_share), int(retries)
        if not 0 <= self.max_share <= 1 or self.retries < 0:
            raise OptionError(f'datasets.train: bad_file_max_share must be in [0, 1] (got {max_share}) and '
                              f'bad_file_retries >= 0 (got {retries})')
        self.size = size
        self.is_bad = torch.zeros(max(size, 1), dtype=torch.uint8).share_memory_()
        self.seen = {}  # index -> message, found in this process

    @classmethod
    def from_options(cls, size, dataset_opt):
        return cls(size, dataset_opt.get('bad_file_max_share', 0.1), dataset_opt.get('bad_file_retries', 10))

    def report(self, index, error):
        """Log ``error`` (a :class:`BadImageFile`) the first time sample ``index`` fails; stop when too many."""
        self.seen[index] = str(error)
        if self.is_bad[index]:
            return
        self.is_bad[index] = 1
        get_root_logger().warning(f'Bad training file {error.path}: {error.reason}; another sample is drawn instead '
                                  '(reported once)')
        bad = int(self.is_bad.sum())
        if bad > self.max_share * self.size:
            raise BadTrainingData(f'{bad} of the {self.size} training samples cannot be read, more than '
                                  f'datasets.train.bad_file_max_share ({self.max_share:g}): {self.listing()}')

    def listing(self, limit=20):
        messages = sorted(set(self.seen.values()))
        text = '; '.join(messages[:limit]) + (f' (+{len(messages) - limit} more)' if len(messages) > limit else '')
        others = int(self.is_bad.sum()) - len(self.seen)
        return text + (f' (+{others} found by other loader workers, named in the log)' if others > 0 else '')


# --- BasicSR's readers, routed through the guarded one (they gave no file name in any error) ----------
def file_client_get_naming_the_file(original, self, filepath, client_key='default'):
    return read_image_bytes(self, filepath, client_key, get=original)


def imfrombytes_naming_the_file(content, flag='color', float32=False):
    return decode_image(content, getattr(content, 'path', None), flag, float32)
