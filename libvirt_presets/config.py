"""Configuration: /etc/dnf/plugins/libvirt-units.conf.

We parse the INI text ourselves (instead of configparser) so every complaint can name the file
and the line. A bad line is reported and ignored: the default stays in force, the transaction
goes on. Every problem is one printable line, "FILE:LINE: KEY: what is wrong".

A key given twice in one section of one file with two different values is a contradiction: it
is reported (naming the earlier line) and the later line wins, as it would from a drop-in read
after the file.
"""

from __future__ import annotations

import fnmatch
import os

from . import gate
from .records import Record
from .report import printable as _printable
from .units import DEFAULT_UNIT_GLOBS, FALSE_WORDS, TRUE_WORDS, Scope, is_glob_valid, is_valid_unit_name
from .words import Policy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from os import PathLike
    from typing import Iterable

_set = object.__setattr__

CONFIG_PATH = gate.CONFIG_FILE


def config_paths(main: str | PathLike[str] = CONFIG_PATH) -> list[str]:
    """The configuration: the main file, then the drop-ins beside it in name order."""
    return gate.config_files(os.fspath(main))

# the policies by their names here (words.Policy says what each is)
RESTART = Policy.RESTART
RELOAD = Policy.RELOAD
NEVER = Policy.NEVER
POLICIES = tuple(Policy)

DEFAULT_POLICIES = {
    "virtlogd.service": RELOAD,
    "virtlockd.service": RELOAD,
    "libvirt-guests.service": NEVER,
}

DEFAULT_TRIGGERS = gate.DEFAULT_TRIGGERS


def is_file_trigger(key: str) -> bool:
    """A [triggers] key that starts with `/` is a glob over files; any other, over package names."""
    return key.startswith("/")


_BOOLS = {**dict.fromkeys(FALSE_WORDS, False), **dict.fromkeys(TRUE_WORDS, True)}  # units.parse_boolean's
_MAIN_SWITCHES = ("enabled", "presets", "keep", "restarts", "guard")
_MAIN_GLOBS = ("units", "extra_units")
_SECTIONS = ("main", "policy", "triggers")

_DEFAULT_SCOPE = Scope()


class Config(Record):
    __slots__ = ("enabled", "scope", "presets", "keep", "restarts", "guard", "policies", "triggers", "problems")
    enabled: bool
    scope: Scope
    presets: bool  # new units get `systemctl preset`
    # units that existed before keep their enablement; None: not configured, `presets` decides
    keep: bool | None
    restarts: bool
    guard: bool
    # unit name or glob -> policy; exact names win, then globs in file order
    policies: dict[str, Policy]
    # package-name glob, or absolute file glob, -> services to restart when it changes
    triggers: dict[str, tuple[str, ...]]
    problems: tuple[str, ...]

    def __init__(self, enabled: bool = True, scope: Scope = _DEFAULT_SCOPE, presets: bool = True,
                 keep: bool | None = None, restarts: bool = True, guard: bool = True,
                 policies: dict[str, Policy] | None = None, triggers: dict[str, tuple[str, ...]] | None = None,
                 problems: tuple[str, ...] = ()) -> None:
        _set(self, "enabled", enabled)
        _set(self, "scope", scope)
        _set(self, "presets", presets)
        _set(self, "keep", keep)
        _set(self, "restarts", restarts)
        _set(self, "guard", guard)
        _set(self, "policies", dict(DEFAULT_POLICIES) if policies is None else policies)
        _set(self, "triggers", dict(DEFAULT_TRIGGERS) if triggers is None else triggers)
        _set(self, "problems", problems)

    @property
    def keeps(self) -> bool:
        """Whether units that existed before keep their enablement: `keep`, or when it is not
        given, `presets` (which switched both before `keep` existed)."""
        return self.presets if self.keep is None else self.keep

    def policy(self, unit: str) -> Policy:
        if unit in self.policies:
            return self.policies[unit]
        for pattern, policy in self.policies.items():
            if fnmatch.fnmatchcase(unit, pattern):
                return policy
        return RESTART


def _split(value: str) -> list[str]:
    return value.replace(",", " ").split()


def _lines(text: str) -> list[str]:
    """Lines as an editor numbers them (\n, \r\n or \r ends a line; nothing else does)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _undecodable(line: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in line)  # surrogateescape'd bytes


class _Parse:
    """One file's settings on their way on top of a base Config: what each section gave, the
    problems, and the line in force of each key (to catch contradictions)."""

    def __init__(self, path: str, base: Config) -> None:
        self.path = path
        self.problems = list(base.problems)
        self.policies = dict(base.policies)
        self.triggers = dict(base.triggers)
        self.main: dict[str, object] = {}
        self.section: str | None = None
        # (section, key) -> (line, value) of the line in force
        self.given: dict[tuple[str, str], tuple[int, object]] = {}

    def bad(self, lineno: int, what: str) -> None:
        self.problems.append(_printable(f"{self.path}:{lineno}: {what}"))

    def accept(self, lineno: int, key: str, value: object, shown: str) -> None:
        earlier = self.given.get((str(self.section), key))
        if earlier is not None and earlier[1] != value:
            self.bad(lineno, f"{key}: {shown} contradicts line {earlier[0]} of this file; the later line wins")
        self.given[(str(self.section), key)] = (lineno, value)


def _section_header(p: _Parse, lineno: int, line: str) -> None:
    if not line.endswith("]"):
        p.bad(lineno, f"malformed section header {line!r} (its settings are ignored)")
        p.section = ""  # ignored up to the next header, without one complaint per line
        return
    p.section = line[1:-1].strip()
    if p.section not in _SECTIONS:
        p.bad(lineno, f"unknown section [{p.section}] (its settings are ignored)")


def _main_setting(p: _Parse, lineno: int, key: str, value: str) -> None:
    if key in _MAIN_SWITCHES:
        if value.lower() not in _BOOLS:
            p.bad(lineno, f"{key}: expected yes/no, got {value!r} (default kept)")
        else:
            p.accept(lineno, key, _BOOLS[value.lower()], repr(value))
            p.main[key] = _BOOLS[value.lower()]
    elif key in _MAIN_GLOBS:
        globs = _split(value)
        wrong = [g for g in globs if not is_glob_valid(g)]
        if wrong:
            p.bad(lineno, f"{key}: invalid unit glob {wrong[0]!r} (line ignored)")
        else:
            p.accept(lineno, key, tuple(globs), repr(value))
            p.main[key] = tuple(globs)
    else:
        p.bad(lineno, f"{key!r}: unknown key in [main] (ignored)")


def _policy_setting(p: _Parse, lineno: int, key: str, value: str) -> None:
    if not is_glob_valid(key):
        p.bad(lineno, f"{key!r}: invalid unit name or glob (ignored)")
    elif value and value not in POLICIES:
        p.bad(lineno, f"{key}: policy must be one of {', '.join(POLICIES)}, got {value!r}")
    else:
        p.accept(lineno, key, value, f"policy {value!r}" if value else "empty policy")
        if value:
            p.policies[key] = Policy(value)
        else:
            p.policies.pop(key, None)


def _trigger_setting(p: _Parse, lineno: int, key: str, value: str) -> None:
    services = _split(value)
    wrong = [s for s in services if not is_valid_unit_name(s)]
    if not key or (not is_file_trigger(key) and " " in key):
        p.bad(lineno, f"{key!r}: invalid trigger pattern (ignored)")
    elif wrong:
        p.bad(lineno, f"{key}: invalid unit name {wrong[0]!r} (trigger ignored)")
    else:
        p.accept(lineno, key, tuple(services), repr(value))
        if services:
            p.triggers[key] = tuple(services)
        else:
            p.triggers.pop(key, None)


_SETTINGS = {"main": _main_setting, "policy": _policy_setting, "triggers": _trigger_setting}


def _line(p: _Parse, lineno: int, raw: str) -> None:
    """One line of the file: a comment, a section header or a setting of the current section."""
    line = raw.strip()
    if not line or line[0] in "#;":
        return
    if _undecodable(line):
        p.bad(lineno, "not valid UTF-8 (line ignored)")
    elif line.startswith("["):
        _section_header(p, lineno, line)
    elif "=" not in line:
        p.bad(lineno, f"expected 'key = value', got {line!r}")
    elif p.section is None:
        key = line.split("=", 1)[0].strip()
        p.bad(lineno, f"{key!r}: setting outside of any section (ignored)")
    elif p.section in _SETTINGS:
        key, value = (s.strip() for s in line.split("=", 1))
        _SETTINGS[p.section](p, lineno, key, value)


def _merged(p: _Parse, cfg: Config) -> Config:
    """`cfg` with the file's settings on top."""
    main = p.main
    units: tuple[str, ...] = main.get("units", cfg.scope.globs)  # type: ignore[assignment]
    extra: tuple[str, ...] = main.get("extra_units", ())  # type: ignore[assignment]
    globs = tuple(units) + tuple(extra)
    keep = main.get("keep", cfg.keep)
    return cfg.replace(
        enabled=bool(main.get("enabled", cfg.enabled)),
        presets=bool(main.get("presets", cfg.presets)),
        keep=None if keep is None else bool(keep),
        restarts=bool(main.get("restarts", cfg.restarts)),
        guard=bool(main.get("guard", cfg.guard)),
        scope=Scope(globs or DEFAULT_UNIT_GLOBS),
        policies=p.policies,
        triggers=p.triggers,
        problems=tuple(p.problems),
    )


def parse_config(text: str, path: str, base: Config | None = None) -> Config:
    """Apply one file's settings on top of `base`; problems are collected, never raised."""
    cfg = base or Config()
    p = _Parse(path, cfg)
    for lineno, raw in enumerate(_lines(text), 1):
        _line(p, lineno, raw)
    return _merged(p, cfg)


def load_config(paths: Iterable[str | PathLike[str]]) -> Config:
    """Read the main file then its drop-ins, later files overriding earlier ones."""
    cfg = Config()
    for path in paths:
        try:
            text = gate.read_text(os.fspath(path))
        except OSError as exc:
            why = exc.strerror or str(exc)
            cfg = cfg.replace(problems=(*cfg.problems, _printable(f"{path}: unreadable ({why}); ignored")))
            continue
        if text is not None:
            cfg = parse_config(text, str(path), cfg)
    return cfg
