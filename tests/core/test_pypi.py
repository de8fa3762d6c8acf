"""envcore.pypi: which wheels a target loads (manylinux by glibc, macOS 12), and the releases too new for it."""

from __future__ import annotations

import sys

import pytest

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


def test_glibc_needed_only_when_glibc_is_what_stops_the_wheels() -> None:
    cp = f"cp{sys.version_info.major}{sys.version_info.minor}"
    new = [f"a-1-{cp}-{cp}-manylinux_2_28_aarch64.whl"]
    assert pypi.glibc_needed(new, _request("linux-aarch64", "2.27")) == (2, 28)
    assert pypi.glibc_needed(new, _request("linux-aarch64", "2.28")) is None  # it fits
    other_python = ["a-1-cp27-cp27m-manylinux_2_28_aarch64.whl"]  # not the glibc: the python
    assert pypi.glibc_needed(other_python, _request("linux-aarch64", "2.27")) is None
    assert pypi.glibc_needed(new, _request("osx-arm64", None)) is None


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
