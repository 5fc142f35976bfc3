"""PSNR and SSIM under named conventions, and the differentiable SSIM map shared with the losses.

Four conventions are offered by name (see :data:`CONVENTIONS` and :class:`MetricConvention`):

``"standard"``
    RGB, data range 1. PSNR over all channels; SSIM with an 11 x 11 Gaussian window
    (sigma 1.5), K1 = 0.01, K2 = 0.03, population (co)variances, per channel on the valid
    region (no padding), then averaged over channels. Equals scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1, channel_axis=-1)``.
``"spanet-paper"``
    What the SPANet paper's Table 2 used (the authors' ``main.py``: old scikit-image
    ``compare_psnr`` / ``compare_ssim(multichannel=True)`` on float images clipped to [0, 1]).
    PSNR as ``"standard"``; SSIM with a 7 x 7 uniform window, data range 2 (old scikit-image
    took the float dtype range -1..1), sample (co)variances (N / (N - 1) correction), per
    channel then averaged. Equals modern ``structural_similarity(win_size=7, data_range=2,
    channel_axis=-1)`` on float input; it reads higher than ``"standard"``.
``"y-matlab"``
    What Restormer, DRSformer and the later deraining papers report (Rain100L/H, Rain200L/H,
    Test100/1200/2800, SPA-Data): RGB quantized to uint8 (``floor(255 x + 0.5)``), BT.601
    luma ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` (R, G, B the uint8 values)
    rounded to integers as MATLAB's ``rgb2ycbcr`` does on uint8, PSNR with data range 255,
    SSIM with an 11 x 11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255 on the
    valid region (Z. Wang's ``ssim_index``), no border crop. This is exactly
    ``Deraining/evaluate_PSNR_SSIM.m`` of swz30/Restormer (``rgb2ycbcr`` on the uint8 images,
    ``compute_psnr``: ``20 log10(255 / rmse)``, ``SSIM_index`` with its defaults) and its copy
    in cschenxiang/DRSformer (``evaluations/Evalution_Rain200L_Rain200H_SPA-Data``), which
    DRSformer uses for Rain200L/H and SPA-Data. Differences from those scripts: they pair a
    result with a target by position in the sorted folder listings (``.jpg`` listed before
    ``.png``), spanetlib by name; and they read saved uint8 PNGs, as does this convention for a
    float output (it is quantized the way ``fileio.write_image`` saves it). The validation
    metric of their Python training code (BasicSR's ``calculate_psnr`` with
    ``test_y_channel=True``) keeps Y unrounded: differences below 0.01 dB. NeRD-Rain
    (cschenxiang/NeRD-Rain, by DRSformer's authors) ships no evaluation script (its
    ``test.py`` saves ``img_as_ubyte`` PNGs); its tables follow DRSformer's protocol, which we
    could not check against its code.
``"y-matlab-builtin"``
    What PReNet (csdwren/PReNet ``statistic/statistic_*.m``), RCDNet
    (``Performance_evaluation/statistic.m``) and DRSformer for DID-Data and DDN-Data report:
    ``x = rgb2ycbcr(im2double(img))`` keeps Y **unrounded**, ``psnr(x, x_true)`` has peak 1
    (the same as 255 on the 0..255 scale used here), and ``ssim(x * 255, x_true * 255)`` is
    MATLAB's **built-in** ``ssim``: an 11 x 11 Gaussian (sigma 1.5) with **replicate**
    padding, the map averaged over the full image, and the dynamic range of the *class*
    (``diff(getrangefromclass(double)) = 1``), so ``C1 = 1e-4``, ``C2 = 9e-4`` on values in
    16..235: the constants hardly act, and SSIM reads lower than ``"y-matlab"`` in flat
    regions. PReNet's published Rain100H numbers (29.46 / 0.899) are in this convention; its
    test scripts save outputs with ``np.uint8(255 * x)`` (truncation), spanetlib rounds.

All metric functions return one value per image; a dataset score is the mean of the per-image
values (as the authors' ``np.mean`` over the test set). Identical images give PSNR ``inf`` and
SSIM 1. Computation is in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from spanetlib.io.checks import check_int
from spanetlib.models.convert import image_to_tensor

__all__ = [
    "CONVENTIONS",
    "METRIC_CONVENTIONS",
    "MetricConvention",
    "get_convention",

    "psnr",
    "psnr_from_mse",
    "psnr_ssim_np",
    "rgb_to_y_matlab",
    "ssim",
    "ssim_map",
]


@dataclass(frozen=True)
class MetricConvention:
    """One named way of computing PSNR and SSIM.

    Attributes:
        name: the convention's name (a key of :data:`METRIC_CONVENTIONS`).
        color: ``"rgb"`` (three channels, values in [0, 1]) or ``"y"`` (BT.601 luma of the
            uint8-quantized image, values in 16..235).
        data_range: peak value L of the compared values for PSNR (``10 log10(L^2 / MSE)``).
        ssim_window: ``"gaussian"`` or ``"uniform"``.
        ssim_window_size: side of the square SSIM window (odd).
        ssim_sigma: standard deviation of the Gaussian window (ignored for uniform windows).
        ssim_data_range: L in the SSIM constants ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2``.
        ssim_sample_covariance: divide (co)variances by N - 1 instead of N (N = window area).
        k1: SSIM constant K1.
        k2: SSIM constant K2.
        description: one line for tables and reports.
        y_rounded: for ``color="y"``, round Y to integers (MATLAB's ``rgb2ycbcr`` on uint8)
            rather than keep it fractional (``rgb2ycbcr`` on ``im2double`` input).
        ssim_padding: ``"valid"`` (the map only where the window fits: Wang's ``ssim_index``,
            scikit-image) or ``"replicate"`` (full-size map, edges replicated: MATLAB's
            built-in ``ssim``).
        published: which published numbers are in this convention (for reports; empty when
            none we know of).
    """

    name: str
    color: str
    data_range: float
    ssim_window: str
    ssim_window_size: int
    ssim_sigma: float
    ssim_data_range: float
    ssim_sample_covariance: bool
    k1: float = 0.01
    k2: float = 0.03
    description: str = ""
    y_rounded: bool = True
    ssim_padding: str = "valid"
    published: str = ""


METRIC_CONVENTIONS: dict[str, MetricConvention] = {
    "standard": MetricConvention(
        name="standard", color="rgb", data_range=1.0, ssim_window="gaussian",
        ssim_window_size=11, ssim_sigma=1.5, ssim_data_range=1.0, ssim_sample_covariance=False,
        description="RGB, range 1; SSIM 11x11 Gaussian (sigma 1.5), valid region",
    ),
    "spanet-paper": MetricConvention(
        name="spanet-paper", color="rgb", data_range=1.0, ssim_window="uniform",
        ssim_window_size=7, ssim_sigma=0.0, ssim_data_range=2.0, ssim_sample_covariance=True,
        description="SPANet paper (old skimage compare_ssim): RGB; SSIM 7x7 uniform, range 2",
        published="the SPANet paper's Table 2 (SPANet on SPA-Data: 38.53 dB / 0.9875)",
    ),
    "y-matlab": MetricConvention(
        name="y-matlab", color="y", data_range=255.0, ssim_window="gaussian",
        ssim_window_size=11, ssim_sigma=1.5, ssim_data_range=255.0,
        ssim_sample_covariance=False,
        description="BT.601 Y of uint8 (MATLAB); SSIM 11x11 Gaussian (sigma 1.5), L = 255",
        published="Restormer's and DRSformer's tables (Rain100L/H, Rain200L/H, Test100/1200/2800,"
                  " SPA-Data) and the papers that copy them",
    ),
    "y-matlab-builtin": MetricConvention(
        name="y-matlab-builtin", color="y", data_range=255.0, ssim_window="gaussian",
        ssim_window_size=11, ssim_sigma=1.5, ssim_data_range=1.0,
        ssim_sample_covariance=False, y_rounded=False, ssim_padding="replicate",
        description="unrounded BT.601 Y; MATLAB built-in ssim (replicate padding, L = 1) as "
                    "PReNet's statistic.m",
        published="PReNet's README (Rain100H: PReNet6 29.46 dB / 0.899, PReNet6_r 28.98 / "
                  "0.892, PRN6 28.07 / 0.884, PRN6_r 27.43 / 0.874), RCDNet's tables, "
                  "DRSformer's DID-Data and DDN-Data columns",
    ),
}

CONVENTIONS: tuple[str, ...] = tuple(METRIC_CONVENTIONS)


def get_convention(convention: str | MetricConvention) -> MetricConvention:
    """Return the :class:`MetricConvention` named ``convention`` (instances pass through).

    Raises:
        ValueError: unknown name.
    """
    if isinstance(convention, MetricConvention):
        return convention
    if convention not in METRIC_CONVENTIONS:
        raise ValueError(
            f"unknown metric convention {convention!r}; expected one of {CONVENTIONS}"
        )
    return METRIC_CONVENTIONS[convention]


# --------------------------------------------------------------------------- SSIM core


def _window_1d(kind: str, size: int, sigma: float) -> list[float]:
    """Normalised 1-D window weights (computed in float64)."""
    if kind == "gaussian":
        x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        w = torch.exp(-(x**2) / (2.0 * sigma**2))
    else:
        w = torch.ones(size, dtype=torch.float64)
    return (w / w.sum()).tolist()


def _separable_filter(x: torch.Tensor, weights: list[float], pad: int,
                      mode: str = "constant") -> torch.Tensor:
    """Filter the last two dims of ``x`` with the outer product of ``weights``.

    ``pad`` pixels are added on every side first (zeros, or ``mode="replicate"``). A sum of
    shifted slices (``len(weights)`` in-place multiply-adds per direction): on CPU this beats
    the grouped ``conv2d`` several times in float32 and float64, stays exact in the input
    dtype, and autograd handles it.
    """
    size = len(weights)
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode=mode)
    for dim in (-1, -2):
        n_out = x.shape[dim] - size + 1
        out = x.narrow(dim, 0, n_out) * weights[0]
        for k in range(1, size):
            out.add_(x.narrow(dim, k, n_out), alpha=weights[k])
        x = out
    return x


def ssim_map(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    window: str = "gaussian",
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
    padding: str = "valid",
    sample_covariance: bool = False,
) -> torch.Tensor:
    r"""Local SSIM map, per channel; differentiable (the one SSIM used by metrics and losses).

    .. math::

        \mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
        {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},\quad
        C_1 = (K_1 L)^2,\ C_2 = (K_2 L)^2,

    with local means and (co)variances ``E[xy] - E[x]E[y]`` taken under the window (times
    ``N / (N - 1)`` with ``sample_covariance``, N the window area). ``padding="valid"`` keeps
    only positions where the window lies inside the image (scikit-image, Wang's MATLAB
    ``ssim_index``); ``padding="same"`` zero-pads by ``window_size // 2`` so the map has the
    input's size (the ``pytorch_ssim`` code the SPANet authors trained with);
    ``padding="replicate"`` pads by repeating the edge pixels (MATLAB's built-in ``ssim``).
    Computed in the input's dtype.

    Args:
        pred: first image batch.
        target: second image batch, same shape.
        window: ``"gaussian"`` or ``"uniform"``.
        window_size: odd side length of the square window.
        sigma: standard deviation of the Gaussian window.
        data_range: L, the dynamic range of the values (1 for images in [0, 1]).
        k1: constant K1.
        k2: constant K2.
        padding: ``"valid"``, ``"same"`` or ``"replicate"``.
        sample_covariance: use the N - 1 normalisation.

    Returns:
        The SSIM map, ``B x C x H' x W'`` with ``H' = H - window_size + 1`` (valid) or ``H``
        (same, replicate).

    Shape:
        - pred, target: ``B x C x H x W`` float, any channel count; values in ``[0, L]``.

    Raises:
        TypeError: inputs are not floating-point tensors.
        ValueError: bad window, padding, shapes, or an image smaller than the window (valid).

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> ssim_map(x, x).shape
        torch.Size([2, 3, 6, 6])
    """
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"{name}: expected a floating-point torch.Tensor, got {got}")
    if pred.ndim != 4:
        raise ValueError(f"expected B x C x H x W tensors (4 dims), got {pred.ndim} dims")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    if window not in ("gaussian", "uniform"):
        raise ValueError(f"window: expected 'gaussian' or 'uniform', got {window!r}")
    if padding not in ("same", "valid", "replicate"):
        raise ValueError(f"padding: expected 'same', 'valid' or 'replicate', got {padding!r}")
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size: expected an odd integer >= 1, got {window_size}")
    if window == "gaussian" and sigma <= 0:
        raise ValueError(f"sigma: expected > 0, got {sigma}")
    if data_range <= 0:
        raise ValueError(f"data_range: expected > 0, got {data_range}")
    height, width = pred.shape[-2:]
    if padding == "valid" and (height < window_size or width < window_size):
        raise ValueError(
            f"images must be at least {window_size} x {window_size} (the SSIM window), got "
            f"{height} x {width}"
        )
    channels = pred.shape[1]
    weights = _window_1d(window, window_size, sigma)
    pad = 0 if padding == "valid" else window_size // 2
    mode = "replicate" if padding == "replicate" else "constant"
    stacked = torch.cat([pred, target, pred * pred, target * target, pred * target], dim=1)
    mu_x, mu_y, e_xx, e_yy, e_xy = _separable_filter(stacked, weights, pad, mode).split(
        channels, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x, var_y, cov = e_xx - mu_xx, e_yy - mu_yy, e_xy - mu_xy
    if sample_covariance:
        n = window_size * window_size
        factor = n / (n - 1)
        var_x, var_y, cov = var_x * factor, var_y * factor, cov * factor
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    return ((2 * mu_xy + c1) * (2 * cov + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))


# --------------------------------------------------------------------------- conventions


def rgb_to_y_matlab(rgb255: torch.Tensor, rounded: bool = True) -> torch.Tensor:
    """BT.601 luma of integer-valued RGB, as MATLAB's ``rgb2ycbcr``.

    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` with R, G, B in 0..255, rounded half
    away from zero as ``rgb2ycbcr`` does on uint8 input; ``rounded=False`` keeps the fraction
    (``255 * rgb2ycbcr(im2double(img))``).

    Args:
        rgb255: RGB values in 0..255 (integers stored as float).
        rounded: round Y to integers.

    Returns:
        ``B x 1 x H x W`` luma in 16..235, same dtype.

    Shape:
        - rgb255: ``B x 3 x H x W``, RGB in [0, 255].
    """
    if rgb255.ndim != 4 or rgb255.shape[1] != 3:
        raise ValueError(f"expected B x 3 x H x W, got shape {tuple(rgb255.shape)}")
    r, g, b = rgb255[:, 0:1], rgb255[:, 1:2], rgb255[:, 2:3]
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    return torch.floor(y + 0.5) if rounded else y


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(
                f"{name}: expected a B x 3 x H x W tensor, got shape {tuple(t.shape)}"
            )
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )


def _quantize_uint8(t: torch.Tensor) -> torch.Tensor:
    """``floor(255 clip(t, 0, 1) + 0.5)`` in the input's precision (as ``fileio.to_uint8``).

    Rounding in the input dtype (float32 for network outputs) makes the ``"y-matlab"`` value
    of a float image equal to that of the uint8 image saved from it. Returns float64.
    """
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return torch.floor(t.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.float64)


def _prepare(
    pred: torch.Tensor, target: torch.Tensor, conv: MetricConvention, crop_border: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate, clip to [0, 1], move to the convention's color space and crop the border."""
    _check_pair(pred, target)
    check_int("crop_border", crop_border, minimum=0)
    height, width = pred.shape[-2:]
    if 2 * crop_border >= min(height, width):
        raise ValueError(
            f"crop_border={crop_border} leaves no pixels of a {height} x {width} image"
        )
    if conv.color == "y":
        x = rgb_to_y_matlab(_quantize_uint8(pred), conv.y_rounded)
        y = rgb_to_y_matlab(_quantize_uint8(target), conv.y_rounded)
    else:
        x = pred.detach().to(torch.float64).clamp(0.0, 1.0)
        y = target.detach().to(torch.float64).clamp(0.0, 1.0)
    if crop_border:
        c = crop_border
        x, y = x[..., c:-c, c:-c], y[..., c:-c, c:-c]
    return x, y


def psnr(
    pred: torch.Tensor,
    target: torch.Tensor,
    convention: str | MetricConvention = "standard",
    crop_border: int = 0,
) -> torch.Tensor:
    r"""Peak signal-to-noise ratio per image.

    .. math::

        \mathrm{PSNR} = 10 \log_{10} \frac{L^2}{\mathrm{MSE}},

    MSE over all pixels (and channels for RGB conventions) of one image; L is 1 for the RGB
    conventions and 255 on the Y channel of ``"y-matlab"``. Inputs are clipped to [0, 1]
    first (as the authors clip network outputs for evaluation). Identical images give
    ``inf``; a dataset score is the mean of the per-image values.

    Args:
        pred: restored images.
        target: ground-truth images.
        convention: one of :data:`CONVENTIONS` (or a :class:`MetricConvention`).
        crop_border: pixels removed from each image edge before measuring.

    Returns:
        ``(B,)`` float64 tensor of PSNR values in dB (no gradient).

    Shape:
        - pred, target: ``B x 3 x H x W``, RGB in [0, 1].

    Raises:
        ValueError: unknown convention, bad shapes or ``crop_border``.

    Example:
        >>> x = torch.zeros(1, 3, 8, 8)
        >>> psnr(x, x + 0.25).round(decimals=2)
        tensor([12.0400], dtype=torch.float64)
    """
    conv = get_convention(convention)
    x, y = _prepare(pred, target, conv, crop_border)
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    return 10.0 * math.log10(conv.data_range**2) - 10.0 * torch.log10(mse)


def psnr_from_mse(mse: float | np.ndarray, peak: float = 255.0) -> float | np.ndarray:
    """PSNR in dB from mean squared errors: ``10 log10(peak^2 / mse)``, ``inf`` where mse is 0.

    Args:
        mse: one MSE or an array of them (any shape), in the units of ``peak``.
        peak: the largest possible value (255 for uint8 levels, 1 for [0, 1] images).

    Returns:
        A float for a scalar ``mse``, else a float64 array of ``mse``'s shape.
    """
    m = np.asarray(mse, dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = np.where(m > 0, 10.0 * np.log10(peak ** 2 / np.where(m > 0, m, 1.0)), np.inf)
    return float(out) if out.ndim == 0 else out


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    convention: str | MetricConvention = "standard",
    crop_border: int = 0,
) -> torch.Tensor:
    """Structural similarity per image under a named convention.

    The SSIM map (:func:`ssim_map` with the convention's window, constants and padding) is
    averaged over positions and channels of each image. Inputs are clipped to [0, 1] first.
    Identical images give 1; a dataset score is the mean of the per-image values.

    Args:
        pred: restored images.
        target: ground-truth images.
        convention: one of :data:`CONVENTIONS` (or a :class:`MetricConvention`).
        crop_border: pixels removed from each image edge before measuring.

    Returns:
        ``(B,)`` float64 tensor of SSIM values (at most 1; no gradient).

    Shape:
        - pred, target: ``B x 3 x H x W``, RGB in [0, 1]; after cropping, H and W must be at
          least the window size (11, or 7 for ``"spanet-paper"``; any size with
          ``"y-matlab-builtin"``, whose padding keeps the map full-size).

    Raises:
        ValueError: unknown convention, bad shapes, ``crop_border``, or images smaller than
            the window.

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> ssim(x, x)
        tensor([1., 1.], dtype=torch.float64)
    """
    conv = get_convention(convention)
    x, y = _prepare(pred, target, conv, crop_border)
    smap = ssim_map(
        x, y, window=conv.ssim_window, window_size=conv.ssim_window_size, sigma=conv.ssim_sigma,
        data_range=conv.ssim_data_range, k1=conv.k1, k2=conv.k2, padding=conv.ssim_padding,
        sample_covariance=conv.ssim_sample_covariance,
    )
    return smap.flatten(1).mean(dim=1)


# --------------------------------------------------------------------------- numpy helpers




def psnr_ssim_np(
    pred_img: np.ndarray,
    target_img: np.ndarray,
    convention: str | MetricConvention = "standard",
    crop_border: int = 0,
) -> tuple[float, float]:
    """PSNR and SSIM of one pair of numpy images.

    Images are converted with :func:`image_to_tensor` (uint8 to float64, float images keep
    their precision; metrics are computed in float64). For ``"y-matlab"`` uint8 input is used
    as is (its values quantize to themselves: no double rounding), and a float32 image gives
    the same value as its ``fileio.to_uint8`` conversion.

    Args:
        pred_img: restored ``H x W x 3`` RGB image, uint8 or float in [0, 1].
        target_img: ground-truth image of the same shape.
        convention: one of :data:`CONVENTIONS`.
        crop_border: pixels removed from each image edge before measuring.

    Returns:
        ``(psnr_db, ssim)`` as Python floats.

    Raises:
        TypeError: not numpy arrays, or an unsupported dtype.
        ValueError: bad shapes, unknown convention, image smaller than the window.
    """
    for name, img in (("pred_img", pred_img), ("target_img", target_img)):
        if not isinstance(img, np.ndarray):
            raise TypeError(f"{name}: expected a numpy array, got {type(img).__name__}")
    shapes = (pred_img.shape, target_img.shape)
    for shape in shapes:
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"expected H x W x 3 images, got shapes {shapes[0]} and {shapes[1]}")
    x, y = (
        image_to_tensor(img, dtype=torch.float32 if img.dtype == np.float32 else torch.float64)
        for img in (pred_img, target_img)
    )
    return (
        float(psnr(x, y, convention, crop_border)[0]),
        float(ssim(x, y, convention, crop_border)[0]),
    )
