"""Pretrained weights: ``load_pretrained`` for every weight file we know, one checkpoint reader.

`read_checkpoint` is how every part of the package opens a checkpoint file.

The packaged file ``weights/spanet_official.pth`` is the checkpoint the SPANet authors
released (trained on the real SPA-Data set), redistributed under their BSD-style terms
(``weights/LICENSE-SPANet.txt``, :data:`OFFICIAL_LICENSE`). It is a legacy ``torch.save``
pickle: a dict with ``net`` (the state dict), ``clock`` and ``opt``.

Key mapping from the authors' names to :class:`~spanetlib.models.spanet.SPANet`
(:func:`official_key`)::

    conv_in.0.weight                -> conv_in.weight
    res_block{i}.group1.conv{k}.*   -> blocks.{i-1}.conv{k}.*        (i = 1..17)
    SAM1.*                          -> sams.0.*                      (names inside unchanged)
    conv_out.0.weight               -> conv_out.weight

The authors' network reads **BGR** images (OpenCV); ours takes RGB, so the input channels of
``conv_in`` and the output channels of ``conv_out`` are reversed on loading. Their SAM
computes the direction-attention branch but never applies it, so the checkpoint is loaded
into ``SPANet(direction_attention=False)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spanetlib.fileio import InputError
from spanetlib.models.factory import build_model
from spanetlib.models.spanet import SPANet

__all__ = [
    "OFFICIAL_LICENSE",
    "OFFICIAL_WEIGHTS",
    "PRETRAINED_NAMES",
    "SYNTHETIC_WEIGHTS",
    "convert_official_state_dict",
    "load_official_spanet",
    "load_pretrained",
    "official_key",
    "read_checkpoint",
    "resolve_torch_device",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The authors' released checkpoint, shipped as package data.
OFFICIAL_WEIGHTS: Path = WEIGHTS_DIR / "spanet_official.pth"
#: The license under which :data:`OFFICIAL_WEIGHTS` is redistributed (ships beside it).
OFFICIAL_LICENSE: Path = WEIGHTS_DIR / "LICENSE-SPANet.txt"
#: Our own SPANet weights trained on synthetic rain (package data; recipe: ``spanetlib.synthetic``).
SYNTHETIC_WEIGHTS: Path = WEIGHTS_DIR / "spanet_synthetic.pth"
#: Names that :func:`load_pretrained` understands besides paths.
PRETRAINED_NAMES: tuple[str, ...] = ("official", "synthetic")

_RES_BLOCK = re.compile(r"^res_block(\d+)\.group1\.(.+)$")


def official_key(key: str) -> str:
    """Map one key of the authors' state dict to the matching ``SPANet`` key.

    Args:
        key: e.g. ``"res_block4.group1.conv2.weight"``.

    Returns:
        The key in :class:`SPANet`, e.g. ``"blocks.3.conv2.weight"``.

    Raises:
        ValueError: the key is not one of the authors' names.
    """
    if key.startswith("conv_in.0."):
        return "conv_in." + key[len("conv_in.0."):]
    if key.startswith("conv_out.0."):
        return "conv_out." + key[len("conv_out.0."):]
    if key.startswith("SAM1."):
        return "sams.0." + key[len("SAM1."):]
    match = _RES_BLOCK.match(key)
    if match and int(match.group(1)) >= 1:
        return f"blocks.{int(match.group(1)) - 1}.{match.group(2)}"
    raise ValueError(f"expected a key of the authors' SPANet checkpoint, got {key!r}")


def convert_official_state_dict(net: Mapping[str, torch.Tensor], rgb: bool = True
                                ) -> dict[str, torch.Tensor]:
    """Rename the authors' state dict for :class:`SPANet` and, optionally, make it take RGB.

    Args:
        net: the checkpoint's ``net`` state dict (BGR convention).
        rgb: reverse the input channels of ``conv_in`` and the output channels of
            ``conv_out`` so the model takes and returns RGB (False keeps BGR).

    Returns:
        A new state dict for ``SPANet(direction_attention=False)``.
    """
    out = {official_key(k): v.detach().clone() for k, v in net.items()}
    if rgb:
        if "conv_in.weight" in out:
            out["conv_in.weight"] = out["conv_in.weight"].flip(1).contiguous()
        for key in ("conv_out.weight", "conv_out.bias"):
            if key in out:
                out[key] = out[key].flip(0).contiguous()
    return out


def resolve_torch_device(device: str | torch.device) -> torch.device:
    """Parse a device name and check that it is usable here.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` (CUDA when available, else
            the CPU) or a ``torch.device``.

    Returns:
        The ``torch.device``.

    Raises:
        InputError: the name is not a device, or CUDA was asked for but is not available.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise InputError(f"unknown device {device!r}: expected auto, cpu or cuda") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available here; "
                         "use --device cpu (or auto)")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {device!r}: expected auto, cpu or cuda")
    return dev


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def read_checkpoint(path: str | os.PathLike, trusted: bool = False) -> Any:
    """Open a checkpoint file on the CPU: the package's one reader of ``.pt`` / ``.pth`` files.

    Args:
        path: the file.
        trusted: unpickle arbitrary Python objects (only for files from a trusted source);
            by default the file is loaded weights-only (tensors and plain containers).

    Returns:
        What ``torch.load`` returns (for our checkpoints a dict; see `spanetlib.train`).

    Raises:
        InputError: the file is missing, not a file, unreadable, or (untrusted) holds Python
            objects besides tensors and plain containers; the message is one line.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "w.pt"
        >>> torch.save({"step": 3, "model": {"w": torch.ones(2)}}, path)
        >>> read_checkpoint(path)["step"]
        3
        >>> read_checkpoint(path.with_name("missing.pt"))
        Traceback (most recent call last):
        ...
        spanetlib.fileio.InputError: checkpoint not found: ...missing.pt
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise InputError(f"checkpoint is not a file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as err:  # torch raises many types for unreadable files
        if "Weights only load failed" in str(err):
            raise InputError(
                f"checkpoint {path} holds Python objects besides tensors and plain containers;"
                " load it with load_pretrained(path, trusted=True) only if you trust its source"
            ) from err
        raise InputError(f"cannot read checkpoint {path}: {_first_line(err)}") from err


def _describe(model: nn.Module) -> str:
    if not isinstance(model, SPANet):
        return type(model).__name__
    kwargs = model.model_kwargs
    extra = "" if kwargs["sam_mode"] == "shared" else f", sam_mode={kwargs['sam_mode']!r}"
    return f"SPANet(channels={kwargs['channels']}{extra})"


def _load_state(model: nn.Module, state: Any, path: Path | str, what: str) -> None:
    """``load_state_dict(strict=True)``, turning mismatches into a one-line ``InputError``."""
    if not isinstance(state, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"checkpoint {path}: its state dict is not a mapping of tensors")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()]
        detail = "; ".join(lines) or _first_line(err)
        if len(detail) > 300:
            detail = detail[:300] + "..."
        raise InputError(f"checkpoint {path} does not fit {what}: {detail}") from err


def _official_from_dict(ckpt: Mapping[str, Any], path: Path | str, irnn_backend: str) -> SPANet:
    net = ckpt["net"]
    if not isinstance(net, Mapping):
        raise InputError(f"checkpoint {path}: 'net' is not a state dict")
    try:
        state = convert_official_state_dict(net)
    except (ValueError, AttributeError) as err:
        raise InputError(f"checkpoint {path} is not the authors' SPANet: {err}") from err
    model = SPANet(direction_attention=False, irnn_backend=irnn_backend)
    _load_state(model, state, path, _describe(model))
    return model


def _strip_prefixes(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """Drop the ``module.`` (DDP) or ``_orig_mod.`` (torch.compile) prefix shared by all keys."""
    if not isinstance(state, Mapping):
        return state
    for prefix in ("module.", "_orig_mod."):
        if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _training_from_dict(ckpt: Mapping[str, Any], path: Path | str,
                        irnn_backend: str | None) -> nn.Module:
    config = ckpt.get("config")
    if not isinstance(config, Mapping):
        raise InputError(f"checkpoint {path}: 'config' is missing or not a dict")
    name = config.get("model")
    kwargs = dict(config.get("model_kwargs") or {})
    if irnn_backend is not None and str(name).lower() == "spanet":
        kwargs["irnn_backend"] = irnn_backend
    try:
        model = build_model(name, **kwargs)
    except (TypeError, ValueError) as err:
        raise InputError(f"checkpoint {path}: cannot build model {name!r} from its model_kwargs "
                         f"{kwargs}: {err}") from err
    _load_state(model, _strip_prefixes(ckpt["model"]), path, _describe(model))
    return model


def _to_device(model: nn.Module, device: str | torch.device) -> nn.Module:
    return model.to(resolve_torch_device(device)).eval()


def load_official_spanet(path: str | os.PathLike | None = None,
                         device: str | torch.device = "cpu",
                         irnn_backend: str = "auto") -> SPANet:
    """Load the authors' released SPANet checkpoint as an RGB model.

    Args:
        path: a checkpoint in the authors' format (a dict with ``net``); None: the packaged
            :data:`OFFICIAL_WEIGHTS`. Files other than the packaged one are loaded
            weights-only (no arbitrary Python objects).
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or a ``torch.device``.
        irnn_backend: IRNN implementation of the model (see ``SPANet``).

    Returns:
        ``SPANet(direction_attention=False)`` in eval mode on ``device``, taking B x 3 x H x W
        RGB in [0, 1].

    Raises:
        InputError: the file is missing, unreadable, not in the authors' format, or its
            tensors do not fit the model.
    """
    trusted = path is None
    path = OFFICIAL_WEIGHTS if path is None else Path(path)
    ckpt = read_checkpoint(path, trusted=trusted)
    if not isinstance(ckpt, Mapping) or "net" not in ckpt:
        raise InputError(f"checkpoint {path} is not in the authors' format (a dict with 'net')")
    return _to_device(_official_from_dict(ckpt, path, irnn_backend), device)


def load_pretrained(name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
                    irnn_backend: str | None = None, trusted: bool = False) -> nn.Module:
    """Load a derainer by name or from a checkpoint file.

    Args:
        name_or_path: ``"official"`` (the authors' weights, packaged), ``"synthetic"`` (our
            SPANet trained on synthetic rain by ``spanetlib.synthetic``, packaged), or a path
            to either the authors' format (a dict with ``net``) or a ``spanetlib.train``
            checkpoint (a dict with ``model``, the state dict, and ``config`` holding ``model``
            (the name) and ``model_kwargs``).
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or a ``torch.device``.
        irnn_backend: override the IRNN backend stored with the model (None keeps it; the
            authors' format defaults to ``"auto"``).
        trusted: load a user file with full unpickling (only for files from a trusted
            source); by default user files are loaded weights-only.

    Returns:
        The model in eval mode on ``device``; its ``forward`` takes B x 3 x H x W RGB in
        [0, 1] and returns ``(image, attention)``.

    Raises:
        InputError: unknown name, missing or unreadable file, unknown format or model name,
            or tensors that do not fit the model.
    """
    if isinstance(name_or_path, str) and name_or_path == "official":
        return load_official_spanet(None, device, irnn_backend or "auto")
    if isinstance(name_or_path, str) and name_or_path == "synthetic":
        if not SYNTHETIC_WEIGHTS.is_file():
            raise InputError("the 'synthetic' SPANet weights are not shipped yet "
                             f"({SYNTHETIC_WEIGHTS} is missing); use 'official' or a path")
        path, trusted = SYNTHETIC_WEIGHTS, True
    else:
        path = Path(name_or_path)
        if not path.exists() and isinstance(name_or_path, str) and os.sep not in name_or_path \
                and not path.suffix:
            raise InputError(f"unknown weights {name_or_path!r}: expected one of "
                             f"{', '.join(PRETRAINED_NAMES)} or a checkpoint path")
    ckpt = read_checkpoint(path, trusted=trusted)
    if isinstance(ckpt, Mapping) and "net" in ckpt:
        model: nn.Module = _official_from_dict(ckpt, path, irnn_backend or "auto")
    elif isinstance(ckpt, Mapping) and "model" in ckpt and "config" in ckpt:
        model = _training_from_dict(ckpt, path, irnn_backend)
    else:
        raise InputError(f"checkpoint {path} is neither the authors' format (a dict with 'net')"
                         " nor a spanetlib training checkpoint (a dict with 'model' and "
                         "'config')")
    return _to_device(model, device)
