"""Synthetic test sets: rain levels, held-out rain conditions, video scenes, Table 1 videos."""

from __future__ import annotations

import csv
import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spanetlib.io.files import read_image
from spanetlib.io.pairs import read_pair_list
from spanetlib.synthesis import rain
from spanetlib.synthesis.testsets import (
    HELDOUT_RAIN_CONDITIONS,
    build_heldout_rain_set,
    build_synthetic_test_set,
    build_synthetic_video_scenes,
    make_table1_videos,
    scene_ground_truth,
)
from spanetlib.training.data import rain_mask

SIZE = (32, 32)
NUMERIC_FIELDS = ("angle", "length", "density", "width", "blur")


# --------------------------------------------------------------------------------------------
# Rain levels (the Rain1200 role)
# --------------------------------------------------------------------------------------------
def test_build_synthetic_test_set(tmp_path):
    path = build_synthetic_test_set(tmp_path / "t", n_per_level=2, size=(32, 40), seed=1)
    assert path == tmp_path / "t" / "test.txt"
    pairs = read_pair_list(path)
    assert len(pairs) == 6
    with open(tmp_path / "t" / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["level"] for r in rows] == ["light"] * 2 + ["medium"] * 2 + ["heavy"] * 2
    assert [r["name"] for r in rows] == [p[0].stem for p in pairs]
    changed = []
    for rain_path, clean_path in pairs:
        rain, clean = read_image(rain_path), read_image(clean_path)
        assert rain.shape == clean.shape == (32, 40, 3)
        changed.append(rain_mask(rain, clean).mean())
    assert all(c > 0 for c in changed)
    again = build_synthetic_test_set(tmp_path / "u", n_per_level=2, size=(32, 40), seed=1)
    assert np.array_equal(read_image(read_pair_list(again)[3][0]), read_image(pairs[3][0]))
    with pytest.raises(ValueError, match="level must be one of"):
        build_synthetic_test_set(tmp_path / "v", n_per_level=1, levels=("storm",))


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
    ({"n_per_condition": 0}, r"n_per_condition: expected an int >= 1"),
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


def test_video_scenes_write_truth_and_are_reused(tmp_path: Path) -> None:
    scenes = build_synthetic_video_scenes(tmp_path, n_scenes=2, n_frames=3, size=(16, 24),
                                          seed=5)
    assert [s.name for s in scenes] == ["scene_000_sparse", "scene_001_normal"]
    truth = read_image(scene_ground_truth(scenes[1]))
    assert scene_ground_truth(scenes[1]) == tmp_path / "scene_001_normal_gt.png"
    frames = [read_image(p) for p in sorted(scenes[1].iterdir())]
    assert len(frames) == 3 and truth.shape == frames[0].shape == (16, 24, 3)
    assert not np.array_equal(frames[0], frames[1])  # the rain moves, the truth does not
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")}
    again = build_synthetic_video_scenes(tmp_path, n_scenes=2, n_frames=3, size=(16, 24),
                                         seed=5)
    assert again == scenes
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")} == stamps
    # other settings: the scene is written again, without stale frames
    build_synthetic_video_scenes(tmp_path, n_scenes=1, n_frames=2, size=(16, 24), seed=6)
    assert len(list(scenes[0].iterdir())) == 2
    assert json.loads((tmp_path / "scene_000_sparse.json").read_text())["seed"] == 6


def test_video_scenes_reject_unknown_photo(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown background 'moon'"):
        build_synthetic_video_scenes(tmp_path, n_scenes=1, n_frames=2, size=(16, 16),
                                     backgrounds=("clock", "moon"))


# --------------------------------------------------------------------------------------------
# Table 1 videos
# --------------------------------------------------------------------------------------------
def test_table1_videos_are_seeded_and_sized():
    videos = make_table1_videos(2, 16, (32, 40), seed=3, densities=("normal", "dense"))
    again = make_table1_videos(2, 16, (32, 40), seed=3, densities=("normal", "dense"))
    assert [v.name for v in videos] == ["00_astronaut_normal", "01_brick_dense"]
    assert videos[0].frames.shape == (16, 32, 40, 3) and videos[0].clean.shape == (32, 40, 3)
    np.testing.assert_array_equal(videos[1].frames, again[1].frames)
    with pytest.raises(ValueError, match="n_frames >= 2"):
        make_table1_videos(1, 1, (8, 8))
