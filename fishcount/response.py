"""Cytogenetic response over time: a patient's samples -> category per timepoint, best, endpoint.

The rules are data: a criteria set (TOML, ``fishcount/criteria/``) names the categories best first
with their conditions, the baseline rules, the loss-of-response events, the endpoint week and
window and the adequacy thresholds. Shipped sets (see :func:`list_criteria`):

* ``trial_fish`` (default): major / minor / none (clinical.md §6.2 R8-R14);
* ``iwg2006_cyto``: IWG 2006 complete / partial / none (clinical.md §2.1).

Per patient (clinical.md §6.2):

* R8 baseline = latest evaluable sample at week ≤ ``baseline.max_week``; it must be evaluable
  (adequacy) and positive, else the patient is ``not_evaluable`` (never a responder);
* R9 low-baseline guard: ``B < factor × cut-off`` blocks the listed categories (flagged);
* R10 each on-treatment sample gets the first category whose conditions hold;
* R11 events (relapse after major, progression ≥ 1.5 × nadir after minor, clonal evolution);
* R12 best response over evaluable on-treatment samples; endpoint category in the window;
* R13 no imputation, no LOCF; R14 confirmation by the next adequate sample ≥ 4 weeks later.

Clinical (IWG / ELN) response from supplied blood and marrow values lives in
:mod:`fishcount.clinical`; it joins onto :func:`response_table` by ``patient``.
"""
from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .cutoffs import NOT_VALIDATED, CutoffSet, cutoff_for_n, cutoffs_by_panel, load_cutoffs
from ._datafile import check_fields, check_schema_version, patient_id
from .errors import CriteriaError, InputError
from .scoring import FISH_CAVEAT, clopper_pearson

__all__ = [
    "DEFAULT_CRITERIA",
    "Category",
    "Event",
    "Criteria",
    "ResponseResult",
    "load_criteria",
    "list_criteria",
    "classify_response",
    "response_table",
    "read_samples",
    "write_response",
    "REQUIRED_COLUMNS",
]

#: Id of the criteria set used when none is given.
DEFAULT_CRITERIA = "trial_fish"
#: Columns a samples table must have (clinical.md §6.2; docs/response.md).
REQUIRED_COLUMNS = ("patient", "week", "nuclei_scored", "nuclei_abnormal")
_EPS = 1e-9
_EVENT_KINDS = ("positive", "nadir_factor", "new_abnormal")


# -------------------------------------------------------------------------------------------
# criteria sets as data
# -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Category:
    """One response category and its conditions (all must hold; none = the default category).

    Attributes
    ----------
    name : str
    positive : bool or None
        Required positivity of the follow-up (clone % > cut-off(N)); None = not checked.
    max_fraction_of_baseline : float or None
        Follow-up % must be ≤ this × baseline % (inclusive).
    require_no_new_abnormal : bool
        No non-tracked abnormal call above its cut-off that was not above it at baseline.
    limited_ci_must_clear : bool
        For a limited-N sample, the CI upper bound must also be ≤ max_fraction × baseline.
    significant_decrease_p : float or None
        ``strict_stats`` (clinical.md §6.2 R10 [I]): the decrease from baseline must also be
        significant, one-sided Fisher exact p < this value on x_B/N_B vs x_F/N_F.
    source : str
    """

    name: str
    positive: bool | None = None
    max_fraction_of_baseline: float | None = None
    require_no_new_abnormal: bool = False
    limited_ci_must_clear: bool = False
    significant_decrease_p: float | None = None
    source: str = ""


@dataclass(frozen=True)
class Event:
    """A loss-of-response event.

    ``when`` is ``positive`` (sample above the cut-off), ``nadir_factor`` (clone % ≥ factor × the
    nadir since the response) or ``new_abnormal``; it applies while the best category reached
    since the last loss event is in ``after`` (empty = always). ``sets_category`` overrides the
    sample's category (a relapse is a loss of response: ``none``) and restarts the tracking.
    """

    name: str
    when: str
    after: tuple[str, ...] = ()
    factor: float | None = None
    sets_category: str | None = None
    source: str = ""


@dataclass(frozen=True)
class Criteria:
    """A response criteria set loaded from TOML (:func:`load_criteria`).

    ``categories`` are ordered best first; the last is the non-response default.
    """

    id: str
    name: str
    description: str
    sources: tuple[str, ...]
    not_evaluable: str
    adequate_nuclei: int
    limited_nuclei: int
    baseline_max_week: float
    require_positive: bool
    low_baseline_factor: float | None
    low_baseline_blocks: tuple[str, ...]
    categories: tuple[Category, ...]
    events: tuple[Event, ...]
    endpoint_week: float
    endpoint_window_weeks: float
    confirmation_min_weeks: float | None
    path: str = ""
    sha256: str = ""
    best_from_limited: bool = False  # R12: the best response over adequate samples only (False)

    @property
    def category_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    @property
    def response_categories(self) -> tuple[str, ...]:
        """Categories that count as a response (all but the last, default one)."""
        return self.category_names[:-1]

    def rank(self, name: str) -> int:
        """Higher is better; ``not_evaluable`` (or unknown) is -1."""
        names = self.category_names
        return len(names) - names.index(name) if name in names else -1


def _criteria_dir() -> Path:
    return Path(str(resources.files("fishcount.criteria")))


def list_criteria() -> list[str]:
    """Ids of the response criteria sets shipped with fishcount."""
    out = []
    for p in sorted(_criteria_dir().glob("*.toml")):
        try:
            if tomllib.loads(p.read_text(encoding="utf-8")).get("type") == "response-criteria":
                out.append(p.stem)
        except tomllib.TOMLDecodeError:
            continue
    return out


def _get(d: Mapping, key: str, typ, source: str, where: str, default=None, required=False):
    if key not in d:
        if required:
            raise CriteriaError(source, f"missing required field '{where}{key}'")
        return default
    v = d[key]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, typ) or (isinstance(v, bool) and typ is not bool):
        tn = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise CriteriaError(source, f"field '{where}{key}' must be {tn}, got {v!r}")
    return v


def _check_keys(d: Mapping, allowed: set[str], source: str, where: str) -> None:
    check_fields(d, allowed, source, CriteriaError, key_prefix=where)


def criteria_from_dict(data: Mapping, source: str = "<dict>", raw: bytes | None = None) -> Criteria:
    """Build and validate a :class:`Criteria` from parsed TOML (format: docs/response.md).

    Raises
    ------
    CriteriaError
        Naming the file and the offending field.
    """
    if not isinstance(data, Mapping):
        raise CriteriaError(source, "a criteria set must be a table of fields")
    _check_keys(data, {"schema_version", "type", "id", "name", "description", "sources", "not_evaluable",
                       "adequacy", "baseline", "category", "event", "endpoint", "confirmation"}, source, "")
    check_schema_version(data, source, CriteriaError)
    if data.get("type") != "response-criteria":
        raise CriteriaError(source, f"type must be \"response-criteria\", got {data.get('type')!r}")
    cid = _get(data, "id", str, source, "", required=True)
    ad = _get(data, "adequacy", dict, source, "", default={})
    _check_keys(ad, {"adequate_nuclei", "limited_nuclei", "best_from_limited"}, source, "adequacy.")
    adequate = _get(ad, "adequate_nuclei", int, source, "adequacy.", default=200)
    limited = _get(ad, "limited_nuclei", int, source, "adequacy.", default=100)
    best_from_limited = _get(ad, "best_from_limited", bool, source, "adequacy.", default=False)
    if not 0 < limited <= adequate:
        raise CriteriaError(source, f"adequacy needs 0 < limited_nuclei <= adequate_nuclei, got {limited} and {adequate}")
    bl = _get(data, "baseline", dict, source, "", default={})
    _check_keys(bl, {"max_week", "require_positive", "low_baseline_factor", "low_baseline_blocks"}, source, "baseline.")
    lbf = _get(bl, "low_baseline_factor", float, source, "baseline.", default=None)
    if lbf is not None and lbf < 1:
        raise CriteriaError(source, f"baseline.low_baseline_factor must be >= 1, got {lbf}")
    raw_cats = _get(data, "category", list, source, "", required=True)
    if len(raw_cats) < 2:
        raise CriteriaError(source, "need at least two [[category]] tables (a response and the default)")
    cats = []
    for i, c in enumerate(raw_cats):
        w = f"category[{i}]."
        if not isinstance(c, Mapping):
            raise CriteriaError(source, f"category[{i}] must be a table")
        _check_keys(c, {"name", "positive", "max_fraction_of_baseline", "require_no_new_abnormal",
                        "limited_ci_must_clear", "significant_decrease_p", "source"}, source, w)
        sig = _get(c, "significant_decrease_p", float, source, w)
        if sig is not None and not 0 < sig < 1:
            raise CriteriaError(source, f"{w}significant_decrease_p must be in (0, 1), got {sig}")
        frac = _get(c, "max_fraction_of_baseline", float, source, w)
        if frac is not None and not 0 <= frac <= 1:
            raise CriteriaError(source, f"{w}max_fraction_of_baseline must be in [0, 1], got {frac}")
        cats.append(Category(
            name=_get(c, "name", str, source, w, required=True),
            positive=_get(c, "positive", bool, source, w),
            max_fraction_of_baseline=frac,
            require_no_new_abnormal=_get(c, "require_no_new_abnormal", bool, source, w, default=False),
            limited_ci_must_clear=_get(c, "limited_ci_must_clear", bool, source, w, default=False),
            significant_decrease_p=sig,
            source=_get(c, "source", str, source, w, default=""),
        ))
    names = [c.name for c in cats]
    ne = _get(data, "not_evaluable", str, source, "", default="not_evaluable")
    if len(set(names)) != len(names) or ne in names:
        raise CriteriaError(source, f"category names must be unique and differ from not_evaluable: {names}")
    last = cats[-1]
    if (last.positive is not None or last.max_fraction_of_baseline is not None or last.require_no_new_abnormal
            or last.significant_decrease_p is not None):
        raise CriteriaError(source, f"the last category ({last.name!r}) is the default and must have no conditions")
    blocks = tuple(_get(bl, "low_baseline_blocks", list, source, "baseline.", default=[]))
    for b in blocks:
        if b not in names:
            raise CriteriaError(source, f"baseline.low_baseline_blocks names {b!r}, not a category ({', '.join(names)})")
    events = []
    for i, e in enumerate(_get(data, "event", list, source, "", default=[])):
        w = f"event[{i}]."
        if not isinstance(e, Mapping):
            raise CriteriaError(source, f"event[{i}] must be a table")
        _check_keys(e, {"name", "when", "after", "factor", "sets_category", "source"}, source, w)
        when = _get(e, "when", str, source, w, required=True)
        if when not in _EVENT_KINDS:
            raise CriteriaError(source, f"{w}when must be one of {', '.join(_EVENT_KINDS)}, got {when!r}")
        after = tuple(_get(e, "after", list, source, w, default=[]))
        for a in after:
            if a not in names:
                raise CriteriaError(source, f"{w}after names {a!r}, not a category ({', '.join(names)})")
        factor = _get(e, "factor", float, source, w)
        if when == "nadir_factor" and (factor is None or factor <= 1):
            raise CriteriaError(source, f"{w}factor must be a number > 1 for when = \"nadir_factor\"")
        sets = _get(e, "sets_category", str, source, w)
        if sets is not None and sets not in names:
            raise CriteriaError(source, f"{w}sets_category names {sets!r}, not a category ({', '.join(names)})")
        events.append(Event(name=_get(e, "name", str, source, w, required=True), when=when, after=after,
                            factor=factor, sets_category=sets, source=_get(e, "source", str, source, w, default="")))
    ep = _get(data, "endpoint", dict, source, "", default={})
    _check_keys(ep, {"week", "window_weeks"}, source, "endpoint.")
    window = _get(ep, "window_weeks", float, source, "endpoint.", default=2.0)
    if window < 0:
        raise CriteriaError(source, f"endpoint.window_weeks must be >= 0, got {window}")
    conf = _get(data, "confirmation", dict, source, "", default={})
    _check_keys(conf, {"min_weeks"}, source, "confirmation.")
    return Criteria(
        id=cid,
        name=_get(data, "name", str, source, "", default=cid),
        description=_get(data, "description", str, source, "", default=""),
        sources=tuple(_get(data, "sources", list, source, "", default=[])),
        not_evaluable=ne,
        adequate_nuclei=adequate,
        limited_nuclei=limited,
        best_from_limited=best_from_limited,
        baseline_max_week=_get(bl, "max_week", float, source, "baseline.", default=0.0),
        require_positive=_get(bl, "require_positive", bool, source, "baseline.", default=True),
        low_baseline_factor=lbf,
        low_baseline_blocks=blocks,
        categories=tuple(cats),
        events=tuple(events),
        endpoint_week=_get(ep, "week", float, source, "endpoint.", default=16.0),
        endpoint_window_weeks=window,
        confirmation_min_weeks=_get(conf, "min_weeks", float, source, "confirmation.", default=None),
        path=source,
        sha256=hashlib.sha256(raw).hexdigest() if raw is not None else "",
    )


def load_criteria(criteria: "str | PathLike | Criteria | None" = None) -> Criteria:
    """Load a criteria set by shipped id (``"trial_fish"``, ``"iwg2006_cyto"``) or TOML path.

    Parameters
    ----------
    criteria : str, path-like, Criteria or None, default None
        A shipped id (see :func:`list_criteria`), the path of a criteria ``.toml`` file (a value ending in
        ``.toml``, containing ``/`` or naming an existing file is taken as a path), or a :class:`Criteria`
        (returned as is). ``None`` gives the default set, ``trial_fish``.

    Returns
    -------
    Criteria
        The parsed criteria set; ``path`` is the file read and ``sha256`` the hash of its bytes.

    Raises
    ------
    CriteriaError
        Unknown id, unreadable or invalid file.
    """
    if isinstance(criteria, Criteria):
        return criteria
    if criteria is None:
        criteria = DEFAULT_CRITERIA
    p = Path(criteria)
    if p.suffix.lower() == ".toml" or p.exists() or "/" in str(criteria):
        if not p.is_file():
            raise CriteriaError(p, "criteria file not found")
        path = p
    else:
        path = _criteria_dir() / f"{criteria}.toml"
        same = [c for c in list_criteria() if c.lower() == str(criteria).lower()]  # TRIAL_FISH is trial_fish
        if not path.is_file() and len(same) == 1:
            path = _criteria_dir() / f"{same[0]}.toml"
        if not path.is_file():
            raise CriteriaError(str(criteria), f"unknown criteria set; shipped: {', '.join(list_criteria())} (or give a .toml file)")
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise CriteriaError(path, f"cannot read criteria file ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CriteriaError(path, f"not valid TOML ({exc})") from None
    return criteria_from_dict(data, str(path), raw)


# -------------------------------------------------------------------------------------------
# input table
# -------------------------------------------------------------------------------------------
def read_samples(path: str | PathLike) -> pd.DataFrame:
    """Read a samples table (CSV/TSV/Parquet); validation happens in :func:`classify_response`."""
    from .scoring import read_table

    return read_table(path)


def _bool_value(v, source: str, row: int, col: str) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    s = str(v).strip().lower()
    if s in ("true", "1", "1.0", "yes"):
        return True
    if s in ("false", "0", "0.0", "no"):
        return False
    raise InputError(source, f"row {row}, column '{col}': expected true/false, got {v!r}")


def _normalise(samples: pd.DataFrame, cutoffs, source: str) -> pd.DataFrame:
    """Validate the samples table and return a clean copy (row = CSV line number)."""
    if samples is None or len(samples) == 0:
        raise InputError(source, "the samples table has no rows")
    missing = [c for c in REQUIRED_COLUMNS if c not in samples.columns]
    if missing:
        raise InputError(source, f"missing column(s) {', '.join(missing)}; a samples table needs "
                                 f"{', '.join(REQUIRED_COLUMNS)} (optional: timepoint, panel, cutoff_pct)")
    from ._datafile import csv_lines

    lines = csv_lines(samples)  # the CSV line of each row (header = line 1; blank lines counted)
    df = samples.reset_index(drop=True)
    out = pd.DataFrame({"row": lines})
    pat = df["patient"]
    for i, v in enumerate(pat.tolist()):
        if pd.isna(v) or str(v).strip() == "":
            raise InputError(source, f"row {lines[i]}, column 'patient': empty patient id")
    out["patient"] = [patient_id(v) for v in pat.tolist()]  # NFC: one patient however typed

    def shown(r) -> str:
        if pd.isna(r):
            return "an empty cell"
        return repr(r.item() if isinstance(r, np.generic) else r)

    def numeric(col: str, integer: bool, lo: float | None = None, hi: float | None = None) -> np.ndarray:
        vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        for i, (v, r) in enumerate(zip(vals, df[col].tolist())):
            if not np.isfinite(v):
                raise InputError(source, f"row {lines[i]}, column '{col}': expected a number, got {shown(r)}")
            if integer and v != int(v):
                raise InputError(source, f"row {lines[i]}, column '{col}': expected a whole number, got {shown(r)}")
            if lo is not None and v < lo:
                raise InputError(source, f"row {lines[i]}, column '{col}': must be >= {lo:g}, got {shown(r)}")
            if hi is not None and v > hi:
                raise InputError(source, f"row {lines[i]}, column '{col}': must be <= {hi:g}, got {shown(r)}")
        return vals

    out["week"] = numeric("week", False)
    out["nuclei_scored"] = numeric("nuclei_scored", True, 0).astype(int)
    out["nuclei_abnormal"] = numeric("nuclei_abnormal", True, 0).astype(int)
    over = np.flatnonzero(out["nuclei_abnormal"].to_numpy() > out["nuclei_scored"].to_numpy())
    if over.size:
        i = int(over[0])
        raise InputError(source, f"row {lines[i]}, column 'nuclei_abnormal': {out['nuclei_abnormal'][i]} abnormal > "
                                 f"{out['nuclei_scored'][i]} scored nuclei")
    out["timepoint"] = df["timepoint"].astype(str).where(df["timepoint"].notna(), "") if "timepoint" in df else ""
    out["panel"] = df["panel"].astype(str).str.strip().where(df["panel"].notna(), "") if "panel" in df else ""
    blank = np.flatnonzero(out["panel"].to_numpy() == "") if "panel" in df else np.array([], int)
    if 0 < blank.size < len(out):  # a blank cell would make a patient's sample another panel's, silently
        raise InputError(source, f"row {lines[int(blank[0])]}, column 'panel': empty, while other rows name a panel "
                                 f"(e.g. {out['panel'][out['panel'] != ''].iloc[0]!r}); fill it in")
    out["other_positive"] = (df["other_positive"].fillna("").astype(str) if "other_positive" in df else "")
    n = out["nuclei_scored"].to_numpy()
    if cutoffs is None and "cutoff_pct" in df.columns:
        cut = np.array(pd.to_numeric(df["cutoff_pct"], errors="coerce"), dtype=float)
        for i, (v, r) in enumerate(zip(cut, df["cutoff_pct"].tolist())):
            if not pd.isna(r) and (np.isnan(v) or not 0 <= v <= 100):
                raise InputError(source, f"row {lines[i]}, column 'cutoff_pct': expected a percentage 0-100, got {r!r}")
        if "cutoff_validated" in df.columns:
            val = [_bool_value(v, source, lines[i], "cutoff_validated") if not pd.isna(v) else False
                   for i, v in enumerate(df["cutoff_validated"].tolist())]
        else:  # a cut-off typed by the user is taken as the laboratory's own (docs/response.md)
            val = [True] * len(df)
        method = df["cutoff_method"].fillna("").astype(str).tolist() if "cutoff_method" in df else ["from samples table"] * len(df)
        fallback = load_cutoffs(None)
        for i in np.flatnonzero(np.isnan(cut) & (n > 0)):  # N = 0 needs no cut-off (not evaluable)
            cut[i] = cutoff_for_n(fallback.clone, int(n[i]))
            val[i] = False
            method[i] = fallback.label
        out["cutoff_pct"], out["cutoff_validated"], out["cutoff_method"] = cut, val, method
    else:  # one set for every panel, or each panel its own (a mixed-panel study)
        by_panel = cutoffs_by_panel(cutoffs, out["panel"], source, " (samples table column panel)")
        sets = [by_panel[p] for p in out["panel"]]
        out["cutoff_pct"] = [cutoff_for_n(cs.clone, int(k)) if k else math.nan for cs, k in zip(sets, n)]
        out["cutoff_validated"] = [cs.validated for cs in sets]
        out["cutoff_method"] = [cs.label for cs in sets]
    dup = out.duplicated(["panel", "patient", "week"], keep=False)
    if dup.any():
        rows = out.loc[dup]
        first = rows.iloc[0]
        same = rows[(rows["patient"] == first["patient"]) & (rows["week"] == first["week"]) & (rows["panel"] == first["panel"])]
        raise InputError(source, f"rows {', '.join(str(r) for r in same['row'])}: duplicate samples for patient "
                                 f"{first['patient']!r} at week {first['week']:g} (one row per patient and week)")
    return out


# -------------------------------------------------------------------------------------------
# classification
# -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResponseResult:
    """Output of :func:`classify_response`.

    Attributes
    ----------
    patients : DataFrame
        ``response.csv``: one row per patient (× panel), see :func:`classify_response`.
    timepoints : DataFrame
        ``response_timepoints.csv``: one row per sample with its role and category.
    criteria : Criteria
    """

    patients: pd.DataFrame
    timepoints: pd.DataFrame
    criteria: Criteria


def _adequacy(n: int, c: Criteria) -> str:
    return "adequate" if n >= c.adequate_nuclei else "limited" if n >= c.limited_nuclei else "not_evaluable"


def _wk(w: float) -> str:
    return f"{w:g}"


def _split(s: str) -> set[str]:
    return {x for x in str(s).split(";") if x}


def _decrease_p(base: Mapping, r: Mapping) -> float:
    """One-sided Fisher exact p that the follow-up proportion is lower than baseline (R10 strict_stats)."""
    from scipy.stats import fisher_exact

    kb, nb, kf, nf = (int(base["nuclei_abnormal"]), int(base["nuclei_scored"]),
                      int(r["nuclei_abnormal"]), int(r["nuclei_scored"]))
    return float(fisher_exact([[kb, nb - kb], [kf, nf - kf]], alternative="greater")[1])


def _classify_patient(g: pd.DataFrame, c: Criteria, endpoint_week: float, window: float):
    """Return (patient_row: dict, timepoint_rows: list[dict]) for one patient's sorted samples."""
    NE = c.not_evaluable
    flags: list[str] = []
    tps: list[dict] = []
    recs = g.to_dict("records")
    for r in recs:
        n, k = int(r["nuclei_scored"]), int(r["nuclei_abnormal"])
        lo, hi = clopper_pearson(k, n) if n else (math.nan, math.nan)
        r["clone_pct"] = 100.0 * k / n if n else math.nan
        r["ci_low_pct"], r["ci_high_pct"] = 100 * lo, 100 * hi
        r["adequacy"] = _adequacy(n, c)
        r["positive"] = bool(n and r["clone_pct"] > r["cutoff_pct"] + _EPS)
        r["role"], r["category"], r["flags"], r["fraction_of_baseline"] = "", "", [], math.nan
    base_cands = [r for r in recs if r["week"] <= c.baseline_max_week]
    follow = [r for r in recs if r["week"] > c.baseline_max_week]
    base = None
    if base_cands:
        ev = [r for r in base_cands if r["adequacy"] != "not_evaluable"]
        base = (ev or base_cands)[-1]
        for r in base_cands:
            r["role"] = "baseline" if r is base else "pre-baseline"
            r["category"] = ""
    base_ok, status = False, ""
    if base is None:
        status = "baseline missing"
    elif base["adequacy"] == "not_evaluable":
        status = f"baseline inadequate (N={base['nuclei_scored']})"
    elif c.require_positive and not base["positive"]:
        status = "baseline not above cut-off"
    else:
        base_ok, status = True, "evaluable"
        if base["adequacy"] == "limited":
            flags.append(f"limited N at baseline (N={base['nuclei_scored']})")
    if not base_ok:
        flags.append(f"{status}: not evaluable for FISH cytogenetic response")
    B = base["clone_pct"] if base is not None else math.nan
    blocked: set[str] = set()
    if base_ok and c.low_baseline_factor is not None and B < c.low_baseline_factor * base["cutoff_pct"] - _EPS:
        blocked = set(c.low_baseline_blocks)
        if blocked:
            flags.append(f"low baseline; {', '.join(sorted(blocked))} not assessable")
    base_other = _split(base["other_positive"]) if base is not None else set()

    best_rank, best_name, best_week = -1, NE, math.nan
    period_best = NE                  # best category since the start or the last loss event (R11)
    nadir = math.inf                  # lowest clone % since the response began, in this period
    events: list[str] = []
    reported_new: set[str] = set()
    limited_best: list[str] = []      # weeks of classified limited samples, not counted for the best (R12)
    for r in follow:
        r["role"] = "on_treatment"
        F = r["clone_pct"]
        if not base_ok:
            r["category"] = NE
            r["flags"].append("baseline not evaluable")
            continue
        if r["adequacy"] == "not_evaluable":
            r["category"] = NE
            r["flags"].append(f"inadequate N={r['nuclei_scored']} (< {c.limited_nuclei})")
            continue
        r["fraction_of_baseline"] = F / B if B > 0 else math.nan
        new_abn = _split(r["other_positive"]) - base_other
        cat = NE
        undecided = False  # a limited-N sample whose CI does not decide the category (R5): its events still count
        for cand in c.categories:
            if cand.name in blocked:
                continue
            if cand.positive is not None and r["positive"] != cand.positive:
                continue
            if cand.max_fraction_of_baseline is not None and not F <= cand.max_fraction_of_baseline * B + _EPS:
                continue
            if cand.require_no_new_abnormal and new_abn:
                continue
            if cand.significant_decrease_p is not None and not _decrease_p(base, r) < cand.significant_decrease_p:
                continue
            if (cand.limited_ci_must_clear and r["adequacy"] == "limited" and cand.max_fraction_of_baseline is not None
                    and not r["ci_high_pct"] <= cand.max_fraction_of_baseline * B + _EPS):
                r["flags"].append(f"limited N: CI upper {r['ci_high_pct']:.1f}% crosses "
                                  f"{100 * cand.max_fraction_of_baseline:g}% of baseline; {cand.name} not assessable")
                cat, undecided = NE, True
                break
            cat = cand.name
            break
        if r["adequacy"] == "limited":
            r["flags"].append(f"limited N={r['nuclei_scored']}")
            flags.append(f"limited N at week {_wk(r['week'])}")
        if cat == NE and not undecided:
            r["category"] = cat
            continue
        # events use the state before this sample (R11); a sample whose category the CI leaves open still
        # shows a loss of response it plainly has (after major, any sample above the cut-off: R11)
        reset = False
        for e in c.events:
            if e.after and period_best not in e.after:
                continue
            # a limited sample's CI must be unambiguous against the event's threshold (R5): above the cut-off,
            # or above the nadir factor, beyond its CI
            limited = r["adequacy"] == "limited"
            if e.when == "positive":
                hit = r["positive"]
                if hit and limited and not r["ci_low_pct"] > r["cutoff_pct"] + _EPS:
                    hit = False
                    r["flags"].append(f"limited N: CI lower {r['ci_low_pct']:.1f}% reaches the cut-off "
                                      f"{r['cutoff_pct']:.1f}%; {e.name} not assessable")
            elif e.when == "nadir_factor":  # an increase is only measured above the cut-off (a nadir of 0 %)
                hit = math.isfinite(nadir) and F >= e.factor * nadir - _EPS and r["positive"]
                if hit and limited and not r["ci_low_pct"] >= e.factor * nadir - _EPS:
                    hit = False
                    r["flags"].append(f"limited N: CI lower {r['ci_low_pct']:.1f}% reaches {e.factor:g} x the "
                                      f"nadir {nadir:.1f}%; {e.name} not assessable")
            else:
                hit = bool(new_abn - reported_new)
            if not hit:
                continue
            detail = ""
            if e.when == "new_abnormal":
                detail = f" ({', '.join(sorted(new_abn - reported_new))})"
                reported_new |= new_abn
            events.append(f"{e.name}{detail} at week {_wk(r['week'])}")
            r["flags"].append(e.name)
            if e.sets_category is not None:
                cat, reset = e.sets_category, True
        r["category"] = cat
        if cat == NE:  # undecided and no loss of response: neither best response nor nadir
            continue
        if r["adequacy"] == "limited" and not c.best_from_limited and not reset:
            # R12: the best response is the best category over *adequate* samples; a limited sample is classified
            # and shown (and counts for the endpoint) but establishes no response, so neither best nor nadir
            if cat in c.response_categories:
                r["flags"].append("limited N: not counted for the best response (R12)")
            limited_best.append(_wk(r["week"]))
            continue
        rk = c.rank(cat)
        if rk > best_rank:
            best_rank, best_name, best_week = rk, cat, r["week"]
        if reset:
            period_best, nadir = NE, math.inf
        else:
            if c.rank(cat) > c.rank(period_best):
                period_best = cat
            if period_best in c.response_categories:
                nadir = min(nadir, F)
    # best response and its confirmation (R12, R14)
    confirmed = ""
    if base_ok and best_name in c.response_categories and c.confirmation_min_weeks is not None:
        # R14 for every time the best category was reached (a response lost and regained, then held, was a
        # confirmed response): the next adequate sample >= min_weeks later is at least as good, and no
        # evaluable sample in between is worse ("responses must last")
        confirmed = "unconfirmed"
        for i, r0 in enumerate(follow):
            if r0["category"] != best_name:
                continue
            ok = False
            for r in follow[i + 1:]:
                if r["category"] in ("", NE):
                    continue
                if c.rank(r["category"]) < best_rank:
                    break
                if r["week"] >= r0["week"] + c.confirmation_min_weeks - _EPS and r["adequacy"] == "adequate":
                    ok = True
                    break
            if ok:
                confirmed = "confirmed"
                best_week = r0["week"]
                break
    if base_ok and best_rank < 0:
        flags.append("no evaluable on-treatment sample" if not limited_best else
                     f"no adequate on-treatment sample (limited N at week {', '.join(limited_best)}: not counted "
                     "for the best response, R12)")
    # primary endpoint (R12, R13: no imputation)
    ep_cands = [r for r in follow if abs(r["week"] - endpoint_week) <= window + _EPS]
    ep_eval = [r for r in ep_cands if r["category"] not in ("", NE)]
    pick = sorted(ep_eval or ep_cands, key=lambda r: (abs(r["week"] - endpoint_week), -r["week"]))
    ep = pick[0] if pick else None
    if ep is None:
        ep_cat = NE
        flags.append(f"missing endpoint (week {_wk(endpoint_week)} ± {_wk(window)})")
    else:
        ep_cat = ep["category"] or NE
        if base_ok and ep_cat == NE:
            flags.append(f"endpoint sample at week {_wk(ep['week'])} not evaluable")
    validated = bool(all(bool(r["cutoff_validated"]) for r in recs))
    if not validated:
        flags.append(NOT_VALIDATED)
    caveat = FISH_CAVEAT + ("" if validated else f" Note: {NOT_VALIDATED}.")
    first = recs[0]
    prow = {
        "patient": first["patient"], "panel": first["panel"], "criteria": c.id,
        "baseline_week": base["week"] if base is not None else math.nan,
        "baseline_n": base["nuclei_scored"] if base is not None else math.nan,
        "baseline_pct": B,
        "baseline_cutoff_pct": base["cutoff_pct"] if base is not None else math.nan,
        "baseline_status": status,
        "best_response": best_name if base_ok else NE,
        "best_week": best_week if base_ok else math.nan,
        "best_confirmed": confirmed,
        "endpoint_week": ep["week"] if ep is not None else math.nan,
        "endpoint_response": ep_cat if base_ok else NE,
        "endpoint_pct": ep["clone_pct"] if ep is not None else math.nan,
        "responder_best": bool(base_ok and best_name in c.response_categories),
        "responder_endpoint": bool(base_ok and ep_cat in c.response_categories),
        "n_followup": len(follow),
        "last_week": recs[-1]["week"],
        "events": "; ".join(events),
        "flags": "; ".join(dict.fromkeys(flags)),
        "cutoff_validated": validated,
        "caveat": caveat,
    }
    tp_cols = ["patient", "panel", "week", "timepoint", "role", "nuclei_scored", "nuclei_abnormal", "clone_pct",
               "ci_low_pct", "ci_high_pct", "cutoff_pct", "cutoff_validated", "cutoff_method", "positive", "adequacy",
               "fraction_of_baseline", "category", "flags", "row"]
    for r in recs:
        tps.append({k: ("; ".join(r[k]) if k == "flags" else r[k]) for k in tp_cols})
    return prow, tps


def classify_response(
    samples: pd.DataFrame,
    criteria: "str | PathLike | Criteria | None" = None,
    cutoffs: "CutoffSet | str | PathLike | None" = None,
    endpoint_week: float | None = None,
    endpoint_window_weeks: float | None = None,
    source: str = "<samples table>",
) -> ResponseResult:
    """Classify each patient's cytogenetic response over time.

    Parameters
    ----------
    samples : DataFrame
        One row per sample: ``patient`` (str), ``week`` (float, weeks since treatment start;
        baseline ≤ 0), ``nuclei_scored`` (int ≥ 0), ``nuclei_abnormal`` (int, tracked clone);
        optional ``timepoint``, ``panel``, ``cutoff_pct`` (cut-off for this N, %),
        ``cutoff_validated`` (bool), ``cutoff_method``, ``other_positive`` (``;``-joined
        non-tracked abnormal calls above their cut-off), as written by ``samples.csv``.
    criteria : str, path or Criteria, optional
        Criteria set id or file (default ``trial_fish``).
    cutoffs : CutoffSet, path or a sequence of them, optional
        Laboratory cut-offs; when given they override ``cutoff_pct``. Several: one per panel of a
        mixed-panel table (:func:`fishcount.cutoffs.cutoffs_by_panel`). Without either, the
        provisional default is used (flagged "cut-off not validated by this laboratory").
    endpoint_week, endpoint_window_weeks : float, optional
        Override the criteria set's primary endpoint (default 16 ± 2 weeks).
    source : str
        Table name for error messages.

    Returns
    -------
    ResponseResult
        ``patients`` (``response.csv``): ``patient``, ``panel``, ``criteria``, ``baseline_week``,
        ``baseline_n``, ``baseline_pct``, ``baseline_cutoff_pct``, ``baseline_status``,
        ``best_response``, ``best_week``, ``best_confirmed``, ``endpoint_week``,
        ``endpoint_response``, ``endpoint_pct``, ``responder_best``, ``responder_endpoint``,
        ``n_followup``, ``last_week``, ``events``, ``flags``, ``cutoff_validated``, ``caveat``;
        ``timepoints`` (``response_timepoints.csv``): every sample with clone % + CI, cut-off,
        adequacy, role, category and flags. Both sorted by panel, patient, week (row order of
        the input does not matter).

    Raises
    ------
    InputError
        Missing columns, non-numeric or negative values, abnormal > scored, duplicate
        patient-week rows (naming row and column).
    CriteriaError
        Unknown or invalid criteria set.
    """
    c = load_criteria(criteria)
    t = _normalise(samples, cutoffs, source)
    epw = c.endpoint_week if endpoint_week is None else float(endpoint_week)
    win = c.endpoint_window_weeks if endpoint_window_weeks is None else float(endpoint_window_weeks)
    if not math.isfinite(epw):
        raise InputError(None, f"the endpoint week (--endpoint-week, endpoint_week=) must be a finite number of "
                               f"weeks, got {endpoint_week!r}")
    if not (math.isfinite(win) and win >= 0):
        raise InputError(None, f"the endpoint window (--window, endpoint_window_weeks=) must be a finite number of "
                               f"weeks >= 0, got {endpoint_window_weeks!r}")
    t = t.sort_values(["panel", "patient", "week"], kind="mergesort").reset_index(drop=True)
    prows, trows = [], []
    for _, g in t.groupby(["panel", "patient"], sort=True):
        p, tp = _classify_patient(g, c, epw, win)
        prows.append(p)
        trows.extend(tp)
    return ResponseResult(patients=pd.DataFrame(prows), timepoints=pd.DataFrame(trows), criteria=c)


def response_table(samples: pd.DataFrame, criteria=None, cutoffs=None, **kwargs) -> pd.DataFrame:
    """The per-patient ``response.csv`` table only (for joining clinical responses by ``patient``).

    Same parameters as :func:`classify_response`.

    Parameters
    ----------
    samples : DataFrame
        One row per sample: ``patient``, ``week`` (weeks since treatment start; baseline ≤ 0),
        ``nuclei_scored``, ``nuclei_abnormal`` and the optional columns of :func:`classify_response`.
    criteria : str, path-like or Criteria, optional
        Criteria set id or file (default ``trial_fish``; see :func:`load_criteria`).
    cutoffs : CutoffSet, str or path-like, optional
        Laboratory cut-offs (see :func:`load_cutoffs`); without them and without a ``cutoff_pct`` column the
        provisional, non-validated default is used.
    **kwargs
        Passed on to :func:`classify_response`: ``endpoint_week``, ``endpoint_window_weeks`` (float, weeks) and
        ``source`` (table name for error messages).

    Returns
    -------
    DataFrame
        ``ResponseResult.patients``: one row per panel and patient, sorted by panel and patient, with the
        columns listed in :func:`classify_response` (``best_response``, ``endpoint_response``, ...).

    Raises
    ------
    InputError
        Invalid samples table or endpoint (see :func:`classify_response`).
    CriteriaError
        Unknown or invalid criteria set.
    """
    return classify_response(samples, criteria, cutoffs, **kwargs).patients


def _summary_text(res: ResponseResult, source: str) -> str:
    c = res.criteria
    lines = [f"fishcount cytogenetic response ({c.name}; criteria {c.id}, {c.path})", f"input: {source}", ""]
    for p in res.patients.to_dict("records"):
        b = "n/a" if pd.isna(p["baseline_pct"]) else f"{p['baseline_pct']:.1f}%"
        lines.append(f"{p['patient']}{' [' + p['panel'] + ']' if p['panel'] else ''}: baseline {b} ({p['baseline_status']}); "
                     f"best {p['best_response']}"
                     + (f" at week {_wk(p['best_week'])} {p['best_confirmed']}".rstrip() if not pd.isna(p['best_week']) else "")
                     + f"; endpoint {p['endpoint_response']}")
        if p["events"]:
            lines.append(f"    events: {p['events']}")
        if p["flags"]:
            lines.append(f"    flags: {p['flags']}")
    lines += ["", "Caveat: " + FISH_CAVEAT]
    if not res.patients["cutoff_validated"].all():
        lines.append(f"Caveat: {NOT_VALIDATED} (provisional default or unvalidated cut-offs used).")
    lines += ["Sources: " + "; ".join(c.sources)]
    return "\n".join(lines) + "\n"


def write_response(res: ResponseResult, out_dir: str | PathLike, source: str = "", plots: bool = True,
                   overwrite: bool = False) -> list[Path]:
    """Write ``response.csv``, ``response_timepoints.csv``, ``response.txt`` and trajectory plots.

    Every file is written atomically; existing outputs are never overwritten unless ``overwrite``.

    Parameters
    ----------
    res : ResponseResult
        Output of :func:`classify_response`.
    out_dir : str or path-like
        Output directory (created if needed); plots go to its ``plots/`` subdirectory, one PNG per patient
        (and panel).
    source : str, optional
        Name of the input table, printed in ``response.txt``.
    plots : bool, default True
        Also write the per-patient trajectory plots (:func:`fishcount.plots.save_trajectory`).
    overwrite : bool, default False
        Replace existing ``response.csv`` / ``response_timepoints.csv`` / ``response.txt``.

    Returns
    -------
    list of Path
        The files written: the plots (if any), then ``response.csv``, ``response_timepoints.csv``,
        ``response.txt``.

    Raises
    ------
    InputError
        If an output exists and ``overwrite`` is False.
    OSError
        A file cannot be written.
    """
    from ._atomic import staged_files

    out = Path(out_dir)
    targets = [out / "response.csv", out / "response_timepoints.csv", out / "response.txt"]
    if not overwrite:
        for t in targets:
            if t.exists():
                raise InputError(t, "exists already; choose another --out or pass --overwrite")
    jobs = []
    if plots:
        for (panel, patient), tp in res.timepoints.groupby(["panel", "patient"], sort=True):
            prow = res.patients[(res.patients["patient"] == patient) & (res.patients["panel"] == panel)].iloc[0]
            name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{patient}{'_' + panel if panel else ''}")
            jobs.append((tp, prow, out / "plots" / f"{name}.png"))
    # the tables, the text and the plots as one set: a kill or a full disk never leaves a plot of this run beside
    # a table of the last one
    try:
        with staged_files(targets + [j[2] for j in jobs], overwrite=overwrite) as tmp:
            res.patients.to_csv(tmp[0], index=False)
            res.timepoints.to_csv(tmp[1], index=False)
            tmp[2].write_text(_summary_text(res, source), encoding="utf-8")
            if jobs:
                from .plots import save_trajectory

                for (tp, prow, _), t in zip(jobs, tmp[3:]):
                    save_trajectory(tp, prow, t, criteria=res.criteria)
    except FileExistsError as exc:
        raise InputError(exc.filename, "exists already; choose another --out or pass --overwrite") from None
    return [j[2] for j in jobs] + targets
