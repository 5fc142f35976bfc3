"""CPU memory around forward passes: glibc's heap thresholds, the convolution caches' size.

Fresh memory from the kernel costs a page fault per 4 KiB; SPANet's CPU forward pass and
loops of forward passes enter `reuse_freed_memory` so large tensors reuse memory already in
the process (``benchmarks/bench_model.py`` measures the effect). `bound_primitive_caches`
caps the caches of convolution primitives, which otherwise grow with every new input shape.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import platform
import threading
from collections.abc import Iterator

__all__ = ["PRIMITIVE_CACHE_CAPACITY", "bound_primitive_caches", "release_freed_memory",
           "return_large_blocks", "reuse_freed_memory"]


# --------------------------------------------------------------------------------------------
# PyTorch's CPU allocator calls malloc/free for every tensor. glibc serves blocks above its
# mmap threshold (dynamic, at most 32 MiB) with fresh mmap'ed memory and returns them to the
# kernel on free, so every large tensor is faulted in again, page by page (hundreds of
# thousands of page faults per SPANet forward pass at 512 x 512). Raising the mmap and trim
# thresholds makes glibc keep freed blocks in its heap and reuse them. Only while a forward pass
# runs: at the end of the outermost one the thresholds go to glibc's dynamic maxima
# (32 MiB / 64 MiB) and the freed memory is returned (malloc_trim), so the process keeps no
# memory it would not otherwise.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DURING = 2**31 - 1            # mallopt takes an int: as large as it goes
_AFTER_MMAP = 32 << 20         # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit glibc
_AFTER_TRIM = 64 << 20         # twice it, as glibc's dynamic rule sets it
_heap_lock = threading.Lock()
_heap_depth = 0
_outside_mmap = _AFTER_MMAP    # the mmap threshold outside forward passes (return_large_blocks)


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc with ``mallopt`` and ``malloc_trim``, else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Keep memory freed inside the block in the process and reuse it (glibc only).

    Inside the block glibc serves every allocation from its heap and keeps what is freed
    there, so a large tensor reuses memory already in the process instead of faulting in
    fresh pages from the kernel. SPANet's CPU forward pass enters it by itself; enter it
    around a loop of forward passes (tiles, a test set, training steps) to reuse memory
    across them too. Nested and concurrent blocks are counted: when the last one ends, the
    free memory is returned to the system (``malloc_trim``) and glibc's thresholds stay at the
    values its own dynamic rule would reach (mmap above 32 MiB, trim above 64 MiB). Elsewhere
    than on Linux with glibc it does nothing.
    """
    global _heap_depth
    libc = _glibc()
    if libc is None:
        yield
        return
    with _heap_lock:
        _heap_depth += 1
        if _heap_depth == 1:
            if not libc.mallopt(_M_MMAP_THRESHOLD, _DURING):  # older glibc: at most 32 MiB
                libc.mallopt(_M_MMAP_THRESHOLD, _AFTER_MMAP)
            libc.mallopt(_M_TRIM_THRESHOLD, _DURING)
    try:
        yield
    finally:
        with _heap_lock:
            _heap_depth -= 1
            if _heap_depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _outside_mmap)
                libc.mallopt(_M_TRIM_THRESHOLD, _AFTER_TRIM)
                libc.malloc_trim(0)


@contextlib.contextmanager
def return_large_blocks(threshold: int = 1 << 20) -> Iterator[None]:
    """Outside forward passes, serve blocks of ``threshold`` bytes or more with mmap (glibc).

    glibc keeps freed blocks under its mmap threshold (up to 32 MiB: every 1080p frame-sized
    array) in its heaps, where fragmentation holds on to them; above it a block goes back to
    the system when freed. Inside this block the threshold outside `reuse_freed_memory`
    blocks is ``threshold`` (forward passes still reuse their memory); on exit glibc's
    maximum (32 MiB) again. A large block then costs its page faults at every allocation;
    derain-video at 1080p (hand-held, window 60, 12 frames) peaked 118 MB lower (1,561 ->
    1,443 MB) in the same time (57 s against 55 s on a shared 2-core machine). Elsewhere
    than on Linux with glibc it does nothing.
    """
    global _outside_mmap
    libc = _glibc()
    if libc is None:
        yield
        return
    with _heap_lock:
        _outside_mmap = int(threshold)
        if _heap_depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, _outside_mmap)
    try:
        yield
    finally:
        with _heap_lock:
            _outside_mmap = _AFTER_MMAP
            if _heap_depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _AFTER_MMAP)


def release_freed_memory() -> None:
    """Return the memory freed to glibc's heaps to the system now (``malloc_trim``).

    Outside a forward pass glibc keeps freed blocks under its mmap threshold (32 MiB: a
    1080p frame's float32 copy is one) in its heaps, and fragmentation keeps more than the
    trim threshold: a 1080p derain-video frame's checks left ~230 MB there before its first
    forward pass. Inside a `reuse_freed_memory` block, and elsewhere than on Linux with
    glibc, it does nothing.
    """
    libc = _glibc()
    if libc is None:
        return
    with _heap_lock:
        if _heap_depth == 0:
            libc.malloc_trim(0)


# --------------------------------------------------------------------------------------------
# oneDNN (and ideep, PyTorch's wrapper of it) keep every convolution primitive made, up to
# 1,024 each, keyed by the input's shape. A stream of crops of new shapes (derain-video)
# adds ~1 MB per shape until both caches are full: at 1080p the process grew ~8 MB a frame
# over its first ~25 frames. Both read their capacity from the environment when they are
# first used.
#: Primitives each cache keeps: a few shapes of SPANet (tiles of one size, their edges).
PRIMITIVE_CACHE_CAPACITY = 256
_CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def bound_primitive_caches(capacity: int = PRIMITIVE_CACHE_CAPACITY) -> None:
    """Cap oneDNN's and ideep's convolution caches at ``capacity`` primitives each.

    Takes effect only before the process's first CPU convolution (the caches read their
    size once); a capacity already set in the environment is kept. Results do not change:
    a primitive evicted is made again when its shape comes back.
    """
    for name in _CACHE_VARIABLES:
        os.environ.setdefault(name, str(int(capacity)))
