import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from spanetlib.io import files as fileio
from spanetlib.io.errors import InputError


def test_image_round_trip_keeps_rgb_order(tmp_path):
    image = np.zeros((4, 5, 3), np.uint8)
    image[..., 0] = 200  # red
    path = fileio.write_image(tmp_path / "a.png", image)
    back = fileio.read_image(path)
    assert back.shape == (4, 5, 3)
    np.testing.assert_array_equal(back, image)


def test_float_images_are_rounded():
    out = fileio.to_uint8(np.array([0.0, 0.5, 1.0], np.float32))
    np.testing.assert_array_equal(out, [0, 128, 255])
    with pytest.raises(TypeError, match="expected uint8, or float"):
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
        fileio.write_image(tmp_path / "x.png", np.zeros((2, 2, 2), np.uint8))


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


# ------------------------------------------------------------------ what the writer replaces
def _special_files(tmp_path):
    """A FIFO, a socket, a folder and (where mknod is allowed) a character device."""
    import socket
    import stat

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    folder = tmp_path / "folder.png"
    folder.mkdir()
    specials = {"fifo": fifo, "socket": sock_path, "folder": folder}
    try:  # a copy of /dev/null (1, 3): never the real one, the test runs as root here
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        specials["device"] = tmp_path / "null"
    except (PermissionError, OSError):
        pass
    return specials, sock


def test_atomic_write_never_replaces_a_non_regular_file(tmp_path):
    specials, sock = _special_files(tmp_path)
    try:
        for kind, path in specials.items():
            before = os.lstat(path)
            with pytest.raises(InputError, match=r"not a regular file .*refusing to replace"):
                fileio.atomic_write_text(path, "x")
            with pytest.raises(InputError, match="not a regular file"):
                fileio.check_output_path(path, overwrite=True)
            after = os.lstat(path)
            assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), kind
        # and through a symlink pointing at one
        link = tmp_path / "link"
        link.symlink_to(specials["fifo"])
        with pytest.raises(InputError, match="not a regular file"):
            fileio.atomic_write_text(link, "x")
        assert link.is_symlink()
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    finally:
        sock.close()


def test_atomic_write_writes_through_a_symlink(tmp_path):
    target = tmp_path / "real" / "weights.json"
    fileio.atomic_write_json(target, {"a": 1})
    os.chmod(target, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    fileio.atomic_write_json(link, {"a": 2})
    assert link.is_symlink() and json.loads(target.read_text()) == {"a": 2}
    assert target.stat().st_mode & 0o777 == 0o640
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "made" / "new.txt")
    fileio.atomic_write_text(dangling, "hello")
    assert dangling.is_symlink() and (tmp_path / "made" / "new.txt").read_text() == "hello"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_mode_follows_the_umask_and_keeps_an_existing_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        fresh = fileio.atomic_write_text(tmp_path / "fresh.txt", "x")
        with open(tmp_path / "plain.txt", "w") as handle:  # what open() gives
            handle.write("x")
        image = fileio.write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    finally:
        os.umask(old)
    expected = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert expected == 0o666 & ~umask
    assert fresh.stat().st_mode & 0o777 == expected
    assert image.stat().st_mode & 0o777 == expected
    # replacing keeps the existing file's mode, as open(path, "w") does
    os.chmod(fresh, 0o604)
    fileio.atomic_write_text(fresh, "y")
    assert fresh.stat().st_mode & 0o777 == 0o604 and fresh.read_text() == "y"


# ------------------------------------------------------------------ output paths, up front
def test_check_output_path(tmp_path):
    out = fileio.check_output_path(tmp_path / "new" / "deeper" / "clean.png", image=True)
    assert out == tmp_path / "new" / "deeper" / "clean.png" and not (tmp_path / "new").exists()
    with pytest.raises(InputError, match=r"cannot write an image as '\.txt'.*\.png"):
        fileio.check_output_path(tmp_path / "out.txt", image=True)
    with pytest.raises(InputError, match=r"has no suffix"):
        fileio.check_output_path(tmp_path / "out", image=True)
    fileio.check_output_path(tmp_path / "out.txt")  # any suffix for other files
    existing = fileio.atomic_write_text(tmp_path / "old.png", "x")
    with pytest.raises(InputError, match=r"old\.png exists; pass --overwrite"):
        fileio.check_output_path(existing, image=True)
    assert fileio.check_output_path(existing, overwrite=True, image=True) == existing
    blocker = fileio.atomic_write_text(tmp_path / "file", "x")
    with pytest.raises(InputError, match=r"cannot create .*file/sub: .*file is not a folder"):
        fileio.check_output_path(blocker / "sub" / "x.png", image=True)
    with pytest.raises(InputError, match="not a folder"):
        fileio.check_output_folder(blocker)
    assert fileio.check_output_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"


def test_check_output_folder_not_writable(tmp_path, monkeypatch):
    # root may write anywhere, so the permission answer is simulated
    real = os.access
    monkeypatch.setattr(fileio.os, "access",
                        lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    with pytest.raises(InputError, match=r"cannot write to .*: permission denied"):
        fileio.check_output_path(tmp_path / "sub" / "x.png")


# ------------------------------------------------------------------ value ranges
@pytest.mark.parametrize("image, message", [
    (np.full((4, 4, 3), 200.0, np.float32),
     r"clean image: expected uint8, or float in \[0, 1\]; got float32 with values in "
     r"\[200, 200\] \(a 0-255 float image\? divide it by 255\)"),
    (np.full((4, 4, 3), -0.5), r"got float64 with values in \[-0.5, -0.5\]"),
    (np.array([[[0.0, np.nan, 1.0]]]), "contains NaN or infinite values"),
])
def test_check_image_values_refuses_out_of_range(image, message):
    with pytest.raises(ValueError, match=message):
        fileio.check_image_values(image, "clean image")


def test_check_image_values_tolerance_and_types():
    almost = np.array([-0.004, 0.5, 1.004], np.float32)
    np.testing.assert_array_equal(fileio.to_uint8(almost), [0, 128, 255])
    assert fileio.check_image_values(np.zeros(3, np.uint8)).dtype == np.uint8
    with pytest.raises(TypeError, match="expected uint8, or float in .* got dtype int64"):
        fileio.check_image_values(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="a 0-255 float image"):
        fileio.write_image(Path("never-written.png"), np.full((8, 8, 3), 255.0))
    assert not Path("never-written.png").exists()


# ------------------------------------------------------------------ what a file held
def _write_raw(path, array):
    ok, data = cv2.imencode(path.suffix, array)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def test_read_image_with_format_reports_and_restore_keeps_it(tmp_path):
    rng = np.random.default_rng(0)
    gray8 = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    gray16 = rng.integers(0, 65536, (12, 10), dtype=np.uint16)
    bgr8 = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    bgra8 = rng.integers(0, 256, (12, 10, 4), dtype=np.uint8)
    bgra16 = rng.integers(0, 65536, (12, 10, 4), dtype=np.uint16)
    cases = {  # name: (file content, gray, bit depth, alpha)
        "gray8.png": (gray8, True, 8, None),
        "gray16.png": (gray16, True, 16, None),
        "rgb8.jpg": (bgr8, False, 8, None),
        "rgba8.png": (bgra8, False, 8, bgra8[..., 3]),
        "rgba16.tif": (bgra16, False, 16, bgra16[..., 3]),
    }
    for name, (raw, gray, depth, alpha) in cases.items():
        path = _write_raw(tmp_path / name, raw)
        image, fmt = fileio.read_image_with_format(path)
        assert (fmt.gray, fmt.bit_depth, fmt.has_alpha) == (gray, depth, alpha is not None), name
        assert image.shape == (12, 10, 3)
        assert image.dtype == (np.uint8 if depth == 8 else np.float32)
        if alpha is not None:
            np.testing.assert_array_equal(fmt.alpha, alpha)
        # identity round trip: what restore_format gives is what the file held
        out = fileio.write_image(tmp_path / f"out_{Path(name).stem}.png"
                                 if depth == 8 else tmp_path / f"out_{name}",
                                 fileio.restore_format(image, fmt))
        back = cv2.imdecode(np.fromfile(str(out), np.uint8), cv2.IMREAD_UNCHANGED)
        if name.endswith(".jpg"):
            np.testing.assert_array_equal(back, cv2.imread(str(path)))
        else:
            np.testing.assert_array_equal(back, raw)
    assert fileio.ImageFormat(gray=True, bit_depth=16).describe() == "16-bit grayscale"
    assert fileio.ImageFormat(gray=False, bit_depth=8, alpha=np.zeros((1, 1), np.uint8)
                              ).describe() == "8-bit RGB with alpha"


def test_restore_format_makes_gray_output_gray():
    fmt = fileio.ImageFormat(gray=True, bit_depth=8)
    derained = np.zeros((9, 9, 3), np.float32)
    derained[..., 0], derained[..., 1], derained[..., 2] = 0.2, 0.4, 0.6  # unequal channels
    out = fileio.restore_format(derained, fmt)
    assert out.shape == (9, 9) and out.dtype == np.uint8 and (out == 102).all()
    with_alpha = fileio.ImageFormat(gray=True, bit_depth=16,
                                    alpha=np.full((9, 9), 7, np.uint16))
    out = fileio.restore_format(derained, with_alpha)
    assert out.shape == (9, 9, 4) and out.dtype == np.uint16
    assert (out[..., :3] == round(0.4 * 65535)).all() and (out[..., 3] == 7).all()
    with pytest.raises(ValueError, match=r"alpha is 9 x 9 but the image is 8 x 9"):
        fileio.restore_format(derained[:8], with_alpha)


def test_write_image_refuses_what_the_suffix_cannot_hold(tmp_path):
    with pytest.raises(InputError, match=r"'\.jpg' cannot hold 16-bit images.*\.png"):
        fileio.write_image(tmp_path / "x.jpg", np.zeros((8, 8), np.uint16))
    with pytest.raises(InputError, match=r"'\.jpg' cannot hold an alpha channel.*\.png"):
        fileio.write_image(tmp_path / "x.jpg", np.zeros((8, 8, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_small_and_unsupported_images_are_refused(tmp_path):
    tiny = _write_raw(tmp_path / "tiny.png", np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(InputError, match=r"tiny\.png is 1 x 1 pixels; images must be at least "
                                         r"8 x 8"):
        fileio.read_image_with_format(tiny)
    with pytest.raises(InputError, match="at least 8 x 8"):
        fileio.check_image_size(np.zeros((7, 100, 3)), "frame")
    fileio.check_image_size(np.zeros((8, 8)), "frame")
    deep = _write_raw(tmp_path / "deep.tif", np.zeros((9, 9, 3), np.float32))
    with pytest.raises(InputError, match=r"deep\.tif holds 32-bit float samples; .*8 or 16"):
        fileio.read_image_with_format(deep)


def test_round_to_uint8_rounds_half_up_like_to_uint8():
    round_to_uint8 = fileio.round_to_uint8
    levels = np.array([-3.0, 0.49, 0.5, 1.5, 2.5, 127.5, 254.5, 254.51, 300.0])
    assert round_to_uint8(levels).tolist() == [0, 0, 1, 2, 3, 128, 255, 255, 255]
    assert round_to_uint8(np.array([7], np.int64)).dtype == np.uint8
    # the same rule as to_uint8 on [0, 1] floats: every level's midpoint goes up
    unit = (np.arange(255) + 0.5) / 255.0
    np.testing.assert_array_equal(fileio.to_uint8(unit), round_to_uint8(unit * 255.0))


def test_natural_key_orders_numbers_and_breaks_ties_on_the_exact_name():
    natural_key = fileio.natural_key
    names = ["frame10.png", "Frame2.png", "frame2.png", "frame1.png"]
    assert sorted(names, key=natural_key) == ["frame1.png", "Frame2.png", "frame2.png",
                                              "frame10.png"]
    assert sorted(reversed(names), key=natural_key) == sorted(names, key=natural_key)
