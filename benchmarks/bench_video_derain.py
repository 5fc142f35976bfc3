"""Deraining whole clips: per-frame SPANet, the temporal estimate alone and the hybrid (issue 14).

On the project's synthetic clips with known rain-free frames
(``spanetlib.synthesis.rain.CLIP_PRESETS``: static camera, hand-held, passing objects, a
parked object leaving, exposure flicker, a hand-held clip with a logo and timestamp burned
into the frame, foliage with bright sky and lights moving in it; seeded, no downloads),
``spanetlib.paper.video_experiment.compare_methods`` scores the rain input, the temporal
estimate alone, per-frame SPANet and the hybrid (``derain_clip``) with each weights:

* **PSNR** (dB): mean over frames, whole frame, against each frame's rain-free truth;
* **in objects**: PSNR pooled over the pixels of the moving objects (clips that have them);
* **in overlays** / **in bright**: PSNR pooled inside the graphics fixed to the frame and
  inside the bright content that moves (the generator's ``overlay_alpha`` and ``bright_mask``);
* **change**: mean absolute frame-to-frame change (levels) of the output over still pixels
  (0 for a stable result; the truth's own change there is at most 1 level and is ~0);
* **SPANet share**: the mean weight of SPANet's output in the result;
* **s/frame**: seconds per frame of each method, measured side by side in one run (the
  ratios hybrid / per-frame SPANet are printed: goals <= 0.35 on moving-camera clips, <= 0.05
  on a static clip);
* **peak MB**: the process's peak resident memory while the method ran (frames included).

Sizes: ``--sizes 480x640 1080x1920`` (default: both) with ``--frames 30 28`` (one count per
size, or one for all; default 30 at 640 x 480, a length users meet, so the window's estimate
is shared as in a real clip, and at 1080p the window ``spanet derain-video`` itself takes
there, ``auto_window``; one window each) and ``--spanet-frames 30 5``: per-frame SPANet, seconds
a frame at 1080p, runs on that many frames spread over the clip (each frame is derained on its
own, so those outputs are what a run over every frame gives), and every method is scored on
those same frames (``compare_methods(spanet_frames=...)``);
``--quick``: a tiny run (120 x 160, 8 frames, four clips). The speed table gives each size's
cost of a minute of 30 fps footage (minutes) from the hybrid's seconds per frame.

``--cli-memory N [N ...]``: only the memory of ``spanet derain-video`` as a user runs it (each
clip of each size written to a lossless video of N frames, derained by the command in a
child process, ``--weights synthetic``, the command's own window for the frame size unless
``--window`` is given: ``auto_window``); its peak resident memory is the child's own
(``ru_maxrss`` of a process forked fresh by a small launcher, :func:`_own_peak_kib`:
interpreter, torch and the model included, nothing of this process's, whose clips in memory
a child spawned directly would report as its own peak). The goal: under 1.5 GB at 1080p
whatever the clip's length. Written to ``results/video_derain_memory.md``.

``--real``: only the real clips of ``../shared/real-clips/`` (when the folder is there; no
truth, so speed alone): the hybrid on the clip's first ``--real-frames`` frames (default 60,
the command's own window for the frame size and tile) and per-frame SPANet on its first
:data:`~spanetlib.derain.video.MIN_FRAMES` (as ``spanet derain`` runs a frame: the tile from the
memory available), official weights, seconds per frame side by side,
their ratio, and the shares of the output SPANet made, of the pixels it read, and of the
specks taken from the frame. Written to ``results/video_derain_real.md`` (numbers only: the
clips are not ours to copy).

Goals (verdicts printed, per clip and over all clips): the hybrid at least 10 dB above the
better per-frame SPANet over whole frames (required of every steady-camera clip), and within
1 dB of it inside the moving objects, the overlays and the bright moving content.
Writes ``results/video_derain.csv`` (every clip and method) and ``results/video_derain.md``
(one row per method, what README.md shows; ``python -m spanetlib.paper.readme`` copies it).

    python benchmarks/bench_video_derain.py                   # 640 x 480 (30) and 1080p (28 frames)
    python benchmarks/bench_video_derain.py --quick
    python benchmarks/bench_video_derain.py --sizes 120x160 --frames 40  # the old table
    python benchmarks/bench_video_derain.py --sizes 1080x1920 --clips handheld --cli-memory 20 60
    python benchmarks/bench_video_derain.py --real
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from bench_footage import REAL_CLIPS, real_clips

from spanetlib.derain.video import DEFAULT_WINDOW, MIN_FRAMES, auto_window
from spanetlib.paper.video_experiment import (
    compare_methods,
    goal_verdicts,
    methods_caption,
    methods_view,
    synthetic_clips,
    write_methods_table,
)
from spanetlib.synthesis.rain import CLIP_PRESETS

CLIPS = ("static", "handheld", "passing", "parked-leaves", "flicker", "handheld-overlay",
         "bright-foliage")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["480x640", "1080x1920"],
                        metavar="HxW", help="clip sizes (default: 480x640 1080x1920)")
    parser.add_argument("--frames", type=int, nargs="+", default=[30, 28], metavar="N",
                        help="frames per clip: one count per size, or one for all "
                        "(default: 30 28)")
    parser.add_argument("--spanet-frames", type=int, nargs="+", default=[30, 5], metavar="N",
                        help=f"frames per clip per-frame SPANet runs on and every method is "
                        f"scored on (spread over the clip, >= {MIN_FRAMES}): one count per "
                        "size, or one for all (default: 30 5)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny run: 120x160, 8 frames, static, handheld and the overlay "
                        "and bright-foliage clips, synthetic weights")
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIP_PRESETS))
    parser.add_argument("--weights", nargs="+", default=["synthetic", "official"])
    parser.add_argument("--window", type=int, default=None,
                        help=f"frames per window (default: {DEFAULT_WINDOW}; with --cli-memory "
                        "the command's own choice for the frame size, auto_window)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=ROOT / "results",
                        help="folder for video_derain.csv/.md (default: the checkout's results/)")
    parser.add_argument("--no-write", action="store_true", help="only print")
    parser.add_argument("--cli-memory", type=int, nargs="+", metavar="N",
                        help="only the peak memory of `spanet derain-video` on clips of N "
                        "frames (a child process each) -> results/video_derain_memory.md")
    parser.add_argument("--speed-only", action="store_true",
                        help="write only video_derain_speed.csv/.md (keep notebook 08's "
                        "quality table, video_derain.csv/.md, as it is)")
    parser.add_argument("--real", action="store_true",
                        help="only the real clips of ../shared/real-clips (speed, no truth) -> "
                        "results/video_derain_real.md")
    parser.add_argument("--real-frames", type=int, default=60, metavar="N",
                        help="frames of each real clip the hybrid derains (default 60)")
    args = parser.parse_args()

    if args.quick:
        args.sizes, args.frames, args.spanet_frames = ["120x160"], [8], [8]
        args.clips = ["static", "handheld", "handheld-overlay", "bright-foliage"]
        args.weights = ["synthetic"]
    if args.cli_memory and min(args.cli_memory) < MIN_FRAMES:
        parser.error(f"--cli-memory: clips of at least {MIN_FRAMES} frames, got "
                     f"{min(args.cli_memory)}")
    if args.real_frames < MIN_FRAMES:
        parser.error(f"--real-frames: at least {MIN_FRAMES}, got {args.real_frames}")
    if args.real:
        real = real_speed(args.real_frames, args.window)
        if real.empty:
            sys.exit(f"--real: no real clip measured (is {REAL_CLIPS} there?); nothing written")
        print(real.to_string(index=False))
        if not args.no_write:
            from spanetlib.evaluation.evaluate import format_markdown
            from spanetlib.io.files import atomic_write_text
            from spanetlib.paper.reproduce import cpu_name

            caption = (f"`benchmarks/bench_video_derain.py --real` on {cpu_name()}, "
                       f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}: the real clips "
                       "of `../shared/real-clips/` (not part of the project), official weights; "
                       f"hybrid on the first {args.real_frames} frames (window "
                       f"{args.window or 'the command default (auto_window)'}, tile the "
                       "command default (auto)), per-frame SPANet on the first "
                       f"{MIN_FRAMES} (tile as `spanet derain` picks it), side by side in one "
                       "run; SPANet "
                       "share: of the output, ran: of the pixels it read (crops with context), "
                       "specks: of the pixels taken from the frame (mean over frames).")
            atomic_write_text(args.results / "video_derain_real.md",
                              f"{caption}\n\n{format_markdown(real.round(3))}\n")
        return
    if args.cli_memory:
        memory = cli_memory(args.sizes, args.clips, args.cli_memory, args.window, args.seed)
        print(memory.to_string(index=False))
        if not args.no_write:
            from spanetlib.evaluation.evaluate import format_markdown
            from spanetlib.io.files import atomic_write_text
            from spanetlib.paper.reproduce import cpu_name

            caption = (f"`benchmarks/bench_video_derain.py --cli-memory` on {cpu_name()}, "
                       f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}: window "
                       f"{args.window or 'the command default (auto_window)'}, seed "
                       f"{args.seed}, synthetic weights; peak MB: the "
                       "resident memory of the `spanet derain-video` process (its own "
                       "ru_maxrss, through a launcher that forks it fresh), goal under 1536 "
                       "MB at 1080p.")
            atomic_write_text(args.results / "video_derain_memory.md",
                              f"{caption}\n\n{format_markdown(memory.round(2))}\n")
        return
    args.window = args.window or DEFAULT_WINDOW
    if len(args.frames) not in (1, len(args.sizes)):
        parser.error(f"--frames: expected one count or one per size ({len(args.sizes)}), got "
                     f"{len(args.frames)}")
    frames = dict(zip(args.sizes, args.frames * len(args.sizes)
                      if len(args.frames) == 1 else args.frames, strict=True))
    if len(args.spanet_frames) not in (1, len(args.sizes)):
        parser.error(f"--spanet-frames: expected one count or one per size "
                     f"({len(args.sizes)}), got {len(args.spanet_frames)}")
    if min(args.spanet_frames) < MIN_FRAMES:
        parser.error(f"--spanet-frames: at least {MIN_FRAMES}, got {min(args.spanet_frames)}")
    spanet_frames = dict(zip(args.sizes, args.spanet_frames * len(args.sizes)
                             if len(args.spanet_frames) == 1 else args.spanet_frames,
                             strict=True))
    tables = []
    start = time.perf_counter()
    for size in args.sizes:
        h, w = (int(v) for v in size.lower().split("x"))
        print(f"{len(args.clips)} clips of {frames[size]} frames, {h} x {w}, window "
              f"{args.window}, seed {args.seed}; {os.cpu_count()} CPUs, load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        clips = synthetic_clips(args.clips, (h, w), frames[size], args.seed)
        table = compare_methods(clips, weights=args.weights, window=args.window,
                                spanet_frames=spanet_frames[size]).table
        table.insert(1, "size", f"{h}x{w}")
        table.insert(2, "frames", frames[size])
        tables.append(table)
        print_speed(table)
    table = pd.concat(tables, ignore_index=True)
    pd.set_option("display.width", 220)
    print(table.drop(columns=["truth_change"]).round(3).to_string(index=False))
    print()
    # The quality table and goals: the largest size (what the README shows).
    last = table[table["size"] == table["size"].iloc[-1]].drop(columns=["size", "frames"])
    caption = methods_caption(clips, args.window)
    view = (methods_view(last) if args.no_write or args.speed_only
            else write_methods_table(last, args.results, caption))
    if not args.no_write:
        from spanetlib.io.files import atomic_write_text

        atomic_write_text(args.results / "video_derain_speed.csv", table.to_csv(index=False))
        atomic_write_text(args.results / "video_derain_speed.md", speed_markdown(table, args))
    print(view.round(2).to_string(index=False))
    print()
    print("\n".join(goal_verdicts(last)))
    print(f"\n{time.perf_counter() - start:.0f} s in all (load {os.getloadavg()[0]:.1f})"
          + ("" if args.no_write else "; wrote " + ("" if args.speed_only else
                                                    f"{args.results / 'video_derain.csv'}, .md, ")
             + f"{args.results / 'video_derain_speed.csv'} and .md"))


def cli_memory(sizes: list[str], clips: list[str], lengths: list[int], window: int | None,
               seed: int) -> pd.DataFrame:
    """Peak resident memory of ``spanet derain-video`` (a child process) per size, clip, length.

    ``window`` None: the command's default (the row gives the window it chose).
    """
    from spanetlib.io.video import VideoWriter

    rows = []
    for size in sizes:
        h, w = (int(v) for v in size.lower().split("x"))
        for clip_name in clips:
            for n in lengths:
                clip = synthetic_clips([clip_name], (h, w), n, seed)[clip_name]
                with tempfile.TemporaryDirectory() as tmp:
                    source = Path(tmp) / "clip.avi"
                    with VideoWriter(source, (h, w), 25.0) as writer:
                        for frame in clip.frames:
                            writer.write(frame)
                    del clip
                    command = [sys.executable, "-m", "spanetlib.cli", "derain-video",
                               str(source), "-o", str(Path(tmp) / "out.avi"), "--weights",
                               "synthetic", "--device", "cpu"]
                    command += [] if window is None else ["--window", str(window)]
                    log = Path(tmp) / "stderr.txt"
                    start = time.perf_counter()
                    with log.open("w") as stderr:
                        peak_kib = _own_peak_kib(command, stderr)
                    seconds = time.perf_counter() - start
                    if peak_kib is None:
                        raise SystemExit(f"spanet derain-video failed on {clip_name} {size} "
                                         f"({n} frames): {log.read_text()[-2000:]}")
                rows.append({"size": size, "clip": clip_name, "frames": n,
                             "window": auto_window((h, w)) if window is None else window,
                             "peak MB": peak_kib / 1024.0,
                             "s/frame": seconds / n})
                print(f"  {clip_name} {size}, {n} frames: peak {peak_kib / 1024:.0f} MB,"
                      f" {seconds / n:.2f} s/frame", flush=True)
    return pd.DataFrame(rows)


# Runs in a small interpreter of its own: forks, execs the command in the child and prints the
# child's ru_maxrss (KiB) from wait4; exits with the child's status.
_PEAK_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _own_peak_kib(command: list[str], stderr: object) -> int | None:
    """Peak resident memory (KiB) of ``command``'s own process; None when it failed.

    Not ``wait4`` on a child of this process: Linux carries the parent's peak into a
    vfork-spawned child's ``ru_maxrss`` (exec records the old, shared memory map's peak), so
    the command's peak read that way is at least this process's (its clips generated in
    memory: ~2.4 GB at 1080p). A small launcher forks a fresh child (a new signal
    struct, the launcher's few MB as its only inheritance) and reports that child's peak.
    """
    result = subprocess.run([sys.executable, "-c", _PEAK_LAUNCHER, *command],
                            stdout=subprocess.PIPE, stderr=stderr, text=True)
    if result.returncode != 0:
        return None
    return int(result.stdout.split()[-1])


def real_speed(n_frames: int, window: int | None) -> pd.DataFrame:
    """Per real clip: the hybrid's and per-frame SPANet's seconds per frame, side by side."""
    import numpy as np
    import torch

    from spanetlib.derain.images import auto_tile, available_memory, derain_array
    from spanetlib.derain.video import derain_clip
    from spanetlib.io.errors import InputError
    from spanetlib.io.video import read_sequence
    from spanetlib.models import load_pretrained

    model = load_pretrained("official")
    rows = []
    for name, source in real_clips():
        try:
            frames = read_sequence(source, count=n_frames, min_frames=1)
        except InputError as err:
            print(f"  {name}: skipped: {err}")
            continue
        if len(frames) < MIN_FRAMES:
            print(f"  {name}: {len(frames)} frames, fewer than {MIN_FRAMES}: skipped")
            continue
        h, w = frames.shape[1:3]
        # Both as the commands run them: derain-video's default tile, and `spanet derain`'s
        # per frame (auto_tile from the memory available now: 1080p runs whole here).
        clock = time.perf_counter()
        hybrid = derain_clip(frames, model, window=window or auto_window((h, w)), tile="auto")
        hybrid_s = (time.perf_counter() - clock) / len(frames)
        clock = time.perf_counter()
        for frame in frames[:MIN_FRAMES]:
            derain_array(model, frame, tile=auto_tile(h, w, torch.float32,
                                                      available_memory("cpu")))
        spanet_s = (time.perf_counter() - clock) / MIN_FRAMES
        records = hybrid.records
        rows.append({"clip": name, "size": f"{h}x{w}", "frames": len(frames),
                     "hybrid s/frame": hybrid_s, "SPANet s/frame": spanet_s,
                     "ratio": hybrid_s / spanet_s,
                     "SPANet share": float(np.mean([r.spanet_share for r in records])),
                     "ran": float(np.mean([r.spanet_run_share for r in records])),
                     "specks": float(np.mean([r.speck_share for r in records])),
                     "hybrid min per min (30 fps)": hybrid_s * 30.0})
        print(f"  {name} ({h} x {w}, {len(frames)} frames): hybrid {hybrid_s:.2f} s/frame, "
              f"SPANet {spanet_s:.2f}: ratio {hybrid_s / spanet_s:.3f}", flush=True)
    return pd.DataFrame(rows)


def speed_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Per clip, size and weights: seconds per frame and peak memory of the hybrid and of
    per-frame SPANet, their ratio and the goal (0.05 static, 0.35 moving camera), and both
    methods' PSNR over the clip, inside the graphics fixed to the frame and inside the bright
    content that moves (where it has them)."""
    rows = []
    for (size, frames, clip, weights), group in table[table["weights"] != ""].groupby(
            ["size", "frames", "clip", "weights"], sort=False):
        by = group.set_index("method")
        hybrid, spanet = by.loc["hybrid"], by.loc["per-frame SPANet"]
        goal = 0.05 if clip == "static" else 0.35
        ratio = hybrid["seconds_per_frame"] / spanet["seconds_per_frame"]
        rows.append({"size": size, "frames": frames,
                     "scored frames": int(spanet["scored_frames"]), "clip": clip,
                     "weights": weights,
                     "hybrid s/frame": hybrid["seconds_per_frame"],
                     "SPANet s/frame": spanet["seconds_per_frame"], "ratio": ratio,
                     "goal": goal, "met": "yes" if ratio <= goal else "no",
                     "hybrid peak MB": hybrid["peak_mb"], "SPANet peak MB": spanet["peak_mb"],
                     "hybrid dB": hybrid["psnr"], "SPANet dB": spanet["psnr"],
                     "hybrid dB in overlays": hybrid["overlay_psnr"],
                     "SPANet dB in overlays": spanet["overlay_psnr"],
                     "hybrid dB in bright": hybrid["bright_psnr"],
                     "SPANet dB in bright": spanet["bright_psnr"],
                     "hybrid min per min (30 fps)": hybrid["seconds_per_frame"] * 30.0,
                     "SPANet min per min (30 fps)": spanet["seconds_per_frame"] * 30.0})
    return pd.DataFrame(rows)


def speed_markdown(table: pd.DataFrame, args: argparse.Namespace) -> str:
    """The caption (machine, settings) and the `speed_ratios` table in markdown."""
    from spanetlib.evaluation.evaluate import format_markdown
    from spanetlib.paper.reproduce import cpu_name

    caption = (f"`benchmarks/bench_video_derain.py` on {cpu_name()}, {os.cpu_count()} cores, "
               f"{time.strftime('%Y-%m-%d')}: window {args.window}, seed {args.seed}; hybrid "
               "(`derain-video`) vs SPANet on every frame, measured side by side in one run "
               "(SPANet on the scored frames, spread over the clip, where fewer: every "
               "method's dB is over those frames); "
               "peak MB: the process's resident memory while the method ran (every clip of "
               "that size held in memory included); min per min: minutes to derain a minute of "
               "30 fps footage at that rate; dB: PSNR against the rain-free frames, over the "
               "clip, inside the graphics fixed to the frame (logo, subtitle strip) and inside "
               "the bright content that moves (sky through swaying foliage, lights).")
    return f"{caption}\n\n{format_markdown(speed_ratios(table).round(3))}\n"


def print_speed(table: pd.DataFrame) -> None:
    """Seconds per frame and peak memory per clip, and the hybrid / per-frame SPANet ratio."""
    for (clip, weights), group in table[table["weights"] != ""].groupby(["clip", "weights"],
                                                                         sort=False):
        by = group.set_index("method")
        hybrid, spanet = by.loc["hybrid"], by.loc["per-frame SPANet"]
        goal = 0.05 if clip == "static" else 0.35
        ratio = hybrid["seconds_per_frame"] / spanet["seconds_per_frame"]
        print(f"  {clip} ({weights}): hybrid {hybrid['seconds_per_frame']:.2f} s/frame, "
              f"SPANet {spanet['seconds_per_frame']:.2f} s/frame: ratio {ratio:.3f} (goal <= "
              f"{goal}) {'PASS' if ratio <= goal else 'FAIL'}; peak {hybrid['peak_mb']:.0f} MB "
              f"(hybrid), {spanet['peak_mb']:.0f} MB (SPANet)", flush=True)


if __name__ == "__main__":
    main()
