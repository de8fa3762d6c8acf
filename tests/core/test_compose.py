"""The composition of a conda and a PyPI resolver: the PyPI side resolved early, for the remembered conda side."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from envcore import resolve as resolving
from envcore import specs
from envcore.compose import ComposedResolver
from envcore.errors import ResolutionError
from envcore.platforms import local_arch
from envcore.plugins import build_registry
from envcore.testing.channel import Universe
from envcore.testing.fixtures import universe_config
from envcore.types import (
    CONDA,
    PYPI,
    LockedPackage,
    PackageFile,
    PackageKind,
    Requirement,
    Resolver,
    ResolveRequest,
)

EARLY_THREAD = "envcore-early-pypi"


class Recording:
    """A resolver that records each call (the request and the thread it ran in), then asks ``inner``."""

    def __init__(self, inner: Resolver) -> None:
        self.inner = inner
        self.calls: list[tuple[ResolveRequest, str]] = []
        self.started = threading.Event()

    def check(self) -> None:
        self.inner.check()

    def version(self) -> str:
        return self.inner.version()

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        self.calls.append((request, threading.current_thread().name))
        self.started.set()
        return self.inner.resolve(request)


def test_the_pypi_side_runs_beside_the_conda_side_once_it_is_remembered(
    universe: Universe, tmp_path: Path
) -> None:
    """Real rattler and uv against the universe: the second resolve starts uv before the conda side is done
    (the conda side waits for it to start, so the check fails when the sides run one after the other) and
    gives what the first gave."""
    config = universe_config(universe, tmp_path)
    registry = build_registry(config)
    conda, pypi = Recording(registry.resolver_named("rattler")), Recording(registry.resolver_named("uv"))
    composed = ComposedResolver(("rattler", conda), ("uv", pypi), config.cache_dir())
    spec = specs.from_decorator(libraries={}, packages={"fx-web": "", "fx-extras": ""})
    request = resolving.build_request(spec, config, local_arch())

    first = list(composed.resolve(request))
    assert [thread for _, thread in pypi.calls] == [threading.current_thread().name]  # after python was known
    pypi.started.clear()
    overlapped: list[bool] = []
    solve = conda.resolve

    def conda_waiting_for_pypi(request: ResolveRequest) -> Sequence[LockedPackage]:
        overlapped.append(pypi.started.wait(timeout=20))
        return solve(request)

    conda.resolve = conda_waiting_for_pypi  # type: ignore[method-assign]
    second = list(composed.resolve(request))
    assert overlapped == [True]
    assert [thread for _, thread in pypi.calls][1:] == [EARLY_THREAD]  # one call, the early one, used
    assert second == first
    assert {p.name for p in first} >= {"python", "fx-web", "fx-extras", "fx-core"}
    plain = ComposedResolver(
        ("rattler", registry.resolver_named("rattler")), ("uv", registry.resolver_named("uv"))
    )
    assert list(plain.resolve(request)) == first  # no cache directory: one side after the other, same answer


# --- the rules, with resolvers whose answers the test decides --------------------------------------------


def _conda_package(name: str, version: str) -> LockedPackage:
    url = f"file:///channel/linux-64/{name}-{version}-0.conda"
    return LockedPackage(
        kind=PackageKind.CONDA,
        name=name,
        version=version,
        build="0",
        filename=f"{name}-{version}-0",
        files=(PackageFile(url_format=".conda", url=url, sha256=f"{len(version):064x}", md5="0" * 32),),
        subdir="linux-64",
        channel="file:///channel/",
    )


def _wheel(name: str, python_version: str) -> LockedPackage:
    filename = f"{name}-1.0-py3-none-any"
    url = f"file:///simple/{name}/{filename}.whl#for-python-{python_version}"
    return LockedPackage(
        kind=PackageKind.PYPI,
        name=name,
        version="1.0",
        filename=filename,
        files=(PackageFile(url_format=".whl", url=url, sha256="1" * 64),),
    )


class CondaSide:
    """Gives python at ``self.python`` (the channel's newest, as the test sets it)."""

    python = "3.11.7"

    def check(self) -> None: ...

    def version(self) -> str:
        return "conda-side 1"

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        return [_conda_package("python", self.python)]


class PypiSide:
    """Locks one wheel per requirement, marked with the python it was resolved for; refuses ``refused``."""

    refused: str | None = None

    def check(self) -> None: ...

    def version(self) -> str:
        return "pypi-side 1"

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        assert request.python_version
        if request.python_version == self.refused:
            raise ResolutionError(f"nothing fits python {request.python_version}")
        return [_wheel(r.name, request.python_version) for r in request.of(PYPI)]


def _request(*pypi: str) -> ResolveRequest:
    return ResolveRequest(
        arch="linux-64",
        requirements=(
            Requirement(category=CONDA, name="python", spec="3.11.*"),
            *(Requirement(category=PYPI, name=name) for name in pypi),
        ),
        sources={CONDA: ("file:///channel/",), PYPI: ("file:///simple/",)},
    )


@pytest.fixture
def sides(tmp_path: Path) -> tuple[CondaSide, Recording, ComposedResolver]:
    conda, pypi = CondaSide(), Recording(PypiSide())
    composed = ComposedResolver(("conda-side", conda), ("pypi-side", pypi), tmp_path / "cache", debug=True)
    return conda, pypi, composed


def _pythons(pypi: Recording) -> list[tuple[str | None, bool]]:
    """The python of each PyPI call, and whether it was the early one; then forgotten."""
    calls = [(request.python_version, thread == EARLY_THREAD) for request, thread in pypi.calls]
    pypi.calls.clear()
    return calls


def test_a_changed_conda_side_gets_the_pypi_side_resolved_again(
    sides: tuple[CondaSide, Recording, ComposedResolver], capsys: pytest.CaptureFixture[str]
) -> None:
    conda, pypi, composed = sides
    request = _request("fx-web")
    assert [p.source.url for p in composed.resolve(request)][1:] == [
        "file:///simple/fx-web/fx-web-1.0-py3-none-any.whl#for-python-3.11.7"
    ]
    assert _pythons(pypi) == [("3.11.7", False)]
    conda.python = "3.11.8"  # the channel got a new python: the early answer is for the old one
    result = composed.resolve(request)
    assert _pythons(pypi) == [("3.11.7", True), ("3.11.8", False)]
    assert [(p.name, p.version) for p in result] == [("python", "3.11.8"), ("fx-web", "1.0")]
    assert "was for another conda answer: resolving it again" in capsys.readouterr().err  # with debug on
    assert result[1].source.url.endswith("#for-python-3.11.8")
    assert composed.resolve(request) == result  # the new conda side is what is remembered now
    assert _pythons(pypi) == [("3.11.8", True)]
    assert "resolved beside the conda side for linux-64, was used" in capsys.readouterr().err


def test_an_early_error_counts_only_when_its_request_stands(
    sides: tuple[CondaSide, Recording, ComposedResolver],
) -> None:
    conda, pypi, composed = sides
    request = _request("fx-web")
    composed.resolve(request)  # remembers python 3.11.7
    _pythons(pypi)
    pypi.inner.refused = "3.11.7"  # type: ignore[attr-defined]
    conda.python = "3.11.8"
    assert composed.resolve(request)[0].version == "3.11.8"  # the early call failed for a request not made
    assert _pythons(pypi) == [("3.11.7", True), ("3.11.8", False)]
    pypi.inner.refused = "3.11.8"  # type: ignore[attr-defined]  # (3.11.8 is remembered now)
    with pytest.raises(ResolutionError, match=r"nothing fits python 3\.11\.8"):
        composed.resolve(request)
    assert _pythons(pypi) == [("3.11.8", True)]  # the early call's error is the answer: no second call


def test_what_is_remembered_is_a_hint_only(
    sides: tuple[CondaSide, Recording, ComposedResolver], tmp_path: Path
) -> None:
    _, pypi, composed = sides
    assert len(composed.resolve(_request())) == 1  # no PyPI requirements: nothing to remember
    assert not (tmp_path / "cache" / "conda-sides").exists()
    request = _request("fx-web", "fx-extras")
    expected = composed.resolve(request)
    (memory,) = (tmp_path / "cache" / "conda-sides").iterdir()
    for damaged in ("{not json", '{"python_version": "3.11.7"}', "[]", ""):
        memory.write_text(damaged)
        _pythons(pypi)
        assert composed.resolve(request) == expected
        assert _pythons(pypi) == [("3.11.7", False)]  # no early call, and the memory is whole again
    assert composed.resolve(request) == expected and _pythons(pypi) == [("3.11.7", True)]
    other = _request("fx-core")  # other PyPI requirements on the same conda side: the same memory
    assert composed.resolve(other)[1].name == "fx-core"
    assert _pythons(pypi) == [("3.11.7", True)]


def test_the_least_recently_used_conda_sides_are_forgotten(
    sides: tuple[CondaSide, Recording, ComposedResolver], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memories are bounded: beyond CONDA_SIDES_KEPT, the one used longest ago goes (a recalled memory
    counts as used), and a forgotten conda side only loses its head start."""
    import os

    from envcore import compose

    monkeypatch.setattr(compose, "CONDA_SIDES_KEPT", 2)
    _, pypi, composed = sides
    folder = tmp_path / "cache" / "conda-sides"

    def on_python(spec: str) -> ResolveRequest:
        request = _request("fx-web")
        return replace(
            request, requirements=(Requirement(category=CONDA, name="python", spec=spec), *request.of(PYPI))
        )

    def memories() -> set[str]:
        return {p.name for p in folder.iterdir()}

    composed.resolve(on_python("3.11.*"))
    (a,) = memories()
    composed.resolve(on_python(">=3.10"))
    (b,) = memories() - {a}
    os.utime(folder / a, (1000, 1000))  # a is the older of the two...
    os.utime(folder / b, (2000, 2000))
    _pythons(pypi)
    composed.resolve(on_python("3.11.*"))  # ...until it is used again
    assert _pythons(pypi) == [("3.11.7", True)]
    composed.resolve(on_python("3.*"))  # a third conda side: b, used longest ago, is forgotten
    (c,) = memories() - {a, b}
    assert memories() == {a, c}
    _pythons(pypi)
    assert composed.resolve(on_python(">=3.10"))[1].name == "fx-web"
    assert _pythons(pypi) == [("3.11.7", False)]  # no head start, the same answer
    assert len(memories()) == 2


class IgnoringInstalled(Recording):
    """A PyPI resolver that ignores ``request.installed``: it may lock another version of a conda package."""

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        return self.inner.resolve(replace(request, installed=(), installed_distributions={}))


def test_a_pypi_side_that_moves_a_conda_package_is_refused(universe: Universe, tmp_path: Path) -> None:
    config = universe_config(universe, tmp_path)
    registry = build_registry(config)
    pypi = IgnoringInstalled(registry.resolver_named("uv"))
    composed = ComposedResolver(("rattler", registry.resolver_named("rattler")), ("sloppy", pypi))
    spec = specs.from_decorator(libraries={"fx-core": "2.0.0"}, packages={"fx-http": "1.1.0"})
    request = resolving.build_request(spec, config, local_arch())
    with pytest.raises(
        ResolutionError, match=r"The PyPI resolver sloppy locked fx-core 1\.1\.0, but the conda side"
    ):
        composed.resolve(request)
    # with the conda packages kept, the same request has no solution: said as such
    honest = ComposedResolver(
        ("rattler", registry.resolver_named("rattler")), ("uv", registry.resolver_named("uv"))
    )
    with pytest.raises(ResolutionError, match="fx-core"):
        honest.resolve(request)


def test_a_pypi_failure_blames_a_conda_package_only_when_its_version_does_not_fit(
    universe: Universe, tmp_path: Path
) -> None:
    """A PyPI requirement on a package the conda side installs is named as the conflict only when the conda
    version does not satisfy it; one it satisfies (an extended base keeps its PyPI packages pinned, which the
    new conda side may then provide at that very version) leaves the resolver's own explanation."""
    config = universe_config(universe, tmp_path)
    registry = build_registry(config)
    composed = ComposedResolver(
        ("rattler", registry.resolver_named("rattler")), ("uv", registry.resolver_named("uv"))
    )

    def request(pypi: dict[str, str]) -> ResolveRequest:
        spec = specs.from_decorator(libraries={"fx-core": "1.0.0"}, packages=pypi)
        return resolving.build_request(spec, config, local_arch())

    with pytest.raises(ResolutionError) as agreeing:  # fx-http 1.2.0 needs fx-core>=1.1
        composed.resolve(request({"fx-core": "1.0.0", "fx-http": "1.2.0"}))
    assert "fx-http" in agreeing.value.message
    assert "conflicts with the conda package" not in agreeing.value.message
    conflict = r"fx-core==1\.1 conflicts with the conda package fx-core 1\.0\.0"
    with pytest.raises(ResolutionError, match=conflict):
        composed.resolve(request({"fx-core": "1.1.0"}))
