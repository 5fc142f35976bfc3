"""One training step of every model of Tables 2 and 4 at a training profile's sizes, fp32 vs bf16.

What `spanet reproduce` spends most of its time on: ``spanetlib.paper.runs.ensure_seed_runs`` trains
each run in a one-thread process (two runs side by side on two cores). This benchmark builds
every distinct model of those runs as the trainer does (`spanetlib.models.build_model` with the
profile's arguments, Adam, `spanetlib.training.losses.SPANetLoss` with the profile's weights) and
times one optimizer step on random crops of the profile's size and batch, on one thread (torch and
numba), two ways, interleaved step by step so their ratio compares like with like on a shared
machine:

- ``float32``: channels-last float32, the trainer without ``amp_cpu``;
- ``trainer``: what the trainer runs with ``amp_cpu=True`` on this CPU: bf16 autocast where the
  CPU has fast bf16 and the model's convolutions pass the gradient check
  (`spanetlib.training.train.checked_cpu_bf16`: RESCAN's dilated 24-channel layers train in NCHW
  memory), float32 elsewhere.

It writes ``results/training_step.csv`` and ``.md`` (README.md copies the table): per model,
the runs that train it, the median seconds per step each way and the speed-up; the caption
projects the optimizer time of all the profile's runs (steps x seeds x runs, divided by the
one-thread workers; data loading and validation come on top, the run logs' ``elapsed_s`` has
the whole) and gives the load average before and after.

Usage::

    python benchmarks/bench_training_step.py [--profile quick] [--repeats 8] [--steps 240]
                                             [--seeds 3] [--workers 2] [--out results]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numba
import pandas as pd
import torch

from spanetlib.evaluation.evaluate import write_table
from spanetlib.models import build_model
from spanetlib.models.device import cpu_has_fast_bf16
from spanetlib.paper.reproduce import cpu_name
from spanetlib.paper.runs import TABLE2_ORIGINAL_RUNS, TABLE2_RUNS, TABLE4_RUNS, RunSpec
from spanetlib.training.config import TRAIN_PROFILES
from spanetlib.training.losses import SPANetLoss
from spanetlib.training.train import checked_cpu_bf16


def model_key(spec: RunSpec) -> str:
    """Runs of one model and arguments cost the same per step (whatever data or loss weight)."""
    return f"{spec.model}:{sorted(spec.model_kwargs.items())}"


def distinct_models(specs: dict[str, RunSpec]) -> dict[str, RunSpec]:
    """One spec per distinct model and arguments, under the first run folder that uses it."""
    out: dict[str, RunSpec] = {}
    for folder, spec in specs.items():
        if model_key(spec) not in {model_key(s) for s in out.values()}:
            out[folder] = spec
    return out


def build(spec: RunSpec, profile: str) -> torch.nn.Module:
    """``spec``'s model with the profile's arguments, seeded."""
    base = TRAIN_PROFILES[profile]
    torch.manual_seed(0)
    return build_model(spec.model, **{**base["model_kwargs"].get(spec.model, {}),
                                       **spec.model_kwargs})


def make_step(spec: RunSpec, profile: str, bf16: bool, memory_format: torch.memory_format
              ) -> Callable[[], None]:
    """A closure running one optimizer step of ``spec``'s model as the trainer does."""
    base = TRAIN_PROFILES[profile]
    net = build(spec, profile).to(memory_format=memory_format)
    optimizer = torch.optim.Adam(net.parameters(), lr=base["lr"])
    criterion = SPANetLoss(l1_weight=base["l1_weight"], ssim_weight=base["ssim_weight"],
                           attention_weight=base["attention_weight"],
                           attention_balanced=base.get("attention_balanced", False))
    n, c = base["batch_size"], base["crop"]
    rain = torch.rand(n, 3, c, c).contiguous(memory_format=memory_format)
    clean = torch.rand(n, 3, c, c)
    mask = (torch.rand(n, 1, c, c) > 0.9).float()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred, attention = net(rain)
        attention = attention.float() if attention is not None else None
        total, _ = criterion(pred.float(), clean, attention=attention, mask=mask)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=sorted(TRAIN_PROFILES))
    parser.add_argument("--repeats", type=int, default=8, help="timed steps per precision")
    parser.add_argument("--steps", type=int, default=240, help="steps per run (projection)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per run (projection)")
    parser.add_argument("--workers", type=int, default=2, help="runs side by side (projection)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results"),
                        help="folder of training_step.csv/.md (default: results/)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    fast_bf16 = cpu_has_fast_bf16()
    # Every run folder the notebooks train once per seed (Table 4's full model is Table 2's).
    all_runs = {spec.run: spec for spec in (*TABLE2_RUNS.values(), *TABLE2_ORIGINAL_RUNS.values(),
                                            *TABLE4_RUNS.values())}
    runs_per_model: dict[str, int] = {}
    for spec in all_runs.values():
        runs_per_model[model_key(spec)] = runs_per_model.get(model_key(spec), 0) + 1
    load_before = os.getloadavg()[0]
    base = TRAIN_PROFILES[args.profile]
    rows = []
    totals = {"float32": 0.0, "trainer": 0.0}
    for spec in distinct_models(all_runs).values():
        # What the trainer does with amp_cpu: bf16 after the check, maybe in NCHW memory.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            bf16, fmt = (checked_cpu_bf16(build(spec, args.profile), True,
                                           base["batch_size"], base["crop"])
                         if fast_bf16 else (False, torch.channels_last))
        steps = {"float32": make_step(spec, args.profile, False, torch.channels_last),
                 "trainer": make_step(spec, args.profile, bf16, fmt)}
        times: dict[str, list[float]] = {k: [] for k in steps}
        for fn in steps.values():  # warm-up: oneDNN primitives, numba compilation
            fn()
            fn()
        for _ in range(args.repeats):
            for name, fn in steps.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        med = {k: statistics.median(v) for k, v in times.items()}
        n_runs = runs_per_model[model_key(spec)]
        for k in med:
            totals[k] += med[k] * n_runs * args.steps * args.seeds
        layout = "channels-last" if fmt == torch.channels_last else "NCHW"
        rows.append({"model": f"{spec.model} {dict(spec.model_kwargs) or ''}".strip(),
                     "runs": n_runs, "float32 s/step": med["float32"],
                     "trainer": f"{'bf16' if bf16 else 'float32'}, {layout}",
                     "trainer s/step": med["trainer"],
                     "speed-up": med["float32"] / med["trainer"]})
        print(rows[-1], flush=True)
    load_after = os.getloadavg()[0]
    projected = {k: v / args.workers / 60 for k, v in totals.items()}
    caption = (f"One training step at `{args.profile}` (batch {base['batch_size']} x "
               f"{base['crop']} x {base['crop']}, one thread; float32 channels-last vs what "
               f"the trainer runs, `amp_cpu`), median of {args.repeats}, {platform_name()}; "
               f"optimizer steps of all runs ({args.steps} steps x {args.seeds} seeds, "
               f"{args.workers} side by side): {projected['float32']:.1f} min in float32, "
               f"{projected['trainer']:.1f} min as trained; load average {load_before:.2f} "
               f"before, {load_after:.2f} after.")
    print(caption)
    write_table(pd.DataFrame(rows), Path(args.out) / "training_step",
                float_format={"float32 s/step": "%.3f", "trainer s/step": "%.3f",
                              "speed-up": "%.2f"}, caption=caption)


def platform_name() -> str:
    """The CPU model and core count, as `spanet reproduce` records them."""
    return f"{cpu_name()}, {os.cpu_count()} cores"


if __name__ == "__main__":
    main()
