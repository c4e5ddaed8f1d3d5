"""Nucleus segmentation: DAPI image -> nucleus labels + a per-nucleus QC table.

The classical backend needs no model and no download. It works at a *working scale* where the typical
nucleus is ``working_diameter_px`` pixels wide, so its speed and its parameters do not depend on the
pixel size of the camera. Steps (see ``docs/segmentation.md``):

#. Find the scale: nucleus diameter in pixels from ``nucleus_diameter_um / pixel_size_um``, or, without a
   pixel size, estimated from the image (:func:`estimate_nucleus_diameter`).
#. Resample the image so that a nucleus is ``working_diameter_px`` wide.
#. Flatten illumination (subtract a morphological-opening background wider than a nucleus) and smooth at
   the nucleus scale.
#. Threshold: above a low global floor (noise and a fraction of Otsu's threshold) and above a fraction
   of the brightest value within one nucleus diameter (local contrast: dim nuclei next to bright ones
   survive), holes filled (except a background gap enclosed by a ring of touching nuclei,
   :func:`_fill_holes_but_gaps`), specks removed.
#. Split touching nuclei: marker-controlled watershed on the distance transform; markers are h-maxima whose
   height ``h`` is a fraction of the nucleus diameter, one marker per dome (:func:`h_maxima_markers`).
#. Merge over-split fragments of one nucleus (lobulated nuclei): two touching fragments are merged when
   the neck between them is wide, the boundary between them is not darker than the nuclei, the smaller
   one is lobe-sized and together they are no bigger than one large nucleus. Lobes that the mask cut
   apart (a short gap of dim chromatin) are joined by the same size rules (:func:`_join_lobes`).
#. Re-split objects too big or too notched for one nucleus: a marker search inside each one alone (a
   smaller ``h``); kept only when the parts are nucleus-sized (not lobes) and more convex than the whole.
   Then drop objects whose contrast over their surroundings is far below the field's typical object's.
   Split objects at the DAPI level that separates their nuclei (a brighter nucleus beside a dimmer one, or
   a faint dip), when the boundary ends in two notches of the outline (:func:`_level_split`).
   Cut objects between two concavities of their outline (nuclei pressed side by side, no neck, no seam;
   a small convex nucleus pressed on a large one is cut off too). A gap left open in step 4 that only one
   object borders is filled into it (a ring-shaped nucleus, :func:`_fill_own_gaps`).
#. Resample labels back to the field's shape (nearest neighbour).
#. Measure each nucleus (area, shape, DAPI, focus, border, saturation) and decide ``scorable`` with
   an ``exclusion_reason`` from the thresholds in :data:`QC_DEFAULTS`.

All defaults are data: ``fishcount/segment_defaults.toml`` (validated by :func:`load_segment_defaults`).

Other backends (Cellpose, StarDist, or any function registered in the ``fishcount.segmenters`` entry
point group) only replace steps 2-8; the scale and the QC are shared.
"""
from __future__ import annotations

import functools
import importlib
import math
import os
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from ._stats import median as _median
from ._stats import neighbour_extremes as _neighbour_extremes
from ._stats import nonzero_2d as _nonzero_2d
from ._stats import otsu_foreground as _otsu
from ._stats import percentiles as _percentiles
from ._stats import threshold_otsu as _threshold_otsu
from .errors import FishcountError, InputError

__all__ = [
    "Segmentation",
    "segment_nuclei",
    "segment_classical",
    "estimate_nucleus_diameter",
    "available_backends",
    "check_backend",
    "register_backend",
    "match_labels",
    "load_segment_defaults",
    "QC_DEFAULTS",
    "CLASSICAL_DEFAULTS",
    "QC_COLUMNS",
]


@functools.cache
def _lazy(module: str, name: str) -> Any:
    """``from module import name``, imported on first use (``import fishcount`` stays free of skimage) and
    looked up once: an import statement inside a function re-resolves skimage's lazily loaded attributes
    on every call (0.07-0.24 ms each), which adds up over the per-object steps."""
    return getattr(importlib.import_module(module), name)


_DEFAULTS_FILE = Path(__file__).with_name("segment_defaults.toml")

#: Expected keys of ``segment_defaults.toml``: section -> key -> (type, lower bound, upper bound or None).
_SCHEMA: dict[str, dict[str, tuple[type, float, float | None]]] = {
    "scale": {"nucleus_diameter_um": (float, 0.5, 100.0), "scale_peak_min_fraction": (float, 0.0, 1.0),
              "self_consistent_low": (float, 0.0, 1.0), "self_consistent_high": (float, 1.0, None),
              "hot_pixel_step": (float, 0.0, None),
              "min_bright_fraction": (float, 0.0, 1.0), "min_bright_nucleus_areas": (float, 0.0, None),
              "size_check_low": (float, 0.0, 1.0),
              "size_check_high": (float, 1.0, None), "size_check_ratio": (float, 0.1, 2.0),
              "size_check_min_nuclei": (float, 1.0, None), "estimate_check_low": (float, 0.0, 1.0),
              "estimate_check_high": (float, 1.0, None), "estimate_check_min_solidity": (float, 0.0, 1.0),
              "size_check_max_passes": (int, 0.0, 10.0),
              "no_data_min_fraction": (float, 0.0, 1.0), "no_data_opening_px": (float, 1.0, None),
              "no_data_min_step_sigmas": (float, 0.0, None), "no_data_max_inside": (float, 0.0, 1.0),
              "scale_bright_clip": (float, 0.0, None),
              "scale_bright_clip_min_share": (float, 0.0, 1.0),
              "scale_bright_clip_max_share": (float, 0.0, 1.0),
              "scale_bright_clip_max_ring": (float, 0.0, 1.0)},
    "classical": {
        "working_diameter_px": (float, 6.0, 200.0), "background_width_diameters": (float, 1.0, None),
        "smooth_sigma_diameters": (float, 0.0, 1.0), "texture_max": (float, 0.0, None),
        "local_rel": (float, 0.0, 1.0),
        "own_peak_rel": (float, 0.0, 1.0),
        "low_frac": (float, 0.0, 1.0), "noise_sigmas": (float, 0.0, None), "h_diameters": (float, 0.0, None),
        "opening_keep_radius_px": (int, 0.0, None),
        "markers": (str, 0, None), "markers_half_resolution_above_px": (float, 0.0, None),
        "log_sigma_diameters": (float, 0.01, 2.0), "log_h": (float, 0.0, None),
        "intensity_weight": (float, 0.0, None), "intensity_sigma_diameters": (float, 0.0, 2.0),
        "merge_neck_ratio": (float, 0.0, None), "merge_boundary_intensity_ratio": (float, 0.0, None),
        "merge_max_intensity_difference": (float, 0.0, None), "merge_lobe_max_area": (float, 0.0, None),
        "merge_max_total_area": (float, 0.0, None), "refine_min_area": (float, 0.0, None),
        "bridge_max_gap_diameters": (float, 0.0, 1.0), "bridge_intensity_ratio": (float, 0.0, None),
        "merge_neck_ratio_larger": (float, 0.0, None),
        "refine_max_solidity": (float, 0.0, 1.0), "refine_h_diameters": (float, 0.0, None),
        "refine_intensity_weight": (float, 0.0, None), "refine_min_part_area": (float, 0.0, None),
        "refine_min_object_area": (float, 0.0, None),
        "refine_small_nucleus_min_area": (float, 0.0, None), "refine_small_nucleus_solidity": (float, 0.0, 1.0),
        "refine_min_solidity_gain": (float, -1.0, 1.0), "refine_seam_h": (float, 0.0, 1.0),
        "refine_seam_max_ratio": (float, 0.0, None), "dim_min_contrast": (float, 0.0, 1.0),
        "dim_reference_quantile": (float, 0.0, 1.0), "dim_ring_diameters": (float, 0.02, 2.0),
        "outline_rel": (float, 0.0, 1.0), "outline_core_rel": (float, 0.0, 1.0),
        "concave_min_depth": (float, 0.0, 1.0), "concave_min_area": (float, 0.0, None),
        "concave_max_solidity": (float, 0.0, 1.0), "concave_min_saliency": (float, 0.0, None),
        "concave_part_solidity": (float, 0.0, 1.0), "concave_smooth_max_texture": (float, 0.0, None),
        "concave_smooth_min_solidity_gain": (float, -1.0, 1.0),
        "concave_subpixel_depth": (float, 0.0, None),
        "bright_clip": (float, 0.0, None), "bright_clip_max_area": (float, 0.0, None),
        "level_split_levels": (int, 0.0, 100.0), "level_split_low": (float, 0.0, 1.0),
        "level_split_high": (float, 0.0, 1.0), "level_split_min_area": (float, 0.0, None),
        "level_split_smooth_diameters": (float, 0.0, 1.0), "level_split_core_area": (float, 0.0, None),
        "level_split_gap_diameters": (float, 0.0, 1.0), "level_split_part_solidity": (float, 0.0, 1.0),
        "level_split_min_solidity_gain": (float, -1.0, 1.0), "level_split_concavity_depth": (float, 0.0, 1.0),
        "level_split_concavity_reach": (float, 0.0, 1.0), "level_split_step_min_area": (float, 0.0, None),
        "level_split_step_ratio": (float, 0.0, 1.0), "level_split_step_band_diameters": (float, 0.0, 1.0),
        "level_split_step_max_texture": (float, 0.0, None), "level_split_notch_reach": (float, 0.0, 1.0),
        "min_area_fraction": (float, 0.0, 1.0)},
    "qc": {
        "min_area_fraction": (float, 0.0, None), "max_area_fraction": (float, 0.0, None),
        "min_solidity": (float, 0.0, 1.0), "low_solidity_min_area_vs_median": (float, 0.0, None),
        "clump_area_vs_median": (float, 0.0, None),
        "clump_solidity": (float, 0.0, 1.0), "max_area_vs_median": (float, 0.0, None),
        "pair_area_vs_median": (float, 0.0, None), "pair_solidity": (float, 0.0, 1.0),
        "clump_concavity_depth": (float, 0.0, None), "clump_concavity_part": (float, 0.0, 0.5),
        "clump_ellipse_residual": (float, 0.0, None),
        "min_focus": (float, 0.0, None), "min_focus_vs_median": (float, 0.0, None),
        "max_saturated_fraction": (float, 0.0, 1.0)},
}
_MARKERS = ("dt", "log")


def load_segment_defaults(path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Read and validate segmentation defaults (``[scale]``, ``[classical]``, ``[qc]`` tables).

    Parameters
    ----------
    path : str or path-like, optional
        A TOML file with the same tables and keys as the shipped ``fishcount/segment_defaults.toml``
        (the default).

    Returns
    -------
    dict
        ``{"scale": {...}, "classical": {...}, "qc": {...}}`` with float values (``markers`` a str).

    Raises
    ------
    FishcountError
        The file is missing, not TOML, lacks a table or key, has an unknown key, a value of the wrong type
        or out of range. The message names the file and the key.
    """
    src = Path(path) if path is not None else _DEFAULTS_FILE
    try:
        data = tomllib.loads(src.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FishcountError(src, "segmentation defaults file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FishcountError(src, f"cannot read segmentation defaults: {exc}") from None
    out: dict[str, dict[str, Any]] = {}
    extra = set(data) - set(_SCHEMA)
    if extra:
        raise FishcountError(src, f"unknown table(s) {sorted(extra)}; expected {sorted(_SCHEMA)}")
    for section, keys in _SCHEMA.items():
        table = data.get(section)
        if not isinstance(table, dict):
            raise FishcountError(src, f"missing table [{section}]")
        unknown = set(table) - set(keys)
        if unknown:
            raise FishcountError(src, f"[{section}] unknown key(s) {sorted(unknown)}")
        out[section] = {}
        for key, spec in keys.items():
            if key not in table:
                raise FishcountError(src, f"[{section}] missing key {key!r}")
            out[section][key] = check_parameter(section, key, table[key], spec, src)
    return out


def check_parameter(section: str, key: str, value: Any, spec: tuple[type, float, float | None],
                    source: Any, error: type[FishcountError] = FishcountError) -> Any:
    """One value of a ``[section]`` table against its ``(type, low, high)`` spec (:data:`_SCHEMA`; ``high``
    None = unbounded): the value as float (``markers``: one of :data:`_MARKERS`, as given). Raises
    ``error(source, ...)`` naming the table and the key for a value of the wrong type, NaN or out of range."""
    typ, lo, hi = spec
    if typ is str:
        if key == "markers" and value not in _MARKERS:
            raise error(source, f"[{section}] {key} must be one of {_MARKERS}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise error(source, f"[{section}] {key} must be a number, got {value!r}")
    if typ is int and value != int(value):  # a count: 2.5 levels would silently become 2
        raise error(source, f"[{section}] {key} must be a whole number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise error(source, f"[{section}] {key} must be {rng}, got {value!r}")
    return float(value)


_D = load_segment_defaults()

#: Typical bone-marrow nucleus diameter, µm, used to set the scale when the pixel size is known
#: (``segment_defaults.toml`` [scale]).
DEFAULT_NUCLEUS_DIAMETER_UM: float = _D["scale"]["nucleus_diameter_um"]
#: Scale estimate: the smallest scale-space peak with at least this fraction of the strongest one's energy.
SCALE_PEAK_MIN_FRACTION: float = _D["scale"]["scale_peak_min_fraction"]
#: Without a scale (plain Otsu), an image holds no nuclei when fewer than this fraction of its (flattened,
#: smoothed) pixels are more than 10 noise sigmas above its 10th percentile (pure Gaussian noise: ~1e-15).
#: Sigma comes from the darkest pixels (10th - 2.28th percentile), so it holds however much of the field
#: nuclei cover.
MIN_BRIGHT_FRACTION: float = _D["scale"]["min_bright_fraction"]
#: With a scale, the image holds no nuclei when those bright pixels would cover less than this many
#: typical nucleus areas (``segment_defaults.toml`` [scale]).
MIN_BRIGHT_NUCLEUS_AREAS: float = _D["scale"]["min_bright_nucleus_areas"]
#: Scale estimate: small regions brighter than bg + this x (typical nucleus - bg) are clipped first
#: (debris; :func:`_clip_bright`).
SCALE_BRIGHT_CLIP: float = _D["scale"]["scale_bright_clip"]
#: Scale estimate when every scale-space peak is a glow (``segment_defaults.toml`` [scale] self_consistent_*:
#: :func:`_self_consistent_diameter`).
SELF_CONSISTENT_LOW: float = _D["scale"]["self_consistent_low"]
SELF_CONSISTENT_HIGH: float = _D["scale"]["self_consistent_high"]
SELF_CONSISTENT_MAX_WORK_PX: float = 4.0e6  # working pixels per trial (a memory and time bound, not a tuning)
#: Camera hot pixels (``segment_defaults.toml`` [scale] hot_pixel_step): :func:`_hot_pixels_removed`.
HOT_PIXEL_STEP: float = _D["scale"]["hot_pixel_step"]
SCALE_BRIGHT_CLIP_MIN_SHARE: float = _D["scale"]["scale_bright_clip_min_share"]
SCALE_BRIGHT_CLIP_MAX_SHARE: float = _D["scale"]["scale_bright_clip_max_share"]
SCALE_BRIGHT_CLIP_MAX_RING: float = _D["scale"]["scale_bright_clip_max_ring"]
#: Size check with a pixel size (``segment_defaults.toml`` [scale] size_check_*): see :func:`segment_nuclei`.
SIZE_CHECK: dict[str, float] = {k: _D["scale"][k] for k in ("size_check_low", "size_check_high",
                                                              "size_check_ratio", "size_check_min_nuclei",
                                                              "estimate_check_low", "estimate_check_high",
                                                              "estimate_check_min_solidity",
                                                              "size_check_max_passes")}
#: Padding around the imaged area (``segment_defaults.toml`` [scale] no_data_*): see :func:`_no_data`.
NO_DATA: dict[str, float] = {k: _D["scale"][k] for k in ("no_data_min_fraction", "no_data_opening_px",
                                                           "no_data_min_step_sigmas", "no_data_max_inside")}
#: Parameters of the classical backend (``segment_defaults.toml`` [classical]; relative to the nucleus).
CLASSICAL_DEFAULTS: dict[str, Any] = dict(_D["classical"])
#: QC thresholds deciding ``scorable`` / ``exclusion_reason`` (``segment_defaults.toml`` [qc], with sources).
QC_DEFAULTS: dict[str, float] = dict(_D["qc"])

QC_COLUMNS = [
    "label", "centroid_y", "centroid_x", "area_px", "area_um2", "equivalent_diameter_um", "solidity",
    "eccentricity", "mean_dapi", "integrated_dapi", "focus", "touches_border", "saturated_fraction",
    "scorable", "exclusion_reason",
]


@dataclass(frozen=True)
class Segmentation:
    """Nuclei found in one DAPI image.

    Attributes
    ----------
    labels : np.ndarray
        (Y, X) int32 label image, 0 = background, 1..N = nuclei (same shape as the input).
    qc : pd.DataFrame
        One row per label, columns :data:`QC_COLUMNS` (see ``docs/segmentation.md``).
    pixel_size_um : float or None
        Pixel size used for µm columns; None when unknown (µm columns are NaN).
    diameter_px : float
        Typical nucleus diameter used, in pixels of the input image.
    diameter_source : str
        ``"pixel size"`` (from ``nucleus_diameter_um / pixel_size_um``), ``"estimated from image"``,
        either followed by ``", adjusted to the nuclei"`` when the size check segmented the field again
        at its nuclei's own size, or ``"user"`` (``diameter_px`` given).
    params : dict
        Every parameter used (backend, scale, thresholds), for provenance.
    """

    labels: np.ndarray
    qc: pd.DataFrame
    pixel_size_um: float | None
    diameter_px: float
    diameter_source: str
    params: dict = field(default_factory=dict)

    @property
    def n_nuclei(self) -> int:
        """Number of labelled nuclei (scorable or not)."""
        return int(len(self.qc))

    @property
    def n_scorable(self) -> int:
        """Number of nuclei with ``scorable == True``."""
        return int(self.qc["scorable"].sum()) if len(self.qc) else 0


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------

def _as_2d_float(dapi: Any, source: str) -> np.ndarray:
    arr = np.asarray(dapi)
    if arr.ndim == 3 and 1 in arr.shape:
        arr = arr.reshape([s for s in arr.shape if s != 1])
    if arr.ndim != 2:
        raise InputError(source, f"DAPI image must be 2-D (Y, X), got shape {arr.shape}; project z-stacks first")
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise InputError(source, f"DAPI image is too small to segment: shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise InputError(source, f"DAPI image must be real numbers, got dtype {arr.dtype}")
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer) and arr.dtype.itemsize <= 2:
        return arr  # 8/16-bit integers are used as they are (no full-size float copy); exact in float32
    out = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(out)):
        raise InputError(source, "DAPI image contains NaN or infinite values")
    return out


def _whole_uint16(img: np.ndarray) -> np.ndarray:
    """``img`` as uint16 when it is a float32 image of whole numbers in [0, 65535] (e.g. camera counts
    read as float32), else ``img`` itself.

    The values are the same, so every result is the same; the exact integer paths (block means, the
    percentile histogram) then apply, which are 3-5x faster than their float versions.
    """
    if img.dtype != np.float32 or img.size == 0:
        return img
    if not (float(img.min()) >= 0.0 and float(img.max()) <= 65535.0):
        return img
    u = img.astype(np.uint16)
    return u if np.array_equal(u, img) else img


def _hot_pixels_removed(img: np.ndarray) -> tuple[np.ndarray, int]:
    """Camera hot pixels set to the brightest of their other neighbours: ``(image, how many)``.

    A hot pixel lies above the image's robust range (:func:`_norm_range`, 0.5th-99.8th percentile) by more
    than ``[scale] hot_pixel_step`` x that range, and as much above every neighbour (of its 8) that is not
    such a pixel too, with at most 2 of those: single hot or cosmic-ray pixels and pairs of them. No optics
    images a DAPI structure that sharp (a nucleus of >= 6 px spreads over its neighbours), while a hot pixel
    at several times the nuclei's brightness compresses the rest of the field and shows up as a speck. A
    field where more than 0.1 % of the pixels lie that far above the range is left alone (that is content,
    not a camera defect). ``img`` is not changed: a copy is returned when pixels were set.
    ``hot_pixel_step = 0`` switches this off.
    """
    k = float(HOT_PIXEL_STEP)
    rng = _norm_range(img) if k > 0 and img.ndim == 2 and min(img.shape) >= 3 else None
    if rng is None:
        return img, 0
    lo, hi = rng
    step = k * (hi - lo)
    above = img > hi + step
    ys, xs = _nonzero_2d(above)
    if ys.size == 0 or ys.size > 0.001 * img.size:
        return img, 0
    v = img[ys, xs].astype(np.float64)
    nmax, _, n_above = _neighbour_extremes(img, ys, xs, skip=above)  # the others' brightest
    hot = (n_above <= 2) & np.isfinite(nmax) & (v - nmax > step)
    if not hot.any():
        return img, 0
    out = img.copy()
    out[ys[hot], xs[hot]] = nmax[hot].astype(img.dtype)
    return out, int(np.count_nonzero(hot))


def _norm_range(img: np.ndarray) -> tuple[float, float] | None:
    """Robust intensity range (0.5th, 99.8th percentile) of an image, None when it is flat."""
    sample = img[:: max(1, img.shape[0] // 512), :: max(1, img.shape[1] // 512)]
    lo, hi = _percentiles(sample, (0.5, 99.8))
    if hi <= lo:
        hi = float(sample.max())
        if hi <= lo:
            return None
    return float(lo), float(hi)


def _normalize(img: np.ndarray, rng: tuple[float, float] | None | bool = False) -> tuple[np.ndarray, bool]:
    """Scale to ~[0, 1] by robust percentiles (of ``img``, or the given range); return (image, is_flat)."""
    if rng is False:
        rng = _norm_range(img)
    if rng is None:
        return np.zeros(img.shape, np.float32), True
    lo, hi = rng
    out = np.subtract(img, np.float32(lo), dtype=np.float32)
    out *= np.float32(1.0 / (hi - lo))
    return out, False


def _clip_bright(img: np.ndarray, k: float, max_area: float | None = None,
                 max_area_fraction: float = 0.1, to_level: float | None = None,
                 min_energy_share: float = 0.01, max_energy_share: float = 1.0,
                 max_ring_foreground: float = 0.5) -> np.ndarray:
    """Clip or erase small debris far brighter than the nuclei (in place on float32 ``img``, returned).

    Fluorescent debris, dye precipitate and dust can be many times brighter than any nucleus. Left as
    they are they bias the local-contrast level of step 4 next to them (a nucleus beside a speck loses its
    pixels) and dominate the scale-space energy of the scale estimate (which grows with the square of the
    brightness: 40 specks 10x brighter than the nuclei on a simulated field made the estimate pick them).

    The level is ``bg + k (nuc - bg)``, ``bg`` and ``nuc`` the medians of the pixels below and above
    Otsu's threshold (of a sample with its top 2 % clipped): the background and the typical nucleus.
    Debris are the connected regions above it of at most ``max_area`` pixels; larger regions above it (a
    cluster of bright nuclei) keep their values, so the seams between them stay. Without ``max_area`` (no
    scale yet: the scale estimate) it is ``max_area_fraction`` x the area-weighted median area of the
    regions above Otsu's threshold (the area of the nucleus a foreground pixel lies in).

    * Segmentation (``to_level`` None): each debris region is set to the level, and when its whole blob
      above ``nuc`` is at most ``max_area`` too (a speck on the background, not on a nucleus), that blob
      is set to ``bg`` (clipped only, its skirt would still be a nucleus-bright speck).
    * Scale estimate (``to_level`` given): only debris on the background counts (at most
      ``max_ring_foreground`` of a ring 2-3 region radii out above Otsu's threshold, past a speck's own
      skirt: without a scale, a small bright region among dimmer foreground may be a nucleus on a haze),
      and only when it holds ``min_energy_share`` to ``max_energy_share`` of the summed squared contrast
      ``(img - bg)²`` above Otsu's threshold (less cannot move the estimate, while touching a few bright
      chromatin spots shifted it by ~0.4 %; more means the regions are the field's content, e.g. a few
      nuclei on a wide haze). Each such region, with its skirt down to ``bg + to_level (nuc - bg)`` when
      that blob is at most ``max_area``, is set to that level (a speck left at k x the contrast keeps k²
      x the nuclei's energy per pixel; a core lowered inside its skirt would leave a bright ring).

    ``k`` <= 0: off.
    """
    if k <= 0:
        return img
    step = max(1, img.shape[0] // 700, img.shape[1] // 700, math.ceil(math.sqrt(img.size / 2.5e5)))
    sample = img[::step, ::step].ravel()  # <= ~250 000 pixels: the levels are statistics
    # Otsu's threshold of the sample with its top 2 % clipped: bright specks, however few, would otherwise
    # pull it up to split them from everything else (40 specks 10x brighter than the nuclei did)
    t = _otsu(np.minimum(sample, np.float32(_percentiles(sample, (98.0,))[0])))
    lo, hi = sample[sample <= t], sample[sample > t]
    if lo.size == 0 or hi.size == 0:
        return img
    bg, nuc = float(_median(lo)), float(_median(hi))
    level = np.float32(bg + k * (nuc - bg))
    over = img > level
    if not over.any():
        return img
    fg = img > t if max_area is None or to_level is not None else None  # the regions above Otsu's threshold
    if max_area is None:
        fl, nf = ndi.label(fg)
        areas = np.sort(np.bincount(fl.ravel(), minlength=nf + 1)[1:])
        del fl  # (memory: a full-size int32 image less while the rest runs)
        if areas.size == 0:
            return img
        half = np.searchsorted(np.cumsum(areas), 0.5 * areas.sum())
        max_area = max_area_fraction * float(areas[min(half, areas.size - 1)])
    lab, n = ndi.label(over)
    del over
    area = np.bincount(lab.ravel(), minlength=n + 1)
    small = area <= max_area
    small[0] = False
    if to_level is not None and small.any():
        # the scale estimate: only specks on the background; without a scale, a small bright region among
        # dimmer foreground may be a nucleus on a haze, or chromatin. The small regions' labels (others 0)
        # as uint16 when they fit: the same maxima with half the memory of int32
        r = int(math.ceil(math.sqrt(float(area[small].max()) / math.pi)))
        lut = np.where(small, np.arange(n + 1), 0).astype(np.uint16 if n < 65536 else np.int32)
        inner = _max_box(np.take(lut, lab), 2 * r)
        near = _max_box(inner, r)
        ring = (near > 0) & (inner == 0)
        del inner
        on_fg = np.bincount(near[ring], weights=fg[ring], minlength=n + 1)
        cnt = np.bincount(near[ring], minlength=n + 1)
        del near, ring
        small &= on_fg <= max_ring_foreground * np.maximum(cnt, 1)
    sel = np.take(small, lab)
    if to_level is None:
        img[sel] = level
        # a speck on the background (its whole blob above the typical nucleus level is small too) is
        # erased to the background level: clipped, its skirt would still be a nucleus-bright speck
        img[_small_blobs(img > np.float32(nuc), sel, max_area)] = np.float32(bg)
        return img
    # the scale estimate: only when the debris holds a share of the foreground's squared contrast (the
    # energy of the scale space) that can move the estimate
    del lab
    e_sel = _sq_dev_sum(img, sel, bg)
    e_fg = _sq_dev_sum(img, fg, bg)
    del fg
    if not min_energy_share * e_fg <= e_sel <= max_energy_share * e_fg:
        return img
    # the whole speck down to that level, not only its core: a core set to it inside a skirt still up to
    # k x the contrast would be a bright ring, as strong at small scales as the speck
    low = np.float32(bg + to_level * (nuc - bg))
    np.minimum(img, low, out=img, where=_small_blobs(img > low, sel, max_area) | sel)
    return img


def _sq_dev_sum(img: np.ndarray, mask: np.ndarray, bg: float) -> float:
    """``sum((img[mask] - bg)**2)`` in float64, over blocks of rows (no full-size temporaries: the
    scale estimate's memory stays within ~10x a 16-bit field's bytes)."""
    total = 0.0
    rows = max(1, (1 << 20) // max(1, img.shape[1]))
    for r0 in range(0, img.shape[0], rows):
        v = img[r0:r0 + rows][mask[r0:r0 + rows]] - np.float32(bg)
        total += float(np.sum(np.square(v, dtype=np.float64)))
    return total


def _remove_debris(work: np.ndarray, d: float, p: dict) -> np.ndarray:
    """Step 2b on the normalised working image (in place, returned): :func:`_clip_bright` at
    ``bright_clip`` with regions of at most ``bright_clip_max_area`` nucleus areas (d: working px)."""
    return _clip_bright(work, float(p["bright_clip"]), max(4.0, float(p["bright_clip_max_area"]) * math.pi * d * d / 4))


def _small_blobs(above: np.ndarray, seeds: np.ndarray, max_area: float) -> np.ndarray:
    """Bool mask of the connected components of ``above`` that hold a pixel of ``seeds`` and have at most
    ``max_area`` pixels (both (Y, X) bool)."""
    blob, _ = ndi.label(above)
    ids = np.unique(blob[seeds])
    ids = ids[ids > 0]
    if ids.size:
        ids = ids[np.bincount(blob.ravel())[ids] <= max_area]
    return np.isin(blob, ids) if ids.size else np.zeros(above.shape, bool)


def _block_mean(img: np.ndarray, k: int) -> np.ndarray:
    """Mean of k x k blocks (float32; trailing rows/columns that do not fill a block are dropped).

    8/16-bit integer images with ``k <= 16`` are summed exactly in int32 (strided adds, 3-5x faster than a
    two-axis ``mean``): every partial sum is below 2**24, so the float32 sum numpy's ``mean`` forms is
    exact too and the result is bit-identical. float32 images with ``k <= 7`` are summed with strided adds
    in numpy's own order (bit-identical as well).
    """
    if k <= 1:
        return img
    h, w = (img.shape[0] // k) * k, (img.shape[1] // k) * k
    if np.issubdtype(img.dtype, np.integer) and img.dtype.itemsize <= 2 and k <= 16:
        cols = img[:h, 0:w:k].astype(np.int32)
        for j in range(1, k):
            cols += img[:h, j:w:k]
        tot = cols[0::k].copy()
        for i in range(1, k):
            tot += cols[i::k]
        out = tot.astype(np.float32)
        out /= np.float32(k * k)
        return out
    if img.dtype == np.float32 and k <= 7:
        # the same float32 additions in the same order as numpy's two-axis mean (each row's k columns in
        # turn, then the k rows; numpy sums fewer than 8 elements sequentially), so bit-identical; 3-9x faster
        cols = img[:h, 0:w:k].copy()
        for j in range(1, k):
            cols += img[:h, j:w:k]
        tot = cols[0::k].copy()
        for i in range(1, k):
            tot += cols[i::k]
        tot /= np.float32(k * k)
        return tot
    return img[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3), dtype=np.float32)


def _resample(img: np.ndarray, factor: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Resample by ``factor`` (<1 shrinks). Block-mean for the integer part of a shrink, then linear zoom.

    Returns the image and the exact (y, x) scale factors achieved.
    """
    if abs(factor - 1.0) < 0.05:
        return img.astype(np.float32, copy=False), (1.0, 1.0)
    k = 1
    if factor < 1.0:
        k = int(math.floor(1.0 / factor))
        # k == 1: the zoom converts its blocks of rows to float32 itself (the same values as converting the
        # whole image first, without a full-size float32 copy)
        out = _block_mean(img, k) if k > 1 else img
    else:
        out = img if img.dtype == np.float32 else img.astype(np.float32)
    target = (max(8, int(round(img.shape[0] * factor))), max(8, int(round(img.shape[1] * factor))))
    # the block mean drops the rows and columns that do not fill a block: the zoom still spans the whole
    # field (img.shape / k blocks), so that output pixel o is centred on input (o + 0.5) / scale - 0.5 as
    # _upsample_labels assumes (else the labels drift by up to k - 1 px towards the far edges)
    extent = (img.shape[0] / k, img.shape[1] / k)
    if out.shape != target or extent != out.shape:
        out = _zoom_linear(out, target, extent)
    return out.astype(np.float32, copy=False), (target[0] / img.shape[0], target[1] / img.shape[1])


def _zoom_linear(img: np.ndarray, shape: tuple[int, int],
                 extent: tuple[float, float] | None = None) -> np.ndarray:
    """``ndi.zoom(img, ..., order=1, grid_mode=True, mode="nearest")`` to ``shape``, to float32 rounding.

    Separable: rows are interpolated first (two row gathers), then columns, in float32; output pixel ``o``
    samples input coordinate ``(o + 0.5) * n_in / n_out - 0.5``, clamped at the edges. About 3x faster
    than scipy's spline zoom (5.3 -> 1.6 ms for 1024² -> 583²); within one float32 ulp of it.
    ``extent``: the (y, x) span of the output grid in input pixels when it is not ``img.shape`` (a block
    mean that dropped a partial block: the output still spans the whole field); ``n_in`` above is then
    the extent.
    """
    ext = img.shape if extent is None else extent

    def taps(n_in: int, n_out: int, span: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = (np.arange(n_out) + 0.5) * (span / n_out) - 0.5
        i0 = np.floor(c)
        frac = (c - i0).astype(np.float32)
        i0 = i0.astype(np.intp)
        return np.clip(i0, 0, n_in - 1), np.clip(i0 + 1, 0, n_in - 1), frac

    ly, hy, fy = taps(img.shape[0], shape[0], ext[0])
    lx, hx, fx = taps(img.shape[1], shape[1], ext[1])
    out = np.empty(shape, np.float32)
    for r0 in range(0, shape[0], 64):  # blocks of output rows: small temporaries, cache-friendly
        r = slice(r0, r0 + 64)
        a = np.take(img, ly[r], axis=0).astype(np.float32, copy=False)
        b = np.take(img, hy[r], axis=0).astype(np.float32, copy=False)
        b -= a
        b *= fy[r, None]
        a += b
        blk = out[r]
        np.take(a, lx, axis=1, out=blk)
        right = np.take(a, hx, axis=1)
        right -= blk
        right *= fx
        blk += right
    return out


# --------------------------------------------------------------------------------------------------
# scale
# --------------------------------------------------------------------------------------------------

def estimate_nucleus_diameter(dapi: np.ndarray) -> float:
    """Estimate the typical nucleus diameter of a DAPI image, in pixels, from the image alone.

    #. Bright debris on the background (small regions far brighter than the typical nucleus) is lowered
       to the typical nucleus level first (:func:`_clip_bright`, ``[scale] scale_bright_clip*``).
    #. Scale space: the scale-normalised Laplacian of Gaussian ``-s^2 LoG_s`` is computed for ``s`` from
       2 px upwards (ratio 2^(1/4), on an image pyramid so large scales are cheap); its mean squared
       positive response ``E(s)`` peaks where blobs of diameter ``2 sqrt(2) s`` fill the image.
    #. Candidate scales are the interior local maxima of ``E``; a maximum at the largest scale (a glow or
       a tissue outline, not nuclei) is ignored when interior maxima exist. Without any, the candidates are
       the strongest scale and, when ``E`` falls from it, the smallest (nuclei of ~6 px). The smallest candidate whose
       energy is at least half of the strongest candidate's is taken (textured backgrounds and tissue
       shapes are larger than nuclei; chromatin spots are weaker than nuclei).
    #. Refinement: the image is segmented once at that scale (flattened, local-contrast threshold) and the
       median inscribed/equivalent diameter of the objects is returned when it agrees within a factor 2.
       Only objects that step 7b would keep count (contrast >= ``dim_min_contrast`` x the
       ``dim_reference_quantile`` quantile of the objects' contrasts): haze and specks in tissue images
       outnumber the nuclei.
       When the objects are more than 2x larger than the scale (a glowing embryo or tissue section is one
       huge object at its own scale), the next smaller scale-space peak is tried the same way.
    #. When every peak was such a glow (the nuclei of a defocused or over-exposed tissue image leave only a
       shoulder in ``E``), the scales below the last peak are tried in turn and the one whose objects are
       closest to its own size is taken (:func:`_self_consistent_diameter`).

    Parameters
    ----------
    dapi : np.ndarray
        (Y, X) DAPI image, any real dtype.

    Returns
    -------
    float
        Typical nucleus diameter in pixels of ``dapi``. ``nan`` when nothing stands out of the background.
    """
    return _estimate_diameter(dapi)[0]


def _estimate_diameter(dapi: np.ndarray) -> tuple[float, bool]:
    """:func:`estimate_nucleus_diameter` and whether a quick segmentation found objects that fit the
    diameter returned (False: the scale-space peak's own diameter, or nan)."""
    img = _as_2d_float(dapi, "<array>")
    img, flat = _normalize(img)
    if flat:
        return float("nan"), False
    # debris on the background, lowered to the typical nucleus level (:func:`_clip_bright`)
    img = _clip_bright(img, SCALE_BRIGHT_CLIP, max_area_fraction=float(CLASSICAL_DEFAULTS["bright_clip_max_area"]),
                       to_level=1.0, min_energy_share=SCALE_BRIGHT_CLIP_MIN_SHARE,
                       max_energy_share=SCALE_BRIGHT_CLIP_MAX_SHARE,
                       max_ring_foreground=SCALE_BRIGHT_CLIP_MAX_RING)
    sigmas, energy = _log_energy(img)
    if len(energy) < 3 or not np.any(np.asarray(energy) > 0):
        return float("nan"), False
    e = np.asarray(energy)
    interior = [i for i in range(1, len(e) - 1) if e[i] >= e[i - 1] and e[i] > e[i + 1]]
    if not interior:
        # no interior peak: the maxima at the ends are the candidates, the smallest scale's when E falls
        # from it (nuclei of ~6 px, whose peak lies at or below the grid's first scale) and the strongest
        interior = sorted({0, int(np.argmax(e))} if e[0] > e[1] else {int(np.argmax(e))})
    best = max(e[i] for i in interior)
    pick = min(i for i in interior if e[i] >= SCALE_PEAK_MIN_FRACTION * best)
    # the picked peak, then the smaller-scale peaks (largest first): the first whose segmentation finds
    # objects of its own size (within 2x) wins. A glowing embryo or tissue section makes a strong
    # large-scale peak, but segmenting at that scale yields one huge object, not nucleus-sized ones.
    tries = [pick] + sorted((i for i in interior if i < pick), reverse=True)
    d0 = float("nan")
    for i in tries:
        d0 = _peak_diameter(sigmas, e, i)
        d1 = _refine_diameter(img, d0)
        if np.isfinite(d1) and 0.5 * d0 <= d1 <= 2.0 * d0 and _confirmed(img, d0, d1):
            return float(d1), True
        if not (np.isfinite(d1) and d1 > 2.0 * d0):
            break  # only a too-large scale (objects far bigger than it) sends us to a smaller peak
    else:
        # every peak was a glow or a tissue outline: the nuclei left no peak of their own, only a shoulder
        # below it (a defocused or over-exposed tissue image). The scale at which the quick segmentation
        # finds objects of that same size is the nucleus scale.
        d_fit = _self_consistent_diameter(img, d0)
        if np.isfinite(d_fit):
            return d_fit, True
    return float(d0), False


def _confirmed(img: np.ndarray, d0: float, d1: float) -> bool:
    """Whether the diameter ``d1`` that the quick segmentation found at the scale-space peak ``d0`` is found
    again at its own scale (within the same factor of 2 as :func:`_estimate_diameter` allows at the peak).

    Only a trial that moved the scale (``d1 / d0`` outside ``[scale] self_consistent_low``-``high``) is
    checked; the others are consistent already. Fine texture or camera row noise in a tissue image can make
    the trial at a small texture peak return fragments of half that size, which segmented at their own
    scale fall apart further (DSB2018 538b7673 with row noise of 0.5 % of the maximum: 11.8 px -> 6.8 px
    -> 2.0 px, true 19.7); a scale that the nuclei set returns about itself (DSB2018 dev: 0.60-1.04 x).
    """
    if SELF_CONSISTENT_LOW <= d1 / d0 <= SELF_CONSISTENT_HIGH:
        return True
    d2 = _refine_diameter(img, d1)
    return bool(np.isfinite(d2) and 0.5 * d1 <= d2 <= 2.0 * d1)


def _self_consistent_diameter(img: np.ndarray, d_max: float) -> float:
    """The refined diameter (:func:`_refine_diameter`) at the scale below ``d_max`` px where it agrees best
    with that scale, or nan when none agrees within ``[scale] self_consistent_low``-``self_consistent_high``.

    The scale grid is the scale space's (2^(1/4) steps) from ``d_max`` down to 5.7 px; agreement is the ratio
    of the refined diameter to the scale, closest to 1 in log. A trial that would segment more than 4 MP
    (the image enlarged to 24 px per nucleus) runs on the image's central part of that size. Used when
    every scale-space peak is far larger than the objects segmented at it (the nuclei make only a shoulder
    in the energy).
    """
    lo, hi = SELF_CONSISTENT_LOW, SELF_CONSISTENT_HIGH
    best, best_err = float("nan"), float("inf")
    d = d_max / 2 ** 0.25
    while d >= 2.0 * math.sqrt(2.0) * 2.0 - 1e-6:
        # small scales are segmented enlarged (24 px per nucleus): on a central crop of at most
        # SELF_CONSISTENT_MAX_WORK_PX working pixels, so that a large field costs no more than a small one
        f2 = float(np.clip(24.0 / d, 1.0 / 16.0, 3.0)) ** 2
        sub = img
        if img.size * f2 > SELF_CONSISTENT_MAX_WORK_PX:
            keep = math.sqrt(SELF_CONSISTENT_MAX_WORK_PX / (img.size * f2))
            h, w = (max(1, int(round(n * keep))) for n in img.shape)
            y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
            sub = img[y0:y0 + h, x0:x0 + w]
        d1 = _refine_diameter(sub, d)
        if np.isfinite(d1) and lo <= d1 / d <= hi and abs(math.log(d1 / d)) < best_err:
            best, best_err = float(d1), abs(math.log(d1 / d))
        d /= 2 ** 0.25
    return best


def _peak_diameter(sigmas: list[float], e: np.ndarray, i: int) -> float:
    """Blob diameter 2 sqrt(2) s of scale-space peak ``i``, parabolically interpolated in log(scale)."""
    ls = math.log(sigmas[i])
    if 0 < i < len(e) - 1:
        y0, y1, y2 = e[i - 1], e[i], e[i + 1]
        den = y0 - 2 * y1 + y2
        if den < 0:
            ls += 0.5 * (y0 - y2) / den * math.log(2 ** 0.25)
    return 2.0 * math.sqrt(2.0) * math.exp(ls)


def _log_energy(img: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean squared positive response of the scale-normalised LoG, on a block-mean pyramid.

    The smallest scale is 2 px (blobs of ~5.7 px: a nucleus any smaller has too few pixels to count probe
    signals in, and the finest scales cost most). Images above 1 MP start the pyramid shrunk (by 2 per
    level until <= 1 MP): their smallest scale is then ``2**level`` px, computed as sigma 1 px on the
    shrunk image (1024² fields: 2 px at half size; 2048²: 4 px at quarter size).
    """
    lvl0 = 0
    while img.size / 4 ** lvl0 > 1.0e6:
        lvl0 += 1
    pyr = {0: img}
    for k in range(1, lvl0 + 1):
        pyr[k] = _block_mean(pyr[k - 1], 2)
        del pyr[k - 1]
    sig, en = [], []
    s = float(2 ** lvl0)
    while s < 2.0 - 1e-9:  # the same grid of scales (2^(k/4) px) from 2 px up
        s *= 2 ** 0.25
    while True:
        lvl = max(lvl0, int(math.floor(math.log2(s / 1.5))))
        while lvl not in pyr:
            prev = max(pyr)
            pyr[prev + 1] = _block_mean(pyr[prev], 2)
        im = pyr[lvl]
        sl = s / 2 ** lvl
        if min(im.shape) < 8 * sl or s > min(img.shape) / 4:
            break
        r = ndi.gaussian_laplace(im, sl)
        r *= -sl * sl
        np.maximum(r, 0, out=r)
        sig.append(s)
        en.append(float(np.mean(r * r)))
        s *= 2 ** 0.25
    return sig, en


def _refine_diameter(img: np.ndarray, d0: float) -> float:
    factor = float(np.clip(24.0 / d0, 1.0 / 16.0, 3.0))
    work, _ = _resample(img, factor)
    d = d0 * factor
    flt = _flatten(work, d, CLASSICAL_DEFAULTS)
    del work  # (memory: the trial holds as few working-size arrays as it can)
    mask = _foreground(flt, d, CLASSICAL_DEFAULTS["local_rel"], CLASSICAL_DEFAULTS["low_frac"],
                       CLASSICAL_DEFAULTS["noise_sigmas"])
    if mask is None:
        return float("nan")
    mask = _fill_holes(mask)
    lab, n = ndi.label(mask)
    if n == 0:
        return float("nan")
    areas = np.bincount(lab.ravel())[1:]
    # the largest distance to the background per object: sqrt of the largest squared distance (the exact
    # whole numbers of _edt_squared), which is scipy's float64 distance transform's maximum, ~2x cheaper
    d2 = _edt_squared(mask, 64)
    if d2 is not None:
        maxdt = np.sqrt(_label_max(d2, lab, n, labelled_only=True)[1:])
    else:
        maxdt = _label_max(ndi.distance_transform_edt(mask), lab, n)[1:]
    del d2, mask
    keep = areas >= 0.05 * math.pi * d * d / 4
    if not np.any(keep):
        return float("nan")
    # the objects step 7b would keep: haze and specks far dimmer than the field's nuclei (tissue glow,
    # out-of-plane texture) are many and small and would pull the median down
    frac = float(CLASSICAL_DEFAULTS["dim_min_contrast"])
    if frac > 0 and np.count_nonzero(keep) >= 5:
        bg = _object_background(lab, flt, d, CLASSICAL_DEFAULTS)
        contrast = (_label_mean(flt, lab, n, labelled_only=True) - bg)[1:]
        ref = float(np.quantile(contrast[keep], CLASSICAL_DEFAULTS["dim_reference_quantile"]))
        if ref > 0:
            keep &= contrast >= frac * ref
    areas, maxdt = areas[keep], maxdt[keep]
    eqd = 2.0 * np.sqrt(areas / np.pi)
    inscribed = 2.0 * maxdt
    # compact objects (single nuclei): equivalent diameter; clumps: one nucleus' width ~ inscribed width
    per_obj = np.where(eqd <= 1.35 * inscribed, eqd, 1.15 * inscribed)
    return float(np.median(per_obj)) / factor


def _flatten(work: np.ndarray, d: float, p: dict) -> np.ndarray:
    """Smooth at the nucleus scale and subtract a grey-opening background wider than a nucleus."""
    sm = ndi.gaussian_filter(work, max(0.5, p["smooth_sigma_diameters"] * d))
    bw = int(max(5, round(p["background_width_diameters"] * d)))
    # = ndi.grey_opening(sm, size=(bw, bw)): erosion, then dilation (scipy mirrors its window)
    opened = _window_extreme(_window_extreme(sm, bw, np.minimum), bw, np.maximum, bw // 2 - 1 + bw % 2)
    bg = ndi.uniform_filter(opened, size=bw)
    del opened
    return np.subtract(sm, bg, out=sm)  # = sm - bg, in sm's own (new) buffer


def texture_index(flat: np.ndarray, mask: np.ndarray, d: float, extra_sigma: float = 0.0) -> float:
    """Relative chromatin texture inside the nuclei of a flattened image (step 3b).

    The standard deviation of ``flat - G(flat, 0.2 d)`` (detail finer than a fifth of a nucleus) over the
    nuclei's cores (``mask`` eroded by d/8, so outlines do not count), divided by the mean of
    ``G(flat, 0.2 d)`` there. It is a statistic, so it is taken on every second pixel of every second row
    (the Gaussian at half the sigma: within 0.002 of the full-grid value on simulated fields and 39 of 40
    DSB2018 dev images, 8x cheaper). ``extra_sigma`` (px) smooths ``flat`` first, which previews a larger
    smoothing of step 3 (Gaussians compose; the background subtraction is ignored). ``nan`` without cores.

    Parameters
    ----------
    flat : np.ndarray
        (Y, X) float32 flattened, smoothed DAPI at the working scale.
    mask : np.ndarray
        (Y, X) bool foreground of step 4.
    d : float
        Nucleus diameter at the working scale, px.
    extra_sigma : float
        Additional Gaussian smoothing, px (0 = none).

    Returns
    -------
    float
        Dimensionless texture index (the simulator's default chromatin: 0.27-0.31; DSB2018 dev images:
        0.12-0.28, one image of a single nucleus 0.63).
    """
    core = _binary_morph(mask, _disk(max(1, int(round(d / 8)))), erode=True)[::2, ::2]
    if 4 * core.sum() < 0.25 * math.pi * d * d / 4:
        return float("nan")
    f = flat[::2, ::2]
    if extra_sigma > 0:
        f = ndi.gaussian_filter(f, extra_sigma / 2)
    coarse = ndi.gaussian_filter(f, 0.1 * d)
    level = float(np.mean(coarse[core]))
    if level <= 0:
        return float("nan")
    return float(np.std((f - coarse)[core]) / level)


def _texture_smoothing(flat: np.ndarray, mask: np.ndarray, d: float, p: dict) -> float:
    """Step 3b: the smoothing (in diameters) that brings the chromatin texture down to ``texture_max``.

    With texture stronger than ~0.25 (relative SD) the darkest chromatin falls below the local-contrast
    level of step 4 (``local_rel`` x a peak ~2.5 SD above the mean), so nuclei come out bitten and cut
    into pieces. Candidate smoothings ``smooth_sigma_diameters`` x 1.5, 2, 2.5 are previewed with
    :func:`texture_index` and the smallest that brings the index to ``texture_max`` or below is returned
    (the largest when none does); ``smooth_sigma_diameters`` itself when the texture is already below
    ``texture_max`` (most images: no extra work beyond the index) or ``texture_max`` is 0 (off).
    """
    s0 = p["smooth_sigma_diameters"]
    if p["texture_max"] <= 0 or s0 <= 0:
        return s0
    t = texture_index(flat, mask, d)
    if not t > p["texture_max"]:
        return s0
    s_px = max(0.5, s0 * d)
    for k in (1.5, 2.0, 2.5):
        extra = math.sqrt(max((k * s0 * d) ** 2 - s_px ** 2, 0.0))
        if texture_index(flat, mask, d, extra) <= p["texture_max"]:
            return k * s0
    return 2.5 * s0


def _foreground(flat: np.ndarray, d: float | None = None, rel: float = 0.3, low_frac: float = 0.1,
                noise_sigmas: float = 4.0, own_rel: float = 0.0, with_levels: bool = False):
    """Foreground mask of a flattened, smoothed image.

    Without a scale ``d``: plain Otsu. With it, a two-part rule that survives dim nuclei next to bright
    ones: a pixel is foreground when it is above a low global level (``low_frac`` x Otsu, and 4 noise
    sigmas) **and** above ``rel`` x the brightest value within half a nucleus diameter (local contrast).
    With ``own_rel`` > 0 (step 4b, :func:`_grow_own_peak`) pixels above the low level that fail the local
    contrast are added back when they reach ``own_rel`` of the peak of the object they flood from (with
    ``own_rel`` = ``rel``: only pixels that failed because a BRIGHTER object is within reach).
    Returns the bool mask, or None when nothing stands out of the noise; with ``with_levels`` (and
    ``d``), ``(mask, (t_low, t))``: the low global level and Otsu's threshold.
    """
    sample = flat[:: max(1, flat.shape[0] // 700), :: max(1, flat.shape[1] // 700)].ravel()
    t = _otsu(sample)
    bgv = sample[sample <= t]
    if bgv.size < 8 or t <= 0:
        return None
    med = float(_median(bgv))  # = np.median
    noise = float(_median(np.abs(bgv - med))) * 1.4826  # = np.median
    n_fg = int(np.count_nonzero(sample > t))
    # "anything there?": pixels far above the background's lower half-width (1 sigma for Gaussian noise)
    p_lo, p10 = np.percentile(sample, [2.28, 10.0])
    sigma_low = float(p10 - p_lo) / 0.718  # Gaussian: p10 - p2.28 = 0.718 sigma
    bright = np.count_nonzero(sample > p10 + 10.0 * sigma_low) / sample.size  # = np.mean(...), same division
    if n_fg == 0:
        return None
    if d is None:
        if bright < MIN_BRIGHT_FRACTION:
            return None  # nothing stands out of the noise
        return flat > t
    # with a scale, either rule will do: enough such pixels for part of one nucleus, however large the field
    # (the share alone dropped a field holding one or two nuclei), or the share (in a small, dense field the
    # background's half-width is inflated by nucleus edges and few pixels are 10 of its sigmas up)
    if bright < MIN_BRIGHT_FRACTION and bright * flat.size < MIN_BRIGHT_NUCLEUS_AREAS * math.pi * d * d / 4.0:
        return None
    t_low = max(med + low_frac * (t - med), med + noise_sigmas * noise)
    size = max(3, int(round(d)) | 1)
    local_max = _window_extreme(flat, size, np.maximum)  # = ndi.maximum_filter(flat, size=size)
    above = flat > t_low
    # = above & (flat - med > rel * (local_max - med)), the same float32 operations, two temporaries fewer
    local_max -= med
    local_max *= rel
    lhs = flat - med
    mask = np.greater(lhs, local_max, out=np.empty(flat.shape, bool))
    del lhs, local_max
    mask &= above
    if own_rel > 0:
        mask = _grow_own_peak(flat, mask, above, med, own_rel)
    return (mask, (t_low, t)) if with_levels else mask


def _grow_own_peak(flat: np.ndarray, mask: np.ndarray, above: np.ndarray, med: float,
                   own_rel: float) -> np.ndarray:
    """Step 4b: judge each pixel against the peak of the object it belongs to, not the neighbourhood's.

    The local-contrast rule of step 4 compares a dim nucleus next to a bright one with the BRIGHT peak,
    so the dim one shrinks to a thin band. Here each connected object of ``mask`` grows (watershed of
    ``-flat`` seeded by the objects, restricted to ``above``, with a line of left-out pixels where two
    objects' growths meet, :func:`_meeting_line`) and keeps the grown pixels that are at least ``own_rel``
    x its OWN peak above ``med``: the dim nucleus recovers its pixels, the bright nucleus' halo (below
    ``own_rel`` x the bright peak) stays out. Pixels are only added, and two first-pass objects are never
    joined. With ``own_rel`` equal to the local-contrast ``rel`` (the default), the pixels added are exactly
    those whose neighbourhood maximum is brighter than their own object's peak, i.e. pixels dominated by
    ANOTHER object.

    Parameters
    ----------
    flat : np.ndarray
        (Y, X) float32 flattened, smoothed image.
    mask : np.ndarray
        (Y, X) bool first-pass foreground (local contrast).
    above : np.ndarray
        (Y, X) bool pixels above the low global level (``mask`` is a subset).
    med : float
        Background level of ``flat`` (median of the pixels below Otsu's threshold).
    own_rel : float
        Fraction of each object's own peak contrast (peak - ``med``) a grown pixel must reach.

    Returns
    -------
    np.ndarray
        (Y, X) bool foreground, a superset of ``mask``.
    """
    cand = above & ~mask  # above the low level, below the local-contrast level
    lab, n = ndi.label(mask)
    if n == 0 or not cand.any():
        return mask
    sel = lab > 0
    peak = np.zeros(n + 1, np.float64)
    np.maximum.at(peak, lab[sel], flat[sel].astype(np.float64))
    # flood only the candidates, from each object's pixels that touch them (same result as a flood from
    # the whole objects on simulated fields seeds 100-111, ~2x cheaper)
    ring = mask & _binary_morph(cand, ndi.generate_binary_structure(2, 1))  # = ndi.binary_dilation(cand)
    grown = _watershed_multi(-flat, np.where(ring, lab, 0), cand | ring)  # = watershed(...)
    # lines keep two objects' growths apart, so a gap that step 4 opened between two nuclei is never closed
    # here: of two 4-neighbours grown from different objects, the dimmer candidate (reached later) is left
    # out, both when equally bright (a superset of the flood's own watershed lines, which cost ~1.6x the flood)
    grown = np.where(cand & _meeting_line(grown, np.where(cand, flat, np.inf)), 0, grown)
    thr = (med + own_rel * (peak - med)).astype(np.float32)
    return mask | (cand & (grown > 0) & (flat > np.take(thr, grown)))  # np.take = thr[grown], 2x faster


def _meeting_line(labels: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Pixels where two labelled regions meet: of each 4-neighbour pair of different non-zero labels, the
    pixel with the lower ``height`` (both when equal). (Y, X) bool; every such pair has a pixel in it."""
    line = np.zeros(labels.size, bool)
    hf = np.ascontiguousarray(height).reshape(-1)
    for (a, b, drop), (ha, hb, _) in zip(_pair_views(labels), _pair_views(hf.reshape(labels.shape))):
        sel = _pair_select(a, b, drop)
        first = np.flatnonzero(sel & (ha <= hb))
        second = np.flatnonzero(sel & (hb <= ha))
        step = labels.shape[1] if drop is None else 1
        line[first] = True
        line[second + step] = True
    return line.reshape(labels.shape)


# --------------------------------------------------------------------------------------------------
# classical backend
# --------------------------------------------------------------------------------------------------

def segment_classical(dapi: np.ndarray, diameter_px: float, **params: Any) -> np.ndarray:
    """Classical nucleus segmentation (no model): see the module docstring, steps 2-8.

    Parameters
    ----------
    dapi : np.ndarray
        (Y, X) image, float32 or 8/16-bit integers (any intensity units).
    diameter_px : float
        Typical nucleus diameter in pixels of ``dapi``.
    **params
        Overrides of :data:`CLASSICAL_DEFAULTS`.

    Returns
    -------
    np.ndarray
        (Y, X) int32 labels, 0 = background.
    """
    p = {**CLASSICAL_DEFAULTS, **params}
    unknown = set(params) - set(CLASSICAL_DEFAULTS)
    if unknown:
        raise FishcountError("segment", f"unknown classical segmentation parameter(s): {sorted(unknown)}")
    img = np.asarray(dapi)
    wd = float(p["working_diameter_px"])
    factor = float(np.clip(wd / diameter_px, 1.0 / 16.0, 2.0))
    rng = _norm_range(img)
    work, (fy, fx) = _resample(img, factor)
    work, flat = _normalize(work, rng)  # range of the field, applied after resampling (cheaper)
    if flat:
        return np.zeros(img.shape, np.int32)
    d = diameter_px * factor  # nucleus diameter at the working scale
    # 2b. debris far brighter than the nuclei: clipped to a nucleus-bright level, or erased on the background
    work = _remove_debris(work, d, p)
    # 3. flatten + smooth
    flt = _flatten(work, d, p)
    # 4. threshold
    fg = _foreground(flt, d, p["local_rel"], p["low_frac"], p["noise_sigmas"], p["own_peak_rel"], with_levels=True)
    if fg is None:
        return np.zeros(img.shape, np.int32)
    mask, levels = fg
    # 3b. strongly textured chromatin: smooth more, so dark chromatin patches do not cut nuclei apart
    sigma = _texture_smoothing(flt, mask, d, p)
    if sigma > p["smooth_sigma_diameters"]:
        p = {**p, "smooth_sigma_diameters": sigma}
        flt = _flatten(work, d, p)
        fg = _foreground(flt, d, p["local_rel"], p["low_frac"], p["noise_sigmas"], p["own_peak_rel"],
                         with_levels=True)
        if fg is None:
            return np.zeros(img.shape, np.int32)
        mask, levels = fg
    typical_area = math.pi * d * d / 4.0
    min_area = max(4, int(p["min_area_fraction"] * typical_area))
    mask, gaps = _fill_holes_but_gaps(mask, flt, levels, max(1, int(round(0.1 * d))))
    mask = _opened(mask, max(1, int(round(d / 12))), int(p["opening_keep_radius_px"]), min_area)
    mask, comp = _remove_small(mask, min_area, with_labels=True)
    if not mask.any():
        return np.zeros(img.shape, np.int32)
    # 5. split touching nuclei; the labels cover the mask exactly, so step 6 reuses its distance transform
    dt = _edt32(mask)  # = ndi.distance_transform_edt(mask).astype(np.float32)
    labels = _split(mask, flt, d, p, dt, comp)
    # 6. merge over-split fragments
    labels = _merge_fragments(labels, flt, d, p, dt)
    del dt
    # 7. re-split objects that are too big or too notched for one nucleus
    labels = _refine_split(labels, flt, d, p)
    # 7b. drop blobs far dimmer than the field's nuclei (haze, out-of-plane tissue, specks)
    bg = _object_background(labels, flt, d, p)  # each object's ring background, for 7b and 7c
    kept = _drop_dim(labels, flt, d, p, bg)
    # 7c. outlines at a fixed fraction of each object's own contrast (not of its neighbourhood's peak);
    # the ring backgrounds are the same when 7b dropped nothing
    labels = _tighten_outlines(kept, flt, d, p, bg if kept is labels else None)
    del bg
    # 7c2. split objects at the DAPI level that separates their nuclei (brightness step, faint dip)
    labels = _level_split(labels, flt, d, p)
    # 7d. cut objects between two concavities of their outline (nuclei pressed side by side)
    labels = _concave_split(labels, d, p, flt)
    # 7e. a gap left open in step 4 that only one object borders is that nucleus' own hole (a ring
    # nucleus): filled into it
    labels = _fill_own_gaps(labels, gaps)
    # 8. back to the field's shape
    return _upsample_labels(labels, img.shape, (fy, fx), min_area / (fy * fx))


def _opened(mask: np.ndarray, radius: int, keep_radius: int, min_area: float = 0.0) -> np.ndarray:
    """Step 4's opening: ``mask`` opened with a disc of ``radius`` px (spurs, specks and thin bridges go),
    plus every piece that the smaller disc of ``keep_radius`` px keeps beyond it and that touches an
    object of the first opening of at least ``min_area`` px: the slender lobes and strands of a segmented
    nucleus and the detail of an outline stay with their nucleus, while a speck (an object of the first
    opening under ``min_area`` px, which the small-object removal drops next) is never grown over that
    size by such pieces. ``keep_radius`` 0, or not smaller than ``radius``: the plain opening.
    (Y, X) bool."""
    disk = _disk(radius)
    opened = _binary_morph(_binary_morph(mask, disk, erode=True), disk)  # = ndi.binary_opening(mask, disk)
    if not 0 < keep_radius < radius:
        return opened
    small = _disk(keep_radius)
    extra = _binary_morph(_binary_morph(mask, small, erode=True), small)
    extra &= ~opened
    pieces, n = ndi.label(extra)
    if n == 0:
        return opened
    comp, n_comp = ndi.label(opened)
    big = np.bincount(comp.ravel(), minlength=n_comp + 1) >= min_area
    big[0] = False
    body = big[comp]
    touched = np.zeros(n + 1, bool)
    touched[pieces[_binary_morph(body, ndi.generate_binary_structure(2, 1)) & extra]] = True  # 4-neighbours
    touched[0] = False
    return body | touched[pieces]


def _label_max(values: np.ndarray, labels: np.ndarray, n: int, labelled_only: bool = False) -> np.ndarray:
    """Per-label maximum, (n + 1,) float64 with index = label (0 for absent labels). ``labelled_only``:
    label 0 is left out (its entry is 0; the others are the same), ~2x faster on working images, which
    are mostly background."""
    out = np.zeros(n + 1, np.float64)
    if labelled_only:
        sel = labels > 0
        np.maximum.at(out, labels[sel], values[sel].astype(np.float64))
        return out
    np.maximum.at(out, labels.ravel(), values.ravel().astype(np.float64))
    return out


def _label_sum(values: np.ndarray, labels: np.ndarray, n: int, rows: int = 256,
               labelled_only: bool = False) -> np.ndarray:
    """Per-label sum, (n + 1,) float64; in blocks of rows so no full-size float64 temporary is made.

    ``labelled_only``: label 0 is left out (its entry is 0): the sums of labels 1..n are the same to the
    bit (same pixels, same order), ~2x faster when much of the image is background (every background
    pixel otherwise adds into the one bin 0, a chain of dependent additions)."""
    tot = np.zeros(n + 1)
    for lab, val in _label_blocks(values, labels, rows, labelled_only):
        tot += np.bincount(lab, weights=val, minlength=n + 1)
    return tot


def _label_blocks(values: np.ndarray, labels: np.ndarray, rows: int, labelled_only: bool):
    """Flat (labels, values) of successive blocks of ``rows`` rows (label 0 left out with
    ``labelled_only``): the blocks and order every per-label sum uses, so their sums agree to the bit."""
    for r0 in range(0, labels.shape[0], rows):
        lab, val = labels[r0: r0 + rows].ravel(), values[r0: r0 + rows].ravel()
        if labelled_only:
            sel = lab > 0
            lab, val = lab[sel], val[sel]
        yield lab, val


def _label_mean(values: np.ndarray, labels: np.ndarray, n: int, labelled_only: bool = False) -> np.ndarray:
    """Per-label mean, (n + 1,) float64 with index = label (NaN for absent labels).

    Counts and sums in the same blocks of 256 rows (no full-size temporaries; the same sums, in the same
    order, as :func:`_label_sum`). ``labelled_only``: label 0 left out (NaN), as in :func:`_label_sum`.
    """
    cnt, tot = _label_count_sum(values, labels, n, labelled_only)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tot / cnt


def _label_count_sum(values: np.ndarray, labels: np.ndarray, n: int,
                     labelled_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-label pixel counts and sums, two (n + 1,) float64 arrays, in blocks of 256 rows (the blocks and
    order of :func:`_label_sum`, so the sums are the same to the bit). ``labelled_only``: label 0 left
    out (count and sum 0), as in :func:`_label_sum`."""
    cnt = np.zeros(n + 1)
    tot = np.zeros(n + 1)
    for lab, val in _label_blocks(values, labels, 256, labelled_only):
        lab = lab.astype(np.intp, copy=False)
        cnt += np.bincount(lab, minlength=n + 1)
        tot += np.bincount(lab, weights=val, minlength=n + 1)
    return cnt, tot


def _edt32(mask: np.ndarray, reach: int = 32) -> np.ndarray:
    """``ndi.distance_transform_edt(mask).astype(np.float32)``, exactly, by the separable method on whole
    numbers (~35 % faster than scipy's feature transform on the working image).

    Column pass: the distance to the nearest background pixel of the same column, from running
    maxima / minima of the background rows above and below. Row pass: the squared distance is
    ``min_k G(x + k) + k²`` over the row (``G``: the column pass squared), taken for k = 1, 2, ... only at
    the pixels whose best value so far is above ``k²`` (no farther offset can lower it), so the work
    shrinks as the offsets grow; rows are framed by ``reach`` columns of a far value. Both passes are
    exact in int32 and sqrt of the same whole number is scipy's float64 distance, cast to float32. Images
    without background or foreground, larger than 40000 px a side, or with a pixel more than ``reach``
    columns from its nearest background pixel's column (a nucleus ~3x the working diameter) take scipy's
    transform (feature transform, then the same squares and square root).
    """
    d2 = _edt_squared(mask, reach)
    if d2 is not None:
        return np.sqrt(d2, dtype=np.float64).astype(np.float32)
    ft = ndi.distance_transform_edt(mask, return_distances=False, return_indices=True)
    big = 2 * max(mask.shape) ** 2 >= 2**31
    dy = ft[0].astype(np.int64) if big else ft[0]
    dx = ft[1].astype(np.int64) if big else ft[1]
    del ft
    dy = dy - np.arange(mask.shape[0], dtype=dy.dtype)[:, None]
    dx = dx - np.arange(mask.shape[1], dtype=dx.dtype)
    dy *= dy
    dx *= dx
    dy += dx
    return np.sqrt(dy, dtype=np.float64).astype(np.float32)


def _edt_squared(mask: np.ndarray, reach: int) -> np.ndarray | None:
    """Squared Euclidean distance (int32) of each pixel to the nearest False pixel of 2-D bool ``mask``, or
    None when the mask is all False or all True, its sides sum to 40000 px or more (int32 room), or some
    pixel's nearest False pixel is more than ``reach`` columns away (see :func:`_edt32`). None means: use
    scipy's transform."""
    h, w = mask.shape
    if h + w >= 40000 or not mask.any() or mask.all():
        return None
    big = np.int32(h + w + 2)  # farther than any pixel of the image
    far = np.int32(2**30)  # > big², and far + reach² still fits in int32
    yi = np.arange(h, dtype=np.int32)[:, None]
    up = np.where(mask, -big, yi)  # row of the nearest background pixel above (or at) each pixel
    np.maximum.accumulate(up, axis=0, out=up)
    dn = np.where(mask, h + big, yi)  # ... below
    dn = np.minimum.accumulate(dn[::-1], axis=0)[::-1]
    up -= yi
    np.negative(up, out=up)
    dn -= yi
    g = np.minimum(up, dn)
    np.minimum(g, big, out=g)  # columns without background: big
    del up, dn
    frame = np.full((h, w + 2 * reach), far, np.int32)
    d2 = frame[:, reach: reach + w]
    np.multiply(g, g, out=d2)  # column pass, squared
    del g
    gf = frame.ravel()
    best = frame.copy()
    bf = best.ravel()
    act = np.flatnonzero(mask)
    act += act // w * (2 * reach) + reach  # index in the framed rows
    dv = np.take(gf, act)
    keep = dv > 1  # 0 or 1: no row offset can lower it
    act, dv = act[keep], dv[keep]
    k = 1
    while act.size:
        if k > reach:
            return None
        # = min over the two pixels k to the left and right of the column pass + k²
        c = np.minimum(np.take(gf, act - k), np.take(gf, act + k))
        c += np.int32(k * k)
        np.minimum(dv, c, out=dv)
        k += 1
        keep = dv > k * k  # the others are final: farther offsets add at least k²
        done = ~keep
        bf[act[done]] = dv[done]
        act, dv = act[keep], dv[keep]
    return best[:, reach: reach + w]


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``ndi.binary_fill_holes(mask)``, exactly: background not 4-connected to the image edge is filled.

    One labelling of the background instead of scipy's iterated dilation from the edge (~4x faster on
    the working image).
    """
    return _fill_holes_but_gaps(mask)[0]


def _fill_own_gaps(labels: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Step 7e: each connected piece of ``gaps`` (holes kept open by :func:`_fill_holes_but_gaps`) that borders
    exactly one object (8-neighbours) becomes part of it: a ring-shaped nucleus (seen in myeloid cells
    of MDS) keeps its hole, as step 4 fills the holes of every other nucleus. Returns ``labels`` itself
    when there is nothing to fill, else a new int32 array."""
    if not gaps.any():
        return labels
    g, n = ndi.label(gaps)
    near = _max_box(g, 1)  # the gap each pixel borders (8-neighbours; the larger label where two gaps meet)
    rim = (near > 0) & ~gaps & (labels > 0)  # object pixels next to a gap
    gid = near[rim]
    top = int(labels.max()) + 1
    pairs = np.unique(gid.astype(np.int64) * top + labels[rim])
    pg, pl = pairs // top, pairs % top
    count = np.bincount(pg, minlength=n + 1)
    owner = np.zeros(n + 1, np.int32)
    one = count[pg] == 1
    owner[pg[one]] = pl[one]
    if not owner.any():
        return labels
    out = labels.astype(np.int32, copy=True)
    fill = np.take(owner, g)
    out[fill > 0] = fill[fill > 0]
    return out


def _fill_holes_but_gaps(mask: np.ndarray, flt: np.ndarray | None = None, levels: tuple[float, float] | None = None,
                         ring_px: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Step 4's hole filling: ``(filled, gaps)``, the mask with its holes filled (background not 4-connected
    to the image edge; = ``ndi.binary_fill_holes(mask)`` without ``flt``) except the gaps enclosed by
    touching nuclei, and those gaps' pixels ((Y, X) bool each).

    A hole more than half of whose pixels are at or below the low global level ``levels[0]`` (background,
    step 4) and whose rim, the mask pixels within ``ring_px`` of it, has a median above Otsu's threshold
    ``levels[1]`` (nuclear material all round: a ring of touching nuclei) is a gap: it stays open, so the
    nuclei around it are split as touching nuclei are. A dark hole inside dim haze (the glowing inside of an
    embryo or a tissue fragment: rims at 0.1-0.3 of the way from the background to Otsu's threshold on
    DSB2018) is filled as every other hole. One labelling of the background instead of scipy's iterated
    dilation from the edge (~4x faster on the working image).
    """
    mask = np.asarray(mask, dtype=bool)
    gaps = np.zeros(mask.shape, bool)
    bg, n = ndi.label(~mask)
    if n == 0:
        return mask.copy(), gaps
    outside = np.zeros(n + 1, bool)
    for edge in (bg[0], bg[-1], bg[:, 0], bg[:, -1]):
        outside[edge] = True
    outside[0] = True  # label 0 = the mask itself
    if flt is not None and levels is not None and not outside.all():
        t_low, t = levels
        size = np.bincount(bg.ravel(), minlength=n + 1)
        n_dark = np.bincount(bg[flt <= t_low], minlength=n + 1)
        dark = ~outside & (2 * n_dark > size)
        if dark.any():
            holes = np.where(np.take(dark, bg), bg, 0)
            rim = np.where(mask, _max_box(holes, ring_px), 0)  # = ndi.grey_dilation(holes, size) on the mask
            with np.errstate(invalid="ignore"):
                is_gap = dark & (_label_median(flt, rim, n) > t)
            if is_gap.any():
                gaps = np.take(is_gap, bg)
                outside |= is_gap
    return ~np.take(outside, bg) | mask, gaps  # np.take = outside[bg], 2x faster


#: Kernels of :func:`_gauss_small`, by sigma (its type included: scipy's kernel is computed with it).
_GAUSS_KERNELS: dict[tuple[str, float], np.ndarray] = {}


def _gauss_small(x: np.ndarray, sigma: float) -> np.ndarray:
    """``ndi.gaussian_filter(x, sigma)`` of a 2-D float array, exactly, with less overhead per call.

    The same two line filters as scipy's (``ndi.correlate1d`` along axis 0 into a new array of ``x``'s
    dtype, then along axis 1 in place, reflected borders), with scipy's kernel of radius
    ``int(4 sigma + 0.5)`` taken once per sigma from its impulse response (``gaussian_filter1d`` of a unit
    impulse with zero borders gives the kernel's values exactly: one product by 1, sums with 0; the kernel
    is symmetric, so not reversing it is the same). scipy's wrapper recomputes the kernel on every call,
    which is most of its cost on the small boxes of steps 7c2 and 7d.
    """
    key = (type(sigma).__name__, float(sigma))
    w = _GAUSS_KERNELS.get(key)
    if w is None:
        lw = int(4.0 * float(sigma) + 0.5)
        impulse = np.zeros(2 * lw + 1)
        impulse[lw] = 1.0
        w = ndi.gaussian_filter1d(impulse, sigma, mode="constant")
        _GAUSS_KERNELS[key] = w
    out = np.zeros(x.shape, x.dtype)
    ndi.correlate1d(x, w, 0, out)
    ndi.correlate1d(out, w, 1, out)
    return out


def _gauss_boxes(x: np.ndarray, sigma: float, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """``ndi.gaussian_filter(x, sigma)`` inside each ``(y0, y1, x0, x1)`` box of the 2-D float array ``x``,
    exactly (0 elsewhere): each box is filtered with a margin of the kernel's radius (clipped at the image
    edges, where scipy reflects the same pixels), so every pixel of the box sees the same neighbours and
    the same sums as in the whole image. For a few small boxes of a large image."""
    out = np.zeros_like(x)
    r = int(4.0 * float(sigma) + 0.5)  # gaussian_filter's kernel radius (truncate = 4)
    h, w = x.shape
    for y0, y1, x0, x1 in boxes:
        ya, yb, xa, xb = max(0, y0 - r), min(h, y1 + r), max(0, x0 - r), min(w, x1 + r)
        out[y0:y1, x0:x1] = _gauss_small(x[ya:yb, xa:xb], sigma)[y0 - ya: y1 - ya, x0 - xa: x1 - xa]
    return out


#: Disks of :func:`_disk`, by radius (read-only).
_DISKS: dict[int, np.ndarray] = {}


def _disk(r: int) -> np.ndarray:
    """Bool disk of radius ``r`` ((2 r + 1)² box), read-only and built once per radius (~11 µs each time
    otherwise; the per-object steps ask for one ~150 times per simulated field)."""
    disk = _DISKS.get(r)
    if disk is None:
        y, x = np.ogrid[-r: r + 1, -r: r + 1]
        disk = (x * x + y * y) <= r * r + 0.5
        disk.setflags(write=False)
        _DISKS[r] = disk
    return disk


def _binary_morph(mask: np.ndarray, structure: np.ndarray, erode: bool = False) -> np.ndarray:
    """``ndi.binary_dilation(mask, structure)`` (or ``ndi.binary_erosion`` with ``erode``), exactly, for a
    small symmetric bool ``structure`` with odd sides: an OR (AND) of shifted views of ``mask`` padded
    with False (scipy's ``border_value=0``), one per structure pixel. ~10-40x faster than scipy's
    iterated-structure loops on the working image for the 3x3 and small-disk structures used here. ``mask``
    may have leading axes (a stack of images, ``structure`` applied to each one: scipy's with
    ``structure[None]``)."""
    ry, rx = structure.shape[0] // 2, structure.shape[1] // 2
    lead, (h, w) = mask.shape[:-2], mask.shape[-2:]
    # flat rows of the padded width W: the window of offset (dy, dx) is the flat slice from dy W + dx, whose
    # first w columns of every row are pad[dy + y, dx + x] and the other 2 rx are ignored (1-D ufuncs, ~2x
    # faster than on column-shifted 2-D views); one spare row keeps the last slice inside the buffer
    wp = w + 2 * rx
    pad = np.zeros(lead + (h + 2 * ry + 1, wp), bool)
    pad[..., ry: ry + h, rx: rx + w] = mask
    pf = pad.reshape(lead + (-1,))
    out = np.empty(lead + (h * wp,), bool)
    out[...] = erode  # AND from all True, OR from all False
    op = np.logical_and if erode else np.logical_or
    for dy, dx in zip(*np.nonzero(structure)):
        s0 = int(dy) * wp + int(dx)
        op(out, pf[..., s0: s0 + h * wp], out=out)  # = op(out, pad[..., dy: dy + h, dx: dx + w])
    return np.ascontiguousarray(out.reshape(lead + (h, wp))[..., :w])


def _remove_small(mask: np.ndarray, min_area: int,
                  with_labels: bool = False) -> np.ndarray | tuple[np.ndarray, tuple[np.ndarray, int]]:
    """``mask`` without its connected components smaller than ``min_area`` pixels. ``with_labels``: also
    ``ndi.label`` of the result, exactly: the kept components renumbered 1..k in their order (scipy
    numbers components in the raster order of their first pixels, which removing others keeps)."""
    lab, n = ndi.label(mask)
    if n == 0:
        return (mask, (lab, 0)) if with_labels else mask
    areas = np.bincount(lab.ravel())
    keep = areas >= min_area
    keep[0] = False
    out = np.take(keep, lab)  # = keep[lab], 2x faster
    if not with_labels:
        return out
    newid = np.cumsum(keep, dtype=lab.dtype)
    nk = int(newid[-1])
    newid[~keep] = 0
    return out, (np.take(newid, lab), nk)


def h_maxima(f: np.ndarray, h: float, max_iter: int | None = None) -> np.ndarray:
    """h-maxima of ``f``: regional maxima that rise at least ``h`` above their surroundings.

    Same result as :func:`skimage.morphology.h_maxima` (reconstruction by dilation of ``f - h`` under
    ``f``). The reconstruction is exact and unique, so it is computed the fastest way
    (:func:`_reconstruct_dilation`: a coarse-to-fine lower bound, iterated 3x3 geodesic dilation while
    many pixels change, then only around the pixels that changed), 2-5x faster than iterating
    :func:`_dilate3x3` over the whole image until nothing changes, with the same values. With
    ``max_iter``, the plain iteration is stopped after at most that many dilations (checked every 4) as
    before. Returns a bool (Y, X) mask.
    """
    f = np.asarray(f, dtype=np.float32)
    if max_iter is None:
        return (f - _h_reconstruction(f, h)) >= np.float32(h)
    rec = _h_start(f, h)
    tmp = np.empty_like(rec)
    nxt = np.empty_like(rec)
    for i in range(max_iter):
        np.minimum(_dilate3x3(rec, tmp, nxt), f, out=nxt)
        if i % 4 == 3 and np.array_equal(nxt, rec):
            rec = nxt
            break
        rec, nxt = nxt, rec
    return (f - rec) >= np.float32(h)


def _h_start(f: np.ndarray, h: float) -> np.ndarray:
    """``f - h`` lowered by skimage's float rounding margin (``2 * resolution * |f|``): the marker that
    :func:`h_maxima` reconstructs under float32 ``f``."""
    return f - np.float32(h) - 2 * np.finfo(np.float32).resolution * np.abs(f)


def _h_reconstruction(f: np.ndarray, h: float) -> np.ndarray:
    """The reconstruction by dilation of :func:`_h_start` under float32 ``f`` that :func:`h_maxima`
    compares ``f`` with."""
    return _reconstruct_dilation(_h_start(f, h), f)


def h_maxima_markers(f: np.ndarray, h: float, mask: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Watershed markers from the h-maxima of ``f``: one label per h-dome, however many top pixels it has.

    :func:`h_maxima` (as :func:`skimage.morphology.h_maxima`) keeps the pixels of each dome that are
    ``h`` above the reconstruction ``R = R_f(f - h)``, i.e. the pixels at the dome's top value. When that
    value occurs at two places with a dip of less than ``h`` between them (two equal distances on the ridge
    of an elongated or diagonal nucleus, exact ties of float32 values are common there), labelling those
    pixels gives two markers for one dome, and the watershed cuts one nucleus in two. The h-maxima are
    defined as the regional maxima of ``R`` (Grimaud 1992; Soille, *Morphological Image Analysis*, 2003,
    §6.3.4: "h-maxima ... regional maxima of the h-maxima transform"), one connected plateau per dome: here
    each top pixel takes the label of its dome, the 8-connected component of ``f > R`` holding it (every
    path between two distinct h-domes passes a pixel where ``R = f``; within a dome ``f > R`` along any path
    that dips less than ``h``). The marker pixels are those of :func:`h_maxima` (restricted to ``mask``).

    Parameters
    ----------
    f : np.ndarray
        (Y, X) float image (converted to float32).
    h : float
        Minimal dome height, in ``f``'s units.
    mask : np.ndarray, optional
        (Y, X) bool: markers only here.

    Returns
    -------
    (np.ndarray, int)
        (Y, X) int32 markers 1..n (0 elsewhere; a marker may have several pixels and several pieces), n.
    """
    f = np.asarray(f, dtype=np.float32)
    rec = _h_reconstruction(f, h)
    top = (f - rec) >= np.float32(h)  # = h_maxima(f, h)
    if mask is not None:
        top &= mask
    if not top.any():
        return np.zeros(f.shape, np.int32), 0
    domes, _ = ndi.label(f > rec, structure=np.ones((3, 3), bool))
    at = np.flatnonzero(top)
    dome_at = domes.reshape(-1)[at]
    # numbered by each dome's first top pixel in raster order (as ndi.label numbers the top pixels'
    # components: the same numbers where every dome has one component)
    used, first = np.unique(dome_at, return_index=True)
    lut = np.zeros(int(domes.max()) + 1, np.int32)
    lut[used[np.argsort(first, kind="stable")]] = np.arange(1, used.size + 1, dtype=np.int32)
    out = np.zeros(f.size, np.int32)
    out[at] = lut[dome_at]
    return out.reshape(f.shape), int(used.size)


def _halve(a: np.ndarray, op: np.ufunc) -> np.ndarray:
    """``op`` (``np.minimum`` or ``np.maximum``) over the 2x2 blocks of ``a``; a last odd row or column
    forms blocks of its own. Returns a new ((Y + 1) // 2, (X + 1) // 2) array."""
    h, w = a.shape
    r = np.empty(((h + 1) // 2, w), a.dtype)
    op(a[0: h - 1: 2], a[1::2], out=r[: h // 2])
    if h % 2:
        r[-1] = a[-1]
    c = np.empty((r.shape[0], (w + 1) // 2), a.dtype)
    op(r[:, 0: w - 1: 2], r[:, 1::2], out=c[:, : w // 2])
    if w % 2:
        c[:, -1] = r[:, -1]
    return c


def _reconstruct_dilation(marker: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grey reconstruction by dilation of ``marker`` under ``mask`` with the 3x3 neighbourhood: exactly
    ``skimage.morphology.reconstruction(marker, mask, method="dilation", footprint=np.ones((3, 3)))``,
    i.e. the limit of ``rec = min(grey_dilation(rec, 3x3), mask)`` from ``rec = marker``.

    ``marker <= mask``, both float32 (Y, X), finite. The result ``R(p)`` is the largest ``min(marker(q),
    mask along a path q -> p)``; it is unique, and iterating from any start ``L`` with ``marker <= L <= R``
    reaches it (the iteration is monotone and never passes ``R``), however the updates are ordered:

    #. Lower bound: the same reconstruction on 2x2 blocks (block maxima of ``marker`` capped by block
       minima of ``mask``, under the block minima of ``mask``), recursively. A path between 8-adjacent
       blocks exists between any of their pixels (all pixels of a 2x2 block are mutual neighbours), with
       ``mask`` at least the blocks' minima along it, so each block's value is <= ``R`` of its pixels.
    #. Dense iterations while more than 1/256 of the pixels change, on buffers with a one-pixel frame
       (``-inf`` in the reconstruction, ``-inf`` in the mask, so ``min`` with the mask restores the frame):
       the 3x3 maximum is four ufuncs on the flattened buffers and the mask one more.
    #. Then only the neighbours of the pixels that changed are updated, until none changes.

    Returns a new float32 (Y, X) array.
    """
    marker = np.asarray(marker, dtype=np.float32)
    mask = np.asarray(mask, dtype=np.float32)
    h, w = marker.shape
    wf = w + 2
    rec = np.full((h + 2, wf), -np.inf, np.float32)
    inner = rec[1:-1, 1:-1]
    inner[...] = marker
    if h >= 32 and w >= 32 and h * w >= 16384:
        fm = _halve(mask, np.minimum)
        gm = _halve(marker, np.maximum)
        np.minimum(gm, fm, out=gm)
        low = np.repeat(_reconstruct_dilation(gm, fm).reshape(-1), 2).reshape(gm.shape[0], -1)[:, :w]
        np.maximum(inner, np.repeat(low, 2, axis=0)[:h], out=inner)
        del fm, gm, low
    framed_mask = np.full((h + 2, wf), -np.inf, np.float32)
    framed_mask[1:-1, 1:-1] = mask
    r, m = rec.reshape(-1), framed_mask.reshape(-1)
    tmp = np.full(r.size, -np.inf, np.float32)  # its first and last value are never written
    nxt = np.full(r.size, -np.inf, np.float32)  # its first and last rows are never written
    changed = np.empty(r.size, bool)
    while True:
        np.maximum(r[:-2], r[1:-1], out=tmp[1:-1])  # columns x - 1, x, x + 1 (frame columns: garbage)
        np.maximum(tmp[1:-1], r[2:], out=tmp[1:-1])
        np.maximum(tmp[: -2 * wf], tmp[wf:-wf], out=nxt[wf:-wf])  # rows y - 1, y, y + 1
        np.maximum(nxt[wf:-wf], tmp[2 * wf:], out=nxt[wf:-wf])
        np.minimum(nxt, m, out=nxt)  # under the mask; the frame back to -inf
        np.not_equal(nxt, r, out=changed)
        n = int(np.count_nonzero(changed))
        r, nxt = nxt, r
        if n == 0:
            return r.reshape(h + 2, wf)[1:-1, 1:-1].copy()
        if r.size >= 65536 and n * 256 < r.size:
            break
    # sparse: every pixel's 9 neighbours are flat offsets in the framed buffer
    del tmp, nxt
    offs = np.array([-wf - 1, -wf, -wf + 1, -1, 0, 1, wf - 1, wf, wf + 1], np.intp)
    act = np.flatnonzero(changed)
    stamp = np.empty(r.size, np.intp)  # duplicates: one write per index survives (read back where written)
    # candidates in the frame rows are dropped (their mask is -inf anyway), and the frame pixels just inside
    # them (left of the first row, right of the last): their neighbours would lie outside the buffer
    lo_c, hi_c = wf + 1, r.size - wf - 1
    while act.size:
        allc = (act[:, None] + offs).ravel()
        allc = allc[(allc >= lo_c) & (allc < hi_c)]
        order = np.arange(allc.size)
        stamp[allc] = order
        cand = allc[stamp[allc] == order]
        new = r[cand + offs[0]]
        for o in offs[1:]:
            np.maximum(new, r[cand + o], out=new)
        np.minimum(new, m[cand], out=new)
        up = new > r[cand]
        act = cand[up]
        r[act] = new[up]
    return r.reshape(h + 2, wf)[1:-1, 1:-1].copy()


def _dilate3x3(a: np.ndarray, tmp: np.ndarray, out: np.ndarray) -> np.ndarray:
    """3x3 grey dilation (maximum) of a 2-D array into ``out``; edges use the pixels inside only.

    Exactly ``ndi.grey_dilation(a, size=(3, 3))`` (its default ``mode="reflect"`` repeats the edge pixel,
    which is already in the window). ``tmp`` and ``out`` are buffers of ``a``'s shape and dtype, distinct
    from ``a`` and from each other. Returns ``out``.

    The row pass uses whole rows (contiguous blocks). The column pass runs on the flattened buffers (a
    numpy ufunc on 1-D contiguous data is ~4x faster than on 2-D column-shifted views), where the first
    and last pixel of each row also see the neighbouring row's end; those two columns are then redone.
    """
    np.maximum(a[:-1], a[1:], out=tmp[:-1])  # max of rows i, i + 1
    tmp[-1] = a[-1]
    np.maximum(tmp[1:], a[:-1], out=tmp[1:])  # ... and row i - 1 (elementwise in place: safe)
    if a.shape[1] < 2:
        out[...] = tmp
    elif tmp.flags.c_contiguous and out.flags.c_contiguous:
        tf, of = tmp.reshape(-1), out.reshape(-1)
        np.maximum(tf[:-1], tf[1:], out=of[:-1])  # columns j, j + 1 (wrong at the last column)
        np.maximum(of[1:], tf[:-1], out=of[1:])  # ... and j - 1 (wrong at the first column)
        np.maximum(tmp[:, 0], tmp[:, 1], out=out[:, 0])
        np.maximum(tmp[:, -1], tmp[:, -2], out=out[:, -1])
    else:
        np.maximum(tmp[:, :-1], tmp[:, 1:], out=out[:, :-1])
        out[:, -1] = tmp[:, -1]
        np.maximum(out[:, 1:], tmp[:, :-1], out=out[:, 1:])
    return out


def _extreme_axis0(a: np.ndarray, w: int, lo: int, op: np.ufunc) -> np.ndarray:
    """``out[i] = op`` (``np.maximum`` / ``np.minimum``) over ``a[max(0, i - lo): i - lo + w]`` along axis
    0, windows clipped to the array (``0 <= lo < w``). The window extreme of every start position is
    built by doubling (extremes over 2, 4, 8, ... rows: whole-row ufuncs on contiguous blocks) and two
    overlapping power-of-2 windows; the first ``lo`` rows take running extremes. Returns a new array."""
    n = a.shape[0]
    bufs = [np.empty_like(a), np.empty_like(a)]
    k = 0
    cur, p = a, 1
    while 2 * p <= w:
        nxt = bufs[k]
        k ^= 1
        m = max(n - p, 0)
        op(cur[:m], cur[p:], out=nxt[:m])  # over [j, j + 2p), clipped at the end
        nxt[m:] = cur[m:]
        cur, p = nxt, 2 * p
    if w > p:  # [j, j + w) = [j, j + p) and [j + w - p, j + w)
        ext = bufs[k]
        m = max(n - (w - p), 0)
        op(cur[:m], cur[w - p:], out=ext[:m])
        ext[m:] = cur[m:]
    else:
        ext = cur
    out = np.empty_like(a)
    if lo < n:
        out[lo:] = ext[: n - lo]
    if lo:
        head = min(lo, n)
        acc = op.accumulate(a[: min(n, w - 1)], axis=0)
        out[:head] = acc[np.minimum(np.arange(head) - lo + w, acc.shape[0]) - 1]
    return out


#: Largest image (pixels) for which :func:`_window_extreme` uses its own separable passes (beyond, scipy's).
_WINDOW_EXTREME_MAX_PX = 300_000


def _window_extreme(a: np.ndarray, size: int, op: np.ufunc, lo: int | None = None) -> np.ndarray:
    """Maximum (``op = np.maximum``) or minimum filter of a 2-D array over ``size`` x ``size`` windows
    starting ``lo`` pixels before each pixel on both axes (default ``size // 2``), exactly as scipy's
    default ``mode="reflect"`` (a reflected border only repeats pixels already in the clipped window):

    * ``ndi.maximum_filter(a, size)`` / ``ndi.grey_erosion(a, size=(size, size))``: ``lo = size // 2``;
    * ``ndi.grey_dilation(a, size=(size, size))``: ``lo = size // 2``, minus 1 for an even ``size`` (scipy
      mirrors the structuring element).

    Separable: :func:`_extreme_axis0` on the rows, then on the transposed result: 2-4x faster than scipy
    for the 11-50 px windows of steps 3, 4 and 7b on working images up to ~550²; larger images (more than
    ``_WINDOW_EXTREME_MAX_PX`` pixels) go to scipy's filter itself (``origin = lo - size // 2``), which is
    faster there. ``a``: finite values.
    """
    lo = size // 2 if lo is None else lo
    a = np.asarray(a)
    if a.size > _WINDOW_EXTREME_MAX_PX:  # scipy's line-by-line filter is faster once the image leaves the cache
        filt = ndi.maximum_filter if op is np.maximum else ndi.minimum_filter
        return filt(a, size=size, origin=lo - size // 2)
    t = _extreme_axis0(a, size, lo, op)
    t = _extreme_axis0(np.ascontiguousarray(t.T), size, lo, op)
    return np.ascontiguousarray(t.T)


def _max_box(a: np.ndarray, r: int) -> np.ndarray:
    """``ndi.grey_dilation(a, size=(2 r + 1, 2 r + 1))``, exactly: ``r`` 3x3 dilations (:func:`_dilate3x3`;
    scipy's default reflected border only repeats pixels already in the window, so each box is clipped to
    the image, and a box clipped to the image is the clipped 3x3 box applied ``r`` times). ~2-3x faster
    than scipy for the small radii of the focus measure; larger radii use scipy. Returns a new array."""
    if r > 6:
        return ndi.grey_dilation(a, size=(2 * r + 1, 2 * r + 1))
    if r <= 0:
        return a.copy()
    src, tmp, out = a, np.empty_like(a), np.empty_like(a)
    for i in range(r):
        _dilate3x3(src, tmp, out)
        src, out = out, (np.empty_like(a) if i == 0 else src)
    return src


def _watershed_multi(image: np.ndarray, markers: np.ndarray, mask: np.ndarray, watershed_line: bool = False,
                     comp: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """``skimage.segmentation.watershed(image, markers, mask=mask, watershed_line=watershed_line)``, exactly,
    flooding only the connected parts of ``mask`` that hold two or more marker labels.

    Components of ``mask`` (4-connected, the watershed's neighbourhood) are flooded independently: in
    skimage's priority queue (ordered by value, then by the age of the push) the pops within one component
    come in the same order whatever else is queued, up to ties: all markers are pushed with age 0 and
    every later push has its own age, so only markers of equal value can come off in an order that depends
    on the rest of the queue. Two such markers of the same label do not change the result (the elements
    they push carry the same label and keep their order against every other label's), two of different
    labels can. So a component with one marker label is that label throughout (no watershed line either:
    a line needs two labels), one without markers stays 0, and the components with two or more labels are
    flooded in one call on their bounding box, unless two markers of different labels in one of them share
    a value: then the plain call is made. ``comp``: ``ndi.label(mask)`` when the caller has it.
    ``image``, ``markers`` and ``mask`` (bool) share one 2-D shape; markers >= 0.
    """
    watershed = _lazy("skimage.segmentation", "watershed")

    markers = np.where(mask, markers, 0)  # as skimage: markers outside the mask are dropped
    lab, nc = ndi.label(mask) if comp is None else comp
    sel = np.flatnonzero(markers)
    if nc == 0 or sel.size == 0:
        return markers
    cm = lab.reshape(-1)[sel].astype(np.int64)
    lm = markers.reshape(-1)[sel].astype(np.int64)
    top = int(lm.max()) + 1
    key = np.unique(cm * top + lm)  # (component, label) pairs
    kc = key // top
    n_lab = np.bincount(kc, minlength=nc + 1)
    one = np.zeros(nc + 1, markers.dtype)
    single = n_lab[kc] == 1
    one[kc[single]] = (key % top)[single]
    multi = n_lab >= 2
    multi[0] = False
    if not multi.any():
        return np.take(one, lab)  # = one[lab]
    in_multi = multi[cm]
    v = image.reshape(-1)[sel[in_multi]].astype(np.float64)
    c, lv = cm[in_multi], lm[in_multi]
    o = np.lexsort((lv, v, c))  # by component, value, label: a tie of two labels is two neighbours here
    c, v, lv = c[o], v[o], lv[o]
    if np.any((c[1:] == c[:-1]) & (v[1:] == v[:-1]) & (lv[1:] != lv[:-1])):
        return watershed(image, markers, mask=mask, watershed_line=watershed_line)
    mm = np.take(multi, lab)
    rows = np.flatnonzero(mm.any(axis=1))
    cols = np.flatnonzero(mm.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    out = np.take(one, lab)
    sub_m = mm[box]
    sub = watershed(image[box], np.where(sub_m, markers[box], 0), mask=sub_m, watershed_line=watershed_line)
    out[box] = np.where(sub_m, sub, out[box])
    return out


def _split(mask: np.ndarray, flt: np.ndarray, d: float, p: dict, dt: np.ndarray | None = None,
           comp: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """Step 5: watershed of the mask from h-maxima markers (see module docstring). ``dt``: the float32
    distance transform of ``mask``, ``comp``: ``ndi.label(mask)``, when the caller has them (computed here
    otherwise)."""
    if dt is None:
        dt = ndi.distance_transform_edt(mask).astype(np.float32)
    dts = ndi.gaussian_filter(dt, max(0.7, d / 24.0))
    # marker function: distance to the outline (shape) plus, with weight ``intensity_weight``, the
    # smoothed DAPI relative to its local maximum (an intensity dip between touching nuclei)
    w = float(p["intensity_weight"])
    if w > 0:
        smi = ndi.gaussian_filter(flt, max(0.7, p["intensity_sigma_diameters"] * d))
        loc = ndi.maximum_filter(smi, size=max(3, int(round(1.5 * d)) | 1))
        rel = np.clip(smi / np.maximum(loc, 1e-6), 0, 1)
        dts = np.minimum(dts, 0.5 * d) + w * 0.5 * d * rel
    h = max(0.5, p["h_diameters"] * d)
    if p["markers"] == "log":
        # blob centres: maxima of the scale-normalised LoG at the nucleus scale (sigma = d / (2 sqrt 2))
        sig = p["log_sigma_diameters"] * d
        blob = -ndi.gaussian_laplace(flt, sig) * sig * sig
        blob = np.where(mask, blob, blob.min())
        hb = p["log_h"] * float(np.percentile(blob[mask], 95)) if mask.any() else 0.0
        markers, _ = h_maxima_markers(blob, max(hb, 1e-6), mask)
        dts = blob
    elif dts.size > p["markers_half_resolution_above_px"]:
        # the smoothed distance transform varies slowly: its h-maxima found at half resolution are the
        # same markers at a quarter of the cost (two domes' top pixels are >= 2 half-grid pixels apart, so
        # the 3x3 dilation never joins them)
        half, _ = h_maxima_markers(dts[::2, ::2], h)
        markers = np.zeros(dts.shape, np.int32)
        markers[::2, ::2] = half
        markers = np.where(mask, _max_box(markers, 1), 0)  # = ndi.grey_dilation(markers, size=(3, 3))
    else:
        markers, _ = h_maxima_markers(dts, h, mask)
    # every component gets at least one marker
    comp, nc = ndi.label(mask) if comp is None else comp
    have = np.zeros(nc + 1, bool)
    have[np.unique(comp[markers > 0])] = True
    missing = ~np.take(have, comp) & mask  # np.take = have[comp], 2x faster
    if missing.any():
        extra, _ = ndi.label(missing)
        extra[extra > 0] += markers.max()
        markers = np.where(missing, extra, markers)
    labels = _watershed_multi(-dts, markers, mask, comp=(comp, nc))  # = watershed(-dts, markers, mask=mask)
    return labels.astype(np.int32)


def _pair_views(a: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """The 4-neighbour pixel pairs of a 2-D array as 1-D views: ``[(first, second, drop), ...]`` for the
    vertical pairs (``a[:-1, :]``, ``a[1:, :]`` flattened) and the horizontal ones (the flattened array
    without its last / first pixel: ``drop`` marks the pairs that join a row's end to the next row's
    start, to be left out). In raster order, as the 2-D views (``a[:, :-1]``, ``a[:, 1:]``) give them, and
    ~2x faster to compare than column-shifted 2-D views."""
    f = np.ascontiguousarray(a).reshape(-1)
    w = a.shape[1]
    drop = np.zeros(max(f.size - 1, 0), bool)
    drop[w - 1:: w] = True
    return [(f[: f.size - w], f[w:], None), (f[:-1], f[1:], drop)]


def _pair_select(a: np.ndarray, b: np.ndarray, drop: np.ndarray | None) -> np.ndarray:
    """Pairs of different non-zero labels (bool, over the pairs of :func:`_pair_views`)."""
    sel = (a != b) & (a > 0) & (b > 0)
    if drop is not None:
        sel &= ~drop
    return sel


def _union_find(parent: np.ndarray) -> Callable[[int], int]:
    """``find`` of a union-find forest stored in ``parent`` (path halving); union = ``parent[ra] = rb``."""

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    return find


def _merge_fragments(labels: np.ndarray, flt: np.ndarray, d: float, p: dict,
                     dt: np.ndarray | None = None) -> np.ndarray:
    """Merge adjacent fragments that belong to one nucleus (see module docstring, step 6). ``dt``: the
    float32 distance transform of ``labels > 0`` when the caller has it (step 5's: its labels cover its
    mask exactly), computed here otherwise."""
    n = int(labels.max())
    if n < 2:
        return labels
    # boundary pixels: 4-neighbour pairs with different non-zero labels
    pairs = []
    vals = []
    for a, b, drop in _pair_views(labels):  # = (labels[:-1, :], labels[1:, :]), (labels[:, :-1], labels[:, 1:])
        sel = _pair_select(a, b, drop)
        pairs.append(np.stack([np.minimum(a[sel], b[sel]), np.maximum(a[sel], b[sel])], 1))
        vals.append(sel)
    pr = np.concatenate(pairs)
    if pr.size == 0:
        return labels
    if dt is None:
        dt = ndi.distance_transform_edt(labels > 0).astype(np.float32)
    # neck width: DT on the boundary between a and b (computed on the union mask); the same pairs, in the
    # same order, of the flattened dt and flt
    dt_v = np.concatenate([np.maximum(a, b)[sel] for (a, b, _), sel in zip(_pair_views(dt), vals)])
    in_v = np.concatenate([np.minimum(a, b)[sel] for (a, b, _), sel in zip(_pair_views(flt), vals)])
    key = pr[:, 0].astype(np.int64) * (n + 1) + pr[:, 1]
    uniq, inv = np.unique(key, return_inverse=True)
    neck = np.zeros(uniq.size, np.float32)
    np.maximum.at(neck, inv, dt_v)
    bnd_int = np.bincount(inv, weights=in_v) / np.bincount(inv)
    maxdt = np.zeros(n + 1, np.float32)
    maxdt[:] = _label_max(dt, labels, n, labelled_only=True)  # (entry 0 is 0 either way: dt = 0 there)
    area = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
    mean_int = np.zeros(n + 1)
    mean_int[:] = _label_mean(flt, labels, n, labelled_only=True)  # label 0 unused
    typical_area = math.pi * d * d / 4.0
    la, lb = uniq // (n + 1), uniq % (n + 1)
    # union-find
    parent = np.arange(n + 1)
    find = _union_find(parent)

    merged_area = area.copy()
    order = np.argsort(-neck / np.maximum(np.minimum(maxdt[la], maxdt[lb]), 1e-6))
    for j in order:
        a, b = int(la[j]), int(lb[j])
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        r_small = max(min(maxdt[a], maxdt[b]), 1e-6)
        wide_neck = neck[j] / r_small >= p["merge_neck_ratio"]
        wide_neck &= neck[j] / max(maxdt[a], maxdt[b], 1e-6) >= p["merge_neck_ratio_larger"]
        tot = merged_area[ra] + merged_area[rb]
        not_darker = bnd_int[j] >= p["merge_boundary_intensity_ratio"] * min(mean_int[a], mean_int[b])
        hi = max(mean_int[a], mean_int[b], 1e-6)
        same_dna = abs(mean_int[a] - mean_int[b]) / hi <= p["merge_max_intensity_difference"]
        lobe_sized = min(area[a], area[b]) <= p["merge_lobe_max_area"] * typical_area
        one_nucleus = tot <= p["merge_max_total_area"] * typical_area
        merge = wide_neck and not_darker and same_dna and lobe_sized and one_nucleus
        if merge:
            parent[rb] = ra
            merged_area[ra] = tot
    roots = np.array([find(i) for i in range(n + 1)])
    _, relabel = np.unique(roots, return_inverse=True)
    return _join_lobes(np.take(relabel.astype(np.int32), labels), flt, d, p)  # = relabel[labels] as int32


def _join_lobes(labels: np.ndarray, flt: np.ndarray, d: float, p: dict) -> np.ndarray:
    """Step 6b: join lobes that the foreground mask cut apart (a gap of dim chromatin between them).

    A textured, dim lobulated nucleus next to a brighter one can fall apart into separate mask pieces:
    its dim chromatin bridge fails the local-contrast test of step 4. Every object grows into the
    background pixels within ``bridge_max_gap_diameters`` x d of it that are at least
    ``bridge_intensity_ratio`` x its mean flattened intensity (nearest object's mean; a gap of background
    between two separate nuclei is far darker). Two objects whose growths touch become one nucleus when
    the smaller is lobe-sized (<= ``merge_lobe_max_area`` typical areas), together they are at most
    ``merge_max_total_area`` typical areas, and neither touches the image edge (a nucleus cut by the
    edge looks lobe-sized). Joined groups get the grown pixels within the gap distance of their
    contact line, so each nucleus is one connected piece. Smallest pairs first (union-find).

    Parameters
    ----------
    labels : np.ndarray
        (Y, X) int32 labels at the working scale, 0 = background.
    flt : np.ndarray
        (Y, X) float32 flattened, smoothed DAPI, same shape.
    d : float
        Typical nucleus diameter at the working scale, px.
    p : dict
        Classical parameters (``bridge_max_gap_diameters``, ``bridge_intensity_ratio``,
        ``merge_lobe_max_area``, ``merge_max_total_area``).

    Returns
    -------
    np.ndarray
        (Y, X) int32 labels, renumbered 1..N when objects were joined.
    """
    watershed = _lazy("skimage.segmentation", "watershed")

    ratio = float(p["bridge_intensity_ratio"])
    gap = float(p["bridge_max_gap_diameters"]) * d
    n = int(labels.max())
    if n < 2 or ratio <= 0 or gap <= 0:
        return labels
    typical_area = math.pi * d * d / 4.0
    area = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
    lobe = area <= p["merge_lobe_max_area"] * typical_area
    lobe[0] = False
    edge = np.zeros(n + 1, bool)
    for e in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        edge[e] = True
    if not (lobe & ~edge).any():
        return labels
    # label 0 left out: every gap pixel is reached from an object (a straight staircase towards its nearest
    # object pixel stays within the gap), so label 0's mean is never compared
    mean = np.nan_to_num(_label_mean(flt, labels, n, labelled_only=True))
    fg = labels > 0
    # work only around lobe-sized objects (a join needs one): the box of their reach
    reach = int(math.ceil(2 * gap)) + 2
    near = np.take(lobe & ~edge, labels)  # = np.isin(labels, np.flatnonzero(lobe & ~edge))
    ys, xs = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
    y0, y1 = max(0, ys[0] - reach), min(labels.shape[0], ys[-1] + reach + 1)
    x0, x1 = max(0, xs[0] - reach), min(labels.shape[1], xs[-1] + reach + 1)
    del near
    full, labels, flt, fg = labels, labels[y0:y1, x0:x1], flt[y0:y1, x0:x1], fg[y0:y1, x0:x1]
    # a background pixel within reach is a bridge candidate when it is at least ``ratio`` x the mean of
    # its nearest object (Euclidean; equally near to two objects: the brighter one's, the stricter test)
    dist, need = _nearest_within(labels, gap, np.float32(ratio) * mean.astype(np.float32))
    near_gap = ~fg & (dist <= gap)
    cand = near_gap & (flt >= need)
    del need
    grown = watershed(dist, labels, mask=fg | cand).astype(np.int32)
    del dist
    keys = []
    for a, b, drop in _pair_views(grown):  # = (grown[:-1, :], grown[1:, :]), (grown[:, :-1], grown[:, 1:])
        sel = _pair_select(a, b, drop)
        keys.append(np.minimum(a[sel], b[sel]).astype(np.int64) * (n + 1) + np.maximum(a[sel], b[sel]))
    keys = np.unique(np.concatenate(keys))
    la, lb = keys // (n + 1), keys % (n + 1)
    ok = (lobe[la] | lobe[lb]) & ~edge[la] & ~edge[lb]
    la, lb = la[ok], lb[ok]
    if la.size == 0:
        return full
    parent = np.arange(n + 1)
    find = _union_find(parent)

    tot = area.copy()
    for j in np.argsort(np.minimum(area[la], area[lb]), kind="stable"):
        ra, rb = find(int(la[j])), find(int(lb[j]))
        if ra == rb or tot[ra] + tot[rb] > p["merge_max_total_area"] * typical_area:
            continue
        parent[rb] = ra
        tot[ra] += tot[rb]
    roots = np.array([find(i) for i in range(n + 1)])
    if np.array_equal(roots, np.arange(n + 1)):
        return full
    # bridge pixels: growth of a joined group within the gap distance of a contact between two members
    g_root = np.take(roots, grown)
    contact = np.zeros(labels.shape, bool)
    for sa, sb in (((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                   ((slice(None), slice(None, -1)), (slice(None), slice(1, None)))):
        c = (grown[sa] != grown[sb]) & (grown[sa] > 0) & (grown[sb] > 0) & (g_root[sa] == g_root[sb])
        contact[sa] |= c
        contact[sb] |= c
    if contact.any():
        contact = _dilate_sparse(contact, _disk(max(1, int(math.floor(gap)))))
    newid = np.unique(roots, return_inverse=True)[1].astype(np.int32)  # label -> 1..N (0 stays 0)
    out = np.take(newid, full)
    out[y0:y1, x0:x1] = np.where(cand & contact & (grown > 0), newid[g_root], out[y0:y1, x0:x1])
    return out


def _nearest_within(labels: np.ndarray, reach: float, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the nearest labelled pixel, and the largest ``value`` of the labels at that distance,
    exact within ``reach``.

    Parameters
    ----------
    labels : np.ndarray
        (Y, X) int labels, 0 = background; at least one pixel labelled.
    reach : float
        Distance in px within which both outputs are exact.
    value : np.ndarray
        (N + 1,) float32, one value per label (``value[0]`` unused).

    Returns
    -------
    dist : np.ndarray
        (Y, X) float32, equal to ``ndi.distance_transform_edt(labels == 0).astype(np.float32)`` wherever
        that is <= ``reach``, and > ``reach`` elsewhere.
    nearest_value : np.ndarray
        (Y, X) float32 ``value`` of the label of the nearest labelled pixel wherever ``dist <= reach``; of
        several equally near pixels of different labels, the largest (``value[labels]`` on labelled pixels).

    For a short reach (step 6b: 0.15 d = 3 px) the squared distance is found by the separable exact method
    truncated to offsets of at most ``floor(reach) + 1`` px (any pixel within ``reach`` has its nearest
    labelled pixel inside that window, and sqrt of the same whole number is the same float), carrying the
    value along: a row pass keeps, per pixel, the smallest squared distance within its row and the largest
    value at it; a column pass the same over the rows. Every nearest pixel is nearest within its own row,
    so the largest value over all of them survives both passes. ~3x cheaper than assigning the gap by a
    watershed flood of the distance (the step 6b of earlier versions, which broke ties by the flood's
    order). Longer reaches use scipy's feature transform (one nearest pixel, no tie rule).
    """
    labels = np.asarray(labels)
    fg = labels > 0
    val = np.asarray(value, np.float32)
    r = int(math.floor(reach)) + 1
    if r > 8:
        dist, (iy, ix) = ndi.distance_transform_edt(~fg, return_indices=True)
        return dist.astype(np.float32), np.take(val, labels[iy, ix])
    far = np.int16(4 * r * r + 1)  # > any squared distance inside the window (<= 257: int16 holds the sums)
    h, w = fg.shape
    # the row pass on flat rows framed by r columns of background (a shift by up to r along the flat buffer
    # reads the frame, never the next row): 1-D ufuncs, ~3x faster than on column-shifted 2-D views
    fgf = np.zeros((h, w + r), bool)
    fgf[:, :w] = fg
    vframe = np.full((h, w + r), -np.inf, np.float32)
    vframe[:, :w] = np.take(val, labels)
    row = np.where(fgf, np.int16(0), far)
    vrow = vframe.copy()
    f, vf, rf, vrf = fgf.ravel(), vframe.ravel(), row.ravel(), vrow.ravel()
    for dx in range(1, min(r, w - 1) + 1):
        k = np.int16(dx * dx)
        for dst, src in ((slice(dx, None), slice(None, -dx)), (slice(None, -dx), slice(dx, None))):
            # an object pixel dx away: squared distance k
            better = f[src] & (rf[dst] > k)
            tie = f[src] & (rf[dst] == k) & (vf[src] > vrf[dst])
            np.copyto(rf[dst], k, where=better)
            np.copyto(vrf[dst], vf[src], where=better | tie)
    del fgf, vframe, f, vf
    d2, near = row.copy(), vrow.copy()
    for dy in range(1, min(r, h - 1) + 1):
        k = np.int16(dy * dy)
        for dst, src in ((slice(dy, None), slice(None, -dy)), (slice(None, -dy), slice(dy, None))):
            c = row[src] + k
            better = c < d2[dst]
            better |= (c == d2[dst]) & (vrow[src] > near[dst])
            np.copyto(d2[dst], c, where=better)
            np.copyto(near[dst], vrow[src], where=better)
            del c, better
    # float32 sqrt of the whole number is the float64 one rounded (sqrt is correctly rounded both ways and
    # 53 >= 2 x 24 + 2, so the double rounding is exact)
    return np.sqrt(d2[:, :w].astype(np.float32)), np.ascontiguousarray(near[:, :w])


def _edt_at(inside: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``ndi.distance_transform_edt(inside)[ys, xs]``, exactly, for a few pixels: the distance to the
    nearest ``False`` pixel. That pixel is always 4-adjacent to a ``True`` one (a step from it towards
    the query pixel that stayed outside would be nearer), so only those are searched: sqrt of the same
    smallest whole squared distance, as scipy's float64. ``inside``: 2-D bool with a ``False`` pixel."""
    if ys.size == 0:
        return np.zeros(0)
    out = ~inside
    edge = np.zeros(inside.shape, bool)  # outside pixels with an inside 4-neighbour
    edge[1:] |= inside[:-1]
    edge[:-1] |= inside[1:]
    edge[:, 1:] |= inside[:, :-1]
    edge[:, :-1] |= inside[:, 1:]
    by, bx = _nonzero_2d(edge & out)
    if by.size == 0:  # nothing inside: every pixel is outside
        return np.zeros(ys.size)
    best = np.empty(ys.size, np.int64)
    step = max(1, 200_000 // max(1, by.size))  # query pixels per block: bounded temporaries
    for a in range(0, ys.size, step):
        dy = ys[a: a + step, None].astype(np.int64) - by
        dx = xs[a: a + step, None].astype(np.int64) - bx
        best[a: a + step] = (dy * dy + dx * dx).min(axis=1)
    d = np.sqrt(best.astype(np.float64))
    d[inside[ys, xs] == 0] = 0.0  # outside pixels are at distance 0
    return d


def _dilate_sparse(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """``ndi.binary_dilation(mask, structure)`` for a symmetric ``structure`` (odd sides), exactly, done in
    the box of each connected piece of ``mask`` widened by the structure's half size (the few contact
    lines of step 6b: a full-image dilation with a disk costs ~4 ms on the working image)."""
    ry, rx = structure.shape[0] // 2, structure.shape[1] // 2
    pieces, k = ndi.label(mask, structure=np.ones((3, 3), bool))
    out = np.zeros(mask.shape, bool)
    for sl in ndi.find_objects(pieces):
        box = (slice(max(0, sl[0].start - ry), sl[0].stop + ry), slice(max(0, sl[1].start - rx), sl[1].stop + rx))
        out[box] |= ndi.binary_dilation(mask[box], structure=structure)
    return out


def _solidity(mask: np.ndarray) -> float:
    """Area / convex-hull area of a bool mask (one object); 1.0 for tiny or degenerate objects."""
    a = int(mask.sum())
    if a < 5:
        return 1.0
    try:
        hull = _hull_pixel_count(mask)
    except Exception:  # degenerate (collinear) outlines
        return 1.0
    return a / max(hull, a)


def _solidities(masks: list[np.ndarray]) -> np.ndarray:
    """``[_solidity(m) for m in masks]``, exactly (float64 array): the hulls of all masks of at least 5
    pixels are counted in one batch (:func:`_hull_pixel_counts`: each mask's count is independent of the
    others), ~4x cheaper than one call per mask for the small crops of steps 7 and 7d."""
    out = np.ones(len(masks))
    area = np.array([int(np.count_nonzero(m)) for m in masks], np.int64)
    idx = np.flatnonzero(area >= 5)
    if idx.size:
        try:
            hull = _hull_pixel_counts([masks[k] for k in idx])
        except Exception:  # as _solidity: a mask it cannot measure is 1.0 (each measured alone)
            return np.array([_solidity(m) for m in masks])
        out[idx] = area[idx] / np.maximum(hull, area[idx])
    return out


def _hull_pixel_count(mask: np.ndarray) -> int:
    """Number of pixels of ``skimage.morphology.convex_hull_image(mask)`` (same definition, faster).

    ``mask``: (Y, X) bool, not empty. See :func:`_hull_pixel_counts`.
    """
    return int(_hull_pixel_counts([mask])[0])


def _hull_pixel_counts(masks: list[np.ndarray]) -> np.ndarray:
    """Pixel counts of the convex hull images of bool masks, as ``skimage.morphology.convex_hull_image``.

    skimage's hull is that of the pixel-edge midpoints of the object's pixels; a pixel counts when its
    centre is inside or on it. Only the first and last pixel of a row can be on the hull, so in doubled
    coordinates (Y = 2y, X = 2x) the hull's left side is the lower convex envelope of the leftmost
    midpoints X_left(Y) (Y = 2y - 1, 2y, 2y + 1 of each row) and its right side the upper envelope of the
    rightmost ones (:func:`_lower_envelope`, all masks at once, no Qhull). Each row's pixel centres are
    then counted between the two envelopes with exact integer divisions. ~4x faster than skimage per
    object in a batch. ``masks``: (Y, X) bool arrays, none empty. Returns (len(masks),) int64.
    """
    pr, _, lb, ub = _hull_row_bounds(masks)
    return np.bincount(pr, weights=np.maximum(ub - lb + 1, 0), minlength=len(masks)).astype(np.int64)


def _hull_image(mask: np.ndarray, bounds: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """``skimage.morphology.convex_hull_image(mask)``: the pixels of each row between the hull's first and
    last pixel centre (:func:`_hull_row_bounds`, the pixels :func:`_hull_pixel_counts` counts; a convex
    set meets a row in one run). ``mask``: (Y, X) bool, not empty. ``bounds``: this mask's
    ``(y_row, lb, ub)`` from a batch (:func:`_bounds_of`), computed here when not given. Returns (Y, X)
    bool."""
    if bounds is None:
        _, y_row, lb, ub = _hull_row_bounds([mask])
    else:
        y_row, lb, ub = bounds
    out = np.zeros(mask.shape, bool)
    cols = np.arange(mask.shape[1])
    out[y_row // 2] = (cols >= lb[:, None]) & (cols <= ub[:, None])  # rows without a run (ub < lb): none
    return out


def _bounds_of(bounds: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
               k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask ``k``'s ``(y_row, lb, ub)`` out of :func:`_hull_row_bounds` of a batch (rows grouped by mask)."""
    pr, y_row, lb, ub = bounds
    a, b = np.searchsorted(pr, [k, k + 1])
    return y_row[a:b], lb[a:b], ub[a:b]


def _hull_row_bounds(masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the convex hulls of bool masks (see :func:`_hull_pixel_counts`): ``(pr, y_row, lb, ub)``,
    one entry per row from each mask's first to its last: mask index, doubled row coordinate (2y), first
    and last pixel column inside the hull (``ub < lb``: none)."""
    rows_l, xl_l, xr_l = [], [], []
    for m in masks:
        rows = np.flatnonzero(m.any(axis=1))
        mk = m[rows]
        rows_l.append(rows)
        xl_l.append(mk.argmax(axis=1))
        xr_l.append(m.shape[1] - 1 - mk[:, ::-1].argmax(axis=1))
    nk = np.array([r.size for r in rows_l], np.int64)
    return _hull_rows(nk, np.concatenate(rows_l), np.concatenate(xl_l), np.concatenate(xr_l))


def _hull_rows_of_labels(lab: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_hull_row_bounds` of the masks ``lab == i`` for the labels ``ids`` (ascending, all present
    in ``lab``), without cutting out a mask per label: the first and last column of every (label, row)
    come from two ``ufunc.at`` over the labelled pixels, in image coordinates (the hull of a mask moved
    by whole pixels is the hull moved by them: the same row bounds, moved). ``lab``: (Y, X) int labels."""
    return _hull_rows(*_label_row_extents(lab, ids))


def _label_row_extents(lab: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(nk, rows, first, last)``: for the labels ``ids`` (ascending, all present in ``lab``), label after
    label, each occupied row (ascending) with its first and last column, ``nk`` rows per label; from two
    ``ufunc.at`` over the labelled pixels. ``lab``: (Y, X) int labels."""
    h, w = lab.shape
    n = int(lab.max()) + 1
    flat = lab.reshape(-1)
    # runs of one label along each row: a label's first / last column in a row is the start of its
    # first run / the end of its last run (far fewer runs than pixels)
    brk = np.empty(flat.size + 1, bool)
    brk[0] = brk[-1] = True
    np.not_equal(flat[1:], flat[:-1], out=brk[1:-1])
    brk[w: flat.size: w] = True  # a new row starts a new run
    inside = flat != 0
    starts = np.flatnonzero(brk[:-1] & inside)
    ends = np.flatnonzero(brk[1:] & inside)  # the last pixel of each run, in the same order
    y = starts // w
    key = flat[starts].astype(np.int64) * h + y
    first = np.full(n * h, w, np.int64)
    last = np.full(n * h, -1, np.int64)
    np.minimum.at(first, key, starts - y * w)
    np.maximum.at(last, key, ends - y * w)
    keys = np.flatnonzero(last >= 0)  # ascending: by label, then row
    kl = keys // h
    sel = np.isin(kl, ids)
    keys, kl = keys[sel], kl[sel]
    nk = np.bincount(np.searchsorted(ids, kl), minlength=len(ids)).astype(np.int64)
    return nk, keys - kl * h, first[keys], last[keys]


def _hull_rows(nk: np.ndarray, rows: np.ndarray, xl: np.ndarray,
               xr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_hull_row_bounds` from each mask's occupied rows (ascending) and their first and last
    column, concatenated mask after mask (``nk``: number of rows of each mask, none 0)."""
    n_p = nk.size
    pid = np.repeat(np.arange(n_p, dtype=np.int64), nk)
    rows = rows.astype(np.int64)
    first_row = rows[np.cumsum(nk) - nk]
    n_rows = rows[np.cumsum(nk) - 1] - first_row + 1
    span = np.int64(4) * (int(rows.max()) + 4)  # key = mask * span + Y keeps masks apart and Y sorted
    # every row from a mask's first to its last (empty rows between parts included)
    pr = np.repeat(np.arange(n_p, dtype=np.int64), n_rows)
    y_row = (np.arange(pr.size) - (np.cumsum(n_rows) - n_rows)[pr] + first_row[pr]) * 2
    bounds = []
    yy0 = np.stack([2 * rows - 1, 2 * rows, 2 * rows + 1], axis=1).ravel()
    key0 = np.repeat(pid, 3) * span + yy0  # ascending; a key repeats only as Y = 2y + 1 of rows y, y + 1
    dup = np.flatnonzero(key0[1:] == key0[:-1])
    if dup.size:
        keep = np.ones(key0.size, bool)
        keep[dup + 1] = False
        key0, yy0 = key0[keep], yy0[keep]
    for sgn, xe in ((1, xl), (-1, xr)):  # left side, then the right side mirrored (X -> -X)
        xe = np.asarray(xe).astype(np.int64) * 2
        xx = sgn * np.stack([xe, xe - sgn, xe], axis=1).ravel()
        if dup.size:
            xx[dup] = np.minimum(xx[dup], xx[dup + 1])  # the smaller X of the two, the second dropped
            xx = xx[keep]
        key, yy = key0, yy0
        v = _lower_envelope(key, yy, xx)
        key, yy, xx = key[v], yy[v], xx[v]
        a = np.searchsorted(key, pr * span + y_row, side="right") - 1  # envelope edge a -> a + 1 spans the row
        dy = yy[a + 1] - yy[a]
        num = xx[a] * dy + (xx[a + 1] - xx[a]) * (y_row - yy[a])  # = sgn * X(row) * dy, dy > 0
        bounds.append(-((-num) // (2 * dy)))  # ceil(sgn * X / 2)
    lb, ub = bounds[0], -bounds[1]  # first and last pixel centre inside: ceil(X_left/2), floor(X_right/2)
    return pr, y_row, lb, ub


def _lower_envelope(key: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Indices of the vertices of the lower convex envelope ``x(y)`` of each group of points.

    ``key`` = group * span + ``y``, sorted ascending and unique; ``y``, ``x``: int64. Every point that
    lies on or above the chord between its two neighbours is removed, all at once, until none is left: such
    a point is not a vertex of its group's envelope, and removing non-vertices never changes the envelope.
    The first and last point of a group are always kept. Returns sorted int indices.
    """
    idx = np.arange(key.size)
    grp = key - y
    while idx.size >= 3:
        g, yy, xx = grp[idx], y[idx], x[idx]
        inner = (g[1:-1] == g[:-2]) & (g[1:-1] == g[2:])
        y0, y1, y2 = yy[:-2], yy[1:-1], yy[2:]
        x0, x1, x2 = xx[:-2], xx[1:-1], xx[2:]
        drop = inner & (x1 * (y2 - y0) >= x0 * (y2 - y0) + (x2 - x0) * (y1 - y0))
        if not drop.any():
            break
        keep = np.ones(idx.size, bool)
        keep[1:-1] = ~drop
        idx = idx[keep]
    return idx


def _octagon_area(mask: np.ndarray) -> float:
    """Area of the bounding octagon (box and 45° lines through the pixel corners) of a bool mask: an upper
    bound of its convex hull's area, so ``area / octagon`` is a cheap lower bound of the solidity."""
    yy, xx = _nonzero_2d(mask)
    y0, y1, x0, x1 = yy.min() - 0.5, yy.max() + 0.5, xx.min() - 0.5, xx.max() + 0.5
    w, h = x1 - x0, y1 - y0
    u, v = xx + yy, xx - yy
    cuts = (u.min() - 1.0 - (x0 + y0), (x1 + y1) - (u.max() + 1.0),
            v.min() - 1.0 - (x0 - y1), (x1 - y0) - (v.max() + 1.0))
    return float(w * h - sum(min(max(c, 0.0), w, h) ** 2 / 2 for c in cuts))


def _octagon_areas(labels: np.ndarray, n: int) -> np.ndarray:
    """``_octagon_area(labels == i)`` for every label i (index = label; 0 and absent labels: inf), exactly,
    from one pass over the runs of each row: a label's box and its extreme ``x + y`` and ``x - y`` are those
    of its runs' end pixels. The values are multiples of 1/8 (exact in float64 at any position), so the
    areas are the same as those of the cut-out masks."""
    h, w = labels.shape
    flat = labels.reshape(-1)
    brk = np.empty(flat.size + 1, bool)
    brk[0] = brk[-1] = True
    np.not_equal(flat[1:], flat[:-1], out=brk[1:-1])
    brk[w: flat.size: w] = True
    inside = flat != 0
    starts = np.flatnonzero(brk[:-1] & inside)
    ends = np.flatnonzero(brk[1:] & inside)
    lab = flat[starts]
    y = starts // w
    xa, xb = starts - y * w, ends - y * w
    big = np.iinfo(np.int64).max
    ext = {}
    for name, vals, op, init in (("y0", y, np.minimum, big), ("y1", y, np.maximum, -big),
                                 ("x0", xa, np.minimum, big), ("x1", xb, np.maximum, -big),
                                 ("u0", xa + y, np.minimum, big), ("u1", xb + y, np.maximum, -big),
                                 ("v0", xa - y, np.minimum, big), ("v1", xb - y, np.maximum, -big)):
        out = np.full(n + 1, init, np.int64)
        op.at(out, lab, vals)
        ext[name] = out.astype(np.float64)
    y0, y1 = ext["y0"] - 0.5, ext["y1"] + 0.5
    x0, x1 = ext["x0"] - 0.5, ext["x1"] + 0.5
    wd, ht = x1 - x0, y1 - y0
    cuts = (ext["u0"] - 1.0 - (x0 + y0), (x1 + y1) - (ext["u1"] + 1.0),
            ext["v0"] - 1.0 - (x0 - y1), (x1 - y0) - (ext["v1"] + 1.0))
    tot = np.zeros(n + 1)
    for c in cuts:  # as _octagon_area: sum(min(max(c, 0), w, h) ** 2 / 2), in the same order
        tot = tot + np.minimum(np.minimum(np.maximum(c, 0.0), wd), ht) ** 2 / 2
    out = wd * ht - tot
    present = np.zeros(n + 1, bool)
    present[lab] = True
    out[~present] = np.inf
    return out


def _marker_search(masks: list[np.ndarray], sigma: float, h: float) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Step 7's marker search of each object crop ``m`` (bool), value for value::

        f = np.where(m, _gauss_small(ndi.distance_transform_edt(m).astype(np.float32), sigma), 0)
        mk, k = h_maxima_markers(f, h, m)

    returning ``(f, mk, k)`` per crop. Crops with a background frame of 2 pixels on every side are laid
    side by side on one canvas and searched together (one call of each filter instead of one per object):
    the distance to the background is found inside each crop's own frame; the Gaussian (radius <= 4) of
    an object pixel (>= 2 px inside its frame) only reaches frame pixels, which are 0 on the canvas as in
    the reflected crop; the canvas joins crops only through pixels where ``f`` is 0, which cannot raise
    the reconstruction of a crop holding a pixel with ``f - h`` >= 0 (checked; else searched alone); the
    components of a crop keep their raster order. Other crops are searched one by one.
    """
    radius = int(4.0 * float(sigma) + 0.5)  # gaussian_filter's (truncate = 4)

    def alone(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        dt = ndi.distance_transform_edt(m).astype(np.float32)
        f = np.where(m, _gauss_small(dt, sigma), 0).astype(np.float32)
        mk, k = h_maxima_markers(f, h, m)
        return f, mk, k

    out: list = [None] * len(masks)
    batch = [j for j, m in enumerate(masks) if radius <= 4 and min(m.shape) > 4
             and not (m[:2].any() or m[-2:].any() or m[:, :2].any() or m[:, -2:].any())]
    if len(batch) < 8:
        return [alone(m) for m in masks]
    # shelves of crops, tallest first
    order = sorted(batch, key=lambda j: -masks[j].shape[0])
    width = max(max(masks[j].shape[1] for j in batch), int(math.sqrt(sum(masks[j].size for j in batch)) * 1.2))
    place, y, x, shelf = {}, 0, 0, 0
    for j in order:
        mh, mw = masks[j].shape
        if x + mw > width:
            y, x, shelf = y + shelf, 0, 0
        place[j] = (y, x)
        x += mw
        shelf = max(shelf, mh)
    canvas = np.zeros((y + shelf, width), bool)
    for j in batch:
        (y0, x0), (mh, mw) = place[j], masks[j].shape
        canvas[y0: y0 + mh, x0: x0 + mw] = masks[j]
    dt = _edt32(canvas)  # = ndi.distance_transform_edt(canvas).astype(np.float32)
    f_all = np.where(canvas, ndi.gaussian_filter(dt, sigma), 0).astype(np.float32)
    del dt
    lab_all, _ = h_maxima_markers(f_all, h, canvas)
    h32, eps2 = np.float32(h), np.float32(2 * np.finfo(np.float32).resolution)
    for j in batch:
        (y0, x0), (mh, mw) = place[j], masks[j].shape
        f = f_all[y0: y0 + mh, x0: x0 + mw]
        if not float((f - h32 - eps2 * np.abs(f)).max()) >= 0:
            out[j] = alone(masks[j])  # no pixel reaches h: its reconstruction could see the canvas
            continue
        sub = lab_all[y0: y0 + mh, x0: x0 + mw]
        ids = np.unique(sub)
        ids = ids[ids > 0]
        mk = np.searchsorted(ids, sub).astype(np.int32) + 1
        mk[sub == 0] = 0
        out[j] = (f, mk, int(ids.size))
    for j in range(len(masks)):
        if out[j] is None:
            out[j] = alone(masks[j])
    return out


def _refine_split(labels: np.ndarray, flt: np.ndarray, d: float, p: dict) -> np.ndarray:
    """Step 7: re-split objects too large or too notched for one nucleus (under-split clumps).

    Each object larger than ``refine_min_area`` typical areas, or with solidity below
    ``refine_max_solidity``, gets its own marker search: h-maxima (height ``refine_h_diameters`` x d) of
    its own distance transform plus ``refine_intensity_weight`` x its smoothed DAPI relative to the
    object's brightest value. When that finds one marker only, the object is split along a dim DAPI seam
    (:func:`_seam_split`, ``refine_seam_h``, ``refine_seam_max_ratio``). The split is kept only when
    every part is nucleus-sized (>= ``refine_min_part_area`` typical areas, i.e. not a lobe; smaller
    parts are given back to a neighbour unless :func:`_small_nuclei` finds a small convex nucleus pressed
    on a convex one, ``refine_small_nucleus_min_area`` / ``_solidity``) and the parts are more convex than the whole (area-weighted solidity up by >= ``refine_min_solidity_gain``),
    or the whole was too big for one nucleus (> ``merge_max_total_area``) and the parts are convex.
    """
    watershed = _lazy("skimage.segmentation", "watershed")

    min_area_t = float(p["refine_min_area"])
    max_sol = float(p["refine_max_solidity"])
    if min_area_t <= 0 and max_sol <= 0:
        return labels
    n = int(labels.max())
    if n == 0:
        return labels
    typical_area = math.pi * d * d / 4.0
    area = np.bincount(labels.ravel(), minlength=n + 1)
    min_part = p["refine_min_part_area"] * typical_area
    # an object of about one nucleus' area is one (lobulated) nucleus, not two touching ones
    min_whole = max(2 * min_part, p["refine_min_object_area"] * typical_area)
    h = max(0.3, p["refine_h_diameters"] * d)
    w = float(p["refine_intensity_weight"])
    sig_i = max(0.7, p["intensity_sigma_diameters"] * d)
    seam_h = float(p["refine_seam_h"])
    seam_ratio = float(p["refine_seam_max_ratio"])
    small_min = float(p["refine_small_nucleus_min_area"]) * typical_area
    small_sol = float(p["refine_small_nucleus_solidity"])
    pad = 2
    out = labels.copy()
    nxt = n + 1
    cand = []
    # = _octagon_area(labels == i): all objects at once when there are many (one pass over the row runs)
    octagon = _octagon_areas(labels, n) if np.count_nonzero(area >= min_whole) > 40 else None
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None or area[i] < min_whole:
            continue
        y0, y1 = max(0, sl[0].start - pad), min(labels.shape[0], sl[0].stop + pad)
        x0, x1 = max(0, sl[1].start - pad), min(labels.shape[1], sl[1].stop + pad)
        m = labels[y0:y1, x0:x1] == i if octagon is None else None
        big = area[i] > min_area_t * typical_area
        if not big and area[i] / (_octagon_area(m) if octagon is None else octagon[i]) >= max_sol + 0.02:
            continue  # solidity >= area / (bounding octagon's area) >= max_sol: compact, skip the hull
        cand.append((i, y0, y1, x0, x1, labels[y0:y1, x0:x1] == i if m is None else m, big))
    sols = _solidities([c[5] for c in cand])  # all candidates' hulls in one batch
    cand = [(c, float(sol)) for c, sol in zip(cand, sols) if c[6] or sol < max_sol]
    # without the intensity term, the marker searches of all candidates at once (the same f, markers)
    found = _marker_search([c[5] for c, _ in cand], max(0.7, d / 24.0), h) if w <= 0 else None
    split = []  # objects with a candidate split: (label, box, solidity, parts, part labels)
    for q, ((i, y0, y1, x0, x1, m, big), sol) in enumerate(cand):
        if found is not None:
            f, mk, k = found[q]
        else:
            dt = ndi.distance_transform_edt(m).astype(np.float32)
            f = _gauss_small(dt, max(0.7, d / 24.0))  # = ndi.gaussian_filter (per-object boxes: less overhead)
            if w > 0:
                sm = _gauss_small(flt[y0:y1, x0:x1], sig_i)
                top = float(sm[m].max())
                if top > 0:
                    f = f + np.float32(w * 0.5 * d) * np.clip(sm / top, 0, 1).astype(np.float32)
            f = np.where(m, f, 0).astype(np.float32)
            mk, k = h_maxima_markers(f, h, m)
        parts = None
        if k >= 2:
            parts = watershed(-f, mk, mask=m)
            # parts too small to be a nucleus go back to their largest neighbour (iteratively), except a
            # small nucleus with its own convex outline pressed on a convex nucleus (not a lobe)
            keep = _small_nuclei(parts, small_min, min_part, small_sol, p["refine_min_solidity_gain"])
            parts = _absorb_small(parts, min_part, keep)
            if parts.max() == 0 or len(np.unique(parts[parts > 0])) < 2:
                parts = None
        if parts is None and seam_h > 0:
            parts = _seam_split(m, _gauss_small(flt[y0:y1, x0:x1], sig_i), seam_h, seam_ratio,
                                min_part)
        if parts is None:
            continue
        ids = [j for j in np.unique(parts) if j > 0]
        if len(ids) < 2:
            continue
        split.append((i, y0, y1, x0, x1, sol, parts, ids))
    # the parts' solidities of all split objects in one batch, then the decisions in object order
    ps_all = _solidities([parts == j for *_, parts, ids in split for j in ids])
    at = 0
    for i, y0, y1, x0, x1, sol, parts, ids in split:
        pa = np.array([(parts == j).sum() for j in ids], np.float64)
        ps = ps_all[at: at + len(ids)]
        at += len(ids)
        wsol = float(np.sum(pa * ps) / pa.sum())
        gain = wsol - sol >= p["refine_min_solidity_gain"]
        too_big = area[i] > p["merge_max_total_area"] * typical_area and ps.min() >= max_sol
        if not (gain or too_big):
            continue
        sub = out[y0:y1, x0:x1]
        for j in ids[1:]:
            sub[parts == j] = nxt
            nxt += 1
    return out


def _seam_split(mask: np.ndarray, dapi: np.ndarray, h_rel: float, max_ratio: float,
                min_part: float) -> np.ndarray | None:
    """Split a bool mask along dim DAPI seams (nuclei pressed together with no neck).

    Seeds are the h-maxima of the smoothed DAPI ``dapi`` (same shape as ``mask``) with ``h = h_rel`` x its
    range inside the mask; watershed of the DAPI; parts below ``min_part`` px go to their neighbour. Then
    two touching parts are merged back, the least dark seam first, while the pixels along their shared
    boundary average more than ``max_ratio`` x the dimmer part's mean (no real gap: chromatin texture).
    Returns labels 1..k (k >= 2 parts separated by dark seams) or None.
    """
    watershed = _lazy("skimage.segmentation", "watershed")

    v = dapi[mask]
    rng_i = float(v.max() - v.min())
    if rng_i <= 0:
        return None
    g = np.where(mask, dapi, v.min()).astype(np.float32)
    mk, k = h_maxima_markers(g, h_rel * rng_i, mask)
    if k < 2:
        return None
    parts = _absorb_small(watershed(-g, mk, mask=mask), min_part)
    while True:
        pairs = _seam_pairs(parts, dapi)
        if not pairs:
            return None  # one part left, or parts that do not touch: not ours to split
        ratio, _, ja, jb = max(pairs)
        if ratio <= max_ratio:
            break
        parts[parts == jb] = ja
    _, relabel = np.unique(parts, return_inverse=True)
    return relabel.reshape(parts.shape).astype(np.int32)


def _seam_pairs(parts: np.ndarray, dapi: np.ndarray) -> list[tuple[float, float, int, int]]:
    """Touching pairs of ``parts`` (labels, 0 = outside) with how their shared boundary looks.

    Returns ``(ratio, step, a, b)`` per pair: ``ratio`` = mean ``dapi`` of the pixels on both sides of the
    a|b boundary (4-neighbours) over the dimmer part's mean; ``step`` = brighter part's mean over the
    dimmer's. Empty when no two parts touch.
    """
    n = int(parts.max())
    keys, ys, xs = [], [], []
    for ax in (0, 1):
        a = parts[:-1, :] if ax == 0 else parts[:, :-1]
        b = parts[1:, :] if ax == 0 else parts[:, 1:]
        yy, xx = _nonzero_2d((a != b) & (a > 0) & (b > 0))
        k = np.minimum(a[yy, xx], b[yy, xx]).astype(np.int64) * (n + 1) + np.maximum(a[yy, xx], b[yy, xx])
        y2, x2 = (yy + 1, xx) if ax == 0 else (yy, xx + 1)
        keys += [k, k]
        ys += [yy, y2]
        xs += [xx, x2]
    key = np.concatenate(keys)
    if key.size == 0:
        return []
    flat = np.concatenate(ys).astype(np.int64) * parts.shape[1] + np.concatenate(xs)
    # each boundary pixel counted once per pair
    uk, first = np.unique(key * parts.size + flat, return_index=True)
    key, flat = key[first], flat[first]
    pk, inv = np.unique(key, return_inverse=True)
    seam = np.bincount(inv, weights=dapi.ravel()[flat]) / np.bincount(inv)
    means = _label_mean(dapi, parts, n)
    out = []
    for j, kk in enumerate(pk):
        la, lb = int(kk // (n + 1)), int(kk % (n + 1))
        lo, hi = sorted((float(means[la]), float(means[lb])))
        out.append((float(seam[j]) / max(lo, 1e-12), hi / max(lo, 1e-12), la, lb))
    return out


def _drop_dim(labels: np.ndarray, flt: np.ndarray, d: float, p: dict,
              bg: np.ndarray | None = None) -> np.ndarray:
    """Step 7b: remove objects whose contrast is far below that of the field's typical object.

    Contrast of an object = its mean flattened intensity ``flt`` minus the median of ``flt`` in a ring
    ``dim_ring_diameters`` x d wide around it (pixels of other objects excluded; the field's background
    median when the ring is empty). Objects below ``dim_min_contrast`` x the ``dim_reference_quantile``
    quantile of the contrasts of all objects are dropped (needs >= 5 objects; 0 = off): out-of-plane haze,
    tissue texture and specks that pass the local threshold next to nothing brighter.

    Parameters
    ----------
    labels : np.ndarray
        (Y, X) int labels at the working scale, 0 = background.
    flt : np.ndarray
        (Y, X) float32 flattened, smoothed image at the working scale.
    d : float
        Typical nucleus diameter at the working scale, px.
    p : dict
        Classical parameters (``dim_min_contrast``, ``dim_reference_quantile``, ``dim_ring_diameters``).
    bg : np.ndarray, optional
        ``_object_background(labels, flt, d, p)`` when the caller has it (computed here otherwise).

    Returns
    -------
    np.ndarray
        (Y, X) int32 labels with the dim objects set to 0 (not renumbered); ``labels`` itself when none is.
    """
    frac = float(p["dim_min_contrast"])
    n = int(labels.max())
    if frac <= 0 or n < 5:
        return labels
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    present = area > 0
    if present.sum() < 5:
        return labels
    inside = _label_mean(flt, labels, n, labelled_only=True)[1:]
    if bg is None:
        bg = _object_background(labels, flt, d, p)
    contrast = inside - bg[1:]
    med = float(np.quantile(contrast[present], p["dim_reference_quantile"]))
    if not med > 0:
        return labels
    drop = np.zeros(n + 1, bool)
    drop[1:] = present & (contrast < frac * med)
    if not drop.any():
        return labels
    # = np.where(drop[labels], 0, labels).astype(np.int32), one lookup
    return np.take(np.where(drop, 0, np.arange(n + 1)).astype(np.int32), labels)


def _label_median(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Per-label median (lower median for even counts), (n + 1,) float64 with index = label, NaN for
    absent labels and for label 0.

    The labelled pixels are grouped by label with one stable sort of the labels (a radix sort for 16-bit
    labels, ~10x faster than a float sort of the pixels), then each label's lower median is its group's
    ``np.partition`` at ``(count - 1) // 2``: the same value as ordering all pixels by (label, value)
    (``ndi.median`` is ~20x slower, a float argsort of ``label + value scaled into [0, 1)`` ~2.5x).
    """
    sel = labels > 0
    lab = labels[sel]
    out = np.full(n + 1, np.nan)
    if lab.size == 0:
        return out
    order = np.argsort(lab.astype(np.uint16) if n < 65536 else lab, kind="stable")
    val = np.take(values[sel], order)  # grouped by label
    cnt = np.bincount(lab, minlength=n + 1)
    ends = np.cumsum(cnt)
    ids = np.flatnonzero(cnt[1:]) + 1
    # = val_sorted_by_label_then_value[start + (cnt - 1) // 2] for each label
    out[ids] = [float(np.partition(val[e - c: e], (c - 1) // 2)[(c - 1) // 2])
                for e, c in zip(ends[ids].tolist(), cnt[ids].tolist())]
    return out


def _object_background(labels: np.ndarray, flt: np.ndarray, d: float, p: dict) -> np.ndarray:
    """Local background of each object: median of ``flt`` in a ring ``dim_ring_diameters`` x d wide around
    it (pixels of other objects excluded); the field's background median when the ring is empty.
    Returns (n + 1,) float64, index = label (0 for label 0)."""
    n = int(labels.max())
    r = max(1, int(round(p["dim_ring_diameters"] * d)))
    ring = _window_extreme(labels, 2 * r + 1, np.maximum)  # = ndi.grey_dilation(labels, size=(2r + 1, 2r + 1))
    ring[labels > 0] = 0
    bg = _label_median(flt, ring, n)
    empty = np.isnan(bg)
    empty[0] = False
    if empty.any():  # the field's background (from a subsample), only needed for an empty ring
        step = max(1, int(math.sqrt(labels.size / 250_000)))
        bg_pix = flt[::step, ::step][labels[::step, ::step] == 0]
        bg[empty] = float(np.median(bg_pix)) if bg_pix.size else 0.0
    bg[0] = 0.0
    return bg


def _tighten_outlines(labels: np.ndarray, flt: np.ndarray, d: float, p: dict,
                      bg: np.ndarray | None = None) -> np.ndarray:
    """Step 7c: trim each object to the pixels at least ``outline_rel`` of the way from its local
    background (:func:`_object_background`) to its own peak of ``flt``; holes are filled again.

    The threshold of step 4 is relative to the brightest value within one diameter, so a dim nucleus next
    to nothing brighter keeps its whole blurred halo (outlines ~1.3x the annotated area in dense blurred
    tissue). Pixels are only removed, never added; when an object falls into two or more pieces of at least
    ``refine_min_part_area`` typical areas, each becomes an object (smaller pieces stay with their object).
    Before trimming, objects with two or more such cores above ``outline_core_rel`` of the way to the peak
    are split between them (nuclei pressed together with a DAPI dip; 0 = off).

    Parameters
    ----------
    labels : np.ndarray
        (Y, X) int labels at the working scale, 0 = background.
    flt : np.ndarray
        (Y, X) float32 flattened, smoothed image at the working scale.
    d : float
        Typical nucleus diameter at the working scale, px.
    p : dict
        Classical parameters (``outline_rel``, ``outline_core_rel``, 0 = off; ``refine_min_part_area``;
        ``dim_ring_diameters`` for the background ring).
    bg : np.ndarray, optional
        ``_object_background(labels, flt, d, p)`` when the caller has it (computed here otherwise).

    Returns
    -------
    np.ndarray
        (Y, X) int32 labels (not renumbered).
    """
    rel = float(p["outline_rel"])
    n = int(labels.max())
    if rel <= 0 or n == 0:
        return labels
    if bg is None:
        bg = _object_background(labels, flt, d, p)
    # (entry 0 of peak, bg and thr is only read at background pixels, which every use below leaves out)
    peak = _label_max(flt, labels, n, labelled_only=True)
    min_part = float(p["refine_min_part_area"]) * math.pi * d * d / 4.0
    core_rel = float(p["outline_core_rel"])
    if core_rel > 0:
        # cores: two nucleus-sized regions above core_rel of the way to the peak, with the DAPI dipping
        # below that between them, are two nuclei; split first, so each part is trimmed against its own peak
        core = (flt >= np.take((bg + core_rel * (peak - bg)).astype(np.float32), labels)) & (labels > 0)
        split = _separate_pieces(labels, core, flt, min_part)
        if split is not labels:
            parent = np.zeros(int(split.max()) + 1, np.int64)
            parent[split.ravel()] = labels.ravel()  # a part's local background is its object's
            bg = bg[parent]
            labels = split
            peak = _label_max(flt, labels, int(labels.max()), labelled_only=True)
    thr = (bg + rel * (peak - bg)).astype(np.float32)
    keep = (flt >= np.take(thr, labels)) & (labels > 0)
    keep = _fill_holes(keep) & (labels > 0)
    out = np.where(keep, labels, 0).astype(np.int32)
    return _separate_pieces(out, out > 0, flt, min_part)


def _concave_split(labels: np.ndarray, d: float, p: dict, flt: np.ndarray | None = None) -> np.ndarray:
    """Step 7d: cut objects between two concavities of their outline (nuclei pressed side by side).

    Two nuclei pressed together along a flat contact have no neck in the distance transform and, when
    equally bright, no dark seam; but the outline of the pair has a concavity at each end of the contact
    line. For every object of at least ``concave_min_area`` nucleus areas that is not convex
    (solidity below ``concave_max_solidity``), the concave points are the outline pixels deepest inside
    the convex hull, one per hull defect at least ``concave_min_depth`` x d deep. Each pair of concave
    points whose chord stays inside the object is a candidate cut, scored by its saliency (the smaller
    depth over the chord length); the most salient cut is made when it is at least
    ``concave_min_saliency``, both parts are nucleus-sized (>= ``refine_min_part_area`` nucleus areas,
    so a lobe is never cut off), each is convex (solidity >= ``concave_part_solidity``) and together
    they are more convex than the whole (``refine_min_solidity_gain``), or, when both parts are smooth
    (texture index on the part alone, :func:`_parts_texture`, at most ``concave_smooth_max_texture``;
    needs ``flt``), not less convex than the whole by more than ``-concave_smooth_min_solidity_gain``
    (two smooth nuclei pressed side by side into an almost convex pair cannot gain much convexity). Parts
    are cut again the same way (clumps of 3). The nucleus area is the larger of the typical area (from d)
    and the field's median object area (>= 5 objects). 0 for ``concave_min_depth`` = off.

    Parameters
    ----------
    labels : np.ndarray
        (Y, X) int labels at the working scale, 0 = background.
    d : float
        Typical nucleus diameter at the working scale, px.
    p : dict
        Classical parameters (``concave_*``, ``refine_min_part_area``, ``refine_min_solidity_gain``).
    flt : np.ndarray, optional
        (Y, X) flattened, smoothed working image, for the smooth-parts rule (without it: off).

    Returns
    -------
    np.ndarray
        (Y, X) int32 labels (not renumbered).
    """
    depth_t = float(p["concave_min_depth"]) * d
    if depth_t <= 0:
        return labels
    n = int(labels.max())
    if n == 0:
        return labels
    typical_area = math.pi * d * d / 4.0
    area = np.bincount(labels.ravel(), minlength=n + 1)
    if np.count_nonzero(area[1:]) >= 5:
        # nucleus-sized is judged against the field's own objects when they are larger than d says (the
        # scale estimate of blurred tissue images is low: their nuclei look like big notched clumps)
        typical_area = max(typical_area, float(np.median(area[1:][area[1:] > 0])))
    min_area = float(p["concave_min_area"]) * typical_area
    min_part = float(p["refine_min_part_area"]) * typical_area
    max_sol = float(p["concave_max_solidity"])
    out = labels.astype(np.int32, copy=True)
    nxt = n + 1
    pad = 2
    cand = []
    # = _octagon_area(labels == i): all objects at once when there are many (one pass over the row runs)
    octagon = _octagon_areas(labels, n) if np.count_nonzero(area >= max(min_area, 2 * min_part)) > 40 else None
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None or area[i] < max(min_area, 2 * min_part):
            continue
        y0, y1 = max(0, sl[0].start - pad), min(labels.shape[0], sl[0].stop + pad)
        x0, x1 = max(0, sl[1].start - pad), min(labels.shape[1], sl[1].stop + pad)
        m = labels[y0:y1, x0:x1] == i if octagon is None else None
        if area[i] / (_octagon_area(m) if octagon is None else octagon[i]) < max_sol + 0.02:
            cand.append((i, y0, y1, x0, x1, labels[y0:y1, x0:x1] == i if m is None else m))  # else: convex
    if not cand:
        return labels
    bounds = _hull_row_bounds([c[5] for c in cand])  # all candidates' hulls at once
    hulls = np.bincount(bounds[0], weights=np.maximum(bounds[3] - bounds[2] + 1, 0), minlength=len(cand))
    for k, ((i, y0, y1, x0, x1, m), hc) in enumerate(zip(cand, hulls.astype(np.int64))):  # = _hull_pixel_counts
        if area[i] / max(int(hc), int(area[i])) >= max_sol:
            continue
        sub = out[y0:y1, x0:x1]
        stack = [sub == i]  # = m (only other objects' pixels were relabelled in this box)
        pieces = []
        hb = _bounds_of(bounds, k)  # the hull rows of the whole object (the first mask popped)
        box = None if flt is None else flt[y0:y1, x0:x1]
        while stack:
            m = stack.pop()
            big = m.sum() >= max(min_area, 2 * min_part)
            cut = _concave_cut(m, depth_t, min_part, max_sol, p, hb, box, d) if big else None
            hb = None
            if cut is None:
                pieces.append(m)
            else:
                stack += list(cut)
        for m in pieces[1:]:
            sub[m] = nxt
            nxt += 1
    return out


def _concave_cut(m: np.ndarray, depth_t: float, min_part: float, max_sol: float, p: dict,
                 hull_bounds: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                 img: np.ndarray | None = None, d: float = 0.0) -> tuple[np.ndarray, np.ndarray] | None:
    """The best cut of bool mask ``m`` between two concave points (see :func:`_concave_split`), or None.
    ``hull_bounds``: ``m``'s hull rows from a batch (:func:`_bounds_of`), when the caller has them. ``img``
    (the flattened DAPI over ``m``'s box) and ``d`` enable the smooth-parts convexity rule."""
    line = _lazy("skimage.draw", "line")

    a = int(m.sum())
    hull = _hull_image(m, hull_bounds)
    sol = a / max(int(hull.sum()), a)
    defect = hull & ~m
    lab, k = ndi.label(defect, structure=np.ones((3, 3), bool))
    if k < 2:
        return None
    cross = ndi.generate_binary_structure(2, 1)
    bnd = m & ~_binary_morph(m, cross, erode=True)  # = ndi.binary_erosion(m)
    near = _max_box(lab, 1)  # = ndi.grey_dilation(lab, size=(3, 3))
    sel = bnd & (near > 0)
    if not sel.any():
        return None
    ys, xs = _nonzero_2d(sel)
    # = ndi.distance_transform_edt(np.pad(hull, 1))[1:-1, 1:-1][ys, xs]: depth inside the hull
    cid, dep = near[ys, xs], _edt_at(np.pad(hull, 1), ys + 1, xs + 1)
    # the deepest outline pixel of each defect (the first in raster order among equals), defects in order
    o = np.lexsort((np.arange(cid.size), -dep, cid))
    first = o[np.flatnonzero(np.r_[True, cid[o][1:] != cid[o][:-1]])]
    first = first[dep[first] >= depth_t]
    pts = [(float(dep[j]), int(ys[j]), int(xs[j])) for j in first]
    if len(pts) < 2:
        return None
    cands = []
    for u in range(len(pts)):
        for v in range(u + 1, len(pts)):
            (da, ya, xa), (db, yb, xb) = pts[u], pts[v]
            length = math.hypot(ya - yb, xa - xb)
            if length >= 1 and min(da, db) / length >= p["concave_min_saliency"]:
                cands.append((min(da, db) / length, ya, xa, yb, xb))
    cands.sort(key=lambda c: -c[0])  # stable: the most salient valid cut wins, ties in point order
    best = None
    notched = None  # the defects holding a notch of the sub-pixel outline, found when a cut gets that far
    sub_depth = float(p["concave_subpixel_depth"]) * d
    for sal, ya, xa, yb, xb in cands:
        rr, cc = line(ya, xa, yb, xb)
        if np.count_nonzero(m[rr, cc]) / rr.size < 0.9:  # = np.mean(m[rr, cc]) < 0.9 (same division)
            continue  # the chord leaves the object: not a cut through it
        # = ndi.binary_dilation(chord, cross) & m: the chord pixels and their 4 neighbours inside the crop
        ry = np.concatenate([rr, rr - 1, rr + 1, rr, rr])
        cx = np.concatenate([cc, cc, cc, cc - 1, cc + 1])
        ok = (ry >= 0) & (ry < m.shape[0]) & (cx >= 0) & (cx < m.shape[1])
        cutm = np.zeros_like(m)
        cutm[ry[ok], cx[ok]] = True
        cutm &= m
        parts, np_ = ndi.label(m & ~cutm)
        if np_ < 2:
            continue
        sz = np.bincount(parts.ravel())
        sz[0] = 0
        order = np.argsort(sz)[::-1]
        # a part below a nucleus' lobe size is a lobe, unless it is a small nucleus: at least
        # refine_small_nucleus_min_area nucleus areas, and both parts convex (as in step 7)
        small = sz[order[1]] < min_part
        if small and not (p["refine_small_nucleus_min_area"] > 0 and sz[order[1]] >= min_part
                          * p["refine_small_nucleus_min_area"] / p["refine_min_part_area"]):
            continue
        pa, pb = parts == order[0], parts == order[1]
        rest = m & ~pa & ~pb
        if rest.any():  # cut pixels and crumbs go to the nearer part
            da_ = ndi.distance_transform_edt(~pa)
            db_ = ndi.distance_transform_edt(~pb)
            pa = pa | (rest & (da_ <= db_))
            pb = m & ~pa
        na, nb = int(pa.sum()), int(pb.sum())
        ha, hb = _hull_pixel_counts([pa, pb])
        sa, sb = na / max(int(ha), na), nb / max(int(hb), nb)  # as _solidity (parts >= min_part px)
        if min(sa, sb) < (p["refine_small_nucleus_solidity"] if small else p["concave_part_solidity"]):
            continue
        gain = (sa * na + sb * nb) / a - sol
        if gain < p["refine_min_solidity_gain"]:
            # the parts must be more convex than the whole (as in step 7), unless both are smooth (the
            # chromatin texture of each on its own at most concave_smooth_max_texture) and not less convex
            if img is None or p["concave_smooth_max_texture"] <= 0 \
                    or gain < p["concave_smooth_min_solidity_gain"]:
                continue
            smooth = p["concave_smooth_max_texture"]
            if _parts_texture(np.where(pa, 1, np.where(pb, 2, 0)), img, d, smooth) > smooth:
                continue
        # both ends of the chord in a hull defect that holds a notch of the sub-pixel outline (a pixel
        # hull's defects also come from the staircase of a digitised convex outline, 1 px deep by the
        # depth above)
        if sub_depth > 0:
            if notched is None:
                cv = np.rint(_outline_concavities(m, sub_depth)).astype(np.intp)
                ok_px = (cv[:, 0] >= 0) & (cv[:, 0] < m.shape[0]) & (cv[:, 1] >= 0) & (cv[:, 1] < m.shape[1])
                notched = set(np.unique(near[cv[ok_px, 0], cv[ok_px, 1]]).tolist()) - {0}
            if near[ya, xa] not in notched or near[yb, xb] not in notched:
                continue
        best = (sal, pa, pb)
        break
    if best is None:
        return None
    return best[1], best[2]


def _level_split(labels: np.ndarray, flt: np.ndarray, d: float, p: dict) -> np.ndarray:
    """Step 7c2: split objects at the DAPI level that separates their nuclei (a multi-level search).

    Nuclei pressed together often differ in brightness or meet along a faint dip, with no neck in the
    distance transform. Every object of at least ``level_split_min_area`` nucleus areas (the larger of the
    typical area and the field's median object area, as step 7d) with solidity below
    ``concave_max_solidity`` is thresholded at ``level_split_levels`` levels evenly spaced from
    ``level_split_low`` to ``level_split_high`` of the way from its ring background (the median of a
    ring ``dim_ring_diameters`` x d wide around it, other objects excluded) to its peak, on the working
    image smoothed by ``level_split_smooth_diameters`` x d. Objects whose outline has fewer than two
    concavities are skipped (no partition can be valid). At each level the components of at least
    ``level_split_core_area`` nucleus areas are seeds (brighter nuclei, or nuclei separated by a dip at
    that level); where an object has a single seed, every piece of the rest of it that survives an
    opening of radius ``level_split_gap_diameters`` x d away from the seed is a seed too (a dimmer nucleus
    beside a brighter one: not a separate component at any level, but a thick region left over; a
    nucleus' blurred rim is thin and opened away). The seeds grow over the object by a
    watershed of the smoothed DAPI; parts below ``refine_min_part_area`` nucleus areas go to a neighbour.
    A partition is valid when two or more parts remain, each with solidity >= ``level_split_part_solidity``,
    their area-weighted solidity is at most ``-level_split_min_solidity_gain`` below the whole's, and
    both ends of every boundary between two parts lie within ``level_split_concavity_reach`` x d of a
    concavity of the object's outline at least ``level_split_concavity_depth`` x d deep (measured on the
    sub-pixel outline, :func:`_outline_concavities`): two nuclei side by side leave a notch where their
    outlines meet, chromatin texture inside one nucleus does not. A partition is also valid, without
    concavities, in an object of at least ``level_split_step_min_area`` nucleus areas whose core is not
    of one brightness and whose own bright/dim partition has smooth parts (:func:`_has_step`), when every
    boundary is at most ``level_split_step_ratio`` x the brighter part beside it
    (:func:`_boundaries_below_brighter`, a brightness step or a seam) and every
    part's own texture index is at most ``level_split_step_max_texture`` (:func:`_parts_texture`: coarse
    chromatin makes such steps inside one nucleus). In the concavity route's candidates, when every part is
    smooth (texture index at most ``concave_smooth_max_texture``) and the parts are not less convex than
    the whole by more than ``-concave_smooth_min_solidity_gain``, one end of every boundary within
    ``level_split_notch_reach`` x d of a concavity is enough. Of the valid partitions, the one with
    the most convex parts (area-weighted solidity) is kept. All candidates are processed together
    (:func:`_level_partitions`).

    Parameters
    ----------
    labels : np.ndarray
        (Y, X) int labels at the working scale, 0 = background.
    flt : np.ndarray
        (Y, X) float32 flattened, smoothed image at the working scale.
    d : float
        Typical nucleus diameter at the working scale, px.
    p : dict
        Classical parameters (``level_split_*``; ``concave_max_solidity``, ``refine_min_part_area``,
        ``dim_ring_diameters``).

    Returns
    -------
    np.ndarray
        (Y, X) int32 labels (not renumbered); ``labels`` itself when nothing is split.
    """
    k_levels = int(p["level_split_levels"])
    n = int(labels.max())
    if k_levels <= 0 or n == 0:
        return labels
    area = np.bincount(labels.ravel(), minlength=n + 1)
    nucleus_area = math.pi * d * d / 4.0
    if np.count_nonzero(area[1:]) >= 5:  # as step 7d: the field's own objects when d is low
        nucleus_area = max(nucleus_area, float(np.median(area[1:][area[1:] > 0])))
    min_part, concave_area, step_area = _level_split_areas(p, nucleus_area)
    min_area = min(concave_area, step_area)
    max_sol = float(p["concave_max_solidity"])
    pad = 2
    cand = []
    # = _octagon_area(labels == i): all objects at once when there are many (the step route's 0.8 nucleus
    # areas make most nuclei of a field big enough to be looked at)
    octagon = _octagon_areas(labels, n) if np.count_nonzero(area[1:] >= min_area) > 40 else None
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None or area[i] < min_area:
            continue
        if octagon is not None and not area[i] / octagon[i] < max_sol + 0.02:
            continue  # convex (below)
        y0, y1 = max(0, sl[0].start - pad), min(labels.shape[0], sl[0].stop + pad)
        x0, x1 = max(0, sl[1].start - pad), min(labels.shape[1], sl[1].stop + pad)
        m = labels[y0:y1, x0:x1] == i
        if octagon is not None or area[i] / _octagon_area(m) < max_sol + 0.02:
            cand.append((i, y0, y1, x0, x1, m))  # else solidity >= area / octagon: convex
    if not cand:
        return labels
    hulls = _hull_pixel_counts([c[5] for c in cand])
    sols = np.array([area[c[0]] / max(int(hc), int(area[c[0]])) for c, hc in zip(cand, hulls)])
    cand = [c for c, s in zip(cand, sols) if s < max_sol]
    sols = sols[sols < max_sol]
    if not cand:
        return labels
    # every boundary of a valid partition ends in two outline concavities (objects with fewer are skipped)
    # or is darker than the brighter part beside it (objects of at least step_area)
    depth = float(p["level_split_concavity_depth"]) * d
    # (or, smooth parts, one notch: level_split_notch_reach)
    notch = 1 if float(p["level_split_notch_reach"]) > 0 and float(p["concave_smooth_max_texture"]) > 0 else 2
    concave = [_outline_concavities(c[5], depth) if area[c[0]] >= concave_area else np.zeros((0, 2))
               for c in cand]
    step_ratio = float(p["level_split_step_ratio"])
    keep = [k for k, (c, cv) in enumerate(zip(cand, concave))
            if len(cv) >= notch or (area[c[0]] >= step_area
                                    and _has_step(c, flt, d, step_ratio, float(p["level_split_step_max_texture"])))]
    if not keep:
        return labels
    cand, sols, concave = [cand[k] for k in keep], sols[keep], [concave[k] for k in keep]
    sig = float(p["level_split_smooth_diameters"]) * d
    # each candidate's local background: the median of the smoothed image in a ring around it (as
    # _object_background, other objects excluded), from its own box
    rr = max(1, int(round(p["dim_ring_diameters"] * d)))
    # the smoothed image is only read in the candidates' boxes widened by the ring (a few objects of the
    # field): = ndi.gaussian_filter(flt, sig) there
    h, w = labels.shape
    sm = _gauss_boxes(flt, sig, [(max(0, y0 - rr), min(h, y1 + rr), max(0, x0 - rr), min(w, x1 + rr))
                                 for _, y0, y1, x0, x1, _ in cand]) if sig > 0 else flt
    bg = np.zeros(len(cand))
    for k, (i, y0, y1, x0, x1, m) in enumerate(cand):
        ya, yb = max(0, y0 - rr), min(labels.shape[0], y1 + rr)
        xa, xb = max(0, x0 - rr), min(labels.shape[1], x1 + rr)
        big = np.zeros((yb - ya, xb - xa), bool)
        big[y0 - ya:y0 - ya + m.shape[0], x0 - xa:x0 - xa + m.shape[1]] = m
        ring = ndi.maximum_filter(big, size=2 * rr + 1) & (labels[ya:yb, xa:xb] == 0)
        v = sm[ya:yb, xa:xb][ring]
        bg[k] = float(np.median(v)) if v.size else float(sm[y0:y1, x0:x1][m].min())
    parts = _level_partitions(cand, sols, concave, sm, bg, nucleus_area, d, p, flt)
    out = labels.astype(np.int32, copy=True)
    nxt = n + 1
    for (i, y0, y1, x0, x1, m), pt in zip(cand, parts):
        if pt is None:
            continue
        sub = out[y0:y1, x0:x1]
        for j in np.unique(pt[m])[1:]:
            sub[pt == j] = nxt
            nxt += 1
    return out if nxt > n + 1 else labels


def _level_split_areas(p: dict, nucleus_area: float) -> tuple[float, float, float]:
    """Step 7c2's size thresholds, px: the smallest part (``refine_min_part_area`` nucleus areas), the
    smallest object of the concavity routes (``level_split_min_area``) and of the brightness-step route
    (``level_split_step_min_area``; ``inf`` when ``level_split_step_ratio`` or it is 0: the route is off),
    both at least two parts."""
    min_part = float(p["refine_min_part_area"]) * nucleus_area
    concave_area = max(float(p["level_split_min_area"]) * nucleus_area, 2 * min_part)
    step_on = float(p["level_split_step_ratio"]) > 0 and float(p["level_split_step_min_area"]) > 0
    step_area = max(float(p["level_split_step_min_area"]) * nucleus_area, 2 * min_part) if step_on else np.inf
    return min_part, concave_area, step_area


def _level_partitions(cand: list, sols: np.ndarray, concave: list, sm: np.ndarray, bg: np.ndarray,
                      nucleus_area: float, d: float, p: dict, flt: np.ndarray | None = None) -> list:
    """Step 7c2 for all candidate objects at once (see :func:`_level_split`).

    The objects' boxes are packed side by side, with gaps, into one canvas, so that each threshold level,
    the opening of the rest and each level's watershed are one call for all objects (per-object calls on
    small boxes cost far more in overhead than in pixels). ``cand``: ``(label, y0, y1, x0, x1, mask)``
    per object (its box in the working image); ``sols``: their solidities; ``concave``: their outline
    concavities (:func:`_outline_concavities`); ``sm``: the smoothed working image; ``bg``: their ring
    backgrounds. Returns, per object, int labels 1..k of the chosen partition in its box (0
    outside the object) or None.
    """
    watershed = _lazy("skimage.segmentation", "watershed")

    core = float(p["level_split_core_area"]) * nucleus_area
    min_part = float(p["refine_min_part_area"]) * nucleus_area
    r = max(1, int(round(float(p["level_split_gap_diameters"]) * d)))
    qs = np.linspace(float(p["level_split_low"]), float(p["level_split_high"]), int(p["level_split_levels"]))
    # pack the boxes in rows (gaps of 2r + 2 px: an opening never reaches from one object to the next)
    gap = 2 * r + 2
    width = max(max(c[5].shape[1] for c in cand), int(math.sqrt(sum(c[5].size for c in cand)) * 1.5))
    pos, y, x, row_h = [], 0, 0, 0
    for c in cand:
        h, w = c[5].shape
        if x and x + w > width:
            y, x, row_h = y + row_h + gap, 0, 0
        pos.append((y, x))
        x += w + gap
        row_h = max(row_h, h)
    canvas_shape = (y + row_h, width)
    obj = np.zeros(canvas_shape, np.int32)  # 1-based candidate index
    f = np.zeros(canvas_shape, np.float32)
    lo = np.zeros(len(cand) + 1, np.float32)
    span = np.ones(len(cand) + 1, np.float32)
    for k, ((i, y0, y1, x0, x1, m), (py, px)) in enumerate(zip(cand, pos), start=1):
        h, w = m.shape
        obj[py:py + h, px:px + w][m] = k
        f[py:py + h, px:px + w] = sm[y0:y1, x0:x1]
        lo[k] = bg[k - 1]
        span[k] = max(float(sm[y0:y1, x0:x1][m].max()) - bg[k - 1], 0.0)
    inside = obj > 0
    # every level at once: thresholds of each object, labelled level by level (never across levels)
    flat3 = ndi.generate_binary_structure(3, 1)
    flat3[0] = flat3[2] = False
    # (np.take = lo[obj] etc. throughout: the same values, ~2x faster than fancy indexing)
    q32 = qs.astype(np.float32)[:, None, None]
    stack = (f[None] >= np.take(lo, obj)[None] + q32 * np.take(span, obj)[None]) & inside[None]
    comp, nc = ndi.label(stack, structure=flat3)
    del stack
    size = np.bincount(comp.ravel(), minlength=nc + 1)
    size[0] = 0
    comp[~np.take(size >= core, comp)] = 0  # = np.where(np.take(size >= core, comp), comp, 0), in place
    seeds = comp
    del comp
    # a dimmer nucleus beside a brighter one: where an object has ONE seed at a level, the rest of it away
    # from the seed, opened (not a halo or a rim), is a seed too (with two or more seeds the object is
    # already split there; a rest piece besides was more often a nucleus' rim than a third nucleus)
    n_obj = len(cand)
    at = np.flatnonzero(seeds)  # = np.nonzero(seeds), raveled (one level = obj.size pixels)
    zz = at // obj.size
    owner = np.take(obj.reshape(-1), at - zz * obj.size)
    # (level, object, seed) triples
    trip = np.unique((zz * (n_obj + 1) + owner) * (nc + 1) + np.take(seeds.reshape(-1), at))
    per = np.bincount(trip // (nc + 1), minlength=len(qs) * (n_obj + 1)).reshape(len(qs), n_obj + 1)
    one = np.take((per == 1).reshape(-1), np.arange(len(qs))[:, None, None] * (n_obj + 1) + obj[None])
    one &= inside[None]
    # = ndi.binary_opening(one & ~ndi.binary_dilation(seeds > 0, structure=flat3), structure=_disk(r)[None])
    # (shifted views per level, :func:`_binary_morph`: ~5x faster than scipy's on the small canvas)
    cross = ndi.generate_binary_structure(2, 1)
    rest = one & ~_binary_morph(seeds > 0, cross)
    del one
    rest = _binary_morph(_binary_morph(rest, _disk(r), erode=True), _disk(r))
    rest &= inside[None]
    rl, nr = ndi.label(rest, structure=flat3)
    del rest
    if nr:
        rs = np.bincount(rl.ravel(), minlength=nr + 1)
        rs[0] = 0
        upd = np.take(rs >= core, rl)
        seeds[upd] = rl[upd] + nc  # = np.where(upd, rl + nc, seeds), in place
        del upd
    del rl
    seen: list[set] = [set() for _ in range(n_obj + 1)]
    options: list[list] = [[] for _ in range(n_obj + 1)]  # (w, level, parts box) per object
    boxes = [(py, py + c[5].shape[0], px, px + c[5].shape[1]) for c, (py, px) in zip(cand, pos)]
    for k in range(len(qs)):
        sk = seeds[k]
        sel = sk > 0
        pairs = np.unique(obj[sel].astype(np.int64) * (int(sk.max()) + 1) + sk[sel])
        po = pairs // (int(sk.max()) + 1)
        n_seeds = np.bincount(po, minlength=n_obj + 1)
        active = n_seeds >= 2
        if not active.any():
            continue
        # the same seeds as at a lower level give the same partition: skip those objects
        px_seed = np.bincount(obj[sel], minlength=n_obj + 1)
        for j in np.flatnonzero(active):
            key = (int(n_seeds[j]), int(px_seed[j]))
            if key in seen[j]:
                active[j] = False
            else:
                seen[j].add(key)
        if not active.any():
            continue
        act = np.take(active, obj)
        ws = watershed(-f, np.where(act, sk, 0), mask=act)
        for j in np.flatnonzero(active):
            ya, yb, xa, xb = boxes[j - 1]
            pt = np.where(obj[ya:yb, xa:xb] == j, ws[ya:yb, xa:xb], 0)
            options[j].append((k, pt))
    # score every partition: parts nucleus-sized and convex, together not much less convex than the whole
    result: list = [None] * n_obj
    masks, owner = [], []
    cands = []
    for j in range(1, n_obj + 1):
        for k, pt in options[j]:
            pt = _absorb_small(pt, min_part)
            ids = np.unique(pt[pt > 0])
            if ids.size < 2:
                continue
            ms = [pt == u for u in ids]
            pa = np.array([x.sum() for x in ms], np.float64)
            if pa.min() < min_part:
                continue
            cands.append((j, pt, pa, len(masks)))
            masks += ms
    if not cands:
        return result
    hulls = _hull_pixel_counts(masks)
    scored: list[list] = [[] for _ in range(n_obj + 1)]
    for j, pt, pa, s0 in cands:
        ps = pa / np.maximum(hulls[s0:s0 + pa.size], pa)
        w = float(np.sum(pa * ps) / pa.sum())
        if ps.min() >= p["level_split_part_solidity"] and w - sols[j - 1] >= p["level_split_min_solidity_gain"]:
            scored[j].append((w, len(scored[j]), pt))
    reach = float(p["level_split_concavity_reach"]) * d
    step_ratio = float(p["level_split_step_ratio"])
    _, concave_area, step_area = _level_split_areas(p, nucleus_area)
    band = max(1.0, float(p["level_split_step_band_diameters"]) * d)
    max_tex = float(p["level_split_step_max_texture"])
    img = sm if flt is None else flt
    notch_reach = float(p["level_split_notch_reach"]) * d
    smooth_tex = float(p["concave_smooth_max_texture"])
    for j in range(1, n_obj + 1):
        i, y0, y1, x0, x1, m = cand[j - 1]
        cv = concave[j - 1]
        step_ok = m.sum() >= step_area  # (inf when the route is off)
        notch_ok = notch_reach > 0 and smooth_tex > 0 and len(cv) >= 1 and m.sum() >= concave_area
        # the texture is only compared with the thresholds of the routes open to this object
        limit = max(max_tex if step_ok else -np.inf, smooth_tex if notch_ok else -np.inf)
        tex_cache: dict = {}
        for w, _, pt in sorted(scored[j], reverse=True):  # the most convex parts first
            ok = len(cv) >= 2 and m.sum() >= concave_area and _boundaries_end_in_concavities(m, pt, cv, reach)
            if not ok and (step_ok or notch_ok):
                tex = _parts_texture(pt, img[y0:y1, x0:x1], d, limit, tex_cache)
                box = img[y0:y1, x0:x1]
                ok = step_ok and tex <= max_tex and _boundaries_below_brighter(pt, box, step_ratio, band)
                # smooth parts, not less convex than the whole: one end of every boundary in a notch
                ok = ok or (notch_ok and tex <= smooth_tex
                            and w - sols[j - 1] >= p["concave_smooth_min_solidity_gain"]
                            and _boundaries_end_in_concavities(m, pt, cv, notch_reach, n_ends=1))
            if ok:
                _, relabel = np.unique(pt, return_inverse=True)
                result[j - 1] = relabel.reshape(m.shape).astype(np.int32)
                break
    return result


def _has_step(c: tuple, flt: np.ndarray, d: float, ratio: float, max_texture: float = np.inf) -> bool:
    """Cheap test before step 7c2's brightness-step route: is the object not of one brightness, and smooth?

    Parameters
    ----------
    c : tuple
        Candidate ``(label, y0, y1, x0, x1, mask)``: its box in the working image and its bool mask there.
    flt : np.ndarray
        (Y, X) flattened, smoothed working image.
    d : float
        Nucleus diameter at the working scale, px.
    ratio : float
        ``level_split_step_ratio``.
    max_texture : float, optional
        ``level_split_step_max_texture``: the route needs parts of smooth chromatin.

    Returns
    -------
    bool
        True when the 10th percentile of ``flt`` over the object's core (the mask eroded by d/8; the mask
        when the core has under 5 px) is at most ``ratio`` x the 90th (an object of one brightness has no
        step to split at) and the object's own bright/dim partition (Otsu's threshold of ``flt`` smoothed
        by 0.1 d, over the object) has parts whose texture index (:func:`_parts_texture`) is at most
        ``max_texture``. The level partitions are the same kind of split, and their parts are no smoother
        when the object's chromatin is coarse: on the simulator's textured nuclei this rejects ~3/4 of the
        objects the route would examine in vain, on DSB2018 ~1/5, and none of those the route splits there
        (their bright/dim parts: texture 0.03-0.07).
    """
    m = c[5]
    box = flt[c[1]:c[2], c[3]:c[4]]
    core = _binary_morph(m, _disk(max(1, int(round(d / 8)))), erode=True)
    v = box[core if core.sum() >= 5 else m]
    lo, hi = _percentiles(v, (10.0, 90.0))  # = np.percentile
    if not lo <= ratio * hi:
        return False
    if not np.isfinite(max_texture):
        return True
    g = _gauss_small(box.astype(np.float32, copy=False), max(0.5, 0.1 * d))
    gv = g[m]
    if gv.max() <= gv.min():
        return False
    parts = np.where(m, np.where(g >= _threshold_otsu(gv), 1, 2), 0)  # = skimage's threshold_otsu
    return _parts_texture(parts, box, d, max_texture) <= max_texture


def _parts_texture(parts: np.ndarray, img: np.ndarray, d: float, limit: float = np.inf,
                   cache: dict | None = None) -> float:
    """Largest chromatin texture index among the parts of one object (int labels ``parts``, 0 outside).

    For each part, as :func:`texture_index` but on the part alone: the SD of the detail finer than d/5
    (``img`` minus its Gaussian average of sigma 0.2 d taken over the part's pixels only, so neither the
    dark outside nor a brighter or dimmer neighbouring part leaks in) over the part's core (the part
    eroded by d/8; the whole part when the core has under 5 px), divided by the mean of ``img`` there.

    Parameters
    ----------
    parts : np.ndarray
        (Y, X) int labels of one object's parts over its box.
    img : np.ndarray
        (Y, X) float flattened, smoothed DAPI over the same box.
    d : float
        Nucleus diameter at the working scale, px.
    limit : float, optional
        The caller only asks whether the index is at most ``limit``: the parts after the first one above it
        are not measured (the value returned is then above ``limit`` but may be below the largest).
    cache : dict, optional
        Index of each part already measured over the same ``img`` and ``d`` (key: the part's mask bytes),
        filled here: the partitions of one object at different levels often share a part.

    Returns
    -------
    float
        The largest part texture index (DSB2018 nuclei ~0.09-0.16, the simulator's chromatin ~0.11-0.24).
    """
    disk = _disk(max(1, int(round(d / 8))))
    sig = 0.2 * d
    out = 0.0
    for u in np.unique(parts):
        if u == 0:
            continue
        pu = parts == u
        key = pu.tobytes() if cache is not None else None
        t = cache.get(key) if cache is not None else None
        if t is None:
            core = _binary_morph(pu, disk, erode=True)
            if core.sum() < 5:
                core = pu
            w = pu.astype(np.float32)
            coarse = _gauss_small(img * w, sig) / np.maximum(_gauss_small(w, sig), 1e-6)  # = ndi.gaussian_filter
            mean = float(img[core].mean())
            t = float((img - coarse)[core].std()) / mean if mean > 0 else np.inf
            if cache is not None:
                cache[key] = t
        out = max(out, t)
        if out > limit:
            break  # above the caller's threshold whatever the other parts are
    return out


def _boundaries_below_brighter(parts: np.ndarray, img: np.ndarray, ratio: float, band: float) -> bool:
    """True when every boundary between two touching parts is darker than the brighter of the two beside it.

    For each pair of touching parts (int labels ``parts``, 0 = outside), the boundary is the pixels of
    either part 4-adjacent to the other; its mean ``img`` must be at most ``ratio`` x the mean ``img`` of the
    brighter part's pixels within ``band`` px of the boundary (not on it). A nucleus beside a dimmer one (a
    brightness step) or two nuclei meeting along a faint seam pass; a cut through one nucleus, whose
    boundary is as bright as the pixels beside it, does not. False when no two parts touch.

    Parameters
    ----------
    parts : np.ndarray
        (Y, X) int labels of one object's parts, 0 outside the object.
    img : np.ndarray
        (Y, X) float DAPI (flattened, smoothed) over the same box.
    ratio : float
        Largest boundary mean over the brighter part's mean beside it.
    band : float
        Width of the strip beside the boundary, px.

    Returns
    -------
    bool
    """
    ids = [int(u) for u in np.unique(parts) if u > 0]
    cross = ndi.generate_binary_structure(2, 1)
    masks = {u: parts == u for u in ids}
    grown = {u: _binary_morph(masks[u], cross) for u in ids}
    touching = 0
    for a in ids:
        for b in ids:
            if b <= a:
                continue
            bnd = (masks[a] & grown[b]) | (masks[b] & grown[a])
            if not bnd.any():
                continue
            touching += 1
            near = ndi.distance_transform_edt(~bnd) <= band
            side = [img[masks[u] & near & ~bnd] for u in (a, b)]
            if side[0].size == 0 or side[1].size == 0:
                return False
            if float(img[bnd].mean()) > ratio * max(float(side[0].mean()), float(side[1].mean())):
                return False
    return touching > 0


def _outline_concavities(m: np.ndarray, min_depth: float) -> np.ndarray:
    """Deepest points (y, x), one per convex-hull defect at least ``min_depth`` px deep, of the sub-pixel
    outline of bool mask ``m`` (the 0.5 iso-line of the mask smoothed with sigma 1 px: a notch of a
    fraction of a pixel is measured, not rounded to 0 or 1 px). (k, 2) float array in ``m``'s coordinates."""
    ConvexHull = _lazy("scipy.spatial", "ConvexHull")
    find_contours = _lazy("skimage.measure", "find_contours")

    g = _gauss_small(np.pad(m.astype(np.float32), 3), 1.0)  # = ndi.gaussian_filter(..., 1.0)
    contours = find_contours(g, 0.5)
    if not contours:
        return np.zeros((0, 2))
    c = max(contours, key=len)[:-1]
    if len(c) < 5:
        return np.zeros((0, 2))
    try:
        v = np.sort(ConvexHull(c).vertices)
    except Exception:  # degenerate (collinear) outline
        return np.zeros((0, 2))
    # each outline point belongs to the hull edge between the hull vertices around it (wrapping)
    i = np.arange(len(c))
    e = (np.searchsorted(v, i, side="right") - 1) % len(v)
    start, end = c[v[e]], c[v[(e + 1) % len(v)]]
    chord = end - start
    length = np.hypot(chord[:, 0], chord[:, 1])
    rel = c - start
    depth = np.abs(chord[:, 0] * rel[:, 1] - chord[:, 1] * rel[:, 0]) / np.maximum(length, 1e-12)
    o = np.lexsort((-depth, e))  # per edge, the deepest point first
    first = o[np.r_[True, e[o][1:] != e[o][:-1]]]
    first = first[depth[first] >= min_depth]
    return (c[first] - 3).reshape(-1, 2)


def _boundaries_end_in_concavities(m: np.ndarray, parts: np.ndarray, concave: np.ndarray, reach: float,
                                   n_ends: int = 2) -> bool:
    """True when, for every pair of touching parts, the boundary between them meets the object's outline
    at ``n_ends`` (two) or more places, and at ``n_ends`` of them within ``reach`` px of a point of
    ``concave``."""
    if len(concave) < n_ends:
        return False
    ring = _binary_morph(~m, np.ones((3, 3), bool)) & m  # object pixels next to the outside
    ids = np.unique(parts[m])
    eight = np.ones((3, 3), bool)
    cross = ndi.generate_binary_structure(2, 1)
    for u in ids:
        pu = parts == u
        du = _binary_morph(pu, cross)
        for v in ids[ids > u]:
            pv = parts == v
            bnd = (pv & du) | (pu & _binary_morph(pv, cross))
            if not bnd.any():
                continue
            ends, ne = ndi.label(bnd & ring, structure=eight)
            ok = 0
            for e in range(1, ne + 1):
                ys, xs = _nonzero_2d(ends == e)
                dmin = np.min((concave[:, 0][:, None] - ys[None]) ** 2 + (concave[:, 1][:, None] - xs[None]) ** 2)
                ok += dmin <= reach * reach
            if ok < n_ends:
                return False
    return True


def _separate_pieces(labels: np.ndarray, pieces: np.ndarray, flt: np.ndarray, min_part: float) -> np.ndarray:
    """Objects holding two or more components of the bool mask ``pieces`` of at least ``min_part`` px each
    (two nuclei joined only by a dim halo; two bright cores) become one object per such component, grown
    back over the object by a watershed of ``-flt``. Objects with fewer big components are left as they are
    (a lobulated nucleus whose lobes the trimming separated stays one nucleus)."""
    watershed = _lazy("skimage.segmentation", "watershed")

    n = int(labels.max())
    if n == 0:
        return labels
    bnd = np.zeros(labels.size, bool)
    h, w = labels.shape
    # = for (sa, sb) in the vertical and horizontal neighbour views: x = different non-zero labels,
    # bnd[sa] |= x, bnd[sb] |= x; on the flattened arrays (the row-end pairs dropped)
    for (a, b, drop), k in zip(_pair_views(labels), (w, 1)):
        x = _pair_select(a, b, drop)
        bnd[: bnd.size - k] |= x
        bnd[k:] |= x
    bnd = bnd.reshape(h, w)
    comps, nc = ndi.label(pieces & (labels > 0) & ~bnd, structure=np.ones((3, 3), bool))
    pix = np.flatnonzero(comps)  # component 0 (outside the pieces) is never used below
    cid = comps.reshape(-1)[pix]
    size = np.bincount(cid, minlength=nc + 1)
    owner = np.zeros(nc + 1, np.int64)
    owner[cid] = labels.reshape(-1)[pix]
    big = size >= min_part
    big[0] = False
    n_big = np.bincount(owner[big], minlength=n + 1)
    split = n_big >= 2
    split[0] = False
    if not split.any():
        return labels
    out = labels.astype(np.int32, copy=True)
    nxt = n + 1
    boxes = ndi.find_objects(labels)
    for j in np.flatnonzero(split):  # a watershed inside each object that is split, from its big pieces
        sl = boxes[j - 1]
        m = labels[sl] == j
        c = comps[sl]
        ws = watershed(-flt[sl], np.where(m & big[c], c, 0), mask=m)
        sub = out[sl]
        for k, cid in enumerate(np.unique(ws[m])):
            if k:  # the first part keeps the object's label
                sub[ws == cid] = nxt
                nxt += 1
    return out


def _small_nuclei(parts: np.ndarray, min_area: float, max_area: float, min_sol: float,
                  notch: float) -> set[int]:
    """Parts of a re-split object that are small nuclei, not lobes: at least ``min_area`` and below
    ``max_area`` px (lobe-sized), convex (solidity >= ``min_sol``), and pressed on a neighbour (the one they
    share most boundary with) that is a convex nucleus of at least ``max_area`` px, their union being
    notched (solidity below the less solid of the two by >= ``notch``): two complete outlines touching.
    ``min_area`` 0 = off."""
    out: set[int] = set()
    if min_area <= 0:
        return out
    ids, cnt = np.unique(parts[parts > 0], return_counts=True)
    area = dict(zip(ids.tolist(), cnt.tolist()))
    sol: dict[int, float] = {}
    for j in ids[(cnt >= min_area) & (cnt < max_area)].tolist():
        mj = parts == j
        b = _main_neighbour(parts, mj)
        if b is None or area[b] < max_area:
            continue
        for q in (j, b):
            if q not in sol:
                sol[q] = _solidity(parts == q)
        if min(sol[j], sol[b]) < min_sol:
            continue
        if _solidity(mj | (parts == b)) <= min(sol[j], sol[b]) - notch:
            out.add(j)
    return out


def _main_neighbour(parts: np.ndarray, mj: np.ndarray) -> int | None:
    """The part of ``parts`` (int labels >= 0) sharing most boundary (3x3 ring) with the bool mask ``mj``
    (one part, not empty), or None when it touches no other part; ties: the lowest label."""
    # the ring lies within mj's box widened by 1 px: dilate there only
    rows, cols = np.flatnonzero(mj.any(axis=1)), np.flatnonzero(mj.any(axis=0))
    box = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    sub, mb = parts[box], mj[box]
    ring = _binary_morph(mb, np.ones((3, 3), bool)) & (sub > 0) & ~mb  # = ndi.binary_dilation, 3x3
    if not ring.any():
        return None
    return int(np.argmax(np.bincount(sub[ring])))  # = the most frequent label, the lowest among equals


def _absorb_small(parts: np.ndarray, min_area: float, keep: set[int] | None = None) -> np.ndarray:
    """Merge watershed parts (int labels >= 0) smaller than ``min_area`` into the neighbour they share most
    boundary with (parts in ``keep`` are never merged away), the smallest first (the lowest label among
    equals)."""
    parts = parts.copy()
    keep = list(keep or ())
    while True:
        cnt = np.bincount(parts.reshape(-1), minlength=1)  # = np.unique(parts[parts > 0], return_counts=True)
        cnt[0] = 0
        ids = np.flatnonzero(cnt)
        if len(ids) < 2:
            return parts
        cnt = cnt[ids]
        sel = cnt < min_area
        if keep:
            sel &= ~np.isin(ids, keep)
        if not sel.any():
            return parts
        j = int(ids[sel][np.argmin(cnt[sel])])
        mj = parts == j
        b = _main_neighbour(parts, mj)
        if b is None:
            return parts
        parts[mj] = b


def _upsample_labels(labels: np.ndarray, shape: tuple[int, int], scale: tuple[float, float],
                     min_area_px: float) -> np.ndarray:
    """Nearest-neighbour resample of labels to ``shape``; drop labels that vanish; renumber 1..N.

    When resampling, the areas at ``shape`` are counted on the small labels (each pixel weighted by how
    often its row and column are repeated) and the labels are renumbered before they are enlarged by two
    1-D takes (columns, then rows): the same result as indexing first, with far less full-size work.
    """
    if labels.shape != tuple(shape):
        yy = np.minimum((np.arange(shape[0]) + 0.5) * scale[0], labels.shape[0] - 1).astype(np.intp)
        xx = np.minimum((np.arange(shape[1]) + 0.5) * scale[1], labels.shape[1] - 1).astype(np.intp)
        n = int(labels.max())
        if n == 0:
            return np.zeros(tuple(shape), np.int32)
        reps = np.outer(np.bincount(yy, minlength=labels.shape[0]), np.bincount(xx, minlength=labels.shape[1]))
        areas = np.bincount(labels.ravel(), weights=reps.ravel(), minlength=n + 1)  # exact integers
        keep = areas >= max(1.0, min_area_px)
        keep[0] = False
        newid = np.zeros(n + 1, np.int32)
        newid[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        # = newid[labels][yy][:, xx]: columns first (the column gather on the small image's rows), then
        # whole rows copied, ~2x faster than the full-size column gather of rows-first
        small = np.take(newid, labels)
        out = np.take(np.take(small, xx, axis=1), yy, axis=0)
        if max(scale) <= 1.0 / 3.0:  # enlarged 3x or more: outlines interpolated, not in steps of 3+ px
            _interpolate_outlines(out, small, scale)
        return out
    n = int(labels.max())
    if n == 0:
        return labels.astype(np.int32)
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    keep = areas >= max(1.0, min_area_px)
    keep[0] = False
    newid = np.zeros(n + 1, np.int32)
    newid[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return np.take(newid, labels, out=labels if labels.dtype == np.int32 else None)


def _interpolate_outlines(out: np.ndarray, small: np.ndarray, scale: tuple[float, float]) -> None:
    """Smooth the outlines of labels enlarged from the working scale, in place.

    Nearest-neighbour enlargement draws every outline as a staircase of working pixels (8 px steps for a
    160-px nucleus segmented 20 px wide), which lowers solidity and looks crude in overlays. Here each
    pixel of ``out`` that lies between working-pixel centres of different labels takes the label with the
    largest bilinear weight among the four centres around it (the argmax of the bilinearly interpolated
    one-hot labels, background included): outlines run straight or curved between the centres. A pixel
    between four centres of one label keeps it, so only outline pixels are computed. No label is erased:
    with ``scale`` <= 1/3 some output pixel lies within 1/6 working pixel of each working pixel's centre
    (also at the clamped edges), where that centre's weight is >= (5/6)² > 1/2.

    Parameters
    ----------
    out : np.ndarray
        (Y, X) int32 labels, the nearest-neighbour enlargement of ``small`` (pixel ``y`` from working row
        ``floor((y + 0.5) * scale[0])``); modified in place.
    small : np.ndarray
        (y, x) int32 labels at the working scale, numbered as in ``out``.
    scale : tuple of float
        (y, x) working pixels per output pixel, at most 1/3.
    """
    h, w = small.shape
    if h < 2 or w < 2:
        return

    def taps(n_out: int, s: float, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = (np.arange(n_out) + 0.5) * s - 0.5  # working coordinate of each output pixel's centre
        i0 = np.clip(np.floor(c), 0, n_in - 2).astype(np.intp)  # its cell: centres i0 and i0 + 1
        start = np.searchsorted(i0, np.arange(n_in))  # the output pixels of cell i: start[i]..start[i+1]
        return start, np.diff(start), np.clip(c - i0, 0.0, 1.0).astype(np.float32)

    y0, ny, fy = taps(out.shape[0], scale[0], h)
    x0, nx, fx = taps(out.shape[1], scale[1], w)
    flat = small.ravel()
    a = small[:-1, :-1]
    ci, cj = _nonzero_2d((a != small[1:, :-1]) | (a != small[:-1, 1:]) | (a != small[1:, 1:]))  # 2+ labels
    cnt = ny[ci] * nx[cj]
    keep = cnt > 0
    ci, cj, cnt = ci[keep], cj[keep], cnt[keep]
    if ci.size == 0:
        return
    k00 = ci * w + cj
    l00, l01, l10, l11 = (np.take(flat, k) for k in (k00, k00 + 1, k00 + w, k00 + w + 1))
    # the winner's bilinear weight: cells with two labels (nearly all) compare the interpolated indicator
    # of the top-left corner's label with 1/2; the others (junctions) score every corner's label
    e01, e10, e11 = (l01 == l00), (l10 == l00), (l11 == l00)
    other = np.where(~e01, l01, np.where(~e10, l10, l11))
    two = ((e01 | (l01 == other)) & (e10 | (l10 == other)) & (e11 | (l11 == other)))
    one = np.float32(1)
    ax = e01.astype(np.float32) - one
    ay = e10.astype(np.float32) - one
    axy = one - e01 - e10 + e11.astype(np.float32)
    # the cells' output pixels in chunks of ~2^18 (bounded temporaries: the outline of a 2048² field at
    # 0.1 µm/px has ~0.5 M pixels)
    ends = np.cumsum(cnt)
    bounds = np.searchsorted(ends, np.arange(1, int(ends[-1]) // 262144 + 1) * 262144)
    for c0, c1 in zip(np.r_[0, bounds], np.r_[bounds, ci.size]):
        if c1 <= c0:
            continue
        sub = cnt[c0:c1]
        cell = np.repeat(np.arange(c0, c1), sub)  # cell k's pixels in row-major order
        q = np.arange(cell.size) - np.repeat(ends[c0:c1] - sub - (ends[c0 - 1] if c0 else 0), sub)
        wide = np.take(nx, np.take(cj, cell))
        ys = np.take(y0, np.take(ci, cell)) + q // wide
        xs = np.take(x0, np.take(cj, cell)) + q % wide
        wy, wx = np.take(fy, ys), np.take(fx, xs)
        v = np.take(ay, cell) * wy
        v += np.take(ax, cell) * wx
        v += np.take(axy, cell) * (wy * wx)
        new = np.where(v >= np.float32(-0.5), np.take(l00, cell), np.take(other, cell))  # v + 1 >= 1/2
        junction = np.flatnonzero(~np.take(two, cell))
        if junction.size:
            c = cell[junction]
            ly, lx = wy[junction], wx[junction]
            corners = [l00[c], l01[c], l10[c], l11[c]]
            weights = [(1 - ly) * (1 - lx), (1 - ly) * lx, ly * (1 - lx), ly * lx]
            score = np.stack([sum(wk * (lk == lj) for lk, wk in zip(corners, weights)) for lj in corners])
            new[junction] = np.choose(np.argmax(score, axis=0), corners)
        out.put(ys * out.shape[1] + xs, new)


# --------------------------------------------------------------------------------------------------
# optional deep-learning backends (lazy imports; never needed by the tests)
# --------------------------------------------------------------------------------------------------

def segment_cellpose(dapi: np.ndarray, diameter_px: float, *, model_type: str = "nuclei",
                     gpu: bool = False, **params: Any) -> np.ndarray:
    """Cellpose backend (``pip install cellpose``; weights are fetched by Cellpose itself)."""
    try:
        from cellpose import models  # type: ignore
    except ImportError as exc:
        raise FishcountError("backend 'cellpose'", _BACKEND_PACKAGES["cellpose"][1]) from exc
    try:
        model = models.Cellpose(gpu=gpu, model_type=model_type) if hasattr(models, "Cellpose") else \
            models.CellposeModel(gpu=gpu)
        out = model.eval(np.asarray(dapi, np.float32), diameter=float(diameter_px), channels=[0, 0], **params)
    except Exception as exc:  # missing weights, no network, incompatible version
        raise FishcountError("backend 'cellpose'", f"Cellpose failed ({type(exc).__name__}: {exc}); "
                             "check that its model weights are available") from exc
    return np.asarray(out[0], dtype=np.int32)


def segment_stardist(dapi: np.ndarray, diameter_px: float, *, model_name: str = "2D_versatile_fluo",
                     **params: Any) -> np.ndarray:
    """StarDist backend (``pip install stardist tensorflow``). The image is rescaled so nuclei are
    ~20 px wide, the scale StarDist's pretrained ``2D_versatile_fluo`` model was trained at."""
    try:
        from stardist.models import StarDist2D  # type: ignore
        from csbdeep.utils import normalize  # type: ignore
    except ImportError as exc:
        raise FishcountError("backend 'stardist'", _BACKEND_PACKAGES["stardist"][1]) from exc
    img = np.asarray(dapi, np.float32)
    factor = float(np.clip(20.0 / diameter_px, 1 / 16, 4))
    work, scale = _resample(img, factor)
    try:
        model = StarDist2D.from_pretrained(model_name)
        if model is None:
            raise RuntimeError(f"no pretrained model named {model_name!r}")
        lab, _ = model.predict_instances(normalize(work, 1, 99.8), **params)
    except Exception as exc:
        raise FishcountError("backend 'stardist'", f"StarDist failed ({type(exc).__name__}: {exc}); "
                             "check that its model weights are available") from exc
    return _upsample_labels(np.asarray(lab, np.int32), img.shape, scale, 1)


_BACKENDS: dict[str, Callable[..., np.ndarray]] = {
    "classical": segment_classical,
    "cellpose": segment_cellpose,
    "stardist": segment_stardist,
}
_BUILTIN_BACKENDS = dict(_BACKENDS)


def register_backend(name: str, func: Callable[..., np.ndarray]) -> None:
    """Register a segmentation backend ``func(dapi, diameter_px, **params) -> (Y, X) int labels``.

    ``dapi`` is the (Y, X) image as float32, or as 8/16-bit integers when the input was such (no copy).

    Packages can do the same without code, through the ``fishcount.segmenters`` entry point group.
    """
    if not callable(func):
        raise FishcountError(f"backend {name!r}", "a segmentation backend must be callable")
    _BACKENDS[str(name)] = func


def _entry_point_backends() -> dict[str, Any]:
    try:
        return {ep.name: ep for ep in entry_points(group="fishcount.segmenters")}
    except Exception:  # pragma: no cover - broken metadata of some other package
        return {}


def available_backends() -> list[str]:
    """Names of the segmentation backends known (built in, registered, or from entry points)."""
    return sorted(set(_BACKENDS) | set(_entry_point_backends()))


#: Packages each built-in deep-learning backend imports (checked by :func:`check_backend`).
_BACKEND_PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "cellpose": (("cellpose",), "Cellpose is not installed: pip install cellpose (or use backend='classical')"),
    "stardist": (("stardist", "csbdeep"), "StarDist is not installed: pip install stardist tensorflow "
                                          "(or use backend='classical')"),
}


def check_backend(name: str, *, other_processes: bool = False) -> None:
    """Fail now, with the reason, when segmentation backend ``name`` could not run.

    For a batch, before hours of work: an unknown name (the available ones are listed), a built-in
    deep-learning backend whose package is not installed (``pip install cellpose``), or, with
    ``other_processes`` (fields analysed in worker processes), a backend registered with
    :func:`register_backend` in this process only: worker processes start afresh and know the built-in
    backends and the ``fishcount.segmenters`` entry points, not registrations made at run time.

    Raises
    ------
    FishcountError
        ``backend '<name>': <reason>``.
    """
    import importlib.util

    func = _get_backend(name)  # unknown -> the error listing the available backends
    if name in _BACKEND_PACKAGES and _BUILTIN_BACKENDS.get(name) is func:
        mods, msg = _BACKEND_PACKAGES[name]
        if any(importlib.util.find_spec(m) is None for m in mods):
            raise FishcountError(f"backend {name!r}", msg)
    if other_processes and name in _BACKENDS and _BUILTIN_BACKENDS.get(name) is not _BACKENDS[name] \
            and name not in _entry_point_backends():
        raise FishcountError(f"backend {name!r}", "registered in this process only, so the worker processes "
                             "cannot use it: run with workers=1, or declare it as a 'fishcount.segmenters' "
                             "entry point of an installed package")


def _get_backend(name: str) -> Callable[..., np.ndarray]:
    if name in _BACKENDS:
        return _BACKENDS[name]
    eps = _entry_point_backends()
    if name in eps:
        try:
            return eps[name].load()
        except Exception as exc:
            raise FishcountError(f"backend {name!r}", f"cannot load entry point {eps[name].value}: {exc}") from exc
    raise FishcountError(f"backend {name!r}", f"unknown segmentation backend; available: {', '.join(available_backends())}")


# --------------------------------------------------------------------------------------------------
# QC
# --------------------------------------------------------------------------------------------------

#: Nucleus width (px) at which sharpness is measured; see :func:`_focus_measure`. 24 px (was 32: ~half the
#: cost, ~5 ms per simulated 1024² field): the same QC flags on simulated seeds 0-9 and the 40 DSB2018 dev
#: images; defocused / in-focus nuclei relative to the field median at 0.1, 0.16 and 0.24 µm/px (seeds
#: 100-105): below 0.6: 87 / 0 of 90 / 2161 (32 px: 88 / 0), in-focus 0.5th percentile 0.76 (0.76-0.79).
FOCUS_WORKING_DIAMETER_PX = 24.0


def _focus_measure(img: np.ndarray, labels: np.ndarray, n: int, diameter_px: float,
                   grid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Sharpness per nucleus (chromatin texture and outline), dimensionless.

    ``focus = mean |DoG| over the nucleus and a thin rim / (mean DAPI inside - local background)``, with
    a difference of Gaussians of sigmas ``d/48`` (at least 0.5 px) and ``d/16`` (``d`` = typical nucleus
    diameter): the band-pass energy of chromatin texture and of the outline, relative to the nucleus' own
    contrast. Defocus blurs both, so an out-of-focus nucleus scores well below its in-focus neighbours
    (the QC compares each nucleus with the field's median). Measured where the nucleus is
    :data:`FOCUS_WORKING_DIAMETER_PX` wide (never above the input's resolution), so it hardly depends on the
    pixel size.
    """
    if n == 0:
        return np.zeros(0)
    factor = float(np.clip(FOCUS_WORKING_DIAMETER_PX / diameter_px, 1 / 16, 1.0))
    work, (fy, fx) = _resample(img, factor)
    yy = np.minimum(((np.arange(work.shape[0]) + 0.5) / fy), labels.shape[0] - 1).astype(np.intp)
    xx = np.minimum(((np.arange(work.shape[1]) + 0.5) / fx), labels.shape[1] - 1).astype(np.intp)
    if grid is not None:  # = labels[yy[:, None], xx] from the collapsed grid (_label_grid)
        lab = np.take(np.take(grid[0], grid[1][yy], axis=0), grid[2][xx], axis=1)
    else:
        lab = np.take(np.take(labels, yy, axis=0), xx, axis=1)  # = labels[yy[:, None], xx], 2-3x faster
    if n < 65536:
        lab = lab.astype(np.uint16)  # same labels; the two grey dilations below run ~20 % faster
    d = diameter_px * factor
    dog = ndi.gaussian_filter(work, max(0.5, d / 48.0))
    dog -= ndi.gaussian_filter(work, max(1.0, d / 16.0))
    np.abs(dog, out=dog)
    fg = lab > 0
    rim = max(1, int(round(0.08 * d)))
    ring = max(rim + 1, int(round(d / 6.0)))
    # grey dilation of the labels: each pixel near nuclei takes a neighbouring nucleus' label (the ring's
    # (2 ring + 1)² box as the rim's box dilated further: max of max, the same values)
    dil = _max_box(lab, rim)
    lab_rim = np.where(fg, lab, dil)
    energy = _label_mean(dog, lab_rim, n, labelled_only=True)[1:]
    del dog
    lab_ring = _max_box(dil, ring - rim)
    del dil
    # one pass for the inside (labels 1..n) and the ring (n + 1 + label) sums: the same per-bin sums
    in_ring = (lab_ring > 0) & (lab_rim == 0)
    kt = np.uint16 if 2 * n + 1 < 65536 else np.int32  # small: converted per block of rows
    ring_key = lab_ring.astype(kt, copy=False)
    ring_key += kt(n + 1)  # (lab_ring is not needed any more)
    # = lab.astype(kt) with key[in_ring] = lab_ring[in_ring] + n + 1, in one pass
    key = np.where(in_ring, ring_key, lab.astype(kt, copy=False))
    del ring_key, lab_ring
    cnt, tot = _label_count_sum(work, key, 2 * n + 1, labelled_only=True)
    counts = cnt[n + 2:]
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = tot[1: n + 1] / cnt[1: n + 1]
        bg = tot[n + 2:] / counts
    if (counts == 0).any():  # the field's median background, only needed for a nucleus with no ring
        glob_bg = float(np.median(work[~fg])) if (~fg).any() else 0.0
        bg = np.where(counts > 0, bg, glob_bg)
    contrast = np.maximum(inside - bg, 1e-6)
    return np.nan_to_num(energy / contrast, nan=0.0)


def _label_grid(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``labels`` with each run of identical consecutive rows, then columns, collapsed to one.

    Returns ``(grid, ry, rx)`` with ``labels == grid[ry][:, rx]`` exactly (``ry``, ``rx``: the grid row and
    column of every image row and column). Labels enlarged from a working scale (step 8) collapse to about
    the working grid, so per-label sums over the image cost a sum over the grid.
    """
    h, w = labels.shape
    new_row = np.ones(h, bool)
    new_col = np.ones(w, bool)
    new_col[1:] = False
    diff = np.empty(min(h, 257) * w, bool)
    for r0 in range(0, h, 256):  # blocks of rows: small temporaries
        blk = labels[r0: r0 + 257]
        new_row[r0 + 1: r0 + blk.shape[0]] = (blk[1:] != blk[:-1]).any(axis=1)
        # = (blk[:, 1:] != blk[:, :-1]).any(axis=0), on the flattened rows (1-D, ~2x faster); the last
        # column compares a row's end with the next row's start and is left out
        f = np.ascontiguousarray(blk).reshape(-1)
        dv = diff[: f.size]
        np.not_equal(f[1:], f[:-1], out=dv[:-1])
        new_col[1:] |= dv.reshape(blk.shape)[:, :-1].any(axis=0)
    # = labels[np.ix_(rows, cols)], 2-3x faster; no copy along an axis that does not collapse
    grid = labels if new_row.all() else np.take(labels, np.flatnonzero(new_row), axis=0)
    if not new_col.all():
        grid = np.take(grid, np.flatnonzero(new_col), axis=1)
    return grid, np.cumsum(new_row) - 1, np.cumsum(new_col) - 1


def _shape_props(labels: np.ndarray, n: int, diameter_px: float,
                 grid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Label, area, centroid, eccentricity (image moments, vectorised), border contact and solidity.

    Solidity (area / convex-hull area) is measured on labels shrunk so a nucleus is ~24 px wide
    (nearest neighbour), which keeps it fast and independent of the pixel size. Everything is computed on
    the collapsed grid of :func:`_label_grid` (``grid``, computed when not given), with exact results.
    """
    comp, ry, rx = _label_grid(labels) if grid is None else grid
    cy, cx, ecc, area_all = _centroid_eccentricity_grid(comp, ry, rx, n)
    idx = np.flatnonzero(area_all[1:]) + 1
    touches = np.zeros(n + 1, bool)
    for edge in (comp[0, :], comp[-1, :], comp[:, 0], comp[:, -1]):
        touches[edge] = True
    k = max(1, int(round(diameter_px / 24.0)))
    # = labels[k // 2::k, k // 2::k]
    small = np.take(comp[ry[k // 2:: k]], rx[k // 2:: k], axis=1) if k > 1 else labels
    sol = np.ones(n + 1)
    # = skimage regionprops "solidity" (area / convex_hull_image area), ~3x faster; every label of the
    # shrunk labels at once (:func:`_hull_rows_of_labels`, the counts of :func:`_hull_pixel_counts`)
    area_small = np.bincount(small.reshape(-1), minlength=n + 1)
    ids = np.flatnonzero(area_small[1:]) + 1
    boxes: list = [None] * (int(ids[-1]) if ids.size else 0)  # = ndi.find_objects(small)
    if ids.size:
        nk, rows, first, last = _label_row_extents(small, ids)
        pr, _, lb, ub = _hull_rows(nk, rows, first, last)
        hull = np.bincount(pr, weights=np.maximum(ub - lb + 1, 0), minlength=ids.size).astype(np.int64)
        sol[ids] = area_small[ids].astype(np.float64) / hull
        # each object's box from its occupied rows and their first / last columns
        at = np.cumsum(nk) - nk
        r0, r1 = rows[at], rows[at + nk - 1] + 1
        c0, c1 = np.minimum.reduceat(first, at), np.maximum.reduceat(last, at) + 1
        for i, y0, y1, x0, x1 in zip(ids.tolist(), r0.tolist(), r1.tolist(), c0.tolist(), c1.tolist()):
            boxes[i - 1] = (slice(y0, y1), slice(x0, x1))
    return {"label": idx.astype(np.int32), "area": area_all[idx], "centroid_y": cy[idx],
            "centroid_x": cx[idx], "eccentricity": ecc[idx], "solidity": sol[idx], "touches": touches[idx],
            "small": small, "small_boxes": boxes}


def _centroid_eccentricity_grid(comp: np.ndarray, ry: np.ndarray, rx: np.ndarray,
                                n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centroid (y, x; px), eccentricity and area of labels 1..n of the image ``comp[ry][:, rx]``.

    Image moments from per-label sums over the collapsed grid: each grid cell stands for the rectangle of
    image rows ``ry == i`` and columns ``rx == j``, whose pixel count and coordinate sums (1, y, x, y², x²,
    xy) are products of per-row and per-column sums. All sums are whole numbers below 2**53, so the raw
    moments are exact; centroid and eccentricity equal the per-object computation to float rounding.
    Eccentricity as skimage (``sqrt(1 - l2 / l1)`` of the covariance eigenvalues, 0 when ``l1 == 0``).
    Returns four (n + 1,) arrays (0 for absent labels; area int64).
    """
    yy = np.arange(ry.size, dtype=np.float64)
    xx = np.arange(rx.size, dtype=np.float64)
    ny, nx = comp.shape
    r1, ry1, ry2 = (np.bincount(ry, weights=w, minlength=ny) for w in (None, yy, yy * yy))
    c1, cx1, cx2 = (np.bincount(rx, weights=w, minlength=nx) for w in (None, xx, xx * xx))
    # from the runs of one label along each grid row: a run's column-weight sums are differences of
    # prefix sums (whole numbers, so the same sums as cell by cell), far fewer runs than cells when the
    # grid does not collapse (interpolated outlines, step 8); each run's product with its row weight is
    # summed per label; the background runs are left out (label 0 is not reported; the other sums are
    # the same to the bit)
    flat = comp.reshape(-1)
    if flat.size == 0:
        z = np.zeros(n + 1)
        return z, z.copy(), z.copy(), np.zeros(n + 1, np.int64)
    change = np.empty(flat.size, bool)
    change[0] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    change[::nx] = True
    starts = np.flatnonzero(change)
    del change
    lengths = np.diff(np.append(starts, flat.size))
    lab = flat[starts]
    fg = lab > 0
    starts, lengths, lab = starts[fg], lengths[fg], lab[fg]
    x0 = starts % nx
    row = starts // nx
    lab = lab.astype(np.int64)
    per = []  # each run's sum of the column weights
    for c in (c1, cx1, cx2):
        pre = np.concatenate(([0.0], np.cumsum(c)))
        per.append(pre[x0 + lengths] - pre[x0])

    def lsum(a: np.ndarray, j: int) -> np.ndarray:  # sum over the label of row weight x column weight j
        # run by run (whole-number products and sums below 2**53: the same sums in any order)
        return np.bincount(lab, weights=a[row] * per[j], minlength=n + 1)[: n + 1]

    area = lsum(r1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(area > 0, area, 1.0)
        my, mx = lsum(ry1, 0) / a, lsum(r1, 1) / a
        mu20 = lsum(ry2, 0) / a - my * my
        mu02 = lsum(r1, 2) / a - mx * mx
        mu11 = lsum(ry1, 1) / a - my * mx
        common = np.sqrt(((mu20 - mu02) / 2) ** 2 + mu11 ** 2)
        l1, l2 = (mu20 + mu02) / 2 + common, (mu20 + mu02) / 2 - common
        ecc = np.where(l1 > 0, np.sqrt(np.maximum(0.0, 1 - l2 / np.where(l1 > 0, l1, 1.0))), 0.0)
    absent = area == 0
    my[absent] = mx[absent] = ecc[absent] = 0.0
    return my, mx, ecc, area.astype(np.int64)


def _two_bodies(labels: np.ndarray, cand: np.ndarray, diameter_px: float, qc: dict[str, float],
                small: np.ndarray | None = None, boxes: list | None = None) -> np.ndarray:
    """Shape evidence that each object of ``cand`` (label values) is two nuclei, not one (QC ``clump``).

    Either (a) **a pair of opposite concavities**: two bays of the outline (connected parts of the convex
    hull outside the object), each at least ``clump_concavity_depth`` × the object's inscribed radius deep
    (measured from the hull's edge), whose deepest points are joined by a chord that cuts the object into
    two parts with the smaller at least ``clump_concavity_part`` of its area: the waist between two bodies
    (a round nucleus with one notch in its outline has one bay, an irregular outline shallow ones); or
    (b) **a poor ellipse fit**: the pixels in the object or in the ellipse of its second moments but not
    both are at least ``clump_ellipse_residual`` of its area (a peanut; an ellipse scores ~0, a pixelated
    round nucleus with a notched outline 0.05-0.15). Measured where a nucleus is ~24 px wide (as the
    solidity). Returns a bool array, one per ``cand``; ``clump_ellipse_residual = 0`` makes it all True.
    ``small``, ``boxes``: the shrunk labels and their ``ndi.find_objects`` boxes when the caller has them
    (:func:`_shape_props`), computed here otherwise.
    """
    draw_line = _lazy("skimage.draw", "line")

    out = np.zeros(len(cand), bool)
    if len(cand) == 0:
        return out
    if small is None:
        k = max(1, int(round(diameter_px / 24.0)))
        small = labels[k // 2:: k, k // 2:: k] if k > 1 else labels
    if boxes is None:
        boxes = ndi.find_objects(small, max_label=int(cand.max()))
    min_depth, min_part = qc["clump_concavity_depth"], qc["clump_concavity_part"]
    min_resid = qc["clump_ellipse_residual"]
    rest = []  # (index, mask, area) of the objects the ellipse does not decide
    for j, lab in enumerate(cand):
        box = boxes[int(lab) - 1] if int(lab) <= len(boxes) else None
        if box is None:
            continue
        pad = max(3, int(0.3 * max(s.stop - s.start for s in box)))
        sl = tuple(slice(max(0, s.start - pad), s.stop + pad) for s in box)
        m = np.pad(small[sl] == lab, 1)  # room for the hull and the ellipse on every side
        area = int(m.sum())
        if area < 20:
            continue
        yy, xx = _nonzero_2d(m)
        cy, cx = yy.mean(), xx.mean()
        cov = _cov_rows(np.stack([yy - cy, xx - cx]))  # = np.cov
        try:
            inv = np.linalg.inv(cov)
        except np.linalg.LinAlgError:
            continue
        gy, gx = np.ogrid[: m.shape[0], : m.shape[1]]
        dy, dx = gy - cy, gx - cx
        ellipse = inv[0, 0] * dy * dy + 2 * inv[0, 1] * dy * dx + inv[1, 1] * dx * dx <= 4.0  # semi-axes 2σ
        if np.count_nonzero(m ^ ellipse) >= min_resid * area:
            out[j] = True
            continue
        rest.append((j, m, area))
    if not rest:
        return out
    bounds = _hull_row_bounds([m for _, m, _ in rest])  # all hulls at once
    bayed = []  # the objects with two or more bays
    for k, (j, m, area) in enumerate(rest):
        hull = _hull_image(m, _bounds_of(bounds, k))  # = skimage.morphology.convex_hull_image(m)
        bays, n_bays = ndi.label(hull & ~m)
        if n_bays >= 2:
            bayed.append((j, m, area, hull, bays, n_bays))
    # = [float(ndi.distance_transform_edt(m).max()) for each m], in one call
    radii = _inscribed_radii([b[1] for b in bayed])
    for (j, m, area, hull, bays, n_bays), r_in in zip(bayed, radii):
        # distance from the hull's edge (= ndi.distance_transform_edt(hull)), needed on the bays only
        hull_depth = np.zeros(m.shape)
        by, bx = _nonzero_2d(bays)
        hull_depth[by, bx] = _edt_at(hull, by, bx)
        depth = _label_max(hull_depth, bays, n_bays)[1:]  # = ndi.maximum(hull_depth, bays, 1..n_bays)
        deep = [int(i) for i in np.argsort(-depth)[:4] if depth[i] >= min_depth * r_in]
        tips = [np.unravel_index(np.argmax(np.where(bays == i + 1, hull_depth, -1.0)), m.shape) for i in deep]
        for a in range(len(tips)):
            for b in range(a + 1, len(tips)):
                rr, cc = draw_line(int(tips[a][0]), int(tips[a][1]), int(tips[b][0]), int(tips[b][1]))
                cut = m.copy()
                cut[rr, cc] = False  # an 8-connected line separates 4-connected parts
                parts, n_parts = ndi.label(cut)
                if n_parts >= 2 and np.sort(np.bincount(parts.ravel())[1:])[-2] >= min_part * area:
                    out[j] = True
                    break
            if out[j]:
                break
    return out


def _cov_rows(m: np.ndarray) -> np.ndarray:
    """``np.cov(m)`` of a 2-D float64 array of >= 2 rows (variables) and >= 2 columns, exactly: numpy's
    steps without its argument handling (~3x faster on one object's pixel coordinates): a copy minus
    its row means, ``np.dot(X, X.T.conj())`` scaled by ``1 / (n - 1)``. Other input goes to ``np.cov``."""
    if m.ndim != 2 or m.dtype != np.float64 or m.shape[0] < 2 or m.shape[1] < 2:
        return np.cov(m)
    x = m.copy()
    x -= x.mean(axis=1)[:, None]
    c = np.dot(x, x.T.conj())
    c *= np.true_divide(1, m.shape[1] - 1)
    return c


def _inscribed_radii(masks: list[np.ndarray]) -> list[float]:
    """``float(ndi.distance_transform_edt(m).max())`` of each 2-D bool mask whose border rows and columns
    are all False, exactly, from one transform of the masks placed side by side: a pixel outside a mask's
    rectangle is never nearer to its pixels than the rectangle's False frame (its projection onto the
    rectangle is a frame pixel, no farther in either axis), so every pixel has the same distance as in its
    own transform. One call instead of one per mask (scipy's wrapper costs ~0.1 ms a call)."""
    if not masks:
        return []
    x0 = np.cumsum([0] + [m.shape[1] for m in masks])
    canvas = np.zeros((max(m.shape[0] for m in masks), int(x0[-1])), bool)
    for m, a in zip(masks, x0[:-1].tolist()):
        canvas[: m.shape[0], a: a + m.shape[1]] = m
    # the largest squared distance per mask, then its square root: scipy's float64 distances are the
    # (correctly rounded, so monotonic) square roots of the same whole numbers
    d2 = _edt_squared(canvas, 32)
    if d2 is None:
        dt = ndi.distance_transform_edt(canvas)
        return [float(dt[: m.shape[0], a: a + m.shape[1]].max()) for m, a in zip(masks, x0[:-1].tolist())]
    return [float(np.sqrt(np.float64(d2[: m.shape[0], a: a + m.shape[1]].max())))
            for m, a in zip(masks, x0[:-1].tolist())]


def _at_least(img: np.ndarray, value: float) -> np.ndarray:
    """``img >= value``, exactly; integer images are compared with ``ceil(value)`` in their own dtype
    (the same pixels for whole numbers, ~6x faster than converting each pixel to float64)."""
    if np.issubdtype(img.dtype, np.integer) and math.isfinite(value):
        info = np.iinfo(img.dtype)
        c = math.ceil(value)
        if c > info.max:
            return np.zeros(img.shape, bool)
        if c <= info.min:
            return np.ones(img.shape, bool)
        return img >= img.dtype.type(c)
    return img >= value


def _qc_table(dapi: np.ndarray, labels: np.ndarray, pixel_size_um: float | None, diameter_px: float,
              saturation_value: float | None, qc: dict[str, float],
              no_data: np.ndarray | None = None) -> pd.DataFrame:
    n = int(labels.max())
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(QC_COLUMNS, [
            "int32", "float64", "float64", "int64", "float64", "float64", "float64", "float64", "float64",
            "float64", "float64", "bool", "float64", "bool", "object"])})
    grid = _label_grid(labels)
    props = _shape_props(labels, n, diameter_px, grid)
    idx = props["label"]
    area = props["area"]
    touches = props["touches"]
    mean_dapi = _label_sum(dapi, labels, n, labelled_only=True)[idx] / area  # area > 0 for every idx
    if saturation_value is not None:
        sat = np.bincount(labels[_at_least(dapi, saturation_value)], minlength=n + 1)[idx] / area
    else:
        sat = np.zeros(len(idx))
    focus = _focus_measure(dapi, labels, n, diameter_px, grid)[idx - 1]
    px_area = None if pixel_size_um is None else pixel_size_um ** 2
    touch = touches.astype(bool)
    if no_data is not None:  # a nucleus cut by the edge of the imaged area (padding) is a border nucleus
        near = ndi.binary_dilation(no_data, structure=np.ones((3, 3), bool))
        touch = touch | np.isin(idx, np.unique(labels[near]))
    typical_area = math.pi * diameter_px ** 2 / 4.0
    # the nuclei off the border (= the rows of df[~df["touches_border"]]: the same values and dtypes, so
    # pandas' medians are the same)
    inner = ~touch
    many = int(np.count_nonzero(inner)) >= 5
    med_area = float(pd.Series(area[inner]).median()) if many else np.nan
    med_focus = float(pd.Series(focus[inner]).median()) if many else np.nan
    solidity = props["solidity"]
    # a deeply notched object is a clump unless it is no bigger than one nucleus: then it is a lobulated one
    low_solidity = solidity < qc["min_solidity"]
    if many and qc["low_solidity_min_area_vs_median"] > 0:
        low_solidity &= area > qc["low_solidity_min_area_vs_median"] * med_area
    clump = (low_solidity
             | (many & (area > qc["pair_area_vs_median"] * med_area) & (solidity < qc["pair_solidity"]))
             | (many & (area > qc["max_area_vs_median"] * med_area)))
    # a large object that is not quite convex is a clump only with shape evidence of two bodies: a large
    # round nucleus (myelocyte, blast) with a notch in its outline is not
    big = ~clump & many & (area > qc["clump_area_vs_median"] * med_area) & (solidity < qc["clump_solidity"])
    if big.any():
        big[big] = _two_bodies(labels, idx[big], diameter_px, qc, props["small"], props["small_boxes"])
    # each rule: (token, boolean column) -- data, evaluated in this order
    rules = [
        ("border", touch),
        ("too_small", area < qc["min_area_fraction"] * typical_area),
        ("too_large", area > qc["max_area_fraction"] * typical_area),
        ("clump", clump | big),
        ("out_of_focus", (focus < qc["min_focus"]) | (many & (focus < qc["min_focus_vs_median"] * med_focus))),
        ("saturated", sat > qc["max_saturated_fraction"]),
    ]
    reasons = [[] for _ in range(len(idx))]
    for token, hit in rules:
        for i in np.flatnonzero(hit):
            reasons[i].append(token)
    reason = [";".join(r) for r in reasons]
    # the table in one construction, columns in QC_COLUMNS order (adding the last two columns to a built
    # table costs ~2x the construction)
    return pd.DataFrame({
        "label": idx.astype(np.int32),
        "centroid_y": props["centroid_y"],
        "centroid_x": props["centroid_x"],
        "area_px": area,
        "area_um2": area * px_area if px_area else np.full(len(idx), np.nan),
        "equivalent_diameter_um": (2 * np.sqrt(area / np.pi) * pixel_size_um) if pixel_size_um
        else np.full(len(idx), np.nan),
        "solidity": solidity,
        "eccentricity": props["eccentricity"],
        "mean_dapi": mean_dapi,
        "integrated_dapi": mean_dapi * area,
        "focus": focus,
        "touches_border": touch,
        "saturated_fraction": sat,
        "scorable": np.array([r == "" for r in reason], bool),  # = the exclusion_reason column == ""
        "exclusion_reason": reason,
    })


# --------------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------------

def _checked_labels(labels: np.ndarray, shape: tuple, backend: str) -> np.ndarray:
    """A backend's labels as int32, checked: the field's shape, whole numbers (integer or boolean-free
    integral floats), no negative values, at most 2^31 - 1 (else an error naming the backend, never a silent
    truncation, wrap or a mask taken for one nucleus)."""
    where = f"backend {backend!r}"
    if labels.shape != shape:
        raise FishcountError(where, f"returned labels of shape {labels.shape}, expected {shape}")
    if labels.dtype == np.bool_:
        raise FishcountError(where, "returned a boolean mask, expected integer labels (one number per nucleus; "
                                    "e.g. skimage.measure.label(mask))")
    if np.issubdtype(labels.dtype, np.floating):
        if not np.isfinite(labels).all() or not np.array_equal(labels, np.round(labels)):
            raise FishcountError(where, f"returned {labels.dtype} labels that are not whole numbers (NaN, inf "
                                        "or fractions); expected integer labels")
    elif not np.issubdtype(labels.dtype, np.integer):
        raise FishcountError(where, f"returned labels of dtype {labels.dtype}, expected integers")
    if labels.size and labels.min() < 0:
        raise FishcountError(where, f"returned negative labels (min {labels.min()}); 0 is background, nuclei 1, 2, ...")
    if labels.size and labels.max() > np.iinfo(np.int32).max:
        raise FishcountError(where, f"returned a label {labels.max()} above {np.iinfo(np.int32).max}; relabel "
                                    "them 1..n (skimage.segmentation.relabel_sequential)")
    return labels.astype(np.int32, copy=False)


def segment_nuclei(dapi: np.ndarray, pixel_size_um: float | None = None, *, backend: str = "classical",
                   saturation_value: float | None = None, nucleus_diameter_um: float | None = None,
                   diameter_px: float | None = None, qc: dict[str, float] | None = None,
                   size_check: bool = True, source: str = "<array>", **params: Any) -> Segmentation:
    """Segment nuclei in a DAPI image and measure each one.

    Parameters
    ----------
    dapi : np.ndarray
        (Y, X) DAPI image, any real dtype, raw intensity units.
    pixel_size_um : float, optional
        Pixel size in µm. When given, the typical nucleus diameter is ``nucleus_diameter_um /
        pixel_size_um`` pixels and µm columns are filled; otherwise the diameter is estimated from the image
        (:func:`estimate_nucleus_diameter`) and µm columns are NaN.
    backend : str
        ``"classical"`` (default, no model), ``"cellpose"``, ``"stardist"`` or any registered/entry-point
        backend.
    saturation_value : float, optional
        Intensity at which the camera saturates (e.g. 65535 for uint16). Default for integer images:
        :func:`fishcount.io.saturation_level` of the image (the dtype maximum, or a 10-15-bit camera's full
        scale when the image's maximum is exactly that, e.g. 4095); none for float images.
    nucleus_diameter_um : float, optional
        Typical nucleus diameter in µm (default :data:`DEFAULT_NUCLEUS_DIAMETER_UM`); only used with a
        pixel size.
    diameter_px : float, optional
        Force the typical nucleus diameter in pixels (overrides both of the above).
    size_check : bool
        Classical backend: when the nuclei segmented at the nominal diameter (with a pixel size) or the
        estimated one (without) are much larger or smaller than it (median outside
        ``size_check_low``-``size_check_high`` x d, resp. ``estimate_check_low``-``estimate_check_high``,
        at least ``size_check_min_nuclei`` of them; ``segment_defaults.toml`` [scale]), segment again at
        their own size (:func:`_size_check`); ``diameter_source`` then ends in ", adjusted to the nuclei".
        False keeps the nominal or estimated diameter.
    qc : dict, optional
        Overrides of :data:`QC_DEFAULTS`.
    source : str
        Name of the image for error messages.
    **params
        Backend parameters (classical: :data:`CLASSICAL_DEFAULTS`).

    Returns
    -------
    Segmentation
        Labels (Y, X) int32 and the QC table. An image without nuclei gives 0 labels and an empty table;
        ``params["message"]`` then says why.

    Raises
    ------
    InputError
        The image is not 2-D, too small, not numeric, contains NaN, or a parameter is out of range.
    FishcountError
        Unknown backend, or an optional backend that is not installed.
    """
    raw = np.asarray(dapi)
    img = _as_2d_float(raw, source)
    if pixel_size_um is not None:
        from ._datafile import checked_um

        pixel_size_um = checked_um(pixel_size_um, "pixel size", source)
    qc_p = dict(QC_DEFAULTS)
    if qc:
        bad = set(qc) - set(QC_DEFAULTS)
        if bad:
            raise InputError(source, f"unknown QC parameter(s) {sorted(bad)}; known: {sorted(QC_DEFAULTS)}")
        qc_p.update({k: float(v) for k, v in qc.items()})
    if saturation_value is None and np.issubdtype(raw.dtype, np.integer) and raw.size:
        from .io import saturation_level  # the camera's full scale: 4095 for 12 bits in a uint16 image

        saturation_value = saturation_level(raw.dtype, float(raw.max()))[0]
    nd_um = DEFAULT_NUCLEUS_DIAMETER_UM if nucleus_diameter_um is None else float(nucleus_diameter_um)
    exact = _whole_uint16(img)  # the same values; 16-bit fast paths for float fields of camera counts
    exact, n_hot = _hot_pixels_removed(exact)  # single camera hot pixels far above their neighbours
    no_data = _no_data(exact)  # padding around the imaged area (stitched, registered or rotated fields)
    if no_data is not None:
        rows = np.flatnonzero(~no_data[0].all(axis=1))
        cols = np.flatnonzero(~no_data[0].all(axis=0))
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        if (y1 - y0, x1 - x0) != img.shape and min(y1 - y0, x1 - x0) >= 16:
            # strips of padding: segment the imaged area's bounding box alone (exactly as if it had been
            # saved without them) and put the result back in place
            sub = segment_nuclei(img[y0:y1, x0:x1], pixel_size_um, backend=backend,
                                 saturation_value=saturation_value, nucleus_diameter_um=nucleus_diameter_um,
                                 diameter_px=diameter_px, qc=qc, size_check=size_check, source=source, **params)
            labels = np.zeros(img.shape, np.int32)
            labels[y0:y1, x0:x1] = sub.labels
            table = sub.qc.copy()
            table["centroid_y"] += y0
            table["centroid_x"] += x0
            used = dict(sub.params)
            used["no_data_fraction"] = float(np.count_nonzero(no_data[0]) / no_data[0].size)
            used["imaged_box_yx"] = [y0, y1, x0, x1]
            return Segmentation(labels=labels, qc=table, pixel_size_um=pixel_size_um,
                                diameter_px=sub.diameter_px, diameter_source=sub.diameter_source, params=used)
        exact = exact.copy()
        exact[no_data[0]] = no_data[1]
        no_data = no_data[0]
    fitted = True  # (the estimate's: a quick segmentation found objects of the scale it returns)
    if diameter_px is not None:
        if not (np.isfinite(diameter_px) and diameter_px > 1):
            raise InputError(source, f"diameter_px must be > 1 pixel, got {diameter_px}")
        d, d_src = float(diameter_px), "user"
    elif pixel_size_um is not None:
        if not (nd_um > 0):
            raise InputError(source, f"nucleus_diameter_um must be > 0, got {nucleus_diameter_um}")
        d, d_src = nd_um / float(pixel_size_um), "pixel size"
        if d < 3:
            what = "the nucleus diameter (nucleus_diameter_um)" if nucleus_diameter_um is not None \
                else "the pixel size (µm, not nm)"
            raise InputError(source, f"nuclei would be {d:.1f} px wide at {pixel_size_um} µm/px and "
                                     f"{nd_um:g} µm: check {what}")
    else:
        d, fitted = _estimate_diameter(exact)
        d_src = "estimated from image"
    if nucleus_diameter_um is not None and not (0.5 <= float(nucleus_diameter_um) <= 100.0):
        raise InputError(source, f"nucleus_diameter_um must be 0.5-100 µm (marrow nuclei are ~6-12), got "
                                 f"{nucleus_diameter_um}")  # the range of segment_defaults.toml [scale]
    used = {"backend": backend, "nucleus_diameter_um": nd_um if d_src == "pixel size" else None,
            "diameter_px": d, "diameter_source": d_src, "saturation_value": saturation_value,
            "qc": qc_p, "message": "", "hot_pixels": n_hot}
    if nucleus_diameter_um is not None and d_src == "estimated from image":
        used["message"] = ("nucleus_diameter_um needs a pixel size: ignored, the nucleus size was estimated from "
                           "the image (give the pixel size, or diameter_px)")
    if d_src == "estimated from image" and np.isfinite(d) and not fitted:
        # the quick segmentation found no objects of the scale returned: say so (a defocused, over-exposed
        # or display-stretched tissue image; the size check below may still find the nuclei's own size)
        used["message"] = ("nucleus size uncertain: no scale where the segmented objects fit it; give the "
                           "pixel size if the nuclei look wrong")
    func = _get_backend(backend)
    if not np.isfinite(d):
        labels = np.zeros(img.shape, np.int32)
        used["message"] = "no nuclei found: the image has no object brighter than its background"
        d = float("nan")
    else:
        if backend == "classical":
            used["classical"] = {**CLASSICAL_DEFAULTS, **params}
        else:
            used[backend] = dict(params)
        try:
            labels = np.asarray(func(exact if backend == "classical" else img, d, **params))
        except FishcountError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plug-in's failure, named (one line, not its traceback)
            if backend == "classical":
                raise
            raise FishcountError(f"backend {backend!r}", f"failed: {type(exc).__name__}: {exc}") from exc
        labels = _checked_labels(labels, img.shape, backend)
        labels = _outside_removed(labels, no_data)
        if labels.max() == 0:
            used["message"] = "no nuclei found"
    table = _qc_table(exact, labels, pixel_size_um, d if np.isfinite(d) else 1.0, saturation_value, qc_p, no_data)
    if size_check and d_src in ("pixel size", "estimated from image") and backend == "classical":
        estimated = d_src != "pixel size"
        d_fit, ratio = _size_check(table, d, estimated=estimated)
        # median nucleus found / d, for provenance (None: too few nuclei to judge)
        used["size_check_ratio"] = float(ratio) if np.isfinite(ratio) else None
        # the field's nuclei are not the nominal/estimated size: segment again at theirs, up to
        # size_check_max_passes times while they keep moving; a pass is kept only when its nuclei fit its
        # diameter (ratio inside the band). Objects that follow the diameter wherever it goes are not
        # nuclei: pixel noise segmented at half the estimate gives blobs of about half its size again
        # (0.46 -> 0.48 on a photon-starved DSB2018 image), so no pass lands in the band and the first stands
        after = []
        d_prev = d
        for _ in range(int(SIZE_CHECK["size_check_max_passes"])):
            if d_fit is None or abs(d_fit - d_prev) < 1e-6 * d_prev:
                break
            again = _outside_removed(np.asarray(func(exact, d_fit, **params)).astype(np.int32, copy=False), no_data)
            table2 = _qc_table(exact, again, pixel_size_um, d_fit, saturation_value, qc_p, no_data)
            d_next, ratio2 = _size_check(table2, d_fit, estimated=estimated)
            after.append(float(ratio2) if np.isfinite(ratio2) else None)
            if _size_check_band(ratio2, estimated):
                d, d_src, labels, table = d_fit, f"{d_src}, adjusted to the nuclei", again, table2
                used.update(diameter_px=d, diameter_source=d_src,
                            message="" if again.max() else "no nuclei found")
                break
            d_prev, d_fit = d_fit, d_next
        if after:
            used["size_check_ratio_after"] = after
    if no_data is not None:
        used["no_data_fraction"] = float(np.count_nonzero(no_data) / no_data.size)
    return Segmentation(labels=labels, qc=table, pixel_size_um=pixel_size_um, diameter_px=float(d),
                        diameter_source=d_src, params=used)


def _outside_removed(labels: np.ndarray, no_data: np.ndarray | None) -> np.ndarray:
    """``labels`` with the padding (``no_data``, bool) cleared and the labels renumbered 1..n in order."""
    if no_data is None or not labels[no_data].any():
        return labels
    out = np.where(no_data, 0, labels)
    present = np.zeros(int(labels.max()) + 1, bool)
    present[np.unique(out)] = True
    present[0] = False
    new_id = np.cumsum(present).astype(np.int32)  # old label -> its rank among those left (0 stays 0)
    return np.take(new_id, out)


def _no_data(img: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Padding around the imaged area: ``(mask, fill value)`` or None.

    Stitched, registered or rotated fields are padded with a constant (usually 0) outside the area the
    camera saw. Its step to the field's background is an edge that the scale estimate and the background
    flattening take for structure (DSB2018 ``0b0d5771`` with a 25 % black border: estimate 20 -> 46 px, F1
    0.86 -> 0). Padding is the set of pixels equal to the image minimum that survive a binary opening with
    a ``no_data_opening_px`` square (solid, not the dark pixels of a noisy background), in the connected
    regions that touch the image edge, covering at least ``no_data_min_fraction`` of the field, whose
    neighbouring background pixels (the pixels of a 3-px ring below Otsu's threshold of the valid pixels:
    not the nuclei the padding cuts) have a median more than ``no_data_min_step_sigmas`` of their own
    noise SD (1.4826 MAD) above the minimum, when at most ``no_data_max_inside`` of the other pixels are at
    the minimum too. The last two tests keep clipped-black backgrounds (8-bit exports whose background is
    0 over most of the field) out: they are background, and their nuclei are not cut by anything. The mask
    is filled with that median (``segment_defaults.toml`` [scale]); :func:`segment_nuclei` segments the
    bounding box of the rest alone when the padding is strips along the edges.

    Parameters
    ----------
    img : np.ndarray
        (Y, X) image, any real dtype.

    Returns
    -------
    tuple of (np.ndarray, float) or None
        (Y, X) bool padding mask and the fill value (in ``img``'s units, integral for integer images).
    """
    frac = NO_DATA["no_data_min_fraction"]
    if frac <= 0 or frac > 1:
        return None
    v = img.min()
    m = img == v
    if np.count_nonzero(m) < frac * m.size:
        return None
    k = max(1, int(NO_DATA["no_data_opening_px"]))
    solid = _binary_morph(_binary_morph(m, np.ones((k, k), bool), erode=True), np.ones((k, k), bool))
    lab, n = ndi.label(solid)
    if n == 0:
        return None
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    edge = edge[edge > 0]
    if edge.size == 0:
        return None
    pad = np.isin(lab, edge)
    if np.count_nonzero(pad) < frac * pad.size:
        return None
    # back to the whole connected regions at the minimum (the opening lost their narrow tips: the corner
    # of a rotated field's wedge)
    lab_m, _ = ndi.label(m)
    pad = np.isin(lab_m, np.unique(lab_m[pad]))
    # a camera's image holds (almost) no pixel at the padding value: a background clipped to black does
    # (DSB2018 dev images whose minimum covers a solid edge region: 0.2-56 % of the rest is at it too)
    if np.count_nonzero(m & ~pad) > NO_DATA["no_data_max_inside"] * np.count_nonzero(~pad):
        return None
    ring = _binary_morph(pad, np.ones((7, 7), bool)) & ~m
    valid = img[~pad]
    if not ring.any() or valid.size == 0:
        return None
    # the background next to the padding: ring pixels below Otsu's threshold of the valid pixels (nuclei
    # cut by the padding's edge can cover much of the ring; DSB2018 06c77933 with a black border: ring
    # median 19, background 7)
    t = _otsu(valid[:: max(1, valid.size // 250_000)].astype(np.float64))
    near_bg = img[ring & (img < t)]
    if near_bg.size < 10:
        near_bg = valid[valid < t] if np.any(valid < t) else valid
    near_bg = near_bg.astype(np.float64)
    b = float(np.median(near_bg))
    sd = 1.4826 * float(np.median(np.abs(near_bg - b)))  # the background's noise
    if not (b - float(v) > NO_DATA["no_data_min_step_sigmas"] * sd):
        return None
    if np.issubdtype(img.dtype, np.integer):
        b = float(round(b))
    return pad, b


def median_nucleus_diameter_px(table: pd.DataFrame, min_solidity: float | None = None) -> float:
    """Median equivalent diameter (px) of the nuclei of a QC table that do not touch the image edge (and
    have solidity >= ``min_solidity`` when given: clumps left unsplit would inflate it); NaN with fewer
    than ``size_check_min_nuclei`` of them. ``table``: :func:`_qc_table` columns ``area_px``,
    ``touches_border``, ``solidity``."""
    keep = ~table["touches_border"].to_numpy(bool)
    if min_solidity is not None:
        keep &= table["solidity"].to_numpy(float) >= min_solidity
    if np.count_nonzero(keep) < SIZE_CHECK["size_check_min_nuclei"]:
        return float("nan")
    return 2.0 * math.sqrt(float(np.median(table["area_px"].to_numpy(float)[keep])) / math.pi)


def _size_check(table: pd.DataFrame, d: float, estimated: bool = False) -> tuple[float | None, float]:
    """Nominal (or estimated) nucleus size vs the nuclei segmented with it: the diameter to segment again
    with (or None) and the ratio measured.

    With a pixel size the typical diameter is the nominal ``nucleus_diameter_um`` (9 µm), but fields of
    larger or smaller nuclei exist (other tissues, other species, blasts): segmented at 9 µm, nuclei of
    12 µm are over-split (each is > 1.5 typical areas) and nuclei of 6 µm look lobe-sized (two touching
    ones are joined as lobes). The median equivalent diameter of the nuclei that do not touch the image
    edge (at least ``size_check_min_nuclei``) over ``d`` is ~0.85-0.91 on typical marrow fields (6-12 µm
    nuclei; the median visible nucleus is smaller than the nominal mean), ~1.2 for 9-15 µm and ~0.7 for 5-8
    µm nuclei. Outside ``[size_check_low, size_check_high]`` the field is segmented again with
    ``d = median / size_check_ratio`` (the ratio of typical fields), within 0.5-2x the nominal ``d``.

    Without a pixel size (``estimated``), ``d`` is itself the median diameter of the objects of a quick
    segmentation (:func:`estimate_nucleus_diameter`), so the nuclei segmented with it have a median of
    ~0.9-1.2 ``d`` (DSB2018 dev images 0.89-1.19). Outside ``[estimate_check_low,
    estimate_check_high]`` the estimate missed the nuclei (elongated nuclei side by side: the scale space
    sees their width, DSB2018 ``538b7673`` 11.8 px against a median of 17.3 px found, 19.7 px annotated)
    and the field is segmented again with ``d`` = that median, within 0.5-2x the estimate. Only convex
    nuclei (solidity >= ``estimate_check_min_solidity``) count here: clumps of nuclei the first pass did
    not split make the median larger than the nuclei, and segmented at their size more of them are joined
    (DSB2018 ``9ebcfaf2`` enlarged 3.3x: all objects 1.28 x the estimate, convex ones 1.23).

    Parameters
    ----------
    table : pd.DataFrame
        QC table of the labels segmented with ``d`` (:func:`_qc_table`: ``area_px``, ``solidity``,
        ``touches_border``).
    d : float
        Typical nucleus diameter used, px.
    estimated : bool
        ``d`` was estimated from the image (the ``estimate_check_*`` band, ratio 1), not set by a pixel size.

    Returns
    -------
    d_fit : float or None
        The diameter (px) to segment again with, or None when the nominal (estimated) one fits.
    ratio : float
        Median equivalent diameter of the nuclei off the edge over ``d``; NaN when there are fewer than
        ``size_check_min_nuclei`` (or the check is off).
    """
    c = SIZE_CHECK
    ratio = 1.0 if estimated else c["size_check_ratio"]
    if _size_check_band(float("nan"), estimated):  # the check is off
        return None, float("nan")
    med = median_nucleus_diameter_px(table, c["estimate_check_min_solidity"] if estimated else None)
    if not np.isfinite(med):
        return None, float("nan")
    r = med / d
    if _size_check_band(r, estimated):
        return None, r
    d_fit = float(np.clip(med / ratio, 0.5 * d, 2.0 * d))
    if estimated:  # never below the scale estimate's smallest scale (2 px sigma: blobs of 2 sqrt(2) 2 px)
        d_fit = max(d_fit, 4.0 * math.sqrt(2.0))
    return d_fit, r


def _size_check_band(r: float, estimated: bool) -> bool:
    """Whether the size check's ratio ``r`` (median nucleus found / d) is inside its band
    (``size_check_low``-``size_check_high``, or ``estimate_check_*`` for an estimated d). NaN is inside only
    when the check is off (low 0 and high inf)."""
    c = SIZE_CHECK
    low, high = ((c["estimate_check_low"], c["estimate_check_high"]) if estimated
                 else (c["size_check_low"], c["size_check_high"]))
    if low <= 0 and not np.isfinite(high):
        return True
    return bool(low <= r <= high)


# --------------------------------------------------------------------------------------------------
# evaluation helper (benchmarks and tests)
# --------------------------------------------------------------------------------------------------

def match_labels(true: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float]:
    """Match two label images one-to-one at IoU >= ``iou_threshold`` (greedy by IoU).

    Returns
    -------
    dict
        ``tp, fp, fn, f1, mean_iou`` (mean IoU of the matched pairs, NaN without matches).
    """
    true = np.asarray(true).astype(np.int64)
    pred = np.asarray(pred).astype(np.int64)
    nt, npd = int(true.max()), int(pred.max())
    t_ids = np.unique(true)
    t_ids = t_ids[t_ids > 0]
    p_ids = np.unique(pred)
    p_ids = p_ids[p_ids > 0]
    if t_ids.size == 0 or p_ids.size == 0:
        return {"tp": 0, "fp": int(p_ids.size), "fn": int(t_ids.size), "f1": 1.0 if t_ids.size == p_ids.size == 0
                else 0.0, "mean_iou": float("nan")}
    sel = (true > 0) & (pred > 0)
    key = true[sel] * (npd + 1) + pred[sel]
    k, inter = np.unique(key, return_counts=True)
    ti, pi = k // (npd + 1), k % (npd + 1)
    at = np.bincount(true.ravel(), minlength=nt + 1)
    ap = np.bincount(pred.ravel(), minlength=npd + 1)
    iou = inter / (at[ti] + ap[pi] - inter)
    order = np.argsort(-iou)
    used_t, used_p = set(), set()
    ious = []
    for j in order:
        if iou[j] < iou_threshold:
            break
        if ti[j] in used_t or pi[j] in used_p:
            continue
        used_t.add(ti[j])
        used_p.add(pi[j])
        ious.append(iou[j])
    tp = len(ious)
    fp = int(p_ids.size) - tp
    fn = int(t_ids.size) - tp
    return {"tp": tp, "fp": fp, "fn": fn, "f1": 2 * tp / (2 * tp + fp + fn),
            "mean_iou": float(np.mean(ious)) if ious else float("nan")}
