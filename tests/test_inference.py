import os
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from spanetlib import inference
from spanetlib.fileio import InputError, read_image, write_image
from spanetlib.inference import (
    attention_heatmap,
    blend_window,
    derain_array,
    derain_files,
    tile_starts,
)
from spanetlib.models.official import load_official_spanet
from spanetlib.models.spanet import SPANet

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_model(**kwargs) -> SPANet:
    torch.manual_seed(0)
    return SPANet(channels=8, **kwargs)


@pytest.fixture(scope="module")
def photo():
    return np.ascontiguousarray(skimage.data.astronaut()[100:300, 100:400])  # 200 x 300


def test_tile_starts_cover_with_overlap():
    assert tile_starts(80, 96, 32) == [0]
    starts = tile_starts(300, 96, 32)
    assert starts[0] == 0 and starts[-1] == 300 - 96
    assert all(0 < b - a <= 96 - 32 for a, b in zip(starts, starts[1:], strict=False))


def test_blend_window():
    w = blend_window(96, 32, True, True)
    assert w.shape == (96,) and w.dtype == np.float32
    assert (w > 0).all() and w.max() == 1 and w[0] < 0.01 and w[-1] < 0.01
    assert np.allclose(w, w[::-1]) and (np.diff(w[:33]) > 0).all()
    edge = blend_window(96, 32, False, True)
    assert edge[0] == 1 and edge[-1] < 0.01
    assert (blend_window(10, 0, True, True) == 1).all()


def test_derain_array_shapes_and_ranges(photo):
    model = tiny_model()
    image = photo[:40, :50]
    out, attention = derain_array(model, image)
    assert out.shape == (40, 50, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert attention.shape == (40, 50) and attention.dtype == np.float32
    out_f, _ = derain_array(model, image.astype(np.float32) / 255)
    assert np.abs(out - out_f).max() < 1e-6
    out_none, att_none = derain_array(tiny_model(sam_mode="none"), image)
    assert att_none is None and out_none.shape == (40, 50, 3)


def test_derain_array_matches_model(photo):
    model = tiny_model()
    image = photo[:33, :47]
    x = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
    reference = SPANet(**{**model.model_kwargs, "irnn_backend": "reference"})
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected, attention = reference.eval()(x)
    out, att = derain_array(model, image)  # numba IRNN, channels-last inside the model
    assert np.abs(out - expected[0].permute(1, 2, 0).clamp(0, 1).numpy()).max() < 1e-5
    assert np.abs(att - attention[0, 0].numpy()).max() < 1e-5


def test_tiled_close_to_untiled(photo):
    # A random 8-channel SPANet whose IRNNs carry information far (trained weights reach 1.0),
    # so the rows/columns beyond a tile matter: tiling is not exact, but the smooth window
    # keeps the difference small and far below what hard, non-overlapping tiles give.
    model = tiny_model()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "irnn" in name and name.endswith("weight"):
                param.fill_(0.9)
    full, attention = derain_array(model, photo)
    tiled, tiled_attention = derain_array(model, photo, tile=96, overlap=32)
    hard, _ = derain_array(model, photo, tile=96, overlap=0)
    diff = np.abs(full - tiled).mean()
    assert diff < 1e-3
    variation = np.abs(full - full.mean(axis=(0, 1))).mean()
    assert diff < 0.05 * variation  # the bound is not vacuous: outputs vary much more
    assert diff < 0.5 * np.abs(full - hard).mean()  # the overlap and window matter
    assert np.abs(attention - tiled_attention).mean() < 1e-3


def test_derain_array_argument_errors(photo):
    model = tiny_model()
    with pytest.raises(ValueError, match=r"expected an H x W x 3 RGB image, got shape \(4, 4\)"):
        derain_array(model, np.zeros((4, 4), np.uint8))
    with pytest.raises(TypeError, match="expected a uint8 or float image, got dtype int32"):
        derain_array(model, np.zeros((4, 4, 3), np.int32))
    with pytest.raises(ValueError, match=r"tile must be > overlap \(32\), got 32"):
        derain_array(model, photo[:8, :8], tile=32, overlap=32)
    with pytest.raises(ValueError, match="overlap must be >= 0, got -1"):
        derain_array(model, photo[:8, :8], tile=32, overlap=-1)


def test_attention_heatmap():
    heat = attention_heatmap(np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5))
    assert heat.shape == (4, 5, 3) and heat.dtype == np.uint8
    assert heat[0, 0, 2] > heat[0, 0, 0] and heat[-1, -1, 0] > heat[-1, -1, 2]  # blue -> red
    with pytest.raises(ValueError, match="expected an H x W attention map"):
        attention_heatmap(np.zeros((2, 2, 3)))


@pytest.fixture()
def image_dir(tmp_path, photo):
    folder = tmp_path / "in"
    write_image(folder / "a.png", photo[:24, :32])
    write_image(folder / "b.jpg", photo[30:50, 40:76])
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture()
def checkpoint(tmp_path):
    model = tiny_model()
    path = tmp_path / "tiny.pth"
    torch.save({"model": model.state_dict(),
                "config": {"model": "spanet", "model_kwargs": model.model_kwargs}}, path)
    return path


def test_derain_files_writes_outputs(tmp_path, image_dir, checkpoint):
    out = tmp_path / "out"
    summary = derain_files([image_dir], out, weights=checkpoint, device="cpu",
                           save_attention=True, progress=False)
    assert [p.name for p in summary.outputs] == ["a.png", "b.png"]
    assert [p.name for p in summary.attention_outputs] == ["a_attention.png", "b_attention.png"]
    assert read_image(out / "b.png").shape == (20, 36, 3)
    heat = read_image(out / "a_attention.png")
    assert heat.shape == (24, 32, 3)
    assert summary.device == "cpu" and "derained 2 image(s)" in str(summary)
    assert not list(out.glob("*.tmp*"))


def test_derain_files_official_weights_and_single_file(tmp_path, image_dir):
    summary = derain_files(image_dir / "a.png", tmp_path / "o", device="auto", progress=False)
    assert [p.name for p in summary.outputs] == ["a.png"] and summary.weights == "official"
    assert summary.attention_outputs == []


def test_derain_files_refuses_to_overwrite(tmp_path, image_dir):
    out = tmp_path / "out"
    model = tiny_model()
    derain_files([image_dir / "a.png"], out, weights=model, device="cpu", progress=False)
    stamp = (out / "a.png").stat().st_mtime_ns
    os.utime(out / "a.png", ns=(stamp - 10**9, stamp - 10**9))
    with pytest.raises(InputError, match=r"a.png already exists; pass --overwrite"):
        derain_files([image_dir], out, weights=model, device="cpu", progress=False)
    assert not (out / "b.png").exists()  # refused before doing any work
    derain_files([image_dir], out, weights=model, device="cpu", overwrite=True, progress=False)
    assert (out / "b.png").exists() and (out / "a.png").stat().st_mtime_ns > stamp - 10**9


def test_derain_files_tiles_only_large_images(tmp_path, image_dir, monkeypatch):
    seen = []
    real = inference.derain_array

    def spy(model, image, tile=None, **kwargs):
        seen.append(tile)
        return real(model, image, tile=tile, **kwargs)

    monkeypatch.setattr(inference, "derain_array", spy)
    derain_files([image_dir], tmp_path / "o", weights=tiny_model(), device="cpu", tile=30,
                 overlap=8, progress=False)
    assert seen == [30, 30]  # 24 x 32 and 20 x 36 exceed 30 in width
    seen.clear()
    derain_files([image_dir], tmp_path / "p", weights=tiny_model(), device="cpu", tile=512,
                 progress=False)
    assert seen == [None, None]


def test_derain_files_errors(tmp_path, image_dir, monkeypatch):
    model = tiny_model()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read image: .*broken.png"):
        derain_files([bad], tmp_path / "o", weights=model, device="cpu", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        derain_files([tmp_path / "empty"], tmp_path / "o2", weights=model, progress=False)
    with pytest.raises(InputError, match="input not found: .*missing.png"):
        derain_files([tmp_path / "missing.png"], tmp_path / "o", weights=model, progress=False)
    with pytest.raises(InputError, match="not an image file: .*notes.txt"):
        derain_files([image_dir / "notes.txt"], tmp_path / "o", weights=model, progress=False)
    write_image(tmp_path / "dup" / "a.jpg", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="would both be written to"):
        derain_files([image_dir, tmp_path / "dup"], tmp_path / "o", weights=model,
                     progress=False)
    with pytest.raises(InputError, match="checkpoint not found"):
        derain_files([image_dir], tmp_path / "o", weights=tmp_path / "x.pth", progress=False)
    with pytest.raises(InputError, match="tile must be > overlap"):
        derain_files([image_dir], tmp_path / "o", weights=model, tile=16, overlap=16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA is not available"):
        derain_files([image_dir], tmp_path / "o", weights=model, device="cuda")


def test_fast_path_reproduces_official_reference():
    data = np.load(Path(__file__).parent / "data" / "reference_case_rgb.npz")
    out, attention = derain_array(load_official_spanet(), data["input_rgb"])  # prepared model
    assert np.abs(out - np.clip(data["output_rgb"], 0, 1)).max() < 1e-4
    assert np.abs(attention - data["attention"]).max() < 1e-4
