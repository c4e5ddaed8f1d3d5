"""Read FISH fields: TIFF / OME-TIFF / ImageJ hyperstacks, z-stacks and per-channel file groups.

A *field* is one microscope field of view: a DAPI (nuclear counterstain) image and one image per
probe signal of a panel. :func:`read_field` reads one from disk, works out which axis holds the
channels and which holds z-planes, matches channel names to the panel's signals and reads the
pixel size, and returns a frozen :class:`Field`. Everything it decided (and where the decision
came from) is reported by :func:`describe_field`, which is what ``fishcount info`` prints.

Layouts, metadata and matching rules are documented in ``docs/reading.md``.

Example
-------
>>> import fishcount as fc
>>> field = fc.read_field("field01.ome.tif", panel="del5q")        # doctest: +SKIP
>>> field.dapi.shape, sorted(field.probes)                          # doctest: +SKIP
((512, 512), ['D5S23', 'EGR1'])
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import InputError
from .panels import Panel, load_panel

__all__ = [
    "Field",
    "read_field",
    "field_from_arrays",
    "describe_field",
    "format_description",
    "find_fields",
    "split_series",
    "image_positions",
    "with_positions",
    "Position",
    "stem_of",
    "DAPI",
    "DAPI_NAMES",
]

#: Key of the nuclear counterstain in :attr:`Field.channel_map`.
DAPI = "DAPI"
#: Channel names (case-insensitive) recognised as the nuclear counterstain.
DAPI_NAMES: tuple[str, ...] = ("DAPI", "Hoechst", "nuclei", "nuclear", "nucleus", "counterstain", "blue")
# ("DNA" is left out on purpose: probe channels are often described as "DNA probe ...")

_TIFF_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: Exported pictures read too when named explicitly (never picked up from folders): their signatures.
_EXPORT_MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG"}
PICTURE_SUFFIXES = (".png", ".jpeg", ".jpg")
# names that carry no information about what a channel shows (Bio-Formats / vendor defaults)
_GENERIC_NAME_RE = re.compile(r"^\s*(?:ch(?:annel)?|c|w|wavelength)?[\s:_#\-]*\d+(?:[\s:_\-]+\d+)*\s*$", re.I)
# length units -> micrometres (OME UnitsLength symbols, ImageJ unit strings)
_UNIT_TO_UM: dict[str, float] = {
    "m": 1e6, "dm": 1e5, "cm": 1e4, "mm": 1e3,
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "\\u00b5m": 1.0, "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3, "pm": 1e-6,
    "å": 1e-4, "angstrom": 1e-4, "in": 25400.0, "inch": 25400.0,
}
# plausible pixel sizes of a microscope image, µm; an inch- or centimetre-based TIFF resolution outside this
# range is a screen/print DPI (72, 96, 300 dpi), not a calibration
_PLAUSIBLE_PIXEL_UM = (0.005, 20.0)
_MAX_SMALL_CHANNEL_AXIS = 8  # a last axis this small (and much smaller than Y, X) is channels (YXC)


@dataclass(frozen=True)
class Field:
    """One field of view: DAPI + one image per panel signal, with what was read about them.

    Attributes
    ----------
    path : str
        Source file (first file of a per-channel group) or ``"<array>"``.
    stem : str
        File name without ``.ome.tif``/``.tif``/``.tiff`` (and without ``_<channel>`` for groups).
    dapi : ndarray, float32
        ``(Y, X)`` raw intensities (``(Z, Y, X)`` if read with ``z_mode="keep"``).
    probes : dict of str to ndarray
        Panel signal name -> float32 image of the same shape as ``dapi``, in panel order.
    pixel_size_um : float or None
        Pixel size in µm (square pixels assumed; the X size when X and Y differ).
    pixel_size_source : str
        ``"OME PhysicalSizeX"``, ``"ImageJ"``, ``"TIFF resolution"``, ``"user"`` or ``"none"``.
    channel_names : tuple of str
        Channel names as in the file (or given with ``channels=``); ``""`` for unnamed channels.
    channel_map : dict of str to int
        ``"DAPI"`` and each signal name -> channel index in the file (file index in a group).
    axes : str
        Axes as stored, e.g. ``"CYX"``, ``"ZCYX"``, ``"YXC"`` (``"C"`` + file axes for a group).
    n_z : int
        Number of z-planes stored (1 for 2-D images).
    dtype : str
        Stored dtype, e.g. ``"uint16"``.
    shape : tuple of int
        Stored shape.
    saturation_value : float or None
        The value at which the camera clips, for integer images: the dtype maximum (e.g. 65535), or a
        lower camera bit depth's (4095 for 12 bits) from OME ``SignificantBits`` or from the data
        (:func:`saturation_level`); None for float images.
    panel_id : str
        Id of the panel the channels were matched to.
    saturation_source : str
        Where ``saturation_value`` comes from: ``"dtype"``, ``"OME SignificantBits"``,
        ``"camera bit depth (data maximum)"`` or ``"none"`` (float images).
    series : int or None
        The image (TIFF series number) read from a multi-position file (``read_field(series=)``; ``stem``
        then ends in ``_s<series>``); None for a file of one image.
    files : tuple of str
        Every file the field was read from: the one file, or each channel's file of a per-channel group
        (in the group's order); empty for data given as arrays.
    z_step_um : float or None
        Distance between the stored z-planes in µm as the file says (OME ``PhysicalSizeZ``, ImageJ
        ``spacing``); None for a single plane or when not stored. 3-D detection takes its z step from the
        caller (``z_step_um``, ``--z-step``), which is checked against this.
    colour_composite : bool
        The channels are the red, green and blue planes of an 8-bit colour picture (an exported
        composite, TIFF, PNG or JPEG): their intensities are display values, and a probe shown in a mixed
        colour (orange = red + half green) appears in two planes (:func:`fishcount.analyze_field` then
        unmixes up to the whole of it, not only a filter's bleed-through).
    """

    path: str
    stem: str
    dapi: np.ndarray
    probes: dict[str, np.ndarray]
    pixel_size_um: float | None
    pixel_size_source: str
    channel_names: tuple[str, ...]
    channel_map: dict[str, int]
    axes: str
    n_z: int
    dtype: str
    shape: tuple[int, ...]
    saturation_value: float | None
    panel_id: str
    saturation_source: str = "dtype"
    series: int | None = None
    colour_composite: bool = False
    files: tuple[str, ...] = ()
    z_step_um: float | None = None


@dataclass(frozen=True)
class Position:
    """One image of a multi-position TIFF, as a source of its own: ``read_field(Position(path, 2))`` is
    ``read_field(path, series=2)``; :func:`fishcount.analyze_field` and
    :func:`fishcount.estimate_thresholds` accept it wherever they accept a file path.

    Attributes
    ----------
    path : str or path-like, or tuple of them
        The multi-position TIFF, or the files of a per-channel group that each hold the same positions.
    series : int
        The TIFF series number of the image (:func:`image_positions`).
    """

    path: "str | os.PathLike | tuple[str | os.PathLike, ...]"
    series: int

    def __str__(self) -> str:
        if isinstance(self.path, (list, tuple)):  # the files of a per-channel group
            return f"{self.path[0]} (+{len(self.path) - 1} channel files) (series {self.series})"
        return f"{self.path} (series {self.series})"


# -------------------------------------------------------------------------------------------
# names
# -------------------------------------------------------------------------------------------
def stem_of(path: "str | os.PathLike | Position | Sequence[str | os.PathLike]") -> str:
    """File name without its directory and a ``.ome.tif``/``.ome.tiff``/``.tif``/``.tiff`` ending (or an
    exported picture's ``.png``/``.jpg``/``.jpeg``); for a :class:`Position`, that of its file followed by
    ``_s<series>``; for a per-channel group (a list of files), the common beginning of its files' stems
    (:attr:`Field.stem`).

    The ending is matched case-insensitively; other endings are kept.

    Parameters
    ----------
    path : str, path-like, Position or sequence of str / path-like
        A file name or path (need not exist), a :class:`Position` of a multi-position TIFF (or of a per-channel
        group), or a non-empty list / tuple of the files of a per-channel group (one file: its own stem).

    Returns
    -------
    str
        The stem: the base name without the image ending; ``<stem>_s<series>`` for a :class:`Position`; for a
        group, the common prefix of the files' stems without trailing ``_``, ``-``, ``.`` or spaces (the first
        file's stem when they share none).

    Examples
    --------
    >>> stem_of("/data/field01.ome.tif")
    'field01'
    >>> stem_of("field02.TIFF")
    'field02'
    >>> stem_of(Position("plate.ome.tif", 3))
    'plate_s3'
    >>> stem_of(["f1_DAPI.tif", "f1_EGR1.tif"])
    'f1'
    """
    if isinstance(path, (list, tuple)):
        return _common_stem(path) if len(path) > 1 else stem_of(path[0])
    if isinstance(path, Position):
        if isinstance(path.path, (list, tuple)):  # a per-channel group: its files' common stem
            return f"{_common_stem(path.path)}_s{int(path.series)}"
        return f"{stem_of(path.path)}_s{int(path.series)}"
    name = Path(path).name
    low = name.lower()
    for suf in _TIFF_SUFFIXES + PICTURE_SUFFIXES:
        if low.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)]
    return name


def _norm(name: str) -> str:
    """Case- and space-insensitive form of a channel name."""
    return " ".join(str(name).replace("\u03bc", "\u00b5").split()).casefold()


def _channel_terms(panel: Panel) -> dict[str, tuple[str, ...]]:
    """Key (``"DAPI"`` and each signal name) -> the names a channel may carry for it."""
    terms: dict[str, tuple[str, ...]] = {DAPI: DAPI_NAMES}
    for s in panel.signals:
        terms[s.name] = (s.name, *s.aliases, s.fluor)
    return terms


def _is_generic(name: str) -> bool:
    return not name.strip() or bool(_GENERIC_NAME_RE.match(name))


def _match_level(name: str, term: str) -> int:
    """2 = the name is the term, 1 = the term is a whole word of the name, 0 = no match. A word after
    "far" or "near" is not that word ("Far Red" is a Cy5-like channel, not red)."""
    n, t = _norm(name), _norm(term)
    if not t:
        return 0
    if n == t:
        return 2
    if re.search(rf"(?<![a-z0-9])(?<!far[ -])(?<!near[ -]){re.escape(t)}(?![a-z0-9])", n):
        return 1
    return 0


def _match_channels(names: Sequence[str], panel: Panel, source: str) -> dict[str, int]:
    """Map ``"DAPI"`` and each panel signal to the index of the channel whose name fits it.

    A channel matches a key if its name equals (level 2), or contains as a whole word (level 1),
    one of the key's names (signal name, aliases, fluor; DAPI/Hoechst/nuclei... for DAPI), case-
    insensitively. A channel competes only for the keys it matches at its own best level; for each
    key the channels at the best level win. Channels that match nothing, or lose everywhere (e.g. a
    ``"DAPI+EGR1 merge"`` beside exact ``DAPI`` and ``EGR1`` channels), are ignored.

    Raises
    ------
    InputError
        Two channels fit one key equally well, a channel that fits several keys equally is the one
        a key would need, or a key has no channel.
    """
    terms = _channel_terms(panel)
    best: dict[int, tuple[int, list[str]]] = {}
    for i, name in enumerate(names):
        levels = {k: max(_match_level(name, t) for t in ts) for k, ts in terms.items()}
        top = max(levels.values())
        if top:
            best[i] = (top, [k for k, lv in levels.items() if lv == top])
    mapping: dict[str, int] = {}
    for key in terms:
        cands = [(lv, i) for i, (lv, ks) in best.items() if key in ks]
        if not cands:
            continue
        top = max(lv for lv, _ in cands)
        idx = [i for lv, i in cands if lv == top]
        if len(idx) > 1:
            both = " and ".join(f"channel {i} {names[i]!r}" for i in idx)
            raise InputError(source, f"ambiguous channels for {key}: {both} both match; name them with --channels")
        i = idx[0]
        if len(best[i][1]) > 1:  # the winner fits several keys equally: never guess which one it is
            raise InputError(
                source,
                f"channel {i} {names[i]!r} matches more than one of {', '.join(best[i][1])}; "
                "name the channels with --channels (e.g. DAPI," + ",".join(panel.signal_names) + ")",
            )
        mapping[key] = i
    missing = [k for k in terms if k not in mapping]
    if missing:
        shown = ", ".join(repr(n) for n in names) or "none"
        need = "; ".join(f"{k} = {'/'.join(terms[k][:4])}" for k in missing)
        raise InputError(
            source,
            f"no channel for {', '.join(missing)} (panel {panel.id}) among channels {shown}; "
            f"expected a name like {need}, or give --channels",
        )
    return {k: mapping[k] for k in terms}


#: Unnamed channels read in the panel's order: a channel holds the nuclear stain "by its content" when the
#: fraction of its pixels above half-way from its median to its 99.9th percentile is at least
#: NUCLEAR_MIN_BRIGHT_FRACTION and NUCLEAR_BRIGHT_RATIO times every other channel's, while the first channel
#: (assumed DAPI) stays at most PROBE_MAX_BRIGHT_FRACTION. Measured (sixteenth session): DAPI / Hoechst
#: 0.039-0.111 (sample images, simulated fields of five panels at two densities, CellProfiler's Hoechst
#: image), probe and foci channels 0.003-0.010 (the same fields, CellProfiler's gamma-H2AX image), dense or
#: blurred spot images 0.011-0.028 (Spotiflow, SpotMAX samples): only a clear case moves the stain.
NUCLEAR_MIN_BRIGHT_FRACTION = 0.03
NUCLEAR_BRIGHT_RATIO = 3.0
PROBE_MAX_BRIGHT_FRACTION = 0.015

#: ``names_source`` of an 8-bit colour picture whose planes were assigned by display colour.
RGB_BY_COLOUR = "RGB composite, by display colour"
#: A panel signal's display ``color`` picks the plane of a colour composite when one primary dominates it by
#: at least this factor (orange #ff8c00: red 255 vs green 140, 1.8x; gold #ffd700, 1.2x, and aqua #00ffff
#: pick none).
COLOUR_DOMINANCE = 1.5
#: The blue plane of a colour composite read by display colour must show at least this many times the bright
#: area (:func:`_bright_fraction`) of the red and the green plane. Measured on simulated composites of three
#: panels (each channel stretched to 8 bits): blue 0.063-0.121, probe planes 0.011-0.016 (5-10x); with DAPI
#: displayed light blue (30 % of it in red and green too) the probe planes 0.016-0.034 (2.1-7x); planes of
#: noise or a grey picture saved as RGB about 1x.
COMPOSITE_BRIGHT_RATIO = 2.0


def _dominant_primary(colour: str) -> int | None:
    """0, 1 or 2 for a ``#rrggbb`` colour that is plainly red, green or blue (:data:`COLOUR_DOMINANCE`)."""
    m = re.fullmatch(r"#?([0-9a-fA-F]{6})", colour.strip())
    if not m:
        return None
    rgb = [int(m.group(1)[i:i + 2], 16) for i in (0, 2, 4)]
    top = int(np.argmax(rgb))
    rest = max(v for i, v in enumerate(rgb) if i != top)
    return top if rgb[top] > 0 and rgb[top] >= COLOUR_DOMINANCE * rest else None


#: ``names_source`` of an ImageJ file whose channels are named by their display colour tables.
LUT_COLOURS = "ImageJ LUT colours"


def _lut_words(luts: Any, n_channels: int) -> list[str] | None:
    """The display colour of each channel's ImageJ colour table (the colour of its brightest entry):
    ``"red"``, ``"green"`` or ``"blue"`` when plainly that primary (:func:`_dominant_primary`), ``"grey"``,
    else ``"#rrggbb"``; None without one table per channel."""
    if not isinstance(luts, (list, tuple)) or len(luts) != n_channels or n_channels < 2:
        return None
    out = []
    for lut in luts:
        a = np.asarray(lut)
        if a.ndim != 2 or a.shape[0] != 3 or a.shape[1] < 2:
            return None
        rgb = tuple(int(v) >> (8 if a.dtype.itemsize > 1 else 0) & 255 for v in a[:, -1])
        hexa = "#%02x%02x%02x" % rgb
        k = _dominant_primary(hexa)
        if k is not None:
            out.append(_PRIMARIES[k])
            continue
        lo, hi = min(rgb), max(max(rgb), 1)
        two = [i for i, v in enumerate(rgb) if v >= 0.6 * hi]
        out.append("grey" if hi - lo <= 0.1 * hi else
                   {(0, 2): "magenta", (1, 2): "cyan", (0, 1): "yellow"}.get(tuple(two), hexa) if lo <= 0.4 * hi
                   else hexa)
    return out


_PRIMARIES = ("red", "green", "blue")


def _lut_colours(words: list[str] | None) -> tuple[str, ...] | None:
    """Channel names from ImageJ display colours (:func:`_lut_words`): two to four channels, each shown in a
    different plain primary (red, green, blue) but at most one in another colour (grey, magenta, Fire...),
    named by those colours; None otherwise. The one channel in another colour is the one panel channel the
    others leave, when there is exactly one (:func:`_by_elimination`), else ignored."""
    if words is None or not 2 <= len(words) <= 4:
        return None
    plain = [w for w in words if w in _PRIMARIES]
    if len(set(plain)) != len(plain) or len(words) - len(plain) > 1:
        return None
    return tuple(words)


def _by_elimination(names: Sequence[str], panel: Panel, source: str) -> dict[str, int]:
    """:func:`_match_channels` of ImageJ display-colour names (:func:`_lut_colours`); the one channel not in a
    plain primary, in a file of exactly the panel's channels, is the panel channel (DAPI or a signal) the
    others leave, when exactly one fits."""
    other = [i for i, n in enumerate(names) if n not in _PRIMARIES]
    if not other or len(names) != 1 + len(panel.signals):
        return _match_channels(names, panel, source)
    fits = []
    for key in _channel_terms(panel):
        try:
            fits.append(_match_channels([key if i in other else n for i, n in enumerate(names)], panel, source))
        except InputError:
            continue
    if len(fits) != 1:
        raise InputError(source, "ImageJ display colours do not name every channel")
    return fits[0]


def _composite_by_colour(panel: Panel) -> dict[str, int] | None:
    """Planes of a colour composite (red 0, green 1, blue 2) for DAPI (blue: the nuclear stain is displayed
    blue) and each panel signal (the primary of its display ``color``, e.g. SpectrumOrange #ff8c00 red,
    SpectrumGreen #00e000 green); None when a signal has no plain primary, two share one, or one is blue."""
    cmap = {DAPI: 2}
    for s in panel.signals:
        k = _dominant_primary(s.color or "")
        if k is None or k in cmap.values():
            return None
        cmap[s.name] = k
    return cmap


def _confirm_composite(cmap: dict[str, int], names_source: str, channels: list[np.ndarray], panel: Panel,
                       source: str) -> list[str]:
    """A colour composite mapped by display colour: the blue plane must look like the nuclear stain (a
    bright area at least :data:`COMPOSITE_BRIGHT_RATIO` times the red and the green plane's: a sparse field's
    nuclei may fill under 2 % of it); returns the note that says how the planes were read.

    Raises
    ------
    InputError
        The blue plane does not look like a nuclear stain (then the colours are not the panel's)."""
    if names_source != RGB_BY_COLOUR:
        return []
    frac = [_bright_fraction(c) for c in channels[:3]]
    if not _stands_out(frac, cmap[DAPI]):
        shown = ", ".join(f"{n} {f:.1%}" for n, f in zip(("red", "green", "blue"), frac))
        raise InputError(
            source,
            f"colour composite without channel names: the blue plane does not look like the nuclear stain "
            f"(bright area {shown}; nuclei show at least {COMPOSITE_BRIGHT_RATIO:g}x the probes'); name the planes "
            f"with --channels, e.g. "
            f"--channels {','.join(_planes_named(panel, len(channels)))}")
    plane = ("red", "green", "blue")
    shown = ", ".join(f"{s.name} = {plane[cmap[s.name]]} ({s.color})" for s in panel.signals)
    return [f"colour composite without channel names: DAPI = blue, {shown}, by the panel's display colours; "
            "give --channels if the picture shows the probes in other colours"]


def _confirm_lut_colours(cmap: dict[str, int], names_source: str, channels: list[np.ndarray], panel: Panel,
                         notes: list[str], source: str,
                         names: Sequence[str] = ()) -> tuple[dict[str, int], str, list[str]]:
    """Channels mapped by their ImageJ display colours: kept when the channel mapped to DAPI looks like the
    nuclear stain (as a composite's blue plane must, :data:`COMPOSITE_BRIGHT_RATIO`); otherwise taken as
    unnamed (the panel's order, then :func:`_nuclear_stain_by_content`), with a note. ``names``: the colour
    of each channel (:func:`_lut_colours`), to say which one was mapped by elimination."""
    if names_source != LUT_COLOURS:
        return cmap, names_source, notes
    used = sorted(set(cmap.values()))  # a channel no colour maps (a 4th, e.g. transmitted light) is no probe
    if _stands_out([_bright_fraction(channels[i]) for i in used], used.index(cmap[DAPI])):
        shown = ", ".join(f"{k} = channel {i}" + (f" ({names[i]}, the one left)" if i < len(names)
                                                   and names[i] not in _PRIMARIES else "")
                          for k, i in cmap.items())
        unused = "".join(f"; channel {i} ({names[i] if i < len(names) else '?'}) not used"
                         for i in range(len(channels)) if i not in used)
        return cmap, names_source, notes + [f"no channel names: channels mapped by their ImageJ display colours "
                                             f"({shown}{unused}); give --channels if the colours are not the probes'"]
    ignored = "ImageJ display colours ignored: the channel mapped to DAPI does not look like a nuclear stain"
    order = (DAPI, *panel.signal_names)
    if len(channels) != len(order):  # unnamed channels are taken in the panel's order only when they fit it
        raise InputError(source, f"{ignored}, and the image has {len(channels)} channels for the {len(order)} of "
                                 f"panel {panel.id}; give them in file order with --channels")
    return {k: i for i, k in enumerate(order)}, "assumed panel order", notes + [ignored]


def _stands_out(frac: list[float], k: int) -> bool:
    """Whether channel ``k``'s bright area (:func:`_bright_fraction`) is at least
    :data:`COMPOSITE_BRIGHT_RATIO` times every other channel's: the nuclear stain among probe channels."""
    rest = max((f for i, f in enumerate(frac) if i != k), default=0.0)
    return frac[k] > 0 and frac[k] >= COMPOSITE_BRIGHT_RATIO * rest


def _planes_named(panel: Panel, n_channels: int = 3) -> list[str]:
    """Example ``--channels`` for a colour composite: the panel's signals in red and green, DAPI blue (and
    ``alpha`` for its fourth plane)."""
    names = [s.name for s in panel.signals[:2]] + ["none"] * max(0, 2 - len(panel.signals))
    return names[:2] + [DAPI] + ["alpha"] * (n_channels - 3)


def _bright_fraction(stack: np.ndarray) -> float:
    """Fraction of an image's pixels above half-way from its median to its 99.9th percentile (a z-stack:
    its maximum projection; at most ~1 M pixels, by an even stride): nuclei fill 4-11 % of a field at that
    level, probe signals well under 1 %."""
    img = np.asarray(stack)
    if img.ndim == 3:
        img = img.max(axis=0)
    step = max(1, int(math.ceil(math.sqrt(img.size / 1e6))))
    v = img[::step, ::step].astype(np.float64, copy=False).ravel()
    med, top = np.percentile(v, [50.0, 99.9])
    if not top > med:
        return 0.0
    return float(np.count_nonzero(v > med + 0.5 * (top - med)) / v.size)


def _nuclear_stain_by_content(cmap: dict[str, int], names_source: str, channels: list[np.ndarray],
                              panel: Panel) -> tuple[dict[str, int], str, list[str]]:
    """Channels without names were taken in the panel's order (DAPI first). When the first is plainly a
    probe channel and exactly one other plainly the nuclear stain (:data:`NUCLEAR_MIN_BRIGHT_FRACTION`),
    that one is DAPI and the signals keep the panel's order over the rest (e.g. a simulator's or a
    microscope's ``EGR1, D5S23, DAPI``). Returns ``(cmap, names_source, notes)``; unchanged otherwise."""
    if names_source != "assumed panel order" or len(channels) < 2:
        return cmap, names_source, []
    frac, j, others = _stain_elsewhere(cmap[DAPI], channels)
    first = frac[cmap[DAPI]]
    if j is None:
        if first <= PROBE_MAX_BRIGHT_FRACTION:  # kept, but it does not look like a nuclear stain: say so
            return cmap, names_source, [
                f"no channel names: channel {cmap[DAPI]}, taken as DAPI, does not look like a nuclear stain "
                f"(bright area {first:.1%} of the field; nuclei fill 4-11 %) and no other channel plainly "
                "does; give --channels"]
        return cmap, names_source, []
    order = [j] + [i for i in range(len(channels)) if i != j]
    new = {k: order[pos] for pos, k in enumerate((DAPI, *panel.signal_names))}
    note = (f"no channel names: channel {j} holds the nuclear stain by its content (bright area "
            f"{frac[j]:.1%} of the field, the others {others:.1%} at most), the signals taken in the panel's "
            f"order from the others ({', '.join(f'{k} = channel {i}' for k, i in new.items() if k != DAPI)}); "
            "give --channels if this is wrong")
    return new, f"assumed panel order, DAPI = channel {j} by content", [note]


def _user_stain_check(cmap: dict[str, int], names_source: str, channels: list) -> list[str]:
    """A note when ``--channels`` names as DAPI a channel that looks like a probe channel while another
    plainly holds the nuclear stain (:data:`PROBE_MAX_BRIGHT_FRACTION`, :data:`NUCLEAR_MIN_BRIGHT_FRACTION`,
    :data:`NUCLEAR_BRIGHT_RATIO`): the names always win, but a slip (the red plane of a composite named DAPI)
    would count signals in the wrong image."""
    if names_source != "user (--channels)" or len(channels) < 2:
        return []
    frac, j, _ = _stain_elsewhere(cmap[DAPI], channels)
    if j is None:
        return []
    return [f"--channels names channel {cmap[DAPI]} DAPI, but it does not look like a nuclear stain (bright area "
            f"{frac[cmap[DAPI]]:.1%} of the field) and channel {j} does ({frac[j]:.1%}); check --channels"]


def _stain_elsewhere(dapi: int, channels: list) -> tuple[list[float], int | None, float]:
    """``(bright fractions, j, others)``: ``j`` the channel that plainly holds the nuclear stain while channel
    ``dapi`` plainly does not (:data:`PROBE_MAX_BRIGHT_FRACTION`, :data:`NUCLEAR_MIN_BRIGHT_FRACTION`,
    :data:`NUCLEAR_BRIGHT_RATIO` x every other channel), else None; ``others`` the largest other fraction."""
    frac = [_bright_fraction(c) for c in channels]
    j = int(np.argmax(frac))
    others = max(f for i, f in enumerate(frac) if i != j)
    if (j == dapi or frac[dapi] > PROBE_MAX_BRIGHT_FRACTION or frac[j] < NUCLEAR_MIN_BRIGHT_FRACTION
            or frac[j] < NUCLEAR_BRIGHT_RATIO * others):
        return frac, None, others
    return frac, j, others


def _assign_channels(
    names: Sequence[str] | None,
    names_source: str,
    n_channels: int,
    panel: Panel,
    channels: Sequence[str] | None,
    source: str,
) -> tuple[tuple[str, ...], str, dict[str, int]]:
    """Decide channel names and the key -> channel index map; return (names, source, map)."""
    n_needed = 1 + len(panel.signals)
    if channels is not None:
        channels = [str(c).strip() for c in channels]
        if len(channels) != n_channels:
            shown = (f" ({', '.join(names)}: name the alpha plane too, e.g. {','.join(channels)},alpha)"
                     if names_source == "RGB photometric" and names is not None and len(names) == 4
                     and len(channels) == 3 else "")
            raise InputError(
                source,
                f"--channels gives {len(channels)} name(s) ({', '.join(channels)}) but the image has "
                f"{n_channels} channel(s){shown}",
            )
        return tuple(channels), "user (--channels)", _match_channels(channels, panel, source)
    named = names is not None and not all(_is_generic(n) for n in names)
    if n_channels < n_needed:
        found = ""
        if named:  # say which signal is missing, e.g. a per-channel group without its D5S23 file
            terms = _channel_terms(panel)
            have = [k for k in terms if any(_match_level(n, t) for n in names for t in terms[k])]
            found = f"; found {', '.join(have) or 'none'} in {', '.join(repr(n) for n in names)}"
        if n_channels == 1:  # most often one file of a per-channel set given alone
            found += ("; for one file per channel, give all of a field's files or their folder (e.g. "
                      + ", ".join(f"field01_{k}.tif" for k in (DAPI, *panel.signal_names)) + ")")
        raise InputError(
            source,
            f"too few channels for panel {panel.id}: the image has {n_channels}, the panel needs "
            f"{n_needed} (DAPI + {', '.join(panel.signal_names)}){found}",
        )
    if names_source == "RGB photometric" and names is not None:
        by_colour = _composite_by_colour(panel)
        if by_colour is not None:
            return tuple(names), RGB_BY_COLOUR, by_colour
        try:
            return tuple(names), names_source, _match_channels(names, panel, source)
        except InputError:
            colours = ", ".join(f"{s.name} {s.color or 'none'}" for s in panel.signals)
            raise InputError(
                source,
                f"colour composite: panel {panel.id}'s display colours ({colours}) do not say which of red and "
                f"green holds which probe; name the planes with --channels, e.g. "
                f"--channels {','.join(_planes_named(panel, n_channels))}") from None
    if names_source == LUT_COLOURS and names is not None:
        try:
            return tuple(names), names_source, _by_elimination(names, panel, source)
        except InputError:  # colours that do not name the panel's channels: as if unnamed
            names, names_source, named = None, "none", False
    if named:
        return tuple(names), names_source, _match_channels(names, panel, source)
    if n_channels == n_needed:
        order = (DAPI, *panel.signal_names)
        shown = tuple(names) if names is not None else tuple("" for _ in range(n_channels))
        return shown, "assumed panel order", {k: i for i, k in enumerate(order)}
    raise InputError(
        source,
        f"the image has {n_channels} channels (or planes, where the file does not say which) but no channel "
        f"names; give them in file order with "
        f"--channels (e.g. DAPI,{','.join(panel.signal_names)},...)"
        + (f", or, if they are {n_channels // n_needed} z-planes of {n_needed} channels, declare --axes ZCYX "
           f"(channel fastest) or CZYX" if n_channels > n_needed and n_channels % n_needed == 0 else ""),
    )


# -------------------------------------------------------------------------------------------
# low-level TIFF reading
# -------------------------------------------------------------------------------------------
class _TiffLog(logging.Handler):
    """Collects tifffile's warnings: it logs (rather than raises) on truncated or corrupt files."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []
        self._thread = threading.get_ident()  # fields may be read in parallel threads (Dask)

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread:
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def quiet_tifffile():
    """While a TIFF header is only looked at (positions, sizes), tifffile's complaints about a damaged file are
    not printed (Python's last-resort handler would write them between the progress lines): the file is
    reported, once and in one line, when it is read. Handlers the user configured still get them."""
    logger = logging.getLogger("tifffile")
    h = logging.NullHandler()
    logger.addHandler(h)
    try:
        yield
    finally:
        logger.removeHandler(h)


# words in tifffile's log messages that mean missing bytes (not merely odd metadata)
_CORRUPT_WORDS = ("offset", "failed to read", "truncat", "corrupt", "not enough", "unexpected end")
#: tifffile's complaint that another file of a multi-file OME-TIFF dataset is missing: not a fault of the
#: file read (its own image is complete; the other files' images are never read from it).
_OTHER_FILE_MISSING = re.compile(r"OME series failed to read '([^']+)'.*FileNotFoundError")
_OTHER_FILES_COUNT = re.compile(r"OME series failed to read \d+ files?$")


def _available_memory_bytes() -> int | None:
    """Memory available to a new allocation, bytes (``MemAvailable``, else free pages); None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(path: Path, needed_bytes: int, shape: tuple[int, ...], dtype: str) -> None:
    avail = _available_memory_bytes()
    if avail is not None and needed_bytes > avail:
        raise InputError(
            path,
            f"image of shape {shape} {dtype} needs about {needed_bytes / 1e9:.1f} GB of memory to read, "
            f"only {avail / 1e9:.1f} GB available; crop or split it into fields first",
        )


@dataclass(frozen=True)
class _Meta:
    """What one TIFF file says about itself (no pixel data)."""

    path: Path
    fmt: str                       # "OME-TIFF", "ImageJ hyperstack", "TIFF"
    axes: str                      # inferred axes over ``shape``: letters from C, Z, Y, X (+ T, others)
    shape: tuple[int, ...]
    dtype: np.dtype
    names: tuple[str, ...] | None  # channel names from metadata, or None
    names_source: str
    pixel_size_um: float | None
    pixel_size_y_um: float | None
    pixel_size_source: str
    notes: tuple[str, ...] = ()    # metadata that was present but unusable
    significant_bits: int | None = None  # OME Pixels@SignificantBits (the camera's bit depth), if stored
    series: int = 0                # the TIFF series read (a position of a multi-position file)
    z_step_um: float | None = None  # distance between z-planes (OME PhysicalSizeZ, ImageJ spacing), if stored

    @property
    def n_c(self) -> int:
        return self.shape[self.axes.index("C")] if "C" in self.axes else 1

    @property
    def n_z(self) -> int:
        return self.shape[self.axes.index("Z")] if "Z" in self.axes else 1

    @property
    def yx(self) -> tuple[int, int]:
        return self.shape[self.axes.index("Y")], self.shape[self.axes.index("X")]


def _check_exists(path: Path) -> str:
    """Raise InputError unless ``path`` is a readable TIFF, PNG or JPEG file; return ``"TIFF"``, ``"PNG"``
    or ``"JPEG"`` (from the file's first bytes, not its name)."""
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, not an image file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or exc})") from None
    named = "PNG picture" if path.name.lower().endswith(".png") else "JPEG picture" if path.name.lower().endswith(
        (".jpg", ".jpeg")) else "TIFF file"  # what the name promises
    if len(head) < 4:
        raise InputError(path, f"not a {named} (only {len(head)} bytes)")
    if head in _TIFF_MAGIC:
        return "TIFF"
    for magic, kind in _EXPORT_MAGIC.items():
        if head.startswith(magic):
            return kind
    raise InputError(path, f"not a {named} (starts with {head!r}; fishcount reads .tif/.ome.tif, and .png/.jpg "
                           "pictures)")


def _unit_factor(unit: str | None) -> float | None:
    if unit is None:
        return 1.0
    u = str(unit).strip().replace("\u03bc", "\u00b5")
    return _UNIT_TO_UM.get(u, _UNIT_TO_UM.get(u.lower()))


def _ome_info(xml: str, image: int = 0) -> tuple[tuple[str, ...] | None, str, float | None, float | None, str | None,
                                                int | None]:
    """(channel names, their source, pixel size x µm, pixel size y µm, problem, significant bits) from
    the OME-XML of image ``image`` (0: the first). A channel whose ``Name`` is missing or generic
    (``Channel:0:1``) is named by its ``Fluor`` attribute when there is one. Significant bits:
    ``Pixels@SignificantBits``, the camera's bit depth (None when absent or not a positive whole number)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        return None, "none", None, None, f"unreadable OME-XML ({_short(exc)})", None
    all_pixels = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"]
    pixels = all_pixels[image] if image < len(all_pixels) else None
    if pixels is None:
        return None, "none", None, None, None, None
    bits_text = str(pixels.get("SignificantBits", "")).strip()
    bits = int(bits_text) if bits_text.isdigit() and int(bits_text) > 0 else None
    chans = [el for el in pixels if el.tag.rsplit("}", 1)[-1] == "Channel"]
    names_l: list[str] = []
    used_fluor = False
    for c in chans:
        name = str(c.get("Name", "") or "").strip()
        fluor = str(c.get("Fluor", "") or "").strip()
        if _is_generic(name) and fluor and not _is_generic(fluor):
            name, used_fluor = fluor, True
        names_l.append(name)
    names = tuple(names_l) if any(names_l) else None
    source = "none" if names is None else ("OME Channel Name/Fluor" if used_fluor else "OME Channel Name")
    sizes: list[float | None] = []
    problem = None
    for ax in ("X", "Y"):
        val = pixels.get(f"PhysicalSize{ax}")
        unit = pixels.get(f"PhysicalSize{ax}Unit", "µm")
        if val is None:
            sizes.append(None)
            continue
        factor = _unit_factor(unit)
        try:
            v = float(val)
        except ValueError:
            v = float("nan")
        if factor is None or not math.isfinite(v) or v <= 0:
            problem = f"unusable OME PhysicalSize{ax}={val!r} {unit!r}"
            sizes.append(None)
        else:
            sizes.append(v * factor)
    return names, source, sizes[0], sizes[1], problem, bits


def _ome_z_step(xml: str, image: int = 0) -> float | None:
    """OME ``Pixels@PhysicalSizeZ`` of image ``image`` in µm (unit converted), or None when absent or unusable."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    all_pixels = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"]
    pixels = all_pixels[image] if image < len(all_pixels) else None
    if pixels is None or pixels.get("PhysicalSizeZ") is None:
        return None
    factor = _unit_factor(pixels.get("PhysicalSizeZUnit", "µm"))
    try:
        v = float(pixels.get("PhysicalSizeZ"))
    except ValueError:
        return None
    return v * factor if factor is not None and math.isfinite(v) and v > 0 else None


def _ij_z_step(ij: Mapping, factor: float | None) -> float | None:
    """ImageJ ``spacing`` (the z step in the calibration unit) in µm, or None."""
    try:
        v = float(ij.get("spacing"))
    except (TypeError, ValueError):
        return None
    return v * factor if factor is not None and math.isfinite(v) and v > 0 else None


def _ij_unit_factor(unit) -> float | None:
    if unit is None:
        return None
    u = str(unit).strip()
    if u.lower() in ("", "pixel", "pixels", "px"):
        return None
    return _unit_factor(u)


def _resolution_um(page, ij_unit=None) -> tuple[float | None, float | None]:
    """Pixel size (x, y) in µm from XResolution/YResolution (pixels per unit)."""
    out = []
    for tag in ("XResolution", "YResolution"):
        t = page.tags.get(tag)
        if t is None:
            out.append(None)
            continue
        try:
            num, den = t.value if isinstance(t.value, tuple) else (t.value, 1)
            per_unit = float(num) / float(den)  # pixels per unit
        except (TypeError, ValueError, ZeroDivisionError):
            per_unit = float("nan")
        if not math.isfinite(per_unit) or per_unit <= 0:
            out.append(None)
            continue
        if ij_unit is not None:
            out.append(ij_unit / per_unit)
            continue
        runit = page.tags.get("ResolutionUnit")
        try:
            runit = int(runit.value) if runit is not None else 2
        except (TypeError, ValueError):
            runit = 1
        if runit in (2, 3):  # inch / centimetre: only a calibration if it gives a microscope-scale pixel (a
            # screen or print resolution, 72-300 dpi or 118 px/cm, or 1/100 px/cm, gives tens of µm to metres)
            um = (25400.0 if runit == 2 else 1e4) / per_unit
            out.append(um if _PLAUSIBLE_PIXEL_UM[0] <= um <= _PLAUSIBLE_PIXEL_UM[1] else None)
        else:
            out.append(None)
    return out[0], out[1]


def _infer_axes(shape: tuple[int, ...], tf_axes: str, trusted: bool, per_channel: bool,
                n_expected: int | None, path: Path) -> str:
    """Axes letters (C, Z, Y, X, or T/other singletons) for ``shape``.

    OME and ImageJ axes are trusted (``S`` samples become ``C``; ``I``/``Q`` pages become ``C`` in
    a multi-channel file, ``Z`` in a per-channel file). Plain TIFFs are read by shape: ``YX``;
    3-D ``YXC`` when the last axis is small, else ``CYX`` (``ZYX`` for a per-channel file);
    4-D: the leading axis whose length is the expected channel count is ``C``, the other ``Z``.
    """
    nd = len(shape)
    if nd < 2:
        raise InputError(path, f"not an image: shape {shape}")
    if trusted and len(tf_axes) == nd:
        axes = list(tf_axes.upper())
        if "S" in axes and "C" not in axes:  # RGB(A) samples are the channels; beside C they stay S
            axes[axes.index("S")] = "C"
        for gen in ("I", "Q"):
            if gen in axes:
                repl = "Z" if (per_channel or "C" in axes) and "Z" not in axes else "C"
                if repl in axes:
                    repl = "T"
                axes[axes.index(gen)] = repl
        return "".join(axes)
    small_last = nd >= 3 and shape[-1] <= _MAX_SMALL_CHANNEL_AXIS and min(shape[-3], shape[-2]) > 4 * shape[-1]
    if nd == 2:
        return "YX"
    if nd == 3:
        if small_last:
            return "YXC"
        if per_channel:
            return "ZYX"
        return "CYX"
    if nd == 4:
        if small_last:
            return "ZYXC"
        a, b = shape[0], shape[1]
        if n_expected is not None and (a == n_expected) != (b == n_expected):
            return "CZYX" if a == n_expected else "ZCYX"
        if "S" in tf_axes and len(tf_axes) == 4 and tf_axes.index("S") in (0, 1) and a != b:
            # planar RGB samples (tifffile's old default for a 3- or 4-long axis) mark the channels; with two
            # axes of one length (3 channels x 3 planes) tifffile marks either, so that says nothing
            return "CZYX" if tf_axes.index("S") == 0 else "ZCYX"
        raise InputError(
            path,
            f"cannot tell which axis of shape {shape} holds channels and which z-planes (plain TIFF "
            "without OME/ImageJ axes); declare them with --axes (e.g. ZCYX) or save it as OME-TIFF or ImageJ "
            "hyperstack",
        )
    raise InputError(path, f"cannot interpret a plain TIFF of shape {shape}; declare its axes with --axes "
                           "(e.g. TZCYX) or save it as OME-TIFF or ImageJ hyperstack")


def _user_axes(axes: str, shape: tuple[int, ...], path: Path,
               n_channels: int | None = None) -> tuple[str, tuple[int, ...]]:
    """The axes a user declared for an image of ``shape`` (``axes=`` / ``--axes``): ``(axes, shape)``,
    upper-cased and checked: one letter per dimension, each letter once, ``Y`` and ``X`` among them.
    Letters other than C, Z, Y, X name axes that must have length 1 (checked with the file's own axes).

    A plain multi-page TIFF written without any shape keeps only its page count: ``(pages, Y, X)``. Declared
    as ``ZCYX`` or ``CZYX`` (one letter more than it has dimensions), its pages are split into
    ``n_channels`` channels (the ``--channels`` count, else DAPI + the panel's signals) and
    ``pages / n_channels`` z-planes, in the declared order."""
    text = str(axes).strip().upper()
    if not text.isalpha() or not text.isascii():
        raise InputError(path, f"--axes {axes!r} must be letters, one per dimension (e.g. ZCYX)")
    twice = sorted({a for a in text if text.count(a) > 1})
    if twice:
        raise InputError(path, f"--axes {text} names axis {', '.join(twice)} more than once")
    for ax in ("Y", "X"):
        if ax not in text:
            raise InputError(path, f"--axes {text} has no {ax} axis (the image's rows are Y, its columns X)")
    shape = tuple(shape)
    if len(text) == len(shape) + 1 and len(shape) == 3 and text[:2] in ("ZC", "CZ") and n_channels:
        pages = shape[0]
        if pages % n_channels:
            raise InputError(path, f"--axes {text}: the file's {pages} pages cannot be {n_channels} channels "
                                   f"times a number of z-planes")
        n_z = pages // n_channels
        lead = (n_z, n_channels) if text[0] == "Z" else (n_channels, n_z)
        return text, (*lead, *shape[1:])
    if len(text) != len(shape):
        raise InputError(path, f"--axes {text} has {len(text)} letter(s) but the image has {len(shape)} "
                               f"dimension(s) (shape {shape})")
    return text, shape


def _check_singleton_axes(path: Path, axes: str, shape: tuple[int, ...]) -> None:
    """Raise InputError when an axis other than C, Z, Y, X (time, RGB samples beside channels, ...) has
    more than one entry: fishcount reads one field."""
    for ax, n in zip(axes, shape):
        if ax not in "CZYX" and n > 1:
            what = {"T": "time points", "S": "RGB samples per channel"}.get(ax, f"entries along axis {ax}")
            raise InputError(path, f"image has {n} {what} (axes {axes}, shape {shape}); fishcount reads one field of C, Z, Y, X")


def _in_this_file(tif, series) -> bool:
    """Whether the image data of a TIFF series are stored in the open file ``tif`` itself (not in another
    file of a multi-file OME-TIFF dataset, whose every file describes all of the dataset's images)."""
    try:
        parent = series.pages[0].parent
    except Exception:  # noqa: BLE001 - no readable page: leave the judgement to the reading
        return True
    if parent is None or parent is tif:
        return True
    here, there = getattr(tif.filehandle, "path", None), getattr(parent.filehandle, "path", None)
    return here is None or there is None or os.path.abspath(here) == os.path.abspath(there)


def _image_series(tif) -> list[tuple[int, Any]]:
    """The full-size images among the series of an open TIFF, as ``(series number, series)`` in file
    order. The largest series (most pixels; of equal sizes, series 0 first) is one; any other series of
    the same pixel type and the same dimensions other than Y and X (channels, z-planes) whose Y and X
    are both more than half of the largest's is another: the positions of a multi-position acquisition
    or the scenes of a slide (which may differ a little in size). Thumbnails, overview and label pictures
    are at most half as wide and high, or of another pixel type (8-bit RGB), and are left out."""
    def size(s) -> int:
        return int(np.prod(s.shape, dtype=np.int64))

    def split(s) -> tuple[tuple[int, ...], tuple[int, int]]:  # (other dimensions, (Y, X))
        shape, axes = tuple(int(n) for n in s.shape), str(getattr(s, "axes", ""))
        if len(axes) == len(shape) and "Y" in axes and "X" in axes:
            iy, ix = axes.index("Y"), axes.index("X")
            return tuple(n for i, n in enumerate(shape) if i not in (iy, ix)), (shape[iy], shape[ix])
        if len(shape) < 2:
            return shape, (1, 1)
        return shape[:-2], (shape[-2], shape[-1])

    series = list(tif.series)
    # one file of a multi-file OME-TIFF dataset describes every file's images: only its own count
    own = [k for k, s in enumerate(series) if _in_this_file(tif, s)] or list(range(len(series)))
    top = series[max(own, key=lambda k: (size(series[k]), k == 0))]
    rest, (ty, tx) = split(top)
    out = []
    for k in own:
        s = series[k]
        r, (y, x) = split(s)
        if s is top or (s.dtype == top.dtype and r == rest and 2 * y > ty and 2 * x > tx):
            out.append((k, s))
    return out


def _read_meta(path: Path, tif, per_channel: bool, n_expected: int | None,
               user_axes: str | None = None, want: int | None = None) -> _Meta:
    images = _image_series(tif)
    numbers = [k for k, _ in images]
    notes: list[str] = []
    if want is not None:  # one position of a multi-position file
        if want not in numbers:
            raise InputError(path, f"has no full-size image series {want} (its full-size images are series "
                                   f"{', '.join(map(str, numbers))})")
        k = want
    elif len(images) > 1:  # reading series 0 alone would silently drop the others
        shapes = sorted({tuple(int(n) for n in im.shape) for _, im in images})
        if per_channel:  # one file of a per-channel group whose files hold several positions
            raise InputError(path, f"holds {len(images)} images of shape {' / '.join(map(str, shapes))} (series "
                                   f"{', '.join(map(str, numbers))}): each position of a per-channel group is a "
                                   "field of its own (`fishcount run` and `fishcount info` read them so, when every "
                                   "file of the group holds the same positions); in Python read one with "
                                   "read_field(files, series=K) or list them with fc.with_positions([files])")
        raise InputError(path, f"holds {len(images)} images of shape {' / '.join(map(str, shapes))} (series "
                               f"{', '.join(map(str, numbers))}: the positions of a multi-position acquisition?); "
                               "`fishcount analyze` and `fishcount run` analyse each as its own field, in Python "
                               f"read one with read_field(..., series=K), or split the file with "
                               f"`fishcount split-series {path.name} --out DIR`")
    else:
        k = numbers[0]
        if k != 0 and not _in_this_file(tif, tif.series[0]):
            notes.append(f"one file of a multi-file OME-TIFF dataset ({len(tif.series)} images described): read the "
                         f"image stored in this file, series {k}")
        elif k != 0:  # series 0 is a thumbnail or overview of the image stored after it
            notes.append(f"series 0 (shape {tuple(tif.series[0].shape)}) is a smaller thumbnail or overview; read "
                         f"the full image, series {k}")
    series = tif.series[k]
    shape = tuple(int(s) for s in series.shape)
    dtype = np.dtype(series.dtype)
    page = series.pages[0] if len(series.pages) else tif.pages[0]
    names: tuple[str, ...] | None = None
    names_source = "none"
    px = py = None
    px_source = "none"
    z_step = None
    labels = None
    luts = None
    sig_bits = None
    if tif.is_ome and tif.ome_metadata:
        fmt = "OME-TIFF"
        names, names_source, px, py, problem, sig_bits = _ome_info(tif.ome_metadata, k)
        z_step = _ome_z_step(tif.ome_metadata, k)
        if problem:
            notes.append(problem)
        px_source = "OME PhysicalSizeX" if px else "none"
        trusted = True
    elif tif.is_imagej and tif.imagej_metadata is not None:
        fmt = "ImageJ hyperstack" if tif.imagej_metadata.get("hyperstack") else "ImageJ TIFF"
        ij = tif.imagej_metadata
        trusted = True
        labels = ij.get("Labels")  # slice labels in stack order (channel fastest)
        luts = ij.get("LUTs")  # display colour tables, one per channel (Fiji composites)
        factor = _ij_unit_factor(ij.get("unit"))
        z_step = _ij_z_step(ij, factor)
        if factor is not None:
            px, py = _resolution_um(page, ij_unit=factor)
            px_source = "ImageJ" if px else "none"
    else:
        fmt = "TIFF"
        trusted = False
        px, py = _resolution_um(page)
        px_source = "TIFF resolution" if px else "none"
    if user_axes is not None:  # the user's declaration wins over metadata and the shape rule
        axes, shape = _user_axes(user_axes, shape, path, None if per_channel else n_expected)
        notes.append(f"axes {axes} given by the user (stored as {series.axes}, shape {series.shape})")
    else:
        axes = _infer_axes(shape, series.axes, trusted, per_channel, n_expected, path)
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype == np.bool_):
        raise InputError(path, f"pixel type {dtype} is not a real intensity (expected integer or float)")
    for ax in ("Y", "X"):
        if ax not in axes:
            raise InputError(path, f"no {ax} axis in image of shape {shape} (axes {series.axes})")
    _check_singleton_axes(path, axes, shape)
    if len(set(a for a in axes if a in "CZYX")) != sum(1 for a in axes if a in "CZYX"):
        raise InputError(path, f"cannot interpret axes {series.axes} of shape {shape}")
    # ImageJ slice labels of the first z-plane / time point name the channels
    if isinstance(labels, (list, tuple)) and "C" in axes and len(labels) >= shape[axes.index("C")]:
        first = tuple((str(lb or "").strip().splitlines() or [""])[0].strip() for lb in labels[: shape[axes.index("C")]])
        if any(first):
            names, names_source = first, "ImageJ Labels"
    # ImageJ display colours: a channel shown in plain red, green or blue is named so (Fiji composites)
    if names is None and "C" in axes:
        words = _lut_words(luts, shape[axes.index("C")])
        colours = _lut_colours(words)
        if colours is not None:
            names, names_source = colours, LUT_COLOURS
        elif words is not None:
            notes.append(f"ImageJ display colours ({', '.join(words)}) do not say which channel is which: the "
                         "channels are read as unnamed ones")
    # plain multi-page files: page names (tag 285) as channel names
    if names is None and not trusted and "C" in axes and axes.index("C") == 0 and len(tif.pages) == shape[0]:
        pn = [p.tags.get("PageName") for p in tif.pages]
        if all(t is not None for t in pn):
            names, names_source = tuple(str(t.value).strip() for t in pn), "TIFF PageName"
    # RGB(A) photographs (e.g. exported composites): the samples are red, green, blue (, alpha)
    # (8-bit interleaved RGB only: tifffile also marks planar 3-channel uint16 stacks as RGB)
    if (names is None and "C" in axes and int(getattr(page, "photometric", 0)) == 2
            and dtype == np.uint8 and int(getattr(page, "planarconfig", 1)) == 1):
        n_c = shape[axes.index("C")]
        if n_c in (3, 4):
            names, names_source = ("red", "green", "blue", "alpha")[:n_c], "RGB photometric"
    if names is not None and "C" in axes and len(names) != shape[axes.index("C")]:
        names, names_source = None, "none"
    return _Meta(path, fmt, axes, shape, dtype, names, names_source, px, py, px_source, tuple(notes), sig_bits, k,
                 z_step if "Z" in axes and shape[axes.index("Z")] > 1 else None)


def _open_tiff(path: Path, per_channel: bool, n_expected: int | None, axes: str | None = None,
               series: int | None = None):
    """Open ``path`` with tifffile; return (TiffFile, _Meta). Raises InputError on bad files. ``axes``: the
    user's declaration of the stored axes (:func:`_user_axes`), else they are read or inferred. ``series``:
    the image of a multi-position file to read (:func:`_image_series`; default: the file's one full-size
    image)."""
    import tifffile

    kind = _check_exists(path)
    if kind != "TIFF":
        if series not in (None, 0):
            raise InputError(path, f"a {kind} picture holds one image; there is no series {series}")
        return _open_export(path, kind, per_channel, n_expected, axes)
    log = _TiffLog()
    logger = logging.getLogger("tifffile")
    logger.addHandler(log)
    try:
        # a damaged file can make tifffile fail in many ways (TiffFileError, but also TypeError,
        # RuntimeError, ZeroDivisionError on nonsense tag values): all are "corrupt" to the user
        try:
            tif = tifffile.TiffFile(path)
        except (MemoryError, RecursionError):
            raise InputError(path, "truncated or corrupt TIFF (its header asks for impossible sizes)") from None
        except Exception as exc:  # noqa: BLE001
            raise InputError(path, f"truncated or corrupt TIFF ({_short(exc)})") from None
        try:
            try:
                if not tif.series:
                    raise InputError(path, "truncated or corrupt TIFF (no readable image in it)")
                meta = _read_meta(path, tif, per_channel, n_expected, axes, series)
            except InputError:
                raise
            except (MemoryError, RecursionError):
                raise InputError(path, "truncated or corrupt TIFF (its header asks for impossible sizes)") from None
            except Exception as exc:  # noqa: BLE001
                _check_complete(path, tif, log)  # a truncation explains the failure best
                raise InputError(path, f"truncated or corrupt TIFF ({_short(exc)})") from None
            _check_complete(path, tif, log, meta.series)
        except BaseException:
            tif.close()
            raise
    finally:
        logger.removeHandler(log)
    return tif, meta


class _Decoded:
    """A decoded picture standing in for a ``tifffile.TiffFile`` where :func:`_read` reads one:
    ``series[0].asarray()`` and ``close()``."""

    def __init__(self, data: np.ndarray):
        self.series = [self]
        self._data = data

    def asarray(self) -> np.ndarray:
        return self._data

    def close(self) -> None:
        self._data = None


def _open_export(path: Path, kind: str, per_channel: bool, n_expected: int | None, axes: str | None):
    """Decode a PNG or JPEG picture (``kind``, from its signature; Pillow) for :func:`_read`:
    ``(_Decoded, _Meta)``.

    Grey pictures are ``YX`` (8 or 16 bits); colour ones ``YXC`` with channels named red, green, blue
    (, alpha) as an RGB TIFF's, so that ``--channels`` maps them (e.g. ``EGR1,D5S23,DAPI`` for a
    composite with DAPI in blue), and a per-channel picture in its display colour is read as the
    brightest of red, green and blue. Palette pictures are expanded to their colours. Pictures carry no
    pixel size in µm (give ``--pixel-size``); JPEG compression alters the intensities (prefer the
    microscope's TIFFs where there are any).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            n_frames = getattr(im, "n_frames", 1)  # (a converted copy no longer knows it)
            im.load()
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else
                                ("L" if im.mode == "1" else "RGB"))
            if im.mode == "LA":  # grey + alpha: the grey channel
                im = im.getchannel(0)
            data = np.asarray(im)
            if im.mode in ("I;16", "I;16B", "I;16L"):
                data = data.astype(np.uint16)
    except Image.DecompressionBombError as exc:
        raise InputError(path, f"{kind} too large to decode ({_short(exc)}); crop or split it into fields "
                               "first") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(path, f"truncated or corrupt {kind} ({_short(exc)})") from None
    if n_frames > 1:
        raise InputError(path, f"an animated {kind} ({n_frames} frames); fishcount reads one field of C, Z, Y, X")
    shape = tuple(int(n) for n in data.shape)
    notes = [f"{kind}: no pixel size in µm (give --pixel-size)"] + (["JPEG: lossy compression alters the "
                                                                       "intensities"] if kind == "JPEG" else [])
    names, names_source = None, "none"
    if axes is not None:
        decoded = data.shape
        ax, shape = _user_axes(axes, shape, path, None if per_channel else n_expected)
        data = data.reshape(shape)
        notes.append(f"axes {ax} given by the user (decoded as shape {decoded})")
    else:
        ax = "YX" if data.ndim == 2 else "YXC"
    _check_singleton_axes(path, ax, shape)
    if ax == "YXC" and data.ndim == 3 and data.shape[2] in (3, 4):
        names, names_source = ("red", "green", "blue", "alpha")[: data.shape[2]], "RGB photometric"
    meta = _Meta(path, kind, ax, shape, np.dtype(data.dtype), names, names_source, None, None, "none", tuple(notes))
    return _Decoded(data), meta


def read_one_channel(path: "str | os.PathLike | Position", axes: str | None = None, *,
                     return_pixel_size: bool = False):
    """The image of a one-channel file (a nuclear stain alone, for :func:`fishcount.segment_nuclei`), in its
    stored dtype: ``(Y, X)``, the maximum projection of a z-stack; a colour picture (RGB TIFF, PNG, JPEG)
    gives the brightest of red, green and blue at each pixel (grey, or the stain in its display colour).

    Parameters
    ----------
    path : path-like or Position
        The file (or one position of a multi-position file).
    axes : str, optional
        The stored axes, when the file does not say (as ``--axes``).
    return_pixel_size : bool
        Also return the file's pixel size in µm (OME, ImageJ or TIFF resolution; None when it has none).

    Returns
    -------
    np.ndarray or (np.ndarray, float or None)
        ``(Y, X)`` image; with ``return_pixel_size``, ``(image, pixel_size_um)``.

    Raises
    ------
    InputError
        One line naming the file: not readable, or more than one channel (other than red, green, blue).
    """
    series = path.series if isinstance(path, Position) else None
    path = Path(path.path if isinstance(path, Position) else path)
    tif, meta = _open_tiff(path, True, None, axes, series)
    try:
        czyx = _to_czyx(_read_array(path, tif, meta.series).reshape(meta.shape), meta.axes)
    finally:
        tif.close()
    if not _holds_one_channel(meta):
        raise InputError(path, f"one nuclear-stain channel expected, the image has {meta.n_c} (axes {meta.axes}); "
                               "name the DAPI channel with --channels or --panel")
    img = _the_one_channel(czyx, meta)
    img = img.max(axis=0) if img.shape[0] > 1 else img[0]
    return (img, meta.pixel_size_um) if return_pixel_size else img


def _holds_one_channel(meta: _Meta) -> bool:
    """One channel, or an RGB picture of one (grey, or the channel in its display colour)."""
    return meta.n_c == 1 or meta.names_source == "RGB photometric"


def _the_one_channel(czyx: np.ndarray, meta: _Meta) -> np.ndarray:
    """(Z, Y, X) of a file that :func:`_holds_one_channel`: in an RGB picture the brightest of red, green,
    blue at each pixel is that channel's intensity."""
    return czyx[:3].max(axis=0) if meta.n_c > 1 else czyx[0]


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if ">" in text and text.startswith("<"):  # tifffile: "<TiffPages @8> invalid page offset 262417"
        text = text.rsplit(">", 1)[1].strip(" '\")") or text
    return text if len(text) <= 160 else text[:157] + "..."


def _check_complete(path: Path, tif, log: _TiffLog, series: int = 0) -> None:
    """Raise InputError if tifffile complained about the file or image data of ``series`` lie beyond its end."""
    bad = [m for m in log.messages if any(w in m.lower() for w in _CORRUPT_WORDS)
           and not ((o := _OTHER_FILE_MISSING.search(m)) and Path(o.group(1)).name != path.name)
           and not _OTHER_FILES_COUNT.search(m.strip())]
    if bad:
        raise InputError(path, f"truncated or corrupt TIFF ({_short(Exception(bad[0]))})")
    size = path.stat().st_size
    try:
        pages = list(tif.series[series].pages)
    except Exception:  # noqa: BLE001 - the caller reports the original failure
        return
    for page in pages:
        if page is None:
            raise InputError(path, "truncated or corrupt TIFF (a page of the image series is missing)")
        offs = getattr(page, "dataoffsets", ()) or ()
        counts = getattr(page, "databytecounts", ()) or ()
        for o, c in zip(offs, counts):
            if o + c > size:
                raise InputError(
                    path, f"truncated TIFF: image data end at byte {o + c} but the file has only {size} bytes"
                )


def _read_array(path: Path, tif, series: int = 0) -> np.ndarray:
    try:
        return np.asarray(tif.series[series].asarray())
    except MemoryError:
        raise InputError(path, "out of memory while reading the image; crop or split it first") from None
    except Exception as exc:  # noqa: BLE001 - tifffile / imagecodecs decoder errors have many types
        raise InputError(path, f"truncated or corrupt TIFF ({_short(exc)})") from None


def _to_czyx(data: np.ndarray, axes: str) -> np.ndarray:
    """Reorder an array with inferred ``axes`` to (C, Z, Y, X) (singleton C/Z added)."""
    keep = [i for i, a in enumerate(axes) if a in "CZYX"]
    drop = tuple(i for i, a in enumerate(axes) if a not in "CZYX")
    if drop:
        data = data.reshape([n for i, n in enumerate(data.shape) if i not in drop])
    ax = "".join(axes[i] for i in keep)
    for a in "CZ":
        if a not in ax:
            data = data[np.newaxis]
            ax = a + ax
    return np.transpose(data, [ax.index(a) for a in "CZYX"])


def _project(stack: np.ndarray, z_mode: str, z_plane: int | None) -> np.ndarray:
    """(Z, Y, X) -> (Y, X) by max projection or plane choice, or kept as (Z, Y, X)."""
    if z_mode == "max":
        return stack.max(axis=0)
    if z_mode == "plane":
        return stack[int(z_plane)]  # range checked in _check_z
    return stack


def _check_z(n_z: int, z_mode: str, z_plane: int | None, path: Path) -> None:
    if z_mode not in ("max", "plane", "keep"):
        raise InputError(path, f"z_mode must be 'max', 'plane' or 'keep', not {z_mode!r}")
    if z_mode == "plane":
        if z_plane is None or isinstance(z_plane, bool) or int(z_plane) != z_plane:
            raise InputError(path, "z_mode='plane' needs z_plane (a whole number, 0 = first plane)")
        if not 0 <= int(z_plane) < n_z:
            raise InputError(path, f"z_plane {z_plane} is out of range: the image has {n_z} z-plane(s) (0..{n_z - 1})")
    elif z_plane is not None:
        raise InputError(path, f"z_plane={z_plane} is only used with z_mode='plane' (got z_mode={z_mode!r})")


def saturation_level(dtype: Any, max_value: float | None = None,
                     significant_bits: int | None = None) -> tuple[float | None, str]:
    """The value at which an integer image's camera clips, and where it comes from.

    Most scientific cameras digitise 12 or 14 bits, stored in 16-bit files, so a saturated pixel reads
    4095 or 16383, not 65535 (some software shifts the bits up: 65520 for 12 bits). In order:

    #. OME ``SignificantBits`` below the dtype's bits: ``2**bits - 1`` (unless the data exceed it).
    #. ``max_value`` (the largest stored value of the field) equal to ``2**k - 1`` or to it shifted to the
       top of the dtype (``(2**k - 1) << (bits - k)``) for k = 10 ... bits - 1: a value the camera gives
       only at its full scale, so the field holds saturated pixels at it (a field whose brightest pixel
       is below its camera's full scale has none, whatever the depth).
    #. Otherwise the dtype's maximum (65535 for uint16, 255 for uint8).

    Parameters
    ----------
    dtype : numpy dtype
        Stored dtype.
    max_value : float, optional
        The largest value stored in the field (any channel).
    significant_bits : int, optional
        The camera's bit depth from metadata (OME ``Pixels@SignificantBits``).

    Returns
    -------
    (float or None, str)
        The saturation value (None for float images) and its source: ``"dtype"``,
        ``"OME SignificantBits"``, ``"camera bit depth (data maximum)"`` or ``"none"``.
    """
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return 1.0, "dtype"
    if not np.issubdtype(dtype, np.integer):
        return None, "none"
    full = int(np.iinfo(dtype).max)
    bits = int(np.iinfo(dtype).bits) - (1 if np.issubdtype(dtype, np.signedinteger) else 0)
    if significant_bits is not None and 0 < int(significant_bits) < bits \
            and (max_value is None or max_value <= 2 ** int(significant_bits) - 1):  # else the metadata is wrong
        return float(2 ** int(significant_bits) - 1), "OME SignificantBits"
    if max_value is not None and bits > 10 and max_value < full:
        top = int(max_value)
        if top == max_value:
            for k in range(10, bits):
                if top in (2 ** k - 1, (2 ** k - 1) << (bits - k)):
                    return float(top), "camera bit depth (data maximum)"
    return float(full), "dtype"


def _check_values(img: np.ndarray, what: str, source: str) -> None:
    if img.size == 0:
        raise InputError(source, f"{what} is empty (no pixels)")
    if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
        n_nan = int(np.isnan(img).sum())
        n_inf = int(np.isinf(img).sum())
        raise InputError(source, f"{what} contains {n_nan} NaN and {n_inf} infinite pixel(s); fishcount needs finite intensities")
    if not np.any(img):
        raise InputError(source, f"{what} is empty (all pixels are 0)")
    lo, hi = img.min(), img.max()
    if lo == hi:  # a channel written as a constant (an export placeholder, a failed acquisition) holds no image
        raise InputError(source, f"{what} is constant (every pixel is {lo.item():g}): no image was recorded in it")


def _check_pixel_size(pixel_size_um, source) -> float | None:
    from ._datafile import checked_um

    return None if pixel_size_um is None else checked_um(pixel_size_um, "pixel size", source)


# -------------------------------------------------------------------------------------------
# reading fields
# -------------------------------------------------------------------------------------------
def channel_list(channels: "str | Sequence[str] | None") -> list[str] | None:
    """Channel names as a list: a comma-separated string (as typed for ``--channels``) is split, not read
    letter by letter."""
    if channels is None:
        return None
    if isinstance(channels, str):
        return [c.strip() for c in channels.split(",")]
    return [str(c) for c in channels]


def _paths_of(source) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        return [Path(source)]
    if isinstance(source, Iterable):
        items = list(source)
        if not items:
            raise InputError("<no files>", "no image file given")
        bad = next((p for p in items if not isinstance(p, (str, os.PathLike))), None)
        if bad is not None:  # e.g. an image as nested lists
            raise InputError("<list>", f"a list is read as per-channel file paths, but it holds a "
                                       f"{type(bad).__name__}; give an image as a (C, Y, X) numpy array")
        return [Path(p) for p in items]
    raise InputError(str(source)[:80], f"expected a file path or a list of per-channel file paths, not a "
                                       f"{type(source).__name__}")


def _group_stem(paths: Sequence[Path], panel: Panel) -> str:
    if len(paths) == 1:
        return stem_of(paths[0])
    prefixes = {_split_channel_suffix(stem_of(p), panel)[0] for p in paths}
    if len(prefixes) == 1 and None not in prefixes:
        return prefixes.pop()
    return _common_stem(paths)


def _common_stem(paths: Sequence) -> str:
    """The common beginning of the files' stems (:func:`stem_of`) without trailing ``_-. ``, else the first's."""
    stems = [stem_of(p) for p in paths]
    return os.path.commonprefix(stems).rstrip("_-. ") or stems[0]


def _check_same_positions(paths: Sequence[Path]) -> None:
    """Raise an InputError naming the file whose positions (:func:`image_positions`) differ from the
    others' in a per-channel group; return when they all hold the same."""
    pos = [tuple(image_positions(p)) for p in paths]
    if len(set(pos)) < 2:
        return
    common = max(set(pos), key=pos.count)
    odd = next(i for i, q in enumerate(pos) if q != common)
    ref = pos.index(common)

    def held(q: tuple) -> str:
        return f"{len(q)} images (series {', '.join(map(str, q))})" if q else "one image"

    raise InputError(paths[odd], f"holds {held(pos[odd])} but {Path(paths[ref]).name} holds {held(common)}: "
                                 "every file of a per-channel group must hold the same positions")


def _read(
    source,
    panel: "str | Path | Panel | None",
    channels: Sequence[str] | None,
    pixel_size_um: float | None,
    z_mode: str,
    z_plane: int | None,
    require_pixel_size: bool,
    axes: str | None = None,
    series: int | None = None,
) -> tuple[Field, dict]:
    """Read a field and return it with extra facts for :func:`describe_field`."""
    pan = load_panel(panel)
    channels = channel_list(channels)
    if isinstance(source, Position):
        if series is not None and series != source.series:
            raise InputError(source.path, f"series={series!r} contradicts the position's series {source.series}")
        source, series = source.path, source.series
    paths = _paths_of(source)
    src = str(paths[0])
    if series is not None and (isinstance(series, bool) or not isinstance(series, (int, np.integer)) or series < 0):
        raise InputError(src, f"series={series!r}: a series number (>= 0) of a multi-position file (or of every "
                              "file of a per-channel group) is expected")
    user_px = _check_pixel_size(pixel_size_um, src)
    n_needed = 1 + len(pan.signals)
    n_expected = len(channels) if channels is not None else n_needed
    per_channel = len(paths) > 1

    metas: list[_Meta] = []
    if not per_channel:
        path = paths[0]
        tif, meta = _open_tiff(path, False, n_expected, axes, series)
        try:
            _check_z(meta.n_z, z_mode, z_plane, path)
            names, names_source, cmap = _assign_channels(meta.names, meta.names_source, meta.n_c, pan, channels, src)
            ny, nx = meta.yx
            n_out_planes = meta.n_z if z_mode == "keep" else 1
            needed = int(np.prod(meta.shape)) * meta.dtype.itemsize + n_needed * n_out_planes * ny * nx * 4
            _check_memory(path, needed, meta.shape, str(meta.dtype))
            data = _to_czyx(_read_array(path, tif, meta.series).reshape(meta.shape), meta.axes)
        finally:
            tif.close()
        metas.append(meta)
        found = _confirm_composite(cmap, names_source, list(data), pan, src)
        cmap, names_source, found = _confirm_lut_colours(cmap, names_source, list(data), pan, found, src, names)
        cmap, names_source, more = _nuclear_stain_by_content(cmap, names_source, list(data), pan)
        found += more + _user_stain_check(cmap, names_source, list(data))
        stacks = {k: data[i] for k, i in cmap.items()}
        axes, shape, dtype = meta.axes, meta.shape, meta.dtype
    else:
        file_names: list[str] = []
        sources: set[str] = set()
        arrays: list[np.ndarray] = []
        for path in paths:
            try:
                tif, meta = _open_tiff(path, True, None, axes, series)
            except InputError:
                if series is None:
                    _check_same_positions(paths)  # files of different positions: say which, not only this one
                raise
            try:
                if not _holds_one_channel(meta):
                    raise InputError(
                        path, f"a per-channel file must hold one channel, this one has {meta.n_c} (axes {meta.axes})"
                    )
                if metas and meta.yx != metas[0].yx:
                    raise InputError(path, f"image size {meta.yx} differs from {metas[0].yx} of {metas[0].path.name}")
                if metas and meta.n_z != metas[0].n_z:
                    raise InputError(path, f"{meta.n_z} z-plane(s), but {metas[0].path.name} has {metas[0].n_z}")
                if metas and meta.dtype != metas[0].dtype:
                    raise InputError(path, f"dtype {meta.dtype} differs from {metas[0].dtype} of {metas[0].path.name}")
                _check_z(meta.n_z, z_mode, z_plane, path)
                ny, nx = meta.yx
                n_out = meta.n_z if z_mode == "keep" else 1
                _check_memory(path, int(np.prod(meta.shape)) * meta.dtype.itemsize * len(paths) + n_needed * n_out * ny * nx * 4,
                              (len(paths), *meta.shape), str(meta.dtype))
                arrays.append(_the_one_channel(_to_czyx(_read_array(path, tif, meta.series).reshape(meta.shape),
                                                        meta.axes),
                                               meta))
            finally:
                tif.close()
            metas.append(meta)
            sfx = _split_channel_suffix(stem_of(path), pan)[1]
            if sfx is not None:
                file_names.append(sfx)
                sources.add("file names")
            elif meta.names and meta.n_c == 1:
                file_names.append(meta.names[0])
                sources.add(meta.names_source)
            else:
                file_names.append("")
        names_source = " + ".join(sorted(sources)) if sources else "none"
        names, names_source, cmap = _assign_channels(
            file_names if any(file_names) else None, names_source, len(paths), pan, channels, src
        )
        cmap, names_source, found = _nuclear_stain_by_content(cmap, names_source, arrays, pan)
        found += _user_stain_check(cmap, names_source, arrays)
        stacks = {k: arrays[i] for k, i in cmap.items()}
        axes = "C" + metas[0].axes
        shape = (len(paths), *metas[0].shape)
        dtype = metas[0].dtype

    # pixel size: the user's value wins, then the first file that has one
    if user_px is not None:
        px, px_source, py = user_px, "user", None
    else:
        with_px = [m for m in metas if m.pixel_size_um]
        px = with_px[0].pixel_size_um if with_px else None
        py = with_px[0].pixel_size_y_um if with_px else None
        px_source = with_px[0].pixel_size_source if with_px else "none"
        for m in with_px[1:]:
            if abs(m.pixel_size_um - px) > 0.01 * px:
                raise InputError(m.path, f"pixel size {m.pixel_size_um:.4g} µm differs from {px:.4g} µm of {with_px[0].path.name}")
    if require_pixel_size and px is None:
        raise InputError(src, "no pixel size in the file's metadata; give it with --pixel-size UM (pixel_size_um=)")

    out: dict[str, np.ndarray] = {}
    names_t = tuple(names)
    top = None  # the largest stored value (integer images): the camera's full scale when it is saturated
    for key, stack in stacks.items():
        i = cmap[key]
        label = f"channel {i}" + (f" {names_t[i]!r}" if names_t[i] else "") + f" ({key})"
        # checks on the stored values (before projection, so a NaN in any plane is caught)
        _check_values(stack, label, str(paths[i] if per_channel else src))
        if np.issubdtype(stack.dtype, np.integer):
            top = max(top or 0, int(stack.max()))
        img = _project(stack, z_mode, z_plane)
        if img.dtype == np.bool_:
            img = img.astype(np.uint8)
        out[key] = np.ascontiguousarray(img, dtype=np.float32)
    dapi = out.pop(DAPI)
    bits = next((m.significant_bits for m in metas if m.significant_bits), None)
    sat, sat_source = saturation_level(dtype, top, bits)
    field = Field(
        path=src,
        stem=_group_stem(paths, pan) + (f"_s{int(series)}" if series is not None else ""),
        dapi=dapi,
        probes={s: out[s] for s in pan.signal_names},
        pixel_size_um=px,
        pixel_size_source=px_source,
        channel_names=names_t,
        channel_map=dict(cmap),
        axes=axes,
        n_z=metas[0].n_z,
        dtype=str(dtype),
        shape=tuple(shape),
        saturation_value=sat,
        panel_id=pan.id,
        saturation_source=sat_source,
        series=None if series is None else int(series),
        colour_composite=not per_channel and metas[0].names_source == "RGB photometric",
        files=tuple(str(p) for p in paths),
        z_step_um=metas[0].z_step_um,
    )
    extra = {
        "files": [str(p) for p in paths],
        "format": metas[0].fmt if not per_channel else f"{len(paths)} per-channel files ({metas[0].fmt})",
        "channel_source": names_source,
        "pixel_size_y_um": py if user_px is None else None,
        "z_mode": z_mode,
        "z_plane": z_plane,
        "series": None if series is None else int(series),
        "notes": [f"{m.path.name}: {n}" if per_channel else n for m in metas for n in m.notes] + found,
    }
    return field, extra


def read_field(
    source: "str | os.PathLike | Sequence[str | os.PathLike]",
    panel: "str | Path | Panel | None" = None,
    *,
    channels: Sequence[str] | None = None,
    pixel_size_um: float | None = None,
    z_mode: str = "max",
    z_plane: int | None = None,
    require_pixel_size: bool = False,
    axes: str | None = None,
    series: int | None = None,
) -> Field:
    """Read one field of view from a TIFF / OME-TIFF / ImageJ file or a group of per-channel files.

    #. The file is checked (exists, TIFF signature, complete) and its axes are worked out: OME and
       ImageJ axes are used as stored; plain TIFFs are read by shape (``YX``, ``CYX``, ``YXC`` with a
       small last axis, ``ZCYX``/``CZYX`` by the expected channel count); ``axes`` overrides both.
       PNG and JPEG pictures are read too (``YX``, or ``YXC`` named red, green, blue; no pixel size).
    #. Channel names come from ``channels`` if given, else from metadata (OME ``Channel@Name``,
       ImageJ ``Labels``, TIFF ``PageName``; the file-name suffix for per-channel files). They are
       matched case-insensitively to the panel's signal name, aliases and fluor, and to
       DAPI/Hoechst/nuclei for the counterstain. Unnamed files with exactly 1 + n_signals channels
       are read in panel order (DAPI first).
    #. z-stacks are max-projected (``z_mode="max"``), or one plane is taken (``z_mode="plane"``,
       ``z_plane``), or kept (``z_mode="keep"``).
    #. The pixel size is ``pixel_size_um`` if given, else OME ``PhysicalSizeX`` (unit converted),
       ImageJ calibration, or a centimetre/inch TIFF resolution.

    Parameters
    ----------
    source : path, sequence of paths or Position
        One multi-channel file, one file per channel (e.g. from :func:`find_fields`), or one image of a
        multi-position file (:class:`Position`).
    panel : str, path or Panel, optional
        Probe panel (id, .toml file or Panel); default ``del5q``.
    channels : sequence of str, optional
        Channel names in file order (or per-file order for a group); overrides metadata. A string is
        split at commas (``"DAPI,EGR1,D5S23"``, as for ``--channels``).
    pixel_size_um : float, optional
        Pixel size in µm; overrides metadata.
    z_mode : {"max", "plane", "keep"}
        How to reduce z-stacks.
    z_plane : int, optional
        Plane index (0-based) for ``z_mode="plane"``.
    require_pixel_size : bool
        Raise if no pixel size is known.
    axes : str, optional
        The stored image's axes, one letter per dimension in storage order, e.g. ``"ZCYX"``, ``"CZYX"``,
        ``"YXC"`` (for a group of per-channel files: each file's, e.g. ``"ZYX"``); overrides OME/ImageJ
        axes and the plain-TIFF shape rule. C = channels, Z = z-planes, Y/X = rows/columns; any other
        letter names an axis of length 1 (e.g. T). Case-insensitive.
    series : int, optional
        A multi-position TIFF (several full-size images, e.g. the positions of a multi-position OME-TIFF):
        the series number of the image to read (:func:`image_positions` lists them); the field's ``stem``
        is then ``<file stem>_s<series>``. Without it such a file is refused (reading its first image alone
        would drop the others). A file whose series 0 is a smaller thumbnail or overview of one full image
        is read as that image.

    Returns
    -------
    Field
        ``dapi`` and ``probes`` are float32 ``(Y, X)`` images (``(Z, Y, X)`` with ``z_mode="keep"``)
        in raw intensity units.

    Raises
    ------
    InputError
        One line naming the file: not found, not a TIFF, truncated or corrupt, too few channels,
        a needed channel missing or ambiguous, NaN/inf values, an all-zero channel, too large for
        memory, no pixel size when required, bad ``z_plane``.
    PanelError
        The panel cannot be loaded.
    """
    field, _ = _read(source, panel, channels, pixel_size_um, z_mode, z_plane, require_pixel_size, axes, series)
    return field


def field_from_arrays(
    dapi: np.ndarray,
    probes: Mapping[str, np.ndarray],
    pixel_size_um: float | None = None,
    *,
    name: str = "<array>",
    panel: "str | Path | Panel | None" = None,
) -> Field:
    """Build a :class:`Field` from in-memory arrays (simulations, napari layers, notebooks).

    Parameters
    ----------
    dapi : ndarray
        ``(Y, X)`` (or ``(Z, Y, X)``) nuclear counterstain, any real dtype.
    probes : mapping of str to ndarray
        Panel signal name -> image of the same shape as ``dapi``; must name each signal of the
        panel exactly once (case-sensitive, as in the panel).
    pixel_size_um : float, optional
        Pixel size in µm.
    name : str
        Name used as ``path`` and ``stem`` (and in error messages).
    panel : str, path or Panel, optional
        Panel the probes belong to; default ``del5q``.

    Returns
    -------
    Field
        With float32 copies of the arrays, ``channel_map`` DAPI=0 then signals in panel order and
        ``pixel_size_source`` ``"user"`` (or ``"none"``).

    Raises
    ------
    InputError
        Shapes differ, a signal is missing or unknown, an array is not 2-D/3-D, NaN/inf, all zero.
    """
    pan = load_panel(panel)
    px = _check_pixel_size(pixel_size_um, name)
    d = np.asarray(dapi)
    if d.ndim not in (2, 3):
        raise InputError(name, f"DAPI image must be 2-D (Y, X) or 3-D (Z, Y, X), got shape {d.shape}")
    if not (np.issubdtype(d.dtype, np.number) or d.dtype == np.bool_) or np.iscomplexobj(d):
        raise InputError(name, f"DAPI image must be real numbers, got dtype {d.dtype}")
    unknown = sorted(set(probes) - set(pan.signal_names))
    missing = [s for s in pan.signal_names if s not in probes]
    if unknown or missing:
        raise InputError(
            name,
            f"probe images must be named {', '.join(pan.signal_names)} (panel {pan.id})"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else ""),
        )
    arrays = {DAPI: d}
    for s in pan.signal_names:
        a = np.asarray(probes[s])
        if a.shape != d.shape:
            raise InputError(name, f"probe image {s} has shape {a.shape}, DAPI has {d.shape}")
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
            raise InputError(name, f"probe image {s} must be real numbers, got dtype {a.dtype}")
        arrays[s] = a
    out = {}
    top = None
    for k, a in arrays.items():
        _check_values(a, f"{k} image", name)
        out[k] = np.array(a, dtype=np.float32, copy=True)
        if np.issubdtype(a.dtype, np.integer) and a.dtype == d.dtype:
            top = max(top or 0, int(a.max()))
    sat, sat_source = saturation_level(d.dtype, top)
    order = (DAPI, *pan.signal_names)
    return Field(
        path=name,
        stem=stem_of(name) if name != "<array>" else name,
        dapi=out[DAPI],
        probes={s: out[s] for s in pan.signal_names},
        pixel_size_um=px,
        pixel_size_source="user" if px is not None else "none",
        channel_names=order,
        channel_map={k: i for i, k in enumerate(order)},
        axes="CZYX" if d.ndim == 3 else "CYX",
        n_z=d.shape[0] if d.ndim == 3 else 1,
        dtype=str(d.dtype),
        shape=(len(order), *d.shape),
        saturation_value=sat,
        panel_id=pan.id,
        saturation_source=sat_source,
    )


# -------------------------------------------------------------------------------------------
# grouping per-channel files
# -------------------------------------------------------------------------------------------
def _split_channel_suffix(stem: str, panel: Panel) -> tuple[str | None, str | None]:
    """``"field01_EGR1"`` -> ``("field01", "EGR1")`` if the part after the last ``_``/``-`` is a
    channel name of the panel (or DAPI); the longest matching name wins. Else ``(None, None)``."""
    low = _norm(stem)
    best: tuple[int, str, str] | None = None
    for terms in _channel_terms(panel).values():
        for t in terms:
            nt = _norm(t)
            for sep in ("_", "-"):
                if low.endswith(sep + nt) and len(low) > len(nt) + 1:
                    n = len(t)
                    cut = len(stem) - n
                    prefix, suffix = stem[: cut - 1], stem[cut:]
                    if _norm(suffix) != nt:  # whitespace normalisation changed lengths; skip
                        continue
                    if best is None or len(nt) > best[0]:
                        best = (len(nt), prefix, suffix)
    if best is None:
        return None, None
    return best[1], best[2]


def _is_tiff_name(p: Path) -> bool:
    """A TIFF worth reading in a folder scan: not hidden, not a simulator truth file (``*_truth*``,
    see ``fishcount.simulate.truth_paths``)."""
    low = p.name.lower()
    return low.endswith((".tif", ".tiff")) and not low.startswith(".") and "_truth" not in low


def find_fields(
    paths_or_dirs: "str | os.PathLike | Sequence[str | os.PathLike]",
    panel: "str | Path | Panel | None" = None,
    *,
    keep_order: bool = False,
) -> list[list[Path]]:
    """Group image files into fields: one multi-channel file, or the per-channel files of a field.

    Files named ``<prefix>_<channel>.tif`` (or ``<prefix>-<channel>.tif``), where ``<channel>`` is
    a signal name, alias or fluor of the panel or DAPI/Hoechst/nuclei, are grouped by folder and
    prefix; a group's files are ordered DAPI first, then panel order. Every other file is its own
    field. Folders are searched (not recursively) for ``*.tif``/``*.tiff``; hidden files and
    simulator truth files (``*_truth*``) are skipped there (files named explicitly are kept, PNG and
    JPEG pictures too).

    Parameters
    ----------
    paths_or_dirs : path or sequence of paths
        Files and/or folders.
    panel : str, path or Panel, optional
        Panel whose channel names are recognised in file names; default ``del5q``.
    keep_order : bool
        Keep a group's files in the order given (a folder's: sorted by name) instead of DAPI first, then
        panel order: for channel names given in that order (``--channels``).

    Returns
    -------
    list of list of Path
        One list per field, sorted by the field's first file; the stem of a group is its prefix
        (see :func:`stem_of` and :attr:`Field.stem`).

    Raises
    ------
    InputError
        A path does not exist, or a folder holds no TIFF files.
    """
    pan = load_panel(panel)
    if isinstance(paths_or_dirs, (str, os.PathLike)):
        paths_or_dirs = [paths_or_dirs]
    files: list[Path] = []
    for p in map(Path, paths_or_dirs):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and _is_tiff_name(q))
            if not found:
                raise InputError(p, "folder holds no .tif/.tiff files (sub-folders are not searched)")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise InputError(p, "file not found")
    seen: set[Path] = set()
    unique = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    order = {k: i for i, k in enumerate(_channel_terms(pan))}
    groups: dict[tuple[str, str], list[tuple[int, Path]]] = {}
    singles: list[list[Path]] = []
    for n, f in enumerate(unique):
        prefix, suffix = _split_channel_suffix(stem_of(f), pan)
        if prefix is None:
            singles.append([f])
            continue
        key = next(k for k, ts in _channel_terms(pan).items() if any(_norm(t) == _norm(suffix) for t in ts))
        groups.setdefault((str(f.parent), prefix.casefold()), []).append((n if keep_order else order[key], f))
    out = list(singles)
    for members in groups.values():
        if len(members) == 1:
            out.append([members[0][1]])
        else:
            out.append([f for _, f in sorted(members, key=lambda m: (m[0], str(m[1])))])
    return sorted(out, key=lambda g: (str(g[0].parent), stem_of(g[0]).casefold(), str(g[0])))


# -------------------------------------------------------------------------------------------
# describing
# -------------------------------------------------------------------------------------------
def image_positions(path: "str | os.PathLike | Sequence[str | os.PathLike]") -> list[int]:
    """The series numbers of the full-size images of a multi-position TIFF (the ``series`` values of
    :func:`read_field`), in file order; ``[]`` for a file of one image (thumbnails, overview and label
    pictures beside it do not count), a picture, or a file that cannot be opened (:func:`read_field` then
    says why). For a per-channel group (a list of files), the positions every one of its files holds
    alike; ``[]`` when they differ (:func:`read_field` then says which file is not of one image).

    Parameters
    ----------
    path : path-like or sequence of path-like
        A TIFF / OME-TIFF file, or the files of a per-channel group.

    Returns
    -------
    list of int
        Two or more series numbers, or ``[]``.
    """
    import tifffile

    if isinstance(path, (list, tuple)):
        each = [image_positions(p) for p in path]
        return each[0] if path and all(e == each[0] for e in each) else []
    p = Path(path)
    if not p.name.lower().endswith((".tif", ".tiff")) or not p.is_file():
        return []
    try:
        with quiet_tifffile(), tifffile.TiffFile(p) as tif:
            numbers = [k for k, _ in _image_series(tif)] if tif.series else []
    except Exception:  # noqa: BLE001 - a damaged file is reported when it is read
        return []
    return numbers if len(numbers) > 1 else []


def with_positions(sources: Iterable) -> list:
    """``sources`` with every multi-position TIFF replaced by its images (:class:`Position`, in series
    order), and every per-channel group whose files hold the same positions by one group per position;
    other sources (files of one image, groups of such files, arrays) are kept as they are.

    Parameters
    ----------
    sources : iterable
        Image sources as :func:`read_field` takes them: file paths (str or path-like), lists / tuples of the
        paths of a per-channel group, arrays or other objects (passed through untouched).

    Returns
    -------
    list
        The sources in order, each multi-position TIFF (or group) expanded in place into one
        ``Position(path, series)`` per full-size image (:func:`image_positions`; a group's paths as a tuple).
        Missing, unreadable or single-image files are kept as given, for :func:`read_field` to report.

    Examples
    --------
    >>> with_positions(["field01.ome.tif"])  # a file that does not exist is left to read_field
    ['field01.ome.tif']
    """
    out: list = []
    for src in sources:
        group = isinstance(src, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in src)
        ks = image_positions(src) if isinstance(src, (str, os.PathLike)) or group else []
        out.extend([Position(tuple(src) if group else src, k) for k in ks] if ks else [src])
    return out


def split_series(path: str | os.PathLike, out_dir: str | os.PathLike, *, overwrite: bool = False,
                 panel: "str | Path | Panel | None" = None) -> list[Path]:
    """Write each image of a multi-series TIFF (a multi-position OME-TIFF) as its own OME-TIFF.

    fishcount reads each position of such a file as its own field (:func:`read_field` ``series=``; ``fishcount
    analyze`` and ``run`` do so by themselves); files of one image each suit other tools too. This writes
    ``OUT/<stem>_s<k>.ome.tif`` for every full-size image, ``k`` its series number in the file (0-based;
    the full-size series, :func:`image_positions`: thumbnails, overview and label pictures are left out), with
    the axes, channel names, pixel size and bit depth the file gives for that image (the OME metadata of
    image ``k``; the TIFF resolution otherwise). Each file is written atomically; existing ones are never
    replaced unless ``overwrite``. A per-channel file (``scan_DAPI.ome.tif``, a channel name of ``panel``
    or DAPI after the last ``_`` or ``-``) keeps its channel at the end, ``OUT/scan_s<k>_DAPI.ome.tif``, so
    the files of one position group again (:func:`find_fields`).

    Parameters
    ----------
    path : path-like
        The multi-series TIFF.
    out_dir : path-like
        Folder for the single-image files (created).
    overwrite : bool
        Replace existing output files.
    panel : str, path or Panel, optional
        Panel whose channel names are recognised at the end of the file name; default ``del5q``.

    Returns
    -------
    list of Path
        The files written, in series order.

    Raises
    ------
    InputError
        Missing, unreadable or non-TIFF file, or an output file that exists (before anything is written).
    """
    import tifffile

    from ._atomic import atomic_path

    path = Path(path)
    out = Path(out_dir)
    kind = _check_exists(path)
    if kind != "TIFF":
        raise InputError(path, f"a {kind} picture holds one image; nothing to split")
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # noqa: BLE001 - tifffile fails in many ways on damaged files
        raise InputError(path, f"truncated or corrupt TIFF ({_short(exc)})") from None
    with tif:
        if not tif.series:
            raise InputError(path, "truncated or corrupt TIFF (no readable image in it)")
        images = _image_series(tif)  # (series number = OME image index, series)
        stem = stem_of(path)
        prefix, channel = _split_channel_suffix(stem, load_panel(panel))
        targets = [out / (f"{stem}_s{k}.ome.tif" if prefix is None else
                          f"{prefix}_s{k}{stem[len(prefix):len(prefix) + 1]}{channel}.ome.tif") for k, _ in images]
        if not overwrite:
            for t in targets:
                if t.exists():
                    raise InputError(t, "already exists; choose another --out folder or pass --overwrite")
        xml = tif.ome_metadata if tif.is_ome else None
        for (k, s), target in zip(images, targets):
            names, _, px, py, _, bits = _ome_info(xml, k) if xml else (None, "none", None, None, None, None)
            if px is None and not xml:
                px, py = _resolution_um(s.pages[0] if len(s.pages) else tif.pages[0])
            axes = "".join(a if a in "TZCYXS" else "Q" for a in s.axes)
            meta: dict = {"axes": axes}
            if names is not None and "C" in axes and len(names) == s.shape[axes.index("C")]:
                meta["Channel"] = {"Name": list(names)}
            if px:
                meta.update(PhysicalSizeX=px, PhysicalSizeXUnit="µm", PhysicalSizeY=py or px,
                            PhysicalSizeYUnit="µm")
            if bits:
                meta["SignificantBits"] = bits
            try:
                data = s.asarray()
            except Exception as exc:  # noqa: BLE001 - decoder errors have many types
                raise InputError(path, f"series {k}: truncated or corrupt TIFF ({_short(exc)})") from None
            with atomic_path(target) as tmp:
                tifffile.imwrite(tmp, data, ome=True, metadata=meta, compression="zlib")
    return targets


def describe_field(
    source: "str | os.PathLike | Sequence[str | os.PathLike]",
    panel: "str | Path | Panel | None" = None,
    channels: Sequence[str] | None = None,
    pixel_size_um: float | None = None,
    *,
    z_mode: str = "max",
    z_plane: int | None = None,
    require_pixel_size: bool = False,
    axes: str | None = None,
    series: int | None = None,
) -> dict:
    """What fishcount reads from a field: layout, channels and their mapping, pixel size, intensities.

    Parameters
    ----------
    source, panel, channels, pixel_size_um, z_mode, z_plane, require_pixel_size, axes, series
        As for :func:`read_field`.

    Returns
    -------
    dict
        ``path``, ``files``, ``stem``, ``format``, ``shape``, ``dtype``, ``axes``, ``n_z``, ``z_mode``,
        ``channel_names``, ``channel_source`` (``"OME Channel Name"``, ``"OME Channel Name/Fluor"``, ``"ImageJ Labels"``,
        ``"TIFF PageName"``, ``"file names"``, ``"user (--channels)"``, ``"assumed panel order"``),
        ``channel_map`` (key -> {``index``, ``name``}), ``unused_channels``, ``pixel_size_um``,
        ``pixel_size_y_um``, ``pixel_size_source``, ``saturation_value``, ``saturation_source``, ``panel_id``,
        ``intensity`` (key -> {``min``, ``max``, ``mean``, ``saturated_fraction``, ``saturated_pixels``},
        after z handling; saturated = at the dtype maximum)
        and ``notes`` (metadata present but not usable, e.g. a pixel size in an unknown unit).

    Raises
    ------
    InputError
        As :func:`read_field`.
    """
    field, extra = _read(source, panel, channels, pixel_size_um, z_mode, z_plane, require_pixel_size, axes, series)
    intensity = {}
    for key, img in ((DAPI, field.dapi), *field.probes.items()):
        sat = field.saturation_value
        intensity[key] = {
            "min": float(img.min()),
            "max": float(img.max()),
            "mean": float(img.mean()),
            "saturated_fraction": float(np.mean(img >= sat)) if sat is not None else None,
            "saturated_pixels": int(np.count_nonzero(img >= sat)) if sat is not None else None,
        }
    used = set(field.channel_map.values())
    return {
        "path": field.path,
        "files": extra["files"],
        "stem": field.stem,
        "format": extra["format"],
        "shape": field.shape,
        "dtype": field.dtype,
        "axes": field.axes,
        "n_z": field.n_z,
        "z_step_um": field.z_step_um,
        "z_mode": extra["z_mode"],
        "z_plane": extra["z_plane"],
        "series": extra["series"],
        "channel_names": field.channel_names,
        "channel_source": extra["channel_source"],
        "channel_map": {k: {"index": i, "name": field.channel_names[i]} for k, i in field.channel_map.items()},
        "unused_channels": [i for i in range(len(field.channel_names)) if i not in used],
        "pixel_size_um": field.pixel_size_um,
        "pixel_size_y_um": extra["pixel_size_y_um"],
        "pixel_size_source": field.pixel_size_source,
        "saturation_value": field.saturation_value,
        "saturation_source": field.saturation_source,
        "panel_id": field.panel_id,
        "intensity": intensity,
        "notes": extra["notes"] + _pixel_size_notes(field.pixel_size_um, field.pixel_size_source),
    }


#: FISH images are taken at about 0.06-0.3 µm per pixel (60-100x objectives); outside
#: TYPICAL_FISH_PIXEL_UM a pixel size is likely a default (ImageJ's 1 µm) or another objective's, and
#: ``info`` says so (it cannot measure the nuclei without segmenting; ``analyze`` then checks against them).
TYPICAL_FISH_PIXEL_UM = (0.03, 0.5)


def _pixel_size_notes(px: float | None, source: str) -> list[str]:
    if px is None or source == "user" or TYPICAL_FISH_PIXEL_UM[0] <= px <= TYPICAL_FISH_PIXEL_UM[1]:
        return []
    d = 9.0 / px
    return [f"pixel size {px:g} µm ({source}) is unusual for FISH (about 0.06-0.3 µm): a 9 µm nucleus would be "
            f"{d:.3g} px wide; check the calibration (ImageJ writes 1 µm when none was set) or give --pixel-size"]


def format_description(desc: Mapping) -> str:
    """The readable block ``fishcount info`` prints for one :func:`describe_field` result."""
    lines = [f"{desc['stem']}"]
    files = desc["files"]
    lines.append(f"  {'files:' if len(files) > 1 else 'file:':14s}{', '.join(files)}")
    if desc.get("series") is not None:
        lines.append(f"  position:     series {desc['series']} of a multi-position file")
    lines.append(f"  format:       {desc['format']}, axes {desc['axes']}, shape {tuple(desc['shape'])}, {desc['dtype']}")
    if desc["n_z"] > 1:
        how = {"max": "max projection", "keep": "kept as a stack"}.get(desc["z_mode"], f"plane {desc['z_plane']} used")
        step = desc.get("z_step_um")
        step_txt = f"; {step:.3g} µm apart, from the file" if step else "; z step not stored, give --z-step for 3-D"
        lines.append(f"  z-planes:     {desc['n_z']} ({how}{step_txt})")
    else:
        lines.append("  z-planes:     1")
    names = ", ".join(n if n else "(unnamed)" for n in desc["channel_names"])
    lines.append(f"  channels:     {names}  [names from: {desc['channel_source']}]")
    for key, m in desc["channel_map"].items():
        nm = f" {m['name']!r}" if m["name"] else ""
        it = desc["intensity"][key]
        sat = it["saturated_fraction"]
        sat_txt = f", {it['saturated_pixels']} px saturated = {100 * sat:.3g}%" if sat else ""
        lines.append(
            f"    {key:10s} <- channel {m['index']}{nm:14s} intensity {it['min']:.6g}..{it['max']:.6g} "
            f"(mean {it['mean']:.6g}{sat_txt})"
        )
    if desc["unused_channels"]:
        lines.append(f"    unused:    channel(s) {', '.join(map(str, desc['unused_channels']))}")
    if desc["pixel_size_um"] is None:
        lines.append("  pixel size:   unknown (none in metadata; give --pixel-size UM)")
    else:
        extra = ""
        py = desc.get("pixel_size_y_um")
        if py and abs(py - desc["pixel_size_um"]) > 0.01 * desc["pixel_size_um"]:
            extra = f"; Y is {py:.4g} µm (non-square pixels, X used)"
        lines.append(f"  pixel size:   {desc['pixel_size_um']:.4g} µm [{desc['pixel_size_source']}]{extra}")
    if desc.get("saturation_value") is not None:
        lines.append(f"  saturation:   {desc['saturation_value']:.6g} [{desc.get('saturation_source', 'dtype')}]")
    lines.append(f"  panel:        {desc['panel_id']}")
    for note in desc.get("notes", ()):
        lines.append(f"  note:         {note}")
    return "\n".join(lines)
