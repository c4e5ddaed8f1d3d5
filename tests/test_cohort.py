"""Cohort statistics: the Möllgård 2011 abstract reproduction, named tests, exact CIs, bad input."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import fishcount as fc
from fishcount.cli import main
from fishcount.cohort import (
    CHI2,
    FISHER,
    MEASURES,
    cohort_summary,
    compare_counts,
    compare_groups,
    exact_ci,
    format_summary,
    read_covariates,
    read_response_table,
    validate_response_table,
)
from fishcount.errors import InputError


def trial() -> pd.DataFrame:
    """The trial abstract (clinical.md §1.2): 26 dosed; 5 major + 2 minor FISH, 2 marrow-only; 10 completers,
    9 of them responders; TP53 mutated 2/13 vs wild-type 5/9 among 22 patients with TP53 data (cytogenetic
    responders); 4 without TP53 data."""
    best = ["major"] * 5 + ["minor"] * 2 + ["none"] * 2 + ["none"] * 10 + ["not_evaluable"] * 5 + [""] * 2
    marrow = [False] * 7 + [True] * 2 + [False] * 17
    completed = [True] * 10 + [False] * 16
    # responders 0-6 (FISH): 2 mutated (0, 1), 5 wild-type (2-6); non-responders 7-25: 11 mutated, 4 wild-type, 4 missing
    tp53 = ["mut"] * 2 + ["wt"] * 5 + ["mut"] * 11 + ["wt"] * 4 + [""] * 4
    return pd.DataFrame({"patient": [f"P{i:02d}" for i in range(26)], "best_response": best,
                         "marrow_response": marrow, "completed": completed, "tp53": tp53})


def rate(summary: pd.DataFrame, measure: str, population: str = "ITT", group: str = "all") -> tuple[int, int, float]:
    r = summary[(summary["measure"] == measure) & (summary["population"] == population) & (summary["group"] == group)]
    assert len(r) == 1
    return int(r["responders"].item()), int(r["n"].item()), float(r["rate_pct"].item())


def test_trial_abstract_reproduction():
    s = cohort_summary(trial())
    assert rate(s, "major")[:2] == (5, 26) and round(rate(s, "major")[2]) == 19
    assert rate(s, "minor")[:2] == (2, 26) and round(rate(s, "minor")[2]) == 8
    assert rate(s, "marrow_only")[:2] == (2, 26)
    k, n, pct = rate(s, "overall")
    assert (k, n, round(pct)) == (9, 26, 35)          # "Nine of all 26 patients (35%)"
    assert rate(s, "overall", "completers")[:2] == (9, 10)  # "nine of the ten who completed the 16 weeks"
    row = s[(s["measure"] == "overall") & (s["population"] == "ITT")].iloc[0]
    # Clopper-Pearson from the beta quantiles (clinical.md §6.1 R4)
    assert row["ci_low_pct"] == pytest.approx(100 * stats.beta.ppf(0.025, 9, 18), abs=1e-9)
    assert row["ci_high_pct"] == pytest.approx(100 * stats.beta.ppf(0.975, 10, 17), abs=1e-9)
    assert row["ci_method"].startswith("Clopper-Pearson exact 95")


def test_tp53_comparison_names_both_tests():
    cmp = compare_counts([2, 5], [13, 9], groups=["mutated", "wild-type"])
    t = cmp.tests.set_index("test")
    assert t.loc[FISHER, "p_value"] == pytest.approx(0.0743, abs=5e-5)      # Fisher two-sided 0.074
    assert t.loc[CHI2, "p_value"] == pytest.approx(0.0467, abs=5e-5)        # uncorrected chi2 0.047
    assert round(t.loc[CHI2, "p_value"], 3) == 0.047 and round(t.loc[FISHER, "p_value"], 3) == 0.074
    assert t.loc[CHI2, "statistic"] == pytest.approx(3.956, abs=1e-3) and t.loc[CHI2, "dof"] == 1
    assert t.loc[FISHER, "statistic"] == pytest.approx(0.1455, abs=1e-4) and t.loc[FISHER, "statistic_name"] == "odds ratio"
    assert "Fisher" in FISHER and "two-sided" in FISHER and "no continuity correction" in CHI2
    # two of the four expected counts (4.14, 2.86) are below 5: warned
    assert len(cmp.warnings) == 1 and "2 of 4 expected counts < 5 (min 2.86)" in cmp.warnings[0]
    assert cmp.table["rate_pct"].round(1).tolist() == [15.4, 55.6]


def test_tp53_comparison_from_the_response_table():
    df = trial()
    cmp = compare_groups(df, "tp53", measure="cytogenetic")
    assert cmp.table[["group", "responders", "n"]].values.tolist() == [["mut", 2, 13], ["wt", 5, 9]]
    assert cmp.tests.set_index("test").loc[CHI2, "p_value"] == pytest.approx(0.0467, abs=5e-5)
    assert cmp.notes == ("4 patient(s) without a tp53 value left out",)
    # the same from a separate covariates table
    cov = df[["patient", "tp53"]]
    cmp2 = compare_groups(df.drop(columns="tp53"), "tp53", covariates=cov, measure="cytogenetic")
    pd.testing.assert_frame_equal(cmp.tests, cmp2.tests)
    cmp3 = compare_groups(df, "tp53", measure="cytogenetic", include_missing=True)
    assert "(missing)" in cmp3.table["group"].tolist()


def test_marrow_response_rate_by_disease():
    """The abstract's IWG rates by disease (clinical.md §1.2): AML 3/15 (20 %), MDS 4/11 (36 %)."""
    df = pd.DataFrame({"patient": [f"P{i}" for i in range(26)], "best_response": ["none"] * 26,
                       "marrow_response": [True] * 3 + [False] * 12 + [True] * 4 + [False] * 7,
                       "disease": ["AML"] * 15 + ["MDS"] * 11})
    s = cohort_summary(df, group_by="disease")
    assert rate(s, "marrow", group="AML")[:2] == (3, 15) and round(rate(s, "marrow", group="AML")[2]) == 20
    assert rate(s, "marrow", group="MDS")[:2] == (4, 11) and round(rate(s, "marrow", group="MDS")[2]) == 36


def test_group_summary():
    s = cohort_summary(trial(), group_by="tp53")
    assert rate(s, "cytogenetic", group="mut")[:2] == (2, 13)
    assert rate(s, "cytogenetic", group="wt")[:2] == (5, 9)
    assert rate(s, "overall", group="(missing)")[:2] == (0, 4)
    assert set(s["group_by"]) == {"tp53"}


def _freeman_halton(table: np.ndarray) -> float:
    """Independent brute-force 2 x k Fisher-Freeman-Halton p-value (sum of P(tables) <= P(observed))."""
    r, tot = table[0], table.sum(axis=0)
    R, N = r.sum(), tot.sum()

    def prob(a):
        return math.prod(math.comb(int(n), int(x)) for n, x in zip(tot, a)) / math.comb(int(N), int(R))

    p_obs = prob(r)
    p = 0.0
    for a in itertools.product(*[range(int(n) + 1) for n in tot]):
        if sum(a) == R:
            pa = prob(a)
            if pa <= p_obs * (1 + 1e-7):
                p += pa
    return p


def test_two_by_k_fisher_matches_brute_force_and_chi2_matches_formula():
    cmp = compare_counts([1, 4, 6], [7, 8, 9])
    t = cmp.tests.set_index("test")
    table = np.array([[1, 4, 6], [6, 4, 3]])
    assert t.loc[FISHER, "p_value"] == pytest.approx(_freeman_halton(table), rel=1e-9)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    chi2 = ((table - expected) ** 2 / expected).sum()
    assert t.loc[CHI2, "statistic"] == pytest.approx(chi2) and t.loc[CHI2, "dof"] == 2
    assert t.loc[CHI2, "p_value"] == pytest.approx(stats.chi2.sf(chi2, 2))


def test_no_warning_with_large_expected_counts():
    cmp = compare_counts([30, 45], [100, 100])
    assert cmp.warnings == () and (cmp.tests["warning"] == "").all()
    assert cmp.tests["min_expected"].min() >= 5


def test_no_variation_is_reported_not_crashed():
    cmp = compare_counts([0, 0], [5, 6])
    t = cmp.tests.set_index("test")
    assert t.loc[FISHER, "p_value"] == 1.0 and math.isnan(t.loc[CHI2, "p_value"])
    assert "no variation" in cmp.warnings[0]


def test_itt_counts_missing_as_non_responder_and_completers_from_endpoint():
    df = pd.DataFrame({"patient": ["A", "B", "C", "D"], "best_response": ["major", "", "minor", "not_evaluable"],
                       "endpoint_response": ["major", "not_evaluable", "none", ""]})
    s = cohort_summary(df)
    assert rate(s, "cytogenetic")[:2] == (2, 4)
    assert rate(s, "cytogenetic", "completers")[:2] == (2, 2)  # A and C had an endpoint assessment
    assert rate(s, "marrow_only")[:2] == (0, 4)                 # no marrow_response column: none
    assert set(s[s["population"] == "completers"]["denominator"]) == {"endpoint assessment (endpoint_response)"}
    s = cohort_summary(df[["patient", "best_response"]])
    assert set(s["population"]) == {"ITT"}                     # completion unknown: no completer rows
    e = cohort_summary(df, response_column="endpoint_response")
    assert rate(e, "cytogenetic")[:2] == (1, 4)


def test_iwg2006_cytogenetic_labels_count_as_major_minor():
    df = pd.DataFrame({"patient": ["A", "B", "C"], "best_response": ["complete", "partial", "none"]})
    s = cohort_summary(df)
    assert rate(s, "major")[:2] == (1, 3) and rate(s, "minor")[:2] == (1, 3)


def test_completed_from_covariates_and_missing_panel_column():
    df = trial()
    cov = df[["patient", "completed"]].iloc[:20].assign(completed=lambda d: d["completed"].map({True: "yes", False: "no"}))
    s = cohort_summary(df.drop(columns="completed"), covariates=cov)
    assert rate(s, "overall", "completers")[:2] == (9, 10)  # patients without a covariate row: not completers
    with pytest.raises(InputError, match="no column panel, cannot select panel 'del5q'"):
        cohort_summary(df, panel="del5q")


def test_panel_selection():
    df = pd.DataFrame({"patient": ["A", "A", "B"], "panel": ["del5q", "del7q", "del5q"],
                       "best_response": ["major", "none", "none"]})
    with pytest.raises(InputError, match="several panels \\(del5q, del7q\\); choose one"):
        cohort_summary(df)
    assert rate(cohort_summary(df, panel="del5q"), "major")[:2] == (1, 2)
    with pytest.raises(InputError, match="panel 'cep8' not in column panel"):
        cohort_summary(df, panel="cep8")


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------
@settings(max_examples=80, deadline=None, derandomize=True)
@given(n=st.integers(1, 400), data=st.data())
def test_ci_contains_point_estimate_and_narrows_with_n(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = exact_ci(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    lo4, hi4 = exact_ci(4 * k, 4 * n)
    assert hi4 - lo4 < hi - lo


@settings(max_examples=20, deadline=None, derandomize=True)
@given(values=st.lists(st.tuples(st.sampled_from(["major", "minor", "none", "not_evaluable", ""]), st.booleans(),
                                 st.booleans(), st.sampled_from(["a", "b", "c"])), min_size=2, max_size=30),
       seed=st.integers(0, 2**16))
def test_summary_invariant_to_row_order_and_consistent(values, seed):
    df = pd.DataFrame({"patient": [f"P{i}" for i in range(len(values))],
                       "best_response": [v[0] for v in values], "marrow_response": [v[1] for v in values],
                       "completed": [v[2] for v in values], "arm": [v[3] for v in values]})
    a = cohort_summary(df, group_by="arm")
    b = cohort_summary(df.sample(frac=1, random_state=seed), group_by="arm")
    pd.testing.assert_frame_equal(a, b)
    itt = a[(a["population"] == "ITT") & (a["group"] == "all")].set_index("measure")
    assert itt.loc["overall", "responders"] == itt.loc["cytogenetic", "responders"] + itt.loc["marrow_only", "responders"]
    assert itt.loc["cytogenetic", "responders"] == itt.loc["major", "responders"] + itt.loc["minor", "responders"]
    assert (itt["n"] == len(values)).all()
    ok = a["n"] > 0
    assert ((a.loc[ok, "ci_low_pct"] <= a.loc[ok, "rate_pct"]) & (a.loc[ok, "rate_pct"] <= a.loc[ok, "ci_high_pct"])).all()


@settings(max_examples=30, deadline=None, derandomize=True)
@given(r1=st.integers(0, 15), n1=st.integers(1, 15), r2=st.integers(0, 15), n2=st.integers(1, 15))
def test_comparison_symmetric_in_group_order(r1, n1, r2, n2):
    r1, r2 = min(r1, n1), min(r2, n2)
    a = compare_counts([r1, r2], [n1, n2]).tests["p_value"].to_numpy()
    b = compare_counts([r2, r1], [n2, n1]).tests["p_value"].to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-9, equal_nan=True)
    assert all(np.isnan(p) or 0 <= p <= 1 + 1e-12 for p in a)


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, message",
    [
        ("id,best_response\nA,major\n", r"resp.csv: missing column patient"),
        ("patient,response\nA,major\n", r"resp.csv: missing column best_response"),
        ("patient,best_response\nA,major\nB,good\n", r"resp.csv: line 3, column best_response: 'good' is not one of major, minor"),
        ("patient,best_response\nA,major\nA,none\n", r"resp.csv: line 3, column patient: duplicate patient A \(also on line 2\)"),
        ("patient,best_response\n,major\n", r"resp.csv: line 2, column patient: patient id is empty"),
        ("patient,best_response,marrow_response\nA,major,perhaps\n", r"resp.csv: line 2, column marrow_response: 'perhaps' is not true/false"),
        ("patient,best_response,completed\nA,major,2\n", r"resp.csv: line 2, column completed: '2' is not true/false"),
        ("patient,best_response\n", r"resp.csv: no data rows"),
        ("", r"resp.csv: cannot read as CSV"),
    ],
)
def test_bad_response_table(tmp_path, text, message):
    p = tmp_path / "resp.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=message) as exc:
        read_response_table(p)
    assert "\n" not in str(exc.value)


def test_bad_inputs_other(tmp_path):
    with pytest.raises(InputError, match="nowhere.csv: file not found"):
        read_response_table(tmp_path / "nowhere.csv")
    df = trial()
    with pytest.raises(InputError, match="--group-by column 'arm' not found"):
        cohort_summary(df, group_by="arm")
    with pytest.raises(InputError, match="cov.csv: column\\(s\\) tp53 are also in the response table"):
        cohort_summary(df, covariates=df[["patient", "tp53"]], covariates_source="cov.csv")
    cov = tmp_path / "cov.csv"
    cov.write_text("patient,tp53\nP00,mut\nP00,wt\n")
    with pytest.raises(InputError, match="cov.csv: line 3, column patient: duplicate patient P00"):
        read_covariates(cov)
    with pytest.raises(InputError, match="column arm has 1 group"):
        compare_groups(df.assign(arm="x"), "arm")
    with pytest.raises(InputError, match="unknown measure 'cr'"):
        compare_groups(df, "tp53", measure="cr")
    with pytest.raises(InputError, match="unknown population 'pp'"):
        compare_groups(df, "tp53", population="pp")
    with pytest.raises(InputError, match="completers unknown"):
        compare_groups(df.drop(columns="completed"), "tp53", population="completers")
    with pytest.raises(InputError, match="responders cannot exceed the group size"):
        compare_counts([5, 1], [4, 3])
    with pytest.raises(InputError, match="non-negative integers"):
        compare_counts([-1, 1], [4, 3])
    with pytest.raises(InputError, match="at least two groups"):
        compare_counts([1], [4])
    with pytest.raises(InputError, match="empty group"):
        compare_counts([0, 1], [0, 3], groups=["a", "b"])
    with pytest.raises(InputError, match="same length"):
        compare_counts([0, 1], [2, 3, 4])


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def test_cli_cohort(tmp_path):
    df = trial()
    df.drop(columns="tp53").to_csv(tmp_path / "response.csv", index=False)
    df[["patient", "tp53"]].to_csv(tmp_path / "cov.csv", index=False)
    out = tmp_path / "out"
    args = ["cohort", str(tmp_path / "response.csv"), "--covariates", str(tmp_path / "cov.csv"), "--group-by", "tp53",
            "--out", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "overall         9/26    34.6 %" in res.output and "overall         9/10    90.0 %" in res.output
    assert "Fisher's exact test (two-sided): odds ratio = 0.1455, P = 0.0743" in res.output
    assert "Pearson's chi-squared test (no continuity correction): chi2 = 3.956, df = 1, P = 0.0467" in res.output
    assert "WARNING: 2 of 4 expected counts < 5" in res.output
    assert "karyotyping is recommended" in res.output
    s = pd.read_csv(out / "cohort_summary.csv")
    assert rate(s, "overall")[:2] == (9, 26)
    tests = pd.read_csv(out / "cohort_tests.csv")
    assert set(tests["test"]) == {FISHER, CHI2} and set(tests["measure"]) == set(MEASURES)
    assert (out / "cohort_groups.csv").exists()
    # nothing silently overwritten
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "already exists; pass --overwrite" in res.output and res.output.count("\n") == 1
    assert CliRunner().invoke(main, args + ["--overwrite"]).exit_code == 0
    # user error: one line, exit 2
    res = CliRunner().invoke(main, ["cohort", str(tmp_path / "response.csv"), "--group-by", "arm"])
    assert res.exit_code == 2 and "--group-by column 'arm' not found" in res.output and "Traceback" not in res.output


def test_flat_api():
    assert fc.cohort_summary is cohort_summary and fc.compare_groups is compare_groups
    assert fc.compare_counts is compare_counts and fc.read_response_table is read_response_table
    assert validate_response_table(trial()).shape[0] == 26


def test_fisher_freeman_halton_is_deterministic_and_falls_back_to_seeded_monte_carlo(monkeypatch):
    from fishcount import cohort

    a = compare_counts([3, 5, 8], [20, 30, 25]).tests
    b = compare_counts([3, 5, 8], [20, 30, 25]).tests
    pd.testing.assert_frame_equal(a, b)
    assert a.set_index("test").loc[FISHER, "p_value"] == pytest.approx(
        _freeman_halton(np.array([[3, 5, 8], [17, 25, 17]])), rel=1e-9)
    monkeypatch.setattr(cohort, "MAX_EXACT_TABLES", 10)
    cmp = compare_counts([3, 5, 8], [20, 30, 25])
    assert any("Monte Carlo, 100000 resamples, seed 0" in w for w in cmp.warnings)
    assert cmp.tests.set_index("test").loc[FISHER, "p_value"] == pytest.approx(0.292, abs=0.01)


def test_docstring_examples_run():
    import doctest

    import fishcount.cohort

    res = doctest.testmod(fishcount.cohort)
    assert res.attempted >= 3 and res.failed == 0


def test_cohort_csv_lines_trailing_commas_and_extra_values(tmp_path):
    """A trailing comma never shifts a row under the wrong columns; a row with more values than the header
    is refused; error line numbers are the file's, blank lines counted."""
    e = tmp_path / "e.csv"
    e.write_text("patient,best_response\nP1,major,\nP2,minor,\n")
    s = cohort_summary(read_response_table(e)).set_index(["population", "measure"])
    assert s.loc[("ITT", "major"), "responders"] == 1 and s.loc[("ITT", "minor"), "responders"] == 1
    e.write_text("patient,best_response\nA,major,x\nB,none\n")
    with pytest.raises(InputError, match=r"e.csv: line 2: 3 values for the 2 columns of the header"):
        read_response_table(e)
    e.write_text("patient,best_response\nA,major\n\nB,none\nC,maybe\n")
    with pytest.raises(InputError, match=r"line 5, column best_response: 'maybe' is not one of"):
        read_response_table(e)


def test_cohort_itt_keeps_every_patient_of_a_panel_and_counts_a_patient_once():
    """--panel: a patient scored with another panel only (or with clinical values only) is in that panel's
    intention-to-treat denominator as FISH not evaluable; the overall count is per patient, not per row."""
    resp = pd.DataFrame({"patient": ["P1", "P1", "P2"], "panel": ["del5q", "tp53", "tp53"],
                         "best_response": ["major", "none", "minor"]})
    s = cohort_summary(resp, panel="del5q").set_index(["population", "measure"])
    assert s.loc[("ITT", "major"), "n"] == 2 and s.loc[("ITT", "major"), "responders"] == 1
    fish = pd.DataFrame({"patient": ["P1", "P1", "P2", "P2"], "panel": ["del5q", "tp53"] * 2,
                         "best_response": ["major", "none", "minor", "none"]})
    clin = pd.DataFrame({"patient": ["P1", "P2", "P3"], "best_response": ["CR", "SD", "mCR"],
                         "marrow_response": [True, False, True]})
    o = fc.overall_trial_response(fish, clin)
    assert sorted(o.loc[o["patient"] == "P3", "panel"]) == ["del5q", "tp53"]
    s = cohort_summary(o, panel="del5q").set_index(["population", "measure"])
    assert (s.loc[("ITT", "overall"), "responders"], s.loc[("ITT", "overall"), "n"]) == (3, 3)
    assert s.loc[("ITT", "marrow_only"), "responders"] == 1


def test_cohort_marrow_response_covariate_and_completers_in_one_group(tmp_path):
    resp = pd.DataFrame({"patient": list("ABCD"), "best_response": ["major", "none", "none", "none"]})
    cov = pd.DataFrame({"patient": list("ABC"), "marrow_response": ["false", "true", "false"]})
    s = cohort_summary(resp, covariates=cov).set_index(["population", "measure"])
    assert [int(s.loc[("ITT", m), "responders"]) for m in ("marrow", "marrow_only", "overall")] == [1, 1, 2]
    r = tmp_path / "r.csv"
    r.write_text("patient,best_response,completed,tp53\nA,major,true,mut\nB,none,true,mut\nC,minor,false,wt\n"
                 "D,none,false,wt\n")
    c = tmp_path / "c.csv"
    c.write_text("patient,age\nA,60\nd,70\n")
    res = CliRunner().invoke(main, ["cohort", str(r), "--group-by", "tp53", "--covariates", str(c)])
    assert res.exit_code == 0, res.output
    assert "note: completers comparison by tp53 not made: column tp53 has 1 group(s)" in res.output
    assert "note: covariates patient 'd' is in no response row (the response table has 'D': ids are " \
           "case-sensitive)" in res.output
    lines = format_summary(cohort_summary(resp, confidence_level=0.9))
    assert "90% CI" in lines and "95% CI" not in lines


def test_fisher_freeman_halton_is_exact_when_few_non_responders():
    """Enumerating the smaller row: 2995/2998/2990 of 3000 responders is 171 tables, exact (not Monte Carlo)."""
    c = fc.compare_counts([2995, 2998, 2990], [3000] * 3)
    fisher = c.tests.iloc[0]
    assert fisher["p_value"] == pytest.approx(0.065154, abs=1e-5) and not any("Monte Carlo" in w for w in c.warnings)
    flipped = fc.compare_counts([5, 2, 10], [3000] * 3).tests.iloc[0]["p_value"]
    assert fisher["p_value"] == pytest.approx(flipped, rel=1e-9)


def test_dataframes_given_in_python_are_numbered_by_row_whatever_their_index():
    """A response table indexed by patient id (or filtered) names the row as a CSV written without the index
    would: line 3 for the second row, not a TypeError or the index label + 2."""
    from fishcount.cohort import cohort_summary, validate_response_table

    df = pd.DataFrame({"patient": ["P1", "P2"], "best_response": ["major", "CR?"]}, index=["P1", "P2"])
    with pytest.raises(InputError, match=r"line 3, column best_response: 'CR\?' is not one of"):
        validate_response_table(df)
    df = pd.DataFrame({"patient": ["P1", "P2", "P1"], "best_response": ["major"] * 3}, index=[40, 7, 99])
    with pytest.raises(InputError, match=r"line 4, column patient: duplicate patient P1 \(also on line 2\)"):
        cohort_summary(df)
