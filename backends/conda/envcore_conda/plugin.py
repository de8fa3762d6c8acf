"""Hook implementations only; the driver is imported when a factory runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from envcore import hookimpl
from envcore.types import Capability, EnvType, ResolverPlugin, Setting

if TYPE_CHECKING:
    from envcore.config import Config
    from envcore.types import Resolver

#: what every conda-CLI resolver declares (the conformance kit checks each)
CAPABILITIES = frozenset(
    {
        Capability.CROSS_PLATFORM,
        Capability.VIRTUAL_PACKAGES,
        Capability.EXTEND,
        Capability.AUTH,
        Capability.OFFLINE,
    }
)


def _resolver(config: Config) -> Resolver:
    from envcore_conda.resolver import CondaCliResolver

    return CondaCliResolver(config)


@hookimpl
def envcore_resolvers() -> Iterator[ResolverPlugin]:
    yield ResolverPlugin(
        name="conda",
        env_types=frozenset({EnvType.CONDA_ONLY}),
        factory=_resolver,
        summary="Solve conda environments with the conda CLI (create --dry-run --json)",
        capabilities=CAPABILITIES,
        executables=("conda",),
    )


@hookimpl
def envcore_settings() -> Iterator[Setting]:
    yield Setting(
        name="ENVCORE_CONDA_EXE",
        help="Path (or name on PATH) of the conda executable (default: `conda` on PATH)",
    )
