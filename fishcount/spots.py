"""Probe signal detection: probe channel -> signals, split-signal merge, fusion pairs.

The method, step by step (details and rationale in ``docs/detection.md``):

#. **Enhance.** A difference of Gaussians on float32: ``G(sigma) - G(1.6 sigma)`` (close to a Laplacian of
   Gaussian). ``sigma`` comes from the panel's physical signal diameter and the pixel size
   (:func:`spot_sigma_px`); the band-pass removes uneven illumination and nuclear haze.
#. **Candidates.** Local maxima of the enhanced image (one signal radius wide neighbourhood), tested only
   on pixels above a low SNR floor (sparse, vectorised).
#. **SNR.** Every candidate's enhanced peak is divided by the robust noise level of the enhanced image
   over nuclear pixels (1.4826 x MAD), so thresholds are in noise units and can be pooled across fields.
#. **Automatic threshold** that works when signals are sparse (:func:`auto_threshold`): the valley of the
   log-SNR density of candidates *inside nuclei*, between a noise floor and the brightness of typical
   signals, which is where the noise-maxima tail meets the true-signal mode. A manual threshold always wins.
#. **Sub-pixel** position by a log-parabola (Gaussian) fit on the 3x3 neighbourhood, integrated intensity
   above the local background, local background and SNR per signal.
#. **Lab rules** (in µm, from the panel): split signals (:func:`merge_split_signals`) — same-colour signals
   closer than ``split_distance_um`` count as one (clinical.md §3.2, Leica HER2 guide); diffuse signals
   (maxima joined by a ridge without a dip) count as one (clinical.md §3.2); fusion pairs
   (:func:`pair_fusions`) — a target and a partner within ``fusion_distance_um`` form one fused signal
   (panel rule, anchors.md a2 for 0.8 µm).

The panel's signal diameter is checked against the image (:func:`estimate_signal_sigma_px`: scale selection
of the normalised Laplacian of Gaussian on the brightest signals); ``fishcount.analyze`` uses the measured
size, and scales the panel's distances with it, when the signals are smaller than the panel says by more
than a tolerance (larger ones are detected at the panel's size).

Everything is vectorised over candidates; no per-spot Python loops.
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import scipy.fft as sp_fft
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from ._stats import median as _median
from ._datafile import checked_um
from .errors import InputError
from ._stats import neighbour_extremes as _neighbour_extremes
from ._stats import nonzero_2d as _nonzero_2d

__all__ = [
    "SPOT_COLUMNS",
    "remove_hot_pixels",
    "correct_channel_shift",
    "estimate_channel_shift",
    "estimate_crosstalk",
    "crosstalk_at",
    "display_mixing",
    "unmix_crosstalk",
    "spot_sigma_px",
    "enhance_spots",
    "local_background",
    "noise_level",
    "find_candidates",
    "find_candidates_3d",
    "auto_threshold",
    "snap_to_nuclei",
    "near_other_nucleus",
    "boundary_nuclei",
    "detect_signals",
    "merge_split_signals",
    "pair_fusions",
]

#: Columns of a signal table (one row per detected signal; see docs/outputs.md, spots.csv).
SPOT_COLUMNS = (
    "spot_id", "label", "signal", "y", "x", "intensity", "background", "peak", "snr",
    "group_id", "n_merged", "merge", "fusion_partner", "counts_as",
)

#: Ratio of the two Gaussians of the difference-of-Gaussians spot filter (1.6 ~ Laplacian of Gaussian).
DOG_RATIO = 1.6
#: Lowest automatic threshold, in noise units of the enhanced image. Noise maxima of a Gaussian-noise
#: image exceed 4.5 noise units about once per 3e5 maxima (normal tail), i.e. rarely per field.
MIN_AUTO_SNR = 4.5
#: Candidates below this SNR are not kept at all (far inside the noise).
CANDIDATE_SNR = 2.5


#: A hot pixel's brightest neighbour is at most this fraction of the way from its darkest neighbour to it
#: (see :func:`remove_hot_pixels`).
HOT_PIXEL_RATIO = 0.1
#: ... and it stands this many noise SDs above that brightest neighbour.
HOT_PIXEL_MIN_SD = 8.0


def remove_hot_pixels(image: np.ndarray, max_neighbour_ratio: float = HOT_PIXEL_RATIO,
                      min_sd: float = HOT_PIXEL_MIN_SD) -> tuple[np.ndarray, int]:
    """Camera hot pixels (and cosmic-ray hits) set to the brightest of their 8 neighbours.

    A probe signal is imaged through the optics: even a diffraction-limited spot sampled at 0.2 µm/px
    puts >= ~15 % of its peak height on its nearest pixels. A hot pixel is a single pixel: all of its 8
    neighbours lie within ``max_neighbour_ratio`` of the way from the darkest of them to it, and it stands
    ``min_sd`` noise SDs above the brightest (noise: the median absolute difference of horizontally
    adjacent pixels / (0.6745 sqrt 2), from every 4th row). Left in, each one inside a nucleus counts as a
    signal: with one sensor pixel in 2000 hot, count accuracy fell from 0.97 to ~0.2 on simulated fields
    (``benchmarks/bench_robustness.py``, docs/detection.md). Pixels on the image edge are left alone.

    Parameters
    ----------
    image : np.ndarray
        (Y, X) or (Z, Y, X) probe channel, any real dtype (planes are treated one by one).
    max_neighbour_ratio : float
        See above; 0 switches the removal off.
    min_sd : float
        See above.

    Returns
    -------
    (np.ndarray, int)
        The image (the same object when nothing was removed, else a copy of the same dtype) and the
        number of pixels set.
    """
    img = np.asarray(image)
    if img.ndim == 3:
        planes = [remove_hot_pixels(p, max_neighbour_ratio, min_sd) for p in img]
        n = sum(k for _, k in planes)
        return (np.stack([p for p, _ in planes]) if n else img), n
    k = float(max_neighbour_ratio)
    if k <= 0 or img.ndim != 2 or min(img.shape) < 3:
        return img, 0
    f = img.astype(np.float32, copy=False)
    d = np.diff(f[::4].astype(np.float64), axis=1).ravel()
    floor = min_sd * max(float(_median(np.abs(d - _median(d)))) / (0.6745 * np.sqrt(2.0)), 1e-12)
    c, left, right = f[1:-1, 1:-1], f[1:-1, :-2], f[1:-1, 2:]
    # necessary, from the row's two neighbours (they bound the eight's range from inside): the pixel's rise
    # over the brighter of them exceeds (1 - k) of its rise over the darker, i.e. c > hi + (1 - k) / k
    # (hi - lo), and exceeds the noise floor (float32 here, so the floor is relaxed by 0.1 %)
    hi = np.maximum(left, right)
    thr = np.minimum(left, right)
    np.subtract(hi, thr, out=thr)
    thr *= np.float32((1.0 - k) / k)
    np.maximum(thr, np.float32(0.999 * floor), out=thr)
    thr += hi
    del hi
    ys, xs = _nonzero_2d(c > thr)
    del thr
    if ys.size == 0:
        return img, 0
    ys += 1
    xs += 1
    v = img[ys, xs].astype(np.float64)
    nmax, nmin, _ = _neighbour_extremes(img, ys, xs)  # (interior pixels: all 8 neighbours there)
    hot = ((nmax - nmin) < k * (v - nmin)) & ((v - nmax) > floor)
    if not hot.any():
        return img, 0
    out = img.copy()
    out[ys[hot], xs[hot]] = nmax[hot].astype(img.dtype)
    return out, int(np.count_nonzero(hot))


def correct_channel_shift(image: np.ndarray, shift_um: tuple[float, float], pixel_size_um: float) -> np.ndarray:
    """A probe channel moved back by its calibrated lateral shift (chromatic misregistration).

    Each filter set images a little off the others (lateral chromatic aberration, a filter cube's wedge):
    typically 0.1-0.3 µm, more when cubes are changed between exposures. A fusion is two signals within
    the panel's ``fusion_distance_um``, so a shift of that order turns fusions into separate signals
    (simulated dual-fusion fields: 0.6 µm cost 9.6 clone points, docs/detection.md). Labs measure the shift
    once per microscope and filter set (multicolour beads, or the fusions of a break-apart probe on a
    normal control, :func:`estimate_channel_shift`) and correct every image by it.

    Parameters
    ----------
    image : np.ndarray
        (Y, X) or (Z, Y, X) probe channel, any real dtype (planes are moved one by one).
    shift_um : (float, float)
        ``(dy, dx)``: where this channel's content appears relative to the DAPI/reference channel, µm
        (``(0, 0.3)``: 0.3 µm too far right). The image is moved by ``-shift``.
    pixel_size_um : float
        Pixel size, µm.

    Returns
    -------
    np.ndarray
        float32 image of the same shape, linearly interpolated; pixels moved in from outside take the
        nearest edge value. The input itself when the shift is zero.
    """
    dy, dx = (float(v) for v in shift_um)
    if not (np.isfinite(dy) and np.isfinite(dx)):
        raise ValueError(f"channel shift must be two finite numbers (dy, dx) in µm, got {shift_um}")
    if not pixel_size_um > 0:
        raise ValueError(f"pixel_size_um must be > 0, got {pixel_size_um}")
    img = np.asarray(image)
    if dy == 0 and dx == 0:
        return img
    move = (-dy / pixel_size_um, -dx / pixel_size_um)
    f = img.astype(np.float32, copy=False)
    if f.ndim == 3:
        return np.stack([ndi.shift(p, move, order=1, mode="nearest") for p in f])
    return ndi.shift(f, move, order=1, mode="nearest")


def estimate_channel_shift(spots: pd.DataFrame, pair: tuple[str, str], pixel_size_um: float,
                           max_distance_um: float, min_pairs: int = 20) -> tuple[float, float, int]:
    """The lateral shift of one probe channel against another, from signals that should co-localise.

    For a break-apart probe on a normal control (every intact locus is a fusion) or multicolour beads
    imaged in both channels: the counted signals of the two channels are paired one-to-one within each
    nucleus, closest first, up to ``max_distance_um`` apart (the fusion matching of :func:`pair_fusions`),
    and the shift is the coordinate-wise median of ``pair[1] - pair[0]`` over the pairs, in µm. Give it to
    :func:`correct_channel_shift` (``channel_shifts_um={pair[1]: shift}``). ``max_distance_um`` must
    exceed the shift to be measured, and stay below the distance between the two probes of a split.

    Parameters
    ----------
    spots : pandas.DataFrame
        A signal table (``spots.csv``: ``signal``, ``label``, ``y``, ``x`` in px, ``counts_as``,
        ``fusion_partner``), e.g. pooled over the fields of a control slide with a ``field`` column
        (nuclei are told apart by ``field`` and ``label``).
    pair : (str, str)
        Reference signal and shifted signal names.
    pixel_size_um : float
        Pixel size, µm (1 when ``y``, ``x`` are already in µm).
    max_distance_um : float
        Largest distance of a co-localised pair, µm.
    min_pairs : int
        Fewer pairs than this raise ``ValueError`` (the median of a handful says little).

    Returns
    -------
    (float, float, int)
        ``(dy, dx)`` in µm and the number of pairs used.
    """
    a_name, b_name = pair
    if not pixel_size_um > 0 or not max_distance_um > 0:
        raise ValueError("pixel_size_um and max_distance_um must be > 0")
    df = spots[spots["label"] > 0]
    # every counted signal under its own name again (a fusion's two signals: "fusion" / "" in spots.csv)
    counted = df["counts_as"].astype(str).to_numpy() != ""
    if "fusion_partner" in df:
        counted = counted | (df["fusion_partner"].to_numpy() >= 0)
    counts_as = np.where(counted, df["signal"].to_numpy(), "").astype(object)
    lab = df["label"].to_numpy(np.int64)
    if "field" in df:  # one nucleus = one (field, label)
        lab = df.groupby(["field", "label"], sort=False).ngroup().to_numpy(np.int64) + 1
    pts = df[["y", "x"]].to_numpy(np.float64)
    partner, _, _ = _pair_fusions(counts_as.copy(), np.full(len(df), "", object), lab, pts, np.arange(len(df)),
                                  (a_name, b_name), max_distance_um / pixel_size_um)
    first = np.flatnonzero((partner >= 0) & (counts_as == a_name)) if partner is not None else np.zeros(0, int)
    if first.size < min_pairs:
        raise ValueError(f"only {first.size} {a_name}/{b_name} pairs within {max_distance_um} µm "
                         f"(at least {min_pairs} needed to measure a shift)")
    med = np.median(pts[partner[first]] - pts[first], axis=0) * pixel_size_um
    return float(med[0]), float(med[1]), int(first.size)


#: Crosstalk estimate: the brightest maxima of a channel (at least CROSSTALK_MIN_SNR noise units, at most
#: CROSSTALK_MAX_SIGNALS of them, at least CROSSTALK_MIN_SIGNALS or no estimate).
CROSSTALK_MIN_SNR = 10.0
CROSSTALK_MAX_SIGNALS = 200
CROSSTALK_MIN_SIGNALS = 20
#: Dual-fusion panels: at least a third of each channel's signals stand apart from the other channel's
#: (a normal nucleus shows 2R 2G apart, the classic abnormal one 1R 1G 2F: Vysis BCR/ABL1 DF and PML/RARA
#: DF patterns, clinical.md §3.4). Those apart read the crosstalk alone (a few %); a fused one reads its
#: partner, of about its own brightness (the ratio of two signals of log-normal brightness is < 0.5 for
#: < 10 % of them). So the median of the ratios below 0.5 is the crosstalk. fishcount design choice [I].
CROSSTALK_DUAL_FUSION_BELOW = 0.5
#: ... and an estimate above this is taken for fused signals (a field of atypical nuclei whose signals are
#: nearly all fused), not unmixed: filter sets for FISH pass a few % of the neighbouring dye. [I]
CROSSTALK_DUAL_FUSION_MAX = 0.25


def estimate_crosstalk(probes: "dict[str, np.ndarray]", sigma_px: float) -> dict[tuple[str, str], float]:
    """Fraction of each probe channel's signals that shows up in each other probe channel (filter
    bleed-through), from the image alone.

    At the brightest signals of channel ``src`` (local maxima of its spot-enhanced image,
    :func:`enhance_spots`, >= 10 noise units; up to 200), the enhanced ``dst`` image is read at the same
    pixel; the median of ``dst / src`` is the crosstalk ``src -> dst``. The median holds only when most
    ``src`` signals have no ``dst`` signal of their own at the same place: probes of separate loci
    (deletion and enumeration panels). Break-apart probes co-localise by design, so their channels cannot
    be measured this way; :func:`fishcount.analyze.analyze_field` measures dual-fusion panels on their
    separate signals (:func:`crosstalk_at` with ``below``). Without
    crosstalk the estimate is ~0.005-0.01 on simulated fields (nuclear autofluorescence is seen in every
    channel); with 3 / 5 / 10 % it is 0.036 / 0.057 / 0.105.

    Parameters
    ----------
    probes : dict of str to ndarray
        Signal name -> (Y, X) probe image (a z-stack: its maximum projection), raw intensities.
    sigma_px : float
        Spot sigma in pixels (:func:`spot_sigma_px`).

    Returns
    -------
    dict of (str, str) to float
        ``(src, dst) -> fraction`` for every ordered pair whose ``src`` has >= 20 bright signals.
    """
    enh, points = {}, {}
    r = max(1, int(round(2 * sigma_px)))
    for n in probes:
        img = np.asarray(probes[n], np.float32)
        e = enh[n] = enhance_spots(img.max(axis=0) if img.ndim == 3 else img, sigma_px)
        ys, xs = _nonzero_2d((e > CROSSTALK_MIN_SNR * noise_level(e)) & (e == ndi.maximum_filter(e, size=2 * r + 1)))
        order = np.argsort(e[ys, xs], kind="stable")[::-1][:CROSSTALK_MAX_SIGNALS]
        points[n] = (ys[order], xs[order])
    return crosstalk_at(enh, points)


def crosstalk_at(enhanced: "dict[str, np.ndarray]",
                 points: "dict[str, tuple[np.ndarray, np.ndarray]]",
                 below: float = 1.0) -> dict[tuple[str, str], float]:
    """The crosstalk fractions of :func:`estimate_crosstalk` from given enhanced images (signal name ->
    (Y, X) :func:`enhance_spots` output) and each channel's bright signals (name -> (rows, columns), int
    pixel positions); channels with fewer than ``CROSSTALK_MIN_SIGNALS`` signals are not measured. A
    point brighter in ``dst`` than in ``src`` is a ``dst`` signal seen through ``src``'s filter (with 10 %
    crosstalk such copies pass the brightness floor) and is left out of ``src -> dst``. ``below``: only
    ratios under it count (1 by default; less when part of the ``src`` signals have a ``dst`` signal of
    their own beside them, whose ratios lie above: :data:`CROSSTALK_DUAL_FUSION_BELOW`).

    Parameters
    ----------
    enhanced : dict of str to ndarray
        Signal name -> (Y, X) float spot-enhanced image (:func:`enhance_spots`, noise-scaled units), all of the
        same shape; every channel is a possible ``dst``.
    points : dict of str to (ndarray, ndarray)
        Signal name -> ``(rows, columns)``, two 1-D int arrays of the pixel positions of that channel's bright
        signals (local maxima, e.g. at least :data:`CROSSTALK_MIN_SNR` noise units); each name must be a key of
        ``enhanced``.
    below : float, default 1.0
        Only ratios ``dst / src`` below this count (and always only those with ``|ratio| < 1``); e.g.
        :data:`CROSSTALK_DUAL_FUSION_BELOW` on dual-fusion panels.

    Returns
    -------
    dict of (str, str) to float
        ``(src, dst) -> fraction`` (dimensionless; the median of the kept ratios) for every ordered pair of
        distinct channels with at least :data:`CROSSTALK_MIN_SIGNALS` kept ratios; other pairs are absent.

    Raises
    ------
    KeyError
        A name of ``points`` is not in ``enhanced``.
    """
    out: dict[tuple[str, str], float] = {}
    for src, (ys, xs) in points.items():
        e = enhanced[src][ys, xs]
        for dst, other in enhanced.items():
            if dst == src:
                continue
            r = other[ys, xs] / e
            # a src "signal" brighter in dst is dst's own signal seen through src's filter: not a src signal
            r = r[(np.abs(r) < 1.0) & (r < below)]
            if r.size >= CROSSTALK_MIN_SIGNALS:
                out[(src, dst)] = float(np.median(r))
    return out


#: Display mixing of a colour composite (:func:`display_mixing`): the pixels of a plane at least this
#: fraction of the way to its 99.9th percentile (above its median) are its bright signal pixels, and the
#: mixing into another plane is this percentile of that plane's ratio to them (a lower envelope: a probe's
#: own light in the other plane only adds to it), from at least DISPLAY_MIXING_MIN_PIXELS pixels.
DISPLAY_MIXING_BRIGHT = 0.5
DISPLAY_MIXING_PERCENTILE = 1.0
DISPLAY_MIXING_MIN_PIXELS = 50


def display_mixing(planes: "dict[str, np.ndarray]") -> dict[tuple[str, str], float]:
    """How much of each plane of a colour composite a display colour put into each other plane.

    A probe shown orange (#ff8c00) is its red plane's light plus 55 % of it in the green plane, in every
    pixel. Unlike a filter's bleed-through this holds where the probes co-localise too (break-apart and
    fusion signals), so it is read as the lower envelope of ``dst / src`` over ``src``'s bright pixels
    (:data:`DISPLAY_MIXING_BRIGHT`, :data:`DISPLAY_MIXING_PERCENTILE`; each plane's median taken off
    first): a ``dst`` probe beside or under a ``src`` signal only raises the ratio, and the ``src`` pixels
    away from any ``dst`` signal give the mixing itself (0 for a probe shown in a pure primary).

    Parameters
    ----------
    planes : dict of str to ndarray
        Signal name -> (Y, X) plane of the composite (display values, e.g. uint8).

    Returns
    -------
    dict of (str, str) to float
        ``(src, dst) -> fraction`` in [0, 1], for every ordered pair whose ``src`` has enough bright pixels.
    """
    flat = {k: np.asarray(v, np.float32).reshape(-1) for k, v in planes.items()}
    base = {k: float(np.median(v[:: max(1, v.size // 250_000)])) for k, v in flat.items()}
    flat = {k: v - np.float32(base[k]) for k, v in flat.items()}
    out = _lower_envelopes(flat)
    # the weaker direction of each pair again, with the stronger taken out: the bright pixels of an orange
    # probe's green copy are bright green pixels too, and would make green look mixed into red
    for (src, dst), k in list(out.items()):
        back = out.get((dst, src))
        if back is not None and k > back and k > 0:
            cleaned = {dst: flat[dst] - np.float32(k) * flat[src], src: flat[src]}
            out[(dst, src)] = _lower_envelopes(cleaned).get((dst, src), back)
    return out


def _lower_envelopes(flat: "dict[str, np.ndarray]") -> dict[tuple[str, str], float]:
    """:func:`display_mixing`'s ratio per ordered pair of background-free 1-D planes."""
    out: dict[tuple[str, str], float] = {}
    for src, sf in flat.items():
        top = float(np.percentile(sf, 99.9))
        if not top > 0:
            continue
        sel = np.flatnonzero(sf >= DISPLAY_MIXING_BRIGHT * top)
        if sel.size < DISPLAY_MIXING_MIN_PIXELS:
            continue
        for dst, dv in flat.items():
            if dst != src:
                ratio = dv[sel] / sf[sel]
                out[(src, dst)] = float(np.clip(np.percentile(ratio, DISPLAY_MIXING_PERCENTILE), 0.0, 1.0))
    return out


def unmix_crosstalk(probes: "dict[str, np.ndarray]",
                    crosstalk: "dict[tuple[str, str], float]") -> dict[str, np.ndarray]:
    """Probe images with the crosstalk between their channels taken out (linear unmixing).

    Each observed channel is its own light plus ``crosstalk[(src, dst)]`` of every other channel ``src``;
    the system is inverted per pixel. Each channel's offset (its 0.5th percentile) is taken off first and
    put back after, so backgrounds stay where they were. Pairs absent from ``crosstalk`` are 0.

    Parameters
    ----------
    probes : dict of str to ndarray
        Signal name -> probe image, all of one shape ((Y, X) or (Z, Y, X)).
    crosstalk : dict of (str, str) to float
        ``(src, dst) -> fraction`` (:func:`estimate_crosstalk`, or measured on single-probe controls).

    Returns
    -------
    dict of str to ndarray
        The same names, float32 images.
    """
    names = list(probes)
    shapes = {np.shape(probes[n]) for n in names}
    if len(shapes) > 1:
        raise ValueError(f"unmix_crosstalk needs probe images of one shape, got {sorted(shapes)}")
    mix = np.eye(len(names))
    for (src, dst), v in crosstalk.items():
        if not 0.0 <= float(v) < 1.0:
            raise ValueError(f"crosstalk {src}->{dst} must be a fraction in [0, 1), got {v}")
        if src in names and dst in names and src != dst:
            mix[names.index(dst), names.index(src)] = float(v)
    if abs(np.linalg.det(mix)) < 1e-6:
        raise ValueError(f"crosstalk {crosstalk} cannot be unmixed: the channels would be indistinguishable")
    inv = np.linalg.inv(mix)
    off = [float(np.percentile(np.asarray(probes[n])[..., ::4, ::4], 0.5)) for n in names]
    out = {}
    for i, n in enumerate(names):
        acc = None
        for j, m in enumerate(names):
            if inv[i, j] == 0:
                continue
            term = np.float32(inv[i, j]) * (np.asarray(probes[m], np.float32) - np.float32(off[j]))
            acc = term if acc is None else acc + term
        out[n] = acc + np.float32(off[i])
    return out


def spot_sigma_px(signal_diameter_um: float, pixel_size_um: float) -> float:
    """Gaussian sigma (pixels) of a probe signal of a given physical diameter.

    The signal diameter is read as the full width at half maximum of the spot
    (``sigma = FWHM / 2.355``), floored at 0.8 px so that filters stay meaningful on coarse pixels.

    Parameters
    ----------
    signal_diameter_um : float
        Typical signal diameter in µm (``panel.signal_diameter_um``).
    pixel_size_um : float
        Pixel size in µm.

    Returns
    -------
    float
        Sigma in pixels.
    """
    if not (signal_diameter_um > 0 and pixel_size_um > 0):
        raise ValueError(f"signal_diameter_um and pixel_size_um must be > 0, got {signal_diameter_um}, {pixel_size_um}")
    return max(0.8, signal_diameter_um / pixel_size_um / 2.3548)


def enhance_spots(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Spot enhancement by a difference of Gaussians.

    Parameters
    ----------
    image : ndarray, shape (Y, X)
        Probe channel, any real dtype, raw intensity units.
    sigma_px : float
        Spot sigma in pixels (:func:`spot_sigma_px`).

    Returns
    -------
    ndarray, shape (Y, X), float32
        ``G(sigma) - G(DOG_RATIO * sigma)``: a band-pass close to a scale-normalised Laplacian of
        Gaussian. It separates a dim signal from the flank of a bright neighbour (a plain smoothed image
        shows it only as a shoulder) and removes uneven illumination and haze at every larger scale.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"enhance_spots needs a 2-D image, got shape {img.shape}")
    return np.ascontiguousarray(_dog(img, sigma_px, 0)[0])


def _dog(img: np.ndarray, sigma_px: float, border: int, zero_floor: bool = True,
         dct: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The difference of Gaussians of :func:`enhance_spots`, written into a ``-inf``-bordered buffer.

    ``gaussian_filter(img, s) - gaussian_filter(that, 1.249 s)`` (``truncate=3``, ``mode="reflect"``,
    float32). Images whose sides are both 5-smooth go through the DCT (:func:`_dog_dct`, equal to float32
    rounding; ``zero_floor``: see there); the others value for value, pass by pass as
    ``gaussian_filter`` does but in buffers with a padded row stride (:func:`_padded_like`) and only
    three image-sized buffers. The result lands
    inside a buffer with ``border`` rows and columns of ``-inf`` around it, ready for the flat-index
    neighbour gathers of :func:`_local_maxima`.

    Returns
    -------
    response : ndarray, shape (Y, X), float32
        A view of the inner part of ``buffer``.
    buffer : ndarray, shape (Y + 2 border, >= X + 2 border), float32
        C-contiguous; ``-inf`` outside ``response``.
    """
    h, w = img.shape
    s2 = sigma_px * math.sqrt(DOG_RATIO**2 - 1)
    if _use_dct(img) if dct is None else dct:
        return _dog_dct(img, sigma_px, s2, border, zero_floor)
    a = _padded_like(img.shape)
    a[...] = img
    b = _padded_like(img.shape)
    ndi.gaussian_filter1d(a, sigma_px, axis=0, truncate=3.0, output=b)
    ndi.gaussian_filter1d(b, sigma_px, axis=1, truncate=3.0, output=a)  # a = smooth
    ndi.gaussian_filter1d(a, s2, axis=0, truncate=3.0, output=b)
    resp, buf = _bordered_response(h, w, border)
    ndi.gaussian_filter1d(b, s2, axis=1, truncate=3.0, output=resp)  # the wider Gaussian
    np.subtract(a, resp, out=resp)
    return resp, buf


def _bordered_response(h: int, w: int, border: int) -> tuple[np.ndarray, np.ndarray]:
    """An uninitialised (h, w) float32 response view inside a buffer with a ``border``-pixel ``-inf`` frame
    (padded row stride, for fast column passes): ``(resp, buf)``."""
    wb = w + 2 * border
    buf = np.empty((h + 2 * border, wb + (16 - wb) % 64), np.float32)
    if border:
        buf[:border] = -np.inf
        buf[-border:] = -np.inf
        buf[border:-border, :border] = -np.inf
        buf[border:-border, border + w :] = -np.inf
    return buf[border : border + h, border : border + w], buf


def _use_dct(img: np.ndarray) -> bool:
    """Whether :func:`_dog` takes the DCT path: both sides 5-smooth and every value finite (through a
    transform a NaN or an infinity would reach every pixel; the passes keep it local)."""
    return _dct_fast(img.shape[0]) and _dct_fast(img.shape[1]) and math.isfinite(float(img.sum()))


def _dct_fast(n: int) -> bool:
    """True when a DCT of length ``n`` is fast (``n`` is 5-smooth: 2^a 3^b 5^c; e.g. 512, 768, 1000, 1024)."""
    return n > 1 and sp_fft.next_fast_len(n, real=True) == n


def _reflect_gain(sigma: float, n: int) -> np.ndarray:
    """Gain of ``gaussian_filter1d(., sigma, truncate=3, mode="reflect")`` on each DCT-II frequency of length n.

    With ``mode="reflect"`` the filter sees the image extended half-sample symmetrically, which is the
    extension the DCT-II assumes; a symmetric kernel ``k`` then multiplies DCT coefficient ``j`` by
    ``k[0] + 2 sum_t k[t] cos(pi j t / n)`` exactly (same kernel as scipy: normalised, radius
    ``int(3 sigma + 0.5)``).
    """
    r = int(3.0 * float(sigma) + 0.5)
    t = np.arange(1, r + 1, dtype=np.float64)
    k = np.exp(-0.5 / (float(sigma) ** 2) * np.arange(-r, r + 1, dtype=np.float64) ** 2)
    k /= k.sum()
    j = np.arange(n, dtype=np.float64)
    return k[r] + 2.0 * (np.cos(np.outer(j, t) * (math.pi / n)) @ k[r + 1:])


@functools.lru_cache(maxsize=2)
def _dog_gain(h: int, w: int, s1: float, s2: float) -> np.ndarray:
    """DCT-II gain (h, w) float32 of ``G(s1) - G(s2) G(s1)`` with reflect borders; read-only, cached (the
    probe channels of a field, and the fields of a run, share it)."""
    gy, gx = _reflect_gain(s1, h), _reflect_gain(s1, w)
    gain = np.multiply.outer(gy.astype(np.float32), gx.astype(np.float32))
    gain -= np.multiply.outer((gy * _reflect_gain(s2, h)).astype(np.float32),
                              (gx * _reflect_gain(s2, w)).astype(np.float32))
    gain.flags.writeable = False
    return gain


def _dog_dct(img: np.ndarray, s1: float, s2: float, border: int,
             zero_floor: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_dog` through the DCT-II: about twice as fast as the four Gaussian passes at 1024 x 1024.

    ``G(s1) - G(s2) G(s1)`` with reflect borders is one linear filter, diagonal in the DCT-II basis
    (:func:`_reflect_gain`): forward DCT along both axes, one multiply by the separable-difference gain,
    inverse DCT, all in place in the ``-inf``-bordered output buffer (padded row stride). Equal to the
    pass-by-pass result up to float32 rounding (simulated 1024 x 1024 probe channel, max 1739: both within
    9e-5 of the float64 filter, RMS error 3e-6 vs 6e-6 for the passes). Values within 2^-22 of the image's
    largest magnitude (below its float32 resolution) are set to 0 (:func:`_zero_floor`; with
    ``zero_floor=False`` the caller does it when it matters).
    """
    h, w = img.shape
    resp, buf = _bordered_response(h, w, border)
    resp[...] = img
    gain = _dog_gain(h, w, float(s1), float(s2))
    # in place along each axis (the padded stride keeps the column transforms fast)
    for axis in (1, 0):
        out = sp_fft.dct(resp, type=2, axis=axis, overwrite_x=True, workers=1)
        if not _same_view(out, resp):
            resp[...] = out
    resp *= gain
    for axis in (0, 1):
        out = sp_fft.idct(resp, type=2, axis=axis, overwrite_x=True, workers=1)
        if not _same_view(out, resp):
            resp[...] = out
    if zero_floor:
        _zero_floor(resp, img)
    return resp, buf


def _rounding_floor(img: np.ndarray) -> np.float32:
    """2^-22 of the image's largest magnitude: the size of the DCT path's float32 rounding (~1e-8 of it)."""
    return np.float32(2.0**-22) * np.float32(max(abs(float(img.max())), abs(float(img.min())), 0.0))


def _zero_floor(resp: np.ndarray, img: np.ndarray) -> None:
    """Set response values within :func:`_rounding_floor` of 0 to exactly 0, in place.

    The transform spreads float32 rounding over flat regions, where the passes give exact zeros; a
    noise-free background must stay exactly 0 for the noise estimate (MAD 0 -> standard deviation).
    """
    resp[np.abs(resp) <= _rounding_floor(img)] = 0.0


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` and ``b`` are the same memory with the same layout (scipy.fft wrote in place)."""
    return a.ctypes.data == b.ctypes.data and a.strides == b.strides and a.shape == b.shape


def _padded_like(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 array of ``shape`` whose rows are stored with a padded stride.

    Rows of a power-of-two number of bytes (1024- or 2048-pixel images) map onto the same few cache
    sets, so filtering along any axis but the last runs about three times slower; a stride of
    16 mod 64 values avoids that. Only the memory layout differs: values are those of a plain array.
    """
    w = shape[-1]
    stride = w + (16 - w) % 64
    return np.empty(tuple(shape[:-1]) + (stride,), np.float32)[..., :w]


def _gaussian(img: np.ndarray, sigmas: tuple[float, ...], *, mode: str) -> np.ndarray:
    """``ndi.gaussian_filter(img, sigmas, truncate=3.0, mode=mode)`` on float32, value for value.

    The same separable passes in the same axis order, each from and into a float32 array with a
    padded row stride (:func:`_padded_like`), so the result is bit-identical to ``gaussian_filter``
    and about twice as fast on 1024 x 1024 images. Returns a (non-contiguous) float32 view.
    """
    cur = _padded_like(img.shape)
    cur[...] = img  # our own copy: the passes ping-pong between it and one more buffer
    other = None
    for axis, s in enumerate(sigmas):
        if s <= 1e-15:  # as gaussian_filter: no pass for a zero sigma
            continue
        if other is None:
            other = _padded_like(img.shape)
        ndi.gaussian_filter1d(cur, s, axis=axis, truncate=3.0, mode=mode, output=other)
        cur, other = other, cur
    return cur


def local_background(image: np.ndarray, y: np.ndarray, x: np.ndarray, sigma_px: float) -> np.ndarray:
    """Local background of each spot: median of the image on a ring 2.5-3.5 sigma around it.

    The ring lies outside the spot's own light (a Gaussian is below 5 % of its peak beyond 2.5 sigma),
    so the estimate is not inflated by the signal, and the median ignores a neighbouring signal.

    Parameters
    ----------
    image : ndarray, shape (Y, X)
    y, x : ndarray of int, shape (N,)
        Pixel positions.
    sigma_px : float

    Returns
    -------
    ndarray, shape (N,), float64
    """
    if len(y) == 0:
        return np.zeros(0)
    r_in, r_out = 2.5 * sigma_px, 3.5 * sigma_px + 1.0
    r = int(math.ceil(r_out))
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    d = np.hypot(oy, ox)
    ring = (d >= r_in) & (d <= r_out)
    oy, ox = oy[ring], ox[ring]
    h, w = image.shape
    vals = image[np.clip(y[:, None] + oy, 0, h - 1), np.clip(x[:, None] + ox, 0, w - 1)]
    return _row_median(vals).astype(np.float64)


def _row_median(vals: np.ndarray) -> np.ndarray:
    """``np.median(vals, axis=1)``, value for value, by sorting the (short) rows.

    For rows of a few hundred values a sort is several times faster than numpy's partition-based
    median; the middle order statistics are the same and are averaged as ``np.median`` does (a mean
    in the array's dtype). Rows with NaN go through ``np.median`` (which returns NaN for them).
    """
    if vals.ndim != 2 or vals.shape[1] == 0 or np.isnan(vals).any():
        return np.median(vals, axis=1)
    n = vals.shape[1]
    srt = np.sort(vals, axis=1)
    if n % 2:
        return np.mean(srt[:, n // 2 : n // 2 + 1], axis=1)
    return np.mean(srt[:, n // 2 - 1 : n // 2 + 1], axis=1)


def noise_level(response: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Robust noise level of an enhanced image: 1.4826 x median absolute deviation.

    Parameters
    ----------
    response : ndarray, shape (Y, X), float
        Enhanced image (:func:`enhance_spots`).
    mask : ndarray of bool, shape (Y, X), optional
        Pixels to estimate over (nuclei); all pixels when None or empty.

    Returns
    -------
    float
        Noise level in the units of ``response`` (> 0; a tiny positive value for a constant image).
    """
    r = _noise_sample(response, mask)
    if np.isnan(r).any():  # np.median's NaN result (the exact _median takes arrays without NaN)
        med = np.median(r)
        mad = float(np.median(np.abs(r - med), overwrite_input=True)) * 1.4826  # a private temporary
    else:  # _median = np.median, exactly (~3x faster on the ~60k nucleus pixels of a 1024² field)
        med = _median(r)
        mad = float(_median(np.abs(r - med))) * 1.4826
    if not mad > 0:
        mad = float(np.std(r))
    return max(mad, 1e-6)


def _noise_sample(response: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The 1-D sample :func:`noise_level` estimates from: every second pixel of every second row of images
    above 250k pixels (all pixels below), restricted to ``mask`` when it keeps at least 100 of them."""
    step = 2 if response.size > 250_000 else 1
    r = response[::step, ::step]
    if mask is not None:
        m = mask[::step, ::step]
        if np.count_nonzero(m) >= 100:
            r = r[m]
    return r.ravel()


#: Scales tried by :func:`estimate_signal_sigma_px`, as multiples of the nominal sigma (geometric ladder,
#: steps of ~17 %): signals 0.35-2x the nominal size can be measured; the window (3x the largest scale)
#: and so the cost grow with the upper end.
SIZE_SCALE_RANGE = (0.35, 2.0)
SIZE_N_SCALES = 12


def estimate_signal_sigma_px(image: np.ndarray, y: np.ndarray, x: np.ndarray, sigma_px: float) -> tuple[float, np.ndarray]:
    """Measure the Gaussian sigma of probe signals at given positions (automatic scale selection).

    For each signal the scale-normalised Laplacian of Gaussian ``-s^2 LoG_s`` is evaluated at its
    sub-pixel centre for ``s`` on a geometric ladder of :data:`SIZE_N_SCALES` values spanning
    :data:`SIZE_SCALE_RANGE` x ``sigma_px``; for a Gaussian spot of sigma ``s0`` it peaks at ``s = s0``
    (Lindeberg's scale selection). The peak is refined by a parabola in ``log s``; signals whose peak lies
    at either end of the ladder, or whose response is not positive, give no estimate. The kernel is
    evaluated on a square window of half-width ``3 x`` the largest scale, made zero-sum there (a
    constant or linear background gives 0), and separably (two 1-D Gaussians per signal and scale).
    Unbiased on isolated Gaussian spots of sigma 1-4 px (within 0.5 %, noise 1 % of the peak); a
    neighbouring signal inside the window biases one spot, not the median.

    Parameters
    ----------
    image : ndarray, shape (Y, X)
        Probe channel, raw intensity units.
    y, x : ndarray, shape (N,)
        Signal centres, pixels (sub-pixel allowed), e.g. the brightest candidates of
        :func:`find_candidates` inside nuclei. Signals closer to the image edge than the window are skipped.
    sigma_px : float
        Nominal sigma, pixels (:func:`spot_sigma_px` of the panel's signal diameter): centre of the ladder.

    Returns
    -------
    sigma : float
        Median of the per-signal estimates, pixels (``nan`` when none).
    per_signal : ndarray, shape (M,), float64
        The per-signal estimates (M <= N).
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"estimate_signal_sigma_px needs a 2-D image, got shape {img.shape}")
    if not sigma_px > 0:
        raise ValueError(f"sigma_px must be > 0, got {sigma_px}")
    sig = float(sigma_px) * np.geomspace(SIZE_SCALE_RANGE[0], SIZE_SCALE_RANGE[1], SIZE_N_SCALES)
    half = int(math.ceil(3.0 * sig[-1]))
    h, w = img.shape
    y = np.asarray(y, np.float64).ravel()
    x = np.asarray(x, np.float64).ravel()
    iy, ix = np.rint(y).astype(np.intp), np.rint(x).astype(np.intp)
    ok = (iy >= half) & (iy < h - half) & (ix >= half) & (ix < w - half)
    if not ok.any():
        return float("nan"), np.zeros(0)
    iy, ix = iy[ok], ix[ok]
    off = np.arange(-half, half + 1)
    flat = np.ascontiguousarray(img).reshape(-1)
    # = img[iy + off (rows), ix + off (columns)] per signal, by flat index (a single gather)
    win = np.take(flat, (iy * w + ix)[:, None, None] + (off[:, None] * w + off[None, :])).astype(np.float64)
    total = win.sum(axis=(1, 2))
    fy = off[None, :] - (y[ok] - iy)[:, None]  # (N, L) offsets from the sub-pixel centre
    fx = off[None, :] - (x[ok] - ix)[:, None]
    wy, wx = fy * fy, fx * fx
    n_win = float(off.size * off.size)
    # every scale at once: separable Gaussians (N, L, S), one batched product over the window's columns
    s2 = sig * sig
    gy = np.exp(-wy[:, :, None] / (2 * s2))
    gx = np.exp(-wx[:, :, None] / (2 * s2))
    t = win @ np.concatenate([gx, gx * wx[:, :, None]], axis=2)  # (N, L, 2 S): sums over columns
    t1, t2 = t[:, :, :sig.size], t[:, :, sig.size:]
    s_g = np.einsum("nis,nis->ns", gy, t1)
    s_gr2 = np.einsum("nis,nis->ns", gy * wy[:, :, None], t1) + np.einsum("nis,nis->ns", gy, t2)
    # LoG = g (r^2 - 2 s^2) / s^4 with the normalised Gaussian g = exp(-r^2 / 2 s^2) / (2 pi s^2); its window
    # mean (unnormalised, like raw) makes the kernel zero-sum on the window
    sgy, sgx = gy.sum(1), gx.sum(1)
    mean_log = ((gy * wy[:, :, None]).sum(1) * sgx + sgy * (gx * wx[:, :, None]).sum(1) - 2 * s2 * sgy * sgx) / n_win
    raw = (s_gr2 - 2 * s2 * s_g) - mean_log * total[:, None]
    resp = -raw / (2 * np.pi * s2 * s2)  # = -s^2 LoG: scale-normalised
    k = np.argmax(resp, axis=1)
    rows = np.arange(iy.size)
    # a peak inside the ladder, and a response above the rounding of the zero-sum kernel on the window
    inner = (k > 0) & (k < sig.size - 1) & (resp[rows, k] > 1e-9 * np.abs(win).mean(axis=(1, 2)))
    rows, k = rows[inner], k[inner]
    a, b, c = resp[rows, k - 1], resp[rows, k], resp[rows, k + 1]
    den = a - 2 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(den < 0, 0.5 * (a - c) / den, 0.0)  # parabola vertex, in ladder steps
    step = math.log(sig[1] / sig[0])
    est = np.exp(np.log(sig[k]) + np.clip(shift, -0.5, 0.5) * step)
    return (float(np.median(est)) if est.size else float("nan")), est


def _subpixel(response: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-parabola (Gaussian) peak fit on the 3x3 neighbourhood, vectorised; offsets clipped to ±0.5."""
    h, w = response.shape
    y0 = np.clip(yy, 1, h - 2)
    x0 = np.clip(xx, 1, w - 2)
    c = response[y0, x0]
    eps = np.maximum(np.abs(c) * 1e-3, 1e-12)

    def _off(a, b):
        la, lb, lc = (np.log(np.maximum(v, eps)) for v in (a, b, c))
        den = la - 2 * lc + lb
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(den < 0, 0.5 * (la - lb) / den, 0.0)
        return np.clip(np.nan_to_num(d), -0.5, 0.5)

    dy = _off(response[y0 - 1, x0], response[y0 + 1, x0])
    dx = _off(response[y0, x0 - 1], response[y0, x0 + 1])
    return y0 + dy, x0 + dx


def _local_maxima(
    response: np.ndarray, floor: float, rad: int, padded: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels above ``floor`` that are maxima of their ``(2 rad + 1)^2`` neighbourhood, row-major order.

    Sparse: only pixels above the floor are tested, each against its neighbours gathered from a
    ``-inf``-bordered copy by flat index (cheaper than a full-image maximum filter; ``padded`` is that
    copy when the caller already has one, e.g. the buffer of :func:`_dog`). The nearest
    neighbours come first and the survivors are compacted as the ring widens, so most pixels are
    dropped after a few comparisons. Comparisons are strict on one half of the neighbourhood and
    non-strict on the other: a flat plateau (e.g. a saturated signal) yields exactly one maximum.

    Returns
    -------
    yy, xx : ndarray of int64, shape (N,)
    """
    h, w = response.shape
    if padded is None:
        padded = np.full((h + 2 * rad, w + 2 * rad), -np.inf, np.float32)
        padded[rad:-rad, rad:-rad] = response
    elif not (padded.flags.c_contiguous and padded.shape[0] == h + 2 * rad and padded.shape[1] >= w + 2 * rad):
        raise ValueError("padded must be a C-contiguous -inf-bordered copy of response")
    yy, xx = np.divmod(_maxima_in_padded(padded, floor, (rad, rad)), padded.shape[1])
    return yy - rad, xx - rad


def _maxima_in_padded(padded: np.ndarray, floor: float, radii: tuple[int, ...]) -> np.ndarray:
    """Flat indices (row-major, into ``padded``) of the local maxima above ``floor``.

    ``padded`` is C-contiguous with at least ``radii[i]`` values of ``-inf`` on both sides of every
    axis ``i``; the neighbourhood is the box of half-widths ``radii``. Comparisons are strict with the
    neighbours that come first in row-major order and non-strict with the others (one maximum per
    plateau). Neighbours are compared nearest ring first and the survivors compacted every four
    comparisons (the result is the same in any order).
    """
    pflat = padded.ravel()
    pidx = np.flatnonzero(pflat > floor)  # the -inf border is never above the floor
    val = pflat[pidx]
    steps = np.asarray(padded.strides) // padded.itemsize
    offsets = [o for o in itertools.product(*(range(-r, r + 1) for r in radii)) if any(o)]
    offsets.sort(key=lambda o: (max(abs(v) for v in o), o))  # nearest ring first
    zero = (0,) * len(radii)
    alive = np.ones(pidx.size, bool)
    for k, off in enumerate(offsets):
        nb = pflat[pidx + int(np.dot(off, steps))]
        alive &= (nb < val) if off < zero else (nb <= val)
        if k % 4 == 3 or k == len(offsets) - 1:  # compact the survivors every few neighbours
            pidx, val = pidx[alive], val[alive]
            if not pidx.size:
                break
            alive = np.ones(pidx.size, bool)
    return pidx


def find_candidates(
    image: np.ndarray,
    sigma_px: float,
    labels: np.ndarray | None = None,
    *,
    min_snr: float = CANDIDATE_SNR,
    snap_px: float = 0.0,
    return_response: bool = False,
):
    """All local maxima of the enhanced probe channel above a low SNR, with their measurements.

    Parameters
    ----------
    image : ndarray, shape (Y, X)
        Probe channel, raw intensity units.
    sigma_px : float
        Spot sigma in pixels.
    labels : ndarray of int, shape (Y, X), optional
        Nucleus labels (0 = background). Candidates get the label under their position; the noise
        level is estimated over nuclear pixels.
    min_snr : float
        Candidates below this SNR are dropped.
    snap_px : float
        Candidates up to this distance outside a nucleus get its label (:func:`snap_to_nuclei`).
    return_response : bool
        Also return the enhanced image (for the diffuse-signal rule and overlays).

    Returns
    -------
    candidates : DataFrame
        Columns ``label, y, x, intensity, background, peak, snr`` (``y``, ``x`` sub-pixel, pixels;
        ``intensity`` = integrated intensity above the local background in a disk of radius
        2 sigma; ``background`` = :func:`local_background`; ``peak`` = enhanced height;
        ``snr`` = peak / noise).
    noise : float
        Noise level of the enhanced image (units of ``peak``).
    response : ndarray, shape (Y, X), float32
        Only with ``return_response=True``: the enhanced image.
    """
    cols, noise, response = _candidates_2d(image, sigma_px, labels, min_snr=min_snr, snap_px=snap_px)
    df = pd.DataFrame(cols)
    return (df, noise, response) if return_response else (df, noise)


def _candidates_2d(image, sigma_px, labels, *, min_snr, snap_px) -> tuple[dict[str, np.ndarray], float, np.ndarray]:
    """:func:`find_candidates` as a dict of column arrays (no DataFrame overhead), noise, response."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"find_candidates needs a 2-D image, got shape {img.shape}")
    rad = max(1, int(round(sigma_px)))
    dct = _use_dct(img)
    response, buf = _dog(img, sigma_px, rad, zero_floor=False, dct=dct)
    mask = labels > 0 if labels is not None else None
    noise = noise_level(response, mask)
    if dct and noise <= 1024 * _rounding_floor(img):
        # a (nearly) noise-free image: rounding-level values would set the noise level; zero them as the
        # passes do (with noise above this, values within the floor are < 1/1000 noise: never candidates)
        _zero_floor(response, img)
        noise = noise_level(response, mask)
    h, w = response.shape
    yy, xx = _local_maxima(response, min_snr * noise, rad, buf)
    ys, xs = _subpixel(response, yy, xx) if yy.size else (yy.astype(float), xx.astype(float))
    # integrated intensity above the local background in a disk of radius 2 sigma, gathered per spot
    bg = local_background(img, yy, xx, sigma_px)
    half = int(math.ceil(2 * sigma_px))
    oy, ox = np.mgrid[-half : half + 1, -half : half + 1]
    disk = np.hypot(oy, ox) <= 2 * sigma_px
    oy, ox = oy[disk], ox[disk]
    win = img[np.clip(yy[:, None] + oy, 0, h - 1), np.clip(xx[:, None] + ox, 0, w - 1)]
    intensity = win.sum(axis=1, dtype=np.float64) - bg * disk.sum()
    peak = response[yy, xx].astype(np.float64)
    if labels is not None:
        lab = snap_to_nuclei(ys, xs, labels, snap_px) if snap_px > 0 else labels[yy, xx].astype(np.int64)
    else:
        lab = np.zeros(yy.size, np.int64)
    cols = {
        "label": lab,
        "y": ys.astype(np.float64),
        "x": xs.astype(np.float64),
        "intensity": intensity,
        "background": bg,
        "peak": peak,
        "snr": peak / noise,
    }
    return cols, noise, response


def find_candidates_3d(
    stack: np.ndarray,
    sigma_px: float,
    sigma_z_planes: float,
    labels: np.ndarray | None = None,
    *,
    min_snr: float = CANDIDATE_SNR,
    snap_px: float = 0.0,
    return_response: bool = False,
):
    """3-D version of :func:`find_candidates` for a z-stack: maxima of a 3-D difference of Gaussians.

    Signals at different depths that overlap in a projection stay apart. Positions are sub-pixel in
    ``y``, ``x`` and sub-plane in ``z`` (log-parabola per axis); intensity and background are measured
    on the signal's plane; labels come from the 2-D nucleus labels.

    Parameters
    ----------
    stack : ndarray, shape (Z, Y, X)
        Probe channel z-stack, raw intensity units.
    sigma_px : float
        Spot sigma in pixels (y, x).
    sigma_z_planes : float
        Spot sigma along z, in planes (e.g. 0.3 µm axial sigma / 0.4 µm step = 0.75).
    labels, min_snr, snap_px, return_response
        As for :func:`find_candidates`.

    Returns
    -------
    candidates : DataFrame
        The columns of :func:`find_candidates` plus ``z`` (planes, float).
    noise : float
    response : ndarray, shape (Y, X), float32
        Only with ``return_response=True``: maximum projection of the 3-D enhanced image.
    """
    cols, noise, proj = _candidates_3d(stack, sigma_px, sigma_z_planes, labels, min_snr=min_snr, snap_px=snap_px)
    df = pd.DataFrame(cols)
    return (df, noise, proj) if return_response else (df, noise)


def _candidates_3d(stack, sigma_px, sigma_z_planes, labels, *, min_snr, snap_px):
    """:func:`find_candidates_3d` as a dict of column arrays, noise and the projected response."""
    img = np.asarray(stack, dtype=np.float32)
    if img.ndim != 3:
        raise ValueError(f"find_candidates_3d needs a (Z, Y, X) stack, got shape {img.shape}")
    sz = max(float(sigma_z_planes), 0.3)
    k = math.sqrt(DOG_RATIO**2 - 1)
    smooth = _gaussian(img, (sz, sigma_px, sigma_px), mode="nearest")
    resp3 = smooth - _gaussian(smooth, (sz * k, sigma_px * k, sigma_px * k), mode="nearest")
    nz, h, w = resp3.shape
    mask = labels > 0 if labels is not None else None
    sample = resp3[:, mask] if mask is not None and mask.sum() >= 100 else resp3.reshape(nz, -1)
    noise = noise_level(sample.reshape(1, -1))
    rad, radz = max(1, int(round(sigma_px))), max(1, int(round(sz)))
    padded = np.full((nz + 2 * radz, h + 2 * rad, w + 2 * rad), -np.inf, np.float32)
    padded[radz : radz + nz, rad : rad + h, rad : rad + w] = resp3
    zz, yy, xx = np.unravel_index(_maxima_in_padded(padded, min_snr * noise, (radz, rad, rad)), padded.shape)
    zz, yy, xx = zz - radz, yy - rad, xx - rad
    z0, y0, x0 = np.clip(zz, 1, max(1, nz - 2)), np.clip(yy, 1, h - 2), np.clip(xx, 1, w - 2)

    def _off(a, b, c):
        eps = np.maximum(np.abs(c) * 1e-3, 1e-12)
        la, lb, lc = (np.log(np.maximum(v, eps)) for v in (a, b, c))
        den = la - 2 * lc + lb
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(den < 0, 0.5 * (la - lb) / den, 0.0)
        return np.clip(np.nan_to_num(d), -0.5, 0.5)

    if zz.size:
        c = resp3[zz, y0, x0]
        ys = y0 + _off(resp3[zz, y0 - 1, x0], resp3[zz, y0 + 1, x0], c)
        xs = x0 + _off(resp3[zz, y0, x0 - 1], resp3[zz, y0, x0 + 1], c)
        zs = (z0 + _off(resp3[z0 - 1, yy, xx], resp3[z0 + 1, yy, xx], resp3[z0, yy, xx])) if nz >= 3 else zz.astype(float)
        ys, xs = np.where(yy == y0, ys, yy), np.where(xx == x0, xs, xx)
        zs = np.where(zz == z0, zs, zz)
    else:
        ys = xs = zs = np.zeros(0)
    bg = np.zeros(zz.size)
    intensity = np.zeros(zz.size)
    for z in np.unique(zz):  # per plane (a handful), vectorised over the plane's candidates
        sel = zz == z
        bg[sel] = local_background(img[z], yy[sel], xx[sel], sigma_px)
        half = int(math.ceil(2 * sigma_px))
        oy, ox = np.mgrid[-half : half + 1, -half : half + 1]
        disk = np.hypot(oy, ox) <= 2 * sigma_px
        win = img[z][np.clip(yy[sel][:, None] + oy[disk], 0, h - 1), np.clip(xx[sel][:, None] + ox[disk], 0, w - 1)]
        intensity[sel] = win.sum(axis=1, dtype=np.float64) - bg[sel] * disk.sum()
    peak = resp3[zz, yy, xx].astype(np.float64)
    if labels is not None:
        lab = snap_to_nuclei(ys, xs, labels, snap_px) if snap_px > 0 else labels[yy, xx].astype(np.int64)
    else:
        lab = np.zeros(zz.size, np.int64)
    cols = {"label": lab, "y": np.asarray(ys, np.float64), "x": np.asarray(xs, np.float64),
            "intensity": intensity, "background": bg, "peak": peak, "snr": peak / noise,
            "z": np.asarray(zs, np.float64)}
    return cols, noise, resp3.max(axis=0)


def snap_to_nuclei(
    y: np.ndarray, x: np.ndarray, labels: np.ndarray, max_distance_px: float
) -> np.ndarray:
    """Label of the nucleus under each point, or of the nearest nucleus within ``max_distance_px``.

    Segmented outlines are uncertain by a pixel or two and FISH signals often sit at the nuclear
    periphery, so a signal just outside its nucleus' mask still belongs to it. Points farther than
    ``max_distance_px`` from every nucleus keep label 0 (never counted).

    Parameters
    ----------
    y, x : ndarray, shape (N,), float
        Positions in pixels.
    labels : ndarray of int, shape (Y, X)
        Nucleus labels.
    max_distance_px : float
        Largest distance to a nucleus' mask, pixels.

    Returns
    -------
    ndarray, shape (N,), int64
    """
    h, w = labels.shape
    yi = np.clip(np.rint(y).astype(np.int64), 0, h - 1)
    xi = np.clip(np.rint(x).astype(np.int64), 0, w - 1)
    out = labels[yi, xi].astype(np.int64)
    r = int(math.floor(max_distance_px))
    todo = np.nonzero(out == 0)[0]
    if r < 1 or todo.size == 0:
        return out
    offs = np.arange(-r, r + 1)
    oy, ox = np.meshgrid(offs, offs, indexing="ij")
    d2 = (oy**2 + ox**2).ravel().astype(np.float64)
    inside = d2 <= max_distance_px**2
    oy, ox, d2 = oy.ravel()[inside], ox.ravel()[inside], d2[inside]
    wy = yi[todo, None] + oy[None, :]
    wx = xi[todo, None] + ox[None, :]
    valid = (wy >= 0) & (wy < h) & (wx >= 0) & (wx < w)
    lab = np.where(valid, labels[np.clip(wy, 0, h - 1), np.clip(wx, 0, w - 1)], 0)
    dist = np.where(lab > 0, d2[None, :], np.inf)
    j = np.argmin(dist, axis=1)
    best = lab[np.arange(todo.size), j]
    out[todo] = np.where(np.isfinite(dist[np.arange(todo.size), j]), best, 0)
    return out


def _labels_within(y: np.ndarray, x: np.ndarray, labels: np.ndarray, distance_px: float) -> np.ndarray:
    """(N, K) labels of the pixels within ``distance_px`` of each point (a disc of K pixel offsets around its
    nearest pixel, clipped to the image); (N, 0) when the distance is under one pixel."""
    h, w = labels.shape
    r = int(math.floor(distance_px))
    if r < 1 or len(y) == 0:
        return np.zeros((len(y), 0), labels.dtype)
    yi = np.clip(np.rint(y).astype(np.int64), 0, h - 1)
    xi = np.clip(np.rint(x).astype(np.int64), 0, w - 1)
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    inside = (oy**2 + ox**2) <= distance_px**2
    oy, ox = oy[inside], ox[inside]
    return labels[np.clip(yi[:, None] + oy, 0, h - 1), np.clip(xi[:, None] + ox, 0, w - 1)]


def near_other_nucleus(
    y: np.ndarray, x: np.ndarray, own: np.ndarray, labels: np.ndarray, distance_px: float
) -> np.ndarray:
    """Whether another nucleus' mask lies within ``distance_px`` of each point.

    A signal that close to a neighbouring nucleus (touching nuclei) cannot be assigned with confidence:
    the boundary between the two is uncertain by about that much.

    Parameters
    ----------
    y, x : ndarray, shape (N,), float
        Positions in pixels.
    own : ndarray, shape (N,), int
        Label each point is assigned to (0 = none).
    labels : ndarray of int, shape (Y, X)
    distance_px : float

    Returns
    -------
    ndarray of bool, shape (N,)
    """
    lab = _labels_within(y, x, labels, distance_px)
    return ((lab > 0) & (lab != np.asarray(own)[:, None])).any(axis=1)


def boundary_nuclei(
    y: np.ndarray, x: np.ndarray, own: np.ndarray, labels: np.ndarray, distance_px: float
) -> np.ndarray:
    """Labels of the nuclei whose counts a signal at a shared boundary makes uncertain.

    A signal within ``distance_px`` of another nucleus' mask (touching nuclei, whose segmented boundary is
    uncertain by about that much) may belong to either nucleus: the one it was assigned to may hold a
    signal too many, and each neighbour within reach one too few. Every one of them is returned: the
    nucleus holding the signal (as :func:`near_other_nucleus`) and each other nucleus whose mask lies
    within ``distance_px`` of it. (Flagging the holder alone leaves the neighbour that lost the signal to
    a misplaced boundary scorable, e.g. a normal nucleus read as a deletion.)

    Parameters
    ----------
    y, x : ndarray, shape (N,), float
        Positions of the counted signals, pixels.
    own : ndarray, shape (N,), int
        Nucleus each signal is assigned to (0 = none: such a signal flags no nucleus).
    labels : ndarray of int, shape (Y, X)
        Nucleus labels, 0 = background.
    distance_px : float
        Reach, pixels (under 1: nothing is flagged).

    Returns
    -------
    ndarray of int64, shape (M,)
        Sorted unique labels (> 0).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((20, 30), np.int32); labels[5:15, 5:15] = 1; labels[5:15, 15:25] = 2
    >>> boundary_nuclei(np.array([10.0, 10.0]), np.array([14.0, 7.0]), np.array([1, 1]), labels, 2.0).tolist()
    [1, 2]
    """
    own = np.asarray(own, np.int64)
    lab = _labels_within(y, x, labels, distance_px).astype(np.int64, copy=False)
    other = (lab > 0) & (lab != own[:, None]) & (own[:, None] > 0)
    holders = own[other.any(axis=1)]
    return np.union1d(holders, lab[other]).astype(np.int64)


def auto_threshold(
    snr: np.ndarray,
    n_nuclei: int,
    *,
    min_snr: float = MIN_AUTO_SNR,
    fallback_fraction: float = 0.3,
) -> float:
    """Automatic detection threshold (SNR units) from the candidates inside nuclei.

    The SNRs of candidate maxima inside nuclei are a mixture of a steeply falling noise tail and a mode
    of true signals. The threshold is the first significant minimum of the smoothed density of
    ``log(snr)`` walking up from ``min_snr`` towards the typical signal brightness (then centred in the
    gap between the candidates on either side, and never above the noise-side threshold below); the
    typical brightness is the median SNR of the
    ``n_nuclei`` brightest candidates (every scorable nucleus carries at least one signal per colour,
    clinical.md §6.1 R1, so these are true signals). This needs only a few signals per nucleus, unlike
    Big-FISH's elbow on the whole-image spot-count curve (its issue #74, anchors.md b1). With too few
    candidates for a density, or no valley, the threshold comes from the noise side: where an
    exponential fit of the noise maxima's tail expects half a false signal (at most half the typical
    signal SNR, ``fallback_fraction / 0.6``).

    Parameters
    ----------
    snr : ndarray, shape (N,), float
        SNR of candidate maxima inside nuclei (one field, or pooled over the fields of a sample).
    n_nuclei : int
        Number of nuclei the candidates come from.
    min_snr : float
        Lowest threshold returned.
    fallback_fraction : float
        The noise-side threshold is at most ``fallback_fraction / 0.6`` x the typical signal SNR.

    Returns
    -------
    float
        Threshold in SNR units (``>= min_snr``).
    """
    snr = np.asarray(snr, dtype=np.float64)
    snr = snr[np.isfinite(snr) & (snr > 0)]
    if snr.size == 0 or n_nuclei <= 0:
        return float(min_snr)
    k = int(min(max(n_nuclei, 1), snr.size))
    top = np.partition(snr, snr.size - k)[snr.size - k:]
    typical = float(np.median(top))
    if typical <= min_snr * 1.5:
        return float(min_snr)  # no convincing signals: keep the noise floor
    lo, hi = math.log(min_snr), math.log(typical)
    x = np.log(snr[(snr >= min_snr) & (snr <= typical)])
    if x.size < 20:
        return _noise_tail_threshold(snr, min_snr, typical, fallback_fraction)
    bw = 0.04  # bin width in log units (4 %)
    nb = max(8, int(math.ceil((hi - lo) / bw)))
    hist, edges = np.histogram(x, bins=nb, range=(lo, hi))
    dens = ndi.gaussian_filter1d(hist.astype(np.float64), sigma=max(1.0, 0.12 / bw), mode="nearest")
    centres = 0.5 * (edges[:-1] + edges[1:])
    # walk up from the floor through the falling noise tail to the first significant minimum: the
    # density must rise again towards the signal mode by a third (and by more than a few candidates),
    # and nothing on the way there may be much lower (then this was a bump of the noise tail)
    tol = 1e-9
    n = len(dens)
    i = 0
    t_idx = None
    while i < n:
        if (i == 0 or dens[i] <= dens[i - 1] + tol) and (i == n - 1 or dens[i] <= dens[i + 1] + tol):
            j = i
            while j + 1 < n and abs(dens[j + 1] - dens[i]) <= tol:
                j += 1  # a flat (e.g. empty) run: take its middle
            m = j + int(np.argmax(dens[j:]))
            rise = dens[m]
            # a significant rise towards the signal mode, and the lowest point on the way to it (a
            # fluctuation of the noise tail is followed by lower density before the signals come)
            if (dens[i] <= 0.75 * rise and rise - dens[i] >= 4 * _kernel_peak(0.12 / bw)
                    and dens[j : m + 1].min() >= 0.7 * dens[i] - tol):
                t_idx = (i + j) // 2
                break
            i = j + 1
        else:
            i += 1
    if t_idx is None:
        return _noise_tail_threshold(snr, min_snr, typical, fallback_fraction)
    t = math.exp(centres[t_idx])
    # sharpen: the smoothing blurs the valley; put the threshold in the middle of the gap between the
    # candidate values on either side of it (where the last noise maxima end and the first signals
    # begin), moving it by at most 0.3 log units
    lt = math.log(t)
    xs_sorted = np.sort(x)
    i = int(np.searchsorted(xs_sorted, lt))
    below = xs_sorted[i - 1] if i > 0 else lt - 0.3
    above = xs_sorted[i] if i < xs_sorted.size else lt + 0.3
    t = math.exp(0.5 * (max(below, lt - 0.3) + min(above, lt + 0.3)))
    # above the noise-side threshold no noise maximum is expected: a valley found higher (among sparse,
    # unevenly bright signals) would only lose signals
    t = min(t, _noise_tail_threshold(snr, min_snr, np.inf, fallback_fraction))
    return float(max(min_snr, t))


def _noise_tail_threshold(snr: np.ndarray, min_snr: float, typical: float, fallback_fraction: float) -> float:
    """Threshold from the noise side when the density has no usable valley (few candidates).

    Candidates between :data:`CANDIDATE_SNR` and ``min_snr`` are noise maxima. Their excess over
    ``CANDIDATE_SNR`` is modelled as exponential (maximum-likelihood rate, heavier than a Gaussian tail,
    so conservative), and the threshold is where half a noise maximum is expected above it among all
    candidates. With fewer than 10 noise maxima the field is clean and ``min_snr`` is kept (also as the
    cap of a valley found by :func:`auto_threshold`). The
    threshold never exceeds ``fallback_fraction`` x 1.67 (half) of the typical signal SNR.
    """
    low = snr[(snr >= CANDIDATE_SNR) & (snr < min_snr)] - CANDIDATE_SNR
    if low.size < 10:
        # a clean field: hardly any noise maxima below the floor, so hardly any above it either. A valley
        # found higher is a gap among unevenly bright signals (seen at 0.065 µm/px: signals at SNR 6-16
        # and 44-220, one noise maximum, a "valley" at 27 dropped the dim signals), so the floor also caps it
        return float(min_snr)
    span = min_snr - CANDIDATE_SNR
    rate = 1.0 / max(float(low.mean()), 1e-3)
    # the observed maxima are truncated at min_snr: correct the total count of noise maxima
    n_noise = low.size / max(1e-6, 1.0 - math.exp(-rate * span))
    t = CANDIDATE_SNR + math.log(max(n_noise / 0.5, 1.0)) / rate
    return float(max(min_snr, min(t, (fallback_fraction / 0.6) * typical)))


def _kernel_peak(sigma_bins: float) -> float:
    """Height of a smoothed single count (Gaussian kernel of ``sigma_bins``, at least 1 bin)."""
    return 1.0 / (math.sqrt(2 * math.pi) * max(1.0, sigma_bins))


def _checked_detect_args(image, pixel_size_um, signal_diameter_um, labels, threshold, signal: str):
    """:func:`detect_signals`' arguments checked: a 2-D numeric image with something finite in it, lengths in
    µm > 0, labels of the image's shape, a finite threshold >= 0; one-line errors naming the argument."""
    src = f"detect_signals({signal or 'image'})"
    img = np.asarray(image)
    if img.ndim != 2 or not (np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)):
        raise InputError(src, f"image must be a 2-D numeric array (Y, X), got shape {img.shape} of {img.dtype}")
    if img.size and np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).any():
        raise InputError(src, "image holds no finite value (all NaN or infinite)")
    checked_um(pixel_size_um, "pixel_size_um", src)
    checked_um(signal_diameter_um, "signal_diameter_um", src)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != img.shape or not np.issubdtype(labels.dtype, np.integer):
            raise InputError(src, f"labels must be integers of the image's shape {img.shape}, got shape "
                                  f"{labels.shape} of {labels.dtype}")
    if threshold is not None:
        try:
            t = float(threshold)
        except (TypeError, ValueError):
            raise InputError(src, f"threshold must be a number (SNR units), got {threshold!r}") from None
        if not (math.isfinite(t) and t >= 0):
            raise InputError(src, f"threshold must be a finite number >= 0 (SNR units), got {threshold!r}")
    return img, labels


def detect_signals(
    image: np.ndarray,
    *,
    pixel_size_um: float,
    signal_diameter_um: float,
    labels: np.ndarray | None = None,
    threshold: float | None = None,
    signal: str = "",
) -> tuple[pd.DataFrame, float]:
    """Detect probe signals in one channel.

    Parameters
    ----------
    image : ndarray, shape (Y, X)
        Probe channel, raw intensity units.
    pixel_size_um : float
        Pixel size in µm.
    signal_diameter_um : float
        Typical signal diameter in µm (``panel.signal_diameter_um``).
    labels : ndarray of int, shape (Y, X), optional
        Nucleus labels (0 = background); used for the automatic threshold and the ``label`` column.
    threshold : float, optional
        Manual threshold in SNR units (noise units of the enhanced image). Default: :func:`auto_threshold`
        on the candidates inside nuclei.
    signal : str
        Signal name written in the ``signal`` column.

    Returns
    -------
    signals : DataFrame
        One row per signal with ``snr >= threshold``: ``label, signal, y, x, intensity, background,
        peak, snr`` (positions in pixels, sub-pixel; label 0 = outside nuclei).
    threshold : float
        The threshold used (SNR units).

    Raises
    ------
    InputError
        The image is not a 2-D numeric array or holds no finite value; a length is not a number > 0; the
        labels are not integers of the image's shape; the threshold is negative or not finite.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64]
    >>> img = 100 + 500 * np.exp(-((yy - 30.3) ** 2 + (xx - 20.6) ** 2) / (2 * 1.5 ** 2))
    >>> sig, t = detect_signals(img, pixel_size_um=0.1, signal_diameter_um=0.35, threshold=5)
    >>> len(sig), round(float(sig.y[0]), 1), round(float(sig.x[0]), 1)
    (1, 30.3, 20.6)
    """
    image, labels = _checked_detect_args(image, pixel_size_um, signal_diameter_um, labels, threshold, signal)
    sigma = spot_sigma_px(signal_diameter_um, pixel_size_um)
    cand, _ = find_candidates(image, sigma, labels)
    if threshold is None:
        if labels is not None:
            n_nuc = int(len(np.unique(labels)) - (1 if (labels == 0).any() else 0))
            inside = cand["snr"].to_numpy()[cand["label"].to_numpy() > 0]
        else:
            # no nuclei: the typical signal is the median of the brighter half of the candidates that
            # stand clearly out of the noise (twice the lowest automatic threshold)
            inside = cand["snr"].to_numpy()
            n_nuc = max(1, int((inside >= 2 * MIN_AUTO_SNR).sum()) // 2)
        threshold = auto_threshold(inside, n_nuc)
    out = cand[cand["snr"] >= threshold].reset_index(drop=True)
    out.insert(1, "signal", signal)
    return out, float(threshold)


# -------------------------------------------------------------------------------------------
# lab rules
# -------------------------------------------------------------------------------------------
def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component id (0..n-1 representative index) of n items joined by index pairs."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0:
        return np.zeros(0, np.int64)
    if len(pairs) == 0:
        return np.arange(n)
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    return comp


def _complete_linkage(pairs: np.ndarray, dist: np.ndarray, pts: np.ndarray, max_px: float) -> np.ndarray:
    """Links (closest first) that keep every group's diameter within ``max_px``.

    Loops over the candidate links only (same colour, same nucleus, closer than ``max_px``): a few per
    nucleus at most.
    """
    if len(pairs) == 0:
        return pairs.reshape(0, 2)
    group: dict[int, list[int]] = {}
    kept = []
    for k in np.argsort(dist, kind="stable"):
        i, j = int(pairs[k, 0]), int(pairs[k, 1])
        gi, gj = group.get(i, [i]), group.get(j, [j])
        if gi is gj:
            continue
        members_i, members_j = np.asarray(gi), np.asarray(gj)
        dd = np.linalg.norm(pts[members_i][:, None, :] - pts[members_j][None, :, :], axis=2)
        if dd.max() <= max_px + 1e-9:
            merged = gi + gj
            for m in merged:
                group[m] = merged
            kept.append((i, j))
    return np.asarray(kept, dtype=np.int64).reshape(-1, 2)


def merge_split_signals(
    signals: pd.DataFrame,
    *,
    split_distance_um: float,
    pixel_size_um: float,
    response: Mapping[str, np.ndarray] | None = None,
    diffuse_distance_um: float | None = None,
    diffuse_ridge: float = 0.75,
    z_scale_px: float | None = None,
) -> pd.DataFrame:
    """Apply the split-signal and diffuse-signal rules: same-colour signals that are one signal count as one.

    Two signals of the same colour in the same nucleus are merged when they are at most
    ``split_distance_um`` apart (split-signal rule: "Count 2 signals that are the same size and separated
    by a distance equal or less than the diameter of the signal, as one", Leica HER2 guide, clinical.md
    §3.2); a group grows only while all its members stay that close to each other (complete linkage),
    so a split doublet beside a separate signal never chains into one. With ``response`` images, two signals up to ``diffuse_distance_um`` apart (default 2 x split
    distance) are also merged when the enhanced image along the segment between them never dips below
    ``diffuse_ridge`` x the dimmer peak: one diffuse signal with several maxima ("diffuse signals are
    counted as one", clinical.md §3.2); diffuse links are transitive.

    Parameters
    ----------
    signals : DataFrame
        Detected signals with at least ``label, signal, y, x, snr`` (pixels).
    split_distance_um, pixel_size_um : float
        Split distance and pixel size in µm.
    response : mapping of str to ndarray (Y, X), optional
        Enhanced image per signal name, for the diffuse rule.
    diffuse_distance_um : float, optional
        Largest distance for the diffuse rule (default ``2 * split_distance_um``).
    diffuse_ridge : float
        Ridge height, as a fraction of the dimmer peak, that makes two maxima one diffuse signal.
    z_scale_px : float, optional
        With a ``z`` column (3-D detection): the z-step in pixel units; distances are then 3-D.

    Returns
    -------
    DataFrame
        The input with ``spot_id`` (if missing), ``group_id`` (``spot_id`` of the brightest member of
        its merge group), ``n_merged`` (group size), ``merge`` (``""``, ``"split"`` or ``"diffuse"``)
        and ``counts_as`` (the signal name on each group's representative inside a nucleus, ``""``
        otherwise). Signals outside nuclei (label 0) are never counted.
    """
    df = signals.copy().reset_index(drop=True)
    n = len(df)
    if "spot_id" not in df:
        df.insert(0, "spot_id", np.arange(n, dtype=np.int64))
    df["group_id"] = df["spot_id"].to_numpy()
    df["n_merged"] = 1
    df["merge"] = ""
    if n == 0:
        df["counts_as"] = pd.Series(dtype=str)
        return df
    split_px = split_distance_um / pixel_size_um
    diffuse_px = (diffuse_distance_um if diffuse_distance_um is not None else 2 * split_distance_um) / pixel_size_um
    pts = df[["y", "x"]].to_numpy(np.float64)
    if z_scale_px is not None and "z" in df:
        pts3 = np.column_stack([pts, df["z"].to_numpy(np.float64) * z_scale_px])  # z in pixel units
    else:
        pts3 = pts
    sig = df["signal"].to_numpy()
    lab = df["label"].to_numpy()
    rep, n_merged, merge = _merge_groups(
        sig, lab, pts, pts3, df["snr"].to_numpy(), df["peak"].to_numpy() if "peak" in df else None, response,
        split_px=split_px, diffuse_px=diffuse_px, diffuse_ridge=diffuse_ridge,
    )
    df["group_id"] = df["spot_id"].to_numpy()[rep]
    df["n_merged"] = n_merged
    df["merge"] = merge
    is_rep = np.arange(n) == rep
    df["counts_as"] = np.where(is_rep & (lab > 0), sig, "")
    return df


def _merge_groups(
    sig: np.ndarray,
    lab: np.ndarray,
    pts: np.ndarray,
    pts3: np.ndarray,
    bright: np.ndarray,
    peak: np.ndarray | None,
    response: Mapping[str, np.ndarray] | None,
    *,
    split_px: float,
    diffuse_px: float,
    diffuse_ridge: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The merge rules of :func:`merge_split_signals` on column arrays (no DataFrame).

    Parameters
    ----------
    sig, lab : ndarray, shape (N,)
        Signal name (object) and nucleus label of each signal.
    pts, pts3 : ndarray, shape (N, 2) and (N, 2 or 3), float64
        ``(y, x)`` in pixels, and the positions distances are measured on (with ``z`` in pixel units).
    bright : ndarray, shape (N,)
        SNR (the brightest member represents its group).
    peak : ndarray, shape (N,) or None
        Enhanced peak height for the diffuse ridge test (None: the response at the maxima).
    response, split_px, diffuse_px, diffuse_ridge
        As for :func:`merge_split_signals` (distances in pixels).

    Returns
    -------
    rep : ndarray of int64, shape (N,)
        Row index of each signal's group representative.
    n_merged : ndarray of int64, shape (N,)
        Size of each signal's group.
    merge : ndarray of object, shape (N,)
        ``""``, ``"split"`` or ``"diffuse"``.
    """
    n = len(sig)
    reach = diffuse_px if response is not None else split_px
    pairs = cKDTree(pts3).query_pairs(reach, output_type="ndarray")
    kind = np.empty(0, np.int64)  # 2 = split link, 1 = diffuse link
    if len(pairs):
        same = (sig[pairs[:, 0]] == sig[pairs[:, 1]]) & (lab[pairs[:, 0]] == lab[pairs[:, 1]])
        pairs = pairs[same]
        d = np.linalg.norm(pts3[pairs[:, 0]] - pts3[pairs[:, 1]], axis=1)
        is_split = d <= split_px + 1e-9
        is_diffuse = np.zeros(len(pairs), bool)
        if response is not None and (~is_split).any():
            cand = np.nonzero(~is_split)[0]
            snr = peak if peak is not None else bright
            for name in np.unique(sig[pairs[cand, 0]]):
                img = response.get(name)
                if img is None:
                    continue
                c = cand[sig[pairs[cand, 0]] == name]
                a, b = pts[pairs[c, 0]], pts[pairs[c, 1]]
                fr = np.linspace(0.2, 0.8, 4)
                line = a[:, None, :] + (b - a)[:, None, :] * fr[None, :, None]  # (P, 4, 2)
                vals = ndi.map_coordinates(img, [line[..., 0].ravel(), line[..., 1].ravel()], order=1, mode="nearest")
                ridge = vals.reshape(len(c), len(fr)).min(axis=1)
                dimmer = np.minimum(snr[pairs[c, 0]], snr[pairs[c, 1]])
                if peak is None:  # fall back to SNR units: compare against the image at the maxima
                    dimmer = np.minimum(
                        ndi.map_coordinates(img, a.T, order=1), ndi.map_coordinates(img, b.T, order=1)
                    )
                is_diffuse[c] = ridge >= diffuse_ridge * dimmer
        # split links join groups only when every member stays within the split distance of every other
        # (complete linkage): a split doublet next to a separate signal must not chain into one
        sp_pairs = _complete_linkage(pairs[is_split], d[is_split], pts3, split_px)
        df_pairs = pairs[is_diffuse & ~is_split]
        pairs = np.concatenate([sp_pairs, df_pairs]).reshape(-1, 2)
        kind = np.concatenate([np.full(len(sp_pairs), 2, np.int64), np.ones(len(df_pairs), np.int64)])
    comp = _components(n, pairs)
    # representative = brightest member of each component
    order = np.lexsort((-bright, comp))
    first = np.ones(n, bool)
    first[1:] = comp[order][1:] != comp[order][:-1]
    rep_of_comp = np.empty(comp.max() + 1, np.int64)
    rep_of_comp[comp[order][first]] = order[first]
    rep = rep_of_comp[comp]
    sizes = np.bincount(comp)
    # a group is "split" if any of its links is a split link, else "diffuse"
    code = np.zeros(comp.max() + 1, np.int64)
    if len(pairs):
        np.maximum.at(code, comp[pairs[:, 0]], kind)
    merge = np.array(["", "diffuse", "split"], dtype=object)[code[comp]]
    return rep, sizes[comp], merge


def pair_fusions(
    signals: pd.DataFrame,
    fusion_pair: tuple[str, str],
    *,
    fusion_distance_um: float,
    pixel_size_um: float,
    z_scale_px: float | None = None,
) -> pd.DataFrame:
    """Pair target and partner signals into fused signals (dual-fusion and break-apart panels).

    Among the counted signals (``counts_as`` set) of the two fusion-pair colours in the same nucleus,
    pairs closer than ``fusion_distance_um`` are matched one-to-one, closest first (greedy matching on
    sorted distances). A matched pair counts as one fused signal: the first signal of the pair gets
    ``counts_as = "fusion"``, the second ``counts_as = ""``; both get ``fusion_partner`` = the other's
    ``spot_id`` and ``"fusion"`` appended to ``merge``. Fusion distance is a panel rule (e.g. 0.8 µm
    for BCR::ABL1, anchors.md a2).

    Parameters
    ----------
    signals : DataFrame
        Output of :func:`merge_split_signals`.
    fusion_pair : tuple of two str
        The two signal names that fuse (``panel.fusion_pair``).
    fusion_distance_um, pixel_size_um : float
        Fusion distance and pixel size in µm.
    z_scale_px : float, optional
        With a ``z`` column (3-D detection): the z-step in pixel units; distances are then 3-D.

    Returns
    -------
    DataFrame
        The input with ``fusion_partner`` (``-1`` when not fused) and updated ``counts_as``/``merge``.
    """
    df = signals.copy()
    df["fusion_partner"] = np.full(len(df), -1, np.int64)
    if len(df) == 0:
        return df
    counts_as = df["counts_as"].to_numpy().astype(object)
    if not ((counts_as == fusion_pair[0]).any() and (counts_as == fusion_pair[1]).any()):
        return df
    pts = df[["y", "x"]].to_numpy(np.float64)
    if z_scale_px is not None and "z" in df:
        pts = np.column_stack([pts, df["z"].to_numpy(np.float64) * z_scale_px])
    partner, counts_as, merge = _pair_fusions(
        counts_as, df["merge"].to_numpy().astype(object), df["label"].to_numpy(), pts, df["spot_id"].to_numpy(),
        fusion_pair, fusion_distance_um / pixel_size_um,
    )
    if partner is None:
        return df
    df["fusion_partner"] = partner
    df["counts_as"] = counts_as
    df["merge"] = merge
    return df


def _pair_fusions(
    counts_as: np.ndarray,
    merge: np.ndarray,
    lab: np.ndarray,
    pts: np.ndarray,
    sid: np.ndarray,
    fusion_pair: tuple[str, str],
    r: float,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """The matching of :func:`pair_fusions` on column arrays.

    ``counts_as`` and ``merge`` (object arrays) are updated in place; ``pts`` are positions in pixels
    (``z`` in pixel units when 3-D), ``r`` the fusion distance in pixels. Returns ``(partner, counts_as,
    merge)`` with ``partner`` the partner's ``spot_id`` (``-1`` when not fused), or ``None`` when no
    pair lies within reach (nothing changed).
    """
    a_name, b_name = fusion_pair
    ia = np.nonzero(counts_as == a_name)[0]
    ib = np.nonzero(counts_as == b_name)[0]
    if not len(ia) or not len(ib):
        return None, counts_as, merge
    near = cKDTree(pts[ia]).query_ball_tree(cKDTree(pts[ib]), r)
    pa = np.fromiter((i for i, js in enumerate(near) for _ in js), np.int64)
    pb = np.fromiter((j for js in near for j in js), np.int64)
    if not len(pa):
        return None, counts_as, merge
    ga, gb = ia[pa], ib[pb]
    ok = lab[ga] == lab[gb]
    ga, gb = ga[ok], gb[ok]
    d = np.linalg.norm(pts[ga] - pts[gb], axis=1)
    order = np.argsort(d, kind="stable")
    used = np.zeros(len(counts_as), bool)
    partner = np.full(len(counts_as), -1, np.int64)
    for k in order:  # loop over candidate pairs within the fusion distance only (a few per nucleus)
        i, j = ga[k], gb[k]
        if used[i] or used[j]:
            continue
        used[i] = used[j] = True
        partner[i], partner[j] = sid[j], sid[i]
        counts_as[i], counts_as[j] = "fusion", ""
        merge[i] = "fusion" if not merge[i] else f"{merge[i]}+fusion"
        merge[j] = "fusion" if not merge[j] else f"{merge[j]}+fusion"
    return partner, counts_as, merge


def finish_signal_table(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-channel signal tables into one table with the :data:`SPOT_COLUMNS` order."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _SPOT_DTYPES.items()})
    df = pd.concat(frames, ignore_index=True)
    for c, t in _SPOT_DTYPES.items():
        if c not in df:
            df[c] = -1 if t == "int64" else ("" if t == "object" else np.nan)
    extra = ["z"] if "z" in df else []  # 3-D detection: plane position, appended (contract v1 allows it)
    return df[list(SPOT_COLUMNS) + extra].astype({**_SPOT_DTYPES, **{c: "float64" for c in extra}})


def signal_table(columns: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """One signal table from column arrays: :data:`SPOT_COLUMNS` (all required) plus ``z`` if given.

    The same table as :func:`finish_signal_table` on one DataFrame of these columns, built without
    concatenation (the fast path of :func:`fishcount.analyze_field`).
    """
    dtypes = {**_SPOT_DTYPES, **({"z": "float64"} if "z" in columns else {})}
    return pd.DataFrame({
        c: pd.Series(np.asarray(columns[c], dtype=object), dtype=object, copy=False) if t == "object"
        else np.asarray(columns[c], dtype=t)
        for c, t in ((c, dtypes[c]) for c in [*SPOT_COLUMNS, *(["z"] if "z" in columns else [])])
    })


_SPOT_DTYPES = {
    "spot_id": "int64", "label": "int64", "signal": "object", "y": "float64", "x": "float64",
    "intensity": "float64", "background": "float64", "peak": "float64", "snr": "float64",
    "group_id": "int64", "n_merged": "int64", "merge": "object", "fusion_partner": "int64",
    "counts_as": "object",
}
