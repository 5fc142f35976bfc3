"""DistributedDataParallel training: two CPU ranks (gloo) launched by torchrun."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spanetlib.models import build_model
from spanetlib.training.config import make_config

pytestmark = [pytest.mark.slow,  # torchrun starts two Python processes that train
              pytest.mark.skipif(not torch.distributed.is_available(),
                                 reason="torch.distributed is not available")]


def _digest(state: dict[str, torch.Tensor]) -> str:
    sha = hashlib.sha1()
    for name, tensor in sorted(state.items()):
        sha.update(name.encode())
        sha.update(tensor.contiguous().numpy().tobytes())
    return sha.hexdigest()


def test_torchrun_two_cpu_ranks(tmp_path: Path, write_pairs, tiny_spanet: dict, free_port):
    rng = np.random.default_rng(0)
    images = []
    for i in range(8):
        clean = rng.uniform(0.2, 0.6, size=(20, 20, 3))
        rain = clean.copy()
        rain[:, i % 3::3] += 0.3
        images.append((rain.clip(0, 1), clean))
    write_pairs(tmp_path / "train.txt", images, rain_name="r{i}.png", clean_name="c{i}.png")
    out = tmp_path / "run"
    kwargs = tiny_spanet
    cfg = make_config("smoke", model_kwargs=kwargs, train_list=str(tmp_path / "train.txt"),
                      crop=16, batch_size=4, steps=4, checkpoint_every=2, log_every=1,
                      out_dir=str(out), device="cpu", seed=3)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={free_port}",
           "-m", "spanetlib.training.train", "--config", str(tmp_path / "cfg.json"),
           "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("trained 4 steps") == 1            # only rank 0 reports

    # One run folder written by rank 0 alone: two checkpoints (last/final) and one log.
    assert sorted(p.name for p in out.iterdir()) == ["final.pt", "last.pt", "log.csv"]
    ckpt = torch.load(out / "final.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["world_size"] == 2
    assert not any(k.startswith("module.") for k in ckpt["model"])
    # Both ranks ended with the same parameters, equal to the saved ones.
    assert len(ckpt["param_digests"]) == 2
    assert ckpt["param_digests"][0] == ckpt["param_digests"][1] == _digest(ckpt["model"])
    torch.manual_seed(3)                                        # the run's seed
    model = build_model("spanet", **kwargs)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(ckpt["model"])
    assert any(not torch.equal(initial[k], v) for k, v in ckpt["model"].items())
    # 8 pairs / (2 ranks x 2 per rank) = 2 steps per epoch.
    assert ckpt["rng"]["sampler"] == {"epoch": 2, "batches_done": 0}

    with open(out / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
