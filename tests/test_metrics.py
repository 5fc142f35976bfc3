import dataclasses
import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from spanetlib.evaluation import metrics
from spanetlib.evaluation.metrics import (
    CONVENTIONS,
    METRIC_CONVENTIONS,
    MetricConvention,
    get_convention,
    psnr,
    psnr_ssim_np,
    ssim,
    ssim_map,
)
from spanetlib.models.convert import image_to_tensor


def _pair(seed=0, shape=(40, 48), noise=0.08):
    rng = np.random.default_rng(seed)
    # smooth-ish content plus texture so SSIM is not trivially near 0 or 1
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = 0.5 + 0.3 * np.sin(xx[..., None] / 5.0 + np.arange(3)) * np.cos(yy[..., None] / 7.0)
    clean = np.clip(base + 0.1 * rng.random((*shape, 3)), 0, 1)
    noisy = np.clip(clean + rng.normal(0, noise, clean.shape), 0, 1)
    return noisy, clean


def _t(img):
    return image_to_tensor(img, dtype=torch.float64)


def _y_matlab_np(img_u8):
    rgb = img_u8.astype(np.float64)
    y = 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0
    return np.floor(y + 0.5)


def test_conventions_table():
    assert CONVENTIONS == ("standard", "spanet-paper", "y-matlab", "y-matlab-builtin")
    assert all(isinstance(METRIC_CONVENTIONS[c], MetricConvention) for c in CONVENTIONS)
    assert get_convention("y-matlab").data_range == 255.0
    conv = METRIC_CONVENTIONS["spanet-paper"]
    assert get_convention(conv) is conv
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign"):
        conv.data_range = 2.0


@pytest.mark.parametrize("convention", ["standard", "spanet-paper"])
@pytest.mark.parametrize("d", [0.05, 0.2])
def test_psnr_constant_offset_closed_form(convention, d):
    target = torch.full((1, 3, 16, 16), 0.3, dtype=torch.float64)
    value = psnr(target + d, target, convention)
    assert value.shape == (1,)
    assert value.item() == pytest.approx(10 * math.log10(1 / d**2), abs=1e-9)


def test_psnr_identical_is_inf_and_ssim_one():
    x = torch.rand(2, 3, 20, 24)
    for convention in CONVENTIONS:
        assert torch.isinf(psnr(x, x, convention)).all()
        assert psnr(x, x, convention)[0] > 0
        torch.testing.assert_close(
            ssim(x, x, convention), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12
        )


def test_inputs_are_clipped_to_unit_range():
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    out_of_range = x.clone()
    out_of_range[..., :4, :] = 1.7
    out_of_range[..., -4:, :] = -0.4
    clipped = out_of_range.clamp(0, 1)
    for convention in CONVENTIONS:
        assert psnr(out_of_range, x, convention) == psnr(clipped, x, convention)
        assert ssim(out_of_range, x, convention) == ssim(clipped, x, convention)


def test_standard_matches_skimage():
    noisy, clean = _pair()
    ours = ssim(_t(noisy), _t(clean)).item()
    ref = structural_similarity(
        noisy, clean, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=1, channel_axis=-1,
    )
    assert ours == pytest.approx(ref, abs=1e-5)
    assert 0.2 < ref < 0.99  # a non-trivial case
    mse = np.mean((noisy - clean) ** 2)
    assert psnr(_t(noisy), _t(clean)).item() == pytest.approx(10 * np.log10(1 / mse), abs=1e-9)


def test_spanet_paper_matches_old_skimage_convention_and_reads_higher():
    noisy, clean = _pair(seed=1)
    ours = ssim(_t(noisy), _t(clean), "spanet-paper").item()
    ref = structural_similarity(noisy, clean, win_size=7, data_range=2, channel_axis=-1)
    assert ours == pytest.approx(ref, abs=1e-5)
    assert ours > ssim(_t(noisy), _t(clean), "standard").item() + 1e-3
    assert psnr(_t(noisy), _t(clean), "spanet-paper") == psnr(_t(noisy), _t(clean), "standard")


def test_y_matlab_matches_hand_computation():
    noisy, clean = _pair(seed=2)
    noisy_u8 = np.floor(noisy * 255 + 0.5).astype(np.uint8)
    clean_u8 = np.floor(clean * 255 + 0.5).astype(np.uint8)
    y_noisy, y_clean = _y_matlab_np(noisy_u8), _y_matlab_np(clean_u8)
    assert np.all(y_noisy == np.round(y_noisy)) and 16 <= y_noisy.min() <= y_noisy.max() <= 235
    mse = np.mean((y_noisy - y_clean) ** 2)
    ref_psnr = 10 * np.log10(255.0**2 / mse)
    ref_ssim = structural_similarity(
        y_noisy, y_clean, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=255,
    )
    # float input: quantized inside
    assert psnr(_t(noisy), _t(clean), "y-matlab").item() == pytest.approx(ref_psnr, abs=1e-9)
    assert ssim(_t(noisy), _t(clean), "y-matlab").item() == pytest.approx(ref_ssim, abs=1e-5)
    # uint8 input: used as is
    p, s = psnr_ssim_np(noisy_u8, clean_u8, "y-matlab")
    assert p == pytest.approx(ref_psnr, abs=1e-9)
    assert s == pytest.approx(ref_ssim, abs=1e-5)
    # Y differs from the RGB conventions
    assert p != pytest.approx(psnr_ssim_np(noisy_u8, clean_u8, "standard")[0], abs=1e-3)


def test_y_matlab_rounds_half_away_from_zero():
    # pure grey 128: Y = 16 + 219 * 128 / 255 = 125.929... -> 126
    grey = torch.full((1, 3, 1, 1), 128.0, dtype=torch.float64)
    assert metrics.rgb_to_y_matlab(grey).item() == 126.0
    white = torch.full((1, 3, 1, 1), 255.0, dtype=torch.float64)
    assert metrics.rgb_to_y_matlab(white).item() == 235.0
    with pytest.raises(ValueError, match=r"expected B x 3 x H x W, got shape \(1, 1, 2, 2\)"):
        metrics.rgb_to_y_matlab(torch.zeros(1, 1, 2, 2))


def test_y_matlab_float32_equals_its_uint8_conversion():
    from spanetlib.io.files import to_uint8

    rng = np.random.default_rng(8)
    # values at and around the k + 0.5 rounding boundaries, plus out-of-range values
    k = rng.integers(0, 256, size=(24, 24, 3))
    pred = ((k + 0.5 + rng.choice([-1e-6, 0.0, 1e-6], k.shape)) / 255).astype(np.float32)
    pred[0, :3] = [1.3, -0.2, 0.5]
    target = rng.random((24, 24, 3)).astype(np.float32)
    assert psnr_ssim_np(pred, target, "y-matlab") == psnr_ssim_np(
        to_uint8(pred.clip(0, 1)), to_uint8(target), "y-matlab"
    )
    from_u8 = psnr_ssim_np(to_uint8(pred.clip(0, 1)), to_uint8(target), "y-matlab")[0]
    assert psnr(image_to_tensor(pred), image_to_tensor(target), "y-matlab").item() == from_u8


def test_crop_border():
    noisy, clean = _pair(seed=3)
    for convention in CONVENTIONS:
        cropped = psnr_ssim_np(noisy[4:-4, 4:-4], clean[4:-4, 4:-4], convention)
        assert psnr_ssim_np(noisy, clean, convention, crop_border=4) == pytest.approx(cropped)


def test_batch_equals_single_calls():
    a1, b1 = _pair(seed=4)
    a2, b2 = _pair(seed=5, noise=0.2)
    pred = torch.cat([_t(a1), _t(a2)])
    target = torch.cat([_t(b1), _t(b2)])
    for convention in CONVENTIONS:
        for fn in (psnr, ssim):
            batch = fn(pred, target, convention)
            assert batch.shape == (2,)
            single = torch.cat([fn(pred[i : i + 1], target[i : i + 1], convention) for i in (0, 1)])
            torch.testing.assert_close(batch, single, rtol=0, atol=1e-12)
            assert batch[0] != batch[1]


def test_float32_input_close_to_float64():
    noisy, clean = _pair(seed=6)
    for convention in ("standard", "spanet-paper"):
        s32 = ssim(_t(noisy).float(), _t(clean).float(), convention).item()
        s64 = ssim(_t(noisy), _t(clean), convention).item()
        assert s32 == pytest.approx(s64, abs=1e-6)


def test_psnr_ssim_np_agrees_with_tensor_functions():
    noisy, clean = _pair(seed=7)
    for convention in CONVENTIONS:
        p, s = psnr_ssim_np(noisy.astype(np.float32), clean.astype(np.float32), convention)
        assert isinstance(p, float) and isinstance(s, float)
        x = image_to_tensor(noisy.astype(np.float32))
        y = image_to_tensor(clean.astype(np.float32))
        assert p == pytest.approx(psnr(x, y, convention).item(), abs=1e-9)
        assert s == pytest.approx(ssim(x, y, convention).item(), abs=1e-9)


def test_image_to_tensor_layouts_and_dtypes():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    t = image_to_tensor(img)
    assert t.shape == (1, 3, 2, 3) and t.dtype == torch.float32
    assert t[0, 2, 1, 0].item() == pytest.approx(img[1, 0, 2] / 255)
    gray = np.array([[0.25, 0.5]], dtype=np.float32)
    tg = image_to_tensor(gray)
    assert tg.shape == (1, 3, 1, 2)
    assert torch.equal(tg[0, 0], tg[0, 2]) and tg[0, 1, 0, 1].item() == 0.5
    stack = np.random.default_rng(0).random((4, 5, 6, 3))
    ts = image_to_tensor(stack, dtype=torch.float64)
    assert ts.shape == (4, 3, 5, 6)
    assert np.array_equal(ts.permute(0, 2, 3, 1).numpy(), stack)


def test_image_to_tensor_errors():
    with pytest.raises(TypeError, match="expected a uint8 or float image, got dtype int32"):
        image_to_tensor(np.zeros((4, 4, 3), dtype=np.int32))
    with pytest.raises(TypeError, match="expected a numpy array, got list"):
        image_to_tensor([[0.0]])
    with pytest.raises(ValueError, match=r"got shape \(4, 4, 4\)"):
        image_to_tensor(np.zeros((4, 4, 4), dtype=np.float32))


def test_errors():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"unknown metric convention 'psnr-y'; expected one of"):
        psnr(x, x, "psnr-y")
    with pytest.raises(ValueError, match=r"same shape, got \(1, 3, 16, 16\) and \(1, 3, 16, 15\)"):
        ssim(x, x[..., :15])
    with pytest.raises(ValueError, match=r"pred: expected a B x 3 x H x W tensor, got shape \(3,"):
        psnr(x[0], x[0])
    with pytest.raises(ValueError, match=r"target: expected a B x 3 x H x W .* shape \(1, 1"):
        ssim(x, x[:, :1])
    with pytest.raises(TypeError, match="expected a torch.Tensor, got ndarray"):
        psnr(x.numpy(), x)
    small = torch.rand(1, 3, 10, 30)
    with pytest.raises(ValueError, match="at least 11 x 11 .* got 10 x 30"):
        ssim(small, small)
    assert ssim(small, small, "spanet-paper").item() == pytest.approx(1.0)  # 7x7 window fits
    with pytest.raises(ValueError, match="at least 7 x 7 .* got 6 x 6"):
        ssim(x, x, "spanet-paper", crop_border=5)
    with pytest.raises(ValueError, match="crop_border=8 leaves no pixels of a 16 x 16 image"):
        psnr(x, x, crop_border=8)
    with pytest.raises(ValueError, match="crop_border: expected an int >= 0, got -1"):
        psnr(x, x, crop_border=-1)
    with pytest.raises(ValueError, match=r"expected H x W x 3 images, got shapes \(16, 16\)"):
        psnr_ssim_np(np.zeros((16, 16)), np.zeros((16, 16)))
    with pytest.raises(TypeError, match="target_img: expected a numpy array, got list"):
        psnr_ssim_np(np.zeros((16, 16, 3)), np.zeros((16, 16, 3)).tolist())


def test_ssim_map_errors_and_shapes():
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    assert ssim_map(x, x).shape == (2, 1, 6, 6)
    assert ssim_map(x, x, padding="same").shape == (2, 1, 16, 16)
    assert ssim_map(x, x, padding="replicate").shape == (2, 1, 16, 16)
    assert ssim_map(x, x, window="uniform", window_size=7).shape == (2, 1, 10, 10)
    with pytest.raises(ValueError, match="window_size: expected an odd integer >= 1, got 10"):
        ssim_map(x, x, window_size=10)
    with pytest.raises(ValueError, match="window: expected 'gaussian' or 'uniform', got 'box'"):
        ssim_map(x, x, window="box")
    with pytest.raises(ValueError, match="padding: expected 'same', 'valid' or 'replicate', got"):
        ssim_map(x, x, padding="full")
    with pytest.raises(ValueError, match="sigma: expected > 0, got 0"):
        ssim_map(x, x, sigma=0)
    with pytest.raises(ValueError, match="data_range: expected > 0, got -1"):
        ssim_map(x, x, data_range=-1)
    with pytest.raises(ValueError, match="4 dims\\), got 3 dims"):
        ssim_map(x[0], x[0])
    with pytest.raises(TypeError, match="pred: expected a floating-point .* got torch.uint8"):
        ssim_map(x.to(torch.uint8), x)


def test_ssim_map_same_padding_matches_2d_conv_reference():
    # independent reference: 2-D Gaussian window, zero padding 5 (the pytorch_ssim recipe)
    torch.manual_seed(0)
    a = torch.rand(2, 3, 17, 13, dtype=torch.float64)
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).expand(3, 1, 11, 11)

    def filt(t):
        return torch.nn.functional.conv2d(t, win, padding=5, groups=3)

    mu_a, mu_b = filt(a), filt(b)
    va, vb, cab = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2, filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ref = ((2 * mu_a * mu_b + c1) * (2 * cab + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (va + vb + c2)
    )
    torch.testing.assert_close(ssim_map(a, b, padding="same"), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(ssim_map(a, b), ref[..., 5:-5, 5:-5], rtol=0, atol=1e-12)


# ------------------------------------------------- the field's MATLAB scripts, re-derived here
# Independent of spanetlib.evaluation.metrics: plain numpy/scipy transliterations of the two MATLAB
# recipes, with the 2-D window built from its formula (not separably) and explicit loops.


def _fspecial_gaussian(size=11, sigma=1.5):
    """MATLAB fspecial('gaussian', size, sigma): exp(-(x^2 + y^2) / (2 sigma^2)), sum 1."""
    half = (size - 1) / 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    w = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    return w / w.sum()


def _filter2_valid(window, img):
    """MATLAB filter2(window, img, 'valid') by an explicit loop over window positions."""
    kh, kw = window.shape
    out = np.empty((img.shape[0] - kh + 1, img.shape[1] - kw + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(window * img[i : i + kh, j : j + kw])
    return out


def _ssim_formula(filt, a, b, c1, c2):
    mu1, mu2 = filt(a), filt(b)
    s11 = filt(a * a) - mu1 * mu1
    s22 = filt(b * b) - mu2 * mu2
    s12 = filt(a * b) - mu1 * mu2
    num = (2 * mu1 * mu2 + c1) * (2 * s12 + c2)
    return np.mean(num / ((mu1 * mu1 + mu2 * mu2 + c1) * (s11 + s22 + c2)))


def _flat_and_textured_pair(seed):
    """uint8 images with a flat band (where the SSIM constants matter) and texture."""
    noisy, clean = _pair(seed=seed, shape=(22, 26), noise=0.05)
    clean[:8] = 0.6
    noisy[:8] = np.clip(0.6 + np.random.default_rng(seed).normal(0, 0.01, noisy[:8].shape), 0, 1)
    return (np.floor(noisy * 255 + 0.5).astype(np.uint8),
            np.floor(clean * 255 + 0.5).astype(np.uint8))


@pytest.mark.parametrize("seed", [11, 12])
def test_y_matlab_equals_restormer_evaluate_psnr_ssim_m(seed):
    """Restormer's Deraining/evaluate_PSNR_SSIM.m (also DRSformer's Rain200/SPA-Data script):
    Y = rgb2ycbcr(uint8) (rounded), PSNR 20 log10(255 / rmse), Wang's SSIM_index defaults."""
    pred_u8, target_u8 = _flat_and_textured_pair(seed)
    y1, y2 = _y_matlab_np(pred_u8), _y_matlab_np(target_u8)
    rmse = np.sqrt(np.mean((y1 - y2) ** 2))
    ref_psnr = 20 * np.log10(255 / rmse)
    window = _fspecial_gaussian()
    ref_ssim = _ssim_formula(lambda t: _filter2_valid(window, t), y1, y2,
                             (0.01 * 255) ** 2, (0.03 * 255) ** 2)
    p, s = psnr_ssim_np(pred_u8, target_u8, "y-matlab")
    assert p == pytest.approx(ref_psnr, abs=1e-9)
    assert s == pytest.approx(ref_ssim, abs=1e-10)
    assert 0.3 < ref_ssim < 0.99


@pytest.mark.parametrize("seed", [11, 12])
def test_y_matlab_builtin_equals_prenet_statistic_m(seed):
    """PReNet's statistic_*.m: x = rgb2ycbcr(im2double(img)) (unrounded Y), psnr(x, x_true)
    with peak 1, and MATLAB's built-in ssim(x*255, x_true*255): imfilter with 'replicate',
    the full map averaged, dynamic range of class double (1), so C = (0.01)^2, (0.03)^2."""
    from scipy.ndimage import correlate

    pred_u8, target_u8 = _flat_and_textured_pair(seed)

    def y_double(img):  # rgb2ycbcr on double input in [0, 1], Y channel, not rounded
        r, g, b = (img[..., k].astype(np.float64) / 255 for k in range(3))
        return 16 / 255 + (65.481 * r + 128.553 * g + 24.966 * b) / 255

    x, x_true = y_double(pred_u8), y_double(target_u8)
    ref_psnr = 10 * np.log10(1.0 / np.mean((x - x_true) ** 2))
    window = _fspecial_gaussian()

    def imfilter_replicate(t):
        return correlate(t, window, mode="nearest")  # symmetric window: conv == correlation

    ref_ssim = _ssim_formula(imfilter_replicate, x * 255, x_true * 255, 0.01**2, 0.03**2)
    p, s = psnr_ssim_np(pred_u8, target_u8, "y-matlab-builtin")
    assert p == pytest.approx(ref_psnr, abs=1e-9)
    assert s == pytest.approx(ref_ssim, abs=1e-10)
    # The two MATLAB recipes differ: the built-in's tiny constants lower SSIM in flat regions.
    p_wang, s_wang = psnr_ssim_np(pred_u8, target_u8, "y-matlab")
    assert s < s_wang - 0.01
    assert p != p_wang and abs(p - p_wang) < 0.2


def test_replicate_padding_needs_no_minimum_size():
    x = torch.rand(1, 3, 6, 9, dtype=torch.float64)
    assert ssim(x, x, "y-matlab-builtin").item() == pytest.approx(1.0)
    y = (x + 0.05).clamp(0, 1)
    assert ssim(y, x, "y-matlab-builtin").shape == (1,)
    torch.testing.assert_close(
        ssim_map(x, y, padding="replicate"),
        ssim_map(torch.nn.functional.pad(x, (5, 5, 5, 5), mode="replicate"),
                 torch.nn.functional.pad(y, (5, 5, 5, 5), mode="replicate")),
        rtol=0, atol=1e-12)


def test_psnr_from_mse_matches_the_torch_psnr():
    from spanetlib.evaluation.metrics import psnr_from_mse

    rng = np.random.default_rng(0)
    a, b = rng.random((2, 1, 3, 8, 8))
    mse = float(((a - b) ** 2).mean())
    expected = float(psnr(torch.from_numpy(a), torch.from_numpy(b))[0])
    # both in float64: only the summation order differs (192 terms, ~1e-14 relative)
    assert psnr_from_mse(mse, peak=1.0) == pytest.approx(expected, rel=1e-12)
    assert psnr_from_mse(0.0) == math.inf
    out = psnr_from_mse(np.array([0.0, 255.0 ** 2 / 100]))
    assert out[0] == math.inf and out[1] == pytest.approx(20.0, rel=1e-12)
