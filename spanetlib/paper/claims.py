"""The paper's claims decided by paired tests over training seeds and test images.

Input is the per-image table of `spanetlib.evaluation.evaluate.compare_models` (columns ``model``,
``name``, ``psnr[<convention>]``, ``ssim[<convention>]``, optionally ``reference``), one
frame per training seed concatenated with an integer column ``seed``. Rows that do not depend
on the seed (the rain input, the authors' released weights) are scored once and have ``seed``
missing (NaN/None): their values count for every seed. A frame without a ``seed`` column is
one scoring of every model.

Conventions, exactly:

- **Seed summary** (`seed_summary`): per group (model, reference) the mean over test images for
  each seed, then the mean and the standard deviation (ddof=1) of those per-seed means. A
  seed-independent row counts as one seed (std NaN). Every seed of a group must score the same
  number of images, and no (seed, image) may repeat.
- **Pairing** (`paired_test`): the PSNR difference ``a - b`` of the same test image (``name``)
  under the same seed; a seed-independent row pairs with every seed of the other model. Only
  common (seed, image) pairs are used; every seed must then have the same number of images.
- **Test with >= 2 seeds**: the unit is the seed. Each seed's differences are averaged over the
  test images, and those means are tested against 0 with a two-sided one-sample t-test
  (df = seeds - 1), with its t confidence interval. Training randomness dominates, and the
  test images are many strongly correlated patches of a few scenes, so a test over images
  would overstate the evidence.
- **Test with 1 seed**: a two-sided Wilcoxon signed-rank test over the images' differences
  (zero differences dropped, scipy's "wilcox"), with a t interval of the mean difference over
  images. It does not cover training randomness, and the result says so.
- **Degenerate cases** (differences within 1e-9 dB count as equal): all differences zero
  (identical scores) give p = 1, interval [0, 0], "undecided"; with >= 2 seeds whose mean
  differences are all equal and non-zero the t statistic is infinite: p = 0 and the interval
  is that value.
- **Verdict** of the claim "a beats b": "holds" when p < alpha and the mean difference is
  positive, "does not hold" when p < alpha and it is negative, "undecided" otherwise.
- **Claims** (`decide_claim`) combine comparisons with rule "all": the claim holds when every
  comparison holds and does not hold when any does not hold; else it is undecided. This is an
  intersection-union test, so each comparison at level alpha keeps the claim at level alpha
  without a multiplicity correction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from spanetlib.evaluation.evaluate import metric_column, metric_columns

__all__ = [
    "CLAIM_RULES",
    "Claim",
    "PairedTest",
    "beats_all",
    "claim_rows",
    "claims_from_rows",
    "decide_claim",
    "mean_std_view",
    "paired_test",
    "pairs_improve",
    "seed_summary",
]

#: Verdicts of a comparison or a claim.
HOLDS, DOES_NOT_HOLD, UNDECIDED = "holds", "does not hold", "undecided"
#: How `decide_claim` combines comparisons.
CLAIM_RULES: tuple[str, ...] = ("all",)
#: PSNR differences (dB) this small count as equal (rounding noise of identical outputs).
_EQUAL_DB = 1e-9


# --------------------------------------------------------------------------------------------
# Reading the per-image table
# --------------------------------------------------------------------------------------------
def _seed_key(frame: pd.DataFrame) -> pd.Series:
    """The ``seed`` column as objects, None where missing (or everywhere without the column)."""
    if "seed" not in frame.columns:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    out = []
    for s in frame["seed"]:
        if s is None or pd.isna(s):
            out.append(None)
        elif isinstance(s, (int, np.integer, float, np.floating)) and float(s).is_integer():
            out.append(int(s))
        else:
            raise ValueError(f"seed must be an integer or missing, got {s!r}")
    return pd.Series(out, index=frame.index, dtype=object)


def _seed_labels(seeds: pd.Series) -> pd.Series:
    """Seeds as group labels ("-" where missing): pandas' groupby would drop missing keys."""
    return seeds.map(lambda s: "-" if s is None or pd.isna(s) else str(int(s)))


def _check_column(frame: pd.DataFrame, column: str) -> None:
    if column not in frame.columns:
        raise ValueError(f"column {column!r} is not in the per-image table; its metric "
                         f"columns are {metric_columns(frame)}")


def _per_seed(rows: pd.DataFrame, columns: Sequence[str], what: str) -> pd.DataFrame:
    """Per-seed means of ``columns`` over images for the rows of one group.

    Returns:
        One row per seed (``seed`` None for a seed-independent group): ``seed``, the column
        means, ``n_images``.

    Raises:
        ValueError: seeded and seed-independent rows mixed, a repeated (seed, image), or seeds
            with different numbers of images.
    """
    seeds = _seed_key(rows)
    missing = seeds.isna()
    if missing.any() and not missing.all():
        raise ValueError(f"{what}: some rows have a seed and some do not; a model is either "
                         f"trained per seed or scored once")
    keyed = rows.assign(_seed=_seed_labels(seeds))
    if keyed.duplicated(["_seed", "name"]).any():
        raise ValueError(f"{what}: a test image appears twice under one seed; group by every "
                         f"column that tells such rows apart (e.g. reference)")
    groups = keyed.groupby("_seed", sort=True)
    out = groups[list(columns)].mean()
    out["n_images"] = groups.size()
    if out["n_images"].nunique() > 1:
        raise ValueError(f"{what}: the seeds score different numbers of test images "
                         f"{dict(out['n_images'])}; expected the same images for every seed")
    out["seed"] = [None if missing.all() else int(s) for s in out.index]
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Mean ± std over seeds
# --------------------------------------------------------------------------------------------
def seed_summary(per_image: pd.DataFrame, convention: str = "standard",
                 by: Sequence[str] = ("model", "reference")) -> pd.DataFrame:
    """Mean and spread over training seeds of each model's dataset PSNR and SSIM.

    For each group, the mean over test images per seed, then the mean and the standard
    deviation (ddof=1) of those means over seeds. A seed-independent group (``seed`` missing)
    counts as one seed.

    Args:
        per_image: per-image scores (``model, [reference], name, psnr[...], ssim[...]``, and
            ``seed`` when several seeds were trained), one row per (seed, model, reference,
            image).
        convention: the metric convention summarized.
        by: the grouping columns; those absent from ``per_image`` are skipped.

    Returns:
        One row per group in order of first appearance: the ``by`` columns present,
        ``psnr_mean, psnr_std, ssim_mean, ssim_std`` (std NaN with one seed), ``n_seeds`` and
        ``n_images`` (test images per seed).

    Raises:
        ValueError: a missing metric or ``name`` column, or a group as `paired_test` refuses
            (seeded and unseeded rows mixed, a repeated image, seeds with different images).

    Example:
        >>> per_image = pd.DataFrame({
        ...     "model": ["A"] * 4, "name": ["x", "y"] * 2, "seed": [0, 0, 1, 1],
        ...     "psnr[standard]": [20.0, 22.0, 22.0, 24.0],
        ...     "ssim[standard]": [0.5, 0.7, 0.6, 0.8]})
        >>> seed_summary(per_image)[["model", "psnr_mean", "psnr_std", "n_seeds", "n_images"]]
          model  psnr_mean  psnr_std  n_seeds  n_images
        0     A       22.0  1.414214        2         2
    """
    psnr, ssim = metric_column("psnr", convention), metric_column("ssim", convention)
    for column in (psnr, ssim, "name"):
        _check_column(per_image, column)
    keys = [c for c in by if c in per_image.columns]
    groups = (per_image.groupby(keys, sort=False, dropna=False) if keys
              else [((), per_image)])
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        what = ", ".join(f"{k}={v!r}" for k, v in zip(keys, key, strict=True)) or "all rows"
        seeds = _per_seed(group, (psnr, ssim), what)
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        for metric, column in (("psnr", psnr), ("ssim", ssim)):
            row[f"{metric}_mean"] = float(seeds[column].mean())
            row[f"{metric}_std"] = (float(seeds[column].std(ddof=1)) if len(seeds) > 1
                                    else math.nan)
        row["n_seeds"] = len(seeds)
        row["n_images"] = int(seeds["n_images"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, "psnr_mean", "psnr_std", "ssim_mean", "ssim_std",
                                       "n_seeds", "n_images"])


def _mean_std_text(mean: float, std: float, digits: int) -> str:
    if pd.isna(mean):
        return "n/a"
    if pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def mean_std_view(summary: pd.DataFrame, by: str | None = "reference", digits: int = 2,
                  ssim_digits: int = 4) -> pd.DataFrame:
    """The readable table of `seed_summary`: one row per model, "mean ± std" as text.

    Column naming follows `spanetlib.paper.tables.main_view`.

    Args:
        summary: a `seed_summary`.
        by: the group column spread into columns (``"reference"``); None: one row per model.
        digits: decimals of PSNR (dB).
        ssim_digits: decimals of SSIM.

    Returns:
        Columns ``model``, then ``PSNR (<group>)`` and ``SSIM (<group>)`` per group (``PSNR`` /
        ``SSIM`` without ``by``); cells "29.78 ± 0.12", or "29.78" alone for one seed or a
        seed-independent row, "n/a" where a model lacks that group.

    Raises:
        ValueError: ``summary`` lacks ``model``, the ``by`` column or a `seed_summary` column,
            or has several rows for one model and group.

    Example:
        >>> summary = pd.DataFrame({
        ...     "model": ["Rain input", "SPANet"], "psnr_mean": [25.0, 29.7812],
        ...     "psnr_std": [float("nan"), 0.1234], "ssim_mean": [0.8, 0.91],
        ...     "ssim_std": [float("nan"), 0.001], "n_seeds": [1, 3], "n_images": [9, 9]})
        >>> mean_std_view(summary, by=None).to_dict("records")
        [{'model': 'Rain input', 'PSNR': '25.00', 'SSIM': '0.8000'},
         {'model': 'SPANet', 'PSNR': '29.78 ± 0.12', 'SSIM': '0.9100 ± 0.0010'}]
    """
    needed = ["model", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std"]
    missing = [c for c in needed if c not in summary.columns]
    if missing:
        raise ValueError(f"expected a seed_summary with columns {needed}; missing {missing}")
    if by is not None and by not in summary.columns:
        raise ValueError(f"cannot spread {by!r}: not a column of {list(summary.columns)}")
    keys = ["model"] if by is None else ["model", by]
    if summary.duplicated(keys).any():
        raise ValueError(f"several summary rows share one {' and '.join(keys)}; summarize by "
                         f"{keys} only")
    table: dict[str, dict[str, str]] = {}
    columns: list[str] = []
    for _, rec in summary.iterrows():
        suffix = f" ({rec[by]})" if by is not None else ""
        cells = {f"PSNR{suffix}": _mean_std_text(rec["psnr_mean"], rec["psnr_std"], digits),
                 f"SSIM{suffix}": _mean_std_text(rec["ssim_mean"], rec["ssim_std"],
                                                 ssim_digits)}
        table.setdefault(rec["model"], {}).update(cells)
        columns += [c for c in cells if c not in columns]
    rows = [{"model": model, **{c: cells.get(c, "n/a") for c in columns}}
            for model, cells in table.items()]
    return pd.DataFrame(rows, columns=["model", *columns])


# --------------------------------------------------------------------------------------------
# One paired comparison
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairedTest:
    """The paired comparison of model ``a`` with model ``b`` for the claim "a beats b".

    Attributes:
        a: the model claimed better.
        b: the model it is compared with.
        reference: the ``reference`` rows compared (None when the table has none).
        convention: the metric convention of the PSNR.
        mean_diff: mean PSNR difference a - b (dB) over seeds (each the mean over images).
        ci_low: lower end of the (1 - alpha) confidence interval of ``mean_diff`` (dB).
        ci_high: upper end of that interval (dB).
        p_value: two-sided p-value of "no difference".
        n_seeds: seeds paired (1 for a single scoring).
        n_images: test images paired per seed.
        share_a_better: share of (seed, image) pairs where a scores a higher PSNR than b.
        alpha: the significance level.
        test: which test was run, in words.
        verdict: "holds", "does not hold" or "undecided".
    """

    a: str
    b: str
    reference: str | None
    convention: str
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n_seeds: int
    n_images: int
    share_a_better: float
    alpha: float
    test: str
    verdict: str

    def describe(self) -> str:
        """One line: the difference, its interval, the p-value, the test and the verdict."""
        where = f" (vs. {self.reference})" if self.reference is not None else ""
        level = f"{100 * (1 - self.alpha):g}%"
        p = "p < 0.001" if self.p_value < 0.001 else f"p = {self.p_value:.2g}"
        return (f"{self.a} vs {self.b}{where}: {self.mean_diff:+.2f} dB [{level} CI "
                f"{self.ci_low:+.2f}, {self.ci_high:+.2f}], {p} ({self.test}; a better on "
                f"{100 * self.share_a_better:.0f}% of images): {self.verdict}")


def _verdict(mean_diff: float, p_value: float, alpha: float) -> str:
    if p_value < alpha and mean_diff > 0:
        return HOLDS
    if p_value < alpha and mean_diff < 0:
        return DOES_NOT_HOLD
    return UNDECIDED


def _select_reference(per_image: pd.DataFrame, reference: str | None
                      ) -> tuple[pd.DataFrame, str | None]:
    if "reference" not in per_image.columns:
        if reference is not None:
            raise ValueError(f"unknown reference {reference!r}: the per-image table has no "
                             f"reference column")
        return per_image, None
    known = list(dict.fromkeys(per_image["reference"]))
    if reference is None:
        if len(known) != 1:
            raise ValueError(f"the per-image table has several references {known}; choose "
                             f"one with reference=")
        reference = known[0]
    if reference not in known:
        raise ValueError(f"unknown reference {reference!r}; the per-image table has {known}")
    return per_image[per_image["reference"] == reference], reference


def _scores(rows: pd.DataFrame, model: str, column: str) -> pd.DataFrame:
    """One model's ``seed, name, value`` (seed None when seed-independent), checked."""
    mine = rows[rows["model"] == model]
    if mine.empty:
        known = list(dict.fromkeys(rows["model"]))
        raise ValueError(f"unknown model {model!r}; the per-image table has {known}")
    _per_seed(mine, (column,), f"model {model!r}")  # the checks only
    values = mine[column].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise ValueError(f"model {model!r} has non-finite {column} values (an output identical "
                         f"to its reference scores inf); a PSNR difference needs finite values")
    return pd.DataFrame({"seed": _seed_key(mine).to_numpy(), "name": mine["name"].to_numpy(),
                         "value": values})


def _pair(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str]) -> pd.DataFrame:
    """Paired ``seed, name, diff`` (a - b); a seed-independent side pairs with every seed."""
    a_free, b_free = a["seed"].isna().all(), b["seed"].isna().all()
    if a_free or b_free:
        on_a = a.drop(columns="seed") if a_free else a
        on_b = b.drop(columns="seed") if b_free else b
        merged = on_a.merge(on_b, on="name", suffixes=("_a", "_b"))
        if a_free and b_free:
            merged["seed"] = None
    else:
        common = set(a["seed"]) & set(b["seed"])
        if not common:
            raise ValueError(f"{names[0]!r} and {names[1]!r} were trained with disjoint seeds "
                             f"{sorted(set(a['seed']))} and {sorted(set(b['seed']))}; nothing "
                             f"to pair")
        merged = a.merge(b, on=["seed", "name"], suffixes=("_a", "_b"))
    if merged.empty:
        raise ValueError(f"{names[0]!r} and {names[1]!r} have no test image in common")
    merged["diff"] = merged["value_a"] - merged["value_b"]
    counts = merged.groupby(_seed_labels(merged["seed"])).size()
    if counts.nunique() > 1:
        raise ValueError(f"{names[0]!r} and {names[1]!r} share different numbers of test images "
                         f"per seed {dict(counts)}; expected the same images for every seed")
    return merged[["seed", "name", "diff"]]


def _t_interval(values: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """(p, low, high) of a one-sample t-test of ``values`` against 0, degenerate cases fixed."""
    mean = float(values.mean())
    if np.ptp(values) <= _EQUAL_DB:  # no spread: t is 0/0 or infinite
        return (1.0 if abs(mean) <= _EQUAL_DB else 0.0), mean, mean
    result = stats.ttest_1samp(values, 0.0)
    ci = result.confidence_interval(confidence_level=1 - alpha)
    return float(result.pvalue), float(ci.low), float(ci.high)


def paired_test(per_image: pd.DataFrame, a: str, b: str, reference: str | None = None,
                convention: str = "standard", alpha: float = 0.05) -> PairedTest:
    """Test the claim "model a beats model b" on PSNR, paired by seed and test image.

    With >= 2 seeds: a two-sided one-sample t-test over seeds of each seed's mean difference
    (df = seeds - 1) and its t interval. With 1 seed: a two-sided Wilcoxon signed-rank test over
    the images' differences and a t interval over images; training randomness is not covered.
    The module docstring states every convention.

    Args:
        per_image: per-image scores (``model, [reference], name, psnr[...]``, and ``seed``), as
            concatenated from `spanetlib.evaluation.evaluate.compare_models` runs.
        a: the model claimed better.
        b: the model compared with.
        reference: the ``reference`` rows compared; None when the table has no reference
            column or only one reference.
        convention: the metric convention of the PSNR.
        alpha: significance level (and 1 - confidence of the interval), in (0, 1).

    Returns:
        The `PairedTest`.

    Raises:
        ValueError: an unknown model or reference, a missing metric or ``name`` column, a = b,
            no common images or disjoint seeds, unbalanced pairs, non-finite PSNR, a bad
            ``alpha``, or a model's rows as `seed_summary` refuses.

    Example:
        >>> per_image = pd.DataFrame({
        ...     "model": ["A"] * 4 + ["B"] * 4, "name": ["x", "y"] * 4,
        ...     "seed": [0, 0, 1, 1] * 2,
        ...     "psnr[standard]": [21.0, 23.0, 23.0, 25.0, 20.0, 22.0, 21.6, 24.0]})
        >>> print(paired_test(per_image, "A", "B").describe())
        A vs B: +1.10 dB [95% CI -0.17, +2.37], p = 0.058 (paired t-test over 2 seeds, 2 test
        images each; a better on 100% of images): undecided
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    if a == b:
        raise ValueError(f"compare two different models, got {a!r} twice")
    column = metric_column("psnr", convention)
    for needed in (column, "name", "model"):
        _check_column(per_image, needed)
    rows, reference = _select_reference(per_image, reference)
    pairs = _pair(_scores(rows, a, column), _scores(rows, b, column), (a, b))
    diffs = pairs["diff"].to_numpy()
    per_seed = pairs.groupby(_seed_labels(pairs["seed"]))["diff"].mean().to_numpy()
    n_seeds, n_images = len(per_seed), len(pairs) // len(per_seed)
    if n_seeds >= 2:
        mean_diff = float(per_seed.mean())
        p_value, low, high = _t_interval(per_seed, alpha)
        test = f"paired t-test over {n_seeds} seeds, {n_images} test images each"
    else:
        mean_diff = float(diffs.mean())
        _, low, high = _t_interval(diffs, alpha)
        if np.all(np.abs(diffs) <= _EQUAL_DB):
            p_value = 1.0  # identical scores: scipy's wilcoxon refuses all-zero differences
        else:
            p_value = float(stats.wilcoxon(diffs, zero_method="wilcox").pvalue)
        test = (f"Wilcoxon signed-rank test over {n_images} test images of 1 seed; training "
                f"randomness not covered")
    return PairedTest(a=a, b=b, reference=reference, convention=convention,
                      mean_diff=mean_diff, ci_low=low, ci_high=high, p_value=p_value,
                      n_seeds=n_seeds, n_images=n_images,
                      share_a_better=float(np.mean(diffs > 0)), alpha=alpha, test=test,
                      verdict=_verdict(mean_diff, p_value, alpha))


# --------------------------------------------------------------------------------------------
# Claims: several comparisons
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """A finding of the paper decided by several paired comparisons.

    Attributes:
        name: the finding in words ("SPANet beats the earlier derainers").
        rule: how the comparisons combine (`CLAIM_RULES`).
        tests: the comparisons, each "a beats b".
        verdict: "holds", "does not hold" or "undecided".
    """

    name: str
    rule: str
    tests: tuple[PairedTest, ...]
    verdict: str

    def describe(self) -> str:
        """A title line "Claim: <name>: <verdict>", then one line per comparison."""
        return "\n".join([f"Claim: {self.name}: {self.verdict}",
                          *(f"- {t.describe()}" for t in self.tests)])


def decide_claim(name: str, tests: Sequence[PairedTest], rule: str = "all") -> Claim:
    """Combine paired comparisons into a claim's verdict.

    Rule "all": the claim holds when every comparison holds, does not hold when any comparison
    does not hold, and is undecided otherwise (an intersection-union test: no multiplicity
    correction is needed for "holds" at level alpha).

    Args:
        name: the finding in words.
        tests: the comparisons (`paired_test` results).
        rule: one of `CLAIM_RULES`.

    Returns:
        The `Claim`.

    Raises:
        ValueError: no comparisons or an unknown rule.
    """
    if rule not in CLAIM_RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {CLAIM_RULES}")
    tests = tuple(tests)
    if not tests:
        raise ValueError(f"claim {name!r} needs at least one comparison, got none")
    verdicts = [t.verdict for t in tests]
    verdict = (DOES_NOT_HOLD if DOES_NOT_HOLD in verdicts
               else HOLDS if all(v == HOLDS for v in verdicts) else UNDECIDED)
    return Claim(name=name, rule=rule, tests=tests, verdict=verdict)


def beats_all(per_image: pd.DataFrame, model: str, others: Sequence[str] | None, claim: str,
              reference: str | None = None, convention: str = "standard",
              alpha: float = 0.05) -> Claim:
    """The claim "``model`` beats every one of ``others``" (rule "all").

    Args:
        per_image: as for `paired_test`.
        model: the model claimed best.
        others: the models it must beat; None: every other model of the table (for the
            reference), in order of first appearance.
        claim: the finding in words.
        reference: as for `paired_test`.
        convention: as for `paired_test`.
        alpha: as for `paired_test`.

    Returns:
        The `Claim`, one comparison per other model.

    Raises:
        ValueError: as `paired_test` and `decide_claim`.
    """
    if others is None:
        _check_column(per_image, "model")
        rows, _ = _select_reference(per_image, reference)
        others = [m for m in dict.fromkeys(rows["model"]) if m != model]
    tests = [paired_test(per_image, model, other, reference, convention, alpha)
             for other in others]
    return decide_claim(claim, tests, "all")


def pairs_improve(per_image: pd.DataFrame, pairs: Sequence[tuple[str, str]], claim: str,
                  reference: str | None = None, convention: str = "standard",
                  alpha: float = 0.05) -> Claim:
    """The claim "in each pair the first model beats the second" (rule "all").

    E.g. each (retrained on §3 data, original) pair: "retraining on §3 data helps".

    Args:
        per_image: as for `paired_test`.
        pairs: ``(better, worse)`` model pairs.
        claim: the finding in words.
        reference: as for `paired_test`.
        convention: as for `paired_test`.
        alpha: as for `paired_test`.

    Returns:
        The `Claim`, one comparison per pair.

    Raises:
        ValueError: as `paired_test` and `decide_claim`.
    """
    tests = [paired_test(per_image, better, worse, reference, convention, alpha)
             for better, worse in pairs]
    return decide_claim(claim, tests, "all")


def claim_rows(claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per comparison of each claim, for ``results/`` (`claims_from_rows` reads it back).

    Columns ``claim, rule, claim verdict`` and every field of `PairedTest`.
    """
    fields = [f.name for f in dataclass_fields(PairedTest)]
    rows = [{"claim": c.name, "rule": c.rule, "claim verdict": c.verdict,
             **{k: getattr(t, k) for k in fields}} for c in claims for t in c.tests]
    return pd.DataFrame(rows, columns=["claim", "rule", "claim verdict", *fields])


def claims_from_rows(rows: pd.DataFrame) -> list[Claim]:
    """The claims of a `claim_rows` table (e.g. read from its CSV), in their order.

    Raises:
        ValueError: a column of `claim_rows` is missing.
    """
    fields = [f.name for f in dataclass_fields(PairedTest)]
    missing = [c for c in ["claim", "rule", "claim verdict", *fields] if c not in rows.columns]
    if missing:
        raise ValueError(f"expected the columns of claim_rows; missing {missing}")
    out = []
    for name, group in rows.groupby("claim", sort=False):
        tests = tuple(PairedTest(**{k: (None if pd.isna(rec[k]) else rec[k]) if k == "reference"
                                    else rec[k] for k in fields})
                      for _, rec in group.iterrows())
        out.append(Claim(str(name), str(group["rule"].iloc[0]), tests,
                         str(group["claim verdict"].iloc[0])))
    return out
