"""spanetlib.paper.claims: seed summaries, paired tests, claims, on frames of known effects."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spanetlib.paper import claims

PSNR, SSIM = "psnr[standard]", "ssim[standard]"


def frame(effects: dict[str, float], seeds=(0, 1, 2), n_images: int = 40,
          seed_offsets: dict[str, list[float]] | None = None, image_sd: float = 0.05,
          free: tuple[str, ...] = (), reference: str | None = None, rng: int = 0
          ) -> pd.DataFrame:
    """Per-image scores: scene difficulty + model effect + per-seed offset + image noise.

    Models in ``free`` are seed-independent (scored once, ``seed`` NaN).
    """
    gen = np.random.default_rng(rng)
    base = gen.uniform(20, 30, n_images)  # shared by every model: the pairing removes it
    names = [f"img{i:03d}" for i in range(n_images)]
    parts = []
    for model, effect in effects.items():
        for k, seed in enumerate([math.nan] if model in free else seeds):
            offset = (seed_offsets or {}).get(model, [0.0] * len(seeds))[k]
            psnr = base + effect + offset + gen.normal(0, image_sd, n_images)
            part = pd.DataFrame({"model": model, "name": names, PSNR: psnr,
                                 SSIM: 0.5 + psnr / 100, "seed": seed})
            if reference is not None:
                part.insert(1, "reference", reference)
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def t_reference(values: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float, float]:
    """Mean, p and t interval of a one-sample t-test against 0, computed by hand."""
    n, mean, sd = len(values), values.mean(), values.std(ddof=1)
    se = sd / np.sqrt(n)
    p = 2 * stats.t.sf(abs(mean / se), n - 1)
    half = stats.t.ppf(1 - alpha / 2, n - 1) * se
    return mean, p, mean - half, mean + half


def seed_diffs(per_image: pd.DataFrame, a: str, b: str) -> np.ndarray:
    """Each seed's mean PSNR difference a - b, by plain loops (b may be seed-independent)."""
    out = []
    for seed in sorted(per_image.loc[per_image["model"] == a, "seed"].unique()):
        rows_a = per_image[(per_image["model"] == a) & (per_image["seed"] == seed)]
        rows_b = per_image[per_image["model"] == b]
        if rows_b["seed"].notna().any():
            rows_b = rows_b[rows_b["seed"] == seed]
        va = dict(zip(rows_a["name"], rows_a[PSNR], strict=True))
        vb = dict(zip(rows_b["name"], rows_b[PSNR], strict=True))
        out.append(np.mean([va[n] - vb[n] for n in va]))
    return np.array(out)


# --------------------------------------------------------------------------------------------
# Paired tests
# --------------------------------------------------------------------------------------------
def test_clear_gain_over_seeds_holds_and_matches_hand_computation():
    per_image = frame({"A": 1.0, "B": 0.0}, seed_offsets={"A": [0.05, -0.03, 0.0]})
    result = claims.paired_test(per_image, "A", "B")
    mean, p, low, high = t_reference(seed_diffs(per_image, "A", "B"))
    assert result.verdict == "holds"
    assert (result.n_seeds, result.n_images) == (3, 40)
    assert result.mean_diff == pytest.approx(mean, abs=1e-12)
    assert result.p_value == pytest.approx(p, rel=1e-9)
    assert (result.ci_low, result.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert 0.9 < result.mean_diff < 1.1 and result.p_value < 0.01
    assert result.test == "paired t-test over 3 seeds, 40 test images each"
    assert result.share_a_better == 1.0
    assert result.describe().startswith(f"A vs B: +{mean:.2f} dB [95% CI ")
    assert result.describe().endswith("): holds")


def test_reversed_comparison_does_not_hold():
    per_image = frame({"A": 1.0, "B": 0.0}, seed_offsets={"A": [0.05, -0.03, 0.0]})
    forward, backward = (claims.paired_test(per_image, "A", "B"),
                         claims.paired_test(per_image, "B", "A"))
    assert backward.verdict == "does not hold"
    assert backward.mean_diff == pytest.approx(-forward.mean_diff)
    assert backward.p_value == pytest.approx(forward.p_value)
    assert backward.share_a_better == 0.0


def test_seed_variance_larger_than_effect_is_undecided_though_images_would_say_otherwise():
    # A's training seeds land at +1.2, -0.3, +0.3 dB around B: a 0.4 dB mean effect.
    per_image = frame({"A": 0.2, "B": 0.0}, seed_offsets={"A": [1.0, -0.5, 0.1]},
                      image_sd=0.02)
    result = claims.paired_test(per_image, "A", "B")
    assert result.verdict == "undecided"
    assert result.p_value > 0.3 and result.ci_low < 0 < result.ci_high
    # the image-level test this module avoids would call the same data significant
    pooled = (per_image[per_image["model"] == "A"][PSNR].to_numpy()
              - per_image[per_image["model"] == "B"][PSNR].to_numpy())
    assert stats.wilcoxon(pooled).pvalue < 0.05


def test_one_seed_uses_wilcoxon_over_images_and_says_randomness_not_covered():
    per_image = frame({"A": 0.3, "B": 0.0}, seeds=(7,), image_sd=0.3)
    result = claims.paired_test(per_image, "A", "B")
    diffs = (per_image[per_image["model"] == "A"][PSNR].to_numpy()
             - per_image[per_image["model"] == "B"][PSNR].to_numpy())
    mean, _, low, high = t_reference(diffs)
    assert result.n_seeds == 1 and result.n_images == 40
    assert "Wilcoxon signed-rank" in result.test and "not covered" in result.test
    assert result.p_value == pytest.approx(stats.wilcoxon(diffs).pvalue)
    assert result.mean_diff == pytest.approx(mean)
    assert (result.ci_low, result.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert result.verdict == "holds"
    assert result.share_a_better == pytest.approx(np.mean(diffs > 0))


def test_table_without_seed_column_is_one_scoring():
    per_image = frame({"A": 0.3, "B": 0.0}, seeds=(0,), image_sd=0.3).drop(columns="seed")
    result = claims.paired_test(per_image, "A", "B")
    assert result.n_seeds == 1 and "Wilcoxon" in result.test


@pytest.mark.parametrize("missing", [math.nan, None])
def test_seed_independent_row_pairs_with_every_seed(missing):
    per_image = frame({"Rain input": -3.0, "A": 0.0}, free=("Rain input",),
                      seed_offsets={"A": [0.3, -0.2, 0.1]})
    if missing is None:
        per_image["seed"] = per_image["seed"].astype(object).where(per_image["seed"].notna(),
                                                                   None)
    result = claims.paired_test(per_image, "A", "Rain input")
    expected = seed_diffs(per_image, "A", "Rain input")
    assert result.n_seeds == 3 and result.n_images == 40 and "t-test" in result.test
    assert result.mean_diff == pytest.approx(expected.mean())
    assert result.p_value == pytest.approx(t_reference(expected)[1])
    # the free row on the left side pairs the same way
    assert claims.paired_test(per_image, "Rain input", "A").mean_diff == pytest.approx(
        -expected.mean())


def test_two_seed_independent_rows_are_one_scoring():
    per_image = frame({"Official": 0.5, "Rain input": 0.0}, free=("Official", "Rain input"),
                      image_sd=0.3)
    result = claims.paired_test(per_image, "Official", "Rain input")
    assert result.n_seeds == 1 and "Wilcoxon" in result.test


def test_partly_shared_seeds_pair_only_the_common_ones():
    a = frame({"A": 1.0}, seeds=(0, 1, 2), rng=1)
    b = frame({"B": 0.0}, seeds=(1, 2, 3), rng=1)
    result = claims.paired_test(pd.concat([a, b]), "A", "B")
    assert result.n_seeds == 2 and result.n_images == 40


@pytest.mark.parametrize("seeds", [(0, 1, 2), (0,)])
def test_identical_outputs_are_undecided_not_an_error(seeds):
    per_image = frame({"A": 0.0}, seeds=seeds)
    per_image = pd.concat([per_image, per_image.assign(model="B")], ignore_index=True)
    result = claims.paired_test(per_image, "A", "B")
    assert result.verdict == "undecided"
    assert (result.mean_diff, result.ci_low, result.ci_high, result.p_value) == (0, 0, 0, 1)
    assert result.share_a_better == 0.0


def test_same_gain_for_every_seed_is_infinite_t():
    per_image = frame({"A": 0.0}, seeds=(0, 1, 2))
    per_image = pd.concat([per_image, per_image.assign(model="B", **{PSNR: per_image[PSNR]
                                                                      - 0.5})])
    result = claims.paired_test(per_image, "A", "B")
    assert result.p_value == 0.0 and result.verdict == "holds"
    assert result.ci_low == pytest.approx(0.5) and result.ci_high == pytest.approx(0.5)


def test_reference_selects_rows_and_is_reported():
    est = frame({"A": 1.0, "B": 0.0}, reference="estimated clean",
                seed_offsets={"A": [0.05, -0.03, 0.0]})
    true = frame({"A": -1.0, "B": 0.0}, reference="true background", rng=5,
                 seed_offsets={"A": [0.05, -0.03, 0.0]})
    per_image = pd.concat([est, true], ignore_index=True)
    assert claims.paired_test(per_image, "A", "B", "estimated clean").verdict == "holds"
    result = claims.paired_test(per_image, "A", "B", "true background")
    assert result.verdict == "does not hold" and result.reference == "true background"
    assert "A vs B (vs. true background): -" in result.describe()
    only_one = claims.paired_test(est, "A", "B")  # one reference: no need to name it
    assert only_one.reference == "estimated clean"


def test_alpha_sets_verdict_and_interval_level():
    per_image = frame({"A": 0.2, "B": 0.0}, seed_offsets={"A": [0.3, -0.1, 0.05]})
    result = claims.paired_test(per_image, "A", "B", alpha=0.5)
    _, p, low, high = t_reference(seed_diffs(per_image, "A", "B"), alpha=0.5)
    assert result.p_value == pytest.approx(p) and 0.05 < p < 0.5
    assert result.verdict == "holds"
    assert (result.ci_low, result.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert "[50% CI " in result.describe()
    assert claims.paired_test(per_image, "A", "B").verdict == "undecided"


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------
def two_refs() -> pd.DataFrame:
    return pd.concat([frame({"A": 1.0, "B": 0.0}, reference="estimated clean"),
                      frame({"A": 1.0, "B": 0.0}, reference="true background")])


@pytest.mark.parametrize("call, match", [
    (lambda f: claims.paired_test(f, "A", "C"), r"unknown model 'C'; the per-image table has"),
    (lambda f: claims.paired_test(f, "A", "A"), r"compare two different models, got 'A' twice"),
    (lambda f: claims.paired_test(f, "A", "B", convention="y-matlab"),
     r"column 'psnr\[y-matlab\]' is not in the per-image table"),
    (lambda f: claims.paired_test(f, "A", "B", reference="clean"),
     r"unknown reference 'clean': the per-image table has no reference column"),
    (lambda f: claims.paired_test(f.drop(columns="name"), "A", "B"), r"column 'name' is not"),
    (lambda f: claims.paired_test(f, "A", "B", alpha=1.5), r"alpha must lie in \(0, 1\)"),
])
def test_paired_test_refuses_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(frame({"A": 1.0, "B": 0.0}))


def test_refuses_unknown_or_unnamed_reference():
    with pytest.raises(ValueError, match=r"unknown reference 'clean'; the per-image table has"):
        claims.paired_test(two_refs(), "A", "B", reference="clean")
    with pytest.raises(ValueError, match=r"several references .* choose one with reference="):
        claims.paired_test(two_refs(), "A", "B")


def test_refuses_no_common_images():
    a = frame({"A": 1.0}, n_images=4)
    b = frame({"B": 0.0}, n_images=4).assign(name=lambda f: "other_" + f["name"])
    with pytest.raises(ValueError, match=r"'A' and 'B' have no test image in common"):
        claims.paired_test(pd.concat([a, b]), "A", "B")


def test_refuses_disjoint_seeds():
    per_image = pd.concat([frame({"A": 1.0}, seeds=(0, 1)), frame({"B": 0.0}, seeds=(2, 3))])
    with pytest.raises(ValueError, match=r"trained with disjoint seeds \[0, 1\] and \[2, 3\]"):
        claims.paired_test(per_image, "A", "B")


def test_refuses_mixed_repeated_unbalanced_and_infinite_rows():
    per_image = frame({"A": 1.0, "B": 0.0})
    mixed = per_image.copy()
    mixed.loc[0, "seed"] = math.nan
    with pytest.raises(ValueError, match=r"model 'A': some rows have a seed and some do not"):
        claims.paired_test(mixed, "A", "B")
    with pytest.raises(ValueError, match=r"model 'A': a test image appears twice under one"):
        claims.paired_test(pd.concat([per_image, per_image.iloc[:1]]), "A", "B")
    unbalanced = per_image.drop(index=0)  # A's seed 0 loses one image
    with pytest.raises(ValueError, match=r"model 'A': the seeds score different numbers"):
        claims.paired_test(unbalanced, "A", "B")
    infinite = per_image.copy()
    infinite.loc[per_image["model"] == "B", PSNR] = math.inf
    with pytest.raises(ValueError, match=r"model 'B' has non-finite psnr\[standard\] values"):
        claims.paired_test(infinite, "A", "B")


@pytest.mark.parametrize("seed", [0.5, "zero"])
def test_refuses_non_integer_seed(seed):
    per_image = frame({"A": 1.0, "B": 0.0}).astype({"seed": object})
    per_image.loc[0, "seed"] = seed
    with pytest.raises(ValueError, match=r"seed must be an integer or missing, got"):
        claims.paired_test(per_image, "A", "B")


def test_refuses_pairs_unbalanced_across_seeds():
    a = frame({"A": 1.0}, seeds=(0, 1), n_images=6)
    b = frame({"B": 0.0}, seeds=(0, 1), n_images=6)
    b.loc[(b["seed"] == 1) & (b["name"] == "img000"), "name"] = "elsewhere"
    with pytest.raises(ValueError, match=r"share different numbers of test images per seed"):
        claims.paired_test(pd.concat([a, b]), "A", "B")


# --------------------------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------------------------
def test_beats_all_holds_only_when_every_comparison_holds():
    offsets = {"Full": [0.05, -0.03, 0.0]}
    per_image = frame({"Full": 1.0, "No SAM": 0.0, "One SAM": 0.5}, seed_offsets=offsets)
    result = claims.beats_all(per_image, "Full", None, "Shared SAMs are best")
    assert result.verdict == "holds" and result.rule == "all"
    assert [(t.a, t.b) for t in result.tests] == [("Full", "No SAM"), ("Full", "One SAM")]
    lines = result.describe().splitlines()
    assert lines[0] == "Claim: Shared SAMs are best: holds"
    assert lines[1:] == [f"- {t.describe()}" for t in result.tests]
    # a tie with one variant makes it undecided; a better variant refutes it
    tie = frame({"Full": 1.0, "No SAM": 0.0, "Same": 1.0}, seed_offsets=offsets)
    assert claims.beats_all(tie, "Full", ["No SAM", "Same"], "c").verdict == "undecided"
    better = frame({"Full": 1.0, "No SAM": 0.0, "Big": 2.0, "Same": 1.0}, seed_offsets=offsets)
    assert claims.beats_all(better, "Full", None, "c").verdict == "does not hold"


def test_pairs_improve_tests_each_pair_in_order():
    per_image = frame({"DDN (retrained)": 0.8, "DDN": 0.0, "PReNet (retrained)": -0.5,
                       "PReNet": 0.0}, seed_offsets={"DDN (retrained)": [0.02, 0.0, -0.02]})
    pairs = [("DDN (retrained)", "DDN"), ("PReNet (retrained)", "PReNet")]
    result = claims.pairs_improve(per_image, pairs, "retraining on §3 data helps")
    assert [t.verdict for t in result.tests] == ["holds", "does not hold"]
    assert result.verdict == "does not hold"
    assert claims.pairs_improve(per_image, pairs[:1], "c").verdict == "holds"


def test_decide_claim_refuses_bad_rule_or_nothing():
    test = claims.paired_test(frame({"A": 1.0, "B": 0.0}), "A", "B")
    with pytest.raises(ValueError, match=r"unknown rule 'any'; expected one of \('all',\)"):
        claims.decide_claim("c", [test], rule="any")
    with pytest.raises(ValueError, match=r"claim 'c' needs at least one comparison"):
        claims.decide_claim("c", [])


# --------------------------------------------------------------------------------------------
# Seed summaries and the view
# --------------------------------------------------------------------------------------------
def test_seed_summary_matches_numpy_and_keeps_order():
    per_image = pd.concat([
        frame({"Z": 1.0, "Rain input": -2.0}, free=("Rain input",), reference="estimated clean",
              seed_offsets={"Z": [0.3, -0.2, 0.4]}, image_sd=0.3),
        frame({"Z": 0.5, "Rain input": -2.5}, free=("Rain input",), reference="true background",
              seed_offsets={"Z": [0.1, 0.2, -0.4]}, image_sd=0.3, rng=3)], ignore_index=True)
    summary = claims.seed_summary(per_image)
    assert list(summary.columns) == ["model", "reference", "psnr_mean", "psnr_std", "ssim_mean",
                                     "ssim_std", "n_seeds", "n_images"]
    assert list(zip(summary["model"], summary["reference"], strict=True)) == [
        ("Z", "estimated clean"), ("Rain input", "estimated clean"),
        ("Z", "true background"), ("Rain input", "true background")]
    for _, row in summary.iterrows():
        rows = per_image[(per_image["model"] == row["model"])
                         & (per_image["reference"] == row["reference"])]
        for metric, column in (("psnr", PSNR), ("ssim", SSIM)):
            if row["model"] == "Z":
                means = np.array([rows[rows["seed"] == s][column].to_numpy().mean()
                                  for s in (0, 1, 2)])
                assert row[f"{metric}_mean"] == pytest.approx(means.mean())
                assert row[f"{metric}_std"] == pytest.approx(np.std(means, ddof=1))
                assert row["n_seeds"] == 3
            else:
                assert row[f"{metric}_mean"] == pytest.approx(rows[column].to_numpy().mean())
                assert math.isnan(row[f"{metric}_std"]) and row["n_seeds"] == 1
        assert row["n_images"] == 40
    # grouping by model only would mix the references: refused
    with pytest.raises(ValueError, match=r"model='Z': a test image appears twice under one"):
        claims.seed_summary(per_image, by=("model",))


def test_seed_summary_refuses_missing_metric():
    with pytest.raises(ValueError, match=r"column 'ssim\[standard\]' is not in the per-image"):
        claims.seed_summary(frame({"A": 0.0}).drop(columns=SSIM))


def test_mean_std_view_formats_cells_per_reference():
    summary = pd.DataFrame({
        "model": ["Rain input", "SPANet", "Rain input", "SPANet", "Extra"],
        "reference": ["estimated clean"] * 2 + ["true background"] * 2 + ["estimated clean"],
        "psnr_mean": [25.0, 29.776, 24.5, 28.0, 30.0],
        "psnr_std": [math.nan, 0.1249, math.nan, 0.5, math.nan],
        "ssim_mean": [0.8, 0.91234, 0.79, 0.9, 0.95],
        "ssim_std": [math.nan, 0.00126, math.nan, 0.002, math.nan],
        "n_seeds": [1, 3, 1, 3, 1], "n_images": [9] * 5})
    view = claims.mean_std_view(summary)
    assert list(view.columns) == ["model", "PSNR (estimated clean)", "SSIM (estimated clean)",
                                  "PSNR (true background)", "SSIM (true background)"]
    assert view.to_dict("records")[1] == {
        "model": "SPANet", "PSNR (estimated clean)": "29.78 ± 0.12",
        "SSIM (estimated clean)": "0.9123 ± 0.0013", "PSNR (true background)": "28.00 ± 0.50",
        "SSIM (true background)": "0.9000 ± 0.0020"}
    assert view.iloc[0]["PSNR (true background)"] == "24.50"
    assert view.iloc[2]["PSNR (true background)"] == "n/a"  # Extra has no such rows
    assert claims.mean_std_view(summary, digits=1).iloc[1]["PSNR (estimated clean)"] == (
        "29.8 ± 0.1")


def test_mean_std_view_refuses_wrong_summary():
    summary = claims.seed_summary(pd.concat([frame({"A": 0.0}, reference="estimated clean"),
                                             frame({"A": 0.0}, reference="true background")]))
    with pytest.raises(ValueError, match=r"cannot spread 'level'"):
        claims.mean_std_view(summary, by="level")
    with pytest.raises(ValueError, match=r"missing \['psnr_std'\]"):
        claims.mean_std_view(summary.drop(columns="psnr_std"))
    with pytest.raises(ValueError, match=r"several summary rows share one model"):
        claims.mean_std_view(summary, by=None)


def test_claim_rows_round_trip(tmp_path):
    per_image = frame({"A": 1.0, "B": 0.0, "C": 0.2}, reference="estimated clean")
    claim = claims.beats_all(per_image, "A", ["B", "C"], "A wins",
                             reference="estimated clean")
    path = tmp_path / "c.csv"
    claims.claim_rows([claim]).to_csv(path, index=False)
    (back,) = claims.claims_from_rows(pd.read_csv(path))
    assert back.describe() == claim.describe()
    with pytest.raises(ValueError, match="missing"):
        claims.claims_from_rows(pd.DataFrame({"claim": ["x"]}))
