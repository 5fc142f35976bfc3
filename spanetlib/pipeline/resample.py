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
  filter (OpenCV). Warps close to a translation (a camera held by hand: rotations under
  half a degree) run in two passes, one per axis, row by row: each output row first takes
  the four coefficient rows along the line it meets in the image (a column spline per
  column), then a row spline along that line. The passes read contiguous runs, so they
  vectorize; they are exact for translations, and a shear moves each tap's row by at most
  twice the shear (``_MAX_SHEAR``; the bound is tested). Other warps take the 4 x 4 sums
  at every output pixel in one numba kernel. Both do the deringing clamp and the rounding
  in the same pass.
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
    "prefilter_truncation",
    "warp_frame",
]

INTER_BSPLINE = -1
"""Interpolation flag of :func:`warp_frame` for cubic B-splines (not an OpenCV flag)."""

_POLE = math.sqrt(3.0) - 2.0  # the pole of the cubic B-spline's inverse filter
#: Prefilter taps each side. The left-out tail of the response weighs at most
#: 2 * 1.74 |pole| ** 10 / (1 - |pole|) < 1e-5 per pass (:func:`prefilter_truncation`), far
#: under uint8 rounding; 19 taps instead of 27 cut the prefilter's time by 30 %.
_HALF_TAPS = 9
#: Largest shear (rows per column, columns per row) warped in two passes: each tap's row
#: moves by at most twice this (0.02 px), well under the registration's own error.
_MAX_SHEAR = 0.01


@lazy_njit(nogil=True, cache=True)
def mirror_index(i: int, n: int) -> int:
    """Index ``i`` mirrored about the edge pixels of an axis of ``n`` (numba kernel)."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i = abs(i) % period
    return period - i if i >= n else i


@lazy_njit(nogil=True, cache=True, fastmath=True, inline="always")
def _cubic_weights(f):
    """The four cubic B-spline weights at fraction ``f`` (float32) of the tap interval."""
    sixth = np.float32(1.0 / 6.0)
    one = np.float32(1.0)
    g = one - f
    a = g * g * g * sixth
    d = f * f * f * sixth
    b = (np.float32(3.0) * f * f * f - np.float32(6.0) * f * f + np.float32(4.0)) * sixth
    return a, b, one - a - b - d, d


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
            x0, x1, x2, x3 = _cubic_weights(fx)
            y0, y1, y2, y3 = _cubic_weights(fy)
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


@lazy_njit(nogil=True, cache=True, fastmath=True)
def _floor_and_fraction(pos, whole, frac):
    """``whole = floor(pos)`` (float64) and ``frac = pos - whole`` (float32), 1-D.

    Kept in floating point: AVX2 has no vector conversion to 64-bit integers, and integer
    indices are needed once per run only.
    """
    for k in range(pos.size):
        w = math.floor(pos[k])
        whole[k] = w
        frac[k] = np.float32(pos[k] - w)


@lazy_njit(nogil=True, cache=True)
def _runs(whole, step, starts):
    """Start of each run of equal ``whole[k] - step * k`` into ``starts`` (``step`` 0 or 1).

    Returns the number of runs; ``starts[count]`` is set to the length.
    """
    count = 0
    for k in range(whole.size):
        if k == 0 or whole[k] - whole[k - 1] != step:
            starts[count] = k
            count += 1
    starts[count] = whole.size
    return count


@lazy_njit(nogil=True, cache=True)
def _two_runs(a, b, starts):
    """:func:`_runs` of the pairs ``(a[k] - k, b[k])``."""
    count = 0
    for k in range(a.size):
        if k == 0 or a[k] - a[k - 1] != 1.0 or b[k] != b[k - 1]:
            starts[count] = k
            count += 1
    starts[count] = a.size
    return count


@lazy_njit(nogil=True, cache=True, fastmath=True)
def _column_run(out, c0, c1, c2, c3, frac):
    """``out[k]``: the cubic spline through ``c0[k]..c3[k]`` at fraction ``frac[k]`` past c1.

    One loop computing its weights (1-D, equal lengths), so it vectorizes.
    """
    for k in range(out.size):
        w0, w1, w2, w3 = _cubic_weights(frac[k])
        out[k] = w0 * c0[k] + w1 * c1[k] + w2 * c2[k] + w3 * c3[k]


@lazy_njit(nogil=True, cache=True, fastmath=True)
def _row_run(acc, line, frac, upper, lower, dering):
    """``acc[k]``: the cubic spline through ``line[k:k + 4]`` at fraction ``frac[k]`` past tap 1.

    With ``dering``, each sample is clipped to the range of the 2 x 2 block
    ``upper[k:k + 2]`` over ``lower[k:k + 2]`` (two image rows one longer than ``acc``).
    """
    for k in range(acc.size):
        w0, w1, w2, w3 = _cubic_weights(frac[k])
        v = w0 * line[k] + w1 * line[k + 1] + w2 * line[k + 2] + w3 * line[k + 3]
        if dering:
            p00 = np.float32(upper[k])
            p01 = np.float32(upper[k + 1])
            p10 = np.float32(lower[k])
            p11 = np.float32(lower[k + 1])
            v = min(max(v, min(min(p00, p01), min(p10, p11))), max(max(p00, p01), max(p10, p11)))
        acc[k] = v


@lazy_njit(nogil=True, cache=True, fastmath=True)
def _round_to_u8(values, out):
    """``out = values`` rounded half up and clipped to 0..255, as uint8.

    Clipped in float first: the conversion then needs no range checks, and vectorizes.
    """
    for k in range(values.size):
        v = min(max(values[k] + np.float32(0.5), np.float32(0.0)), np.float32(255.0))
        out[k] = np.uint8(np.int32(v))


@lazy_njit(nogil=True, cache=True, fastmath=True)
def _two_pass_kernel(coeffs, image, m, u_lo, nu, dering, is_u8, out):
    """:func:`_warp_kernel`'s result for a warp close to a translation, in two passes a row.

    ``coeffs`` and ``image`` are C x H x W planes, ``out`` is C x OH x OW. Output row ``y``
    meets the image along the curve ``(u, v(u, y))``; pass 1 evaluates the column spline
    there at every integer column ``u >= u_lo`` (one value per column, mirrored columns
    outside the image), pass 2 the row spline of those values at each output pixel's ``u``,
    which must lie in ``[u_lo + 1, u_lo + nu - 3)``. Between changes of the integer tap
    position the reads are contiguous runs, each one loop that computes its weights, sums
    the taps and (pass 2) clamps to the 2 x 2 block read from ``image``.
    """
    nc, h, w = coeffs.shape
    oh, ow = out.shape[1], out.shape[2]
    m00, m01, m02 = m[0, 0], m[0, 1], m[0, 2]
    m10, m11, m12 = m[1, 0], m[1, 1], m[1, 2]
    m20, m21, m22 = m[2, 0], m[2, 1], m[2, 2]
    affine = m20 == 0.0 and m21 == 0.0 and m22 == 1.0
    ramp_v = np.arange(nu).astype(np.float64)  # float columns: no int-to-float per sample
    ramp_h = np.arange(ow).astype(np.float64)
    pos_v = np.empty(nu)  # pass 1: row positions per line column, their floor and fraction
    row_v = np.empty(nu)
    frac_v = np.empty(nu, np.float32)
    line = np.empty((nc, nu), np.float32)
    pos_h = np.empty(ow)  # pass 2: the same along the line, per output pixel
    col_h = np.empty(ow)
    frac_h = np.empty(ow, np.float32)
    sy = np.empty(ow)
    iy = np.zeros(ow)
    frac_y = np.empty(ow, np.float32)
    acc = np.empty((nc, ow), np.float32)
    col = np.empty(nu, np.int64)
    starts_v = np.empty(nu + 1, np.int64)
    starts_d = np.empty(ow + 1, np.int64)
    for j in range(nu):
        col[j] = mirror_index(u_lo + j, w)
    in0 = min(max(-u_lo, 0), nu)  # line columns [in0, in1) lie inside the image
    in1 = max(min(w - u_lo, nu), in0)
    for y in range(oh):
        # Pass 1: output row y meets column u at row v(u, y) (x eliminated from u(x, y)).
        py = m21 * y + m22
        if affine:
            x0 = (u_lo - m01 * y - m02) / m00
            v0 = m10 * x0 + m11 * y + m12
            dv = m10 / m00
            for j in range(nu):
                pos_v[j] = v0 + dv * ramp_v[j]
        else:
            for j in range(nu):
                u = u_lo + ramp_v[j]
                x = (u * py - m01 * y - m02) / (m00 - u * m20)
                pos_v[j] = (m10 * x + m11 * y + m12) / (m20 * x + py)
        _floor_and_fraction(pos_v, row_v, frac_v)
        runs = _runs(row_v, 0.0, starts_v)
        for t in range(runs):
            j = starts_v[t]
            e = starts_v[t + 1]
            r = int(row_v[j])
            r0 = mirror_index(r - 1, h)
            r1 = mirror_index(r, h)
            r2 = mirror_index(r + 1, h)
            r3 = mirror_index(r + 2, h)
            s = min(max(j, in0), e)
            q = max(min(e, in1), s)
            for c in range(nc):
                lc = line[c]
                if s < q:
                    _column_run(lc[s:q], coeffs[c, r0, s + u_lo:q + u_lo],
                                coeffs[c, r1, s + u_lo:q + u_lo],
                                coeffs[c, r2, s + u_lo:q + u_lo],
                                coeffs[c, r3, s + u_lo:q + u_lo], frac_v[s:q])
                jj = j
                while jj < e:  # columns outside the image: mirrored one by one
                    if jj == s and s < q:
                        jj = q
                        continue
                    k = col[jj]
                    a0, a1, a2, a3 = _cubic_weights(frac_v[jj])
                    lc[jj] = (a0 * coeffs[c, r0, k] + a1 * coeffs[c, r1, k]
                              + a2 * coeffs[c, r2, k] + a3 * coeffs[c, r3, k])
                    jj += 1
        # Pass 2: the row spline of the line at u(x, y), clamped to the 2 x 2 block at the
        # floor of each sample point (col_h + u_lo, iy).
        if affine:
            u0 = m01 * y + m02 - u_lo
            for x in range(ow):
                pos_h[x] = u0 + m00 * ramp_h[x]
        else:
            for x in range(ow):
                xf = ramp_h[x]
                pos_h[x] = (m00 * xf + m01 * y + m02) / (m20 * xf + py) - u_lo
        _floor_and_fraction(pos_h, col_h, frac_h)
        if dering:
            if affine:
                y0 = m11 * y + m12
                for x in range(ow):
                    sy[x] = y0 + m10 * ramp_h[x]
            else:
                for x in range(ow):
                    xf = ramp_h[x]
                    sy[x] = (m10 * xf + m11 * y + m12) / (m20 * xf + py)
            _floor_and_fraction(sy, iy, frac_y)
        runs = _two_runs(col_h, iy, starts_d)
        for t in range(runs):
            x = starts_d[t]
            e = starts_d[t + 1]
            d = int(col_h[x]) - x  # line index of sample x's tap 1, less x
            dx = d + u_lo  # image column of its 2 x 2 block, less x
            ry = int(iy[x])
            # Samples [s, q): taps inside the line and, with dering, blocks inside the image.
            s = min(max(x, 1 - d), e)
            q = max(min(e, nu - 2 - d), s)
            if dering:
                if 0 <= ry < h - 1:
                    s = min(max(s, -dx), q)
                    q = max(min(q, w - 1 - dx), s)
                else:
                    q = s
            for c in range(nc):
                lc = line[c]
                if s < q and dering:
                    _row_run(acc[c, s:q], lc[s + d - 1:q + d + 2], frac_h[s:q],
                             image[c, ry, s + dx:q + dx + 1],
                             image[c, ry + 1, s + dx:q + dx + 1], True)
                elif s < q:
                    _row_run(acc[c, s:q], lc[s + d - 1:q + d + 2], frac_h[s:q],
                             image[c, 0, :0], image[c, 0, :0], False)
                xx = x
                while xx < e:  # the rest one by one: taps clamped, blocks mirrored
                    if xx == s and s < q:
                        xx = q
                        continue
                    k = xx + d
                    b0, b1, b2, b3 = _cubic_weights(frac_h[xx])
                    v = (b0 * lc[min(max(k - 1, 0), nu - 1)] + b1 * lc[min(max(k, 0), nu - 1)]
                         + b2 * lc[min(max(k + 1, 0), nu - 1)]
                         + b3 * lc[min(max(k + 2, 0), nu - 1)])
                    if dering:
                        c1 = mirror_index(xx + dx, w)
                        c2 = mirror_index(xx + dx + 1, w)
                        q1 = mirror_index(ry, h)
                        q2 = mirror_index(ry + 1, h)
                        p00 = np.float32(image[c, q1, c1])
                        p01 = np.float32(image[c, q1, c2])
                        p10 = np.float32(image[c, q2, c1])
                        p11 = np.float32(image[c, q2, c2])
                        v = min(max(v, min(min(p00, p01), min(p10, p11))),
                                max(max(p00, p01), max(p10, p11)))
                    acc[c, xx] = v
                    xx += 1
        for c in range(nc):
            if is_u8:
                _round_to_u8(acc[c], out[c, y])
            else:
                out[c, y, :] = acc[c]


def _inverse_filter() -> np.ndarray:
    """Taps of the cubic B-spline prefilter: its exact impulse response, cut at |k| <= 9.

    The response is ``-6 z / (1 - z^2) z^|k|`` with ``z`` the pole; the taps left out weigh
    less than 1e-5 in all per pass (the taps are renormalized to sum 1, so flat regions are
    exact), so on 0..255 images the cut changes a coefficient by less than 0.01 levels
    (:func:`prefilter_truncation`). OpenCV's SIMD separable filter does the work; its
    ``BORDER_REFLECT_101`` is the mirror boundary.
    """
    k = np.arange(-_HALF_TAPS, _HALF_TAPS + 1)
    taps = (-6.0 * _POLE / (1.0 - _POLE * _POLE)) * _POLE ** np.abs(k)
    return (taps / taps.sum()).astype(np.float32)


def prefilter_truncation() -> float:
    """Weight of the prefilter's response left out by the cut at ``|k| <= 9``, per pass.

    A coefficient of an image whose values span ``R`` differs from the exact (infinite)
    prefilter's by at most about ``2 R`` times this (two passes, renormalized taps).
    """
    tail = 2.0 * abs(-6.0 * _POLE / (1.0 - _POLE * _POLE)) * abs(_POLE) ** (_HALF_TAPS + 1)
    return tail / (1.0 - abs(_POLE))


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


def _two_pass_columns(m: np.ndarray, shape: tuple[int, int]) -> tuple[int, int] | None:
    """The line columns ``(u_lo, nu)`` of :func:`_two_pass_kernel`, or None.

    For a warp of an image of ``shape`` (output the same size). None where two passes do not
    apply: a projective part that bends rows strongly, or a shear over :data:`_MAX_SHEAR`.
    """
    h, w = shape
    xs = np.array([0.0, w - 1.0, 0.0, w - 1.0, (w - 1.0) / 2])
    ys = np.array([0.0, 0.0, h - 1.0, h - 1.0, (h - 1.0) / 2])
    den = m[2, 0] * xs + m[2, 1] * ys + m[2, 2]
    if den.min() < 0.5 or den.max() > 2.0:
        return None
    u = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / den
    # A linear-fractional map takes its extremes over a rectangle at the corners.
    u_lo = math.floor(u.min()) - 2
    nu = math.ceil(u.max()) + 4 - u_lo
    if min(m[0, 0] - u_lo * m[2, 0], m[0, 0] - (u_lo + nu) * m[2, 0]) < 0.5:
        return None

    def row_at(uu: np.ndarray) -> np.ndarray:  # v(u, y): the output row's curve in the image
        x = (uu * (m[2, 1] * ys + m[2, 2]) - m[0, 1] * ys - m[0, 2]) / (m[0, 0] - uu * m[2, 0])
        return (m[1, 0] * x + m[1, 1] * ys + m[1, 2]) / (m[2, 0] * x + m[2, 1] * ys + m[2, 2])

    if np.abs(row_at(u + 0.5) - row_at(u - 0.5)).max() > _MAX_SHEAR:
        return None
    return u_lo, nu


def _warp_two_pass(src: np.ndarray, m: np.ndarray, columns: tuple[int, int],
                   dering: bool) -> np.ndarray:
    """:func:`warp_frame` of an H x W x C image by :func:`_two_pass_kernel`."""
    planes = cv2.split(src)
    stack = np.stack(planes)
    coeffs = np.empty(stack.shape, np.float32)
    taps = _inverse_filter()
    for plane, into in zip(planes, coeffs, strict=True):
        cv2.sepFilter2D(plane, cv2.CV_32F, taps, taps, dst=into,
                        borderType=cv2.BORDER_REFLECT_101)
    out = np.empty(stack.shape, src.dtype)
    _two_pass_kernel(coeffs, stack, m, columns[0], columns[1], dering,
                     src.dtype == np.uint8, out)
    return cv2.merge(list(out)) if len(out) > 1 else out[0][..., None]


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

    Raises:
        ValueError: a matrix that is not a finite 3 x 3 array.
    """
    m = np.asarray(matrix, np.float64)
    if m.shape != (3, 3) or not np.isfinite(m).all():
        raise ValueError(f"matrix: expected a finite 3 x 3 transform, got {m.tolist()}")
    h, w = image.shape[:2]
    if interpolation == INTER_BSPLINE:
        src = image if image.ndim == 3 else image[..., None]
        src = np.ascontiguousarray(src, np.uint8 if src.dtype == np.uint8 else np.float32)
        columns = _two_pass_columns(m, (h, w))
        if columns is not None:
            out = _warp_two_pass(src, np.ascontiguousarray(m), columns, dering)
        else:
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
    if ix >= 1 and iy >= 1 and ix + 2 < w and iy + 2 < h:  # inside: no mirroring
        c0, r0 = int(ix) - 1, int(iy) - 1
        return (wy0 * (wx0 * coeffs[r0, c0, 0] + wx1 * coeffs[r0, c0 + 1, 0]
                       + wx2 * coeffs[r0, c0 + 2, 0] + wx3 * coeffs[r0, c0 + 3, 0])
                + wy1 * (wx0 * coeffs[r0 + 1, c0, 0] + wx1 * coeffs[r0 + 1, c0 + 1, 0]
                         + wx2 * coeffs[r0 + 1, c0 + 2, 0] + wx3 * coeffs[r0 + 1, c0 + 3, 0])
                + wy2 * (wx0 * coeffs[r0 + 2, c0, 0] + wx1 * coeffs[r0 + 2, c0 + 1, 0]
                         + wx2 * coeffs[r0 + 2, c0 + 2, 0] + wx3 * coeffs[r0 + 2, c0 + 3, 0])
                + wy3 * (wx0 * coeffs[r0 + 3, c0, 0] + wx1 * coeffs[r0 + 3, c0 + 1, 0]
                         + wx2 * coeffs[r0 + 3, c0 + 2, 0] + wx3 * coeffs[r0 + 3, c0 + 3, 0]))
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
