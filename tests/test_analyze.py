"""analyze_field end to end on simulated fields, the output contract, pooled thresholds, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner

import fishcount as fc
from fishcount.analyze import OUTPUT_VERSION, analyze_field, estimate_thresholds, write_field_result
from fishcount.calls import nuclei_columns
from fishcount.cli import main
from fishcount.errors import FishcountError, InputError
from fishcount.io import field_from_arrays
from fishcount.overlay import render_gallery, render_overlay
from fishcount.segment import Segmentation
from fishcount.spots import SPOT_COLUMNS


def _field(panel="del5q", seed=1, shape=(512, 512), **kw):
    sim = fc.simulate_field(panel, shape=shape, seed=seed, **kw)
    d = {n: sim.image[i] for i, n in enumerate(sim.channel_names)}
    fld = field_from_arrays(d.pop("DAPI"), d, sim.pixel_size_um, panel=panel, name=f"sim{seed}")
    return sim, fld


def _true_segmentation(sim) -> Segmentation:
    from skimage.measure import regionprops_table

    t = regionprops_table(sim.labels, properties=("label", "centroid", "area"))
    tr = sim.truth.set_index("label")
    ok = ~tr.loc[t["label"], "border"].to_numpy() & ~tr.loc[t["label"], "out_of_focus"].to_numpy()
    qc = pd.DataFrame({"label": t["label"], "centroid_y": t["centroid-0"], "centroid_x": t["centroid-1"],
                       "area_um2": t["area"] * sim.pixel_size_um**2, "scorable": ok,
                       "exclusion_reason": np.where(ok, "", "border_or_focus")})
    return Segmentation(labels=sim.labels, qc=qc, pixel_size_um=sim.pixel_size_um, diameter_px=50.0,
                        diameter_source="truth")


def _match(true: np.ndarray, pred: np.ndarray) -> dict[int, int]:
    """Predicted label -> true label with IoU >= 0.5."""
    m = (true > 0) & (pred > 0)
    u, c = np.unique(np.stack([pred[m], true[m]], 1), axis=0, return_counts=True)
    pa, ta = np.bincount(pred.ravel()), np.bincount(true.ravel())
    iou = c / (pa[u[:, 0]] + ta[u[:, 1]] - c)
    return {int(p): int(t) for (p, t), ok in zip(u, iou >= 0.5) if ok}


def _accuracy(result, sim, mapping=None):
    nuc = result.nuclei.copy()
    nuc["true"] = nuc.label.map(mapping) if mapping is not None else nuc.label
    sc = nuc[nuc.scorable & nuc.true.notna()]
    keys = [c for c in nuc.columns if c.startswith("count_")]
    truth = sim.truth.set_index("label").loc[sc.true.astype(int), keys].to_numpy()
    return (sc[keys].to_numpy() == truth).all(axis=1), len(sc)


# --- accuracy floors ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("panel", ["del5q", "bcr_abl1"])
def test_detection_accuracy_with_true_nuclei(panel):
    """Signal counting alone (true nucleus masks): exact count accuracy on scorable nuclei."""
    oks = []
    for seed in (1, 2):
        sim, fld = _field(panel, seed)
        res = analyze_field(fld, panel, segmentation=_true_segmentation(sim))
        ok, n = _accuracy(res, sim)
        assert n >= 0.85 * _true_segmentation(sim).qc.scorable.sum()
        oks.append(ok)
    assert np.concatenate(oks).mean() >= 0.95


@pytest.mark.slow
def test_end_to_end_accuracy_with_own_segmentation():
    oks, n_true = [], 0
    for seed in (3, 4):
        sim, fld = _field("del5q", seed)
        res = analyze_field(fld)
        ok, n = _accuracy(res, sim, _match(sim.labels, res.labels))
        oks.append(ok)
        n_true += int((~sim.truth.border).sum())
        assert set(res.thresholds) == {"EGR1", "D5S23"}
    ok = np.concatenate(oks)
    assert ok.mean() >= 0.9
    assert len(ok) >= 0.6 * n_true


# --- inputs -------------------------------------------------------------------------------------
def test_array_and_dict_inputs_give_the_same_result():
    sim, fld = _field(shape=(256, 256), seed=7)
    a = analyze_field(fld)
    b = analyze_field(sim.image, pixel_size_um=sim.pixel_size_um)
    c = analyze_field({"DAPI": sim.image[0], "EGR1": sim.image[1], "D5S23": sim.image[2]},
                      pixel_size_um=sim.pixel_size_um)
    for r in (b, c):
        pd.testing.assert_frame_equal(a.nuclei, r.nuclei)
        pd.testing.assert_frame_equal(a.spots, r.spots)


def test_manual_thresholds_are_used_and_recorded():
    sim, fld = _field(shape=(256, 256), seed=7)
    lo = analyze_field(fld, thresholds={"EGR1": 5.0})
    hi = analyze_field(fld, thresholds={"EGR1": 500.0})
    assert lo.thresholds["EGR1"] == 5.0 and lo.params["threshold_source"]["EGR1"] == "manual"
    assert lo.params["threshold_source"]["D5S23"].startswith("automatic")
    assert (hi.spots.signal == "EGR1").sum() == 0
    assert (hi.nuclei.exclusion_reason.str.contains("no_signal_EGR1")).all()


@pytest.mark.parametrize("bad,match", [({"XYZ": 5}, "unknown signal"), ({"EGR1": -1}, "positive"),
                                       ({"EGR1": "a"}, "number")])
def test_bad_thresholds_raise(bad, match):
    _, fld = _field(shape=(128, 128), seed=7, n_nuclei=2)
    with pytest.raises(InputError, match=match):
        analyze_field(fld, thresholds=bad)


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(InputError, match="C, Y, X"):
        analyze_field(np.zeros((2, 64, 64)), pixel_size_um=0.1)
    with pytest.raises(InputError, match="DAPI"):
        analyze_field({"EGR1": np.ones((64, 64)), "D5S23": np.ones((64, 64))})
    with pytest.raises(InputError, match="dim_band"):
        _, fld = _field(shape=(128, 128), seed=7, n_nuclei=2)
        analyze_field(fld, dim_band=0.5)
    with pytest.raises(FishcountError):
        analyze_field("/nonexistent/field.tif")


def test_segmentation_of_wrong_shape_raises():
    sim, fld = _field(shape=(128, 128), seed=7, n_nuclei=2)
    seg = Segmentation(labels=np.zeros((64, 64), np.int32), qc=pd.DataFrame({"label": []}), pixel_size_um=0.16,
                       diameter_px=50.0, diameter_source="user")
    with pytest.raises(InputError, match="shape"):
        analyze_field(fld, segmentation=seg)


def test_missing_pixel_size_is_inferred_from_nuclei_and_recorded():
    sim, _ = _field(shape=(256, 256), seed=7)
    res = analyze_field(sim.image)
    assert "inferred" in res.params["pixel_size_source"]
    assert 0.05 < res.params["pixel_size_um"] < 0.5


def test_pooled_thresholds():
    fields = [_field(shape=(256, 256), seed=s)[1] for s in (8, 9)]
    th = estimate_thresholds(fields)
    assert set(th) == {"EGR1", "D5S23"} and all(v >= 4.5 for v in th.values())
    res = analyze_field(fields[0], thresholds=th)
    assert res.thresholds == th
    with pytest.raises(InputError, match="at least one"):
        estimate_thresholds([])


# --- outputs ------------------------------------------------------------------------------------
def test_write_field_result_contract(tmp_path):
    sim, fld = _field(shape=(256, 256), seed=7)
    res = analyze_field(fld)
    out = write_field_result(res, tmp_path)
    assert out == tmp_path / "sim7"
    assert sorted(p.name for p in out.iterdir()) == ["field.json", "labels.tif", "nuclei.csv", "overlay.png", "spots.csv"]
    nuc = pd.read_csv(out / "nuclei.csv", keep_default_na=False)
    assert list(nuc.columns[: len(nuclei_columns(res.panel))]) == nuclei_columns(res.panel)
    assert len(nuc) == len(res.nuclei) and set(nuc.scorable.astype(str)) <= {"True", "False"}
    sp = pd.read_csv(out / "spots.csv", keep_default_na=False)
    assert list(sp.columns) == list(SPOT_COLUMNS) and len(sp) == len(res.spots)
    lab = tifffile.imread(out / "labels.tif")
    assert lab.shape == (256, 256) and lab.dtype == np.uint16
    assert np.array_equal(lab, res.labels)
    meta = json.loads((out / "field.json").read_text())
    assert meta["output_version"] == OUTPUT_VERSION and meta["thresholds"] == res.thresholds
    assert meta["n_nuclei"] == len(nuc) and meta["panel"]["id"] == "del5q"
    assert meta["files"] == []  # data given as arrays: no file read
    # every counted signal is in a nucleus and counts match the nuclei table
    counted = sp[sp.counts_as == "EGR1"].groupby("label").size()
    got = nuc.set_index("label").count_EGR1
    assert (got.reindex(counted.index) == counted).all()
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers


def test_write_refuses_to_overwrite_and_can_replace(tmp_path):
    sim, fld = _field(shape=(128, 128), seed=7, n_nuclei=3)
    res = analyze_field(fld)
    write_field_result(res, tmp_path, overlay=False)
    with pytest.raises(FishcountError, match="already exist"):
        write_field_result(res, tmp_path)
    out = write_field_result(res, tmp_path, overwrite=True)
    assert (out / "overlay.png").exists()
    assert not list(tmp_path.glob(".*"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(FishcountError, match="not a folder"):
        write_field_result(res, tmp_path / "file")


def test_overlay_and_gallery_images():
    sim, fld = _field(shape=(256, 256), seed=7)
    res = analyze_field(fld)
    ov = render_overlay(res)
    assert ov.dtype == np.uint8 and ov.shape[1] == 256 and ov.shape[0] > 256 and ov.shape[2] == 3
    assert render_overlay(res, legend=False).shape == (256, 256, 3)
    gal = render_gallery(res, per_call=4)
    assert gal.dtype == np.uint8 and gal.ndim == 3 and gal.shape[0] >= 24


def _whole_field_picture(res, *, overlay: bool) -> np.ndarray:
    """Reference: the overlay (or the gallery's source picture) rendered on the whole field at once in
    float64, the way it was before tiling; uint8 (Y, X, 3). Both grey unscorable nuclei and mark signals
    alike (shape per probe, dim outside nuclei, fused as a double ring); the overlay adds its scale bar."""
    from skimage.segmentation import find_boundaries

    from fishcount.overlay import (_DAPI_COLOR, _FUSION_COLOR, _SIGNAL_SHAPES, _outline_colors, _rgb, _ring_pixels,
                                   _scale_bar, _scorable)

    def norm(img, lo_pct, hi_pct):
        step = max(1, int(np.sqrt(img.size / 250_000)))
        lo, hi = np.percentile(img[::step, ::step], [lo_pct, hi_pct])
        hi = hi if hi > lo else lo + 1.0
        return np.clip((img.astype(np.float32) - lo) / (hi - lo), 0, 1)

    def rings(rgb, ys, xs, color, radius, kind="circle"):
        ry, rx = _ring_pixels(ys, xs, radius, rgb.shape, kind)
        rgb[ry, rx] = color

    f, labels, nuc, sp = res.field, res.labels, res.nuclei, res.spots
    rgb = norm(f.dapi, 1.0, 99.8)[..., None] * (0.6 * _rgb(_DAPI_COLOR))
    for s in res.panel.signals:
        rgb = rgb + norm(f.probes[s.name], 50.0, 99.95)[..., None] * _rgb(s.color)
    rgb = np.clip(rgb, 0, 1)
    grey = np.isin(labels, nuc.loc[~_scorable(nuc), "label"].to_numpy())
    rgb[grey] = rgb[grey].mean(axis=1, keepdims=True) * 0.6
    edge = find_boundaries(labels, mode="inner")
    rgb[edge] = _outline_colors(labels, nuc, res.panel)[labels[edge]]
    r = max(3.0, 2.5 * float(res.params["signal_sigma_px"]))
    counted = sp["counts_as"].astype(str).to_numpy()
    for k, s in enumerate(res.panel.signals):
        kind = _SIGNAL_SHAPES[k % len(_SIGNAL_SHAPES)]
        m = (counted == s.name) & (sp["signal"].to_numpy() == s.name)
        rings(rgb, sp["y"].to_numpy()[m], sp["x"].to_numpy()[m], _rgb(s.color), r, kind)
        out = (sp["signal"].to_numpy() == s.name) & (sp["label"].to_numpy() == 0)
        rings(rgb, sp["y"].to_numpy()[out], sp["x"].to_numpy()[out], 0.5 * _rgb(s.color), r, kind)
    fm = counted == "fusion"
    for rr in (r + 1.5, r + 3.0):
        rings(rgb, sp["y"].to_numpy()[fm], sp["x"].to_numpy()[fm], _rgb(_FUSION_COLOR), rr)
    img = (rgb * 255 + 0.5).astype(np.uint8)
    if overlay and res.params.get("pixel_size_um"):
        _scale_bar(img, float(res.params["pixel_size_um"]))
    return img


def test_overlay_rendered_in_tiles_equals_whole_field_rendering():
    sim, fld = _field(shape=(200, 256), seed=7)
    res = analyze_field(fld)
    assert (~res.nuclei["scorable"]).any() and (res.spots["label"] == 0).any()  # greyed nuclei, dim rings
    ref = _whole_field_picture(res, overlay=True)
    for rows in (1, 7, 64, 1000, None):
        assert np.array_equal(render_overlay(res, legend=False, tile_rows=rows), ref), rows
    assert np.array_equal(render_overlay(res)[:200], ref)


def test_gallery_crops_equal_crops_of_the_whole_field_picture():
    """Each crop is rendered on its own; it must equal the same crop of the whole-field picture, also
    for nuclei at the field's edge (the crop is black outside the field)."""
    sim, fld = _field(shape=(200, 256), seed=7)
    res = analyze_field(fld)
    crop, half, label_w = 41, 20, 120
    padded = np.pad(_whole_field_picture(res, overlay=False), ((half, half), (half, half), (0, 0)))
    gal = render_gallery(res, per_call=10_000, crop_px=crop)
    nuc, scor = res.nuclei, res.nuclei["scorable"].to_numpy(bool)
    present = set(nuc.loc[scor, "call"])
    groups = [nuc[scor & (nuc["call"] == c).to_numpy()] for c in res.panel.call_names if c in present]
    groups.append(nuc[~scor])
    n_edge = 0
    for k, sub in enumerate(groups):
        for i, (cy, cx) in enumerate(zip(sub["centroid_y"], sub["centroid_x"])):
            y0, x0 = int(round(cy)), int(round(cx))
            want = padded[y0:y0 + crop, x0:x0 + crop]
            c0 = label_w + i * (crop + 2)
            got = gal[k * (crop + 2):k * (crop + 2) + want.shape[0], c0:c0 + want.shape[1]]
            assert np.array_equal(got, want), (k, i)
            n_edge += min(y0, x0) < half or y0 > 200 - half or x0 > 256 - half
    assert n_edge > 0


def test_fusion_panel_end_to_end_has_fusion_column():
    sim, fld = _field("bcr_abl1", seed=2, shape=(256, 256))
    res = analyze_field(fld, "bcr_abl1")
    assert "count_fusion" in res.nuclei.columns
    assert (res.spots.counts_as == "fusion").sum() == res.nuclei.count_fusion.sum()


# --- CLI ----------------------------------------------------------------------------------------
def test_cli_analyze(tmp_path):
    sim = fc.simulate_field("del5q", shape=(256, 256), seed=7)
    img = tmp_path / "in" / "f1.ome.tif"
    fc.write_simulated_field(sim, img)
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "f1" / "nuclei.csv").exists()
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "already exist" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o2"), "--threshold", "EGR1:5"])
    assert r.exit_code == 2 and "SIGNAL=VALUE" in r.output
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o3"), "--threshold", "EGR1=7",
                                  "--no-overlay"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o3" / "f1" / "field.json").read_text())["thresholds"]["EGR1"] == 7.0
    assert not (tmp_path / "o3" / "f1" / "overlay.png").exists()
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o4"),
                                  "--channel-shift", "D5S23=0.1,-0.2", "--no-overlay"])
    assert r.exit_code == 0, r.output
    params = json.loads((tmp_path / "o4" / "f1" / "field.json").read_text())["params"]
    assert params["channel_shifts_um"] == {"D5S23": [0.1, -0.2]}
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o5"), "--channel-shift", "D5S23=0.1"])
    assert r.exit_code == 2 and "SIGNAL=DY,DX" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o6"), "--channel-shift", "ABL1=0,0.1"])
    assert r.exit_code == 2 and "'ABL1' is neither a signal nor a fluor" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o7"), "--channel-shift",
                                  "SpectrumGreen=0,0.2", "--no-overlay"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o7" / "f1" / "field.json").read_text())["params"]["channel_shifts_um"] == {
        "D5S23": [0.0, 0.2]}


def test_cli_analyze_and_segment_read_per_channel_files_and_refuse_two_fields_of_one_stem(tmp_path):
    """`analyze` and `segment` group per-channel files (given one by one or as their folder) into one field,
    as `info` and `run` do; two inputs that would be written to the same OUT/<stem> are refused before any
    work, naming both (one would silently replace the other, even with --overwrite)."""
    sim = fc.simulate_field("del5q", shape=(192, 192), seed=7)
    pc = tmp_path / "pc"
    pc.mkdir()
    for c, name in enumerate(sim.channel_names):
        tifffile.imwrite(pc / f"f1_{name}.tif", sim.image[c])
    files = [str(pc / f"f1_{n}.tif") for n in ("EGR1", "DAPI", "D5S23")]
    r = CliRunner().invoke(main, ["analyze", *files, "--out", str(tmp_path / "o1"), "--pixel-size",
                                  str(sim.pixel_size_um), "--no-overlay"])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "o1" / "f1" / "field.json").read_text())
    assert meta["channel_map"] == {"DAPI": 0, "EGR1": 1, "D5S23": 2} and len(meta["files"]) == 3
    assert meta["working_dir"] == str(Path.cwd())
    r = CliRunner().invoke(main, ["analyze", str(pc), "--out", str(tmp_path / "o2"), "--pixel-size",
                                  str(sim.pixel_size_um), "--no-overlay"])
    assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "o1" / "f1" / "nuclei.csv"),
                                  pd.read_csv(tmp_path / "o2" / "f1" / "nuclei.csv"))
    r = CliRunner().invoke(main, ["segment", str(pc), "--out", str(tmp_path / "s1"), "--pixel-size",
                                  str(sim.pixel_size_um)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s1" / "f1" / "labels.tif").exists()
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        fc.write_simulated_field(sim, tmp_path / sub / "field01.ome.tif")
    pair = [str(tmp_path / "a" / "field01.ome.tif"), str(tmp_path / "b" / "field01.ome.tif")]
    for cmd in ("analyze", "segment"):
        r = CliRunner().invoke(main, [cmd, *pair, "--out", str(tmp_path / "dup"), "--overwrite"])
        assert r.exit_code == 2, r.output
        assert r.stderr.strip() == (f"fishcount: error: {tmp_path / 'dup' / 'field01'}: two inputs would be written "
                                    f"here, {pair[0]} and {pair[1]}; rename one or analyse them into different "
                                    f"--out folders")
        assert not (tmp_path / "dup").exists()


def test_cli_info_channels_name_per_channel_files_in_the_order_given(tmp_path):
    """--channels names per-channel files in the order given on the command line, not in the order
    fishcount would sort the group (DAPI first)."""
    sim = fc.simulate_field("del5q", shape=(128, 128), seed=7)
    for c in range(3):
        tifffile.imwrite(tmp_path / f"f1_{sim.channel_names[c]}.tif", sim.image[c])
    order = ["EGR1", "DAPI", "D5S23"]
    r = CliRunner().invoke(main, ["info", *[str(tmp_path / f"f1_{n}.tif") for n in order], "--channels",
                                  ",".join(order)])
    assert r.exit_code == 0, r.output
    assert "DAPI       <- channel 1 'DAPI'" in r.stdout and "EGR1       <- channel 0 'EGR1'" in r.stdout


def test_cli_refused_file_operation_is_one_line(tmp_path, monkeypatch):
    """A file or folder the system refuses (permissions, a full disk) ends any command with one line that
    names it, not a traceback."""
    import fishcount.analyze as an

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "o" / "f1"))

    monkeypatch.setattr(an, "write_field_result", refuse)
    sim = fc.simulate_field("del5q", shape=(128, 128), seed=7)
    fc.write_simulated_field(sim, tmp_path / "f1.ome.tif")
    r = CliRunner().invoke(main, ["analyze", str(tmp_path / "f1.ome.tif"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.stderr.strip() == f"fishcount: error: {tmp_path / 'o' / 'f1'}: Permission denied"


def test_cli_analyze_segmentation_options(tmp_path, monkeypatch):
    """--backend / --nucleus-diameter / --diameter-px reach segment_nuclei; a backend that cannot run
    fails before any output is written."""
    import importlib.util

    from fishcount.segment import register_backend

    sim = fc.simulate_field("del5q", shape=(256, 256), seed=7)
    img = tmp_path / "in" / "f1.ome.tif"
    fc.write_simulated_field(sim, img)
    seen = []

    def oracle(dapi, diameter_px, **params):
        seen.append(diameter_px)
        return sim.labels

    register_backend("oracle-cli-test", oracle)
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o1"), "--no-overlay",
                                  "--backend", "oracle-cli-test", "--nucleus-diameter", "8"])
    assert r.exit_code == 0, r.output
    assert seen == [pytest.approx(8.0 / sim.pixel_size_um)]
    seg = json.loads((tmp_path / "o1" / "f1" / "field.json").read_text())["params"]["segmentation"]
    assert seg["backend"] == "oracle-cli-test" and seg["nucleus_diameter_um"] == 8.0
    labels = tifffile.imread(tmp_path / "o1" / "f1" / "labels.tif")
    assert labels.max() == sim.labels.max() and np.array_equal(labels > 0, sim.labels > 0)
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o2"), "--no-overlay",
                                  "--backend", "oracle-cli-test", "--diameter-px", "33"])
    assert r.exit_code == 0, r.output
    assert seen[-1] == pytest.approx(33.0)
    # without the options nothing is passed on: the recorded backend is the default
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o3"), "--no-overlay"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o3" / "f1" / "field.json").read_text())["params"]["segmentation"]["backend"] \
        == "classical"
    # refused before any work: an unknown backend, a missing package, a diameter that is not positive
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o4"), "--backend", "nope"])
    assert r.exit_code == 2 and "fishcount: error: backend 'nope': unknown segmentation backend" in r.output
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == "cellpose" else real_find(m, *a))
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o5"), "--backend", "cellpose"])
    assert r.exit_code == 2 and "pip install cellpose" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o6"), "--nucleus-diameter", "0"])
    assert r.exit_code == 2 and "--nucleus-diameter" in r.output
    assert not any((tmp_path / f"o{k}").exists() for k in (4, 5, 6))


def test_pixel_size_that_contradicts_the_nuclei_warns(tmp_path):
    """Nuclei measuring far from 9 µm at the given pixel size (a pixel size without the objective's
    magnification, or of another objective) give a field warning, printed by the CLI; a right or inferred
    pixel size gives none."""
    sim = fc.simulate_field("del5q", shape=(512, 512), seed=5)
    arrays = {n: sim.image[i] for i, n in enumerate(sim.channel_names)}
    assert analyze_field(arrays, pixel_size_um=sim.pixel_size_um).params["warnings"] == []
    big = analyze_field(arrays, pixel_size_um=2.5 * sim.pixel_size_um).params["warnings"]
    small = analyze_field(arrays, pixel_size_um=sim.pixel_size_um / 2.5).params["warnings"]
    import re

    def ratio(msgs):
        assert len(msgs) == 1 and "check the pixel size (user)" in msgs[0], msgs
        return float(re.search(r"([0-9.]+)x the 9 µm expected", msgs[0]).group(1))

    assert 1.6 < ratio(big) < 3.5 and 0.2 < ratio(small) < 0.55
    assert analyze_field(arrays).params["warnings"] == []  # no pixel size: inferred from the nuclei
    img = tmp_path / "f.ome.tif"
    fc.write_simulated_field(sim, img)
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o"), "--no-overlay",
                                  "--pixel-size", str(2.5 * sim.pixel_size_um)])
    assert r.exit_code == 0, r.output
    assert "  warning: the nuclei measure" in r.output
    assert json.loads((tmp_path / "o" / "f" / "field.json").read_text())["params"]["warnings"] == big
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o2"), "--no-overlay"])
    assert r.exit_code == 0 and "warning" not in r.output


def _control_fields(tmp_path, panel, seeds, **sim_kw) -> list:
    """Simulated 384² control fields written as OME-TIFF (``simulate_field`` keywords), their paths."""
    paths = []
    for seed in seeds:
        sim = fc.simulate_field(panel, shape=(384, 384), seed=seed, **sim_kw)
        paths.append(tmp_path / f"c{seed}.ome.tif")
        fc.write_simulated_field(sim, paths[-1])
    return paths


def test_cli_channel_shift_measures_the_shift(tmp_path):
    """`fishcount channel-shift` on break-apart control fields whose 5' channel is 0.5 µm off prints the
    shift of the other channel against it and the option that corrects it; a panel without co-localising
    probes, or too few pairs, is a one-line error."""
    paths = _control_fields(tmp_path, "kmt2a", (1, 2), channel_shift_um=0.5)
    r = CliRunner().invoke(main, ["channel-shift", *map(str, paths), "--panel", "kmt2a"])
    assert r.exit_code == 0, r.output
    line = r.output.splitlines()[0]
    assert line.startswith("KMT2A_3 (SpectrumOrange) relative to KMT2A_5 (SpectrumGreen):")
    dx = float(line.split("dx = ")[1].split(" µm")[0])
    assert dx == pytest.approx(-0.5, abs=0.08)
    assert "--channel-shift KMT2A_3=" in r.output and "--channel-shift SpectrumOrange=" in r.output
    # a folder of control fields, as `analyze` takes it
    r2 = CliRunner().invoke(main, ["channel-shift", str(paths[0].parent), "--panel", "kmt2a"])
    assert r2.exit_code == 0 and r2.output.splitlines()[0] == line, r2.output
    r = CliRunner().invoke(main, ["channel-shift", str(paths[0]), "--panel", "del5q"])
    assert r.exit_code == 2 and "no co-localising probe pair" in r.output
    r = CliRunner().invoke(main, ["channel-shift", str(paths[0]), "--panel", "kmt2a", "--max-distance", "0.01"])
    assert r.exit_code == 2 and "pairs within" in r.output and "Traceback" not in r.output


def test_cli_crosstalk_measures_and_analyze_corrects(tmp_path):
    """`fishcount crosstalk` on deletion-panel control fields with 8 % crosstalk prints the fractions and the
    options (by fluor and by signal); a co-localising panel is refused; `analyze --crosstalk` records the
    calibration; a malformed entry is a one-line error."""
    paths = _control_fields(tmp_path, "del5q", (41, 42), channel_crosstalk=0.08)
    r = CliRunner().invoke(main, ["crosstalk", *map(str, paths), "--panel", "del5q"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("D5S23 (SpectrumGreen) seen through the EGR1 (SpectrumOrange) filter:")
    assert float(lines[0].split("filter: ")[1].split()[0]) == pytest.approx(0.08, abs=0.025)
    assert "--crosstalk SpectrumOrange:SpectrumGreen=" in r.output and "--crosstalk EGR1:D5S23=" in r.output
    r2 = CliRunner().invoke(main, ["crosstalk", str(paths[0].parent), "--panel", "del5q"])  # a folder, as analyze
    assert r2.exit_code == 0 and r2.output.splitlines()[0] == lines[0], r2.output
    r = CliRunner().invoke(main, ["crosstalk", str(paths[0]), "--panel", "kmt2a"])
    assert r.exit_code == 2 and "co-localise" in r.output
    ba = fc.simulate_field("kmt2a", shape=(256, 256), seed=3, channel_crosstalk=0.08)
    fc.write_simulated_field(ba, tmp_path / "ba.ome.tif")
    r = CliRunner().invoke(main, ["analyze", str(tmp_path / "ba.ome.tif"), "--panel", "kmt2a", "--out",
                                  str(tmp_path / "out"), "--no-overlay",
                                  "--crosstalk", "SpectrumOrange:SpectrumGreen=0.08",
                                  "--crosstalk", "SpectrumGreen:SpectrumOrange=0.08"])
    assert r.exit_code == 0, r.output
    params = json.loads((tmp_path / "out" / "ba" / "field.json").read_text())["params"]
    assert params["crosstalk"] == {"KMT2A_3->KMT2A_5": 0.08, "KMT2A_5->KMT2A_3": 0.08}
    assert params["crosstalk_source"] == "calibrated (channel_crosstalk)"
    r = CliRunner().invoke(main, ["analyze", str(tmp_path / "ba.ome.tif"), "--panel", "kmt2a", "--out",
                                  str(tmp_path / "out2"), "--crosstalk", "SpectrumOrange=0.08"])
    assert r.exit_code == 2 and "expected SRC:DST=K" in r.output and "Traceback" not in r.output


def test_overlay_from_tables_read_back_from_csv(tmp_path):
    """The napari gallery rebuilds a FieldResult from the CSV files: text booleans must still work."""
    from dataclasses import replace

    sim, fld = _field(shape=(256, 256), seed=7)
    res = analyze_field(fld)
    out = write_field_result(res, tmp_path, overlay=False)
    nuc = pd.read_csv(out / "nuclei.csv", keep_default_na=False, dtype={"scorable": str}).drop(columns=["area_px"])
    back = replace(res, nuclei=nuc, spots=pd.read_csv(out / "spots.csv", keep_default_na=False))
    a, b = render_overlay(back), render_overlay(res)
    assert a.shape == b.shape and (a != b).any(axis=2).mean() < 0.001  # positions round-trip to 7 digits
    assert render_gallery(back).shape[1] > 0


def test_field_without_nuclei_gives_empty_tables(tmp_path):
    img = np.random.default_rng(0).normal(100, 5, (3, 128, 128)).astype(np.float32)
    res = analyze_field(img, pixel_size_um=0.16)
    assert len(res.nuclei) == 0 and list(res.nuclei.columns[:10]) == nuclei_columns(res.panel)
    assert (res.spots.counts_as == "").all()
    out = write_field_result(res, tmp_path)
    assert len(pd.read_csv(out / "nuclei.csv")) == 0


def test_docstring_examples():
    import doctest

    import fishcount.calls
    import fishcount.spots

    for mod in (fishcount.spots, fishcount.calls):
        r = doctest.testmod(mod)
        assert r.failed == 0 and r.attempted > 0


def test_boundary_rule_can_be_switched_off():
    """Two touching nuclei, one EGR1 signal right at their shared boundary."""
    shape = (64, 96)
    labels = np.zeros(shape, np.int32)
    labels[12:52, 8:48] = 1
    labels[12:52, 48:88] = 2
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    px = 0.1
    sigma = 0.8 / px / 2.3548

    def spots(points):
        return sum(600 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2)) for y, x in points)

    rng = np.random.default_rng(0)
    egr1 = 100 + spots([(20, 20), (40, 47)] + [(25, 70), (42, 78)]) + rng.normal(0, 3, shape)
    d5 = 100 + spots([(20, 35), (40, 25), (20, 60), (35, 62)]) + rng.normal(0, 3, shape)
    dapi = np.where(labels > 0, 1000.0, 100.0)
    qc = pd.DataFrame({"label": [1, 2], "centroid_y": [31.5, 31.5], "centroid_x": [27.5, 67.5],
                       "area_um2": [16.0, 16.0], "scorable": [True, True], "exclusion_reason": ["", ""]})
    seg = Segmentation(labels=labels, qc=qc, pixel_size_um=px, diameter_px=40.0, diameter_source="user")
    arrays = {"DAPI": dapi, "EGR1": egr1, "D5S23": d5}
    on = analyze_field(arrays, pixel_size_um=px, segmentation=seg)
    off = analyze_field(arrays, pixel_size_um=px, segmentation=seg,
                        boundary_diameters=0)
    # the signal at (40, 47) is nucleus 1's, one pixel from nucleus 2: it may be either's, so neither
    # count is trusted (nucleus 2 may be missing it)
    assert on.nuclei.exclusion_reason.tolist() == ["signal_at_boundary", "signal_at_boundary"]
    assert off.nuclei.exclusion_reason.tolist() == ["", ""]
    assert off.nuclei.pattern.tolist() == ["2O2G", "2O2G"]


def test_field_of_another_panel_raises():
    _, fld = _field(shape=(128, 128), seed=7, n_nuclei=2)  # a del5q field
    with pytest.raises(InputError, match="no channel for signal ABL1"):
        analyze_field(fld, "bcr_abl1")


def test_cli_channels_and_pixel_size(tmp_path):
    sim = fc.simulate_field("del5q", shape=(256, 256), seed=7)
    img = tmp_path / "f2.tif"
    tifffile.imwrite(img, sim.image[[0, 2, 1]])  # plain TIFF, no metadata, channels DAPI, D5S23, EGR1
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "out"), "--channels",
                                  "DAPI,D5S23,EGR1", "--pixel-size", str(sim.pixel_size_um)])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "out" / "f2" / "field.json").read_text())
    assert meta["params"]["pixel_size_um"] == pytest.approx(sim.pixel_size_um)
    ref = analyze_field(sim.image, pixel_size_um=sim.pixel_size_um)
    nuc = pd.read_csv(tmp_path / "out" / "f2" / "nuclei.csv")
    assert nuc.count_EGR1.tolist() == ref.nuclei.count_EGR1.tolist()


def test_cli_axes_reads_an_ambiguous_plain_z_stack_in_every_command(tmp_path):
    """3 z-planes of 3 channels in a plain TIFF: every reading command refuses to guess, and reads it
    with --axes ZCYX as the OME-TIFF of the same field."""
    sim = fc.simulate_field("del5q", shape=(256, 256), seed=7, z_planes=3)
    plain = tmp_path / "study" / "P01" / "baseline" / "z.tif"
    plain.parent.mkdir(parents=True)
    tifffile.imwrite(plain, sim.image, photometric="minisblack")  # (Z, C, Y, X), no axis names
    ome = tmp_path / "z.ome.tif"
    fc.write_simulated_field(sim, ome)
    px = ["--pixel-size", str(sim.pixel_size_um)]
    r = CliRunner().invoke(main, ["analyze", str(plain), "--out", str(tmp_path / "no"), *px])
    assert r.exit_code == 2 and "declare them with --axes" in r.output and r.output.count("\n") == 1, r.output
    r = CliRunner().invoke(main, ["info", str(plain), "--axes", "ZCYX"])
    assert r.exit_code == 0 and "ZCYX" in r.output and "given by the user" in r.output, r.output
    r = CliRunner().invoke(main, ["analyze", str(plain), "--axes", "ZCYX", "--out", str(tmp_path / "a"), *px])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "a" / "z" / "field.json").read_text())["params"]["read"]["axes"] == "ZCYX"
    ref = analyze_field(ome, pixel_size_um=sim.pixel_size_um)
    nuc = pd.read_csv(tmp_path / "a" / "z" / "nuclei.csv")
    assert nuc.count_EGR1.tolist() == ref.nuclei.count_EGR1.tolist() and len(nuc) == len(ref.nuclei)
    r = CliRunner().invoke(main, ["segment", str(plain), "--axes", "zcyx", "--out", str(tmp_path / "s"), *px])
    assert r.exit_code == 0, r.output
    assert tifffile.imread(tmp_path / "s" / "z" / "labels.tif").max() == len(ref.nuclei)
    r = CliRunner().invoke(main, ["segment", str(plain), "--axes", "CYX", "--out", str(tmp_path / "s2")])
    assert r.exit_code == 2 and "--axes CYX has 3 letter(s)" in r.output, r.output
    r = CliRunner().invoke(main, ["run", str(tmp_path / "study"), "--axes", "ZCYX", "--out", str(tmp_path / "run"),
                                  *px, "--workers", "1", "--no-report", "-q"])
    assert r.exit_code == 0, r.output
    run_nuc = pd.read_csv(next((tmp_path / "run" / "fields").rglob("nuclei.csv")))
    assert run_nuc.count_EGR1.tolist() == ref.nuclei.count_EGR1.tolist()


def test_cli_analyze_an_rgb_composite_png(tmp_path):
    """A colour composite exported as PNG (EGR1 red, D5S23 green, DAPI blue), mapped with --channels:
    the same counts as the analysis of its three 8-bit planes."""
    from PIL import Image

    sim = fc.simulate_field("del5q", shape=(256, 256), seed=7)
    top = np.percentile(sim.image, 99.9, axis=(1, 2))[:, None, None]
    u8 = np.clip(255.0 * sim.image.astype(np.float64) / top, 0, 255).astype(np.uint8)
    Image.fromarray(np.stack([u8[1], u8[2], u8[0]], -1)).save(tmp_path / "composite.png")
    r = CliRunner().invoke(main, ["analyze", str(tmp_path / "composite.png"), "--channels", "EGR1,D5S23,DAPI",
                                  "--pixel-size", str(sim.pixel_size_um), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    nuc = pd.read_csv(tmp_path / "out" / "composite" / "nuclei.csv")
    ref = analyze_field({"DAPI": u8[0], "EGR1": u8[1], "D5S23": u8[2]}, pixel_size_um=sim.pixel_size_um)
    assert len(nuc) == len(ref.nuclei) > 5
    assert nuc.count_EGR1.tolist() == ref.nuclei.count_EGR1.tolist()
    assert nuc.count_D5S23.tolist() == ref.nuclei.count_D5S23.tolist()


def test_z_stack_detected_in_3d(tmp_path):
    sim = fc.simulate_field("del5q", shape=(384, 384), seed=2, z_planes=5)
    path = tmp_path / "z.ome.tif"
    fc.write_simulated_field(sim, path)
    fld = fc.read_field(path, z_mode="keep")
    seg = _true_segmentation(sim)
    res = analyze_field(fld, segmentation=seg, z_step_um=sim.z_step_um)
    assert "z" in res.spots.columns and res.spots.z.between(0, 4).all()
    assert res.params["signal_size"]["measured_ratio"] is None  # 3-D detection: the size is not measured
    ok, n = _accuracy(res, sim)
    assert n >= 5 and ok.mean() >= 0.9
    flat = analyze_field(fld, segmentation=seg)  # default: the maximum projection
    assert "z" not in flat.spots.columns
    assert flat.params["signal_size"]["source"] == "panel"  # measured on the projection, panel-sized
    with pytest.raises(InputError, match="--z-step: the z step must be 0"):
        analyze_field(fld, segmentation=seg, z_step_um=-1)


def test_hex_colours_parsed_without_matplotlib_match_matplotlib():
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from matplotlib.colors import to_rgb

    from fishcount.overlay import _rgb

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(st.text("0123456789abcdefABCDEF", min_size=6, max_size=6))
    def check(h):
        assert np.array_equal(_rgb("#" + h), np.asarray(to_rgb("#" + h), np.float32))

    check()
    assert np.array_equal(_rgb("magenta"), [1, 0, 1]) and np.array_equal(_rgb("no such colour"), [1, 1, 1])


# --- 3-D detection from the command line (issue 4) ---------------------------------------------------
@pytest.fixture(scope="module")
def zstack_dir(tmp_path_factory):
    """One simulated 5-plane z-stack and one single-plane field written by `fishcount simulate`."""
    d = tmp_path_factory.mktemp("zstacks")
    r = CliRunner().invoke(main, ["simulate", "--out", str(d), "--shape", "320,320", "--z-planes", "5",
                                  "--n-nuclei", "8", "--seed", "4", "--prefix", "zfield"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["simulate", "--out", str(d), "--shape", "256,256", "--n-nuclei", "5",
                                  "--prefix", "flat"])
    assert r.exit_code == 0, r.output
    return d


def test_cli_analyze_z_step_detects_in_3d(zstack_dir, tmp_path):
    img = zstack_dir / "zfield01.ome.tif"
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(out), "--z-step", "0.4", "--no-overlay"])
    assert r.exit_code == 0, r.output
    spots = pd.read_csv(out / "zfield01" / "spots.csv")
    assert "z" in spots.columns and len(spots) > 0 and spots.z.between(0, 4).all()
    meta = json.loads((out / "zfield01" / "field.json").read_text())
    assert meta["params"]["detection"]["z_step_um"] == pytest.approx(0.4)
    # the same as the Python API on the field read with its z-stack kept
    ref = analyze_field(fc.read_field(img, z_mode="keep"), z_step_um=0.4)
    assert len(spots) == len(ref.spots)
    assert np.allclose(spots[["y", "x", "z"]].to_numpy(), ref.spots[["y", "x", "z"]].to_numpy(), atol=1e-4)
    nuc = pd.read_csv(out / "zfield01" / "nuclei.csv")
    assert nuc.count_EGR1.tolist() == ref.nuclei.count_EGR1.tolist()
    # a path with z_step_um is read with its z-stack kept (not silently projected)
    assert "z" in analyze_field(img, z_step_um=0.4).spots.columns
    # without --z-step: the maximum projection, as before
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "proj"), "--no-overlay"])
    assert r.exit_code == 0, r.output
    assert "z" not in pd.read_csv(tmp_path / "proj" / "zfield01" / "spots.csv").columns
    # --z-plane: one plane, 2-D detection
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "plane"), "--z-plane", "2",
                                  "--no-overlay"])
    assert r.exit_code == 0, r.output
    plane = pd.read_csv(tmp_path / "plane" / "zfield01" / "spots.csv")
    one = analyze_field(fc.read_field(img, z_mode="plane", z_plane=2))
    assert "z" not in plane.columns and len(plane) == len(one.spots)
    # field.json says how the image was read (the napari plugin reads that plane again)
    read = json.loads((tmp_path / "plane" / "zfield01" / "field.json").read_text())["params"]["read"]
    step = fc.read_field(img).z_step_um  # the file's PhysicalSizeZ
    assert step and read == {"z_projection": "plane", "z_plane": 2, "axes": None, "z_step_file_um": step}
    proj = json.loads((tmp_path / "proj" / "zfield01" / "field.json").read_text())["params"]["read"]
    assert proj == {"z_projection": "max", "z_plane": None, "axes": None, "z_step_file_um": step}
    three = analyze_field(img, z_step_um=step)
    assert three.params["read"]["z_projection"] == "3-D" and not any("z step" in w for w in three.params["warnings"])
    # a z step the file contradicts (typed for another stack, or in the wrong unit) is warned about
    other = analyze_field(img, z_step_um=2 * step).params["warnings"]
    assert any(f"but the file says its planes are {step:.3g} µm apart" in w for w in other), other


def test_cli_analyze_z_step_with_pooled_thresholds_and_overlay(zstack_dir, tmp_path):
    img = zstack_dir / "zfield01.ome.tif"
    img2 = tmp_path / "zcopy.ome.tif"
    img2.write_bytes(img.read_bytes())
    r = CliRunner().invoke(main, ["analyze", str(img), str(img2), "--out", str(tmp_path / "o"), "--z-step", "0.4",
                                  "--pool-thresholds"])
    assert r.exit_code == 0, r.output
    assert "pooled thresholds" in r.output and (tmp_path / "o" / "zfield01" / "overlay.png").exists()
    pooled = estimate_thresholds([img, img2], z_step_um=0.4)
    meta = json.loads((tmp_path / "o" / "zfield01" / "field.json").read_text())
    assert meta["thresholds"] == pytest.approx(pooled)


@pytest.mark.parametrize("args, message", [
    (["--z-step", "0.4", "--z-plane", "1"], "--z-step: cannot be combined with --z-plane"),
    (["--z-step", "0"], "Invalid value for '--z-step'"),
    (["--z-step", "-0.4"], "Invalid value for '--z-step'"),
    (["--z-plane", "9"], "zfield01.ome.tif"),
])
def test_cli_analyze_z_option_errors(zstack_dir, tmp_path, args, message):
    r = CliRunner().invoke(main, ["analyze", str(zstack_dir / "zfield01.ome.tif"), "--out", str(tmp_path / "o"),
                                  *args])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o" / "zfield01").exists()


def test_cli_analyze_z_step_on_single_plane_file_is_one_line_error(zstack_dir, tmp_path):
    img = zstack_dir / "flat01.ome.tif"
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "o"), "--z-step", "0.4"])
    assert r.exit_code == 2
    line = r.output.strip()
    assert "\n" not in line and "flat01.ome.tif" in line and "single z-plane" in line
    assert not (tmp_path / "o" / "flat01").exists()


def test_z_options_errors_in_python():
    sim, fld = _field(shape=(128, 128), n_nuclei=2)
    with pytest.raises(InputError, match="single z-plane"):
        analyze_field(fld, z_step_um=0.4)  # a 2-D field
    with pytest.raises(InputError, match="applies when reading a file"):
        analyze_field(fld, z_plane=0)
    with pytest.raises(InputError, match="cannot be combined"):
        analyze_field("any.ome.tif", z_step_um=0.4, z_plane=0)
    with pytest.raises(InputError, match="single z-plane"):
        estimate_thresholds([fld], z_step_um=0.4)


def test_cli_run_z_step_passes_3d_detection_to_every_field(zstack_dir, tmp_path):
    study = tmp_path / "study" / "P01" / "baseline"
    study.mkdir(parents=True)
    (study / "zfield01.ome.tif").write_bytes((zstack_dir / "zfield01.ome.tif").read_bytes())
    r = CliRunner().invoke(main, ["run", str(tmp_path / "study"), "--out", str(tmp_path / "run"), "--z-step", "0.4",
                                  "--workers", "1", "--no-report", "-q"])
    assert r.exit_code == 0, r.output
    spots = list((tmp_path / "run" / "fields").rglob("spots.csv"))
    assert len(spots) == 1 and "z" in pd.read_csv(spots[0]).columns
    r = CliRunner().invoke(main, ["run", str(tmp_path / "study"), "--out", str(tmp_path / "run2"), "--workers", "1",
                                  "--no-report", "-q"])
    assert r.exit_code == 0, r.output
    assert "z" not in pd.read_csv(next((tmp_path / "run2" / "fields").rglob("spots.csv"))).columns


# --- signal size check --------------------------------------------------------------------------
@pytest.mark.slow
def test_signals_smaller_than_the_panel_says_are_measured_and_counted_right():
    """Signals half the panel's diameter: the size check detects them at their own size (and scales the
    split distance), which counts them right where the panel's size loses some."""
    import dataclasses

    panel = fc.load_panel("del5q")
    small = dataclasses.replace(panel, signal_diameter_um=0.5 * panel.signal_diameter_um)
    on, off = [], []
    for seed in (1, 2, 3):
        sim = fc.simulate_field(small, shape=(512, 512), seed=seed)
        d = {n: sim.image[i] for i, n in enumerate(sim.channel_names)}
        fld = field_from_arrays(d.pop("DAPI"), d, sim.pixel_size_um, panel=panel, name=f"small{seed}")
        seg = _true_segmentation(sim)
        res = analyze_field(fld, panel, segmentation=seg)
        rec = res.params["signal_size"]
        assert rec["source"] == "measured" and 0.45 <= rec["measured_ratio"] <= 0.7
        assert rec["used_diameter_um"] == pytest.approx(0.8 * rec["measured_ratio"])
        assert res.params["signal_sigma_px"] < 0.7 * fc.spot_sigma_px(0.8, sim.pixel_size_um)
        on.append(_accuracy(res, sim)[0])
        ref = analyze_field(fld, panel, segmentation=seg, signal_size_tolerance=-1)
        assert ref.params["signal_size"]["source"] == "panel (size check off)"
        off.append(_accuracy(ref, sim)[0])
    acc_on, acc_off = np.concatenate(on).mean(), np.concatenate(off).mean()
    assert acc_on >= 0.95 and acc_on > acc_off


def test_signals_of_the_panels_size_keep_the_panels_size():
    sim, fld = _field("del5q", 1)
    res = analyze_field(fld, "del5q", segmentation=_true_segmentation(sim))
    rec = res.params["signal_size"]
    assert rec["source"] == "panel" and rec["used_diameter_um"] == 0.8
    assert 0.95 <= rec["measured_ratio"] <= 1.3  # the simulator's signals: ~1.1 (defocus and size spread)
    assert set(rec["per_channel_ratio"]) == {"EGR1", "D5S23"}
    json.dumps(res.params["signal_size"])  # recorded in the outputs as it is


def test_probe_saturation_share_known_answer():
    """``_probe_saturation``: the share of counted signals (inside a nucleus, counted) whose brightest pixel
    within one pixel of the centre reaches the full scale; uncounted and outside signals do not count."""
    from types import SimpleNamespace

    from fishcount.analyze import _probe_saturation

    pan = fc.load_panel("del5q")
    egr1 = np.zeros((20, 20), np.float32)
    egr1[5, 6] = 255  # one pixel off the first signal's centre: saturated
    egr1[15, 15] = 255  # under an uncounted signal
    fld = SimpleNamespace(saturation_value=255.0, probes={"EGR1": egr1, "D5S23": np.zeros((20, 20), np.float32)})
    spots = pd.DataFrame({"label": [1, 1, 0, 2, 1], "signal": ["EGR1", "EGR1", "EGR1", "EGR1", "D5S23"],
                          "y": [5.2, 10.0, 5.0, 15.0, 3.0], "x": [5.4, 10.0, 6.0, 15.0, 3.0],
                          "counts_as": ["EGR1", "EGR1", "EGR1", "", "D5S23"]})
    shares, warnings = _probe_saturation(fld, spots, pan)
    assert shares == {"EGR1": 0.5, "D5S23": 0.0} and warnings == []  # 2 counted EGR1 signals: too few to warn
    many = pd.concat([spots.iloc[:2]] * 6, ignore_index=True)
    shares, warnings = _probe_saturation(fld, many, pan)
    assert shares["EGR1"] == 0.5 and len(warnings) == 1
    assert warnings[0].startswith("EGR1: 50% of its 12 counted signals reach the image's full scale (255)")
    assert _probe_saturation(SimpleNamespace(saturation_value=None, probes={}), spots, pan) == ({}, [])


def test_saturated_probe_export_is_warned_not_the_camera_image():
    """A contrast-stretched 8-bit export saturates most signals (~85 %): the field is analysed with a warning
    per probe and ``params["probe_saturation"]``; the 16-bit image of the same field has none."""
    sim = fc.simulate_field("del5q", shape=(384, 384), seed=300)

    def stretched(a):
        lo, hi = np.percentile(a, [1.0, 99.5])
        return np.clip(np.round((a - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)

    raw = analyze_field(field_from_arrays(sim.image[0], {"EGR1": sim.image[1], "D5S23": sim.image[2]},
                                          sim.pixel_size_um, panel="del5q", name="raw"))
    assert raw.params["probe_saturation"] == {"EGR1": 0.0, "D5S23": 0.0} and raw.params["warnings"] == []
    exp = analyze_field(field_from_arrays(stretched(sim.image[0]), {"EGR1": stretched(sim.image[1]),
                                          "D5S23": stretched(sim.image[2])}, sim.pixel_size_um, panel="del5q",
                                          name="export"))
    assert all(v > 0.5 for v in exp.params["probe_saturation"].values())
    assert [w.split(":")[0] for w in exp.params["warnings"]] == ["EGR1", "D5S23"]
    assert all("reach the image's full scale (255)" in w for w in exp.params["warnings"])


def test_field_json_lists_every_file_read(tmp_path):
    """field.json ``files``: the one file read, or each channel's file of a per-channel group (in the
    group's order), so that the field can be read again as it was (napari's result folders do)."""
    sim = fc.simulate_field("del5q", shape=(160, 160), seed=2)
    for c, name in enumerate(sim.channel_names):
        tifffile.imwrite(tmp_path / f"g_{name}.tif", sim.image[c])
    group = fc.find_fields(tmp_path)
    res = analyze_field(group[0], pixel_size_um=sim.pixel_size_um)
    assert list(res.field.files) == [str(p) for p in group[0]]
    meta = json.loads((write_field_result(res, tmp_path / "o") / "field.json").read_text())
    assert meta["files"] == [str(tmp_path / f"g_{n}.tif") for n in ("DAPI", "EGR1", "D5S23")]
    assert meta["source"] == meta["files"][0]
    one = tmp_path / "one" / "f.ome.tif"
    fc.write_simulated_field(sim, one)
    res1 = analyze_field(one)
    assert json.loads((write_field_result(res1, tmp_path / "o1") / "field.json").read_text())["files"] == [str(one)]


def test_display_mixing_known_answer():
    """``display_mixing``: a red plane copied into green at 0.55 (orange display) reads 0.55 from the red
    signals that stand apart, even when most red signals have a green one on them (co-localised probes);
    nothing copied reads ~0; the weaker direction is read with the stronger taken out."""
    from fishcount.spots import display_mixing

    rng = np.random.default_rng(0)
    red = np.zeros((200, 200), np.float32)
    green = np.zeros((200, 200), np.float32)
    yy, xx = np.mgrid[:200, :200]
    for k, (cy, cx) in enumerate(rng.uniform(10, 190, (60, 2))):
        spot = 200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
        red += spot
        if k % 10:  # 9 of 10 red signals have a green signal on them (fusions / intact break-apart loci)
            green += 0.8 * np.exp(-((yy - cy - 1) ** 2 + (xx - cx) ** 2) / 8.0) * 200
    for cy, cx in rng.uniform(10, 190, (20, 2)):  # green signals of their own
        green += 200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    noise = rng.normal(0, 1.0, (2, 200, 200)).astype(np.float32)
    pure = display_mixing({"R": red + 10 + noise[0], "G": green + 10 + noise[1]})
    assert pure[("R", "G")] < 0.1 and pure[("G", "R")] < 0.1
    mixed = display_mixing({"R": red + 10 + noise[0], "G": green + 0.55 * red + 10 + noise[1]})
    assert mixed[("R", "G")] == pytest.approx(0.55, abs=0.04) and mixed[("G", "R")] < 0.05


@pytest.mark.parametrize("panel", ["kmt2a", "bcr_abl1"])
def test_composite_of_co_localising_probes_drawn_orange_counts_as_drawn_red(tmp_path, panel):
    """Break-apart and dual-fusion composites with the orange probe drawn orange (55 % of it in green):
    the display mixing is read and unmixed (a filter's crosstalk is not measured for these panels), so the
    calls match those of the same composite drawn in pure red (without it: 0.73 and 0.03 accuracy)."""
    from PIL import Image

    sim = fc.simulate_field(panel, shape=(512, 512), seed=5)
    u8 = [np.clip((c - np.percentile(c, 1)) / (np.percentile(c, 99.5) - np.percentile(c, 1)) * 255, 0, 255)
          for c in sim.image.astype(float)]
    calls = {}
    for orange in (False, True):
        green = np.clip(u8[2] + (140 / 255) * u8[1], 0, 255) if orange else u8[2]
        p = tmp_path / f"{panel}{int(orange)}.png"
        Image.fromarray(np.round(np.stack([u8[1], green, u8[0]], -1)).astype(np.uint8)).save(p)
        res = analyze_field(p, panel, pixel_size_um=sim.pixel_size_um)
        assert res.params["crosstalk_source"] == "measured (colour composite display mixing)"
        if orange:
            assert res.params["crosstalk_unmixed"]
        calls[orange] = res.nuclei.set_index("label")["call"]
    assert (calls[True] == calls[False]).mean() >= 0.9


def test_jpeg_composite_of_a_fusion_panel_is_warned(tmp_path):
    """A JPEG colour composite of a break-apart panel carries a field warning (JPEG's half-resolution colour
    blurs split signals together); the same as PNG, and a JPEG composite of a deletion panel, do not."""
    from PIL import Image

    for panel, suffix, warned in (("kmt2a", "jpg", True), ("kmt2a", "png", False), ("del5q", "jpg", False)):
        sim = fc.simulate_field(panel, shape=(256, 256), seed=4)
        u8 = [np.clip((c - np.percentile(c, 1)) / (np.percentile(c, 99.5) - np.percentile(c, 1)) * 255, 0, 255)
              for c in sim.image.astype(float)]
        p = tmp_path / f"{panel}.{suffix}"
        Image.fromarray(np.round(np.stack([u8[1], u8[2], u8[0]], -1)).astype(np.uint8)).save(p)
        res = analyze_field(p, panel, pixel_size_um=sim.pixel_size_um)
        got = [w for w in res.params["warnings"] if w.startswith("JPEG colour composite")]
        assert bool(got) == warned, (panel, suffix, res.params["warnings"])


def test_cli_segment_reads_the_pixel_size_of_a_one_channel_file(tmp_path):
    """A nuclear-stain-only OME-TIFF or ImageJ file gives its own pixel size to `fishcount segment` (areas in
    µm², the nominal nucleus size), as a panel field does; --pixel-size still wins."""
    u = fc.simulate_field("del5q", shape=(192, 192), seed=1).image
    tifffile.imwrite(tmp_path / "d.ome.tif", u[0], ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.16,
                                                                         "PhysicalSizeY": 0.16})
    tifffile.imwrite(tmp_path / "ij.tif", u[0], imagej=True, resolution=(1 / 0.16, 1 / 0.16),
                     metadata={"unit": "micron"})
    for name, stem in (("d.ome.tif", "d"), ("ij.tif", "ij")):
        r = CliRunner().invoke(main, ["segment", str(tmp_path / name), "--out", str(tmp_path / "o")])
        assert r.exit_code == 0, r.output
        assert "(0.16 µm/px, nucleus 56.2 px (pixel size" in r.output
        assert pd.read_csv(tmp_path / "o" / stem / "nuclei_qc.csv")["area_um2"].notna().all()
    r = CliRunner().invoke(main, ["segment", str(tmp_path / "d.ome.tif"), "--out", str(tmp_path / "o2"),
                                  "--pixel-size", "0.2"])
    assert r.exit_code == 0 and "(0.2 µm/px" in r.output


def test_a_field_with_nothing_to_count_says_so(tmp_path):
    """No nucleus found, or not one scorable: a field warning (printed by `fishcount analyze`), never a quiet
    "0 nuclei"; a constant channel is refused like an empty one."""
    sim = fc.simulate_field("del5q", shape=(192, 192), seed=1)
    noise = np.random.default_rng(0).normal(100, 3, sim.image[0].shape).astype(np.float32)  # a DAPI of noise only
    res = analyze_field(field_from_arrays(noise, {"EGR1": sim.image[1], "D5S23": sim.image[2]},
                                          pixel_size_um=sim.pixel_size_um))
    assert len(res.nuclei) == 0
    assert res.params["warnings"][0].startswith("no nucleus found") and "pixel size" in res.params["warnings"][0]
    const = sim.image.copy()
    const[1] = 100  # a constant probe channel
    tifffile.imwrite(tmp_path / "c.ome.tif", const, ome=True, metadata={
        "axes": "CYX", "Channel": {"Name": list(sim.channel_names)}, "PhysicalSizeX": sim.pixel_size_um,
        "PhysicalSizeY": sim.pixel_size_um})
    with pytest.raises(InputError, match=r"c.ome.tif: channel 1 .*EGR1.* is constant \(every pixel is 100\): no "
                                         r"image was recorded in it"):
        fc.read_field(tmp_path / "c.ome.tif")
    nuc = pd.DataFrame({"label": [1, 2], "scorable": [False, False], "exclusion_reason": ["saturated", "saturated;border"]})
    from fishcount.analyze import _yield_warnings

    assert _yield_warnings(None, nuc) == ["none of the 2 nuclei is scorable (saturated 2, border 1); check the "
                                          "exposure, the probe channels (--channels) and the pixel size"]


@pytest.mark.parametrize("z", [1e-4, float("inf"), float("nan"), -0.4, 400.0])
def test_an_implausible_z_step_is_refused_before_any_work(z):
    """0.4 µm typed in mm (0.0004) made 3-D detection run for minutes and gigabytes; inf crashed."""
    sim = fc.simulate_field("del5q", shape=(96, 96), seed=1, z_planes=3)
    with pytest.raises(InputError, match=r"--z-step: the z step must be 0 \(detect on the projection\) or 0.01-20 µm"):
        analyze_field(sim.to_field(), z_step_um=z)
