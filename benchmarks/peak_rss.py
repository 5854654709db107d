"""A process's resident memory, for the benchmarks that report the peak of a step: the RSS now, and its peak
(VmHWM) since a reset, so that what the process imported or built before the measured work does not count.
The reset needs Linux >= 4.0; elsewhere the peak is that of the whole process (``ru_maxrss``)."""
import os
import resource


def rss_bytes():
    with open('/proc/self/statm') as handle:
        return int(handle.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as handle:
            handle.write('5')
        return True
    except OSError:
        return False


def peak_rss_bytes():
    try:
        with open('/proc/self/status') as handle:
            for line in handle:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
