"""The peak resident set of this process alone, for the benchmarks' memory figures.

``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is not that on Linux: a process starts with its parent's
peak, which the kernel carries across fork and exec, so a benchmark child started after its parent did
heavy work reports the parent's peak, and its growth above a baseline reads as zero. ``VmHWM`` in
``/proc/self/status`` is the peak of this process's own address space since its exec.
"""

from __future__ import annotations

import resource


def own_peak_kb() -> int:
    """This process's peak RSS in KiB: ``VmHWM`` where ``/proc`` has it, else ``ru_maxrss``."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
