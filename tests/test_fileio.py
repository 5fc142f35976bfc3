import json

import numpy as np
import pytest

from spanetlib import fileio
from spanetlib.fileio import InputError


def test_image_round_trip_keeps_rgb_order(tmp_path):
    image = np.zeros((4, 5, 3), np.uint8)
    image[..., 0] = 200  # red
    path = fileio.write_image(tmp_path / "a.png", image)
    back = fileio.read_image(path)
    assert back.shape == (4, 5, 3)
    np.testing.assert_array_equal(back, image)


def test_float_images_are_rounded_and_clipped():
    out = fileio.to_uint8(np.array([-0.5, 0.0, 0.5, 1.0, 2.0], np.float32))
    np.testing.assert_array_equal(out, [0, 0, 128, 255, 255])
    with pytest.raises(TypeError, match="uint8 or float"):
        fileio.to_uint8(np.zeros(3, np.int32))


def test_read_image_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        fileio.read_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read image"):
        fileio.read_image(bad)


def test_write_image_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="H x W x 3"):
        fileio.write_image(tmp_path / "x.png", np.zeros((2, 2, 4), np.uint8))


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "state.json"
    fileio.atomic_write_json(path, {"a": 1})

    def broken(tmp):
        with open(tmp, "w") as handle:
            handle.write("{half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError, match="crash"):
        fileio.atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left behind
