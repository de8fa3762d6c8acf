"""The built-in composition of a conda resolver and a PyPI resolver (registered as ``rattler-uv``).

The conda side is solved first, python included; the PyPI side is then resolved for that exact python and
the target platform, with the PyPI equivalents of the conda-installed Python packages pinned so that pip
never replaces them. The result is one locked environment (conda packages first, in install order). PyPI-only
environments use the same path: their python comes from the conda side, as in the original extension.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from envcore.config import Config
from envcore.errors import ResolutionError
from envcore.types import CONDA, NPCONDA, PYPI, SYS, EnvType, LockedPackage, Resolver, ResolveRequest

NAME = "rattler-uv"


class ComposedResolver:
    def __init__(
        self, conda: tuple[str, Resolver], pypi: tuple[str, Resolver], cache_dir: Path | None = None
    ) -> None:
        """``cache_dir``: where the conda packages whose Python distributions must be read are fetched to (and
        what they install remembered); without it, a conda package is taken to install its own name only."""
        (self.conda_name, self.conda), (self.pypi_name, self.pypi) = conda, pypi
        self.cache_dir = cache_dir

    @classmethod
    def from_config(cls, config: Config) -> ComposedResolver:
        """The composition of the configured conda and PyPI resolvers (for callers without a registry)."""
        from envcore.plugins import build_registry
        from envcore.types import EnvType

        registry = build_registry(config)
        conda = registry.resolver_plugin(EnvType.CONDA_ONLY).name
        pypi = registry.resolver_plugin(EnvType.PYPI_ONLY).name
        return cls(
            (conda, registry.resolver_named(conda)), (pypi, registry.resolver_named(pypi)), config.cache_dir()
        )

    def check(self) -> None:
        self.conda.check()
        self.pypi.check()

    def version(self) -> str:
        return f"{self.conda.version()} + {self.pypi_name} {self.pypi.version()}"

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        conda_request = replace(
            request,
            requirements=request.of(CONDA, NPCONDA, SYS),
            sources={CONDA: request.sources.get(CONDA, ())},
            extras={},
        )
        if request.env_type is EnvType.PYPI_ONLY and request.of(NPCONDA):
            self._check_non_python(replace(conda_request, requirements=request.of(NPCONDA, SYS)))
        conda_packages = list(self.conda.resolve(conda_request))
        python = next((p for p in conda_packages if p.name == "python"), None)
        if python is None:
            raise ResolutionError(
                f"The conda side of the environment for {request.arch} has no python, so PyPI packages cannot be "
                "installed. Add python to the conda requirements (or let envcore add it: do not remove it)."
            )
        if not request.of(PYPI):
            return conda_packages
        from envcore.pypi import (  # (packaging: only with PyPI requirements)
            canonicalize,
            conda_python_packages,
        )

        renamed: dict[str, str] = {}
        if self.cache_dir is not None:  # what the conda packages install under other names (pytorch: torch)
            from envcore.condadists import renamed_distributions

            renamed = renamed_distributions(conda_packages, self.cache_dir, request.credentials)
        pypi_request = replace(
            request,
            requirements=request.of(PYPI, SYS),
            sources={PYPI: request.sources.get(PYPI, ())},
            python_version=python.version,
            installed=tuple(conda_packages),
            installed_distributions=renamed,
        )
        try:
            pypi_packages = list(self.pypi.resolve(pypi_request))
        except ResolutionError as exc:
            raise _conflict(pypi_request, conda_packages) or exc from None
        provided = conda_python_packages(conda_packages, renamed)
        return [*conda_packages, *(p for p in pypi_packages if canonicalize(p.name) not in provided)]

    def _check_non_python(self, request: ResolveRequest) -> None:
        """The conda packages of a PyPI-only environment (``conda_only``, ``--conda-pkg``) must not use python:
        the environment's python is there for its PyPI packages (the original checks the same)."""
        if any(p.name == "python" for p in self.conda.resolve(request)):
            names = ", ".join(r.name for r in request.of(NPCONDA))
            raise ResolutionError(
                f"Cannot specify a non-python Conda dependency that uses python: {names}. Please use the mixed "
                "mode instead: request them as conda packages (@conda / --conda / environment.yml) with the PyPI "
                "ones."
            )


def _conflict(request: ResolveRequest, conda_packages: Sequence[LockedPackage]) -> ResolutionError | None:
    """A clearer error when a PyPI requirement names a package the conda side already installs."""
    from envcore.pypi import canonicalize, conda_python_packages

    provided = conda_python_packages(conda_packages, request.installed_distributions)
    for req in request.of(PYPI):
        pkg = provided.get(canonicalize(req.name))
        if pkg is not None and req.spec:
            return ResolutionError(
                f"The PyPI requirement {req.name}{'' if req.spec[0] in '<>=!~' else '=='}{req.spec} conflicts with "
                f"the conda package {pkg.name} {pkg.version}, which the conda side installs and pip must not replace. "
                f"Request {req.name} on one side only, or make both constraints agree."
            )
    return None
