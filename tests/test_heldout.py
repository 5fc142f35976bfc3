"""Held-out check: photos kept out of training, rain outside the synthesizer's presets."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from spanetlib import rain
from spanetlib.data import (
    HELDOUT_RAIN_CONDITIONS,
    build_heldout_rain_set,
    build_synthetic_video_scenes,
    read_pair_list,
)
from spanetlib.evaluate import heldout_check
from spanetlib.fileio import read_image

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
    assert rain.__all__ == sorted(rain.__all__)


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
# Conditions
# --------------------------------------------------------------------------------------------
def _training_settings() -> list[tuple[rain.RainParams, float, str]]:
    """(params, noise_sigma, blend) of every preset as the training data uses it."""
    image_defaults = inspect.signature(rain.make_rain_image).parameters
    video_defaults = inspect.signature(rain.make_rain_video).parameters
    settings = [(params, image_defaults["noise_sigma"].default, image_defaults["blend"].default)
                for params in rain.IMAGE_RAIN_LEVELS.values()]
    settings += [(params, video_defaults["noise_sigma"].default, video_defaults["blend"].default)
                 for params in rain.DENSITY_PRESETS.values()]
    return settings


def _condition_settings(condition: dict) -> tuple[rain.RainParams, float, str]:
    kwargs = dict(condition)
    level = kwargs.pop("level", "medium")
    noise_sigma = kwargs.pop("noise_sigma", 0.0)
    blend = kwargs.pop("blend", "screen")
    return rain.IMAGE_RAIN_LEVELS[level].replace(**kwargs), noise_sigma, blend


def _outside_ranges(condition: dict) -> list[str]:
    """Parameters of ``condition`` outside the [min, max] range the presets cover."""
    presets = _training_settings()
    params, noise_sigma, blend = _condition_settings(condition)
    outside = []
    for field in NUMERIC_FIELDS:
        values = [getattr(p, field) for p, _, _ in presets]
        if not min(values) <= getattr(params, field) <= max(values):
            outside.append(field)
    noises = [noise for _, noise, _ in presets]
    if not min(noises) <= noise_sigma <= max(noises):
        outside.append("noise_sigma")
    if blend not in {b for _, _, b in presets}:
        outside.append("blend")
    return outside


@pytest.mark.parametrize("name", list(HELDOUT_RAIN_CONDITIONS))
def test_every_condition_lies_outside_the_presets(name: str) -> None:
    assert _outside_ranges(HELDOUT_RAIN_CONDITIONS[name]), \
        f"{name}: every parameter lies within the training presets' range"


def test_range_check_flags_a_preset_as_inside() -> None:
    assert _outside_ranges({"level": "heavy"}) == []
    assert _outside_ranges({"level": "light", "angle": 14.0, "noise_sigma": 0.01}) == []


def test_conditions_render() -> None:
    background = rain.load_background("coins", SIZE)
    for name, condition in HELDOUT_RAIN_CONDITIONS.items():
        image = rain.make_rain_image(background, seed=0, **condition)
        assert image.rain.shape == background.shape, name


# --------------------------------------------------------------------------------------------
# The held-out set
# --------------------------------------------------------------------------------------------
def _read_set(list_path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(read_image(r), read_image(c)) for r, c in read_pair_list(list_path)]


def test_builder_writes_labelled_pairs(tmp_path: Path) -> None:
    list_path = build_heldout_rain_set(tmp_path, n_per_condition=2, size=SIZE, seed=1)
    assert list_path == tmp_path / "test.txt"
    pairs = _read_set(list_path)
    n_conditions = len(HELDOUT_RAIN_CONDITIONS)
    assert len(pairs) == 2 * n_conditions
    for rain_image, clean in pairs:
        assert rain_image.shape == clean.shape == (*SIZE, 3)
        assert not np.array_equal(rain_image, clean)
    labels = pd.read_csv(tmp_path / "labels.csv")
    assert list(labels.columns) == ["name", "condition", "background"]
    assert labels["condition"].value_counts().to_dict() == dict.fromkeys(
        HELDOUT_RAIN_CONDITIONS, 2)
    assert list(labels["condition"]) == [c for c in HELDOUT_RAIN_CONDITIONS for _ in range(2)]
    # photos taken in turn over the whole set
    expected = [rain.HELDOUT_BACKGROUND_NAMES[k % 5] for k in range(2 * n_conditions)]
    assert list(labels["background"]) == expected
    assert labels["name"].is_unique
    rain_names = [r.stem for r, _ in read_pair_list(list_path)]
    assert rain_names == list(labels["name"])


def test_builder_is_deterministic(tmp_path: Path) -> None:
    kwargs = {"n_per_condition": 1, "size": SIZE, "conditions": ["noisy", "angle -25"]}
    first = _read_set(build_heldout_rain_set(tmp_path / "a", seed=3, **kwargs))
    again = _read_set(build_heldout_rain_set(tmp_path / "b", seed=3, **kwargs))
    other = _read_set(build_heldout_rain_set(tmp_path / "c", seed=4, **kwargs))
    for (r1, c1), (r2, c2) in zip(first, again, strict=True):
        assert np.array_equal(r1, r2) and np.array_equal(c1, c2)
    assert not all(np.array_equal(r1, r3) for (r1, _), (r3, _) in zip(first, other, strict=True))


def test_builder_applies_the_condition(tmp_path: Path) -> None:
    """Same seed, same crop: only the condition's rain differs."""
    kwargs = {"n_per_condition": 1, "size": SIZE, "seed": 2}
    (plain_rain, plain_clean), = _read_set(
        build_heldout_rain_set(tmp_path / "a", conditions=["short streaks"], **kwargs))
    (noisy_rain, noisy_clean), = _read_set(
        build_heldout_rain_set(tmp_path / "b", conditions=["noisy"], **kwargs))
    assert np.array_equal(plain_clean, noisy_clean)
    assert not np.array_equal(plain_rain, noisy_rain)


def test_builder_chosen_conditions_and_photos(tmp_path: Path) -> None:
    build_heldout_rain_set(tmp_path, n_per_condition=3, size=SIZE,
                           conditions=["very dense"], backgrounds=["gravel", "clock"])
    labels = pd.read_csv(tmp_path / "labels.csv")
    assert list(labels["name"]) == ["very_dense_0000", "very_dense_0001", "very_dense_0002"]
    assert list(labels["background"]) == ["gravel", "clock", "gravel"]


def test_builder_enlarges_small_photos(tmp_path: Path) -> None:
    size = (320, 420)  # larger than "clock" (300 x 400) in both dimensions
    list_path = build_heldout_rain_set(tmp_path, n_per_condition=1, size=size,
                                       conditions=["short streaks"], backgrounds=["clock"])
    (rain_image, clean), = _read_set(list_path)
    assert rain_image.shape == clean.shape == (*size, 3)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"conditions": ["drizzle"]}, r"unknown condition 'drizzle'"),
    ({"conditions": []}, r"non-empty sequence"),
    ({"conditions": "noisy"}, r"non-empty sequence"),
    ({"conditions": ["noisy", "noisy"]}, r"must not repeat"),
    ({"backgrounds": ["coffee", "nope"]}, r"unknown background 'nope'"),
    ({"backgrounds": []}, r"at least one photo"),
    ({"backgrounds": "coffee"}, r"sequence of photo names"),
    ({"n_per_condition": 0}, r"n_per_condition must be a positive int"),
    ({"size": (4, 32)}, r"size must be \(H, W\) with ints >= 8"),
])
def test_builder_rejects_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_heldout_rain_set(tmp_path, **{"size": SIZE, **kwargs})
    assert not (tmp_path / "test.txt").exists()


# --------------------------------------------------------------------------------------------
# Video scenes from chosen photos
# --------------------------------------------------------------------------------------------
def test_video_scenes_use_only_the_given_photos(tmp_path: Path) -> None:
    scenes = build_synthetic_video_scenes(tmp_path, n_scenes=3, n_frames=2, size=(16, 16),
                                          backgrounds=("clock", "brick"))
    used = [json.loads((tmp_path / f"{s.name}.json").read_text())["background"] for s in scenes]
    assert used == ["clock", "brick", "clock"]


def test_video_scenes_default_photos_unchanged(tmp_path: Path) -> None:
    scenes = build_synthetic_video_scenes(tmp_path, n_scenes=2, n_frames=2, size=(16, 16))
    used = [json.loads((tmp_path / f"{s.name}.json").read_text())["background"] for s in scenes]
    assert used == list(rain.BACKGROUND_NAMES[:2])


def test_video_scenes_reject_unknown_photo(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown background 'moon'"):
        build_synthetic_video_scenes(tmp_path, n_scenes=1, n_frames=2, size=(16, 16),
                                     backgrounds=("clock", "moon"))


# --------------------------------------------------------------------------------------------
# heldout_check
# --------------------------------------------------------------------------------------------
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
