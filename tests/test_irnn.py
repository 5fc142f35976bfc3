"""Tests of the four-direction IRNN (Eq. 5): reference, numba, Triton (interpreter), module."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from spanetlib.models import irnn as irnn_mod
from spanetlib.models.irnn import BACKENDS, DIRECTIONS, IRNN, irnn, irnn_concat, irnn_reference

# Trained SPANet weights lie in about -0.47 .. 1.0: cover negative, zero-ish and large ones.
TRAINED_LIKE = (-0.47, 1.0, 0.2, -0.1, 0.75, 0.0)


def _params(channels: int, dtype: torch.dtype = torch.float32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    base = torch.tensor([TRAINED_LIKE[i % len(TRAINED_LIKE)] for i in range(channels)],
                        dtype=dtype)
    weight = base.repeat(4, 1) + 0.05 * torch.arange(4, dtype=dtype)[:, None]
    bias = 0.2 * torch.randn(4, channels, generator=gen, dtype=dtype)
    return weight, bias


def _grads(backend, x, weight, bias, seed=1, concat=False):
    """Outputs and gradients of a random linear functional of the four outputs (of the one
    concatenated output of irnn_concat with ``concat``)."""
    x = x.detach().clone().requires_grad_()
    weight = weight.detach().clone().requires_grad_()
    bias = bias.detach().clone().requires_grad_()
    fn = irnn_concat if concat else irnn
    outs = fn(x, weight, bias, backend=backend)
    outs = (outs,) if concat else outs
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outs)
    loss.backward()
    return [o.detach() for o in outs], (x.grad, weight.grad, bias.grad)


def _pre_activations(x, weight, bias, outs):
    """a_j of Eq. 5 for every pixel and direction, from the outputs h (scan order per dir)."""
    pre = []
    for d, h in enumerate(outs):
        w = weight[d].view(1, -1, 1, 1)
        b = bias[d].view(1, -1, 1, 1)
        if d == 0:      # up: scans rows H-1 -> 0, so h_prev of row i is row i+1
            rec = torch.cat([w * h[:, :, 1:] + b, torch.zeros_like(h[:, :, :1])], dim=2)
        elif d == 1:    # right
            rec = torch.cat([torch.zeros_like(h[..., :1]), w * h[..., :-1] + b], dim=3)
        elif d == 2:    # down
            rec = torch.cat([torch.zeros_like(h[:, :, :1]), w * h[:, :, :-1] + b], dim=2)
        else:           # left
            rec = torch.cat([w * h[..., 1:] + b, torch.zeros_like(h[..., :1])], dim=3)
        pre.append(rec + x)
    return pre


# ------------------------------------------------------------------------- reference

def test_reference_matches_hand_computed_case():
    x = torch.tensor([[1.0, -2.0, 3.0],
                      [0.5, 1.0, -2.0]]).view(1, 1, 2, 3)
    weight = torch.tensor([[0.5], [0.5], [-1.0], [2.0]])      # up, right, down, left
    bias = torch.tensor([[0.1], [0.25], [0.75], [-0.5]])
    up, right, down, left = irnn_reference(x, weight, bias)
    # right: h0 = relu(x0), h_j = relu(0.5 h_{j-1} + 0.25 + x_j)
    expected_right = [[1.0, 0.0, 3.25], [0.5, 1.5, 0.0]]
    # left: from column 2 to 0 with w = 2, b = -0.5
    expected_left = [[7.5, 3.5, 3.0], [1.0, 0.5, 0.0]]
    # down: row 0 = relu(x), row 1 = relu(-1 * row0 + 0.75 + x1)
    expected_down = [[1.0, 0.0, 3.0], [0.25, 1.75, 0.0]]
    # up: row 1 = relu(x1), row 0 = relu(0.5 * row1 + 0.1 + x0)
    expected_up = [[1.35, 0.0, 3.1], [0.5, 1.0, 0.0]]
    for got, exp in ((up, expected_up), (right, expected_right), (down, expected_down),
                     (left, expected_left)):
        torch.testing.assert_close(got[0, 0], torch.tensor(exp), atol=1e-6, rtol=0)
    # every fast backend agrees on the hand case too
    expected = (expected_up, expected_right, expected_down, expected_left)
    for out_numba, exp in zip(irnn(x, weight, bias, backend="numba"), expected, strict=True):
        torch.testing.assert_close(out_numba[0, 0], torch.tensor(exp), atol=1e-6, rtol=0)


def test_directions_and_backends_constants():
    assert DIRECTIONS == ("up", "right", "down", "left")
    assert BACKENDS == tuple(sorted(BACKENDS))
    assert set(BACKENDS) == {"auto", "numba", "reference", "triton"}


# ------------------------------------------------------------------------- numba

# the last shape is large enough for the multi-threaded launch (irnn._SMALL_PROBLEM)
SHAPES = [(1, 3, 5, 7), (2, 4, 9, 6), (2, 3, 1, 10), (1, 2, 11, 1), (1, 1, 1, 1),
          (3, 2, 17, 13), (2, 4, 96, 97)]


def test_largest_shape_uses_thread_pool():
    bsz, ch, h, w = SHAPES[-1]
    assert bsz * ch * h * w >= irnn_mod._SMALL_PROBLEM


@pytest.mark.parametrize("form", ["irnn", "concat", "concat channels-last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_numba_matches_reference_values_and_grads(shape, dtype, form):
    # "irnn": the four NCHW outputs; "concat": irnn_concat's channels-last kernels, fed an
    # NCHW or a channels-last input.
    gen = torch.Generator().manual_seed(hash(shape) % 1000)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    if form == "concat channels-last":
        x = x.contiguous(memory_format=torch.channels_last)
    concat = form != "irnn"
    weight, bias = _params(shape[1], dtype)
    outs_ref, grads_ref = _grads("reference", x, weight, bias, concat=concat)
    outs_nb, grads_nb = _grads("numba", x, weight, bias, concat=concat)
    tol = {"atol": 1e-4, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 1e-12,
                                                                       "rtol": 1e-12}
    expected_shape = (shape[0], 4 * shape[1], *shape[2:]) if concat else shape
    for a, b in zip(outs_nb, outs_ref, strict=True):
        assert a.dtype == dtype and a.shape == expected_shape
        assert not concat or a.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(a, b, **tol)
    for name, a, b in zip(("x", "weight", "bias"), grads_nb, grads_ref, strict=True):
        if b is None:               # 1 x 1 planes: the reference graph never uses w, b
            assert shape[2:] == (1, 1), name
            b = torch.zeros_like(a)
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, **tol, msg=lambda m, n=name: f"grad {n}: {m}")


def test_concat_is_the_concatenation_for_every_backend():
    x = torch.randn(2, 3, 7, 5)
    weight, bias = _params(3)
    expected = torch.cat(irnn_reference(x, weight, bias), dim=1)
    for backend in ("auto", "numba", "reference"):
        torch.testing.assert_close(irnn_concat(x, weight, bias, backend=backend), expected)
    module = IRNN(3, backend="numba")
    with torch.no_grad():
        for d, name in enumerate(DIRECTIONS):
            getattr(module, f"{name}_weight").weight.copy_(weight[d].view(-1, 1, 1, 1))
            getattr(module, f"{name}_weight").bias.copy_(bias[d])
    torch.testing.assert_close(module.forward_concat(x), expected)
    with torch.inference_mode():
        torch.testing.assert_close(irnn_concat(x, weight, bias, backend="numba"), expected)
    half = irnn_concat(x.bfloat16(), weight, bias, backend="numba")
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(
        half.float(), torch.cat(irnn_reference(x.bfloat16().float(), weight, bias), 1),
        atol=2e-2, rtol=2e-2)


def test_numba_concat_gradcheck():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 2, 5, 4, generator=gen, dtype=torch.float64).requires_grad_()
    weight, bias = _params(2, torch.float64)
    inputs = (x, weight.requires_grad_(), bias.requires_grad_())
    assert torch.autograd.gradcheck(lambda *a: irnn_concat(*a, backend="numba"), inputs,
                                    eps=1e-6, atol=1e-8)


def test_concat_rejects_bad_input():
    x = torch.randn(1, 2, 3, 3)
    weight, bias = _params(2)
    with pytest.raises(ValueError, match="backend"):
        irnn_concat(x, weight, bias, backend="cuda")
    with pytest.raises(ValueError, match="4 x C"):
        irnn_concat(x, torch.zeros(4, 3), bias)


def test_numba_noncontiguous_input_and_partial_use():
    x = torch.randn(2, 3, 6, 5).to(memory_format=torch.channels_last)
    weight, bias = _params(3)
    ref = irnn_reference(x, weight, bias)
    got = irnn(x, weight, bias, backend="numba")
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b)
    # Only two outputs used, the grad of the others is materialised as zeros.
    xg = x.clone().requires_grad_()
    xr = x.clone().requires_grad_()
    up, _, _, left = irnn(xg, weight, bias, backend="numba")
    (up.sum() + 2 * left.sum()).backward()
    up_r, _, _, left_r = irnn_reference(xr, weight, bias)
    (up_r.sum() + 2 * left_r.sum()).backward()
    torch.testing.assert_close(xg.grad, xr.grad)


def test_numba_no_grad_and_inference_mode():
    x = torch.randn(1, 2, 4, 5, requires_grad=True)
    weight, bias = _params(2)
    weight.requires_grad_()
    ref = irnn_reference(x.detach(), weight.detach(), bias)
    with torch.no_grad():
        outs = irnn(x, weight, bias, backend="numba")
    assert all(o.grad_fn is None and not o.requires_grad for o in outs)
    with torch.inference_mode():
        outs_inf = irnn(x.detach(), weight.detach(), bias, backend="numba")
    for a, b, c in zip(outs, outs_inf, ref, strict=True):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, c)


def test_numba_half_precision_goes_through_float32():
    x = torch.randn(1, 2, 4, 6)
    weight, bias = _params(2)
    ref = irnn_reference(x.bfloat16().float(), weight, bias)
    got = irnn(x.bfloat16(), weight, bias, backend="numba")
    assert got[0].dtype == torch.bfloat16
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a.float(), b, atol=0.05, rtol=0.02)


@pytest.mark.parametrize("layout", ["nchw", "channels-last"])
def test_numba_bf16_without_grad_rounds_the_float32_scan_once(layout):
    # Inference in bf16 reads and writes bf16 directly (no float32 copies) but must compute
    # exactly what the float32 kernel gives on the widened input, rounded once to the nearest
    # even bf16 as torch rounds: bit for bit, NaN and infinities in the input included.
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 5, 9, 21, generator=gen).mul_(3).bfloat16()
    x[0, 1, 3, 4] = float("nan")
    x[1, 2, 5, 6] = float("inf")
    x[1, 3, 2, 2] = -float("inf")
    x[0, 4, 7, 7] = 3.0e38  # w * h + x overflows to inf in float32
    if layout == "channels-last":
        x = x.contiguous(memory_format=torch.channels_last)
    weight, bias = _params(5)
    weight[1, 4] = 1.0
    with torch.no_grad():
        got = irnn_concat(x, weight, bias, backend="numba")
        expected = irnn_concat(x.float(), weight, bias, backend="numba").bfloat16()
    assert got.dtype == torch.bfloat16 and got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got.view(torch.int16), expected.view(torch.int16))
    assert torch.isinf(got).any()  # the special values reached the rounding
    # the rounding is to nearest: not what truncating the float32 bits would give
    truncated = (irnn_concat(x.float(), weight, bias, backend="numba").view(torch.int32)
                 .bitwise_right_shift(16).to(torch.int16))
    assert not torch.equal(got.view(torch.int16), truncated)


def test_numba_bf16_with_grad_goes_through_float32():
    x = torch.randn(1, 3, 5, 6).bfloat16().requires_grad_()
    weight, bias = _params(3)
    weight.requires_grad_()
    out = irnn_concat(x, weight, bias, backend="numba")
    assert out.dtype == torch.bfloat16 and out.grad_fn is not None
    out.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16
    assert weight.grad is not None and torch.isfinite(weight.grad).all()
    with torch.no_grad():
        torch.testing.assert_close(out, irnn_concat(x.detach(), weight, bias, backend="numba"))


def test_small_problems_run_single_threaded_and_restore_threads(monkeypatch):
    import numba

    seen = []
    monkeypatch.setattr(irnn_mod, "_SMALL_PROBLEM", 10**9)
    before = numba.get_num_threads()
    irnn_mod._launch(lambda: seen.append(numba.get_num_threads()), 100)
    assert seen == [1] and numba.get_num_threads() == before
    monkeypatch.setattr(irnn_mod, "_SMALL_PROBLEM", 0)
    irnn_mod._launch(lambda: seen.append(numba.get_num_threads()), 100)
    assert seen == [1, before]


def test_auto_uses_numba_on_cpu(monkeypatch):
    calls = []
    real = irnn_mod._irnn_numba

    def spy(*args):
        calls.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(irnn_mod, "_irnn_numba", spy)
    x = torch.randn(1, 2, 3, 4)
    weight, bias = _params(2)
    outs = irnn(x, weight, bias)
    assert calls == [x.shape]
    for a, b in zip(outs, irnn_reference(x, weight, bias), strict=True):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------- gradcheck

def _kink_free_inputs(shape, seed):
    """float64 inputs whose pre-activations all satisfy |a| > 0.3 (far from the relu kink).

    With |w| <= 0.2, |b| <= 0.1 and 1 <= |x| <= 2: h <= (2 + 0.1) / 0.8, so the recurrent part
    |w h + b| <= 0.63 and |a| >= 1 - 0.63.
    """
    gen = torch.Generator().manual_seed(seed)
    sign = torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0)
    x = (sign * (1.0 + torch.rand(shape, generator=gen))).double()
    weight = torch.tensor([0.2, -0.2, 0.15, -0.1])[:, None].repeat(1, shape[1])
    weight = (weight * (1 - 0.1 * torch.rand(4, shape[1], generator=gen))).double()
    bias = (0.2 * torch.rand(4, shape[1], generator=gen) - 0.1).double()
    return x, weight, bias


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_gradcheck_float64(backend):
    x, weight, bias = _kink_free_inputs((1, 2, 3, 4), seed=3)
    outs = irnn_reference(x, weight, bias)
    pre = _pre_activations(x, weight, bias, outs)
    assert min(a.abs().min().item() for a in pre) > 0.3   # the construction holds
    assert any((a < 0).any() for a in pre) and any((a > 0).any() for a in pre)
    inputs = tuple(t.clone().requires_grad_() for t in (x, weight, bias))
    assert torch.autograd.gradcheck(lambda *a: irnn(*a, backend=backend), inputs,
                                    eps=1e-6, atol=1e-7)


def test_pre_activation_helper_reproduces_outputs():
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64)
    weight, bias = _params(2, torch.float64)
    outs = irnn_reference(x, weight, bias)
    for h, a in zip(outs, _pre_activations(x, weight, bias, outs), strict=True):
        torch.testing.assert_close(h, torch.relu(a))


# ------------------------------------------------------------------------- triton

TRITON_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import spanetlib.models.irnn as m
    assert "triton" not in sys.modules, "importing the module must not import triton"
    from spanetlib.models.irnn import irnn
    worst = 0.0
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        for shape in ((1, 2, 5, 7), (2, 3, 1, 4), (1, 1, 6, 1)):
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(shape, generator=gen, dtype=dtype)
            w = torch.tensor([[-0.47, 1.0, 0.2][:shape[1]]] * 4, dtype=dtype)
            w = w + 0.05 * torch.arange(4, dtype=dtype)[:, None]
            b = 0.2 * torch.randn(4, shape[1], generator=gen, dtype=dtype)
            res = {}
            for backend in ("triton", "reference"):
                leaves = [t.clone().requires_grad_() for t in (x, w, b)]
                outs = irnn(*leaves, backend=backend)
                g = torch.Generator().manual_seed(1)
                sum((o * torch.randn(o.shape, generator=g, dtype=dtype)).sum()
                    for o in outs).backward()
                res[backend] = [*outs, *(t.grad for t in leaves)]
            for name, a, c in zip(("up", "right", "down", "left", "dx", "dw", "db"),
                                  res["triton"], res["reference"]):
                assert a.dtype == c.dtype and a.shape == c.shape, (name, a.dtype, a.shape)
                err = (a - c).abs().max().item()
                assert err <= tol * (1 + c.abs().max().item()), (dtype, shape, name, err)
                worst = max(worst, err / (1 + c.abs().max().item()))
    # bfloat16 input: fp32 compute, bf16 outputs
    x = torch.randn(1, 2, 3, 5)
    w = torch.full((4, 2), -0.3)
    b = torch.full((4, 2), 0.1)
    outs = irnn(x.bfloat16(), w, b, backend="triton")
    assert outs[0].dtype == torch.bfloat16
    ref = irnn(x.bfloat16().float(), w, b, backend="reference")
    assert max((o.float() - r).abs().max().item() for o, r in zip(outs, ref)) < 0.05
    with torch.no_grad():
        plain = irnn(x, w, b, backend="triton")
    assert all(p.grad_fn is None for p in plain)
    print("TRITON_OK", worst)
""")


def test_triton_kernels_under_interpreter():
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", TRITON_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TRITON_OK" in proc.stdout


def test_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    weight, bias = _params(2)
    with pytest.raises(ValueError, match="backend 'triton' needs CUDA tensors, got x on cpu"):
        irnn(torch.randn(1, 2, 3, 3), weight, bias, backend="triton")


# ------------------------------------------------------------------------- module

def test_module_parameter_names_shapes_and_init():
    mod = IRNN(3, init_weight=0.2)
    keys = sorted(mod.state_dict())
    assert keys == sorted(f"{d}_weight.{p}" for d in DIRECTIONS for p in ("weight", "bias"))
    for d in DIRECTIONS:
        conv = getattr(mod, f"{d}_weight")
        assert isinstance(conv, torch.nn.Conv2d) and conv.groups == 3
        assert conv.weight.shape == (3, 1, 1, 1) and conv.bias.shape == (3,)
        assert torch.all(conv.weight == 0.2) and torch.all(conv.bias == 0)
    weight, bias = mod.stacked_parameters()
    assert weight.shape == (4, 3) and bias.shape == (4, 3)
    with torch.no_grad():
        mod.left_weight.weight.fill_(-0.4)
    assert torch.all(mod.stacked_parameters()[0][3] == -0.4)


def test_module_forward_matches_function_and_backend_switch():
    mod = IRNN(2, backend="reference")
    with torch.no_grad():
        for i, d in enumerate(DIRECTIONS):
            getattr(mod, f"{d}_weight").weight.fill_(TRAINED_LIKE[i])
            getattr(mod, f"{d}_weight").bias.fill_(0.1 * i - 0.15)
    x = torch.randn(2, 2, 5, 4)
    ref = mod(x)
    mod.backend = "numba"
    assert mod.backend == "numba" and "backend='numba'" in repr(mod)
    for a, b in zip(mod(x), ref, strict=True):
        torch.testing.assert_close(a, b)
    weight, bias = mod.stacked_parameters()
    for a, b in zip(irnn(x, weight, bias, backend="numba"), ref, strict=True):
        torch.testing.assert_close(a, b)
    # every parameter receives a gradient through the numba path
    sum(o.sum() for o in mod(x)).backward()
    for name, p in mod.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="unknown IRNN backend 'cupy'"):
        mod.backend = "cupy"
    assert mod.backend == "numba"


def test_module_loads_checkpoint_style_keys():
    mod = IRNN(2)
    state = {f"{d}_weight.weight": torch.full((2, 1, 1, 1), 0.1 * i)
             for i, d in enumerate(DIRECTIONS)}
    state.update({f"{d}_weight.bias": torch.full((2,), -0.1 * i)
                  for i, d in enumerate(DIRECTIONS)})
    mod.load_state_dict(state)
    weight, bias = mod.stacked_parameters()
    torch.testing.assert_close(weight[:, 0], torch.tensor([0.0, 0.1, 0.2, 0.3]))
    torch.testing.assert_close(bias[:, 1], torch.tensor([0.0, -0.1, -0.2, -0.3]))


# ------------------------------------------------------------------------- errors

def test_errors():
    weight, bias = _params(2)
    x = torch.randn(1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"x must be B x C x H x W \(4 dims\), got shape "
                                         r"\(2, 3, 3\)"):
        irnn(x[0], weight, bias)
    with pytest.raises(ValueError, match=r"weight must have shape 4 x C = \(4, 2\).*got "
                                         r"\(4, 3\)"):
        irnn(x, torch.zeros(4, 3), bias)
    with pytest.raises(ValueError, match=r"bias must have shape 4 x C = \(4, 2\).*got \(2,\)"):
        irnn(x, weight, torch.zeros(2))
    with pytest.raises(ValueError, match="unknown IRNN backend 'cuda'; expected one of"):
        irnn(x, weight, bias, backend="cuda")
    with pytest.raises(ValueError, match="H >= 1 and W >= 1, got shape"):
        irnn(torch.zeros(1, 2, 0, 3), weight, bias)
    with pytest.raises(TypeError, match="x must be a floating-point tensor, got dtype "
                                        "torch.int64"):
        irnn(torch.zeros(1, 2, 3, 3, dtype=torch.long), weight, bias)
    with pytest.raises(TypeError, match="weight must be a torch.Tensor, got list"):
        irnn(x, [[0.2] * 2] * 4, bias)
    with pytest.raises(ValueError, match="backend 'numba' runs on CPU tensors only, got x on "
                                         "meta"):
        irnn(x.to("meta"), weight.to("meta"), bias.to("meta"), backend="numba")
    with pytest.raises(ValueError, match="weight must be on x's device meta, got cpu"):
        irnn(x.to("meta"), weight, bias.to("meta"))
    with pytest.raises(ValueError, match="unknown IRNN backend 'fast'"):
        IRNN(2, backend="fast")
    with pytest.raises(ValueError, match="channels: expected an int >= 1, got 0"):
        IRNN(0)


def test_numba_leaves_torch_thread_count_alone():
    """Numba's first parallel launch starts OpenMP, which used to reset torch's thread count."""
    code = ("import torch; torch.set_num_threads(1)\n"
            "from spanetlib.models.irnn import irnn_concat\n"
            "x = torch.rand(1, 8, 160, 160).contiguous(memory_format=torch.channels_last)\n"
            "irnn_concat(x, torch.full((4, 8), 0.2), torch.zeros(4, 8), backend='numba')\n"
            "print(torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, timeout=300)
    assert out.stdout.split()[-1] == "1"
