import pytest
import torch

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
    ({"channels": 1}, ValueError, "channels must be >= 2, got 1"),
    ({"channels": 8.0}, TypeError, "channels must be an int, got float"),
    ({"blocks_per_sab": 0}, ValueError, "blocks_per_sab must be >= 1"),
    ({"num_sabs": 0}, ValueError, "num_sabs must be >= 1"),
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
