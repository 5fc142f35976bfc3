"""The recipe of the shipped ``load_pretrained("synthetic")`` weights, runnable end to end.

``spanet train-synthetic --out runs/synthetic`` (or :func:`train_synthetic_weights`) does what
made ``spanetlib/models/weights/spanet_synthetic.pth``:

1. synthetic rain videos of static scenes
   (`spanetlib.synthesis.testsets.build_synthetic_video_scenes`), sparse / normal / dense rain in
   turn, on the photos of `spanetlib.synthesis.rain.TRAINING_BACKGROUND_NAMES` only (the photos of
   `spanetlib.synthesis.rain.HELDOUT_BACKGROUND_NAMES` are kept for the held-out check);
2. the paper's pipeline (§3): every scene accepted without review, its clean image estimated
   from the frames (Eqs. 2-4), and its frames cut into rain/clean patch pairs
   (`spanetlib.pipeline.export.export_dataset`);
3. SPANet trained on those pairs (`spanetlib.training.train.train`, the ``quick`` profile with the
   sizes of :data:`SYNTHETIC_RECIPE`), resumable with ``--resume``;
4. the weights exported without the optimizer state (:func:`export_weights`), loadable with
   `spanetlib.models.load_pretrained`.

`spanetlib.evaluation.evaluate.heldout_check` then scores them on rain outside the synthesizer's
presets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spanetlib.io.errors import InputError
from spanetlib.io.files import check_output_path
from spanetlib.models import read_checkpoint
from spanetlib.pipeline.export import export_dataset
from spanetlib.synthesis.rain import TRAINING_BACKGROUND_NAMES
from spanetlib.synthesis.testsets import build_synthetic_video_scenes
from spanetlib.training.checkpoints import CHECKPOINT_FORMAT, atomic_torch_save, check_run
from spanetlib.training.config import TrainConfig, make_config, scale_milestones
from spanetlib.training.train import train

__all__ = ["SYNTHETIC_RECIPE", "build_training_set", "export_weights", "train_synthetic_weights"]

#: Every setting of the shipped weights' run (``steps`` can be overridden on the command line;
#: the learning rate drops x0.1 at 70 % and 90 % of the steps, whatever their number).
#: ``attention_balanced``: the attention loss weighs rain and rain-free pixels equally
#: (`spanetlib.training.losses.attention_loss`); with the paper's plain mean the sparse 10/255 mask
#: (about 17 % rain pixels on average) drives A_1 to 0 everywhere early in training.
SYNTHETIC_RECIPE: dict[str, Any] = {
    "seed": 7,
    "n_scenes": 35,                  # 5 crops of each of the 7 training photos
    "n_frames": 120,
    "size": (192, 256),
    "densities": ("sparse", "normal", "dense"),
    "patch": 112,                    # exported patch side, step 80 (6 patches per frame)
    "patch_stride": 80,
    "frames_per_video": 16,
    "test_fraction": 0.1,
    "train": {"crop": 96, "scale": (0.7, 1.0), "batch_size": 8, "steps": 5000, "lr": 1e-3,
              "milestones": (3500, 4500),
              "mask_threshold": 10 / 255, "attention_weight": 1.0,
              "attention_balanced": True, "amp_cpu": True,
              "channels_last": True, "checkpoint_every": 200, "val_every": 500,
              "log_every": 20, "max_val_images": 24, "val_crop": None, "seed": 7},
}


def build_training_set(work_dir: str | os.PathLike, progress: bool = True) -> tuple[Path, Path]:
    """Steps 1-2 of the recipe: scenes and pairs under ``work_dir`` (reused when present).

    Returns:
        The train and test pair lists.
    """
    r = SYNTHETIC_RECIPE
    work = Path(work_dir)
    build_synthetic_video_scenes(work / "scenes", n_scenes=r["n_scenes"], n_frames=r["n_frames"],
                                 size=r["size"], densities=r["densities"], seed=r["seed"],
                                 backgrounds=TRAINING_BACKGROUND_NAMES)
    summary = export_dataset(work / "scenes", work / "dataset", auto_accept=True,
                             crop=r["patch"], stride=r["patch_stride"],
                             frames_per_video=r["frames_per_video"],
                             test_fraction=r["test_fraction"], seed=r["seed"],
                             progress=progress)
    if summary.failed:
        raise RuntimeError(f"dataset export failed: {summary}")
    return summary.train_list, summary.test_list


def export_weights(checkpoint: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Write a training checkpoint's model and config only (no optimizer or RNG state).

    The result loads with `spanetlib.models.load_pretrained(dest)`; ``step``, ``metrics`` and
    ``elapsed_s`` are kept as provenance.

    Raises:
        InputError: the checkpoint is missing or not a `spanetlib.training.train` checkpoint.
    """
    path = Path(checkpoint)
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a spanetlib training checkpoint")
    slim = {key: ckpt[key] for key in ("format", "version", "model", "config", "step",
                                       "metrics", "elapsed_s", "torch_version") if key in ckpt}
    dest = Path(dest)
    atomic_torch_save(slim, dest)
    return dest


def _recipe_config(work: Path, steps: int | None, train_list: Path, test_list: Path
                   ) -> TrainConfig:
    """The training settings of the recipe for a work folder (``steps`` rescales the schedule)."""
    settings = dict(SYNTHETIC_RECIPE["train"])
    if steps is not None:
        settings["steps"] = steps
        settings["milestones"] = scale_milestones(SYNTHETIC_RECIPE["train"]["milestones"],
                                                  SYNTHETIC_RECIPE["train"]["steps"], steps)
    return make_config("quick", train_list=str(train_list), val_list=str(test_list),
                       out_dir=str(work / "run"), **settings)


def _check_recipe(config: TrainConfig, ckpt: dict[str, Any], path: Path) -> None:
    """Refuse to resume a run made with other settings than the recipe's (steps may differ)."""
    current, saved = config.to_dict(), ckpt.get("config", {})
    for key in SYNTHETIC_RECIPE["train"]:
        if key not in ("steps", "milestones") and saved.get(key) != current[key]:
            raise InputError(f"cannot resume from {path}: it was not made by the recipe: {key} "
                             f"is {saved.get(key)!r} in the checkpoint but {current[key]!r} in "
                             "the recipe; use another --out or --overwrite")


def train_synthetic_weights(work_dir: str | os.PathLike = "runs/synthetic",
                            steps: int | None = None, resume: bool = False,
                            export_to: str | os.PathLike | None = None,
                            progress: bool = True, overwrite: bool = False) -> Path:
    """Run the whole recipe; returns the exported weights (``work_dir/spanet_synthetic.pth``).

    Before the data set is built (about 40 s), the run folder and the weights file are checked:
    with ``resume``, ``work_dir/run/last.pt`` must be a readable training checkpoint of the
    recipe (`spanetlib.training.checkpoints.check_run`, then every recipe setting but the number of
    steps); without it, a run already there is refused unless ``overwrite``. An existing weights
    file is replaced only with ``overwrite`` or ``resume`` (the resumed run's own export).

    Args:
        work_dir: folder of the scenes, the dataset, the run and the exported weights.
        steps: training steps (default: the recipe's).
        resume: continue the run from ``work_dir/run/last.pt``.
        export_to: where to write the weights (default ``work_dir/spanet_synthetic.pth``).
        progress: progress bars.
        overwrite: replace a run in ``work_dir/run`` and the weights file.

    Raises:
        InputError: see above; also the errors of `spanetlib.training.train.train`.
    """
    work = Path(work_dir)
    export = Path(export_to) if export_to is not None else work / "spanet_synthetic.pth"
    dataset = work / "dataset"  # where build_training_set's export writes its lists
    config = _recipe_config(work, steps, dataset / "train.txt", dataset / "test.txt")
    ckpt = check_run(config, resume=resume, overwrite=overwrite)
    if ckpt is not None:
        _check_recipe(config, ckpt, Path(config.out_dir) / "last.pt")
    check_output_path(export, overwrite=overwrite or resume)
    train_list, test_list = build_training_set(work, progress=progress)
    config = _recipe_config(work, steps, train_list, test_list)
    result = train(config, resume=resume, overwrite=overwrite, progress=progress)
    return export_weights(result.checkpoint, export)
