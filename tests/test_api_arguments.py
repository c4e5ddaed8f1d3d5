"""Arguments given in Python: wrong types and nonsense numbers give one-line errors naming the argument, never a
deep traceback or a silent wrong answer (each case found by a reviewer using the API from a notebook)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import fishcount as fc
from fishcount.cutoffs import CutoffRule
from fishcount.errors import InputError, PanelError

RULE = CutoffRule("betainv", 0.95, 200, kmax=3, kmax_at_n="fixed")


@pytest.fixture(scope="module")
def sim():
    return fc.simulate_field("del5q", shape=(128, 128), seed=1)


def _nuclei():
    return pd.DataFrame({"call": ["normal"] * 150 + ["del5q"] * 50, "scorable": True, "patient": "P1", "week": 0})


@pytest.mark.parametrize("kw, match", [
    ({"pixel_size_um": 0}, "pixel_size_um must be a positive number of µm, got 0"),
    ({"pixel_size_um": "a"}, "pixel_size_um must be a number of µm, got 'a'"),
    ({"signal_diameter_um": -0.8}, "signal_diameter_um must be a positive number of µm"),
    ({"labels": np.zeros((10, 64), int)}, r"labels must be integers of the image's shape \(64, 64\), got shape \(10, 64\)"),
    ({"labels": np.zeros((64, 64))}, "labels must be integers"),
    ({"threshold": -1}, "threshold must be a finite number >= 0"),
    ({"threshold": float("nan")}, "threshold must be a finite number >= 0"),
])
def test_detect_signals_arguments(kw, match):
    img = np.random.default_rng(0).normal(100, 5, (64, 64))
    args = {"pixel_size_um": 0.16, "signal_diameter_um": 0.8, **kw}
    with pytest.raises(InputError, match=match):
        fc.detect_signals(img, **args)


def test_detect_signals_image_checks():
    with pytest.raises(InputError, match=r"image holds no finite value"):
        fc.detect_signals(np.full((64, 64), np.nan), pixel_size_um=0.16, signal_diameter_um=0.8)
    with pytest.raises(InputError, match=r"image must be a 2-D numeric array \(Y, X\), got shape \(2, 64, 64\)"):
        fc.detect_signals(np.zeros((2, 64, 64)), pixel_size_um=0.16, signal_diameter_um=0.8)


def test_segment_panel_and_field_arguments(sim):
    with pytest.raises(InputError, match=r"pixel size must be a number of µm, got 'x'"):
        fc.segment_nuclei(sim.image[0], "x")
    assert fc.segment_nuclei(sim.image[0], "0.16").n_nuclei == fc.segment_nuclei(sim.image[0], 0.16).n_nuclei
    with pytest.raises(PanelError, match=r"a panel is a shipped id \(e.g. 'del5q'\), a .toml file or a Panel, not a int"):
        fc.load_panel(5)
    with pytest.raises(InputError, match=r"a list is read as per-channel file paths, but it holds a list; give an image "
                                         r"as a \(C, Y, X\) numpy array"):
        fc.analyze_field(sim.image.tolist(), pixel_size_um=0.16)
    with pytest.raises(InputError, match=r"expected a file path or a list of per-channel file paths, not a int"):
        fc.read_field(7)


def test_channels_as_a_comma_separated_string(sim, tmp_path):
    path = fc.write_simulated_field(sim, tmp_path / "f.ome.tif")["image"]
    f = fc.read_field(path, channels="DAPI, EGR1,D5S23")
    assert f.channel_map == {"DAPI": 0, "EGR1": 1, "D5S23": 2} and f.channel_names == ("DAPI", "EGR1", "D5S23")
    a = fc.analyze_field(sim.image, channels="DAPI,EGR1,D5S23", pixel_size_um=sim.pixel_size_um)
    b = fc.analyze_field(sim.image, pixel_size_um=sim.pixel_size_um)
    assert a.nuclei["call"].tolist() == b.nuclei["call"].tolist()


@pytest.mark.parametrize("counts, match", [
    ({"EGR1": 1.5, "D5S23": 2}, r"count of EGR1 must be a whole number >= 0, got 1.5"),
    ({"EGR1": -1, "D5S23": 2}, r"count of EGR1 must be a whole number >= 0, got -1"),
    ({"EGR1": True, "D5S23": 2}, r"count of EGR1 must be a whole number"),
    ({"EGR1": 2, "D5S23": 2, "EGR2": 5}, r"'EGR2' is not a signal of the panel \(counts of: EGR1, D5S23\)"),
])
def test_panel_counts_are_checked(counts, match):
    p = fc.load_panel("del5q")
    with pytest.raises(InputError, match=match):
        p.call_for(counts)
    with pytest.raises(InputError, match=match):
        p.pattern_string(counts)
    assert p.call_for({"EGR1": np.int64(1), "D5S23": 2.0}) == "del5q"  # whole numbers of any type
    assert p.call_for({"EGR1": 2}) == "atypical"  # a missing key counts as 0 (documented)


def test_statistics_refuse_nonsense_numbers():
    with pytest.raises(ValueError, match="finite counts"):
        fc.clopper_pearson(np.nan, 10)
    with pytest.raises(ValueError, match="whole-number counts"):
        fc.clopper_pearson(5.5, 10)
    assert fc.clopper_pearson(5.0, 10) == fc.clopper_pearson(5, 10)
    for n in (2.5, -5, float("nan"), None):
        with pytest.raises(ValueError, match="the number of nuclei must be a whole number >= 0"):
            fc.cutoff_for_n(RULE, n)
    assert np.isnan(fc.cutoff_for_n(RULE, 0)) and round(fc.cutoff_for_n(RULE, 200.0), 2) == 3.78


@pytest.mark.parametrize("kw, match", [
    ({"confidence": 1.5}, r"confidence must be a level between 0 and 1 \(e.g. 0.95\), got 1.5"),
    ({"confidence": 95}, r"confidence must be a level between 0 and 1"),
    ({"adequate_nuclei": 50, "limited_nuclei": 100}, r"adequacy needs 0 < limited_nuclei <= adequate_nuclei, got 100 and 50"),
    ({"adequate_nuclei": -5}, r"adequacy needs 0 < limited_nuclei <= adequate_nuclei"),
    ({"limited_nuclei": 99.5}, r"limited_nuclei must be a whole number of nuclei, got 99.5"),
])
def test_scoring_options_are_checked(kw, match):
    for f in (fc.score_sample, fc.score_samples):
        with pytest.raises(InputError, match=match):
            f(_nuclei(), "del5q", **kw)


def test_tables_must_be_dataframes():
    with pytest.raises(InputError, match=r"nuclei must be a pandas DataFrame \(a nuclei.csv table\), got a list"):
        fc.score_samples(_nuclei().to_dict("records"), "del5q")
    with pytest.raises(InputError, match=r"expected a pandas DataFrame \(one row per patient\), got a list"):
        fc.cohort_summary([{"patient": "P1", "best_response": "major"}])
    resp = pd.DataFrame({"patient": ["P1", "P2"], "best_response": ["major", "none"]})
    with pytest.raises(InputError, match=r"confidence_level must be a level between 0 and 1 \(e.g. 0.95\), got 95"):
        fc.cohort_summary(resp, confidence_level=95)
