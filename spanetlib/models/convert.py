"""Numpy images to the tensors every model takes (B x 3 x H x W, RGB in [0, 1])."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["image_to_tensor"]


def image_to_tensor(img: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Convert numpy image(s) to a ``B x 3 x H x W`` float tensor.

    uint8 values are divided by 255; float values are kept (expected in [0, 1]). A grayscale
    ``H x W`` image is repeated to three channels.

    Args:
        img: ``H x W``, ``H x W x 3`` or ``B x H x W x 3`` array, uint8 or float.
        dtype: floating dtype of the result.

    Returns:
        ``1 x 3 x H x W`` (or ``B x 3 x H x W`` for a stack) tensor, values in [0, 1].

    Raises:
        TypeError: not a numpy array, or a dtype other than uint8 / float.
        ValueError: an unsupported shape.
    """
    if not isinstance(img, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(img).__name__}")
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype  # convert once, in the target dtype
    if img.dtype == np.uint8:
        arr = img.astype(np_dtype) / np_dtype.type(255.0)
    elif np.issubdtype(img.dtype, np.floating):
        arr = img.astype(np_dtype, copy=False)
    else:
        raise TypeError(f"expected a uint8 or float image, got dtype {img.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[3] != 3:
        raise ValueError(
            f"expected an H x W, H x W x 3 or B x H x W x 3 image, got shape {img.shape}"
        )
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))
