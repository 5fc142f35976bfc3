"""Streaming §3 (issue 21): frames read in passes, motion measured as they stream, a bounded
set of frames kept for the estimate; results checked against the in-memory path and the truth.
"""

import numpy as np
import pytest

from spanetlib.io.errors import InputError
from spanetlib.io.video import FrameSource, iter_frames, read_sequence, write_video
from spanetlib.pipeline.alignment import measure_motion, motion_displacement
from spanetlib.pipeline.clip_estimate import estimate_clip
from spanetlib.pipeline.lazy_jit import lazy_njit
from spanetlib.synthesis.rain import CLIP_PRESETS, make_rain_clip


@pytest.fixture(scope="module")
def handheld():
    return make_rain_clip(CLIP_PRESETS["handheld"].replace(size=(96, 128), n_frames=36), 1)


@pytest.fixture(scope="module")
def handheld_file(handheld, tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("stream") / "clip.mkv", handheld.frames)


def _psnr(a, b, mask):
    d = (a.astype(np.float64) - b.astype(np.float64))[mask] ** 2
    return 10 * np.log10(255.0 ** 2 / max(d.mean(), 1e-12))


def test_iter_frames_and_frame_source_read_what_read_sequence_reads(handheld_file):
    frames = read_sequence(handheld_file)
    streamed = np.stack(list(iter_frames(handheld_file, start=3, count=5)))
    np.testing.assert_array_equal(streamed, frames[3:8])
    source = FrameSource(handheld_file)
    assert len(source) == len(frames) and source.shape == frames.shape[1:3]
    np.testing.assert_array_equal(np.stack(list(source)), frames)
    np.testing.assert_array_equal(source.take([0, 7, 35]), frames[[0, 7, 35]])
    assert [i for i, _ in source.iter_at([30, 2])] == [2, 30]
    np.testing.assert_array_equal(FrameSource(frames).take([4, 5]), frames[4:6])


def test_iter_frames_rejects_a_missing_source(tmp_path):
    with pytest.raises(InputError, match="not found"):
        next(iter_frames(tmp_path / "none.mp4"))


def test_motion_of_a_file_source_is_the_motion_of_its_frames(handheld, handheld_file):
    # FFV1 is lossless: the same frames, the same measurement, bit for bit.
    from_file = measure_motion(FrameSource(handheld_file))
    from_array = measure_motion(handheld.frames)
    np.testing.assert_array_equal(from_file.matrices, from_array.matrices)
    np.testing.assert_array_equal(from_file.gain, from_array.gain)
    truth = handheld.true_motion(from_array.reference)
    err = motion_displacement(np.linalg.inv(truth) @ from_array.matrices, (96, 128))
    assert err.mean() < 0.05  # the accuracy goal of tests/test_alignment.py


def test_estimate_of_a_path_equals_the_estimate_of_its_frames(handheld, handheld_file):
    from_file = estimate_clip(handheld_file)
    from_array = estimate_clip(handheld.frames)
    np.testing.assert_array_equal(from_file.membership, from_array.membership)
    assert len(from_file.segments) == len(from_array.segments)
    for a, b in zip(from_file.segments, from_array.segments, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
    for i, _ in from_array.pairs():
        np.testing.assert_array_equal(from_file.usable_mask(i), from_array.usable_mask(i))


def test_streamed_estimate_keeps_at_most_max_kept_frames_and_pairs_correctly(handheld):
    kept = 20
    result = estimate_clip(handheld.frames, max_kept=kept)
    n = len(handheld.frames)
    assert len(result.membership) == n
    used = np.unique(np.concatenate([s.frames for s in result.segments]))
    assert len(used) <= kept + 1  # the kept frames (and the reference)
    pairs = result.pairs()
    # Frames that were not kept are paired too: checked as they streamed past.
    assert any(i not in used for i, _ in pairs)
    assert len(pairs) >= n // 2
    psnrs = [_psnr(result.clean_for_frame(i), handheld.truth[i], result.usable_mask(i))
             for i, _ in pairs]
    assert min(psnrs) > 30.0  # no wrong pair (the threshold of bench_clips.py)
    assert all(result.usable_mask(i).any() for i, _ in pairs)
    assert not result.usable_mask(int(np.flatnonzero(result.membership < 0)[0])).any() \
        if (result.membership < 0).any() else True


def test_max_kept_is_checked(handheld):
    with pytest.raises(ValueError, match="max_kept"):
        estimate_clip(handheld.frames, max_kept=1)


def test_estimate_background_streams_the_clip_and_writes_the_in_memory_estimate(
        handheld, handheld_file, tmp_path, monkeypatch):
    from spanetlib.io import video
    from spanetlib.io.files import read_image, round_to_uint8
    from spanetlib.pipeline import clean_images, review
    from spanetlib.pipeline.alignment import crop_box

    expected = estimate_clip(handheld.frames)

    def never(*args, **kwargs):
        raise AssertionError("estimate-background read the whole clip into memory")

    monkeypatch.setattr(video, "read_sequence", never)
    monkeypatch.setattr(review, "read_sequence", never)
    written = clean_images.export_clean_images(handheld_file, tmp_path / "clean.png")
    assert len(written.images) == len(expected.segments)
    for path, seg in zip(written.images, expected.segments, strict=True):
        y0, y1, x0, x1 = crop_box(seg.valid)
        np.testing.assert_array_equal(read_image(path), round_to_uint8(seg.image)[y0:y1, x0:x1])


def test_the_section3_commands_import_no_torch_numba_or_scipy_at_startup():
    # What `spanet estimate-background` / `build-dataset` import before the first frame; numba
    # comes with the first kernel call (spanetlib.pipeline.lazy_jit), scipy where it is used.
    import subprocess
    import sys

    code = ("import sys, spanetlib.cli, spanetlib.pipeline.export, spanetlib.pipeline.review; "
            "print(' '.join(m for m in ('torch', 'numba', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


@lazy_njit(cache=False)
def _toy_kernel(a):
    total = 0.0
    for k in range(a.size):
        total += a[k] * (k + 1)
    return total


def test_lazy_kernels_compile_on_first_call_and_compute_what_the_python_does():
    import sys

    a = np.random.default_rng(0).random(17)
    assert type(_toy_kernel).__name__ == "function"  # not compiled yet
    assert _toy_kernel(a) == pytest.approx(_toy_kernel.py_func(a), rel=1e-12)
    compiled = sys.modules[__name__]._toy_kernel
    assert type(compiled).__name__ == "CPUDispatcher"  # in place of the wrapper now
    assert compiled(a[:5]) == pytest.approx(float(np.dot(a[:5], np.arange(1, 6))), rel=1e-12)


@pytest.mark.parametrize(("max_kept", "max_side", "passes"), [
    (None, 640, 1),  # every frame kept: one pass, the motion measured in memory
    (12, 64, 2),  # one pass keeps frames and working lumas, one pair-checks the others
    (12, 640, 3),  # lumas too large: the template's frames, the motion, the pair checks
], ids=["all kept", "lumas kept", "template pass"])
def test_decoding_passes_of_a_streamed_clip(handheld_file, monkeypatch, max_kept, max_side,
                                            passes):
    import spanetlib.io.video as video

    decoded = []
    real = video.cv2.VideoCapture

    class Counting:
        def __init__(self, *args):
            self.cap = real(*args)

        def __getattr__(self, name):
            return getattr(self.cap, name)

        def grab(self):
            decoded.append(1)
            return self.cap.grab()

        def read(self):
            decoded.append(1)
            return self.cap.read()

    monkeypatch.setattr(video.cv2, "VideoCapture", Counting)
    result = estimate_clip(handheld_file, max_side=max_side,
                           **({} if max_kept is None else {"max_kept": max_kept}))
    n = len(result.membership)
    # besides a few reads to open the file (its first frame, its length, the end of the
    # stream); a pass may stop at its last frame
    assert (passes - 1) * n < len(decoded) <= passes * n + 3
    assert len(result.pairs()) >= n // 2


@pytest.mark.parametrize("max_side", [640, 64], ids=["template pass", "working lumas kept"])
def test_a_streamed_clip_beyond_max_kept_equals_its_estimate_in_memory(handheld, handheld_file,
                                                                      max_side):
    # At max_side 64 every frame's working luma fits in a quarter of the kept frames: the
    # motion comes from those, and the template's pass is not needed.
    streamed = estimate_clip(handheld_file, max_kept=12, max_side=max_side)
    in_memory = estimate_clip(handheld.frames, max_kept=12, max_side=max_side)
    np.testing.assert_array_equal(streamed.motion.matrices, in_memory.motion.matrices)
    np.testing.assert_array_equal(streamed.membership, in_memory.membership)
    for a, b in zip(streamed.segments, in_memory.segments, strict=True):
        np.testing.assert_array_equal(a.image, b.image)


def test_a_frame_missing_from_the_checking_pass_is_an_error_not_a_shifted_pair(handheld):
    # The pair checks stream the frames that were not kept again (the last pass), interleaved
    # with the kept ones in the clip's order; a pass that skips one must not pair the next
    # frame in its place.
    class Counting(FrameSource):
        calls = 0
        drop_in_call = -1

        def iter_at(self, indices):
            type(self).calls += 1
            items = list(super().iter_at(indices))
            if type(self).calls == self.drop_in_call:
                del items[len(items) // 2]
            return iter(items)

    result = estimate_clip(Counting(handheld.frames), max_kept=12)
    assert len(result.pairs()) >= len(handheld.frames) // 2
    Counting.drop_in_call, Counting.calls = Counting.calls, 0
    with pytest.raises(InputError, match="an array of 36 frames: frame [0-9]+ could not be "
                                         "decoded again"):
        estimate_clip(Counting(handheld.frames), max_kept=12)
