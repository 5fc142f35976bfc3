"""Resampling images at transformed coordinates: warps and cubic B-spline interpolation.

:func:`warp_frame` brings a frame into a reference's coordinates (or an estimate back into a
frame's) for the §3 pipeline. Two kinds of interpolation:

* **Cubic B-splines** (:data:`INTER_BSPLINE`, the default). The image is prefiltered into
  B-spline coefficients (the inverse filter of Unser, Aldroubi and Eden, 1991, with mirror
  boundaries, as ``scipy.ndimage.spline_filter(mode="mirror")``), then each output
  pixel is a 4 x 4 weighted sum of coefficients at its exact sample point. On band-limited
  content it reproduces sub-pixel shifts closer than Lanczos (8 x 8 taps) and far closer than
  Keys cubic (OpenCV's ``INTER_CUBIC``; OpenCV also rounds sample points to 1/32 pixel), at a
  quarter of Lanczos's taps (``tests/test_resample.py``). The prefilter is a separable
  filter (OpenCV); one numba kernel does the sums, the deringing clamp and the rounding in a
  single pass over the output (no intermediate full-size images).
* Any OpenCV interpolation flag (``cv2.INTER_LANCZOS4``, ``cv2.INTER_CUBIC``, ...), through
  ``cv2.warpAffine`` / ``cv2.warpPerspective``.

Deringing clamps each sample to the range of the 2 x 2 source pixels around its sample point,
so a warp adds no over- or undershoot next to bright rain streaks. Borders are mirrored about
the edge pixels (OpenCV's ``BORDER_REFLECT_101``) in both kinds.

:func:`bspline_coefficients` and :func:`bspline_sample` are the same interpolation at
arbitrary points (sub-pixel registration, test-clip rendering).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from spanetlib.pipeline.lazy_jit import lazy_njit

__all__ = [
    "INTER_BSPLINE",
    "bspline_coefficients",
    "bspline_point",
    "bspline_sample",
    "mirror_index",
    "warp_frame",
]

INTER_BSPLINE = -1
"""Interpolation flag of :func:`warp_frame` for cubic B-splines (not an OpenCV flag)."""

_POLE = math.sqrt(3.0) - 2.0  # the pole of the cubic B-spline's inverse filter
_HALF_TAPS = 13  # prefilter taps each side: |pole| ** 14 < 1e-8


@lazy_njit(nogil=True, cache=True)
def mirror_index(i: int, n: int) -> int:
    """Index ``i`` mirrored about the edge pixels of an axis of ``n`` (numba kernel)."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i = abs(i) % period
    return period - i if i >= n else i


@lazy_njit(nogil=True, cache=True, fastmath=True)
def _warp_kernel(image, coeffs, m, dering, is_u8, out):
    """``out[y, x] = spline(coeffs)(m @ (x, y, 1))``, clamped to the 2 x 2 range of ``image``.

    ``image`` and ``coeffs`` are H x W x C, ``out`` OH x OW x C: uint8 (rounded half up,
    clipped) when ``is_u8``, else float32. Written for speed: scalar weights, rows as flat
    views, the 4 x 4 taps unrolled (about 50 ns per 3-channel pixel on one core).
    """
    h, w, ch = coeffs.shape
    oh, ow = out.shape[0], out.shape[1]
    m00, m01, m02 = m[0, 0], m[0, 1], m[0, 2]
    m10, m11, m12 = m[1, 0], m[1, 1], m[1, 2]
    m20, m21, m22 = m[2, 0], m[2, 1], m[2, 2]
    perspective = m20 != 0.0 or m21 != 0.0 or m22 != 1.0
    sixth = np.float32(1.0 / 6.0)
    one = np.float32(1.0)
    cf = coeffs.reshape(h, w * ch)
    im = image.reshape(h, w * ch)
    flat = out.reshape(oh, ow * ch)
    for y in range(oh):
        row = flat[y]
        for x in range(ow):
            sx = m00 * x + m01 * y + m02
            sy = m10 * x + m11 * y + m12
            if perspective:
                d = m20 * x + m21 * y + m22
                sx /= d
                sy /= d
            fx0 = math.floor(sx)
            fy0 = math.floor(sy)
            ix = int(fx0)
            iy = int(fy0)
            fx = np.float32(sx - fx0)
            fy = np.float32(sy - fy0)
            gx = one - fx
            gy = one - fy
            x0 = gx * gx * gx * sixth
            x3 = fx * fx * fx * sixth
            x1 = (np.float32(3.0) * fx * fx * fx - np.float32(6.0) * fx * fx
                  + np.float32(4.0)) * sixth
            x2 = one - x0 - x1 - x3
            y0 = gy * gy * gy * sixth
            y3 = fy * fy * fy * sixth
            y1 = (np.float32(3.0) * fy * fy * fy - np.float32(6.0) * fy * fy
                  + np.float32(4.0)) * sixth
            y2 = one - y0 - y1 - y3
            if ix >= 1 and iy >= 1 and ix + 2 < w and iy + 2 < h:
                c0 = ch * (ix - 1)
                c1 = c0 + ch
                c2 = c1 + ch
                c3 = c2 + ch
                r0, r1, r2, r3 = iy - 1, iy, iy + 1, iy + 2
            else:
                c0 = ch * mirror_index(ix - 1, w)
                c1 = ch * mirror_index(ix, w)
                c2 = ch * mirror_index(ix + 1, w)
                c3 = ch * mirror_index(ix + 2, w)
                r0 = mirror_index(iy - 1, h)
                r1 = mirror_index(iy, h)
                r2 = mirror_index(iy + 1, h)
                r3 = mirror_index(iy + 2, h)
            a0, a1, a2, a3 = cf[r0], cf[r1], cf[r2], cf[r3]
            i1, i2 = im[r1], im[r2]
            for c in range(ch):
                acc = (y0 * (x0 * a0[c0 + c] + x1 * a0[c1 + c] + x2 * a0[c2 + c] + x3 * a0[c3 + c])
                       + y1 * (x0 * a1[c0 + c] + x1 * a1[c1 + c] + x2 * a1[c2 + c]
                               + x3 * a1[c3 + c])
                       + y2 * (x0 * a2[c0 + c] + x1 * a2[c1 + c] + x2 * a2[c2 + c]
                               + x3 * a2[c3 + c])
                       + y3 * (x0 * a3[c0 + c] + x1 * a3[c1 + c] + x2 * a3[c2 + c]
                               + x3 * a3[c3 + c]))
                if dering:
                    p = np.float32(i1[c1 + c])
                    q = np.float32(i1[c2 + c])
                    u = np.float32(i2[c1 + c])
                    v = np.float32(i2[c2 + c])
                    acc = min(max(acc, min(min(p, q), min(u, v))), max(max(p, q), max(u, v)))
                if is_u8:
                    k = int(acc + np.float32(0.5))  # toward zero: below 0 it is clipped anyway
                    row[ch * x + c] = 0 if k < 0 else (255 if k > 255 else k)
                else:
                    row[ch * x + c] = acc


def _inverse_filter() -> np.ndarray:
    """Taps of the cubic B-spline prefilter: its exact impulse response, cut at |k| <= 13.

    The response is ``-6 z / (1 - z^2) z^|k|`` with ``z`` the pole; the first tap left out is
    below 5e-8 of the centre one, so the cut changes a coefficient by less than 1e-5 levels
    of 255 (OpenCV's SIMD separable filter does the work; its ``BORDER_REFLECT_101`` is the
    mirror boundary).
    """
    k = np.arange(-_HALF_TAPS, _HALF_TAPS + 1)
    taps = (-6.0 * _POLE / (1.0 - _POLE * _POLE)) * _POLE ** np.abs(k)
    return (taps / taps.sum()).astype(np.float32)


def bspline_coefficients(image: np.ndarray) -> np.ndarray:
    """Cubic B-spline coefficients of an image, for :func:`bspline_sample`.

    Args:
        image: H x W or H x W x C (C <= 4), uint8 or any real dtype.

    Returns:
        H x W x C float32 coefficients (mirror boundary), C = 1 for a 2-D image.
    """
    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.float32):
        image = image.astype(np.float32)
    taps = _inverse_filter()
    out = cv2.sepFilter2D(image, cv2.CV_32F, taps, taps, borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(image.shape[:2] + (-1,))


@lazy_njit(nogil=True, cache=True)
def _bspline_kernel(coeffs, xs, ys, out):
    """Cubic B-spline interpolation of ``coeffs`` (H x W x C) at K points into ``out`` (K x C).

    Out-of-range taps are mirrored about the edge pixels.
    """
    h, w, c = coeffs.shape
    wx = np.empty(4)
    wy = np.empty(4)
    for k in range(xs.size):
        x = xs[k]
        y = ys[k]
        ix = math.floor(x)
        iy = math.floor(y)
        fx = x - ix
        fy = y - iy
        for f, wt in ((fx, wx), (fy, wy)):
            g = 1.0 - f
            wt[0] = g * g * g / 6.0
            wt[1] = (3.0 * f * f * f - 6.0 * f * f + 4.0) / 6.0
            wt[2] = (-3.0 * f * f * f + 3.0 * f * f + 3.0 * f + 1.0) / 6.0
            wt[3] = f * f * f / 6.0
        for ch in range(c):
            out[k, ch] = 0.0
        for j in range(4):
            row = mirror_index(iy - 1 + j, h)
            for i in range(4):
                col = mirror_index(ix - 1 + i, w)
                weight = wy[j] * wx[i]
                for ch in range(c):
                    out[k, ch] += weight * coeffs[row, col, ch]


def bspline_sample(coeffs: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Interpolate an image at arbitrary points with cubic B-splines (exact, no ringing tables).

    Unlike OpenCV's remap (Keys cubic or Lanczos, positions rounded to 1/32 pixel), cubic
    B-spline interpolation reproduces shifted band-limited content without a position bias,
    which sub-pixel registration and test-clip rendering need.

    Args:
        coeffs: H x W x C coefficients from :func:`bspline_coefficients`.
        x: column coordinates (any shape; pixel centres are integers).
        y: row coordinates, same shape.

    Returns:
        Array of shape ``x.shape + (C,)``, float32.
    """
    xs = np.ascontiguousarray(x, np.float64).ravel()
    ys = np.ascontiguousarray(y, np.float64).ravel()
    out = np.empty((xs.size, coeffs.shape[2]), np.float32)
    _bspline_kernel(coeffs, xs, ys, out)
    return out.reshape(*np.shape(x), coeffs.shape[2])


def warp_frame(image: np.ndarray, matrix: np.ndarray, interpolation: int = INTER_BSPLINE,
               dering: bool = True) -> np.ndarray:
    """Resample ``image`` at ``matrix @ (x, y, 1)`` for every output pixel ``(x, y)``.

    With ``matrix`` a reference -> frame transform of
    :class:`spanetlib.pipeline.alignment.Motion`, this brings frame ``i`` into the
    reference's coordinates; with its inverse, a reference-aligned image (a background
    estimate) into frame ``i``'s. Borders are mirrored about the edge pixels.

    Args:
        image: H x W x C or H x W, uint8 or float32.
        matrix: 3 x 3 transform (output pixel -> input pixel coordinates).
        interpolation: :data:`INTER_BSPLINE` (default) or an OpenCV interpolation flag.
        dering: clamp each sample to the range of the 2 x 2 input pixels around its sample
            point, so the warp adds no over- or undershoot (ringing) at sharp edges.

    Returns:
        Array of ``image``'s shape and dtype (uint8 is rounded half up).
    """
    m = np.asarray(matrix, np.float64)
    h, w = image.shape[:2]
    if interpolation == INTER_BSPLINE:
        src = image if image.ndim == 3 else image[..., None]
        src = np.ascontiguousarray(src, np.uint8 if src.dtype == np.uint8 else np.float32)
        out = np.empty(src.shape, src.dtype)
        _warp_kernel(src, bspline_coefficients(src), np.ascontiguousarray(m), dering,
                     src.dtype == np.uint8, out)
        return out if image.ndim == 3 else out[..., 0]
    flags = interpolation | cv2.WARP_INVERSE_MAP
    border = cv2.BORDER_REFLECT_101
    affine = abs(m[2, 0]) < 1e-12 and abs(m[2, 1]) < 1e-12 and m[2, 2] == 1.0
    if affine:
        out = cv2.warpAffine(image, m[:2], (w, h), flags=flags, borderMode=border)
    else:
        out = cv2.warpPerspective(image, m, (w, h), flags=flags, borderMode=border)
    if not dering:
        return out
    # Range of the 2 x 2 neighbourhood: min/max over the pixel and its right/lower
    # neighbours, sampled at the floor of the sample point (nearest on a half-pixel shift).
    kernel = np.ones((2, 2), np.uint8)
    lo = cv2.erode(image, kernel, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    hi = cv2.dilate(image, kernel, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    shift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]]) @ m
    nflags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    if affine:
        lo = cv2.warpAffine(lo, shift[:2], (w, h), flags=nflags, borderMode=border)
        hi = cv2.warpAffine(hi, shift[:2], (w, h), flags=nflags, borderMode=border)
    else:
        lo = cv2.warpPerspective(lo, shift, (w, h), flags=nflags, borderMode=border)
        hi = cv2.warpPerspective(hi, shift, (w, h), flags=nflags, borderMode=border)
    return np.clip(out, lo, hi)


@lazy_njit(nogil=True, cache=True)
def bspline_point(coeffs, x, y):
    """Cubic B-spline interpolation of channel 0 of ``coeffs`` at one point (mirror edges).

    A numba kernel, for other kernels (registration samples one point at a time).
    """
    h, w = coeffs.shape[0], coeffs.shape[1]
    ix = math.floor(x)
    iy = math.floor(y)
    fx = x - ix
    fy = y - iy
    gx = 1.0 - fx
    gy = 1.0 - fy
    wx0, wx3 = gx * gx * gx / 6.0, fx * fx * fx / 6.0
    wx1 = (3.0 * fx * fx * fx - 6.0 * fx * fx + 4.0) / 6.0
    wx2 = (-3.0 * fx * fx * fx + 3.0 * fx * fx + 3.0 * fx + 1.0) / 6.0
    wy0, wy3 = gy * gy * gy / 6.0, fy * fy * fy / 6.0
    wy1 = (3.0 * fy * fy * fy - 6.0 * fy * fy + 4.0) / 6.0
    wy2 = (-3.0 * fy * fy * fy + 3.0 * fy * fy + 3.0 * fy + 1.0) / 6.0
    acc = 0.0
    for j in range(4):
        row = mirror_index(iy - 1 + j, h)
        wyj = wy0 if j == 0 else (wy1 if j == 1 else (wy2 if j == 2 else wy3))
        line = 0.0
        line += wx0 * coeffs[row, mirror_index(ix - 1, w), 0]
        line += wx1 * coeffs[row, mirror_index(ix, w), 0]
        line += wx2 * coeffs[row, mirror_index(ix + 1, w), 0]
        line += wx3 * coeffs[row, mirror_index(ix + 2, w), 0]
        acc += wyj * line
    return acc
