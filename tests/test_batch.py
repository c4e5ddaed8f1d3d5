"""Tests of fishcount.batch: manifest, layout, resume, failure isolation, Dask equality, kill -9."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

import fishcount as fc
from fishcount import batch
from fishcount.batch import infer_layout, read_manifest, run_batch, week_from_timepoint
from fishcount.errors import InputError, PanelError
from fishcount.panels import load_panel

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# a tiny deterministic stand-in for the per-field pipeline (the orchestration is under test)
# ---------------------------------------------------------------------------------------------
def fake_analyze(path, out_dir, panel, params):
    """Read the tiny TIFF; one 'nucleus' per row, EGR1 count = 1 if the row sum is odd else 2."""
    img = tifffile.imread(path)
    delay = float(params.get("delay_s", 0))
    if delay:
        time.sleep(delay)
    rows = []
    for i, r in enumerate(np.atleast_2d(img.reshape(img.shape[0], -1))):
        egr1 = 1 if int(r.sum()) % 2 else 2
        call = "del5q" if egr1 == 1 else "normal"
        rows.append({"label": i + 1, "centroid_y": float(i), "centroid_x": 0.5, "area_um2": 50.0,
                     "count_EGR1": egr1, "count_D5S23": 2, "pattern": f"{egr1}O2G", "call": call,
                     "scorable": True, "exclusion_reason": ""})
    pd.DataFrame(rows).to_csv(Path(out_dir) / "nuclei.csv", index=False)
    return {"n_nuclei": len(rows), "thresholds": {"EGR1": 1.0, "D5S23": 2.0}}


def fake_score(nuclei, panel):
    g = nuclei.groupby("sample", sort=True)
    out = pd.DataFrame({
        "sample": list(g.groups),
        "n_scorable": g["scorable"].sum().to_numpy(),
        "clone_count": g["call"].apply(lambda c: int((c == "del5q").sum())).to_numpy(),
    })
    out["clone_pct"] = 100 * out["clone_count"] / out["n_scorable"]
    return out


def fake_respond(samples):
    g = samples.sort_values("week").groupby("patient")
    return pd.DataFrame({"patient": list(g.groups), "first_pct": g["clone_pct"].first().to_numpy(),
                         "last_pct": g["clone_pct"].last().to_numpy()})


FAKES = dict(analyze=fake_analyze, score=fake_score, respond=fake_respond, report=False, quiet=True)


def _write_field(path: Path, seed: int, rows: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tifffile.imwrite(path, rng.integers(0, 1000, size=(rows, 8), dtype=np.uint16))


def make_study(root: Path, patients=("P01", "P02"), timepoints=("week00", "week16"), fields=3) -> Path:
    seed = 0
    for p in patients:
        for t in timepoints:
            for f in range(fields):
                seed += 1
                _write_field(root / p / t / f"field{f + 1:02d}.ome.tif", seed)
            # simulator truth files sit beside the fields and must be ignored
            (root / p / t / "field01_truth.csv").write_text("label,call\n1,normal\n")
            tifffile.imwrite(root / p / t / "field01_truth_labels.tif", np.zeros((4, 4), np.uint16))
    return root


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    nuclei = pd.read_parquet(out / "nuclei.parquet")
    return {
        "nuclei": nuclei.sort_values(["field", "label"]).reset_index(drop=True),
        "nuclei_csv": pd.read_csv(out / "nuclei.csv").sort_values(["field", "label"]).reset_index(drop=True),
        "samples": pd.read_csv(out / "samples.csv"),
        "response": pd.read_csv(out / "response.csv"),
    }


def _assert_same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Parquet vs CSV: same columns and values (CSV turns empty strings into NaN)."""
    assert list(a.columns) == list(b.columns)
    for c in a.columns:
        if pd.api.types.is_numeric_dtype(a[c]) and pd.api.types.is_numeric_dtype(b[c]):
            np.testing.assert_allclose(a[c].astype(float), b[c].astype(float), err_msg=c)
        else:
            assert a[c].fillna("").astype(str).tolist() == b[c].fillna("").astype(str).tolist(), c


# ---------------------------------------------------------------------------------------------
# manifest parsing
# ---------------------------------------------------------------------------------------------
def _manifest(tmp_path: Path, text: str) -> Path:
    m = tmp_path / "manifest.csv"
    m.write_text(text)
    return m


def test_manifest_globs_extras_and_defaults(tmp_path):
    make_study(tmp_path)
    m = _manifest(tmp_path, "path,patient,timepoint,week,site\n"
                            "P01/week00/*.ome.tif,P01,week00,0,Oslo\n"
                            "P01/week16/field01.ome.tif,P01,week16,16,Oslo\n"
                            "P02/week16/field0[12].ome.tif,P02,w16,16.5,Lund\n")
    df = read_manifest(m)
    assert len(df) == 3 + 1 + 2
    assert not df["path"].str.contains("truth").any()
    assert set(df["sample"]) == {"P01_week00", "P01_week16", "P02_w16"}
    assert df["panel"].eq("del5q").all()
    assert df.loc[df["patient"] == "P02", "week"].eq(16.5).all()
    assert df["site"].tolist() == ["Oslo"] * 4 + ["Lund"] * 2
    assert df["field"].iloc[0] == "P01/week00/field01"
    assert df["week"].dtype == np.float64


def test_manifest_globs_of_pictures_and_the_run_folder(tmp_path):
    """A glob that names pictures (*.png, *.jpg) lists them, never the overlays of a run folder inside the
    study; a TIFF glob never lists pictures; the folder layout is TIFFs only."""
    from PIL import Image

    from fishcount.batch import RUN_MARKER

    for t in ("week00", "week16"):
        (tmp_path / "P01" / t).mkdir(parents=True)
        for name in ("f1.jpg", "F2.JPG"):  # the suffix in any case
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "P01" / t / name)
    run = tmp_path / "P01" / "week00" / "results"
    (run / "fields").mkdir(parents=True)
    (run / RUN_MARKER).write_text("{}")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(run / "fields" / "overlay.jpg")
    m = _manifest(tmp_path, "path,patient,timepoint,week\n"
                            "P01/week00/**/*.jpg,P01,week00,0\n"
                            "P01/week16/*.JPG,P01,week16,16\n")
    df = read_manifest(m)
    assert df["path"].map(lambda p: Path(p).name).tolist() == ["f1.jpg", "F2.JPG"]
    assert not df["path"].str.contains("results").any()
    with pytest.raises(InputError, match="matches no field image"):
        read_manifest(_manifest(tmp_path, "path,patient,timepoint,week\nP01/week00/*.tif,P01,week00,0\n"))


def test_cli_run_on_a_study_of_png_composites(tmp_path):
    """A study exported as colour PNGs (EGR1 red, D5S23 green, DAPI blue), listed by a manifest glob:
    `run --channels` analyses every field, with the counts `analyze_field` gives on the same file."""
    from click.testing import CliRunner
    from PIL import Image

    from fishcount.cli import main

    rows = ["path,patient,timepoint,week"]
    for t, week, seed in (("week00", 0, 3), ("week16", 16, 4)):
        (tmp_path / "P01" / t).mkdir(parents=True)
        sim = fc.simulate_field("del5q", shape=(256, 256), seed=seed)
        top = np.percentile(sim.image, 99.9, axis=(1, 2))[:, None, None]
        u8 = np.clip(255.0 * sim.image.astype(np.float64) / top, 0, 255).astype(np.uint8)
        Image.fromarray(np.stack([u8[1], u8[2], u8[0]], -1)).save(tmp_path / "P01" / t / "f1.png")
        rows.append(f"P01/{t}/*.png,P01,{t},{week}")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    px = str(sim.pixel_size_um)
    r = CliRunner().invoke(main, ["run", str(tmp_path), "--out", str(tmp_path / "run"), "--channels",
                                  "EGR1,D5S23,DAPI", "--pixel-size", px, "--workers", "1", "--no-report", "-q"])
    assert r.exit_code == 0, r.output
    samples = pd.read_csv(tmp_path / "run" / "samples.csv")
    assert len(samples) == 2 and (samples["nuclei_scored"] > 0).all()
    ref = fc.analyze_field(tmp_path / "P01" / "week16" / "f1.png", channels=["EGR1", "D5S23", "DAPI"],
                           pixel_size_um=float(px))
    nuc = pd.read_csv(tmp_path / "run" / "fields" / "P01" / "week16" / "f1" / "nuclei.csv")
    assert len(nuc) == len(ref.nuclei) > 0 and nuc.count_EGR1.tolist() == ref.nuclei.count_EGR1.tolist()


def test_manifest_relative_to_given_folder_and_sample_column(tmp_path):
    study = make_study(tmp_path / "study", patients=("P01",), timepoints=("week00",), fields=2)
    m = _manifest(tmp_path, "patient,timepoint,week,path,sample,slide\n"
                            "P01,week00,0,P01/week00/field01.ome.tif,S1,A\n"
                            "P01,week00,0,P01/week00/field02.ome.tif,S1,B\n")
    df = read_manifest(m, study)
    assert df["sample"].tolist() == ["S1", "S1"]
    assert df["slide"].tolist() == ["A", "B"]
    assert Path(df["path"].iloc[0]).is_file()


@pytest.mark.parametrize("text, message", [
    ("", "manifest is empty"),
    ("path,patient,timepoint,week\n", "no rows"),
    ("path,patient,week\nP01/week00/field01.ome.tif,P01,0\n", "missing column(s) timepoint"),
    ("path,patient,timepoint,week,patient\nx,P01,w0,0,P01\n", "appear more than once"),
    ("path,patient,timepoint,week,\nP01/week00/field01.ome.tif,P01,w0,0,\n", "has no name"),
    ("path,patient,timepoint,week\nP01/week00/field01.ome.tif,,week00,0\n", "line 2: empty 'patient'"),
    ("path,patient,timepoint,week\nP01/week00/field01.ome.tif,P01,week00,sixteen\n", "line 2: week 'sixteen'"),
    ("path,patient,timepoint,week\nP01/week00/field01.ome.tif,P01,week00,nan\n", "is not a number"),
    ("path,patient,timepoint,week\nP01/week00/field09.ome.tif,P01,week00,0\n", "line 2: field 'P01/week00/field09"),
    ("path,patient,timepoint,week\nP03/*/*.tif,P03,week00,0\n", "matches no field image"),
    ("path,patient,timepoint,week\nP01/week00/field01_truth_labels.tif,P01,week00,0\n", "truth file"),
    ("path,patient,timepoint,week\nP01/week00/*.tif,P01,week00,0\nP01/week00/field01.ome.tif,P01,week00,0\n",
     "already listed on line 2"),
    ("path,patient,timepoint,week\nP01/week00/field01.ome.tif,P01,week00\n", "line 2 has 3 values"),
    ("path,patient,timepoint,week,sample\nP01/week00/field01.ome.tif,P01,week00,0,S\n"
     "P01/week16/field01.ome.tif,P01,week16,16,S\n", "sample 'S' has more than one timepoint"),
    ("path,patient,timepoint,week\nP01/week00/field01.ome.tif,P01,week00,0\n"
     "P01/week00/field02.ome.tif,P01,week00,1\n", "more than one week"),
])
def test_manifest_errors(tmp_path, text, message):
    make_study(tmp_path, patients=("P01",))
    m = _manifest(tmp_path, text)
    with pytest.raises(InputError) as exc:
        read_manifest(m)
    assert message in str(exc.value)
    assert str(m) in str(exc.value)
    assert "\n" not in str(exc.value)


def test_manifest_missing_file_and_bad_panel(tmp_path):
    with pytest.raises(InputError, match="manifest file not found"):
        read_manifest(tmp_path / "nope.csv")
    make_study(tmp_path, patients=("P01",))
    m = _manifest(tmp_path, "path,patient,timepoint,week,panel\nP01/week00/field01.ome.tif,P01,week00,0,nopanel\n")
    with pytest.raises(InputError, match=r"manifest.csv: line 2: panel 'nopanel': unknown panel"):
        read_manifest(m)
    bad = tmp_path / "manifest_latin1.csv"
    bad.write_bytes("path,patient,timepoint,week\nP01/week00/field01.ome.tif,Jos\xe9,week00,0\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_manifest(bad)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["P01", "P02", "P 3"]), st.sampled_from(["week00", "week08", "d28"]),
                          st.integers(1, 3)), min_size=1, max_size=6, unique=True),
       st.sampled_from(["\n", "\r\n"]))
def test_manifest_property_one_row_per_listed_file(tmp_path_factory, entries, newline):
    """Any manifest of distinct existing files parses to exactly those files, in order, with its metadata."""
    root = tmp_path_factory.mktemp("m")
    lines = ["path,patient,timepoint,week"]
    expected = []
    for p, t, f in entries:
        rel = f"{p}/{t}/field{f:02d}.tif"
        (root / p / t).mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
        week = {"week00": 0, "week08": 8, "d28": 4}[t]
        lines.append(f"{rel},{p},{t},{week}")
        expected.append((str(root / rel), p, t, float(week)))
    (root / "manifest.csv").write_text(newline.join(lines) + newline)
    df = read_manifest(root / "manifest.csv")
    assert list(zip(df["path"], df["patient"], df["timepoint"], df["week"])) == expected
    assert df["field"].is_unique


# ---------------------------------------------------------------------------------------------
# folder layout
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, week", [
    ("week16", 16.0), ("wk4", 4.0), ("w08", 8.0), ("Week_12", 12.0), ("baseline", 0.0), ("screening", 0.0),
    ("day28", 4.0), ("d14", 2.0), ("month3", 13.0), ("week2.5", 2.5), ("visit3", None), ("16", None), ("", None),
    ("day_-7", -1.0), ("d -14", -2.0), ("week--2", -2.0), ("day-7", None), ("week-2", None), ("d-14", None),
])
def test_week_from_timepoint(name, week):
    assert week_from_timepoint(name) == week


def test_infer_layout(tmp_path):
    make_study(tmp_path, timepoints=("baseline", "week16"), fields=2)
    (tmp_path / "README.txt").write_text("not a field")
    df = infer_layout(tmp_path)
    assert len(df) == 2 * 2 * 2
    assert set(df["sample"]) == {"P01_baseline", "P01_week16", "P02_baseline", "P02_week16"}
    assert sorted(df["week"].unique()) == [0.0, 16.0]
    assert not df["path"].str.contains("truth").any()


def test_infer_layout_errors(tmp_path):
    with pytest.raises(InputError, match="study folder not found"):
        infer_layout(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no field images.*FOLDER/<patient>/<timepoint>"):
        infer_layout(tmp_path / "empty")
    (tmp_path / "jpegs" / "P01" / "week00").mkdir(parents=True)
    (tmp_path / "jpegs" / "P01" / "week00" / "f1.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(InputError, match=r"holds PNG/JPEG pictures: list them in a manifest, e\.g\. 'P01/week00/\*\.jpg"):
        infer_layout(tmp_path / "jpegs")
    flat = tmp_path / "flat"
    _write_field(flat / "field01.tif", 1)
    with pytest.raises(InputError, match="unrecognised folder layout at 'field01.tif'.*e.g. study/P01/week00"):
        infer_layout(flat)
    odd = tmp_path / "odd"
    _write_field(odd / "P01" / "visit3" / "field01.tif", 1)
    with pytest.raises(InputError, match="cannot tell the week from timepoint folder 'visit3'"):
        infer_layout(odd)


# ---------------------------------------------------------------------------------------------
# runs with the fake pipeline
# ---------------------------------------------------------------------------------------------
def test_serial_run_outputs_and_resume(tmp_path):
    study = make_study(tmp_path / "study")
    out = tmp_path / "out"
    r = run_batch(study, out, workers=1, **FAKES)
    assert (r.n_fields, r.n_done, r.n_skipped, r.n_failed, r.n_errors) == (12, 12, 0, 0, 0)
    t1 = _tables(out)
    assert len(t1["nuclei"]) == 12 * 12
    assert list(t1["nuclei"].columns[:8]) == list(batch.POOLED_KEY_COLUMNS)
    _assert_same_table(t1["nuclei"], t1["nuclei_csv"])
    assert set(t1["samples"]["sample"]) == {"P01_week00", "P01_week16", "P02_week00", "P02_week16"}
    assert {"patient", "timepoint", "week", "n_fields"} <= set(t1["samples"].columns)
    run = json.loads((out / "run.json").read_text())
    assert run["panel"]["sha256"] == load_panel("del5q").sha256
    assert run["engine"]["engine"] == "serial"
    assert run["counts"]["nuclei"] == 144
    assert run["thresholds"]["P01/week00/field01"] == {"EGR1": 1.0, "D5S23": 2.0}
    assert {"numpy", "pandas", "dask", "python"} <= set(run["versions"])
    assert pd.read_csv(out / "errors.csv").empty

    # rerun: everything skipped, tables identical, no duplicated rows
    r2 = run_batch(study, out, workers=1, **FAKES)
    assert (r2.n_done, r2.n_skipped) == (0, 12)
    t2 = _tables(out)
    for k in t1:
        pd.testing.assert_frame_equal(t1[k], t2[k])

    # a changed field is redone; a touched but identical one is not
    f = study / "P01" / "week16" / "field02.ome.tif"
    _write_field(f, 999)
    g = study / "P02" / "week00" / "field01.ome.tif"
    os.utime(g, ns=(time.time_ns(), time.time_ns() + 10**9))
    r3 = run_batch(study, out, workers=1, **FAKES)
    assert (r3.n_done, r3.n_skipped) == (1, 11)
    t3 = _tables(out)
    assert len(t3["nuclei"]) == 144

    # changed parameters redo everything
    r4 = run_batch(study, out, workers=1, params={"analyze": {"x": 1}}, **FAKES)
    assert r4.n_done == 12


def test_corrupt_field_is_isolated(tmp_path):
    study = make_study(tmp_path / "study")
    bad = study / "P01" / "week16" / "field02.ome.tif"
    bad.write_bytes(b"II*\x00 this is not a tiff")
    # a sample whose only field is corrupt is reported as not scored
    lonely = study / "P02" / "week08" / "field01.ome.tif"
    lonely.parent.mkdir(parents=True)
    lonely.write_bytes(b"garbage")
    out = tmp_path / "out"
    r = run_batch(study, out, workers=1, **FAKES)
    assert (r.n_fields, r.n_failed, r.n_done) == (13, 2, 11)
    err = pd.read_csv(out / "errors.csv")
    assert set(err["stage"]) == {"analyze", "sample"}
    assert str(bad) in set(err["file"])
    assert "P02_week08" in set(err["file"])
    # each error names the sample it cost (the report shows it beside that sample)
    assert err.set_index("file").loc[str(bad), "sample"] == "P01_week16"
    assert set(err["sample"]) == {"P01_week16", "P02_week08"}
    nuclei = pd.read_parquet(out / "nuclei.parquet")
    assert len(nuclei) == 11 * 12 and "P01/week16/field02" not in set(nuclei["field"])
    assert "P02_week08" not in set(pd.read_csv(out / "samples.csv")["sample"])
    # fix the file: the rerun analyses only it and the error is gone
    _write_field(bad, 5)
    lonely.unlink()
    lonely.parent.rmdir()
    r2 = run_batch(study, out, workers=1, **FAKES)
    assert (r2.n_done, r2.n_skipped, r2.n_errors) == (1, 11, 0)


def test_output_folder_rules(tmp_path):
    study = make_study(tmp_path / "study", patients=("P01",), timepoints=("week00",), fields=1)
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.docx").write_text("precious")
    with pytest.raises(InputError, match="not empty and holds no fishcount run"):
        run_batch(study, other, workers=1, **FAKES)
    assert (other / "thesis.docx").read_text() == "precious"
    with pytest.raises(InputError, match="must not be the study folder"):
        run_batch(study, study, workers=1, **FAKES)
    with pytest.raises(InputError, match="study folder not found"):
        run_batch(tmp_path / "nope", tmp_path / "o", workers=1, **FAKES)
    with pytest.raises(InputError, match="must be at least 1"):
        run_batch(study, tmp_path / "o2", workers=0, **FAKES)
    # an output folder inside the study is not read back as input on the rerun
    inside = study / "results"
    run_batch(study, inside, workers=1, **FAKES)
    (inside / "fields" / "P01" / "week00" / "field01" / "overlay.tif").write_bytes(b"x")
    r = run_batch(study, inside, workers=1, **FAKES)
    assert (r.n_fields, r.n_skipped) == (1, 1)


def test_stale_temporary_folders_are_cleaned(tmp_path):
    study = make_study(tmp_path / "study", patients=("P01",), timepoints=("week00",), fields=2)
    out = tmp_path / "out"
    run_batch(study, out, workers=1, **FAKES)
    # simulate a kill between writing a temp folder and renaming it, and a half-swapped field
    stale = out / "fields" / "P01" / "week00" / ".tmp-field01-deadbeef"
    stale.mkdir()
    (stale / "nuclei.csv").write_text("label\n1\n")
    done = out / "fields" / "P01" / "week00" / "field02"
    os.replace(done, done.parent / ".trash-field02-cafe")
    r = run_batch(study, out, workers=1, **FAKES)
    assert (r.n_done, r.n_skipped) == (1, 1)
    assert not stale.exists()
    assert not any(p.name.startswith((".tmp-", ".trash-")) for p in (out / "fields").rglob("*"))


# ---------------------------------------------------------------------------------------------
# the real pipeline on a small simulated study
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_study(tmp_path_factory):
    """2 patients x 2 timepoints x 2 simulated 320^2 fields (real OME-TIFF + truth files)."""
    from fishcount.simulate import simulate_field, write_simulated_field

    root = tmp_path_factory.mktemp("sim") / "study"
    seed = 100
    for p, fracs in (("P01", (0.6, 0.05)), ("P02", (0.5, 0.5))):
        for t, f in zip(("week00", "week16"), fracs):
            for i in range(2):
                seed += 1
                sim = simulate_field("del5q", shape=(320, 320), abnormal_fraction=f, seed=seed)
                write_simulated_field(sim, root / p / t / f"field{i + 1:02d}.ome.tif")
    return root


def _real_tables(out: Path) -> dict[str, pd.DataFrame]:
    t = _tables(out)
    t["timepoints"] = pd.read_csv(out / "response_timepoints.csv")
    return t


@pytest.mark.slow
def test_local_cluster_equals_serial_real_pipeline(sim_study, tmp_path):
    """A real distributed.LocalCluster with 2 worker processes on loopback gives the serial tables."""
    serial = run_batch(sim_study, tmp_path / "serial", workers=1, quiet=True, report=False)
    assert serial.n_done == 8 and serial.n_errors == 0
    r = run_batch(sim_study, tmp_path / "dask", workers=2, quiet=True, report=False)
    assert r.n_done == 8 and r.n_errors == 0
    run = json.loads((tmp_path / "dask" / "run.json").read_text())
    assert run["engine"]["engine"] == "dask-local" and run["engine"]["workers"] == 2
    assert set(run["thresholds"]) == set(json.loads((tmp_path / "serial" / "run.json").read_text())["thresholds"])
    a, b = _real_tables(tmp_path / "serial"), _real_tables(tmp_path / "dask")
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k])
    for key in ("P01/week00/field01", "P02/week16/field02"):
        d = tmp_path / "dask" / "fields" / key
        assert {"nuclei.csv", "spots.csv", "labels.tif", "field.json", "gallery.png", batch.MARKER} <= \
            {p.name for p in d.iterdir()}
    # samples of the real scorer carry the manifest metadata and the number of fields pooled
    s = a["samples"]
    assert s["n_fields"].eq(2).all() and set(s["sample"]) == {"P01_week00", "P01_week16", "P02_week00", "P02_week16"}


def test_scheduler_address_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "SCHEDULER_TIMEOUT", "1s")
    study = make_study(tmp_path / "study", patients=("P01",), timepoints=("week00",), fields=1)
    with pytest.raises(InputError, match="cannot connect to the Dask scheduler"):
        run_batch(study, tmp_path / "out", scheduler="tcp://127.0.0.1:9", analyze=fake_analyze, score=fake_score,
                  respond=fake_respond, report=False, quiet=True)


def test_a_port_that_is_not_a_dask_scheduler_is_an_error_within_the_timeout(tmp_path, monkeypatch):
    """A web server (the dashboard's port) never answers Dask's handshake: one line within the timeout, not a hang;
    another protocol's banner (read as a message length of 3 EiB) is not 'out of memory'."""
    import socket
    import threading

    monkeypatch.setattr(batch, "SCHEDULER_TIMEOUT", "1s")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    conns = []

    def serve(banner: bytes):
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)
            if banner:
                c.sendall(banner)

    threading.Thread(target=serve, args=(b"",), daemon=True).start()  # accepts, never answers
    try:
        t0 = time.perf_counter()
        with pytest.raises(InputError, match=r"no answer from a Dask scheduler within 6 s: is this the scheduler's "
                                             r"address"):
            batch._connect(f"tcp://127.0.0.1:{port}")
        assert time.perf_counter() - t0 < 20
    finally:
        srv.close()
        for c in conns:
            c.close()


class _FakeClient:
    """What _check_workers asks of a Dask client."""

    def __init__(self, versions=None, no_workers=False, status="running"):
        self.versions, self.no_workers, self.status = versions or {}, no_workers, status

    def wait_for_workers(self, n, timeout=None):
        if self.no_workers:
            raise TimeoutError("no workers")

    def run(self, fn, *args, on_error="raise"):
        return dict(self.versions)


def test_dask_workers_checked_before_any_work_and_a_lost_scheduler_stops_the_run(monkeypatch):
    """Workers of another fishcount version (results of two versions mixed in one study), workers that cannot
    import fishcount, or none at all: one line before any field; a lost scheduler is the engine's failure, not
    every pending field's (those were scored as not evaluable), so the run stops and a rerun resumes."""
    from asyncio import CancelledError

    monkeypatch.setattr(batch, "WORKER_WAIT_S", 0.1)
    batch._check_workers(_FakeClient({"tcp://a:1": fc.__version__}), "tcp://s:8786")
    with pytest.raises(batch.EngineError, match=r"tcp://s:8786: Dask worker tcp://a:1 runs fishcount 9.9, this client"):
        batch._check_workers(_FakeClient({"tcp://a:1": "9.9"}), "tcp://s:8786")
    with pytest.raises(batch.EngineError, match=r"Dask worker tcp://a:1 cannot import fishcount \(ModuleNotFoundError"):
        batch._check_workers(_FakeClient({"tcp://a:1": ModuleNotFoundError("No module named 'fishcount'")}), "x")
    with pytest.raises(batch.EngineError, match=r"the Dask scheduler has no worker after 0.1 s"):
        batch._check_workers(_FakeClient(no_workers=True), "tcp://s:8786")
    assert batch._engine_lost(_FakeClient(), CancelledError("scheduler-connection-lost"))
    from distributed.client import FutureCancelledError  # what a real client raises: not asyncio's class

    assert batch._engine_lost(_FakeClient(status="connecting"), FutureCancelledError("k", "scheduler-connection-lost"))
    assert batch._engine_lost(_FakeClient(status="closed"), RuntimeError("x"))
    assert batch._engine_lost(_FakeClient(status="connecting"), RuntimeError("x"))  # reconnecting: the engine is gone
    assert not batch._engine_lost(_FakeClient(), RuntimeError("KilledWorker: the field's worker died"))


def test_a_field_done_by_another_fishcount_version_is_redone(tmp_path):
    study = make_study(tmp_path / "study", patients=("P01",), timepoints=("week00",), fields=1)
    out = tmp_path / "out"
    run_batch(study, out, workers=1, **FAKES)
    marker = next((out / "fields").rglob(batch.MARKER))
    m = json.loads(marker.read_text())
    m["fishcount_version"] = "0.0.1"
    marker.write_text(json.dumps(m))
    r = run_batch(study, out, workers=1, **FAKES)
    assert (r.n_done, r.n_skipped) == (1, 0)


def test_relative_study_and_output_folders_are_made_absolute(tmp_path, monkeypatch):
    """Workers may run in another working directory: the tasks name absolute paths."""
    study = make_study(tmp_path / "study", patients=("P01",), timepoints=("week00",), fields=1)
    monkeypatch.chdir(tmp_path)
    seen = []

    def spy(path, out_dir, panel, params):
        seen.append((path, str(out_dir)))
        return fake_analyze(path, out_dir, panel, params)

    run_batch("study", "out", workers=1, **{**FAKES, "analyze": spy})
    assert seen and all(Path(p).is_absolute() and Path(o).is_absolute() for p, o in seen)


def test_layout_groups_per_channel_files(tmp_path):
    for ch in ("DAPI", "EGR1", "D5S23"):
        _write_field(tmp_path / "P01" / "week00" / f"field01_{ch}.tif", 1)
    _write_field(tmp_path / "P01" / "week00" / "field02.ome.tif", 2)
    df = infer_layout(tmp_path)
    assert df["field"].tolist() == ["P01/week00/field01", "P01/week00/field02"]
    files = df["files"].iloc[0].split(os.pathsep)
    assert [Path(f).name for f in files] == ["field01_DAPI.tif", "field01_EGR1.tif", "field01_D5S23.tif"]


def _finished_fields(fields: Path) -> int:
    for _ in range(1000):
        try:
            return sum(1 for m in fields.rglob(batch.MARKER) if not m.parent.name.startswith((".tmp-", ".trash-")))
        except FileNotFoundError:  # the running batch renamed a folder while we walked the tree: look again
            continue
    raise AssertionError(f"{fields}: the output tree kept changing under 1000 walks in a row")


@pytest.mark.slow
def test_cli_kill_9_then_resume_real_pipeline(sim_study, tmp_path):
    """`fishcount run` killed with SIGKILL mid-run, then rerun: same final tables as an uninterrupted run."""
    from click.testing import CliRunner

    from fishcount.cli import main

    ref = tmp_path / "ref"
    res = CliRunner().invoke(main, ["run", str(sim_study), "--out", str(ref), "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "from fishcount.cli import main; main()", "run", str(sim_study), "--out", str(out),
           "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=tmp_path)
    fields = out / "fields"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if fields.exists() and _finished_fields(fields) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # a field is finished once its folder has been renamed into place; a killed run can leave a
    # marker inside a .tmp-/.trash- folder, which the rerun removes and redoes
    n_done = _finished_fields(fields)
    assert 3 <= n_done < 8, n_done
    assert not (out / "samples.csv").exists()
    res = CliRunner().invoke(main, ["run", str(sim_study), "--out", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert f"{8 - n_done} analysed, {n_done} already done, 0 failed" in res.output
    a, b = _real_tables(ref), _real_tables(out)
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k])
    assert (out / "report.html").is_file()


def test_cli_run_segmentation_options(sim_study, tmp_path):
    """--backend / --nucleus-diameter reach every field's segmentation and are recorded; a backend that
    cannot run fails before any work (CLI: exit 2, one line); one registered in this process only is
    refused when fields go to worker processes."""
    from click.testing import CliRunner

    from fishcount.cli import main
    from fishcount.errors import FishcountError
    from fishcount.segment import register_backend, segment_classical

    study = tmp_path / "study"
    (study / "P01" / "week00").mkdir(parents=True)
    src = sim_study / "P01" / "week00" / "field01.ome.tif"
    shutil.copy(src, study / "P01" / "week00")
    pix = fc.read_field(src).pixel_size_um
    calls = []

    def spy(dapi, diameter_px, **params):
        calls.append(diameter_px)
        return segment_classical(dapi, diameter_px, **params)

    register_backend("spy-run-test", spy)
    res = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "o1"), "--workers", "1", "--quiet",
                                    "--no-report", "--backend", "spy-run-test", "--nucleus-diameter", "8"])
    assert res.exit_code == 0, res.output
    assert calls == [pytest.approx(8.0 / pix)]
    run = json.loads((tmp_path / "o1" / "run.json").read_text())
    assert run["parameters"]["params"]["analyze"] == {"backend": "spy-run-test", "nucleus_diameter_um": 8.0}
    seg = json.loads(next((tmp_path / "o1" / "fields").rglob("field.json")).read_text())["params"]["segmentation"]
    assert seg["backend"] == "spy-run-test" and seg["nucleus_diameter_um"] == 8.0
    res = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "o2"), "--backend", "nope"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert res.output.startswith("fishcount: error: backend 'nope': unknown segmentation backend")
    with pytest.raises(FishcountError, match="registered in this process only"):
        run_batch(study, tmp_path / "o3", workers=2, params={"analyze": {"backend": "spy-run-test"}}, quiet=True)
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
    assert len(calls) == 1  # nothing was analysed by the refused runs


def test_run_reports_field_warnings(tmp_path):
    """A field analysed with a warning (here: a pixel size its nuclei contradict) is listed in run.json,
    the report's QC section and the run's summary; a right pixel size gives none."""
    from click.testing import CliRunner

    from fishcount.cli import main

    from fishcount.simulate import simulate_field, write_simulated_field

    study = tmp_path / "study"
    sim = simulate_field("del5q", shape=(512, 512), seed=5)  # enough nuclei off the edge to judge their size
    write_simulated_field(sim, study / "P01" / "week00" / "field01.ome.tif")
    pix = sim.pixel_size_um
    res = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "o1"), "--workers", "1",
                                    "--pixel-size", str(3 * pix)])
    assert res.exit_code == 0, res.output
    assert "warning: 1 field(s) analysed with a warning (run.json, report.html); first: P01/week00/field01" \
        in res.output
    run = json.loads((tmp_path / "o1" / "run.json").read_text())
    (key, warns), = run["warnings"].items()
    assert key == "P01/week00/field01" and "check the pixel size" in warns[0]
    html = (tmp_path / "o1" / "report.html").read_text()
    assert "Warnings (1)" in html and "check the pixel size" in html
    # resumed: the warning is kept from the field's marker
    res = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "o1"), "--workers", "1",
                                    "--pixel-size", str(3 * pix)])
    assert "1 already done" in res.output and json.loads((tmp_path / "o1" / "run.json").read_text())["warnings"] \
        == run["warnings"]
    res = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "o2"), "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "o2" / "run.json").read_text())["warnings"] == {}
    assert "Warnings (" not in (tmp_path / "o2" / "report.html").read_text()


@pytest.mark.slow
def test_cli_run_exit_codes(sim_study, tmp_path):
    """Exit 1 'completed with N errors' for a corrupt field among good ones (real pipeline);
    exit 2 and one line for a bad manifest."""
    from click.testing import CliRunner

    from fishcount.cli import main

    study = tmp_path / "study"
    (study / "P01" / "week00").mkdir(parents=True)
    shutil.copy(sim_study / "P01" / "week00" / "field01.ome.tif", study / "P01" / "week00")
    (study / "P01" / "week00" / "field02.ome.tif").write_bytes(b"not a tiff at all")
    res = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert res.exit_code == 1
    assert "completed with 1 error(s)" in res.output
    err = pd.read_csv(tmp_path / "out" / "errors.csv")
    assert err["stage"].tolist() == ["read"] and "field02" in err["file"].iloc[0]
    bad = tmp_path / "m.csv"
    bad.write_text("path,patient\nx,P01\n")
    res = CliRunner().invoke(main, ["run", str(study), "--manifest", str(bad), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [f"fishcount: error: {bad}: missing column(s) timepoint, week; "
                                               + batch._MANIFEST_EXAMPLE]
    assert not (tmp_path / "o2").exists()
    # a calibrated channel shift reaches every field's analysis and is recorded
    (study / "P01" / "week00" / "field02.ome.tif").unlink()
    res = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "o3"), "--workers", "1", "--quiet",
                                    "--no-report", "--channel-shift", "D5S23=0,0.2",
                                    "--crosstalk", "SpectrumOrange:SpectrumGreen=0.05"])
    assert res.exit_code == 0, res.output
    run = json.loads((tmp_path / "o3" / "run.json").read_text())
    assert run["parameters"]["params"]["analyze"]["channel_shifts_um"] == {"D5S23": [0.0, 0.2]}
    assert run["parameters"]["params"]["analyze"]["channel_crosstalk"] == {"SpectrumOrange->SpectrumGreen": 0.05}
    field_json = json.loads(next((tmp_path / "o3" / "fields").rglob("field.json")).read_text())
    assert field_json["params"]["channel_shifts_um"] == {"D5S23": [0.0, 0.2]}
    assert field_json["params"]["crosstalk"] == {"EGR1->D5S23": 0.05}
    assert field_json["params"]["crosstalk_source"] == "calibrated (channel_crosstalk)"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(tmp_path, monkeypatch):
    study = make_study(tmp_path / "study", patients=("P01",), fields=2)
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    run_batch(study, tmp_path / "a", workers=1, **{**FAKES, "quiet": False})
    bar = tty.getvalue()
    assert "fields" in bar and "4/4" in bar and "field/s" in bar
    run_batch(study, tmp_path / "b", workers=1, **FAKES)  # quiet
    pipe = io.StringIO()  # not a terminal: no bar
    monkeypatch.setattr(sys, "stderr", pipe)
    run_batch(study, tmp_path / "c", workers=1, **{**FAKES, "quiet": False})
    assert tty.getvalue() == bar and pipe.getvalue() == ""


def test_pool_nuclei_unifies_column_types(tmp_path):
    """Fields whose tables disagree on a column's type (empty, int, float, text) pool into one schema."""
    out = tmp_path / "out"
    frames = {
        "a": pd.DataFrame({"label": [1, 2], "x": [1, 2], "note": ["", ""], "flag": [True, False]}),
        "b": pd.DataFrame({"label": [1], "x": [2.5], "note": ["dim"], "flag": [True], "extra": [7]}),
        "c": pd.DataFrame({"label": [1], "x": [3], "note": [5], "flag": ["maybe"]}),
    }
    rows = []
    for k, df in frames.items():
        (out / "fields" / k).mkdir(parents=True)
        df.to_csv(out / "fields" / k / "nuclei.csv", index=False)
        rows.append({"path": f"/s/{k}.tif", "field": k, "sample": "S", "patient": "P", "timepoint": "t", "week": 0.0,
                     "slide": "", "panel": "del5q", "files": f"/s/{k}.tif", "site": "Oslo"})
    n = batch.pool_nuclei(pd.DataFrame(rows), out)
    assert n == 4
    got = pd.read_parquet(out / "nuclei.parquet")
    assert list(got.columns) == list(batch.POOLED_KEY_COLUMNS) + ["site", "label", "x", "note", "flag", "extra"]
    assert got["x"].tolist() == [1.0, 2.0, 2.5, 3.0]
    assert got["note"].fillna("").tolist() == ["", "", "dim", "5"]
    assert got["flag"].tolist() == ["true", "false", "true", "maybe"]
    assert got["extra"].isna().tolist() == [True, True, False, True]
    assert got["site"].eq("Oslo").all() and got["source"].tolist() == ["/s/a.tif"] * 2 + ["/s/b.tif", "/s/c.tif"]


@pytest.mark.slow
def test_readme_command_on_sample_images(tmp_path):
    """`fishcount run sample_images --out results` (the README's main command) ends with report.html and
    response.csv giving the responses the simulator built into the sample patients."""
    from click.testing import CliRunner

    from fishcount.cli import main

    samples_dir = REPO / "sample_images"
    out = tmp_path / "results"
    res = CliRunner().invoke(main, ["run", str(samples_dir), "--out", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file()
    truth = pd.read_csv(samples_dir / "truth_samples.csv")
    tps = pd.read_csv(out / "response_timepoints.csv")
    got = tps.set_index(["patient", "week"])["category"]
    follow = truth[truth["week"] > 0]
    for r in follow.itertuples():
        assert got[(r.patient, float(r.week))] == r.expected_response, (r.patient, r.week)
    # patient level: best response over the follow-up samples, best first as the criteria order them
    from fishcount.response import load_criteria

    rank = {c: i for i, c in enumerate(load_criteria().category_names)}
    resp = pd.read_csv(out / "response.csv").set_index("patient")
    for patient, g in follow.groupby("patient"):
        best = min(g["expected_response"], key=lambda c: rank[c])
        assert resp.loc[patient, "best_response"] == best, patient
    page = (out / "report.html").read_text(encoding="utf-8")
    for patient in truth["patient"].unique():
        assert f"id='patient-{patient}'" in page


def test_default_workers_is_memory_aware(monkeypatch):
    import psutil

    class Mem:
        def __init__(self, available):
            self.available = available

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(psutil, "virtual_memory", lambda: Mem(64 * 2**30))
    assert batch.default_workers(12 * 2**20) == cores
    # 1 GiB free, 100 MB fields: 10 x 100 MB + 300 MB per worker -> only 0.8 GiB usable -> 1 worker
    monkeypatch.setattr(psutil, "virtual_memory", lambda: Mem(2**30))
    assert batch.default_workers(100 * 2**20) == 1
    monkeypatch.setattr(psutil, "virtual_memory", lambda: Mem(10))
    assert batch.default_workers(0) == 1


def test_estimate_field_bytes(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((3, 64, 32), np.uint16))
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((3, 128, 32), np.uint8))
    assert batch._estimate_field_bytes([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) == 3 * 128 * 32 * 4


@pytest.mark.slow
def test_pooled_thresholds_per_sample(sim_study, tmp_path):
    """--pool-thresholds: one threshold per signal shared by the fields of a sample, cached; a rerun does nothing."""
    out = tmp_path / "out"
    r = run_batch(sim_study, out, workers=1, pool_thresholds=True, quiet=True, report=False)
    assert r.n_done == 8 and r.n_errors == 0
    th = json.loads((out / "run.json").read_text())["thresholds"]
    for sample in ("P01/week00", "P02/week16"):
        a, b = th[f"{sample}/field01"], th[f"{sample}/field02"]
        assert a == b and set(a) == {"EGR1", "D5S23"}
    cached = json.loads((out / "thresholds" / "P01_week00.json").read_text())
    assert cached["thresholds"] == th["P01/week00/field01"]
    r2 = run_batch(sim_study, out, workers=1, pool_thresholds=True, quiet=True, report=False)
    assert (r2.n_done, r2.n_skipped) == (0, 8)
    # switching back to per-field thresholds redoes the fields
    r3 = run_batch(sim_study, out, workers=1, quiet=True, report=False)
    assert r3.n_done == 8


def test_warm_worker_loads_the_code_a_field_needs(tmp_path):
    """After _warm_worker, analysing a real field imports none of the heavy packages the pipeline uses
    lazily (their code is then part of the worker's start-up, not of its first field's memory), and
    the overlay and gallery never import matplotlib for the panels' hex colours."""
    from fishcount.simulate import simulate_field, write_simulated_field

    img = tmp_path / "f.ome.tif"
    write_simulated_field(simulate_field("del5q", shape=(192, 192), seed=3), img)
    code = (
        "import sys, tempfile\n"
        "from pathlib import Path\n"
        "from fishcount import batch\n"
        "from fishcount.panels import load_panel\n"
        "batch._warm_worker()\n"
        "before = set(sys.modules)\n"
        f"batch.process_field({str(img)!r}, Path(tempfile.mkdtemp()), load_panel('del5q'), {{}})\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    new = r.stdout.split()
    heavy = ("matplotlib", "tifffile", "imagecodecs", "PIL", "scipy.sparse", "skimage.measure", "skimage.segmentation")
    assert [m for m in new if m.startswith(heavy)] == []
    assert (tmp_path / "f.ome.tif").exists()


def test_run_calibrations_serve_every_panel_of_a_study(tmp_path):
    """One microscope calibration for a study with two panels: the entries a panel has no signal or fluor
    for are left out of its fields (a one-colour cep8 probe has no SpectrumGreen), not an error per field;
    an entry that fits no panel of the study stops the run before any work."""
    from click.testing import CliRunner

    from fishcount.cli import main

    study = tmp_path / "study"
    for pid, patient, seed in (("del5q", "P01", 1), ("cep8", "P02", 2)):
        (study / patient / "week00").mkdir(parents=True)
        sim = fc.simulate_field(pid, shape=(192, 192), seed=seed)
        fc.write_simulated_field(sim, study / patient / "week00" / "field01.ome.tif")
    m = _manifest(tmp_path, "path,patient,timepoint,week,panel\n"
                            "P01/week00/field01.ome.tif,P01,week00,0,del5q\n"
                            "P02/week00/field01.ome.tif,P02,week00,0,cep8\n")
    args = ["run", str(study), "--manifest", str(m), "--workers", "1", "--quiet", "--no-report",
            "--crosstalk", "SpectrumOrange:SpectrumGreen=0.05", "--channel-shift", "SpectrumGreen=0,0.1"]
    res = CliRunner().invoke(main, args + ["--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    got = {}
    for fj in (tmp_path / "o" / "fields").rglob("field.json"):
        meta = json.loads(fj.read_text())
        got[meta["panel"]["id"]] = meta["params"]
    assert got["del5q"]["crosstalk_source"].startswith("calibrated")
    assert got["del5q"]["channel_shifts_um"] == {"D5S23": [0.0, 0.1]}
    assert got["cep8"]["crosstalk_source"] != "calibrated (channel_crosstalk)"
    assert got["cep8"]["channel_shifts_um"] == {}
    run = json.loads((tmp_path / "o" / "run.json").read_text())  # a mixed study names no single panel
    assert run["panel"] is None and sorted(v["id"] for v in run["panels"].values()) == ["cep8", "del5q"]
    typo = ["--crosstalk", "SpectrumRed:SpectrumGreen=0.05"]
    res = CliRunner().invoke(main, args + ["--out", str(tmp_path / "o2")] + typo)
    assert res.exit_code == 2 and "'SpectrumRed' is neither a signal nor a fluor" in res.output
    assert not (tmp_path / "o2" / "fields").exists()


def _plate(path: Path, seeds=(21, 22, 23), thumbnail_first=False, shape=(256, 256)):
    """A multi-position OME-TIFF of simulated fields (one series per position); returns the simulations."""
    sims = [fc.simulate_field("del5q", shape=shape, seed=s) for s in seeds]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, ome=True) as tw:
        if thumbnail_first:
            tw.write(sims[0].image[:, ::4, ::4], metadata={"axes": "CYX"})
        for sim in sims:
            tw.write(sim.image, metadata={"axes": "CYX", "Channel": {"Name": list(sim.channel_names)},
                                          "PhysicalSizeX": sim.pixel_size_um, "PhysicalSizeY": sim.pixel_size_um})
    return sims


def test_run_analyses_each_position_of_a_multi_position_file(tmp_path):
    """A multi-position file in the study is one field per position (fields/<...>/<stem>_s<k>/), each read
    from its own image; resumes; pooled thresholds read every position; a failing position names its series."""
    study = tmp_path / "study"
    sims = _plate(study / "P01" / "week00" / "plate.ome.tif", thumbnail_first=True)
    single = fc.simulate_field("del5q", shape=(256, 256), seed=24)
    fc.write_simulated_field(single, study / "P01" / "week00" / "field09.ome.tif")
    table = infer_layout(study)
    assert list(table["field"]) == ["P01/week00/field09", "P01/week00/plate_s1", "P01/week00/plate_s2",
                                    "P01/week00/plate_s3"]
    assert list(table["series"]) == [None, 1, 2, 3]
    r = run_batch(study, tmp_path / "o", workers=1, quiet=True, report=False)
    assert (r.n_done, r.n_failed) == (4, 0)
    for k, sim in zip((1, 2, 3), sims):
        d = tmp_path / "o" / "fields" / "P01" / "week00" / f"plate_s{k}"
        fj = json.loads((d / "field.json").read_text())
        assert fj["series"] == k and fj["stem"] == f"plate_s{k}"
        # the labels are those of this position's own image
        assert np.array_equal(tifffile.imread(d / "labels.tif"),
                              fc.segment_nuclei(sim.image[0], sim.pixel_size_um).labels)
    nuclei = pd.read_parquet(tmp_path / "o" / "nuclei.parquet")
    assert "series" not in nuclei.columns and nuclei["field"].nunique() == 4
    samples = pd.read_csv(tmp_path / "o" / "samples.csv")
    assert len(samples) == 1 and samples["nuclei_total"].iloc[0] == len(nuclei) and "series" not in samples.columns
    r2 = run_batch(study, tmp_path / "o", workers=1, quiet=True, report=False)
    assert (r2.n_done, r2.n_skipped) == (0, 4)
    # pooled thresholds: every position read (the sample's thresholds come from all four fields)
    r3 = run_batch(study, tmp_path / "p", workers=1, quiet=True, report=False, pool_thresholds=True)
    assert r3.n_failed == 0 and len(r3.errors) == 0
    fields = [fc.read_field(study / "P01" / "week00" / "field09.ome.tif")] + \
        [fc.read_field(study / "P01" / "week00" / "plate.ome.tif", series=k) for k in (1, 2, 3)]
    th = json.loads((tmp_path / "p" / "thresholds" / "P01_week00.json").read_text())["thresholds"]
    assert th == pytest.approx(fc.estimate_thresholds(fields, "del5q"))

    def fail_two(path, out_dir, panel, params):
        if params.get("read", {}).get("series") == 2:
            raise batch.StageError("read", "broken position")
        return batch.process_field(path, out_dir, panel, params)

    r4 = run_batch(study, tmp_path / "q", workers=1, quiet=True, report=False, analyze=fail_two)
    err = pd.read_csv(tmp_path / "q" / "errors.csv")
    assert r4.n_failed == 1 and err["file"].tolist() == [f"{study / 'P01' / 'week00' / 'plate.ome.tif'} (series 2)"]


def test_run_analyses_each_position_of_a_per_channel_group(tmp_path):
    """One file per channel, each holding the same two positions: one field per position
    (fields/<...>/<field>_s<k>/), read from that position of every channel's file; resumes."""
    study = tmp_path / "study" / "P01" / "week00"
    study.mkdir(parents=True)
    sims = [fc.simulate_field("del5q", shape=(256, 256), seed=s) for s in (31, 32)]
    for c, name in enumerate(sims[0].channel_names):
        with tifffile.TiffWriter(study / f"pos_{name}.ome.tif", ome=True) as tw:
            for sim in sims:
                tw.write(sim.image[c], metadata={"axes": "YX", "PhysicalSizeX": sim.pixel_size_um,
                                                 "PhysicalSizeY": sim.pixel_size_um})
    table = infer_layout(tmp_path / "study")
    assert list(table["field"]) == ["P01/week00/pos_s0", "P01/week00/pos_s1"] and list(table["series"]) == [0, 1]
    r = run_batch(tmp_path / "study", tmp_path / "o", workers=1, quiet=True, report=False)
    assert (r.n_done, r.n_failed) == (2, 0)
    for k, sim in enumerate(sims):
        d = tmp_path / "o" / "fields" / "P01" / "week00" / f"pos_s{k}"
        assert json.loads((d / "field.json").read_text())["series"] == k
        assert np.array_equal(tifffile.imread(d / "labels.tif"),
                              fc.segment_nuclei(sim.image[0], sim.pixel_size_um).labels)
    r2 = run_batch(tmp_path / "study", tmp_path / "o", workers=1, quiet=True, report=False)
    assert (r2.n_done, r2.n_skipped) == (0, 2)


def test_run_errors_name_the_bad_file_of_a_per_channel_group(tmp_path):
    """errors.csv names the file of a per-channel group that is at fault (not the group's first file), and
    a group whose files hold different positions names the odd one and what each holds."""
    study = tmp_path / "study" / "P01" / "week00"
    study.mkdir(parents=True)
    sim = fc.simulate_field("del5q", shape=(128, 128), seed=31)
    for c, name in enumerate(sim.channel_names):
        tifffile.imwrite(study / f"dt_{name}.tif", sim.image[c].astype(np.uint8 if name == "EGR1" else np.uint16))
        with tifffile.TiffWriter(study / f"pos_{name}.ome.tif", ome=True) as tw:
            for _ in range(2 if name == "EGR1" else 3):
                tw.write(sim.image[c], metadata={"axes": "YX"})
    run_batch(tmp_path / "study", tmp_path / "o", workers=1, quiet=True, report=False)
    err = pd.read_csv(tmp_path / "o" / "errors.csv").set_index("file")
    bad = str(tmp_path / "study" / "P01" / "week00" / "dt_EGR1.tif")
    assert err.loc[bad, "message"] == "dtype uint8 differs from uint16 of dt_DAPI.tif"
    with pytest.raises(InputError, match=r"pos_EGR1.ome.tif: holds 2 images \(series 0, 1\) but pos_D5S23.ome.tif "
                                         r"holds 3 images \(series 0, 1, 2\): every file of a per-channel group must "
                                         r"hold the same positions$"):
        fc.read_field(sorted(study.glob("pos_*")))


def test_cli_analyze_info_and_segment_expand_positions(tmp_path):
    from click.testing import CliRunner

    from fishcount.cli import main

    src = tmp_path / "plate.ome.tif"
    sims = _plate(src, seeds=(31, 32), shape=(200, 200))
    r = CliRunner().invoke(main, ["info", str(src)])
    assert r.exit_code == 0, r.output
    assert "plate_s0\n" in r.output and "plate_s1\n" in r.output and "position:     series 1 of a multi-position" \
        in r.output
    r = CliRunner().invoke(main, ["analyze", str(src), "--out", str(tmp_path / "a"), "--no-overlay"])
    assert r.exit_code == 0, r.output
    for k, sim in enumerate(sims):
        assert json.loads((tmp_path / "a" / f"plate_s{k}" / "field.json").read_text())["series"] == k
        assert np.array_equal(tifffile.imread(tmp_path / "a" / f"plate_s{k}" / "labels.tif"),
                              fc.segment_nuclei(sim.image[0], sim.pixel_size_um).labels)
    # refused before any work when one position's output exists
    r = CliRunner().invoke(main, ["analyze", str(src), "--out", str(tmp_path / "a"), "--no-overlay"])
    assert r.exit_code == 2 and "plate_s0: outputs already exist" in r.output
    r = CliRunner().invoke(main, ["analyze", str(src), "--out", str(tmp_path / "b"), "--no-overlay",
                                  "--pool-thresholds"])
    assert r.exit_code == 0 and "pooled thresholds:" in r.output
    r = CliRunner().invoke(main, ["segment", str(src), "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["plate_s0", "plate_s1"]
    # one channel per position (a DAPI-only plate): read_one_channel of each position
    dapi_only = tmp_path / "dapi.ome.tif"
    with tifffile.TiffWriter(dapi_only, ome=True) as tw:
        for sim in sims:
            tw.write(sim.image[0], metadata={"axes": "YX"})
    r = CliRunner().invoke(main, ["segment", str(dapi_only), "--out", str(tmp_path / "s2"), "--pixel-size",
                                  str(sims[0].pixel_size_um)])
    assert r.exit_code == 0, r.output
    for k, sim in enumerate(sims):
        assert np.array_equal(tifffile.imread(tmp_path / "s2" / f"dapi_s{k}" / "labels.tif"),
                              fc.segment_nuclei(sim.image[0], sim.pixel_size_um).labels)


def test_position_source_and_with_positions(tmp_path):
    from fishcount.io import Position, stem_of, with_positions

    src = tmp_path / "plate.ome.tif"
    sims = _plate(src, seeds=(41, 42), shape=(160, 160))
    assert with_positions([src, tmp_path / "missing.tif"]) == [Position(src, 0), Position(src, 1),
                                                                tmp_path / "missing.tif"]
    assert stem_of(Position(src, 1)) == "plate_s1" and str(Position(src, 1)) == f"{src} (series 1)"
    res = fc.analyze_field(Position(src, 1))
    assert res.field.stem == "plate_s1" and res.field.series == 1
    np.testing.assert_array_equal(res.field.dapi, sims[1].image[0].astype(np.float32))
    with pytest.raises(InputError, match="contradicts the position's series 1"):
        fc.read_field(Position(src, 1), series=0)
    with pytest.raises(InputError, match="a per-channel file must hold one channel"):  # series= of a group
        fc.read_field([src, src], series=0)  # reads that series of every file; these hold 3 channels each


# ---------------------------------------------------------------------------------------------
# layouts and run-folder edge cases a trial analyst meets
# ---------------------------------------------------------------------------------------------
def test_layout_follows_symlinked_folders_and_refuses_two_samples_at_one_week(tmp_path):
    """A patient folder that is a symbolic link is part of the study (its key as laid out); two timepoints of
    one patient at the same week are refused before any work, naming both."""
    study = make_study(tmp_path / "study", patients=("P01",), fields=1)
    make_study(tmp_path / "elsewhere", patients=("P09",), fields=1)
    (study / "P09").symlink_to(tmp_path / "elsewhere" / "P09", target_is_directory=True)
    (study / "P09" / "loop").symlink_to(study, target_is_directory=True)  # a loop is searched once
    t = infer_layout(study)
    assert sorted(t["field"]) == ["P01/week00/field01", "P01/week16/field01", "P09/week00/field01",
                                  "P09/week16/field01"]
    _write_field(study / "P01" / "bl" / "field01.ome.tif", 99)
    with pytest.raises(InputError, match=r"patient 'P01' has two samples at week 0: 'P01_bl' \(timepoint 'bl'\) and "
                                         r"'P01_week00' \(timepoint 'week00'\); one sample per patient and week"):
        run_batch(study, tmp_path / "out", **FAKES)
    assert not (tmp_path / "out").exists()  # nothing was done
    shutil.rmtree(study / "P01" / "bl")
    _write_field(study / "P01" / "day-7" / "field01.ome.tif", 98)
    with pytest.raises(InputError, match=r"timepoint folder 'day-7' is ambiguous: .* name it day7 or day_-7"):
        infer_layout(study)


def test_output_keys_keep_any_script_and_a_collision_names_both_files(tmp_path):
    study = tmp_path / "study"
    for p in ("田中", "佐藤"):
        _write_field(study / p / "week00" / "f.ome.tif", 1)
    assert sorted(infer_layout(study)["field"]) == ["佐藤/week00/f", "田中/week00/f"]
    _write_field(study / "P 1" / "week00" / "a.ome.tif", 2)
    _write_field(study / "P_1" / "week00" / "a.ome.tif", 3)
    with pytest.raises(InputError, match=r"two fields map to the same output key 'P_1/week00/a': .*P 1.*a.ome.tif "
                                         r"and .*P_1.*a.ome.tif"):
        infer_layout(study)


def test_run_keeps_a_patient_whose_fields_all_failed_and_redoes_a_field_without_its_table(tmp_path):
    """Intention to treat: a patient none of whose fields could be read stays in samples.csv (0 nuclei),
    response.csv (not evaluable) and the report; a completion marker without nuclei.csv, or one that is not a
    JSON object, means the field is redone (never a crash, never a stale table)."""
    sims = {"P1": (31, 32), "P2": (33, 34)}
    study = tmp_path / "study"
    for p, seeds in sims.items():
        for t, seed in zip(("week00", "week16"), seeds):
            sim = fc.simulate_field("del5q", shape=(192, 192), seed=seed)
            fc.write_simulated_field(sim, study / p / t / "f1.ome.tif")
    for t in ("week00", "week16"):
        (study / "P2" / t / "f1.ome.tif").write_bytes(b"not a tiff at all")
    out = tmp_path / "run"
    r = run_batch(study, out, workers=1, quiet=True)
    assert r.n_failed == 2
    samples = pd.read_csv(out / "samples.csv")
    p2 = samples[samples["patient"] == "P2"]
    assert len(p2) == 2 and (p2["nuclei_scored"] == 0).all() and (p2["n_fields"] == 0).all()
    resp = pd.read_csv(out / "response.csv").set_index("patient")
    assert resp.loc["P2", "best_response"] == "not_evaluable" and "baseline inadequate (N=0)" in resp.loc["P2", "flags"]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "id='patient-P2'" in html and "2 patients" in html
    field = out / "fields" / "P1" / "week00" / "f1"
    (field / "nuclei.csv").unlink()
    (out / "fields" / "P1" / "week16" / "f1" / batch.MARKER).write_text("[]")
    r2 = run_batch(study, out, workers=1, quiet=True, report=False)
    assert r2.n_done == 2 and (field / "nuclei.csv").is_file()


def test_run_refuses_a_bad_scheduler_address_and_a_second_run_in_the_same_folder(tmp_path, monkeypatch):
    study = make_study(tmp_path / "study", patients=("P01",), fields=1)
    for bad in ("localhost", "nonsense", "http://127.0.0.1:8787", "localhost:99999", "tcp://h:0"):
        with pytest.raises(InputError, match="not a Dask scheduler address: give tcp://HOST:PORT"):
            run_batch(study, tmp_path / "out", scheduler=bad, **FAKES)
    assert not (tmp_path / "out").exists()
    out = tmp_path / "out"
    run_batch(study, out, **FAKES)
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / batch.RUN_LOCK).write_text(f"{other.pid} {__import__('socket').gethostname()}\n")
        with pytest.raises(InputError, match=rf"another fishcount run \(process {other.pid}\) is writing into this "
                                             r"folder"):
            run_batch(study, out, **FAKES)
    finally:
        other.kill()
        other.wait()
    r = run_batch(study, out, **FAKES)  # the lock of a process that is gone is taken over
    assert r.n_skipped == 2 and not (out / batch.RUN_LOCK).exists()


def test_run_panel_file_from_the_working_directory_and_extra_columns_that_disagree(tmp_path, monkeypatch):
    study = make_study(tmp_path / "study", patients=("P01",), fields=2)
    shutil.copy(load_panel("del5q").path, tmp_path / "mine.toml")
    monkeypatch.chdir(tmp_path)
    lines = ["path,patient,timepoint,week,site"]
    for t, w in (("week00", 0), ("week16", 16)):
        for f, site in ((1, "Oslo"), (2, "Bergen" if t == "week00" else "Oslo")):
            lines.append(f"P01/{t}/field{f:02d}.ome.tif,P01,{t},{w},{site}")
    (study / "manifest.csv").write_text("\n".join(lines) + "\n")
    run_batch("study", tmp_path / "out", panel="mine.toml", analyze=fake_analyze, quiet=True, report=False)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert str(tmp_path / "mine.toml") in json.dumps(run)
    samples = pd.read_csv(tmp_path / "out" / "samples.csv").set_index("sample")
    assert samples.loc["P01_week00", "site"] == "Oslo; Bergen" and samples.loc["P01_week16", "site"] == "Oslo"


def test_report_anchors_are_unique_per_patient():
    from fishcount.report import _anchors

    assert _anchors(["P 1", "P-1", "P_1", "P-1x"]) == {"P 1": "patient-P-1", "P-1": "patient-P-1-2",
                                                       "P_1": "patient-P_1", "P-1x": "patient-P-1x"}


def test_run_keeps_a_sample_whose_fields_hold_no_nucleus(tmp_path):
    """A field analysed without error but holding no nucleus leaves its sample in samples.csv (0 nuclei, not
    evaluable), the response and the report, with a warning naming the sample and its fields."""
    study = tmp_path / "study"
    fc.write_simulated_field(fc.simulate_field("del5q", shape=(192, 192), seed=31), study / "P1" / "week00" / "f1.ome.tif")
    fc.write_simulated_field(fc.simulate_field("del5q", shape=(192, 192), seed=32, n_nuclei=0),
                             study / "P1" / "week16" / "f1.ome.tif")
    out = tmp_path / "run"
    r = run_batch(study, out, workers=1, quiet=True)
    assert r.n_failed == 0
    samples = pd.read_csv(out / "samples.csv").set_index("sample")
    assert samples.loc["P1_week16", "nuclei_scored"] == 0 and samples.loc["P1_week16", "adequacy"] == "not_evaluable"
    assert samples.loc["P1_week16", "n_fields"] == 1
    run = json.loads((out / "run.json").read_text())
    assert run["warnings"]["sample P1_week16"] == ["no nucleus found in its 1 field(s) (P1/week16/f1); scored as 0 "
                                                   "nuclei (not evaluable)"]
    t = pd.read_csv(out / "response_timepoints.csv")
    assert 16 in set(t["week"])
    assert "sample P1_week16" in (out / "report.html").read_text(encoding="utf-8")


def test_pooled_thresholds_in_3d_leave_out_a_single_plane_field(tmp_path):
    """run --z-step --pool-thresholds: a single-plane field of the sample fails on its own (errors.csv) and the
    sample's z-stacks still share pooled thresholds."""
    d = tmp_path / "st" / "P1" / "week0"
    for i, seed in enumerate((1, 2)):
        fc.write_simulated_field(fc.simulate_field("del5q", shape=(128, 128), seed=seed, z_planes=3), d / f"f{i}.ome.tif")
    fc.write_simulated_field(fc.simulate_field("del5q", shape=(128, 128), seed=3), d / "c2d.ome.tif")
    run_batch(tmp_path / "st", tmp_path / "o", params={"read": {"z_mode": "keep"}, "analyze": {"z_step_um": 0.4}},
              pool_thresholds=True, workers=1, quiet=True, report=False)
    for name in ("f0", "f1"):
        fj = json.loads((tmp_path / "o" / "fields" / "P1" / "week0" / name / "field.json").read_text())
        assert fj["params"]["threshold_source"] == {"EGR1": "manual", "D5S23": "manual"}
    err = pd.read_csv(tmp_path / "o" / "errors.csv")
    assert list(err["stage"]) == ["analyze"] and err["file"].iloc[0].endswith("c2d.ome.tif")


@pytest.mark.parametrize("column, where", [("call", "nuclei.csv"), ("scorable", "nuclei.csv"), ("focus", "nuclei.csv"),
                                           ("field", "the field key"), ("source", "the field key"),
                                           ("clone_pct", "samples.csv")])
def test_manifest_column_named_like_an_output_column_is_refused(tmp_path, column, where):
    """A manifest column 'call' gave every nucleus of the field the manifest's call (clone % changed without a
    word); 'scorable' counted border nuclei; 'field' was replaced by the output key."""
    study = make_study(tmp_path / "study", patients=("P01",), timepoints=("week00",), fields=1)
    m = _manifest(tmp_path, f"path,patient,timepoint,week,{column}\nP01/week00/field01.ome.tif,P01,week00,0,x\n")
    with pytest.raises(InputError, match=rf"manifest.csv: column '{column}' is a column fishcount writes \({where}\)"):
        read_manifest(m, study)


def test_manifest_quoted_line_break_kept_and_lines_counted_as_in_the_file(tmp_path):
    study = make_study(tmp_path / "study", patients=("P01",), timepoints=("week00", "week16"), fields=1)
    m = _manifest(tmp_path, 'path,patient,timepoint,week,note\nP01/week00/field01.ome.tif,P01,week00,0,"first line\n'
                            'second, line"\n\nP01/week16/field01.ome.tif,P01,week16,x,\n')
    with pytest.raises(InputError, match=r"manifest.csv: line 5: week 'x' is not a number of weeks"):
        read_manifest(m, study)
    m = _manifest(tmp_path, 'path,patient,timepoint,week,note\nP01/week00/field01.ome.tif,P01,week00,0,"first line\n'
                            'second, line"\n')
    assert read_manifest(m, study)["note"].tolist() == ["first line\nsecond, line"]


def test_a_field_whose_name_fills_the_file_system_limit_fails_alone(tmp_path):
    """A 247-character field name: the temporary folder's name used to pass the 255-byte limit and stop the
    whole run; now the field is analysed (or, if it cannot be written, listed in errors.csv) and the run goes on."""
    study = make_study(tmp_path / "study", patients=("P01",), timepoints=("week00", "week16"), fields=1)
    long = study / "P01" / "week00" / ("b" * 247 + ".tif")
    _write_field(long, 7)
    r = run_batch(study, tmp_path / "out", workers=1, **FAKES)
    assert r.n_failed == 0 and r.n_done == 3
    assert (tmp_path / "out" / "fields" / "P01" / "week00" / ("b" * 247) / "nuclei.csv").is_file()


def test_a_rerun_that_redoes_a_field_keeps_its_review_journals(tmp_path):
    """A reviewer's journal in a field folder is their work: a rerun with other parameters carries it into the
    new folder (review then checks whether it still fits), never deletes it."""
    study = make_study(tmp_path / "study", patients=("P01",), timepoints=("week00",), fields=1)
    out = tmp_path / "out"
    run_batch(study, out, workers=1, **FAKES)
    field = next((out / "fields").rglob(batch.MARKER)).parent
    (field / "review.ann.jsonl").write_text('{"action": "confirm"}\n')
    (field / "nuclei.reviewed.ann.csv").write_text("label,call\n1,normal\n")
    r = run_batch(study, out, workers=1, params={"analyze": {"delay_s": 0.0, "x": 1}}, **FAKES)
    assert r.n_done == 1  # the field was analysed again, to the same nuclei: the journal still fits
    assert (field / "review.ann.jsonl").read_text() == '{"action": "confirm"}\n'
    assert (field / "nuclei.reviewed.ann.csv").exists()
    # analysed again to other nuclei: the journal no longer fits; kept as .stale (not replayed, not lost), so the
    # run's other reviewed fields still rescore
    (study / "P01" / "week00" / "field01.ome.tif").unlink()
    _write_field(study / "P01" / "week00" / "field01.ome.tif", 99, rows=9)
    r = run_batch(study, out, workers=1, params={"analyze": {"delay_s": 0.0, "x": 1}}, **FAKES)
    assert r.n_done == 1 and not (field / "review.ann.jsonl").exists()
    assert (field / "review.ann.jsonl.stale").read_text() == '{"action": "confirm"}\n'
    assert (field / "nuclei.reviewed.ann.csv.stale").exists()
    run_batch(study, out, workers=1, params={"analyze": {"delay_s": 0.0, "x": 2}}, **FAKES)
    assert (field / "review.ann.jsonl.stale").exists()  # carried again, never lost


def test_a_run_killed_mid_swap_gets_its_old_field_back(tmp_path):
    """Between moving the old field folder aside and renaming the new one in (file systems without an atomic
    exchange), a kill leaves .trash-<tag>-<name>: the next run puts it back, not deletes it."""
    fields = tmp_path / "fields" / "P01" / "week00"
    aside = fields / ".trash-0123abcd-field01"
    aside.mkdir(parents=True)
    (aside / "review.ann.jsonl").write_text("edits")
    (fields / ".tmp-0123456789ab").mkdir()
    batch._cleanup_stale(tmp_path / "fields")
    assert (fields / "field01" / "review.ann.jsonl").read_text() == "edits"
    assert sorted(p.name for p in fields.iterdir()) == ["field01"]


def test_the_run_lock_has_one_holder_when_runs_start_together(tmp_path):
    """The lock file appears with its owner written in it: a run starting at the same moment never reads it
    empty and takes it for a dead run's."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for k in range(8):
        d = tmp_path / f"o{k}"
        d.mkdir()
        q, bar = ctx.Queue(), ctx.Barrier(3)
        procs = [ctx.Process(target=_take_lock, args=(str(d), q, bar)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert sum(q.get(timeout=10) for _ in range(3)) == 1


def test_the_run_lock_on_a_file_system_without_hard_links(tmp_path, monkeypatch):
    """FAT, exFAT and many SMB shares refuse link(): the lock is then created exclusively, as before."""
    import errno

    def no_links(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    lock = batch._acquire_run_lock(tmp_path)
    assert lock.read_text().split()[0] == str(os.getpid())
    batch._release_run_lock(lock)
    assert not lock.exists() and list(tmp_path.iterdir()) == []


def _take_lock(d, q, bar):
    bar.wait()
    try:
        batch._acquire_run_lock(Path(d))
        q.put(1)
        time.sleep(0.3)
    except InputError:
        q.put(0)


def test_a_study_whose_every_field_fails_is_still_scored_and_reported(tmp_path):
    """Every field failed (e.g. the wrong panel): the samples are scored from 0 nuclei (not evaluable), so
    samples.csv, response.csv and the report say so (intention to treat), and the summary line counts fields
    and samples apart."""
    from click.testing import CliRunner

    from fishcount.cli import main

    study = tmp_path / "study"
    for p in ("P01", "P02"):
        for t in ("week00", "week16"):
            (study / p / t).mkdir(parents=True)
            (study / p / t / "field01.ome.tif").write_bytes(b"garbage")
    r = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "o"), "--workers", "1", "-q"])
    assert r.exit_code == 1, r.output
    assert "completed with 8 error(s) (4 field(s) failed, 4 sample or threshold error(s))" in r.output
    s = pd.read_csv(tmp_path / "o" / "samples.csv")
    assert len(s) == 4 and s["nuclei_scored"].eq(0).all()
    resp = pd.read_csv(tmp_path / "o" / "response.csv")
    assert sorted(resp["patient"]) == ["P01", "P02"] and resp["best_response"].eq("not_evaluable").all()
    assert (tmp_path / "o" / "report.html").is_file()
