"""Hook implementations only; the implementation is imported when a factory runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from envcore import hookimpl
from envcore.types import Capability, EnvType, InstallerPlugin, PackageKind, ResolverPlugin

if TYPE_CHECKING:
    from envcore.config import Config
    from envcore.types import Installer, Resolver


def _resolver(config: Config) -> Resolver:
    from envcore_rattler.resolver import RattlerResolver

    return RattlerResolver(config)


def _installer(config: Config) -> Installer:
    from envcore_rattler.installer import RattlerInstaller

    return RattlerInstaller(config)


@hookimpl
def envcore_resolvers() -> Iterator[ResolverPlugin]:
    yield ResolverPlugin(
        name="rattler",
        env_types=frozenset({EnvType.CONDA_ONLY}),
        factory=_resolver,
        summary="Solve conda environments with py-rattler (embedded, no binary)",
        capabilities=frozenset(
            {
                Capability.CROSS_PLATFORM,
                Capability.VIRTUAL_PACKAGES,
                Capability.EXTEND,
                Capability.AUTH,
                Capability.OFFLINE,
                Capability.CONDA_TOKEN,
            }
        ),
    )


@hookimpl
def envcore_installers() -> Iterator[InstallerPlugin]:
    yield InstallerPlugin(
        name="rattler",
        kind=PackageKind.CONDA,
        factory=_installer,
        summary="Extract and link conda packages with py-rattler (hardlinks from a package cache)",
    )
