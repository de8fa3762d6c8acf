"""Registration only: keep this module light, the factory imports the implementation when it is used."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from envcore import hookimpl
from envcore.types import EnvType, Resolver, ResolverPlugin

if TYPE_CHECKING:
    from envcore.config import Config


def _resolver(config: Config) -> Resolver:
    from envcore_example.resolver import ExampleResolver

    return ExampleResolver(config)


@hookimpl
def envcore_resolvers() -> Iterator[ResolverPlugin]:
    yield ResolverPlugin(
        name="example",
        env_types=frozenset({EnvType.PYPI_ONLY}),
        factory=_resolver,
        summary="Greedy resolution of pure-Python wheels from a file:// simple index (a template)",
    )
