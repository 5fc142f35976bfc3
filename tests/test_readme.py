"""README.md's result regions are what results/ gives (python -m spanetlib.paper.readme)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from spanetlib.paper import readme

ROOT = Path(__file__).resolve().parents[1]


def test_readme_agrees_with_the_results_files():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.update_readme(text, ROOT / "results") == text, (
        "README.md differs from results/: run `python -m spanetlib.paper.readme`")


def test_every_region_is_in_the_readme():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in readme.REGIONS:
        assert f"<!-- results: {name} -->" in text and f"<!-- /results: {name} -->" in text


def test_a_changed_result_changes_the_readme(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results, ignore=shutil.ignore_patterns("notebooks"))
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    md = (results / "table3.md").read_text().splitlines()
    row = next(i for i, line in enumerate(md) if line.startswith("| SPANet (ours) |"))
    cells = md[row].split(" | ")
    cells[1] = "99.99"
    md[row] = " | ".join(cells)
    (results / "table3.md").write_text("\n".join(md) + "\n")
    rows = pd.read_csv(results / "claims_table4.csv")
    rows.loc[0, "verdict"] = rows.loc[0, "claim verdict"] = "changed verdict"
    rows.to_csv(results / "claims_table4.csv", index=False)
    times = pd.read_csv(results / "reproduce_times.csv")
    times.loc[times["profile"] == "quick", "seconds"] = 60.0
    times.to_csv(results / "reproduce_times.csv", index=False)
    new = readme.update_readme(text, results)
    assert "| SPANet (ours) | 99.99 |" in new and "| SPANet (ours) | 99.99 |" not in text
    assert ": changed verdict**" in new and "changed verdict" not in text
    n = int((times["profile"] == "quick").sum())
    assert f"| **all** | **{n:.1f}** | |" in new


@pytest.mark.parametrize(("minutes", "verdict"), [(7.0, "within the 60 minutes"),
                                                  (8.0, "**over** the 60 minutes")])
def test_reproduce_times_say_whether_the_hour_is_met(tmp_path, minutes, verdict):
    rows = [{"profile": "quick", "notebook": name, "seconds": minutes * 60, "finished": "x",
             "cpu": "CPU", "cores": 2} for name in readme.NOTEBOOKS]
    pd.DataFrame(rows).to_csv(tmp_path / "reproduce_times.csv", index=False)
    text = readme.render_region("reproduce-times", tmp_path)
    assert verdict in text and f"All {len(rows)} notebooks: {minutes * len(rows):.1f}" in text
    pd.DataFrame(rows[:-1]).to_csv(tmp_path / "reproduce_times.csv", index=False)
    text = readme.render_region("reproduce-times", tmp_path)
    assert f"Not timed with this profile: {readme.NOTEBOOKS[-1]}" in text and verdict not in text


def test_main_writes_and_checks(tmp_path, capsys):
    page = tmp_path / "README.md"
    page.write_text("Dense: <!-- results: table1-dense -->stale<!-- /results: table1-dense -->\n")
    args = ["--readme", str(page), "--results", str(ROOT / "results")]
    assert readme.main([*args, "--check"]) == 1
    assert readme.main(args) == 0
    assert "temporal median reaches" in page.read_text()
    assert readme.main([*args, "--check"]) == 0
    assert "up to date" in capsys.readouterr().out


@pytest.mark.parametrize(("text", "match"), [
    ("<!-- results: table1 -->", "is not closed"),
    ("<!-- /results: table1 -->", "without its start"),
    ("<!-- results: table1 --><!-- results: table2 -->", "starts inside region 'table1'"),
    ("<!-- results: nope --><!-- /results: nope -->", "unknown README region 'nope'"),
])
def test_bad_markers(text, match):
    with pytest.raises(ValueError, match=match):
        readme.update_readme(text, ROOT / "results")


def test_missing_results_file(tmp_path):
    with pytest.raises(ValueError, match="results file not found"):
        readme.render_region("table2", tmp_path)
