"""Applying a plan: the one module that changes the system.

Order matters: presets for new units first (a new unit's `Also=` may touch an old unit's
links), then the old units' links are put back, then — on a live host only — one
daemon-reload and one batch per kind of restart.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import report
from .planner import LinkRepair, LiveActions, Plan, link_repairs, live_actions
from .snapshot import link_scope, read_service_states, resolve_in_root, scan_links
from .systemctl import CommandError, Systemctl, UnitState
from .units import ENABLEMENT_DIRS, SYSTEM, USER, UnitKey


@dataclass
class Outcome:
    preset: list[str] = field(default_factory=list)
    repaired: list[LinkRepair] = field(default_factory=list)
    live: LiveActions | None = None
    warnings: list[str] = field(default_factory=list)
    unrepairable: set[str] = field(default_factory=set)

    def warn(self, message: str, unit: str | None = None, action: str | None = None,
             trigger: str | None = None) -> None:
        self.warnings.append(message)
        report.warn(message, unit, action, trigger)


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def _packages_after(plan: Plan) -> dict[UnitKey, str]:
    """unit -> the package that ships it after the transaction: the journal's TRIGGER_PACKAGE."""
    return {row.unit: row.package_after for row in plan.rows if row.package_after}


def apply_presets(plan: Plan, systemctl: Systemctl, outcome: Outcome, reload: bool = False) -> bool:
    """Preset the new units, one call per scope. With `reload` (a live host), the system
    preset call reloads the manager; True when that reload happened."""
    packages = _packages_after(plan)
    reloaded = False
    for scope, user in ((SYSTEM, False), (USER, True)):
        units = [u.name for u in plan.presets if u.scope == scope]
        if not units:
            continue
        reason = "new unit" + (" (user unit: --global)" if user else "")
        result = systemctl.preset(units, user=user, reload=reload)
        if result.returncode == 0:
            done = units
            reloaded = reloaded or (reload and not user)
        else:  # find which unit failed; the others still get their preset
            done = []
            for name in units:
                single = systemctl.preset([name], user=user)
                if single.returncode == 0:
                    done.append(name)
                else:
                    outcome.warn(f"preset of {name} failed: {_first_line(single.stderr)}",
                                 name, "preset", packages.get(UnitKey(scope, name)))
        for name in done:
            report.record("preset", name, "done", reason, packages.get(UnitKey(scope, name)),
                          level=logging.DEBUG)
        outcome.preset += done
        if done:
            report.log.info("libvirt-units: applied presets to %d new %sunit(s): %s",
                            len(done), "user " if user else "", " ".join(done))
    return reloaded



def _inside(top: Path, path: Path) -> bool:
    """Whether `path` is `top` or below it, both with every symlink resolved on this host."""
    real_top = os.path.realpath(top)
    real = os.path.realpath(path)
    return real == real_top or real.startswith(real_top.rstrip("/") + "/")


def apply_link(root: Path, repair: LinkRepair) -> None:
    """Set or remove one enablement symlink, atomically, without leaving the root.

    The link must be a plain relative path below etc/systemd/{system,user}. Its directory is
    found as `systemctl --root` finds it (symlinks followed inside the root) and must still be
    below that enablement directory: a wants directory that is a symlink to elsewhere, inside
    the root or out of it, is refused and never written through. OSError says why.
    """
    link, target = repair.link, repair.target
    scope = link_scope(link)
    parts = link.split("/")
    if (scope is None or "\0" in link or (target is not None and "\0" in target)
            or any(part in ("", ".", "..") for part in parts)):
        raise OSError(f"{link!r} is not a path below an enablement directory; refused")
    top = resolve_in_root(root, ENABLEMENT_DIRS[scope])
    parent = resolve_in_root(root, os.path.dirname(link))
    if not (_inside(root, top) and _inside(top, parent)):
        raise OSError(f"{root / os.path.dirname(link)} resolves outside {root / ENABLEMENT_DIRS[scope]}")
    path = parent / parts[-1]
    if os.path.lexists(path) and not path.is_symlink():
        raise OSError(f"{path} is not a symlink; left alone")
    if target is None:
        if path.is_symlink():
            path.unlink()
        return
    parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".#{path.name}.libvirt-units")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, path)


def hold_enablement(plan: Plan, root: Path, outcome: Outcome) -> int:
    """Put the links of every pre-existing unit back as they were before the transaction;
    returns how many links it changed."""
    if not plan.kept:
        return 0
    before = len(outcome.repaired)
    now = scan_links(root)
    packages = _packages_after(plan)
    for repair in link_repairs(plan.kept_links, now, set(plan.kept)):
        if repair.link in outcome.unrepairable:
            continue  # warned about once already
        shown = repair.link if repair.link.isprintable() else ascii(repair.link)  # one log line
        what = f"{shown} -> {repair.target}" if repair.target else f"removed {shown}"
        what = what if what.isprintable() else ascii(what)
        name = os.path.basename(repair.link)
        trigger = packages.get(UnitKey(link_scope(repair.link) or SYSTEM, name))
        name = name if name.isprintable() else ascii(name)
        try:
            apply_link(root, repair)
        except (OSError, ValueError) as exc:
            why = str(exc) if str(exc).isprintable() else ascii(str(exc))
            outcome.warn(f"cannot restore {shown}: {why}", name, "restore", trigger)
            outcome.unrepairable.add(repair.link)
            continue
        outcome.repaired.append(repair)
        report.record("restore", name, what,
                      "enablement changed during the transaction; put back as the admin left it",
                      trigger)
    return len(outcome.repaired) - before


def _batch_did(kind: str, before: UnitState | None, now: UnitState | None) -> bool:
    """Whether the batch really did `kind` to a unit, as the manager tells it."""
    if now is None or now.active_state != "active":
        return False
    if kind == "start":
        return True
    restarted = before is None or now.invocation_id != before.invocation_id  # new invocation
    if kind == "reload":  # try-reload-or-restart restarts units that cannot reload
        return restarted or now.reload_result == "success"
    return restarted


def _batch(kind: str, units: tuple[str, ...], plan: Plan, call, systemctl: Systemctl,  # noqa: ANN001
           before: dict[str, UnitState], outcome: Outcome) -> None:
    """One call for the batch; if it fails, retry unit by unit so one bad unit spoils nothing.

    systemctl runs every job of a batch even when one of them fails (`try-restart a b bad`
    restarts a and b, then exits non-zero): after a failed batch one `show` tells which units
    it did, and only the others are retried, so no unit is restarted twice.  A unit the batch
    stopped but could not bring up again is inactive now, where `try-restart` would be a
    silent no-op: it ran before the transaction, so the retry is a `start`.
    """
    if not units:
        return
    trigger = {**plan.restarts, **plan.reloads}

    def done(unit: str) -> None:
        report.record(kind, unit, "done", f"{trigger.get(unit)} changed", trigger.get(unit))

    def failed(unit: str, why: str) -> None:
        outcome.warn(f"{kind} of {unit} failed: {why}", unit, kind, trigger.get(unit))

    pending = list(units)
    try:
        result = call(list(units))
        if result.returncode == 0:
            for unit in units:
                done(unit)
            return
        now = systemctl.show(units)
        for unit in units:
            if _batch_did(kind, before.get(unit), now.get(unit)):
                done(unit)
                pending.remove(unit)
        for unit in list(pending):
            state = now.get(unit)
            retry = call if state is not None and state.active_state == "active" else systemctl.start
            single = retry([unit])
            pending.remove(unit)
            if single.returncode == 0:
                done(unit)
            else:
                failed(unit, _first_line(single.stderr))
    except CommandError as exc:
        for unit in pending:
            failed(unit, str(exc))


def apply_live(plan: Plan, systemctl: Systemctl, invocations_before: dict[str, str],
               outcome: Outcome, force_reload: bool = False) -> None:
    """The daemon-reload (when the caller says one is still due), then one try-restart and
    one try-reload-or-restart batch."""
    if force_reload:
        result = systemctl.daemon_reload()
        if result.returncode != 0:
            outcome.warn(f"daemon-reload failed: {_first_line(result.stderr)}")
    services = sorted(set(plan.restarts) | set(plan.reloads))
    if not services:
        return
    states = read_service_states(systemctl.root, services)
    actions = live_actions(plan, invocations_before, states)
    outcome.live = actions
    for unit, why in actions.skipped.items():
        report.record("skip", unit, "not restarted", why, {**plan.restarts, **plan.reloads}.get(unit))
    _batch("restart", actions.try_restart, plan, systemctl.try_restart, systemctl, states, outcome)
    _batch("reload", actions.try_reload, plan, systemctl.try_reload_or_restart, systemctl, states,
           outcome)
    _batch("start", actions.start, plan, systemctl.start, systemctl, states, outcome)
