import re

import cv2
import numpy as np
import pytest

from spanetlib.io import video
from spanetlib.io.errors import InputError
from spanetlib.io.files import write_image
from spanetlib.io.video import (
    IDENTITY_FRAMES,
    VIDEO_CODECS,
    SourceIdentity,
    VideoWriter,
    count_frames,
    list_scenes,
    read_sequence,
    scene_name,
    source_identity,
    write_frames,
    write_video,
)
from spanetlib.synthesis.rain import load_background, make_rain_video


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Six distinct 48 x 64 frames: a photo with a moving bright square."""
    bg = load_background("coffee", (48, 64))
    out = np.repeat(bg[None], 6, axis=0)
    for i in range(6):
        out[i, 8:16, 4 + 8 * i:12 + 8 * i] = 255
    return out


# ----------------------------------------------------------------------------- folders
def test_write_frames_read_sequence_round_trip(tmp_path, frames):
    paths = write_frames(tmp_path / "seq", frames)
    assert [p.name for p in paths] == [f"frame_{i:05d}.png" for i in range(6)]
    back = read_sequence(tmp_path / "seq")
    assert back.dtype == np.uint8 and back.shape == frames.shape
    np.testing.assert_array_equal(back, frames)
    np.testing.assert_array_equal(read_sequence(tmp_path / "seq", start=2, count=3), frames[2:5])
    np.testing.assert_array_equal(read_sequence(tmp_path / "seq", start=4), frames[4:])
    # count beyond the end reads what is there
    np.testing.assert_array_equal(read_sequence(tmp_path / "seq", start=3, count=99), frames[3:])


def test_folder_natural_order_and_skips(tmp_path, frames):
    folder = tmp_path / "nat"
    for i in (10, 2, 1):  # frame2 must come before frame10
        write_image(folder / f"frame{i}.jpg" if i == 2 else folder / f"frame{i}.png", frames[i % 6])
    (folder / "notes.txt").write_text("not a frame")
    write_image(folder / ".frame3.png.abc.tmp.png", frames[3])  # a leftover atomic temp file
    back = read_sequence(folder)
    assert len(back) == 3
    np.testing.assert_array_equal(back[0], frames[1])
    np.testing.assert_array_equal(back[2], frames[4])  # frame10 last (10 % 6 == 4)


def test_progress_bar(tmp_path, frames, capsys):
    write_frames(tmp_path / "p", frames[:3])
    read_sequence(tmp_path / "p", progress=True)
    assert "reading p" in capsys.readouterr().err


# ----------------------------------------------------------------------------- videos
def test_write_video_avi_is_lossless(tmp_path, frames):
    assert VIDEO_CODECS[".avi"] == "FFV1"
    path = write_video(tmp_path / "clip.avi", frames, fps=10)
    assert path.is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    back = read_sequence(path)
    np.testing.assert_array_equal(back, frames)
    np.testing.assert_array_equal(read_sequence(path, start=2, count=3), frames[2:5])
    np.testing.assert_array_equal(read_sequence(path, start=4), frames[4:])


def test_write_video_mp4_round_trip_within_lossy_tolerance(tmp_path, frames):
    path = write_video(tmp_path / "clip.mp4", frames)
    back = read_sequence(path)
    assert back.shape == frames.shape
    err = np.abs(back.astype(float) - frames).mean(axis=(1, 2, 3))
    assert err.max() < 12.0, err
    # frames stay in order: each decoded frame is closest to its own original
    dists = np.abs(back[:, None].astype(float) - frames[None]).mean(axis=(2, 3, 4))
    assert (dists.argmin(axis=1) == np.arange(6)).all()


def test_write_video_errors(tmp_path, frames):
    with pytest.raises(ValueError, match=r"video suffix: expected one of .*'.avi'.*got '.gif'"):
        write_video(tmp_path / "x.gif", frames)
    with pytest.raises(ValueError, match=r"frames: expected N x H x W x 3 uint8 or float RGB "
                                         r"with N >= 1, got shape \(48, 64, 3\)"):
        write_video(tmp_path / "x.avi", frames[0])
    with pytest.raises(ValueError, match=r"fps: expected > 0, got 0"):
        write_video(tmp_path / "x.avi", frames, fps=0)
    with pytest.raises(ValueError, match=r"codec: expected a four-character code"):
        write_video(tmp_path / "x.avi", frames, codec="H264X")
    with pytest.raises(ValueError, match=r"ext: expected one of"):
        write_frames(tmp_path / "f", frames, ext=".gif")


# ----------------------------------------------------------------------------- errors
def test_missing_source(tmp_path):
    with pytest.raises(InputError, match=r"sequence not found: .*nowhere"):
        read_sequence(tmp_path / "nowhere")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(InputError, match=r"no image frames .* in folder: .*empty"):
        read_sequence(tmp_path / "empty")


def test_unreadable_frame_is_named(tmp_path, frames):
    write_frames(tmp_path / "bad", frames[:3])
    (tmp_path / "bad" / "frame_00001.png").write_bytes(b"definitely not a png")
    with pytest.raises(InputError, match=r"cannot read image: .*frame_00001\.png"):
        read_sequence(tmp_path / "bad")


def test_too_few_frames_says_how_many(tmp_path, frames):
    write_frames(tmp_path / "few", frames[:3])
    with pytest.raises(InputError, match=r"found 1 frame in .*few from frame 2; need at least 2"):
        read_sequence(tmp_path / "few", start=2)
    with pytest.raises(InputError, match=r"found 3 frames .*need at least 5"):
        read_sequence(tmp_path / "few", min_frames=5)
    with pytest.raises(InputError, match=r"found 0 frames .*count=0"):
        read_sequence(tmp_path / "few", count=0)
    assert read_sequence(tmp_path / "few", start=2, min_frames=1).shape[0] == 1


def test_mixed_sizes_name_the_file_and_both_sizes(tmp_path, frames):
    folder = tmp_path / "mixed"
    write_frames(folder, frames[:3])
    write_image(folder / "frame_00002.png", frames[2][:40, :50])
    with pytest.raises(InputError, match=re.escape("frame frame_00002.png is 50x40 but "
                                                   "frame_00000.png is 64x48")):
        read_sequence(folder)


def test_negative_start_or_count(tmp_path, frames):
    write_frames(tmp_path / "s", frames[:3])
    with pytest.raises(InputError, match=r"start: expected an int >= 0, got -1"):
        read_sequence(tmp_path / "s", start=-1)
    with pytest.raises(InputError, match=r"count: expected an int >= 0, got -2"):
        read_sequence(tmp_path / "s", count=-2)
    with pytest.raises(InputError, match=r"start: expected an int >= 0, got 1.5"):
        read_sequence(tmp_path / "s", start=1.5)
    with pytest.raises(ValueError, match=r"min_frames: expected an int >= 1, got 0"):
        read_sequence(tmp_path / "s", min_frames=0)


def test_unreadable_video_and_image_source(tmp_path, frames):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video" * 20)
    with pytest.raises(InputError, match=r"cannot open video: .*broken\.mp4"):
        read_sequence(bad)
    image = write_image(tmp_path / "one.png", frames[0])
    with pytest.raises(InputError, match=r"expected a video file or a folder of frames, got an "
                                         r"image: .*one\.png"):
        read_sequence(image)


def test_video_start_past_the_end(tmp_path, frames):
    path = write_video(tmp_path / "short.avi", frames[:3])
    with pytest.raises(InputError, match=r"found 0 frames .* from frame 7: the video has only 3 "
                                         r"frames; need at least 2"):
        read_sequence(path, start=7)
    with pytest.raises(InputError, match=r"found 1 frame in .*short\.avi from frame 2"):
        read_sequence(path, start=2)


# ----------------------------------------------------------------------------- aligned read
def _shift(image, dx, dy):
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    h, w = image.shape[:2]
    return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT_101)


def test_frames_read_from_a_folder_align_to_the_middle_frame(tmp_path):
    from spanetlib.pipeline.alignment import align_frames

    bg = load_background("motorcycle_left", (96, 128))
    video_ = make_rain_video(bg, 5, "normal", seed=1, jitter_px=4.0)
    write_frames(tmp_path / "rainy", video_.frames)
    steady = align_frames(read_sequence(tmp_path / "rainy"), "on").frames
    # aligned to the middle frame: compare with the background as that frame sees it
    ref = video_.shifts[len(video_.frames) // 2]
    target = _shift(bg, *ref)[8:-8, 8:-8].astype(float)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    before = np.abs(video_.frames[inner].astype(float) - target).mean()
    after = np.abs(steady[inner].astype(float) - target).mean()
    # The best possible: undo the true sub-pixel shifts (what is left is rain + resampling).
    ideal = np.stack([_shift(f, ref[0] - dx, ref[1] - dy)
                      for f, (dx, dy) in zip(video_.frames, video_.shifts, strict=True)])
    best = np.abs(ideal[inner].astype(float) - target).mean()
    assert after < 0.4 * before
    assert after < 1.15 * best


# ----------------------------------------------------------------------------- identity
def test_source_identity_tells_content_apart(tmp_path, frames):
    a = write_frames(tmp_path / "a", frames)[0].parent
    ident = source_identity(a)
    assert ident.path == str(a.resolve()) and ident.frames == 6
    assert ident.size == sum(p.stat().st_size for p in a.iterdir())
    # moved: the same content
    moved = a.rename(tmp_path / "moved")
    again = source_identity(moved)
    assert again.same_content(ident) and again.path != ident.path
    # the same names and count, other frames: another content
    other = frames.copy()
    other[:, 0, 0] = 7
    b = write_frames(tmp_path / "b", other)[0].parent
    assert not source_identity(b).same_content(ident)
    # a frame after the hashed ones changed: the size tells
    last = frames.copy()
    last[IDENTITY_FRAMES:] = 255 - last[IDENTITY_FRAMES:]
    c = write_frames(tmp_path / "c", last)[0].parent
    assert not source_identity(c).same_content(ident)
    # a video file of the same frames is another source (lossless: same digest, other size)
    v = source_identity(write_video(tmp_path / "a.avi", frames))
    assert v.digest == ident.digest and v.frames == 6 and not v.same_content(ident)
    # JSON round trip, and bad JSON refused
    assert SourceIdentity.from_dict(ident.to_dict()) == ident
    assert "6 frames" in ident.describe() and ident.digest[:12] in ident.describe()
    with pytest.raises(ValueError, match="source identity: expected"):
        SourceIdentity.from_dict({**ident.to_dict(), "digest": "xyz"})
    with pytest.raises(InputError, match="scene source not found"):
        source_identity(tmp_path / "missing")


# ----------------------------------------------------------------------------- list_scenes
def test_list_scenes(tmp_path, frames):
    src = tmp_path / "src"
    src.mkdir()
    write_video(src / "b.avi", frames[:2])
    (src / "A10.MP4").write_bytes(b"x")  # suffix matched in any case; content not checked here
    (src / "A2.mkv").write_bytes(b"x")
    (src / ".hidden.mp4").write_bytes(b"x")
    (src / "notes.txt").write_text("x")
    write_frames(src / "scene_frames", frames[:2])
    (src / "empty_dir").mkdir()
    scenes = list_scenes(src)
    assert [p.name for p in scenes] == ["A2.mkv", "A10.MP4", "b.avi", "scene_frames"]
    assert all(p.parent == src for p in scenes)
    with pytest.raises(InputError, match=r"scene folder not found: .*missing"):
        list_scenes(tmp_path / "missing")
    with pytest.raises(InputError, match=r"expected a folder .* got a file: .*notes\.txt"):
        list_scenes(src / "notes.txt")


# ----------------------------------------------------------------------------- count_frames
def test_count_frames_of_a_folder_and_a_video(tmp_path, frames):
    write_frames(tmp_path / "seq", frames)
    (tmp_path / "seq" / ".frame_99999.png.tmp.png").write_bytes(b"x")  # hidden: not a frame
    (tmp_path / "seq" / "notes.txt").write_text("x")
    assert count_frames(tmp_path / "seq") == len(frames) == 6
    assert count_frames(str(write_video(tmp_path / "clip.avi", frames[:4]))) == 4
    assert count_frames(write_video(tmp_path / "clip.mp4", frames[:5])) == 5
    (tmp_path / "empty").mkdir()
    assert count_frames(tmp_path / "empty") == 0
    with pytest.raises(InputError, match=r"scene source not found: .*missing"):
        count_frames(tmp_path / "missing")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(InputError, match="cannot open video"):
        count_frames(tmp_path / "broken.mp4")


def test_count_frames_reads_a_video_without_a_recorded_count(tmp_path, frames, monkeypatch):
    path = write_video(tmp_path / "clip.avi", frames[:3])
    real, opened = cv2.VideoCapture, []

    class NoCount:
        """A capture whose container records no frame count (as some files do)."""

        def __init__(self, source):
            opened.append(source)
            self._capture = real(source)

        def get(self, prop):
            return 0.0 if prop == cv2.CAP_PROP_FRAME_COUNT else self._capture.get(prop)

        def __getattr__(self, name):
            return getattr(self._capture, name)

    monkeypatch.setattr(video.cv2, "VideoCapture", NoCount)
    assert count_frames(path) == 3
    assert len(opened) == 2  # asked for the count, then read the frames


def test_scene_name_of_files_and_folders(tmp_path, frames):
    clip = write_video(tmp_path / "street.01.avi", frames[:2])
    write_frames(tmp_path / "roof", frames[:2])
    assert scene_name(clip) == "street.01"
    assert scene_name(tmp_path / "roof") == "roof"
    assert [scene_name(p) for p in list_scenes(tmp_path)] == ["roof", "street.01"]


# ----------------------------------------------------------------------------- partial decodes
@pytest.fixture(scope="module")
def truncated_avi(tmp_path_factory):
    """An FFV1 AVI of 60 frames cut to a third: its header still says 60, about 20 decode.

    A static scene with sensor noise (the frames of a clip, not unrelated images: the CLI's
    estimate finds no stable period in frames of pure noise and says so).
    """
    folder = tmp_path_factory.mktemp("truncated")
    rng = np.random.default_rng(0)
    scene = load_background("coffee", (32, 48)).astype(np.int16)
    noisy = np.clip(scene + rng.integers(-12, 13, (60, 32, 48, 3)), 0, 255).astype(np.uint8)
    full = write_video(folder / "full.avi", noisy)
    data = full.read_bytes()
    cut = folder / "cut.avi"
    cut.write_bytes(data[:len(data) // 3])
    capture = cv2.VideoCapture(str(cut))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 60  # the container still says 60
    capture.release()
    return cut


def test_partial_decode_warns_with_both_counts(truncated_avi):
    with pytest.warns(video.PartialVideoWarning,
                      match=r"cut\.avi: the container says 60 frames but only (\d+) decode"
                      ) as record:
        frames = read_sequence(truncated_avi)
    decoded = int(re.search(r"only (\d+) decode", str(record[0].message)).group(1))
    assert len(frames) == decoded and 10 < decoded < 30
    with pytest.warns(video.PartialVideoWarning, match="says 60 frames but only"):
        assert count_frames(truncated_avi) == decoded  # the count does not lie either
    with pytest.warns(video.PartialVideoWarning, match="says 60 frames"):
        read_sequence(truncated_avi, start=5, count=40)


def test_complete_videos_and_short_reads_do_not_warn(tmp_path, frames, truncated_avi):
    import warnings

    clip = write_video(tmp_path / "clip.avi", frames)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert count_frames(clip) == 6
        assert len(read_sequence(clip)) == 6
        assert len(read_sequence(truncated_avi, count=5)) == 5  # the frames asked for decode


def test_cli_shows_the_partial_decode_warning_as_one_line(truncated_avi, tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "spanetlib.cli", "estimate-background",
                             str(truncated_avi), "-o", str(tmp_path / "clean.png")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [x for x in result.stderr.splitlines() if "warning" in x]
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(r"spanet estimate-background: warning: .*cut\.avi: the container says "
                        r"60 frames but only \d+ decode; using \d+", lines[0])
    assert "Slice pointer" not in result.stderr  # FFmpeg's own messages are silenced


# ----------------------------------------------------------------------------- tiny frames
def test_frames_below_the_minimum_size_are_refused(tmp_path):
    write_frames(tmp_path / "tiny", np.zeros((3, 1, 1, 3), np.uint8))
    with pytest.raises(InputError, match=r"frame 0 of .*tiny is 1 x 1 pixels; images must be "
                                         r"at least 8 x 8"):
        read_sequence(tmp_path / "tiny")


# ----------------------------------------------------------------------------- scene names
def test_scene_names_are_made_safe_deterministically(tmp_path, frames):
    spaced = write_frames(tmp_path / "my street", frames[:2])[0].parent
    accented = write_video(tmp_path / "rue de l'été.avi", frames[:2])
    name = scene_name(spaced)
    assert re.fullmatch(r"my_street-[0-9a-f]{8}", name) and name == scene_name(spaced)
    assert re.fullmatch(r"rue_de_l_t-[0-9a-f]{8}", scene_name(accented))
    assert scene_name(tmp_path / "my_street") == "my_street"  # safe names are kept
    assert scene_name(tmp_path / "my_street") != name  # never the same as another scene's
    assert scene_name(tmp_path / "._x") != scene_name(tmp_path / "__x")
    assert re.fullmatch(video.SCENE_NAME_PATTERN, scene_name(tmp_path / (" " * 3)))


def test_video_writer_streams_frames_and_moves_the_file_into_place(tmp_path, frames):
    path = tmp_path / "stream.avi"
    with VideoWriter(path, frames.shape[1:3], fps=10) as out:
        for frame in frames:
            out.write(frame)
            assert not path.exists()  # hidden temporary file until the block ends
    assert out.count == len(frames)
    np.testing.assert_array_equal(read_sequence(path), frames)  # FFV1 is lossless
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stream.avi"]


def test_video_writer_leaves_the_destination_on_error_or_no_frame(tmp_path, frames):
    path = tmp_path / "kept.avi"
    write_video(path, frames[:2])
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"frame 1: expected shape \(48, 64, 3\), got"):
        with VideoWriter(path, (48, 64)) as out:
            out.write(frames[0])
            out.write(frames[1, :40])
    with pytest.raises(ValueError, match="no frame written"):
        with VideoWriter(path, (48, 64)):
            pass
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.avi"]
    with pytest.raises(ValueError, match="height: expected an int >= 1"):
        VideoWriter(path, (0, 64))
