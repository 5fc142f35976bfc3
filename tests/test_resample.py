"""Tests for spanetlib.pipeline.resample: B-spline interpolation and warps."""

import cv2
import numpy as np
import pytest
from scipy import ndimage

from spanetlib.pipeline import resample as rs

WARPS = [rs.INTER_BSPLINE, cv2.INTER_LANCZOS4]


def _sample_points(m: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    d = m[2, 0] * xs + m[2, 1] * ys + m[2, 2]
    return (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / d, (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]) / d


@pytest.mark.parametrize("shape", [(1, 9), (2, 5), (17, 23), (40, 31)])
def test_bspline_coefficients_match_scipy_mirror_prefilter(shape):
    image = np.random.default_rng(0).uniform(0, 255, shape + (2,)).astype(np.float32)
    ours = rs.bspline_coefficients(image)
    for c in range(2):
        ref = ndimage.spline_filter(image[..., c].astype(np.float64), order=3, mode="mirror")
        # float32 arithmetic over the taps of values up to 255 * 1.7, plus the cut tail
        # (renormalized taps: it moves a coefficient by at most twice the tail times the
        # image's span, in each of two passes)
        taps = len(rs._inverse_filter())
        atol = taps * 255 * 1.7 * 2 ** -23 + 2 * 2 * 1.7 * 255 * rs.prefilter_truncation()
        np.testing.assert_allclose(ours[..., c], ref, atol=atol)


def test_bspline_sample_interpolates_and_matches_scipy():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (20, 30, 3)).astype(np.float32)
    coeffs = rs.bspline_coefficients(image)
    ys, xs = np.mgrid[0:20, 0:30].astype(np.float64)
    # float32 rounding, plus what the prefilter's cut tail moves (two passes, span 255)
    atol = 2e-3 + 2 * 2 * 255 * rs.prefilter_truncation()
    np.testing.assert_allclose(rs.bspline_sample(coeffs, xs, ys), image, atol=atol)
    x = rng.uniform(-2, 31, 500)
    y = rng.uniform(-2, 21, 500)
    ours = rs.bspline_sample(coeffs, x, y)
    for c in range(3):  # an independent implementation of the same interpolant
        ref = ndimage.map_coordinates(image[..., c].astype(np.float64), [y, x], order=3,
                                      mode="mirror")
        np.testing.assert_allclose(ours[:, c], ref, atol=2e-2)


@pytest.mark.parametrize("matrix", [
    [[0.9998, -0.02, 2.3], [0.02, 0.9998, -1.7], [0.0, 0.0, 1.0]],       # Euclidean
    [[1.02, -0.01, 1.3], [0.015, 0.97, 0.4], [2e-4, -1e-4, 1.0]],         # homography
], ids=["euclidean", "homography"])
def test_bspline_warp_is_the_spline_at_every_output_pixel(matrix):
    m = np.array(matrix)
    image = np.random.default_rng(2).uniform(0, 255, (33, 47, 3)).astype(np.float32)
    x, y = _sample_points(m, image.shape[:2])
    ref = np.stack([ndimage.map_coordinates(image[..., c].astype(np.float64), [y, x], order=3,
                                            mode="mirror") for c in range(3)], -1)
    out = rs.warp_frame(image, m, dering=False)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out, ref, atol=2e-2)
    gray = rs.warp_frame(image[..., 1], m, dering=False)
    assert gray.shape == image.shape[:2]
    np.testing.assert_allclose(gray, ref[..., 1], atol=2e-2)
    # uint8: the float result rounded half up and clipped
    u8 = np.round(image).astype(np.uint8)
    as_float = rs.warp_frame(u8.astype(np.float32), m)
    np.testing.assert_array_equal(rs.warp_frame(u8, m),
                                  np.clip(np.floor(as_float + 0.5), 0, 255).astype(np.uint8))


def _line_shear(m: np.ndarray, shape: tuple[int, int]) -> float:
    """Largest change per column of the row each output row meets the image at (the kernel
    eliminates x from u(x, y)), over the columns the output samples."""
    x, _ = _sample_points(m, shape)
    ys = np.arange(shape[0], dtype=np.float64)[:, None]

    def row_at(u):
        xx = (u * (m[2, 1] * ys + m[2, 2]) - m[0, 1] * ys - m[0, 2]) / (m[0, 0] - u * m[2, 0])
        return (m[1, 0] * xx + m[1, 1] * ys + m[1, 2]) / (m[2, 0] * xx + m[2, 1] * ys + m[2, 2])

    return float(np.abs(row_at(x + 0.5) - row_at(x - 0.5)).max())


NEAR_TRANSLATIONS = {
    "shift": [[1.0, 0.0, 2.37], [0.0, 1.0, -1.61], [0.0, 0.0, 1.0]],
    "far shift": [[1.0, 0.0, -20.5], [0.0, 1.0, 14.25], [0.0, 0.0, 1.0]],  # mirrored borders
    "rotation 0.4 deg": [[0.99998, -0.007, 2.3], [0.007, 0.99998, -1.7], [0.0, 0.0, 1.0]],
    "homography": [[1.003, -0.004, 1.3], [0.005, 0.997, 0.4], [4e-5, -3e-5, 1.0]],
}


@pytest.mark.parametrize("matrix", NEAR_TRANSLATIONS.values(), ids=NEAR_TRANSLATIONS.keys())
def test_two_pass_warp_is_the_spline_up_to_its_shear_bound(matrix):
    """Warps close to a translation run in two passes: exact for a translation; otherwise
    each tap's row moves by at most ``2 * shear``, so a sample moves by at most that times
    the largest step between vertically adjacent coefficients (mean value theorem)."""
    m = np.array(matrix)
    image = np.random.default_rng(4).uniform(0, 255, (33, 47, 3)).astype(np.float32)
    assert rs._two_pass_columns(m, image.shape[:2]) is not None
    x, y = _sample_points(m, image.shape[:2])
    coeffs = rs.bspline_coefficients(image)
    exact = rs.bspline_sample(coeffs, x, y)
    out = rs.warp_frame(image, m, dering=False)
    assert out.dtype == np.float32 and out.shape == image.shape
    shear = _line_shear(m, image.shape[:2])
    step = float(np.abs(np.diff(coeffs, axis=0)).max())
    # float32 sums of 16 taps of coefficients up to ~1.7 * 255, twice over
    eps = 2 * 16 * 255 * 1.7 * 2 ** -23
    assert np.abs(out - exact).max() <= 2 * shear * step + eps
    if shear == 0.0:
        np.testing.assert_allclose(out, exact, atol=eps)
    gray = rs.warp_frame(image[..., 1], m, dering=False)
    np.testing.assert_allclose(gray, out[..., 1], atol=eps)
    u8 = np.round(image).astype(np.uint8)
    as_float = rs.warp_frame(u8.astype(np.float32), m)
    np.testing.assert_array_equal(rs.warp_frame(u8, m),
                                  np.clip(np.floor(as_float + 0.5), 0, 255).astype(np.uint8))


def test_two_pass_only_close_to_a_translation():
    shape = (480, 640)
    one_degree = np.deg2rad(1.0)
    rotation = np.array([[np.cos(one_degree), -np.sin(one_degree), 0.0],
                         [np.sin(one_degree), np.cos(one_degree), 0.0], [0.0, 0.0, 1.0]])
    assert rs._two_pass_columns(rotation, shape) is None
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1e-3, 0.0, 1.0]])  # rows bend
    assert rs._two_pass_columns(tilt, shape) is None
    u_lo, nu = rs._two_pass_columns(np.array(NEAR_TRANSLATIONS["far shift"]), shape)
    assert u_lo <= -20.5 - 1 and u_lo + nu - 3 > 639 - 20.5  # every tap in the line


@pytest.mark.parametrize("interpolation", WARPS)
def test_warp_frame_identity_and_integer_shift_are_exact(interpolation):
    image = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(rs.warp_frame(image, np.eye(3), interpolation), image)
    shift = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]])
    out = rs.warp_frame(image, shift, interpolation)  # out(x, y) = image(x + 3, y - 2)
    np.testing.assert_array_equal(out[2:, :-3], image[:-2, 3:])


@pytest.mark.parametrize("interpolation", WARPS)
def test_warp_frame_dering_keeps_samples_within_their_neighbours(interpolation):
    image = np.zeros((16, 16), np.float32)
    image[:, 8:] = 255.0  # a step: both interpolants over- and undershoot next to it
    half = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    ringing = rs.warp_frame(image, half, interpolation, dering=False)
    assert ringing.min() < -1.0 and ringing.max() > 256.0
    clamped = rs.warp_frame(image, half, interpolation, dering=True)
    assert clamped.min() >= 0.0 and clamped.max() <= 255.0
    assert clamped[0, 7] == pytest.approx(ringing[0, 7], abs=1e-3)  # the edge sample stays


def test_bspline_shifts_band_limited_content_closer_than_keys_cubic():
    """A sub-pixel shift of band-limited noise, against the exact (Fourier) shift."""
    rng = np.random.default_rng(3)
    n = 128
    spectrum = np.fft.fft2(rng.standard_normal((n, n)))
    f = np.fft.fftfreq(n)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    spectrum *= np.exp(-((fx ** 2 + fy ** 2) / (2 * 0.1 ** 2)))  # most energy below 0.2
    image = np.real(np.fft.ifft2(spectrum))
    image = (image / image.std() * 40.0).astype(np.float32)
    dx, dy = 0.37, -0.21
    exact = np.real(np.fft.ifft2(spectrum * np.exp(2j * np.pi * (fx * dx + fy * dy))))
    exact = exact / np.real(np.fft.ifft2(spectrum)).std() * 40.0
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])
    inner = (slice(16, -16), slice(16, -16))

    def rms(interpolation):
        out = rs.warp_frame(image, m, interpolation, dering=False)
        return float(np.sqrt(np.mean((out - exact)[inner] ** 2)))

    spline = rms(rs.INTER_BSPLINE)
    # Keys cubic (and its 1/32 px positions) errs about 10x more here, Lanczos about 4x
    assert spline < 0.25 * rms(cv2.INTER_CUBIC) and spline < rms(cv2.INTER_LANCZOS4)


@pytest.mark.parametrize("matrix", [np.full((3, 3), np.nan), np.eye(2)], ids=["nan", "2 x 2"])
def test_warp_frame_refuses_a_matrix_that_is_not_a_finite_3x3(matrix):
    with pytest.raises(ValueError, match="finite 3 x 3"):
        rs.warp_frame(np.zeros((4, 4, 3), np.uint8), matrix)


def test_two_pass_warp_matches_the_4x4_kernel_on_small_images_and_far_shifts():
    """Mirrored rows and columns (tiny images, shifts past the edge), 1 to 4 channels,
    deringing on: within the shear bound of the 4 x 4 kernel (a clamp to the same range
    moves two values apart no further)."""
    rng = np.random.default_rng(5)
    checked = 0
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        image = rng.uniform(0, 255, (h, w, int(rng.choice([1, 3, 4])))).astype(np.float32)
        angle = rng.normal(0.0, 0.003)
        shift = rng.normal(0.0, 3.0, 2) * (12.0 if rng.random() < 0.3 else 1.0)
        m = np.array([[np.cos(angle), -np.sin(angle), shift[0]],
                      [np.sin(angle), np.cos(angle), shift[1]],
                      [rng.normal(0.0, 1e-4), rng.normal(0.0, 1e-4), 1.0]])
        if rs._two_pass_columns(m, (h, w)) is None:
            continue
        coeffs = rs.bspline_coefficients(image)
        exact = np.empty_like(image)
        rs._warp_kernel(image, coeffs, m, True, False, exact)
        out = rs.warp_frame(image, m)
        shear = _line_shear(m, (h, w))
        step = float(np.abs(np.diff(coeffs, axis=0)).max()) if h > 1 else 0.0
        assert np.abs(out - exact).max() <= 2 * shear * step + 2 * 16 * 255 * 1.7 * 2 ** -23
        checked += 1
    assert checked >= 40
