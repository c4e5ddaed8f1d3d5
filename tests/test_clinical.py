"""Clinical response from supplied values: IWG 2006 MDS, IWG 2023 HR-MDS, ELN 2022 AML.

Boundary vectors follow docs/reference/clinical.md §2.1-§2.3 (inclusive / exclusive as the sources write them).
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import fishcount as fc
from fishcount.clinical import (
    CLINICAL_COLUMNS,
    clinical_criteria_from_dict,
    classify_clinical_response,
    evaluate,
    list_clinical_criteria,
    load_clinical_criteria,
    overall_trial_response,
    read_clinical_csv,
    summarize_clinical_response,
    validate_clinical_table,
)
from fishcount.errors import CriteriaError, InputError

CRITERIA_DIR = Path(fc.clinical.__file__).parent / "criteria"

# a typical MDS baseline: 12 % marrow blasts, cytopenic in all lineages
BASE = dict(marrow_blasts_pct=12.0, hb_g_dl=8.5, anc_10e9_l=0.8, plt_10e9_l=40.0, rbc_units_8wk=4.0, pb_blasts_pct=1.0)
# CR-level blood values (IWG 2006)
GOOD = dict(hb_g_dl=11.0, anc_10e9_l=1.0, plt_10e9_l=100.0, rbc_units_8wk=0.0, pb_blasts_pct=0.0)


def table(*visits: tuple[float, dict], patient: str = "P1", base: dict | None = None) -> pd.DataFrame:
    """Patient table: a week-0 baseline (``base``) then ``(week, values)`` visits (unspecified = baseline value)."""
    b = dict(BASE if base is None else base)
    rows = [dict(patient=patient, week=0.0, **b)]
    for week, vals in visits:
        r = dict(b)
        r.update(vals)
        rows.append(dict(patient=patient, week=float(week), **r))
    return pd.DataFrame(rows)


def cat_at(df: pd.DataFrame, criteria: str = "iwg2006_mds", week: float = 4.0, **kw) -> str:
    tp = classify_clinical_response(df, criteria, **kw)
    return tp.loc[tp["week"] == week, "category"].item()


def one(criteria: str = "iwg2006_mds", base: dict | None = None, **vals) -> str:
    """Category of a single week-4 visit."""
    return cat_at(table((4, vals), base=base), criteria)


# ------------------------------------------------------------------------------------------------
# criteria sets are data
# ------------------------------------------------------------------------------------------------
def test_shipped_clinical_criteria_load_and_cite_sources():
    ids = list_clinical_criteria()
    assert ids == ["eln2022_aml", "iwg2006_mds", "iwg2023_hr_mds"]
    for cid in ids:
        c = load_clinical_criteria(cid)
        assert c.id == cid and len(c.sha256) == 64
        assert c.sources and all("clinical.md §2" in s for s in c.sources)
        assert all(cat.source.startswith("clinical.md §2") for cat in c.categories)
        assert set(c.marrow_response) <= set(c.ranking)
        assert c.fallback is not None
    assert load_clinical_criteria(load_clinical_criteria("eln2022_aml")).id == "eln2022_aml"
    assert load_clinical_criteria(CRITERIA_DIR / "iwg2006_mds.toml").id == "iwg2006_mds"


def test_every_threshold_lives_in_the_criteria_file(tmp_path):
    """Changing a number in the file changes the classification: no threshold is hidden in code."""
    raw = (CRITERIA_DIR / "iwg2006_mds.toml").read_text()
    df = table((4, dict(GOOD, marrow_blasts_pct=3.0, hb_g_dl=10.5)))
    assert cat_at(df) == "mCR"  # Hb 10.5 < 11: not CR
    mine = tmp_path / "lab_iwg.toml"
    mine.write_text(raw.replace('{ var = "hb_g_dl", op = ">=", value = 11.0 }', '{ var = "hb_g_dl", op = ">=", value = 10.0 }', 1))
    assert cat_at(df, str(mine)) == "CR"


# ------------------------------------------------------------------------------------------------
# IWG 2006 MDS (clinical.md §2.1)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "vals, expected",
    [
        (dict(GOOD, marrow_blasts_pct=5.0), "CR"),                      # marrow <=5 % inclusive
        (dict(GOOD, marrow_blasts_pct=5.1), "PR"),                      # >5 % and <= 50 % of 12
        (dict(GOOD, marrow_blasts_pct=5.0, hb_g_dl=10.99), "mCR"),      # Hb >= 11 inclusive
        (dict(GOOD, marrow_blasts_pct=5.0, plt_10e9_l=99.9), "mCR"),    # platelets >= 100
        (dict(GOOD, marrow_blasts_pct=5.0, anc_10e9_l=0.99), "mCR"),    # neutrophils >= 1.0
        (dict(GOOD, marrow_blasts_pct=5.0, pb_blasts_pct=0.5), "mCR"),  # PB blasts 0 %
        (dict(GOOD, marrow_blasts_pct=6.0), "PR"),                      # exactly 50 % of 12: inclusive
        (dict(GOOD, marrow_blasts_pct=6.1), "SD"),                      # 49 % decrease
        (dict(marrow_blasts_pct=6.0), "SD"),                            # 50 % fall but counts not CR-level
        (dict(marrow_blasts_pct=5.0), "mCR"),                           # <=5 and >=50 % decrease
    ],
)
def test_iwg2006_categories_at_their_boundaries(vals, expected):
    assert one(**vals) == expected


def test_iwg2006_mcr_needs_a_50pct_decrease():
    base = dict(BASE, marrow_blasts_pct=9.0)
    assert one(base=base, marrow_blasts_pct=4.5) == "mCR"   # 4.5 = 50 % of 9
    assert one(base=base, marrow_blasts_pct=4.6) == "SD"    # <=5 % but only a 49 % fall
    assert one(base=dict(BASE, marrow_blasts_pct=4.0), marrow_blasts_pct=2.0, **{"pb_blasts_pct": 1.0}) == "mCR"


@pytest.mark.parametrize(
    "baseline, follow_up, expected",
    [
        (4.0, 6.0, "PD"),     # <5 %: >=50 % increase (6.0 = 1.5 x 4) to >5 %
        (4.0, 5.9, "SD"),     # increase < 50 %
        (3.0, 5.0, "SD"),     # >=50 % increase but not >5 %
        (3.0, 5.01, "PD"),
        (5.0, 10.0, "SD"),    # 5-10 % band: must exceed 10 %
        (5.0, 10.1, "PD"),
        (9.9, 14.85, "PD"),   # exactly +50 %
        (9.9, 14.8, "SD"),
        (10.0, 20.0, "SD"),   # 10-20 % band: must exceed 20 %
        (10.0, 20.5, "PD"),
        (14.0, 20.9, "SD"),   # >20 % but only +49 %
        (20.0, 30.0, "SD"),   # 20-30 % band: must exceed 30 %
        (20.0, 30.5, "PD"),
        (30.0, 45.0, "PD"),
        (31.0, 60.0, "SD"),   # above 30 %: no band in the source, never PD by blasts
    ],
)
def test_iwg2006_progression_blast_bands(baseline, follow_up, expected):
    base = dict(BASE, marrow_blasts_pct=baseline)
    assert one(base=base, marrow_blasts_pct=follow_up) == expected


def test_iwg2006_progression_is_an_event():
    tp = classify_clinical_response(table((4, dict(marrow_blasts_pct=25.0))))
    assert tp.loc[tp["week"] == 4, "events"].item() == "progression"
    s = summarize_clinical_response(tp)
    assert s.loc[0, "best_response"] == "PD" and "progression (week 4)" in s.loc[0, "events"]


def test_iwg2006_duration_cr_four_weeks_inclusive():
    cr = dict(GOOD, marrow_blasts_pct=2.0)
    tp = classify_clinical_response(table((4, cr), (8, cr)))
    assert list(tp["duration_status"][1:]) == ["confirmed", "unconfirmed"]
    s = summarize_clinical_response(tp)
    assert (s.loc[0, "best_response"], s.loc[0, "best_week"]) == ("CR", 4.0)
    # 3 weeks later is not enough; the unconfirmed CR falls back to nothing (SD needs > 8 weeks)
    s = summarize_clinical_response(classify_clinical_response(table((4, cr), (7, cr))))
    assert s.loc[0, "best_response"] == "not_evaluable"
    assert s.loc[0, "best_response_unconfirmed"] == "CR"
    assert "no response lasted the required duration" in s.loc[0, "flags"]
    # a worse assessment before 4 weeks: not sustained
    tp = classify_clinical_response(table((4, cr), (6, dict(marrow_blasts_pct=11.0)), (8, cr)))
    assert tp.loc[tp["week"] == 4, "duration_status"].item() == "not_sustained"
    # an intermediate visit without marrow does not break the duration
    tp = classify_clinical_response(table((4, cr), (6, dict(marrow_blasts_pct=np.nan)), (8, cr)))
    assert tp.loc[tp["week"] == 4, "duration_status"].item() == "confirmed"
    assert tp.loc[tp["week"] == 6, "category"].item() == "not_assessed"


def test_iwg2006_unconfirmed_response_falls_back_to_stable_disease():
    cr = dict(GOOD, marrow_blasts_pct=2.0)
    tp = classify_clinical_response(table((12, cr)))
    assert tp.loc[tp["week"] == 12, "effective_category"].item() == "SD"  # > 8 weeks without progression
    assert summarize_clinical_response(tp).loc[0, "best_response"] == "SD"


def test_iwg2006_stable_disease_needs_more_than_8_weeks():
    assert summarize_clinical_response(classify_clinical_response(table((8, {})))).loc[0, "best_response"] == "not_evaluable"
    assert summarize_clinical_response(classify_clinical_response(table((8.5, {})))).loc[0, "best_response"] == "SD"
    # progression before: never SD
    tp = classify_clinical_response(table((4, dict(marrow_blasts_pct=25.0)), (12, {})))
    assert tp.loc[tp["week"] == 12, "duration_status"].item() == "not_sustained"


def test_require_duration_false_counts_first_assessment():
    cr = dict(GOOD, marrow_blasts_pct=2.0)
    tp = classify_clinical_response(table((4, cr)), require_duration=False)
    assert summarize_clinical_response(tp).loc[0, "best_response"] == "CR"


@pytest.mark.parametrize(
    "base_vals, vals, expected",
    [
        (dict(hb_g_dl=9.5), dict(hb_g_dl=11.0), "met"),                 # +1.5 g/dL inclusive
        (dict(hb_g_dl=9.5), dict(hb_g_dl=10.99), "not_met"),
        (dict(hb_g_dl=8.3), dict(hb_g_dl=9.8), "met"),                  # decimal arithmetic
        (dict(hb_g_dl=10.99), dict(hb_g_dl=13.0), "met"),               # pretreatment Hb < 11
        (dict(hb_g_dl=11.0), dict(hb_g_dl=13.0), "not_eligible"),
        (dict(rbc_units_8wk=6.0), dict(rbc_units_8wk=2.0), "met"),      # >= 4 units fewer per 8 weeks
        (dict(rbc_units_8wk=6.0), dict(rbc_units_8wk=3.0), "not_met"),
    ],
)
def test_hi_e(base_vals, vals, expected):
    tp = classify_clinical_response(table((8, vals), (16, vals), base=dict(BASE, **base_vals)))
    first = tp.loc[tp["week"] == 8, "hi_e"].item()
    assert first == expected


@pytest.mark.parametrize(
    "base_plt, plt, expected",
    [
        (50.0, 80.0, "met"),        # starting > 20: absolute increase >= 30
        (50.0, 79.9, "not_met"),
        (99.9, 129.9, "met"),       # pretreatment < 100
        (100.0, 200.0, "not_eligible"),
        (15.0, 30.0, "met"),        # from < 20 to > 20 and by >= 100 %
        (15.0, 29.9, "not_met"),    # < 100 % increase
        (8.0, 20.0, "not_met"),     # not > 20
        (8.0, 20.1, "met"),
        (20.0, 60.0, "not_met"),    # exactly 20 is in neither branch of the source
    ],
)
def test_hi_p(base_plt, plt, expected):
    tp = classify_clinical_response(table((8, dict(plt_10e9_l=plt)), (16, dict(plt_10e9_l=plt)),
                                          base=dict(BASE, plt_10e9_l=base_plt)))
    assert tp.loc[tp["week"] == 8, "hi_p"].item() == expected


@pytest.mark.parametrize(
    "base_anc, anc, expected",
    [
        (0.4, 0.91, "met"),         # >= 100 % and absolute > 0.5
        (0.4, 0.9, "not_met"),      # absolute increase exactly 0.5: not > 0.5
        (0.8, 1.6, "met"),          # exactly 100 %
        (0.8, 1.59, "not_met"),
        (1.0, 3.0, "not_eligible"),  # pretreatment ANC < 1.0
    ],
)
def test_hi_n(base_anc, anc, expected):
    tp = classify_clinical_response(table((8, dict(anc_10e9_l=anc)), (16, dict(anc_10e9_l=anc)),
                                          base=dict(BASE, anc_10e9_l=base_anc)))
    assert tp.loc[tp["week"] == 8, "hi_n"].item() == expected


def test_hi_needs_8_weeks():
    up = dict(hb_g_dl=10.5)
    s = summarize_clinical_response(classify_clinical_response(table((8, up), (16, up))))
    assert s.loc[0, "hi_e"] == "yes"
    s = summarize_clinical_response(classify_clinical_response(table((8, up), (15, up))))
    assert s.loc[0, "hi_e"] == "unconfirmed"
    s = summarize_clinical_response(classify_clinical_response(table((8, up), (12, {}), (16, up))))
    assert s.loc[0, "hi_e"] == "unconfirmed"  # lost at week 12
    s = summarize_clinical_response(classify_clinical_response(table((8, {}), (16, {}))))
    assert (s.loc[0, "hi_e"], s.loc[0, "hi_p"], s.loc[0, "hi_n"]) == ("no", "no", "no")


def test_hi_is_assessed_without_marrow():
    no_marrow = dict(marrow_blasts_pct=np.nan, hb_g_dl=10.5)
    tp = classify_clinical_response(table((8, no_marrow), (16, no_marrow)))
    assert list(tp["category"][1:]) == ["not_assessed", "not_assessed"]
    assert tp.loc[tp["week"] == 8, "hi_e"].item() == "met"
    assert "not assessed: no marrow_blasts_pct" in tp.loc[tp["week"] == 8, "notes"].item()


def test_relapse_after_cr_uses_maximum_since_response():
    cr = dict(GOOD, marrow_blasts_pct=2.0, plt_10e9_l=200.0)
    tp = classify_clinical_response(table((4, cr), (8, cr), (12, dict(cr, plt_10e9_l=100.0))))
    assert "relapse" in tp.loc[tp["week"] == 12, "events"].item()  # 100 <= 50 % of 200 (also progression after HI-P)
    tp = classify_clinical_response(table((4, cr), (8, cr), (12, dict(cr, plt_10e9_l=100.5))))
    assert tp.loc[tp["week"] == 12, "events"].item() == ""
    tp = classify_clinical_response(table((4, cr), (8, dict(cr, marrow_blasts_pct=12.0))))
    assert "relapse" in tp.loc[tp["week"] == 8, "events"].item()  # back to the pretreatment blast %


def test_progression_after_hi():
    tp = classify_clinical_response(table((8, dict(hb_g_dl=11.0)), (12, dict(hb_g_dl=9.5))))
    assert tp.loc[tp["week"] == 12, "events"].item() == "progression after HI"  # Hb fell 1.5 g/dL from max


def test_no_baseline_and_pre_baseline_rows():
    df = table((4, {}))
    df.loc[0, "week"] = 1.0
    tp = classify_clinical_response(df)
    assert set(tp["category"]) == {"not_evaluable"}
    s = summarize_clinical_response(tp)
    assert s.loc[0, "best_response"] == "not_evaluable" and "no baseline" in s.loc[0, "flags"]
    s = summarize_clinical_response(classify_clinical_response(table()))
    assert s.loc[0, "best_response"] == "not_evaluable" and s.loc[0, "flags"] == "no on-treatment timepoint"
    df = table((4, dict(GOOD, marrow_blasts_pct=2.0)), (8, dict(GOOD, marrow_blasts_pct=2.0)))
    early = df.iloc[[0]].assign(week=-4.0, marrow_blasts_pct=2.0)  # an older marrow: not the baseline
    tp = classify_clinical_response(pd.concat([early, df]))
    assert list(tp["category"]) == ["pre-baseline", "baseline", "CR", "CR"]


# ------------------------------------------------------------------------------------------------
# IWG 2023 higher-risk MDS (clinical.md §2.2)
# ------------------------------------------------------------------------------------------------
HR = dict(BASE, marrow_blasts_pct=10.0)
C23 = dict(hb_g_dl=10.0, plt_10e9_l=100.0, anc_10e9_l=1.0, pb_blasts_pct=0.0)


@pytest.mark.parametrize(
    "vals, expected",
    [
        (dict(C23, marrow_blasts_pct=4.9), "CR"),
        (dict(C23, marrow_blasts_pct=5.0), "PR"),                    # <5 % exclusive; PR >=5 % and <= 50 % of 10
        (dict(C23, marrow_blasts_pct=5.1), "no_response"),           # 49 % decrease
        (dict(C23, marrow_blasts_pct=4.9, hb_g_dl=9.9), "CRh"),      # no Hb threshold for CRh
        (dict(C23, marrow_blasts_pct=4.9, hb_g_dl=5.0, plt_10e9_l=50.0, anc_10e9_l=0.5), "CRh"),
        (dict(C23, marrow_blasts_pct=4.9, anc_10e9_l=0.49), "CRbi"),  # Hb + platelets met, CRh fails
        (dict(C23, marrow_blasts_pct=4.9, anc_10e9_l=0.4, plt_10e9_l=40.0), "CRuni"),  # only Hb met
        (dict(C23, marrow_blasts_pct=4.9, hb_g_dl=9.0, anc_10e9_l=0.4, plt_10e9_l=40.0), "no_response"),
        (dict(C23, marrow_blasts_pct=4.9, pb_blasts_pct=1.0), "no_response"),
    ],
)
def test_iwg2023_categories(vals, expected):
    assert one("iwg2023_hr_mds", base=HR, **vals) == expected


def test_iwg2023_cr_equivalent_needs_supplied_cytogenetic_clearance():
    low = dict(BASE, marrow_blasts_pct=3.0)
    df = table((4, dict(C23, marrow_blasts_pct=2.0)), base=low)
    assert cat_at(df, "iwg2023_hr_mds") == "not_assessed"  # cytogenetic_complete not supplied: never guessed
    df["cytogenetic_complete"] = ["", "true"]
    assert cat_at(df, "iwg2023_hr_mds") == "CR_equivalent"
    df["cytogenetic_complete"] = ["", "no"]
    assert cat_at(df, "iwg2023_hr_mds") == "no_response"  # <5 % at baseline: CR counts alone are not CR


def test_iwg2023_counts_within_two_weeks_of_the_marrow():
    nan = np.nan
    blank = dict(hb_g_dl=nan, anc_10e9_l=nan, plt_10e9_l=nan, pb_blasts_pct=nan)
    counts_only = dict(C23, marrow_blasts_pct=nan)
    df = table((6, counts_only), (8, dict(blank, marrow_blasts_pct=2.0)), base=HR)
    tp = classify_clinical_response(df, "iwg2023_hr_mds")
    row = tp[tp["week"] == 8].iloc[0]
    assert row["category"] == "CR" and "hb_g_dl from week 6 (count window ±2 weeks)" in row["notes"]
    df = table((5.9, counts_only), (8, dict(blank, marrow_blasts_pct=2.0)), base=HR)
    assert cat_at(df, "iwg2023_hr_mds", week=8) == "not_assessed"  # 2.1 weeks away
    # the nearest row wins (week 9 over week 6.5)
    df = table((6.5, counts_only), (8, dict(blank, marrow_blasts_pct=2.0)), (9, dict(counts_only, hb_g_dl=9.0)), base=HR)
    assert cat_at(df, "iwg2023_hr_mds", week=8) == "CRh"
    # IWG 2006 has no such window: CR and PR are not assessed at the marrow row, which is at least mCR (a marrow
    # criterion only, a response whatever the counts), so it is mCR with a note, never CR
    df = table((7, dict(GOOD, marrow_blasts_pct=nan)), (8, dict(blank, marrow_blasts_pct=2.0)))
    tp = classify_clinical_response(df, "iwg2006_mds")
    row = tp[tp["week"] == 8].iloc[0]
    assert row["category"] == "mCR" and "CR not assessed (depends on missing" in row["notes"] \
        and "at least mCR" in row["notes"]


def test_a_response_certain_despite_missing_values_is_a_lower_bound_not_not_assessed():
    """Marrow 12 % -> 3 % with Hb missing: CR depends on Hb, but mCR (IWG 2006) / CRh (IWG 2023) holds whatever
    it is, so the row is that response with a note; an open worse category or a non-response keeps it
    not assessed (the lower bound must be a response)."""
    nan = np.nan
    df = table((8, dict(C23, marrow_blasts_pct=3.0, hb_g_dl=nan)), base=dict(BASE, marrow_blasts_pct=12.0))
    for crit, cat in (("iwg2006_mds", "mCR"), ("iwg2023_hr_mds", "CRh")):
        tp = classify_clinical_response(df, crit)
        row = tp[tp["week"] == 8].iloc[0]
        assert row["category"] == cat and f"at least {cat}" in row["notes"], (crit, row.to_dict())
    # baseline counts from a pretreatment row within the window
    base_rows = table((8, dict(C23, marrow_blasts_pct=2.0)), base=dict(HR, hb_g_dl=nan))
    pre = base_rows.iloc[[0]].assign(week=-1.0, marrow_blasts_pct=nan, hb_g_dl=8.0)
    tp = classify_clinical_response(pd.concat([pre, base_rows]), "iwg2023_hr_mds")
    assert "hb_g_dl from week -1" in tp[tp["category"] == "baseline"]["notes"].item()


def test_iwg2023_has_no_duration_requirement():
    s = summarize_clinical_response(
        classify_clinical_response(table((4, dict(C23, marrow_blasts_pct=2.0)), base=HR), "iwg2023_hr_mds"),
        "iwg2023_hr_mds")
    assert s.loc[0, "best_response"] == "CR" and s.loc[0, "marrow_response"]


# ------------------------------------------------------------------------------------------------
# ELN 2022 AML (clinical.md §2.3)
# ------------------------------------------------------------------------------------------------
AML = dict(BASE, marrow_blasts_pct=40.0)
CAML = dict(anc_10e9_l=1.0, plt_10e9_l=100.0, pb_blasts_pct=0.0)


@pytest.mark.parametrize(
    "vals, expected",
    [
        (dict(CAML, marrow_blasts_pct=4.9), "CR"),
        (dict(CAML, marrow_blasts_pct=5.0), "PR"),                                  # 5-25 % and <= 50 % of 40
        (dict(CAML, marrow_blasts_pct=4.9, anc_10e9_l=0.5, plt_10e9_l=50.0), "CRh"),
        (dict(CAML, marrow_blasts_pct=4.9, anc_10e9_l=0.49, plt_10e9_l=100.0), "CRi"),  # CRh fails, platelets recovered
        (dict(CAML, marrow_blasts_pct=4.9, anc_10e9_l=1.0, plt_10e9_l=49.0), "CRi"),
        (dict(CAML, marrow_blasts_pct=4.9, anc_10e9_l=0.4, plt_10e9_l=40.0), "MLFS"),
        (dict(CAML, marrow_blasts_pct=4.9, pb_blasts_pct=1.0), "no_response"),
        (dict(CAML, marrow_blasts_pct=20.0), "PR"),                                 # exactly 50 % of 40
        (dict(CAML, marrow_blasts_pct=20.1), "no_response"),
        (dict(CAML, marrow_blasts_pct=20.0, plt_10e9_l=99.0), "no_response"),      # PR needs CR counts
        (dict(CAML, marrow_blasts_pct=20.0, pb_blasts_pct=1.0), "no_response"),    # ... and no circulating blasts
    ],
)
def test_eln2022_categories(vals, expected):
    assert one("eln2022_aml", base=AML, **vals) == expected


def test_eln2022_pr_upper_bound_25pct():
    assert one("eln2022_aml", base=dict(AML, marrow_blasts_pct=60.0), **dict(CAML, marrow_blasts_pct=25.0)) == "PR"
    assert one("eln2022_aml", base=dict(AML, marrow_blasts_pct=60.0), **dict(CAML, marrow_blasts_pct=25.1)) == "no_response"


def test_eln2022_optional_marrow_findings():
    df = table((4, dict(CAML, marrow_blasts_pct=2.0)), base=AML)
    tp = classify_clinical_response(df, "eln2022_aml")
    assert tp.loc[1, "category"] == "CR"
    assert "auer_rods not supplied" in tp.loc[1, "notes"] and "extramedullary not supplied" in tp.loc[1, "notes"]
    df["auer_rods"] = ["yes", "no"]
    df["extramedullary"] = ["no", "yes"]
    assert cat_at(df, "eln2022_aml") == "no_response"  # extramedullary disease: no remission category
    df["extramedullary"] = ["no", "no"]
    assert cat_at(df, "eln2022_aml") == "CR"
    low = table((4, dict(marrow_blasts_pct=2.0, anc_10e9_l=0.2, plt_10e9_l=20.0, pb_blasts_pct=0.0)), base=AML)
    low["cellularity_pct"] = [60.0, 9.9]
    assert cat_at(low, "eln2022_aml") == "no_response"  # aplastic marrow is not MLFS
    low["cellularity_pct"] = [60.0, 10.0]
    assert cat_at(low, "eln2022_aml") == "MLFS"


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------
_val = st.one_of(st.none(), st.floats(0, 30, allow_nan=False).map(lambda x: round(x, 1)))


@st.composite
def cohorts(draw):
    rows = []
    for p in range(draw(st.integers(1, 4))):
        weeks = draw(st.lists(st.integers(-4, 30), min_size=1, max_size=6, unique=True))
        for w in weeks:
            rows.append(dict(
                patient=f"P{p}", week=w, marrow_blasts_pct=draw(_val), hb_g_dl=draw(_val),
                anc_10e9_l=draw(st.one_of(st.none(), st.floats(0, 4).map(lambda x: round(x, 2)))),
                plt_10e9_l=draw(st.one_of(st.none(), st.floats(0, 300).map(lambda x: round(x)))),
                rbc_units_8wk=draw(st.one_of(st.none(), st.integers(0, 8))),
                pb_blasts_pct=draw(st.sampled_from([0.0, 0.0, 1.0, None])),
            ))
    return pd.DataFrame(rows)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(df=cohorts(), seed=st.integers(0, 2**16), criteria=st.sampled_from(["iwg2006_mds", "iwg2023_hr_mds", "eln2022_aml"]))
def test_categories_invariant_to_row_order(df, seed, criteria):
    a = classify_clinical_response(df, criteria)
    b = classify_clinical_response(df.sample(frac=1, random_state=seed), criteria)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(summarize_clinical_response(a, criteria), summarize_clinical_response(b, criteria))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(df=cohorts(), criteria=st.sampled_from(["iwg2006_mds", "iwg2023_hr_mds", "eln2022_aml"]))
def test_never_inferred_from_fish_columns(df, criteria):
    """FISH columns in the table change nothing: clinical categories come from clinical values only."""
    a = classify_clinical_response(df, criteria)
    b = classify_clinical_response(df.assign(nuclei_scored=200, nuclei_abnormal=0, clone_pct=0.0), criteria)
    pd.testing.assert_frame_equal(a, b)
    s = summarize_clinical_response(a, criteria)
    assert set(s["best_response"]) <= set(load_clinical_criteria(criteria).ranking) | {"not_evaluable"}
    assert (s["marrow_response"] == s["best_response"].isin(load_clinical_criteria(criteria).marrow_response)).all()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(blasts=st.floats(0, 100), base=st.floats(0, 100))
def test_missing_value_is_unknown_not_false(blasts, base):
    from fishcount.clinical import Condition, Group

    c = Condition("marrow_blasts_pct", "<=", ref="baseline.marrow_blasts_pct", factor=0.5)
    assert evaluate(c, {"marrow_blasts_pct": blasts}) is None
    assert evaluate(c, {"marrow_blasts_pct": blasts, "baseline.marrow_blasts_pct": base}) == (blasts <= 0.5 * base + 1e-9 * max(1, blasts, 0.5 * base))
    # Kleene logic: a false member decides 'all' whatever is missing
    g = Group("all", (Condition("hb_g_dl", ">=", 11.0), c))
    assert evaluate(g, {"hb_g_dl": 10.0}) is False
    assert evaluate(Group("any", (Condition("hb_g_dl", ">=", 11.0), c)), {"hb_g_dl": 12.0}) is True


# ------------------------------------------------------------------------------------------------
# overall trial response = major ∪ minor ∪ marrow response (clinical.md §1.2, §6.2 R15)
# ------------------------------------------------------------------------------------------------
def test_overall_trial_response_reproduces_moellgard_counts():
    fish = pd.DataFrame({"patient": [f"P{i:02d}" for i in range(26)],
                         "best_response": ["major"] * 5 + ["minor"] * 2 + ["none"] * 12 + ["not_evaluable"] * 7})
    # supplied marrow values: P07 and P08 (FISH none) reach marrow CR; P00 also does (already a FISH responder)
    frames = []
    for i in range(26):
        mcr = i in (0, 7, 8)
        frames.append(table((8, dict(marrow_blasts_pct=3.0 if mcr else 11.0)), (12, dict(marrow_blasts_pct=3.0 if mcr else 11.0)),
                            patient=f"P{i:02d}"))
    clin = summarize_clinical_response(classify_clinical_response(pd.concat(frames)))
    assert clin["marrow_response"].sum() == 3
    out = overall_trial_response(fish, clin)
    assert len(out) == 26 and out["overall_response"].sum() == 9
    assert out["response_basis"].value_counts().to_dict() == {"none": 17, "major": 5, "minor": 2, "marrow-only": 2}
    # a patient without clinical values counts as no marrow response, and is flagged
    out = overall_trial_response(fish, clin[clin["patient"] != "P07"])
    assert out["overall_response"].sum() == 8
    assert "no clinical values" in out.loc[out["patient"] == "P07", "flags"].item()
    # a patient with clinical values only is added (FISH not evaluable) and flagged
    out = overall_trial_response(fish[fish["patient"] != "P08"], clin)
    row = out[out["patient"] == "P08"].iloc[0]
    assert row["overall_response"] and row["response_basis"] == "marrow-only" and "no FISH response row" in row["flags"]


def test_overall_trial_response_with_iwg2006_cytogenetic_labels():
    fish = pd.DataFrame({"patient": ["A", "B", "C"], "best_response": ["complete", "partial", "none"]})
    clin = pd.DataFrame({"patient": ["A", "B", "C"], "best_response": ["SD", "SD", "mCR"], "marrow_response": [False, False, True]})
    out = overall_trial_response(fish, clin)
    assert out["response_basis"].tolist() == ["complete", "partial", "marrow-only"] and out["overall_response"].all()


def test_overall_trial_response_errors():
    clin = pd.DataFrame({"patient": ["P1"], "best_response": ["CR"], "marrow_response": [True]})
    with pytest.raises(InputError, match="response.csv: missing column best_response"):
        overall_trial_response(pd.DataFrame({"patient": ["P1"]}), clin, source="response.csv")
    with pytest.raises(InputError, match="duplicate patient"):
        overall_trial_response(pd.DataFrame({"patient": ["P1", "P1"], "best_response": ["none", "major"]}), clin)
    with pytest.raises(InputError, match="missing column marrow_response"):
        overall_trial_response(pd.DataFrame({"patient": ["P1"], "best_response": ["none"]}), clin.drop(columns="marrow_response"))


# ------------------------------------------------------------------------------------------------
# bad input: one line naming file, line and column
# ------------------------------------------------------------------------------------------------
def _csv(tmp_path, text: str) -> Path:
    p = tmp_path / "clinical.csv"
    p.write_text(text)
    return p


HEADER = "patient,week," + ",".join(CLINICAL_COLUMNS) + "\n"


def test_read_clinical_csv_ok(tmp_path):
    p = _csv(tmp_path, HEADER + "P1,0,12,8.5,0.8,40,4,1\nP1,8,,9,0.9,50,2,\n")
    df = read_clinical_csv(p)
    assert df["week"].tolist() == [0.0, 8.0] and np.isnan(df.loc[1, "marrow_blasts_pct"])
    assert np.isnan(df.loc[1, "pb_blasts_pct"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("patient,week,hb_g_dl\nP1,0,9\n", r"clinical.csv: missing column\(s\) marrow_blasts_pct, anc_10e9_l"),
        (HEADER + "P1,0,12,8.5,0.8,40,4,1\nP1,8,abc,9,0.9,50,2,0\n", r"clinical.csv: line 3, column marrow_blasts_pct: 'abc' is not a number"),
        (HEADER + "P1,0,12,8.5,0.8,-40,4,1\n", r"clinical.csv: line 2, column plt_10e9_l: -40 is negative"),
        (HEADER + "P1,0,120,8.5,0.8,40,4,1\n", r"line 2, column marrow_blasts_pct: 120 is above 100 %"),
        (HEADER + "P1,0,12,8.5,0.8,40,4,1\nP1,0.0,10,8.5,0.8,40,4,1\n", r"line 3, columns patient/week: duplicate row for patient P1 week 0 \(also on line 2\)"),
        (HEADER + ",0,12,8.5,0.8,40,4,1\n", r"line 2, column patient: patient id is empty"),
        (HEADER + "P1,,12,8.5,0.8,40,4,1\n", r"line 2, column week: week is empty"),
        (HEADER + "P1,inf,12,8.5,0.8,40,4,1\n", r"line 2, column week: 'inf' is not a finite number"),
        (HEADER.strip() + ",auer_rods\nP1,0,12,8.5,0.8,40,4,1,maybe\n", r"line 2, column auer_rods: 'maybe' is not true/false"),
        ("", r"clinical.csv: cannot read as CSV"),
        (HEADER, r"clinical.csv: no data rows"),
    ],
)
def test_bad_clinical_csv(tmp_path, text, message):
    with pytest.raises(InputError, match=message) as exc:
        read_clinical_csv(_csv(tmp_path, text))
    assert "\n" not in str(exc.value)


def test_typed_dataframe_input_with_pandas_missing_values():
    df = table((8, dict(GOOD, marrow_blasts_pct=2.0)), (12, dict(GOOD, marrow_blasts_pct=2.0)))
    df = df.astype({"patient": "string", "marrow_blasts_pct": "Float64", "rbc_units_8wk": "Int64"})
    df.loc[1, "rbc_units_8wk"] = pd.NA
    df["auer_rods"] = pd.array([pd.NA, False, False], dtype="boolean")
    v = validate_clinical_table(df)
    assert np.isnan(v.loc[1, "rbc_units_8wk"]) and v["auer_rods"].tolist() == [None, False, False]
    assert list(classify_clinical_response(df)["category"]) == ["baseline", "CR", "CR"]
    with pytest.raises(InputError, match="<table>: line 3, column hb_g_dl: True is not a number"):
        validate_clinical_table(df.astype({"hb_g_dl": object}).assign(hb_g_dl=[8.5, True, 11.0]))


def test_bad_clinical_inputs_other():
    with pytest.raises(InputError, match="nowhere.csv: file not found"):
        read_clinical_csv("nowhere.csv")
    with pytest.raises(InputError, match="expected a table"):
        validate_clinical_table([1, 2], "x")
    df = table((4, {}))
    with pytest.raises(InputError, match="dup: duplicate column"):
        validate_clinical_table(pd.concat([df, df[["hb_g_dl"]]], axis=1), "dup")


def _crit(**over) -> dict:
    d = tomllib.loads((CRITERIA_DIR / "iwg2023_hr_mds.toml").read_text())
    d.update(over)
    return d


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(kind="response"), "kind must be \"clinical\""),
        (lambda d: d.update(colour="red"), r"unknown field\(s\) colour"),
        (lambda d: d.update(schema_version=2), "schema_version 2 is not supported"),
        (lambda d: d.update(sources=[]), "must cite at least one source"),
        (lambda d: d.update(marrow_response=["XX"]), "marrow_response names unknown categories"),
        (lambda d: d["categories"][0]["when"]["all"][0].update(var="blasts"), "unknown variable 'blasts'"),
        (lambda d: d["categories"][0]["when"]["all"][0].update(op="=>"), "op must be one of"),
        (lambda d: d["categories"][0]["when"]["all"][0].update(value="5"), "must be a number"),
        (lambda d: d["categories"][0]["when"]["all"][0].update(ref="baseline.hb_g_dl"), "exactly one of 'value' or 'ref'"),
        (lambda d: d["categories"][0].pop("source"), r"missing or empty text field 'categories\[0\].source'"),
        (lambda d: d["categories"][1].update(rank=1), "category ranks must differ"),
        (lambda d: d["categories"][0].pop("when"), "only the last category may have no 'when'"),
        (lambda d: d["categories"][3]["when"]["all"][3].update(value=4), "value must be an integer between 0 and 3"),
        (lambda d: d["categories"][1]["when"]["all"][6].update(op="<"), "cytogenetic_complete is true/false"),
        (lambda d: d["categories"][0].update(min_duration_weeks=-1), "min_duration_weeks must be >= 0"),
        (lambda d: d["categories"][0].update(duration_from="diagnosis"), "duration_from must be"),
        (lambda d: d["categories"][0].update(name="baseline"), "reserved"),
        (lambda d: d.update(events=[{"name": "x", "after": ["ZZ"], "when": {"var": "hb_g_dl", "op": "<", "value": 1}, "source": "s"}]), "after must name categories"),
        (lambda d: d.update(events=[{"name": "x", "after": ["CR"], "source": "s"}]), r"events\[0\].: missing 'when'"),
        (lambda d: d.update(events=[{"name": "x", "after": ["CR"], "when": {"var": "hb_g_dl", "op": "<", "value": 1}, "source": "s", "why": 1}]), r"events\[0\].: unknown key"),
        (lambda d: d.update(events=["x"]), r"events\[0\] must be a table"),
        (lambda d: d.update(improvements=[{"name": "HI", "source": "s"}]), r"improvements\[0\].: missing 'when'"),
        (lambda d: d.update(improvements=[{"name": "HI", "source": "s", "when": {"var": "hb_g_dl", "op": "<", "value": 1}, "x": 1}]), r"improvements\[0\].: unknown key"),
        (lambda d: d.update(improvements=["HI"]), r"improvements\[0\] must be a table"),
        (lambda d: d.update(improvements=[{"name": "CR", "source": "s", "when": {"var": "hb_g_dl", "op": "<", "value": 1}}]), "improvement names must be unique and differ from categories"),
        (lambda d: d.update(categories=[]), "needs a non-empty \\[\\[categories\\]\\] list"),
        (lambda d: d["categories"].insert(0, "CR"), r"categories\[0\] must be a table"),
        (lambda d: d["categories"][0].update(colour=1), r"categories\[0\].: unknown key"),
        (lambda d: d["categories"][0].update(rank=0), "rank must be an integer >= 1"),
        (lambda d: d["categories"][0].update(event=3), "event must be text"),
        (lambda d: d["categories"][1].update(name="CR"), "duplicate category names"),
        (lambda d: d["categories"][0].update(duration_inclusive="yes"), "duration_inclusive must be true or false"),
        (lambda d: d.update(assessment_requires="marrow_blasts_pct"), "field 'assessment_requires' must be a list of strings"),
        (lambda d: d["categories"][0].update(when=[1]), r"categories\[0\].when: a condition must be a table"),
        (lambda d: d["categories"][0].update(when={"all": [], }), r"when.all must be a non-empty list"),
        (lambda d: d["categories"][0].update(when={"all": [{"var": "hb_g_dl", "op": "<", "value": 1}], "any": []}), "cannot be combined"),
        (lambda d: d["categories"][0].update(when={"count": [], "op": "==", "value": 0}), "count must be a non-empty list"),
        (lambda d: d["categories"][0].update(when={"count": [{"var": "hb_g_dl", "op": "<", "value": 1}], "op": "~", "value": 0}), r"when.op must be one of"),
        (lambda d: d["categories"][0].update(when={"count": [{"var": "hb_g_dl", "op": "<", "value": 1}], "op": "==", "value": 0, "x": 1}), "in a count condition"),
        (lambda d: d["categories"][0].update(when={"var": "hb_g_dl", "op": "<", "value": 1, "unit": "g/dL"}), "unknown key"),
        (lambda d: d["categories"][0].update(when={"op": "<", "value": 1}), "a condition needs 'var'"),
        (lambda d: d["categories"][0].update(when={"var": "hb_g_dl", "op": "<", "value": 1, "if_missing": "guess"}), "if_missing must be"),
        (lambda d: d["categories"][0].update(when={"var": "hb_g_dl", "op": "<", "value": 1, "factor": 2}), "only apply with 'ref'"),
        (lambda d: d["categories"][0].update(when={"var": "max.auer_rods", "op": "==", "value": True}), "unknown variable 'max.auer_rods'"),
        (lambda d: d.update(count_window_weeks=-2), "count_window_weeks must be >= 0"),
        (lambda d: d.update(count_window_weeks="2"), "count_window_weeks must be a number"),
    ],
)
def test_bad_criteria(mutate, message):
    d = _crit()
    mutate(d)
    with pytest.raises(CriteriaError, match=message):
        clinical_criteria_from_dict(d, "my.toml")


def test_criteria_must_be_a_table():
    with pytest.raises(CriteriaError, match="x.toml: a criteria file must be a table"):
        clinical_criteria_from_dict([1], "x.toml")


def test_bad_criteria_files(tmp_path):
    with pytest.raises(CriteriaError, match="unknown clinical criteria set; shipped: eln2022_aml, iwg2006_mds"):
        load_clinical_criteria("iwg2030")
    with pytest.raises(CriteriaError, match="cannot read criteria file"):
        load_clinical_criteria(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("id = [")
    with pytest.raises(CriteriaError, match="bad.toml: not valid TOML"):
        load_clinical_criteria(bad)
    with pytest.raises(CriteriaError, match="kind must be"):
        load_clinical_criteria(CRITERIA_DIR / "trial_fish.toml")  # a FISH criteria set is not a clinical one


# ------------------------------------------------------------------------------------------------
# the --clinical hook of `fishcount response`
# ------------------------------------------------------------------------------------------------
def test_cli_response_with_clinical(tmp_path):
    from fishcount.cli import main

    (tmp_path / "samples.csv").write_text(
        "patient,week,nuclei_scored,nuclei_abnormal\nP1,0,200,120\nP1,16,200,4\nP2,0,200,120\nP2,16,200,110\n")
    (tmp_path / "clin.csv").write_text(
        HEADER + "P1,0,12,8.5,0.8,40,4,1\nP1,16,11,9,0.8,40,4,1\nP2,0,12,8.5,0.8,40,4,1\n"
        "P2,8,3,9,0.8,40,4,1\nP2,16,3,9,0.8,40,4,1\n")
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["response", str(tmp_path / "samples.csv"), "--clinical", str(tmp_path / "clin.csv"),
                                    "--out", str(out), "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "Overall trial response" in res.output and "never from FISH" in res.output
    assert "karyotyping is recommended" in (out / "clinical_response.txt").read_text()
    resp = pd.read_csv(out / "response.csv")
    got = dict(zip(resp["patient"], resp["response_basis"]))
    assert got == {"P1": "major", "P2": "marrow-only"}
    assert resp["overall_response"].tolist() == [True, True]
    assert (out / "clinical_timepoints.csv").exists() and (out / "clinical_response.csv").exists()
    # again without --force: refused before anything is written
    before = (out / "clinical_response.csv").stat().st_mtime_ns
    res = CliRunner().invoke(main, ["response", str(tmp_path / "samples.csv"), "--clinical", str(tmp_path / "clin.csv"),
                                    "--out", str(out), "--no-plots"])
    assert res.exit_code == 2 and "exists already" in res.output
    assert (out / "clinical_response.csv").stat().st_mtime_ns == before
    # a bad clinical file: one line, exit 2, nothing written
    (tmp_path / "bad.csv").write_text(HEADER + "P1,0,x,8.5,0.8,40,4,1\n")
    res = CliRunner().invoke(main, ["response", str(tmp_path / "samples.csv"), "--clinical", str(tmp_path / "bad.csv"),
                                    "--out", str(tmp_path / "r2"), "--no-plots"])
    assert res.exit_code == 2 and "line 2, column marrow_blasts_pct" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r2").exists()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(criteria=st.sampled_from(["iwg2006_mds", "iwg2023_hr_mds", "eln2022_aml"]),
       base_blasts=st.floats(0, 60).map(lambda x: round(x, 1)),
       b1=st.floats(0, 80).map(lambda x: round(x, 1)), b2=st.floats(0, 80).map(lambda x: round(x, 1)),
       hb=st.sampled_from([8.0, 10.0, 11.0]), anc=st.sampled_from([0.3, 0.5, 1.0]),
       plt=st.sampled_from([30.0, 50.0, 100.0]), pb=st.sampled_from([0.0, 1.0]))
def test_fewer_marrow_blasts_never_give_a_worse_category(criteria, base_blasts, b1, b2, hb, anc, plt, pb):
    """With the same blood values, a lower marrow blast % is never classified worse (rank) than a higher one."""
    lo, hi = sorted((b1, b2))
    vals = dict(hb_g_dl=hb, anc_10e9_l=anc, plt_10e9_l=plt, pb_blasts_pct=pb)
    base = dict(BASE, marrow_blasts_pct=base_blasts)
    rank = {c.name: c.rank for c in load_clinical_criteria(criteria).categories}
    assert rank[one(criteria, base=base, marrow_blasts_pct=lo, **vals)] <= rank[one(criteria, base=base, marrow_blasts_pct=hi, **vals)]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(cell=st.text(max_size=8))
def test_csv_cells_parse_or_fail_naming_line_and_column(tmp_path_factory, cell):
    cell = cell.replace(",", "").replace("\n", "").replace("\r", "").replace('"', "")
    p = tmp_path_factory.mktemp("cells") / "clinical.csv"
    p.write_text(HEADER + f"P1,0,12,{cell},0.8,40,4,1\n", encoding="utf-8")
    try:
        v = read_clinical_csv(p).loc[0, "hb_g_dl"]
    except InputError as exc:
        assert str(exc).startswith(f"{p}: line 2, column hb_g_dl: ")
    else:
        assert np.isnan(v) or (v >= 0 and float(cell) == v)


def test_docstring_examples_run():
    import doctest

    import fishcount.clinical

    res = doctest.testmod(fishcount.clinical)
    assert res.attempted >= 4 and res.failed == 0
