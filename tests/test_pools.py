"""Tests for spanetlib.io.pools.ordered_map."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import pytest

from spanetlib.io.pools import ordered_map, worker_threads


def test_results_come_in_order_with_a_bounded_number_in_flight():
    drawn = []
    lock = threading.Lock()
    in_flight = []

    def items():
        for i in range(40):
            drawn.append(i)
            yield i

    def slow_square(i):
        time.sleep(0.002 * (i % 3))  # later items may finish first
        return i * i

    with ThreadPoolExecutor(3) as pool:
        out = []
        for value in ordered_map(pool, slow_square, items(), ahead=4):
            with lock:
                in_flight.append(len(drawn) - len(out) - 1)
            out.append(value)
    assert out == [i * i for i in range(40)]
    assert max(in_flight) <= 4 - 1  # drawn but not yet yielded, besides this one


def test_an_exception_reaches_the_consumer_and_the_rest_is_dropped():
    def fail_at_5(i):
        if i == 5:
            raise RuntimeError("frame 5")
        return i

    with ThreadPoolExecutor(2) as pool:
        got = []
        with pytest.raises(RuntimeError, match="frame 5"):
            for value in ordered_map(pool, fail_at_5, range(100), ahead=3):
                got.append(value)
    assert got == [0, 1, 2, 3, 4]


def test_ahead_must_be_positive():
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="ahead"):
        list(ordered_map(pool, abs, [1], ahead=0))


def test_worker_threads_run_opencv_single_threaded_and_restore_it():
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        with worker_threads(2) as pool:
            assert cv2.getNumThreads() == 1
            assert list(pool.map(lambda x: x * x, range(5))) == [0, 1, 4, 9, 16]
            with worker_threads(2):  # nested: still single, restored only by the outer one
                assert cv2.getNumThreads() == 1
            assert cv2.getNumThreads() == 1
        assert cv2.getNumThreads() == 3
        with pytest.raises(RuntimeError, match="boom"), worker_threads(2):
            raise RuntimeError("boom")
        assert cv2.getNumThreads() == 3
        with worker_threads(1):  # a single worker leaves OpenCV's own threads to it
            assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)


def test_worker_threads_need_a_worker():
    with pytest.raises(ValueError, match="workers"), worker_threads(0):
        pass
