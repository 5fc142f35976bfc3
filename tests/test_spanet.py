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


def test_every_convolution_of_the_cpu_path_reads_channels_last():
    # A convolution fed another layout copies its input first (a strided 128-channel copy
    # after the direction weighting once cost a quarter of the forward pass).
    fast, _ = fast_and_plain()
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
