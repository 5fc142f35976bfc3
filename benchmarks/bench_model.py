"""SPANet's CPU forward pass as users call it, against a plain model and the machine's peak.

Every configuration runs SPANet at its default size (C = 32, shared SAM), batch 1, under
``torch.inference_mode()``, on a plain NCHW float32 input made by ``torch.rand``:

- ``plain``: the same network as plain PyTorch would run it: NCHW tensors throughout, the
  IRNN as a vectorised scan (``irnn_backend="reference"``: each step of the recurrence
  processes a whole row or column of every channel at once), then ``torch.cat`` of the four
  directions, and none of the model's CPU measures below.
- ``SPANet()``: ``SPANet()(x)``, no preparation: the model converts the input to
  channels-last once, keeps its features NHWC (oneDNN convolutions, the numba IRNN, which
  reads and writes NHWC), returns NCHW outputs, and reuses freed memory during the pass
  (``spanetlib.models.memory.reuse_freed_memory``); where torch has oneDNN's fused
  convolutions, its inference pass is fused (ReLUs, sigmoids and residual adds as post-ops of
  the convolutions, see ``spanetlib.models.spanet``).
- ``SPANet() separate``: the same model with ``fuse_inference = False``: every ReLU, add and
  multiply a pass of its own (the model before the fusion), to measure what the fusion gives.
- ``official``: ``load_pretrained("official")(x)``, the authors' weights (no
  direction-attention branch, so a little less work).
- ``SPANet() bf16``: ``SPANet()(x)`` under the bf16 autocast of ``--precision bf16``
  (``spanetlib.models.device.autocast``), on CPUs with fast bf16 only.

Peak: a plain 32 -> 32 3x3 convolution (no bias) at the same spatial size, channels-last
(the fastest layout for oneDNN here), float32, and in bf16 where the CPU has fast bf16: the
best of ``--repeats`` runs, measured in the same process, interleaved with the model runs.

FLOPs: convolutions and matrix products counted by ``torch.utils.flop_counter`` (2 per
multiply-add; counted on the separate passes, whose convolutions the counter knows), plus 3 per IRNN
output element (``w * h + b + x``); element-wise operations (ReLU, sigmoid, residual adds,
attention products) are not counted, they are overhead. The "share of peak" is the model's
achieved GFLOP/s over the peak convolution's, both from the best run; the same ratio from the
median runs and from process CPU time is printed too. Goals (issues 10 and 22):
at least 0.8 of the fp32 peak at 256 x 256 on two cores, on Intel and AMD
alike; bf16 at least 1.8x faster than fp32 where supported.

The configurations are interleaved run by run in one process, so their ratios compare like
with like on a shared machine; the load average before and after is printed. On a loaded
machine wall-clock ratios favour the short convolution (it often runs within one time
slice, a forward pass never does); CPU time is the steadier measure there, mostly with
``--threads 1``. Peak memory:
``--memory`` runs each configuration once more in a fresh subprocess and reports the peak
resident set size during the pass (``VmHWM``, reset before it; Linux only) and its growth
over the size before the pass.

Usage::

    python benchmarks/bench_model.py [--sizes 256 512] [--repeats 5] [--threads N] [--memory]
                                     [--profile] [--out results]

With ``--out results`` the table and the verdicts go to ``results/model_speed.csv``/``.md``
(``--name NAME``: ``results/NAME.csv``/``.md``), which README.md copies: ``model_speed``
measured on an Intel CPU, ``model_speed_amd`` on an AMD one (the goal is on both).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from spanetlib.evaluation.evaluate import write_table
from spanetlib.models import irnn as irnn_module
from spanetlib.models.device import autocast, cpu_bf16_features, cpu_has_fast_bf16
from spanetlib.models.pretrained import load_pretrained
from spanetlib.models.spanet import SPANet, fused_ops_available
from spanetlib.paper.reproduce import cpu_name


@dataclass
class Timing:
    """Wall-clock and process CPU seconds of the repeated runs of one configuration."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.wall)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def best_cpu(self) -> float:
        return min(self.cpu)


def _bf16(fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with autocast(torch.bfloat16, "cpu"):
            return fn()
    return run


def build(size: int, bf16: bool) -> dict[str, tuple[Callable[[], object], torch.nn.Module]]:
    """The configurations to time: name -> (zero-argument call, model or convolution)."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, size, size)
    model = SPANet().eval()
    separate = SPANet().eval()
    separate.load_state_dict(model.state_dict())
    separate.fuse_inference = False
    plain = SPANet(irnn_backend="reference").eval()
    plain.load_state_dict(model.state_dict())
    official = load_pretrained("official")
    conv = torch.nn.Conv2d(32, 32, 3, padding=1, bias=False).eval()
    conv = conv.to(memory_format=torch.channels_last)
    features = torch.rand(1, 32, size, size).contiguous(memory_format=torch.channels_last)
    configs: dict[str, tuple[Callable[[], object], torch.nn.Module]] = {
        # the network without the model's own CPU measures: the NCHW path of forward
        "plain": (lambda: plain._features_to_outputs(x), plain),
        "SPANet()": (lambda: model(x), model),
        "SPANet() separate": (lambda: separate(x), separate),
        "official": (lambda: official(x), official),
        "peak conv fp32": (lambda: conv(features), conv),
    }
    if bf16:
        configs["SPANet() bf16"] = (_bf16(lambda: model(x)), model)
        configs["peak conv bf16"] = (_bf16(lambda: conv(features)), conv)
    return configs


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs of one call: convolutions and matrix products, plus 3 per IRNN output."""
    irnn_flops = 0
    real = irnn_module.irnn_concat

    def counting(x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        nonlocal irnn_flops
        out = real(x, *args, **kwargs)
        irnn_flops += 3 * out.numel()
        return out

    irnn_module.irnn_concat = counting
    fuse = SPANet.fuse_inference
    SPANet.fuse_inference = False  # the counter does not know oneDNN's fused convolutions
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            fn()
    finally:
        irnn_module.irnn_concat = real
        SPANet.fuse_inference = fuse
    return counter.get_total_flops() + irnn_flops


def check_agreement(configs: dict[str, tuple[Callable[[], object], torch.nn.Module]]) -> None:
    """The fast, separate and plain configurations compute the same image (float32 rounding)."""
    with torch.inference_mode():
        plain = configs["plain"][0]()[0]
        fast = configs["SPANet()"][0]()[0]
        separate = configs["SPANet() separate"][0]()[0]
    for name, other in (("plain model", plain), ("separate passes", separate)):
        err = (other - fast).abs().max().item()
        if err > 1e-5 * max(other.abs().max().item(), 1.0):
            raise RuntimeError(f"SPANet() differs from the {name} by {err}")
    if not fast.is_contiguous():
        raise RuntimeError("SPANet() returned a non-contiguous (not NCHW) image")


def time_configs(configs: dict[str, tuple[Callable[[], object], torch.nn.Module]],
                 repeats: int) -> dict[str, Timing]:
    timings = {name: Timing() for name in configs}
    with torch.inference_mode():
        for fn, _ in configs.values():  # warm-up: numba kernels, oneDNN primitives
            fn()
        for _ in range(repeats):
            for name, (fn, _) in configs.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                timings[name].wall.append(time.perf_counter() - start)
                timings[name].cpu.append(time.process_time() - start_cpu)
    return timings


def profile(size: int, bf16: bool) -> None:
    """Where the time of ``SPANet()`` goes: torch's profiler, the IRNN calls as one row."""
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as torch_profile

    configs = build(size, bf16)
    real = irnn_module.irnn_concat

    def recorded(*args: object, **kwargs: object) -> torch.Tensor:
        with record_function("IRNN (numba)"):
            return real(*args, **kwargs)

    irnn_module.irnn_concat = recorded
    try:
        for name in ("SPANet()", "SPANet() bf16") if bf16 else ("SPANet()",):
            fn = configs[name][0]
            with torch.inference_mode():
                fn()
                with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                    fn()
            print(f"\nprofile of {name}, 1 x 3 x {size} x {size} (self CPU time, all threads)")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    finally:
        irnn_module.irnn_concat = real


def status_mb(name: str) -> float:
    """A memory field of /proc/self/status (VmRSS: now, VmHWM: peak) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{name} not in /proc/self/status")


def memory_child(config: str, size: int) -> None:
    with torch.no_grad():  # load the numba kernels and oneDNN outside the measurement
        build(16, bf16=config.endswith("bf16"))[config][0]()
    fn = build(size, bf16=config.endswith("bf16"))[config][0]
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM: the pass's own peak
        f.write("5")
    with torch.no_grad():
        before = status_mb("VmRSS")
        fn()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
    peak = status_mb("VmHWM")
    print(json.dumps({"peak_mb": peak, "growth_mb": peak - before}))


def measure_memory(config: str, size: int, threads: int | None) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--memory-child", config, str(size)]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(size: int, repeats: int, threads: int | None, memory: bool, bf16: bool
           ) -> tuple[list[dict[str, object]], list[str]]:
    """Time every configuration at one size; print them; return the table rows and verdicts."""
    configs = build(size, bf16)
    check_agreement(configs)
    flops = {name: count_flops(fn) for name, (fn, _) in configs.items()
             if not name.startswith("peak")}
    flops["peak conv fp32"] = flops["peak conv bf16"] = 2 * 9 * 32 * 32 * size * size
    load_before = os.getloadavg()[0]
    timings = time_configs(configs, repeats)
    load_after = os.getloadavg()[0]
    mem = {name: measure_memory(name, size, threads) for name in configs
           if memory and not name.startswith("peak")}

    print(f"\nSPANet forward, 1 x 3 x {size} x {size}, {repeats} runs per configuration "
          f"(load average {load_before:.1f} before, {load_after:.1f} after)")
    print(f"{'configuration':<16} {'best s':>8} {'median s':>9} {'cpu s':>7} {'GFLOP':>7} "
          f"{'GFLOP/s':>8} {'of peak':>8} {'peak MB':>8} {'+pass MB':>9}")
    peak = "peak conv fp32"
    rows: list[dict[str, object]] = []
    for name, t in timings.items():
        rate = flops[name] / t.best
        m = mem.get(name, {"peak_mb": float("nan"), "growth_mb": float("nan")})
        rows.append({"size": size, "configuration": name, "best s": t.best,
                     "median s": t.median, "cpu s": t.best_cpu, "GFLOP/s": rate / 1e9,
                     "of fp32 peak": rate / (flops[peak] / timings[peak].best)})
        print(f"{name:<16} {t.best:8.3f} {t.median:9.3f} {t.best_cpu:7.3f} "
              f"{flops[name] / 1e9:7.2f} {rate / 1e9:8.1f} "
              f"{rate / (flops[peak] / timings[peak].best):8.2f} {m['peak_mb']:8.0f} "
              f"{m['growth_mb']:9.0f}")

    def ratio(slow: str, fast: str, work: tuple[float, float] = (1.0, 1.0)) -> str:
        """How many times faster ``fast`` runs (per unit of work): best, median, CPU time."""
        a, b = timings[slow], timings[fast]
        values = [(x / work[0]) / (y / work[1]) for x, y in
                  ((a.best, b.best), (a.median, b.median), (a.best_cpu, b.best_cpu))]
        return f"{values[0]:.2f} (medians: {values[1]:.2f}; CPU time: {values[2]:.2f})"

    share = flops["SPANet()"] / timings["SPANet()"].best / (flops[peak] / timings[peak].best)
    path = "fused" if fused_ops_available() else "not fused: the ops are missing"
    separate = (flops["SPANet() separate"] / timings["SPANet() separate"].best
                / (flops[peak] / timings[peak].best))
    lines = [f"{size} x {size} (load average {load_before:.1f} before, {load_after:.1f} "
             f"after): SPANet() vs plain: {ratio('plain', 'SPANet()')} times faster",
             f"{size} x {size}: SPANet() ({path}) vs its separate passes: "
             f"{ratio('SPANet() separate', 'SPANet()')} times faster; the separate passes' "
             f"share of the fp32 peak: {separate:.2f}",
             f"{size} x {size}: SPANet() share of the fp32 convolution peak: "
             f"{ratio(peak, 'SPANet()', (flops[peak], flops['SPANet()']))}; goal 0.8 at "
             f"256 x 256 on two cores: {'met' if share >= 0.8 else 'not met'}"]
    if bf16:
        speedup = timings["SPANet()"].best / timings["SPANet() bf16"].best
        lines.append(f"{size} x {size}: SPANet() bf16 vs fp32: "
                     f"{ratio('SPANet()', 'SPANet() bf16')} times faster; goal 1.8x: "
                     f"{'met' if speedup >= 1.8 else 'not met'}; the convolution alone: "
                     f"{ratio(peak, 'peak conv bf16')}")
    print("\n".join(lines))
    return rows, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and numba threads (default: torch's default)")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory (one subprocess per configuration)")
    parser.add_argument("--profile", action="store_true",
                        help="also print torch's profile of SPANet() at the first size")
    parser.add_argument("--out", default=None,
                        help="also write <OUT>/<NAME>.csv/.md (README: results/)")
    parser.add_argument("--name", default="model_speed",
                        help="file name of --out's table (default model_speed; README shows "
                        "model_speed, measured on Intel, and model_speed_amd)")
    parser.add_argument("--memory-child", nargs=2, metavar=("CONFIG", "SIZE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.name or Path(args.name).name != args.name or args.name.startswith("."):
        parser.error(f"--name: expected a plain file name (no folder), got {args.name!r}")
    if args.threads:
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]))
        return
    bf16 = cpu_has_fast_bf16()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{os.cpu_count()} CPU(s), fast bf16: "
          f"{', '.join(cpu_bf16_features()) if bf16 else 'no (bf16 rows skipped)'}, "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}")
    rows: list[dict[str, object]] = []
    verdicts: list[str] = []
    for size in args.sizes:
        size_rows, size_lines = report(size, args.repeats, args.threads, args.memory, bf16)
        rows += size_rows
        verdicts += size_lines
    if args.out:
        caption = (f"SPANet forward (batch 1, no_grad), best of {args.repeats} per "
                   f"configuration, torch {torch.__version__}, {torch.get_num_threads()} "
                   f"thread(s), {cpu_name()}, {os.cpu_count()} cores. "
                   + ". ".join(verdicts) + ".")
        write_table(pd.DataFrame(rows), Path(args.out) / args.name,
                    float_format={"best s": "%.3f", "median s": "%.3f", "cpu s": "%.3f",
                                  "GFLOP/s": "%.1f", "of fp32 peak": "%.2f"}, caption=caption)
    if args.profile:
        profile(args.sizes[0], bf16)


if __name__ == "__main__":
    main()
