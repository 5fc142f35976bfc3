"""Profiles: one table of notebook parameters per scale (`smoke`, `quick`, `paper`).

A notebook's ``parameters`` cell holds the ``smoke`` values (so nbval in CI runs it fast);
`spanet reproduce --profile P` injects ``P``'s values and the output folders. A test checks that
each notebook's own defaults equal the ``smoke`` row here.

- ``smoke``: seconds to minutes on a 2-core CPU; what CI executes.
- ``quick``: meaningful small-scale numbers on a CPU (all notebooks in under an hour).
- ``paper``: the paper's sizes, for a GPU.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

__all__ = ["DATASET_PARAMETERS", "NOTEBOOKS", "NOTEBOOK_PARAMETERS", "PROFILE_NAMES",
           "notebook_parameters", "output_dirs", "smoke_defaults"]

PROFILE_NAMES = ("smoke", "quick", "paper")

NOTEBOOKS = (
    "01_dataset_generation",
    "02_training",
    "03_table2",
    "04_table3",
    "05_table4",
    "06_figures",
    "07_field",
    "08_video_deraining",
)

# Relative to the notebooks/ folder: where a notebook run by hand or by nbval writes.
SMOKE_DIRS = {
    "results_dir": "../results/smoke",
    "figures_dir": "../results/smoke/figures",
    "work_dir": "../results/smoke/work",
}

_COMMON = {
    "smoke": {"seed": 0, "data_root": None},
    "quick": {"seed": 0, "data_root": None},
    "paper": {"seed": 2019, "data_root": None},
}

# The §3 dataset every notebook trains and tests on when ``data_root`` is None: synthetic rain
# videos -> background estimate -> review (auto) -> SPA-Data style patches. Kept here, not in a
# notebook, so notebooks 02-06 rebuild exactly what notebook 01 builds when run on their own.
DATASET_PARAMETERS: dict[str, dict[str, Any]] = {
    "smoke": {"n_scenes": 4, "n_frames": 24, "size": (64, 96), "densities": ("sparse", "normal"),
              "crop": 32, "stride": 32, "frames_per_video": 3, "test_fraction": 0.25},
    "quick": {"n_scenes": 12, "n_frames": 120, "size": (160, 224),
              "densities": ("sparse", "normal", "dense"), "crop": 80, "stride": 72,
              "frames_per_video": 10, "test_fraction": 0.25},
    "paper": {"n_scenes": 170, "n_frames": 300, "size": (480, 640),
              "densities": ("sparse", "normal", "dense"), "crop": 256, "stride": 128,
              "frames_per_video": 40, "test_fraction": 0.1},
}

# Per-notebook values; filled in by the notebooks' own sections of the package.
NOTEBOOK_PARAMETERS: dict[str, dict[str, dict[str, Any]]] = {name: {p: {} for p in PROFILE_NAMES}
                                                             for name in NOTEBOOKS}
NOTEBOOK_PARAMETERS["01_dataset_generation"] = {
    "smoke": {"table1_videos": 2, "table1_frames": 24, "table1_size": [48, 64],
              "rpca_max_iter": 30, "review_mode": "auto", "review_file": None,
              "clip_size": [120, 160], "clip_frames": 40},
    "quick": {"table1_videos": 10, "table1_frames": 100, "table1_size": [240, 320],
              "rpca_max_iter": 100, "review_mode": "auto", "review_file": None,
              "clip_size": [240, 320], "clip_frames": 60},
    "paper": {"table1_videos": 10, "table1_frames": 100, "table1_size": [480, 640],
              "rpca_max_iter": 200, "review_mode": "auto", "review_file": None,
              "clip_size": [360, 640], "clip_frames": 100},
}
# Notebooks 02-06 (spanetlib.paper.runs, spanetlib.paper.tables). ``train_steps`` is every run's
# budget and must be equal in 02-06 (they share runs; None: the training profile's 60K), as must
# ``seeds`` (each run is trained once per seed; tables show mean ± std over seeds and the claims are
# decided by paired tests over them, `spanetlib.paper.claims`). ``train_workers``: runs trained side
# by side, one thread each (None: one per CPU core; `spanetlib.paper.runs.ensure_seed_runs`).
# ``quick``: 3 seeds x 13 runs (Table 2: 4 derainers x original/retrained; Table 4: 5 more
# SPANet variants), 240 steps of 4 x 48 x 48 crops with bf16 autocast where the CPU has it, two
# runs side by side. Chosen so that the whole `spanet reproduce --profile quick` fits in an hour
# on the 2-core AVX512-BF16 machine (the README has the measured time per notebook, and
# `benchmarks/bench_training_step.py` the seconds per training step of every model).
_SEEDS = {"smoke": [0], "quick": [0, 1, 2], "paper": [2019]}
_WORKERS = {"smoke": 1, "quick": None, "paper": 1}
_STEPS = {"smoke": 10, "quick": 240, "paper": None}


def _runs(profile: str) -> dict[str, Any]:
    return {"train_steps": _STEPS[profile], "seeds": list(_SEEDS[profile]),
            "train_workers": _WORKERS[profile]}


NOTEBOOK_PARAMETERS["02_training"] = {
    "smoke": {**_runs("smoke"), "n_show": 2},
    "quick": {**_runs("quick"), "n_show": 3},
    "paper": {**_runs("paper"), "n_show": 4},
}
NOTEBOOK_PARAMETERS["03_table2"] = {
    "smoke": {**_runs("smoke"), "max_test_images": 8, "prenet_weights": None},
    "quick": {**_runs("quick"), "max_test_images": None, "prenet_weights": None},
    "paper": {**_runs("paper"), "max_test_images": None, "prenet_weights": None},
}
NOTEBOOK_PARAMETERS["04_table3"] = {
    "smoke": {**_runs("smoke"), "n_per_level": 2, "level_size": [48, 48]},
    "quick": {**_runs("quick"), "n_per_level": 20, "level_size": [128, 128]},
    "paper": {**_runs("paper"), "n_per_level": 400, "level_size": [512, 512]},
}
NOTEBOOK_PARAMETERS["05_table4"] = {
    "smoke": {**_runs("smoke"), "max_test_images": 8},
    "quick": {**_runs("quick"), "max_test_images": None},
    "paper": {**_runs("paper"), "max_test_images": None},
}
NOTEBOOK_PARAMETERS["06_figures"] = {
    "smoke": {**_runs("smoke"), "n_samples": 2, "n_per_level": 2, "level_size": [48, 48],
              "photo_size": [64, 96]},
    "quick": {**_runs("quick"), "n_samples": 3, "n_per_level": 20, "level_size": [128, 128],
              "photo_size": [240, 320]},
    "paper": {**_runs("paper"), "n_samples": 3, "n_per_level": 400, "level_size": [512, 512],
              "photo_size": [480, 640]},
}


def output_dirs(profile: str, out_dir: str | Path | None, repo_root: Path) -> dict[str, str]:
    """Folders a profile writes to: ``results_dir``, ``figures_dir``, ``work_dir`` (absolute).

    With ``out_dir`` given: ``OUT/results``, ``OUT/figures``, ``OUT/results/work/<profile>``.
    Without it, ``quick`` writes to the checkout's ``results/`` and ``figures/`` (what the README
    quotes); ``smoke`` and ``paper`` write to ``results/<profile>/`` so they never overwrite the
    committed ``quick`` outputs.
    """
    if out_dir is not None:
        root = Path(out_dir).resolve()
        results, figures = root / "results", root / "figures"
    elif profile == "quick":
        results, figures = repo_root / "results", repo_root / "figures"
    else:
        results = repo_root / "results" / profile
        figures = results / "figures"
    return {"results_dir": str(results), "figures_dir": str(figures),
            "work_dir": str(results / "work" / profile)}


def notebook_parameters(notebook: str, profile: str, dirs: dict[str, str]) -> dict[str, Any]:
    """All parameters papermill injects into ``notebook`` for ``profile``.

    Args:
        notebook: a name from `NOTEBOOKS`.
        profile: a name from `PROFILE_NAMES`.
        dirs: the output folders from `output_dirs`.

    Raises:
        ValueError: unknown notebook or profile.
    """
    if notebook not in NOTEBOOK_PARAMETERS:
        raise ValueError(f"unknown notebook {notebook!r}; expected one of {NOTEBOOKS}")
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILE_NAMES}")
    params = {"profile": profile, **copy.deepcopy(_COMMON[profile]),
              **copy.deepcopy(NOTEBOOK_PARAMETERS[notebook][profile]), **dirs}
    return params


def smoke_defaults(notebook: str) -> dict[str, Any]:
    """The values a notebook's ``parameters`` cell must hold (its smoke profile, relative dirs)."""
    return notebook_parameters(notebook, "smoke", dict(SMOKE_DIRS))

# Notebook 07 (spanetlib.paper.released_weights): label -> weights name or path (relative to
# notebooks/). At `smoke` the four PReNet files in the released format, with random weights
# (tests/data/prenet), run PReNet's loader end to end; at `quick` and `paper` users add their
# own downloads of PReNet's files (never shipped: no license). ``conventions``: the first is the
# tables' main view (every one is in results/field.csv).
_FIELD_WEIGHTS = {"SPANet synthetic": "synthetic", "SPANet official": "official"}
_PRENET_RANDOM = {f"{family} random": f"../tests/data/prenet/{family}_random.pth"
                  for family in ("PReNet6", "PReNet6_r", "PRN6", "PRN6_r")}
NOTEBOOK_PARAMETERS["07_field"] = {
    "smoke": {"weights": {**_FIELD_WEIGHTS, **_PRENET_RANDOM},
              "conventions": ["y-matlab", "y-matlab-builtin"], "n_pairs": 2,
              "folder_size": [48, 64], "max_images": None, "n_show": 1},
    "quick": {"weights": dict(_FIELD_WEIGHTS), "conventions": ["y-matlab", "y-matlab-builtin"],
              "n_pairs": 6, "folder_size": [160, 224], "max_images": None, "n_show": 1},
    "paper": {"weights": dict(_FIELD_WEIGHTS), "conventions": ["y-matlab", "y-matlab-builtin"],
              "n_pairs": 20, "folder_size": [321, 481], "max_images": None, "n_show": 2},
}

# Notebook 08 (spanetlib.derain.video): synthetic clips with known rain-free frames. `quick`
# runs exactly what benchmarks/bench_video_derain.py runs by default (the README's table).
_VIDEO_CLIPS = ["static", "handheld", "passing", "parked-leaves", "flicker"]
NOTEBOOK_PARAMETERS["08_video_deraining"] = {
    "smoke": {"clip_names": ["static", "passing"], "clip_size": [64, 96], "n_frames": 12,
              "weights": ["synthetic", "official"], "window": 60, "show_clip": "passing",
              "n_show": 2},
    "quick": {"clip_names": list(_VIDEO_CLIPS), "clip_size": [120, 160], "n_frames": 40,
              "weights": ["synthetic", "official"], "window": 60, "show_clip": "passing",
              "n_show": 3},
    "paper": {"clip_names": list(_VIDEO_CLIPS), "clip_size": [360, 640], "n_frames": 100,
              "weights": ["synthetic", "official"], "window": 60, "show_clip": "passing",
              "n_show": 3},
}
