"""The uv installer beyond what the end-to-end tests cover: what a live progress bar reads while it works."""

from __future__ import annotations

from pathlib import Path

from envcore import resolve, specs
from envcore.hydrate import fetch_packages
from envcore.plugins import build_registry
from envcore.testing.channel import Universe
from envcore.testing.fixtures import universe_config
from envcore.types import InstallProgress, PackageKind


def test_the_progress_count_is_the_wheels_uv_has_unpacked(universe: Universe, tmp_path: Path) -> None:
    config = universe_config(universe, tmp_path)
    registry = build_registry(config)
    request = resolve.build_request(specs.from_decorator(packages={"fx-web": ""}), config, "linux-64")
    files = fetch_packages(registry, resolve.resolve(registry, request), None)
    conda = [f for f in files if f[0].kind is PackageKind.CONDA]
    wheels = [f for f in files if f[0].kind is PackageKind.PYPI]
    assert len(wheels) >= 2  # fx-web and what it depends on
    installer = registry.installer(PackageKind.PYPI)
    assert isinstance(installer, InstallProgress)
    for name, unpacked in (("env", len(wheels)), ("again", 0)):
        # a new cache unpacks each wheel once; the second prefix finds them all unpacked (its bar is completed
        # when install returns)
        prefix = tmp_path / name
        prefix.mkdir()
        registry.installer(PackageKind.CONDA).install(conda, prefix)
        count = installer.install_progress(wheels, prefix)
        assert count() == 0
        installer.install(wheels, prefix)
        assert count() == unpacked
