"""Checks shared by the loaders of fishcount's declarative data files (panels, criteria, cut-offs) and
of the user's CSV tables (clinical values, cohort covariates).

Each loader raises its own error class; these helpers only keep the wording of the common checks one.
"""
from __future__ import annotations

from typing import Container, Iterable, Mapping

from .errors import FishcountError

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
