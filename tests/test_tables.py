"""Tables as laboratories make them (spreadsheet exports): read right, or refused in one line naming the file,
the line and the column; never silently misread (each case found by a reviewer feeding real-looking tables)."""
from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from fishcount.cli import main
from fishcount.errors import InputError


def _w(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def test_patient_ids_that_look_like_numbers_stay_text(tmp_path):
    """007 and 012 are not patients 7 and 12: the FISH and clinical rows of one patient meet, the ITT
    denominator is the number of patients, and controls 007 and 07 stay two controls."""
    from fishcount.response import classify_response, read_samples

    s = _w(tmp_path, "s.csv", "patient,week,nuclei_scored,nuclei_abnormal\n007,0,200,120\n007,16,200,100\n"
                              "012,0,200,100\n012,16,200,2\n")
    res = classify_response(read_samples(s))
    assert sorted(res.patients["patient"]) == ["007", "012"]
    c = _w(tmp_path, "c.csv", "patient,week,marrow_blasts_pct,pb_blasts_pct,hb_g_dl,anc_10e9_l,plt_10e9_l,rbc_units_8wk\n"
                              "007,0,12,0,9,1.5,120,0\n012,0,11,0,9,1.5,120,0\n")
    r = CliRunner().invoke(main, ["response", str(s), "--clinical", str(c), "--out", str(tmp_path / "r"), "--no-plots"])
    assert r.exit_code == 0, r.output
    assert sorted(pd.read_csv(tmp_path / "r" / "response.csv", dtype=str)["patient"]) == ["007", "012"]
    from fishcount.cutoffs import controls_from_tables

    ctl = _w(tmp_path, "ctl.csv", "sample,nuclei_scored,n_del5q,n_monosomy5\n007,200,1,0\n07,200,2,1\n")
    assert list(controls_from_tables([ctl], "del5q")["sample"]) == ["007", "07"]


@pytest.mark.parametrize("name, text, match", [
    # decimal commas in every row: one value more than the header (pandas took the first column as the index)
    ("s.csv", "patient,week,nuclei_scored,nuclei_abnormal,clone_pct\nP1,0,200,120,60,0\nP1,16,210,8,3,8\n",
     r"s.csv: line 2: 6 values for the 5 columns of the header .*\(a decimal comma\? write 3.5, not 3,5"),
    ("s.csv", "patient,week,nuclei_scored,nuclei_abnormal,nuclei_abnormal\nP1,0,200,120,3\n",
     r"s.csv: line 1: column 'nuclei_abnormal' appears twice"),
    ("s.csv", "patient,Week,nuclei_scored,nuclei_abnormal,week\nP1,0,200,120,3\n",
     r"line 1: column 'week' appears twice \(as 'Week'\)"),
    ("s.csv", "patient,week,nuclei_scored,nuclei_abnormal\nP1,0,200,120\n\nP1,16,200,x\n",
     r"s.csv: row 4, column 'nuclei_abnormal': expected a number"),  # the line after a blank line
])
def test_samples_table_misreads_are_refused(tmp_path, name, text, match):
    from fishcount.response import classify_response, read_samples

    with pytest.raises(InputError, match=match):
        classify_response(read_samples(_w(tmp_path, name, text)), source=str(tmp_path / name))


def test_clinical_table_decimal_comma_duplicate_column_and_lines(tmp_path):
    from fishcount.clinical import read_clinical_csv

    head = "patient,week,marrow_blasts_pct,pb_blasts_pct,hb_g_dl,anc_10e9_l,plt_10e9_l,rbc_units_8wk"
    with pytest.raises(InputError, match=r"c.csv: line 2: 9 values for the 8 columns"):
        read_clinical_csv(_w(tmp_path, "c.csv", head + "\nP1,0,12,0,8,5,1.5,120,0\n"))
    with pytest.raises(InputError, match=r"line 1: column 'marrow_blasts_pct' appears twice"):
        read_clinical_csv(_w(tmp_path, "c.csv", head + ",marrow_blasts_pct\nP1,0,12,0,8,1.5,120,0,30\n"))
    # a quoted note over two lines and a blank line: the bad row is named by its line in the file
    text = head + ',note\nP1,0,12,0,9,1.5,120,0,"first\nsecond"\n\nP1,x,12,0,9,1.5,120,0,\n'
    with pytest.raises(InputError, match=r"c.csv: line 5, column week: 'x' is not a number"):
        read_clinical_csv(_w(tmp_path, "c.csv", text))


def test_not_utf8_is_refused_with_what_to_do(tmp_path):
    from fishcount.clinical import read_clinical_csv

    p = _w(tmp_path, "c.csv", "patient,week\nMüller,0\n", encoding="utf-16")
    with pytest.raises(InputError, match=r"not UTF-8 text \(save it from the spreadsheet as 'CSV UTF-8'\)"):
        read_clinical_csv(p)


def test_cutoff_controls_header_case_and_missing_clone_counts(tmp_path):
    """N_del5q is n_del5q (read as another name its counts were 0 and the cut-off a third of the right one); a
    table with no count of the clone at all is refused, never written as a validated cut-off."""
    from fishcount.cutoffs import compute_cutoffs, controls_from_tables, cutoff_for_n

    rows = "C1,200,3,1\nC2,200,2,0\nC3,200,4,1\nC4,200,1,0\n"
    good = controls_from_tables([_w(tmp_path, "a.csv", "sample,nuclei_scored,n_del5q,n_monosomy5\n" + rows)], "del5q")
    odd = controls_from_tables([_w(tmp_path, "b.csv", "sample, nuclei_scored,N_del5q ,N_Monosomy5\n" + rows)], "del5q")
    a, b = compute_cutoffs(good, "del5q"), compute_cutoffs(odd, "del5q")
    assert b.clone.kmax == a.clone.kmax == 5 and round(cutoff_for_n(b.clone, 200), 2) == 5.06
    with pytest.raises(InputError, match=r"c.csv: no count of the clone: a control table needs nuclei_abnormal or "
                                         r"n_del5q / n_monosomy5"):
        controls_from_tables([_w(tmp_path, "c.csv", "sample,nuclei_scored,del5q\n" + "C1,200,3\n")], "del5q")


def test_cohort_dash_is_missing_and_duplicate_columns_refused(tmp_path):
    from fishcount.cohort import compare_groups, read_covariates, read_response_table

    resp = _w(tmp_path, "r.csv", "patient,best_response\n" + "".join(f"P{i},{'major' if i % 2 else 'none'}\n"
                                                                     for i in range(1, 7)))
    cov = _w(tmp_path, "cov.csv", "patient,tp53\nP1,wt\nP2,mut\nP3,wt\nP4,mut\nP5,-\nP6,\n")
    cmp = compare_groups(read_response_table(resp), "tp53", covariates=read_covariates(cov))
    assert list(cmp.table["group"]) == ["mut", "wt"] and "2 patient(s) without a tp53 value left out" in cmp.notes
    with pytest.raises(InputError, match=r"x.csv: line 1: column 'best_response' appears twice"):
        read_response_table(_w(tmp_path, "x.csv", "patient,best_response,best_response\nP1,major,none\n"))


def test_patient_ids_in_nfc_and_nfd_are_one_patient(tmp_path):
    """Müller typed (NFC) in the samples table and copied from a macOS folder name (NFD) in the clinical table."""
    import unicodedata

    from fishcount.clinical import read_clinical_csv
    from fishcount.response import classify_response, read_samples

    nfc, nfd = unicodedata.normalize("NFC", "Müller"), unicodedata.normalize("NFD", "Müller")
    assert nfc != nfd
    s = _w(tmp_path, "s.csv", f"patient,week,nuclei_scored,nuclei_abnormal\n{nfc},0,200,120\n{nfd},16,200,2\n")
    res = classify_response(read_samples(s))
    assert list(res.patients["patient"]) == [nfc] and res.patients["best_response"].iloc[0] == "major"
    c = _w(tmp_path, "c.csv", "patient,week,marrow_blasts_pct,pb_blasts_pct,hb_g_dl,anc_10e9_l,plt_10e9_l,"
                              f"rbc_units_8wk\n{nfd},0,12,0,9,1.5,120,0\n")
    assert list(read_clinical_csv(c)["patient"]) == [nfc]


def test_number_columns_that_are_not_counts_and_spacer_columns(tmp_path):
    """A 20-digit accession number stays text (as a float it loses digits; as an int it overflowed); inf in an
    extra column is a float, not a crash; a spreadsheet's unnamed spacer columns are read, as pandas names them."""
    from fishcount.response import classify_response, read_samples
    from fishcount.scoring import read_table

    d = read_table(_w(tmp_path, "t.csv", "patient,accession,ratio\nA,100000000000000000000,inf\nB,2,1\n"))
    assert d["accession"].tolist() == ["100000000000000000000", "2"] and d["ratio"].tolist()[0] == float("inf")
    s = _w(tmp_path, "s.csv", "patient,week,nuclei_scored,nuclei_abnormal,,,ratio\nP1,0,200,120,,,inf\n"
                              "P1,16,200,2,,,1\n")
    t = read_samples(s)
    assert "Unnamed: 4" in t.columns and classify_response(t).patients["best_response"].iloc[0] == "major"
