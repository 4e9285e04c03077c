"""`check`: configurations that break a host although every package installed cleanly.

The seed's failure is the model: `libvirtd.socket` and `virtproxyd.socket` both enabled, both
listening on /run/libvirt/libvirt-sock; systemd starts one and the other fails, silently.
"""

from __future__ import annotations

import os

from .records import Record
from .snapshot import Snapshot, link_scope, read_unit_settings
from .units import ENABLEMENT_DIRS, UnitKey, is_valid_unit_name, parse_boolean
from .words import ProblemKind

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .host import Root

_set = object.__setattr__

LISTEN_KEYS = ("ListenStream", "ListenDatagram", "ListenSequentialPacket", "ListenFIFO",
               "ListenSpecial", "ListenNetlink", "ListenMessageQueue", "ListenUSBFunction")


class Problem(Record):
    __slots__ = ("kind", "units", "message")
    kind: ProblemKind
    units: tuple[str, ...]
    message: str

    def __init__(self, kind: ProblemKind, units: tuple[str, ...], message: str) -> None:
        _set(self, "kind", kind)
        _set(self, "units", units)
        _set(self, "message", message)


def enabled_units(snapshot: Snapshot) -> set[UnitKey]:
    """Units with a wants/requires link in /etc (what `enable` makes), masked ones excluded."""
    enabled = set()
    for link, target in snapshot.links.items():
        parts = link.split("/")
        if target == "/dev/null" or len(parts) < 5:
            continue
        if parts[-2].endswith((".wants", ".requires", ".upholds")):
            scope = link_scope(link)
            if scope is not None:
                enabled.add(UnitKey(scope, parts[-1]))
    return enabled


def find_problems(root: Root, snapshot: Snapshot, managed: set[UnitKey]) -> list[Problem]:
    problems: list[Problem] = []
    enabled = enabled_units(snapshot)
    listeners: dict[tuple[str, str], list[str]] = {}
    for unit in sorted(u for u in enabled & managed if u.name.endswith(".socket")):
        settings = read_unit_settings(root, snapshot, unit)
        for key in LISTEN_KEYS:
            for address in settings.get(key, []):
                listeners.setdefault((unit.scope, address), []).append(unit.name)
        service = (settings.get("Service") or [unit.name[: -len(".socket")] + ".service"])[-1]
        if not parse_boolean(settings.get("Accept", ["no"])[-1]):
            svc = UnitKey(unit.scope, service)
            etc = os.path.join(root, ENABLEMENT_DIRS[unit.scope], service)
            if svc not in snapshot.units and not os.path.exists(etc):
                problems.append(Problem(ProblemKind.MISSING_SERVICE, (unit.name,),
                                        f"{unit.name} is enabled but its service {service} is not installed"))
    for (_, address), units in sorted(listeners.items()):
        if len(units) > 1:
            problems.append(Problem(
                ProblemKind.SOCKET_CONFLICT, tuple(units),
                f"{' and '.join(units)} are both enabled and listen on {address}: "
                f"only one of them can start (disable one)"))
    for link, target in sorted(snapshot.links.items()):
        name = os.path.basename(link)
        unit_name = name if is_valid_unit_name(name) else os.path.basename(target)
        scope = link_scope(link)
        if scope is None or UnitKey(scope, unit_name) not in managed or target == "/dev/null":
            continue
        base = root if os.path.isabs(target) else os.path.join(root, os.path.dirname(link))
        resolved = os.path.join(base, target.lstrip("/"))
        if not os.path.exists(resolved):
            problems.append(Problem(ProblemKind.DANGLING_LINK, (unit_name,),
                                    f"/{link} points to {target}, which does not exist"))
    return problems
