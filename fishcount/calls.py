"""Per-nucleus calls: signals x nuclei -> counts, pattern, call, scorable.

A nucleus' count per signal is the number of its counted signals (``counts_as`` in the signal table,
after the split-signal, diffuse and fusion rules of :mod:`fishcount.spots`). Its pattern string and call
come from the panel (``Panel.pattern_string`` and ``Panel.call_for``: the rules are data in the panel TOML,
not code). A nucleus is scorable when segmentation QC passed and its signals pass the signal rules below;
otherwise ``exclusion_reason`` lists every reason, ``;``-separated, segmentation reasons first.

Signal exclusion reasons (clinical.md §3.2 and §6.1 R1):

``no_signal_<SIGNAL>``
    No signal of that colour ("Nuclei with no signals or with signals of only 1 color should not be
    scored", Leica HER2 guide, clinical.md §3.2; "no signal in one colour: unscorable", §3.4). In fusion
    panels a fused signal carries both colours.
``too_many_signals``
    More than ``panel.max_signals_per_channel`` signals of one colour: not a real copy number (debris,
    non-specific hybridisation; ASC pitfalls, clinical.md §3.2).
``dim_signals``
    A signal near the detection threshold (within the ambiguity band): the count would change with a
    slightly different threshold, so the nucleus is "poorly hybridised" (clinical.md §3.2, standard
    practice [U]).
``signal_at_boundary``
    A counted signal at the boundary with a touching nucleus cannot be assigned with confidence, so
    neither the nucleus holding it nor the touching one is counted (overlapping nuclei "Do not count",
    clinical.md §3.2; the distance is a design choice [I]).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from .panels import FUSION, Panel

__all__ = ["call_nuclei", "nuclei_columns", "as_bool", "SIGNAL_REASONS"]

#: Exclusion reasons added by the signal rules (besides the segmentation QC reasons).
SIGNAL_REASONS = ("no_signal_<SIGNAL>", "too_many_signals", "dim_signals", "signal_at_boundary")


def as_bool(col: pd.Series) -> np.ndarray:
    """A boolean column as bool, also when read back from CSV as text (``"True"``/``"False"``)."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col.fillna(False).to_numpy(bool)
    return col.astype(str).str.strip().str.lower().isin(["true", "1", "yes"]).to_numpy()


def nuclei_columns(panel: Panel) -> list[str]:
    """Leading columns of ``nuclei.csv`` for a panel (output contract v1, docs/outputs.md)."""
    counts = [f"count_{s}" for s in panel.signal_names] + (["count_fusion"] if panel.fusion_pair else [])
    return ["label", "centroid_y", "centroid_x", "area_um2", *counts, "pattern", "call", "scorable",
            "exclusion_reason"]


def call_nuclei(
    qc: pd.DataFrame,
    signals: pd.DataFrame,
    panel: Panel,
    *,
    dim_labels: Iterable[int] = (),
    boundary_labels: Iterable[int] = (),
) -> pd.DataFrame:
    """Count signals per nucleus and call each nucleus from the panel.

    Parameters
    ----------
    qc : DataFrame
        One row per nucleus with at least ``label``; ``centroid_y``, ``centroid_x``, ``area_um2``,
        ``scorable`` and ``exclusion_reason`` are used when present (the segmentation QC table,
        :class:`fishcount.segment.Segmentation`). Extra columns are kept after the contract columns.
    signals : DataFrame
        Signal table with ``label`` and ``counts_as`` (a signal name, ``"fusion"`` or ``""``), e.g. from
        :func:`fishcount.spots.pair_fusions`. Signals with label 0 (outside nuclei) are never counted.
    panel : Panel
        The probe panel (counting rules and calls).
    dim_labels : iterable of int
        Labels of nuclei with a signal in the ambiguity band around the threshold (``dim_signals``).
    boundary_labels : iterable of int
        Labels of nuclei with a counted signal at the boundary of a touching nucleus, and of the touching
        nuclei (``signal_at_boundary``; :func:`fishcount.spots.boundary_nuclei`).

    Returns
    -------
    DataFrame
        One row per nucleus, columns :func:`nuclei_columns` first (``count_<SIGNAL>`` int64, ``pattern``,
        ``call``, ``scorable`` bool, ``exclusion_reason`` str, ``""`` when scorable), then the other QC
        columns.

    Examples
    --------
    >>> import pandas as pd, fishcount as fc
    >>> qc = pd.DataFrame({"label": [1, 2]})
    >>> sig = pd.DataFrame({"label": [1, 1, 1, 2, 2, 2], "counts_as": ["EGR1", "D5S23", "D5S23"] * 2})
    >>> call_nuclei(qc, sig, fc.load_panel("del5q"))[["label", "pattern", "call"]].to_dict("list")
    {'label': [1, 2], 'pattern': ['1O2G', '1O2G'], 'call': ['del5q', 'del5q']}
    """
    keys = panel.pattern_keys
    labels = qc["label"].to_numpy(np.int64) if len(qc) else np.zeros(0, np.int64)
    n = len(labels)
    top = int(max(labels.max(initial=0), signals["label"].max() if len(signals) else 0)) + 1
    lab = signals["label"].to_numpy(np.int64) if len(signals) else np.zeros(0, np.int64)
    counts_as = signals["counts_as"].astype(str).to_numpy() if len(signals) else np.zeros(0, str)
    counts: dict[str, np.ndarray] = {}
    for key in keys:
        sel = (counts_as == key) & (lab > 0)
        counts[key] = np.bincount(lab[sel], minlength=top)[labels].astype(np.int64)

    cols: dict[str, object] = {"label": labels}
    for col in ("centroid_y", "centroid_x", "area_um2"):
        cols[col] = qc[col].to_numpy(np.float64) if col in qc else np.full(n, np.nan)
    for s in panel.signal_names:
        cols[f"count_{s}"] = counts[s]
    if panel.fusion_pair:
        cols["count_fusion"] = counts[FUSION]

    # pattern and call once per distinct count vector (a field has few distinct patterns)
    if n:
        mat = np.stack([counts[k] for k in keys], axis=1)
        uniq, inv = np.unique(mat, axis=0, return_inverse=True)
        inv = np.asarray(inv).reshape(-1)
        pats, calls = [], []
        for row in uniq:
            d = dict(zip(keys, (int(v) for v in row)))
            pats.append(panel.pattern_string(d))
            calls.append(panel.call_for(d))
        cols["pattern"] = np.asarray(pats, dtype=object)[inv]
        cols["call"] = np.asarray(calls, dtype=object)[inv]
    else:
        cols["pattern"] = pd.Series(dtype=object)
        cols["call"] = pd.Series(dtype=object)

    # exclusion reasons: segmentation first, then signal rules (each listed once, ';'-separated), built
    # per rule as columns of flags and joined once per distinct combination
    seg_reason = (
        qc["exclusion_reason"].fillna("").astype(str).to_numpy(dtype=object) if "exclusion_reason" in qc
        else np.full(n, "", dtype=object)
    )
    if "scorable" in qc:
        seg_ok = as_bool(qc["scorable"])
        seg_reason = np.where(~seg_ok & (seg_reason == ""), "segmentation_qc", seg_reason).astype(object)
    fused = counts[FUSION] if panel.fusion_pair else np.zeros(n, np.int64)
    pair = set(panel.fusion_pair or ())
    names: list[str] = []
    flags: list[np.ndarray] = []
    too_many = np.zeros(n, bool)
    for s in panel.signal_names:
        total = counts[s] + (fused if s in pair else 0)
        names.append(f"no_signal_{s}")
        flags.append(total == 0)
        too_many |= total > panel.max_signals_per_channel
    names += ["too_many_signals", "dim_signals", "signal_at_boundary"]
    flags += [
        too_many,
        np.isin(labels, np.fromiter(dim_labels, np.int64)),
        np.isin(labels, np.fromiter(boundary_labels, np.int64)),
    ]
    has_signal_reason = np.zeros(n, bool)
    for f in flags:
        has_signal_reason |= f
    reason = seg_reason.copy()
    if has_signal_reason.any():
        fmat = np.stack(flags, axis=1)
        rows = np.nonzero(has_signal_reason)[0]
        combo, inv = np.unique(fmat[rows], axis=0, return_inverse=True)
        joined = np.asarray([";".join(nm for nm, on in zip(names, c) if on) for c in combo], dtype=object)
        sig_part = joined[np.asarray(inv).reshape(-1)]
        seg_part = seg_reason[rows]
        reason[rows] = np.where(seg_part == "", sig_part, seg_part + ";" + sig_part)
    cols["scorable"] = reason == ""
    cols["exclusion_reason"] = reason
    extra = [c for c in qc.columns if c not in cols]
    if extra:
        if all(isinstance(qc[c].dtype, np.dtype) for c in extra):
            for c in extra:  # plain numpy columns: the arrays themselves (= qc[extra].reset_index(drop=True))
                cols[c] = qc[c].to_numpy()
        else:
            ex = qc[extra].reset_index(drop=True)
            for c in extra:
                cols[c] = ex[c]
    return pd.DataFrame(cols)
