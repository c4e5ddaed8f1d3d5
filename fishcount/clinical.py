"""Clinical response (IWG 2006 MDS, IWG 2023 higher-risk MDS, ELN 2022 AML) from SUPPLIED clinical values.

fishcount does not measure marrow blasts or blood counts: they are typed in by the user (one row per patient and
week) and classified here with the rules of a criteria set shipped as data in ``fishcount/criteria/*.toml``
(``kind = "clinical"``). Nothing here is ever inferred from FISH. Every threshold and its source is in the
criteria file and in ``docs/clinical.md``.

Input table (``CLINICAL.csv``), one row per patient and week:

==========================  ============================================================================
column                      meaning (unit)
==========================  ============================================================================
``patient``                 patient id (text)
``week``                    weeks since treatment start; the latest row with week <= 0 is the baseline
``marrow_blasts_pct``       bone-marrow myeloblasts, % of nucleated marrow cells (blank = no marrow)
``hb_g_dl``                 haemoglobin, g/dL
``anc_10e9_l``              absolute neutrophil count, 10^9/L
``plt_10e9_l``              platelets, 10^9/L
``rbc_units_8wk``           red-cell units transfused in the previous 8 weeks
``pb_blasts_pct``           peripheral-blood blasts, %
``cellularity_pct``         optional: marrow cellularity, %
``auer_rods``               optional: blasts with Auer rods present (true/false)
``extramedullary``          optional: extramedullary disease present (true/false)
``cytogenetic_complete``    optional: complete cytogenetic response by karyotype (true/false)
==========================  ============================================================================

Blank cells are missing values. A timepoint without the values a category needs is "not_assessed" for it.

Example
-------
>>> import pandas as pd, fishcount as fc
>>> df = pd.DataFrame({"patient": ["P1", "P1", "P1"], "week": [0, 8, 16],
...     "marrow_blasts_pct": [12, 3, 2], "hb_g_dl": [8.5, 11.5, 12.0], "anc_10e9_l": [0.8, 1.5, 1.6],
...     "plt_10e9_l": [40, 120, 150], "rbc_units_8wk": [4, 0, 0], "pb_blasts_pct": [2, 0, 0]})
>>> tp = fc.classify_clinical_response(df, "iwg2006_mds")
>>> list(tp["category"])
['baseline', 'CR', 'CR']
>>> fc.summarize_clinical_response(tp, "iwg2006_mds").loc[0, "best_response"]
'CR'
"""
from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ._datafile import check_fields, check_schema_version, is_blank, patient_id
from .errors import CriteriaError, InputError

__all__ = [
    "CLINICAL_COLUMNS",
    "OPTIONAL_NUMERIC_COLUMNS",
    "OPTIONAL_BOOL_COLUMNS",
    "ClinicalCriteria",
    "list_clinical_criteria",
    "load_clinical_criteria",
    "read_clinical_csv",
    "validate_clinical_table",
    "classify_clinical_response",
    "summarize_clinical_response",
    "overall_trial_response",
    "ClinicalResult",
    "attach_clinical",
    "write_clinical",
    "format_clinical",
]

#: Required clinical value columns (besides ``patient`` and ``week``); cells may be blank.
CLINICAL_COLUMNS: tuple[str, ...] = (
    "marrow_blasts_pct", "hb_g_dl", "anc_10e9_l", "plt_10e9_l", "rbc_units_8wk", "pb_blasts_pct",
)
#: Optional numeric columns.
OPTIONAL_NUMERIC_COLUMNS: tuple[str, ...] = ("cellularity_pct",)
#: Optional true/false columns.
OPTIONAL_BOOL_COLUMNS: tuple[str, ...] = ("auer_rods", "extramedullary", "cytogenetic_complete")
_PERCENT_COLUMNS = ("marrow_blasts_pct", "pb_blasts_pct", "cellularity_pct")
_NUMERIC = CLINICAL_COLUMNS + OPTIONAL_NUMERIC_COLUMNS
_ALL_VALUES = _NUMERIC + OPTIONAL_BOOL_COLUMNS
_PREFIXES = ("baseline.", "max.")
_OPS = ("<", "<=", ">", ">=", "==", "!=")
_BLANKS = {"", "na", "nan", "n/a", "none", "null", "-"}
_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}

#: Category labels of rows that are not on-treatment assessments.
BASELINE, PRE_BASELINE, NOT_ASSESSED, NOT_EVALUABLE = "baseline", "pre-baseline", "not_assessed", "not_evaluable"


# -------------------------------------------------------------------------------------------
# conditions: a tiny declarative language, evaluated with three-valued (Kleene) logic
# -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """``var op value`` or ``var op factor * ref + offset``; ``None`` result when a value is missing."""

    var: str
    op: str
    value: float | bool | None = None
    ref: str | None = None
    factor: float = 1.0
    offset: float = 0.0
    if_missing: str = "unknown"  # or "assume_met"


@dataclass(frozen=True)
class Group:
    """``all`` (and) or ``any`` (or) of conditions."""

    kind: str
    items: tuple


@dataclass(frozen=True)
class CountOf:
    """How many of ``items`` are true, compared with ``op value``."""

    items: tuple
    op: str
    value: int


Node = Condition | Group | CountOf


def _tol(a: float, b: float) -> float:
    return 1e-9 * max(1.0, abs(a), abs(b))


def _compare(a, op: str, b) -> bool:
    if isinstance(a, (bool, np.bool_)) or isinstance(b, bool):
        return (bool(a) == bool(b)) if op == "==" else (bool(a) != bool(b))
    a, b = float(a), float(b)
    t = _tol(a, b)  # decimal inputs such as 8.3 + 1.5 must compare equal to 9.8
    return {
        "<": a < b - t, "<=": a <= b + t, ">": a > b + t, ">=": a >= b - t,
        "==": abs(a - b) <= t, "!=": abs(a - b) > t,
    }[op]


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def evaluate(node: Node, ctx: Mapping[str, Any], notes: list[str] | None = None,
             missing: set[str] | None = None) -> bool | None:
    """Evaluate a condition tree on one timepoint.

    Parameters
    ----------
    node : Condition, Group or CountOf
    ctx : mapping
        Variable name (``hb_g_dl``, ``baseline.hb_g_dl``, ``max.plt_10e9_l`` ...) -> value; missing values are
        absent, ``None`` or NaN.
    notes : list of str, optional
        Receives one note per condition assumed met because its value was not supplied.
    missing : set of str, optional
        Receives the names of missing variables that made the result unknown.

    Returns
    -------
    bool or None
        True / False, or None when the result depends on a missing value (Kleene logic).
    """
    if isinstance(node, Condition):
        a = ctx.get(node.var)
        if _missing(a):
            if node.if_missing == "assume_met":
                if notes is not None:
                    notes.append(f"{node.var} not supplied: assumed {node.var} {node.op} {node.value}")
                return True
            if missing is not None:
                missing.add(node.var)
            return None
        if node.ref is not None:
            r = ctx.get(node.ref)
            if _missing(r):
                if missing is not None:
                    missing.add(node.ref)
                return None
            b = node.factor * float(r) + node.offset
        else:
            b = node.value
        return _compare(a, node.op, b)
    if isinstance(node, Group):
        vals = [evaluate(n, ctx, notes, missing) for n in node.items]
        if node.kind == "all":
            return False if any(v is False for v in vals) else (None if any(v is None for v in vals) else True)
        return True if any(v is True for v in vals) else (None if any(v is None for v in vals) else False)
    vals = [evaluate(n, ctx, notes, missing) for n in node.items]
    n_true, n_unknown = sum(v is True for v in vals), sum(v is None for v in vals)
    outcomes = {_compare(k, node.op, node.value) for k in range(n_true, n_true + n_unknown + 1)}
    return outcomes.pop() if len(outcomes) == 1 else None


# -------------------------------------------------------------------------------------------
# criteria sets as data
# -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Category:
    """A response category of a criteria set (tried in file order; ``rank`` 1 = best)."""

    name: str
    label: str
    rank: int
    when: Node | None
    min_duration_weeks: float
    duration_inclusive: bool
    duration_from: str
    source: str
    event: str = ""


@dataclass(frozen=True)
class Improvement:
    """A hematologic improvement (HI-E, HI-P, HI-N), assessed on its own when ``eligible`` holds."""

    name: str
    label: str
    eligible: Node | None
    when: Node
    min_duration_weeks: float
    duration_inclusive: bool
    source: str

    @property
    def column(self) -> str:
        return self.name.lower().replace("-", "_")


@dataclass(frozen=True)
class Event:
    """An event (relapse, progression after HI) checked after a category/improvement in ``after`` was reached."""

    name: str
    after: tuple[str, ...]
    when: Node
    source: str


@dataclass(frozen=True)
class ClinicalCriteria:
    """A clinical response criteria set. Load with :func:`load_clinical_criteria`.

    Attributes
    ----------
    id, name, disease : str
    sources : tuple of str
    assessment_requires : tuple of str
        Columns a timepoint needs to be assessed for the categories (``marrow_blasts_pct``).
    count_window_weeks : float
        Blood values missing on a marrow row are taken from the nearest row within this many weeks (0 = off).
    marrow_response : tuple of str
        Categories that count as a bone-marrow response in the overall trial response.
    categories : tuple of Category
        In evaluation order; the last one may have no condition (the fallback: SD, no response).
    improvements : tuple of Improvement
    events : tuple of Event
    path, sha256 : str
    """

    id: str
    name: str
    disease: str
    sources: tuple[str, ...]
    assessment_requires: tuple[str, ...]
    marrow_response: tuple[str, ...]
    categories: tuple[Category, ...]
    improvements: tuple[Improvement, ...]
    events: tuple[Event, ...]
    path: str = ""
    sha256: str = ""
    count_window_weeks: float = 0.0

    def category(self, name: str) -> Category:
        for c in self.categories:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def fallback(self) -> Category | None:
        last = self.categories[-1]
        return last if last.when is None else None

    @property
    def ranking(self) -> tuple[str, ...]:
        """Category names, best first."""
        return tuple(c.name for c in sorted(self.categories, key=lambda c: c.rank))


def _criteria_dir() -> Path:
    return Path(str(resources.files("fishcount.criteria")))


def list_clinical_criteria() -> list[str]:
    """Ids of the clinical criteria sets shipped with fishcount (files with ``kind = "clinical"``)."""
    out = []
    for p in sorted(_criteria_dir().glob("*.toml")):
        try:
            if tomllib.loads(p.read_text(encoding="utf-8")).get("kind") == "clinical":
                out.append(p.stem)
        except (tomllib.TOMLDecodeError, OSError):
            continue
    return out


def _var_ok(name: str, source: str, where: str, *, bool_ok: bool = True) -> str:
    base = name
    for pfx in _PREFIXES:
        if name.startswith(pfx):
            base = name[len(pfx):]
            break
    allowed = _ALL_VALUES if bool_ok else _NUMERIC
    if not isinstance(name, str) or base not in allowed or (name.startswith("max.") and base not in _NUMERIC):
        raise CriteriaError(
            source, f"{where}: unknown variable {name!r}; use one of {', '.join(allowed)}, "
            f"optionally prefixed with 'baseline.' or 'max.'"
        )
    return name


def _num(d: Mapping, key: str, source: str, where: str, default=None) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise CriteriaError(source, f"{where}.{key} must be a number, got {v!r}")
    return float(v)


def _parse_node(raw: Any, source: str, where: str) -> Node:
    if not isinstance(raw, Mapping):
        raise CriteriaError(source, f"{where}: a condition must be a table, got {type(raw).__name__}")
    keys = set(raw)
    if "all" in keys or "any" in keys:
        kind = "all" if "all" in keys else "any"
        if keys != {kind}:
            raise CriteriaError(source, f"{where}: '{kind}' cannot be combined with {sorted(keys - {kind})}")
        items = raw[kind]
        if not isinstance(items, list) or not items:
            raise CriteriaError(source, f"{where}.{kind} must be a non-empty list of conditions")
        return Group(kind, tuple(_parse_node(x, source, f"{where}.{kind}[{i}]") for i, x in enumerate(items)))
    if "count" in keys:
        extra = keys - {"count", "op", "value"}
        if extra:
            raise CriteriaError(source, f"{where}: unknown key(s) {sorted(extra)} in a count condition")
        items = raw["count"]
        if not isinstance(items, list) or not items:
            raise CriteriaError(source, f"{where}.count must be a non-empty list of conditions")
        op = raw.get("op")
        if op not in _OPS:
            raise CriteriaError(source, f"{where}.op must be one of {' '.join(_OPS)}, got {op!r}")
        value = raw.get("value")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= len(items):
            raise CriteriaError(source, f"{where}.value must be an integer between 0 and {len(items)}, got {value!r}")
        return CountOf(tuple(_parse_node(x, source, f"{where}.count[{i}]") for i, x in enumerate(items)), op, value)
    allowed = {"var", "op", "value", "ref", "factor", "offset", "if_missing"}
    extra = keys - allowed
    if extra:
        raise CriteriaError(source, f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}")
    if "var" not in raw:
        raise CriteriaError(source, f"{where}: a condition needs 'var' (or 'all' / 'any' / 'count')")
    var = _var_ok(raw["var"], source, f"{where}.var")
    op = raw.get("op")
    if op not in _OPS:
        raise CriteriaError(source, f"{where}.op must be one of {' '.join(_OPS)}, got {op!r}")
    if_missing = raw.get("if_missing", "unknown")
    if if_missing not in ("unknown", "assume_met"):
        raise CriteriaError(source, f"{where}.if_missing must be 'unknown' or 'assume_met', got {if_missing!r}")
    is_bool = var.split(".")[-1] in OPTIONAL_BOOL_COLUMNS
    if ("value" in raw) == ("ref" in raw):
        raise CriteriaError(source, f"{where}: give exactly one of 'value' or 'ref'")
    if is_bool:
        if op not in ("==", "!=") or not isinstance(raw.get("value"), bool) or "ref" in raw:
            raise CriteriaError(source, f"{where}: {var} is true/false; compare it with == or != to true or false")
        return Condition(var, op, raw["value"], if_missing=if_missing)
    if "ref" in raw:
        ref = _var_ok(raw["ref"], source, f"{where}.ref", bool_ok=False)
        return Condition(var, op, None, ref, _num(raw, "factor", source, where, 1.0),
                         _num(raw, "offset", source, where, 0.0), if_missing)
    if "factor" in raw or "offset" in raw:
        raise CriteriaError(source, f"{where}: 'factor' and 'offset' only apply with 'ref'")
    return Condition(var, op, _num(raw, "value", source, where), if_missing=if_missing)


def _str(d: Mapping, key: str, source: str, where: str = "", default: str | None = None) -> str:
    v = d.get(key, default)
    if not isinstance(v, str) or not v.strip():
        raise CriteriaError(source, f"missing or empty text field '{where}{key}'")
    return v


def _str_tuple(d: Mapping, key: str, source: str, where: str = "") -> tuple[str, ...]:
    v = d.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise CriteriaError(source, f"field '{where}{key}' must be a list of strings")
    return tuple(v)


def _duration(d: Mapping, source: str, where: str) -> tuple[float, bool]:
    dur = _num(d, "min_duration_weeks", source, where.rstrip("."), 0.0)
    if dur < 0:
        raise CriteriaError(source, f"{where}min_duration_weeks must be >= 0, got {dur}")
    incl = d.get("duration_inclusive", True)
    if not isinstance(incl, bool):
        raise CriteriaError(source, f"{where}duration_inclusive must be true or false")
    return dur, incl


def clinical_criteria_from_dict(data: Mapping, source: str = "<dict>", raw: bytes | None = None) -> ClinicalCriteria:
    """Build and validate a :class:`ClinicalCriteria` from parsed TOML.

    Raises
    ------
    CriteriaError
        Naming the source and the offending field.
    """
    if not isinstance(data, Mapping):
        raise CriteriaError(source, "a criteria file must be a table of fields")
    if data.get("kind") != "clinical":
        raise CriteriaError(source, f"kind must be \"clinical\" for a clinical criteria set, got {data.get('kind')!r}"
                                    + (" (this is a FISH response criteria set: use it with fishcount response --criteria)"
                                       if data.get("type") == "response-criteria" else ""))
    known = {"schema_version", "kind", "id", "name", "disease", "sources", "assessment_requires",
             "marrow_response", "categories", "improvements", "events", "count_window_weeks"}
    check_fields(data, known, source, CriteriaError)
    check_schema_version(data, source, CriteriaError)
    cid = _str(data, "id", source)
    sources = _str_tuple(data, "sources", source)
    if not sources:
        raise CriteriaError(source, "field 'sources' must cite at least one source (clinical.md section)")
    window = _num(data, "count_window_weeks", source, "count_window_weeks", 0.0) if "count_window_weeks" in data else 0.0
    if window < 0:
        raise CriteriaError(source, f"count_window_weeks must be >= 0, got {window:g}")
    requires = _str_tuple(data, "assessment_requires", source)
    for r in requires:
        _var_ok(r, source, "assessment_requires")
    raw_cats = data.get("categories")
    if not isinstance(raw_cats, list) or not raw_cats:
        raise CriteriaError(source, "a criteria set needs a non-empty [[categories]] list")
    cats: list[Category] = []
    for i, c in enumerate(raw_cats):
        where = f"categories[{i}]."
        if not isinstance(c, Mapping):
            raise CriteriaError(source, f"categories[{i}] must be a table")
        extra = set(c) - {"name", "label", "rank", "when", "min_duration_weeks", "duration_inclusive",
                          "duration_from", "source", "event"}
        if extra:
            raise CriteriaError(source, f"{where}: unknown key(s) {sorted(extra)}")
        name = _str(c, "name", source, where)
        rank = c.get("rank")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise CriteriaError(source, f"{where}rank must be an integer >= 1 (1 = best), got {rank!r}")
        when = _parse_node(c["when"], source, f"{where}when") if "when" in c else None
        if when is None and i != len(raw_cats) - 1:
            raise CriteriaError(source, f"{where}: only the last category may have no 'when' (the fallback)")
        dur, incl = _duration(c, source, where)
        dfrom = c.get("duration_from", "onset")
        if dfrom not in ("onset", "treatment_start"):
            raise CriteriaError(source, f"{where}duration_from must be 'onset' or 'treatment_start', got {dfrom!r}")
        event = c.get("event", "")
        if not isinstance(event, str):
            raise CriteriaError(source, f"{where}event must be text (the event recorded when this category is met)")
        cats.append(Category(name, str(c.get("label", name)), rank, when, dur, incl, dfrom,
                             _str(c, "source", source, where), event))
    names = [c.name for c in cats]
    if len(set(names)) != len(names):
        raise CriteriaError(source, f"duplicate category names in {names}")
    ranks = [c.rank for c in cats]
    if len(set(ranks)) != len(ranks):
        raise CriteriaError(source, f"category ranks must differ, got {ranks}")
    reserved = {BASELINE, PRE_BASELINE, NOT_ASSESSED, NOT_EVALUABLE}
    if reserved & set(names):
        raise CriteriaError(source, f"category names {sorted(reserved & set(names))} are reserved")
    marrow = _str_tuple(data, "marrow_response", source)
    bad = [m for m in marrow if m not in names]
    if bad:
        raise CriteriaError(source, f"marrow_response names unknown categories {bad}; categories: {names}")

    imps: list[Improvement] = []
    for i, h in enumerate(data.get("improvements", []) or []):
        where = f"improvements[{i}]."
        if not isinstance(h, Mapping):
            raise CriteriaError(source, f"improvements[{i}] must be a table")
        extra = set(h) - {"name", "label", "eligible", "when", "min_duration_weeks", "duration_inclusive", "source"}
        if extra:
            raise CriteriaError(source, f"{where}: unknown key(s) {sorted(extra)}")
        if "when" not in h:
            raise CriteriaError(source, f"{where}: missing 'when'")
        dur, incl = _duration(h, source, where)
        imps.append(Improvement(
            _str(h, "name", source, where), str(h.get("label", h.get("name"))),
            _parse_node(h["eligible"], source, f"{where}eligible") if "eligible" in h else None,
            _parse_node(h["when"], source, f"{where}when"), dur, incl, _str(h, "source", source, where)))
    inames = [h.name for h in imps]
    if len(set(inames)) != len(inames) or set(inames) & set(names):
        raise CriteriaError(source, f"improvement names must be unique and differ from categories: {inames}")

    events: list[Event] = []
    for i, e in enumerate(data.get("events", []) or []):
        where = f"events[{i}]."
        if not isinstance(e, Mapping):
            raise CriteriaError(source, f"events[{i}] must be a table")
        extra = set(e) - {"name", "after", "when", "source"}
        if extra:
            raise CriteriaError(source, f"{where}: unknown key(s) {sorted(extra)}")
        after = _str_tuple(e, "after", source, where)
        bad = [a for a in after if a not in names and a not in inames]
        if not after or bad:
            raise CriteriaError(source, f"{where}after must name categories or improvements of this set; unknown: {bad}")
        if "when" not in e:
            raise CriteriaError(source, f"{where}: missing 'when'")
        events.append(Event(_str(e, "name", source, where), after, _parse_node(e["when"], source, f"{where}when"),
                            _str(e, "source", source, where)))
    return ClinicalCriteria(
        id=cid, name=_str(data, "name", source), disease=str(data.get("disease", "")), sources=sources,
        assessment_requires=requires, marrow_response=marrow, categories=tuple(cats), improvements=tuple(imps),
        events=tuple(events), path=str(source), sha256=hashlib.sha256(raw).hexdigest() if raw is not None else "",
        count_window_weeks=window,
    )


def load_clinical_criteria(criteria: str | PathLike | ClinicalCriteria = "iwg2006_mds") -> ClinicalCriteria:
    """Load a clinical criteria set: a shipped id (``iwg2006_mds``, ``iwg2023_hr_mds``, ``eln2022_aml``), a
    ``.toml`` file, or an already loaded :class:`ClinicalCriteria` (returned as is).

    Parameters
    ----------
    criteria : str, path-like or ClinicalCriteria, default ``"iwg2006_mds"``
        A shipped id (see :func:`list_clinical_criteria`), the path of a criteria ``.toml`` file (any value that
        ends in ``.toml`` or names an existing file is read as a path), or a :class:`ClinicalCriteria`.

    Returns
    -------
    ClinicalCriteria
        The parsed criteria set; ``path`` is the file read and ``sha256`` the hash of its bytes.

    Raises
    ------
    CriteriaError
        Unknown id, unreadable or invalid file.
    """
    if isinstance(criteria, ClinicalCriteria):
        return criteria
    s = str(criteria)
    path = Path(s)
    if not (s.endswith(".toml") or path.exists()):
        path = _criteria_dir() / f"{s}.toml"
        if not path.is_file():
            raise CriteriaError(s, f"unknown clinical criteria set; shipped: {', '.join(list_clinical_criteria())} "
                                   f"(or give a .toml file)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CriteriaError(path, f"cannot read criteria file ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CriteriaError(path, f"not valid TOML: {exc}") from None
    return clinical_criteria_from_dict(data, str(path), raw)


# -------------------------------------------------------------------------------------------
# the input table
# -------------------------------------------------------------------------------------------
def read_clinical_csv(path: str | PathLike) -> pd.DataFrame:
    """Read and validate a clinical values CSV (see module docstring); every cell is checked.

    Parameters
    ----------
    path : str or path-like
        The CSV file (``CLINICAL.csv``): one row per patient and week, with the columns of the module docstring.

    Returns
    -------
    DataFrame
        As :func:`validate_clinical_table`: ``patient`` (str), ``week`` (float, weeks since treatment start),
        the value columns as float64 in their units (NaN = missing), the optional true/false columns as object
        (True / False / None); rows in file order, index 0..n-1.

    Raises
    ------
    InputError
        Unreadable file, missing columns, non-numeric / negative / out-of-range values, duplicate patient-week
        rows; the message names the file, the line (header = line 1) and the column.
    """
    from ._datafile import read_csv_text

    return validate_clinical_table(read_csv_text(path), source=str(path))


def _blank(v) -> bool:
    """Missing cell: None, NaN, pd.NA, or a blank / NA-like string (``_BLANKS``)."""
    return is_blank(v, _BLANKS)


def validate_clinical_table(df: pd.DataFrame, source: str = "<table>") -> pd.DataFrame:
    """Check and normalise a clinical values table.

    Parameters
    ----------
    df : DataFrame
        One row per patient and week (strings or numbers).
    source : str
        Name used in error messages (the CSV path).

    Returns
    -------
    DataFrame
        ``patient`` (str), ``week`` (float), the value columns as float64 (NaN = missing), the optional
        true/false columns as object (True / False / None); rows in input order, index 0..n-1.

    Raises
    ------
    InputError
        Naming the source, the line (header = line 1, first data row = line 2) and the column.
    """
    if not isinstance(df, pd.DataFrame):
        raise InputError(source, f"expected a table (DataFrame), got {type(df).__name__}")
    cols = [str(c).strip() for c in df.columns]
    df = df.copy()
    df.columns = cols
    missing = [c for c in ("patient", "week") + CLINICAL_COLUMNS if c not in cols]
    if missing:
        raise InputError(source, f"missing column(s) {', '.join(missing)}; a clinical table needs patient, week, "
                                 f"{', '.join(CLINICAL_COLUMNS)}")
    dup_cols = sorted({c for c in cols if cols.count(c) > 1})
    if dup_cols:
        raise InputError(source, f"duplicate column(s) {', '.join(dup_cols)}")
    if len(df) == 0:
        raise InputError(source, "no data rows")
    from ._datafile import csv_lines

    ln = csv_lines(df)  # the CSV line of each row (blank lines and multi-line cells counted)
    out = pd.DataFrame(index=range(len(df)))
    pats = []
    for i, v in enumerate(df["patient"].tolist()):
        if _blank(v):
            raise InputError(source, f"line {ln[i]}, column patient: patient id is empty")
        pats.append(patient_id(v))  # NFC: one patient however typed
    out["patient"] = pats

    def number(i: int, col: str, v) -> float:
        if _blank(v):
            return math.nan
        try:
            x = float(str(v).strip()) if not isinstance(v, (int, float, np.number)) or isinstance(v, bool) else float(v)
        except ValueError:
            raise InputError(source, f"line {ln[i]}, column {col}: {v!r} is not a number") from None
        if isinstance(v, bool) or not math.isfinite(x):
            raise InputError(source, f"line {ln[i]}, column {col}: {v!r} is not a finite number")
        return x

    weeks = []
    for i, v in enumerate(df["week"].tolist()):
        if _blank(v):
            raise InputError(source, f"line {ln[i]}, column week: week is empty (weeks since treatment start; baseline <= 0)")
        weeks.append(number(i, "week", v))
    out["week"] = np.asarray(weeks, dtype=float)
    for col in _NUMERIC:
        if col not in df.columns:
            out[col] = np.nan
            continue
        vals = [number(i, col, v) for i, v in enumerate(df[col].tolist())]
        for i, x in enumerate(vals):
            if x < 0:
                raise InputError(source, f"line {ln[i]}, column {col}: {x:g} is negative")
            if col in _PERCENT_COLUMNS and x > 100:
                raise InputError(source, f"line {ln[i]}, column {col}: {x:g} is above 100 %")
        out[col] = np.asarray(vals, dtype=float)
    for col in OPTIONAL_BOOL_COLUMNS:
        vals: list = []
        if col in df.columns:
            for i, v in enumerate(df[col].tolist()):
                if _blank(v):
                    vals.append(None)
                    continue
                if isinstance(v, (bool, np.bool_)):
                    vals.append(bool(v))
                    continue
                s = str(v).strip().lower()
                if s.endswith(".0"):
                    s = s[:-2]
                if s in _TRUE:
                    vals.append(True)
                elif s in _FALSE:
                    vals.append(False)
                else:
                    raise InputError(source, f"line {ln[i]}, column {col}: {v!r} is not true/false (or yes/no, 1/0)")
        else:
            vals = [None] * len(df)
        out[col] = pd.Series(vals, dtype=object)
    seen: dict[tuple[str, float], int] = {}
    for i, (p, w) in enumerate(zip(out["patient"], out["week"])):
        key = (p, float(w))
        if key in seen:
            raise InputError(source, f"line {ln[i]}, columns patient/week: duplicate row for patient {p} week {w:g} "
                                     f"(also on line {ln[seen[key]]})")
        seen[key] = i
    return out


# -------------------------------------------------------------------------------------------
# classification
# -------------------------------------------------------------------------------------------
def _row_values(row: Mapping) -> dict[str, Any]:
    return {c: (None if _missing(row[c]) else row[c]) for c in _ALL_VALUES}


def _reaches(dt: float, dur: float, inclusive: bool) -> bool:
    return dt >= dur - 1e-9 if inclusive else dt > dur + 1e-9


def _confirm(i: int, weeks: Sequence[float], ranks: Sequence[int | None], cat: Category) -> str:
    """Duration status of category ``cat`` at on-treatment row ``i``: not_required / confirmed /
    not_sustained (a worse assessed category came first) / unconfirmed (no assessment late enough)."""
    if cat.min_duration_weeks <= 0:
        return "not_required"
    if cat.duration_from == "treatment_start":
        # no worse assessed category on treatment up to the row that reaches the duration
        for j in range(len(weeks)):
            if ranks[j] is None:
                continue
            if ranks[j] > cat.rank:
                return "not_sustained"
            if j >= i and _reaches(weeks[j], cat.min_duration_weeks, cat.duration_inclusive):
                return "confirmed"
        return "unconfirmed"
    for j in range(i + 1, len(weeks)):
        if ranks[j] is None:
            continue
        if ranks[j] > cat.rank:
            return "not_sustained"
        if _reaches(weeks[j] - weeks[i], cat.min_duration_weeks, cat.duration_inclusive):
            return "confirmed"
    return "unconfirmed"


def _confirm_improvement(i: int, weeks: Sequence[float], met: Sequence[bool | None], imp: Improvement) -> str:
    if imp.min_duration_weeks <= 0:
        return "not_required"
    for j in range(i + 1, len(weeks)):
        if met[j] is None:
            continue
        if met[j] is False:
            return "not_sustained"
        if _reaches(weeks[j] - weeks[i], imp.min_duration_weeks, imp.duration_inclusive):
            return "confirmed"
    return "unconfirmed"


#: Blood values that may come from a nearby row when the criteria set has a count window.
_WINDOW_COLUMNS = ("hb_g_dl", "anc_10e9_l", "plt_10e9_l", "pb_blasts_pct")


def _fill_counts(ctx: dict, i: int, weeks: Sequence[float], vals: Sequence[Mapping], candidates: Iterable[int],
                 crit: ClinicalCriteria) -> list[str]:
    """Fill blood values missing on marrow row ``i`` (in place) from the nearest candidate row within the criteria
    set's count window (IWG 2023: ±2 weeks around the marrow date); return one note per value taken."""
    w = crit.count_window_weeks
    if w <= 0 or any(_missing(ctx.get(c)) for c in crit.assessment_requires):
        return []
    notes = []
    for col in _WINDOW_COLUMNS:
        if not _missing(ctx.get(col)):
            continue
        near = [(abs(weeks[j] - weeks[i]), weeks[j], j) for j in candidates
                if j != i and not _missing(vals[j].get(col)) and abs(weeks[j] - weeks[i]) <= w + 1e-9]
        if near:
            _, wk, j = min(near)
            ctx[col] = vals[j][col]
            notes.append(f"{col} from week {wk:g} (count window ±{w:g} weeks)")
    return notes


def classify_clinical_response(
    clinical_df: pd.DataFrame,
    criteria: str | PathLike | ClinicalCriteria = "iwg2006_mds",
    *,
    source: str = "<table>",
    require_duration: bool = True,
) -> pd.DataFrame:
    """Classify every timepoint of every patient with a clinical criteria set.

    #. The baseline of a patient is its latest row with ``week <= 0``; earlier rows are "pre-baseline".
    #. Each on-treatment row (week > 0) with the values in ``assessment_requires`` gets the first category whose
       condition is true, in the order of the criteria file; a condition that depends on a missing value makes the
       row "not_assessed" (it is never guessed), unless every such category is better than a response that holds
       (``marrow_response``): then the row is that response, a certain lower bound, with a note.
    #. Categories with a minimum duration (IWG 2006: CR/PR/mCR >= 4 weeks, SD > 8 weeks) are confirmed by a later
       assessed row at least as good, reached before any worse one; unconfirmed responses fall back to the
       fallback category (SD / no response) when that one is itself satisfied (``effective_category``).
    #. Hematologic improvements (HI-E/-P/-N) are assessed on their own, only when the pretreatment condition
       holds, with their own duration (8 weeks).
    #. Events (relapse after CR/PR, progression after HI) are checked after the first row that reached them.

    Parameters
    ----------
    clinical_df : DataFrame
        Clinical values (see the module docstring); validated with :func:`validate_clinical_table`.
    criteria : str, path or ClinicalCriteria
        ``iwg2006_mds`` (default), ``iwg2023_hr_mds``, ``eln2022_aml`` or a criteria ``.toml`` file.
    source : str
        Name of the table in error messages.
    require_duration : bool
        If False, minimum durations are ignored (every category counts when first met).

    Returns
    -------
    DataFrame
        One row per input row, sorted by patient and week: ``patient, week, criteria, category, rank,
        duration_status, effective_category, <improvement columns: hi_e, hi_p, hi_n>, events, notes``.
        Improvement columns hold ``met`` / ``met_unconfirmed`` / ``met_not_sustained`` / ``not_met`` /
        ``unknown`` / ``not_eligible`` / ``not_assessable``.
    """
    crit = load_clinical_criteria(criteria)
    df = validate_clinical_table(clinical_df, source)
    by_name = {c.name: c for c in crit.categories}
    rows_out: list[dict] = []
    for patient, g in df.groupby("patient", sort=True):
        g = g.sort_values("week", kind="stable").reset_index(drop=True)
        base_idx = [i for i, w in enumerate(g["week"]) if w <= 0]
        if not base_idx:
            for _, r in g.iterrows():
                rows_out.append(dict(patient=patient, week=r["week"], criteria=crit.id, category=NOT_EVALUABLE,
                                     rank=None, duration_status="", effective_category=NOT_EVALUABLE,
                                     **{h.column: "not_assessable" for h in crit.improvements},
                                     events="", notes="no baseline row (week <= 0)"))
            continue
        b = base_idx[-1]
        base = _row_values(g.iloc[b])
        all_weeks = [float(w) for w in g["week"]]
        all_vals = [_row_values(g.iloc[k]) for k in range(len(g))]
        base_notes = _fill_counts(base, b, all_weeks, all_vals, range(0, b), crit)
        for i in range(b):
            rows_out.append(dict(patient=patient, week=g.loc[i, "week"], criteria=crit.id, category=PRE_BASELINE,
                                 rank=None, duration_status="", effective_category=PRE_BASELINE,
                                 **{h.column: "" for h in crit.improvements}, events="",
                                 notes=f"before the baseline (week {g.loc[b, 'week']:g}); ignored"))
        rows_out.append(dict(patient=patient, week=g.loc[b, "week"], criteria=crit.id, category=BASELINE, rank=None,
                             duration_status="", effective_category=BASELINE,
                             **{h.column: "" for h in crit.improvements}, events="", notes="; ".join(base_notes)))
        on = g.iloc[b + 1:].reset_index(drop=True)
        weeks = [float(w) for w in on["week"]]
        vals = [_row_values(on.iloc[k]) for k in range(len(on))]
        ctxs = []
        for v in vals:
            ctx = dict(v)
            ctx.update({f"baseline.{k}": x for k, x in base.items()})
            ctxs.append(ctx)
        cats: list[str] = []
        ranks: list[int | None] = []
        notes: list[list[str]] = []
        for k, ctx0 in enumerate(ctxs):
            ctx = dict(ctx0)  # the categories may use blood values of a nearby row (count window); HI does not
            nt = _fill_counts(ctx, b + 1 + k, all_weeks, all_vals, range(b + 1, len(g)), crit)
            need = [c for c in crit.assessment_requires if _missing(ctx.get(c))]
            cat = None
            if need:
                nt.append(f"not assessed: no {', '.join(need)}")
            else:
                # a category that depends on a missing value is skipped only when every such one is better than
                # the category that then holds and that one is a response (marrow_response): the row is certainly
                # at least that response (a lower bound, not a guess). An open worse category (e.g. PD), or a
                # non-response holding (SD, no response: it would read as a definite one), leaves it not assessed
                open_: list[tuple[Category, set[str]]] = []
                for c in crit.categories:
                    miss: set[str] = set()
                    res = True if c.when is None else evaluate(c.when, ctx, nt, miss)
                    if res is None:
                        open_.append((c, miss))
                        continue
                    if res:
                        if not open_ or (c.name in crit.marrow_response and all(o.rank < c.rank for o, _ in open_)):
                            cat = c
                            for o, m in open_:
                                nt.append(f"{o.name} not assessed (depends on missing {', '.join(sorted(m))}): "
                                          f"at least {c.name}")
                        break
                if cat is None and open_:
                    o, m = open_[0]
                    nt.append(f"not assessed: {o.name} depends on missing {', '.join(sorted(m))}")
            cats.append(cat.name if cat else NOT_ASSESSED)
            ranks.append(cat.rank if cat else None)
            notes.append(nt)
        status, eff = [], []
        fb = crit.fallback
        for i, name in enumerate(cats):
            if name == NOT_ASSESSED:
                status.append("")
                eff.append(NOT_ASSESSED)
                continue
            cat = by_name[name]
            st = _confirm(i, weeks, ranks, cat) if require_duration else "not_required"
            status.append(st)
            if st in ("confirmed", "not_required"):
                eff.append(name)
            elif fb is not None and fb.rank > cat.rank and _confirm(i, weeks, ranks, fb) in ("confirmed", "not_required"):
                eff.append(fb.name)
            else:
                eff.append(f"{name} (unconfirmed)" if st == "unconfirmed" else f"{name} (not sustained)")
        # improvements
        hi: dict[str, list[str]] = {}
        hi_met: dict[str, list[bool | None]] = {}
        for h in crit.improvements:
            elig = True if h.eligible is None else evaluate(h.eligible, {f"baseline.{k}": x for k, x in base.items()})
            met = [None if elig is not True else evaluate(h.when, ctx) for ctx in ctxs]
            hi_met[h.name] = met
            col = []
            for i, m in enumerate(met):
                if elig is False:
                    col.append("not_eligible")
                elif elig is None:
                    col.append("not_assessable")
                elif m is None:
                    col.append("unknown")
                elif m is False:
                    col.append("not_met")
                else:
                    st = _confirm_improvement(i, weeks, met, h) if require_duration else "not_required"
                    col.append({"confirmed": "met", "not_required": "met", "unconfirmed": "met_unconfirmed",
                                "not_sustained": "met_not_sustained"}[st])
            hi[h.column] = col
        # events
        ev: list[list[str]] = [[] for _ in weeks]
        for e in crit.events:
            onset = next((i for i in range(len(weeks))
                          if cats[i] in e.after or any(hi_met.get(a, [None] * len(weeks))[i] is True for a in e.after)),
                         None)
            if onset is None:
                continue
            running: dict[str, float] = {}
            for j in range(onset, len(weeks)):
                for c in _NUMERIC:
                    x = vals[j].get(c)
                    if not _missing(x):
                        running[c] = max(running.get(c, -math.inf), float(x))
                if j == onset:
                    continue
                ctx = dict(ctxs[j])
                ctx.update({f"max.{k}": x for k, x in running.items()})
                if evaluate(e.when, ctx) is True:
                    ev[j].append(e.name)
                    break
        for i, name in enumerate(cats):
            if name in by_name and by_name[name].event:
                ev[i].insert(0, by_name[name].event)
        for i in range(len(weeks)):
            rows_out.append(dict(patient=patient, week=weeks[i], criteria=crit.id, category=cats[i], rank=ranks[i],
                                 duration_status=status[i], effective_category=eff[i],
                                 **{k: v[i] for k, v in hi.items()}, events="; ".join(ev[i]),
                                 notes="; ".join(dict.fromkeys(notes[i]))))
    cols = (["patient", "week", "criteria", "category", "rank", "duration_status", "effective_category"]
            + [h.column for h in crit.improvements] + ["events", "notes"])
    out = pd.DataFrame(rows_out, columns=cols)
    out["rank"] = out["rank"].astype("Int64")
    return out.reset_index(drop=True)


def summarize_clinical_response(
    timepoints: pd.DataFrame, criteria: str | PathLike | ClinicalCriteria = "iwg2006_mds"
) -> pd.DataFrame:
    """Best clinical response per patient from :func:`classify_clinical_response` output.

    Parameters
    ----------
    timepoints : DataFrame
        Output of :func:`classify_clinical_response` (one row per patient and week, with ``patient, week,
        category, effective_category, events`` and the improvement columns of ``criteria``), not re-validated.
    criteria : str, path-like or ClinicalCriteria, default ``"iwg2006_mds"``
        The criteria set the timepoints were classified with (see :func:`load_clinical_criteria`); it gives the
        category ranking, the marrow-response categories and the improvement columns.

    Returns
    -------
    DataFrame
        One row per patient: ``patient, criteria, baseline_week, n_assessed, best_response, best_week,
        best_response_unconfirmed, marrow_response (bool), <hi_e, hi_p, hi_n>, events, flags``.
        ``best_response`` is the best effective (duration-confirmed) category, ``not_evaluable`` when there is no
        baseline or no assessed, confirmed timepoint. HI columns: ``yes`` / ``unconfirmed`` / ``no`` /
        ``not_eligible`` / ``not_assessable``. Patients are sorted by id; ``baseline_week`` and ``best_week``
        are in weeks since treatment start (NaN when absent).

    Raises
    ------
    CriteriaError
        ``criteria`` cannot be loaded (see :func:`load_clinical_criteria`).
    KeyError
        ``timepoints`` lacks a column listed above.
    """
    crit = load_clinical_criteria(criteria)
    rank = {c.name: c.rank for c in crit.categories}
    out = []
    for patient, g in timepoints.groupby("patient", sort=True):
        g = g.sort_values("week", kind="stable")
        flags: list[str] = []
        base = g[g["category"] == BASELINE]
        eff = g[g["effective_category"].isin(list(rank))]
        raw = g[g["category"].isin(list(rank))]
        if base.empty:
            flags.append("no baseline row (week <= 0)")
        if (g["category"] == NOT_ASSESSED).any():
            flags.append(f"{int((g['category'] == NOT_ASSESSED).sum())} timepoint(s) not assessed")
        if not base.empty and not (g["week"] > base["week"].iloc[0]).any():
            flags.append("no on-treatment timepoint")
        if eff.empty:
            best, best_week = NOT_EVALUABLE, np.nan
            if not raw.empty:
                flags.append("no response lasted the required duration")
        else:
            k = eff["effective_category"].map(rank)
            row = eff.loc[k.idxmin()]
            best, best_week = row["effective_category"], row["week"]
        best_unconf = NOT_EVALUABLE if raw.empty else raw.loc[raw["category"].map(rank).idxmin(), "category"]
        hi = {}
        for h in crit.improvements:
            v = set(g[h.column])
            hi[h.column] = ("yes" if "met" in v else "unconfirmed" if v & {"met_unconfirmed", "met_not_sustained"}
                            else "not_eligible" if "not_eligible" in v
                            else "no" if "not_met" in v else "not_assessable")
        events = [f"{e} (week {w:g})" for w, evs in zip(g["week"], g["events"]) for e in str(evs).split("; ") if e]
        out.append(dict(
            patient=patient, criteria=crit.id,
            baseline_week=float(base["week"].iloc[0]) if not base.empty else np.nan,
            n_assessed=int(len(raw)), best_response=best, best_week=best_week,
            best_response_unconfirmed=best_unconf, marrow_response=bool(best in crit.marrow_response),
            **hi, events="; ".join(events), flags="; ".join(flags),
        ))
    cols = (["patient", "criteria", "baseline_week", "n_assessed", "best_response", "best_week",
             "best_response_unconfirmed", "marrow_response"] + [h.column for h in crit.improvements]
            + ["events", "flags"])
    return pd.DataFrame(out, columns=cols)


#: FISH response values that count as cytogenetic responders: trial FISH major / minor (clinical.md §6.2 R10) and
#: IWG 2006 cytogenetic complete / partial (criteria set iwg2006_cyto, clinical.md §2.1).
FISH_RESPONDERS = ("major", "minor", "complete", "partial")


def overall_trial_response(
    fish_df: pd.DataFrame,
    clinical_patients: pd.DataFrame,
    *,
    fish_column: str = "best_response",
    source: str = "<response table>",
) -> pd.DataFrame:
    """Overall trial response = FISH major ∪ minor ∪ bone-marrow response (clinical.md §1.2, §6.2 R15).

    Möllgård 2011 counted 5 major + 2 minor + 2 marrow-only = 9/26 responders; the marrow response comes from
    supplied clinical values (:func:`summarize_clinical_response`), never from FISH.

    Parameters
    ----------
    fish_df : DataFrame
        Per-patient FISH response (``response.csv``): ``patient`` and ``fish_column`` (major / minor / none /
        not_evaluable), other columns kept.
    clinical_patients : DataFrame
        Output of :func:`summarize_clinical_response` (``patient``, ``best_response``, ``marrow_response``).
    fish_column : str
        Column of ``fish_df`` with the FISH response used (``best_response`` or ``endpoint_response``).
    source : str, default ``"<response table>"``
        Name of ``fish_df`` (e.g. the path of ``response.csv``), used in error messages.

    Returns
    -------
    DataFrame
        ``fish_df`` rows (plus patients only in the clinical table) with added ``clinical_criteria,
        clinical_best_response, marrow_response, overall_response`` (bool) and ``response_basis``
        (``major`` / ``minor`` (or ``complete`` / ``partial``) / ``marrow-only`` / ``none``). A patient missing from one table counts as a
        non-responder on that side, and ``flags`` says so.

    Raises
    ------
    InputError
        A required column is missing from either table, or ``fish_df`` has duplicate patient rows (per
        ``patient`` and ``panel`` when it has a ``panel`` column).
    """
    for col in ("patient", fish_column):
        if col not in fish_df.columns:
            raise InputError(source, f"missing column {col}")
    for col in ("patient", "best_response", "marrow_response"):
        if col not in clinical_patients.columns:
            raise InputError("<clinical summary>", f"missing column {col}")
    fish = fish_df.copy()
    fish["patient"] = fish["patient"].astype(str)
    key = ["patient", "panel"] if "panel" in fish.columns else ["patient"]
    dups = fish["patient"][fish.duplicated(key)].tolist()
    if dups:
        raise InputError(source, f"duplicate patient row(s): {', '.join(map(str, dups))}")
    clin = clinical_patients[["patient", "best_response", "marrow_response"]
                             + (["criteria"] if "criteria" in clinical_patients.columns else [])].copy()
    clin["patient"] = clin["patient"].astype(str)
    clin = clin.rename(columns={"best_response": "clinical_best_response", "criteria": "clinical_criteria"})
    merged = fish.merge(clin, on="patient", how="outer", indicator=True, sort=False)
    if "flags" not in merged.columns:
        merged["flags"] = ""
    merged["flags"] = merged["flags"].fillna("").astype(str)

    def add_flag(mask, text):
        merged.loc[mask, "flags"] = [f"{f}; {text}" if f else text for f in merged.loc[mask, "flags"]]

    add_flag(merged["_merge"] == "left_only", "no clinical values (marrow response counted as no)")
    add_flag(merged["_merge"] == "right_only", "no FISH response row (FISH counted as not evaluable)")
    for col in dict.fromkeys([fish_column, "best_response", "endpoint_response"]):
        if col in merged.columns:
            merged[col] = merged[col].fillna(NOT_EVALUABLE)
    right = merged["_merge"] == "right_only"
    for col in fish.columns:  # patients with clinical values only: empty text, False flags, NaN numbers
        if col in ("patient", "flags", fish_column):
            continue
        if pd.api.types.is_bool_dtype(fish[col]):
            merged[col] = merged[col].astype(object).where(~right, False).astype(bool)
        elif pd.api.types.is_string_dtype(fish[col]) or fish[col].dtype == object:
            merged[col] = merged[col].astype(object).where(~right | merged[col].notna(), "")
    if "baseline_status" in merged.columns:
        merged.loc[right, "baseline_status"] = "missing"
    if "panel" in merged.columns:
        panels = [p for p in fish["panel"].dropna().astype(str).unique() if p.strip()]
        if len(panels) > 1 and right.any():
            # a patient with clinical values only is in the cohort of every panel (intention to treat): one row
            # per panel, so that no panel's denominator loses them
            extra = [merged[right].assign(panel=p) for p in panels]
            merged = pd.concat([merged[~right], *extra], ignore_index=True)
        else:
            merged["panel"] = merged["panel"].fillna(panels[0] if len(panels) == 1 else "")
    merged["marrow_response"] = merged["marrow_response"].fillna(False).astype(bool)
    merged["clinical_best_response"] = merged["clinical_best_response"].fillna(NOT_EVALUABLE)
    fishv = merged[fish_column].astype(str).str.strip().str.lower()
    merged["overall_response"] = fishv.isin(FISH_RESPONDERS) | merged["marrow_response"]
    merged["response_basis"] = np.where(
        fishv.isin(FISH_RESPONDERS), fishv, np.where(merged["marrow_response"], "marrow-only", "none"))
    return merged.drop(columns="_merge").reset_index(drop=True)


# -------------------------------------------------------------------------------------------
# the --clinical hook of `fishcount response`
# -------------------------------------------------------------------------------------------
CLINICAL_OUTPUTS = ("clinical_response.csv", "clinical_timepoints.csv", "clinical_response.txt")


@dataclass(frozen=True)
class ClinicalResult:
    """Clinical response of a cohort.

    Attributes
    ----------
    timepoints : DataFrame
        :func:`classify_clinical_response` output (``clinical_timepoints.csv``).
    patients : DataFrame
        :func:`summarize_clinical_response` output (``clinical_response.csv``).
    criteria : ClinicalCriteria
    source : str
        The clinical values file.
    """

    timepoints: pd.DataFrame
    patients: pd.DataFrame
    criteria: ClinicalCriteria
    source: str = ""


def attach_clinical(res, clinical: str | PathLike | pd.DataFrame,
                    criteria: str | PathLike | ClinicalCriteria = "iwg2006_mds"):
    """Classify supplied clinical values and join them to a FISH :class:`fishcount.response.ResponseResult`.

    Parameters
    ----------
    res : ResponseResult
        From :func:`fishcount.response.classify_response`.
    clinical : path or DataFrame
        Clinical values (CSV path or table).
    criteria : str, path or ClinicalCriteria
        Clinical criteria set (default ``iwg2006_mds``).

    Returns
    -------
    (ResponseResult, ClinicalResult)
        ``res`` with ``patients`` extended by ``clinical_criteria, clinical_best_response, marrow_response,
        overall_response, response_basis`` (:func:`overall_trial_response`), and the clinical result.
    """
    import dataclasses

    crit = load_clinical_criteria(criteria)
    if isinstance(clinical, pd.DataFrame):
        src, table = "<clinical table>", validate_clinical_table(clinical, "<clinical table>")
    else:
        src, table = str(clinical), read_clinical_csv(clinical)
    tp = classify_clinical_response(table, crit, source=src)
    pts = summarize_clinical_response(tp, crit)
    joined = overall_trial_response(res.patients, pts, source="response.csv")
    return dataclasses.replace(res, patients=joined), ClinicalResult(tp, pts, crit, src)


def format_clinical(clin: ClinicalResult, overall: pd.DataFrame | None = None) -> str:
    """Readable summary: each patient's best clinical response, HI, events; overall trial response; sources."""
    c = clin.criteria
    lines = [f"fishcount clinical response ({c.name}; criteria {c.id}) from supplied values: {clin.source}",
             "Clinical categories come from the supplied marrow and blood values, never from FISH.", ""]
    his = [h.column for h in c.improvements]
    for p in clin.patients.to_dict("records"):
        hi = ", ".join(f"{h.name} {p[h.column]}" for h in c.improvements)
        week = "" if pd.isna(p["best_week"]) else f" at week {p['best_week']:g}"
        lines.append(f"{p['patient']}: best {p['best_response']}{week}"
                     + (f" (unconfirmed best {p['best_response_unconfirmed']})"
                        if p["best_response_unconfirmed"] != p["best_response"] else "")
                     + f"; marrow response {'yes' if p['marrow_response'] else 'no'}" + (f"; {hi}" if his else ""))
        if p["events"]:
            lines.append(f"    events: {p['events']}")
        if p["flags"]:
            lines.append(f"    flags: {p['flags']}")
    if overall is not None and "overall_response" in overall.columns:
        # per patient (a patient scored with several panels has one row per panel): responder in any panel,
        # counted once, under their best basis
        rank = {b: i for i, b in enumerate((*FISH_RESPONDERS, "marrow-only", "none"))}
        per = overall.assign(_r=overall["response_basis"].map(lambda b: rank.get(b, len(rank)))) \
            .sort_values("_r").drop_duplicates("patient")
        n, k = len(per), int(per["overall_response"].sum())
        basis = per["response_basis"].value_counts()
        lines += ["", f"Overall trial response (FISH major ∪ minor ∪ marrow response, clinical.md §6.2 R15): "
                      f"{k}/{n} patients ("
                      + ", ".join(f"{b} {int(basis.get(b, 0))}" for b in FISH_RESPONDERS + ("marrow-only",)
                                  if b in basis.index or b in ("major", "minor", "marrow-only")) + ")"]
    from .scoring import FISH_CAVEAT

    lines += ["", "Caveat: " + FISH_CAVEAT, "Sources: " + "; ".join(c.sources)]
    return "\n".join(lines) + "\n"


def write_clinical(clin: ClinicalResult, out_dir: str | PathLike, *, overall: pd.DataFrame | None = None,
                   overwrite: bool = False, check_only: bool = False) -> list[Path]:
    """Write ``clinical_response.csv``, ``clinical_timepoints.csv`` and ``clinical_response.txt`` atomically.

    With ``check_only`` nothing is written: only the check that no output exists (unless ``overwrite``) is done,
    so a caller can check every output before writing any.

    Raises
    ------
    InputError
        An output exists and ``overwrite`` is False.
    """
    from ._atomic import staged_files

    out = Path(out_dir)
    targets = [out / n for n in CLINICAL_OUTPUTS]
    if not overwrite:
        for t in targets:
            if t.exists():
                raise InputError(t, "exists already; choose another --out or pass --overwrite")
    if check_only:
        return []
    try:  # the three files as one set
        with staged_files(targets, overwrite=overwrite) as tmp:
            clin.patients.to_csv(tmp[0], index=False)
            clin.timepoints.to_csv(tmp[1], index=False)
            tmp[2].write_text(format_clinical(clin, overall), encoding="utf-8")
    except FileExistsError as exc:
        raise InputError(exc.filename, "exists already; choose another --out or pass --overwrite") from None
    return targets
