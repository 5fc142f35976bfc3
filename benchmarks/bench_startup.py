"""Startup of the §3 commands: seconds from a fresh interpreter to the first decoded frame.

Issue 21 asks the §3 commands (``estimate-background``, ``build-dataset``) to import no torch
and to reach the first frame within 1.5 s. Each run is a fresh ``python`` process that imports
what ``spanet estimate-background`` imports (``spanetlib.cli``, then
``spanetlib.pipeline.export``) and decodes the first frame of a 1080p clip
(``spanetlib.io.video.iter_frames``); the time is the parent's wall clock from starting the
process to the child's report, so it includes the interpreter's own start. This tree and the
code of an older commit (default ``cc37a6b``, before the lazy imports; extracted with
``git archive``) run interleaved, several times each; the median is reported, with which of
torch, numba and scipy the child had imported.

Printed and written to ``results/startup.csv`` and ``results/startup.md``.

    python benchmarks/bench_startup.py             # 7 runs each
    python benchmarks/bench_startup.py --runs 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from old_code import extract_package

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 1.5
CHILD = """
import json, sys
import spanetlib.cli  # noqa: F401
import spanetlib.pipeline.export  # noqa: F401
from spanetlib.io.video import iter_frames
frame = next(iter_frames(sys.argv[1]))
print(json.dumps({"shape": list(frame.shape), "file": spanetlib.cli.__file__,
                  "loaded": [m for m in ("torch", "numba", "scipy") if m in sys.modules]}))
"""


def one_run(root: Path, clip: Path) -> tuple[float, dict]:
    """Seconds from starting a child with ``root`` first on its path to its report."""
    env = dict(os.environ, PYTHONPATH=str(root))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(clip)], capture_output=True,
                         text=True, env=env, cwd=root, check=True)
    seconds = time.perf_counter() - start
    return seconds, json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per tree (default 7)")
    parser.add_argument("--old", default="cc37a6b", help="commit to compare with")
    parser.add_argument("--out", default=str(ROOT / "results"), help="results folder")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_footage import write_handheld_clip

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        clip = tmp_path / "clip.avi"
        write_handheld_clip(clip, (1080, 1920), 3)
        trees = {"new": ROOT}
        old = extract_package(args.old, tmp_path / "old")
        if old is not None:
            trees[f"old ({args.old})"] = old
        times: dict[str, list[float]] = {name: [] for name in trees}
        info: dict[str, dict] = {}
        for _ in range(args.runs):  # interleaved: both trees see the same load
            for name, root in trees.items():
                seconds, info[name] = one_run(root, clip)
                times[name].append(seconds)
    rows = []
    for name in trees:
        median = statistics.median(times[name])
        rows.append({"code": name, "runs": len(times[name]), "median_s": round(median, 3),
                     "min_s": round(min(times[name]), 3),
                     "imported": " ".join(info[name]["loaded"]) or "-",
                     "torch": "torch" in info[name]["loaded"]})
    new = rows[0]
    verdict = (f"startup goal (< {GOAL_S} s to the first frame, no torch): "
               + ("met" if new["median_s"] < GOAL_S and not new["torch"] else
                  f"NOT met (median {new['median_s']:.2f} s, torch {new['torch']})"))
    if len(rows) > 1:
        verdict += f"; old / new = {rows[1]['median_s'] / new['median_s']:.2f}x"
    for row in rows:
        print(f"{row['code']:>16}: median {row['median_s']:.2f} s, min {row['min_s']:.2f} s "
              f"over {row['runs']} runs; imported: {row['imported']}")
    print(verdict)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "startup.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# Startup of the §3 commands (`benchmarks/bench_startup.py`)", "",
             "Seconds from a fresh interpreter to the first decoded 1080p frame, importing "
             "what `spanet estimate-background` imports; median of interleaved runs.", "",
             "| code | runs | median (s) | min (s) | imported |", "|---|---:|---:|---:|---|"]
    lines += [f"| {r['code']} | {r['runs']} | {r['median_s']:.2f} | {r['min_s']:.2f} | "
              f"{r['imported']} |" for r in rows]
    lines += ["", verdict, ""]
    (out / "startup.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
