"""Host memory of the current process: resident set size now, its high-water mark, and a
reset of the high-water mark (Linux `/proc/self/clear_refs`), so a child can measure the
peak that loading and running one model adds above its own baseline."""

from __future__ import annotations

import resource
import sys

MIB = 1024 * 1024


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    """Resident set size now (VmRSS); falls back to the high-water mark off Linux."""
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else hwm_bytes()


def hwm_bytes() -> int:
    """Resident set high-water mark (VmHWM, the same counter as getrusage's ru_maxrss)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def method(hwm_was_reset: bool) -> str:
    how = (
        "reset via /proc/self/clear_refs just before loading"
        if hwm_was_reset
        else "not resettable here, so it also covers the runtime import"
    )
    return (
        "child process RSS high-water mark (/proc/self/status VmHWM = getrusage ru_maxrss; "
        f"{how}) minus the child's RSS (VmRSS) after importing the runtime, before loading the model"
    )
