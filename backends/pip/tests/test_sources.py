"""Source distributions with the pip resolver: for a target this interpreter matches, pip resolves as for
itself and the core builds what it locks as an sdist (as the original's pip resolver does); for any other
target it takes wheels only and says so."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from envcore import resolve, specs
from envcore.config import Config
from envcore.errors import ResolutionError
from envcore.plugins import Registry, build_registry
from envcore.resolve import local_arch
from envcore.testing.channel import Universe


def _setup(universe: Universe, tmp_path: Path) -> tuple[Registry, Config]:
    config = Config.load(
        environ={
            "METAFLOW_HOME": str(tmp_path / "mf"),
            "METAFLOW_CONDA_CHANNELS": universe.channel_url,
            "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": universe.simple_url,
            "METAFLOW_ENVCORE_CACHE_DIR": str(tmp_path / "cache"),
            "METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER": "pip",
        }
    )
    return build_registry(config), config


def test_a_source_distribution_is_built_into_a_wheel_for_this_machine(
    universe: Universe, tmp_path: Path
) -> None:
    registry, config = _setup(universe, tmp_path)
    request = resolve.build_request(specs.from_decorator(packages={"fx-src": ""}), config, local_arch())
    env = resolve.resolve(registry, request)
    built = {p.name: p for p in env.packages}["fx-src"]
    assert built.version == "0.9.0" and built.source.url_format == ".whl" and built.source.built
    assert built.source.url.endswith("fx_src-0.9.0.tar.gz")  # where it was built from


def test_another_target_takes_wheels_only_and_says_so(universe: Universe, tmp_path: Path) -> None:
    registry, config = _setup(universe, tmp_path)
    request = resolve.build_request(specs.from_decorator(packages={"fx-src": ""}), config, "osx-arm64")
    with pytest.raises(ResolutionError) as info:
        resolve.resolve(registry, request)
    assert "No matching distribution found for fx-src" in info.value.message
    assert "pip takes wheels only" in info.value.message and "=uv" in info.value.message


def test_a_git_repository_is_built_at_the_commit_its_revision_names(
    universe: Universe, git_project: tuple[Path, str], tmp_path: Path
) -> None:
    """As the original's pip resolver: pip resolves the tag to its commit, the repository is checked out there and
    built with pip wheel; the locked file says where it came from, pinned to the commit."""
    repo, commit = git_project
    registry, config = _setup(universe, tmp_path)
    spec = specs.from_decorator(packages={"fx-src": f"@ git+{repo.as_uri()}@v0.9.0"})
    env = resolve.resolve(registry, resolve.build_request(spec, config, local_arch()))
    built = {p.name: p for p in env.packages}
    assert built["fx-src"].version == "0.9.0" and "fx-core" in built  # its dependency, from the index
    assert built["fx-src"].source.built and built["fx-src"].source.url == f"git+{repo.as_uri()}@{commit}"
    cached = config.cache_dir().rglob(built["fx-src"].filename + ".whl")
    assert any(p.stat().st_size == built["fx-src"].source.size for p in cached)
    with pytest.raises(ResolutionError, match="must be built into a wheel") as info:
        resolve.resolve(registry, resolve.build_request(spec, config, "osx-arm64"))
    assert "osx-arm64" in info.value.message
    missing = specs.from_decorator(packages={"fx-src": f"@ git+{repo.as_uri()}@no-such-tag"})
    with pytest.raises(ResolutionError, match="no-such-tag"):
        resolve.resolve(registry, resolve.build_request(missing, config, local_arch()))


def test_a_local_directory_is_built_into_a_wheel(universe: Universe, tmp_path: Path) -> None:
    with tarfile.open(universe.wheels_dir / "fx_src-0.9.0.tar.gz") as archive:
        archive.extractall(tmp_path / "src", filter="data")
    project = tmp_path / "src" / "fx_src-0.9.0"
    registry, config = _setup(universe, tmp_path)
    spec = specs.from_decorator(packages={"fx-src": f"@ {project.as_uri()}"})
    env = resolve.resolve(registry, resolve.build_request(spec, config, local_arch()))
    built = {p.name: p for p in env.packages}["fx-src"]
    assert built.version == "0.9.0" and built.source.built and built.source.url == project.as_uri()


def test_an_index_that_does_not_answer_is_named_as_such(tmp_path: Path) -> None:
    """pip finds no version where it cannot reach the index: it said 'The PyPI requirements cannot be resolved ...:
    Could not find a version that satisfies the requirement fx-core ... Change the requirement named above', the
    index's failure last."""
    import sys

    from envcore.testing.servers import free_port
    from envcore.types import PYPI, Requirement, ResolveRequest

    config = Config.load(environ={"METAFLOW_ENVCORE_CACHE_DIR": str(tmp_path / "cache")})
    resolver = build_registry(config).resolver_named("pip")
    request = ResolveRequest(
        arch=local_arch(),
        requirements=(Requirement(category=PYPI, name="fx-core"),),
        sources={PYPI: (f"http://127.0.0.1:{free_port()}/simple/",)},
        python_version=".".join(map(str, sys.version_info[:3])),
    )
    with pytest.raises(ResolutionError) as info:
        resolver.resolve(request)
    message = info.value.message
    assert message.startswith("The PyPI index could not be read while resolving for"), message
    assert "Connection refused" in message and "check the network" in message
    assert "Change the requirement" not in message
