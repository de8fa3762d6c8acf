"""envcore.frozen: frozen slotted records that behave as frozen dataclasses, made without compiling code."""

from __future__ import annotations

import builtins
import copy
import dataclasses
import inspect
import pickle
from collections.abc import Mapping
from dataclasses import field

import pytest

from envcore.frozen import record


@record
class Package:
    name: str
    version: str = ""
    depends: tuple[str, ...] = ()
    notes: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


@record(kw_only=False)
class Pair:
    left: str
    right: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class PackageAsDataclass:
    name: str
    version: str = ""
    depends: tuple[str, ...] = ()
    notes: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


def test_a_record_equals_hashes_and_shows_as_the_frozen_dataclass_it_replaces() -> None:
    made = Package(name="numpy", version="1.26", depends=("python",), notes={"why": "x"})
    twin = PackageAsDataclass(name="numpy", version="1.26", depends=("python",), notes={"why": "x"})
    assert repr(made) == "Package(name='numpy', version='1.26', depends=('python',))"
    assert repr(made).removeprefix("Package") == repr(twin).removeprefix("PackageAsDataclass")
    assert hash(made) == hash(twin)
    # a field with compare=False counts neither for equality nor for the hash
    other_notes = Package(name="numpy", version="1.26", depends=("python",))
    assert made == other_notes and hash(made) == hash(other_notes)
    assert made != Package(name="numpy", version="1.27", depends=("python",))
    assert made != twin  # another class, as with dataclasses
    assert len({made, other_notes, Package(name="scipy")}) == 2


def test_a_record_shows_the_signature_dataclasses_would_have_generated() -> None:
    """help() and notebooks' tooltips read inspect.signature: the fields, not the shared (*args, **given)."""
    assert str(inspect.signature(Package)) == str(inspect.signature(PackageAsDataclass))
    assert str(inspect.signature(Package)) == (
        "(*, name: 'str', version: 'str' = '', depends: 'tuple[str, ...]' = (), "
        "notes: 'Mapping[str, str]' = <factory>) -> None"
    )
    assert str(inspect.signature(Pair)) == "(left: 'str', right: 'int' = 0) -> None"


def test_a_record_is_immutable_and_slotted() -> None:
    made = Package(name="numpy")
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'name'"):
        made.name = "scipy"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'name'"):
        del made.name  # type: ignore[misc]
    with pytest.raises(AttributeError):
        made.unknown = 1  # type: ignore[attr-defined]
    assert not hasattr(made, "__dict__")
    assert made.name == "numpy"


def test_defaults_are_given_and_each_default_factory_called_once_per_instance() -> None:
    first, second = Package(name="a"), Package(name="b")
    assert (first.version, first.depends, first.notes) == ("", (), {})
    assert first.notes is not second.notes


def test_dataclasses_functions_work_on_a_record() -> None:
    made = Package(name="numpy", version="1.26")
    assert dataclasses.is_dataclass(made)
    assert [f.name for f in dataclasses.fields(made)] == ["name", "version", "depends", "notes"]
    changed = dataclasses.replace(made, version="2.0")
    assert changed == Package(name="numpy", version="2.0") and made.version == "1.26"
    assert dataclasses.asdict(made) == {"name": "numpy", "version": "1.26", "depends": (), "notes": {}}


def test_a_record_survives_pickle_and_copy() -> None:
    made = Package(name="numpy", depends=("python",), notes={"k": "v"})
    for again in (pickle.loads(pickle.dumps(made)), copy.copy(made), copy.deepcopy(made)):
        assert again == made and again.notes == {"k": "v"}
        with pytest.raises(dataclasses.FrozenInstanceError):
            again.name = "x"  # type: ignore[misc]


def test_wrong_arguments_are_type_errors_naming_the_argument() -> None:
    with pytest.raises(TypeError, match=r"Package\(\) takes 0 positional arguments but 1 were given"):
        Package("numpy")  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"Package\(\) missing required argument: 'name'"):
        Package()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"Package\(\) got an unexpected keyword argument 'nmae'"):
        Package(nmae="numpy")  # type: ignore[call-arg]
    assert Pair("a", 2) == Pair(left="a", right=2) == Pair("a", right=2)
    with pytest.raises(TypeError, match=r"Pair\(\) got multiple values for argument 'left'"):
        Pair("a", left="b")  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"Pair\(\) takes 2 positional arguments but 3 were given"):
        Pair("a", 1, 2)  # type: ignore[call-arg]


def test_what_the_class_writes_itself_is_kept_and_post_init_runs() -> None:
    seen: list[str] = []

    @record
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

        def __post_init__(self) -> None:
            seen.append(self.name)

    assert repr(Named(name="x")) == "<x>" and seen == ["x"]


def test_a_field_left_out_of_init_is_refused() -> None:
    with pytest.raises(TypeError, match="a record takes every field in __init__"):

        @record
        class Partial:
            name: str
            derived: str = field(init=False, default="")


def test_making_a_record_compiles_no_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """What records are for: dataclasses compiles each frozen class's methods (exec), a record none."""
    compiled: list[object] = []
    real_exec = builtins.exec

    def counting_exec(*args: object, **kwargs: object) -> None:
        compiled.append(args[0])
        real_exec(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "exec", counting_exec)

    @record
    class Made:
        name: str
        version: str = ""

    assert compiled == []
    assert Made(name="a") == Made(name="a")

    @dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
    class Generated:
        name: str

    assert len(compiled) >= 4  # __init__, __repr__, __eq__, __hash__, __setattr__, __delattr__
