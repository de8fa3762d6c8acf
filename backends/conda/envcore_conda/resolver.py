"""Resolve conda requirements by running a conda-compatible CLI: ``<tool> create --dry-run --json``.

One driver serves ``conda``, ``mamba`` (1.x and 2.x) and ``micromamba``: subclasses set the tool name, the
setting holding its path, and the versions it supports. What the tool sees is built per call in a private
temporary directory: ``HOME``, ``CONDARC``/``MAMBARC`` (only ``add_pip_as_python_dependency: false``: pip only
when asked for), the root prefix, the target prefix and, for private channels, a ``netrc`` file (``NETRC``) that both conda (requests) and libmamba (curl) read, so
credentials are never on the command line. The package cache (``CONDA_PKGS_DIRS``) is private to envcore
and persistent (``<cache>/conda-cli/<tool>/pkgs``): it only ever holds the tool's repodata cache, since a dry
run downloads no package, so every package of the solution is reported in ``FETCH`` with its url and hashes.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from envcore.config import Config, redact_text, redact_url
from envcore.errors import BackendUnavailable, EnvcoreError, ResolutionError
from envcore.platforms import DEFAULT_OSX
from envcore.specs import match_spec
from envcore.tools import ToolNotStarted, find_executable, run_tool, scratch_folder, write_netrc
from envcore.types import (
    CONDA,
    NPCONDA,
    SYS,
    LockedPackage,
    PackageFile,
    PackageKind,
    ResolveRequest,
)

#: virtual packages the request may carry -> the variable that makes the tool assume them
OVERRIDES = {
    "__glibc": "CONDA_OVERRIDE_GLIBC",
    "__cuda": "CONDA_OVERRIDE_CUDA",
    "__osx": "CONDA_OVERRIDE_OSX",
    "__archspec": "CONDA_OVERRIDE_ARCHSPEC",
    "__linux": "CONDA_OVERRIDE_LINUX",
}
#: variables passed through to the tool; everything else (CONDA_*, MAMBA_*, METAFLOW_*, secrets) is dropped
PASSTHROUGH = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SYSTEMROOT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)
_TOKEN = re.compile(r"/t/[^/]+/")
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TREE = " \t│└─├"
#: words in a failure that mean the channels could not be read (rather than the solve failing)
_CHANNEL_WORDS = (
    "http error",
    "download error",
    "401",
    "403",
    "404",
    "could not read the channel",
    "could not load repodata",
    "unavailable",
)
#: a line ending so continues on the next one (punctuation; libmamba's tree: "... because it requires")
_GO_ON = (":", ";", ".", "requires", "require", "options")
#: lines of tool boilerplate that say nothing about this failure (libmamba's aggregated-error footer)
_BOILERPLATE = (
    "If you run into this error repeatedly",
    "Please try running `mamba clean",
    "If you still are having issues",
    "https://github.com/mamba-org/mamba/issues",
)


def clean_url(url: str) -> str:
    """``url`` without ``user:password@`` and without an anaconda.org token segment (``/t/<token>/``)."""
    return _TOKEN.sub("/", redact_url(url), count=1)


def parse_version(text: str, tool: str) -> tuple[int, ...] | None:
    """The tool's own version from ``<tool> --version`` (``conda 24.11.3``; ``mamba 1.5.12`` + ``conda ...``;
    ``2.0.5``)."""
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if len(words) == 1 or words[0] == tool:
            found = _VERSION.search(words[-1])
            if found:
                return tuple(int(g) for g in found.groups() if g is not None)
    return None


def json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in a tool's stdout. Text may surround it: banners, warnings, or mamba 1.x's solver
    explanation printed before libmamba's own ``{"success": false}``. The first object that parses wins."""
    decoder = json.JSONDecoder()
    starts = [m.start() for m in re.finditer(r"(?m)^\{", text)]
    for start in starts or [text.find("{")]:
        if start < 0:
            break
        try:
            data, _end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        data = json.loads(text[start : end + 1])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def without_json(text: str) -> str:
    """``text`` minus the JSON object :func:`json_object` finds in it (what is left is the tool's prose)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"(?m)^\{", text):
        try:
            _data, end = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        return text[: match.start()] + text[end:]
    return text


def prose(parts: Iterable[str]) -> str:
    """Tool messages as one line: colours, tree glyphs and bullets dropped, lines joined by ``; `` (a line
    ending in punctuation or in libmamba's "it requires" goes on with a space); libmamba's bug-report footer
    is dropped."""
    out = ""
    for part in parts:
        for raw in _ANSI.sub("", part).splitlines():
            line = raw.strip(_TREE)
            line = line[2:] if line.startswith("- ") else line
            if not line or line.startswith(_BOILERPLATE):
                continue
            out += (" " if out.endswith(_GO_ON) else "; " if out else "") + line
    return out


def _stem(fn: str) -> tuple[str, str]:
    ext = ".tar.bz2" if fn.endswith(".tar.bz2") else Path(fn).suffix
    return fn[: -len(ext)] if ext else fn, ext


def _file_name(rec: Mapping[str, Any]) -> str:
    return str(rec.get("fn") or unquote(str(rec.get("url") or "").rsplit("/", 1)[-1]))


def _channel_base(url: str, subdir: str, fn: str) -> str | None:
    """The channel URL in front of ``/<subdir>/<fn>``; libmamba 2 percent-encodes the file name in urls
    (``x264-1%21164.3095-...``) but not in ``fn``."""
    if not subdir:
        return None
    for tail in (f"/{subdir}/{fn}", f"/{subdir}/{url.rsplit('/', 1)[-1]}"):
        if url.endswith(tail) and unquote(tail) == f"/{subdir}/{fn}":
            return url[: -len(tail)]
    return None


def locked_packages(data: Mapping[str, Any]) -> list[LockedPackage]:
    """LockedPackages from a dry-run's ``actions``: LINK entries in order, with url and hashes from the entry
    itself (libmamba tools: micromamba, mamba 2) or from the FETCH record of the same dist (conda and mamba
    1.x, whose LINK entries are ``dist_fields``: no url, no hashes). Other keys (``PREFIX``, ``UNLINK``,
    ``dry_run``, ``log_history`` ...) are ignored; libmamba 2.0's ``null`` for empty lists is accepted."""
    actions = data.get("actions") or {}
    fetch: dict[str, Mapping[str, Any]] = {}
    for rec in actions.get("FETCH") or ():
        fetch[_stem(_file_name(rec))[0]] = rec
    chosen: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
    cached = []
    for link in actions.get("LINK") or ():
        dist = str(link.get("dist_name") or _stem(_file_name(link))[0])
        if not dist:
            raise ValueError(f"a LINK entry names no package: {link!r:.200}")
        rec = link if link.get("url") and (link.get("sha256") or link.get("md5")) else fetch.get(dist)
        if rec is None:
            cached.append(dist)
        else:
            chosen.append((link, rec))
    if cached:
        raise ResolutionError(
            f"The solver chose {', '.join(cached)} but reported no download URL or hash for "
            f"{'it' if len(cached) == 1 else 'them'}: the tool found {'it' if len(cached) == 1 else 'them'} "
            "in a package cache it was not told about (a pkgs_dirs setting envcore did not clear). Remove "
            "<envcore cache>/conda-cli and retry, or unset pkgs_dirs in the tool's system-wide condarc."
        )
    packages = []
    for link, rec in chosen:
        url = str(rec["url"])
        fn = _file_name(rec)
        stem, ext = _stem(fn)
        subdir = str(rec.get("subdir") or link.get("platform") or "")
        base = _channel_base(url, subdir, fn)
        packages.append(
            LockedPackage(
                kind=PackageKind.CONDA,
                name=str(rec["name"]),
                version=str(rec["version"]),
                build=str(rec.get("build") or rec.get("build_string") or ""),
                filename=stem,
                files=(
                    PackageFile(
                        url_format=ext,
                        url=clean_url(url),
                        sha256=str(rec.get("sha256") or ""),
                        md5=str(rec["md5"]) if rec.get("md5") else None,
                        size=int(rec["size"]) if rec.get("size") else None,
                    ),
                ),
                subdir=subdir or None,
                channel=clean_url(base) if base else None,
                depends=tuple(str(d) for d in rec.get("depends") or ()),
            )
        )
    return install_order(packages)


def install_order(packages: Sequence[LockedPackage]) -> list[LockedPackage]:
    """Dependencies before dependents, otherwise the tool's order (stable; cycles keep the tool's order)."""
    by_name = {p.name: p for p in packages}
    done: dict[str, LockedPackage] = {}
    visiting: set[str] = set()

    def visit(pkg: LockedPackage) -> None:
        if pkg.name in done or pkg.name in visiting:
            return
        visiting.add(pkg.name)
        for dep in pkg.depends:
            name = dep.split()[0] if dep.split() else ""
            if name in by_name:
                visit(by_name[name])
        done[pkg.name] = pkg

    for pkg in packages:
        visit(pkg)
    return list(done.values())


def _channel_problem(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in _CHANNEL_WORDS)


def failure_summary(stdout: str, stderr: str) -> tuple[str, bool]:
    """One line describing why the tool failed, and whether the channels could not be read.

    Understood: libmamba's ``solver_problems`` (micromamba, mamba 2) and its ``log_history`` records (mamba
    after 2.8.1, where ``--json`` sends the log there instead of stderr); conda's error map (``exception_name``,
    ``message``, ``packages``); otherwise the prose on stdout/stderr (mamba 1.x prints its solver explanation
    as text, followed by libmamba's ``{"success": false}``)."""
    data = json_object(stdout)
    if data is not None and data.get("solver_problems"):
        return prose(str(p) for p in data["solver_problems"]), False
    if data is not None and data.get("exception_name"):
        name = str(data["exception_name"])
        if name.startswith("PackagesNotFound") and data.get("packages"):
            missing = ", ".join(str(p) for p in data["packages"])
            return f"{name}: these packages are not available from the channels: {missing}", False
        channel = any(w in name for w in ("HTTP", "Channel", "Proxy", "SSL", "Connection"))
        return f"{name}: {prose([str(data.get('message') or data.get('error') or '')])}", channel
    logged = [
        str(r.get("message", ""))
        for r in (data or {}).get("log_history") or ()
        if isinstance(r, dict) and r.get("level") in ("error", "critical")
    ]
    if logged:
        joined = prose(logged)
        return joined, _channel_problem(joined)
    text = "\n".join(part for part in (without_json(stdout), stderr) if part.strip())
    lines = [line for line in (_ANSI.sub("", x).strip(_TREE) for x in text.splitlines()) if line]
    useful = [line for line in lines if not line.startswith(("Traceback", "File ", "warning"))] or lines
    joined = prose(useful[-12:])
    return joined, _channel_problem(joined)


class CondaCliResolver:
    """Drives a conda-compatible CLI. Subclasses change the tool, its setting and its supported versions."""

    tool = "conda"
    setting = "ENVCORE_CONDA_EXE"
    minimum: tuple[int, ...] = (4, 12)
    supported = "conda 4.12 or newer (23.x to 26.x expected)"
    install_hint = "install Miniforge (https://conda-forge.org/download/) or Miniconda"

    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._exe: str | None = None
        self._version: tuple[int, ...] | None = None
        self._version_text = ""

    # --- finding and checking the executable ----------------------------------------------------------

    def _unavailable(self, what: str) -> BackendUnavailable:
        return BackendUnavailable(
            f"The {self.tool} resolver cannot run: {what}. It needs {self.supported}. Fix: {self.install_hint}, "
            f"then put `{self.tool}` on PATH or set METAFLOW_{self.setting} to the executable's path; or choose "
            "another resolver with METAFLOW_CONDA_DEPENDENCY_RESOLVER (e.g. rattler, which needs no binary)."
        )

    def _not_understood(self, what: str) -> ResolutionError:
        return ResolutionError(
            f"{self.executable()} answered `create --dry-run --json` in a form envcore does not read ({what}): it is "
            f"not {self.supported}, or a version that writes another JSON. Point METAFLOW_{self.setting} at "
            f"{self.tool} itself, or choose another resolver with METAFLOW_CONDA_DEPENDENCY_RESOLVER."
        )

    def executable(self) -> str:
        if self._exe:
            return self._exe
        found = find_executable(self.config, self.setting, (self.tool,), self._unavailable)
        if found is None:
            raise self._unavailable(
                f"no `{self.tool}` executable was found on PATH and METAFLOW_{self.setting} is not set"
            )
        self._exe = found
        return found

    def tool_version(self) -> tuple[int, ...]:
        """The tool's version, asked once (``--version``)."""
        with self._lock:
            if self._version is None:
                exe = self.executable()
                try:  # (run_tool: an interruption stops it)
                    done = run_tool(
                        [exe, "--version"],
                        what=f"{self.tool} --version",
                        timeout=120,
                        env=self._base_env(Path(tempfile.gettempdir())),
                    )
                except ToolNotStarted as exc:
                    raise self._unavailable(f"`{exe} --version` could not start ({exc.why})") from None
                except EnvcoreError as exc:  # (it did not answer in time)
                    raise self._unavailable(f"`{exe} --version` failed ({exc.message.rstrip('.')})") from None
                found = parse_version(done.stdout, self.tool) if done.returncode == 0 else None
                if found is None:
                    output = " ".join((done.stdout + done.stderr).split())[:300]
                    raise self._unavailable(
                        f"`{exe} --version` did not report a version (exit {done.returncode}: {output!r})"
                    )
                self._version, self._version_text = found, ".".join(map(str, found))
            return self._version

    def check(self) -> None:
        version = self.tool_version()
        if version < self.minimum:
            raise self._unavailable(f"{self.executable()} is version {self._version_text}, which is too old")

    def version(self) -> str:
        self.tool_version()
        return self._version_text

    # --- the command line and its environment --------------------------------------------------------

    def _base_env(self, work: Path) -> dict[str, str]:
        env = {k: v for k, v in {**os.environ, **self.config.environ}.items() if k in PASSTHROUGH}
        env.setdefault("PATH", os.defpath)
        env.update(HOME=str(work), MAMBA_NO_BANNER="1", CONDA_NUMBER_CHANNEL_NOTICES="0")
        return env

    def pkgs_dir(self) -> Path:
        return self.config.cache_dir() / "conda-cli" / self.tool / "pkgs"

    def command(
        self, exe: str, prefix: Path, root: Path, channels: Sequence[str], specs: Sequence[str]
    ) -> list[str]:
        cmd = [exe, "create", "--yes", "--dry-run", "--json", "--prefix", str(prefix), "--override-channels"]
        for channel in channels:
            cmd += ["--channel", channel]
        return [*cmd, *specs]

    def environment(self, request: ResolveRequest, work: Path, root: Path, explicit: bool) -> dict[str, str]:
        env = self._base_env(work / "home")
        for rc in ("condarc", "mambarc"):  # pip only when asked for: the tools add it to python by default
            (work / rc).write_text('{"add_pip_as_python_dependency": false}\n')
        pkgs = self.pkgs_dir()
        pkgs.mkdir(parents=True, exist_ok=True)
        env.update(
            CONDARC=str(work / "condarc"),
            MAMBARC=str(work / "mambarc"),
            CONDA_PKGS_DIRS=str(pkgs),
            CONDA_ENVS_DIRS=str(work / "envs"),
            MAMBA_ROOT_PREFIX=str(root),
            CONDA_SUBDIR=request.arch,
            MAMBA_PLATFORM=request.arch,
            CONDA_UNSATISFIABLE_HINTS_CHECK_DEPTH="0",
            CONDA_CHANNEL_PRIORITY="flexible" if explicit else "strict",
            MAMBA_CHANNEL_PRIORITY="flexible" if explicit else "strict",
            CONDA_OVERRIDE_CUDA="",  # no GPU of this machine leaks into the solution; the request says
            CONDA_ADD_PIP_AS_PYTHON_DEPENDENCY="false",
            MAMBA_ADD_PIP_AS_PYTHON_DEPENDENCY="false",
        )
        if request.arch in DEFAULT_OSX:
            env["CONDA_OVERRIDE_OSX"] = DEFAULT_OSX[request.arch]
        for req in request.of(SYS):
            if req.name in OVERRIDES:
                env[OVERRIDES[req.name]] = req.spec.partition("=")[0]
        if request.credentials:
            env["NETRC"] = str(write_netrc(request.credentials, work / "netrc", work / "home" / ".netrc"))
        return env

    # --- resolving -----------------------------------------------------------------------------------

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        self.check()
        channels = [self.config.channel_url(c) for c in request.sources.get(CONDA, ())]
        specs = []
        for req in request.of(CONDA, NPCONDA):
            url = self.config.channel_url(req.channel) if req.channel else None
            if url and url not in channels:
                channels.append(url)
            specs.append(match_spec(req, url))
        channels = [redact_url(c) for c in channels]  # user:password go by netrc, never on the command line
        if not channels:
            raise ResolutionError(
                "No conda channel is configured. Set METAFLOW_CONDA_CHANNELS (e.g. conda-forge) or add channels to "
                "your requirements."
            )
        explicit = any(req.channel for req in request.of(CONDA, NPCONDA)) or len(channels) > 1
        with scratch_folder(f"{self.tool}") as tmp:
            work = Path(tmp)
            (work / "home").mkdir()
            root = work / "root"
            root.mkdir()
            env = self.environment(request, work, root, explicit)
            cmd = self.command(self.executable(), work / "prefix", root, channels, specs)
            try:
                done = run_tool(
                    cmd, what=f"{self.tool} create --dry-run", env=env, cwd=work, debug=self.config.debug
                )
            except ToolNotStarted as exc:
                raise self._unavailable(f"running {cmd[0]} failed ({exc.why})") from None
        return self.interpret(done.returncode, done.stdout, done.stderr, request, channels)

    def interpret(
        self, returncode: int, stdout: str, stderr: str, request: ResolveRequest, channels: Sequence[str]
    ) -> list[LockedPackage]:
        """The packages of a ``create --dry-run --json`` run, or the ResolutionError its failure means."""
        data = json_object(stdout)
        if returncode == 0 and data is not None and data.get("success", True) and data.get("actions"):
            try:
                return locked_packages(data)
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                raise self._not_understood(f"{type(exc).__name__}: {exc}") from None
        if returncode == 0 and data is None:
            raise self._not_understood(f"not the JSON object it writes: {' '.join(stdout.split())[:200]!r}")
        if returncode < 0:  # killed by a signal (the OOM killer, a supervisor): no answer at all
            raise ResolutionError(
                f"{self.tool} {self._version_text} ({self.executable()}) was stopped by signal {-returncode} while "
                f"resolving for {request.arch}, before it answered. Check the machine's memory and what stops "
                f"processes here, then try again. {self._scrub(stderr, request)[-300:]}".rstrip()
            )
        summary, channel_problem = failure_summary(stdout, stderr)
        summary = self._scrub(summary, request)[:2000].rstrip(" .;")
        where = ", ".join(channels)
        if returncode == 0 and not summary:
            summary = f"it reported no packages to install ({' '.join(stdout.split())[:300]!r})"
        if channel_problem:
            raise ResolutionError(
                f"{self.tool} {self._version_text} could not read the conda channels ({where}) for {request.arch}: "
                f"{summary}. Check the channel names, METAFLOW_CONDA_CHANNEL_ALIAS, the credentials in "
                "METAFLOW_CONDA_SRCS_AUTH_INFO and your network."
            )
        from envcore.resolve import unmet_system_feature

        fix = unmet_system_feature(summary, request.arch) or (
            f"Change the constraint named above, or check that the package exists in the channels ({where})."
        )
        raise ResolutionError(
            f"The conda requirements cannot be resolved for {request.arch} by {self.tool} {self._version_text} "
            f"(exit code {returncode}): {summary}. {fix}"
        )

    @staticmethod
    def _scrub(text: str, request: ResolveRequest) -> str:
        text = _TOKEN.sub("/t/********/", redact_text(text))
        for _user, password in request.credentials.values():
            if password:
                text = text.replace(password, "********")
        return text
