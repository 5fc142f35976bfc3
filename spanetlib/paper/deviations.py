"""Where our runs differ from the paper: one text, rendered into each notebook for its profile.

Every notebook shows `render_deviations` of its name and profile. The paragraphs live here
once (`TOPICS`); `NOTEBOOK_TOPICS` says which a notebook shows; the numbers (training steps,
batch, crops, widths, learning-rate schedule, Table 1 sizes) are read from
`spanetlib.training.config.TRAIN_PROFILES` and `spanetlib.paper.profiles.NOTEBOOK_PARAMETERS`, so
the text cannot drift from what a profile runs.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from spanetlib.paper.profiles import NOTEBOOK_PARAMETERS, NOTEBOOKS, PROFILE_NAMES
from spanetlib.training.config import TRAIN_PROFILES

__all__ = ["NOTEBOOK_TOPICS", "TOPICS", "render_deviations"]

#: Paragraphs without numbers, by topic. The topics with a profile's numbers (``budget``,
#: ``table1_scale``, ``rain_mask``) are written by the functions below.
TOPICS: dict[str, str] = {
    "data": (
        "*Data.* The paper trains and tests on SPA-Data, made from 170 real rain videos. We "
        "cannot download those videos, so by default the §3 dataset is built from "
        "**synthetic** rain videos (`spanetlib.synthesis.rain`) with the paper's own pipeline "
        "(background estimate of Eqs. 2-4, review, patch export): exactly what notebook 01 "
        "builds (`spanetlib.paper.datasets.ensure_dataset` reuses it). Synthetic rain also gives "
        "us "
        "the true background, which the real data cannot. Set `data_root` to a folder with "
        "the real SPA-Data lists to use them instead."),
    "data_videos": (
        "*Data.* The paper used 170 real rain videos. We cannot download them, so by default "
        "the videos are **synthesized** (`spanetlib.synthesis.rain`) on scikit-image's bundled "
        "photos, "
        "which also gives us the true background to score against. Point `data_root` at a "
        "folder with the real SPA-Data lists to skip the synthetic build."),
    "data_levels": (
        "*Data.* Our own rain synthesis in Rain1200's role (different streak model, photos "
        "and sizes), not Rain1200 itself; the ground truth is exact here."),
    "photos": (
        "*Photos.* The paper's Figs. 10-11 show real rain photographs from the internet; we "
        "cannot download them, so a scikit-image photo gets rain whose angle, width, "
        "brightness and blur differ from anything in training "
        "(`spanetlib.paper.figure_data.photo_sample`)."),
    "table1_baselines": (
        "*Baselines of Table 1.* The paper compares with the video derainers FastDeRain, "
        "P-MoG and MS-CSC, which are MATLAB-only. We stand in for them with the temporal mean, "
        "the temporal median, the mode filter (Eq. 2 alone) and a low-rank background by "
        "robust PCA (inexact ALM): the same families of assumptions (temporal statistics, low "
        "rank + sparse rain)."),
    "review": (
        "*Review.* Under papermill (`spanet reproduce`) the human review is replaced by a "
        "no-reference check (`review_mode=\"auto\"`) or a replay of a saved review "
        "(`\"file\"`); set `review_mode = \"interactive\"` in JupyterLab to review with the "
        "widget."),
    "baselines": (
        "*Baselines.* DDN, RESCAN and PReNet are compact re-implementations "
        "(`spanetlib.models.baselines`, written from their papers), retrained with **our** "
        "trainer, crops, schedule and loss (L1 + (1 - SSIM); they have no attention map, so "
        "no attention term) at the same budget as our SPANet, not with their authors' code, "
        "losses and schedules."),
    "original_rows": (
        "*Original rows.* The paper's \"original\" rows use the weights each derainer's "
        "authors released, trained with their own code on Rain100H, Rain1400 and the like. "
        "Ours are our re-implementations trained by our trainer, at the same budget and seeds "
        "as the retrained rows, on single-image synthetic rain (`spanetlib.synthesis.rain`) "
        "rendered on "
        "the clean images of the §3 training pairs "
        "(`spanetlib.paper.datasets.ensure_single_image_set`): the two training sets differ only "
        "in "
        "the rain and in how the pairs were made. Give `prenet_weights` (your download of "
        "PReNet's released weights) to use them as PReNet's original row."),
    "seeds": (
        "*Seeds.* The paper reports one training run per model. Here each run is trained once "
        "per seed in `seeds`; tables show the mean ± std over seeds and each finding is "
        "decided by a paired test over the seeds (one seed: over the test images), "
        "`spanetlib.paper.claims`."),
    "official_weights": (
        "*The authors' weights.* `load_pretrained(\"official\")` is the checkpoint the authors "
        "released, trained on the **real** SPA-Data (40K steps, lr 5e-4, batch 16, not the "
        "paper's schedule). It has never seen our synthetic rain, so its row measures "
        "transfer from real to synthetic rain, not the paper's result."),
    "direction_attention": (
        "*Direction attention.* The paper's SAM weights the four IRNN directions by a small "
        "attention branch. In the authors' code that branch is computed but its result is "
        "dropped, so their released checkpoint was trained without it (its weights never "
        "received a gradient). Our SPANet applies it (the paper's description, "
        "`direction_attention=True`); the authors' checkpoint is loaded with "
        "`direction_attention=False` to reproduce their outputs."),
    "metrics": (
        "*Metrics.* PSNR/SSIM come in four conventions (`spanetlib.evaluation.metrics`): "
        "`standard` "
        "(RGB, data range 1, SSIM with an 11 x 11 Gaussian window, what the tables show), "
        "`spanet-paper` (what the paper's Table 2 used: the authors' evaluation called the "
        "old scikit-image `compare_ssim` on float images, i.e. a 7 x 7 uniform window and "
        "data range 2, so its SSIM reads **higher** than the standard one), `y-matlab` "
        "(the Y channel of BT.601 from uint8 images, as Restormer's and DRSformer's tables, "
        "SPA-Data among them) and `y-matlab-builtin` (unrounded Y and MATLAB's built-in "
        "`ssim`, as PReNet's published numbers). The CSV files hold all four."),
    "field_data": (
        "*Test sets.* The field's test sets (Rain100H/L, Rain1400, Rain1200, SPA-Data's "
        "`real_test_1000`) cannot be downloaded here, so with `data_root = None` this notebook "
        "scores tiny **synthetic** folders written in each of their layouts "
        "(`spanetlib.synthesis.testsets.build_layout_test_folders`, rain synthesized on photos our "
        "weights never saw). Those numbers are only a smoke check of the readers, the loaders "
        "and the metrics, not a benchmark: set `data_root` to the real folders (README, "
        "\"Meet the field\")."),
    "released_weights": (
        "*Released weights.* PReNet's weights (csdwren/PReNet, "
        "`logs/<set>/<family>/net_latest.pth`) state no license, so spanetlib never ships or "
        "downloads them: add your download to `weights`. At `smoke` the four PReNet families "
        "run with **random** weights in exactly the released file format "
        "(`tests/data/prenet`), so their rows test the loader, not PReNet; the loader "
        "reproduces the authors' network outputs to 1e-5 on those files "
        "(`tests/test_released.py`)."),
    "video_method": (
        "*Beyond the paper.* The paper derains single images and uses its temporal estimate "
        "(§3) only to make training pairs. Deraining whole clips by taking that estimate where "
        "the scene is still and SPANet's output where it moves is spanetlib's own method "
        "(`spanetlib.derain.video`); the paper has no number to compare with."),
    "video_data": (
        "*Clips.* Real rain clips with rain-free ground truth do not exist, so the clips are "
        "**synthetic** (`spanetlib.synthesis.rain.make_rain_clip`: a photo seen through a static, "
        "hand-held or panning camera, passing and parked objects, exposure flicker, rain "
        "streaks and sensor noise) and every frame's rain-free rendering is the truth. Our "
        "`synthetic` weights were trained on rain from the same synthesizer (other photos), "
        "which favours them here."),
}

#: The topics each notebook shows, in order.
NOTEBOOK_TOPICS: dict[str, tuple[str, ...]] = {
    "01_dataset_generation": ("data_videos", "table1_baselines", "review", "table1_scale"),
    "02_training": ("data", "budget", "seeds", "direction_attention", "rain_mask"),
    "03_table2": ("data", "budget", "seeds", "baselines", "original_rows", "official_weights",
                  "direction_attention", "metrics"),
    "04_table3": ("data_levels", "budget", "seeds", "baselines", "original_rows",
                  "official_weights", "metrics"),
    "05_table4": ("data", "budget", "seeds", "direction_attention", "rain_mask", "metrics"),
    "06_figures": ("data", "photos", "budget", "official_weights", "direction_attention",
                   "rain_mask"),
    "07_field": ("field_data", "released_weights", "official_weights", "metrics"),
    "08_video_deraining": ("video_method", "video_data", "official_weights"),
}

_PURPOSE = {
    "smoke": "CI; only exercises the code",
    "quick": "small-scale numbers on a CPU",
    "paper": "the paper's scale, for a GPU",
}


def _thousands(steps: int) -> str:
    return f"{steps // 1000}K" if steps >= 1000 and steps % 1000 == 0 else str(steps)


def _fraction(step: int, steps: int) -> str:
    return str(Fraction(step, steps).limit_denominator(12))


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _run_budget(notebook: str, profile: str) -> str:
    """How one profile trains every run of ``notebook``, in a few words."""
    values: dict[str, Any] = TRAIN_PROFILES[profile]
    params = NOTEBOOK_PARAMETERS[notebook][profile]
    steps = params.get("train_steps") or values["steps"]
    drops = _and([_fraction(m, values["steps"]) for m in values["milestones"]])
    channels = values["model_kwargs"]["spanet"]["channels"]
    seeds = len(params.get("seeds", [0]))
    return (f"`{profile}` ({_PURPOSE[profile]}): {_thousands(steps)} steps of batch "
            f"{values['batch_size']} on {values['crop']} x {values['crop']} crops, "
            f"{channels}-channel SPANet, lr {values['lr']:g} (x{values['gamma']:g} at {drops} "
            f"of the run), {seeds} seed{'s' if seeds > 1 else ''} per run, "
            f"{_precision(values)}")


def _precision(values: dict[str, Any]) -> str:
    """The arithmetic of a training profile (the paper trains in float32)."""
    if values.get("amp_cpu"):
        return "bf16 autocast on GPUs and on CPUs with fast bf16 (AMX or AVX512-BF16)"
    return "bf16 autocast on GPUs, float32 on CPUs" if values.get("amp") else "float32"


def _budget(notebook: str, profile: str) -> str:
    paper = TRAIN_PROFILES["paper"]
    lines = [
        f"*Budget.* The paper trains for {_thousands(paper['steps'])} steps of batch "
        f"{paper['batch_size']} on {paper['crop']} x {paper['crop']} crops (Adam, lr "
        f"{paper['lr']:g} divided by {1 / paper['gamma']:g} at "
        f"{_and([_thousands(m) for m in paper['milestones']])}). Here every run gets "
        "`train_steps` steps of the training profile (`spanetlib.training.config.TRAIN_PROFILES`); "
        "this "
        f"notebook runs at **`{profile}`**:"]
    lines += [f"  - {_run_budget(notebook, name)}" for name in PROFILE_NAMES]
    lines.append("  At `smoke` the networks are untrained in all but name. At `quick` they are "
                 "small CPU runs (notebook 02 shows whether SPANet's validation curve has "
                 "flattened): the numbers compare models at this budget, not at the paper's.")
    return "\n".join(lines)


def _table1_scale(notebook: str, profile: str) -> str:
    def size(name: str) -> str:
        params = NOTEBOOK_PARAMETERS[notebook][name]
        h, w = params["table1_size"]
        return (f"`{name}` {params['table1_videos']} videos x {params['table1_frames']} "
                f"frames of {h} x {w}")

    return ("*Scale.* The paper's Table 1 uses 10 videos of 100 frames. Here: "
            + "; ".join(size(name) for name in PROFILE_NAMES)
            + f". This notebook runs at **`{profile}`**.")


def _rain_mask(notebook: str, profile: str) -> str:
    threshold = TRAIN_PROFILES[profile].get("mask_threshold", 0.0)
    used = ("the authors' 0 (every changed pixel)" if threshold == 0
            else f"{threshold * 255:g}/255")
    return ("*The rain mask M.* The attention loss (Eq. 7) compares A_1 with M, 1 where the "
            "rain image and its clean image differ. The paper describes a thresholded "
            "difference; the authors' code (and our default, `TrainConfig.mask_threshold = 0`) "
            "marks every pixel that differs at all. Our synthetic videos carry sensor noise, "
            "so at threshold 0 M is 1 at almost every pixel and the attention loss teaches "
            f"little; the `{profile}` profile uses {used}. Fig. 7 (notebook 06) shows M at 0 "
            "and at 10/255; Table 4's \"No attention loss\" row removes this signal."
            + (" With so sparse a mask the paper's plain mean squared error drives A_1 to 0 "
               "everywhere (`spanetlib.training.losses` says why); this profile weighs rain "
               "and rain-free pixels equally in Eq. 7 (`TrainConfig.attention_balanced`)."
               if TRAIN_PROFILES[profile].get("attention_balanced") else ""))


_RENDERED = {"budget": _budget, "table1_scale": _table1_scale, "rain_mask": _rain_mask}


def render_deviations(notebook: str, profile: str) -> str:
    """The "Deviations from the paper" block of one notebook at one profile, as Markdown.

    Args:
        notebook: a name from `spanetlib.paper.profiles.NOTEBOOKS`.
        profile: a name from `spanetlib.paper.profiles.PROFILE_NAMES`.

    Returns:
        A bold heading and one bullet per topic of `NOTEBOOK_TOPICS`.

    Raises:
        ValueError: unknown notebook or profile.

    Example:
        >>> text = render_deviations("02_training", "quick")
        >>> text.splitlines()[0]
        '**Deviations from the paper**'
        >>> "`quick` (small-scale numbers on a CPU): 240 steps of batch 4" in text
        True
    """
    if notebook not in NOTEBOOK_TOPICS:
        raise ValueError(f"unknown notebook {notebook!r}; expected one of {NOTEBOOKS}")
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILE_NAMES}")
    bullets = [(_RENDERED[topic](notebook, profile) if topic in _RENDERED else TOPICS[topic])
               for topic in NOTEBOOK_TOPICS[notebook]]
    return "\n".join(["**Deviations from the paper**", ""] + [f"- {b}" for b in bullets])
