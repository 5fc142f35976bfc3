"""Background estimates of phone-like rain clips against their truth (issue 11's goals).

For every synthetic clip (``spanetlib.synthesis.rain.CLIP_PRESETS``, seeded, no downloads) the clip
estimator (``spanetlib.pipeline.clip_estimate.estimate_clip``) runs with ``align`` "off", "on",
"auto", and with the clip's true camera motion and exposure ("true": perfectly aligned
frames, same warp). Printed per clip and mode:

* **estimate PSNR** (dB) of the period holding the reference frame, rendered in the
  reference frame's pixels and exposure, against that scene state's rain-free truth, over
  the pixels every frame covers under the true motion;
* for "auto", the **pairs**: frames paired / N, pairs below 30 dB (each pair: the clean
  image the estimator gives for that frame against the frame's own rain-free truth, over the
  pixels it marks usable), the worst pair, and what a naive export does (every frame paired
  with ``estimate_background`` of all frames, whole frame).

Goals (verdicts printed): auto within 3 dB of "true" on hand-held and pan clips; auto no
more than 0.5 dB below "off" on clips from a static camera; on every clip zero pairs below
30 dB and at least a quarter of the frames paired. ``--speed`` times the estimator on 200
frames of 720p against ``estimate_background`` alone on the same frames.

    python benchmarks/bench_clips.py                 # 180 x 240, 60 frames per clip
    python benchmarks/bench_clips.py --size 96 128 --frames 30 --clips static parked-leaves
    python benchmarks/bench_clips.py --speed         # + 200 x 720p timing
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from spanetlib.pipeline.alignment import Motion, footprint_mask
from spanetlib.pipeline.background import estimate_background
from spanetlib.pipeline.clip_estimate import ClipEstimate, estimate_clip
from spanetlib.synthesis.rain import CLIP_PRESETS, RainClip, make_rain_clip

CLIPS = ("static", "passing", "handheld", "pan", "parked-leaves", "flicker", "light-switch",
         "dense", "few-frames")
MOVING = ("handheld", "pan")  # goal: auto within 3 dB of "true"
STATIC_CAMERA = ("static", "passing", "dense", "few-frames")  # goal: auto >= off - 0.5 dB
MODES = ("off", "on", "auto", "true")


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR (dB, peak 255) of two uint8-scale images over ``mask`` (all pixels if None)."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        d = d[mask]
    if d.size == 0:
        return float("nan")
    mse = float(d.mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def true_motion(clip: RainClip, reference: int) -> Motion:
    """The clip's camera motion and exposure relative to ``reference``, as a Motion."""
    gain = clip.gains / clip.gains[reference]
    offset = 255.0 * (clip.offsets - gain * clip.offsets[reference])
    return Motion.from_matrices(clip.true_motion(reference), clip.frames.shape[1:3], reference,
                                gain, offset)


def estimate_psnr(clip: RainClip, result: ClipEstimate, covered: np.ndarray) -> float:
    """PSNR of the period that holds (or is nearest to) the reference frame."""
    r = result.motion.reference
    k = int(np.argmin([0 if seg.start <= r < seg.stop else min(abs(seg.start - r),
                                                               abs(seg.stop - 1 - r))
                       for seg in result.segments]))
    states = clip.state[result.segments[k].frames]
    state = int(np.bincount(states[states >= 0]).argmax())
    return psnr(result.clean_for_frame(r, k), clip.state_truth(state, r),
                covered & result.segments[k].valid)


def pair_psnrs(clip: RainClip, result: ClipEstimate) -> np.ndarray:
    """PSNR of every pair the estimator allows, over its usable pixels."""
    return np.array([psnr(result.clean_for_frame(i), clip.truth[i], result.usable_mask(i))
                     for i, _ in result.pairs()])


def run_clip(name: str, size: tuple[int, int], n_frames: int, seed: int) -> dict:
    spec = CLIP_PRESETS[name]
    spec = spec.replace(size=size, n_frames=n_frames if name != "few-frames" else spec.n_frames)
    clip = make_rain_clip(spec, seed)
    n = len(clip.frames)
    reference = n // 2
    moves = clip.true_motion(reference)
    covered = np.ones(size, bool)
    for m in moves:
        covered &= footprint_mask(m, size)
    row: dict = {"clip": name, "n": n}
    for mode in MODES:
        start = time.perf_counter()
        if mode == "true":
            result = estimate_clip(clip.frames, "on", motion=true_motion(clip, reference))
        else:
            result = estimate_clip(clip.frames, mode, reference=reference)
        row[f"{mode}_s"] = time.perf_counter() - start
        row[mode] = estimate_psnr(clip, result, covered)
        if mode == "auto":
            pairs = pair_psnrs(clip, result)
            row["kept"] = len(pairs)
            row["below30"] = int((pairs < 30.0).sum())
            row["worst"] = float(pairs.min()) if len(pairs) else float("nan")
            row["periods"] = len(result.segments)
    naive = estimate_background(clip.frames).image
    naive_pairs = np.array([psnr(naive, clip.truth[i]) for i in range(n)])
    row["naive_below30"] = int((naive_pairs < 30.0).sum())
    row["naive_worst"] = float(naive_pairs.min())
    return row


def verdicts(row: dict) -> list[str]:
    out = []
    if row["clip"] in MOVING:
        ok = row["auto"] >= row["true"] - 3.0
        out.append(f"auto >= true - 3 dB: {'PASS' if ok else 'FAIL'}")
    if row["clip"] in STATIC_CAMERA:
        ok = row["auto"] >= row["off"] - 0.5
        out.append(f"auto >= off - 0.5 dB: {'PASS' if ok else 'FAIL'}")
    ok = row["below30"] == 0 and row["kept"] >= row["n"] / 4
    out.append(f"pairs: 0 below 30 dB, >= 1/4 kept: {'PASS' if ok else 'FAIL'}")
    return out


def speed(seed: int) -> None:
    spec = CLIP_PRESETS["handheld"].replace(size=(720, 1280), n_frames=200, supersample=1)
    print(f"\nspeed: 200 frames of 720p, hand-held ({os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}); generating the clip ...", flush=True)
    frames = make_rain_clip(spec, seed).frames
    estimate_clip(frames[:3])  # compile / load the numba kernels
    timings = {}
    for label, fn in (("estimate_background (Eqs. 2-4 only)", lambda: estimate_background(frames)),
                      ("estimate_clip auto", lambda: estimate_clip(frames, "auto")),
                      ("estimate_clip off", lambda: estimate_clip(frames, "off"))):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        timings[label] = (time.perf_counter() - wall, time.process_time() - cpu)
    base = timings["estimate_background (Eqs. 2-4 only)"][0]
    for label, (wall, cpu) in timings.items():
        print(f"  {label:40s} {wall:7.1f} s wall {cpu:7.1f} s CPU  ({wall / base:5.1f}x)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak resident memory {peak:.0f} MiB (frames: {frames.nbytes / 2**20:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(180, 240), metavar=("H", "W"))
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIP_PRESETS))
    parser.add_argument("--speed", action="store_true", help="also time 200 frames of 720p")
    args = parser.parse_args()
    size = tuple(args.size)
    print(f"clips of {size[0]} x {size[1]}, {args.frames} frames, seed {args.seed}; estimate "
          "PSNR (dB) against the scene state's truth in the reference frame; pairs from auto")
    header = (f"{'clip':14s} {'off':>6s} {'on':>6s} {'auto':>6s} {'true':>6s} | "
              f"{'periods':>7s} {'paired':>7s} {'<30dB':>5s} {'worst':>6s} | "
              f"{'naive <30dB':>11s} {'worst':>6s} | {'auto s':>6s}")
    print(header)
    print("-" * len(header))
    failures = 0
    for name in args.clips:
        row = run_clip(name, size, args.frames, args.seed)
        print(f"{name:14s} {row['off']:6.1f} {row['on']:6.1f} {row['auto']:6.1f} "
              f"{row['true']:6.1f} | {row['periods']:7d} {row['kept']:3d}/{row['n']:<3d} "
              f"{row['below30']:5d} {row['worst']:6.1f} | {row['naive_below30']:5d}/{row['n']:<5d}"
              f" {row['naive_worst']:6.1f} | {row['auto_s']:6.1f}", flush=True)
        for verdict in verdicts(row):
            failures += verdict.endswith("FAIL")
            print(f"{'':14s} {verdict}")
    print(f"\n{failures} goal(s) failed")
    if args.speed:
        speed(args.seed)


if __name__ == "__main__":
    main()
