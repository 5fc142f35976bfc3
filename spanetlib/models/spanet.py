"""SPANet, the spatial attentive deraining network (Wang et al., CVPR 2019, Fig. 5).

One configurable class, :class:`SPANet`, covers the paper's network and the model variants of
its ablation (Table 4, :data:`TABLE4_VARIANTS`). The structure follows the authors' code and
released checkpoint (see ``spanetlib.models.pretrained`` for the key mapping)::

    o = relu(conv_in(x))                              # 3x3, 3 -> C
    num_pre_blocks x:    o = relu(RB(o) + o)          # residual blocks (RB)
    for k in 1..num_sabs:                             # spatial attentive blocks (SAB)
        A_k = SAM(o)                                  # spatial attentive module -> B x 1 x H x W
        blocks_per_sab x: o = relu(RB(o) * A_k + o)   # SARB: the residual is weighted by A_k
    num_post_blocks x:   o = relu(RB(o) + o)
    out = conv_out(o)                                 # 3x3, C -> 3; no residual, no clamp

RB body: 1x1 conv -> ReLU -> 3x3 conv (dilation 2) -> ReLU -> 1x1 conv, no biases.
SAM: 3x3 conv -> IRNN (four directions, Eq. 5, ``spanetlib.models.irnn``) -> concat (up,
right, down, left) -> 3x3 conv 4C -> C -> IRNN -> concat -> 3x3 conv 4C -> C -> ReLU ->
1x1 conv C -> 1 -> sigmoid. With ``direction_attention=True`` a small branch on the SAM
input (``attention_layer``: 3x3 conv C -> C/2, ReLU, 3x3 conv C/2 -> C/2, ReLU, 1x1 conv
C/2 -> 4, sigmoid) predicts four maps that weight the four direction outputs of both IRNN
rounds, as the paper describes. The authors' code computes this branch but drops its result,
so their checkpoint is reproduced with ``direction_attention=False`` (the weights stay, so the
checkpoint loads, and receive no gradient).

Parameter counts at ``channels=32`` (``TABLE4_PARAMETER_COUNTS``; a test checks them)::

    ResNet (no SAM):          193,216
    Single SAM:               283,716
    Unshared SAMs:            555,216   (four SAMs of 90,500 each)
    Shared SAMs (SPANet):     283,716   (the authors' checkpoint: 283,716)
    No direction attention:   283,716   (276,704 of them used; the branch's 7,012 are idle)

The training option "no attention loss" of Table 4 is not a model variant: it is the SPANet
model trained with the attention loss weight (Eq. 7) set to 0 (see ``spanetlib.training.train``).

On the CPU, :meth:`SPANet.forward` is fast without any preparation: it converts the input to
channels-last once, so every convolution (oneDNN) and every IRNN (the numba kernel of the
default ``irnn_backend="auto"``, which reads NHWC features and writes the four directions'
concatenation in NHWC) runs on NHWC memory without a layout conversion; the outputs are
returned as contiguous NCHW tensors. Without gradients the residual updates, the direction
weighting and ReLUs work in place, and freed memory is reused during the pass
(``spanetlib.models.memory.reuse_freed_memory``).

Inference in float32 on the CPU (``torch.no_grad()`` or ``torch.inference_mode()``, no autocast)
runs *fused*: each convolution that a ReLU, a sigmoid or a residual add follows is one oneDNN
convolution with that operation as a post-op (``torch.ops.mkldnn._convolution_pointwise`` and
its in-place binary variant, which writes ``relu(conv3(h) + x)`` into the block input's memory),
so those operations cost no pass of their own over a full-size feature map. In a SARB the
attention map multiplies the 1x1 ``conv3``'s input in place instead of its output (the same
product: a per-pixel factor commutes with a 1x1 convolution); oneDNN's multiply post-op with a
map broadcast over the channels exists but runs a slow reference kernel. The path is taken where
the ops exist and compute the separate passes' result on a small probe
(:func:`fused_ops_available`, checked once per process), otherwise the separate passes run;
``SPANet.fuse_inference = False`` turns it off and ``last_forward_fused`` tells which path the
last CPU pass took. Training (autograd) never takes it. Results equal the plain NCHW computation
up to float rounding, gradients included (``tests/test_spanet.py``);
``benchmarks/bench_model.py`` measures the speed. On CUDA the memory format of the input is
kept.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from spanetlib.io.checks import check_int
from spanetlib.models.irnn import BACKENDS, IRNN
from spanetlib.models.memory import reuse_freed_memory

__all__ = [
    "SAM_MODES",
    "TABLE4_PARAMETER_COUNTS",
    "TABLE4_VARIANTS",
    "DirectionAttention",
    "ResidualBlock",
    "SPANet",
    "SpatialAttentiveModule",
    "fused_ops_available",
]

#: How the spatial attentive blocks get their attention maps (see :class:`SPANet`).
SAM_MODES: tuple[str, ...] = ("none", "single", "unshared", "shared")

#: Table 4 ablation: display name -> ``SPANet`` keyword arguments. (The fifth row of the
#: paper's ablation, "no attention loss", is the shared-SAM model trained without Eq. 7.)
TABLE4_VARIANTS: dict[str, dict[str, Any]] = {
    "ResNet (no SAM)": {"sam_mode": "none"},
    "Single SAM": {"sam_mode": "single"},
    "Unshared SAMs": {"sam_mode": "unshared"},
    "Shared SAMs (SPANet)": {"sam_mode": "shared"},
    "No direction attention": {"sam_mode": "shared", "direction_attention": False},
}

#: Parameter counts of each Table 4 variant at the default sizes (all parameters, used or not).
TABLE4_PARAMETER_COUNTS: dict[str, int] = {
    "ResNet (no SAM)": 193_216,
    "Single SAM": 283_716,
    "Unshared SAMs": 555_216,
    "Shared SAMs (SPANet)": 283_716,
    "No direction attention": 283_716,
}


# --------------------------------------------------------------------------------------------
# Fused inference on the CPU: oneDNN convolutions with their element-wise successors applied
# as post-ops (``torch.ops.mkldnn._convolution_pointwise``), so a ReLU, a sigmoid or a
# residual add costs no pass of its own over a full-size feature map.
# --------------------------------------------------------------------------------------------


def _pointwise_op(name: str) -> Any:
    """``torch.ops.mkldnn.<name>``, or None where this torch build lacks it."""
    try:
        return getattr(torch.ops.mkldnn, name)
    except (AttributeError, RuntimeError):
        return None


def _probe_fused_ops() -> bool:
    """Whether the fused convolutions run here and compute what the separate passes compute.

    A tiny convolution with each post-op the fused path uses (ReLU, sigmoid, the in-place
    residual add + ReLU), each compared to the plain computation; any error means no.
    """
    unary = _pointwise_op("_convolution_pointwise")
    inplace = _pointwise_op("_convolution_pointwise_")
    if unary is None or inplace is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        cl = torch.channels_last
        x = torch.rand(1, 4, 5, 6, generator=gen).contiguous(memory_format=cl)
        w = torch.randn(4, 4, 3, 3, generator=gen)
        bias = torch.randn(4, generator=gen)
        other = torch.rand(1, 4, 5, 6, generator=gen).contiguous(memory_format=cl)
        with torch.no_grad():
            conv = F.conv2d(x, w, bias, padding=2, dilation=2)
            spec = ([2, 2], [1, 1], [2, 2], 1)
            got = [unary(x, w, bias, *spec, "relu", [None], None),
                   unary(x, w, bias, *spec, "sigmoid", [None], None),
                   inplace.binary(other.clone(), x, w, bias, *spec, "add", None, "relu",
                                  [None], None)]
            want = [F.relu(conv), torch.sigmoid(conv), F.relu(conv + other)]
        # float32 sums of 37 terms of magnitude below ~4: rounding far below 1e-4; a wrong
        # post-op is off by O(1)
        return all(g.shape == v.shape and bool(torch.allclose(g, v, rtol=1e-4, atol=1e-4))
                   for g, v in zip(got, want, strict=True))
    except (RuntimeError, TypeError, ValueError, NotImplementedError):
        return False


_FUSED_OPS_OK: bool | None = None


def fused_ops_available() -> bool:
    """Whether this torch build has oneDNN's fused convolutions (checked once, by running them).

    The fused inference path of :class:`SPANet` needs ``torch.ops.mkldnn._convolution_pointwise``
    (ReLU and sigmoid post-ops) and ``_convolution_pointwise_.binary`` (add, then ReLU, in
    place); where they are missing or fail, the model runs its separate passes.
    """
    global _FUSED_OPS_OK
    if _FUSED_OPS_OK is None:
        _FUSED_OPS_OK = _probe_fused_ops()
    return _FUSED_OPS_OK


def _conv_args(conv: nn.Conv2d) -> tuple[Any, ...]:
    """Weight, bias, padding, stride, dilation and groups of ``conv`` for the fused ops."""
    return (conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation),
            conv.groups)


def _conv_unary(conv: nn.Conv2d, x: torch.Tensor, attr: str) -> torch.Tensor:
    """``attr(conv(x))`` in one oneDNN convolution; attr is "relu" or "sigmoid"."""
    return torch.ops.mkldnn._convolution_pointwise(x, *_conv_args(conv), attr, [None], None)


def _conv_add_relu_(conv: nn.Conv2d, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``other = relu(conv(x) + other)`` in one oneDNN convolution, written into ``other``."""
    return torch.ops.mkldnn._convolution_pointwise_.binary(
        other, x, *_conv_args(conv), "add", None, "relu", [None], None)


class ResidualBlock(nn.Module):
    """Residual block (RB) of SPANet; with an attention map it is a SARB.

    Body: 1x1 conv -> ReLU -> 3x3 conv (dilation 2, padding 2) -> ReLU -> 1x1 conv, no
    biases, no activation at its end. Output: ``relu(body(x) * attention + x)``, or
    ``relu(body(x) + x)`` without an attention map.

    Args:
        channels: number of feature channels C.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=2, dilation=2, bias=False)
        self.conv3 = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor, attention: torch.Tensor | None = None, *,
                fused: bool = False) -> torch.Tensor:
        """Apply the block.

        Args:
            x: B x C x H x W features.
            attention: B x 1 x H x W map in [0, 1] weighting the residual, or None.
            fused: inference only (float32, CPU, see :class:`SPANet`): three oneDNN
                convolutions with the ReLUs and the residual add as post-ops (the attention
                map multiplies conv3's input in place), the result written into ``x``'s
                memory (which must be the caller's to overwrite and not needed afterwards).

        Returns:
            B x C x H x W features (non-negative).
        """
        if fused:
            hidden = _conv_unary(self.conv2, _conv_unary(self.conv1, x, "relu"), "relu")
            if attention is not None:
                # a per-pixel factor commutes with the 1x1 conv3: conv3(h) * A == conv3(h * A)
                # up to rounding. (oneDNN's multiply post-op with a map broadcast over the
                # channels exists but runs a slow reference kernel.)
                hidden.mul_(attention)
            return _conv_add_relu_(self.conv3, hidden, x)
        residual = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x), inplace=True)),
                                     inplace=True))
        if not torch.is_grad_enabled():  # inference: update in place (fewer large allocations)
            if attention is not None:
                residual.mul_(attention)
            return residual.add_(x).relu_()
        if attention is not None:
            residual = residual * attention
        return F.relu(residual + x)


class DirectionAttention(nn.Module):
    """The SAM's direction-attention branch: four maps in [0, 1], one per IRNN direction.

    3x3 conv C -> C/2 (bias) -> ReLU -> 3x3 conv C/2 -> C/2 (bias) -> ReLU -> 1x1 conv
    C/2 -> 4 (bias) -> sigmoid. Channel k weights direction k of (up, right, down, left).

    Args:
        channels: number of input channels C (at least 2).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = channels // 2
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1, bias=True)
        self.conv3 = nn.Conv2d(hidden, 4, 1, bias=True)

    def forward(self, x: torch.Tensor, *, fused: bool = False) -> torch.Tensor:
        """B x C x H x W features -> B x 4 x H x W weights in [0, 1] (up, right, down, left).

        ``fused``: inference only, the activations as oneDNN post-ops (see :class:`SPANet`).
        """
        if fused:
            out = _conv_unary(self.conv2, _conv_unary(self.conv1, x, "relu"), "relu")
            return _conv_unary(self.conv3, out, "sigmoid")
        out = F.relu(self.conv2(F.relu(self.conv1(x))))
        return torch.sigmoid(self.conv3(out))


class SpatialAttentiveModule(nn.Module):
    """Spatial attentive module (SAM, paper Fig. 5): two IRNN rounds -> attention map.

    Args:
        channels: number of feature channels C (at least 2).
        direction_attention: weight the four IRNN direction outputs by the
            ``attention_layer`` maps (the paper); False: the branch has no effect (the
            authors' code and checkpoint) and is not computed.
        irnn_backend: IRNN implementation, one of ``irnn.BACKENDS``.
    """

    def __init__(self, channels: int, direction_attention: bool = True,
                 irnn_backend: str = "auto") -> None:
        super().__init__()
        self.direction_attention = direction_attention
        self.conv_in = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.irnn1 = IRNN(channels, backend=irnn_backend)
        self.conv2 = nn.Conv2d(4 * channels, channels, 3, padding=1, bias=False)
        self.irnn2 = IRNN(channels, backend=irnn_backend)
        self.conv3 = nn.Conv2d(4 * channels, channels, 3, padding=1, bias=False)
        self.conv_out = nn.Conv2d(channels, 1, 1, bias=False)
        self.attention_layer = DirectionAttention(channels)

    def _weighted(self, directions: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """Weight direction k of the B x 4C x H x W IRNN output by map k of ``weights``."""
        if weights is None:
            return directions
        if directions.is_contiguous(memory_format=torch.channels_last):
            # the same products on the NHWC memory, so the result stays channels-last
            nhwc = directions.permute(0, 2, 3, 1).unflatten(3, (4, -1))
            maps = weights.permute(0, 2, 3, 1).unsqueeze(4)
            # inference: the IRNN output is ours, scale it in place
            scaled = nhwc * maps if torch.is_grad_enabled() else nhwc.mul_(maps)
            return scaled.flatten(3, 4).permute(0, 3, 1, 2)
        return (directions.unflatten(1, (4, -1)) * weights.unsqueeze(2)).flatten(1, 2)

    def forward(self, x: torch.Tensor, *, fused: bool = False) -> torch.Tensor:
        """Compute the attention map.

        Args:
            x: B x C x H x W features.
            fused: inference only: the final ReLU and sigmoid as oneDNN post-ops of their
                convolutions (see :class:`SPANet`).

        Returns:
            B x 1 x H x W attention map in [0, 1].
        """
        weights = None
        if self.direction_attention:  # (the keyword only when set: a replaced forward works)
            weights = self.attention_layer(x, fused=True) if fused else self.attention_layer(x)
        out = self.conv2(self._weighted(self.irnn1.forward_concat(self.conv_in(x)), weights))
        if fused:
            out = _conv_unary(self.conv3, self._weighted(self.irnn2.forward_concat(out), weights),
                              "relu")
            return _conv_unary(self.conv_out, out, "sigmoid")
        out = self.conv3(self._weighted(self.irnn2.forward_concat(out), weights))
        return torch.sigmoid(self.conv_out(F.relu(out, inplace=not torch.is_grad_enabled())))


class SPANet(nn.Module):
    """SPANet (paper Fig. 5) and its Table 4 variants.

    Args:
        channels: feature channels C (32 in the paper; at least 2).
        sam_mode: where the attention maps come from:
            ``"shared"`` (the paper/authors: one SAM called at every SAB on the current
            features), ``"unshared"`` (one SAM with its own weights per SAB), ``"single"``
            (one SAM computed once, before the first SAB; its map is reused by all SABs),
            ``"none"`` (a plain ResNet: the SARBs become RBs, no SAM at all).
        direction_attention: apply the SAM's direction-attention branch (the paper). False
            reproduces the authors' code, where the branch has no effect.
        irnn_backend: IRNN implementation, one of ``irnn.BACKENDS`` (change it later with
            :meth:`set_irnn_backend`).
        num_pre_blocks: RBs before the first SAB (3).
        blocks_per_sab: SARBs in each SAB (3).
        num_post_blocks: RBs after the last SAB (2).
        num_sabs: number of SABs (4).

    Shape:
        - Input: B x 3 x H x W, RGB in [0, 1], any H and W.
        - Output: ``(derained, attention)``: B x 3 x H x W (not clamped) and the first SAM's
          map A_1, B x 1 x H x W in [0, 1] (``None`` when ``sam_mode="none"``).

    Parameters are named so that the authors' checkpoint maps onto them key by key:
    ``conv_in``, ``blocks.{i}.conv{1,2,3}`` (all RBs/SARBs in order), ``sams.{k}.*``
    (one SAM unless ``sam_mode="unshared"``, none for ``"none"``), ``conv_out``.

    Example:
        >>> model = SPANet(channels=8).eval()
        >>> image, attention = model(torch.rand(1, 3, 17, 23))
        >>> tuple(image.shape), tuple(attention.shape)
        ((1, 3, 17, 23), (1, 1, 17, 23))
    """

    #: Run inference passes on the CPU fused (see the class docstring); False: always the
    #: separate passes (for comparisons).
    fuse_inference: bool = True

    #: Whether the last CPU forward pass took the fused path (set by :meth:`forward`).
    last_forward_fused: bool = False

    def __init__(self, channels: int = 32, sam_mode: str = "shared",
                 direction_attention: bool = True, irnn_backend: str = "auto",
                 num_pre_blocks: int = 3, blocks_per_sab: int = 3, num_post_blocks: int = 2,
                 num_sabs: int = 4) -> None:
        super().__init__()
        if sam_mode not in SAM_MODES:
            raise ValueError(f"sam_mode must be one of {SAM_MODES}, got {sam_mode!r}")
        if irnn_backend not in BACKENDS:
            raise ValueError(f"irnn_backend must be one of {BACKENDS}, got {irnn_backend!r}")
        if not isinstance(direction_attention, bool):
            raise TypeError("direction_attention must be a bool, got "
                            f"{type(direction_attention).__name__}")
        check_int("channels", channels, minimum=2)
        check_int("num_pre_blocks", num_pre_blocks, minimum=0)
        check_int("blocks_per_sab", blocks_per_sab, minimum=1)
        check_int("num_post_blocks", num_post_blocks, minimum=0)
        check_int("num_sabs", num_sabs, minimum=1)
        self.model_kwargs: dict[str, Any] = {
            "channels": channels, "sam_mode": sam_mode,
            "direction_attention": direction_attention, "irnn_backend": irnn_backend,
            "num_pre_blocks": num_pre_blocks, "blocks_per_sab": blocks_per_sab,
            "num_post_blocks": num_post_blocks, "num_sabs": num_sabs,
        }
        self.channels = channels
        self.sam_mode = sam_mode
        self.direction_attention = direction_attention
        self.num_pre_blocks = num_pre_blocks
        self.blocks_per_sab = blocks_per_sab
        self.num_post_blocks = num_post_blocks
        self.num_sabs = num_sabs

        self.conv_in = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        n_blocks = num_pre_blocks + num_sabs * blocks_per_sab + num_post_blocks
        self.blocks = nn.ModuleList(ResidualBlock(channels) for _ in range(n_blocks))
        n_sams = {"none": 0, "single": 1, "shared": 1, "unshared": num_sabs}[sam_mode]
        self.sams = nn.ModuleList(
            SpatialAttentiveModule(channels, direction_attention, irnn_backend)
            for _ in range(n_sams))
        self.conv_out = nn.Conv2d(channels, 3, 3, padding=1, bias=False)

    @property
    def irnn_backend(self) -> str:
        """The IRNN backend of the SAMs (the constructor's value unless changed)."""
        return self.model_kwargs["irnn_backend"]

    def set_irnn_backend(self, backend: str) -> SPANet:
        """Switch every IRNN of the model to ``backend`` (one of ``irnn.BACKENDS``).

        The weights are unchanged; all backends compute the same recurrence.

        Returns:
            The model itself.
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        for module in self.modules():
            if isinstance(module, IRNN):
                module.backend = backend
        self.model_kwargs["irnn_backend"] = backend
        return self

    def _attention(self, k: int, features: torch.Tensor, first: torch.Tensor | None,
                   fused: bool = False) -> torch.Tensor | None:
        """Attention map A_k for SAB k (0-based) from the current features."""
        if self.sam_mode == "none":
            return None
        if self.sam_mode == "single":
            return self.sams[0](features, fused=fused) if k == 0 else first
        if self.sam_mode == "shared":
            return self.sams[0](features, fused=fused)
        return self.sams[k](features, fused=fused)  # "unshared"

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Derain a batch.

        Args:
            x: B x 3 x H x W, RGB in [0, 1].

        Returns:
            ``(derained, attention)``: B x 3 x H x W (unclamped) and A_1, B x 1 x H x W in
            [0, 1], or ``None`` when ``sam_mode="none"``; contiguous (NCHW) on the CPU.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a B x 3 x H x W tensor, got shape {tuple(x.shape)}")
        if x.device.type != "cpu":
            self.last_forward_fused = False
            return self._features_to_outputs(x)
        fused = self._can_fuse(x)
        self.last_forward_fused = fused
        with reuse_freed_memory():
            image, first = self._features_to_outputs(
                x.contiguous(memory_format=torch.channels_last), fused=fused)
            return image.contiguous(), first if first is None else first.contiguous()

    def _can_fuse(self, x: torch.Tensor) -> bool:
        """Whether this CPU pass may run fused: inference, float32, no autocast, ops present."""
        return (self.fuse_inference and not torch.is_grad_enabled()
                and x.dtype == torch.float32 and self.conv_in.weight.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu") and fused_ops_available())

    def _features_to_outputs(self, x: torch.Tensor, fused: bool = False
                             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network of :meth:`forward`, in the memory format of ``x``.

        ``fused``: the oneDNN post-op path (channels-last float32 CPU input, no gradients).
        """
        out = _conv_unary(self.conv_in, x, "relu") if fused else F.relu(self.conv_in(x))
        blocks = iter(self.blocks)
        for _ in range(self.num_pre_blocks):
            out = next(blocks)(out, fused=fused)
        first = None
        for k in range(self.num_sabs):
            attention = self._attention(k, out, first, fused)
            if k == 0:
                first = attention
            for _ in range(self.blocks_per_sab):
                out = next(blocks)(out, attention, fused=fused)
        for _ in range(self.num_post_blocks):
            out = next(blocks)(out, fused=fused)
        return self.conv_out(out), first

    def extra_repr(self) -> str:
        """The constructor arguments, shown by ``print(model)``."""
        return ", ".join(f"{k}={v!r}" for k, v in self.model_kwargs.items())
