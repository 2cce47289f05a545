"""Records behave as ``@dataclass(slots=True, ...)`` does for every option mailroute uses:
each case defines the same class both ways and compares what users can observe."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
from typing import Any, ClassVar, Protocol, cast

import pytest

from mailroute.records import (
    COMPILE_AFTER,
    FrozenInstanceError,
    field,
    fields,
    is_record,
    record,
    replace,
)


def _both(body: str, decorator: str) -> tuple[type[Any], type[Any]]:
    """The class ``C`` of ``body`` made by ``@dataclass(slots=True, ...)`` and by ``@record``."""
    made = []
    for kind in ("dataclass", "record"):
        options = decorator if kind == "record" else ", ".join(
            x for x in ("slots=True", decorator) if x)
        source = (f"@{kind}({options})\nclass C:\n"
                  + "".join(f"    {line}\n" for line in body.strip().splitlines()))
        scope: dict[str, Any] = {
            "__name__": __name__, "dataclass": dataclasses.dataclass, "record": record,
            "ClassVar": ClassVar,
            "field": dataclasses.field if kind == "dataclass" else field}
        exec(source, scope)  # noqa: S102 - test fixture
        made.append(scope["C"])
    return made[0], made[1]


FROZEN_BODY = """
name: str
size: int = 0
tags: tuple[str, ...] = ()
seen: list[int] = field(default_factory=list, compare=False)
limit: ClassVar[int] = 5
"""


@pytest.mark.parametrize("options", ["frozen=True", "frozen=True, kw_only=True", ""])
def test_init_repr_eq_hash_match_the_standard_decorator(options: str) -> None:
    std, rec = _both(FROZEN_BODY, options)
    kwargs = {"name": "a", "size": 3, "tags": ("x",)}
    s, r = std(**kwargs), rec(**kwargs)
    assert repr(r) == repr(s).replace("C(", "C(", 1)
    assert r == rec(**kwargs, seen=[1])  # compare=False is not compared
    assert r != rec(name="b")
    assert (r == s) is False  # another class: not equal, as for dataclasses
    if "frozen" in options:
        assert hash(r) == hash(s)  # the hash of the same tuple
        assert hash(r) == hash(rec(**kwargs, seen=[9]))
    else:
        # typed as objects: mypy takes every class's __hash__ for a method, never None
        rec_hash: object = rec.__hash__
        std_hash: object = std.__hash__
        assert rec_hash is None
        assert std_hash is None
    assert [f.name for f in fields(r)] == [f.name for f in dataclasses.fields(s)]
    assert rec.__match_args__ == std.__match_args__
    assert rec(name="a").seen is not rec(name="a").seen  # a fresh default per instance
    assert not hasattr(r, "__dict__")
    assert rec.__slots__ == std.__slots__
    assert rec.limit == 5
    assert "limit" not in rec.__slots__


def test_positional_and_keyword_only_parameters_are_as_declared() -> None:
    _, rec = _both(FROZEN_BODY, "frozen=True")
    assert rec("a", 2).size == 2
    _, kw = _both(FROZEN_BODY, "frozen=True, kw_only=True")
    with pytest.raises(TypeError):
        kw("a")
    with pytest.raises(TypeError):
        rec()  # name is required
    with pytest.raises(TypeError):
        rec("a", nope=1)


def test_a_frozen_record_refuses_assignment_and_deletion() -> None:
    _, rec = _both(FROZEN_BODY, "frozen=True")
    r = rec("a")
    with pytest.raises(FrozenInstanceError):
        r.name = "b"
    with pytest.raises(AttributeError):  # FrozenInstanceError is one, as in dataclasses
        del r.name
    _, mutable = _both(FROZEN_BODY, "")
    m = mutable("a")
    m.name = "b"
    assert m.name == "b"


def test_init_false_fields_and_post_init() -> None:
    body = """
name: str
lower: str = field(init=False, repr=False, compare=False)
count: int = field(init=False, default=7)
items: list[int] = field(init=False, default_factory=list)

def __post_init__(self) -> None:
    object.__setattr__(self, "lower", self.name.lower())
"""
    std, rec = _both(body, "frozen=True")
    s, r = std("AbC"), rec("AbC")
    assert (r.lower, r.count, r.items) == (s.lower, s.count, s.items) == ("abc", 7, [])
    assert repr(r) == repr(s)
    with pytest.raises(ValueError, match="init=False"):
        replace(r, lower="x")
    assert replace(r, name="Q").lower == "q"


def test_methods_written_in_the_class_are_kept() -> None:
    body = """
name: str

def __repr__(self) -> str:
    return "custom"

def __hash__(self) -> int:
    return 42
"""
    _, rec = _both(body, "frozen=True")
    assert (repr(rec("a")), hash(rec("a"))) == ("custom", 42)
    eq_body = """
name: str

def __eq__(self, other: object) -> bool:
    return True
"""
    std, rec = _both(eq_body, "frozen=True")
    assert rec("a") == 3
    assert std("a") == 3
    assert hash(rec("a")) == hash(std("a"))  # frozen: the field hash, as dataclasses
    _, mutable = _both(eq_body, "")
    assert mutable.__hash__ is None  # __eq__ without __hash__ on a mutable class


def test_fields_are_inherited_from_record_bases() -> None:
    @record(frozen=True)
    class Base:
        code: int
        text: str = ""

    @record(frozen=True)
    class Child(Base):
        extra: tuple[int, ...] = ()

    child = Child(1, "t", (2,))
    assert [f.name for f in fields(Child)] == ["code", "text", "extra"]
    assert (child.code, child.text, child.extra) == (1, "t", (2,))
    assert Child.__dict__["__slots__"] == ("extra",)
    assert child != Base(1, "t")
    assert Child(1, "t", (2,)) == child
    assert repr(child) == "test_fields_are_inherited_from_record_bases.<locals>.Child(" \
        "code=1, text='t', extra=(2,))"


def test_a_required_field_after_a_default_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="follows default"):
        _both("a: int = 0\nb: int", "frozen=True")
    _both("a: int = 0\nb: int = field(kw_only=True)", "frozen=True")  # keyword-only: fine


def test_records_pickle_and_copy() -> None:
    value = Sample("a", (1, 2))
    assert pickle.loads(pickle.dumps(value)) == value  # noqa: S301 - our own bytes
    assert copy.copy(value) == value
    assert copy.deepcopy(value) == value
    mutable = Counter(3)
    assert pickle.loads(pickle.dumps(mutable)).count == 3  # noqa: S301 - our own bytes


def test_the_dataclasses_module_sees_records() -> None:
    value = Sample("a", (1, 2))
    assert dataclasses.is_dataclass(value)
    assert is_record(value)
    assert not is_record(3)
    assert dataclasses.replace(value, name="b") == Sample("b", (1, 2))
    assert dataclasses.asdict(value) == {"name": "a", "parts": (1, 2)}
    assert [f.name for f in dataclasses.fields(Sample)] == ["name", "parts"]
    assert replace(value, parts=()) == Sample("a", ())
    # copy.replace from 3.13; mypy knows __replace__ only when it checks for 3.13
    assert cast("_Replaceable", value).__replace__(name="c") == Sample("c", (1, 2))


def test_defining_and_using_records_does_not_import_dataclasses() -> None:
    probe = ("import sys\nfrom mailroute.records import record\n"
             "@record(frozen=True)\nclass A:\n    x: int = 0\n"
             "assert A(1) == A(1) and hash(A(1)) == hash((1,)) and repr(A()) == 'A(x=0)'\n"
             "print(sorted({'dataclasses', 'inspect'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]"


@record(frozen=True)
class Sample:
    name: str
    parts: tuple[int, ...] = ()


class _Replaceable(Protocol):
    def __replace__(self, **changes: Any) -> object: ...


@record()
class Counter:
    count: int = 0


BINDING_BODY = """
name: str
size: int = 0
seen: list[int] = field(default_factory=list)
lower: str = field(init=False, default="")
tags: tuple[str, ...] = field(default=(), kw_only=True)

def __post_init__(self) -> None:
    object.__setattr__(self, "lower", self.name.lower())
"""
CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("A",), {}), (("A", 2), {}), (("A", 2, [1]), {}), ((), {"name": "A", "tags": ("t",)}),
    (("A",), {"seen": [3], "size": 4}), ((), {"name": "A"}),
]
BAD_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}), (("A", 2, [1], ("t",)), {}), (("A",), {"name": "B"}), (("A",), {"lower": "x"}),
    (("A",), {"nope": 1}), ((), {"size": 1}),
]


def _outcome(cls: type[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
    try:
        made = cls(*args, **kwargs)
    except TypeError as error:
        return ("TypeError", str(error).replace("__init__()", "C.__init__()"))
    return repr(made)


def test_the_generic_init_binds_as_the_compiled_one_and_hands_it_bad_calls() -> None:
    std, _ = _both(BINDING_BODY, "frozen=True")
    expected = [_outcome(std, a, k) for a, k in CALLS]
    _, rec = _both(BINDING_BODY, "frozen=True")
    generic = rec.__init__
    assert [_outcome(rec, a, k) for a, k in CALLS] == expected
    assert rec.__init__ is generic  # six calls: still the generic __init__
    _, fresh = _both(BINDING_BODY, "frozen=True")
    errors = [_outcome(fresh, a, k) for a, k in BAD_CALLS]
    assert errors == [_outcome(std, a, k) for a, k in BAD_CALLS]
    assert all(isinstance(e, tuple) and e[0] == "TypeError" for e in errors)
    assert fresh.__init__ is not generic  # a bad call installed the compiled one


def test_after_compile_after_instances_the_class_gets_a_compiled_init() -> None:
    std, rec = _both(BINDING_BODY, "frozen=True")
    generic = rec.__init__
    made = [rec("A", i) for i in range(COMPILE_AFTER + 2)]
    assert rec.__init__ is not generic
    assert [repr(m) for m in made] == [repr(std("A", i)) for i in range(COMPILE_AFTER + 2)]
    assert made[0].seen is not made[1].seen  # a fresh default from either __init__


def test_a_compiled_frozen_init_stores_every_field_including_inherited_ones() -> None:
    """A frozen record's compiled ``__init__`` stores through the slots of its own and its
    bases' fields; the instance stays frozen."""

    @record(frozen=True)
    class Base:
        a: int
        b: str = "b"

    @record(frozen=True, kw_only=True)
    class Child(Base):
        c: tuple[int, ...] = ()
        d: list[int] = field(default_factory=list)

    made = [Child(a=i, c=(i,)) for i in range(COMPILE_AFTER + 3)]
    assert Child.__init__.__qualname__.endswith("Child.__init__")  # the compiled one
    last = made[-1]
    assert (last.a, last.b, last.c, last.d) == (COMPILE_AFTER + 2, "b", (COMPILE_AFTER + 2,), [])
    assert made[0].d is not last.d
    with pytest.raises(FrozenInstanceError):
        last.a = 1  # type: ignore[misc]
    assert last == Child(a=COMPILE_AFTER + 2, c=(COMPILE_AFTER + 2,))
