"""Resolve PyPI requirements with ``pip install --dry-run --ignore-installed --report``, for any target
platform (``--platform/--python-version/--implementation/--abi --only-binary=:all:``). For a target this
interpreter matches (its architecture, python X.Y and glibc), pip resolves as for itself, source distributions
included: the core builds them into wheels (``envcore.build``), as the original's pip resolver does. Git
repositories (at the commit pip resolved their revision to) and local directories are built with ``pip wheel``
then, as the original does too.

pip runs ``--isolated`` in a scrubbed environment (no user configuration, no ``PIP_*`` variables), from the
interpreter this plugin is installed in, so the result depends only on the request.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from envcore import pypi
from envcore.config import Config, redact_text, redact_url
from envcore.errors import BackendUnavailable, ResolutionError
from envcore.platforms import local_arch
from envcore.tools import run_tool, scratch_folder, tail, tool_env
from envcore.types import LockedPackage, ResolveRequest

_SUPPORTED: tuple[str, ...] = ("--pre", "--no-index", "--find-links", "-f", "--trusted-host")
_SUPPORTED += ("--only-binary", "--no-binary", "--prefer-binary")


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

    def _pip_for(self, request: ResolveRequest) -> list[str]:
        """pip, evaluating markers for the target: ``--platform`` and ``--python-version`` choose wheels but leave
        markers (``; sys_platform == "darwin"``, of the requirements and of every dependency) evaluated for this
        machine, so a foreign target got this machine's packages. For a foreign target pip runs with its marker
        environment set to the target's (the values of ``envcore.specs.marker_environments``)."""
        if resolves_as_this_interpreter(request):
            return self._pip()
        from envcore.specs import marker_environments

        target = marker_environments(request.python_version or "3.11", request.arch)[0]
        target.pop("extra", None)
        return [sys.executable, "-c", _PIP_FOR_TARGET, json.dumps(target)]

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
        if not resolves_as_this_interpreter(request):
            from envcore.build import refuse_references_to_build

            python = f"{sys.version_info[0]}.{sys.version_info[1]}"
            refuse_references_to_build(request, f"this machine's architecture, python {python} and glibc")
        with scratch_folder("pip") as tmp:
            work = Path(tmp)
            pypi.write_resolver_inputs(request, work, "pip")
            provided = pypi.conda_python_packages(request.installed, request.installed_distributions)
            done = run_tool(
                [*self._pip_for(request), *self._args(request, work)],
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
                too_new = _too_new_for_target(request, done.stderr)
                if too_new:
                    raise ResolutionError(pypi.too_new_refusal(request, too_new))
                unreachable = _unreachable_index(done.stderr)
                if unreachable:
                    raise ResolutionError(
                        f"The PyPI index could not be read while resolving for {request.arch} with pip: "
                        f"{unreachable}. pip retried; check the network, the index URL and its credentials, then "
                        "try again."
                    )
                hint = (
                    " For this target pip takes wheels only (source distributions are built for this machine's "
                    f"architecture, python {sys.version_info[0]}.{sys.version_info[1]} and glibc); the uv resolver "
                    "(METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER=uv) reports which versions lack wheels."
                    if "No matching distribution" in done.stderr and not resolves_as_this_interpreter(request)
                    else ""
                )
                raise ResolutionError(
                    f"The PyPI requirements cannot be resolved for {request.arch} (python {request.python_version}) "
                    f"with pip: {_pip_error(done.stderr, done.stdout, work / 'requirements.in')}. Change the "
                    "requirement named above, or check the index." + hint
                )
            report = json.loads((work / "report.json").read_text())
        # pip's report says a release is yanked, its warning why
        reasons = {pypi.canonicalize(name): why.strip() for name, why in _YANKED.findall(done.stderr)}
        for item in report.get("install", []):
            if item.get("is_yanked"):
                name, version = item["metadata"]["name"], item["metadata"]["version"]
                pypi.warn_yanked(name, version, reasons.get(pypi.canonicalize(name)))
        return self._packages(request, report, set(provided))

    def _args(self, request: ResolveRequest, work: Path) -> list[str]:
        major, minor = request.python_version.split(".")[:2] if request.python_version else ("3", "11")
        target = [
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
        ]
        args = [
            "install",
            "--isolated",
            "--dry-run",
            "--ignore-installed",
            "--report",
            str(work / "report.json"),
            "--target",
            str(work / "target"),
            "--cache-dir",
            str(self.cache_dir),
            *([] if resolves_as_this_interpreter(request) else target),
            "--constraint",
            str(work / "constraints.txt"),
            *_option_args(pypi.tool_options(request)),
        ]
        return [*args, *pypi.index_url_args(request), "-r", str(work / "requirements.in")]

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
            if "vcs_info" in info:
                out.append(self._repository(request, name, info))
                continue
            if "dir_info" in info:
                path = Path(url2pathname(urlsplit(url).path))
                out.append(self._built(request, name, path, url, f"the directory {path}"))
                continue
            sha256 = info.get("archive_info", {}).get("hashes", {}).get("sha256")
            size = None
            if not sha256:
                sha256, size = pypi.sha256_of(url, request.credentials)
            out.append(pypi.locked_wheel(name, version, url, sha256, size))
        return out

    def _repository(self, request: ResolveRequest, name: str, info: dict[str, Any]) -> LockedPackage:
        """A git repository at the commit pip resolved its revision to, checked out and built."""
        from envcore.build import checkout_git, git_source

        vcs, url = info["vcs_info"], str(info["url"])
        commit, subdirectory = str(vcs.get("commit_id", "")), str(info.get("subdirectory") or "")
        with scratch_folder("pip-git") as tmp:
            checkout = Path(tmp) / "checkout"
            checkout_git(name, str(vcs.get("vcs", "")), url, commit, checkout, debug=self.config.debug)
            what = f"the git repository {redact_url(url)} at {commit[:12]}"
            source = git_source(url, commit, subdirectory)
            return self._built(request, name, checkout / subdirectory, source, what)

    def _built(
        self, request: ResolveRequest, name: str, project: Path, source: str, what: str
    ) -> LockedPackage:
        """``project`` (a directory) built into a wheel with ``pip wheel``, by this interpreter (the target's)."""
        from envcore.build import lock_built_wheel

        with scratch_folder("pip-build") as tmp:
            out = Path(tmp)
            stderr, wheel = pypi.build_one_wheel(
                [
                    *self._pip(),
                    "wheel",
                    "--isolated",
                    "--no-deps",
                    "--quiet",
                    "--wheel-dir",
                    str(out),
                    "--cache-dir",
                    str(self.cache_dir),
                    *_option_args(pypi.tool_options(request)),
                    *pypi.index_url_args(request),
                    str(project),
                ],
                request,
                out,
                what="pip wheel",
                env={"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"},
                debug=self.config.debug,
            )
            if wheel is None:
                raise ResolutionError(
                    f"Building {name} from {what} with pip failed: {_pip_error(stderr)}. Fix the project, or "
                    "build a wheel yourself and require NAME @ file:///path/to/the.whl."
                )
            return lock_built_wheel(self.config, request, name, wheel, source, what)


# pip with the marker environment of its vendored packaging (what every marker is evaluated against) replaced by
# the target's, given as JSON in argv[1]
_PIP_FOR_TARGET = """
import json, sys
import pip._vendor.packaging.markers as markers
target = json.loads(sys.argv.pop(1))
here = markers.default_environment
markers.default_environment = lambda: {**here(), **target}
from pip._internal.cli.main import main
sys.exit(main())
"""


def resolves_as_this_interpreter(request: ResolveRequest) -> bool:
    """Whether the target is what pip sees running here (architecture, python X.Y, and glibc on Linux): then it
    resolves without ``--platform`` and friends, which would restrict it to wheels."""
    if request.arch != local_arch() or not request.python_version or not request.arch.startswith("linux-"):
        return False
    if tuple(request.python_version.split(".")[:2]) != tuple(map(str, sys.version_info[:2])):
        return False
    try:
        host = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return False
    wanted = pypi.glibc_of(request)
    return wanted is None or host == f"glibc {wanted[0]}.{wanted[1]}"


#: pip's warning of a yanked release it chose: ... is a yanked version: 'fx-http' candidate (version 1.3.0 at
#: URL ...)\nReason for being yanked: broken import
_YANKED = re.compile(
    r"is a yanked version: '([^']+)' candidate \(version [^\n]*\nReason for being yanked: ([^\n]*)"
)


def _too_new_for_target(request: ResolveRequest, stderr: str) -> dict[tuple[str, str], tuple[int, int]]:
    """pip's 'No matching distribution found for numpy==2.4.6' when the releases asked for have wheels, all for
    a newer glibc or macOS than the target's (read from the indexes): the release to name with the version it
    needs."""
    found = re.search(r"No matching distribution found for (\S+)", redact_text(stderr))
    return pypi.requirement_misfits(request, found[1]) if found else {}


def _unreachable_index(stderr: str) -> str | None:
    """pip's last warning of an index it could not reach, when it found no version of a requirement (pip then
    says 'Could not find a version that satisfies the requirement', as for a name the index lacks)."""
    if "(from versions: none)" not in stderr:
        return None
    warnings = [
        line.strip().removeprefix("WARNING: ")
        for line in redact_text(stderr).splitlines()
        if line.startswith("WARNING") and ("Retrying" in line or "Could not fetch" in line)
    ]
    return warnings[-1].rstrip(". ") if warnings else None


def _pip_error(stderr: str, stdout: str = "", requirements: Path | None = None) -> str:
    """pip's reason, for a person: its ERROR lines, the requirement each ``-r FILE (line N)`` stands for, the
    conflict's causes (printed to stdout), and the last warning about an index it could not reach."""
    lines = [line.strip() for line in redact_text(stderr).splitlines()]
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR")]
    written = requirements.read_text().splitlines() if requirements and requirements.exists() else []

    def requirement(found: re.Match[str]) -> str:
        number = int(found[1]) - 1
        return written[number].strip() if 0 <= number < len(written) else found[0]

    errors = [re.sub(r"-r \S+ \(line (\d+)\)", requirement, e) for e in errors]
    out = redact_text(stdout).splitlines()
    start = next((i for i, line in enumerate(out) if line.startswith("The conflict is caused by")), None)
    if start is not None:
        causes = [line.strip() for line in itertools.takewhile(str.strip, out[start + 1 :])]
        errors = [e for e in errors if not e.startswith("ResolutionImpossible")]
        constrained = any("(constraint)" in cause for cause in causes)
        errors.append(
            f"The conflict is caused by: {'; '.join(causes)}"
            + (" (a constraint is what the conda side installs)" if constrained else "")
        )
    unreachable = [
        line
        for line in lines
        if line.startswith("WARNING") and ("Retrying" in line or "Could not fetch" in line)
    ]
    if unreachable:
        errors.append(unreachable[-1].removeprefix("WARNING: "))
    return tail("\n".join(errors) or redact_text(stderr), lines=8)
