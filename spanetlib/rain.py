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
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.special import erf, ndtri

__all__ = [
    "BACKGROUND_NAMES",
    "BLEND_MODES",
    "DENSITY_PRESETS",
    "HELDOUT_BACKGROUND_NAMES",
    "IMAGE_RAIN_LEVELS",
    "RainImage",
    "RainParams",
    "RainVideo",
    "TRAINING_BACKGROUND_NAMES",
    "compose_rain",
    "load_background",
    "make_rain_image",
    "make_rain_video",
    "rain_coverage",
    "rain_layer",
    "streak_kernel",
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
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown RainParams field(s) {unknown}; expected some of "
                             f"{sorted(names)}")
        return dataclasses.replace(self, **changes)


# Video rain, calibrated on 256 x 256 frames (see ``rain_coverage``): the share of pixels a
# frame's streak layer touches (> 1/255) is about 3 % (sparse), 20 % (normal), 56 % (dense).
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


def rain_coverage(params: RainParams | str, shape_hw: tuple[int, int] = (256, 256),
                  n: int = 8, seed: int = 0) -> float:
    """Mean share of pixels a layer with ``params`` touches (value > 1/255), over ``n`` layers.

    In a video with independent rain per frame this is also the expected share of frames in
    which a given pixel is under rain (before the background decides whether it shows).
    """
    params = _resolve(DENSITY_PRESETS, params, "params")
    gen = np.random.default_rng(seed)
    return float(np.mean([(rain_layer(shape_hw, params, gen) > _MASK_THRESHOLD).mean()
                          for _ in range(n)]))


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
