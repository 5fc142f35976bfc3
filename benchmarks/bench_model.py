"""Benchmark the whole SPANet forward pass on the CPU: plain vs. fast configuration.

SPANet at its default size (C = 32, shared SAM, ``direction_attention=False`` as in the
authors' checkpoint), batch 1, eval mode under ``torch.inference_mode``:

- ``plain``: NCHW tensors, ``irnn_backend="reference"`` (the IRNN as a Python loop over the
  rows and columns, then ``torch.cat`` of the four directions).
- ``numba``: the same NCHW weights and input, but the compiled numba IRNN (which writes the
  four directions concatenated, in channels-last memory).
- ``fast``: what ``spanetlib.inference.prepare_model`` sets on the CPU (and ``derain_array``
  / ``derain_files`` use): numba IRNN, channels-last (NHWC) weights and input, so every
  convolution and every IRNN runs on NHWC data without a layout conversion.

Times are the median (and minimum) of ``--repeats`` runs after one warm-up, measured in one
process with the configurations interleaved, so the ratio compares like with like on a shared
machine. Both wall-clock and process CPU time are shown: with other jobs on the machine, wall
time is noisy, and CPU time of a single-threaded run (``--threads 1``) is the steadier
measure. Peak memory: each configuration runs once more in a fresh subprocess, which reports
its peak resident set size (``VmHWM`` of /proc/self/status; Linux only) and the growth over
the resident size just before the forward pass (weights, imports and the input excluded).

Both configurations run with ``THP_MEM_ALLOC_ENABLE=1`` (large tensors on transparent huge
pages, as the ``spanet`` command sets it; first-touch page faults otherwise cost tens of ms
per forward pass); ``--no-thp`` measures without it.

Usage::

    python benchmarks/bench_model.py [--sizes 256 512] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = ("plain", "numba", "fast")


def build(config: str, size: int):
    import torch

    from spanetlib.inference import prepare_model
    from spanetlib.models.spanet import SPANet

    torch.manual_seed(0)
    model = SPANet(direction_attention=False, irnn_backend="reference").eval()
    x = torch.rand(1, 3, size, size)
    if config == "numba":
        model.set_irnn_backend("numba")
    elif config == "fast":
        prepare_model(model, "cpu")
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x


def status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: now, VmHWM: peak) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(config: str, size: int) -> None:
    import torch

    model, x = build(config, size)
    with torch.inference_mode():
        model(torch.rand(1, 3, 16, 16))  # compile / load kernels outside the measurement
        before = status_mb("VmRSS")
        model(x)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
    peak = status_mb("VmHWM")
    print(json.dumps({"peak_mb": peak, "growth_mb": peak - before}))


def measure_memory(config: str, size: int, threads: int | None) -> dict:
    cmd = [sys.executable, __file__, "--memory-child", config, str(size)]
    if threads:
        cmd += ["--threads", str(threads)]
    if "THP_MEM_ALLOC_ENABLE" not in os.environ:
        cmd += ["--no-thp"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def time_configs(size: int, repeats: int) -> dict[str, dict[str, float]]:
    import torch

    models = {c: build(c, size) for c in CONFIGS}
    wall: dict[str, list[float]] = {c: [] for c in CONFIGS}
    cpu: dict[str, list[float]] = {c: [] for c in CONFIGS}
    with torch.inference_mode():
        reference = models["plain"][0](models["plain"][1])[0]
        for c in CONFIGS:  # warm-up, and check that every configuration computes the same
            model, x = models[c]
            err = (model(x)[0] - reference).abs().max().item()
            if err > 1e-4:
                raise RuntimeError(f"{c} differs from plain by {err}")
        for _ in range(repeats):
            for c in CONFIGS:
                model, x = models[c]
                t0, c0 = time.perf_counter(), time.process_time()
                model(x)
                wall[c].append(time.perf_counter() - t0)
                cpu[c].append(time.process_time() - c0)
    return {c: {"wall": statistics.median(wall[c]), "wall_min": min(wall[c]),
                "cpu": statistics.median(cpu[c]), "cpu_min": min(cpu[c])} for c in CONFIGS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and numba threads (default: torch's default)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument("--no-thp", action="store_true",
                        help="do not set THP_MEM_ALLOC_ENABLE=1 (huge pages for large tensors)")
    parser.add_argument("--memory-child", nargs=2, metavar=("CONFIG", "SIZE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
    if not args.no_thp:  # read by PyTorch at its first allocation: set it before importing
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]))
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}, "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}")
    for size in args.sizes:
        times = time_configs(size, args.repeats)
        mem = ({} if args.no_memory else
               {c: measure_memory(c, size, args.threads) for c in CONFIGS})
        print(f"\nSPANet forward, 1 x 3 x {size} x {size} (median of {args.repeats}; min)")
        print(f"{'config':<20} {'wall s':>8} {'min':>7} {'cpu s':>8} {'min':>7} "
              f"{'peak MB':>8} {'+fwd MB':>8}")
        for c in CONFIGS:
            t = times[c]
            m = mem.get(c, {"peak_mb": float("nan"), "growth_mb": float("nan")})
            print(f"{c:<20} {t['wall']:8.3f} {t['wall_min']:7.3f} {t['cpu']:8.3f} "
                  f"{t['cpu_min']:7.3f} {m['peak_mb']:8.0f} {m['growth_mb']:8.0f}")
        plain, fast = times["plain"], times["fast"]
        print(f"speed-up fast vs plain: wall {plain['wall'] / fast['wall']:.2f}x "
              f"(min {plain['wall_min'] / fast['wall_min']:.2f}x), cpu "
              f"{plain['cpu'] / fast['cpu']:.2f}x (min {plain['cpu_min'] / fast['cpu_min']:.2f}x)")


if __name__ == "__main__":
    main()
