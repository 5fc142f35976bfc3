"""Tests for the Table 2 baselines (DDN, RESCAN, PReNet) and the guided filter."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from spanetlib.models import baselines, count_parameters
from spanetlib.models.baselines import (
    BASELINES,
    DDN,
    PARAMETER_COUNTS,
    PRENET_FAMILIES,
    RESCAN,
    PReNet,
    box_filter,
    guided_filter,
)

# Small but structurally complete variants for the fast checks (every code path is used).
SMALL = {
    "DDN": dict(channels=4, num_blocks=2, radius=3),
    "RESCAN": dict(channels=8, stages=3, depth=5, se_reduction=2),
    "PReNet": dict(channels=6, stages=3, num_res_blocks=2),
}
VARIANTS = [
    ("DDN", {}), ("DDN", {"batch_norm": False}),
    ("RESCAN", {}), ("RESCAN", {"unit": "lstm"}), ("RESCAN", {"unit": "rnn"}),
    ("PReNet", {}), ("PReNet", {"recurrent": "gru"}), ("PReNet", {"recurrent": "none"}),
    ("PReNet", {"shared_res_blocks": True}),
    ("PReNet", {"recurrent": "none", "shared_res_blocks": True}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for n, kw in VARIANTS]


def _make(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return BASELINES[name](**{**SMALL[name], **kwargs})


@pytest.fixture
def image() -> torch.Tensor:
    return torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(1))


def test_registry() -> None:
    assert BASELINES == {"DDN": DDN, "RESCAN": RESCAN, "PReNet": PReNet}


@pytest.mark.parametrize("name", list(BASELINES))
def test_default_shape_contract(name: str, image: torch.Tensor) -> None:
    model = BASELINES[name]().eval()
    with torch.no_grad():
        out = model(image)
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0].shape == image.shape and out[1] is None
    assert torch.isfinite(out[0]).all()


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=IDS)
def test_variant_shape_grad_determinism(name: str, kwargs: dict, image: torch.Tensor) -> None:
    model = _make(name, **kwargs).train()
    derained, attention = model(image)
    assert derained.shape == (1, 3, 20, 28) and attention is None
    assert not torch.isnan(derained).any()
    derained.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} got a zero gradient"
    model.eval()
    with torch.no_grad():
        first, _ = model(image)
        second, _ = model(image)
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", list(BASELINES))
def test_parameter_counts_match_table_and_docstring(name: str) -> None:
    count = count_parameters(BASELINES[name]())
    assert PARAMETER_COUNTS[name] == count
    shown = dict(re.findall(r"^\s+(\w+): ([\d,]+)$", baselines.__doc__, flags=re.M))
    assert int(shown[name].replace(",", "")) == count


def test_count_parameters_trainable_only() -> None:
    model = torch.nn.Linear(3, 2)  # 8 parameters
    model.bias.requires_grad_(False)
    assert count_parameters(model) == 6
    assert count_parameters(model, trainable_only=False) == 8


@pytest.mark.parametrize(("cls", "kwargs", "match"), [
    (DDN, {"channels": 0}, "channels: expected an int >= 1, got 0"),
    (DDN, {"num_blocks": -1}, "num_blocks: expected an int >= 0"),
    (DDN, {"radius": 0}, "radius: expected an int >= 1"),
    (DDN, {"eps": 0.0}, "eps must be > 0"),
    (RESCAN, {"depth": 2}, "depth: expected an int >= 3, got 2"),
    (RESCAN, {"stages": 0}, "stages: expected an int >= 1"),
    (RESCAN, {"unit": "transformer"}, "unit must be one of"),
    (RESCAN, {"se_reduction": 0}, "se_reduction: expected an int >= 1"),
    (PReNet, {"stages": 0}, "stages: expected an int >= 1"),
    (PReNet, {"recurrent": "LSTM"}, "recurrent must be one of"),
    (PReNet, {"channels": -3}, "channels: expected an int >= 1"),
    (PReNet, {"num_res_blocks": 0, "shared_res_blocks": True}, "needs num_res_blocks >= 1"),
])
def test_bad_constructor_arguments(cls, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_non_int_argument_is_refused() -> None:
    with pytest.raises(ValueError, match="channels: expected an int >= 1, got 32.0"):
        PReNet(channels=32.0)
    with pytest.raises(TypeError, match="shared_res_blocks must be a bool, got str"):
        PReNet(shared_res_blocks="yes")


@pytest.mark.parametrize("name", list(BASELINES))
def test_bad_input_shape(name: str) -> None:
    match = r"expected a B x 3 x H x W tensor, got shape \(1, 1, 8, 8\)"
    with pytest.raises(ValueError, match=match):
        _make(name)(torch.rand(1, 1, 8, 8))


def _zero(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()


@pytest.mark.parametrize("train", [False, True])
def test_ddn_zeroed_last_layer_is_identity(image: torch.Tensor, train: bool) -> None:
    model = _make("DDN")
    _zero(model.tail)  # conv + BN of the last layer: the predicted residual is 0
    model.train(train)
    with torch.no_grad():
        out, _ = model(image)
    torch.testing.assert_close(out, image, rtol=0, atol=1e-7)


@pytest.mark.parametrize("name, output_conv", [
    ("RESCAN", lambda model: model.decoder[-1]),   # the 1x1 conv that outputs the rain layer
    ("PReNet", lambda model: model.f_out),
])
def test_zeroed_output_conv_is_identity(image: torch.Tensor, name, output_conv) -> None:
    model = _make(name).eval()
    _zero(output_conv(model))
    with torch.no_grad():
        stages = model.stage_outputs(image)
    assert len(stages) == 3
    for out in stages:
        torch.testing.assert_close(out, image, rtol=0, atol=0)


def test_rescan_is_additive_over_stages(image: torch.Tensor) -> None:
    """R_s = R_{s-1} + CAN(y - R_{s-1}): the stage-1 output equals y - decoder(CAN(y))."""
    model = _make("RESCAN").eval()
    with torch.no_grad():
        stages = model.stage_outputs(image)
        feat = image
        for layer in model.recurrent:
            feat, _ = layer(feat, None)
        expected = image - model.decoder(feat)
    torch.testing.assert_close(stages[0], expected)
    assert not torch.allclose(stages[0], stages[1])  # later stages keep refining


def test_prenet_shares_weights_across_stages() -> None:
    two = PReNet(channels=4, stages=2, num_res_blocks=1)
    six = PReNet(channels=4, stages=6, num_res_blocks=1)
    assert count_parameters(two) == count_parameters(six)


def test_prenet_first_stage_matches_definition(image: torch.Tensor) -> None:
    """x^1 = y + f_out(f_res(h)), h from the ConvLSTM on f_in(concat(y, y)) with zero state."""
    model = _make("PReNet", recurrent="lstm").eval()
    with torch.no_grad():
        feat = model.f_in(torch.cat((image, image), 1))
        zeros = torch.zeros(1, 6, 20, 28)
        h, _ = model.f_recurrent(feat, zeros, zeros)
        expected = image + model.f_out(model.f_res(h))
        got = model.stage_outputs(image)[0]
    torch.testing.assert_close(got, expected)


# ----------------------------------------------------------------------------- guided filter

@pytest.mark.parametrize("radius", [0, 1, 4, 40])
def test_box_filter_matches_avg_pool(radius: int) -> None:
    x = torch.rand(2, 3, 9, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    got = box_filter(x, radius)
    if radius <= 4:
        ref = F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    else:  # window larger than the image: every pixel sees the whole image
        ref = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    torch.testing.assert_close(got, ref)


def test_box_filter_gradcheck() -> None:
    x = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: box_filter(t, 2), (x,))


def test_guided_filter_closed_forms() -> None:
    x = torch.rand(1, 3, 16, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    const = torch.full_like(x, 0.3)
    torch.testing.assert_close(guided_filter(const, const, 3, 1.0), const)
    # eps -> infinity: a -> 0, b -> mean, output -> box(box(x)).
    torch.testing.assert_close(guided_filter(x, x, 3, 1e12), box_filter(box_filter(x, 3), 3))
    # eps -> 0 with a textured guide: a -> 1, b -> 0, the filter preserves the image.
    torch.testing.assert_close(guided_filter(x, x, 3, 1e-12), x, rtol=0, atol=1e-6)


def test_guided_filter_gradcheck() -> None:
    x = torch.rand(1, 1, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: guided_filter(t, t, 2, 0.1), (x,))


def test_guided_filter_bad_arguments() -> None:
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="same shape"):
        guided_filter(x, x[:, :1], 2, 1.0)
    with pytest.raises(ValueError, match="eps must be > 0, got -1"):
        guided_filter(x, x, 2, -1.0)
    with pytest.raises(ValueError, match="radius: expected an int >= 0, got -1"):
        box_filter(x, -1)
    with pytest.raises(ValueError, match=r"B x C x H x W tensor, got shape \(8, 8\)"):
        box_filter(x[0, 0], 1)


def test_ddn_decomposition_sums_to_input(image: torch.Tensor) -> None:
    base, detail = DDN().decompose(image)
    torch.testing.assert_close(base + detail, image)
    assert detail.abs().mean() > 0 and base.std() < image.std()  # base is smoother


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=IDS)
def test_identity_init(name: str, kwargs: dict, image: torch.Tensor) -> None:
    model = _make(name, identity_init=True, **kwargs).train()
    out, _ = model(image)
    torch.testing.assert_close(out, image, rtol=0, atol=1e-7)
    out.square().mean().backward()  # the zeroed layer still learns
    last = {"DDN": lambda m: m.tail, "RESCAN": lambda m: m.decoder[-1],
            "PReNet": lambda m: m.f_out}[name](model)
    assert any(p.grad.abs().sum() > 0 for p in last.parameters())
    default = _make(name, **kwargs)
    assert not torch.allclose(default(image)[0], image)


# ----------------------------------------------------------------------------- PReNet families

#: Parameters of the authors' released families (their README / networks.py, C = 32).
PRENET_FAMILY_PARAMETERS = {"PReNet6": 168_963, "PReNet6_r": 94_979, "PRN6": 95_107,
                            "PRN6_r": 21_123}


@pytest.mark.parametrize("family", list(PRENET_FAMILY_PARAMETERS))
def test_prenet_family_factories(family: str, image: torch.Tensor) -> None:
    model = PRENET_FAMILIES[family]()
    assert count_parameters(model) == PRENET_FAMILY_PARAMETERS[family]
    assert (model.f_recurrent is None) == family.startswith("PRN")
    assert model.stages == 6 and model.channels == 32
    small = PRENET_FAMILIES[family](channels=4, stages=2)  # defaults merge with overrides
    assert (small.channels, small.stages) == (4, 2)
    with torch.no_grad():
        out, attention = small.eval()(image)
    assert out.shape == image.shape and attention is None and torch.isfinite(out).all()


def test_prenet_default_is_the_prenet6_family() -> None:
    assert PARAMETER_COUNTS["PReNet"] == PRENET_FAMILY_PARAMETERS["PReNet6"]
    assert list(PReNet().state_dict()) == list(PRENET_FAMILIES["PReNet6"]().state_dict())


def test_prenet_shared_res_block_is_applied_five_times(image: torch.Tensor) -> None:
    """_r: one ResBlock, weights shared by its num_res_blocks applications."""
    torch.manual_seed(0)
    model = PReNet(channels=4, stages=1, num_res_blocks=5, recurrent="none",
                   shared_res_blocks=True).eval()
    block = model.f_res.block
    with torch.no_grad():
        feat = model.f_in(torch.cat((image, image), 1))
        for _ in range(5):
            feat = torch.relu(block.body(feat) + feat)
        expected = image + model.f_out(feat)
        torch.testing.assert_close(model(image)[0], expected)
        three = PReNet(channels=4, stages=1, num_res_blocks=3, recurrent="none",
                       shared_res_blocks=True).eval()
        three.load_state_dict(model.state_dict())  # same weights, fewer applications
        assert not torch.allclose(three(image)[0], expected)
