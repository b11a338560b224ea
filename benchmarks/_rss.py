"""Peak memory of the running process, shared by the benchmarks that measure it."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss can carry the parent's)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
