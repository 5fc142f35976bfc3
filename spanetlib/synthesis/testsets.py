"""Synthetic stand-ins for the real data: rain videos of static scenes and test sets.

Where the real data is absent (the default: no data is downloaded), these make what the paper
used, from `spanetlib.synthesis.rain` over scikit-image's photos, each with its ground truth:

- `build_synthetic_video_scenes`: rain videos of static scenes as frame folders, the input of
  the §3 pipeline (review, export), with the true background beside each
  (`scene_ground_truth`);
- `make_table1_videos`: rain videos in memory with their truth and rain masks (Table 1);
- `build_synthetic_test_set`: single rain images at the rain levels (the paper's Rain1200 role);
- `build_single_image_train_set`: single-image rain added to the clean images of a pair list,
  the training set of Table 2's "original" rows (the role of Rain100H / Rain1400);
- `build_heldout_rain_set`: rain outside the synthesizer's presets
  (`HELDOUT_RAIN_CONDITIONS`), on photos held out from training;
- `build_layout_test_folders`: tiny test folders in each layout of the field
  (`spanetlib.io.layouts`), for smoke checks of released weights and `spanet evaluate`.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spanetlib.io.checks import check_positive
from spanetlib.io.errors import InputError
from spanetlib.io.files import atomic_write_json, atomic_write_text, read_image, write_image
from spanetlib.io.layouts import read_test_folder
from spanetlib.io.pairs import read_pair_list, write_pair_list
from spanetlib.io.video import list_frame_files, write_frames
from spanetlib.synthesis.rain import (
    BACKGROUND_NAMES,
    DENSITY_PRESETS,
    HELDOUT_BACKGROUND_NAMES,
    IMAGE_RAIN_LEVELS,
    load_background,
    make_rain_image,
    make_rain_video,
)

__all__ = [
    "HELDOUT_RAIN_CONDITIONS",
    "LAYOUT_TEST_FOLDERS",
    "Table1Video",
    "build_heldout_rain_set",
    "build_layout_test_folders",
    "build_single_image_train_set",
    "build_synthetic_test_set",
    "build_synthetic_video_scenes",
    "make_table1_videos",
    "scene_ground_truth",
]


def _random_crop(image: np.ndarray, size: tuple[int, int], rng: np.random.Generator
                 ) -> np.ndarray:
    h, w = size
    if image.shape[0] < h or image.shape[1] < w:
        scale = max(h / image.shape[0], w / image.shape[1])
        new = (math.ceil(image.shape[1] * scale), math.ceil(image.shape[0] * scale))
        image = cv2.resize(image, new, interpolation=cv2.INTER_CUBIC)
    top = int(rng.integers(0, image.shape[0] - h + 1))
    left = int(rng.integers(0, image.shape[1] - w + 1))
    return np.ascontiguousarray(image[top:top + h, left:left + w])


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if (len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                              or s < 8 for s in size)):
        raise ValueError(f"size must be (H, W) with ints >= 8, got {size!r}")
    return int(size[0]), int(size[1])


def _check_backgrounds(backgrounds: Sequence[str]) -> tuple[str, ...]:
    """Photo names for `spanetlib.synthesis.rain.load_background`, checked, as a tuple."""
    known = sorted(set(BACKGROUND_NAMES) | set(HELDOUT_BACKGROUND_NAMES))
    if isinstance(backgrounds, str) or not isinstance(backgrounds, Sequence):
        raise ValueError(f"backgrounds must be a sequence of photo names, got {backgrounds!r}")
    if not backgrounds:
        raise ValueError("backgrounds must name at least one photo, got none")
    for name in backgrounds:
        if name not in known:
            raise ValueError(f"unknown background {name!r}; expected names from {known}")
    return tuple(backgrounds)


def _write_rain_image_set(out: Path,
                          jobs: Sequence[tuple[str, str, dict[str, Any], tuple[str, ...]]],
                          label_columns: Sequence[str], size: tuple[int, int], seed: int
                          ) -> Path:
    """Render and write single rain images; the writing part of the synthetic test sets.

    Each job is ``(name, background, rain_kwargs, labels)``: a random ``size`` crop of the
    photo ``background`` gets rain from ``rain.make_rain_image(crop, seed=..., **rain_kwargs)``
    (crops and rain seeds drawn in turn from one generator seeded with ``seed``), written as
    ``out/rain/<name>.png`` and ``out/clean/<name>.png``; ``labels`` fill the columns
    ``label_columns`` of ``out/labels.csv`` after ``name``. Returns the pair list
    ``out/test.txt``.
    """
    rng = np.random.default_rng(seed)
    photos: dict[str, np.ndarray] = {}
    pairs, rows = [], []
    for name, background_name, rain_kwargs, labels in jobs:
        if background_name not in photos:
            photos[background_name] = load_background(background_name)
        background = _random_crop(photos[background_name], size, rng)
        image = make_rain_image(background, seed=int(rng.integers(2**31)), **rain_kwargs)
        pairs.append((write_image(out / "rain" / f"{name}.png", image.rain),
                      write_image(out / "clean" / f"{name}.png", image.clean)))
        rows.append((name, *labels))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("name", *label_columns))
    writer.writerows(rows)
    atomic_write_text(out / "labels.csv", buffer.getvalue())
    return write_pair_list(out / "test.txt", pairs)


def build_synthetic_test_set(out: str | os.PathLike, n_per_level: int = 100,
                             size: tuple[int, int] = (256, 256), seed: int = 0,
                             levels: Sequence[str] = ("light", "medium", "heavy")) -> Path:
    """Write single synthetic rain images at several rain levels: the paper's Rain1200 role.

    Each image is a random ``size`` crop of one of `spanetlib.synthesis.rain.BACKGROUND_NAMES`
    (taken in turn) with rain from ``rain.make_rain_image`` at the level, each with its own seed.
    Output::

        out/rain/<level>_<i>.png, out/clean/<level>_<i>.png
        out/test.txt     "rain/<name>.png clean/<name>.png" per line (see `read_pair_list`)
        out/labels.csv   name,level

    Args:
        out: output folder (created; existing files of the same names are replaced).
        n_per_level: images per level (Rain1200 has 400).
        size: image size (H, W).
        seed: seed of the crops and the rain.
        levels: names from ``rain.IMAGE_RAIN_LEVELS``.

    Returns:
        The pair list ``out/test.txt``.

    Raises:
        ValueError: a bad count, size or level.

    Example:
        >>> import tempfile
        >>> from spanetlib.io.pairs import read_pair_list
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     pairs = read_pair_list(build_synthetic_test_set(tmp, n_per_level=1,
        ...                                                     size=(16, 16)))
        ...     print((Path(tmp) / "labels.csv").read_text(), end="")
        name,level
        light_0000,light
        medium_0000,medium
        heavy_0000,heavy
        >>> [rain.name for rain, clean in pairs]
        ['light_0000.png', 'medium_0000.png', 'heavy_0000.png']
    """
    check_positive("n_per_level", n_per_level)
    size = _check_size(size)
    for level in levels:
        if level not in IMAGE_RAIN_LEVELS:
            raise ValueError(f"level must be one of {tuple(IMAGE_RAIN_LEVELS)}, got {level!r}")
    jobs = []
    for level in levels:
        for i in range(n_per_level):
            photo = BACKGROUND_NAMES[len(jobs) % len(BACKGROUND_NAMES)]
            jobs.append((f"{level}_{i:04d}", photo, {"level": level}, (level,)))
    return _write_rain_image_set(Path(out), jobs, ("level",), size, seed)


def build_single_image_train_set(pair_list: str | os.PathLike, out: str | os.PathLike,
                                 seed: int = 0,
                                 levels: Sequence[str] = ("light", "medium", "heavy")) -> Path:
    """Single-image synthetic rain on the clean images of a pair list: a Rain100H-style set.

    The paper's Table 2 scores each earlier derainer twice: with its original weights, trained
    on single-image synthetic rain (Rain100H, Rain1400: rain rendered on clean photos, exact
    ground truth), and retrained on the new dataset. This makes the first kind of training set
    from the second: each pair ``(rain, clean)`` of ``pair_list`` gives one new pair, rain from
    ``rain.make_rain_image`` (level ``levels`` in turn, a seed per image) on that clean image.
    So both training sets hold the same clean images, as many pairs, and differ only in the
    rain and in how the pairs were made. Output::

        out/rain/<i>.png, out/clean/<i>.png
        out/train.txt    the pair list (see `spanetlib.io.pairs.read_pair_list`)

    Args:
        pair_list: the pair list whose clean images to use (e.g. a §3 ``train.txt``).
        out: output folder (created; files of the same names are replaced).
        seed: seed of the rain.
        levels: names from ``rain.IMAGE_RAIN_LEVELS``, used in turn.

    Returns:
        The pair list ``out/train.txt``.

    Raises:
        ValueError: an unknown level, or no level.
        InputError: a missing or empty pair list, an unreadable clean image.

    Example:
        >>> import tempfile
        >>> from spanetlib.io.pairs import read_pair_list
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     clean = write_image(Path(tmp) / "c.png", np.full((40, 40, 3), 90, np.uint8))
        ...     source = write_pair_list(Path(tmp) / "src.txt", [(clean, clean)] * 2)
        ...     pairs = read_pair_list(build_single_image_train_set(source, Path(tmp) / "s"))
        ...     [(rain.name, bool(read_image(rain).mean() > 90)) for rain, _ in pairs]
        [('000000.png', True), ('000001.png', True)]
    """
    if not levels:
        raise ValueError("expected at least one rain level, got none")
    for level in levels:
        if level not in IMAGE_RAIN_LEVELS:
            raise ValueError(f"level must be one of {tuple(IMAGE_RAIN_LEVELS)}, got {level!r}")
    pairs = read_pair_list(pair_list)
    out = Path(out)
    seeds = np.random.SeedSequence(seed).generate_state(len(pairs))
    written = []
    for i, (_, clean_path) in enumerate(pairs):
        image = make_rain_image(read_image(clean_path), level=levels[i % len(levels)],
                                seed=int(seeds[i]))
        written.append((write_image(out / "rain" / f"{i:06d}.png", image.rain),
                        write_image(out / "clean" / f"{i:06d}.png", image.clean)))
    return write_pair_list(out / "train.txt", written)


# Held-out rain. The presets the synthetic training data is made with span: angle 5 to 15
# degrees (jitter 2 to 8), length 16 to 36 px, density 0.0004 to 0.0068 streaks per pixel,
# width 1 to 2 px, blur 0.5 to 1.0 px, sensor noise 0 (images) or 0.01 (videos), screen blend
# only (``rain.IMAGE_RAIN_LEVELS``, ``rain.DENSITY_PRESETS`` and the defaults of
# ``make_rain_image`` / ``make_rain_video``). Each condition below leaves that range in at
# least one of these parameters; the others stay at the base level's values.
#: Held-out rain conditions: name -> keyword arguments of `spanetlib.synthesis.rain.make_rain_image`
#: (``level``, ``RainParams`` overrides, ``noise_sigma``, ``blend``).
HELDOUT_RAIN_CONDITIONS: dict[str, dict[str, Any]] = {
    "angle +30": {"level": "medium", "angle": 30.0},
    "angle -25": {"level": "medium", "angle": -25.0},  # falling the other way
    "short streaks": {"level": "medium", "length": 8.0},
    "long streaks": {"level": "medium", "length": 55.0},
    "very dense": {"level": "medium", "density": 0.011},
    "wide and blurred": {"level": "medium", "width": 3.0, "blur": 1.6},
    "noisy": {"level": "medium", "noise_sigma": 0.03},
    "additive blend": {"level": "medium", "blend": "additive"},
    "combined": {"level": "medium", "angle": -20.0, "length": 45.0, "density": 0.008,
                 "noise_sigma": 0.02},
}


def _file_stem(condition: str) -> str:
    """A file-name-safe form of a condition name ("angle +30" -> "angle_plus30")."""
    text = condition.lower().replace("+", "plus").replace("-", "minus")
    return re.sub(r"[^0-9a-z]+", "_", text).strip("_")


def build_heldout_rain_set(out: str | os.PathLike, n_per_condition: int = 2,
                           size: tuple[int, int] = (128, 128), seed: int = 0,
                           conditions: Sequence[str] | None = None,
                           backgrounds: Sequence[str] | None = None) -> Path:
    """Write rain images outside the synthesizer's presets, on photos held out from training.

    Like `build_synthetic_test_set`, with rain from `HELDOUT_RAIN_CONDITIONS` instead of the
    levels: each image is a random ``size`` crop of one of ``backgrounds`` (taken in turn over
    the whole set; photos smaller than ``size`` are enlarged first) with the condition's rain,
    each with its own seed. Output::

        out/rain/<stem>_<i>.png, out/clean/<stem>_<i>.png   stem: the condition's name with
                                                            "+" -> "plus", "-" -> "minus",
                                                            other runs of symbols -> "_"
        out/test.txt     "rain/<name>.png clean/<name>.png" per line (see `read_pair_list`)
        out/labels.csv   name,condition,background

    Args:
        out: output folder (created; existing files of the same names are replaced).
        n_per_condition: images per condition.
        size: image size (H, W), each >= 8.
        seed: seed of the crops and the rain (same seed, same files).
        conditions: names from `HELDOUT_RAIN_CONDITIONS`; None: all of them, in dict order.
        backgrounds: photo names for `spanetlib.synthesis.rain.load_background`; None:
            `spanetlib.synthesis.rain.HELDOUT_BACKGROUND_NAMES`.

    Returns:
        The pair list ``out/test.txt``.

    Raises:
        ValueError: a bad count or size, an unknown or repeated condition, an unknown photo,
            or an empty ``conditions`` / ``backgrounds``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = build_heldout_rain_set(tmp, n_per_condition=1, size=(16, 16),
        ...                                conditions=["angle +30", "noisy"])
        ...     print((Path(tmp) / "labels.csv").read_text(), end="")
        name,condition,background
        angle_plus30_0000,angle +30,coffee
        noisy_0000,noisy,rocket
    """
    check_positive("n_per_condition", n_per_condition)
    size = _check_size(size)
    if conditions is None:
        conditions = tuple(HELDOUT_RAIN_CONDITIONS)
    if isinstance(conditions, str) or not conditions:
        raise ValueError(f"conditions must be a non-empty sequence of names from "
                         f"{list(HELDOUT_RAIN_CONDITIONS)}, got {conditions!r}")
    for condition in conditions:
        if condition not in HELDOUT_RAIN_CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; expected names from "
                             f"{list(HELDOUT_RAIN_CONDITIONS)}")
    if len(set(conditions)) != len(conditions):
        raise ValueError(f"conditions must not repeat a name, got {list(conditions)}")
    backgrounds = _check_backgrounds(HELDOUT_BACKGROUND_NAMES if backgrounds is None
                                     else backgrounds)
    jobs = []
    for condition in conditions:
        for i in range(n_per_condition):
            photo = backgrounds[len(jobs) % len(backgrounds)]
            jobs.append((f"{_file_stem(condition)}_{i:04d}", photo,
                         HELDOUT_RAIN_CONDITIONS[condition], (condition, photo)))
    return _write_rain_image_set(Path(out), jobs, ("condition", "background"), size, seed)


#: The layouts `build_layout_test_folders` writes (every layout of `spanetlib.io.layouts.LAYOUTS`).
LAYOUT_TEST_FOLDERS: tuple[str, ...] = ("input-target", "rain100", "rain1400", "spa-data",
                                        "rain1200", "pair-list")
_IMAGE_LEVELS = ("light", "medium", "heavy")
#: Bumped whenever `build_layout_test_folders` draws different images for the same settings,
#: so folders built by an older version are rebuilt rather than kept.
_LAYOUT_FOLDERS_VERSION = 2


def _write_layout(folder: Path, layout: str, images: Sequence[Sequence[Any]]) -> None:
    """Write ``images[i] = (clean, rain_1, rain_2, ...)`` in one layout (see the caller)."""
    pairs = []
    for i, (clean, *rains) in enumerate(images):
        rain = rains[0]
        if layout == "input-target":
            write_image(folder / "input" / f"{i + 1}.png", rain)
            write_image(folder / "target" / f"{i + 1}.png", clean)
        elif layout == "rain100":
            write_image(folder / "rainy" / f"rain-{i + 1:03d}.png", rain)
            write_image(folder / f"norain-{i + 1:03d}.png", clean)
        elif layout == "rain1400":
            write_image(folder / "ground_truth" / f"{901 + i}.jpg", clean)
            for m, other in enumerate(rains, start=1):
                write_image(folder / "rainy_image" / f"{901 + i}_{m}.jpg", other)
        elif layout == "spa-data":
            pairs.append((write_image(folder / "real_test_1000" / "rain" / f"{i:03d}.png", rain),
                          write_image(folder / "real_test_1000" / "gt" / f"{i:03d}gt.png", clean)))
        elif layout == "rain1200":
            # PNG: on tiny light-rain crops JPEG noise can outweigh the light rain adds, which
            # the side-by-side detector checks (the rain half must be the brighter one).
            write_image(folder / f"{i}.png", np.concatenate([rain, clean], axis=1))
        else:  # pair-list
            pairs.append((write_image(folder / "rain" / f"{i:03d}.png", rain),
                          write_image(folder / "clean" / f"{i:03d}.png", clean)))
    if layout == "spa-data":  # SPA-Data's testing/ folder holds its list beside the folders
        write_pair_list(folder / "real_test_1000.txt", pairs)
    elif layout == "pair-list":
        write_pair_list(folder / "test.txt", pairs)


def _visible_rain(clean: np.ndarray, level: str, rng: np.random.Generator,
                  tries: int = 20) -> np.ndarray:
    """A rain image of ``clean`` at ``level`` with at least one streak (tiny crops may get none)."""
    for _ in range(tries):
        rain = make_rain_image(clean, level, seed=int(rng.integers(2**31))).rain
        if not np.array_equal(rain, clean):
            return rain
    raise ValueError(f"no rain streak fell on a {clean.shape[0]} x {clean.shape[1]} image in "
                     f"{tries} draws at the {level} level; use a larger size")


def build_layout_test_folders(out: str | os.PathLike, n_pairs: int = 2,
                              size: tuple[int, int] = (48, 64), seed: int = 0,
                              layouts: Sequence[str] | None = None,
                              rain_per_clean: int = 2) -> dict[str, Path]:
    """Tiny synthetic test folders, one in each layout of the field (`spanetlib.io.layouts`).

    Each layout gets its own ``n_pairs`` synthetic rain images: random ``size`` crops of the
    held-out photos `spanetlib.synthesis.rain.HELDOUT_BACKGROUND_NAMES` (which the shipped
    ``synthetic`` weights never saw), taken in turn over all the folders, with rain at the light,
    medium and heavy levels in turn (re-drawn until at least one streak falls on the crop, and until
    the folder reads as its layout: the side-by-side check fails on some tiny flat crops)::

        out/input-target/input/<i>.png, target/<i>.png              (i from 1)
        out/rain100/rainy/rain-<iii>.png, norain-<iii>.png
        out/rain1400/rainy_image/<k>_<m>.jpg, ground_truth/<k>.jpg  (k from 901, m = 1..
                                                                     rain_per_clean renderings)
        out/spa-data/real_test_1000/rain/<iii>.png, gt/<iii>gt.png, real_test_1000.txt
        out/rain1200/<i>.png                                        (rain | clean side by side)
        out/pair-list/rain/<iii>.png, clean/<iii>.png, test.txt
        out/params.json                                             (the settings)

    A folder whose ``params.json`` records the same settings is kept; one made with other
    settings is rebuilt (its layout folders are removed first).

    Args:
        out: output folder.
        n_pairs: rain images per layout (Rain1400: clean images, each with ``rain_per_clean``
            rain renderings).
        size: image size (H, W) of one image (Rain1200 files are twice as wide), each >= 8.
        seed: seed of the crops and the rain.
        layouts: names from `LAYOUT_TEST_FOLDERS`; None: all.
        rain_per_clean: rain renderings per clean image in the Rain1400 layout (DDN has 14).

    Returns:
        Layout name -> its folder, in `LAYOUT_TEST_FOLDERS` order.

    Raises:
        ValueError: a bad count, size or layout name, or images too small for any streak or
            for the side-by-side detector.
        InputError: ``out`` holds other files (no ``params.json`` of this function).
    """
    check_positive("n_pairs", n_pairs)
    check_positive("rain_per_clean", rain_per_clean)
    size = _check_size(size)
    chosen = LAYOUT_TEST_FOLDERS if layouts is None else tuple(layouts)
    unknown = [name for name in chosen if name not in LAYOUT_TEST_FOLDERS]
    if unknown or not chosen:
        raise ValueError(f"layouts must be names from {LAYOUT_TEST_FOLDERS}, got {layouts!r}")
    out = Path(out)
    folders = {name: out / name for name in LAYOUT_TEST_FOLDERS if name in chosen}
    params = {"n_pairs": n_pairs, "size": list(size), "seed": int(seed),
              "layouts": list(folders), "rain_per_clean": rain_per_clean,
              "version": _LAYOUT_FOLDERS_VERSION}
    try:
        old = json.loads((out / "params.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if old == params:
        return folders
    if old is None and out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out} holds files that build_layout_test_folders did not write "
                         "(no params.json); choose an empty or new folder")
    for name in LAYOUT_TEST_FOLDERS:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    rng = np.random.default_rng(seed)
    photos = {name: load_background(name) for name in HELDOUT_BACKGROUND_NAMES}
    count = itertools.count()
    for layout, folder in folders.items():
        for _ in range(_LAYOUT_TRIES):
            images = []
            for _ in range(n_pairs):
                k = next(count)
                photo = HELDOUT_BACKGROUND_NAMES[k % len(HELDOUT_BACKGROUND_NAMES)]
                clean = _random_crop(photos[photo], size, rng)
                level = _IMAGE_LEVELS[k % len(_IMAGE_LEVELS)]
                rains = [_visible_rain(clean, level, rng) for _ in range(rain_per_clean)]
                images.append((clean, *rains))
            _write_layout(folder, layout, images)
            if _reads_as(folder, layout):
                break
            shutil.rmtree(folder)
        else:
            raise ValueError(f"{_LAYOUT_TRIES} draws of {n_pairs} images of {size[0]} x "
                             f"{size[1]} were not recognised as the {layout} layout; use a "
                             "larger size")
    atomic_write_json(out / "params.json", params)
    return folders


#: Draws of a folder's images before `build_layout_test_folders` gives up (see `_reads_as`).
_LAYOUT_TRIES = 20


def _reads_as(folder: Path, layout: str) -> bool:
    """Whether `read_test_folder` detects ``layout`` in ``folder``.

    The side-by-side (rain1200) detector checks that both halves show the same scene, which
    a tiny crop of a flat region, or one that heavy rain covers, can fail; such a draw is
    made again rather than written as a folder that does not read as its layout.
    """
    try:
        return read_test_folder(folder).layout.name == layout
    except InputError:
        return False


def scene_ground_truth(scene: str | os.PathLike) -> Path:
    """The true background written beside a synthetic scene: ``<folder>/<scene>_gt.png``.

    Example:
        >>> scene_ground_truth("work/scenes/scene_000_sparse").as_posix()
        'work/scenes/scene_000_sparse_gt.png'
    """
    scene = Path(scene)
    return scene.parent / f"{scene.name}_gt.png"


def build_synthetic_video_scenes(out: str | os.PathLike, n_scenes: int = 3, n_frames: int = 40,
                                 size: tuple[int, int] = (96, 128),
                                 densities: Sequence[str] = ("sparse", "normal", "dense"),
                                 seed: int = 0, backgrounds: Sequence[str] | None = None
                                 ) -> list[Path]:
    """Write synthetic rain videos of static scenes as frame folders: the default SRC.

    Scene ``i`` is a random ``size`` crop of one of ``backgrounds`` (taken in turn) with rain of
    density ``densities[i % len(densities)]`` from
    ``rain.make_rain_video``, written with ``video.write_frames``. Layout::

        out/scene_<i>_<density>/frame_<k>.png   the rain frames (a scene for list_scenes)
        out/scene_<i>_<density>_gt.png          the true background (`scene_ground_truth`)
        out/scene_<i>_<density>.json            density, background name, seed, frame count

    A scene whose sidecar JSON already records the same settings is kept as it is.

    Args:
        out: output folder (created).
        n_scenes: number of scenes.
        n_frames: frames per scene.
        size: frame size (H, W).
        densities: names from ``rain.DENSITY_PRESETS``, used in turn.
        seed: seed of the crops and the rain.
        backgrounds: photo names for `spanetlib.synthesis.rain.load_background`, used in turn; None:
            `spanetlib.synthesis.rain.BACKGROUND_NAMES` (pass
            `spanetlib.synthesis.rain.TRAINING_BACKGROUND_NAMES` to keep the held-out photos out).

    Returns:
        The scene folders, in order.

    Raises:
        ValueError: a bad count, size, density or photo name.

    Example:
        >>> import tempfile
        >>> from spanetlib.io.video import read_sequence
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     scenes = build_synthetic_video_scenes(tmp, n_scenes=2, n_frames=3,
        ...                                           size=(16, 24))
        ...     [scene.name for scene in scenes], read_sequence(scenes[1]).shape
        (['scene_000_sparse', 'scene_001_normal'], (3, 16, 24, 3))
    """
    check_positive("n_scenes", n_scenes)
    check_positive("n_frames", n_frames)
    size = _check_size(size)
    if not densities:
        raise ValueError("densities must name at least one density")
    for density in densities:
        if density not in DENSITY_PRESETS:
            raise ValueError(f"density must be one of {tuple(DENSITY_PRESETS)}, "
                             f"got {density!r}")
    backgrounds = _check_backgrounds(BACKGROUND_NAMES if backgrounds is None else backgrounds)
    out = Path(out)
    rng = np.random.default_rng(seed)
    scenes = []
    for i in range(n_scenes):
        density = densities[i % len(densities)]
        background_name = backgrounds[i % len(backgrounds)]
        crop_seed, rain_seed = (int(v) for v in rng.integers(0, 2**31, 2))
        name = f"scene_{i:03d}_{density}"
        folder = out / name
        meta = {"scene": name, "density": density, "background": background_name,
                "size": list(size), "n_frames": n_frames, "seed": seed,
                "crop_seed": crop_seed, "rain_seed": rain_seed}
        sidecar = out / f"{name}.json"
        try:
            old = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if (old == meta and scene_ground_truth(folder).is_file() and folder.is_dir()
                and len(list_frame_files(folder)) == n_frames):
            scenes.append(folder)
            continue
        if folder.is_dir():
            for stale in list_frame_files(folder):
                stale.unlink()
        background = _random_crop(load_background(background_name), size,
                                  np.random.default_rng(crop_seed))
        video = make_rain_video(background, n_frames, density=density, seed=rain_seed)
        write_frames(folder, video.frames)
        write_image(scene_ground_truth(folder), video.clean)
        atomic_write_json(sidecar, meta)
        scenes.append(folder)
    return scenes


@dataclass
class Table1Video:
    """A synthetic rain video with its ground truth, as used for Table 1 (`make_table1_videos`)."""

    name: str
    density: str
    frames: np.ndarray        # N x H x W x 3 uint8
    clean: np.ndarray         # H x W x 3 uint8
    rain_mask: np.ndarray     # N x H x W bool


def make_table1_videos(n_videos: int, n_frames: int, size: tuple[int, int], seed: int = 0,
                       densities: Sequence[str] = ("sparse", "normal", "dense"),
                       ) -> list[Table1Video]:
    """Synthetic rain videos over scikit-image's photos, densities taken in turn.

    Args:
        n_videos: number of videos (the paper's Table 1 uses 10).
        n_frames: frames per video (the paper: 100).
        size: (H, W) of each frame.
        seed: base seed; video ``i`` uses ``seed + i``.
        densities: rain presets cycled over the videos.

    Returns:
        The videos, named ``<i>_<photo>_<density>``.

    Raises:
        ValueError: ``n_videos < 1`` or ``n_frames < 2``.

    Example:
        >>> video = make_table1_videos(1, n_frames=4, size=(16, 24))[0]
        >>> video.name, video.frames.shape, video.clean.shape, video.rain_mask.shape
        ('00_astronaut_sparse', (4, 16, 24, 3), (16, 24, 3), (4, 16, 24))
    """
    if n_videos < 1 or n_frames < 2:
        raise ValueError(f"expected n_videos >= 1 and n_frames >= 2, got {n_videos}, {n_frames}")
    videos = []
    names = itertools.cycle(BACKGROUND_NAMES)
    dens = itertools.cycle(densities)
    for i in range(n_videos):
        name, density = next(names), next(dens)
        video = make_rain_video(load_background(name, size=size), n_frames, density=density,
                                seed=seed + i)
        videos.append(Table1Video(f"{i:02d}_{name}_{density}", density, video.frames,
                                  video.clean, video.rain_mask))
    return videos
