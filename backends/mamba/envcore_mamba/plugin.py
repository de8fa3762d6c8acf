"""Hook implementations only; the driver is imported when a factory runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from envcore_conda.plugin import CAPABILITIES

from envcore import hookimpl
from envcore.types import EnvType, ResolverPlugin, Setting

if TYPE_CHECKING:
    from envcore.config import Config
    from envcore.types import Resolver


def _resolver(config: Config) -> Resolver:
    from envcore_mamba.resolver import MambaResolver

    return MambaResolver(config)


@hookimpl
def envcore_resolvers() -> Iterator[ResolverPlugin]:
    yield ResolverPlugin(
        name="mamba",
        env_types=frozenset({EnvType.CONDA_ONLY}),
        factory=_resolver,
        summary="Solve conda environments with the mamba CLI, 1.x or 2.x (create --dry-run --json)",
        capabilities=CAPABILITIES,
        executables=("mamba",),
    )


@hookimpl
def envcore_settings() -> Iterator[Setting]:
    yield Setting(
        name="ENVCORE_MAMBA_EXE",
        help="Path (or name on PATH) of the mamba executable (default: `mamba` on PATH)",
    )
