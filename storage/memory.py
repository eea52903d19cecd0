"""How a Milepost process hands freed memory back to the system (the node, its decode workers).

Kept apart from ``storage.client`` so that a decode worker, which never talks to ClickHouse,
does not load the client library (and pandas with it) to set its allocator.
"""

from __future__ import annotations

import ctypes
import os

import pyarrow as pa

# chDB's jemalloc reads this when the engine loads: freed pages go back after a second, not ten.
# (At 0 ms, reads that allocate and free a lot got 1.5-4x slower: bench-correlator.)
JEMALLOC_CONF = "JE_MALLOC_CONF"
PROMPT_RETURN = "dirty_decay_ms:1000,muzzy_decay_ms:0"
_M_ARENA_MAX = -8  # glibc ``mallopt``: how many heaps threads may spread over


def _glibc() -> ctypes.CDLL | None:
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def return_freed_memory() -> None:
    """Make this process give freed memory back to the system instead of keeping it for later.

    By default chDB's allocator keeps freed pages for 10 s, Arrow's (mimalloc) keeps its segments
    and glibc keeps freed blocks in its heaps: under sustained ingest the node held ~200 MiB
    that way (bench/README.md, node RSS). With ``release_free_heap`` after each batch the writer
    returns what glibc kept. (A fixed glibc mmap threshold kept even less, but cost ~20% of the
    rate spans reached storage.) Call before the embedded engine loads; an operator's own
    ``JE_MALLOC_CONF`` is kept. Safe to call more than once.
    """
    os.environ.setdefault(JEMALLOC_CONF, PROMPT_RETURN)
    pa.set_memory_pool(pa.system_memory_pool())
    if _LIBC is not None:
        _LIBC.mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(2))


def release_free_heap() -> None:
    """Hand the free pages of the C heap back to the system (glibc ``malloc_trim``; under 1 ms)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(ctypes.c_size_t(0))
