# Copyright: the libvirt-units authors
# GNU Lesser General Public License v2.1+ (see the libvirt-units repository)
"""Fleet views of libvirt_units results, computed on the controller.

fleet_summary: from every host's plan and check, one view of the rollout: per unit and action,
how many hosts and which; the hosts held back with their reasons; the hosts ready to upgrade.

plan_mismatches: after a host's transaction, how its last-transaction record differs from the
plan gathered before it (an empty list: the run did what the dry run said).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# How the record's outcome names each live action of the plan.
OUTCOME_KEYS = (("restart", "restarted"), ("reload", "reloaded"), ("start", "started"), ("stop", "stopped"))
QUIET_ACTIONS = ("none",)
# The order of actions in a summary line: what changes a unit's enablement, then what the daemons
# go through, then what is only kept or guarded meanwhile.
ACTION_ORDER = ("preset:enable", "preset:disable", "preset:ignore", "preset", "restart", "reload", "start",
                "stop", "keep", "guard")
NAMES_SHOWN = 8


def _action_order(action):
    return ACTION_ORDER.index(action) if action in ACTION_ORDER else len(ACTION_ORDER)


def _names(hosts):
    """Host names for a line people read: the first few, then how many more."""
    shown = ", ".join(hosts[:NAMES_SHOWN])
    return shown + (" and %d more" % (len(hosts) - NAMES_SHOWN) if len(hosts) > NAMES_SHOWN else "")


def _get(mapping, key):
    """hostvars[host][key], a registered result, or None (no such host, never registered)."""
    try:
        return mapping[key]
    except (KeyError, TypeError):
        return None
    except Exception:  # noqa: BLE001 - an undefined hostvar raises Ansible's own error
        return None


def _reasons(plan, check):
    """Why a host must not be upgraded, as short lines (none: it is ready)."""
    reasons = []
    if not isinstance(plan, dict) or plan.get("skipped"):
        reasons.append("no plan (host unreachable, or failed before planning)")
    elif plan.get("failed"):
        reasons.append("plan failed: %s" % plan.get("msg", "unknown error"))
    if not isinstance(check, dict) or check.get("skipped"):
        reasons.append("no check (host unreachable, or failed before checking)")
    else:
        for problem in check.get("problems") or []:
            reasons.append("%s: %s" % (problem.get("kind", "problem"), problem.get("message", "")))
        if check.get("failed") and not check.get("problems"):
            reasons.append("check failed: %s" % check.get("msg", "unknown error"))
    return reasons


def fleet_summary(hostvars, hosts, plan_var="libvirt_units_plan", check_var="libvirt_units_check"):
    """One view of the rollout from each host's registered plan and check results.

    Returns a dict with:
      units: {unit: {action: {"count": N, "hosts": [...]}}} (the action "none" left out)
      hosts: {host: {"ready": bool, "reasons": [...], "actions": {unit: [...]},
                     "transaction": [...], "guards": [...]}}
      ready: the hosts to upgrade; held: {host: [reason, ...]}
      lines: the same for people: one line per unit with its actions, host counts and (the first
             few) host names; then one line per held host; then the ready hosts.
    """
    summary = {"units": {}, "hosts": {}, "ready": [], "held": {}, "lines": []}
    for host in hosts:
        host_vars = _get(hostvars, host) or {}
        plan, check = _get(host_vars, plan_var), _get(host_vars, check_var)
        reasons = _reasons(plan, check)
        good = plan if isinstance(plan, dict) and not plan.get("failed") else {}
        actions = {}
        for row in good.get("units") or []:
            kept = [a for a in row.get("actions") or [] if a not in QUIET_ACTIONS]
            if kept:
                actions[row["unit"]] = kept
        summary["hosts"][host] = {
            "ready": not reasons,
            "reasons": reasons,
            "actions": actions,
            "transaction": good.get("transaction") or [],
            "guards": good.get("guards") or [],
        }
        if reasons:
            summary["held"][host] = reasons
        else:
            summary["ready"].append(host)
        for unit, unit_actions in actions.items():
            for action in unit_actions:
                entry = summary["units"].setdefault(unit, {}).setdefault(action, {"count": 0, "hosts": []})
                entry["count"] += 1
                entry["hosts"].append(host)
    for unit in sorted(summary["units"]):
        by_action = summary["units"][unit]
        parts = ["%s %d (%s)" % (action, by_action[action]["count"], _names(by_action[action]["hosts"]))
                 for action in sorted(by_action, key=_action_order)]
        summary["lines"].append("%-28s %s" % (unit, "; ".join(parts)))
    for host in hosts:
        if host in summary["held"]:
            summary["lines"].append("HELD BACK %s: %s" % (host, "; ".join(summary["held"][host])))
    summary["lines"].append("ready to upgrade: %s" % (", ".join(summary["ready"]) or "none"))
    return summary


def plan_mismatches(plan, record):
    """How a last-transaction record differs from the plan gathered before the transaction.

    Compares each unit's actions, the guards, and the outcome (every unit planned for a
    restart/reload/start/stop was restarted/reloaded/started/stopped, and nothing else, each
    at most once). Returns one line per difference.
    """
    if not isinstance(record, dict):
        return ["no last-transaction record"]
    if not isinstance(plan, dict):
        return ["no plan"]
    found = []
    planned = dict((u["unit"], list(u.get("actions") or [])) for u in plan.get("units") or [])
    done = dict((u["unit"], list(u.get("actions") or [])) for u in record.get("units") or [])
    for unit in sorted(set(planned) | set(done)):
        if planned.get(unit) != done.get(unit):
            found.append("%s: planned %s, done %s" % (unit, planned.get(unit), done.get(unit)))
    if sorted(plan.get("guards") or []) != sorted(record.get("guards") or []):
        found.append("guards: planned %s, done %s" % (sorted(plan.get("guards") or []),
                                                      sorted(record.get("guards") or [])))
    outcome = record.get("outcome") or {}
    for action, key in OUTCOME_KEYS:
        expected = sorted(u for u, acts in planned.items() if action in acts)
        actual = list(outcome.get(key) or [])
        if sorted(actual) != expected:
            found.append("%s: planned %s, outcome %s" % (key, expected, sorted(actual)))
        twice = sorted(set(u for u in actual if actual.count(u) > 1))
        if twice:
            found.append("%s more than once: %s" % (key, twice))
    for warning in outcome.get("warnings") or []:
        found.append("warning: %s" % warning)
    return found


def rollout_report(hostvars, summary, verify_var="libvirt_units_verify"):
    """After the rollout: per host, "held" (with the reasons), "verified", or "failed" (the
    upgrade or its verification failed, or the run stopped before the host's batch)."""
    report = {}
    for host, view in (summary.get("hosts") or {}).items():
        if not view.get("ready"):
            report[host] = {"state": "held", "reasons": view.get("reasons") or []}
            continue
        verify = _get(_get(hostvars, host) or {}, verify_var)
        if not isinstance(verify, dict):
            report[host] = {"state": "failed", "reasons": ["not verified (upgrade failed or never ran)"]}
        elif verify.get("problems") or verify.get("mismatches"):
            report[host] = {"state": "failed", "reasons": list(verify.get("mismatches") or []) + [
                "%s: %s" % (p.get("kind", "problem"), p.get("message", "")) for p in verify.get("problems") or []]}
        else:
            report[host] = {"state": "verified", "reasons": []}
    return report


class FilterModule(object):
    def filters(self):
        return {"fleet_summary": fleet_summary, "plan_mismatches": plan_mismatches,
                "rollout_report": rollout_report}
