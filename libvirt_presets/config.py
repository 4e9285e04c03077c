"""Configuration: /etc/dnf/plugins/libvirt-units.conf.

We parse the INI text ourselves (instead of configparser) so every complaint can name the file
and the line. A bad line is reported and ignored: the default stays in force, the transaction
goes on.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

from .units import DEFAULT_UNIT_GLOBS, Scope, is_glob_valid, is_valid_unit_name

CONFIG_PATH = Path("/etc/dnf/plugins/libvirt-units.conf")

RESTART = "restart"
RELOAD = "reload"
NEVER = "never"
POLICIES = (RESTART, RELOAD, NEVER)

DEFAULT_POLICIES = {
    "virtlogd.service": RELOAD,
    "virtlockd.service": RELOAD,
    "libvirt-guests.service": NEVER,
}
DEFAULT_TRIGGERS = {
    "libvirt-daemon-config-network": ("libvirtd.service", "virtnetworkd.service"),
    "libvirt-daemon-config-nwfilter": ("libvirtd.service", "virtnwfilterd.service"),
}

_BOOLS = {"1": True, "yes": True, "true": True, "on": True,
          "0": False, "no": False, "false": False, "off": False}
_MAIN_KEYS = ("enabled", "units", "extra_units", "presets", "restarts", "guard")


@dataclass(frozen=True)
class Config:
    enabled: bool = True
    scope: Scope = Scope()
    presets: bool = True
    restarts: bool = True
    guard: bool = True
    # unit name or glob -> policy; exact names win, then globs in file order
    policies: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_POLICIES))
    # package-name glob, or absolute file glob, -> services to restart when it changes
    triggers: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_TRIGGERS))
    problems: tuple[str, ...] = ()

    def policy(self, unit: str) -> str:
        if unit in self.policies:
            return self.policies[unit]
        for pattern, policy in self.policies.items():
            if fnmatch.fnmatchcase(unit, pattern):
                return policy
        return RESTART


def _split(value: str) -> list[str]:
    return value.replace(",", " ").split()


def parse_config(text: str, path: str, base: Config | None = None) -> Config:
    """Apply one file's settings on top of `base`; problems are collected, never raised."""
    cfg = base or Config()
    problems = list(cfg.problems)
    policies = dict(cfg.policies)
    triggers = dict(cfg.triggers)
    main: dict[str, object] = {}
    section = None

    def bad(lineno: int, what: str) -> None:
        problems.append(f"{path}:{lineno}: {what}")

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                bad(lineno, f"malformed section header {line!r}")
                section = None
                continue
            section = line[1:-1].strip()
            if section not in ("main", "policy", "triggers"):
                bad(lineno, f"unknown section [{section}] (ignored)")
            continue
        if "=" not in line:
            bad(lineno, f"expected 'key = value', got {line!r}")
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if section == "main":
            if key not in _MAIN_KEYS:
                bad(lineno, f"unknown key {key!r} in [main] (ignored)")
            elif key in ("enabled", "presets", "restarts", "guard"):
                if value.lower() not in _BOOLS:
                    bad(lineno, f"{key}: expected yes/no, got {value!r} (default kept)")
                else:
                    main[key] = _BOOLS[value.lower()]
            else:
                globs = _split(value)
                wrong = [g for g in globs if not is_glob_valid(g)]
                if wrong:
                    bad(lineno, f"{key}: invalid unit glob {wrong[0]!r} (line ignored)")
                else:
                    main[key] = tuple(globs)
        elif section == "policy":
            if not is_glob_valid(key):
                bad(lineno, f"invalid unit name or glob {key!r} (ignored)")
            elif value == "":
                policies.pop(key, None)
            elif value not in POLICIES:
                bad(lineno, f"{key}: policy must be one of {', '.join(POLICIES)}, got {value!r}")
            else:
                policies[key] = value
        elif section == "triggers":
            services = _split(value)
            wrong = [s for s in services if not is_valid_unit_name(s)]
            if not key or (not key.startswith("/") and " " in key):
                bad(lineno, f"invalid trigger pattern {key!r} (ignored)")
            elif wrong:
                bad(lineno, f"{key}: invalid unit name {wrong[0]!r} (trigger ignored)")
            elif not services:
                triggers.pop(key, None)
            else:
                triggers[key] = tuple(services)
        elif section is None:
            bad(lineno, "setting outside of any section (ignored)")

    globs = tuple(main.get("units", cfg.scope.globs)) + tuple(main.get("extra_units", ()))  # type: ignore[arg-type]
    return replace(
        cfg,
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
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            cfg = replace(cfg, problems=cfg.problems + (f"{path}: unreadable: {exc}",))
            continue
        cfg = parse_config(text, str(path), cfg)
    return cfg
