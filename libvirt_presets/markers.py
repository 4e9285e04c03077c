"""Restart markers from rpm scriptlets: a reload-policy service is reloaded, never restarted.

Fedora's systemd macros (systemd >= 248) no longer restart services from `%postun`:
`%systemd_postun_with_restart UNIT` runs `systemd-update-helper mark-restart-system-units UNIT`,
which only marks the unit (`systemctl set-property UNIT Markers=+needs-restart`). systemd's own
package restarts every marked unit later, from its transaction file triggers, with
`systemctl reload-or-restart --marked` (`%transfiletriggerin -P 900900` and
`%transfiletriggerpostun -P 10000` in systemd.spec). That restarts virtlogd and virtlockd,
which must only be reloaded, and neither our guard nor a `needs-reload` mark prevents it on
systemd 248-254 (RHEL 9 has 252): the manager's EnqueueMarkedJobs skipped the
RefuseManualStop= check and queued a restart for `needs-reload` units too (fixed in v255 by
systemd commit 8ea8e23f40 "manager: fix reloading in reload-or-restart --marked").

So libvirt-units' own transaction file triggers, with higher priorities than systemd's (rpm runs
the triggers of one kind in descending priority), run this module first. For every managed
service whose policy is not `restart` it removes the marks, so `--marked` leaves the service
alone, and a reload-policy service is then reloaded exactly once:

- by the dnf plugin after the transaction, when the plugin guards it (our drop-in is in
  /run/systemd/system: the plugin is running this transaction and will reload it);
- otherwise (plain rpm, PackageKit, dnf --noplugins) here, with one try-reload-or-restart batch.

A `never`-policy service loses its marks and is not touched. Restart-policy services keep
theirs: systemd restarts them once, after every package is in place. doc/markers.md has the
spec snippet and the limits.

Run as `python3 -m libvirt_presets.markers` (from the rpm triggers).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import guards, report
from .config import CONFIG_PATH, NEVER, RELOAD, RESTART, Config, config_paths, load_config
from .gate import DROPIN_DIR
from .host import is_live
from .records import Record
from .snapshot import take_snapshot
from .systemctl import Systemctl
from .units import SYSTEM, UnitKey, template_of
from .words import Action

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Collection, Mapping, Sequence

    from .host import Root

_set = object.__setattr__

NEEDS_RESTART = "needs-restart"
NEEDS_RELOAD = "needs-reload"
CONFIG_DIR = os.path.dirname(CONFIG_PATH)
CONFIG_NAME = os.path.basename(CONFIG_PATH)


class UnitMarks(Record):
    """What the manager says about one unit (`systemctl show -p Id,Markers,NeedDaemonReload`)."""

    __slots__ = ("markers", "need_daemon_reload")
    markers: frozenset[str]
    need_daemon_reload: bool

    def __init__(self, markers: frozenset[str] = frozenset(), need_daemon_reload: bool = False) -> None:
        _set(self, "markers", markers)
        _set(self, "need_daemon_reload", need_daemon_reload)


class MarkerChange(Record):
    """Remove the restart/reload marks of `unit`; `reload`: reload it here, nobody else will."""

    __slots__ = ("unit", "reload", "reason")
    unit: str
    reload: bool
    reason: str

    def __init__(self, unit: str, reload: bool, reason: str) -> None:
        _set(self, "unit", unit)
        _set(self, "reload", reload)
        _set(self, "reason", reason)


def plan_marker_changes(marks: Mapping[str, UnitMarks], config: Config,
                        guarded: Collection[str]) -> list[MarkerChange]:
    """The pure decision: which marked units to unmark, and which of those to reload here."""
    changes = []
    for unit, state in sorted(marks.items()):
        if not state.markers & {NEEDS_RESTART, NEEDS_RELOAD}:
            continue
        policy = config.policy(unit)
        if policy == RESTART:
            continue  # systemd's --marked restarts it once, after every package is in place
        if policy == NEVER:
            changes.append(MarkerChange(unit, False, "policy never: neither restarted nor reloaded"))
        elif unit in guarded:
            changes.append(MarkerChange(unit, False, "policy reload: the dnf plugin guards it and "
                                        "reloads it once after the transaction"))
        else:
            changes.append(MarkerChange(unit, True, "policy reload: reloaded instead of restarted"))
    return changes


def parse_marks(text: str) -> dict[str, UnitMarks]:
    """`systemctl show -p Id,Markers,NeedDaemonReload a b` output, one block per unit."""
    found = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            found[props["Id"]] = UnitMarks(frozenset(props.get("Markers", "").split()),
                                           props.get("NeedDaemonReload") == "yes")
    return found


class MarkerSystemctl(Systemctl):
    """The systemctl query this module needs on top of the shared verbs."""

    def marks(self, units: Sequence[str]) -> dict[str, UnitMarks]:
        if not units:
            return {}
        result = self._live("show", "-p", "Id,Markers,NeedDaemonReload", units=units)
        return parse_marks(result.stdout) if result.returncode == 0 else {}



# Left by this module when it runs as an rpm trigger on a live host, removed by the dnf plugin
# before rpm runs: the plugin then knows whether the marks were taken care of in its transaction.
TRIGGER_STAMP = "run/libvirt-units/markers-trigger-ran"


def trigger_ran(root: Root) -> bool:
    return os.path.exists(os.path.join(root, TRIGGER_STAMP))


def forget_trigger(root: Root) -> None:
    try:
        os.unlink(os.path.join(root, TRIGGER_STAMP))
    except FileNotFoundError:
        pass


def _stamp(root: Root) -> None:
    stamp = os.path.join(root, TRIGGER_STAMP)
    try:
        os.makedirs(os.path.dirname(stamp), exist_ok=True)
        with open(stamp, "a"):
            pass
        os.utime(stamp)  # as touch(1): a stamp left from before counts as new
    except OSError:
        pass  # the plugin then reads the marks itself: one `systemctl show`


def marked(systemctl: MarkerSystemctl, units: Sequence[str]) -> tuple[str, ...]:
    """The units among `units` that carry a restart or reload mark now."""
    return tuple(sorted(u for u, m in systemctl.marks(list(units)).items()
                        if u in units and m.markers & {NEEDS_RESTART, NEEDS_RELOAD}))


def candidate_units(root: Root, config: Config) -> dict[str, str]:
    """Managed system services whose policy is not restart: name -> unit file (for rpm)."""
    return {
        key.name: path for key, path in sorted(take_snapshot(root).units.items())
        if key.scope == SYSTEM and key.name.endswith(".service") and not template_of(key.name)
        and key.name in config.scope and config.policy(key.name) in (RELOAD, NEVER)
    }


def _owners(root: Root, units: Mapping[str, str]) -> dict[str, str]:
    """unit -> the package that now ships it, for the journal's TRIGGER_PACKAGE."""
    try:
        from . import rpmdb

        return {k.name: v for k, v in rpmdb.owners(root, {UnitKey(SYSTEM, u): p for u, p in units.items()}).items()}
    except Exception:  # noqa: BLE001 - naming the package is a nicety: never fail for it
        return {}


def convert_restart_markers(config: Config, root: Root = "/",
                            systemctl: MarkerSystemctl | None = None, live: bool | None = None) -> list[str]:
    """Unmark the reload/never-policy services a scriptlet marked; reload those nobody else will.

    Returns the units unmarked. Costs one `systemctl show` when nothing is marked, nothing at
    all off a live system (an installroot, a chroot, SYSTEMD_OFFLINE=1). `live` is a test seam.
    """
    if not config.enabled or not (is_live(root) if live is None else live):
        return []
    _stamp(root)
    units = candidate_units(root, config)
    if not units:
        return []
    systemctl = systemctl or MarkerSystemctl(root)
    marks = {u: m for u, m in systemctl.marks(list(units)).items() if u in units}  # (Id of an alias)
    guarded = {u for u in units if os.path.isfile(guards.guard_path(root, u))}
    changes = plan_marker_changes(marks, config, guarded)
    if not changes:
        return []
    owners = _owners(root, {c.unit: units[c.unit] for c in changes})
    unmarked, reload = [], []
    for change in changes:
        result = systemctl.unmark(change.unit)
        if result.returncode != 0:
            report.warn(f"cannot remove the restart mark of {change.unit}: {result.stderr.strip()}",
                        change.unit, Action.UNMARK, owners.get(change.unit))
            continue
        unmarked.append(change.unit)
        report.unit_action(Action.UNMARK, change.unit, "restart mark removed", change.reason, owners.get(change.unit))
        if change.reload:
            reload.append(change.unit)
    if reload:
        if any(marks[u].need_daemon_reload for u in reload):  # reload with the new unit file
            systemctl.daemon_reload()
        result = systemctl.try_reload_or_restart(reload)
        for unit in reload:
            if result.returncode == 0:
                report.unit_action(Action.RELOAD, unit, "done", "a scriptlet marked it needs-restart; policy reload",
                                   owners.get(unit))
            else:
                report.warn(f"reload of {unit} failed: {result.stderr.strip()}", unit, Action.RELOAD, owners.get(unit))
    return unmarked


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m libvirt_presets.markers",
        description="Before systemd's `reload-or-restart --marked`: unmark the services whose "
                    "libvirt-units policy is reload or never, and reload the reload ones.")
    parser.add_argument("--conf-dir", default=CONFIG_DIR,
                        help=f"directory of {CONFIG_NAME} and {DROPIN_DIR}/ (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = load_config(config_paths(os.path.join(args.conf_dir, CONFIG_NAME)))
    for problem in config.problems:
        report.warn(problem)
    try:
        convert_restart_markers(config)
    except (OSError, ValueError) as exc:
        report.warn(f"restart marks left as they are: {exc}")
    return 0  # an rpm trigger: never fail the transaction


if __name__ == "__main__":
    sys.exit(main())
