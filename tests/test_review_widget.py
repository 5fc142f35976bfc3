"""The review widget's handlers, driven without a browser (test_browser_review.py uses one)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spanetlib.review import run_review
from spanetlib.review_widget import ReviewWidget, difference_heatmap


def test_widget_handlers(start_review, tmp_path, tiny_scenes):
    session = start_review(tmp_path, tiny_scenes, density="sparse", n=6)
    names = list(session.scenes)
    widget = ReviewWidget(session, max_display=40)
    assert widget.current == names[0]
    assert widget.progress_label.value == "0 of 3 reviewed"
    assert "N = 6 of 24" in widget.status.value and "p = " in widget.status.value
    for image in (widget.rain_image, widget.clean_image, widget.rain_zoom, widget.diff_image):
        assert image.value[:8] == b"\x89PNG\r\n\x1a\n"
    widget.on_accept()
    assert json.loads((tmp_path / "review.json").read_text())["scenes"][names[0]]["status"] \
        == "accepted"
    assert (tmp_path / "clean" / f"{names[0]}.png").is_file()
    assert widget.current == names[1] and widget.progress_label.value == "1 of 3 reviewed"
    widget.on_reject()  # same scene again, with more frames
    assert widget.current == names[1] and "N = 16 of 24" in widget.status.value
    widget.density_buttons.value = "dense"  # a click on the toggle buttons
    assert session.scene(names[1])["density"] == "dense"
    assert session.scene(names[1])["n"] == 16  # decided already: N kept
    widget.on_skip()
    assert widget.current == names[2]
    widget.on_density("normal")
    assert session.scene(names[2])["n"] == 24 and "N = 24 of 24" in widget.status.value
    widget.zoom_factor.value = 2
    widget.frame_slider.value = 3
    widget.on_accept()
    assert widget.current is None and widget.accept_button.disabled
    assert "All 3 scenes are reviewed (2 accepted)" in widget.status.value
    with pytest.raises(ValueError, match="all scenes are reviewed"):
        widget.on_accept()
    widget.accept_button.click()  # a click shows the error instead of raising
    assert "all scenes are reviewed" in widget.message.value


def test_run_review_interactive_returns_the_widget(start_review, tmp_path, tiny_scenes):
    session = start_review(tmp_path, tiny_scenes[:1], density="sparse", n=4)
    widget = run_review(session, "interactive")
    assert isinstance(widget, ReviewWidget) and widget.current == session.pending()[0]


def test_difference_heatmap_brightens_with_the_difference():
    clean = np.full((8, 8, 3), 100, np.uint8)
    rain = clean.copy()
    rain[2, 3] = 200
    rain[5, 5] = 120
    heat = difference_heatmap(rain, clean).astype(int).sum(axis=2)
    assert heat[2, 3] > heat[5, 5] > heat[0, 0]
    # below 64/255 the scale does not stretch: a faint difference stays dark
    faint = difference_heatmap(clean + np.uint8(4), clean).astype(int).sum(axis=2)
    assert faint.max() < heat[2, 3]
    with pytest.raises(ValueError, match="differ in shape"):
        difference_heatmap(rain, clean[:4])
