"""One field end to end: read -> segment -> detect signals -> lab rules -> calls, and its outputs.

This module only orchestrates :mod:`fishcount.io`, :mod:`fishcount.segment`, :mod:`fishcount.spots` and
:mod:`fishcount.calls`; the output contract (``nuclei.csv``, ``spots.csv``, ``labels.tif``,
``overlay.png``, ``field.json``) is documented and versioned in ``docs/outputs.md``.

Example
-------
>>> import fishcount as fc                                    # doctest: +SKIP
>>> result = fc.analyze_field("field01.ome.tif", panel="del5q")  # doctest: +SKIP
>>> result.nuclei[["label", "pattern", "call", "scorable"]].head()  # doctest: +SKIP
>>> fc.write_field_result(result, "results")                 # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
import os
import glob
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from . import __version__
from ._atomic import atomic_path, swap_in_folder, write_csv_atomic, write_text_atomic
from .calls import call_nuclei
from .errors import FishcountError, InputError
from .panels import Panel, load_panel
from .spots import (
    CANDIDATE_SNR,
    CROSSTALK_DUAL_FUSION_BELOW,
    CROSSTALK_DUAL_FUSION_MAX,
    CROSSTALK_MAX_SIGNALS,
    CROSSTALK_MIN_SNR,
    _candidates_2d,
    _candidates_3d,
    _merge_groups,
    _pair_fusions,
    auto_threshold,
    boundary_nuclei,
    correct_channel_shift,
    crosstalk_at,
    estimate_signal_sigma_px,
    finish_signal_table,
    remove_hot_pixels,
    signal_table,
    spot_sigma_px,
    _labels_within,
    display_mixing,
    unmix_crosstalk,
)

__all__ = [
    "OUTPUT_VERSION",
    "DETECTION_DEFAULTS",
    "FieldResult",
    "analyze_field",
    "estimate_thresholds",
    "parse_channel_shifts",
    "write_field_result",
]

#: Version of the output contract written by :func:`write_field_result` (docs/outputs.md).
OUTPUT_VERSION = 1

#: Detection parameters accepted by :func:`analyze_field` (other keyword arguments go to
#: :func:`fishcount.segment.segment_nuclei`). Values are fishcount design choices [I], relative to
#: the noise and the threshold so that they hold across microscopes; see docs/detection.md.
DETECTION_DEFAULTS: dict[str, float] = {
    # ambiguity band: a signal whose SNR is within [t / dim_band, t * dim_band) of the threshold t
    # makes its nucleus "dim_signals" (signals too dim to trust, clinical.md §3.2 [U])
    "dim_band": 1.25,
    # diffuse rule: maxima joined by a ridge >= this fraction of the dimmer peak are one signal
    # (diffuse signals count as one, clinical.md §3.2)
    "diffuse_ridge": 0.9,
    # signals up to this many signal diameters outside a nucleus' mask belong to it (segmented outlines
    # are uncertain by a pixel or two and signals sit at the nuclear periphery) [I]
    "snap_diameters": 1.5,
    # a counted signal within this many signal diameters of ANOTHER nucleus' mask makes its nucleus and
    # that other nucleus "signal_at_boundary" (touching nuclei: the signal cannot be assigned with
    # confidence, so neither count can be trusted; overlapping nuclei "Do not count", clinical.md §3.2)
    # [I]; 0 disables
    "boundary_diameters": 1.0,
    # lowest automatic threshold, in noise units (see fishcount.spots.MIN_AUTO_SNR)
    "min_auto_snr": 4.5,
    # z-stacks kept by read_field(z_mode="keep"): 0 = detect on the maximum projection (default);
    # > 0 = the z step in µm, and detection runs in 3-D (signals overlapping in projection stay apart)
    "z_step_um": 0.0,
    # axial spot sigma as a multiple of the lateral one (the axial PSF is 2-3x longer) [I]
    "z_sigma_ratio": 2.0,
    # signal size check: the signals' own size is measured (fishcount.spots.estimate_signal_sigma_px on
    # the brightest signals inside nuclei); when they are smaller than the panel's signal_diameter_um by
    # more than this fraction (measured < panel / (1 + tolerance)), detection runs again at the measured
    # size and the panel's distances (split, fusion, snap, boundary) scale with it; larger signals are
    # recorded but detected at the panel's size; < 0 = no check [I]
    "signal_size_tolerance": 0.1,
    # camera hot pixels in the probe channels: a single pixel whose 8 neighbours all lie within this
    # fraction of the way from the darkest of them to it, 8 noise SDs above the brightest, is set to that
    # brightest neighbour before detection (optics spread a real signal over its neighbours; each hot pixel
    # inside a nucleus was counted as a signal); 0 = off (fishcount.spots.remove_hot_pixels) [I]
    "hot_pixel_ratio": 0.1,
    # crosstalk between probe channels (filter bleed-through) of deletion, enumeration and dual-fusion
    # panels: measured on the field (fishcount.spots.crosstalk_at, at the first detection's candidates)
    # and, where a channel shows at least this fraction of another's signals, taken out by linear unmixing
    # before detection (3 % already cost 6 points of scorable nuclei, 10 % made most counts wrong;
    # docs/detection.md); 0 = off [I]
    "crosstalk_min": 0.02,
}

#: Signals used to measure the signal size: inside nuclei, at least this SNR, at most this many (the
#: brightest), and no measurement from fewer than SIZE_MIN_SIGNALS of them in a channel [I].
SIZE_MIN_SNR = 10.0
SIZE_MAX_SIGNALS = 50
SIZE_MIN_SIGNALS = 20


@dataclass(frozen=True)
class FieldResult:
    """Everything :func:`analyze_field` found in one field.

    Attributes
    ----------
    field : Field
        The field that was analysed (images and metadata).
    labels : ndarray, shape (Y, X), int32
        Nucleus labels (0 = background).
    nuclei : DataFrame
        The ``nuclei.csv`` contract: one row per nucleus (docs/outputs.md).
    spots : DataFrame
        The ``spots.csv`` contract: one row per detected signal (docs/outputs.md).
    thresholds : dict of str to float
        Signal name -> detection threshold used (SNR units, noise units of the enhanced image).
    params : dict
        Everything else worth recording: pixel size and its source, noise per channel, threshold
        source per channel, detection and segmentation parameters, timings (s).
    panel : Panel
        The probe panel used.
    """

    field: Any
    labels: np.ndarray
    nuclei: pd.DataFrame
    spots: pd.DataFrame
    thresholds: dict[str, float]
    params: dict
    panel: Panel

    @property
    def stem(self) -> str:
        return self.field.stem


# -------------------------------------------------------------------------------------------
# inputs
# -------------------------------------------------------------------------------------------
def _as_field(source, panel: Panel, channels, pixel_size_um, *, z_mode: str = "max", z_plane: int | None = None,
              axes: str | None = None):
    from . import io as _io

    files = (str, os.PathLike, list, tuple, _io.Position)  # sources read from files
    if z_plane is not None and not isinstance(source, files):
        raise InputError(getattr(source, "path", "<array>"),
                         "z_plane (--z-plane) applies when reading a file; pass that plane of the array instead")
    if axes is not None and not isinstance(source, files):
        raise InputError(getattr(source, "path", "<array>"),
                         "axes (--axes) applies when reading a file; an array is read as (C, Y, X)")

    if isinstance(source, _io.Field):
        if pixel_size_um is not None and pixel_size_um != source.pixel_size_um:
            from dataclasses import replace

            source = replace(source, pixel_size_um=float(pixel_size_um), pixel_size_source="user")
        return source
    if isinstance(source, Mapping):
        arrays = dict(source)
        dapi = None
        for key in list(arrays):
            if key.upper() == "DAPI":
                dapi = arrays.pop(key)
        if dapi is None:
            raise InputError("<arrays>", "a dict of arrays needs a 'DAPI' entry plus one entry per panel signal")
        return _io.field_from_arrays(dapi, arrays, pixel_size_um, panel=panel)
    if isinstance(source, np.ndarray):
        arr = source
        names = _io.channel_list(channels) if channels is not None else ["DAPI", *panel.signal_names]
        if arr.ndim != 3 or arr.shape[0] != len(names):
            raise InputError(
                "<array>",
                f"an array must be (C, Y, X) with C = {len(names)} channels ({', '.join(names)}), got shape {arr.shape}",
            )
        d = {n: arr[i] for i, n in enumerate(names)}
        return _as_field(d, panel, None, pixel_size_um)
    return _io.read_field(source, panel, channels=channels, pixel_size_um=pixel_size_um, z_mode=z_mode, z_plane=z_plane,
                          axes=axes)


def _field_for_detection(source, panel: Panel, channels, pixel_size_um, det: Mapping[str, float], z_plane,
                         axes: str | None = None):
    """The field read the way detection needs it: z-stack kept for 3-D detection (``z_step_um > 0``),
    one plane (``z_plane``) or the maximum projection (default), with one-line errors for a 3-D request
    on a single-plane field and for 3-D detection combined with one plane."""
    three_d = det["z_step_um"] > 0
    if three_d and z_plane is not None:
        raise InputError("z_step_um", "3-D detection (--z-step) uses every z-plane; it cannot be combined with "
                                      "z_plane (--z-plane)")
    mode = "keep" if three_d else ("plane" if z_plane is not None else "max")
    fld = _as_field(source, panel, channels, pixel_size_um, z_mode=mode, z_plane=z_plane, axes=axes)
    if three_d and not any(v.ndim == 3 and v.shape[0] > 1 for v in fld.probes.values()):
        raise InputError(fld.path, "3-D detection (--z-step / z_step_um) needs a z-stack; this field has a single "
                                   "z-plane (leave --z-step out)")
    return fld


def _without_crosstalk(fld, panel: Panel, cands: dict[str, tuple],
                       det: Mapping[str, float]) -> tuple[Any, dict[str, float], bool]:
    """Crosstalk between the probe channels of deletion and enumeration panels (whose probes do not
    co-localise) and of dual-fusion panels (a third of whose signals at least stand apart), measured at
    the candidates already found (:func:`fishcount.spots.crosstalk_at`: each channel's brightest
    candidates inside nuclei, SNR >= ``CROSSTALK_MIN_SNR``, read in every other channel's enhanced image;
    debris outside nuclei shows in every channel; the median ratio, on dual-fusion panels of the ratios
    below ``CROSSTALK_DUAL_FUSION_BELOW``), and unmixed where it reaches ``crosstalk_min``
    (:func:`fishcount.spots.unmix_crosstalk`; on a dual-fusion panel only up to
    ``CROSSTALK_DUAL_FUSION_MAX``: more is read as fused signals, not unmixed). Returns the field (unmixed
    or as given), the fractions as ``{"SRC->DST": k}``, whether it was unmixed (the caller then detects
    again) and how the record came about (``params["crosstalk_source"]``: measured, or why not). 3-D
    detection is not measured."""
    k_min = float(det["crosstalk_min"])
    if k_min <= 0:
        return fld, {}, False, "off (crosstalk_min = 0)"
    if getattr(fld, "colour_composite", False) and len(fld.probes) >= 2 and all(
            np.ndim(v) == 2 for v in fld.probes.values()):
        # a colour composite: a display colour mixes the planes in every pixel, co-localised signals
        # included, so it is read for every kind of panel (fishcount.spots.display_mixing)
        source = "measured (colour composite display mixing)"
        est = display_mixing(fld.probes)
        rec = {f"{a}->{b}": round(v, 4) for (a, b), v in est.items()}
        use = _crosstalk_used(est, panel, k_min, True)
        if not use:
            return fld, rec, False, source
        return dataclasses.replace(fld, probes=unmix_crosstalk(fld.probes, use)), rec, True, source
    if panel.kind not in ("deletion", "enumeration", "dual-fusion"):
        return fld, {}, False, f"not measured ({panel.kind} panel: its probes co-localise; give channel_crosstalk)"
    if len(cands) < 2:
        return fld, {}, False, "not measured (one probe channel)"
    enh, points = {}, {}
    for name, (cand, _, resp) in cands.items():
        if "z" in cand or np.ndim(resp) != 2:
            return fld, {}, False, "not measured (3-D detection; give channel_crosstalk)"
        sel = np.flatnonzero((cand["snr"] >= CROSSTALK_MIN_SNR) & (cand["label"] > 0))  # debris left out
        sel = sel[np.argsort(-cand["snr"][sel], kind="stable")[:CROSSTALK_MAX_SIGNALS]]
        h, w = np.shape(resp)
        enh[name] = resp
        points[name] = (np.clip(np.rint(cand["y"][sel]).astype(np.int64), 0, h - 1),
                        np.clip(np.rint(cand["x"][sel]).astype(np.int64), 0, w - 1))
    est = crosstalk_at(enh, points, CROSSTALK_DUAL_FUSION_BELOW if panel.kind == "dual-fusion" else 1.0)
    rec = {f"{a}->{b}": round(v, 4) for (a, b), v in est.items()}
    use = _crosstalk_used(est, panel, k_min, getattr(fld, "colour_composite", False))
    if not use:
        return fld, rec, False, "measured (this field)"
    return dataclasses.replace(fld, probes=unmix_crosstalk(fld.probes, use)), rec, True, "measured (this field)"


#: The display mixing unmixed in a colour composite: from COMPOSITE_MIXING_MIN (a display colour mixes planes
#: by a large share, orange #ff8c00 by 0.55, or not at all; the lower envelope reads 0.05-0.10 where the
#: probes co-localise in most signals, break-apart panels: seventeenth session, bench_composite.py) up to
#: COMPOSITE_MIXING_MAX (a probe shown yellow would put all of its light in two planes, which no unmixing
#: can tell apart).
COMPOSITE_MIXING_MIN = 0.15
COMPOSITE_MIXING_MAX = 0.9


def _crosstalk_used(est: Mapping[tuple[str, str], float], panel: Panel, k_min: float,
                    composite: bool = False) -> dict[tuple[str, str], float]:
    """The measured fractions that are unmixed: from ``crosstalk_min`` on, at most 0.5 (a filter passes less
    than half of another dye's light); on a dual-fusion panel only up to ``CROSSTALK_DUAL_FUSION_MAX`` (a
    field whose separate signals are too few reads its fusions). In a colour composite
    (``Field.colour_composite``; the display mixing, :func:`fishcount.spots.display_mixing`, holds in
    co-localised signals too) any kind of panel, from :data:`COMPOSITE_MIXING_MIN` up to
    :data:`COMPOSITE_MIXING_MAX` (a probe displayed orange is red plus 55 % of it in green)."""
    k_max = CROSSTALK_DUAL_FUSION_MAX if panel.kind == "dual-fusion" and not composite else np.inf
    cap = COMPOSITE_MIXING_MAX if composite else 0.5
    if composite:
        k_min = max(k_min, COMPOSITE_MIXING_MIN)
    return {pair: min(float(v), cap) for pair, v in est.items() if k_min <= float(v) <= k_max}


def _without_hot_pixels(fld, det: Mapping[str, float]) -> tuple[Any, dict[str, int]]:
    """The field with camera hot pixels removed from its probe channels
    (:func:`fishcount.spots.remove_hot_pixels`, ``hot_pixel_ratio``) and the count per signal."""
    cleaned, counts = {}, {}
    for name, img in fld.probes.items():
        cleaned[name], counts[name] = remove_hot_pixels(img, det["hot_pixel_ratio"])
    if any(counts.values()):
        fld = dataclasses.replace(fld, probes=cleaned)
    return fld, counts


def _signals_for(name: Any, panel: Panel) -> list[str]:
    """The signals ``name`` stands for in ``panel``: the signal itself, or every signal labelled with that
    fluor (case-insensitive); empty when it is neither."""
    name = str(name)
    if name in panel.signal_names:
        return [name]
    return [s.name for s in panel.signals if s.fluor.casefold() == name.casefold()]


def _signals_named(name: Any, panel: Panel, where: str, key: Any = None) -> list[str]:
    """:func:`_signals_for`, raising :class:`InputError` (``where``; the entry ``key`` named first when it
    is not ``name`` itself) when ``name`` is neither a signal nor a fluor of ``panel``."""
    hits = _signals_for(name, panel)
    if not hits:
        lead = "" if key is None else f"{key!r}: "
        raise InputError(where, f"{lead}{name!r} is neither a signal nor a fluor of panel {panel.id} (signals "
                                f"{', '.join(panel.signal_names)}; fluors {', '.join(s.fluor for s in panel.signals)})")
    return hits


def _check_shifts(shifts: "Mapping[str, Any] | None", panel: Panel) -> dict[str, tuple[float, float]]:
    """``channel_shifts_um`` validated and resolved to the panel's signals: signal -> (dy, dx) µm.

    A key is a signal name or a fluor (case-insensitive; every signal labelled with it): a lab calibrates
    its filter sets once (``SpectrumGreen``) and gives the same shifts to every panel. A signal named by
    both its own name and its fluor takes the value given for its name.
    """
    out: dict[str, tuple[float, float]] = {}
    by_fluor: dict[str, tuple[float, float]] = {}
    for k, v in dict(shifts or {}).items():
        _signals_named(k, panel, "channel_shifts_um")
        try:
            dy, dx = (float(x) for x in v)
        except (TypeError, ValueError):
            raise InputError("channel_shifts_um", f"{k}: expected (dy, dx) in µm, got {v!r}") from None
        if not (np.isfinite(dy) and np.isfinite(dx)):
            raise InputError("channel_shifts_um", f"{k}: expected two finite numbers (dy, dx) in µm, got {v!r}")
        if k in panel.signal_names:
            out[k] = (dy, dx)
        else:
            by_fluor[str(k).casefold()] = (dy, dx)
    for sig in panel.signals:
        if sig.name not in out and sig.fluor.casefold() in by_fluor:
            out[sig.name] = by_fluor[sig.fluor.casefold()]
    return out


def parse_channel_shifts(values: "str | Iterable[str]") -> dict[str, tuple[float, float]]:
    """``SIGNAL=DY,DX`` entries (µm) -> ``{signal: (dy, dx)}``, for ``channel_shifts_um``.

    ``values`` is one string (entries separated by ``;`` or whitespace) or an iterable of entries, as the
    CLI's repeatable ``--channel-shift`` and the napari plugin's text field give them. Raises
    :class:`~fishcount.errors.InputError` naming the malformed entry.

    Parameters
    ----------
    values : str or iterable of str
        ``SIGNAL=DY,DX`` entries: a signal name or fluor, then the lateral shift of that channel against DAPI
        in µm, ``dy`` (rows, down) and ``dx`` (columns, right), e.g. ``"BCR=0,0.3; SpectrumOrange=0.1,-0.2"``.

    Returns
    -------
    dict of str to (float, float)
        ``{signal or fluor: (dy, dx)}`` in µm, in entry order (a repeated name keeps its last value); names are
        not checked against a panel here (see :func:`check_calibrations`).

    Raises
    ------
    InputError
        An entry without ``=``, with an empty name, or without exactly two numbers after it (source
        ``--channel-shift``).
    """
    items = values.replace(";", " ").split() if isinstance(values, str) else list(values)
    out: dict[str, tuple[float, float]] = {}
    for v in items:
        name, sep, rest = str(v).partition("=")
        try:
            dy, dx = (float(x) for x in rest.split(","))
            if not sep or not name.strip():
                raise ValueError
        except ValueError:
            raise InputError("--channel-shift", f"expected SIGNAL=DY,DX in µm (e.g. BCR=0,0.3), got {v!r}") from None
        out[name.strip()] = (dy, dx)
    return out


def _crosstalk_pair(key: Any) -> tuple:
    """``"SRC->DST"`` or ``(src, dst)`` -> ``(src, dst)`` (any other length when malformed)."""
    return tuple(key) if isinstance(key, (tuple, list)) else tuple(str(key).split("->"))


def _check_crosstalk(crosstalk: "Mapping[Any, Any] | None", panel: Panel) -> dict[tuple[str, str], float]:
    """``channel_crosstalk`` validated and resolved to the panel's signals: ``(src, dst) -> k``.

    A key is ``"SRC->DST"`` or a ``(src, dst)`` pair; each side a signal name or a fluor (case-insensitive;
    every signal labelled with it), so one calibration of a microscope's filter sets serves every panel
    with those fluors. A pair named by its signals takes the value given for them over the fluors'. The
    value is the fraction of ``src``'s light seen through ``dst``'s filter, in [0, 0.5].
    """
    by_name: dict[tuple[str, str], float] = {}
    by_fluor: dict[tuple[str, str], float] = {}
    for key, v in dict(crosstalk or {}).items():
        pair = _crosstalk_pair(key)
        if len(pair) != 2 or not all(str(x).strip() for x in pair):
            raise InputError("channel_crosstalk", f"{key!r}: expected SRC->DST (signals or fluors)")
        try:
            k = float(v)
        except (TypeError, ValueError):
            raise InputError("channel_crosstalk", f"{key}: expected a fraction, got {v!r}") from None
        if not 0.0 <= k <= 0.5:
            raise InputError("channel_crosstalk", f"{key}: expected a fraction in [0, 0.5] (a filter passes less "
                                                  f"than half of another dye's light), got {v!r}")
        named = all(str(x).strip() in panel.signal_names for x in pair)
        for a in _signals_named(str(pair[0]).strip(), panel, "channel_crosstalk", key):
            for b in _signals_named(str(pair[1]).strip(), panel, "channel_crosstalk", key):
                if a == b:
                    raise InputError("channel_crosstalk", f"{key}: a channel cannot leak into itself")
                (by_name if named else by_fluor)[(a, b)] = k
    return {**by_fluor, **by_name}


def calibrations_for_panel(analyze_params: Mapping[str, Any], panel: Panel) -> dict[str, Any]:
    """``analyze_field`` keywords with the calibrations (``channel_shifts_um``, ``channel_crosstalk``)
    restricted to the entries that name this panel's signals or fluors.

    One calibration of a microscope serves a study whose fields use several panels (``fishcount run``):
    ``SpectrumOrange:SpectrumGreen=0.08`` means nothing to a one-colour enumeration probe, whose fields then
    go without it. An entry that fits no panel of the study is an error (:func:`check_calibrations`).

    Parameters
    ----------
    analyze_params : mapping of str to Any
        Keyword arguments of :func:`analyze_field`, possibly with ``channel_shifts_um`` (``{signal or fluor:
        (dy, dx)}``, µm) and ``channel_crosstalk`` (``{"SRC->DST" or (src, dst): fraction}``).
    panel : Panel
        The panel of the field to analyse.

    Returns
    -------
    dict of str to Any
        A shallow copy of ``analyze_params`` in which ``channel_shifts_um`` keeps only the entries whose key is a
        signal or fluor of ``panel``, and ``channel_crosstalk`` only the pairs whose both sides are (malformed
        keys are kept, for :func:`analyze_field` to report); other keywords unchanged. Values are not validated.
    """
    out = dict(analyze_params)
    shifts = out.get("channel_shifts_um")
    if shifts:
        out["channel_shifts_um"] = {k: v for k, v in dict(shifts).items() if _signals_for(k, panel)}
    crosstalk = out.get("channel_crosstalk")
    if crosstalk:
        keep = {}
        for key, v in dict(crosstalk).items():
            pair = _crosstalk_pair(key)
            if len(pair) != 2 or all(_signals_for(str(x).strip(), panel) for x in pair):
                keep[key] = v  # (a malformed key is left for analyze_field to report)
        out["channel_crosstalk"] = keep
    return out


def check_calibrations(analyze_params: Mapping[str, Any], panels: "Iterable[Panel]") -> None:
    """Raise :class:`InputError` for a calibration entry that names no signal or fluor of any of ``panels``
    (a typo would otherwise be dropped from every field), or that is malformed.

    Parameters
    ----------
    analyze_params : mapping of str to Any
        Keyword arguments of :func:`analyze_field`; only ``channel_shifts_um`` (``{signal or fluor: (dy, dx)}``,
        µm) and ``channel_crosstalk`` (``{"SRC->DST" or (src, dst): fraction in [0, 0.5]}``) are checked.
    panels : iterable of Panel
        The panels of the study; each entry must be valid for at least one of them. With no panels nothing is
        checked.

    Returns
    -------
    None

    Raises
    ------
    InputError
        For the first entry valid for none of ``panels``: the error of its check against the first panel (an
        unknown signal / fluor, a shift that is not two finite numbers, a crosstalk key that is not
        ``SRC->DST``, a fraction outside [0, 0.5], or a channel leaking into itself).
    """
    panels = list(panels)
    for what, check in (("channel_shifts_um", _check_shifts), ("channel_crosstalk", _check_crosstalk)):
        for key, v in dict(analyze_params.get(what) or {}).items():
            errors = []
            for pan in panels:
                try:
                    check({key: v}, pan)
                    break
                except InputError as exc:
                    errors.append(exc)
            else:
                if errors:
                    raise errors[0]


def parse_crosstalk(values: "str | Iterable[str]") -> dict[str, float]:
    """``SRC:DST=K`` (or ``SRC->DST=K``) entries -> ``{"SRC->DST": k}``, for ``channel_crosstalk``.

    ``values`` is one string (entries separated by ``;`` or whitespace) or an iterable of entries, as the
    CLI's repeatable ``--crosstalk`` gives them (``:`` needs no quoting in a shell, ``->`` does). Raises
    :class:`~fishcount.errors.InputError` naming the malformed entry.

    Parameters
    ----------
    values : str or iterable of str
        ``SRC:DST=K`` or ``SRC->DST=K`` entries: source and destination signal names or fluors, and ``K``, the
        fraction (dimensionless) of the source dye's light seen through the destination's filter, e.g.
        ``"SpectrumOrange:SpectrumGreen=0.08"``.

    Returns
    -------
    dict of str to float
        ``{"SRC->DST": k}`` in entry order (a repeated pair keeps its last value). Names and the range of ``k``
        ([0, 0.5]) are checked later, against a panel (:func:`check_calibrations`, :func:`analyze_field`).

    Raises
    ------
    InputError
        An entry without ``=``, without a ``:`` or ``->`` separator, with an empty side, or whose ``K`` is not a
        number (source ``--crosstalk``).
    """
    items = values.replace(";", " ").split() if isinstance(values, str) else list(values)
    out: dict[str, float] = {}
    for v in items:
        pair, sep, rest = str(v).rpartition("=")
        src, arrow, dst = pair.partition("->") if "->" in pair else pair.partition(":")
        try:
            k = float(rest)
            if not sep or not arrow or not src.strip() or not dst.strip():
                raise ValueError
        except ValueError:
            raise InputError("--crosstalk", f"expected SRC:DST=K (e.g. SpectrumOrange:SpectrumGreen=0.08), "
                                            f"got {v!r}") from None
        out[f"{src.strip()}->{dst.strip()}"] = k
    return out


def correct_channel_shifts(field: Any, channel_shifts_um: "Mapping[str, Any] | None",
                           panel: "Panel | str | None" = None, pixel_size_um: float | None = None) -> Any:
    """The field with its probe channels moved back by their calibrated lateral shifts, as
    :func:`analyze_field` sees them (``channel_shifts_um``; docs/detection.md).

    Parameters
    ----------
    field : fishcount.io.Field
        The field as read.
    channel_shifts_um : dict of str to (float, float)
        ``{signal or fluor: (dy, dx)}`` µm, where each channel's content appears relative to DAPI
        (``params["channel_shifts_um"]`` of a field result holds them per signal).
    panel : Panel or str, optional
        Panel that resolves the keys (default: the field's, else the default panel).
    pixel_size_um : float, optional
        Pixel size, µm (default: the field's).

    Returns
    -------
    fishcount.io.Field
        A new field with the shifted channels as float32 (:func:`fishcount.spots.correct_channel_shift`);
        ``field`` itself when every shift is zero.

    Raises
    ------
    InputError
        A key that is neither a signal nor a fluor of the panel, a malformed shift, or a shift with no
        pixel size.
    """
    pan = panel if isinstance(panel, Panel) else load_panel(panel or getattr(field, "panel_id", None))
    shifts = _check_shifts(channel_shifts_um, pan)
    px = pixel_size_um or field.pixel_size_um
    if any(v != (0.0, 0.0) for v in shifts.values()) and not px:
        raise InputError(field.path, "a channel shift (µm) needs the pixel size; pass pixel_size_um")
    missing = [k for k in shifts if k not in field.probes]
    if missing:
        raise InputError(field.path, f"no probe channel {', '.join(missing)} to shift (channels: "
                                     f"{', '.join(field.probes)})")
    return _without_channel_shifts(field, shifts, float(px) if px else 0.0)


def channels_as_analysed(field: Any, params: Mapping[str, Any], panel: "Panel | str | None" = None) -> Any:
    """The field's probe channels as :func:`analyze_field` saw them, from a field result's ``params``
    (``field.json``): moved back by ``channel_shifts_um`` (:func:`correct_channel_shifts`) and unmixed by
    ``crosstalk`` when ``crosstalk_unmixed`` (:func:`fishcount.spots.unmix_crosstalk`; a measured fraction
    as recorded, to 4 decimals). For pictures of a result read back from disk (the napari review gallery);
    camera hot pixels are not removed again.

    Parameters
    ----------
    field : fishcount.io.Field
        The field as read from its source.
    params : dict
        ``FieldResult.params`` or ``field.json``'s ``params``.
    panel : Panel or str, optional
        Panel of the result (default: the field's).

    Returns
    -------
    fishcount.io.Field
        A new field, or ``field`` itself when the analysis changed no channel.
    """
    pan = panel if isinstance(panel, Panel) else load_panel(panel or getattr(field, "panel_id", None))
    field = correct_channel_shifts(field, params.get("channel_shifts_um") or {}, pan)
    rec = dict(params.get("crosstalk") or {})
    if params.get("crosstalk_unmixed") and rec:
        if str(params.get("crosstalk_source", "")).startswith("calibrated"):
            mix = _check_crosstalk(rec, pan)
        else:  # measured: the pairs _without_crosstalk unmixed
            det = {**DETECTION_DEFAULTS, **dict(params.get("detection") or {})}
            est = {_crosstalk_pair(k): float(v) for k, v in rec.items()}
            mix = _crosstalk_used(est, pan, float(det["crosstalk_min"]), getattr(field, "colour_composite", False))
        field = dataclasses.replace(field, probes=unmix_crosstalk(field.probes, mix))
    return field


def _without_channel_shifts(fld, shifts: Mapping[str, tuple[float, float]], px: float):
    """The field with each probe channel in ``shifts`` moved back by its calibrated shift
    (:func:`fishcount.spots.correct_channel_shift`)."""
    if not any(v != (0.0, 0.0) for v in shifts.values()):
        return fld
    probes = dict(fld.probes)
    for name, shift in shifts.items():  # (a zero shift returns the channel itself)
        probes[name] = correct_channel_shift(probes[name], shift, px)
    return dataclasses.replace(fld, probes=probes)


def _split_params(params: Mapping[str, Any]) -> tuple[dict, dict]:
    det = dict(DETECTION_DEFAULTS)
    seg = {}
    for k, v in params.items():
        if k in DETECTION_DEFAULTS:
            det[k] = float(v)
        else:
            seg[k] = v
    z = det["z_step_um"]
    if not (z == 0 or Z_STEP_RANGE_UM[0] <= z <= Z_STEP_RANGE_UM[1]):  # NaN, inf and negative included
        raise InputError("--z-step", f"the z step must be 0 (detect on the projection) or {Z_STEP_RANGE_UM[0]:g}-"
                                     f"{Z_STEP_RANGE_UM[1]:g} µm (a microscope's focus step), got {z!r}: check the "
                                     "unit (µm, not nm or mm)")
    if not det["dim_band"] >= 1:
        raise InputError("dim_band", f"must be >= 1 (1 disables the dim_signals rule), got {det['dim_band']}")
    return det, seg


def _check_thresholds(thresholds: Mapping[str, float] | None, panel: Panel) -> dict[str, float]:
    out = {}
    for k, v in dict(thresholds or {}).items():
        if k not in panel.signal_names:
            raise InputError("thresholds", f"unknown signal {k!r}; panel {panel.id} has {', '.join(panel.signal_names)}")
        try:
            fv = float(v)
        except (TypeError, ValueError):
            raise InputError("thresholds", f"threshold for {k} must be a number, got {v!r}") from None
        if not (np.isfinite(fv) and fv > 0):
            raise InputError("thresholds", f"threshold for {k} must be a positive number (SNR units), got {v!r}")
        out[k] = fv
    return out


def _segment(field, pixel_size_um, seg_params):
    from .segment import segment_nuclei

    dapi = field.dapi if field.dapi.ndim == 2 else field.dapi.max(axis=0)
    return segment_nuclei(
        dapi, pixel_size_um, saturation_value=field.saturation_value, source=field.path, **seg_params
    )


#: The nuclei's size at the pixel size over the nominal ``nucleus_diameter_um`` (median equivalent
#: diameter of the convex nuclei off the edge, in µm, over 9 µm by default) outside this band makes a
#: field warning that the pixel size looks wrong (e.g. written without the objective's magnification, or
#: for another objective). Marrow fields read 0.7-1.2 (small 5-8 µm nuclei ~0.7, large 9-15 µm ~1.2;
#: segment_defaults.toml, size check), so only a ~1.6x disagreement is reported; the segmentation itself
#: already follows the nuclei (size check) [I].
SCALE_WARNING_BAND: tuple[float, float] = (0.55, 1.6)


def _option_warnings(seg) -> list[str]:
    """The segmentation's word that an option was ignored (a nucleus diameter in µm without a pixel size)."""
    msg = str(dict(getattr(seg, "params", {}) or {}).get("message") or "")
    return [msg] if msg.startswith("nucleus_diameter_um needs a pixel size") else []


#: z steps a FISH z-stack is taken at, µm (0.1-1 µm in practice); outside, the value is in another unit
#: (0.0004 = 0.4 µm typed in mm made 3-D detection run for minutes and gigabytes; fishcount design choice [I]).
Z_STEP_RANGE_UM = (0.01, 20.0)


def _yield_warnings(seg, nuclei: pd.DataFrame) -> list[str]:
    """A warning when the field gives nothing to count: no nucleus found (with the segmentation's own
    message), or not one nucleus scorable (with the commonest reasons), so that a field never quietly
    contributes 0 to a sample."""
    if len(nuclei) == 0:
        why = str(dict(getattr(seg, "params", {}) or {}).get("message") or "")
        return [f"no nucleus found{': ' + why if why else ''}; check the DAPI channel (--channels), the image and "
                "the pixel size"]
    from .calls import as_bool

    if as_bool(nuclei["scorable"]).any():
        return []
    reasons = _exclusion_counts(nuclei)
    top = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
    return [f"none of the {len(nuclei)} nuclei is scorable ({top}); check the exposure, the probe channels "
            "(--channels) and the pixel size"]


def _scale_warnings(seg, px: float, px_source: str, size_rec: dict) -> list[str]:
    """A warning when the nuclei contradict the pixel size (:data:`SCALE_WARNING_BAND`; their median
    diameter as the segmentation's size check measures it, convex nuclei off the edge), with what the
    signals say; empty otherwise, with too few such nuclei, and when the pixel size was itself inferred
    from the nuclei."""
    from .segment import DEFAULT_NUCLEUS_DIAMETER_UM, SIZE_CHECK, median_nucleus_diameter_px

    qc = getattr(seg, "qc", None)
    if qc is None or not px or str(px_source).startswith("inferred") \
            or not {"area_px", "solidity", "touches_border"} <= set(qc.columns):  # (a caller's own QC table)
        return []
    median_um = median_nucleus_diameter_px(qc, SIZE_CHECK["estimate_check_min_solidity"]) * px  # convex ones
    if not np.isfinite(median_um):
        return []
    nominal = float(dict(getattr(seg, "params", {}) or {}).get("nucleus_diameter_um") or DEFAULT_NUCLEUS_DIAMETER_UM)
    ratio = median_um / nominal
    lo, hi = SCALE_WARNING_BAND
    if lo <= ratio <= hi:
        return []
    msg = (f"the nuclei measure {median_um:.1f} µm (median) at {px:g} µm per pixel, {ratio:.2g}x the "
           f"{nominal:g} µm expected: check the pixel size ({px_source})")
    sig = (size_rec or {}).get("measured_ratio")
    if sig is not None:
        msg += f"; the signals measure {sig:.2g}x the panel's {size_rec.get('panel_diameter_um')} µm"
    if "adjusted to the nuclei" in str(getattr(seg, "diameter_source", "")):
        msg += "; the nuclei were segmented at their own size, signal distances use the pixel size"
    return [msg]


#: A field warning when at least this share of a probe's counted signals (and at least
#: PROBE_SATURATION_MIN_SIGNALS of them) reach the camera's full scale (``Field.saturation_value``) within
#: one pixel of their centre: saturated signals are flat-topped, and two close ones can merge into one
#: plateau. Measured (seventeenth session, simulated field seed 300): 16-bit and 8-bit min-max exports 0 %
#: of the signals, an 8-bit contrast-stretched export (1st-99.5th percentile, as display exports) 87 %
#: (fishcount design choice [I]).
PROBE_SATURATION_WARN = 0.1
PROBE_SATURATION_MIN_SIGNALS = 10


def _probe_saturation(field, spots, pan: Panel) -> tuple[dict[str, float], list[str]]:
    """Per signal, the share of its counted signals (inside a nucleus, counted) whose brightest pixel within
    one pixel of the centre reaches ``field.saturation_value`` in the probe image as read (before hot-pixel
    removal and unmixing); and the warnings (:data:`PROBE_SATURATION_WARN`). ``({}, [])`` for float images
    (no full scale)."""
    sat = getattr(field, "saturation_value", None)
    if sat is None or spots is None or len(spots) == 0:
        return {}, []
    counted = spots[(spots["label"].to_numpy() > 0) & (spots["counts_as"].astype(str).to_numpy() != "")]
    shares: dict[str, float] = {}
    warnings: list[str] = []
    for name in pan.signal_names:
        img = np.asarray(field.probes[name])
        if img.ndim == 3:
            img = img.max(axis=0)
        sel = counted[counted["signal"].to_numpy() == name]
        if len(sel) == 0:
            continue
        # the 3 x 3 pixels around each centre (a disc of radius 1.5 px; spots._labels_within samples any image)
        top = _labels_within(sel["y"].to_numpy(), sel["x"].to_numpy(), img, 1.5).max(axis=1)
        share = float(np.mean(top >= sat))
        shares[name] = round(share, 4)
        if share >= PROBE_SATURATION_WARN and len(sel) >= PROBE_SATURATION_MIN_SIGNALS:
            warnings.append(f"{name}: {share:.0%} of its {len(sel)} counted signals reach the image's full scale "
                            f"({sat:g}): saturated signals close together can merge into one; lower the exposure "
                            "(or export without contrast stretching)")
    return shares, warnings


def _jpeg_warnings(field, pan: Panel) -> list[str]:
    """A warning for a JPEG colour composite of a break-apart or dual-fusion panel: JPEG keeps colour at half
    resolution, so the two colours of a split signal blur into each other and rearrangements read as intact
    (simulated break-apart composites: clone 23.9 % vs 29.9 % true; docs/benchmarks.md "Colour composites")."""
    files = getattr(field, "files", ()) or ()
    if not (getattr(field, "colour_composite", False) and pan.kind in ("break-apart", "dual-fusion") and files
            and str(files[0]).lower().endswith((".jpg", ".jpeg"))):
        return []
    return [f"JPEG colour composite of a {pan.kind} panel: JPEG blurs colour at half resolution, so split and "
            "fused signals are told apart less well (rearrangements under-called); use TIFF or PNG exports"]


#: A z step given for 3-D detection that differs from the file's own (OME PhysicalSizeZ, ImageJ spacing) by more
#: than this fraction is warned about: signals separate in z by that step (docs/detection.md, z-stacks).
Z_STEP_WARN_RATIO = 0.1


def _z_step_warnings(field, z_step_um: float) -> list[str]:
    """A warning when 3-D detection was given a z step the file contradicts (a step typed for another stack, or
    in the wrong unit); none when the file stores no z step or detection is 2-D."""
    stored = getattr(field, "z_step_um", None)
    if not (z_step_um > 0 and stored and abs(z_step_um - stored) > Z_STEP_WARN_RATIO * stored):
        return []
    return [f"z step {z_step_um:g} µm given for 3-D detection, but the file says its planes are {stored:.3g} µm "
            f"apart: check --z-step (signals are told apart in z by it)"]


def _pixel_size(field, seg) -> tuple[float, str]:
    """The field's pixel size, or one inferred from the typical nucleus size when the file has none."""
    if field.pixel_size_um is not None:
        return float(field.pixel_size_um), field.pixel_size_source
    from .segment import DEFAULT_NUCLEUS_DIAMETER_UM

    d = seg.diameter_px if seg is not None else float("nan")
    if not (np.isfinite(d) and d > 1):
        raise InputError(field.path, "no pixel size in the metadata and none can be inferred: give --pixel-size UM")
    return DEFAULT_NUCLEUS_DIAMETER_UM / d, f"inferred from nucleus diameter ({DEFAULT_NUCLEUS_DIAMETER_UM} µm)"


def _probe2d(img: np.ndarray) -> np.ndarray:
    # z-stacks kept by read_field(z_mode="keep") are detected on their maximum projection
    return img if img.ndim == 2 else img.max(axis=0)


# -------------------------------------------------------------------------------------------
# the pipeline
# -------------------------------------------------------------------------------------------
def _candidates(field, labels, panel: Panel, pixel_size_um: float, det: Mapping[str, float]) -> dict[str, tuple]:
    sigma = spot_sigma_px(panel.signal_diameter_um, pixel_size_um)
    snap_px = det["snap_diameters"] * panel.signal_diameter_um / pixel_size_um
    out = {}
    for name in panel.signal_names:
        if name not in field.probes:
            raise InputError(field.path, f"no channel for signal {name} of panel {panel.id}")
        img = field.probes[name]
        if img.ndim == 3 and det["z_step_um"] > 0 and img.shape[0] > 1:
            sigma_z = det["z_sigma_ratio"] * sigma * pixel_size_um / det["z_step_um"]
            out[name] = _candidates_3d(img, sigma, sigma_z, labels, min_snr=CANDIDATE_SNR, snap_px=snap_px)
        else:
            out[name] = _candidates_2d(_probe2d(img), sigma, labels, min_snr=CANDIDATE_SNR, snap_px=snap_px)
    return out


def _signal_size_ratio(field, cands: dict[str, tuple], sigma_px: float) -> tuple[float | None, dict[str, float]]:
    """Measured / nominal signal sigma: the median over the 2-D probe channels with enough bright signals
    (:data:`SIZE_MIN_SNR`, :data:`SIZE_MAX_SIGNALS`, :data:`SIZE_MIN_SIGNALS`) of
    :func:`fishcount.spots.estimate_signal_sigma_px` at their candidates; None when no channel has
    enough. Also the per-channel ratios."""
    per: dict[str, float] = {}
    for name, (cand, _, _) in cands.items():
        if "z" in cand:  # detected in 3-D: not measured
            continue
        sel = np.flatnonzero((cand["label"] > 0) & (cand["snr"] >= SIZE_MIN_SNR))
        if sel.size < SIZE_MIN_SIGNALS:
            continue
        sel = sel[np.argsort(-cand["snr"][sel], kind="stable")[:SIZE_MAX_SIGNALS]]
        est, each = estimate_signal_sigma_px(_probe2d(field.probes[name]), cand["y"][sel], cand["x"][sel], sigma_px)
        if each.size >= SIZE_MIN_SIGNALS:
            per[name] = est / sigma_px
    return (float(np.median(list(per.values()))) if per else None), per


def _candidates_unmixed(fld, labels, panel: Panel, pixel_size_um: float, det: Mapping[str, float],
                        calibrated: "Mapping[tuple[str, str], float] | None" = None):
    """:func:`_detect_candidates`, and again on the unmixed probe channels when :func:`_without_crosstalk`
    unmixed them. With ``calibrated`` crosstalk (``{(src, dst): k}``, :func:`_check_crosstalk`) the channels
    are unmixed by it first and nothing is measured. Returns (field used, (panel used, candidates, size
    record), crosstalk record, unmixed, source of the record)."""
    if calibrated:
        fld = dataclasses.replace(fld, probes=unmix_crosstalk(fld.probes, dict(calibrated)))
        return (fld, _detect_candidates(fld, labels, panel, pixel_size_um, det),
                {f"{a}->{b}": float(v) for (a, b), v in calibrated.items()}, True, "calibrated (channel_crosstalk)")
    found = _detect_candidates(fld, labels, panel, pixel_size_um, det)
    fld, crosstalk, unmixed, source = _without_crosstalk(fld, panel, found[1], det)
    if unmixed:
        found = _detect_candidates(fld, labels, panel, pixel_size_um, det)
    return fld, found, crosstalk, unmixed, source


def _detect_candidates(field, labels, panel: Panel, pixel_size_um: float,
                       det: Mapping[str, float]) -> tuple[Panel, dict[str, tuple], dict]:
    """Candidates of every probe channel at the panel's signal size, checked against the signals' own size.

    When the measured size (:func:`_signal_size_ratio`) is below the panel's by more than
    ``signal_size_tolerance``, the candidates are found again at the measured size and the returned panel
    has its signal diameter and its split and fusion distances scaled by the same ratio (the lab rules are
    in signal diameters: clinical.md §3.2). Returns (panel used, candidates, record for ``params``).
    """
    sigma = spot_sigma_px(panel.signal_diameter_um, pixel_size_um)
    cands = _candidates(field, labels, panel, pixel_size_um, det)
    tol = det["signal_size_tolerance"]
    rec = {"panel_diameter_um": panel.signal_diameter_um, "measured_ratio": None, "per_channel_ratio": {},
           "used_diameter_um": panel.signal_diameter_um, "source": "panel"}
    if tol < 0:
        rec["source"] = "panel (size check off)"
        return panel, cands, rec
    ratio, per = _signal_size_ratio(field, cands, sigma)
    rec.update(measured_ratio=ratio, per_channel_ratio=per)
    # only SMALLER signals than the panel's are acted on: a larger band-pass passes more of the nuclear
    # background (probe autofluorescence follows the chromatin), the noise level rises and dim signals are
    # lost; detecting large signals at the panel's smaller size costs little (docs/detection.md)
    if ratio is None or ratio >= 1.0 / (1.0 + tol):
        return panel, cands, rec
    used = dataclasses.replace(
        panel, signal_diameter_um=panel.signal_diameter_um * ratio, split_distance_um=panel.split_distance_um * ratio,
        fusion_distance_um=None if panel.fusion_distance_um is None else panel.fusion_distance_um * ratio)
    rec.update(used_diameter_um=used.signal_diameter_um, source="measured")
    return used, _candidates(field, labels, used, pixel_size_um, det), rec


def _z_scale(field, det: Mapping[str, float], pixel_size_um: float) -> float | None:
    """z step in pixel units when the field is detected in 3-D, else None."""
    three_d = det["z_step_um"] > 0 and any(v.ndim == 3 and v.shape[0] > 1 for v in field.probes.values())
    return det["z_step_um"] / pixel_size_um if three_d else None


def analyze_field(
    source,
    panel: "str | Path | Panel | None" = None,
    *,
    channels: "list[str] | None" = None,
    pixel_size_um: float | None = None,
    thresholds: dict[str, float] | None = None,
    segmentation=None,
    z_plane: int | None = None,
    channel_shifts_um: "Mapping[str, tuple[float, float]] | None" = None,
    channel_crosstalk: "Mapping[Any, float] | None" = None,
    axes: str | None = None,
    **params: Any,
) -> FieldResult:
    """Analyse one field: segment nuclei, detect and count probe signals, call every nucleus.

    #. Read the field (:func:`fishcount.read_field`; or take a :class:`Field`, a dict of arrays
       ``{"DAPI": ..., "<SIGNAL>": ...}`` or a ``(C, Y, X)`` array in ``channels`` order, default DAPI
       then the panel signals).
    #. Camera hot pixels are removed from the probe channels (:func:`fishcount.spots.remove_hot_pixels`).
    #. Segment nuclei (:func:`fishcount.segment_nuclei`) unless ``segmentation`` is given.
    #. Per probe channel: candidates (:func:`fishcount.spots.find_candidates`), threshold (manual from
       ``thresholds`` or automatic from the candidates inside nuclei, :func:`fishcount.spots.auto_threshold`).
       Deletion and enumeration panels: crosstalk between the probe channels is measured at the candidates
       and, from ``crosstalk_min``, unmixed before the candidates are found again
       (:func:`fishcount.spots.unmix_crosstalk`).
    #. Lab rules from the panel: split and diffuse signals (:func:`fishcount.spots.merge_split_signals`),
       fusions (:func:`fishcount.spots.pair_fusions`).
    #. Per nucleus counts, pattern, call and scorable (:func:`fishcount.calls.call_nuclei`).

    Parameters
    ----------
    source : path, Position, Field, dict of arrays or ndarray (C, Y, X)
        The field: a file (or a list of per-channel files), one image of a multi-position file
        (:class:`fishcount.io.Position`), or data already read.
    panel : str, path or Panel, optional
        Probe panel; default ``del5q`` (or the panel of a given Field).
    channels : list of str, optional
        Channel names in file order (overrides metadata).
    pixel_size_um : float, optional
        Pixel size in µm (overrides metadata). Without any, it is inferred from the typical nucleus
        diameter (recorded in ``params["pixel_size_source"]``).
    thresholds : dict of str to float, optional
        Manual detection threshold per signal, SNR units; missing signals use the automatic threshold.
        Use :func:`estimate_thresholds` to pool one threshold over the fields of a sample.
    segmentation : Segmentation, optional
        A precomputed segmentation of this field (e.g. corrected in napari).
    z_plane : int, optional
        Analyse this z-plane (0-based) of a z-stack file instead of its maximum projection.
    channel_shifts_um : dict of str to (float, float), optional
        Calibrated lateral shift of probe channels against DAPI, signal name or fluor -> ``(dy, dx)`` µm
        (where the channel's content appears; ``{"ABL1": (0, 0.3)}`` or ``{"SpectrumOrange": (0, 0.3)}``:
        0.3 µm too far right). Those channels are moved back before detection
        (:func:`fishcount.spots.correct_channel_shift`); measure the shift with
        :func:`fishcount.spots.estimate_channel_shift`. Recorded per signal in ``params["channel_shifts_um"]``.
    channel_crosstalk : dict, optional
        Calibrated crosstalk between probe channels (filter bleed-through): ``{"SRC->DST": k}`` or
        ``{(src, dst): k}``, each side a signal name or a fluor, ``k`` the fraction of ``src``'s light seen
        through ``dst``'s filter (0-0.5). The probe channels are unmixed by it before detection
        (:func:`fishcount.spots.unmix_crosstalk`) and nothing is measured. Needed for break-apart panels,
        whose co-localised probes hide the crosstalk, and for 3-D detection (deletion, enumeration and
        dual-fusion panels measure it on the field); measure it with ``fishcount crosstalk`` on a
        deletion-panel slide in the same fluors. Recorded in ``params["crosstalk"]`` with
        ``params["crosstalk_source"]``.
    axes : str, optional
        The stored axes of the file read (e.g. ``"ZCYX"``), overriding its metadata and the plain-TIFF
        shape rule (:func:`fishcount.io.read_field`); for files only.
    **params
        Detection parameters (:data:`DETECTION_DEFAULTS`); all others go to
        :func:`fishcount.segment_nuclei` (e.g. ``backend="cellpose"``, ``nucleus_diameter_um=8``).
        ``z_step_um > 0`` (the z step in µm) detects in 3-D: a file is then read with its z-stack kept
        (``read_field(z_mode="keep")``), nuclei are segmented on the DAPI projection and signals are
        maxima of a 3-D difference of Gaussians (:func:`fishcount.spots.find_candidates_3d`).

    Returns
    -------
    FieldResult

    Raises
    ------
    InputError
        Unreadable input, missing channel, bad threshold or parameter; ``z_step_um > 0`` on a field
        with one z-plane or together with ``z_plane``.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    if panel is None and hasattr(source, "panel_id"):
        panel = source.panel_id
    pan = load_panel(panel)
    manual = _check_thresholds(thresholds, pan)
    shifts = _check_shifts(channel_shifts_um, pan)
    calibrated = _check_crosstalk(channel_crosstalk, pan)
    det, seg_params = _split_params(params)
    fld = _field_for_detection(source, pan, channels, pixel_size_um, det, z_plane, axes)
    as_read = fld
    timings["read_s"] = time.perf_counter() - t0
    fld, hot = _without_hot_pixels(fld, det)

    t = time.perf_counter()
    if segmentation is None:
        seg = _segment(fld, fld.pixel_size_um, seg_params)
    else:
        seg = segmentation
        shape2d = fld.dapi.shape[-2:]
        if tuple(seg.labels.shape) != tuple(shape2d):
            raise InputError(fld.path, f"segmentation labels have shape {seg.labels.shape}, the field is {shape2d}")
    labels = np.asarray(seg.labels)
    timings["segment_s"] = time.perf_counter() - t

    t = time.perf_counter()
    px, px_source = _pixel_size(fld, seg)
    fld = _without_channel_shifts(fld, shifts, px)
    fld, (det_pan, cands, size_rec), crosstalk, unmixed, xt_source = _candidates_unmixed(
        fld, labels, pan, px, det, calibrated)
    zs = _z_scale(fld, det, px)
    qc = seg.qc
    n_nuc = int(len(qc))
    used: dict[str, float] = {}
    th_source: dict[str, str] = {}
    noise: dict[str, float] = {}
    responses = {}
    band = det["dim_band"]
    parts = []
    for name in pan.signal_names:
        cand, nz, resp = cands[name]
        noise[name] = float(nz)
        responses[name] = resp
        if name in manual:
            th, th_source[name] = manual[name], "manual"  # given by the caller (by hand, or pooled over a sample)
        else:
            inside = cand["snr"][cand["label"] > 0]
            th = auto_threshold(inside, n_nuc, min_snr=det["min_auto_snr"])
            th_source[name] = "automatic (this field)"
        used[name] = float(th)
        # keep candidates down to the bottom of the ambiguity band: they take part in the merge rules
        # (a sub-threshold shoulder of a bright signal is part of it) and flag dim nuclei
        keep = cand["snr"] >= th / band
        parts.append((name, {k: v[keep] for k, v in cand.items()}))
    spots, dim_labels, boundary_labels = _signals(parts, used, labels, det_pan, px, det, responses, zs)
    timings["detect_s"] = time.perf_counter() - t

    t = time.perf_counter()
    nuclei = call_nuclei(qc, spots, pan, dim_labels=dim_labels, boundary_labels=boundary_labels)
    timings["call_s"] = time.perf_counter() - t
    saturated, saturation_warnings = _probe_saturation(as_read, spots, pan)
    timings["total_s"] = time.perf_counter() - t0
    rec = {
        "pixel_size_um": px,
        "pixel_size_source": px_source,
        "signal_sigma_px": spot_sigma_px(det_pan.signal_diameter_um, px),
        "signal_size": size_rec,
        "noise": noise,
        "hot_pixels": hot,
        "channel_shifts_um": {k: list(v) for k, v in shifts.items()},
        "crosstalk": crosstalk,
        "crosstalk_unmixed": unmixed,
        "crosstalk_source": xt_source,
        "threshold_source": th_source,
        "threshold_units": "SNR (noise units of the enhanced image)",
        "detection": det,
        "segmentation": {k: v for k, v in dict(getattr(seg, "params", {})).items() if _jsonable(v)},
        "segmentation_diameter_px": float(getattr(seg, "diameter_px", float("nan"))),
        "probe_saturation": saturated,
        "warnings": (_yield_warnings(seg, nuclei) + _option_warnings(seg) + _scale_warnings(seg, px, px_source, size_rec)
                     + saturation_warnings + _jpeg_warnings(as_read, pan) + _z_step_warnings(as_read, det["z_step_um"])),
        # how the image was read, so a reviewer sees the plane that was analysed (napari, field.json)
        "read": {"z_projection": "3-D" if det["z_step_um"] > 0 else ("plane" if z_plane is not None else "max"),
                 "z_plane": None if z_plane is None else int(z_plane), "axes": axes,
                 "z_step_file_um": getattr(as_read, "z_step_um", None)},
        "timings": timings,
    }
    return FieldResult(field=fld, labels=labels, nuclei=nuclei, spots=spots, thresholds=used, params=rec, panel=pan)


def _signals(parts, used, labels, pan: Panel, px: float, det, responses, zs):
    """Candidates of all channels -> the spots table, dim and boundary nucleus labels.

    Works on column arrays (one DataFrame at the end): the candidates (at or above the bottom of the
    ambiguity band) go through the split/diffuse rules (:func:`fishcount.spots.merge_split_signals`),
    a merge group counts when its brightest member is detected, and the group is dim when that member
    lies inside the ambiguity band around the threshold; then fusions
    (:func:`fishcount.spots.pair_fusions`).
    """
    band = det["dim_band"]
    n = int(sum(len(c["snr"]) for _, c in parts))
    empty = np.zeros(0, np.int64)
    if n == 0:
        return finish_signal_table([]), empty, empty
    cols = {k: np.concatenate([c[k] for _, c in parts]) for k in parts[0][1]}
    sig = np.concatenate([np.full(len(c["snr"]), name, dtype=object) for name, c in parts])
    th_of = np.concatenate([np.full(len(c["snr"]), used[name], np.float64) for name, c in parts])
    snr, lab = cols["snr"], cols["label"]
    detected = snr >= th_of
    pts = np.column_stack([cols["y"], cols["x"]]).astype(np.float64, copy=False)
    pts3 = np.column_stack([pts, cols["z"] * zs]) if zs is not None and "z" in cols else pts
    rep, _, merge = _merge_groups(
        sig, lab, pts, pts3, snr, cols["peak"], responses, split_px=pan.split_distance_um / px,
        diffuse_px=(2 * pan.split_distance_um) / px, diffuse_ridge=det["diffuse_ridge"],
    )
    is_rep = np.arange(n) == rep
    dim_rep = is_rep & (lab > 0) & (snr >= th_of / band) & (snr < th_of * band)
    dim_labels = np.unique(lab[dim_rep])
    # a counted signal at the boundary with a touching nucleus cannot be assigned with confidence
    boundary_labels = empty
    if det["boundary_diameters"] > 0:
        cand_b = is_rep & (lab > 0) & (snr >= th_of)
        # both sides: the nucleus holding the signal and each neighbour it may belong to instead
        boundary_labels = boundary_nuclei(cols["y"][cand_b], cols["x"][cand_b], lab[cand_b], labels,
                                          det["boundary_diameters"] * pan.signal_diameter_um / px)
    # detected members of groups whose representative is detected; n_merged counts those only
    keep = np.nonzero(detected & detected[rep])[0]
    if keep.size == 0:
        return finish_signal_table([]), dim_labels, boundary_labels
    group = rep[keep]
    n_merged = np.bincount(group, minlength=n)[group]
    merge = merge[keep]
    merge[n_merged == 1] = ""
    counts_as = np.where(is_rep[keep] & (lab[keep] > 0), sig[keep], "").astype(object)
    partner = np.full(keep.size, -1, np.int64)
    if pan.fusion_pair:
        p, counts_as, merge = _pair_fusions(counts_as, merge, lab[keep], pts3[keep], keep, pan.fusion_pair,
                                            pan.fusion_distance_um / px)
        partner = p if p is not None else partner
    table = {"spot_id": keep, "label": lab[keep], "signal": sig[keep]}
    table.update({k: cols[k][keep] for k in ("y", "x", "intensity", "background", "peak", "snr")})
    table.update({"group_id": group, "n_merged": n_merged, "merge": merge, "fusion_partner": partner,
                  "counts_as": counts_as})
    if "z" in cols:
        table["z"] = cols["z"][keep]
    return signal_table(table), dim_labels, boundary_labels


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def estimate_thresholds(
    fields: Iterable,
    panel: "str | Path | Panel | None" = None,
    *,
    segmentations: "Iterable | None" = None,
    channels: "list[str] | None" = None,
    pixel_size_um: float | None = None,
    z_plane: int | None = None,
    channel_shifts_um: "Mapping[str, tuple[float, float]] | None" = None,
    channel_crosstalk: "Mapping[Any, float] | None" = None,
    axes: str | None = None,
    **params: Any,
) -> dict[str, float]:
    """One automatic threshold per signal pooled over the fields of one slide or sample.

    The candidates inside nuclei of all fields are pooled (their SNRs are in noise units of each field,
    so they are comparable across fields) and :func:`fishcount.spots.auto_threshold` runs once on the
    pool. Pass the result as ``thresholds=`` to :func:`analyze_field` for every field of the sample:
    sparse fields then borrow strength from the others (Big-FISH's one-threshold-per-list idea,
    anchors.md b1).

    Parameters
    ----------
    fields : iterable of path, Field, dict or ndarray
        The fields of one sample (anything :func:`analyze_field` accepts).
    panel : str, path or Panel, optional
        Probe panel.
    segmentations : iterable of Segmentation, optional
        Precomputed segmentations, one per field, in the same order.
    channels, pixel_size_um, z_plane, channel_shifts_um, channel_crosstalk, axes, **params
        As for :func:`analyze_field`.

    Returns
    -------
    dict of str to float
        Signal name -> threshold (SNR units).
    """
    pan = load_panel(panel)
    shifts = _check_shifts(channel_shifts_um, pan)
    calibrated = _check_crosstalk(channel_crosstalk, pan)
    det, seg_params = _split_params(params)
    fields = list(fields)
    if not fields:
        raise InputError("<fields>", "estimate_thresholds needs at least one field")
    segs = list(segmentations) if segmentations is not None else [None] * len(fields)
    if len(segs) != len(fields):
        raise InputError("<segmentations>", f"{len(segs)} segmentations for {len(fields)} fields")
    pool: dict[str, list[np.ndarray]] = {s: [] for s in pan.signal_names}
    n_nuc = 0
    for src, seg in zip(fields, segs):
        fld, _ = _without_hot_pixels(_field_for_detection(src, pan, channels, pixel_size_um, det, z_plane, axes), det)
        seg = seg if seg is not None else _segment(fld, fld.pixel_size_um, seg_params)
        px, _ = _pixel_size(fld, seg)
        fld = _without_channel_shifts(fld, shifts, px)
        n_nuc += int(len(seg.qc))
        cands = _candidates_unmixed(fld, np.asarray(seg.labels), pan, px, det, calibrated)[1][1]
        for name, (cand, _, _) in cands.items():
            pool[name].append(cand["snr"][cand["label"] > 0])
    return {
        name: auto_threshold(np.concatenate(v) if v else np.zeros(0), n_nuc, min_snr=det["min_auto_snr"])
        for name, v in pool.items()
    }


# -------------------------------------------------------------------------------------------
# outputs
# -------------------------------------------------------------------------------------------
def _exclusion_counts(nuclei: pd.DataFrame) -> dict[str, int]:
    """Nuclei per exclusion reason (``exclusion_reason`` holds ``;``-joined reasons; a nucleus with two counts
    under both), in order of first appearance."""
    reasons: dict[str, int] = {}
    for r in nuclei["exclusion_reason"] if len(nuclei) else []:
        for part in filter(None, str(r).split(";")):
            reasons[part] = reasons.get(part, 0) + 1
    return reasons


def _field_json(result: FieldResult) -> dict:
    f = result.field
    nuc = result.nuclei
    reasons = _exclusion_counts(nuc)
    scor = nuc[nuc["scorable"]] if len(nuc) else nuc
    return {
        "output_version": OUTPUT_VERSION,
        "fishcount_version": __version__,
        "source": str(f.path),
        "files": list(getattr(f, "files", ()) or ()),  # every file read (each channel's, for a group)
        "working_dir": os.getcwd(),  # what relative paths in source / files are relative to
        "series": f.series,  # the image read from a multi-position file, else None
        "stem": f.stem,
        "shape_yx": [int(v) for v in result.labels.shape],
        "channel_names": list(f.channel_names),
        "channel_map": {k: int(v) for k, v in f.channel_map.items()},
        "panel": {"id": result.panel.id, "path": result.panel.path, "sha256": result.panel.sha256},
        "thresholds": {k: float(v) for k, v in result.thresholds.items()},
        "n_nuclei": int(len(nuc)),
        "n_scorable": int(nuc["scorable"].sum()) if len(nuc) else 0,
        "n_signals": int(len(result.spots)),
        "calls": {str(k): int(v) for k, v in scor["call"].value_counts().items()} if len(scor) else {},
        "exclusion_reasons": reasons,
        "params": result.params,
    }


def _write_labels(labels: np.ndarray, path: Path) -> None:
    import tifffile

    lab = np.asarray(labels)
    dtype = np.uint16 if lab.max(initial=0) < 65536 else np.uint32
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, lab.astype(dtype), compression="zlib", metadata={"axes": "YX"})


def write_segmentation(seg, target: "str | os.PathLike", *, overwrite: bool = False) -> Path:
    """Write a :class:`fishcount.segment.Segmentation` as ``target/labels.tif`` (uint16, uint32 above 65535
    nuclei) and ``target/nuclei_qc.csv``, as one set: both are written aside first and renamed in together, so a
    failure (a full disk) leaves the previous pair, never a new label image beside an old table
    (:func:`fishcount._atomic.commit_files`). Other files in ``target`` are left alone.

    Raises
    ------
    FishcountError
        A file exists and ``overwrite`` is False, or they cannot be written (naming the file).
    """
    import tifffile

    from ._atomic import staged_files

    target = Path(target)
    finals = [target / "labels.tif", target / "nuclei_qc.csv"]
    if not overwrite and any(f.exists() for f in finals):
        raise FishcountError(target, "outputs already exist; choose another --out folder or pass --overwrite")
    lab = np.asarray(seg.labels)
    dtype = np.uint16 if lab.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
    try:
        with staged_files(finals, overwrite=overwrite) as (tif, csv):
            tifffile.imwrite(tif, lab.astype(dtype), compression="zlib", metadata={"axes": "YX"})
            seg.qc.to_csv(csv, index=False)
    except FileExistsError as exc:
        raise FishcountError(exc.filename or target, "outputs already exist; choose another --out folder or pass "
                                                     "--overwrite") from None
    except OSError as exc:
        raise FishcountError(exc.filename or target, f"cannot write outputs ({exc.strerror or exc})") from None
    return target


#: A temporary folder of a field write older than this was left by a killed analysis (a write takes seconds).
STALE_TEMPORARY_S = 3600.0


def _remove_stale_temporaries(out_dir: Path, stem: str) -> None:
    """Remove ``.<stem>.*.tmp`` folders a killed analysis left in ``out_dir`` (only old ones: another analysis
    may be writing one now)."""
    now = time.time()
    for d in out_dir.glob(f".{glob.escape(stem)}.*.tmp") if out_dir.is_dir() else ():
        try:
            if d.is_dir() and now - d.stat().st_mtime > STALE_TEMPORARY_S:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def write_field_result(
    result: FieldResult, out_dir: "str | os.PathLike", *, overwrite: bool = False, overlay: bool = True,
    title: str | None = None,
) -> Path:
    """Write one field's outputs to ``out_dir/<stem>/`` (output contract v1, docs/outputs.md).

    Files: ``nuclei.csv``, ``spots.csv``, ``labels.tif``, ``overlay.png`` (unless ``overlay=False``)
    and ``field.json``. They are written into a temporary folder beside the target which is then
    renamed into place, so a reader sees either no folder or a complete one.

    Parameters
    ----------
    result : FieldResult
        Output of :func:`analyze_field`.
    out_dir : path
        Parent folder; created if missing.
    overwrite : bool
        Replace an existing ``out_dir/<stem>/``. Without it an existing folder is an error.
    overlay : bool
        Render ``overlay.png``.
    title : str, optional
        The overlay's name of the field (default its stem; ``fishcount run`` gives ``patient/timepoint/field``).

    Returns
    -------
    Path
        The field's output folder.

    Raises
    ------
    FishcountError
        The target exists and ``overwrite`` is False, or it cannot be written.
    """
    out_dir = Path(out_dir)
    target = out_dir / result.stem
    if target.exists() and not overwrite:
        raise FishcountError(target, "outputs already exist; choose another --out folder or pass --overwrite")
    if out_dir.exists() and not out_dir.is_dir():
        raise FishcountError(out_dir, "is a file, not a folder")
    _remove_stale_temporaries(out_dir, result.stem)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{result.stem}.", suffix=".tmp", dir=out_dir))
    except OSError as exc:
        raise FishcountError(out_dir, f"cannot create output folder ({exc.strerror or exc})") from None
    try:
        write_csv_atomic(result.nuclei, tmp / "nuclei.csv")
        write_csv_atomic(result.spots, tmp / "spots.csv", float_format="%.7g")
        _write_labels(result.labels, tmp / "labels.tif")
        if overlay:
            from .overlay import render_overlay, save_png

            save_png(render_overlay(result, title=title), tmp / "overlay.png")
        write_text_atomic(tmp / "field.json", json.dumps(_field_json(result), indent=2, default=str) + "\n")
        # temporary files are private (0600/0700); outputs get the usual permissions under the umask
        umask = os.umask(0)
        os.umask(umask)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
        os.chmod(tmp, 0o777 & ~umask)
        # never a silent replace (another analysis may have written it since the check above), and the old
        # result (with a reviewer's journals, carried over) is never lost if the rename fails
        swap_in_folder(tmp, target, overwrite=overwrite)
    except FileExistsError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FishcountError(target, "outputs already exist (written meanwhile by another analysis?); choose "
                                     "another --out folder or pass --overwrite") from None
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FishcountError(target, f"cannot write outputs ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
