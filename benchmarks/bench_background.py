"""Speed and memory of `estimate_background` (paper Eqs. 2-4) against one `np.median`.

Makes N synthetic rain frames (seeded, no downloads): a smooth random background with pixel
texture, per-frame noise and bright streak-like rain. Times `np.median(frames, axis=0)` and
`estimate_background(frames)` (best of --repeats each) after warming up numba on a small input
of the same dtype (JIT compilation, or loading numba's on-disk cache, is not counted), then
measures the estimator's peak extra memory in a fresh subprocess.

    python benchmarks/bench_background.py                       # 100 x 720 x 1280 x 3
    python benchmarks/bench_background.py --frames 20 --height 128 --width 160
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import time

import numpy as np

from spanetlib.pipeline.background import estimate_background


def make_frames(n: int, height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """N x H x W x 3 uint8 rain frames and the H x W x 3 uint8 clean background.

    Frames are written one at a time into a preallocated array, so the peak memory of the
    generation stays close to the frames' own size.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(30, 200, (height // 40 + 2, width // 40 + 2, 3))
    ys = np.linspace(0, coarse.shape[0] - 1.001, height)
    xs = np.linspace(0, coarse.shape[1] - 1.001, width)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    smooth = ((1 - fy) * (1 - fx) * coarse[y0][:, x0] + (1 - fy) * fx * coarse[y0][:, x0 + 1]
              + fy * (1 - fx) * coarse[y0 + 1][:, x0] + fy * fx * coarse[y0 + 1][:, x0 + 1])
    clean = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
    frames = np.empty((n, height, width, 3), np.uint8)
    n_streaks = max(1, height * width // 500)
    length = max(3, height // 40)
    steps = np.arange(length)
    for i in range(n):
        frame = clean.astype(np.int16) + rng.integers(-3, 4, (height, width, 1), dtype=np.int16)
        # streak-like rain: short bright segments, all at one angle per frame (+- jitter)
        angle = np.deg2rad(rng.uniform(-20, 20))
        sy = rng.integers(0, height, n_streaks)[:, None]
        sx = rng.integers(0, width, n_streaks)[:, None]
        py = np.clip(sy + np.round(steps * np.cos(angle)).astype(int), 0, height - 1)
        px = np.clip(sx + np.round(steps * np.sin(angle)).astype(int), 0, width - 1)
        boost = rng.integers(40, 140, (n_streaks, 1)).repeat(length, axis=1)
        frame[py.ravel(), px.ravel()] += boost.ravel()[:, None].astype(np.int16)
        frames[i] = np.clip(frame, 0, 255)
    return frames, clean


def best_of(fn, repeats: int) -> tuple[float, float]:
    """Best wall time and the process CPU time of that run, in seconds."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def memory_child(args: argparse.Namespace) -> None:
    """Run in a subprocess: print the estimator's peak extra resident memory in bytes."""
    frames, _ = make_frames(args.frames, args.height, args.width, args.seed)
    estimate_background(frames[:3, :16, :16].copy())  # warm up (threads, JIT cache)
    gc.collect()
    base = _status_kib("VmRSS")
    try:  # reset the peak-RSS mark (Linux >= 4.0): only the estimator's own peak is measured
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        method = "VmHWM after resetting it via /proc/self/clear_refs, minus VmRSS before"
    except OSError:
        method = "ru_maxrss after, minus VmRSS before (upper bound if setup peaked higher)"
    result = estimate_background(frames)
    peak = _status_kib("VmHWM")
    if peak is None or method.startswith("ru_maxrss"):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del result
    print(f"{(peak - (base or 0)) * 1024} {frames.nbytes} {method}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocess")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args)
        return

    import numba

    frames, clean = make_frames(args.frames, args.height, args.width, args.seed)
    mib = frames.nbytes / 2**20
    print(f"frames: {frames.shape} uint8 ({mib:.0f} MiB); CPUs: {os.cpu_count()}, "
          f"numba threads: {numba.get_num_threads()}; load average before: "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    t0 = time.perf_counter()
    estimate_background(frames[:3, :16, :16].copy())
    print(f"numba warm-up (compile or cache load, not counted): {time.perf_counter() - t0:.2f} s")

    median_wall, median_cpu = best_of(lambda: np.median(frames, axis=0), args.repeats)
    ours_wall, ours_cpu = best_of(lambda: estimate_background(frames), args.repeats)
    est = estimate_background(frames)
    print(f"np.median(frames, axis=0): {median_wall:.3f} s (CPU {median_cpu:.3f} s), "
          f"best of {args.repeats}")
    print(f"estimate_background(frames): {ours_wall:.3f} s (CPU {ours_cpu:.3f} s), "
          f"best of {args.repeats}")
    print(f"speedup vs np.median: {median_wall / ours_wall:.1f}x "
          f"(CPU time ratio {median_cpu / ours_cpu:.1f}x)")
    err_ours = np.abs(est.image - clean).mean()
    err_median = np.abs(np.median(frames, axis=0) - clean).mean()
    print(f"p = {est.percentile:.2f} %, coverage {est.coverage:.1%}; mean |error| vs clean: "
          f"ours {err_ours:.2f}, median {err_median:.2f} (0..255)")
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")

    if not args.no_memory:
        del frames, clean, est
        gc.collect()
        cmd = [sys.executable, __file__, "--memory-child", "--frames", str(args.frames),
               "--height", str(args.height), "--width", str(args.width),
               "--seed", str(args.seed)]
        # A fixed glibc mmap threshold returns every large freed block to the OS at once, so
        # the resident size before the call is not inflated by free heap memory that the
        # estimator could reuse unseen.
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             env=env).stdout.split()
        extra, nbytes, method = int(out[0]), int(out[1]), " ".join(out[2:])
        print(f"estimator peak extra memory: {extra / 2**20:.1f} MiB = "
              f"{extra / nbytes:.3f}x the frames' size ({nbytes / 2**20:.0f} MiB); "
              f"measured in a subprocess as {method}")


if __name__ == "__main__":
    main()
