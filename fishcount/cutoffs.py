"""Laboratory normal cut-offs: from normal control samples to a cut-off for any number of nuclei.

A cut-off is the largest clone percentage a *normal* sample can show by chance (false-positive
nuclei from signal overlap, weak hybridisation...). A sample is FISH-positive when its clone % is
**strictly above** the cut-off recomputed for the sample's own number of scored nuclei N
(clinical.md §6.1 R6; §3.3 "Cut-offs depend on N ... recompute for the actual N").

Methods (clinical.md §3.3, §6.1 R6; all recomputed for N):

``betainv``
    Excel ``BETAINV(CL, kmax+1, N)`` = ``scipy.stats.beta.ppf(CL, kmax+1, N)``, kmax = largest
    false-positive count in any control (Wiktor/Dewald 2006 formula, clinical.md §3.3 [U formula,
    C values]; 3.78 % for kmax = 3, N = 200).
``exact``
    Clopper–Pearson one-sided upper bound ``beta.ppf(CL, kmax+1, N-kmax)`` (clinical.md §3.3 table).
``binomial``
    Excel ``CRITBINOM(N, p, CL)`` = ``binom.ppf(CL, N, p)`` with p the pooled false-positive rate
    of the controls, as a percentage of N (Ciolino 2009, clinical.md §3.3).
``mean3sd``
    mean + 3 SD of the control percentages (clinical.md §3.3 [U]); the SD is rescaled to N by the
    binomial law, ``sd_N = sd_ref * sqrt(n_ref / N)`` [I].

How kmax follows N (``kmax_at_n``) [I]: ``"fixed"`` keeps the observed kmax at every N (the
literal formula; clinical.md §6.3 vector 7 uses kmax = 3 at N = 100), ``"proportional"`` rescales
it as a rate, ``kmax * N / n_ref``; ``"conservative"`` (default) takes the larger of the two,
``kmax * max(1, N / n_ref)``: never below the literal formula for small N (whose extremes are
relatively larger) and growing with N beyond the controls' N. All three agree at N = n_ref.

The cut-offs file format (TOML) is documented in ``docs/scoring.md``. Without a laboratory file
the shipped provisional default (``fishcount/criteria/provisional_cutoffs.toml``: BETAINV(0.95,
kmax+1, N) with kmax = 3 per 200 nuclei, never fewer than 3) is used and every output says
``"cut-off not validated by this laboratory"``.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ._atomic import write_text_atomic
from ._datafile import check_fields, check_schema_version
from .errors import FishcountError, InputError

__all__ = [
    "METHODS",
    "NOT_VALIDATED",
    "CutoffRule",
    "CutoffSet",
    "cutoff_for_n",
    "cutoffs_by_panel",
    "compute_cutoffs",
    "controls_from_tables",
    "load_cutoffs",
    "provisional_cutoffs",
    "write_cutoffs",
    "cutoffs_to_toml",
]

#: Cut-off methods understood by :func:`cutoff_for_n`.
METHODS = ("betainv", "exact", "binomial", "mean3sd")
#: The sentence every output carries when the cut-off is not the laboratory's own.
NOT_VALIDATED = "cut-off not validated by this laboratory"
#: Key of the rule for the tracked clone (union of the panel's tracked calls).
CLONE = "clone"
_KMAX_AT_N = ("conservative", "fixed", "proportional")
_PROVISIONAL_FILE = "provisional_cutoffs.toml"


@dataclass(frozen=True)
class CutoffRule:
    """How to compute the cut-off of one call (or of the tracked clone) for any N.

    Attributes
    ----------
    method : str
        One of :data:`METHODS`.
    confidence : float
        One-sided confidence level CL in (0, 1), usually 0.95.
    nuclei_per_control : int
        n_ref, the number of nuclei scored per control sample (median if they differ).
    controls : int
        Number of control samples the rule was derived from (0 for the provisional default).
    kmax : float
        Largest false-positive count in any control, at n_ref nuclei (``betainv``, ``exact``).
    mean_rate : float
        Pooled false-positive fraction of the controls, 0-1 (``binomial``, ``mean3sd``).
    sd_rate : float
        SD of the control fractions at n_ref nuclei, 0-1 (``mean3sd``).
    kmax_at_n : str
        ``"conservative"``, ``"fixed"`` or ``"proportional"`` (see module docstring).
    """

    method: str
    confidence: float = 0.95
    nuclei_per_control: int = 200
    controls: int = 0
    kmax: float = 0.0
    mean_rate: float = 0.0
    sd_rate: float = 0.0
    kmax_at_n: str = "conservative"


@dataclass(frozen=True)
class CutoffSet:
    """A laboratory's cut-offs for one panel (or the provisional default).

    Attributes
    ----------
    clone : CutoffRule
        Rule for the tracked clone (union of the panel's tracked calls).
    calls : dict of str to CutoffRule
        Rule per call name.
    default : CutoffRule or None
        Rule for calls not listed in ``calls`` (the provisional file has one).
    validated : bool
        True only for a laboratory's own cut-offs from its control samples.
    panel : str
        Panel id the cut-offs belong to, or ``"*"`` for any panel.
    label : str
        Short description written beside every result (method, CL, controls).
    path : str
        File the set came from (``""`` if built in memory).
    """

    clone: CutoffRule
    calls: Mapping[str, CutoffRule] = field(default_factory=dict)
    default: CutoffRule | None = None
    validated: bool = False
    panel: str = "*"
    label: str = ""
    path: str = ""
    laboratory: str = ""
    created: str = ""

    def rule_for(self, call: str | None) -> CutoffRule | None:
        """The rule for ``call`` (``None`` or ``"clone"`` = the tracked clone); None if there is none."""
        if call is None or call == CLONE:
            return self.clone
        return self.calls.get(call, self.default)

    def method_label(self, call: str | None = None) -> str:
        rule = self.rule_for(call)
        if rule is None:
            return ""
        txt = f"{rule.method}(CL={rule.confidence:g}"
        if rule.method in ("betainv", "exact"):
            txt += f", kmax={rule.kmax:g}@{rule.nuclei_per_control}, {rule.kmax_at_n}"
        else:
            txt += f", rate={100 * rule.mean_rate:.3g}%"
            if rule.method == "mean3sd":
                txt += f", sd={100 * rule.sd_rate:.3g}%@{rule.nuclei_per_control}"
        txt += f", controls={rule.controls})"
        return txt + ("" if self.validated else " provisional")


# -------------------------------------------------------------------------------------------
# the cut-off for N nuclei
# -------------------------------------------------------------------------------------------
def _kmax_for_n(rule: CutoffRule, n: int) -> float:
    if rule.kmax_at_n == "fixed":
        return float(rule.kmax)
    scaled = float(rule.kmax) * n / max(int(rule.nuclei_per_control), 1)
    return scaled if rule.kmax_at_n == "proportional" else max(float(rule.kmax), scaled)


def cutoff_for_n(rule: CutoffRule, n_nuclei: int) -> float:
    """The normal cut-off, in percent, for a sample of ``n_nuclei`` scored nuclei.

    Parameters
    ----------
    rule : CutoffRule
        From :func:`compute_cutoffs`, :func:`load_cutoffs` or :func:`provisional_cutoffs`.
    n_nuclei : int
        Number of scorable nuclei N of the sample (> 0; 0 gives NaN: no sample, no cut-off).

    Returns
    -------
    float
        Cut-off in percent (0-100). A sample is positive when its clone % is strictly greater.

    Raises
    ------
    ValueError
        ``n_nuclei`` negative, not a whole number, or not finite.

    Examples
    --------
    >>> round(cutoff_for_n(CutoffRule("betainv", 0.95, 200, kmax=3, kmax_at_n="fixed"), 200), 2)
    3.78
    >>> round(cutoff_for_n(CutoffRule("betainv", 0.95, 200, kmax=3, kmax_at_n="fixed"), 100), 2)
    7.36
    >>> cutoff_for_n(CutoffRule("binomial", 0.95, 200, mean_rate=0.01), 200)
    2.5
    """
    try:
        whole = float(n_nuclei) == int(n_nuclei) and int(n_nuclei) >= 0
    except (TypeError, ValueError, OverflowError):
        whole = False
    if isinstance(n_nuclei, bool) or not whole:
        raise ValueError(f"the number of nuclei must be a whole number >= 0, got {n_nuclei!r}")
    n = int(n_nuclei)
    if n == 0:
        return math.nan
    cl = float(rule.confidence)
    if rule.method == "betainv":
        # Excel BETAINV(CL, kmax+1, N) (clinical.md §3.3)
        return 100.0 * float(stats.beta.ppf(cl, _kmax_for_n(rule, n) + 1.0, n))
    if rule.method == "exact":
        # Clopper-Pearson one-sided upper limit beta.ppf(CL, k+1, N-k) (clinical.md §3.3)
        k = min(_kmax_for_n(rule, n), n - 1e-9)
        return 100.0 * float(stats.beta.ppf(cl, k + 1.0, n - k))
    if rule.method == "binomial":
        # Excel CRITBINOM(N, p, CL) = binom.ppf(CL, N, p), as % of N (Ciolino 2009, clinical.md §3.3)
        return 100.0 * float(stats.binom.ppf(cl, n, float(rule.mean_rate))) / n
    if rule.method == "mean3sd":
        # mean + 3 SD of control %, SD rescaled to N by the binomial law [I]
        sd = float(rule.sd_rate) * math.sqrt(max(int(rule.nuclei_per_control), 1) / n)
        return 100.0 * min(1.0, float(rule.mean_rate) + 3.0 * sd)
    raise ValueError(f"unknown cut-off method {rule.method!r}")


# -------------------------------------------------------------------------------------------
# from control samples
# -------------------------------------------------------------------------------------------
def _rule_from_counts(k: np.ndarray, n: np.ndarray, method: str, confidence: float, kmax_at_n: str) -> CutoffRule:
    n_ref = int(round(float(np.median(n))))
    kmax = float(np.max(k * n_ref / n))  # exact when every control has n_ref nuclei
    if np.all(n == n_ref):
        kmax = float(np.max(k))
    rates = k / n
    return CutoffRule(
        method=method,
        confidence=float(confidence),
        nuclei_per_control=n_ref,
        controls=int(len(k)),
        kmax=kmax,
        mean_rate=float(k.sum() / n.sum()),
        sd_rate=float(np.std(rates, ddof=1)) if len(rates) > 1 else 0.0,
        kmax_at_n=kmax_at_n,
    )


def compute_cutoffs(
    controls: pd.DataFrame,
    panel,
    method: str = "betainv",
    confidence: float = 0.95,
    kmax_at_n: str = "conservative",
    source: str = "<controls>",
    laboratory: str = "",
) -> CutoffSet:
    """Laboratory cut-offs from normal control samples.

    Parameters
    ----------
    controls : DataFrame
        One row per control sample with ``nuclei_scored`` (int, N) and ``n_<call>`` (int, nuclei
        of that call) for the panel's calls (missing call columns count 0); e.g. the ``samples.csv``
        of :func:`fishcount.scoring.score_samples` run on control nuclei, or
        :func:`controls_from_tables`. The tracked clone uses ``nuclei_abnormal`` if present, else
        the sum of the tracked calls' columns.
    panel : Panel or str
        The probe panel (:func:`fishcount.load_panel`).
    method : {"betainv", "exact", "binomial", "mean3sd"}
    confidence : float
        One-sided confidence level, 0 < CL < 1.
    kmax_at_n : {"conservative", "fixed", "proportional"}
        How kmax follows N for ``betainv``/``exact`` (module docstring).
    source : str
        Name used in error messages.
    laboratory : str, optional
        Name of the laboratory the controls come from; stored as ``CutoffSet.laboratory`` (and written to the
        cut-offs file by :func:`write_cutoffs`), not used in the computation.

    Returns
    -------
    CutoffSet
        ``validated=True``: rules for the tracked clone and every abnormal call.

    Raises
    ------
    InputError
        No controls, a control without scored nuclei, an unknown method or confidence out of range.
    """
    from .panels import load_panel

    panel = load_panel(panel)
    if method not in METHODS:
        raise InputError(source, f"unknown cut-off method {method!r}; use one of {', '.join(METHODS)}")
    if not 0.0 < float(confidence) < 1.0:
        raise InputError(source, f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    if kmax_at_n not in _KMAX_AT_N:
        raise InputError(source, f"kmax_at_n must be one of {', '.join(_KMAX_AT_N)}, got {kmax_at_n!r}")
    if controls is None or len(controls) == 0:
        raise InputError(source, "no control samples given")
    if "nuclei_scored" not in controls.columns:
        raise InputError(source, "column 'nuclei_scored' is missing (one row per control sample expected)")
    n = _int_column(controls, "nuclei_scored", source)
    bad = np.flatnonzero(n <= 0)
    if bad.size:
        raise InputError(source, f"row {int(bad[0]) + 2}, column 'nuclei_scored': a control needs scored nuclei (> 0)")

    def counts(col: str) -> np.ndarray:
        if col not in controls.columns:
            return np.zeros(len(controls), dtype=float)
        k = _int_column(controls, col, source)
        over = np.flatnonzero(k > n)
        if over.size:
            raise InputError(source, f"row {int(over[0]) + 2}, column '{col}': more nuclei than nuclei_scored")
        return k

    if "nuclei_abnormal" in controls.columns:
        k_clone = counts("nuclei_abnormal")
    else:
        k_clone = sum((counts(f"n_{c}") for c in panel.tracked_calls), np.zeros(len(controls)))
    rules = {c: _rule_from_counts(counts(f"n_{c}"), n, method, confidence, kmax_at_n) for c in panel.abnormal_calls}
    clone = _rule_from_counts(k_clone, n, method, confidence, kmax_at_n)
    cs = CutoffSet(
        clone=clone, calls=rules, default=None, validated=True, panel=panel.id,
        laboratory=laboratory, created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return _with_label(cs)


def _with_label(cs: CutoffSet) -> CutoffSet:
    from dataclasses import replace

    return replace(cs, label=cs.method_label(None))


def _int_column(df: pd.DataFrame, col: str, source: str) -> np.ndarray:
    vals = pd.to_numeric(df[col], errors="coerce")
    raw = df[col].tolist()
    for i, (v, r) in enumerate(zip(vals.tolist(), raw)):
        if pd.isna(v):
            raise InputError(source, f"row {i + 2}, column '{col}': expected a whole number, got {r!r}")
        if v < 0:
            raise InputError(source, f"row {i + 2}, column '{col}': negative count {r!r}")
        if float(v) != int(v):
            raise InputError(source, f"row {i + 2}, column '{col}': expected a whole number, got {r!r}")
    return vals.to_numpy(dtype=float)


def _check_counts(df: pd.DataFrame, cols: list[str], source: str) -> None:
    """Whole numbers >= 0 in ``cols``, each at most ``nuclei_scored``: else an InputError naming the file,
    its row (CSV line) and column, before files are pooled (the pooled table's rows are no file's)."""
    from ._datafile import csv_lines

    lines = csv_lines(df)
    n = pd.to_numeric(df["nuclei_scored"], errors="coerce").to_numpy(dtype=float)
    for col in cols:
        raw = df[col].tolist()
        vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        for i, (v, r) in enumerate(zip(vals, raw)):
            where = f"row {lines[i]}, column '{col}'"
            if not np.isfinite(v) or v < 0 or v != round(v):
                got = "an empty cell" if pd.isna(r) else repr(r.item() if isinstance(r, np.generic) else r)
                raise InputError(source, f"{where}: expected a whole number >= 0, got {got}")
            if col != "nuclei_scored" and np.isfinite(n[i]) and v > n[i]:
                raise InputError(source, f"{where}: {int(v)} nuclei > {int(n[i])} scored (nuclei_scored)")


def controls_from_tables(paths: Sequence[str | PathLike], panel) -> pd.DataFrame:
    """Read control tables into one row per control sample (``nuclei_scored``, ``n_<call>``...).

    Accepted inputs (each file):

    * a ``nuclei.csv`` (has a ``call`` column): pooled into one control per sample key
      (``patient``/``timepoint``/``week`` or ``sample`` if present; else the whole file is one
      control), scored with :func:`fishcount.scoring.score_samples`;
    * a samples table (has ``nuclei_scored``): each row is one control; per-call counts in
      ``n_<call>`` columns (``samples.csv`` of ``fishcount`` or typed by hand).

    Raises
    ------
    InputError
        A file is missing, unreadable, or neither kind of table.
    """
    from .panels import load_panel
    from .scoring import read_table, score_samples

    panel = load_panel(panel)
    known = {k.lower(): k for k in ("nuclei_scored", "nuclei_abnormal", "call", "scorable", "panel", "sample",
                                    *(f"n_{c}" for c in panel.call_names))}
    frames = []
    for p in paths:
        df = read_table(p)
        # a header written N_del5q or ' n_del5q' is that column: read under another name its counts would be 0
        df = df.rename(columns={c: known[c.strip().lower()] for c in df.columns
                                if c.strip().lower() in known and c != known[c.strip().lower()]})
        if "panel" in df.columns:  # controls of another panel would give a file of this panel's name
            named = sorted({str(v).strip() for v in df["panel"].dropna() if str(v).strip()})
            if named and named != [panel.id]:
                raise InputError(p, f"controls of panel {', '.join(named)} (column panel), but the cut-offs are "
                                    f"computed for panel {panel.id}; give --panel {named[0]}")
        if "call" in df.columns:
            scored = score_samples(df, panel, source=str(p))
            scored["control_file"] = str(p)
            frames.append(scored)
        elif "nuclei_scored" in df.columns:
            df = df.copy()
            tracked = [f"n_{c}" for c in panel.tracked_calls]
            if "nuclei_abnormal" not in df.columns and not any(c in df.columns for c in tracked):
                raise InputError(p, f"no count of the clone: a control table needs nuclei_abnormal or "
                                    f"{' / '.join(tracked)} (columns: {', '.join(map(str, df.columns))})")
            for c in panel.call_names:  # a call column left out counts 0 nuclei
                if f"n_{c}" not in df.columns:
                    df[f"n_{c}"] = 0
            _check_counts(df, ["nuclei_scored"] + [f"n_{c}" for c in panel.call_names]
                          + (["nuclei_abnormal"] if "nuclei_abnormal" in df.columns else []), str(p))
            if "nuclei_abnormal" not in df.columns:
                df["nuclei_abnormal"] = sum((pd.to_numeric(df[f"n_{c}"], errors="coerce") for c in panel.tracked_calls), 0)
            df["control_file"] = str(p)
            frames.append(df)
        else:
            raise InputError(p, "not a control table: expected a nuclei.csv (column 'call') or a samples table "
                                "(column 'nuclei_scored' with n_<call> columns)")
    if not frames:
        raise InputError(None, "no control files given")
    return pd.concat(frames, ignore_index=True, sort=False)


# -------------------------------------------------------------------------------------------
# TOML files
# -------------------------------------------------------------------------------------------
_RULE_KEYS = {"method", "confidence", "nuclei_per_control", "controls", "kmax", "mean_rate", "sd_rate",
              "kmax_at_n", "cutoff_pct_at_reference"}


def _rule_from_toml(d, where: str, source: str) -> CutoffRule:
    if not isinstance(d, Mapping):
        raise InputError(source, f"[{where}] must be a table")
    check_fields(d, _RULE_KEYS, source, InputError, prefix=f"[{where}] ")
    method = d.get("method")
    if method not in METHODS:
        raise InputError(source, f"[{where}] method must be one of {', '.join(METHODS)}, got {method!r}")

    def num(key, default, lo=0.0, hi=math.inf, integer=False):
        v = d.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi) or (integer and int(v) != v):
            raise InputError(source, f"[{where}] {key} must be a {'whole ' if integer else ''}number in [{lo:g}, {hi:g}], got {v!r}")
        return v

    conf = num("confidence", 0.95, 1e-9, 1 - 1e-9)
    n_ref = int(num("nuclei_per_control", 200, 1, integer=True))
    kmax_at_n = d.get("kmax_at_n", "conservative")
    if kmax_at_n not in _KMAX_AT_N:
        raise InputError(source, f"[{where}] kmax_at_n must be one of {', '.join(_KMAX_AT_N)}, got {kmax_at_n!r}")
    if method in ("betainv", "exact") and "kmax" not in d:
        raise InputError(source, f"[{where}] method {method} needs kmax (largest false-positive count in a control)")
    if method in ("binomial", "mean3sd") and "mean_rate" not in d:
        raise InputError(source, f"[{where}] method {method} needs mean_rate (pooled false-positive fraction 0-1)")
    if method == "mean3sd" and "sd_rate" not in d:
        raise InputError(source, f"[{where}] method mean3sd needs sd_rate (SD of control fractions 0-1)")
    return CutoffRule(
        method=method, confidence=float(conf), nuclei_per_control=n_ref,
        controls=int(num("controls", 0, 0, integer=True)), kmax=float(num("kmax", 0.0, 0, n_ref)),
        mean_rate=float(num("mean_rate", 0.0, 0, 1)), sd_rate=float(num("sd_rate", 0.0, 0, 1)),
        kmax_at_n=kmax_at_n,
    )


def cutoffs_from_dict(data: Mapping, source: str = "<dict>") -> CutoffSet:
    """Build and validate a :class:`CutoffSet` from parsed TOML (format: docs/scoring.md)."""
    known = {"schema_version", "type", "panel", "validated", "laboratory", "created", "controls_files",
             "note", "sources", "clone", "calls", "default"}
    check_fields(data, known, source, InputError)
    check_schema_version(data, source, InputError)
    if data.get("type", "cutoffs") != "cutoffs":
        raise InputError(source, f"type is {data.get('type')!r}; a cut-offs file has type = \"cutoffs\"")
    if "clone" not in data:
        raise InputError(source, "missing the [clone] table (cut-off of the tracked clone)")
    validated = data.get("validated", False)
    if not isinstance(validated, bool):
        raise InputError(source, f"validated must be true or false, got {validated!r}")
    calls_raw = data.get("calls", {})
    if not isinstance(calls_raw, Mapping):
        raise InputError(source, "[calls] must be a table of [calls.<name>] tables")
    cs = CutoffSet(
        clone=_rule_from_toml(data["clone"], "clone", source),
        calls={str(k): _rule_from_toml(v, f"calls.{k}", source) for k, v in calls_raw.items()},
        default=_rule_from_toml(data["default"], "default", source) if "default" in data else None,
        validated=validated,
        panel=str(data.get("panel", "*")),
        path=source,
        laboratory=str(data.get("laboratory", "")),
        created=str(data.get("created", "")),
    )
    return _with_label(cs)


def check_cutoffs_panel(cs: CutoffSet, panel_ids, source: str, context: str = "") -> None:
    """Refuse cut-offs made for another panel (``cs.panel`` ``"*"`` fits every panel): they would pass for a
    validated laboratory cut-off. ``panel_ids``: the panels they are used for; ``context`` ends the message."""
    other = [p for p in sorted(set(panel_ids)) if p and cs.panel not in ("*", p)]
    if other:
        raise InputError(cs.path or source, f"cut-offs are for panel {cs.panel!r}, not {other[0]!r}{context}")


def cutoffs_argument(value):
    """The ``cutoffs`` a caller gave, as :func:`cutoffs_by_panel` takes them: None, one file or set as is; a
    sequence (a repeated ``--cutoffs``) as None when empty, its one item, or a list (one per panel)."""
    if value is None or isinstance(value, (str, PathLike, CutoffSet)):
        return value
    items = [str(v) if isinstance(v, PathLike) else v for v in value]
    return None if not items else (items[0] if len(items) == 1 else items)


def cutoffs_by_panel(cutoffs: "CutoffSet | str | PathLike | Sequence[CutoffSet | str | PathLike] | None",
                     panel_ids, source: str = "", context: str = "") -> dict[str, CutoffSet]:
    """The cut-offs of each panel of a study: ``{panel id: CutoffSet}``.

    Parameters
    ----------
    cutoffs : CutoffSet, path, sequence of them, or None
        ``None``: the provisional default for every panel. One set or file: for every panel, refused when
        it was made for another panel (:func:`check_cutoffs_panel`). Several (a mixed-panel study, e.g.
        ``fishcount run --cutoffs del5q.toml --cutoffs cep8.toml``): each panel gets the set made for it,
        else the one for any panel (``panel = "*"``), else the provisional default (flagged not
        validated, as without a file).
    panel_ids : iterable of str
        The panels the cut-offs are used for (``""``: a table that names no panel).
    source, context : str
        Where the panel ids come from, for error messages (``context`` ends them).

    Raises
    ------
    InputError
        A file that cannot be read; a single set of another panel; among several, two for one panel (or two
        for any panel), one for a panel the study does not use (a typo would otherwise pass unnoticed), or
        several for a table that names no panel.
    """
    ids = sorted({str(p) for p in panel_ids})
    if cutoffs is None or isinstance(cutoffs, (CutoffSet, str, PathLike)):
        cs = load_cutoffs(cutoffs)
        if cutoffs is not None:
            check_cutoffs_panel(cs, ids, source, context)
        return {p: cs for p in ids}
    sets = [load_cutoffs(c) for c in cutoffs]
    if len(sets) == 1:
        return cutoffs_by_panel(sets[0], ids, source, context)
    if "" in ids and sets:
        raise InputError(sets[0].path or source, f"{len(sets)} cut-offs files, but the table names no panel to "
                                                 f"choose between them{context}; add a panel column or give one file")
    own: dict[str, CutoffSet] = {}
    for cs in sets:
        first = own.get(cs.panel)
        if first is not None:
            which = "any panel ('*')" if cs.panel == "*" else f"panel {cs.panel!r}"
            raise InputError(cs.path or source, f"a second cut-offs file for {which} (the first: {first.path or '?'})")
        if cs.panel != "*" and cs.panel not in ids:
            raise InputError(cs.path or source, f"cut-offs for panel {cs.panel!r}, which is not a panel here "
                                                f"({', '.join(ids) or 'none'}){context}")
        own[cs.panel] = cs
    fallback = own.get("*") or provisional_cutoffs()
    return {p: own.get(p, fallback) for p in ids}


def load_cutoffs(path: str | PathLike | CutoffSet | None = None) -> CutoffSet:
    """Load a cut-offs TOML file; ``None`` gives the shipped provisional default.

    Parameters
    ----------
    path : str, path-like, CutoffSet or None, default None
        A cut-offs ``.toml`` file (format: ``docs/scoring.md``, as written by :func:`write_cutoffs`); a
        :class:`CutoffSet` is returned as is; ``None`` gives :func:`provisional_cutoffs`.

    Returns
    -------
    CutoffSet
        The cut-offs, with ``path`` set to the file read (``validated`` as the file says; always False for the
        provisional default).

    Raises
    ------
    InputError
        File missing, not TOML, or an invalid field (named in the message).
    """
    if isinstance(path, CutoffSet):
        return path
    if path is None:
        return provisional_cutoffs()
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "cut-offs file not found")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(p, f"not valid TOML ({exc})") from None
    return cutoffs_from_dict(data, str(p))


def provisional_cutoffs() -> CutoffSet:
    """The shipped provisional cut-off (not validated): BETAINV(0.95, kmax+1, N), kmax = 3 per 200
    nuclei and never fewer than 3 (``kmax_at_n = "conservative"``).

    Source: clinical.md §6.3 (test vectors use kmax = 3: 3.78 % at N = 200, 7.36 % at N = 100)
    and §3.3 (formula). The kmax = 3 assumption is a design choice [I]; each laboratory must
    validate its own cut-off per signal pattern (clinical.md §3.3).
    """
    p = Path(str(resources.files("fishcount.criteria"))) / _PROVISIONAL_FILE
    data = tomllib.loads(p.read_text(encoding="utf-8"))
    cs = cutoffs_from_dict(data, str(p))
    if cs.validated:  # the shipped default must never claim validation
        raise FishcountError(p, "the provisional cut-offs file must say validated = false")
    return cs


def _rule_toml(rule: CutoffRule) -> str:
    lines = [f'method = "{rule.method}"', f"confidence = {rule.confidence!r}",
             f"nuclei_per_control = {int(rule.nuclei_per_control)}", f"controls = {int(rule.controls)}",
             f"kmax = {float(rule.kmax)!r}", f"mean_rate = {float(rule.mean_rate)!r}",
             f"sd_rate = {float(rule.sd_rate)!r}", f'kmax_at_n = "{rule.kmax_at_n}"',
             f"cutoff_pct_at_reference = {round(cutoff_for_n(rule, rule.nuclei_per_control), 4)!r}"]
    return "\n".join(lines) + "\n"


def cutoffs_to_toml(cs: CutoffSet, controls_files: Sequence[str] = ()) -> str:
    """Serialise a :class:`CutoffSet` to the documented TOML format (readable by :func:`load_cutoffs`)."""
    def q(s: str) -> str:
        return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = ["# fishcount laboratory cut-offs (format: docs/scoring.md). Positive = clone % strictly above",
           "# the cut-off recomputed for the sample's N (clinical.md §6.1 R6, §3.3).",
           "schema_version = 1", 'type = "cutoffs"', f"panel = {q(cs.panel)}",
           f"validated = {'true' if cs.validated else 'false'}", f"laboratory = {q(cs.laboratory)}",
           f"created = {q(cs.created)}",
           "controls_files = [" + ", ".join(q(f) for f in controls_files) + "]", "",
           "[clone]", _rule_toml(cs.clone)]
    if cs.default is not None:
        out += ["[default]", _rule_toml(cs.default)]
    for name, rule in cs.calls.items():
        out += [f"[calls.{q(name)}]", _rule_toml(rule)]
    return "\n".join(out)


def write_cutoffs(cs: CutoffSet, path: str | PathLike, controls_files: Sequence[str] = (), overwrite: bool = False) -> Path:
    """Write ``cs`` as TOML atomically; refuse to overwrite an existing file unless ``overwrite``.

    Parameters
    ----------
    cs : CutoffSet
        The cut-offs to write (e.g. from :func:`compute_cutoffs`).
    path : str or path-like
        The ``.toml`` file to write (format: ``docs/scoring.md``, readable by :func:`load_cutoffs`).
    controls_files : sequence of str, optional
        Names of the control tables the cut-offs were computed from, recorded as ``controls_files``.
    overwrite : bool, default False
        Replace an existing file at ``path``.

    Returns
    -------
    Path
        ``path`` as a :class:`pathlib.Path`.

    Raises
    ------
    InputError
        ``path`` exists and ``overwrite`` is False, or the serialised TOML does not read back as valid cut-offs
        (nothing is written then).
    OSError
        The file cannot be written.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise InputError(p, "exists already; choose another --out or pass --overwrite")
    text = cutoffs_to_toml(cs, controls_files)
    cutoffs_from_dict(tomllib.loads(text), str(p))  # what we write must read back
    write_text_atomic(p, text)
    return p
