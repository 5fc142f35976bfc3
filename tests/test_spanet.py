import contextlib

import pytest
import torch

from spanetlib.models import spanet as spanet_module
from spanetlib.models.irnn import IRNN
from spanetlib.models.spanet import (
    TABLE4_PARAMETER_COUNTS,
    TABLE4_VARIANTS,
    SPANet,
    SpatialAttentiveModule,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def small(**kwargs) -> SPANet:
    torch.manual_seed(0)
    kwargs.setdefault("irnn_backend", "reference")
    return SPANet(channels=8, **kwargs)


@pytest.mark.parametrize("name", list(TABLE4_VARIANTS))
def test_variant_shapes_and_gradients(name):
    kwargs = TABLE4_VARIANTS[name]
    model = small(**kwargs)
    x = torch.rand(2, 3, 17, 23)
    image, attention = model(x)
    assert image.shape == (2, 3, 17, 23)
    assert torch.isfinite(image).all()
    if kwargs["sam_mode"] == "none":
        assert attention is None
        loss = image.square().mean()
    else:
        assert attention.shape == (2, 1, 17, 23)
        assert torch.isfinite(attention).all()
        assert 0 <= attention.min() and attention.max() <= 1
        loss = image.square().mean() + attention.mean()
    loss.backward()
    direction_off = kwargs.get("direction_attention", True) is False
    for pname, param in model.named_parameters():
        if direction_off and ".attention_layer." in pname:
            assert param.grad is None, f"{pname} must receive no gradient"
            continue
        assert param.grad is not None, f"{pname} received no gradient"
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


def test_direction_attention_branch_is_idle_when_off():
    model = small(direction_attention=False)
    calls = []
    model.sams[0].attention_layer.register_forward_hook(lambda *a: calls.append(1))
    model(torch.rand(1, 3, 9, 11))
    assert calls == []
    on = small(direction_attention=True)
    on.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        a_off, a_on = model(x)[1], on(x)[1]
    assert (a_off - a_on).abs().max() > 1e-4  # the branch changes the map when applied


@pytest.mark.parametrize(("mode", "expected_calls"),
                         [("single", [1]), ("shared", [4]), ("unshared", [1, 1, 1, 1])])
def test_sam_calls_per_mode(mode, expected_calls):
    model = small(sam_mode=mode)
    calls = [0] * len(model.sams)
    for k, sam in enumerate(model.sams):
        sam.register_forward_hook(lambda *a, k=k: calls.__setitem__(k, calls[k] + 1))
    _, attention = model(torch.rand(1, 3, 8, 8))
    assert calls == expected_calls
    assert attention is not None


def test_parameter_counts_per_variant():
    counts = {name: n_params(SPANet(**kw)) for name, kw in TABLE4_VARIANTS.items()}
    assert counts == TABLE4_PARAMETER_COUNTS
    sam = n_params(SpatialAttentiveModule(32))
    assert sam == 90_500
    assert counts["Single SAM"] == counts["Shared SAMs (SPANet)"]
    assert counts["Unshared SAMs"] - counts["Shared SAMs (SPANet)"] == 3 * sam
    assert counts["Shared SAMs (SPANet)"] - counts["ResNet (no SAM)"] == sam
    model = SPANet(direction_attention=False)
    idle = n_params(model.sams[0].attention_layer)
    assert idle == 7_012 and counts["No direction attention"] - idle == 276_704


def test_block_layout_is_configurable():
    model = SPANet(channels=4, num_pre_blocks=1, blocks_per_sab=2, num_post_blocks=0,
                   num_sabs=2, sam_mode="unshared", irnn_backend="reference")
    assert len(model.blocks) == 1 + 2 * 2 and len(model.sams) == 2
    assert model(torch.rand(1, 3, 5, 7))[0].shape == (1, 3, 5, 7)


def test_rebuild_from_model_kwargs():
    model = small(sam_mode="unshared")
    clone = SPANet(**model.model_kwargs)
    clone.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        assert torch.equal(model(x)[0], clone(x)[0])


def test_set_irnn_backend():
    model = small()
    model.set_irnn_backend("numba")
    irnns = [m for m in model.modules() if isinstance(m, IRNN)]
    assert len(irnns) == 2 and all(m.backend == "numba" for m in irnns)
    assert model.irnn_backend == "numba"
    with pytest.raises(ValueError, match="backend must be one of"):
        model.set_irnn_backend("cuda")


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"sam_mode": "double"}, ValueError, "sam_mode must be one of .* got 'double'"),
    ({"irnn_backend": "fast"}, ValueError, "irnn_backend must be one of"),
    ({"channels": 1}, ValueError, "channels: expected an int >= 2, got 1"),
    ({"channels": 8.0}, ValueError, "channels: expected an int >= 2, got 8.0"),
    ({"blocks_per_sab": 0}, ValueError, "blocks_per_sab: expected an int >= 1"),
    ({"num_sabs": 0}, ValueError, "num_sabs: expected an int >= 1"),
    ({"direction_attention": 1}, TypeError, "direction_attention must be a bool"),
])
def test_constructor_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        SPANet(**kwargs)


def test_forward_rejects_wrong_shape():
    with pytest.raises(ValueError,
                       match=r"expected a B x 3 x H x W tensor, got shape \(1, 1, 8, 8\)"):
        small()(torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_direction_maps_weight_their_own_direction(backend):
    # The SAM written out by hand: map k of the branch multiplies IRNN direction k (up, right,
    # down, left) in both rounds, before the 4C -> C convolution.
    torch.manual_seed(3)
    sam = SpatialAttentiveModule(4, direction_attention=True, irnn_backend=backend).eval()
    x = torch.rand(2, 4, 9, 7)
    with torch.no_grad():
        maps = sam.attention_layer(x)

        def weighted(directions):
            return torch.cat([d * maps[:, k:k + 1] for k, d in enumerate(directions)], dim=1)

        out = sam.conv2(weighted(sam.irnn1(sam.conv_in(x))))
        out = sam.conv3(weighted(sam.irnn2(out)))
        expected = torch.sigmoid(sam.conv_out(torch.relu(out)))
        torch.testing.assert_close(sam(x), expected)
        swapped = maps.flip(1)  # the same maps on the wrong directions give another result
        sam.attention_layer.forward = lambda _x: swapped
        assert (sam(x) - expected).abs().max() > 1e-4


# --------------------------------------------------------------------------------------------
# The default CPU path (channels-last features, numba IRNN, in-place inference updates, heap
# reuse) against the plain path: the same weights, NCHW throughout, the reference IRNN.
# --------------------------------------------------------------------------------------------


def fast_and_plain(**kwargs) -> tuple[SPANet, SPANet]:
    """A default-backend model and its reference-IRNN twin (same weights)."""
    torch.manual_seed(0)
    fast = SPANet(channels=8, **kwargs)
    with torch.no_grad():  # IRNN weights like trained ones (up to 1.0), so scans reach far
        for name, param in fast.named_parameters():
            if "irnn" in name and name.endswith(".weight"):
                param.uniform_(-0.5, 1.0)
    plain = SPANet(**{**fast.model_kwargs, "irnn_backend": "reference"})
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def plain_forward(model: SPANet, x: torch.Tensor):
    """The network as plain PyTorch runs it: NCHW tensors, no CPU measures."""
    return model._features_to_outputs(x)


@pytest.mark.parametrize("name", list(TABLE4_VARIANTS))
def test_default_forward_matches_plain_path(name):
    fast, plain = fast_and_plain(**TABLE4_VARIANTS[name])
    assert fast.irnn_backend == "auto"  # the numba kernel on the CPU
    x = torch.rand(2, 3, 19, 26)
    before = x.clone()
    with torch.no_grad():
        image, attention = fast.eval()(x)
        expected, expected_attention = plain_forward(plain.eval(), x)
    assert torch.equal(x, before)  # the in-place inference updates never touch the input
    assert image.shape == (2, 3, 19, 26) and image.is_contiguous()  # NCHW, as before
    torch.testing.assert_close(image, expected, atol=1e-5, rtol=1e-5)
    if expected_attention is None:
        assert attention is None
    else:
        assert attention.shape == (2, 1, 19, 26) and attention.is_contiguous()
        torch.testing.assert_close(attention, expected_attention, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["Shared SAMs (SPANet)", "No direction attention"])
def test_default_forward_gradients_match_plain_path(name):
    # float64, so that the two paths agree to rounding of the order of 1e-12
    fast, plain = fast_and_plain(**TABLE4_VARIANTS[name])
    fast, plain = fast.double(), plain.double()
    x = torch.rand(2, 3, 11, 14, dtype=torch.float64)
    weights = torch.rand(2, 3, 11, 14, dtype=torch.float64)
    grads = []
    for model, run in ((fast, fast), (plain, lambda t: plain_forward(plain, t))):
        model.zero_grad()
        xg = x.clone().requires_grad_()
        image, attention = run(xg)
        ((image * weights).sum() + attention.square().sum()).backward()
        grads.append({"x": xg.grad, **{n: p.grad for n, p in model.named_parameters()
                                       if p.grad is not None}})
    assert grads[0].keys() == grads[1].keys()
    for key, grad in grads[1].items():
        torch.testing.assert_close(grads[0][key], grad, atol=1e-10, rtol=1e-9,
                                   msg=lambda m, k=key: f"gradient of {k}: {m}")


def test_every_convolution_of_the_cpu_path_reads_channels_last(monkeypatch):
    # A convolution fed another layout copies its input first (a strided 128-channel copy
    # after the direction weighting once cost a quarter of the forward pass).
    fast, _ = fast_and_plain()
    fast.fuse_inference = False  # the separate passes: every convolution is a module call
    layouts = {}

    def record(name, args):
        layouts.setdefault(name, args[0].is_contiguous(memory_format=torch.channels_last))

    for name, module in fast.named_modules():
        if isinstance(module, torch.nn.Conv2d) and ".irnn" not in name:
            module.register_forward_pre_hook(lambda _m, args, name=name: record(name, args))
    with torch.no_grad():
        fast.eval()(torch.rand(1, 3, 12, 10))
    assert len(layouts) == sum(isinstance(m, torch.nn.Conv2d) for n, m in fast.named_modules()
                               if ".irnn" not in n)
    assert all(layouts.values()), [n for n, ok in layouts.items() if not ok]
    # the fused path: its oneDNN convolutions (and the module calls it keeps) read NHWC too
    fused_layouts = []
    for name in ("_conv_unary", "_conv_add_relu_"):
        real = getattr(spanet_module, name)

        def spy(conv, x, *args, real=real):
            fused_layouts.append(x.is_contiguous(memory_format=torch.channels_last))
            return real(conv, x, *args)

        monkeypatch.setattr(spanet_module, name, spy)
    fast.fuse_inference = True
    layouts.clear()
    with torch.no_grad():
        fast(torch.rand(1, 3, 12, 10))
    assert fast.last_forward_fused and fused_layouts and all(fused_layouts)
    assert layouts and all(layouts.values())


def test_bf16_autocast_close_to_float32():
    fast, _ = fast_and_plain()
    x = torch.rand(1, 3, 24, 31)
    with torch.no_grad():
        image, attention = fast.eval()(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            image16, attention16 = fast(x)
    assert image16.dtype == torch.bfloat16 and image16.is_contiguous()
    err = (image16.float() - image).abs().max().item()
    assert 1e-4 < err < 0.05 * image.abs().max().item()  # bf16 was used, and it stays close
    assert (attention16.float() - attention).abs().max().item() < 0.05


def test_cpu_forward_reuses_freed_memory(monkeypatch):
    entered = []

    @contextlib.contextmanager
    def spy():
        entered.append(1)
        yield

    monkeypatch.setattr(spanet_module, "reuse_freed_memory", spy)
    model, _ = fast_and_plain()
    with torch.no_grad():
        model.eval()(torch.rand(1, 3, 8, 8))
    assert entered == [1]


# --------------------------------------------------------------------------------------------
# Fused inference (oneDNN post-ops) against the separate passes.
# --------------------------------------------------------------------------------------------

needs_fused_ops = pytest.mark.skipif(not spanet_module.fused_ops_available(),
                                     reason="this torch build lacks oneDNN's fused convolutions")


def conv_depth(model: SPANet) -> int:
    """Convolutions and IRNNs on the longest path from the input to the image.

    conv_in, three convolutions per block, conv_out; a path through a SAM (conv_in, IRNN,
    conv2, IRNN, conv3, conv_out, and before the first IRNN's weighting the three of the
    direction branch's instead of its conv_in) enters its SARB after conv2, in place of the
    block's conv1 and conv2.
    """
    sam = 6 + model.direction_attention
    entries = {"none": 0, "single": 1}.get(model.sam_mode, model.num_sabs)
    return 2 + 3 * len(model.blocks) + entries * (sam - 2)


@needs_fused_ops
@pytest.mark.parametrize("name", list(TABLE4_VARIANTS))
def test_fused_inference_matches_separate_passes(name):
    torch.manual_seed(1)
    model = SPANet(**TABLE4_VARIANTS[name]).eval()  # the full size: C = 32, 17 blocks
    x = torch.rand(1, 3, 21, 18)
    with torch.inference_mode():
        model.fuse_inference = False
        expected, expected_attention = model(x)
        assert not model.last_forward_fused
        model.fuse_inference = True
        image, attention = model(x)
        assert model.last_forward_fused
    assert image.is_contiguous() and image.shape == expected.shape
    # Each layer rounds its result to float32 (relative eps) in another order than the
    # separate passes (post-ops, conv3 applied to h * A rather than conv3(h) * A); to first
    # order the relative differences add up over the depth of the network.
    eps = torch.finfo(torch.float32).eps
    depth = conv_depth(model)
    tol = eps * depth * expected.abs().max().item()
    assert tol <= 1e-5 * expected.abs().max().item()  # the 1e-5 relative goal
    err = (image - expected).abs().max().item()
    assert err <= tol, (err, tol)
    if expected_attention is None:
        assert attention is None
    else:
        assert attention.is_contiguous()
        # a sigmoid in [0, 1] after 5-8 layers of the SAM
        assert (attention - expected_attention).abs().max().item() <= eps * depth


@needs_fused_ops
@pytest.mark.parametrize("context", [torch.inference_mode, torch.no_grad])
def test_fused_path_taken_for_inference_only(context, monkeypatch):
    calls = []
    for name in ("_conv_unary", "_conv_add_relu_"):
        real = getattr(spanet_module, name)
        monkeypatch.setattr(spanet_module, name,
                            lambda *a, real=real, name=name: calls.append(name) or real(*a))
    model, _ = fast_and_plain()
    model.eval()
    x = torch.rand(1, 3, 9, 10)
    with context():
        model(x)
    assert model.last_forward_fused
    blocks = len(model.blocks)
    # conv_in; two unary + one in-place add per block; per SAM call: conv3, conv_out and the
    # three of the direction branch
    assert calls.count("_conv_add_relu_") == blocks
    assert calls.count("_conv_unary") == 1 + 2 * blocks + 4 * 5
    calls.clear()
    model(x)  # gradients enabled: the autograd path, exact as before
    assert not model.last_forward_fused and calls == []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)  # the fused ops know nothing of autocast
    assert not model.last_forward_fused and calls == []
    with torch.no_grad():
        model.double()(x.double())  # oneDNN's fused convolutions are float32 here
    assert not model.last_forward_fused and calls == []


def test_fused_path_falls_back_where_the_ops_are_missing(monkeypatch):
    model, _ = fast_and_plain()
    model.eval()
    x = torch.rand(1, 3, 9, 10)
    model.fuse_inference = False
    with torch.no_grad():
        expected = model(x)[0]
    model.fuse_inference = True
    # a torch build without the ops
    monkeypatch.setattr(spanet_module, "_FUSED_OPS_OK", None)
    monkeypatch.setattr(spanet_module, "_pointwise_op", lambda name: None)
    assert not spanet_module.fused_ops_available()
    with torch.no_grad():
        image = model(x)[0]
    assert not model.last_forward_fused
    assert torch.equal(image, expected)
    # ops that exist but fail (or compute something else) on the probe
    monkeypatch.setattr(spanet_module, "_FUSED_OPS_OK", None)

    def broken(*args, **kwargs):
        raise RuntimeError("oneDNN: unimplemented")

    fake = type("Op", (), {"__call__": staticmethod(broken), "binary": staticmethod(broken)})()
    monkeypatch.setattr(spanet_module, "_pointwise_op", lambda name: fake)
    assert not spanet_module.fused_ops_available()
    with torch.no_grad():
        assert torch.equal(model(x)[0], expected)
    assert not model.last_forward_fused


@needs_fused_ops
def test_fused_path_leaves_a_channels_last_input_alone():
    model, _ = fast_and_plain()
    x = torch.rand(1, 3, 11, 9).contiguous(memory_format=torch.channels_last)
    before = x.clone()
    with torch.inference_mode():
        model.eval()(x)
    assert model.last_forward_fused
    assert torch.equal(x, before)
