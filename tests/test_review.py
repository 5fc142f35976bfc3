"""ReviewSession persistence and decisions, and batch review (run_review)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from spanetlib.io.errors import InputError
from spanetlib.io.files import read_image, round_to_uint8
from spanetlib.io.video import scene_name
from spanetlib.pipeline.review import ReviewSession
from spanetlib.pipeline.review_widget import run_review
from spanetlib.pipeline.selection import FRAME_COUNTS
from spanetlib.synthesis.testsets import scene_ground_truth


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
    assert estimate.n_frames == 6 and len(estimate.segments) == 1
    seg = estimate.segments[0]
    assert seg.image.shape == (32, 48, 3)
    state = session.accept(name, estimate)
    assert state["status"] == "accepted" and state["clean_image"] == f"clean/{name}.png"
    assert state["clean_images"] == [f"clean/{name}.png"]
    assert state["percentile"] == pytest.approx(seg.percentile)
    assert state["history"][-1]["decision"] == "accept" and state["history"][-1]["n"] == 6
    # what was accepted: its period, the camera motion, and the quality judgement
    period = state["periods"][0]
    assert (period["start"], period["stop"], period["frames"]) == (0, 6, 6)
    assert period["reliable_share"] == pytest.approx(seg.reliability.reliable_share)
    assert state["motion"]["align"] == "auto" and state["motion"]["paired"] == \
        int((estimate.membership >= 0).sum())
    assert 0 <= state["quality"]["score"] <= 1 and "reasons" in state["quality"]
    clean = read_image(tmp_path / "clean" / f"{name}.png")
    np.testing.assert_array_equal(clean, round_to_uint8(seg.image))
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
        from spanetlib.io.video import read_sequence
        return read_sequence(source, start=start, count=count, min_frames=1)

    assert len(session.frames(name, loader)) == 5
    assert session.reject(name)["n"] == 15
    assert session.scene(name)["status"] == "rejected-needs-more"
    assert name in session.pending()
    assert session.estimate(name, loader).n_frames == 15
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
    with pytest.raises(ValueError, match="n: expected an int >= 2"):
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


def test_run_review_auto_follows_the_quality_score(start_review, tmp_path, tiny_scenes,
                                                    monkeypatch):
    # The batch review accepts iff scene_quality accepts; a rejection adds frames. A stand-in
    # judge that wants 14 frames makes the loop's steps visible.
    from spanetlib.pipeline import review
    from spanetlib.pipeline.quality import SceneQuality

    judged = []

    def judge(estimate):
        judged.append(estimate.n_frames)
        ok = estimate.n_frames >= 14
        return SceneQuality(score=0.9 if ok else 0.2, cues={"frames": estimate.n_frames},
                            accept=ok, reasons=[] if ok else ["too few frames"])

    never_ok = SceneQuality(score=0.1, cues={}, accept=False, reasons=["no"])
    monkeypatch.setattr(review, "scene_quality", lambda e: never_ok)
    never = start_review(tmp_path / "never", tiny_scenes[1:2], density="sparse", n=4)
    assert set(run_review(never, "auto", progress=False).values()) == {"exhausted"}
    history = next(iter(never.scenes.values()))["history"]
    assert [(h["decision"], h["n"]) for h in history] == [("reject", 4), ("reject", 14),
                                                          ("reject", 24)]  # 24: all frames
    monkeypatch.setattr(review, "scene_quality", judge)
    session = start_review(tmp_path, tiny_scenes[:1], density="sparse", n=4)  # +10 per reject
    session.add_scene("other", tiny_scenes[2], density="sparse", n=4)
    result = run_review(session, "auto", progress=False)
    name = scene_name(tiny_scenes[0])
    assert result == {name: "accepted", "other": "accepted"}
    entry = session.scene(name)
    assert [(h["decision"], h["n"]) for h in entry["history"]] == [("reject", 4), ("accept", 14)]
    assert entry["history"][0]["quality"] == {"score": 0.2, "accept": False,
                                              "reasons": ["too few frames"],
                                              "cues": {"frames": 4.0}}
    assert entry["quality"]["score"] == 0.9 and entry["quality"]["accept"]
    assert judged == [4, 14, 4, 14]
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
    image = session.estimate(name).segments[0].image
    before = session.scene(name)
    with pytest.raises(ValueError, match=r"clean image: expected uint8, or float in \[0, 1\]; "
                                         r"got float32 with values in .*divide it by 255"):
        session.accept(name, image)  # the estimate's 0-255 floats, not the estimate
    with pytest.raises(TypeError, match="clean image: .* got dtype int64"):
        session.accept(name, np.full((32, 48, 3), 77))
    with pytest.raises(ValueError, match=r"clean image is 30 x 48 but the scene's frames are "
                                         r"32 x 48"):
        session.accept(name, np.zeros((30, 48, 3), np.uint8))
    assert session.scene(name) == before and not (tmp_path / "clean").exists()
    session.accept(name, image / 255.0)  # the same in [0, 1] is fine
    assert session.scene(name)["status"] == "accepted"


def test_review_names_follow_scene_name(start_review, tmp_path, tiny_scenes):
    import shutil

    spaced = tmp_path / "my scene"
    shutil.copytree(tiny_scenes[0], spaced)
    session = start_review(tmp_path, [spaced], density="sparse", n=4)
    assert list(session.scenes) == [scene_name(spaced)]  # a name the review accepts


# ------------------------------------------------------------------ bound to the content
def _copy_scenes(scenes, folder, change=False):
    """Copies of the scenes in ``folder`` (the same names); ``change`` alters every frame."""
    import shutil

    from spanetlib.io.files import write_image

    out = []
    for path in scenes:
        target = folder / path.name
        shutil.copytree(path, target)
        if change:
            for frame in sorted(target.iterdir()):
                image = read_image(frame)
                write_image(frame, 255 - image)
        out.append(target)
    return out


def test_a_review_made_on_other_content_is_refused(start_review, tmp_path, tiny_scenes):
    here = _copy_scenes(tiny_scenes[:2], tmp_path / "here")
    there = _copy_scenes(tiny_scenes[:2], tmp_path / "there", change=True)
    session = start_review(tmp_path, here, density="sparse", n=6)
    name = scene_name(here[0])
    recorded = session.scene(name)["identity"]
    assert recorded["path"] == str(here[0].resolve()) and recorded["frames"] == 24
    before = (tmp_path / "review.json").read_text()
    # a review file resumed on another folder whose scenes have the same names
    resumed = ReviewSession(tmp_path / "review.json")
    with pytest.raises(InputError) as info:
        resumed.add_scene(name, there[0])
    message = str(info.value)
    assert "\n" not in message and str(here[0].resolve()) in message \
        and str(there[0].resolve()) in message and "holds other frames" in message
    assert (tmp_path / "review.json").read_text() == before
    # the same frames moved elsewhere are the same scene: the review follows them
    moved = here[1].rename(tmp_path / "moved")
    other = scene_name(here[1])
    assert resumed.add_scene(other, moved)["source"] == str(moved.resolve())
    assert resumed.frames(other).shape == (6, 32, 48, 3)


def test_frames_changed_since_the_review_are_refused(start_review, tmp_path, tiny_scenes):
    (scene,) = _copy_scenes(tiny_scenes[:1], tmp_path / "src")
    session = start_review(tmp_path, [scene], density="sparse", n=6)
    name = scene_name(scene)
    session.accept(name, session.estimate(name))
    frame = sorted(scene.iterdir())[0]
    from spanetlib.io.files import write_image

    write_image(frame, 255 - read_image(frame))
    with pytest.raises(InputError, match=rf"scene '{name}' was reviewed on .*frames hash "
                                         r"[0-9a-f]{12}\) but .* holds other frames"):
        ReviewSession(tmp_path / "review.json").frames(name)
    # replaying that review elsewhere is refused as well
    with pytest.raises(InputError, match="holds other frames"):
        run_review(ReviewSession(tmp_path / "b" / "review.json"), "file",
                   tmp_path / "review.json")


def test_version_1_review_files_are_read_and_bound(start_review, tmp_path, tiny_scenes):
    (scene,) = _copy_scenes(tiny_scenes[:1], tmp_path / "src")
    name = scene_name(scene)
    start_review(tmp_path, [scene], density="sparse", n=6)
    data = json.loads((tmp_path / "review.json").read_text())
    data["version"] = 1
    for key in ("identity", "align", "clean_images", "periods", "motion", "quality"):
        del data["scenes"][name][key]
    (tmp_path / "review.json").write_text(json.dumps(data))
    old = ReviewSession(tmp_path / "review.json")
    with pytest.warns(UserWarning, match="no recorded source identity"):
        assert old.frames(name).shape[0] == 6
    upgraded = json.loads((tmp_path / "review.json").read_text())
    assert upgraded["version"] == 2 and upgraded["scenes"][name]["identity"]["frames"] == 24
    # an old entry given another path cannot be checked: refused
    data["scenes"][name]["source"] = str(tmp_path / "elsewhere")
    (tmp_path / "review.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="older spanetlib that did not record its content"):
        ReviewSession(tmp_path / "review.json").add_scene(name, scene)


def test_accept_writes_one_clean_image_per_stable_period(tmp_path):
    from spanetlib.io.video import write_frames
    from spanetlib.synthesis.rain import CLIP_PRESETS, make_rain_clip

    clip = make_rain_clip(CLIP_PRESETS["parked-leaves"].replace(size=(96, 128), n_frames=40))
    folder = write_frames(tmp_path / "parked", clip.frames)[0].parent
    session = ReviewSession(tmp_path / "review.json")
    session.add_scene("parked", folder, density="sparse", n=40)
    result = session.estimate("parked")
    assert len(result.segments) == 2
    state = session.accept("parked", result)
    assert state["clean_images"] == ["clean/parked_period1.png", "clean/parked_period2.png"]
    assert [p["start"] for p in state["periods"]] == [s.start for s in result.segments]
    for rel, seg in zip(state["clean_images"], result.segments, strict=True):
        np.testing.assert_array_equal(read_image(tmp_path / rel),
                                      round_to_uint8(seg.image))
    assert session.clean_image_paths("parked") == [tmp_path / r for r in state["clean_images"]]
    # the two states differ where the parked object was
    a, b = (read_image(tmp_path / r).astype(int) for r in state["clean_images"])
    assert np.abs(a - b).max() > 40
