"""Checks shared by the loaders of fishcount's declarative data files (panels, criteria, cut-offs) and
of the user's CSV tables (clinical values, cohort covariates).

Each loader raises its own error class; these helpers only keep the wording of the common checks one.
"""
from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING, Container, Iterable, Mapping

if TYPE_CHECKING:
    import pandas as pd

from .errors import FishcountError, InputError

#: The data-file schema version this fishcount reads.
SCHEMA_VERSION = 1


def check_fields(data: Mapping, allowed: Iterable[str], source: str, error: type[FishcountError] = FishcountError,
                 *, prefix: str = "", key_prefix: str = "") -> None:
    """Raise ``error(source, ...)`` naming every key of ``data`` not in ``allowed`` (typos never pass silently).

    ``prefix`` starts the message (e.g. ``"[calls.del5q] "``); ``key_prefix`` is put before each unknown key
    (e.g. ``"category."``).
    """
    allowed = set(allowed)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise error(source, f"{prefix}unknown field(s) {', '.join(key_prefix + u for u in unknown)}; "
                            f"allowed: {', '.join(sorted(allowed))}")


def check_schema_version(data: Mapping, source: str, error: type[FishcountError] = FishcountError) -> None:
    """Raise ``error(source, ...)`` unless ``data["schema_version"]`` (default 1) is the one this fishcount reads."""
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise error(source, f"schema_version {version!r} is not supported (this fishcount reads {SCHEMA_VERSION})")


def checked_level(value: object, name: str, source: str) -> float:
    """A confidence level given in Python: a number strictly between 0 and 1, else a one-line error naming it."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        v = float("nan")
    if not 0.0 < v < 1.0:
        raise InputError(source, f"{name} must be a level between 0 and 1 (e.g. 0.95), got {value!r}")
    return v


def checked_um(value: object, name: str, source: str) -> float:
    """A length in µm given in Python: a finite number > 0, else a one-line error naming it."""
    import math

    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(source, f"{name} must be a number of µm, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise InputError(source, f"{name} must be a positive number of µm, got {value!r}")
    return v


def patient_id(value: object) -> str:
    """A patient id as fishcount compares it: stripped, in Unicode NFC form (``Müller`` typed on one table and
    copied from a macOS folder name, NFD, on another is one patient, not two). Case is kept: ids are compared as
    written otherwise."""
    import unicodedata

    return unicodedata.normalize("NFC", str(value).strip())


def is_blank(value: object, blanks: Container[str]) -> bool:
    """A missing table cell: None, NaN, pd.NA, or a string that is one of ``blanks`` once stripped and
    lower-cased (each table says which words mean "missing" in it)."""
    if isinstance(value, str):
        return value.strip().lower() in blanks
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def read_csv_text(path: "str | PathLike", *, sep: str = ",") -> "pd.DataFrame":
    """Read a user's CSV (or TSV) table with every cell as text, refusing what would be misread.

    * the index is the CSV line number of each row minus 2, so ``line {i + 2}`` names the line in the file
      (header = line 1), after blank lines and quoted cells that hold a line break (:func:`csv_lines`);
    * header names are stripped; two columns of one name (in any case) are refused, naming it (pandas would
      read the second as ``name.1`` and use the first without a word);
    * a row with more values than the header is refused (pandas would shift it under the wrong columns, or
      take the first column as an index: decimal commas in every row made the weeks the patient ids);
      trailing empty values (a trailing comma) are dropped;
    * UTF-8 (with or without a BOM) only: another encoding is refused with a one-line error.

    The result carries ``attrs["csv_lines"] = True``.
    """
    import csv

    import pandas as pd

    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=sep, skipinitialspace=True)
            records = []
            start = 1
            for row in reader:
                records.append((start, row))
                start = reader.line_num + 1  # the next record starts after this one's last line
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, not a table") from None
    except UnicodeDecodeError:
        raise InputError(path, "cannot read as CSV: not UTF-8 text (save it from the spreadsheet as "
                               "'CSV UTF-8')") from None
    except (OSError, csv.Error) as exc:
        raise InputError(path, f"cannot read as CSV ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    lines = [(n, r) for n, r in records if any(c.strip() for c in r)]
    if not lines:
        raise InputError(path, "cannot read as CSV (the file is empty)")
    (_, header), body = lines[0], lines[1:]
    header = [h.strip() for h in header]
    while header and not header[-1]:  # a trailing comma on the header line
        header = header[:-1]
    # a spacer column of a spreadsheet has no name: named as pandas names it, never a clash
    header = [h or f"Unnamed: {i}" for i, h in enumerate(header)]
    seen: dict[str, str] = {}
    for h in header:
        if h.lower() in seen:
            raise InputError(path, f"line 1: column {h!r} appears twice" + ("" if seen[h.lower()] == h else
                                   f" (as {seen[h.lower()]!r})") + "; rename or remove one")
        seen[h.lower()] = h
    out, index = [], []
    for line, r in body:
        extra = [c for c in r[len(header):] if c.strip()]
        if extra:
            hint = " (a decimal comma? write 3.5, not 3,5, or quote the cell)" if sep == "," else ""
            raise InputError(path, f"line {line}: {len(r)} values for the {len(header)} columns of the header "
                                   f"({', '.join(header)}){hint}")
        out.append((r + [""] * len(header))[:len(header)])
        index.append(line - 2)
    df = pd.DataFrame(out, columns=header, index=index, dtype=str)
    df.attrs["csv_lines"] = True
    return df


def csv_lines(df: "pd.DataFrame"):
    """The CSV line number of each row of ``df`` (header = line 1): from the index of a table read by
    :func:`read_csv_text`, else the row position + 2 (a DataFrame given in Python, as a CSV written without
    its index would number it)."""
    import numpy as np

    if df.attrs.get("csv_lines"):
        return df.index.to_numpy(dtype=np.int64) + 2
    return np.arange(len(df), dtype=np.int64) + 2
