"""Validation of the no-reference quality score (``spanetlib.pipeline.quality.scene_quality``).

The score predicts, with no clean image, how close a clip estimate
(``spanetlib.pipeline.clip_estimate.estimate_clip``) is to the truth. Here it is checked on
synthetic phone-like clips whose truth is known (``spanetlib.synthesis.rain.make_rain_clip``): every
preset (static, passing, hand-held, pan, parked objects, flicker, light switch, cloud, sparse to
very dense rain, haze, few frames, junction) and deliberately bad cases (too few frames for
dense rain, align "off" on moving clips, haze-like veils of several strengths and densities).

**True PSNR** of a period: its estimate rendered in one of its own frames (the used frame of
the period's majority scene state nearest the reference frame; ``clean_for_frame``) against
that state's rain-free rendering in that frame (``RainClip.state_truth``), over the period's
valid region in that frame. A scene's true PSNR is the **minimum over its periods** (every
period's pairs are exported), and its score is its worst period's. A scene with no period has
no estimate: it counts as a negative (it cannot be accepted) and is left out of the
correlation.

**Split.** The model's gains (``QualityModel``) and ``QUALITY_ACCEPT_THRESHOLD`` were chosen
on the *fit* clips (seeds 0-1, photos coffee and chelsea, 96 x 128) with ``--fit``; the
numbers to quote are the *report* clips' (seeds 2-5, other photos: astronaut, rocket,
motorcycle_left, grass; 96 x 128 to 144 x 192), never used for choosing anything (nor for
designing the cues: that used seeds 0-1 on coffee). Both are printed.

**Goals** (report clips): Spearman correlation of score and true PSNR >= 0.8; auto-accept for
"true PSNR >= 40 dB" with precision >= 0.95 at recall >= 0.5 (the point of auto-accept is
never accepting a bad scene; a person reviews the rest); every haze-like and every "off"-on-a-
moving-camera clip refused with a reason.

Per-clip rows go to ``results/quality_validation.csv`` (the figure:
``spanetlib.paper.figures.plot_quality_validation``). Each clip's cues and truth are cached under
``results/work/bench_quality/`` keyed by the clip and the source of the code that makes them,
so a second run (or ``--fit``) is quick.

    python benchmarks/bench_quality.py             # fit + report clips: ~7 min on 2 free cores
    python benchmarks/bench_quality.py --fit       # refit on the fit clips, report with that
    python benchmarks/bench_quality.py --split report --seeds 2 --variants static haze pan-off
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import inspect
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import optimize, stats

from spanetlib.io.files import atomic_write, atomic_write_text
from spanetlib.pipeline import alignment, background, clip_estimate
from spanetlib.pipeline.clip_estimate import ClipEstimate, estimate_clip
from spanetlib.pipeline.quality import (
    QUALITY_ACCEPT_THRESHOLD,
    QUALITY_MODEL,
    QualityModel,
    period_cues,
    quality_from_cues,
)
from spanetlib.pipeline.selection import AUTO_THRESHOLD
from spanetlib.synthesis import rain
from spanetlib.synthesis.rain import CLIP_PRESETS, RainClip, make_rain_clip

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_clips import psnr  # noqa: E402

GOOD_DB = 40.0  # a scene is good when its true PSNR reaches this
GOALS = {"spearman": 0.8, "precision": 0.95, "recall": 0.5}

# name: (preset, ClipSpec changes, align mode). n_frames 40 unless the variant sets it.
VARIANTS: dict[str, tuple[str, dict, str]] = {
    **{name: (name, {}, "auto") for name in CLIP_PRESETS},
    "dense-8": ("dense", {"n_frames": 8}, "auto"),
    "dense-14": ("dense", {"n_frames": 14}, "auto"),
    "very-dense-12": ("very-dense", {"n_frames": 12}, "auto"),
    "very-dense-20": ("very-dense", {"n_frames": 20}, "auto"),
    "normal-5": ("static", {"n_frames": 5}, "auto"),
    "normal-12": ("static", {"n_frames": 12}, "auto"),
    "sparse-6": ("sparse", {"n_frames": 6}, "auto"),
    "handheld-off": ("handheld", {}, "off"),
    "pan-off": ("pan", {}, "off"),
    "haze-light": ("haze", {"haze": 0.08}, "auto"),
    "haze-normal": ("haze", {"haze": 0.15, "density": "normal"}, "auto"),
    "haze-handheld": ("haze", {"haze": 0.12, "shake_px": 2.5, "shake_deg": 0.3}, "auto"),
}
HAZE = tuple(v for v, (p, ch, _) in VARIANTS.items() if p == "haze" or ch.get("haze"))
OFF_MOVING = ("handheld-off", "pan-off")
OWN_FRAMES = ("few-frames", "junction")  # presets whose frame count is their point

# split: (seed, photo, size) runs.
SPLITS: dict[str, tuple[tuple[int, str, tuple[int, int]], ...]] = {
    "fit": ((0, "coffee", (96, 128)), (1, "chelsea", (96, 128))),
    "report": ((2, "astronaut", (96, 128)), (3, "rocket", (120, 160)),
               (4, "motorcycle_left", (144, 192)), (5, "grass", (120, 160))),
}
CACHE = Path("results/work/bench_quality")
CSV_PATH = Path("results/quality_validation.csv")


def code_version() -> str:
    """Hash of the code that makes a clip's cues and truth (not the model that scores them)."""
    parts = [Path(m.__file__).read_bytes() for m in (rain, alignment, background, clip_estimate)]
    parts.append(inspect.getsource(period_cues).encode())
    return hashlib.sha256(b"".join(parts)).hexdigest()[:16]


def period_truth(clip: RainClip, result: ClipEstimate, k: int) -> float:
    """True PSNR of period ``k`` (see the module docstring)."""
    seg = result.segments[k]
    states = clip.state[seg.frames]
    if not (states >= 0).any():
        return float("nan")
    state = int(np.bincount(states[states >= 0]).argmax())
    own = seg.frames[states == state]
    j = int(own[np.argmin(np.abs(own - result.motion.reference))])
    return psnr(result.clean_for_frame(j, k), clip.state_truth(state, j),
                 result.valid_for_frame(j, k))


def run_case(variant: str, seed: int, photo: str, size: tuple[int, int]) -> dict:
    """Cues and truth of one clip: ``periods`` (cue dicts), ``truth`` (dB per period), ..."""
    preset, changes, align = VARIANTS[variant]
    changes = {"n_frames": 40, **changes} if variant not in OWN_FRAMES else dict(changes)
    spec = CLIP_PRESETS[preset].replace(size=size, background=photo, **changes)
    clip = make_rain_clip(spec, seed)
    start = time.perf_counter()
    result = estimate_clip(clip.frames, align)
    seconds = time.perf_counter() - start
    return {"periods": [period_cues(result, k) for k in range(len(result.segments))],
            "truth": [period_truth(clip, result, k) for k in range(len(result.segments))],
            "paired_share": float((result.membership >= 0).mean()),
            "n_frames": len(clip.frames), "seconds": seconds}


def cached_case(variant: str, seed: int, photo: str, size: tuple[int, int], version: str,
                cache: Path) -> dict:
    key = hashlib.sha256(json.dumps([variant, VARIANTS[variant], seed, photo, list(size),
                                     version]).encode()).hexdigest()[:20]
    path = cache / f"{variant}-{seed}-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    row = run_case(variant, seed, photo, size)
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(row))
    return row


def collect(split: str, seeds: list[int] | None, variants: list[str], cache: Path
            ) -> list[dict]:
    version = code_version()
    runs = [r for r in SPLITS[split] if seeds is None or r[0] in seeds]
    cases = []
    total = len(runs) * len(variants)
    start = time.perf_counter()
    for seed, photo, size in runs:
        for variant in variants:
            data = cached_case(variant, seed, photo, size, version, cache)
            cases.append({"split": split, "variant": variant, "seed": seed, "photo": photo,
                          "size": f"{size[0]}x{size[1]}", "align": VARIANTS[variant][2],
                          **data})
            print(f"\r  {split}: {len(cases)}/{total} clips, {time.perf_counter() - start:.0f} s",
                  end="", flush=True)
    print()
    return cases


def judge(cases: list[dict], model: QualityModel, threshold: float) -> list[dict]:
    """One row per clip: truth, score, decision, reasons and the worst period's cues."""
    rows = []
    for case in cases:
        quality = quality_from_cues(case["periods"], case["paired_share"], model, threshold)
        truth = [t for t in case["truth"] if math.isfinite(t)]
        true_db = min(truth) if truth else float("nan")
        rows.append({
            "split": case["split"], "variant": case["variant"],
            "preset": VARIANTS[case["variant"]][0], "seed": case["seed"],
            "photo": case["photo"], "size": case["size"], "align": case["align"],
            "n_frames": case["n_frames"], "periods": len(case["periods"]),
            "true_psnr": true_db,
            "true_psnr_periods": ";".join(f"{t:.2f}" for t in case["truth"]),
            "score": quality.score, "accept": quality.accept,
            "split_half_rule": bool(case["periods"]) and all(
                c["split_half_changed"] <= AUTO_THRESHOLD for c in case["periods"]),
            "good": bool(true_db >= GOOD_DB),
            "reasons": " | ".join(quality.reasons), "seconds": case["seconds"],
            "period_scores": quality.period_scores, "period_truth": case["truth"],
            **{f"cue_{k}": v for k, v in quality.cues.items()},
        })
    return rows


def summary(rows: list[dict]) -> dict:
    scored = [r for r in rows if math.isfinite(r["true_psnr"])]
    rho = stats.spearmanr([r["score"] for r in scored], [r["true_psnr"] for r in scored])[0] \
        if len(scored) > 2 else float("nan")
    tp = sum(r["accept"] and r["good"] for r in rows)
    fp = sum(r["accept"] and not r["good"] for r in rows)
    fn = sum(not r["accept"] and r["good"] for r in rows)
    refused = [r for r in rows if r["variant"] in HAZE + OFF_MOVING]
    rule_tp = sum(r["split_half_rule"] and r["good"] for r in rows)
    rule_fp = sum(r["split_half_rule"] and not r["good"] for r in rows)
    per_period = [(p, t) for r in rows for p, t in zip(r["period_scores"], r["period_truth"],
                                                      strict=True) if math.isfinite(t)]
    return {"clips": len(rows), "no_estimate": len(rows) - len(scored), "spearman": rho,
            "spearman_periods": stats.spearmanr(*zip(*per_period, strict=True))[0]
            if len(per_period) > 2 else float("nan"),
            "good": tp + fn, "accepted": tp + fp, "tp": tp, "fp": fp,
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "rule_precision": rule_tp / (rule_tp + rule_fp) if rule_tp + rule_fp
            else float("nan"),
            "rule_recall": rule_tp / (tp + fn) if tp + fn else float("nan"),
            "rule_fp": rule_fp,
            "bad_refused": all(not r["accept"] and r["reasons"] for r in refused),
            "n_bad_cases": len(refused)}


def print_table(rows: list[dict]) -> None:
    head = (f"{'variant':15s} {'seed':>4s} {'size':>7s} {'per':>3s} {'true dB':>7s} "
            f"{'pred dB':>7s} {'score':>5s} {'acc':>3s}  reasons")
    print(head)
    print("-" * len(head))
    for r in rows:
        verdict = "yes" if r["accept"] else "no"
        flag = " <- accepted below 40 dB" if r["accept"] and not r["good"] else ""
        pred = r.get("cue_predicted_psnr", float("nan"))
        print(f"{r['variant']:15s} {r['seed']:4d} {r['size']:>7s} {r['periods']:3d} "
              f"{r['true_psnr']:7.1f} {pred:7.1f} {r['score']:5.2f} {verdict:>3s}  "
              f"{r['reasons'][:90]}{flag}")


def print_summary(name: str, s: dict, goals: bool) -> int:
    print(f"\n{name}: {s['clips']} clips ({s['no_estimate']} without an estimate), "
          f"{s['good']} good (true >= {GOOD_DB:.0f} dB), {s['accepted']} accepted "
          f"({s['fp']} of them bad)")
    print(f"  Spearman(score, true PSNR) = {s['spearman']:.3f} per scene "
          f"({s['spearman_periods']:.3f} per period)   precision = {s['precision']:.3f}   "
          f"recall = {s['recall']:.3f}   haze / off-on-moving refused with a reason: "
          f"{'all' if s['bad_refused'] else 'NOT ALL'} ({s['n_bad_cases']})")
    print(f"  for comparison, the split-half rule alone (every period's interleaved half "
          f"estimates differ by > 12 levels on <= {100 * AUTO_THRESHOLD:.1f} % of the pixels): "
          f"precision {s['rule_precision']:.3f}, recall {s['rule_recall']:.3f} "
          f"({s['rule_fp']} bad accepted)")
    if not goals:
        return 0
    checks = [(f"Spearman >= {GOALS['spearman']}", s["spearman"] >= GOALS["spearman"]),
              (f"precision >= {GOALS['precision']}", s["precision"] >= GOALS["precision"]),
              (f"recall >= {GOALS['recall']}", s["recall"] >= GOALS["recall"]),
              ("every haze / off-on-moving clip refused with a reason", s["bad_refused"])]
    for label, ok in checks:
        print(f"  goal {label}: {'PASS' if ok else 'FAIL'}")
    return sum(not ok for _, ok in checks)


def fit_model(cases: list[dict]) -> tuple[QualityModel, float, float]:
    """Gains minimizing the dB error of the predicted PSNR over the fit clips' periods.

    Periods refused whatever their score (not aligned, a veil, too few frames) are left out
    (the veil enters at its lower bound, not fitted); truth above 55 dB counts as 55 (nothing
    above matters). The threshold is the score of ``40 dB + 1.645 s``, with ``s`` the spread
    (1.4826 median absolute deviation, dB) of the prediction errors of the periods whose
    truth lies within 35-50 dB: a period predicted there is good with about 95 % confidence
    if the errors were normal.

    Returns:
        The fitted model, the threshold and ``s``.
    """
    periods, truth = [], []
    for case in cases:
        for cues, t in zip(case["periods"], case["truth"], strict=True):
            if math.isfinite(t) and cues["aligned"] and cues["frames"] >= \
                    QUALITY_MODEL.min_frames and cues["veil_rms"] <= QUALITY_MODEL.veil_limit:
                periods.append(cues)
                truth.append(min(t, 55.0))
    truth = np.array(truth)
    names = ("floor", "rain_gain", "warp_gain", "smear_gain")

    def model_of(x: np.ndarray) -> QualityModel:
        return dataclasses.replace(QUALITY_MODEL, **dict(zip(names, map(float, x),
                                                             strict=True)))

    def predicted(m: QualityModel) -> np.ndarray:
        return np.array([m.predicted_psnr(m.errors(c)) for c in periods])

    x0 = np.array([getattr(QUALITY_MODEL, n) for n in names])
    fit = optimize.least_squares(lambda x: predicted(model_of(x)) - truth, x0,
                                 bounds=(0.0, 10.0), loss="soft_l1", f_scale=2.0)
    model = model_of(fit.x)
    near = (truth >= 35.0) & (truth <= 50.0)
    error = (predicted(model) - truth)[near]
    spread = float(1.4826 * np.median(np.abs(error - np.median(error))))
    return model, model.score(model.target_psnr + 1.645 * spread), spread


def write_csv(rows: list[dict], path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k not in ("period_scores", "period_truth")}
            for r in rows]
    columns = list(dict.fromkeys(k for r in rows for k in r))

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                                 for k, v in r.items()})

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=("both", *SPLITS), default="both",
                        help="clips to run (--fit always runs the fit clips too)")
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds of the split(s)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--fit", action="store_true",
                        help="refit the model's gains and threshold on the fit clips and "
                             "report with them (the library's model is printed for comparison)")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--csv", type=Path, default=CSV_PATH)
    parser.add_argument("--quiet", action="store_true", help="no per-clip table")
    args = parser.parse_args()
    print(f"quality-score validation ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}); "
          f"good = true PSNR >= {GOOD_DB:.0f} dB; scene = worst period")
    splits = list(SPLITS) if args.split == "both" or args.fit else [args.split]
    cases = {s: collect(s, args.seeds, args.variants, args.cache) for s in splits}
    model, threshold = QUALITY_MODEL, QUALITY_ACCEPT_THRESHOLD
    print(f"library model: {QUALITY_MODEL}, threshold {QUALITY_ACCEPT_THRESHOLD}")
    if args.fit:
        model, threshold, spread = fit_model(cases["fit"])
        print(f"fitted model:  {model}, threshold {threshold:.4f} (prediction error spread "
              f"{spread:.2f} dB near 40 dB)")
    failures = 0
    all_rows = []
    for split in splits:
        rows = judge(cases[split], model, threshold)
        all_rows += rows
        if not args.quiet:
            runs = ", ".join(f"seed {s} {p} {h}x{w}" for s, p, (h, w) in SPLITS[split])
            print(f"\n{split} clips ({runs})")
            print_table(rows)
        failures += print_summary(f"{split} clips", summary(rows), goals=split == "report")
    write_csv(all_rows, args.csv)
    print(f"\nwrote {args.csv} ({len(all_rows)} rows); {failures} goal(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
