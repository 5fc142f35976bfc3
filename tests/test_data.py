"""Pair lists, the rain mask M and PairDataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spanetlib.io.errors import InputError
from spanetlib.io.files import write_image
from spanetlib.io.pairs import find_pair_list, read_pair_list, write_pair_list
from spanetlib.training.data import PairDataset, rain_mask, random_resized_crop_box


# ------------------------------------------------------------------ rain mask
def test_rain_mask_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    rain = clean.copy()
    rain[2:5, 3:9, 1] = np.minimum(rain[2:5, 3:9, 1].astype(int) + 40, 255).astype(np.uint8)
    rain[10, 10, 2] ^= 1  # a one-level change in one channel
    for threshold in (0.0, 0.5 / 255, 2 / 255, 0.1):
        m_np = rain_mask(rain.astype(np.float32) / 255, clean.astype(np.float32) / 255,
                         threshold)
        t = lambda a: torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)[None]  # noqa: E731
        m_t = rain_mask(t(rain), t(clean), threshold)
        assert m_np.dtype == bool and m_np.shape == (16, 20)
        assert m_t.shape == (1, 1, 16, 20) and m_t.dtype == torch.float32
        np.testing.assert_array_equal(m_t[0, 0].numpy().astype(bool), m_np)
    any_diff = rain_mask(rain, clean)
    assert any_diff[10, 10] and any_diff[3, 4] and not any_diff[0, 0]
    assert any_diff.sum() == int((rain != clean).any(axis=2).sum())
    # uint8 thresholds are in 0-255: the one-level change disappears at 1, the streak stays
    above_one = rain_mask(rain, clean, threshold=1)
    assert not above_one[10, 10] and above_one[3, 4]


def test_rain_mask_rejects_bad_input():
    a = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="shapes differ"):
        rain_mask(a, np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(TypeError, match="must both be torch tensors or both numpy arrays"):
        rain_mask(a, torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        rain_mask(a, a, threshold=-1)
    with pytest.raises(ValueError, match="B x C x H x W"):
        rain_mask(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4))
    with pytest.raises(TypeError, match="dtypes differ"):
        rain_mask(a, a.astype(np.float32))


# ------------------------------------------------------------------ pair lists
def _touch_images(paths, size=(8, 8)):
    for p in paths:
        write_image(p, np.zeros((*size, 3), np.uint8))


def test_pair_list_round_trip(tmp_path):
    pairs = [(tmp_path / "d" / "s1" / "rain" / f"{i}.png", tmp_path / "d" / "s1" / "clean.png")
             for i in range(3)]
    pairs.append((tmp_path / "elsewhere" / "r.png", tmp_path / "elsewhere" / "c.png"))
    _touch_images({p for pair in pairs for p in pair})
    list_path = write_pair_list(tmp_path / "d" / "train.txt", pairs)
    lines = list_path.read_text().splitlines()
    assert lines[0] == "s1/rain/0.png s1/clean.png"
    assert lines[3] == "../elsewhere/r.png ../elsewhere/c.png"
    assert "\\" not in list_path.read_text()
    assert read_pair_list(list_path) == [(a.resolve(), b.resolve()) for a, b in pairs]


def test_pair_list_comments_blank_lines_and_malformed(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# a comment\n\n  a.png   b.png  \n\tc.png\td.png\n")
    assert read_pair_list(path) == [(tmp_path / "a.png", tmp_path / "b.png"),
                                    (tmp_path / "c.png", tmp_path / "d.png")]
    path.write_text("a.png b.png\n# fine\nonly_one.png\n")
    with pytest.raises(InputError, match="line 3: expected 'rain_path clean_path'"):
        read_pair_list(path)
    path.write_text("a.png b.png c.png\n")
    with pytest.raises(InputError, match="line 1"):
        read_pair_list(path)
    with pytest.raises(InputError, match="pair list not found"):
        read_pair_list(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="whitespace"):
        write_pair_list(tmp_path / "x.txt", [(tmp_path / "a b.png", tmp_path / "c.png")])


def test_spa_data_layout(tmp_path):
    """SPA-Data's lists: paths relative to the data root, often with a leading '/'."""
    root = tmp_path / "SPA-Data"
    train_imgs = [root / "real_world" / "000" / "000-1" / "000-1_0_0.png",
                  root / "real_world_gt" / "000" / "000_0_0.png"]
    test_imgs = [root / "testing" / "real_test_1000" / "rain" / "000.png",
                 root / "testing" / "real_test_1000" / "gt" / "000gt.png"]
    _touch_images(train_imgs + test_imgs)
    (root / "training").mkdir()
    (root / "training" / "real_world.txt").write_text(
        "/real_world/000/000-1/000-1_0_0.png /real_world_gt/000/000_0_0.png\n")
    (root / "testing" / "real_test_1000.txt").write_text(
        "real_test_1000/rain/000.png real_test_1000/gt/000gt.png\n")
    train_list = find_pair_list(root, "train")
    test_list = find_pair_list(root, "test")
    assert train_list == root / "training" / "real_world.txt"
    assert test_list == root / "testing" / "real_test_1000.txt"
    assert read_pair_list(train_list) == [tuple(p.resolve() for p in train_imgs)]
    assert read_pair_list(test_list) == [tuple(p.resolve() for p in test_imgs)]
    # our export layout wins when both exist; a list file is returned as it is
    (root / "train.txt").write_text("")
    assert find_pair_list(root, "train") == root / "train.txt"
    assert find_pair_list(train_list, "test") == train_list
    with pytest.raises(ValueError, match="split must be one of"):
        find_pair_list(root, "val")
    with pytest.raises(InputError, match="no test pair list"):
        find_pair_list(tmp_path, "test")
    with pytest.raises(InputError, match="dataset folder not found"):
        find_pair_list(tmp_path / "nope", "test")


# ------------------------------------------------------------------ PairDataset
@pytest.fixture
def offset_pairs(tmp_path, write_pairs) -> Path:
    """Textured pairs where clean = rain + 30 everywhere: crops must stay aligned."""
    rng = np.random.default_rng(1)
    images = []
    for _ in range(3):
        rain = rng.integers(40, 180, (48, 64, 3), dtype=np.uint8)
        rain = np.repeat(np.repeat(rain[::4, ::4], 4, 0), 4, 1)  # blocky texture
        images.append((rain, rain + np.uint8(30)))
    return write_pairs(tmp_path / "train.txt", images)


def test_pair_dataset_items_shapes_and_alignment(offset_pairs):
    ds = PairDataset(offset_pairs, crop=32, seed=3)
    assert len(ds) == 3
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            assert set(item) == {"rain", "clean", "mask", "name"}
            assert item["rain"].shape == item["clean"].shape == (3, 32, 32)
            assert item["mask"].shape == (1, 32, 32)
            assert item["rain"].dtype == item["clean"].dtype == item["mask"].dtype == torch.float32
            assert 0 <= item["rain"].min() and item["clean"].max() <= 1
            # same box and same flip for both: the constant offset survives the bicubic resize
            diff = (item["clean"] - item["rain"]) * 255
            assert torch.allclose(diff, torch.full_like(diff, 30.0), atol=1.01)
            assert item["mask"].min() == 1.0  # they differ everywhere
    assert ds[0]["name"] == "rain/0"


def test_pair_dataset_determinism_and_epochs(offset_pairs):
    a, b = PairDataset(offset_pairs, crop=24, seed=5), PairDataset(offset_pairs, crop=24, seed=5)
    assert torch.equal(a[1]["rain"], b[1]["rain"])
    assert torch.equal(a[2]["clean"], PairDataset(offset_pairs, crop=24, seed=5)[2]["clean"])
    epochs = []
    for e in range(6):
        a.set_epoch(e)
        epochs.append(a[1]["rain"])
    assert any(not torch.equal(epochs[0], x) for x in epochs[1:])
    assert not torch.equal(PairDataset(offset_pairs, crop=24, seed=6)[1]["rain"], epochs[0])


def test_pair_dataset_flips_both(tmp_path, write_pairs):
    rng = np.random.default_rng(2)
    rain = rng.integers(0, 200, (16, 16, 3), dtype=np.uint8)
    clean = rain.copy()
    clean[:, :8] += 20  # differs on the left half only
    lst = write_pairs(tmp_path / "l.txt", [(rain, clean)])
    ds = PairDataset(lst, crop=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), seed=0)
    seen = set()
    for e in range(16):
        ds.set_epoch(e)
        item = ds[0]
        r = (item["rain"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        flipped = np.array_equal(r, rain[:, ::-1])
        assert flipped or np.array_equal(r, rain)
        mask = item["mask"][0].numpy().astype(bool)
        expected = np.zeros((16, 16), bool)
        expected[:, :8] = True
        np.testing.assert_array_equal(mask, expected[:, ::-1] if flipped else expected)
        seen.add(flipped)
    assert seen == {True, False}


def test_pair_dataset_full_images_and_mask_threshold(tmp_path, write_pairs):
    clean = np.full((20, 30, 3), 100, np.uint8)
    rain = clean.copy()
    rain[5:8, 10:20] = 140
    rain[0, 0, 0] = 101
    lst = write_pairs(tmp_path / "l.txt", [(rain, clean)])
    item = PairDataset(lst, crop=None)[0]
    assert item["rain"].shape == (3, 20, 30)
    assert torch.equal(item["rain"], torch.from_numpy(rain).permute(2, 0, 1).float() / 255)
    assert item["mask"].sum() == 31  # 3 x 10 block + the one-level pixel
    item = PairDataset(lst, crop=None, mask_threshold=2 / 255)[0]
    assert item["mask"].sum() == 30


def test_pair_dataset_bad_arguments(offset_pairs, tmp_path):
    with pytest.raises(ValueError, match="crop: expected an int >= 1"):
        PairDataset(offset_pairs, crop=0)
    with pytest.raises(ValueError, match="scale must be"):
        PairDataset(offset_pairs, scale=(0.9, 0.5))
    with pytest.raises(ValueError, match=r"scale must lie in \(0, 1\]"):
        PairDataset(offset_pairs, scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="ratio must be"):
        PairDataset(offset_pairs, ratio=(0.0, 1.0))
    with pytest.raises(ValueError, match="mask_threshold must be in"):
        PairDataset(offset_pairs, mask_threshold=2.0)
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(InputError, match="pair list is empty"):
        PairDataset(tmp_path / "empty.txt")
    with pytest.raises(IndexError):
        PairDataset(offset_pairs)[3]


def test_random_resized_crop_box_stays_inside():
    rng = np.random.default_rng(0)
    for h, w in ((48, 64), (10, 200), (300, 12)):
        for _ in range(50):
            top, left, bh, bw = random_resized_crop_box(h, w, rng)
            assert 0 <= top and top + bh <= h and 0 <= left and left + bw <= w
            assert bh > 0 and bw > 0
    # fallback (nothing fits the ratio): centred, whole height, ratio 4/3 at most
    assert random_resized_crop_box(10, 200, np.random.default_rng(0), (1.0, 1.0)) == \
        (0, 93, 10, 13)


# ------------------------------------------------------------------ bad values and sizes
def test_rain_mask_refuses_float_images_outside_the_unit_range():
    clean = np.full((4, 4, 3), 100.0, np.float32)
    with pytest.raises(ValueError, match=r"rain: expected uint8, or float in \[0, 1\]; got "
                                         r"float32 with values in \[100, 100\]"):
        rain_mask(clean, clean / 255.0)


def test_pair_dataset_refuses_images_below_the_minimum_size(tmp_path, write_pairs):
    tiny = np.zeros((1, 1, 3), np.uint8)
    pairs = write_pairs(tmp_path / "train.txt", [(tiny, tiny)])
    with pytest.raises(InputError, match=r"rain/0\.png is 1 x 1 pixels; images must be at "
                                         r"least 8 x 8"):
        PairDataset(pairs, crop=30)[0]  # it used to give a 30 x 30 sample blown up from 1 pixel
