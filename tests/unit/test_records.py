"""records.Record: what `@dataclass(frozen=True)` gave, and caches that are no fields."""

from __future__ import annotations

import copy
import pickle

import pytest

from libvirt_presets.records import Record
from libvirt_presets.units import DEFAULT_UNIT_GLOBS, Scope, UnitKey

_set = object.__setattr__


class Pair(Record):
    __slots__ = ("left", "right")
    left: int
    right: tuple[int, ...]

    def __init__(self, left: int, right: tuple[int, ...] = ()) -> None:
        _set(self, "left", left)
        _set(self, "right", right)


class Triple(Pair):
    __slots__ = ("third",)
    third: str

    def __init__(self, left: int, right: tuple[int, ...] = (), third: str = "") -> None:
        super().__init__(left, right)
        _set(self, "third", third)


def test_records_compare_hash_print_and_replace_by_their_fields():
    assert Pair(1, (2,)) == Pair(1, (2,)) and Pair(1) != Pair(2)
    assert hash(Pair(1, (2,))) == hash(Pair(1, (2,)))
    assert repr(Pair(1, (2,))) == "Pair(left=1, right=(2,))"
    assert Pair(1).replace(right=(3,)) == Pair(1, (3,))
    with pytest.raises(AttributeError):
        Pair(1).left = 2  # type: ignore[misc]


def test_a_subclass_has_its_own_fields_whichever_class_was_asked_first():
    assert repr(Triple(1, (), "x")) == "Triple(left=1, right=(), third='x')"
    assert Triple(1, (), "x") != Triple(1, (), "y")
    assert Pair(1) != Triple(1)  # another class is never equal
    assert repr(Pair(5)) == "Pair(left=5, right=())"


def test_a_cache_slot_is_no_field():
    asked, fresh = Scope(DEFAULT_UNIT_GLOBS), Scope(DEFAULT_UNIT_GLOBS)
    assert UnitKey("system", "libvirtd.service") in asked  # fills its matcher cache
    assert asked == fresh and hash(asked) == hash(fresh)
    assert repr(asked) == repr(fresh) and "_matcher" not in repr(asked)
    for twin in (copy.copy(asked), pickle.loads(pickle.dumps(asked)), asked.replace()):
        assert twin == asked and "libvirtd.socket" in twin and "sshd.service" not in twin
