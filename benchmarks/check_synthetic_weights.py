"""Check shipped SPANet weights: the held-out check and the attention goal, side by side.

Writes what the README quotes about ``--weights synthetic`` (run after ``spanet
train-synthetic`` and before shipping its weights)::

    results/heldout_check.csv / .md     rain outside the synthesizer's presets, held-out photos:
                                        PSNR/SSIM of the rain input and of each weights
    results/attention_weights.csv / .md  mean attention A_1 on and off the rain pixels
    results/synthetic_weights_log.csv    the training log of the run (with --log)
    figures/synthetic_weights_training.png  its curves (with --log)

The attention goal of issue 15: on rain images with a known rain layer, mean A_1 on the rain
pixels >= 0.2 and at least 1.5x that on the rain-free pixels. The images are the held-out
photos (`spanetlib.synthesis.rain.HELDOUT_BACKGROUND_NAMES`) with rain at each level of
`spanetlib.synthesis.rain.IMAGE_RAIN_LEVELS`; rain pixels are where the rain image exceeds the clean
one by more than 10/255 (`spanetlib.paper.figure_data.mean_attention_stats`).

    python benchmarks/check_synthetic_weights.py [--weights synthetic official] [--out results]
        [--log runs/synthetic/run/log.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from spanetlib.evaluation.evaluate import heldout_check, write_table
from spanetlib.io.files import atomic_write_text
from spanetlib.models import load_pretrained
from spanetlib.paper.figure_data import Sample, mean_attention_stats
from spanetlib.paper.figures import plot_training_curves
from spanetlib.synthesis.rain import (
    HELDOUT_BACKGROUND_NAMES,
    IMAGE_RAIN_LEVELS,
    load_background,
    make_rain_image,
)

GOAL_ON_RAIN, GOAL_RATIO = 0.2, 1.5


def attention_samples(size: tuple[int, int] = (160, 160), seed: int = 0) -> list[Sample]:
    """Rain at every level on every held-out photo, the clean photo as the truth."""
    samples = []
    for i, name in enumerate(HELDOUT_BACKGROUND_NAMES):
        clean = load_background(name, size)
        for j, level in enumerate(IMAGE_RAIN_LEVELS):
            image = make_rain_image(clean, level=level, seed=seed + 10 * i + j)
            samples.append(Sample(f"{name} {level}", image.rain, image.clean, image.clean))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=["synthetic", "official"])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    parser.add_argument("--work", type=Path, default=Path("/tmp/check_synthetic_weights"))
    parser.add_argument("--log", type=Path, default=None,
                        help="the run's log.csv: copied to results/, curves to figures/")
    args = parser.parse_args()

    if args.log is not None:
        log = pd.read_csv(args.log)
        atomic_write_text(args.out / "synthetic_weights_log.csv", log.to_csv(index=False))
        plot_training_curves({"synthetic": log.rename(columns={"psnr": "train_psnr"})},
                             columns=("loss", "loss_attention", "train_psnr", "val_psnr"),
                             title="spanet train-synthetic",
                             path=args.out.parent / "figures" / "synthetic_weights_training.png")

    combined = None
    for weights in args.weights:
        table = heldout_check(weights, args.work / weights, n_per_condition=4, size=(160, 160))
        part = table[["condition", "n", "psnr_input", "ssim_input"]].copy() if combined is None \
            else combined
        part[f"psnr ({weights})"] = table["psnr_model"].to_numpy()
        part[f"ssim ({weights})"] = table["ssim_model"].to_numpy()
        combined = part
    write_table(combined, args.out / "heldout_check",
                caption="Held-out check: 4 images of 160 x 160 px per condition, rain outside "
                "every preset of the synthesizer, on photos kept out of training (standard "
                "PSNR/SSIM)")
    print(combined.round(3).to_string(index=False))

    samples = attention_samples()
    rows = []
    for weights in args.weights:
        stats = mean_attention_stats(load_pretrained(weights), samples)
        met = stats.on_rain >= GOAL_ON_RAIN and stats.ratio >= GOAL_RATIO
        rows.append({"weights": weights, "on_rain": stats.on_rain, "off_rain": stats.off_rain,
                     "ratio": stats.ratio, "images": len(samples), "goal_met": met})
    attention = pd.DataFrame(rows)
    write_table(attention, args.out / "attention_weights",
                caption=f"Mean attention A_1 on and off the rain ({len(samples)} held-out "
                f"images; goal: on rain >= {GOAL_ON_RAIN}, ratio >= {GOAL_RATIO})")
    print(attention.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
