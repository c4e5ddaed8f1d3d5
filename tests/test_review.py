"""Review model: corrections, recounts, the journal (append, read, replay), tally, blind order,
two-reader concordance. Hand-made del(5q) tables with known answers."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy.stats import beta

import fishcount.review as rv
from fishcount.errors import InputError

T0 = "2026-11-25T12:00:00.000000+00:00"


def _tables():
    """Four nuclei: 1 normal (2O2G), 2 del5q (1O2G), 3 no-green (unscorable), 4 overlapping (QC)."""
    nuclei = pd.DataFrame(
        {
            "label": [1, 2, 3, 4],
            "centroid_y": [10.0, 40.0, 70.0, 100.0],
            "centroid_x": [10.0, 40.0, 70.0, 100.0],
            "area_um2": [50.0, 52.0, 48.0, 60.0],
            "count_EGR1": [2, 1, 2, 2],
            "count_D5S23": [2, 2, 0, 2],
            "pattern": ["2O2G", "1O2G", "2O0G", "2O2G"],
            "call": ["normal", "del5q", "atypical", "normal"],
            "scorable": [True, True, False, False],
            "exclusion_reason": ["", "", "no_signal_D5S23", "overlapping_nuclei"],
        }
    )
    rows = [
        # spot_id, label, signal, y, x, group_id, counts_as, fusion_partner
        (0, 1, "EGR1", 8, 8, 0, "EGR1"),
        (1, 1, "EGR1", 12, 12, 1, "EGR1"),
        (2, 1, "D5S23", 9, 11, 2, "D5S23"),
        (3, 1, "D5S23", 11, 9, 3, "D5S23"),
        (4, 2, "EGR1", 40, 40, 4, "EGR1"),
        (5, 2, "EGR1", 40.5, 40.5, 4, ""),  # split signal merged into 4
        (6, 2, "D5S23", 38, 38, 6, "D5S23"),
        (7, 2, "D5S23", 42, 42, 7, "D5S23"),
        (8, 3, "EGR1", 68, 68, 8, "EGR1"),
        (9, 3, "EGR1", 72, 72, 9, "EGR1"),
        (10, 4, "EGR1", 98, 98, 10, "EGR1"),
        (11, 4, "EGR1", 102, 102, 11, "EGR1"),
        (12, 4, "D5S23", 99, 101, 12, "D5S23"),
        (13, 4, "D5S23", 101, 99, 13, "D5S23"),
    ]
    spots = pd.DataFrame(rows, columns=["spot_id", "label", "signal", "y", "x", "group_id", "counts_as"])
    spots["intensity"] = 100.0
    spots["snr"] = 8.0
    spots["fusion_partner"] = -1
    return nuclei, spots


def _state(**kw):
    n, s = _tables()
    return rv.start_review(n, s, "del5q", field="f01", **kw)


def _row(state, label):
    return state.nuclei.set_index("label").loc[label]


# --- loading ------------------------------------------------------------------------------
def test_start_review_adds_review_columns():
    s = _state()
    assert list(s.labels) == [1, 2, 3, 4]
    assert not s.nuclei["reviewed"].any() and not s.nuclei["corrected"].any()
    assert (s.nuclei["call_auto"] == s.nuclei["call"]).all()
    assert s.spots["origin"].eq("auto").all()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda n, s: (n.drop(columns="call"), s), r"lacks column\(s\) call"),
        (lambda n, s: (n.drop(columns="count_D5S23"), s), "count_D5S23"),
        (lambda n, s: (n.assign(label=[1, 1, 3, 4]), s), "more than once"),
        (lambda n, s: (n.assign(label=[0, 2, 3, 4]), s), "must be > 0"),
        (lambda n, s: (n.assign(call=["normal", "bogus", "atypical", "normal"]), s), "not calls of panel"),
        (lambda n, s: (n.assign(scorable=["yes", "maybe", "no", "no"]), s), "true/false"),
        (lambda n, s: (n.assign(count_EGR1=["2", "x", "2", "2"]), s), "whole numbers"),
        (lambda n, s: (n, s.drop(columns="y")), "spots table lacks"),
        (lambda n, s: (n, s.assign(signal="FITC")), "not signals of panel"),
        (lambda n, s: (n, s.assign(spot_id=0)), "duplicate"),
    ],
)
def test_start_review_rejects_bad_tables(mutate, message):
    n, s = mutate(*_tables())
    with pytest.raises(InputError, match=message) as exc:
        rv.start_review(n, s, "del5q", source="run/f01")
    assert str(exc.value).startswith("run/f01: ")


def test_read_field_tables_errors(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        rv.read_field_tables(tmp_path / "nope")
    with pytest.raises(InputError, match="nuclei.csv: missing"):
        rv.read_field_tables(tmp_path)
    (tmp_path / "nuclei.csv").write_text("")
    (tmp_path / "spots.csv").write_text("label,signal,y,x\n")
    with pytest.raises(InputError, match="cannot read table"):
        rv.read_field_tables(tmp_path)


# --- edits ----------------------------------------------------------------------------------
def test_confirm_marks_reviewed_only():
    s = rv.confirm(_state(), 1, "ann", time=T0)
    r = _row(s, 1)
    assert r["reviewed"] and r["reviewed_by"] == "ann" and r["call"] == "normal" and not r["corrected"]
    e = s.edits[-1]
    assert (e.action, e.label, e.seq, e.field, e.time) == ("confirm", 1, 1, "f01", T0)
    assert e.before == e.after


def test_delete_signal_recounts_and_recalls():
    s = rv.delete_signal(_state(), spot_id=0, reviewer="ann")
    r = _row(s, 1)
    assert (r["count_EGR1"], r["count_D5S23"], r["pattern"], r["call"]) == (1, 2, "1O2G", "del5q")
    assert r["corrected"] and r["reviewed"] and r["call_auto"] == "normal"
    e = s.edits[-1]
    assert e.before["call"] == "normal" and e.after["call"] == "del5q"
    assert e.before["counts"] == {"EGR1": 2, "D5S23": 2} and e.after["counts"] == {"EGR1": 1, "D5S23": 2}
    assert 0 not in set(s.spots["spot_id"])


def test_delete_removes_the_whole_merge_group():
    # nucleus 2's one EGR1 signal is a split pair (spots 4 + 5): deleting it leaves 0 EGR1 -> unscorable
    s = rv.delete_signal(_state(), spot_id=4, reviewer="ann")
    assert not {4, 5} & set(s.spots["spot_id"])
    r = _row(s, 2)
    assert (r["count_EGR1"], r["scorable"], r["exclusion_reason"]) == (0, False, "no_signal_EGR1")


def test_add_signal_makes_no_signal_nucleus_scorable():
    s = rv.add_signal(_state(), 3, "D5S23", 70.0, 69.0, "ann")
    r = _row(s, 3)
    assert (r["count_D5S23"], r["pattern"], r["call"], r["scorable"], r["exclusion_reason"]) == (
        1, "2O1G", "loss5p", True, "")
    new = s.spots[s.spots["origin"] == "reviewer"]
    assert len(new) == 1 and int(new["spot_id"].iloc[0]) == 14 and new["counts_as"].iloc[0] == "D5S23"


def test_qc_and_reviewer_exclusions_survive_recount():
    s = rv.add_signal(_state(), 4, "EGR1", 100.0, 100.0, "ann")  # overlapping nucleus, 3O2G
    r = _row(s, 4)
    assert (r["count_EGR1"], r["call"], r["scorable"], r["exclusion_reason"]) == (3, "gain5q", False, "overlapping_nuclei")
    s = rv.mark_unscorable(s, 1, "out of focus", "ann")
    s = rv.delete_signal(s, 0, "ann")
    r = _row(s, 1)
    assert not r["scorable"] and r["exclusion_reason"] == "reviewer: out of focus" and r["call"] == "del5q"


def test_recount_keeps_dim_and_qc_reasons_and_follows_signal_rules():
    n, sp = _tables()
    n.loc[n.label == 3, "exclusion_reason"] = "touches_border;no_signal_D5S23;dim_signals"
    s = rv.start_review(n, sp, "del5q")
    s = rv.add_signal(s, 3, "D5S23", 70.0, 69.0, "ann")
    assert _row(s, 3)["exclusion_reason"] == "touches_border;dim_signals" and not _row(s, 3)["scorable"]
    for k in range(5):  # 7 EGR1 signals > max_signals_per_channel (6): too_many_signals
        s = rv.add_signal(s, 1, "EGR1", 5.0 + k, 5.0, "ann")
    assert (_row(s, 1)["count_EGR1"], _row(s, 1)["exclusion_reason"]) == (7, "too_many_signals")
    s = rv.delete_signal(s, int(s.spots["spot_id"].max()), "ann")
    assert (_row(s, 1)["count_EGR1"], _row(s, 1)["scorable"], _row(s, 1)["exclusion_reason"]) == (6, True, "")


def test_move_signal_keeps_counts():
    s = rv.move_signal(_state(), 2, 10.0, 10.0, "ann")
    sp = s.spots.set_index("spot_id").loc[2]
    assert (sp["y"], sp["x"]) == (10.0, 10.0)
    assert _row(s, 1)["call"] == "normal" and _row(s, 1)["reviewed"]
    assert (s.edits[-1].before["y"], s.edits[-1].after["y"]) == (9.0, 10.0)


def test_set_call_unscorable_restore():
    s = rv.set_call(_state(), 3, "normal", "bob")
    r = _row(s, 3)
    assert (r["call"], r["scorable"], r["exclusion_reason"], r["corrected"]) == ("normal", True, "", True)
    s = rv.mark_unscorable(s, 2, "  debris; \n near nucleus ", "bob")
    assert _row(s, 2)["exclusion_reason"] == "reviewer: debris, near nucleus"
    s = rv.restore_scorable(s, 2, "bob")
    assert (_row(s, 2)["scorable"], _row(s, 2)["call"]) == (True, "del5q")
    assert [e.action for e in s.edits] == ["set_call", "unscorable", "restore"]
    assert [e.seq for e in s.edits] == [1, 2, 3]


def test_restore_keeps_a_call_the_reviewer_set_and_replays_old_journals():
    """Restore undoes an exclusion, not the reviewer's call: set_call -> unscorable -> restore gives the set
    call back (a recount in between gives the counts' call); a journal replays to the call it recorded."""
    s = rv.set_call(_state(), 2, "normal", "ann")
    s = rv.mark_unscorable(s, 2, "out of focus", "ann")
    s = rv.restore_scorable(s, 2, "ann")
    assert (_row(s, 2)["scorable"], _row(s, 2)["call"]) == (True, "normal")
    t = rv.set_call(_state(), 2, "normal", "ann")
    t = rv.add_signal(t, 2, "EGR1", 14.0, 14.0, "ann")  # a recount after the set call: the counts decide again
    t = rv.mark_unscorable(t, 2, "out of focus", "ann")
    t = rv.restore_scorable(t, 2, "ann")
    assert _row(t, 2)["call"] == _state().panel.call_for(t.edits[-1].before["counts"])
    replayed = _state()
    for e in s.edits:
        replayed = rv.apply_edit(replayed, e)
    assert _row(replayed, 2)["call"] == "normal"
    old = s.edits[-1]  # a journal written before: its restore recorded the counts' call
    old = dataclasses.replace(old, after={**old.after, "call": "del5q"})
    replayed = _state()
    for e in [*s.edits[:-1], old]:
        replayed = rv.apply_edit(replayed, e)
    assert _row(replayed, 2)["call"] == "del5q"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: rv.set_call(s, 1, "bogus", "ann"), "not a call of panel"),
        (lambda s: rv.mark_unscorable(s, 1, "   ", "ann"), "give a reason"),
        (lambda s: rv.confirm(s, 99, "ann"), "no nucleus with label 99"),
        (lambda s: rv.add_signal(s, 1, "FITC", 1, 1, "ann"), "not a signal of panel"),
        (lambda s: rv.add_signal(s, 1, "EGR1", 1, 1, "ann", spot_id=3), "already exists"),
        (lambda s: rv.delete_signal(s, 999, "ann"), "no signal with spot_id 999"),
        (lambda s: rv.move_signal(s, 999, 1, 1, "ann"), "no signal with spot_id 999"),
        (lambda s: rv.confirm(s, 1, "ann smith"), "must be 1-64 letters"),
        (lambda s: rv.confirm(s, 1, ""), "must be 1-64 letters"),
    ],
)
def test_edit_errors(edit, message):
    with pytest.raises(InputError, match=message):
        edit(_state())


def test_signal_outside_nuclei_cannot_be_edited():
    n, s = _tables()
    s.loc[len(s)] = [14, 0, "EGR1", 200.0, 200.0, 14, "", 100.0, 8.0, -1]
    st_ = rv.start_review(n, s, "del5q")
    with pytest.raises(InputError, match="outside every nucleus"):
        rv.delete_signal(st_, 14, "ann")
    with pytest.raises(InputError, match="outside every nucleus"):
        rv.move_signal(st_, 14, 1, 1, "ann")


def test_deleting_a_fused_signal_frees_its_partner():
    n, s = _tables()
    s.loc[s.spot_id == 0, ["counts_as", "fusion_partner"]] = ["fusion", 2]
    s.loc[s.spot_id == 2, ["counts_as", "fusion_partner"]] = ["", 0]
    st_ = rv.start_review(n, s, "del5q")
    out = rv.delete_signal(st_, 0, "ann")
    sp = out.spots.set_index("spot_id").loc[2]
    assert (sp["counts_as"], sp["fusion_partner"]) == ("D5S23", -1)


# --- journal --------------------------------------------------------------------------------
def _edits_sequence(s):
    s = rv.confirm(s, 1, "ann")
    s = rv.delete_signal(s, 0, "ann")
    s = rv.add_signal(s, 3, "D5S23", 70.0, 69.0, "ann")
    s = rv.move_signal(s, 6, 39.0, 39.0, "ann")
    s = rv.mark_unscorable(s, 2, "overlap", "ann")
    s = rv.restore_scorable(s, 2, "ann")
    s = rv.set_call(s, 4, "tetraploid", "ann")
    return s


def _same(a, b):
    pd.testing.assert_frame_equal(a.nuclei, b.nuclei)
    pd.testing.assert_frame_equal(a.spots, b.spots)
    assert a.edits == b.edits


def test_journal_roundtrip_and_reopen(tmp_path):
    n, s = _tables()
    n.to_csv(tmp_path / "nuclei.csv", index=False)
    s.to_csv(tmp_path / "spots.csv", index=False)
    live = rv.open_review(tmp_path, "ann")
    path = rv.journal_path(tmp_path, "ann")
    assert path.name == "review.ann.jsonl" and not path.exists()
    for k in range(7):  # the plugin appends after every edit
        live = _edits_sequence(live) if k == 0 else live
    for e in live.edits:
        rv.append_journal(path, e)
    lines = path.read_text().splitlines()
    assert len(lines) == 7 and all(json.loads(x)["v"] == rv.JOURNAL_VERSION for x in lines)
    first = json.loads(lines[1])
    assert (first["action"], first["label"], first["reviewer"], first["before"]["call"], first["after"]["call"]) == (
        "delete_signal", 1, "ann", "normal", "del5q")
    reopened = rv.open_review(tmp_path, "ann")
    _same(reopened, live)
    assert rv.list_journals(tmp_path) == {"ann": path}
    # another reader starts clean
    assert not rv.open_review(tmp_path, "bob").nuclei["reviewed"].any()
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_append_is_append_only(tmp_path):
    s = _edits_sequence(_state())
    p = tmp_path / "review.ann.jsonl"
    rv.append_journal(p, s.edits[0])
    first = p.read_bytes()
    rv.append_journal(p, s.edits[1])
    assert p.read_bytes().startswith(first)


def test_journal_refuses_edits_of_another_session(tmp_path):
    p = tmp_path / "review.ann.jsonl"
    one = rv.confirm(_state(), 1, "ann")  # session 1
    two = rv.confirm(_state(), 2, "ann")  # session 2 started before session 1 wrote
    rv.append_journal(p, one.edits[-1])
    with pytest.raises(InputError, match="holds 1 edits but this is edit 1: another session"):
        rv.append_journal(p, two.edits[-1])
    assert len(rv.read_journal(p)) == 1


def test_journal_refuses_truncated_file(tmp_path):
    s = _edits_sequence(_state())
    p = tmp_path / "review.ann.jsonl"
    p.write_text(s.edits[0].to_json())  # no newline: a half-written line
    with pytest.raises(InputError, match="complete line"):
        rv.append_journal(p, s.edits[1])


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "line 2 is not valid JSON"),
        ("[1, 2]", "line 2 is not a JSON object"),
        ('{"v": 99}', "line 2: journal format version 99"),
        ('{"v": 1, "action": "confirm"}', "line 2 lacks or has a bad field"),
        ('{"v": 1, "action": "confirm", "label": Infinity, "reviewer": "a", "time": "t", "before": {}, "after": {}}',
         "line 2 lacks or has a bad field"),
        ('{"v": 1, "action": "confirm", "label": 1, "reviewer": "a", "time": "t", "before": [1], "after": {}}',
         "line 2 lacks or has a bad field"),
        ('{"v": 1, "action": "explode", "label": 1, "reviewer": "a", "time": "t", "before": {}, "after": {}}',
         "line 2: unknown action 'explode'"),
    ],
)
def test_read_journal_errors(tmp_path, line, message):
    s = rv.confirm(_state(), 1, "ann")
    p = tmp_path / "review.ann.jsonl"
    p.write_text(s.edits[0].to_json() + "\n" + line + "\n")
    with pytest.raises(InputError, match=message) as exc:
        rv.read_journal(p)
    assert str(p) in str(exc.value)


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["v", "action", "label", "reviewer", "time", "before", "after", "seq", "field", "x"]), inner, max_size=9),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(_JSONISH.map(json.dumps), st.text(max_size=30)), max_size=4))
@example(['{"v": 1, "action": "set_call", "label": 1e400, "reviewer": "a", "time": "t", "before": {}, "after": {}}'])
def test_property_read_journal_never_crashes(tmp_path, lines):
    # any content either parses into edits or is refused with a one-line InputError naming the file
    p = tmp_path / "review.x.jsonl"
    p.write_text("\n".join(x.replace("\n", " ").replace("\r", " ") for x in lines) + "\n", encoding="utf-8")
    try:
        edits = rv.read_journal(p)
    except InputError as exc:
        assert str(exc).startswith(str(p)) and "\n" not in str(exc)
    else:
        assert all(e.action in rv.ACTIONS for e in edits)


def test_read_journal_missing(tmp_path):
    with pytest.raises(InputError, match="not found"):
        rv.read_journal(tmp_path / "review.x.jsonl")


def test_replay_refuses_journal_of_other_tables():
    s = rv.delete_signal(_state(), 0, "ann")
    n, sp = _tables()
    n.loc[0, "call"] = "del5q"  # re-analysed: nucleus 1 is now del5q
    n.loc[0, "count_EGR1"] = 1
    with pytest.raises(InputError, match="does not fit these results"):
        rv.replay(rv.start_review(n, sp, "del5q"), s.edits, source="review.ann.jsonl")
    bad = rv.ReviewEdit("confirm", 42, "ann", T0, {}, {}, seq=1)
    with pytest.raises(InputError, match="nucleus 42 is not in the result tables"):
        rv.replay(_state(), [bad])
    bad = rv.ReviewEdit("set_call", 1, "ann", T0, {}, {}, seq=1)
    with pytest.raises(InputError, match="missing field"):
        rv.replay(_state(), [bad])
    bad = rv.ReviewEdit("add_signal", 1, "ann", T0, {}, {"signal": "EGR1", "y": "up", "x": 1, "spot_id": 50}, seq=2)
    with pytest.raises(InputError, match="edit 2: bad value in 'add_signal'"):
        rv.replay(_state(), [bad])
    bad = rv.ReviewEdit("delete_signal", 1, "ann", T0, {"spot_id": 77}, {}, seq=3)
    with pytest.raises(InputError, match="edit 3: no signal with spot_id 77"):
        rv.replay(_state(), [bad], source="j")


_ACTION = st.tuples(st.sampled_from(["confirm", "set_call", "unscorable", "restore", "add", "delete", "move"]),
                    st.integers(1, 4), st.integers(0, 30), st.sampled_from(["normal", "del5q", "monosomy5"]),
                    st.sampled_from(["EGR1", "D5S23"]), st.floats(0, 120), st.floats(0, 120))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ACTION, max_size=12))
def test_property_journal_replay_reproduces_live_state(actions):
    s0 = _state()
    s = s0
    for act, label, k, call, sig, y, x in actions:
        if act == "confirm":
            s = rv.confirm(s, label, "ann")
        elif act == "set_call":
            s = rv.set_call(s, label, call, "ann")
        elif act == "unscorable":
            s = rv.mark_unscorable(s, label, "debris", "ann")
        elif act == "restore":
            s = rv.restore_scorable(s, label, "ann")
        elif act == "add":
            s = rv.add_signal(s, label, sig, y, x, "ann")
        elif len(s.spots):
            sid = int(s.spots["spot_id"].iloc[k % len(s.spots)])
            s = rv.delete_signal(s, sid, "ann") if act == "delete" else rv.move_signal(s, sid, y, x, "ann")
        # invariants: counts always follow the counted signals; calls of scorable nuclei follow counts
        # unless set by hand
    lines = [json.loads(e.to_json()) for e in s.edits]
    edits = [rv.ReviewEdit(**{k: v for k, v in d.items() if k != "v"}) for d in lines]
    _same(rv.replay(s0, edits), s)
    for lab in s.labels:
        sub = s.spots_of(lab)
        r = _row(s, lab)
        assert r["count_EGR1"] == (sub["counts_as"] == "EGR1").sum()
        assert r["count_D5S23"] == (sub["counts_as"] == "D5S23").sum()
    assert s.nuclei["reviewed"].sum() == len({e.label for e in s.edits})


# --- tally ----------------------------------------------------------------------------------
def _cp(x, n):  # Clopper–Pearson 95 %, clinical.md §6.1 R4
    lo = 0.0 if x == 0 else beta.ppf(0.025, x, n - x + 1)
    hi = 1.0 if x == n else beta.ppf(0.975, x + 1, n - x)
    return 100 * lo, 100 * hi


def test_tally_follows_review_actions():
    s = _state()
    t = rv.tally(s)
    # scorable: 1 normal, 2 del5q -> clone 1/2
    assert (t.n_nuclei, t.n_reviewed, t.n_scorable, t.n_unscorable, t.clone_count) == (4, 0, 2, 2, 1)
    assert t.per_call["normal"] == 1 and t.per_call["del5q"] == 1
    assert t.clone_pct == pytest.approx(50.0)
    assert (t.ci_low_pct, t.ci_high_pct) == pytest.approx(_cp(1, 2))
    s = rv.confirm(s, 1, "ann")
    t = rv.tally(s)
    assert (t.n_reviewed, t.n_scorable, t.clone_count) == (1, 2, 1)
    s = rv.delete_signal(s, 0, "ann")  # nucleus 1 -> del5q
    t = rv.tally(s)
    assert (t.n_reviewed, t.n_corrected, t.n_scorable, t.clone_count, t.per_call["normal"]) == (1, 1, 2, 2, 0)
    assert (t.ci_low_pct, t.ci_high_pct) == pytest.approx(_cp(2, 2))
    s = rv.add_signal(s, 3, "D5S23", 70.0, 69.0, "ann")  # nucleus 3 -> loss5p, scorable
    t = rv.tally(s)
    assert (t.n_reviewed, t.n_scorable, t.clone_count, t.per_call["loss5p"]) == (2, 3, 2, 1)
    s = rv.mark_unscorable(s, 2, "overlap", "ann")
    t = rv.tally(s)
    assert (t.n_reviewed, t.n_scorable, t.n_unscorable, t.clone_count) == (3, 2, 2, 1)
    s = rv.set_call(s, 4, "monosomy5", "ann")  # hand call; nucleus 4 becomes scorable
    t = rv.tally(s)
    assert (t.n_reviewed, t.n_scorable, t.clone_count) == (4, 3, 2)
    assert t.clone_pct == pytest.approx(200 / 3)
    assert (t.ci_low_pct, t.ci_high_pct) == pytest.approx(_cp(2, 3))
    assert "reviewed 4/4" in t.summary() and "N=3" in t.summary()


# --- navigation and blind mode ----------------------------------------------------------------
def test_review_order_is_reproducible_shuffle():
    labels = [5, 3, 9, 1, 7, 2, 8]
    assert list(rv.review_order(labels)) == sorted(labels)
    a, b = rv.review_order(labels, seed=7), rv.review_order(labels, seed=7)
    assert list(a) == list(b) and sorted(a) == sorted(labels)
    orders = {tuple(rv.review_order(labels, seed=k)) for k in range(10)}
    assert len(orders) > 5


def test_next_unreviewed_wraps_and_ends():
    s = _state()
    order = [3, 1, 4, 2]
    assert rv.next_unreviewed(s, order) == 3
    s = rv.confirm(s, 4, "ann")
    assert rv.next_unreviewed(s, order, current=1) == 2
    for lab in (1, 2, 3):
        s = rv.confirm(s, lab, "ann")
    assert rv.next_unreviewed(s, order, current=1) is None
    assert rv.next_unreviewed(s, []) is None


def test_blind_view_hides_calls():
    s = rv.delete_signal(_state(), 0, "ann")
    b = rv.blind_view(s.nuclei)
    assert not {"call", "pattern", "call_auto", "corrected", "reviewed_by"} & set(b.columns)
    assert {"label", "count_EGR1", "reviewed"} <= set(b.columns)


# --- two readers ----------------------------------------------------------------------------
def _reader(calls, scorable=None, reviewed=None):
    n = len(calls)
    return pd.DataFrame({
        "label": np.arange(1, n + 1), "call": calls,
        "scorable": [True] * n if scorable is None else scorable,
        "reviewed": [True] * n if reviewed is None else reviewed,
    })


def test_concordance_known_kappa():
    # 2x2 textbook table: both normal 20, A normal/B del5q 5, A del5q/B normal 10, both del5q 15
    a = ["normal"] * 25 + ["del5q"] * 25
    b = ["normal"] * 20 + ["del5q"] * 5 + ["normal"] * 10 + ["del5q"] * 15
    c = rv.concordance(_reader(a), _reader(b), "del5q", "ann", "bob")
    po, pe = 35 / 50, (25 / 50) * (30 / 50) + (25 / 50) * (20 / 50)
    assert (c.n_common, c.n_agree) == (50, 35)
    assert c.agreement_pct == pytest.approx(70.0)
    assert c.kappa == pytest.approx((po - pe) / (1 - pe))  # 0.4
    assert c.kappa == pytest.approx(0.4)
    assert c.confusion.loc["normal", "del5q"] == 5 and c.confusion.loc["del5q", "normal"] == 10
    assert (c.clone_a, c.clone_b) == ((25, 50), (20, 50))
    from scipy.stats import fisher_exact

    assert c.fisher_p == pytest.approx(fisher_exact([[25, 25], [20, 30]])[1])
    assert "35/50" in c.summary() and "0.400" in c.summary()


def test_concordance_unscorable_is_a_category_and_reviewed_only():
    a = _reader(["normal", "del5q", "normal", "normal"], scorable=[True, True, False, True], reviewed=[True, True, True, False])
    b = _reader(["normal", "del5q", "normal", "del5q"])
    c = rv.concordance(a, b, "del5q")
    assert (c.n_common, c.n_agree) == (3, 2)  # label 3: unscorable vs normal; label 4 unreviewed by A
    assert c.confusion.loc["unscorable", "normal"] == 1
    c_all = rv.concordance(a, b, "del5q", reviewed_only=False)
    assert c_all.n_common == 4


def test_concordance_degenerate_cases():
    same = _reader(["normal"] * 5)
    c = rv.concordance(same, same, "del5q")
    assert c.agreement_pct == 100.0 and math.isnan(c.kappa)  # p_e = 1: kappa undefined
    assert "undefined" in c.summary()
    none = rv.concordance(_reader(["normal"], reviewed=[False]), same, "del5q")
    assert none.n_common == 0 and math.isnan(none.agreement_pct) and math.isnan(none.fisher_p)
    perfect = rv.concordance(_reader(["normal", "del5q"] * 3), _reader(["normal", "del5q"] * 3), "del5q")
    assert perfect.kappa == pytest.approx(1.0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["normal", "del5q", "monosomy5"]),
                          st.sampled_from(["normal", "del5q", "monosomy5"])), min_size=1, max_size=40))
def test_property_kappa_bounds_and_symmetry(pairs):
    a = _reader([p[0] for p in pairs])
    b = _reader([p[1] for p in pairs])
    ab, ba = rv.concordance(a, b, "del5q"), rv.concordance(b, a, "del5q")
    assert ab.n_agree == sum(x == y for x, y in pairs)
    assert int(ab.confusion.to_numpy().sum()) == len(pairs)
    if not math.isnan(ab.kappa):
        assert -1.0 - 1e-9 <= ab.kappa <= 1.0 + 1e-9
        assert ab.kappa == pytest.approx(ba.kappa)
        assert (ab.kappa == pytest.approx(1.0)) == (ab.n_agree == ab.n_common)


def test_concordance_of_review_states():
    s0 = _state()
    a = rv.confirm(rv.confirm(s0, 1, "ann"), 2, "ann")
    b = rv.confirm(rv.delete_signal(s0, 0, "bob"), 2, "bob")
    c = rv.concordance(a, b, reader_a="ann", reader_b="bob")
    assert (c.n_common, c.n_agree) == (2, 1)
    assert c.confusion.index.name == "ann" and c.confusion.columns.name == "bob"


# --- writing ----------------------------------------------------------------------------------
def test_write_reviewed(tmp_path):
    s = rv.delete_signal(_state(), 0, "ann")
    pn, ps = rv.write_reviewed(s, tmp_path, "ann")
    back = pd.read_csv(pn, keep_default_na=False)
    assert back.loc[back.label == 1, "call"].item() == "del5q"
    assert back.loc[back.label == 1, "call_auto"].item() == "normal"
    assert len(pd.read_csv(ps)) == 13
    with pytest.raises(InputError, match="exists; not overwritten"):
        rv.write_reviewed(s, tmp_path, "ann", overwrite=False)


# --- a whole run: reviewed fields feed back into samples.csv ------------------------------------
def _run_folder(tmp_path):
    run = tmp_path / "run"
    n, s = _tables()
    for key in ("P01/week00/f01", "P01/week16/f01"):
        d = run / "fields" / key
        d.mkdir(parents=True)
        n.to_csv(d / "nuclei.csv", index=False)
        s.to_csv(d / "spots.csv", index=False)
    pooled = []
    for key, tp, wk in (("P01/week00/f01", "week00", 0), ("P01/week16/f01", "week16", 16)):
        p = n.copy()
        p.insert(0, "field", key)
        p.insert(0, "week", wk)
        p.insert(0, "timepoint", tp)
        p.insert(0, "patient", "P01")
        p.insert(0, "panel", "del5q")
        pooled.append(p)
    pd.concat(pooled).to_csv(run / "nuclei.csv", index=False)
    return run


def test_write_reviewed_samples_rescores_with_corrections(tmp_path):
    from fishcount.scoring import score_samples

    run = _run_folder(tmp_path)
    assert list(rv.study_fields(run)) == ["P01/week00/f01", "P01/week16/f01"]
    folder = rv.study_fields(run)["P01/week16/f01"]
    s = rv.open_review(folder, "ann")
    s = rv.delete_signal(s, 0, "ann")  # nucleus 1: normal -> del5q
    s = rv.set_call(s, 4, "del5q", "ann")  # nucleus 4 (QC-excluded) -> scorable del5q
    for e in s.edits:
        rv.append_journal(rv.journal_path(folder, "ann"), e)
    path, done = rv.write_reviewed_samples(run, "ann")
    assert path.name == "samples.reviewed.ann.csv" and done == ["P01/week16/f01"]
    got = pd.read_csv(path).set_index("timepoint")
    before = score_samples(pd.read_csv(run / "nuclei.csv", keep_default_na=False), "del5q").set_index("timepoint")
    assert (got.loc["week00", "nuclei_abnormal"], got.loc["week00", "nuclei_scored"]) == (
        before.loc["week00", "nuclei_abnormal"], before.loc["week00", "nuclei_scored"]) == (1, 2)
    assert (got.loc["week16", "nuclei_abnormal"], got.loc["week16", "nuclei_scored"]) == (3, 3)
    assert got.loc["week16", "clone_pct"] == pytest.approx(100.0)
    resp = pd.read_csv(rv.write_reviewed_response(run, "ann"))
    assert resp["patient"].tolist() == ["P01"]
    with pytest.raises(InputError, match="samples.reviewed.bob.csv: missing"):
        rv.write_reviewed_response(run, "bob")


def test_reviewed_samples_rescore_with_the_runs_own_cutoffs(tmp_path):
    """A run scored with a laboratory cut-offs file: the reviewed samples are rescored with it too (not the
    provisional default), unless cut-offs are given; a recorded file that is gone or changed is an error."""
    import hashlib
    import json

    from fishcount.cutoffs import CutoffRule, CutoffSet, write_cutoffs

    run = _run_folder(tmp_path)
    folder = rv.study_fields(run)["P01/week00/f01"]
    rv.append_journal(rv.journal_path(folder, "ann"), rv.confirm(rv.open_review(folder, "ann"), 1, "ann").edits[-1])
    lab = write_cutoffs(CutoffSet(clone=CutoffRule("betainv", 0.95, 200, 20, 6.0), validated=True, panel="del5q"),
                        tmp_path / "lab.toml")
    rec = {"path": str(lab.resolve()), "panel": "del5q", "validated": True,
           "sha256": hashlib.sha256(lab.read_bytes()).hexdigest()}
    (run / "run.json").write_text(json.dumps({"cutoffs": [rec]}))
    got = pd.read_csv(rv.write_reviewed_samples(run, "ann")[0])
    assert got["cutoff_validated"].all() and got["cutoff_method"].str.contains("kmax=6@200").all()
    from fishcount.cutoffs import provisional_cutoffs

    prov = pd.read_csv(rv.write_reviewed_samples(run, "ann", cutoffs=provisional_cutoffs())[0])
    assert not prov["cutoff_validated"].any()
    lab.write_text(lab.read_text().replace("validated = true", "validated = false"))
    with pytest.raises(InputError, match=r"lab.toml: changed since the run scored with it; give the cut-offs"):
        rv.write_reviewed_samples(run, "ann")
    lab.unlink()
    with pytest.raises(InputError, match=r"run.json: the run's cut-offs file .*lab.toml is gone; give the cut-offs"):
        rv.write_reviewed_samples(run, "ann")


def test_write_reviewed_samples_errors(tmp_path):
    with pytest.raises(InputError, match="nuclei.csv: missing"):
        rv.write_reviewed_samples(tmp_path, "ann")
    run = _run_folder(tmp_path)
    with pytest.raises(InputError, match="no field has a review journal of reviewer 'ann'"):
        rv.write_reviewed_samples(run, "ann")
    with pytest.raises(InputError, match="lacks column 'field'"):
        rv.apply_reviews(pd.DataFrame({"label": [1]}), run, "ann")


# --- command line ---------------------------------------------------------------------------------
def _field_folder(tmp_path):
    n, s = _tables()
    d = tmp_path / "f01"
    d.mkdir()
    n.to_csv(d / "nuclei.csv", index=False)
    s.to_csv(d / "spots.csv", index=False)
    return d


def test_cli_concordance_and_review_samples(tmp_path):
    from click.testing import CliRunner

    from fishcount.cli import main

    d = _field_folder(tmp_path)
    a = rv.confirm(rv.confirm(rv.open_review(d, "ann"), 1, "ann"), 2, "ann")
    b = rv.confirm(rv.delete_signal(rv.open_review(d, "bob"), 0, "bob"), 2, "bob")
    for who, s in (("ann", a), ("bob", b)):
        for e in s.edits:
            rv.append_journal(rv.journal_path(d, who), e)
    res = CliRunner().invoke(main, ["concordance", str(d), "ann", "bob"])
    assert res.exit_code == 0, res.output
    assert "ann vs bob: 1/2 nuclei agree (50.0%)" in res.output
    run2 = tmp_path / "run2"
    (run2 / "fields").mkdir(parents=True)
    shutil.copytree(d, run2 / "fields" / "P01" / "w0" / "f01")
    pd.read_csv(d / "nuclei.csv").assign(field="P01/w0/f01", patient="P01", timepoint="w0", week=0).to_csv(
        run2 / "nuclei.csv", index=False)
    res = CliRunner().invoke(main, ["concordance", str(run2), "ann", "bob"])
    assert res.exit_code == 0, res.output
    assert "agreement_pct" in res.output and "50.0" in res.output
    res = CliRunner().invoke(main, ["concordance", str(d), "ann", "carl"])
    assert res.exit_code == 2 and "review.carl.jsonl: no review journal of reader 'carl'" in res.output
    assert "Traceback" not in res.output
    run = _run_folder(tmp_path)
    res = CliRunner().invoke(main, ["review-samples", str(run), "--reviewer", "ann"])
    assert res.exit_code == 2 and "no field has a review journal of reviewer 'ann'" in res.output
    folder = rv.study_fields(run)["P01/week00/f01"]
    rv.append_journal(rv.journal_path(folder, "ann"), rv.confirm(rv.open_review(folder, "ann"), 1, "ann").edits[-1])
    res = CliRunner().invoke(main, ["review-samples", str(run), "--reviewer", "ann"])
    assert res.exit_code == 0 and "samples.reviewed.ann.csv (1 reviewed field(s): P01/week00/f01)" in res.output
    assert "response.reviewed.ann.csv" in res.output and (run / "response.reviewed.ann.csv").is_file()


def test_sample_concordance_pools_fields_of_a_sample(tmp_path):
    run = _run_folder(tmp_path)
    fields = rv.study_fields(run)
    for key, folder in fields.items():
        a = rv.confirm(rv.confirm(rv.open_review(folder, "ann"), 1, "ann"), 2, "ann")
        b = rv.confirm(rv.confirm(rv.open_review(folder, "bob"), 1, "bob"), 2, "bob")
        if key.endswith("week16/f01"):
            b = rv.set_call(b, 1, "monosomy5", "bob")
        for who, st_ in (("ann", a), ("bob", b)):
            for e in st_.edits:
                rv.append_journal(rv.journal_path(folder, who), e)
    df = rv.sample_concordance(run, "ann", "bob").set_index("timepoint")
    assert list(df.index) == ["week00", "week16"]
    assert (df.loc["week00", "n_common"], df.loc["week00", "n_agree"], df.loc["week00", "kappa"]) == (2, 2, 1.0)
    assert (df.loc["week16", "n_common"], df.loc["week16", "n_agree"]) == (2, 1)
    assert (df.loc["week16", "clone_a"], df.loc["week16", "clone_b"]) == (1, 2)
    assert not df["third_read"].any()  # 1/2 vs 2/2 is no evidence of disagreement
    with pytest.raises(InputError, match="no field has review journals of both 'ann' and 'carl'"):
        rv.sample_concordance(run, "ann", "carl")
    pooled = pd.read_csv(run / "nuclei.csv", keep_default_na=False)
    pooled["timepoint"], pooled["week"] = "week00", 0  # both fields of one sample: pooled
    pooled.to_csv(run / "nuclei.csv", index=False)
    one = rv.sample_concordance(run, "ann", "bob")
    assert len(one) == 1 and one["fields"].item() == "P01/week00/f01;P01/week16/f01"
    assert (one["n_common"].item(), one["n_agree"].item()) == (4, 3)
    with pytest.raises(InputError, match="nuclei.csv: missing"):
        rv.sample_concordance(tmp_path / "nowhere", "ann", "bob")


def test_concordance_takes_the_fields_own_panel_and_all_nuclei_in_a_run_folder(tmp_path):
    """A field analysed with cep8 is reviewed with cep8 without --panel (field.json); `--all-nuclei` counts every
    nucleus in a run folder too, not only those both readers reviewed."""
    import fishcount as fc
    from click.testing import CliRunner

    from fishcount.cli import main

    sim = fc.simulate_field("cep8", shape=(256, 256), seed=4)
    folder = fc.write_field_result(fc.analyze_field(sim.image, "cep8", pixel_size_um=sim.pixel_size_um), tmp_path)
    assert rv.field_panel(folder) is not None and rv.open_review(folder, "ann").panel.id == "cep8"
    for who in ("ann", "bob"):
        st = rv.open_review(folder, who)
        st = rv.confirm(st, int(st.nuclei["label"].iloc[0]), who)
        for e in st.edits:
            rv.append_journal(rv.journal_path(folder, who), e)
    r = CliRunner().invoke(main, ["concordance", str(folder), "ann", "bob"])
    assert r.exit_code == 0 and "1/1 nuclei agree" in r.output, r.output
    run = tmp_path / "run"
    shutil.copytree(folder, run / "fields" / "P01" / "w0" / "f01")
    pd.read_csv(folder / "nuclei.csv").assign(field="P01/w0/f01", patient="P01", timepoint="w0", week=0,
                                               panel="cep8").to_csv(run / "nuclei.csv", index=False)
    one = CliRunner().invoke(main, ["concordance", str(run), "ann", "bob"])
    every = CliRunner().invoke(main, ["concordance", str(run), "ann", "bob", "--all-nuclei"])
    assert one.exit_code == every.exit_code == 0, one.output + every.output
    n_all = len(pd.read_csv(folder / "nuclei.csv"))
    assert " 1 " in one.output.splitlines()[1] and f" {n_all} " in every.output.splitlines()[1], (one.output,
                                                                                                   every.output)
