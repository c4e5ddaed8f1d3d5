"""Ground-truth interphase FISH fields for any probe panel.

:func:`simulate_field` draws a field of nuclei whose true signal counts come from the panel's
calls, renders a DAPI channel and one channel per panel signal with the artefacts that matter for
counting (touching and lobulated nuclei, chromatin texture, uneven illumination, nuclear
autofluorescence, varying PSF width and brightness, dim, defocused and split signals, debris,
Poisson + read noise, nuclei cut by the border, optional z-stacks), and returns the image with the
true nucleus mask and two truth tables. :func:`write_simulated_field` writes it as an OME-TIFF with
its truth files beside it. Every length is in µm and converted with ``pixel_size_um``.

Scoring conventions built into the truth (see ``docs/simulator.md``):

* a *split* signal (one true signal rendered as a doublet closer than one signal diameter) counts as
  ONE signal -- the split-signal rule, clinical.md §3.2 (Leica HER2 guide: "Count 2 signals that are
  the same size and separated by a distance equal or less than the diameter of the signal, as one");
* countable signals of one nucleus are placed at least ``min_signal_separation`` (1.5) signal
  diameters apart, so that every true signal is countable in principle (closer signals are not
  countable in reality, clinical.md §3.2);
* in fusion panels a *fused* signal is a target + partner pair closer than the panel's
  ``fusion_distance_um`` and counts as one ``fusion``; separated partner signals are placed at least
  1.5 fusion distances from every other signal (anchors.md a2: fusion ≤ 0.8 µm).

Example
-------
>>> import fishcount as fc
>>> sim = fc.simulate_field("del5q", shape=(256, 256), n_nuclei=4, seed=1)
>>> sim.image.shape, sim.channel_names
((3, 256, 256), ('DAPI', 'EGR1', 'D5S23'))
"""
from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from ._atomic import staged_files
from .errors import InputError
from .panels import FUSION, Panel, load_panel

__all__ = [
    "Realism",
    "SimulatedField",
    "simulate_field",
    "write_simulated_field",
    "truth_paths",
    "CLEAN",
    "DEFAULT_PIXEL_SIZE_UM",
]

#: Default pixel size (µm/px): a 60-63x oil objective with a 6.5 µm camera pixel (~0.1 µm) up to a
#: 40x objective (~0.16 µm); fishcount's algorithms are judged over this range.
DEFAULT_PIXEL_SIZE_UM = 0.16

_SPOT_KINDS = ("signal", "split_part", "debris", "fused_part")


@dataclass(frozen=True)
class Realism:
    """Artefact knobs of :func:`simulate_field` (pass any of them as keyword arguments).

    All lengths in µm, intensities in ADU (camera counts) above the offset, fractions in [0, 1].

    Attributes
    ----------
    nucleus_diameter_um : (float, float)
        Range of nucleus diameters (uniform), 6-12 µm for marrow nuclei.
    density : float
        Target fraction of the field area covered by nuclei when ``n_nuclei`` is None.
    touching_fraction : float
        Fraction of nuclei placed in touching clusters (pairs and triples sharing a boundary).
    lobulated_fraction : float
        Fraction of nuclei that are granulocyte-like: 2-4 overlapping lobes forming ONE nucleus.
    other_fraction : float
        Fraction of all nuclei that get a non-normal, non-tracked call of the panel (e.g.
        tetraploid, gains); 0 disables.
    out_of_focus_fraction : float
        Fraction of nuclei lying ``defocus_um`` above or below the focal plane.
    defocus_um : float
        Focal offset of out-of-focus nuclei.
    signal_z_sd_um : float
        Standard deviation of a signal's depth around its nucleus' mid-plane (2-D fields are
        sharp at the mid-plane; deeper signals are wider and dimmer).
    depth_of_field_um : float
        Defocus at which a signal's PSF width grows by sqrt(2) (Rayleigh-like range).
    chromatin_texture : float
        Relative amplitude (SD) of the DAPI chromatin texture.
    dapi_level_adu : float
        Mean DAPI intensity inside nuclei.
    dapi_cv : float
        Nucleus-to-nucleus coefficient of variation of DAPI brightness.
    signal_peak_adu : float
        Median in-focus peak amplitude of a probe signal.
    signal_cv : float
        Log-normal spread of signal brightness.
    signal_sigma_cv : float
        Relative spread of signal PSF width (sigma = diameter / 2.355 x U(1 - cv, 1 + 1.5 cv)).
    dim_fraction : float
        Fraction of signals rendered at 20-45 % of their brightness (weak hybridisation).
    diffuse_fraction : float
        Fraction of signals rendered 1.6-2.4x wider (diffuse signal; counts as one, clinical.md §3.2).
    failed_hybridization_fraction : float
        Fraction of nuclei in which one probe (a random channel) failed to hybridise: its signals
        are rendered at 2-6 % brightness. Such nuclei are not scored (clinical.md §3.2: "Nuclei with
        no signals or with signals of only 1 color should not be scored"); default 0.
    split_fraction : float
        Fraction of signals rendered as a doublet closer than one signal diameter (counts as one).
    debris_per_1000um2 : float
        Debris signals per 1000 µm² of field, outside nuclei.
    debris_all_channels_fraction : float
        Fraction of debris that lights up in every probe channel (non-specific fluorescence).
    autofluorescence_adu : float
        Mean nuclear autofluorescence in probe channels.
    probe_background_adu : float
        Diffuse background of the probe channels outside nuclei.
    dapi_background_adu : float
        Diffuse background of the DAPI channel outside nuclei.
    illumination_falloff : float
        Relative intensity loss at the field corners (vignetting), per channel.
    offset_adu : float
        Camera offset added to every pixel.
    read_noise_adu : float
        Camera read noise SD (ADU).
    gain_adu_per_photon : float
        Camera conversion gain: photon (Poisson) noise has variance ``gain x signal`` in ADU²
        (lower gain = less noise for the same ADU level; a camera digitising 4 photo-electrons
        per ADU has 0.25).
    hot_pixel_fraction : float
        Fraction of the camera's pixels that are hot (default 0): the same pixels in every channel and
        plane (a sensor defect), each ``hot_pixel_adu`` brighter. Drawn from their own generator, so the
        rest of the field is the same as without them.
    hot_pixel_adu : float
        What a hot pixel adds, ADU.
    channel_crosstalk : float
        Fraction of each probe channel's signals also recorded in every other probe channel (filter
        bleed-through; default 0). Signals only, before noise: the truth is unchanged.
    channel_shift_um : float
        Lateral (x) offset of the last probe channel's signals, µm (misregistered channels, e.g. filter
        cubes changed between exposures; default 0). The truth keeps the true positions.
    z_step_um : float
        Distance between z planes when ``z_planes > 1``.
    """

    nucleus_diameter_um: tuple[float, float] = (6.0, 12.0)
    density: float = 0.30
    touching_fraction: float = 0.15
    lobulated_fraction: float = 0.15
    other_fraction: float = 0.03
    out_of_focus_fraction: float = 0.04
    defocus_um: float = 1.6
    signal_z_sd_um: float = 0.3
    depth_of_field_um: float = 0.7
    chromatin_texture: float = 0.25
    dapi_level_adu: float = 1800.0
    dapi_cv: float = 0.2
    signal_peak_adu: float = 700.0
    signal_cv: float = 0.3
    signal_sigma_cv: float = 0.15
    dim_fraction: float = 0.06
    diffuse_fraction: float = 0.04
    failed_hybridization_fraction: float = 0.0
    split_fraction: float = 0.05
    debris_per_1000um2: float = 0.8
    debris_all_channels_fraction: float = 0.3
    autofluorescence_adu: float = 60.0
    probe_background_adu: float = 30.0
    dapi_background_adu: float = 40.0
    illumination_falloff: float = 0.25
    offset_adu: float = 100.0
    read_noise_adu: float = 2.0
    gain_adu_per_photon: float = 0.5
    hot_pixel_fraction: float = 0.0
    hot_pixel_adu: float = 8000.0
    channel_crosstalk: float = 0.0
    channel_shift_um: float = 0.0
    z_step_um: float = 0.4

    def validate(self, source: str = "simulate_field") -> "Realism":
        """Check types and ranges; raise :class:`InputError` naming the bad option (never a numpy error from
        deep inside the simulation)."""
        nd = self.nucleus_diameter_um
        if not isinstance(nd, (tuple, list)) or len(nd) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in nd):
            raise InputError(source, f"nucleus_diameter_um must be two finite numbers (lo, hi) µm, e.g. 6,12; got {nd!r}")
        lo, hi = nd
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name != "nucleus_diameter_um" and (isinstance(v, bool) or not isinstance(v, (int, float))
                                                    or not math.isfinite(v)):
                raise InputError(source, f"{f.name} must be one finite number, got {v!r}")
        if not 0 < lo <= hi:
            raise InputError(source, f"nucleus_diameter_um must be (lo, hi) with 0 < lo <= hi µm, got {self.nucleus_diameter_um}")
        for name in (
            "touching_fraction", "lobulated_fraction", "other_fraction", "out_of_focus_fraction",
            "dim_fraction", "diffuse_fraction", "failed_hybridization_fraction", "split_fraction", "debris_all_channels_fraction", "illumination_falloff",
            "hot_pixel_fraction", "channel_crosstalk",
        ):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InputError(source, f"{name} must be in [0, 1], got {v}")
        if not 0.0 < self.density <= 0.7:
            raise InputError(source, f"density must be in (0, 0.7] (fraction of the field covered by nuclei), got {self.density}")
        for name in ("depth_of_field_um", "z_step_um", "dapi_level_adu", "signal_peak_adu", "gain_adu_per_photon"):
            v = getattr(self, name)
            if not v > 0:
                raise InputError(source, f"{name} must be > 0, got {v}")
        for name in (
            "defocus_um", "signal_z_sd_um", "chromatin_texture", "dapi_cv", "signal_cv", "signal_sigma_cv",
            "debris_per_1000um2", "autofluorescence_adu", "probe_background_adu", "dapi_background_adu", "offset_adu",
            "read_noise_adu", "hot_pixel_adu", "channel_shift_um",
        ):
            v = getattr(self, name)
            if not v >= 0:
                raise InputError(source, f"{name} must be >= 0, got {v}")
        if self.signal_sigma_cv >= 0.6:
            raise InputError(source, f"signal_sigma_cv must be < 0.6, got {self.signal_sigma_cv}")
        return self


#: Realism options that switch off every hard case (no touching/lobulated/defocused nuclei, no dim,
#: split or debris signals, flat illumination, low noise): ``simulate_field(**CLEAN)``.
CLEAN: dict[str, Any] = dict(
    touching_fraction=0.0, lobulated_fraction=0.0, other_fraction=0.0, out_of_focus_fraction=0.0,
    signal_z_sd_um=0.0, dim_fraction=0.0, diffuse_fraction=0.0, split_fraction=0.0, debris_per_1000um2=0.0,
    illumination_falloff=0.0, signal_cv=0.1, signal_sigma_cv=0.0, chromatin_texture=0.1, read_noise_adu=2.0,
)


@dataclass(frozen=True)
class SimulatedField:
    """A simulated field and its ground truth.

    Attributes
    ----------
    image : ndarray, uint16
        ``(C, Y, X)``, or ``(Z, C, Y, X)`` when simulated with ``z_planes > 1``; channel 0 is DAPI.
    channel_names : tuple of str
        ``("DAPI", *panel.signal_names)``.
    pixel_size_um : float
        Pixel size (µm/px), same in Y and X.
    labels : ndarray, int32
        ``(Y, X)`` true nucleus mask, 0 = background, labels 1..N (the row ``label`` of ``truth``).
    truth : DataFrame
        One row per nucleus: ``label, centroid_y, centroid_x`` (px, of the visible mask),
        ``area_um2`` (visible), ``count_<SIGNAL>...`` [``count_fusion``] (true counts: a split
        doublet counts as one, a fused pair as one fusion and not as separate signals),
        ``pattern, call, abnormal, tracked, lobulated, n_lobes, touching, cluster, border,
        out_of_focus, focus_um, diameter_um, n_split, n_dim, failed_signal`` (the probe that
        failed to hybridise in that nucleus, "" if none; its counts stay the biological ones).
    spots : DataFrame
        One row per rendered spot: ``signal_id`` (spots of one true signal share it), ``signal``
        (channel name), ``y, x`` (px, sub-pixel, may lie outside the frame for border nuclei),
        ``z_um`` (depth relative to the focal plane), ``label`` (0 for debris), ``kind`` (one of
        ``signal, split_part, debris, fused_part``), ``brightness`` (in-focus peak amplitude, ADU),
        ``sigma_um`` (in-focus PSF sigma), ``dim``, ``diffuse``, ``visible`` (inside the frame).
    panel_id : str
    seed : int
    z_step_um : float or None
        Plane spacing of a z-stack, None for a single plane.
    params : dict
        Every simulation parameter (realism options included), for provenance.
    """

    image: np.ndarray
    channel_names: tuple[str, ...]
    pixel_size_um: float
    labels: np.ndarray
    truth: pd.DataFrame
    spots: pd.DataFrame
    panel_id: str
    seed: int
    z_step_um: float | None = None
    params: dict = field(default_factory=dict)

    @property
    def signal_names(self) -> tuple[str, ...]:
        return self.channel_names[1:]

    def to_field(self, name: str = "<simulated>"):
        """This field as a :class:`fishcount.io.Field` (float32 copies, pixel size source "user")."""
        from .io import field_from_arrays

        if self.image.ndim == 4:
            dapi = self.image[:, 0]
            probes = {s: self.image[:, i + 1] for i, s in enumerate(self.signal_names)}
        else:
            dapi = self.image[0]
            probes = {s: self.image[i + 1] for i, s in enumerate(self.signal_names)}
        return field_from_arrays(dapi, probes, self.pixel_size_um, name=name, panel=self.params.get("panel_path") or self.panel_id)

    def channel(self, name: str, z: int | None = None) -> np.ndarray:
        """One channel as a ``(Y, X)`` array (plane ``z`` of a stack, default the middle plane)."""
        c = self.channel_names.index(name)
        if self.image.ndim == 4:
            return self.image[self.image.shape[0] // 2 if z is None else z, c]
        return self.image[c]


# ------------------------------------------------------------------------------------------
# counts from the panel's calls
# ------------------------------------------------------------------------------------------
def _default_value(panel: Panel, key: str) -> int:
    """Count for a pattern key the call does not constrain: the normal call's value, else 2 / 0."""
    normal = panel.call_rule(panel.normal_call)
    for k, rule in normal.pattern if normal else ():
        if k == key and rule.hi == rule.lo:
            return rule.lo
    return 0 if key == FUSION else 2


def _draw_counts(rng: np.random.Generator, panel: Panel, call: str, tries: int = 200) -> dict[str, int] | None:
    """Counts (per pattern key) whose call is ``call``; None if none found in ``tries`` draws."""
    rule = panel.call_rule(call)
    cap = panel.max_signals_per_channel
    pattern = dict(rule.pattern) if rule else {}
    for _ in range(tries):
        counts: dict[str, int] = {}
        for key in panel.pattern_keys:
            r = pattern.get(key)
            if r is None:
                counts[key] = _default_value(panel, key) if rule else int(rng.integers(0, 5))
                continue
            hi = min(r.hi if r.hi is not None else r.lo + 2, max(cap, r.lo))
            if hi <= r.lo:
                counts[key] = r.lo
            else:  # prefer values near the normal count: '>=3' gives 3 > 4 > 5, '<=2' gives 2 > 1 > 0
                vals = np.arange(r.lo, hi + 1)
                w = 0.45 ** np.abs(vals - _default_value(panel, key))
                counts[key] = int(rng.choice(vals, p=w / w.sum()))
        if panel.call_for(counts) == call:
            return counts
    return None


def _reachable(panel: Panel, rng: np.random.Generator) -> dict[str, dict[str, int] | None]:
    return {c: _draw_counts(rng, panel, c) for c in panel.call_names}


# ------------------------------------------------------------------------------------------
# nucleus shapes
# ------------------------------------------------------------------------------------------
def _blob(rng: np.random.Generator, radius_px: float, shape_hw: tuple[int, int], center: tuple[float, float],
          elong: float) -> np.ndarray:
    """A perturbed ellipse of mean radius ``radius_px`` inside a box of ``shape_hw``."""
    h, w = shape_hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy -= center[0]
    xx -= center[1]
    th = rng.uniform(0, np.pi)
    u = xx * math.cos(th) + yy * math.sin(th)
    v = -xx * math.sin(th) + yy * math.cos(th)
    a = radius_px * math.sqrt(elong)
    b = radius_px / math.sqrt(elong)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    ang = np.arctan2(v, u)
    edge = np.ones_like(rho)
    for k in (2, 3, 4, 5):
        edge += rng.normal(0, 0.025) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
    return rho <= edge


def _nucleus_shape(rng: np.random.Generator, diameter_px: float, lobes: int) -> np.ndarray:
    """A boolean nucleus mask (tight box). ``lobes`` >= 2 makes a granulocyte-like lobulated one."""
    r = diameter_px / 2.0
    if lobes <= 1:
        elong = rng.uniform(1.0, 1.35)
        half = int(math.ceil(r * math.sqrt(elong) * 1.15)) + 2
        m = _blob(rng, r, (2 * half + 1, 2 * half + 1), (half, half), elong)
    else:
        lr = r * rng.uniform(0.42, 0.52)
        centers = [(0.0, 0.0)]
        ang = rng.uniform(0, 2 * np.pi)
        for _ in range(lobes - 1):
            ang += rng.uniform(-1.1, 1.1)
            step = lr * rng.uniform(1.25, 1.55)  # < 2 lobe radii: consecutive lobes overlap -> one nucleus
            cy, cx = centers[-1]
            centers.append((cy + step * math.sin(ang), cx + step * math.cos(ang)))
        c = np.array(centers)
        c -= c.mean(axis=0)
        half = int(math.ceil(np.abs(c).max() + lr * 1.4)) + 2
        m = np.zeros((2 * half + 1, 2 * half + 1), bool)
        for cy, cx in c:
            m |= _blob(rng, lr * rng.uniform(0.9, 1.1), m.shape, (half + cy, half + cx), rng.uniform(1.0, 1.3))
    ys, xs = np.nonzero(m)
    return m[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]


# ------------------------------------------------------------------------------------------
# signal positions inside a nucleus
# ------------------------------------------------------------------------------------------
@dataclass
class _Obj:
    """One countable object: a single signal, a split doublet or a fused pair."""

    channels: tuple[int, ...]  # probe channel index per part
    kind: str                  # signal / split_part / fused_part
    part_sep_px: float         # distance between the two parts (0 for single)
    min_sep_px: float          # minimum distance to any other object's centre (before extents)


def _parts_inside(edt: np.ndarray, y: float, x: float, half_px: float, angle: float) -> list[tuple[float, float]]:
    """The two parts of a split or fused signal, ``half_px`` either side of its centre (y, x) at ``angle``
    (radians), turned in steps of 22.5° (no random draw: fields whose parts fit are unchanged) until both
    lie at least a pixel inside the nucleus (``edt``: its distance transform, local px), else moved
    together: a part outside its nucleus' mask is no longer that nucleus' signal."""
    def at(a: float, h: float) -> list[tuple[float, float]]:
        dy, dx = h * math.sin(a), h * math.cos(a)
        return [(y + dy, x + dx), (y - dy, x - dx)]

    def inside(p: tuple[float, float]) -> bool:
        iy, ix = int(round(p[0])), int(round(p[1]))
        return 0 <= iy < edt.shape[0] and 0 <= ix < edt.shape[1] and edt[iy, ix] >= 1.0

    for h in (half_px, 0.5 * half_px, 0.0):
        for k in range(8):
            parts = at(angle + k * math.pi / 8, h)
            if all(inside(p) for p in parts):
                return parts
    return at(angle, half_px)


def _place_objects(rng: np.random.Generator, allowed: np.ndarray, objs: list[_Obj], restarts: int = 12,
                   attempts: int = 400) -> np.ndarray | None:
    """Centres (n, 2) in ``allowed`` (local px) so that every pair respects its separation."""
    cand = np.argwhere(allowed).astype(np.float64)
    if len(cand) == 0:
        return None
    n = len(objs)
    if n == 0:
        return np.zeros((0, 2))
    ext = np.array([o.part_sep_px / 2 for o in objs])
    sep = np.array([o.min_sep_px for o in objs])
    order = np.argsort(-ext)  # place the widest objects first
    for _ in range(restarts):
        pos = np.zeros((n, 2))
        placed: list[int] = []
        ok = True
        for i in order:
            picks = cand[rng.integers(0, len(cand), size=attempts)] + rng.uniform(-0.5, 0.5, size=(attempts, 2))
            if placed:
                P = pos[placed]
                d = np.sqrt(((picks[:, None, :] - P[None, :, :]) ** 2).sum(-1))
                need = np.maximum(sep[i], sep[placed]) + ext[i] + ext[placed]
                good = np.nonzero((d >= need[None, :]).all(axis=1))[0]
            else:
                good = np.array([0])
            if len(good) == 0:
                ok = False
                break
            pos[i] = picks[good[0]]
            placed.append(i)
        if ok:
            return pos
    return None


# ------------------------------------------------------------------------------------------
# rendering helpers
# ------------------------------------------------------------------------------------------
def _add_gaussian(img: np.ndarray, y: float, x: float, amp: float, sigma_px: float) -> None:
    r = int(math.ceil(4 * sigma_px)) + 1
    iy, ix = int(round(y)), int(round(x))
    y0, y1 = max(iy - r, 0), min(iy + r + 1, img.shape[0])
    x0, x1 = max(ix - r, 0), min(ix + r + 1, img.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    gy = np.exp(-((np.arange(y0, y1) - y) ** 2) / (2 * sigma_px**2))
    gx = np.exp(-((np.arange(x0, x1) - x) ** 2) / (2 * sigma_px**2))
    img[y0:y1, x0:x1] += (amp * gy[:, None] * gx[None, :]).astype(img.dtype)


def _illumination(rng: np.random.Generator, shape: tuple[int, int], pad: int, frame: tuple[int, int],
                  falloff: float) -> np.ndarray:
    """Smooth vignetting: 1 at a centre near the frame centre, ``1 - falloff`` at the far corner."""
    if falloff == 0:
        return np.ones(shape, np.float32)
    H, W = frame
    cy = pad + H * rng.uniform(0.35, 0.65)
    cx = pad + W * rng.uniform(0.35, 0.65)
    yy = (np.arange(shape[0], dtype=np.float32) - cy)[:, None]
    xx = (np.arange(shape[1], dtype=np.float32) - cx)[None, :]
    rmax2 = max(cy - pad, pad + H - cy) ** 2 + max(cx - pad, pad + W - cx) ** 2
    f = falloff * rng.uniform(0.7, 1.0)
    return np.clip(1.0 - f * (yy**2 + xx**2) / rmax2, 0.05, None).astype(np.float32)


def _defocus_blur_um(dz_um: float, depth_of_field_um: float) -> float:
    """Extra blur (Gaussian sigma, µm) of nuclear DAPI at defocus ``dz_um``."""
    return 0.45 * abs(dz_um) * (0.7 / depth_of_field_um) ** 0.5


# ------------------------------------------------------------------------------------------
# the simulator
# ------------------------------------------------------------------------------------------
def simulate_field(
    panel: "str | Path | Panel" = "del5q",
    *,
    shape: tuple[int, int] = (1024, 1024),
    pixel_size_um: float = DEFAULT_PIXEL_SIZE_UM,
    abnormal_fraction: float = 0.3,
    pattern_mix: Mapping[str, float] | None = None,
    n_nuclei: int | None = None,
    seed: int = 0,
    z_planes: int = 1,
    **realism: Any,
) -> SimulatedField:
    """Simulate one interphase FISH field with known nuclei and signal counts.

    Parameters
    ----------
    panel : str, path or Panel
        Probe panel (shipped id, .toml file or loaded panel); sets the channels and the calls.
    shape : (int, int)
        Field size ``(Y, X)`` in pixels.
    pixel_size_um : float
        Pixel size in µm/px (default 0.16).
    abnormal_fraction : float
        Fraction of nuclei (exact, rounded) carrying an abnormal call drawn from ``pattern_mix``.
    pattern_mix : mapping of str to float, optional
        Call name -> relative weight among abnormal nuclei; default the panel's ``tracked_calls``
        with equal weights (e.g. del5q and monosomy5).
    n_nuclei : int, optional
        Number of nuclei; default from ``density`` and the mean nucleus size.
    seed : int
        Seed of the numpy Generator; equal seeds give identical fields.
    z_planes : int
        Number of z planes; > 1 returns a ``(Z, C, Y, X)`` stack spaced ``z_step_um`` apart.
    **realism
        Any field of :class:`Realism` (e.g. ``touching_fraction=0``, ``split_fraction=0.1``);
        ``simulate_field(**CLEAN)`` switches all hard cases off.

    Returns
    -------
    SimulatedField

    Raises
    ------
    InputError
        For an unknown realism option, out-of-range values, a ``pattern_mix`` naming a call the
        panel does not have or that no count vector reaches, or nuclei that do not fit the field.
    PanelError
        If the panel cannot be loaded.
    """
    src = "simulate_field"
    pnl = load_panel(panel)
    known = {f.name for f in fields(Realism)}
    bad = sorted(set(realism) - known)
    if bad:
        raise InputError(src, f"unknown realism option(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    if "nucleus_diameter_um" in realism and isinstance(realism["nucleus_diameter_um"], (list, tuple)):
        realism = dict(realism, nucleus_diameter_um=tuple(realism["nucleus_diameter_um"]))  # validated next
    R = Realism(**realism).validate(src)
    try:
        H, W = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise InputError(src, f"shape must be two integers (Y, X), got {shape!r}") from None
    if H < 32 or W < 32:
        raise InputError(src, f"shape must be at least 32 x 32 px, got {shape!r}")
    try:
        px = float(pixel_size_um)
        abnormal_fraction = float(abnormal_fraction)
    except (TypeError, ValueError):
        raise InputError(src, f"pixel_size_um and abnormal_fraction must be numbers, got {pixel_size_um!r}, "
                              f"{abnormal_fraction!r}") from None
    if not 0.01 <= px <= 2.0:
        raise InputError(src, f"pixel_size_um must be in [0.01, 2] µm/px, got {pixel_size_um!r}")
    if not 0.0 <= abnormal_fraction <= 1.0:
        raise InputError(src, f"abnormal_fraction must be in [0, 1], got {abnormal_fraction}")
    if int(z_planes) != z_planes or z_planes < 1:
        raise InputError(src, f"z_planes must be a whole number >= 1, got {z_planes!r}")
    z_planes = int(z_planes)
    if n_nuclei is not None and (int(n_nuclei) != n_nuclei or n_nuclei < 0):
        raise InputError(src, f"n_nuclei must be a whole number >= 0, got {n_nuclei!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(src, f"seed must be a whole number >= 0, got {seed!r}")
    rng = np.random.default_rng(seed)

    # ---- which calls ---------------------------------------------------------------------
    reach = _reachable(pnl, np.random.default_rng([seed, 7]))
    mix = dict(pattern_mix) if pattern_mix is not None else {c: 1.0 for c in pnl.tracked_calls}
    if abnormal_fraction > 0 and not mix:
        raise InputError(src, (f"pattern_mix is empty" if pattern_mix is not None else
                               f"panel {pnl.id} has no tracked_calls") + f"; give pattern_mix with at least one call "
                              f"(calls: {', '.join(pnl.call_names)})")
    for c, w in mix.items():
        if c not in pnl.call_names:
            raise InputError(src, f"pattern_mix names {c!r}, not a call of panel {pnl.id} ({', '.join(pnl.call_names)})")
        if not (isinstance(w, (int, float)) and w >= 0):
            raise InputError(src, f"pattern_mix weight of {c!r} must be a number >= 0, got {w!r}")
        if reach[c] is None and w > 0:
            raise InputError(src, f"call {c!r} of panel {pnl.id} is shadowed by earlier calls; no count vector gives it")
    if mix and sum(mix.values()) <= 0 and abnormal_fraction > 0:
        raise InputError(src, "pattern_mix weights sum to 0")
    if abnormal_fraction > 0 and pattern_mix is not None and not any(
            w > 0 and c in pnl.abnormal_calls for c, w in mix.items() if isinstance(w, (int, float))):
        raise InputError(src, f"pattern_mix {dict(mix)} names no abnormal call of panel {pnl.id} with a weight > 0, "
                              f"so abnormal_fraction={abnormal_fraction:g} would give no abnormal nucleus (abnormal: "
                              f"{', '.join(pnl.abnormal_calls)})")
    others = [c for c in pnl.call_names
              if c != pnl.normal_call and c not in mix and c not in pnl.tracked_calls and c != pnl.default_call
              and reach[c] is not None]

    diam_lo, diam_hi = R.nucleus_diameter_um
    mean_area_um2 = math.pi / 4 * (diam_lo**2 + diam_lo * diam_hi + diam_hi**2) / 3
    frame_um2 = H * W * px * px
    n_required = n_nuclei is not None  # the caller asked for this many: not fitting is an error
    if n_nuclei is None:
        n_nuclei = max(1, int(round(R.density * frame_um2 / mean_area_um2)))
    n_nuclei = int(n_nuclei)
    n_abn = int(round(abnormal_fraction * n_nuclei))
    n_oth = int(round(R.other_fraction * n_nuclei)) if others else 0
    n_oth = min(n_oth, n_nuclei - n_abn)
    calls: list[str] = []
    if n_abn:
        names = [c for c in mix if mix[c] > 0]
        p = np.array([mix[c] for c in names], float)
        # exact allocation by largest remainder, so a field's clone fraction is what was asked
        quota = p / p.sum() * n_abn
        k = np.floor(quota).astype(int)
        rest = n_abn - k.sum()
        k[np.argsort(-(quota - k) + rng.uniform(0, 1e-9, len(k)))[:rest]] += 1
        for c, kk in zip(names, k):
            calls += [c] * int(kk)
    calls += list(rng.choice(others, size=n_oth)) if n_oth else []
    calls += [pnl.normal_call] * (n_nuclei - len(calls))
    calls = [calls[i] for i in rng.permutation(len(calls))]

    # ---- geometry in pixels --------------------------------------------------------------
    sig_d_px = pnl.signal_diameter_um / px
    sigma0_px = sig_d_px / 2.355  # signal diameter read as the PSF FWHM
    split_d_px = min(pnl.split_distance_um, pnl.signal_diameter_um) / px
    base_sep_px = 1.5 * sig_d_px
    fusion_px = (pnl.fusion_distance_um or 0.0) / px
    sep_px = max(base_sep_px, 1.5 * fusion_px)
    margin_px = max(0.35 / px, 1.0)
    gap_px = max(int(round(0.6 / px)), 1)  # free space kept around non-touching nuclei
    pad = int(math.ceil(diam_hi / px * 1.05)) + gap_px + 4
    CH, CW = H + 2 * pad, W + 2 * pad
    canvas = np.zeros((CH, CW), np.int32)
    n_sig = len(pnl.signals)
    sig_index = {s.name: i for i, s in enumerate(pnl.signals)}
    fpair = tuple(sig_index[s] for s in pnl.fusion_pair) if pnl.fusion_pair else None

    nuclei: list[dict] = []
    spot_rows: list[dict] = []
    sid = 0
    cluster_id = 0
    i_call = 0
    pending_cluster: list[int] = []  # labels of the cluster being grown
    cluster_target = 0
    fail = 0
    sig_fail = 0
    max_fail = 60 * max(n_nuclei, 1) + 500

    cluster_tries = 0
    fail_at_last_success = 0
    while i_call < n_nuclei:
        if fail > max_fail or fail - fail_at_last_success > 400:  # the field is full
            break
        if pending_cluster and cluster_tries > 24:  # no room to grow this cluster: move on
            pending_cluster = []
        call = calls[i_call]
        counts = _draw_counts(rng, pnl, call) or dict(reach[call])
        # objects (countable signals) of this nucleus
        objs: list[_Obj] = []
        for name in pnl.signal_names:
            for _ in range(counts[name]):
                if rng.uniform() < R.split_fraction:
                    objs.append(_Obj((sig_index[name],) * 2, "split_part", split_d_px * rng.uniform(0.45, 0.85), sep_px))
                else:
                    objs.append(_Obj((sig_index[name],), "signal", 0.0, sep_px))
        if fpair:
            for _ in range(counts[FUSION]):
                objs.append(_Obj(fpair, "fused_part", fusion_px * rng.uniform(0.0, 0.55), sep_px))
        n_obj = len(objs)
        lobes = int(rng.integers(2, 5)) if rng.uniform() < R.lobulated_fraction else 1
        grow = 1.0 + 0.08 * min(sig_fail, 10)  # signals did not fit: a larger nucleus
        d_um = rng.uniform(diam_lo, diam_hi) * max(1.0, math.sqrt(n_obj / 5.0)) * grow
        if lobes > 1:
            d_um *= 1.15
        d_um = min(d_um, diam_hi * 1.6)
        m = _nucleus_shape(rng, d_um / px, lobes)
        h, w = m.shape
        if h + 2 * gap_px + 2 >= CH or w + 2 * gap_px + 2 >= CW:
            fail += 1
            continue
        # where: a touching partner of the growing cluster, or anywhere in the frame
        member = None
        if pending_cluster:
            member = nuclei[pending_cluster[int(rng.integers(len(pending_cluster)))] - 1]
            ang = rng.uniform(0, 2 * np.pi)
            dist = (member["r_px"] + math.sqrt(m.sum() / math.pi)) * rng.uniform(0.85, 0.95)
            cy = member["cy"] + dist * math.sin(ang)
            cx = member["cx"] + dist * math.cos(ang)
        else:
            cy = pad + rng.uniform(0, H)
            cx = pad + rng.uniform(0, W)
        y0 = int(round(cy - h / 2))
        x0 = int(round(cx - w / 2))
        if y0 - gap_px < 1 or x0 - gap_px < 1 or y0 + h + gap_px >= CH - 1 or x0 + w + gap_px >= CW - 1:
            fail += 1
            cluster_tries += 1
            continue
        region = canvas[y0 - gap_px: y0 + h + gap_px, x0 - gap_px: x0 + w + gap_px]
        mm = np.zeros(region.shape, bool)
        mm[gap_px: gap_px + h, gap_px: gap_px + w] = m
        friends = set(pending_cluster)
        if friends:
            taken = np.isin(region, list(friends))
            mm_c = mm & ~taken  # carve: the partner keeps the contact zone -> a shared boundary
            lab, nlab = ndi.label(mm_c)
            if nlab != 1 or mm_c.sum() < 0.75 * m.sum():
                fail += 1
                cluster_tries += 1
                continue
            dil = ndi.binary_dilation(mm_c, iterations=gap_px)
            clash = region[dil & ~taken]
            if (clash > 0).any():
                fail += 1
                cluster_tries += 1
                continue
            touching_ok = ndi.binary_dilation(mm_c) & taken
            if not touching_ok.any():
                fail += 1
                cluster_tries += 1
                continue
            mm = mm_c
        else:
            dil = ndi.binary_dilation(mm, iterations=gap_px)
            if (region[dil] > 0).any():
                fail += 1
                continue
        # at least a fifth of the nucleus inside the frame (a nucleus is never wholly outside)
        ys_, xs_ = np.nonzero(mm)
        ys_ = ys_ + y0 - gap_px
        xs_ = xs_ + x0 - gap_px
        inside = ((ys_ >= pad) & (ys_ < pad + H) & (xs_ >= pad) & (xs_ < pad + W)).sum()
        if inside < 0.2 * len(ys_):
            fail += 1
            cluster_tries += 1
            continue
        # signals inside (eroded) mask
        edt = ndi.distance_transform_edt(mm)
        allowed = edt >= margin_px + 0.5
        pos = _place_objects(rng, allowed, objs)
        if pos is None:
            fail += 1
            sig_fail += 1
            cluster_tries += 1
            continue
        # accept
        label = len(nuclei) + 1
        region[mm] = label
        oy, ox = y0 - gap_px, x0 - gap_px
        if pending_cluster:
            pending_cluster.append(label)
            clus = member["cluster"]
        else:
            clus = 0
            if rng.uniform() < R.touching_fraction / 2.2 and i_call + 1 < n_nuclei:
                cluster_id += 1
                clus = cluster_id
                pending_cluster = [label]
                cluster_tries = 0
                cluster_target = 2 if rng.uniform() < 0.7 else 3
        ys, xs = np.nonzero(mm)
        oof = rng.uniform() < R.out_of_focus_fraction
        focus = float(rng.choice([-1.0, 1.0]) * R.defocus_um) if oof else 0.0
        nuclei.append(dict(
            label=label, cy=oy + ys.mean(), cx=ox + xs.mean(), r_px=math.sqrt(mm.sum() / math.pi),
            box=(oy, ox, mm.shape[0], mm.shape[1]), call=call, counts=counts, lobes=lobes,
            cluster=clus, focus_um=focus, diameter_um=d_um, n_split=0, n_dim=0,
            intensity=R.dapi_level_adu * float(np.exp(rng.normal(0, R.dapi_cv))) * (1.15 if lobes > 1 else 1.0),
        ))
        nuc = nuclei[-1]
        failed = -1  # probe channel that failed to hybridise in this nucleus (-1: none)
        if R.failed_hybridization_fraction > 0 and rng.uniform() < R.failed_hybridization_fraction:
            failed = int(rng.integers(n_sig))
        nuc["failed_signal"] = pnl.signals[failed].name if failed >= 0 else ""
        for o, (py, px_) in zip(objs, pos):
            sid += 1
            if o.part_sep_px > 0:
                a = rng.uniform(0, 2 * np.pi)
                parts = _parts_inside(edt, py, px_, 0.5 * o.part_sep_px, a)
            else:
                parts = [(py, px_)]
            z_sig = focus + (float(np.clip(rng.normal(0, R.signal_z_sd_um), -3 * R.signal_z_sd_um, 3 * R.signal_z_sd_um))
                             if R.signal_z_sd_um > 0 else 0.0)
            dim = rng.uniform() < R.dim_fraction
            amp = R.signal_peak_adu * float(np.exp(rng.normal(0, R.signal_cv)))
            if dim:
                amp *= rng.uniform(0.2, 0.45)
                nuc["n_dim"] += 1
            if o.kind == "split_part":
                nuc["n_split"] += 1
            sig_px = sigma0_px * rng.uniform(1 - R.signal_sigma_cv, 1 + 1.5 * R.signal_sigma_cv)
            diffuse = o.kind == "signal" and rng.uniform() < R.diffuse_fraction
            if diffuse:  # a wider, fainter-peaked signal
                sig_px *= rng.uniform(1.6, 2.4)
                amp *= 0.6
            for ch, (yy, xx) in zip(o.channels, parts):
                a_part = amp * (rng.uniform(0.55, 0.75) if o.kind == "split_part" else rng.uniform(0.9, 1.1) if o.kind == "fused_part" else 1.0)
                if ch == failed:  # hybridisation failure: the signal is there but (almost) does not light up
                    a_part *= rng.uniform(0.02, 0.06)
                spot_rows.append(dict(
                    signal_id=sid, signal=pnl.signals[ch].name, y=oy + yy - pad, x=ox + xx - pad, z_um=z_sig,
                    label=label, kind=o.kind, brightness=a_part, sigma_um=sig_px * px, dim=dim, diffuse=diffuse,
                ))
        i_call += 1
        sig_fail = 0
        fail_at_last_success = fail
        if pending_cluster and len(pending_cluster) >= cluster_target:
            pending_cluster = []
    n_placed = len(nuclei)
    if n_placed < n_nuclei and n_required:
        raise InputError(
            src, f"only {n_placed} of {n_nuclei} nuclei fit a {H}x{W} px field at {px} µm/px; "
                 f"use a larger shape or fewer nuclei")

    # ---- debris outside nuclei ------------------------------------------------------------
    n_deb = int(rng.poisson(R.debris_per_1000um2 * frame_um2 / 1000.0)) if R.debris_per_1000um2 > 0 else 0
    if n_deb:
        far = ndi.distance_transform_edt(canvas == 0) * px >= 1.5
        fy, fx = np.nonzero(far[pad: pad + H, pad: pad + W])
        if len(fy):
            pick = rng.integers(0, len(fy), size=n_deb)
            for j in pick:
                sid += 1
                chans = range(n_sig) if rng.uniform() < R.debris_all_channels_fraction else [int(rng.integers(n_sig))]
                amp = R.signal_peak_adu * float(np.exp(rng.normal(0.2, 0.5)))
                sg = sigma0_px * rng.uniform(0.8, 2.0)
                yy, xx = fy[j] + rng.uniform(-0.5, 0.5), fx[j] + rng.uniform(-0.5, 0.5)
                for ch in chans:
                    spot_rows.append(dict(signal_id=sid, signal=pnl.signals[ch].name, y=yy, x=xx,
                                          z_um=float(rng.normal(0, R.signal_z_sd_um)) if R.signal_z_sd_um else 0.0,
                                          label=0, kind="debris", brightness=amp, sigma_um=sg * px, dim=False,
                                          diffuse=False))

    spots = pd.DataFrame(spot_rows, columns=["signal_id", "signal", "y", "x", "z_um", "label", "kind",
                                             "brightness", "sigma_um", "dim", "diffuse"])
    spots["visible"] = (spots["y"] >= -0.5) & (spots["y"] < H - 0.5) & (spots["x"] >= -0.5) & (spots["x"] < W - 0.5)

    # ---- render ---------------------------------------------------------------------------
    z_step = R.z_step_um if z_planes > 1 else None
    planes_um = (np.arange(z_planes) - (z_planes - 1) / 2) * (R.z_step_um if z_planes > 1 else 0.0)
    fg = canvas > 0
    # per-nucleus brightness, edge roll-off (dark seam between touching nuclei), chromatin texture
    inten = np.zeros(n_placed + 1, np.float32)
    focus_of = np.zeros(n_placed + 1, np.float32)
    for nuc in nuclei:
        inten[nuc["label"]] = nuc["intensity"]
        focus_of[nuc["label"]] = nuc["focus_um"]
    seam = fg.copy()
    seam[:-1, :] &= canvas[:-1, :] == canvas[1:, :]
    seam[1:, :] &= canvas[1:, :] == canvas[:-1, :]
    seam[:, :-1] &= canvas[:, :-1] == canvas[:, 1:]
    seam[:, 1:] &= canvas[:, 1:] == canvas[:, :-1]
    edt = ndi.distance_transform_edt(seam).astype(np.float32) * px
    profile = (0.55 + 0.45 * (1.0 - np.exp(-edt / 0.9))) * fg
    base = inten[canvas] * profile
    if R.chromatin_texture > 0:
        noise = rng.standard_normal((CH, CW)).astype(np.float32)
        fine = ndi.gaussian_filter(noise, 0.35 / px)
        coarse = ndi.gaussian_filter(noise, 1.2 / px)
        tex = fine / (fine.std() + 1e-9) + 0.7 * coarse / (coarse.std() + 1e-9)
        tex *= R.chromatin_texture / 1.22
        lob_ids = [nuc["label"] for nuc in nuclei if nuc["lobes"] > 1]
        if lob_ids:  # condensed granulocyte chromatin: stronger texture
            tex = np.where(np.isin(canvas, lob_ids), tex * 1.6, tex)
        dapi_content = base * np.clip(1.0 + tex, 0.1, None)
    else:
        dapi_content = base
    af_content = base / max(R.dapi_level_adu, 1e-9)  # ~1 inside nuclei, texture-free
    groups = sorted(set(float(f) for f in focus_of[1:])) if n_placed else [0.0]
    group_masks = {g: (focus_of[canvas] == g) & fg for g in groups}

    optics_sigma_um = 0.12  # diffraction-limited smoothing of nuclear edges
    illum = [_illumination(rng, (CH, CW), pad, (H, W), R.illumination_falloff) for _ in range(n_sig + 1)]
    af_level = [R.autofluorescence_adu * rng.uniform(0.6, 1.4) for _ in range(n_sig)]
    ch_gain = [rng.uniform(0.8, 1.2) for _ in range(n_sig)]
    crop = (slice(pad, pad + H), slice(pad, pad + W))
    sp = spots.to_dict("records")
    sig_ch = {s.name: i for i, s in enumerate(pnl.signals)}
    stack = np.zeros((z_planes, n_sig + 1, H, W), np.float32)
    for k, zk in enumerate(planes_um):
        dapi = np.zeros((CH, CW), np.float32)
        af = np.zeros((CH, CW), np.float32)
        for g in groups:
            gm = group_masks[g]
            if not gm.any():
                continue
            s_um = math.hypot(optics_sigma_um, _defocus_blur_um(g - zk, R.depth_of_field_um))
            dim_f = 1.0 / (1.0 + 0.15 * ((g - zk) / R.depth_of_field_um) ** 2)
            dapi += ndi.gaussian_filter(dapi_content * gm, s_um / px) * dim_f
            af += ndi.gaussian_filter(af_content * gm, max(s_um, 0.4) / px) * dim_f
        stack[k, 0] = (dapi[crop] * illum[0][crop] + R.dapi_background_adu * illum[0][crop])
        probes = [np.zeros((CH, CW), np.float32) for _ in range(n_sig)]
        for s in sp:
            c = sig_ch[s["signal"]]
            dz = s["z_um"] - zk
            s0 = s["sigma_um"] / px
            sg = s0 * math.sqrt(1.0 + (dz / R.depth_of_field_um) ** 2)
            _add_gaussian(probes[c], s["y"] + pad, s["x"] + pad, s["brightness"] * ch_gain[c] * (s0 / sg) ** 2, sg)
        if R.channel_shift_um > 0 and n_sig > 1:  # the last probe channel imaged off by a lateral shift
            probes[-1] = ndi.shift(probes[-1], (0.0, R.channel_shift_um / px), order=1, mode="nearest")
        if R.channel_crosstalk > 0 and n_sig > 1:  # each probe's signals also seen through the other filters
            probes = [p + np.float32(R.channel_crosstalk) * sum(q for j, q in enumerate(probes) if j != c)
                      for c, p in enumerate(probes)]
        for c in range(n_sig):
            content = probes[c] + af_level[c] * af + R.probe_background_adu
            stack[k, c + 1] = content[crop] * illum[c + 1][crop]
    # noise: Poisson photon noise (gain ADU / photon) + Gaussian read noise + offset
    g = R.gain_adu_per_photon
    stack = rng.poisson(np.clip(stack, 0, None) / g).astype(np.float32) * np.float32(g)
    if R.read_noise_adu > 0:
        stack += rng.normal(0.0, R.read_noise_adu, size=stack.shape).astype(np.float32)
    stack += R.offset_adu
    if R.hot_pixel_fraction > 0:  # a sensor defect: the same pixels in every channel and plane
        hot = np.random.default_rng([seed, 0x407]).random(stack.shape[-2:]) < R.hot_pixel_fraction
        stack[..., hot] += np.float32(R.hot_pixel_adu)
    image = np.clip(np.rint(stack), 0, 65535).astype(np.uint16)
    if z_planes == 1:
        image = image[0]

    # ---- truth tables ---------------------------------------------------------------------
    labels = np.ascontiguousarray(canvas[crop]).astype(np.int32)
    idx = np.arange(1, n_placed + 1)
    area_px = np.bincount(labels.ravel(), minlength=n_placed + 1)[1:]
    cen = np.array(ndi.center_of_mass(np.ones_like(labels, dtype=np.float32), labels, idx)) if n_placed else np.zeros((0, 2))
    full_area = np.bincount(canvas.ravel(), minlength=n_placed + 1)[1:]
    on_edge = np.zeros(n_placed + 1, bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        on_edge[np.unique(edge)] = True
    touch = np.zeros(n_placed + 1, bool)
    for a, b in ((canvas[:-1, :], canvas[1:, :]), (canvas[:, :-1], canvas[:, 1:])):
        sel = (a != b) & (a > 0) & (b > 0)
        touch[a[sel]] = True
        touch[b[sel]] = True
    rows = []
    for j, nuc in enumerate(nuclei):
        lab = nuc["label"]
        counts = nuc["counts"]
        row = dict(
            label=lab,
            centroid_y=float(cen[j, 0]) if area_px[j] else float(nuc["cy"] - pad),
            centroid_x=float(cen[j, 1]) if area_px[j] else float(nuc["cx"] - pad),
            area_um2=float(area_px[j] * px * px),
        )
        for key in pnl.pattern_keys:
            row[f"count_{key}"] = int(counts[key])
        row.update(
            pattern=pnl.pattern_string(counts), call=pnl.call_for(counts),
            abnormal=nuc["call"] in pnl.abnormal_calls, tracked=nuc["call"] in pnl.tracked_calls,
            lobulated=nuc["lobes"] > 1, n_lobes=nuc["lobes"], touching=bool(touch[lab]), cluster=nuc["cluster"],
            border=bool(on_edge[lab] or area_px[j] < full_area[j]), out_of_focus=nuc["focus_um"] != 0.0,
            focus_um=nuc["focus_um"], diameter_um=nuc["diameter_um"], n_split=nuc["n_split"], n_dim=nuc["n_dim"],
            failed_signal=nuc["failed_signal"],
        )
        rows.append(row)
    cols = (["label", "centroid_y", "centroid_x", "area_um2"] + [f"count_{k}" for k in pnl.pattern_keys]
            + ["pattern", "call", "abnormal", "tracked", "lobulated", "n_lobes", "touching", "cluster", "border",
               "out_of_focus", "focus_um", "diameter_um", "n_split", "n_dim", "failed_signal"])
    truth = pd.DataFrame(rows, columns=cols)
    params = dict(
        panel=pnl.id, panel_path=pnl.path, panel_sha256=pnl.sha256, shape=(H, W), pixel_size_um=px, abnormal_fraction=abnormal_fraction,
        pattern_mix=mix, n_nuclei=n_nuclei, seed=seed, z_planes=z_planes, **asdict(R),
    )
    return SimulatedField(
        image=image, channel_names=("DAPI",) + pnl.signal_names, pixel_size_um=px, labels=labels, truth=truth,
        spots=spots, panel_id=pnl.id, seed=seed, z_step_um=z_step, params=params,
    )


# ------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------
def _stem(path: Path) -> str:
    name = path.name
    for suf in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def truth_paths(path: "str | Path") -> dict[str, Path]:
    """Paths of the truth files written beside a simulated field ``path``.

    Returns ``{"nuclei": <stem>_truth_nuclei.csv, "spots": <stem>_truth_spots.csv,
    "labels": <stem>_truth_labels.tif}``. Field finders must skip names containing ``_truth``.
    """
    path = Path(path)
    stem = _stem(path)
    return {
        "nuclei": path.with_name(f"{stem}_truth_nuclei.csv"),
        "spots": path.with_name(f"{stem}_truth_spots.csv"),
        "labels": path.with_name(f"{stem}_truth_labels.tif"),
    }


def write_simulated_field(sim: SimulatedField, path: "str | Path", *, overwrite: bool = False,
                          compression: str = "zlib") -> dict[str, Path]:
    """Write a simulated field as OME-TIFF plus its truth files beside it.

    Parameters
    ----------
    sim : SimulatedField
    path : str or path
        Target image, must end in ``.ome.tif`` or ``.ome.tiff``. Beside it are written
        ``<stem>_truth_nuclei.csv``, ``<stem>_truth_spots.csv`` and ``<stem>_truth_labels.tif``
        (int32 mask).
    overwrite : bool
        Replace existing files; otherwise an existing target is an error.
    compression : str
        Lossless TIFF compression (``zlib`` or ``zstd``).

    Returns
    -------
    dict of str to Path
        ``{"image", "nuclei", "spots", "labels"}`` paths written.

    Raises
    ------
    InputError
        If the name does not end in .ome.tif(f), or a file exists and ``overwrite`` is False.
    """
    import tifffile

    path = Path(path)
    if not path.name.lower().endswith((".ome.tif", ".ome.tiff")):
        raise InputError(path, "a simulated field is written as OME-TIFF: the name must end in .ome.tif")
    if "_truth" in _stem(path):
        raise InputError(path, "field names must not contain '_truth' (reserved for the truth files)")
    if compression not in ("zlib", "zstd"):
        raise InputError(path, f"compression must be zlib or zstd, got {compression!r}")
    out = {"image": path, **truth_paths(path)}
    if not overwrite:
        for p in out.values():
            if p.exists():
                raise InputError(p, "exists; refusing to overwrite (pass --overwrite)")
    px = float(sim.pixel_size_um)
    axes = "ZCYX" if sim.image.ndim == 4 else "CYX"
    meta: dict[str, Any] = {
        "axes": axes,
        "Channel": {"Name": list(sim.channel_names)},
        "PhysicalSizeX": px, "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": px, "PhysicalSizeYUnit": "µm",
        "Description": f"fishcount simulated field: panel={sim.panel_id} seed={sim.seed}",
        # a UUID from the content, so that the same simulation gives byte-identical files
        "UUID": str(uuid.uuid5(uuid.NAMESPACE_URL, "fishcount-simulate:" + hashlib.sha1(
            np.ascontiguousarray(sim.image).tobytes() + repr(sim.channel_names).encode()).hexdigest())),
    }
    if sim.image.ndim == 4 and sim.z_step_um:
        meta.update(PhysicalSizeZ=float(sim.z_step_um), PhysicalSizeZUnit="µm")
    res = (1e4 / px, 1e4 / px)  # pixels per cm
    # the image and its truth as one set: a full disk or a kill never leaves an image beside another seed's truth
    try:
        with staged_files([path, out["nuclei"], out["spots"], out["labels"]], overwrite=overwrite) as tmp:
            tifffile.imwrite(tmp[0], sim.image, ome=True, photometric="minisblack", compression=compression,
                             predictor=True, metadata=meta, resolution=res, resolutionunit="CENTIMETER")
            sim.truth.to_csv(tmp[1], index=False, float_format="%.6g")
            sim.spots.to_csv(tmp[2], index=False, float_format="%.6g")
            tifffile.imwrite(tmp[3], sim.labels, compression=compression, resolution=res,
                             resolutionunit="CENTIMETER", photometric="minisblack")
    except FileExistsError as exc:
        raise InputError(exc.filename, "exists; refusing to overwrite (pass --overwrite)") from None
    return out
