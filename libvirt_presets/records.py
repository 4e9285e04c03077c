"""Immutable typed records, without `dataclasses`.

dnf imports this package inside every transaction, and `@dataclass` writes and exec()s the
source of several methods for each class it decorates: for our ~20 records that was a third of
the plugin's whole cost on a small transaction (issue 16). So a record is a plain class: its
fields are its `__slots__` (annotated in the class body, in the same order), its typed
`__init__` takes them in that order and sets them with `object.__setattr__`, and `Record` gives
what `@dataclass(frozen=True)` did: no assignment, equality and hashing by field values, a
`Name(field=value, ...)` repr, and `replace()`.
"""

from __future__ import annotations

from operator import attrgetter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, ClassVar, TypeVar

    R = TypeVar("R", bound="Record")


def _no_fields(record: object) -> tuple[()]:
    return ()


class Record:
    __slots__ = ()

    # per class, set once when it is defined: its fields, and a getter of their values as a tuple
    _fields: ClassVar[tuple[str, ...]] = ()
    _values: ClassVar[Callable[[Any], tuple[Any, ...]]] = staticmethod(_no_fields)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: list[str] = []
        for klass in reversed(cls.__mro__):
            slots = klass.__dict__.get("__slots__", ())
            fields += [s for s in ((slots,) if isinstance(slots, str) else slots)
                       if s not in fields and s not in ("__dict__", "__weakref__")]
        cls._fields = tuple(fields)
        if len(fields) > 1:
            cls._values = staticmethod(attrgetter(*fields))
        elif fields:
            one = attrgetter(fields[0])
            cls._values = staticmethod(lambda record: (one(record),))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot assign to {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        values = type(self)._values
        return values(self) == values(other)

    def __hash__(self) -> int:
        return hash(type(self)._values(self))  # TypeError for a dict field, as a frozen dataclass

    def __repr__(self) -> str:
        pairs = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields, type(self)._values(self)))
        return f"{type(self).__qualname__}({pairs})"

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, type(self)._values(self)  # copy and pickle, through __init__

    def replace(self: R, **changes: Any) -> R:
        """A copy with `changes` applied, made by the class's own `__init__`."""
        values = dict(zip(self._fields, type(self)._values(self)))
        values.update(changes)
        return type(self)(**values)
