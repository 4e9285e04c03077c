"""The pending-plan journal: a transaction's facts survive a dnf killed mid-way.

If dnf dies between the rpm transaction and our step (OOM, SSH drop, Ctrl-C, power loss), the
facts taken before rpm ran — which units existed, their links, what ran — are the only way to
tell new units from old ones afterwards. `begin()` writes them before rpm runs; each completed
step is marked; the next dnf run (or `resume`) finishes the job and removes the file.
"""

from __future__ import annotations

import os
import re
import time

from . import report, state
from .facts import PackageChange, TransactionFacts
from .records import Record
from .snapshot import Snapshot, plain_link_scope
from .units import SYSTEM, USER, UnitKey, is_valid_unit_name
from .words import Change, Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from .host import Root

PENDING = state.PENDING
_set = object.__setattr__
# Step.LIVE_RELOAD is marked before the reload batch runs: a reload leaves no trace the planner
# could see (the invocation ID stays), so a resumed run must not reload again.
STEPS = tuple(Step)  # older journals may also say "links" (a mark nothing read): ignored


def _step(raw: Any) -> Step | None:
    """A step the journal marks done; None for one this version does not know."""
    return Step(raw) if raw in STEPS else None


class JournalError(ValueError):
    """The journal file is not one we can trust (corrupt, unknown version, wrong shape)."""


# the facts from before rpm ran, as encode() writes them and decode() rebuilds them
FACTS = ("units_before", "admin_units_before", "links_before", "owners_before", "changes")
# The CLI's snapshot (plain rpm, dnf5) knows no package list: it records every installed package
# instead, NEVRA -> ID of the rpm transaction that installed it (rpmdb.installed_stamps).
INSTALLED_BEFORE = "installed_before"


class Journal(Record):
    """The journal as written: when it was begun, for a live host or not, the rpmdb cookie and
    the running units' invocation IDs then, the guards placed, the steps done, the installed
    packages (CLI snapshots only), and the facts from before rpm ran in their written form
    (`facts`: decode() rebuilds them). `to_json()` is the file's content."""

    __slots__ = ("created", "live", "rpmdb_cookie", "invocations_before", "guards", "done",
                 "installed_before", "facts")
    created: str | None
    live: bool
    rpmdb_cookie: str | None
    invocations_before: dict[str, str]
    guards: tuple[str, ...]
    done: tuple[Step, ...]
    installed_before: dict[str, int] | None
    facts: dict[str, Any]

    def __init__(self, created: str | None, live: bool, rpmdb_cookie: str | None,
                 invocations_before: dict[str, str], guards: tuple[str, ...] = (), done: tuple[Step, ...] = (),
                 installed_before: dict[str, int] | None = None, facts: dict[str, Any] | None = None) -> None:
        _set(self, "created", created)
        _set(self, "live", live)
        _set(self, "rpmdb_cookie", rpmdb_cookie)
        _set(self, "invocations_before", invocations_before)
        _set(self, "guards", guards)
        _set(self, "done", done)
        _set(self, "installed_before", installed_before)
        _set(self, "facts", {} if facts is None else facts)

    def to_json(self) -> dict[str, Any]:
        data = {"created": self.created, "live": self.live, "rpmdb_cookie": self.rpmdb_cookie,
                "invocations_before": self.invocations_before, **self.facts,
                "done": list(self.done), "guards": list(self.guards)}
        if self.installed_before is not None:
            data[INSTALLED_BEFORE] = self.installed_before
        return data


def _unit(raw: Any) -> UnitKey:
    scope, name = raw
    if scope not in (SYSTEM, USER) or not isinstance(name, str) or not is_valid_unit_name(name):
        raise JournalError(f"bad unit {raw!r}")
    return UnitKey(scope, name)


def encode(before: Snapshot, facts: TransactionFacts, *, live: bool, invocations: dict[str, str],
           rpmdb_cookie: str | None, done: list[str], guards: tuple[str, ...] = (),
           keep_file: Callable[[str], object] | None = None) -> dict[str, Any]:
    """The journal's data; `keep_file` (planner.files_that_matter) drops the files no plan reads."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "live": live,
        "rpmdb_cookie": rpmdb_cookie,
        "invocations_before": invocations,
        "units_before": [[u.scope, u.name, p] for u, p in sorted(before.units.items())],
        "admin_units_before": [[u.scope, u.name, p] for u, p in sorted(before.admin_units.items())],
        "links_before": before.links,
        "owners_before": [[u.scope, u.name, n] for u, n in sorted(facts.owners_before.items())],
        "changes": [{"name": c.name, "nevra": c.nevra, "action": c.action,
                     "files": sorted(filter(keep_file, c.files) if keep_file else c.files)}
                    for c in facts.changes],
        "done": done,
        "guards": list(guards),
    }


def _link(link: Any, target: Any) -> tuple[str, str]:
    """An enablement link as take_snapshot() records it: a plain relative path below
    etc/systemd/{system,user}, and a target without NUL; anything else is a forged journal."""
    if not isinstance(link, str) or not isinstance(target, str) or plain_link_scope(link, target) is None:
        raise JournalError(f"bad link {link!r} -> {target!r}")
    return link, target


def read(data: dict[str, Any]) -> Journal:
    """The journal of the file's data, its facts unread; JournalError when malformed."""
    try:
        if not isinstance(data.get("live"), bool):
            raise JournalError(f"bad live flag {data.get('live')!r}")
        cookie = data["rpmdb_cookie"]
        created = data.get("created")
        if not isinstance(cookie, (str, type(None))) or not isinstance(created, (str, type(None))):
            raise JournalError(f"bad rpmdb cookie {cookie!r} or creation time {created!r}")
        return Journal(
            created=created,
            live=data["live"],
            rpmdb_cookie=cookie,
            invocations_before={str(k): str(v) for k, v in dict(data["invocations_before"]).items()},
            guards=tuple(_unit([SYSTEM, g]).name for g in data.get("guards", [])),
            done=tuple(step for step in map(_step, data["done"]) if step is not None),
            installed_before=decode_installed(data) if INSTALLED_BEFORE in data else None,
            facts={key: data[key] for key in FACTS if key in data},
        )
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
        if isinstance(exc, JournalError):
            raise
        raise JournalError(f"malformed journal: {exc}") from exc


def decode(data: dict[str, Any]) -> tuple[Snapshot, TransactionFacts, Journal]:
    """Rebuild the facts and read the journal; anything malformed raises JournalError (never a
    half-trusted plan)."""
    journal = read(data)
    try:
        before = Snapshot(
            units={_unit(r[:2]): str(r[2]) for r in data["units_before"]},
            links=dict(_link(k, v) for k, v in dict(data["links_before"]).items()),
            admin_units={_unit(r[:2]): str(r[2]) for r in data.get("admin_units_before", [])},
        )
        owners = {_unit(r[:2]): str(r[2]) for r in data["owners_before"]}
        changes = tuple(
            PackageChange(str(c["name"]), str(c["nevra"]), Change(c["action"]), frozenset(map(str, c["files"])))
            for c in data["changes"]
        )
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
        raise JournalError(f"malformed journal: {exc}") from exc
    return before, TransactionFacts(changes, owners), journal


def save(root: Root, journal: Journal, durable: bool = True) -> None:
    """Write the journal (rewritten after every step). Its facts, most of the file, are encoded
    once per journal: they never change, and a marked step re-encodes only the rest."""
    facts = _encoded_facts(journal.facts)
    members = {key: facts[key] if key in facts else state.encode(value) for key, value in journal.to_json().items()}
    state.write_encoded(root, PENDING, members, durable=durable)


# The facts of the journal saved last and their JSON text by key. Journal.replace() (mark_done)
# keeps the same dict, and nothing changes one after read() made it.
_last_facts: tuple[dict[str, Any], dict[str, str]] = ({}, {})


def _encoded_facts(facts: dict[str, Any]) -> dict[str, str]:
    global _last_facts
    if _last_facts[0] is not facts:
        _last_facts = (facts, {key: state.encode(value) for key, value in facts.items()})
    return _last_facts[1]


def mark_done(root: Root, journal: Journal, step: Step) -> Journal:
    """The journal with `step` done, saved. Steps are idempotent (drop-ins removed, links
    restored to a recorded state, presets of the same new units, try-restarts of units whose
    invocation ID already changed are skipped): a mark lost to a power cut only means a step
    done twice. No fsync for these."""
    journal = journal.replace(done=(*journal.done, step))
    save(root, journal, durable=False)
    return journal


def clear(root: Root) -> None:
    try:
        os.unlink(os.path.join(root, state.STATE_DIR, PENDING))
    except FileNotFoundError:
        pass


def quarantine(root: Root, why: str) -> JournalError:
    """Move an unusable journal aside (never over an earlier one) and say so in one line; the
    error to raise: its transaction cannot be completed, which front ends report (exit 2)."""
    path = os.path.join(state.state_dir(root), PENDING)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = f"{path}.corrupt-{stamp}"
    for n in range(2, 1000):
        if not os.path.lexists(aside):
            break
        aside = f"{path}.corrupt-{stamp}-{n}"
    try:
        os.rename(path, aside)
    except OSError:
        pass
    why = why.replace(f"{path}: ", "").replace(f"{path}:", "line ")  # the path is said once
    report.warn(f"{path}: unusable journal ({why}), moved to {os.path.basename(aside)}; its transaction was not "
                "completed: compare the units with 'dnf libvirt-units status'")
    return JournalError(f"unusable journal moved to {aside}")


def load(root: Root) -> dict[str, Any] | None:
    """The unfinished journal's data (read() and decode() make sense of it), or None. A corrupt
    one is moved aside with a warning and JournalError is raised: there was a transaction, and
    it cannot be completed."""
    path = os.path.join(state.state_dir(root), PENDING)
    try:
        return state.read_json(root, PENDING)
    except OSError as exc:  # a symlinked path, an unreadable file: refuse, touch nothing
        report.warn(f"{path}: journal refused: {exc}")
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        raise quarantine(root, str(exc)) from exc


def decode_installed(data: dict[str, Any]) -> dict[str, int]:
    """The installed packages a CLI snapshot recorded; JournalError when malformed."""
    raw = data.get(INSTALLED_BEFORE)
    if not isinstance(raw, dict):
        raise JournalError(f"malformed journal: {INSTALLED_BEFORE} is not a mapping")
    for nevra, tid in raw.items():
        if not isinstance(nevra, str) or not re.fullmatch(NEVRA, nevra) or type(tid) is not int:
            raise JournalError(f"malformed journal: bad installed package {nevra!r}: {tid!r}")
    return dict(raw)


# name-[epoch:]version-release.arch with the characters rpm accepts in a version and a release:
# anything else would make rpm's own version comparison raise later (rpmdiff.changes_between).
# compiled on first use (re caches it): only a resumed journal of the standalone CLI needs it
NEVRA = r"[^\s/]+-(?:\d+:)?[A-Za-z0-9._+~^]+-[A-Za-z0-9._+~^]+\.[A-Za-z0-9_]+"
