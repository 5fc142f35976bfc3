"""Sound tracks in video containers: found in MP4/MOV and AVI headers, and named by derain-video."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from spanetlib import cli
from spanetlib.io.sound import has_sound_track
from spanetlib.io.video import read_sequence, write_video
from spanetlib.synthesis.rain import CLIP_PRESETS, make_rain_clip


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _track(handler: bytes) -> bytes:
    hdlr = bytes(4) + bytes(4) + handler + bytes(12) + b"\0"
    return _box(b"trak", _box(b"mdia", _box(b"hdlr", hdlr)))


def _with_track(mp4: bytes, handler: bytes) -> bytes:
    """An MP4 with one more track in its ``moov`` (after ``mdat``: no offset moves)."""
    pos = 0
    while pos < len(mp4):
        size, kind = struct.unpack_from(">I4s", mp4, pos)
        if kind == b"moov":
            moov = mp4[pos + 8:pos + size] + _track(handler)
            return mp4[:pos] + _box(b"moov", moov) + mp4[pos + size:]
        pos += size
    raise AssertionError("no moov box")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack("<4sI", kind, len(payload)) + payload + bytes(len(payload) & 1)


def _avi(*stream_kinds: bytes) -> bytes:
    strls = b"".join(_chunk(b"LIST", b"strl" + _chunk(b"strh", kind + bytes(52)))
                     for kind in stream_kinds)
    hdrl = _chunk(b"LIST", b"hdrl" + _chunk(b"avih", bytes(56)) + strls)
    body = b"AVI " + hdrl + _chunk(b"LIST", b"movi")
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture(scope="module")
def frames():
    return make_rain_clip(CLIP_PRESETS["static"].replace(size=(48, 64), n_frames=6), 0).frames


def test_iso_tracks_are_read_from_the_handler(tmp_path, frames):
    plain = write_video(tmp_path / "plain.mp4", frames)
    assert has_sound_track(plain) is False  # OpenCV writes the picture only
    data = plain.read_bytes()
    sound = tmp_path / "sound.mp4"
    sound.write_bytes(_with_track(data, b"soun"))
    assert has_sound_track(sound) is True
    other = tmp_path / "text.mov"
    other.write_bytes(_with_track(data, b"text"))  # a subtitle track is no sound
    assert has_sound_track(other) is False
    # The file still decodes as it did.
    assert np.array_equal(read_sequence(sound), read_sequence(plain))


def test_avi_streams_are_read_from_their_headers(tmp_path, frames):
    assert has_sound_track(write_video(tmp_path / "plain.avi", frames)) is False
    for kinds, expected in (((b"vids", b"auds"), True), ((b"vids",), False),
                            ((b"auds",), True)):
        path = tmp_path / "made.avi"
        path.write_bytes(_avi(*kinds))
        assert has_sound_track(path) is expected


@pytest.mark.parametrize("data", [b"", b"\x1aE\xdf\xa3" + bytes(40), bytes(100),
                                  struct.pack(">I4s", 0xFFFF, b"ftyp") + bytes(8)])
def test_other_or_broken_files_are_unknown(tmp_path, data):
    path = tmp_path / "clip.bin"
    path.write_bytes(data)
    assert has_sound_track(path) is None
    assert has_sound_track(tmp_path / "missing.mp4") is None


def test_derain_video_says_the_sound_is_left_out(tmp_path, capsys, frames, tiny_weights):
    plain = write_video(tmp_path / "plain.mp4", frames)
    sound = tmp_path / "rain.mp4"
    sound.write_bytes(_with_track(plain.read_bytes(), b"soun"))
    out = tmp_path / "derained.mkv"
    args = ["--weights", str(tiny_weights), "--device", "cpu"]
    assert cli.main(["derain-video", str(sound), "-o", str(out), *args]) == 0
    printed = capsys.readouterr().out
    assert f"{out} has no sound" in printed
    assert (f"ffmpeg -i {out} -i {sound} -map 0:v -map 1:a -c copy "
            f"{tmp_path / 'derained_with_sound.mkv'}") in printed
    # A folder holding the clip: the command names the clip itself.
    scene = tmp_path / "street"
    scene.mkdir()
    sound.rename(scene / "rain.mp4")
    frames_out = tmp_path / "frames"
    assert cli.main(["derain-video", str(scene), "-o", str(frames_out), *args]) == 0
    assert f"the sound of {scene / 'rain.mp4'} is not in the frames" in capsys.readouterr().out
    assert cli.main(["derain-video", str(plain), "-o", str(tmp_path / "b.mkv"), *args]) == 0
    assert "sound" not in capsys.readouterr().out
