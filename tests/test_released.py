"""PReNet's released weights: recognition by keys and shapes, and the authors' outputs.

The four ``*_random.pth`` files in ``tests/data/prenet`` are in exactly the released format
(legacy ``torch.save`` from CUDA tensors, the authors' keys) with random weights; the npz holds
the outputs of the authors' own network code on a fixed input (see
``/work/shared/prenet-reference/README.md`` for where they come from).
"""

from __future__ import annotations

import copy
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spanetlib.io.errors import InputError
from spanetlib.io.files import to_uint8
from spanetlib.models import count_parameters, load_pretrained
from spanetlib.models.baselines import PRENET_FAMILIES, PReNet
from spanetlib.models.pretrained import describe_weights
from spanetlib.models.released import (
    RELEASED_FORMATS,
    convert_released_prenet,
    describe_released_formats,
    match_released_format,
    released_model_from_state_dict,
)

DATA = Path(__file__).parent / "data" / "prenet"
FAMILIES = ("PReNet6", "PReNet6_r", "PRN6", "PRN6_r")
#: The reference README's table: tensors and parameters per family.
README_TABLE = {"PReNet6": (32, 168_963), "PReNet6_r": (16, 94_979), "PRN6": (24, 95_107),
                "PRN6_r": (8, 21_123)}
#: Rounded float32 steps in sequence in one stage of the longest family (PReNet6): conv0 (sum,
#: bias), the ConvLSTM (sum, bias, gate, f * c, i * g, add, tanh, o * tanh), five residual
#: blocks (two convolutions of sum and bias, the skip add), the output conv (sum, bias, + y).
ROUNDINGS_PER_STAGE = 2 + 8 + 5 * 5 + 3


def _load(family: str) -> dict[str, torch.Tensor]:
    return torch.load(DATA / f"{family}_random.pth", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(DATA / "prenet_reference_random.npz") as z:
        return {k: z[k] for k in z.files}


def test_reference_files_are_the_legacy_cuda_format() -> None:
    """The committed files are what users download: legacy (non-zip) pickles of CUDA tensors."""
    for family in FAMILIES:
        raw = (DATA / f"{family}_random.pth").read_bytes()
        assert not raw.startswith(b"PK"), family  # not the zip format of torch >= 1.6
        assert b"cuda" in raw, family


@pytest.mark.parametrize("family", FAMILIES)
def test_family_is_recognised_from_keys_and_shapes(family: str) -> None:
    state = _load(family)
    assert len(state) == README_TABLE[family][0]
    fmt, channels = match_released_format(state, "f.pth")
    assert (fmt.name, channels) == (family, 32)
    model = released_model_from_state_dict(state, "f.pth")
    assert isinstance(model, PReNet) and not model.training
    assert count_parameters(model) == README_TABLE[family][1]
    assert sum(v.numel() for v in state.values()) == README_TABLE[family][1]
    assert all(p.device.type == "cpu" for p in model.parameters())


def _stage_atols(expected_stages: torch.Tensor, float32_atol) -> list[float]:
    """Per stage, the float32 tolerance of its values (the stages are in sequence)."""
    return [float32_atol(stage.abs().max(), ROUNDINGS_PER_STAGE * t)
            for t, stage in enumerate(expected_stages, 1)]


@pytest.mark.parametrize("family", FAMILIES)
def test_family_reproduces_the_authors_outputs(family: str, reference, float32_atol) -> None:
    """Loaded in float64, the network lands on the authors' float32 outputs within their rounding.

    The reference was computed in float32 on another machine, so it differs from the exact
    result by float32 rounding only; a float64 recomputation is exact to ~1e-16, so the two
    differ by the reference's rounding, whatever this CPU's kernels. The float32 model then
    differs from its float64 copy by this machine's rounding, within the same tolerance.
    """
    model = released_model_from_state_dict(_load(family), family)
    x = torch.from_numpy(reference["input_rgb"])
    with torch.no_grad():
        stages = torch.stack(model.stage_outputs(x))
        final, attention = model(x)
        exact = torch.stack(copy.deepcopy(model).double().stage_outputs(x.double()))
    expected_stages = torch.from_numpy(reference[f"{family}/stage_outputs"]).double()
    assert stages.shape == expected_stages.shape == (6, 1, 3, 40, 56)
    atols = _stage_atols(expected_stages, float32_atol)
    for t, atol in enumerate(atols):
        torch.testing.assert_close(exact[t], expected_stages[t], rtol=0, atol=atol,
                                   msg=lambda m, t=t: f"stage {t + 1}, float64 vs reference: {m}")
        torch.testing.assert_close(stages[t].double(), exact[t], rtol=0, atol=atol,
                                   msg=lambda m, t=t: f"stage {t + 1}, float32 vs float64: {m}")
    assert torch.equal(final, stages[-1])  # the forward returns the last stage
    torch.testing.assert_close(exact[-1], torch.from_numpy(reference[f"{family}/output"]).double(),
                               rtol=0, atol=atols[-1])
    assert attention is None
    assert (final < 0).any() or (final > 1).any()  # no clamp inside: values outside [0, 1]


def test_reference_is_sensitive_to_the_gate_order(reference, float32_atol) -> None:
    """The comparison can fail: loading the LSTM gates in the wrong order misses the outputs."""
    state = _load("PReNet6")
    swapped = dict(state)
    for kind in ("weight", "bias"):
        swapped[f"conv_i.0.{kind}"], swapped[f"conv_f.0.{kind}"] = (
            state[f"conv_f.0.{kind}"], state[f"conv_i.0.{kind}"])
    model = released_model_from_state_dict(swapped, "swapped")
    with torch.no_grad():
        out, _ = model(torch.from_numpy(reference["input_rgb"]))
    expected = torch.from_numpy(reference["PReNet6/stage_outputs"])
    atol = _stage_atols(expected, float32_atol)[-1]
    assert (out - expected[-1]).abs().max() > 100 * atol


@pytest.mark.parametrize("family", FAMILIES)
def test_conversion_round_trips_every_tensor(family: str) -> None:
    state = _load(family)
    fmt, _ = match_released_format(state)
    converted = convert_released_prenet(state, fmt)
    model = PRENET_FAMILIES[family]()
    assert set(converted) == set(model.state_dict())
    assert sum(v.numel() for v in converted.values()) == README_TABLE[family][1]
    if fmt.recurrent == "lstm":
        gates = converted["f_recurrent.gates.weight"].chunk(4, dim=0)
        for gate, name in zip(gates, ("conv_i", "conv_f", "conv_g", "conv_o"), strict=True):
            assert torch.equal(gate, state[f"{name}.0.weight"])


def test_formats_are_distinct_and_described() -> None:
    keysets = [frozenset(fmt.expected_shapes()) for fmt in RELEASED_FORMATS]
    assert len(set(keysets)) == len(keysets) == 4
    text = describe_released_formats()
    assert "\n" not in text
    for family in FAMILIES:
        assert re.search(rf"\b{family} \(", text)


@pytest.mark.parametrize("state", [
    {"net": {}}, {"model": {}, "config": {}}, [torch.zeros(1)], torch.zeros(3), "text", {},
    {1: torch.zeros(1)},
])
def test_other_objects_are_not_released_formats(state) -> None:
    assert match_released_format(state) is None
    assert released_model_from_state_dict(state) is None


def test_extra_or_missing_keys_are_not_a_released_format() -> None:
    state = _load("PRN6_r")
    assert released_model_from_state_dict({**state, "extra.weight": torch.zeros(1)}) is None
    missing = dict(state)
    del missing["conv.0.bias"]
    assert released_model_from_state_dict(missing) is None
    # The authors' GRU ablation (conv_z/conv_b instead of conv_i/f/o) is not a family either.
    gru = {k.replace("conv_i", "conv_z").replace("conv_f", "conv_b"): v
           for k, v in _load("PReNet6").items() if not k.startswith("conv_o")}
    assert released_model_from_state_dict(gru) is None


@pytest.mark.parametrize(("key", "value", "what"), [
    ("conv0.0.weight", torch.zeros(32, 3, 3, 3),
     r"shape \(32, 3, 3, 3\), expected \(32, 6, 3, 3\)"),
    ("conv_g.0.weight", torch.zeros(32, 32, 3, 3), r"shape \(32, 32, 3, 3\)"),
    ("conv.0.bias", torch.zeros(4), r"shape \(4,\), expected \(3,\)"),
    ("res_conv3.2.weight", "not a tensor", "a str, not a tensor"),
])
def test_wrong_shapes_give_one_line_error_listing_formats(key, value, what) -> None:
    state = {**_load("PReNet6"), key: value}
    with pytest.raises(InputError, match=f"has the keys of PReNet6 but {re.escape(key)} is {what}"
                       ) as info:
        released_model_from_state_dict(state, "bad.pth")
    message = str(info.value)
    assert "\n" not in message and "bad.pth" in message
    assert "released formats tried: PReNet6 (" in message and "PRN6_r (" in message


def test_other_channel_counts_load_consistently() -> None:
    """The key table does not depend on C: a C = 8 file loads as an 8-channel PReNet6_r."""
    torch.manual_seed(0)
    ours = PRENET_FAMILIES["PReNet6_r"](channels=8)
    fmt = next(f for f in RELEASED_FORMATS if f.name == "PReNet6_r")
    state = {k: torch.randn(s) * 0.1 for k, s in fmt.expected_shapes(8).items()}
    model = released_model_from_state_dict(state, "c8.pth")
    assert model.channels == 8 and count_parameters(model) == count_parameters(ours)


# ------------------------------------------------------------------ through the file reader
# `load_pretrained(path)` reads user files weights-only and calls
# `released_model_from_state_dict`.

@pytest.mark.parametrize("family", FAMILIES)
def test_load_pretrained_reads_released_files(family: str, reference, float32_atol) -> None:
    model = load_pretrained(DATA / f"{family}_random.pth")
    with torch.no_grad():
        out, _ = model(torch.from_numpy(reference["input_rgb"]))
    expected = torch.from_numpy(reference[f"{family}/stage_outputs"])
    atol = _stage_atols(expected, float32_atol)[-1]
    # this machine's float32 and the reference machine's: both roundings
    torch.testing.assert_close(out, torch.from_numpy(reference[f"{family}/output"]),
                               rtol=0, atol=2 * atol)


def test_load_pretrained_lists_released_formats_for_unknown_files(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(InputError, match="PReNet6 .*PRN6_r") as info:
        load_pretrained(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"checkpoint {path} is in no known format (it holds a dict with "
                              "keys encoder.weight); formats tried: the authors' SPANet")
    for family in FAMILIES:
        assert f"{family} (a plain state dict" in message
    # A list of tensors (not a state dict) is described as what it is.
    torch.save([torch.zeros(1)], path)
    with pytest.raises(InputError, match=r"it holds a list\); formats tried"):
        load_pretrained(path)


def test_load_pretrained_strips_ddp_prefix_and_keeps_device(tmp_path: Path, reference,
                                                           float32_atol) -> None:
    """A released state dict re-saved from a DataParallel wrapper still loads (and runs)."""
    path = tmp_path / "ddp.pth"
    torch.save({"module." + k: v for k, v in _load("PRN6").items()}, path)
    model = load_pretrained(path, device="cpu", irnn_backend="reference")  # backend ignored
    assert isinstance(model, PReNet) and not model.training
    with torch.no_grad():
        out, _ = model(torch.from_numpy(reference["input_rgb"]))
    atol = _stage_atols(torch.from_numpy(reference["PRN6/stage_outputs"]), float32_atol)[-1]
    torch.testing.assert_close(out, torch.from_numpy(reference["PRN6/output"]),
                               rtol=0, atol=2 * atol)


def test_describe_weights_names_family_and_training_set(tmp_path: Path) -> None:
    info = describe_weights(DATA / "PReNet6_r_random.pth")
    assert info.format == "PReNet6_r (PReNet's release)"
    assert info.trained_on.startswith("unknown")
    # The authors' layout logs/<set>/<family>/net_latest.pth names the set; logs/real/ too.
    for folders, expected in ((("Rain100H", "PRN6"), "Rain100H"), (("real",), "real rain")):
        folder = tmp_path.joinpath("logs", *folders)
        folder.mkdir(parents=True)
        target = folder / "net_latest.pth"
        target.write_bytes((DATA / "PRN6_random.pth").read_bytes())
        info = describe_weights(target)
        assert info.format == "PRN6 (PReNet's release)"
        assert info.trained_on.startswith(expected) and "PReNet's authors" in info.trained_on
    assert describe_weights("official").trained_on.startswith("real rain: SPA-Data")
    assert "synthetic rain only" in describe_weights("synthetic").trained_on


def test_derain_command_with_released_weights(tmp_path: Path) -> None:
    """`spanet derain --weights PRN6_r_random.pth` end to end: the file's model, clamped."""
    from spanetlib.derain.images import derain_array
    from spanetlib.io.files import read_image, write_image

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
    write_image(tmp_path / "in" / "photo.png", photo)
    weights = DATA / "PRN6_r_random.pth"
    result = subprocess.run([sys.executable, "-m", "spanetlib.cli", "derain",
                             str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights",
                             str(weights), "--device", "cpu", "--save-attention"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    written = read_image(tmp_path / "out" / "photo.png")
    expected, attention = derain_array(load_pretrained(weights), photo)
    assert written.shape == photo.shape and attention is None
    np.testing.assert_array_equal(written, to_uint8(expected))
    assert not (tmp_path / "out" / "photo_attention.png").exists()  # PReNet has no attention
    assert not np.array_equal(written, photo)


def test_truncated_released_file_is_refused(tmp_path: Path) -> None:
    raw = (DATA / "PRN6_r_random.pth").read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="cannot read checkpoint") as info:
        load_pretrained(path)
    assert "\n" not in str(info.value)


def test_file_with_python_objects_is_refused(tmp_path: Path) -> None:
    """Weights-only loading: a pickle holding arbitrary objects is never executed."""
    path = tmp_path / "objects.pth"
    buffer = io.BytesIO()
    torch.save({"conv0.0.weight": Path("x")}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(InputError, match="holds Python objects besides tensors"):
        load_pretrained(path)
