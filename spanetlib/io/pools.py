"""Thread pools over streams: results in order, a bounded number of items in flight.

The §3 passes decode a clip in the caller's thread and hand each frame to worker threads
(OpenCV and the numba kernels release the GIL). :func:`ordered_map` keeps the decoder ahead
of the workers by a fixed number of frames, so decoding overlaps with the work and memory
stays bounded whatever the clip's length.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

__all__ = ["ordered_map"]

T = TypeVar("T")
R = TypeVar("R")


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
