"""The built-in composition of a conda resolver and a PyPI resolver (registered as ``rattler-uv``).

The conda side is solved first, python included; the PyPI side is then resolved for that exact python and
the target platform, with the PyPI equivalents of the conda-installed Python packages pinned so that pip
never replaces them. The result is one locked environment (conda packages first, in install order). PyPI-only
environments use the same path: their python comes from the conda side, as in the original extension.

The PyPI side need not wait for the conda side: what the conda side gave the last time the same conda request
was solved on this machine is remembered (in the cache directory: the :data:`CONDA_SIDES_KEPT` conda requests
used last), and the PyPI side is resolved for it in a thread while the conda side is solved again. Its answer
is used only when the new conda answer makes the very same PyPI request (an unchanged channel); otherwise the
PyPI side is resolved again for the new one. Either way the result is what resolving one side after the other
gives; when the channel did not change, it comes sooner by the time of the conda solve.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from envcore import TYPE_CHECKING
from envcore.config import Config
from envcore.errors import ResolutionError
from envcore.progress import debug_line
from envcore.tools import in_this_work
from envcore.types import CONDA, NPCONDA, PYPI, SYS, EnvType, LockedPackage, Resolver, ResolveRequest

if TYPE_CHECKING:
    from envcore.plugins import Registry

CONDA_SIDES_KEPT = 256  # remembered conda sides (a few kB each); the least recently used go first


class ComposedResolver:
    def __init__(
        self,
        conda: tuple[str, Resolver],
        pypi: tuple[str, Resolver],
        cache_dir: Path | None = None,
        *,
        debug: bool = False,
    ) -> None:
        """``cache_dir``: where the conda packages whose Python distributions must be read are fetched to (and
        what they install remembered), and each conda side remembered; without it, a conda package is taken to
        install its own name only, and the PyPI side waits for the conda side. ``debug``: say on stderr whether
        an early PyPI answer was used."""
        (self.conda_name, self.conda), (self.pypi_name, self.pypi) = conda, pypi
        self.cache_dir, self.debug = cache_dir, debug

    @classmethod
    def from_config(cls, config: Config) -> ComposedResolver:
        """The composition of the configured conda and PyPI resolvers (for callers without a registry)."""
        from envcore.plugins import build_registry

        registry = build_registry(config)
        return cls.with_conda(registry, registry.resolver_plugin(EnvType.PYPI_ONLY).name)[1]

    @classmethod
    def with_conda(cls, registry: Registry, pypi: str) -> tuple[str, ComposedResolver]:
        """The configured conda resolver composed with the PyPI resolver named ``pypi``, and the composition's
        name for messages (``rattler+uv``)."""
        conda = registry.resolver_plugin(EnvType.CONDA_ONLY).name
        composed = cls(
            (conda, registry.resolver_named(conda)),
            (pypi, registry.resolver_named(pypi)),
            registry.config.cache_dir(),
            debug=registry.config.debug,
        )
        return f"{conda}+{pypi}", composed

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
        memory = self._memory(conda_request) if request.of(PYPI) else None
        recalled = _recalled(memory) if memory is not None else None  # (marks it used)
        early = _EarlyResolve(self.pypi, _pypi_request(request, *recalled)) if recalled else None
        try:
            return self._resolve(request, conda_request, memory, early)
        finally:
            if early is not None:
                early.join()  # not left running: its tool would outlive the command, its folder not removed

    def _resolve(
        self,
        request: ResolveRequest,
        conda_request: ResolveRequest,
        memory: Path | None,
        early: _EarlyResolve | None,
    ) -> Sequence[LockedPackage]:
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
        pypi_request = _pypi_request(request, python.version, tuple(conda_packages), renamed)
        used = early if early is not None and early.request == pypi_request else None
        if self.debug and early is not None:
            debug_line(
                f"debug[envcore compose]: the PyPI side, resolved beside the conda side for {request.arch}, "
                + ("was used" if used is not None else "was for another conda answer: resolving it again")
            )
        if memory is not None and used is None:
            _remember(memory, pypi_request)
        try:
            pypi_packages = used.answer() if used is not None else self.pypi.resolve(pypi_request)
        except ResolutionError as exc:
            raise _conflict(pypi_request, conda_packages) or exc from None
        provided = conda_python_packages(conda_packages, renamed)
        self._check_kept(pypi_packages, provided)
        return [*conda_packages, *(p for p in pypi_packages if canonicalize(p.name) not in provided)]

    def _check_kept(self, pypi_packages: Sequence[LockedPackage], provided: dict[str, LockedPackage]) -> None:
        """The PyPI side must keep the conda side's Python packages (``request.installed``) at their versions:
        its own copy of one is dropped, so another version would leave the PyPI packages built on one that is
        not there."""
        from envcore.pypi import canonicalize

        for pkg in pypi_packages:
            conda = provided.get(canonicalize(pkg.name))
            if conda is None:
                continue
            # (here: most PyPI sides share no package with the conda side, and load no packaging.version)
            from packaging.version import InvalidVersion, Version

            try:
                moved = Version(pkg.version) != Version(conda.version)
            except InvalidVersion:  # a conda version PEP 440 cannot read: not comparable here
                continue
            if moved:
                raise ResolutionError(
                    f"The PyPI resolver {self.pypi_name} locked {pkg.name} {pkg.version}, but the conda side installs "
                    f"{conda.name} {conda.version}, which it was given to keep (request.installed): the PyPI "
                    "packages would be built on a version that is not there. This is a bug in that resolver; choose "
                    "another with METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER, or report it to its authors."
                )

    def _memory(self, conda_request: ResolveRequest) -> Path | None:
        """Where what the conda side gives for ``conda_request`` is remembered (credentials are not part of a
        request's ``repr``, and package URLs never carry them)."""
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(f"{self.conda_name}\n{conda_request!r}".encode()).hexdigest()[:32]
        return self.cache_dir / "conda-sides" / f"{key}.json"

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


def _pypi_request(
    request: ResolveRequest,
    python_version: str,
    installed: tuple[LockedPackage, ...],
    renamed: dict[str, str],
) -> ResolveRequest:
    """What the PyPI side is asked, for the conda side's python and Python packages."""
    return replace(
        request,
        requirements=request.of(PYPI, SYS),
        sources={PYPI: request.sources.get(PYPI, ())},
        python_version=python_version,
        installed=installed,
        installed_distributions=renamed,
    )


def _remember(memory: Path, pypi_request: ResolveRequest) -> None:
    from envcore.configfiles import keep_newest, remember_json
    from envcore.description import package_to_dict

    new = not memory.exists()
    remember_json(
        memory,
        {
            "python_version": pypi_request.python_version,
            "installed": [package_to_dict(p) for p in pypi_request.installed],
            "installed_distributions": dict(pypi_request.installed_distributions),
        },
    )
    if new:
        keep_newest(memory.parent, CONDA_SIDES_KEPT)


def _recalled(memory: Path) -> tuple[str, tuple[LockedPackage, ...], dict[str, str]] | None:
    """What the conda side gave the last time (python version, packages, renamed distributions), if known."""
    import json

    from envcore.description import package_from_dict

    try:
        saved = json.loads(memory.read_text(encoding="utf-8"))
        recalled = (
            str(saved["python_version"]),
            tuple(package_from_dict(p) for p in saved["installed"]),
            {str(k): str(v) for k, v in saved["installed_distributions"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # never solved here, or a file from another version: no head start
    try:
        os.utime(memory)  # used now: the least recently used memories are the ones dropped
    except OSError:
        pass  # a read-only cache keeps its memories as they are
    return recalled


class _EarlyResolve:
    """A PyPI resolve of ``request`` running in a thread; its answer (or its error) is taken once."""

    def __init__(self, resolver: Resolver, request: ResolveRequest) -> None:
        self.request = request
        self._outcome: Sequence[LockedPackage] | BaseException = ()
        self._thread = threading.Thread(  # its tool belongs to the resolve that started it
            target=in_this_work(self._run),
            args=(resolver,),
            name="envcore-early-pypi",
            daemon=True,
        )
        self._thread.start()

    def _run(self, resolver: Resolver) -> None:
        try:
            self._outcome = list(resolver.resolve(self.request))
        except BaseException as exc:  # handed to the caller, in its thread
            self._outcome = exc

    def join(self) -> None:
        self._thread.join()

    def answer(self) -> Sequence[LockedPackage]:
        self._thread.join()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome


def _conflict(request: ResolveRequest, conda_packages: Sequence[LockedPackage]) -> ResolutionError | None:
    """A clearer error when a PyPI requirement names a package the conda side already installs in a version
    the requirement does not accept (one it accepts is not the conflict: the resolver's own error then says
    what is)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    from envcore.pypi import canonicalize, conda_python_packages

    provided = conda_python_packages(conda_packages, request.installed_distributions)
    for req in request.of(PYPI):
        pkg = provided.get(canonicalize(req.name))
        if pkg is None or not req.spec:
            continue
        constraint = req.spec if req.spec[0] in "<>=!~" else f"=={req.spec}"
        try:
            fits = Version(pkg.version) in SpecifierSet(constraint)
        except (InvalidSpecifier, InvalidVersion):
            fits = False  # cannot tell: named, as before
        if not fits:
            return ResolutionError(
                f"The PyPI requirement {req.name}{constraint} conflicts with "
                f"the conda package {pkg.name} {pkg.version}, which the conda side installs and pip must not replace. "
                f"Request {req.name} on one side only, or make both constraints agree."
            )
    return None
