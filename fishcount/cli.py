"""The ``fishcount`` command line: argument parsing and calls into the library, nothing else.

Every user error (a :class:`fishcount.errors.FishcountError`) is printed as one line
``fishcount: error: <file>: <reason>`` with exit code 2; no traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .errors import FishcountError

EXIT_USER_ERROR = 2


class _Group(click.Group):
    """A click group that turns FishcountError into a one-line message and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FishcountError as exc:
            click.echo(f"fishcount: error: {exc}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except MemoryError:
            click.echo("fishcount: error: out of memory (try fewer workers or smaller fields)", err=True)
            sys.exit(EXIT_USER_ERROR)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fishcount")
def main() -> None:
    """fishcount: interphase FISH scoring for bone-marrow clones.

    \b
    Typical use:
      fishcount info IMAGE...                  what fishcount reads from your files
      fishcount analyze IMAGE... --out DIR     nuclei, signals, calls and overlays per field
      fishcount run FOLDER --out DIR           a whole study: tables, response, report.html
    """


def _panel_option(f):
    return click.option(
        "--panel", default="del5q", show_default=True,
        help="Probe panel: a shipped id (see `fishcount panels`) or a panel .toml file.",
    )(f)


def _channels_option(f):
    return click.option(
        "--channels", default=None, metavar="A,B,C",
        help="Channel names in file order (overrides metadata), e.g. DAPI,EGR1,D5S23.",
    )(f)


def _pixel_size_option(f):
    return click.option(
        "--pixel-size", "pixel_size_um", type=float, default=None, metavar="UM",
        help="Pixel size in µm (overrides metadata).",
    )(f)


def _split_channels(channels: str | None) -> list[str] | None:
    if channels is None:
        return None
    return [c.strip() for c in channels.split(",") if c.strip()]


@main.command("panels")
@click.argument("panel", required=False)
def panels_cmd(panel: str | None) -> None:
    """List the shipped probe panels, or show one (PANEL = id or .toml file)."""
    from .panels import list_panels, load_panel

    if panel is None:
        for pid in list_panels():
            p = load_panel(pid)
            click.echo(f"{pid:10s} {p.kind:12s} {p.name}")
        return
    p = load_panel(panel)
    click.echo(f"{p.id}: {p.name} ({p.kind})")
    click.echo(f"  {p.description}")
    for s in p.signals:
        click.echo(f"  signal {s.name:8s} {s.locus:12s} {s.fluor:15s} role={s.role} letter={s.letter}")
    for c in p.calls:
        pat = ", ".join(f"{k}:{r.lo}" + ("" if r.hi == r.lo else f"..{'' if r.hi is None else r.hi}") for k, r in c.pattern)
        click.echo(f"  call   {c.name:14s} {pat:34s} {'abnormal' if c.abnormal else ''}")
    click.echo(f"  tracked: {', '.join(p.tracked_calls)}; otherwise '{p.default_call}'")


# --- commands are added below, one section each (keep each a thin shell over the library) ---


# --- info: what fishcount reads from image files (fishcount.io) ---
@main.command("info")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@_panel_option
@_channels_option
@_pixel_size_option
@click.option("--z-plane", "z_plane", type=int, default=None, metavar="N",
              help="Use z-plane N (0-based) instead of the max projection of z-stacks.")
def info_cmd(images: tuple[Path, ...], panel: str, channels: str | None, pixel_size_um: float | None,
             z_plane: int | None) -> None:
    """Show what fishcount reads from IMAGE files or folders: layout, channels and their mapping to
    the panel's signals (and where the names came from), z-planes, pixel size, intensities.

    Per-channel files (field01_DAPI.tif, field01_EGR1.tif, ...) are grouped into one field. Each
    problem file is reported on one line; the exit code is 2 if any file failed.
    """
    from .io import describe_field, find_fields, format_description
    from .panels import load_panel

    pan = load_panel(panel)
    names = _split_channels(channels)
    failed = False
    found: list[Path] = []
    for image in images:
        try:
            find_fields([image], pan)
            found.append(image)
        except FishcountError as exc:
            click.echo(f"fishcount: error: {exc}", err=True)
            failed = True
    groups = find_fields(found, pan) if found else []
    for group in groups:
        try:
            desc = describe_field(group if len(group) > 1 else group[0], pan, channels=names,
                                  pixel_size_um=pixel_size_um,
                                  z_mode="max" if z_plane is None else "plane", z_plane=z_plane)
        except FishcountError as exc:
            click.echo(f"fishcount: error: {exc}", err=True)
            failed = True
            continue
        click.echo(format_description(desc))
    if failed:
        sys.exit(EXIT_USER_ERROR)
