import argparse
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spanetlib import cli
from spanetlib.io.files import round_to_uint8, write_image
from spanetlib.paper.reproduce import select_notebooks


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "spanetlib.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_help_lists_every_command():
    out = run_cli("--help").stdout
    for command in ("estimate-background", "derain", "build-dataset", "train",
                    "train-synthetic", "evaluate", "reproduce"):
        assert command in out


@pytest.mark.parametrize("args, message", [
    (("reproduce", "--only", "99"), "unknown notebook"),
    (("estimate-background", "/nonexistent/video.mp4", "-o", "out.png"), "not found"),
])
def test_bad_input_gives_one_line_and_exit_2(args, message, tmp_path):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_argument_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["estimate-background", "x", "-o", "y.png", "--frames", "0"])
    assert info.value.code == 2
    assert "positive integer" in capsys.readouterr().err


def test_estimate_background_from_frame_folder(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 200, (24, 32, 3), dtype=np.uint8)
    frames = tmp_path / "frames"
    for i in range(21):  # rain in 15 % of frames: a pixel almost never has rain in most of them
        frame = clean.copy()
        frame[rng.random((24, 32)) < 0.15] = 255  # sparse bright "rain"
        write_image(frames / f"{i:03d}.png", frame)
    out = tmp_path / "clean.png"
    result = run_cli("estimate-background", frames, "-o", out)
    assert result.returncode == 0, result.stderr
    from spanetlib.io.files import read_image
    estimate = read_image(out).astype(int)
    assert (estimate == clean).all(axis=-1).mean() > 0.99
    again = run_cli("estimate-background", frames, "-o", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr


# ------------------------------------------------------- estimate-background on phone clips
def _clip_folder(tmp_path, name, **changes):
    from spanetlib.io.video import write_frames
    from spanetlib.synthesis.rain import CLIP_PRESETS, make_rain_clip

    spec = CLIP_PRESETS[name].replace(**{"size": (96, 128), "n_frames": 30, **changes})
    clip = make_rain_clip(spec)
    return clip, write_frames(tmp_path / name, clip.frames)[0].parent


def test_estimate_background_writes_one_image_per_stable_period(tmp_path, capsys, psnr255):
    from spanetlib.io.files import read_image

    clip, folder = _clip_folder(tmp_path, "parked-leaves", n_frames=40)
    out = tmp_path / "clean.png"
    assert cli.main(["estimate-background", str(folder), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "the scene changed: 2 stable periods, one clean image each" in printed
    assert "motion: translation, largest displacement 0.0" in printed
    assert not out.exists()  # no single image stands for two scene states
    reference = 20
    for state in (0, 1):
        path = tmp_path / f"clean_period{state + 1}.png"
        assert f"-> {path}" in printed
        truth = clip.state_truth(state, reference)
        other = clip.state_truth(1 - state, reference)
        image = read_image(path)
        assert psnr255(image, truth) > 35 and psnr255(image, other) < 30
    # a second run refuses to replace the period images, before reading any frame
    assert cli.main(["estimate-background", str(folder), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "clean_period1.png exists" in err and len(err.strip().splitlines()) == 1


def test_estimate_background_aligns_by_default_and_crops_to_the_valid_region(tmp_path,
                                                                            capsys, psnr255):
    from spanetlib.io.files import read_image
    from spanetlib.pipeline.background import estimate_background

    clip, folder = _clip_folder(tmp_path, "handheld")
    reference = 15
    truth = clip.state_truth(0, reference)
    auto = tmp_path / "auto.png"
    assert cli.main(["estimate-background", str(folder), "-o", str(auto)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"motion: (translation|euclidean|homography), largest displacement "
                     r"\d+\.\d+ px, (2[5-9]|29)/30 frames warped", printed)
    match = re.search(r"cropped to (\d+) x (\d+) at x (\d+), y (\d+)", printed)
    assert match and "--keep-size keeps 128 x 96" in printed
    w, h, x0, y0 = (int(v) for v in match.groups())
    image = read_image(auto)
    assert image.shape == (h, w, 3) and w < 128 and h < 96
    crop = truth[y0:y0 + h, x0:x0 + w]
    unaligned = round_to_uint8(estimate_background(clip.frames).image)[y0:y0 + h, x0:x0 + w]
    assert psnr255(image, crop) > 30 and psnr255(image, crop) > psnr255(unaligned, crop) + 5
    # --keep-size: the frame's size and a mask of the valid region
    kept = tmp_path / "kept.png"
    assert cli.main(["estimate-background", str(folder), "-o", str(kept), "--keep-size",
                     "--reliability"]) == 0
    assert "marked in kept_valid.png" in capsys.readouterr().out
    valid = read_image(tmp_path / "kept_valid.png")[..., 0] > 0
    assert read_image(kept).shape == (96, 128, 3) and 0.6 < valid.mean() < 1
    np.testing.assert_array_equal(read_image(kept)[y0:y0 + h, x0:x0 + w], image)
    assert read_image(tmp_path / "kept_reliability.png").shape == (96, 128, 3)
    # --align off measures and says the estimate is smeared
    assert cli.main(["estimate-background", str(folder), "-o", str(tmp_path / "off.png"),
                     "--align", "off"]) == 0
    captured = capsys.readouterr()
    assert "0/30 frames warped" in captured.out and "(--align off)" in captured.out
    assert "warning: " in captured.err and "is smeared; use --align auto" in captured.err


def test_estimate_background_of_a_static_clip_is_the_papers_estimate(tmp_path, capsys):
    from spanetlib.io.files import read_image
    from spanetlib.pipeline.background import estimate_background

    clip, folder = _clip_folder(tmp_path, "static")
    out = tmp_path / "clean.png"
    assert cli.main(["estimate-background", str(folder), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "0/30 frames warped" in printed and "whole frame" in printed
    np.testing.assert_array_equal(read_image(out),
                                  round_to_uint8(estimate_background(clip.frames).image))


def test_select_notebooks_by_prefix_and_name():
    assert select_notebooks(["03", "figures"]) == ["03_table2", "06_figures"]
    assert select_notebooks(None)[0] == "01_dataset_generation"


def test_reproduce_never_replaces_a_non_regular_file(tmp_path, monkeypatch):
    import papermill

    from spanetlib.io.errors import InputError
    from spanetlib.paper import reproduce

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "06_figures.ipynb").write_text("{}")
    runs = []

    def execute(source, output, **kwargs):
        runs.append(source)
        Path(output).write_text('{"executed": true}')

    monkeypatch.setattr(reproduce, "find_notebooks_dir", lambda: notebooks)
    monkeypatch.setattr(papermill, "execute_notebook", execute)
    executed = tmp_path / "out" / "results" / "notebooks"
    (executed / "06_figures.ipynb").mkdir(parents=True)  # in the way: refused before running
    with pytest.raises(InputError, match="06_figures.ipynb is not a regular file"):
        reproduce.run_notebooks("smoke", out_dir=tmp_path / "out", only=["06"], progress=False)
    assert runs == []
    (executed / "06_figures.ipynb").rmdir()
    (tmp_path / "kept.ipynb").write_text("old")  # a link is written through, as by open()
    (executed / "06_figures.ipynb").symlink_to(tmp_path / "kept.ipynb")
    summary = reproduce.run_notebooks("smoke", out_dir=tmp_path / "out", only=["06"],
                                      progress=False)
    assert (executed / "06_figures.ipynb").is_symlink()
    assert (tmp_path / "kept.ipynb").read_text() == '{"executed": true}'
    assert summary.executed == {"06_figures": executed / "06_figures.ipynb"}
    assert not list(executed.glob(".*"))  # no partial or temporary file left


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from spanetlib.synthesis.testsets import build_synthetic_video_scenes

    root = tmp_path_factory.mktemp("scenes")
    build_synthetic_video_scenes(root, n_scenes=2, n_frames=10, size=(40, 48),
                                 densities=("sparse",), seed=1)
    return root


def test_build_dataset_train_evaluate_from_the_command_line(scenes, tmp_path):
    dataset = tmp_path / "dataset"
    missing = run_cli("build-dataset", tmp_path / "nope", "-o", dataset, "--auto-accept")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    no_review = run_cli("build-dataset", scenes, "-o", dataset)
    assert no_review.returncode == 2 and "--auto-accept" in no_review.stderr
    built = run_cli("build-dataset", scenes, "-o", dataset, "--auto-accept", "--crop", "24",
                    "--frames-per-video", "2", "--test-fraction", "0.5")
    assert built.returncode == 0, built.stderr
    assert (dataset / "train.txt").read_text().strip() and (dataset / "test.txt").read_text()

    run = tmp_path / "run"
    trained = run_cli("train", "--data", dataset, "--profile", "smoke", "--steps", "2",
                      "--out", run, "--device", "cpu")
    assert trained.returncode == 0, trained.stderr
    assert (run / "final.pt").is_file() and (run / "log.csv").is_file()
    before = (run / "final.pt").read_bytes()
    again = run_cli("train", "--data", dataset, "--profile", "smoke", "--steps", "3",
                    "--out", run, "--device", "cpu")
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert "holds a training run (final.pt, last.pt, log.csv); pass --resume" in again.stderr
    assert "--overwrite" in again.stderr and (run / "final.pt").read_bytes() == before
    replaced = run_cli("train", "--data", dataset, "--profile", "smoke", "--steps", "3",
                       "--out", run, "--device", "cpu", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert "trained 3 steps" in replaced.stdout

    out = tmp_path / "scores"
    scored = run_cli("evaluate", dataset / "test.txt", "-o", out, "--weights", run / "final.pt",
                     "--convention", "standard", "--device", "cpu")
    assert scored.returncode == 0, scored.stderr
    assert (tmp_path / "scores.csv").is_file() and (tmp_path / "scores.md").is_file()
    bad = run_cli("evaluate", dataset / "missing.txt", "-o", out, "--weights", "input")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def _frames(folder, n=3):
    for i in range(n):
        write_image(folder / f"{i:03d}.png", np.full((16, 16, 3), 10 * i, np.uint8))
    return folder


@pytest.mark.parametrize("output, message", [
    ("out.txt", r"cannot write an image as '\.txt' \(.*out\.txt\); use one of \.png"),
    ("blocker/sub/out.png", r"cannot create .*blocker/sub: .*blocker is not a folder"),
    ("old.png", r"old\.png exists; pass --overwrite"),
    ("fifo.png", r"fifo\.png .*is not a regular file .*refusing to replace it"),
])
def test_estimate_background_checks_the_output_before_reading(tmp_path, monkeypatch, capsys,
                                                              output, message):
    import os

    from spanetlib.io import video

    frames = _frames(tmp_path / "frames")
    (tmp_path / "blocker").write_text("a file")
    (tmp_path / "old.png").write_bytes(b"an earlier result")
    os.mkfifo(tmp_path / "fifo.png")

    def never(*args, **kwargs):
        raise AssertionError("the frames were read before the output was checked")

    monkeypatch.setattr(video, "read_sequence", never)
    assert cli.main(["estimate-background", str(frames), "-o", str(tmp_path / output)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert cli.main(["estimate-background", str(frames), "-o", str(tmp_path / "fifo.png"),
                     "--overwrite"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo.png").st_mode)
    assert (tmp_path / "old.png").read_bytes() == b"an earlier result"


def test_build_dataset_refuses_other_settings_and_overwrites_on_request(scenes, tmp_path):
    dataset = tmp_path / "dataset"
    args = ["build-dataset", scenes, "-o", dataset, "--auto-accept", "--frames-per-video", "1"]
    assert run_cli(*args, "--crop", "24").returncode == 0
    refused = run_cli(*args, "--crop", "16")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "built with other settings (crop 24 -> 16, stride 24 -> 16)" in refused.stderr
    resumed = run_cli(*args, "--crop", "24")
    assert resumed.returncode == 0 and "0 exported now, 2 already done" in resumed.stdout
    replaced = run_cli(*args, "--crop", "16", "--overwrite")
    assert replaced.returncode == 0 and "2 exported now" in replaced.stdout, replaced.stderr
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"x")
    foreign = run_cli("build-dataset", scenes, "-o", photos, "--auto-accept", "--overwrite")
    assert foreign.returncode == 2 and "holds no spanetlib export" in foreign.stderr


# ------------------------------------------------------------------ spanet evaluate on folders


@pytest.mark.parametrize("layout", ["input-target", "rain100", "rain1400", "spa-data",
                                    "rain1200", "pair-list"])
def test_evaluate_detects_and_reports_each_layout(layout, layout_folders, tmp_path, capsys):
    import pandas as pd

    from spanetlib.io.layouts import read_test_folder

    stem = tmp_path / "scores"
    assert cli.main(["evaluate", str(layout_folders[layout]), "-o", str(stem), "--weights",
                     "input", "--convention", "y-matlab", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"layout '{layout}'" in out.splitlines()[0]
    per_image = pd.read_csv(f"{stem}_per_image.csv", dtype={"name": str})
    expected = [p.name for p in read_test_folder(layout_folders[layout]).pairs]
    assert list(per_image["name"]) == expected
    assert list(pd.read_csv(f"{stem}.csv")["n"]) == [len(expected)]
    assert "y-matlab: Restormer's and DRSformer's tables" in out


def test_evaluate_forced_layout_and_folder_errors(layout_folders, tmp_path, capsys):
    spa = layout_folders["spa-data"]
    assert cli.main(["evaluate", str(spa), "-o", str(tmp_path / "a"), "--weights", "input",
                     "--layout", "pair-list", "--convention", "standard"]) == 0
    assert "layout 'pair-list'" in capsys.readouterr().out
    assert cli.main(["evaluate", str(layout_folders["rain100"]), "-o", str(tmp_path / "b"),
                     "--weights", "input", "--layout", "input-target"]) == 2
    err = capsys.readouterr().err
    assert "does not have the input-target layout: expected input/X" in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    assert cli.main(["evaluate", str(tmp_path / "empty"), "-o", str(tmp_path / "c"),
                     "--weights", "input"]) == 2
    err = capsys.readouterr().err
    assert "no known test-folder layout; expected one of: input-target (" in err
    assert len(err.strip().splitlines()) == 1


def test_evaluate_save_outputs_and_overwrite_from_the_command_line(layout_folders, tmp_path):
    from spanetlib.io.files import read_image

    folder, out, stem = layout_folders["input-target"], tmp_path / "derained", tmp_path / "r"
    weights = Path(__file__).parent / "data" / "prenet" / "PRN6_r_random.pth"
    args = ["evaluate", folder, "-o", stem, "--weights", weights,
            "--convention", "standard", "--device", "cpu", "--save-outputs", out]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in out.iterdir()) == ["1.png", "2.png"]
    assert read_image(out / "1.png").shape == read_image(folder / "input" / "1.png").shape
    again = run_cli(*args)  # the result files exist: refused, nothing replaced
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "result file(s) exist" in again.stderr and "--overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    (stem.parent / "r.csv").unlink(), (stem.parent / "r.md").unlink()
    (stem.parent / "r_per_image.csv").unlink()
    images = run_cli(*args)  # now the output images are what exists
    assert images.returncode == 2 and "2 output image file(s) exist" in images.stderr
    forced = run_cli(*args, "--overwrite")
    assert forced.returncode == 0, forced.stderr


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_every_option_of_every_command_shows_its_default():
    flags = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction,
             argparse._VersionAction)
    checked = 0
    for name, command in _subparsers(cli.build_parser()).items():
        formatter = command._get_formatter()
        for action in command._actions:
            if not action.option_strings or action.required or isinstance(action, flags):
                continue
            text = formatter._expand_help(action) if action.help else ""
            where = f"{name} {action.option_strings[-1]}"
            assert re.search(r"\(default:? ", text), f"{where}: no default in {text!r}"
            if action.default is not None:
                assert str(action.default) in text.split("default")[-1], where
            checked += 1
    assert checked >= 30
    evaluate = _subparsers(cli.build_parser())["evaluate"]
    text = evaluate.format_help()
    assert "y-matlab-builtin" in text and "rain1400" in text  # choices from the library


def test_derain_tile_and_train_synthetic_options(monkeypatch):
    parser = cli.build_parser()
    assert parser.parse_args(["derain", "x.png", "-o", "out"]).tile == "auto"
    assert parser.parse_args(["derain", "x.png", "-o", "out", "--tile", "300"]).tile == 300
    assert parser.parse_args(["derain", "x.png", "-o", "out", "--tile", "auto"]).tile == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["derain", "x.png", "-o", "out", "--tile", "0"])
    seen = {}
    monkeypatch.setattr("spanetlib.paper.shipped_weights.train_synthetic_weights",
                        lambda out, **kwargs: seen.update(kwargs) or out / "w.pth")
    assert cli.main(["train-synthetic", "--out", "x", "--overwrite"]) == 0
    assert seen["overwrite"] is True and seen["resume"] is False


def test_out_of_memory_anywhere_is_one_line(monkeypatch, capsys):
    import torch

    def run(args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\n"
                                          "GPU 0 has a total capacity of 8 GiB")

    monkeypatch.setattr(cli, "_evaluate", run)
    assert cli.main(["evaluate", "folder", "-o", "results/x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "spanet evaluate: error: out of memory (CUDA out of memory. Tried to allocate 20.00 "
        "GiB GPU 0 has") and "--tile" in err

    def bug(args):
        raise RuntimeError("a bug, not bad input")

    monkeypatch.setattr(cli, "_evaluate", bug)
    with pytest.raises(RuntimeError, match="a bug"):  # programming errors keep their traceback
        cli.main(["evaluate", "folder", "-o", "results/x"])


def test_evaluate_precision_is_checked_first(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("spanetlib.models.device.cpu_has_fast_bf16", lambda: False)
    assert cli.main(["evaluate", str(tmp_path / "missing"), "-o", str(tmp_path / "r"),
                     "--precision", "bf16", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "precision 'bf16' refused" in err


def test_reproduce_records_one_time_per_profile_and_notebook(tmp_path):
    from spanetlib.paper.reproduce import record_time

    record_time(tmp_path, "quick", "03_table2", 12.34)
    record_time(tmp_path, "quick", "01_dataset_generation", 5)
    path = record_time(tmp_path, "quick", "03_table2", 20)  # a rerun replaces its row
    record_time(tmp_path, "smoke", "03_table2", 1)
    table = pd.read_csv(path)
    assert list(zip(table["profile"], table["notebook"], table["seconds"], strict=True)) == [
        ("quick", "01_dataset_generation", 5.0), ("quick", "03_table2", 20.0),
        ("smoke", "03_table2", 1.0)]
    assert (table["cores"] >= 1).all() and table["cpu"].notna().all()


def test_the_cpu_in_results_names_its_vector_extensions(monkeypatch):
    # Two machines both called "AMD EPYC" (one with AVX2, one with AVX-512 and BF16) must not
    # read alike in results/.
    import builtins
    import io

    from spanetlib.paper import reproduce

    real_open = builtins.open

    def cpuinfo(flags: str):
        text = f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n\nprocessor\t: 1\n"

        def fake_open(path, *args, **kwargs):
            return io.StringIO(text) if str(path) == "/proc/cpuinfo" \
                else real_open(path, *args, **kwargs)
        return fake_open

    monkeypatch.setattr(builtins, "open", cpuinfo("fpu sse2 avx avx2 fma"))
    assert reproduce.cpu_name() == "AMD EPYC (AVX2)"
    monkeypatch.setattr(builtins, "open", cpuinfo("avx2 avx512f avx512bw avx512_bf16"))
    assert reproduce.cpu_name() == "AMD EPYC (AVX-512, BF16)"
    monkeypatch.setattr(builtins, "open", cpuinfo("avx2 avx512f avx512_bf16 amx_tile amx_bf16"))
    assert reproduce.cpu_name() == "AMD EPYC (AVX-512, BF16, AMX)"
