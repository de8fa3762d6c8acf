"""``NAME @ URL`` through the uv resolver: wheels over http, sdists, and what cannot be built for another
architecture."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from envcore import resolve, specs
from envcore.config import Config
from envcore.errors import ResolutionError
from envcore.plugins import build_registry
from envcore.testing.channel import Universe
from envcore.testing.fixtures import WheelIndex, universe_config
from envcore.types import LockedPackage, PackageKind


def _resolve(config: Config, line: str, arch: str = "linux-64") -> dict[str, LockedPackage]:
    request = resolve.build_request(specs.parse_requirements_txt(line), config, arch)
    env = resolve.resolve(build_registry(config), request)
    return {p.name: p for p in env.packages if p.kind is PackageKind.PYPI}


@pytest.mark.parametrize("arch", ["linux-64", "osx-arm64"])
def test_a_wheel_url_over_http_is_locked_with_its_hash(
    universe: Universe, wheel_index: WheelIndex, tmp_path: Path, arch: str
) -> None:
    url = wheel_index.http_url.replace("/simple/", "/wheels/fx_core-1.1.0-py3-none-any.whl")
    found = _resolve(universe_config(universe, tmp_path), f"fx-core @ {url}\n", arch)
    core = found["fx-core"]
    assert core.version == "1.1.0" and core.source.url == url and not core.source.built
    wheel = universe.wheels_dir / "fx_core-1.1.0-py3-none-any.whl"
    assert core.source.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_an_sdist_url_is_built_into_a_wheel_here(
    universe: Universe, wheel_index: WheelIndex, tmp_path: Path
) -> None:
    url = wheel_index.http_url.replace("/simple/", "/wheels/fx_src-0.9.0.tar.gz")
    config = universe_config(universe, tmp_path)
    found = _resolve(config, f"{url}\n")
    src = found["fx-src"]
    assert src.version == "0.9.0" and src.source.built and src.source.url == url
    assert src.filename == "fx_src-0.9.0-py3-none-any" and "fx-core" in found
    with pytest.raises(ResolutionError, match=r"must be built into a wheel.*not osx-arm64"):
        _resolve(config, f"{url}\n", "osx-arm64")


def test_a_wheel_for_another_platform_is_refused_by_name(universe: Universe, tmp_path: Path) -> None:
    wheel = next(universe.wheels_dir.glob("fx_native-1.0.0-*manylinux*.whl"))
    with pytest.raises(ResolutionError, match=r"does not fit osx-arm64"):
        _resolve(universe_config(universe, tmp_path), f"fx-native @ {wheel.as_uri()}\n", "osx-arm64")
