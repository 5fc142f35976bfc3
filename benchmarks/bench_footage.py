"""§3 at the size of real footage: speed and memory of ``estimate_clip`` on long, large clips.

Clips (issue 21): a hand-held clip at 1080p (300 frames), the same at 3,000 frames, a 4K
clip (100 frames), generated here frame by frame straight into an MJPEG file (never held
whole in memory) from ``spanetlib.synthesis.rain`` (a scene photo seen through a shaking,
slightly rotating camera, rain layers, sensor noise), with the camera's truth; and the real
clips of ``../shared/real-clips/`` when that folder is there (no truth: speed, memory,
periods only).

Each measurement runs in a child process of its own (peak memory = its ``ru_maxrss``):

* **decode**: ``cv2.VideoCapture`` reading every frame (the physical floor);
* **new**: ``estimate_clip(path)`` of this tree (streams the file);
* **old**: the code of commit ``f8c5441`` (before this work, extracted with ``git archive``
  into a temporary folder): ``read_sequence`` then ``estimate_clip`` on the array; skipped
  where its memory (about 7x the decoded frames) would not fit this machine.

Printed and written to ``results/footage.csv`` and ``results/footage.md`` per clip and code:
frames/s end to end (numba compiled beforehand), ratio to decoding, peak memory (GiB) and its
ratio to the frames the estimate keeps in memory (after the fixed amount the process has
before the clip: interpreter, libraries, compiled kernels), frames used in pairs, periods,
motion error against the truth (mean over frames of the largest corner displacement, px) and
PSNR of the reference period's estimate against the truth over its valid region. The goals
(>= 10 frames/s at 1080p; within 5x of decoding; no slower than the old code at small sizes;
peak within 1.5x the kept frames plus the fixed amount, the same for 3,000 frames as for 300;
4K runs) are printed as met or with the measured distance.

    python benchmarks/bench_footage.py            # the full set (the lead's quiet machine)
    python benchmarks/bench_footage.py --quick    # small sizes, a minute or two
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from old_code import extract_package

ROOT = Path(__file__).resolve().parent.parent
OLD_COMMIT = "f8c5441"
REAL_CLIPS = ROOT.parent / "shared" / "real-clips"
FULL = [("hand-held 1080p", (1080, 1920), 300), ("hand-held 1080p long", (1080, 1920), 3000),
        ("hand-held 4K", (2160, 3840), 100)]
QUICK = [("hand-held 360p", (360, 640), 60), ("hand-held 360p long", (360, 640), 600),
         ("hand-held 720p", (720, 1280), 40)]
OLD_MEMORY_FACTOR = 7.0  # the old code's peak over the decoded frames (issue 21's table)


# --------------------------------------------------------------------------------------------
# Clips, generated frame by frame
# --------------------------------------------------------------------------------------------


def write_handheld_clip(path: Path, size: tuple[int, int], n_frames: int, seed: int = 0
                        ) -> dict[str, np.ndarray]:
    """Write a hand-held rain clip (MJPEG .avi) one frame at a time; return its truth.

    The camera shakes (translation 2.5 px and rotation 0.3 degrees per axis at 640 px wide,
    scaled with the width; correlated over about 3 frames) over a photo; rain layers (a few
    drawn with ``rain_layer``, shifted at random every frame) and sensor noise are added.

    Returns:
        ``camera``: N x 3 x 3 frame -> scene transforms; ``reference``: the clean frame the
        middle frame's camera sees (H x W x 3 uint8).
    """
    from spanetlib.synthesis.rain import DENSITY_PRESETS, load_background, rain_layer

    h, w = size
    s = w / 640.0
    margin = int(math.ceil(14 * s))
    scene = load_background("coffee", (h + 2 * margin, w + 2 * margin))
    rng = np.random.default_rng(seed)
    # Banks of rain layers and noise (uint8, screen blend and noise by saturating OpenCV
    # arithmetic), cut at a random offset every frame: fast enough for thousands of frames.
    layers = []
    for _ in range(6):
        layer = rain_layer((h + 64, w + 64), DENSITY_PRESETS["normal"], rng)
        layers.append(cv2.merge([(layer * 255 + 0.5).astype(np.uint8)] * 3))
    noise = []
    for _ in range(3):
        n = rng.normal(0.0, 2.55, (h + 16, w + 16, 3))
        noise.append((np.clip(np.rint(n), 0, 255).astype(np.uint8),
                      np.clip(np.rint(-n), 0, 255).astype(np.uint8)))
    a = math.exp(-1.0 / 3.0)
    state = np.zeros(3)
    sigma = np.array([2.5 * s, 2.5 * s, math.radians(0.3)])
    cams = np.empty((n_frames, 3, 3))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (w, h))
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0

    def camera(st: np.ndarray) -> np.ndarray:
        c, si = math.cos(st[2]), math.sin(st[2])
        rot = np.array([[c, -si, cx - c * cx + si * cy], [si, c, cy - si * cx - c * cy],
                        [0.0, 0.0, 1.0]])
        return np.array([[1.0, 0, margin + st[0]], [0, 1.0, margin + st[1]], [0, 0, 1.0]]) @ rot

    def clean_of(cam: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(scene, cam[:2], (w, h), flags=cv2.INTER_CUBIC
                              | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)

    try:
        for i in range(n_frames):
            state = a * state + math.sqrt(1 - a * a) * sigma * rng.standard_normal(3)
            if i == 0:
                state = sigma * rng.standard_normal(3)
            cams[i] = camera(state)
            clean = clean_of(cams[i])
            oy, ox = rng.integers(0, 64, 2)
            layer = layers[i % len(layers)][oy:oy + h, ox:ox + w]
            # Screen blend: clean + layer (255 - clean) / 255.
            frame = cv2.add(clean, cv2.multiply(cv2.subtract(255, clean), layer, scale=1 / 255))
            ny, nx = rng.integers(0, 16, 2)
            plus, minus = noise[i % len(noise)]
            frame = cv2.subtract(cv2.add(frame, plus[ny:ny + h, nx:nx + w]),
                                 minus[ny:ny + h, nx:nx + w])
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return {"camera": cams, "reference": clean_of(cams[n_frames // 2])}


def real_clips() -> list[tuple[str, Path]]:
    """``(name, source)`` of the real clips (a video file in the folder, or the folder)."""
    if not REAL_CLIPS.is_dir():
        return []
    out = []
    for folder in sorted(p for p in REAL_CLIPS.iterdir() if p.is_dir()):
        videos = [p for p in sorted(folder.iterdir())
                  if p.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv", ".gif", ".webm")]
        out.append((folder.name, videos[0] if videos else folder))
    return out


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def _current_rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 30


def child(kind: str, source: str, truth: str | None) -> dict:
    """One measurement (run in its own process); returns the numbers as a dict."""
    if kind == "decode":
        start = time.perf_counter()
        cap = cv2.VideoCapture(source)
        n = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            n += 1
        cap.release()
        return {"seconds": time.perf_counter() - start, "frames": n, "peak_gib": _rss_gib()}
    if kind == "old":
        sys.path.insert(0, os.environ["BENCH_OLD_ROOT"])
    from spanetlib.io.video import read_sequence
    from spanetlib.pipeline.alignment import motion_displacement
    from spanetlib.pipeline.clip_estimate import estimate_clip
    from spanetlib.synthesis.rain import make_rain_clip

    # Compile the numba kernels first (cached or not, not part of the time).
    warm = make_rain_clip("handheld", seed=3).frames[:12]
    estimate_clip(warm)
    fixed = _current_rss_gib()
    del warm
    start = time.perf_counter()
    if kind == "old":
        frames = read_sequence(source)
        shape = frames.shape[1:3]
        est = estimate_clip(frames)
        kept = len(frames)
        del frames
    else:
        from spanetlib.pipeline.clip_estimate import MAX_KEPT_FRAMES
        est = estimate_clip(source)
        kept = min(len(est.membership), MAX_KEPT_FRAMES + 1)
        shape = est.shape
    seconds = time.perf_counter() - start
    n = len(est.membership)
    out = {"seconds": seconds, "frames": n, "peak_gib": _rss_gib(), "fixed_gib": fixed,
           "kept_gib": kept * shape[0] * shape[1] * 3 / 2 ** 30, "kept_frames": kept,
           "periods": len(est.segments), "used": int((est.membership >= 0).sum()),
           "motion_px": float("nan"), "psnr_db": float("nan")}
    if truth:
        data = np.load(truth)
        cams = data["camera"]
        ref = est.motion.reference
        true = np.linalg.inv(cams) @ cams[ref]
        err = motion_displacement(np.linalg.inv(true) @ est.motion.matrices, est.shape)
        out["motion_px"] = float(np.mean(err))
        seg = next((s for s in est.segments if s.start <= ref < s.stop), None)
        if seg is not None and seg.valid.any():
            y0, y1, x0, x1 = seg.crop
            border = 8  # the generator reflects at its canvas border
            a = seg.image[y0 + border:y1 - border, x0 + border:x1 - border].astype(np.float64)
            b = data["reference"][y0 + border:y1 - border, x0 + border:x1 - border]
            mse = float(np.mean((a - b) ** 2))
            out["psnr_db"] = 10 * math.log10(255 ** 2 / max(mse, 1e-12))
    return out


def run_child(kind: str, source: Path, truth: Path | None, old_root: Path | None,
              timeout: float) -> dict:
    """Run :func:`child` in a fresh interpreter; ``{"error": ...}`` when it fails."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if old_root is not None:
        env["BENCH_OLD_ROOT"] = str(old_root)
        env["PYTHONPATH"] = str(old_root)
        env["NUMBA_CACHE_DIR"] = str(old_root / ".numba")
    cmd = [sys.executable, __file__, "--child", kind, str(source), str(truth or "")]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail[:120]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def fmt(x: float, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a minute or two)")
    parser.add_argument("--no-old", action="store_true", help="skip the old code")
    parser.add_argument("--no-real", action="store_true", help="skip ../shared/real-clips")
    parser.add_argument("--out", default=str(ROOT / "results"), help="folder of the results")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--long-frames", type=int, default=None,
                        help="frames of the long clip (default 3000; 600 with --quick)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, source, truth = args.child
        print(json.dumps(child(kind, source, truth or None)))
        return

    total_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "old").mkdir()
        old_root = None if args.no_old else extract_package(OLD_COMMIT, tmp / "old")
        jobs: list[tuple[str, Path, Path | None, tuple[int, int] | None, int]] = []
        clips = [(name, size, args.long_frames if "long" in name and args.long_frames else n)
                 for name, size, n in (QUICK if args.quick else FULL)]
        for name, size, n in clips:
            path = tmp / f"{name.replace(' ', '_')}.avi"
            start = time.perf_counter()
            truth = write_handheld_clip(path, size, n, seed=len(jobs))
            np.savez(tmp / f"{path.stem}.npz", **truth)
            print(f"generated {name}: {n} frames of {size[1]} x {size[0]} in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
            jobs.append((name, path, tmp / f"{path.stem}.npz", size, n))
        if not args.no_real:
            for name, source in real_clips():
                jobs.append((f"real: {name}", source, None, None, 0))
        for name, source, truth, size, n in jobs:
            decode = run_child("decode", source, None, None, args.timeout) \
                if source.is_file() and source.suffix != ".gif" else {}
            results = {"new": run_child("new", source, truth, None, args.timeout)}
            if old_root is not None:
                need = (n * size[0] * size[1] * 3 / 2 ** 30 * OLD_MEMORY_FACTOR) if size else 0
                results["old"] = run_child("old", source, truth, old_root, args.timeout) \
                    if need < 0.8 * total_gib else {"error": f"needs about {need:.0f} GiB"}
            for code, r in results.items():
                row = {"clip": name, "code": code, **{k: r.get(k) for k in (
                    "frames", "seconds", "peak_gib", "fixed_gib", "kept_frames", "kept_gib",
                    "used", "periods", "motion_px", "psnr_db")}, "error": r.get("error", "")}
                if "seconds" in r:
                    row["fps"] = r["frames"] / r["seconds"]
                    row["x_decode"] = r["seconds"] / decode["seconds"] if "seconds" in decode \
                        else float("nan")
                    row["mem_ratio"] = (r["peak_gib"] - r["fixed_gib"]) / max(r["kept_gib"],
                                                                              1e-9)
                rows.append(row)
                print(f"{name:24s} {code:3s} " + (
                    f"{row['fps']:6.2f} fps  {fmt(row['x_decode'], 1):>5s}x decode  peak "
                    f"{r['peak_gib']:5.2f} GiB ({row['mem_ratio']:.2f}x kept + "
                    f"{r['fixed_gib']:.2f})  used {r['used']}/{r['frames']}  periods "
                    f"{r['periods']}  motion {fmt(r['motion_px'], 3)} px  PSNR "
                    f"{fmt(r['psnr_db'])} dB" if "seconds" in r else f"not run: {r['error']}"),
                      flush=True)
    verdicts = goals(rows)
    for line in verdicts:
        print(line)
    write_results(Path(args.out), rows, verdicts, args.quick)


def goals(rows: list[dict]) -> list[str]:
    """One line per goal: met, or the measured distance."""
    new = {r["clip"]: r for r in rows if r["code"] == "new" and "fps" in r}
    old = {r["clip"]: r for r in rows if r["code"] == "old" and "fps" in r}
    out = []
    synth = [c for c in new if not c.startswith("real")]
    for clip in synth:
        r = new[clip]
        if "1080p" in clip and "long" not in clip:
            out.append(f"{'MET' if r['fps'] >= 10 else 'NOT MET'}: >= 10 frames/s at 1080p "
                       f"({clip}: {r['fps']:.2f})")
        if not math.isnan(r["x_decode"]):
            out.append(f"{'MET' if r['x_decode'] <= 5 else 'NOT MET'}: within 5x of decoding "
                       f"({clip}: {r['x_decode']:.1f}x)")
        ok = r["mem_ratio"] <= 1.5
        out.append(f"{'MET' if ok else 'NOT MET'}: peak within 1.5x the kept frames plus the "
                   f"fixed amount ({clip}: {r['mem_ratio']:.2f}x)")
        if clip in old:
            o = old[clip]
            out.append(f"{'MET' if r['seconds'] <= o['seconds'] else 'NOT MET'}: no slower than "
                       f"the old code ({clip}: {o['seconds'] / r['seconds']:.1f}x faster)")
            out.append(f"motion vs truth ({clip}): new {r['motion_px']:.3f} px, old "
                       f"{o['motion_px']:.3f} px; PSNR new {fmt(r['psnr_db'])} dB, old "
                       f"{fmt(o['psnr_db'])} dB")
    longs = [c for c in synth if "long" in c]
    for clip in longs:
        short = clip.replace(" long", "")
        if short in new:
            ratio = new[clip]["peak_gib"] / new[short]["peak_gib"]
            out.append(f"{'MET' if ratio <= 1.2 else 'NOT MET'}: same peak for "
                       f"{new[clip]['frames']} frames as for {new[short]['frames']} "
                       f"({ratio:.2f}x)")
    for clip in synth:
        if "4K" in clip:
            out.append(f"MET: 4K runs ({new[clip]['peak_gib']:.1f} GiB peak)")
    missing = [r["clip"] for r in rows if r["code"] == "new" and "fps" not in r]
    out += [f"NOT MET: {c} did not run" for c in missing]
    return out


def write_results(folder: Path, rows: list[dict], verdicts: list[str], quick: bool) -> None:
    """results/footage.csv (every number) and results/footage.md (a table and the goals)."""
    # Imported here: the child processes that run the old code must not import this tree.
    from spanetlib.io.files import atomic_write_text
    from spanetlib.paper.reproduce import cpu_name

    folder.mkdir(parents=True, exist_ok=True)
    stem = "footage_quick" if quick else "footage"
    keys = ["clip", "code", "frames", "seconds", "fps", "x_decode", "peak_gib", "fixed_gib",
            "kept_frames", "kept_gib", "mem_ratio", "used", "periods", "motion_px", "psnr_db",
            "error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(folder / f"{stem}.csv", buffer.getvalue())
    lines = ["| clip | code | frames | frames/s | x decode | peak GiB | x kept | used | "
             "periods | motion px | PSNR dB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"
             "---:|---:|"]
    for r in rows:
        if "fps" not in r:
            lines.append(f"| {r['clip']} | {r['code']} | not run: {r['error']} |||||||||")
            continue
        lines.append(f"| {r['clip']} | {r['code']} | {r['frames']} | {r['fps']:.2f} | "
                     f"{fmt(r['x_decode'], 1)} | {r['peak_gib']:.2f} | {r['mem_ratio']:.2f} | "
                     f"{r['used']} | {r['periods']} | {fmt(r['motion_px'], 3)} | "
                     f"{fmt(r['psnr_db'])} |")

    caption = (f"`benchmarks/bench_footage.py{' --quick' if quick else ''}` on {cpu_name()} "
               f"({os.cpu_count()} cores), {time.strftime('%Y-%m-%d')}: `estimate_clip` on a "
               "file, end to end (read, align, periods, estimates, pair checks); old = the code "
               f"of {OLD_COMMIT}.")
    text = (caption + "\n\n" + "\n".join(lines) + "\n\n"
            + "\n".join(f"- {v}" for v in verdicts) + "\n")
    atomic_write_text(folder / f"{stem}.md", text)


if __name__ == "__main__":
    main()
