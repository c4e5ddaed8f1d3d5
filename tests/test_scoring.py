"""Sample scoring: Clopper–Pearson (clinical.md §6.1 R4), adequacy (R5), positivity (R6), ISCN (R7)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fishcount as fc
from fishcount.cutoffs import CutoffSet, CutoffRule, NOT_VALIDATED
from fishcount.errors import InputError
from fishcount.scoring import (
    ISCN_STYLES,
    IscnTemplate,
    adequacy_for_n,
    clopper_pearson,
    iscn_string,
    parse_iscn,
    read_table,
    score_sample,
    score_samples,
)

DEL5Q = fc.load_panel("del5q")


# --- Clopper–Pearson -------------------------------------------------------------------------
@pytest.mark.parametrize("x, n, lo, hi", [(120, 200, 52.9, 66.8), (50, 200, 19.2, 31.6), (6, 200, 1.1, 6.4),
                                          (0, 200, 0.0, 1.8), (10, 100, 4.9, 17.6)])
def test_clopper_pearson_vectors(x, n, lo, hi):
    a, b = clopper_pearson(x, n)
    assert (round(100 * a, 1), round(100 * b, 1)) == (lo, hi)


def test_clopper_pearson_edges_and_arrays():
    assert clopper_pearson(0, 10)[0] == 0.0
    assert clopper_pearson(10, 10)[1] == 1.0
    assert all(np.isnan(clopper_pearson(0, 0)))
    lo, hi = clopper_pearson(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert lo.shape == (3,) and lo[0] == 0 and hi[2] == 1
    with pytest.raises(ValueError):
        clopper_pearson(11, 10)
    with pytest.raises(ValueError):
        clopper_pearson(1, 10, confidence=95)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(n=st.integers(1, 2000), data=st.data())
def test_ci_contains_estimate_and_narrows_with_n(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = clopper_pearson(k, n)
    assert 0 <= lo <= k / n <= hi <= 1
    lo2, hi2 = clopper_pearson(4 * k, 4 * n)  # same proportion, four times the nuclei
    assert hi2 - lo2 < hi - lo


@settings(max_examples=40, deadline=None, derandomize=True)
@given(n=st.integers(1, 500), data=st.data())
def test_ci_wider_at_higher_confidence(n, data):
    k = data.draw(st.integers(0, n))
    lo95, hi95 = clopper_pearson(k, n, 0.95)
    lo99, hi99 = clopper_pearson(k, n, 0.99)
    assert lo99 <= lo95 and hi99 >= hi95


@pytest.mark.parametrize("n, level", [(500, "adequate"), (200, "adequate"), (199, "limited"), (100, "limited"),
                                      (99, "not_evaluable"), (0, "not_evaluable")])
def test_adequacy_defaults(n, level):
    assert adequacy_for_n(n) == level


def test_adequacy_configurable():
    assert adequacy_for_n(150, adequate_nuclei=150, limited_nuclei=50) == "adequate"
    assert adequacy_for_n(60, adequate_nuclei=150, limited_nuclei=50) == "limited"


# --- ISCN --------------------------------------------------------------------------------------
def test_iscn_clinical_md_examples():
    # clinical.md §3.5 proposals, probes pter -> qter (5p15.2 before 5q31)
    assert iscn_string(DEL5Q, 200) == "nuc ish(D5S23,D5S721,EGR1)x2[200]"
    assert iscn_string(DEL5Q, 200, [({"EGR1": 1, "D5S23": 2}, 120)]) == "nuc ish(D5S23,D5S721x2,EGR1x1)[120/200]"
    assert iscn_string(DEL5Q, 200, [({"EGR1": 1, "D5S23": 1}, 30)]) == "nuc ish(D5S23,D5S721,EGR1)x1[30/200]"
    two = iscn_string(DEL5Q, 200, [({"EGR1": 1, "D5S23": 2}, 120), ({"EGR1": 1, "D5S23": 1}, 30)])
    assert two == "nuc ish(D5S23,D5S721x2,EGR1x1)[120/200]/(D5S23,D5S721,EGR1)x1[30/200]"
    assert (iscn_string(DEL5Q, 200, [({"EGR1": 1, "D5S23": 2}, 120)], template="explicit")
            == "nuc ish(D5S23x2,D5S721x2,EGR1x1)[120/200]")
    assert (iscn_string(DEL5Q, 200, [({"EGR1": 1, "D5S23": 2}, 120)], template="band")
            == "nuc ish 5p15.2(D5S23,D5S721)x2,5q31(EGR1)x1[120/200]")


def test_iscn_dual_fusion_matches_iscn_teaching_example():
    p = fc.load_panel("bcr_abl1")
    # nuc ish(ABL1,BCR)x3(ABL1 con BCRx2)[200]: 1 orange + 1 green + 2 fusions
    s = iscn_string(p, 200, [({"ABL1": 1, "BCR": 1, "fusion": 2}, 150)])
    assert s == "nuc ish(ABL1,BCR)x3(ABL1 con BCRx2)[150/200]"


def test_iscn_break_apart_and_single_probe_forms_as_published():
    """Break-apart: the gene with its copy number and each split pair, nuc ish(KMT2Ax2)[200] and
    nuc ish(KMT2Ax2)(5'KMT2A sep 3'KMT2Ax1)[n/N] (published AML case, PubMed 34140437); the parts given alone when
    their numbers differ. One probe: its copy number inside the brackets, nuc ish(D21S259x2)[400] (clinical.md §3.5)."""
    p = fc.load_panel("kmt2a")
    assert iscn_string(p, 200) == "nuc ish(KMT2Ax2)[200]"
    assert (iscn_string(p, 200, [({"KMT2A_5": 1, "KMT2A_3": 1, "fusion": 1}, 40)])
            == "nuc ish(KMT2Ax2)(5'KMT2A sep 3'KMT2Ax1)[40/200]")
    assert (iscn_string(p, 200, [({"KMT2A_5": 1, "KMT2A_3": 0, "fusion": 1}, 40)])
            == "nuc ish(5'KMT2Ax2,3'KMT2Ax1)(5'KMT2A con 3'KMT2Ax1)[40/200]")
    assert (iscn_string(p, 200, [({"KMT2A_5": 1, "KMT2A_3": 1, "fusion": 1}, 40)], template="band")
            == "nuc ish 11q23.3(KMT2Ax2)(5'KMT2A sep 3'KMT2Ax1)[40/200]")
    assert parse_iscn("nuc ish(KMT2Ax2)(5'KMT2A sep 3'KMT2Ax1)[40/200]") == [
        {"copies": {"KMT2A": 2}, "fusions": [("5'KMT2A", "sep", "3'KMT2A", 1)], "n": 40, "total": 200}]
    cep8 = fc.load_panel("cep8")
    assert iscn_string(cep8, 200) == "nuc ish(D8Z2x2)[200]"
    assert iscn_string(cep8, 200, [({"CEP8": 3}, 40)]) == "nuc ish(D8Z2x3)[40/200]"


def test_iscn_custom_template():
    t = IscnTemplate(population="{loci}[{n}/{total}] ({pct}%)")
    assert iscn_string(DEL5Q, 200, [({"EGR1": 1, "D5S23": 2}, 120)], template=t).endswith("[120/200] (60.0%)")
    with pytest.raises(InputError, match="unknown ISCN style"):
        iscn_string(DEL5Q, 200, template="fancy")


@pytest.mark.parametrize("bad", ["ish(EGR1x1)[200]", "nuc ish(EGR1x1)", "nuc ish(EGR1,D5S23)[200]", "nuc ish EGR1[200]"])
def test_parse_iscn_rejects(bad):
    with pytest.raises(ValueError):
        parse_iscn(bad)


def _expected_copies(panel, counts):
    fus = counts.get("fusion", 0) if panel.fusion_pair else 0
    if panel.kind == "break-apart":  # the gene with its copy number; its two parts when they differ
        a, b = panel.fusion_pair
        ta, tb = counts.get(a, 0) + fus, counts.get(b, 0) + fus
        pa, pb = panel.signal(a).probes[0], panel.signal(b).probes[0]
        return {pa[2:]: ta} if ta == tb else {pa: ta, pb: tb}
    out = {}
    for s in panel.signals:
        c = counts.get(s.name, 0) + (fus if panel.fusion_pair and s.name in panel.fusion_pair else 0)
        for pr in s.probes:
            out[pr] = c
    return out


@settings(max_examples=120, deadline=None, derandomize=True)
@given(panel_id=st.sampled_from(fc.list_panels()), style=st.sampled_from(sorted(ISCN_STYLES)),
       data=st.data())
def test_iscn_round_trip(panel_id, style, data):
    panel = fc.load_panel(panel_id)
    total = data.draw(st.integers(1, 1000))
    pops = []
    for _ in range(data.draw(st.integers(0, 3))):
        counts = {k: data.draw(st.integers(0, 6)) for k in panel.pattern_keys}
        if not any(_expected_copies(panel, counts).values()):
            counts[panel.signal_names[0]] = 1
        pops.append((counts, data.draw(st.integers(0, total))))
    s = iscn_string(panel, total, pops, template=style)
    parsed = parse_iscn(s)
    if not pops:
        assert len(parsed) == 1 and parsed[0]["n"] is None and parsed[0]["total"] == total
        return
    assert len(parsed) == len(pops)
    for (counts, n), got in zip(pops, parsed):
        assert got["n"] == n and got["total"] == total
        assert got["copies"] == _expected_copies(panel, counts)
        intact_only = panel.kind == "break-apart" and len(got["copies"]) == 1  # (KMT2Ax2): intact pairs implied
        if panel.fusion_pair and counts.get("fusion", 0) and not intact_only:
            assert any(f[1] == "con" and f[3] == counts["fusion"] for f in got["fusions"])


# --- scoring ----------------------------------------------------------------------------------
PATTERNS = {"normal": (2, 2), "del5q": (1, 2), "monosomy5": (1, 1), "gain5": (3, 3), "tetraploid": (4, 4)}


def nuclei(counts: dict, excluded: int = 0, **keys) -> pd.DataFrame:
    rows = []
    for call, n in counts.items():
        o, g = PATTERNS[call]
        rows += [{"count_EGR1": o, "count_D5S23": g, "pattern": f"{o}O{g}G", "call": call, "scorable": True,
                  "exclusion_reason": ""}] * n
    rows += [{"count_EGR1": 0, "count_D5S23": 2, "pattern": "0O2G", "call": "atypical", "scorable": False,
              "exclusion_reason": "missing colour"}] * excluded
    df = pd.DataFrame(rows)
    df.insert(0, "label", np.arange(1, len(df) + 1))
    for k, v in keys.items():
        df[k] = v
    return df


def test_score_sample_known_answer():
    s = score_sample(nuclei({"normal": 70, "del5q": 110, "monosomy5": 10, "gain5": 10}, excluded=5), DEL5Q)
    assert s.nuclei_total == 205 and s.nuclei_scored == 200 and s.nuclei_abnormal == 120
    assert s.clone_pct == 60.0
    assert (round(s.ci_low_pct, 1), round(s.ci_high_pct, 1)) == (52.9, 66.8)
    assert s.call_counts["del5q"] == 110 and s.call_counts["gain5"] == 10 and s.call_counts["atypical"] == 0
    assert s.tracked["del5q"]["pct"] == 55.0 and s.tracked["monosomy5"]["pct"] == 5.0
    assert s.tracked["del5q"]["positive"] and s.tracked["monosomy5"]["positive"]
    assert s.adequacy == "adequate" and s.positive and not s.cutoff_validated
    assert round(s.cutoff_pct, 2) == 3.78
    assert s.other_positive == ("gain5",)  # 5 % > 3.78 %
    assert s.iscn == ("nuc ish(D5S23,D5S721x2,EGR1x1)[110/200]/(D5S23,D5S721,EGR1)x1[10/200]/"
                      "(D5S23,D5S721,EGR1)x3[10/200]")
    assert s.patterns == {"1O2G": 110, "2O2G": 70, "1O1G": 10, "3O3G": 10}
    assert s.exclusions == {"missing colour": 5}
    d = nuclei({"normal": 3}, excluded=2)
    d.loc[3, "exclusion_reason"] = "touching border;missing colour"
    d.loc[4, "exclusion_reason"] = None
    assert score_sample(d, DEL5Q).exclusions == {"missing colour": 1, "touching border": 1, "unspecified": 1}
    assert NOT_VALIDATED in s.caveat and "karyotyping" in s.caveat


def test_iscn_lists_only_populations_above_their_own_cutoff_and_none_for_too_few_nuclei():
    """R3: a tracked pattern within its own normal range is no population (one monosomy-5 nucleus beside a
    del(5q) clone); when only the union is above its cut-off every tracked pattern present is listed. R5: an
    inevaluable sample (N < 100, N = 0) gets no ISCN result, not a normal one."""
    s = score_sample(nuclei({"normal": 79, "del5q": 120, "monosomy5": 1}), DEL5Q)
    assert s.positive and not s.tracked["monosomy5"]["positive"]
    assert s.iscn == "nuc ish(D5S23,D5S721x2,EGR1x1)[120/200]"
    u = score_sample(nuclei({"normal": 190, "del5q": 5, "monosomy5": 5}), DEL5Q)  # 2.5 % each, 5 % together
    assert u.positive and not u.tracked["del5q"]["positive"] and not u.tracked["monosomy5"]["positive"]
    assert u.iscn == "nuc ish(D5S23,D5S721x2,EGR1x1)[5/200]/(D5S23,D5S721,EGR1)x1[5/200]"
    for counts in ({"normal": 99}, {"normal": 40, "del5q": 50}, {}):
        s = score_sample(nuclei(counts), DEL5Q) if counts else score_sample(nuclei({"normal": 2}).iloc[:0], DEL5Q)
        assert s.adequacy == "not_evaluable" and s.iscn == ""
    assert score_sample(nuclei({"normal": 100}), DEL5Q).iscn == "nuc ish(D5S23,D5S721,EGR1)x2[100]"


def test_positive_means_strictly_above_cutoff():
    # binomial cut-off at 1 % FP rate, N = 200: 5 nuclei = 2.5 % (clinical.md §3.3); equal is not positive
    rule = CutoffRule("binomial", 0.95, 200, mean_rate=0.01)
    cs = CutoffSet(clone=rule, default=rule, validated=True, panel="del5q", label="binomial")
    at = score_sample(nuclei({"normal": 195, "del5q": 5}), DEL5Q, cs)
    above = score_sample(nuclei({"normal": 194, "del5q": 6}), DEL5Q, cs)
    assert at.cutoff_pct == 2.5 and at.clone_pct == 2.5 and not at.positive
    assert above.positive and above.cutoff_validated and NOT_VALIDATED not in above.caveat
    assert at.iscn == "nuc ish(D5S23,D5S721,EGR1)x2[200]"


def test_cutoff_recomputed_for_sample_n():
    s100 = score_sample(nuclei({"normal": 90, "del5q": 10}), DEL5Q)
    assert round(s100.cutoff_pct, 2) == 7.36 and s100.positive and s100.adequacy == "limited"
    s50 = score_sample(nuclei({"normal": 48, "del5q": 2}), DEL5Q)
    assert s50.adequacy == "not_evaluable"


def test_score_samples_pools_fields_per_sample():
    f1 = nuclei({"normal": 50, "del5q": 50}, patient="P1", week=0, timepoint="baseline", field="a")
    f2 = nuclei({"normal": 30, "del5q": 70}, patient="P1", week=0, timepoint="baseline", field="b")
    f3 = nuclei({"normal": 190, "del5q": 10}, patient="P1", week=16, timepoint="w16", field="c")
    f4 = nuclei({"normal": 200}, patient="P2", week=0, timepoint="baseline", field="d")
    df = pd.concat([f3, f1, f4, f2], ignore_index=True)
    out = score_samples(df, DEL5Q)
    assert len(out) == 3
    r = out[(out.patient == "P1") & (out.week == 0)].iloc[0]
    assert r.nuclei_scored == 200 and r.nuclei_abnormal == 120 and r.n_del5q == 120 and r.clone_pct == 60.0
    assert r.panel == "del5q" and r.adequacy == "adequate" and bool(r.positive)
    for col in ("ci_low_pct", "ci_high_pct", "pct_del5q", "ci_low_pct_monosomy5", "cutoff_pct_del5q",
                "positive_monosomy5", "cutoff_method", "cutoff_validated", "iscn", "patterns", "caveat"):
        assert col in out.columns
    assert json.loads(r.patterns) == {"1O2G": 120, "2O2G": 80}
    p2 = out[out.patient == "P2"].iloc[0]
    assert p2.nuclei_abnormal == 0 and not p2.positive and p2.iscn == "nuc ish(D5S23,D5S721,EGR1)x2[200]"


def test_score_samples_feeds_response():
    base = nuclei({"normal": 80, "del5q": 120}, patient="P1", week=0)
    w16 = nuclei({"normal": 194, "del5q": 6}, patient="P1", week=16)
    samples = score_samples(pd.concat([base, w16], ignore_index=True), DEL5Q)
    res = fc.classify_response(samples)
    assert res.patients.loc[0, "best_response"] == "major"
    assert res.patients.loc[0, "endpoint_response"] == "major"


def test_score_samples_whole_table_is_one_sample_without_keys():
    out = score_samples(nuclei({"normal": 10, "monosomy5": 2}), DEL5Q)
    assert len(out) == 1 and out.loc[0, "nuclei_abnormal"] == 2


def test_scorable_parsing_from_csv(tmp_path):
    df = nuclei({"normal": 3, "del5q": 1}, excluded=2)
    df["scorable"] = ["true", "1", "yes", "True", "false", "0"]
    p = tmp_path / "nuclei.csv"
    df.to_csv(p, index=False)
    s = score_sample(read_table(p), DEL5Q)
    assert s.nuclei_scored == 4 and s.nuclei_abnormal == 1


@pytest.mark.parametrize(
    "mutate, match",
    [(lambda d: d.drop(columns=["call"]), "column 'call' is missing"),
     (lambda d: d.drop(columns=["scorable"]), "column 'scorable' is missing"),
     (lambda d: d.assign(call=["normal", "del5q", "nonsense"]), "row 4, column 'call': 'nonsense'"),
     (lambda d: d.assign(scorable=[True, "maybe", True]), "row 3, column 'scorable'"),
     # a missing scorable value would leave the nucleus out of N without a word
     (lambda d: d.assign(scorable=["true", "", "true"]), "row 3, column 'scorable': empty"),
     (lambda d: d.assign(scorable=[True, None, True]), "row 3, column 'scorable': empty"),
     (lambda d: d.assign(scorable=pd.array([True, True, pd.NA], dtype="boolean")), "row 4, column 'scorable': empty"),
     (lambda d: d.assign(count_EGR1=[2, 2, "x"]), "row 4, column 'count_EGR1': expected a whole number"),
     (lambda d: d.assign(count_D5S23=[2, -1, 2]), "row 3, column 'count_D5S23'")],
)
def test_score_sample_errors(mutate, match):
    d = mutate(nuclei({"normal": 2, "del5q": 1}))
    with pytest.raises(InputError, match=match) as ei:
        score_sample(d, DEL5Q, source="nuclei.csv")
    assert str(ei.value).startswith("nuclei.csv: ")


def test_score_samples_blank_key_and_empty_table():
    """A nucleus with a blank week or patient among rows that name one is an error naming its row (it would be a
    one-nucleus sample of its own); no nuclei give the samples.csv columns with no row."""
    d = pd.concat([nuclei({"normal": 3}, patient="P1"), nuclei({"del5q": 1}, patient="P1")], ignore_index=True)
    d["week"] = [0, 0, None, 0]
    with pytest.raises(InputError, match=r"nuclei.csv: row 4, column 'week': empty, while other rows name a week"):
        score_samples(d, DEL5Q, source="nuclei.csv")
    d["week"] = 0
    d.loc[1, "patient"] = " "
    with pytest.raises(InputError, match=r"row 3, column 'patient': empty"):
        score_samples(d, DEL5Q)
    empty = score_samples(d.iloc[:0], DEL5Q)
    assert len(empty) == 0 and {"patient", "week", "clone_pct", "ci_low_pct", "cutoff_pct", "iscn"} <= set(empty.columns)


def test_score_samples_bad_week():
    d = nuclei({"normal": 2}, patient="P1")
    d["week"] = ["0", "four"]
    with pytest.raises(InputError, match="row 3, column 'week'"):
        score_samples(d, DEL5Q, source="nuclei.csv")


def test_read_table_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_table(tmp_path / "none.csv")
    e = tmp_path / "empty.csv"
    e.write_text("")
    with pytest.raises(InputError, match="empty"):
        read_table(e)


@pytest.mark.slow
def test_pipeline_nuclei_table_scores_consistently():
    """A simulated field through analyze_field: the nuclei.csv contract feeds score_samples."""
    sim = fc.simulate_field("del5q", shape=(512, 512), abnormal_fraction=0.4, seed=3)
    nuc = fc.analyze_field(sim.to_field()).nuclei.assign(patient="S1", week=0)
    row = score_samples(nuc, DEL5Q).iloc[0]
    n_calls = sum(row[f"n_{c}"] for c in DEL5Q.call_names)
    assert row.nuclei_total == len(nuc) and row.nuclei_scored == int(nuc["scorable"].sum()) == n_calls
    assert row.nuclei_abnormal == row.n_del5q + row.n_monosomy5
    assert row.ci_low_pct <= row.clone_pct <= row.ci_high_pct
    assert sum(json.loads(row.patterns).values()) == row.nuclei_scored
    assert row.nuclei_scored < 100 and row.adequacy == "not_evaluable" and row.iscn == ""  # no result from < 100
    row = score_samples(nuc, DEL5Q, adequate_nuclei=10, limited_nuclei=5).iloc[0]
    parsed = parse_iscn(row.iscn)
    assert all(p["total"] == row.nuclei_scored for p in parsed)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(text=st.one_of(st.text(max_size=40),
                      st.text(alphabet="nuc ish()[]/,x0123456789ABCDEGRS5pq.", max_size=40).map(lambda s: "nuc ish" + s)))
def test_parse_iscn_fuzz_only_value_errors(text):
    try:
        pops = parse_iscn(text)
    except ValueError:
        return
    for p in pops:
        assert p["copies"] and p["total"] >= 0


def test_iscn_lists_each_pattern_of_a_range_call_with_its_own_nuclei():
    """A call defined by a range of counts (pml_rara's variant: 2O2G1F, 1O2G1F, 2O1G1F) is one population per
    pattern, each with its own nuclei: never 40 nuclei under the signals of the 15 most frequent."""
    pan = fc.load_panel("pml_rara")
    rows = ([{"count_PML": 2, "count_RARA": 2, "count_fusion": 0}] * 160 + [{"count_PML": 2, "count_RARA": 2,
            "count_fusion": 1}] * 15 + [{"count_PML": 1, "count_RARA": 2, "count_fusion": 1}] * 13
            + [{"count_PML": 2, "count_RARA": 1, "count_fusion": 1}] * 12)
    df = pd.DataFrame(rows)
    df["call"] = [pan.call_for({"PML": r["count_PML"], "RARA": r["count_RARA"], "fusion": r["count_fusion"]})
                  for r in rows]
    df["scorable"] = True
    s = score_sample(df, pan)
    pops = parse_iscn(s.iscn)
    assert [p["n"] for p in pops] == [15, 13, 12] and all(p["total"] == 200 for p in pops)
