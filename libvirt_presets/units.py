"""Unit names, unit scopes, where systemd keeps unit files and enablement links, and its
boolean words.

Everything here is pure: names in, answers out. The unit-name grammar is the filter that
keeps hostile names (spaces, quotes, `$()`, leading `-`, slashes) away from systemctl.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from operator import itemgetter

from .records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable

_set = object.__setattr__

SYSTEM = "system"
USER = "user"

# Vendor unit directories, relative to the root, per scope. /lib is listed for
# non-merged-/usr roots; a merged root's /lib resolves to /usr/lib and is read once.
VENDOR_DIRS = {
    SYSTEM: ("usr/lib/systemd/system", "lib/systemd/system"),
    USER: ("usr/lib/systemd/user",),
}
# The rest of the unit search path (systemd.unit(5)): the admin's own unit files, which no
# package ships. A unit is new only when no directory of the search path had a file for it.
ADMIN_DIRS = {
    SYSTEM: ("etc/systemd/system", "run/systemd/system", "usr/local/lib/systemd/system"),
    USER: ("etc/systemd/user", "run/systemd/user", "usr/local/lib/systemd/user"),
}
# Where `systemctl enable/disable/mask` put their symlinks (admin state).
ENABLEMENT_DIRS = {
    SYSTEM: "etc/systemd/system",
    USER: "etc/systemd/user",
}

UNIT_TYPES = (
    "service", "socket", "device", "mount", "automount", "swap",
    "target", "path", "timer", "slice", "scope",
)
_TYPES = frozenset(UNIT_TYPES)
# systemd's VALID_CHARS (ASCII only: str.isalnum() would take any letter of Unicode)
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:_.\\-")
_GLOB_CHARS = _NAME_CHARS | frozenset("@*?[]!")
UNIT_NAME_MAX = 255

# The libvirt daemons whose units the plugin manages by default.
LIBVIRT_DAEMONS = (
    "libvirtd", "virtproxyd", "virtlogd", "virtlockd",
    "virtqemud", "virtlxcd", "virtxend", "virtchd", "virtvboxd", "virtvzd", "virtbhyved",
    "virtnetworkd", "virtnwfilterd", "virtstoraged", "virtnodedevd", "virtsecretd",
    "virtinterfaced",
)
DAEMON_UNIT_SUFFIXES = (
    ".service", ".socket", "-ro.socket", "-admin.socket", "-tls.socket", "-tcp.socket",
)
DEFAULT_UNIT_GLOBS = (*(d + s for d in LIBVIRT_DAEMONS for s in DAEMON_UNIT_SUFFIXES), "libvirt-guests.service")

# systemd's parse_boolean(): what unit files and $SYSTEMD_* variables accept, in any case.
# The configuration takes the same words.
TRUE_WORDS = ("1", "yes", "y", "true", "t", "on")
FALSE_WORDS = ("0", "no", "n", "false", "f", "off")


def parse_boolean(value: str) -> bool | None:
    """True, False, or None when `value` is no boolean word (systemd's parse_boolean)."""
    value = value.lower()
    return True if value in TRUE_WORDS else False if value in FALSE_WORDS else None


class UnitKey(tuple[str, str]):
    """A unit as systemd sees it: the same name in the system and user scope are two units.

    A (scope, name) tuple, ordered and hashed as one; written out rather than a
    typing.NamedTuple, whose import dnf's process would pay for (records.py says why)."""

    __slots__ = ()

    def __new__(cls, scope: str, name: str) -> UnitKey:
        return tuple.__new__(cls, (scope, name))

    if TYPE_CHECKING:
        @property
        def scope(self) -> str: ...
        @property
        def name(self) -> str: ...
    else:
        scope = property(itemgetter(0), doc="system or user")
        name = property(itemgetter(1), doc="the unit's name")

    def __getnewargs__(self) -> tuple[str, str]:
        return (self[0], self[1])

    def __repr__(self) -> str:
        return f"UnitKey(scope={self[0]!r}, name={self[1]!r})"

    def __str__(self) -> str:
        return self.name if self.scope == SYSTEM else f"{self.name} (user)"


def _split(name: str) -> tuple[str, str | None, str] | None:
    """(prefix, instance or None, type) of `prefix[@instance].type`, or None when `name` is not
    of that form. String methods, not a regex: compiling one cost 2.3 M instructions at every
    import, and matching it ~12 k per name (every directory entry of every snapshot)."""
    stem, dot, kind = name.rpartition(".")  # a type has no dot: it is what follows the last one
    if not dot or kind not in _TYPES:
        return None
    prefix, at, instance = stem.partition("@")
    if not prefix or not _NAME_CHARS.issuperset(prefix) or not _NAME_CHARS.issuperset(instance):
        return None  # `@` is no name character: a second one is refused here too
    return prefix, instance if at else None, kind


# Cached: both snapshots of a transaction ask about every name in the unit directories (a hit
# costs a sixth of a check); bounded, as a directory may hold any number of names.
@functools.lru_cache(maxsize=4096)
def is_valid_unit_name(name: str) -> bool:
    """systemd's unit-name grammar (unit_name_is_valid): no spaces, quotes, slashes, `$`."""
    if not name or len(name) > UNIT_NAME_MAX or name.startswith("-"):
        return False
    return _split(name) is not None


@functools.lru_cache(maxsize=4096)
def template_of(name: str) -> str | None:
    """`foo@bar.service` -> `foo@.service`; None for a name that is not an instance."""
    parts = _split(name)
    if parts is None or not parts[1]:
        return None
    return f"{parts[0]}@.{parts[2]}"


def is_glob_valid(pattern: str) -> bool:
    """A scope glob may use `*`, `?` and `[...]`; the rest must be unit-name characters."""
    if not pattern or pattern.startswith("-"):
        return False
    if pattern.count("[") != pattern.count("]"):
        return False
    return _GLOB_CHARS.issuperset(pattern)


class _Matcher:
    __slots__ = ("literals", "wildcards")

    def __init__(self, literals: frozenset[str], wildcards: re.Pattern[str] | None) -> None:
        self.literals = literals
        self.wildcards = wildcards

    def matches(self, name: str) -> bool:
        return name in self.literals or bool(self.wildcards and self.wildcards.match(name))


@functools.lru_cache(maxsize=16)
def _matcher(globs: tuple[str, ...]) -> _Matcher:
    """Plain names (the default scope has only those) go in a set; the rest become one regex.
    Compiling ~100 literal names into a regex cost ~15 ms per dnf run for nothing."""
    literals = frozenset(g for g in globs if not any(c in g for c in "*?["))
    wild = [fnmatch.translate(g) for g in globs if g not in literals]
    return _Matcher(literals, re.compile("|".join(wild)) if wild else None)


class Scope(Record):
    """Which units the plugin manages: globs over unit names (both system and user scope)."""

    __slots__ = ("globs", "_matcher")
    globs: tuple[str, ...]
    _matcher: _Matcher | None  # a cache (records.py): made on the first question

    def __init__(self, globs: tuple[str, ...] = DEFAULT_UNIT_GLOBS) -> None:
        _set(self, "globs", globs)
        _set(self, "_matcher", None)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, UnitKey):
            name = name.name
        if not isinstance(name, str):
            return False
        matcher = self._matcher
        if matcher is None:  # asked for every unit of every snapshot: no cache key to hash each time
            matcher = _matcher(self.globs)
            _set(self, "_matcher", matcher)
        if matcher.matches(name):
            return True
        template = template_of(name)
        return bool(template and matcher.matches(template))

    def select(self, units: Iterable[UnitKey]) -> set[UnitKey]:
        return {u for u in units if u in self}
