"""Sample scoring: a sample's nuclei -> clone %, exact CI, adequacy, cut-off, positivity, ISCN.

A *sample* is one patient × timepoint × panel; the scorable nuclei of all its fields are pooled
(clinical.md §6.1 R1-R7):

* R2 the full pattern histogram is reported, not only the clone %;
* R3 clone = union of the panel's tracked calls (del(5q): ``del5q`` ∪ ``monosomy5``), each also
  reported alone; ``clone_pct = 100 * clone / N`` kept unrounded;
* R4 Clopper–Pearson exact 95 % CI (:func:`clopper_pearson`);
* R5 adequacy: N ≥ 200 adequate, 100-199 limited, < 100 not evaluable (thresholds are data:
  ``[adequacy]`` of the criteria set, ``fishcount/criteria/trial_fish.toml``);
* R6 positive = clone % **strictly above** the cut-off recomputed for N (:mod:`fishcount.cutoffs`);
* R7 ISCN ``nuc ish`` string with [abnormal/total] from a pluggable template (:class:`IscnTemplate`).

Every row carries the FISH caveat (R16) and, without laboratory cut-offs,
``"cut-off not validated by this laboratory"``.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .cutoffs import NOT_VALIDATED, CutoffSet, check_cutoffs_panel, cutoff_for_n, load_cutoffs
from .errors import InputError

__all__ = [
    "FISH_CAVEAT",
    "ADEQUACY_LEVELS",
    "clopper_pearson",
    "adequacy_for_n",
    "IscnTemplate",
    "ISCN_STYLES",
    "iscn_string",
    "parse_iscn",
    "SampleScore",
    "score_sample",
    "score_samples",
    "read_table",
    "SAMPLE_KEYS",
]

#: R16 (clinical.md §6.2; Göhring et al. 2011, Mallo et al. 2007): carried by every output.
FISH_CAVEAT = (
    "FISH response applies only to the probed locus; karyotyping is recommended to confirm response "
    "and detect clonal evolution."
)
#: Adequacy labels, best first (clinical.md §6.1 R5).
ADEQUACY_LEVELS = ("adequate", "limited", "not_evaluable")
#: Columns that identify a sample in a pooled nuclei table.
SAMPLE_KEYS = ("patient", "timepoint", "week")


# -------------------------------------------------------------------------------------------
# tables
# -------------------------------------------------------------------------------------------
#: Columns of fishcount's tables that hold names, kept as text when a table is read: a patient ``007`` is not
#: patient ``7`` (pandas would read both as the number 7, splitting or merging patients without a word).
TEXT_COLUMNS = frozenset({"patient", "sample", "timepoint", "panel", "slide", "field", "source", "call", "pattern",
                          "exclusion_reason", "iscn", "cutoff_method", "other_positive", "adequacy", "caveat",
                          "patterns", "exclusions", "files", "path", "category", "role", "flags", "events"})
#: Cells read as missing in the number columns of a table (pandas' usual NA words).
_NA_WORDS = frozenset({"", "na", "nan", "n/a", "#n/a", "null", "none", "<na>"})


def text_dtypes() -> dict[str, type]:
    """``pd.read_csv(dtype=...)`` for fishcount's own output tables: the name columns (:data:`TEXT_COLUMNS`) as
    text, so patient ``007`` stays ``007`` when a run's tables are read back (review, report, response)."""
    return {c: str for c in TEXT_COLUMNS}


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """A text table (:func:`fishcount._datafile.read_csv_text`) with number columns as numbers: a column all of
    whose filled cells are numbers becomes float (int when whole); the name columns (:data:`TEXT_COLUMNS`) and
    any column holding words stay text, empty cells NaN."""
    out = pd.DataFrame(index=df.index)
    out.attrs.update(df.attrs)
    for col in df.columns:
        vals = df[col].astype(object)
        stripped = vals.map(lambda v: v.strip() if isinstance(v, str) else v)
        if col.lower() in TEXT_COLUMNS:
            out[col] = vals.where(stripped != "", np.nan)
            continue
        blank = stripped.map(lambda v: str(v).lower() in _NA_WORDS)
        num = pd.to_numeric(stripped.where(~blank), errors="coerce")
        # a number of more than 15 digits (an accession or barcode) is a name: as a float it would lose digits
        long_ids = stripped.map(lambda v: isinstance(v, str) and len(re.sub(r"\D", "", v.split("e")[0].split("E")[0])) > 15)
        if (num.notna() | blank).all() and not blank.all() and not long_ids.any():
            finite = np.isfinite(num.to_numpy(dtype=float, na_value=np.nan))
            whole = (not blank.any() and bool(finite.all()) and bool((num.abs() < 2 ** 53).all())
                     and bool((num == num.round()).all()))
            out[col] = num.astype(np.int64) if whole else num.astype(float)
        else:
            out[col] = vals.where(~blank, np.nan)
    return out


def read_table(path: str | PathLike) -> pd.DataFrame:
    """Read a CSV / TSV / Parquet table, raising :class:`InputError` naming the file on failure.

    CSV and TSV are read strictly (:func:`fishcount._datafile.read_csv_text`: a row with more values than the
    header, two columns of one name, or another encoding than UTF-8 are refused; messages name the line), names
    kept as text (:data:`TEXT_COLUMNS`), number columns as numbers.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "file not found")
    if p.suffix.lower() == ".parquet":
        try:
            return pd.read_parquet(p)
        except (OSError, ValueError) as exc:
            raise InputError(p, f"cannot read table ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    from ._datafile import read_csv_text

    return _typed(read_csv_text(p, sep="\t" if p.suffix.lower() in (".tsv", ".tab") else ","))


# -------------------------------------------------------------------------------------------
# statistics
# -------------------------------------------------------------------------------------------
def clopper_pearson(k, n, confidence: float = 0.95):
    """Clopper–Pearson exact two-sided confidence interval of a binomial proportion.

    ``lower = beta.ppf(a/2, k, n-k+1)`` (0 if k = 0), ``upper = beta.ppf(1-a/2, k+1, n-k)``
    (1 if k = n), ``a = 1 - confidence`` (clinical.md §6.1 R4).

    Parameters
    ----------
    k : int or array of int
        Successes (e.g. abnormal nuclei), 0 ≤ k ≤ n.
    n : int or array of int
        Trials (scored nuclei). n = 0 gives NaN bounds.
    confidence : float
        Two-sided confidence level, default 0.95.

    Returns
    -------
    (lower, upper) : tuple of float or of float64 arrays
        Bounds as **fractions** in [0, 1] (multiply by 100 for %).

    Examples
    --------
    >>> lo, hi = clopper_pearson(120, 200)
    >>> round(100 * lo, 1), round(100 * hi, 1)
    (52.9, 66.8)
    >>> clopper_pearson(0, 200)[0]
    0.0
    """
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    k_arr = np.asarray(k, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    if not (np.all(np.isfinite(k_arr)) and np.all(np.isfinite(n_arr))):
        raise ValueError(f"clopper_pearson needs finite counts, got k={k!r}, n={n!r}")
    if np.any(k_arr != np.round(k_arr)) or np.any(n_arr != np.round(n_arr)):
        raise ValueError(f"clopper_pearson needs whole-number counts, got k={k!r}, n={n!r}")
    if np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise ValueError("clopper_pearson needs 0 <= k <= n")
    alpha = 1.0 - float(confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k_arr > 0, stats.beta.ppf(alpha / 2, np.maximum(k_arr, 1e-300), n_arr - k_arr + 1), 0.0)
        hi = np.where(k_arr < n_arr, stats.beta.ppf(1 - alpha / 2, k_arr + 1, np.maximum(n_arr - k_arr, 1e-300)), 1.0)
    bad = n_arr <= 0
    lo = np.where(bad, np.nan, lo)
    hi = np.where(bad, np.nan, hi)
    if np.ndim(lo) == 0:
        return float(lo), float(hi)
    return lo, hi


def _default_adequacy() -> tuple[int, int]:
    from .response import load_criteria

    c = load_criteria(None)
    return c.adequate_nuclei, c.limited_nuclei


def adequacy_for_n(n_nuclei: int, adequate_nuclei: int | None = None, limited_nuclei: int | None = None) -> str:
    """``"adequate"`` (N ≥ adequate_nuclei), ``"limited"`` (≥ limited_nuclei) or ``"not_evaluable"``.

    Defaults (200, 100) come from ``[adequacy]`` of the default criteria set (clinical.md §6.1 R5).
    """
    if adequate_nuclei is None or limited_nuclei is None:
        a, l_ = _default_adequacy()
        adequate_nuclei = a if adequate_nuclei is None else adequate_nuclei
        limited_nuclei = l_ if limited_nuclei is None else limited_nuclei
    if n_nuclei >= adequate_nuclei:
        return "adequate"
    if n_nuclei >= limited_nuclei:
        return "limited"
    return "not_evaluable"


# -------------------------------------------------------------------------------------------
# ISCN (clinical.md §3.5, §6.1 R7)
# -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IscnTemplate:
    """How an ISCN ``nuc ish`` string is written (the formatter is a pluggable template).

    Attributes
    ----------
    technique : str
        Prefix, ``"nuc ish"``.
    loci : str
        ``"compact"``: runs of probes with equal copy number share one ``x``:
        ``(D5S23,D5S721x2,EGR1x1)``, all equal ``(D5S23,D5S721,EGR1)x2``;
        ``"explicit"``: every probe its own ``x``: ``(D5S23x2,D5S721x2,EGR1x1)``;
        ``"band"``: band first, older style: ``5p15.2(D5S23,D5S721)x2,5q31(EGR1)x1``.
    population : str
        Format of one abnormal population, fields ``{loci}``, ``{n}``, ``{total}``, ``{pct}``.
    normal : str
        Format of a normal result, fields ``{loci}``, ``{total}``.
    separator : str
        Between populations (ISCN: ``/``).
    """

    technique: str = "nuc ish"
    loci: str = "compact"
    population: str = "{loci}[{n}/{total}]"
    normal: str = "{loci}[{total}]"
    separator: str = "/"


#: Named ISCN templates (clinical.md §3.5 proposals [I]; check against ISCN 2020/2024).
ISCN_STYLES: dict[str, IscnTemplate] = {
    "compact": IscnTemplate(),
    "explicit": IscnTemplate(loci="explicit"),
    "band": IscnTemplate(loci="band"),
}


def _copies(panel, counts: Mapping[str, int]) -> list[tuple[object, int]]:
    """(signal, copy number) in ISCN order; fused signals count for both partners."""
    fus = int(counts.get("fusion", 0)) if panel.fusion_pair else 0
    out = []
    for name in panel.iscn_order:
        c = int(counts.get(name, 0)) + (fus if panel.fusion_pair and name in panel.fusion_pair else 0)
        out.append((panel.signal(name), c))
    return out


def _break_apart_gene(panel) -> str | None:
    """The gene of a break-apart panel's two probes (``5'KMT2A`` and ``3'KMT2A`` -> ``KMT2A``), None when the
    probe names do not say it."""
    names = [panel.signal(n).probes[0] for n in panel.fusion_pair]
    genes = {re.sub(r"^[53]['’]", "", p) for p in names}
    return genes.pop() if len(genes) == 1 and all(re.match(r"^[53]['’]", p) for p in names) else None


def _break_apart_loci(panel, counts: Mapping[str, int], style: str, gene: str) -> str:
    """ISCN of a break-apart probe: the gene with its copy number, then each split pair (``sep``):
    ``(KMT2Ax2)`` normal, ``(KMT2Ax2)(5'KMT2A sep 3'KMT2Ax1)`` rearranged, as published (AML case report
    PubMed 34140437 ``(KMT2Ax2)(5'KMT2A sep 3'KMT2Ax1)``; a leukaemia bank's karyotypes ``(KMT2Ax2)[200]``;
    the FISH-Testing-and-Nomenclature generator; ISCN book example [U]). When the 5' and 3' parts differ in
    number (one lost), each is given with the intact pairs (``con``): ``(5'KMT2Ax2,3'KMT2Ax1)(5'KMT2A con
    3'KMT2Ax1)`` (the published ``(5'ETV6x1,3'ETV6x2)(5'ETV6 con 3'ETV6x1)`` form)."""
    a_name, b_name = panel.fusion_pair
    a, b = panel.signal(a_name).probes[0], panel.signal(b_name).probes[0]
    fus = int(counts.get("fusion", 0))
    na, nb = int(counts.get(a_name, 0)), int(counts.get(b_name, 0))
    sep = min(na, nb)
    ta, tb = na + fus, nb + fus
    band = f"{panel.signal(a_name).locus}" if style == "band" else ""
    if ta == tb:
        body = f"{band}({gene}x{ta})"
    else:
        first, second = ((a, ta), (b, tb)) if a_name in panel.iscn_order[:1] else ((b, tb), (a, ta))
        body = f"{band}({first[0]}x{first[1]},{second[0]}x{second[1]})"
        if fus:
            body += f"({a} con {b}x{fus})"
    if sep:
        body += f"({a} sep {b}x{sep})"
    return body


def _loci(panel, counts: Mapping[str, int], style: str) -> str:
    if panel.kind == "break-apart" and panel.fusion_pair and (gene := _break_apart_gene(panel)):
        return _break_apart_loci(panel, counts, style, gene)
    sigs = _copies(panel, counts)
    if style == "band":
        parts = [f"{s.locus}({','.join(s.probes)})x{c}" for s, c in sigs]
        body = ",".join(parts)
    else:
        probes = [(p, c) for s, c in sigs for p in s.probes]
        if style == "explicit" or len(probes) == 1:  # one probe: its copy number inside, nuc ish(D21S259x2)
            body = "(" + ",".join(f"{p}x{c}" for p, c in probes) + ")"  # (clinical.md §3.5, ISCN teaching example)
        elif len({c for _, c in probes}) == 1:
            body = "(" + ",".join(p for p, _ in probes) + f")x{probes[0][1]}"
        else:
            items = []
            for i, (p, c) in enumerate(probes):
                last_of_run = i == len(probes) - 1 or probes[i + 1][1] != c
                items.append(f"{p}x{c}" if last_of_run else p)
            body = "(" + ",".join(items) + ")"
    if panel.fusion_pair:
        a, b = (panel.signal(n).probes[0] for n in panel.fusion_pair)
        fus = int(counts.get("fusion", 0))
        sep = min(int(counts.get(panel.fusion_pair[0], 0)), int(counts.get(panel.fusion_pair[1], 0)))
        if fus:
            body += f"({a} con {b}x{fus})"
        if panel.kind == "break-apart" and sep:
            body += f"({a} sep {b}x{sep})"
    return body


def iscn_string(
    panel,
    total: int,
    populations: Sequence[tuple[Mapping[str, int], int]] = (),
    normal_counts: Mapping[str, int] | None = None,
    template: IscnTemplate | str = "compact",
) -> str:
    """ISCN ``nuc ish`` result string of a sample.

    Parameters
    ----------
    panel : Panel
    total : int
        Scored nuclei N.
    populations : sequence of (counts, n)
        Abnormal populations: the signal counts of the population (signal name -> count, plus
        ``"fusion"``) and its number of nuclei. Empty = a normal result.
    normal_counts : mapping, optional
        Counts of the normal pattern for a normal result (default: the panel's normal call).
    template : IscnTemplate or str
        A template or a name in :data:`ISCN_STYLES`.

    Returns
    -------
    str
        e.g. ``nuc ish(D5S23,D5S721x2,EGR1x1)[120/200]`` or ``nuc ish(D5S23,D5S721,EGR1)x2[200]``.
    """
    if isinstance(template, str):
        if template not in ISCN_STYLES:
            raise InputError(None, f"unknown ISCN style {template!r}; use one of {', '.join(ISCN_STYLES)}")
        template = ISCN_STYLES[template]
    sp = " " if template.loci == "band" else ""
    if not populations:
        if normal_counts is None:
            rule = panel.call_rule(panel.normal_call)
            normal_counts = {k: r.lo for k, r in rule.pattern} if rule else {}
        loci = _loci(panel, normal_counts, template.loci)
        return template.technique + sp + template.normal.format(loci=loci, total=int(total))
    parts = []
    for counts, n in populations:
        pct = 100.0 * n / total if total else math.nan
        parts.append(template.population.format(loci=_loci(panel, counts, template.loci), n=int(n),
                                                total=int(total), pct=f"{pct:.1f}"))
    return template.technique + sp + template.separator.join(parts)


_ITEM_RE = re.compile(r"^(?P<name>[^,()\[\]\s]+?)(?:x(?P<x>\d+))?$")
_FUS_RE = re.compile(r"^(?P<a>\S+) (?P<op>con|sep) (?P<b>\S+?)x(?P<x>\d+)$")


def _split_top(s: str, sep: str) -> list[str]:
    depth, cur, out = 0, "", []
    for ch in s:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def parse_iscn(text: str) -> list[dict]:
    """Parse a ``nuc ish`` string written by :func:`iscn_string` (any shipped style).

    Parameters
    ----------
    text : str
        An ISCN interphase FISH result starting with ``nuc ish`` (surrounding whitespace ignored), one or more
        ``/``-separated populations each ending in ``[n/N]`` or ``[N]``, e.g.
        ``"nuc ish(EGR1x1,D5S23x2)[150/200]"``.

    Returns
    -------
    list of dict
        One per population: ``copies`` (probe -> copy number), ``fusions`` (list of
        ``(a, "con"|"sep", b, x)``), ``n`` (nuclei, None for a normal result) and ``total``.
        ``copies`` maps str -> int; in ``fusions`` ``a``, ``b`` are probe names and ``x`` (int) the number of
        such signals; ``n`` and ``total`` (nuclei scored) are ints, in the order of the string.

    Raises
    ------
    ValueError
        If the string is not of this form.
    """
    s = text.strip()
    if not s.startswith("nuc ish"):
        raise ValueError(f"not a nuc ish string: {text!r}")
    s = s[len("nuc ish"):].lstrip()
    pops = []
    for pop in _split_top(s, "/"):
        m = re.match(r"^(?P<body>.*)\[(?:(?P<n>\d+)/)?(?P<total>\d+)\]$", pop)
        if not m:
            raise ValueError(f"population without [n/N]: {pop!r}")
        body = m.group("body")
        copies: dict[str, int] = {}
        fusions = []
        # groups: optional band before '(' , content, optional xN after ')'
        pos = 0
        for g in re.finditer(r"(?P<band>[0-9XYpqcen.]*)\((?P<inner>[^()]*)\)(?:x(?P<x>\d+))?,?", body):
            if g.start() != pos:
                raise ValueError(f"unexpected text in {pop!r} at {pos}")
            pos = g.end()
            inner, gx = g.group("inner"), g.group("x")
            fm = _FUS_RE.match(inner)
            if fm:
                fusions.append((fm.group("a"), fm.group("op"), fm.group("b"), int(fm.group("x"))))
                continue
            pending: list[str] = []
            for item in inner.split(","):
                im = _ITEM_RE.match(item.strip())
                if not im:
                    raise ValueError(f"bad probe item {item!r} in {pop!r}")
                pending.append(im.group("name"))
                if im.group("x") is not None:
                    for p in pending:
                        copies[p] = int(im.group("x"))
                    pending = []
            if pending:
                if gx is None:
                    raise ValueError(f"probe(s) {pending} without copy number in {pop!r}")
                for p in pending:
                    copies[p] = int(gx)
        if pos != len(body) or not copies:
            raise ValueError(f"cannot parse {pop!r}")
        pops.append({"copies": copies, "fusions": fusions,
                     "n": int(m.group("n")) if m.group("n") else None, "total": int(m.group("total"))})
    return pops


# -------------------------------------------------------------------------------------------
# scoring
# -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleScore:
    """The score of one sample (one row of ``samples.csv``; see :meth:`to_row`).

    Percentages are unrounded floats in 0-100; counts are ints.
    """

    keys: Mapping[str, object]
    panel: str
    nuclei_total: int
    nuclei_scored: int
    call_counts: Mapping[str, int]
    nuclei_abnormal: int
    clone_pct: float
    ci_low_pct: float
    ci_high_pct: float
    tracked: Mapping[str, Mapping[str, float]]
    adequacy: str
    cutoff_pct: float
    cutoff_method: str
    cutoff_validated: bool
    positive: bool
    other_positive: tuple[str, ...]
    iscn: str
    patterns: Mapping[str, int]
    exclusions: Mapping[str, int]
    caveat: str = FISH_CAVEAT

    def to_row(self) -> dict:
        """The ``samples.csv`` row: keys, counts, clone % + CI, per tracked call, cut-off, ISCN..."""
        row: dict = dict(self.keys)
        row.update(panel=self.panel, nuclei_total=self.nuclei_total, nuclei_scored=self.nuclei_scored,
                   nuclei_excluded=self.nuclei_total - self.nuclei_scored, nuclei_abnormal=self.nuclei_abnormal)
        for c, n in self.call_counts.items():
            row[f"n_{c}"] = n
        row.update(clone_pct=self.clone_pct, ci_low_pct=self.ci_low_pct, ci_high_pct=self.ci_high_pct)
        for c, d in self.tracked.items():
            for k, v in d.items():
                row[f"{k}_{c}"] = v
        row.update(adequacy=self.adequacy, cutoff_pct=self.cutoff_pct, cutoff_method=self.cutoff_method,
                   cutoff_validated=self.cutoff_validated, positive=self.positive,
                   other_positive=";".join(self.other_positive), iscn=self.iscn,
                   patterns=json.dumps(dict(self.patterns)), exclusions=json.dumps(dict(self.exclusions)),
                   caveat=self.caveat)
        return row


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def _scorable(values: pd.Series, source: str, offset: np.ndarray) -> np.ndarray:
    """The ``scorable`` column as booleans; an empty or unreadable cell is an error naming its row (a nucleus
    silently left out of N would change the clone %)."""
    if pd.api.types.is_bool_dtype(values.dtype) and not values.isna().any():
        return values.to_numpy(dtype=bool)
    out = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values.tolist()):
        if isinstance(v, (bool, np.bool_)):
            out[i] = bool(v)
            continue
        if isinstance(v, (int, float, np.integer, np.floating)) and not pd.isna(v) and v in (0, 1):
            out[i] = bool(v)
            continue
        s = str(v).strip().lower() if not pd.isna(v) else ""
        if s in _TRUE:
            out[i] = True
        elif s in _FALSE:
            out[i] = False
        elif not s:
            raise InputError(source, f"row {offset[i]}, column 'scorable': empty; expected true/false")
        else:
            raise InputError(source, f"row {offset[i]}, column 'scorable': expected true/false, got {v!r}")
    return out


def _checked_options(nuclei, adequate_nuclei, limited_nuclei, confidence, source: str) -> tuple[int, int]:
    """Arguments of :func:`score_sample` / :func:`score_samples` given in Python, checked with one-line errors
    (as a criteria file's ``[adequacy]`` is): a DataFrame, a confidence in (0, 1), whole numbers
    0 < limited_nuclei <= adequate_nuclei. Returns the adequacy thresholds (defaults filled in)."""
    if not isinstance(nuclei, pd.DataFrame):
        raise InputError(source, f"nuclei must be a pandas DataFrame (a nuclei.csv table), got a {type(nuclei).__name__}")
    from ._datafile import checked_level

    checked_level(confidence, "confidence", source)
    if adequate_nuclei is None or limited_nuclei is None:
        a, l_ = _default_adequacy()
        adequate_nuclei = a if adequate_nuclei is None else adequate_nuclei
        limited_nuclei = l_ if limited_nuclei is None else limited_nuclei
    for name, v in (("adequate_nuclei", adequate_nuclei), ("limited_nuclei", limited_nuclei)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise InputError(source, f"{name} must be a whole number of nuclei, got {v!r}")
    if not 0 < limited_nuclei <= adequate_nuclei:
        raise InputError(source, f"adequacy needs 0 < limited_nuclei <= adequate_nuclei, got {limited_nuclei} and "
                                 f"{adequate_nuclei}")
    return int(adequate_nuclei), int(limited_nuclei)


def _rule_counts(panel, call: str) -> dict[str, int]:
    rule = panel.call_rule(call)
    return {k: r.lo for k, r in rule.pattern} if rule else {}


def score_sample(
    nuclei: pd.DataFrame,
    panel,
    cutoffs: CutoffSet | str | PathLike | None = None,
    keys: Mapping[str, object] | None = None,
    adequate_nuclei: int | None = None,
    limited_nuclei: int | None = None,
    confidence: float = 0.95,
    iscn_template: IscnTemplate | str = "compact",
    source: str = "<nuclei table>",
) -> SampleScore:
    """Score the pooled nuclei of one sample.

    Parameters
    ----------
    nuclei : DataFrame
        ``nuclei.csv`` rows of one sample (all its fields): ``call`` (str), ``scorable`` (bool),
        optional ``pattern``, ``count_<SIGNAL>`` (int), ``exclusion_reason``.
    panel : Panel or str
        Probe panel; ``panel.tracked_calls`` form the clone, ``panel.abnormal_calls`` are abnormal.
    cutoffs : CutoffSet, path or None
        Laboratory cut-offs (:func:`fishcount.cutoffs.load_cutoffs`); None = provisional default.
    keys : mapping, optional
        Sample keys copied to the output row (patient, timepoint, week...).
    adequate_nuclei, limited_nuclei : int, optional
        Adequacy thresholds (default from the criteria set, 200 / 100; clinical.md §6.1 R5).
    confidence : float
        Two-sided level of the Clopper–Pearson CIs.
    iscn_template : IscnTemplate or str
        ISCN style (:data:`ISCN_STYLES`).
    source : str
        Table name for error messages.

    Returns
    -------
    SampleScore

    Raises
    ------
    InputError
        Missing ``call``/``scorable`` column, a scorable nucleus with a call the panel does not
        define, cut-offs for another panel, ``nuclei`` not a DataFrame, a confidence outside (0, 1), or
        adequacy thresholds that are not whole numbers 0 < limited_nuclei <= adequate_nuclei.
    """
    from .panels import load_panel

    panel = load_panel(panel)
    adequate_nuclei, limited_nuclei = _checked_options(nuclei, adequate_nuclei, limited_nuclei, confidence, source)
    cs = load_cutoffs(cutoffs)
    check_cutoffs_panel(cs, [panel.id], source)
    for col in ("call", "scorable"):
        if col not in nuclei.columns:
            raise InputError(source, f"column '{col}' is missing (a nuclei.csv table is expected)")
    # CSV line numbers (header = line 1) when the index is the table's row position
    rows = (nuclei.index.to_numpy() + 2) if pd.api.types.is_integer_dtype(nuclei.index) else np.arange(len(nuclei)) + 2
    scorable = _scorable(nuclei["scorable"], source, rows)
    scored = nuclei.loc[scorable]
    call_str = scored["call"].astype(str)
    calls = call_str.tolist()
    known = set(panel.call_names)
    for i, c in zip(rows[scorable], calls):
        if c not in known:
            raise InputError(source, f"row {i}, column 'call': {c!r} is not a call of panel {panel.id} "
                                     f"({', '.join(panel.call_names)})")
    n = int(scorable.sum())
    cc = Counter(calls)
    call_counts = {c: int(cc.get(c, 0)) for c in panel.call_names}
    k = sum(call_counts[c] for c in panel.tracked_calls)
    lo, hi = clopper_pearson(k, n, confidence)
    pct = 100.0 * k / n if n else math.nan
    cut = cutoff_for_n(cs.clone, n) if n else math.nan
    eps = 1e-9
    positive = bool(n and pct > cut + eps)  # strictly above (clinical.md §6.1 R6)
    tracked = {}
    for c in panel.tracked_calls:
        kc = call_counts[c]
        lc, hc = clopper_pearson(kc, n, confidence)
        rule = cs.rule_for(c)
        cc_cut = cutoff_for_n(rule, n) if (n and rule) else math.nan
        pc = 100.0 * kc / n if n else math.nan
        tracked[c] = {"pct": pc, "ci_low_pct": 100 * lc, "ci_high_pct": 100 * hc, "cutoff_pct": cc_cut,
                      "positive": bool(n and rule is not None and pc > cc_cut + eps)}
    other = []
    for c in panel.abnormal_calls:
        if c in panel.tracked_calls or not n:
            continue
        rule = cs.rule_for(c)
        if rule is not None and 100.0 * call_counts[c] / n > cutoff_for_n(rule, n) + eps:
            other.append(c)
    # ISCN: the abnormal populations when positive, else the normal result (clinical.md §3.5)
    keys_ = panel.pattern_keys
    cols = [f"count_{k_}" for k_ in keys_]
    cnt = None
    if all(c in scored.columns for c in cols):
        vals = scored[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(vals) | (vals < 0) | (vals != np.round(vals))
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise InputError(source, f"row {rows[scorable][i]}, column '{cols[j]}': expected a whole number >= 0 "
                                     f"for a scorable nucleus, got {scored[cols[j]].iloc[i]!r}")
        cnt = vals.astype(np.int64)
    call_arr = np.asarray(calls, dtype=object)

    def modal(c: str) -> dict[str, int]:
        """Most frequent count vector of call ``c`` (ties: smallest); the call's rule without counts."""
        m = call_arr == c
        if cnt is None or not m.any():
            return _rule_counts(panel, c)
        uniq, k_ = np.unique(cnt[m], axis=0, return_counts=True)
        return {key: int(v) for key, v in zip(keys_, uniq[int(np.argmax(k_))])}

    def populations(c: str) -> list[tuple[dict[str, int], int]]:
        """The nuclei of call ``c`` as ISCN populations: one per distinct count vector (a call defined by a
        range, e.g. a variant of 2O2G1F / 1O2G1F, lists each pattern with its own nuclei), most frequent first;
        the call's rule when no counts are given."""
        m = call_arr == c
        if cnt is None or not m.any():
            return [(_rule_counts(panel, c), call_counts[c])]
        uniq, k_ = np.unique(cnt[m], axis=0, return_counts=True)
        order = sorted(range(len(k_)), key=lambda i: (-int(k_[i]), tuple(uniq[i])))
        return [({key: int(v) for key, v in zip(keys_, uniq[i])}, int(k_[i])) for i in order]

    pops = []
    if positive:
        # each tracked pattern has its own cut-off (clinical.md §6.1 R3): a pattern within its normal range is
        # not an abnormal population; when none is above its own but the union is, all present are listed
        own = [c for c in panel.tracked_calls if call_counts[c] and (tracked[c]["positive"]
                                                                      or cs.rule_for(c) is None)]
        if not any(tracked[c]["positive"] for c in panel.tracked_calls):
            own = [c for c in panel.tracked_calls if call_counts[c]]
        for c in sorted(own, key=lambda c: (-call_counts[c], c)):
            pops.extend(populations(c))
    for c in other:
        pops.extend(populations(c))
    normal = modal(panel.normal_call)
    adequacy = adequacy_for_n(n, adequate_nuclei, limited_nuclei)
    # no result from too few nuclei (clinical.md §6.1 R5: N < limited is inevaluable; R7 reports N with it)
    iscn = "" if adequacy == "not_evaluable" else iscn_string(panel, n, pops, normal_counts=normal,
                                                               template=iscn_template)
    if "pattern" in scored.columns:
        patt = Counter(scored["pattern"].astype(str).tolist())
    elif cnt is not None:
        patt = Counter(panel.pattern_string(dict(zip(keys_, map(int, r)))) for r in cnt)
    else:
        patt = Counter()
    patterns = dict(sorted(patt.items(), key=lambda kv: (-kv[1], kv[0])))
    excl = Counter()
    if "exclusion_reason" in nuclei.columns:
        for r in nuclei.loc[~scorable, "exclusion_reason"].tolist():  # ";"-separated reasons, each counted
            parts = [x.strip() for x in str(r).split(";") if x.strip()] if not pd.isna(r) else []
            excl.update(parts or ["unspecified"])
    caveat = FISH_CAVEAT + ("" if cs.validated else f" Note: {NOT_VALIDATED}.")
    return SampleScore(
        keys=dict(keys or {}), panel=panel.id, nuclei_total=int(len(nuclei)), nuclei_scored=n,
        call_counts=call_counts, nuclei_abnormal=int(k), clone_pct=pct, ci_low_pct=100 * lo, ci_high_pct=100 * hi,
        tracked=tracked, adequacy=adequacy, cutoff_pct=cut,
        cutoff_method=cs.label, cutoff_validated=cs.validated, positive=positive, other_positive=tuple(other),
        iscn=iscn, patterns=patterns, exclusions=dict(sorted(excl.items())), caveat=caveat,
    )


def score_samples(
    nuclei: pd.DataFrame,
    panel,
    cutoffs: CutoffSet | str | PathLike | None = None,
    adequate_nuclei: int | None = None,
    limited_nuclei: int | None = None,
    confidence: float = 0.95,
    iscn_template: IscnTemplate | str = "compact",
    source: str = "<nuclei table>",
) -> pd.DataFrame:
    """Score every sample of a pooled ``nuclei.csv`` table: the ``samples.csv`` table.

    Samples are the groups of the key columns present among ``patient``, ``timepoint``, ``week``
    (else ``sample``; else the whole table is one sample). All fields of a sample are pooled.

    Parameters
    ----------
    nuclei : DataFrame
        Pooled nuclei rows (see :func:`score_sample`) with the sample key columns.
    panel, cutoffs, adequate_nuclei, limited_nuclei, confidence, iscn_template, source
        As in :func:`score_sample`.

    Returns
    -------
    DataFrame
        One row per sample × panel: keys, ``panel``, ``nuclei_total``, ``nuclei_scored``,
        ``nuclei_excluded``, ``nuclei_abnormal`` (tracked union), ``n_<call>`` for every call,
        ``clone_pct``, ``ci_low_pct``, ``ci_high_pct``, per tracked call ``pct_<call>``,
        ``ci_low_pct_<call>``, ``ci_high_pct_<call>``, ``cutoff_pct_<call>``, ``positive_<call>``,
        ``adequacy``, ``cutoff_pct`` (for this N), ``cutoff_method``, ``cutoff_validated``,
        ``positive`` (clone % > cut-off), ``other_positive`` (non-tracked abnormal calls above
        their cut-off, ``;``-joined), ``iscn``, ``patterns`` (JSON pattern -> nuclei),
        ``exclusions`` (JSON reason -> nuclei), ``caveat``. Percentages unrounded, 0-100.

    Raises
    ------
    InputError
        As :func:`score_sample`; also a non-numeric ``week`` (naming row and column).
    """
    from .panels import load_panel

    panel = load_panel(panel)
    adequate_nuclei, limited_nuclei = _checked_options(nuclei, adequate_nuclei, limited_nuclei, confidence, source)
    cs = load_cutoffs(cutoffs)
    df = nuclei.reset_index(drop=True)
    keys = [k for k in SAMPLE_KEYS if k in df.columns] or (["sample"] if "sample" in df.columns else [])
    if "week" in df.columns:
        w = pd.to_numeric(df["week"], errors="coerce")
        bad = np.flatnonzero(w.isna().to_numpy() & df["week"].notna().to_numpy())
        if bad.size:
            raise InputError(source, f"row {int(bad[0]) + 2}, column 'week': expected a number, got {df['week'].iloc[bad[0]]!r}")
        df["week"] = w
    for k in keys:  # a blank key in some rows would make those nuclei a sample of their own, silently
        blank = (df[k].isna() | (df[k].astype(str).str.strip() == "")).to_numpy()
        if blank.any() and not blank.all():
            i = int(np.flatnonzero(blank)[0])
            raise InputError(source, f"row {i + 2}, column '{k}': empty, while other rows name a {k}; fill it in")
    if not len(df):  # no nuclei: no sample, but the samples.csv columns (a table a caller can still index)
        cols = list(score_sample(df, panel, cs, keys={k: None for k in keys}, adequate_nuclei=adequate_nuclei,
                                 limited_nuclei=limited_nuclei, confidence=confidence, iscn_template=iscn_template,
                                 source=source).to_row())
        return pd.DataFrame(columns=cols)
    rows = []
    groups = df.groupby(keys, dropna=False, sort=True) if keys else [((), df)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        kd = {k: (None if pd.isna(v) else v) for k, v in zip(keys, key)}
        if "sample" in df.columns and "sample" not in kd:
            vals = sorted({str(v) for v in g["sample"].dropna().tolist()})
            kd["sample"] = ";".join(vals)
        s = score_sample(g, panel, cs, keys=kd, adequate_nuclei=adequate_nuclei, limited_nuclei=limited_nuclei,
                         confidence=confidence, iscn_template=iscn_template, source=source)
        rows.append(s.to_row())
    out = pd.DataFrame(rows)
    return out
