"""The review widget's handlers, driven without a browser (test_browser_review.py uses one)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spanetlib.pipeline.review_widget import ReviewWidget, difference_heatmap, run_review


def test_widget_handlers(start_review, tmp_path, tiny_scenes):
    session = start_review(tmp_path, tiny_scenes, density="sparse", n=6)
    names = list(session.scenes)
    widget = ReviewWidget(session, max_display=40)
    assert widget.current == names[0]
    assert widget.progress_label.value == "0 of 3 reviewed"
    assert "N = 6 of 24" in widget.status.value and "p = " in widget.status.value
    assert "period 1: frames 0-5" in widget.status.value
    assert "camera motion: " in widget.motion.value and "quality score" in widget.quality.value
    for image in (widget.rain_image, widget.clean_image, widget.rain_zoom, widget.diff_image,
                  widget.timeline):
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


def _decode(widget_image):
    import cv2

    data = np.frombuffer(widget_image.value, np.uint8)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(int)


def test_widget_shows_periods_reliability_and_quality(tmp_path):
    # A clip where a parked object leaves: two stable periods, the frame's own period's
    # clean image beside it, unpaired frames said so, and the reliability overlay.
    from spanetlib.io.video import write_frames
    from spanetlib.pipeline.review import ReviewSession
    from spanetlib.synthesis.rain import CLIP_PRESETS, make_rain_clip

    clip = make_rain_clip(CLIP_PRESETS["parked-leaves"].replace(size=(96, 128), n_frames=40))
    folder = write_frames(tmp_path / "parked", clip.frames)[0].parent
    session = ReviewSession(tmp_path / "review.json")
    session.add_scene("parked", folder, density="sparse", n=40)
    widget = ReviewWidget(session, max_display=128)
    result = widget._estimate
    assert "period 1: frames 0-" in widget.status.value and "period 2: frames" in \
        widget.status.value
    strip = _decode(widget.timeline)
    assert strip.shape == (14, 128, 3)
    assert len({tuple(c) for c in strip[0]}) >= 3  # two periods and the transition
    first, last = result.segments[0].frames[0], result.segments[1].frames[-1]
    for index, state in ((first, 0), (last, 1)):
        widget.frame_slider.value = int(index)
        assert f"paired with period {state + 1}" in widget.frame_label.value
        shown = _decode(widget.clean_image)
        truth = clip.state_truth(state, result.motion.reference).astype(int)
        assert np.abs(shown - truth).mean() < 6  # its own state's clean image
    unpaired = int(np.flatnonzero(result.membership < 0)[0])
    widget.frame_slider.value = unpaired
    assert "not paired" in widget.frame_label.value
    # the overlay: off shows the clean image, on tints unreliable red and unusable blue
    from spanetlib.pipeline.review import reliable_for_frame

    index = min((i for i, _ in result.pairs()), key=lambda i: result.usable_share[i])
    widget.frame_slider.value = int(index)
    plain = _decode(widget.clean_image)
    widget.overlay_toggle.value = True
    tinted = _decode(widget.clean_image)
    assert widget.overlay_toggle.description == "reliability overlay"
    assert "% not explained by rain" in widget.overlay_legend.value
    marked = ~result.usable_mask(index) | ~reliable_for_frame(result, index)
    assert marked.mean() > 0.005
    shift = tinted - plain  # red or blue where marked, a light green elsewhere
    assert (shift[marked][:, [0, 2]].max(axis=1) > shift[marked][:, 1]).mean() > 0.9
    assert (shift[~marked][:, 1] > shift[~marked][:, [0, 2]].max(axis=1)).mean() > 0.9
    widget.overlay_toggle.value = False
    np.testing.assert_array_equal(_decode(widget.clean_image), plain)
    assert widget.overlay_legend.value == ""


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


def test_widget_says_when_the_batch_review_would_accept_only_some_periods(tmp_path):
    # A parked car leaves after 7 of 40 frames: the 7-frame period fails alone; with every
    # frame in use the batch review keeps the other period, and the widget says which.
    from spanetlib.io.video import write_frames
    from spanetlib.pipeline.review import ReviewSession
    from spanetlib.synthesis.rain import CLIP_PRESETS, make_rain_clip

    clip = make_rain_clip(CLIP_PRESETS["parked-leaves"].replace(size=(72, 96), n_frames=40,
                                                                parked=0.2), 0)
    folder = write_frames(tmp_path / "parked", clip.frames)[0].parent
    session = ReviewSession(tmp_path / "review.json")
    session.add_scene("parked", folder, density="sparse", n=40)
    widget = ReviewWidget(session, max_display=96)
    kept = widget._estimate.segments[1]
    assert f"would accept only the period(s) of frames {kept.start}-{kept.stop - 1}" in \
        widget.quality.value
    session.set_n("parked", 30)  # frames left to add: the batch review would reject
    widget.show("parked")
    assert "would reject" in widget.quality.value
