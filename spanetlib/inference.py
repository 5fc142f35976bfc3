"""Deraining images with a trained model: arrays, tiles, files (the ``spanet derain`` command).

:func:`derain_array` runs a derainer on one H x W x 3 RGB image, optionally in overlapping
tiles blended with a smooth window so that memory stays bounded; :func:`derain_files` reads
images from files and folders, writes the derained images (and attention heat maps) and
returns a :class:`DerainSummary`. Models need no preparation for speed: SPANet runs its
fast CPU path by itself (``spanetlib.models.spanet``). Both functions take a ``precision``
(``"fp32"``, ``"bf16"``, ``"auto"``; see ``spanetlib.device.resolve_precision``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from spanetlib.device import autocast, resolve_precision, resolve_torch_device, reuse_freed_memory
from spanetlib.fileio import IMAGE_SUFFIXES, InputError, read_image, write_image
from spanetlib.metrics import image_to_tensor
from spanetlib.models.pretrained import load_pretrained

__all__ = [
    "DerainSummary",
    "attention_heatmap",
    "blend_window",
    "derain_array",
    "derain_files",
    "tile_starts",
]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``range(size)``.

    Consecutive tiles overlap by at least ``overlap`` pixels; the last tile ends at ``size``.

    Args:
        size: the image extent (pixels).
        tile: the tile length (pixels, > overlap).
        overlap: the minimum overlap between neighbours (pixels, >= 0).

    Returns:
        Sorted start offsets; ``[0]`` when ``size <= tile``.
    """
    if size <= tile:
        return [0]
    stride = tile - overlap
    return [*range(0, size - tile, stride), size - tile]


def blend_window(length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """1D blending weights of one tile: a raised-cosine ramp over ``overlap`` pixels.

    The weights rise from near 0 to 1 over the first ``overlap`` pixels (if ``ramp_start``)
    and fall back over the last ``overlap`` (if ``ramp_end``); they are 1 elsewhere and
    strictly positive everywhere, so overlapping tiles can be normalised by their sum.

    Args:
        length: tile length (pixels).
        overlap: ramp length (pixels, >= 0).
        ramp_start: ramp at the start (a neighbouring tile precedes this one).
        ramp_end: ramp at the end (a neighbouring tile follows).

    Returns:
        ``length`` float32 weights in (0, 1].
    """
    window = np.ones(length, dtype=np.float32)
    n = min(overlap, length // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, n + 1) / (n + 1))
        if ramp_start:
            window[:n] = np.minimum(window[:n], ramp)
        if ramp_end:
            window[length - n:] = np.minimum(window[length - n:], ramp[::-1])
    return window


def _image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """One H x W x 3 RGB image (uint8 or float [0, 1]) -> 1 x 3 x H x W float32."""
    if isinstance(image, np.ndarray) and (image.ndim != 3 or image.shape[2] != 3):
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    return image_to_tensor(image, dtype=torch.float32)


def _run(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
    """One forward pass: 1 x 3 x h x w -> (3 x h x w, h x w or None) float32 arrays."""
    out = model(x)
    image, attention = (out, None) if isinstance(out, torch.Tensor) else out
    image = image[0].float().cpu().numpy()
    if attention is not None:
        attention = attention[0, 0].float().cpu().numpy()
    return image, attention


def derain_array(model: nn.Module, image: np.ndarray, tile: int | None = None,
                 overlap: int = 32, device: str | torch.device = "cpu", precision: str = "fp32"
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Derain one image, whole or in overlapping tiles.

    With ``tile``, the image is cut into ``tile x tile`` tiles overlapping by at least
    ``overlap`` pixels, each is derained on its own (memory stays bounded by the tile
    size), and the results are blended with a raised-cosine window (:func:`blend_window`)
    that gives a tile's border pixels almost no weight. Tiling cannot reproduce the untiled
    output exactly: the convolutions see zero padding at tile borders (SPANet's convolutional
    receptive field has a radius of about 50 pixels) and the IRNNs of the spatial attentive
    module carry information along whole rows and columns, so the context beyond a tile is
    lost. How much that matters depends on the weights. A random 8-channel SPANet (IRNN
    weights 0.9) on a 200 x 300 photo, ``tile=96, overlap=32``, changes by about 1e-5 on
    average (the test bounds it by 1e-3 and by 5% of the output's own variation), 60 times
    less than with hard, non-overlapping tiles. The authors' trained SPANet is more sensitive
    because its attention maps use long-range context: on the same photo its output moves by
    3e-3 on average (it changes the input by 1.7e-2), 1.6e-3 with ``tile=160, overlap=64``.
    So use tiles as large as memory allows (:func:`derain_files` uses 512 by default and
    processes smaller images whole).

    Args:
        model: a derainer whose ``forward`` takes 1 x 3 x h x w RGB in [0, 1] and returns
            ``(image, attention)`` (attention 1 x 1 x h x w or None).
        image: H x W x 3 RGB, uint8 or float in [0, 1].
        tile: tile size in pixels (> ``overlap``), or None to process the image whole.
        overlap: minimum overlap of neighbouring tiles in pixels (>= 0).
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or a ``torch.device``. The model is moved
            there and put in eval mode (in place).
        precision: ``"fp32"`` (default), ``"bf16"`` (bfloat16 autocast, refused where it is
            not faster) or ``"auto"`` (bf16 where it is fast); see
            ``spanetlib.device.resolve_precision``. bf16 moves the authors' SPANet's output
            on its reference case by at most 0.021, PSNR 53.6 dB to the float32 output.

    Returns:
        ``(derained, attention)``: H x W x 3 float32 RGB clipped to [0, 1], and H x W float32
        in [0, 1] (None for models without attention).

    Raises:
        ValueError: bad ``tile``/``overlap``/``precision`` or image shape, or bf16 where it is
            not faster. TypeError: bad image dtype. InputError: the device is not available.
    """
    x = _image_to_tensor(image)
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if tile is not None and tile <= overlap:
        raise ValueError(f"tile must be > overlap ({overlap}), got {tile}")
    dev = resolve_torch_device(device)
    dtype = resolve_precision(precision, dev)
    model.eval().to(dev)
    height, width = x.shape[-2:]
    with torch.inference_mode(), reuse_freed_memory(), autocast(dtype, dev):
        if tile is None or (height <= tile and width <= tile):
            out, attention = _run(model, x.to(dev))
        else:
            out, attention = _run_tiled(model, x, dev, tile, overlap)
    derained = np.ascontiguousarray(np.clip(out.transpose(1, 2, 0), 0.0, 1.0), np.float32)
    if attention is not None:
        attention = np.ascontiguousarray(attention, dtype=np.float32)
    return derained, attention


def _run_tiled(model: nn.Module, x: torch.Tensor, dev: torch.device, tile: int, overlap: int
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """Blend tile outputs: sum(w * tile_out) / sum(w), per pixel."""
    height, width = x.shape[-2:]
    out_sum = np.zeros((3, height, width), np.float32)
    att_sum: np.ndarray | None = np.zeros((height, width), np.float32)
    weight_sum = np.zeros((height, width), np.float32)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    for y in ys:
        th = min(tile, height)
        wy = blend_window(th, overlap, y > 0, y + th < height)
        for x0 in xs:
            tw = min(tile, width)
            wx = blend_window(tw, overlap, x0 > 0, x0 + tw < width)
            weight = wy[:, None] * wx[None, :]
            crop = x[..., y:y + th, x0:x0 + tw].to(dev)
            out, attention = _run(model, crop)
            out_sum[:, y:y + th, x0:x0 + tw] += out * weight
            weight_sum[y:y + th, x0:x0 + tw] += weight
            if attention is None:
                att_sum = None
            elif att_sum is not None:
                att_sum[y:y + th, x0:x0 + tw] += attention * weight
    out = out_sum / weight_sum
    return out, (att_sum / weight_sum if att_sum is not None else None)


def attention_heatmap(attention: np.ndarray) -> np.ndarray:
    """Colour an attention map with the JET colour map (blue = 0, red = 1).

    Args:
        attention: H x W float in [0, 1] (values outside are clipped).

    Returns:
        H x W x 3 uint8 RGB.
    """
    if attention.ndim != 2:
        raise ValueError(f"expected an H x W attention map, got shape {attention.shape}")
    gray = (np.clip(attention, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


@dataclass
class DerainSummary:
    """What :func:`derain_files` did.

    Attributes:
        inputs: the input images, in processing order.
        outputs: the derained images written (``OUTDIR/<stem>.png``), same order.
        attention_outputs: the attention heat maps written (empty unless asked for).
        weights: the weights used (name, path or model class).
        device: the device the model ran on.
        precision: the precision it ran in, ``"fp32"`` or ``"bf16"``.
        seconds: wall time of the whole run.
    """

    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    attention_outputs: list[Path] = field(default_factory=list)
    weights: str = ""
    device: str = "cpu"
    precision: str = "fp32"
    seconds: float = 0.0

    def __str__(self) -> str:
        folder = self.outputs[0].parent if self.outputs else "-"
        extra = (f" (+{len(self.attention_outputs)} attention maps)"
                 if self.attention_outputs else "")
        return (f"derained {len(self.outputs)} image(s) into {folder}{extra} in "
                f"{self.seconds:.1f} s on {self.device} in {self.precision} "
                f"(weights: {self.weights})")


def _collect_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    images: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images.extend(sorted(p for p in path.iterdir()
                                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise InputError(f"not an image file: {path} (expected one of "
                                 f"{', '.join(IMAGE_SUFFIXES)})")
            images.append(path)
        else:
            raise InputError(f"input not found: {path}")
    if not images:
        raise InputError("no images found in the inputs (expected files ending in "
                         f"{', '.join(IMAGE_SUFFIXES)})")
    return images


def derain_files(inputs: Iterable[str | os.PathLike] | str | os.PathLike,
                 out_dir: str | os.PathLike,
                 weights: str | os.PathLike | nn.Module = "official",
                 device: str | torch.device = "auto", tile: int | None = 512,
                 overlap: int = 32, save_attention: bool = False, overwrite: bool = False,
                 progress: bool = True, precision: str = "fp32") -> DerainSummary:
    """Derain image files and folders into ``out_dir`` (the ``spanet derain`` command).

    Every check (inputs exist, no output would be overwritten, device available, precision
    supported, weights readable) happens before the first image is processed. Outputs are
    PNGs named after the inputs, ``OUTDIR/<stem>.png``, plus ``OUTDIR/<stem>_attention.png``
    (a JET heat map of the first attention map, :func:`attention_heatmap`) with
    ``save_attention``; each file is written atomically.

    Args:
        inputs: image files and/or folders (their images with a suffix in
            ``fileio.IMAGE_SUFFIXES``, not recursive).
        out_dir: output folder (created).
        weights: ``"official"``, ``"synthetic"``, a checkpoint path (see
            ``models.pretrained.load_pretrained``) or a model.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        tile: tile size for :func:`derain_array` (None: whole images); images no larger than
            the tile are processed whole.
        overlap: tile overlap in pixels.
        save_attention: also write the attention heat maps (none for models without an
            attention map).
        overwrite: replace existing outputs (otherwise they stop the run before any work).
        progress: show a tqdm progress bar.
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"``, as for :func:`derain_array`.

    Returns:
        A :class:`DerainSummary`.

    Raises:
        InputError: missing or non-image inputs, no images, an existing output without
            ``overwrite``, two inputs with the same output name, an unavailable device,
            unusable weights, or an unreadable image (named in the message).
        ValueError: an unknown precision, or bf16 where it is not faster.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    if tile is not None and (tile <= overlap or overlap < 0):
        raise InputError(f"tile must be > overlap >= 0, got tile={tile}, overlap={overlap}")
    images = _collect_images(inputs)
    out_dir = Path(out_dir)
    plan: list[tuple[Path, Path, Path | None]] = []
    seen: dict[Path, Path] = {}
    for image in images:
        target = out_dir / f"{image.stem}.png"
        if target in seen:
            raise InputError(f"{seen[target]} and {image} would both be written to {target}")
        seen[target] = image
        heat = out_dir / f"{image.stem}_attention.png" if save_attention else None
        plan.append((image, target, heat))
    if not overwrite:
        for _, target, heat in plan:
            for path in (target, heat):
                if path is not None and path.exists():
                    raise InputError(f"{path} already exists; pass --overwrite "
                                     "(overwrite=True) to replace it")
    dev = resolve_torch_device(device)
    dtype = resolve_precision(precision, dev)
    if isinstance(weights, nn.Module):
        model, weights_name = weights, type(weights).__name__
    else:
        model, weights_name = load_pretrained(weights, device=dev), str(weights)

    summary = DerainSummary(weights=weights_name, device=str(dev),
                            precision="bf16" if dtype == torch.bfloat16 else "fp32")
    with reuse_freed_memory():  # one memory pool for all images and tiles
        for image_path, target, heat in tqdm(plan, desc="derain", unit="image",
                                             disable=not progress):
            image = read_image(image_path)
            height, width = image.shape[:2]
            use_tile = tile if tile is not None and max(height, width) > tile else None
            derained, attention = derain_array(model, image, tile=use_tile, overlap=overlap,
                                               device=dev, precision=summary.precision)
            write_image(target, derained)
            summary.inputs.append(image_path)
            summary.outputs.append(target)
            if heat is not None and attention is not None:
                write_image(heat, attention_heatmap(attention))
                summary.attention_outputs.append(heat)
    summary.seconds = time.perf_counter() - start
    return summary
