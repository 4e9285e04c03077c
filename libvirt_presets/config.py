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
from pathlib import Path

from . import gate
from .records import Record
from .report import printable as _printable
from .units import DEFAULT_UNIT_GLOBS, FALSE_WORDS, TRUE_WORDS, Scope, is_glob_valid, is_valid_unit_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable

_set = object.__setattr__

CONFIG_PATH = Path(gate.CONFIG_FILE)


def config_paths(main: Path = CONFIG_PATH) -> list[Path]:
    """The configuration: the main file, then the drop-ins beside it in name order."""
    return [Path(p) for p in gate.config_files(str(main))]

RESTART = "restart"
RELOAD = "reload"
NEVER = "never"
POLICIES = (RESTART, RELOAD, NEVER)

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
_MAIN_KEYS = ("enabled", "units", "extra_units", "presets", "restarts", "guard")
_SECTIONS = ("main", "policy", "triggers")

_DEFAULT_SCOPE = Scope()


class Config(Record):
    __slots__ = ("enabled", "scope", "presets", "restarts", "guard", "policies", "triggers", "problems")
    enabled: bool
    scope: Scope
    presets: bool
    restarts: bool
    guard: bool
    # unit name or glob -> policy; exact names win, then globs in file order
    policies: dict[str, str]
    # package-name glob, or absolute file glob, -> services to restart when it changes
    triggers: dict[str, tuple[str, ...]]
    problems: tuple[str, ...]

    def __init__(self, enabled: bool = True, scope: Scope = _DEFAULT_SCOPE, presets: bool = True, restarts: bool = True,
                 guard: bool = True, policies: dict[str, str] | None = None,
                 triggers: dict[str, tuple[str, ...]] | None = None, problems: tuple[str, ...] = ()) -> None:
        _set(self, "enabled", enabled)
        _set(self, "scope", scope)
        _set(self, "presets", presets)
        _set(self, "restarts", restarts)
        _set(self, "guard", guard)
        _set(self, "policies", dict(DEFAULT_POLICIES) if policies is None else policies)
        _set(self, "triggers", dict(DEFAULT_TRIGGERS) if triggers is None else triggers)
        _set(self, "problems", problems)

    def policy(self, unit: str) -> str:
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


def parse_config(text: str, path: str, base: Config | None = None) -> Config:
    """Apply one file's settings on top of `base`; problems are collected, never raised."""
    cfg = base or Config()
    problems = list(cfg.problems)
    policies = dict(cfg.policies)
    triggers = dict(cfg.triggers)
    main: dict[str, object] = {}
    section: str | None = None
    # (section, key) -> (line, value) of the line in force, to catch contradictions
    given: dict[tuple[str, str], tuple[int, object]] = {}

    def bad(lineno: int, what: str) -> None:
        problems.append(_printable(f"{path}:{lineno}: {what}"))

    def accept(lineno: int, key: str, value: object, shown: str) -> None:
        earlier = given.get((str(section), key))
        if earlier is not None and earlier[1] != value:
            bad(lineno, f"{key}: {shown} contradicts line {earlier[0]} of this file; "
                        f"the later line wins")
        given[(str(section), key)] = (lineno, value)

    for lineno, raw in enumerate(_lines(text), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if _undecodable(line):
            bad(lineno, "not valid UTF-8 (line ignored)")
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                bad(lineno, f"malformed section header {line!r} (its settings are ignored)")
                section = ""  # ignored up to the next header, without one complaint per line
                continue
            section = line[1:-1].strip()
            if section not in _SECTIONS:
                bad(lineno, f"unknown section [{section}] (its settings are ignored)")
            continue
        if "=" not in line:
            bad(lineno, f"expected 'key = value', got {line!r}")
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if section == "main":
            if key not in _MAIN_KEYS:
                bad(lineno, f"{key!r}: unknown key in [main] (ignored)")
            elif key in ("enabled", "presets", "restarts", "guard"):
                if value.lower() not in _BOOLS:
                    bad(lineno, f"{key}: expected yes/no, got {value!r} (default kept)")
                else:
                    accept(lineno, key, _BOOLS[value.lower()], repr(value))
                    main[key] = _BOOLS[value.lower()]
            else:
                globs = _split(value)
                wrong = [g for g in globs if not is_glob_valid(g)]
                if wrong:
                    bad(lineno, f"{key}: invalid unit glob {wrong[0]!r} (line ignored)")
                else:
                    accept(lineno, key, tuple(globs), repr(value))
                    main[key] = tuple(globs)
        elif section == "policy":
            if not is_glob_valid(key):
                bad(lineno, f"{key!r}: invalid unit name or glob (ignored)")
            elif value and value not in POLICIES:
                bad(lineno, f"{key}: policy must be one of {', '.join(POLICIES)}, got {value!r}")
            else:
                accept(lineno, key, value, f"policy {value!r}" if value else "empty policy")
                if value:
                    policies[key] = value
                else:
                    policies.pop(key, None)
        elif section == "triggers":
            services = _split(value)
            wrong = [s for s in services if not is_valid_unit_name(s)]
            if not key or (not is_file_trigger(key) and " " in key):
                bad(lineno, f"{key!r}: invalid trigger pattern (ignored)")
            elif wrong:
                bad(lineno, f"{key}: invalid unit name {wrong[0]!r} (trigger ignored)")
            else:
                accept(lineno, key, tuple(services), repr(value))
                if services:
                    triggers[key] = tuple(services)
                else:
                    triggers.pop(key, None)
        elif section is None:
            bad(lineno, f"{key!r}: setting outside of any section (ignored)")

    globs = tuple(main.get("units", cfg.scope.globs)) + tuple(main.get("extra_units", ()))  # type: ignore[arg-type]
    return cfg.replace(
        enabled=bool(main.get("enabled", cfg.enabled)),
        presets=bool(main.get("presets", cfg.presets)),
        restarts=bool(main.get("restarts", cfg.restarts)),
        guard=bool(main.get("guard", cfg.guard)),
        scope=Scope(globs or DEFAULT_UNIT_GLOBS),
        policies=policies,
        triggers=triggers,
        problems=tuple(problems),
    )


def load_config(paths: Iterable[Path]) -> Config:
    """Read the main file then its drop-ins, later files overriding earlier ones."""
    cfg = Config()
    for path in paths:
        try:
            text = gate.read_text(str(path))
        except OSError as exc:
            why = exc.strerror or str(exc)
            cfg = cfg.replace(problems=cfg.problems + (_printable(f"{path}: unreadable ({why}); ignored"),))
            continue
        if text is not None:
            cfg = parse_config(text, str(path), cfg)
    return cfg
