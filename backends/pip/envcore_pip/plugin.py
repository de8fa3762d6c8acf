"""Hook implementations only; the implementation is imported when a factory runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from envcore import hookimpl
from envcore.types import Capability, EnvType, ResolverPlugin

if TYPE_CHECKING:
    from envcore.config import Config
    from envcore.types import Resolver


def _resolver(config: Config) -> Resolver:
    from envcore_pip.resolver import PipResolver

    return PipResolver(config)


@hookimpl
def envcore_resolvers() -> Iterator[ResolverPlugin]:
    yield ResolverPlugin(
        name="pip",
        env_types=frozenset({EnvType.PYPI_ONLY}),
        factory=_resolver,
        summary="Resolve PyPI packages with pip install --dry-run --report (pip from its PyPI wheel)",
        capabilities=frozenset({Capability.CROSS_PLATFORM, Capability.AUTH, Capability.OFFLINE}),
    )
