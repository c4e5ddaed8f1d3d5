"""Cohort statistics: response rates with exact confidence intervals, and group comparisons that name their test.

Input is the per-patient response table (``response.csv`` of ``fishcount response``, one row per patient dosed):
``patient`` and ``best_response`` (``major`` / ``minor`` / ``none`` / ``not_evaluable``; blank = no FISH
response = non-responder), optionally ``marrow_response`` (true/false, from ``--clinical``),
``endpoint_response`` and ``completed`` (true/false). Covariates (e.g. TP53 status) come from the same table or
from a separate CSV keyed by ``patient``.

Rates (clinical.md §1.2, §6.2 R13, R15):

* ``major``, ``minor``: FISH cytogenetic response (``response_column``);
* ``cytogenetic``: major ∪ minor;
* ``marrow``: a bone-marrow response by the clinical criteria set (``marrow_response``), whatever the FISH response;
* ``marrow_only``: a bone-marrow response without a FISH major/minor response;
* ``overall``: major ∪ minor ∪ marrow response, as Möllgård 2011 counted it (9/26).

Denominators: **ITT** = every row (all patients dosed; a missing or not-evaluable response is a non-responder,
no imputation) and **completers** = rows with ``completed`` true, or, without that column, rows with an endpoint
assessment (``endpoint_response`` major / minor / none). 95 % CIs are exact Clopper–Pearson
(``scipy.stats.binomtest(...).proportion_ci(method="exact")``, clinical.md §6.1 R4).

Group comparisons report **Fisher's exact test (two-sided)** and **Pearson's χ² without continuity correction**
side by side, with a warning when any expected count is below 5 (clinical.md §4: the trial's P = 0.047 is the
uncorrected χ²; Fisher's two-sided P is 0.074).

Example
-------
>>> import fishcount as fc
>>> cmp = fc.compare_counts([2, 5], [13, 9], groups=["TP53 mutated", "TP53 wild-type"])
>>> cmp.tests[["test", "p_value"]].round(4).values.tolist()
[["Fisher's exact test (two-sided)", 0.0743], ["Pearson's chi-squared test (no continuity correction)", 0.0467]]
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from os import PathLike
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ._datafile import checked_level, csv_lines, is_blank, patient_id, read_csv_text
from .errors import InputError
from .scoring import FISH_CAVEAT as _SCORING_CAVEAT

__all__ = [
    "MEASURES",
    "POPULATIONS",
    "GroupComparison",
    "read_response_table",
    "read_covariates",
    "cohort_summary",
    "compare_groups",
    "compare_counts",
    "exact_ci",
]

#: Rates reported by :func:`cohort_summary`, in order.
MEASURES: tuple[str, ...] = ("major", "minor", "cytogenetic", "marrow", "marrow_only", "overall")
#: Denominators.
POPULATIONS: tuple[str, ...] = ("ITT", "completers")
FISH_VALUES = ("major", "minor", "none", "not_evaluable")
FISHER = "Fisher's exact test (two-sided)"
CHI2 = "Pearson's chi-squared test (no continuity correction)"
CI_METHOD = "Clopper-Pearson exact 95%"
_BLANKS = {"", "na", "nan", "n/a", "none_given", "null", "-"}  # "none" is a response here, not a blank
_TRUE = {"true", "yes", "y", "1", "t", "1.0"}
_FALSE = {"false", "no", "n", "0", "f", "0.0"}
MISSING_GROUP = "(missing)"
#: IWG 2006 cytogenetic "complete" / "partial" (criteria set iwg2006_cyto) count as major / minor (clinical.md
#: §1.4: IWG 2000 major = disappearance, minor = >=50 % reduction; §2.1 IWG 2006 complete / partial).
RESPONSE_ALIASES = {"complete": "major", "partial": "minor"}
#: Caveat printed with every human-readable response output (clinical.md §6.2 R16; Göhring 2011, Mallo 2007 [V]).
FISH_CAVEAT = "Caveat: " + _SCORING_CAVEAT


def exact_ci(k: int, n: int, confidence_level: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson exact confidence interval of a proportion ``k/n`` (fractions in [0, 1]).

    Returns ``(nan, nan)`` when ``n == 0``.

    >>> [round(x * 100, 1) for x in exact_ci(120, 200)]
    [52.9, 66.8]
    """
    if n == 0:
        return (math.nan, math.nan)
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence_level, method="exact")
    return (float(ci.low), float(ci.high))


# -------------------------------------------------------------------------------------------
# input tables
# -------------------------------------------------------------------------------------------
def _blank(v) -> bool:
    """Missing cell: None, NaN, pd.NA, or a blank / NA-like string (``_BLANKS``)."""
    return is_blank(v, _BLANKS)


def _bool_column(df: pd.DataFrame, col: str, source: str, *, missing=False) -> pd.Series:
    out = []
    for i, v in zip(df.index, df[col].tolist()):
        if isinstance(v, (bool, np.bool_)):
            out.append(bool(v))
        elif _blank(v):
            out.append(missing)
        elif str(v).strip().lower() in _TRUE:
            out.append(True)
        elif str(v).strip().lower() in _FALSE:
            out.append(False)
        else:
            raise InputError(source, f"line {i + 2}, column {col}: {v!r} is not true/false (or yes/no, 1/0)")
    return pd.Series(out, index=df.index, dtype=bool)


def _require_frame(df, source: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise InputError(source, f"expected a pandas DataFrame (one row per patient), got a {type(df).__name__}")


def _lined(df: pd.DataFrame) -> pd.DataFrame:
    """A copy whose index makes ``line {i + 2}`` right: a table read by :func:`fishcount._datafile.read_csv_text` keeps its line numbers; a
    DataFrame given in Python is numbered by row (line 2 = its first row, as in a CSV written without the index),
    whatever its own index (patient ids, a filtered selection)."""
    out = df.copy()
    out.index = csv_lines(df) - 2  # the one rule of fishcount._datafile.csv_lines
    return out


def _check_patients(df: pd.DataFrame, source: str) -> pd.DataFrame:
    _require_frame(df, source)
    df = _lined(df)
    df.columns = [str(c).strip() for c in df.columns]
    if "patient" not in df.columns:
        raise InputError(source, f"missing column patient (columns: {', '.join(df.columns)})")
    if len(df) == 0:
        raise InputError(source, "no data rows")
    pats = []
    seen: dict[str, int] = {}
    for i, v in zip(df.index, df["patient"].tolist()):
        if _blank(v):
            raise InputError(source, f"line {i + 2}, column patient: patient id is empty")
        p = patient_id(v)  # NFC: one patient however typed
        if p in seen:
            hint = ("; this looks like a table of samples (one row per week): give the response table, response.csv "
                    "(one row per patient)") if {"week", "nuclei_scored"} & set(df.columns) else ""
            raise InputError(source, f"line {i + 2}, column patient: duplicate patient {p} (also on line "
                                     f"{seen[p] + 2}){hint}")
        seen[p] = i
        pats.append(p)
    df["patient"] = pats
    return df


def validate_response_table(df: pd.DataFrame, source: str = "<table>", *,
                            response_column: str = "best_response", panel: str | None = None) -> pd.DataFrame:
    """Check a per-patient response table; normalise the response and true/false columns.

    ``response.csv`` has a ``panel`` column; a cohort is one panel: with several panels in the table, ``panel``
    must say which (rows of other panels are dropped).

    Raises
    ------
    InputError
        Missing ``patient`` / response column, empty or duplicate patient ids, unknown response values,
        non-boolean ``marrow_response`` / ``completed``, several panels without ``panel``; the message names the
        file, line and column.
    """
    _require_frame(df, source)
    df = _lined(df)
    df.columns = [str(c).strip() for c in df.columns]
    if "panel" in df.columns:
        pvals = df["panel"].map(lambda v: "" if _blank(v) else str(v).strip())
        present = sorted(set(pvals))
        if panel is not None:
            if panel not in present:
                raise InputError(source, f"panel {panel!r} not in column panel ({', '.join(present)})")
            # every patient of the table is in the panel's cohort (intention to treat, clinical.md §6.2 R13): one
            # without a row for this panel (scored with another panel only, or clinical values only) counts as
            # FISH not evaluable, keeping their patient-level columns (marrow_response, completed)
            pats = df["patient"].map(lambda v: "" if _blank(v) else patient_id(v))
            mine = pvals == panel
            others = df[~mine & ~pats.isin(set(pats[mine]))]
            others = others[~pats[others.index].duplicated().to_numpy()]
            if len(others):
                others = others.copy()
                others["panel"] = panel
                for col in dict.fromkeys([response_column, "endpoint_response"]):
                    if col in others.columns:
                        others[col] = "not_evaluable"
                note = f"no FISH row for panel {panel} (counted as not evaluable)"
                if "flags" in others.columns:
                    others["flags"] = [f"{f}; {note}" if isinstance(f, str) and f.strip() else note
                                       for f in others["flags"]]
                else:
                    others["flags"] = note
            df = pd.concat([df[mine], others]) if len(others) else df[mine]
        elif len(present) > 1:
            raise InputError(source, f"the table has several panels ({', '.join(present)}); choose one (--panel)")
    elif panel is not None:
        raise InputError(source, f"no column panel, cannot select panel {panel!r}")
    df = _check_patients(df, source)
    if response_column not in df.columns:
        raise InputError(source, f"missing column {response_column} (FISH response: {', '.join(FISH_VALUES)})")
    for col in dict.fromkeys([response_column, "endpoint_response"]):
        if col not in df.columns:
            continue
        vals = []
        for i, v in zip(df.index, df[col].tolist()):
            if _blank(v):
                vals.append("not_evaluable")
                continue
            s = str(v).strip().lower().replace(" ", "_").replace("-", "_")
            s = RESPONSE_ALIASES.get(s, s)
            if s not in FISH_VALUES:
                raise InputError(source, f"line {i + 2}, column {col}: {v!r} is not one of {', '.join(FISH_VALUES)}")
            vals.append(s)
        df[col] = vals
    for col in ("marrow_response", "completed", "overall_response"):
        if col in df.columns:
            df[col] = _bool_column(df, col, source)
    return df.reset_index(drop=True)


def read_response_table(path: str | PathLike, *, response_column: str = "best_response",
                        panel: str | None = None) -> pd.DataFrame:
    """Read and validate a per-patient response CSV (``response.csv``); see :func:`validate_response_table`.

    Parameters
    ----------
    path : str or path-like
        The CSV file (e.g. ``response.csv`` of ``fishcount response``), read with every cell as text.
    response_column : str, default ``"best_response"``
        Column holding the FISH response (``major`` / ``minor`` / ``none`` / ``not_evaluable``; IWG 2006
        ``complete`` / ``partial`` are read as ``major`` / ``minor``), e.g. ``endpoint_response``.
    panel : str, optional
        With a ``panel`` column holding several panels, the one to keep (rows of other panels are dropped).

    Returns
    -------
    DataFrame
        One row per patient, index reset to ``0..n-1``: ``patient`` (stripped text ids), the normalised response
        column(s) (blank = ``not_evaluable``) and bool ``marrow_response`` / ``completed`` /
        ``overall_response`` where present; other columns are kept as text.

    Raises
    ------
    InputError
        The file is missing or not readable as CSV, or the table is invalid (see
        :func:`validate_response_table`); the message names the file, line and column.
    """
    return validate_response_table(read_csv_text(path), str(path), response_column=response_column, panel=panel)


def read_covariates(path: str | PathLike) -> pd.DataFrame:
    """Read a covariates CSV: a ``patient`` column (unique ids) plus any covariate columns, kept as text."""
    return _check_patients(read_csv_text(path), str(path)).reset_index(drop=True)


def unmatched_covariates(response_df: pd.DataFrame, covariates: pd.DataFrame | None) -> list[str]:
    """Patients of a covariates table that match no patient of the response table (ids are compared as
    written, so ``p01`` is not ``P01``): a note per such id, saying when only the case differs."""
    if covariates is None or "patient" not in covariates.columns or "patient" not in response_df.columns:
        return []
    have = {patient_id(p) for p in response_df["patient"].tolist()}
    folded = {p.casefold(): p for p in have}
    out = []
    for p in (patient_id(v) for v in covariates["patient"].tolist()):
        if p and p not in have:
            hint = f" (the response table has {folded[p.casefold()]!r}: ids are case-sensitive)" \
                if p.casefold() in folded else ""
            out.append(f"covariates patient {p!r} is in no response row{hint}")
    return out


def _merge_covariates(df: pd.DataFrame, covariates: pd.DataFrame | None, cov_source: str) -> pd.DataFrame:
    if covariates is None:
        return df
    cov = _check_patients(covariates, cov_source)
    for col in ("completed", "marrow_response"):  # the true/false columns the summary reads
        if col in cov.columns:
            cov[col] = _bool_column(cov, col, cov_source)
    cov = cov.reset_index(drop=True)
    clash = sorted((set(cov.columns) & set(df.columns)) - {"patient"})
    if clash:
        raise InputError(cov_source, f"column(s) {', '.join(clash)} are also in the response table; rename them")
    out = df.merge(cov, on="patient", how="left", sort=False)
    for col in ("completed", "marrow_response"):  # no covariate row: not known to complete / respond
        if col in cov.columns:
            out[col] = out[col].astype(object).where(out[col].notna(), False).astype(bool)
    return out


# -------------------------------------------------------------------------------------------
# responder indicators
# -------------------------------------------------------------------------------------------
def _indicators(df: pd.DataFrame, response_column: str) -> pd.DataFrame:
    fish = df[response_column]
    marrow = df["marrow_response"] if "marrow_response" in df.columns else pd.Series(False, index=df.index)
    ind = pd.DataFrame(index=df.index)
    ind["major"] = fish == "major"
    ind["minor"] = fish == "minor"
    ind["cytogenetic"] = ind["major"] | ind["minor"]
    marrow = marrow.astype(object).where(marrow.notna(), False).astype(bool)  # missing: no marrow response
    ind["marrow"] = marrow
    ind["marrow_only"] = marrow & ~ind["cytogenetic"]
    ind["overall"] = ind["cytogenetic"] | marrow
    return ind


def _completers(df: pd.DataFrame) -> tuple[pd.Series | None, str]:
    if "completed" in df.columns:
        return df["completed"].astype(bool), "completed column"
    if "endpoint_response" in df.columns:
        return df["endpoint_response"].isin(["major", "minor", "none"]), "endpoint assessment (endpoint_response)"
    return None, ""


def _groups(df: pd.DataFrame, group_by: str, source: str) -> pd.Series:
    if group_by not in df.columns:
        raise InputError(source, f"--group-by column {group_by!r} not found; columns: {', '.join(df.columns)}")
    return df[group_by].map(lambda v: MISSING_GROUP if _blank(v) else str(v).strip())


def cohort_summary(
    response_df: pd.DataFrame,
    *,
    covariates: pd.DataFrame | None = None,
    group_by: str | None = None,
    response_column: str = "best_response",
    panel: str | None = None,
    confidence_level: float = 0.95,
    source: str = "<response table>",
    covariates_source: str = "<covariates>",
) -> pd.DataFrame:
    """Response rates with exact Clopper–Pearson CIs, for ITT and completers, overall and per group.

    Parameters
    ----------
    response_df : DataFrame
        Per-patient response table (see the module docstring); every row is a patient dosed.
    covariates : DataFrame, optional
        ``patient`` + covariate columns, joined on ``patient`` (patients without a row get missing values).
    group_by : str, optional
        Column (of the response table or the covariates) to split by; missing values form the group
        ``(missing)``.
    response_column : str
        FISH response column: ``best_response`` (default, as the trial abstract counted) or ``endpoint_response``.
        IWG 2006 cytogenetic ``complete`` / ``partial`` count as ``major`` / ``minor``.
    panel : str, optional
        With a ``panel`` column holding several panels, the one to summarise.
    confidence_level : float
        Of the exact CI (0.95).
    source : str, default ``"<response table>"``
        Name of the response table (e.g. its file path), used in error messages.
    covariates_source : str, default ``"<covariates>"``
        Name of the covariates table (e.g. its file path), used in error messages.

    Returns
    -------
    DataFrame
        One row per group × population × measure: ``group_by, group, population, measure, responders, n,
        rate_pct, ci_low_pct, ci_high_pct, ci_method, denominator``. ``group`` is ``all`` for the whole cohort.
        Completer rows are present only when completion is known (``completed`` or ``endpoint_response``).

    Raises
    ------
    InputError
        Invalid response table (see :func:`validate_response_table`) or covariates (no ``patient`` column, empty
        or duplicate ids, non-boolean ``completed``, column names that clash with the response table), or
        ``group_by`` not a column of either; a confidence level outside (0, 1).
    """
    checked_level(confidence_level, "confidence_level", source)
    df = validate_response_table(response_df, source, response_column=response_column, panel=panel)
    df = _merge_covariates(df, covariates, covariates_source)
    ind = _indicators(df, response_column)
    comp, comp_how = _completers(df)
    parts: list[tuple[str, pd.Series]] = [("all", pd.Series(True, index=df.index))]
    if group_by:
        g = _groups(df, group_by, source)
        parts += [(val, g == val) for val in sorted(g.unique())]
    rows = []
    for gname, gmask in parts:
        pops = [("ITT", gmask, "all patients dosed (missing = non-responder)")]
        if comp is not None:
            pops.append(("completers", gmask & comp, comp_how))
        for pop, mask, how in pops:
            n = int(mask.sum())
            for m in MEASURES:
                k = int((ind[m] & mask).sum())
                lo, hi = exact_ci(k, n, confidence_level)
                rows.append(dict(group_by=group_by or "", group=gname, population=pop, measure=m, responders=k, n=n,
                                 rate_pct=100.0 * k / n if n else math.nan, ci_low_pct=100.0 * lo,
                                 ci_high_pct=100.0 * hi, ci_method=CI_METHOD.replace("95", f"{confidence_level * 100:g}"),
                                 denominator=how))
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class GroupComparison:
    """A comparison of response between groups.

    Attributes
    ----------
    table : DataFrame
        One row per group: ``group, responders, non_responders, n, rate_pct, ci_low_pct, ci_high_pct``.
    tests : DataFrame
        One row per test, named: ``test, statistic, statistic_name, dof, p_value, min_expected, warning``.
    warnings : tuple of str
    measure, population, group_by : str
    """

    table: pd.DataFrame
    tests: pd.DataFrame
    warnings: tuple[str, ...] = ()
    measure: str = ""
    population: str = ""
    group_by: str = ""
    notes: tuple[str, ...] = field(default=())


#: Above this many 2 x k tables the Fisher-Freeman-Halton p-value is estimated by a seeded Monte Carlo.
MAX_EXACT_TABLES = 5_000_000
MONTE_CARLO_RESAMPLES = 100_000


@dataclass(frozen=True)
class _Result:
    statistic: float
    pvalue: float
    method: str


def _fisher_freeman_halton(table: np.ndarray) -> _Result:
    """Exact two-sided Fisher–Freeman–Halton test of a 2 × k table by full enumeration.

    p = sum of the (hypergeometric) probabilities of all tables with the observed margins that are no more probable
    than the observed one (relative tolerance 1e-7, as scipy's 2 x 2 test). Deterministic. ``scipy.stats.fisher_exact``
    on r x c tables is a Monte Carlo estimate, so it is only used (seeded, 100 000 resamples) beyond
    :data:`MAX_EXACT_TABLES` tables.
    """
    from scipy.special import gammaln

    r, tot = table[0].astype(int), table.sum(axis=0).astype(int)
    if 2 * int(r.sum()) > int(tot.sum()):  # enumerate the smaller row (the test is the same for either row):
        r = tot - r                        # 2990 of 3000 responders leave ~171 tables of non-responders
    R, N, k = int(r.sum()), int(tot.sum()), len(tot)
    n_tables = float(np.prod(np.minimum(tot[:-1], R) + 1.0))
    if n_tables > MAX_EXACT_TABLES:
        mc = stats.fisher_exact(table, method=stats.MonteCarloMethod(
            n_resamples=MONTE_CARLO_RESAMPLES, rng=np.random.default_rng(0)))
        return _Result(float(mc.statistic), float(mc.pvalue), f"Monte Carlo, {MONTE_CARLO_RESAMPLES} resamples, seed 0")
    lc = [gammaln(n + 1) - gammaln(np.arange(n + 1) + 1) - gammaln(n - np.arange(n + 1) + 1) for n in tot]
    log_norm = gammaln(N + 1) - gammaln(R + 1) - gammaln(N - R + 1)
    sums, lp = np.zeros(1, dtype=np.int64), np.zeros(1)
    remaining = int(tot.sum())
    for j in range(k - 1):
        remaining -= int(tot[j])
        a = np.arange(min(int(tot[j]), R) + 1)  # a column holds at most R of the row
        sums = (sums[:, None] + a[None, :]).ravel()
        lp = (lp[:, None] + lc[j][a][None, :]).ravel()
        keep = (sums <= R) & (sums >= R - remaining)  # the other columns can still complete the row total
        sums, lp = sums[keep], lp[keep]
    last = R - sums
    lp = lp + lc[-1][last]
    lp_obs = float(sum(lc[j][r[j]] for j in range(k)))
    p = float(np.exp(lp[lp <= lp_obs + 1e-7] - log_norm).sum())
    return _Result(float(np.exp(lp_obs - log_norm)), min(1.0, p), "exact enumeration")


def compare_counts(
    responders: Sequence[int],
    totals: Sequence[int],
    *,
    groups: Sequence[str] | None = None,
    measure: str = "",
    population: str = "",
    group_by: str = "",
) -> GroupComparison:
    """Compare responder proportions between k >= 2 groups (a 2 × k table).

    Fisher's exact test (two-sided; ``scipy.stats.fisher_exact`` for 2 × 2, the Freeman–Halton extension by exact
    enumeration for k > 2) and Pearson's χ² without continuity correction (``scipy.stats.chi2_contingency(...,
    correction=False)``) are both reported, named. A warning is added when any expected count is below 5 (the χ²
    approximation is then unreliable, clinical.md §4).

    Parameters
    ----------
    responders, totals : sequences of int
        Responders and patients per group (``0 <= responders <= totals``).
    groups : sequence of str, optional
        Group labels (default ``group 1``, ``group 2`` ...).
    measure : str, optional
        Label of the response measure compared (e.g. ``overall``, one of :data:`MEASURES`); only recorded in the
        result and its ``tests`` table, it does not change the computation.
    population : str, optional
        Label of the denominator (``ITT`` or ``completers``); only recorded, as ``measure``.
    group_by : str, optional
        Name of the grouping column (e.g. ``TP53``); only recorded, as ``measure``, and named in error messages.

    Returns
    -------
    GroupComparison
        ``table``: one row per group (in the given order) with ``group, responders, non_responders, n,
        rate_pct, ci_low_pct, ci_high_pct`` (rates and exact 95 % Clopper–Pearson CIs in percent);
        ``tests``: two rows, Fisher's exact test then Pearson's χ², with columns ``group_by, population,
        measure, test, statistic, statistic_name, dof, p_value, min_expected, warning`` (Fisher's statistic is
        the odds ratio for 2 × 2, else the probability of the observed table; ``dof`` is NaN for Fisher);
        ``warnings``: expected counts below 5, a Monte Carlo p-value (more than :data:`MAX_EXACT_TABLES`
        tables), or no variation (all or no patients responded: statistics NaN, Fisher P = 1, χ² P = NaN);
        ``measure``, ``population``, ``group_by`` as given; ``notes`` empty.

    Raises
    ------
    InputError
        Fewer than two groups, negative counts, responders > totals, or an empty group.
    """
    r = np.asarray(responders, dtype=float)
    t = np.asarray(totals, dtype=float)
    labels = [str(g) for g in groups] if groups is not None else [f"group {i + 1}" for i in range(len(r))]
    src = f"group comparison{' by ' + group_by if group_by else ''}"
    if r.shape != t.shape or r.ndim != 1 or len(labels) != len(r):
        raise InputError(src, "responders, totals and groups must have the same length")
    if len(r) < 2:
        raise InputError(src, f"needs at least two groups, got {len(r)} ({', '.join(labels)})")
    if np.any(r < 0) or np.any(t < 0) or np.any(r != np.round(r)) or np.any(t != np.round(t)):
        raise InputError(src, "counts must be non-negative integers")
    if np.any(r > t):
        raise InputError(src, "responders cannot exceed the group size")
    if np.any(t == 0):
        raise InputError(src, f"empty group(s): {', '.join(l for l, n in zip(labels, t) if n == 0)}")
    r, t = r.astype(int), t.astype(int)
    table = np.vstack([r, t - r])  # 2 x k: responders / non-responders
    rows = []
    for lab, k, n in zip(labels, r, t):
        lo, hi = exact_ci(k, n)
        rows.append(dict(group=lab, responders=int(k), non_responders=int(n - k), n=int(n), rate_pct=100 * k / n,
                         ci_low_pct=100 * lo, ci_high_pct=100 * hi))
    warnings: list[str] = []
    tests = []
    degenerate = table.sum(axis=1).min() == 0
    if degenerate:
        note = "no variation (all patients responded or none did): the tests are undefined"
        warnings.append(note)
        tests.append(dict(test=FISHER, statistic=math.nan, statistic_name="", dof=np.nan, p_value=1.0,
                          min_expected=math.nan, warning=note))
        tests.append(dict(test=CHI2, statistic=math.nan, statistic_name="chi2", dof=len(r) - 1, p_value=math.nan,
                          min_expected=math.nan, warning=note))
    else:
        if len(r) == 2:
            res = stats.fisher_exact(table.T)  # rows = groups: [[r1, nr1], [r2, nr2]]
            fstat, fname = float(res.statistic), "odds ratio"
        else:
            res = _fisher_freeman_halton(table)
            fstat, fname = float(res.statistic), "probability of the observed table"
        chi = stats.chi2_contingency(table, correction=False)
        expected = np.asarray(chi.expected_freq)
        n_low = int((expected < 5).sum())
        warn = ""
        if n_low:
            warn = (f"{n_low} of {expected.size} expected counts < 5 (min {expected.min():.2f}): "
                    f"the chi-squared approximation is unreliable; prefer Fisher's exact test")
            warnings.append(warn)
        fwarn = ""
        if getattr(res, "method", "").startswith("Monte Carlo"):
            fwarn = f"p-value estimated ({res.method}): too many tables for exact enumeration"
            warnings.append(fwarn)
        tests.append(dict(test=FISHER, statistic=fstat, statistic_name=fname, dof=np.nan,
                          p_value=float(res.pvalue), min_expected=float(expected.min()), warning=fwarn))
        tests.append(dict(test=CHI2, statistic=float(chi.statistic), statistic_name="chi2", dof=int(chi.dof),
                          p_value=float(chi.pvalue), min_expected=float(expected.min()), warning=warn))
    tdf = pd.DataFrame(tests)
    for k, v in (("measure", measure), ("population", population), ("group_by", group_by)):
        tdf.insert(0, k, v)
    return GroupComparison(pd.DataFrame(rows), tdf, tuple(warnings), measure, population, group_by)


def compare_groups(
    response_df: pd.DataFrame,
    group_by: str,
    *,
    covariates: pd.DataFrame | None = None,
    measure: str = "overall",
    population: str = "ITT",
    response_column: str = "best_response",
    panel: str | None = None,
    include_missing: bool = False,
    source: str = "<response table>",
    covariates_source: str = "<covariates>",
) -> GroupComparison:
    """Compare a response rate between the groups of a column (e.g. TP53 mutated vs wild-type).

    Parameters
    ----------
    response_df : DataFrame
        Per-patient response table.
    group_by : str
        Column of the response table or of ``covariates``.
    covariates : DataFrame, optional
        Joined on ``patient``.
    measure : str
        One of :data:`MEASURES` (default ``overall``).
    population : str
        ``ITT`` (default) or ``completers``.
    response_column : str, default ``"best_response"``
        FISH response column: ``best_response`` or ``endpoint_response`` (IWG 2006 ``complete`` / ``partial``
        count as ``major`` / ``minor``).
    panel : str, optional
        With a ``panel`` column holding several panels, the one to compare.
    include_missing : bool
        Keep patients without a group value as a group ``(missing)`` (default: leave them out and say so in
        ``notes``).
    source : str, default ``"<response table>"``
        Name of the response table (e.g. its file path), used in error messages.
    covariates_source : str, default ``"<covariates>"``
        Name of the covariates table (e.g. its file path), used in error messages.

    Returns
    -------
    GroupComparison
        Contingency table and the two named tests (see :func:`compare_counts`).

    Raises
    ------
    InputError
        Unknown ``measure`` or ``population``; ``completers`` without a ``completed`` or ``endpoint_response``
        column; an invalid response table or covariates; ``group_by`` not found; fewer than two groups left.
    """
    if measure not in MEASURES:
        raise InputError(source, f"unknown measure {measure!r}; one of {', '.join(MEASURES)}")
    if population not in POPULATIONS:
        raise InputError(source, f"unknown population {population!r}; one of {', '.join(POPULATIONS)}")
    df = validate_response_table(response_df, source, response_column=response_column, panel=panel)
    df = _merge_covariates(df, covariates, covariates_source)
    ind = _indicators(df, response_column)
    mask = pd.Series(True, index=df.index)
    if population == "completers":
        comp, _ = _completers(df)
        if comp is None:
            raise InputError(source, "completers unknown: add a 'completed' column (true/false) or 'endpoint_response'")
        mask &= comp
    g = _groups(df, group_by, source)
    notes = []
    n_missing = int((mask & (g == MISSING_GROUP)).sum())
    if n_missing and not include_missing:
        notes.append(f"{n_missing} patient(s) without a {group_by} value left out")
        mask &= g != MISSING_GROUP
    labels = sorted(g[mask].unique())
    resp = [int((ind[measure] & mask & (g == lab)).sum()) for lab in labels]
    tot = [int((mask & (g == lab)).sum()) for lab in labels]
    if len(labels) < 2:
        raise InputError(source, f"column {group_by} has {len(labels)} group(s) among {population} patients "
                                 f"({', '.join(labels) or 'none'}); a comparison needs at least two")
    res = compare_counts(resp, tot, groups=labels, measure=measure, population=population, group_by=group_by)
    return GroupComparison(res.table, res.tests, res.warnings, measure, population, group_by, tuple(notes))


def format_summary(summary: pd.DataFrame) -> str:
    """Readable text table of :func:`cohort_summary` output (``9/26  34.6 %  (17.2-55.7)``)."""
    lines = []
    for (gb, grp, pop), sub in summary.groupby(["group_by", "group", "population"], sort=False):
        head = f"{pop}" + (f", {gb} = {grp}" if gb else "") + f"  (n = {int(sub['n'].iloc[0])}; {sub['denominator'].iloc[0]})"
        lines.append(head)
        for _, r in sub.iterrows():
            rate = "   -  " if r["n"] == 0 else f"{r['rate_pct']:5.1f} %"
            ci = "" if r["n"] == 0 else f"({r['ci_low_pct']:.1f}-{r['ci_high_pct']:.1f})"
            level = re.search(r"(\d+(?:\.\d+)?)%", str(r.get("ci_method", ""))) if "ci_method" in r else None
            lines.append(f"  {r['measure']:12s} {int(r['responders']):>4d}/{int(r['n']):<4d} {rate}  "
                         f"{level.group(1) if level else '95'}% CI {ci}")
    lines.append(f"CI: {summary['ci_method'].iloc[0]}.")
    return "\n".join(lines)


def format_comparison(cmp: GroupComparison) -> str:
    """Readable text of a :class:`GroupComparison`: the table, both named tests, warnings."""
    what = f"{cmp.measure} response" if cmp.measure else "response"
    lines = [f"{what}{' by ' + cmp.group_by if cmp.group_by else ''}{' (' + cmp.population + ')' if cmp.population else ''}:"]
    for _, r in cmp.table.iterrows():
        lines.append(f"  {r['group']:20s} {int(r['responders']):>4d}/{int(r['n']):<4d} {r['rate_pct']:5.1f} %  "
                     f"95% CI ({r['ci_low_pct']:.1f}-{r['ci_high_pct']:.1f})")
    for _, t in cmp.tests.iterrows():
        stat = "" if not np.isfinite(t["statistic"]) else f"{t['statistic_name']} = {t['statistic']:.4g}, "
        dof = "" if not np.isfinite(t["dof"]) else f"df = {int(t['dof'])}, "
        p = "undefined" if not np.isfinite(t["p_value"]) else (
            f"{t['p_value']:.4f}" if t["p_value"] >= 1e-4 else f"{t['p_value']:.2e}")
        lines.append(f"  {t['test']}: {stat}{dof}P = {p}")
    for w in cmp.warnings:
        lines.append(f"  WARNING: {w}")
    for n in cmp.notes:
        lines.append(f"  note: {n}")
    return "\n".join(lines)
