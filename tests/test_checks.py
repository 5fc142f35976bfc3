"""The shared argument checks of spanetlib.io.checks."""

import numpy as np
import pytest

from spanetlib.io.checks import check_frames, check_int, check_number, check_positive
from spanetlib.io.errors import InputError


def test_check_int_bounds_and_types():
    assert check_int("n", np.int64(3), minimum=0) == 3
    assert isinstance(check_int("n", np.int64(3)), int)
    assert check_int("n", None, allow_none=True) is None
    with pytest.raises(InputError, match=r"n: expected an int >= 2, got 1"):
        check_int("n", 1, minimum=2)
    with pytest.raises(InputError, match=r"n: expected an int in \[0, 4\], got 5"):
        check_int("n", 5, minimum=0, maximum=4)
    with pytest.raises(InputError, match=r"n: expected an int <= 4, got 5"):
        check_int("n", 5, maximum=4)
    for bad in (True, 2.0, "2", None):
        with pytest.raises(InputError, match="n: expected an int"):
            check_int("n", bad)
    assert check_positive("k", 1) == 1
    with pytest.raises(ValueError, match="k: expected an int >= 1, got 0"):
        check_positive("k", 0)


def test_check_number():
    assert check_number("x", 2, minimum=0) == 2.0
    assert check_number("x", 0.0, minimum=0) == 0.0
    with pytest.raises(InputError, match="x: expected a number > 0, got 0"):
        check_number("x", 0, minimum=0, above=True)
    with pytest.raises(InputError, match=r"x: expected a number >= 0 and <= 1, got 1.5"):
        check_number("x", 1.5, minimum=0, maximum=1)
    for bad in (float("nan"), float("inf"), True, "1"):
        with pytest.raises(InputError, match="x: expected a"):
            check_number("x", bad)


def test_check_frames_shape_dtype_and_count():
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    assert check_frames(frames) is frames
    assert check_frames(list(frames)).shape == (3, 8, 8, 3)
    with pytest.raises(InputError, match=r"frames: expected N x H x W x 3 uint8 RGB with N >= 4, "
                                         r"got shape \(3, 8, 8, 3\) dtype uint8"):
        check_frames(frames, minimum=4)
    with pytest.raises(InputError, match=r"got shape \(8, 8, 3\)"):
        check_frames(frames[0])
    with pytest.raises(InputError, match="dtype float32"):
        check_frames(frames.astype(np.float32))
    assert check_frames(frames.astype(np.float32), floats=True).dtype == np.float32
    with pytest.raises(InputError, match="clip: expected"):
        check_frames(frames[..., :2], name="clip")
    with pytest.raises(InputError, match="clip: frames of different sizes"):
        check_frames([frames[0], frames[0, :4]], name="clip")
