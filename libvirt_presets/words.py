"""The project's vocabularies: every word that crosses a module boundary or reaches JSON, a
log line or a file on disk. doc/glossary.md says what each means and where it shows.

Each is a `StrEnum`: a member *is* its string (`Action.KEEP == "keep"`, json.dumps writes
`"keep"`, an f-string says `keep`), so the JSON, the journal and the log lines read exactly as
the plain strings did. Python 3.11 has `enum.StrEnum`; older ones get the same behaviour here.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.9 and 3.10 (RHEL 9's is 3.9)

    class StrEnum(str, Enum):
        """`enum.StrEnum` of Python 3.11: str() and format() give the value, not `Class.NAME`."""

        __str__ = str.__str__
        __format__ = str.__format__


class Action(StrEnum):
    """What happens to one unit. In the plan (the JSON's `units[].actions`, the dry-run table)
    and in the log lines and journald's `ACTION=` field of what was done."""

    PRESET = "preset"  # the plan without preset files to ask (tests), and the log line of a preset done
    PRESET_ENABLE = "preset:enable"
    PRESET_DISABLE = "preset:disable"
    PRESET_IGNORE = "preset:ignore"  # systemctl leaves the unit alone (an `ignore` rule, an unusable file)
    KEEP = "keep"  # a unit that existed before keeps the enablement the admin gave it
    GUARD = "guard"
    RESTART = "restart"
    RELOAD = "reload"
    START = "start"
    STOP = "stop"
    UNMARK = "unmark"
    NONE = "none"
    # log lines only (what was done): a link put back, a guard taken off, a candidate not restarted
    RESTORE = "restore"
    UNGUARD = "unguard"
    SKIP = "skip"

    @classmethod
    def preset(cls, verb: str) -> Action:
        """The plan's action for what the preset files say (`enable`, `disable`, `ignore`)."""
        return cls(f"{cls.PRESET}:{verb}")


class Policy(StrEnum):
    """What happens to a managed service whose package changed ([policy] in the configuration)."""

    RESTART = "restart"
    RELOAD = "reload"
    NEVER = "never"


class Change(StrEnum):
    """What a transaction does to one package (`PackageChange.action`, the JSON's
    `transaction[].action`, the journal's `changes[].action`)."""

    INSTALL = "install"
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    REINSTALL = "reinstall"
    OBSOLETE = "obsolete"  # an incoming package that replaces another name
    ERASE = "erase"  # outgoing: removed, upgraded, downgraded, reinstalled or obsoleted


class Step(StrEnum):
    """The steps of `session.finish()` the journal marks done (its `done` list)."""

    UNGUARD = "unguard"
    PRESETS = "presets"
    LIVE_RELOAD = "live-reload"  # marked before the reload batch runs: a reload leaves no trace
    LIVE = "live"


class ProblemKind(StrEnum):
    """What `check` found (the JSON's `problems[].kind`)."""

    SOCKET_CONFLICT = "socket-conflict"
    MISSING_SERVICE = "missing-service"
    DANGLING_LINK = "dangling-link"
    CONFIG = "config"
    PENDING = "pending"
