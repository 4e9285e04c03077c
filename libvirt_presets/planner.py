"""The decisions: which units get a preset, whose links are held, what is restarted.

Pure functions of facts (snapshots, transaction records, config, live unit state) to plans.
This is the one place to read to learn *why* the plugin did something to a unit.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

from .config import NEVER, RELOAD, Config, is_file_trigger
from .facts import ERASE, UNIT_DIR_PREFIXES, TransactionFacts, units_in_files
from .snapshot import Snapshot, link_units, links_of
from .units import SYSTEM, UnitKey


@dataclass(frozen=True)
class UnitPlan:
    """One report row: what happens to a unit and why."""

    unit: UnitKey
    package_before: str | None
    package_after: str | None
    actions: tuple[str, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    presets: tuple[UnitKey, ...] = ()
    # pre-existing managed units whose enablement must end exactly as before
    kept: tuple[UnitKey, ...] = ()
    # the enablement links of `kept` before the transaction: the state to restore
    kept_links: dict[str, str] = field(default_factory=dict)
    # restart candidates: service -> package that triggered it
    restarts: dict[str, str] = field(default_factory=dict)
    reloads: dict[str, str] = field(default_factory=dict)
    daemon_reload: bool = False
    rows: tuple[UnitPlan, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.presets or self.kept or self.restarts or self.reloads or self.daemon_reload)


def _trigger_matches(pattern: str, change_name: str, files: frozenset[str]) -> bool:
    if is_file_trigger(pattern):
        return any(fnmatch.fnmatchcase(f, pattern) for f in files)
    return fnmatch.fnmatchcase(change_name, pattern)


def files_that_matter(config: Config) -> Callable[[str], object]:
    """A test for the files a plan can depend on: unit files and files a configured trigger
    names. The journal keeps only these: a release upgrade carries ~10^5 files, and the
    journal is rewritten after every step."""
    wanted = [re.escape(d) for d in UNIT_DIR_PREFIXES]
    wanted += [fnmatch.translate(p) for p in config.triggers if is_file_trigger(p)]
    return re.compile("|".join(wanted)).match


class PresetDecisionLike(Protocol):
    action: str

    @property
    def reason(self) -> str: ...


class PresetOracle(Protocol):
    """What the preset files say about a unit (presets.PresetSet)."""

    def decide(self, unit_name: str) -> PresetDecisionLike: ...


def plan_transaction(
    before: Snapshot,
    units_after: set[UnitKey] | dict[UnitKey, str],
    tx: TransactionFacts,
    config: Config,
    presets: Mapping[str, PresetOracle] | None = None,
    live: bool = True,
) -> Plan:
    """Decide presets, held enablement and restart candidates for one transaction.

    A unit is new when its file was absent before and is present after, whichever package
    ships it: moves between packages, renames, reinstalls and downgrades are not new.
    """
    scope = config.scope
    units_before = set(before.units)
    after = set(units_after)
    managed = scope.select(units_before | after)
    new_units = sorted(u for u in managed if u in after and u not in units_before)
    kept = sorted(u for u in managed if u in after and u in units_before)
    gone = sorted(u for u in managed if u in units_before and u not in after)

    shipped = tx.units_shipped()
    done = [c for c in tx.changes if c.done]
    kept_set = set(kept)
    upgraded = {c.name for c in done if c.inbound}  # names whose incoming half counts already
    restarts: dict[str, str] = {}
    reloads: dict[str, str] = {}
    reasons: dict[UnitKey, list[str]] = {}
    actions: dict[UnitKey, list[str]] = {}

    def note(unit: UnitKey, action: str, reason: str) -> None:
        actions.setdefault(unit, []).append(action)
        reasons.setdefault(unit, []).append(reason)

    to_preset = tuple(new_units) if config.presets else ()
    for unit in new_units:
        src = shipped.get(unit)
        by = f" in {src.nevra}" if src else ""
        if config.presets:
            oracle = (presets or {}).get(unit.scope)
            if oracle is None:
                note(unit, "preset", f"new unit{by}")
            else:
                decision = oracle.decide(unit.name)
                note(unit, f"preset:{decision.action}", f"new unit{by}; {decision.reason}")
        else:
            note(unit, "none", "new unit, but presets = no in the configuration")
    held = tuple(kept) if config.presets else ()
    for unit in held:
        if unit in shipped:
            note(unit, "keep", "existed before: enablement kept as it is")
    for unit in gone:
        note(unit, "none", "unit file removed by the transaction")

    # Restart candidates: a pre-existing, still present service whose package changed...
    candidates: dict[str, str] = {}
    for unit, change in shipped.items():
        if change.done and unit.scope == SYSTEM and unit in kept_set and unit.name.endswith(".service"):
            candidates.setdefault(unit.name, change.nevra)
    # ...or one named by a configured trigger (package glob or file glob).
    for pattern, services in config.triggers.items():
        for change in done:
            if change.action == ERASE and change.name in upgraded:
                continue  # the upgrade's outgoing half: the incoming half already counts
            if _trigger_matches(pattern, change.name, change.files):
                for service in services:
                    key = UnitKey(SYSTEM, service)
                    if key in units_before and key in after:
                        candidates.setdefault(service, change.nevra)
    if config.restarts and live:  # an installroot has no running services to restart
        for service, trigger in sorted(candidates.items()):
            key = UnitKey(SYSTEM, service)
            policy = config.policy(service)
            if policy == NEVER:
                note(key, "none", f"{trigger} changed; policy never")
            elif policy == RELOAD:
                reloads[service] = trigger
                note(key, "reload", f"{trigger} changed; policy reload")
            else:
                restarts[service] = trigger
                note(key, "restart", f"{trigger} changed")

    unit_files_changed = bool(new_units or gone or shipped)
    def owner_after(u: UnitKey) -> str | None:
        if u in shipped:
            return shipped[u].nevra
        return tx.owners_before.get(u) if u in after else None

    rows = tuple(
        UnitPlan(
            unit=u,
            package_before=tx.owners_before.get(u),
            package_after=owner_after(u),
            actions=tuple(actions[u]),
            reasons=tuple(reasons[u]),
        )
        for u in sorted(actions)
    )
    return Plan(
        presets=to_preset,
        kept=held,
        kept_links=links_of(before.links, set(held)),
        restarts=restarts,
        reloads=reloads,
        daemon_reload=unit_files_changed,
        rows=rows,
    )


@dataclass(frozen=True)
class LinkRepair:
    """Make `link` point at `target`, or remove it when `target` is None."""

    link: str
    target: str | None


def link_repairs(wanted: dict[str, str], now: dict[str, str], units: set[UnitKey]) -> list[LinkRepair]:
    """Links to change so the enablement of `units` is exactly `wanted` again."""
    repairs = [LinkRepair(link, target) for link, target in wanted.items() if now.get(link) != target]
    repairs += [
        LinkRepair(link, None)
        for link, target in now.items()
        if link not in wanted and link_units(link, target) & units
    ]
    return sorted(repairs, key=lambda r: r.link)


class UnitStateLike(Protocol):
    """What live_actions reads of a unit's manager state (systemctl.UnitState has it)."""

    load_state: str
    active_state: str
    type: str
    refuse_manual_stop: bool
    invocation_id: str


@dataclass(frozen=True)
class LiveActions:
    """What to ask the running manager for, after the transaction."""

    try_restart: tuple[str, ...] = ()
    try_reload: tuple[str, ...] = ()
    start: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)  # service -> why not


def live_actions(plan: Plan, invocations_before: Mapping[str, str],
                 after: Mapping[str, UnitStateLike]) -> LiveActions:
    """Filter restart/reload candidates by what the manager says now.

    Stopped units are never started, except one the transaction itself stopped (an old
    package's `%preun disable --now` during a rename). A unit that a scriptlet started or
    restarted during the transaction is recognised by its new invocation ID: it already runs
    the new code and is not restarted again.
    """
    restart: list[str] = []
    reload: list[str] = []
    start: list[str] = []
    skipped: dict[str, str] = {}
    for service in sorted(set(plan.restarts) | set(plan.reloads)):
        st = after.get(service)
        if st is None or st.load_state != "loaded":
            skipped[service] = "not loaded by the manager"
        elif st.type == "oneshot":
            skipped[service] = "oneshot unit: never restarted"
        elif st.refuse_manual_stop:
            skipped[service] = "RefuseManualStop=yes: never restarted"
        elif st.active_state not in ("active", "reloading", "activating"):
            if service in invocations_before:
                start.append(service)
            else:
                skipped[service] = "not running: left stopped"
        elif invocations_before.get(service) != st.invocation_id:
            skipped[service] = "already (re)started during the transaction"
        elif service in plan.reloads:
            reload.append(service)
        else:
            restart.append(service)
    return LiveActions(tuple(restart), tuple(reload), tuple(start), skipped)


def predict_units_after(units_before: set[UnitKey] | dict[UnitKey, str], tx: TransactionFacts) -> set[UnitKey]:
    """Unit files present after a transaction that has not run yet (for --dry-run).

    Outgoing packages take their unit files away, incoming ones bring theirs; a file that moves
    between packages stays.
    """
    leaving = set().union(*(units_in_files(c.files) for c in tx.changes if not c.inbound))
    arriving = set().union(*(units_in_files(c.files) for c in tx.incoming))
    return (set(units_before) - leaving) | arriving


def guard_candidates(plan: Plan, invocations_before: Mapping[str, str]) -> tuple[str, ...]:
    """Running services the transaction will restart or reload: guard them while rpm runs."""
    return tuple(sorted(s for s in set(plan.restarts) | set(plan.reloads) if s in invocations_before))
