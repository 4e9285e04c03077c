"""Runtime guards: no package scriptlet may stop or restart a managed unit while rpm runs.

Scriptlets stop, restart and reload units in the middle of the transaction: classic
`%systemd_postun_with_restart` restarts libvirtd from each package's %postun while its driver
packages are still old, libvirt's `%posttrans` stops libvirtd and restarts its sockets, `%preun`
runs `disable --now`, and virtlogd is reloaded from %postun and %posttrans. A runtime drop-in
with `RefuseManualStop=yes` makes the manager refuse every stop and restart (exit 4, "Operation
refused"); services that libvirt-units restarts or reloads afterwards also get a no-op
`ExecReload=`, so their one reload is ours. Which units are guarded together is the planner's
decision (planner.choose_guards). Guards live in /run, so a reboot clears them even if
everything else fails; the journal lists them so resume removes them too.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Collection, Iterable

    from .host import Root

RUNTIME_DIR = "run/systemd/system"
GUARD_FILE = "50-libvirt-units-guard.conf"
GUARD_TEXT = """\
# Written by libvirt-units while an rpm transaction runs; removed when it ends.
# Refuses stops and restarts from package scriptlets; libvirt-units acts once afterwards.
[Unit]
RefuseManualStop=yes
"""
# Services the plan restarts or reloads afterwards: a scriptlet's reload is a no-op meanwhile,
# so that the one reload (or restart) is ours, after every package is in place.
QUIET_RELOAD_TEXT = """\
[Service]
ExecReload=
ExecReload=/bin/true
"""


def guard_path(root: Root, unit: str) -> str:
    return os.path.join(root, RUNTIME_DIR, f"{unit}.d", GUARD_FILE)


def guard_text(unit: str, quiet_reload: bool) -> str:
    return GUARD_TEXT + (QUIET_RELOAD_TEXT if quiet_reload and unit.endswith(".service") else "")


def place(root: Root, units: Iterable[str], quiet_reload: Collection[str] = ()) -> list[str]:
    placed = []
    for unit in units:
        path = guard_path(root, unit)
        directory = os.path.dirname(path)
        if any(os.path.islink(p) for p in (path, directory, os.path.dirname(directory))):
            raise OSError(f"{path}: a symlink on the way; refusing to write a guard through it")
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{GUARD_FILE}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(guard_text(unit, unit in quiet_reload))
        os.replace(tmp, path)
        placed.append(unit)
    return placed


def remove(root: Root, units: Iterable[str]) -> list[str]:
    removed = []
    for unit in units:
        path = guard_path(root, unit)
        try:
            os.unlink(path)
            removed.append(unit)
        except FileNotFoundError:
            continue
        try:
            os.rmdir(os.path.dirname(path))  # only when empty: an admin's own runtime drop-ins stay
        except OSError:
            pass
    return removed
