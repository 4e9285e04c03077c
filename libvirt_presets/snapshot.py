"""Facts from the filesystem of a root: which unit files exist and which enablement links.

Reads directories and symlinks directly: one `systemctl is-enabled` per unit would cost a
process per unit in every transaction. Nothing here follows a symlink out of the root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .units import ENABLEMENT_DIRS, SYSTEM, USER, VENDOR_DIRS, UnitKey, is_valid_unit_name, template_of


@dataclass(frozen=True)
class Snapshot:
    """Unit files and enablement links of one root at one moment."""

    # unit -> path of its vendor unit file, relative to the root (e.g. usr/lib/systemd/system/x.service)
    units: dict[UnitKey, str] = field(default_factory=dict)
    # enablement symlink (relative to the root) -> its target, exactly as readlink() gives it
    links: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def _scan_units(root: Path, problems: list[str]) -> dict[UnitKey, str]:
    units: dict[UnitKey, str] = {}
    for scope, dirs in VENDOR_DIRS.items():
        seen: set[str] = set()
        for rel in dirs:
            path = root / rel
            try:
                real = os.path.realpath(path)
                if real in seen or not path.is_dir():
                    continue
                seen.add(real)
                with os.scandir(path) as it:
                    for entry in it:
                        if entry.is_dir(follow_symlinks=False) or not is_valid_unit_name(entry.name):
                            continue
                        units.setdefault(UnitKey(scope, entry.name), f"{rel}/{entry.name}")
            except OSError as exc:
                problems.append(f"{path}: cannot read unit directory: {exc.strerror}")
    return units


def _scan_links(root: Path, problems: list[str]) -> dict[str, str]:
    links: dict[str, str] = {}
    for rel in ENABLEMENT_DIRS.values():
        top = root / rel
        if not top.is_dir() or top.is_symlink():
            continue

        def onerror(exc: OSError) -> None:
            problems.append(f"{exc.filename}: cannot read enablement directory: {exc.strerror}")

        for dirpath, dirnames, filenames in os.walk(top, onerror=onerror):
            for name in filenames + dirnames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    try:
                        links[os.path.relpath(path, root)] = os.readlink(path)
                    except OSError as exc:
                        problems.append(f"{path}: cannot read link: {exc.strerror}")
    return links


def take_snapshot(root: Path) -> Snapshot:
    problems: list[str] = []
    units = _scan_units(root, problems)
    links = _scan_links(root, problems)
    return Snapshot(units=units, links=links, problems=tuple(problems))


RUNTIME_UNITS_DIR = "run/systemd/units"


def read_invocations(root: Path) -> dict[str, str]:
    """Invocation ID of every active unit, from the links the manager keeps for journald.

    A unit has such a link exactly while it is active, and a new ID after every (re)start:
    reading them costs no process, unlike `systemctl show`.
    """
    found: dict[str, str] = {}
    try:
        with os.scandir(root / RUNTIME_UNITS_DIR) as it:
            for entry in it:
                if entry.name.startswith("invocation:") and entry.is_symlink():
                    try:
                        found[entry.name[len("invocation:"):]] = os.readlink(entry.path)
                    except OSError:
                        continue
    except OSError:
        pass
    return found


def link_scope(link: str) -> str | None:
    for scope, rel in ENABLEMENT_DIRS.items():
        if link.startswith(rel + "/"):
            return scope
    return None


def link_units(link: str, target: str) -> set[UnitKey]:
    """The units a link speaks for: its own name (enable, alias, mask) and its target's."""
    scope = link_scope(link)
    if scope is None:
        return set()
    names = {os.path.basename(link), os.path.basename(target)}
    names |= {t for t in map(template_of, list(names)) if t}
    return {UnitKey(scope, n) for n in names if is_valid_unit_name(n)}


def links_of(links: dict[str, str], units: set[UnitKey]) -> dict[str, str]:
    """The part of `links` that concerns any of `units`."""
    return {link: target for link, target in links.items() if link_units(link, target) & units}


__all__ = ["Snapshot", "take_snapshot", "read_invocations", "link_units", "links_of", "SYSTEM", "USER"]
