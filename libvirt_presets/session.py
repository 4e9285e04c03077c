"""One transaction's story: gather facts before rpm runs, then plan and apply after it.

Front ends call `begin()` before the rpm transaction and `finish()` after it; both are plain
functions over explicit data so the dnf plugin, the CLI and the tests share them.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from . import guards as runtime_guards
from . import journal, render, report, rpmdb, rpmdiff, state
from .config import Config
from .executor import Outcome, apply_live, apply_presets, hold_enablement
from .facts import PackageChange, TransactionFacts
from .planner import Plan, files_that_matter, guard_candidates, plan_transaction, predict_units_after
from .presets import load_presets
from .snapshot import Snapshot, read_invocations, take_snapshot
from .systemctl import Systemctl
from .units import SYSTEM, USER

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


def is_live(root: Path) -> bool:
    """True only for the host's own root with systemd as its running init."""
    if os.path.realpath(root) != "/":
        return False
    try:
        from systemd import daemon
    except ImportError:
        return os.path.isdir("/run/systemd/system")
    return bool(daemon.booted())


@dataclass
class Pending:
    """Everything known before rpm ran."""

    root: Path
    config: Config
    live: bool
    before: Snapshot
    facts: TransactionFacts
    # unit -> invocation ID of the units active before rpm ran (live hosts only)
    invocations_before: dict[str, str]
    # the journal as written: facts plus the steps already done
    record: dict = field(default_factory=dict)


def begin(root: Path, config: Config, changes: Iterable[PackageChange], live: bool) -> Pending:
    checkpoint("snapshot")
    before = take_snapshot(root)
    for problem in before.problems:
        report.warn(problem)
    managed = {u: p for u, p in before.units.items() if u in config.scope}
    facts = TransactionFacts(tuple(changes), rpmdb.owners(root, managed))
    invocations = read_invocations(root) if live and config.restarts else {}
    guards: tuple[str, ...] = ()
    if live and config.restarts and config.guard:
        predicted = plan_transaction(before, predict_units_after(before.units, facts), facts, config)
        guards = guard_candidates(predicted, invocations)
    record = journal.encode(before, facts, live=live, invocations=invocations,
                            rpmdb_cookie=rpmdb.cookie(root), done=[], guards=guards,
                            keep_file=files_that_matter(config))
    journal.save(root, record)  # before rpm runs (and before any guard): a killed dnf loses nothing
    if guards:
        guard_services(root, guards)
    checkpoint("after-snapshot")
    return Pending(root, config, live, before, facts, invocations, record)


def guard_services(root: Path, services: tuple[str, ...]) -> None:
    try:
        placed = runtime_guards.place(root, services)
    except OSError as exc:  # no guard is better than no transaction: the batch still runs after
        report.warn(f"cannot guard services while rpm runs: {exc}")
        runtime_guards.remove(root, services)
        return
    result = Systemctl(root).daemon_reload()
    if result.returncode != 0:
        report.warn(f"daemon-reload after placing guards failed: {result.stderr.strip()}")
    report.log.info("libvirt-units: guarding %s against restarts while rpm runs", " ".join(placed))


def plan_after(pending: Pending, done_nevras: set[str] | None) -> tuple[Plan, Snapshot]:
    """The plan from the facts and the root as it is now (preset files included)."""
    after = take_snapshot(pending.root)
    facts = pending.facts.with_done(done_nevras)
    presets = {scope: load_presets(pending.root, scope) for scope in (SYSTEM, USER)}
    plan = plan_transaction(pending.before, after.units, facts, pending.config, presets, pending.live)
    # Bad lines in the preset files matter when a preset is applied: one warning line each, once.
    scopes = sorted({unit.scope for unit in plan.presets})
    for problem in dict.fromkeys(p for scope in scopes for p in presets[scope].problems):
        report.warn(problem)
    return plan, after


def record_outcome(root: Path, plan: Plan, outcome: Outcome) -> None:
    """What the last transaction did, for admins and for `--dry-run` comparisons."""
    data = render.plan_json(plan, "transaction", str(root))
    data["outcome"] = {
        "preset": outcome.preset,
        "restored_links": [{"link": r.link, "target": r.target} for r in outcome.repaired],
        "restarted": list(outcome.live.try_restart) if outcome.live else [],
        "reloaded": list(outcome.live.try_reload) if outcome.live else [],
        "started": list(outcome.live.start) if outcome.live else [],
        "warnings": outcome.warnings,
    }
    try:
        state.write_json(root, state.LAST_TRANSACTION, data, durable=False)  # a report, not state
    except OSError as exc:
        report.warn(f"cannot record the transaction in {state.state_dir(root)}: {exc}")


def finish(pending: Pending, done_nevras: set[str] | None = None,
           systemctl: Systemctl | None = None) -> Outcome:
    """Plan from the facts and the root as it is now, apply, then drop the journal.

    Each step is marked in the journal once done, so a resumed run neither repeats a restart
    nor skips a preset. Presets and link restores are idempotent anyway.
    """
    root, record = pending.root, pending.record
    done = set(record.get("done", []))

    def step(name: str) -> None:
        if record:
            journal.mark_done(root, record, name)

    # First of all, whatever fails later: no service may stay guarded.
    guards = record.get("guards", [])
    unguarded = runtime_guards.remove(root, guards) if "unguard" not in done else []
    step("unguard")
    # The manager forgets a guard only at its next daemon-reload: one is due whenever this
    # transaction placed guards and the live step (which reloads) has not run, even when the
    # files are already gone (a run killed after removing them, before reloading).
    reload_for_guards = bool(guards) and "live" not in done
    checkpoint("finish")
    plan, _ = plan_after(pending, done_nevras)
    triggers = {**plan.restarts, **plan.reloads}
    for unit in unguarded:
        report.record("unguard", unit, "done", "the rpm transaction is over", triggers.get(unit),
                      level=logging.DEBUG)
    outcome = Outcome()
    systemctl = systemctl or Systemctl(root)
    live = pending.live  # decided once: begin() (or resume) asked whether this root is a live host
    # Links first, then presets: on a live host the preset call reloads the manager itself, and
    # that one reload covers the new unit files, the restored links and the removed guards.
    hold_enablement(plan, root, outcome)
    reloaded = False
    if "presets" not in done:
        reloaded = apply_presets(plan, systemctl, outcome, reload=live)
        step("presets")
    checkpoint("mid-actions")
    # A new unit's Also= may have touched an old unit's links: put them back once more.
    repaired_late = hold_enablement(plan, root, outcome) if outcome.preset else 0
    step("links")
    changed = plan.daemon_reload or bool(outcome.repaired) or reload_for_guards
    reload_due = (changed and not reloaded) or repaired_late > 0
    if pending.live and pending.config.restarts and "live" not in done:
        apply_live(plan, systemctl, pending.invocations_before, outcome, force_reload=reload_due)
        step("live")
    elif reload_due and live:
        systemctl.daemon_reload()
    record_outcome(root, plan, outcome)
    journal.clear(root)
    return outcome


def resume(root: Path, config: Config) -> Outcome | None:
    """Finish the transaction an earlier, killed dnf left in the journal (idempotent).

    A journal whose transaction never reached rpm (the rpmdb is unchanged) is discarded: its
    facts describe a transaction that did not happen.
    """
    record = journal.load(root)
    if record is None:
        return None
    try:
        before, facts, meta = journal.decode(record)
    except journal.JournalError as exc:
        journal.quarantine(root, str(exc))
        return None
    if meta["rpmdb_cookie"] is not None and rpmdb.cookie(root) == meta["rpmdb_cookie"]:
        report.warn("discarding the journal of a transaction that never reached rpm")
        if runtime_guards.remove(root, meta["guards"]) and is_live(root):
            Systemctl(root).daemon_reload()
        journal.clear(root)
        return None
    report.warn(f"completing the unfinished transaction recorded in {state.state_dir(root)}")
    if journal.INSTALLED_BEFORE in record:  # a snapshot of the standalone CLI: read rpm's work back
        try:
            return finish_observed(root, config, record)
        except journal.JournalError:
            return None
    installed = rpmdb.installed_nevras(root)
    done_nevras = {c.nevra for c in facts.changes if (c.nevra in installed) == c.inbound}
    live = meta["live"] and is_live(root)
    pending = Pending(root, config, live, before, facts, meta["invocations_before"], record)
    return finish(pending, done_nevras)


# -- transactions nobody describes to us: plain rpm, dnf5's actions plugin ---------------------

def begin_observed(root: Path, config: Config) -> Pending:
    """`begin()` without a package list: the installed packages are recorded as well, so that
    `finish_observed()` can read the transaction back from the rpmdb."""
    installed = rpmdb.installed_stamps(root)
    pending = begin(root, config, (), is_live(root))
    pending.record[journal.INSTALLED_BEFORE] = installed
    journal.save(root, pending.record)
    return pending


def finish_observed(root: Path, config: Config, record: dict) -> Outcome | None:
    """Finish a `begin_observed()` journal: the package changes are the difference between the
    rpmdb then and now. Raises JournalError (the journal moved aside) when it is unusable."""
    try:
        before, facts, meta = journal.decode(record)
        installed_before = journal.decode_installed(record)
    except journal.JournalError as exc:
        journal.quarantine(root, str(exc))
        raise
    if meta["rpmdb_cookie"] is not None and rpmdb.cookie(root) == meta["rpmdb_cookie"]:
        return resume(root, config)  # rpm changed nothing: resume() discards the journal
    installed = rpmdb.installed_stamps(root)
    arrived = rpmdb.installed_packages(root, [n for n, tid in installed.items() if installed_before.get(n) != tid])
    changes = rpmdiff.changes_between(installed_before, installed, arrived)
    facts = TransactionFacts(tuple(changes), facts.owners_before)
    live = meta["live"] and is_live(root)
    pending = Pending(root, config, live, before, facts, meta["invocations_before"], record)
    return finish(pending, {c.nevra for c in changes})
