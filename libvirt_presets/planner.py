"""The decisions: which units get a preset, which keep their enablement, what is guarded,
restarted, reloaded, started or stopped.

Pure functions of facts (snapshots, transaction records, config, live unit state) to plans.
This is the one place to read to learn *why* the plugin did something to a unit. The dry run
and the real run call the same `plan_transaction()`; they differ only in the facts they hand in
(the dry run's "after" is the host as it is now, which is what the guards keep it at).

The live half, for a booted host (installroot `/`):

- **Guards** (before rpm runs). Package scriptlets stop, restart and reload units in the middle
  of the transaction: libvirt's `%posttrans` stops libvirtd.service, restarts its sockets and
  starts it again; `%preun` runs `disable --now`; `%postun` and `%posttrans` both reload
  virtlogd. A runtime drop-in with `RefuseManualStop=yes` makes the manager refuse every such
  stop and restart. Guarding only the services is worse than no guard at all: the refused stop
  leaves libvirtd running, so the sockets' restart cannot start them again ("Socket service
  libvirtd.service already active, refusing") and `/run/libvirt/libvirt-sock` is gone until the
  service is restarted. So every unit a scriptlet could leave half-done is guarded together:
  each running managed service the transaction touches or acts on, each managed socket, path
  and timer the transaction touches, and each one that starts a guarded service. Services the
  plan restarts or reloads also get a no-op `ExecReload=` while rpm runs, so that the one
  reload (or restart) is ours, after every package is in place. Units the transaction removes
  are never guarded: their packages' `%preun` stops them, as without us.
- **After rpm**: a service that ran before and whose package changed is restarted once
  (reloaded once for the `reload` policy); a service that ran before and is stopped now (a
  leak past the guards, or `guard = no`) is started again; a guarded unit whose file rpm
  removed after all is stopped; services that were not running stay stopped.
"""

from __future__ import annotations

import fnmatch
import re

from .config import NEVER, RELOAD, RESTART, Config, is_file_trigger
from .facts import (
    ERASE,
    UNIT_DIR_PREFIXES,
    LiveFacts,
    PackageChange,
    TransactionFacts,
    units_in_files,
)
from .records import Record
from .snapshot import Snapshot, link_units, links_of
from .units import SYSTEM, UnitKey
from .words import Action

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Collection, Mapping, Protocol

    from .facts import UnitStateLike

    class PresetDecisionLike(Protocol):
        action: str

        @property
        def reason(self) -> str: ...

    class PresetOracle(Protocol):
        """What the preset files say about a unit (presets.PresetSet)."""

        def decide(self, unit_name: str) -> PresetDecisionLike: ...

# Unit types a scriptlet stops or restarts and that we therefore guard.
GUARDED_TYPES = (".service", ".socket", ".path", ".timer")
NOTIFY_RELOAD = "notify-reload"  # reloads by signal, not ExecReload=: its reloads are left alone

_set = object.__setattr__


class UnitPlan(Record):
    """One report row: what happens to a unit and why."""

    __slots__ = ("unit", "package_before", "package_after", "actions", "reasons")
    unit: UnitKey
    package_before: str | None
    package_after: str | None
    actions: tuple[Action, ...]
    reasons: tuple[str, ...]

    def __init__(self, unit: UnitKey, package_before: str | None, package_after: str | None,
                 actions: tuple[Action, ...], reasons: tuple[str, ...]) -> None:
        _set(self, "unit", unit)
        _set(self, "package_before", package_before)
        _set(self, "package_after", package_after)
        _set(self, "actions", actions)
        _set(self, "reasons", reasons)


class LiveActions(Record):
    """What to ask the running manager for. `restart` and `start` go in one `systemctl restart`
    (a restart starts a stopped unit), `reload` in one `reload-or-restart`, `stop` in one stop."""

    __slots__ = ("guard", "quiet_reload", "restart", "reload", "start", "stop", "unmark", "skipped")
    guard: tuple[str, ...]
    quiet_reload: tuple[str, ...]  # guarded services whose reloads are no-ops while rpm runs
    restart: tuple[str, ...]
    reload: tuple[str, ...]
    start: tuple[str, ...]
    stop: tuple[str, ...]
    unmark: tuple[str, ...]  # restart marks taken off, so no later `--marked` restarts them
    skipped: Mapping[str, str]  # service -> why not

    def __init__(self, guard: tuple[str, ...] = (), quiet_reload: tuple[str, ...] = (),
                 restart: tuple[str, ...] = (), reload: tuple[str, ...] = (), start: tuple[str, ...] = (),
                 stop: tuple[str, ...] = (), unmark: tuple[str, ...] = (),
                 skipped: Mapping[str, str] | None = None) -> None:
        _set(self, "guard", guard)
        _set(self, "quiet_reload", quiet_reload)
        _set(self, "restart", restart)
        _set(self, "reload", reload)
        _set(self, "start", start)
        _set(self, "stop", stop)
        _set(self, "unmark", unmark)
        _set(self, "skipped", {} if skipped is None else skipped)

    @property
    def restart_batch(self) -> tuple[str, ...]:
        return tuple(sorted(self.restart + self.start))


_NO_LIVE_ACTIONS = LiveActions()


class Plan(Record):
    __slots__ = ("presets", "keep", "keep_links", "restarts", "reloads", "daemon_reload", "live", "rows")
    presets: tuple[UnitKey, ...]
    # pre-existing managed units that keep their enablement: it must end exactly as before
    keep: tuple[UnitKey, ...]
    # the enablement links of `keep` before the transaction: what a restore puts back
    keep_links: dict[str, str]
    # restart and reload candidates by policy: service -> package that triggered it
    restarts: dict[str, str]
    reloads: dict[str, str]
    daemon_reload: bool
    live: LiveActions
    rows: tuple[UnitPlan, ...]

    def __init__(self, presets: tuple[UnitKey, ...] = (), keep: tuple[UnitKey, ...] = (),
                 keep_links: dict[str, str] | None = None, restarts: dict[str, str] | None = None,
                 reloads: dict[str, str] | None = None, daemon_reload: bool = False,
                 live: LiveActions = _NO_LIVE_ACTIONS, rows: tuple[UnitPlan, ...] = ()) -> None:
        _set(self, "presets", presets)
        _set(self, "keep", keep)
        _set(self, "keep_links", {} if keep_links is None else keep_links)
        _set(self, "restarts", {} if restarts is None else restarts)
        _set(self, "reloads", {} if reloads is None else reloads)
        _set(self, "daemon_reload", daemon_reload)
        _set(self, "live", live)
        _set(self, "rows", rows)

    @property
    def triggers(self) -> dict[str, str]:
        """service -> the package whose change made it a candidate (the journal's TRIGGER_PACKAGE)."""
        return {**self.restarts, **self.reloads}


def _trigger_matches(pattern: str, change_name: str, files: frozenset[str]) -> bool:
    if is_file_trigger(pattern):
        return any(fnmatch.fnmatchcase(f, pattern) for f in files)
    return fnmatch.fnmatchcase(change_name, pattern)


def files_that_matter(config: Config) -> Callable[[str], object]:
    """A test for the files a plan can depend on: unit files and files a configured trigger
    names. The journal keeps only these: a release upgrade carries ~10^5 files, and the
    journal is rewritten after every step. Without file triggers (the default) a prefix test:
    no regular expression to compile in dnf's process."""
    globs = [p for p in config.triggers if is_file_trigger(p)]
    if not globs:
        return lambda path: path.startswith(UNIT_DIR_PREFIXES)
    wanted = [re.escape(d) for d in UNIT_DIR_PREFIXES] + [fnmatch.translate(p) for p in globs]
    return re.compile("|".join(wanted)).match


class _Notes:
    """The per-unit actions and reasons, in the order they were decided."""

    def __init__(self) -> None:
        self.actions: dict[UnitKey, list[Action]] = {}
        self.reasons: dict[UnitKey, list[str]] = {}

    def __call__(self, unit: UnitKey, action: Action, reason: str) -> None:
        self.actions.setdefault(unit, []).append(action)
        self.reasons.setdefault(unit, []).append(reason)


def _restart_candidates(tx: TransactionFacts, shipped: Mapping[UnitKey, PackageChange], config: Config,
                        existing: set[UnitKey], units_before: set[UnitKey], after: set[UnitKey]) -> dict[str, str]:
    """Services to restart or reload: a pre-existing, still present service whose package
    changed, or one named by a configured trigger (package glob or file glob)."""
    done = [c for c in tx.changes if c.done]
    upgraded = {c.name for c in done if c.inbound}  # names whose incoming half counts already
    candidates: dict[str, str] = {}
    for unit, change in shipped.items():
        if change.done and unit.scope == SYSTEM and unit in existing and unit.name.endswith(".service"):
            candidates.setdefault(unit.name, change.nevra)
    for pattern, services in config.triggers.items():
        for change in done:
            if change.action == ERASE and change.name in upgraded:
                continue  # the upgrade's outgoing half: the incoming half already counts
            if _trigger_matches(pattern, change.name, change.files):
                for service in services:
                    key = UnitKey(SYSTEM, service)
                    if key in units_before and key in after:
                        candidates.setdefault(service, change.nevra)
    return candidates


def touched_units(existing: Collection[UnitKey], tx: TransactionFacts,
                  shipped: Mapping[UnitKey, PackageChange]) -> set[str]:
    """Existing system units (present before and after) that a package of the transaction ships
    now or owned before: the units its scriptlets act on."""
    outgoing = {c.nevra for c in tx.changes if not c.inbound}
    return {u.name for u in existing if u.scope == SYSTEM
            and (u in shipped or tx.owners_before.get(u) in outgoing)}


def choose_guards(existing: Collection[UnitKey], touched: set[str], acted_on: Collection[str],
                  live: LiveFacts) -> tuple[str, ...]:
    """The units to guard while rpm runs (see the module docstring): running services the
    transaction touches or acts on, the sockets, paths and timers it touches, and those that
    start a guarded service. Only units that exist before and after."""
    names = {u.name for u in existing if u.scope == SYSTEM and u.name.endswith(GUARDED_TYPES)}
    touched = touched & names
    services = {s for s in names if s.endswith(".service") and s in live.active_before
                and (s in touched or s in acted_on)}
    others = {u for u in names if not u.endswith(".service")
              and (u in touched or live.triggers.get(u) in services)}
    return tuple(sorted(services | others))


def _guard_reason(unit: str, touched: set[str]) -> str:
    if unit.endswith(".service"):
        why = "a package of the transaction ships it" if unit in touched else "the plan acts on it"
        return f"running; {why}: stops and restarts by scriptlets refused while rpm runs"
    if unit in touched:
        return "a package of the transaction ships it: stops by scriptlets refused while rpm runs"
    return "starts a guarded service: stops by scriptlets refused while rpm runs"


def plan_live(candidates: Mapping[str, str], existing: Collection[UnitKey], after: set[UnitKey],
              touched: set[str], config: Config, live: LiveFacts,
              note: Callable[[UnitKey, Action, str], None]) -> LiveActions:
    """Every live action, from the facts: what to guard while rpm runs, then what to restart,
    reload, start again and stop once it is over."""
    acting = config.restarts
    guarded: tuple[str, ...] = ()
    if live.guarded is not None:
        guarded = live.guarded
    elif acting and config.guard:
        guarded = choose_guards(existing, touched, candidates, live)
    for unit in guarded:
        note(UnitKey(SYSTEM, unit), Action.GUARD, _guard_reason(unit, touched))

    restart: list[str] = []
    reload: list[str] = []
    start: list[str] = []
    skipped: dict[str, str] = {}

    def skip(service: str, why: str) -> None:
        skipped[service] = why
        note(UnitKey(SYSTEM, service), Action.NONE, why)

    for service, trigger in sorted(candidates.items()) if acting else ():
        policy = config.policy(service)
        st = live.states.get(service)
        if policy == NEVER:
            skip(service, f"{trigger} changed; policy never")
        elif st is None or st.load_state != "loaded":
            skip(service, f"{trigger} changed; not loaded by the manager")
        elif st.type == "oneshot":
            skip(service, f"{trigger} changed; oneshot unit: never restarted")
        elif service not in live.active_before:
            skip(service, f"{trigger} changed; not running before the transaction: left stopped")
        elif st.active_state not in ("active", "reloading", "activating"):
            start.append(service)
            note(UnitKey(SYSTEM, service), Action.START,
                 f"{trigger} changed; running before the transaction, stopped during it")
        elif st.refuse_manual_stop:
            skip(service, f"{trigger} changed; RefuseManualStop=yes: never restarted")
        elif live.active_before[service] != st.invocation_id:
            skip(service, f"{trigger} changed; already restarted during the transaction")
        elif policy == RELOAD:
            reload.append(service)
            note(UnitKey(SYSTEM, service), Action.RELOAD, f"{trigger} changed; policy reload")
        else:
            restart.append(service)
            note(UnitKey(SYSTEM, service), Action.RESTART, f"{trigger} changed")

    # Any other managed service that ran before and is stopped now is started again.
    services = {u.name for u in existing if u.scope == SYSTEM and u.name.endswith(".service")}
    for service in sorted(services & set(live.active_before) - set(candidates)) if acting else ():
        st = live.states.get(service)
        if (st is not None and st.load_state == "loaded" and st.type != "oneshot"
                and st.active_state not in ("active", "reloading", "activating")
                and config.policy(service) != NEVER):
            start.append(service)
            note(UnitKey(SYSTEM, service), Action.START, "running before the transaction, stopped during it")

    stop = [u for u in guarded if UnitKey(SYSTEM, u) not in after]
    for unit in stop:
        note(UnitKey(SYSTEM, unit), Action.STOP, "guarded while rpm ran, but rpm removed its unit file")
    # systemd >= 255 refuses its own `--marked` restart of a guarded service, and the mark stays;
    # a reload-policy service must not be restarted by the next `--marked` either.
    unmark = tuple(s for s in live.marked if s in guarded and config.policy(s) != RESTART)
    for service in unmark:
        note(UnitKey(SYSTEM, service), Action.UNMARK, "a scriptlet marked it for a restart; policy "
             f"{config.policy(service)}: the mark is taken off")
    quiet = tuple(s for s in guarded if s in candidates and config.policy(s) != NEVER
                  and getattr(live.states.get(s), "type", "") != NOTIFY_RELOAD)
    return LiveActions(guarded, quiet, tuple(restart), tuple(reload), tuple(sorted(start)),
                       tuple(stop), unmark, skipped)


def _classify(before: Snapshot, after: set[UnitKey], config: Config
              ) -> tuple[list[UnitKey], list[UnitKey], list[UnitKey]]:
    """The managed units, sorted: (new, existing, gone). New: no file of it anywhere in the unit
    search path before, one after; existing: present before and after; gone: present before only."""
    units_before = before.present
    managed = config.scope.select(units_before | after)  # each one is in `after` or before
    return sorted(managed - units_before), sorted(managed & units_before & after), sorted(managed - after)


def _plan_presets(new_units: list[UnitKey], shipped: Mapping[UnitKey, PackageChange], config: Config,
                  presets: Mapping[str, PresetOracle] | None, note: _Notes) -> tuple[UnitKey, ...]:
    """The new units to preset (all of them, unless `presets = no`), each with what the preset
    files say of it."""
    for unit in new_units:
        src = shipped.get(unit)
        by = f" in {src.nevra}" if src else ""
        if not config.presets:
            note(unit, Action.NONE, "new unit, but presets = no in the configuration")
            continue
        oracle = (presets or {}).get(unit.scope)
        if oracle is None:
            note(unit, Action.PRESET, f"new unit{by}")
        else:
            decision = oracle.decide(unit.name)
            note(unit, Action.preset(decision.action), f"new unit{by}; {decision.reason}")
    return tuple(new_units) if config.presets else ()


def _plan_keep(existing: list[UnitKey], before: Snapshot, shipped: Mapping[UnitKey, PackageChange],
               config: Config, note: _Notes) -> tuple[UnitKey, ...]:
    """The existing units that keep their enablement (all of them, unless `keep = no`); the row
    says so for those the transaction ships and for the admin's own units."""
    keep = tuple(existing) if config.keeps else ()
    for unit in keep:
        if unit in before.admin_units and unit not in before.units:
            note(unit, Action.KEEP, f"the admin's own unit (/{before.admin_units[unit]}) existed before: "
                                    "enablement kept as it is")
        elif unit in shipped:
            note(unit, Action.KEEP, "existed before: enablement kept as it is")
    return keep


def _by_policy(candidates: Mapping[str, str], config: Config) -> tuple[dict[str, str], dict[str, str]]:
    """The restart and reload candidates (service -> trigger) by policy; `never` is neither."""
    restarts: dict[str, str] = {}
    reloads: dict[str, str] = {}
    for service, trigger in candidates.items():
        policy = config.policy(service)
        if policy == RELOAD:
            reloads[service] = trigger
        elif policy != NEVER:
            restarts[service] = trigger
    return restarts, reloads


def _rows(note: _Notes, tx: TransactionFacts, shipped: Mapping[UnitKey, PackageChange],
          after: set[UnitKey]) -> tuple[UnitPlan, ...]:
    """One row per unit something was decided for, with its package before and after."""
    def owner_after(u: UnitKey) -> str | None:
        if u in shipped:
            return shipped[u].nevra
        return tx.owners_before.get(u) if u in after else None

    return tuple(UnitPlan(u, tx.owners_before.get(u), owner_after(u), tuple(note.actions[u]), tuple(note.reasons[u]))
                 for u in sorted(note.actions))


def plan_transaction(
    before: Snapshot,
    units_after: set[UnitKey] | dict[UnitKey, str],
    tx: TransactionFacts,
    config: Config,
    presets: Mapping[str, PresetOracle] | None = None,
    live: LiveFacts | None = None,
) -> Plan:
    """Decide presets, kept enablement and, on a live host (`live`), every live action.

    A unit is new when no file of it was anywhere in the unit search path before and one is
    after, whichever package ships it: moves between packages, renames, reinstalls and
    downgrades are not new, and neither is a unit the admin wrote in /etc before a package
    started shipping it.
    """
    after = set(units_after)
    new_units, existing, gone = _classify(before, after, config)
    shipped = tx.units_shipped()
    note = _Notes()
    to_preset = _plan_presets(new_units, shipped, config, presets, note)
    keep = _plan_keep(existing, before, shipped, config, note)
    for unit in gone:
        note(unit, Action.NONE, "unit file removed by the transaction")

    restarts: dict[str, str] = {}
    reloads: dict[str, str] = {}
    actions = _NO_LIVE_ACTIONS
    if live is not None:  # an installroot has no running services
        candidates = _restart_candidates(tx, shipped, config, set(existing), before.present, after)
        restarts, reloads = _by_policy(candidates, config)
        actions = plan_live(candidates, existing, after, touched_units(existing, tx, shipped), config, live, note)
    return Plan(
        presets=to_preset,
        keep=keep,
        keep_links=links_of(before.links, set(keep)),
        restarts=restarts,
        reloads=reloads,
        daemon_reload=bool(new_units or gone or shipped),
        live=actions,
        rows=_rows(note, tx, shipped, after),
    )


class LinkRestore(Record):
    """Put one link back: make `link` point at `target`, or remove it when `target` is None."""

    __slots__ = ("link", "target")
    link: str
    target: str | None

    def __init__(self, link: str, target: str | None) -> None:
        _set(self, "link", link)
        _set(self, "target", target)


def link_restores(wanted: dict[str, str], now: dict[str, str], units: set[UnitKey]) -> list[LinkRestore]:
    """Links to change so the enablement of `units` is exactly `wanted` again."""
    restores = [LinkRestore(link, target) for link, target in wanted.items() if now.get(link) != target]
    restores += [
        LinkRestore(link, None)
        for link, target in now.items()
        if link not in wanted and link_units(link, target) & units
    ]
    return sorted(restores, key=lambda r: r.link)


def daemon_reload_due(plan: Plan, *, links_changed: bool, guards_to_drop: bool, preset_reloaded: bool,
                      late_links_changed: bool) -> bool:
    """Whether the manager must be reloaded before the live batches: for new or removed unit
    files, restored links, or guards it still enforces, unless the system preset call (run
    without --no-reload) did it; links a new unit's Also= touched after that call need one more."""
    changed = plan.daemon_reload or links_changed or guards_to_drop
    return (changed and not preset_reloaded) or late_links_changed


def batch_retries(kind: str, units: Collection[str], before: Mapping[str, str],
                  now: Mapping[str, UnitStateLike]) -> tuple[list[str], list[str]]:
    """After a failed batch: (units it did, units to try again one by one).

    systemctl runs every job of a batch even when one of them fails (`restart a b bad` restarts
    a and b, then exits non-zero), so the manager's word decides which units are done: a
    running unit with a new invocation ID (a restart or start), or a reload that succeeded.
    """
    did: list[str] = []
    again: list[str] = []
    for unit in sorted(units):
        st = now.get(unit)
        active = st is not None and st.active_state == "active"
        renewed = active and st is not None and st.invocation_id != before.get(unit)
        reloaded = active and getattr(st, "reload_result", "") == "success"
        (did if renewed or (kind == "reload" and reloaded) else again).append(unit)
    return did, again


def predict_units_after(before: Snapshot, tx: TransactionFacts) -> set[UnitKey]:
    """Units present after a transaction that has not run yet (for --dry-run and the guards).

    Outgoing packages take their unit files away, incoming ones bring theirs; a file that moves
    between packages stays, and so does every unit file the admin wrote.
    """
    leaving = set().union(*(units_in_files(c.files) for c in tx.changes if not c.inbound))
    arriving = set().union(*(units_in_files(c.files) for c in tx.incoming))
    return (set(before.units) - leaving) | arriving | set(before.admin_units)
