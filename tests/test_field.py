"""The field (notebook 07): folders in every layout, released weights, tables and samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spanetlib.evaluation.evaluate import as_prediction, evaluate_model
from spanetlib.evaluation.metrics import psnr_ssim_np
from spanetlib.io.errors import InputError
from spanetlib.io.files import write_image
from spanetlib.io.layouts import LAYOUTS, read_test_folder
from spanetlib.models import load_pretrained
from spanetlib.paper import released_weights as field
from spanetlib.paper.figure_data import derain_rows, folder_samples
from spanetlib.synthesis.testsets import LAYOUT_TEST_FOLDERS, build_layout_test_folders

PRENET = Path(__file__).parent / "data" / "prenet"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    return field.field_folders(None, tmp_path_factory.mktemp("field"), n_pairs=2, size=(24, 32))


def test_synthetic_folders_cover_every_layout(folders) -> None:
    assert list(folders) == list(LAYOUT_TEST_FOLDERS) and set(folders) == set(LAYOUTS)
    for name, found in folders.items():
        assert found.layout.name == name
        assert len(found.pairs) == (4 if name == "rain1400" else 2)
        rain, clean = found.pairs[0].read()
        assert rain.shape == clean.shape == (24, 32, 3)
        assert not np.array_equal(rain, clean)
    lines = field.describe_folders(folders).splitlines()
    assert len(lines) == 6 and lines[1].startswith("rain100: ") and "csdwren/PReNet" in lines[1]
    # Each folder has its own images (photos and rain levels taken in turn over the folders).
    firsts = [found.pairs[0].read()[1] for found in folders.values()]
    assert all(not np.array_equal(a, b) for i, a in enumerate(firsts) for b in firsts[i + 1:])


def test_build_layout_test_folders_keeps_rebuilds_and_refuses(tmp_path: Path) -> None:
    out = tmp_path / "f"
    build_layout_test_folders(out, n_pairs=3, size=(16, 16), layouts=["rain100"])
    stamp = (out / "rain100" / "norain-001.png").stat().st_mtime_ns
    build_layout_test_folders(out, n_pairs=3, size=(16, 16), layouts=["rain100"])  # kept
    assert (out / "rain100" / "norain-001.png").stat().st_mtime_ns == stamp
    build_layout_test_folders(out, n_pairs=1, size=(16, 16), layouts=["rain100"])  # rebuilt
    assert [p.name for p in read_test_folder(out / "rain100").pairs] == ["rain-001"]
    params = json.loads((out / "params.json").read_text())
    assert params["n_pairs"] == 1
    params["version"] = 1  # built by an older generator: rebuilt, not kept
    (out / "params.json").write_text(json.dumps(params))
    stamp = (out / "rain100" / "norain-001.png").stat().st_mtime_ns
    build_layout_test_folders(out, n_pairs=1, size=(16, 16), layouts=["rain100"])
    assert (out / "rain100" / "norain-001.png").stat().st_mtime_ns != stamp
    (tmp_path / "mine").mkdir()
    write_image(tmp_path / "mine" / "photo.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="holds files that build_layout_test_folders did not"):
        build_layout_test_folders(tmp_path / "mine")
    with pytest.raises(ValueError, match="layouts must be names from"):
        build_layout_test_folders(tmp_path / "x", layouts=["rain800"])


def test_user_folders_are_labelled_uniquely(folders, tmp_path: Path) -> None:
    roots = [folders["rain100"].root, folders["pair-list"].root / "test.txt"]
    found = field.field_folders(roots, tmp_path)
    assert list(found) == ["rain100", "test.txt"]
    assert found["test.txt"].layout.name == "pair-list"
    with pytest.raises(ValueError, match="given twice"):
        field.field_folders([roots[0], roots[0]], tmp_path)
    with pytest.raises(InputError, match="test folder not found"):
        field.field_folders(tmp_path / "nope", tmp_path)


def test_weights_table_names_what_each_model_was_trained_on() -> None:
    table = field.weights_table({"ours": "synthetic", "theirs": "official",
                                 "prn": PRENET / "PRN6_r_random.pth"})
    assert list(table.columns) == ["model", "weights", "format", "trained on"]
    assert table["format"].tolist()[2] == "PRN6_r (PReNet's release)"
    assert "synthetic rain only" in table.loc[0, "trained on"]
    assert "SPA-Data" in table.loc[1, "trained on"]
    with pytest.raises(InputError, match="checkpoint not found"):
        field.weights_table({"x": PRENET / "missing.pth"})


def test_evaluate_folders_scores_every_model_on_every_folder(folders, identity) -> None:
    prn = load_pretrained(PRENET / "PRN6_r_random.pth")
    models = {"Rain input": None, "identity": identity, "PRN6_r": prn}
    picked = {k: folders[k] for k in ("rain1400", "rain1200")}
    per_image, summary = field.evaluate_folders(models, picked, conventions=["y-matlab"],
                                                device="cpu")
    assert list(per_image.columns[:4]) == ["folder", "layout", "model", "name"]
    assert len(per_image) == 3 * (4 + 2)
    assert list(zip(summary["model"], summary["folder"], summary["n"], strict=True)) == [
        ("Rain input", "rain1400", 4), ("Rain input", "rain1200", 2),
        ("identity", "rain1400", 4), ("identity", "rain1200", 2),
        ("PRN6_r", "rain1400", 4), ("PRN6_r", "rain1200", 2)]
    # Every row is what the one scoring loop gives for that model and folder.
    direct = evaluate_model(prn, picked["rain1200"], conventions="y-matlab", progress=False)
    rows = per_image[(per_image["model"] == "PRN6_r") & (per_image["folder"] == "rain1200")]
    np.testing.assert_array_equal(rows["psnr[y-matlab]"], direct["psnr[y-matlab]"])
    ident = per_image[per_image["model"] == "identity"]["psnr[y-matlab]"].to_numpy()
    np.testing.assert_array_equal(
        ident, per_image[per_image["model"] == "Rain input"]["psnr[y-matlab]"].to_numpy())
    view = field.per_image_view(per_image, "y-matlab")
    assert list(view.columns) == ["folder", "name", "Rain input", "identity", "PRN6_r"]
    assert list(view["name"]) == ["901_1", "901_2", "902_1", "902_2", "0", "1"]
    assert view.loc[4, "name"] == "0" and view.loc[4, "folder"] == "rain1200"
    assert view.loc[4, "PRN6_r"] == direct.loc[0, "psnr[y-matlab]"]
    with pytest.raises(ValueError, match="'psnr\\[standard\\]' is not in the table"):
        field.per_image_view(per_image, "standard")
    with pytest.raises(ValueError, match="at least one test folder"):
        field.evaluate_folders(models, {})


def test_load_models_and_samples_for_the_figure(folders) -> None:
    models = field.load_models({"PRN6": PRENET / "PRN6_random.pth"})
    assert list(models) == ["Rain input", "PRN6"] and models["Rain input"] is None
    with pytest.raises(ValueError, match="'Rain input' is the rain input's row"):
        field.load_models({"Rain input": "official"})
    samples = folder_samples(folders, per_folder=1)
    assert [s.name for s in samples] == ["input-target: 1", "rain100: rain-001",
                                         "rain1400: 901_1", "spa-data: 000", "rain1200: 0",
                                         "pair-list: 000"]
    rows = derain_rows(models, samples[:2], device="cpu")
    assert list(rows[0]) == ["Rain", "PRN6", "Clean"]
    assert rows[0]["PRN6"].shape == samples[0].rain.shape
    p, _ = psnr_ssim_np(as_prediction(samples[0].rain), samples[0].clean, "standard")
    assert np.isfinite(p)


def test_field_tables_are_written(folders, tmp_path: Path, identity) -> None:
    from spanetlib.paper.tables import save_table

    per_image, summary = field.evaluate_folders({"Rain input": None, "identity": identity},
                                                {"rain100": folders["rain100"]},
                                                conventions=["y-matlab", "y-matlab-builtin"])
    view = save_table(summary, tmp_path / "field", by="folder", convention="y-matlab",
                      per_image=per_image, caption="The field")
    assert list(view.columns) == ["model", "PSNR (rain100)", "SSIM (rain100)"]
    back = pd.read_csv(tmp_path / "field.csv")
    assert "psnr[y-matlab-builtin]" in back.columns and list(back["folder"]) == ["rain100"] * 2
    assert pd.read_csv(tmp_path / "field_per_image.csv", dtype={"name": str})["name"].tolist() \
        == ["rain-001", "rain-002"] * 2


def test_per_image_view_keeps_the_table_order() -> None:
    """pandas' pivot_table(sort=False) reorders such rows (rain1200's 1 before 0): not here."""
    names = {"input-target": ["1", "2"], "rain100": ["rain-001", "rain-002"],
             "rain1400": ["901_1", "901_2", "902_1", "902_2"], "spa-data": ["000", "001"],
             "rain1200": ["0", "1"], "pair-list": ["000", "001"]}
    table = pd.DataFrame([{"folder": folder, "model": model, "name": name,
                           "psnr[y-matlab]": 10.0 * k + i}
                          for folder, pairs in names.items() for k, model in enumerate("BA")
                          for i, name in enumerate(pairs)])
    view = field.per_image_view(table, "y-matlab")
    assert list(zip(view["folder"], view["name"], strict=True)) == [
        (folder, name) for folder, pairs in names.items() for name in pairs]
    assert list(view.columns[2:]) == ["B", "A"]
    assert view.loc[10, "A"] == 10.0 and view.loc[11, "B"] == 1.0
