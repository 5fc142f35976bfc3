"""Seeded rain synthesis with a known ground truth: streak layers, rain videos, rain images.

The paper (SPANet, CVPR 2019, Sec. 3) builds real rain/clean pairs from rain *videos* of a
static scene: every pixel is covered by rain in some frames only, and the clean value is the
one that recurs most often (the intensity *mode*, Eq. 2), not the temporal median, because in
heavy rain a pixel can be covered in more than half of the frames. This module makes such
videos synthetically, with the true background known, so the whole pipeline (background
estimation, dataset export, training, evaluation) can run and be scored without real data.

A streak layer (``rain_layer``) is made the way rain renders are usually made: sparse random
seeds with random brightness, each smeared into a line along the fall direction (one
anti-aliased line kernel per angle/length group, applied with ``cv2.filter2D``), with a small
Gaussian profile across the streak. ``compose_rain`` lays the streak layer over a background
(screen or additive blend). ``make_rain_video`` draws independent rain per frame over a static
background with sensor noise, and optional flicker and camera jitter; ``make_rain_image`` makes
single rain images at three levels (light/medium/heavy, in the spirit of DID-MDN's Rain1200).
``make_rain_clip`` makes phone-like clips described by a ``ClipSpec`` (named variants in
``CLIP_PRESETS``): hand-held shake, pans, exposure flicker, passing and parked objects, light
changes, sparse to very dense and haze-like rain, few frames; every frame comes with its
rain-free rendering, rain and object masks, the true camera transform and the scene state,
so any estimate or exported pair can be checked against the truth.
Backgrounds are scikit-image's bundled photos (``load_background``): the shipped weights are
trained on ``TRAINING_BACKGROUND_NAMES``, and ``HELDOUT_BACKGROUND_NAMES`` are kept for
held-out checks.

Conventions: images are H x W x 3 RGB, uint8 or float32 in [0, 1]; streak layers are H x W
float32 in [0, 1]. Angles are degrees from vertical; a positive angle makes the lower end of a
streak lean to the right (rain falling to the right).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.special import erf, ndtri

from spanetlib.io.errors import InputError
from spanetlib.pipeline.resample import bspline_coefficients, bspline_sample

__all__ = [
    "BACKGROUND_NAMES",
    "BLEND_MODES",
    "CLIP_PRESETS",
    "ClipSpec",
    "ClipTruth",
    "DENSITY_PRESETS",
    "HELDOUT_BACKGROUND_NAMES",
    "IMAGE_RAIN_LEVELS",
    "RainClip",
    "RainImage",
    "RainParams",
    "RainVideo",
    "TRAINING_BACKGROUND_NAMES",
    "compose_rain",
    "load_background",
    "make_rain_clip",
    "make_rain_image",
    "make_rain_video",
    "rain_layer",
    "streak_kernel",
    "write_rain_clip",
]

# Photos bundled inside scikit-image's own data folder (they load without network access).
# Colour photos first; ``camera``, ``brick`` and ``grass`` are grayscale and returned as RGB.
_BACKGROUND_LOADERS = {
    "astronaut": lambda d: d.astronaut(),
    "brick": lambda d: d.brick(),
    "camera": lambda d: d.camera(),
    "chelsea": lambda d: d.chelsea(),
    "coffee": lambda d: d.coffee(),
    "grass": lambda d: d.grass(),
    "hubble_deep_field": lambda d: d.hubble_deep_field(),
    "motorcycle_left": lambda d: d.stereo_motorcycle()[0],
    "rocket": lambda d: d.rocket(),
}
BACKGROUND_NAMES: tuple[str, ...] = tuple(sorted(_BACKGROUND_LOADERS))

# Extra grayscale photos (returned as RGB) that only the held-out check uses; kept out of
# ``BACKGROUND_NAMES`` so that code cycling through it makes the same data as before.
_HELDOUT_ONLY_LOADERS = {
    "clock": lambda d: d.clock(),
    "coins": lambda d: d.coins(),
    "gravel": lambda d: d.gravel(),
}
_ALL_LOADERS = {**_BACKGROUND_LOADERS, **_HELDOUT_ONLY_LOADERS}

#: The photos the shipped synthetic weights are trained on: ``BACKGROUND_NAMES`` less the two
#: that are held out ("coffee" and "rocket").
TRAINING_BACKGROUND_NAMES: tuple[str, ...] = tuple(
    name for name in BACKGROUND_NAMES if name not in ("coffee", "rocket"))
#: Photos never seen in that training, for held-out checks; disjoint from
#: ``TRAINING_BACKGROUND_NAMES``. All of them load with `load_background`.
HELDOUT_BACKGROUND_NAMES: tuple[str, ...] = ("coffee", "rocket", "clock", "coins", "gravel")

BLEND_MODES = ("additive", "screen")

# Pixels whose value the rain changes by more than this (in [0, 1] units) count as rain-covered.
_MASK_THRESHOLD = 1.0 / 255.0


@dataclass(frozen=True)
class RainParams:
    """Parameters of a rain-streak layer.

    Attributes:
        density: expected number of streaks per image pixel (0.004 = 4 streaks per 1000 px);
            seeds are also drawn in a margin around the image so streaks enter from the edges.
        angle: mean fall direction in degrees from vertical; positive leans the lower end of a
            streak to the right.
        angle_jitter: standard deviation (degrees) of the per-group angle around ``angle``
            (normal, stratified over the groups).
        length: mean streak length in pixels.
        length_jitter: relative spread of the per-group length: each group's length is
            ``length * (1 + length_jitter * u)`` with ``u`` uniform in [-1, 1] (stratified).
        width: streak core width in pixels (a box across the streak before ``blur``).
        blur: Gaussian sigma (pixels) across the streak (defocus / motion softness).
        brightness: mean peak intensity of a streak in [0, 1].
        brightness_jitter: standard deviation of the per-streak peak intensity (clipped to
            [0.02, 1]).
        taper: intensity drop at the two ends of a streak relative to its centre, in [0, 1].
        groups: number of angle/length groups; each streak joins one at random. More groups
            give a more continuous spread of angles and lengths at the cost of one filter each.
    """

    density: float = 0.004
    angle: float = 8.0
    angle_jitter: float = 3.0
    length: float = 24.0
    length_jitter: float = 0.4
    width: float = 1.0
    blur: float = 0.6
    brightness: float = 0.4
    brightness_jitter: float = 0.2
    taper: float = 0.3
    groups: int = 4

    def __post_init__(self) -> None:
        checks = (
            ("density", self.density >= 0, ">= 0"),
            ("angle_jitter", self.angle_jitter >= 0, ">= 0"),
            ("length", self.length >= 1, ">= 1"),
            ("length_jitter", 0 <= self.length_jitter < 1, "in [0, 1)"),
            ("width", self.width > 0, "> 0"),
            ("blur", self.blur >= 0, ">= 0"),
            ("brightness", 0 <= self.brightness <= 1, "in [0, 1]"),
            ("brightness_jitter", self.brightness_jitter >= 0, ">= 0"),
            ("taper", 0 <= self.taper <= 1, "in [0, 1]"),
        )
        for name, ok, expected in checks:
            value = getattr(self, name)
            if not math.isfinite(value) or not ok:
                raise ValueError(f"RainParams.{name}: expected {expected}, got {value!r}")
        if (isinstance(self.groups, bool) or not isinstance(self.groups, (int, np.integer))
                or self.groups < 1):
            raise ValueError(f"RainParams.groups: expected an int >= 1, got {self.groups!r}")

    def replace(self, **changes: float) -> RainParams:
        """Return a copy with some fields changed (unknown names raise ``ValueError``)."""
        return _replace_fields(self, changes)


def _replace_fields(obj, changes: dict):
    """``dataclasses.replace`` that names unknown fields in its ``ValueError``."""
    names = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ValueError(f"unknown {type(obj).__name__} field(s) {unknown}; expected some of "
                         f"{sorted(names)}")
    return dataclasses.replace(obj, **changes)


# Video rain, calibrated on 256 x 256 frames by the share of pixels a frame's streak layer
# touches (> 1/255): a few percent (sparse), about a fifth (normal), over half (dense).
# In "dense" a pixel is under rain in about half of the frames, with widely spread rain values,
# so the temporal median is biased bright while the intensity mode stays at the clean value.
DENSITY_PRESETS: dict[str, RainParams] = {
    "sparse": RainParams(density=0.0004, angle=6.0, angle_jitter=2.0, length=20.0,
                         length_jitter=0.4, width=1.0, blur=0.6, brightness=0.35,
                         brightness_jitter=0.15, groups=3),
    "normal": RainParams(density=0.0024, angle=8.0, angle_jitter=3.0, length=24.0,
                         length_jitter=0.4, width=1.0, blur=0.6, brightness=0.35,
                         brightness_jitter=0.18, groups=3),
    "dense": RainParams(density=0.0068, angle=10.0, angle_jitter=4.0, length=28.0,
                        length_jitter=0.4, width=1.0, blur=0.7, brightness=0.3,
                        brightness_jitter=0.18, groups=3),
}

# Single-image rain in three levels (light < medium < heavy), tuned for images of 256-512 px.
IMAGE_RAIN_LEVELS: dict[str, RainParams] = {
    "light": RainParams(density=0.0012, angle=5.0, angle_jitter=3.0, length=16.0,
                        length_jitter=0.4, width=1.0, blur=0.5, brightness=0.55,
                        brightness_jitter=0.15, taper=0.3, groups=3),
    "medium": RainParams(density=0.0028, angle=10.0, angle_jitter=5.0, length=26.0,
                         length_jitter=0.4, width=1.5, blur=0.7, brightness=0.6,
                         brightness_jitter=0.15, taper=0.3, groups=4),
    "heavy": RainParams(density=0.0055, angle=15.0, angle_jitter=8.0, length=36.0,
                        length_jitter=0.4, width=2.0, blur=1.0, brightness=0.6,
                        brightness_jitter=0.15, taper=0.3, groups=5),
}


@dataclass
class RainVideo:
    """A synthetic rain video with its ground truth.

    Attributes:
        frames: N x H x W x 3 uint8 RGB rain frames.
        clean: H x W x 3 uint8 RGB true background (unshifted, without flicker or noise).
        rain_mask: N x H x W bool, True where the rain changed the (shifted, flickered)
            background by more than 1/255 in any channel, before sensor noise.
        params: the ``RainParams`` used.
        shifts: N x 2 float32 camera shift (dx, dy) in pixels of each frame (frame 0 is 0).
        gains: N float32 global brightness gain of each frame (1 without flicker).
    """

    frames: np.ndarray
    clean: np.ndarray
    rain_mask: np.ndarray
    params: RainParams
    shifts: np.ndarray
    gains: np.ndarray

    @property
    def coverage(self) -> float:
        """Fraction of (frame, pixel) entries under rain, i.e. ``rain_mask.mean()``."""
        return float(self.rain_mask.mean())


@dataclass
class RainImage:
    """A single synthetic rain image with its ground truth.

    Attributes:
        rain: H x W x 3 uint8 RGB rain image.
        clean: H x W x 3 uint8 RGB clean image (the background).
        level: the level name ("light", "medium", "heavy").
        params: the ``RainParams`` used (the level's, with overrides applied).
    """

    rain: np.ndarray
    clean: np.ndarray
    level: str
    params: RainParams


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"expected a numpy Generator, an int seed or None, got {type(rng).__name__}")


def _check_background(background: np.ndarray, *, allow_float: bool = False) -> None:
    if not isinstance(background, np.ndarray):
        raise ValueError(f"expected a numpy array H x W x 3, got {type(background).__name__}")
    if background.ndim != 3 or background.shape[2] != 3:
        raise ValueError(f"expected a background of shape H x W x 3, got {background.shape}")
    if background.shape[0] < 1 or background.shape[1] < 1:
        raise ValueError(f"expected a non-empty background, got shape {background.shape}")
    ok = background.dtype == np.uint8 or (allow_float and background.dtype.kind == "f")
    if not ok:
        expected = "uint8 or float" if allow_float else "uint8"
        raise ValueError(f"expected a {expected} background, got dtype {background.dtype}")


@functools.cache
def _load_raw(name: str) -> np.ndarray:
    import skimage.data

    image = np.asarray(_ALL_LOADERS[name](skimage.data))
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = np.ascontiguousarray(image[:, :, :3].astype(np.uint8, copy=False))
    image.flags.writeable = False
    return image


def load_background(name: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Load one of scikit-image's bundled photos as a background (no network needed).

    Args:
        name: one of ``BACKGROUND_NAMES`` or ``HELDOUT_BACKGROUND_NAMES``.
        size: optional output size ``(H, W)``: the photo is centre-cropped to that aspect
            ratio, then resized with ``cv2.INTER_AREA`` (``INTER_CUBIC`` when enlarging).

    Returns:
        H x W x 3 uint8 RGB image (grayscale photos are repeated over the three channels).

    Raises:
        ValueError: unknown name or a bad size.
    """
    if name not in _ALL_LOADERS:
        raise ValueError(f"unknown background {name!r}; expected one of {sorted(_ALL_LOADERS)}")
    image = _load_raw(name)
    if size is None:
        return image.copy()
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in size)):
        raise ValueError(f"size: expected (H, W) with positive ints, got {size!r}")
    out_h, out_w = int(size[0]), int(size[1])
    h, w = image.shape[:2]
    # Centre crop to the target aspect ratio.
    if w * out_h > h * out_w:  # too wide
        crop_w = max(1, round(h * out_w / out_h))
        x0 = (w - crop_w) // 2
        image = image[:, x0:x0 + crop_w]
    else:
        crop_h = max(1, round(w * out_h / out_w))
        y0 = (h - crop_h) // 2
        image = image[y0:y0 + crop_h]
    if image.shape[:2] == (out_h, out_w):
        return image.copy()
    shrinking = image.shape[0] >= out_h and image.shape[1] >= out_w
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(image), (out_w, out_h), interpolation=interp)


def streak_kernel(angle: float, length: float, width: float = 1.0, blur: float = 0.6,
                  taper: float = 0.3) -> np.ndarray:
    """One rain streak as a small float32 kernel with peak 1 (the line kernel of a group).

    Along the streak the profile is flat with anti-aliased ends and a quadratic taper;
    across it, a box of ``width`` pixels convolved with a Gaussian of sigma ``blur``.

    Args:
        angle: degrees from vertical (positive: lower end leans right).
        length: streak length in pixels (>= 1).
        width: core width in pixels (> 0).
        blur: Gaussian sigma across the streak (>= 0).
        taper: relative intensity drop at the ends, in [0, 1].

    Returns:
        (2 * ry + 1) x (2 * rx + 1) float32 kernel, symmetric under a 180 degree rotation,
        maximum 1.
    """
    theta = math.radians(angle)
    dx, dy = math.sin(theta), math.cos(theta)  # along the streak (x right, y down)
    nx, ny = dy, -dx  # across the streak
    half_len = length / 2.0
    half_cross = width / 2.0 + 3.0 * blur + 1.0
    rx = math.ceil(abs(dx) * (half_len + 1.0) + abs(nx) * half_cross)
    ry = math.ceil(abs(dy) * (half_len + 1.0) + abs(ny) * half_cross)
    y, x = np.mgrid[-ry:ry + 1, -rx:rx + 1].astype(np.float64)
    u = x * dx + y * dy
    v = x * nx + y * ny
    along = np.clip(half_len + 0.5 - np.abs(u), 0.0, 1.0)
    along *= np.clip(1.0 - taper * (u / max(half_len, 0.5)) ** 2, 0.0, 1.0)
    if blur > 0:
        s = math.sqrt(2.0) * blur
        across = 0.5 * (erf((v + width / 2.0) / s) - erf((v - width / 2.0) / s))
    else:
        across = np.clip(width / 2.0 + 0.5 - np.abs(v), 0.0, 1.0)
    kernel = along * across
    peak = kernel.max()
    if peak > 0:
        kernel /= peak
    return kernel.astype(np.float32)


def _group_kernels(params: RainParams, gen: np.random.Generator) -> list[np.ndarray]:
    """Draw the angle/length groups of a layer (or a whole video) and build their kernels."""
    g = int(params.groups)
    # Stratified draws (one per 1/g quantile band) keep the mix of angles and lengths, and so
    # the rain coverage, steady from one layer or video to the next.
    strata = (np.arange(g) + gen.uniform(0.0, 1.0, g)) / g
    angles = params.angle + params.angle_jitter * ndtri(gen.permutation(strata))
    lengths = params.length * (1.0 + params.length_jitter * (2.0 * strata - 1.0))
    return [streak_kernel(a, max(1.0, ln), params.width, params.blur, params.taper)
            for a, ln in zip(angles, lengths, strict=True)]


def _render_layers(shape_hw: tuple[int, int], params: RainParams, kernels: list[np.ndarray],
                   gen: np.random.Generator, n: int) -> np.ndarray:
    """Render ``n`` independent layers (n x H x W float32 in [0, 1]) with shared kernels.

    Each layer's seed canvas has a margin of half a kernel on every side; the canvases of the
    ``n`` layers are stacked vertically and filtered in one ``cv2.filter2D`` call per group.
    A streak can only reach the neighbouring canvas's margin, which is cropped away, so the
    layers stay independent.
    """
    h, w = shape_hw
    g = len(kernels)
    my = max(k.shape[0] // 2 for k in kernels)
    mx = max(k.shape[1] // 2 for k in kernels)
    ch, cw = h + 2 * my, w + 2 * mx
    flats, brights, groups = [], [], []
    for i in range(n):  # per-layer draws, so the result does not depend on how layers batch
        count = gen.poisson(params.density * ch * cw)
        flats.append(gen.integers(0, ch * cw, size=count) + i * ch * cw)
        bright = params.brightness + params.brightness_jitter * gen.standard_normal(count)
        brights.append(np.clip(bright, 0.02, 1.0))
        groups.append(gen.integers(0, g, size=count))
    flat = np.concatenate(flats)
    bright = np.concatenate(brights)
    group = np.concatenate(groups)
    layers = np.zeros((n, h, w), np.float32)
    for k, kernel in enumerate(kernels):
        sel = group == k
        if not sel.any():
            continue
        seeds = np.bincount(flat[sel], weights=bright[sel], minlength=n * ch * cw)
        seeds = seeds.astype(np.float32).reshape(n * ch, cw)
        smeared = cv2.filter2D(seeds, cv2.CV_32F, kernel, borderType=cv2.BORDER_CONSTANT)
        layers += smeared.reshape(n, ch, cw)[:, my:my + h, mx:mx + w]
    np.clip(layers, 0.0, 1.0, out=layers)
    return layers


def _check_shape_hw(shape_hw: tuple[int, int]) -> tuple[int, int]:
    if (not isinstance(shape_hw, (tuple, list)) or len(shape_hw) != 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1
                       for s in shape_hw)):
        raise ValueError(f"shape_hw: expected (H, W) with positive ints, got {shape_hw!r}")
    return int(shape_hw[0]), int(shape_hw[1])


def rain_layer(shape_hw: tuple[int, int], params: RainParams,
               rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Draw one rain-streak intensity layer.

    Seeds are scattered uniformly (Poisson count, ``params.density`` per pixel, also in a
    margin so streaks cross the borders), each with a random peak brightness; each seed joins
    one of ``params.groups`` angle/length groups, and each group's seed image is smeared with
    its own line kernel (``streak_kernel``) by ``cv2.filter2D``. Overlapping streaks add up and
    the sum is clipped to [0, 1].

    Args:
        shape_hw: output size ``(H, W)``.
        params: streak parameters.
        rng: a numpy ``Generator`` or an int seed (same seed, same layer).

    Returns:
        H x W float32 streak intensity in [0, 1] (0 = no rain).
    """
    shape_hw = _check_shape_hw(shape_hw)
    if not isinstance(params, RainParams):
        raise TypeError(f"params: expected RainParams, got {type(params).__name__}")
    gen = _rng(rng)
    return _render_layers(shape_hw, params, _group_kernels(params, gen), gen, 1)[0]


def compose_rain(background: np.ndarray, layer: np.ndarray, blend: str = "screen") -> np.ndarray:
    """Lay a rain layer over a background.

    ``screen``: ``O = 1 - (1 - B)(1 - R)`` (light adds with saturation, never exceeds 1);
    ``additive``: ``O = clip(B + R, 0, 1)``; both in [0, 1] units.

    Args:
        background: ... x H x W x 3 RGB, uint8 or float in [0, 1].
        layer: ... x H x W (same rain on every channel) or ... x H x W x 3, float in [0, 1].
        blend: "screen" or "additive".

    Returns:
        The rain image with the background's shape and dtype (uint8 is rounded).
    """
    if blend not in BLEND_MODES:
        raise ValueError(f"blend: expected one of {list(BLEND_MODES)}, got {blend!r}")
    background = np.asarray(background)
    layer = np.asarray(layer)
    if background.ndim < 3 or background.shape[-1] != 3:
        raise ValueError(f"background: expected ... x H x W x 3, got shape {background.shape}")
    if layer.shape == background.shape[:-1]:
        layer = layer[..., None]
    elif layer.shape != background.shape:
        raise ValueError(f"layer: expected shape {background.shape[:-1]} or {background.shape}"
                         f", got {layer.shape}")
    if background.dtype == np.uint8:
        base = background.astype(np.float32) / 255.0
    elif background.dtype.kind == "f":
        base = background
    else:
        raise ValueError(f"background: expected uint8 or float dtype, got {background.dtype}")
    rain = layer.astype(base.dtype if base.dtype.kind == "f" else np.float32, copy=False)
    if blend == "screen":
        out = 1.0 - (1.0 - base) * (1.0 - rain)
    else:
        out = np.clip(base + rain, 0.0, 1.0)
    if background.dtype == np.uint8:
        return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return out.astype(background.dtype, copy=False)


def _resolve(table: dict[str, RainParams], key: str | RainParams, what: str) -> RainParams:
    if isinstance(key, RainParams):
        return key
    if not isinstance(key, str) or key not in table:
        raise ValueError(f"{what}: expected one of {list(table)} or a RainParams, got {key!r}")
    return table[key]


def _check_nonneg(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    return value


_CHUNK = 16  # frames rendered together ...
_CHUNK_PIXELS = 4_000_000  # ... unless they hold more pixels than this


def _camera(clean: np.ndarray, shift: np.ndarray, gain: float) -> np.ndarray:
    """The background as the camera sees it in one frame: shifted (reflect border), scaled."""
    base = clean
    if shift.any():
        m = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]], np.float32)
        h, w = clean.shape[:2]
        base = cv2.warpAffine(clean, m, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)
    if gain != 1.0:
        base = np.clip(base * gain, 0.0, 1.0)
    return base


def make_rain_video(background: np.ndarray, n_frames: int, density: str | RainParams = "normal",
                    seed: int | None = 0, noise_sigma: float = 0.01, flicker: float = 0.0,
                    jitter_px: float = 0.0, blend: str = "screen") -> RainVideo:
    """Make a rain video of a static scene with a known clean background.

    Each frame: the background (shifted by the camera jitter, with border reflect, and scaled
    by the flicker gain), then an independent rain layer composed over it (``compose_rain``),
    then Gaussian sensor noise; rounded to uint8. The layers are drawn as in ``rain_layer``,
    except that the angle/length groups are drawn once per video (one wind direction).

    Args:
        background: H x W x 3 uint8 RGB clean scene.
        n_frames: number of frames N >= 1.
        density: "sparse", "normal", "dense" (``DENSITY_PRESETS``) or a ``RainParams``.
        seed: seed of every random draw (None: fresh entropy); the rain, noise, flicker and
            jitter use independent streams, so changing ``noise_sigma`` keeps the same rain.
        noise_sigma: standard deviation of the sensor noise, in [0, 1] units (0.01 ~ 2.6/255).
        flicker: standard deviation of the per-frame global gain around 1 (0 = none).
        jitter_px: per-frame camera shift drawn uniformly in [-jitter_px, jitter_px] pixels in
            x and y (sub-pixel, bilinear); frame 0 is never shifted.
        blend: "screen" or "additive".

    Returns:
        ``RainVideo`` with ``frames`` N x H x W x 3 uint8, ``clean`` (a copy of the background),
        ``rain_mask`` N x H x W bool, ``params``, ``shifts`` and ``gains``.
    """
    _check_background(background)
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"n_frames: expected an int >= 1, got {n_frames!r}")
    params = _resolve(DENSITY_PRESETS, density, "density")
    noise_sigma = _check_nonneg("noise_sigma", noise_sigma)
    flicker = _check_nonneg("flicker", flicker)
    jitter_px = _check_nonneg("jitter_px", jitter_px)
    if blend not in BLEND_MODES:
        raise ValueError(f"blend: expected one of {list(BLEND_MODES)}, got {blend!r}")
    n = int(n_frames)
    h, w = background.shape[:2]
    rain_rng, noise_rng, flicker_rng, jitter_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    gains = np.ones(n, np.float32)
    if flicker > 0:
        gains = np.clip(1.0 + flicker * flicker_rng.standard_normal(n), 0.5, 1.5)
        gains = gains.astype(np.float32)
    shifts = np.zeros((n, 2), np.float32)
    if jitter_px > 0 and n > 1:
        shifts[1:] = jitter_rng.uniform(-jitter_px, jitter_px, (n - 1, 2))
    clean_f = background.astype(np.float32) / 255.0
    kernels = _group_kernels(params, rain_rng)  # one wind direction per video
    frames = np.empty((n, h, w, 3), np.uint8)
    mask = np.empty((n, h, w), bool)
    chunk = max(1, min(_CHUNK, _CHUNK_PIXELS // (h * w)))  # bounded memory for large frames
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        base = np.broadcast_to(clean_f, (c1 - c0, h, w, 3))
        if jitter_px > 0 or flicker > 0:
            base = np.stack([_camera(clean_f, shifts[i], gains[i]) for i in range(c0, c1)])
        layers = _render_layers((h, w), params, kernels, rain_rng, c1 - c0)
        out = compose_rain(base, layers, blend)
        # Largest change over the channels happens where the base is darkest (both blends).
        darkest = np.minimum(np.minimum(base[..., 0], base[..., 1]), base[..., 2])
        if blend == "screen":
            change = layers * (1.0 - darkest)
        else:
            change = np.minimum(layers, 1.0 - darkest)
        mask[c0:c1] = change > _MASK_THRESHOLD
        if noise_sigma > 0:
            out += noise_sigma * noise_rng.standard_normal(out.shape, dtype=np.float32)
        np.clip(out, 0.0, 1.0, out=out)
        out *= 255.0
        out += 0.5
        frames[c0:c1] = out.astype(np.uint8)
    return RainVideo(frames=frames, clean=background.copy(), rain_mask=mask, params=params,
                     shifts=shifts, gains=gains)


def make_rain_image(background: np.ndarray, level: str = "medium", seed: int | None = 0,
                    noise_sigma: float = 0.0, blend: str = "screen",
                    **overrides: float) -> RainImage:
    """Make one rain image at a named level, with the clean image as ground truth.

    Args:
        background: H x W x 3 uint8 RGB clean image.
        level: "light", "medium" or "heavy" (``IMAGE_RAIN_LEVELS``).
        seed: seed of the rain and noise draws.
        noise_sigma: Gaussian noise standard deviation in [0, 1] units added to the rain image.
        blend: "screen" or "additive".
        **overrides: ``RainParams`` fields replacing the level's values (e.g. ``angle=-20``,
            ``length=50``, ``density=0.01``) for held-out checks.

    Returns:
        ``RainImage`` with ``rain`` and ``clean`` H x W x 3 uint8, ``level`` and ``params``.
    """
    _check_background(background)
    if not isinstance(level, str) or level not in IMAGE_RAIN_LEVELS:
        raise ValueError(f"level: expected one of {list(IMAGE_RAIN_LEVELS)}, got {level!r}")
    params = IMAGE_RAIN_LEVELS[level].replace(**overrides) if overrides else \
        IMAGE_RAIN_LEVELS[level]
    noise_sigma = _check_nonneg("noise_sigma", noise_sigma)
    if blend not in BLEND_MODES:
        raise ValueError(f"blend: expected one of {list(BLEND_MODES)}, got {blend!r}")
    rain_rng, noise_rng = (np.random.default_rng(s)
                           for s in np.random.SeedSequence(seed).spawn(2))
    layer = rain_layer(background.shape[:2], params, rain_rng)
    out = compose_rain(background.astype(np.float32) / 255.0, layer, blend)
    if noise_sigma > 0:
        out += noise_sigma * noise_rng.standard_normal(out.shape, dtype=np.float32)
    rain = (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return RainImage(rain=rain, clean=background.copy(), level=level, params=params)


# --------------------------------------------------------------------------------------------
# Phone-like clips: camera motion, exposure, scene events, with the truth of every frame
# --------------------------------------------------------------------------------------------

_VEIL_LEVEL = 0.85  # airlight of the haze-like veil, [0, 1] units


@dataclass(frozen=True)
class ClipSpec:
    """What a synthetic phone-like rain clip shows (see :func:`make_rain_clip`).

    The scene is a photo (``background``) seen by a camera that may shake and pan; it can hold
    a parked object that leaves (or arrives), objects that pass through, and a region whose
    light steps (a lamp switching, a cloud); the exposure may flicker; rain streaks (and an
    optional veil) fall in front of it. Scene *states* are counted by these events: frames
    before the first event show state 0, and so on; frames inside an event's transition
    (the object driving off, the light ramping) belong to no state (-1).

    Attributes:
        size: frame size ``(H, W)``.
        n_frames: number of frames N >= 2.
        background: a :func:`load_background` name (the scene).
        density: ``DENSITY_PRESETS`` name or ``RainParams`` of the streaks.
        noise_sigma: standard deviation of the sensor noise ([0, 1] units).
        shake_px: standard deviation (pixels) of the hand-held translation, per axis.
        shake_deg: standard deviation (degrees) of the hand-held rotation about the centre.
        shake_frames: correlation time of the shake (Gaussian smoothing of white noise, frames).
        pan_px: ``(dx, dy)`` camera travel from the first to the last frame, linear in time.
        flicker_gain: standard deviation of each frame's exposure gain around 1.
        flicker_offset: standard deviation of each frame's exposure offset ([0, 1] units).
        passing: number of objects that cross the scene, each for part of the clip.
        parked: share of the frames after which the parked object leaves (``None``: no parked
            object).
        parked_arrives: the parked object arrives at that time instead of leaving.
        light: share of the frames after which the light of a region steps (``None``: never).
        light_gain: illumination factor of that region after the step.
        light_area: share of the scene's width (from the left) that the step covers; 1 is
            global.
        transition_frames: frames an event takes (object driving off or in, light ramping).
        haze: mean strength of a haze-like veil that the rain adds (``O (1 - h) + 0.85 h``,
            varying per frame); 0 for none. The veil is rain: it is not in the truth.
        blend: rain composition, "screen" or "additive".
        supersample: samples per pixel side when rendering (2: each pixel averages 2 x 2
            samples of the scene, as a sensor integrates light; 1 is 4x faster).
        foliage: number of swaying foliage patches (local dynamic texture: leaves on
            branches that sway in the wind, each patch with its own rhythm); they are part of
            the scene (in the truth), never a scene change.
        foliage_bright: the foliage patches show a bright sky through the gaps between their
            leaves (bright content that moves) instead of the photo behind them.
        sway_px: amplitude (scene pixels) of the foliage's sway.
        ripples: share of the frame's height, from the bottom, that rippling water covers
            (0: none): the photo seen in it is displaced by travelling waves and glints.
        lights: number of small bright lights (lamps, headlights) that move slowly across the
            scene for the whole clip; they are objects (``object_mask``) and bright.
        overlay: opacity in [0, 1] of graphics fixed to the frame, not the scene (a logo box
            with text at the top right at this opacity, a subtitle strip at the bottom at half
            of it with its text at this opacity), laid over rain and noise as a broadcast
            does; 0 for none.
    """

    size: tuple[int, int] = (120, 160)
    n_frames: int = 40
    background: str = "coffee"
    density: str | RainParams = "normal"
    noise_sigma: float = 0.01
    shake_px: float = 0.0
    shake_deg: float = 0.0
    shake_frames: float = 3.0
    pan_px: tuple[float, float] = (0.0, 0.0)
    flicker_gain: float = 0.0
    flicker_offset: float = 0.0
    passing: int = 0
    parked: float | None = None
    parked_arrives: bool = False
    light: float | None = None
    light_gain: float = 0.6
    light_area: float = 0.5
    transition_frames: int = 2
    haze: float = 0.0
    blend: str = "screen"
    supersample: int = 2
    foliage: int = 0
    foliage_bright: bool = False
    sway_px: float = 3.0
    ripples: float = 0.0
    lights: int = 0
    overlay: float = 0.0

    def __post_init__(self) -> None:
        _check_shape_hw(self.size)
        if isinstance(self.supersample, bool) or self.supersample not in (1, 2, 3, 4):
            raise ValueError(f"ClipSpec.supersample: expected 1, 2, 3 or 4, got "
                             f"{self.supersample!r}")
        if (isinstance(self.n_frames, bool) or not isinstance(self.n_frames, (int, np.integer))
                or self.n_frames < 2):
            raise ValueError(f"ClipSpec.n_frames: expected an int >= 2, got {self.n_frames!r}")
        if self.background not in _ALL_LOADERS:
            raise ValueError(f"ClipSpec.background: unknown {self.background!r}; expected one "
                             f"of {sorted(_ALL_LOADERS)}")
        _resolve(DENSITY_PRESETS, self.density, "ClipSpec.density")
        for name in ("noise_sigma", "shake_px", "shake_deg", "flicker_gain", "flicker_offset",
                     "haze"):
            _check_nonneg(f"ClipSpec.{name}", getattr(self, name))
        if not self.shake_frames > 0:
            raise ValueError(f"ClipSpec.shake_frames: expected > 0, got {self.shake_frames!r}")
        if len(self.pan_px) != 2 or not all(math.isfinite(v) for v in self.pan_px):
            raise ValueError(f"ClipSpec.pan_px: expected (dx, dy), got {self.pan_px!r}")
        if isinstance(self.passing, bool) or not isinstance(self.passing, int) or self.passing < 0:
            raise ValueError(f"ClipSpec.passing: expected an int >= 0, got {self.passing!r}")
        for name in ("parked", "light"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise ValueError(f"ClipSpec.{name}: expected a share in (0, 1) or None, got "
                                 f"{value!r}")
        if not 0 < self.light_gain <= 4 or not 0 < self.light_area <= 1:
            raise ValueError(f"ClipSpec: expected 0 < light_gain <= 4 and 0 < light_area <= 1, "
                             f"got {self.light_gain!r}, {self.light_area!r}")
        if not isinstance(self.transition_frames, int) or self.transition_frames < 0:
            raise ValueError(f"ClipSpec.transition_frames: expected an int >= 0, got "
                             f"{self.transition_frames!r}")
        if self.haze >= 1:
            raise ValueError(f"ClipSpec.haze: expected a number in [0, 1), got {self.haze!r}")
        if self.blend not in BLEND_MODES:
            raise ValueError(f"ClipSpec.blend: expected one of {list(BLEND_MODES)}, got "
                             f"{self.blend!r}")
        for name in ("foliage", "lights"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"ClipSpec.{name}: expected an int >= 0, got {value!r}")
        _check_nonneg("ClipSpec.sway_px", self.sway_px)
        for name in ("ripples", "overlay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
                raise ValueError(f"ClipSpec.{name}: expected a number in [0, 1], got {value!r}")

    def replace(self, **changes: object) -> ClipSpec:
        """Return a copy with some fields changed (unknown names raise ``ValueError``)."""
        return _replace_fields(self, changes)


CLIP_PRESETS: dict[str, ClipSpec] = {
    "static": ClipSpec(),
    "passing": ClipSpec(passing=3),
    "handheld": ClipSpec(shake_px=2.5, shake_deg=0.3),
    "pan": ClipSpec(pan_px=(30.0, 0.0)),
    "parked-leaves": ClipSpec(parked=0.6),
    "parked-arrives": ClipSpec(parked=0.4, parked_arrives=True),
    "flicker": ClipSpec(flicker_gain=0.04),
    "light-switch": ClipSpec(light=0.5, light_gain=0.6, light_area=0.5, transition_frames=0),
    "cloud": ClipSpec(light=0.5, light_gain=0.75, light_area=1.0, transition_frames=4),
    "sparse": ClipSpec(density="sparse"),
    "dense": ClipSpec(density="dense"),
    "very-dense": ClipSpec(density=DENSITY_PRESETS["dense"].replace(density=0.012,
                                                                     brightness=0.35)),
    "haze": ClipSpec(density="dense", haze=0.25),
    "few-frames": ClipSpec(n_frames=8),
    "junction": ClipSpec(n_frames=10, passing=4),
    # Issue 21: local dynamic texture in a static scene (never a scene change), long clips.
    "foliage": ClipSpec(n_frames=60, foliage=3),
    "ripples": ClipSpec(n_frames=60, ripples=0.35),
    "wind-and-puddles": ClipSpec(n_frames=60, foliage=2, ripples=0.3, sway_px=4.0),
    "handheld-long": ClipSpec(n_frames=300, shake_px=2.5, shake_deg=0.3, shake_frames=6.0),
    # Issue 22: graphics fixed to the frame while the camera moves; bright content that moves.
    "handheld-overlay": ClipSpec(n_frames=60, shake_px=2.5, shake_deg=0.3, overlay=1.0),
    "bright-foliage": ClipSpec(n_frames=60, foliage=3, foliage_bright=True, lights=2),
}
"""Named clip variants; ``CLIP_PRESETS[name].replace(size=..., n_frames=...)`` rescales one."""


@dataclass(frozen=True)
class _Scene:
    """What :func:`make_rain_clip` draws from (kept so any state can be re-rendered)."""

    world: np.ndarray  # B-spline coefficients of the supersampled scene canvas (photo)
    supersample: int
    margin: int  # scene pixels around the nominal frame
    size: tuple[int, int]
    parked_box: tuple[float, float, float, float]  # centre x, y and half-sizes, scene px
    parked_colour: np.ndarray
    parked_in_state: tuple[bool, ...]  # per state: is the parked object there
    light_in_state: tuple[float, ...]  # per state: illumination factor of the region
    light_edge: float  # scene x where the lit region ends (soft edge)
    patches: tuple[_Patch, ...] = ()  # swaying foliage, rippling water
    lights: tuple[tuple[float, float, float, float, float], ...] = ()  # x, y, vx, vy, radius


@dataclass(frozen=True)
class _Patch:
    """A region of local dynamic texture, in scene coordinates (see :func:`_patch_render`).

    ``kind`` "foliage": leaves (a coverage canvas ``leaves`` whose pixel (0, 0) sits at
    ``origin``) sway over the photo, or over a bright sky with ``bright``; "water": the photo
    seen through travelling waves, with glints. ``box`` is (centre x, centre y, radius x,
    radius y) of the ellipse (water: its top edge ``box[1]``, the rest of the frame below).
    ``waves``: K x 3 (kx, ky in radians per scene px, phase); ``omega`` radians per frame;
    ``gust``: N slow wind strength per frame (smoothed noise, unit spread): foliage leans with
    it by ``amp`` along ``lean`` (radians), water's waves grow and calm with it.
    """

    kind: str
    box: tuple[float, float, float, float]
    amp: float
    omega: float
    waves: np.ndarray
    leaves: np.ndarray | None = None
    origin: tuple[float, float] = (0.0, 0.0)
    colour: np.ndarray | None = None
    bright: bool = False
    gust: np.ndarray | None = None
    lean: float = 0.0


class _TruthMethods:
    """What a clip's truth answers from its cameras, exposure and scene (no frames needed)."""

    camera: np.ndarray
    gains: np.ndarray
    offsets: np.ndarray
    _scene: _Scene

    @property
    def n_states(self) -> int:
        """Number of scene states (events + 1)."""
        return len(self._scene.parked_in_state)

    def true_motion(self, reference: int) -> np.ndarray:
        """N x 3 x 3 transforms mapping frame ``reference``'s pixel coordinates to each frame's.

        This is the convention of :mod:`spanetlib.pipeline.alignment`: frame ``i`` sampled at
        ``motion[i] @ (x, y, 1)`` shows what frame ``reference`` shows at ``(x, y)``.
        """
        reference = _check_frame_index(reference, len(self.camera))
        return np.linalg.inv(self.camera) @ self.camera[reference]

    def state_truth(self, state: int, reference: int) -> np.ndarray:
        """Scene state ``state`` as frame ``reference`` would show it without rain or movers.

        Rendered with frame ``reference``'s camera, exposure and time (swaying foliage and
        ripples as they are in that frame), without passing objects or moving lights, and with
        the frame's fixed overlay: the image a background estimate of that state, registered
        to that frame, should equal.

        Returns:
            H x W x 3 uint8.
        """
        reference = _check_frame_index(reference, len(self.camera))
        if isinstance(state, bool) or not isinstance(state, (int, np.integer)) \
                or not 0 <= state < self.n_states:
            raise ValueError(f"state: expected an int in [0, {self.n_states}), got {state!r}")
        image = _render_frame(self._scene, self.camera[reference],
                              _state_look(self._scene, int(state)), [], float(reference),
                              lights=False)
        image = _expose(image[0], float(self.gains[reference]), float(self.offsets[reference]))
        overlay = getattr(self, "_overlay", None)
        if overlay is not None:
            image = _lay_overlay(image, overlay)
        return _quantize(image)


@dataclass
class RainClip(_TruthMethods):
    """A synthetic phone-like rain clip with the truth of every frame.

    Coordinates: pixel centres are integers (OpenCV's convention); ``camera[i]`` maps frame
    ``i``'s pixel coordinates ``(x, y, 1)`` to scene coordinates (pixels of the same size, the
    nominal frame sitting at ``(margin, margin)``).

    Attributes:
        spec: the :class:`ClipSpec`.
        frames: N x H x W x 3 uint8 RGB rain frames.
        truth: N x H x W x 3 uint8, the rain-free rendering of every frame (camera motion,
            exposure, objects and scene state included; no rain, veil or noise).
        rain_mask: N x H x W bool, where rain (streaks or veil) changed the frame by more than
            1/255 in some channel, before noise.
        object_mask: N x H x W bool, where a moving object (passing, or the parked one while
            it drives off or in) covers at least 2 % of the pixel.
        camera: N x 3 x 3 float64 frame-to-scene transforms.
        state: N int64 scene-state index of every frame (-1 inside a transition).
        gains: N float32 exposure gain per frame; the truth is ``clip(gain x + offset, 0, 1)``.
        offsets: N float32 exposure offset per frame ([0, 1] units).
        params: the ``RainParams`` of the streaks.
        texture_mask: N x H x W bool, where local dynamic texture (swaying foliage, rippling
            water) covers at least 2 % of the pixel: part of the scene, never a change.
        bright_mask: N x H x W bool, where bright content that moves (sky seen through
            swaying foliage, a moving light and its glow) covers at least half of the pixel.
        overlay_alpha: H x W float32 opacity of the graphics fixed to the frame (``overlay``;
            all 0 without), the same in every frame; ``overlay_alpha > 0`` is their mask.
    """

    spec: ClipSpec
    frames: np.ndarray
    truth: np.ndarray
    rain_mask: np.ndarray
    object_mask: np.ndarray
    camera: np.ndarray
    state: np.ndarray
    gains: np.ndarray
    offsets: np.ndarray
    params: RainParams
    _scene: _Scene = dataclasses.field(repr=False)
    texture_mask: np.ndarray | None = None
    bright_mask: np.ndarray | None = None
    overlay_alpha: np.ndarray | None = None
    _overlay: tuple[np.ndarray, np.ndarray] | None = dataclasses.field(default=None, repr=False)


def _check_frame_index(index: int, n: int) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise ValueError(f"frame index: expected an int in [0, {n}), got {index!r}")
    return int(index)


def _quantize(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _expose(image: np.ndarray, gain: float, offset: float) -> np.ndarray:
    if gain == 1.0 and offset == 0.0:
        return image
    return np.clip(image * np.float32(gain) + np.float32(offset), 0.0, 1.0)


@dataclass(frozen=True)
class _Look:
    """How the scene looks in one frame: parked object (box or None), light factor, movers."""

    parked: tuple[float, float, float, float] | None
    light: float


def _state_look(scene: _Scene, state: int) -> _Look:
    return _Look(scene.parked_box if scene.parked_in_state[state] else None,
                 scene.light_in_state[state])


def _box_alpha(qx: np.ndarray, qy: np.ndarray, box: tuple[float, float, float, float],
               scale: float) -> np.ndarray:
    """Anti-aliased coverage of a rounded rectangle (centre x, y, half-sizes) in scene px."""
    cx, cy, hx, hy = box
    radius = 0.35 * min(hx, hy)
    dx = np.abs(qx - cx) - (hx - radius)
    dy = np.abs(qy - cy) - (hy - radius)
    outside = np.hypot(np.maximum(dx, 0.0), np.maximum(dy, 0.0))
    sdf = outside + np.minimum(np.maximum(dx, dy), 0.0) - radius
    return np.clip(0.5 - sdf * scale, 0.0, 1.0)


def _paint(base: np.ndarray, qx: np.ndarray, qy: np.ndarray,
           box: tuple[float, float, float, float], colour: np.ndarray, scale: float) -> np.ndarray:
    """Paint an object over ``base`` and return its coverage.

    Like a vehicle: a body shaded from top to bottom, a darker band of windows across its
    upper part, and a highlight along one side; the texture moves with the object.
    """
    alpha = _box_alpha(qx, qy, box, scale)
    if not alpha.any():
        return alpha
    cx, cy, hx, hy = box
    u, v = (qx - cx) / hx, (qy - cy) / hy  # -1..1 across the object
    shade = 1.0 - 0.15 * v - 0.35 * ((v > -0.7) & (v < -0.15) & (np.abs(u) < 0.8))
    shade += 0.2 * np.exp(-((u - 0.6) / 0.15) ** 2)
    paint = np.clip(colour[None, None, :] * shade[..., None], 0.0, 1.0)
    base += alpha[..., None] * (paint - base)
    return alpha


def _render_frame(scene: _Scene, camera: np.ndarray, look: _Look,
                  movers: list[tuple[tuple[float, float, float, float], np.ndarray]],
                  t: float = 0.0, lights: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Rain-free frame (H x W x 3 float32, before exposure) and its coverages (H x W).

    Returns the frame, the movers' coverage (moving lights included), and, where the scene
    has dynamic texture or lights (else None), the texture's coverage and the moving bright
    content's (sky through foliage gaps, lights). ``t`` is the frame's time (frames).
    """
    h, w = scene.size
    s = scene.supersample
    # Sub-pixel centres of the supersampled grid, in frame coordinates, then in the scene.
    u = (np.arange(s * w, dtype=np.float64) + 0.5) / s - 0.5
    v = (np.arange(s * h, dtype=np.float64) + 0.5) / s - 0.5
    px, py = np.meshgrid(u, v)
    qx = camera[0, 0] * px + camera[0, 1] * py + camera[0, 2]
    qy = camera[1, 0] * px + camera[1, 1] * py + camera[1, 2]
    # The canvas is the scene supersampled s times: scene coordinate q sits at s q + (s-1)/2.
    off = (s - 1) / 2.0
    base = bspline_sample(scene.world, s * qx + off, s * qy + off)
    if look.light != 1.0:
        # Region left of ``light_edge`` (soft over ~4 scene px) gets the factor.
        region = np.clip((scene.light_edge - qx) / 4.0 + 0.5, 0.0, 1.0).astype(np.float32)
        base *= (1.0 + (look.light - 1.0) * region)[..., None]
    texture = bright = None
    if scene.patches or scene.lights:
        texture = np.zeros(base.shape[:2], np.float32)
        bright = np.zeros(base.shape[:2], np.float32)
        for patch in scene.patches:
            _patch_render(patch, scene, base, qx, qy, t, texture, bright)
    if look.parked is not None:
        _paint(base, qx, qy, look.parked, scene.parked_colour, s)
    cover = np.zeros(base.shape[:2], np.float32)
    for box, colour in movers:
        cover = np.maximum(cover, _paint(base, qx, qy, box, colour, s))
    if lights and scene.lights:
        for x0, y0, vx, vy, radius in scene.lights:
            glow = _light_render(base, qx, qy, x0 + vx * t, y0 + vy * t, radius)
            cover = np.maximum(cover, glow)
            bright = np.maximum(bright, glow)
    np.clip(base, 0.0, 1.0, out=base)
    small = cv2.resize(base, (w, h), interpolation=cv2.INTER_AREA)
    cover = cv2.resize(cover, (w, h), interpolation=cv2.INTER_AREA)
    if texture is None:
        return small, cover, None, None
    return (small, cover, cv2.resize(texture, (w, h), interpolation=cv2.INTER_AREA),
            cv2.resize(bright, (w, h), interpolation=cv2.INTER_AREA))


_SKY = np.array([0.93, 0.96, 1.0], np.float32)  # the bright sky behind bright foliage
_WATER_TINT = np.array([0.72, 0.8, 0.88], np.float32)  # what water does to the reflected photo
_LIGHT_COLOUR = np.array([1.0, 0.96, 0.85], np.float32)


_REMAP_CHUNK = 32_000  # OpenCV's remap maps must be under SHRT_MAX pixels per side


def _patch_render(patch: _Patch, scene: _Scene, base: np.ndarray, qx: np.ndarray,
                  qy: np.ndarray, t: float, texture: np.ndarray, bright: np.ndarray) -> None:
    """Draw one dynamic-texture patch at time ``t`` into ``base`` (supersampled, in place).

    The displacement at scene point q is ``amp * mean_k sin(omega t + k . q + phase_k)``
    (across x, and 0.4 of it with cosines along y for foliage; both equal for water): nearby
    points move together, distant ones out of step, so the patch is no rigid motion.
    """
    cx, cy, rx, ry = patch.box
    if patch.kind == "water":
        alpha = np.clip((qy - cy) / 3.0, 0.0, 1.0)
    else:
        r = np.sqrt(((qx - cx) / rx) ** 2 + ((qy - cy) / ry) ** 2)
        alpha = np.clip((1.0 - r) * min(rx, ry) / 3.0, 0.0, 1.0)
    sel = alpha > 0
    if not sel.any():
        return
    x, y, a = qx[sel], qy[sel], alpha[sel].astype(np.float32)
    phase = (patch.omega * t + patch.waves[:, 2][:, None] + patch.waves[:, 0][:, None] * x
             + patch.waves[:, 1][:, None] * y)
    gust = float(patch.gust[min(int(round(t)), len(patch.gust) - 1)]) \
        if patch.gust is not None else 0.0
    amp = patch.amp * (1.0 + 0.4 * gust) if patch.kind == "water" else patch.amp
    dx = amp * np.sin(phase).mean(axis=0)
    s = scene.supersample
    off = (s - 1) / 2.0
    if patch.kind == "water":
        dy = amp * np.cos(phase).mean(axis=0)
        seen = bspline_sample(scene.world, s * (x + dx) + off, s * (y + dy) + off)
        glint = (0.35 * np.maximum(np.sin(phase).mean(axis=0), 0.0) ** 3).astype(np.float32)
        look = np.clip(seen * _WATER_TINT + glint[:, None], 0.0, 1.0)
        sky = None
    else:
        dy = 0.4 * patch.amp * np.cos(phase).mean(axis=0)
        dx = dx + 1.5 * patch.amp * gust * math.cos(patch.lean)  # leaning with the gusts
        dy = dy + 1.5 * patch.amp * gust * math.sin(patch.lean)
        mx = (x - dx - patch.origin[0]).astype(np.float32).reshape(1, -1)
        my = (y - dy - patch.origin[1]).astype(np.float32).reshape(1, -1)
        # OpenCV's maps must be under 32767 pixels per side: sample a long row in pieces.
        leaf = np.concatenate([
            cv2.remap(patch.leaves, mx[:, i:i + _REMAP_CHUNK], my[:, i:i + _REMAP_CHUNK],
                      cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0).ravel()
            for i in range(0, mx.shape[1], _REMAP_CHUNK)])
        paint = patch.colour[None, :] * (0.55 + 0.45 * leaf)[:, None]
        behind = np.broadcast_to(_SKY, paint.shape) if patch.bright else base[sel]
        look = behind + leaf[:, None] * (paint - behind)
        sky = a * (1.0 - leaf) if patch.bright else None
    base[sel] += a[:, None] * (look - base[sel])
    texture[sel] = np.maximum(texture[sel], a)
    if sky is not None:
        bright[sel] = np.maximum(bright[sel], sky)


def _light_render(base: np.ndarray, qx: np.ndarray, qy: np.ndarray, x: float, y: float,
                  radius: float) -> np.ndarray:
    """Draw a small bright light (a disc with a glow) at scene (x, y); returns its coverage."""
    d = np.hypot(qx - x, qy - y) / radius
    glow = np.clip(1.5 - d, 0.0, 1.0) + 0.5 * np.exp(-d * d / 4.0) * (d >= 1.5)
    glow = np.clip(glow, 0.0, 1.0).astype(np.float32)
    base += glow[..., None] * (_LIGHT_COLOUR - base)
    return glow


def _overlay_layer(size: tuple[int, int], opacity: float) -> tuple[np.ndarray, np.ndarray]:
    """Graphics fixed to the frame: H x W x 3 float32 colour and H x W float32 opacity.

    A red logo box with white text at the top right (``opacity``) and a dark subtitle strip
    (half of it) with white text (``opacity``) at the bottom, like burned-in broadcast
    graphics; text is anti-aliased.
    """
    h, w = size
    colour = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    ink = np.zeros((h, w), np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.25, h / 240.0)
    thick = max(1, round(h / 180.0))
    # Logo: box at the top right, text inside.
    x0, x1, y0, y1 = round(0.68 * w), round(0.95 * w), round(0.05 * h), round(0.17 * h)
    colour[y0:y1, x0:x1] = (0.85, 0.1, 0.12)
    alpha[y0:y1, x0:x1] = opacity
    def fit(text: str, width: float) -> float:  # a font scale that fits the text in width
        return min(scale, scale * width / max(1, cv2.getTextSize(text, font, scale, thick)[0][0]))

    cv2.putText(ink, "NEWS 24", (x0 + max(1, (x1 - x0) // 12), y1 - max(1, (y1 - y0) // 4)),
                font, fit("NEWS 24", 0.8 * (x1 - x0)), 255, thick, cv2.LINE_AA)
    # Subtitle strip at the bottom, text inside.
    s0, s1 = round(0.8 * h), round(0.93 * h)
    colour[s0:s1, round(0.05 * w):round(0.95 * w)] = 0.05
    alpha[s0:s1, round(0.05 * w):round(0.95 * w)] = 0.5 * opacity
    cv2.putText(ink, "HEAVY RAIN 07:42", (round(0.08 * w), s1 - max(1, (s1 - s0) // 4)), font,
                fit("HEAVY RAIN 07:42", 0.84 * w), 255, thick, cv2.LINE_AA)
    ink = ink.astype(np.float32) * np.float32(opacity / 255.0)
    colour += ink[..., None] * (1.0 - colour)  # white text
    alpha = np.maximum(alpha, ink)
    return colour, alpha


def _lay_overlay(image: np.ndarray, overlay: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``image (1 - alpha) + alpha colour`` (float32, H x W x 3; exactly the colour at 1)."""
    colour, alpha = overlay
    return image * (1.0 - alpha)[..., None] + alpha[..., None] * colour


def _smooth_noise(gen: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Draw n samples of Gaussian-smoothed white noise with unit standard deviation."""
    pad = int(math.ceil(4 * sigma))
    raw = gen.standard_normal(n + 2 * pad)
    taps = np.exp(-0.5 * (np.arange(-pad, pad + 1) / sigma) ** 2)
    out = np.convolve(raw, taps / np.sqrt((taps ** 2).sum()), mode="valid")
    return out[:n]


def _clip_cameras(spec: ClipSpec, gen: np.random.Generator) -> tuple[np.ndarray, int]:
    """N x 3 x 3 frame-to-scene transforms and the scene margin they need."""
    n = spec.n_frames
    h, w = spec.size
    t = np.zeros((n, 2))
    theta = np.zeros(n)
    if spec.shake_px > 0:
        t += spec.shake_px * np.stack([_smooth_noise(gen, n, spec.shake_frames)
                                       for _ in range(2)], axis=1)
    if spec.shake_deg > 0:
        theta += math.radians(spec.shake_deg) * _smooth_noise(gen, n, spec.shake_frames)
    ramp = np.linspace(-0.5, 0.5, n)[:, None]
    t += ramp * np.asarray(spec.pan_px, np.float64)[None, :]
    reach = np.abs(t).max() + np.abs(theta).max() * math.hypot(w, h) / 2.0
    margin = int(math.ceil(reach)) + 8
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    cams = np.zeros((n, 3, 3))
    for i in range(n):
        c, s = math.cos(theta[i]), math.sin(theta[i])
        rot = np.array([[c, -s], [s, c]])
        cams[i, :2, :2] = rot
        cams[i, :2, 2] = np.array([cx, cy]) - rot @ np.array([cx, cy]) + t[i] + margin
        cams[i, 2, 2] = 1.0
    return cams, margin


def _clip_events(spec: ClipSpec) -> list[tuple[int, str]]:
    """(first frame of the transition, kind) of each scene event, in time order."""
    n = spec.n_frames
    events = []
    if spec.parked is not None:
        events.append((int(round(spec.parked * n)), "parked"))
    if spec.light is not None:
        events.append((int(round(spec.light * n)), "light"))
    return sorted(events)


def _check_spec(spec: ClipSpec | str) -> ClipSpec:
    if isinstance(spec, str):
        if spec not in CLIP_PRESETS:
            raise ValueError(f"unknown clip preset {spec!r}; expected one of "
                             f"{list(CLIP_PRESETS)}")
        spec = CLIP_PRESETS[spec]
    if not isinstance(spec, ClipSpec):
        raise TypeError(f"spec: expected a ClipSpec or a preset name, got {type(spec).__name__}")
    return spec


@dataclass
class _Plan:
    """Everything a clip draws before its first frame (small: no frame is held)."""

    spec: ClipSpec
    params: RainParams
    scene: _Scene
    cams: np.ndarray
    state: np.ndarray
    events: list[tuple[int, str]]
    passers: list
    gains: np.ndarray
    offsets: np.ndarray
    veil: np.ndarray
    kernels: list[np.ndarray]
    rain_rng: np.random.Generator
    noise_rng: np.random.Generator
    overlay: tuple[np.ndarray, np.ndarray] | None


def _dynamic_texture(spec: ClipSpec, margin: int, gen: np.random.Generator
                     ) -> tuple[tuple[_Patch, ...], tuple]:
    """The foliage and water patches and the moving lights of a clip (scene coordinates)."""
    h, w = spec.size
    patches: list[_Patch] = []
    side = min(h, w)
    for _ in range(spec.foliage):
        rx, ry = gen.uniform(0.1, 0.17) * w, gen.uniform(0.14, 0.24) * h
        cx = margin + gen.uniform(0.15, 0.85) * w
        cy = margin + gen.uniform(0.12, 0.55) * h
        # Leaves: smoothed noise, thresholded softly (about half the patch covered).
        pad = int(math.ceil(spec.sway_px * 6 + 4))  # sway and gusts (3 spreads)
        lh, lw = int(2 * ry) + 2 * pad + 1, int(2 * rx) + 2 * pad + 1
        grain = max(1.2, side / 40.0)  # leaves and gaps of a few blocks of the signatures
        noise = cv2.GaussianBlur(gen.standard_normal((lh, lw)).astype(np.float32), (0, 0), grain)
        noise /= max(float(noise.std()), 1e-6)
        leaves = np.clip((noise + (0.0 if spec.foliage_bright else 0.3)) * 2.0 + 0.5, 0.0, 1.0)
        colour = np.array([gen.uniform(0.1, 0.25), gen.uniform(0.3, 0.5),
                           gen.uniform(0.08, 0.2)], np.float32)
        wavelength = gen.uniform(1.0, 2.0) * max(rx, ry)
        angles = gen.uniform(0, 2 * np.pi, 2)
        waves = np.stack([2 * np.pi / wavelength * np.cos(angles),
                          2 * np.pi / wavelength * np.sin(angles),
                          gen.uniform(0, 2 * np.pi, 2)], axis=1)
        gust = _smooth_noise(gen, spec.n_frames, gen.uniform(8.0, 20.0))
        patches.append(_Patch("foliage", (cx, cy, rx, ry), spec.sway_px,
                              gen.uniform(0.25, 0.6), waves, leaves.astype(np.float32),
                              (cx - rx - pad, cy - ry - pad), colour, spec.foliage_bright,
                              gust, gen.uniform(-0.6, 0.6)))
    if spec.ripples > 0:
        top = margin + (1.0 - spec.ripples) * h
        wavelength = gen.uniform(0.06, 0.1, 3) * side
        angles = gen.uniform(-0.5, 0.5, 3) + np.pi / 2
        waves = np.stack([2 * np.pi / wavelength * np.cos(angles),
                          2 * np.pi / wavelength * np.sin(angles),
                          gen.uniform(0, 2 * np.pi, 3)], axis=1)
        patches.append(_Patch("water", (0.0, top, 0.0, 0.0), 0.5 * spec.sway_px,
                              gen.uniform(0.5, 0.9), waves,
                              gust=_smooth_noise(gen, spec.n_frames, 15.0)))
    lights = []
    n = spec.n_frames
    for _ in range(spec.lights):
        y = margin + gen.uniform(0.2, 0.8) * h
        x = margin + gen.uniform(0.1, 0.9) * w
        travel = gen.uniform(0.3, 0.6) * w * gen.choice([-1.0, 1.0])
        lights.append((x - travel / 2, y, travel / n, gen.uniform(-0.05, 0.05) * h / n,
                       max(1.0, 0.025 * side)))
    return tuple(patches), tuple(lights)


def _plan_clip(spec: ClipSpec, seed: int | None) -> _Plan:
    """Draw a clip's cameras, events, objects, exposure and rain groups (no frame yet)."""
    params = _resolve(DENSITY_PRESETS, spec.density, "density")
    rain_rng, noise_rng, cam_rng, expo_rng, obj_rng, veil_rng, tex_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7))
    n = spec.n_frames
    h, w = spec.size
    cams, margin = _clip_cameras(spec, cam_rng)
    ss = spec.supersample
    world_hw = (ss * (h + 2 * margin), ss * (w + 2 * margin))
    world = bspline_coefficients(load_background(spec.background, world_hw) / np.float32(255.0))

    # Scene events: state index per frame, -1 inside a transition.
    events = _clip_events(spec)
    tf = spec.transition_frames
    state = np.zeros(n, np.int64)
    for start, _ in events:
        state[start:] += 1
    for start, _ in events:
        state[start:start + tf] = -1
    parked_in = [spec.parked is not None and spec.parked_arrives is False]
    light_in = [1.0]
    for _, kind in events:
        parked_in.append(not parked_in[-1] if kind == "parked" else parked_in[-1])
        light_in.append(spec.light_gain if kind == "light" else light_in[-1])
    parked_box = (margin + 0.5 * w, margin + 0.68 * h, 0.2 * w, 0.14 * h)
    patches, lights = _dynamic_texture(spec, margin, tex_rng)
    scene = _Scene(world=world, supersample=ss, margin=margin, size=(h, w), parked_box=parked_box,
                   parked_colour=obj_rng.uniform(0.1, 0.9, 3).astype(np.float32),
                   parked_in_state=tuple(parked_in), light_in_state=tuple(light_in),
                   light_edge=margin + spec.light_area * w if spec.light_area < 1 else 1e9,
                   patches=patches, lights=lights)

    # Passing objects: straight crossings in scene coordinates, each over part of the clip.
    passers = []
    for _ in range(spec.passing):
        hy = obj_rng.uniform(0.07, 0.14) * h
        hx = obj_rng.uniform(1.2, 2.0) * hy
        cy = margin + obj_rng.uniform(0.25, 0.8) * h
        frames_across = max(3.0, obj_rng.uniform(0.25, 0.45) * n)
        first = obj_rng.uniform(-0.2 * frames_across, n - 0.8 * frames_across)
        direction = obj_rng.choice([-1.0, 1.0])
        speed = (w + 2 * hx) / frames_across
        x0 = margin - hx if direction > 0 else margin + w + hx
        colour = obj_rng.uniform(0.05, 0.95, 3).astype(np.float32)
        passers.append((first, direction * speed, x0, cy, hx, hy, colour))

    gains = np.ones(n, np.float32)
    offsets = np.zeros(n, np.float32)
    if spec.flicker_gain > 0:
        gains = (1.0 + spec.flicker_gain * expo_rng.standard_normal(n)).astype(np.float32)
    if spec.flicker_offset > 0:
        offsets = (spec.flicker_offset * expo_rng.standard_normal(n)).astype(np.float32)
    veil = np.zeros(n, np.float32)
    if spec.haze > 0:
        veil = np.clip(spec.haze * (1.0 + 0.3 * veil_rng.standard_normal(n)), 0.0, 0.95)
    overlay = _overlay_layer((h, w), float(spec.overlay)) if spec.overlay > 0 else None
    return _Plan(spec=spec, params=params, scene=scene, cams=cams, state=state, events=events,
                 passers=passers, gains=gains, offsets=offsets, veil=veil,
                 kernels=_group_kernels(params, rain_rng), rain_rng=rain_rng,
                 noise_rng=noise_rng, overlay=overlay)


@dataclass
class _Chunk:
    """Frames ``start`` to ``start + len(frames)`` of a clip with their truth and masks."""

    start: int
    frames: np.ndarray
    truth: np.ndarray
    rain_mask: np.ndarray
    object_mask: np.ndarray
    texture_mask: np.ndarray
    bright_mask: np.ndarray


def _clip_chunks(plan: _Plan, workers: int | None = None):
    """Render a planned clip a chunk at a time (at most 16 frames or 4 M pixels): a generator.

    Rendering the rain-free frames draws nothing at random, so threads keep the result
    deterministic; the rain layers and the noise are drawn in frame order.
    """
    spec, scene = plan.spec, plan.scene
    n = spec.n_frames
    h, w = spec.size
    tf = spec.transition_frames
    chunk = max(1, min(_CHUNK, _CHUNK_PIXELS // (h * w)))
    overlay = plan.overlay
    keep = None if overlay is None else (1.0 - overlay[1])

    def render(i: int) -> tuple[np.ndarray, ...]:
        look, movers = _frame_look(scene, plan.state, plan.events, i, tf, spec)
        for first, velocity, x0, cy, hx, hy, colour in plan.passers:
            movers.append(((x0 + velocity * (i - first), cy, hx, hy), colour))
        clean, cover, texture, bright = _render_frame(scene, plan.cams[i], look, movers,
                                                      float(i))
        return _expose(clean, float(plan.gains[i]), float(plan.offsets[i])), cover, texture, \
            bright

    pool = ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1))
    try:
        for c0 in range(0, n, chunk):
            c1 = min(n, c0 + chunk)
            out_chunk = _Chunk(c0, np.empty((c1 - c0, h, w, 3), np.uint8),
                               np.empty((c1 - c0, h, w, 3), np.uint8),
                               np.empty((c1 - c0, h, w), bool), np.empty((c1 - c0, h, w), bool),
                               np.zeros((c1 - c0, h, w), bool), np.zeros((c1 - c0, h, w), bool))
            rendered = pool.map(render, range(c0, c1))
            layers = _render_layers((h, w), plan.params, plan.kernels, plan.rain_rng, c1 - c0)
            for k, (clean, cover, texture, bright) in enumerate(rendered):
                i = c0 + k
                out_chunk.truth[k] = _quantize(clean if overlay is None
                                               else _lay_overlay(clean, overlay))
                out_chunk.object_mask[k] = cover > 0.02
                if texture is not None:
                    out_chunk.texture_mask[k] = texture > 0.02
                    out_chunk.bright_mask[k] = bright > 0.5
                out = compose_rain(clean, layers[k], spec.blend)
                if plan.veil[i] > 0:
                    out = out * (1.0 - plan.veil[i]) + plan.veil[i] * _VEIL_LEVEL
                change = np.abs(out - clean).max(axis=2) if keep is None else \
                    (np.abs(out - clean).max(axis=2) * keep)
                out_chunk.rain_mask[k] = change > _MASK_THRESHOLD
                if spec.noise_sigma > 0:
                    out = out + spec.noise_sigma * plan.noise_rng.standard_normal(
                        out.shape, dtype=np.float32)
                if overlay is not None:  # broadcast graphics sit over rain and noise
                    out = _lay_overlay(out, overlay)
                out_chunk.frames[k] = _quantize(out)
            yield out_chunk
    finally:
        pool.shutdown()


def make_rain_clip(spec: ClipSpec | str, seed: int | None = 0) -> RainClip:
    """Make a phone-like rain clip with the rain-free truth of every frame.

    Every frame is rendered from a larger scene canvas (the photo, supersampled
    ``spec.supersample`` times) through its own camera (shake, pan, rotation; cubic B-spline
    interpolation of the canvas, which has no position bias, then area averaging), so a
    moved frame shows real scene content, never padding. Objects, the light step, swaying
    foliage, rippling water and moving lights are drawn analytically in scene coordinates at
    the supersampled resolution.
    The exposure (gain, offset) applies to the whole rain-free frame, which is the truth; the
    rain streaks (one wind direction per clip, independent per frame), the optional veil and
    the sensor noise then make the rain frame; graphics fixed to the frame (``overlay``) go
    over both. Memory: the clip and its truth (2 N H W 3 bytes) and its masks; for clips
    larger than memory use :func:`write_rain_clip`.

    Args:
        spec: a :class:`ClipSpec` or a ``CLIP_PRESETS`` name.
        seed: seed of every random draw (camera, exposure, objects, rain, noise, dynamic
            texture use separate streams; None: fresh entropy).

    Returns:
        A :class:`RainClip`.

    Raises:
        ValueError: unknown preset name.
    """
    spec = _check_spec(spec)
    plan = _plan_clip(spec, seed)
    n = spec.n_frames
    h, w = spec.size
    frames = np.empty((n, h, w, 3), np.uint8)
    truth = np.empty((n, h, w, 3), np.uint8)
    rain_mask = np.empty((n, h, w), bool)
    object_mask = np.empty((n, h, w), bool)
    texture_mask = np.empty((n, h, w), bool)
    bright_mask = np.empty((n, h, w), bool)
    for part in _clip_chunks(plan):
        sl = slice(part.start, part.start + len(part.frames))
        frames[sl], truth[sl] = part.frames, part.truth
        rain_mask[sl], object_mask[sl] = part.rain_mask, part.object_mask
        texture_mask[sl], bright_mask[sl] = part.texture_mask, part.bright_mask
    overlay_alpha = plan.overlay[1].copy() if plan.overlay is not None \
        else np.zeros((h, w), np.float32)
    return RainClip(spec=spec, frames=frames, truth=truth, rain_mask=rain_mask,
                    object_mask=object_mask, camera=plan.cams, state=plan.state,
                    gains=plan.gains, offsets=plan.offsets, params=plan.params,
                    _scene=plan.scene, texture_mask=texture_mask, bright_mask=bright_mask,
                    overlay_alpha=overlay_alpha, _overlay=plan.overlay)


@dataclass
class ClipTruth(_TruthMethods):
    """The small truth of a clip written by :func:`write_rain_clip` (no frames, no masks).

    Its size does not grow with the frames' pixels times their number: per frame a camera,
    a state, an exposure and a few shares; plus the scene canvas (the photo at the clip's
    size, supersampled) that :meth:`state_truth` renders from.

    Attributes:
        spec: the :class:`ClipSpec`.
        path: the rain video written.
        truth_path: the rain-free video written beside it (None when not asked for).
        camera: N x 3 x 3 float64 frame-to-scene transforms (see :class:`RainClip`).
        state: N int64 scene state per frame (-1 inside a transition).
        gains: N float32 exposure gain per frame.
        offsets: N float32 exposure offset per frame.
        params: the ``RainParams`` of the streaks.
        rain_share: N float32, share of each frame's pixels under rain (``rain_mask``).
        object_share: N float32, share under moving objects (``object_mask``).
        texture_share: N float32, share under dynamic texture (``texture_mask``).
        bright_share: N float32, share under moving bright content (``bright_mask``).
        overlay_alpha: H x W float32 opacity of the fixed graphics (all 0 without).
    """

    spec: ClipSpec
    path: Path
    truth_path: Path | None
    camera: np.ndarray
    state: np.ndarray
    gains: np.ndarray
    offsets: np.ndarray
    params: RainParams
    rain_share: np.ndarray
    object_share: np.ndarray
    texture_share: np.ndarray
    bright_share: np.ndarray
    overlay_alpha: np.ndarray
    _scene: _Scene = dataclasses.field(repr=False)
    _overlay: tuple[np.ndarray, np.ndarray] | None = dataclasses.field(default=None, repr=False)

    def __repr__(self) -> str:
        h, w = self.spec.size
        return (f"ClipTruth({self.path}, {len(self.camera)} frames of {w} x {h}, "
                f"{self.n_states} state(s))")


def write_rain_clip(spec: ClipSpec | str, path: str | os.PathLike, seed: int | None = 0, *,
                    fps: float = 25.0, codec: str | None = None,
                    truth_path: str | os.PathLike | None = None, overwrite: bool = False,
                    progress: bool = False) -> ClipTruth:
    """Render a clip frame by frame into a video file, without holding it in memory.

    The same frames as :func:`make_rain_clip` (same spec, same seed) up to the codec's loss,
    rendered a chunk at a time (at most 16 frames or 4 M pixels) and written as they come, so
    a 1080p or 4K clip of thousands of frames needs the memory of a chunk and the scene
    canvas only (use ``supersample=1`` for 4K). Written atomically (temporary file, then
    replaced).

    Args:
        spec: a :class:`ClipSpec` or a ``CLIP_PRESETS`` name (rescale one with
            ``CLIP_PRESETS[name].replace(size=(1080, 1920), n_frames=3000)``).
        path: the video; its suffix picks the codec as in
            :func:`spanetlib.io.video.write_video` (".mkv", ".avi": lossless FFV1).
        seed: as in :func:`make_rain_clip`.
        fps: frames per second of the file.
        codec: a four-character code instead of the suffix's (e.g. "MJPG" for a phone-like
            lossy ``.avi``).
        truth_path: also write the rain-free frames (the truth) to this video.
        overwrite: replace existing files.
        progress: show a progress bar (tqdm).

    Returns:
        The clip's :class:`ClipTruth`.

    Raises:
        InputError: an existing file without ``overwrite``, an unknown suffix, a bad codec or
            one OpenCV cannot write.
    """
    from tqdm import tqdm

    from spanetlib.io.files import atomic_write, check_output_path
    from spanetlib.io.video import VIDEO_CODECS

    spec = _check_spec(spec)
    targets = [Path(path)] + ([Path(truth_path)] if truth_path is not None else [])
    codecs = []
    for target in targets:
        check_output_path(target, overwrite=overwrite)
        chosen = codec if codec is not None else VIDEO_CODECS.get(target.suffix.lower())
        if chosen is None:
            raise InputError(f"{target}: cannot pick a codec for {target.suffix!r}; use one of "
                             f"{list(VIDEO_CODECS)} or pass codec=")
        if not isinstance(chosen, str) or len(chosen) != 4:
            raise InputError(f"codec: expected a four-character code such as 'MJPG', got "
                             f"{chosen!r}")
        codecs.append(chosen)
    if not fps > 0:
        raise InputError(f"fps: expected > 0, got {fps!r}")
    plan = _plan_clip(spec, seed)
    n = spec.n_frames
    h, w = spec.size
    shares = np.zeros((4, n), np.float32)

    def write_all(tmps: list[str]) -> None:
        writers = []
        try:
            for tmp, target, fourcc in zip(tmps, targets, codecs, strict=True):
                writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*fourcc), float(fps),
                                         (w, h), True)
                writers.append(writer)
                if not writer.isOpened():
                    raise InputError(f"OpenCV cannot write codec {fourcc!r} to "
                                     f"{target.suffix!r}: {target}")
            with tqdm(total=n, desc=f"rendering {targets[0].name}", unit="frame",
                      disable=not progress) as bar:
                for part in _clip_chunks(plan):
                    sl = slice(part.start, part.start + len(part.frames))
                    for k, mask in enumerate((part.rain_mask, part.object_mask,
                                              part.texture_mask, part.bright_mask)):
                        shares[k, sl] = mask.mean(axis=(1, 2))
                    for images, writer in zip((part.frames, part.truth), writers,
                                              strict=False):
                        for image in images:
                            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                    bar.update(len(part.frames))
        finally:
            for writer in writers:
                writer.release()

    def nest(k: int, tmps: list[str]):
        # One temporary file per target; all are moved into place once every frame is in.
        if k == len(targets):
            write_all(tmps)
            return
        atomic_write(targets[k], lambda tmp: nest(k + 1, [*tmps, tmp]))

    nest(0, [])
    overlay_alpha = plan.overlay[1].copy() if plan.overlay is not None \
        else np.zeros((h, w), np.float32)
    return ClipTruth(spec=spec, path=targets[0],
                     truth_path=targets[1] if len(targets) > 1 else None, camera=plan.cams,
                     state=plan.state, gains=plan.gains, offsets=plan.offsets,
                     params=plan.params, rain_share=shares[0], object_share=shares[1],
                     texture_share=shares[2], bright_share=shares[3],
                     overlay_alpha=overlay_alpha, _scene=plan.scene, _overlay=plan.overlay)


def _frame_look(scene: _Scene, state: np.ndarray, events: list[tuple[int, str]], i: int,
                tf: int, spec: ClipSpec) -> tuple[_Look, list]:
    """The look of frame ``i``: its state's, or the in-between look inside a transition."""
    if state[i] >= 0:
        return _state_look(scene, int(state[i])), []
    k = next(k for k, (start, _) in enumerate(events) if start <= i < start + tf)
    start, kind = events[k]
    before = _state_look(scene, k)
    after = _state_look(scene, k + 1)
    progress = (i - start + 1) / (tf + 1)  # strictly between the two states
    if kind == "light":
        return _Look(before.parked, before.light + progress * (after.light - before.light)), []
    # The parked object drives off to the right (or in from the right), a mover meanwhile.
    cx, cy, hx, hy = scene.parked_box
    travel = progress if before.parked is not None else 1.0 - progress
    box = (cx + travel * (spec.size[1] / 2.0 + hx), cy, hx, hy)
    return _Look(None, before.light), [(box, scene.parked_colour)]
