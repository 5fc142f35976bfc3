"""Held-out check: photos kept out of training, and `heldout_check` on the held-out set.

The held-out rain conditions and the set's builder are tested in test_testsets.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from spanetlib.evaluation.evaluate import heldout_check
from spanetlib.io.files import read_image
from spanetlib.io.pairs import read_pair_list
from spanetlib.synthesis import rain
from spanetlib.synthesis.testsets import HELDOUT_RAIN_CONDITIONS, build_heldout_rain_set

SIZE = (32, 32)
HALVING_GAIN_DB = 20 * math.log10(2)  # error halved everywhere: MSE / 4
GAIN_COLUMNS = ("psnr_gain", "ssim_gain")
TABLE_COLUMNS = ["condition", "n", "psnr_input", "psnr_model", "psnr_gain", "ssim_input",
                 "ssim_model", "ssim_gain"]
NUMERIC_FIELDS = ("angle", "length", "density", "width", "blur")


# --------------------------------------------------------------------------------------------
# Photos
# --------------------------------------------------------------------------------------------
def test_original_background_names_unchanged() -> None:
    assert rain.BACKGROUND_NAMES == ("astronaut", "brick", "camera", "chelsea", "coffee",
                                     "grass", "hubble_deep_field", "motorcycle_left", "rocket")


def test_training_and_heldout_photos_are_disjoint() -> None:
    training, heldout = set(rain.TRAINING_BACKGROUND_NAMES), set(rain.HELDOUT_BACKGROUND_NAMES)
    assert not training & heldout
    assert training | {"coffee", "rocket"} == set(rain.BACKGROUND_NAMES)
    assert len(rain.HELDOUT_BACKGROUND_NAMES) == len(heldout) == 5


@pytest.mark.parametrize("name", rain.HELDOUT_BACKGROUND_NAMES)
def test_heldout_photos_load_as_rgb(name: str) -> None:
    image = rain.load_background(name)
    assert image.dtype == np.uint8
    assert image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 256
    assert image.std() > 5  # a real photo, not a blank
    small = rain.load_background(name, (24, 40))
    assert small.shape == (24, 40, 3) and small.dtype == np.uint8


@pytest.mark.parametrize("name", ["clock", "coins", "gravel"])
def test_grayscale_heldout_photos_repeat_the_channel(name: str) -> None:
    image = rain.load_background(name)
    assert np.array_equal(image[..., 0], image[..., 1])
    assert np.array_equal(image[..., 0], image[..., 2])


def test_unknown_photo_lists_the_heldout_names() -> None:
    with pytest.raises(ValueError, match=r"unknown background 'nope'.*gravel"):
        rain.load_background("nope")


# --------------------------------------------------------------------------------------------
# heldout_check
# --------------------------------------------------------------------------------------------
def _read_set(list_path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(read_image(r), read_image(c)) for r, c in read_pair_list(list_path)]


class RainScaler(nn.Module):
    """Knows the clean image of every rain image; returns ``clean + factor * (rain - clean)``.

    ``factor=0.5`` halves the error everywhere (a PSNR gain of 20 log10 2 dB); ``factor=2``
    doubles it (clipping to [0, 1] can only shrink the doubled error down to the original).
    """

    def __init__(self, list_path: Path, factor: float) -> None:
        super().__init__()
        self.factor = factor
        self.clean = {rain_image.tobytes(): clean for rain_image, clean in _read_set(list_path)}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        outs = []
        for image in x:
            key = (image.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
            clean = torch.from_numpy(self.clean[key.tobytes()]).permute(2, 0, 1).float() / 255
            outs.append(clean + self.factor * (image - clean))
        return torch.stack(outs), None


def _reference_set(tmp_path: Path) -> Path:
    """The set `heldout_check` builds with the defaults used below, built elsewhere."""
    return build_heldout_rain_set(tmp_path / "reference", n_per_condition=1, size=SIZE)


def test_heldout_check_identity_gains_nothing(tmp_path: Path, identity) -> None:
    table = heldout_check(identity, tmp_path, n_per_condition=1, size=SIZE)
    assert list(table.columns) == TABLE_COLUMNS
    assert list(table["condition"]) == [*HELDOUT_RAIN_CONDITIONS, "all"]
    assert list(table["n"]) == [1] * len(HELDOUT_RAIN_CONDITIONS) + [len(HELDOUT_RAIN_CONDITIONS)]
    assert (table["psnr_gain"] == 0).all() and (table["ssim_gain"] == 0).all()
    assert np.isfinite(table["psnr_input"]).all()
    assert table.loc[table["condition"] == "all", "psnr_input"].item() == pytest.approx(
        table["psnr_input"].iloc[:-1].mean())
    written = pd.read_csv(tmp_path / "heldout_check.csv")
    pd.testing.assert_frame_equal(written, table, check_dtype=False)
    assert "| angle +30 |" in (tmp_path / "heldout_check.md").read_text()


def test_heldout_check_halving_the_rain_gains_6_db(tmp_path: Path) -> None:
    model = RainScaler(_reference_set(tmp_path), factor=0.5)
    table = heldout_check(model, tmp_path / "check", n_per_condition=1, size=SIZE)
    assert table["psnr_gain"].to_numpy() == pytest.approx(HALVING_GAIN_DB, abs=1e-3)
    assert (table["ssim_gain"] > 0).all()


def test_heldout_check_doubling_the_rain_loses(tmp_path: Path) -> None:
    model = RainScaler(_reference_set(tmp_path), factor=2.0)
    table = heldout_check(model, tmp_path / "check", n_per_condition=1, size=SIZE)
    assert (table["psnr_gain"] < 0).all() and (table["ssim_gain"] < 0).all()


def test_heldout_check_other_conventions_get_suffixed_columns(tmp_path: Path,
                                                              identity) -> None:
    table = heldout_check(identity, tmp_path, n_per_condition=1, size=SIZE,
                          conventions=("standard", "y-matlab"))
    assert table.columns[-6:].tolist() == [f"{m}_{k}[y-matlab]" for m in ("psnr", "ssim")
                                           for k in ("input", "model", "gain")]
    assert (table["psnr_gain[y-matlab]"] == 0).all()


def test_heldout_check_rejects_unknown_convention(tmp_path: Path, identity) -> None:
    with pytest.raises(ValueError, match=r"unknown metric convention 'psnr-hvs'"):
        heldout_check(identity, tmp_path, n_per_condition=1, size=SIZE,
                      conventions=("psnr-hvs",))
