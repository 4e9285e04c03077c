"""What the transaction does, as plain data: which packages come and go, and their files.

Front ends (the dnf 4 plugin, the standalone CLI around rpm) fill these records; the planner
reads only these, never dnf or rpm objects.
"""

from __future__ import annotations

from .records import Record
from .units import SYSTEM, VENDOR_DIRS, UnitKey, is_valid_unit_name
from .words import Change

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Protocol

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


_set = object.__setattr__

# the package changes by their names here, for the front ends (words.Change says what each is)
INSTALL = Change.INSTALL
UPGRADE = Change.UPGRADE
DOWNGRADE = Change.DOWNGRADE
REINSTALL = Change.REINSTALL
OBSOLETE = Change.OBSOLETE
ERASE = Change.ERASE
INBOUND = (INSTALL, UPGRADE, DOWNGRADE, REINSTALL, OBSOLETE)


class PackageChange(Record):
    __slots__ = ("name", "nevra", "action", "files", "done")
    name: str
    nevra: str
    action: Change
    files: frozenset[str]
    # False when rpm reported this element as failed: act only on what really changed
    done: bool

    def __init__(self, name: str, nevra: str, action: Change, files: frozenset[str] = frozenset(),
                 done: bool = True) -> None:
        _set(self, "name", name)
        _set(self, "nevra", nevra)
        _set(self, "action", action)
        _set(self, "files", files)
        _set(self, "done", done)

    @property
    def inbound(self) -> bool:
        return self.action in INBOUND


class TransactionFacts(Record):
    __slots__ = ("changes", "owners_before")
    changes: tuple[PackageChange, ...]
    # unit -> nevra of the installed package that owned it before the transaction
    owners_before: dict[UnitKey, str]

    def __init__(self, changes: tuple[PackageChange, ...] = (),
                 owners_before: dict[UnitKey, str] | None = None) -> None:
        _set(self, "changes", changes)
        _set(self, "owners_before", {} if owners_before is None else owners_before)

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




class ServiceState(Record):
    """A service as the manager has it, read without a process (snapshot.read_service_states)."""

    __slots__ = ("name", "load_state", "active_state", "type", "refuse_manual_stop", "invocation_id")
    name: str
    load_state: str
    active_state: str
    type: str
    refuse_manual_stop: bool
    invocation_id: str

    def __init__(self, name: str, load_state: str = "", active_state: str = "", type: str = "",
                 refuse_manual_stop: bool = False, invocation_id: str = "") -> None:
        _set(self, "name", name)
        _set(self, "load_state", load_state)
        _set(self, "active_state", active_state)
        _set(self, "type", type)
        _set(self, "refuse_manual_stop", refuse_manual_stop)
        _set(self, "invocation_id", invocation_id)


class LiveFacts(Record):
    """The running manager, as far as the live decisions need it.

    `active_before`: unit -> invocation ID, for every unit running before rpm ran (a new ID
    means a new start). `states`: the managed services as they are now (after rpm, or before it
    for a dry run). `triggers`: socket/path/timer -> the service it starts. `guarded`: the units
    begin() guarded, or None while that is still to decide (before rpm, and the dry run).
    `marked`: guarded services still carrying a restart mark after rpm (read only when our rpm
    trigger did not run; doc/markers.md).
    """

    __slots__ = ("active_before", "states", "triggers", "guarded", "marked")
    active_before: Mapping[str, str]
    states: Mapping[str, UnitStateLike]
    triggers: Mapping[str, str]
    guarded: tuple[str, ...] | None
    marked: tuple[str, ...]

    def __init__(self, active_before: Mapping[str, str] | None = None,
                 states: Mapping[str, UnitStateLike] | None = None,
                 triggers: Mapping[str, str] | None = None,
                 guarded: tuple[str, ...] | None = None, marked: tuple[str, ...] = ()) -> None:
        _set(self, "active_before", {} if active_before is None else active_before)
        _set(self, "states", {} if states is None else states)
        _set(self, "triggers", {} if triggers is None else triggers)
        _set(self, "guarded", guarded)
        _set(self, "marked", marked)


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


__all__ = ["SYSTEM", "LiveFacts", "PackageChange", "ServiceState", "TransactionFacts", "units_in_files"]
