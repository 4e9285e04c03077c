"""What `dnf libvirt-units` (and the standalone CLI) compute: dry-run plans, status, checks.

Front ends hand in facts (a root, the config, the package changes of a resolved transaction);
these functions read the root and return data for render.py. None of them changes anything.
"""

from __future__ import annotations

import os

from . import rpmdb, state
from .checks import Problem, find_problems
from .config import Config
from .facts import PackageChange, TransactionFacts
from .planner import Plan, UnitPlan, plan_transaction, predict_units_after
from .presets import PresetSet, load_presets
from .render import UnitStatus
from .snapshot import Snapshot, link_units, read_invocations, read_live_facts, take_snapshot
from .systemctl import Systemctl
from .units import SYSTEM, USER, UnitKey
from .words import ProblemKind

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable

    from .host import Root


def preset_sets(root: Root) -> dict[str, PresetSet]:
    return {scope: load_presets(root, scope) for scope in (SYSTEM, USER)}


def dry_run(root: Root, config: Config, changes: Iterable[PackageChange], live: bool) -> Plan:
    """The plan of a transaction that has not run: the same planning function as the real run,
    with the host as it is now standing for the host after rpm (what the guards keep it at)."""
    before = take_snapshot(root)
    managed = {u: p for u, p in before.units.items() if u in config.scope}
    facts = TransactionFacts(tuple(changes), rpmdb.owners(root, managed))
    after = predict_units_after(before, facts)
    present = [u for u in before.present if u in config.scope]
    now = read_live_facts(root, before, present, read_invocations(root), guarded=None) if live else None
    return plan_transaction(before, after, facts, config, preset_sets(root), now)


def enablement(root: Root, units: Iterable[UnitKey]) -> dict[str, str]:
    """`systemctl is-enabled` for many units in one call per scope (one line per unit)."""
    out: dict[str, str] = {}
    systemctl = Systemctl(root)
    for scope in (SYSTEM, USER):
        names = sorted(u.name for u in units if u.scope == scope)
        if not names:
            continue
        states = systemctl.is_enabled(names, user=scope == USER)
        out.update({str(UnitKey(scope, n)): s for n, s in zip(names, states)})
    return out


def status(root: Root, config: Config, live: bool) -> list[UnitStatus]:
    snap = take_snapshot(root)
    managed = {u: p for u, p in snap.units.items() if u in config.scope}
    owners = rpmdb.owners(root, managed)
    presets = preset_sets(root)
    states = enablement(root, managed)
    active: dict[str, str] = {}
    if live:
        names = sorted(u.name for u in managed if u.scope == SYSTEM)
        active = {n: st.active_state for n, st in Systemctl(root).show(names).items()}
    result = []
    for unit in sorted(managed):
        decision = presets[unit.scope].decide(unit.name)
        row = UnitPlan(unit, owners.get(unit), owners.get(unit), (), ())
        result.append(UnitStatus(row, states.get(str(unit), "unknown"), decision.action, decision.reason,
                                 active.get(unit.name) if live and unit.scope == SYSTEM else None))
    return result


def pending_problem(root: Root, resume: str) -> Problem | None:
    """An unfinished transaction (a dnf killed between rpm and our step): `resume` is the
    command that completes it, as the front end spells it."""
    path = os.path.join(state.state_dir(root), state.PENDING)
    if not os.path.lexists(path):
        return None
    return Problem(ProblemKind.PENDING, (), f"{path}: unfinished transaction; run '{resume}'")


def check(root: Root, config: Config, resume: str = "dnf libvirt-units resume") -> list[Problem]:
    """Problems of the host, then of the configuration (every bad line), then an unfinished
    transaction: each one a reason for exit status 1."""
    snap = take_snapshot(root)
    managed = {u for u in set(snap.units) | _linked_units(snap) if u in config.scope}
    problems = find_problems(root, snap, managed)
    problems += [Problem(ProblemKind.CONFIG, (), p) for p in config.problems]
    pending = pending_problem(root, resume)
    return problems + ([pending] if pending else [])


def _linked_units(snap: Snapshot) -> set[UnitKey]:
    found: set[UnitKey] = set()
    for link, target in snap.links.items():
        found |= link_units(link, target)
    return found
