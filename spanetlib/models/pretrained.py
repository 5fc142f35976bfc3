"""Pretrained weights: ``load_pretrained`` for every weight file we know, one checkpoint reader.

`read_checkpoint` is how every part of the package opens a checkpoint file. `load_pretrained`
tells a file's format from its content (never its name), in this order (`checkpoint_format`):

1. the authors' SPANet checkpoint: a dict with ``net`` (below);
2. a spanetlib training checkpoint: a dict with ``model`` (the state dict) and ``config``;
3. released third-party weights, recognised by their keys and shapes
   (`spanetlib.models.released`: PReNet's four families from csdwren/PReNet).

A file that is none of these is refused with one line listing every format tried. User files
are always read weights-only (no arbitrary Python objects) unless ``trusted=True``.

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
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spanetlib.io.errors import InputError
from spanetlib.models.device import resolve_torch_device
from spanetlib.models.factory import build_model
from spanetlib.models.released import (
    describe_released_formats,
    match_released_format,
    released_model_from_state_dict,
)
from spanetlib.models.spanet import SPANet

__all__ = [
    "OFFICIAL_FORMAT",
    "OFFICIAL_LICENSE",
    "OFFICIAL_WEIGHTS",
    "PRENET_SETS",
    "PRETRAINED_NAMES",
    "SYNTHETIC_WEIGHTS",
    "TRAINING_FORMAT",
    "WeightsInfo",
    "checkpoint_format",
    "convert_official_state_dict",
    "describe_weights",
    "known_formats",
    "load_official_spanet",
    "load_pretrained",
    "official_key",
    "read_checkpoint",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The authors' released checkpoint, shipped as package data.
OFFICIAL_WEIGHTS: Path = WEIGHTS_DIR / "spanet_official.pth"
#: The license under which :data:`OFFICIAL_WEIGHTS` is redistributed (ships beside it).
OFFICIAL_LICENSE: Path = WEIGHTS_DIR / "LICENSE-SPANet.txt"
#: Our own SPANet weights trained on synthetic rain (package data; recipe:
# ``spanetlib.paper.shipped_weights``).
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


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:300] + ("..." if len(text) > 300 else "")


# What `torch.save` files start with: a zip archive (torch >= 1.6), or the legacy format, a
# sequence of pickles (protocol 2 by default) whose first is this magic number.
_ZIP_HEADER = b"PK"
_PICKLE_HEADER = b"\x80"
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+) was not an allowed global")
_TRUNCATED = "truncated"


def _describe_start(head: bytes) -> str:
    """How a file that is no checkpoint starts, for the message: text or hex bytes."""
    first = head.split(b"\n", 1)[0].strip()[:24]
    try:
        text = first.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    if not text or not text.isprintable():
        return f"it starts with bytes 0x{head[:8].hex()}"
    hint = (" (a web page: download the file itself, not the page that links to it)"
            if text.startswith("<") else "")
    return f"it starts with {text!r}{hint}"


def _header_problem(head: bytes, size: int) -> str | None:
    """What is wrong with a file from its size and first bytes alone (None: nothing seen)."""
    if size == 0:
        return "empty file (0 bytes)"
    if head.startswith(_ZIP_HEADER):
        return None
    if head.startswith(b"version https://git-lfs"):
        return ("a Git LFS pointer, not the file itself: run 'git lfs pull' in the repository "
                "it came from")
    if not head.startswith(_PICKLE_HEADER):
        return f"not a PyTorch checkpoint (no zip or pickle header; {_describe_start(head)})"
    if _LEGACY_MAGIC not in head[:32]:
        return ("a Python pickle, not a PyTorch checkpoint (torch.save writes a zip archive, "
                "or a legacy file that starts with its magic number)")
    return None


def _unsafe_globals(path: Path, err: BaseException) -> list[str]:
    """The classes and functions that kept a file from loading weights-only (may be empty)."""
    names = _UNSAFE_GLOBAL.findall(str(err))
    lister = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)  # >= 2.5
    if lister is not None and zipfile.is_zipfile(path):
        try:
            names = [*lister(path), *names]
        except Exception:  # noqa: BLE001 - the name in torch's own error is enough
            pass
    return sorted(set(names))


def _load_problem(path: Path, head: bytes, err: BaseException) -> str:
    """What is wrong with a file that has a checkpoint's header but did not load."""
    text = str(err)
    if head.startswith(_ZIP_HEADER):
        if not zipfile.is_zipfile(path):
            return (f"{_TRUNCATED} (the zip archive's directory at its end is missing: an "
                    "interrupted download or copy?)")
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                return "a zip archive but not a PyTorch checkpoint (no data.pkl in it)"
    elif isinstance(err, EOFError) or "EOF" in text or "truncated" in text:
        return f"{_TRUNCATED} (it ends before its data does: an interrupted download or copy?)"
    return _first_line(err)


def read_checkpoint(path: str | os.PathLike, trusted: bool = False) -> Any:
    """Open a checkpoint file on the CPU: the package's one reader of ``.pt`` / ``.pth`` files.

    Args:
        path: the file.
        trusted: unpickle arbitrary Python objects (only for files from a trusted source);
            by default the file is loaded weights-only (tensors and plain containers).

    Returns:
        What ``torch.load`` returns (for our checkpoints a dict; see `spanetlib.training.train`).

    Raises:
        InputError: one line saying what is wrong: the file is missing or not a file; empty;
            not a PyTorch checkpoint (no zip or pickle header: text, a web page, a Git LFS
            pointer, a plain pickle); truncated; or (untrusted) it holds Python objects
            besides tensors and plain containers (their class names are listed).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "w.pt"
        >>> torch.save({"step": 3, "model": {"w": torch.ones(2)}}, path)
        >>> read_checkpoint(path)["step"]
        3
        >>> read_checkpoint(path.with_name("missing.pt"))
        Traceback (most recent call last):
        ...
        spanetlib.io.errors.InputError: checkpoint not found: ...missing.pt
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise InputError(f"checkpoint is not a file: {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
        size = path.stat().st_size
    except OSError as err:
        raise InputError(f"cannot read checkpoint {path}: {_first_line(err)}") from err
    problem = _header_problem(head, size)
    if problem is not None:
        raise InputError(f"cannot read checkpoint {path}: {problem}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as err:  # torch raises many types for unreadable files
        problem = _load_problem(path, head, err)
        unsafe = (_unsafe_globals(path, err)
                  if "Weights only load failed" in str(err) and not problem.startswith(_TRUNCATED)
                  else [])
        if unsafe:
            raise InputError(
                f"checkpoint {path} holds Python objects besides tensors and plain containers: "
                f"{', '.join(unsafe)}; load it with load_pretrained(path, trusted=True) only if "
                "you trust its source") from err
        raise InputError(f"cannot read checkpoint {path}: {problem}") from err


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


#: Format names returned by `checkpoint_format` besides the released families' names.
OFFICIAL_FORMAT = "SPANet (authors' checkpoint)"
TRAINING_FORMAT = "spanetlib training checkpoint"


def known_formats() -> str:
    """Every weight-file format `load_pretrained` reads, ``"; "``-separated (for messages)."""
    return (f"the authors' SPANet (a dict with 'net'); a {TRAINING_FORMAT} (a dict with 'model' "
            f"and 'config'); released weights: {describe_released_formats()}")


def _what_it_holds(ckpt: Any) -> str:
    if isinstance(ckpt, Mapping):
        keys = [str(k) for k in list(ckpt)[:6]]
        more = f" and {len(ckpt) - 6} more" if len(ckpt) > 6 else ""
        return f"a dict with keys {', '.join(keys) or '(none)'}{more}"
    return f"a {type(ckpt).__name__}"


def _resolve_weights(name_or_path: str | os.PathLike, trusted: bool) -> tuple[Path, bool]:
    """The file behind a weights name or path, and whether to unpickle it fully."""
    if isinstance(name_or_path, str) and name_or_path == "official":
        return OFFICIAL_WEIGHTS, True
    if isinstance(name_or_path, str) and name_or_path == "synthetic":
        if not SYNTHETIC_WEIGHTS.is_file():
            raise InputError(f"the 'synthetic' SPANet weights are missing ({SYNTHETIC_WEIGHTS}: "
                             "a damaged install?); use 'official' or a path")
        return SYNTHETIC_WEIGHTS, True
    path = Path(name_or_path)
    if not path.exists() and isinstance(name_or_path, str) and os.sep not in name_or_path \
            and not path.suffix:
        raise InputError(f"unknown weights {name_or_path!r}: expected one of "
                         f"{', '.join(PRETRAINED_NAMES)} or a checkpoint path")
    return path, trusted


def checkpoint_format(ckpt: Any, path: str | os.PathLike = "checkpoint") -> str:
    """Which weight format a loaded checkpoint is, from its content: the one format dispatch.

    Args:
        ckpt: what `read_checkpoint` returned.
        path: the file, for messages.

    Returns:
        ``OFFICIAL_FORMAT``, ``TRAINING_FORMAT`` or the name of a released family
        (``"PReNet6"``, ``"PReNet6_r"``, ``"PRN6"``, ``"PRN6_r"``).

    Raises:
        InputError: none of the formats (one line listing every format tried, `known_formats`),
            or a released family's keys with tensors of the wrong shapes.
    """
    if isinstance(ckpt, Mapping) and "net" in ckpt:
        return OFFICIAL_FORMAT
    if isinstance(ckpt, Mapping) and "model" in ckpt and "config" in ckpt:
        return TRAINING_FORMAT
    found = match_released_format(_strip_prefixes(ckpt), path)
    if found is None:
        raise InputError(f"checkpoint {path} is in no known format (it holds "
                         f"{_what_it_holds(ckpt)}); formats tried: {known_formats()}")
    return found[0].name


def load_pretrained(name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
                    irnn_backend: str | None = None, trusted: bool = False) -> nn.Module:
    """Load a derainer by name or from a checkpoint file.

    Args:
        name_or_path: ``"official"`` (the authors' weights, packaged), ``"synthetic"`` (our
            SPANet trained on synthetic rain by ``spanetlib.paper.shipped_weights``, packaged), or a
            path to a file in one of the formats of `checkpoint_format`: the authors' format (a dict
            with ``net``), a ``spanetlib.training.train`` checkpoint (a dict with ``model``, the
            state dict, and ``config`` holding ``model`` (the name) and ``model_kwargs``), or
            released weights (PReNet's ``net_latest.pth`` of any family, loaded as the matching
            `spanetlib.models.baselines.PReNet`).
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or a ``torch.device``.
        irnn_backend: override the IRNN backend stored with a SPANet (None keeps it; the
            authors' format defaults to ``"auto"``; ignored for other models).
        trusted: load a user file with full unpickling (only for files from a trusted
            source); by default user files are loaded weights-only.

    Returns:
        The model in eval mode on ``device``; its ``forward`` takes B x 3 x H x W RGB in
        [0, 1] and returns ``(image, attention)`` (attention None for models without one).

    Raises:
        InputError: unknown name, missing or unreadable file, unknown format (the message
            lists every format tried) or model name, or tensors that do not fit the model.
    """
    if isinstance(name_or_path, str) and name_or_path == "official":
        return load_official_spanet(None, device, irnn_backend or "auto")
    path, trusted = _resolve_weights(name_or_path, trusted)
    ckpt = read_checkpoint(path, trusted=trusted)
    kind = checkpoint_format(ckpt, path)
    if kind == OFFICIAL_FORMAT:
        model = _official_from_dict(ckpt, path, irnn_backend or "auto")
    elif kind == TRAINING_FORMAT:
        model = _training_from_dict(ckpt, path, irnn_backend)
    else:  # a released family: `checkpoint_format` matched its keys and shapes
        model = released_model_from_state_dict(_strip_prefixes(ckpt), path)
    return _to_device(model, device)


@dataclass(frozen=True)
class WeightsInfo:
    """What a weights name or file is, for tables and reports (`describe_weights`).

    Attributes:
        weights: the name or path as given.
        format: its format (`checkpoint_format`).
        trained_on: what the weights were trained on, as far as the file or its place says.
    """

    weights: str
    format: str
    trained_on: str


#: The released PReNet weights' training sets, by the folder they sit in (csdwren/PReNet
#: ``logs/<set>/<family>/net_latest.pth``; ``logs/real/PReNet1.pth``, ``PReNet2.pth``).
PRENET_SETS: dict[str, str] = {
    "Rain100H": "Rain100H (synthetic heavy rain)",
    "Rain100L": "Rain100L (synthetic light rain)",
    "Rain1400": "Rain1400 (DDN's synthetic rain)",
    "real": "real rain (PReNet's real-rain weights)",
}


def describe_weights(name_or_path: str | os.PathLike, trusted: bool = False) -> WeightsInfo:
    """Name the format of a weights name or file and what it was trained on.

    ``"official"``: the authors' SPANet, trained on the real SPA-Data; ``"synthetic"``: our
    SPANet, trained on our synthetic rain only (``spanetlib/models/weights/README.txt``); a
    spanetlib training checkpoint: the pair list in its config; released PReNet weights: the
    set named by the file's folder or the one above it, as in the authors' repository
    (`PRENET_SETS`), else "unknown".

    Raises:
        InputError: as `load_pretrained` (unknown name, unreadable file, unknown format).
    """
    spec = os.fspath(name_or_path)
    if spec == "official":
        return WeightsInfo(spec, OFFICIAL_FORMAT, "real rain: SPA-Data (the authors' release)")
    path, trusted = _resolve_weights(name_or_path, trusted)
    ckpt = read_checkpoint(path, trusted=trusted)
    kind = checkpoint_format(ckpt, path)
    if kind == OFFICIAL_FORMAT:
        trained_on = ("not recorded in the file (the authors' released SPANet checkpoint was "
                      "trained on real SPA-Data)")
    elif kind == TRAINING_FORMAT:
        config = ckpt["config"] if isinstance(ckpt["config"], Mapping) else {}
        kind = f"{kind} ({config.get('model', '?')})"
        train_list = config.get("train_list")
        trained_on = (f"the pairs of {train_list}" if train_list else "not recorded in the file")
        if spec == "synthetic":
            trained_on = "our synthetic rain only (spanetlib.paper.shipped_weights recipe)"
    else:
        folders = (path.resolve().parent.name, path.resolve().parent.parent.name)
        sets = [PRENET_SETS[name] for name in folders if name in PRENET_SETS]
        trained_on = (f"{sets[0]}, by PReNet's authors" if sets else
                      "unknown (a released PReNet file outside csdwren/PReNet's logs/<set>/)")
        kind = f"{kind} (PReNet's release)"
    return WeightsInfo(spec, kind, trained_on)
