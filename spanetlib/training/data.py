"""Training data: the rain mask M and `PairDataset` over a pair list (`spanetlib.io.pairs`).

Pair lists hold one ``rain_path clean_path`` pair per line, separated by whitespace, the
format of SPA-Data's ``training/real_world.txt`` and ``testing/real_test_1000.txt``. The lists
this package writes are relative to the list's folder with POSIX separators; reading also
accepts SPA-Data's own lists, whose paths (often with a leading ``/``) are relative to the data
root, the list folder's parent.

`spanetlib.pipeline.export` writes such lists from reviewed rain videos (``spanet build-dataset``);
`spanetlib.synthesis.testsets` writes the synthetic and held-out test sets.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from spanetlib.io.checks import check_positive
from spanetlib.io.errors import InputError
from spanetlib.io.files import check_image_size, check_image_values, read_image
from spanetlib.io.pairs import read_pair_list

__all__ = [
    "PairDataset",
    "rain_mask",
    "random_resized_crop_box",
]



# --------------------------------------------------------------------------------------------
# The rain mask M (Eq. 7's attention target)
# --------------------------------------------------------------------------------------------
def rain_mask(rain: torch.Tensor | np.ndarray, clean: torch.Tensor | np.ndarray,
              threshold: float = 0.0) -> torch.Tensor | np.ndarray:
    """The binary rain mask M that supervises the attention map (the target of Eq. 7).

    M is 1 where the rain image and the clean image differ by more than ``threshold`` in any
    colour channel. With ``threshold=0`` it marks every pixel that differs at all, as in the
    authors' training data.

    Args:
        rain: torch ``B x 3 x H x W`` float in [0, 1], or numpy ``H x W x 3`` (uint8, or float
            in [0, 1]).
        clean: the same type, shape and dtype as ``rain``.
        threshold: the largest absolute difference still counted as "no rain", in the inputs'
            value scale (0-255 for uint8 arrays, 0-1 for floats); >= 0.

    Returns:
        torch input: ``B x 1 x H x W`` float32 (0 or 1) on the input's device; numpy input:
        ``H x W`` bool.

    Raises:
        TypeError: the inputs are not both tensors or both arrays.
        ValueError: the shapes differ, have the wrong layout, or ``threshold`` < 0; numpy
            floats outside [0, 1] (`spanetlib.io.files.check_image_values`; tensors are not
            checked, to keep training steps free of a device sync).

    Example:
        >>> clean = np.zeros((2, 3, 3), np.uint8)
        >>> rain = clean.copy()
        >>> rain[0, 1, 2] = 40  # one streak pixel, in one channel
        >>> rain_mask(rain, clean).astype(int)
        array([[0, 1, 0],
               [0, 0, 0]])
        >>> rain_mask(torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)).shape
        torch.Size([1, 1, 2, 2])
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if isinstance(rain, torch.Tensor) and isinstance(clean, torch.Tensor):
        if rain.shape != clean.shape:
            raise ValueError(f"rain and clean shapes differ: {tuple(rain.shape)} vs "
                             f"{tuple(clean.shape)}")
        if rain.ndim != 4:
            raise ValueError(f"expected B x C x H x W tensors, got shape {tuple(rain.shape)}")
        diff = (rain.float() - clean.float()).abs().amax(dim=1, keepdim=True)
        return (diff > threshold).float()
    if isinstance(rain, np.ndarray) and isinstance(clean, np.ndarray):
        if rain.shape != clean.shape:
            raise ValueError(f"rain and clean shapes differ: {rain.shape} vs {clean.shape}")
        if rain.ndim != 3:
            raise ValueError(f"expected H x W x C arrays, got shape {rain.shape}")
        if rain.dtype != clean.dtype:
            raise TypeError(f"rain and clean dtypes differ: {rain.dtype} vs {clean.dtype}")
        check_image_values(rain, "rain")
        check_image_values(clean, "clean")
        diff = np.abs(rain.astype(np.float32) - clean.astype(np.float32)).max(axis=2)
        return diff > threshold
    raise TypeError("rain and clean must both be torch tensors or both numpy arrays, got "
                    f"{type(rain).__name__} and {type(clean).__name__}")












# --------------------------------------------------------------------------------------------
# PairDataset
# --------------------------------------------------------------------------------------------
def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            scale: tuple[float, float] = (0.8, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)
                            ) -> tuple[int, int, int, int]:
    """Draw a crop box the way torchvision's ``RandomResizedCrop`` does.

    Up to ten tries draw an area fraction uniformly from ``scale`` and an aspect ratio
    (width / height) log-uniformly from ``ratio``; the first box that fits is placed uniformly.
    If none fits, the largest centred box with a ratio inside ``ratio`` is used.

    Args:
        height: image height H.
        width: image width W.
        rng: the random generator.
        scale: range of the box area as a fraction of H * W.
        ratio: range of the box's width / height.

    Returns:
        ``(top, left, box_height, box_width)``.

    Example:
        >>> top, left, h, w = random_resized_crop_box(48, 64, np.random.default_rng(0))
        >>> 0 <= top <= 48 - h and 0 <= left <= 64 - w and 0.8 <= h * w / (48 * 64) <= 1.0
        True
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _check_range(name: str, value: Sequence[float], low_ok: float) -> tuple[float, float]:
    if len(value) != 2 or not (low_ok < value[0] <= value[1]):
        raise ValueError(f"{name} must be (low, high) with {low_ok} < low <= high, got {value!r}")
    return float(value[0]), float(value[1])


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


class PairDataset(Dataset):
    """Rain/clean training pairs from a pair list, with SPANet's paired augmentation.

    Each item is a dict:

    - ``"rain"``: ``3 x h x w`` float32 RGB in [0, 1];
    - ``"clean"``: ``3 x h x w`` float32 RGB in [0, 1];
    - ``"mask"``: ``1 x h x w`` float32 in {0, 1}, the rain mask M (`rain_mask`, Eq. 7);
    - ``"name"``: the rain image's path relative to the list's base folder, without suffix.

    With ``crop`` set (training), one box is drawn per item like torchvision's
    ``RandomResizedCrop`` (`random_resized_crop_box`), cut from both images and resized to
    ``crop x crop`` with OpenCV's bicubic filter; then both are flipped horizontally with
    probability 0.5 when ``flip`` is true. The mask is computed on the resized **uint8** pair,
    as the authors did: where rain and clean agree in a neighbourhood the bicubic filter gives
    identical values, so "any difference" (``mask_threshold=0``) stays meaningful, and the mask
    grows by at most the filter's 2-pixel reach around streaks. With ``crop=None`` (testing)
    the full images are returned with no random transform at all (``flip`` is ignored).

    Randomness: with ``seed`` given, item ``i`` in epoch ``e`` draws from a generator seeded
    with ``(seed, e, i)``, so results do not depend on the order or the worker that loads it;
    call `set_epoch` each epoch. Without a seed every call draws fresh entropy.

    Args:
        list_path: a pair list (see `read_pair_list`).
        crop: output size of the random crop, or None for full images.
        scale: range of the crop area as a fraction of the image.
        ratio: range of the crop's width / height.
        flip: random horizontal flips (only with ``crop``).
        mask_threshold: in [0, 1]; a pixel is rain where any channel differs by more than
            this (compared on the uint8 pair, as ``threshold * 255``).
        seed: makes the augmentation reproducible per (seed, epoch, index).

    Raises:
        InputError: the list is missing, malformed or empty; on access, a pair whose images
            differ in size or are smaller than `spanetlib.io.files.MIN_IMAGE_SIDE` (a random
            crop would otherwise blow a 1 x 1 image up to ``crop x crop``).
        ValueError: a bad ``crop``, ``scale``, ``ratio`` or ``mask_threshold``.

    Example:
        >>> import tempfile
        >>> from spanetlib.io.files import write_image
        >>> from spanetlib.io.pairs import write_pair_list
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     rain = write_image(Path(tmp, "r.png"), np.full((8, 8, 3), 200, np.uint8))
        ...     clean = write_image(Path(tmp, "c.png"), np.full((8, 8, 3), 100, np.uint8))
        ...     pairs = write_pair_list(Path(tmp, "list.txt"), [(rain, clean)])
        ...     item = PairDataset(pairs, crop=4, seed=0)[0]
        >>> item["rain"].shape, item["mask"].shape, item["name"], float(item["mask"].mean())
        (torch.Size([3, 4, 4]), torch.Size([1, 4, 4]), 'r', 1.0)
    """

    def __init__(self, list_path: str | os.PathLike, crop: int | None = 256,
                 scale: tuple[float, float] = (0.8, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                 mask_threshold: float = 0.0, seed: int | None = None) -> None:
        check_positive("crop", crop, allow_none=True)
        self.scale = _check_range("scale", scale, 0.0)
        if self.scale[1] > 1.0:
            raise ValueError(f"scale must lie in (0, 1], got {scale!r}")
        self.ratio = _check_range("ratio", ratio, 0.0)
        if not 0.0 <= mask_threshold <= 1.0:
            raise ValueError(f"mask_threshold must be in [0, 1], got {mask_threshold}")
        self.list_path = Path(list_path)
        self.pairs = read_pair_list(self.list_path)
        if not self.pairs:
            raise InputError(f"pair list is empty: {self.list_path}")
        self.crop = crop
        self.flip = bool(flip)
        self.mask_threshold = float(mask_threshold)
        self.seed = seed
        self.epoch = 0
        base = self.pairs[0][0]
        self._root = self.list_path.resolve().parent
        try:  # SPA-Data lists are relative to the list folder's parent
            base.relative_to(self._root)
        except ValueError:
            self._root = self._root.parent

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops and flips `__getitem__` draws (with a seed)."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([int(self.seed) & 0xFFFFFFFF, self.epoch, index])

    def _name(self, rain_path: Path) -> str:
        try:
            rel = rain_path.relative_to(self._root)
        except ValueError:
            rel = Path(rain_path.name)
        return rel.with_suffix("").as_posix()

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        index %= len(self)
        rain_path, clean_path = self.pairs[index]
        rain, clean = read_image(rain_path), read_image(clean_path)
        check_image_size(rain, str(rain_path))
        if rain.shape != clean.shape:
            raise InputError(f"rain and clean sizes differ: {rain_path} {rain.shape[:2]} vs "
                             f"{clean_path} {clean.shape[:2]}")
        if self.crop is not None:
            rng = self._rng(index)
            top, left, h, w = random_resized_crop_box(rain.shape[0], rain.shape[1], rng,
                                                      self.scale, self.ratio)
            size = (self.crop, self.crop)
            rain = cv2.resize(rain[top:top + h, left:left + w], size,
                              interpolation=cv2.INTER_CUBIC)
            clean = cv2.resize(clean[top:top + h, left:left + w], size,
                               interpolation=cv2.INTER_CUBIC)
            if self.flip and rng.random() < 0.5:
                rain, clean = rain[:, ::-1], clean[:, ::-1]
        mask = rain_mask(rain, clean, threshold=self.mask_threshold * 255.0)
        return {
            "rain": _to_tensor(rain),
            "clean": _to_tensor(clean),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)).float()[None],
            "name": self._name(rain_path),
        }
