"""The §3 dataset the notebooks share: built, reused, described; or a given data_root."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spanetlib.io.errors import InputError
from spanetlib.io.files import read_image, write_image
from spanetlib.io.pairs import read_pair_list
from spanetlib.paper.datasets import (
    DatasetInfo,
    dataset_examples,
    ensure_dataset,
    ensure_single_image_set,
    prepare_review,
)
from spanetlib.pipeline.export import ExportSummary
from spanetlib.synthesis.testsets import build_single_image_train_set


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple:
    """The smoke-profile dataset, built once for this module: (work_dir, DatasetInfo)."""
    work = tmp_path_factory.mktemp("work")
    return work, ensure_dataset("smoke", work)


def test_ensure_dataset_builds_then_reuses(built):
    tmp_path, first = built
    assert first.synthetic and first.train_list.is_file() and first.test_list.is_file()
    lines = first.train_list.read_text().splitlines()
    assert lines and all(len(line.split()) == 2 for line in lines)
    second = ensure_dataset("smoke", tmp_path)
    assert "0 exported now" in second.summary
    rows = dataset_examples(second, n=2)
    assert len(rows) == 2 and rows[0]["mask M"].ndim == 2
    with pytest.raises(ValueError, match="review_mode"):
        ensure_dataset("smoke", tmp_path, review_mode="maybe")
    with pytest.raises(ValueError, match="unknown profile"):
        prepare_review("huge", tmp_path)


def test_ensure_dataset_uses_an_existing_spa_data_root(tmp_path):
    for split, name in (("training", "real_world.txt"), ("testing", "real_test_1000.txt")):
        folder = tmp_path / split
        write_image(folder / "rain.png", np.zeros((8, 8, 3), np.uint8))
        write_image(folder / "gt.png", np.zeros((8, 8, 3), np.uint8))
        (folder / name).write_text("rain.png gt.png\n")
    info = ensure_dataset("smoke", tmp_path / "work", data_root=tmp_path)
    assert not info.synthetic and info.train_list.name == "real_world.txt"
    assert info.test_list.name == "real_test_1000.txt"


def test_describe_an_exported_dataset(built):
    work, info = built
    assert isinstance(info.export, ExportSummary)
    text = info.describe()
    n_train = len(info.train_list.read_text().splitlines())
    n_test = len(info.test_list.read_text().splitlines())
    scenes = len(info.export.train_scenes) + len(info.export.test_scenes)
    assert text.startswith(f"{scenes} scenes: {n_train} train pairs from ")
    assert f", {n_test} test pairs from " in text
    # what the notebooks printed by parsing the summary, without the folder and run counts
    assert text == (info.summary.split(" in ")[0] + ": " + info.summary.split(": ", 1)[1])
    assert str(work) not in text and "\n" not in text


def test_describe_a_given_dataset_counts_its_lists(tmp_path, write_pairs):
    image = np.zeros((8, 8, 3), np.uint8)
    write_pairs(tmp_path / "data" / "train.txt", [(image, image)] * 3)
    write_pairs(tmp_path / "data" / "test.txt", [(image, image)])
    info = ensure_dataset("smoke", tmp_path / "work", data_root=tmp_path / "data")
    assert info.export is None and info.summary == f"existing dataset at {tmp_path / 'data'}"
    assert info.describe() == (f"existing dataset at {tmp_path / 'data'}: 3 train pairs, "
                               "1 test pair")
    empty = DatasetInfo(tmp_path, info.train_list, info.train_list, None, False, "")
    (tmp_path / "data" / "train.txt").write_text("")
    assert empty.describe().endswith(": 0 train pairs, 0 test pairs")


def test_a_review_file_of_other_scenes_is_refused(built, tmp_path):
    # Another seed makes other frames under the same scene names: the review of the first
    # set must not be resumed on them (issue 11 item 5).
    import shutil

    from spanetlib.io.errors import InputError

    work, _ = built
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(work / "review.json", other / "review.json")
    with pytest.raises(InputError, match=r"scene 'scene_000_sparse' was reviewed on .*"
                                         r"work.*scene_000_sparse .* but .*other.*"
                                         r"scene_000_sparse .* holds other frames"):
        ensure_dataset("smoke", other, seed=1)
    assert not (other / "dataset").exists()


def test_single_image_set_adds_rain_to_the_same_clean_images(smoke_dataset, tmp_path):
    single = ensure_single_image_set(smoke_dataset, tmp_path, seed=3)
    source, made = read_pair_list(smoke_dataset.train_list), read_pair_list(single.train_list)
    assert len(made) == len(source)
    assert single.test_list == smoke_dataset.test_list  # validated and scored on the §3 set
    rain_differs = []
    for (_, clean), (new_rain, new_clean) in zip(source, made, strict=True):
        clean_img, new_clean_img, rain_img = map(read_image, (clean, new_clean, new_rain))
        np.testing.assert_array_equal(new_clean_img, clean_img)
        assert (rain_img >= clean_img).all()  # screen-blended streaks only brighten
        rain_differs.append((rain_img > clean_img).mean())
    assert np.mean(rain_differs) > 0.01
    # reused while the source list and the seed are the same; rebuilt when they change
    mtime = single.train_list.stat().st_mtime_ns
    assert ensure_single_image_set(smoke_dataset, tmp_path, seed=3).train_list == \
        single.train_list
    assert single.train_list.stat().st_mtime_ns == mtime
    first_rain = read_image(made[0][0])
    ensure_single_image_set(smoke_dataset, tmp_path, seed=4)
    assert not np.array_equal(read_image(read_pair_list(single.train_list)[0][0]), first_rain)


def test_single_image_set_errors(tmp_path, write_pairs):
    with pytest.raises(InputError):
        build_single_image_train_set(tmp_path / "missing.txt", tmp_path / "out")
    source = write_pairs(tmp_path / "src" / "train.txt",
                         [(np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 3), np.uint8))])
    with pytest.raises(ValueError, match="level must be one of"):
        build_single_image_train_set(source, tmp_path / "out", levels=("drizzle",))
    with pytest.raises(ValueError, match="at least one rain level"):
        build_single_image_train_set(source, tmp_path / "out", levels=())


def test_ensure_dataset_replaces_its_own_export_made_with_other_settings(built):
    # An export left by an older pipeline (other settings in its manifest) is this work
    # folder's cache: rebuilt, not refused; the review file (the human decisions) is kept.
    work, first = built
    manifest_path = first.root / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["params"]["unreliable"] = None
    manifest_path.write_text(json.dumps(manifest))
    review = (work / "review.json").read_bytes()
    again = ensure_dataset("smoke", work)
    assert json.loads(manifest_path.read_text())["params"]["unreliable"] == "drop"
    assert again.train_list.read_text() == first.train_list.read_text()
    assert (work / "review.json").read_bytes() == review
