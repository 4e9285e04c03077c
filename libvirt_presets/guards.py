"""Runtime guards: no package scriptlet may restart a managed service while rpm runs.

Classic `%systemd_postun_with_restart` scriptlets call `systemctl try-restart` from each
package's %postun, in the middle of the transaction: libvirtd comes back up while its driver
packages are still old, once per subpackage, and virtlogd is restarted although it must only be
reloaded. A runtime drop-in with `RefuseManualStop=yes` makes the manager refuse those
restarts (systemd 252: exit 4, "Operation refused") while reloads still work; after rpm the
guards go and our batch restarts each service once. Guards live in /run, so a reboot clears
them even if everything else fails; the journal lists them so resume removes them too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

RUNTIME_DIR = "run/systemd/system"
GUARD_FILE = "50-libvirt-units-guard.conf"
GUARD_TEXT = """\
# Written by libvirt-units while an rpm transaction runs; removed when it ends.
# Refuses restarts from package scriptlets; the plugin restarts the service once afterwards.
[Unit]
RefuseManualStop=yes
"""


def guard_path(root: Path, unit: str) -> Path:
    return root / RUNTIME_DIR / f"{unit}.d" / GUARD_FILE


def place(root: Path, units: Iterable[str]) -> list[str]:
    placed = []
    for unit in units:
        path = guard_path(root, unit)
        if any(p.is_symlink() for p in (path, path.parent, path.parent.parent)):
            raise OSError(f"{path}: a symlink on the way; refusing to write a guard through it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{GUARD_FILE}.tmp")
        tmp.write_text(GUARD_TEXT)
        tmp.replace(path)
        placed.append(unit)
    return placed


def remove(root: Path, units: Iterable[str]) -> list[str]:
    removed = []
    for unit in units:
        path = guard_path(root, unit)
        try:
            path.unlink()
            removed.append(unit)
        except FileNotFoundError:
            continue
        try:
            path.parent.rmdir()  # only when empty: an admin's own runtime drop-ins stay
        except OSError:
            pass
    return removed
