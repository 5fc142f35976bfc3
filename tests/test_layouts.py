"""The field's test-folder layouts, each built from tiny images in tmp_path."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from spanetlib.io.errors import InputError
from spanetlib.io.files import read_image, write_image
from spanetlib.io.layouts import LAYOUTS, ImagePair, ImageRef, read_test_folder
from spanetlib.synthesis.rain import load_background, make_rain_image


def _noise(seed: int, shape: tuple[int, int] = (12, 16)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def _write(path: Path, seed: int = 0) -> Path:
    return write_image(path, _noise(seed))


def _names(found) -> list[str]:
    return [p.name for p in found.pairs]


def _single_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------ input-target

def test_input_target(tmp_path: Path) -> None:
    for i, stem in enumerate(("1", "2", "10")):
        _write(tmp_path / "input" / f"{stem}.png", i)
        _write(tmp_path / "target" / f"{stem}{'.jpg' if stem == '2' else '.png'}", 10 + i)
    _write(tmp_path / "target" / "99.png")  # a clean image without a rain image: ignored
    (tmp_path / "input" / "notes.txt").write_text("not an image")
    (tmp_path / "input" / "._1.png").write_bytes(b"macOS resource fork")  # hidden: ignored
    found = read_test_folder(tmp_path)
    assert found.layout.name == "input-target" and found.also_matched == ()
    assert _names(found) == ["1", "2", "10"]  # natural order
    pair = found.pairs[1]
    assert pair.rain == ImageRef(tmp_path / "input" / "2.png")
    assert pair.clean == ImageRef(tmp_path / "target" / "2.jpg")
    rain, clean = pair.read()
    assert np.array_equal(rain, _noise(1)) and clean.shape == (12, 16, 3)
    text = found.describe()
    assert "'input-target'" in text and "swz30/Restormer" in text and "3 pairs" in text


def test_input_target_unmatched_rain_is_an_error(tmp_path: Path) -> None:
    for i in range(9):
        _write(tmp_path / "input" / f"{i}.png", i)
    _write(tmp_path / "target" / "0.png")
    with pytest.raises(InputError, match=r"8 of 9 rain images have no clean image "
                       r"\(input-target layout: .*\): 1\.png, 2\.png, 3\.png, 4\.png, 5\.png "
                       r"and 3 more") as err:
        read_test_folder(tmp_path)
    _single_line(err)


def test_duplicate_stems_are_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "input" / "1.png")
    _write(tmp_path / "input" / "1.jpg")
    _write(tmp_path / "target" / "1.png")
    with pytest.raises(InputError, match=r"two images share the name '1' \(1\.jpg and 1\.png\)"):
        read_test_folder(tmp_path)


def test_empty_layout_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "target").mkdir()
    with pytest.raises(InputError, match=r"input: no rain images \(input-target layout"):
        read_test_folder(tmp_path)


# ------------------------------------------------------------------------------ Rain100H/L

@pytest.mark.parametrize("clean_folder", ["", "norain"])
def test_rain100(tmp_path: Path, clean_folder: str) -> None:
    for i in (1, 2, 100):
        _write(tmp_path / "rainy" / f"rain-{i:03d}.png", i)
        _write(tmp_path / clean_folder / f"norain-{i:03d}.png", 10 + i)
    found = read_test_folder(tmp_path)
    assert found.layout.name == "rain100" and "csdwren/PReNet" in found.layout.code_bases
    assert _names(found) == ["rain-001", "rain-002", "rain-100"]
    assert found.pairs[2].clean.path == tmp_path / clean_folder / "norain-100.png"
    assert np.array_equal(found.pairs[0].rain.read(), _noise(1))


def test_rain100_other_file_in_rainy_is_unmatched(tmp_path: Path) -> None:
    _write(tmp_path / "rainy" / "rain-001.png")
    _write(tmp_path / "norain-001.png")
    _write(tmp_path / "rainy" / "extra.png")
    with pytest.raises(InputError, match=r"1 of 2 rain images have no clean image .*: extra\.png"):
        read_test_folder(tmp_path)


def test_rain100_missing_clean_is_an_error(tmp_path: Path) -> None:
    for i in (1, 2):
        _write(tmp_path / "rainy" / f"rain-{i:03d}.png", i)
    _write(tmp_path / "norain-001.png")
    with pytest.raises(InputError, match=r"rainy: 1 of 2 rain images .*: rain-002\.png$"):
        read_test_folder(tmp_path)


# ------------------------------------------------------------------------------ Rain1400

def test_rain1400_fourteen_rain_images_per_clean(tmp_path: Path) -> None:
    for k in (901, 902):
        _write(tmp_path / "ground_truth" / f"{k}.jpg", k)
        for m in range(1, 15):
            _write(tmp_path / "rainy_image" / f"{k}_{m}.jpg", k * 100 + m)
    found = read_test_folder(tmp_path)
    assert found.layout.name == "rain1400"
    assert len(found.pairs) == 28
    assert _names(found)[:3] == ["901_1", "901_2", "901_3"] and _names(found)[9] == "901_10"
    assert {p.clean.path.name for p in found.pairs[:14]} == {"901.jpg"}
    assert found.pairs[14].clean.path == tmp_path / "ground_truth" / "902.jpg"
    assert "28 pairs (2 clean images)" in found.describe()


def test_rain1400_rain_without_ground_truth(tmp_path: Path) -> None:
    _write(tmp_path / "ground_truth" / "901.jpg")
    _write(tmp_path / "rainy_image" / "901_1.jpg")
    _write(tmp_path / "rainy_image" / "903_1.jpg")
    _write(tmp_path / "rainy_image" / "901.jpg")  # no _M suffix
    with pytest.raises(InputError, match=r"2 of 3 rain images .*rain1400 layout.*: "
                       r"901\.jpg, 903_1\.jpg"):
        read_test_folder(tmp_path)


# ------------------------------------------------------------------------------ SPA-Data

def _spa(folder: Path, count: int = 3, gt_suffix: str = "gt") -> None:
    for i in range(count):
        _write(folder / "rain" / f"{i:03d}.png", i)
        _write(folder / "gt" / f"{i:03d}{gt_suffix}.png", 50 + i)


@pytest.mark.parametrize("gt_suffix", ["gt", ""])
def test_spa_data_folders(tmp_path: Path, gt_suffix: str) -> None:
    _spa(tmp_path / "testing" / "real_test_1000", gt_suffix=gt_suffix)
    for root in (tmp_path / "testing", tmp_path / "testing" / "real_test_1000"):
        found = read_test_folder(root)
        assert found.layout.name == "spa-data"
        assert _names(found) == ["000", "001", "002"]
        assert found.pairs[1].clean.path.name == f"001{gt_suffix}.png"


def test_spa_data_list_and_folders_agree(tmp_path: Path) -> None:
    testing = tmp_path / "testing"
    _spa(testing / "real_test_1000")
    lines = [f"real_test_1000/rain/{i:03d}.png real_test_1000/gt/{i:03d}gt.png" for i in range(3)]
    (testing / "real_test_1000.txt").write_text("\n".join(lines) + "\n")
    found = read_test_folder(testing)
    assert found.layout.name == "spa-data" and found.also_matched == ("pair-list",)
    assert "also matches pair-list" in found.describe()
    by_list = read_test_folder(testing / "real_test_1000.txt")
    assert by_list.layout.name == "pair-list"
    assert [p.rain.path for p in by_list.pairs] == [p.rain.path for p in found.pairs]


def test_spa_data_list_and_folders_disagree_is_ambiguous(tmp_path: Path) -> None:
    testing = tmp_path / "testing"
    _spa(testing / "real_test_1000")
    (testing / "real_test_1000.txt").write_text(
        "real_test_1000/rain/000.png real_test_1000/gt/000gt.png\n")
    with pytest.raises(InputError, match=r"is ambiguous: it matches the layouts "
                       r"spa-data \(3 pairs\), pair-list \(1 pairs\) with different pairs") as err:
        read_test_folder(testing)
    _single_line(err)
    assert len(read_test_folder(testing, layout="pair-list").pairs) == 1  # the way out


def test_spa_data_both_gt_names_is_an_error(tmp_path: Path) -> None:
    _spa(tmp_path, count=1)
    _write(tmp_path / "gt" / "000.png")
    with pytest.raises(InputError, match=r"both 000gt\.png and 000\.png could be the clean"):
        read_test_folder(tmp_path)


# ------------------------------------------------------------------------------ pair lists

def test_pair_list_file_and_folder(tmp_path: Path) -> None:
    for i in (1, 2, 10):
        _write(tmp_path / "rain" / f"s{i}.png", i)
        _write(tmp_path / "clean" / f"s{i}.png", 20 + i)
    lines = [f"rain/s{i}.png clean/s{i}.png" for i in (10, 2, 1)]
    (tmp_path / "test.txt").write_text("# a comment\n" + "\n".join(lines) + "\n")
    for root in (tmp_path, tmp_path / "test.txt"):
        found = read_test_folder(root)
        assert found.layout.name == "pair-list"
        assert _names(found) == ["s10", "s2", "s1"]  # the list's own order
        assert found.pairs[0].clean.path == tmp_path / "clean" / "s10.png"


def test_pair_list_missing_files(tmp_path: Path) -> None:
    _write(tmp_path / "rain" / "a.png")
    (tmp_path / "test.txt").write_text("rain/a.png clean/a.png\nrain/b.png clean/b.png\n")
    with pytest.raises(InputError,
                       match=r"test\.txt: 3 listed images do not exist: .*clean/a\.png"):
        read_test_folder(tmp_path)


def test_pair_list_repeated_rain_image(tmp_path: Path) -> None:
    _write(tmp_path / "rain" / "a.png")
    _write(tmp_path / "clean" / "a.png")
    (tmp_path / "list.txt").write_text("rain/a.png clean/a.png\nrain/a.png clean/a.png\n")
    with pytest.raises(InputError, match="rain images listed more than once: a.png"):
        read_test_folder(tmp_path / "list.txt")


# ------------------------------------------------------------------------------ Rain1200

def _side_by_side(folder: Path, names: list[str], size=(40, 48), rain_left: bool = True
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    photos = ("astronaut", "coffee", "chelsea", "camera", "rocket", "brick")
    made = []
    for i, name in enumerate(names):
        pair = make_rain_image(load_background(photos[i % len(photos)], size), "medium", seed=i)
        halves = (pair.rain, pair.clean) if rain_left else (pair.clean, pair.rain)
        write_image(folder / f"{name}.png", np.concatenate(halves, axis=1))
        made.append((pair.rain, pair.clean))
    return made


def test_rain1200_side_by_side(tmp_path: Path) -> None:
    made = _side_by_side(tmp_path, ["0", "1", "2", "10"])
    found = read_test_folder(tmp_path)
    assert found.layout.name == "rain1200" and "hezhangsprinter/DID-MDN" in found.layout.code_bases
    assert _names(found) == ["0", "1", "2", "10"]
    pair = found.pairs[3]
    assert pair.rain == ImageRef(tmp_path / "10.png", "left")
    assert pair.clean == ImageRef(tmp_path / "10.png", "right")
    rain, clean = pair.read()
    assert np.array_equal(rain, made[3][0]) and np.array_equal(clean, made[3][1])
    assert "4 pairs" in found.describe() and "(4 clean images)" not in found.describe()


def test_rain1200_clean_left_files_are_refused(tmp_path: Path) -> None:
    _side_by_side(tmp_path, [str(i) for i in range(5)], rain_left=False)
    with pytest.raises(InputError, match=r"in 5 of 5 sampled side-by-side files the right half "
                       r"is the brighter one") as err:
        read_test_folder(tmp_path)
    _single_line(err)


def test_numbered_photos_are_not_side_by_side_pairs(tmp_path: Path) -> None:
    """A folder of numbered rain photos without clean halves must not be split in two."""
    for i, name in enumerate(("astronaut", "coffee", "chelsea", "camera")):
        write_image(tmp_path / f"{i}.jpg", load_background(name, (40, 96)))
    with pytest.raises(InputError, match="no known test-folder layout"):
        read_test_folder(tmp_path)


def test_rain1200_odd_width_is_refused(tmp_path: Path) -> None:
    _side_by_side(tmp_path, ["0", "1", "2"])
    image = read_image(tmp_path / "2.png")
    write_image(tmp_path / "2.png", np.concatenate([image, image[:, :1]], axis=1))
    with pytest.raises(InputError, match=r"1 side-by-side files have an odd width.*: 2\.png"):
        read_test_folder(tmp_path)
    with pytest.raises(InputError, match="needs an even width, got 97"):
        ImageRef(tmp_path / "2.png", "left").read()


# ------------------------------------------------------------------------------ detection

def test_unmatched_folder_says_what_was_expected(tmp_path: Path) -> None:
    _write(tmp_path / "photos" / "a.png")
    with pytest.raises(InputError, match="no known test-folder layout; expected one of: "
                       r"input-target \(input/X and target/X") as err:
        read_test_folder(tmp_path)
    message = _single_line(err)
    for name in LAYOUTS:
        assert re.search(rf"\b{name} \(", message), name


def test_ambiguous_folder(tmp_path: Path) -> None:
    _write(tmp_path / "input" / "1.png")
    _write(tmp_path / "target" / "1.png")
    _write(tmp_path / "rainy" / "rain-001.png")
    _write(tmp_path / "norain-001.png")
    with pytest.raises(InputError, match=r"ambiguous: it matches the layouts input-target "
                       r"\(1 pairs\), rain100 \(1 pairs\) with different pairs; pass the layout"):
        read_test_folder(tmp_path)
    assert read_test_folder(tmp_path, layout="rain100").pairs[0].name == "rain-001"


def test_ambiguous_when_one_candidate_is_incomplete(tmp_path: Path) -> None:
    _write(tmp_path / "input" / "1.png")
    _write(tmp_path / "target" / "1.png")
    _write(tmp_path / "rainy" / "rain-001.png")  # its norain-001.png is missing
    with pytest.raises(InputError, match=r"matches the layouts input-target, rain100, and as "
                       r"rain100: .*1 of 1 rain images have no clean image"):
        read_test_folder(tmp_path)


def test_explicit_layout_and_bad_names(tmp_path: Path) -> None:
    _write(tmp_path / "input" / "1.png")
    _write(tmp_path / "target" / "1.png")
    assert read_test_folder(tmp_path, layout="input-target").layout.name == "input-target"
    with pytest.raises(InputError, match=r"does not have the rain100 layout: expected rainy/"):
        read_test_folder(tmp_path, layout="rain100")
    with pytest.raises(InputError, match="unknown layout 'Rain100H'; expected one of input-target"):
        read_test_folder(tmp_path, layout="Rain100H")
    with pytest.raises(InputError, match="test folder not found"):
        read_test_folder(tmp_path / "missing")


def test_layout_table() -> None:
    assert set(LAYOUTS) == {"input-target", "rain100", "rain1400", "spa-data", "rain1200",
                            "pair-list"}
    for name, layout in LAYOUTS.items():
        assert layout.name == name and layout.code_bases and "\n" not in layout.summary()


def test_image_ref_and_pair_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="half must be one of"):
        ImageRef(tmp_path / "x.png", "top")
    path = write_image(tmp_path / "x.png", _noise(3, (4, 6)))
    left, right = ImageRef(path, "left").read(), ImageRef(path, "right").read()
    assert np.array_equal(np.concatenate([left, right], axis=1), _noise(3, (4, 6)))
    assert str(ImageRef(path, "right")).endswith("x.png (right half)")
    pair = ImagePair("x", ImageRef(path, "left"), ImageRef(path, "right"))
    assert [a.shape for a in pair.read()] == [(4, 3, 3), (4, 3, 3)]
