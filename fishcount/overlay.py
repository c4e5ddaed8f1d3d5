"""Pictures of a field: the overlay a person checks, and galleries of nucleus crops per call.

Both return RGB ``uint8`` arrays built with numpy (fast on 2048² fields); text is drawn with Pillow
(a matplotlib dependency). :func:`save_png` writes them atomically.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from skimage.segmentation import find_boundaries

from ._atomic import atomic_path

#: Pixels per tile when the overlay is rendered in row tiles (float64 RGB: 3 MiB per tile).
_TILE_PIXELS = 1 << 17

__all__ = ["render_overlay", "render_gallery", "save_png", "composite", "call_colors"]

#: Outline colours of calls (cycled for panels with more calls); unscorable nuclei are grey. Paul Tol's
#: "bright" qualitative scheme (then two of his "muted"), chosen to stay apart for colour-blind readers
#: (deuteranopia, protanopia); normal is Tol's cyan, the default call white.
_CALL_PALETTE = ("#ee6677", "#ccbb44", "#aa3377", "#228833", "#4477aa", "#882255", "#44aa99", "#999933")
_NORMAL_COLOR = "#66ccee"
_ATYPICAL_COLOR = "#ffffff"
_UNSCORABLE_COLOR = "#7f7f7f"
#: Fused signals (an orange-green pair counted as one): a white double ring, unlike any call colour.
_FUSION_COLOR = "#ffffff"
#: Marker shape per probe, in panel order: two probes of similar colours (orange and green look alike to
#: colour-blind readers) are told apart by shape.
_SIGNAL_SHAPES = ("circle", "square", "diamond")
_DAPI_COLOR = "#3f5fff"
_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def _rgb(color: str) -> np.ndarray:
    """RGB (float32, 3) in [0, 1] of a colour; unknown colours are white."""
    if isinstance(color, str) and _HEX.fullmatch(color):
        # the panels' "#rrggbb": the same values as matplotlib's to_rgb without importing matplotlib
        # (about 11 MiB of a worker's memory)
        return np.asarray([int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)], np.float32)
    from matplotlib.colors import to_rgb

    try:
        return np.asarray(to_rgb(color), np.float32)
    except ValueError:
        return np.ones(3, np.float32)


def call_colors(panel) -> dict[str, str]:
    """Outline colour per call name of a panel (normal cyan, default call white, others a palette)."""
    out, k = {}, 0
    for name in panel.call_names:
        if name == panel.normal_call:
            out[name] = _NORMAL_COLOR
        elif name == panel.default_call:
            out[name] = _ATYPICAL_COLOR
        else:
            out[name] = _CALL_PALETTE[k % len(_CALL_PALETTE)]
            k += 1
    return out


def _norm_limits(img: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.8) -> tuple:
    """Display limits (lo, hi) of an image: percentiles of a subsample of at most ~250 000 pixels."""
    step = max(1, int(np.sqrt(img.size / 250_000)))
    sample = img[::step, ::step]
    lo, hi = np.percentile(sample, [lo_pct, hi_pct])
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def _scale(img: np.ndarray, limits: tuple) -> np.ndarray:
    # lo/hi are numpy float64 scalars: the result is float64 (in [0, 1])
    lo, hi = limits
    return np.clip((img.astype(np.float32) - lo) / (hi - lo), 0, 1)


def _norm(img: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.8) -> np.ndarray:
    return _scale(img, _norm_limits(img, lo_pct, hi_pct))


def composite(dapi: np.ndarray, probes: Mapping[str, np.ndarray], colors: Mapping[str, str]) -> np.ndarray:
    """Additive false-colour composite of DAPI (blue, dimmed) and the probe channels.

    Parameters
    ----------
    dapi : ndarray, shape (Y, X)
    probes : mapping of str to ndarray (Y, X)
        Same shape as ``dapi``.
    colors : mapping of str to colour
        Display colour per probe name.

    Returns
    -------
    ndarray, shape (Y, X, 3), float64 in [0, 1]
    """
    ctx = _Composer(dapi, probes, colors)
    return ctx.region(0, dapi.shape[0], 0, dapi.shape[1])


class _Composer:
    """Renders any rectangle of the composite (and its drawings) with the display limits of the whole
    field, so a picture can be built in tiles: a tile is bit-identical to the same rectangle of the
    whole-field rendering, and only tiles (not several full-field float64 RGB arrays) are in memory."""

    def __init__(self, dapi: np.ndarray, probes: Mapping[str, np.ndarray], colors: Mapping[str, str]):
        self.dapi = dapi
        self.dapi_lim = _norm_limits(dapi)
        self.dapi_col = 0.6 * _rgb(_DAPI_COLOR)
        self.probes = [(img, _norm_limits(img, 50.0, 99.95), _rgb(colors.get(name, "#ffffff")))
                       for name, img in probes.items()]
        self.labels: np.ndarray | None = None
        self.lut: np.ndarray | None = None
        self.grey_labels: np.ndarray | None = None
        self.rings: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The rectangle [y0:y1, x0:x1] (inside the field), float64 (h, w, 3) in [0, 1]."""
        rgb = _scale(self.dapi[y0:y1, x0:x1], self.dapi_lim)[..., None] * self.dapi_col
        for img, lim, col in self.probes:
            rgb += _scale(img[y0:y1, x0:x1], lim)[..., None] * col
        np.clip(rgb, 0, 1, out=rgb)
        if self.labels is None:
            return rgb
        lab = self.labels[y0:y1, x0:x1]
        if self.grey_labels is not None and len(self.grey_labels):
            grey = np.isin(lab, self.grey_labels)
            rgb[grey] = rgb[grey].mean(axis=1, keepdims=True) * 0.6
        # inner boundaries need the 1-pixel neighbourhood: compute them on the rectangle plus a margin
        h, w = self.labels.shape
        my0, mx0 = max(y0 - 1, 0), max(x0 - 1, 0)
        edge = find_boundaries(self.labels[my0:min(y1 + 1, h), mx0:min(x1 + 1, w)], mode="inner")
        edge = edge[y0 - my0:y0 - my0 + (y1 - y0), x0 - mx0:x0 - mx0 + (x1 - x0)]
        rgb[edge] = self.lut[lab[edge]]
        for ry, rx, color in self.rings:  # in drawing order: a later ring covers an earlier one
            m = (ry >= y0) & (ry < y1) & (rx >= x0) & (rx < x1)
            rgb[ry[m] - y0, rx[m] - x0] = color
        return rgb

    def add_rings(self, ys: np.ndarray, xs: np.ndarray, color: np.ndarray, radius: float,
                  shape: str = "circle") -> None:
        """Queue 1-px markers (``circle``, ``square``, ``diamond``) around points (drawn by :meth:`region`,
        later markers on top)."""
        if len(ys) == 0:
            return
        ry, rx = _ring_pixels(ys, xs, radius, self.dapi.shape, shape)
        self.rings.append((ry, rx, np.asarray(color)))


def _scorable(nuclei: pd.DataFrame) -> np.ndarray:
    """The ``scorable`` column as bool, also when read back from CSV as text."""
    from .calls import as_bool

    return as_bool(nuclei["scorable"])


def _field_images(result):
    f = result.field
    dapi = f.dapi if f.dapi.ndim == 2 else f.dapi.max(axis=0)
    probes = {k: (v if v.ndim == 2 else v.max(axis=0)) for k, v in f.probes.items()}
    colors = {s.name: (s.color or "#ffffff") for s in result.panel.signals}
    return dapi, probes, colors


def _outline_colors(labels: np.ndarray, nuclei: pd.DataFrame, panel) -> np.ndarray:
    """Per-label RGB (float32) lookup table: call colour, grey when unscorable."""
    cc = call_colors(panel)
    lut = np.zeros((int(labels.max(initial=0)) + 1, 3), np.float32)
    if len(nuclei):
        lab = nuclei["label"].to_numpy(np.int64)
        ok = lab < len(lut)
        cols = np.stack([_rgb(cc.get(c, _ATYPICAL_COLOR)) for c in nuclei["call"].astype(str)])
        cols[~_scorable(nuclei)] = _rgb(_UNSCORABLE_COLOR)
        lut[lab[ok]] = cols[ok]
    return lut


def _ring_pixels(ys: np.ndarray, xs: np.ndarray, radius: float, shape: tuple,
                 kind: str = "circle") -> tuple[np.ndarray, np.ndarray]:
    """Pixels (rows, cols; int64) of 1-px markers around points, inside an image of ``shape`` (Y, X, ...):
    a ``circle`` of ``radius``, a ``square`` of half-side 0.9 x radius, a ``diamond`` of half-diagonal 1.2 x
    radius (about the same area)."""
    n = max(12, int(2 * np.pi * radius * 1.5))
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    if kind == "square":  # the unit circle's points pushed out to the square's edge
        k = 0.9 * radius / np.maximum(np.abs(np.sin(t)), np.abs(np.cos(t)))
    elif kind == "diamond":
        k = 1.2 * radius / (np.abs(np.sin(t)) + np.abs(np.cos(t)))
    else:
        k = np.full(n, float(radius))
    ry = np.rint(ys[:, None] + (k * np.sin(t))[None, :]).astype(np.int64).ravel()
    rx = np.rint(xs[:, None] + (k * np.cos(t))[None, :]).astype(np.int64).ravel()
    ok = (ry >= 0) & (rx >= 0) & (ry < shape[0]) & (rx < shape[1])
    return ry[ok], rx[ok]


def _draw_rings(rgb: np.ndarray, ys: np.ndarray, xs: np.ndarray, color: np.ndarray, radius: float) -> None:
    """Draw 1-px rings (in place) around points, vectorised over points."""
    if len(ys) == 0:
        return
    ry, rx = _ring_pixels(ys, xs, radius, rgb.shape)
    rgb[ry, rx] = color


def _font(size: int):
    """DejaVu Sans (shipped with matplotlib: it has µ, which Pillow's default font draws as a box), else
    Pillow's default font."""
    from PIL import ImageFont

    import importlib.util

    spec = importlib.util.find_spec("matplotlib")  # found, not imported (a worker keeps matplotlib unloaded)
    if spec is not None and spec.origin:
        try:
            return ImageFont.truetype(os.path.join(os.path.dirname(spec.origin), "mpl-data", "fonts", "ttf",
                                                   "DejaVuSans.ttf"), size)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _legend(width: int, entries: Sequence[tuple], title: str, scale: float) -> np.ndarray:
    """A legend strip (H, width, 3) uint8: swatches with labels, wrapped over lines. An entry is ``(text,
    colour)`` (a box: a nucleus outline) or ``(text, colour, shape)`` with shape ``circle``, ``square``,
    ``diamond`` or ``double`` (the signal markers)."""
    from PIL import Image, ImageDraw

    fs = max(10, int(round(14 * scale)))
    pad = fs // 2
    font = _font(fs)
    # lay out entries left to right, wrapping
    draw0 = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    x, y, lines = pad, pad + fs + pad, 1
    pos = []
    for entry in entries:
        text, color = entry[0], entry[1]
        shape = entry[2] if len(entry) > 2 else "box"
        w = int(draw0.textlength(text, font=font)) + fs + 3 * pad
        if x + w > width and x > pad:
            x, y, lines = pad, y + fs + pad, lines + 1
        pos.append((x, y, text, color, shape))
        x += w
    height = y + fs + pad
    img = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.text((pad, pad), title, fill=(255, 255, 255), font=font)
    lw = max(2, fs // 6)
    for x, y, text, color, shape in pos:
        c = tuple(int(v * 255) for v in _rgb(color))
        box = [x, y + 2, x + fs - 2, y + fs - 2]
        cx, cy, r = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, (fs - 4) / 2
        if shape in ("circle", "double"):
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=c, width=max(1, lw // 2))
            if shape == "double":
                draw.ellipse([cx - r / 2, cy - r / 2, cx + r / 2, cy + r / 2], outline=c, width=1)
        elif shape == "square":
            draw.rectangle([cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r], outline=c, width=max(1, lw // 2))
        elif shape == "diamond":
            draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], outline=c, width=max(1, lw // 2))
        else:
            draw.rectangle(box, outline=c, width=lw)
        draw.text((x + fs + pad // 2, y), text, fill=(255, 255, 255), font=font)
    return np.asarray(img, np.uint8)


def render_overlay(result, *, legend: bool = True, ring_radius_px: float | None = None,
                   tile_rows: int | None = None, title: str | None = None) -> np.ndarray:
    """The field overlay: composite image, nucleus outlines coloured by call, signals marked per probe.

    Each probe has its colour and its own marker shape (circle, square, diamond, in panel order), so two
    probes of similar colours stay apart for colour-blind readers; fused signals get a white double ring.
    Unscorable nuclei are outlined grey and their interior is greyed out; signals outside nuclei are
    drawn dimmer. With a pixel size, a scale bar (µm) sits in the lower right corner. A legend strip below
    the image names the field, lists calls (with nucleus counts), signals and the threshold used per signal,
    and says so when no nucleus was found.

    Parameters
    ----------
    result : FieldResult
        Output of :func:`fishcount.analyze_field`.
    legend : bool
        Append the legend strip.
    ring_radius_px : float, optional
        Radius of the signal rings; default 2.5 x the signal sigma (at least 3 px).
    tile_rows : int, optional
        Rows rendered at a time (default: tiles of about 128 Ki pixels). The picture does not depend
        on it; it bounds the float64 working memory to one tile instead of several whole-field copies.
    title : str, optional
        The legend's name of the field (default its file stem; a run gives ``patient/timepoint/field``).

    Returns
    -------
    ndarray, shape (Y + legend height, X, 3), uint8
    """
    dapi, probes, colors = _field_images(result)
    labels = np.asarray(result.labels)
    ctx = _Composer(dapi, probes, colors)
    nuc = result.nuclei
    ctx.labels = labels
    if len(nuc):
        ctx.grey_labels = nuc.loc[~_scorable(nuc), "label"].to_numpy(np.int64)
    ctx.lut = _outline_colors(labels, nuc, result.panel)
    sigma = float(result.params.get("signal_sigma_px", 1.5))
    r = ring_radius_px if ring_radius_px is not None else max(3.0, 2.5 * sigma)
    sp = result.spots
    if len(sp):
        _add_signal_marks(ctx, sp, result.panel, r)
    h, w = labels.shape
    strip = _legend_strip(result, w, title) if legend else np.zeros((0, w, 3), np.uint8)
    img = np.empty((h + strip.shape[0], w, 3), np.uint8)
    img[h:] = strip
    step = max(1, int(tile_rows) if tile_rows is not None else _TILE_PIXELS // max(w, 1))
    for y0 in range(0, h, step):  # row tiles: one tile's float64 RGB at a time, not the whole field's
        y1 = min(h, y0 + step)
        img[y0:y1] = (ctx.region(y0, y1, 0, w) * 255 + 0.5).astype(np.uint8)
    px = result.params.get("pixel_size_um") if isinstance(result.params, dict) else None
    if px and not str(result.params.get("pixel_size_source", "")).startswith("inferred"):
        _scale_bar(img[:h], float(px))
    return img


def _add_signal_marks(ctx: "_Composer", sp: pd.DataFrame, panel, r: float) -> None:
    """Queue the markers of a spots table: each probe's counted signals in its colour and shape, those
    outside every nucleus at half brightness, fused signals as a white double ring."""
    counted = sp["counts_as"].astype(str).to_numpy()
    sig, lab = sp["signal"].to_numpy(), sp["label"].to_numpy()
    ys, xs = sp["y"].to_numpy(), sp["x"].to_numpy()
    for k, s in enumerate(panel.signals):
        shape = _SIGNAL_SHAPES[k % len(_SIGNAL_SHAPES)]
        m = (sig == s.name) & (counted == s.name)
        ctx.add_rings(ys[m], xs[m], _rgb(s.color or "#ffffff"), r, shape)
        out = (sig == s.name) & (lab == 0)
        ctx.add_rings(ys[out], xs[out], 0.5 * _rgb(s.color or "#ffffff"), r, shape)
    fm = counted == "fusion"
    ctx.add_rings(ys[fm], xs[fm], _rgb(_FUSION_COLOR), r + 1.5)
    ctx.add_rings(ys[fm], xs[fm], _rgb(_FUSION_COLOR), r + 3.0)


def _scale_bar(img: np.ndarray, px_um: float) -> None:
    """Draw (in place) a white scale bar with its length in µm in the lower right corner of ``img`` (H, W, 3)
    uint8: a round length (1, 2, 5 x 10^k µm) about a tenth of the width."""
    from PIL import Image, ImageDraw

    h, w = img.shape[:2]
    target = 0.12 * w * px_um
    if target <= 0 or h < 40 or w < 80:
        return
    e = 10 ** math.floor(math.log10(target))
    length_um = max((m * e for m in (1, 2, 5) if m * e <= target), default=e)
    n = max(2, int(round(length_um / px_um)))
    fs = max(10, int(round(12 * max(1.0, w / 1024))))
    pad = fs // 2
    y1 = h - pad
    x1 = w - pad
    box = img[max(0, y1 - fs - 3 * pad - 4):h, max(0, x1 - max(n, 4 * fs) - pad):w]
    pil = Image.fromarray(np.ascontiguousarray(box))
    d = ImageDraw.Draw(pil)
    bx1, by1 = pil.width - pad, pil.height - pad
    d.rectangle([bx1 - n, by1 - max(2, fs // 4), bx1, by1], fill=(255, 255, 255))
    text = f"{length_um:g} µm"
    tw = d.textlength(text, font=_font(fs))
    d.text((bx1 - (n + tw) / 2, by1 - max(2, fs // 4) - fs - 5), text, fill=(255, 255, 255), font=_font(fs))
    box[:] = np.asarray(pil)


def _legend_strip(result, width: int, name: str | None = None) -> np.ndarray:
    """The overlay's legend strip (H, width, 3) uint8: calls with counts, signals with thresholds."""
    nuc = result.nuclei
    cc = call_colors(result.panel)
    scor = nuc[_scorable(nuc)] if len(nuc) else nuc
    vc = scor["call"].value_counts() if len(scor) else pd.Series(dtype=int)
    entries = [(f"{c} ({int(vc.get(c, 0))})", cc[c]) for c in result.panel.call_names]
    entries.append((f"unscorable ({len(nuc) - len(scor)})", _UNSCORABLE_COLOR))
    for k, s in enumerate(result.panel.signals):
        t = result.thresholds.get(s.name)
        entries.append((f"{s.name} signal (threshold {t:.1f})" if t is not None else s.name, s.color or "#ffffff",
                        _SIGNAL_SHAPES[k % len(_SIGNAL_SHAPES)]))
    if result.panel.fusion_pair:
        # break-apart: a fused pair is the intact (normal) allele; dual fusion: the fusion gene
        entries.append(("fused (intact)" if result.panel.kind == "break-apart" else "fusion", _FUSION_COLOR,
                        "double"))
    entries.append(("dim marker: signal outside a nucleus", "#808080", "circle"))
    scale = max(1.0, width / 1024)
    title = f"{name or result.field.stem} - panel {result.panel.id} - {len(nuc)} nuclei, {len(scor)} scorable"
    if len(nuc) == 0:
        why = str(dict(result.params.get("segmentation", {}) or {}).get("message") or "") \
            if isinstance(result.params, dict) else ""
        title += " - NO NUCLEUS FOUND" + (f" ({why})" if why else "")
    return _legend(width, entries, title, scale)


def render_gallery(
    result,
    *,
    calls: Sequence[str] | None = None,
    per_call: int = 8,
    crop_px: int | None = None,
    include_unscorable: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """A grid of nucleus crops, one row per call (used by the HTML report and the napari gallery).

    Parameters
    ----------
    result : FieldResult
        Output of :func:`fishcount.analyze_field`.
    calls : sequence of str, optional
        Calls to show, in row order; default: every call of the panel with at least one scorable
        nucleus, then ``unscorable`` if ``include_unscorable``.
    per_call : int
        Crops per row (a reproducible random choice when there are more nuclei).
    crop_px : int, optional
        Side of each crop in pixels; default 1.6 x the 95th percentile nucleus diameter.
    include_unscorable : bool
        Add a row of unscorable nuclei.
    seed : int
        Seed of the choice of nuclei.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
        Each row starts with a label tile naming the call and its count.
    """
    from PIL import Image, ImageDraw

    dapi, probes, colors = _field_images(result)
    labels = np.asarray(result.labels)
    nuc = result.nuclei
    if crop_px is None:
        px = result.params.get("pixel_size_um") if isinstance(result.params, dict) else None
        if len(nuc) and "area_px" in nuc:
            d = 2 * np.sqrt(np.percentile(nuc["area_px"], 95) / np.pi)
        elif len(nuc) and "area_um2" in nuc and px:
            d = 2 * np.sqrt(np.nanpercentile(nuc["area_um2"], 95) / np.pi) / float(px)
        else:
            d = 40.0
        crop_px = int(max(24, round(1.6 * d)))
    half = crop_px // 2
    ctx = _Composer(dapi, probes, colors)
    ctx.labels = labels
    ctx.lut = _outline_colors(labels, nuc, result.panel)
    if len(nuc):  # as in the overlay: unscorable nuclei greyed out
        ctx.grey_labels = nuc.loc[~_scorable(nuc), "label"].to_numpy(np.int64)
    sp = result.spots
    if len(sp):  # the same markers as the overlay (shape per probe, fused signals as a double ring)
        _add_signal_marks(ctx, sp, result.panel, max(3.0, 2.5 * float(result.params.get("signal_sigma_px", 1.5))))
    h, w = labels.shape
    scor = _scorable(nuc) if len(nuc) else np.zeros(0, bool)
    if calls is None:
        present = set(nuc.loc[scor, "call"]) if len(nuc) else set()
        calls = [c for c in result.panel.call_names if c in present]
    rows = [(c, nuc[scor & (nuc["call"].to_numpy() == c)] if len(nuc) else nuc) for c in calls]
    if include_unscorable and len(nuc) and (~scor).any():
        rows.append(("unscorable", nuc[~scor]))
    rng = np.random.default_rng(seed)
    label_w = max(120, crop_px)
    tiles = []
    for name, sub in rows:
        total = len(sub)
        if len(sub) > per_call:
            sub = sub.iloc[np.sort(rng.choice(len(sub), per_call, replace=False))]
        row = np.zeros((crop_px, label_w + per_call * (crop_px + 2), 3), np.uint8)
        tag = Image.new("RGB", (label_w, crop_px))
        shown = f"{len(sub)} of {total} shown" if total > len(sub) else f"all {total}"
        ImageDraw.Draw(tag).text((4, 4), f"{name}\n({shown})", fill=(255, 255, 255), font=_font(12))
        row[:, :label_w] = np.asarray(tag)
        for i, (cy, cx) in enumerate(zip(sub["centroid_y"].to_numpy(), sub["centroid_x"].to_numpy())):
            # the crop is centred on the nucleus; outside the field it is black
            y0, x0 = int(round(cy)) - half, int(round(cx)) - half
            y1, x1 = min(y0 + crop_px, h + half), min(x0 + crop_px, w + half)
            crop = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0), 3))
            iy0, iy1, ix0, ix1 = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
            if iy1 > iy0 and ix1 > ix0:  # only the crop is rendered, not the whole field
                crop[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = ctx.region(iy0, iy1, ix0, ix1)
            c0 = label_w + i * (crop_px + 2)
            row[: crop.shape[0], c0:c0 + crop.shape[1]] = (crop * 255 + 0.5).astype(np.uint8)
        tiles.append(row)
    if not tiles:
        return np.zeros((crop_px, label_w, 3), np.uint8)
    return np.concatenate([np.pad(t, ((0, 2), (0, 0), (0, 0))) for t in tiles], axis=0)


def save_png(rgb: np.ndarray, path: "str | os.PathLike") -> Path:
    """Write an RGB uint8 array as PNG, atomically. Returns the path."""
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(tmp, format="PNG", compress_level=3)
    return path
