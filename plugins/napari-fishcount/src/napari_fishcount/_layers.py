"""Turn fishcount objects (Field, FieldResult, ReviewState) into napari layer data tuples.

Display only: names, colours, scale. No analysis happens here; every number comes from the
``fishcount`` library.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fishcount.panels import Panel

#: Metadata key under which layers carry their fishcount context (field folder, signal...).
META = "fishcount"

#: Unscorable nuclei are grey; in blind mode every nucleus gets one colour (calls hidden).
COLOR_UNSCORABLE = "#7f7f7f"
COLOR_HIDDEN = "#00bcd4"
COLOR_DAPI = "#3f6fff"


def call_color(panel: Panel, call: str, scorable: bool = True) -> str:
    """Display colour of a nucleus: the library's colour of its call (:func:`fishcount.overlay.call_colors`,
    the same as in overlays, galleries and the report), grey when unscorable."""
    from fishcount.overlay import call_colors

    if not scorable:
        return COLOR_UNSCORABLE
    return call_colors(panel).get(call, "#ffffff")


def _hex_rgba(color: str) -> np.ndarray:
    from napari.utils.colormaps.standardize_color import transform_color

    return np.asarray(transform_color(color)[0], dtype=np.float32)


def channel_colormap(name: str, color: str):
    """A black-to-colour napari colormap for one fluorescence channel."""
    from napari.utils.colormaps import Colormap

    rgba = _hex_rgba(color)
    return Colormap(colors=np.array([[0, 0, 0, 1], rgba]), name=f"fishcount-{name}-{color}", display_name=name)


def signal_color(panel: Panel, signal: str) -> str:
    """The panel's display colour of a signal (white if the panel gives none)."""
    c = panel.signal(signal).color
    return c or "#ffffff"


def scale_of(pixel_size_um: float | None) -> tuple[float, float]:
    """Layer scale (µm per pixel in y and x); 1 when the pixel size is unknown."""
    p = float(pixel_size_um) if pixel_size_um else 1.0
    return (p, p)


def shift_translate(shift_um: Any, pixel_size_um: float | None, scale: Any, ndim: int = 2) -> np.ndarray:
    """Layer ``translate`` (world units) that shows a probe channel moved back by its calibrated lateral
    shift ``(dy, dx)`` µm (``params["channel_shifts_um"]``, docs/detection.md), i.e. where the analysis
    saw it. ``scale``: the layer's scale per pixel (µm with a pixel size, else 1). Zeros without a shift
    or a pixel size."""
    t = np.zeros(ndim)
    dy, dx = (float(v) for v in (shift_um if shift_um is not None else (0.0, 0.0)))
    if (dy or dx) and pixel_size_um:
        t[-2] = -dy / float(pixel_size_um) * float(scale[-2])
        t[-1] = -dx / float(pixel_size_um) * float(scale[-1])
    return t


def field_layers(field, panel: Panel, context: dict | None = None,
                 channel_shifts_um: dict | None = None) -> list[tuple[Any, dict, str]]:
    """Image layers (one per channel, named like the panel, coloured by fluor, µm scale) of a Field.

    Parameters
    ----------
    field : fishcount.io.Field
    panel : Panel
    context : dict, optional
        Extra metadata stored under ``layer.metadata["fishcount"]``.
    channel_shifts_um : dict, optional
        ``{signal: (dy, dx)}`` µm the field was analysed with: those channels are shown moved back
        (:func:`shift_translate`), where the analysis saw them.

    Returns
    -------
    list of (data, kwargs, "image")
    """
    scale = scale_of(field.pixel_size_um)
    ctx = dict(context or {})
    ctx.update(path=str(field.path), stem=field.stem, panel=panel.id, pixel_size_um=field.pixel_size_um)
    dapi = np.asarray(field.dapi)
    if dapi.ndim == 3:  # z_mode="keep": show the max projection
        dapi = dapi.max(axis=0)
    out = [(dapi, {"name": "DAPI", "colormap": channel_colormap("DAPI", COLOR_DAPI), "blending": "additive",
                   "scale": scale, "metadata": {META: {**ctx, "channel": "DAPI"}},
                   "contrast_limits": _limits(dapi)}, "image")]
    for s in panel.signals:
        img = np.asarray(field.probes[s.name])
        if img.ndim == 3:
            img = img.max(axis=0)
        shift = (channel_shifts_um or {}).get(s.name)
        out.append((img, {"name": s.name, "colormap": channel_colormap(s.name, signal_color(panel, s.name)),
                          "blending": "additive", "scale": scale,
                          "translate": shift_translate(shift, field.pixel_size_um, scale),
                          "metadata": {META: {**ctx, "channel": s.name}}, "contrast_limits": _limits(img)}, "image"))
    return out


def _limits(img: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(img, [1.0, 99.8]) if img.size else (0.0, 1.0)
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def label_colors(panel: Panel, nuclei: pd.DataFrame, blind: bool = False) -> dict:
    """Label -> colour for the nuclei Labels layer (by call; grey when unscorable; one colour when blind)."""
    from fishcount.overlay import call_colors

    palette = call_colors(panel)
    colors: dict = {None: "transparent", 0: "transparent"}
    for lab, call, ok in zip(nuclei["label"], nuclei["call"], nuclei["scorable"]):
        colors[int(lab)] = COLOR_HIDDEN if blind else (palette.get(str(call), "#ffffff") if ok else COLOR_UNSCORABLE)
    return colors


def labels_layer(labels: np.ndarray, panel: Panel, nuclei: pd.DataFrame, pixel_size_um: float | None,
                 context: dict | None = None, blind: bool = False) -> tuple[Any, dict, str]:
    """The nuclei Labels layer (outlines coloured by call)."""
    from napari.utils.colormaps import DirectLabelColormap

    return (np.asarray(labels), {
        "name": "nuclei", "scale": scale_of(pixel_size_um), "opacity": 0.5,
        "colormap": DirectLabelColormap(color_dict=label_colors(panel, nuclei, blind)),
        "metadata": {META: dict(context or {})},
    }, "labels")


def show_outlines(layer, width_px: int = 2) -> None:
    """Draw a nuclei Labels layer as outlines (so DAPI and signals stay visible inside)."""
    layer.contour = int(width_px)
    layer.opacity = 1.0


def counted_spots(spots: pd.DataFrame) -> pd.DataFrame:
    """Signals shown to the reviewer: one per merge group (``counts_as`` non-empty) and inside a nucleus
    or, without ``counts_as``, every row."""
    if "counts_as" in spots.columns:
        keep = spots["counts_as"].fillna("").astype(str) != ""
        return spots[keep]
    return spots


def points_layers(spots: pd.DataFrame, panel: Panel, pixel_size_um: float | None,
                  context: dict | None = None) -> list[tuple[Any, dict, str]]:
    """One Points layer per signal (named ``<signal> signals``), ``spot_id`` and ``label`` as features."""
    shown = counted_spots(spots)
    px = float(pixel_size_um) if pixel_size_um else None
    size_px = max(3.0, 1.6 * panel.signal_diameter_um / px) if px else 6.0
    out = []
    # one shape per probe, as in overlay.png (fishcount.overlay._SIGNAL_SHAPES): orange and green look alike
    # to colour-blind readers
    symbols = ("ring", "square", "diamond")
    for k, s in enumerate(panel.signals):
        sub = shown[shown["signal"] == s.name]
        coords = sub[["y", "x"]].to_numpy(dtype=float).reshape(-1, 2)
        feats = pd.DataFrame({"spot_id": sub["spot_id"].to_numpy(dtype=np.int64) if "spot_id" in sub else np.arange(len(sub)),
                              "label": sub["label"].to_numpy(dtype=np.int64)})
        out.append((coords, {
            "name": f"{s.name} signals", "scale": scale_of(pixel_size_um), "size": size_px,
            "face_color": "transparent", "border_color": signal_color(panel, s.name), "border_width": 0.15,
            "border_width_is_relative": True, "features": feats, "symbol": symbols[k % len(symbols)],
            "metadata": {META: {**dict(context or {}), "signal": s.name}},
        }, "points"))
    return out
