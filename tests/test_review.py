"""ReviewSession persistence and decisions, and batch review (run_review)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from spanetlib.fileio import InputError, read_image
from spanetlib.review import ReviewSession, run_review
from spanetlib.selection import FRAME_COUNTS
from spanetlib.testsets import scene_ground_truth
from spanetlib.video import scene_name


def test_add_scene_persists_and_resumes(start_review, tmp_path, tiny_scenes):
    session = start_review(tmp_path, tiny_scenes)
    names = [scene_name(p) for p in tiny_scenes]
    assert list(session.scenes) == names
    # guessed densities match the synthetic scenes' own, N = FRAME_COUNTS capped by 24 frames
    for path, name in zip(tiny_scenes, names, strict=True):
        entry = session.scene(name)
        truth = json.loads(path.with_suffix(".json").read_text())["density"]
        assert entry["density"] == truth and entry["density_guessed"]
        assert entry["n"] == min(FRAME_COUNTS[truth], 24) and entry["frames_available"] == 24
        assert entry["status"] == "pending" and entry["history"] == []
    session.reject(names[0])
    again = ReviewSession(tmp_path / "review.json")
    assert again.scenes == session.scenes
    # idempotent: adding again keeps the state (N after the rejection)
    again.add_scene(names[0], tiny_scenes[0], density="dense", n=3)
    assert again.scene(names[0]) == session.scene(names[0])
    assert again.progress() == (0, 3)
    assert again.pending() == names
    assert again.next_pending() == names[0]
    assert again.next_pending(after=names[0]) == names[1]
    again.skip(names[1])
    again.skip(names[2])
    assert again.next_pending(after=names[0]) == names[0]  # wraps around
    assert again.progress() == (2, 3)


def test_accept_writes_clean_image(start_review, tmp_path, tiny_scenes):
    session = start_review(tmp_path, tiny_scenes[:1], density="sparse", n=6)
    name = scene_name(tiny_scenes[0])
    estimate = session.estimate(name)
    assert estimate.image.shape == (32, 48, 3)
    state = session.accept(name, estimate)
    assert state["status"] == "accepted" and state["clean_image"] == f"clean/{name}.png"
    assert state["percentile"] == pytest.approx(estimate.percentile)
    assert state["history"][-1]["decision"] == "accept" and state["history"][-1]["n"] == 6
    clean = read_image(tmp_path / "clean" / f"{name}.png")
    np.testing.assert_array_equal(clean, np.rint(estimate.image).astype(np.uint8))
    truth = read_image(scene_ground_truth(tiny_scenes[0]))
    assert np.abs(clean.astype(int) - truth).mean() < 4  # the estimate is close to the truth
    on_disk = json.loads((tmp_path / "review.json").read_text())
    assert on_disk["scenes"][name]["status"] == "accepted"
    assert ReviewSession(tmp_path / "review.json").clean_image_path(name) == \
        tmp_path / "clean" / f"{name}.png"
    # a float [0, 1] array with an explicit percentile works too
    session.accept(name, np.full((32, 48, 3), 0.5, np.float32), percentile=12.5)
    assert session.scene(name)["percentile"] == 12.5
    assert read_image(tmp_path / "clean" / f"{name}.png")[0, 0, 0] == 128


def test_reject_increments_until_exhausted(start_review, tmp_path, tiny_scenes):
    session = start_review(tmp_path, tiny_scenes[:1], density="sparse", n=5)
    name = scene_name(tiny_scenes[0])
    calls = []

    def loader(source, start, count):
        calls.append((start, count))
        from spanetlib.video import read_sequence
        return read_sequence(source, start=start, count=count, min_frames=1)

    assert len(session.frames(name, loader)) == 5
    assert session.reject(name)["n"] == 15
    assert session.scene(name)["status"] == "rejected-needs-more"
    assert name in session.pending()
    assert len(session.estimate(name, loader).mode) == 32
    assert calls == [(0, 5), (5, 10)]  # only the added frames are read
    assert session.reject(name)["n"] == 24  # capped by the 24 frames
    state = session.reject(name)
    assert state["status"] == "exhausted" and state["n"] == 24
    assert [h["n"] for h in state["history"]] == [5, 15, 24]
    assert [h["decision"] for h in state["history"]] == ["reject"] * 3
    assert session.pending() == [] and session.progress() == (1, 1)


def test_set_density_resets_n_before_decisions(start_review, tmp_path, tiny_scenes):
    session = start_review(tmp_path, tiny_scenes[:1], density="sparse", n=4)
    name = scene_name(tiny_scenes[0])
    assert session.set_density(name, "normal")["n"] == 24  # FRAME_COUNTS capped
    assert session.set_density(name, "sparse")["n"] == 20
    session.reject(name)
    state = session.set_density(name, "dense")
    assert state["n"] == 24 and state["density"] == "dense"  # 20 + 10 = 30, capped
    state = session.set_density(name, "sparse")
    assert state["n"] == 24  # decided already: N stays


def test_validation_errors(start_review, tmp_path, tiny_scenes):
    session = start_review(tmp_path, tiny_scenes[:1], density="sparse")
    with pytest.raises(ValueError, match="scene name must match"):
        session.add_scene("bad name", tiny_scenes[0])
    with pytest.raises(ValueError, match=r"density must be one of \('sparse', 'normal', "):
        session.add_scene("x", tiny_scenes[0], density="storm")
    with pytest.raises(ValueError, match="unknown scene 'nope'; choices: "):
        session.reject("nope")
    with pytest.raises(ValueError, match="density must be one of"):
        session.set_density(scene_name(tiny_scenes[0]), "heavy")
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        session.add_scene("y", tiny_scenes[0], n=1)
    with pytest.raises(InputError, match="scene source not found"):
        session.add_scene("z", tmp_path / "missing")
    with pytest.raises(ValueError, match="mode must be one of"):
        run_review(session, "manual")
    with pytest.raises(InputError, match="review file not found"):
        run_review(session, "file", tmp_path / "missing.json")


def test_corrupt_review_file_is_left_alone(tmp_path):
    path = tmp_path / "review.json"
    for text in ('{"format": "spanetlib-review", "version": 1, "scenes": {', "[1, 2]",
                 '{"format": "spanetlib-review", "version": 1, "scenes": {"a": {"name": "a"}}}'):
        path.write_text(text)
        with pytest.raises(InputError, match="is not a valid review file"):
            ReviewSession(path)
        assert path.read_text() == text


def test_failed_write_keeps_old_file_and_state(start_review, tmp_path, tiny_scenes, monkeypatch):
    session = start_review(tmp_path, tiny_scenes[:1], density="sparse", n=5)
    name = scene_name(tiny_scenes[0])
    before = (tmp_path / "review.json").read_bytes()

    def half_then_fail(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(pathlib.Path, "write_bytes", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        session.reject(name)
    monkeypatch.undo()
    assert (tmp_path / "review.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["review.json"]  # no temp file left
    assert session.scene(name)["n"] == 5 and session.scene(name)["history"] == []
    assert ReviewSession(tmp_path / "review.json").scenes == session.scenes


def test_run_review_auto(start_review, tmp_path, tiny_scenes):
    session = start_review(tmp_path, tiny_scenes[:1], density="sparse")  # N = 20 of 24
    session.add_scene("dense_few", tiny_scenes[2], density="dense", n=4)
    result = run_review(session, "auto", progress=False)
    sparse = session.scene(scene_name(tiny_scenes[0]))
    assert result[sparse["name"]] == "accepted" and len(sparse["history"]) == 1
    dense = session.scene("dense_few")
    assert dense["history"][0] == {**dense["history"][0], "decision": "reject", "n": 4}
    assert dense["n"] == 24 and result["dense_few"] in ("accepted", "exhausted")
    assert ReviewSession(tmp_path / "review.json").scenes == session.scenes


def test_run_review_file_replays_decisions(start_review, tmp_path, tiny_scenes):
    first = tmp_path / "a"
    recorded = start_review(first, tiny_scenes, density="sparse", n=6)
    names = list(recorded.scenes)
    recorded.reject(names[0])
    recorded.accept(names[0], recorded.estimate(names[0]))
    recorded.skip(names[1])
    replayed = ReviewSession(tmp_path / "b" / "review.json")
    result = run_review(replayed, "file", first / "review.json")
    assert result == {names[0]: "accepted", names[1]: "skipped", names[2]: "pending"}
    for name in names:
        a, b = recorded.scene(name), replayed.scene(name)
        assert [(h["decision"], h["n"]) for h in a["history"]] == \
            [(h["decision"], h["n"]) for h in b["history"]]
        assert (a["n"], a["density"], a["percentile"]) == (b["n"], b["density"], b["percentile"])
    np.testing.assert_array_equal(read_image(first / "clean" / f"{names[0]}.png"),
                                  read_image(tmp_path / "b" / "clean" / f"{names[0]}.png"))
    # its own file: decisions kept, a missing clean image is rewritten
    (tmp_path / "b" / "clean" / f"{names[0]}.png").unlink()
    assert run_review(replayed, "file") == result
    assert (tmp_path / "b" / "clean" / f"{names[0]}.png").is_file()


def test_accept_refuses_images_outside_the_expected_range(start_review, tmp_path, tiny_scenes):
    session = start_review(tmp_path, tiny_scenes[:1], density="sparse", n=6)
    name = scene_name(tiny_scenes[0])
    estimate = session.estimate(name)
    before = session.scene(name)
    with pytest.raises(ValueError, match=r"clean image: expected uint8, or float in \[0, 1\]; "
                                         r"got float32 with values in .*divide it by 255"):
        session.accept(name, estimate.image)  # the estimate's 0-255 floats, not the estimate
    with pytest.raises(TypeError, match="clean image: .* got dtype int64"):
        session.accept(name, np.full((32, 48, 3), 77))
    with pytest.raises(ValueError, match=r"clean image is 30 x 48 but the scene's frames are "
                                         r"32 x 48"):
        session.accept(name, np.zeros((30, 48, 3), np.uint8))
    assert session.scene(name) == before and not (tmp_path / "clean").exists()
    session.accept(name, estimate.image / 255.0)  # the same in [0, 1] is fine
    assert session.scene(name)["status"] == "accepted"


def test_review_names_follow_scene_name(start_review, tmp_path, tiny_scenes):
    import shutil

    spaced = tmp_path / "my scene"
    shutil.copytree(tiny_scenes[0], spaced)
    session = start_review(tmp_path, [spaced], density="sparse", n=4)
    assert list(session.scenes) == [scene_name(spaced)]  # a name the review accepts
