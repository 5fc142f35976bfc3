"""Tests of spanetlib.paper.figure_data: samples, rows of images and captions for the figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spanetlib.derain.images import derain_array
from spanetlib.evaluation.evaluate import as_prediction
from spanetlib.evaluation.metrics import psnr_ssim_np
from spanetlib.models.spanet import SPANet
from spanetlib.paper import figure_data as fd
from spanetlib.paper.tables import ensure_level_set
from spanetlib.pipeline.background import estimate_background, luminance_levels
from spanetlib.synthesis.testsets import make_table1_videos
from spanetlib.training.data import rain_mask


@pytest.fixture(scope="module")
def video():
    return make_table1_videos(1, 16, (24, 32), seed=5, densities=("dense",))[0]


@pytest.fixture
def spanet(tiny_spanet):
    torch.manual_seed(0)
    return SPANet(**tiny_spanet).eval()


def test_pick_rainy_pixel_finds_the_target_share():
    mask = np.zeros((10, 3, 4), bool)
    mask[:5, 2, 1] = True  # exactly half
    mask[:, 0, 0] = True
    assert fd.pick_rainy_pixel(mask, 0.5) == (2, 1)
    assert fd.pick_rainy_pixel(mask, 1.0) == (0, 0)


def test_pixel_profile_is_the_pixel_in_eq2_levels(video):
    estimate = estimate_background(video.frames)
    profile = fd.pixel_profile(video, estimate)
    y, x = profile.y, profile.x
    assert (y, x) == fd.pick_rainy_pixel(video.rain_mask)
    np.testing.assert_array_equal(profile.intensities, luminance_levels(video.frames)[:, y, x])
    np.testing.assert_array_equal(profile.is_rain, video.rain_mask[:, y, x])
    r, g, b = (int(v) for v in video.clean[y, x])
    assert profile.clean_value == (19595 * r + 38470 * g + 7471 * b + 32768) >> 16
    assert abs(profile.estimate_value - float(estimate.image[y, x] @ [0.299, 0.587, 0.114])) <= 1
    # rain is bright: the rainy frames of this pixel lie above the rain-free ones
    assert profile.intensities[profile.is_rain].mean() > \
        profile.intensities[~profile.is_rain].mean()


def test_table1_images_have_captions_for_every_estimate(video):
    images, captions = fd.table1_images(video, {"Median": lambda f: np.median(f, 0)})
    assert list(images) == ["Rain frame", "Median", "Ground truth"]
    assert set(captions) == {"Rain frame", "Median"}
    rainiest = int(np.argmax(video.rain_mask.mean(axis=(1, 2))))
    np.testing.assert_array_equal(images["Rain frame"], video.frames[rainiest])
    median = np.median(video.frames, 0) / 255
    np.testing.assert_allclose(images["Median"], median, atol=1e-6)
    expected = psnr_ssim_np(as_prediction(video.frames[rainiest]), video.clean)[0]
    assert captions["Rain frame"] == f"{expected:.2f} dB"


def test_scene_samples_are_whole_test_frames(smoke_dataset):
    samples = fd.scene_samples(smoke_dataset, n=2)
    assert len(samples) == 2 and samples[0].name != samples[1].name
    for s in samples:
        assert s.rain.shape == s.clean.shape == s.truth.shape == (64, 96, 3)
        # the estimated clean image is close to the truth, the rain frame is not
        assert np.abs(s.clean.astype(int) - s.truth).mean() < \
            np.abs(s.rain.astype(int) - s.truth).mean()


def test_scene_samples_real_data_and_errors(smoke_dataset, real_dataset):
    samples = fd.scene_samples(real_dataset, n=3)
    assert len(samples) == 3 and samples[0].truth is None
    assert samples[0].rain.shape == (32, 32, 3)
    with pytest.raises(ValueError, match="n must be >= 1"):
        fd.scene_samples(smoke_dataset, n=0)
    with pytest.raises(ValueError, match="has no true background"):
        fd.difference_rows(samples)


def test_attention_rows_show_each_models_map_and_the_mask(smoke_dataset, spanet, identity):
    samples = fd.scene_samples(smoke_dataset, n=2)
    rows = fd.attention_rows({"(ours)": spanet}, samples, device="cpu")
    assert list(rows[0]) == ["Rain image", "A_1 (ours)", "Rain mask M"]
    np.testing.assert_array_equal(rows[0]["A_1 (ours)"],
                                  derain_array(spanet, samples[0].rain, device="cpu")[1])
    np.testing.assert_array_equal(rows[1]["Rain mask M"],
                                  rain_mask(samples[1].rain, samples[1].clean, 0.0))
    rows2 = fd.attention_rows({"(ours)": spanet}, samples[:1], mask_thresholds=(0.0, 10 / 255))
    assert list(rows2[0])[-2:] == ["M (> 0/255)", "M (> 10/255)"]
    np.testing.assert_array_equal(rows2[0]["M (> 0/255)"], rows[0]["Rain mask M"])
    assert rows2[0]["M (> 10/255)"].sum() < rows2[0]["M (> 0/255)"].sum()
    with pytest.raises(ValueError, match="expected thresholds >= 0"):
        fd.attention_rows({"(ours)": spanet}, samples, mask_thresholds=(-1,))
    with pytest.raises(ValueError, match="returns no attention map"):
        fd.attention_rows({"id": identity}, samples)


class _RedAttention(torch.nn.Module):
    """A derainer whose attention map is its input's red channel."""

    def forward(self, x):
        return x, x[:, :1]


def test_attention_stats_means_on_and_off_the_rain(identity):
    image = np.full((8, 8, 3), 0.2, np.float32)
    mask = np.zeros((8, 8), bool)
    mask[2:4, 1:7] = True
    image[mask, 0] = 0.8
    stats = fd.attention_stats(_RedAttention(), image, mask)
    assert isinstance(stats, fd.AttentionStats) and isinstance(stats, tuple)
    assert stats == pytest.approx((0.8, 0.2, 4.0))
    image[..., 0] = 0.0
    assert np.isnan(fd.attention_stats(_RedAttention(), image, mask).ratio)
    image[mask, 0] = 0.5
    assert fd.attention_stats(_RedAttention(), image, mask).ratio == np.inf
    with pytest.raises(ValueError, match=r"mask: expected shape \(8, 8\).*got \(8, 7\)"):
        fd.attention_stats(_RedAttention(), image, mask[:, :7])
    with pytest.raises(ValueError, match="both rain and rain-free pixels, got no rain"):
        fd.attention_stats(_RedAttention(), image, np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match="got only rain"):
        fd.attention_stats(_RedAttention(), image, np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="returns no attention map"):
        fd.attention_stats(identity, image, mask)


def test_mean_attention_stats_masks_rain_against_the_true_background():
    clean = np.full((8, 8, 3), 50, np.uint8)
    rain = clean.copy()
    rain[1, :, 0] = 250                    # a visible streak ...
    rain[3, :, 0] = 55                     # ... and a faint one (<= 10/255: not rain)
    estimate = clean.copy()                # an estimate that kept the visible streak: the
    estimate[1] = rain[1]                  # truth, not this, must decide where the rain is
    samples = [fd.Sample("a", rain, clean), fd.Sample("b", rain, estimate, clean)]
    stats = fd.mean_attention_stats(_RedAttention(), samples)
    off = (55 / 255 * 8 + 50 / 255 * 48) / 56
    assert stats == pytest.approx((250 / 255, off, 250 / 255 / off))
    faint = fd.mean_attention_stats(_RedAttention(), samples[:1], threshold=0)
    assert faint.on_rain == pytest.approx((250 + 55) / 2 / 255)
    with pytest.raises(ValueError, match="at least one sample"):
        fd.mean_attention_stats(_RedAttention(), [])
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        fd.mean_attention_stats(_RedAttention(), samples, threshold=-0.1)


def test_difference_rows_and_map_captions(smoke_dataset):
    samples = fd.scene_samples(smoke_dataset, n=2)
    diff = fd.difference_rows(samples)
    s = samples[0]
    np.testing.assert_allclose(diff[0]["|rain - estimate|"],
                               np.abs(s.rain.astype(float) - s.clean).max(axis=2) / 255,
                               atol=1e-6)
    np.testing.assert_allclose(diff[0]["|estimate - truth|"],
                               np.abs(s.clean.astype(float) - s.truth).max(axis=2) / 255,
                               atol=1e-6)
    captions = fd.psnr_captions(diff)
    assert set(captions) == {"Rain frame", "Estimated clean", "|rain - estimate|",
                             "|estimate - truth|"}
    top = max(row["|estimate - truth|"].max() for row in diff)
    assert captions["|estimate - truth|"].endswith(f"max {top:.3f}")
    psnr = np.mean([psnr_ssim_np(as_prediction(r["Estimated clean"]),
                                 as_prediction(r["True background"]))[0] for r in diff])
    assert captions["Estimated clean"] == f"{psnr:.2f} dB"


def test_derain_rows_and_psnr_captions(smoke_dataset, identity):
    samples = fd.scene_samples(smoke_dataset, n=2)
    rows = fd.derain_rows({"Rain input": None, "identity": identity}, samples)
    assert list(rows[0]) == ["Rain", "identity", "Clean (dataset)", "True background"]
    np.testing.assert_array_equal(rows[1]["identity"], as_prediction(samples[1].rain))
    captions = fd.psnr_captions(rows, "True background")
    assert set(captions) == {"Rain", "identity", "Clean (dataset)"}
    assert fd.psnr_captions(rows) == captions
    assert captions["Rain"] == captions["identity"]
    assert captions["Clean (dataset)"] != captions["Rain"]
    with pytest.raises(ValueError, match="reference 'x' is not a column"):
        fd.psnr_captions(rows, "x")


def test_photo_and_failure_samples(spanet, identity):
    photo = fd.photo_sample(size=(40, 56), seed=1)
    dense = fd.failure_sample(size=(40, 56), seed=1)
    assert photo.rain.shape == dense.rain.shape == (40, 56, 3)
    assert photo.truth is photo.clean
    assert np.abs(dense.rain.astype(int) - dense.clean).mean() > \
        np.abs(photo.rain.astype(int) - photo.clean).mean() > 0
    rows = fd.derain_rows({"identity": identity}, [photo])
    assert list(rows[0]) == ["Rain", "identity", "Clean"]
    assert fd.psnr_captions(rows) == fd.psnr_captions(rows, "Clean")
    fail = fd.failure_rows({"identity": identity, "ours": spanet}, dense, focus="ours")
    assert list(fail[0]) == ["Rain", "identity", "ours", "|ours - truth|", "A_1 ours",
                             "True background"]
    output, attention = derain_array(spanet, dense.rain, device="cpu")
    np.testing.assert_array_equal(fail[0]["ours"], output)
    np.testing.assert_array_equal(fail[0]["A_1 ours"], attention)
    np.testing.assert_allclose(fail[0]["|ours - truth|"],
                               np.abs(output - dense.truth / 255.0).max(axis=2), atol=1e-6)
    with pytest.raises(ValueError, match="focus 'x' is not one of the models"):
        fd.failure_rows({"ours": spanet}, dense, focus="x")


def test_level_samples(tmp_path):
    test_list, labels = ensure_level_set(tmp_path, 2, (24, 24))
    levels = fd.level_samples(test_list, labels)
    assert [s.name.split(":")[0] for s in levels] == ["light", "medium", "heavy"]
    assert all(s.truth is s.clean for s in levels)
    # heavier rain changes more of the image
    changes = [np.abs(s.rain.astype(int) - s.clean).mean() for s in levels]
    assert changes == sorted(changes)


# ------------------------------------------------------------------ phone clips (notebook 01)
def test_clip_figures_show_motion_alignment_and_periods():
    from spanetlib.pipeline.clip_estimate import estimate_clip
    from spanetlib.synthesis.rain import CLIP_PRESETS, make_rain_clip

    clip = make_rain_clip(CLIP_PRESETS["handheld"].replace(size=(64, 96), n_frames=20))
    results = {mode: estimate_clip(clip.frames, mode) for mode in ("off", "auto")}
    measured, true = fd.clip_motion(clip, results["auto"])
    assert measured.shape == true.shape == (20, 2)
    assert np.abs(measured - true).max() < 0.3 and np.abs(true).max() > 2
    images, captions = fd.clip_estimate_images(clip, results)
    assert list(images) == ["rain frame", "off", "auto", "truth"]
    assert len({image.shape for image in images.values()}) == 1
    db = {label: float(text.split()[0]) for label, text in captions.items()}
    assert db["auto"] > 35 and db["auto"] > db["off"] + 10 and db["auto"] > db["rain frame"]
    with pytest.raises(ValueError, match="one reference frame"):
        fd.clip_estimate_images(clip, {"a": results["auto"],
                                       "b": estimate_clip(clip.frames, reference=3)})
    pan = make_rain_clip(CLIP_PRESETS["pan"].replace(size=(64, 96), n_frames=20))
    with pytest.raises(ValueError, match=r"no stable period to show in \['off'\]"):
        fd.clip_estimate_images(pan, {"off": estimate_clip(pan.frames, "off")})
    parked = make_rain_clip(CLIP_PRESETS["parked-leaves"])
    result = estimate_clip(parked.frames)
    images, captions = fd.clip_reliability_images(parked, result)
    assert list(images)[0] == "one estimate of all frames" and len(images) == 1 + len(
        result.segments) == 3
    shares = [float(text.split()[1]) for text in captions.values()]
    assert shares[0] < min(shares[1:])  # the single estimate mixes the two states
