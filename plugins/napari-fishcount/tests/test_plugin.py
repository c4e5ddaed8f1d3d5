"""Headless napari tests of the fishcount plugin (Xvfb via pytest-xvfb; see docs/napari.md).

A small simulated del(5q) field is written and analysed once per test module with the library;
the tests drive the plugin's reader, sample data, Analyse and Review widgets and writer, and check
every number against the library (``fishcount.review`` / ``fishcount.scoring``).
"""
from __future__ import annotations

import shutil
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fishcount as fc
from fishcount import review as rv
from fishcount.errors import InputError
from fishcount.scoring import score_sample

pytestmark = pytest.mark.napari

PLUGIN = "napari-fishcount"
REPO = Path(__file__).resolve().parents[3]
DOC_IMG = REPO / "docs" / "img"
SHAPE = (384, 384)


@pytest.fixture(scope="module")
def sim_field(tmp_path_factory):
    """A simulated field on disk (OME-TIFF, 0.16 µm/px) and its analysed result folder."""
    from fishcount.simulate import simulate_field, write_simulated_field

    root = tmp_path_factory.mktemp("napari_fishcount")
    sim = simulate_field("del5q", shape=SHAPE, seed=3, abnormal_fraction=0.4)
    paths = write_simulated_field(sim, root / "field01.ome.tif")
    result = fc.analyze_field(fc.read_field(paths["image"]))
    folder = fc.write_field_result(result, root / "results")
    return {"image": Path(paths["image"]), "folder": folder, "result": result, "root": root}


@pytest.fixture
def field_dir(sim_field, tmp_path):
    """A fresh copy of the result folder (journals of one test never leak into another)."""
    dst = tmp_path / "field01"
    shutil.copytree(sim_field["folder"], dst)
    return dst


def _open_review(viewer, folder, reviewer="ann"):
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    w.reviewer.setText(reviewer)
    w.open(folder)
    return w


def _label_with(state, cond):
    n = state.nuclei
    return int(n.loc[cond(n), "label"].iloc[0])


# --- manifest, reader, sample ------------------------------------------------------------------
def test_manifest_validates_with_imports():
    """What ``npe2 validate --imports napari-fishcount`` does, in-process (no second interpreter)."""
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution(PLUGIN)  # schema validation happens on load
    pm.validate_imports()  # every python_name imports and exists
    assert pm.name == PLUGIN
    assert {c.id.split(".")[1] for c in pm.contributions.commands} == {
        "get_reader", "write_review", "make_analyse_widget", "make_review_widget", "make_sample"}
    assert [w.display_name for w in pm.contributions.widgets] == ["Analyse", "Review"]


def test_reader_opens_field_with_names_colours_and_scale(make_napari_viewer, sim_field):
    viewer = make_napari_viewer()
    layers = viewer.open(sim_field["image"], plugin=PLUGIN)
    assert [ly.name for ly in layers] == ["DAPI", "EGR1", "D5S23"]
    for ly in layers:
        assert tuple(ly.scale) == pytest.approx((0.16, 0.16))
        assert ly.data.shape == SHAPE
    panel = fc.load_panel("del5q")
    # the probe colormaps end in the panel's fluor colour (EGR1 SpectrumOrange #ff8c00)
    top = viewer.layers["EGR1"].colormap.colors[-1][:3]
    assert top == pytest.approx(np.array([0xFF, 0x8C, 0x00]) / 255, abs=1e-3)
    assert viewer.layers["D5S23"].metadata["fishcount"]["channel"] == "D5S23"
    assert panel.signal("D5S23").color == "#00e000"


def test_reader_claims_only_what_fishcount_reads(tmp_path, sim_field):
    from napari_fishcount._reader import napari_get_reader

    (tmp_path / "notes.txt").write_text("x")
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader(str(tmp_path)) is None  # a folder without results
    assert napari_get_reader([str(sim_field["image"]), str(sim_field["image"])]) is None
    assert napari_get_reader(str(sim_field["image"])) is not None
    assert napari_get_reader(str(sim_field["folder"])) is not None


def test_reader_opens_a_colour_composite_picture(make_napari_viewer, tmp_path):
    """A PNG colour composite (DAPI blue, EGR1 red, D5S23 green) opens as the panel's channels, read by
    display colour; a grey picture and a colour picture that is not a FISH composite are left to napari."""
    from PIL import Image

    from napari_fishcount._reader import napari_get_reader

    sim = fc.simulate_field("del5q", shape=(256, 256), seed=3)
    u8 = [np.clip((c - np.percentile(c, 1)) / (np.percentile(c, 99.5) - np.percentile(c, 1)) * 255, 0, 255)
          for c in sim.image.astype(float)]
    rgb = np.round(np.stack([u8[1], u8[2], u8[0]], -1)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "comp.png")
    Image.fromarray(rgb[..., 2]).save(tmp_path / "grey.png")
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "photo.jpg")
    assert napari_get_reader(str(tmp_path / "grey.png")) is None
    assert napari_get_reader(str(tmp_path / "photo.jpg")) is None
    assert napari_get_reader(str(tmp_path / "comp.png")) is not None
    viewer = make_napari_viewer()
    layers = viewer.open(tmp_path / "comp.png", plugin=PLUGIN)
    assert [ly.name for ly in layers] == ["DAPI", "EGR1", "D5S23"]
    np.testing.assert_array_equal(viewer.layers["EGR1"].data, rgb[..., 0])
    np.testing.assert_array_equal(viewer.layers["DAPI"].data, rgb[..., 2])


def test_result_of_a_per_channel_group_opens_with_its_channels(make_napari_viewer, tmp_path, monkeypatch):
    """A field read from one file per channel: its result folder opens with every channel (field.json
    ``files``), also when the run was started elsewhere (relative paths) and for an older folder whose
    field.json names only the first file (the group is found again beside it)."""
    import json

    import tifffile

    sim = fc.simulate_field("del5q", shape=(128, 128), seed=6)
    study = tmp_path / "study" / "P1" / "w0"
    study.mkdir(parents=True)
    for c, name in enumerate(sim.channel_names):
        tifffile.imwrite(study / f"f1_{name}.tif", sim.image[c])
    monkeypatch.chdir(tmp_path)  # a run started in tmp_path: field.json holds relative paths
    fc.run_batch("study", "run", workers=1, quiet=True, report=False,
                 params={"read": {"pixel_size_um": sim.pixel_size_um}})
    d = tmp_path / "run" / "fields" / "P1" / "w0" / "f1"
    assert len(json.loads((d / "field.json").read_text())["files"]) == 3
    monkeypatch.chdir(Path(__file__).parent)  # opened from elsewhere
    viewer = make_napari_viewer()
    names = [ly.name for ly in viewer.open(d, plugin=PLUGIN)]
    assert names[:3] == ["DAPI", "EGR1", "D5S23"] and "nuclei" in names
    np.testing.assert_array_equal(viewer.layers["D5S23"].data, sim.image[2])
    meta = json.loads((d / "field.json").read_text())
    del meta["files"]  # as written before field.json listed them
    (d / "field.json").write_text(json.dumps(meta))
    viewer.layers.clear()
    assert [ly.name for ly in viewer.open(d, plugin=PLUGIN)][:3] == ["DAPI", "EGR1", "D5S23"]


def test_result_written_outside_the_working_dir_finds_its_images_or_says_why(make_napari_viewer, tmp_path,
                                                                           monkeypatch):
    """A run started in one folder writing its results somewhere else: field.json's relative paths are found
    through its ``working_dir``; when the images are gone, the tables open alone with a warning that says so."""
    import tifffile

    sim = fc.simulate_field("del5q", shape=(128, 128), seed=6)
    start = tmp_path / "bench"
    (start / "study" / "P1" / "w0").mkdir(parents=True)
    for c, name in enumerate(sim.channel_names):
        tifffile.imwrite(start / "study" / "P1" / "w0" / f"f1_{name}.tif", sim.image[c])
    monkeypatch.chdir(start)
    fc.run_batch("study", tmp_path / "elsewhere" / "run", workers=1, quiet=True, report=False,
                 params={"read": {"pixel_size_um": sim.pixel_size_um}})
    d = tmp_path / "elsewhere" / "run" / "fields" / "P1" / "w0" / "f1"
    monkeypatch.chdir(Path(__file__).parent)
    viewer = make_napari_viewer()
    assert [ly.name for ly in viewer.open(d, plugin=PLUGIN)][:3] == ["DAPI", "EGR1", "D5S23"]
    shutil.rmtree(start / "study")
    viewer.layers.clear()
    with pytest.warns(UserWarning, match=r"image is not found .*f1_DAPI\.tif.*nuclei and signals only"):
        names = [ly.name for ly in viewer.open(d, plugin=PLUGIN)]
    assert "DAPI" not in names and "nuclei" in names


def test_result_opens_with_the_channels_mapped_as_analysed(make_napari_viewer, tmp_path):
    """A file without channel names analysed with channels= (here D5S23, EGR1, DAPI): reading it alone would
    map the probes in the panel's order; the result folder opens each channel under the name it was
    analysed as (field.json ``channel_map``), so a reviewer never sees one probe's image under another's
    signals."""
    import tifffile

    sim = fc.simulate_field("del5q", shape=(128, 128), seed=8)
    raw = sim.image[[2, 1, 0]]  # D5S23, EGR1, DAPI, unnamed
    tifffile.imwrite(tmp_path / "plain.tif", raw)
    res = fc.analyze_field(tmp_path / "plain.tif", channels=["D5S23", "EGR1", "DAPI"],
                           pixel_size_um=sim.pixel_size_um)
    d = fc.write_field_result(res, tmp_path / "o")
    assert fc.read_field(tmp_path / "plain.tif").channel_map != res.field.channel_map  # alone: panel order
    viewer = make_napari_viewer()
    viewer.open(d, plugin=PLUGIN)
    for name, i in (("DAPI", 2), ("EGR1", 1), ("D5S23", 0)):
        np.testing.assert_array_equal(viewer.layers[name].data, raw[i])


def test_reader_opens_result_folder_and_study(make_napari_viewer, field_dir, tmp_path):
    viewer = make_napari_viewer()
    viewer.open(field_dir, plugin=PLUGIN)
    names = [ly.name for ly in viewer.layers]
    assert names[:3] == ["DAPI", "EGR1", "D5S23"]  # the source image recorded in field.json
    assert {"nuclei", "EGR1 signals", "D5S23 signals"} <= set(names)
    nuclei = pd.read_csv(field_dir / "nuclei.csv", keep_default_na=False)
    assert set(np.unique(viewer.layers["nuclei"].data)) - {0} == set(nuclei["label"])
    counted = pd.read_csv(field_dir / "spots.csv", keep_default_na=False)
    assert len(viewer.layers["EGR1 signals"].data) == int((counted["counts_as"] == "EGR1").sum())
    # a run folder: fields/<patient>/<timepoint>/<field>/
    run = tmp_path / "run"
    shutil.copytree(field_dir, run / "fields" / "P01" / "week00" / "field01")
    viewer.layers.clear()
    viewer.open(run, plugin=PLUGIN)
    assert viewer.layers["nuclei"].metadata["fishcount"]["study_dir"] == str(run)


def test_result_of_a_multi_position_field_opens_its_own_image(make_napari_viewer, tmp_path):
    """A result folder of one position of a multi-position file shows that position's image."""
    import tifffile

    sims = [fc.simulate_field("del5q", shape=(160, 160), seed=s) for s in (51, 52)]
    src = tmp_path / "plate.ome.tif"
    with tifffile.TiffWriter(src, ome=True) as tw:
        for sim in sims:
            tw.write(sim.image, metadata={"axes": "CYX", "Channel": {"Name": list(sim.channel_names)},
                                          "PhysicalSizeX": sim.pixel_size_um, "PhysicalSizeY": sim.pixel_size_um})
    folder = fc.write_field_result(fc.analyze_field(fc.Position(src, 1)), tmp_path / "out")
    assert folder.name == "plate_s1"
    viewer = make_napari_viewer()
    viewer.open(folder, plugin=PLUGIN)
    np.testing.assert_array_equal(np.asarray(viewer.layers["DAPI"].data), sims[1].image[0].astype(np.float32))
    # the file itself: every position's channels, the first shown; the Analyse widget maps the first
    viewer.layers.clear()
    viewer.open(src, plugin=PLUGIN)
    assert [ly.name for ly in viewer.layers] == [f"{c} [s{k}]" for k in (0, 1) for c in ("DAPI", "EGR1", "D5S23")]
    assert [ly.visible for ly in viewer.layers] == [True] * 3 + [False] * 3
    np.testing.assert_array_equal(np.asarray(viewer.layers["EGR1 [s1]"].data), sims[1].image[1].astype(np.float32))
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Analyse")
    assert w.dapi_box.currentText() == "DAPI [s0]" and w.channel_boxes["D5S23"].currentText() == "D5S23 [s0]"
    assert w.field().stem == "plate_s0"


def test_result_of_one_plane_of_an_ambiguous_stack_opens_that_plane(make_napari_viewer, tmp_path):
    """A plain (Z, C, Y, X) TIFF analysed with --axes ZCYX --z-plane 1: the result folder shows plane 1 (not
    the projection, not an unreadable file), in the layers and in the review gallery."""
    import tifffile
    from click.testing import CliRunner

    from fishcount.cli import main

    sim = fc.simulate_field("del5q", shape=(192, 192), seed=8, z_planes=3)
    plain = tmp_path / "z.tif"
    tifffile.imwrite(plain, sim.image, photometric="minisblack")  # (Z, C, Y, X), no axis names
    r = CliRunner().invoke(main, ["analyze", str(plain), "--axes", "ZCYX", "--z-plane", "1", "--out",
                                  str(tmp_path / "out"), "--pixel-size", str(sim.pixel_size_um), "--no-overlay"])
    assert r.exit_code == 0, r.output
    viewer = make_napari_viewer()
    viewer.open(tmp_path / "out" / "z", plugin=PLUGIN)
    np.testing.assert_array_equal(np.asarray(viewer.layers["DAPI"].data), sim.image[1, 0].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(viewer.layers["EGR1"].data), sim.image[1, 1].astype(np.float32))
    w = _open_review(viewer, tmp_path / "out" / "z")
    gallery = w.gallery()
    assert gallery.ndim == 3 and gallery.shape[2] == 3


def test_result_of_a_shifted_channel_opens_aligned(make_napari_viewer, sim_field, tmp_path):
    """A field analysed with a calibrated channel shift: the result folder opens with that channel's image
    layer moved back by it (where the analysis saw it), and the Review gallery uses it moved back too."""
    result = fc.analyze_field(fc.read_field(sim_field["image"]), channel_shifts_um={"D5S23": (0.16, -0.32)})
    folder = fc.write_field_result(result, tmp_path / "shifted")
    viewer = make_napari_viewer()
    viewer.open(folder, plugin=PLUGIN)
    assert np.allclose(viewer.layers["D5S23"].translate, (-0.16, 0.32))  # µm: the reader's scale is µm
    assert np.allclose(viewer.layers["EGR1"].translate, 0) and np.allclose(viewer.layers["DAPI"].translate, 0)
    viewer.layers.clear()
    r = _open_review(viewer, folder)
    seen = {}
    import fishcount.overlay as ov

    real = ov.render_gallery

    def spy(res, **kw):
        seen["d5"] = np.asarray(res.field.probes["D5S23"])
        return real(res, **kw)

    ov.render_gallery = spy
    try:
        r.show_gallery()
    finally:
        ov.render_gallery = real
    assert r.gallery_image is not None
    expect = fc.correct_channel_shift(fc.read_field(sim_field["image"]).probes["D5S23"], (0.16, -0.32), 0.16)
    assert np.allclose(seen["d5"], expect)


def test_sample_data(make_napari_viewer):
    viewer = make_napari_viewer()
    from napari_fishcount._sample import sample_image_path

    viewer.open_sample(PLUGIN, "del5q_field")
    assert [ly.name for ly in viewer.layers] == ["DAPI", "EGR1", "D5S23"]
    path = sample_image_path()  # sample_images/ of the repository, else simulated at 0.16 µm/px
    px = fc.read_field(path).pixel_size_um if path is not None else 0.16
    assert tuple(viewer.layers["DAPI"].scale) == pytest.approx((px, px))
    assert viewer.layers["DAPI"].metadata["fishcount"]["sample"] is True


# --- analyse ------------------------------------------------------------------------------------
def _analyse_widget(viewer, sim_field, out=None):
    viewer.open(sim_field["image"], plugin=PLUGIN)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Analyse")
    if out is not None:
        w.out_dir.setText(str(out))
    return w


def test_analyse_widget_adds_layers_in_a_worker(make_napari_viewer, qtbot, sim_field, tmp_path):
    viewer = make_napari_viewer()
    w = _analyse_widget(viewer, sim_field, tmp_path / "out")
    assert w.dapi_box.currentText() == "DAPI" and w.channel_boxes["EGR1"].currentText() == "EGR1"
    assert w.pixel_size_um() == pytest.approx(0.16)
    _, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    with qtbot.waitSignal(w.analysed, timeout=60000):
        w.run()
    assert review.folder_edit.text() == str(w.result_dir)  # ready to review what was just analysed
    review.reviewer.setText("ann")
    review.open()
    # analysed from layers: field.json has no image file, so the opened channels stay under the results
    assert [ly.name for ly in viewer.layers][:3] == ["DAPI", "EGR1", "D5S23"]
    assert {"nuclei", "EGR1 signals", "current nucleus"} <= {ly.name for ly in viewer.layers}
    res = w.result
    expected = fc.analyze_field(fc.read_field(sim_field["image"]))
    pd.testing.assert_frame_equal(res.nuclei, expected.nuclei)  # the widget only calls the library
    assert {"nuclei", "EGR1 signals", "D5S23 signals"} <= {ly.name for ly in viewer.layers}
    cmap = viewer.layers["nuclei"].colormap
    bad = int(res.nuclei.loc[~res.nuclei["scorable"], "label"].iloc[0])
    assert cmap.map(bad)[:3] == pytest.approx(np.array([0x7F, 0x7F, 0x7F]) / 255, abs=1e-2)  # greyed
    assert (w.result_dir / "nuclei.csv").is_file()
    assert "nuclei" in w.status.text() and "written to" in w.status.text()


def test_analyse_threshold_override_and_preview(make_napari_viewer, qtbot, sim_field):
    viewer = make_napari_viewer()
    w = _analyse_widget(viewer, sim_field)
    w.threshold_checks["EGR1"].setChecked(True)
    w.threshold_spins["EGR1"].setValue(4.0)
    low, t_low = w.detect_preview("EGR1")
    w.threshold_spins["EGR1"].setValue(40.0)
    high, t_high = w.detect_preview("EGR1")
    assert (t_low, t_high) == (4.0, 40.0) and len(high) < len(low)
    w.live_preview.setChecked(True)  # previews every channel in workers
    qtbot.waitUntil(lambda: "EGR1 preview" in viewer.layers and "D5S23 preview" in viewer.layers, timeout=30000)
    qtbot.waitUntil(lambda: len(viewer.layers["EGR1 preview"].data) == len(high), timeout=30000)
    result, folder = w.analyse()
    assert folder is None and result.thresholds["EGR1"] == 40.0 and result.params["threshold_source"]["EGR1"] == "manual"


def test_analyse_channel_shift_field(make_napari_viewer, sim_field):
    """The calibrated channel shift typed in the widget reaches the analysis; a malformed one is refused."""
    import fishcount as fc

    viewer = make_napari_viewer()
    w = _analyse_widget(viewer, sim_field)
    assert "channel_shifts_um" not in w.params()
    w.channel_shift.setText("D5S23=0,0.2; EGR1=0.1,0")
    assert w.params()["channel_shifts_um"] == {"D5S23": (0.0, 0.2), "EGR1": (0.1, 0.0)}
    result, _ = w.analyse()
    assert result.params["channel_shifts_um"] == {"D5S23": [0.0, 0.2], "EGR1": [0.1, 0.0]}
    # the probe channels are shown where the analysis saw them: moved back by their shift (world units: µm,
    # the reader's scale), the data untouched; the preview markers follow their channel
    data = np.array(viewer.layers["D5S23"].data, copy=True)
    w.show_result(result)
    assert viewer.layers["DAPI"].scale[-1] == pytest.approx(0.16)
    assert np.allclose(viewer.layers["D5S23"].translate[-2:], (0.0, -0.2))
    assert np.allclose(viewer.layers["EGR1"].translate[-2:], (-0.1, 0.0))
    assert np.allclose(viewer.layers["DAPI"].translate, 0) and np.array_equal(viewer.layers["D5S23"].data, data)
    table, th = w.detect_preview("D5S23")
    w._show_preview("D5S23", table, th)
    assert np.allclose(viewer.layers["D5S23 preview"].translate, (0.0, -0.2))
    # analysed again without a shift: back in place
    w.channel_shift.setText("")
    w.show_result(w.analyse()[0])
    assert np.allclose(viewer.layers["D5S23"].translate, 0) and np.allclose(viewer.layers["EGR1"].translate, 0)
    w.channel_shift.setText("D5S23=0.2")
    with pytest.raises(fc.InputError, match="SIGNAL=DY,DX"):
        w.params()
    # a calibrated crosstalk, typed the same way, reaches the analysis and its record
    w.channel_shift.setText("")
    w.crosstalk.setText("SpectrumOrange:SpectrumGreen=0.05; D5S23:EGR1=0.04")
    assert w.params()["channel_crosstalk"] == {"SpectrumOrange->SpectrumGreen": 0.05, "D5S23->EGR1": 0.04}
    result, _ = w.analyse()
    assert result.params["crosstalk"] == {"EGR1->D5S23": 0.05, "D5S23->EGR1": 0.04}
    assert result.params["crosstalk_source"] == "calibrated (channel_crosstalk)"
    w.crosstalk.setText("EGR1=0.05")
    with pytest.raises(fc.InputError, match="SRC:DST=K"):
        w.params()


def test_analyse_segmentation_backend_choice(make_napari_viewer, sim_field, monkeypatch):
    """The backend chosen in the widget segments the field; an uninstalled one is refused with the reason."""
    import importlib.util

    import fishcount as fc
    from fishcount.segment import register_backend, segment_classical

    calls = []

    def spy(dapi, diameter_px, **params):
        calls.append(diameter_px)
        return segment_classical(dapi, diameter_px, **params)

    register_backend("spy-napari-test", spy)
    viewer = make_napari_viewer()
    w = _analyse_widget(viewer, sim_field)
    names = [w.backend_box.itemText(i) for i in range(w.backend_box.count())]
    assert w.backend_box.currentText() == "classical" and {"cellpose", "stardist", "spy-napari-test"} <= set(names)
    assert "backend" not in w.params()
    w.backend_box.setCurrentText("spy-napari-test")
    result, _ = w.analyse()
    assert len(calls) == 1 and result.params["segmentation"]["backend"] == "spy-napari-test"
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == "cellpose" else real_find(m, *a))
    w.backend_box.setCurrentText("cellpose")
    with pytest.raises(fc.FishcountError, match="pip install cellpose"):
        w.params()


def test_analyse_settings_file(make_napari_viewer, sim_field, tmp_path):
    """A laboratory settings file named in the widget reaches the analysis; its lowest automatic threshold
    is shown in its box; a bad file or [segmentation] with another backend is refused with the reason."""
    import fishcount as fc

    viewer = make_napari_viewer()
    w = _analyse_widget(viewer, sim_field)
    lab = tmp_path / "lab.toml"
    lab.write_text("[detection]\nboundary_diameters = 0\nmin_auto_snr = 6\n[qc]\nmin_focus_vs_median = 0.9\n",
                   encoding="utf-8")
    w.settings_file.setText(str(lab))
    w._settings_changed()
    assert w.min_auto_snr.value() == 6.0 and "3 value(s)" in w.status.text()
    assert w.params()["boundary_diameters"] == 0.0 and w.params()["qc"] == {"min_focus_vs_median": 0.9}
    result, _ = w.analyse()
    assert result.params["detection"]["boundary_diameters"] == 0.0
    assert result.params["detection"]["min_auto_snr"] == 6.0
    assert result.params["segmentation"]["qc"]["min_focus_vs_median"] == 0.9
    assert not result.nuclei["exclusion_reason"].str.contains("signal_at_boundary").any()
    # the file's exact value (not the box's rounding), also before the box is refreshed; a file without one
    # brings the default back; a value the user typed wins
    lab.write_text("[detection]\nmin_auto_snr = 5.255\n", encoding="utf-8")
    assert w.params()["min_auto_snr"] == 5.255
    w._settings_changed()
    assert w.params()["min_auto_snr"] == 5.255 and w.min_auto_snr.value() == pytest.approx(5.255, abs=0.006)
    lab.write_text("[qc]\nmin_focus_vs_median = 0.9\n", encoding="utf-8")
    w._settings_changed()
    assert w.params()["min_auto_snr"] == 4.5 and w.min_auto_snr.value() == 4.5
    w.min_auto_snr.setValue(7.0)
    assert w.params()["min_auto_snr"] == 7.0
    lab.write_text("[segmentation]\nworking_diameter_px = 24\n", encoding="utf-8")
    w.backend_box.setCurrentText("stardist")
    with pytest.raises(fc.FishcountError, match="sets classical segmentation parameters"):
        w.params()
    lab.write_text("[qc]\nmin_focus = -1\n", encoding="utf-8")
    w._settings_changed()
    assert "error:" in w.status.text() and "min_focus must be >= 0" in w.status.text()


def test_analyse_error_is_shown(make_napari_viewer, qtbot, sim_field, tmp_path):
    viewer = make_napari_viewer()
    w = _analyse_widget(viewer, sim_field, tmp_path / "out")
    (tmp_path / "out" / "field01").mkdir(parents=True)  # outputs exist and overwrite is off
    w.out_dir.setText(str(tmp_path / "out"))
    worker = w.run()
    qtbot.waitUntil(lambda: w.error is not None, timeout=60000)
    assert "already exist" in w.error and "error:" in w.status.text()
    del worker


# --- review ---------------------------------------------------------------------------------
def test_review_actions_change_the_tally_exactly(make_napari_viewer, field_dir):
    viewer = make_napari_viewer()
    w = _open_review(viewer, field_dir)
    s0 = w.state
    t0 = rv.tally(s0)

    def check(dn_rev, dn_scor, dclone):
        t = rv.tally(w.state)
        sc = score_sample(w.state.nuclei, w.state.panel)  # what samples.csv will say
        assert (t.n_reviewed, t.n_scorable, t.clone_count) == (
            t0.n_reviewed + dn_rev, t0.n_scorable + dn_scor, t0.clone_count + dclone)
        assert (t.clone_pct, t.ci_low_pct, t.ci_high_pct) == pytest.approx((sc.clone_pct, sc.ci_low_pct, sc.ci_high_pct))
        assert f"reviewed {t.n_reviewed}/{t.n_nuclei}" in w.tally_label.text()

    normal = _label_with(s0, lambda n: n["scorable"] & (n["call"] == "normal"))
    w.go_to(normal)
    assert w.confirm()
    check(1, 0, 0)
    assert w.current != normal  # moved on to the next unreviewed nucleus
    w.go_to(normal)
    assert w.set_call("del5q")
    check(1, 0, 1)
    # delete one EGR1 signal of a scorable normal nucleus: 2O2G -> 1O2G (del5q)
    other = _label_with(w.state, lambda n: n["scorable"] & (n["call"] == "normal") & ~n["reviewed"])
    w.go_to(other)
    egr1 = w.state.spots_of(other)
    sid = int(egr1.loc[egr1["counts_as"] == "EGR1", "spot_id"].iloc[0])
    layer = viewer.layers["EGR1 signals"]
    layer.selected_data = {int(np.nonzero(layer.features["spot_id"].to_numpy() == sid)[0][0])}
    assert w.selected_spot_ids() == [sid]
    assert w.delete_selected()
    assert w.state.nucleus(other)["call"] == "del5q"
    check(2, 0, 2)
    assert sid not in set(layer.features["spot_id"])  # the layer follows
    # add it back at the cursor: del5q -> normal again
    y, x = float(egr1.loc[egr1["spot_id"] == sid, "y"].iloc[0]), float(egr1.loc[egr1["spot_id"] == sid, "x"].iloc[0])
    w.signal_box.setCurrentText("EGR1")
    viewer.cursor.position = (0.0, 0.0)  # on the background: never counted in the current nucleus
    assert not w.add_signal_at_cursor() and "is not inside nucleus" in w.last_error
    viewer.cursor.position = (y * 0.16, x * 0.16)
    assert w.add_signal_at_cursor()
    assert w.state.nucleus(other)["call"] == "normal"
    check(2, 0, 1)
    # unscorable with a reason: leaves the denominator
    w.go_to(other)
    assert w.mark_unscorable("out of focus")
    check(2, -1, 1)
    assert w.state.nucleus(other)["exclusion_reason"] == "reviewer: out of focus"
    assert viewer.layers["nuclei"].colormap.map(other)[:3] == pytest.approx(np.array([0x7F] * 3) / 255, abs=1e-2)
    assert w.restore()
    check(2, 0, 1)
    # every edit is already in the journal
    assert len(rv.read_journal(rv.journal_path(field_dir, "ann"))) == len(w.state.edits) == 6
    assert "saved ✓" in w.saved_label.text()


def test_point_tools_on_the_canvas_are_journalled(make_napari_viewer, qtbot, field_dir):
    viewer = make_napari_viewer()
    w = _open_review(viewer, field_dir)
    layer = viewer.layers["D5S23 signals"]
    lab = _label_with(w.state, lambda n: n["scorable"] & (n["call"] == "normal"))
    labels = viewer.layers["nuclei"].data
    ys, xs = np.nonzero(labels == lab)
    y, x = float(ys[len(ys) // 2]), float(xs[len(xs) // 2])
    before = int(w.state.nucleus(lab)["count_D5S23"])
    layer.add(np.array([[y, x]]))  # napari's add-point tool
    assert int(w.state.nucleus(lab)["count_D5S23"]) == before + 1
    assert w.state.edits[-1].action == "add_signal" and w.state.edits[-1].label == lab
    assert w.state.nucleus(lab)["call"] == "gain5p"  # 2O3G
    # outside every nucleus: refused, the point disappears again
    by, bx = (int(v[0]) for v in np.nonzero(labels == 0))
    n_pts = len(layer.data) + 1
    layer.add(np.array([[float(by), float(bx)]]))
    assert "inside a nucleus" in w.last_error
    qtbot.waitUntil(lambda: len(layer.data) == n_pts - 1, timeout=5000)
    # delete the point we added with napari's delete
    new_id = int(w.state.edits[-1].after["spot_id"])
    layer.selected_data = {int(np.nonzero(layer.features["spot_id"].to_numpy() == new_id)[0][0])}
    layer.remove_selected()
    assert w.state.edits[-1].action == "delete_signal" and int(w.state.nucleus(lab)["count_D5S23"]) == before
    # drag (a data change of one point): journalled once the drag has stopped
    i = int(np.nonzero(layer.features["label"].to_numpy() == lab)[0][0])
    sid = int(layer.features["spot_id"].iloc[i])
    data = layer.data.copy()
    data[i] += 1.5
    layer.data = data
    qtbot.waitUntil(lambda: w.state.edits[-1].action == "move_signal", timeout=5000)
    moved = w.state.spots.set_index("spot_id").loc[sid]
    assert (moved["y"], moved["x"]) == pytest.approx(tuple(data[i]))
    assert len(rv.read_journal(rv.journal_path(field_dir, "ann"))) == 3
    # dragging out of the nucleus is refused and undone
    data = layer.data.copy()
    data[i] = [float(by), float(bx)]
    layer.data = data
    qtbot.waitUntil(lambda: "only move within its nucleus" in (w.last_error or ""), timeout=5000)
    qtbot.waitUntil(lambda: tuple(layer.data[i]) == pytest.approx(tuple(moved[["y", "x"]])), timeout=5000)
    assert len(w.state.edits) == 3


def test_navigation_and_shortcuts(make_napari_viewer, field_dir):
    viewer = make_napari_viewer()
    w = _open_review(viewer, field_dir)
    order = list(w.order)
    assert order == sorted(order) and w.current == order[0]
    w.go_next()
    assert w.current == order[1]
    w.go_previous()
    w.go_previous()  # stays at the first
    assert w.current == order[0]
    from app_model.types import KeyBinding

    viewer.keymap[KeyBinding.from_str("c")](viewer)  # the 'c' shortcut confirms
    assert w.current == order[1] and w.state.nucleus(order[0])["reviewed"]
    for lab in order[1:]:
        w.go_to(lab)
        w.confirm()
    assert w.state.nuclei["reviewed"].all() and "every nucleus is reviewed" in w.info.text()


def test_journal_survives_closing_and_reopening(make_napari_viewer, field_dir):
    v1 = make_napari_viewer()
    w = _open_review(v1, field_dir)
    lab = int(w.order[0])
    w.go_to(lab)
    w.set_call("monosomy5")
    w.mark_unscorable("overlapping nuclei")
    w.go_to(int(w.order[2]))
    w.confirm()
    before = w.state
    v1.window.remove_dock_widget("all")
    v1.layers.clear()
    v2 = make_napari_viewer()
    w2 = _open_review(v2, field_dir)
    pd.testing.assert_frame_equal(w2.state.nuclei, before.nuclei)
    pd.testing.assert_frame_equal(w2.state.spots, before.spots)
    assert w2.state.edits == before.edits
    assert "3 edits restored" in w2.saved_label.text()
    # the reviewed state is what the reader shows too
    assert w2.state.nucleus(lab)["exclusion_reason"] == "reviewer: overlapping nuclei"


def test_blind_mode_hides_calls_and_shuffles(make_napari_viewer, field_dir):
    viewer = make_napari_viewer()
    w = _open_review(viewer, field_dir, reviewer="bob")
    w.seed.setValue(11)
    w.blind.setChecked(True)
    labels = w.state.labels
    assert w.order == [int(v) for v in rv.review_order(labels, seed=11)] and w.order != sorted(w.order)
    assert "call" not in w.info.text() and "pattern" not in w.info.text()
    assert "calls hidden" in w.tally_label.text() and "clone" not in w.tally_label.text()
    cmap = viewer.layers["nuclei"].colormap
    colours = {tuple(np.round(cmap.map(int(lab))[:3], 3)) for lab in labels}
    assert len(colours) == 1  # every nucleus the same colour
    w.gallery_btn.click()
    assert "blind mode hides" in (w.last_error or "")
    w.blind.setChecked(False)
    assert "call" in w.info.text()


def test_two_readers_concordance_and_outputs(make_napari_viewer, field_dir):
    viewer = make_napari_viewer()
    a = _open_review(viewer, field_dir, "ann")
    for lab in a.order[:4]:
        a.go_to(lab)
        a.confirm()
    a.go_to(a.order[0])
    a.set_call("del5q" if a.state.nucleus(a.order[0])["call"] != "del5q" else "normal")
    viewer.window.remove_dock_widget("all")
    b = _open_review(viewer, field_dir, "bob")
    for lab in b.order[:4]:
        b.go_to(lab)
        b.confirm()
    b.reviewer.setText("bob")
    b._refresh_compare()
    assert [b.compare_box.itemText(i) for i in range(b.compare_box.count())] == ["ann"]
    c = b.compare("ann")
    expect = rv.concordance(b.state, rv.open_review(field_dir, "ann"), reader_a="bob", reader_b="ann")
    assert (c.n_common, c.n_agree) == (expect.n_common, expect.n_agree) == (4, 3)
    assert "3/4 nuclei agree" in b.concordance_label.text()
    pn, ps = b.save_tables()
    assert pn.name == "nuclei.reviewed.bob.csv" and ps.is_file()
    # writer contribution: the reviewed nuclei table of the labels layer
    out = viewer.layers["nuclei"].save(str(field_dir / "export.csv"), plugin=PLUGIN)
    assert out == [str(field_dir / "export.csv")]
    exported = pd.read_csv(field_dir / "export.csv", keep_default_na=False)
    assert int(exported["reviewed"].astype(str).eq("True").sum()) == 4


def test_review_a_run_folder_and_recompute_samples(make_napari_viewer, field_dir, tmp_path):
    run = tmp_path / "run"
    key = "P01/week16/field01"
    shutil.copytree(field_dir, run / "fields" / key)
    pooled = pd.read_csv(field_dir / "nuclei.csv", keep_default_na=False)
    for col, val in (("field", key), ("week", 16), ("timepoint", "week16"), ("patient", "P01"), ("panel", "del5q")):
        pooled.insert(0, col, val)
    pooled.to_csv(run / "nuclei.csv", index=False)
    viewer = make_napari_viewer()
    w = _open_review(viewer, run)
    assert w.study == run and not w.field_box.isHidden() and w.field_box.currentText() == key
    assert w.folder == run / "fields" / key
    normal = _label_with(w.state, lambda n: n["scorable"] & (n["call"] == "normal"))
    w.go_to(normal)
    w.set_call("del5q")
    assert w.recompute_btn.isEnabled()
    assert w.recompute_samples() == run / "samples.reviewed.ann.csv", w.last_error
    samples = pd.read_csv(run / "samples.reviewed.ann.csv")
    t = rv.tally(w.state)
    assert (samples["nuclei_abnormal"].item(), samples["nuclei_scored"].item()) == (t.clone_count, t.n_scorable)
    assert (run / "response.reviewed.ann.csv").is_file() and "response.reviewed.ann.csv" in w.saved_label.text()


def test_writer_refuses_layers_not_under_review(tmp_path):
    from napari_fishcount._writer import write_reviewed_calls

    with pytest.raises(InputError, match="not a fishcount field under review"):
        write_reviewed_calls(str(tmp_path / "x.csv"), np.zeros((4, 4), int), {"metadata": {}})


def test_review_errors_are_reported_not_raised(make_napari_viewer, field_dir, tmp_path):
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    w.reviewer.setText("no spaces allowed")
    w.open(field_dir)  # shown in the widget, never raised into the viewer
    assert "must be 1-64 letters" in w.last_error and "cannot open:" in w.saved_label.text()
    w.reviewer.setText("ann")
    w.open(tmp_path)
    assert "not a fishcount field result folder" in w.last_error and "cannot open:" in w.saved_label.text()
    assert w.state is None
    w.open(field_dir)
    assert not w.set_call("bogus") and "not a call of panel" in w.last_error and "not done:" in w.saved_label.text()
    assert not w.move_selected_to_cursor() and "exactly one signal" in w.last_error
    # a journal that cannot be written: the edit is dropped, the reviewer is told
    jp = rv.journal_path(field_dir, "ann")
    jp.write_text('{"v": 1}')  # no final newline
    n_before = len(w.state.edits)
    assert not w.confirm()
    assert len(w.state.edits) == n_before and "not saved" in w.saved_label.text()


# --- screenshots ----------------------------------------------------------------------------
def _save(viewer, qtbot, name, tmp_path):
    """Full-window screenshot; into docs/img only with FISHCOUNT_UPDATE_DOCS_IMG=1 (a test run leaves the
    source tree untouched)."""
    qtbot.wait(300)
    out = DOC_IMG if os.environ.get("FISHCOUNT_UPDATE_DOCS_IMG") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    img = viewer.screenshot(str(out / name), canvas_only=False)
    assert img[..., :3].std() > 5, f"{name} is blank"
    return img


def test_screenshots(make_napari_viewer, qtbot, sim_field, field_dir, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    w = _analyse_widget(viewer, sim_field)
    w.show_result(sim_field["result"], None)
    viewer.layers["DAPI"].contrast_limits = viewer.layers["DAPI"].contrast_limits  # keep percentile limits
    viewer.reset_view()
    canvas = viewer.screenshot(canvas_only=True)
    assert canvas[..., :3].std() > 5
    _save(viewer, qtbot, "napari_analyse.png", tmp_path)
    viewer.window.remove_dock_widget("all")
    viewer.layers.clear()
    r = _open_review(viewer, field_dir)
    for lab in r.order[:3]:
        r.go_to(lab)
        r.confirm()
    r.show_gallery()
    assert r.gallery_image is not None and r.gallery_image.shape[2] == 3
    _save(viewer, qtbot, "napari_review.png", tmp_path)


def _run_of_two_fields(field_dir, tmp_path) -> Path:
    run = tmp_path / "run"
    for name in ("field01", "field02"):
        shutil.copytree(field_dir, run / "fields" / "P01" / "week00" / name)
    return run


def test_review_of_a_run_survives_a_refused_field_and_a_drag_across_a_switch(make_napari_viewer, qtbot, field_dir,
                                                                            tmp_path):
    """Picking a field whose journal is refused leaves the field under review (and the box) as they were; a drag
    not yet journalled when the field changes is journalled in the field it was made in."""
    run = _run_of_two_fields(field_dir, tmp_path)
    (run / "fields" / "P01" / "week00" / "field02" / "review.ann.jsonl").write_text("not json\n")
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    w.reviewer.setText("ann")
    w.open(run)
    first = w.folder
    w.field_box.setCurrentIndex(1)
    w.field_box.activated.emit(1)  # field02: refused
    assert w.folder == first and w.field_box.currentText() == "P01/week00/field01"
    assert "cannot open:" in w.saved_label.text() and "not valid JSON" in w.last_error
    (run / "fields" / "P01" / "week00" / "field02" / "review.ann.jsonl").unlink()
    sig = f"{w.state.panel.signal_names[0]} signals"
    ly = viewer.layers[sig]
    sid = int(ly.features["spot_id"].iloc[0])
    d = ly.data.copy()
    d[0] = d[0] + 0.3  # a small drag within its nucleus, not yet journalled (300 ms timer)
    ly.data = d
    assert w._pending_moves
    w.field_box.setCurrentIndex(1)
    w.field_box.activated.emit(1)
    assert w.folder.name == "field02" and not w._pending_moves
    j1 = rv.read_journal(rv.journal_path(first, "ann"))
    assert [(e.action, e.after.get("spot_id")) for e in j1] == [("move_signal", sid)]
    assert not rv.journal_path(w.folder, "ann").exists() or not rv.read_journal(rv.journal_path(w.folder, "ann"))


def test_review_keys_work_whatever_layer_is_selected_and_the_name_is_fixed_when_opened(make_napari_viewer,
                                                                                     field_dir):
    """c/n/b/u/x are the review's keys with a Labels or an Image layer selected too (napari's layer keymaps
    come first); the reviewer's name is the one the field was opened with until Open is pressed again."""
    from napari.utils.action_manager import action_manager  # noqa: F401 (napari's key dispatch)

    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    w.reviewer.setText("ann")
    w.open(field_dir)
    def bound(layer, key):
        return next((f for k, f in layer.keymap.items() if str(k).lower() == key), None)

    for ly in viewer.layers:
        assert all(bound(ly, k) for k in "cnbux"), ly.name
    viewer.layers.selection.active = viewer.layers["nuclei"]
    n0 = len(w.state.edits)
    bound(viewer.layers["nuclei"], "c")(viewer.layers["nuclei"])  # what napari runs for "c" on this layer
    assert len(w.state.edits) == n0 + 1 and w.state.edits[-1].action == "confirm"
    w.reviewer.setText("bob")
    assert "reviewing as ann; press Open to review as bob" in w.saved_label.text()
    assert w.confirm() and w.state.edits[-1].reviewer == "ann"
    assert not rv.journal_path(field_dir, "bob").exists()


def test_review_blind_mode_hides_automated_exclusions_and_an_empty_field_says_so(make_napari_viewer, field_dir,
                                                                                tmp_path):
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    w.reviewer.setText("ann")
    w.blind.setChecked(True)
    w.open(field_dir)
    auto = w.state.nuclei[~w.state.nuclei["scorable"]]
    assert len(auto)
    w.go_to(int(auto["label"].iloc[0]))
    assert "unscorable" not in w.info.text() and "signals:" in w.info.text()
    w.mark_unscorable("overlapping")
    assert "unscorable (reviewer: overlapping)" in w.info.text()  # the reader's own mark stays visible
    empty = tmp_path / "empty"
    shutil.copytree(field_dir, empty)
    (empty / "review.ann.jsonl").unlink()  # the journal of the edit above belongs to the nuclei removed here
    for name in ("nuclei.csv", "spots.csv"):
        df = pd.read_csv(empty / name, keep_default_na=False)
        df.iloc[:0].to_csv(empty / name, index=False)
    import tifffile

    tifffile.imwrite(empty / "labels.tif", np.zeros_like(tifffile.imread(field_dir / "labels.tif")))
    w.blind.setChecked(False)
    w.open(empty)
    assert w.last_error is None and w.state is not None and w.current is None, w.last_error
    for act in (w.confirm, lambda: w.set_call("normal"), lambda: w.mark_unscorable("x"), w.restore,
                w.add_signal_at_cursor):
        assert not act() and w.last_error == "no nucleus in this field"


def test_review_refuses_edits_once_the_field_is_analysed_again_or_moved(make_napari_viewer, field_dir, tmp_path):
    """A field re-analysed while open: the next edit is refused (it would be replayed onto other nuclei); a field
    folder moved away: the edit is refused, not journalled into a new empty folder."""
    import os
    import time

    viewer = make_napari_viewer()
    w = _open_review(viewer, field_dir)
    lab = int(w.state.nuclei["label"].iloc[0])
    w.go_to(lab)
    assert w.confirm()
    time.sleep(0.01)
    nuc = field_dir / "nuclei.csv"
    nuc.write_text(nuc.read_text())  # analysed again (same content, new file)
    os.utime(nuc, None)
    w.go_to(lab)
    assert not w.confirm() and "analysed again since it was opened" in w.last_error
    w.open(field_dir)  # reopened: editing goes on
    w.go_to(lab)
    assert w.set_call("del5q")
    moved = tmp_path / "archived"
    field_dir.rename(moved)
    assert not w.confirm() and "the field folder is gone" in w.last_error and not field_dir.exists()
