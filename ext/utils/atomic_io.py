"""Write files (and build folders) so that a reader sees the old one or the whole new one, never a torn one.

A training run or a data script can be killed at any moment (SIGKILL, OOM killer, a
pre-empted node). Writing to a temporary file in the target folder, flushing and
fsync-ing it, then ``os.replace``-ing it over the target makes the switch atomic on
POSIX and Windows file systems.

The temporary file is created as any new file is (mode 0o666 less the user's umask, and the
folder's default ACL), not with ``tempfile.mkstemp``'s private 0o600, so a group sharing the
experiment folder can read the checkpoints and results.

"""
import contextlib
import os
import secrets
import shutil


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0) | getattr(os, 'O_CLOEXEC', 0)


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


def _create_temporary(folder, name):
    """``(fd, path)`` of a new, exclusively created file in ``folder`` with the umask's permissions."""
    for _ in range(100):
        tmp_path = os.path.join(folder, f'.{name}.{secrets.token_hex(4)}.tmp')
        try:
            return os.open(tmp_path, _CREATE_FLAGS, 0o666), tmp_path
        except FileExistsError:
            continue
    raise FileExistsError(f'could not create a temporary file for {name!r} in {folder!r}')


@contextlib.contextmanager
def atomic_open(path, mode='wb', make_dirs=False):
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. ``make_dirs``:
    create ``path``'s folder first (else a missing folder is an error).
    """
    if 'w' not in mode:
        raise ValueError(f'atomic_open() writes files; got mode {mode!r}')
    folder = os.path.dirname(os.path.abspath(path))
    if make_dirs:
        os.makedirs(folder, exist_ok=True)
    fd, tmp_path = _create_temporary(folder, os.path.basename(path))
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


def atomic_write_bytes(path, data, make_dirs=False):
    with atomic_open(path, 'wb', make_dirs) as handle:
        handle.write(data)


def atomic_write_text(path, text, encoding='utf-8', make_dirs=False):
    atomic_write_bytes(path, text.encode(encoding), make_dirs)


@contextlib.contextmanager
def atomic_folder(path):
    """Build a folder under a temporary name next to ``path``; on a clean exit it takes ``path``'s place.

    Yields the temporary path (``<name>.partial-<pid><extension>``, e.g. ``data.partial-42.lmdb``). On an
    exception it is removed and ``path`` is left as it was. An existing ``path`` is renamed away just
    before the new folder is renamed in and deleted after, so ``path`` is always the old folder or the
    whole new one (it is absent only between two renames).
    """
    stem, extension = os.path.splitext(os.path.abspath(path))
    tmp_path, old_path = (f'{stem}.{state}-{os.getpid()}{extension}' for state in ('partial', 'replaced'))
    shutil.rmtree(tmp_path, ignore_errors=True)  # left by a killed process that had this pid
    try:
        yield tmp_path
        if os.path.exists(path):
            os.replace(path, old_path)
        os.replace(tmp_path, path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
        shutil.rmtree(old_path, ignore_errors=True)


def atomic_torch_save(obj, path):
    """``torch.save`` that never leaves a partial file at ``path``."""
    import torch  # here: the scripts import this module without starting torch
    with atomic_open(path, 'wb') as handle:
        torch.save(obj, handle)
