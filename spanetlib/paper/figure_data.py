"""The images of the paper's figures: samples, rows of images, captions (Figs. 2, 4, 7-12).

Each function returns plain arrays (rows of ``column -> image`` for
`spanetlib.paper.figures.plot_image_grid` / `spanetlib.paper.figures.plot_attention_maps`), so a
test can check what a figure will show without drawing it. Images are H x W x 3 RGB (uint8, or float
in [0, 1]); maps are H x W float in [0, 1].
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from spanetlib.derain.images import derain_array
from spanetlib.evaluation.evaluate import as_prediction
from spanetlib.evaluation.metrics import psnr_ssim_np
from spanetlib.io.errors import InputError
from spanetlib.io.files import read_image
from spanetlib.io.layouts import FolderPairs
from spanetlib.io.pairs import read_pair_list
from spanetlib.io.video import list_frame_files
from spanetlib.paper.datasets import DatasetInfo
from spanetlib.paper.runs import OURS
from spanetlib.paper.tables import patch_position
from spanetlib.pipeline.alignment import common_footprint, crop_box
from spanetlib.pipeline.background import (
    BackgroundEstimate,
    estimate_background,
    luminance_levels,
    reliability_map,
)
from spanetlib.pipeline.clip_estimate import ClipEstimate
from spanetlib.pipeline.review_images import difference_map, reliability_overlay
from spanetlib.synthesis.rain import IMAGE_RAIN_LEVELS, RainClip, load_background, make_rain_image
from spanetlib.synthesis.testsets import Table1Video, scene_ground_truth
from spanetlib.training.data import rain_mask

__all__ = [
    "AttentionStats",
    "PixelProfile",
    "Sample",
    "attention_rows",
    "attention_stats",
    "centre_shift",
    "clip_estimate_images",
    "clip_motion",
    "clip_reliability_images",
    "derain_rows",
    "difference_rows",
    "failure_rows",
    "failure_sample",
    "folder_samples",
    "level_samples",
    "mean_attention_stats",
    "photo_sample",
    "pick_rainy_pixel",
    "pixel_profile",
    "psnr_captions",
    "quality_validation_table",
    "scene_samples",
    "table1_images",
]


# --------------------------------------------------------------------------------------------
# Figures 2 and 4: the §3 estimator on one video
# --------------------------------------------------------------------------------------------
def pick_rainy_pixel(rain_mask: np.ndarray, target_share: float = 0.5) -> tuple[int, int]:
    """The pixel whose share of rainy frames is closest to ``target_share`` (for Figure 2).

    Args:
        rain_mask: N x H x W bool, where rain covers each pixel in each frame.
        target_share: the wanted share of rainy frames.

    Returns:
        ``(y, x)``; ties go to the first pixel in row-major order.

    Example:
        >>> mask = np.zeros((10, 3, 4), bool)
        >>> mask[:5, 2, 1] = True            # rain in half of the frames
        >>> pick_rainy_pixel(mask, 0.5)
        (2, 1)
    """
    share = np.asarray(rain_mask, bool).mean(axis=0)
    flat = int(np.argmin(np.abs(share - target_share)))
    return divmod(flat, share.shape[1])


@dataclass(frozen=True)
class PixelProfile:
    """One pixel across a rain video (Figure 2), in the luminance levels Eq. 2 uses.

    Attributes:
        y: row of the pixel.
        x: column of the pixel.
        intensities: (N,) luminance level of the pixel in each frame (0..255).
        is_rain: (N,) bool, frames where rain covers the pixel.
        clean_value: luminance level of the true background there.
        estimate_value: luminance level of the estimated background there (Eqs. 2-4).
    """

    y: int
    x: int
    intensities: np.ndarray
    is_rain: np.ndarray
    clean_value: float
    estimate_value: float


def pixel_profile(video: Table1Video, estimate: BackgroundEstimate,
                  target_share: float = 0.5) -> PixelProfile:
    """Figure 2's data: the pixel rain covers in about ``target_share`` of the frames.

    Intensities are `spanetlib.pipeline.background.luminance_levels` (the BT.601 levels Eq. 2 takes
    the mode of); the clean and estimated values are the levels of the true and the estimated
    background at that pixel.

    Args:
        video: a synthetic rain video with its truth (``frames``, ``clean``, ``rain_mask``).
        estimate: `spanetlib.pipeline.background.estimate_background` of ``video.frames``.
        target_share: the wanted share of rainy frames (`pick_rainy_pixel`).
    """
    y, x = pick_rainy_pixel(video.rain_mask, target_share)
    pixel = np.s_[:, y:y + 1, x:x + 1]
    backgrounds = np.stack([as_prediction(video.clean),
                            as_prediction(estimate.image / 255.0)])
    clean_value, estimate_value = luminance_levels(backgrounds[pixel])[:, 0, 0]
    return PixelProfile(y, x, luminance_levels(video.frames[pixel])[:, 0, 0].astype(np.float32),
                        np.asarray(video.rain_mask[:, y, x], bool), float(clean_value),
                        float(estimate_value))


def table1_images(video: Table1Video,
                  methods: Mapping[str, Callable[[np.ndarray], np.ndarray]],
                  convention: str = "standard") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Figure 4: the rainiest frame, every method's estimate and the truth, with PSNR captions.

    Returns:
        ``(images, captions)``: ``"Rain frame"``, one float [0, 1] image per method, then
        ``"Ground truth"``; captions ``"xx.xx dB"`` (against the truth) for all but the truth.
    """
    frame = video.frames[int(np.argmax(video.rain_mask.mean(axis=(1, 2))))]
    images = {"Rain frame": frame}
    for name, method in methods.items():
        images[name] = (np.clip(method(video.frames), 0, 255) / 255.0).astype(np.float32)
    captions = {name: f"{psnr_ssim_np(as_prediction(image), video.clean, convention)[0]:.2f} dB"
                for name, image in images.items()}
    images["Ground truth"] = video.clean
    return images, captions


# --------------------------------------------------------------------------------------------
# Phone clips (notebook 01): camera motion, estimates per align mode, reliability per period
# --------------------------------------------------------------------------------------------
def centre_shift(matrices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """N x 2: where each reference -> frame transform moves the frame centre, ``(dx, dy)`` px.

    Example:
        >>> shift = np.array([[[1.0, 0, 2.5], [0, 1, -1], [0, 0, 1]]])
        >>> centre_shift(shift, (5, 9)).tolist()
        [[2.5, -1.0]]
    """
    h, w = shape
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0, 1.0])
    moved = np.asarray(matrices, np.float64) @ centre
    return moved[:, :2] / moved[:, 2:] - centre[:2]


def clip_motion(clip: RainClip, result: ClipEstimate) -> tuple[np.ndarray, np.ndarray]:
    """Measured and true camera motion of a synthetic clip: N x 2 centre shifts each.

    Both relative to the estimate's reference frame (`centre_shift`).
    """
    shape = result.shape
    return (centre_shift(result.motion.matrices, shape),
            centre_shift(clip.true_motion(result.motion.reference), shape))


def _segment_at(result: ClipEstimate, index: int) -> int:
    """The segment holding frame ``index``, or the nearest one."""
    return int(np.argmin([0 if seg.start <= index < seg.stop else
                          min(abs(seg.start - index), abs(seg.stop - 1 - index))
                          for seg in result.segments]))


def clip_estimate_images(clip: RainClip, results: Mapping[str, ClipEstimate],
                         convention: str = "standard"
                         ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The clean image of one clip under several align modes, against the truth.

    Each estimate is that of the period holding the reference frame, in the reference
    frame's pixels (`ClipEstimate.clean_for_frame`); every image is cropped to the box that
    every frame covers (true motion) inside every estimate's valid region, where the PSNR
    captions are measured against that scene state's truth (`RainClip.state_truth`).

    Args:
        clip: a synthetic clip.
        results: label -> its `spanetlib.pipeline.clip_estimate.estimate_clip` (one reference
            frame).
        convention: metric convention of the captions.

    Returns:
        ``(images, captions)``: the reference rain frame, one image per label, the truth.
    """
    references = {result.motion.reference for result in results.values()}
    if len(references) != 1:
        raise ValueError(f"expected estimates with one reference frame, got references "
                         f"{sorted(references)}")
    empty = [label for label, result in results.items() if not result.segments]
    if empty:
        raise ValueError(f"no stable period to show in {empty}")
    ref = references.pop()
    covered = common_footprint(clip.true_motion(ref), clip.frames.shape[1:3])
    chosen = {label: _segment_at(result, ref) for label, result in results.items()}
    for label, result in results.items():
        covered &= result.segments[chosen[label]].valid
    y0, y1, x0, x1 = crop_box(covered)
    seg = next(iter(results.values())).segments[next(iter(chosen.values()))]
    states = clip.state[seg.frames]
    truth = clip.state_truth(int(np.bincount(states[states >= 0]).argmax()), ref)[y0:y1, x0:x1]
    images = {"rain frame": clip.frames[ref, y0:y1, x0:x1]}
    for label, result in results.items():
        images[label] = result.clean_for_frame(ref, chosen[label])[y0:y1, x0:x1]
    captions = {label: f"{psnr_ssim_np(as_prediction(image), truth, convention)[0]:.1f} dB"
                for label, image in images.items()}
    images["truth"] = truth
    return images, captions


def clip_reliability_images(clip: RainClip, result: ClipEstimate
                            ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The paper's single estimate of all frames beside one per stable period, with overlays.

    Each image carries its reliability overlay
    (`spanetlib.pipeline.review_images.reliability_overlay`: red unreliable, blue outside the valid
    region).

    Returns:
        ``(images, captions)``: ``"one estimate of all frames"`` then ``"period k (frames
        a-b)"`` per period; captions give the reliable share.
    """
    single = estimate_background(clip.frames)
    reliability = reliability_map(clip.frames, single)
    images = {"one estimate of all frames": reliability_overlay(
        np.clip(single.image / 255.0, 0.0, 1.0), ~reliability.reliable)}
    captions = {"one estimate of all frames":
                f"reliable {100 * reliability.reliable_share:.1f} %"}
    for k, seg in enumerate(result.segments, start=1):
        label = f"period {k} (frames {seg.start}-{seg.stop - 1})"
        images[label] = reliability_overlay(np.clip(seg.image / 255.0, 0.0, 1.0),
                                            ~seg.reliability.reliable & seg.valid, ~seg.valid)
        captions[label] = f"reliable {100 * seg.reliability.reliable_share:.1f} %"
    return images, captions


def quality_validation_table() -> Path | None:
    """The checkout's ``results/quality_validation.csv`` (``benchmarks/bench_quality.py``).

    The quality score's validation against the truth of synthetic clips, for
    `spanetlib.paper.figures.plot_quality_validation`; None where the file is missing (an installed
    package without the checkout, or the benchmark not run).
    """
    path = Path(__file__).resolve().parents[2] / "results" / "quality_validation.csv"
    return path if path.is_file() else None


# --------------------------------------------------------------------------------------------
# Samples for Figures 7-12
# --------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One image of a figure: rain, its clean image and (synthetic data) the true background.

    Attributes:
        name: a label.
        rain: H x W x 3 uint8.
        clean: the clean image the dataset pairs it with (the estimate for §3 data).
        truth: the true background (None for real data).
    """

    name: str
    rain: np.ndarray
    clean: np.ndarray
    truth: np.ndarray | None = None


def _spread(items: Sequence[Any], n: int) -> list[Any]:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(items) <= n:
        return list(items)
    index = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in index]


def scene_samples(dataset: DatasetInfo, n: int = 3) -> list[Sample]:
    """Whole frames of the §3 test scenes (test pairs for real data), ``n`` spread evenly.

    For synthetic data, each distinct (scene, frame) of the test list gives the full rain
    frame (``scenes_dir/<scene>``), the scene's estimated clean image (``OUT/<scene>/
    clean.png``) and its true background. For real data, ``n`` test pairs.

    Raises:
        ValueError: ``n`` < 1.
        InputError: the test list is missing or empty.
    """
    pairs = read_pair_list(dataset.test_list)
    if not pairs:
        raise InputError(f"the test list {dataset.test_list} holds no pairs")
    if not (dataset.synthetic and dataset.scenes_dir is not None):
        return [Sample(rain.stem, read_image(rain), read_image(clean))
                for rain, clean in _spread(pairs, n)]
    frames = list(dict.fromkeys((patch_position(rain).scene, patch_position(rain).frame)
                                for rain, _ in pairs))
    out = []
    for scene, frame in _spread(frames, n):
        folder = Path(dataset.scenes_dir) / scene
        rain = read_image(list_frame_files(folder)[frame])
        out.append(Sample(f"{scene} frame {frame}", rain,
                          read_image(Path(dataset.root) / scene / "clean.png"),
                          read_image(scene_ground_truth(folder))))
    return out


def level_samples(test_list: str | os.PathLike, labels: str | os.PathLike,
                  per_level: int = 1) -> list[Sample]:
    """The first ``per_level`` images of each rain level of the Table 3 set (truth = clean)."""
    table = pd.read_csv(labels)
    pairs = {rain.stem: (rain, clean) for rain, clean in read_pair_list(test_list)}
    out = []
    for level, group in table.groupby("level", sort=False):
        for name in group["name"].astype(str).iloc[:per_level]:
            rain, clean = pairs[name]
            image = read_image(clean)
            out.append(Sample(f"{level}: {name}", read_image(rain), image, image))
    return out


def folder_samples(folders: Mapping[str, FolderPairs], per_folder: int = 1) -> list[Sample]:
    """Pairs of test folders (`spanetlib.io.layouts`), ``per_folder`` spread over each folder.

    Args:
        folders: label -> the folder's pairs (e.g. from
            `spanetlib.paper.released_weights.field_folders`).
        per_folder: samples per folder, spread evenly over its pairs (all when it has fewer).

    Returns:
        Samples named ``"<label>: <pair name>"`` whose clean image is the folder's ground
        truth (``truth`` is ``clean``), in folder order.

    Raises:
        ValueError: ``per_folder`` < 1.
        InputError: an image cannot be read.
    """
    out = []
    for label, found in folders.items():
        for pair in _spread(found.pairs, per_folder):
            rain, clean = pair.read()
            out.append(Sample(f"{label}: {pair.name}", rain, clean, clean))
    return out


def photo_sample(size: Sequence[int] = (240, 320), seed: int = 0, name: str = "astronaut"
                 ) -> Sample:
    """A "real-world-like" photo (Fig. 11): rain unlike anything in training.

    A scikit-image photo with one rain layer from `spanetlib.synthesis.rain.make_rain_image` whose
    settings lie outside the training presets (the §3 videos fall at 6-10 degrees, 1 px wide,
    brightness about 0.35): streaks leaning the other way (-20 degrees), twice as wide,
    brighter, softer, plus sensor noise.
    """
    photo = load_background(name, size=(int(size[0]), int(size[1])))
    image = make_rain_image(photo, level="medium", seed=seed, noise_sigma=0.01, angle=-20.0,
                            angle_jitter=6.0, width=2.0, blur=1.2, brightness=0.7, length=40.0)
    return Sample(f"{name} (held-out rain)", image.rain, image.clean, image.clean)


def failure_sample(size: Sequence[int] = (240, 320), seed: int = 0, name: str = "coffee"
                   ) -> Sample:
    """Dense rain (Fig. 12): the heavy level with twice its streak density, longer streaks."""
    heavy = IMAGE_RAIN_LEVELS["heavy"]
    photo = load_background(name, size=(int(size[0]), int(size[1])))
    image = make_rain_image(photo, level="heavy", seed=seed, density=2.0 * heavy.density,
                            length=1.3 * heavy.length, brightness=0.75)
    return Sample(f"{name} (dense rain)", image.rain, image.clean, image.clean)


# --------------------------------------------------------------------------------------------
# Rows of images
# --------------------------------------------------------------------------------------------
def derain_rows(models: Mapping[str, nn.Module | None], samples: Sequence[Sample],
                device: str | torch.device = "auto") -> list[dict[str, np.ndarray]]:
    """Figs. 9-11: per sample, the rain image, each model's output, the clean image(s).

    Returns:
        One dict per sample: ``"Rain"``, one entry per model (float [0, 1]; a None model is
        skipped), then the reference images: ``"Clean"`` when the sample's clean image is its
        truth (single synthetic images), else ``"Clean (dataset)"`` (the pair's clean image:
        the estimate for §3 data) and, when the sample has one, ``"True background"``.
    """
    rows = []
    for sample in samples:
        row: dict[str, np.ndarray] = {"Rain": sample.rain}
        for label, model in models.items():
            if model is not None:
                row[label] = derain_array(model, sample.rain, device=device)[0]
        if sample.truth is not None and sample.truth is sample.clean:
            row["Clean"] = sample.clean
        else:
            row["Clean (dataset)"] = sample.clean
            if sample.truth is not None:
                row["True background"] = sample.truth
        rows.append(row)
    return rows


def psnr_captions(rows: Sequence[Mapping[str, np.ndarray]], reference: str | None = None,
                  convention: str = "standard") -> dict[str, str]:
    """Column captions: mean PSNR of every image column against ``reference``; map ranges.

    Maps (H x W columns, e.g. difference or attention maps) are shown scaled to their own
    maximum, so their caption gives the scale: the mean and the maximum value over all rows.
    Images are scored as `spanetlib.evaluation.evaluate` scores a prediction (`as_prediction`), so
    the rain image and a model that returns it get the same caption.

    Args:
        rows: rows of images (e.g. from `derain_rows`), the same columns in every row.
        reference: the column scored against; None: the first of ``"True background"``,
            ``"Clean"``, ``"Clean (dataset)"`` that the rows have.
        convention: metric convention.

    Returns:
        Column -> ``"xx.xx dB"`` for every RGB column but the reference, and
        ``"mean m, max M"`` for every map column.

    Raises:
        ValueError: no rows, or ``reference`` is not a column of the rows.
    """
    columns = list(rows[0]) if rows else []
    if reference is None:
        reference = next((c for c in ("True background", "Clean", "Clean (dataset)")
                          if c in columns), None)
    if reference not in columns:
        raise ValueError(f"reference {reference!r} is not a column of the rows {columns}")
    captions = {}
    for column, image in rows[0].items():
        if np.asarray(image).ndim == 2:
            maps = np.stack([np.asarray(row[column], np.float32) for row in rows])
            captions[column] = f"mean {maps.mean():.3f}, max {maps.max():.3f}"
            continue
        if column == reference:
            continue
        values = [psnr_ssim_np(as_prediction(row[column]), as_prediction(row[reference]),
                               convention)[0] for row in rows]
        captions[column] = f"{np.mean(values):.2f} dB"
    return captions


def attention_rows(models: Mapping[str, nn.Module], samples: Sequence[Sample],
                   device: str | torch.device = "auto", mask_thresholds: Sequence[float] = (0.0,)
                   ) -> list[dict[str, np.ndarray]]:
    """Fig. 7: per sample the rain image, each model's first attention map A_1, the mask M.

    M is `spanetlib.training.data.rain_mask` of the rain image and the sample's clean image (the
    target of the attention loss, Eq. 7) at each threshold (in [0, 1] units, as
    ``TrainConfig.mask_threshold``; 0, the authors' choice, marks every changed pixel).

    Returns:
        One dict per sample: ``"Rain image"``, ``"A_1 <label>"`` per model, then ``"Rain mask
        M"`` (a single threshold 0) or ``"M (> k/255)"`` per threshold.

    Raises:
        ValueError: a model returns no attention map, or no / a negative threshold.
    """
    if not mask_thresholds or min(mask_thresholds) < 0:
        raise ValueError(f"expected thresholds >= 0, got {tuple(mask_thresholds)}")
    single = tuple(mask_thresholds) == (0.0,)
    rows = []
    for sample in samples:
        row: dict[str, np.ndarray] = {"Rain image": sample.rain}
        for label, model in models.items():
            attention = derain_array(model, sample.rain, device=device)[1]
            if attention is None:
                raise ValueError(f"model {label!r} returns no attention map")
            row[f"A_1 {label}"] = attention
        for threshold in mask_thresholds:
            key = "Rain mask M" if single else f"M (> {threshold * 255:.0f}/255)"
            row[key] = rain_mask(sample.rain, sample.clean,
                                 threshold * 255.0).astype(np.float32)
        rows.append(row)
    return rows


class AttentionStats(NamedTuple):
    """How much an attention map A_1 picks out the rain (a tuple ``(on, off, ratio)``).

    Attributes:
        on_rain: mean of A_1 over the rain pixels.
        off_rain: mean of A_1 over the rain-free pixels.
        ratio: ``on_rain / off_rain`` (``inf`` when only ``off_rain`` is 0, ``nan`` when
            both are).
    """

    on_rain: float
    off_rain: float
    ratio: float


def _ratio(on: float, off: float) -> float:
    if off > 0:
        return on / off
    return float("inf") if on > 0 else float("nan")


def attention_stats(model: nn.Module, rain: np.ndarray, mask: np.ndarray,
                    device: str | torch.device = "cpu") -> AttentionStats:
    """Mean of a model's first attention map A_1 on and off the rain of one image.

    The goal of issue 15 for SPANet weights: ``on_rain >= 0.2`` and ``ratio >= 1.5`` on rain
    images with a known rain layer (the authors' weights: about 0.63 and 1.7 on our held-out
    rain, see `mean_attention_stats`).

    Args:
        model: a derainer returning ``(image, attention)`` (see
            `spanetlib.derain.images.derain_array`).
        rain: H x W x 3 RGB rain image, uint8 or float in [0, 1].
        mask: H x W bool, True on the rain pixels (e.g. `spanetlib.training.data.rain_mask` of the
            rain image and its rain-free image).
        device: where to run the model.

    Returns:
        The `AttentionStats`.

    Raises:
        ValueError: the mask does not match the image, marks no rain or only rain, or the
            model returns no attention map.
    """
    mask = np.asarray(mask, bool)
    if mask.shape != np.shape(rain)[:2]:
        raise ValueError(f"mask: expected shape {np.shape(rain)[:2]} (the image's H x W), "
                         f"got {mask.shape}")
    if mask.all() or not mask.any():
        raise ValueError("mask: expected both rain and rain-free pixels, got "
                         + ("only rain" if mask.all() else "no rain"))
    attention = derain_array(model, rain, device=device)[1]
    if attention is None:
        raise ValueError("the model returns no attention map")
    on, off = float(attention[mask].mean()), float(attention[~mask].mean())
    return AttentionStats(on, off, _ratio(on, off))


def mean_attention_stats(model: nn.Module, samples: Sequence[Sample],
                         threshold: float = 10 / 255,
                         device: str | torch.device = "cpu") -> AttentionStats:
    """`attention_stats` averaged over samples (each image counts the same).

    The rain pixels of a sample are where its rain image differs from its true background
    (``truth``; the ``clean`` image when there is none) by more than ``threshold`` in some
    channel (`spanetlib.training.data.rain_mask`; 10/255 keeps the visible streaks and drops their
    faint blur and the sensor noise). ``ratio`` is the ratio of the two means.

    Raises:
        ValueError: no samples, a negative threshold, or a sample without both rain and
            rain-free pixels.

    Example:
        >>> from spanetlib.models import SPANet
        >>> _ = torch.manual_seed(0)
        >>> stats = mean_attention_stats(SPANet(channels=4), [photo_sample((32, 32))])
        >>> [round(v, 1) for v in stats]  # an untrained model attends 0.5 everywhere
        [0.5, 0.5, 1.0]
    """
    if not samples:
        raise ValueError("expected at least one sample")
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    stats = []
    for sample in samples:
        reference = sample.truth if sample.truth is not None else sample.clean
        scale = 255.0 if np.asarray(sample.rain).dtype == np.uint8 else 1.0
        stats.append(attention_stats(model, sample.rain,
                                     rain_mask(sample.rain, reference, threshold * scale),
                                     device))
    on = float(np.mean([s.on_rain for s in stats]))
    off = float(np.mean([s.off_rain for s in stats]))
    return AttentionStats(on, off, _ratio(on, off))


def difference_rows(samples: Sequence[Sample]) -> list[dict[str, np.ndarray]]:
    """Fig. 8: how clean the estimated clean images are.

    Per sample: the rain frame, the estimated clean image, ``|rain - estimate|`` (what a
    network learns to remove) and ``|estimate - truth|`` (rain or error left in the ground
    truth), as max-over-channels maps in [0, 1].

    Raises:
        ValueError: a sample has no true background.
    """
    rows = []
    for sample in samples:
        if sample.truth is None:
            raise ValueError(f"sample {sample.name!r} has no true background")
        rows.append({"Rain frame": sample.rain, "Estimated clean": sample.clean,
                     "|rain - estimate|": difference_map(sample.rain, sample.clean),
                     "|estimate - truth|": difference_map(sample.clean, sample.truth),
                     "True background": sample.truth})
    return rows


def failure_rows(models: Mapping[str, nn.Module], sample: Sample, focus: str = OURS,
                 device: str | torch.device = "auto") -> list[dict[str, np.ndarray]]:
    """Fig. 12: every model on one dense-rain image, and where ``focus`` leaves streaks.

    Returns:
        One row (a list of one dict, for `spanetlib.paper.figures.plot_image_grid`): ``"Rain"``,
        each model's output, ``"|<focus> - truth|"`` (the rain it left, max over channels),
        ``"A_1 <focus>"`` (its attention map; omitted for models without one) and
        ``"True background"``.

    Raises:
        ValueError: ``focus`` is not a model, or the sample has no true background.
    """
    if focus not in models:
        raise ValueError(f"focus {focus!r} is not one of the models {list(models)}")
    if sample.truth is None:
        raise ValueError(f"sample {sample.name!r} has no true background")
    row: dict[str, np.ndarray] = {"Rain": sample.rain}
    focus_attention = None
    for label, model in models.items():
        output, attention = derain_array(model, sample.rain, device=device)
        row[label] = output
        if label == focus:
            focus_output, focus_attention = output, attention
    row[f"|{focus} - truth|"] = difference_map(focus_output, sample.truth)
    if focus_attention is not None:
        row[f"A_1 {focus}"] = focus_attention
    row["True background"] = sample.truth
    return [row]
