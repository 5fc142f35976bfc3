"""spanet build-dataset on folders of real-world clips (issue 21, items 4 and 5).

Every container FFmpeg decodes is a scene; every other entry of the source folder is named with
the reason it is skipped; every scene not exported gets a line; the train/test split counts
exported scenes only and an empty split is loud; the scenes run in worker processes or on a
Dask cluster with the same files as in one process.
"""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from spanetlib import cli
from spanetlib.io.errors import InputError
from spanetlib.io.files import IMAGE_SUFFIXES, read_image
from spanetlib.io.video import (
    VIDEO_SUFFIXES,
    FrameSource,
    count_frames,
    frame_shape,
    is_video,
    read_sequence,
    scan_scenes,
    sequence_path,
    source_identity,
    write_frames,
    write_video,
)
from spanetlib.pipeline import export
from spanetlib.pipeline.export import (
    SCENE_PEAK_PER_FRAME_BYTE,
    SceneJob,
    choose_workers,
    export_dataset,
    scene_peak_bytes,
)

# --------------------------------------------------------------------------- containers
#: Containers and codecs an OpenCV wheel usually writes; a pair this build cannot write is
#: skipped (the reading side is what is tested).
CONTAINERS = [(".avi", "MJPG"), (".mkv", "FFV1"), (".mp4", "mp4v"), (".mov", "mp4v"),
              (".m4v", "mp4v"), (".3gp", "mp4v"), (".webm", "VP80"), (".wmv", "WMV2"),
              (".asf", "WMV2"), (".flv", "FLV1"), (".ts", "mp4v"), (".mts", "mp4v"),
              (".m2ts", "mp4v")]


def _frames(n=6, h=48, w=64, seed=0):
    """Smooth moving content (lossy codecs keep it; random pixels they would not)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (h, w, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 4)
    base = np.clip(128 + 80 * smooth / smooth.std(), 0, 255).astype(np.uint8)
    return np.stack([np.roll(base, i, axis=1) for i in range(n)])


def _write_with(path, frames, codec):
    """Write ``frames`` (RGB) with ``codec``; False when this OpenCV cannot write it."""
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 10.0, (w, h), True)
    if not writer.isOpened():
        return False
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path.is_file() and path.stat().st_size > 0


def _write_gif(path, frames):
    image = pytest.importorskip("PIL.Image")
    images = [image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)


@pytest.mark.parametrize("suffix, codec", CONTAINERS, ids=[s for s, _ in CONTAINERS])
def test_every_container_written_is_a_scene_that_reads(tmp_path, suffix, codec):
    frames = _frames()
    path = tmp_path / f"clip{suffix}"
    if not _write_with(path, frames, codec):
        pytest.skip(f"this OpenCV cannot write {codec} into {suffix}")
    assert suffix in VIDEO_SUFFIXES
    assert scan_scenes(tmp_path).scenes == [path]
    read = read_sequence(path)
    assert read.shape == frames.shape
    # lossy codecs: the mean error stays far below the frames' own spread
    assert np.abs(read.astype(int) - frames).mean() < 0.25 * frames.std()
    assert frame_shape(path) == frames.shape[1:3]


def test_a_gif_and_an_unknown_suffix_that_decodes_are_scenes(tmp_path):
    frames = _frames()
    _write_gif(tmp_path / "loop.gif", frames)
    assert _write_with(tmp_path / "clip.avi", frames, "MJPG")
    (tmp_path / "clip.avi").rename(tmp_path / "camera.vid")  # a suffix no list holds
    (tmp_path / "notes.vid").write_text("not a video")
    listing = scan_scenes(tmp_path)
    assert [p.name for p in listing.scenes] == ["camera.vid", "loop.gif"]
    assert [(p.name, why) for p, why in listing.skipped] == [
        ("notes.vid", "not a video FFmpeg can decode, nor a folder of frames")]
    gif = read_sequence(tmp_path / "loop.gif")
    assert gif.shape == frames.shape
    assert np.abs(gif.astype(int) - frames).mean() < 0.25 * frames.std()  # a 256-colour palette
    assert is_video(tmp_path / "camera.vid") and not is_video(tmp_path / "notes.vid")


def test_scan_names_every_entry_it_skips(tmp_path):
    frames = _frames(3)
    write_frames(tmp_path / "roof", frames)
    assert _write_with(tmp_path / "street.avi", frames, "MJPG")
    (tmp_path / "notes.txt").write_text("x")
    cv2.imwrite(str(tmp_path / "photo.png"), frames[0])
    (tmp_path / "empty").mkdir()
    (tmp_path / ".DS_Store").write_bytes(b"x")
    (tmp_path / "broken.mp4").write_bytes(b"a known suffix: a scene, its export fails")
    listing = scan_scenes(tmp_path)
    assert [p.name for p in listing.scenes] == ["broken.mp4", "roof", "street.avi"]
    reasons = {p.name: why for p, why in listing.skipped}
    assert reasons == {
        ".DS_Store": "hidden (its name starts with '.')",
        "empty": f"a folder without image frames ({', '.join(IMAGE_SUFFIXES)}) or a video "
                 "directly inside it",
        "notes.txt": "not a video FFmpeg can decode, nor a folder of frames",
        "photo.png": "a single image, not a scene (put a scene's frames in a folder of their "
                     "own)"}


def test_a_folder_holding_one_video_is_that_video(tmp_path):
    # Video datasets often come as a folder per scene with its clip inside.
    frames = _frames(5)
    clip = write_video(tmp_path / "street" / "clip.avi", frames)  # FFV1: lossless
    write_video(tmp_path / "two" / "a.avi", frames)
    write_video(tmp_path / "two" / "b.mkv", frames)
    write_frames(tmp_path / "both", frames)
    write_video(tmp_path / "both" / "clip.avi", frames[::-1])
    assert sequence_path(tmp_path / "street") == clip
    assert sequence_path(tmp_path / "two") == tmp_path / "two"
    assert sequence_path(tmp_path / "both") == tmp_path / "both"  # frames come first
    odd = write_video(tmp_path / "odd" / "camera.avi", frames).rename(tmp_path / "odd" / "c.vid")
    (tmp_path / "odd" / "notes.txt").write_text("not a video")
    assert sequence_path(tmp_path / "odd") == odd  # another suffix, but it decodes
    folder = tmp_path / "street"
    np.testing.assert_array_equal(read_sequence(folder), frames)
    np.testing.assert_array_equal(read_sequence(tmp_path / "both"), frames)
    assert count_frames(folder) == 5 and frame_shape(folder) == (48, 64)
    assert source_identity(folder).same_content(source_identity(clip))
    source = FrameSource(folder)
    assert len(source) == 5
    np.testing.assert_array_equal(np.stack(list(source)), frames)
    # the pass the export writes its pairs in (not the folder's frame files: it has none)
    np.testing.assert_array_equal(source.take([1, 3]), frames[[1, 3]])
    with pytest.raises(InputError, match=r"in folder .*two, and 2 videos \(a.avi, b.mkv\): "
                                         r"name one of them"):
        read_sequence(tmp_path / "two")
    listing = scan_scenes(tmp_path)
    assert [p.name for p in listing.scenes] == ["both", "odd", "street"]
    assert dict((p.name, why) for p, why in listing.skipped) == {
        "two": "a folder of 2 videos and no image frames (a scene folder holds frames or one "
               "video; give this folder as SRC to make each video a scene)"}


# --------------------------------------------------------------------------- reports and splits
@pytest.fixture
def in_process(monkeypatch, quality_judge):
    """One core and a judge accepting estimates of >= 12 frames (scenes run in this process,
    so the stand-in applies)."""
    monkeypatch.setattr(export, "cpus_available", lambda: 1)
    monkeypatch.setattr(export, "scene_quality", quality_judge(12))


def _short_scene(source, dest, n):
    """A copy of the first ``n`` frames of a frame folder."""
    dest.mkdir(parents=True)
    for path in sorted(source.iterdir())[:n]:
        shutil.copy(path, dest / path.name)


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def test_build_dataset_names_skips_and_scenes_not_exported(tmp_path, scenes64, in_process,
                                                           capsys):
    src = tmp_path / "src"
    shutil.copytree(scenes64[0], src / "good")
    _short_scene(scenes64[1], src / "short", 8)  # never accepted: 8 < 12 frames
    (src / "notes.txt").write_text("x")
    (src / "empty").mkdir()
    (src / "broken.mkv").write_bytes(b"not a video")
    out = tmp_path / "out"
    code = cli.main(["build-dataset", str(src), "-o", str(out), "--auto-accept", "--crop", "32",
                     "--frames-per-video", "1", "--test-fraction", "0"])
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert code == 1  # a scene failed
    assert "skipped notes.txt: not a video FFmpeg can decode, nor a folder of frames" in lines
    assert any(x.startswith("skipped empty: a folder without image frames") for x in lines)
    assert any(x.startswith("not exported: short: auto-accept: quality 0.25 not accepted up "
                            "to N = 8 (every frame): fewer than 12 frames") for x in lines)
    assert any(x.startswith("FAILED: broken: cannot open video") for x in lines), lines
    assert "2 entries of the source folder skipped" in lines[-1]
    assert "test.txt is empty" not in printed.err  # --test-fraction 0 asks for no test list
    manifest = _manifest(out)["scenes"]
    assert manifest["good"]["split"] == "train" and manifest["short"]["status"] == "not-exported"
    assert "split" not in manifest["short"] and manifest["broken"]["status"] == "failed"


def test_the_split_counts_exported_scenes_only(tmp_path, scenes64, in_process, capsys):
    # Issue 21: the only accepted scene went to the test list because rejected scenes were
    # counted, leaving train.txt empty with exit 0.
    src = tmp_path / "src"
    shutil.copytree(scenes64[0], src / "good")
    for i, scene in enumerate(scenes64):
        _short_scene(scene, src / f"short{i}", 8)
    # with every scene counted, this seed puts "good" on the test side
    assert export._split_scenes(["good", "short0", "short1", "short2"], 0.25, 8) == {"good"}
    out = tmp_path / "out"
    code = cli.main(["build-dataset", str(src), "-o", str(out), "--auto-accept", "--crop", "32",
                     "--frames-per-video", "1", "--test-fraction", "0.25", "--seed", "8"])
    printed = capsys.readouterr()
    assert code == 1
    assert (out / "train.txt").read_text().strip() and not (out / "test.txt").read_text()
    assert all(x.startswith("good/") for x in (out / "train.txt").read_text().splitlines())
    assert "spanet build-dataset: warning: test.txt is empty: 1 scene exported with pairs, too " \
        "few for a test split (--test-fraction 0.25 asks for one)" in printed.err
    assert _manifest(out)["scenes"]["good"]["split"] == "train"
    # two exported scenes: one on each side, exit 0, no warning
    shutil.copytree(scenes64[1], src / "good2")
    code = cli.main(["build-dataset", str(src), "-o", str(out), "--auto-accept", "--crop", "32",
                     "--frames-per-video", "1", "--test-fraction", "0.25", "--seed", "8"])
    printed = capsys.readouterr()
    assert code == 0 and "warning" not in printed.err
    manifest = _manifest(out)["scenes"]
    assert sorted(manifest[s]["split"] for s in ("good", "good2")) == ["test", "train"]


def test_a_scene_folder_holding_its_video_exports_as_the_frames_do(tmp_path, scenes64,
                                                                   in_process):
    # The real clips of ../shared/real-clips come so. The pass that writes the pairs reads
    # the frames again (FrameSource.iter_at): it must find the video in the folder too.
    frames = read_sequence(scenes64[0])
    src = tmp_path / "src"
    write_video(src / "as_video" / "rain.avi", frames)  # FFV1: the same pixels
    shutil.copytree(scenes64[0], src / "as_frames")
    out = tmp_path / "out"
    summary = export_dataset(src, out, auto_accept=True, crop=32, frames_per_video=2,
                             test_fraction=0, progress=False)
    assert not summary.failed and not summary.not_exported and not summary.skipped
    lists = (out / "train.txt").read_text().splitlines()
    for scene in ("as_video", "as_frames"):
        assert _manifest(out)["scenes"][scene]["status"] == "exported"
    as_video = sorted(x for x in lists if x.startswith("as_video/"))
    as_frames = sorted(x for x in lists if x.startswith("as_frames/"))
    assert as_video and [x.replace("as_video/", "as_frames/") for x in as_video] == as_frames
    for line in as_video[:3]:
        for path in line.split():
            np.testing.assert_array_equal(
                cv2.imread(str(out / path)),
                cv2.imread(str(out / path.replace("as_video/", "as_frames/"))))


def test_no_scene_exported_is_loud(tmp_path, scenes64, in_process):
    src = tmp_path / "src"
    _short_scene(scenes64[0], src / "short", 8)
    with pytest.warns(UserWarning, match="train.txt is empty: no scene was exported"):
        summary = export_dataset(src, tmp_path / "out", auto_accept=True, crop=32,
                                 test_fraction=0, progress=False)
    assert summary.empty_splits == ["train"] and list(summary.not_exported) == ["short"]


# --------------------------------------------------------------------------- workers
def test_workers_follow_cores_and_memory(tmp_path, scenes64, monkeypatch):
    gib = 1 << 30
    assert choose_workers([gib] * 5, cores=16, available=None) == 5  # the scenes bound it
    assert choose_workers([gib] * 5, cores=2, available=64 * gib) == 2
    assert choose_workers([4 * gib, gib, gib], cores=3, available=8 * gib) == 2
    assert choose_workers([], cores=4, available=gib) == 1
    job = SceneJob("s", scenes64[0], tmp_path, export.ExportSettings(), "auto-accepted",
                   frames_available=24)
    peak = scene_peak_bytes(job)
    assert peak == 64 * 96 * 3 * 24 * SCENE_PEAK_PER_FRAME_BYTE
    job.n = 10  # an accepted scene keeps its review's N
    assert scene_peak_bytes(job) == 64 * 96 * 3 * 10 * SCENE_PEAK_PER_FRAME_BYTE
    # the default: what choose_workers gives for these scenes, cores and memory
    seen = []
    monkeypatch.setattr(export, "cpus_available", lambda: 8)
    monkeypatch.setattr(export, "host_memory_available",
                        lambda: 2 * export.WORKER_BASE_BYTES / export.WORKER_MEMORY_SHARE
                        + 2 * peak / export.WORKER_MEMORY_SHARE * 1.2)
    monkeypatch.setattr(export, "_export_in_workers",
                        lambda plan, jobs, workers, bar: seen.append(workers) or [])
    src = tmp_path / "src"
    for path in scenes64:
        shutil.copytree(path, src / path.name)
    export_dataset(src, tmp_path / "out", auto_accept=True, crop=32, progress=False)
    assert seen == [2]  # memory for two scenes of 24 frames, not for the 8 cores


def _tree(out):
    """Every file under ``out``: bytes, or JSON without the times it records."""
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file():
            rel = path.relative_to(out).as_posix()
            if path.suffix == ".json":
                data = json.loads(path.read_text())
                data.pop("updated", None)
                data.pop("finished", None)
                files[rel] = data
            else:
                files[rel] = path.read_bytes()
    return files


@pytest.mark.slow
def test_one_worker_two_workers_and_a_dask_cluster_write_the_same_files(tmp_path, scenes64):
    distributed = pytest.importorskip("distributed")
    src = tmp_path / "src"
    for path in scenes64:
        shutil.copytree(path, src / path.name)
    args = dict(auto_accept=True, crop=32, frames_per_video=3, density="sparse",
                test_fraction=0.3, progress=False)
    one = export_dataset(src, tmp_path / "one", workers=1, **args)
    two = export_dataset(src, tmp_path / "two", workers=2, **args)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        dask = export_dataset(src, tmp_path / "dask", scheduler=cluster.scheduler_address,
                              **args)
    assert len(one.exported) == 3 and not one.failed
    for summary in (two, dask):
        assert sorted(summary.exported) == sorted(one.exported)
        assert summary.train_scenes == one.train_scenes
        assert summary.test_scenes == one.test_scenes
    reference = _tree(tmp_path / "one")
    assert len(reference) > 20
    for name in ("two", "dask"):
        tree = _tree(tmp_path / name)
        assert sorted(tree) == sorted(reference)
        manifest, ref_manifest = tree.pop("manifest.json"), dict(reference["manifest.json"])
        assert manifest.pop("src") == ref_manifest.pop("src")
        assert manifest == ref_manifest
        different = [rel for rel in tree if tree[rel] != reference[rel]]
        assert different == [], f"{name}: {different[:5]}"
    # resumable on the cluster too: everything kept, nothing rewritten
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "dask").rglob("*.png")}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        again = export_dataset(src, tmp_path / "dask", scheduler=cluster.scheduler_address,
                               **args)
    assert again.exported == [] and sorted(again.resumed) == sorted(one.exported)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_workers_and_a_scheduler_exclude_each_other(tmp_path, scenes64):
    with pytest.raises(ValueError, match="workers and scheduler: pass one of them"):
        export_dataset(scenes64[0].parent, tmp_path / "out", auto_accept=True, workers=2,
                       scheduler="tcp://127.0.0.1:1")


def test_an_unreachable_scheduler_is_one_line(tmp_path, scenes64, monkeypatch):
    distributed = pytest.importorskip("distributed")

    class Refusing:
        """A client that cannot connect (as a real one after its timeout)."""

        def __init__(self, address, **kwargs):
            raise OSError(f"Timed out trying to connect to {address}")

    monkeypatch.setattr(distributed, "Client", Refusing)
    with pytest.raises(InputError, match=r"cannot reach the Dask scheduler at "
                                         r"tcp://127\.0\.0\.1:1: Timed out"):
        export_dataset(scenes64[0].parent, tmp_path / "out", auto_accept=True,
                       scheduler="tcp://127.0.0.1:1", progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything is written


# --------------------------------------------------------------------------- partial accepts
def _parked_early(seed=0):
    """A parked object leaves after 7 of 40 frames: a 7-frame period, then a long one."""
    from spanetlib.synthesis.rain import CLIP_PRESETS, make_rain_clip

    return make_rain_clip(CLIP_PRESETS["parked-leaves"].replace(size=(72, 96), n_frames=40,
                                                                parked=0.2), seed)


def _frames_of(out, list_name):
    lines = (out / list_name).read_text().splitlines()
    return sorted({int(line.split()[0].split("/")[-1].split("_")[0]) for line in lines})


def test_a_scene_exports_the_periods_that_pass_when_its_frames_run_out(tmp_path, monkeypatch):
    # A pan that starts fast, a parked car that leaves early: the short first period is no
    # reason to throw away the long one. Its frames are paired with its own clean image only.
    from spanetlib.pipeline.review import ReviewSession, review_batch

    monkeypatch.setattr(export, "cpus_available", lambda: 1)
    clip = _parked_early()
    src = tmp_path / "src"
    write_frames(src / "parked", clip.frames)
    out = tmp_path / "out"
    summary = export_dataset(src, out, auto_accept=True, crop=32, test_fraction=0,
                             progress=False)
    entry = _manifest(out)["scenes"]["parked"]
    assert entry["status"] == "exported" and entry["quality"]["accept"]
    assert len(entry["periods"]) == 1 and entry["auto_review"][-1]["periods"] == [1]
    (left,) = entry["periods_left_out"]
    assert left["period"] == 0 and left["frames"] < 8
    assert any("only" in why and "unattended accept" in why for why in left["reasons"])
    line = summary.scene_reports["parked"]
    assert f"period 0 (frames {left['start']}-{left['stop'] - 1}) left out: only" in line
    # Every pair: a frame of the kept period's scene state, with that state's clean image.
    paired = _frames_of(out, "train.txt")
    kept = entry["periods"][0]
    assert paired and all(kept["start"] <= i < kept["stop"] for i in paired)
    assert set(clip.state[paired]) == {1}
    clean = read_image(out / "parked" / "clean.png").astype(np.float64)
    truth = clip.state_truth(1, paired[0]).astype(np.float64)
    assert 10 * np.log10(255 ** 2 / np.mean((clean - truth) ** 2)) > 35
    assert not (out / "parked" / "clean_period1.png").exists()
    # The batch review decides the same, records it, and an export of that review (or of
    # its replay into a fresh file) writes the same pairs.
    session = ReviewSession(tmp_path / "review.json")
    session.add_scene("parked", src / "parked", density="sparse")
    review_batch(session, "auto", progress=False)
    state = session.scene("parked")
    assert state["status"] == "accepted" and state["periods_accepted"] == [1]
    assert len(state["clean_images"]) == 1 and state["periods_left_out"][0]["period"] == 0
    replayed = ReviewSession(tmp_path / "replayed.json")
    review_batch(replayed, "file", tmp_path / "review.json", progress=False)
    assert replayed.scene("parked")["periods_accepted"] == [1]
    for review in ("review.json", "replayed.json"):
        again = tmp_path / f"out_{review}"
        export_dataset(src, again, review_file=tmp_path / review, crop=32, test_fraction=0,
                       progress=False)
        assert _frames_of(again, "train.txt") == paired
        assert _manifest(again)["scenes"]["parked"]["periods_left_out"][0]["period"] == 0
