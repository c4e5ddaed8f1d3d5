"""Batch runs over a study folder: manifest, resumable crash-safe per-field work, Dask, pooled tables.

A run turns a folder of FISH fields (many patients, several timepoints) into one output folder::

    OUT/
      fields/<field key>/        the per-field outputs of ``fishcount analyze`` + ``_done.json`` marker
      nuclei.parquet, nuclei.csv every nucleus of every field, with patient/timepoint/week/sample columns
      samples.csv                one row per sample (scoring.score_samples), the input of ``fishcount response``
      response.csv               one row per patient (response.classify_response)
      errors.csv                 file, stage, message, sample: everything that failed (the run goes on)
      run.json                   versions, parameters, panel and criteria hashes, thresholds used, field
                                 warnings, timings
      report.html                the clinician's report (fishcount.report)

The runner contains no analysis code: every computation is a call into ``io``, ``analyze``,
``scoring`` and ``response``. See ``docs/batch.md``.

Crash safety
------------
Each field is analysed into a temporary folder beside its final place; the completion marker
``_done.json`` (input size, mtime, SHA-256, parameter hash) is written into it last, and the folder
is then renamed into place. A field folder therefore exists only complete. A rerun skips fields whose
marker matches the input and parameters, redoes changed ones, and rebuilds the pooled tables from the
field folders listed in the manifest, so no row is ever duplicated.
"""
from __future__ import annotations

import contextlib
import csv
import io
import dataclasses
import glob
import hashlib
import json
import logging
import math
import os
import platform
import re
import shutil
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import __version__
from ._atomic import atomic_open, atomic_path, swap_in_folder, write_csv_atomic, write_text_atomic
from .errors import FishcountError, InputError
from .panels import DEFAULT_PANEL, Panel, load_panel

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "read_manifest",
    "infer_layout",
    "find_study_fields",
    "week_from_timepoint",
    "field_fingerprint",
    "process_field",
    "run_batch",
    "BatchResult",
    "FIELD_SUFFIXES",
    "MANIFEST_REQUIRED",
]

log = logging.getLogger(__name__)

#: File name endings read as fields (longest first so ``.ome.tif`` wins over ``.tif``).
FIELD_SUFFIXES: tuple[str, ...] = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
#: Manifest columns that must be present.
MANIFEST_REQUIRED: tuple[str, ...] = ("path", "patient", "timepoint", "week")
#: Optional manifest columns with a meaning (anything else is carried through as is).
MANIFEST_OPTIONAL: tuple[str, ...] = ("panel", "sample", "slide")
#: Columns the runner adds in front of every pooled nucleus row.
POOLED_KEY_COLUMNS: tuple[str, ...] = ("sample", "patient", "timepoint", "week", "slide", "panel", "field", "source")
#: Columns of the field table that say where a field is read from: never carried into the pooled nuclei or
#: the samples (a field's ``series`` in a multi-position file is in its key, ``<stem>_s<k>``).
_WHERE_COLUMNS: tuple[str, ...] = ("path", "files", "series")

MARKER = "_done.json"
#: How long to wait for a ``--scheduler`` to answer.
SCHEDULER_TIMEOUT = "20s"
RUN_MARKER = ".fishcount-run"
MARKER_VERSION = 1

_MANIFEST_EXAMPLE = (
    "example manifest.csv: 'path,patient,timepoint,week' then rows like 'P01/week00/*.tif,P01,week00,0'"
)
_LAYOUT_EXAMPLE = (
    "expected FOLDER/<patient>/<timepoint>/<field>.tif, e.g. study/P01/week00/field01.ome.tif "
    "and study/P01/week16/field01.ome.tif, or give --manifest manifest.csv"
)


# -------------------------------------------------------------------------------------------------
# field discovery
# -------------------------------------------------------------------------------------------------
def _is_truth(name: str) -> bool:
    """Simulator ground-truth files (``*_truth*``) sit beside fields and are never fields."""
    return "_truth" in name.lower()


def _is_field_file(path: Path, pictures: bool = False) -> bool:
    """A field image by its name: a TIFF (or, with ``pictures``, a PNG or JPEG), not hidden, not a truth file."""
    from .io import PICTURE_SUFFIXES

    name = path.name
    if name.startswith(".") or _is_truth(name):
        return False
    return name.lower().endswith(FIELD_SUFFIXES + (PICTURE_SUFFIXES if pictures else ()))


def _in_run_folder(path: Path, folder: Path) -> bool:
    """True if ``path`` lies in a fishcount output folder (holds the run marker) below ``folder``."""
    for parent in path.parents:
        if (parent / RUN_MARKER).exists():
            return True
        if parent == folder or parent == parent.parent:
            return False
    return False


def find_study_fields(folder: str | os.PathLike) -> list[Path]:
    """All field image files under ``folder`` (recursively), sorted, truth files and hidden files excluded.

    Parameters
    ----------
    folder : path
        The study folder.

    Returns
    -------
    list of Path
        Image files ending in one of :data:`FIELD_SUFFIXES`.
    """
    folder = Path(folder)
    out = []
    seen: set[str] = set()
    # symlinked patient / timepoint folders are followed (a study assembled from links), each real folder once
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up (a loop) or to a folder already searched
            dirs[:] = []
            continue
        seen.add(real)
        if RUN_MARKER in files:  # a fishcount output folder inside the study: not input
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            p = Path(root) / f
            if _is_field_file(p):
                out.append(p)
    return sorted(out)


# unit, then the number after an optional space or "_" ("week16", "week_16"); a negative number after a
# separator ("day_-7", "d -14", "week--2"). "day-7" (day 7 or day -7?) matches none and is refused with a hint.
_NUMBER = r"(?:[\s_]?(?P<pos>\d+(?:\.\d+)?)|[\s_\-]-(?P<neg>\d+(?:\.\d+)?))"
_WEEK_PATTERNS: tuple[tuple[re.Pattern, float], ...] = (
    (re.compile(rf"^(?:w|wk|week){_NUMBER}$", re.I), 1.0),
    (re.compile(rf"^(?:d|day){_NUMBER}$", re.I), 1.0 / 7.0),
    (re.compile(rf"^(?:m|mo|month){_NUMBER}$", re.I), 52.0 / 12.0),
)
_AMBIGUOUS_MINUS = re.compile(r"^(?:w|wk|week|d|day|m|mo|month)-\d", re.I)
_BASELINE_NAMES = {"baseline", "screening", "pre", "pretreatment", "diagnosis", "bl"}


def week_from_timepoint(timepoint: str) -> float | None:
    """The study week encoded in a timepoint folder name, or None if the name encodes none.

    ``week16``, ``wk16``, ``w16``, ``week_16`` -> 16; ``day28`` / ``d28`` -> 4; ``month3`` / ``m3``
    -> 13.0 (52/12 weeks per month); ``baseline``, ``screening``, ``pre``, ``diagnosis`` -> 0; a negative
    number after a separator, ``day_-7`` / ``d -14`` -> -1 / -2. ``day-7`` (day 7 or day -7?) encodes none.

    Parameters
    ----------
    timepoint : str
        Folder name of one timepoint.

    Returns
    -------
    float or None
        Weeks since baseline.
    """
    name = timepoint.strip()
    if name.lower() in _BASELINE_NAMES:
        return 0.0
    for pat, factor in _WEEK_PATTERNS:
        m = pat.match(name)
        if m:
            v = float(m.group("pos")) if m.group("pos") is not None else -float(m.group("neg"))
            return round(v * factor, 4) + 0.0  # + 0.0: never -0.0
    return None


def infer_layout(folder: str | os.PathLike, *, panel: str = DEFAULT_PANEL) -> pd.DataFrame:
    """The field table of a study laid out as ``FOLDER/<patient>/<timepoint>/<field>.tif``.

    The week of each timepoint comes from its folder name (:func:`week_from_timepoint`).

    Parameters
    ----------
    folder : path
        The study folder.
    panel : str
        Panel id (or .toml path) of every field.

    Returns
    -------
    pandas.DataFrame
        The field table (see :func:`read_manifest`).

    Raises
    ------
    InputError
        If the folder is missing, holds no fields, holds fields at another depth, or a timepoint
        folder name encodes no week; the message shows the expected layout.
    """
    folder = Path(folder)
    if folder.is_file():
        raise InputError(folder, "is a file, not a study folder: `fishcount run` takes the folder of a study "
                                 "(FOLDER/<patient>/<timepoint>/fields); for single images use `fishcount analyze`")
    if not folder.is_dir():
        raise InputError(folder, "study folder not found")
    files = find_study_fields(folder)
    if not files:
        from .io import PICTURE_SUFFIXES

        pictures = any(f.is_file() and _is_field_file(f, pictures=True) and not _in_run_folder(f, folder)
                       for f in folder.rglob("*") if f.name.lower().endswith(PICTURE_SUFFIXES))
        hint = (" (the folder holds PNG/JPEG pictures: list them in a manifest, e.g. "
                "'P01/week00/*.jpg,P01,week00,0')" if pictures else "")
        raise InputError(folder, f"no field images (.tif/.tiff/.ome.tif) found{hint}; {_LAYOUT_EXAMPLE}")
    rows = []
    for f in files:
        rel = f.relative_to(folder)
        if len(rel.parts) != 3:
            raise InputError(
                folder,
                f"unrecognised folder layout at '{rel.as_posix()}'; {_LAYOUT_EXAMPLE}",
            )
        patient, timepoint, _ = rel.parts
        week = week_from_timepoint(timepoint)
        if week is None:
            raise InputError(
                folder / patient / timepoint,
                (f"timepoint folder '{timepoint}' is ambiguous: is the '-' a separator or a minus? name it "
                 f"{timepoint.replace('-', '')} or {timepoint.replace('-', '_-', 1)}, or give --manifest "
                 "manifest.csv with a week column") if _AMBIGUOUS_MINUS.match(timepoint) else
                (f"cannot tell the week from timepoint folder '{timepoint}'; name it like week00, week16, day28, "
                 "month3 or baseline, or give --manifest manifest.csv with a week column"),
            )
        rows.append({"path": str(f), "patient": patient, "timepoint": timepoint, "week": week})
    df = pd.DataFrame(rows)
    grouped = []
    for _, grp in df.groupby(["patient", "timepoint"], sort=False):
        meta = grp.iloc[0].to_dict()
        for files in _group_files([Path(p) for p in grp["path"]], panel):
            grouped.append({**meta, "path": str(files[0]), "files": os.pathsep.join(map(str, files))})
    return _finish_table(pd.DataFrame(grouped), folder, panel, source=str(folder))


def _group_files(files: list[Path], panel: str) -> list[list[Path]]:
    """Group per-channel files of one field (``field01_DAPI.tif``, ``field01_EGR1.tif``...) with
    ``io.find_fields``; every other file is its own field."""
    if len(files) < 2:
        return [files]
    from .io import find_fields

    return find_fields(files, panel)


def _finish_table(df: pd.DataFrame, folder: Path, panel: str, source: str) -> pd.DataFrame:
    """Fill defaults (panel, sample, slide), add ``field`` keys, check consistency."""
    df = df.copy()
    if "panel" not in df.columns:
        df["panel"] = panel
    df["panel"] = df["panel"].fillna("").astype(str).str.strip().replace("", panel)
    if "slide" not in df.columns:
        df["slide"] = ""
    df["slide"] = df["slide"].fillna("").astype(str)
    if "sample" not in df.columns:
        df["sample"] = ""
    df["sample"] = df["sample"].fillna("").astype(str).str.strip()
    default_sample = df["patient"].astype(str) + "_" + df["timepoint"].astype(str)
    df["sample"] = df["sample"].where(df["sample"] != "", default_sample)
    df["week"] = df["week"].astype(float)
    # one sample = one patient, one timepoint, one week, one panel
    for col in ("patient", "timepoint", "week", "panel"):
        n = df.groupby("sample")[col].nunique()
        bad = n[n > 1]
        if len(bad):
            s = bad.index[0]
            vals = sorted(map(str, df.loc[df["sample"] == s, col].unique()))
            raise InputError(source, f"sample '{s}' has more than one {col}: {', '.join(vals)}")
    n = df.groupby(["patient", "timepoint"])["week"].nunique()
    bad = n[n > 1]
    if len(bad):
        p, t = bad.index[0]
        raise InputError(source, f"patient '{p}' timepoint '{t}' is given more than one week")
    # the response needs one sample per patient, panel and week: two would only be refused after the analysis
    per_week = df.groupby(["panel", "patient", "week"])["sample"].unique()
    bad = per_week[per_week.map(len) > 1]
    if len(bad):
        (_, p, w), samples = bad.index[0], sorted(bad.iloc[0])
        tps = [sorted(df.loc[df["sample"] == s_, "timepoint"].unique())[0] for s_ in samples]
        raise InputError(source, f"patient '{p}' has two samples at week {w:g}: "
                                 + " and ".join(f"'{s_}' (timepoint '{t}')" for s_, t in zip(samples, tps))
                                 + "; one sample per patient and week (rename a timepoint, or give the weeks "
                                   "in a manifest)")
    if "files" not in df.columns:
        df["files"] = df["path"]
    df = _expand_positions(df)
    df["field"] = [_field_key([Path(f) for f in fs.split(os.pathsep)], folder)
                   + ("" if k is None else f"_s{int(k)}") for fs, k in zip(df["files"], df["series"])]
    dup = df["field"].duplicated(keep=False)
    if dup.any():
        key = df.loc[dup, "field"].iloc[0]
        two = df.loc[df["field"] == key, "path"].tolist()[:2]
        raise InputError(source, f"two fields map to the same output key '{key}': {two[0]} and {two[1]} (output "
                                 "folders keep letters, digits and . _ -, the rest becomes _); rename one")
    front = ["path", "field", "sample", "patient", "timepoint", "week", "slide", "panel", "files", "series"]
    return df[front + [c for c in df.columns if c not in front]].reset_index(drop=True)


def _expand_positions(df: pd.DataFrame) -> pd.DataFrame:
    """Each multi-position TIFF of the table (several full-size images in one file,
    :func:`fishcount.io.image_positions`), and each per-channel group whose files hold the same positions,
    becomes one row per image, its ``series`` number in the ``series`` column (None for every other field):
    each position is a field of its own sample."""
    from .io import image_positions

    rows, series = [], []
    for _, row in df.iterrows():
        files = str(row["files"]).split(os.pathsep)
        ks = image_positions(files[0] if len(files) == 1 else files)
        for k in ks or [None]:
            rows.append(row)
            series.append(k)
    out = pd.DataFrame(rows).reset_index(drop=True) if rows else df.iloc[0:0].copy()
    out["series"] = pd.Series(series, dtype=object, index=out.index)
    return out


def _field_key(files: list[Path], folder: Path) -> str:
    """Output sub-folder of one field: its path under the study folder without the image suffix
    (for a per-channel group, the common prefix of its file names)."""
    from .io import stem_of

    path = files[0].parent / stem_of(files)  # a per-channel group: its files' common stem (as Field.stem)
    try:  # as laid out under the study folder (a symlinked file or folder in it keeps its place)
        rel = Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(folder)))
        parts = list(rel.parts)
        if ".." in parts:
            raise ValueError
    except ValueError:
        try:
            rel = path.resolve().relative_to(folder.resolve())
            parts = list(rel.parts)
        except ValueError:  # outside the study folder: a stable, unique key from the absolute path
            h = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
            parts = ["_external", f"{h}_{path.name}"]
    safe = [re.sub(r"[^\w.\-]+", "_", p) for p in parts]  # \w: letters of any script (田中, Åse) stay
    return "/".join(safe)


def read_manifest(
    manifest: str | os.PathLike,
    folder: str | os.PathLike | None = None,
    *,
    panel: str = DEFAULT_PANEL,
) -> pd.DataFrame:
    """Read a study manifest CSV into the field table (one row per field image).

    The manifest has columns ``path`` (relative to ``folder``; a glob such as ``P01/week00/*.tif``
    allowed; absolute paths allowed), ``patient``, ``timepoint``, ``week`` (weeks since baseline,
    a number), and optionally ``panel`` (default: ``panel``), ``sample`` (default
    ``<patient>_<timepoint>``) and ``slide``. Any other column is carried through to the pooled tables.
    Globs never match simulator truth files (``*_truth*``) or hidden files.

    Parameters
    ----------
    manifest : path
        The CSV file.
    folder : path, optional
        Folder the paths are relative to (default: the manifest's folder).
    panel : str
        Panel of rows without a ``panel`` value.

    Returns
    -------
    pandas.DataFrame
        Columns ``path`` (absolute, str), ``field`` (output key), ``sample``, ``patient``,
        ``timepoint``, ``week`` (float64), ``slide``, ``panel``, then the extra columns.

    Raises
    ------
    InputError
        One line naming the manifest (and row) for: a missing or unreadable file, a missing
        column, a duplicated column, no rows, an empty required value, a week that is not a
        number, a path or glob matching no field, a truth file listed as a field, a file listed
        twice, or a sample with conflicting patient/timepoint/week/panel.
    """
    manifest = Path(manifest)
    folder = Path(folder) if folder is not None else manifest.parent
    src = str(manifest)
    if not manifest.is_file():
        raise InputError(manifest, "manifest file not found")
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(manifest, "manifest is not UTF-8 text (save it as CSV UTF-8)") from None
    except OSError as exc:
        raise InputError(manifest, f"cannot read manifest ({exc.strerror or exc})") from None
    reader = csv.reader(io.StringIO(text, newline=""))  # a quoted cell keeps its line break
    numbered: list[tuple[int, list[str]]] = []
    start = 1
    for r in reader:
        numbered.append((start, r))  # the line each record starts on, as a spreadsheet or editor shows it
        start = reader.line_num + 1
    numbered = [(n, r) for n, r in numbered if any(c.strip() for c in r)]
    if not numbered:
        raise InputError(manifest, f"manifest is empty; {_MANIFEST_EXAMPLE}")
    header = [h.strip() for h in numbered[0][1]]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InputError(manifest, f"column(s) {', '.join(dupes)} appear more than once")
    if "" in header:
        raise InputError(manifest, f"column {header.index('') + 1} has no name")
    missing = [c for c in MANIFEST_REQUIRED if c not in header]
    if missing:
        raise InputError(manifest, f"missing column(s) {', '.join(missing)}; {_MANIFEST_EXAMPLE}")
    body = numbered[1:]
    if not body:
        raise InputError(manifest, f"manifest has a header but no rows; {_MANIFEST_EXAMPLE}")
    records = []
    seen: dict[str, int] = {}
    checked: set[str] = set()
    for i, r in body:
        if len(r) != len(header):
            raise InputError(manifest, f"line {i} has {len(r)} values, the header has {len(header)}")
        rec = {h: v.strip() for h, v in zip(header, r)}
        for c in MANIFEST_REQUIRED:
            if rec[c] == "":
                raise InputError(manifest, f"line {i}: empty '{c}'")
        try:
            week = float(rec["week"])
        except ValueError:
            raise InputError(manifest, f"line {i}: week {rec['week']!r} is not a number of weeks") from None
        if not math.isfinite(week):
            raise InputError(manifest, f"line {i}: week {rec['week']!r} is not a number of weeks")
        rec["week"] = week
        row_panel = rec.get("panel") or panel
        if row_panel not in checked:  # an unknown panel names the manifest line, not just the panel
            try:
                _load_panel_for(row_panel, folder)
            except FishcountError as exc:
                raise InputError(manifest, f"line {i}: panel {row_panel!r}: {exc.reason}") from None
            checked.add(row_panel)
        for files in _group_files(_expand(rec["path"], folder, manifest, i), _panel_ref(row_panel, folder)):
            for f in files:
                key = str(f.resolve())
                if key in seen:
                    raise InputError(manifest, f"line {i}: {f} is already listed on line {seen[key]}")
                seen[key] = i
            records.append({**rec, "path": str(files[0]), "files": os.pathsep.join(map(str, files))})
    df = pd.DataFrame(records, columns=header + ["files"])
    for pid in sorted(set(df["panel"]) - {""} if "panel" in df.columns else set()):
        _load_panel_for(pid, folder)  # a bad panel fails here, before any work
    _check_extra_columns(header, [_load_panel_for(p, folder) for p in sorted(checked)], manifest)
    if "panel" in df.columns:
        df["panel"] = [
            str((folder / p).resolve()) if p and p.lower().endswith(".toml") and not Path(p).is_absolute() else p
            for p in df["panel"]
        ]
    return _finish_table(df, folder, panel, source=src)


def _check_extra_columns(header: Sequence[str], panels: Sequence[Panel], manifest: Path) -> None:
    """Refuse a manifest column named like a column fishcount writes (``call``, ``scorable``, ``field``,
    ``clone_pct``...): carried through to the pooled tables it would replace the nuclei's own values (every
    nucleus of the field given the manifest's call) or vanish from samples.csv, without a word."""
    from .calls import nuclei_columns
    from .scoring import score_sample
    from .segment import QC_COLUMNS

    ours: dict[str, str] = {c: "the field key" for c in ("field", "source", "files", "series", "n_fields")}
    for pan in panels:
        for c in [*nuclei_columns(pan), *QC_COLUMNS]:
            ours.setdefault(c, "nuclei.csv")
        empty = pd.DataFrame({"call": pd.Series(dtype=str), "scorable": pd.Series(dtype=bool)})
        for c in score_sample(empty, pan).to_row():
            ours.setdefault(c, "samples.csv")
    allowed = {*MANIFEST_REQUIRED, *MANIFEST_OPTIONAL}
    for h in header:
        if h not in allowed and h in ours:
            raise InputError(manifest, f"column {h!r} is a column fishcount writes ({ours[h]}): carried through, it "
                                       f"would replace the analysis' values; rename it (e.g. {h}_note)")


def _panel_ref(panel: str, folder: Path) -> str:
    if panel.lower().endswith(".toml") and not Path(panel).is_absolute():
        return str(folder / panel)
    return panel


def _load_panel_for(panel: str, folder: Path) -> Panel:
    return load_panel(_panel_ref(panel, folder))


def _expand(pattern: str, folder: Path, manifest: Path, line: int) -> list[Path]:
    p = Path(pattern)
    base = p if p.is_absolute() else folder / p
    if glob.has_magic(pattern):
        hits = sorted(Path(h) for h in glob.glob(str(base), recursive=True))
        # TIFFs, or the exported pictures (PNG, JPEG) the pattern itself names, e.g. P01/week00/*.jpg
        # (a folder layout is searched for TIFFs only); never files inside a run's output folder
        from .io import PICTURE_SUFFIXES

        pictures = pattern.lower().endswith(PICTURE_SUFFIXES)
        hits = [h for h in hits if h.is_file() and _is_field_file(h, pictures) and not _in_run_folder(h, folder)]
        if not hits:
            raise InputError(manifest, f"line {line}: '{pattern}' matches no field image under {folder}")
        return hits
    if _is_truth(p.name):
        raise InputError(manifest, f"line {line}: '{pattern}' is a simulator truth file, not a field")
    if not base.is_file():
        raise InputError(manifest, f"line {line}: field '{pattern}' not found under {folder}")
    return [base]


def _field_table(
    folder: Path, manifest: str | os.PathLike | None, panel: str
) -> tuple[pd.DataFrame, str]:
    """The field table and where it came from (a manifest path or 'folder layout')."""
    if manifest is None and (folder / "manifest.csv").is_file():
        manifest = folder / "manifest.csv"
    if manifest is not None:
        return read_manifest(manifest, folder, panel=panel), str(manifest)
    return infer_layout(folder, panel=panel), "folder layout <patient>/<timepoint>/<field>"


# -------------------------------------------------------------------------------------------------
# per-field work (runs on a worker)
# -------------------------------------------------------------------------------------------------
class StageError(Exception):
    """A field failed at a named stage (``read``, ``analyze``, ``write``); ``source``: the file at fault
    when it is not the field's first one (one file of a per-channel group)."""

    def __init__(self, stage: str, message: str, source: str | None = None):
        super().__init__(message)
        self.stage = stage
        self.message = message
        self.source = source


def field_fingerprint(path: str | os.PathLike, *, with_hash: bool = True) -> dict:
    """Size (bytes), mtime (ns) and SHA-256 of a file: what a completion marker records.

    Parameters
    ----------
    path : path
        The input file.
    with_hash : bool
        Compute the SHA-256 (reads the whole file).

    Returns
    -------
    dict
        ``{"size": int, "mtime_ns": int, "sha256": str | None}``.
    """
    st = os.stat(path)
    digest = None
    if with_hash:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "sha256": digest}


def _fingerprint_files(files: tuple[str, ...], *, with_hash: bool = True) -> dict:
    """:func:`field_fingerprint` of a field made of one or several files."""
    if len(files) == 1:
        return field_fingerprint(files[0], with_hash=with_hash)
    fps = [field_fingerprint(f, with_hash=with_hash) for f in files]
    digest = hashlib.sha256("".join(fp["sha256"] for fp in fps).encode()).hexdigest() if with_hash else None
    return {"size": sum(fp["size"] for fp in fps), "mtime_ns": max(fp["mtime_ns"] for fp in fps),
            "sha256": digest, "files": list(files)}


def process_field(path: str | list[str], out_dir: Path, panel: Panel, params: Mapping[str, Any]) -> dict:
    """Analyse one field with the real pipeline and write its outputs (the ``fishcount analyze`` contract).

    ``io.read_field`` -> ``analyze.analyze_field`` -> ``analyze.write_field_result``. This is the
    default ``analyze`` of :func:`run_batch`; a replacement takes the same arguments, writes at
    least ``nuclei.csv`` into ``out_dir`` and returns a dict with ``n_nuclei`` and ``thresholds``.

    Parameters
    ----------
    path : str or list of str
        The field image, or the per-channel files of one field.
    out_dir : Path
        Where to write (an empty temporary folder; the runner renames it into place).
    panel : Panel
        The field's probe panel.
    params : mapping
        ``read`` (keyword arguments of ``read_field``) and ``analyze`` (of ``analyze_field``).

    Returns
    -------
    dict
        ``n_nuclei``, ``n_scorable``, ``thresholds`` (signal -> threshold), ``pixel_size_um``,
        ``gallery_error`` (None when ``gallery.png``, the nucleus crops per call, was written), ``warnings``
        (the analysis' field warnings, :func:`fishcount.analyze_field`).
    """
    from . import analyze as _analyze
    from . import io as _io

    try:
        field = _io.read_field(path, panel=panel, **dict(params.get("read", {})))
    except FishcountError as exc:
        raise StageError("read", exc.reason, exc.source) from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file must not stop the run
        raise StageError("read", f"{type(exc).__name__}: {exc}") from None
    try:
        result = _analyze.analyze_field(field, panel, **dict(params.get("analyze", {})))
    except FishcountError as exc:
        raise StageError("analyze", exc.reason) from None
    try:
        written = Path(_analyze.write_field_result(result, Path(out_dir) / "_write",
                                                   title=params.get("overlay_title")))
        for item in written.iterdir():  # flatten: the runner names the field folder itself
            os.replace(item, Path(out_dir) / item.name)
        shutil.rmtree(Path(out_dir) / "_write", ignore_errors=True)
    except FishcountError as exc:
        raise StageError("write", exc.reason) from None
    gallery_error = None
    try:  # nucleus crops per call for the report; the field's tables stand without it
        from .overlay import render_gallery, save_png

        save_png(render_gallery(result, per_call=int(params.get("gallery_per_call", 8))), Path(out_dir) / "gallery.png")
    except OSError as exc:  # a full disk: the field is not complete; an error, redone by the next run
        raise StageError("write", f"cannot write gallery.png ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - a drawing failure: the tables stand, the gallery is said to be missing
        gallery_error = f"{type(exc).__name__}: {exc}"
    nuclei = result.nuclei
    n_scorable = int(nuclei["scorable"].sum()) if "scorable" in nuclei.columns else None
    return {
        "n_nuclei": int(len(nuclei)),
        "n_scorable": n_scorable,
        "thresholds": {str(k): float(v) for k, v in dict(result.thresholds).items()},
        "pixel_size_um": field.pixel_size_um,
        "gallery_error": gallery_error,
        "warnings": list(result.params.get("warnings", [])),
    }


@dataclasses.dataclass(frozen=True)
class _Task:
    path: str
    files: tuple[str, ...]
    field: str
    final_dir: str
    panel: Panel
    params: dict
    params_hash: str
    analyze: Callable


def _run_task(task: _Task) -> dict:
    """Analyse one field into a temporary folder, write its marker, rename it into place.

    Never raises for a bad field: returns ``{"status": "error", "stage", "message"}``.
    """
    t0 = time.perf_counter()
    c0 = time.process_time()
    final = Path(task.final_dir)
    # a short temporary name: the field's own name plus a suffix can pass the file system's 255-byte limit
    tmp = final.parent / f".tmp-{uuid.uuid4().hex[:12]}"
    base = {"field": task.field, "path": task.path}
    try:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
        except OSError as exc:
            raise StageError("write", f"cannot create the field's output folder ({exc.strerror or exc})") from None
        try:
            fp = _fingerprint_files(task.files)
        except OSError as exc:
            raise StageError("read", f"cannot read file ({exc.strerror or exc})",
                             None if exc.filename is None else str(exc.filename)) from None
        source = task.path if len(task.files) == 1 else list(task.files)
        # the overlay names the field as the run does (patient/timepoint/field); not part of the params hash
        summary = task.analyze(source, tmp, task.panel, {**task.params, "overlay_title": task.field})
        summary = dict(summary or {})
        if not (tmp / "nuclei.csv").is_file():
            raise StageError("write", "the analysis wrote no nuclei.csv")
        seconds = time.perf_counter() - t0
        marker = {
            "marker_version": MARKER_VERSION,
            "input": {"path": task.path, **fp},
            "params_hash": task.params_hash,
            "panel_sha256": task.panel.sha256,
            "fishcount_version": __version__,
            "seconds": round(seconds, 4),
            "cpu_seconds": round(time.process_time() - c0, 4),
            "summary": _jsonable(summary),
        }
        try:
            write_text_atomic(tmp / MARKER, json.dumps(marker, indent=1, sort_keys=True))
            _swap_in(tmp, final)
        except OSError as exc:
            raise StageError("write", f"cannot write the field's outputs ({exc.strerror or exc})") from None
        return {**base, "status": "done", "seconds": seconds, "summary": marker["summary"]}
    except StageError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.source in task.files:  # the file of a per-channel group that is at fault, not its first
            base["path"] = exc.source
        return {**base, "status": "error", "stage": exc.stage, "message": exc.message,
                "seconds": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001 - failure isolation: record and go on
        shutil.rmtree(tmp, ignore_errors=True)
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        return {**base, "status": "error", "stage": "analyze",
                "message": f"{type(exc).__name__}: {exc}{where}", "seconds": time.perf_counter() - t0}


@dataclasses.dataclass(frozen=True)
class _SampleTask:
    path: str            # the sample id (reported as the "file" of an error)
    sample: str
    fields: tuple[tuple[str, ...], ...]
    panel: Panel
    params: dict
    series: tuple = ()   # per field: the image of a multi-position file, or None


def _run_sample_thresholds(task: _SampleTask) -> dict:
    """One automatic threshold per signal pooled over the readable fields of a sample
    (``analyze.estimate_thresholds``). Unreadable fields are left to the field stage to report."""
    from . import analyze as _analyze
    from . import io as _io

    base = {"sample": task.sample, "path": task.path, "field": ""}
    fields = []
    for files, k in zip(task.fields, task.series or [None] * len(task.fields)):
        try:
            fields.append(_io.read_field(files[0] if len(files) == 1 else list(files), task.panel,
                                         **dict(_with_series(task.params, k).get("read", {}))))
        except Exception:  # noqa: BLE001 - reported per field later
            continue
    if float(dict(task.params.get("analyze", {})).get("z_step_um") or 0) > 0:
        # 3-D detection: a single-plane field cannot be analysed (its field stage says so); the others still pool
        fields = [f for f in fields if int(getattr(f, "n_z", 1)) > 1]
    if not fields:
        return {**base, "status": "error", "stage": "thresholds", "message": "no readable field in this sample"}
    try:
        th = _analyze.estimate_thresholds(fields, task.panel, **dict(task.params.get("analyze", {})))
    except Exception as exc:  # noqa: BLE001 - the fields then fall back to their own thresholds
        return {**base, "status": "error", "stage": "thresholds", "message": f"{type(exc).__name__}: {exc}"}
    return {**base, "status": "done", "thresholds": {str(k): float(v) for k, v in th.items()}}


def _sample_key(files: list[tuple[str, ...]], params_hash: str) -> str:
    """Cache key of a sample's pooled thresholds: parameters + every file's size and mtime."""
    fps = []
    for fs in files:
        for f in fs:
            try:
                st = os.stat(f)
                fps.append((f, st.st_size, st.st_mtime_ns))
            except OSError:
                fps.append((f, None, None))
    return hashlib.sha256(json.dumps([params_hash, sorted(fps)]).encode()).hexdigest()


def _pooled_thresholds(table: pd.DataFrame, panels: Mapping[str, Panel], params_for: Mapping[str, dict], out: Path,
                       *, workers: int, scheduler: str | None) -> tuple[dict[str, dict], list[dict]]:
    """Pooled thresholds per sample, from ``OUT/thresholds/<sample>.json`` when still valid, else computed
    (one task per sample). ``params_for``: the run's parameters per panel id. Returns ``{sample:
    thresholds}`` and the error records."""
    cache_dir = out / "thresholds"
    result: dict[str, dict] = {}
    todo: list[tuple[_SampleTask, Path, str]] = []
    for sample, grp in table.groupby("sample", sort=True):
        pid = grp["panel"].iloc[0]
        files = [tuple(fs.split(os.pathsep)) for fs in grp["files"]]
        params = params_for[pid]
        series = list(grp["series"])  # (in the key only when the sample holds positions: old caches stay valid)
        key = _sample_key(files, _params_hash(panels[pid], {**params, "series": series}
                                              if any(k is not None for k in series) else params))
        cache = cache_dir / (re.sub(r"[^A-Za-z0-9._\-]+", "_", str(sample)) + ".json")
        try:
            c = json.loads(cache.read_text(encoding="utf-8"))
            if c.get("key") == key:
                result[sample] = c["thresholds"]
                continue
        except (OSError, ValueError, KeyError):
            pass
        todo.append((_SampleTask(str(sample), str(sample), tuple(files), panels[pid], params,
                                 tuple(grp["series"])), cache, key))
    errors = []
    if todo:
        res, _ = _execute([t for t, _, _ in todo], workers=min(workers, len(todo)), scheduler=scheduler,
                          progress=lambda r: None, fn=_run_sample_thresholds)
        by_sample = {r["sample"]: r for r in res if "sample" in r}
        for t, cache, key in todo:
            r = by_sample.get(t.sample)
            if r is None or r["status"] != "done":
                msg = "worker lost" if r is None else r["message"]
                errors.append({"file": t.sample, "stage": "thresholds",
                               "message": f"pooled thresholds not computed ({msg}); fields use their own"})
                continue
            result[t.sample] = r["thresholds"]
            write_text_atomic(cache, json.dumps({"key": key, "sample": t.sample, "thresholds": r["thresholds"]},
                                                indent=1))
    return result, errors


def _with_series(params: Mapping[str, Any], series: int | None) -> dict:
    """``params`` with ``read.series`` set for one image of a multi-position file (unchanged otherwise)."""
    if series is None:
        return dict(params)
    return {**params, "read": {**dict(params.get("read", {})), "series": int(series)}}


def _swap_in(tmp: Path, final: Path) -> None:
    """Rename a finished temporary field folder into place, replacing an outdated one without ever losing it
    (and carrying a reviewer's journals over): :func:`fishcount._atomic.swap_in_folder`."""
    swap_in_folder(tmp, final, overwrite=True)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return repr(obj)


def _params_hash(panel: Panel, params: Mapping[str, Any]) -> str:
    blob = json.dumps({"panel": panel.sha256 or panel.id, "params": _jsonable(params),
                       "fishcount": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _is_done(final: Path, files: tuple[str, ...], params_hash: str) -> bool:
    """True if ``final`` holds a complete result for this input file and these parameters."""
    marker = final / MARKER
    try:
        m = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(m, dict) or m.get("marker_version") != MARKER_VERSION or m.get("params_hash") != params_hash:
        return False
    if m.get("fishcount_version") != __version__:
        return False  # analysed by another fishcount (e.g. a Dask worker of another version): redo it
    if not (final / "nuclei.csv").is_file():
        return False  # a marker without its table (removed by hand): redo the field
    rec = m.get("input", {})
    if not isinstance(rec, dict):
        return False
    try:
        now = _fingerprint_files(files, with_hash=False)
    except OSError:
        return False
    if now["size"] == rec.get("size") and now["mtime_ns"] == rec.get("mtime_ns"):
        return True
    if now["size"] != rec.get("size"):
        return False
    # touched but maybe not changed: compare contents
    return _fingerprint_files(files)["sha256"] == rec.get("sha256")


# -------------------------------------------------------------------------------------------------
# execution: serial loop, local Dask cluster, or a remote scheduler
# -------------------------------------------------------------------------------------------------
def _estimate_field_bytes(paths: Iterable[str]) -> int:
    """Uncompressed bytes of the largest of a few fields (from TIFF headers), as float32."""
    import tifffile

    from .io import quiet_tifffile

    best = 0
    for p in list(paths)[:8]:
        try:
            with quiet_tifffile(), tifffile.TiffFile(p) as tf:  # the largest image (a thumbnail may come first)
                best = max(best, max(int(np.prod(s.shape)) for s in tf.series) * 4)
        except Exception:  # noqa: BLE001 - unreadable files are reported by the workers
            best = max(best, os.path.getsize(p) * 2 if os.path.exists(p) else 0)
    return best


def default_workers(field_bytes: int = 0) -> int:
    """Worker processes for this machine: one per core, fewer if memory is short.

    Each worker is budgeted 10x one field's bytes plus 300 MB of interpreter and libraries.

    Parameters
    ----------
    field_bytes : int
        Uncompressed bytes of the largest field.

    Returns
    -------
    int
        At least 1.
    """
    import psutil

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_worker = 10 * field_bytes + 300 * 2**20
    by_memory = int(psutil.virtual_memory().available * 0.8 // per_worker)
    return max(1, min(cores, by_memory))


#: A Dask scheduler address: [protocol://]host:port (IPv6 hosts in brackets).
_SCHEDULER_RE = re.compile(r"^(?:(?:tcp|tls)://)?(?:\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):(?P<port>\d{1,5})/?$")


def _check_scheduler_address(scheduler: str) -> None:
    """``[tcp://|tls://]HOST:PORT`` with a port 1-65535, refused in one line before anything is written."""
    m = _SCHEDULER_RE.match(str(scheduler))
    if m is None or not 0 < int(m.group("port")) <= 65535:
        raise InputError(scheduler, "not a Dask scheduler address: give tcp://HOST:PORT with a port 1-65535 (e.g. "
                                    "tcp://10.0.0.5:8786; not the dashboard's http:// address)")


class EngineError(FishcountError):
    """The Dask scheduler or its workers failed (not a field): the run stops; a rerun resumes it."""


def _connect(scheduler: str):
    """A Client of the scheduler at ``scheduler``, or a one-line error within :data:`SCHEDULER_TIMEOUT` (+5 s):
    a refused or unknown address, a port that is not a Dask scheduler (a web server never answers the handshake;
    another protocol's banner was read as a 3-EiB message length), any failure."""
    import threading

    from distributed import Client

    box: dict[str, Any] = {}

    def connect() -> None:
        try:
            box["client"] = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - reported below in one line
            box["error"] = exc

    seconds = float(str(SCHEDULER_TIMEOUT).rstrip("s")) + 5.0
    th = threading.Thread(target=connect, daemon=True)
    th.start()
    th.join(seconds)
    if th.is_alive():
        raise InputError(scheduler, f"no answer from a Dask scheduler within {seconds:g} s: is this the scheduler's "
                                    "address (tcp://HOST:PORT, usually port 8786), not its dashboard or another server?")
    if "error" in box:
        exc = box["error"]
        why = "not a Dask scheduler?" if isinstance(exc, MemoryError) else (str(exc).splitlines()[0] if str(exc) else
                                                                            type(exc).__name__)
        raise InputError(scheduler, f"cannot connect to the Dask scheduler ({why})")
    return box["client"]


#: How long a run waits for a Dask scheduler's first worker before it says the cluster has none.
WORKER_WAIT_S = 30.0


def _check_workers(client, scheduler: str | None) -> None:
    """Every Dask worker imports fishcount, of this client's version; a scheduler without workers is an error
    (the run would wait for ever). A mismatch would mix results of two versions in one study."""
    where = scheduler or "local cluster"
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except Exception:  # noqa: BLE001 - a timeout, whatever its class in this distributed version
        raise EngineError(where, f"the Dask scheduler has no worker after {WORKER_WAIT_S:g} s: start workers "
                                 "(dask worker ADDRESS) or run without --scheduler") from None
    # eval of a string: nothing of fishcount is unpickled on the worker, so one without fishcount answers too
    got = client.run(eval, "__import__('fishcount').__version__", on_error="return")
    for addr, v in sorted(got.items()):
        if isinstance(v, BaseException):
            raise EngineError(where, f"Dask worker {addr} cannot import fishcount ({type(v).__name__}: {v}); install "
                                     "fishcount in the workers' environment")
        if v != __version__:
            raise EngineError(where, f"Dask worker {addr} runs fishcount {v}, this client {__version__}: run one "
                                     "version everywhere (results of two versions would be mixed in one study)")


def _execute(
    tasks: list,
    *,
    workers: int,
    scheduler: str | None,
    progress: Callable[[dict], None],
    fn: Callable[[Any], dict] | None = None,
) -> tuple[list[dict], dict]:
    """Run ``fn`` (default :func:`_run_task`) on every task; returns the results and the engine used."""
    fn = fn or _run_task
    if not tasks:
        return [], {"engine": "none", "workers": 0}
    if scheduler is None and workers == 1:
        out = []
        for t in tasks:
            r = fn(t)
            progress(r)
            out.append(r)
        return out, {"engine": "serial", "workers": 1}

    from distributed import Client, as_completed

    cluster = None
    t_start = time.perf_counter()
    if scheduler is not None:
        client = _connect(scheduler)
        engine = {"engine": "dask-distributed", "scheduler": scheduler}
    else:
        import psutil

        mem = int(psutil.virtual_memory().available * 0.8 // workers)
        cluster = _local_cluster(workers, mem)
        client = Client(cluster)
        engine = {"engine": "dask-local", "workers": workers, "memory_limit_bytes": mem}
    try:
        _check_workers(client, scheduler)
        if cluster is not None:  # Ctrl-C reaches the terminal's whole process group: the client stops the
            try:                 # cluster; its workers must not each print a KeyboardInterrupt traceback
                client.run(_ignore_sigint)
            except Exception:  # noqa: BLE001 - only the tracebacks are at stake
                pass
        if scheduler is not None:
            engine["workers"] = len(client.scheduler_info().get("workers", {}))
        try:  # import the pipeline on every worker now, in parallel, not inside the first task
            client.run(_warm_worker)
        except Exception:  # noqa: BLE001 - a slow import only costs time in the first task
            pass
        engine["startup_s"] = round(time.perf_counter() - t_start, 4)
        futures = {}
        for t in tasks:
            f = client.submit(fn, t, pure=False, key=f"task-{uuid.uuid4().hex}")
            futures[f] = t
        out = []
        for f in as_completed(list(futures)):
            t = futures[f]
            try:
                r = f.result()
            except Exception as exc:  # noqa: BLE001 - a killed worker is that field's error
                if _engine_lost(client, exc):  # the scheduler went away: not these fields' fault; stop, resume later
                    raise EngineError(scheduler or "local cluster",
                                      f"lost the Dask scheduler during the run ({len(out)} of {len(tasks)} fields "
                                      "finished and kept); no table was written from a part of the study: start the "
                                      "scheduler again and rerun the same command to resume") from None
                msg = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line in errors.csv
                r = {"field": getattr(t, "field", ""), "path": getattr(t, "path", ""), "status": "error", "stage": "worker",
                     "message": msg, "seconds": float("nan")}
            progress(r)
            out.append(r)
            f.release()
        return out, engine
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _engine_lost(client, exc: BaseException) -> bool:
    """The failure of a future is the engine's (the client lost its scheduler: every pending future is
    cancelled), not the field's (a worker killed by its field: that field's error)."""
    import asyncio
    import concurrent.futures

    # distributed's FutureCancelledError is a concurrent.futures.CancelledError (not asyncio's); while the client
    # tries to reach a lost scheduler again its status is "connecting"
    cancelled = isinstance(exc, (concurrent.futures.CancelledError, asyncio.CancelledError))
    return cancelled or getattr(client, "status", "running") != "running"


#: Housekeeping intervals of the local cluster's processes (scheduler, nannies, workers). Dask's
#: defaults suit a dashboard-watched cluster: a 20 ms event-loop tick, a 0.5 s system monitor and a
#: 0.1 s memory monitor in every process. Idle, a 2-worker LocalCluster then burns 0.076 CPU-s per
#: second (3.8 % of a 2-core machine, taken from the field tasks); with these 0.0125
#: (docs/benchmarks.md ## Batch). The memory monitor still runs every second, so a worker that
#: grows past its limit is still restarted.
_QUIET_EVENT_LOOPS = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}


def _local_cluster(workers: int, memory_limit_bytes: int):
    """A LocalCluster of single-threaded worker processes tuned for image tasks.

    Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers, which switches off glibc's
    dynamic mmap threshold: every large numpy array is then a fresh ``mmap`` and its pages fault in
    again, costing ~30 % more CPU per field here (measured, docs/benchmarks.md ## Batch). The
    workers are started without it, without the statistical profiler, and with slower housekeeping
    timers (:data:`_QUIET_EVENT_LOOPS`).
    """
    import dask
    from distributed import LocalCluster

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    saved = os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)  # distributed may have set it in this process
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env,
                              "distributed.worker.profile.enabled": False, **_QUIET_EVENT_LOOPS}):
            return LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory_limit_bytes,
                dashboard_address=":0", silence_logs=logging.ERROR,
            )
    finally:
        if saved is not None:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = saved


#: Code the pipeline loads on first use (imports inside functions, lazily loaded submodules), as
#: (module, attribute): :func:`_warm_worker` loads it too, so a worker loads it (about 11 MiB) at
#: start-up, in parallel with the other workers, and not inside its first field (docs/benchmarks.md
#: ## Batch, memory).
_WARM_FIRST_USE = (
    ("tifffile", "imwrite"), ("imagecodecs", "zlib_decode"), ("imagecodecs", "deflate_decode"),
    ("imagecodecs", "delta_decode"), ("pandas.io.formats.csvs", "CSVFormatter"),
    ("pyarrow.pandas_compat", "dataframe_to_arrays"),
    ("PIL.Image", "preinit"), ("PIL.ImageDraw", "Draw"), ("PIL.ImageFont", "load_default"),
    ("PIL.PngImagePlugin", "PngImageFile"), ("scipy.sparse.csgraph", "connected_components"),
    ("skimage.measure", "regionprops_table"), ("skimage.segmentation", "watershed"),
    ("skimage.segmentation", "find_boundaries"),
)


def _ignore_sigint() -> None:
    """In a local Dask worker process: ignore SIGINT (the submitting process handles Ctrl-C and closes the
    cluster)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _warm_worker() -> None:
    """Import the analysis modules (numpy, scikit-image, scipy...) in a Dask worker."""
    import importlib

    for mod in ("io", "segment", "spots", "calls", "analyze", "overlay"):
        try:
            importlib.import_module(f"fishcount.{mod}")
        except ImportError:
            pass
    for mod, attr in _WARM_FIRST_USE:
        try:
            obj = getattr(importlib.import_module(mod), attr)
            if mod == "PIL.Image":
                obj()  # the image format plugins that saving a PNG loads
        except (ImportError, AttributeError):
            pass


def _cleanup_stale(fields_dir: Path) -> None:
    """Remove temporary / trash folders a killed run left behind."""
    if not fields_dir.is_dir():
        return
    for root, dirs, _ in os.walk(fields_dir):
        for d in list(dirs):
            if d.startswith((".tmp-", ".trash-")):
                m = re.fullmatch(r"\.trash-[0-9a-f]{8}-(.+)", d)
                if m and not (Path(root) / m.group(1)).exists():  # killed mid-swap: the old result goes back
                    with contextlib.suppress(OSError):
                        os.rename(Path(root) / d, Path(root) / m.group(1))
                        dirs.remove(d)
                        continue
                shutil.rmtree(Path(root) / d, ignore_errors=True)
                dirs.remove(d)


# -------------------------------------------------------------------------------------------------
# pooling
# -------------------------------------------------------------------------------------------------
def _read_field_nuclei(path: Path):
    import pyarrow.csv as pacsv

    return pacsv.read_csv(path)


def _common_schema(schemas: list, exclude: set[str]):
    """One schema for all per-field tables: columns in first-seen order; a column's type is the
    common type of its fields (null-only fields ignored; ints + floats -> float64), string when they
    disagree otherwise (e.g. text in one field, numbers in another)."""
    import pyarrow as pa

    order: list[str] = []
    types: dict[str, set] = {}
    for sch in schemas:
        for f in sch:
            if f.name in exclude:
                continue
            if f.name not in types:
                order.append(f.name)
                types[f.name] = set()
            if not pa.types.is_null(f.type):
                types[f.name].add(f.type)
    fields = []
    for name in order:
        ts = types[name]
        if not ts:
            t = pa.string()
        elif len(ts) == 1:
            t = next(iter(ts))
        elif all(pa.types.is_integer(x) for x in ts):
            t = pa.int64()
        elif all(pa.types.is_integer(x) or pa.types.is_floating(x) for x in ts):
            t = pa.float64()
        else:
            t = pa.string()
        fields.append(pa.field(name, t))
    return pa.schema(fields)


def pool_nuclei(table: pd.DataFrame, out_dir: Path) -> int:
    """Pool the nuclei tables of the finished fields into ``nuclei.parquet`` and ``nuclei.csv``.

    Streams field by field (two passes over the small per-field CSVs: schema, then data), so the
    pooled rows are never all in memory. Rows are prefixed with :data:`POOLED_KEY_COLUMNS` and the
    manifest's extra columns.

    Parameters
    ----------
    table : DataFrame
        Field table rows of the finished fields, in output order.
    out_dir : Path
        Run folder (holds ``fields/``).

    Returns
    -------
    int
        Number of nucleus rows written.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    extras = [c for c in table.columns if c not in POOLED_KEY_COLUMNS and c not in _WHERE_COLUMNS]
    key_cols = list(POOLED_KEY_COLUMNS) + extras
    schemas = []
    for key in table["field"]:
        schemas.append(_read_field_nuclei(out_dir / "fields" / key / "nuclei.csv").schema)
    key_schema = pa.schema([(c, pa.float64() if c == "week" else pa.string()) for c in key_cols])
    body = _common_schema(schemas, exclude=set(key_cols))
    schema = pa.schema(list(key_schema) + list(body))
    n = 0
    with atomic_path(out_dir / "nuclei.parquet") as ptmp, atomic_open(out_dir / "nuclei.csv", "wb") as cfh:
        pw = pq.ParquetWriter(str(ptmp), schema)
        cw = pacsv.CSVWriter(cfh, schema)
        try:
            for _, row in table.iterrows():
                t = _read_field_nuclei(out_dir / "fields" / row["field"] / "nuclei.csv")
                cols = []
                for f in schema:
                    if f.name in key_cols:
                        v = row["field"] if f.name == "field" else row["path"] if f.name == "source" else row[f.name]
                        v = float(v) if f.name == "week" else ("" if pd.isna(v) else str(v))
                        cols.append(pa.array([v] * t.num_rows, type=f.type))
                    elif f.name in t.column_names:
                        cols.append(t.column(f.name).cast(f.type))
                    else:
                        cols.append(pa.nulls(t.num_rows, type=f.type))
                chunk = pa.Table.from_arrays(cols, schema=schema)
                pw.write_table(chunk)
                cw.write_table(chunk)
                n += t.num_rows
        finally:
            pw.close()
            cw.close()
    return n


# -------------------------------------------------------------------------------------------------
# the run
# -------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BatchResult:
    """What :func:`run_batch` did.

    Attributes
    ----------
    out_dir : Path
        The run folder.
    n_fields : int
        Fields in the manifest / layout.
    n_done, n_skipped, n_failed : int
        Fields analysed in this run, skipped as already done, failed.
    errors : DataFrame
        ``file, stage, message, sample`` (also in ``errors.csv``).
    samples : DataFrame or None
        The per-sample table (``samples.csv``).
    response : DataFrame or None
        The per-patient table (``response.csv``).
    report : Path or None
        ``report.html`` if written.
    warnings : dict of str to list of str
        Field key -> the analysis' warnings for that field (also in ``run.json`` and the report).
    """

    out_dir: Path
    n_fields: int
    n_done: int
    n_skipped: int
    n_failed: int
    errors: pd.DataFrame
    samples: pd.DataFrame | None
    response: pd.DataFrame | None
    report: Path | None
    warnings: dict = dataclasses.field(default_factory=dict)

    @property
    def n_errors(self) -> int:
        return int(len(self.errors))


RUN_LOCK = ".fishcount-run.lock"


def _acquire_run_lock(out: Path) -> Path:
    """Take the run folder's lock (a file holding ``<pid> <host>``): a second run writing into the same folder
    would delete the first one's temporary field folders and mix their tables. A lock left by a process that
    is gone (killed) is taken over."""
    import socket

    import psutil

    lock, host = out / RUN_LOCK, socket.gethostname()
    for _ in range(3):
        # the lock appears with its owner already written in it (a file written aside, then hard-linked: the link
        # fails if a lock exists): a second run never reads an empty lock and takes it for a dead run's
        tmp = out / f".{RUN_LOCK}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        tmp.write_text(f"{os.getpid()} {host}\n", encoding="utf-8")
        try:
            _create_lock(tmp, lock, f"{os.getpid()} {host}\n")
        except FileExistsError:
            try:
                ino = lock.stat().st_ino
                pid_s, owner = lock.read_text(encoding="utf-8").split()[:2]
                pid = int(pid_s)
            except (OSError, ValueError):
                ino, pid, owner = None, -1, host
            if owner != host:
                raise InputError(out, f"another fishcount run (process {pid} on {owner}) is writing into this "
                                      f"folder; wait for it, or delete {RUN_LOCK} if it is gone") from None
            if pid != os.getpid() and psutil.pid_exists(pid):
                raise InputError(out, f"another fishcount run (process {pid}) is writing into this folder; wait "
                                      "for it or choose another --out") from None
            with contextlib.suppress(OSError):  # left by a run that is gone (unless another run took it meanwhile)
                if ino is None or lock.stat().st_ino == ino:
                    lock.unlink()
            continue
        finally:
            tmp.unlink(missing_ok=True)
        return lock
    raise InputError(out, f"cannot take the run lock {RUN_LOCK}")


def _create_lock(tmp: Path, lock: Path, text: str) -> None:
    """Create ``lock`` holding ``text``, or :class:`FileExistsError`: by a hard link of ``tmp`` (the lock never
    exists empty), or where the file system has no hard links (FAT, exFAT, many SMB shares) by an exclusive
    create."""
    import errno

    try:
        os.link(tmp, lock)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV):
            raise
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _release_run_lock(lock: Path) -> None:
    try:
        lock.unlink()
    except OSError:
        pass


def _check_out_dir(out: Path, folder: Path) -> None:
    """Refuse to write into a folder that holds something other than a fishcount run."""
    if out.resolve() == folder.resolve():
        raise InputError(out, "the output folder must not be the study folder itself; use e.g. --out results")
    if out.exists() and not out.is_dir():
        raise InputError(out, "output path exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / RUN_MARKER).exists():
        raise InputError(
            out, "output folder is not empty and holds no fishcount run; choose a new or empty --out folder"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(out, f"cannot create output folder ({exc.strerror or exc})") from None
    if not (out / RUN_MARKER).exists():
        try:
            write_text_atomic(out / RUN_MARKER, "fishcount run folder; safe to resume into\n")
        except OSError as exc:
            raise InputError(out, f"cannot write in output folder ({exc.strerror or exc})") from None


def run_batch(
    folder: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    manifest: str | os.PathLike | None = None,
    panel: str = DEFAULT_PANEL,
    workers: int | None = None,
    scheduler: str | None = None,
    params: Mapping[str, Any] | None = None,
    criteria: str | None = None,
    cutoffs: "str | Sequence[str] | None" = None,
    pool_thresholds: bool = False,
    analyze: Callable[[str, Path, Panel, Mapping[str, Any]], dict] | None = None,
    score: Callable[[pd.DataFrame, Panel], pd.DataFrame] | None = None,
    respond: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    report: bool = True,
    quiet: bool = False,
    settings: "Settings | str | os.PathLike | None" = None,
) -> BatchResult:
    """Run fishcount over a study folder: every field, then pooled tables, response and report.

    #. Build the field table from ``manifest`` (or ``FOLDER/manifest.csv``, or the folder layout
       ``FOLDER/<patient>/<timepoint>/<field>.tif``).
    #. Skip fields whose completion marker matches (input size/mtime/SHA-256 and parameters);
       analyse the others, one field per task, serially (``workers=1``), on a local Dask cluster
       (default) or on ``scheduler``. A failing field is recorded in ``errors.csv``.
    #. Pool the finished fields' nuclei into ``nuclei.parquet`` / ``nuclei.csv``.
    #. Score samples (``scoring.score_samples``) -> ``samples.csv``; classify each patient's
       response (``response.classify_response``) -> ``response.csv`` and ``response_timepoints.csv``.
    #. Write ``run.json``, ``errors.csv`` and ``report.html``.

    Parameters
    ----------
    folder : path
        The study folder.
    out_dir : path
        The run folder (created; a rerun into it resumes).
    manifest : path, optional
        Manifest CSV (see :func:`read_manifest`).
    panel : str
        Default probe panel (id or .toml).
    workers : int, optional
        Worker processes; ``1`` = a plain serial loop without Dask; None = :func:`default_workers`.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); overrides ``workers``.
    params : mapping, optional
        ``{"read": {...}, "analyze": {...}}`` keyword arguments for ``read_field`` / ``analyze_field``
        (e.g. ``{"analyze": {"backend": "cellpose", "nucleus_diameter_um": 8}}``).
    criteria : str, optional
        Response criteria id or .toml file (default: the response module's default, ``trial_fish``).
    cutoffs : str or sequence of str, optional
        Laboratory cut-offs file (``fishcount cutoff``), or one per panel of a mixed-panel study
        (:func:`fishcount.cutoffs.cutoffs_by_panel`: a panel without its own file takes a ``panel = "*"``
        one, else the provisional cut-off); default the provisional cut-off, flagged "not validated by
        this laboratory" in every table.
    pool_thresholds : bool
        One automatic detection threshold per signal pooled over the fields of each sample
        (``analyze.estimate_thresholds``, cached in ``OUT/thresholds/``) instead of one per field;
        sparse fields then borrow strength from the others. Costs one more segmentation pass per field
        when a sample's thresholds are (re)computed.
    analyze : callable, optional
        Per-field function (default :func:`process_field`); must be picklable for Dask.
    score, respond : callable, optional
        Replace ``scoring.score_samples(nuclei, panel)`` / the per-patient response step (tests).
    report : bool
        Write ``report.html``.
    quiet : bool
        No progress bar (there is none anyway when stderr is not a terminal).
    settings : Settings or path, optional
        A laboratory settings file (:func:`fishcount.load_settings`): its detection, segmentation and QC
        values are analysis parameters of every field (under those of ``params["analyze"]``); its path,
        SHA-256 and values are recorded in ``run.json`` (``settings``). Checked before any work starts.

    Returns
    -------
    BatchResult

    Raises
    ------
    InputError, PanelError
        For a bad folder, manifest, panel or output folder (before any work starts).
    FishcountError
        A segmentation backend in ``params["analyze"]`` that cannot run: unknown, its package not
        installed, or registered in this process only while fields go to worker processes
        (:func:`fishcount.segment.check_backend`; before any work starts).
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    # absolute from here: Dask workers may run in another working directory (a relative path there reads another
    # folder of that name, or none, and writes the fields where the client never looks)
    folder = Path(folder).absolute()
    out = Path(out_dir).absolute()
    if folder.is_file():
        raise InputError(folder, "is a file, not a study folder: `fishcount run` takes the folder of a study "
                                 "(FOLDER/<patient>/<timepoint>/fields); for single images use `fishcount analyze`")
    if not folder.is_dir():
        raise InputError(folder, "study folder not found")
    params = dict(params or {})
    settings_info = None
    if settings is not None:  # a bad file fails now, before any work
        from .settings import Settings, load_settings

        st = settings if isinstance(settings, Settings) else load_settings(settings)
        st.check_backend(dict(params.get("analyze", {})).get("backend"))
        lab = st.analyze_params()
        if lab:  # the caller's values win over the file's, key by key (a qc dict adds to the file's [qc])
            mine = dict(params.get("analyze", {}))
            params["analyze"] = {**lab, **mine, **{k: {**lab[k], **mine[k]} for k in mine
                                                   if isinstance(mine[k], Mapping) and isinstance(lab.get(k), Mapping)}}
        settings_info = {"path": st.path, "sha256": st.sha256,
                         "values": {"detection": st.detection, "segmentation": st.segmentation, "qc": st.qc}}
    analyze = analyze or process_field
    if workers is not None and workers < 1:
        raise InputError("--workers", f"must be at least 1, got {workers}")
    if scheduler is not None:
        _check_scheduler_address(scheduler)
    if panel.lower().endswith(".toml") and not Path(panel).is_absolute() and Path(panel).is_file():
        panel = str(Path(panel).resolve())  # --panel FILE: from the working directory, as `fishcount analyze`

    table, table_source = _field_table(folder, manifest, panel)
    panels = {pid: _load_panel_for(pid, folder) for pid in table["panel"].unique()}
    from .analyze import calibrations_for_panel, check_calibrations

    check_calibrations(dict(params.get("analyze", {})), panels.values())  # a typo fails now, not per field
    backend = dict(params.get("analyze", {})).get("backend")
    if backend is not None:  # an unknown or uninstalled backend fails now, not in every field
        from .segment import check_backend

        many = scheduler is not None or (workers or default_workers(_estimate_field_bytes(table["path"]))) > 1
        check_backend(str(backend), other_processes=many)
    # one microscope calibration for every panel: each panel keeps the entries that name its signals/fluors
    params_for = {pid: {**params, "analyze": calibrations_for_panel(dict(params.get("analyze", {})), pan)}
                  if params.get("analyze") else params for pid, pan in panels.items()}
    if respond is None:  # bad criteria / cut-off files fail now, not after hours of analysis
        from .response import load_criteria

        load_criteria(criteria)
    cut_by_id = None
    if score is None or respond is None:  # bad cut-offs fail now, not after every field was analysed
        from .cutoffs import cutoffs_argument, cutoffs_by_panel

        cutoffs = cutoffs_argument(cutoffs)
        ids = sorted({p.id for p in panels.values()})
        cut_by_id = cutoffs_by_panel(cutoffs, ids, "--cutoffs", " (the study's panel); give that panel's cut-offs"
                                     if len(ids) == 1 else " (the study's panels); give each panel's cut-offs")
    _check_out_dir(out, folder)
    lock = _acquire_run_lock(out)  # one run at a time in a run folder
    try:
        fields_dir = out / "fields"
        _cleanup_stale(fields_dir)
        timings["setup_s"] = time.perf_counter() - t_start

        pre_errors: list[dict] = []
        pooled: dict[str, dict] = {}
        if pool_thresholds:
            t0 = time.perf_counter()
            n_w = workers or default_workers(_estimate_field_bytes(table["path"]))
            pooled, pre_errors = _pooled_thresholds(table, panels, params_for, out, workers=n_w, scheduler=scheduler)
            timings["thresholds_s"] = time.perf_counter() - t0

        # -- what needs doing
        tasks: list[_Task] = []
        skipped: list[str] = []
        for _, row in table.iterrows():
            final = fields_dir / row["field"]
            p_field = params_for[row["panel"]]
            if row["sample"] in pooled:
                p_field = {**p_field, "analyze": {**dict(p_field.get("analyze", {})), "thresholds": pooled[row["sample"]]}}
            p_field = _with_series(p_field, row["series"])
            ph = _params_hash(panels[row["panel"]], p_field)
            files = tuple(row["files"].split(os.pathsep))
            if _is_done(final, files, ph):
                skipped.append(row["field"])
            else:
                tasks.append(_Task(row["path"], files, row["field"], str(final), panels[row["panel"]], p_field, ph,
                                   analyze))

        if workers is None:
            workers = min(default_workers(_estimate_field_bytes(t.path for t in tasks)), len(tasks)) if tasks else 1
        elif scheduler is None and workers > 1 and tasks:
            # more local worker processes than cores (or than memory holds) only compete: 1000 of them filled the
            # memory and were killed; never more than the fields either
            fit = default_workers(_estimate_field_bytes(t.path for t in tasks))
            if workers > fit and not quiet:
                print(f"note: --workers {workers}: using {fit} (one per core, as memory allows)", file=sys.stderr)
            workers = max(1, min(workers, fit, len(tasks)))

        from tqdm import tqdm

        show = not quiet and sys.stderr.isatty()
        bar = tqdm(total=len(table), initial=len(skipped), unit="field", desc="fields", disable=not show,
                   dynamic_ncols=True)
        n_err = 0

        def _progress(r: dict) -> None:
            nonlocal n_err
            n_err += r["status"] == "error"
            bar.set_postfix_str(f"{n_err} error{'s' if n_err > 1 else ''}" if n_err else "", refresh=False)
            bar.update(1)

        t0 = time.perf_counter()
        try:
            results, engine = _execute(tasks, workers=workers, scheduler=scheduler, progress=_progress)
        finally:
            bar.close()
        timings["fields_s"] = time.perf_counter() - t0

        position = {f: k for f, k in zip(table["field"], table["series"]) if k is not None}
        sample_of = dict(zip(table["field"], table["sample"]))
        errors = [{**e, "sample": e["file"]} for e in pre_errors] + [
            {"file": r["path"] + (f" (series {position[r['field']]})" if r["field"] in position else ""),
             "stage": r["stage"], "message": r["message"], "sample": sample_of.get(r["field"], "")}
            for r in results if r["status"] == "error"
        ]
        failed = {r["field"] for r in results if r["status"] == "error"}
        ok = table[~table["field"].isin(failed)]
        # fields that failed leave their sample with fewer (or no) fields: say so
        lost = []
        for s, grp in table.groupby("sample", sort=False):
            if grp["field"].isin(failed).all():
                lost.append(s)
                errors.append({"file": s, "stage": "sample", "sample": s,
                               "message": "no field of this sample could be analysed; scored as 0 nuclei (not evaluable)"})
        lost_rows = table[table["sample"].isin(lost)]
        sample_warnings: dict[str, list[str]] = {}

        # -- pool, score, respond
        t0 = time.perf_counter()
        n_nuclei = pool_nuclei(ok, out)
        timings["pool_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        samples = response = None
        criteria_info: dict[str, Any] = {}
        if len(ok) or len(lost_rows):  # a study whose every field failed is still scored: 0 nuclei, not evaluable
            import pyarrow.parquet as pq

            nuclei = pq.read_table(out / "nuclei.parquet").to_pandas() if len(ok) else \
                pd.DataFrame({"sample": pd.Series(dtype=str), "panel": pd.Series(dtype=str)})
            # a sample whose fields were analysed but hold no nucleus has no row in the pooled table: it is
            # scored from 0 nuclei too (never dropped from samples, response and report), with a warning
            seen = set(nuclei["sample"].astype(str)) if "sample" in nuclei.columns else set()
            empty = ok[~ok["sample"].astype(str).isin(seen)]
            for s_name, grp in empty.groupby("sample", sort=False):
                sample_warnings[f"sample {s_name}"] = [
                    f"no nucleus found in its {len(grp)} field(s) ({', '.join(grp['field'])}); scored as 0 nuclei "
                    "(not evaluable)"]
            samples = _score(nuclei, ok, panels, score, cut_by_id,
                             failed=pd.concat([lost_rows, empty], ignore_index=True) if len(empty) else lost_rows)
            del nuclei
            write_csv_atomic(samples, out / "samples.csv")
            response, criteria_info = _respond(samples, criteria, cutoffs, respond, out)
            if response is not None:
                write_csv_atomic(response, out / "response.csv")
        timings["score_s"] = time.perf_counter() - t0

        # tables this run did not produce must not survive from an earlier run
        produced = {"samples.csv": samples is not None, "response.csv": response is not None,
                    "response_timepoints.csv": response is not None and respond is None,
                    "report.html": False}
        for name, made in produced.items():
            if not made and (out / name).exists():
                (out / name).unlink()
        err_df = pd.DataFrame(errors, columns=["file", "stage", "message", "sample"])
        write_csv_atomic(err_df, out / "errors.csv")

        # -- run.json
        markers = {}
        for key in ok["field"]:
            try:
                markers[key] = json.loads((fields_dir / key / MARKER).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass
        field_secs = [m.get("seconds") for m in markers.values() if m.get("seconds") is not None]
        field_cpu = [m.get("cpu_seconds") for m in markers.values() if m.get("cpu_seconds") is not None]
        timings["total_s"] = time.perf_counter() - t_start
        run = {
            "fishcount_version": __version__,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": _versions(),
            "study_folder": str(folder.resolve()),
            "settings": settings_info,
            "field_table_source": table_source,
            "parameters": _jsonable({"panel": panel, "params": params, "workers": workers, "scheduler": scheduler,
                                     "criteria": criteria, "cutoffs": cutoffs,
                                     "pool_thresholds": pool_thresholds}),
            "engine": engine,
            "panels": {pid: {"id": p.id, "name": p.name, "path": p.path, "sha256": p.sha256} for pid, p in panels.items()},
            # the study's panel; null when the manifest mixes panels (each is in "panels")
            "panel": ({"id": (p0 := next(iter(panels.values()))).id, "sha256": p0.sha256} if len(panels) == 1
                      else None),
            "criteria": criteria_info,
            # the laboratory cut-offs files used (absolute paths: `review-samples` rescores with them)
            "cutoffs": _cutoffs_info(cutoffs),
            "counts": {"fields": int(len(table)), "analysed": int(len(results) - len(failed)), "skipped": len(skipped),
                       "failed": len(failed), "nuclei": int(n_nuclei), "samples": 0 if samples is None else int(len(samples)),
                       "patients": int(table["patient"].nunique()), "errors": int(len(err_df))},
            "thresholds": {k: m.get("summary", {}).get("thresholds", {}) for k, m in markers.items()},
            # field warnings (analyze_field's params["warnings"], e.g. nuclei that contradict the pixel size)
            "warnings": {**{k: w for k, m in markers.items() if (w := m.get("summary", {}).get("warnings"))},
                         **sample_warnings},
            "timings": {**{k: round(v, 4) for k, v in timings.items()},
                        "per_field_mean_s": round(float(np.mean(field_secs)), 4) if field_secs else None,
                        "per_field_sum_s": round(float(np.sum(field_secs)), 4) if field_secs else None,
                        "per_field_cpu_mean_s": round(float(np.mean(field_cpu)), 4) if field_cpu else None},
        }
        write_text_atomic(out / "run.json", json.dumps(run, indent=1, sort_keys=False))

        report_path = None
        if report and samples is not None:
            from .report import write_report

            report_path = write_report(out)
        return BatchResult(out, len(table), len(results) - len(failed), len(skipped), len(failed), err_df,
                           samples, response, report_path, run["warnings"])
    finally:
        _release_run_lock(lock)


def _score(nuclei: pd.DataFrame, ok: pd.DataFrame, panels: Mapping[str, Panel],
           score: Callable | None, cut_by_id: Mapping | None = None, failed: pd.DataFrame | None = None) -> pd.DataFrame:
    """Score each panel's samples (each with its own cut-offs, ``cut_by_id``: panel id -> CutoffSet); carry
    patient/timepoint/week/slide and extras onto each sample row. ``failed``: the table rows of samples none of
    whose fields could be analysed (scored from 0 nuclei)."""
    default_score = score is None
    cut_by_id = cut_by_id or {}
    if score is None:
        from .scoring import score_samples

        def score(sub, pan):
            return score_samples(sub, pan, cutoffs=cut_by_id.get(pan.id))
    parts = []
    for pid, sub in nuclei.groupby("panel", sort=False):
        s = score(sub, panels[pid])
        s = s.copy()
        if "panel" not in s.columns:
            s.insert(0, "panel", panels[pid].id)
        parts.append(s)
    if failed is not None and len(failed) and default_score:
        # a sample none of whose fields could be read is still a sample of the study: scored from 0 nuclei
        # (inevaluable), so its patient stays in response.csv and the report (intention to treat, R8/R13)
        from .scoring import SAMPLE_KEYS, score_sample

        empty = pd.DataFrame({"call": pd.Series(dtype=str), "scorable": pd.Series(dtype=bool)})
        rows = []
        for sname, grp in failed.groupby("sample", sort=False):
            pid = str(grp["panel"].iloc[0])
            kd = {k: grp[k].iloc[0] for k in SAMPLE_KEYS if k in grp.columns}
            kd["sample"] = sname
            rows.append(score_sample(empty, panels[pid], cut_by_id.get(panels[pid].id), keys=kd).to_row())
        parts.append(pd.DataFrame(rows))
    samples = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    nf = ok.groupby("sample").size().rename("n_fields")  # the fields analysed (ok holds no failed field)
    if failed is not None and len(failed):
        ok = pd.concat([ok, failed], ignore_index=True).drop_duplicates("field")  # for their meta columns
    meta_cols = [c for c in ok.columns if c not in (*_WHERE_COLUMNS, "field", "panel", "slide", "source")]

    def _joined(v: pd.Series):  # fields of one sample that disagree in an extra column: every value, not the first
        vals = list(dict.fromkeys(x for x in v.tolist() if not (isinstance(x, float) and math.isnan(x)) and x != ""))
        return vals[0] if len(vals) == 1 else ("; ".join(map(str, vals)) if vals else v.iloc[0])

    meta = ok[meta_cols].groupby("sample", sort=False, as_index=False).agg(_joined)
    missing = [c for c in meta_cols if c != "sample" and c not in samples.columns]
    if "sample" in samples.columns and missing:
        samples = samples.merge(meta[["sample"] + missing], on="sample", how="left")
    if "sample" in samples.columns and "n_fields" not in samples.columns:
        samples = samples.merge(nf, left_on="sample", right_index=True, how="left")
        samples["n_fields"] = samples["n_fields"].fillna(0).astype(int)
    return samples


def _cutoffs_info(cutoffs) -> list[dict]:
    """``run.json`` ``cutoffs``: each laboratory cut-offs file given (absolute path, panel, validated, SHA-256);
    ``[]`` for the provisional default."""
    from .cutoffs import CutoffSet, load_cutoffs

    items = [] if cutoffs is None else [cutoffs] if isinstance(cutoffs, (str, os.PathLike, CutoffSet)) else list(cutoffs)
    out = []
    for c in items:
        cs = load_cutoffs(c)
        path = Path(cs.path).resolve() if cs.path else None
        sha = hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.is_file() else ""
        out.append({"path": str(path) if path else "", "panel": cs.panel, "validated": cs.validated, "sha256": sha})
    return out


def _respond(samples: pd.DataFrame, criteria: str | None, cutoffs, respond: Callable | None,
             out: Path) -> tuple[pd.DataFrame | None, dict]:
    """Classify each patient's response; write ``response.csv`` and ``response_timepoints.csv``."""
    if respond is not None:
        return respond(samples), {"id": "custom"}
    from .response import classify_response

    res = classify_response(samples, criteria, cutoffs, source=str(out / "samples.csv"))
    write_csv_atomic(res.timepoints, out / "response_timepoints.csv")
    c = res.criteria
    return res.patients, {"id": c.id, "name": c.name, "path": c.path, "sha256": c.sha256,
                          "endpoint_week": c.endpoint_week, "endpoint_window_weeks": c.endpoint_window_weeks}


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("numpy", "scipy", "scikit-image", "tifffile", "pandas", "pyarrow", "dask", "distributed",
                "matplotlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
