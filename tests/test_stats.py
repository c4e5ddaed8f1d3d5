"""fishcount._stats: the exact equivalents of numpy / scikit-image statistics, and the foreground Otsu rule."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fishcount import _stats as T


def _float_cases(rng: np.random.Generator) -> list[np.ndarray]:
    # random float32/float64 arrays of 1 to a few thousand values, with ties, constants, signed zeros
    out = []
    for n in (1, 2, 3, 5, 10, 11, 57, 256, 300, 1001, 4099):
        for dt in (np.float32, np.float64):
            v = rng.normal(size=n).astype(dt)
            out += [v, np.round(v * 2).astype(dt), np.full(n, 0.7, dt), np.abs(v) * 1e-3]
    out.append(np.array([0.0, -0.0, 0.0, -0.0, 1.0], np.float32))
    out.append(np.array([1.0, 1.0 + 2**-20, 1.0 + 2**-19], np.float32))  # a narrow range
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.int16])
def test_percentiles_equal_numpy(dtype):
    rng = np.random.default_rng(1)
    hi = 255 if dtype == np.uint8 else 4000
    for size in (1, 2, 7, 1000, 262144):
        v = rng.integers(0, hi, size).astype(dtype)
        for q in ((0.5, 99.8), (0.0, 100.0), (50.0,), (2.28, 10.0, 37.5)):
            assert T.percentiles(v, q) == tuple(float(x) for x in np.percentile(v, q))
    flat = np.full((5, 5), 7, np.uint16)
    assert T.percentiles(flat, (0.5, 99.8)) == (7.0, 7.0)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 20000), st.integers(0, 2**31 - 1), st.booleans())
def test_median_equals_numpy(n, seed, ties):
    # the bracketed order-statistic search (arrays of >= 4096 values) and the small-array path
    rng = np.random.default_rng(seed)
    v = rng.normal(size=n)
    if ties:  # many equal values (integer images)
        v = np.round(v * 3.0)
    assert T.median(v) == np.median(v)


def test_percentiles_of_floats_equal_numpy():
    rng = np.random.default_rng(11)
    qs = [(10.0, 90.0), (0.0, 100.0), (50.0,), (2.28, 10.0), (33.3, 66.6, 99.9), (25, 75)]
    for v in _float_cases(rng):
        for q in qs:
            ref = np.percentile(v, q)
            got = np.array(T.percentiles(v, q))
            assert got.dtype == ref.dtype and np.array_equal(got, ref), (v, q, got, ref)
            assert np.array_equal(np.signbit(got), np.signbit(ref))
    v = rng.normal(size=40).astype(np.float32)
    v[7] = np.nan  # NaN: numpy's NaN result
    assert np.isnan(T.percentiles(v, (10.0, 90.0))).all()
    u = (rng.random(50) * 300).astype(np.uint16)  # other dtypes: np.percentile itself
    assert T.percentiles(u, (10.0, 90.0)) == tuple(np.percentile(u, (10.0, 90.0)))
    for bad, q in ((np.zeros(0, np.float32), (10.0, 90.0)), (v, (10.0, 101.0))):  # numpy's own errors
        with pytest.raises(Exception) as ref:
            np.percentile(bad, q)
        with pytest.raises(ref.type):
            T.percentiles(bad, q)


def test_threshold_otsu_equals_skimage():
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(12)
    for v in _float_cases(rng):
        for nbins in (256, 16):
            try:
                ref = threshold_otsu(v, nbins)
            except ValueError:  # e.g. too many bins for a narrow range: the same error
                with pytest.raises(ValueError):
                    T.threshold_otsu(v, nbins)
                continue
            got = T.threshold_otsu(v, nbins)
            assert type(got) is type(ref) and got == ref and np.signbit(got) == np.signbit(ref), (v, got, ref)
    bimodal = np.concatenate([rng.normal(1, 0.1, 300), rng.normal(3, 0.3, 100)]).astype(np.float32)
    assert T.threshold_otsu(bimodal) == threshold_otsu(bimodal) and 1.0 < T.threshold_otsu(bimodal) < 3.0
    u = (rng.random(50) * 300).astype(np.uint16)  # integer images: skimage's own bincount path
    assert T.threshold_otsu(u) == threshold_otsu(u)
    tiny = np.array([1.0, np.nextafter(np.float32(1.0), np.float32(2.0))], np.float32)
    with pytest.raises(ValueError):  # numpy: too many bins for the data range, as skimage
        T.threshold_otsu(tiny)
    with pytest.raises(ValueError):
        T.threshold_otsu(np.array([1.0, np.nan, 2.0], np.float32))


def test_otsu_foreground_known_answers():
    rng = np.random.default_rng(3)
    bimodal = np.concatenate([rng.normal(10, 1, 2000), rng.normal(50, 3, 500)])
    t = T.otsu_foreground(bimodal)
    assert (bimodal[2000:] > t).all() and (bimodal[:2000] > t).mean() < 0.01  # separates the two classes
    assert T.otsu_foreground(np.zeros(0)) == 0.0  # empty
    assert T.otsu_foreground(np.array([np.nan, np.inf])) == 0.0  # nothing finite
    assert T.otsu_foreground(np.full(10, 3.5)) == 3.5  # constant: its value
    with_nan = np.concatenate([bimodal, [np.nan, np.inf, -np.inf]])
    assert T.otsu_foreground(with_nan) == t  # non-finite values are ignored
    two = np.array([0.0, 0.0, 0.0, 1.0])
    assert T.otsu_foreground(two, nbins=2) == 0.25  # the lower bin's centre: the only valid split


def test_segment_and_spots_use_the_shared_helpers():
    from fishcount import segment, spots

    assert segment._median is T.median and spots._median is T.median
    assert segment._percentiles is T.percentiles and segment._threshold_otsu is T.threshold_otsu
    assert segment._otsu is T.otsu_foreground


def test_neighbour_extremes_known_answers():
    from fishcount._stats import neighbour_extremes

    img = np.arange(16, dtype=np.float32).reshape(4, 4)
    ys, xs = np.array([1, 0, 3]), np.array([1, 0, 3])
    nmax, nmin, n_skip = neighbour_extremes(img, ys, xs)
    np.testing.assert_array_equal(nmax, [10, 5, 14])  # (1, 1): 0-2, 4, 6, 8-10; corners: 3 neighbours
    np.testing.assert_array_equal(nmin, [0, 1, 10])
    np.testing.assert_array_equal(n_skip, [0, 0, 0])
    skip = img >= 9
    nmax, nmin, n_skip = neighbour_extremes(img, ys, xs, skip=skip)
    np.testing.assert_array_equal(nmax, [8, 5, -np.inf])  # 9 and 10 skipped; (3, 3) has only skipped ones
    np.testing.assert_array_equal(n_skip, [2, 0, 3])
    assert nmin[2] == np.inf


@pytest.mark.parametrize("shape, frac", [((3, 3), 0.5), ((40, 60), 0.01), ((200, 300), 0.3), ((64, 0), 0.5)])
def test_nonzero_2d_is_np_nonzero(shape, frac):
    from fishcount._stats import nonzero_2d

    a = np.random.default_rng(0).random(shape) < frac
    ys, xs = nonzero_2d(a)
    ry, rx = np.nonzero(a)
    np.testing.assert_array_equal(ys, ry)
    np.testing.assert_array_equal(xs, rx)
    assert ys.dtype == ry.dtype and xs.dtype == rx.dtype
