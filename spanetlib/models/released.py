"""Released third-party weights: recognise a state dict by its keys and shapes, build the model.

PReNet (Ren et al., CVPR 2019; code and weights: csdwren/PReNet) publishes its trained
weights in its repository: ``logs/<set>/<family>/net_latest.pth`` for the sets Rain100H,
Rain100L and Rain1400 and the families PReNet6, PReNet6_r, PRN6, PRN6_r, and
``logs/real/PReNet1.pth``, ``PReNet2.pth`` (PReNet6 for real rain). Each is a plain state
dict (no wrapper, no ``module.`` prefix) saved by PyTorch 0.4 from CUDA tensors; ``torch.load(
path, map_location="cpu", weights_only=True)`` reads it. The repository states no license, so
spanetlib never ships or downloads these files; users pass the path.

Recognition uses only the keys and tensor shapes, never the file name. The authors' key names
map onto :class:`~spanetlib.models.baselines.PReNet` as (C = 32, every conv 3x3 with a bias)::

    conv0.0.*                      -> f_in.0.*                      (6 -> C)
    conv_i.0, conv_f.0, conv_g.0, conv_o.0 (2C -> C each)
                                   -> f_recurrent.gates             (concatenated in that order)
    res_conv{k}.0.*, .2.*          -> f_res.{k-1}.body.0.*, .2.*    (k = 1..5)
    res_conv1.0.*, .2.* (the _r families, one block applied 5 times)
                                   -> f_res.block.body.0.*, .2.*
    conv.0.*                       -> f_out.*                       (C -> 3)

The authors' network takes RGB in [0, 1] (they read with OpenCV and swap to RGB), adds its
output to the rain input and does not clamp; our PReNet computes the same, so no channel flip
is needed. What the keys cannot tell: the number of stages (the released families use 6) and
the authors' ablation files under ``logs/Ablation`` (``PReNet6_LSTM``, ``PReNet5_LSTM``,
``PReNet7_LSTM`` have PReNet6's keys but a different ``forward``: no residual to the input,
or another stage count); such a file loads as PReNet6 and gives wrong images. ``PReNet6_GRU``
(``conv_z``, ``conv_b``) and ``PReNet6_x`` (a 3-channel ``conv0``) are refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spanetlib.io.errors import InputError
from spanetlib.models.baselines import PReNet, prenet6, prenet6_r, prn6, prn6_r

__all__ = [
    "RELEASED_FORMATS",
    "ReleasedFormat",
    "convert_released_prenet",
    "describe_released_formats",
    "match_released_format",
    "released_model_from_state_dict",
]

_GATES = ("conv_i", "conv_f", "conv_g", "conv_o")
_RES_KEY = re.compile(r"^res_conv(\d+)\.([02])\.(weight|bias)$")


@dataclass(frozen=True)
class ReleasedFormat:
    """One released weight format: how to recognise it and which model it builds.

    Attributes:
        name: the authors' name of the family (e.g. ``"PReNet6"``).
        source: where the files come from (repository and paths), for messages and docs.
        recurrent: PReNet's ``recurrent`` argument (``"lstm"`` or ``"none"``).
        res_blocks: distinct ResBlocks stored in the file (5, or 1 for the "_r" families).
        build: factory of the matching model (called with ``channels=C``).
    """

    name: str
    source: str
    recurrent: str
    res_blocks: int
    build: Callable[..., PReNet]

    def expected_shapes(self, channels: int = 32) -> dict[str, tuple[int, ...]]:
        """The state dict's keys and shapes for ``channels`` feature channels."""
        c = channels
        shapes: dict[str, tuple[int, ...]] = {"conv0.0.weight": (c, 6, 3, 3), "conv0.0.bias": (c,)}
        for k in range(1, self.res_blocks + 1):
            for layer in (0, 2):
                shapes[f"res_conv{k}.{layer}.weight"] = (c, c, 3, 3)
                shapes[f"res_conv{k}.{layer}.bias"] = (c,)
        if self.recurrent == "lstm":
            for gate in _GATES:
                shapes[f"{gate}.0.weight"] = (c, 2 * c, 3, 3)
                shapes[f"{gate}.0.bias"] = (c,)
        shapes["conv.0.weight"] = (3, c, 3, 3)
        shapes["conv.0.bias"] = (3,)
        return shapes

    def describe(self) -> str:
        """One line: the family, the keys that identify it, where the files come from."""
        blocks = "res_conv1" if self.res_blocks == 1 else f"res_conv1..{self.res_blocks}"
        lstm = ", conv_i/f/g/o" if self.recurrent == "lstm" else ""
        return f"{self.name} (a plain state dict: conv0, {blocks}{lstm}, conv; {self.source})"


_SOURCE = "csdwren/PReNet logs/<set>/{}/net_latest.pth"

#: The released formats :func:`released_model_from_state_dict` recognises, in the order tried.
RELEASED_FORMATS: tuple[ReleasedFormat, ...] = (
    ReleasedFormat("PReNet6", _SOURCE.format("PReNet6") + ", logs/real/PReNet1.pth, PReNet2.pth",
                   "lstm", 5, prenet6),
    ReleasedFormat("PReNet6_r", _SOURCE.format("PReNet6_r"), "lstm", 1, prenet6_r),
    ReleasedFormat("PRN6", _SOURCE.format("PRN6"), "none", 5, prn6),
    ReleasedFormat("PRN6_r", _SOURCE.format("PRN6_r"), "none", 1, prn6_r),
)


def describe_released_formats() -> str:
    """The recognised released formats, ``"; "``-separated, for one-line error messages."""
    return "; ".join(fmt.describe() for fmt in RELEASED_FORMATS)


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def match_released_format(state: Any, source: str | os.PathLike = "state dict"
                          ) -> tuple[ReleasedFormat, int] | None:
    """Which released format ``state`` is, from its keys and tensor shapes.

    Args:
        state: a loaded checkpoint (anything; only a mapping with the exact key set of a
            family can match).
        source: the file it came from, for messages.

    Returns:
        ``(format, channels)`` or None when the keys are those of no released format.

    Raises:
        InputError: the keys are a family's but a value is not a tensor or has the wrong
            shape (the message names the first such key and lists the formats tried).
    """
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        return None
    keys = set(state)
    for fmt in RELEASED_FORMATS:
        if keys != set(fmt.expected_shapes()):
            continue
        first = _shape(state["conv0.0.weight"])
        channels = first[0] if first and len(first) == 4 and first[0] > 0 else 32
        expected = fmt.expected_shapes(channels)
        for key, shape in expected.items():
            got = _shape(state[key])
            if got != shape:
                what = (f"shape {got}" if got is not None
                        else f"a {type(state[key]).__name__}, not a tensor")
                raise InputError(
                    f"checkpoint {source} has the keys of {fmt.name} but {key} is {what}, "
                    f"expected {shape}; released formats tried: {describe_released_formats()}")
        return fmt, channels
    return None


def convert_released_prenet(state: Mapping[str, torch.Tensor], fmt: ReleasedFormat
                            ) -> dict[str, torch.Tensor]:
    """Rename a released PReNet state dict for :class:`PReNet` (see the module's key table).

    Args:
        state: the released state dict (keys of ``fmt``; tensors on any device).
        fmt: its format, from :func:`match_released_format`.

    Returns:
        A new state dict (CPU tensors) for ``fmt.build(channels=C)``.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        value = value.detach().to("cpu")
        if key.startswith("conv0.0."):
            out["f_in.0." + key[len("conv0.0."):]] = value
        elif key.startswith("conv.0."):
            out["f_out." + key[len("conv.0."):]] = value
        elif (match := _RES_KEY.match(key)) is not None:
            block, layer, kind = int(match.group(1)), match.group(2), match.group(3)
            prefix = "f_res.block" if fmt.res_blocks == 1 else f"f_res.{block - 1}"
            out[f"{prefix}.body.{layer}.{kind}"] = value
    if fmt.recurrent == "lstm":
        for kind in ("weight", "bias"):
            out[f"f_recurrent.gates.{kind}"] = torch.cat(
                [state[f"{gate}.0.{kind}"].detach().to("cpu") for gate in _GATES], dim=0)
    return out


def released_model_from_state_dict(state: Any, source: str | os.PathLike = "state dict"
                                   ) -> nn.Module | None:
    """Build the model of a released state dict and load it strictly, or None if not released.

    Args:
        state: what ``torch.load(path, map_location="cpu", weights_only=True)`` returned.
        source: the file it came from, for messages.

    Returns:
        The matching :class:`PReNet` in eval mode on the CPU (input B x 3 x H x W RGB in
        [0, 1], output unclamped), or None when ``state`` has the keys of no released format
        (the caller then tries its other formats and, failing all, lists
        :func:`describe_released_formats`).

    Raises:
        InputError: the keys are a released family's but the tensors do not fit it.
    """
    found = match_released_format(state, source)
    if found is None:
        return None
    fmt, channels = found
    model = fmt.build(channels=channels)
    try:
        model.load_state_dict(convert_released_prenet(state, fmt), strict=True)
    except RuntimeError as err:  # unreachable when the shapes were checked; kept one line
        detail = " ".join(str(err).split())[:300]
        raise InputError(f"checkpoint {source} does not fit {fmt.name}: {detail}") from err
    return model.eval()
