"""Where actions are told: dnf's logger for the admin at the terminal, journald for later.

journald entries carry UNIT=, ACTION=, TRIGGER_PACKAGE= so `journalctl ACTION=restart` finds
every restart the plugin ever did.
"""

from __future__ import annotations

import functools
import logging

from .gate import LOGGER_NAME

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

log = logging.getLogger(LOGGER_NAME)

IDENTIFIER = "libvirt-units"


def printable(text: str) -> str:
    """`text` with every control or undecodable character (a surrogate) escaped: one log line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@functools.cache
def _sendv() -> Callable[..., object] | None:
    """systemd-python's sendv, loaded on the first entry. Its C module alone: the
    `systemd.journal` wrapper pulls in uuid, platform and datetime, ~15 ms of every dnf run."""
    try:
        from systemd._journal import sendv
    except ImportError:
        try:
            from systemd.journal import sendv
        except ImportError:  # pragma: no cover - absent in minimal roots and on non-systemd hosts
            return None
    found: Callable[..., object] = sendv  # systemd-python has no type stubs
    return found


def _send(message: str, fields: dict[str, str]) -> None:
    sendv = _sendv()
    if sendv is None:
        return
    try:
        sendv(f"MESSAGE={message}", *(f"{key}={value}" for key, value in fields.items()))
    except (OSError, ValueError):  # no journald listening, or bytes it refuses: the log line is enough
        pass


def unit_action(action: str, unit: str, result: str, reason: str, trigger: str | None = None,
                level: int = logging.DEBUG) -> None:
    """One action on one unit (a words.Action): a structured journald entry, and a log line
    under -v (the transaction's summary block says the same in a few lines)."""
    log.log(level, "libvirt-units: %s %s: %s (%s)", action, unit, result, reason)
    fields = {"UNIT": unit, "ACTION": action, "RESULT": result, "REASON": reason,
              "SYSLOG_IDENTIFIER": IDENTIFIER, "PRIORITY": str(_journal_priority(level))}
    if trigger:
        fields["TRIGGER_PACKAGE"] = trigger
    _send(f"{action} {unit}: {result} ({reason})", fields)


def warn(message: str, unit: str | None = None, action: str | None = None,
         trigger: str | None = None) -> None:
    """A problem the admin should see, as one line; never raises.

    A failed action on a unit passes unit/action/trigger, so its journal entry carries the
    same UNIT=, ACTION=, TRIGGER_PACKAGE= fields as the successful ones (plus RESULT=failed).
    """
    log.warning("libvirt-units: %s", message)
    fields = {"SYSLOG_IDENTIFIER": IDENTIFIER, "PRIORITY": "4"}
    if unit:
        fields.update(UNIT=unit, RESULT="failed")
    if action:
        fields["ACTION"] = action
    if trigger:
        fields["TRIGGER_PACKAGE"] = trigger
    _send(message, fields)


def _journal_priority(level: int) -> int:
    return 4 if level >= logging.WARNING else 6 if level >= logging.INFO else 7
