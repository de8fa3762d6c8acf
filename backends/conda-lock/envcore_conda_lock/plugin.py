"""Hook implementations only; the driver is imported when a factory runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from envcore import hookimpl
from envcore.types import Capability, EnvType, ResolverPlugin, Setting

if TYPE_CHECKING:
    from envcore.config import Config
    from envcore.types import Resolver


def _resolver(config: Config) -> Resolver:
    from envcore_conda_lock.resolver import CondaLockResolver

    return CondaLockResolver(config)


@hookimpl
def envcore_resolvers() -> Iterator[ResolverPlugin]:
    yield ResolverPlugin(
        name="conda-lock",
        env_types=frozenset({EnvType.MIXED, EnvType.CONDA_ONLY}),
        factory=_resolver,
        summary="Lock conda + PyPI environments with conda-lock (needs micromamba, mamba or conda)",
        capabilities=frozenset(
            {Capability.CROSS_PLATFORM, Capability.VIRTUAL_PACKAGES, Capability.AUTH, Capability.OFFLINE}
        ),
        executables=("conda-lock", "micromamba", "mamba", "conda"),
    )


@hookimpl
def envcore_settings() -> Iterator[Setting]:
    yield Setting(
        name="ENVCORE_CONDA_LOCK_EXE",
        help="Path (or name on PATH) of a conda-lock executable (default: `python -m conda_lock` with envcore's "
        "interpreter)",
    )
    yield Setting(
        name="ENVCORE_CONDA_LOCK_CONDA_EXE",
        help="Path (or name on PATH) of the micromamba, mamba or conda executable conda-lock solves with "
        "(default: the first of micromamba, mamba, conda on PATH); the file name selects the CLI dialect",
    )
    yield Setting(
        name="ENVCORE_CONDA_LOCK_PYPI_TO_CONDA_LOOKUP",
        help="PyPI-to-conda name mapping for conda-lock (a local .json/.yml file or URL in grayskull's format); "
        "default: the same names on both sides, nothing downloaded",
    )
