"""Our shipped SPANet weights trained on synthetic rain, and the recipe that made them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from spanetlib.evaluation.evaluate import heldout_check
from spanetlib.io.errors import InputError
from spanetlib.io.files import read_image
from spanetlib.models import build_model, load_pretrained
from spanetlib.models.pretrained import SYNTHETIC_WEIGHTS
from spanetlib.paper import shipped_weights as synthetic
from spanetlib.paper.figure_data import Sample, mean_attention_stats
from spanetlib.paper.shipped_weights import (
    SYNTHETIC_RECIPE,
    export_weights,
    train_synthetic_weights,
)
from spanetlib.synthesis.rain import (
    BACKGROUND_NAMES,
    HELDOUT_BACKGROUND_NAMES,
    TRAINING_BACKGROUND_NAMES,
    load_background,
    make_rain_image,
)
from spanetlib.training.checkpoints import atomic_torch_save
from spanetlib.training.config import make_config

pytestmark = pytest.mark.usefixtures("single_thread")


def test_recipe_trains_on_training_photos_only():
    assert set(TRAINING_BACKGROUND_NAMES) <= set(BACKGROUND_NAMES)
    assert not set(TRAINING_BACKGROUND_NAMES) & set(HELDOUT_BACKGROUND_NAMES)
    config = make_config("quick", train_list="x.txt", **SYNTHETIC_RECIPE["train"])
    assert config.model == "spanet" and config.channels_last and config.amp_cpu


def test_export_weights_keeps_model_and_config_only(tmp_path):
    torch.manual_seed(0)
    config = make_config("smoke", train_list="train.txt")
    model = build_model(config.model, **config.model_kwargs)
    ckpt = {"format": "spanetlib-train", "version": 1, "model": model.state_dict(),
            "config": config.to_dict(), "step": 7, "optimizer": {"state": {}},
            "rng": {"torch": torch.get_rng_state()}, "metrics": {"psnr": 20.0}}
    atomic_torch_save(ckpt, tmp_path / "last.pt")
    dest = export_weights(tmp_path / "last.pt", tmp_path / "weights.pth")
    slim = torch.load(dest, weights_only=True)
    assert set(slim) == {"format", "version", "model", "config", "step", "metrics"}
    loaded = load_pretrained(dest)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    with pytest.raises(InputError, match="not found"):
        export_weights(tmp_path / "missing.pt", tmp_path / "w.pth")
    torch.save({"net": {}}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a spanetlib training checkpoint"):
        export_weights(tmp_path / "other.pt", tmp_path / "w.pth")


def test_shipped_weights_are_a_finished_run_of_the_recipe():
    ckpt = torch.load(SYNTHETIC_WEIGHTS, map_location="cpu", weights_only=True)
    assert "optimizer" not in ckpt and "rng" not in ckpt
    config = ckpt["config"]
    assert config["model"] == "spanet" and ckpt["step"] == config["steps"]
    for key in ("crop", "batch_size", "lr", "mask_threshold", "seed"):
        assert config[key] == pytest.approx(SYNTHETIC_RECIPE["train"][key]), key
    model = load_pretrained("synthetic")
    assert not model.training and model.direction_attention


def test_shipped_weights_clearly_improve_heldout_rain(tmp_path):
    # Rain outside every preset of the synthesizer (angle, length, density, width and blur,
    # noise, blend), on photos the weights never saw.
    table = heldout_check("synthetic", tmp_path, n_per_condition=2, size=(128, 128), seed=1)
    rows = table.set_index("condition")
    assert len(rows) == 10
    gains = rows["psnr_gain"].drop("all")
    assert (gains > 0.25).all(), gains.to_dict()
    assert rows.loc["all", "psnr_gain"] > 3.0
    assert (rows["ssim_gain"] > 0).all(), rows["ssim_gain"].to_dict()


def test_derain_cli_with_synthetic_weights(tmp_path):
    clean = load_background("coffee", size=(96, 128))
    rain = make_rain_image(clean, level="medium", seed=3).rain
    from spanetlib.io.files import write_image

    write_image(tmp_path / "photo.png", rain)
    result = subprocess.run([sys.executable, "-m", "spanetlib.cli", "derain",
                             str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"),
                             "--weights", "synthetic", "--device", "cpu"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = read_image(tmp_path / "out" / "photo.png").astype(float)
    error_before = np.abs(rain.astype(float) - clean).mean()
    error_after = np.abs(out - clean).mean()
    assert error_after < 0.7 * error_before


def _recipe_checkpoint(path, **changes):
    """A training checkpoint of the recipe's run (``changes`` to its settings), no weights."""
    settings = {**SYNTHETIC_RECIPE["train"], **changes}
    config = make_config("quick", train_list="train.txt", **settings)
    atomic_torch_save({"format": "spanetlib-train", "version": 1, "model": {},
                       "config": config.to_dict(), "step": 3}, path)


def test_train_synthetic_checks_the_run_before_building_data(tmp_path, monkeypatch):
    """--resume: the checkpoint is validated first; no --resume: a run there is refused."""
    def build(*args, **kwargs):
        raise AssertionError("dataset built")

    monkeypatch.setattr(synthetic, "build_training_set", build)
    run = tmp_path / "run"
    with pytest.raises(InputError, match="nothing to resume: .*run/last.pt not found"):
        train_synthetic_weights(tmp_path, resume=True, progress=False)
    run.mkdir()
    (run / "last.pt").write_bytes(b"")
    with pytest.raises(InputError, match="cannot read checkpoint .*last.pt: empty file"):
        train_synthetic_weights(tmp_path, resume=True, progress=False)
    torch.save({"net": {}}, run / "last.pt")
    with pytest.raises(InputError, match="not a spanetlib training checkpoint"):
        train_synthetic_weights(tmp_path, resume=True, progress=False)
    _recipe_checkpoint(run / "last.pt", crop=64)
    with pytest.raises(InputError, match=r"cannot resume .*last.pt: it was not made by the "
                       r"recipe: crop is 64 in the checkpoint but 96 in the recipe"):
        train_synthetic_weights(tmp_path, resume=True, progress=False)
    with pytest.raises(InputError, match=r"holds a training run \(last.pt\); pass --resume"):
        train_synthetic_weights(tmp_path, progress=False)
    (run / "last.pt").unlink()
    (tmp_path / "spanet_synthetic.pth").write_bytes(b"earlier weights")
    with pytest.raises(InputError, match=r"spanet_synthetic.pth exists; pass --overwrite"):
        train_synthetic_weights(tmp_path, progress=False)
    # A matching checkpoint (other steps are fine) passes: only then is the data built; the
    # run's weights file is then replaced with --resume or --overwrite.
    _recipe_checkpoint(run / "last.pt", steps=300, milestones=(200,))
    with pytest.raises(AssertionError, match="dataset built"):
        train_synthetic_weights(tmp_path, resume=True, steps=400, progress=False)
    with pytest.raises(AssertionError, match="dataset built"):
        train_synthetic_weights(tmp_path, overwrite=True, progress=False)


def test_shipped_weights_attend_to_the_rain():
    # Issue 15's goal for the shipped weights: mean A_1 on the rain pixels >= 0.2 and at least
    # 1.5x that on the rain-free pixels (the first shipped weights had A_1 = 0 everywhere).
    samples = []
    for i, name in enumerate(("coffee", "rocket", "clock")):
        clean = load_background(name, size=(96, 96))
        for j, level in enumerate(("light", "medium", "heavy")):
            rain = make_rain_image(clean, level=level, seed=10 * i + j).rain
            samples.append(Sample(f"{name} {level}", rain, clean, clean))
    stats = mean_attention_stats(load_pretrained("synthetic"), samples)
    assert stats.on_rain >= 0.2 and stats.ratio >= 1.5, stats
