import math
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from spanetlib.cli import main as cli_main
from spanetlib.derain import images as inference
from spanetlib.derain.images import (
    attention_heatmap,
    blend_window,
    derain_array,
    derain_files,
    tile_starts,
)
from spanetlib.io.errors import InputError
from spanetlib.io.files import ImageFormat, read_image, restore_format, write_image
from spanetlib.models import device, memory
from spanetlib.models.device import (
    autocast,
    cpu_bf16_features,
    cpu_has_fast_bf16,
    resolve_precision,
)
from spanetlib.models.memory import (
    bound_primitive_caches,
    release_freed_memory,
    return_large_blocks,
    reuse_freed_memory,
)
from spanetlib.models.pretrained import load_official_spanet
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
    with pytest.raises(InputError, match=r"a.png exists; pass --overwrite"):
        derain_files([image_dir], out, weights=model, device="cpu", progress=False)
    assert not (out / "b.png").exists()  # refused before doing any work
    derain_files([image_dir], out, weights=model, device="cpu", overwrite=True, progress=False)
    assert (out / "b.png").exists() and (out / "a.png").stat().st_mtime_ns > stamp - 10**9


@pytest.fixture()
def tiles_seen(monkeypatch):
    """The ``tile`` of every `derain_array` call that `derain_files` makes, in order."""
    seen = []
    real = inference.derain_array

    def spy(model, image, tile=None, **kwargs):
        seen.append(tile)
        return real(model, image, tile=tile, **kwargs)

    monkeypatch.setattr(inference, "derain_array", spy)
    return seen


def test_derain_files_tiles_only_large_images(tmp_path, image_dir, tiles_seen):
    seen = tiles_seen
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
    summary = derain_files([bad], tmp_path / "o", weights=model, device="cpu", progress=False)
    assert summary.outputs == [] and "cannot read image: " in summary.failed[bad / "broken.png"]
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


# --------------------------------------------------------------------------------------------
# Precision: bf16 decided by the CPU's capability; the accuracy bf16 costs
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def fast_bf16(monkeypatch):
    """Pretend this CPU has fast bf16 (bf16 then runs everywhere, emulated where it is not)."""
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: True)


@pytest.fixture()
def no_fast_bf16(monkeypatch):
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)


def test_bf16_accuracy_on_the_official_reference_case(fast_bf16):
    # Measured here (AMD EPYC, AVX512-BF16): bf16 moves the output by at most 0.021 (about 5
    # of 255 grey levels), 0.0017 on average, PSNR 53.6 dB against the float32 output (the
    # model itself changes its input by 0.038 on average); the attention map by at most 0.11.
    data = np.load(Path(__file__).parent / "data" / "reference_case_rgb.npz")
    model = load_official_spanet()
    out32, att32 = derain_array(model, data["input_rgb"])
    out16, att16 = derain_array(model, data["input_rgb"], precision="bf16")
    assert np.abs(out32 - np.clip(data["output_rgb"], 0, 1)).max() < 1e-4
    err = np.abs(out16 - out32)
    psnr = 10 * np.log10(1 / np.mean(np.square(err, dtype=np.float64)))
    assert 1e-3 < err.max() < 0.04  # bf16 did run, and stays this close
    assert err.mean() < 4e-3 and psnr > 50
    assert np.abs(att16 - att32).max() < 0.2
    assert out16.dtype == np.float32 and att16.dtype == np.float32


def test_precision_auto_follows_the_capability(monkeypatch, photo):
    model = tiny_model()
    image = photo[:20, :24]
    out32, _ = derain_array(model, image)
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == torch.float32
    out_auto, _ = derain_array(model, image, precision="auto")
    assert np.array_equal(out_auto, out32)
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == torch.bfloat16
    assert resolve_precision("bf16", "cpu") == torch.bfloat16
    out_auto, _ = derain_array(model, image, precision="auto")
    assert 0 < np.abs(out_auto - out32).max() < 0.05
    assert resolve_precision("fp32", "cpu") == torch.float32


def test_precision_errors(no_fast_bf16, photo, tmp_path, image_dir):
    model = tiny_model()
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, auto, got 'fp16'"):
        derain_array(model, photo[:8, :8], precision="fp16")
    with pytest.raises(ValueError, match="precision 'bf16' refused: this CPU has neither AMX "
                                         "nor AVX512-BF16.*use fp32 or auto"):
        derain_array(model, photo[:8, :8], precision="bf16")
    with pytest.raises(ValueError, match="precision 'bf16' refused"):  # before any work
        derain_files([image_dir], tmp_path / "o", weights=model, device="cpu",
                     precision="bf16", progress=False)
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.bfloat16"):
        autocast(torch.float16, "cpu")


def test_cli_derain_precision(no_fast_bf16, tmp_path, image_dir, checkpoint, capsys):
    args = ["derain", str(image_dir / "a.png"), "-o", str(tmp_path / "o"), "--weights",
            str(checkpoint), "--device", "cpu"]
    assert cli_main([*args, "--precision", "bf16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "precision 'bf16' refused" in err
    assert cli_main([*args, "--precision", "auto"]) == 0
    assert "in fp32" in capsys.readouterr().out
    assert (tmp_path / "o" / "a.png").is_file()


def test_derain_files_bf16_summary(fast_bf16, tmp_path, image_dir, checkpoint):
    summary = derain_files([image_dir], tmp_path / "o", weights=checkpoint, device="cpu",
                           precision="bf16", progress=False)
    assert summary.precision == "bf16" and "in bf16" in str(summary)
    assert read_image(tmp_path / "o" / "a.png").shape == (24, 32, 3)


def _capabilities(monkeypatch, caps, private=None, flags=()):
    """Make torch (and /proc/cpuinfo) report the given CPU features."""
    if caps is None:
        monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    else:
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, **caps})
    for name, key in (("_is_amx_tile_supported", "amx_bf16"),
                      ("_is_avx512_bf16_supported", "avx512_bf16")):
        if private is None:
            monkeypatch.delattr(torch.cpu, name, raising=False)
        else:
            monkeypatch.setattr(torch.cpu, name, lambda key=key: private.get(key, False))
    monkeypatch.setattr(device, "_proc_cpuinfo_flags", lambda: set(flags))


@pytest.mark.parametrize(("caps", "private", "flags", "expected"), [
    ({"amx_bf16": True, "avx512_bf16": True}, None, (), ("amx_bf16", "avx512_bf16")),  # Xeon
    ({"amx_bf16": False, "avx512_bf16": True}, None, (), ("avx512_bf16",)),  # EPYC Zen 4
    ({"avx512_f": True}, None, ("avx512_bf16",), ()),  # torch's word beats /proc/cpuinfo
    (None, {"amx_bf16": False, "avx512_bf16": True}, (), ("avx512_bf16",)),  # older torch
    (None, {"amx_bf16": True}, (), ("amx_bf16",)),
    (None, None, ("fpu", "avx512_bf16"), ("avx512_bf16",)),  # torch cannot say
    (None, None, ("fpu", "amx_bf16", "amx_tile"), ("amx_bf16",)),
    (None, None, ("fpu", "avx512f"), ()),
])
def test_cpu_has_fast_bf16_by_capability(monkeypatch, caps, private, flags, expected):
    _capabilities(monkeypatch, caps, private, flags)
    assert cpu_bf16_features() == expected
    assert cpu_has_fast_bf16() is bool(expected)


def test_cpu_has_fast_bf16_needs_onednn(monkeypatch):
    _capabilities(monkeypatch, {"amx_bf16": True, "avx512_bf16": True})
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert cpu_has_fast_bf16() is False


class _FakeLibc:
    def __init__(self, max_mmap_threshold=2**31 - 1):
        self.calls = []
        self.max_mmap_threshold = max_mmap_threshold

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return int(param != -3 or value <= self.max_mmap_threshold)

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


def test_reuse_freed_memory_counts_nested_blocks(monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(memory, "_glibc", lambda: libc)
    with reuse_freed_memory():
        with reuse_freed_memory():
            pass
        assert libc.calls == [("mallopt", -3, 2**31 - 1), ("mallopt", -1, 2**31 - 1)]
    assert libc.calls[2:] == [("mallopt", -3, 32 << 20), ("mallopt", -1, 64 << 20),
                              ("malloc_trim", 0)]
    libc.calls.clear()
    with pytest.raises(RuntimeError, match="boom"), reuse_freed_memory():
        raise RuntimeError("boom")
    assert [c[0] for c in libc.calls] == ["mallopt"] * 4 + ["malloc_trim"]  # restored anyway
    old = _FakeLibc(max_mmap_threshold=32 << 20)  # glibc that caps the mmap threshold
    monkeypatch.setattr(memory, "_glibc", lambda: old)
    with reuse_freed_memory():
        assert old.calls == [("mallopt", -3, 2**31 - 1), ("mallopt", -3, 32 << 20),
                             ("mallopt", -1, 2**31 - 1)]
    monkeypatch.setattr(memory, "_glibc", lambda: None)  # not glibc: nothing to do
    with reuse_freed_memory():
        pass


def test_return_large_blocks_sets_the_threshold_outside_forward_passes(monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(memory, "_glibc", lambda: libc)
    with return_large_blocks(1 << 20):
        assert libc.calls == [("mallopt", -3, 1 << 20)]
        with reuse_freed_memory():  # a forward pass keeps its memory, then 1 MiB again
            release_freed_memory()  # inside a forward pass: nothing
        assert libc.calls[3:] == [("mallopt", -3, 1 << 20), ("mallopt", -1, 64 << 20),
                                  ("malloc_trim", 0)]
        release_freed_memory()
        assert libc.calls[-1] == ("malloc_trim", 0) and len(libc.calls) == 7
    assert libc.calls[-1] == ("mallopt", -3, 32 << 20)
    with reuse_freed_memory():
        pass
    assert libc.calls[-3] == ("mallopt", -3, 32 << 20)  # glibc's maximum after the block
    monkeypatch.setattr(memory, "_glibc", lambda: None)  # not glibc: nothing to do
    with return_large_blocks():
        release_freed_memory()


def test_bound_primitive_caches_keeps_a_capacity_already_set(monkeypatch):
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "7")
    bound_primitive_caches(32)
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "32"
    assert os.environ["LRU_CACHE_CAPACITY"] == "7"


# ------------------------------------------------------------------ bad input (issue 12)
class _Failing(torch.nn.Module):
    """A model whose forward pass raises ``error`` (an allocation failure, say)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        raise self.error


_OUT_OF_MEMORY = [
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough "
                 "memory: you tried to allocate 4294967296 bytes."),
    MemoryError(),
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
]


@pytest.mark.parametrize("error", _OUT_OF_MEMORY, ids=["cpu", "python", "cuda"])
def test_out_of_memory_is_one_line_suggesting_a_smaller_tile(photo, error):
    model = _Failing(error)
    with pytest.raises(inference.DerainMemoryError,
                       match=r"out of memory deraining a 200 x 300 image in tiles of 128 x 128 "
                             r"on cpu .*; use a smaller --tile \(e.g. --tile 64\)") as info:
        derain_array(model, photo, tile=128, device="cpu")
    assert "\n" not in str(info.value)
    assert isinstance(info.value, MemoryError) and isinstance(info.value, InputError)
    with pytest.raises(inference.DerainMemoryError, match=r"200 x 300 image whole on cpu .*; "
                       r"use --tile \(e.g. --tile 128\)"):
        derain_array(model, photo, device="cpu")


def test_other_runtime_errors_are_not_taken_for_out_of_memory(photo):
    with pytest.raises(RuntimeError, match="shape mismatch") as info:
        derain_array(_Failing(RuntimeError("shape mismatch")), photo[:32, :32])
    assert not isinstance(info.value, MemoryError)


def test_cli_derain_out_of_memory_is_one_line(tmp_path, photo, monkeypatch, capsys):
    write_image(tmp_path / "huge.png", photo)
    monkeypatch.setattr(inference, "load_pretrained",
                        lambda *args, **kwargs: _Failing(_OUT_OF_MEMORY[0]))
    assert cli_main(["derain", str(tmp_path / "huge.png"), "-o", str(tmp_path / "out"),
                     "--tile", "160", "--device", "cpu"]) == 2
    err = capsys.readouterr().err  # progress bars, then the error
    line = err[err.index("spanet derain: error:"):]
    assert line.count("\n") == 1 and "Traceback" not in err
    assert line.startswith("spanet derain: error: out of memory deraining a 200 x 300 image in "
                           "tiles of 160 x 160") and "--tile 64" in line


GIB = 1 << 30


@pytest.mark.parametrize(("height", "width", "available", "dtype", "expected"), [
    # The largest side: (available / 2 - 64 B per image pixel) / bytes per tile pixel,
    # rounded down to 64; then the smallest side (a multiple of 8) with as few tiles
    # (overlap 32): 32 + ceil((length - 32) / tiles) on the longer side.
    (1000, 1000, 2 * GIB, torch.float32, 520),     # sqrt(1009741824 / 2300) = 662 -> 640:
                                                   # 2 tiles, 32 + 484 = 516
    (2000, 2000, 2 * GIB, torch.bfloat16, 688),    # sqrt(817741824 / 850) = 981 -> 960:
                                                   # 3 tiles, 32 + 656
    (2000, 2000, 2 * GIB, torch.float32, 528),     # sqrt(817741824 / 2300) = 596 -> 576:
                                                   # 4 tiles, 32 + 492 = 524
    (300, 200, 2 * GIB, torch.float32, None),      # fits whole
    (4000, 3000, 1024 * GIB, torch.float32, 2016),  # at most 2048: 2 tiles, 32 + 1984
    (4000, 3000, GIB // 4, torch.float32, 128),    # at least 128
    (4000, 3000, None, torch.float32, 480),        # memory unknown: 512, 9 tiles, 32 + 441
])
def test_auto_tile_from_available_memory(height, width, available, dtype, expected):
    assert inference.auto_tile(height, width, dtype, available) == expected


@pytest.mark.parametrize(("height", "width", "available", "overlap"), [
    (640, 640, GIB, 32), (721, 1283, 2 * GIB, 32), (3024, 4032, 8 * GIB, 32),
    (3024, 4032, 8 * GIB, 64), (130, 900, GIB // 8, 16), (1080, 1920, GIB // 2, 48),
])
def test_auto_tile_is_the_smallest_with_the_fewest_tiles(height, width, available, overlap):
    # The fitted tile covers the image in as few tiles as the largest side that fits, and no
    # smaller multiple of 8 (at least MIN_AUTO_TILE) does.
    per_pixel = inference.FORWARD_BYTES_PER_PIXEL[torch.float32]
    budget = inference.MEMORY_SHARE * available - inference.IMAGE_BYTES_PER_PIXEL * height * width
    largest = int(math.sqrt(budget / per_pixel)) // 64 * 64
    largest = min(max(largest, inference.MIN_AUTO_TILE), inference.MAX_AUTO_TILE)

    def count(tile: int) -> int:
        return len(inference.tile_starts(height, tile, overlap)) \
            * len(inference.tile_starts(width, tile, overlap))

    tile = inference.auto_tile(height, width, torch.float32, available, overlap)
    assert tile is not None and tile % 8 == 0 and inference.MIN_AUTO_TILE <= tile <= largest
    assert count(tile) == count(largest)
    smaller = tile - 8
    assert smaller < inference.MIN_AUTO_TILE or count(smaller) > count(largest)


def test_derain_files_default_tile_follows_available_memory(tmp_path, photo, monkeypatch,
                                                            tiles_seen):
    write_image(tmp_path / "in" / "p.png", photo)  # 200 x 300
    monkeypatch.setattr(inference, "available_memory", lambda device: 64 << 20)
    derain_files([tmp_path / "in"], tmp_path / "a", weights=tiny_model(), device="cpu",
                 progress=False)
    monkeypatch.setattr(inference, "available_memory", lambda device: GIB)
    derain_files([tmp_path / "in"], tmp_path / "b", weights=tiny_model(), device="cpu",
                 progress=False)
    assert tiles_seen == [128, None]


def test_available_memory_reads_meminfo_and_cgroup_limits(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
    root = tmp_path / "cgroup"
    leaf = root / "app.slice" / "job"
    leaf.mkdir(parents=True)
    (root / "memory.max").write_text("max\n")
    (tmp_path / "self_cgroup").write_text("0::/app.slice/job\n")
    monkeypatch.setitem(sys.modules, "psutil", None)  # not installed
    from spanetlib.io import resources

    monkeypatch.setattr(resources, "_MEMINFO", meminfo)
    monkeypatch.setattr(resources, "_CGROUP_ROOT", root)
    monkeypatch.setattr(resources, "_PROC_CGROUP", tmp_path / "self_cgroup")
    assert inference.available_memory("cpu") == 8000000 * 1024  # no limit
    (leaf / "memory.max").write_text(f"{2 * GIB}\n")
    (leaf / "memory.current").write_text(f"{GIB}\n")
    (leaf / "memory.stat").write_text(f"anon {GIB}\ninactive_file {GIB // 4}\n")
    assert inference.available_memory("cpu") == GIB + GIB // 4  # the container's limit
    (leaf / "memory.max").write_text("max\n")  # a limit further up counts too
    (root / "app.slice" / "memory.max").write_text(f"{3 * GIB}\n")
    (root / "app.slice" / "memory.current").write_text(f"{GIB}\n")
    assert inference.available_memory("cpu") == 2 * GIB
    v1 = tmp_path / "v1" / "memory"  # cgroup v1
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{GIB}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{GIB // 2}\n")
    monkeypatch.setattr(resources, "_CGROUP_ROOT", tmp_path / "v1")
    assert inference.available_memory("cpu") == GIB // 2
    meminfo.unlink()  # no /proc/meminfo: sysconf
    monkeypatch.setattr(resources, "_CGROUP_ROOT", tmp_path / "none")
    monkeypatch.setattr(os, "sysconf", lambda name: {"SC_AVPHYS_PAGES": 1000,
                                                     "SC_PAGE_SIZE": 4096}[name])
    assert inference.available_memory("cpu") == 4096000

    class _Psutil:
        @staticmethod
        def virtual_memory():
            return type("Memory", (), {"available": 12345})()

    monkeypatch.setitem(sys.modules, "psutil", _Psutil)
    assert inference.available_memory("cpu") == 12345


def test_derain_files_reports_and_skips_bad_images(tmp_path, image_dir, checkpoint, capsys):
    (image_dir / "broken.png").write_bytes(b"not a png")
    write_image(image_dir / "tiny.png", np.zeros((1, 1, 3), np.uint8))
    write_image(image_dir / "z.png", np.zeros((16, 16, 3), np.uint8))
    summary = derain_files([image_dir], tmp_path / "out", weights=tiny_model(), device="cpu",
                           progress=False)
    assert [p.name for p in summary.outputs] == ["a.png", "b.png", "z.png"]  # all good ones
    assert list(summary.failed) == [image_dir / "broken.png", image_dir / "tiny.png"]
    assert "cannot read image" in summary.failed[image_dir / "broken.png"]
    assert "is 1 x 1 pixels; images must be at least 8 x 8" in summary.failed[
        image_dir / "tiny.png"]
    assert "2 FAILED" in str(summary) and "broken.png" in str(summary)
    args = ["derain", str(image_dir), "-o", str(tmp_path / "cli"), "--weights", str(checkpoint),
            "--device", "cpu"]
    assert cli_main(args) == 1
    out = capsys.readouterr().out
    assert "derained 3 image(s)" in out and "broken.png" in out and "tiny.png" in out


def test_derain_files_checks_every_output_before_loading_the_model(tmp_path, image_dir,
                                                                   monkeypatch, capsys):
    def no_model(*args, **kwargs):
        raise AssertionError("model loaded")

    monkeypatch.setattr(inference, "load_pretrained", no_model)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot create .*file/out: .*file is not a folder"):
        derain_files([image_dir], tmp_path / "file" / "out", progress=False)
    out = tmp_path / "out"
    (out / "b.png").mkdir(parents=True)
    with pytest.raises(InputError, match="b.png is not a regular file"):
        derain_files([image_dir], out, overwrite=True, progress=False)
    (out / "b.png").rmdir()
    (out / "a_attention.png").write_bytes(b"old")
    with pytest.raises(InputError, match=r"a_attention.png exists; pass --overwrite"):
        derain_files([image_dir], out, save_attention=True, progress=False)
    assert cli_main(["derain", str(image_dir), "-o", str(out), "--save-attention"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Errno" not in err and "a_attention.png exists" in err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(InputError, match="cannot write to .*locked: permission denied"):
            derain_files([image_dir], locked / "out", progress=False)


def test_derain_keeps_gray_16_bit_and_alpha(tmp_path, photo):
    model = tiny_model()
    rng = np.random.default_rng(0)
    crop = photo[:40, :48]
    folder = tmp_path / "in"
    folder.mkdir()
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    deep = crop.astype(np.uint16) * 257 + rng.integers(0, 200, crop.shape, dtype=np.uint16)
    alpha = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (40, 1))
    cv2.imwrite(str(folder / "gray.png"), gray)
    cv2.imwrite(str(folder / "deep.png"), deep[..., ::-1])
    cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(np.dstack([crop, alpha]),
                                                       cv2.COLOR_RGBA2BGRA))
    derain_files([folder], tmp_path / "out", weights=model, device="cpu", progress=False)

    def written(name):
        return cv2.imread(str(tmp_path / "out" / name), cv2.IMREAD_UNCHANGED)

    out = written("gray.png")
    assert out.shape == (40, 48) and out.dtype == np.uint8  # gray stays gray
    out = written("deep.png")
    assert out.shape == (40, 48, 3) and out.dtype == np.uint16
    expected = derain_array(model, deep.astype(np.float32) / 65535)[0]
    np.testing.assert_array_equal(out[..., ::-1],
                                  restore_format(expected, ImageFormat(False, 16)))
    assert (out % 257 != 0).any()  # more than 8 bits of precision kept
    out = written("rgba.png")
    assert out.shape == (40, 48, 4) and (out[..., 3] == alpha).all()


def test_derain_array_checks_values_and_size(photo):
    model = tiny_model()
    with pytest.raises(ValueError, match=r"image: expected uint8, or float in \[0, 1\]; got "
                                         r"float32 with values in \[164, 192\] \(a 0-255 "
                                         r"float image\? divide it by 255\)"):
        derain_array(model, photo[:16, :16].astype(np.float32))
    with pytest.raises(InputError, match="image is 1 x 1 pixels; images must be at least 8 x 8"):
        derain_array(model, np.zeros((1, 1, 3), np.uint8))


class _RecordingBar:
    """A stand-in for tqdm that records what the bars were told."""

    bars: list["_RecordingBar"] = []

    def __init__(self, iterable=None, total=None, desc=None, disable=False, **kwargs):
        self.iterable, self.total, self.desc, self.disable, self.n = (iterable, total, desc,
                                                                      disable, 0)
        _RecordingBar.bars.append(self)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.n += 1

    def update(self, n=1):
        self.n += n

    def set_postfix_str(self, *args, **kwargs):
        pass

    def close(self):
        pass


def test_large_images_show_tile_progress(tmp_path, photo, monkeypatch):
    _RecordingBar.bars.clear()
    monkeypatch.setattr(inference, "tqdm", _RecordingBar)
    write_image(tmp_path / "in" / "big.png", photo)  # 200 x 300
    derain_files([tmp_path / "in"], tmp_path / "out", weights=tiny_model(), device="cpu",
                 tile=96, overlap=32)
    images, tiles = _RecordingBar.bars
    assert (images.desc, images.n) == ("derain", 1)
    n_tiles = len(tile_starts(200, 96, 32)) * len(tile_starts(300, 96, 32))
    assert (tiles.desc, tiles.total, tiles.n, tiles.disable) == ("tiles", n_tiles, n_tiles,
                                                                  False)
    _RecordingBar.bars.clear()
    derain_array(tiny_model(), photo, tile=96, overlap=32)  # no bar unless asked for
    assert all(bar.disable for bar in _RecordingBar.bars)
