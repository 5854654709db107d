"""Write files so that a reader sees the old file or the whole new one, never a torn one.

A training run or a data script can be killed at any moment (SIGKILL, OOM killer, a
pre-empted node). Writing to a temporary file in the target folder, flushing and
fsync-ing it, then ``os.replace``-ing it over the target makes the switch atomic on
POSIX and Windows file systems.
"""
import contextlib
import os
import tempfile


def _fsync_dir(path):
    try:  # makes the rename itself durable; not supported on every OS / file system
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path, mode='wb'):
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    if 'w' not in mode:
        raise ValueError(f'atomic_open() writes files; got mode {mode!r}')
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=f'.{os.path.basename(path)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        raise
    _fsync_dir(folder)


def atomic_torch_save(obj, path):
    """``torch.save`` that never leaves a partial file at ``path``."""
    import torch  # here, not at the top: the data scripts load this module without torch
    with atomic_open(path, 'wb') as handle:
        torch.save(obj, handle)


def atomic_write_bytes(path, data):
    with atomic_open(path, 'wb') as handle:
        handle.write(data)


def atomic_write_text(path, text, encoding='utf-8'):
    atomic_write_bytes(path, text.encode(encoding))
