"""The HTML report of a run folder: one self-contained page a clinician reads.

``write_report(run_dir)`` reads the tables a run wrote (``samples.csv``, ``response.csv``,
``run.json``, ``errors.csv``, the per-field ``gallery.png`` crops) and writes ``report.html`` with,
per patient, the clone-% trajectory with exact CI bars and the cut-off line, the response category
and events; per sample the call counts, ISCN string, adequacy and a gallery of nucleus crops per call;
a QC overview (nuclei excluded per reason, thresholds used, errors); the FISH caveat; run metadata.

Plots and crops are PNGs embedded as ``data:`` URIs, so the file can be mailed or archived alone.
The page uses no JavaScript and no external resource. It contains no analysis: every number comes
from the tables. See ``docs/report.md``.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ._atomic import write_text_atomic
from .errors import InputError

__all__ = ["write_report", "trajectory_png"]

#: clinical.md §6.2 R16 (Göhring et al., Haematologica 2011; Mallo et al., Leuk Res 2007). Used only
#: when the samples table carries no caveat column of its own (scoring.FISH_CAVEAT is the source).
_FALLBACK_CAVEAT = (
    "FISH response applies only to the probed locus; karyotyping is recommended to confirm response "
    "and detect clonal evolution."
)

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;margin:0 auto;max-width:1150px;
padding:0 18px 40px;color:#1d1d1f;line-height:1.4}
h1{margin:18px 0 4px;font-size:1.7em}h2{border-bottom:2px solid #ccd;padding-bottom:3px;margin-top:34px}
h3{margin:18px 0 6px}table{border-collapse:collapse;margin:6px 0 12px;font-size:.9em}
th,td{border:1px solid #d0d0d8;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f1f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.caveat{background:#fff6d6;border:1px solid #e5c656;padding:8px 12px;border-radius:4px;margin:10px 0}
.err{background:#fde8e8;border:1px solid #e08080;padding:8px 12px;border-radius:4px}
.muted{color:#666;font-size:.88em}.pos{color:#b00020;font-weight:600}.neg{color:#0a6b2c}
.flag{background:#ffe9c7;padding:1px 5px;border-radius:3px}.cat{font-weight:700;font-size:1.1em}
img{max-width:100%;height:auto;border:1px solid #ddd}nav a{margin-right:10px}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}code{font-size:.95em}
.iscn{font-family:ui-monospace,Menlo,Consolas,monospace}
td.iscn{min-width:16em;font-size:.95em}
"""


# -------------------------------------------------------------------------------------------------
# small helpers
# -------------------------------------------------------------------------------------------------
def _e(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return html.escape(str(v))


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return ""
        return str(int(v)) if float(v).is_integer() and digits == 0 else f"{v:.{digits}f}"
    return str(v)


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _table(df: pd.DataFrame, *, digits: int = 1, cls: str = "") -> str:
    if df is None or df.empty:
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{_e(str(c).replace('_', ' '))}</th>" for c in df.columns)
    is_iscn = [str(c).lower() == "iscn" for c in df.columns]
    rows = []
    for rec in df.itertuples(index=False):
        cells = []
        for v, iscn in zip(rec, is_iscn):
            num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            td = " class=iscn" if iscn else " class=num" if num else ""
            text = _e(_fmt(v, digits))
            if iscn:  # break a long nuc ish string after a comma or slash, never inside a probe name
                text = text.replace(",", ",<wbr>").replace("/", "/<wbr>")
            cells.append(f"<td{td}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        from .scoring import text_dtypes

        return pd.read_csv(path, keep_default_na=True, dtype=text_dtypes())  # patient 007 stays 007
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable CSV table ({exc})") from None


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(s))


def _anchors(names: Sequence[str]) -> dict[str, str]:
    """A unique HTML id per patient: ``patient-<slug>``, with ``-2``, ``-3``... when two slugs meet (``P 1``
    and ``P-1`` both give ``P-1``; a link must not jump to the other patient)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for n in names:
        base = f"patient-{_slug(n)}"
        a, k = base, 1
        while a in used:
            k += 1
            a = f"{base}-{k}"
        used.add(a)
        out[n] = a
    return out


def _json_cell(v: Any) -> dict:
    if isinstance(v, str) and v.strip().startswith("{"):
        try:
            return json.loads(v)
        except ValueError:
            return {}
    return {}


# -------------------------------------------------------------------------------------------------
# the trajectory plot
# -------------------------------------------------------------------------------------------------
def trajectory_png(timepoints: pd.DataFrame, patient: Mapping | None = None, criteria=None, *,
                   dpi: int = 100) -> bytes:
    """PNG bytes of one patient's clone-% trajectory (:func:`fishcount.plots.plot_trajectory`).

    Parameters
    ----------
    timepoints : DataFrame
        The patient's rows of ``response_timepoints.csv`` (``week``, ``clone_pct``, ``ci_low_pct``,
        ``ci_high_pct``, ``cutoff_pct`` in %, ``category``); rows of ``samples.csv`` also work
        (no category markers then).
    patient : mapping, optional
        The patient's ``response.csv`` row (title: best and endpoint response, events).
    criteria : Criteria, optional
        For the endpoint window.
    dpi : int
        Resolution.

    Returns
    -------
    bytes
        A PNG image.
    """
    import matplotlib.pyplot as plt

    from .plots import plot_trajectory

    tp = timepoints.copy()
    if "category" not in tp.columns:
        tp["category"] = ""
    if "cutoff_pct" not in tp.columns:
        tp["cutoff_pct"] = float("nan")
    fig = plot_trajectory(tp, patient, criteria=criteria)
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buf.getvalue()


# -------------------------------------------------------------------------------------------------
# sections
# -------------------------------------------------------------------------------------------------
_SAMPLE_COLS = [
    ("timepoint", "timepoint"), ("week", "week"), ("nuclei_scored", "N scored"),
    ("nuclei_abnormal", "clone nuclei"), ("clone_pct", "clone %"), ("ci_low_pct", "95% CI low"),
    ("ci_high_pct", "95% CI high"), ("cutoff_pct", "cut-off % (for N)"), ("positive", "positive"),
    ("adequacy", "adequacy"), ("n_fields", "fields analysed"), ("iscn", "ISCN"),
]
_TEXT_FIELDS = ("events", "flags", "best_confirmed", "best_response", "endpoint_response", "baseline_status")
_RESPONSE_HIGHLIGHT = ("best_response", "best_week", "endpoint_response", "response", "category",
                       "events", "flags", "status")


def _problems_by_sample(errors: pd.DataFrame | None, run: Mapping,
                        fields: pd.DataFrame | None) -> dict[str, list[tuple[str, str]]]:
    """Sample -> its run errors and field warnings (``("error"|"warning", text)``), so each sample says what went
    wrong with it beside its numbers (errors.csv ``sample``; run.json ``warnings`` by field or ``sample <id>``)."""
    out: dict[str, list[tuple[str, str]]] = {}
    if errors is not None and not errors.empty and "sample" in errors.columns:
        for _, e in errors.iterrows():
            if pd.notna(e["sample"]) and str(e["sample"]):
                out.setdefault(str(e["sample"]), []).append(("error", f"{e.get('file', '')}: {e.get('message', '')}"))
    field_sample = dict(zip(fields["field"].astype(str), fields["sample"].astype(str))) \
        if fields is not None and {"field", "sample"} <= set(fields.columns) else {}
    for key, ws in (run.get("warnings") or {}).items():
        sample = key[len("sample "):] if key.startswith("sample ") else field_sample.get(key)
        for w in ws or ():
            if sample is not None:
                out.setdefault(sample, []).append(("warning", w if key.startswith("sample ") else f"{key}: {w}"))
    return out


def _patient_section(patient: str, ps: pd.DataFrame, resp: pd.Series | None, run_dir: Path,
                     fields: pd.DataFrame | None, panel_calls: Sequence[str], tps: pd.DataFrame | None,
                     criteria, anchor: str | None = None, panel: str = "",
                     problems: Mapping[str, list[tuple[str, str]]] | None = None) -> str:
    out = [f"<section class='patient' id='{_e(anchor or 'patient-' + _slug(patient))}'><h2>Patient {_e(patient)}"
           + (f" · panel {_e(panel)}" if panel else "") + "</h2>"]
    if resp is not None:
        items = []
        for k in _RESPONSE_HIGHLIGHT:
            if k in resp.index and _fmt(resp[k]) != "":
                items.append(f"<tr><th>{_e(k.replace('_', ' '))}</th><td class='cat'>{_e(_fmt(resp[k]))}</td></tr>")
        rest = [k for k in resp.index if k not in _RESPONSE_HIGHLIGHT and k not in ("patient", "caveat")
                and _fmt(resp[k]) != ""]
        more = "".join(f"<tr><th>{_e(k.replace('_', ' '))}</th><td>{_e(_fmt(resp[k], 2))}</td></tr>" for k in rest)
        out.append("<h3>Cytogenetic response (FISH)</h3><table class='response'>" + "".join(items) + "</table>")
        if more:
            out.append(f"<details><summary>Response details</summary><table>{more}</table></details>")
    else:
        out.append("<p class='flag'>No response row for this patient (see response.csv / errors).</p>")
    ps = ps.sort_values("week") if "week" in ps else ps
    traj = tps if tps is not None and len(tps) else ps
    if {"week", "clone_pct", "ci_low_pct", "ci_high_pct"} <= set(traj.columns) and traj["clone_pct"].notna().any():
        prow = {k: ("" if isinstance(v, float) and math.isnan(v) and k in _TEXT_FIELDS else v)
                for k, v in (resp.to_dict() if resp is not None else {"patient": patient}).items()}
        png = trajectory_png(traj, prow, criteria)
        out.append(f"<img class='trajectory' alt='clone % trajectory of {_e(patient)}' src='{_png_uri(png)}'>")
    cols = [(c, n) for c, n in _SAMPLE_COLS if c in ps.columns]
    t = ps[[c for c, _ in cols]].copy()
    t.columns = [n for _, n in cols]
    out.append("<h3>Samples</h3>" + _table(t))
    for _, row in ps.iterrows():
        out.append(_sample_details(row, run_dir, fields, panel_calls, (problems or {}).get(str(row.get("sample")), [])))
    out.append("</section>")
    return "\n".join(out)


def _sample_details(row: pd.Series, run_dir: Path, fields: pd.DataFrame | None, panel_calls: Sequence[str],
                    problems: Sequence[tuple[str, str]] = ()) -> str:
    name = f"{row.get('timepoint', '')} (week {_fmt(row.get('week'), 1)})"
    flags = []
    for kind, text in problems:  # what failed or is doubtful in this sample, beside its numbers
        flags.append(f"<span class='flag'>{_e(kind)}: {_e(text)}</span> <a href='#qc'>(quality control)</a><br>")
    if str(row.get("adequacy", "")) not in ("", "adequate"):
        flags.append(f"<span class='flag'>adequacy: {_e(row.get('adequacy'))} (N = {_e(_fmt(row.get('nuclei_scored')))})</span>")
    if str(row.get("cutoff_validated", "")).lower() in ("false", "0"):
        flags.append("<span class='flag'>cut-off not validated by this laboratory</span>")
    parts = [f"<details class='sample' open><summary>Sample {_e(row.get('sample', name))}: {_e(name)}</summary>"]
    if flags:
        parts.append("<p>" + " ".join(flags) + "</p>")
    if row.get("iscn"):
        parts.append(f"<p>ISCN: <span class='iscn'>{_e(row.get('iscn'))}</span></p>")
    # calls of this sample's panel only (samples.csv of a mixed study has every panel's n_<call> columns, empty
    # for the others); an empty cell is no call of this panel, not 0 nuclei
    counts = [(c[2:], row[c]) for c in row.index if c.startswith("n_") and c != "n_fields"
              and pd.notna(row[c]) and str(row[c]).strip() != ""
              and (not panel_calls or c[2:] in panel_calls)]
    if counts:
        order = {c: i for i, c in enumerate(panel_calls)}
        counts.sort(key=lambda kv: order.get(kv[0], 99))
        n = row.get("nuclei_scored")
        ct = pd.DataFrame({
            "call": [c for c, _ in counts],
            "nuclei": [int(v) if pd.notna(v) else 0 for _, v in counts],
            "% of scored": [100.0 * v / n if n and pd.notna(v) else float("nan") for _, v in counts],
        })
        parts.append("<b>Counts per call</b>" + _table(ct))
    patterns = _json_cell(row.get("patterns"))
    if patterns:
        pt = pd.DataFrame({"pattern": list(patterns), "nuclei": list(patterns.values())})
        parts.append("<details><summary>Signal patterns</summary>" + _table(pt) + "</details>")
    parts.append(_gallery_html(row, run_dir, fields))
    parts.append("</details>")
    return "\n".join(parts)


def _gallery_html(row: pd.Series, run_dir: Path, fields: pd.DataFrame | None) -> str:
    """Embed the nucleus-crop gallery of the sample's field with the most clone nuclei; link the others."""
    if fields is None or fields.empty:
        return ""
    sample = row.get("sample")
    sub = fields[fields["sample"].astype(str) == str(sample)] if sample is not None else fields.iloc[0:0]
    if sub.empty and {"patient", "timepoint"} <= set(fields.columns):
        sub = fields[(fields["patient"].astype(str) == str(row.get("patient")))
                     & (fields["timepoint"].astype(str) == str(row.get("timepoint")))]
    items = []
    for _, f in sub.iterrows():
        g = run_dir / "fields" / str(f["field"]) / "gallery.png"
        if g.is_file():
            items.append((int(f.get("clone_nuclei", 0) or 0), str(f["field"]), g))
    if not items:
        return "<p class='muted'>no nucleus gallery for this sample</p>"
    items.sort(key=lambda t: (-t[0], t[1]))
    _, key, best = items[0]
    html_ = [f"<p><b>Nucleus crops per call</b> <span class='muted'>(field {_e(key)}; rows = calls)</span></p>",
             f"<img class='gallery' alt='nucleus gallery {_e(key)}' src='{_png_uri(best.read_bytes())}'>"]
    if len(items) > 1:
        links = " ".join(
            f"<a href='{_e(os.path.relpath(g, run_dir))}'>{_e(k)}</a>" for _, k, g in items[1:]
        )
        html_.append(f"<p class='muted'>other fields of this sample: {links}</p>")
    return "\n".join(html_)


def _qc_section(samples: pd.DataFrame, run: Mapping, errors: pd.DataFrame | None) -> str:
    out = ["<section id='qc'><h2>Quality control</h2>"]
    ex_rows = []
    for _, r in samples.iterrows():
        ex = _json_cell(r.get("exclusions"))
        rec = {"sample": r.get("sample", ""), "nuclei found": r.get("nuclei_total"),
               "scored": r.get("nuclei_scored"), "excluded": r.get("nuclei_excluded")}
        rec.update({f"excluded: {k}": v for k, v in ex.items()})
        ex_rows.append(rec)
    ex_df = pd.DataFrame(ex_rows)
    if not ex_df.empty:
        ex_df = ex_df.fillna(0)
    out.append("<h3>Nuclei excluded per reason</h3><p class='muted'>A nucleus can be excluded for several "
               "reasons at once (e.g. at the border and out of focus), so the reason columns can add up to more "
               "than <i>excluded</i>.</p>" + _table(ex_df, digits=0))
    th = run.get("thresholds", {}) or {}
    if th:
        sigs = sorted({s for v in th.values() for s in (v or {})})
        tdf = pd.DataFrame([{"field": k, **{s: (v or {}).get(s) for s in sigs}} for k, v in sorted(th.items())])
        desc = tdf[sigs].describe().loc[["count", "min", "50%", "max"]].T.reset_index() if sigs else pd.DataFrame()
        if not desc.empty:
            desc.columns = ["signal", "fields", "min", "median", "max"]
            desc["fields"] = desc["fields"].astype(int)
        out.append("<h3>Detection thresholds used (per field, SNR units)</h3>" + _table(desc, digits=2))
        out.append("<details><summary>Thresholds of every field</summary>" + _table(tdf, digits=2) + "</details>")
    warns = run.get("warnings") or {}
    if warns:
        wdf = pd.DataFrame([{"field": k, "warning": w} for k, ws in sorted(warns.items()) for w in ws])
        out.append(f"<h3>Warnings ({len(wdf)})</h3><div class='err'>Analysed, but look at these fields and "
                   "samples: their results may be wrong or missing.</div>" + _table(wdf))
    if errors is not None and not errors.empty:
        out.append(f"<h3>Errors ({len(errors)})</h3><div class='err'>The run went on without these; "
                   "samples that lost fields are scored on the remaining ones.</div>" + _table(errors))
    else:
        out.append("<h3>Errors</h3><p class='neg'>none</p>")
    out.append("</section>")
    return "\n".join(out)


def _meta_section(run: Mapping) -> str:
    out = ["<section id='run'><h2>Run metadata</h2>"]
    rows = []
    for k in ("fishcount_version", "created_utc", "study_folder", "field_table_source"):
        if k in run:
            rows.append((k.replace("_", " "), run[k]))
    pans = run.get("panels") if isinstance(run.get("panels"), dict) and run.get("panels") else \
        ({"": run["panel"]} if isinstance(run.get("panel"), dict) and run.get("panel") else {})
    for pan in pans.values():  # every panel of a mixed-panel study
        if isinstance(pan, dict):
            rows.append(("panel", f"{pan.get('id', '')} (sha256 {str(pan.get('sha256') or '')[:16]}…)"))
    st = run.get("settings")
    if isinstance(st, dict):
        n = sum(len(v) for v in (st.get("values") or {}).values())
        rows.append(("laboratory settings", f"{st.get('path', '')} (sha256 {str(st.get('sha256', ''))[:16]}…, "
                                            f"{n} value(s) replace the defaults)"))
    crit = run.get("criteria", {})
    if crit:
        rows.append(("response criteria", ", ".join(f"{k}={v}" for k, v in crit.items() if not isinstance(v, dict))))
    eng = run.get("engine", {})
    if eng:
        rows.append(("engine", ", ".join(f"{k}={v}" for k, v in eng.items())))
    for k, v in (run.get("counts") or {}).items():
        rows.append((f"{k}", v))
    for k, v in (run.get("timings") or {}).items():
        rows.append((f"time: {k}", v))
    out.append(_table(pd.DataFrame(rows, columns=["item", "value"]), digits=2))
    vers = run.get("versions") or {}
    if vers:
        out.append("<details><summary>Software versions</summary>"
                   + _table(pd.DataFrame(list(vers.items()), columns=["package", "version"])) + "</details>")
    params = run.get("parameters")
    if params:
        out.append("<details><summary>Parameters</summary><pre>" + _e(json.dumps(params, indent=1)) + "</pre></details>")
    out.append("</section>")
    return "\n".join(out)


# -------------------------------------------------------------------------------------------------
# entry point
# -------------------------------------------------------------------------------------------------
def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 title: str | None = None) -> Path:
    """Write the HTML report of a run folder.

    Parameters
    ----------
    run_dir : path
        A folder written by :func:`fishcount.batch.run_batch` (``samples.csv`` required;
        ``response.csv``, ``run.json``, ``errors.csv``, ``nuclei.parquet`` and the per-field
        ``fields/<key>/gallery.png`` are used when present).
    out : path, optional
        Target file (default ``run_dir/report.html``), written atomically.
    title : str, optional
        Page title (default: "fishcount report: <panel>").

    Returns
    -------
    Path
        The report file.

    Raises
    ------
    InputError
        The folder or its ``samples.csv`` is missing, or a table cannot be read.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(run_dir, "run folder not found")
    samples = _read_csv(run_dir / "samples.csv")
    if samples is None:
        raise InputError(run_dir / "samples.csv", "not found; is this a `fishcount run` output folder?")
    if "patient" not in samples.columns:
        raise InputError(run_dir / "samples.csv", "column 'patient' is missing")
    response = _read_csv(run_dir / "response.csv")
    errors = _read_csv(run_dir / "errors.csv")
    run: dict = {}
    if (run_dir / "run.json").is_file():
        try:
            run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(run_dir / "run.json", f"not valid JSON ({exc})") from None
    fields = _fields_with_clone(run_dir, samples)
    problems = _problems_by_sample(errors, run, fields)
    panel_id = str(samples["panel"].iloc[0]) if "panel" in samples.columns and len(samples) else \
        ((run.get("panel") if isinstance(run.get("panel"), dict) else None) or {}).get("id", "")
    panel_calls: list[str] = []
    try:
        from .panels import load_panel

        panel_calls = list(load_panel(panel_id).call_names) if panel_id else []
    except Exception:  # noqa: BLE001 - a custom panel file may have moved; order calls by name then
        panel_calls = []
    caveats = sorted({str(c) for c in samples.get("caveat", pd.Series(dtype=str)).dropna()}) or [_FALLBACK_CAVEAT]
    all_panels = sorted(samples["panel"].dropna().astype(str).unique()) if "panel" in samples.columns else []
    title = title or f"fishcount report: {', '.join(all_panels) if len(all_panels) > 1 else panel_id}"

    patients = sorted(samples["patient"].astype(str).unique())
    multi = len(all_panels) > 1
    resp_by: dict = {}  # (patient, panel) -> response row (panel "" when the table has none)
    if response is not None and "patient" in response.columns:
        for _, r in response.iterrows():
            resp_by[(str(r["patient"]), str(r["panel"]) if multi and "panel" in response.columns else "")] = r
    body = [f"<h1>{_e(title)}</h1>",
            f"<p class='muted'>{_e(run.get('created_utc', ''))} · fishcount {_e(run.get('fishcount_version', ''))} · "
            f"{len(patients)} patients · {len(samples)} samples</p>"]
    body += [f"<div class='caveat'><b>Caveat.</b> {_e(c)}</div>" for c in caveats]
    n_err = 0 if errors is None else len(errors)
    if n_err:
        body.append(f"<div class='err'>This run completed with {n_err} error(s); see <a href='#qc'>Quality control</a>.</div>")
    anchors = _anchors(patients)
    body.append("<nav>" + "".join(f"<a href='#{_e(anchors[p])}'>{_e(p)}</a>" for p in patients)
                + "<a href='#qc'>QC</a><a href='#run'>run</a></nav>")
    # summary
    if response is not None and not response.empty:
        show = [c for c in ["patient", *(["panel"] if multi else []), *_RESPONSE_HIGHLIGHT] if c in response.columns]
        body.append("<h2>Summary</h2>" + _table(response[show] if len(show) > 1 else response))
    timepoints = _read_csv(run_dir / "response_timepoints.csv")
    criteria = None
    crit_ref = (run.get("criteria") or {}).get("path") or (run.get("criteria") or {}).get("id")
    if crit_ref and crit_ref != "custom":
        try:
            from .response import load_criteria

            criteria = load_criteria(crit_ref)
        except Exception:  # noqa: BLE001 - the plot then has no endpoint window
            criteria = None
    calls_of: dict[str, list[str]] = {}  # each panel's calls, read once (not once per patient)
    for pan in all_panels if multi else []:
        try:
            from .panels import load_panel

            calls_of[pan] = list(load_panel(pan).call_names)
        except Exception:  # noqa: BLE001 - a moved custom panel file: calls by name then
            calls_of[pan] = []
    for p in patients:
        ps_all = samples[samples["patient"].astype(str) == p]
        # a patient scored with two panels: one section per panel (its response, trajectory and samples), never
        # one trajectory through both panels' points
        pans = sorted(ps_all["panel"].astype(str).unique()) if multi else [""]
        for k, pan in enumerate(pans):
            ps = ps_all[ps_all["panel"].astype(str) == pan] if pan else ps_all
            tps = None
            if timepoints is not None and "patient" in timepoints.columns:
                tps = timepoints[timepoints["patient"].astype(str) == p]
                if pan and "panel" in tps.columns:
                    tps = tps[tps["panel"].astype(str) == pan]
            calls = calls_of[pan] if pan else panel_calls
            body.append(_patient_section(p, ps, resp_by.get((p, pan)), run_dir, fields, calls, tps, criteria,
                                         anchor=anchors[p] + (f"-{_slug(pan)}" if k else ""),
                                         panel=pan if len(pans) > 1 or multi else "", problems=problems))
    body.append(_qc_section(samples, run, errors))
    body.append(_meta_section(run))
    page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    target = Path(out) if out is not None else run_dir / "report.html"
    write_text_atomic(target, page)
    return target


def _fields_with_clone(run_dir: Path, samples: pd.DataFrame) -> pd.DataFrame | None:
    """Fields of the run with their sample and number of clone (tracked-call) nuclei, from nuclei.parquet."""
    pq_path = run_dir / "nuclei.parquet"
    if not pq_path.is_file():
        return None
    import pyarrow.parquet as pq

    names = pq.read_schema(pq_path).names
    cols = [c for c in ("field", "sample", "patient", "timepoint", "panel", "call", "scorable") if c in names]
    if "field" not in cols:
        return None
    nuc = pq.read_table(pq_path, columns=cols).to_pandas()
    tracked: set[str] = set()
    if "panel" in nuc.columns:
        from .panels import load_panel

        for pid in nuc["panel"].dropna().astype(str).unique():
            try:
                tracked |= set(load_panel(pid).tracked_calls)
            except Exception:  # noqa: BLE001
                pass
    clone = nuc["call"].astype(str).isin(tracked) if "call" in nuc.columns else pd.Series(False, index=nuc.index)
    if "scorable" in nuc.columns:
        clone &= nuc["scorable"].astype(str).str.lower().isin(["true", "1"])
    nuc["clone_nuclei"] = clone.astype(int)
    keys = [c for c in ("field", "sample", "patient", "timepoint") if c in nuc.columns]
    return nuc.groupby(keys, sort=True)["clone_nuclei"].sum().reset_index()
