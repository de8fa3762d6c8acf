"""The plugins that ship with the core: the local store, the default naming scheme, the rattler-uv
composition and the pylock.toml reader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from envcore import hookimpl
from envcore.types import (
    Capability,
    EnvType,
    NamingPlugin,
    NamingScheme,
    PackageFormat,
    PackageFormatPlugin,
    PackageKind,
    Resolver,
    ResolverPlugin,
    StoragePlugin,
    Store,
)

if TYPE_CHECKING:
    from envcore.config import Config


def _local_store(root: str, config: Config) -> Store:
    from envcore.errors import ConfigError
    from envcore.local_store import LocalStore

    folder = Path(root.removeprefix("file://")).expanduser()
    if folder.exists() and not folder.is_dir():  # said before anything is resolved, not when caching
        raise ConfigError(
            f"The local store's root {folder} is a file, not a folder. Point METAFLOW_CONDA_LOCALROOT (or the "
            "datastore root) at a folder you can write."
        )
    return LocalStore(folder)


def _default_naming() -> NamingScheme:
    from envcore.naming import DefaultNaming

    return DefaultNaming()


@hookimpl
def envcore_storage() -> Iterator[StoragePlugin]:
    yield StoragePlugin(
        name="local", factory=_local_store, summary="A directory on this machine (or a shared mount)"
    )


@hookimpl
def envcore_naming() -> Iterator[NamingPlugin]:
    yield NamingPlugin(
        name="default", factory=_default_naming, summary="sha1 ids compatible with metaflow-netflixext"
    )


# the built-in mixed resolver's name: resolve tells it from other resolvers without importing envcore.compose
COMPOSITION = "rattler-uv"


def _composition(config: Config) -> Resolver:
    from envcore.compose import ComposedResolver

    return ComposedResolver.from_config(config)


def _pylock(config: Config) -> Resolver:
    from envcore.pylock import PylockResolver

    return PylockResolver(config)


@hookimpl
def envcore_resolvers() -> Iterator[ResolverPlugin]:
    yield ResolverPlugin(
        name=COMPOSITION,
        env_types=frozenset({EnvType.MIXED}),
        factory=_composition,
        summary="Mixed environments: the conda resolver for python and conda packages, then the PyPI resolver",
        capabilities=frozenset(
            {Capability.CROSS_PLATFORM, Capability.VIRTUAL_PACKAGES, Capability.AUTH, Capability.OFFLINE}
        ),
    )
    yield ResolverPlugin(
        name="pylock_toml",
        env_types=frozenset({EnvType.PYPI_ONLY}),
        factory=_pylock,
        summary="PyPI packages read from a pylock.toml (PEP 751) without resolving (PYLOCK_TOML_DEPENDENCY_RESOLVER)",
        capabilities=frozenset({Capability.CROSS_PLATFORM, Capability.OFFLINE}),
    )


def _conda_format() -> PackageFormat:
    from envcore.formats.conda import CondaFormat

    return CondaFormat()


def _wheel_format() -> PackageFormat:
    from envcore.formats.wheel import WheelFormat

    return WheelFormat()


def _sdist_format() -> PackageFormat:
    from envcore.formats.wheel import SdistFormat

    return SdistFormat()


@hookimpl
def envcore_package_formats() -> Iterator[PackageFormatPlugin]:
    yield PackageFormatPlugin(
        name="conda",
        kind=PackageKind.CONDA,
        extensions=(".conda", ".tar.bz2"),
        factory=_conda_format,
        summary="conda packages (zip of zstd tars, and bzip2 tars)",
    )
    yield PackageFormatPlugin(
        name="wheel",
        kind=PackageKind.PYPI,
        extensions=(".whl",),
        factory=_wheel_format,
        summary="Python wheels",
    )
    yield PackageFormatPlugin(
        name="sdist",
        kind=PackageKind.PYPI,
        extensions=(".tar.gz", ".zip"),
        factory=_sdist_format,
        summary="Python source distributions (built into wheels before use)",
    )
