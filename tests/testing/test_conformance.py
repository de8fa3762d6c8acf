"""The built-in plugins against the conformance kit, unmodified: the rattler-uv composition, the local store,
and the conda, wheel and sdist formats (with the kit's hostile archives)."""

from __future__ import annotations

from pathlib import Path

import pytest

from envcore.formats.conda import CondaFormat
from envcore.formats.wheel import SdistFormat, WheelFormat
from envcore.local_store import LocalStore
from envcore.testing.channel import Universe
from envcore.testing.conformance import PackageFormatConformance, ResolverConformance, StorageConformance
from envcore.types import PackageFormat, Store


class TestCompositionConformance(ResolverConformance):
    resolver_name = "rattler-uv"


class TestLocalStoreConformance(StorageConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        return LocalStore(tmp_path / "store")


def _first(universe: Universe, suffix: str, name: str = "fx-core-") -> Path:
    files = [*universe.conda_packages, *universe.pypi_files]
    return next(p for p in files if p.name.startswith(name) and p.name.endswith(suffix))


class TestCondaV2Conformance(PackageFormatConformance):
    extension = ".conda"

    @pytest.fixture
    def package_format(self) -> PackageFormat:
        return CondaFormat()

    @pytest.fixture
    def good_archive(self, universe: Universe) -> Path:
        return _first(universe, ".conda")


class TestCondaV1Conformance(TestCondaV2Conformance):
    extension = ".tar.bz2"

    @pytest.fixture
    def good_archive(self, universe: Universe) -> Path:
        return _first(universe, ".tar.bz2", "fx-vintage-")


class TestWheelConformance(PackageFormatConformance):
    extension = ".whl"

    @pytest.fixture
    def package_format(self) -> PackageFormat:
        return WheelFormat()

    @pytest.fixture
    def good_archive(self, universe: Universe) -> Path:
        return _first(universe, ".whl", "fx_core-")


class TestSdistConformance(PackageFormatConformance):
    extension = ".tar.gz"

    @pytest.fixture
    def package_format(self) -> PackageFormat:
        return SdistFormat()

    @pytest.fixture
    def good_archive(self, universe: Universe) -> Path:
        return _first(universe, ".tar.gz", "fx_core-")
