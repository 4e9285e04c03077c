"""Where actions are told: dnf's logger for the admin at the terminal, the journal for later.

Journal entries carry UNIT=, ACTION=, TRIGGER_PACKAGE= so `journalctl ACTION=restart` finds
every restart the plugin ever did.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger("dnf.plugin.libvirt-units")

IDENTIFIER = "libvirt-units"


@functools.cache
def _journal():  # noqa: ANN202 - systemd.journal, or None
    """systemd-python's journal, imported on the first entry (~6 ms): most dnf runs write none."""
    try:
        from systemd import journal
    except ImportError:  # pragma: no cover - absent in minimal roots and on non-systemd hosts
        return None
    return journal


def record(action: str, unit: str, result: str, reason: str, trigger: str | None = None,
           level: int = logging.INFO) -> None:
    """One action on one unit: a log line and a structured journal entry."""
    log.log(level, "libvirt-units: %s %s: %s (%s)", action, unit, result, reason)
    journal = _journal()
    if journal is None:
        return
    fields = {"UNIT": unit, "ACTION": action, "RESULT": result, "REASON": reason,
              "SYSLOG_IDENTIFIER": IDENTIFIER, "PRIORITY": str(_journal_priority(level))}
    if trigger:
        fields["TRIGGER_PACKAGE"] = trigger
    try:
        journal.send(f"{action} {unit}: {result} ({reason})", **fields)
    except (OSError, ValueError):  # no journald listening, or bytes it refuses: the log line is enough
        pass


def warn(message: str, unit: str | None = None, action: str | None = None,
         trigger: str | None = None) -> None:
    """A problem the admin should see, as one line; never raises.

    A failed action on a unit passes unit/action/trigger, so its journal entry carries the
    same UNIT=, ACTION=, TRIGGER_PACKAGE= fields as the successful ones (plus RESULT=failed).
    """
    log.warning("libvirt-units: %s", message)
    journal = _journal()
    if journal is not None:
        fields = {"SYSLOG_IDENTIFIER": IDENTIFIER, "PRIORITY": "4"}
        if unit:
            fields.update(UNIT=unit, RESULT="failed")
        if action:
            fields["ACTION"] = action
        if trigger:
            fields["TRIGGER_PACKAGE"] = trigger
        try:
            journal.send(message, **fields)
        except (OSError, ValueError):
            pass


def _journal_priority(level: int) -> int:
    return 4 if level >= logging.WARNING else 6 if level >= logging.INFO else 7
