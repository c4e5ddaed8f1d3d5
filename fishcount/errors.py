"""Exceptions that fishcount raises for bad input.

Every user-facing error names the file (or object) and says what is wrong in one line, so the
CLI can print ``fishcount: error: <file>: <reason>`` and exit non-zero without a traceback.
"""
from __future__ import annotations

from os import PathLike


class FishcountError(Exception):
    """Base class of all user-facing fishcount errors.

    Parameters
    ----------
    source : str or path-like or None
        The file (or table, panel, ...) the problem is in.
    reason : str
        What is wrong, in one line, ideally with what to do about it.
    """

    def __init__(self, source: str | PathLike | None, reason: str):
        self.source = None if source is None else str(source)
        self.reason = reason
        super().__init__(self.__str__())

    def __str__(self) -> str:  # one line, always
        msg = self.reason.replace("\n", " ")
        return f"{self.source}: {msg}" if self.source else msg


class InputError(FishcountError):
    """An input image or table cannot be read or is not usable."""


class PanelError(FishcountError):
    """A probe panel file is missing, malformed or inconsistent."""


class CriteriaError(FishcountError):
    """A response criteria file is missing, malformed or inconsistent."""
