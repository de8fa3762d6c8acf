"""Conda constraints as users write them reach the solver as conda reads them (lenient MatchSpec parsing), and
one that no parser accepts is a ResolutionError naming the requirement, not a crash."""

from __future__ import annotations

import os
import sys

import pytest

from envcore.config import Config
from envcore.errors import ResolutionError
from envcore.platforms import local_arch
from envcore.plugins import build_registry
from envcore.resolve import sys_packages
from envcore.testing.channel import Universe
from envcore.types import CONDA, Requirement, ResolveRequest

PYTHON = Requirement(category=CONDA, name="python", spec=f"{sys.version_info[0]}.{sys.version_info[1]}.*")


def resolve(universe: Universe, spec: str) -> dict[str, str]:
    config = Config.load(
        environ={
            "METAFLOW_CONDA_CHANNELS": universe.channel_url,
            "PIP_CONFIG_FILE": os.devnull,
            "HOME": os.environ.get("HOME", "/tmp"),
        }
    )
    requirements = (Requirement(category=CONDA, name="fx-core", spec=spec), PYTHON)
    request = ResolveRequest(
        arch=local_arch(),
        requirements=(*requirements, *sys_packages(config, local_arch(), [])),
        sources={CONDA: (universe.channel_url,)},
    )
    packages = build_registry(config).resolver_named("rattler").resolve(request)
    return {p.name: p.version for p in packages}


@pytest.mark.parametrize(
    ("spec", "version"), [("1.0.0|1.1.0", "1.1.0"), ("1.0.0", "1.0.0"), ("1.*", "1.1.0")]
)
def test_conda_constraints_are_read_as_conda_reads_them(universe: Universe, spec: str, version: str) -> None:
    assert resolve(universe, spec)["fx-core"] == version


def test_a_constraint_no_parser_accepts_is_a_resolution_error(universe: Universe) -> None:
    with pytest.raises(ResolutionError, match=r"fx-core '>=1\.0,<<2' is not a valid conda match spec"):
        resolve(universe, ">=1.0,<<2")
