"""The package's error types and exit statuses: a leaf module (it imports nothing of ``ext``), so any
layer can raise them without importing a higher one."""

# Exit statuses of ext/train.py and the scripts (0: done, or stopped by a signal after saving a checkpoint).
EXIT_USAGE = 2  # bad options, a missing pretrained network, an unusable checkpoint
EXIT_BAD_DATA = 2  # too many unreadable training files
EXIT_GUARD = 3  # a guard stopped training (the model diverged); no checkpoint of the last iteration
EXIT_OUT_OF_MEMORY = 4  # a training step ran out of memory; no checkpoint of the half-updated step


class OptionError(ValueError):
    """One or more problems in an option file; the message lists each with its key."""


class UsageError(Exception):
    """Bad command-line options or a model that cannot be built/loaded: nothing can be processed."""


class InputError(Exception):
    """One input of a batch job cannot be processed; the others still are."""


def is_out_of_memory(error):
    """True for a device or host allocation failure: ``torch.OutOfMemoryError`` (CUDA), or the
    ``RuntimeError`` / ``MemoryError`` of the CPU allocator."""
    if any(cls.__name__ == 'OutOfMemoryError' for cls in type(error).__mro__):
        return True
    text = str(error).lower()
    return isinstance(error, MemoryError) or isinstance(error, RuntimeError) and (
        'out of memory' in text or "can't allocate memory" in text or 'not enough memory' in text)
