"""Plans, status and problems as text tables for people and as JSON for programs.

The JSON shape is documented in doc/json.md and doc/libvirt-units.schema.json; tests validate
every command's output against that schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .checks import Problem
from .planner import Plan, UnitPlan


@dataclass(frozen=True)
class UnitStatus:
    row: UnitPlan
    enablement: str = ""
    preset: str = ""
    preset_reason: str = ""
    active: str | None = None

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
    enablement = enablement or {}
    units = [row_json(r, {"enablement": enablement[str(r.unit)]} if str(r.unit) in enablement else None)
             for r in plan.rows]
    return {"command": command, "root": root, "transaction": list(transaction), "units": units,
            "problems": [], "guards": list(plan.live.guard)}


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
    ("restored", "Kept", "enablement put back as the admin left it"),
    ("restarted", "Restarted", ""),
    ("reloaded", "Reloaded", ""),
    ("started", "Started again", ""),
    ("stopped", "Stopped", ""),
    ("unmarked", "Unmarked", ""),
)


def summary(record: dict[str, Any]) -> list[str]:
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
    return lines


def _preset_word(unit_actions: Sequence[str]) -> str:
    for action in unit_actions:
        if action.startswith("preset:"):
            return {"enable": "enabled", "disable": "disabled"}.get(action[7:], action[7:])
    return "preset"


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
    when = f"{record.get('started') or '?'} to {record.get('finished') or '?'}"
    head = (f"last transaction: {when}" + (f", dnf history {history}" if history is not None else "")
            + f", {len(record.get('transaction', []))} package change(s) in {record.get('root')}")
    return "\n".join([head, *("  " + line for line in summary(record))])


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


@dataclass
class Table:
    headers: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)

    def __str__(self) -> str:
        widths = [max(len(str(c)) for c in col) for col in zip(self.headers, *self.rows)]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
                 for r in [self.headers, *self.rows]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def plan_table(plan: Plan, enablement: dict[str, str]) -> str:
    table = Table(("unit", "package before -> after", "now", "actions", "why"))
    for r in plan.rows:
        change = f"{_short(r.package_before)} -> {_short(r.package_after)}"
        table.rows.append((str(r.unit), change, enablement.get(str(r.unit), ""), ", ".join(r.actions),
                           "; ".join(r.reasons)))
    text = str(table) if table.rows else "no managed unit is touched by this transaction"
    if plan.live.guard:
        text += ("\nguarded against stops and restarts by scriptlets while rpm runs: "
                 + " ".join(plan.live.guard))
    return text


def _short(nevra: str | None) -> str:
    """name-version-release without the arch: the table is for people, JSON keeps the NEVRA."""
    return nevra.rsplit(".", 1)[0] if nevra else "-"


def status_table(statuses: Sequence[UnitStatus]) -> str:
    table = Table(("unit", "package", "enablement", "preset", "drift", "active", "preset rule"))
    for st in statuses:
        table.rows.append((str(st.row.unit), st.row.package_after or "-", st.enablement, st.preset,
                           "yes" if st.drift else "", st.active or "", st.preset_reason))
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
