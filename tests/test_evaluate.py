"""Tests for spanetlib.evaluation.evaluate on tiny pairs made here."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from spanetlib.evaluation import evaluate as ev
from spanetlib.evaluation.evaluate import (
    compare_models,
    evaluate_command,
    evaluate_model,
    format_markdown,
    metric_column,
    summarize,
    write_table,
)
from spanetlib.evaluation.metrics import psnr_ssim_np
from spanetlib.io.errors import InputError
from spanetlib.io.files import read_image, write_image

CONVS = ("standard", "spanet-paper", "y-matlab", "y-matlab-builtin")
LEVELS = ("light", "heavy", "light")


class Shift(nn.Module):
    """Adds a constant: on images in [0.2, 0.8] the error is exactly ``delta`` everywhere."""

    def __init__(self, delta: float) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x + self.delta, None


class TinyConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x + 0.1 * self.conv(x), None


@pytest.fixture
def pairs_dir(tmp_path: Path, write_pairs) -> Path:
    """3 pairs of 24x32 PNGs (rain = clean + streak noise), test.txt and labels.csv."""
    rng = np.random.default_rng(0)
    images = []
    for i in range(3):
        clean = rng.integers(40, 200, size=(24, 32, 3), dtype=np.uint8)
        noise = rng.integers(0, 60 * (i + 1), size=(24, 32, 1))
        images.append((np.clip(clean.astype(int) + noise, 0, 255).astype(np.uint8), clean))
    write_pairs(tmp_path / "test.txt", images)
    pd.DataFrame({"name": [str(i) for i in range(3)], "level": LEVELS}).to_csv(  # stems
        tmp_path / "labels.csv", index=False)
    return tmp_path


def _flat_images(value: float, n: int = 2) -> list[tuple[np.ndarray, np.ndarray, str]]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        clean = rng.uniform(0.2, 0.8, size=(24, 32, 3)).astype(np.float32)
        out.append((clean if value == 0 else clean - value, clean, f"img{i}"))
    return out


def test_input_row_equals_direct_metrics(pairs_dir: Path, identity) -> None:
    df = evaluate_model(None, pairs_dir / "test.txt", progress=False)
    assert list(df["name"]) == ["0", "1", "2"]  # as spanetlib.io.layouts names list pairs
    assert list(df.columns) == ["name"] + [metric_column(m, c) for c in CONVS
                                           for m in ("psnr", "ssim")]
    for i, row in df.iterrows():
        rain = read_image(pairs_dir / "rain" / f"{i}.png")
        clean = read_image(pairs_dir / "clean" / f"{i}.png")
        for conv in CONVS:
            p, s = psnr_ssim_np(ev.as_prediction(rain), clean, conv)
            assert row[f"psnr[{conv}]"] == p and row[f"ssim[{conv}]"] == s
            assert p == pytest.approx(psnr_ssim_np(rain, clean, conv)[0], rel=1e-6)
    # The input row is what a model that returns its input scores, to the bit.
    pd.testing.assert_frame_equal(evaluate_model(identity, pairs_dir / "test.txt",
                                                 progress=False), df, rtol=0, atol=0)
    # more noise -> lower PSNR (the pairs differ, so the test can fail)
    assert df["psnr[standard]"].is_monotonic_decreasing
    same = evaluate_model("input", pairs_dir / "test.txt", conventions="y-matlab",
                          progress=False)
    assert list(same.columns) == ["name", "psnr[y-matlab]", "ssim[y-matlab]"]
    np.testing.assert_array_equal(same["psnr[y-matlab]"], df["psnr[y-matlab]"])


def test_path_tuples_and_dataset_folder(pairs_dir: Path) -> None:
    tuples = [(pairs_dir / "rain" / f"{i}.png", pairs_dir / "clean" / f"{i}.png")
              for i in range(3)]
    by_tuple = evaluate_model(None, tuples, conventions="standard", progress=False)
    assert list(by_tuple["name"]) == ["0.png", "1.png", "2.png"]
    by_folder = evaluate_model(None, pairs_dir, conventions="standard", progress=False)
    np.testing.assert_array_equal(by_tuple["psnr[standard]"], by_folder["psnr[standard]"])


def test_identity_on_identical_pairs_is_perfect(identity) -> None:
    df = evaluate_model(identity, _flat_images(0.0), progress=False)
    assert (df["psnr[y-matlab]"] == math.inf).all()  # quantized: exactly equal
    assert (df["psnr[standard]"] > 120).all()          # float32 round trip only
    for conv in CONVS:
        np.testing.assert_allclose(df[f"ssim[{conv}]"], 1.0, atol=1e-6)


def test_shift_model_has_closed_form_psnr() -> None:
    # rain = clean - 0.1, model adds 0.1 back... and 0.05 more: error 0.05 -> 26.02 dB
    df = evaluate_model(Shift(0.15), _flat_images(0.1), conventions="standard",
                        progress=False)
    np.testing.assert_allclose(df["psnr[standard]"], 20 * math.log10(1 / 0.05), atol=1e-3)
    assert (df["ssim[standard]"] < 1).all()


def test_batched_matches_single(pairs_dir: Path) -> None:
    model = TinyConv()
    one = evaluate_model(model, pairs_dir / "test.txt", progress=False, batch_size=1)
    two = evaluate_model(model, pairs_dir / "test.txt", progress=False, batch_size=2)
    pd.testing.assert_frame_equal(one, two, rtol=1e-5)
    assert model.training  # evaluate_model restores the mode it found
    model.eval()
    evaluate_model(model, pairs_dir / "test.txt", progress=False, max_images=1)
    assert not model.training


def test_max_images_and_labels(pairs_dir: Path) -> None:
    df = evaluate_model(None, pairs_dir / "test.txt", progress=False, max_images=2,
                        labels=pairs_dir / "labels.csv")
    assert list(df["name"]) == ["0", "1"]
    assert list(df.columns[:2]) == ["name", "level"]
    assert list(df["level"]) == list(LEVELS[:2])
    exact = pd.DataFrame({"name": ["2", "0"], "level": ["x", "y"],
                          "scene": [7, 8]})
    df = evaluate_model(None, pairs_dir / "test.txt", conventions="standard", progress=False,
                        labels=exact)
    assert list(df.columns) == ["name", "level", "scene", "psnr[standard]", "ssim[standard]"]
    assert df["level"].tolist()[::2] == ["y", "x"] and pd.isna(df.loc[1, "level"])
    assert df["scene"].tolist()[::2] == [8, 7]


def test_compare_models_and_summary(pairs_dir: Path) -> None:
    models = {"Rain input": None, "shift": Shift(0.02), "tiny": TinyConv()}
    per_image, summary = compare_models(models, pairs_dir / "test.txt", progress=False)
    assert len(per_image) == 9 and list(per_image.columns[:2]) == ["model", "name"]
    assert list(summary["model"]) == list(models)  # insertion order kept
    assert list(summary["n"]) == [3, 3, 3]
    for name in models:
        rows = per_image[per_image["model"] == name]
        got = summary.set_index("model").loc[name]
        for col in ev.metric_columns(per_image):
            assert got[col] == pytest.approx(float(np.mean(rows[col])), rel=1e-12)
    assert summary.loc[0, "psnr[standard]"] != summary.loc[1, "psnr[standard]"]


def test_summary_grouped_by_level(pairs_dir: Path) -> None:
    per_image, summary = compare_models({"input": None, "tiny": TinyConv()},
                                        pairs_dir / "test.txt", conventions=["standard"],
                                        labels=pairs_dir / "labels.csv", by="level",
                                        progress=False)
    assert list(summary.columns) == ["model", "level", "psnr[standard]", "ssim[standard]", "n"]
    assert list(zip(summary["model"], summary["level"], summary["n"], strict=True)) == [
        ("input", "light", 2), ("input", "heavy", 1), ("tiny", "light", 2), ("tiny", "heavy", 1)]
    light = per_image[(per_image["model"] == "input") & (per_image["level"] == "light")]
    assert summary.loc[0, "psnr[standard]"] == pytest.approx(light["psnr[standard]"].mean())
    single = summarize(per_image[per_image["model"] == "input"].drop(columns="model"))
    assert len(single) == 1 and single.loc[0, "n"] == 3


def test_write_table_round_trip(tmp_path: Path) -> None:
    df = pd.DataFrame({"model": ["input", "a|b"], "psnr[standard]": [20.123456789, math.inf],
                       "ssim[standard]": [0.6543219, 1.0], "n": [3, 3]})
    csv_path, md_path = write_table(df, tmp_path / "out" / "table2", caption="Table 2.")
    assert csv_path == tmp_path / "out" / "table2.csv" and md_path.suffix == ".md"
    pd.testing.assert_frame_equal(pd.read_csv(csv_path), df)
    lines = md_path.read_text().splitlines()
    assert lines[0] == "Table 2." and lines[1] == ""
    assert lines[2] == "| model | psnr[standard] | ssim[standard] | n |"
    assert re.fullmatch(r"\|---\|---:\|---:\|---:\|", lines[3])
    assert lines[4] == "| input | 20.12 | 0.6543 | 3 |"
    assert lines[5] == "| a\\|b | inf | 1.0000 | 3 |"
    assert len(lines) == 6
    text = format_markdown(df, float_format="%.1f")
    assert "| input | 20.1 | 0.7 | 3 |" in text
    text = format_markdown(df, float_format={"psnr[standard]": "%.3f"})
    assert "| input | 20.123 | 0.6543 | 3 |" in text


def test_write_table_shows_a_view_and_keeps_every_column_in_the_csv(tmp_path: Path) -> None:
    df = pd.DataFrame({"model": ["input", "spanet"], "psnr": [20.123456789, 30.5],
                       "ssim": [0.65, 0.9], "n": [3, 3]})
    view = df[["model", "psnr"]].rename(columns={"psnr": "PSNR"})
    csv_path, md_path = write_table(df, tmp_path / "t", markdown=view)
    pd.testing.assert_frame_equal(pd.read_csv(csv_path), df)
    assert md_path.read_text().splitlines()[:3] == ["| model | PSNR |", "|---|---:|",
                                                   "| input | 20.12 |"]


def test_evaluate_command_input(pairs_dir: Path, tmp_path: Path, capsys) -> None:
    summary = evaluate_command("input", pairs_dir / "test.txt", tmp_path / "res" / "input",
                               conventions=["standard"], device="cpu", max_images=2,
                               progress=False)
    assert list(summary["model"]) == ["input"] and summary.loc[0, "n"] == 2
    per_image = pd.read_csv(tmp_path / "res" / "input_per_image.csv")
    assert len(per_image) == 2
    back = pd.read_csv(tmp_path / "res" / "input.csv")
    assert back.loc[0, "psnr[standard]"] == pytest.approx(per_image["psnr[standard]"].mean())
    out = capsys.readouterr().out
    assert "| model | psnr[standard] | ssim[standard] | n |" in out


def test_evaluate_command_checkpoint(pairs_dir: Path, tmp_path: Path) -> None:
    from spanetlib.models.spanet import SPANet

    torch.manual_seed(0)
    model = SPANet(channels=4, sam_mode="none")
    ckpt = tmp_path / "tiny.pt"
    torch.save({"model": model.state_dict(),
                "config": {"model": "spanet",
                           "model_kwargs": {"channels": 4, "sam_mode": "none"}}}, ckpt)
    summary = evaluate_command(str(ckpt), pairs_dir / "test.txt", tmp_path / "tiny",
                               conventions=["standard"], device="cpu", progress=False)
    direct = summarize(evaluate_model(model, pairs_dir / "test.txt", conventions="standard",
                                      progress=False))
    assert summary.loc[0, "model"] == str(ckpt)  # the weights as given
    assert summary.loc[0, "psnr[standard]"] == pytest.approx(direct.loc[0, "psnr[standard]"])


def test_bad_inputs(pairs_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="test folder not found: .*missing.txt"):
        evaluate_model(None, tmp_path / "missing.txt", progress=False)
    with pytest.raises(InputError, match="test folder not found: .*missing.txt"):
        evaluate_command("input", tmp_path / "missing.txt", tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="unknown metric convention 'psnr'"):
        evaluate_model(None, pairs_dir / "test.txt", conventions=["psnr"], progress=False)
    with pytest.raises(ValueError, match="at least one metric convention"):
        evaluate_model(None, pairs_dir / "test.txt", conventions=[], progress=False)
    with pytest.raises(ValueError, match="max_images: expected an int >= 1, got 0"):
        evaluate_model(None, pairs_dir / "test.txt", max_images=0, progress=False)
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1, got 0"):
        evaluate_model(None, pairs_dir / "test.txt", batch_size=0, progress=False)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        evaluate_model(3, pairs_dir / "test.txt", progress=False)
    with pytest.raises(ValueError, match="at least one image pair"):
        evaluate_model(None, [], progress=False)
    small = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(InputError, match=r"x: rain and clean sizes differ: \(24, 32\)"):
        evaluate_model(None, [(np.zeros((24, 32, 3), np.uint8), small, "x")], progress=False)
    with pytest.raises(ValueError, match=r"x: expected an H x W x 3 rain image"):
        evaluate_model(None, [(small[..., 0], small, "x")], progress=False)
    with pytest.raises(ValueError, match="labels need a 'name' column"):
        evaluate_model(None, pairs_dir / "test.txt", labels=pd.DataFrame({"level": [1]}),
                       progress=False)
    with pytest.raises(ValueError, match="expected at least one model"):
        compare_models({}, pairs_dir / "test.txt")
    with pytest.raises(ValueError, match="cannot group by 'level'"):
        summarize(pd.DataFrame({"psnr[standard]": [1.0]}), by="level")
    with pytest.raises(ValueError, match=r"no psnr\[...\]/ssim\[...\] columns"):
        summarize(pd.DataFrame({"x": [1.0]}))
    with pytest.raises(ValueError, match="metric must be 'psnr' or 'ssim'"):
        metric_column("mse", "standard")


class ShapeRecorder(nn.Module):
    """Returns its input and records the shape of every batch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        self.shapes.append(tuple(x.shape))
        return x, None


def test_tile_and_batch_reach_the_model() -> None:
    rng = np.random.default_rng(2)
    images = [(rng.uniform(0.2, 0.8, (48, 80, 3)).astype(np.float32),) * 2 + (f"i{k}",)
              for k in range(3)]
    tiled = ShapeRecorder()
    df = evaluate_model(tiled, images, conventions="y-matlab", tile=40, progress=False)
    assert len(tiled.shapes) > 3 and max(s[2] for s in tiled.shapes) <= 40
    assert (df["psnr[y-matlab]"] == math.inf).all()  # identity survives the tile blending
    batched = ShapeRecorder()
    evaluate_model(batched, images, conventions="y-matlab", batch_size=2, progress=False)
    assert [s[0] for s in batched.shapes] == [2, 1]


# ------------------------------------------------------------------ test folders and outputs


def test_every_layout_is_scored_with_its_pair_names(layout_folders: dict[str, Path]) -> None:
    from spanetlib.io.layouts import LAYOUTS, read_test_folder

    assert set(layout_folders) == set(LAYOUTS)
    for name, folder in layout_folders.items():
        found = read_test_folder(folder)
        assert found.layout.name == name
        for pairs in (folder, found):  # a path and what read_test_folder returned
            df = evaluate_model(None, pairs, conventions="y-matlab", progress=False)
            assert list(df["name"]) == [p.name for p in found.pairs], name
        for pair, (_, row) in zip(found.pairs, df.iterrows(), strict=True):
            rain, clean = pair.read()
            expected = psnr_ssim_np(ev.as_prediction(rain), clean, "y-matlab")
            assert (row["psnr[y-matlab]"], row["ssim[y-matlab]"]) == expected
    rain1200 = read_test_folder(layout_folders["rain1200"]).pairs[0]
    assert rain1200.rain.half == "left"  # the halves are what was scored, not the whole file
    assert ev.read_pairs([rain1200])[0].rain == rain1200.rain


def test_read_pairs_keeps_list_order_and_forced_layout(layout_folders: dict[str, Path],
                                                       tmp_path: Path) -> None:
    from spanetlib.io.layouts import read_test_folder

    spa = layout_folders["spa-data"]  # its real_test_1000.txt agrees with the folders
    assert read_test_folder(spa).also_matched == ("pair-list",)
    forced = read_test_folder(spa, layout="pair-list")
    assert forced.layout.name == "pair-list"
    assert [p.name for p in ev.read_pairs(forced)] == ["000", "001"]
    base = spa / "real_test_1000"
    listed = tmp_path / "reversed.txt"
    listed.write_text(f"{base}/rain/001.png {base}/gt/001gt.png\n"
                      f"{base}/rain/000.png {base}/gt/000gt.png\n")
    pairs = ev.read_pairs(listed)
    assert [p.name for p in pairs] == ["001", "000"]  # the list's order, not sorted
    assert pairs[0].references[ev.CLEAN] == base / "gt" / "001gt.png"


def test_save_outputs_names_sizes_and_no_replace(layout_folders: dict[str, Path], tmp_path: Path,
                                                 identity) -> None:
    from spanetlib.io.layouts import read_test_folder

    found = read_test_folder(layout_folders["rain1400"])
    out = tmp_path / "out"
    evaluate_model(identity, found, conventions="standard", progress=False, save_outputs=out)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["901_1.png", "901_2.png", "902_1.png", "902_2.png"]
    for pair in found.pairs:  # identity: the saved image is the rain input, losslessly
        assert np.array_equal(read_image(out / f"{pair.name}.png"), pair.rain.read())
    # Existing outputs are refused before the model is even loaded (the weights are missing).
    with pytest.raises(InputError, match=r"4 output image file\(s\) exist: .*901_1.png.*"
                       r"pass --overwrite \(overwrite=True\)"):
        evaluate_model(tmp_path / "missing.pth", found, progress=False, save_outputs=out)
    write_image(out / "901_1.png", np.zeros((24, 32, 3), np.uint8))
    evaluate_model(identity, found, conventions="standard", progress=False, save_outputs=out,
                   overwrite=True)
    assert np.array_equal(read_image(out / "901_1.png"), found.pairs[0].rain.read())
    # Never over the test set itself, even with overwrite.
    plain = read_test_folder(layout_folders["input-target"])
    with pytest.raises(InputError, match=r"output image .*input/1.png would replace an input"):
        evaluate_model(identity, plain, progress=False, overwrite=True,
                       save_outputs=layout_folders["input-target"] / "input")
    # Side-by-side files: the output has the size of the rain half.
    halves = read_test_folder(layout_folders["rain1200"])
    evaluate_model(identity, halves, conventions="standard", progress=False,
                   save_outputs=tmp_path / "halves")
    assert read_image(tmp_path / "halves" / "0.png").shape == (24, 32, 3)


def test_output_paths_refuse_unsafe_and_colliding_names() -> None:
    image = np.zeros((12, 12, 3), np.uint8)
    paths = ev.output_paths(ev.read_pairs([(image, image, "a/b.jpg"), (image, image, "c")]),
                            "out")
    assert [p.as_posix() for p in paths] == ["out/a/b.png", "out/c.png"]
    for bad in ("../x", "/abs/x", ""):
        with pytest.raises(ValueError, match="cannot name an output file"):
            ev.output_paths([ev.Pair(bad, image, {"clean": image})], "out")
    with pytest.raises(ValueError, match="pairs 'a.png' and 'a.jpg' would both be saved as"):
        ev.output_paths(ev.read_pairs([(image, image, "a.png"), (image, image, "a.jpg")]),
                        "out")


def test_compare_models_checks_every_output_before_the_first_model(
        layout_folders: dict[str, Path], tmp_path: Path, identity) -> None:
    folder = layout_folders["input-target"]
    write_image(tmp_path / "out" / "shift" / "2.png", np.zeros((24, 32, 3), np.uint8))
    with pytest.raises(InputError, match=r"1 output image file\(s\) exist: .*shift/2.png"):
        compare_models({"identity": identity, "shift": Shift(0.1)}, folder, progress=False,
                       save_outputs=tmp_path / "out")
    assert not (tmp_path / "out" / "identity").exists()  # nothing ran
    with pytest.raises(ValueError, match="model name 'a/b' cannot name an output folder"):
        compare_models({"a/b": identity}, folder, progress=False, save_outputs=tmp_path / "o")
    compare_models({"identity": identity, "shift": Shift(0.1)}, folder, progress=False,
                   conventions="standard", save_outputs=tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out" / "shift").iterdir()) == ["1.png", "2.png"]


def test_evaluate_command_refuses_to_replace_results(layout_folders: dict[str, Path],
                                                     tmp_path: Path, capsys) -> None:
    folder = layout_folders["rain100"]
    stem = tmp_path / "results" / "mine"
    evaluate_command("input", folder, stem, conventions=["y-matlab-builtin"], device="cpu",
                     progress=False)
    out = capsys.readouterr().out
    assert "layout 'rain100'" in out and "csdwren/PReNet" in out
    assert "y-matlab-builtin: PReNet's README (Rain100H: PReNet6 29.46 dB / 0.899" in out
    per_image = pd.read_csv(tmp_path / "results" / "mine_per_image.csv")
    assert list(per_image["name"]) == ["rain-001", "rain-002"]
    before = (tmp_path / "results" / "mine.csv").read_bytes()
    # Refused before the weights are read (they do not exist) and before any scoring.
    with pytest.raises(InputError, match=r"3 result file\(s\) exist: .*mine.csv, .*mine.md, "
                       r".*mine_per_image.csv; pass --overwrite"):
        evaluate_command(tmp_path / "missing.pth", folder, stem, progress=False)
    (tmp_path / "results" / "mine.md").unlink()  # one of the three is enough to refuse
    with pytest.raises(InputError, match=r"2 result file\(s\) exist"):
        evaluate_command("input", folder, stem, progress=False)
    assert (tmp_path / "results" / "mine.csv").read_bytes() == before
    evaluate_command("input", folder, stem, conventions=["standard"], device="cpu",
                     progress=False, overwrite=True)
    assert "psnr[standard]" in pd.read_csv(tmp_path / "results" / "mine.csv").columns
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot write under .*file/sub: .*file is a file"):
        evaluate_command("input", folder, tmp_path / "file" / "sub" / "x", progress=False)


def test_convention_note_names_the_published_numbers() -> None:
    note = ev.convention_note(ev.DEFAULT_CONVENTIONS).splitlines()
    assert note[0] == "Published numbers to compare with, by convention:"
    assert [line.split(":")[0] for line in note[1:]] == [
        "- spanet-paper", "- y-matlab", "- y-matlab-builtin"]
    assert "38.53 dB / 0.9875" in note[1] and "Restormer" in note[2]
    assert "PRN6_r 27.43 / 0.874" in note[3]
    assert ev.convention_note("standard").startswith("No published numbers")
    assert ev.DEFAULT_CONVENTIONS == CONVS


# ------------------------------------------------------------------ formats and precision

class ChannelScale(nn.Module):
    """Scales the channels unequally: a gray input gives three unequal output channels."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x * torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1), None


def _gray_rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2)


def test_gray_16_bit_and_alpha_test_images(tmp_path: Path, identity) -> None:
    import cv2

    rng = np.random.default_rng(5)
    clean = rng.integers(60, 200, (24, 32), dtype=np.uint8)
    rain = np.clip(clean + rng.integers(0, 50, clean.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "rain_gray.png"), rain)
    cv2.imwrite(str(tmp_path / "clean_gray.png"), clean)
    pairs = [(tmp_path / "rain_gray.png", tmp_path / "clean_gray.png", "gray")]
    # A gray reference is scored against the gray output (the mean of the channels, what
    # `spanet derain` writes), never against three unequal channels.
    df = evaluate_model(ChannelScale(), pairs, conventions="standard", progress=False,
                        save_outputs=tmp_path / "out")
    pred = _gray_rgb(rain).astype(np.float32) / 255 * np.float32([1.0, 0.8, 0.6])
    gray = np.repeat(pred.mean(axis=2, keepdims=True), 3, axis=2)
    target = _gray_rgb(clean)
    assert df["psnr[standard]"][0] == pytest.approx(psnr_ssim_np(gray, target, "standard")[0])
    assert abs(df["psnr[standard]"][0] - psnr_ssim_np(pred, target, "standard")[0]) > 0.1
    saved = cv2.imread(str(tmp_path / "out" / "gray.png"), cv2.IMREAD_UNCHANGED)
    assert saved.shape == (24, 32)  # the saved output is gray too

    # 16-bit: scored at 16-bit precision, saved as 16-bit.
    clean16 = rng.integers(15000, 50000, (24, 32, 3), dtype=np.uint16)
    rain16 = (clean16 + rng.integers(0, 4000, clean16.shape)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rain16.png"), rain16[..., ::-1])
    cv2.imwrite(str(tmp_path / "clean16.png"), clean16[..., ::-1])
    pairs = [(tmp_path / "rain16.png", tmp_path / "clean16.png", "deep")]
    df = evaluate_model(identity, pairs, conventions="standard", progress=False,
                        save_outputs=tmp_path / "out")
    exact = psnr_ssim_np(rain16.astype(np.float32) / 65535, clean16.astype(np.float32) / 65535,
                         "standard")[0]
    eight = psnr_ssim_np(read_image(tmp_path / "rain16.png"),
                         read_image(tmp_path / "clean16.png"), "standard")[0]
    assert df["psnr[standard]"][0] == pytest.approx(exact, abs=1e-4)
    assert abs(exact - eight) > 1e-3
    saved = cv2.imread(str(tmp_path / "out" / "deep.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(saved[..., ::-1], rain16)  # identity, losslessly

    # Alpha: not scored, carried over to the saved output.
    alpha = np.tile(np.arange(32, dtype=np.uint8) * 8, (24, 1))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([_gray_rgb(rain)[..., ::-1], alpha]))
    pairs = [(tmp_path / "rgba.png", tmp_path / "clean_gray.png", "rgba")]
    df = evaluate_model(identity, pairs, conventions="standard", progress=False,
                        save_outputs=tmp_path / "out")
    saved = cv2.imread(str(tmp_path / "out" / "rgba.png"), cv2.IMREAD_UNCHANGED)
    assert saved.shape == (24, 32, 4) and (saved[..., 3] == alpha).all()
    # Arrays are checked at the entry: a 0-255 float image is refused, never clipped.
    with pytest.raises(ValueError, match=r"x: clean image: expected uint8, or float in \[0, 1\].*"
                       "divide it by 255"):
        evaluate_model(None, [(_gray_rgb(rain), _gray_rgb(clean).astype(np.float32), "x")],
                       progress=False)


def test_side_by_side_16_bit_halves(tmp_path: Path) -> None:
    import cv2

    from spanetlib.io.layouts import ImageRef

    both = np.random.default_rng(1).integers(0, 65535, (16, 24, 3), dtype=np.uint16)
    both[..., 3:] = 0
    cv2.imwrite(str(tmp_path / "pair.png"), both[..., ::-1])
    image, fmt = ImageRef(tmp_path / "pair.png", "right").read_with_format()
    assert fmt.bit_depth == 16 and image.shape == (16, 12, 3)
    np.testing.assert_array_equal(np.round(image * 65535).astype(np.uint16), both[:, 12:])


class DtypeRecorder(nn.Module):
    """Returns its input; records the dtype a convolution computes in (bf16 under autocast)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.dtypes: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        self.dtypes.append(self.conv(x).dtype)
        return x, None


def test_precision_reaches_every_forward_pass(monkeypatch, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    images = [(rng.uniform(0.2, 0.8, (48, 80, 3)).astype(np.float32),) * 2 + (f"i{k}",)
              for k in range(3)]
    monkeypatch.setattr("spanetlib.models.device.cpu_has_fast_bf16", lambda: False)
    with pytest.raises(ValueError, match="precision 'bf16' refused"):  # before the weights
        evaluate_model(tmp_path / "missing.pth", images, precision="bf16", progress=False)
    with pytest.raises(ValueError, match="precision 'bf16' refused"):
        evaluate_command(tmp_path / "missing.pth", tmp_path, tmp_path / "r", precision="bf16",
                         progress=False)
    monkeypatch.setattr("spanetlib.models.device.cpu_has_fast_bf16", lambda: True)
    for kwargs in ({"batch_size": 2}, {"tile": 40}, {}):
        for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            model = DtypeRecorder()
            evaluate_model(model, images, conventions="y-matlab", progress=False,
                           precision=precision, **kwargs)
            assert model.dtypes and set(model.dtypes) == {dtype}, (kwargs, precision)


def test_tiled_evaluation_shows_tile_progress(monkeypatch) -> None:
    from spanetlib.derain import images as inference

    shown = []

    class Bar:
        def __init__(self, *args, desc=None, disable=False, **kwargs):
            shown.append((desc, disable))

        def update(self, n=1):
            pass

        def close(self):
            pass

    monkeypatch.setattr(inference, "tqdm", Bar)
    image = np.random.default_rng(2).uniform(0.2, 0.8, (48, 80, 3)).astype(np.float32)
    evaluate_model(ShapeRecorder(), [(image, image, "a")], tile=40, progress=True)
    assert ("tiles", False) in shown
