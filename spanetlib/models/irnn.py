"""The four-direction IRNN recurrence of SPANet's spatial attentive module (Fig. 5, Eq. 5).

For one channel ``c`` and the direction "right" along a row ``x[0..W-1]`` (Eq. 5, the identity
RNN of Bell et al. 2016)::

    h[0] = relu(x[0])                               # no bias at the border
    h[j] = relu(w_c * h[j-1] + b_c + x[j])          # j >= 1

"left" runs the same recurrence from column W-1 towards 0, "down" from row 0 towards H-1 and
"up" from row H-1 towards 0, each direction with its own per-channel ``w`` and ``b``. The
direction order everywhere is up, right, down, left (the order of the authors' concat).

Backends of :func:`irnn`:

* ``"reference"``: a plain PyTorch loop over rows / columns (autograd differentiates it). The
  test oracle, and the "plain NCHW loop" baseline of the benchmarks.
* ``"numba"``: CPU fast path. One parallel kernel computes all four directions (and one all
  four gradients) on channels-last data: horizontal scans one row per task, vertical scans one
  block of columns per task, every inner loop over the contiguous channels. It writes the
  four directions concatenated along the channels, in channels-last memory; :func:`irnn`
  returns the four blocks of that buffer as views.
* ``"triton"``: GPU path. One linear scan per row / column: each program owns a block of
  independent lines (a block of columns for vertical scans, a block of rows for horizontal
  scans) and walks along them once, forward and backward. Under ``TRITON_INTERPRET=1`` (set
  before ``triton`` is imported) the same kernels run on CPU tensors, which is how the tests
  check them.
* ``"auto"``: ``"triton"`` for CUDA tensors when triton imports, ``"numba"`` on CPU.

:func:`irnn_concat` returns the four directions concatenated along the channels, which is
what the SAM consumes; with the numba backend a channels-last SPANet thus runs its IRNNs
without any layout conversion or separate concatenation.

The authors' CuPy kernel restarts the scan from the border for every pixel (quadratic work);
a single linear scan per line gives the same values.
"""

from __future__ import annotations

import functools
import os
import types
import warnings
from typing import Any

import numba
import numpy as np
import torch
from llvmlite import ir as llvm_ir
from numba import njit, prange
from numba.core import types as nb_types
from numba.extending import intrinsic, overload
from torch import nn
from torch.autograd.function import once_differentiable

from spanetlib.io.checks import check_positive

__all__ = ["BACKENDS", "DIRECTIONS", "IRNN", "irnn", "irnn_concat", "irnn_reference"]

#: Direction order of the weights, biases and outputs.
DIRECTIONS: tuple[str, ...] = ("up", "right", "down", "left")

#: Names accepted by :func:`irnn` and :class:`IRNN`.
BACKENDS: tuple[str, ...] = ("auto", "numba", "reference", "triton")

_Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

# --------------------------------------------------------------------------------------------
# Reference: plain PyTorch loop
# --------------------------------------------------------------------------------------------


def _scan_last_dim(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eq. 5 along the last dimension of N x C x L, from index 0 upwards (differentiable)."""
    w = w.view(1, -1)
    b = b.view(1, -1)
    steps = x.unbind(-1)  # one backward node for all slices (x[..., j] would be quadratic)
    out = [torch.relu(steps[0])]
    for xj in steps[1:]:
        out.append(torch.relu(w * out[-1] + b + xj))
    return torch.stack(out, dim=-1)


def irnn_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> _Outputs:
    """Four-direction recurrence (Eq. 5) as a plain PyTorch loop over rows and columns.

    Differentiable through autograd; slow (one small kernel per row / column step). The oracle
    of the tests. Does not validate its arguments (see :func:`irnn`).

    Args:
        x: B x C x H x W input.
        weight: 4 x C recurrent weights (up, right, down, left).
        bias: 4 x C biases (up, right, down, left).

    Returns:
        (up, right, down, left), each B x C x H x W, non-negative.
    """
    bsz, ch, h, w = x.shape
    rows = x.permute(0, 2, 1, 3).reshape(bsz * h, ch, w)          # scan along W
    cols = x.permute(0, 3, 1, 2).reshape(bsz * w, ch, h)          # scan along H
    right = _scan_last_dim(rows, weight[1], bias[1])
    left = _scan_last_dim(rows.flip(-1), weight[3], bias[3]).flip(-1)
    down = _scan_last_dim(cols, weight[2], bias[2])
    up = _scan_last_dim(cols.flip(-1), weight[0], bias[0]).flip(-1)
    right = right.reshape(bsz, h, ch, w).permute(0, 2, 1, 3)
    left = left.reshape(bsz, h, ch, w).permute(0, 2, 1, 3)
    down = down.reshape(bsz, w, ch, h).permute(0, 2, 3, 1)
    up = up.reshape(bsz, w, ch, h).permute(0, 2, 3, 1)
    return up, right, down, left


# --------------------------------------------------------------------------------------------
# numba: CPU kernels, channels-last. Every IRNN output feeds a concatenation of the four
# directions along the channels (up, right, down, left), so the kernels read x as B x H x W x C
# (the memory of a channels-last tensor) and write the concatenation straight into one
# B x H x W x 4C buffer: no NCHW <-> NHWC conversions around the scan and no torch.cat, and
# every inner loop runs over contiguous channels. Block d of the 4C channels holds direction d;
# `irnn` returns the four blocks as views.
# Gradients: with a_j = w h_{j-1} + b + x_j (j >= 1), a_0 = x_0, h_j = relu(a_j):
#   ga_j = dL/da_j = [h_j > 0] * (dL/dh_j + w ga_{j+1})      (walking the scan backwards)
#   dL/dx_j += ga_j,   dL/dw += sum_{j>=1} ga_j h_{j-1},   dL/db += sum_{j>=1} ga_j.
# (h_j > 0 exactly when a_j > 0, so the outputs are all the backward pass needs.)
# --------------------------------------------------------------------------------------------

#: Below this many elements per output a kernel runs on the calling thread only: waking the
#: thread pool costs more than the work (and a lot more on a busy machine).
_SMALL_PROBLEM = 1 << 16


def _launch(kernel: Any, numel: int, *args: Any) -> None:
    """Call a parallel numba kernel, single-threaded for small problems.

    Numba's first parallel launch starts its OpenMP layer, which sets the OpenMP thread count
    that PyTorch reads: a user's ``torch.set_num_threads(1)`` became 2 after the first SPANet
    forward pass. PyTorch's setting is put back (numba keeps its own count).
    """
    torch_threads = torch.get_num_threads()
    threads = numba.get_num_threads()
    try:
        if numel >= _SMALL_PROBLEM or threads == 1:
            kernel(*args)
            return
        numba.set_num_threads(1)  # thread-local setting
        try:
            kernel(*args)
        finally:
            numba.set_num_threads(threads)
    finally:
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)



_NP = {torch.float32: np.float32, torch.float64: np.float64}


#: Columns per parallel task of the channels-last vertical scans.
_COL_BLOCK = 16


# bfloat16 data is handed to the kernels as int16 arrays of its bits (numpy has no bf16):
# `_load` widens an element to float32, `_store` rounds a float32 back to the nearest even
# bf16 (NaN -> 0x7FC0, as torch rounds). For float arrays both are the identity.


@intrinsic
def _bf16_to_f32(typingctx: Any, bits: Any) -> Any:  # pragma: no cover - compiled
    """The float32 whose upper 16 bits are ``bits`` (a 16-bit integer): bf16 -> float32."""
    if not isinstance(bits, nb_types.Integer) or bits.bitwidth != 16:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        wide = builder.zext(args[0], llvm_ir.IntType(32))
        shifted = builder.shl(wide, llvm_ir.Constant(llvm_ir.IntType(32), 16))
        return builder.bitcast(shifted, llvm_ir.FloatType())

    return nb_types.float32(bits), codegen


@intrinsic
def _f32_bits(typingctx: Any, value: Any) -> Any:  # pragma: no cover - compiled
    """The bits of a float32 as a uint32."""
    if value != nb_types.float32:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], llvm_ir.IntType(32))

    return nb_types.uint32(value), codegen


def _load(value: Any) -> Any:  # pragma: no cover - replaced by the overload in kernels
    """An array element as a float (bf16 bits -> float32)."""
    raise NotImplementedError


def _store(value: Any, like: Any) -> Any:  # pragma: no cover - replaced by the overload
    """A float as an element of an array whose elements look like ``like``."""
    raise NotImplementedError


@overload(_load, inline="always")
def _load_overload(value):  # pragma: no cover - compiled
    # (unannotated: numba compares this signature with the implementation's)
    if isinstance(value, nb_types.Integer):
        return lambda value: _bf16_to_f32(value)
    return lambda value: value


@overload(_store, inline="always")
def _store_overload(value, like):  # pragma: no cover - compiled
    if isinstance(like, nb_types.Integer):
        def to_bf16(value, like):
            if value != value:
                return np.int16(0x7FC0)
            bits = _f32_bits(np.float32(value))
            rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
            return np.int16(np.uint16(rounded >> np.uint32(16)))
        return to_bf16
    return lambda value, like: value


@njit(parallel=True, cache=True, fastmath=False)
def _concat_forward_kernel(x, weight, bias, zero, out):  # pragma: no cover - compiled
    """x: N x H x W x C; out: N x H x W x 4C, the four directions' scans.

    x and out hold floats of weight's dtype, or both bf16 bits (int16; computed in float32).
    The scans carry h in weight's dtype.
    """
    n_img, height, width, ch = x.shape
    for task in prange(n_img * height):        # horizontal scans, one row per task
        n = task // height
        i = task - n * height
        h = np.empty(ch, dtype=weight.dtype)
        for k in range(2):
            d = 1 + 2 * k                       # 1: right, 3: left
            o = d * ch
            reverse = d == 3
            j = width - 1 if reverse else 0
            step = -1 if reverse else 1
            for c in range(ch):
                a = _load(x[n, i, j, c])
                a = a if a > zero else zero
                h[c] = a
                out[n, i, j, o + c] = _store(a, out[0, 0, 0, 0])
            for _ in range(1, width):
                j += step
                for c in range(ch):
                    a = weight[d, c] * h[c] + bias[d, c] + _load(x[n, i, j, c])
                    a = a if a > zero else zero
                    h[c] = a
                    out[n, i, j, o + c] = _store(a, out[0, 0, 0, 0])
    n_blocks = (width + _COL_BLOCK - 1) // _COL_BLOCK
    for task in prange(n_img * n_blocks):      # vertical scans, one block of columns per task
        n = task // n_blocks
        j0 = (task - n * n_blocks) * _COL_BLOCK
        j1 = min(j0 + _COL_BLOCK, width)
        h = np.empty((j1 - j0, ch), dtype=weight.dtype)
        for k in range(2):
            d = 2 * k                           # 0: up, 2: down
            o = d * ch
            reverse = d == 0
            i = height - 1 if reverse else 0
            step = -1 if reverse else 1
            for j in range(j0, j1):
                for c in range(ch):
                    a = _load(x[n, i, j, c])
                    a = a if a > zero else zero
                    h[j - j0, c] = a
                    out[n, i, j, o + c] = _store(a, out[0, 0, 0, 0])
            for _ in range(1, height):
                i += step
                for j in range(j0, j1):
                    for c in range(ch):
                        a = weight[d, c] * h[j - j0, c] + bias[d, c] + _load(x[n, i, j, c])
                        a = a if a > zero else zero
                        h[j - j0, c] = a
                        out[n, i, j, o + c] = _store(a, out[0, 0, 0, 0])


@njit(parallel=True, cache=True, fastmath=False)
def _concat_backward_kernel(h, g, weight, zero, dx, part_rows, part_cols):  # pragma: no cover
    """Gradients of the concatenation (formulas in the comment above the kernels).

    h, g: N x H x W x 4C outputs and their gradients; dx: N x H x W x C (assigned). Partial
    sums of dL/dw and dL/db (float64): part_rows[task, k, 0 / 1, c] for the horizontal
    directions (k = 0: right, 1: left), part_cols for the vertical ones (k = 0: up, 1: down).
    """
    n_img, height, width, ch = dx.shape
    for task in prange(n_img * height):        # horizontal: right assigns dx, left adds
        n = task // height
        i = task - n * height
        carry = np.empty(ch, dtype=dx.dtype)
        for k in range(2):
            d = 1 + 2 * k
            o = d * ch
            reverse = d == 3
            j = 0 if reverse else width - 1     # memory column of the scan's last position
            back = 1 if reverse else -1         # memory step to the previous scan position
            acc_w = np.zeros(ch)
            acc_b = np.zeros(ch)
            for c in range(ch):
                carry[c] = zero
            for _ in range(1, width):
                jp = j + back
                for c in range(ch):
                    ga = g[n, i, j, o + c] + carry[c]
                    ga = ga if h[n, i, j, o + c] > zero else zero
                    if k == 0:
                        dx[n, i, j, c] = ga
                    else:
                        dx[n, i, j, c] += ga
                    acc_w[c] += ga * h[n, i, jp, o + c]
                    acc_b[c] += ga
                    carry[c] = weight[d, c] * ga
                j = jp
            for c in range(ch):                 # scan position 0: no w or b term
                ga = g[n, i, j, o + c] + carry[c]
                ga = ga if h[n, i, j, o + c] > zero else zero
                if k == 0:
                    dx[n, i, j, c] = ga
                else:
                    dx[n, i, j, c] += ga
            for c in range(ch):
                part_rows[task, k, 0, c] = acc_w[c]
                part_rows[task, k, 1, c] = acc_b[c]
    n_blocks = (width + _COL_BLOCK - 1) // _COL_BLOCK
    for task in prange(n_img * n_blocks):      # vertical: both add to dx
        n = task // n_blocks
        j0 = (task - n * n_blocks) * _COL_BLOCK
        j1 = min(j0 + _COL_BLOCK, width)
        carry = np.empty((j1 - j0, ch), dtype=dx.dtype)
        for k in range(2):
            d = 2 * k
            o = d * ch
            reverse = d == 0
            i = 0 if reverse else height - 1
            back = 1 if reverse else -1
            acc_w = np.zeros(ch)
            acc_b = np.zeros(ch)
            carry[:] = zero
            for _ in range(1, height):
                ip = i + back
                for j in range(j0, j1):
                    for c in range(ch):
                        ga = g[n, i, j, o + c] + carry[j - j0, c]
                        ga = ga if h[n, i, j, o + c] > zero else zero
                        dx[n, i, j, c] += ga
                        acc_w[c] += ga * h[n, ip, j, o + c]
                        acc_b[c] += ga
                        carry[j - j0, c] = weight[d, c] * ga
                i = ip
            for j in range(j0, j1):
                for c in range(ch):
                    ga = g[n, i, j, o + c] + carry[j - j0, c]
                    ga = ga if h[n, i, j, o + c] > zero else zero
                    dx[n, i, j, c] += ga
            for c in range(ch):
                part_cols[task, k, 0, c] = acc_w[c]
                part_cols[task, k, 1, c] = acc_b[c]


def _nhwc(t: torch.Tensor) -> np.ndarray:
    """A B x C x H x W tensor's data as a B x H x W x C numpy array (no copy if channels-last)."""
    return t.permute(0, 2, 3, 1).contiguous().numpy()


def _numba_concat_forward(x: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor) -> torch.Tensor:
    """Run the channels-last forward kernel; returns B x 4C x H x W in channels-last memory.

    x: float32, float64 (weight and bias of the same dtype) or bfloat16 (float32 weight and
    bias; the scans run in float32, the output is rounded to bf16 once).
    """
    bsz, ch, height, width = x.shape
    out = torch.empty((bsz, height, width, 4 * ch), dtype=x.dtype)
    nhwc = x.detach().permute(0, 2, 3, 1).contiguous()
    if x.dtype == torch.bfloat16:
        xa, oa = nhwc.view(torch.int16).numpy(), out.view(torch.int16).numpy()
    else:
        xa, oa = nhwc.numpy(), out.numpy()
    wa = weight.detach().contiguous().numpy()
    _launch(_concat_forward_kernel, out.numel() // 4, xa, wa, bias.detach().contiguous().numpy(),
            wa.dtype.type(0), oa)
    return out.permute(0, 3, 1, 2)


class _NumbaIRNNConcat(torch.autograd.Function):
    """Autograd wrapper of the channels-last kernels (x, weight, bias share one dtype, CPU)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
        out = _numba_concat_forward(x, weight, bias)
        ctx.save_for_backward(out, weight)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        out, weight = ctx.saved_tensors
        bsz, ch4, height, width = out.shape
        ch = ch4 // 4
        dtype = out.dtype
        dx = torch.empty((bsz, height, width, ch), dtype=dtype)
        n_blocks = (width + _COL_BLOCK - 1) // _COL_BLOCK
        part_rows = np.empty((bsz * height, 2, 2, ch))
        part_cols = np.empty((bsz * n_blocks, 2, 2, ch))
        _launch(_concat_backward_kernel, dx.numel(), _nhwc(out), _nhwc(grad.to(dtype)),
                weight.detach().contiguous().numpy(), _NP[dtype](0), dx.numpy(), part_rows,
                part_cols)
        rows, cols = part_rows.sum(0), part_cols.sum(0)   # 2 x 2 x C: direction, (w, b), C
        sums = np.stack([cols[0], rows[0], cols[1], rows[1]])  # up, right, down, left
        gw = torch.from_numpy(np.ascontiguousarray(sums[:, 0])).to(dtype)
        gb = torch.from_numpy(np.ascontiguousarray(sums[:, 1])).to(dtype)
        return dx.permute(0, 3, 1, 2), gw, gb


def _irnn_numba(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> _Outputs:
    """Numba backend of :func:`irnn`: the four blocks of :func:`_irnn_numba_concat`."""
    return _irnn_numba_concat(x, weight, bias).chunk(4, dim=1)  # type: ignore[return-value]


def _irnn_numba_concat(x: torch.Tensor, weight: torch.Tensor,
                       bias: torch.Tensor) -> torch.Tensor:
    """Numba backend of :func:`irnn_concat`.

    bfloat16 without gradients runs the kernel on bf16 data (float32 scans, one rounding of
    the output); float16, and bfloat16 with gradients, go through a float32 copy.
    """
    if x.device.type != "cpu":
        raise ValueError(f"backend 'numba' runs on CPU tensors only, got x on {x.device}; "
                         "use backend='triton' or 'auto' for CUDA tensors")
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                              or bias.requires_grad)
    if x.dtype == torch.bfloat16 and not needs_grad:  # bf16 in and out, float32 inside
        return _numba_concat_forward(x, weight.float(), bias.float())
    if x.dtype not in _NP:
        return _irnn_numba_concat(x.float(), weight, bias).to(x.dtype)
    weight = weight.to(x.dtype)
    bias = bias.to(x.dtype)
    if needs_grad:
        return _NumbaIRNNConcat.apply(x, weight, bias)
    return _numba_concat_forward(x, weight, bias)


# --------------------------------------------------------------------------------------------
# Triton: one linear scan per line. A program owns BLOCK independent lines of one plane:
# lane l of the block starts at plane * plane_stride + l * lane_stride and the scan steps by
# `step` elements (vertical: lanes = columns, lane_stride 1, step W, so each load of the block
# is contiguous; horizontal: lanes = rows, lane_stride W, step 1). REVERSE scans from the far
# end (up, left). The kernels below are plain functions; `_triton_kernels` jit-compiles them
# with a private globals dict holding `tl`, so importing this module never imports triton.
# --------------------------------------------------------------------------------------------

tl: Any = None  # placeholder name: the kernels' own globals bind it to triton.language


def _triton_scan_forward(x_ptr, out_ptr, w_ptr, b_ptr, channels, n_lanes, length,
                         plane_stride, lane_stride, step,
                         REVERSE: tl.constexpr, BLOCK: tl.constexpr):  # pragma: no cover
    """Forward of one direction for BLOCK lines of one plane (grid: planes x line blocks)."""
    plane = tl.program_id(0).to(tl.int64)
    lanes = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = lanes < n_lanes
    chan = plane % channels
    w = tl.load(w_ptr + chan)
    b = tl.load(b_ptr + chan)
    base = plane * plane_stride + lanes.to(tl.int64) * lane_stride
    h = tl.zeros([BLOCK], dtype=w.dtype)
    for k in range(0, length):
        if REVERSE:
            off = base + (length - 1 - k) * step
        else:
            off = base + k * step
        xv = tl.load(x_ptr + off, mask=valid, other=0.0).to(w.dtype)
        # position 0 has no recurrent term and no bias: a = 0 + x exactly
        a = tl.where(k > 0, w * h + b, 0.0) + xv
        h = tl.maximum(a, 0.0)
        tl.store(out_ptr + off, h.to(out_ptr.dtype.element_ty), mask=valid)


def _triton_scan_backward(h_ptr, g_ptr, dx_ptr, dw_ptr, db_ptr, w_ptr, channels, n_lanes,
                          length, plane_stride, lane_stride, step, REVERSE: tl.constexpr,
                          ACCUMULATE: tl.constexpr, BLOCK: tl.constexpr):  # pragma: no cover
    """Backward of one direction for BLOCK lines; per-program partial sums of dL/dw, dL/db."""
    plane = tl.program_id(0).to(tl.int64)
    block = tl.program_id(1)
    lanes = block * BLOCK + tl.arange(0, BLOCK)
    valid = lanes < n_lanes
    chan = plane % channels
    w = tl.load(w_ptr + chan)
    base = plane * plane_stride + lanes.to(tl.int64) * lane_stride
    if REVERSE:
        back = step           # memory step from scan position p to p - 1
        first_off = base      # memory offset of scan position length - 1
    else:
        back = -step
        first_off = base + (length - 1) * step
    h_cur = tl.load(h_ptr + first_off, mask=valid, other=0.0).to(w.dtype)
    carry = tl.zeros([BLOCK], dtype=w.dtype)
    acc_w = tl.zeros([BLOCK], dtype=w.dtype)
    acc_b = tl.zeros([BLOCK], dtype=w.dtype)
    for k in range(0, length):
        p = length - 1 - k                    # scan position, walking backwards
        off = first_off + k * back
        g = tl.load(g_ptr + off, mask=valid, other=0.0).to(w.dtype) + carry
        ga = tl.where(h_cur > 0.0, g, 0.0)
        if ACCUMULATE:
            total = ga + tl.load(dx_ptr + off, mask=valid, other=0.0)
        else:
            total = ga
        tl.store(dx_ptr + off, total, mask=valid)
        has_prev = (lanes * 0 + p) > 0        # scan position 0 has no w or b term
        h_prev = tl.load(h_ptr + off + back, mask=valid & has_prev, other=0.0).to(w.dtype)
        acc_w += ga * h_prev
        acc_b += tl.where(has_prev, ga, 0.0)
        carry = w * ga
        h_cur = h_prev
    slot = plane * tl.num_programs(1) + block
    tl.store(dw_ptr + slot, tl.sum(acc_w, axis=0))
    tl.store(db_ptr + slot, tl.sum(acc_b, axis=0))


def _triton_interpreting() -> bool:
    """Whether TRITON_INTERPRET is set (kernels then run on CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


@functools.lru_cache(maxsize=1)
def _triton_kernels() -> types.SimpleNamespace:
    """Import triton and jit the scan kernels (once). Raises ImportError without triton."""
    import triton
    import triton.language

    scope = {"tl": triton.language, "__name__": __name__}

    def jit(fn: Any) -> Any:
        rebound = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__)
        rebound.__annotations__ = dict(fn.__annotations__)
        rebound.__qualname__ = fn.__qualname__
        rebound.__doc__ = fn.__doc__
        return triton.jit(rebound)

    return types.SimpleNamespace(triton=triton, forward=jit(_triton_scan_forward),
                                 backward=jit(_triton_scan_backward))


def _triton_importable() -> bool:
    try:
        _triton_kernels()
    except ImportError:
        return False
    return True


def _triton_geometry(shape: torch.Size, direction: int) -> tuple[int, int, int, int, int, bool]:
    """(n_lanes, length, lane_stride, step, block, reverse) of one direction's scan."""
    _, _, height, width = shape
    if direction in (0, 2):                    # up, down: lanes are columns
        n_lanes, length, lane_stride, step = width, height, 1, width
    else:                                      # right, left: lanes are rows
        n_lanes, length, lane_stride, step = height, width, width, 1
    block = max(16, min(64, 1 << (n_lanes - 1).bit_length()))
    return n_lanes, length, lane_stride, step, block, direction in (0, 3)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _triton_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> _Outputs:
    kernels = _triton_kernels()
    x = x.detach().contiguous()
    cdt = _compute_dtype(x.dtype)
    weight = weight.detach().to(cdt).contiguous()
    bias = bias.detach().to(cdt).contiguous()
    bsz, ch, height, width = x.shape
    outs = tuple(torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(4))
    for d in range(4):
        n_lanes, length, lane_stride, step, block, reverse = _triton_geometry(x.shape, d)
        grid = (bsz * ch, kernels.triton.cdiv(n_lanes, block))
        kernels.forward[grid](x, outs[d], weight[d], bias[d], ch, n_lanes, length,
                              height * width, lane_stride, step, REVERSE=reverse, BLOCK=block,
                              num_warps=max(1, block // 32))
    return outs  # type: ignore[return-value]


class _TritonIRNN(torch.autograd.Function):
    """Autograd wrapper of the Triton scan kernels."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor) -> _Outputs:
        outs = _triton_forward(x, weight, bias)
        ctx.save_for_backward(*outs, weight)
        ctx.dtypes = (x.dtype, weight.dtype, bias.dtype)
        return outs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        kernels = _triton_kernels()
        *outs, weight = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        bsz, ch, height, width = outs[0].shape
        cdt = _compute_dtype(x_dtype)
        weight = weight.detach().to(cdt).contiguous()
        dx = torch.empty(outs[0].shape, dtype=cdt, device=outs[0].device)
        gw = torch.empty((4, ch), dtype=cdt, device=dx.device)
        gb = torch.empty((4, ch), dtype=cdt, device=dx.device)
        for k, d in enumerate((1, 3, 0, 2)):
            n_lanes, length, lane_stride, step, block, reverse = _triton_geometry(dx.shape, d)
            n_blocks = kernels.triton.cdiv(n_lanes, block)
            part_w = torch.empty((bsz * ch, n_blocks), dtype=cdt, device=dx.device)
            part_b = torch.empty_like(part_w)
            kernels.backward[(bsz * ch, n_blocks)](
                outs[d], grads[d].contiguous(), dx, part_w, part_b, weight[d], ch, n_lanes,
                length, height * width, lane_stride, step, REVERSE=reverse,
                ACCUMULATE=k > 0, BLOCK=block, num_warps=max(1, block // 32))
            gw[d] = part_w.view(bsz, ch, n_blocks).sum(dim=(0, 2))
            gb[d] = part_b.view(bsz, ch, n_blocks).sum(dim=(0, 2))
        return dx.to(x_dtype), gw.to(w_dtype), gb.to(b_dtype)


def _irnn_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> _Outputs:
    """Triton backend (CUDA tensors, or any tensors under TRITON_INTERPRET=1)."""
    if x.device.type != "cuda" and not _triton_interpreting():
        raise ValueError(f"backend 'triton' needs CUDA tensors, got x on {x.device} (set "
                         "TRITON_INTERPRET=1 before importing triton to run it on CPU)")
    try:
        _triton_kernels()
    except ImportError as exc:
        raise ValueError("backend 'triton' needs the triton package, which did not import: "
                         f"{exc}") from exc
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or bias.requires_grad):
        return _TritonIRNN.apply(x, weight, bias)
    return _triton_forward(x, weight, bias)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown IRNN backend {backend!r}; expected one of {BACKENDS}")


def _check_inputs(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> None:
    for name, t in (("x", x), ("weight", weight), ("bias", bias)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if x.ndim != 4:
        raise ValueError(f"x must be B x C x H x W (4 dims), got shape {tuple(x.shape)}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"x must have H >= 1 and W >= 1, got shape {tuple(x.shape)}")
    expected = (4, x.shape[1])
    for name, t in (("weight", weight), ("bias", bias)):
        if tuple(t.shape) != expected:
            raise ValueError(f"{name} must have shape 4 x C = {expected} (up, right, down, "
                             f"left), got {tuple(t.shape)}")
        if t.device != x.device:
            raise ValueError(f"{name} must be on x's device {x.device}, got {t.device}")


def _resolve_backend(backend: str, x: torch.Tensor) -> str:
    if backend != "auto":
        return backend
    if x.device.type == "cpu":
        return "numba"
    if x.device.type == "cuda":
        if _triton_importable():
            return "triton"
        warnings.warn("triton is not importable: IRNN falls back to the slow reference loop on "
                      "CUDA", RuntimeWarning, stacklevel=3)
    return "reference"


def irnn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
         backend: str = "auto") -> _Outputs:
    """Four-direction IRNN recurrence (Eq. 5) with per-channel weights and biases.

    For "right" along a row: ``h[0] = relu(x[0])``, ``h[j] = relu(w_c h[j-1] + b_c + x[j])``;
    "left", "down" and "up" run the same scan from the other borders (see the module
    docstring). Differentiable in ``x``, ``weight`` and ``bias`` for every backend.

    Args:
        x: B x C x H x W float tensor (float32 / float64; float16 / bfloat16 are computed in
            float32). Any memory format (copied to contiguous NCHW if needed).
        weight: 4 x C recurrent weights in the order up, right, down, left (may be negative).
        bias: 4 x C biases in the same order.
        backend: "auto", "numba" (CPU), "triton" (CUDA, or CPU under TRITON_INTERPRET=1) or
            "reference" (plain PyTorch loop, any device).

    Returns:
        (up, right, down, left): four B x C x H x W tensors of x's dtype, each >= 0.

    Raises:
        TypeError: non-tensor or non-floating-point arguments.
        ValueError: wrong shapes, devices, unknown backend, or a backend that cannot run on
            x's device.

    Example:
        >>> x = torch.randn(1, 2, 3, 4)
        >>> up, right, down, left = irnn(x, torch.full((4, 2), 0.2), torch.zeros(4, 2))
        >>> tuple(right.shape)
        (1, 2, 3, 4)
    """
    _check_backend(backend)
    _check_inputs(x, weight, bias)
    backend = _resolve_backend(backend, x)
    if backend == "reference":
        return irnn_reference(x, weight.to(x.dtype), bias.to(x.dtype))
    if backend == "numba":
        return _irnn_numba(x, weight, bias)
    return _irnn_triton(x, weight, bias)


def irnn_concat(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                backend: str = "auto") -> torch.Tensor:
    """The four IRNN directions concatenated along the channels: ``cat(irnn(x), dim=1)``.

    This is what the SAM consumes. With the numba backend the scans read a channels-last
    ``x`` in place and write the B x 4C x H x W result directly, in channels-last memory (no
    layout conversions, no separate concatenation); other backends concatenate
    :func:`irnn`'s outputs. Differentiable in ``x``, ``weight`` and ``bias``.

    Args:
        x: B x C x H x W float tensor, as for :func:`irnn` (channels-last is read in place).
        weight: 4 x C recurrent weights (up, right, down, left).
        bias: 4 x C biases in the same order.
        backend: "auto", "numba", "triton" or "reference", as for :func:`irnn`.

    Returns:
        B x 4C x H x W: channels ``[k*C, (k+1)*C)`` hold direction k of (up, right, down,
        left).

    Raises:
        TypeError, ValueError: as for :func:`irnn`.
    """
    _check_backend(backend)
    _check_inputs(x, weight, bias)
    resolved = _resolve_backend(backend, x)
    if resolved == "numba":
        return _irnn_numba_concat(x, weight, bias)
    return torch.cat(irnn(x, weight, bias, backend=resolved), dim=1)


class IRNN(nn.Module):
    """Four-direction IRNN with per-channel weights (Eq. 5), as in the authors' checkpoint.

    Sub-modules ``up_weight``, ``right_weight``, ``down_weight``, ``left_weight`` are depthwise
    1x1 convolutions (``nn.Conv2d(C, C, 1, groups=C, bias=True)``) that only hold the
    recurrent weight (``.weight``, C x 1 x 1 x 1) and bias (``.bias``, C) of one direction, so
    the checkpoint keys ``irnnK.up_weight.weight`` load directly. They are never applied as
    convolutions.

    Args:
        channels: number of channels C.
        init_weight: initial recurrent weight of every channel and direction (biases start at
            0). The authors use 0.2.
        backend: see :func:`irnn`; can be changed later through the ``backend`` attribute.

    Shape:
        input B x C x H x W; output four B x C x H x W tensors (up, right, down, left).
    """

    def __init__(self, channels: int, init_weight: float = 0.2, backend: str = "auto") -> None:
        super().__init__()
        check_positive("channels", channels)
        self.channels = channels
        self.backend = backend
        for name in DIRECTIONS:
            conv = nn.Conv2d(channels, channels, 1, groups=channels, bias=True)
            nn.init.constant_(conv.weight, init_weight)
            nn.init.zeros_(conv.bias)
            setattr(self, f"{name}_weight", conv)

    @property
    def backend(self) -> str:
        """The :func:`irnn` backend used by :meth:`forward`."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        _check_backend(value)
        self._backend = value

    def stacked_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (weight, bias), each 4 x C in the order up, right, down, left."""
        convs = [getattr(self, f"{n}_weight") for n in DIRECTIONS]
        weight = torch.stack([c.weight.view(-1) for c in convs])
        bias = torch.stack([c.bias.view(-1) for c in convs])
        return weight, bias

    def forward(self, x: torch.Tensor) -> _Outputs:
        """Apply :func:`irnn` with this module's parameters.

        Args:
            x: B x C x H x W.

        Returns:
            (up, right, down, left), each B x C x H x W.
        """
        weight, bias = self.stacked_parameters()
        return irnn(x, weight, bias, backend=self.backend)

    def forward_concat(self, x: torch.Tensor) -> torch.Tensor:
        """Apply :func:`irnn_concat`: the four directions as one B x 4C x H x W tensor."""
        weight, bias = self.stacked_parameters()
        return irnn_concat(x, weight, bias, backend=self.backend)

    def extra_repr(self) -> str:
        """Channels and backend, for ``repr``."""
        return f"channels={self.channels}, backend={self.backend!r}"
