"""The independent nucleus generator of benchmarks/bench_othersim.py draws what it says it drew, and its
scoring counts what it says it counts."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_othersim.py"
_spec = importlib.util.spec_from_file_location("bench_othersim", _PATH)
bos = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bos)


@pytest.mark.parametrize("lobulated", [0.0, 0.5])
def test_field_truth_matches_the_image(lobulated):
    img, lab, pressed, lobed = bos.ellipse_field(384, 0.16, seed=3, elong=(1.5, 2.5), lobulated=lobulated)
    n = int(lab.max())
    assert img.dtype == np.uint16 and img.shape == lab.shape == (384, 384)
    assert n > 5 and pressed.shape == lobed.shape == (n,)
    assert set(np.unique(lab)) == set(range(n + 1))  # every drawn nucleus has pixels
    # nuclei are brighter than the background around them
    fg = lab > 0
    assert img[fg].mean() > img[~ndi.binary_dilation(fg, iterations=5)].mean() + 50
    # nucleus sizes: 7-11 µm equivalent diameter (pressed ones may lose up to half their pixels)
    d_um = 2 * np.sqrt(np.bincount(lab.ravel())[1:] / math.pi) * 0.16
    assert d_um.max() <= 11.2 and np.median(d_um[~lobed]) >= 6.5
    # "pressed" nuclei touch another one; the others touch none
    touching = np.zeros(n + 1, bool)
    for a, b in ((lab[:, 1:], lab[:, :-1]), (lab[1:], lab[:-1])):
        m = (a > 0) & (b > 0) & (a != b)
        touching[a[m]] = touching[b[m]] = True
    assert np.array_equal(touching[1:], pressed)
    if lobulated:
        assert lobed.any() and not lobed.all()
    else:
        assert not lobed.any()


def test_lobulated_nucleus_is_one_label_of_several_lobes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        parts, bridges, radius, extent = bos._nucleus_shape(rng, 56.0, 0.16, (1.0, 1.3), True)
        assert 2 <= len(parts) <= 4 and len(bridges) == len(parts) - 1 and radius < extent
        r = int(math.ceil(extent)) + 2
        yy, xx = np.mgrid[-r: r + 1, -r: r + 1].astype(float)
        inside = bos._inside(yy, xx, parts, bridges)
        assert ndi.label(inside, structure=np.ones((3, 3), bool))[1] == 1  # lobes joined by their strands
        assert not inside[0].any() and not inside[-1].any()  # the extent holds the whole shape


def test_score_counts_matches_touching_and_lobulated():
    true = np.zeros((40, 60), np.int32)
    true[5:15, 5:15] = 1
    true[5:15, 15:25] = 2   # pressed against 1
    true[25:35, 30:40] = 3  # lobulated
    pred = true.copy()
    pred[4:16, 5:25] = 1    # 1 and 2 merged (IoU 0.42 with each): neither found
    pressed = np.array([True, True, False])
    lobed = np.array([False, False, True])
    m = bos.score(true, pred, pressed, lobed)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 2)
    assert (m["touch_found"], m["touch_total"], m["lob_whole"], m["lob_total"]) == (0, 2, 1, 1)
    # nuclei on the image border are left out on both sides
    true[0:3, 50:55] = 4
    pred[0:3, 50:55] = 7
    assert bos.score(true, pred, np.array([True, True, False, False]), None)["tp"] == 1
