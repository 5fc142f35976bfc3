"""Deraining images with a trained model: arrays, tiles, files (the ``spanet derain`` command).

:func:`derain_array` runs a derainer on one H x W x 3 RGB image, optionally in overlapping
tiles blended with a smooth window so that memory stays bounded; :func:`derain_files` reads
images from files and folders, writes the derained images (and attention heat maps) and
returns a :class:`DerainSummary`. Models need no preparation for speed: SPANet runs its
fast CPU path by itself (``spanetlib.models.spanet``). Both functions take a ``precision``
(``"fp32"``, ``"bf16"``, ``"auto"``; see ``spanetlib.models.device.resolve_precision``).

Memory: by default :func:`derain_files` picks the tile from the memory available now
(:func:`available_memory`: the host's, or a container's cgroup limit when lower, or the GPU's)
and what a SPANet forward pass needs per pixel (:data:`FORWARD_BYTES_PER_PIXEL`), see
:func:`auto_tile`. Running out of memory anyway raises :class:`DerainMemoryError`, one line
that suggests a smaller tile. Files: a grayscale, 16-bit or RGBA input gives an output of the
same kind (``spanetlib.io.files.read_image_with_format``); an unreadable or too small image is
reported in :attr:`DerainSummary.failed` and skipped, the others are derained.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from spanetlib.io.errors import InputError
from spanetlib.io.files import (
    IMAGE_SUFFIXES,
    check_image_size,
    check_image_values,
    check_output_folder,
    check_output_path,
    read_image_with_format,
    restore_format,
    round_to_uint8,
    write_image,
)
from spanetlib.io.resources import host_memory_available
from spanetlib.models.convert import image_to_tensor
from spanetlib.models.device import autocast, resolve_precision, resolve_torch_device
from spanetlib.models.memory import reuse_freed_memory
from spanetlib.models.pretrained import load_pretrained

__all__ = [
    "DEFAULT_TILE",
    "FORWARD_BYTES_PER_PIXEL",
    "IMAGE_BYTES_PER_PIXEL",
    "DerainMemoryError",
    "DerainSummary",
    "attention_heatmap",
    "auto_tile",
    "available_memory",
    "blend_window",
    "derain_array",
    "derain_files",
    "is_out_of_memory",
    "tile_starts",
]

#: Extra memory of one forward pass of SPANet per input pixel, in bytes, by compute dtype:
#: the growth of the peak resident set during `derain_array` on whole random images of
#: 256 x 256 to 1024 x 1024 with the shipped weights, on the CPU, rounded up with a margin;
#: other models need less (no attention maps).
FORWARD_BYTES_PER_PIXEL: dict[torch.dtype, int] = {torch.float32: 2300, torch.bfloat16: 850}
#: Memory per pixel of the whole image while it is derained in tiles (its float tensor, the
#: blended sums, the output), measured on a large image in tiles and rounded up.
IMAGE_BYTES_PER_PIXEL = 64
#: Share of the available memory a default tile may take (the rest stays for the system,
#: other programs and the allocator's slack).
MEMORY_SHARE = 0.5
#: The tile when the available memory cannot be read.
DEFAULT_TILE = 512
#: Bounds of the default tile: at least 128 (tiles far smaller lose context and repeat the
#: overlap), at most 2048 (a larger tile gains little and keeps the progress bar still for
#: minutes on a CPU); a multiple of 64.
MIN_AUTO_TILE, MAX_AUTO_TILE, AUTO_TILE_STEP = 128, 2048, 64
_FIT_STEP = 8  # pixels: auto_tile's fitted side is a multiple of this



class DerainMemoryError(InputError, MemoryError):
    """Deraining ran out of memory.

    The message says how large the image and the tile were and suggests a smaller tile. It is
    an `InputError` (the CLI prints it as one line) and a `MemoryError`.
    """


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


# --------------------------------------------------------------------------------------------
# Memory: how much there is, which tile fits, what to say when it runs out
# --------------------------------------------------------------------------------------------
def available_memory(device: str | torch.device = "cpu") -> int | None:
    """Bytes of memory a computation on ``device`` can use now (None if it cannot be read).

    CUDA: the GPU's free memory plus what PyTorch's cache holds unused. CPU: the host's
    available memory (``psutil`` when installed, else ``MemAvailable`` of /proc/meminfo,
    else ``os.sysconf``), or what is left under the process's cgroup memory limits (v2
    ``memory.max``, v1 ``memory.limit_in_bytes``: a container's limit) when that is less.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free + torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev))
    return host_memory_available()


def auto_tile(height: int, width: int, dtype: torch.dtype = torch.float32,
              available: int | None = None, overlap: int = 32) -> int | None:
    """The default tile for an image: as few tiles as fit in a share of the memory, each small.

    The largest side that fits is ``sqrt((MEMORY_SHARE * available - IMAGE_BYTES_PER_PIXEL *
    height * width) / FORWARD_BYTES_PER_PIXEL[dtype])``, rounded down to a multiple of 64 and
    kept within [`MIN_AUTO_TILE`, `MAX_AUTO_TILE`]; an image no larger than it is derained
    whole. Otherwise the tile is the smallest side (a multiple of 8, at least `MIN_AUTO_TILE`)
    that covers the image in as few tiles as that side does (`tile_starts`): a 640 x 640
    image takes four tiles of 336, not four of 576 (3.3 times its pixels).

    Args:
        height: the image height (pixels).
        width: the image width (pixels).
        dtype: the compute dtype (``torch.float32``, or ``torch.bfloat16`` for bf16).
        available: bytes of memory available (`available_memory`); None: unknown, then
            `DEFAULT_TILE`.
        overlap: the overlap of neighbouring tiles (pixels, as `derain_array` takes it).

    Returns:
        The tile side, or None to derain the image whole.

    Example:
        >>> auto_tile(1000, 1000, available=2 << 30), auto_tile(300, 200, available=2 << 30)
        (520, None)
    """
    if available is None:
        side = DEFAULT_TILE
    else:
        per_pixel = FORWARD_BYTES_PER_PIXEL.get(dtype, FORWARD_BYTES_PER_PIXEL[torch.float32])
        budget = MEMORY_SHARE * available - IMAGE_BYTES_PER_PIXEL * height * width
        side = int(math.sqrt(max(budget, 0.0) / per_pixel)) // AUTO_TILE_STEP * AUTO_TILE_STEP
        side = min(max(side, MIN_AUTO_TILE), MAX_AUTO_TILE)
    if max(height, width) <= side:
        return None
    fitted = max(-(-(length - overlap) // len(tile_starts(length, side, overlap))) + overlap
                 for length in (height, width))
    return min(side, max(MIN_AUTO_TILE, -(-fitted // _FIT_STEP) * _FIT_STEP))


def is_out_of_memory(err: BaseException) -> bool:
    """Whether an exception says that memory ran out (CPU, CUDA or Python).

    True for ``MemoryError``, CUDA's ``OutOfMemoryError`` and the ``RuntimeError`` of
    PyTorch's CPU allocator ("DefaultCPUAllocator: not enough memory", "can't allocate
    memory"); other errors are bugs or bad input and keep their own message.
    """
    if isinstance(err, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(
        phrase in text for phrase in ("out of memory", "not enough memory",
                                      "can't allocate memory", "Cannot allocate memory"))


def _memory_error(err: BaseException, height: int, width: int, tile: int | None, overlap: int,
                  dev: torch.device, dtype: torch.dtype) -> DerainMemoryError:
    """The one-line error for running out of memory, with a smaller tile to try."""
    reason = " ".join(str(err).split())[:160] or type(err).__name__
    side = tile if tile is not None else max(height, width)
    smaller = side // 2 // 32 * 32
    how = f"in tiles of {tile} x {tile}" if tile is not None else "whole"
    if smaller > overlap:
        advice = (f"use a smaller --tile (e.g. --tile {smaller})" if tile is not None
                  else f"use --tile (e.g. --tile {smaller})")
    else:
        advice = "free memory (close other programs) or use a machine with more"
    if dtype == torch.float32 and resolve_precision("auto", dev) == torch.bfloat16:
        advice += ", or --precision bf16 (less than half the memory)"
    return DerainMemoryError(f"out of memory deraining a {height} x {width} image {how} on "
                             f"{dev} ({reason}); {advice}")


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
                 overlap: int = 32, device: str | torch.device = "cpu", precision: str = "fp32",
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
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
    So use tiles as large as memory allows (:func:`derain_files` picks them from the available
    memory, :func:`auto_tile`, and processes smaller images whole).

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
            ``spanetlib.models.device.resolve_precision``. bf16 moves the authors' SPANet's output
            on its reference case by at most 0.021, PSNR 53.6 dB to the float32 output.
        progress: show a tqdm bar over the tiles (when there are several).

    Returns:
        ``(derained, attention)``: H x W x 3 float32 RGB clipped to [0, 1], and H x W float32
        in [0, 1] (None for models without attention).

    Raises:
        ValueError: bad ``tile``/``overlap``/``precision``, image shape or values (a float
            image outside [0, 1], `spanetlib.io.files.check_image_values`), or bf16 where it is
            not faster. TypeError: bad image dtype. InputError: the device is not available,
            or the image is smaller than 8 x 8. DerainMemoryError: out of memory (one line
            suggesting a smaller tile).
    """
    x = _image_to_tensor(image)
    check_image_values(image, "image")
    check_image_size(image, "image")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if tile is not None and tile <= overlap:
        raise ValueError(f"tile must be > overlap ({overlap}), got {tile}")
    dev = resolve_torch_device(device)
    dtype = resolve_precision(precision, dev)
    model.eval().to(dev)
    height, width = x.shape[-2:]
    whole = tile is None or (height <= tile and width <= tile)
    try:
        with torch.inference_mode(), reuse_freed_memory(), autocast(dtype, dev):
            if whole:
                out, attention = _run(model, x.to(dev))
            else:
                out, attention = _run_tiled(model, x, dev, tile, overlap, progress)
    except (RuntimeError, MemoryError) as err:
        if isinstance(err, DerainMemoryError) or not is_out_of_memory(err):
            raise
        raise _memory_error(err, height, width, None if whole else tile, overlap, dev,
                            dtype) from err
    derained = np.ascontiguousarray(np.clip(out.transpose(1, 2, 0), 0.0, 1.0), np.float32)
    if attention is not None:
        attention = np.ascontiguousarray(attention, dtype=np.float32)
    return derained, attention


def _run_tiled(model: nn.Module, x: torch.Tensor, dev: torch.device, tile: int, overlap: int,
               progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Blend tile outputs: sum(w * tile_out) / sum(w), per pixel."""
    height, width = x.shape[-2:]
    out_sum = np.zeros((3, height, width), np.float32)
    att_sum: np.ndarray | None = np.zeros((height, width), np.float32)
    weight_sum = np.zeros((height, width), np.float32)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    bar = tqdm(total=len(ys) * len(xs), desc="tiles", unit="tile", leave=False,
               disable=not progress or len(ys) * len(xs) == 1)
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
            bar.update(1)
    bar.close()
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
    gray = round_to_uint8(attention * 255.0)
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
        failed: input image -> why it was skipped (unreadable, too small, ...); the other
            images were derained regardless.
    """

    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    attention_outputs: list[Path] = field(default_factory=list)
    weights: str = ""
    device: str = "cpu"
    precision: str = "fp32"
    seconds: float = 0.0
    failed: dict[Path, str] = field(default_factory=dict)

    def __str__(self) -> str:
        folder = self.outputs[0].parent if self.outputs else "-"
        extra = (f" (+{len(self.attention_outputs)} attention maps)"
                 if self.attention_outputs else "")
        text = (f"derained {len(self.outputs)} image(s) into {folder}{extra} in "
                f"{self.seconds:.1f} s on {self.device} in {self.precision} "
                f"(weights: {self.weights})")
        if self.failed:
            text += f"; {len(self.failed)} FAILED: " + "; ".join(self.failed.values())
        return text


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
                 device: str | torch.device = "auto", tile: int | str | None = "auto",
                 overlap: int = 32, save_attention: bool = False, overwrite: bool = False,
                 progress: bool = True, precision: str = "fp32") -> DerainSummary:
    """Derain image files and folders into ``out_dir`` (the ``spanet derain`` command).

    Every check (inputs exist, every output path usable and not overwritten, device available,
    precision supported, weights readable) happens before the first image is processed; the
    outputs are checked before the model is loaded. Outputs are PNGs named after the inputs,
    ``OUTDIR/<stem>.png``, of the input's kind (gray stays gray, 16-bit stays 16-bit, an alpha
    channel is carried over: `spanetlib.io.files.restore_format`), plus
    ``OUTDIR/<stem>_attention.png`` (a JET heat map of the first attention map,
    :func:`attention_heatmap`) with ``save_attention``; each file is written atomically. An
    image that cannot be read (or is smaller than 8 x 8) is reported in
    ``DerainSummary.failed`` and skipped; the others are derained.

    Args:
        inputs: image files and/or folders (their images with a suffix in
            ``fileio.IMAGE_SUFFIXES``, not recursive).
        out_dir: output folder (created).
        weights: ``"official"``, ``"synthetic"``, a checkpoint path (see
            ``models.pretrained.load_pretrained``) or a model.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        tile: tile size for :func:`derain_array`; ``"auto"`` (default): per image from the
            memory available (:func:`auto_tile`); None: whole images. Images no larger than
            the tile are processed whole.
        overlap: tile overlap in pixels.
        save_attention: also write the attention heat maps (none for models without an
            attention map).
        overwrite: replace existing outputs (otherwise they stop the run before any work).
        progress: show tqdm progress bars (images, and tiles of a tiled image).
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"``, as for :func:`derain_array`.

    Returns:
        A :class:`DerainSummary`.

    Raises:
        InputError: missing or non-image inputs, no images, an output folder that cannot be
            made or written, an existing output without ``overwrite`` (or one that is not a
            regular file), two inputs with the same output name, an unavailable device or
            unusable weights.
        DerainMemoryError: out of memory (one line suggesting a smaller tile).
        ValueError: an unknown precision, or bf16 where it is not faster.
    """
    start = time.perf_counter()
    if isinstance(tile, str) and tile != "auto":
        raise InputError(f"tile must be a positive int, 'auto' or None, got {tile!r}")
    if overlap < 0 or (isinstance(tile, int) and tile <= overlap):
        raise InputError(f"tile must be > overlap >= 0, got tile={tile}, overlap={overlap}")
    images = _collect_images(inputs)
    out_dir = check_output_folder(out_dir)
    plan: list[tuple[Path, Path, Path | None]] = []
    seen: dict[Path, Path] = {}
    for image in images:
        target = out_dir / f"{image.stem}.png"
        if target in seen:
            raise InputError(f"{seen[target]} and {image} would both be written to {target}")
        seen[target] = image
        heat = out_dir / f"{image.stem}_attention.png" if save_attention else None
        for path in (target, heat):
            if path is not None:
                check_output_path(path, overwrite=overwrite, image=True)
        plan.append((image, target, heat))
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
            try:
                image, fmt = read_image_with_format(image_path)
            except InputError as err:
                summary.failed[image_path] = str(err)
                continue
            height, width = image.shape[:2]
            if tile == "auto":
                use_tile = auto_tile(height, width, dtype, available_memory(dev), overlap)
            else:
                use_tile = tile if tile is not None and max(height, width) > tile else None
            derained, attention = derain_array(model, image, tile=use_tile, overlap=overlap,
                                               device=dev, precision=summary.precision,
                                               progress=progress)
            write_image(target, restore_format(derained, fmt))
            summary.inputs.append(image_path)
            summary.outputs.append(target)
            if heat is not None and attention is not None:
                write_image(heat, attention_heatmap(attention))
                summary.attention_outputs.append(heat)
    summary.seconds = time.perf_counter() - start
    return summary
