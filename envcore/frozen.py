"""Frozen, slotted records, made without compiling code for each class.

``@dataclass(frozen=True)`` writes the source of six methods for each class (``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, ``__setattr__``, ``__delattr__``) and compiles it: about 1 ms a class on our machine, 18 ms of a CLI
resolve's start for the 17 records of the core it imports (timed per class). :func:`record` lets :mod:`dataclasses` do what it does
without compiling (the fields with their defaults and options, ``__slots__``, ``__match_args__``), so that
:func:`dataclasses.fields`, :func:`dataclasses.replace` and :func:`dataclasses.asdict` work on a record as on any
dataclass, and gives each record the same few methods, closures written once here. Instances behave as those of
``@dataclass(frozen=True, slots=True, kw_only=True)`` (or without ``kw_only``): equal when of one class with equal
compared fields, hashed by them, immutable (:class:`dataclasses.FrozenInstanceError`), copyable and picklable.
(``__dataclass_params__`` says ``init=False, eq=False, frozen=False``: the methods are these, not generated ones.)
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypeVar, overload

T = TypeVar("T")

if TYPE_CHECKING:  # typing has it from Python 3.11 on; it only tells type checkers what record makes
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: object) -> Callable[[T], T]:
        return lambda function: function


_MISSING: Any = dataclasses.MISSING
_assign = object.__setattr__


@overload
@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(dataclasses.field,))
def record(cls: type[T], /) -> type[T]: ...


@overload
def record(*, kw_only: bool = True) -> Callable[[type[T]], type[T]]: ...


def record(cls: type[T] | None = None, /, *, kw_only: bool = True) -> Any:
    """Make ``cls`` a frozen slotted record; its fields are keyword-only unless ``kw_only=False``."""
    if cls is None:
        return lambda given: _make(given, kw_only)
    return _make(cls, kw_only)


def _make(cls: type[T], kw_only: bool) -> type[T]:
    # without a docstring dataclasses describes the class by inspect.signature, which for a class without
    # __init__ parses object's text signature (tokenize's regexes: ~14 ms under the profiler)
    if not cls.__doc__:
        fields_declared = ", ".join(f"{name}: {kind}" for name, kind in inspect.get_annotations(cls).items())
        cls.__doc__ = f"{cls.__name__}({fields_declared})"
    made: Any = dataclasses.dataclass(init=False, repr=False, eq=False, slots=True, kw_only=kw_only)(cls)
    fields = dataclasses.fields(made)
    if any(not f.init for f in fields):
        raise TypeError(f"{made.__qualname__}: a record takes every field in __init__ (no field(init=False))")
    names = tuple(f.name for f in fields)
    plan: tuple[tuple[str, Any, Any], ...] = tuple(
        (f.name, f.default, None if f.default_factory is _MISSING else f.default_factory) for f in fields
    )
    known = frozenset(names)
    compared = _values_of(f.name for f in fields if f.compare)
    hashed = _values_of(f.name for f in fields if (f.compare if f.hash is None else f.hash))
    shown = tuple(f.name for f in fields if f.repr)
    post_init = getattr(made, "__post_init__", None)

    def __init__(self: Any, *args: Any, **given: Any) -> None:
        if args:
            _take_positional(made, kw_only, names, args, given)
        if not known.issuperset(given):
            unknown = next(name for name in given if name not in known)
            raise TypeError(f"{made.__qualname__}() got an unexpected keyword argument {unknown!r}")
        for name, default, factory in plan:
            if name in given:
                value = given[name]
            elif factory is not None:
                value = factory()
            elif default is _MISSING:
                raise TypeError(f"{made.__qualname__}() missing required argument: {name!r}")
            else:
                value = default
            _assign(self, name, value)
        if post_init is not None:
            post_init(self)

    def __repr__(self: Any) -> str:
        shown_fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({shown_fields})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return bool(compared(self) == compared(other))
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(hashed(self))

    def __getstate__(self: Any) -> list[Any]:
        return [getattr(self, name) for name in names]

    def __setstate__(self: Any, state: list[Any]) -> None:
        for name, value in zip(names, state, strict=True):
            _assign(self, name, value)

    __init__.__signature__ = _signature(fields, kw_only)  # type: ignore[attr-defined]
    for method in (__init__, __repr__, __eq__, __hash__, __getstate__, __setstate__):
        if method.__name__ in made.__dict__:
            continue  # written by the class itself: kept, as dataclasses keeps it
        method.__qualname__ = f"{made.__qualname__}.{method.__name__}"
        setattr(made, method.__name__, method)
    made.__setattr__ = _refuse_assignment
    made.__delattr__ = _refuse_deletion
    return made  # type: ignore[no-any-return]


class _Factory:
    """The default shown for a field with a default factory (as dataclasses shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def _signature(fields: tuple[dataclasses.Field[Any], ...], kw_only: bool) -> inspect.Signature:
    """What ``inspect.signature`` (``help()``, notebooks' tooltips) shows of a record's ``__init__``: the
    signature dataclasses would have generated, not the shared ``(*args, **given)``."""
    kind = inspect.Parameter.KEYWORD_ONLY if kw_only else inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for f in fields:
        default = f.default if f.default_factory is _MISSING else _FACTORY
        parameters.append(
            inspect.Parameter(
                f.name,
                kind,
                default=inspect.Parameter.empty if default is _MISSING else default,
                annotation=f.type,
            )
        )
    return inspect.Signature(parameters, return_annotation=None)


def _values_of(names: Any) -> Callable[[Any], tuple[Any, ...]]:
    """The values of ``names`` of a record, always as a tuple (as dataclasses hashes and compares them)."""
    names = tuple(names)
    if len(names) == 1:
        (only,) = names
        return lambda self: (getattr(self, only),)
    if not names:
        return lambda self: ()
    return attrgetter(*names)


def _take_positional(
    cls: type, kw_only: bool, names: tuple[str, ...], args: tuple[Any, ...], given: dict[str, Any]
) -> None:
    if kw_only or len(args) > len(names):
        allowed = 0 if kw_only else len(names)
        raise TypeError(
            f"{cls.__qualname__}() takes {allowed} positional arguments but {len(args)} were given"
        )
    for name, value in zip(names, args, strict=False):
        if name in given:
            raise TypeError(f"{cls.__qualname__}() got multiple values for argument {name!r}")
        given[name] = value


def _refuse_assignment(self: Any, name: str, value: object) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _refuse_deletion(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
