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
from typing import Any, TypeVar

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


def _held(ns: dict[str, Any], name: str, value: Any) -> str:
    """The expression giving a slot a value held for every object: the value itself, or a
    fresh copy of a dict, list or set (each object its own, as a run of the code gives)."""
    ns[f"_fixed_{name}"] = value
    if type(value) in (dict, list, set):
        ns[f"_copy_{name}"] = type(value)
        return f"_copy_{name}(_fixed_{name})"
    return f"_fixed_{name}"


def _constructor(cls: type[T], fixed: dict[str, Any]) -> Callable[..., T]:
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
    ns: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_MISSING": _MISSING}
    args, body = [], ["    self = _new(_cls)"]
    for f in fields:
        slot: Any = cls.__dict__.get(f.name)
        if not isinstance(slot, MemberDescriptorType):
            raise TypeError(f"{cls.__name__}.{f.name} is not a slot")
        ns[f"_set_{f.name}"] = slot.__set__
        if f.name in fixed:
            value = _held(ns, f.name, fixed[f.name])
        elif derived is not None and not f.init:
            if f.name not in derived:  # __post_init__ left it empty
                continue
            value = _held(ns, f.name, derived[f.name])
        elif f.default_factory is not dataclasses.MISSING:
            ns[f"_make_{f.name}"] = f.default_factory
            if f.init:
                args.append(f"{f.name}=_MISSING")
                value = f"_make_{f.name}() if {f.name} is _MISSING else {f.name}"
            else:
                value = f"_make_{f.name}()"
        elif f.init:
            if f.default is dataclasses.MISSING:
                args.append(f.name)
            else:
                ns[f"_default_{f.name}"] = f.default
                args.append(f"{f.name}=_default_{f.name}")
            value = f.name
        elif f.default is not dataclasses.MISSING:
            ns[f"_default_{f.name}"] = f.default
            value = f"_default_{f.name}"
        else:  # init=False without a default: __init__ leaves the slot empty, so do we
            continue
        body.append(f"    _set_{f.name}(self, {value})")
    if hasattr(cls, "__post_init__") and derived is None:
        body.append("    self.__post_init__()")
    body.append("    return self")
    src = f"def make({', '.join(args)}):\n" + "\n".join(body) + "\n"
    exec(src, ns)  # the source is built above from the dataclass's own field names
    make: Callable[..., T] = ns["make"]
    make.__name__ = make.__qualname__ = f"make_{cls.__name__}"
    make.__doc__ = (f"Build a {cls.__name__} (same arguments as {cls.__name__}(...)"
                    + (f", less {', '.join(sorted(fixed))})." if fixed else ")."))
    return make
