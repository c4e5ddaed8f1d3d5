"""Plots of results (matplotlib, Agg backend; no display needed).

:func:`plot_trajectory` draws one patient's clone % over weeks with Clopper–Pearson CI bars, the
cut-off recomputed for each sample's N, 50 % of baseline, the endpoint window and the response
label; the batch report reuses it.
"""
from __future__ import annotations

import math
from os import PathLike
from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ._atomic import atomic_path  # noqa: E402
from .cutoffs import NOT_VALIDATED  # noqa: E402
from .scoring import FISH_CAVEAT  # noqa: E402

__all__ = ["plot_trajectory", "save_trajectory", "CATEGORY_COLORS"]

#: Marker colour per response category (other names are grey).
CATEGORY_COLORS = {
    "major": "#1a9850", "complete": "#1a9850",
    "minor": "#4dac26", "partial": "#4dac26",
    "none": "#d73027", "not_evaluable": "#999999", "": "#4575b4",
}


#: The trajectory gets a second panel near the cut-off when the samples' CIs reach above this many times the
#: largest cut-off and a sample lies within ZOOM_NEAR x the cut-off: on one linear axis from 0 to a 60 % baseline a
#: 3 % sample and a 6 % one (below and above a 4 % cut-off: response vs relapse) are a few pixels apart.
ZOOM_WHEN_TOP_ABOVE = 4.0
ZOOM_NEAR = 3.0


def _zoom_top(pct, hi, cut) -> float | None:
    """Upper limit (%) of the panel near the cut-off, or None when one axis shows the cut-off region well."""
    import numpy as np

    c = cut[~np.isnan(cut)]
    h = hi[~np.isnan(hi)]
    p = pct[~np.isnan(pct)]
    if not (c.size and h.size and p.size):
        return None
    cmax = float(c.max())
    if cmax <= 0 or h.max() <= ZOOM_WHEN_TOP_ABOVE * cmax or not (p <= ZOOM_NEAR * cmax).any():
        return None
    return float(math.ceil(ZOOM_NEAR * cmax))


def _draw_samples(ax, tp: pd.DataFrame, labels: bool) -> None:
    """Points with CI bars (hollow for limited N), their category labels, and each sample's own cut-off."""
    wk = tp["week"].to_numpy(dtype=float)
    pct = tp["clone_pct"].to_numpy(dtype=float)
    lo = tp["ci_low_pct"].to_numpy(dtype=float)
    hi = tp["ci_high_pct"].to_numpy(dtype=float)
    ax.plot(wk, pct, "-", color="#4575b4", lw=1, zorder=1)
    roles = tp["role"].fillna("").astype(str) if "role" in tp else pd.Series([""] * len(tp))
    adequacy = tp["adequacy"].fillna("").astype(str) if "adequacy" in tp else pd.Series([""] * len(tp))
    limited_shown = False
    for w, p, l_, h, cat, role, adq in zip(wk, pct, lo, hi, tp["category"].fillna("").astype(str), roles, adequacy):
        if math.isnan(p):
            continue
        col = CATEGORY_COLORS.get(cat, "#555555")
        hollow = adq == "limited"  # 100-199 nuclei (clinical.md §6.1 R5): classified, but flagged
        ax.errorbar([w], [p], yerr=[[p - l_], [h - p]], fmt="o", color=col, ecolor=col, capsize=4, ms=7, zorder=3,
                    mfc="white" if hollow else col, mew=1.5,
                    label="limited N (100-199 nuclei)" if hollow and not limited_shown and labels else None)
        limited_shown |= hollow
        label = cat or role
        if label and labels:
            ax.annotate(label, (w, h), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=8, color=col)
    # each sample's own cut-off (it depends on its N): a short dash at the sample, never a line through weeks
    # without a sample
    cut = tp["cutoff_pct"].to_numpy(dtype=float)
    gaps = [b - a for a, b in zip(wk[:-1], wk[1:]) if b > a]
    half = 0.35 * min(gaps) if gaps else 1.0
    ok = ~pd.isna(cut)
    if ok.any():
        ax.hlines(cut[ok], wk[ok] - half, wk[ok] + half, linestyles="--", color="#7f7f7f", lw=1.4,
                  label="cut-off for its N (positive = above)" if labels else None)


def plot_trajectory(timepoints: pd.DataFrame, patient: Mapping | None = None, criteria=None, ax=None):
    """Draw one patient's cytogenetic trajectory.

    Parameters
    ----------
    timepoints : DataFrame
        That patient's rows of ``response_timepoints.csv``: ``week``, ``clone_pct``,
        ``ci_low_pct``, ``ci_high_pct``, ``cutoff_pct`` (all %), ``category``, ``role``.
    patient : mapping, optional
        The patient's ``response.csv`` row (``patient``, ``best_response``, ``best_week``,
        ``endpoint_response``, ``endpoint_week``, ``baseline_pct``, ``events``, ``cutoff_validated``).
    criteria : Criteria, optional
        For the endpoint window and the title.
    ax : matplotlib Axes, optional
        Draw into this axes; a new figure (8.4 × 4.2 in, the legend beside the axes) otherwise, with a second
        panel of the range near the cut-off (0 to 3 × the cut-off) when one linear axis would squash it
        (:data:`ZOOM_WHEN_TOP_ABOVE`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    tp = timepoints.sort_values("week")
    hi_all = tp["ci_high_pct"].to_numpy(dtype=float)
    cut_all = tp["cutoff_pct"].to_numpy(dtype=float)
    zoom_top = _zoom_top(tp["clone_pct"].to_numpy(dtype=float), hi_all, cut_all)
    zax = None
    if ax is None and zoom_top is not None:  # a second panel near the cut-off, where relapse and response are read
        fig, (ax, zax) = plt.subplots(2, 1, figsize=(8.4, 5.8), dpi=110, sharex=True,
                                      gridspec_kw={"height_ratios": [2.2, 1.0]})
    elif ax is None:
        fig, ax = plt.subplots(figsize=(8.4, 4.2), dpi=110)
    else:
        fig = ax.figure
    _draw_samples(ax, tp, labels=True)
    if zax is not None:
        _draw_samples(zax, tp, labels=False)
        zax.set_ylim(0, zoom_top)
        zax.set_ylabel(f"near the cut-off\n(0-{zoom_top:g} %)", fontsize=8)
        zax.axvline(0, color="black", lw=0.6)
        ax.tick_params(labelbottom=False)
    hi = hi_all
    for a in (ax, zax):
        if a is None:
            continue
        main = a is ax  # the zoom panel repeats the lines without legend entries
        if patient is not None and not pd.isna(patient.get("baseline_pct", math.nan)):
            a.axhline(0.5 * float(patient["baseline_pct"]), ls=":", color="#fc8d59", lw=1.2,
                      label="50 % of baseline" if main else None)
        if criteria is not None:
            a.axvspan(criteria.endpoint_week - criteria.endpoint_window_weeks,
                      criteria.endpoint_week + criteria.endpoint_window_weeks, color="#dddddd", alpha=0.5,
                      label=f"endpoint week {criteria.endpoint_week:g} ± {criteria.endpoint_window_weeks:g}"
                      if main else None)
    ax.axvline(0, color="black", lw=0.6)
    (zax if zax is not None else ax).set_xlabel("weeks since treatment start")
    ax.set_ylabel("clone % (95 % Clopper–Pearson CI)")
    top = max([v for v in hi if not math.isnan(v)] + [5.0])
    ax.set_ylim(0, min(100.0, top * 1.18 + 2))
    title = ""
    if patient is not None:
        def txt(key: str) -> str:  # CSV round trips turn empty cells into NaN
            v = patient.get(key, "")
            return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)

        title = f"{txt('patient')}: best {txt('best_response')}"
        bw = patient.get("best_week", math.nan)
        responded = bool(patient.get("responder_best", True)) if "responder_best" in patient else \
            txt("best_response") not in ("none", "not_evaluable", "")
        if not pd.isna(bw) and responded:
            title += f" (week {float(bw):g}{', ' + txt('best_confirmed') if txt('best_confirmed') else ''})"
        title += f"; endpoint {txt('endpoint_response')}"
        if txt("events"):
            title += f"\n{txt('events')}"
    if criteria is not None:
        title += f"  [{criteria.id}]"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside: never on a point
    foot = FISH_CAVEAT
    if patient is not None and not bool(patient.get("cutoff_validated", True)):
        foot += f" Note: {NOT_VALIDATED}."
    fig.text(0.01, 0.005, foot, fontsize=7, color="#555555", wrap=True)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def save_trajectory(timepoints: pd.DataFrame, patient: Mapping | None, path: str | PathLike, criteria=None) -> Path:
    """Draw :func:`plot_trajectory` and save it (PNG/SVG/PDF by suffix) atomically; return the path."""
    path = Path(path)
    fig = plot_trajectory(timepoints, patient, criteria=criteria)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path
