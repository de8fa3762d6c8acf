"""Hook implementations only; the implementation is imported when a factory runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from envcore import hookimpl
from envcore.types import Capability, EnvType, InstallerPlugin, PackageKind, ResolverPlugin, Setting

if TYPE_CHECKING:
    from envcore.config import Config
    from envcore.types import Installer, Resolver


def _resolver(config: Config) -> Resolver:
    from envcore_uv.resolver import UvResolver

    return UvResolver(config)


def _installer(config: Config) -> Installer:
    from envcore_uv.installer import UvInstaller

    return UvInstaller(config)


@hookimpl
def envcore_resolvers() -> Iterator[ResolverPlugin]:
    yield ResolverPlugin(
        name="uv",
        env_types=frozenset({EnvType.PYPI_ONLY}),
        factory=_resolver,
        summary="Resolve PyPI packages with uv (binary from the uv wheel)",
        capabilities=frozenset({Capability.CROSS_PLATFORM, Capability.AUTH, Capability.OFFLINE}),
        executables=("uv",),
    )


@hookimpl
def envcore_installers() -> Iterator[InstallerPlugin]:
    yield InstallerPlugin(
        name="uv",
        kind=PackageKind.PYPI,
        factory=_installer,
        summary="Install verified wheels with uv, offline",
    )


@hookimpl
def envcore_settings() -> Iterator[Setting]:
    yield Setting(name="ENVCORE_UV_EXE", help="uv executable to use (default: the one of the uv wheel)")
