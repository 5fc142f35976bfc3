"""Tests of spanetlib.paper.figures: each figure is drawn and shows what it was given."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps

from spanetlib.io.files import read_image
from spanetlib.paper import figures
from spanetlib.pipeline import review_images


def panel_pixels(fig: plt.Figure, ax: plt.Axes) -> np.ndarray:
    """The rendered RGB pixels inside one axes (its frame trimmed), uint8."""
    fig.canvas.draw()
    canvas = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    box = ax.get_window_extent()
    height = canvas.shape[0]
    top, bottom = int(np.ceil(height - box.y1)) + 2, int(np.floor(height - box.y0)) - 2
    left, right = int(np.ceil(box.x0)) + 2, int(np.floor(box.x1)) - 2
    return canvas[top:bottom, left:right]


def quadrants(image: np.ndarray) -> list[np.ndarray]:
    """Mean colour of the centres of the four quadrants (away from resampling edges)."""
    h, w = image.shape[:2]
    out = []
    for y in (h // 4, 3 * h // 4):
        for x in (w // 4, 3 * w // 4):
            out.append(image[y - h // 8:y + h // 8, x - w // 8:x + w // 8].reshape(-1, 3)
                       .mean(axis=0))
    return out


def _blocks() -> np.ndarray:
    """16 x 20 uint8 image: red, green, blue and grey quadrants."""
    image = np.zeros((16, 20, 3), np.uint8)
    image[:8, :10] = (255, 0, 0)
    image[:8, 10:] = (0, 255, 0)
    image[8:, :10] = (0, 0, 255)
    image[8:, 10:] = (128, 128, 128)
    return image


def test_image_grid_panels_show_their_images(tmp_path):
    image = _blocks()
    other = 1.0 - image / 255.0  # float input, the complementary colours
    fig = figures.plot_image_grid([{"a": image, "b": other}, {"a": other, "b": image}],
                                  captions={"a": "31.0 dB"}, title="T",
                                  path=tmp_path / "grid.png")
    axes = np.array(fig.axes).reshape(2, 2)
    assert axes[0, 0].get_title() == "a\n31.0 dB" and axes[0, 1].get_title() == "b"
    assert axes[1, 0].get_title() == ""            # column names on the first row only
    for ax, shown in ((axes[0, 0], image), (axes[0, 1], other), (axes[1, 1], image)):
        np.testing.assert_allclose(ax.get_images()[0].get_array(),
                                   shown / 255.0 if shown.dtype == np.uint8 else shown,
                                   atol=1e-6)
        expected = shown if shown.dtype == np.uint8 else np.round(shown * 255)
        for got, want in zip(quadrants(panel_pixels(fig, ax)), quadrants(expected),
                             strict=True):
            np.testing.assert_allclose(got, want, atol=3)
    assert read_image(tmp_path / "grid.png").shape[2] == 3
    plt.close(fig)


def test_image_grid_crop_and_maps():
    image = _blocks()
    diff = np.zeros((16, 20), np.float32)
    diff[:, 10:] = 0.25
    fig = figures.plot_image_grid({"rgb": image, "map": diff}, crop=(0, 5, 8, 10))
    rgb, heat = fig.axes
    np.testing.assert_array_equal(rgb.get_images()[0].get_array(),
                                  image[0:8, 5:15] / np.float32(255))
    shown = heat.get_images()[0]
    assert shown.get_clim() == (0.0, 0.25)             # a map is scaled to its own maximum
    left, right = panel_pixels(fig, heat)[:, [2, -3]].transpose(1, 0, 2)
    cmap = colormaps["inferno"]
    np.testing.assert_allclose(left.mean(axis=0), np.array(cmap(0.0)[:3]) * 255, atol=3)
    np.testing.assert_allclose(right.mean(axis=0), np.array(cmap(1.0)[:3]) * 255, atol=3)
    plt.close(fig)


def test_attention_maps_show_the_map_on_a_fixed_scale():
    attention = np.zeros((16, 20), np.float32)
    attention[:, 10:] = 1.0
    faint = attention * 0.5
    fig = figures.plot_attention_maps([{"rain": _blocks(), "A_1": attention, "M": faint}])
    rain, a1, mask = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["rain", "A_1", "M"]
    np.testing.assert_array_equal(a1.get_images()[0].get_array(), attention)
    cmap = colormaps["jet"]
    for ax, value in ((a1, 1.0), (mask, 0.5)):             # [0, 1] fixed: 0.5 stays mid-scale
        pixels = panel_pixels(fig, ax)
        w = pixels.shape[1]
        np.testing.assert_allclose(pixels[:, : w // 3].reshape(-1, 3).mean(axis=0),
                                   np.array(cmap(0.0)[:3]) * 255, atol=3)
        np.testing.assert_allclose(pixels[:, -w // 3:].reshape(-1, 3).mean(axis=0),
                                   np.array(cmap(value)[:3]) * 255, atol=3)
    for got, want in zip(quadrants(panel_pixels(fig, rain)), quadrants(_blocks()), strict=True):
        np.testing.assert_allclose(got, want, atol=3)
    plt.close(fig)


def test_pixel_profile_marks_the_rainy_frames(tmp_path):
    rng = np.random.default_rng(0)
    intensities = rng.random(20) * 255
    is_rain = rng.random(20) < 0.4
    fig = figures.plot_pixel_profile(intensities, is_rain, 90.0, 91.0, path=tmp_path / "f2.png")
    series, hist = fig.axes
    free, rain = (c.get_offsets() for c in series.collections[:2])
    np.testing.assert_array_equal(rain[:, 0], np.flatnonzero(is_rain))
    np.testing.assert_allclose(rain[:, 1], intensities[is_rain], rtol=1e-6)
    np.testing.assert_array_equal(free[:, 0], np.flatnonzero(~is_rain))
    levels = sorted(line.get_ydata()[0] for line in series.lines[1:])
    assert levels == [90.0, 91.0]                      # the true and the estimated background
    assert sum(p.get_height() for p in hist.patches) == 20
    plt.close(fig)


def test_percentile_ranges_draw_the_chosen_p(tmp_path):
    rng = np.random.default_rng(0)
    low, high = rng.random((6, 6)) * 40, 60 + rng.random((6, 6)) * 40
    fig = figures.plot_percentile_ranges(low, high, 50.0, path=tmp_path / "f3.png")
    bars, cover = fig.axes
    segments = bars.collections[0].get_segments()
    assert len(segments) == 36
    assert {tuple(np.round(s[:, 1], 4)) for s in segments} == {
        (round(a, 4), round(b, 4)) for a, b in zip(low.ravel(), high.ravel(), strict=True)}
    assert bars.lines[0].get_ydata()[0] == 50.0
    x, y = cover.lines[0].get_data()
    assert x[np.argmin(np.abs(y - 50))] == pytest.approx(100.0)   # every range holds p = 50
    plt.close(fig)


def test_training_curves_plot_the_log(tmp_path):
    log = pd.DataFrame({"step": range(1, 31), "loss": np.linspace(1, 0.1, 30)})
    fig = figures.plot_training_curves({"run": log}, columns=("loss", "absent"), smooth=1,
                                       path=tmp_path / "c.png")
    (ax,) = fig.axes
    x, y = ax.lines[0].get_data()
    np.testing.assert_array_equal(x, log["step"])
    np.testing.assert_array_equal(y, log["loss"])
    assert ax.get_legend().get_texts()[0].get_text() == "run"
    assert read_image(tmp_path / "c.png").shape[2] == 3
    plt.close(fig)


def test_figure_argument_errors():
    with pytest.raises(ValueError, match=r"two \(N,\) arrays"):
        figures.plot_pixel_profile(np.zeros(3), np.zeros(4, bool), 0.0)
    with pytest.raises(ValueError, match="at least one image"):
        figures.plot_image_grid({})
    with pytest.raises(ValueError, match="differ in shape"):
        review_images.difference_map(np.zeros((2, 2, 3)), np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="none of the requested columns"):
        figures.plot_training_curves({"r": pd.DataFrame({"step": [1]})}, columns=("loss",))


# ------------------------------------------------------------------ phone clips (issue 11)
def test_period_strip_colours_frames_by_period():
    membership = np.array([0, 0, -1, -1, 1, 1])
    period = np.array([0, 0, -1, 1, 2, 2])
    strip = review_images.period_strip(membership, period, width=12, height=6, current=5)
    assert strip.shape == (6, 12, 3) and strip.dtype == np.uint8
    top = [tuple(c) for c in strip[0, ::2]]
    assert top[0] == top[1] == review_images.PERIOD_COLOURS[0]
    assert top[4] == review_images.PERIOD_COLOURS[1]
    assert top[2] != top[3] and top[2] not in review_images.PERIOD_COLOURS  # transition, unpaired
    assert (strip[3:, 10:] == 255).all() and (strip[0, 10:] != 255).any()  # frame 5 marked
    with pytest.raises(ValueError, match="expected frames and a positive size"):
        review_images.period_strip(membership, period, width=0)


def test_reliability_overlay_tints_only_the_marked_pixels():
    image = np.full((4, 5, 3), 128, np.uint8)
    unreliable = np.zeros((4, 5), bool)
    unreliable[0, 0] = True
    unusable = np.zeros((4, 5), bool)
    unusable[3, 4] = True
    out = review_images.reliability_overlay(image, unreliable, unusable).astype(int)
    assert out[0, 0, 0] > out[0, 0, 2] and out[3, 4, 2] > out[3, 4, 0]  # red, blue
    np.testing.assert_array_equal(out[1:3], image[1:3])
    green = review_images.reliability_overlay(image, unreliable, unusable, reliable_strength=0.2)
    assert green[1, 1, 1] > green[1, 1, 0] and (green[0, 0] == out[0, 0]).all()
    with pytest.raises(ValueError, match="expected an H x W x 3 image and an H x W mask"):
        review_images.reliability_overlay(image, unreliable[:2])


def test_clip_timeline_and_motion_trace_draw(tmp_path):
    fig = figures.plot_clip_timeline(np.array([0, 0, -1, 1]), np.array([0, 0, -1, 1]),
                                     true_state=np.array([0, 0, -1, 1]), title="t",
                                     path=tmp_path / "timeline.png")
    pixels = panel_pixels(fig, fig.axes[0])
    colours = {tuple(c) for c in pixels.reshape(-1, 3)}
    assert review_images.PERIOD_COLOURS[0] in colours and review_images.PERIOD_COLOURS[1] in colours
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["periods found",
                                                                     "true scene state"]
    plt.close(fig)
    measured = np.stack([np.linspace(0, 3, 5), np.zeros(5)], axis=1)
    fig = figures.plot_motion_trace(measured, measured + 0.1, path=tmp_path / "motion.png")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4
    np.testing.assert_allclose(lines[1].get_ydata(), measured[:, 0])
    plt.close(fig)
    assert read_image(tmp_path / "timeline.png").size and read_image(tmp_path / "motion.png").size
