"""Facts from the filesystem of a root: which unit files exist and which enablement links.

Reads directories and symlinks directly: one `systemctl is-enabled` per unit would cost a
process per unit in every transaction. Nothing here follows a symlink out of the root: the
directories are resolved as if the root were `/` (as `systemctl --root` does), unit files are
listed by name and enablement links read with readlink(), never followed; unit settings are
read from regular files inside the root only.
"""

from __future__ import annotations

import errno
import os
import stat

from .facts import LiveFacts, ServiceState
from .records import Record
from .report import printable
from .units import (
    ADMIN_DIRS,
    ENABLEMENT_DIRS,
    SYSTEM,
    USER,
    VENDOR_DIRS,
    UnitKey,
    is_valid_unit_name,
    parse_boolean,
    template_of,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable

    from .host import Root

_set = object.__setattr__


class Snapshot(Record):
    """Unit files and enablement links of one root at one moment."""

    __slots__ = ("units", "links", "problems", "admin_units")
    # unit -> path of its vendor unit file, relative to the root (e.g. usr/lib/systemd/system/x.service)
    units: dict[UnitKey, str]
    # enablement symlink (relative to the root) -> its target, exactly as readlink() gives it
    links: dict[str, str]
    problems: tuple[str, ...]
    # unit -> the admin's own unit file (/etc, /run, /usr/local/lib; relative to the root)
    admin_units: dict[UnitKey, str]

    def __init__(self, units: dict[UnitKey, str] | None = None, links: dict[str, str] | None = None,
                 problems: tuple[str, ...] = (), admin_units: dict[UnitKey, str] | None = None) -> None:
        _set(self, "units", {} if units is None else units)
        _set(self, "links", {} if links is None else links)
        _set(self, "problems", problems)
        _set(self, "admin_units", {} if admin_units is None else admin_units)

    @property
    def present(self) -> set[UnitKey]:
        """Every unit with a file anywhere in the unit search path."""
        return set(self.units) | set(self.admin_units)


SYMLINK_HOPS_MAX = 32  # systemd's CHASE_SYMLINKS_MAX


def resolve_in_root(root: Root, rel: str) -> str:
    """`root/rel` with its symlinks followed as if `root` were `/`: the result never leaves it.

    Absolute link targets start again at the root, `..` stops at it; parts that do not exist
    are kept as they are. OSError (ELOOP) for a symlink loop.
    """
    in_root = InRoot(root)
    return in_root.path(in_root.resolve(rel)[0])


# InRoot.resolve()'s word on the resolved path when lstat() gave no mode for it
MISSING = -1  # it (or a directory above it) does not exist
UNKNOWN = -2  # not asked (the root itself), or lstat() failed otherwise: ask os.stat()


class InRoot:
    """resolve_in_root() for the callers that run per directory or per link: lstat() asked once
    per path (a snapshot resolves 11 directories that share most of their parts)."""

    __slots__ = ("root", "prefix", "modes")

    def __init__(self, root: Root) -> None:
        top = os.fspath(root)
        self.root = top
        self.prefix = top if top.endswith("/") else top + "/"
        self.modes: dict[str, int] = {}  # path -> what lstat() said: st_mode, MISSING or UNKNOWN

    def path(self, parts: list[str]) -> str:
        """os.path.join(root, *parts)"""
        return self.prefix + "/".join(parts) if parts else self.root

    def lstat_mode(self, path: str) -> int:
        mode = self.modes.get(path)
        if mode is None:
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                mode = MISSING
            except (OSError, ValueError):  # what os.path.islink() takes for "no link" too
                mode = UNKNOWN
            self.modes[path] = mode
        return mode

    def resolve(self, rel: str) -> tuple[list[str], int]:
        """The parts below the root of resolve_in_root(root, rel), and the st_mode lstat() gave
        for that path (no symlink), else MISSING or UNKNOWN."""
        todo = [part for part in rel.split("/") if part][::-1]
        done: list[str] = []
        # how many of the last parts of `done` lstat() found no mode for: nothing below such a
        # part exists, so it cannot be a symlink and is not asked about
        absent = 0
        absent_mode = UNKNOWN
        hops = 0
        while todo:
            part = todo.pop()
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                    absent = max(absent - 1, 0)
                continue
            if absent:
                done.append(part)
                absent += 1
                continue
            here = self.prefix + "/".join((*done, part))
            mode = self.lstat_mode(here)
            if mode < 0:
                done.append(part)
                absent, absent_mode = 1, mode
                continue
            if not stat.S_ISLNK(mode):
                done.append(part)
                continue
            hops += 1
            if hops > SYMLINK_HOPS_MAX:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), os.path.join(self.root, rel))
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            todo.extend(part for part in reversed(target.split("/")) if part)
        if absent:
            return done, absent_mode
        return done, self.modes.get(self.path(done), UNKNOWN) if done else UNKNOWN


def _directory(in_root: InRoot, rel: str, what: str, items: str, problems: list[str]) -> str | None:
    """Where the directory `rel` of the root really is, or None: absent (a fresh root has no
    unit directories: nothing to say) or unusable (one problem line)."""
    try:
        parts, mode = in_root.resolve(rel)
        if mode == MISSING:
            return None
        path = in_root.path(parts)
        if mode == UNKNOWN:
            mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        problems.append(f"{os.path.join(in_root.root, rel)}: cannot read {what} directory: {exc.strerror or exc}")
        return None
    if not stat.S_ISDIR(mode):
        problems.append(f"{os.path.join(in_root.root, rel)}: not a directory; no {items} in it is read")
        return None
    return path


def _scan_units(in_root: InRoot, problems: list[str]) -> dict[UnitKey, str]:
    root = in_root.root
    units: dict[UnitKey, str] = {}
    for scope, dirs in VENDOR_DIRS.items():
        seen: set[str] = set()
        for rel in dirs:
            path = _directory(in_root, rel, "unit", "unit", problems)
            # A merged-/usr root's /lib is /usr/lib: read once. The resolved path has no symlink
            # below the root, so the same directory has the same path (no realpath() needed).
            if path is None or path in seen:
                continue
            seen.add(path)
            try:
                with os.scandir(path) as it:
                    for entry in it:
                        # symlinks (to /dev/null: masked, elsewhere, loops) count by name only
                        if entry.is_dir(follow_symlinks=False) or not is_valid_unit_name(entry.name):
                            continue
                        units.setdefault(UnitKey(scope, entry.name), f"{rel}/{entry.name}")
            except OSError as exc:
                problems.append(f"{os.path.join(root, rel)}: cannot read unit directory: {exc.strerror or exc}")
    return units


def _scan_admin_units(in_root: InRoot, problems: list[str]) -> dict[UnitKey, str]:
    """Unit files the admin put in the search path: regular files, and symlinks that link a
    unit file in under its own name (`systemctl link`). Masks (-> /dev/null), aliases and the
    enablement directories are links, not units."""
    root = in_root.root
    units: dict[UnitKey, str] = {}
    for scope, dirs in ADMIN_DIRS.items():
        for rel in dirs:
            # /etc/systemd/{system,user} are the enablement directories too: _scan_links reports them
            said = [] if rel in ENABLEMENT_DIRS.values() else problems
            path = _directory(in_root, rel, "unit", "unit", said)
            if path is None:
                continue
            try:
                with os.scandir(path) as it:
                    for entry in it:
                        if not is_valid_unit_name(entry.name) or entry.is_dir(follow_symlinks=False):
                            continue
                        if entry.is_symlink():
                            target = os.readlink(entry.path)
                            if target == "/dev/null" or os.path.basename(target) != entry.name:
                                continue
                        units.setdefault(UnitKey(scope, entry.name), f"{rel}/{entry.name}")
            except OSError as exc:
                said.append(f"{os.path.join(root, rel)}: cannot read unit directory: {exc.strerror or exc}")
    return units


def _scan_links(in_root: InRoot, problems: list[str]) -> dict[str, str]:
    links: dict[str, str] = {}
    for rel in ENABLEMENT_DIRS.values():
        top = _directory(in_root, rel, "enablement", "enablement link", problems)
        if top is None:
            continue
        # scandir, building each relative path as we descend (os.walk + os.path.relpath per link
        # cost half of a snapshot with thousands of links); a symlinked subdirectory is recorded
        # as a link, never entered
        stack = [(top, rel)]
        while stack:
            path, rel_dir = stack.pop()
            try:
                with os.scandir(path) as it:
                    entries = list(it)
            except OSError as exc:
                problems.append(f"{path}: cannot read enablement directory: {exc.strerror}")
                continue
            for entry in entries:
                rel_path = f"{rel_dir}/{entry.name}"
                if entry.is_symlink():
                    try:
                        links[rel_path] = os.readlink(entry.path)
                    except OSError as exc:
                        problems.append(f"{entry.path}: cannot read link: {exc.strerror}")
                elif entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, rel_path))
    return links


def take_snapshot(root: Root) -> Snapshot:
    problems: list[str] = []
    in_root = InRoot(root)
    units = _scan_units(in_root, problems)
    admin = _scan_admin_units(in_root, problems)
    links = _scan_links(in_root, problems)
    return Snapshot(units=units, links=links, problems=tuple(map(printable, problems)), admin_units=admin)


RUNTIME_UNITS_DIR = "run/systemd/units"


def scan_links(root: Root) -> dict[str, str]:
    """Only the enablement links: what a restore compares against, without rescanning units."""
    return _scan_links(InRoot(root), [])


def read_invocations(root: Root) -> dict[str, str]:
    """Invocation ID of every active unit, from the links the manager keeps for journald.

    A unit has such a link exactly while it is active, and a new ID after every (re)start:
    reading them costs no process, unlike `systemctl show`.
    """
    found: dict[str, str] = {}
    try:
        with os.scandir(os.path.join(root, RUNTIME_UNITS_DIR)) as it:
            for entry in it:
                if entry.name.startswith("invocation:") and entry.is_symlink():
                    try:
                        found[entry.name[len("invocation:"):]] = os.readlink(entry.path)
                    except OSError:
                        continue
    except OSError:
        pass
    return found


UNIT_FILE_MAX = 1024 * 1024


def _read_unit_text(root: Root, path: str) -> str:
    """A unit file or drop-in as systemd reads it in the root: symlinks followed inside the
    root only, regular files only (a FIFO would hang us, /dev/zero never ends; /dev/null is
    empty), at most 1 MiB. OSError if it cannot be read."""
    real = resolve_in_root(root, os.path.relpath(path, root))
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return handle.read(UNIT_FILE_MAX).decode("utf-8", "replace")


def read_unit_settings(root: Root, snapshot: Snapshot, unit: UnitKey) -> dict[str, list[str]]:
    """`Key=value` settings of a unit: vendor file (or an /etc override) plus drop-ins.

    An empty assignment resets a list setting, as systemd does.
    """
    paths = []
    etc = os.path.join(root, ENABLEMENT_DIRS[unit.scope], unit.name)
    if os.path.isfile(etc) and not os.path.islink(etc):
        paths.append(etc)
    elif unit in snapshot.units:
        paths.append(os.path.join(root, snapshot.units[unit]))
    vendor_dir = os.path.dirname(os.path.join(root, snapshot.units[unit])) if unit in snapshot.units else None
    runtime = os.path.join(root, "run/systemd", unit.scope)  # runtime drop-ins (an admin's, never our guards)
    for base in filter(None, (vendor_dir, runtime, os.path.join(root, ENABLEMENT_DIRS[unit.scope]))):
        dropins = os.path.join(base, f"{unit.name}.d")
        try:
            names = sorted(os.listdir(dropins))
        except OSError:  # none, or unreadable: no drop-in read from there
            continue
        paths += [os.path.join(dropins, n) for n in names if n.endswith(".conf")]
    settings: dict[str, list[str]] = {}
    for path in paths:
        try:
            text = _read_unit_text(root, path)
        except OSError:
            continue
        for raw in text.splitlines():
            line = raw.strip()
            if "=" not in line or line.startswith(("#", ";", "[")):
                continue
            key, value = (s.strip() for s in line.split("=", 1))
            if value == "":
                settings[key] = []
            else:
                settings.setdefault(key, []).append(value)
    return settings


def read_service_states(root: Root, services: list[str]) -> dict[str, ServiceState]:
    """The manager state the restart decision needs, read without spawning a process.

    Active and invocation ID from /run/systemd/units (the manager keeps an invocation link for
    every active service and renews it on each start); Type= and RefuseManualStop= from the unit
    file and its drop-ins. Saves the `systemctl show` round trip in every transaction.
    """
    snap = Snapshot(units={UnitKey(SYSTEM, s): p for s in services
                           for p in [_vendor_path(root, s)] if p})
    invocations = read_invocations(root)
    states = {}
    for service in services:
        key = UnitKey(SYSTEM, service)
        settings = read_unit_settings(root, snap, key) if key in snap.units else {}
        states[service] = ServiceState(
            name=service,
            load_state="loaded" if key in snap.units else "not-found",
            active_state="active" if service in invocations else "inactive",
            type=(settings.get("Type") or ["simple"])[-1],
            refuse_manual_stop=parse_boolean((settings.get("RefuseManualStop") or ["no"])[-1]) is True,
            invocation_id=invocations.get(service, ""),
        )
    return states


def read_live_facts(root: Root, snapshot: Snapshot, managed: Iterable[UnitKey], active_before: dict[str, str],
                    guarded: tuple[str, ...] | None) -> LiveFacts:
    """The live facts of the managed system units of `snapshot`: the services' states now and,
    while the guards are still to choose (`guarded` None), which service each socket, path and
    timer starts."""
    units = [u for u in managed if u.scope == SYSTEM]
    services = sorted(u.name for u in units if u.name.endswith(".service"))
    triggers = read_triggers(root, snapshot, units) if guarded is None else {}
    return LiveFacts(active_before, read_service_states(root, services), triggers, guarded)


def read_triggers(root: Root, snapshot: Snapshot, units: Iterable[UnitKey]) -> dict[str, str]:
    """socket/path/timer -> the service it starts (`Service=` / `Unit=`, else the same name
    with .service), for the system units given: the partners a guard must not split."""
    found = {}
    for key in units:
        stem, _, kind = key.name.rpartition(".")
        if key.scope != SYSTEM or kind not in ("socket", "path", "timer") or key not in snapshot.units:
            continue
        settings = read_unit_settings(root, snapshot, key)
        named = settings.get("Service" if kind == "socket" else "Unit") or [f"{stem}.service"]
        if is_valid_unit_name(named[-1]):
            found[key.name] = named[-1]
    return found


def _vendor_path(root: Root, name: str) -> str | None:
    """The file systemd loads for a system unit: the admin's, else the vendor's."""
    for rel in (*ADMIN_DIRS[SYSTEM], *VENDOR_DIRS[SYSTEM]):
        if os.path.isfile(os.path.join(root, rel, name)):
            return f"{rel}/{name}"
    return None


def link_scope(link: str) -> str | None:
    """The scope whose enablement directory `link` (relative to the root) is below, or None."""
    for scope, rel in ENABLEMENT_DIRS.items():
        if link.startswith(rel + "/"):
            return scope
    return None


def plain_link_scope(link: str, target: str | None = None) -> str | None:
    """link_scope() of a link as take_snapshot() records it: a plain relative path below an
    enablement directory (no empty, `.` or `..` part), no NUL in it or in its target. None for
    anything else: what a forged journal or a broken plan could name."""
    if "\0" in link or (target is not None and "\0" in target):
        return None
    if any(part in ("", ".", "..") for part in link.split("/")):
        return None
    return link_scope(link)


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


__all__ = ["SYSTEM", "USER", "Snapshot", "link_units", "links_of", "read_invocations", "take_snapshot"]
