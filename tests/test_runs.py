"""Tests of spanetlib.paper.runs: run specs, training reuse/resume, loading, logs and summaries."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch

from spanetlib.io.errors import InputError
from spanetlib.models import count_parameters
from spanetlib.models.spanet import TABLE4_VARIANTS
from spanetlib.paper import runs


def _log(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "log.csv")


def test_ensure_trained_trains_reuses_and_resumes(smoke_dataset, tiny_spanet, tmp_path):
    def ensure(steps, seed=0):
        return runs.ensure_trained("tiny", "spanet", tiny_spanet, smoke_dataset, tmp_path,
                                   "smoke", steps=steps, seed=seed)

    final = ensure(3)
    run = tmp_path / "runs" / "tiny"
    assert final == run / "final.pt"
    ckpt = torch.load(final, weights_only=True)
    assert ckpt["step"] == 3
    assert ckpt["config"]["train_list"] == str(Path(smoke_dataset.train_list).absolute())
    assert ckpt["config"]["model_kwargs"]["channels"] == 4
    assert ckpt["config"]["milestones"] == [2]  # the smoke profile's 8 of 10 steps, scaled
    first_log = _log(run)
    assert list(first_log["step"]) == [1, 2, 3]
    assert first_log["val_psnr"].notna().all()  # val_every = max(1, steps // 4)

    # Same settings: reused, nothing trained.
    mtime = final.stat().st_mtime_ns
    assert ensure(3) == final
    assert final.stat().st_mtime_ns == mtime
    pd.testing.assert_frame_equal(_log(run), first_log)

    # More steps: resumed from last.pt (the first three log rows stay as they were).
    ensure(5)
    assert torch.load(final, weights_only=True)["step"] == 5
    log = _log(run)
    assert list(log["step"]) == [1, 2, 3, 4, 5]
    pd.testing.assert_frame_equal(log.iloc[:3].drop(columns="elapsed_s"),
                                  first_log.drop(columns="elapsed_s"))

    # final.pt lost, last.pt at the last step: resumed, no step trained again.
    final.unlink()
    ensure(5)
    assert torch.load(final, weights_only=True)["step"] == 5
    assert list(_log(run)["step"]) == [1, 2, 3, 4, 5]

    # A torn final.pt is not reused either.
    final.write_bytes(b"not a checkpoint")
    ensure(5)
    assert torch.load(final, weights_only=True)["step"] == 5

    # Other weights-relevant settings (the seed): trained again from scratch.
    ensure(2, seed=1)
    ckpt = torch.load(final, weights_only=True)
    assert (ckpt["step"], ckpt["config"]["seed"]) == (2, 1)
    assert list(_log(run)["step"]) == [1, 2]


def test_ensure_trained_rejects_bad_arguments(smoke_dataset, tiny_spanet, tmp_path):
    with pytest.raises(ValueError, match="unknown profile"):
        runs.ensure_trained("x", "spanet", tiny_spanet, smoke_dataset, tmp_path, "huge")
    with pytest.raises(ValueError, match="steps: expected an int >= 1"):
        runs.ensure_trained("x", "spanet", tiny_spanet, smoke_dataset, tmp_path, "smoke",
                            steps=0)
    with pytest.raises(ValueError, match="unknown model"):
        runs.ensure_trained("x", "resnet", {}, smoke_dataset, tmp_path, "smoke", steps=1)
    with pytest.raises(ValueError, match="at least one run"):
        runs.ensure_runs({}, smoke_dataset, tmp_path, "smoke")


def test_run_specs_share_the_spanet_run():
    assert runs.TABLE2_RUNS[runs.OURS] is runs.SPANET_RUN
    assert runs.TABLE4_RUNS["Shared SAMs (SPANet)"] is runs.SPANET_RUN
    assert runs.TABLE4_RUNS["No attention loss"].attention_weight == 0.0
    assert runs.TABLE4_RUNS["No attention loss"].model_kwargs == runs.SPANET_RUN.model_kwargs
    assert len({spec.run for spec in runs.TABLE4_RUNS.values()}) == len(runs.TABLE4_RUNS)
    assert list(runs.TABLE4_RUNS) == [*TABLE4_VARIANTS, "No attention loss"]
    for label, kwargs in TABLE4_VARIANTS.items():
        assert runs.TABLE4_RUNS[label].model_kwargs == kwargs
        assert runs.TABLE4_RUNS[label].model == "spanet"
    # The run folders of earlier versions stay valid (finished runs are reused).
    assert {label: spec.run for label, spec in runs.TABLE4_RUNS.items()} == {
        "ResNet (no SAM)": "spanet_no_sam", "Single SAM": "spanet_single_sam",
        "Unshared SAMs": "spanet_unshared_sams", "Shared SAMs (SPANet)": "spanet_shared",
        "No direction attention": "spanet_no_direction_attention",
        "No attention loss": "spanet_no_attention_loss"}


@pytest.mark.parametrize("model,kwargs", [("ddn", {"channels": 4, "num_blocks": 1}),
                                          ("rescan", {"channels": 4, "stages": 1, "depth": 3}),
                                          ("prenet", {}),
                                          ("spanet", {"channels": 4, "sam_mode": "unshared",
                                                      "num_sabs": 2, "num_pre_blocks": 0,
                                                      "irnn_backend": "reference"})])
def test_load_trained_builds_every_model(tmp_path, model, kwargs, save_checkpoint):
    net = save_checkpoint(tmp_path / "m.pt", model, kwargs)
    loaded = runs.load_trained(tmp_path / "m.pt")
    assert not loaded.training
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], net(x)[0])


def test_load_trained_errors(tmp_path, save_checkpoint):
    with pytest.raises(InputError, match="not found"):
        runs.load_trained(tmp_path / "missing.pt")
    torch.save({"weights": {}}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="in no known format.*a spanetlib training checkpoint"):
        runs.load_trained(tmp_path / "bad.pt")
    save_checkpoint(tmp_path / "ddn.pt", "ddn", {"channels": 4, "num_blocks": 1})
    ckpt = torch.load(tmp_path / "ddn.pt", weights_only=True)
    ckpt["config"]["model_kwargs"]["channels"] = 5
    torch.save(ckpt, tmp_path / "ddn.pt")
    with pytest.raises(InputError, match="does not fit DDN"):
        runs.load_trained(tmp_path / "ddn.pt")


def test_parameter_counts(tmp_path, tiny_spanet, save_checkpoint):
    none = save_checkpoint(tmp_path / "a.pt", "spanet", {**tiny_spanet, "sam_mode": "none"})
    shared = save_checkpoint(tmp_path / "b.pt", "spanet", tiny_spanet)
    counts = runs.parameter_counts({"no SAM": tmp_path / "a.pt", "shared": tmp_path / "b.pt"})
    assert counts == {"no SAM": sum(p.numel() for p in none.parameters()),
                      "shared": count_parameters(shared)}
    assert counts["shared"] > counts["no SAM"]


def test_describe_runs():
    table = runs.describe_runs(runs.TABLE4_RUNS)
    assert list(table["row"]) == list(runs.TABLE4_RUNS)
    assert list(table.columns) == ["row", "run", "model", "model_kwargs", "attention loss",
                                   "training set"]
    assert table["attention loss"].tolist()[-1] == 0.0
    assert table["attention loss"].tolist()[0] == "profile"


def test_training_summary_and_log(tmp_path):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "log.csv").write_text("step,epoch,lr,loss,psnr,val_psnr,val_ssim,elapsed_s\n"
                                 "1,0.1,0.001,0.5,10,,,1.0\n2,0.2,0.001,0.4,12,15,0.5,2.0\n"
                                 "3,0.3,0.001,0.3,13,,,3.0\n")
    summary = runs.training_summary({"r": run / "final.pt"})
    assert summary.iloc[0].to_dict() == {"model": "r", "steps": 3, "train_loss": 0.3,
                                         "train_psnr": 13.0, "val_psnr": 15.0,
                                         "val_ssim": 0.5, "seconds": 3.0}
    assert len(runs.read_log(run)) == 3
    with pytest.raises(InputError, match="training log not found"):
        runs.read_log(tmp_path)


def test_original_runs_mirror_the_retrained_ones():
    assert list(runs.ORIGINAL_OF) == list(runs.TABLE2_RUNS)
    assert list(runs.ORIGINAL_OF.values()) == list(runs.TABLE2_ORIGINAL_RUNS)
    assert runs.ORIGINAL_OF[runs.OURS] == "SPANet (ours, original)"
    for label, spec in runs.TABLE2_RUNS.items():
        original = runs.TABLE2_ORIGINAL_RUNS[runs.ORIGINAL_OF[label]]
        assert (original.model, original.model_kwargs) == (spec.model, spec.model_kwargs)
        assert (spec.training_set, original.training_set) == (runs.SECTION3, runs.SINGLE_IMAGE)
        assert original.run == f"{spec.run}_original"
    with pytest.raises(ValueError, match="training_set must be"):
        runs.RunSpec("x", "ddn", training_set="rain100h")


def test_seed_runs_in_one_or_two_processes_give_the_same_weights(smoke_dataset, tiny_spanet,
                                                                 tmp_path, single_thread):
    single = dataclasses.replace(smoke_dataset, train_list=smoke_dataset.test_list)
    specs = {"a": runs.RunSpec("a", "spanet", tiny_spanet),
             "a (original)": runs.RunSpec("a_original", "spanet", tiny_spanet,
                                          training_set=runs.SINGLE_IMAGE)}
    with pytest.raises(ValueError, match="pass single_image"):
        runs.ensure_seed_runs(specs, smoke_dataset, tmp_path, "smoke", [0], steps=2)
    for bad in ([], [0, 0], [0.5], [True]):
        with pytest.raises(ValueError, match="seed"):
            runs.ensure_seed_runs(specs, smoke_dataset, tmp_path, "smoke", bad, steps=2,
                                  single_image=single)
    with pytest.raises(ValueError, match="workers: expected an int >= 1"):
        runs.ensure_seed_runs(specs, smoke_dataset, tmp_path, "smoke", [0], steps=2,
                              single_image=single, workers=0)
    one = runs.ensure_seed_runs(specs, smoke_dataset, tmp_path / "one", "smoke", [0, 1],
                                steps=2, single_image=single)
    two = runs.ensure_seed_runs(specs, smoke_dataset, tmp_path / "two", "smoke", [0, 1],
                                steps=2, single_image=single, workers=2)
    assert list(one) == list(two) == [0, 1] and list(two[1]) == list(specs)
    assert two[1]["a (original)"] == tmp_path / "two" / "runs" / "a_original_seed1" / "final.pt"
    for k in (0, 1):
        for label in specs:
            a, b = (torch.load(r[k][label], weights_only=True) for r in (one, two))
            assert a["config"]["seed"] == k
            assert a["config"]["train_list"].endswith(
                "test.txt" if label.endswith("(original)") else "train.txt")
            for name, tensor in a["model"].items():
                assert torch.equal(tensor, b["model"][name]), (k, label, name)
    # the seeds and the training sets give different weights
    w = {(k, label): torch.load(one[k][label], weights_only=True)["model"]
         for k in (0, 1) for label in specs}
    first = next(iter(w[0, "a"]))
    assert not torch.equal(w[0, "a"][first], w[1, "a"][first])


def test_validation_gain(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    pd.DataFrame({"step": range(1, 11), "val_psnr": [20, None, 24, None, 26, None, 27,
                                                     None, 27.5, 27.6]}).to_csv(
        run / "log.csv", index=False)
    (row,) = runs.validation_gain({"m": run}).to_dict("records")
    # the last quarter starts at the first validation at or after step 7.5: step 9
    assert row == pytest.approx({"model": "m", "first": 20, "start": 27.5, "end": 27.6,
                                 "late_gain": 0.1, "total_gain": 7.6})
    (row,) = runs.validation_gain({"m": run}, fraction=0.5).to_dict("records")
    assert row["start"] == 26 and row["late_gain"] == pytest.approx(1.6)
    pd.DataFrame({"step": [1, 2], "val_psnr": [None, 20]}).to_csv(run / "log.csv", index=False)
    assert runs.validation_gain({"m": run})["late_gain"].isna().all()
    with pytest.raises(ValueError, match="fraction must be in"):
        runs.validation_gain({"m": run}, fraction=1)
    with pytest.raises(InputError, match="training log not found"):
        runs.validation_gain({"m": tmp_path / "none"})
