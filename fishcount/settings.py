"""A laboratory's analysis settings: one TOML file of detection, segmentation and QC values.

Every threshold fishcount uses is a documented parameter with a default that holds on the sample and
development images. A laboratory that validates other values (a stricter boundary rule, a larger
minimum nucleus, another focus cut-off) writes only those into a settings file and passes it to
``fishcount analyze``, ``run`` or ``segment`` (``--settings``) or to :func:`load_settings` in Python::

    # lab_settings.toml (docs/settings.md)
    schema_version = 1

    [detection]            # fishcount.DETECTION_DEFAULTS (docs/detection.md)
    boundary_diameters = 1.5

    [segmentation]         # classical backend, fishcount.segment.CLASSICAL_DEFAULTS (docs/segmentation.md)
    working_diameter_px = 24

    [qc]                   # which nuclei are scorable, fishcount.segment.QC_DEFAULTS (docs/segmentation.md)
    min_focus_vs_median = 0.5

Every table and key is optional; a key that is not known, a value of the wrong type or out of its
documented range is refused on load with one line naming the file and the key. ``fishcount settings``
prints a template with every key and its default.
"""
from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ._datafile import SCHEMA_VERSION, check_fields, check_schema_version
from .errors import InputError

__all__ = ["DETECTION_RANGES", "Settings", "load_settings", "settings_template"]

#: Allowed range ``(low, high)`` of each detection parameter (:data:`fishcount.analyze.DETECTION_DEFAULTS`);
#: None = unbounded. The meaning of each is documented next to its default.
DETECTION_RANGES: dict[str, tuple[float, float | None]] = {
    "dim_band": (1.0, 10.0),
    "diffuse_ridge": (0.0, 1.0),
    "snap_diameters": (0.0, 10.0),
    "boundary_diameters": (0.0, 10.0),
    "min_auto_snr": (0.0, None),
    "z_step_um": (0.0, None),
    "z_sigma_ratio": (0.1, 10.0),
    "signal_size_tolerance": (-1.0, None),
    "hot_pixel_ratio": (0.0, 1.0),
    "crosstalk_min": (0.0, 0.5),
}

_TABLES = ("detection", "segmentation", "qc")

#: Parameters that describe the images, not the laboratory's rules: refused in a settings file.
_NOT_SETTINGS = {
    "z_step_um": "the z step belongs to the images, not to the settings: pass --z-step (analyze, run) or "
                 "z_step_um= to analyze_field",
}


@dataclass(frozen=True)
class Settings:
    """Validated overrides of fishcount's analysis defaults.

    Attributes
    ----------
    detection : dict of str to float
        Detection parameters (keys of :data:`fishcount.analyze.DETECTION_DEFAULTS`).
    segmentation : dict of str to float or str
        Classical segmentation parameters (keys of :data:`fishcount.segment.CLASSICAL_DEFAULTS`).
    qc : dict of str to float
        Nucleus QC thresholds (keys of :data:`fishcount.segment.QC_DEFAULTS`).
    path : str
        The file read, absolute ("" for settings built in Python).
    sha256 : str
        SHA-256 of the file's bytes ("" for settings built in Python).
    """

    detection: dict = field(default_factory=dict)
    segmentation: dict = field(default_factory=dict)
    qc: dict = field(default_factory=dict)
    path: str = ""
    sha256: str = ""

    @property
    def n_values(self) -> int:
        """How many values the settings override."""
        return len(self.detection) + len(self.segmentation) + len(self.qc)

    def check_backend(self, backend: str | None) -> None:
        """Raise :class:`InputError` (naming the file) when the ``[segmentation]`` table, parameters of the
        classical backend, is set but ``backend`` is another one (None = the default, classical)."""
        if self.segmentation and backend not in (None, "", "classical"):
            raise InputError(self.path or "<settings>", f"[segmentation] sets classical segmentation parameters, "
                                                        f"but the backend is {backend}; remove the table or use "
                                                        "the classical backend")

    def analyze_params(self) -> dict[str, Any]:
        """The settings as keyword arguments of :func:`fishcount.analyze_field` (detection and classical
        parameters flat, QC thresholds as ``qc={...}``); empty tables give nothing."""
        out: dict[str, Any] = {**self.detection, **self.segmentation}
        if self.qc:
            out["qc"] = dict(self.qc)
        return out

    def segment_params(self) -> dict[str, Any]:
        """The segmentation and QC settings as keyword arguments of :func:`fishcount.segment_nuclei`
        (the detection table does not apply to segmentation alone)."""
        out: dict[str, Any] = dict(self.segmentation)
        if self.qc:
            out["qc"] = dict(self.qc)
        return out


def _schemas() -> dict[str, dict[str, tuple[type, float, float | None]]]:
    from .analyze import DETECTION_DEFAULTS
    from .segment import _SCHEMA

    missing = set(DETECTION_DEFAULTS) ^ set(DETECTION_RANGES)
    if missing:  # a parameter added to one of the two and not the other: a programming error
        raise AssertionError(f"DETECTION_RANGES and DETECTION_DEFAULTS differ in {sorted(missing)}")
    return {"detection": {k: (float, lo, hi) for k, (lo, hi) in DETECTION_RANGES.items()},
            "segmentation": dict(_SCHEMA["classical"]), "qc": dict(_SCHEMA["qc"])}


def validate_settings(data: Mapping[str, Any], source: str = "<settings>") -> Settings:
    """Check a settings mapping (the parsed TOML) and return :class:`Settings`.

    Raises
    ------
    InputError
        An unknown table or key, a table that is not a table, a value of the wrong type or out of range;
        the message names ``source`` and the key.
    """
    from .segment import check_parameter

    check_schema_version(data, source, InputError)
    check_fields(data, ("schema_version", *_TABLES), source, InputError)
    schemas = _schemas()
    out: dict[str, dict] = {}
    for table in _TABLES:
        values = data.get(table, {})
        if not isinstance(values, Mapping):
            raise InputError(source, f"[{table}] must be a table of key = value lines, got {values!r}")
        for key in sorted(set(values) & set(_NOT_SETTINGS)):
            raise InputError(source, f"[{table}] {key}: {_NOT_SETTINGS[key]}")
        check_fields(values, set(schemas[table]) - set(_NOT_SETTINGS), source, InputError, prefix=f"[{table}] ")
        out[table] = {k: check_parameter(table, k, v, schemas[table][k], source, InputError)
                      for k, v in values.items()}
    seg = out["segmentation"]
    if "level_split_low" in seg or "level_split_high" in seg:
        from .segment import CLASSICAL_DEFAULTS

        low = seg.get("level_split_low", CLASSICAL_DEFAULTS["level_split_low"])
        high = seg.get("level_split_high", CLASSICAL_DEFAULTS["level_split_high"])
        if low > high:
            raise InputError(source, f"[segmentation] level_split_low ({low:g}) must not exceed level_split_high "
                                     f"({high:g})")
    return Settings(detection=out["detection"], segmentation=seg, qc=out["qc"])


def load_settings(path: str | os.PathLike) -> Settings:
    """Read and validate a settings file (see the module docstring and docs/settings.md).

    Parameters
    ----------
    path : str or path-like
        A TOML file with optional ``[detection]``, ``[segmentation]`` and ``[qc]`` tables.

    Returns
    -------
    Settings
        The values, with the file's path and SHA-256 (provenance).

    Raises
    ------
    InputError
        The file is missing or unreadable, not TOML, or holds an unknown table or key, a value of the
        wrong type or out of range. The message names the file and the key.
    """
    src = Path(path)
    try:
        raw = src.read_bytes()
    except FileNotFoundError:
        raise InputError(src, "settings file not found") from None
    except OSError as exc:
        raise InputError(src, f"cannot read the settings file: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(src, "the settings file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(src, f"not a valid TOML settings file: {exc}") from None
    s = validate_settings(data, str(src))
    return Settings(detection=s.detection, segmentation=s.segmentation, qc=s.qc, path=str(src.resolve()),
                    sha256=hashlib.sha256(raw).hexdigest())


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    return repr(float(v)) if not float(v).is_integer() else f"{float(v):.1f}"


def settings_template() -> str:
    """A settings file with every key at its default (all commented out), to copy and edit.

    Returns
    -------
    str
        TOML text; uncomment and change only the values the laboratory has validated.
    """
    from .analyze import DETECTION_DEFAULTS
    from .segment import CLASSICAL_DEFAULTS, QC_DEFAULTS

    lines = [
        "# fishcount analysis settings (docs/settings.md). Every key below is at its default and",
        "# commented out: uncomment and change only the values your laboratory has validated, and pass",
        "# the file with --settings (fishcount analyze, run, segment) or fishcount.load_settings().",
        f"schema_version = {SCHEMA_VERSION}",
        "",
        "[detection]",
        "# probe signal detection and counting rules (docs/detection.md, Parameters)",
        *[f"# {k} = {_toml_value(v)}" for k, v in DETECTION_DEFAULTS.items() if k not in _NOT_SETTINGS],
        "",
        "[segmentation]",
        "# the classical nucleus segmentation, relative to the nucleus diameter (docs/segmentation.md)",
        *[f"# {k} = {_toml_value(v)}" for k, v in CLASSICAL_DEFAULTS.items()],
        "",
        "[qc]",
        "# which nuclei are scorable (docs/segmentation.md, QC reasons)",
        *[f"# {k} = {_toml_value(v)}" for k, v in QC_DEFAULTS.items()],
        "",
    ]
    return "\n".join(lines)
