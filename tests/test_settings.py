"""Laboratory settings files (fishcount.settings): validation, the CLI's --settings and `fishcount settings`."""
from __future__ import annotations

import json
import shutil
import tomllib

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings as hsettings, strategies as st

import fishcount as fc
from fishcount.analyze import DETECTION_DEFAULTS
from fishcount.cli import main
from fishcount.errors import InputError
from fishcount.segment import CLASSICAL_DEFAULTS, QC_DEFAULTS, _SCHEMA
from fishcount.settings import DETECTION_RANGES, load_settings, settings_template, validate_settings


def _write(tmp_path, text, name="lab.toml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_load_settings_known_values(tmp_path):
    p = _write(tmp_path, "schema_version = 1\n[detection]\nboundary_diameters = 1.5\n"
                         "[segmentation]\nmarkers = \"log\"\nworking_diameter_px = 24\n"
                         "[qc]\nmin_focus_vs_median = 0.5\n")
    s = load_settings(p)
    assert s.detection == {"boundary_diameters": 1.5}
    assert s.segmentation == {"markers": "log", "working_diameter_px": 24.0}
    assert s.qc == {"min_focus_vs_median": 0.5}
    assert s.n_values == 4 and s.path == str(p) and len(s.sha256) == 64
    assert s.analyze_params() == {"boundary_diameters": 1.5, "markers": "log", "working_diameter_px": 24.0,
                                  "qc": {"min_focus_vs_median": 0.5}}
    assert s.segment_params() == {"markers": "log", "working_diameter_px": 24.0, "qc": {"min_focus_vs_median": 0.5}}
    # every table optional; an empty file changes nothing
    empty = load_settings(_write(tmp_path, "", "empty.toml"))
    assert empty.n_values == 0 and empty.analyze_params() == {} and empty.segment_params() == {}


@pytest.mark.parametrize("text, message", [
    ("[detection]\nboundary_diameter = 2\n", "[detection] unknown field(s) boundary_diameter"),
    ("[detection]\nboundary_diameters = -1\n", "[detection] boundary_diameters must be in [0.0, 10.0], got -1"),
    ("[detection]\nmin_auto_snr = \"high\"\n", "[detection] min_auto_snr must be a number"),
    ("[detection]\nmin_auto_snr = true\n", "[detection] min_auto_snr must be a number"),
    ("[detection]\nmin_auto_snr = nan\n", "[detection] min_auto_snr must be a number"),
    ("[detection]\nz_step_um = 0.3\n", "[detection] z_step_um: the z step belongs to the images"),
    ("[qc]\nmin_solidity = 1.5\n", "[qc] min_solidity must be in [0.0, 1.0], got 1.5"),
    ("[segmentation]\nmarkers = \"stardist\"\n", "[segmentation] markers must be one of ('dt', 'log')"),
    ("[segmentation]\nlevel_split_low = 0.8\nlevel_split_high = 0.5\n", "level_split_low (0.8) must not exceed"),
    ("[segmentation]\nlevel_split_levels = 2.5\n", "[segmentation] level_split_levels must be a whole number, got 2.5"),
    ("[segmentation]\nopening_keep_radius_px = 1.5\n", "opening_keep_radius_px must be a whole number, got 1.5"),
    ("[scale]\nnucleus_diameter_um = 8\n", "unknown field(s) scale"),
    ("detection = 3\n", "[detection] must be a table"),
    ("schema_version = 2\n", "schema_version 2 is not supported"),
    ("[detection\n", "not a valid TOML settings file"),
])
def test_load_settings_refuses_with_one_line(tmp_path, text, message):
    p = _write(tmp_path, text)
    with pytest.raises(InputError) as exc:
        load_settings(p)
    assert message in str(exc.value) and str(p) in str(exc.value) and "\n" not in str(exc.value)


def test_load_settings_missing_or_unreadable(tmp_path):
    with pytest.raises(InputError, match="settings file not found"):
        load_settings(tmp_path / "nope.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[qc]")
    with pytest.raises(InputError, match="not UTF-8"):
        load_settings(tmp_path / "bin.toml")


def test_ranges_cover_every_detection_parameter_and_defaults_are_valid():
    """The template's defaults pass validation: every documented default lies in its own range."""
    assert set(DETECTION_RANGES) == set(DETECTION_DEFAULTS)
    # analyze_field routes a keyword by name (detection, else segmentation): the tables must never share one
    assert not set(DETECTION_DEFAULTS) & set(CLASSICAL_DEFAULTS)
    text = settings_template()
    assert "z_step_um" not in text
    uncommented = "\n".join(line[2:] if line.startswith("# ") and " = " in line else line
                            for line in text.splitlines())
    data = tomllib.loads(uncommented)
    s = validate_settings(data, "template")
    assert s.segmentation == {k: v for k, v in CLASSICAL_DEFAULTS.items()}
    assert s.qc == QC_DEFAULTS
    assert s.detection == {k: v for k, v in DETECTION_DEFAULTS.items() if k != "z_step_um"}
    assert tomllib.loads(text) == {"schema_version": 1, "detection": {}, "segmentation": {}, "qc": {}}


_NUMERIC = [(t, k, lo, hi) for t, sch in (("segmentation", _SCHEMA["classical"]), ("qc", _SCHEMA["qc"]))
            for k, (typ, lo, hi) in sch.items() if typ is float] + \
           [("detection", k, lo, hi) for k, (lo, hi) in DETECTION_RANGES.items() if k != "z_step_um"]


@hsettings(max_examples=150, deadline=None)
@given(st.sampled_from(_NUMERIC), st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_property_a_value_is_accepted_exactly_when_in_its_range(spec, value):
    table, key, lo, hi = spec
    inside = lo <= value and (hi is None or value <= hi)
    if key in ("level_split_low", "level_split_high"):  # the pair must stay ordered
        other = CLASSICAL_DEFAULTS["level_split_high" if key == "level_split_low" else "level_split_low"]
        inside = inside and (value <= other if key == "level_split_low" else value >= other)
    if inside:
        s = validate_settings({table: {key: value}})
        assert getattr(s, table) == {key: float(value)}
    else:
        with pytest.raises(InputError, match=rf"\[{table}\] (level_split_low .*)?{key}"):
            validate_settings({table: {key: value}})


def _sample_field(tmp_path):
    sim = fc.simulate_field("del5q", shape=(320, 320), seed=11)
    img = tmp_path / "in" / "f1.ome.tif"
    fc.write_simulated_field(sim, img)
    return img


def test_cli_analyze_and_segment_with_settings(tmp_path):
    """The values reach detection, counting and QC (recorded in field.json); [segmentation] with another
    backend and a bad file are refused before any output."""
    img = _sample_field(tmp_path)
    lab = _write(tmp_path, "[detection]\nboundary_diameters = 0\nmin_auto_snr = 5.5\n"
                           "[qc]\nmin_focus_vs_median = 0.95\nmin_area_fraction = 0.5\n")
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "a"), "--no-overlay"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "b"), "--no-overlay",
                                  "--settings", str(lab)])
    assert r.exit_code == 0, r.output
    pa = json.loads((tmp_path / "a" / "f1" / "field.json").read_text())["params"]
    pb = json.loads((tmp_path / "b" / "f1" / "field.json").read_text())["params"]
    assert pa["detection"]["boundary_diameters"] == 1.0 and pb["detection"]["boundary_diameters"] == 0.0
    assert pb["detection"]["min_auto_snr"] == 5.5
    assert pb["segmentation"]["qc"]["min_focus_vs_median"] == 0.95
    assert pb["segmentation"]["qc"]["min_area_fraction"] == 0.5
    na = pd.read_csv(tmp_path / "a" / "f1" / "nuclei.csv", keep_default_na=False)
    nb = pd.read_csv(tmp_path / "b" / "f1" / "nuclei.csv", keep_default_na=False)
    assert not nb["exclusion_reason"].str.contains("signal_at_boundary").any()
    assert nb["exclusion_reason"].str.contains("out_of_focus").sum() > na["exclusion_reason"].str.contains(
        "out_of_focus").sum()
    # segment: [segmentation] and [qc] apply, [detection] is not a segmentation parameter
    r = CliRunner().invoke(main, ["segment", str(img), "--out", str(tmp_path / "s"), "--settings", str(lab)])
    assert r.exit_code == 0, r.output
    qc = pd.read_csv(tmp_path / "s" / "f1" / "nuclei_qc.csv", keep_default_na=False)
    assert (qc["exclusion_reason"].str.contains("out_of_focus").sum()
            == nb["exclusion_reason"].str.contains("out_of_focus").sum())
    seg_lab = _write(tmp_path, "[segmentation]\nworking_diameter_px = 24\n", "seg.toml")
    r = CliRunner().invoke(main, ["analyze", str(img), "--out", str(tmp_path / "c"), "--settings", str(seg_lab),
                                  "--backend", "cellpose"])
    assert r.exit_code == 2 and "[segmentation] sets classical segmentation parameters" in r.output
    bad = _write(tmp_path, "[qc]\nmin_focus = -1\n", "bad.toml")
    for cmd in ("analyze", "segment"):
        r = CliRunner().invoke(main, [cmd, str(img), "--out", str(tmp_path / "d"), "--settings", str(bad)])
        assert r.exit_code == 2 and r.output.startswith(f"fishcount: error: {bad}: [qc] min_focus must be >= 0")
        assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_cli_run_with_settings_records_and_redoes(tmp_path):
    """run --settings: the values reach every field and run.json; changed settings redo the fields,
    the same settings resume."""
    img = _sample_field(tmp_path)
    study = tmp_path / "study"
    (study / "P01" / "week00").mkdir(parents=True)
    shutil.copy(img, study / "P01" / "week00" / "field01.ome.tif")
    lab = _write(tmp_path, "[detection]\nboundary_diameters = 1.5\n")
    args = ["run", str(study), "--out", str(tmp_path / "o"), "--workers", "1", "--quiet", "--no-report"]
    r = CliRunner().invoke(main, [*args, "--settings", str(lab)])
    assert r.exit_code == 0, r.output
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["parameters"]["params"]["analyze"] == {"boundary_diameters": 1.5}
    assert run["settings"]["path"] == str(lab) and len(run["settings"]["sha256"]) == 64
    assert run["settings"]["values"] == {"detection": {"boundary_diameters": 1.5}, "segmentation": {}, "qc": {}}
    fj = next((tmp_path / "o" / "fields").rglob("field.json"))
    assert json.loads(fj.read_text())["params"]["detection"]["boundary_diameters"] == 1.5
    r = CliRunner().invoke(main, [*args, "--settings", str(lab)])
    assert r.exit_code == 0 and json.loads((tmp_path / "o" / "run.json").read_text())["counts"]["skipped"] == 1
    lab.write_text("[detection]\nboundary_diameters = 0.5\n", encoding="utf-8")
    r = CliRunner().invoke(main, [*args, "--settings", str(lab)])
    assert r.exit_code == 0, r.output
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["counts"]["analysed"] == 1 and run["counts"]["skipped"] == 0
    assert json.loads(fj.read_text())["params"]["detection"]["boundary_diameters"] == 0.5
    r = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "o2"), "--settings",
                                  str(tmp_path / "nope.toml")])
    assert r.exit_code == 2 and "settings file not found" in r.output and not (tmp_path / "o2").exists()
    seg_lab = _write(tmp_path, "[segmentation]\nworking_diameter_px = 24\n", "seg.toml")
    from fishcount.segment import register_backend, segment_classical

    register_backend("settings-test", segment_classical)
    r = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "o3"), "--settings", str(seg_lab),
                                  "--backend", "settings-test", "--workers", "1"])
    assert r.exit_code == 2 and "[segmentation] sets classical segmentation parameters" in r.output
    assert not (tmp_path / "o3").exists()
    # explicit analysis parameters in Python win over the file's; the report names the file
    from fishcount.batch import run_batch

    run_batch(study, tmp_path / "o4", workers=1, quiet=True, settings=lab,
              params={"analyze": {"boundary_diameters": 2.0}})
    fj = next((tmp_path / "o4" / "fields").rglob("field.json"))
    assert json.loads(fj.read_text())["params"]["detection"]["boundary_diameters"] == 2.0
    html = (tmp_path / "o4" / "report.html").read_text(encoding="utf-8")
    assert "laboratory settings" in html and str(lab) in html
    # a qc dict in params adds to the file's [qc], key by key (it does not drop the file's other values)
    qlab = _write(tmp_path, "[qc]\nmin_focus_vs_median = 0.3\nmax_area_fraction = 5.0\n", "q.toml")
    run_batch(study, tmp_path / "o5", workers=1, quiet=True, report=False, settings=qlab,
              params={"analyze": {"qc": {"max_area_fraction": 6.0}}})
    fj = next((tmp_path / "o5" / "fields").rglob("field.json"))
    qc = json.loads(fj.read_text())["params"]["segmentation"]["qc"]
    assert qc["min_focus_vs_median"] == 0.3 and qc["max_area_fraction"] == 6.0


def test_cli_settings_template_and_check(tmp_path):
    r = CliRunner().invoke(main, ["settings"])
    assert r.exit_code == 0 and r.output == settings_template()
    lab = _write(tmp_path, "[detection]\nboundary_diameters = 1.5\n[segmentation]\nmarkers = \"log\"\n")
    r = CliRunner().invoke(main, ["settings", str(lab)])
    assert r.exit_code == 0, r.output
    assert f"{lab}: valid, 2 value(s) differ from the defaults" in r.output
    assert "[detection] boundary_diameters = 1.5 (default 1)" in r.output
    assert "[segmentation] markers = log (default dt)" in r.output
    same = _write(tmp_path, "[detection]\nboundary_diameters = 1.5\nmin_auto_snr = 4.5\n", "same.toml")
    r = CliRunner().invoke(main, ["settings", str(same)])  # a value at its default is not listed as a change
    assert f"{same}: valid, 1 value(s) differ from the defaults (1 more set to their default)" in r.output
    assert "min_auto_snr" not in r.output
    r = CliRunner().invoke(main, ["settings", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2 and "settings file not found" in r.output


def test_settings_in_python_match_keywords():
    """analyze_params() gives the same analysis as the keywords written out."""
    sim = fc.simulate_field("del5q", shape=(256, 256), seed=3)
    arrays = {n: sim.image[i] for i, n in enumerate(sim.channel_names)}
    s = validate_settings({"detection": {"boundary_diameters": 0.0}, "qc": {"min_focus_vs_median": 0.9}})
    a = fc.analyze_field(arrays, pixel_size_um=sim.pixel_size_um, **s.analyze_params())
    b = fc.analyze_field(arrays, pixel_size_um=sim.pixel_size_um, boundary_diameters=0.0,
                         qc={"min_focus_vs_median": 0.9})
    pd.testing.assert_frame_equal(a.nuclei, b.nuclei)
    assert np.array_equal(a.labels, b.labels)


def test_calibration_commands_take_settings(tmp_path):
    """channel-shift and crosstalk analyse their control fields with the laboratory's settings too."""
    sim = fc.simulate_field("kmt2a", shape=(384, 384), seed=2)
    img = tmp_path / "c.ome.tif"
    fc.write_simulated_field(sim, img)
    strict = _write(tmp_path, "[detection]\nmin_auto_snr = 400\n")  # no signal reaches it: no pairs
    r = CliRunner().invoke(main, ["channel-shift", str(img), "--panel", "kmt2a"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["channel-shift", str(img), "--panel", "kmt2a", "--settings", str(strict)])
    assert r.exit_code == 2 and "pairs within" in r.output
    bad = _write(tmp_path, "[qc]\nmin_solidity = 3\n", "bad.toml")
    for cmd, panel in (("channel-shift", "kmt2a"), ("crosstalk", "del5q")):
        r = CliRunner().invoke(main, [cmd, str(img), "--panel", panel, "--settings", str(bad)])
        assert r.exit_code == 2 and "[qc] min_solidity must be in [0.0, 1.0]" in r.output
