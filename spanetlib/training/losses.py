"""Training losses of SPANet: L1, SSIM and the attention loss, as pure functions and modules.

The paper trains with (Eq. 6) ``L = L_1 + L_SSIM + L_Att``, where ``L_SSIM = 1 - SSIM(P, C)``
and the attention loss (Eq. 7) ``L_Att = ||A_1 - M||^2`` (mean squared error) supervises
only the first attention map A_1 with the binary rain mask M. The authors' code
(``main.py``) uses ``nn.L1Loss``, ``1 - pytorch_ssim.SSIM`` and ``nn.MSELoss``, all with
weight 1; this module reproduces each term:

- SSIM: 11 x 11 Gaussian window (sigma 1.5), C1 = 0.01^2, C2 = 0.03^2 (data range 1),
  zero padding of 5 so the map keeps the image size (``padding="same"``, as ``pytorch_ssim``),
  the map averaged over all pixels, channels and images. ``padding="valid"`` gives the
  scikit-image / ``metrics.ssim(convention="standard")`` value instead. The SSIM itself is
  :func:`spanetlib.evaluation.metrics.ssim_map` (one implementation for metrics and losses).
- Inputs are not clipped (the network output is unclamped during training).

Deviation for sparse masks (``balanced=True``, used by the ``quick``/``smoke`` profiles and the
shipped ``synthetic`` recipe): the attention MSE is averaged over the rain pixels and over the
rain-free pixels separately, and the two means are averaged, so both classes weigh the same
whatever their share. The plain mean (the paper's Eq. 7) is right for the authors' data, where
M marks almost every pixel; on masks with few rain pixels (2-40 % of a patch in our §3 pairs
at ``mask_threshold`` 10/255) it pushes A_1 towards 0 on the whole image at the start, and the
sigmoid of SPANet's attention head (no bias, ``w . relu(features)``) overshoots into saturation
within the first tens of Adam steps, where neither loss can pull it back: A_1 is then 0.000
everywhere (the first shipped ``synthetic`` weights). Class balance removes that net push and
keeps A_1 informative.
"""

from __future__ import annotations

import torch
from torch import nn

from spanetlib.evaluation.metrics import ssim_map

__all__ = [
    "L1Loss",
    "SPANetLoss",
    "SSIMLoss",
    "attention_loss",
    "l1_loss",
    "ssim_loss",
]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    return x


def _check_images(pred: torch.Tensor, target: torch.Tensor) -> None:
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"{name}: expected a floating-point torch.Tensor, got {got}")
        if t.ndim != 4:
            raise ValueError(
                f"{name}: expected a B x C x H x W tensor, got shape {tuple(t.shape)}"
            )
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )


def l1_loss(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Mean absolute error :math:`\frac{1}{N}\sum |P - C|` (the ``L_1`` term of Eq. 6).

    Args:
        pred: predicted images P.
        target: clean images C.
        reduction: ``"mean"`` (as ``nn.L1Loss``), ``"sum"`` or ``"none"``.

    Returns:
        A scalar, or ``B x C x H x W`` with ``reduction="none"``.

    Shape:
        - pred, target: ``B x C x H x W`` (C = 3 for RGB images, nominally in [0, 1]).

    Raises:
        TypeError: non-float inputs.
        ValueError: shapes differ or are not 4-D, unknown reduction.

    Example:
        >>> l1_loss(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5))
        tensor(0.5000)
    """
    _check_images(pred, target)
    _check_reduction(reduction)
    return _reduce((pred - target).abs(), reduction)


def ssim_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    padding: str = "same",
    reduction: str = "mean",
) -> torch.Tensor:
    r"""SSIM loss :math:`1 - \mathrm{SSIM}(P, C)` (the ``L_SSIM`` term of Eq. 6).

    SSIM with a Gaussian window, C1 = 0.01^2, C2 = 0.03^2 (data range 1), see
    :func:`spanetlib.evaluation.metrics.ssim_map`. With ``padding="same"`` (default) the images are
    zero-padded by ``window_size // 2``, as in the ``pytorch_ssim`` code the SPANet authors
    trained with; ``"valid"`` drops the border positions (scikit-image convention). Identical
    images give 0. Differentiable.

    Args:
        pred: predicted images P (not clipped).
        target: clean images C.
        window_size: odd side of the Gaussian window.
        sigma: standard deviation of the window.
        padding: ``"same"`` or ``"valid"``.
        reduction: ``"mean"`` (``1 - mean SSIM`` over pixels, channels and images),
            ``"sum"`` or ``"none"`` (the per-pixel map ``1 - SSIM``).

    Returns:
        A scalar, or ``B x C x H' x W'`` with ``reduction="none"`` (``H' = H`` for
        ``"same"``, ``H - window_size + 1`` for ``"valid"``).

    Shape:
        - pred, target: ``B x C x H x W``, nominally in [0, 1].

    Raises:
        TypeError: non-float inputs.
        ValueError: shapes, window, padding or reduction out of range.

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> float(ssim_loss(x, x))
        0.0
    """
    _check_images(pred, target)
    _check_reduction(reduction)
    smap = ssim_map(
        pred, target, window="gaussian", window_size=window_size, sigma=sigma,
        data_range=1.0, padding=padding,
    )
    return _reduce(1.0 - smap, reduction)


def attention_loss(
    attention: torch.Tensor, mask: torch.Tensor, reduction: str = "mean", balanced: bool = False
) -> torch.Tensor:
    r"""Attention loss (Eq. 7): mean squared error :math:`\frac{1}{N}\sum (A - M)^2`.

    A is the first attention map of SPANet, M the binary rain mask (1 where the rain image
    differs from the clean one). The authors use ``nn.MSELoss`` (mean over all pixels).

    With ``balanced=True`` each pixel's squared error is weighted so that the rain pixels
    (M = 1) and the rain-free pixels (M = 0) of the batch count the same:
    :math:`\frac{1}{2}\big(\mathrm{mean}_{M=1}(A - 1)^2 + \mathrm{mean}_{M=0} A^2\big)`.
    When the batch holds only one class, that class's mean is returned (the plain MSE). The
    weights are ``N / (k N_class)`` (k: number of classes present), whose mean is 1, so
    ``reduction="none"`` gives the weighted per-pixel errors and their mean is the loss. At a
    constant A = 0.5 both forms give 0.25. See the module docstring for why sparse masks
    need it.

    Args:
        attention: attention maps A.
        mask: rain masks M, float or bool; ``B x 1 x H x W`` or ``B x H x W``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        balanced: weight the rain and rain-free pixels equally (not in the paper).

    Returns:
        A scalar, or ``B x 1 x H x W`` with ``reduction="none"``.

    Shape:
        - attention: ``B x 1 x H x W`` in [0, 1] (a sigmoid output).
        - mask: ``B x 1 x H x W`` or ``B x H x W``, values in {0, 1} (> 0.5 counts as rain
          for the balance).

    Raises:
        TypeError: ``attention`` is not a float tensor, or ``mask`` is not a tensor.
        ValueError: shapes do not match, unknown reduction.

    Example:
        >>> attention_loss(torch.full((1, 1, 4, 4), 0.5), torch.ones(1, 1, 4, 4))
        tensor(0.2500)
        >>> mask = torch.zeros(1, 1, 4, 4)
        >>> mask[..., 0, 0] = 1                     # one rain pixel in 16
        >>> attention_loss(torch.zeros(1, 1, 4, 4), mask)  # A = 0 is almost right ...
        tensor(0.0625)
        >>> attention_loss(torch.zeros(1, 1, 4, 4), mask, balanced=True)  # ... or half wrong
        tensor(0.5000)
    """
    if not isinstance(attention, torch.Tensor) or not attention.is_floating_point():
        got = attention.dtype if isinstance(attention, torch.Tensor) else type(attention).__name__
        raise TypeError(f"attention: expected a floating-point torch.Tensor, got {got}")
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask: expected a torch.Tensor, got {type(mask).__name__}")
    if attention.ndim != 4 or attention.shape[1] != 1:
        raise ValueError(
            f"attention: expected a B x 1 x H x W tensor, got shape {tuple(attention.shape)}"
        )
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    if mask.shape != attention.shape:
        raise ValueError(
            f"mask: expected shape {tuple(attention.shape)} (or without the channel dim), "
            f"got {tuple(mask.shape)}"
        )
    _check_reduction(reduction)
    mask = mask.to(attention.dtype)
    error = (attention - mask).pow(2)
    if balanced:
        error = error * _class_balance_weights(mask > 0.5)
    return _reduce(error, reduction)


def _class_balance_weights(positive: torch.Tensor) -> torch.Tensor:
    """Per-pixel weights ``N / (k N_class)`` (mean 1) giving both classes equal total weight."""
    n = positive.numel()
    n_pos = positive.sum()
    n_neg = n - n_pos
    classes = (n_pos > 0).to(torch.float32) + (n_neg > 0).to(torch.float32)
    w_pos = n / (classes * n_pos.clamp(min=1))
    w_neg = n / (classes * n_neg.clamp(min=1))
    return torch.where(positive, w_pos, w_neg).detach()


class L1Loss(nn.Module):
    """Module form of :func:`l1_loss`."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return :func:`l1_loss` of ``pred`` and ``target``."""
        return l1_loss(pred, target, self.reduction)


class SSIMLoss(nn.Module):
    """Module form of :func:`ssim_loss` (``1 - SSIM``, authors' ``pytorch_ssim`` by default).

    Args:
        window_size: odd side of the Gaussian window.
        sigma: standard deviation of the window.
        padding: ``"same"`` (authors) or ``"valid"`` (scikit-image).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        window_size: int = 11,
        sigma: float = 1.5,
        padding: str = "same",
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        _check_reduction(reduction)
        if padding not in ("same", "valid"):
            raise ValueError(f"padding: expected 'same' or 'valid', got {padding!r}")
        self.window_size = window_size
        self.sigma = sigma
        self.padding = padding
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return :func:`ssim_loss` of ``pred`` and ``target``."""
        return ssim_loss(
            pred, target, self.window_size, self.sigma, self.padding, self.reduction
        )


class SPANetLoss(nn.Module):
    """SPANet's training objective (Eq. 6): ``w1 L1 + w2 (1 - SSIM) + w3 MSE(A_1, M)``.

    With the default weights (all 1) and ``attention_balanced=False`` this is the authors'
    loss. The attention term (Eq. 7) is skipped when ``attention`` is ``None`` (models without
    attention) or its weight is 0.

    Args:
        l1_weight: weight of the L1 term.
        ssim_weight: weight of the ``1 - SSIM`` term (``padding="same"``, as the authors).
        attention_weight: weight of the attention term.
        attention_balanced: weight rain and rain-free pixels equally in the attention MSE
            (`attention_loss` with ``balanced=True``; needed when M marks few pixels).

    Shape:
        - pred, target: ``B x 3 x H x W``, nominally in [0, 1].
        - attention: ``B x 1 x H x W`` or ``None``; mask: ``B x 1 x H x W`` or ``B x H x W``.

    Example:
        >>> loss_fn = SPANetLoss()
        >>> x = torch.rand(1, 3, 16, 16)
        >>> total, parts = loss_fn(x, x, torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16))
        >>> float(total), sorted(parts)
        (0.0, ['attention', 'l1', 'ssim', 'total'])
    """

    def __init__(
        self, l1_weight: float = 1.0, ssim_weight: float = 1.0, attention_weight: float = 1.0,
        attention_balanced: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("l1_weight", l1_weight), ("ssim_weight", ssim_weight),
            ("attention_weight", attention_weight),
        ):
            if not value >= 0:
                raise ValueError(f"{name}: expected a weight >= 0, got {value}")
        self.l1_weight = float(l1_weight)
        self.ssim_weight = float(ssim_weight)
        self.attention_weight = float(attention_weight)
        if not isinstance(attention_balanced, bool):
            raise TypeError(
                f"attention_balanced: expected a bool, got {type(attention_balanced).__name__}"
            )
        self.attention_balanced = attention_balanced

    def extra_repr(self) -> str:
        """Show the three weights and the attention balance."""
        return (
            f"l1_weight={self.l1_weight}, ssim_weight={self.ssim_weight}, "
            f"attention_weight={self.attention_weight}, "
            f"attention_balanced={self.attention_balanced}"
        )

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        attention: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Compute the weighted total and its unweighted parts.

        Args:
            pred: predicted images.
            target: clean images.
            attention: first attention map A_1, or ``None``.
            mask: binary rain mask M; required when ``attention`` is given and the attention
                weight is > 0.

        Returns:
            ``(total, parts)``: the scalar total (differentiable) and a dict of Python floats
            with keys ``"l1"``, ``"ssim"`` (the loss ``1 - SSIM``), ``"attention"`` (only when
            computed) and ``"total"``.

        Raises:
            ValueError: ``attention`` given without ``mask``, or bad shapes.
        """
        l1 = l1_loss(pred, target)
        ssim_term = ssim_loss(pred, target)
        total = self.l1_weight * l1 + self.ssim_weight * ssim_term
        parts = {"l1": float(l1.detach()), "ssim": float(ssim_term.detach())}
        if attention is not None and self.attention_weight > 0:
            if mask is None:
                raise ValueError(
                    "mask: expected a B x 1 x H x W rain mask when attention is given and "
                    f"attention_weight={self.attention_weight} > 0, got None"
                )
            att = attention_loss(attention, mask, balanced=self.attention_balanced)
            total = total + self.attention_weight * att
            parts["attention"] = float(att.detach())
        parts["total"] = float(total.detach())
        return total, parts
