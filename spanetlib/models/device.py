"""Where and in which precision models run: devices and fast bf16 on the CPU.

- :func:`resolve_torch_device` parses ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` and refuses a
  device that is not usable here.
- :func:`cpu_has_fast_bf16` says whether this CPU computes bfloat16 convolutions faster than
  float32 ones: it has AMX-BF16 tiles (Intel Sapphire Rapids and later) or the AVX512-BF16
  dot-product instructions (Intel Cooper Lake, AMD Zen 4 and later). Decided by capability,
  read from ``torch.cpu.get_capabilities()`` (or torch's older private checks, or the flags
  of /proc/cpuinfo). Elsewhere oneDNN emulates bf16 with float32 arithmetic, which is slower
  than plain float32 and less accurate, so there is no reason to use it.
- :func:`resolve_precision` turns a user's ``"fp32" | "bf16" | "auto"`` into a dtype, and
  :func:`autocast` gives the matching context: bf16 means ``torch.autocast`` with bfloat16,
  so convolutions (and matrix products) run in bf16 while the weights stay float32 and the
  IRNN recurrence of SPANet is still computed in float32 (``spanetlib.models.irnn``).
  ``"bf16"`` is refused with a one-line ``ValueError`` where it would not be faster (a CPU
  without fast bf16, a GPU without bf16); ``"auto"`` picks bf16 exactly where it is fast.
  The default everywhere is ``"fp32"``: bf16 changes the output (a few grey levels at most
  on the authors' checkpoint, and the attention map more); ``tests/test_inference.py``
  bounds the change.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from contextlib import AbstractContextManager

import torch

from spanetlib.io.errors import InputError

__all__ = [
    "PRECISIONS",
    "autocast",
    "bf16_training_faults",
    "cpu_bf16_features",
    "cpu_has_fast_bf16",
    "resolve_precision",
    "resolve_torch_device",
]

#: Precisions understood by :func:`resolve_precision` (and ``spanet derain --precision``).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")

#: CPU features that make bf16 convolutions faster than float32 ones (names as in
#: ``torch.cpu.get_capabilities()`` and /proc/cpuinfo).
FAST_BF16_FEATURES: tuple[str, ...] = ("amx_bf16", "avx512_bf16")


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


def _torch_cpu_capabilities() -> dict[str, bool] | None:
    """The fast-bf16 features as torch's CPU detection sees them; None if it cannot say."""
    get = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.8
    if get is not None:
        try:
            caps = get()
        except RuntimeError:
            caps = None
        if caps is not None:
            return {name: bool(caps.get(name, False)) for name in FAST_BF16_FEATURES}
    checks = {"amx_bf16": getattr(torch.cpu, "_is_amx_tile_supported", None),  # older torch
              "avx512_bf16": getattr(torch.cpu, "_is_avx512_bf16_supported", None)}
    if any(check is None for check in checks.values()):
        return None
    try:
        return {name: bool(check()) for name, check in checks.items()}
    except RuntimeError:
        return None


def _proc_cpuinfo_flags() -> set[str]:
    """The CPU flags listed in /proc/cpuinfo (empty where there is no such file)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def cpu_bf16_features() -> tuple[str, ...]:
    """The features of :data:`FAST_BF16_FEATURES` this CPU has (empty: no fast bf16).

    Read from ``torch.cpu.get_capabilities()`` (torch's older private checks, or the flags of
    /proc/cpuinfo where torch cannot say).
    """
    caps = _torch_cpu_capabilities()
    if caps is None:
        flags = _proc_cpuinfo_flags()
        caps = {name: name in flags for name in FAST_BF16_FEATURES}
    return tuple(name for name in FAST_BF16_FEATURES if caps[name])


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions faster than float32 ones.

    True on CPUs with AMX-BF16 tiles or AVX512-BF16 instructions, when PyTorch's oneDNN
    backend (which uses them) is available; see :func:`cpu_bf16_features`.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    return bool(cpu_bf16_features())


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> torch.dtype:
    """The compute dtype for a precision name on a device.

    Args:
        precision: ``"fp32"`` (float32), ``"bf16"`` (bfloat16 autocast; refused where it is
            not faster than float32), or ``"auto"`` (bf16 where it is fast: a CPU with
            :func:`cpu_has_fast_bf16`, a CUDA GPU with bf16 support; float32 elsewhere).
        device: the device the model runs on.

    Returns:
        ``torch.float32`` or ``torch.bfloat16``.

    Raises:
        ValueError: an unknown precision, or ``"bf16"`` where it would not be faster.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dev = torch.device(device)
    if dev.type == "cuda":
        fast = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        where = "this GPU has no bf16 support"
    else:
        fast = dev.type == "cpu" and cpu_has_fast_bf16()
        where = ("this CPU has neither AMX nor AVX512-BF16, so bf16 would run slower than "
                 "fp32" if dev.type == "cpu" else f"device {dev} has no known bf16 support")
    if precision == "fp32" or (precision == "auto" and not fast):
        return torch.float32
    if not fast:
        raise ValueError(f"precision 'bf16' refused: {where}; use fp32 or auto")
    return torch.bfloat16


def autocast(dtype: torch.dtype, device: str | torch.device) -> AbstractContextManager[object]:
    """The context in which a model runs at ``dtype`` (from :func:`resolve_precision`).

    Float32: no context. Bfloat16: ``torch.autocast(device_type, dtype=torch.bfloat16)``.

    Raises:
        ValueError: a dtype other than float32 or bfloat16.
    """
    if dtype == torch.float32:
        return contextlib.nullcontext()
    if dtype != torch.bfloat16:
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype}")
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


# --------------------------------------------------------------------------------------------
# Checked bf16 training on the CPU
# --------------------------------------------------------------------------------------------
# Measured with torch 2.13 (oneDNN) on the AVX512-BF16 machine: under bf16 autocast, the
# weight gradient of a channels-last 3x3 convolution with dilation >= 2 and an input channel
# count that is not a multiple of 16 (20, 24, 28, 40 ...) is wrong: NaN, 1e36, or finite and
# off by 150 % (RESCAN's 24-channel dilated layers: the loss is NaN at step 2). The output and
# the input gradient are right, and so is the same convolution in NCHW. So bf16 training is
# only used after every distinct convolution of the model passes a small check (below), in the
# memory format the trainer will use; inference (forward only) is not affected. The known
# pattern is refused without running it (once in four processes the faulty kernel crashed the
# interpreter); other convolutions are checked by measurement.
_BF16_CHECK_TOLERANCE = 0.05   # relative; correct bf16 gradients differ by ~3e-3 from float32


def _conv_key(conv: torch.nn.Conv2d) -> tuple[object, ...]:
    return (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)


@functools.lru_cache(maxsize=256)
def _bf16_conv_gradients_ok(key: tuple[object, ...], channels_last: bool, batch: int,
                            size: int) -> bool:
    """Whether one convolution's bf16 autocast gradients match float32 on bf16-rounded data."""
    cin, cout, kernel, stride, padding, dilation, groups, bias, mode = key
    if channels_last and max(dilation) > 1 and cin % 16:  # type: ignore[call-overload]
        return False  # the known fault: not run, it can also write out of bounds (segfault)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    # The check builds layers and draws inputs: keep the caller's (seeded) RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(cin, cout, kernel, stride=stride,  # type: ignore[arg-type]
                               padding=padding, dilation=dilation,  # type: ignore[arg-type]
                               groups=groups, bias=bias,  # type: ignore[arg-type]
                               padding_mode=mode).to(memory_format=fmt)  # type: ignore[arg-type]
        x = torch.rand(batch, cin, size, size).contiguous(memory_format=fmt).requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x)
        grad = torch.randn(out.shape)
        (out.float() * grad).sum().backward()
        # Reference: float32 NCHW on the same bf16-rounded weights, input and gradient.
        ref = copy.deepcopy(conv).to(memory_format=torch.contiguous_format)
        with torch.no_grad():
            for p in ref.parameters():
                p.copy_(p.bfloat16().float())
        ref_x = x.detach().bfloat16().float().contiguous().requires_grad_()
        (ref(ref_x) * grad.bfloat16().float()).sum().backward()
    for got, want in ((conv.weight.grad, ref.weight.grad), (x.grad, ref_x.grad)):
        if got is None or want is None or not bool(torch.isfinite(got).all()):
            return False
        scale = float(want.abs().max()) or 1.0
        if float((got - want).abs().max()) / scale > _BF16_CHECK_TOLERANCE:
            return False
    return True


def bf16_training_faults(model: torch.nn.Module, channels_last: bool, batch: int,
                         size: int) -> list[str]:
    """The model's convolutions whose bf16 gradients are wrong on this CPU, in that layout.

    Each distinct convolution (channels, kernel, stride, padding, dilation, groups, bias) is
    run once on a random ``batch x C x size x size`` input under CPU bf16 autocast and in
    float32 on the same bf16-rounded data; its weight and input gradients must agree within
    5 % of their largest value (correct ones agree to about 0.3 %). The fault depends on the
    input size (at 24 x 24 it does not show, at 32 x 32 it does), so check at the size the
    model will train on. Results are cached per process.

    Args:
        model: the network to be trained (its ``nn.Conv2d`` modules are checked).
        channels_last: check in channels-last memory (else NCHW), as the trainer will run.
        batch: the training batch (per process).
        size: the side of the training crops.

    Returns:
        ``"<module name> (<in> -> <out>, kernel k, dilation d)"`` for every failing
        convolution (empty: bf16 training is safe here).
    """
    faults = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d) and \
                not _bf16_conv_gradients_ok(_conv_key(module), channels_last, batch, size):
            faults.append(f"{name} ({module.in_channels} -> {module.out_channels}, kernel "
                          f"{module.kernel_size[0]}, dilation {module.dilation[0]})")
    return faults


# --------------------------------------------------------------------------------------------
# Heap reuse on glibc
