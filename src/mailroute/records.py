"""Records: slotted classes with generated ``__init__``, ``__repr__``, ``__eq__`` and ``__hash__``,
as :func:`dataclasses.dataclass` makes them, but cheap to define.

A mail server starts ``mailroute`` once per message, and the standard decorator costs that
start-up twice: ``import dataclasses`` loads ``inspect`` (with ``ast``, ``dis`` and
``tokenize``), and every class it makes compiles six functions from source (about 0.4 ms a
class, some forty classes on the path of ``mailroute process``). Here ``__repr__``,
``__eq__``, ``__hash__`` and the frozen ``__setattr__`` are shared functions that read the
class's field table, and ``__init__`` binds its arguments generically for the first few
instances and is compiled only for a class that is built more often than that.

The semantics are those of ``@dataclass(slots=True, ...)`` for the options used here:
``frozen``, ``kw_only``, :func:`field` with ``default``, ``default_factory``, ``init``,
``repr``, ``compare``, ``hash`` and ``kw_only``; ``__post_init__``; fields inherited from
record bases; ``ClassVar`` annotations are not fields; methods written in the class body are
kept. Equality compares the fields of two instances of the same class as tuples, the hash of
a frozen record is the hash of that tuple, exactly as the standard decorator does.

Records are also dataclasses to :mod:`dataclasses`: ``dataclasses.fields``, ``replace``,
``asdict`` and ``is_dataclass`` work on them (the ``__dataclass_fields__`` table is built on
first use, which imports :mod:`dataclasses` only for a caller that already did), and so does
``copy.replace`` on Python 3.13.
"""

from __future__ import annotations

from operator import attrgetter
from types import MemberDescriptorType
from typing import TYPE_CHECKING, Any, TypeVar, dataclass_transform, overload

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["COMPILE_AFTER", "MISSING", "Field", "FrozenInstanceError", "field", "fields",
           "is_record", "record", "replace"]

T = TypeVar("T")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: The default of a field that has none.
MISSING: Any = _Missing()
_FACTORY: Any = _Missing()  # the __init__ default of a field with a default_factory


class FrozenInstanceError(AttributeError):
    """An assignment to a field of a frozen record."""


class Field:
    """One field of a record: what :func:`field` declares, completed by the decorator."""

    __slots__ = ("compare", "default", "default_factory", "hash", "init", "kw_only", "name",
                 "repr", "type")

    def __init__(self, default: Any, default_factory: Any, init: bool, repr: bool,
                 hash: bool | None, compare: bool, kw_only: Any) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.type: Any = None
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.repr = repr
        self.hash = hash
        self.compare = compare
        self.kw_only = kw_only

    def __repr__(self) -> str:
        return (f"Field(name={self.name!r}, type={self.type!r}, default={self.default!r}, "
                f"default_factory={self.default_factory!r}, init={self.init}, "
                f"kw_only={self.kw_only})")


def field(*, default: Any = MISSING, default_factory: Callable[[], Any] | Any = MISSING,
          init: bool = True, repr: bool = True, hash: bool | None = None,
          compare: bool = True, kw_only: bool | Any = MISSING) -> Any:
    """Declare a field with options, as :func:`dataclasses.field` does."""
    return Field(default, default_factory, init, repr, hash, compare, kw_only)


@overload
def record(cls: type[T], /) -> type[T]: ...


@overload
def record(*, frozen: bool = False, kw_only: bool = False,
           eq: bool = True) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(field, Field))
def record(cls: type[T] | None = None, /, *, frozen: bool = False, kw_only: bool = False,
           eq: bool = True) -> type[T] | Callable[[type[T]], type[T]]:
    """Make ``cls`` a slotted record (``@dataclass(slots=True, ...)`` with the same options).

    Returns a new class, as the standard decorator does for ``slots=True``.
    """
    def wrap(cls: type[T]) -> type[T]:
        return _make(cls, frozen=frozen, kw_only=kw_only, eq=eq)

    return wrap if cls is None else wrap(cls)


def is_record(obj: object) -> bool:
    """Whether ``obj`` is a record class or an instance of one."""
    cls = obj if isinstance(obj, type) else type(obj)
    return hasattr(cls, "__record_fields__")


def fields(obj: object) -> tuple[Field, ...]:
    """The fields of a record class or instance, in ``__init__`` order of declaration."""
    cls = obj if isinstance(obj, type) else type(obj)
    table: tuple[Field, ...] | None = getattr(cls, "__record_fields__", None)
    if table is None:
        raise TypeError("must be called with a record type or instance")
    return table


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the record ``obj`` with ``changes``, as :func:`dataclasses.replace` makes it."""
    for spec in fields(obj):
        if not spec.init:
            if spec.name in changes:
                raise ValueError(f"field {spec.name} is declared with init=False, it cannot "
                                 "be specified with replace()")
        elif spec.name not in changes:
            changes[spec.name] = getattr(obj, spec.name)
    return obj.__class__(**changes)


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar", "t.ClassVar"))


def _own_fields(cls: type, kw_only: bool) -> list[Field]:
    found = []
    # the class's own annotations; inspect.get_annotations would load inspect
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        spec = value if isinstance(value, Field) else Field(
            value, MISSING, True, True, None, True, MISSING)
        spec.name, spec.type = name, annotation
        if spec.kw_only is MISSING:
            spec.kw_only = kw_only
        found.append(spec)
    return found


def _all_fields(cls: type, own: list[Field]) -> tuple[Field, ...]:
    table: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for spec in base.__dict__.get("__record_fields__", ()):
            table[spec.name] = spec
    for spec in own:
        table[spec.name] = spec
    return tuple(table.values())


def _check_order(cls: type, table: tuple[Field, ...]) -> None:
    seen_default = False
    for spec in table:
        if not spec.init or spec.kw_only:
            continue
        has_default = spec.default is not MISSING or spec.default_factory is not MISSING
        if seen_default and not has_default:
            raise TypeError(f"{cls.__qualname__}: non-default argument {spec.name!r} follows "
                            "default argument")
        seen_default = seen_default or has_default


def _make(cls: type[T], *, frozen: bool, kw_only: bool, eq: bool) -> type[T]:
    own = _own_fields(cls, kw_only)
    table = _all_fields(cls, own)
    _check_order(cls, table)
    inherited = {name for base in cls.__mro__[1:] for name in getattr(base, "__slots__", ())}
    namespace = dict(cls.__dict__)
    for spec in own:
        namespace.pop(spec.name, None)
    namespace.pop("__dict__", None)
    namespace.pop("__weakref__", None)
    namespace["__slots__"] = tuple(s.name for s in own if s.name not in inherited)
    namespace["__record_fields__"] = table
    namespace["__record_frozen__"] = frozen
    namespace["__dataclass_fields__"] = _DataclassFields()
    compared = tuple(s.name for s in table if s.compare)
    hashed = tuple(s.name for s in table if (s.compare if s.hash is None else s.hash))
    namespace["__record_key__"] = _tuple_getter(compared)
    namespace["__record_hash_key__"] = _tuple_getter(hashed)
    defaults = {
        "__init__": _lazy_init(),
        "__repr__": _repr,
        "__replace__": replace,  # copy.replace (Python 3.13), as dataclasses provide it
        "__match_args__": tuple(s.name for s in table if s.init and not s.kw_only),
    }
    if eq:
        defaults["__eq__"] = _eq
    if frozen:
        defaults.update(__setattr__=_frozen_setattr, __delattr__=_frozen_delattr,
                        __getstate__=_getstate, __setstate__=_setstate)
    for name, value in defaults.items():
        namespace.setdefault(name, value)
    class_hash = cls.__dict__.get("__hash__", MISSING)
    explicit_hash = not (class_hash is MISSING or (class_hash is None and "__eq__" in cls.__dict__))
    if eq and not explicit_hash:
        namespace["__hash__"] = _hash if frozen else None
    metaclass: Any = type(cls)
    made: type[T] = metaclass(cls.__name__, cls.__bases__, namespace)
    made.__qualname__ = cls.__qualname__
    return made


def _tuple_getter(names: tuple[str, ...]) -> Callable[[object], tuple[Any, ...]]:
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        single = attrgetter(names[0])
        return lambda obj: (single(obj),)
    return lambda obj: ()


class _DataclassFields:
    """``__dataclass_fields__`` for :mod:`dataclasses`, built on first use."""

    def __get__(self, obj: object, cls: type) -> dict[str, Any]:
        import dataclasses  # only for a caller that uses dataclasses on a record

        table = {}
        for spec in fields(cls):
            options: dict[str, Any] = {"init": spec.init, "repr": spec.repr, "hash": spec.hash,
                                       "compare": spec.compare, "kw_only": spec.kw_only}
            if spec.default is not MISSING:
                options["default"] = spec.default
            if spec.default_factory is not MISSING:
                options["default_factory"] = spec.default_factory
            made: Any = dataclasses.field(**options)
            made.name, made.type = spec.name, spec.type
            made._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
            table[spec.name] = made
        type.__setattr__(cls, "__dataclass_fields__", table)
        return table


def _repr(self: object) -> str:
    shown = ", ".join(f"{s.name}={getattr(self, s.name)!r}"
                      for s in type(self).__record_fields__ if s.repr)  # type: ignore[attr-defined]
    return f"{type(self).__qualname__}({shown})"


def _eq(self: object, other: object) -> object:
    if other.__class__ is self.__class__:
        key = type(self).__record_key__  # type: ignore[attr-defined]
        return key(self) == key(other)
    return NotImplemented


def _hash(self: object) -> int:
    return hash(type(self).__record_hash_key__(self))  # type: ignore[attr-defined]


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _getstate(self: object) -> list[Any]:
    return [getattr(self, s.name) for s in type(self).__record_fields__]  # type: ignore[attr-defined]


def _setstate(self: object, state: list[Any]) -> None:
    for spec, value in zip(type(self).__record_fields__, state, strict=True):  # type: ignore[attr-defined]
        object.__setattr__(self, spec.name, value)


#: Instances a class's generic ``__init__`` builds before the class gets a compiled one.
COMPILE_AFTER = 8


def _lazy_init() -> Callable[..., None]:
    """An ``__init__`` that binds the arguments itself for the first :data:`COMPILE_AFTER`
    instances of its class, then compiles the class's own (as the standard decorator writes
    it) and installs it.

    Compiling costs about 75 µs a class, and a run of ``mailroute process`` builds most of
    its records only once or twice. A call whose arguments do not bind goes to the compiled
    ``__init__`` at once, so a wrong call raises exactly Python's ``TypeError``.
    """
    calls = 0

    def __init__(self: object, *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        cls = next(k for k in type(self).__mro__ if k.__dict__.get("__init__") is __init__)
        calls += 1
        if calls <= COMPILE_AFTER:
            table: tuple[Field, ...] = cls.__record_fields__  # type: ignore[attr-defined]
            values = _bind(table, args, kwargs)
            if values is not None:
                _assign(cls, table, self, values)
                return
        real = _compile_init(cls)
        type.__setattr__(cls, "__init__", real)
        real(self, *args, **kwargs)

    return __init__


def _bind(table: tuple[Field, ...], args: tuple[Any, ...],
          kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The arguments by field name, as Python binds them to the compiled ``__init__``
    (positional fields in order, then keyword-only ones); ``None`` when they do not bind."""
    positional = [s.name for s in table if s.init and not s.kw_only]
    if len(args) > len(positional):
        return None
    values = dict(zip(positional, args, strict=False))
    names = {s.name for s in table if s.init}
    for key, value in kwargs.items():
        if key in values or key not in names:
            return None
        values[key] = value
    for spec in table:
        if (spec.init and spec.name not in values and spec.default is MISSING
                and spec.default_factory is MISSING):
            return None
    return values


def _assign(cls: type, table: tuple[Field, ...], self: object, values: dict[str, Any]) -> None:
    """What the compiled ``__init__`` does with bound ``values``, field by field in order."""
    setter = object.__setattr__ if cls.__record_frozen__ else setattr  # type: ignore[attr-defined]
    for spec in table:
        if spec.init and spec.name in values:
            value = values[spec.name]
        elif spec.default_factory is not MISSING:
            value = spec.default_factory()
        elif spec.default is not MISSING:
            value = spec.default
        else:
            continue  # init=False without a default: __post_init__ sets it
        setter(self, spec.name, value)
    if hasattr(cls, "__post_init__"):
        self.__post_init__()  # type: ignore[attr-defined]


def _slot(cls: type, name: str) -> MemberDescriptorType | None:
    """The slot of field ``name``: a frozen record's ``__init__`` stores through it directly
    (``object.__setattr__`` finds the same slot by a lookup on every call: twice the cost)."""
    for klass in cls.__mro__:
        found = klass.__dict__.get(name)
        if found is not None:
            return found if isinstance(found, MemberDescriptorType) else None
    return None


def _compile_init(cls: type) -> Callable[..., None]:
    table: tuple[Field, ...] = cls.__record_fields__  # type: ignore[attr-defined]
    frozen: bool = cls.__record_frozen__  # type: ignore[attr-defined]
    scope: dict[str, Any] = {"_FACTORY": _FACTORY, "_set": object.__setattr__}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for spec in table:
        name = spec.name
        if spec.default_factory is not MISSING:
            scope[f"_factory_{name}"] = spec.default_factory
        elif spec.default is not MISSING:
            scope[f"_default_{name}"] = spec.default
        if spec.init:
            param = name
            if spec.default_factory is not MISSING:
                param += "=_FACTORY"
                value = f"_factory_{name}() if {name} is _FACTORY else {name}"
            else:
                param += "" if spec.default is MISSING else f"=_default_{name}"
                value = name
            (keyword if spec.kw_only else positional).append(param)
        elif spec.default_factory is not MISSING:
            value = f"_factory_{name}()"
        elif spec.default is not MISSING:
            value = f"_default_{name}"
        else:
            continue
        if not frozen:
            body.append(f"  self.{name} = {value}")
        elif (slot := _slot(cls, name)) is not None:
            scope[f"_set_{name}"] = slot.__set__
            body.append(f"  _set_{name}(self, {value})")
        else:
            body.append(f"  _set(self, {name!r}, {value})")
    if hasattr(cls, "__post_init__"):
        body.append("  self.__post_init__()")
    params = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({params}):\n" + ("\n".join(body) or "  pass") + "\n"
    exec(source, scope)  # noqa: S102 - source built from the class's own field names
    init: Callable[..., None] = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    return init
