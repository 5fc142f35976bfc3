"""A short training run teaches SPANet's attention map A_1 where the rain is (issue 15).

With the paper's plain MSE (Eq. 7) against a sparse rain mask M (a few per cent of the pixels,
as in our thresholded §3 pairs), A_1 collapses to 0 everywhere within a few tens of steps
and stays there; `spanetlib.training.losses.attention_loss` with ``balanced=True`` (the ``smoke``,
``quick`` and synthetic-recipe setting) keeps it informative. The run below, with
``attention_balanced=False``, ends with A_1 at 0.000 on and off the rain, so the test fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spanetlib.models import load_pretrained
from spanetlib.paper.figure_data import Sample, mean_attention_stats
from spanetlib.synthesis.rain import (
    HELDOUT_BACKGROUND_NAMES,
    TRAINING_BACKGROUND_NAMES,
    load_background,
    make_rain_image,
)
from spanetlib.training.config import make_config
from spanetlib.training.data import rain_mask
from spanetlib.training.train import train

pytestmark = [pytest.mark.usefixtures("single_thread"),
              pytest.mark.slow]  # trains a SPANet for hundreds of steps

SIZE = (64, 64)


@pytest.fixture(scope="module")
def sparse_rain_list(tmp_path_factory: pytest.TempPathFactory, write_pairs) -> Path:
    """Eight photos with light synthetic rain: the streaks cover a few per cent of them."""
    pairs = []
    for i in range(8):
        photo = load_background(TRAINING_BACKGROUND_NAMES[i % len(TRAINING_BACKGROUND_NAMES)],
                                SIZE)
        image = make_rain_image(photo, "light", seed=i)
        pairs.append((image.rain, image.clean))
    share = np.mean([rain_mask(rain, clean, 10).mean() for rain, clean in pairs])
    assert 0.01 < share < 0.1                       # the sparse-mask regime of §3 pairs
    return write_pairs(tmp_path_factory.mktemp("sparse_rain") / "train.txt", pairs)


def _heldout_samples() -> list[Sample]:
    samples = []
    for i, name in enumerate(HELDOUT_BACKGROUND_NAMES[:3]):
        image = make_rain_image(load_background(name, SIZE), "light", seed=100 + i)
        samples.append(Sample(name, image.rain, image.clean, image.clean))
    return samples


def test_short_training_makes_attention_find_the_rain(tmp_path, sparse_rain_list):
    config = make_config("smoke", train_list=str(sparse_rain_list), out_dir=str(tmp_path),
                         model_kwargs={"channels": 8}, steps=120, crop=48, scale=(0.5, 1.0),
                         batch_size=4, milestones=(), seed=0, checkpoint_every=0,
                         val_every=0, log_every=0, device="cpu")
    assert config.attention_balanced and config.mask_threshold == pytest.approx(10 / 255)
    model = load_pretrained(train(config, progress=False).checkpoint)
    stats = mean_attention_stats(model, _heldout_samples())
    # Issue 15's goal for the shipped weights, met here after 120 tiny steps on new photos.
    assert stats.on_rain >= 0.2, stats
    assert stats.ratio >= 1.5, stats
