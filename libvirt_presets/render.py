"""Plans, status and problems as text tables for people and as JSON for programs.

The JSON shape is documented in doc/json.md and doc/libvirt-units.schema.json; tests validate
every command's output against that schema.
"""

from __future__ import annotations

import json
import re
import textwrap

from .planner import Plan, UnitPlan
from .records import Record
from .words import Action

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Sequence

    from .checks import Problem  # not imported at run time: a transaction loads no checks

_set = object.__setattr__

WIDTH = 100  # columns of what people read (tables, summaries), as a terminal shows them unwrapped


class UnitStatus(Record):
    __slots__ = ("row", "enablement", "preset", "preset_reason", "active")
    row: UnitPlan
    enablement: str
    preset: str
    preset_reason: str
    active: str | None

    def __init__(self, row: UnitPlan, enablement: str = "", preset: str = "", preset_reason: str = "",
                 active: str | None = None) -> None:
        _set(self, "row", row)
        _set(self, "enablement", enablement)
        _set(self, "preset", preset)
        _set(self, "preset_reason", preset_reason)
        _set(self, "active", active)

    @property
    def drift(self) -> bool:
        """The admin's choice differs from what the preset would make of the unit."""
        wanted = {"enable": "enabled", "disable": "disabled"}.get(self.preset)
        return wanted is not None and self.enablement in ("enabled", "disabled") and self.enablement != wanted


def row_json(row: UnitPlan, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "unit": row.unit.name,
        "scope": row.unit.scope,
        "package_before": row.package_before,
        "package_after": row.package_after,
        "actions": list(row.actions),
        "reasons": list(row.reasons),
        **(extra or {}),
    }


def plan_json(plan: Plan, command: str, root: str, enablement: dict[str, str] | None = None,
              transaction: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    # a transaction's record has no enablement: no unit's name is formatted then
    units = [row_json(r, {"enablement": enablement[str(r.unit)]} if enablement and str(r.unit) in enablement
                      else None) for r in plan.rows]
    return {"command": command, "root": root, "transaction": list(transaction), "units": units,
            "problems": [], "guards": list(plan.live.guard)}


class Outcome(Record):
    """What a transaction's run did (the record's `outcome`): units preset, links restored,
    and the live batches' units, each list in the order it was done."""

    __slots__ = ("preset", "restored_links", "restarted", "reloaded", "started", "stopped", "unmarked", "warnings")
    preset: tuple[str, ...]
    restored_links: tuple[tuple[str, str | None], ...]  # (link, target); None: removed
    restarted: tuple[str, ...]
    reloaded: tuple[str, ...]
    started: tuple[str, ...]
    stopped: tuple[str, ...]
    unmarked: tuple[str, ...]
    warnings: tuple[str, ...]

    def __init__(self, preset: tuple[str, ...] = (), restored_links: tuple[tuple[str, str | None], ...] = (),
                 restarted: tuple[str, ...] = (), reloaded: tuple[str, ...] = (), started: tuple[str, ...] = (),
                 stopped: tuple[str, ...] = (), unmarked: tuple[str, ...] = (), warnings: tuple[str, ...] = ()) -> None:
        _set(self, "preset", preset)
        _set(self, "restored_links", restored_links)
        _set(self, "restarted", restarted)
        _set(self, "reloaded", reloaded)
        _set(self, "started", started)
        _set(self, "stopped", stopped)
        _set(self, "unmarked", unmarked)
        _set(self, "warnings", warnings)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: list(getattr(self, name)) for name in self.__slots__}
        data["restored_links"] = [{"link": link, "target": target} for link, target in self.restored_links]
        return data


class TransactionRecord(Record):
    """The last-transaction record (doc/json.md): the plan as `--dry-run --json` prints it,
    when the transaction started and finished, dnf history's ID of it, and its outcome."""

    __slots__ = ("plan", "root", "transaction", "started", "finished", "history_id", "outcome")
    plan: Plan
    root: str
    transaction: tuple[tuple[str, str], ...]  # (package NEVRA, change)
    started: str | None
    finished: str
    history_id: int | None
    outcome: Outcome

    def __init__(self, plan: Plan, root: str, transaction: tuple[tuple[str, str], ...], started: str | None,
                 finished: str, history_id: int | None, outcome: Outcome) -> None:
        _set(self, "plan", plan)
        _set(self, "root", root)
        _set(self, "transaction", transaction)
        _set(self, "started", started)
        _set(self, "finished", finished)
        _set(self, "history_id", history_id)
        _set(self, "outcome", outcome)

    def to_json(self) -> dict[str, Any]:
        changes = [{"package": nevra, "action": change} for nevra, change in self.transaction]
        data = plan_json(self.plan, "transaction", self.root, transaction=changes)
        data.update(started=self.started, finished=self.finished, history_id=self.history_id,
                    outcome=self.outcome.to_json())
        return data


def status_json(statuses: Iterable[UnitStatus], root: str, pending: Problem | None = None) -> dict[str, Any]:
    units = []
    for st in statuses:
        extra: dict[str, Any] = {"enablement": st.enablement, "preset": st.preset,
                                 "preset_reason": st.preset_reason, "drift": st.drift}
        if st.active is not None:
            extra["active"] = st.active
        units.append(row_json(st.row, extra))
    problems = [{"kind": pending.kind, "units": [], "message": pending.message}] if pending else []
    return {"command": "status", "root": root, "transaction": [], "units": units, "problems": problems}


def problems_json(problems: Sequence[Problem], root: str, units: Sequence[UnitPlan] = ()) -> dict[str, Any]:
    return {"command": "check", "root": root, "transaction": [], "units": [row_json(r) for r in units],
            "problems": [{"kind": p.kind, "units": list(p.units), "message": p.message} for p in problems]}


SUMMARY_LINES = (  # outcome key, label, what the unit list means
    ("restored", "Restored", "enablement put back as the admin left it"),
    ("restarted", "Restarted", ""),
    ("reloaded", "Reloaded", ""),
    ("started", "Started again", ""),
    ("stopped", "Stopped", ""),
    ("unmarked", "Unmarked", ""),
)


def summary(record: dict[str, Any], width: int = WIDTH) -> list[str]:
    """The short block a transaction ends with (and `last` prints), in dnf's manner: one
    headline, then one line per kind of action with the units it touched. Per-unit details
    are in the journal and under -v."""
    outcome = record.get("outcome") or {}
    actions = {u.get("unit"): u.get("actions", []) for u in record.get("units", [])}
    preset = [f"{u} ({_preset_word(actions.get(u, []))})" for u in outcome.get("preset", [])]
    restored = sorted({link.get("link", "").rsplit("/", 1)[-1] for link in outcome.get("restored_links", [])})
    lists = {"restored": restored, **{key: outcome.get(key, []) for key, _, _ in SUMMARY_LINES[1:]}}
    counts = [f"{len(preset)} new unit(s) preset"] if preset else []
    counts += [f"{label.lower()} {len(lists[key])}" for key, label, _ in SUMMARY_LINES if lists[key]]
    warnings = outcome.get("warnings", [])
    if warnings:
        counts.append(f"{len(warnings)} warning(s)")
    lines = [", ".join(counts) if counts else "no managed unit needed anything"]
    if preset:
        lines.append("Preset: " + ", ".join(preset))
    for key, label, meaning in SUMMARY_LINES:
        if lists[key]:
            lines.append(f"{label}: {', '.join(lists[key])}" + (f" ({meaning})" if meaning else ""))
    return [part for line in lines for part in wrap(line, width)]


def wrap(line: str, width: int) -> list[str]:
    """textwrap.wrap(line, width, subsequent_indent="  ", break_on_hyphens=False). The lines of
    a summary are words with single spaces, each shorter than a line: those are filled here
    without a TextWrapper and its regular expressions (most of a summary's cost)."""
    words = line.split(" ")
    if not line.isprintable() or "" in words or max(map(len, words)) > width - 2:
        return textwrap.wrap(line, width, subsequent_indent="  ", break_on_hyphens=False)
    lines, current = [], words[0]
    for word in words[1:]:
        if len(current) + 1 + len(word) <= width:
            current += " " + word
        else:
            lines.append(current)
            current = "  " + word  # the indent counts in the width, as in textwrap
    lines.append(current)
    return lines


def _preset_word(unit_actions: Sequence[str]) -> str:
    for action in unit_actions:
        verb = action.partition(":")[2] if action.startswith(f"{Action.PRESET}:") else ""
        if verb:
            return {"enable": "enabled", "disable": "disabled"}.get(verb, verb)
    return str(Action.PRESET)


def empty_json(command: str, root: str) -> dict[str, Any]:
    """`last`/`resume --json` when there is nothing to speak of."""
    return {"command": command, "root": root, "transaction": [], "units": [], "problems": []}


def last_text(record: dict[str, Any] | None, as_json: bool) -> str:
    """What `last` prints: the record of the last transaction, or a line saying there is none."""
    if record is None:
        return dumps(empty_json("last", "")) if as_json else "no transaction recorded yet"
    if as_json:
        return dumps(record)
    history = record.get("history_id")
    head = ("last transaction" + (f" (dnf history {history})" if history is not None else "")
            + f": {len(record.get('transaction', []))} package change(s) in {record.get('root')}")
    when = f"  from {_when(record.get('started'))} to {_when(record.get('finished'))}"
    return "\n".join([head, when, *("  " + line for line in summary(record, WIDTH - 2))])


def _when(stamp: str | None) -> str:
    """2026-12-02T08:44:05Z -> 2026-12-02 08:44:05 UTC (the record keeps ISO 8601)."""
    return stamp.replace("T", " ").replace("Z", " UTC") if stamp else "?"


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


class Table:
    """Columns padded to their widest cell; the last column is wrapped so that no line is longer
    than WIDTH (its continuation lines start under it)."""

    __slots__ = ("headers", "rows")

    def __init__(self, headers: Sequence[str], rows: list[Sequence[str]] | None = None) -> None:
        self.headers = headers
        self.rows: list[Sequence[str]] = [] if rows is None else rows

    def __str__(self) -> str:
        widths = [max(len(str(c)) for c in col) for col in zip(self.headers, *self.rows)]
        lead = sum(w + 2 for w in widths[:-1])
        last = max(WIDTH - lead, 24)
        widths[-1] = min(widths[-1], last)
        lines = []
        for r in [self.headers, *self.rows]:
            head = "  ".join(str(c).ljust(w) for c, w in zip(r[:-1], widths))
            wrapped = textwrap.wrap(str(r[-1]), last, break_on_hyphens=False) or [""]
            lines.append(f"{head}  {wrapped[0]}".rstrip())
            lines += [" " * lead + more for more in wrapped[1:]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


QUIET_ACTIONS = (Action.KEEP, Action.GUARD, Action.NONE)  # the table's default leaves out units with only these
PRESET_RULE = r"[^/\s]+\.preset:\d+"  # "80-libvirt.preset:4" of a preset decision's reason
# patterns, compiled on first use (re caches them): a transaction's record needs neither
PRESET_DIRS = r"/(?:etc|run|usr/local/lib|usr/lib|lib)/systemd/(?:system|user)-preset/"


def acts(row: UnitPlan) -> bool:
    """Whether the transaction changes something of the unit: a preset, a restart, a reload, a
    start or a stop (guards are listed under the table, keeping the state is the default)."""
    return any(a not in QUIET_ACTIONS for a in row.actions)


def _for_people(reason: str) -> str:
    """A preset file by its name: the directories are systemd's own (the JSON says them whole)."""
    return re.sub(PRESET_DIRS, "", reason)


def plan_table(plan: Plan, enablement: dict[str, str], show_all: bool = False) -> str:
    """The dry run for people: the units whose state the transaction changes (every one with
    `show_all`), with the reasons of those changes, then the guards; packages are in the JSON."""
    rows = [r for r in plan.rows if show_all or acts(r)]
    table = Table(("unit", "now", "actions", "why"))
    for r in rows:
        shown = [(a, why) for a, why in zip(r.actions, r.reasons) if show_all or a not in QUIET_ACTIONS]
        table.rows.append((str(r.unit), enablement.get(str(r.unit), ""), ", ".join(a for a, _ in shown),
                           "; ".join(_for_people(why) for _, why in shown)))
    text = str(table) if table.rows else "nothing happens to any managed unit in this transaction"
    quiet = len(plan.rows) - len(rows)
    if quiet:
        text += f"\n{quiet} more managed unit(s) keep their state as it is (--all lists them)"
    if plan.live.guard:
        text += "\n" + "\n".join(textwrap.wrap(
            "guarded against stops and restarts by scriptlets while rpm runs: " + " ".join(plan.live.guard),
            WIDTH, subsequent_indent="  ", break_on_hyphens=False))
    return text


def status_table(statuses: Sequence[UnitStatus]) -> str:
    """The managed units for people: state, what the preset says and where (file:line); the
    owning packages and the rules' text are in the JSON."""
    table = Table(("unit", "enablement", "active", "preset", "drift", "preset rule"))
    for st in statuses:
        rule = re.search(PRESET_RULE, st.preset_reason)
        table.rows.append((str(st.row.unit), st.enablement, st.active or "", st.preset,
                           "yes" if st.drift else "", rule.group(0) if rule else _for_people(st.preset_reason)))
    return str(table) if table.rows else "no managed unit is installed"


def status_text(statuses: Sequence[UnitStatus], root: str, as_json: bool, pending: Problem | None = None) -> str:
    """What `status` prints, for both front ends (dnf command and standalone CLI): the units,
    and an unfinished transaction waiting for `resume` first of all."""
    if as_json:
        return dumps(status_json(statuses, root, pending))
    return (f"{pending.message}\n\n" if pending else "") + status_table(statuses)


def check_text(problems: Sequence[Problem], root: str, as_json: bool) -> str:
    """What `check` prints: one line per problem, or the JSON object."""
    if as_json:
        return dumps(problems_json(problems, root))
    return "\n".join(p.message for p in problems) or "no problems found"
