"""Immutable typed records, without `dataclasses`.

dnf imports this package inside every transaction, and `@dataclass` writes and exec()s the
source of several methods for each class it decorates: for our ~20 records that was a third of
the plugin's whole cost on a small transaction (issue 16). So a record is a plain class: its
fields are its `__slots__` (annotated in the class body, in the same order), its typed
`__init__` takes them in that order and sets them with `object.__setattr__`, and `Record` gives
what `@dataclass(frozen=True)` did: no assignment, equality and hashing by field values, a
`Name(field=value, ...)` repr, and `replace()`. A slot whose name starts with `_` is a cache the
record fills itself, not a field: it takes no part in any of these.
"""

from __future__ import annotations

from operator import attrgetter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar

    R = TypeVar("R", bound="Record")


def _no_fields(record: object) -> tuple[()]:
    return ()


def _layout(cls: type) -> tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]:
    """A record class's fields and a getter of their values as a tuple, made when first needed
    (comparing, hashing, printing, replacing) rather than when the class is made: most records
    of a dnf run are never compared, and each class made ~40,000 instructions dearer counts."""
    layout: tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]] | None = cls.__dict__.get("_record_layout")
    if layout is None:
        fields: list[str] = []
        for klass in reversed(cls.__mro__):
            slots = klass.__dict__.get("__slots__", ())
            fields += [s for s in ((slots,) if isinstance(slots, str) else slots)
                       if s not in fields and not s.startswith("_")]
        if len(fields) > 1:
            values: Callable[[Any], tuple[Any, ...]] = attrgetter(*fields)
        elif fields:
            one = attrgetter(fields[0])
            values = lambda record: (one(record),)  # noqa: E731 - a getter, as attrgetter gives
        else:
            values = _no_fields
        layout = (tuple(fields), values)
        type.__setattr__(cls, "_record_layout", layout)  # the class's own: subclasses make theirs
    return layout


class Record:
    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot assign to {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        values = _layout(self.__class__)[1]
        return values(self) == values(other)

    def __hash__(self) -> int:
        return hash(_layout(self.__class__)[1](self))  # TypeError for a dict field, as a frozen dataclass

    def __repr__(self) -> str:
        fields, values = _layout(self.__class__)
        pairs = ", ".join(f"{name}={value!r}" for name, value in zip(fields, values(self)))
        return f"{type(self).__qualname__}({pairs})"

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, _layout(self.__class__)[1](self)  # copy and pickle, through __init__

    def replace(self: R, **changes: Any) -> R:
        """A copy with `changes` applied, made by the class's own `__init__`."""
        fields, values = _layout(self.__class__)
        updated = dict(zip(fields, values(self)))
        updated.update(changes)
        return type(self)(**updated)
