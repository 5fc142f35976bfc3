"""Tests of spanetlib.paper.tables: Table 1, the §3 test pairs and their references, Tables 2-4."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from spanetlib.evaluation.evaluate import as_prediction
from spanetlib.evaluation.metrics import psnr_ssim_np
from spanetlib.io.errors import InputError
from spanetlib.io.files import read_image
from spanetlib.io.pairs import read_pair_list
from spanetlib.paper import claims, runs, tables
from spanetlib.paper.runs import OFFICIAL, OURS, RAIN_INPUT
from spanetlib.synthesis.testsets import make_table1_videos, scene_ground_truth

METRICS = ["psnr[standard]", "ssim[standard]", "psnr[y-matlab]", "ssim[y-matlab]"]



# --------------------------------------------------------------------------------------------
# Table 1
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def videos():
    return make_table1_videos(2, 16, (32, 40), seed=3, densities=("normal", "dense"))


def test_table1_rows_and_ranking(videos):
    per_video, summary = tables.run_table1(videos, tables.table1_methods(20))
    assert list(summary["method"]) == [RAIN_INPUT, "Mean", "Median", "Mode filter (Eq. 2)",
                                       "Robust PCA (IALM)", "Ours (Eqs. 2-4)"]
    assert len(per_video) == 2 * 6
    psnr = summary.set_index("method")["psnr"]
    # every background estimate beats the rain input, and ours beats the mean clearly
    assert (psnr.drop(RAIN_INPUT) > psnr[RAIN_INPUT] + 5).all()
    assert psnr["Ours (Eqs. 2-4)"] > psnr["Mean"] + 3


def test_table1_input_row_is_the_mean_over_frames(videos):
    per_video, _ = tables.run_table1(videos[:1], {}, max_input_frames=None)
    video = videos[0]
    expected = np.mean([psnr_ssim_np(as_prediction(f), video.clean)[0] for f in video.frames])
    assert per_video.loc[0, "psnr"] == pytest.approx(expected, rel=1e-12)
    assert list(per_video["method"]) == [RAIN_INPUT]


def test_table1_methods_sets_rpca_budget():
    methods = tables.table1_methods(7)
    rpca = methods["Robust PCA (IALM)"]
    assert isinstance(rpca, partial) and rpca.keywords == {"max_iter": 7}


# --------------------------------------------------------------------------------------------
# Rows, pairs, references
# --------------------------------------------------------------------------------------------
def test_models_for_tables_order(tmp_path, tiny_spanet, save_checkpoint):
    save_checkpoint(tmp_path / "a.pt", "ddn", {"channels": 4, "num_blocks": 1})
    save_checkpoint(tmp_path / "b.pt", "spanet", tiny_spanet)
    models = tables.models_for_tables({"DDN": tmp_path / "a.pt", OURS: tmp_path / "b.pt"})
    assert list(models) == [RAIN_INPUT, "DDN", OFFICIAL, OURS]
    assert models[RAIN_INPUT] is None
    assert models[OFFICIAL].channels == 32
    plain = tables.models_for_tables({"DDN": tmp_path / "a.pt"}, include_input=False,
                                     include_official=False)
    assert list(plain) == ["DDN"]


def test_patch_position_errors():
    with pytest.raises(ValueError, match="expected an exported rain patch"):
        tables.patch_position("scene/clean/0001_0_0.png")
    with pytest.raises(ValueError, match="expected an exported rain patch"):
        tables.patch_position("scene/rain/frame.png")


def test_reference_pairs_crop_the_true_background(smoke_dataset):
    pairs = read_pair_list(smoke_dataset.test_list)
    refs = tables.reference_pairs(smoke_dataset)
    assert len(refs) == len(pairs) > 0
    base = os.path.commonpath([str(rain.parent) for rain, _ in pairs])  # as layouts names them
    for (rain, clean), pair in zip(pairs, refs, strict=True):
        assert pair.rain == rain
        assert pair.name == Path(os.path.relpath(rain, base)).with_suffix("").as_posix()
        assert list(pair.references) == [tables.ESTIMATED_CLEAN, tables.TRUE_BACKGROUND]
        assert pair.references[tables.ESTIMATED_CLEAN] == clean
        truth = pair.references[tables.TRUE_BACKGROUND]
        scene = rain.parent.parent.name
        _, y, x = (int(v) for v in rain.stem.split("_"))
        gt = read_image(scene_ground_truth(smoke_dataset.scenes_dir / scene))
        assert truth.shape == read_image(rain).shape
        np.testing.assert_array_equal(truth, gt[y:y + truth.shape[0], x:x + truth.shape[1]])
        # The estimated clean patch at this position is the closest one to this truth crop.
        estimate = read_image(clean).astype(float)
        others = [read_image(p).astype(float) for p in (clean.parent).iterdir()]
        errors = [np.abs(o - truth).mean() for o in others if o.shape == truth.shape]
        assert np.abs(estimate - truth).mean() == pytest.approx(min(errors))
    assert len(tables.reference_pairs(smoke_dataset, max_images=2)) == 2
    with pytest.raises(ValueError, match="max_images: expected an int >= 1"):
        tables.reference_pairs(smoke_dataset, max_images=0)


def test_reference_pairs_of_real_data_have_one_reference(real_dataset):
    refs = tables.reference_pairs(real_dataset, max_images=3)
    assert [list(p.references) for p in refs] == [[tables.ESTIMATED_CLEAN]] * 3


# --------------------------------------------------------------------------------------------
# Tables 2-4
# --------------------------------------------------------------------------------------------
def test_table2_rows_and_values(smoke_dataset, real_dataset, identity):
    models = {RAIN_INPUT: None, "identity": identity}
    per_image, summary = tables.score_test_pairs(models, smoke_dataset,
                                       conventions=("standard", "y-matlab"), max_images=3)
    assert len(per_image) == 2 * 2 * 3
    assert list(per_image.columns[:3]) == ["model", "reference", "name"]
    assert list(summary[["model", "reference"]].itertuples(index=False, name=None)) == [
        (RAIN_INPUT, "estimated clean"), (RAIN_INPUT, "true background"),
        ("identity", "estimated clean"), ("identity", "true background")]
    assert set(summary.columns) == {"model", "reference", *METRICS, "n"}
    assert (summary["n"] == 3).all()
    rain, clean = read_pair_list(smoke_dataset.test_list)[0]
    expected = psnr_ssim_np(as_prediction(read_image(rain)), read_image(clean), "standard")
    first = per_image.iloc[0]
    assert (first["psnr[standard]"], first["ssim[standard]"]) == expected
    # Each image is derained once and scored against both references.
    rows = per_image[per_image["model"] == RAIN_INPUT]
    estimated, truth = (rows[rows["reference"] == ref] for ref in tables.reference_pairs(
        smoke_dataset, max_images=1)[0].references)
    assert list(truth["name"]) == list(estimated["name"])
    assert (truth["psnr[standard]"].to_numpy() != estimated["psnr[standard]"].to_numpy()).all()
    # The identity model scores exactly like the rain input.
    np.testing.assert_array_equal(summary[METRICS].to_numpy()[2:],
                                  summary[METRICS].to_numpy()[:2])

    _, summary = tables.score_test_pairs({"input": None}, real_dataset, max_images=2)
    assert list(summary["reference"]) == ["estimated clean"]
    with pytest.raises(ValueError, match="at least one model"):
        tables.score_test_pairs({}, smoke_dataset)
    with pytest.raises(ValueError, match="unknown metric convention"):
        tables.score_test_pairs({"x": None}, smoke_dataset, conventions=("psnr-ish",))


def test_main_view_and_save_table(smoke_dataset, identity, tmp_path):
    per_image, summary = tables.score_test_pairs({RAIN_INPUT: None, "identity": identity},
                                       smoke_dataset, max_images=2)
    view = tables.main_view(summary, by="reference")
    assert list(view.columns) == ["model", "PSNR (estimated clean)", "SSIM (estimated clean)",
                                  "PSNR (true background)", "SSIM (true background)"]
    assert list(view["model"]) == [RAIN_INPUT, "identity"]
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


def test_table3_by_level(tmp_path, identity):
    test_list, labels = tables.ensure_level_set(tmp_path, 1, (24, 24), seed=0)
    mtime = test_list.stat().st_mtime_ns
    assert tables.ensure_level_set(tmp_path, 1, (24, 24), seed=0) == (test_list, labels)
    assert test_list.stat().st_mtime_ns == mtime
    per_image, summary = tables.table3({RAIN_INPUT: None, "identity": identity}, test_list,
                                       labels, conventions=("standard",))
    assert len(per_image) == 6
    assert list(summary["level"]) == ["light", "medium", "heavy"] * 2
    view = tables.main_view(summary, by="level")
    assert list(view.columns) == ["model", "PSNR (light)", "SSIM (light)", "PSNR (medium)",
                                  "SSIM (medium)", "PSNR (heavy)", "SSIM (heavy)"]
    tables.ensure_level_set(tmp_path, 2, (24, 24), seed=0)  # other settings: rebuilt
    assert len(pd.read_csv(labels)) == 6


def _seeded(values: dict[str, list[list[float]] | list[float]], reference="estimated clean"):
    """A per-image frame: model -> per-seed lists of per-image PSNRs (a flat list: no seed)."""
    rows = []
    for model, seeds in values.items():
        if not isinstance(seeds[0], list):
            seeds, seed_ids = [seeds], [np.nan]
        else:
            seed_ids = [float(k) for k in range(len(seeds))]
        for k, scores in zip(seed_ids, seeds, strict=True):
            rows += [{"seed": k, "model": model, "reference": reference, "name": f"i{i}",
                      "psnr[standard]": v, "ssim[standard]": v / 100}
                     for i, v in enumerate(scores)]
    return pd.DataFrame(rows)


def test_score_over_seeds_scores_each_seed_and_fixed_rows_once(smoke_dataset, tiny_spanet,
                                                               tmp_path, save_checkpoint):
    save_checkpoint(tmp_path / "a.pt", "spanet", tiny_spanet)
    save_checkpoint(tmp_path / "b.pt", "spanet", {**tiny_spanet, "sam_mode": "none"})
    score = partial(tables.score_test_pairs, dataset=smoke_dataset, max_images=2,
                    conventions=("standard",))
    per_image = tables.score_over_seeds(score, {0: {"m": tmp_path / "a.pt"},
                                                1: {"m": tmp_path / "b.pt"}},
                                        fixed={RAIN_INPUT: None})
    assert list(per_image.columns[:3]) == ["seed", "model", "reference"]
    assert per_image.groupby("model", sort=False).size().to_dict() == {RAIN_INPUT: 4, "m": 8}
    assert per_image.loc[per_image["model"] == RAIN_INPUT, "seed"].isna().all()
    assert sorted(per_image.loc[per_image["model"] == "m", "seed"].unique()) == [0.0, 1.0]
    # each seed's rows are that seed's model: the two checkpoints differ
    m = per_image[per_image["model"] == "m"]
    assert not np.allclose(m[m["seed"] == 0]["psnr[standard]"].to_numpy(),
                           m[m["seed"] == 1]["psnr[standard]"].to_numpy())
    with pytest.raises(ValueError, match="at least one seed or a fixed row"):
        tables.score_over_seeds(score, {})


def test_table2_view_reads_original_then_retrained():
    per_image = _seeded({RAIN_INPUT: [20.0, 22.0],
                         "DDN (original)": [[24.0, 26.0], [26.0, 28.0]],
                         "DDN": [[27.0, 29.0], [28.0, 30.0]],
                         runs.OFFICIAL: [21.0, 23.0],
                         runs.OURS: [[30.0, 30.0], [31.0, 31.0]]})
    view = tables.table2_view(claims.seed_summary(per_image))
    assert list(view["model"]) == [RAIN_INPUT, "DDN", runs.OFFICIAL, runs.OURS]
    cells = dict(zip(view["model"], view["PSNR (estimated clean)"], strict=True))
    # DDN original: seed means 25, 27 -> 26.00 ± 1.41; retrained: 28, 29 -> 28.50 ± 0.71
    assert cells["DDN"] == "26.00 ± 1.41 (28.50 ± 0.71)"
    assert cells[RAIN_INPUT] == "21.00"
    assert cells[runs.OURS] == "30.50 ± 0.71"  # no original row: the retrained value alone
    released = {**runs.ORIGINAL_OF, "DDN": tables.RELEASED_PRENET}
    per_image.loc[per_image["model"] == "DDN (original)", "model"] = tables.RELEASED_PRENET
    per_image.loc[per_image["model"] == tables.RELEASED_PRENET, "seed"] = np.nan
    per_image = per_image.drop_duplicates(["model", "seed", "name"])
    view = tables.table2_view(claims.seed_summary(per_image), released)
    assert dict(zip(view["model"], view["PSNR (estimated clean)"], strict=True))["DDN"] == \
        "25.00 (28.50 ± 0.71)"


def test_table2_rows_with_released_prenet():
    specs, fixed, original_of = tables.table2_rows()
    assert set(specs) == {*runs.TABLE2_RUNS, *runs.TABLE2_ORIGINAL_RUNS}
    assert list(fixed) == [RAIN_INPUT, runs.OFFICIAL] and fixed[RAIN_INPUT] is None
    assert original_of == runs.ORIGINAL_OF
    released = Path(__file__).parent / "data" / "prenet" / "PReNet6_random.pth"
    specs, fixed, original_of = tables.table2_rows(released_prenet=released)
    assert "PReNet (original)" not in specs and "PReNet" in specs
    assert original_of["PReNet"] == tables.RELEASED_PRENET
    assert isinstance(fixed[tables.RELEASED_PRENET], torch.nn.Module)
    with pytest.raises(InputError):
        tables.table2_rows(released_prenet=Path(__file__).parent / "missing.pth")


def test_table2_claims_decide_by_paired_tests():
    gain = [[0.0, 0.1, -0.1]] * 3
    base = np.array([25.0, 26.0, 27.0])
    per_image = _seeded({
        RAIN_INPUT: list(base - 3),
        "DDN (original)": [list(base - 1 + s / 10) for s in range(3)],
        "DDN": [list(base + s / 10) for s in range(3)],          # retraining helps: +1 dB
        "PReNet (original)": [list(base + 0.5 + g) for g in gain[0]],
        "PReNet": [list(base + 0.5 + 0.5 * (-1) ** s) for s in range(3)],  # undecided
        runs.OURS: [list(base + 3 + s / 10) for s in range(3)],   # beats both earlier rows
    })
    found = tables.table2_claims(per_image)
    assert [c.name for c in found] == ["SPANet beats the earlier derainers (vs. the estimated "
                                       "clean)", "retraining on the §3 pairs helps (vs. the "
                                       "estimated clean)"]
    assert found[0].verdict == "holds"
    assert [t.b for t in found[0].tests] == ["DDN", "PReNet"]
    assert [(t.a, t.b, t.verdict) for t in found[1].tests] == [
        ("DDN", "DDN (original)", "holds"), ("PReNet", "PReNet (original)", "undecided")]
    assert found[1].verdict == "undecided"


def test_table4_view_and_claims():
    per_image = _seeded({"Shared SAMs (SPANet)": [[30.0, 31.0], [30.2, 31.2], [30.1, 31.1]],
                         "Single SAM": [[29.0, 30.0], [29.1, 30.1], [29.0, 30.0]]})
    summary = claims.seed_summary(per_image)
    view = tables.table4_view(summary, {"Shared SAMs (SPANet)": 10, "Single SAM": 7})
    assert list(view.columns[:2]) == ["model", "parameters"]
    assert list(view["parameters"]) == [10, 7]
    (claim,) = tables.table4_claims(per_image)
    assert claim.verdict == "holds" and [t.b for t in claim.tests] == ["Single SAM"]


def test_save_seed_table_and_claims(tmp_path):
    per_image = _seeded({"A": [[20.0, 21.0], [20.5, 21.5]], "B": [18.0, 19.0]})
    shown = tables.save_seed_table(per_image, tmp_path / "t", caption="T")
    assert list(shown["model"]) == ["A", "B"]
    assert (tmp_path / "t.md").read_text().startswith("T")
    summary = pd.read_csv(tmp_path / "t.csv")
    assert list(summary["n_seeds"]) == [2, 1]
    assert summary.loc[0, "psnr_mean"] == pytest.approx(20.75)
    assert len(pd.read_csv(tmp_path / "t_per_image.csv")) == len(per_image)
    rows = tables.save_claims([claims.beats_all(per_image, "A", ["B"], "A wins")], tmp_path / "c")
    back = pd.read_csv(tmp_path / "c.csv")
    assert list(back["claim"]) == ["A wins"] and list(back["verdict"]) == list(rows["verdict"])
