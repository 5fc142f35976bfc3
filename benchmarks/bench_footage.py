"""§3 at the size of real footage: speed and memory of ``estimate_clip`` on long, large clips.

Clips (issue 21): a hand-held clip at 1080p (300 frames), the same at 3,000 frames, a 4K
clip (100 frames), generated here frame by frame straight into an MJPEG file (never held
whole in memory) from ``spanetlib.synthesis.rain`` (a scene photo seen through a shaking,
slightly rotating camera, rain layers, sensor noise), with the camera's truth; and the real
clips of ``../shared/real-clips/`` when that folder is there (no truth: speed, memory,
periods only).

Each measurement runs in a child process of its own (peak memory = its ``VmHWM``):

* **decode**: ``cv2.VideoCapture`` reading every frame (the physical floor);
* **new**: ``estimate_clip(path)`` of this tree (streams the file);
* **old**: the code of commit ``f8c5441`` (before this work, extracted with ``git archive``
  into a temporary folder): ``read_sequence`` then ``estimate_clip`` on the array; skipped
  where its memory (about 7x the decoded frames) would not fit this machine.

On the goal clip (hand-held 1080p, 300 frames) decoding, the new code and the old code run
:data:`GOAL_RUNS` times each and the fastest run counts (every run's seconds are printed and
written): on these virtual machines a fresh process that first touches memory the host took
back pays for it again (a 1.2 GB array took 0.2 to 2.9 s to fill for the first time, within
one minute), most right after the clips are generated.

Printed and written to ``results/footage.csv`` and ``results/footage.md`` per clip and code:
frames/s end to end (numba compiled beforehand), ratio to decoding, peak memory (GiB) and its
ratio to the frames the estimate keeps in memory (after the fixed amount the process has
before the clip: interpreter, libraries, compiled kernels), frames used in pairs, periods,
motion error against the truth (mean over frames of the largest corner displacement, px) and
PSNR of the reference period's estimate against the truth over its valid region. The goals
(>= 10 frames/s at 1080p; within 5x of decoding; no slower than the old code at small sizes;
peak within 1.5x the kept frames plus the fixed amount, the same for 3,000 frames as for 300;
4K runs) are printed as met or with the measured distance.

**Registration side by side** (issue 21: use what OpenCV does well where it is as accurate).
On the 1080p hand-held clip, every frame is registered to the middle frame by three methods,
each in its own child process, at the same working size (longer side 640 px; transforms
scaled back to full resolution), each timed from opening the file to the last transform
(decoding included, frames registered on a pool of ``min(4, cores)`` threads):

* **ours**: ``measure_motion(FrameSource(path))`` (numba compiled beforehand);
* **ECC**: ``cv2.findTransformECC`` (``MOTION_EUCLIDEAN``) of each frame's grey image against
  the middle frame's, coarse to fine over ``cv2.pyrDown`` levels, OpenCV's Gaussian
  pre-filter at every level;
* **features**: ORB keypoints, brute-force Hamming matches with a ratio test and
  ``cv2.estimateAffinePartial2D`` with RANSAC (AKAZE is no longer in OpenCV 5's main module).

Printed and written to ``results/registration.csv`` and ``results/registration.md``: frames/s,
ratio to decoding, motion error against the camera's truth (the largest corner displacement,
full-resolution px: mean and 95th percentile over the frames a method registered) and the
frames it failed on (did not converge, raised, or too few RANSAC inliers). Rain is what makes
this hard: streaks are thin, bright lines that move every frame, so they do not follow the
camera. ECC correlates every pixel, streaks included, and its Gaussian pre-filter smears them
into the scene; ORB finds corners on streak ends, which RANSAC must then reject. Ours masks
them (a white top-hat finds the thin bright lines and leaves them out of every fit; bright
residuals get zero weight; the template is a low temporal percentile, which rain, only
brightening, does not reach): see ``spanetlib.pipeline.alignment``'s docstring.

    python benchmarks/bench_footage.py            # the full set (the lead's quiet machine)
    python benchmarks/bench_footage.py --quick    # small sizes, a minute or two
    python benchmarks/bench_footage.py --registration-only --registration-frames 60
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
    """``(name, source)`` of the real clips, as ``build-dataset`` lists scenes: a folder of
    frames, or the video a folder holds."""
    from spanetlib.io.video import scan_scenes, sequence_path

    if not REAL_CLIPS.is_dir():
        return []
    return [(folder.name, sequence_path(folder))
            for folder in scan_scenes(REAL_CLIPS).scenes if folder.is_dir()]


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------


def _rss_gib() -> float:
    """This process's peak resident memory (GiB): VmHWM, its own address space's high-water
    mark. ``ru_maxrss`` of a spawned child starts at its parent's peak (Linux carries the
    shared map's peak into the exec'd child), so it read the benchmark's own peak for the
    small clips; it is the fallback where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        return kib / 2 ** 20
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def _current_rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 30


def child(kind: str, source: str, truth: str | None) -> dict:
    """One measurement (run in its own process); returns the numbers as a dict."""
    if kind.startswith("register:"):
        return register_child(kind.split(":", 1)[1], source, truth)
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
# Registration side by side: ours, OpenCV's ECC, OpenCV's features
# --------------------------------------------------------------------------------------------

REGISTRATION_CLIP = ("hand-held 1080p", (1080, 1920))
GOAL_RUNS = 2  # runs of each code on the goal clip (hand-held 1080p); the fastest is kept
REGISTRATION_METHODS = ("ours", "ECC", "features")
WORK_SIDE = 640  # longer side of the working copies, as measure_motion's max_side
ECC_LEVELS = 3  # pyrDown levels, coarse to fine (640, 320, 160 px wide at 1080p)
ECC_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-5)
ECC_FILTER = 5  # gaussFiltSize, OpenCV's default
ORB_FEATURES = 2000
ORB_RATIO = 0.8  # Lowe's ratio test on the two nearest Hamming matches
RANSAC_PX = 1.0  # reprojection threshold, working-size pixels
MIN_INLIERS = 20  # fewer RANSAC inliers than this: the frame failed


def _to_full(matrices: np.ndarray, scale: float) -> np.ndarray:
    """Working-size transforms (N x 3 x 3) -> full resolution (area resize by ``scale``)."""
    off = 0.5 * scale - 0.5
    to_s = np.array([[scale, 0.0, off], [0.0, scale, off], [0.0, 0.0, 1.0]])
    return np.linalg.inv(to_s) @ matrices @ to_s


class _OpenCVRegistration:
    """ECC or ORB + RANSAC of frames against a reference frame, at the working size."""

    def __init__(self, method: str, reference: np.ndarray) -> None:
        h, w = reference.shape[:2]
        self.method = method
        self.scale = min(1.0, WORK_SIDE / max(h, w))
        self.size = (max(8, round(w * self.scale)), max(8, round(h * self.scale)))
        grey = self.grey(reference)
        if method == "ECC":
            self.ref = self.pyramid(grey)
        else:
            self.orb = cv2.ORB_create(ORB_FEATURES)
            self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
            self.ref_points, self.ref_desc = self.orb.detectAndCompute(grey, None)

    def grey(self, frame: np.ndarray) -> np.ndarray:
        small = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA) \
            if self.scale != 1.0 else frame
        return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)

    @staticmethod
    def pyramid(grey: np.ndarray) -> list[np.ndarray]:
        levels = [grey.astype(np.float32)]
        for _ in range(ECC_LEVELS - 1):
            levels.append(cv2.pyrDown(levels[-1]))
        return levels

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """Reference -> frame transform (3 x 3, working size), None where it failed."""
        grey = self.grey(frame)
        if self.method == "ECC":
            warp = np.eye(2, 3, dtype=np.float32)
            try:
                for k, (ref, level) in enumerate(zip(self.ref[::-1], self.pyramid(grey)[::-1],
                                                     strict=True)):
                    if k:
                        warp[:, 2] *= 2.0  # pyrDown halves coordinates: x = 2 x_half
                    _, warp = cv2.findTransformECC(ref, level, warp, cv2.MOTION_EUCLIDEAN,
                                                   ECC_CRITERIA, None, ECC_FILTER)
            except cv2.error:
                return None  # did not converge (or found no correlation)
            return np.vstack([warp.astype(np.float64), [0.0, 0.0, 1.0]])
        points, desc = self.orb.detectAndCompute(grey, None)
        if desc is None or len(points) < MIN_INLIERS:
            return None
        pairs = self.matcher.knnMatch(self.ref_desc, desc, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ORB_RATIO * p[1].distance]
        if len(good) < MIN_INLIERS:
            return None
        src = np.float32([self.ref_points[m.queryIdx].pt for m in good])
        dst = np.float32([points[m.trainIdx].pt for m in good])
        matrix, inliers = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX, maxIters=2000,
            confidence=0.999, refineIters=10)
        if matrix is None or int(inliers.sum()) < MIN_INLIERS:
            return None
        return np.vstack([matrix, [0.0, 0.0, 1.0]])


def register_child(method: str, source: str, truth: str) -> dict:
    """Register every frame of ``source`` to its middle frame by ``method``; time and error."""
    from concurrent.futures import ThreadPoolExecutor

    from spanetlib.io.pools import ordered_map
    from spanetlib.io.video import FrameSource
    from spanetlib.pipeline.alignment import measure_motion, motion_displacement

    if method == "ours":  # compile the numba kernels first (not part of the time)
        from spanetlib.synthesis.rain import make_rain_clip
        measure_motion(make_rain_clip("handheld", seed=3).frames[:12])
    workers = min(4, os.cpu_count() or 1)
    start = time.perf_counter()
    frames = FrameSource(source)
    n, shape, ref = len(frames), frames.shape, len(frames) // 2
    if method == "ours":
        motion = measure_motion(frames, ref)
        mats, ok = motion.matrices, motion.ok
    else:
        register = _OpenCVRegistration(method, next(frames.iter_at([ref]))[1])
        with ThreadPoolExecutor(workers) as pool:
            found = list(ordered_map(pool, register, frames, 2 * workers))
        ok = np.array([m is not None for m in found])
        small = np.stack([np.eye(3) if m is None else m for m in found])
        mats = _to_full(small, register.scale)
        mats[ref] = np.eye(3)
    seconds = time.perf_counter() - start
    if len(mats) != n:
        raise RuntimeError(f"{len(mats)} transforms for {n} frames")
    cams = np.load(truth)["camera"]
    true = np.linalg.inv(cams) @ cams[ref]
    err = motion_displacement(np.linalg.inv(true) @ mats, shape)[ok]
    return {"seconds": seconds, "frames": n, "failures": int(n - ok.sum()),
            "motion_px": float(np.mean(err)) if len(err) else float("nan"),
            "motion_p95_px": float(np.percentile(err, 95)) if len(err) else float("nan")}


def compare_registration(path: Path, truth: Path, decode: dict, timeout: float) -> list[dict]:
    """One row per method (and one for decoding): frames/s, x decode, error, failures."""
    rows = []
    if "seconds" in decode:
        rows.append({"method": "decode", "frames": decode["frames"],
                     "seconds": decode["seconds"], "fps": decode["frames"] / decode["seconds"],
                     "x_decode": 1.0, "error": ""})
    for method in REGISTRATION_METHODS:
        r = run_child(f"register:{method}", path, truth, None, timeout)
        row = {"method": method, **{k: r.get(k) for k in (
            "frames", "seconds", "motion_px", "motion_p95_px", "failures")},
            "error": r.get("error", "")}
        if "seconds" in r:
            row["fps"] = r["frames"] / r["seconds"]
            row["x_decode"] = r["seconds"] / decode["seconds"] if "seconds" in decode \
                else float("nan")
        rows.append(row)
        print(f"registration {method:8s} " + (
            f"{row['fps']:6.2f} fps  {fmt(row['x_decode'], 1):>5s}x decode  motion "
            f"{fmt(r['motion_px'], 3)} px (p95 {fmt(r['motion_p95_px'], 3)})  failures "
            f"{r['failures']}/{r['frames']}" if "seconds" in r else f"not run: {r['error']}"),
              flush=True)
    return rows


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
    parser.add_argument("--registration-only", action="store_true",
                        help="only the registration comparison (ours, ECC, features) on a "
                             "1080p hand-held clip")
    parser.add_argument("--registration-frames", type=int, default=60,
                        help="frames of that clip (default 60)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, source, truth = args.child
        print(json.dumps(child(kind, source, truth or None)))
        return
    if args.registration_only:
        registration_only(Path(args.out), args.registration_frames, args.timeout)
        return

    total_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    rows = []
    registration: list[dict] = []
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
        # The clips just written (GBs at 3,000 frames) go to disk now, not while a
        # measurement runs.
        os.sync()
        if not args.no_real:
            for name, source in real_clips():
                jobs.append((f"real: {name}", source, None, None, 0))
        for name, source, truth, size, n in jobs:
            runs = GOAL_RUNS if name == REGISTRATION_CLIP[0] and not args.quick else 1
            decode = fastest([run_child("decode", source, None, None, args.timeout)
                              for _ in range(runs)]) \
                if source.is_file() and source.suffix != ".gif" else {}
            results = {"new": fastest([run_child("new", source, truth, None, args.timeout)
                                       for _ in range(runs)])}
            if name == REGISTRATION_CLIP[0] and not args.quick:
                registration = compare_registration(source, truth, decode, args.timeout)
            if old_root is not None:
                need = (n * size[0] * size[1] * 3 / 2 ** 30 * OLD_MEMORY_FACTOR) if size else 0
                results["old"] = fastest([run_child("old", source, truth, old_root,
                                                    args.timeout) for _ in range(runs)]) \
                    if need < 0.8 * total_gib else {"error": f"needs about {need:.0f} GiB"}
            for code, r in results.items():
                row = {"clip": name, "code": code, **{k: r.get(k) for k in (
                    "frames", "seconds", "peak_gib", "fixed_gib", "kept_frames", "kept_gib",
                    "used", "periods", "motion_px", "psnr_db", "runs_s")},
                    "error": r.get("error", "")}
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
                    f"{fmt(r['psnr_db'])} dB" if "seconds" in r else f"not run: {r['error']}")
                      + (f"  (runs: {r['runs_s']} s)" if r.get("runs_s") else ""), flush=True)
    verdicts = goals(rows)
    for line in verdicts:
        print(line)
    write_results(Path(args.out), rows, verdicts, args.quick)
    if registration:
        n = next(n for name, _, n in clips if name == REGISTRATION_CLIP[0])
        write_registration(Path(args.out), registration, n, "")


def fastest(runs: list[dict]) -> dict:
    """The run that took the least time, with every run's seconds (``runs_s``) when several."""
    timed = [r for r in runs if "seconds" in r]
    if not timed:
        return runs[0]
    best = dict(min(timed, key=lambda r: r["seconds"]))
    if len(runs) > 1:
        best["runs_s"] = " / ".join(f"{r['seconds']:.1f}" if "seconds" in r else "failed"
                                    for r in runs)
    return best


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


def _write_csv(path: Path, keys: list[str], rows: list[dict]) -> None:
    # Imported here: the child processes that run the old code must not import this tree.
    from spanetlib.io.files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _machine() -> str:
    """``CPU model (vector extensions), N cores, date`` for a results file's first line."""
    from spanetlib.paper.reproduce import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"


def write_results(folder: Path, rows: list[dict], verdicts: list[str], quick: bool) -> None:
    """results/footage.csv (every number) and results/footage.md (a table and the goals)."""
    from spanetlib.io.files import atomic_write_text

    stem = "footage_quick" if quick else "footage"
    _write_csv(folder / f"{stem}.csv", [
        "clip", "code", "frames", "seconds", "fps", "x_decode", "peak_gib", "fixed_gib",
        "kept_frames", "kept_gib", "mem_ratio", "used", "periods", "motion_px", "psnr_db",
        "runs_s", "error"], rows)
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

    caption = (f"`benchmarks/bench_footage.py{' --quick' if quick else ''}` on {_machine()}: "
               "`estimate_clip` on a file, end to end (read, align, periods, estimates, pair "
               f"checks); old = the code of {OLD_COMMIT}"
               + ("" if quick else f"; hand-held 1080p: the fastest of {GOAL_RUNS} runs of "
                  "each (decoding too), every run's seconds below the table") + ".")
    runs = [f"- runs of {r['clip']}, {r['code']}: {r['runs_s']} s" for r in rows
            if r.get("runs_s")]
    text = (caption + "\n\n" + "\n".join(lines) + "\n\n"
            + "\n".join([*runs, *(f"- {v}" for v in verdicts)]) + "\n")
    atomic_write_text(folder / f"{stem}.md", text)


def registration_only(folder: Path, n_frames: int, timeout: float) -> None:
    """``--registration-only``: generate the 1080p hand-held clip, compare, write results."""
    if n_frames < 2:
        raise SystemExit(f"--registration-frames: expected >= 2, got {n_frames}")
    name, size = REGISTRATION_CLIP
    with tempfile.TemporaryDirectory() as tmp_name:
        path = Path(tmp_name) / "handheld.avi"
        start = time.perf_counter()
        np.savez(Path(tmp_name) / "handheld.npz", **write_handheld_clip(path, size, n_frames))
        print(f"generated {name}: {n_frames} frames of {size[1]} x {size[0]} in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        decode = run_child("decode", path, None, None, timeout)
        rows = compare_registration(path, Path(tmp_name) / "handheld.npz", decode, timeout)
    write_registration(folder, rows, n_frames,
                       f" --registration-only --registration-frames {n_frames}")


def write_registration(folder: Path, rows: list[dict], n_frames: int, flags: str) -> None:
    """results/registration.csv (every number) and results/registration.md (caption, table)."""
    from spanetlib.io.files import atomic_write_text

    _write_csv(folder / "registration.csv", [
        "method", "frames", "seconds", "fps", "x_decode", "motion_px", "motion_p95_px",
        "failures", "error"], rows)
    lines = ["| method | frames/s | x decode | motion px (mean) | motion px (95 %) | failures |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "fps" not in r:
            lines.append(f"| {r['method']} | not run: {r['error']} |||||")
        elif r["method"] == "decode":
            lines.append(f"| decode (`cv2.VideoCapture` alone) | {r['fps']:.2f} | 1.0 | - | - "
                         "| - |")
        else:
            lines.append(f"| {r['method']} | {r['fps']:.2f} | {fmt(r['x_decode'], 1)} | "
                         f"{fmt(r['motion_px'], 3)} | {fmt(r['motion_p95_px'], 3)} | "
                         f"{r['failures']} of {r['frames']} |")
    caption = (f"`benchmarks/bench_footage.py{flags}` on {_machine()}: registration of every "
               f"frame of the generated {REGISTRATION_CLIP[0]} clip ({n_frames} frames) to its "
               f"middle frame at a working size of {WORK_SIDE} px, decoding included; motion "
               "error against the camera's truth (largest corner displacement, full-resolution "
               "px) over the frames each method registered.")
    notes = [
        "ours: `measure_motion` (rain masked, B-spline Gauss-Newton, model chosen on the clip)",
        f"ECC: `cv2.findTransformECC`, `MOTION_EUCLIDEAN`, {ECC_LEVELS} `pyrDown` levels "
        f"coarse to fine, `gaussFiltSize` {ECC_FILTER}, at most {ECC_CRITERIA[1]} iterations or "
        f"a correlation change under {ECC_CRITERIA[2]:g} per level",
        f"features: ORB ({ORB_FEATURES} keypoints), Hamming matches with a {ORB_RATIO:g} ratio "
        f"test, `cv2.estimateAffinePartial2D` with RANSAC ({RANSAC_PX:g} px at the working "
        f"size); a frame with under {MIN_INLIERS} inliers failed",
    ]
    text = (caption + "\n\n" + "\n".join(lines) + "\n\n"
            + "\n".join(f"- {v}" for v in notes) + "\n")
    atomic_write_text(folder / "registration.md", text)


if __name__ == "__main__":
    main()
