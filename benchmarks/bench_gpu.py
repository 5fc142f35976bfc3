"""IRNN / SPANet timings: Triton linear scan vs per-pixel rescan vs Python loop.

GPU part (needs CUDA): IRNN forward + backward at 512 x 512, C = 32, B in --batches for
  (a) the Triton linear scan of ``spanetlib.models.irnn`` (backend "triton"),
  (b) a per-pixel rescan in Triton, like the authors' CuPy kernel: every output pixel restarts
      the recurrence at its border (quadratic work), forward and backward,
  (c) the plain PyTorch loop (backend "reference").
``--model`` adds SPANet inference at 512 x 512 and one training step at batch 16 of 256 x 256
(bf16 autocast, channels_last).

CPU part (``--cpu``, no GPU needed): IRNN at B = 1, C = 32, 256 x 256, reference loop vs numba,
forward (inference mode) and forward + backward.

Usage::

    python benchmarks/bench_gpu.py [--batches 1,4,16] [--reps 10] [--model]
    python benchmarks/bench_gpu.py --cpu
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

try:  # the rescan kernels need triton; the CPU mode does not
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the environment
    triton = None
    tl = None

from spanetlib.models.irnn import IRNN, irnn, irnn_concat

# ------------------------------------------------------------------ per-pixel rescan (b)


def _rescan_forward(x_ptr, out_ptr, w_ptr, b_ptr, channels, height, width,
                    VERTICAL: tl.constexpr, REVERSE: tl.constexpr, BLOCK: tl.constexpr):
    """One lane per output pixel; each lane re-runs the scan from its border to itself."""
    plane = tl.program_id(0).to(tl.int64)
    pix = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = pix < height * width
    row = pix // width
    col = pix % width
    chan = plane % channels
    w = tl.load(w_ptr + chan)
    b = tl.load(b_ptr + chan)
    base = plane * height * width
    if VERTICAL:
        length = height
        line = base + col
        step = width
        here = row
    else:
        length = width
        line = base + row * width
        step = 1
        here = col
    if REVERSE:
        dist = length - 1 - here
    else:
        dist = here
    max_dist = tl.max(tl.where(valid, dist, 0), axis=0)
    h = tl.zeros([BLOCK], dtype=tl.float32)
    for q in range(0, max_dist + 1):
        if REVERSE:
            idx = length - 1 - q
        else:
            idx = q
        active = valid & (dist >= q)
        xv = tl.load(x_ptr + line + idx * step, mask=active, other=0.0).to(tl.float32)
        a = tl.where(q > 0, w * h + b, 0.0) + xv
        h = tl.where(active, tl.maximum(a, 0.0), h)
    tl.store(out_ptr + base + pix, h, mask=valid)


def _rescan_backward(h_ptr, g_ptr, dx_ptr, dw_ptr, db_ptr, w_ptr, channels, height, width,
                     VERTICAL: tl.constexpr, REVERSE: tl.constexpr, ACCUMULATE: tl.constexpr,
                     BLOCK: tl.constexpr):
    """One lane per pixel; each lane re-runs the backward recurrence from the far border."""
    plane = tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1)
    pix = blk * BLOCK + tl.arange(0, BLOCK)
    valid = pix < height * width
    row = pix // width
    col = pix % width
    chan = plane % channels
    w = tl.load(w_ptr + chan)
    base = plane * height * width
    if VERTICAL:
        length = height
        line = base + col
        step = width
        here = row
    else:
        length = width
        line = base + row * width
        step = 1
        here = col
    if REVERSE:
        dist = length - 1 - here
    else:
        dist = here
    min_dist = tl.min(tl.where(valid, dist, length - 1), axis=0)
    g = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(0, length - min_dist):
        q = length - 1 - t
        if REVERSE:
            idx = length - 1 - q
        else:
            idx = q
        active = valid & (dist <= q)
        off = line + idx * step
        hq = tl.load(h_ptr + off, mask=active, other=0.0)
        gq = tl.load(g_ptr + off, mask=active, other=0.0)
        g = tl.where(active, tl.where(hq > 0.0, gq + w * g, 0.0), g)
    if ACCUMULATE:
        total = g + tl.load(dx_ptr + base + pix, mask=valid, other=0.0)
    else:
        total = g
    tl.store(dx_ptr + base + pix, total, mask=valid)
    if REVERSE:
        prev_idx = length - dist            # memory index of scan position dist - 1
    else:
        prev_idx = dist - 1
    has_prev = valid & (dist > 0)
    h_prev = tl.load(h_ptr + line + prev_idx * step, mask=has_prev, other=0.0)
    slot = plane * tl.num_programs(1) + blk
    tl.store(dw_ptr + slot, tl.sum(tl.where(has_prev, g * h_prev, 0.0), axis=0))
    tl.store(db_ptr + slot, tl.sum(tl.where(has_prev, g, 0.0), axis=0))


_RESCAN_BLOCK = 128
_DIRS = ((True, True), (False, False), (True, False), (False, True))  # (VERTICAL, REVERSE)


class _RescanIRNN(torch.autograd.Function):
    """float32 four-direction IRNN with the quadratic per-pixel kernels above."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        x = x.detach().float().contiguous()
        weight = weight.detach().float().contiguous()
        bias = bias.detach().float().contiguous()
        bsz, ch, height, width = x.shape
        grid = (bsz * ch, triton.cdiv(height * width, _RESCAN_BLOCK))
        outs = tuple(torch.empty_like(x) for _ in range(4))
        for d, (vertical, reverse) in enumerate(_DIRS):
            _KERNELS["fwd"][grid](x, outs[d], weight[d], bias[d], ch, height, width,
                                  VERTICAL=vertical, REVERSE=reverse, BLOCK=_RESCAN_BLOCK,
                                  num_warps=4)
        ctx.save_for_backward(*outs, weight)
        return outs

    @staticmethod
    def backward(ctx, *grads):
        *outs, weight = ctx.saved_tensors
        bsz, ch, height, width = outs[0].shape
        grid = (bsz * ch, triton.cdiv(height * width, _RESCAN_BLOCK))
        dx = torch.empty_like(outs[0])
        gw = torch.empty_like(weight)
        gb = torch.empty_like(weight)
        for d, (vertical, reverse) in enumerate(_DIRS):
            part_w = torch.empty(grid, device=dx.device)
            part_b = torch.empty_like(part_w)
            _KERNELS["bwd"][grid](outs[d], grads[d].float().contiguous(), dx, part_w, part_b,
                                  weight[d], ch, height, width, VERTICAL=vertical,
                                  REVERSE=reverse, ACCUMULATE=d > 0, BLOCK=_RESCAN_BLOCK,
                                  num_warps=4)
            gw[d] = part_w.view(bsz, ch, -1).sum(dim=(0, 2))
            gb[d] = part_b.view(bsz, ch, -1).sum(dim=(0, 2))
        return dx, gw, gb


_KERNELS: dict = {}


def irnn_rescan(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    """The per-pixel rescan IRNN (b): same values as ``irnn``, quadratic work."""
    if not _KERNELS:
        _KERNELS["fwd"] = triton.jit(_rescan_forward)
        _KERNELS["bwd"] = triton.jit(_rescan_backward)
    return _RescanIRNN.apply(x, weight, bias)


# ------------------------------------------------------------------ timing helpers


def _time_cuda(fn: Callable[[], object], reps: int, warmup: int = 2) -> float:
    """Median milliseconds of fn() measured with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _time_cpu(fn: Callable[[], object], reps: int, warmup: int = 1) -> float:
    """Best-of-reps milliseconds on CPU (shared machines: the minimum is the stable one)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _irnn_inputs(bsz: int, ch: int, size: int, device: str, seed: int = 0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(bsz, ch, size, size, generator=gen).to(device)
    weight = (1.47 * torch.rand(4, ch, generator=gen) - 0.47).to(device)  # trained range
    bias = (0.2 * torch.randn(4, ch, generator=gen)).to(device)
    return x, weight, bias


def _fwd_bwd(fn, x, weight, bias, grads):
    leaves = [t.detach().requires_grad_() for t in (x, weight, bias)]
    outs = fn(*leaves)
    torch.autograd.backward(outs, grads)
    return outs, [t.grad for t in leaves]


IMPLS = {
    "triton linear scan": lambda x, w, b: irnn(x, w, b, backend="triton"),
    "triton per-pixel rescan": irnn_rescan,
    "python loop (reference)": lambda x, w, b: irnn(x, w, b, backend="reference"),
}


def check_agreement(device: str) -> None:
    """Max differences of (a), (b) against (c) on a small problem, values and gradients."""
    x, w, b = _irnn_inputs(2, 4, 48, device, seed=1)
    grads = [torch.randn_like(x) for _ in range(4)]
    results = {name: _fwd_bwd(fn, x, w, b, grads) for name, fn in IMPLS.items()}
    ref_outs, ref_grads = results["python loop (reference)"]
    for name, (outs, gr) in results.items():
        d_out = max((o - r).abs().max().item() for o, r in zip(outs, ref_outs, strict=True))
        d_grad = max(((g - r).abs().max() / (1 + r.abs().max())).item()
                     for g, r in zip(gr, ref_grads, strict=True))
        print(f"check {name:26s} max|out - ref| {d_out:.2e}  max rel grad diff {d_grad:.2e}")


def bench_irnn(batches: list[int], reps: int, size: int = 512, ch: int = 32) -> None:
    """IRNN forward + backward at size x size, C = ch, for each implementation."""
    print(f"IRNN forward+backward, {size}x{size}, C={ch}, median ms over {reps} reps")
    print(f"{'B':>3s} " + " ".join(f"{n:>26s}" for n in IMPLS) + "   rescan/linear  loop/linear")
    for bsz in batches:
        x, w, b = _irnn_inputs(bsz, ch, size, "cuda")
        grads = [torch.randn_like(x) for _ in range(4)]
        row = {}
        for name, fn in IMPLS.items():
            n = reps if name == "triton linear scan" else max(1, min(reps, 3))
            row[name] = _time_cuda(lambda fn=fn, x=x, w=w, b=b, grads=grads:
                                   _fwd_bwd(fn, x, w, b, grads), n, warmup=1)
        lin = row["triton linear scan"]
        print(f"{bsz:3d} " + " ".join(f"{row[n]:26.2f}" for n in IMPLS)
              + f"   {row['triton per-pixel rescan'] / lin:13.1f}"
              + f"  {row['python loop (reference)'] / lin:11.1f}")
        del x, grads, row
        torch.cuda.empty_cache()


def _set_irnn_backend(model: torch.nn.Module, backend: str) -> None:
    for mod in model.modules():
        if isinstance(mod, IRNN):
            mod.backend = backend


def bench_model(reps: int) -> None:
    """SPANet inference at 512 x 512 and a bf16 channels_last training step at 16 x 256^2."""
    from spanetlib.models.spanet import SPANet

    model = SPANet().cuda().eval()
    x = torch.rand(1, 3, 512, 512, device="cuda")
    for backend in ("triton", "reference"):
        _set_irnn_backend(model, backend)
        with torch.inference_mode():
            fp32 = _time_cuda(lambda: model(x), reps if backend == "triton" else 2)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                bf16 = _time_cuda(lambda: model(x), reps if backend == "triton" else 2)
        print(f"SPANet inference 1x3x512x512, IRNN {backend:9s}: fp32 {fp32:8.2f} ms, "
              f"bf16 autocast {bf16:8.2f} ms")

    _set_irnn_backend(model, "triton")
    model = model.train().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    gen = torch.Generator(device="cpu").manual_seed(0)
    rain = torch.rand(16, 3, 256, 256, generator=gen).cuda()
    clean = (rain - 0.1 * torch.rand(16, 3, 256, 256, generator=gen).cuda()).clamp(0, 1)
    mask = (rain != clean).any(dim=1, keepdim=True).float()
    rain = rain.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out, attention = model(rain)
        loss = (out.float() - clean).abs().mean()
        if attention is not None:
            loss = loss + ((attention.float() - mask) ** 2).mean()
        loss.backward()
        opt.step()

    ms = _time_cuda(step, reps)
    print(f"SPANet training step 16x3x256x256, bf16 autocast + channels_last, IRNN triton: "
          f"{ms:.2f} ms ({16 * 1000 / ms:.1f} images/s)")


def bench_cpu(reps: int) -> None:
    """IRNN alone on CPU, B=1, C=32, 256 x 256: reference loop vs numba.

    Two forms: ``irnn`` on NCHW input with four NCHW gradients (the tuple API; the numba
    kernels work channels-last, so this includes the layout conversions), and
    ``irnn_concat`` on channels-last input with a channels-last gradient (what SPANet does).
    """
    x, w, b = _irnn_inputs(1, 32, 256, "cpu")
    x_cl = x.contiguous(memory_format=torch.channels_last)
    grads = [torch.randn_like(x) for _ in range(4)]
    grad_cl = torch.cat(grads, 1).contiguous(memory_format=torch.channels_last)
    forms = {
        "irnn, NCHW": (lambda be: (lambda *a: irnn(*a, backend=be)), x, grads),
        "irnn_concat, channels-last": (lambda be: (lambda *a: irnn_concat(*a, backend=be)),
                                       x_cl, [grad_cl]),
    }
    print(f"IRNN on CPU, 1x32x256x256, {torch.get_num_threads()} torch threads, best of {reps}")
    for form, (make, inp, grad) in forms.items():
        res = {}
        for backend in ("reference", "numba"):
            fn = make(backend)
            with torch.inference_mode():
                fwd = _time_cpu(lambda f=fn, i=inp: f(i, w, b), reps)
            n = reps if backend == "numba" else max(1, min(reps, 3))
            both = _time_cpu(lambda f=fn, i=inp, g=grad: _fwd_bwd(f, i, w, b, g), n)
            res[backend] = (fwd, both)
            print(f"  {form:27s} {backend:9s}: forward {fwd:9.2f} ms   "
                  f"forward+backward {both:9.2f} ms")
        print(f"  {form:27s} speed-up numba vs reference: forward "
              f"{res['reference'][0] / res['numba'][0]:.1f}x, forward+backward "
              f"{res['reference'][1] / res['numba'][1]:.1f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,4,16", help="comma-separated batch sizes")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--model", action="store_true", help="also time SPANet itself")
    parser.add_argument("--cpu", action="store_true", help="CPU IRNN timing (no GPU needed)")
    args = parser.parse_args(argv)
    if args.cpu:
        bench_cpu(args.reps)
        return 0
    if not torch.cuda.is_available():
        print("CUDA not available: this benchmark needs a GPU (use --cpu for the CPU timing)")
        return 2
    if triton is None:
        print("triton is not installed: this benchmark needs it")
        return 2
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"triton {triton.__version__}")
    check_agreement("cuda")
    bench_irnn([int(v) for v in args.batches.split(",")], args.reps)
    if args.model:
        bench_model(args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
