"""Baseline derainers of the paper's Table 2: DDN, RESCAN and PReNet, retrained on our data.

Compact re-implementations written from the three papers. Each is one configurable class
whose defaults follow the original paper's structure; a width argument (``channels``) and
depth arguments make CPU runs feasible. Every model takes B x 3 x H x W RGB in [0, 1] (any
H, W) and returns ``(derained, None)``: the package's derainer contract (image, attention),
these models having no attention map.

- ``DDN``: Fu et al., "Removing rain from single images via a deep detail network",
  CVPR 2017. A guided filter splits the input into base + detail; a 26-layer ResNet on the
  detail layer predicts the negative rain residual, added to the input.
- ``RESCAN``: Li et al., "Recurrent squeeze-and-excitation context aggregation net for single
  image deraining", ECCV 2018. Stages of a dilated context aggregation net with
  squeeze-and-excitation; every layer is a recurrent unit (ConvGRU) whose state carries over
  from stage to stage; the rain layer is accumulated over the stages (additive formulation).
- ``PReNet``: Ren et al., "Progressive image deraining networks: a better and simpler
  baseline", CVPR 2019. Six recursive stages with shared weights, each:
  concat(rain input, current estimate) -> conv+ReLU -> ConvLSTM -> 5 ResBlocks -> conv.
  The factories ``prenet6``, ``prenet6_r``, ``prn6`` and ``prn6_r`` build the four families
  of the authors' released weights (``spanetlib.models.released`` loads those files).

Parameter counts at default settings (``PARAMETER_COUNTS``; a test checks them against
`spanetlib.models.count_parameters`)::

    DDN: 57,369
    RESCAN: 148,875
    PReNet: 168,963
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from spanetlib.io.checks import check_int

__all__ = [
    "BASELINES",
    "DDN",
    "PARAMETER_COUNTS",
    "PRENET_FAMILIES",
    "PReNet",
    "RESCAN",
    "box_filter",
    "guided_filter",
    "prenet6",
    "prenet6_r",
    "prn6",
    "prn6_r",
]

#: Parameter counts of each baseline at its default settings (also shown in the docstring).
PARAMETER_COUNTS: dict[str, int] = {"DDN": 57_369, "RESCAN": 148_875, "PReNet": 168_963}


def _check_image_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a B x 3 x H x W tensor, got shape {tuple(x.shape)}")


# ---------------------------------------------------------------------------------------------
# Guided filter (He et al.), used by DDN for the base/detail decomposition
# ---------------------------------------------------------------------------------------------

def _window_bounds(size: int, radius: int, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.arange(size, device=device)
    hi = torch.clamp(idx + radius + 1, max=size)
    lo = torch.clamp(idx - radius, min=0)
    return lo, hi


def _window_sum_1d(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Sum over the window [i - r, i + r] clipped to the image, along ``dim`` (cumsum, O(1))."""
    size = x.shape[dim]
    lo, hi = _window_bounds(size, radius, x.device)
    c = torch.cumsum(x, dim=dim)
    pad = [0, 0] * (x.dim() - 1 - (dim % x.dim())) + [1, 0]
    c = F.pad(c, pad)  # leading zero along dim: c[k] = sum of the first k entries
    return c.index_select(dim, hi) - c.index_select(dim, lo)


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1) x (2r+1) window clipped to the image (zero padding, normalised).

    Equivalent to OpenCV's unnormalised ``boxFilter`` with a constant-zero border divided by
    the number of pixels inside the image, and to ``avg_pool2d(..., count_include_pad=False)``;
    computed with cumulative sums, so the cost does not grow with the radius. Differentiable.

    Args:
        x: B x C x H x W float tensor.
        radius: window radius r >= 0.

    Returns:
        B x C x H x W window means.
    """
    check_int("radius", radius, minimum=0)
    if x.dim() != 4:
        raise ValueError(f"expected a B x C x H x W tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    lo_h, hi_h = _window_bounds(h, radius, x.device)
    lo_w, hi_w = _window_bounds(w, radius, x.device)
    count = ((hi_h - lo_h).view(-1, 1) * (hi_w - lo_w).view(1, -1)).to(x.dtype)
    total = _window_sum_1d(_window_sum_1d(x, radius, -2), radius, -1)
    return total / count


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float
                  ) -> torch.Tensor:
    """Guided filter of He et al. (ECCV 2010), channel by channel (differentiable).

    For each window: ``a = cov(I, p) / (var(I) + eps)``, ``b = mean(p) - a * mean(I)``; the
    output is ``mean(a) * I + mean(b)`` with window means from :func:`box_filter`.

    Args:
        guide: guidance image I, B x C x H x W float.
        src: image p to filter, same shape as ``guide``.
        radius: window radius r >= 1.
        eps: regularisation > 0 (in squared intensity units; DDN uses 1.0 on [0, 1] images,
            which makes the filter a strong smoother).

    Returns:
        The filtered image q, B x C x H x W.
    """
    if guide.shape != src.shape:
        raise ValueError(f"guide and src must have the same shape, got {tuple(guide.shape)} "
                         f"and {tuple(src.shape)}")
    check_int("radius", radius, minimum=1)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    mean_i = box_filter(guide, radius)
    mean_p = box_filter(src, radius)
    cov_ip = box_filter(guide * src, radius) - mean_i * mean_p
    var_i = box_filter(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_filter(a, radius) * guide + box_filter(b, radius)


# ---------------------------------------------------------------------------------------------
# DDN
# ---------------------------------------------------------------------------------------------

def _zero_(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()


def _conv_bn_relu(cin: int, cout: int, batch_norm: bool, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DDN(nn.Module):
    """Deep detail network (Fu et al., CVPR 2017).

    ``detail = x - guided_filter(x, x, radius, eps)`` (self-guided, per channel); a ResNet on
    the detail layer predicts the negative residual ``r``; the output is ``x + r``. The
    ResNet: conv-BN-ReLU (3 -> C), ``num_blocks`` blocks of two conv-BN-ReLU layers with an
    identity shortcut around each block, then conv-BN (C -> 3): ``2 * num_blocks + 2`` conv
    layers (26 in the paper, C = 16, 3x3 kernels).

    Args:
        channels: feature channels C (paper: 16).
        num_blocks: residual blocks (paper: 12, so 26 layers).
        radius: guided-filter radius (paper: 15).
        eps: guided-filter regularisation on [0, 1] intensities (paper: 1.0).
        batch_norm: batch normalisation after each conv (paper: yes).
        identity_init: zero the last layer (its BN scale and shift, or the conv without BN),
            so the untrained network is the identity; off by default (the paper's init).

    Shape:
        x: B x 3 x H x W RGB in [0, 1]; output ``(B x 3 x H x W, None)``, not clamped.
    """

    def __init__(self, channels: int = 16, num_blocks: int = 12, radius: int = 15,
                 eps: float = 1.0, batch_norm: bool = True, identity_init: bool = False
                 ) -> None:
        super().__init__()
        check_int("channels", channels, minimum=1)
        check_int("num_blocks", num_blocks, minimum=0)
        check_int("radius", radius, minimum=1)
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.radius = radius
        self.eps = float(eps)
        self.head = _conv_bn_relu(3, channels, batch_norm)
        self.blocks = nn.ModuleList(
            nn.Sequential(_conv_bn_relu(channels, channels, batch_norm),
                          _conv_bn_relu(channels, channels, batch_norm))
            for _ in range(num_blocks))
        self.tail = _conv_bn_relu(channels, 3, batch_norm, relu=False)
        if identity_init:
            _zero_(self.tail[-1])

    def decompose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split ``x`` (B x 3 x H x W) into (base, detail) with ``base + detail == x``."""
        base = guided_filter(x, x, self.radius, self.eps)
        return base, x - base

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """B x 3 x H x W RGB in [0, 1] -> (derained B x 3 x H x W, None)."""
        _check_image_batch(x)
        _, detail = self.decompose(x)
        feat = self.head(detail)
        for block in self.blocks:
            feat = feat + block(feat)
        return x + self.tail(feat), None


# ---------------------------------------------------------------------------------------------
# RESCAN
# ---------------------------------------------------------------------------------------------

class _SqueezeExcitation(nn.Module):
    """Channel re-weighting: global mean -> FC -> ReLU -> FC -> sigmoid -> scale."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(x.mean(dim=(2, 3)))
        return x * weights[:, :, None, None]


class _RecurrentContextLayer(nn.Module):
    """One RESCAN layer: a recurrent unit over stages, dilated on its input, then SE + LReLU.

    The input-to-state convolutions are dilated (context aggregation); the state-to-state
    convolutions are plain 3x3 and have no bias (the input convolution carries it). At the
    first stage there is no state: GRU ``h = z * n``, LSTM ``c = i * g``, RNN ``h = Wx``.
    """

    _GATES = {"rnn": 1, "gru": 3, "lstm": 4}

    def __init__(self, cin: int, cout: int, dilation: int, unit: str, reduction: int) -> None:
        super().__init__()
        self.unit = unit
        gates = self._GATES[unit]
        self.conv_x = nn.Conv2d(cin, gates * cout, 3, padding=dilation, dilation=dilation)
        if unit == "gru":  # the candidate uses r * h, so its state conv is separate
            self.conv_h = nn.Conv2d(cout, 2 * cout, 3, padding=1, bias=False)
            self.conv_hn = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        else:
            self.conv_h = nn.Conv2d(cout, gates * cout, 3, padding=1, bias=False)
        self.se = _SqueezeExcitation(cout, reduction)
        self.act = nn.LeakyReLU(0.2, inplace=False)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...] | None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        gx = self.conv_x(x)
        if self.unit == "rnn":
            pre = gx if state is None else gx + self.conv_h(state[0])
            h = pre
            new_state: tuple[torch.Tensor, ...] = (h,)
        elif self.unit == "gru":
            xz, xr, xn = gx.chunk(3, dim=1)
            if state is None:
                h = torch.sigmoid(xz) * torch.tanh(xn)
            else:
                hz, hr = self.conv_h(state[0]).chunk(2, dim=1)
                z = torch.sigmoid(xz + hz)
                r = torch.sigmoid(xr + hr)
                n = torch.tanh(xn + self.conv_hn(r * state[0]))
                h = (1 - z) * state[0] + z * n
            new_state = (h,)
        else:  # lstm
            if state is not None:
                gx = gx + self.conv_h(state[0])
            i, f, g, o = gx.chunk(4, dim=1)
            c = torch.sigmoid(i) * torch.tanh(g)
            if state is not None:
                c = c + torch.sigmoid(f) * state[1]
            h = torch.sigmoid(o) * torch.tanh(c)
            new_state = (h, c)
        out = self.act(self.se(h))
        if self.unit == "rnn":
            new_state = (out,)  # the RNN's state is its activated output
        return out, new_state


class RESCAN(nn.Module):
    """Recurrent squeeze-and-excitation context aggregation net (Li et al., ECCV 2018).

    A context aggregation net (CAN) of ``depth`` conv layers is applied in each of ``stages``
    stages. Its first ``depth - 2`` layers are recurrent units (their state carries from a
    stage to the next, so the stages share weights and exchange information), with dilations
    ``1, 1, 2, 4, ..., 2 ** (depth - 4)`` (1, 1, 2, 4, 8 at depth 7); each is followed by
    squeeze-and-excitation and LeakyReLU(0.2). The last two layers (3x3 conv + SE + LReLU,
    then 1x1 conv to 3 channels) decode the rain layer. Additive formulation: with ``y`` the
    rain input, stage s sees ``y - R_{s-1}`` and ``R_s = R_{s-1} + CAN_s(y - R_{s-1})``
    (``R_0 = 0``); the derained output is ``y - R_S``.

    Args:
        channels: feature channels (paper: 24).
        stages: number of stages S (paper: 4).
        depth: conv layers per stage d >= 3 (paper: 7).
        unit: recurrent unit, "gru" (paper's best, default), "lstm" or "rnn".
        se_reduction: squeeze-and-excitation reduction ratio (hidden = channels // ratio).
        identity_init: zero the last 1x1 conv, so the untrained network is the identity; off
            by default (the paper's init).

    Shape:
        x: B x 3 x H x W RGB in [0, 1]; output ``(B x 3 x H x W, None)``, not clamped.
    """

    UNITS = ("gru", "lstm", "rnn")

    def __init__(self, channels: int = 24, stages: int = 4, depth: int = 7, unit: str = "gru",
                 se_reduction: int = 6, identity_init: bool = False) -> None:
        super().__init__()
        check_int("channels", channels, minimum=1)
        check_int("stages", stages, minimum=1)
        check_int("depth", depth, minimum=3)
        check_int("se_reduction", se_reduction, minimum=1)
        if unit not in self.UNITS:
            raise ValueError(f"unit must be one of {self.UNITS}, got {unit!r}")
        self.stages = stages
        dilations = [1] + [2 ** i for i in range(depth - 3)]
        self.dilations = tuple(dilations)
        self.recurrent = nn.ModuleList(
            _RecurrentContextLayer(3 if k == 0 else channels, channels, d, unit, se_reduction)
            for k, d in enumerate(dilations))
        self.decoder = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            _SqueezeExcitation(channels, se_reduction),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 3, 1),
        )
        if identity_init:
            _zero_(self.decoder[-1])

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Derained estimate ``x - R_s`` after every stage (RESCAN supervises each stage).

        Args:
            x: B x 3 x H x W RGB in [0, 1].

        Returns:
            ``stages`` tensors of shape B x 3 x H x W; the last is the final output.
        """
        _check_image_batch(x)
        states: list[tuple[torch.Tensor, ...] | None] = [None] * len(self.recurrent)
        rain = torch.zeros_like(x)
        outputs = []
        for _ in range(self.stages):
            feat = x - rain
            for k, layer in enumerate(self.recurrent):
                feat, states[k] = layer(feat, states[k])
            rain = rain + self.decoder(feat)
            outputs.append(x - rain)
        return outputs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """B x 3 x H x W RGB in [0, 1] -> (derained after the last stage, None)."""
        return self.stage_outputs(x)[-1], None


# ---------------------------------------------------------------------------------------------
# PReNet
# ---------------------------------------------------------------------------------------------

class _ConvLSTM(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gates = nn.Conv2d(2 * channels, 4 * channels, 3, padding=1)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        i, f, g, o = self.gates(torch.cat((x, h), dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class _ConvGRU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gates = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1)
        self.candidate = nn.Conv2d(2 * channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        z, r = torch.sigmoid(self.gates(torch.cat((x, h), dim=1))).chunk(2, dim=1)
        n = torch.tanh(self.candidate(torch.cat((x, r * h), dim=1)))
        h = (1 - z) * h + z * n
        return h, c


class _PReNetResBlock(nn.Module):
    """conv-ReLU-conv-ReLU with an identity shortcut, then ReLU (as in PReNet's f_res)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + x)


class _SharedResBlocks(nn.Module):
    """One ResBlock applied ``repeats`` times (PReNet's intra-stage recursion, the "_r" nets)."""

    def __init__(self, channels: int, repeats: int) -> None:
        super().__init__()
        self.repeats = repeats
        self.block = _PReNetResBlock(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.repeats):
            x = self.block(x)
        return x


class PReNet(nn.Module):
    """Progressive recurrent network (Ren et al., CVPR 2019).

    ``stages`` recursive stages with one set of weights. With ``y`` the rain input and
    ``x^0 = y``, stage t computes
    ``x^t = y + f_out(f_res(f_recurrent(f_in(concat(y, x^{t-1})))))``:
    ``f_in`` conv (6 -> C) + ReLU, ``f_recurrent`` a ConvLSTM (state h, c carried across the
    stages; gates ``i, f, g, o`` from one conv on ``concat(x, h)``, ``c = f c + i g``,
    ``h = o tanh(c)``), ``f_res`` 5 ResBlocks (each ``x = relu(x + relu(conv(relu(conv(x)))))``),
    ``f_out`` conv (C -> 3); all kernels 3x3. The residual is taken with respect to the rain
    input ``y``. ``recurrent="none"`` gives PRN (the paper's progressive network without the
    recurrent layer); ``"gru"`` gives PReNet's ConvGRU variant. ``shared_res_blocks=True``
    applies one ResBlock ``num_res_blocks`` times (the paper's intra-stage recursion: PReNet_r,
    PRN_r). The four families of the authors' released weights are the factories
    :func:`prenet6`, :func:`prenet6_r`, :func:`prn6`, :func:`prn6_r` (:data:`PRENET_FAMILIES`).

    Args:
        channels: feature channels C (paper: 32).
        stages: number of stages T (paper: 6).
        num_res_blocks: ResBlocks in ``f_res``, or applications of the shared one (paper: 5).
        recurrent: "lstm" (paper default), "gru" or "none" (PRN).
        shared_res_blocks: one ResBlock applied ``num_res_blocks`` times (the "_r" variants).
        identity_init: zero ``f_out``, so every stage of the untrained network returns the
            input; off by default (the paper's init).

    Shape:
        x: B x 3 x H x W RGB in [0, 1]; output ``(B x 3 x H x W, None)``, not clamped.
    """

    RECURRENT = ("lstm", "gru", "none")

    def __init__(self, channels: int = 32, stages: int = 6, num_res_blocks: int = 5,
                 recurrent: str = "lstm", shared_res_blocks: bool = False,
                 identity_init: bool = False) -> None:
        super().__init__()
        check_int("channels", channels, minimum=1)
        check_int("stages", stages, minimum=1)
        check_int("num_res_blocks", num_res_blocks, minimum=0)
        if recurrent not in self.RECURRENT:
            raise ValueError(f"recurrent must be one of {self.RECURRENT}, got {recurrent!r}")
        if not isinstance(shared_res_blocks, bool):
            raise TypeError(f"shared_res_blocks must be a bool, got "
                            f"{type(shared_res_blocks).__name__}")
        if shared_res_blocks and num_res_blocks < 1:
            raise ValueError("shared_res_blocks needs num_res_blocks >= 1, got 0")
        self.channels = channels
        self.stages = stages
        self.f_in = nn.Sequential(nn.Conv2d(6, channels, 3, padding=1), nn.ReLU())
        self.f_recurrent: nn.Module | None = {
            "lstm": _ConvLSTM, "gru": _ConvGRU, "none": lambda _c: None}[recurrent](channels)
        self.f_res: nn.Module = (
            _SharedResBlocks(channels, num_res_blocks) if shared_res_blocks else
            nn.Sequential(*(_PReNetResBlock(channels) for _ in range(num_res_blocks))))
        self.f_out = nn.Conv2d(channels, 3, 3, padding=1)
        if identity_init:
            _zero_(self.f_out)

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Estimate ``x^t`` after every stage t = 1..T.

        Args:
            x: B x 3 x H x W RGB in [0, 1] (the rain input y).

        Returns:
            ``stages`` tensors of shape B x 3 x H x W; the last is the final output.
        """
        _check_image_batch(x)
        b, _, h, w = x.shape
        hidden = x.new_zeros(b, self.channels, h, w)
        cell = x.new_zeros(b, self.channels, h, w)
        estimate = x
        outputs = []
        for _ in range(self.stages):
            feat = self.f_in(torch.cat((x, estimate), dim=1))
            if self.f_recurrent is not None:
                hidden, cell = self.f_recurrent(feat, hidden, cell)
                feat = hidden
            estimate = x + self.f_out(self.f_res(feat))
            outputs.append(estimate)
        return outputs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """B x 3 x H x W RGB in [0, 1] -> (derained after the last stage, None)."""
        return self.stage_outputs(x)[-1], None


def prenet6(**kwargs: Any) -> PReNet:
    """PReNet6: ConvLSTM, 5 ResBlocks, 6 stages (168,963 parameters at C = 32)."""
    return PReNet(**{"recurrent": "lstm", "shared_res_blocks": False, **kwargs})


def prenet6_r(**kwargs: Any) -> PReNet:
    """PReNet6_r: ConvLSTM, one ResBlock applied 5 times, 6 stages (94,979 parameters)."""
    return PReNet(**{"recurrent": "lstm", "shared_res_blocks": True, **kwargs})


def prn6(**kwargs: Any) -> PReNet:
    """PRN6: no recurrent layer, 5 ResBlocks, 6 stages (95,107 parameters)."""
    return PReNet(**{"recurrent": "none", "shared_res_blocks": False, **kwargs})


def prn6_r(**kwargs: Any) -> PReNet:
    """PRN6_r: no recurrent layer, one ResBlock applied 5 times, 6 stages (21,123 parameters)."""
    return PReNet(**{"recurrent": "none", "shared_res_blocks": True, **kwargs})


#: The four PReNet families of the authors' released weights (their names) -> factory.
PRENET_FAMILIES: dict[str, Callable[..., PReNet]] = {
    "PReNet6": prenet6, "PReNet6_r": prenet6_r, "PRN6": prn6, "PRN6_r": prn6_r}


#: Display name (as in Table 2) -> model class; call with keyword arguments to configure.
BASELINES: dict[str, Callable[..., nn.Module]] = {"DDN": DDN, "RESCAN": RESCAN, "PReNet": PReNet}
