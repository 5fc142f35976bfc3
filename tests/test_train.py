"""spanetlib.training (train, config, checkpoints): the loop, profiles, exact resume, stops."""

from __future__ import annotations

import csv
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from spanetlib.io.errors import InputError
from spanetlib.models import MODEL_FACTORIES, build_model
from spanetlib.models.baselines import RESCAN
from spanetlib.models.spanet import SPANet
from spanetlib.paper.shipped_weights import SYNTHETIC_RECIPE
from spanetlib.training.config import TRAIN_PROFILES, TrainConfig, load_config, make_config
from spanetlib.training.losses import SPANetLoss
from spanetlib.training.train import main, train, train_command

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny convolutions: 2 threads are slower


def _write_dataset(write_pairs, root: Path, n: int = 6, size: int = 24, seed: int = 0) -> Path:
    """n smooth clean images; rain = clean + bright vertical stripes (trivially learnable)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for i in range(n):
        base = rng.uniform(0.2, 0.6, size=3)
        clean = np.stack([base[c] + 0.2 * np.sin(2 * np.pi * (xx * (c + 1) + yy * (i + 1)) / 2)
                          for c in range(3)], axis=-1).clip(0, 1)
        rain = clean.copy()
        rain[:, (i % 4)::4] += 0.35
        images.append((rain.clip(0, 1), clean))
    write_pairs(root / "test.txt", images[:2], clean_name="gt/{i}gt.png")
    return write_pairs(root / "train.txt", images, clean_name="gt/{i}gt.png")


@pytest.fixture(scope="module")
def data_list(tmp_path_factory: pytest.TempPathFactory, write_pairs) -> Path:
    return _write_dataset(write_pairs, tmp_path_factory.mktemp("pairs"))


@pytest.fixture
def config(data_list: Path, tiny_spanet: dict) -> Callable[..., TrainConfig]:
    """``config(out, **overrides)``: a 4-step tiny-SPANet run on ``data_list`` into ``out``."""

    def make(out: Path, **overrides) -> TrainConfig:
        values = {"model_kwargs": tiny_spanet, "train_list": str(data_list), "crop": 16,
                  "batch_size": 2, "steps": 4, "lr": 3e-3, "milestones": (3,), "gamma": 0.5,
                  "seed": 7, "checkpoint_every": 2, "val_every": 0, "log_every": 1,
                  "out_dir": str(out), "device": "cpu"}
        values.update(overrides)
        return make_config("smoke", **values)

    return make


def _read_log(path: Path) -> list[dict[str, str]]:
    text = path.read_text()
    assert text.endswith("\n")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        assert None not in row and None not in row.values(), row   # no partial rows
    return rows


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------ config
def test_paper_profile_matches_the_paper():
    cfg = make_config("paper")
    assert (cfg.model, cfg.lr, cfg.gamma, cfg.steps, cfg.batch_size, cfg.crop, cfg.seed) == (
        "spanet", 5e-3, 0.1, 60_000, 32, 256, 2019)
    assert cfg.milestones == (5_000, 15_000, 30_000, 50_000)
    assert (cfg.l1_weight, cfg.ssim_weight, cfg.attention_weight) == (1.0, 1.0, 1.0)
    assert cfg.model_kwargs == {"channels": 32}
    assert set(TRAIN_PROFILES) == {"paper", "quick", "smoke"}
    smoke, quick = make_config("smoke"), make_config("quick")
    assert smoke.steps * smoke.batch_size * smoke.crop ** 2 < quick.steps * quick.batch_size \
        * quick.crop ** 2 < cfg.steps * cfg.batch_size * cfg.crop ** 2


def test_make_config_overrides_and_per_model_kwargs():
    cfg = make_config("quick", steps=123, lr=0.01, model="DDN")
    assert (cfg.steps, cfg.lr, cfg.model, cfg.model_kwargs) == (123, 0.01, "ddn", {})
    cfg = make_config("quick", model_kwargs={"channels": 8})
    assert cfg.model_kwargs == {"channels": 8}
    # profiles themselves are not modified by overrides
    assert TRAIN_PROFILES["quick"]["model_kwargs"]["spanet"] != {"channels": 8}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"steps": 0}, "steps: expected a positive integer, got 0"),
    ({"device": "gpu"}, "device: expected 'auto', 'cpu' or 'cuda', got 'gpu'"),
    ({"lr": -1.0}, "lr: expected > 0"),
    ({"milestones": (10, 5)}, "milestones: expected increasing"),
    ({"attention_weight": -1.0}, "attention_weight: expected >= 0"),
    ({"attention_balanced": 1}, "attention_balanced: expected true or false, got 1"),
    ({"model": "unet"}, "unknown model 'unet'"),
    ({"stepz": 3}, r"unknown TrainConfig field\(s\) \['stepz'\]"),
])
def test_make_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_config("smoke", **kwargs)


def test_make_config_unknown_profile_and_bad_model_kwargs():
    with pytest.raises(ValueError, match="unknown profile 'huge'; expected one of"):
        make_config("huge")
    with pytest.raises(TypeError, match="model_kwargs: expected a dict"):
        TrainConfig(model_kwargs=[1])


def test_config_dict_and_json_round_trip(tmp_path):
    cfg = make_config("quick", steps=5, train_list=tmp_path / "x.txt")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"profile": "smoke", "steps": 3, "model": "prenet"}))
    loaded = load_config(path)
    assert (loaded.steps, loaded.model, loaded.crop) == (3, "prenet", TRAIN_PROFILES["smoke"]
                                                         ["crop"])
    path.write_text("{not json")
    with pytest.raises(InputError, match="is not valid JSON"):
        load_config(path)
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "missing.json")


def test_build_model_names(tiny_spanet):
    assert set(MODEL_FACTORIES) == {"spanet", "ddn", "rescan", "prenet"}
    model = build_model("SPANet", **tiny_spanet)
    image, attention = model(torch.rand(1, 3, 8, 8))
    assert image.shape == (1, 3, 8, 8) and attention.shape == (1, 1, 8, 8)
    image, attention = build_model("PReNet", channels=4, stages=2, num_res_blocks=1)(
        torch.rand(1, 3, 8, 8))
    assert image.shape == (1, 3, 8, 8) and attention is None
    with pytest.raises(ValueError, match=r"unknown model 'unet'; expected one of \['ddn'"):
        build_model("unet")


# ------------------------------------------------------------------------------ training
def test_missing_train_list_is_input_error(tmp_path, config):
    with pytest.raises(InputError, match="train list not found"):
        train(config(tmp_path / "run", train_list=tmp_path / "nope.txt"), progress=False)
    with pytest.raises(InputError, match="no train list given"):
        train(make_config("smoke", out_dir=str(tmp_path)), progress=False)


def test_too_few_pairs_for_the_batch(tmp_path, config):
    with pytest.raises(InputError, match=r"has 6 pair\(s\), fewer than the batch size 8"):
        train(config(tmp_path / "run", batch_size=8), progress=False)


@pytest.mark.slow  # enough steps for the loss to fall: seconds, not a unit test
def test_loss_decreases_on_a_learnable_task(tmp_path, config):
    losses: list[float] = []
    cfg = config(tmp_path / "run", steps=30, lr=1e-2, milestones=(), checkpoint_every=0,
                  log_every=10, attention_weight=0.0)
    result = train(cfg, progress=False, callbacks=[lambda info: losses.append(info["loss"])])
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    rows = _read_log(result.log_path)
    assert [int(r["step"]) for r in rows] == [10, 20, 30]
    assert float(rows[-1]["psnr"]) > float(rows[0]["psnr"])


def test_checkpoint_contents_and_log_columns(tmp_path, data_list, config, tiny_spanet):
    cfg = config(tmp_path / "run", val_list=str(data_list.parent / "test.txt"),
                  val_every=2, val_crop=16, max_val_images=2)
    result = train(cfg, progress=False)
    assert result.checkpoint == tmp_path / "run" / "final.pt" and result.step == 4
    ckpt = _load(result.checkpoint)
    assert {"model", "config", "step", "optimizer", "scheduler", "rng"} <= set(ckpt)
    assert ckpt["step"] == 4 and ckpt["config"]["model"] == "spanet"
    assert ckpt["config"]["model_kwargs"] == tiny_spanet
    assert set(ckpt["rng"]) == {"python", "numpy", "torch", "cuda", "sampler"}
    assert ckpt["rng"]["sampler"] == {"epoch": 1, "batches_done": 1}     # 3 batches per epoch
    assert not any(k.startswith("module.") for k in ckpt["model"])
    model = build_model(ckpt["config"]["model"], **ckpt["config"]["model_kwargs"])
    model.load_state_dict(ckpt["model"])
    assert ckpt["scheduler"]["last_epoch"] == 4
    assert ckpt["param_digests"] and len(set(ckpt["param_digests"])) == 1
    assert _load(result.last_checkpoint)["step"] == 4

    rows = _read_log(result.log_path)
    header = list(rows[0])
    assert header[:4] == ["step", "epoch", "lr", "loss"]
    assert header[-4:] == ["psnr", "val_psnr", "val_ssim", "elapsed_s"]
    assert any(h.startswith("loss_") for h in header)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert [r["val_psnr"] != "" for r in rows] == [False, True, False, True]
    assert float(rows[0]["lr"]) == pytest.approx(3e-3) and float(rows[3]["lr"]) == \
        pytest.approx(1.5e-3)                    # x0.5 at step 3
    assert 0 < float(rows[-1]["val_ssim"]) <= 1
    assert result.metrics["step"] == 4.0 and "val_psnr" in result.metrics
    assert "trained 4 steps" in str(result)


def test_resume_is_exact(tmp_path, config):
    kw = {"milestones": (5,), "deterministic": True}
    straight = train(config(tmp_path / "a", steps=8, **kw), progress=False)
    train(config(tmp_path / "b", steps=4, **kw), progress=False)
    resumed = train(config(tmp_path / "b", steps=8, **kw), resume=True,
                    progress=False)
    assert not torch.are_deterministic_algorithms_enabled()          # restored afterwards
    a, b = _load(straight.checkpoint), _load(resumed.checkpoint)
    assert a["step"] == b["step"] == 8
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=1e-6)
    assert a["rng"]["sampler"] == b["rng"]["sampler"]
    rows_a, rows_b = _read_log(straight.log_path), _read_log(resumed.log_path)
    assert [r["step"] for r in rows_b] == [str(s) for s in range(1, 9)]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert float(ra["loss"]) == pytest.approx(float(rb["loss"]), abs=1e-6)
    # A model that never saw the resume differs: the test can fail.
    other = _load(train(config(tmp_path / "c", steps=8, milestones=(5,), seed=8),
                        progress=False).checkpoint)
    assert any(not torch.equal(other["model"][k], v) for k, v in a["model"].items())


def test_resume_errors(tmp_path, config, tiny_spanet):
    with pytest.raises(InputError, match="nothing to resume"):
        train(config(tmp_path / "run"), resume=True, progress=False)
    train(config(tmp_path / "run", steps=2), progress=False)
    with pytest.raises(InputError, match="model is 'spanet' in the checkpoint but 'prenet' now"):
        train(config(tmp_path / "run", model="prenet", model_kwargs={}), resume=True,
              progress=False)
    with pytest.raises(InputError, match="model_kwargs is"):
        train(config(tmp_path / "run", model_kwargs={**tiny_spanet, "channels": 6}),
              resume=True, progress=False)


def test_existing_run_is_refused_without_resume_or_overwrite(tmp_path, config, monkeypatch):
    run = tmp_path / "run"
    train(config(run, steps=2), progress=False)
    (run / "notes.txt").write_text("mine")
    before = {name: (run / name).read_bytes() for name in ("final.pt", "last.pt", "log.csv")}

    def heavy(*args, **kwargs):
        raise AssertionError("data or model built before the output check")

    with monkeypatch.context() as patch:   # refused before any data or model is built
        patch.setattr("spanetlib.training.train.PairDataset", heavy)
        patch.setattr("spanetlib.training.train.build_model", heavy)
        with pytest.raises(InputError, match=r"holds a training run \(final.pt, last.pt, "
                           r"log.csv\); pass --resume .* or --overwrite"):
            train(config(run, steps=3), progress=False)
        with pytest.raises(InputError, match="resume and overwrite"):
            train(config(run, steps=3), resume=True, overwrite=True, progress=False)
    assert {name: (run / name).read_bytes() for name in before} == before

    def stop_at_1(info):
        raise KeyboardInterrupt

    # --overwrite: the run's own files go (no stale final.pt beside a new last.pt), the rest stays.
    with pytest.raises(KeyboardInterrupt):
        train(config(run, steps=3, checkpoint_every=0), overwrite=True, progress=False,
              callbacks=[stop_at_1])
    assert not (run / "final.pt").exists() and _load(run / "last.pt")["step"] == 1
    assert [r["step"] for r in _read_log(run / "log.csv")] == ["1"]
    assert (run / "notes.txt").read_text() == "mine"
    result = train(config(run, steps=3), overwrite=True, progress=False)
    assert _load(result.checkpoint)["step"] == 3


def test_output_folder_is_checked_before_the_data(tmp_path, config, data_list):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot create .*file/run: .*file is not a folder"):
        train(config(tmp_path / "file" / "run", train_list=str(tmp_path / "nope.txt")),
              progress=False)
    train(config(tmp_path / "a", steps=1), progress=False)
    with pytest.raises(InputError, match=r"holds a training run.*--overwrite"):
        train_command("smoke", train_list=data_list, out_dir=tmp_path / "a", steps=1,
                      device="cpu", progress=False)


def test_keyboard_interrupt_saves_last_and_resumes(tmp_path, config):
    def stop_at_3(info):
        if info["step"] == 3:
            raise KeyboardInterrupt

    cfg = config(tmp_path / "run", steps=6, checkpoint_every=0)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False, callbacks=[stop_at_3])
    assert _load(tmp_path / "run" / "last.pt")["step"] == 3
    assert not (tmp_path / "run" / "final.pt").exists()
    assert [r["step"] for r in _read_log(tmp_path / "run" / "log.csv")] == ["1", "2", "3"]
    # A torn line (killed mid-write) and rows past the checkpoint are dropped on resume.
    with open(tmp_path / "run" / "log.csv", "a") as fh:
        fh.write("4,1,0.003,0.5\n5,1,0.0")
    result = train(cfg, resume=True, progress=False)
    assert result.step == 6
    assert [r["step"] for r in _read_log(result.log_path)] == ["1", "2", "3", "4", "5", "6"]


def test_sigterm_saves_last_and_exits(tmp_path, config):
    def term_at_2(info):
        if info["step"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exc:
        train(config(tmp_path / "run", steps=6, checkpoint_every=0), progress=False,
              callbacks=[term_at_2])
    assert exc.value.code == 128 + signal.SIGTERM
    assert _load(tmp_path / "run" / "last.pt")["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is before          # handler restored


def test_no_attention_loss_option(tmp_path, config):
    seen: list[dict] = []
    train(config(tmp_path / "run", steps=2, attention_weight=0.0), progress=False,
          callbacks=[seen.append])
    for info in seen:
        others = sum(v for k, v in info.items() if k.startswith("loss_") and "att" not in k)
        assert info["loss"] == pytest.approx(others, rel=1e-5)
    seen.clear()
    train(config(tmp_path / "run2", steps=2), progress=False, callbacks=[seen.append])
    others = sum(v for k, v in seen[0].items() if k.startswith("loss_") and "att" not in k)
    assert seen[0]["loss"] > others + 1e-6


def test_attention_balance_per_profile_reaches_the_loss(tmp_path, config, monkeypatch):
    # The paper's plain MSE for the authors' dense masks; balanced for our sparse ones.
    assert make_config("paper").attention_balanced is False
    assert make_config("paper").mask_threshold == 0
    for profile in ("quick", "smoke"):
        cfg = make_config(profile)
        assert cfg.attention_balanced is True and cfg.mask_threshold > 0
    assert SYNTHETIC_RECIPE["train"]["attention_balanced"] is True
    assert TrainConfig.from_dict({}).attention_balanced is False   # old checkpoints' configs
    made = []

    class Spy(SPANetLoss):
        def __init__(self, **kwargs):
            made.append(kwargs["attention_balanced"])
            super().__init__(**kwargs)

    monkeypatch.setattr("spanetlib.training.train.SPANetLoss", Spy)
    for balanced in (True, False):
        train(config(tmp_path / str(balanced), steps=1, attention_balanced=balanced),
              progress=False)
    assert made == [True, False]


@pytest.mark.parametrize(("name", "kwargs"), [
    ("ddn", {"channels": 4, "num_blocks": 1, "radius": 2}),
    ("rescan", {"channels": 4, "stages": 2, "depth": 3}),
    ("prenet", {"channels": 4, "stages": 2, "num_res_blocks": 1}),
])
def test_baseline_trains_one_step(tmp_path, config, name, kwargs):
    result = train(config(tmp_path / "run", model=name, model_kwargs=kwargs, steps=1),
                   progress=False)
    ckpt = _load(result.checkpoint)
    fresh = build_model(name, **kwargs).state_dict()
    assert ckpt["config"]["model"] == name and ckpt["step"] == 1
    assert any(not torch.equal(fresh[k], v) for k, v in ckpt["model"].items()
               if v.is_floating_point())


def test_train_command_with_a_dataset_folder(tmp_path, data_list, tiny_spanet):
    result = train_command("smoke", train_list=data_list.parent, out_dir=tmp_path / "run",
                           steps=2, device="cpu", progress=False, model_kwargs=tiny_spanet,
                           crop=16, val_list=data_list.parent, val_crop=16)
    ckpt = _load(result.checkpoint)
    assert ckpt["config"]["train_list"] == str(data_list)
    assert ckpt["config"]["val_list"] == str(data_list.parent / "test.txt")
    assert ckpt["config"]["milestones"] == [2]            # smoke's 8 of 10 steps, scaled to 2
    with pytest.raises(InputError, match="dataset folder not found"):
        train_command("smoke", train_list=tmp_path / "missing", out_dir=tmp_path / "x")
    with pytest.raises(InputError, match="unknown profile"):
        train_command("huge", train_list=data_list, out_dir=tmp_path / "x")


def test_module_entry_point(tmp_path, config, capsys):
    cfg = config(tmp_path / "run", steps=1).to_dict()
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    assert main(["--config", str(path), "--no-progress"]) == 0
    assert "trained 1 steps" in capsys.readouterr().out
    assert main(["--config", str(tmp_path / "nope.json")]) == 2
    assert "config file not found" in capsys.readouterr().err


class _NaNModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.scale * float("nan"), None


def test_nan_loss_stops_with_a_clear_error(tmp_path, config, monkeypatch):
    monkeypatch.setitem(MODEL_FACTORIES, "nan", lambda **kw: _NaNModel())
    with pytest.raises(FloatingPointError, match="the training loss is nan at step 1"):
        train(config(tmp_path / "run", model="nan", model_kwargs={}), progress=False)


def test_missing_val_list_and_worker_processes(tmp_path, config):
    with pytest.raises(InputError, match="validation list not found"):
        train(config(tmp_path / "run", val_list=str(tmp_path / "v.txt")),
              progress=False)
    # Same weights with a loader worker process (crops keyed by seed, epoch and index).
    a = train(config(tmp_path / "a", steps=2, num_workers=1), progress=False)
    b = train(config(tmp_path / "b", steps=2), progress=False)
    wa, wb = _load(a.checkpoint)["model"], _load(b.checkpoint)["model"]
    for key, value in wa.items():
        torch.testing.assert_close(wb[key], value, rtol=0, atol=1e-6)


def test_channels_last_on_cpu_trains_like_nchw(tmp_path, config, monkeypatch):
    formats = []
    real_forward = SPANet.forward

    def spy(self, x):
        formats.append(self.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
                       and x.is_contiguous(memory_format=torch.channels_last))
        return real_forward(self, x)

    monkeypatch.setattr(SPANet, "forward", spy)
    kw = {"steps": 3, "milestones": (), "deterministic": True, "checkpoint_every": 0}
    nchw = _load(train(config(tmp_path / "a", channels_last=False, **kw),
                       progress=False).checkpoint)
    assert formats == [False] * 3
    formats.clear()
    nhwc = _load(train(config(tmp_path / "b", channels_last=True, **kw),
                       progress=False).checkpoint)
    assert formats == [True] * 3
    for key, value in nchw["model"].items():
        torch.testing.assert_close(nhwc["model"][key], value, rtol=1e-4, atol=1e-5)


def test_amp_cpu_autocasts_only_where_bf16_is_fast(tmp_path, config, monkeypatch):
    dtypes = []
    real_forward = SPANet.forward

    def spy(self, x):
        out = real_forward(self, x)
        dtypes.append(out[0].dtype)
        return out

    monkeypatch.setattr(SPANet, "forward", spy)
    kw = {"steps": 1, "milestones": (), "checkpoint_every": 0, "amp_cpu": True}
    monkeypatch.setattr("spanetlib.training.train.cpu_has_fast_bf16", lambda: True)
    train(config(tmp_path / "a", **kw), progress=False)
    monkeypatch.setattr("spanetlib.training.train.cpu_has_fast_bf16", lambda: False)
    train(config(tmp_path / "b", **kw), progress=False)
    train(config(tmp_path / "c", **{**kw, "amp_cpu": False}), progress=False)
    assert dtypes == [torch.bfloat16, torch.float32, torch.float32]


def test_cpu_bf16_falls_back_where_its_gradients_are_wrong(tmp_path, config, monkeypatch):
    """RESCAN's dilated 24-channel convolutions gave NaN gradients in channels-last bf16."""
    formats, autocast = [], []
    real_forward = RESCAN.forward

    def spy(self, x):
        out = real_forward(self, x)
        formats.append(x.is_contiguous(memory_format=torch.channels_last)
                       and x.stride(1) == 1)
        autocast.append(torch.is_autocast_enabled("cpu"))  # RESCAN's output is x - R: float32
        return out

    monkeypatch.setattr(RESCAN, "forward", spy)
    monkeypatch.setattr("spanetlib.training.train.cpu_has_fast_bf16", lambda: True)
    rescan = {"channels": 8, "stages": 2, "depth": 5}  # dilations 1, 1, 2 on 8 channels
    kw = {"model": "rescan", "model_kwargs": rescan, "steps": 2, "milestones": (),
          "checkpoint_every": 0, "amp_cpu": True, "channels_last": True}
    with pytest.warns(RuntimeWarning, match="wrong in channels-last .* NCHW memory instead"):
        result = train(config(tmp_path / "a", **kw), progress=False)
    assert formats == [False, False] and autocast == [True, True]
    assert np.isfinite(result.metrics["loss"]) and np.isfinite(result.metrics["psnr"])
    formats.clear()
    autocast.clear()
    monkeypatch.setattr("spanetlib.training.train.bf16_training_faults", lambda *a: ["conv (x)"])
    with pytest.warns(RuntimeWarning, match="training in float32 instead"):
        train(config(tmp_path / "b", **kw), progress=False)
    assert formats == [True, True] and autocast == [False, False]
