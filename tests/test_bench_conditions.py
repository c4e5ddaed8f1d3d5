"""benchmarks/bench_conditions.py transforms the images (and their masks) as it says."""
import numpy as np
import pytest

from _benchmarks import load_benchmark

bc = load_benchmark("bench_conditions")


def _field():
    img = np.full((40, 60), 10.0)
    masks = np.zeros((40, 60), np.int32)
    masks[10:20, 10:30] = 1
    img[masks == 1] = np.linspace(100, 200, 200)
    return img, masks


def test_each_condition_transforms_image_and_masks():
    img, masks = _field()
    rng = np.random.default_rng(0)
    out, m = bc.transform("pad", img, masks, rng)
    assert out.shape == (50, 75) and not out[:10].any() and not out[:, :15].any()
    np.testing.assert_allclose(out[10:, 15:], img, rtol=1e-6)
    np.testing.assert_array_equal(m[10:, 15:], masks)
    out, m = bc.transform("offset", img, masks, rng)
    assert out.dtype == np.uint16 and out.min() == 102 and out.max() == 140
    out, _ = bc.transform("sat", img, masks, rng)
    assert out.max() == pytest.approx(np.percentile(img[masks > 0], 90))
    out, _ = bc.transform("noise50", img, masks, rng)
    assert out.dtype == np.uint16 and 30 < out[masks == 1].mean() < 50  # ~ 50 * 0.75 + 2
    out, m = bc.transform("rot90", img, masks, rng)
    np.testing.assert_allclose(out, np.rot90(img), rtol=1e-6)
    np.testing.assert_array_equal(m, np.rot90(masks))
    out, m = bc.transform("flip", img, masks, rng)
    np.testing.assert_array_equal(m, masks[::-1])
    out, m = bc.transform("vignette", img, masks, rng)
    assert out[0, 0] == pytest.approx(0.4 * img[0, 0]) and m is masks
    assert out[20, 30] == pytest.approx(img[20, 30], rel=1e-3)  # the centre keeps its brightness
    out, _ = bc.transform("gradient", img, masks, rng)
    np.testing.assert_allclose(out[:, 0], img[:, 0], rtol=1e-6)
    np.testing.assert_allclose(out[:, -1], img[:, -1] + 100.0, rtol=1e-6)  # half the maximum, 200
    out, _ = bc.transform("blur", img, masks, rng)
    assert out.sum() == pytest.approx(img.sum(), rel=1e-3) and out.max() < img.max()
    out, _ = bc.transform("gamma", img, masks, rng)
    assert out.max() == pytest.approx(200.0) and out[0, 0] == pytest.approx(200.0 * (10 / 200) ** 0.5)
    out, _ = bc.transform("hot", np.ones((200, 200)), np.zeros((200, 200), np.int32), rng)
    assert set(np.unique(out)) == {1.0, 4.0} and 5 <= np.count_nonzero(out == 4.0) <= 40  # ~20 of 40000
    out, m = bc.transform("jpeg", img, masks, rng)
    assert out.dtype == np.uint8 and m is masks and out.shape == img.shape
    assert abs(float(out[masks == 1].mean()) - 255 * (150 - 10) / 190) < 3  # min-max stretched, then JPEG
    out, _ = bc.transform("tiles", np.ones((256, 256)), np.zeros((256, 256), np.int32), rng)
    tiles = [out[y:y + 128, x:x + 128] for y in (0, 128) for x in (0, 128)]
    assert all(np.ptp(t) == 0 for t in tiles) and len({float(t[0, 0]) for t in tiles}) == 4
    assert all(1 - bc.TILE_GAIN <= t[0, 0] <= 1 + bc.TILE_GAIN + bc.TILE_OFFSET for t in tiles)
    out, _ = bc.transform("stripes", np.ones((300, 50)), np.zeros((300, 50), np.int32), rng)
    assert np.ptp(out, axis=1).max() == 0  # one offset per row
    assert np.std(out[:, 0]) == pytest.approx(bc.STRIPE_SD, rel=0.2) and np.mean(out) == pytest.approx(1.1, abs=0.01)
    with pytest.raises(ValueError, match="unknown condition"):
        bc.transform("defocus", img, masks, rng)
