"""Deraining whole clips: per-frame SPANet, the temporal estimate alone and the hybrid (issue 14).

On the project's synthetic clips with known rain-free frames
(``spanetlib.synthesis.rain.CLIP_PRESETS``: static camera, hand-held, passing objects, a parked
object leaving, exposure flicker; seeded, no downloads), ``spanetlib.derain.video.compare_methods``
scores the rain input, the temporal estimate alone, per-frame SPANet and the hybrid
(``derain_clip``) with each weights:

* **PSNR** (dB): mean over frames, whole frame, against each frame's rain-free truth;
* **in objects**: PSNR pooled over the pixels of the moving objects (clips that have them);
* **change**: mean absolute frame-to-frame change (levels) of the output over still pixels
  (0 for a stable result; the truth's own change there is at most 1 level and is ~0);
* **SPANet share**: the mean weight of SPANet's output in the result.

Goals (verdicts printed, per clip and over all clips): the hybrid at least 10 dB above the
better per-frame SPANet over whole frames, and within 1 dB of it inside the moving objects.
Writes ``results/video_derain.csv`` (every clip and method) and ``results/video_derain.md``
(one row per method, what README.md shows; ``python -m spanetlib.paper.readme`` copies it).

    python benchmarks/bench_video_derain.py                   # 120 x 160, 40 frames, ~10 min
    python benchmarks/bench_video_derain.py --size 64 96 --frames 16 --clips static passing
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from spanetlib.derain.video import DEFAULT_WINDOW
from spanetlib.paper.video_experiment import (
    compare_methods,
    goal_verdicts,
    methods_caption,
    methods_view,
    synthetic_clips,
    write_methods_table,
)
from spanetlib.synthesis.rain import CLIP_PRESETS

CLIPS = ("static", "handheld", "passing", "parked-leaves", "flicker")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(120, 160), metavar=("H", "W"))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIP_PRESETS))
    parser.add_argument("--weights", nargs="+", default=["synthetic", "official"])
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=ROOT / "results",
                        help="folder for video_derain.csv/.md (default: the checkout's results/)")
    parser.add_argument("--no-write", action="store_true", help="only print")
    args = parser.parse_args()

    h, w = args.size
    print(f"{len(args.clips)} clips of {args.frames} frames, {h} x {w}, window {args.window}, "
          f"seed {args.seed}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    start = time.perf_counter()
    clips = synthetic_clips(args.clips, (h, w), args.frames, args.seed)
    table = compare_methods(clips, weights=args.weights, window=args.window).table
    pd.set_option("display.width", 200)
    print(table.drop(columns=["truth_change"]).round(2).to_string(index=False))
    print()
    caption = methods_caption(clips, args.window)
    view = (methods_view(table) if args.no_write
            else write_methods_table(table, args.results, caption))
    print(view.round(2).to_string(index=False))
    print()
    print("\n".join(goal_verdicts(table)))
    print(f"\n{time.perf_counter() - start:.0f} s in all (load {os.getloadavg()[0]:.1f})"
          + ("" if args.no_write else f"; wrote {args.results / 'video_derain.csv'} and .md"))


if __name__ == "__main__":
    main()
