"""The notebooks' "Deviations from the paper": one text, numbers from the profiles."""

from __future__ import annotations

import copy

import pytest

from spanetlib.paper import deviations, profiles
from spanetlib.paper.deviations import NOTEBOOK_TOPICS, TOPICS, render_deviations
from spanetlib.training.config import TRAIN_PROFILES


def test_every_notebook_has_topics_and_every_topic_is_shown():
    assert set(NOTEBOOK_TOPICS) == set(profiles.NOTEBOOKS)
    shown = {topic for topics in NOTEBOOK_TOPICS.values() for topic in topics}
    assert set(TOPICS) <= shown
    for name in profiles.NOTEBOOKS:
        for profile in profiles.PROFILE_NAMES:
            text = render_deviations(name, profile)
            assert text.startswith("**Deviations from the paper**\n\n- ")
            assert text.count("\n- ") == len(NOTEBOOK_TOPICS[name])


@pytest.mark.parametrize("profile", profiles.PROFILE_NAMES)
def test_budget_states_each_profiles_numbers(profile):
    text = render_deviations("03_table2", profile)
    assert f"this notebook runs at **`{profile}`**" in text
    for name in profiles.PROFILE_NAMES:
        steps = (profiles.NOTEBOOK_PARAMETERS["03_table2"][name]["train_steps"]
                 or TRAIN_PROFILES[name]["steps"])
        values = TRAIN_PROFILES[name]
        shown = f"{steps // 1000}K" if steps >= 1000 else str(steps)
        assert (f"`{name}` ({deviations._PURPOSE[name]}): {shown} steps of batch "
                f"{values['batch_size']} on {values['crop']} x {values['crop']} crops") in text
    assert "x0.1 at 2/3 and 11/12 of the run" in text          # the quick schedule


def test_text_follows_the_profile_tables(monkeypatch):
    params = copy.deepcopy(profiles.NOTEBOOK_PARAMETERS)
    params["02_training"]["quick"]["train_steps"] = 1234
    params["01_dataset_generation"]["smoke"]["table1_videos"] = 7
    monkeypatch.setattr(deviations, "NOTEBOOK_PARAMETERS", params)
    assert "1234 steps of batch 4" in render_deviations("02_training", "smoke")
    assert "`smoke` 7 videos x 24 frames of 48 x 64" in render_deviations(
        "01_dataset_generation", "quick")
    assert "the `paper` profile uses the authors' 0" in render_deviations("05_table4", "paper")
    assert "the `quick` profile uses 10/255" in render_deviations("05_table4", "quick")


def test_unknown_notebook_or_profile():
    with pytest.raises(ValueError, match="unknown notebook '07_x'"):
        render_deviations("07_x", "smoke")
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        render_deviations("02_training", "huge")
