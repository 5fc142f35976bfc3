import numpy as np
import pytest

from spanetlib import experiments


@pytest.fixture(scope="module")
def videos():
    return experiments.make_table1_videos(2, 16, (32, 40), seed=3, densities=("normal", "dense"))


def test_table1_videos_are_seeded_and_sized(videos):
    again = experiments.make_table1_videos(2, 16, (32, 40), seed=3, densities=("normal", "dense"))
    assert [v.name for v in videos] == ["00_astronaut_normal", "01_brick_dense"]
    assert videos[0].frames.shape == (16, 32, 40, 3) and videos[0].clean.shape == (32, 40, 3)
    np.testing.assert_array_equal(videos[1].frames, again[1].frames)
    with pytest.raises(ValueError, match="n_frames >= 2"):
        experiments.make_table1_videos(1, 1, (8, 8))


def test_ensure_dataset_builds_then_reuses(tmp_path):
    first = experiments.ensure_dataset("smoke", tmp_path)
    assert first.synthetic and first.train_list.is_file() and first.test_list.is_file()
    lines = first.train_list.read_text().splitlines()
    assert lines and all(len(line.split()) == 2 for line in lines)
    second = experiments.ensure_dataset("smoke", tmp_path)
    assert "0 exported now" in second.summary
    rows = experiments.dataset_examples(second, n=2)
    assert len(rows) == 2 and rows[0]["mask M"].ndim == 2
    with pytest.raises(ValueError, match="review_mode"):
        experiments.ensure_dataset("smoke", tmp_path, review_mode="maybe")
    with pytest.raises(ValueError, match="unknown profile"):
        experiments.prepare_review("huge", tmp_path)


def test_ensure_dataset_uses_an_existing_spa_data_root(tmp_path):
    from spanetlib.fileio import write_image

    for split, name in (("training", "real_world.txt"), ("testing", "real_test_1000.txt")):
        folder = tmp_path / split
        write_image(folder / "rain.png", np.zeros((8, 8, 3), np.uint8))
        write_image(folder / "gt.png", np.zeros((8, 8, 3), np.uint8))
        (folder / name).write_text("rain.png gt.png\n")
    info = experiments.ensure_dataset("smoke", tmp_path / "work", data_root=tmp_path)
    assert not info.synthetic and info.train_list.name == "real_world.txt"
    assert info.test_list.name == "real_test_1000.txt"


