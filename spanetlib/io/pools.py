"""Thread pools over streams: results in order, a bounded number of items in flight.

The §3 passes decode a clip in the caller's thread and hand each frame to worker threads
(OpenCV and the numba kernels release the GIL). :func:`ordered_map` keeps the decoder ahead
of the workers by a fixed number of frames, so decoding overlaps with the work and memory
stays bounded whatever the clip's length. :func:`worker_threads` opens such a pool with
OpenCV single-threaded while it is open.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import cv2

__all__ = ["ordered_map", "worker_threads"]

T = TypeVar("T")
R = TypeVar("R")

_OPENCV_LOCK = threading.Lock()
_opencv_pools = 0  # pools open with OpenCV single-threaded
_opencv_threads = 0  # OpenCV's thread count before the first of them opened


@contextmanager
def worker_threads(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A pool of ``workers`` threads; with more than one, OpenCV runs single-threaded meanwhile.

    The workers already share the cores; OpenCV's own threads beside them only wait and
    spin (the §3 pass on a 1080p clip took about a tenth more CPU time with them). OpenCV's
    thread count is process-wide: it is restored when the last such pool closes.

    Args:
        workers: threads in the pool (>= 1).

    Yields:
        The open :class:`concurrent.futures.ThreadPoolExecutor`.
    """
    global _opencv_pools, _opencv_threads
    if workers < 1:
        raise ValueError(f"workers: expected >= 1, got {workers!r}")
    single = workers > 1
    if single:
        with _OPENCV_LOCK:
            if _opencv_pools == 0:
                _opencv_threads = cv2.getNumThreads()
                cv2.setNumThreads(1)
            _opencv_pools += 1
    try:
        with ThreadPoolExecutor(workers) as pool:
            yield pool
    finally:
        if single:
            with _OPENCV_LOCK:
                _opencv_pools -= 1
                if _opencv_pools == 0:
                    cv2.setNumThreads(_opencv_threads)


def ordered_map(pool: Executor, fn: Callable[[T], R], items: Iterable[T], ahead: int
                ) -> Iterator[R]:
    """``map(fn, items)`` on ``pool``, in order, with at most ``ahead`` items in flight.

    An item is drawn from ``items`` (e.g. a frame being decoded) only when fewer than
    ``ahead`` are waiting, so the producer runs while the workers compute.

    Args:
        pool: the executor.
        fn: the work per item.
        items: any iterable; consumed lazily.
        ahead: most items submitted and not yet yielded (>= 1).

    Yields:
        ``fn(item)`` for every item, in the items' order; an exception of ``fn`` is raised
        when its result is reached.
    """
    if ahead < 1:
        raise ValueError(f"ahead: expected >= 1, got {ahead!r}")
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:  # the consumer stopped early: drop what has not started
            future.cancel()
