import subprocess
import sys

import numpy as np
import pytest

from spanetlib import cli
from spanetlib.fileio import write_image
from spanetlib.reproduce import select_notebooks


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "spanetlib.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_help_lists_every_command():
    out = run_cli("--help").stdout
    for command in ("estimate-background", "derain", "build-dataset", "train", "evaluate",
                    "reproduce"):
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
    from spanetlib.fileio import read_image
    estimate = read_image(out).astype(int)
    assert (estimate == clean).all(axis=-1).mean() > 0.99
    again = run_cli("estimate-background", frames, "-o", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_select_notebooks_by_prefix_and_name():
    assert select_notebooks(["03", "figures"]) == ["03_table2", "06_figures"]
    assert select_notebooks(None)[0] == "01_dataset_generation"
