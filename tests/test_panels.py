"""Probe panels: every shipped panel loads and is consistent; every validation error is clear."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fishcount as fc
from fishcount.errors import PanelError
from fishcount.panels import FUSION, CountRule, list_panels, load_panel, panel_from_dict

SHIPPED = list_panels()


def _raw(pid: str) -> dict:
    from fishcount import panels

    return tomllib.loads((Path(panels.__file__).parent / f"{pid}.toml").read_text())


def test_required_panels_are_shipped():
    for pid in ["del5q", "csf1r", "del7q", "cep8", "del20q", "tp53", "kmt2a", "bcr_abl1", "pml_rara"]:
        assert pid in SHIPPED


@pytest.mark.parametrize("pid", SHIPPED)
def test_every_shipped_panel_loads_and_is_consistent(pid):
    p = load_panel(pid)
    assert p.id == pid
    assert p.sha256 and len(p.sha256) == 64
    assert p.normal_call in p.call_names
    assert p.default_call == "atypical"
    assert set(p.tracked_calls) <= set(p.abnormal_calls)
    # the normal call's own pattern is called normal
    normal = p.call_rule(p.normal_call)
    counts = {k: r.lo for k, r in normal.pattern}
    assert p.call_for(counts) == p.normal_call
    # every call is reachable: its lowest matching pattern is not captured by an earlier rule
    for rule in p.calls:
        counts = {k: r.lo for k, r in rule.pattern}
        assert p.call_for(counts) == rule.name, (pid, rule.name, counts)
    # colours are data, signals have distinct letters
    assert len({s.letter for s in p.signals}) == len(p.signals)
    if p.kind in ("break-apart", "dual-fusion"):
        assert p.fusion_pair and p.fusion_distance_um and FUSION in p.pattern_keys
    else:
        assert p.fusion_pair is None and FUSION not in p.pattern_keys


def test_del5q_patterns_from_clinical_table():
    # clinical.md §3.4
    p = load_panel()  # default
    assert p.id == "del5q" and p.signal_names == ("EGR1", "D5S23")
    table = {
        (2, 2): "normal", (1, 2): "del5q", (1, 1): "monosomy5", (2, 1): "loss5p",
        (3, 3): "gain5", (3, 2): "gain5q", (2, 3): "gain5p", (4, 4): "tetraploid", (0, 2): "atypical",
    }
    for (o, g), call in table.items():
        assert p.call_for({"EGR1": o, "D5S23": g}) == call
    assert p.pattern_string({"EGR1": 1, "D5S23": 2}) == "1O2G"
    assert p.tracked_calls == ("del5q", "monosomy5")


def test_fusion_panel_pattern_strings():
    p = load_panel("bcr_abl1")
    assert p.call_for({"ABL1": 1, "BCR": 1, FUSION: 2}) == "t9_22"
    assert p.call_for({"ABL1": 2, "BCR": 2}) == "normal"
    assert p.pattern_string({"ABL1": 1, "BCR": 1, FUSION: 2}) == "1O1G2F"
    assert p.pattern_string({"ABL1": 2, "BCR": 2, FUSION: 0}) == "2O2G"
    k = load_panel("kmt2a")
    assert k.call_for({FUSION: 1, "KMT2A_3": 1, "KMT2A_5": 1}) == "rearranged"
    assert k.call_for({FUSION: 2}) == "normal"


def test_user_panel_file(tmp_path):
    raw = (Path(fc.panels.__file__).parent / "cep8.toml").read_text().replace('id = "cep8"', 'id = "my_cep8"')
    f = tmp_path / "mine.toml"
    f.write_text(raw)
    p = load_panel(f)
    assert p.id == "my_cep8" and p.path == str(f)
    assert load_panel(p) is p


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d.pop("id"), "missing required field 'id'"),
        (lambda d: d.update(kind="weird"), "kind 'weird' is not one of"),
        (lambda d: d.update(color="x"), "unknown field(s) color"),
        (lambda d: d["signals"][0].update(role="boss"), "role 'boss'"),
        (lambda d: d["signals"][1].update(name="EGR1"), "duplicate signal name"),
        (lambda d: d["signals"][1].update(letter="O"), "signal letters must differ"),
        (lambda d: d["calls"][1]["pattern"].update(FOO=1), "unknown key(s) FOO"),
        (lambda d: d["calls"][1]["pattern"].update(EGR1="about 2"), "expected a count or a condition"),
        (lambda d: d["calls"][1]["pattern"].update(EGR1=-1), "cannot be negative"),
        (lambda d: d["rules"].update(signal_diameter_um=0), "number > 0"),
        (lambda d: d["rules"].update(fusion_distance_um=1.0), "only apply to break-apart"),
        (lambda d: d["rules"].update(max_signals_per_channel=0), "max_signals_per_channel"),
        (lambda d: d["scoring"].update(tracked_calls=["nope"]), "tracked_calls names 'nope'"),
        (lambda d: d.update(schema_version=9), "schema_version 9"),
        (lambda d: d.update(normal_call="nothing"), "normal_call 'nothing'"),
        (lambda d: d.update(iscn_order=["EGR1"]), "iscn_order must list each signal"),
        # typos and wrong types inside sub-tables are errors, not silent defaults (a clone of 0 %)
        (lambda d: d.update(scoring={"tracked_call": ["del5q"]}), "unknown field(s) 'scoring.tracked_call'"),
        (lambda d: d.pop("scoring"), "missing required field 'scoring'"),
        (lambda d: d.update(scoring="del5q"), "field 'scoring' must be a table, got a string 'del5q'"),
        (lambda d: d.update(scoring={"tracked_calls": []}), "scoring.tracked_calls must name the call(s)"),
        (lambda d: d["calls"][1].update(abnormall=True), "unknown field(s) 'calls[1].abnormall'"),
        (lambda d: d["calls"][1].update(abnormal="false"), "'calls[1].abnormal' must be true or false"),
        (lambda d: d["signals"][0].update(colour="red"), "unknown field(s) 'signals[0].colour'"),
        (lambda d: d.update(default_call="del5q"), "default_call 'del5q' must be a name of its own"),
        (lambda d: d.update(default_call=3), "default_call 3 must be a name of its own"),
        (lambda d: d["calls"][1].update(pattern="1O2G"), "field 'calls[1].pattern' must be a table, got a string"),
        (lambda d: d["calls"][1].update(pattern={}), "calls[1].pattern is empty"),
        (lambda d: d["rules"].update(split_distance_um="0.8 um"), "'rules.split_distance_um' must be a finite number"),
        (lambda d: d["rules"].update(split_distance_um=[0.8]), "'rules.split_distance_um' must be a finite number"),
        (lambda d: d["rules"].update(split_distance_um=True), "'rules.split_distance_um' must be a finite number"),
        (lambda d: d["rules"].update(split_distance_um=float("inf")), "must be a finite number"),
        (lambda d: d["signals"][1].update(letter="o"), "signal letters must differ (in any case)"),
        (lambda d: d["signals"][1]["aliases"].append("EGR1"), "alias 'EGR1' names another channel"),
        (lambda d: d["signals"][0]["aliases"].append("DAPI"), "alias 'DAPI' names another channel"),
        (lambda d: d["calls"].insert(2, dict(d["calls"][1], name="shadowed")), "calls[2] (shadowed) can never be "
                                                                              "called"),
        (lambda d: d["calls"].append({"name": "nullisomy", "pattern": {"EGR1": 0, "D5S23": 2}, "abnormal": True}),
         "(nullisomy) can never be called"),
    ],
)
def test_panel_validation_errors_are_clear(mutate, fragment):
    d = _raw("del5q")
    mutate(d)
    with pytest.raises(PanelError) as ei:
        panel_from_dict(d, "bad.toml")
    msg = str(ei.value)
    assert msg.startswith("bad.toml: ") and fragment in msg and "\n" not in msg


def test_fusion_panel_needs_a_valid_pair():
    d = _raw("bcr_abl1")
    d["rules"]["fusion_pair"] = ["ABL1", "XYZ"]
    with pytest.raises(PanelError, match="fusion_pair must name two different signals"):
        panel_from_dict(d, "bad.toml")


def test_load_errors(tmp_path):
    with pytest.raises(PanelError, match="unknown panel; shipped panels"):
        load_panel("nonexistent_panel")
    with pytest.raises(PanelError, match="panel file not found"):
        load_panel(tmp_path / "missing.toml")
    bad = tmp_path / "broken.toml"
    bad.write_text("id = [unclosed")
    with pytest.raises(PanelError, match="not valid TOML") as ei:
        load_panel(bad)
    assert str(bad) in str(ei.value)


@given(st.integers(0, 50), st.integers(0, 50))
def test_count_rule_parse_range(a, b):
    lo, hi = min(a, b), max(a, b)
    r = CountRule.parse(f"{lo}-{hi}", "x", "f")
    for n in range(0, 60):
        assert r.matches(n) == (lo <= n <= hi)


@given(st.sampled_from([">=", ">", "<=", "<", "=="]), st.integers(1, 20), st.integers(0, 40))
def test_count_rule_operators(op, k, n):
    r = CountRule.parse(f"{op}{k}", "x", "f")
    expected = {">=": n >= k, ">": n > k, "<=": n <= k, "<": n < k, "==": n == k}[op]
    assert r.matches(n) == expected


@given(st.dictionaries(st.sampled_from(["EGR1", "D5S23"]), st.integers(0, 10)))
def test_call_for_is_total_and_deterministic(counts):
    p = load_panel("del5q")
    call = p.call_for(counts)
    assert call in p.call_names
    assert p.call_for(dict(reversed(list(counts.items())))) == call


def test_cli_panels(tmp_path):
    from click.testing import CliRunner

    from fishcount.cli import main

    r = CliRunner().invoke(main, ["panels"])
    assert r.exit_code == 0 and "del5q" in r.output and "bcr_abl1" in r.output
    r = CliRunner().invoke(main, ["panels", "tp53"])
    assert r.exit_code == 0 and "del17p" in r.output
    r = CliRunner().invoke(main, ["panels", "nope"])
    assert r.exit_code == 2 and "unknown panel" in r.output and "Traceback" not in r.output


def test_a_folder_named_like_a_panel_does_not_hide_it(tmp_path, monkeypatch):
    """`fishcount simulate --panel cep8 --out cep8` makes a folder cep8: --panel cep8 is still the shipped panel."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cep8").mkdir()
    assert load_panel("cep8").id == "cep8"
