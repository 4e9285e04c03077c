"""What the transaction does, as plain data: which packages come and go, and their files.

Front ends (the dnf 4 plugin, the standalone CLI around rpm) fill these records; the planner
reads only these, never dnf or rpm objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol

from .units import SYSTEM, VENDOR_DIRS, UnitKey, is_valid_unit_name

INSTALL = "install"
UPGRADE = "upgrade"
DOWNGRADE = "downgrade"
REINSTALL = "reinstall"
OBSOLETE = "obsolete"  # an incoming package that replaces another name
ERASE = "erase"  # outgoing: removed, upgraded, downgraded, reinstalled or obsoleted
INBOUND = (INSTALL, UPGRADE, DOWNGRADE, REINSTALL, OBSOLETE)


@dataclass(frozen=True)
class PackageChange:
    name: str
    nevra: str
    action: str
    files: frozenset[str] = frozenset()
    # False when rpm reported this element as failed: act only on what really changed
    done: bool = True

    @property
    def inbound(self) -> bool:
        return self.action in INBOUND


@dataclass(frozen=True)
class TransactionFacts:
    changes: tuple[PackageChange, ...] = ()
    # unit -> nevra of the installed package that owned it before the transaction
    owners_before: dict[UnitKey, str] = field(default_factory=dict)

    @property
    def incoming(self) -> tuple[PackageChange, ...]:
        return tuple(c for c in self.changes if c.inbound)

    def units_shipped(self) -> dict[UnitKey, PackageChange]:
        """Units whose vendor file an incoming package carries, with that package."""
        shipped: dict[UnitKey, PackageChange] = {}
        for change in self.incoming:
            for key in units_in_files(change.files):
                shipped.setdefault(key, change)
        return shipped

    def with_done(self, done_nevras: set[str] | None) -> TransactionFacts:
        if done_nevras is None:
            return self
        changes = tuple(
            PackageChange(c.name, c.nevra, c.action, c.files, c.nevra in done_nevras)
            for c in self.changes
        )
        return TransactionFacts(changes, self.owners_before)


class UnitStateLike(Protocol):
    """What the live planner reads of a service's manager state (ServiceState here, and
    systemctl.UnitState from `systemctl show`, both have it)."""

    @property
    def load_state(self) -> str: ...
    @property
    def active_state(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def refuse_manual_stop(self) -> bool: ...
    @property
    def invocation_id(self) -> str: ...


@dataclass(frozen=True)
class ServiceState:
    """A service as the manager has it, read without a process (snapshot.read_service_states)."""

    name: str
    load_state: str = ""
    active_state: str = ""
    type: str = ""
    refuse_manual_stop: bool = False
    invocation_id: str = ""


@dataclass(frozen=True)
class LiveFacts:
    """The running manager, as far as the live decisions need it.

    `active_before`: unit -> invocation ID, for every unit running before rpm ran (a new ID
    means a new start). `states`: the managed services as they are now (after rpm, or before it
    for a dry run). `triggers`: socket/path/timer -> the service it starts. `guarded`: the units
    begin() guarded, or None while that is still to decide (before rpm, and the dry run).
    `marked`: guarded services still carrying a restart mark after rpm (read only when our rpm
    trigger did not run; doc/markers.md).
    """

    active_before: Mapping[str, str] = field(default_factory=dict)
    states: Mapping[str, UnitStateLike] = field(default_factory=dict)
    triggers: Mapping[str, str] = field(default_factory=dict)
    guarded: tuple[str, ...] | None = None
    marked: tuple[str, ...] = ()


_UNIT_DIR_SCOPES = {"/" + d + "/": scope for scope, dirs in VENDOR_DIRS.items() for d in dirs}
UNIT_DIR_PREFIXES = tuple(_UNIT_DIR_SCOPES)


def units_in_files(files: frozenset[str] | set[str] | list[str]) -> set[UnitKey]:
    """Unit files among absolute paths from an rpm header."""
    prefixes = _UNIT_DIR_SCOPES
    found: set[UnitKey] = set()
    for path in files:
        if not path.startswith(UNIT_DIR_PREFIXES):  # most files: one C-level test, no split
            continue
        head, _, name = path.rpartition("/")
        scope = prefixes.get(head + "/")
        if scope and is_valid_unit_name(name):
            found.add(UnitKey(scope, name))
    return found


__all__ = ["LiveFacts", "PackageChange", "ServiceState", "TransactionFacts", "units_in_files", "SYSTEM"]
