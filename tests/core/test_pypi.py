"""envcore.pypi: which wheels a target loads (manylinux by glibc, macOS 12), and the releases too new for it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from packaging.tags import Tag, compatible_tags, cpython_tags

from envcore import pypi
from envcore.testing.channel import Universe
from envcore.types import PYPI, SYS, Requirement, ResolveRequest

PY = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"


def _request(arch: str, glibc: str | None, index: str = "") -> ResolveRequest:
    sys_reqs = (Requirement(category=SYS, name="__glibc", spec=f"{glibc}=0"),) if glibc else ()
    return ResolveRequest(
        arch=arch, requirements=sys_reqs, sources={PYPI: (index,)} if index else {}, python_version=PY
    )


@pytest.mark.parametrize(
    ("filename", "needs"),
    [
        ("a-1-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl", (2, 27)),
        ("a-1-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64.whl", (2, 17)),
        ("a-1-cp311-cp311-manylinux1_aarch64.whl", (2, 5)),
        ("a-1-cp311-cp311-manylinux_2_28_x86_64.whl", None),  # another cpu
        ("a-1-cp311-cp311-macosx_12_0_arm64.whl", None),
        ("a-1.tar.gz", None),
    ],
)
def test_wheel_glibc(filename: str, needs: tuple[int, int] | None) -> None:
    assert pypi.wheel_glibc(filename, "aarch64") == needs


def test_os_needed_only_when_glibc_or_macos_is_what_stops_the_wheels() -> None:
    cp = f"cp{sys.version_info.major}{sys.version_info.minor}"
    new = [f"a-1-{cp}-{cp}-manylinux_2_28_aarch64.whl"]
    assert pypi.os_needed(new, _request("linux-aarch64", "2.27")) == (2, 28)
    assert pypi.os_needed(new, _request("linux-aarch64", "2.28")) is None  # it fits
    other_python = ["a-1-cp27-cp27m-manylinux_2_28_aarch64.whl"]  # not the glibc: the python
    assert pypi.os_needed(other_python, _request("linux-aarch64", "2.27")) is None
    assert pypi.os_needed(new, _request("osx-arm64", None)) is None
    mac = [f"a-1-{cp}-{cp}-macosx_14_0_universal2.whl"]  # universal2 holds both cpus
    assert pypi.os_needed(mac, _request("osx-arm64", None)) == (14, 0)
    assert pypi.os_needed(mac, _request("osx-64", None)) == (14, 0)
    assert pypi.os_needed([f"a-1-{cp}-{cp}-macosx_13_0_x86_64.whl"], _request("osx-arm64", None)) is None
    assert pypi.os_needed([f"a-1-{cp}-{cp}-macosx_11_0_arm64.whl"], _request("osx-arm64", None)) is None


def test_index_misfits_are_every_release_too_new(universe: Universe) -> None:
    """Read from the index page: both releases too new for glibc 2.24 at once (a resolver leaves them out in
    one round, not one a round)."""
    request = _request("linux-aarch64", "2.24", universe.simple_url)
    assert pypi.index_misfits(request, ["fx-glibc"]) == {
        ("fx-glibc", "3.0.0"): (2, 28),
        ("fx-glibc", "2.0.0"): (2, 27),
    }
    assert pypi.index_misfits(_request("linux-aarch64", "2.28", universe.simple_url), ["fx-glibc"]) == {}
    assert pypi.index_misfits(_request("linux-aarch64", "2.24", "file:///nowhere/"), ["fx-glibc"]) == {}


def test_macos_targets_take_wheels_for_macos_12() -> None:
    tags = pypi.platform_tags(_request("osx-arm64", None))
    assert "macosx_12_0_arm64" in tags and "macosx_13_0_arm64" not in tags


def test_a_find_links_folder_lists_every_release_and_no_index_reads_no_index(universe: Universe) -> None:
    """--find-links folders have no PEP 503 page: their files are the releases. With --no-index the indexes
    are not what the resolver reads, so they are not read for releases either."""
    from dataclasses import replace

    request = _request("linux-aarch64", "2.24", "file:///nowhere/")
    links = replace(request, extras={PYPI: ("--no-index", f"--find-links {universe.wheels_dir}")})
    assert set(pypi.release_files(links, "fx-glibc")) == {"1.0.0", "2.0.0", "3.0.0"}
    assert pypi.index_misfits(links, ["FX_Glibc"]) == {
        ("fx-glibc", "3.0.0"): (2, 28),
        ("fx-glibc", "2.0.0"): (2, 27),
    }
    unread = replace(_request("linux-aarch64", "2.24", universe.simple_url), extras={PYPI: ("--no-index",)})
    assert pypi.release_files(unread, "fx-glibc") == {}


@pytest.mark.parametrize(
    ("arch", "glibc", "requirement", "named"),
    [
        ("linux-aarch64", "2.24", "fx-glibc>=2", {("fx-glibc", "2.0.0"): (2, 27)}),  # the one needing least
        ("linux-aarch64", "2.27", "fx-glibc==3.0.0", {("fx-glibc", "3.0.0"): (2, 28)}),
        ("linux-aarch64", "2.27", "fx-glibc>=2", {}),  # 2.0.0 fits
        ("osx-64", None, "fx-glibc>1,<3", {("fx-glibc", "2.0.0"): (13, 0)}),
        ("osx-64", None, "fx-glibc>1", {}),  # 3.0.0 has no wheel for x86_64 at all: not a macOS matter
        ("osx-arm64", None, "fx-glibc==3.0.0", {("fx-glibc", "3.0.0"): (14, 0)}),
        ("win-64", None, "fx-glibc==3.0.0", {}),
        ("linux-aarch64", "2.24", "fx-nothere==1", {}),
        ("linux-aarch64", "2.24", "not a requirement!", {}),
    ],
)
def test_requirement_misfits_name_the_release_pip_could_not_find(
    universe: Universe,
    arch: str,
    glibc: str | None,
    requirement: str,
    named: dict[tuple[str, str], tuple[int, int]],
) -> None:
    assert pypi.requirement_misfits(_request(arch, glibc, universe.simple_url), requirement) == named


def test_newer_releases_without_wheels_for_a_foreign_target(universe: Universe) -> None:
    """What poetry's and conda-lock's locks leave out for another arch: releases newer than the newest with a
    wheel the target loads; None when none has one (fx-glibc publishes no windows wheel)."""
    assert pypi.newer_without_wheels(_request("osx-64", None, universe.simple_url), "fx-glibc") == [
        "2.0.0",
        "3.0.0",
    ]
    assert pypi.newer_without_wheels(_request("osx-arm64", None, universe.simple_url), "fx-glibc") == [
        "3.0.0"
    ]
    assert pypi.newer_without_wheels(_request("linux-aarch64", "2.28", universe.simple_url), "fx-glibc") == []
    assert pypi.newer_without_wheels(_request("win-64", None, universe.simple_url), "fx-glibc") is None


def test_releases_left_out_are_one_ceiling_where_the_page_lists_them(universe: Universe) -> None:
    """Every release newer than the newest that fits is left out: one NAME<=VERSION (poetry's solver took
    minutes over torch's dozen NAME!=VERSION), NAME!=VERSION where no page lists the releases."""
    too_new = pypi.TooNewForTarget(_request("linux-aarch64", "2.24", universe.simple_url))
    too_new.add({("fx-glibc", "3.0.0"): (2, 28)})
    assert too_new.excluded == ["fx-glibc<=1.0.0"]
    assert too_new.all == {
        ("fx-glibc", "3.0.0"): (2, 28),
        ("fx-glibc", "2.0.0"): (2, 27),
    }  # named in refusals
    unlisted = pypi.TooNewForTarget(_request("linux-aarch64", "2.24", "file:///nowhere/"))
    unlisted.add({("fx-glibc", "3.0.0"): (2, 28)})
    assert unlisted.excluded == ["fx-glibc!=3.0.0"]
    foreign = pypi.TooNewForTarget(_request("osx-64", None, universe.simple_url))
    assert foreign.leave_out_wheelless("fx-glibc", "3.0.0") and foreign.excluded == ["fx-glibc<=1.0.0"]
    assert not pypi.TooNewForTarget(_request("win-64", None, universe.simple_url)).leave_out_wheelless(
        "fx-glibc", "3.0.0"
    )


def test_only_the_outermost_releases_are_left_out_where_exclusions_are_requirements() -> None:
    """torch 2.15.0 and the nvidia-* packages cuda-toolkit (not too new) brings for it are all too new for glibc
    2.17: as poetry requirements, nvidia-* exclusions kept them in the lock after torch went back to 2.5.1."""
    found = {
        ("torch", "2.15.0"): (2, 28),
        ("nvidia-cusolver", "12.2.0.11"): (2, 27),
        ("triton", "3.9.0"): (2, 27),
    }
    needs = {"torch": ["cuda-toolkit", "Triton"], "cuda-toolkit": ["nvidia_cusolver"], "nvidia-cusolver": []}
    assert pypi.outermost(found, [("cuda-toolkit", "1")], needs) == ({("torch", "2.15.0"): (2, 28)}, [])
    assert pypi.outermost(found, [], {}) == (found, [])
    cycle = {("a", "1"): (2, 28), ("b", "1"): (2, 28)}
    assert pypi.outermost(cycle, [], {"a": ["b"], "b": ["a"]}) == (cycle, [])  # none outermost: all


@pytest.mark.parametrize(
    ("arch", "glibc", "python"),
    [
        ("linux-64", "2.17", "3.8"),
        ("linux-aarch64", "2.28", "3.11"),
        ("osx-arm64", None, "3.13"),
        ("win-64", None, "3.12"),
    ],
)
def test_target_tags_rank_as_packaging_does_computed_or_remembered(
    tmp_path: Path, arch: str, glibc: str | None, python: str
) -> None:
    """The ranking read back from the cache (the tags' text, no Tag objects) is packaging's, in its order; a
    cache of another packaging or interpreter, or a damaged one, is worked out again."""
    request = _request(arch, glibc)
    xy = tuple(int(x) for x in python.split("."))
    platforms = pypi.platform_tags(request)
    packaging_order = [*cpython_tags(xy, platforms=platforms), *compatible_tags(xy, platforms=platforms)]
    expected = {tag: rank for rank, tag in enumerate(packaging_order)}  # (a repeated tag keeps its last rank)
    assert len(expected) > 40
    pypi._remembered_tags.cache_clear()
    computed = pypi.target_tags(request, python)
    first = pypi.target_tags(request, python, tmp_path)  # works it out and remembers it
    (saved,) = (tmp_path / "tools").glob("wheel-tags-*.json")
    pypi._remembered_tags.cache_clear()
    remembered = pypi.target_tags(request, python, tmp_path)
    for ranks in (computed, first, remembered):
        assert list(ranks.items()) == list(expected.items())
        assert all(tag in ranks for tag in packaging_order) and Tag("cp27", "cp27m", "any") not in ranks
        assert "-".join(("py3", "none", "any")) not in ranks  # only Tags are keys
    best = pypi.best_wheel(["a-1-py3-none-any.whl", f"a-1-{packaging_order[0]}.whl"], remembered)
    assert best == f"a-1-{packaging_order[0]}.whl"
    content = json.loads(saved.read_text())
    for damaged in (
        json.dumps(
            {
                **content,
                "identity": ["another packaging", *content["identity"][1:]],
                "value": ["py3-none-any"],
            }
        ),
        json.dumps({**content, "value": [*content["value"][:-1], 7]}),
        json.dumps({"identity": content["identity"]}),
        "{not json",
    ):
        saved.write_text(damaged)
        pypi._remembered_tags.cache_clear()
        assert list(pypi.target_tags(request, python, tmp_path).items()) == list(expected.items())
        assert json.loads(saved.read_text()) == content  # written again, whole


@pytest.mark.parametrize("name", ["Django", "oslo.concurrency", "a__b-._c", "A-B", "zope.interface", "x"])
def test_canonicalize_is_packagings(name: str) -> None:
    from packaging.utils import canonicalize_name

    assert pypi.canonicalize(name) == canonicalize_name(name)


def test_wheel_tags_are_packagings_read_or_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from packaging.utils import parse_wheel_filename

    names = [
        "a-1.0-py2.py3-none-any.whl",
        "b-2.0-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    ]
    invalid = ["c-not.a.version-py3-none-any.whl", "d-1.0.whl"]
    expected = {n: frozenset(map(str, parse_wheel_filename(n)[3])) for n in names} | dict.fromkeys(invalid)
    monkeypatch.setattr(pypi, "_WHEEL_TAGS", {})
    pypi.remember_wheel_tags([*names, *invalid], tmp_path)
    assert expected == pypi._WHEEL_TAGS
    (saved,) = (tmp_path / "tools").glob("wheel-names-*.json")
    monkeypatch.setattr(pypi, "_WHEEL_TAGS", {})
    monkeypatch.setattr(pypi, "wheel_tags", lambda name: pytest.fail(f"{name} read again"))
    pypi.remember_wheel_tags([*names, *invalid], tmp_path)  # read back
    assert expected == pypi._WHEEL_TAGS
    saved.write_text(json.dumps({"identity": "another packaging", "value": []}))
    monkeypatch.undo()
    monkeypatch.setattr(pypi, "_WHEEL_TAGS", {})
    pypi.remember_wheel_tags([*names, *invalid], tmp_path)  # not its answer: read again
    assert expected == pypi._WHEEL_TAGS


@pytest.mark.parametrize(
    ("arch", "python_version", "python", "kept"),
    [
        ("osx-arm64", "3.11.7", None, {"a", "c", "d"}),
        ("linux-64", "3.11.7", None, {"a", "b", "d"}),
        ("linux-64", None, "3.10.*", {"a", "b", "c", "d"}),
        ("osx-arm64", None, ">=3.10,<3.12", {"a", "c", "d"}),  # a python range decides no python marker
    ],
)
def test_for_target_leaves_out_requirements_whose_markers_are_false_there(
    arch: str, python_version: str | None, python: str | None, kept: set[str]
) -> None:
    reqs = (
        Requirement(category=PYPI, name="a"),
        Requirement(category=PYPI, name="b", marker="platform_machine == 'x86_64'"),
        Requirement(category=PYPI, name="c", marker="python_version < '3.11' or sys_platform == 'darwin'"),
        Requirement(category=PYPI, name="d", marker="platform_system != 'Windows'"),
    )
    request = ResolveRequest(arch=arch, requirements=reqs, python_version=python_version, python=python)
    assert {r.name for r in pypi.for_target(request)} == kept
