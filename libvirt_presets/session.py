"""One transaction's story: gather facts before rpm runs, then plan and apply after it.

Front ends call `begin()` before the rpm transaction and `finish()` after it; both are plain
functions over explicit data so the dnf plugin, the CLI and the tests share them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping

from . import executor, journal, render, report, rpmdb, state
from .config import RESTART, Config
from .executor import Outcome, apply_presets
from .facts import LiveFacts, PackageChange, TransactionFacts
from .host import is_live
from .planner import (
    Plan,
    batch_retries,
    daemon_reload_due,
    files_that_matter,
    link_restores,
    plan_transaction,
    predict_units_after,
)
from .snapshot import Snapshot, read_invocations, read_live_facts, scan_links, take_snapshot
from .systemctl import Systemctl
from .units import SYSTEM, USER, UnitKey
from .words import Action, Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Collection, Iterable, Iterator

    from .host import Root
    from .presets import PresetSet

CHECKPOINT_ENV = "LIBVIRT_UNITS_TEST_CHECKPOINT"


class CheckpointError(RuntimeError):
    """Raised on purpose by the test harness to prove the transaction survives our errors."""


def checkpoint(name: str) -> None:
    """Test seam: LIBVIRT_UNITS_TEST_CHECKPOINT=raise:NAME makes step NAME fail, kill:NAME kills
    the whole process there (as an OOM kill or a power cut would)."""
    wanted = os.environ.get(CHECKPOINT_ENV, "")
    if wanted == f"raise:{name}":
        raise CheckpointError(f"forced failure at checkpoint {name}")
    if wanted == f"kill:{name}":
        os.kill(os.getpid(), signal.SIGKILL)


class Pending:
    """Everything known before rpm ran."""

    __slots__ = ("root", "config", "live", "before", "facts", "invocations_before", "journal", "watcher")

    def __init__(self, root: Root, config: Config, live: bool, before: Snapshot, facts: TransactionFacts,
                 invocations_before: dict[str, str], journal: journal.Journal | None = None,
                 watcher: subprocess.Popen[bytes] | None = None) -> None:
        self.root = root
        self.config = config
        self.live = live
        self.before = before
        self.facts = facts
        # unit -> invocation ID of the units active before rpm ran (live hosts only)
        self.invocations_before = invocations_before
        # the journal as written: facts plus the steps already done (None: nothing is written)
        self.journal = journal
        # takes the guards down if dnf dies before finish() does (watch.py)
        self.watcher = watcher


def _managed(snapshot: Snapshot, config: Config) -> list[UnitKey]:
    return [u for u in snapshot.present if u in config.scope]


def begin(root: Root, config: Config, changes: Iterable[PackageChange], live: bool,
          rpm_ts: Any | None = None) -> Pending:
    """`rpm_ts`: dnf's transaction set, read for the owners and the cookie (rpmdb.owners_and_cookie)."""
    checkpoint("snapshot")
    before = take_snapshot(root)
    for problem in before.problems:
        report.warn(problem)
    managed = {u: p for u, p in before.units.items() if u in config.scope}
    owners, cookie = rpmdb.owners_and_cookie(root, managed, rpm_ts)
    facts = TransactionFacts(tuple(changes), owners)
    invocations = read_invocations(root) if live and config.restarts else {}
    guards: tuple[str, ...] = ()
    quiet: tuple[str, ...] = ()
    if live and config.restarts and config.guard:
        now = read_live_facts(root, before, _managed(before, config), invocations, guarded=None)
        predicted = plan_transaction(before, predict_units_after(before, facts), facts, config, live=now)
        guards, quiet = predicted.live.guard, predicted.live.quiet_reload
    entry = journal.read(journal.encode(before, facts, live=live, invocations=invocations,
                                        rpmdb_cookie=cookie, done=[], guards=guards,
                                        keep_file=files_that_matter(config)))
    journal.save(root, entry)  # before rpm runs (and before any guard): a killed dnf loses nothing
    watcher = None
    if guards:
        from . import markers, watch  # live hosts only: the rest of dnf's runs do without them

        markers.forget_trigger(root)  # a stamp our rpm trigger leaves from now on is this transaction's
        watcher = watch.start(root, guards)
        guard_units(root, guards, quiet)
    checkpoint("after-snapshot")
    return Pending(root, config, live, before, facts, invocations, entry, watcher)


def guard_units(root: Root, units: tuple[str, ...], quiet_reload: tuple[str, ...]) -> None:
    from . import guards as runtime_guards  # live hosts only

    try:
        placed = runtime_guards.place(root, units, quiet_reload)
    except OSError as exc:  # no guard is better than no transaction: the batch still runs after
        report.warn(f"cannot guard units while rpm runs: {exc}")
        runtime_guards.remove(root, units)
        return
    result = Systemctl(root).daemon_reload()
    if result.returncode != 0:
        report.warn(f"daemon-reload after placing guards failed: {result.stderr.strip()}")
    report.log.info("libvirt-units: guarding %s against stops and restarts while rpm runs", " ".join(placed))


def unguard(root: Root, units: tuple[str, ...]) -> list[str]:
    """guards.remove(), imported only when a transaction placed guards (live hosts)."""
    if not units:
        return []
    from . import guards as runtime_guards

    return runtime_guards.remove(root, units)


def plan_after(pending: Pending, done_nevras: set[str] | None) -> tuple[Plan, LiveFacts | None]:
    """The plan from the facts and the root as it is now (preset files and, on a live host,
    the services' states included)."""
    after = take_snapshot(pending.root)
    facts = pending.facts.with_done(done_nevras)
    presets = PresetFiles(pending.root)
    live = None
    if pending.live:
        guarded = pending.journal.guards if pending.journal else ()
        live = read_live_facts(pending.root, after, _managed(after, pending.config),
                               pending.invocations_before, guarded)
        live = live.replace(marked=still_marked(pending.root, pending.config, guarded))
    plan = plan_transaction(pending.before, after.present, facts, pending.config, presets, live)
    # Bad lines in the preset files matter when a preset is applied: one warning line each, once.
    scopes = sorted({unit.scope for unit in plan.presets})
    for problem in dict.fromkeys(p for scope in scopes for p in presets[scope].problems):
        report.warn(problem)
    return plan, live


class PresetFiles(Mapping[str, "PresetSet"]):
    """scope -> the preset files of that scope, read when the planner first asks (for a new unit
    of that scope): most transactions bring no new unit, and none of the user scope."""

    def __init__(self, root: Root) -> None:
        self._root = root
        self._read: dict[str, PresetSet] = {}

    def __getitem__(self, scope: str) -> PresetSet:
        if scope not in (SYSTEM, USER):
            raise KeyError(scope)
        if scope not in self._read:
            from .presets import load_presets

            self._read[scope] = load_presets(self._root, scope)
        return self._read[scope]

    def __iter__(self) -> Iterator[str]:
        return iter((SYSTEM, USER))

    def __len__(self) -> int:
        return 2


def still_marked(root: Root, config: Config, guarded: tuple[str, ...]) -> tuple[str, ...]:
    """Guarded reload- and never-policy services that still carry a restart mark: read (one
    `systemctl show`) only when our rpm trigger, which takes those marks off, did not run."""
    services = [s for s in guarded if s.endswith(".service") and config.policy(s) != RESTART]
    if not services:
        return ()
    from . import markers  # live hosts only: the rest of dnf's runs do without it

    if markers.trigger_ran(root):
        return ()
    return markers.marked(markers.MarkerSystemctl(root), services)


def record_outcome(pending: Pending, plan: Plan, outcome: Outcome, history_id: int | None) -> dict[str, Any]:
    """What the last transaction did, for admins (`last`) and for `--dry-run` comparisons:
    when, which dnf history transaction, which packages, and per unit what was planned and done.
    Returns the record as written (JSON data)."""
    root = pending.root
    record = render.TransactionRecord(
        plan, str(root), tuple((c.nevra, str(c.action)) for c in pending.facts.changes),
        started=pending.journal.created if pending.journal else None,
        finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), history_id=history_id,
        outcome=render.Outcome(
            preset=tuple(outcome.preset),
            restored_links=tuple((r.link, r.target) for r in outcome.restored),
            restarted=tuple(outcome.live.get(Action.RESTART, ())),
            reloaded=tuple(outcome.live.get(Action.RELOAD, ())),
            started=tuple(outcome.live.get(Action.START, ())),
            stopped=tuple(outcome.live.get(Action.STOP, ())),
            unmarked=tuple(outcome.live.get(Action.UNMARK, ())),
            warnings=tuple(outcome.warnings)))
    data = record.to_json()
    try:
        # a report, not state; compact, so that json's C encoder writes it (`last` shows it)
        state.write_json(root, state.LAST_TRANSACTION, data, indent=None, durable=False)
    except OSError as exc:
        report.warn(f"cannot record the transaction in {state.state_dir(root)}: {exc}")
    return data


def restore_links(root: Root, plan: Plan, outcome: Outcome) -> int:
    """Compare the links of the units that keep their enablement with how they are now and put
    them back (planner's link_restores on a fresh scan); returns how many links changed."""
    if not plan.keep:
        return 0
    restores = link_restores(plan.keep_links, scan_links(root), set(plan.keep))
    return executor.restore_links(root, plan, restores, outcome)


def apply_live(plan: Plan, live: LiveFacts, systemctl: Systemctl, outcome: Outcome,
               done: Collection[Step] = (), step: Callable[[Step], None] = lambda name: None) -> None:
    """The planned batches, one systemctl call each. A batch that fails is retried unit by unit
    for the units the manager says it did not do (planner.batch_retries), so one bad unit
    spoils nothing and no unit is restarted twice."""
    actions, triggers = plan.live, plan.triggers
    for unit, why in actions.skipped.items():
        report.unit_action(Action.SKIP, unit, "not restarted", why, triggers.get(unit), level=logging.DEBUG)
    before = {s: st.invocation_id for s, st in live.states.items()}
    batches = ((Action.RESTART, actions.restart_batch), (Action.RELOAD, actions.reload), (Action.STOP, actions.stop))
    for kind, units in batches:
        if not units or (kind == Action.RELOAD and Step.LIVE_RELOAD in done):
            continue  # a run resumed after the reload batch: reloaded once is reloaded
        if kind == Action.RELOAD:
            step(Step.LIVE_RELOAD)  # before: at most once (a restart is recognised by its new invocation)
        result = executor.run_batch(systemctl, kind, units)
        if result.returncode == 0:
            executor.done(outcome, kind, units, triggers, actions.start)
            continue
        if kind == Action.STOP:
            for unit in units:
                executor.failed(outcome, kind, unit, executor.first_line(result.stderr), triggers)
            continue
        did, again = batch_retries(kind, units, before, systemctl.show(units))
        executor.done(outcome, kind, did, triggers, actions.start)
        for unit in again:
            single = executor.run_batch(systemctl, kind, [unit])
            if single.returncode == 0:
                executor.done(outcome, kind, [unit], triggers, actions.start)
            else:
                executor.failed(outcome, kind, unit, executor.first_line(single.stderr), triggers)
    for unit in actions.unmark:
        result = systemctl.unmark(unit)
        if result.returncode == 0:
            executor.done(outcome, Action.UNMARK, [unit], triggers)
        else:
            executor.failed(outcome, Action.UNMARK, unit, executor.first_line(result.stderr), triggers)


def finish(pending: Pending, done_nevras: set[str] | None = None,
           systemctl: Systemctl | None = None, live_actions: bool = True,
           history_id: int | None = None) -> Outcome:
    """Plan from the facts and the root as it is now, apply, then drop the journal.

    Each step is marked in the journal once done, so a resumed run neither repeats a restart
    nor skips a preset. Presets and link restores are idempotent anyway. Without
    `live_actions` only the on-disk part is done (and the manager reloaded so that it drops
    the guards): the journal stays, and restarts wait for a transaction or `resume`.
    """
    checkpoint("after-rpm")
    root = pending.root
    done = set(pending.journal.done) if pending.journal else set()

    def step(name: Step, did: object = True) -> None:
        """Mark a step done in the journal: only one that did something is worth a rewrite
        (a resumed run redoes an idempotent step that had nothing to do at no cost)."""
        if pending.journal is not None and did:
            pending.journal = journal.mark_done(root, pending.journal, name)

    # First of all, whatever fails later: no unit may stay guarded.
    guards = pending.journal.guards if pending.journal else ()
    unguarded = unguard(root, guards) if Step.UNGUARD not in done else []
    step(Step.UNGUARD, unguarded)
    # The manager forgets a guard only at its next daemon-reload: one is due whenever this
    # transaction placed guards and the live step (which reloads) has not run, even when the
    # files are already gone (a run killed after removing them, before reloading).
    reload_for_guards = bool(guards) and Step.LIVE not in done
    checkpoint("finish")
    plan, live = plan_after(pending, done_nevras)
    packages = {r.unit.name: r.package_after or r.package_before for r in plan.rows if r.unit.scope == SYSTEM}
    for unit in unguarded:
        report.unit_action(Action.UNGUARD, unit, "done", "the rpm transaction is over",
                      plan.triggers.get(unit) or packages.get(unit), level=logging.DEBUG)
    outcome = Outcome()
    systemctl = systemctl or Systemctl(root)
    # Links first, then presets: on a live host the preset call reloads the manager itself, and
    # that one reload covers the new unit files, the restored links and the removed guards.
    restore_links(root, plan, outcome)
    reloaded = False
    if Step.PRESETS not in done:
        reloaded = apply_presets(plan, systemctl, outcome, reload=pending.live)
        step(Step.PRESETS, plan.presets)
    checkpoint("mid-actions")
    # A new unit's Also= may have touched an old unit's links: put them back once more.
    restored_late = restore_links(root, plan, outcome) if outcome.preset else 0
    if pending.live and daemon_reload_due(plan, links_changed=bool(outcome.restored), guards_to_drop=reload_for_guards,
                                          preset_reloaded=reloaded, late_links_changed=restored_late > 0):
        result = systemctl.daemon_reload()
        if result.returncode != 0:
            outcome.warn(f"daemon-reload failed: {executor.first_line(result.stderr)}")
    if pending.watcher is not None:
        from . import watch

        watch.release(pending.watcher)  # the manager enforces no guard any more
    if not live_actions and live is not None and Step.LIVE not in done:
        return outcome  # the restarts wait for the next transaction or an explicit resume
    if live is not None and Step.LIVE not in done:
        apply_live(plan, live, systemctl, outcome, done, step)
        checkpoint("after-live")
        step(Step.LIVE)
    summary = render.summary(record_outcome(pending, plan, outcome, history_id))
    report.log.info("libvirt-units: %s", summary[0])
    for line in summary[1:]:
        report.log.info("  %s", line)
    journal.clear(root)
    return outcome


def resume(root: Root, config: Config, live_actions: bool = True) -> Outcome | None:
    """Finish the transaction an earlier, killed dnf left in the journal (idempotent); without
    `live_actions`, only its on-disk part (see finish()). None when there is no journal;
    JournalError (after moving it aside) when it is unusable.

    A journal whose transaction never reached rpm (the rpmdb is unchanged) is discarded: its
    facts describe a transaction that did not happen.
    """
    data = journal.load(root)
    if data is None:
        return None
    try:
        before, facts, entry = journal.decode(data)
    except journal.JournalError as exc:
        raise journal.quarantine(root, str(exc)) from exc
    if entry.rpmdb_cookie is not None and rpmdb.cookie(root) == entry.rpmdb_cookie:
        report.warn("discarding the journal of a transaction that never reached rpm")
        if unguard(root, entry.guards) and is_live(root):
            Systemctl(root).daemon_reload()
        journal.clear(root)
        return None
    report.warn(f"completing the unfinished transaction recorded in {state.state_dir(root)}")
    if entry.installed_before is not None:  # a snapshot of the standalone CLI: read rpm's work back
        return finish_observed(root, config, data, live_actions)
    installed = rpmdb.installed_nevras(root)
    done_nevras = {c.nevra for c in facts.changes if (c.nevra in installed) == c.inbound}
    live = entry.live and is_live(root)
    pending = Pending(root, config, live, before, facts, entry.invocations_before, entry)
    return finish(pending, done_nevras, live_actions=live_actions)


# -- transactions nobody describes to us: plain rpm, dnf5's actions plugin ---------------------

def begin_observed(root: Root, config: Config) -> Pending:
    """`begin()` without a package list: the installed packages are recorded as well, so that
    `finish_observed()` can read the transaction back from the rpmdb."""
    installed = rpmdb.installed_stamps(root)
    pending = begin(root, config, (), is_live(root))
    if pending.journal is not None:
        pending.journal = pending.journal.replace(installed_before=installed)
        journal.save(root, pending.journal)
    return pending


def finish_observed(root: Root, config: Config, data: dict[str, Any], live_actions: bool = True) -> Outcome | None:
    """Finish a `begin_observed()` journal (`data`, as journal.load() read it): the package
    changes are the difference between the rpmdb then and now. Raises JournalError (the
    journal moved aside) when it is unusable."""
    try:
        before, facts, entry = journal.decode(data)
        installed_before = journal.decode_installed(data)
    except journal.JournalError as exc:
        raise journal.quarantine(root, str(exc)) from exc
    if entry.rpmdb_cookie is not None and rpmdb.cookie(root) == entry.rpmdb_cookie:
        return resume(root, config, live_actions)  # rpm changed nothing: resume() discards the journal
    installed = rpmdb.installed_stamps(root)
    arrived = rpmdb.installed_packages(root, [n for n, tid in installed.items() if installed_before.get(n) != tid])
    from . import rpmdiff  # transactions nobody describes to us only
    changes = rpmdiff.changes_between(installed_before, installed, arrived)
    facts = TransactionFacts(tuple(changes), facts.owners_before)
    live = entry.live and is_live(root)
    pending = Pending(root, config, live, before, facts, entry.invocations_before, entry)
    return finish(pending, {c.nevra for c in changes}, live_actions=live_actions)
