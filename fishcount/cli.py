"""The ``fishcount`` command line: argument parsing and calls into the library, nothing else.

Every user error (a :class:`fishcount.errors.FishcountError`) is printed as one line
``fishcount: error: <file>: <reason>`` with exit code 2; no traceback.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from . import __version__
from .errors import FishcountError

EXIT_USER_ERROR = 2


#: Exit code of an interrupted command (Ctrl-C), as shells use for SIGINT: not 1, which a run reserves for
#: "completed with errors".
EXIT_INTERRUPTED = 130


#: click 8.2 raises this for a group called without a command; click 8.1 prints the help itself
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _PipeSafeStdout:
    """stdout that keeps working when its reader goes away (``fishcount analyze ... | head -1``): the rest of
    the output is dropped, the work goes on and the exit code stays the command's own."""

    def __init__(self, stream):
        self._stream = stream
        self._broken = False

    def write(self, text):
        if self._broken:
            return len(text)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def flush(self):
        if not self._broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self):
        import os

        self._broken = True
        try:  # the interpreter's own flush at exit must not fail on the closed pipe either
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        except (OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _Group(click.Group):
    """A click group that turns FishcountError (and a refused file operation, OSError) into a one-line
    message and exit code 2; a usage error (an unknown option, a value that is not a number) into one line and
    exit code 2 too; Ctrl-C into one line and exit code 130; and keeps working when stdout's reader stops."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        if not isinstance(sys.stdout, _PipeSafeStdout) and getattr(sys.stdout, "fileno", None) is not None:
            sys.stdout = _PipeSafeStdout(sys.stdout)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except (KeyboardInterrupt, click.exceptions.Abort):
            click.echo("fishcount: interrupted; finished work is kept: rerun the same command to resume", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except _NO_ARGS_IS_HELP as exc:  # `fishcount` alone: the help, as click shows it (click >= 8.2)
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            cmd = exc.ctx.command_path if exc.ctx is not None else "fishcount"
            click.echo(f"fishcount: error: {_usage_message(exc)} (see `{cmd} --help`)", err=True)
            sys.exit(EXIT_USER_ERROR)
        except click.ClickException as exc:
            click.echo(f"fishcount: error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FishcountError as exc:
            click.echo(f"fishcount: error: {_in_cli_words(exc)}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except MemoryError:
            click.echo("fishcount: error: out of memory (try fewer workers or smaller fields)", err=True)
            sys.exit(EXIT_USER_ERROR)
        except BrokenPipeError:  # a write the pipe-safe stdout did not see (e.g. a stream of a library)
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as exc:  # a file or folder the system refused (permissions, a full disk): one line too
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"fishcount: error: {where}{exc.strerror or exc}", err=True)
            sys.exit(EXIT_USER_ERROR)


class _Micrometres(click.ParamType):
    """A length in µm: a number (``0.16``), or a number with its unit (``0.16um``, ``0.16 µm``, ``160nm``,
    ``0.00016mm``), converted to µm; ``positive`` refuses 0 and below."""

    name = "µm"
    _UNITS = {"": 1.0, "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3, "mm": 1e3}

    def __init__(self, positive: bool = False):
        self.positive = positive

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            v = float(value)
        else:
            m = re.fullmatch(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Zµμ]*)\s*", str(value))
            unit = m.group(2).lower() if m else None
            if m is None or unit not in self._UNITS:
                self.fail(f"{value!r} is not a length: give µm as a number (e.g. 0.16) or with a unit (0.16um, 160nm)",
                          param, ctx)
            v = float(m.group(1)) * self._UNITS[unit]
        if self.positive and not v > 0:
            self.fail(f"{value!r} must be above 0 µm", param, ctx)
        return v


#: The library's argument names as the options a user of the command line typed.
_OPTION_OF = {"thresholds": "--threshold", "channel_shifts_um": "--channel-shift", "channel_crosstalk": "--crosstalk",
              "z_plane": "--z-plane", "z_step_um": "--z-step", "pixel_size_um": "--pixel-size",
              "nucleus_diameter_um": "--nucleus-diameter", "diameter_px": "--diameter-px", "n_nuclei": "--n-nuclei",
              "abnormal_fraction": "--abnormal-fraction", "z_planes": "--z-planes", "seed": "--seed"}


def _in_cli_words(exc: FishcountError) -> str:
    """A library error in the words of the command line: ``--pixel-size`` for ``pixel_size_um``, ``--set
    touching_fraction`` for a simulator option, ``--backend classical`` for ``backend='classical'``."""
    source, reason = exc.source, " ".join(exc.reason.split())
    if source in _OPTION_OF:
        source = _OPTION_OF[source]
    elif source == "simulate_field":  # simulate: "<option> must ..." names the simulator's keyword
        m = re.match(r"(\w+) (must .*|is .*)", reason)
        if m:
            source, reason = _OPTION_OF.get(m.group(1), f"--set {m.group(1)}"), m.group(2)
    reason = re.sub(r"\b(" + "|".join(_OPTION_OF) + r")\b(?=[ =(:,;)]|$)", lambda m: _OPTION_OF[m.group(1)], reason)
    reason = reason.replace("backend='classical'", "--backend classical")
    return f"{source}: {reason}" if source else reason


def _usage_message(exc: click.UsageError) -> str:
    """A click usage error in one line, saying what to type for a number given with a unit."""
    msg = " ".join(exc.format_message().split())
    if isinstance(exc, click.BadParameter) and "is not a valid float" in msg:
        msg = msg.rstrip(".") + "; give a number (lengths in µm, e.g. 0.16)"
    return msg


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


def _axes_option(f):
    return click.option(
        "--axes", default=None, metavar="AXES",
        help="The stored axes, one letter per dimension (C channels, Z planes, Y, X), e.g. ZCYX; "
             "overrides metadata and the plain-TIFF shape rule (per-channel files: each file's, e.g. ZYX).",
    )(f)


#: A --pixel-size outside these µm is refused before any work: no FISH image is taken there (a 9 µm nucleus
#: would be under 4.5 px or over 1800 px wide), but a value typed in nm (160) or mm (0.00016) lands there.
PLAUSIBLE_PIXEL_UM = (0.005, 2.0)


def _plausible_pixel_size(ctx, param, value):
    if value is not None and value > 0 and not PLAUSIBLE_PIXEL_UM[0] <= value <= PLAUSIBLE_PIXEL_UM[1]:
        hint = f"; in nm that is {value / 1000:g} µm (give 0.16 or 160nm)" if value > PLAUSIBLE_PIXEL_UM[1] else \
            f"; in mm that is {value * 1000:g} µm" if value * 1000 <= PLAUSIBLE_PIXEL_UM[1] else ""
        raise click.BadParameter(f"{value:g} µm is not the pixel size of a FISH image (about 0.06-0.3 µm){hint}",
                                 ctx=ctx, param=param)
    return value


def _pixel_size_option(f):
    return click.option(
        "--pixel-size", "pixel_size_um", type=_Micrometres(), default=None, metavar="UM",
        callback=_plausible_pixel_size,
        help="Pixel size in µm (overrides metadata); a unit may be given: 0.16um, 160nm.",
    )(f)


def _segmentation_options(default_backend: str | None):
    """``--backend``, ``--nucleus-diameter`` and ``--diameter-px`` (the choices of
    :func:`fishcount.segment_nuclei`), as one decorator; ``default_backend`` None = not passed on (the
    library default, classical)."""
    def deco(f):
        f = click.option("--diameter-px", "diameter_px", type=click.FloatRange(min=0, min_open=True), default=None,
                         metavar="PX",
                         help="Typical nucleus diameter in pixels (overrides the pixel size and the estimate).")(f)
        f = click.option("--nucleus-diameter", "nucleus_diameter_um", type=_Micrometres(positive=True),
                         default=None, metavar="UM",
                         help="Typical nucleus diameter in µm (used with a pixel size; default 9).")(f)
        return click.option(
            "--backend", default=default_backend, show_default=default_backend is not None,
            help="Nucleus segmentation backend: classical" + ("" if default_backend else " (default)")
                 + ", cellpose, stardist (each needs its own package and model weights) or an installed "
                   "plug-in (docs/segmentation.md, Backends).")(f)
    return deco


def _segmentation_params(backend: str | None, nucleus_diameter_um: float | None, diameter_px: float | None) -> dict:
    """The segmentation choices given on the command line, as ``analyze_field`` keywords (only those
    given, so a run's recorded parameters stay those of the defaults otherwise); a backend that could not
    run fails now (:func:`fishcount.segment.check_backend`)."""
    out: dict = {}
    if backend is not None:
        from .segment import check_backend

        check_backend(backend)
        out["backend"] = backend
    if nucleus_diameter_um is not None:
        out["nucleus_diameter_um"] = nucleus_diameter_um
    if diameter_px is not None:
        out["diameter_px"] = diameter_px
    return out


def _settings_option(f):
    return click.option(
        "--settings", "settings_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
        metavar="FILE",
        help="Laboratory settings (.toml): detection, segmentation and QC values that replace the defaults "
             "(docs/settings.md; `fishcount settings` prints a template).",
    )(f)


def _settings_params(settings_file: Path | None, backend: str | None, *, segment_only: bool = False) -> dict:
    """The values of a ``--settings`` file as ``analyze_field`` keywords (``segment_only``: as
    ``segment_nuclei`` keywords); its [segmentation] table needs the classical backend."""
    if settings_file is None:
        return {}
    from .settings import load_settings

    st = load_settings(settings_file)
    st.check_backend(backend)
    return st.segment_params() if segment_only else st.analyze_params()


def _repeatable_option(flag: str, dest: str, metavar: str, help_: str):
    """A repeatable ``--flag ENTRY`` option (the calibrations below), as a decorator."""
    return click.option(flag, dest, multiple=True, metavar=metavar, help=help_)


_channel_shift_option = _repeatable_option(
    "--channel-shift", "channel_shift", "SIGNAL=DY,DX",
    "Calibrated lateral shift of a probe channel against DAPI in µm (where its content appears, "
    "e.g. BCR=0,0.3: 0.3 µm too far right); SIGNAL is a signal or a fluor (SpectrumGreen=0,0.3 "
    "serves every panel). The channel is moved back before detection. Measure it with "
    "`fishcount channel-shift`. Repeatable.")

_crosstalk_option = _repeatable_option(
    "--crosstalk", "crosstalk", "SRC:DST=K",
    "Calibrated crosstalk between probe channels: the fraction K of SRC's light seen through DST's "
    "filter (e.g. SpectrumOrange:SpectrumGreen=0.08; signals or fluors). The channels are unmixed "
    "before detection. Needed for break-apart panels and 3-D detection (deletion, enumeration and "
    "dual-fusion panels measure it on each field); measure it with `fishcount crosstalk`. Repeatable.")


def _split_channels(channels: str | None) -> list[str] | None:
    if channels is None:
        return None
    return [c.strip() for c in channels.split(",") if c.strip()]


def _field_sources(images, pan, channels: str | None) -> list:
    """The fields of IMAGE arguments: per-channel files grouped and folders searched (``find_fields``; with
    ``--channels`` a group's files stay in the order given, the order the names follow), every position of
    a multi-position file a field of its own (``with_positions``)."""
    from .io import find_fields, with_positions

    groups = find_fields(list(images), pan, keep_order=channels is not None)
    return with_positions(g[0] if len(g) == 1 else g for g in groups)


def _source_name(src) -> str:
    """A field source as a user names it: its file, its files (a per-channel group), with its series."""
    from .io import Position

    if isinstance(src, Position):
        return f"{_source_name(src.path)} (series {src.series})"
    if isinstance(src, (list, tuple)):
        return " + ".join(str(f) for f in src)
    return str(src)


def _output_targets(sources, out_dir: Path) -> list[Path]:
    """OUT/<stem> of every field; two fields of the same stem (``a/field01.tif`` and ``b/field01.tif``, or
    ``red.png`` and ``red.tif``) are refused before any work, naming both: one would replace the other."""
    from .io import stem_of

    targets: list[Path] = []
    seen: dict[str, object] = {}
    for src in sources:
        key = stem_of(src)
        if key.casefold() in seen:
            raise FishcountError(out_dir / key, f"two inputs would be written here, {_source_name(seen[key.casefold()])} "
                                                f"and {_source_name(src)}; rename one or analyse them into "
                                                f"different --out folders")
        seen[key.casefold()] = src
        targets.append(out_dir / key)
    return targets


@main.command("settings")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
def settings_cmd(file: Path | None) -> None:
    """Print a settings template (every key at its default), or check a settings FILE.

    \b
    fishcount settings > lab.toml        a template to edit (all keys commented out)
    fishcount settings lab.toml          check it and list the values it changes
    """
    if file is None:
        from .settings import settings_template

        click.echo(settings_template(), nl=False)
        return
    from .analyze import DETECTION_DEFAULTS
    from .segment import CLASSICAL_DEFAULTS, QC_DEFAULTS
    from .settings import load_settings

    st = load_settings(file)
    tables = (("detection", st.detection, DETECTION_DEFAULTS), ("segmentation", st.segmentation, CLASSICAL_DEFAULTS),
              ("qc", st.qc, QC_DEFAULTS))
    changed = [(t, k, v, d[k]) for t, values, d in tables for k, v in values.items() if v != d[k]]
    same = st.n_values - len(changed)
    click.echo(f"{file}: valid, {len(changed)} value(s) differ from the defaults"
               + (f" ({same} more set to their default)" if same else ""))
    for table, k, v, dflt in changed:
        click.echo(f"  [{table}] {k} = {v:g} (default {dflt:g})" if not isinstance(v, str)
                   else f"  [{table}] {k} = {v} (default {dflt})")


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
@_axes_option
@_pixel_size_option
@click.option("--z-plane", "z_plane", type=int, default=None, metavar="N",
              help="Use z-plane N (0-based) instead of the max projection of z-stacks.")
@click.option("--require-pixel-size", is_flag=True,
              help="Report files without a pixel size (in metadata or --pixel-size) as problems.")
def info_cmd(images: tuple[Path, ...], panel: str, channels: str | None, axes: str | None,
             pixel_size_um: float | None, z_plane: int | None, require_pixel_size: bool) -> None:
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
    # a multi-position file: each position described as the field it is analysed as
    sources = _field_sources(found, pan, channels) if found else []
    shown = 0
    for source in sources:
        try:
            desc = describe_field(source, pan, channels=names,
                                  pixel_size_um=pixel_size_um,
                                  z_mode="max" if z_plane is None else "plane", z_plane=z_plane,
                                  require_pixel_size=require_pixel_size, axes=axes)
        except FishcountError as exc:
            click.echo(f"fishcount: error: {exc}", err=True)
            failed = True
            continue
        click.echo(("\n" if shown else "") + format_description(desc))
        shown += 1
    if failed:
        sys.exit(EXIT_USER_ERROR)


# --- simulate: ground-truth fields (fishcount.simulate) ---------------------------------------
@main.command("split-series")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="FILE...")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the single-image files (OUT/<stem>_s<k>.ome.tif).")
@click.option("--overwrite", "--force", "overwrite", is_flag=True, help="Replace existing output files (--force: the same).")
@_panel_option
def split_series_cmd(images, out_dir, overwrite, panel) -> None:
    """Split multi-position TIFFs (several images in one file) into one OME-TIFF per image.

    \b
    `fishcount analyze`, `segment`, `info` and `run` read each position of such a file as a field
    of its own already; split it for other tools, or to keep one file per field. Each image keeps
    its channel names, pixel size and bit depth (thumbnails and label pictures are left out).
    A per-channel file keeps its channel last (scan_DAPI.ome.tif -> scan_s0_DAPI.ome.tif), so the
    files of one position group again.
    """
    from .io import split_series

    for img in images:
        for p in split_series(img, out_dir, overwrite=overwrite, panel=panel):
            click.echo(f"wrote {p}")


@main.command("simulate")
@_panel_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--fields", "n_fields", type=click.IntRange(min=1), default=1, show_default=True, help="Number of fields.")
@click.option("--abnormal-fraction", type=click.FloatRange(0.0, 1.0), default=0.3, show_default=True,
              help="Fraction of nuclei with a tracked (clone) call.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of field 1; field k uses seed + k - 1.")
@click.option("--shape", default="1024,1024", show_default=True, metavar="Y,X", help="Field size in pixels.")
@click.option("--pixel-size", "pixel_size_um", type=_Micrometres(), default=None, metavar="UM",
              help="Pixel size in µm (default 0.16).")
@click.option("--z-planes", type=click.IntRange(min=1), default=1, show_default=True, help="Planes per z-stack.")
@click.option("--n-nuclei", type=click.IntRange(min=0), default=None, help="Nuclei per field (default from density).")
@click.option("--prefix", default="field", show_default=True, help="File names: <prefix>NN.ome.tif.")
@click.option("--set", "knobs", multiple=True, metavar="KNOB=VALUE",
              help="A realism knob (docs/simulator.md), e.g. --set touching_fraction=0.3 "
                   "--set nucleus_diameter_um=7,13; repeatable.")
@click.option("--overwrite", "--force", "overwrite", is_flag=True, help="Replace existing files (--force: the same).")
def simulate_cmd(panel, out_dir, n_fields, abnormal_fraction, seed, shape, pixel_size_um, z_planes, n_nuclei,
                 prefix, knobs, overwrite) -> None:
    """Write simulated fields (OME-TIFF) with their truth files (<stem>_truth_*.csv/.tif)."""
    from .errors import InputError
    from .simulate import DEFAULT_PIXEL_SIZE_UM, simulate_field, write_simulated_field

    try:
        yx = tuple(int(v) for v in shape.split(","))
        if len(yx) != 2:
            raise ValueError
    except ValueError:
        raise InputError("--shape", f"expected Y,X in pixels, e.g. 1024,1024; got {shape!r}") from None
    realism = {}
    for item in knobs:
        key, eq, value = item.partition("=")
        try:
            if not eq or not key.strip():
                raise ValueError
            vals = tuple(float(v) for v in value.split(","))
        except ValueError:
            raise InputError("--set", f"expected KNOB=NUMBER or KNOB=A,B, got {item!r}") from None
        realism[key.strip()] = vals[0] if len(vals) == 1 else vals
    out = Path(out_dir)
    width = max(2, len(str(n_fields)))
    for k in range(n_fields):
        sim = simulate_field(panel, shape=yx, pixel_size_um=DEFAULT_PIXEL_SIZE_UM if pixel_size_um is None else pixel_size_um,
                             abnormal_fraction=abnormal_fraction, n_nuclei=n_nuclei, seed=seed + k,
                             z_planes=z_planes, **realism)
        written = write_simulated_field(sim, out / f"{prefix}{k + 1:0{width}d}.ome.tif", overwrite=overwrite)
        t = sim.truth
        click.echo(f"{written['image']}: {len(t)} nuclei, {int(t['tracked'].sum())} tracked "
                   f"({', '.join(f'{c} {n}' for c, n in t['call'].value_counts().items())})")


# --- cohort: response rates with exact CIs, group comparisons (fishcount.cohort) ------------------
@main.command("cohort")
@click.argument("response_csv", metavar="RESPONSE.csv", type=click.Path(dir_okay=False))
@click.option("--covariates", "covariates_csv", type=click.Path(dir_okay=False), default=None, metavar="COV.csv",
              help="Per-patient covariates (a 'patient' column + e.g. tp53, completed), joined on patient.")
@click.option("--group-by", default=None, metavar="COLUMN", help="Compare response rates between the groups of COLUMN.")
@click.option("--response-column", default="best_response", show_default=True,
              type=click.Choice(["best_response", "endpoint_response"], case_sensitive=False), help="FISH response used for the rates.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write cohort_summary.csv (and cohort_groups.csv, cohort_tests.csv with --group-by) here.")
@click.option("--panel", default=None, help="With several panels in RESPONSE.csv, the one to summarise.")
@click.option("--overwrite", "--force", "overwrite", is_flag=True, help="Replace existing output files (--force: the same).")
def cohort_cmd(response_csv, covariates_csv, group_by, response_column, panel, out_dir, overwrite) -> None:
    """Response rates (major, minor, marrow-only, overall) with exact 95% CIs for ITT and completers,
    and, with --group-by, Fisher's exact and uncorrected chi-squared tests side by side."""
    import pandas as pd

    from ._atomic import write_csv_atomic
    from .cohort import (FISH_CAVEAT, MEASURES, cohort_summary, compare_groups, format_comparison, format_summary,
                         read_covariates, read_response_table)
    from .errors import InputError

    resp = read_response_table(response_csv, response_column=response_column, panel=panel)
    cov = read_covariates(covariates_csv) if covariates_csv else None
    summary = cohort_summary(resp, covariates=cov, group_by=group_by, response_column=response_column,
                             source=response_csv, covariates_source=str(covariates_csv))
    comparisons = []
    skipped: list[str] = []
    if group_by:
        pops = summary["population"].unique().tolist()
        for pop in pops:
            try:
                for m in MEASURES:
                    comparisons.append(compare_groups(resp, group_by, covariates=cov, measure=m, population=pop,
                                                      response_column=response_column, source=response_csv,
                                                      covariates_source=str(covariates_csv)))
            except InputError as exc:
                if pop == "ITT" or "group(s)" not in exc.reason:
                    raise
                # e.g. every completer in one group: the ITT comparison stands, this one cannot be made
                comparisons = [c for c in comparisons if c.population != pop]
                skipped.append(f"{pop} comparison by {group_by} not made: {exc.reason}")
    out = Path(out_dir) if out_dir else None
    names = ["cohort_summary.csv"] + (["cohort_groups.csv", "cohort_tests.csv"] if comparisons else [])
    existing = [str(out / n) for n in names if out is not None and (out / n).exists()]
    if existing and not overwrite:
        raise InputError(existing[0], "already exists; pass --overwrite to replace it")
    click.echo(format_summary(summary))
    for c in comparisons:
        if c.measure == "overall" or c.population == "ITT":
            click.echo("")
            click.echo(format_comparison(c))
    from .cohort import unmatched_covariates

    for note in skipped + unmatched_covariates(resp, cov):
        click.echo("")
        click.echo(f"note: {note}")
    click.echo("")
    click.echo(FISH_CAVEAT)
    if out is not None:
        targets = {"cohort_summary.csv": summary}
        if comparisons:
            targets["cohort_groups.csv"] = pd.concat(
                [c.table.assign(group_by=c.group_by, population=c.population, measure=c.measure) for c in comparisons],
                ignore_index=True)
            targets["cohort_tests.csv"] = pd.concat([c.tests for c in comparisons], ignore_index=True)
        for name, df in targets.items():
            write_csv_atomic(df, out / name)
        for stale in ("cohort_groups.csv", "cohort_tests.csv"):  # of an earlier --group-by run: not these results
            if stale not in targets and (out / stale).exists():
                (out / stale).unlink()
        click.echo(f"wrote {', '.join(str(out / n) for n in targets)}")


# --- cutoff: laboratory cut-offs from normal controls (fishcount.cutoffs) --------------------
@main.command("cutoff")
@click.argument("controls", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@_panel_option
@click.option("--method", type=click.Choice(["betainv", "exact", "binomial", "mean3sd"], case_sensitive=False), default="betainv",
              show_default=True, help="BETAINV(CL,kmax+1,N), exact Clopper-Pearson, CRITBINOM or mean + 3 SD.")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="One-sided confidence level CL (between 0 and 1, e.g. 0.95).")
@click.option("--kmax-at-n", type=click.Choice(["conservative", "proportional", "fixed"], case_sensitive=False), default="conservative",
              show_default=True, help="How kmax follows the sample's N (betainv/exact): docs/scoring.md.")
@click.option("--lab", "laboratory", default="", help="Laboratory name written into the file.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="cutoffs.toml to write.")
@click.option("--overwrite", "--force", "force", is_flag=True, help="Replace an existing --out file (--force: the same).")
def cutoff_cmd(controls, panel, method, confidence, kmax_at_n, laboratory, out, force) -> None:
    """Compute laboratory cut-offs from normal CONTROLS (nuclei.csv files or samples tables).

    \b
    A nuclei.csv (column 'call') is pooled per patient/timepoint/week (or sample), a samples
    table (column 'nuclei_scored' + n_<call>) gives one control per row. See docs/scoring.md.
    """
    from .cutoffs import compute_cutoffs, controls_from_tables, cutoff_for_n, write_cutoffs
    from .panels import load_panel

    p = load_panel(panel)
    table = controls_from_tables(controls, p)
    src = ", ".join(str(c) for c in controls)
    cs = compute_cutoffs(table, p, method=method, confidence=confidence, kmax_at_n=kmax_at_n, source=src,
                         laboratory=laboratory)
    write_cutoffs(cs, out, controls_files=[str(c) for c in controls], overwrite=force)
    click.echo(f"{out}: {cs.clone.controls} controls, {cs.label}")
    click.echo(f"  {'call':14s} {'N=100':>7s} {'N=200':>7s} {'N=500':>7s}")
    for name, rule in [("clone", cs.clone)] + list(cs.calls.items()):
        click.echo(f"  {name:14s} " + " ".join(f"{cutoff_for_n(rule, n):6.2f}%" for n in (100, 200, 500)))


# --- response: cytogenetic response over time (fishcount.response) -----------------------------
@main.command("response")
@click.argument("samples", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--criteria", default="trial_fish", show_default=True,
              help="Criteria set: a shipped id (trial_fish, iwg2006_cyto) or a criteria .toml file.")
@click.option("--cutoffs", "cutoffs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Laboratory cutoffs.toml (overrides the table's cutoff_pct; default: provisional, not validated); "
                   "repeat it for a table of several panels, one file per panel.")
@click.option("--endpoint-week", type=float, default=None, help="Primary endpoint week (default from the criteria, 16).")
@click.option("--window", "window_weeks", type=float, default=None, help="Endpoint visit window ± weeks (default 2).")
@click.option("--no-plots", is_flag=True, help="Do not draw the per-patient trajectory plots.")
@click.option("--clinical", "clinical_csv", default=None, type=click.Path(dir_okay=False, path_type=Path),
              metavar="CLINICAL.csv", help="Supplied clinical values (marrow blasts, counts) per patient and week: adds "
              "the clinical response, marrow_response and overall_response (major ∪ minor ∪ marrow) to response.csv.")
@click.option("--clinical-criteria", default="iwg2006_mds", show_default=True,
              help="Clinical criteria set for --clinical: iwg2006_mds, iwg2023_hr_mds, eln2022_aml or a .toml file.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--overwrite", "--force", "force", is_flag=True, help="Replace existing response files in --out (--force: the same).")
def response_cmd(samples, criteria, cutoffs, endpoint_week, window_weeks, no_plots, clinical_csv, clinical_criteria,
                 out, force) -> None:
    """Classify cytogenetic response per patient from SAMPLES.csv (one row per sample).

    \b
    Needs columns patient, week (weeks since treatment start; baseline <= 0), nuclei_scored,
    nuclei_abnormal; optional timepoint, panel, cutoff_pct. Writes DIR/response.csv,
    DIR/response_timepoints.csv, DIR/response.txt and DIR/plots/<patient>_<panel>.png
    (<patient>.png for a table without a panel column).
    """
    from .response import classify_response, read_samples, write_response

    table = read_samples(samples)
    from .cutoffs import cutoffs_argument

    res = classify_response(table, criteria, cutoffs_argument(cutoffs), endpoint_week=endpoint_week,
                            endpoint_window_weeks=window_weeks, source=str(samples))
    if clinical_csv is not None:  # clinical response from supplied values (fishcount.clinical)
        from .clinical import attach_clinical, format_clinical, write_clinical

        res, clin = attach_clinical(res, clinical_csv, clinical_criteria)
        write_clinical(clin, out, overwrite=force, check_only=True)
    written = write_response(res, out, source=str(samples), plots=not no_plots, overwrite=force)
    click.echo((out / "response.txt").read_text(encoding="utf-8"), nl=False)
    if clinical_csv is not None:
        written += write_clinical(clin, out, overall=res.patients, overwrite=force)
        click.echo("\n" + format_clinical(clin, res.patients), nl=False)
    plots = [p for p in written if p.suffix == ".png"]
    tables = [p for p in written if p.suffix != ".png"]
    click.echo("\nwrote " + ", ".join(str(p) for p in tables)
               + (f" and {len(plots)} trajectory plot(s) in {plots[0].parent}" if plots else ""))


# --- run: a whole study, resumable, on Dask (fishcount.batch) + report (fishcount.report) ---------
@main.command("run")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Run folder (created; rerunning into it resumes and redoes only changed fields).")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV: path (glob ok, relative to FOLDER), patient, timepoint, week [, panel, sample, slide, ...]. "
                   "Default FOLDER/manifest.csv, else the layout FOLDER/<patient>/<timepoint>/*.tif.")
@_panel_option
@_channels_option
@_axes_option
@_pixel_size_option
@click.option("--criteria", default=None, help="Response criteria: a shipped id (trial_fish, iwg2006_cyto) or a .toml file.")
@click.option("--cutoffs", multiple=True, type=click.Path(dir_okay=False),
              help="Laboratory cutoffs.toml (default: provisional, flagged as not validated); repeat it for a "
                   "study of several panels, one file per panel.")
@click.option("--workers", type=int, default=None,
              help="Worker processes (default: one per core, fewer if memory is short); 1 = a plain serial loop.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on a Dask distributed cluster, e.g. tcp://host:8786 (see docs/batch.md).")
@click.option("--pool-thresholds", is_flag=True,
              help="One detection threshold per signal pooled over the fields of each sample (default: per field).")
@click.option("--no-report", is_flag=True, help="Do not write report.html.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@click.option("--z-step", "z_step_um", type=_Micrometres(positive=True), default=None, metavar="UM",
              help="z-stacks: keep every plane and detect signals in 3-D; UM is the z step in µm "
                   "(as `analyze --z-step`). Default: detect on the maximum projection.")
@_channel_shift_option
@_crosstalk_option
@_segmentation_options(None)
@_settings_option
def run_cmd(folder, out_dir, manifest, panel, channels, axes, pixel_size_um, criteria, cutoffs, workers, scheduler,
            pool_thresholds, no_report, quiet, z_step_um, channel_shift, crosstalk, backend, nucleus_diameter_um,
            diameter_px, settings_file) -> None:
    """Analyse every field of a study FOLDER and write pooled tables, response and report.html.

    \b
    Writes DIR/nuclei.parquet (+ .csv), samples.csv, response.csv, response_timepoints.csv,
    errors.csv, run.json, report.html and DIR/fields/<field>/ (the `analyze` outputs). A field
    that cannot be read is recorded in errors.csv and the run goes on; the exit code is then 1
    ("completed with N errors"). Bad arguments, manifest or panel: exit code 2 before any work.
    """
    from .analyze import parse_channel_shifts, parse_crosstalk
    from .batch import run_batch

    params: dict = {}
    read = {}
    if channels:
        read["channels"] = _split_channels(channels)
    if axes:
        read["axes"] = axes
    if pixel_size_um is not None:
        read["pixel_size_um"] = pixel_size_um
    if z_step_um is not None:  # 3-D detection: read the z-stacks whole, detect with the z step
        read["z_mode"] = "keep"
        params.setdefault("analyze", {})["z_step_um"] = z_step_um
    shifts = parse_channel_shifts(channel_shift)
    if shifts:
        params.setdefault("analyze", {})["channel_shifts_um"] = {k: list(v) for k, v in shifts.items()}
    xt = parse_crosstalk(crosstalk)
    if xt:
        params.setdefault("analyze", {})["channel_crosstalk"] = xt
    seg = _segmentation_params(backend, nucleus_diameter_um, diameter_px)
    if seg:
        params.setdefault("analyze", {}).update(seg)
    if read:
        params["read"] = read
    res = run_batch(folder, out_dir, manifest=manifest, panel=panel, workers=workers, scheduler=scheduler,
                    params=params, criteria=criteria, cutoffs=cutoffs, pool_thresholds=pool_thresholds,
                    report=not no_report, quiet=quiet, settings=settings_file)
    if not quiet:
        click.echo(f"{res.n_fields} fields: {res.n_done} analysed, {res.n_skipped} already done, "
                   f"{res.n_failed} failed")
        if res.response is not None and "best_response" in res.response.columns:
            for r in res.response.to_dict("records"):
                click.echo(f"  {r['patient']}: best {r.get('best_response', '')}, "
                           f"endpoint {r.get('endpoint_response', '')}")
        for name in ("samples.csv", "response.csv", "report.html"):
            if (Path(out_dir) / name).exists():
                click.echo(f"wrote {Path(out_dir) / name}")
        if res.warnings:
            click.echo(f"warning: {len(res.warnings)} field(s) analysed with a warning (run.json, report.html); "
                       f"first: {next(iter(res.warnings))}: {next(iter(res.warnings.values()))[0]}")
    if res.n_errors:
        what = [f"{res.n_failed} field(s) failed"] if res.n_failed else []
        other = res.n_errors - res.n_failed
        if other:
            what.append(f"{other} sample or threshold error(s)")
        click.echo(f"fishcount: completed with {res.n_errors} error(s) ({', '.join(what)}); see "
                   f"{Path(out_dir) / 'errors.csv'}", err=True)
        sys.exit(1)


@main.command("report")
@click.argument("run_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write (default DIR/report.html).")
@click.option("--overwrite", "--force", "overwrite", is_flag=True,
              help="Replace an existing --out file that is not a fishcount report (--force: the same).")
def report_cmd(run_dir, out, overwrite) -> None:
    """(Re)write the HTML report of a `fishcount run` folder DIR."""
    from .report import write_report

    if out is not None and Path(out).exists() and not overwrite and not _is_report(Path(out)):
        raise FishcountError(out, "exists and is not a fishcount report; choose another --out or pass --overwrite")
    click.echo(f"wrote {write_report(run_dir, out)}")


def _is_report(path: Path) -> bool:
    """A file a previous `fishcount report` wrote (rewriting it is what the command is for)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return head.startswith("<!DOCTYPE html>") and "<title>fishcount report" in head


# --- analyze (issue 4): one output folder per field, the output contract of docs/outputs.md ---
def _parse_thresholds(values: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for v in values:
        name, sep, num = v.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(num)
        except ValueError:
            raise FishcountError("--threshold", f"expected SIGNAL=VALUE (e.g. EGR1=6.5), got {v!r}") from None
    return out


@main.command("analyze")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@_panel_option
@_channels_option
@_axes_option
@_pixel_size_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder; each field is written to OUT/<stem>/.")
@click.option("--threshold", "threshold", multiple=True, metavar="SIGNAL=SNR",
              help="Manual detection threshold for one signal, in noise units (repeatable).")
@click.option("--pool-thresholds", is_flag=True,
              help="Estimate one automatic threshold per signal over all IMAGEs (one sample).")
@click.option("--overwrite", "--force", "overwrite", is_flag=True, help="Replace existing OUT/<stem>/ folders (--force: the same).")
@click.option("--no-overlay", is_flag=True, help="Do not render overlay.png.")
@click.option("--z-step", "z_step_um", type=_Micrometres(positive=True), default=None, metavar="UM",
              help="z-stacks: keep every plane and detect signals in 3-D (signals that overlap in the "
                   "projection stay apart); UM is the z step in µm. Default: detect on the maximum projection.")
@click.option("--z-plane", "z_plane", type=click.IntRange(min=0), default=None, metavar="N",
              help="z-stacks: analyse plane N (0-based) instead of the maximum projection.")
@_channel_shift_option
@_crosstalk_option
@_segmentation_options(None)
@_settings_option
def analyze_cmd(images, panel, channels, axes, pixel_size_um, out_dir, threshold, pool_thresholds, overwrite,
                no_overlay, z_step_um, z_plane, channel_shift, crosstalk, backend, nucleus_diameter_um,
                diameter_px, settings_file) -> None:
    """Segment nuclei, count probe signals and call every nucleus in each IMAGE.

    \b
    Writes OUT/<stem>/: nuclei.csv, spots.csv, labels.tif, overlay.png, field.json
    (the versioned output contract, docs/outputs.md). Each position of a multi-position
    file is a field of its own: OUT/<stem>_s<k>/. Per-channel files (field01_DAPI.tif,
    field01_EGR1.tif, ...) or their folder are one field, OUT/field01/.
    """
    from .analyze import analyze_field, estimate_thresholds, parse_channel_shifts, parse_crosstalk, write_field_result
    from .panels import load_panel

    if z_step_um is not None and z_plane is not None:
        raise FishcountError("--z-step", "cannot be combined with --z-plane (3-D detection uses every z-plane)")
    opts = {**_settings_params(settings_file, backend), "z_plane": z_plane, "axes": axes,
            **({"z_step_um": z_step_um} if z_step_um is not None else {})}
    opts.update(_segmentation_params(backend, nucleus_diameter_um, diameter_px))
    shifts = parse_channel_shifts(channel_shift)
    if shifts:
        opts["channel_shifts_um"] = shifts
    xt = parse_crosstalk(crosstalk)
    if xt:
        opts["channel_crosstalk"] = xt
    pan = load_panel(panel)
    chans = _split_channels(channels)
    manual = _parse_thresholds(threshold)
    images = _field_sources(images, pan, channels)  # per-channel files grouped; each position a field of its own
    targets = _output_targets(images, out_dir)
    if pool_thresholds and len(images) > 1:
        pooled = estimate_thresholds(list(images), pan, channels=chans, pixel_size_um=pixel_size_um, **opts)
        given = dict(manual)
        manual = {**pooled, **manual}
        click.echo("pooled thresholds: " + ", ".join(
            f"{k}={v:.2f}" + (" (--threshold)" if k in given else "") for k, v in manual.items()))
    if not overwrite:  # refuse before any work is done
        for target in targets:
            if target.exists():
                raise FishcountError(target, "outputs already exist; choose another --out folder or pass --overwrite")
    for img in images:
        res = analyze_field(img, pan, channels=chans, pixel_size_um=pixel_size_um, thresholds=manual or None, **opts)
        target = write_field_result(res, out_dir, overwrite=overwrite, overlay=not no_overlay)
        nuc = res.nuclei
        n_ok = int(nuc["scorable"].sum()) if len(nuc) else 0
        calls = nuc.loc[nuc["scorable"], "call"].value_counts().to_dict() if len(nuc) else {}
        summary = ", ".join(f"{k} {v}" for k, v in calls.items())
        click.echo(f"{target}: {len(nuc)} nuclei, {n_ok} scorable ({summary})")
        for w in res.params.get("warnings", []):
            click.echo(f"  warning: {w}")


# --- channel-shift: measure the lateral shift between two probe channels (fishcount.spots) ----------
@main.command("channel-shift")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--panel", required=True,
              help="A panel whose probes co-localise (break-apart or dual fusion), e.g. kmt2a on a normal control.")
@_channels_option
@_axes_option
@_pixel_size_option
@click.option("--max-distance", "max_distance_um", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="UM", help="Largest distance of a co-localised pair, µm (default: the panel's fusion distance).")
@_settings_option
def channel_shift_cmd(images, panel, channels, axes, pixel_size_um, max_distance_um, settings_file) -> None:
    """Measure how far one probe channel is imaged off the other, from co-localised signals.

    \b
    Image a control whose probes co-localise: a break-apart probe on normal cells (every intact locus
    is a fusion) or multicolour beads read with a fusion panel. Each field is analysed without any
    correction; the signals of the two channels are paired one-to-one in each nucleus, closest first,
    up to --max-distance apart, and the median offset is printed, ready for `--channel-shift`.
    """
    import pandas as pd

    from .analyze import analyze_field
    from .panels import load_panel
    from .spots import estimate_channel_shift

    lab = _settings_params(settings_file, None)
    pan = load_panel(panel)
    if not pan.fusion_pair:
        raise FishcountError("--panel", f"panel {pan.id} has no co-localising probe pair (fusion_pair); use a "
                                        "break-apart or dual-fusion panel")
    ref, moved = pan.fusion_pair
    parts = []
    images = _field_sources(images, pan, channels)  # folders, per-channel groups, positions: as `analyze`
    for k, img in enumerate(images):
        res = analyze_field(img, pan, channels=_split_channels(channels), pixel_size_um=pixel_size_um, axes=axes,
                            **lab)
        px = float(res.params["pixel_size_um"])
        parts.append(res.spots.assign(field=k, y=res.spots["y"] * px, x=res.spots["x"] * px))
    spots = pd.concat(parts, ignore_index=True)
    reach = max_distance_um if max_distance_um is not None else float(pan.fusion_distance_um)
    try:  # coordinates are in µm here (fields may differ in pixel size): pixel size 1
        dy, dx, n = estimate_channel_shift(spots, (ref, moved), 1.0, reach)
    except ValueError as exc:
        raise FishcountError(_source_name(images[0]) if len(images) == 1 else f"{len(images)} fields", str(exc)) from None
    fluor = {s.name: s.fluor for s in pan.signals}
    click.echo(f"{moved} ({fluor[moved]}) relative to {ref} ({fluor[ref]}): dy = {dy:+.3f} µm, dx = {dx:+.3f} µm "
               f"({n} pairs in {len(images)} field(s), pairs within {reach:g} µm)")
    click.echo(f"correct with: --channel-shift {moved}={dy:.3f},{dx:.3f} (this panel) or "
               f"--channel-shift {fluor[moved]}={dy:.3f},{dx:.3f} (every panel with these fluors)")


# --- crosstalk: measure the bleed-through between probe channels on a control (fishcount.spots) --------
@main.command("crosstalk")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--panel", required=True,
              help="A deletion, enumeration or dual-fusion panel (probes that stand apart) in the fluors to "
                   "calibrate, e.g. del5q for SpectrumOrange/SpectrumGreen.")
@_channels_option
@_axes_option
@_pixel_size_option
@_settings_option
def crosstalk_cmd(images, panel, channels, axes, pixel_size_um, settings_file) -> None:
    """Measure the crosstalk between probe channels (filter bleed-through) on control fields.

    \b
    Image any slide hybridised with a deletion, enumeration or dual-fusion probe in the fluors to
    calibrate, with the filter sets used for the patient images. In each field the brightest signals
    of each channel are read in the other channel (fishcount.spots.crosstalk_at, as `analyze` does on
    such panels); the median over the fields is printed, ready for `--crosstalk` on break-apart panels
    and 3-D detection.
    """
    import numpy as np

    from .analyze import analyze_field
    from .panels import load_panel

    lab = _settings_params(settings_file, None)
    pan = load_panel(panel)
    if pan.kind not in ("deletion", "enumeration", "dual-fusion"):
        raise FishcountError("--panel", f"panel {pan.id} is a {pan.kind} panel: its probes co-localise, which "
                                        "hides the crosstalk; calibrate on a deletion, enumeration or "
                                        "dual-fusion panel")
    per: dict[str, list[float]] = {}
    images = _field_sources(images, pan, channels)  # folders, per-channel groups, positions: as `analyze`
    for img in images:
        res = analyze_field(img, pan, channels=_split_channels(channels), pixel_size_um=pixel_size_um, axes=axes,
                            **lab)
        for pair, k in (res.params.get("crosstalk") or {}).items():
            per.setdefault(pair, []).append(float(k))
    if not per:
        where = _source_name(images[0]) if len(images) == 1 else f"{len(images)} fields"
        raise FishcountError(where, "too few bright signals in each channel to measure the crosstalk "
                                    "(image more or denser control fields)")
    fluor = {s.name: s.fluor for s in pan.signals}
    by_name, by_fluor = [], []
    for pair in sorted(per):
        k = float(np.median(per[pair]))
        src, dst = pair.split("->")
        click.echo(f"{src} ({fluor[src]}) seen through the {dst} ({fluor[dst]}) filter: {k:.3f} "
                   f"(median of {len(per[pair])} field(s))")
        by_name.append(f"--crosstalk {src}:{dst}={k:.3f}")
        by_fluor.append(f"--crosstalk {fluor[src]}:{fluor[dst]}={k:.3f}")
    click.echo("correct with: " + " ".join(by_fluor) + " (every panel with these fluors) or "
               + " ".join(by_name) + " (this panel)")


# --- review (issue 7): reviewer journals -> concordance, rescored samples (fishcount.review) ----------
@main.command("concordance")
@click.argument("field_dir", type=click.Path(path_type=Path))
@click.argument("reader_a")
@click.argument("reader_b")
@click.option("--panel", default=None, help="Probe panel of the field(s) (default: the one the analysis used, "
                                             "field.json / the run's tables).")
@click.option("--all-nuclei", is_flag=True, help="Compare every nucleus, not only those both readers reviewed.")
def concordance_cmd(field_dir: Path, reader_a: str, reader_b: str, panel: str | None, all_nuclei: bool) -> None:
    """Agreement of two readers' reviews (agreement %, Cohen's kappa, Fisher p).

    FIELD_DIR is a field result folder holding review.<READER>.jsonl journals (napari review widget),
    or a `fishcount run` folder: then one row per sample, its reviewed fields pooled.
    """
    from . import review as rv

    if not (field_dir / "nuclei.csv").is_file() or not (field_dir / "spots.csv").is_file():
        if (field_dir / "fields").is_dir():
            table = rv.sample_concordance(field_dir, reader_a, reader_b, panel, reviewed_only=not all_nuclei)
            click.echo(table.to_string(index=False))
            return
    for r in (reader_a, reader_b):
        if not rv.journal_path(field_dir, r).exists():
            raise FishcountError(rv.journal_path(field_dir, r), f"no review journal of reader '{r}'")
    a = rv.open_review(field_dir, reader_a, panel)  # panel None: the one the field was analysed with
    b = rv.open_review(field_dir, reader_b, panel)
    c = rv.concordance(a, b, reader_a=reader_a, reader_b=reader_b, reviewed_only=not all_nuclei)
    click.echo(c.summary())
    click.echo(c.confusion.to_string())


@main.command("review-samples")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--reviewer", required=True, help="Whose review journals to apply.")
@click.option("--cutoffs", multiple=True, help="Laboratory cut-offs file (default: the ones the run used, run.json); "
                                                "repeat it for a run of several panels, one file per panel.")
def review_samples_cmd(run_dir: Path, reviewer: str, cutoffs: tuple[str, ...]) -> None:
    """Rescore a `fishcount run` folder with a reviewer's corrections.

    Writes samples.reviewed.<REVIEWER>.csv and response.reviewed.<REVIEWER>.csv beside samples.csv.
    """
    from .review import write_reviewed_response, write_reviewed_samples

    from .cutoffs import cutoffs_argument

    cutoffs = cutoffs_argument(cutoffs)
    path, fields = write_reviewed_samples(run_dir, reviewer, cutoffs=cutoffs)
    click.echo(f"{path} ({len(fields)} reviewed field(s): {', '.join(fields)})")
    click.echo(write_reviewed_response(run_dir, reviewer, cutoffs=cutoffs))


# --- segment (issue 3): DAPI -> nucleus labels + per-nucleus QC (fishcount.segment) -------------------
def _read_dapi_for_segment(path, panel: str, channels: str | None, pixel_size_um: float | None,
                           axes: str | None = None):
    """(dapi, pixel_size_um, saturation_value) of one image: a panel field, or a plain one-channel image."""
    from .errors import InputError
    from .io import read_field

    try:
        f = read_field(path, panel, channels=_split_channels(channels), pixel_size_um=pixel_size_um, axes=axes)
        return f.dapi, f.pixel_size_um, f.saturation_value
    except InputError as exc:
        from .io import read_one_channel

        try:  # a nuclear-stain-only image (one channel) is fine for segmentation
            arr, px = read_one_channel(path, axes, return_pixel_size=True)
        except InputError:
            raise exc from None  # the reading as a panel field says best what does not fit
        # the user's pixel size wins, else the file's own; segment_nuclei finds the camera's full scale itself
        return arr, pixel_size_um if pixel_size_um is not None else px, None


@main.command("segment")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="IMAGE...")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder; each image is written to OUT/<stem>/labels.tif and nuclei_qc.csv.")
@_pixel_size_option
@_panel_option
@_channels_option
@_axes_option
@_segmentation_options("classical")
@_settings_option
@click.option("--overwrite", "--force", "overwrite", is_flag=True, help="Replace existing OUT/<stem>/ outputs (--force: the same).")
def segment_cmd(images, out_dir, pixel_size_um, panel, channels, axes, backend, nucleus_diameter_um, diameter_px,
                settings_file, overwrite) -> None:
    """Segment nuclei in the DAPI channel of each IMAGE.

    \b
    Writes OUT/<stem>/labels.tif (uint16, or uint32 above 65535 nuclei; the field's Y,X shape)
    and OUT/<stem>/nuclei_qc.csv (one row per nucleus: size, shape, DAPI, focus, border,
    saturation, scorable, exclusion_reason). Without a pixel size (metadata or --pixel-size)
    the nucleus size is estimated from the image; see docs/segmentation.md.
    """
    from .analyze import write_segmentation
    from .panels import load_panel
    from .segment import segment_nuclei

    seg_kw = _settings_params(settings_file, backend, segment_only=True)  # [detection] does not apply here
    seg_kw.update(_segmentation_params(backend, nucleus_diameter_um, diameter_px))  # a backend that cannot run fails now
    # per-channel files grouped; each position of a multi-position file on its own: OUT/<stem>_s<k>/
    images = _field_sources(images, load_panel(panel), channels)
    targets = _output_targets(images, out_dir)
    if not overwrite:  # refuse before any work is done
        for t in targets:
            if (t / "labels.tif").exists() or (t / "nuclei_qc.csv").exists():
                raise FishcountError(t, "outputs already exist; choose another --out folder or pass --overwrite")
    for img, target in zip(images, targets):
        dapi, pix, sat = _read_dapi_for_segment(img, panel, channels, pixel_size_um, axes)
        if dapi.ndim == 3:  # z-stack kept by the reader: segment the maximum projection
            dapi = dapi.max(axis=0)
        seg = segment_nuclei(dapi, pix, saturation_value=sat, source=str(img), **seg_kw)
        from .analyze import _scale_warnings

        from .io import _pixel_size_notes

        src = "pixel size given" if pixel_size_um else "file metadata"
        warns = (_scale_warnings(seg, pix, src, {}) or _pixel_size_notes(pix, "user" if pixel_size_um else src)) \
            if pix else []
        write_segmentation(seg, target, overwrite=overwrite)  # both files as one set
        scale = (f"{pix} µm/px" if pix else "no pixel size") + f", nucleus {seg.diameter_px:.1f} px " \
            f"({seg.diameter_source})"
        msg = f"; {seg.params['message']}" if seg.params.get("message") else ""
        click.echo(f"{target}: {seg.n_nuclei} nuclei, {seg.n_scorable} scorable ({scale}){msg}")
        for w in warns:
            click.echo(f"  warning: {w}")
