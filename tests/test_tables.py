"""Tests of spanetlib.tables: runs reuse/resume, truth pairs, Tables 2-4, figure helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from spanetlib import tables
from spanetlib.datasets import DatasetInfo, ensure_dataset
from spanetlib.fileio import InputError, read_image

# A SPANet small enough to train a few steps in a second or two.
TINY = {"channels": 4, "num_pre_blocks": 0, "blocks_per_sab": 1, "num_post_blocks": 0,
        "num_sabs": 1}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> DatasetInfo:
    return ensure_dataset("smoke", tmp_path_factory.mktemp("work"), seed=0)


class Identity(nn.Module):
    """A "derainer" that returns its input (so it must score like the rain input)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x, None


def _save_checkpoint(path: Path, model: str, kwargs: dict) -> nn.Module:
    from spanetlib.train import build_model

    torch.manual_seed(0)
    net = build_model(model, **kwargs)
    torch.save({"model": net.state_dict(), "config": {"model": model, "model_kwargs": kwargs}},
               path)
    return net.eval()


def _log(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "log.csv")


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------
def test_ensure_trained_trains_reuses_and_resumes(dataset, tmp_path):
    def ensure(steps, seed=0):
        return tables.ensure_trained("tiny", "spanet", TINY, dataset, tmp_path, "smoke",
                                     steps=steps, seed=seed)

    final = ensure(3)
    run = tmp_path / "runs" / "tiny"
    assert final == run / "final.pt"
    ckpt = torch.load(final, weights_only=True)
    assert ckpt["step"] == 3
    assert ckpt["config"]["train_list"] == str(Path(dataset.train_list).absolute())
    assert ckpt["config"]["model_kwargs"]["channels"] == 4
    assert ckpt["config"]["milestones"] == [2]  # the smoke profile's 8 of 10 steps, scaled
    first_log = _log(run)
    assert list(first_log["step"]) == [1, 2, 3]
    assert first_log["val_psnr"].notna().all()  # val_every = max(1, steps // 4)

    # Same settings: reused, nothing trained.
    mtime = final.stat().st_mtime_ns
    assert ensure(3) == final
    assert final.stat().st_mtime_ns == mtime
    pd.testing.assert_frame_equal(_log(run), first_log)

    # More steps: resumed from last.pt (the first three log rows stay as they were).
    ensure(5)
    assert torch.load(final, weights_only=True)["step"] == 5
    log = _log(run)
    assert list(log["step"]) == [1, 2, 3, 4, 5]
    pd.testing.assert_frame_equal(log.iloc[:3].drop(columns="elapsed_s"),
                                  first_log.drop(columns="elapsed_s"))

    # final.pt lost, last.pt at the last step: resumed, no step trained again.
    final.unlink()
    ensure(5)
    assert torch.load(final, weights_only=True)["step"] == 5
    assert list(_log(run)["step"]) == [1, 2, 3, 4, 5]

    # Other weights-relevant settings (the seed): trained again from scratch.
    ensure(2, seed=1)
    ckpt = torch.load(final, weights_only=True)
    assert (ckpt["step"], ckpt["config"]["seed"]) == (2, 1)
    assert list(_log(run)["step"]) == [1, 2]


def test_ensure_trained_rejects_bad_arguments(dataset, tmp_path):
    with pytest.raises(ValueError, match="unknown profile"):
        tables.ensure_trained("x", "spanet", TINY, dataset, tmp_path, "huge")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        tables.ensure_trained("x", "spanet", TINY, dataset, tmp_path, "smoke", steps=0)
    with pytest.raises(ValueError, match="unknown model"):
        tables.ensure_trained("x", "resnet", {}, dataset, tmp_path, "smoke", steps=1)


def test_run_specs_share_the_spanet_run():
    assert tables.TABLE2_RUNS[tables.OURS] is tables.SPANET_RUN
    assert tables.TABLE4_RUNS["Shared SAMs (SPANet)"] is tables.SPANET_RUN
    assert tables.TABLE4_RUNS["No attention loss"].attention_weight == 0.0
    assert len({spec.run for spec in tables.TABLE4_RUNS.values()}) == len(tables.TABLE4_RUNS)
    from spanetlib.models.spanet import TABLE4_VARIANTS

    for label, kwargs in TABLE4_VARIANTS.items():
        assert tables.TABLE4_RUNS[label].model_kwargs == kwargs


@pytest.mark.parametrize("model,kwargs", [("ddn", {"channels": 4, "num_blocks": 1}),
                                          ("rescan", {"channels": 4, "stages": 1, "depth": 3}),
                                          ("prenet", {}),
                                          ("spanet", {**TINY, "sam_mode": "unshared"})])
def test_load_trained_builds_every_model(tmp_path, model, kwargs):
    net = _save_checkpoint(tmp_path / "m.pt", model, kwargs)
    loaded = tables.load_trained(tmp_path / "m.pt")
    assert not loaded.training
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], net(x)[0])


def test_load_trained_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        tables.load_trained(tmp_path / "missing.pt")
    torch.save({"weights": {}}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="nor a spanetlib training checkpoint"):
        tables.load_trained(tmp_path / "bad.pt")
    _save_checkpoint(tmp_path / "ddn.pt", "ddn", {"channels": 4, "num_blocks": 1})
    ckpt = torch.load(tmp_path / "ddn.pt", weights_only=True)
    ckpt["config"]["model_kwargs"]["channels"] = 5
    torch.save(ckpt, tmp_path / "ddn.pt")
    with pytest.raises(InputError, match="does not fit DDN"):
        tables.load_trained(tmp_path / "ddn.pt")


def test_models_for_tables_order(tmp_path):
    _save_checkpoint(tmp_path / "a.pt", "ddn", {"channels": 4, "num_blocks": 1})
    _save_checkpoint(tmp_path / "b.pt", "spanet", TINY)
    models = tables.models_for_tables({"DDN": tmp_path / "a.pt", tables.OURS: tmp_path / "b.pt"})
    assert list(models) == [tables.RAIN_INPUT, "DDN", tables.OFFICIAL, tables.OURS]
    assert models[tables.RAIN_INPUT] is None
    assert models[tables.OFFICIAL].channels == 32
    plain = tables.models_for_tables({"DDN": tmp_path / "a.pt"}, include_input=False,
                                     include_official=False)
    assert list(plain) == ["DDN"]


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------
def test_truth_pairs_crop_the_true_background(dataset):
    from spanetlib.data import read_pair_list
    from spanetlib.testsets import scene_ground_truth

    pairs = read_pair_list(dataset.test_list)
    truths = tables.truth_pairs(dataset)
    assert len(truths) == len(pairs) > 0
    for (rain, clean), (rain2, truth, name) in zip(pairs, truths, strict=True):
        assert rain2 == rain
        assert name == Path(os.path.relpath(rain, dataset.root)).as_posix()
        scene = rain.parent.parent.name
        _, y, x = (int(v) for v in rain.stem.split("_"))
        gt = read_image(scene_ground_truth(dataset.scenes_dir / scene))
        assert truth.shape == read_image(rain).shape
        np.testing.assert_array_equal(truth, gt[y:y + truth.shape[0], x:x + truth.shape[1]])
        # The estimated clean patch at this position is the closest one to this truth crop.
        estimate = read_image(clean).astype(float)
        others = [read_image(p).astype(float) for p in (clean.parent).iterdir()]
        errors = [np.abs(o - truth).mean() for o in others if o.shape == truth.shape]
        assert np.abs(estimate - truth).mean() == pytest.approx(min(errors))
    assert len(tables.truth_pairs(dataset, max_images=2)) == 2


def test_truth_pairs_needs_synthetic_data(dataset):
    real = DatasetInfo(dataset.root, dataset.train_list, dataset.test_list, None, False, "")
    with pytest.raises(ValueError, match="only for synthetic data"):
        tables.truth_pairs(real)


def test_score_models_rows_and_values(dataset):
    from spanetlib.data import read_pair_list
    from spanetlib.metrics import psnr_ssim_np

    models = {"Rain input": None, "identity": Identity()}
    per_image, summary = tables.table2(models, dataset, conventions=("standard", "y-matlab"),
                                       max_images=3)
    assert len(per_image) == 2 * 2 * 3
    assert list(per_image.columns[:3]) == ["model", "reference", "name"]
    assert list(summary[["model", "reference"]].itertuples(index=False, name=None)) == [
        ("Rain input", "estimated clean"), ("Rain input", "true background"),
        ("identity", "estimated clean"), ("identity", "true background")]
    assert set(summary.columns) == {"model", "reference", "psnr[standard]", "ssim[standard]",
                                    "psnr[y-matlab]", "ssim[y-matlab]", "n"}
    assert (summary["n"] == 3).all()
    rain, clean = read_pair_list(dataset.test_list)[0]
    expected = psnr_ssim_np(read_image(rain), read_image(clean), "standard")
    first = per_image.iloc[0]
    assert (first["psnr[standard]"], first["ssim[standard]"]) == pytest.approx(expected)
    # The identity model scores exactly like the rain input.
    metrics = ["psnr[standard]", "ssim[standard]", "psnr[y-matlab]", "ssim[y-matlab]"]
    np.testing.assert_allclose(summary[metrics].to_numpy()[2:], summary[metrics].to_numpy()[:2],
                               rtol=1e-6)

    real = DatasetInfo(dataset.root, dataset.train_list, dataset.test_list, None, False, "")
    _, summary = tables.score_models({"input": None}, real, max_images=2)
    assert list(summary["reference"]) == ["estimated clean"]
    with pytest.raises(ValueError, match="at least one model"):
        tables.score_models({}, dataset)
    with pytest.raises(ValueError, match="max_images must be"):
        tables.score_models({"x": None}, dataset, max_images=0)
    with pytest.raises(ValueError, match="unknown metric convention"):
        tables.score_models({"x": None}, dataset, conventions=("psnr-ish",))


def test_main_view_and_save_table(dataset, tmp_path):
    per_image, summary = tables.table2({"Rain input": None, "identity": Identity()}, dataset,
                                       max_images=2)
    view = tables.main_view(summary, by="reference")
    assert list(view.columns) == ["model", "PSNR (estimated clean)", "SSIM (estimated clean)",
                                  "PSNR (true background)", "SSIM (true background)"]
    assert list(view["model"]) == ["Rain input", "identity"]
    with pytest.raises(ValueError, match="convention 'nope' is not in the summary"):
        tables.main_view(summary, by="reference", convention="nope")
    with pytest.raises(ValueError, match="cannot spread 'level'"):
        tables.main_view(summary, by="level")

    shown = tables.save_table(summary, tmp_path / "table2", by="reference", caption="Table 2",
                              per_image=per_image)
    pd.testing.assert_frame_equal(shown, view)
    md = (tmp_path / "table2.md").read_text()
    assert md.startswith("Table 2") and "PSNR (estimated clean)" in md
    back = pd.read_csv(tmp_path / "table2.csv")
    assert "psnr[spanet-paper]" in back.columns and len(back) == 4
    np.testing.assert_allclose(back["psnr[y-matlab]"], summary["psnr[y-matlab]"])
    assert len(pd.read_csv(tmp_path / "table2_per_image.csv")) == len(per_image)


def test_table3_by_level(tmp_path):
    test_list, labels = tables.ensure_level_set(tmp_path, 1, (24, 24), seed=0)
    mtime = test_list.stat().st_mtime_ns
    assert tables.ensure_level_set(tmp_path, 1, (24, 24), seed=0) == (test_list, labels)
    assert test_list.stat().st_mtime_ns == mtime
    per_image, summary = tables.table3({"Rain input": None, "identity": Identity()}, test_list,
                                       labels, conventions=("standard",))
    assert len(per_image) == 6
    assert list(summary["level"]) == ["light", "medium", "heavy"] * 2
    view = tables.main_view(summary, by="level")
    assert list(view.columns) == ["model", "PSNR (light)", "SSIM (light)", "PSNR (medium)",
                                  "SSIM (medium)", "PSNR (heavy)", "SSIM (heavy)"]
    tables.ensure_level_set(tmp_path, 2, (24, 24), seed=0)  # other settings: rebuilt
    assert len(pd.read_csv(labels)) == 6


def test_table4_adds_parameter_counts(dataset, tmp_path):
    a = _save_checkpoint(tmp_path / "a.pt", "spanet", {**TINY, "sam_mode": "none"})
    b = _save_checkpoint(tmp_path / "b.pt", "spanet", TINY)
    _, summary = tables.table4({"no SAM": tmp_path / "a.pt", "shared": tmp_path / "b.pt"},
                               dataset, conventions=("standard",), max_images=2)
    counts = dict(zip(summary["model"], summary["parameters"], strict=False))
    assert counts == {"no SAM": sum(p.numel() for p in a.parameters()),
                      "shared": sum(p.numel() for p in b.parameters())}
    assert counts["shared"] > counts["no SAM"]
    view = tables.main_view(summary, by="reference")
    assert list(view.columns[:2]) == ["model", "parameters"]
    assert tables.parameter_counts({"shared": tmp_path / "b.pt"}) == {"shared": counts["shared"]}


def test_describe_runs():
    table = tables.describe_runs(tables.TABLE4_RUNS)
    assert list(table["row"]) == list(tables.TABLE4_RUNS)
    assert list(table.columns) == ["row", "run", "model", "model_kwargs", "attention loss"]
    assert table["attention loss"].tolist()[-1] == 0.0
    assert table["attention loss"].tolist()[0] == "profile"


def _ablation_summary(values):
    return pd.DataFrame({"model": list(values), "reference": "estimated clean",
                         "psnr[standard]": list(values.values())})


def test_ablation_findings_verdicts():
    text = tables.ablation_findings(_ablation_summary({"A": 20.0, "Shared SAMs (SPANet)": 21.0}))
    assert text.splitlines()[0].startswith("Shared SAMs (SPANet): 21.00 dB")
    assert "- A: 20.00 dB (-1.00 dB against the full model)" in text
    assert "As in the paper" in text
    text = tables.ablation_findings(_ablation_summary(
        {"A": 20.0, "B": 21.05, "C": 22.0, "Shared SAMs (SPANet)": 21.0}))
    assert "Shared SAMs (SPANet) beats 1 of 3 variants" in text
    assert "no clear difference to B" in text and "worse than C" in text
    assert "does not reproduce the paper's finding that every part of the SAM helps" in text
    text = tables.ablation_findings(_ablation_summary({"Rain input": 20.0, "X": 23.0, "Ours": 22}),
                                    full="Ours", claim="that SPANet wins", others="rows")
    assert "Ours beats 1 of 2 rows" in text and "finding that SPANet wins" in text
    with pytest.raises(ValueError, match="expected the row 'full'"):
        tables.ablation_findings(_ablation_summary({"A": 1.0, "B": 2.0}), full="full")
    with pytest.raises(ValueError, match="reference 'true background' is not in the summary"):
        tables.ablation_findings(_ablation_summary({"A": 1.0, "Shared SAMs (SPANet)": 2.0}),
                                 reference="true background")


def test_training_summary_and_log(tmp_path):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "log.csv").write_text("step,epoch,lr,loss,psnr,val_psnr,val_ssim,elapsed_s\n"
                                 "1,0.1,0.001,0.5,10,,,1.0\n2,0.2,0.001,0.4,12,15,0.5,2.0\n"
                                 "3,0.3,0.001,0.3,13,,,3.0\n")
    summary = tables.training_summary({"r": run / "final.pt"})
    assert summary.iloc[0].to_dict() == {"model": "r", "steps": 3, "train_loss": 0.3,
                                         "train_psnr": 13.0, "val_psnr": 15.0,
                                         "val_ssim": 0.5, "seconds": 3.0}
    assert len(tables.read_log(run)) == 3
    with pytest.raises(InputError, match="training log not found"):
        tables.read_log(tmp_path)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_helpers_write_pngs(dataset, tmp_path):
    from spanetlib.figures import plot_attention_maps, plot_image_grid
    from spanetlib.models.spanet import SPANet

    torch.manual_seed(0)
    ours = SPANet(**TINY).eval()
    samples = tables.scene_samples(dataset, n=2)
    assert len(samples) == 2
    for s in samples:
        assert s.rain.shape == s.clean.shape == s.truth.shape == (64, 96, 3)
    assert samples[0].name != samples[1].name

    rows = tables.attention_rows({"(ours)": ours}, samples)
    assert list(rows[0]) == ["Rain image", "A_1 (ours)", "Rain mask M"]
    assert rows[0]["A_1 (ours)"].shape == (64, 96)
    assert set(np.unique(rows[0]["Rain mask M"])) <= {0.0, 1.0}
    plot_attention_maps(rows, path=tmp_path / "fig07.png")
    rows2 = tables.attention_rows({"(ours)": ours}, samples[:1], mask_thresholds=(0.0, 10 / 255))
    assert list(rows2[0])[-2:] == ["M (> 0/255)", "M (> 10/255)"]
    np.testing.assert_array_equal(rows2[0]["M (> 0/255)"], rows[0]["Rain mask M"])
    assert rows2[0]["M (> 10/255)"].sum() < rows2[0]["M (> 0/255)"].sum()
    with pytest.raises(ValueError, match="expected thresholds >= 0"):
        tables.attention_rows({"(ours)": ours}, samples, mask_thresholds=(-1,))
    with pytest.raises(ValueError, match="returns no attention map"):
        tables.attention_rows({"id": Identity()}, samples)

    diff = tables.difference_rows(samples)
    np.testing.assert_allclose(diff[0]["|rain - estimate|"].max(),
                               np.abs(samples[0].rain.astype(float) - samples[0].clean).max()
                               / 255, rtol=1e-6)
    captions = tables.psnr_captions(diff)
    assert set(captions) == {"Rain frame", "Estimated clean", "|rain - estimate|",
                             "|estimate - truth|"}
    top = max(row["|estimate - truth|"].max() for row in diff)
    assert captions["|estimate - truth|"].endswith(f"max {top:.3f}")
    plot_image_grid(diff, captions=captions, path=tmp_path / "fig08.png")

    rows = tables.derain_rows({"Rain input": None, "identity": Identity()}, samples)
    assert list(rows[0]) == ["Rain", "identity", "Clean (dataset)", "True background"]
    captions = tables.psnr_captions(rows, "True background")
    assert set(captions) == {"Rain", "identity", "Clean (dataset)"}
    assert tables.psnr_captions(rows) == captions
    assert captions["Rain"] == captions["identity"]
    with pytest.raises(ValueError, match="reference 'x' is not a column"):
        tables.psnr_captions(rows, "x")
    plot_image_grid(rows, captions=captions, path=tmp_path / "fig09.png")

    photo = tables.photo_sample(size=(40, 56), seed=1)
    dense = tables.failure_sample(size=(40, 56), seed=1)
    assert photo.rain.shape == dense.rain.shape == (40, 56, 3)
    assert np.abs(dense.rain.astype(int) - dense.clean).mean() > \
        np.abs(photo.rain.astype(int) - photo.clean).mean() > 0
    rows = tables.derain_rows({"identity": Identity()}, [photo])
    assert list(rows[0]) == ["Rain", "identity", "Clean"]
    assert tables.psnr_captions(rows) == tables.psnr_captions(rows, "Clean")
    plot_image_grid(rows, path=tmp_path / "fig11.png")
    fail = tables.failure_rows({"identity": Identity(), "ours": ours}, dense, focus="ours")
    assert list(fail[0]) == ["Rain", "identity", "ours", "|ours - truth|", "A_1 ours",
                             "True background"]
    plot_image_grid(fail, path=tmp_path / "fig12.png")
    with pytest.raises(ValueError, match="focus 'x' is not one of the models"):
        tables.failure_rows({"ours": ours}, dense, focus="x")

    test_list, labels = tables.ensure_level_set(tmp_path, 2, (24, 24))
    levels = tables.level_samples(test_list, labels)
    assert [s.name.split(":")[0] for s in levels] == ["light", "medium", "heavy"]
    for name in ("fig07", "fig08", "fig09", "fig11", "fig12"):
        assert _is_png(tmp_path / f"{name}.png")


def test_scene_samples_real_data_and_errors(dataset):
    real = DatasetInfo(dataset.root, dataset.train_list, dataset.test_list, None, False, "")
    samples = tables.scene_samples(real, n=3)
    assert len(samples) == 3 and samples[0].truth is None
    assert samples[0].rain.shape == (32, 32, 3)
    with pytest.raises(ValueError, match="n must be >= 1"):
        tables.scene_samples(dataset, n=0)
    with pytest.raises(ValueError, match="has no true background"):
        tables.difference_rows(samples)
