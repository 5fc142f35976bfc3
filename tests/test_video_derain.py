"""Deraining whole clips (`spanetlib.derain.video`, ``spanet derain-video``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from spanetlib import cli
from spanetlib.derain import video as video_derain
from spanetlib.derain.images import derain_array, tile_starts
from spanetlib.derain.video import (
    DEFAULT_WINDOW,
    MANIFEST_NAME,
    MIN_AUTO_WINDOW,
    MIN_FRAMES,
    WINDOW_FRAME_BYTES,
    auto_window,
    blend_weight,
    derain_clip,
    derain_video,
    derain_windows,
)
from spanetlib.evaluation.metrics import psnr as metric_psnr
from spanetlib.io.errors import InputError
from spanetlib.io.files import read_image, round_to_uint8, write_image
from spanetlib.io.video import list_frame_files, read_sequence, write_frames, write_video
from spanetlib.models import load_pretrained
from spanetlib.paper import video_experiment
from spanetlib.paper.video_experiment import score_clip
from spanetlib.synthesis.rain import CLIP_PRESETS, make_rain_clip

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_clip(preset: str, size=(48, 64), n_frames=12, seed=0):
    return make_rain_clip(CLIP_PRESETS[preset].replace(size=size, n_frames=n_frames), seed)


@pytest.fixture(scope="module")
def synthetic():
    return load_pretrained("synthetic")


@pytest.fixture(scope="module")
def static_results(synthetic):
    clip = tiny_clip("static")
    return clip, {method: derain_clip(clip.frames, synthetic, method=method)
                  for method in ("hybrid", "temporal", "spanet")}


@pytest.fixture(scope="module")
def passing_results(synthetic):
    clip = tiny_clip("passing", size=(64, 96), n_frames=16)
    return clip, {method: derain_clip(clip.frames, synthetic, method=method)
                  for method in ("hybrid", "temporal", "spanet")}


# --------------------------------------------------------------------------------------------
# Windows and blending
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, window", [(5, 60), (60, 60), (61, 60), (200, 60), (23, 6),
                                       (7, 5)])
def test_windows_partition_the_clip_and_centre_each_block(n, window):
    plan = derain_windows(n, window)
    outputs = [i for win in plan for i in range(win.out_start, win.out_stop)]
    assert outputs == list(range(n))
    for win in plan:
        assert 0 <= win.start <= win.out_start < win.out_stop <= win.stop <= n
        assert win.stop - win.start == min(n, window)
        if n > window:  # at least a quarter window on each side, unless at the clip's ends
            assert win.out_start - win.start >= window // 4 or win.start == 0
            assert win.stop - win.out_stop >= window // 4 - 1 or win.stop == n


def test_auto_window_fits_the_frames_in_the_budget():
    assert auto_window((480, 640, 3)) == auto_window((720, 1280)) == DEFAULT_WINDOW
    assert auto_window((1080, 1920, 3)) == 28
    assert auto_window((2160, 3840)) == MIN_AUTO_WINDOW
    for shape in ((1080, 1920), (1200, 1600), (1440, 2560)):
        n = auto_window(shape)
        assert n == MIN_AUTO_WINDOW or n * 3 * shape[0] * shape[1] <= WINDOW_FRAME_BYTES
        assert (n + 1) * 3 * shape[0] * shape[1] > WINDOW_FRAME_BYTES


def test_window_left_out_comes_from_the_frame_size(monkeypatch, identity):
    clip = tiny_clip("static", n_frames=14)
    frame_bytes = clip.frames[0].size
    monkeypatch.setattr(video_derain, "WINDOW_FRAME_BYTES", 6 * frame_bytes)
    monkeypatch.setattr(video_derain, "MIN_AUTO_WINDOW", MIN_FRAMES)
    auto = derain_clip(clip.frames, identity, method="temporal")
    assert {r.window for r in auto.records} == {(w.start, w.stop)
                                                for w in derain_windows(14, 6)}
    asked = derain_clip(clip.frames, identity, method="temporal", window=10)
    assert {r.window for r in asked.records} == {(w.start, w.stop)
                                                 for w in derain_windows(14, 10)}


def test_windows_bad_arguments():
    with pytest.raises(ValueError, match=f"window: expected an int >= {MIN_FRAMES}"):
        derain_windows(10, MIN_FRAMES - 1)
    with pytest.raises(ValueError, match="n_frames: expected an int >= 1"):
        derain_windows(0)


def test_blend_weight_is_one_on_content_and_fades_outside():
    content = np.zeros((60, 80), bool)
    content[20:30, 30:40] = True
    weight = blend_weight(content, radius=4)
    assert weight.dtype == np.float32 and weight.shape == content.shape
    assert (weight[content] == 1).all()
    assert weight.min() == 0 and weight.max() == 1
    assert 0 < weight[25, 42] < 1  # the feather, just outside the content
    assert (weight[:10] == 0).all() and (weight[:, :20] == 0).all()  # far away: background
    assert (blend_weight(np.zeros((8, 8), bool)) == 0).all()
    with pytest.raises(ValueError, match="H x W mask"):
        blend_weight(np.zeros((2, 8, 8), bool))


# --------------------------------------------------------------------------------------------
# The method on clips with a known truth
# --------------------------------------------------------------------------------------------


def test_hybrid_beats_per_frame_spanet_on_a_static_clip(static_results):
    clip, results = static_results
    hybrid = score_clip(results["hybrid"].frames, clip.truth)
    spanet = score_clip(results["spanet"].frames, clip.truth)
    assert hybrid.psnr > spanet.psnr + 8.0, (hybrid, spanet)
    # ... and is stable where SPANet flickers.
    assert hybrid.temporal_change < 0.5 * spanet.temporal_change


def test_hybrid_is_the_background_where_its_weight_is_zero(static_results):
    _, results = static_results
    hybrid, temporal = results["hybrid"], results["temporal"]
    zero = hybrid.weight == 0
    assert zero.mean() > 0.5  # a still scene: mostly background
    assert np.array_equal(hybrid.frames[zero], temporal.frames[zero])
    assert all(r.segment == 0 and r.window == (0, 12) for r in hybrid.records)
    assert (results["spanet"].weight == 1).all() and (temporal.weight == 0).all()


def test_spanet_method_is_derain_array_per_frame(static_results, synthetic):
    clip, results = static_results
    expected, _ = derain_array(synthetic, clip.frames[3])
    assert np.array_equal(results["spanet"].frames[3],
                          round_to_uint8(expected * 255.0))


def test_hybrid_keeps_a_passing_object(passing_results):
    clip, results = passing_results
    assert clip.object_mask.any()
    scores = {m: score_clip(r.frames, clip.truth, clip.object_mask) for m, r in results.items()}
    # The temporal estimate erases the objects; the hybrid keeps SPANet's result there ...
    assert scores["temporal"].object_psnr < scores["spanet"].object_psnr - 8.0, scores
    assert scores["hybrid"].object_psnr > scores["spanet"].object_psnr - 1.0, scores
    # ... and beats per-frame SPANet over the whole frame.
    assert scores["hybrid"].psnr > scores["spanet"].psnr + 3.0, scores
    weight = results["hybrid"].weight
    assert (weight[clip.object_mask] > 0.99).mean() > 0.99  # objects are SPANet's


def test_hand_held_clip_is_warped_back(synthetic, monkeypatch):
    clip = tiny_clip("handheld", n_frames=10)
    result = derain_clip(clip.frames, synthetic)
    spanet = derain_clip(clip.frames, synthetic, method="spanet")
    hybrid, alone = (score_clip(r.frames, clip.truth) for r in (result, spanet))
    assert hybrid.psnr > alone.psnr + 1.0, (hybrid, alone)
    # The camera moved: the borders some frames do not see take the frames that see them;
    # without them they are SPANet's.
    monkeypatch.setattr(video_derain, "fill_uncovered", lambda clean, valid, *_: (clean, valid))
    unfilled = derain_clip(clip.frames, synthetic)
    assert all(r.outside_share > 0 for r in unfilled.records)
    assert sum(r.outside_share for r in result.records) \
        < 0.5 * sum(r.outside_share for r in unfilled.records)
    assert np.mean([r.spanet_share for r in result.records]) < 0.6


def test_sliding_windows_follow_the_plan(synthetic):
    clip = tiny_clip("static", n_frames=14)
    result = derain_clip(clip.frames, synthetic, window=6)
    plan = derain_windows(14, 6)
    for win in plan:
        for i in range(win.out_start, win.out_stop):
            assert result.records[i].window == (win.start, win.stop)
    spanet = derain_clip(clip.frames, synthetic, method="spanet")
    assert score_clip(result.frames, clip.truth).psnr > score_clip(spanet.frames,
                                                                   clip.truth).psnr + 3.0


def test_frames_are_read_one_window_at_a_time(identity):
    clip = tiny_clip("static", n_frames=20)
    pulled = []

    def frames_from(start):
        for i in range(start, 20):
            pulled.append(i)
            yield clip.frames[i]

    stream = video_derain._derain_stream(
        frames_from, 20, model=identity, method="hybrid", align=video_derain.get_align_mode("off"),
        window=6, tile=None, device="cpu", precision="fp32")
    first = next(stream)
    assert first[0] == 0 and len(pulled) == 6  # one window, not the clip
    assert [i for i, *_ in stream] == list(range(1, 20))


@pytest.mark.parametrize("skip", [set(), {3, 4, 5, 6, 7, 8}])
def test_windows_hold_their_frames_in_one_array(monkeypatch, skip):
    # One window of frames in memory: every window gets the same array, holding its frames
    # (the shared ones moved to the front), also when a resumed run skips a window.
    clip = tiny_clip("static", n_frames=20)
    seen = []

    def record(frames, first, outputs, *args):
        seen.append((frames, frames.copy(), first))
        for i in outputs:
            yield i, clip.frames[i], None, None

    monkeypatch.setattr(video_derain, "_derain_window", record)
    stream = video_derain._derain_stream(
        lambda k: iter(clip.frames[k:]), 20, model=None, method="temporal",
        align=video_derain.get_align_mode("off"), window=6, tile=None, device="cpu",
        precision="fp32", done=lambda i: i in skip)
    assert [i for i, *_ in stream] == [i for i in range(20) if i not in skip]
    assert len(seen) == sum(any(i not in skip for i in range(win.out_start, win.out_stop))
                            for win in video_derain.derain_windows(20, 6))
    for frames, held, first in seen:
        assert frames is seen[0][0]
        np.testing.assert_array_equal(held, clip.frames[first:first + 6])


def test_score_clip_agrees_with_the_metrics_module():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    noisy = np.clip(truth + rng.normal(0, 5, truth.shape), 0, 255).astype(np.uint8)
    scores = score_clip(noisy, truth)
    expected = metric_psnr(torch.from_numpy(noisy / 255.0).permute(0, 3, 1, 2),
                           torch.from_numpy(truth / 255.0).permute(0, 3, 1, 2))
    assert scores.psnr == pytest.approx(float(expected.mean()), abs=1e-6)
    assert np.isnan(scores.object_psnr)
    still = np.repeat(truth[:1], 3, axis=0)
    assert score_clip(still, still).temporal_change == 0.0
    with pytest.raises(ValueError, match="equal N x H x W x 3 shapes"):
        score_clip(noisy[:2], truth)


def test_compare_methods_scores_every_method_on_the_frames_spanet_ran_on(tiny_weights):
    # Per-frame SPANet on 5 of 11 frames: each method scored on those frames, as if SPANet
    # had run on all of them and the scores were taken there.
    clip = tiny_clip("passing", size=(48, 64), n_frames=11)
    table = video_experiment.compare_methods({"passing": clip}, weights=[str(tiny_weights)],
                                             spanet_frames=5).table.set_index("method")
    scored = [0, 2, 5, 8, 10]
    net = load_pretrained(str(tiny_weights))
    spanet = derain_clip(clip.frames, net, method="spanet").frames[scored]
    hybrid = derain_clip(clip.frames, net).frames[scored]
    for method, frames in (("per-frame SPANet", spanet), ("hybrid", hybrid),
                           ("rain input", clip.frames[scored])):
        expected = score_clip(frames, clip.truth[scored], clip.object_mask[scored])
        row = table.loc[method]
        assert row["psnr"] == pytest.approx(expected.psnr, abs=1e-9)
        assert row["object_psnr"] == pytest.approx(expected.object_psnr, abs=1e-9, nan_ok=True)
        assert row["scored_frames"] == 5
    with pytest.raises(ValueError, match="spanet_frames: expected None or an int >= 5"):
        video_experiment.compare_methods({"passing": clip}, weights=[str(tiny_weights)],
                                         spanet_frames=3)
    with pytest.raises(ValueError, match="keep: per-frame SPANet's results hold every frame"):
        video_experiment.compare_methods({"passing": clip}, weights=[str(tiny_weights)],
                                         spanet_frames=5, keep=["passing"])


def comparison_table(hybrid_static=45.0, hybrid_passing=38.0, hybrid_object=26.0):
    rows = []
    for clip, spanet, obj in (("static", 31.0, np.nan), ("passing", 30.0, 26.5)):
        hybrid = hybrid_static if clip == "static" else hybrid_passing
        rows += [
            {"clip": clip, "method": "rain input", "weights": "", "psnr": 23.0,
             "object_psnr": obj, "temporal_change": 11.0, "spanet_share": 0.0},
            {"clip": clip, "method": "per-frame SPANet", "weights": "synthetic",
             "psnr": spanet, "object_psnr": obj, "temporal_change": 3.5, "spanet_share": 1.0},
            {"clip": clip, "method": "per-frame SPANet", "weights": "official",
             "psnr": spanet - 3, "object_psnr": obj - 3, "temporal_change": 4.0,
             "spanet_share": 1.0},
            {"clip": clip, "method": "hybrid", "weights": "synthetic", "psnr": hybrid,
             "object_psnr": hybrid_object if clip == "passing" else np.nan,
             "temporal_change": 0.5, "spanet_share": 0.1},
        ]
    return pd.DataFrame(rows)


def test_goal_verdicts_and_summary_follow_the_numbers():
    table = comparison_table()
    assert video_experiment.best_spanet_weights(table) == "synthetic"
    lines = video_experiment.goal_verdicts(table)
    assert lines[1] == "  static: whole frame +14.0 dB PASS"
    assert lines[2] == "  passing: whole frame +8.0 dB FAIL; moving objects -0.50 dB PASS"
    assert lines[3] == "  all clips: whole frame +11.0 dB PASS; moving objects -0.50 dB PASS"
    summary = video_experiment.goal_summary(table)
    assert "met on static and missed on passing (+8.0 dB)" in summary
    assert "the 1 dB goal is met" in summary
    worse = video_experiment.goal_verdicts(comparison_table(hybrid_object=25.0))
    assert worse[2].endswith("moving objects -1.50 dB FAIL")
    assert "is missed" in video_experiment.goal_summary(comparison_table(hybrid_object=25.0))
    view = video_experiment.methods_view(table)
    assert list(view.columns[:5]) == ["method", "weights", "static", "passing", "mean"]
    hybrid = view[view["method"] == "hybrid"].iloc[0]
    assert hybrid["mean"] == pytest.approx(41.5) and hybrid["in objects"] == 26.0


def test_derain_clip_bad_arguments(identity):
    frames = tiny_clip("static", n_frames=6).frames
    with pytest.raises(InputError, match=f"at least {MIN_FRAMES} frames"):
        derain_clip(frames[:MIN_FRAMES - 1], identity)
    with pytest.raises(InputError, match="N x H x W x 3 uint8"):
        derain_clip(frames.astype(np.float32), identity)
    with pytest.raises(ValueError, match="method: expected one of"):
        derain_clip(frames, identity, method="median")
    with pytest.raises(ValueError, match="needs a model"):
        derain_clip(frames, None)
    with pytest.raises(ValueError, match="window: expected an int >= 5"):
        derain_clip(frames, identity, window=3)
    with pytest.raises(ValueError, match="unknown align mode"):
        derain_clip(frames, identity, align="maybe")


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def run(capsys, *args):
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, message):
    assert code == 2
    assert message in err, err
    lines = [line for line in err.strip().splitlines() if "derain-video" in line]
    assert len(lines) == 1 and "Traceback" not in err, err


def test_cli_default_window_is_the_library_default():
    sub = cli.build_parser()._subparsers._group_actions[0].choices["derain-video"]
    assert sub.get_default("window") is None  # auto_window, from the frame size
    window_help = next(a.help for a in sub._actions if "--window" in a.option_strings)
    assert (f"default: {DEFAULT_WINDOW}," in window_help
            and f"{WINDOW_FRAME_BYTES >> 20} MiB" in window_help
            and f"{auto_window((1080, 1920))} at 1080p" in window_help
            and f"at least {MIN_AUTO_WINDOW}" in window_help), window_help
    text = sub.format_help()
    for option in ("--weights", "--align", "--window", "--tile", "--device", "--precision",
                   "--fps", "--overwrite"):
        help_text = next(a.help for a in sub._actions if option in a.option_strings)
        assert "default" in help_text, option
    assert "derain-video" in cli.build_parser().format_help()
    assert "lossless" in text


def test_command_on_a_video_file(tmp_path, capsys, synthetic):
    clip = tiny_clip("static", n_frames=8)
    source = write_video(tmp_path / "rain.avi", clip.frames)
    out = tmp_path / "out.avi"
    code, printed, err = run(capsys, "derain-video", source, "-o", out, "--weights",
                             "synthetic", "--device", "cpu")
    assert code == 0, err
    assert "derained 8 of 8 frames" in printed
    written = read_sequence(out)
    expected = derain_clip(clip.frames, synthetic, tile=512).frames
    assert np.array_equal(written, expected)  # FFV1: lossless
    # An existing output is refused, in one line, before any work.
    code, _, err = run(capsys, "derain-video", source, "-o", out)
    assert_one_line_error(code, err, "exists; pass --overwrite")
    # .mp4 is written too (lossy).
    code, _, err = run(capsys, "derain-video", source, "-o", tmp_path / "out.mp4", "--weights",
                       "synthetic", "--device", "cpu")
    assert code == 0, err
    assert len(read_sequence(tmp_path / "out.mp4")) == 8


def test_command_on_a_frame_folder_of_a_hand_held_clip(tmp_path, capsys, synthetic):
    clip = tiny_clip("handheld", n_frames=10)
    folder = tmp_path / "rain"
    for i, frame in enumerate(clip.frames):
        write_image(folder / f"shot{i}.png", frame)  # natural order: shot2 before shot10
    out = tmp_path / "derained"
    code, _, err = run(capsys, "derain-video", folder, "-o", out, "--weights", "synthetic",
                       "--device", "cpu", "--window", "8")
    assert code == 0, err
    names = sorted(p.name for p in list_frame_files(out))
    assert names == sorted(f"shot{i}.png" for i in range(10))
    derained = np.stack([read_image(out / f"shot{i}.png") for i in range(10)])
    expected = derain_clip(clip.frames, synthetic, window=8, tile=512).frames
    assert np.array_equal(derained, expected)
    assert score_clip(derained, clip.truth).psnr > score_clip(clip.frames, clip.truth).psnr + 5
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["settings"]["window"] == 8 and manifest["settings"]["align"] == "auto"


def test_bounded_convolution_caches_leave_the_output_unchanged(tmp_path, synthetic):
    # The caches' capacity is read once per process: one child evicts every primitive at
    # once, the other keeps oneDNN's and ideep's default 1,024 (as before they were bounded).
    clip = tiny_clip("handheld", n_frames=8)
    source = write_video(tmp_path / "rain.avi", clip.frames)
    outputs = []
    for capacity in ("1", "1024"):
        env = {**os.environ, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": capacity,
               "LRU_CACHE_CAPACITY": capacity}
        out = tmp_path / f"out{capacity}.avi"
        done = subprocess.run([sys.executable, "-m", "spanetlib.cli", "derain-video", str(source),
                               "-o", str(out), "--weights", "synthetic", "--device", "cpu",
                               "--window", "6"],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        outputs.append(read_sequence(out))
    assert np.array_equal(outputs[0], outputs[1])
    assert np.array_equal(outputs[0], derain_clip(clip.frames, synthetic, window=6,
                                                  tile=512).frames)


def test_video_input_gives_numbered_frames(tmp_path, capsys, tiny_weights):
    clip = tiny_clip("static", n_frames=6)
    source = write_video(tmp_path / "rain.mkv", clip.frames)
    out = tmp_path / "frames"
    code, _, err = run(capsys, "derain-video", source, "-o", out, "--weights", tiny_weights,
                       "--device", "cpu")
    assert code == 0, err
    assert [p.name for p in list_frame_files(out)] == [f"frame_{i:05d}.png" for i in range(6)]


def test_a_folder_holding_one_video_is_read_as_that_video(tmp_path, capsys, tiny_weights):
    clip = tiny_clip("static", n_frames=6)
    folder = tmp_path / "scene"
    write_video(folder / "rain.mkv", clip.frames)
    out = tmp_path / "frames"
    code, _, err = run(capsys, "derain-video", folder, "-o", out, "--weights", tiny_weights,
                       "--device", "cpu", "--frames", "5")
    assert code == 0, err
    assert len(list_frame_files(out)) == 5
    # frames written beside the video would turn the folder into a folder of frames
    code, _, err = run(capsys, "derain-video", folder, "-o", folder, "--weights", tiny_weights)
    assert_one_line_error(code, err, "holds the input video and nothing else")
    assert [p.name for p in folder.iterdir()] == ["rain.mkv"]


def test_resume_keeps_written_frames_and_refuses_other_settings(tmp_path, capsys,
                                                                tiny_weights):
    clip = tiny_clip("static", n_frames=14)
    folder = tmp_path / "rain"
    write_frames(folder, clip.frames)
    out = tmp_path / "out"
    args = ("derain-video", folder, "-o", out, "--weights", tiny_weights, "--device", "cpu",
            "--window", "6")
    code, _, err = run(capsys, *args)
    assert code == 0, err
    first = {p.name: p.read_bytes() for p in list_frame_files(out)}
    assert len(first) == 14
    # An interrupted run: frames 5-13 missing; frame 2 marked to see that it is kept.
    for name in sorted(first)[5:]:
        (out / name).unlink()
    marked = read_image(out / "frame_00002.png")
    marked[0, 0] = (255 - marked[0, 0]).astype(np.uint8)
    write_image(out / "frame_00002.png", marked)
    code, printed, err = run(capsys, *args)
    assert code == 0, err
    assert "derained 9 of 14 frames (5 kept from an earlier run)" in printed
    again = {p.name: p.read_bytes() for p in list_frame_files(out)}
    assert np.array_equal(read_image(out / "frame_00002.png"), marked)  # kept, not redone
    for name in sorted(first)[5:]:
        assert again[name] == first[name], name  # resumed frames are bit-identical
    # Other settings: refused in one line, unless --overwrite.
    code, _, err = run(capsys, *args[:-1], "8")
    assert_one_line_error(code, err, "other settings (window differ)")
    code, printed, err = run(capsys, *args[:-1], "8", "--overwrite")
    assert code == 0, err
    assert "derained 14 of 14 frames" in printed
    assert json.loads((out / MANIFEST_NAME).read_text())["settings"]["window"] == 8


def test_an_interrupted_run_resumes_to_the_same_frames(tmp_path, monkeypatch, tiny_weights):
    clip = tiny_clip("static", n_frames=14)
    source = write_video(tmp_path / "rain.avi", clip.frames)
    options = {"weights": tiny_weights, "window": 6, "device": "cpu", "progress": False}
    whole = derain_video(source, tmp_path / "whole", **options)
    assert whole.written == 14
    calls = []
    real_write = video_derain.write_image

    def write_then_stop(path, image):
        if len(calls) == 7:
            raise KeyboardInterrupt
        calls.append(path)
        return real_write(path, image)

    monkeypatch.setattr(video_derain, "write_image", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        derain_video(source, tmp_path / "resumed", **options)
    assert len(list_frame_files(tmp_path / "resumed")) == 7
    monkeypatch.setattr(video_derain, "write_image", real_write)
    summary = derain_video(source, tmp_path / "resumed", **options)
    assert (summary.kept, summary.written) == (7, 7)
    for path in list_frame_files(tmp_path / "whole"):
        assert (tmp_path / "resumed" / path.name).read_bytes() == path.read_bytes(), path.name


def test_a_folder_of_other_frames_is_not_replaced(tmp_path, capsys, tiny_weights):
    clip = tiny_clip("static", n_frames=6)
    folder = tmp_path / "rain"
    write_frames(folder, clip.frames)
    out = tmp_path / "out"
    write_image(out / "frame_00003.png", clip.frames[0])  # someone else's frame
    code, _, err = run(capsys, "derain-video", folder, "-o", out, "--weights", tiny_weights)
    assert_one_line_error(code, err, "holds no derain-video manifest")
    code, _, err = run(capsys, "derain-video", folder, "-o", folder, "--weights", tiny_weights,
                       "--overwrite")
    assert_one_line_error(code, err, "is the input folder")


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing.mp4", "input not found"),
    (lambda tmp: (tmp / "notes.mp4").write_text("not a video") and tmp / "notes.mp4",
     "cannot"),
    (lambda tmp: write_image(tmp / "photo.png", np.zeros((16, 16, 3), np.uint8)),
     "got an image"),
    (lambda tmp: write_frames(tmp / "few", np.zeros((3, 16, 16, 3), np.uint8))[0].parent,
     f"found 3 frame(s) in {{tmp}}/few; a clip needs at least {MIN_FRAMES} frames"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no image frames"),
])
def test_bad_input_gives_one_line(tmp_path, capsys, make, message):
    source = make(tmp_path)
    code, _, err = run(capsys, "derain-video", source, "-o", tmp_path / "out.avi")
    assert_one_line_error(code, err, message.format(tmp=tmp_path))


def test_bad_output_and_options_fail_before_any_work(tmp_path, capsys, monkeypatch):
    clip = tiny_clip("static", n_frames=6)
    source = write_video(tmp_path / "rain.avi", clip.frames)

    def no_work(*args, **kwargs):
        raise AssertionError("heavy work started")

    monkeypatch.setattr(video_derain, "estimate_clip", no_work)
    monkeypatch.setattr(video_derain, "_load_model", no_work)
    (tmp_path / "file").write_text("x")
    cases = [
        (("-o", tmp_path / "file" / "out.avi"), "is not a folder"),
        (("-o", tmp_path / "out.png"), "expected a video file"),
        (("-o", tmp_path / "out.avi", "--window", "3"), "window: expected an int >= 5"),
        (("-o", source, "--overwrite"), "is the input video"),
    ]
    for extra, message in cases:
        code, _, err = run(capsys, "derain-video", source, *extra)
        assert_one_line_error(code, err, message)


def test_unknown_precision_is_refused_before_any_frame(tmp_path, identity):
    frames = tiny_clip("static", n_frames=6).frames  # a still clip: SPANet may never run
    with pytest.raises(ValueError, match="precision must be one of"):
        derain_clip(frames, identity, precision="fp16")


def test_library_writes_only_through_checked_paths(tmp_path, identity):
    """derain_video with a model object and a video output path."""
    clip = tiny_clip("static", n_frames=6)
    source = write_video(tmp_path / "rain.avi", clip.frames)
    summary = derain_video(source, tmp_path / "out.mkv", identity, device="cpu",
                           progress=False)
    assert summary.written == 6 and summary.kept == 0
    assert Path(summary.output).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


# --------------------------------------------------------------------------------------------
# Issue 22: SPANet where needed, overlays, bright content, files
# --------------------------------------------------------------------------------------------


def check_plan(plan, need):
    """Each group one crop size; every core inside its crop with the context on each inner
    side; the cores cover the need."""
    h, w = need.shape
    covered = np.zeros(need.shape, np.int32)
    for group in plan:
        sizes = {(c[0].stop - c[0].start, c[1].stop - c[1].start) for c, _ in group}
        assert len(sizes) == 1  # one batch: crops of one size
        for crop, core in group:
            covered[core] += 1
            assert crop[0].start <= core[0].start and core[0].stop <= crop[0].stop
            for axis, size in ((0, h), (1, w)):
                lo = core[axis].start - crop[axis].start
                hi = crop[axis].stop - core[axis].stop
                assert lo >= video_derain.SPANET_CONTEXT or crop[axis].start == 0
                assert hi >= video_derain.SPANET_CONTEXT or crop[axis].stop == size
    assert (covered[need] >= 1).all()


def test_spanet_plan_covers_the_need_once_and_reads_less_than_the_frame():
    need = np.zeros((200, 300), bool)
    need[:6, :] = True  # a band along the top (camera motion)
    need[:, -4:] = True  # ... and the right
    need[100:110, 50:58] = True  # a small object
    need[150:152, 200:203] = True
    plan = video_derain._spanet_plan(need)
    check_plan(plan, need)
    assert video_derain._plan_area(plan) < 0.7 * need.size
    assert video_derain._spanet_plan(np.zeros((50, 60), bool)) == []


def test_crops_over_the_memory_limit_are_run_in_pieces(monkeypatch):
    # A deep band along the top and a large object: at most MAX_CROP_PIXELS a crop (SPANet's
    # memory), the need still covered, with context around every piece.
    need = np.zeros((400, 600), bool)
    need[:40, :] = True
    need[150:330, 100:400] = True
    whole = video_derain._spanet_plan(need)
    assert max(video_derain._plan_area([[tile]]) for g in whole for tile in g) > 200 * 200
    monkeypatch.setattr(video_derain, "MAX_CROP_PIXELS", 200 * 200)
    plan = video_derain._spanet_plan(need)
    check_plan(plan, need)
    assert max(video_derain._plan_area([[tile]]) for g in plan for tile in g) <= 200 * 200


def test_spanet_on_crops_is_derain_array_on_each_crop(tiny_spanet):
    from spanetlib.models.spanet import SPANet

    torch.manual_seed(0)
    tiny_spanet = SPANet(**tiny_spanet).eval()
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (160, 200, 3), dtype=np.uint8)
    need = np.zeros((160, 200), bool)
    need[20:30, 20:30] = True
    need[120:125, 150:160] = True
    runner = video_derain._Spanet(tiny_spanet, None, "cpu", "fp32")
    out, share = runner.where(frame, need)
    assert 0 < share < 1
    plan = video_derain._spanet_plan(need, runner.context)
    for group in plan:
        for crop, core in group:
            expected, _ = derain_array(tiny_spanet, frame[crop])
            oy, ox = crop[0].start, crop[1].start
            part = expected[core[0].start - oy:core[0].stop - oy,
                            core[1].start - ox:core[1].stop - ox] * 255.0
            # Batched and single passes may take other convolution algorithms: float32
            # rounding of a sum over 3x3xC inputs, far below a uint8 level.
            np.testing.assert_allclose(out[core], part, atol=1e-3)
    outside = np.ones(need.shape, bool)
    for group in plan:
        for _, core in group:
            outside[core] = False
    assert (out[outside] == 0).all()


def test_spanet_runs_the_whole_frame_only_where_the_crops_cost_as_much(tiny_spanet,
                                                                        monkeypatch):
    # A whole frame in tiles reads its overlaps too: crops reading most of the frame can
    # still cost less. Whichever costs less runs, and the share says which did.
    from spanetlib.models.spanet import SPANet

    torch.manual_seed(0)
    runner = video_derain._Spanet(SPANet(**tiny_spanet).eval(), 96, "cpu", "fp32")
    frame = np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    need = np.zeros((240, 320), bool)
    need[:, :230] = True  # most of the frame
    plan = video_derain._spanet_plan(need, runner.context)
    read = video_derain._plan_area(plan) / need.size
    tiles = len(tile_starts(240, 96, 32)) * len(tile_starts(320, 96, 32))
    assert runner.whole_cost(240, 320) == tiles * (96 * 96 + video_derain.CROP_OVERHEAD_PX)
    assert 0.7 < read and video_derain._plan_cost(plan) < runner.whole_cost(240, 320)
    ran_whole = []
    monkeypatch.setattr(runner, "whole", lambda image: ran_whole.append(1) or image * 1.0)
    out, share = runner.where(frame, need)
    assert not ran_whole and share == pytest.approx(min(1.0, read))
    runner.tile = None  # untiled, the whole frame costs its pixels and one pass
    assert runner.whole_cost(240, 320) == 240 * 320 + video_derain.CROP_OVERHEAD_PX
    out, share = runner.where(frame, need)
    assert not ran_whole  # still cheaper in crops
    need[:, :310] = True  # nearly all: cheaper whole
    out, share = runner.where(frame, need)
    assert ran_whole and share == 1.0 and (out == frame).all()


@pytest.mark.parametrize(("shape", "expected"), [
    ((360, 640), None),          # what a 360 x 640 frame leaves of 1080p's memory: whole
    ((640, 640), 336),           # 874 MiB: 576 at most, 2 x 2 tiles, as small as 336
    ((720, 1280), 448),          # 654 MiB: 512 at most, 2 x 3 tiles, as small as 448
    ((1080, 1920), 128),         # SPANET_MEMORY alone: 160 MiB
    ((2160, 3840), 128),
])
def test_whole_frames_take_the_memory_a_smaller_frame_leaves(shape, expected, monkeypatch):
    # The auto tile of derain-video's whole frames comes from spanet_memory: SPANET_MEMORY
    # at 1080p and above, more below (the rest of the process holds less), so a small
    # frame runs whole instead of in tiles that read it 1.7 times; never more than the
    # memory available allows.
    monkeypatch.setattr(video_derain, "available_memory", lambda dev: 64 << 30)
    runner = video_derain._Spanet(None, "auto", "cpu", "fp32")
    h, w = shape
    assert video_derain.spanet_memory(shape) == video_derain.SPANET_MEMORY + max(
        0, video_derain.PROCESS_BYTES_PER_PIXEL * (1080 * 1920 - h * w))
    assert runner._tile_for(h, w) == expected
    if expected is None:
        assert runner.whole_cost(h, w) == h * w + video_derain.CROP_OVERHEAD_PX
    monkeypatch.setattr(video_derain, "available_memory", lambda dev: 16 << 20)
    assert runner._tile_for(h, w) == 128  # little memory left: the smallest tile


def with_logo(clip, box=(6, 20, 8, 40), value=(250, 250, 40)):
    """The clip with a logo burned into every frame at the same frame pixels (and truth)."""
    y0, y1, x0, x1 = box
    frames, truth = clip.frames.copy(), clip.truth.copy()
    frames[:, y0:y1, x0:x1] = value
    truth[:, y0:y1, x0:x1] = value
    mask = np.zeros(frames.shape[:3], bool)
    mask[:, y0:y1, x0:x1] = True
    return frames, truth, mask


def test_frame_fixed_overlay_is_kept_on_a_moving_camera(identity, monkeypatch):
    clip = make_rain_clip(CLIP_PRESETS["pan"].replace(size=(64, 96), n_frames=12), 0)
    frames, truth, mask = with_logo(clip)
    result = derain_clip(frames, identity, window=12)
    inside = score_clip(result.frames, truth, mask).object_psnr
    # The identity "SPANet" returns the frame: the logo kept from the frame itself, or
    # from the frame-coordinate estimate, is the logo (up to noise).
    assert inside > 35.0, inside
    # Found in most frames (where the camera barely moved the frames that see the scene
    # behind the logo see the logo too, and their samples keep it).
    assert sum(r.overlay_share > 0 for r in result.records) > len(result.records) // 2
    # Without the detection the logo is left to the pair check, which passes part of it.
    monkeypatch.setattr(video_derain, "frame_fixed_candidates",
                        lambda frames, motion_px: np.zeros(frames.shape[1:3], bool))
    blind = derain_clip(frames, identity, window=12)
    assert score_clip(blind.frames, truth, mask).object_psnr < inside - 1.0
    # The scene-coordinate estimate alone smears it along the pan.
    temporal = derain_clip(frames, None, method="temporal", window=12)
    assert score_clip(temporal.frames, truth, mask).object_psnr < inside - 3.0
    monkeypatch.undo()


def test_graphics_rim_is_kept_from_the_frame_not_taken_for_rain(monkeypatch):
    """Graphics drawn on a hand-held clip (a logo, a semi-transparent subtitle strip and
    text): the text's anti-aliased rim changes with the scene under it, so it is no
    frame-fixed candidate; the scene estimate lacks the text there and the bright rim passed
    for rain. Next to the graphics, where the frame shows them, the rim takes its window
    median in frame coordinates. Where the window's fixed edges are found (the edge zone),
    the background on them is chosen against the frame (``same_side_background``), which
    covers the rim as well: the rim rule is measured without the zone."""
    clip = make_rain_clip(CLIP_PRESETS["handheld-overlay"].replace(size=(240, 320),
                                                                   n_frames=12), 0)
    inside = np.broadcast_to(clip.overlay_alpha > 0, clip.frames.shape[:3])

    def scores() -> tuple[float, float]:
        out = derain_clip(clip.frames, None, method="temporal", window=12).frames
        return (score_clip(out, clip.truth, inside).object_psnr,
                score_clip(out, clip.truth, ~inside).object_psnr)

    with_zone, _ = scores()
    monkeypatch.setattr(video_derain, "edge_zone", lambda frames, estimate: None)
    graphics, scene = scores()
    assert with_zone > graphics + 10.0, (with_zone, graphics)
    monkeypatch.setattr(video_derain, "OVERLAY_RIM_PX", 0)
    graphics_no_rim, scene_no_rim = scores()
    assert graphics > graphics_no_rim + 1.5, (graphics, graphics_no_rim)
    assert scene >= scene_no_rim - 0.1, (scene, scene_no_rim)  # the scene is left alone


def test_no_overlay_without_camera_motion():
    frames = tiny_clip("static").frames
    assert not video_derain.frame_fixed_candidates(frames, motion_px=0.0).any()
    # Constant pixels of a panning clip are candidates.
    clip = make_rain_clip(CLIP_PRESETS["pan"].replace(size=(64, 96), n_frames=12), 0)
    logo, _, mask = with_logo(clip)
    found = video_derain.frame_fixed_candidates(logo, motion_px=30.0)
    assert found[mask[0]].mean() > 0.8


def test_bright_content_that_stays_is_not_taken_for_rain(identity):
    clip = tiny_clip("static", size=(64, 96), n_frames=12)
    frames, truth = clip.frames.copy(), clip.truth.copy()
    # A thin bright gap (sky through foliage) open in frames 3-8: thin like a streak, but
    # at the same place in consecutive frames.
    gap = (slice(20, 34), slice(40, 42))
    for k in range(3, 9):
        frames[k][gap] = 255
        truth[k][gap] = 255
    mask = np.zeros(frames.shape[:3], bool)
    mask[4:8][:, gap[0], gap[1]] = True  # open in the frames before and after
    result = derain_clip(frames, identity, window=12)
    assert (result.weight[mask] > 0.99).mean() > 0.9  # SPANet's (here: the frame's)
    assert score_clip(result.frames, truth, mask).object_psnr > 30.0
    # Rain streaks are not kept: the hybrid still beats the rain input by far elsewhere.
    assert score_clip(result.frames, truth).psnr > score_clip(frames, truth).psnr + 8.0


def test_resume_estimates_only_the_windows_it_derains(tmp_path, monkeypatch, tiny_weights):
    clip = tiny_clip("static", n_frames=20)
    folder = tmp_path / "rain"
    write_frames(folder, clip.frames)
    out = tmp_path / "out"
    options = {"weights": tiny_weights, "window": 6, "device": "cpu", "progress": False}
    derain_video(folder, out, **options)
    for path in list_frame_files(out)[-2:]:
        path.unlink()
    calls = []
    real = video_derain.estimate_clip
    monkeypatch.setattr(video_derain, "estimate_clip",
                        lambda frames, *a, **k: calls.append(len(frames)) or real(frames, *a,
                                                                                    **k))
    summary = derain_video(folder, out, **options)
    assert summary.written == 2 and calls == [6]  # one window, not the clip from its start


def test_start_and_frames_pick_part_of_the_clip(tmp_path, capsys, tiny_weights):
    clip = tiny_clip("static", n_frames=12)
    source = write_video(tmp_path / "rain.avi", clip.frames)
    out = tmp_path / "part"
    code, printed, err = run(capsys, "derain-video", source, "-o", out, "--weights",
                             tiny_weights, "--device", "cpu", "--start", "3", "--frames", "6")
    assert code == 0, err
    assert [p.name for p in list_frame_files(out)] == [f"frame_{i:05d}.png"
                                                       for i in range(3, 9)]
    assert json.loads((out / MANIFEST_NAME).read_text())["settings"]["start"] == 3
    code, _, err = run(capsys, "derain-video", source, "-o", tmp_path / "x", "--start", "40")
    assert_one_line_error(code, err, "--start 40")
    sub = cli.build_parser()._subparsers._group_actions[0].choices["derain-video"]
    assert sub.get_default("tile") == "auto"


def test_mixed_sizes_are_refused_by_file_name_and_leave_nothing(tmp_path, capsys,
                                                                 tiny_weights):
    clip = tiny_clip("static", n_frames=8)
    folder = tmp_path / "rain"
    write_frames(folder, clip.frames)
    files = list_frame_files(folder)
    write_image(files[3], clip.frames[3][:40])
    out = tmp_path / "out"
    code, _, err = run(capsys, "derain-video", folder, "-o", out, "--weights", tiny_weights)
    assert_one_line_error(code, err, f"{files[3].name} (frame 3)")
    assert not out.exists()
    # Refused while reading (no header check): what the run wrote is removed.
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(video_derain, "_check_sizes", lambda *a: None)
    try:
        with pytest.raises(InputError, match=files[3].name):
            derain_video(folder, out, tiny_weights, window=5, device="cpu", progress=False)
    finally:
        monkeypatch.undo()
    assert not out.exists()


def test_alpha_is_kept_and_sixteen_bits_refused(tmp_path, tiny_weights):
    clip = tiny_clip("static", n_frames=6)
    folder = tmp_path / "rgba"
    alpha = np.linspace(0, 255, 48 * 64).reshape(48, 64).astype(np.uint8)
    for i, frame in enumerate(clip.frames):
        write_image(folder / f"f{i}.png", np.dstack([frame, alpha]))
    summary = derain_video(folder, tmp_path / "out", tiny_weights, device="cpu",
                           progress=False)
    assert summary.written == 6
    from spanetlib.io.files import read_image_with_format
    image, fmt = read_image_with_format(tmp_path / "out" / "f2.png")
    assert fmt.has_alpha and np.array_equal(fmt.alpha, alpha)
    with pytest.raises(InputError, match="alpha channel, which a video cannot hold"):
        derain_video(folder, tmp_path / "out.avi", tiny_weights, device="cpu", progress=False)
    deep = tmp_path / "deep"
    for i, frame in enumerate(clip.frames):
        write_image(deep / f"f{i}.png", frame.astype(np.uint16) * 257)
    with pytest.raises(InputError, match="16-bit RGB image; derain-video works on 8-bit"):
        derain_video(deep, tmp_path / "out16", tiny_weights, device="cpu", progress=False)
    assert not (tmp_path / "out16").exists()


def test_score_clip_pools_overlay_and_bright_regions():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 256, (4, 12, 16, 3), dtype=np.uint8)
    derained = truth.copy()
    overlay = np.zeros((12, 16), bool)
    overlay[2:5, 3:9] = True
    bright = np.zeros((4, 12, 16), bool)
    bright[:, 8:11, 10:14] = True
    # Errors of 4 levels inside the overlay, 16 inside the bright part, none elsewhere.
    derained[:, overlay] = np.clip(truth[:, overlay].astype(int) + 4, 0, 255)
    derained[bright] = np.clip(truth[bright].astype(int) - 16, 0, 255)
    scores = score_clip(derained, truth, overlay_mask=overlay, bright_mask=bright)
    sq = (derained.astype(np.float64) - truth) ** 2
    assert scores.overlay_psnr == pytest.approx(
        10 * np.log10(255.0 ** 2 / sq[:, overlay].mean()), abs=1e-6)
    assert scores.bright_psnr == pytest.approx(
        10 * np.log10(255.0 ** 2 / sq[bright].mean()), abs=1e-6)
    assert scores.overlay_psnr > scores.bright_psnr
    assert np.isnan(score_clip(derained, truth).overlay_psnr)
    with pytest.raises(ValueError):
        score_clip(derained, truth, overlay_mask=overlay[:5])


def test_goal_verdicts_check_overlays_bright_content_and_steady_cameras():
    table = comparison_table()
    table["camera_px"] = np.where(table["clip"] == "static", 0.0, 3.0)
    table["overlay_psnr"] = np.nan
    table["bright_psnr"] = np.nan
    pick = (table["clip"] == "passing") & (table["weights"] == "synthetic")
    table.loc[pick & (table["method"] == "hybrid"), "overlay_psnr"] = 30.0
    table.loc[pick & (table["method"] == "per-frame SPANet"), "overlay_psnr"] = 32.0
    lines = video_experiment.goal_verdicts(table)
    assert lines[2].endswith("; overlays -2.00 dB FAIL")
    assert lines[-1] == "  steady-camera clips (1): whole frame +14.0 dB at worst (static) PASS"
    table["camera_px"] = 0.0
    assert video_experiment.goal_verdicts(table)[-1].endswith("(passing) FAIL")
    assert "in overlays" in video_experiment.methods_view(table).columns


def test_spanet_context_is_measured_from_the_model():
    # A pointwise derainer needs no context: the smallest step; one that looks at the whole
    # crop (its mean) never settles: the full context.
    assert video_derain.spanet_context(lambda b: b.astype(np.float32)) \
        == video_derain.CONTEXT_STEPS[0]
    assert video_derain.spanet_context(
        lambda b: np.broadcast_to(b.mean(axis=(1, 2), keepdims=True, dtype=np.float32),
                                  b.shape).copy()) == video_derain.SPANET_CONTEXT
    need = np.zeros((120, 160), bool)
    need[60:64, 80:84] = True
    small, large = (video_derain._plan_area(video_derain._spanet_plan(need, m)) for m in (8, 32))
    assert small < large


def test_box_tiles_merge_parts_whose_crops_meet_and_cover_the_need():
    need = np.zeros((100, 140), bool)
    need[10:14, 10:14] = True
    need[10:14, 30:34] = True  # 16 px away: crops with 12 px of context meet -> one box
    need[70:75, 100:108] = True  # far: its own box
    tiles = video_derain._box_tiles(need, 12)
    assert len(tiles) == 2
    covered = np.zeros(need.shape, np.int32)
    for crop, core in tiles:
        covered[core] += 1
        assert crop[0].start <= core[0].start - 12 or crop[0].start == 0
        assert crop[1].stop >= core[1].stop + 12 or crop[1].stop == 140
    assert (covered[need] == 1).all() and covered.max() == 1
    assert len(video_derain._box_tiles(need, 4)) == 3  # less context: the crops stay apart
    # The plan takes whichever reads least; scattered small parts: far less than a grid.
    plan = video_derain._spanet_plan(need, 12)
    assert video_derain._plan_area(plan) <= video_derain._plan_area(
        [video_derain._best_grid(need, 12)])


def test_cut_tiles_follow_a_ragged_need_where_boxes_and_bands_read_most_of_the_frame():
    # What a hand-held clip with a logo needs: a thin band along the top with objects
    # hanging from it, objects on the bottom edge, a strip along part of the right edge.
    # Bands span the whole side and merged boxes most of the frame; cuts keep each part to
    # about its own box.
    m = video_derain.SPANET_CONTEXT
    need = np.zeros((480, 640), bool)
    need[:8, :] = True
    need[:50, 60:190] = True
    need[:110, 400:460] = True
    need[420:, 0:100] = True
    need[420:, 130:210] = True
    need[160:300, 605:] = True
    tiles = video_derain._cut_tiles(need, m)
    plan = [[tile] for tile in tiles]
    check_plan(plan, need)
    covered = np.zeros(need.shape, np.int32)
    for _, core in tiles:
        covered[core] += 1
        assert need[core].any(axis=1)[[0, -1]].all() and need[core].any(axis=0)[[0, -1]].all()
    assert covered.max() == 1  # disjoint cores, each the need's box inside its part
    # About what a person would draw (one crop per part, overlapping), far under the others.
    drawn = [(0, 8, 0, 640), (0, 50, 60, 190), (0, 110, 400, 460), (420, 480, 0, 210),
             (160, 300, 605, 640)]
    drawn_plan = [[((slice(max(0, y0 - m), min(480, y1 + m)),
                     slice(max(0, x0 - m), min(640, x1 + m))), None)]
                  for y0, y1, x0, x1 in drawn]
    cost = video_derain._plan_cost(plan)
    assert cost <= 1.1 * video_derain._plan_cost(drawn_plan)
    others = [video_derain._plan_with_bands(need, m, boxes) for boxes in (False, True)]
    others += [[video_derain._best_grid(need, m)],
               [[t] for t in video_derain._box_tiles(need, m)]]
    assert cost < 0.6 * min(video_derain._plan_cost(video_derain._capped(o, m, need.shape))
                            for o in others)
    assert video_derain._spanet_plan(need, m) == plan  # the cheapest candidate
    assert video_derain._cut_tiles(np.zeros((40, 50), bool), m) == []


def test_cut_tiles_keep_one_crop_where_cutting_costs_more():
    # One compact object, and two close specks: each one crop (a cut adds a crop's context
    # and pass); a large object over MAX_CROP_PIXELS is costed as its pieces.
    m = video_derain.SPANET_CONTEXT
    need = np.zeros((300, 400), bool)
    need[100:160, 150:230] = True
    assert video_derain._cut_tiles(need, m) == video_derain._box_tiles(need, m)
    need = np.zeros((300, 400), bool)
    need[100:103, 150:153] = True
    need[110:113, 170:173] = True
    (crop, core), = video_derain._cut_tiles(need, m)
    assert core == (slice(100, 113), slice(150, 173))
    need = np.zeros((600, 800), bool)
    need[100:500, 100:700] = True
    plan = video_derain._capped([[t] for t in video_derain._cut_tiles(need, m)], m, need.shape)
    check_plan(plan, need)
    assert max(video_derain._plan_area([[t]]) for g in plan for t in g) \
        <= video_derain.MAX_CROP_PIXELS


def test_bright_streaks_over_three_frames_are_rain_and_moving_edges_of_content_are_kept(
        identity):
    clip = tiny_clip("static", size=(64, 96), n_frames=12)
    frames, truth = clip.frames.copy(), clip.truth.copy()
    streak = (slice(10, 24), slice(12, 14))  # bright in frames 4-6 only: rain meeting itself
    for k in range(4, 7):
        frames[k][streak] = 255
    gap = (slice(30, 44), slice(60, 62))  # content open in frames 3-8 ...
    edge = (slice(30, 44), slice(62, 64))  # ... widening in frame 5 only (foliage swaying)
    for k in range(3, 9):
        frames[k][gap] = truth[k][gap] = 255
    frames[5][edge] = truth[5][edge] = 255
    result = derain_clip(frames, identity, window=12)
    assert (result.weight[5][streak] == 0).all()  # the background: the streak is gone
    # ... within a tenth of what the streak added to the frame.
    err = np.abs(result.frames[5][streak].astype(int) - truth[5][streak]).mean()
    assert err < 0.1 * np.abs(frames[5][streak].astype(int) - truth[5][streak]).mean()
    assert (result.weight[5][edge] > 0.99).all()  # the frame's: the gap's new edge kept
    assert score_clip(result.frames[5:6], truth[5:6]).psnr > 35.0


def test_thin_edge_bands_take_the_background_and_a_short_feather(identity, monkeypatch):
    clip = tiny_clip("handheld", size=(64, 96), n_frames=8)
    k = video_derain.EDGE_EXTEND_PX
    extended = derain_clip(clip.frames, identity, window=8)
    monkeypatch.setattr(video_derain, "EDGE_EXTEND_PX", 0)
    spanet_edges = derain_clip(clip.frames, identity, window=8)
    assert sum(r.outside_share for r in spanet_edges.records) > 0  # the camera moved
    # Without the extension the outermost pixels no background covers are SPANet's.
    assert (spanet_edges.weight[:, :k] > 0).any() or (spanet_edges.weight[:, :, :k] > 0).any()
    assert sum(r.spanet_share for r in extended.records) \
        < sum(r.spanet_share for r in spanet_edges.records)
    outside = np.zeros((64, 96), bool)
    outside[:, :6] = True
    weight = video_derain._frame_weight(np.zeros_like(outside), outside)
    # The ramp ends within the feather's dilation and blur (3 sigma) of the band.
    reach = 6 + video_derain.OUTSIDE_FEATHER + int(np.ceil(1.5 * video_derain.OUTSIDE_FEATHER))
    assert (weight[:, :6] == 1).all() and (weight[:, reach + 1:] == 0).all()


def test_streaks_meeting_over_five_frames_by_chance_are_rain(identity, monkeypatch):
    clip = tiny_clip("static", size=(64, 96), n_frames=12)
    frames = clip.frames.copy()
    # Streaks of unequal brightness hit the same pixels in frames 3-7 (dense rain, 30+
    # frames): bright in 5 consecutive frames, but each adds its own brightness (on a dark
    # part of the scene, where no sum reaches 255: saturated pixels add the same).
    spot = (slice(43, 57), slice(43, 46))
    assert clip.truth[3:8][:, spot[0], spot[1]].max() + 200 < 255
    for k, add in zip(range(3, 8), (40, 160, 60, 200, 50), strict=True):
        frames[k][spot] = np.clip(clip.truth[k][spot].astype(int) + add, 0, 255)
    result = derain_clip(frames, identity, window=12)
    assert all(r.spanet_run_share == 0 for r in result.records)  # SPANet runs on no tile
    assert (result.weight == 0).all()
    # Without the steadiness check the chance meeting is content (SPANet's, here the frame).
    monkeypatch.setattr(video_derain, "PERSIST_STEADY", 0.0)
    blind = derain_clip(frames, identity, window=12)
    assert (blind.weight[5][spot] > 0.99).mean() > 0.5


def test_speck_parts_are_the_parts_whose_box_fits_the_square():
    content = np.zeros((40, 60), bool)
    content[2:9, 2:9] = True  # 7 x 7: a speck for side 7
    content[20:22, 10:18] = True  # 2 x 8: wider than 7
    content[30:38, 40:47] = True  # 8 rows
    content[12, 50] = True
    specks = video_derain.speck_parts(content, 7)
    expected = np.zeros_like(content)
    expected[2:9, 2:9] = expected[12, 50] = True
    np.testing.assert_array_equal(specks, expected)
    assert not video_derain.speck_parts(np.zeros((5, 5), bool), 7).any()


def test_specks_take_the_frame_where_rain_does_not_brighten_it_without_spanet(identity):
    clip = tiny_clip("static", size=(64, 96), n_frames=12)
    frames, truth = clip.frames.copy(), clip.truth.copy()
    # Small dark things in one frame (a splash ripple, a distant bird): content, but each a
    # few pixels; one crossed by a bright streak in that frame.
    spots = [(slice(30, 33), slice(50, 53)), (slice(10, 13), slice(20, 23)),
             (slice(50, 53), slice(80, 83))]
    for spot in spots:
        frames[5][spot] = truth[5][spot] = truth[5][spot] // 3
    streak = (slice(22, 40), slice(54, 55))  # beside the first spot, through its widening
    frames[5][streak] = np.clip(truth[5][streak].astype(int) + 120, 0, 255)
    result = derain_clip(frames, identity, window=12)
    record = result.records[5]
    assert record.speck_share > 0 and record.spanet_run_share == 0  # no SPANet for specks
    assert (result.weight[5] == 0).all()
    for spot in spots:  # the frame's own pixels, within the rounding of the feather
        assert np.abs(result.frames[5][spot].astype(int) - truth[5][spot]).max() <= 1
    # The streak's pixels take the background (rain), inside the speck as elsewhere.
    err = np.abs(result.frames[5][streak].astype(int) - truth[5][streak]).mean()
    assert err < 0.1 * np.abs(frames[5][streak].astype(int) - truth[5][streak]).mean()


def test_scattered_specks_cost_no_spanet_and_objects_still_do(identity, monkeypatch):
    clip = tiny_clip("static", size=(160, 240), n_frames=12)
    frames, truth = clip.frames.copy(), clip.truth.copy()
    rng = np.random.default_rng(1)
    for y, x in rng.integers(4, 150, (40, 2)) * [1, 1.5]:  # dark specks all over one frame
        spot = (slice(int(y), int(y) + 3), slice(int(x), int(x) + 3))
        frames[6][spot] = truth[6][spot] = truth[6][spot] // 2
    block = (slice(70, 82), slice(100, 116))  # and one object, larger than any speck
    frames[6][block] = truth[6][block] = 255 - truth[6][block]
    result = derain_clip(frames, identity, window=12)
    record = result.records[6]
    assert record.speck_share > 0
    assert (result.weight[6][block] > 0.99).all()  # the object is SPANet's
    assert record.spanet_run_share < 0.6
    # Specks and background where SPANet has no weight (its part here is the frame, rain kept).
    unweighted = result.weight[6:7] == 0
    assert score_clip(result.frames[6:7], truth[6:7], unweighted).object_psnr > 35.0
    # With speck boxes of the pair check's widening alone (none of these fits), SPANet reads
    # a crop around every one of them.
    monkeypatch.setattr(video_derain, "SPECK_SQUARES", 0)
    every = derain_clip(frames, identity, window=12)
    assert every.records[6].spanet_run_share > record.spanet_run_share + 0.2


def test_bright_parts_touching_an_object_are_the_objects(identity):
    clip = tiny_clip("static", size=(64, 96), n_frames=12)
    frames, truth = clip.frames.copy(), clip.truth.copy()
    # A dark object moving right with a thin bright pole on top (a lamp post on a cart, sky
    # through a gap in a swaying branch): the pole alone passes for a streak.
    for k in range(3, 9):
        x = 20 + 4 * k
        block, pole = (slice(40, 50), slice(x, x + 10)), (slice(12, 40), slice(x + 4, x + 6))
        for image in (frames[k], truth[k]):
            image[block] = image[block] // 4
            image[pole] = 255
    result = derain_clip(frames, identity, window=12)
    pole = (slice(26, 34), slice(44, 46))  # frame 5, above the object's widened box
    assert (result.weight[5][pole] > 0.99).all()  # SPANet's (here: the frame's)
    np.testing.assert_array_equal(result.frames[5][pole], truth[5][pole])


def test_a_fast_light_wider_than_streaks_is_kept_from_the_frame(identity):
    # A light 20 px across jumping 30 px a frame: never at the same place twice (not
    # persistent), narrower than the pair check's horizontal line (23 px at 400 px wide),
    # wider than three streak squares (15 px).
    size = (80, 400)
    clip = tiny_clip("static", size=size, n_frames=10)
    # A dim band of the scene for the light to cross (rain in it dimmed alike).
    frames, truth = clip.frames.copy(), clip.truth.copy()
    for image in (frames, truth):
        image[:, 25:56] //= 3
    yy, xx = np.mgrid[:size[0], :size[1]]
    discs = np.zeros(frames.shape[:3], bool)
    for k in range(2, 9):
        discs[k] = np.hypot(yy - 40, xx - (60 + 30 * k)) <= 10
        for image in (frames[k], truth[k]):
            image[discs[k]] = 250
    result = derain_clip(frames, identity, window=10)
    core = np.stack([cv2.erode(d.astype(np.uint8), np.ones((3, 3))) > 0
                     for d in discs])  # a pixel in from the rim
    assert (result.weight[core] > 0.99).all()  # SPANet's (here: the frame's)
    np.testing.assert_array_equal(result.frames[core], truth[core])
    # Streaks elsewhere are still taken for rain.
    assert score_clip(result.frames, truth).psnr > score_clip(frames, truth).psnr + 8.0


def test_nearest_warps_under_a_quarter_pixel_are_the_identity():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    analysis = type("A", (), {})()
    for _ in range(20):
        shift = rng.uniform(-0.24, 0.24, 2) / np.sqrt(2)
        matrix = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]])
        analysis.estimate = type("E", (), {"motion": type("M", (), {
            "matrices": np.stack([np.eye(3), matrix])})()})()
        mapped = video_derain._to_frame(analysis, image, 1, 0)
        assert mapped is image
        warped = cv2.warpPerspective(image, matrix, (64, 48), flags=cv2.INTER_NEAREST
                                     | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
        assert (warped == image).all()


def test_blend_in_the_weights_box_is_the_whole_frame_mix():
    rng = np.random.default_rng(4)
    frame = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    background = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    derained = rng.uniform(0, 255, (40, 56, 3)).astype(np.float32)
    weight = np.zeros((40, 56), np.float32)
    weight[10:18, 20:31] = rng.uniform(0.01, 1, (8, 11))

    class Fake:
        def where(self, image, need):
            return (np.where(need[..., None], derained, 0).astype(np.float32),
                    0.2 if need.any() else 0.0)

    out, ran = video_derain._blend(Fake(), frame, weight, background)
    wt = weight[..., None]
    assert ran == 0.2
    np.testing.assert_array_equal(out, round_to_uint8(wt * np.where(wt > 0, derained, 0)
                                                      + (1 - wt) * background.astype(np.float32)))
    none, _ = video_derain._blend(Fake(), frame, np.zeros_like(weight), background)
    np.testing.assert_array_equal(none, background)


def test_spanet_crops_of_a_frame_share_one_block_of_reused_memory(identity, monkeypatch):
    """The forward passes on one frame's crops run in one ``reuse_freed_memory`` block: the
    memory they free is returned to the system once per frame, not after every pass (each
    pass would fault it in afresh)."""
    from spanetlib.models import memory

    trims: list[int] = []

    class FakeLibc:
        def mallopt(self, param: int, value: int) -> int:
            return 1

        def malloc_trim(self, pad: int) -> int:
            trims.append(pad)
            return 1

    spanet = video_derain._Spanet(identity, None, "cpu", "fp32")
    assert spanet.context > 0  # measured before counting
    passes: list[int] = []
    forward = spanet._forward
    monkeypatch.setattr(spanet, "_forward", lambda batch: passes.append(len(batch))
                        or forward(batch))
    monkeypatch.setattr(memory, "_glibc", lambda: FakeLibc())
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    need = np.zeros((240, 320), bool)
    need[:, :6] = True  # an edge band, a part in the middle: passes of two crop sizes
    need[100:130, 150:200] = True
    out, share = spanet.where(frame, need)
    assert len(passes) >= 2 and 0 < share < 0.7
    assert len(trims) == 2, trims  # before the passes, and once after them all
    np.testing.assert_allclose(out[need], frame[need].astype(np.float32), atol=0.5)


def test_a_scene_state_of_four_frames_gets_its_own_background(identity, monkeypatch):
    # A parked car leaves after 4 of 24 frames (a pan's fast start splits real footage so):
    # the 4 frames get their period's own estimate, not the later period's, which would
    # leave the car to SPANet (here the identity: the rain frame).
    from spanetlib.derain import video as video_module

    clip = make_rain_clip(CLIP_PRESETS["parked-leaves"].replace(
        size=(64, 96), n_frames=24, parked=0.17, transition_frames=0), 0)
    result = derain_clip(clip.frames, identity, window=24)
    assert [r.segment for r in result.records[:4]] == [0] * 4
    assert all(r.paired for r in result.records[:4])
    assert result.weight[:4].mean() < 0.05
    monkeypatch.setattr(video_module, "SHORT_PERIOD", MIN_FRAMES)  # as before: no estimate
    before = derain_clip(clip.frames, identity, window=24)
    assert before.weight[:4].mean() > 0.2
    assert score_clip(result.frames[:4], clip.truth[:4]).psnr \
        > score_clip(before.frames[:4], clip.truth[:4]).psnr + 8.0


def test_a_short_period_where_nothing_changed_takes_the_longer_one(identity):
    # The splitter cuts frames 0-3 of this clip off although nothing changes there (the car
    # arrives at frame 16): their 4-frame estimate keeps rain, the next period's does not,
    # and explains them as well, so it wins.
    from spanetlib.derain.video import MOTION_MAX_SIDE, SHORT_PERIOD
    from spanetlib.pipeline.clip_estimate import estimate_clip

    clip = make_rain_clip(CLIP_PRESETS["parked-arrives"].replace(size=(96, 128)), 0)
    estimate = estimate_clip(clip.frames, quality=False, max_side=MOTION_MAX_SIDE,
                             min_frames=SHORT_PERIOD)
    assert len(estimate.segments[0].frames) == 4 and set(clip.state[:16]) == {0}
    result = derain_clip(clip.frames, identity, window=60)
    assert [r.segment for r in result.records[:4]] == [1] * 4
    assert score_clip(result.frames[:4], clip.truth[:4]).psnr > 44.0
