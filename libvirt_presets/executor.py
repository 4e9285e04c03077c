"""Applying a plan: the one module that changes the system, and decides nothing.

What to do, and in which order, comes from the planner and session.finish() (links, then the
preset call, then links again for what a new unit's Also= touched, then the live batches): this
module sets the links, runs the preset call and the batches it is given, and reports what happened.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess

from . import report
from .planner import LinkRestore, Plan
from .snapshot import InRoot, link_scope, plain_link_scope
from .systemctl import Systemctl
from .units import ENABLEMENT_DIRS, SYSTEM, USER, UnitKey
from .words import Action

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Sequence

    from .host import Root


class Outcome:
    __slots__ = ("preset", "restored", "live", "warnings", "unrestorable")

    def __init__(self, preset: list[str] | None = None, restored: list[LinkRestore] | None = None,
                 live: dict[Action, list[str]] | None = None, warnings: list[str] | None = None,
                 unrestorable: set[str] | None = None) -> None:
        self.preset: list[str] = [] if preset is None else preset
        # the links put back, and those that could not be (warned about once)
        self.restored: list[LinkRestore] = [] if restored is None else restored
        # live actions done, by what the manager did: restart, reload, start, stop, unmark -> units
        self.live: dict[Action, list[str]] = {} if live is None else live
        self.warnings: list[str] = [] if warnings is None else warnings
        self.unrestorable: set[str] = set() if unrestorable is None else unrestorable

    def warn(self, message: str, unit: str | None = None, action: Action | None = None,
             trigger: str | None = None) -> None:
        self.warnings.append(message)
        report.warn(message, unit, action, trigger)


def first_line(text: str) -> str:
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
                    outcome.warn(f"preset of {name} failed: {first_line(single.stderr)}",
                                 name, Action.PRESET, packages.get(UnitKey(scope, name)))
        for name in done:
            report.unit_action(Action.PRESET, name, "done", reason, packages.get(UnitKey(scope, name)),
                          level=logging.DEBUG)
        outcome.preset += done
        if done:
            report.log.debug("libvirt-units: applied presets to %d new %sunit(s): %s",
                            len(done), "user " if user else "", " ".join(done))
    return reloaded



def _inside(top: Root, path: str) -> bool:
    """Whether `path` is `top` or below it, both with every symlink resolved on this host."""
    real_top = os.path.realpath(top)
    real = os.path.realpath(path)
    return real == real_top or real.startswith(real_top.rstrip("/") + "/")


def apply_link(root: Root, restore: LinkRestore) -> None:
    """Set or remove one enablement symlink, atomically, without leaving the root.

    The link must be a plain relative path below etc/systemd/{system,user}. Its directory is
    found as `systemctl --root` finds it (symlinks followed inside the root) and must still be
    below that enablement directory: a wants directory that is a symlink to elsewhere, inside
    the root or out of it, is refused and never written through. OSError says why.
    """
    link, target = restore.link, restore.target
    scope = plain_link_scope(link, target)
    if scope is None:
        raise OSError(f"{link!r} is not a path below an enablement directory; refused")
    enablement = ENABLEMENT_DIRS[scope]
    in_root = InRoot(root)
    top, _ = in_root.resolve(enablement)
    parent, parent_mode = in_root.resolve(os.path.dirname(link))
    # The directory must be the enablement directory (wherever it resolves to inside the root)
    # joined with the link's own parts: no part below it may be a symlink. A directory below it
    # that is a symlink (to another wants directory, say) is not written through either: the
    # snapshot records it as a link and never enters it, so a link written there would be seen
    # under another name and the next restore would undo it.
    if parent != top + link[len(enablement) + 1:].split("/")[:-1]:
        top_path, parent_path = in_root.path(top), in_root.path(parent)
        shown = os.path.join(root, os.path.dirname(link))
        if not (_inside(root, top_path) and _inside(top_path, parent_path)):  # which refusal it is
            raise OSError(f"{shown} resolves outside {os.path.join(root, enablement)}")
        raise OSError(f"{shown} is a symlink to another directory; not written through")
    # (Resolved so, the directory is inside the enablement directory and the root, as realpath()
    # sees it too: every part of it below the root is a real directory or not there yet.)
    directory = in_root.path(parent)
    name = os.path.basename(link)
    path = os.path.join(directory, name)
    if os.path.lexists(path) and not os.path.islink(path):
        raise OSError(f"{path} is not a symlink; left alone")
    if target is None:
        if os.path.islink(path):
            os.unlink(path)
        return
    if parent_mode < 0 or not stat.S_ISDIR(parent_mode):  # mkdir only when needed: exist_ok costs an exception
        os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".#{name}.libvirt-units")
    if os.path.islink(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, path)


def restore_links(root: Root, plan: Plan, restores: Sequence[LinkRestore], outcome: Outcome) -> int:
    """Put back the links of the units that keep their enablement; returns how many links it
    changed (a link that cannot be set is warned about once, then left alone)."""
    before = len(outcome.restored)
    packages = _packages_after(plan)
    at_slash = os.path.normpath(root) == "/"
    for restore in restores:
        if restore.link in outcome.unrestorable:
            continue  # warned about once already
        shown = f"/{restore.link}" if at_slash else os.path.join(root, restore.link)  # as systemctl says it
        shown = shown if shown.isprintable() else ascii(shown)  # one log line
        what = f"created symlink {shown} \u2192 {restore.target}" if restore.target else f'removed "{shown}"'
        what = what if what.isprintable() else ascii(what)
        name = os.path.basename(restore.link)
        trigger = packages.get(UnitKey(link_scope(restore.link) or SYSTEM, name))
        name = name if name.isprintable() else ascii(name)
        try:
            apply_link(root, restore)
        except (OSError, ValueError) as exc:
            why = str(exc) if str(exc).isprintable() else ascii(str(exc))
            outcome.warn(f"cannot restore {shown}: {why}", name, Action.RESTORE, trigger)
            outcome.unrestorable.add(restore.link)
            continue
        outcome.restored.append(restore)
        report.unit_action(Action.RESTORE, name, what, "put back as the admin left it", trigger)
    return len(outcome.restored) - before


def run_batch(systemctl: Systemctl, kind: Action, units: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """One systemctl call for a whole batch of `kind` (restart, reload or stop); `restart` also
    starts the stopped units in it."""
    call = {Action.RESTART: systemctl.restart, Action.RELOAD: systemctl.reload_or_restart,
            Action.STOP: systemctl.stop}[kind]
    return call(units)


def done(outcome: Outcome, kind: Action, units: Sequence[str], triggers: Mapping[str, str],
         starts: Sequence[str] = ()) -> None:
    """Report units a batch did; in the restart batch, the units that were stopped count as
    started."""
    for unit in units:
        did = Action.START if unit in starts else kind
        outcome.live.setdefault(did, []).append(unit)
        why = f"{triggers[unit]} changed" if unit in triggers else "running before the transaction"
        report.unit_action(did, unit, "done", why, triggers.get(unit))


def failed(outcome: Outcome, kind: Action, unit: str, why: str, triggers: Mapping[str, str]) -> None:
    outcome.warn(f"{kind} of {unit} failed: {why}", unit, kind, triggers.get(unit))
