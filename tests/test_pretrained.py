import fractions
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from spanetlib.io.errors import InputError
from spanetlib.models import pretrained
from spanetlib.models.device import resolve_torch_device
from spanetlib.models.pretrained import (
    OFFICIAL_LICENSE,
    OFFICIAL_WEIGHTS,
    convert_official_state_dict,
    load_official_spanet,
    load_pretrained,
    official_key,
)
from spanetlib.models.spanet import SPANet

pytestmark = pytest.mark.usefixtures("single_thread")


REFERENCE = Path(__file__).parent / "data" / "reference_case_rgb.npz"


@pytest.fixture(scope="module")
def raw_net():
    return torch.load(OFFICIAL_WEIGHTS, map_location="cpu", weights_only=True)["net"]


@pytest.fixture(scope="module")
def reference():
    data = np.load(REFERENCE)
    x = torch.from_numpy(data["input_rgb"]).permute(2, 0, 1)[None].contiguous()
    return x, data["output_rgb"], data["attention"]


def to_hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).numpy()


def test_packaged_files_and_license():
    assert OFFICIAL_WEIGHTS.is_file() and OFFICIAL_LICENSE.is_file()
    assert "Redistribution and use in source and binary forms" in OFFICIAL_LICENSE.read_text()
    assert (OFFICIAL_WEIGHTS.parent / "README.txt").is_file()


@pytest.mark.parametrize(("key", "expected"), [
    ("conv_in.0.weight", "conv_in.weight"),
    ("res_block1.group1.conv1.weight", "blocks.0.conv1.weight"),
    ("res_block17.group1.conv3.weight", "blocks.16.conv3.weight"),
    ("SAM1.irnn2.left_weight.bias", "sams.0.irnn2.left_weight.bias"),
    ("SAM1.attention_layer.conv3.bias", "sams.0.attention_layer.conv3.bias"),
    ("conv_out.0.weight", "conv_out.weight"),
])
def test_official_key(key, expected):
    assert official_key(key) == expected


def test_official_key_rejects_unknown():
    with pytest.raises(ValueError, match="expected a key of the authors' SPANet checkpoint"):
        official_key("res_block0.group1.conv1.weight")


def test_checkpoint_loads_completely(raw_net):
    model = load_official_spanet(irnn_backend="reference")
    assert len(raw_net) == 79 and len(model.state_dict()) == 79
    n_loaded = sum(v.numel() for v in raw_net.values())
    assert n_loaded == 283_716
    assert sum(p.numel() for p in model.parameters()) == 283_716
    assert not model.direction_attention and not model.training
    # BGR -> RGB: first conv's input channels and last conv's output channels are reversed.
    assert torch.equal(model.conv_in.weight, raw_net["conv_in.0.weight"][:, [2, 1, 0]])
    assert torch.equal(model.conv_out.weight, raw_net["conv_out.0.weight"][[2, 1, 0]])
    assert torch.equal(model.blocks[9].conv2.weight, raw_net["res_block10.group1.conv2.weight"])


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_reproduces_reference_case(reference, backend):
    x, expected, expected_attention = reference
    model = load_official_spanet(irnn_backend=backend)
    with torch.inference_mode():
        image, attention = model(x)
    assert np.abs(to_hwc(image) - expected).max() < 1e-4
    assert np.abs(attention[0, 0].numpy() - expected_attention).max() < 1e-4


def test_irnn_backends_agree_on_official_weights(reference):
    x = reference[0][..., :48, :40]
    model = load_official_spanet(irnn_backend="reference")
    with torch.inference_mode():
        ref_image, ref_attention = model(x)
        model.set_irnn_backend("numba")
        image, attention = model(x)
    assert (image - ref_image).abs().max() < 1e-4
    assert (attention - ref_attention).abs().max() < 1e-4


@pytest.mark.parametrize("transform", ["crop", "transpose"])
def test_rgb_model_matches_bgr_checkpoint(raw_net, reference, transform):
    x = reference[0]
    x = x[..., 10:74, 20:116] if transform == "crop" else x[..., :40, :56].transpose(2, 3)
    rgb = load_official_spanet(irnn_backend="reference")
    bgr = SPANet(direction_attention=False, irnn_backend="reference").eval()
    bgr.load_state_dict(convert_official_state_dict(raw_net, rgb=False))
    with torch.inference_mode():
        out_rgb, att_rgb = rgb(x)
        out_bgr, att_bgr = bgr(x.flip(1))
    assert out_rgb.shape == x.shape
    assert (out_rgb - out_bgr.flip(1)).abs().max() < 1e-5
    assert (att_rgb - att_bgr).abs().max() < 1e-5
    # and the flip matters: feeding RGB to the BGR model gives something else
    with torch.inference_mode():
        assert (bgr(x)[0].flip(1) - out_rgb).abs().max() > 1e-3


def test_load_pretrained_official_equals_loader():
    a = load_pretrained("official", irnn_backend="reference")
    b = load_official_spanet(irnn_backend="reference")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_official_format_from_user_path(tmp_path, raw_net):
    path = tmp_path / "copy.pth"
    torch.save({"net": dict(raw_net), "clock": 1}, path)
    model = load_pretrained(path, irnn_backend="reference")
    assert torch.equal(model.conv_in.weight, raw_net["conv_in.0.weight"].flip(1))


def training_checkpoint(path, model, prefix="", **config):
    state = {prefix + k: v for k, v in model.state_dict().items()}
    cfg = {"model": "spanet", "model_kwargs": dict(model.model_kwargs)}
    cfg.update(config)
    torch.save({"model": state, "config": cfg, "step": 3}, path)
    return path


@pytest.mark.parametrize("prefix", ["", "module."])
def test_training_checkpoint_round_trip(tmp_path, prefix):
    torch.manual_seed(1)
    model = SPANet(channels=8, sam_mode="unshared", irnn_backend="reference").eval()
    path = training_checkpoint(tmp_path / "ckpt.pth", model, prefix)
    loaded = load_pretrained(path)
    assert isinstance(loaded, SPANet) and loaded.sam_mode == "unshared" and not loaded.training
    x = torch.rand(1, 3, 12, 10)
    with torch.inference_mode():
        assert (loaded(x)[0] - model(x)[0]).abs().max() < 1e-6


def test_error_missing_file(tmp_path):
    with pytest.raises(InputError, match="checkpoint not found: .*nope.pth"):
        load_pretrained(tmp_path / "nope.pth")
    with pytest.raises(InputError, match="checkpoint not found"):
        load_official_spanet(tmp_path / "nope.pth")


def test_error_unreadable_file(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(InputError, match="cannot read checkpoint .*garbage.pth"):
        load_pretrained(path)


def _saved(obj, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


class _Custom:
    pass


_STATE = {"w": torch.ones(64)}
_RANDOM = bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8))


@pytest.mark.parametrize(("content", "message"), [
    (b"", r"cannot read checkpoint .*x.pth: empty file \(0 bytes\)"),
    (b"hello", r"x.pth: not a PyTorch checkpoint \(no zip or pickle header; it starts with "
               r"'hello'\)"),
    (_RANDOM, r"x.pth: not a PyTorch checkpoint \(no zip or pickle header; it starts with "
              r"bytes 0x"),
    (b"<!DOCTYPE html>\n<html>404</html>\n", r"starts with '<!DOCTYPE html>' \(a web page"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n",
     r"x.pth: a Git LFS pointer, not the file itself: run 'git lfs pull'"),
    (_saved(_STATE)[:-200], r"x.pth: truncated \(the zip archive's directory at its end is "
                            r"missing: an interrupted download or copy\?\)"),
    (_saved(_STATE, legacy=True)[:-100], r"x.pth: truncated \(it ends before"),
    (pickle.dumps({"w": 1}), r"x.pth: a Python pickle, not a PyTorch checkpoint"),
    (_saved({"w": Path("a"), "c": _Custom(), "t": torch.ones(1)}),
     r"checkpoint .*x.pth holds Python objects besides tensors and plain containers: "
     r"pathlib.PosixPath, test_pretrained._Custom; load it with "
     r"load_pretrained\(path, trusted=True\) only if you trust its source"),
    (_saved({"c": _Custom()}, legacy=True), r"x.pth holds Python objects besides tensors "
                                             r"and plain containers: test_pretrained._Custom;"),
], ids=["empty", "text", "random", "html", "git-lfs", "truncated-zip", "truncated-legacy",
        "plain-pickle", "objects-zip", "objects-legacy"])
def test_unreadable_checkpoints_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        pretrained.read_checkpoint(path)
    assert "\n" not in str(info.value) and "Weights only load failed" not in str(info.value)
    assert "holds Python objects" not in str(info.value) or "trusted=True" in str(info.value)


def test_error_message_of_a_zip_that_is_no_checkpoint(tmp_path):
    path = tmp_path / "x.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hi")
    with pytest.raises(InputError, match=r"x.pth: a zip archive but not a PyTorch checkpoint "
                       r"\(no data.pkl in it\)"):
        pretrained.read_checkpoint(path)
    path.write_bytes(_saved(_STATE))
    assert torch.equal(pretrained.read_checkpoint(path)["w"], _STATE["w"])
    path.write_bytes(_saved(_STATE, legacy=True))
    assert torch.equal(pretrained.read_checkpoint(path)["w"], _STATE["w"])


def test_error_wrong_shapes(tmp_path, raw_net):
    small = SPANet(channels=8)
    path = training_checkpoint(tmp_path / "c8.pth", small,
                               model_kwargs={"channels": 16})
    with pytest.raises(InputError, match=r"does not fit SPANet\(channels=16\): size mismatch "
                                         r"for conv_in.weight") as info:
        load_pretrained(path)
    assert "\n" not in str(info.value)
    net = dict(raw_net)
    net["conv_out.0.weight"] = torch.zeros(3, 32, 5, 5)
    torch.save({"net": net}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match=r"does not fit SPANet\(channels=32\): size mismatch "
                                         r"for conv_out.weight"):
        load_official_spanet(tmp_path / "bad.pth")


def test_error_missing_keys(tmp_path, raw_net):
    net = {k: v for k, v in raw_net.items() if not k.startswith("res_block17")}
    torch.save({"net": net}, tmp_path / "short.pth")
    with pytest.raises(InputError, match="does not fit .*Missing key"):
        load_pretrained(tmp_path / "short.pth")


def test_error_unknown_name_and_formats(tmp_path):
    with pytest.raises(InputError, match="unknown weights 'officail': expected one of official"):
        load_pretrained("officail")
    torch.save({"state": {}}, tmp_path / "odd.pth")
    with pytest.raises(InputError, match=r"odd.pth is in no known format \(it holds a dict with "
                       r"keys state\); formats tried: the authors' SPANet \(a dict with 'net'\); "
                       r"a spanetlib training checkpoint .*; released weights: PReNet6 \("):
        load_pretrained(tmp_path / "odd.pth")
    torch.save({"model": {}, "config": {"model": "prenet", "model_kwargs": {}}},
               tmp_path / "prenet.pth")
    with pytest.raises(InputError, match="does not fit PReNet"):
        load_pretrained(tmp_path / "prenet.pth")
    torch.save({"model": {}, "config": {"model": "unet", "model_kwargs": {}}},
               tmp_path / "unet.pth")
    with pytest.raises(InputError, match="cannot build model 'unet'"):
        load_pretrained(tmp_path / "unet.pth")
    torch.save({"model": {}, "config": {"model": "spanet", "model_kwargs": {"width": 3}}},
               tmp_path / "kw.pth")
    with pytest.raises(InputError, match="cannot build model 'spanet' from its model_kwargs"):
        load_pretrained(tmp_path / "kw.pth")


def test_load_pretrained_builds_baselines_from_training_checkpoints(tmp_path):
    from spanetlib.models import build_model

    model = build_model("ddn", channels=4, num_blocks=1)
    torch.save({"model": model.state_dict(),
                "config": {"model": "ddn", "model_kwargs": {"channels": 4, "num_blocks": 1}}},
               tmp_path / "ddn.pt")
    loaded = load_pretrained(tmp_path / "ddn.pt")
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], model.eval()(x)[0])


def test_untrusted_objects_are_refused(tmp_path):
    model = SPANet(channels=4)
    path = training_checkpoint(tmp_path / "obj.pth", model, note=fractions.Fraction(1, 3))
    with pytest.raises(InputError, match="trusted=True"):
        load_pretrained(path)
    assert isinstance(load_pretrained(path, trusted=True), SPANet)


def test_synthetic_not_shipped(monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained, "SYNTHETIC_WEIGHTS", tmp_path / "spanet_synthetic.pth")
    with pytest.raises(InputError, match="'synthetic' SPANet weights are missing"):
        load_pretrained("synthetic")


def test_synthetic_when_present(monkeypatch, tmp_path):
    path = training_checkpoint(tmp_path / "spanet_synthetic.pth", SPANet(channels=4))
    monkeypatch.setattr(pretrained, "SYNTHETIC_WEIGHTS", path)
    assert load_pretrained("synthetic").channels == 4


def test_devices(monkeypatch):
    assert resolve_torch_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="unknown device 'gpu'"):
        resolve_torch_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_torch_device("auto") == torch.device("cpu")
    with pytest.raises(InputError, match="CUDA is not available"):
        load_pretrained("official", device="cuda")
