"""A faster constructor for the core's frozen, slotted value dataclasses (Intent, Account).

The backtest builds an Intent and an Account for every entry it asks ``decide()`` about. A
frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__`` (the
frozen class refuses plain assignment), which is most of the cost of building one: about 2.5 us
for an Account, as much as the rest of an entry's bookkeeping. :func:`constructor` gives a
function with the same parameters and defaults that builds the same object (same class, every
field set to what ``__init__`` would set, ``__post_init__`` run) by writing the slots through
their descriptors, which is what ``object.__setattr__`` does after its lookups.

It only takes what it can reproduce exactly: a dataclass with ``__slots__`` whose ``__init__``
parameters are its init fields (no ``InitVar``); for anything else it returns the class itself.
``tests/test_backtest_fastinit.py`` holds the built objects equal, slot by slot, to the
dataclass's own.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from types import MemberDescriptorType
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")

_MISSING = object()


def constructor(cls: type[T], fixed: Mapping[str, Any] | None = None) -> Callable[..., T]:
    """A function building ``cls`` exactly as ``cls(...)`` does, without ``object.__setattr__``
    per field (keyword and positional arguments as ``cls.__init__`` takes them); ``cls`` itself
    when it is not a class this can reproduce (say, compiled with mypyc one day).

    ``fixed``: init fields held at these values (no longer parameters; the others keep their
    order). The caller vouches that ``__post_init__`` reads only these fields: it is then run
    once, on a prototype holding them, and every object gets the slots it set (a fresh copy of
    a dict, list or set, as a fresh run would make) instead of running it again."""
    try:
        return _constructor(cls, dict(fixed or {}))
    except TypeError:
        if fixed:
            raise
        return cls


def _derived(cls: type[Any], fixed: dict[str, Any], fields: Sequence[dataclasses.Field[Any]]
             ) -> dict[str, Any] | None:
    """What ``__post_init__`` sets on an object holding the ``fixed`` fields (by slot), or None
    when the class has none to run."""
    if not hasattr(cls, "__post_init__"):
        return None
    proto = object.__new__(cls)
    for name, value in fixed.items():
        object.__setattr__(proto, name, value)
    for f in fields:  # as __init__ does before __post_init__
        if not f.init and f.default_factory is not dataclasses.MISSING:
            object.__setattr__(proto, f.name, f.default_factory())
        elif not f.init and f.default is not dataclasses.MISSING:
            object.__setattr__(proto, f.name, f.default)
    try:
        proto.__post_init__()
    except AttributeError as exc:  # it read a field that is not fixed
        raise TypeError(f"{cls.__name__}.__post_init__ reads more than {sorted(fixed)}") from exc
    if any(f.init and f.name not in fixed and hasattr(proto, f.name) for f in fields):
        raise TypeError(f"{cls.__name__}.__post_init__ sets an init field")
    return {f.name: getattr(proto, f.name) for f in fields
            if not f.init and hasattr(proto, f.name)}


class Plan(NamedTuple):
    """How an object of a class is built, slot by slot (:func:`plan`), in the slots' order:
    each slot is a parameter (``PARAM``: the next value given), a value held for every object
    (``HELD``), a fresh copy of a held dict, list or set (``COPY``), or a default factory's
    result (``MAKE``, ``value`` the factory; a parameter's factory when it is not given)."""

    cls: type[Any]
    params: tuple[str, ...]  # the parameters, in order (the init fields less the fixed ones)
    defaults: tuple[Any, ...]  # each parameter's default (_MISSING: none; a factory: MAKE)
    slots: tuple[tuple[str, int, Any], ...]  # (name, how, value) per slot set
    post_init: bool  # __post_init__ runs on each object (not run once on a prototype)


PARAM, HELD, COPY, MAKE = 0, 1, 2, 3
MISSING: Any = _MISSING


def plan(cls: type[Any], fixed: Mapping[str, Any] | None = None) -> Plan:
    """How :func:`constructor` builds ``cls`` (``fixed`` as there); a TypeError when it cannot
    reproduce the class's ``__init__``."""
    fixed = dict(fixed or {})
    if not dataclasses.is_dataclass(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a slotted dataclass")
    fields = dataclasses.fields(cls)
    init = [f for f in fields if f.init]
    params = list(inspect.signature(cls.__init__).parameters)[1:]
    if params != [f.name for f in init] or any(f.kw_only for f in init):
        raise TypeError(f"{cls.__name__}.__init__ takes more than its fields")
    if set(fixed) - set(params):
        raise TypeError(f"{cls.__name__} has no init fields {sorted(set(fixed) - set(params))}")
    derived = _derived(cls, fixed, fields) if fixed else None
    names: list[str] = []
    defaults: list[Any] = []
    slots: list[tuple[str, int, Any]] = []
    for f in fields:
        if not isinstance(cls.__dict__.get(f.name), MemberDescriptorType):
            raise TypeError(f"{cls.__name__}.{f.name} is not a slot")
        if f.name in fixed or (derived is not None and not f.init):
            held = fixed if f.name in fixed else derived or {}
            if f.name not in held:  # __post_init__ left it empty
                continue
            value = held[f.name]
            slots.append((f.name, COPY if type(value) in (dict, list, set) else HELD, value))
        elif f.init:
            names.append(f.name)
            if f.default_factory is not dataclasses.MISSING:
                defaults.append(f.default_factory)
                slots.append((f.name, MAKE, f.default_factory))  # when not given
            else:
                defaults.append(_MISSING if f.default is dataclasses.MISSING else f.default)
                slots.append((f.name, PARAM, None))
        elif f.default_factory is not dataclasses.MISSING:
            slots.append((f.name, MAKE, f.default_factory))
        elif f.default is not dataclasses.MISSING:
            slots.append((f.name, HELD, f.default))
        # else: init=False without a default: __init__ leaves the slot empty, so do we
    return Plan(cls, tuple(names), tuple(defaults), tuple(slots),
                hasattr(cls, "__post_init__") and derived is None)


def _constructor(cls: type[T], fixed: dict[str, Any]) -> Callable[..., T]:
    built = plan(cls, fixed)
    ns: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_MISSING": _MISSING}
    args, body = [], ["    self = _new(_cls)"]
    given = dict(zip(built.params, built.defaults, strict=True))
    for name, how, value in built.slots:
        ns[f"_set_{name}"] = cls.__dict__[name].__set__
        ns[f"_value_{name}"] = value
        if how == HELD:
            expr = f"_value_{name}"
        elif how == COPY:
            ns[f"_copy_{name}"] = type(value)
            expr = f"_copy_{name}(_value_{name})"
        elif name in given:  # a parameter: with its default, or its default factory's result
            default = given[name]
            if how == MAKE:
                args.append(f"{name}=_MISSING")
                expr = f"_value_{name}() if {name} is _MISSING else {name}"
            elif default is _MISSING:
                args.append(name)
                expr = name
            else:
                ns[f"_default_{name}"] = default
                args.append(f"{name}=_default_{name}")
                expr = name
        else:  # a default factory, not a parameter
            expr = f"_value_{name}()"
        body.append(f"    _set_{name}(self, {expr})")
    if built.post_init:
        body.append("    self.__post_init__()")
    body.append("    return self")
    src = f"def make({', '.join(args)}):\n" + "\n".join(body) + "\n"
    exec(src, ns)  # the source is built above from the dataclass's own field names
    make: Callable[..., T] = ns["make"]
    make.__name__ = make.__qualname__ = f"make_{cls.__name__}"
    make.__doc__ = (f"Build a {cls.__name__} (same arguments as {cls.__name__}(...)"
                    + (f", less {', '.join(sorted(fixed))})." if fixed else ")."))
    return make
