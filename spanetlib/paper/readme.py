"""README.md's result tables and the numbers its prose quotes, written from ``results/``.

README.md marks each generated region with a pair of HTML comments (invisible on GitHub)::

    <!-- results: table2 -->
    ...written from results/table2.md...
    <!-- /results: table2 -->

``python -m spanetlib.paper.readme`` rewrites every marked region from the results files (tables
from ``<name>.md``, verdicts and quoted numbers from the ``.csv`` files, with the functions the
notebooks use) and from the library's own tables (the test-folder layouts of
`spanetlib.io.layouts`, the metric conventions of `spanetlib.evaluation.metrics`); ``--check`` only
reports whether README.md is up to date (exit status 1 if not). A test runs the check, so a README
that disagrees with ``results/`` or with the library fails CI.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from spanetlib.evaluation.metrics import METRIC_CONVENTIONS
from spanetlib.io.errors import InputError
from spanetlib.io.files import atomic_write_text
from spanetlib.io.layouts import LAYOUTS
from spanetlib.paper.claims import claims_from_rows
from spanetlib.paper.profiles import NOTEBOOKS

__all__ = ["QUICK_GOAL_MINUTES", "REGIONS", "main", "render_region", "update_readme"]

#: What the whole ``spanet reproduce --profile quick`` should take on a 2-core CPU (issue 15).
QUICK_GOAL_MINUTES = 60

_MARKER = re.compile(r"<!-- (/?)results: ([\w-]+) -->")

#: Held-out check columns -> README labels (the weights' names as ``--weights`` takes them).
_HELDOUT_MODELS = {"synthetic": "ours (`synthetic`)", "official": "authors' (`official`)"}


def _read_csv(results: Path, name: str) -> pd.DataFrame:
    path = results / f"{name}.csv"
    if not path.is_file():
        raise InputError(f"results file not found: {path}")
    return pd.read_csv(path)


def _markdown_table(results: Path, name: str) -> str:
    """The table of ``<name>.md`` without its caption (the lines from the first ``|`` row)."""
    path = results / f"{name}.md"
    if not path.is_file():
        raise InputError(f"results file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        raise InputError(f"{path} holds no markdown table")
    return "\n".join(lines[start:])


def _captioned_table(results: Path, name: str) -> str:
    """``<name>.md`` whole: its caption (what was measured, where), a blank line, the table."""
    table = _markdown_table(results, name)
    caption = (results / f"{name}.md").read_text(encoding="utf-8").split("\n|", 1)[0].strip()
    caption = "\n".join(line for line in caption.splitlines() if not line.startswith("# ")).strip()
    return f"{caption}\n\n{table}" if caption and not caption.startswith("|") else table


def _table1_dense(results: Path) -> str:
    per_video = _read_csv(results, "table1_per_video")
    dense = per_video[per_video["density"] == "dense"].groupby("method")["psnr"].mean()
    return (f"on the dense videos alone the temporal median reaches {dense['Median']:.1f} dB "
            f"and ours {dense['Ours (Eqs. 2-4)']:.1f} dB")


def _claims(results: Path, name: str) -> str:
    """The claims of ``<name>.csv`` (`spanetlib.paper.claims.claim_rows`) as notebooks print."""
    found = claims_from_rows(_read_csv(results, name))
    blocks = []
    for claim in found:
        lines = claim.describe().splitlines()
        blocks.append("\n".join([f"**{lines[0]}**", "", *lines[1:]]))
    return "\n\n".join(blocks)


def _convergence(results: Path) -> str:
    """Notebook 02's validation gains per seed, in one sentence."""
    table = _read_csv(results, "training_convergence")
    late, total = table["late_gain"], table["total_gain"]
    return (f"over the last quarter of its {len(table)} runs SPANet's validation PSNR still "
            f"rose by {late.min():+.2f} to {late.max():+.2f} dB, against {total.min():+.2f} "
            f"to {total.max():+.2f} dB over the whole run")


def _reproduce_times(results: Path) -> str:
    """The ``quick`` time per notebook from ``reproduce_times.csv``, with the machine.

    Then whether the whole profile met `QUICK_GOAL_MINUTES`, or which notebooks lack a time.
    """
    table = _read_csv(results, "reproduce_times")
    table = table[table["profile"] == "quick"]
    lines = ["| notebook | minutes | finished (UTC) |", "|---|---:|---|"]
    lines += [f"| {row.notebook} | {row.seconds / 60:.1f} | {row.finished} |"
              for row in table.itertuples()]
    total = table["seconds"].sum() / 60
    lines.append(f"| **all** | **{total:.1f}** | |")
    machines = sorted({f"{row.cpu}, {row.cores} cores" for row in table.itertuples()})
    missing = [name for name in NOTEBOOKS if name not in set(table["notebook"])]
    if missing:
        verdict = (f"Not timed with this profile: {', '.join(missing)}, so whether the whole "
                   f"profile fits in {QUICK_GOAL_MINUTES} minutes is not known.")
    else:
        verdict = (f"All {len(NOTEBOOKS)} notebooks: {total:.1f} minutes, "
                   + ("within" if total <= QUICK_GOAL_MINUTES else "**over**")
                   + f" the {QUICK_GOAL_MINUTES} minutes the quick profile aims for.")
    return ("\n".join(lines) + "\n\nMachine: " + "; ".join(machines) + ". " + verdict)


def _heldout_gains(results: Path) -> pd.DataFrame:
    table = _read_csv(results, "heldout_check").set_index("condition")
    gains = pd.DataFrame({model: table[f"psnr ({model})"] - table["psnr_input"]
                          for model in _HELDOUT_MODELS})
    return gains.drop(index="all")


def _heldout_table(results: Path) -> str:
    """One row per condition: ``PSNR / SSIM`` of the rain input and of each weights."""
    table = _read_csv(results, "heldout_check")
    columns = {"rain input": ("psnr_input", "ssim_input")}
    columns.update({label: (f"psnr ({m})", f"ssim ({m})") for m, label in _HELDOUT_MODELS.items()})
    lines = ["| condition | " + " | ".join(columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for _, row in table.iterrows():
        name = f"all {row['n']} images" if row["condition"] == "all" else row["condition"]
        cells = [f"{row[p]:.2f} / {row[s]:.3f}" for p, s in columns.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _heldout_summary(results: Path) -> str:
    gains = _heldout_gains(results)
    ours, authors = gains["synthetic"], gains["official"]
    weakest = ours.idxmin()
    improves = "improve every condition" if (ours > 0).all() else (
        f"improve {int((ours > 0).sum())} of {len(ours)} conditions")
    return (f"Our weights {improves} ({ours.min():+.1f} to {ours.max():+.1f} dB); the "
            f"weakest case for them is {weakest} ({ours[weakest]:+.1f} dB; the authors' "
            f"weights {authors[weakest]:+.1f} dB)")


def _synthetic_run(results: Path) -> str:
    """The shipped weights' training run from ``synthetic_weights_log.csv``, in words."""
    log = _read_csv(results, "synthetic_weights_log")
    return f"{int(log['step'].iloc[-1]):,} steps"


def _attention_weights(results: Path) -> str:
    """``attention_weights.md`` (benchmarks/check_synthetic_weights.py) and the goal verdict."""
    table = _read_csv(results, "attention_weights")
    verdicts = [f"`{row.weights}` {'meets' if row.goal_met else 'misses'} it"
                for row in table.itertuples()]
    return _markdown_table(results, "attention_weights") + "\n\nGoal (mean A_1 on rain >= " \
        "0.2 and at least 1.5x that off the rain): " + "; ".join(verdicts) + "."


def _layouts_table(results: Path) -> str:
    """Every test-folder layout that `spanetlib.io.layouts.read_test_folder` detects."""
    lines = ["| layout | the folder holds | read this way by |", "|---|---|---|"]
    lines += [f"| `{lay.name}` | {lay.expected} | {', '.join(lay.code_bases)} |"
              for lay in LAYOUTS.values()]
    return "\n".join(lines)


def _conventions_table(results: Path) -> str:
    """Every metric convention and the published numbers computed in it (no results used)."""
    lines = ["| convention | computed as | published numbers in it |", "|---|---|---|"]
    lines += [f"| `{conv.name}` | {conv.description} | {conv.published or '-'} |"
              for conv in METRIC_CONVENTIONS.values()]
    return "\n".join(lines)


def _video_derain_summary(results: Path) -> str:
    """`spanetlib.paper.video_experiment.goal_summary` of ``video_derain.csv``."""
    from spanetlib.paper.video_experiment import goal_summary

    return goal_summary(_read_csv(results, "video_derain").fillna({"weights": ""}))


def _footage_cost(results: Path) -> str:
    """What a minute of 1080p and of 4K footage (30 fps) costs at the rates of ``footage.csv``."""
    rows = _read_csv(results, "footage")
    new = rows[(rows["code"] == "new") & rows["fps"].notna()]
    parts = []
    for label, clip in (("1080p", "hand-held 1080p"), ("4K", "hand-held 4K")):
        row = new[new["clip"] == clip]
        if len(row):
            fps, peak = float(row["fps"].iloc[0]), float(row["peak_gib"].iloc[0])
            parts.append(f"a minute of {label} (1,800 frames at 30 fps) takes about "
                         f"{1800 / fps / 60:.0f} minutes at {fps:.1f} frames/s, in "
                         f"{peak:.1f} GiB at most")
    if not parts:
        raise InputError(f"{results / 'footage.csv'} has no 1080p or 4K row of the new code")
    return "; ".join(parts)


#: Region name -> ``render(results_dir) -> text``.
REGIONS: dict[str, Callable[[Path], str]] = {
    "table1": lambda r: _markdown_table(r, "table1"),
    "table1-dense": _table1_dense,
    "table2": lambda r: _markdown_table(r, "table2"),
    "table2-claims": lambda r: _claims(r, "claims_table2"),
    "table3": lambda r: _markdown_table(r, "table3"),
    "table4": lambda r: _markdown_table(r, "table4"),
    "table4-claims": lambda r: _claims(r, "claims_table4"),
    "training-convergence": _convergence,
    "reproduce-times": _reproduce_times,
    "heldout": _heldout_table,
    "synthetic-run": _synthetic_run,
    "attention-weights": _attention_weights,
    "heldout-summary": _heldout_summary,
    "layouts": _layouts_table,
    "conventions": _conventions_table,
    "video-derain": lambda r: _markdown_table(r, "video_derain"),
    "training-step": lambda r: _captioned_table(r, "training_step"),
    "model-speed": lambda r: _captioned_table(r, "model_speed"),
    "model-speed-amd": lambda r: _captioned_table(r, "model_speed_amd"),
    "footage": lambda r: _captioned_table(r, "footage"),
    "footage-cost": _footage_cost,
    "registration": lambda r: _captioned_table(r, "registration"),
    "video-derain-speed": lambda r: _captioned_table(r, "video_derain_speed"),
    "video-derain-memory": lambda r: _captioned_table(r, "video_derain_memory"),
    "video-derain-real": lambda r: _captioned_table(r, "video_derain_real"),
    "startup": lambda r: _captioned_table(r, "startup"),
    "video-derain-summary": _video_derain_summary,
}


def render_region(name: str, results_dir: str | Path,
                  regions: Mapping[str, Callable[[Path], str]] = REGIONS) -> str:
    """The text of one README region, from the files in ``results_dir``.

    Raises:
        ValueError: unknown region.
        InputError: a results file is missing.
    """
    if name not in regions:
        raise ValueError(f"unknown README region {name!r}; expected one of {sorted(regions)}")
    return regions[name](Path(results_dir))


def update_readme(text: str, results_dir: str | Path,
                  regions: Mapping[str, Callable[[Path], str]] = REGIONS) -> str:
    """``text`` (README.md's content) with every marked region rewritten from the results.

    A region on one line stays inline (``<!-- results: x -->text<!-- /results: x -->``); a
    region whose markers stand on their own lines gets the text on the lines between them.

    Args:
        text: the README's text.
        results_dir: the folder of the results files.
        regions: region name -> renderer (default `REGIONS`).

    Raises:
        ValueError: a marker without its partner, nested or crossed markers, an unknown region.

    Example:
        >>> text = "Gain: <!-- results: gain -->old<!-- /results: gain -->."
        >>> update_readme(text, "results", {"gain": lambda results: "+2.0 dB"})
        'Gain: <!-- results: gain -->+2.0 dB<!-- /results: gain -->.'
    """
    out, pos, open_name, open_end = [], 0, None, 0
    for match in _MARKER.finditer(text):
        closing, name = match.group(1) == "/", match.group(2)
        if not closing:
            if open_name is not None:
                raise ValueError(f"README region {name!r} starts inside region {open_name!r}")
            out.append(text[pos:match.end()])
            open_name, open_end = name, match.end()
            continue
        if open_name != name:
            raise ValueError(f"README region end {name!r} without its start"
                             + (f" (inside {open_name!r})" if open_name else ""))
        body = render_region(name, results_dir, regions)
        inline = "\n" not in text[open_end:match.start()]
        out.append(body if inline else f"\n{body}\n")
        pos, open_name = match.start(), None
    if open_name is not None:
        raise ValueError(f"README region {open_name!r} is not closed")
    out.append(text[pos:])
    return "".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spanetlib.paper.readme [--check] [--readme README.md] [--results results]``."""
    root = Path(__file__).resolve().parents[2]
    parser = argparse.ArgumentParser(prog="python -m spanetlib.paper.readme",
                                     description="Rewrite README.md's result regions from "
                                     "results/.")
    parser.add_argument("--readme", type=Path, default=root / "README.md")
    parser.add_argument("--results", type=Path, default=root / "results")
    parser.add_argument("--check", action="store_true",
                        help="only check; exit 1 when README.md is out of date")
    args = parser.parse_args(argv)
    try:
        text = args.readme.read_text(encoding="utf-8")
        new = update_readme(text, args.results)
    except (OSError, ValueError) as err:
        print(f"spanetlib.paper.readme: {err}", file=sys.stderr)
        return 2
    if new == text:
        print(f"{args.readme} is up to date with {args.results}")
        return 0
    if args.check:
        print(f"{args.readme} differs from what {args.results} gives; run "
              "`python -m spanetlib.paper.readme`", file=sys.stderr)
        return 1
    atomic_write_text(args.readme, new)
    print(f"rewrote the result regions of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
