"""Reader: FISH fields (through :func:`fishcount.read_field`) and fishcount result folders.

* An image file (``.tif``, ``.tiff``, ``.ome.tif``) becomes one Image layer per channel, named
  ``DAPI`` and by the panel's signal names, coloured by fluor, with the pixel size (µm) as scale. A
  multi-position file gives every position's layers, named ``DAPI [s<k>]`` etc. (the first position shown).
  A PNG or JPEG colour composite (DAPI blue, probes in their display colours) is read the same way; other
  pictures are left to napari's own reader.
* A field result folder (``nuclei.csv`` + ``spots.csv``, the ``fishcount analyze`` output) becomes
  the field's channels (when the source image is found), the ``nuclei`` Labels layer coloured by
  call, and one Points layer per signal. The layers' ``metadata["fishcount"]["field_dir"]`` tells
  the Review widget which folder to review.
* A ``fishcount run`` output folder (``fields/<key>/nuclei.csv``...) opens its first field and
  records the study folder, so the Review widget can step through all its fields.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fishcount.errors import FishcountError
from fishcount.io import PICTURE_SUFFIXES

from ._layers import field_layers, labels_layer, points_layers

_IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
#: File names a field result folder may keep its label image under (first found wins).
LABEL_FILES = ("labels.tif", "labels.tiff", "nuclei_labels.tif", "labels.ome.tif", "labels.npy")
#: JSON files of a field result folder that may record the source image and panel.
META_FILES = ("field.json", "result.json", "params.json", "metadata.json", "_done.json")


def is_field_dir(path: Path) -> bool:
    return path.is_dir() and (path / "nuclei.csv").is_file() and (path / "spots.csv").is_file()


def study_fields(path: Path) -> list[Path]:
    """Field result folders of a ``fishcount run`` output folder, sorted."""
    root = path / "fields"
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.rglob("nuclei.csv") if is_field_dir(p.parent))


def napari_get_reader(path: "str | list[str]") -> Callable | None:
    """npe2 reader contribution: a reader function for paths fishcount can open, else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_dir():
        if is_field_dir(p) or study_fields(p):
            return read_results
        return None
    if p.name.lower().endswith(_IMAGE_SUFFIXES):
        return read_image
    if p.name.lower().endswith(PICTURE_SUFFIXES) and _is_fish_composite(p):  # only colour composites of a field
        return read_image
    return None


def _is_fish_composite(path: Path) -> bool:
    """A PNG / JPEG picture that fishcount reads as a FISH field by itself: a colour composite whose blue
    plane looks like the nuclear stain (:func:`fishcount.read_field`, by display colour). Other pictures
    (screenshots, photographs, grey images) are left to napari's own reader."""
    from fishcount.io import RGB_BY_COLOUR, describe_field

    try:
        return describe_field(path).get("channel_source") == RGB_BY_COLOUR
    except (FishcountError, OSError, ValueError):
        return False


def read_image(path: "str | list[str]", panel: str | None = None) -> list[tuple[Any, dict, str]]:
    """Layer data of one FISH field image, read with :func:`fishcount.read_field`."""
    import fishcount as fc

    if isinstance(path, (list, tuple)):
        path = path[0]
    positions = fc.image_positions(path)
    if not positions:
        field = fc.read_field(path, panel=panel)
        p = fc.load_panel(field.panel_id or panel)
        return field_layers(field, p, {"image": str(path)})
    # a multi-position file: every position's channels, named "<channel> [s<k>]", the first one shown (each
    # position is a field of its own, as `fishcount analyze` reads it; the Analyse widget maps the first)
    layers: list = []
    for i, k in enumerate(positions):
        field = fc.read_field(fc.Position(path, k), panel=panel)
        p = fc.load_panel(field.panel_id or panel)
        for data, kw, kind in field_layers(field, p, {"image": str(path), "series": k}):
            layers.append((data, {**kw, "name": f"{kw['name']} [s{k}]", "visible": i == 0}, kind))
    return layers


def field_metadata(folder: Path) -> dict:
    """Merged content of the JSON metadata files of a field result folder (empty if none)."""
    meta: dict = {}
    for name in META_FILES:
        f = folder / name
        if f.is_file():
            try:
                d = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(d, dict):
                for k, v in d.items():
                    meta.setdefault(k, v)
    return meta


def _located(path: str, folder: Path, working_dir: "str | None" = None) -> str:
    """A source path from ``field.json``: as written when absolute, else the first of the analysis' working
    directory (``field.json`` ``working_dir``), the result folder, its ancestors (the folder a run was started
    in holds the run folder) and the working directory that holds it (older result folders)."""
    sp = Path(path)
    if not sp.is_absolute():
        first = (Path(working_dir),) if working_dir else ()
        for base in (*first, folder, *folder.resolve().parents, Path.cwd()):
            if (base / sp).is_file():
                sp = base / sp
                break
    return str(sp)


def _source_group(source: str, panel) -> "str | list[str]":
    """The per-channel group a single source file belongs to (its folder's files grouped as
    :func:`fishcount.find_fields` groups them), for result folders written before ``field.json`` listed
    ``files``; the file itself when it is not one of a group."""
    import fishcount as fc

    try:
        for group in fc.find_fields(Path(source).parent, panel):
            if len(group) > 1 and any(Path(g).resolve() == Path(source).resolve() for g in group):
                return [str(g) for g in group]
    except FishcountError:
        pass
    return source


def _as_analysed(field, src, panel, px, ctx: dict):
    """The field with the channels mapped as the analysis mapped them (field.json ``channel_map``): a mapping
    given with ``--channels`` to a file without channel names is not found again by reading it alone, and the
    image layers would show one probe's channel under another's name. Read again with those names when the
    maps differ."""
    import fishcount as fc

    want = ctx.get("channel_map")
    n = len(field.channel_names)
    if not want or dict(field.channel_map) == want or not all(isinstance(i, int) and 0 <= i < n for i in want.values()):
        return field
    names = ["none"] * n
    for key, i in want.items():
        names[i] = key
    opts = {"series": ctx["series"], **ctx.get("read", {})}
    return fc.read_field(src, panel=panel, pixel_size_um=px, channels=names, **opts)


def _read_options(read: Any) -> dict:
    """``read_field`` options of ``field.json`` ``params.read`` (how the analysis read the image): the plane
    given with ``--z-plane`` and the axes given with ``--axes``; a maximum projection otherwise (also for a
    field detected in 3-D, whose signals napari shows on the projection). Result folders written before
    ``read`` was recorded read as the default."""
    read = read if isinstance(read, dict) else {}
    opts: dict = {}
    plane = read.get("z_plane")
    if read.get("z_projection") == "plane" and isinstance(plane, int) and not isinstance(plane, bool) and plane >= 0:
        opts.update(z_mode="plane", z_plane=plane)
    if isinstance(read.get("axes"), str) and read["axes"]:
        opts["axes"] = read["axes"]
    return opts


def read_analysed_field(ctx: dict, panel):
    """The field of a result folder's context (:func:`field_context`) read as the analysis read it: its
    series, plane or projection, axes and channel mapping; for an older result folder of a per-channel group
    whose ``field.json`` names the first file only, the group found beside it."""
    import fishcount as fc

    src, px, opts = ctx["source"], ctx["pixel_size_um"], {"series": ctx["series"], **ctx.get("read", {})}
    try:
        field = fc.read_field(src, panel=panel, pixel_size_um=px, **opts)
    except FishcountError:
        if not isinstance(src, str) or ctx["files_listed"]:
            raise
        src = _source_group(src, panel)
        field = fc.read_field(src, panel=panel, pixel_size_um=px, **opts)
    return _as_analysed(field, src, panel, px, {**ctx, "read": opts})


def field_context(folder: Path) -> dict:
    """Source image (and its ``series`` in a multi-position file), panel id and pixel size of a field result
    folder, from its ``field.json`` (``source``, ``series``, ``panel.id``, ``params.pixel_size_um``;
    docs/outputs.md)."""
    meta = field_metadata(folder)
    src = meta.get("source") or meta.get("path")
    panel = meta.get("panel")
    if isinstance(panel, dict):
        panel = panel.get("id") or panel.get("path")
    params = meta.get("params") if isinstance(meta.get("params"), dict) else {}
    px = params.get("pixel_size_um", meta.get("pixel_size_um"))
    wd = meta.get("working_dir") if isinstance(meta.get("working_dir"), str) else None
    if isinstance(src, str) and src and not src.startswith("<"):
        src = _located(src.split(os.pathsep)[0], folder, wd)
    else:
        src = None
    files = meta.get("files")  # every file read: each channel's file of a per-channel group
    listed = isinstance(files, list) and bool(files) and all(isinstance(f, str) and f for f in files)
    if listed and len(files) > 1:
        src = [_located(f, folder, wd) for f in files]
    series = meta.get("series")  # the image of a multi-position file the field was read from
    return {"source": src, "series": series if isinstance(series, int) and not isinstance(series, bool) else None,
            "panel": str(panel) if panel else None,
            "pixel_size_um": float(px) if isinstance(px, (int, float)) and px > 0 else None,
            "thresholds": meta.get("thresholds") if isinstance(meta.get("thresholds"), dict) else {},
            "params": params, "files_listed": listed, "read": _read_options(params.get("read")),
            "channel_map": cmap if isinstance(cmap := meta.get("channel_map"), dict) else None}


def read_labels(folder: Path) -> np.ndarray | None:
    """The field's nucleus label image, if the result folder holds one."""
    for name in LABEL_FILES:
        f = folder / name
        if f.is_file():
            if f.suffix == ".npy":
                return np.load(f)
            import tifffile

            return np.asarray(tifffile.imread(f))
    return None


def field_result_layers(folder: "str | os.PathLike", reviewer: str | None = None, study: str | None = None,
                        blind: bool = False) -> list[tuple[Any, dict, str]]:
    """Layers of one field result folder (channels if found, nuclei labels, signals).

    With ``reviewer``, the reviewer's journal is replayed first (:func:`fishcount.review.open_review`),
    so the layers show the reviewed state.
    """
    import fishcount as fc
    from fishcount import review as rv

    folder = Path(folder)
    ctx = field_context(folder)
    panel = fc.load_panel(ctx["panel"]) if ctx["panel"] else fc.load_panel()
    if reviewer:
        state = rv.open_review(folder, reviewer, panel)
    else:
        n, s = rv.read_field_tables(folder)
        state = rv.start_review(n, s, panel, field=folder.name, source=str(folder))
    context = {"field_dir": str(folder), "panel": panel.id, "study_dir": study, "pixel_size_um": ctx["pixel_size_um"]}
    layers: list = []
    px = ctx["pixel_size_um"]
    src = ctx["source"]
    missing = [f for f in ([src] if isinstance(src, str) else src or []) if not Path(f).exists()]
    # a field analysed from napari layers names a layer, not a file: nothing to find, nothing to say
    named_files = ctx["files_listed"] or any(str(f).lower().endswith((".tif", ".tiff", *PICTURE_SUFFIXES))
                                             for f in missing)
    if missing and named_files:  # the tables are still reviewable without the image; say why it is not shown
        warnings.warn(f"{folder}: the field's image is not found ({missing[0]}); showing nuclei and signals only",
                      stacklevel=2)
    elif src and not missing:
        try:
            field = read_analysed_field(ctx, panel)
            px = px or field.pixel_size_um
            context["pixel_size_um"] = px
            shifts = ctx["params"].get("channel_shifts_um")
            layers += field_layers(field, panel, context, shifts if isinstance(shifts, dict) else None)
        except FishcountError as exc:  # the tables are still reviewable without the image
            warnings.warn(f"{folder}: the field's image cannot be read ({exc}); showing nuclei and signals only",
                          stacklevel=2)
    labels = read_labels(folder)
    if labels is not None:
        layers.append(labels_layer(labels, panel, state.nuclei, px, context, blind=blind))
    layers += points_layers(state.spots, panel, px, context)
    return layers


def read_results(path: "str | list[str]") -> list[tuple[Any, dict, str]]:
    """Layers of a field result folder, or of the first field of a ``fishcount run`` folder."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    p = Path(path)
    if is_field_dir(p):
        return field_result_layers(p)
    fields = study_fields(p)
    return field_result_layers(fields[0], study=str(p))
