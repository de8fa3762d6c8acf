"""Resolve PyPI requirements with ``pip install --dry-run --ignore-installed --report``, for any target
platform (``--platform/--python-version/--implementation/--abi --only-binary=:all:``).

pip runs ``--isolated`` in a scrubbed environment (no user configuration, no ``PIP_*`` variables), from the
interpreter this plugin is installed in, so the result depends only on the request.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from envcore import pypi
from envcore.config import Config, redact_text
from envcore.errors import BackendUnavailable, ResolutionError
from envcore.tools import run_tool, tail, tool_env
from envcore.types import PYPI, LockedPackage, ResolveRequest

_SUPPORTED = ("--pre", "--no-index", "--find-links", "-f", "--trusted-host")


def _option_args(extras: Sequence[str]) -> list[str]:
    args: list[str] = []
    for extra in extras:
        option, _, value = extra.replace("=", " ", 1).partition(" ")
        if option not in _SUPPORTED:
            raise ResolutionError(f"pip does not support the requirements option {extra!r} here; remove it.")
        args += [option, value.strip()] if value.strip() else [option]
    return args


class PipResolver:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.cache_dir = config.cache_dir() / "pip"

    def _pip(self) -> list[str]:
        return [sys.executable, "-m", "pip"]

    def check(self) -> None:
        done = run_tool([*self._pip(), "--version"], what="pip", timeout=60)
        if done.returncode != 0:
            raise BackendUnavailable(
                f"pip is not usable here: {tail(done.stderr)}. Install it (the envcore-pip distribution depends on it: reinstall it)."
            )

    def version(self) -> str:
        done = run_tool([*self._pip(), "--version"], what="pip", timeout=60)
        return done.stdout.split()[1] if done.returncode == 0 and len(done.stdout.split()) > 1 else "unknown"

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        with tempfile.TemporaryDirectory(prefix="envcore-pip-") as tmp:
            work = Path(tmp)
            pypi.write_resolver_inputs(request, work, "pip")
            provided = pypi.conda_python_packages(request.installed, request.installed_distributions)
            done = run_tool(
                [*self._pip(), *self._args(request, work)],
                what="pip install --dry-run",
                env=tool_env(
                    {
                        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                        "PIP_NO_INPUT": "1",
                        **pypi.netrc_env(request, work),
                    }
                ),
                debug=self.config.debug,
            )
            if done.returncode != 0:
                raise ResolutionError(
                    f"The PyPI requirements cannot be resolved for {request.arch} (python {request.python_version}) "
                    f"with pip: {_pip_error(done.stderr)}. Change the requirement named above, or check the index."
                )
            report = json.loads((work / "report.json").read_text())
        return self._packages(request, report, set(provided))

    def _args(self, request: ResolveRequest, work: Path) -> list[str]:
        major, minor = request.python_version.split(".")[:2] if request.python_version else ("3", "11")
        args = [
            "install",
            "--isolated",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(work / "report.json"),
            "--target",
            str(work / "target"),
            "--cache-dir",
            str(self.cache_dir),
            "--only-binary=:all:",
            "--python-version",
            f"{major}.{minor}",
            "--implementation",
            "cp",
            "--abi",
            f"cp{major}{minor}",
            "--abi",
            "abi3",
            "--abi",
            "none",
            *(arg for platform in pypi.platform_tags(request) for arg in ("--platform", platform)),
            "--constraint",
            str(work / "constraints.txt"),
            *_option_args(request.extras.get(PYPI, ())),
        ]
        sources = request.sources.get(PYPI, ())
        if sources and "--no-index" not in request.extras.get(PYPI, ()):
            args += ["--index-url", sources[0], *(a for s in sources[1:] for a in ("--extra-index-url", s))]
        return [*args, "-r", str(work / "requirements.in")]

    def _packages(
        self, request: ResolveRequest, report: dict[str, object], provided: set[str]
    ) -> list[LockedPackage]:
        out = []
        entries = report.get("install", [])
        assert isinstance(entries, list)
        for item in entries:
            name, version = item["metadata"]["name"], item["metadata"]["version"]
            if pypi.canonicalize(name) in provided:
                continue  # the conda side installs it
            info = item["download_info"]
            url = info["url"]
            sha256 = info.get("archive_info", {}).get("hashes", {}).get("sha256")
            size = None
            if not sha256:
                sha256, size = pypi.sha256_of(url, request.credentials)
            out.append(pypi.locked_wheel(name, version, url, sha256, size))
        return out


def _pip_error(stderr: str) -> str:
    lines = [line.strip() for line in redact_text(stderr).splitlines() if line.strip().startswith("ERROR")]
    return tail("\n".join(lines) or redact_text(stderr), lines=6)
