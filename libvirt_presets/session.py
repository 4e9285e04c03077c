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

from . import report, rpmdb
from .config import Config
from .executor import Outcome, apply_live, apply_presets, hold_enablement
from .facts import PackageChange, TransactionFacts
from .planner import Plan, plan_transaction
from .snapshot import Snapshot, read_invocations, take_snapshot
from .systemctl import Systemctl

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
    after = take_snapshot(pending.root)
    facts = pending.facts.with_done(done_nevras)
    return plan_transaction(pending.before, after.units, facts, pending.config), after


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
    return outcome
