"""The semi-synthetic benchmark's generator (benchmarks/bench_semisynthetic.py) draws what it says it drew."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_semisynthetic.py"
_spec = importlib.util.spec_from_file_location("bench_semisynthetic", _PATH)
bss = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bss)

PX = 0.2          # µm / px
DIAM = 0.8        # signal diameter, µm


def _discs(shape=(120, 160), centres=((40, 40), (60, 110), (110, 150)), r=22):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(centres, start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    dapi = np.where(lab > 0, 120.0, 5.0).astype(np.float32)
    return dapi, lab


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_truth_counts_match_the_drawn_sites(seed):
    dapi, lab = _discs()
    probes, truth, spots = bss.generate_probes(dapi, lab, PX, np.random.default_rng(seed),
                                               signal_diameter_um=DIAM, model={"split_fraction": 0.5})
    assert set(probes) == {"EGR1", "D5S23"} and all(p.dtype == np.uint16 and p.shape == lab.shape
                                                     for p in probes.values())
    t = truth.set_index("label")
    assert t.loc[3, "border"] and not t.loc[1, "border"] and not t.loc[2, "border"]
    shift = {"EGR1": 0.0, "D5S23": bss.MODEL["chromatic_shift_px"]}
    for lab_id, row in t.iterrows():
        # nuclei this large always fit their pattern, so the truth is the drawn pattern
        assert (row.count_EGR1, row.count_D5S23) == bss.PATTERNS[row.drawn_call]
        assert row.call == row.drawn_call
        for sig in ("EGR1", "D5S23"):
            s = spots[(spots.label == lab_id) & (spots.signal == sig)]
            assert s.site.nunique() == row[f"count_{sig}"]
            sites = s.groupby("site")[["y", "x"]].mean().to_numpy()
            # every site (shift removed, at most the shift away) lies inside its own nucleus
            for y, x in sites:
                assert np.hypot(*(np.array([y, x]) - np.array(ndi.center_of_mass(lab == lab_id)))) \
                    <= 22 - bss.MODEL["erode_um"] / PX + shift[sig] + 1
            if len(sites) == 2:
                assert np.hypot(*(sites[0] - sites[1])) >= bss.MODEL["min_sep_diameters"] * DIAM / PX - 1e-9
            # split signals are two sub-spots closer than one signal diameter
            for _, g in s.groupby("site"):
                if len(g) == 2:
                    assert g.split.all()
                    assert np.hypot(*(g[["y", "x"]].to_numpy()[0] - g[["y", "x"]].to_numpy()[1])) < DIAM / PX
                else:
                    assert len(g) == 1 and not g.split.any()
    bg = spots[spots.background]
    if len(bg):
        dist = ndi.distance_transform_edt(lab == 0)
        yi, xi = np.clip(np.rint(bg.y).astype(int), 0, 119), np.clip(np.rint(bg.x).astype(int), 0, 159)
        assert (dist[yi, xi] * PX >= bss.MODEL["background_min_dist_um"] - PX).all()
        assert (bg.label == 0).all() and (bg.site == -1).all()


def test_rendered_image_has_one_peak_per_true_signal():
    """Noise-free rendering without splits, halo, dim signals or spot-size spread: one local maximum per drawn signal in
    each nucleus, each within a pixel of its site."""
    dapi, lab = _discs()
    model = {"split_fraction": 0.0, "halo_fraction": 0.0, "dim_fraction": 0.0, "autofluor_photons": 0.0,
             "background_spots_per_um2": 0.0, "photons_sigma": 0.0, "nucleus_eff_sigma": 0.0,
             "fwhm_factor": (1.0, 1.0), "axis_ratio": (1.0, 1.0)}
    for seed in range(3):
        probes, truth, spots = bss.generate_probes(dapi, lab, PX, np.random.default_rng(seed),
                                                   signal_diameter_um=DIAM, model=model, noise=False)
        for sig, img in probes.items():
            im = img.astype(float) - bss.MODEL["offset_adu"] - bss.MODEL["gain_adu"] * bss.MODEL["haze_photons"]
            peak = (im == ndi.maximum_filter(im, size=5)) & (im > 0.5 * im.max())
            py, px_ = np.nonzero(peak)
            for lab_id, row in truth.set_index("label").iterrows():
                inside = lab[py, px_] == lab_id
                assert inside.sum() == row[f"count_{sig}"], (seed, sig, lab_id)
                s = spots[(spots.label == lab_id) & (spots.signal == sig)]
                for y, x in zip(py[inside], px_[inside]):
                    assert np.hypot(s.y - y, s.x - x).min() <= 1.0


def test_prepare_image_sets_nine_micron_nuclei_and_enlarges_coarse_images():
    dapi, lab = _discs(r=10)                       # median equivalent diameter ~21 px
    d = bss.median_diameter_px(lab)
    d2, l2, px, k = bss.prepare_image(dapi, lab, max_pixel_um=0.25)
    assert k == math.ceil(9.0 / d / 0.25)
    assert px == pytest.approx(9.0 / d / k)
    assert l2.shape == (lab.shape[0] * k, lab.shape[1] * k) and d2.shape == l2.shape
    assert bss.median_diameter_px(l2) * px == pytest.approx(9.0, rel=0.02)
    _, _, px1, k1 = bss.prepare_image(dapi, lab, max_pixel_um=0)
    assert k1 == 1 and px1 == pytest.approx(9.0 / d)
