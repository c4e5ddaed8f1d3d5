"""Per-nucleus calls: counts from the signal table, pattern strings and calls of every shipped panel,
and the exclusion reasons."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fishcount as fc
from fishcount.calls import call_nuclei, nuclei_columns
from fishcount.panels import FUSION, list_panels, load_panel


def signals_for(counts_per_label: dict[int, dict[str, int]]) -> pd.DataFrame:
    """A signal table with the given counted signals per nucleus (plus one uncounted merged member)."""
    rows = []
    for lab, counts in counts_per_label.items():
        for key, n in counts.items():
            rows += [{"label": lab, "counts_as": key}] * n
            if n:
                rows.append({"label": lab, "counts_as": ""})  # a split member / fused partner: not counted
    return pd.DataFrame(rows, columns=["label", "counts_as"])


def qc_for(labels, **cols) -> pd.DataFrame:
    return pd.DataFrame({"label": list(labels), **cols})


# --- del(5q): every pattern of clinical.md §3.4 -------------------------------------------------
@pytest.mark.parametrize(
    "o,g,pattern,call",
    [
        (2, 2, "2O2G", "normal"),
        (1, 2, "1O2G", "del5q"),
        (1, 1, "1O1G", "monosomy5"),
        (4, 4, "4O4G", "tetraploid"),
        (3, 3, "3O3G", "gain5"),
        (3, 2, "3O2G", "gain5q"),
        (2, 3, "2O3G", "gain5p"),
        (2, 1, "2O1G", "loss5p"),
        (1, 3, "1O3G", "gain5p"),
        (4, 1, "4O1G", "gain5q"),
    ],
)
def test_del5q_patterns(o, g, pattern, call):
    panel = load_panel("del5q")
    out = call_nuclei(qc_for([7]), signals_for({7: {"EGR1": o, "D5S23": g}}), panel)
    row = out.iloc[0]
    assert (row.count_EGR1, row.count_D5S23, row.pattern, row.call) == (o, g, pattern, call)
    assert row.scorable and row.exclusion_reason == ""


# --- every shipped panel: each call's pattern, counted from a signal table ----------------------
def _vector_for(rule, panel) -> dict[str, int]:
    vec = {k: 0 for k in panel.pattern_keys}
    for key, cond in rule.pattern:
        vec[key] = cond.lo if cond.lo > 0 or cond.hi == 0 else 1
    return vec


CASES = [(pid, c.name) for pid in list_panels() for c in load_panel(pid).calls]


@pytest.mark.parametrize("pid,call", CASES)
def test_every_shipped_panel_call_from_signal_table(pid, call):
    panel = load_panel(pid)
    rule = panel.call_rule(call)
    vec = _vector_for(rule, panel)
    assert rule.matches(vec)
    out = call_nuclei(qc_for([1]), signals_for({1: vec}), panel)
    row = out.iloc[0]
    for key in panel.pattern_keys:
        col = "count_fusion" if key == FUSION else f"count_{key}"
        assert row[col] == vec[key]
    first = next(c.name for c in panel.calls if c.matches(vec))  # earlier rules win (panel order)
    assert row.call == first
    assert row.pattern == panel.pattern_string(vec)


def test_columns_follow_the_contract():
    for pid in list_panels():
        panel = load_panel(pid)
        out = call_nuclei(qc_for([1, 2], area_um2=[50.0, 60.0], extra=[1, 2]), signals_for({}), panel)
        assert list(out.columns[: len(nuclei_columns(panel))]) == nuclei_columns(panel)
        assert "extra" in out.columns  # QC columns are kept after the contract
        assert ("count_fusion" in out.columns) == bool(panel.fusion_pair)


# --- exclusion reasons --------------------------------------------------------------------------
def test_no_signal_in_one_colour_is_unscorable():
    panel = load_panel("del5q")
    out = call_nuclei(qc_for([1, 2, 3]), signals_for({1: {"EGR1": 0, "D5S23": 2}, 2: {"EGR1": 2},
                                                      3: {"EGR1": 2, "D5S23": 2}}), panel)
    assert out.exclusion_reason.tolist() == ["no_signal_EGR1", "no_signal_D5S23", ""]
    assert out.scorable.tolist() == [False, False, True]


def test_fused_signal_carries_both_colours():
    panel = load_panel("kmt2a")  # normal = 2F, no separate colours
    out = call_nuclei(qc_for([1]), signals_for({1: {FUSION: 2}}), panel)
    assert out.scorable[0] and out.call[0] == "normal" and out.pattern[0] == "0O0G2F"


def test_too_many_signals():
    panel = load_panel("del5q")
    n = panel.max_signals_per_channel
    out = call_nuclei(qc_for([1, 2]), signals_for({1: {"EGR1": n + 1, "D5S23": 2}, 2: {"EGR1": n, "D5S23": 2}}), panel)
    assert out.exclusion_reason.tolist() == ["too_many_signals", ""]


def test_segmentation_reasons_come_first_and_reasons_accumulate():
    panel = load_panel("del5q")
    qc = qc_for([1, 2, 3], scorable=[False, True, False], exclusion_reason=["clump", "", ""])
    out = call_nuclei(qc, signals_for({1: {"D5S23": 2}, 2: {"EGR1": 2, "D5S23": 2}, 3: {"EGR1": 1, "D5S23": 1}}),
                      panel, dim_labels=[1, 2])
    assert out.exclusion_reason.tolist() == ["clump;no_signal_EGR1;dim_signals", "dim_signals", "segmentation_qc"]
    assert not out.scorable.any()


def test_signals_outside_nuclei_and_of_unknown_labels_are_not_counted():
    panel = load_panel("del5q")
    sig = pd.DataFrame({"label": [0, 0, 1, 1, 1, 9], "counts_as": ["EGR1", "D5S23", "EGR1", "D5S23", "D5S23", "EGR1"]})
    out = call_nuclei(qc_for([1]), sig, panel)
    assert (out.count_EGR1[0], out.count_D5S23[0]) == (1, 2)


def test_empty_inputs():
    panel = load_panel("del5q")
    out = call_nuclei(qc_for([]), signals_for({}), panel)
    assert len(out) == 0 and list(out.columns[:10]) == nuclei_columns(panel)
    out = call_nuclei(qc_for([1]), signals_for({}), panel)
    assert out.exclusion_reason[0] == "no_signal_EGR1;no_signal_D5S23"


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 6), st.sampled_from(["EGR1", "D5S23", ""])), max_size=60))
def test_counts_equal_counted_signals_per_nucleus(rows):
    panel = load_panel("del5q")
    sig = pd.DataFrame(rows, columns=["label", "counts_as"])
    labels = list(range(1, 6))
    out = call_nuclei(qc_for(labels), sig, panel).set_index("label")
    for lab in labels:
        for s in panel.signal_names:
            assert out.loc[lab, f"count_{s}"] == ((sig.label == lab) & (sig.counts_as == s)).sum()
        d = {s: out.loc[lab, f"count_{s}"] for s in panel.signal_names}
        assert out.loc[lab, "call"] == panel.call_for(d)
        assert out.loc[lab, "scorable"] == (out.loc[lab, "exclusion_reason"] == "")


def test_scorable_read_back_as_text():
    panel = load_panel("del5q")
    qc = qc_for([1, 2], scorable=["False", "True"], exclusion_reason=["", ""])
    out = call_nuclei(qc, signals_for({1: {"EGR1": 2, "D5S23": 2}, 2: {"EGR1": 2, "D5S23": 2}}), panel)
    assert out.scorable.tolist() == [False, True]
    assert out.exclusion_reason.tolist() == ["segmentation_qc", ""]


def test_signal_at_boundary_reason():
    panel = load_panel("del5q")
    out = call_nuclei(qc_for([1, 2]), signals_for({1: {"EGR1": 2, "D5S23": 2}, 2: {"EGR1": 2, "D5S23": 2}}), panel,
                      boundary_labels=[2], dim_labels=[2])
    assert out.exclusion_reason.tolist() == ["", "dim_signals;signal_at_boundary"]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7), st.sampled_from(["", "border", "too_small;dim_dapi"]),
                          st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=12))
def test_exclusion_reasons_match_the_rule_by_rule_list(rows):
    """Reasons in order: segmentation, no_signal per colour, too_many_signals, dim_signals, boundary."""
    panel = load_panel("del5q")
    labels = list(range(1, len(rows) + 1))
    seg = [r[2] for r in rows]
    qc = qc_for(labels, scorable=[s == "" and ok for s, ok in zip(seg, (r[5] for r in rows))], exclusion_reason=seg)
    sig = signals_for({lab: {"EGR1": r[0], "D5S23": r[1]} for lab, r in zip(labels, rows)})
    dim = [lab for lab, r in zip(labels, rows) if r[3]]
    bnd = [lab for lab, r in zip(labels, rows) if r[4]]
    out = call_nuclei(qc, sig, panel, dim_labels=dim, boundary_labels=bnd)
    for i, (e, d5, s, is_dim, is_bnd, ok) in enumerate(rows):
        want = [s] if s else ([] if ok else ["segmentation_qc"])
        want += [f"no_signal_{n}" for n, c in (("EGR1", e), ("D5S23", d5)) if c == 0]
        want += ["too_many_signals"] if max(e, d5) > panel.max_signals_per_channel else []
        want += ["dim_signals"] if is_dim else []
        want += ["signal_at_boundary"] if is_bnd else []
        assert out.exclusion_reason[i] == ";".join(want)
        assert out.scorable[i] == (not want)
