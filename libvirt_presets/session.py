"""One transaction's story: gather facts before rpm runs, then plan and apply after it.

Front ends call `begin()` before the rpm transaction and `finish()` after it; both are plain
functions over explicit data so the dnf plugin, the CLI and the tests share them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from . import render, report, rpmdb, state
from .config import Config
from .executor import Outcome, apply_live, apply_presets, hold_enablement
from .facts import PackageChange, TransactionFacts
from .planner import Plan, plan_transaction
from .snapshot import Snapshot, read_invocations, take_snapshot
from .systemctl import Systemctl
from .units import SYSTEM, USER

CHECKPOINT_ENV = "LIBVIRT_UNITS_TEST_CHECKPOINT"


class CheckpointError(RuntimeError):
    """Raised on purpose by the test harness to prove the transaction survives our errors."""


def checkpoint(name: str) -> None:
    """Test seam: LIBVIRT_UNITS_TEST_CHECKPOINT=raise:NAME makes step NAME fail."""
    if os.environ.get(CHECKPOINT_ENV) == f"raise:{name}":
        raise CheckpointError(f"forced failure at checkpoint {name}")


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
    began_usec: int


def begin(root: Path, config: Config, changes: Iterable[PackageChange], live: bool) -> Pending:
    checkpoint("snapshot")
    before = take_snapshot(root)
    for problem in before.problems:
        report.warn(problem)
    managed = {u: p for u, p in before.units.items() if u in config.scope}
    facts = TransactionFacts(tuple(changes), rpmdb.owners(root, managed))
    invocations = read_invocations(root) if live and config.restarts else {}
    began = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return Pending(root, config, live, before, facts, invocations, began)


def plan_after(pending: Pending, done_nevras: set[str] | None) -> tuple[Plan, Snapshot]:
    from .presets import load_presets  # the preset files as they are after the transaction

    after = take_snapshot(pending.root)
    facts = pending.facts.with_done(done_nevras)
    presets = {scope: load_presets(pending.root, scope) for scope in (SYSTEM, USER)}
    return plan_transaction(pending.before, after.units, facts, pending.config, presets, pending.live), after


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
        state.write_json(root, state.LAST_TRANSACTION, data)
    except OSError as exc:
        report.warn(f"cannot record the transaction in {state.state_dir(root)}: {exc}")


def finish(pending: Pending, done_nevras: set[str] | None = None,
           systemctl: Systemctl | None = None) -> Outcome:
    checkpoint("finish")
    plan, _ = plan_after(pending, done_nevras)
    outcome = Outcome()
    systemctl = systemctl or Systemctl(pending.root)
    apply_presets(plan, systemctl, outcome)
    hold_enablement(plan, pending.root, outcome)
    if pending.live and pending.config.restarts:
        apply_live(plan, systemctl, pending.invocations_before, pending.began_usec, outcome)
    record_outcome(pending.root, plan, outcome)
    return outcome
