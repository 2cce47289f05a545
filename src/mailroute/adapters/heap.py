"""Keeping message-sized buffers out of glibc's heap, so that memory freed is memory given
back (a resident milter or ``serve`` does not creep; a pipe run peaks lower)."""

from __future__ import annotations

__all__ = ["MMAP_THRESHOLD", "pin_mmap_threshold"]

#: ``M_MMAP_THRESHOLD`` of glibc's ``mallopt``, and the value pinned (256 KiB).
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024


def pin_mmap_threshold() -> bool:
    """Keep message-sized buffers out of the heap (glibc only; ``False`` elsewhere).

    glibc raises its mmap threshold each time a large block is freed, up to 32 MiB, so after
    the first large buffer every later multi-megabyte one is carved from the heap arenas,
    where a freed block stays part of the process's RSS. A long-running process creeps up
    with fragmentation (benchmarks/soak.py: 38 MiB instead of 55-61 MiB for the disclaimer
    policy); a pipe run that edits a large body keeps every intermediate copy resident
    (examples: 4.5x instead of 3.2x the message). Pinning the threshold, as
    ``MALLOC_MMAP_THRESHOLD_`` would, gives such buffers back to the system when freed.
    """
    import ctypes  # only when pinning: a pipe run pins for large messages only

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
