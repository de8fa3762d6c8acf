"""Hook implementations only; the implementation is imported when a factory runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from envcore import hookimpl
from envcore.types import Capability, EnvType, ResolverPlugin, Setting

if TYPE_CHECKING:
    from envcore.config import Config
    from envcore.types import Resolver


def _resolver(config: Config) -> Resolver:
    from envcore_poetry.resolver import PoetryResolver

    return PoetryResolver(config)


@hookimpl
def envcore_resolvers() -> Iterator[ResolverPlugin]:
    yield ResolverPlugin(
        name="poetry",
        env_types=frozenset({EnvType.PYPI_ONLY}),
        factory=_resolver,
        summary="Resolve PyPI packages with poetry lock (http(s) indexes only)",
        capabilities=frozenset({Capability.CROSS_PLATFORM, Capability.AUTH, Capability.OFFLINE}),
    )


@hookimpl
def envcore_settings() -> Iterator[Setting]:
    yield Setting(
        name="ENVCORE_POETRY_EXE",
        help="poetry script to run (its Python interpreter runs the lock); default: the poetry installed here",
    )
