"""Reviewer corrections: a journal of edits applied to a field's result tables.

Clinical laboratories accept automated interphase FISH scoring only with a person reviewing it
("automated + manual revision"; see ``docs/napari.md``). This module is the review *model*: pure
functions on result tables and a frozen :class:`ReviewState`, no Qt. The napari plugin
(``plugins/napari-fishcount``) is a view over it.

* :func:`start_review` / :func:`open_review` load a field's ``nuclei.csv`` / ``spots.csv``
  (``docs/outputs.md``) and replay the reviewer's journal.
* :func:`confirm`, :func:`set_call`, :func:`mark_unscorable`, :func:`restore_scorable`,
  :func:`add_signal`, :func:`delete_signal`, :func:`move_signal` return a new state whose last
  :class:`ReviewEdit` records who, when, which nucleus and *before -> after*. Signal edits recount
  the nucleus and re-derive pattern and call with :meth:`fishcount.panels.Panel.call_for`.
* :func:`append_journal` appends one edit to the JSON-lines journal atomically (temporary file,
  fsync, rename), so a crash never loses an acknowledged correction; :func:`read_journal` and
  :func:`replay` restore the state on reopening and refuse a journal that does not fit the tables.
* :func:`tally` scores the reviewed table with :func:`fishcount.scoring.score_sample` (clone %,
  Clopper–Pearson exact CI, clinical.md §6.1 R3/R4).
* :func:`review_order` gives the navigation order; a seed shuffles it for blind review.
* :func:`concordance` compares two readers' reviews of the same field: agreement %, Cohen's kappa,
  the confusion table, and a two-sided Fisher exact test of their clone proportions
  (clinical.md §6.1 R5: "If two analysts each score half, compare their proportions (two-sided
  Fisher p < 0.05 ...)" [U/I]).

Example
-------
>>> import pandas as pd, fishcount.review as rv
>>> nuclei = pd.DataFrame({"label": [1, 2], "centroid_y": [10.0, 30.0], "centroid_x": [10.0, 30.0],
...     "area_um2": [50.0, 55.0], "count_EGR1": [2, 1], "count_D5S23": [2, 2],
...     "pattern": ["2O2G", "1O2G"], "call": ["normal", "del5q"], "scorable": [True, True],
...     "exclusion_reason": ["", ""]})
>>> spots = pd.DataFrame({"label": [1, 1, 1, 1, 2, 2, 2], "signal": ["EGR1", "EGR1", "D5S23", "D5S23",
...     "EGR1", "D5S23", "D5S23"], "y": [8., 12, 9, 11, 30, 28, 32], "x": [8., 12, 11, 9, 30, 28, 32],
...     "intensity": [1.0] * 7, "snr": [5.0] * 7})
>>> s = rv.start_review(nuclei, spots, "del5q", field="f01")
>>> s = rv.delete_signal(s, spot_id=0, reviewer="ann")
>>> s.nuclei.loc[s.nuclei.label == 1, ["pattern", "call"]].values.tolist()
[['1O2G', 'del5q']]
>>> s.edits[-1].before["call"], s.edits[-1].after["call"]
('normal', 'del5q')
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ._atomic import atomic_open, write_csv_atomic
from .errors import InputError
from .panels import Panel, load_panel
from .scoring import text_dtypes

__all__ = [
    "JOURNAL_VERSION",
    "ACTIONS",
    "UNSCORABLE",
    "ReviewEdit",
    "ReviewState",
    "ReviewTally",
    "Concordance",
    "start_review",
    "open_review",
    "read_field_tables",
    "confirm",
    "set_call",
    "mark_unscorable",
    "restore_scorable",
    "add_signal",
    "delete_signal",
    "move_signal",
    "apply_edit",
    "replay",
    "journal_path",
    "list_journals",
    "append_journal",
    "read_journal",
    "tally",
    "review_order",
    "next_unreviewed",
    "blind_view",
    "final_calls",
    "concordance",
    "reviewed_tables",
    "write_reviewed",
    "study_fields",
    "apply_reviews",
    "write_reviewed_samples",
    "write_reviewed_response",
    "sample_concordance",
]

#: Version of the journal line format (``"v"`` in every line).
JOURNAL_VERSION = 1
#: Edit actions a journal may contain.
ACTIONS = ("confirm", "set_call", "unscorable", "restore", "add_signal", "delete_signal", "move_signal")
#: Category used for unscorable nuclei when two readers' calls are compared.
UNSCORABLE = "unscorable"
#: Exclusion reasons written by a reviewer start with this prefix.
REVIEWER_REASON_PREFIX = "reviewer: "

_NUCLEI_REQUIRED = ("label", "centroid_y", "centroid_x", "pattern", "call", "scorable", "exclusion_reason")
_SPOTS_REQUIRED = ("label", "signal", "y", "x")
_REVIEWER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_JOURNAL_PREFIX = "review."
_JOURNAL_SUFFIX = ".jsonl"


# -------------------------------------------------------------------------------------------
# data structures
# -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReviewEdit:
    """One reviewer correction, as stored in one journal line.

    Attributes
    ----------
    action : str
        One of :data:`ACTIONS`.
    label : int
        Nucleus label (``nuclei.csv`` ``label``) the edit concerns.
    reviewer : str
        Reviewer name (letters, digits, ``_.-``).
    time : str
        When the edit was made, ISO 8601 UTC (``2026-11-25T17:30:00.123456+00:00``).
    before, after : dict
        The nucleus (and for signal edits the signal) before and after the edit: ``call``,
        ``pattern``, ``scorable``, ``exclusion_reason``, ``counts`` (signal name -> count), and for
        signal edits ``spot_id``, ``signal``, ``y``, ``x`` (pixels).
    field : str
        Field stem the result tables belong to.
    seq : int
        Position of the edit in the journal, from 1.
    """

    action: str
    label: int
    reviewer: str
    time: str
    before: dict
    after: dict
    field: str = ""
    seq: int = 0

    def to_json(self) -> str:
        """One journal line (no newline)."""
        d = {"v": JOURNAL_VERSION, **asdict(self)}
        return json.dumps(d, ensure_ascii=False, sort_keys=True, allow_nan=False)


@dataclass(frozen=True)
class ReviewState:
    """A field's result tables with the corrections applied so far. Never mutated in place.

    Attributes
    ----------
    panel : Panel
        Probe panel the calls follow.
    nuclei : pandas.DataFrame
        The ``nuclei.csv`` table with the corrections applied, plus ``call_auto``,
        ``scorable_auto``, ``exclusion_reason_auto`` (the automated result), ``reviewed`` (bool),
        ``reviewed_by`` (str) and ``corrected`` (bool: call or scorability differs from automated).
    spots : pandas.DataFrame
        The ``spots.csv`` table with the corrections applied, plus ``spot_id`` (int, stable) and
        ``origin`` (``"auto"`` or ``"reviewer"``). Coordinates ``y``, ``x`` in pixels.
    edits : tuple of ReviewEdit
        Edits applied, in order.
    field : str
        Field stem.
    """

    panel: Panel
    nuclei: pd.DataFrame
    spots: pd.DataFrame
    edits: tuple[ReviewEdit, ...] = ()
    field: str = ""

    @property
    def labels(self) -> np.ndarray:
        """Nucleus labels, (N,) int64, in table order."""
        return self.nuclei["label"].to_numpy(dtype=np.int64)

    def nucleus(self, label: int) -> pd.Series:
        """The row of one nucleus; :class:`KeyError` if there is no such label."""
        rows = self.nuclei.index[self.nuclei["label"] == int(label)]
        if len(rows) == 0:
            raise KeyError(f"no nucleus with label {label}")
        return self.nuclei.loc[rows[0]]

    def spots_of(self, label: int) -> pd.DataFrame:
        """Signals assigned to one nucleus."""
        return self.spots[self.spots["label"] == int(label)]


@dataclass(frozen=True)
class ReviewTally:
    """Live tally of a review (what the review widget shows).

    Attributes
    ----------
    n_nuclei, n_reviewed, n_corrected : int
        Nuclei in the field; reviewed so far; whose call or scorability the reviewer changed.
    n_scorable : int
        Scorable nuclei (the denominator N, clinical.md §6.1 R3).
    per_call : dict of str to int
        Scorable nuclei per call (all calls of the panel, zeros included).
    n_unscorable : int
        Nuclei excluded from the denominator.
    clone_count : int
        Scorable nuclei with a tracked call (``panel.tracked_calls``), clinical.md §6.1 R3.
    clone_pct : float
        ``100 * clone_count / n_scorable`` (NaN when nothing is scorable).
    ci_low_pct, ci_high_pct : float
        Clopper–Pearson exact 95 % CI of the clone %, clinical.md §6.1 R4.
    score : object
        The :class:`fishcount.scoring.SampleScore` the numbers come from.
    """

    n_nuclei: int
    n_reviewed: int
    n_corrected: int
    n_scorable: int
    n_unscorable: int
    per_call: dict
    clone_count: int
    clone_pct: float
    ci_low_pct: float
    ci_high_pct: float
    score: Any = field(default=None, repr=False, compare=False)

    def summary(self) -> str:
        """One line, e.g. ``reviewed 12/40 · del5q 5 · normal 30 · clone 12.5% (4.2–26.8) of N=40``."""
        calls = " · ".join(f"{k} {v}" for k, v in self.per_call.items() if v)
        if self.n_scorable:
            clone = f"clone {self.clone_pct:.1f}% ({self.ci_low_pct:.1f}–{self.ci_high_pct:.1f}) of N={self.n_scorable}"
        else:
            clone = "no scorable nuclei"
        return f"reviewed {self.n_reviewed}/{self.n_nuclei} · {calls or 'no calls'} · unscorable {self.n_unscorable} · {clone}"


@dataclass(frozen=True)
class Concordance:
    """Agreement of two readers on the nuclei both reviewed.

    Attributes
    ----------
    n_common : int
        Nuclei reviewed by both readers.
    n_agree : int
        Nuclei given the same final call (``"unscorable"`` counts as a call).
    agreement_pct : float
        ``100 * n_agree / n_common`` (NaN if ``n_common == 0``).
    kappa : float
        Cohen's kappa, ``(p_o - p_e) / (1 - p_e)`` (Cohen 1960, Educ Psychol Meas 20:37); NaN when
        undefined (no common nuclei, or both readers used one and the same category throughout:
        ``p_e == 1``).
    confusion : pandas.DataFrame
        Counts, rows = reader A's call, columns = reader B's call.
    clone_a, clone_b : tuple of int
        ``(clone_count, n_scorable)`` of each reader over the common nuclei.
    fisher_p : float
        Two-sided Fisher exact p of the two clone proportions (clinical.md §6.1 R5 [U/I]: flag for
        a third read when p < 0.05).
    reader_a, reader_b : str
    """

    n_common: int
    n_agree: int
    agreement_pct: float
    kappa: float
    confusion: pd.DataFrame
    clone_a: tuple[int, int]
    clone_b: tuple[int, int]
    fisher_p: float
    reader_a: str = "A"
    reader_b: str = "B"

    def summary(self) -> str:
        """One line for people."""
        k = "undefined" if math.isnan(self.kappa) else f"{self.kappa:.3f}"
        a = "n/a" if math.isnan(self.agreement_pct) else f"{self.agreement_pct:.1f}%"
        return (
            f"{self.reader_a} vs {self.reader_b}: {self.n_agree}/{self.n_common} nuclei agree ({a}), "
            f"Cohen's kappa {k}; clone {self.clone_a[0]}/{self.clone_a[1]} vs {self.clone_b[0]}/{self.clone_b[1]}, "
            f"Fisher exact two-sided p = {self.fisher_p:.3g}"
        )


# -------------------------------------------------------------------------------------------
# loading
# -------------------------------------------------------------------------------------------
def _as_bool(values: pd.Series, source: str, column: str) -> pd.Series:
    if values.dtype == bool:
        return values
    mapping = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)):
            out.append(bool(v))
        elif isinstance(v, (int, np.integer, float, np.floating)) and not (isinstance(v, float) and math.isnan(v)) and v in (0, 1):
            out.append(bool(v))
        elif isinstance(v, str) and v.strip().lower() in mapping:
            out.append(mapping[v.strip().lower()])
        else:
            raise InputError(source, f"column '{column}' must be true/false, found {v!r}")
    return pd.Series(out, index=values.index, dtype=bool)


def _check_nuclei(nuclei: pd.DataFrame, panel: Panel, source: str) -> pd.DataFrame:
    missing = [c for c in _NUCLEI_REQUIRED if c not in nuclei.columns]
    missing += [f"count_{k}" for k in panel.pattern_keys if f"count_{k}" not in nuclei.columns]
    if missing:
        raise InputError(source, f"nuclei table lacks column(s) {', '.join(missing)} (see docs/outputs.md)")
    n = nuclei.copy().reset_index(drop=True)
    try:
        n["label"] = pd.to_numeric(n["label"], errors="raise").astype(np.int64)
    except (ValueError, TypeError):
        raise InputError(source, "column 'label' must hold whole numbers") from None
    if n["label"].duplicated().any():
        dup = sorted(set(n.loc[n["label"].duplicated(), "label"].tolist()))[:5]
        raise InputError(source, f"nucleus label(s) {dup} appear more than once")
    if (n["label"] <= 0).any():
        raise InputError(source, "nucleus labels must be > 0 (0 is background)")
    for k in panel.pattern_keys:
        col = f"count_{k}"
        try:
            n[col] = pd.to_numeric(n[col], errors="raise").astype(np.int64)
        except (ValueError, TypeError):
            raise InputError(source, f"column '{col}' must hold whole numbers") from None
    n["scorable"] = _as_bool(n["scorable"], source, "scorable")
    n["exclusion_reason"] = n["exclusion_reason"].fillna("").astype(str)
    n["call"] = n["call"].fillna("").astype(str)
    n["pattern"] = n["pattern"].fillna("").astype(str)
    unknown = sorted(set(n["call"]) - set(panel.call_names) - {""})
    if unknown:
        raise InputError(source, f"call(s) {unknown} are not calls of panel '{panel.id}' ({', '.join(panel.call_names)})")
    for col, src in (("call_auto", "call"), ("scorable_auto", "scorable"), ("exclusion_reason_auto", "exclusion_reason")):
        if col not in n.columns:
            n[col] = n[src]
    n["scorable_auto"] = _as_bool(n["scorable_auto"], source, "scorable_auto")
    n["exclusion_reason_auto"] = n["exclusion_reason_auto"].fillna("").astype(str)
    n["reviewed"] = _as_bool(n["reviewed"], source, "reviewed") if "reviewed" in n.columns else False
    n["reviewed_by"] = n["reviewed_by"].fillna("").astype(str) if "reviewed_by" in n.columns else ""
    n["corrected"] = (n["call"] != n["call_auto"]) | (n["scorable"] != n["scorable_auto"])
    return n


def _check_spots(spots: pd.DataFrame, labels: set[int], panel: Panel, source: str) -> pd.DataFrame:
    missing = [c for c in _SPOTS_REQUIRED if c not in spots.columns]
    if missing:
        raise InputError(source, f"spots table lacks column(s) {', '.join(missing)} (see docs/outputs.md)")
    s = spots.copy().reset_index(drop=True)
    try:
        s["label"] = pd.to_numeric(s["label"], errors="raise").astype(np.int64)
        s["y"] = pd.to_numeric(s["y"], errors="raise").astype(float)
        s["x"] = pd.to_numeric(s["x"], errors="raise").astype(float)
    except (ValueError, TypeError):
        raise InputError(source, "spots columns label, y, x must be numbers") from None
    s["signal"] = s["signal"].astype(str)
    bad = sorted(set(s["signal"]) - set(panel.signal_names))
    if bad:
        raise InputError(source, f"signal(s) {bad} are not signals of panel '{panel.id}' ({', '.join(panel.signal_names)})")
    if "spot_id" not in s.columns:
        s.insert(0, "spot_id", np.arange(len(s), dtype=np.int64))
    else:
        s["spot_id"] = pd.to_numeric(s["spot_id"], errors="raise").astype(np.int64)
        if s["spot_id"].duplicated().any():
            raise InputError(source, "column 'spot_id' has duplicate values")
    if "origin" not in s.columns:
        s["origin"] = "auto"
    return s


def start_review(
    nuclei: pd.DataFrame,
    spots: pd.DataFrame,
    panel: "str | Path | Panel | None" = None,
    field: str = "",
    source: str = "<tables>",
) -> ReviewState:
    """Start reviewing a field from its result tables (no edits applied yet).

    Parameters
    ----------
    nuclei : pandas.DataFrame
        ``nuclei.csv`` table: ``label, centroid_y, centroid_x, area_um2, count_<SIGNAL>...,
        pattern, call, scorable, exclusion_reason`` (docs/outputs.md). Extra columns are kept.
    spots : pandas.DataFrame
        ``spots.csv`` table: ``label, signal, y, x, intensity, snr`` (pixels). Rows with label 0
        (outside every nucleus) are kept but never counted.
    panel : str, path or Panel, optional
        Probe panel (default del5q).
    field : str
        Field stem, written into every journal line.
    source : str
        Name used in error messages (the folder the tables came from).

    Returns
    -------
    ReviewState

    Raises
    ------
    InputError
        If a required column is missing, a value has the wrong type, labels repeat, or a call or
        signal is not part of the panel.
    """
    panel = load_panel(panel)
    n = _check_nuclei(nuclei, panel, source)
    s = _check_spots(spots, set(n["label"].tolist()), panel, source)
    return ReviewState(panel=panel, nuclei=n, spots=s, edits=(), field=str(field))


def read_field_tables(folder: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read ``nuclei.csv`` and ``spots.csv`` of one field result folder.

    Raises
    ------
    InputError
        If the folder or a table is missing or unreadable.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder of field results (expected nuclei.csv and spots.csv)")
    tables = []
    for name in ("nuclei.csv", "spots.csv"):
        p = folder / name
        if not p.is_file():
            raise InputError(p, "missing; is this a fishcount field result folder?")
        try:
            tables.append(pd.read_csv(p, keep_default_na=False, na_values=[""], dtype=text_dtypes()))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputError(p, f"cannot read table ({str(exc).splitlines()[0]})") from None
    return tables[0], tables[1]


def field_panel(folder: str | os.PathLike) -> "str | None":
    """The panel a field result folder was analysed with (``field.json`` ``panel``: its file when it still exists,
    else its id); None when the folder does not say (then the default panel is used)."""
    try:
        meta = json.loads((Path(folder) / "field.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pan = meta.get("panel") if isinstance(meta, dict) else None
    if isinstance(pan, dict):
        path = pan.get("path")
        if isinstance(path, str) and path and Path(path).is_file():
            return path
        return pan.get("id") if isinstance(pan.get("id"), str) and pan.get("id") else None
    return pan if isinstance(pan, str) and pan else None


def open_review(
    folder: str | os.PathLike,
    reviewer: str,
    panel: "str | Path | Panel | None" = None,
    field: str | None = None,
) -> ReviewState:
    """Open a field result folder for review and replay the reviewer's journal, if any.

    Parameters
    ----------
    folder : path
        Field result folder holding ``nuclei.csv`` and ``spots.csv``.
    reviewer : str
        Reviewer name; the journal is ``<folder>/review.<reviewer>.jsonl``.
    panel : str, path or Panel, optional
        Default: the panel the field was analysed with (:func:`field_panel`), else del(5q).
    field : str, optional
        Field stem (default: the folder name).

    Returns
    -------
    ReviewState
        With every journalled edit applied.
    """
    folder = Path(folder)
    if panel is None:
        panel = field_panel(folder)
    nuclei, spots = read_field_tables(folder)
    state = start_review(nuclei, spots, panel, field=folder.name if field is None else field, source=str(folder))
    path = journal_path(folder, reviewer)
    if path.exists():
        state = replay(state, read_journal(path), source=str(path))
    return state


# -------------------------------------------------------------------------------------------
# edits
# -------------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _check_reviewer(reviewer: str) -> str:
    r = str(reviewer).strip()
    if not _REVIEWER_RE.match(r):
        raise InputError(
            "reviewer", f"name {reviewer!r} must be 1-64 letters, digits, '_', '.' or '-' (it names the journal file)"
        )
    return r


def _row_index(state: ReviewState, label: int) -> int:
    idx = state.nuclei.index[state.nuclei["label"] == int(label)]
    if len(idx) == 0:
        raise InputError(state.field or "review", f"no nucleus with label {label}")
    return int(idx[0])


def _snapshot(state: ReviewState, label: int) -> dict:
    row = state.nuclei.loc[_row_index(state, label)]
    return {
        "call": str(row["call"]),
        "pattern": str(row["pattern"]),
        "scorable": bool(row["scorable"]),
        "exclusion_reason": str(row["exclusion_reason"]),
        "counts": {k: int(row[f"count_{k}"]) for k in state.panel.pattern_keys},
    }


#: Exclusion reasons that :func:`fishcount.calls.call_nuclei` derives from the signals (recomputed
#: after a signal edit). ``dim_signals`` is kept: a reviewer clears it explicitly with Restore.
_SIGNAL_REASON_PREFIXES = ("no_signal_", "too_many_signals")


def _split_reasons(reason: str) -> list[str]:
    return [r for r in str(reason).split(";") if r.strip()]


def _recount(state: ReviewState, nuclei: pd.DataFrame, spots: pd.DataFrame, label: int) -> pd.DataFrame:
    """Recount one nucleus with :func:`fishcount.calls.call_nuclei` (counts from ``counts_as``, pattern
    and call from the panel, the signal exclusion rules of clinical.md §3.2 / §6.1 R1).

    Segmentation QC reasons, ``dim_signals`` and a reviewer's own exclusion survive the recount;
    ``no_signal_<SIGNAL>`` and ``too_many_signals`` follow the new counts.
    """
    from .calls import call_nuclei

    panel = state.panel
    i = int(nuclei.index[nuclei["label"] == int(label)][0])
    kept = [r for r in _split_reasons(nuclei.at[i, "exclusion_reason"]) if not r.startswith(_SIGNAL_REASON_PREFIXES)]
    qc_reasons = [r for r in kept if r != "dim_signals"]
    qc = pd.DataFrame({"label": [int(label)], "scorable": [not qc_reasons], "exclusion_reason": [";".join(qc_reasons)]})
    sig = spots[spots["label"] == int(label)]
    if "counts_as" not in sig.columns:
        sig = sig.assign(counts_as=sig["signal"])
    sig = sig.assign(counts_as=sig["counts_as"].fillna("").astype(str))
    row = call_nuclei(qc, sig, panel, dim_labels=[int(label)] if "dim_signals" in kept else []).iloc[0]
    nuclei = nuclei.copy()
    for k in panel.pattern_keys:
        nuclei.at[i, f"count_{k}"] = int(row[f"count_{k}"])
    for c in ("pattern", "call", "exclusion_reason"):
        nuclei.at[i, c] = str(row[c])
    nuclei.at[i, "scorable"] = bool(row["scorable"])
    return nuclei


def _finish(state: ReviewState, nuclei: pd.DataFrame, spots: pd.DataFrame, edit: ReviewEdit) -> ReviewState:
    i = int(nuclei.index[nuclei["label"] == edit.label][0])
    nuclei.at[i, "reviewed"] = True
    nuclei.at[i, "reviewed_by"] = edit.reviewer
    nuclei["corrected"] = (nuclei["call"] != nuclei["call_auto"]) | (nuclei["scorable"] != nuclei["scorable_auto"])
    edit = replace(edit, seq=len(state.edits) + 1, field=edit.field or state.field)
    return replace(state, nuclei=nuclei, spots=spots, edits=state.edits + (edit,))


def _edit(state, action, label, reviewer, before, after, time) -> ReviewEdit:
    return ReviewEdit(
        action=action, label=int(label), reviewer=_check_reviewer(reviewer), time=time or _now(),
        before=before, after=after, field=state.field,
    )


def confirm(state: ReviewState, label: int, reviewer: str, time: str | None = None) -> ReviewState:
    """Mark a nucleus reviewed, its call accepted as it is."""
    snap = _snapshot(state, label)
    e = _edit(state, "confirm", label, reviewer, snap, snap, time)
    return _finish(state, state.nuclei.copy(), state.spots, e)


def set_call(state: ReviewState, label: int, call: str, reviewer: str, time: str | None = None) -> ReviewState:
    """Override the call of a nucleus (counts unchanged; the nucleus becomes scorable).

    Raises
    ------
    InputError
        If ``call`` is not a call of the panel.
    """
    if call not in state.panel.call_names:
        raise InputError(state.field or "review", f"{call!r} is not a call of panel '{state.panel.id}' ({', '.join(state.panel.call_names)})")
    before = _snapshot(state, label)
    n = state.nuclei.copy()
    i = _row_index(state, label)
    n.at[i, "call"] = call
    n.at[i, "scorable"] = True
    n.at[i, "exclusion_reason"] = ""
    after = {**before, "call": call, "scorable": True, "exclusion_reason": ""}
    e = _edit(state, "set_call", label, reviewer, before, after, time)
    return _finish(state, n, state.spots, e)


def mark_unscorable(state: ReviewState, label: int, reason: str, reviewer: str, time: str | None = None) -> ReviewState:
    """Exclude a nucleus from the denominator, with the reviewer's reason (e.g. ``"overlapping"``).

    The stored ``exclusion_reason`` is ``"reviewer: <reason>"`` so it survives later recounts.
    """
    reason = " ".join(str(reason).replace(";", ",").split())  # ';' separates reasons in nuclei.csv
    if not reason:
        raise InputError(state.field or "review", "give a reason when marking a nucleus unscorable")
    before = _snapshot(state, label)
    n = state.nuclei.copy()
    i = _row_index(state, label)
    full = reason if reason.startswith(REVIEWER_REASON_PREFIX) else REVIEWER_REASON_PREFIX + reason
    n.at[i, "scorable"] = False
    n.at[i, "exclusion_reason"] = full
    after = {**before, "scorable": False, "exclusion_reason": full}
    e = _edit(state, "unscorable", label, reviewer, before, after, time)
    return _finish(state, n, state.spots, e)


_COUNT_EDITS = ("add_signal", "delete_signal", "move_signal")


def restore_scorable(state: ReviewState, label: int, reviewer: str, time: str | None = None,
                     call: str | None = None) -> ReviewState:
    """Undo an exclusion: the nucleus is scorable again, with the call a reviewer set for it (``set_call``
    after its last recount: an exclusion does not undo it), else the call its counts give. ``call``: the
    call to restore to (a journal's replay gives the recorded one)."""
    before = _snapshot(state, label)
    n = state.nuclei.copy()
    i = _row_index(state, label)
    counts = before["counts"]
    if call is None:
        last = next((e for e in reversed(state.edits) if e.label == int(label)
                     and e.action in ("set_call", *_COUNT_EDITS)), None)
        call = before["call"] if last is not None and last.action == "set_call" else state.panel.call_for(counts)
    n.at[i, "scorable"] = True
    n.at[i, "exclusion_reason"] = ""
    n.at[i, "call"] = call
    n.at[i, "pattern"] = state.panel.pattern_string(counts)
    after = {**before, "scorable": True, "exclusion_reason": "", "call": n.at[i, "call"], "pattern": n.at[i, "pattern"]}
    e = _edit(state, "restore", label, reviewer, before, after, time)
    return _finish(state, n, state.spots, e)


def _spot_row(state: ReviewState, spot_id: int) -> int:
    idx = state.spots.index[state.spots["spot_id"] == int(spot_id)]
    if len(idx) == 0:
        raise InputError(state.field or "review", f"no signal with spot_id {spot_id}")
    return int(idx[0])


def _spot_dict(row: pd.Series) -> dict:
    return {"spot_id": int(row["spot_id"]), "signal": str(row["signal"]), "y": float(row["y"]), "x": float(row["x"])}


def add_signal(
    state: ReviewState, label: int, signal: str, y: float, x: float, reviewer: str,
    time: str | None = None, spot_id: int | None = None,
) -> ReviewState:
    """Add a signal the detector missed to a nucleus (``y``, ``x`` in pixels); recount and recall.

    Raises
    ------
    InputError
        If ``signal`` is not a signal of the panel or the nucleus does not exist.
    """
    if signal not in state.panel.signal_names:
        raise InputError(state.field or "review", f"{signal!r} is not a signal of panel '{state.panel.id}' ({', '.join(state.panel.signal_names)})")
    before = _snapshot(state, label)
    sid = int(spot_id) if spot_id is not None else (int(state.spots["spot_id"].max()) + 1 if len(state.spots) else 0)
    if (state.spots["spot_id"] == sid).any():
        raise InputError(state.field or "review", f"spot_id {sid} already exists")
    row = {c: np.nan for c in state.spots.columns}
    row.update({"spot_id": sid, "label": int(label), "signal": signal, "y": float(y), "x": float(x), "origin": "reviewer"})
    # a reviewer-added signal counts as one signal of its colour (the reviewer has applied the
    # split-signal rule by eye); it is its own merge group and not fused
    for col, val in (("counts_as", signal), ("group_id", sid), ("n_merged", 1), ("merge", ""), ("fusion_partner", -1)):
        if col in row:
            row[col] = val
    spots = pd.concat([state.spots, pd.DataFrame([row], columns=state.spots.columns)], ignore_index=True)
    spots["spot_id"] = spots["spot_id"].astype(np.int64)
    spots["label"] = spots["label"].astype(np.int64)
    n = _recount(state, state.nuclei, spots, label)
    tmp = replace(state, nuclei=n, spots=spots)
    after = {**_snapshot(tmp, label), "spot_id": sid, "signal": signal, "y": float(y), "x": float(x)}
    e = _edit(state, "add_signal", label, reviewer, before, after, time)
    return _finish(state, n, spots, e)


def delete_signal(state: ReviewState, spot_id: int, reviewer: str, time: str | None = None) -> ReviewState:
    """Delete a false signal (by ``spot_id``); recount and recall its nucleus.

    The whole merge group of the signal goes (the signals shown as one, ``group_id`` of
    ``spots.csv``). If the signal was fused, its partner becomes an ordinary signal of its colour.
    """
    j = _spot_row(state, spot_id)
    spot = _spot_dict(state.spots.loc[j])
    label = int(state.spots.at[j, "label"])
    if label == 0:
        raise InputError(state.field or "review", f"signal {spot_id} lies outside every nucleus")
    before = {**_snapshot(state, label), **spot}
    spots = state.spots.copy()
    drop = spots["spot_id"] == int(spot_id)
    if "group_id" in spots.columns:
        gid = int(spots.at[j, "group_id"])
        if gid >= 0:
            drop |= (spots["group_id"] == gid) & (spots["label"] == label) & (spots["signal"] == spot["signal"])
    if "fusion_partner" in spots.columns:
        partners = set(int(v) for v in spots.loc[drop, "fusion_partner"] if int(v) >= 0)
        freed = spots["spot_id"].isin(partners) & ~drop
        for k in spots.index[freed]:
            spots.at[k, "fusion_partner"] = -1
            if "counts_as" in spots.columns:
                spots.at[k, "counts_as"] = spots.at[k, "signal"]
    spots = spots[~drop].reset_index(drop=True)
    n = _recount(state, state.nuclei, spots, label)
    after = {**_snapshot(replace(state, nuclei=n, spots=spots), label), "spot_id": spot["spot_id"]}
    e = _edit(state, "delete_signal", label, reviewer, before, after, time)
    return _finish(state, n, spots, e)


def move_signal(
    state: ReviewState, spot_id: int, y: float, x: float, reviewer: str, time: str | None = None
) -> ReviewState:
    """Move a signal to ``(y, x)`` pixels within its nucleus; recount and recall the nucleus."""
    j = _spot_row(state, spot_id)
    spot = _spot_dict(state.spots.loc[j])
    label = int(state.spots.at[j, "label"])
    if label == 0:
        raise InputError(state.field or "review", f"signal {spot_id} lies outside every nucleus")
    before = {**_snapshot(state, label), **spot}
    spots = state.spots.copy()
    spots.at[j, "y"] = float(y)
    spots.at[j, "x"] = float(x)
    n = _recount(state, state.nuclei, spots, label)
    after = {**_snapshot(replace(state, nuclei=n, spots=spots), label), **spot, "y": float(y), "x": float(x)}
    e = _edit(state, "move_signal", label, reviewer, before, after, time)
    return _finish(state, n, spots, e)


def apply_edit(state: ReviewState, edit: ReviewEdit, source: str = "journal") -> ReviewState:
    """Re-apply a recorded edit, checking that the state matches its ``before``.

    Raises
    ------
    InputError
        If the nucleus or signal does not exist or its state differs from the edit's ``before``
        (the journal belongs to other tables, e.g. the field was re-analysed after the review).
    """
    where = f"{source} edit {edit.seq or len(state.edits) + 1}"
    if edit.action not in ACTIONS:
        raise InputError(source, f"edit {edit.seq}: unknown action {edit.action!r}")
    try:
        current = _snapshot(state, edit.label)
    except InputError:
        raise InputError(source, f"edit {edit.seq}: nucleus {edit.label} is not in the result tables") from None
    for key in ("call", "scorable", "counts"):
        if key in edit.before and edit.before[key] != current[key]:
            raise InputError(
                source,
                f"edit {edit.seq} ({edit.action}, nucleus {edit.label}) expects {key}={edit.before[key]!r} but the "
                f"tables say {current[key]!r}: the journal does not fit these results (re-analysed after review?)",
            )
    a, b = edit.after, edit.before
    try:
        if edit.action == "confirm":
            new = confirm(state, edit.label, edit.reviewer, edit.time)
        elif edit.action == "set_call":
            new = set_call(state, edit.label, a["call"], edit.reviewer, edit.time)
        elif edit.action == "unscorable":
            new = mark_unscorable(state, edit.label, a["exclusion_reason"], edit.reviewer, edit.time)
        elif edit.action == "restore":
            new = restore_scorable(state, edit.label, edit.reviewer, edit.time, call=a.get("call"))
        elif edit.action == "add_signal":
            new = add_signal(state, edit.label, a["signal"], a["y"], a["x"], edit.reviewer, edit.time, spot_id=a["spot_id"])
        elif edit.action == "delete_signal":
            new = delete_signal(state, b["spot_id"], edit.reviewer, edit.time)
        else:  # move_signal
            new = move_signal(state, b["spot_id"], a["y"], a["x"], edit.reviewer, edit.time)
    except KeyError as exc:
        raise InputError(source, f"edit {edit.seq}: missing field {exc} in '{edit.action}'") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(source, f"edit {edit.seq}: bad value in '{edit.action}' ({exc})") from None
    except InputError as exc:
        raise InputError(source, f"{where}: {exc.reason}") from None
    # keep the recorded identity of the edit (seq, field), not the replayed one
    rec = replace(new.edits[-1], seq=edit.seq or new.edits[-1].seq, field=edit.field or new.edits[-1].field)
    return replace(new, edits=new.edits[:-1] + (rec,))


def replay(state: ReviewState, edits: Iterable[ReviewEdit], source: str = "journal") -> ReviewState:
    """Apply recorded edits in order (see :func:`apply_edit`)."""
    for e in edits:
        state = apply_edit(state, e, source=source)
    return state


# -------------------------------------------------------------------------------------------
# the journal
# -------------------------------------------------------------------------------------------
def journal_path(folder: str | os.PathLike, reviewer: str) -> Path:
    """``<folder>/review.<reviewer>.jsonl``: one journal per reviewer beside the field's results."""
    return Path(folder) / f"{_JOURNAL_PREFIX}{_check_reviewer(reviewer)}{_JOURNAL_SUFFIX}"


def list_journals(folder: str | os.PathLike) -> dict[str, Path]:
    """Reviewer name -> journal path for every journal in a field result folder."""
    out = {}
    for p in sorted(Path(folder).glob(f"{_JOURNAL_PREFIX}*{_JOURNAL_SUFFIX}")):
        name = p.name[len(_JOURNAL_PREFIX):-len(_JOURNAL_SUFFIX)]
        if _REVIEWER_RE.match(name):
            out[name] = p
    return out


def append_journal(path: str | os.PathLike, edit: ReviewEdit) -> None:
    """Append one edit to a journal, atomically: the old lines plus the new one are written to a
    temporary file, fsynced and renamed over the journal, so the file on disk always holds every
    acknowledged edit, whole (never a half line). Existing lines are never changed.

    Raises
    ------
    InputError
        If the journal exists but does not end with a complete line (it was edited by hand), or
        holds another number of edits than ``edit.seq - 1`` (another session wrote to it).
    """
    path = Path(path)
    if not path.parent.is_dir():  # the field folder was moved or removed: never a journal in a new empty folder
        raise InputError(path.parent, "the field folder is gone (moved or removed?); reopen the field where it is now")
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        raise InputError(path, "journal does not end with a complete line; refusing to append")
    n_old = sum(1 for line in old.splitlines() if line.strip())
    if edit.seq and n_old != edit.seq - 1:
        raise InputError(
            path, f"journal holds {n_old} edits but this is edit {edit.seq}: another session wrote to it; "
                  "reopen the field to continue from the journal"
        )
    with atomic_open(path, "wb") as fh:
        fh.write(old)
        fh.write(edit.to_json().encode("utf-8") + b"\n")
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - directories cannot be fsynced on some filesystems
        pass


def read_journal(path: str | os.PathLike) -> list[ReviewEdit]:
    """Read a journal written by :func:`append_journal`.

    Raises
    ------
    InputError
        Naming the file and line, if a line is not valid JSON, has another format version, or
        lacks a field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "review journal not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read review journal ({exc})") from None
    edits = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(path, f"line {i} is not valid JSON ({exc.msg})") from None
        if not isinstance(d, dict):
            raise InputError(path, f"line {i} is not a JSON object")
        if d.get("v") != JOURNAL_VERSION:
            raise InputError(path, f"line {i}: journal format version {d.get('v')!r}, this fishcount reads {JOURNAL_VERSION}")
        try:
            e = ReviewEdit(
                action=str(d["action"]), label=int(d["label"]), reviewer=str(d["reviewer"]), time=str(d["time"]),
                before=dict(d["before"]), after=dict(d["after"]), field=str(d.get("field", "")), seq=int(d.get("seq", i)),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise InputError(path, f"line {i} lacks or has a bad field ({exc})") from None
        if e.action not in ACTIONS:
            raise InputError(path, f"line {i}: unknown action {e.action!r}")
        edits.append(e)
    return edits


# -------------------------------------------------------------------------------------------
# tally, navigation, blind mode
# -------------------------------------------------------------------------------------------
def tally(state: ReviewState) -> ReviewTally:
    """Score the reviewed table the way the library scores samples.

    Clone count, N, clone % and its Clopper–Pearson 95 % CI come from
    :func:`fishcount.scoring.score_sample` on the current (reviewed) nuclei table, so the tally is
    exactly what ``samples.csv`` will say after the review (clinical.md §6.1 R3, R4).
    """
    from .scoring import score_sample

    n = state.nuclei
    score = score_sample(n, state.panel, source=state.field or "review")
    per_call = {c: int(score.call_counts.get(c, 0)) for c in state.panel.call_names}
    return ReviewTally(
        n_nuclei=int(len(n)),
        n_reviewed=int(n["reviewed"].sum()),
        n_corrected=int(n["corrected"].sum()),
        n_scorable=int(score.nuclei_scored),
        n_unscorable=int(score.nuclei_total - score.nuclei_scored),
        per_call=per_call,
        clone_count=int(score.nuclei_abnormal),
        clone_pct=float(score.clone_pct),
        ci_low_pct=float(score.ci_low_pct),
        ci_high_pct=float(score.ci_high_pct),
        score=score,
    )


def review_order(labels: Sequence[int] | np.ndarray, seed: int | None = None) -> np.ndarray:
    """Order in which to visit nuclei: ascending labels, or a reproducible shuffle for blind review.

    Parameters
    ----------
    labels : sequence of int
    seed : int or None
        ``None`` = ascending; an int = ``numpy.random.default_rng(seed).permutation`` of the
        ascending labels (the same seed always gives the same order).

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
    """
    arr = np.sort(np.asarray(labels, dtype=np.int64))
    if seed is None:
        return arr
    return np.random.default_rng(int(seed)).permutation(arr)


def next_unreviewed(state: ReviewState, order: Sequence[int], current: int | None = None) -> int | None:
    """The next nucleus in ``order`` after ``current`` (wrapping around) not yet reviewed, or None."""
    order = [int(v) for v in order]
    if not order:
        return None
    reviewed = dict(zip(state.nuclei["label"].astype(int), state.nuclei["reviewed"].astype(bool)))
    start = order.index(int(current)) + 1 if current is not None and int(current) in order else 0
    for k in range(len(order)):
        lab = order[(start + k) % len(order)]
        if not reviewed.get(lab, True):
            return lab
    return None


#: Columns that reveal the automated or another reader's calls; hidden in blind mode.
BLIND_HIDDEN = ("pattern", "call", "call_auto", "scorable_auto", "exclusion_reason_auto", "corrected", "reviewed_by")


def blind_view(nuclei: pd.DataFrame) -> pd.DataFrame:
    """The nuclei table with calls and patterns removed (what a blind second reader may see)."""
    return nuclei.drop(columns=[c for c in BLIND_HIDDEN if c in nuclei.columns])


# -------------------------------------------------------------------------------------------
# two readers
# -------------------------------------------------------------------------------------------
def final_calls(nuclei: pd.DataFrame) -> pd.Series:
    """Call per label after review, with :data:`UNSCORABLE` for excluded nuclei."""
    calls = nuclei["call"].where(nuclei["scorable"].astype(bool), UNSCORABLE)
    return pd.Series(calls.to_numpy(), index=nuclei["label"].astype(np.int64).to_numpy(), name="call")


def concordance(
    a: "ReviewState | pd.DataFrame",
    b: "ReviewState | pd.DataFrame",
    panel: "str | Path | Panel | None" = None,
    reader_a: str = "A",
    reader_b: str = "B",
    reviewed_only: bool = True,
) -> Concordance:
    """Agreement of two readers on the same field.

    Parameters
    ----------
    a, b : ReviewState or pandas.DataFrame
        Each reader's reviewed state (or reviewed nuclei table with ``label``, ``call``,
        ``scorable`` and ``reviewed`` columns).
    panel : optional
        Panel for the tracked (clone) calls; taken from ``a`` when it is a ReviewState.
    reviewed_only : bool
        Compare only nuclei both readers reviewed (default); False compares every common label.

    Returns
    -------
    Concordance
    """
    from scipy.stats import fisher_exact

    if isinstance(a, ReviewState):
        panel = a.panel if panel is None else panel
        a = a.nuclei
    if isinstance(b, ReviewState):
        b = b.nuclei
    panel = load_panel(panel)
    ca, cb = final_calls(a), final_calls(b)
    common = ca.index.intersection(cb.index)
    if reviewed_only:
        ra = pd.Series(a["reviewed"].astype(bool).to_numpy(), index=a["label"].astype(np.int64).to_numpy())
        rb = pd.Series(b["reviewed"].astype(bool).to_numpy(), index=b["label"].astype(np.int64).to_numpy())
        common = common[ra.reindex(common).to_numpy() & rb.reindex(common).to_numpy()]
    xa, xb = ca.reindex(common).astype(str), cb.reindex(common).astype(str)
    cats = [c for c in list(panel.call_names) + [UNSCORABLE] if c in set(xa) | set(xb)]
    cats += sorted((set(xa) | set(xb)) - set(cats))
    conf = pd.crosstab(
        pd.Categorical(xa, categories=cats), pd.Categorical(xb, categories=cats), dropna=False
    ).reindex(index=cats, columns=cats, fill_value=0)
    conf.index.name, conf.columns.name = reader_a, reader_b
    n = int(len(common))
    agree = int((xa.to_numpy() == xb.to_numpy()).sum())
    if n == 0:
        po, kappa = float("nan"), float("nan")
    else:
        po = agree / n
        pa = conf.sum(axis=1).to_numpy() / n
        pb = conf.sum(axis=0).to_numpy() / n
        pe = float((pa * pb).sum())
        kappa = float("nan") if math.isclose(pe, 1.0) else (po - pe) / (1.0 - pe)
    tracked = set(panel.tracked_calls)

    def clone(x: pd.Series) -> tuple[int, int]:
        sc = x[x != UNSCORABLE]
        return int(sc.isin(tracked).sum()), int(len(sc))

    cl_a, cl_b = clone(xa), clone(xb)
    if cl_a[1] and cl_b[1]:
        table = [[cl_a[0], cl_a[1] - cl_a[0]], [cl_b[0], cl_b[1] - cl_b[0]]]
        p = float(fisher_exact(table, alternative="two-sided")[1])
    else:
        p = float("nan")
    return Concordance(
        n_common=n, n_agree=agree, agreement_pct=100.0 * po if n else float("nan"), kappa=kappa,
        confusion=conf, clone_a=cl_a, clone_b=cl_b, fisher_p=p, reader_a=reader_a, reader_b=reader_b,
    )


# -------------------------------------------------------------------------------------------
# output
# -------------------------------------------------------------------------------------------
def reviewed_tables(state: ReviewState) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reviewed ``nuclei`` and ``spots`` tables (contract columns first, review columns after)."""
    return state.nuclei.copy(), state.spots.copy()


def write_reviewed(state: ReviewState, folder: str | os.PathLike, reviewer: str, overwrite: bool = True) -> tuple[Path, Path]:
    """Write ``nuclei.reviewed.<reviewer>.csv`` and ``spots.reviewed.<reviewer>.csv`` atomically.

    These are derived files (the journal is the record); they are rewritten from the journal
    state each time unless ``overwrite`` is False.

    Raises
    ------
    InputError
        If ``overwrite`` is False and a file exists.
    """
    folder = Path(folder)
    r = _check_reviewer(reviewer)
    pn, ps = folder / f"nuclei.reviewed.{r}.csv", folder / f"spots.reviewed.{r}.csv"
    if not overwrite:
        for p in (pn, ps):
            if p.exists():
                raise InputError(p, "exists; not overwritten")
    n, s = reviewed_tables(state)
    write_csv_atomic(n, pn)
    write_csv_atomic(s, ps)
    return pn, ps


# -------------------------------------------------------------------------------------------
# a whole study (``fishcount run`` output folder)
# -------------------------------------------------------------------------------------------
#: Nucleus columns a review may change (copied from reviewed tables into pooled tables).
_REVIEWED_COLUMNS = ("pattern", "call", "scorable", "exclusion_reason")


def study_fields(run_dir: str | os.PathLike) -> dict[str, Path]:
    """Field key -> field result folder of a ``fishcount run`` output folder (``fields/<key>/``)."""
    root = Path(run_dir) / "fields"
    out = {}
    if root.is_dir():
        for p in sorted(root.rglob("nuclei.csv")):
            if (p.parent / "spots.csv").is_file():
                out[p.parent.relative_to(root).as_posix()] = p.parent
    return out


def apply_reviews(pooled: pd.DataFrame, run_dir: str | os.PathLike, reviewer: str,
                  panel: "str | Path | Panel | None" = None) -> tuple[pd.DataFrame, list[str]]:
    """Replace the rows of reviewed fields in a pooled ``nuclei.csv`` by the reviewer's corrections.

    Parameters
    ----------
    pooled : pandas.DataFrame
        The run's pooled nuclei table (``field`` and ``label`` columns; docs/batch.md).
    run_dir : path
        The ``fishcount run`` output folder.
    reviewer : str
        Whose journals to apply (``fields/<key>/review.<reviewer>.jsonl``).
    panel : optional
        Panel of the fields (default: the ``panel`` column of each field's rows, else del5q).

    Returns
    -------
    pooled : pandas.DataFrame
        Copy with ``pattern``, ``call``, ``scorable``, ``exclusion_reason`` and ``count_*`` of the
        reviewed nuclei replaced and a ``reviewed`` column (bool) added.
    fields : list of str
        Keys of the fields whose journal was applied.
    """
    for col in ("field", "label"):
        if col not in pooled.columns:
            raise InputError(run_dir, f"pooled nuclei table lacks column '{col}'")
    out = pooled.copy()
    out["reviewed"] = False
    done = []
    for key, folder in study_fields(run_dir).items():
        if not journal_path(folder, reviewer).exists():
            continue
        rows = out.index[out["field"].astype(str) == key]
        if len(rows) == 0:
            continue
        pan = panel
        if pan is None and "panel" in out.columns and str(out.at[rows[0], "panel"]) not in ("", "nan"):
            pan = str(out.at[rows[0], "panel"])
        state = open_review(folder, reviewer, pan, field=key)
        rev = state.nuclei.set_index("label")
        labels = out.loc[rows, "label"].astype(np.int64).to_numpy()
        missing = sorted(set(labels.tolist()) - set(rev.index.tolist()))
        if missing:
            raise InputError(folder, f"pooled table has nuclei {missing[:5]} the field's tables do not have")
        cols = list(_REVIEWED_COLUMNS) + [f"count_{k}" for k in state.panel.pattern_keys]
        for c in cols:
            if c in out.columns:
                vals = rev.loc[labels, c].to_numpy()
                if out[c].dtype != vals.dtype:
                    out[c] = out[c].astype(object)
                out.loc[rows, c] = vals
        out.loc[rows, "reviewed"] = rev.loc[labels, "reviewed"].to_numpy(dtype=bool)
        done.append(key)
    return out, done


def write_reviewed_samples(run_dir: str | os.PathLike, reviewer: str,
                           panel: "str | Path | Panel | None" = None, cutoffs=None) -> tuple[Path, list[str]]:
    """Rescore a run's samples with a reviewer's corrections: ``samples.reviewed.<reviewer>.csv``.

    The run's ``nuclei.csv`` (pooled) gets the reviewed fields' corrections (:func:`apply_reviews`)
    and is scored with :func:`fishcount.scoring.score_samples`, panel by panel, exactly as the run
    scored it; the file is written atomically beside ``samples.csv``.

    Parameters
    ----------
    run_dir : str or path-like
        A ``fishcount run`` output folder.
    reviewer : str
        Whose review journals to apply.
    panel : str, path or Panel, optional
        Score every row with this panel (default: each row's ``panel`` column).
    cutoffs : CutoffSet, path or a sequence of them, optional
        Laboratory cut-offs, one per panel for a mixed-panel run (:func:`fishcount.cutoffs.cutoffs_by_panel`);
        default the run's own (``run.json`` ``cutoffs``; the provisional ones when the run used them).

    Returns
    -------
    path : Path
    fields : list of str
        Reviewed field keys that were applied.

    Raises
    ------
    InputError
        If the folder has no pooled ``nuclei.csv`` or no field reviewed by ``reviewer``.
    """
    from .scoring import score_samples

    run_dir = Path(run_dir)
    r = _check_reviewer(reviewer)
    src = run_dir / "nuclei.csv"
    if not src.is_file():
        raise InputError(src, "missing; is this a fishcount run output folder?")
    pooled = pd.read_csv(src, keep_default_na=False, na_values=[""], low_memory=False, dtype=text_dtypes())
    reviewed, done = apply_reviews(pooled, run_dir, r, panel)
    if not done:
        raise InputError(run_dir, f"no field has a review journal of reviewer '{r}'")
    from .cutoffs import cutoffs_by_panel

    if cutoffs is None:  # the run's own laboratory cut-offs (run.json), as the run scored
        cutoffs = _run_cutoffs(run_dir)
    if panel is None and "panel" in reviewed.columns:
        groups = list(reviewed.groupby("panel", sort=True))
        pans = {pid: load_panel(pid) for pid, _ in groups}
        cut = cutoffs_by_panel(cutoffs, [p.id for p in pans.values()], str(src))  # each panel its own
        parts = [score_samples(g.drop(columns="panel"), pans[pid], cut[pans[pid].id], source=str(src))
                 for pid, g in groups]
        samples = pd.concat(parts, ignore_index=True)
    else:
        pan = load_panel(panel)
        samples = score_samples(reviewed, pan, cutoffs_by_panel(cutoffs, [pan.id], str(src))[pan.id],
                                source=str(src))
    path = run_dir / f"samples.reviewed.{r}.csv"
    write_csv_atomic(samples, path)
    return path, done


def _run_cutoffs(run_dir: Path) -> "list[str] | None":
    """The laboratory cut-offs files a run scored with (``run.json`` ``cutoffs``), None when it used the
    provisional ones (or the run recorded none). A recorded file that is gone or changed is an error: rescoring
    with other cut-offs than the run's would move every sample without a word."""
    try:
        run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    recs = run.get("cutoffs") if isinstance(run, dict) else None
    if not isinstance(recs, list) or not recs:
        return None
    paths = []
    for rec in recs:
        path = Path(str(rec.get("path", ""))) if isinstance(rec, dict) else None
        if path is None or not path.is_file():
            raise InputError(run_dir / "run.json", f"the run's cut-offs file {path} is gone; give the cut-offs "
                                                   "again (--cutoffs)")
        sha = rec.get("sha256")
        if sha and hashlib.sha256(path.read_bytes()).hexdigest() != sha:
            raise InputError(path, "changed since the run scored with it; give the cut-offs to use (--cutoffs)")
        paths.append(str(path))
    return paths


def _run_criteria(run_dir: Path) -> "str | None":
    """The response criteria a run used (``run.json`` ``criteria.path`` or ``criteria.id``), if recorded."""
    try:
        run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    c = run.get("criteria") if isinstance(run, dict) else None
    if isinstance(c, dict):
        if c.get("path") and Path(str(c["path"])).is_file():
            return str(c["path"])
        return c.get("id") or None
    return c if isinstance(c, str) and c else None


def write_reviewed_response(run_dir: str | os.PathLike, reviewer: str, criteria=None, cutoffs=None) -> Path:
    """Classify each patient's response from ``samples.reviewed.<reviewer>.csv`` (see
    :func:`write_reviewed_samples`) with :func:`fishcount.response.classify_response`, using the run's
    criteria set (``run.json``) unless ``criteria`` is given: ``response.reviewed.<reviewer>.csv``.

    Raises
    ------
    InputError
        If the reviewed samples table does not exist yet.
    """
    from .response import classify_response

    run_dir = Path(run_dir)
    r = _check_reviewer(reviewer)
    src = run_dir / f"samples.reviewed.{r}.csv"
    if not src.is_file():
        raise InputError(src, "missing; recompute the reviewed samples first (write_reviewed_samples)")
    samples = pd.read_csv(src, keep_default_na=False, na_values=[""], dtype=text_dtypes())
    res = classify_response(samples, criteria if criteria is not None else _run_criteria(run_dir), cutoffs,
                            source=str(src))
    path = run_dir / f"response.reviewed.{r}.csv"
    write_csv_atomic(res.patients, path)
    return path


def sample_concordance(run_dir: str | os.PathLike, reader_a: str, reader_b: str,
                       panel: "str | Path | Panel | None" = None, alpha: float = 0.05,
                       reviewed_only: bool = True) -> pd.DataFrame:
    """Two readers' concordance per sample of a ``fishcount run`` folder (all its fields pooled).

    For every field both readers reviewed, their reviewed nuclei are pooled by sample (the
    ``patient``/``timepoint``/``week`` or ``sample`` columns of the run's ``nuclei.csv``) and compared
    with :func:`concordance` (nuclei both reviewed; every nucleus with ``reviewed_only=False``).

    Returns
    -------
    pandas.DataFrame
        One row per sample: the sample keys, ``fields``, ``n_common``, ``n_agree``,
        ``agreement_pct``, ``kappa``, ``clone_a``, ``scored_a``, ``clone_b``, ``scored_b``,
        ``fisher_p`` and ``third_read`` (``fisher_p < alpha``: flag for a third reader,
        clinical.md §6.1 R5 [U/I]).

    Raises
    ------
    InputError
        If the run has no pooled ``nuclei.csv`` or no field reviewed by both readers.
    """
    from .scoring import SAMPLE_KEYS

    run_dir = Path(run_dir)
    ra, rb = _check_reviewer(reader_a), _check_reviewer(reader_b)
    src = run_dir / "nuclei.csv"
    if not src.is_file():
        raise InputError(src, "missing; is this a fishcount run output folder?")
    pooled = pd.read_csv(src, keep_default_na=False, na_values=[""], low_memory=False, dtype=text_dtypes())
    if "field" not in pooled.columns:
        raise InputError(src, "pooled nuclei table lacks column 'field'")
    keys = [k for k in SAMPLE_KEYS if k in pooled.columns] or (["sample"] if "sample" in pooled.columns else [])
    field_keys = pooled.drop_duplicates("field").set_index("field")[keys] if keys else None
    groups: dict[tuple, list] = {}
    for key, folder in study_fields(run_dir).items():
        if not (journal_path(folder, ra).exists() and journal_path(folder, rb).exists()):
            continue
        pan = panel
        if pan is None and "panel" in pooled.columns:
            rows = pooled.loc[pooled["field"].astype(str) == key, "panel"]
            pan = str(rows.iloc[0]) if len(rows) and str(rows.iloc[0]) not in ("", "nan") else None
        a = open_review(folder, ra, pan, field=key)
        b = open_review(folder, rb, pan, field=key)
        sk = tuple(field_keys.loc[key]) if field_keys is not None and key in field_keys.index else ()
        groups.setdefault(sk, []).append((key, a, b))
    if not groups:
        raise InputError(run_dir, f"no field has review journals of both '{ra}' and '{rb}'")
    out = []
    for sk, items in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        frames_a, frames_b, offset = [], [], 0
        for _key, a, b in items:  # pool fields: give every nucleus a sample-wide label
            for st, frames in ((a, frames_a), (b, frames_b)):
                f = st.nuclei[["label", "call", "scorable", "reviewed"]].copy()
                f["label"] = f["label"] + offset
                frames.append(f)
            offset += int(max(a.nuclei["label"].max(), b.nuclei["label"].max())) + 1
        c = concordance(pd.concat(frames_a, ignore_index=True), pd.concat(frames_b, ignore_index=True),
                        items[0][1].panel, reader_a=ra, reader_b=rb, reviewed_only=reviewed_only)
        row = dict(zip(keys, sk))
        row.update(fields=";".join(k for k, _, _ in items), reader_a=ra, reader_b=rb, n_common=c.n_common,
                   n_agree=c.n_agree, agreement_pct=c.agreement_pct, kappa=c.kappa, clone_a=c.clone_a[0],
                   scored_a=c.clone_a[1], clone_b=c.clone_b[0], scored_b=c.clone_b[1], fisher_p=c.fisher_p,
                   third_read=bool(c.fisher_p < alpha) if not math.isnan(c.fisher_p) else False)
        out.append(row)
    return pd.DataFrame(out)
