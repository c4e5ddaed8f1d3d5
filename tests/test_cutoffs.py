"""Laboratory cut-offs: clinical.md §3.3 tables, §6.3 vector 7, per-N recomputation, TOML files, CLI."""
from __future__ import annotations

import re
import tomllib

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from fishcount.cli import main
from fishcount.cutoffs import (
    CutoffRule,
    compute_cutoffs,
    controls_from_tables,
    cutoff_for_n,
    cutoffs_from_dict,
    load_cutoffs,
    provisional_cutoffs,
    write_cutoffs,
)
from fishcount.errors import FishcountError, InputError


def betainv(kmax, cl=0.95, kmax_at_n="fixed"):
    return CutoffRule("betainv", cl, 200, kmax=kmax, kmax_at_n=kmax_at_n)


# clinical.md §3.3, computed cut-offs for N = 200 [C]
@pytest.mark.parametrize(
    "k, bi95, cp95, bi99",
    [(0, 1.49, 1.49, 2.28), (1, 2.34, 2.35, 3.26), (2, 3.08, 3.11, 4.10), (3, 3.78, 3.83, 4.86),
     (4, 4.43, 4.52, 5.58), (5, 5.06, 5.18, 6.27), (6, 5.67, 5.83, 6.93), (8, 6.83, 7.10, 8.18),
     (10, 7.94, 8.33, 9.36)],
)
def test_clinical_md_cutoff_table(k, bi95, cp95, bi99):
    assert round(cutoff_for_n(betainv(k), 200), 2) == bi95
    assert round(cutoff_for_n(CutoffRule("exact", 0.95, 200, kmax=k, kmax_at_n="fixed"), 200), 2) == cp95
    assert round(cutoff_for_n(betainv(k, 0.99), 200), 2) == bi99


@pytest.mark.parametrize("rate, pct", [(0.005, 1.5), (0.01, 2.5), (0.015, 3.0), (0.02, 3.5), (0.03, 5.0)])
def test_critbinom_table(rate, pct):
    assert cutoff_for_n(CutoffRule("binomial", 0.95, 200, mean_rate=rate), 200) == pytest.approx(pct)


def test_provisional_default_vector7_and_not_validated():
    cs = provisional_cutoffs()
    assert cs.validated is False
    assert round(cutoff_for_n(cs.clone, 200), 2) == 3.78
    assert round(cutoff_for_n(cs.clone, 100), 2) == 7.36  # clinical.md §6.3 vector 7
    assert round(cutoff_for_n(cs.clone, 500), 2) == 2.70  # kmax 7.5 per 500: never below the rate
    assert cs.rule_for("del5q") == cs.default
    assert "provisional" in cs.label
    assert load_cutoffs(None) == cs


def test_mean3sd_rescales_sd_with_n():
    rule = CutoffRule("mean3sd", 0.95, 200, mean_rate=0.01, sd_rate=0.005)
    assert cutoff_for_n(rule, 200) == pytest.approx(100 * (0.01 + 0.015))
    assert cutoff_for_n(rule, 800) == pytest.approx(100 * (0.01 + 3 * 0.005 / 2))


def test_zero_nuclei_gives_nan():
    assert np.isnan(cutoff_for_n(betainv(3), 0))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(k=st.integers(0, 30), n=st.integers(50, 1000), method=st.sampled_from(["betainv", "exact"]),
       scaling=st.sampled_from(["fixed", "proportional"]))
def test_cutoff_monotone_in_kmax(k, n, method, scaling):
    lo = cutoff_for_n(CutoffRule(method, 0.95, 200, kmax=k, kmax_at_n=scaling), n)
    hi = cutoff_for_n(CutoffRule(method, 0.95, 200, kmax=k + 1, kmax_at_n=scaling), n)
    assert hi > lo


@settings(max_examples=60, deadline=None, derandomize=True)
@given(k=st.integers(0, 20), n=st.integers(20, 2000), method=st.sampled_from(["betainv", "exact"]))
def test_cutoff_recomputed_per_n(k, n, method):
    fixed = CutoffRule(method, 0.95, 200, kmax=k, kmax_at_n="fixed")
    prop = CutoffRule(method, 0.95, 200, kmax=k, kmax_at_n="proportional")
    # with kmax fixed, more nuclei -> lower cut-off; the proportional rule equals it at the controls' N
    assert cutoff_for_n(fixed, n + 50) < cutoff_for_n(fixed, n)
    cons = CutoffRule(method, 0.95, 200, kmax=k, kmax_at_n="conservative")
    assert cutoff_for_n(prop, 200) == pytest.approx(cutoff_for_n(fixed, 200)) == pytest.approx(cutoff_for_n(cons, 200))
    assert 0 < cutoff_for_n(prop, n) < 100
    assert cutoff_for_n(cons, n) >= max(cutoff_for_n(fixed, n), cutoff_for_n(prop, n)) - 1e-12


def _controls():
    del5q = [0, 1, 2, 3, 1, 0, 1, 1, 2, 0, 0, 1, 1, 0, 0, 2, 1, 1, 0, 1]
    mono = [0] * 19 + [2]
    return pd.DataFrame({"nuclei_scored": [200] * 20, "n_del5q": del5q, "n_monosomy5": mono})


@pytest.mark.parametrize("method", ["betainv", "exact", "binomial", "mean3sd"])
def test_compute_cutoffs_from_controls(method):
    c = _controls()
    cs = compute_cutoffs(c, "del5q", method=method)
    assert cs.validated and cs.panel == "del5q"
    assert cs.clone.controls == 20 and cs.clone.nuclei_per_control == 200
    assert cs.calls["del5q"].kmax == 3
    assert cs.clone.kmax == 3  # control 20: 1 del5q + 2 monosomy5
    assert cs.calls["monosomy5"].kmax == 2
    assert cs.calls["del5q"].mean_rate == pytest.approx(c["n_del5q"].sum() / 4000)
    assert cs.calls["del5q"].sd_rate == pytest.approx(np.std(c["n_del5q"] / 200, ddof=1))
    assert set(cs.calls) == {"del5q", "monosomy5", "gain5", "gain5q", "gain5p", "loss5p"}
    if method == "betainv":
        assert round(cutoff_for_n(cs.clone, 200), 2) == 3.78


def test_compute_cutoffs_unequal_n_scales_kmax():
    c = pd.DataFrame({"nuclei_scored": [100, 200, 200], "n_del5q": [3, 2, 1], "n_monosomy5": [0, 0, 0]})
    cs = compute_cutoffs(c, "del5q")
    assert cs.clone.nuclei_per_control == 200
    assert cs.clone.kmax == pytest.approx(6.0)  # 3/100 at 200 nuclei


def test_write_and_load_round_trip(tmp_path):
    cs = compute_cutoffs(_controls(), "del5q", method="binomial", laboratory='Lab "A"')
    p = write_cutoffs(cs, tmp_path / "cutoffs.toml", controls_files=["a.csv"])
    back = load_cutoffs(p)
    assert back.validated and back.panel == "del5q" and back.laboratory == 'Lab "A"'
    assert back.clone == cs.clone and dict(back.calls) == dict(cs.calls)
    with pytest.raises(InputError, match="exists already"):
        write_cutoffs(cs, p)
    assert tomllib.loads(p.read_text())["clone"]["cutoff_pct_at_reference"] == round(cutoff_for_n(cs.clone, 200), 4)


BASE = {"type": "cutoffs", "validated": True, "clone": {"method": "betainv", "kmax": 3}}


@pytest.mark.parametrize(
    "patch, match",
    [({"clone": {"method": "magic", "kmax": 3}}, "method must be one of"),
     ({"clone": {"method": "betainv"}}, "needs kmax"),
     ({"clone": {"method": "binomial"}}, "needs mean_rate"),
     ({"clone": {"method": "mean3sd", "mean_rate": 0.01}}, "needs sd_rate"),
     ({"clone": {"method": "betainv", "kmax": 3, "confidence": 1.5}}, "confidence"),
     ({"clone": {"method": "betainv", "kmax": 3, "kmax_at_n": "sometimes"}}, "kmax_at_n"),
     ({"clone": {"method": "betainv", "kmax": 3, "colour": 1}}, "unknown field"),
     ({"validated": "yes"}, "validated must be true or false"),
     ({"type": "response-criteria"}, "type is"),
     ({"schema_version": 2}, "schema_version"),
     ({"extra": 1}, "unknown field"),
     ({"calls": {"del5q": 3}}, r"\[calls.del5q\] must be a table")],
)
def test_cutoffs_file_errors(patch, match):
    data = {**BASE, **patch}
    with pytest.raises(InputError, match=match):
        cutoffs_from_dict(data, "lab.toml")


def test_missing_clone_table():
    with pytest.raises(InputError, match=r"\[clone\]"):
        cutoffs_from_dict({"type": "cutoffs"}, "lab.toml")


def test_load_cutoffs_file_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_cutoffs(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("clone = [")
    with pytest.raises(InputError, match="not valid TOML") as ei:
        load_cutoffs(bad)
    assert str(bad) in str(ei.value)


@pytest.mark.parametrize(
    "table, match",
    [(pd.DataFrame({"nuclei_scored": [200, 0], "n_del5q": [1, 0]}), "row 3, column 'nuclei_scored'"),
     (pd.DataFrame({"nuclei_scored": [200, 200], "n_del5q": [1, -1]}), "row 3, column 'n_del5q': negative"),
     (pd.DataFrame({"nuclei_scored": [200, 200], "n_del5q": [1, 201]}), "more nuclei than"),
     (pd.DataFrame({"nuclei_scored": [200, "x"], "n_del5q": [1, 1]}), "row 3, column 'nuclei_scored'"),
     (pd.DataFrame({"n_del5q": [1]}), "nuclei_scored' is missing"),
     (pd.DataFrame({"nuclei_scored": []}), "no control samples")],
)
def test_compute_cutoffs_input_errors(table, match):
    with pytest.raises(InputError, match=match):
        compute_cutoffs(table, "del5q", source="controls.csv")


def test_compute_cutoffs_bad_options():
    with pytest.raises(InputError, match="unknown cut-off method"):
        compute_cutoffs(_controls(), "del5q", method="x")
    with pytest.raises(InputError, match="confidence"):
        compute_cutoffs(_controls(), "del5q", confidence=95)
    with pytest.raises(InputError, match="kmax_at_n"):
        compute_cutoffs(_controls(), "del5q", kmax_at_n="x")


def _nuclei(n_norm, n_del, patient="C1"):
    rows = [{"label": i + 1, "count_EGR1": 2, "count_D5S23": 2, "pattern": "2O2G", "call": "normal",
             "scorable": True, "exclusion_reason": ""} for i in range(n_norm)]
    rows += [{"label": n_norm + i + 1, "count_EGR1": 1, "count_D5S23": 2, "pattern": "1O2G", "call": "del5q",
              "scorable": True, "exclusion_reason": ""} for i in range(n_del)]
    df = pd.DataFrame(rows)
    df["patient"] = patient
    return df


def test_controls_from_nuclei_and_samples_tables(tmp_path):
    a = tmp_path / "c1_nuclei.csv"
    pd.concat([_nuclei(198, 2, "C1"), _nuclei(199, 1, "C2")]).to_csv(a, index=False)
    b = tmp_path / "samples.csv"
    pd.DataFrame({"nuclei_scored": [200], "n_del5q": [4]}).to_csv(b, index=False)
    t = controls_from_tables([a, b], "del5q")
    assert len(t) == 3 and sorted(t["n_del5q"].tolist()) == [1, 2, 4]
    cs = compute_cutoffs(t, "del5q")
    assert cs.calls["del5q"].kmax == 4
    bad = tmp_path / "other.csv"
    pd.DataFrame({"x": [1]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match="not a control table") as ei:
        controls_from_tables([bad], "del5q")
    assert str(bad) in str(ei.value)
    # a bad count names its own file, row (CSV line) and column, not the pooled table's
    for counts, msg in (([200, 200], None), ([3, -1], r"row 3, column 'n_del5q': expected a whole number >= 0, "
                                                        r"got -1$"),
                        ([3, 250], r"row 3, column 'n_del5q': 250 nuclei > 200 scored \(nuclei_scored\)$"),
                        ([3, 1.5], r"row 3, column 'n_del5q': expected a whole number >= 0, got 1.5$")):
        c = tmp_path / "c3.csv"
        pd.DataFrame({"nuclei_scored": [200, 200], "n_del5q": counts}).to_csv(c, index=False)
        if msg is None:
            assert len(controls_from_tables([b, c], "del5q")) == 3
            continue
        with pytest.raises(InputError, match=re.escape(str(c)) + ": " + msg):
            controls_from_tables([b, c], "del5q")


def test_cli_cutoff(tmp_path):
    a = tmp_path / "ctrl_nuclei.csv"
    pd.concat([_nuclei(197, 3, "C1"), _nuclei(200, 0, "C2")]).to_csv(a, index=False)
    out = tmp_path / "cutoffs.toml"
    r = CliRunner().invoke(main, ["cutoff", str(a), "--out", str(out), "--method", "exact"])
    assert r.exit_code == 0, r.output
    cs = load_cutoffs(out)
    assert cs.validated and cs.clone.method == "exact" and cs.clone.kmax == 3 and cs.clone.controls == 2
    assert "3.83%" in r.output  # exact CP, kmax 3, N = 200
    r2 = CliRunner().invoke(main, ["cutoff", str(a), "--out", str(out)])
    assert r2.exit_code == 2 and "exists already" in r2.output and "Traceback" not in r2.output
    r3 = CliRunner().invoke(main, ["cutoff", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x.toml")])
    assert r3.exit_code == 2 and "file not found" in r3.output
    assert not (tmp_path / "x.toml").exists()


def test_scoring_rejects_cutoffs_of_another_panel():
    from fishcount.scoring import score_sample

    cs = compute_cutoffs(pd.DataFrame({"nuclei_scored": [200], "n_trisomy8": [1]}), "cep8")
    with pytest.raises(FishcountError, match="not 'del5q'"):
        score_sample(_nuclei(10, 1), "del5q", cs)


def test_lab_cutoffs_file_flows_into_samples(tmp_path):
    from fishcount.scoring import score_samples

    p = write_cutoffs(compute_cutoffs(_controls(), "del5q"), tmp_path / "lab.toml")
    s = score_samples(_nuclei(196, 4), "del5q", cutoffs=str(p)).iloc[0]
    assert bool(s.cutoff_validated) and "provisional" not in s.cutoff_method and "not validated" not in s.caveat
    assert round(s.cutoff_pct, 2) == 3.78 and round(s.cutoff_pct_monosomy5, 2) == 3.08
    assert not bool(s.positive) and s.clone_pct == 2.0  # 4/200 = 2 % is below 3.78 %


@settings(max_examples=40, deadline=None, derandomize=True)
@given(method=st.sampled_from(["betainv", "exact", "binomial", "mean3sd"]),
       conf=st.floats(0.5, 0.999), n_ref=st.integers(20, 1000), controls=st.integers(0, 100),
       kmax=st.integers(0, 20), rate=st.floats(0, 0.2), sd=st.floats(0, 0.1),
       scaling=st.sampled_from(["conservative", "fixed", "proportional"]), validated=st.booleans())
def test_cutoffs_toml_round_trip(method, conf, n_ref, controls, kmax, rate, sd, scaling, validated):
    rule = CutoffRule(method, conf, n_ref, controls, float(min(kmax, n_ref)), rate, sd, scaling)
    from fishcount.cutoffs import CutoffSet, cutoffs_to_toml
    cs = CutoffSet(clone=rule, calls={"del5q": rule}, default=rule, validated=validated, panel="del5q")
    back = cutoffs_from_dict(tomllib.loads(cutoffs_to_toml(cs)), "x.toml")
    assert back.clone == rule and back.calls["del5q"] == rule and back.default == rule
    assert back.validated == validated
    for n in (50, 200, 500):
        assert cutoff_for_n(back.clone, n) == pytest.approx(cutoff_for_n(rule, n))


def test_cutoffs_of_another_panel_are_refused_everywhere(tmp_path):
    """Controls of another panel, a cut-offs file of another panel in `response`, and in `run` before any work."""
    import fishcount as fc
    from fishcount.batch import run_batch
    from fishcount.response import classify_response

    ctl = tmp_path / "ctl.csv"
    ctl.write_text("sample,panel,nuclei_scored,nuclei_abnormal,n_trisomy8\nC1,cep8,200,2,2\nC2,cep8,200,1,1\n")
    with pytest.raises(InputError, match=r"ctl.csv: controls of panel cep8 \(column panel\), but the cut-offs are "
                                         r"computed for panel del5q; give --panel cep8"):
        controls_from_tables([ctl], "del5q")
    cs = compute_cutoffs(controls_from_tables([ctl], "cep8"), "cep8")
    toml = tmp_path / "c.toml"
    write_cutoffs(cs, toml)
    s = pd.DataFrame({"patient": ["P1", "P1"], "week": [0, 16], "panel": ["del5q", "del5q"],
                      "nuclei_scored": [200, 200], "nuclei_abnormal": [100, 8]})
    with pytest.raises(InputError, match=r"cut-offs are for panel 'cep8', not 'del5q'"):
        classify_response(s, cutoffs=toml)
    study = tmp_path / "study" / "P1" / "week00"
    fc.write_simulated_field(fc.simulate_field("del5q", shape=(96, 96), seed=1), study / "f1.ome.tif")
    with pytest.raises(InputError, match=r"cut-offs are for panel 'cep8', not 'del5q' \(the study's panel\)"):
        run_batch(tmp_path / "study", tmp_path / "out", cutoffs=toml, quiet=True)
    assert not (tmp_path / "out").exists()


def test_cutoffs_by_panel_one_file_per_panel_of_a_mixed_study(tmp_path):
    """Several cut-offs files: each panel its own, else the '*' one, else the provisional default; two for one
    panel, one for a panel not in the study, or several for a table naming no panel are refused."""
    from fishcount.cutoffs import CutoffSet, cutoffs_by_panel

    def lab(panel, kmax, name):
        cs = CutoffSet(clone=CutoffRule("betainv", 0.95, 200, 20, float(kmax)), validated=True, panel=panel)
        return str(write_cutoffs(cs, tmp_path / name))

    d5, c8, star = lab("del5q", 2, "d5.toml"), lab("cep8", 6, "c8.toml"), lab("*", 4, "any.toml")
    by = cutoffs_by_panel([d5, c8], ["del5q", "cep8", "del5q"])
    assert round(cutoff_for_n(by["del5q"].clone, 200), 2) == 3.08 and round(cutoff_for_n(by["cep8"].clone, 200), 2) == 5.67
    by = cutoffs_by_panel([d5, star], ["del5q", "cep8", "tp53"])
    assert by["del5q"].path == d5 and by["cep8"].path == star and by["tp53"].path == star
    by = cutoffs_by_panel([d5, c8], ["del5q", "cep8", "tp53"])  # tp53 has none: provisional, not validated
    assert not by["tp53"].validated and by["del5q"].validated
    assert cutoffs_by_panel(None, ["cep8"])["cep8"].validated is False
    assert cutoffs_by_panel([d5], ["del5q"])["del5q"].path == d5  # one item is one file
    with pytest.raises(InputError, match=r"c8.toml: cut-offs are for panel 'cep8', not 'del5q'"):
        cutoffs_by_panel(c8, ["del5q"])
    with pytest.raises(InputError, match=r"d5.toml: a second cut-offs file for panel 'del5q' \(the first: .*d5.toml\)"):
        cutoffs_by_panel([d5, d5], ["del5q"])
    with pytest.raises(InputError, match=r"any.toml: a second cut-offs file for any panel"):
        cutoffs_by_panel([star, star], ["del5q"])
    with pytest.raises(InputError, match=r"c8.toml: cut-offs for panel 'cep8', which is not a panel here \(del5q\)"):
        cutoffs_by_panel([d5, c8], ["del5q"])
    with pytest.raises(InputError, match=r"2 cut-offs files, but the table names no panel"):
        cutoffs_by_panel([d5, c8], [""])


def test_response_and_run_take_one_cutoffs_file_per_panel(tmp_path):
    """A mixed-panel samples table: each row's cut-off from its panel's file (`response --cutoffs` repeated); a
    mixed-panel run takes one file per panel and refuses a file of a panel it does not use before any work."""
    import fishcount as fc
    from fishcount.response import classify_response
    from fishcount.cutoffs import CutoffSet

    def lab(panel, kmax, name):
        cs = CutoffSet(clone=CutoffRule("betainv", 0.95, 200, 20, float(kmax)), validated=True, panel=panel)
        return str(write_cutoffs(cs, tmp_path / name))

    d5, c8 = lab("del5q", 2, "d5.toml"), lab("cep8", 6, "c8.toml")
    s = pd.DataFrame({"patient": ["P1", "P1", "P2", "P2"], "week": [0, 16, 0, 16],
                      "panel": ["del5q", "del5q", "cep8", "cep8"], "nuclei_scored": [200] * 4,
                      "nuclei_abnormal": [100, 8, 100, 10]})
    tp = classify_response(s, cutoffs=[d5, c8]).timepoints.set_index(["panel", "week"])
    assert round(tp.loc[("del5q", 16.0), "cutoff_pct"], 2) == 3.08 and round(tp.loc[("cep8", 16.0), "cutoff_pct"], 2) == 5.67
    s.to_csv(tmp_path / "samples.csv", index=False)
    r = CliRunner().invoke(main, ["response", str(tmp_path / "samples.csv"), "--cutoffs", d5, "--cutoffs", c8,
                                  "--out", str(tmp_path / "resp"), "--no-plots"])
    assert r.exit_code == 0, r.output
    tps = pd.read_csv(tmp_path / "resp" / "response_timepoints.csv")
    assert sorted(tps["cutoff_pct"].round(2).unique()) == [3.08, 5.67] and tps["cutoff_validated"].all()

    study = tmp_path / "study"
    for pid, patient, seed in (("del5q", "P01", 1), ("cep8", "P02", 2)):
        fc.write_simulated_field(fc.simulate_field(pid, shape=(128, 128), seed=seed),
                                 study / patient / "week00" / "field01.ome.tif")
    m = tmp_path / "manifest.csv"
    m.write_text("path,patient,timepoint,week,panel\nP01/week00/field01.ome.tif,P01,week00,0,del5q\n"
                 "P02/week00/field01.ome.tif,P02,week00,0,cep8\n")
    args = ["run", str(study), "--manifest", str(m), "--workers", "1", "--quiet", "--no-report"]
    r = CliRunner().invoke(main, [*args, "--cutoffs", d5, "--cutoffs", c8, "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    got = pd.read_csv(tmp_path / "o" / "samples.csv").set_index("panel")
    assert got.loc["del5q", "cutoff_validated"] and got.loc["cep8", "cutoff_validated"]
    assert "kmax=2@200" in got.loc["del5q", "cutoff_method"] and "kmax=6@200" in got.loc["cep8", "cutoff_method"]
    import json

    recs = json.loads((tmp_path / "o" / "run.json").read_text())["cutoffs"]  # what review-samples rescores with
    assert [(r["path"], r["panel"], r["validated"]) for r in recs] == [(d5, "del5q", True), (c8, "cep8", True)]
    assert all(len(r["sha256"]) == 64 for r in recs)
    tp53 = lab("tp53", 3, "tp53.toml")
    r = CliRunner().invoke(main, [*args, "--cutoffs", d5, "--cutoffs", tp53, "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "tp53.toml: cut-offs for panel 'tp53', which is not a panel here" in r.output
    assert not (tmp_path / "o2").exists()
