"""Probe panels as data.

A panel file (TOML) declares the probes of one FISH test, the lab's scoring rules in µm, and
the named calls with the signal patterns that define them. Panels ship in this folder; users
can pass their own file anywhere a panel id is accepted. The format is documented in
``docs/panels.md``.

Example
-------
>>> import fishcount as fc
>>> p = fc.load_panel("del5q")
>>> p.signal_names
('EGR1', 'D5S23')
>>> p.call_for({"EGR1": 1, "D5S23": 2})
'del5q'
>>> p.pattern_string({"EGR1": 1, "D5S23": 2})
'1O2G'
"""
from __future__ import annotations

import hashlib
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Mapping

from .._datafile import check_fields, check_schema_version
from ..errors import InputError, PanelError

__all__ = [
    "Signal",
    "CountRule",
    "CallRule",
    "Panel",
    "load_panel",
    "list_panels",
    "DEFAULT_PANEL",
    "FUSION",
]

#: Id of the panel used when none is given: del(5q) EGR1 / D5S23,D5S721.
DEFAULT_PANEL = "del5q"
#: Pattern key of fused (co-localised target + partner) signals in fusion / break-apart panels.
FUSION = "fusion"

_KINDS = ("deletion", "enumeration", "break-apart", "dual-fusion")
_ROLES = ("target", "control", "partner")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
_COND_RE = re.compile(r"^\s*(?:(>=|<=|>|<|==)?\s*(\d+)|(\d+)\s*-\s*(\d+))\s*$")


@dataclass(frozen=True)
class Signal:
    """One probe signal (one colour / channel) of a panel.

    Attributes
    ----------
    name : str
        Signal name used in tables (``count_<name>``) and channel matching, e.g. ``"EGR1"``.
    locus : str
        Cytogenetic band, e.g. ``"5q31"``.
    probes : tuple of str
        Probe (locus) names for ISCN strings, e.g. ``("D5S23", "D5S721")``.
    fluor : str
        Fluorophore of this vendor's kit, e.g. ``"SpectrumOrange"``; used for channel matching and
        display colour, never to decide which signal a channel is.
    role : str
        ``"target"``, ``"control"`` or ``"partner"`` (fusion partner).
    letter : str
        One-letter code used in pattern strings (``O``, ``G``, ``R``, ``A``...).
    aliases : tuple of str
        Other names a channel may carry for this signal (matched case-insensitively).
    color : str
        Display colour (matplotlib / napari colour name or hex).
    """

    name: str
    locus: str
    probes: tuple[str, ...]
    fluor: str
    role: str
    letter: str
    aliases: tuple[str, ...] = ()
    color: str = ""


@dataclass(frozen=True)
class CountRule:
    """A condition on one count: ``lo <= n <= hi`` (``hi=None`` = no upper bound)."""

    lo: int
    hi: int | None

    def matches(self, n: int) -> bool:
        return n >= self.lo and (self.hi is None or n <= self.hi)

    @classmethod
    def parse(cls, value, where: str, source: str) -> "CountRule":
        """Parse ``2``, ``">=3"``, ``"<=1"``, ``">2"``, ``"1-2"`` into a rule."""
        if isinstance(value, bool):
            raise PanelError(source, f"{where}: expected a count or a condition like '>=3', got {value!r}")
        if isinstance(value, int):
            if value < 0:
                raise PanelError(source, f"{where}: counts cannot be negative ({value})")
            return cls(value, value)
        if isinstance(value, str):
            m = _COND_RE.match(value)
            if m:
                op, num, a, b = m.groups()
                if a is not None:
                    lo, hi = int(a), int(b)
                    if lo > hi:
                        raise PanelError(source, f"{where}: empty range {value!r}")
                    return cls(lo, hi)
                n = int(num)
                if op in (None, "=="):
                    return cls(n, n)
                if op == ">=":
                    return cls(n, None)
                if op == ">":
                    return cls(n + 1, None)
                if op == "<=":
                    return cls(0, n)
                if op == "<":
                    if n == 0:
                        raise PanelError(source, f"{where}: '<0' can never match")
                    return cls(0, n - 1)
        raise PanelError(
            source, f"{where}: expected a count or a condition like 2, '>=3', '<=1', '1-2'; got {value!r}"
        )


@dataclass(frozen=True)
class CallRule:
    """A named call and the pattern (one condition per pattern key) that defines it.

    Attributes
    ----------
    name : str
        Call name, e.g. ``"del5q"``.
    pattern : tuple of (str, CountRule)
        Conditions on the counts; keys are signal names or ``"fusion"``.
    abnormal : bool
        Whether the call is an abnormality (counts toward "abnormal" in ISCN strings).
    description : str
        Human-readable meaning, e.g. ``"EGR1 (5q31) deletion, one copy"``.
    source : str
        Where the interpretation comes from.
    """

    name: str
    pattern: tuple[tuple[str, CountRule], ...]
    abnormal: bool = False
    description: str = ""
    source: str = ""

    def matches(self, counts: Mapping[str, int]) -> bool:
        return all(rule.matches(int(counts.get(key, 0))) for key, rule in self.pattern)


@dataclass(frozen=True)
class Panel:
    """A probe panel: signals, calls, lab rules. Load with :func:`load_panel`.

    Attributes
    ----------
    id, name, description, kind : str
        ``kind`` is one of ``deletion``, ``enumeration``, ``break-apart``, ``dual-fusion``.
    vendor_probes : tuple of str
        Commercial probe kits this panel describes.
    signals : tuple of Signal
        The probe signals, in channel order of the default channel map (after DAPI).
    calls : tuple of CallRule
        Checked in order; the first match wins; otherwise ``default_call``.
    default_call : str
        Call for patterns that match no rule (``"atypical"``).
    normal_call : str
        Name of the normal call.
    tracked_calls : tuple of str
        Calls whose union is the clone followed over time (e.g. ``del5q`` + ``monosomy5``).
    signal_diameter_um : float
        Typical diameter of one signal; sets the spot filter scale.
    split_distance_um : float
        Two same-colour signals at most this far apart (≤) count as one (split-signal rule).
    fusion_distance_um : float or None
        A target and partner signal within this distance form one fused signal (fusion panels).
    max_signals_per_channel : int
        More signals than this in one colour make a nucleus unscorable.
    fusion_pair : tuple of str or None
        The two signal names that fuse (fusion and break-apart panels).
    iscn_chromosome_order : tuple of str
        Signal names in the order they are written in ISCN strings (pter to qter).
    path : str
        File the panel came from.
    sha256 : str
        Hash of the panel file's bytes (recorded in run metadata).
    sources : tuple of str
        Where the patterns and rules come from.
    """

    id: str
    name: str
    description: str
    kind: str
    vendor_probes: tuple[str, ...]
    signals: tuple[Signal, ...]
    calls: tuple[CallRule, ...]
    default_call: str
    normal_call: str
    tracked_calls: tuple[str, ...]
    signal_diameter_um: float
    split_distance_um: float
    fusion_distance_um: float | None
    max_signals_per_channel: int
    fusion_pair: tuple[str, str] | None
    iscn_order: tuple[str, ...]
    path: str = ""
    sha256: str = ""
    sources: tuple[str, ...] = field(default=())

    # -- lookups -------------------------------------------------------------------------
    @property
    def signal_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.signals)

    @property
    def pattern_keys(self) -> tuple[str, ...]:
        """Keys of a nucleus' count vector: the signal names, plus ``fusion`` for fusion panels."""
        return self.signal_names + ((FUSION,) if self.fusion_pair else ())

    @property
    def call_names(self) -> tuple[str, ...]:
        names = [c.name for c in self.calls]
        if self.default_call not in names:
            names.append(self.default_call)
        return tuple(names)

    @property
    def abnormal_calls(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.calls if c.abnormal)

    def signal(self, name: str) -> Signal:
        for s in self.signals:
            if s.name == name:
                return s
        raise KeyError(name)

    def call_rule(self, name: str) -> CallRule | None:
        for c in self.calls:
            if c.name == name:
                return c
        return None

    # -- calls ---------------------------------------------------------------------------
    def _check_counts(self, counts: Mapping[str, int]) -> None:
        keys = self.pattern_keys
        for k, v in counts.items():
            if k not in keys:
                raise InputError(f"panel {self.id}", f"{k!r} is not a signal of the panel (counts of: {', '.join(keys)})")
            try:
                whole = float(v) == int(v) and int(v) >= 0
            except (TypeError, ValueError, OverflowError):
                whole = False
            if isinstance(v, bool) or not whole:
                raise InputError(f"panel {self.id}", f"count of {k} must be a whole number >= 0, got {v!r}")

    def call_for(self, counts: Mapping[str, int]) -> str:
        """The call for one nucleus' counts (first matching rule, else ``default_call``).

        Parameters
        ----------
        counts : mapping of str to int
            Count per pattern key (signal names, and ``fusion`` for fusion panels). Missing keys
            count as 0.

        Raises
        ------
        InputError
            A key that is not a pattern key of the panel (a typo would be ignored), or a count that is not a
            whole number >= 0.
        """
        self._check_counts(counts)
        for c in self.calls:
            if c.matches(counts):
                return c.name
        return self.default_call

    def pattern_string(self, counts: Mapping[str, int]) -> str:
        """Conventional pattern string, e.g. ``1O2G`` or ``1R1G2F`` (fusion shown when > 0); the counts are
        checked as in :meth:`call_for`."""
        self._check_counts(counts)
        parts = [f"{int(counts.get(s.name, 0))}{s.letter}" for s in self.signals]
        if self.fusion_pair:
            nf = int(counts.get(FUSION, 0))
            if nf:
                parts.append(f"{nf}F")
        return "".join(parts)


# -------------------------------------------------------------------------------------------
# loading and validation
# -------------------------------------------------------------------------------------------
def _panel_dir() -> Path:
    return Path(str(resources.files(__package__)))


def list_panels() -> list[str]:
    """Ids of the panels shipped with fishcount."""
    return sorted(p.stem for p in _panel_dir().glob("*.toml"))


def _require(d: Mapping, key: str, typ, source: str, where: str = ""):
    if key not in d:
        raise PanelError(source, f"missing required field '{where}{key}'")
    val = d[key]
    if typ is float and isinstance(val, int) and not isinstance(val, bool):
        val = float(val)
    if not isinstance(val, typ) or isinstance(val, bool) and typ is not bool:
        raise PanelError(source, f"field '{where}{key}' must be {_TYPE_WORDS.get(typ, 'of another type')}, got "
                                 f"{_TYPE_WORDS.get(type(val), type(val).__name__)} {val!r}")
    return val


#: How a type is named in a panel file's error message (TOML words, not Python's).
_TYPE_WORDS = {str: "a string", float: "a number", int: "a whole number", bool: "true or false", list: "a list",
               Mapping: "a table", dict: "a table"}


def _number(d: Mapping, key: str, default: float, source: str, where: str = "") -> float:
    """A finite number field (TOML integer or float; not a string, not true/false), else ``default``."""
    val = d.get(key, default)
    if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
        raise PanelError(source, f"field '{where}{key}' must be a finite number, got {val!r}")
    return float(val)


def _fields(d: Mapping, known: set[str], source: str, where: str) -> None:
    """Unknown fields of a sub-table are errors too (a typo such as ``tracked_call`` must not pass)."""
    unknown = sorted(set(d) - known)
    if unknown:
        raise PanelError(source, f"unknown field(s) {', '.join(repr(where + u) for u in unknown)}; known: "
                                 f"{', '.join(sorted(known))}")


def _check_rule_table(calls: list, signals: list, fusion_pair, max_signals: int, source: str) -> None:
    """Every call must be the first match of some scorable count vector (each colour present, fused signals
    counting for both of their colours, clinical.md §6.1 R1): a rule shadowed by earlier ones, or one that
    needs a colour to be missing, could never be called, and a pattern without conditions would take every
    nucleus."""
    keys = [s.name for s in signals] + ([FUSION] if fusion_pair else [])
    names = [s.name for s in signals]
    reached: set[str] = set()
    for vec in itertools.product(range(max_signals + 2), repeat=len(keys)):
        counts = dict(zip(keys, vec))
        fused = counts.get(FUSION, 0)
        seen = {n: counts[n] + (fused if fusion_pair and n in fusion_pair else 0) for n in names}
        if any(v < 1 or v > max_signals for v in seen.values()):
            continue  # unscorable: missing colour or too many signals
        for c in calls:
            if c.matches(counts):
                reached.add(c.name)
                break
    for i, c in enumerate(calls):
        if c.name not in reached:
            raise PanelError(source, f"calls[{i}] ({c.name}) can never be called: every scorable pattern it covers "
                                     f"is matched by an earlier call, or it needs a colour to be missing (a nucleus "
                                     f"without a signal of each colour is unscorable, clinical.md §6.1 R1)"
                             + (f"; earlier calls: {', '.join(o.name for o in calls[:i])}" if i else ""))


def _str_list(d: Mapping, key: str, source: str, where: str = "") -> tuple[str, ...]:
    val = d.get(key, [])
    if isinstance(val, str):
        val = [val]
    if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
        raise PanelError(source, f"field '{where}{key}' must be a list of strings")
    return tuple(val)


def _positive(val: float, key: str, source: str) -> float:
    if not (val > 0 and math.isfinite(val)):
        raise PanelError(source, f"field '{key}' must be a finite number > 0 µm, got {val}")
    return float(val)


def panel_from_dict(data: Mapping, source: str = "<dict>", raw: bytes | None = None) -> Panel:
    """Build and validate a :class:`Panel` from parsed TOML data.

    Raises
    ------
    PanelError
        With the source and the offending field, for every inconsistency found.
    """
    if not isinstance(data, Mapping):
        raise PanelError(source, "a panel must be a table of fields")
    known = {
        "schema_version", "id", "name", "description", "kind", "vendor_probes", "signals", "calls",
        "rules", "scoring", "sources", "default_call", "normal_call", "iscn_order",
    }
    check_fields(data, known, source, PanelError)
    check_schema_version(data, source, PanelError)
    signal_fields = {"name", "locus", "probes", "fluor", "role", "letter", "aliases", "color"}
    call_fields = {"name", "pattern", "abnormal", "description", "source"}
    pid = _require(data, "id", str, source)
    if not _NAME_RE.match(pid):
        raise PanelError(source, f"id {pid!r} must start with a letter and use letters, digits, '_' or '-'")
    kind = _require(data, "kind", str, source)
    if kind not in _KINDS:
        raise PanelError(source, f"kind {kind!r} is not one of {', '.join(_KINDS)}")

    raw_signals = _require(data, "signals", list, source)
    if not raw_signals:
        raise PanelError(source, "a panel needs at least one signal")
    signals: list[Signal] = []
    for i, s in enumerate(raw_signals):
        where = f"signals[{i}]."
        if not isinstance(s, Mapping):
            raise PanelError(source, f"signals[{i}] must be a table")
        _fields(s, signal_fields, source, where)
        name = _require(s, "name", str, source, where)
        if not _NAME_RE.match(name) or name.lower() in ("dapi", FUSION):
            raise PanelError(source, f"{where}name {name!r} is not a valid signal name")
        role = _require(s, "role", str, source, where)
        if role not in _ROLES:
            raise PanelError(source, f"{where}role {role!r} is not one of {', '.join(_ROLES)}")
        letter = _require(s, "letter", str, source, where)
        if len(letter) != 1 or not letter.isalpha() or letter.upper() == "F" and kind in ("break-apart", "dual-fusion"):
            raise PanelError(source, f"{where}letter {letter!r} must be one letter (not F in fusion panels)")
        probes = _str_list(s, "probes", source, where) or (name,)
        signals.append(
            Signal(
                name=name,
                locus=_require(s, "locus", str, source, where),
                probes=probes,
                fluor=_require(s, "fluor", str, source, where),
                role=role,
                letter=letter,
                aliases=_str_list(s, "aliases", source, where),
                color=str(s.get("color", "")),
            )
        )
    names = [s.name for s in signals]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise PanelError(source, f"duplicate signal name(s): {', '.join(sorted(dupes))}")
    letters = [s.letter for s in signals]
    if len({x.upper() for x in letters}) != len(letters):
        raise PanelError(source, f"signal letters must differ (in any case): {letters}")
    for s_ in signals:  # an alias that is another signal's name, or the counterstain's, would map the wrong channel
        clash = [a for a in s_.aliases if a.casefold() in {o.name.casefold() for o in signals if o is not s_}
                 or a.casefold() in ("dapi", "hoechst")]
        if clash:
            raise PanelError(source, f"signal {s_.name}: alias {clash[0]!r} names another channel")

    rules = data.get("rules", {})
    if not isinstance(rules, Mapping):
        raise PanelError(source, "'rules' must be a table")
    signal_diameter = _positive(_require(rules, "signal_diameter_um", float, source, "rules."), "rules.signal_diameter_um", source)
    split = _positive(_number(rules, "split_distance_um", signal_diameter, source, "rules."), "rules.split_distance_um",
                      source)
    fusion_pair = None
    fusion_distance = None
    if kind in ("break-apart", "dual-fusion"):
        pair = _str_list(rules, "fusion_pair", source, "rules.")
        if len(pair) != 2 or any(p not in names for p in pair) or pair[0] == pair[1]:
            raise PanelError(source, f"rules.fusion_pair must name two different signals of this panel, got {list(pair)}")
        fusion_pair = (pair[0], pair[1])
        fusion_distance = _positive(_require(rules, "fusion_distance_um", float, source, "rules."), "rules.fusion_distance_um", source)
    elif "fusion_distance_um" in rules or "fusion_pair" in rules:
        raise PanelError(source, f"rules.fusion_* only apply to break-apart and dual-fusion panels, not {kind}")
    max_signals = rules.get("max_signals_per_channel", 6)
    if not isinstance(max_signals, int) or isinstance(max_signals, bool) or max_signals < 1:
        raise PanelError(source, f"rules.max_signals_per_channel must be a whole number ≥ 1, got {max_signals!r}")
    unknown_rules = sorted(set(rules) - {"signal_diameter_um", "split_distance_um", "fusion_distance_um", "fusion_pair", "max_signals_per_channel"})
    if unknown_rules:
        raise PanelError(source, f"unknown rules field(s): {', '.join(unknown_rules)}")

    keys = set(names) | ({FUSION} if fusion_pair else set())
    raw_calls = _require(data, "calls", list, source)
    calls: list[CallRule] = []
    for i, c in enumerate(raw_calls):
        where = f"calls[{i}]."
        if not isinstance(c, Mapping):
            raise PanelError(source, f"calls[{i}] must be a table")
        _fields(c, call_fields, source, where)
        cname = _require(c, "name", str, source, where)
        if not _NAME_RE.match(cname):
            raise PanelError(source, f"{where}name {cname!r} is not a valid call name")
        pat = _require(c, "pattern", Mapping, source, where)
        if not pat:
            raise PanelError(source, f"{where}pattern is empty: it would take every nucleus; give the counts")
        if not isinstance(c.get("abnormal", False), bool):
            raise PanelError(source, f"field '{where}abnormal' must be true or false, got {c['abnormal']!r}")
        bad = sorted(set(pat) - keys)
        if bad:
            raise PanelError(source, f"{where}pattern uses unknown key(s) {', '.join(bad)}; known: {', '.join(sorted(keys))}")
        rules_ = tuple((k, CountRule.parse(pat[k], f"{where}pattern.{k}", source)) for k in sorted(pat))
        calls.append(
            CallRule(
                name=cname,
                pattern=rules_,
                abnormal=bool(c.get("abnormal", False)),
                description=str(c.get("description", "")),
                source=str(c.get("source", "")),
            )
        )
    cnames = [c.name for c in calls]
    if len(set(cnames)) != len(cnames):
        raise PanelError(source, f"duplicate call names: {cnames}")
    default_call = data.get("default_call", "atypical")
    if not isinstance(default_call, str) or not _NAME_RE.match(default_call) or default_call in cnames:
        raise PanelError(source, f"default_call {default_call!r} must be a name of its own for patterns no call "
                                 f"matches (e.g. 'atypical'), not one of the calls {cnames}")
    normal_call = data.get("normal_call", "normal")
    if normal_call not in cnames:
        raise PanelError(source, f"normal_call {normal_call!r} is not one of the calls {cnames}")
    scoring = _require(data, "scoring", Mapping, source)
    _fields(scoring, {"tracked_calls"}, source, "scoring.")
    tracked = _str_list(scoring, "tracked_calls", source, "scoring.")
    if not tracked:
        raise PanelError(source, "scoring.tracked_calls must name the call(s) that make up the clone (e.g. "
                                 "[\"del5q\", \"monosomy5\"]); without them every clone is 0 %")
    for t in tracked:
        if t not in cnames:
            raise PanelError(source, f"scoring.tracked_calls names {t!r}, which is not a call of this panel")
    iscn_order = _str_list(data, "iscn_order", source) or tuple(names)
    if sorted(iscn_order) != sorted(names):
        raise PanelError(source, f"iscn_order must list each signal once: {list(iscn_order)} vs {names}")
    _check_rule_table(calls, signals, fusion_pair, int(max_signals), source)

    return Panel(
        id=pid,
        name=str(data.get("name", pid)),
        description=str(data.get("description", "")),
        kind=kind,
        vendor_probes=_str_list(data, "vendor_probes", source),
        signals=tuple(signals),
        calls=tuple(calls),
        default_call=default_call,
        normal_call=normal_call,
        tracked_calls=tracked,
        signal_diameter_um=signal_diameter,
        split_distance_um=split,
        fusion_distance_um=fusion_distance,
        max_signals_per_channel=int(max_signals),
        fusion_pair=fusion_pair,
        iscn_order=tuple(iscn_order),
        path=source,
        sha256=hashlib.sha256(raw).hexdigest() if raw is not None else "",
        sources=_str_list(data, "sources", source),
    )


def load_panel(panel: "str | Path | Panel | None" = None) -> Panel:
    """Load a probe panel by shipped id (``"del5q"``) or from a TOML file path.

    Parameters
    ----------
    panel : str, path, Panel or None
        A shipped panel id (see :func:`list_panels`), a path to a panel TOML file, an already
        loaded :class:`Panel` (returned as is), or None for the default panel (del(5q)).

    Returns
    -------
    Panel

    Raises
    ------
    PanelError
        If the id is unknown, the file cannot be read or parsed, or the panel is inconsistent.
    """
    if isinstance(panel, Panel):
        return panel
    if panel is None:
        panel = DEFAULT_PANEL
    if not isinstance(panel, (str, Path)) and not hasattr(panel, "__fspath__"):
        raise PanelError(repr(panel), f"a panel is a shipped id (e.g. 'del5q'), a .toml file or a Panel, not a "
                                      f"{type(panel).__name__}")
    p = Path(panel)
    # a file named like a panel is that file; a folder of that name (e.g. `simulate --out cep8`) is not a panel
    if p.suffix.lower() == ".toml" or p.is_file() or "/" in str(panel) or "\\" in str(panel):
        path = p
        if not path.exists():
            raise PanelError(path, "panel file not found")
    else:
        path = _panel_dir() / f"{panel}.toml"
        if not path.exists():  # DEL5Q is del5q: a shipped id in another case
            same = [p for p in list_panels() if p.lower() == str(panel).lower()]
            if len(same) != 1:
                raise PanelError(
                    str(panel), f"unknown panel; shipped panels: {', '.join(list_panels())} (or give a .toml file)"
                )
            path = _panel_dir() / f"{same[0]}.toml"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PanelError(path, f"cannot read panel file ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PanelError(path, f"not valid TOML ({exc})") from None
    return panel_from_dict(data, str(path), raw)
