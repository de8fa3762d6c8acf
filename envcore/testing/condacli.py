"""A conda-CLI-compatible test executable built on py-rattler: ``conda``, ``mamba`` (1.x or 2.x) and
``micromamba`` for machines that have none of them (public test kit).

:func:`write_conda_cli` writes an executable named after the tool into a directory; it runs
``python -m envcore.testing.condacli --flavor <tool> --flavor-version <v> ARGS``. It implements the subset a
resolver driver needs, with each tool's output format (taken from the tools' sources):

* ``--version``: ``conda 24.11.3``; mamba 1.x ``mamba 1.5.12`` + ``conda 24.9.2``; mamba 2 / micromamba ``2.0.5``.
* ``create|install -n NAME|-p PREFIX [-c CH]... [--override-channels] [--platform|--subdir S] [--dry-run]
  [--json] [-y] [-r ROOT (libmamba tools)] SPECS``. Honours ``CONDA_SUBDIR``, ``CONDA_OVERRIDE_GLIBC / OSX /
  CUDA / LINUX / ARCHSPEC``, ``CONDA_PKGS_DIRS``, ``CONDA_CHANNEL_PRIORITY`` / ``MAMBA_CHANNEL_PRIORITY``,
  ``CONDARC`` / ``MAMBARC`` / ``~/.condarc`` (``channels``, ``channel_alias``, ``pkgs_dirs``,
  ``channel_priority``, ``add_pip_as_python_dependency``: true by default, as in the tools, so an environment
  with python gets pip), ``MAMBA_ROOT_PREFIX`` and credentials from ``NETRC`` / ``~/.netrc``.

  Dry-run JSON: conda and mamba 1.x (conda's ``handle_txn``) print
  ``{"actions": {"FETCH": [records], "LINK": [dist fields], "PREFIX": p}, "dry_run": true, "prefix": p,
  "success": true}`` where LINK entries have no url/hashes (``PackageRecord.dist_fields_dump``); libmamba
  tools (micromamba, mamba 2) print the same keys but LINK entries are full records with url, md5, sha256.
  FETCH lists only packages absent from the package caches, as the real tools do.
  Failures: conda prints its error map (``exception_name`` ``PackagesNotFoundError`` /
  ``LibMambaUnsatisfiableError``, ``packages``, ``message``...) on stdout, exit 1; mamba 1.x prints the solver
  explanation as text on stdout, exit 1; libmamba tools print ``{"solver_problems": [...], "success": false}``
  and ``critical libmamba Could not solve for environment specs`` on stderr, exit 1.
* ``info --json`` (conda's keys, plus ``mamba_version`` for mamba 1.x; libmamba's ``"package cache"`` ...
  keys), ``config list KEY --json`` / ``config --show KEY --json``, ``list -p PREFIX --json``.

Without ``--dry-run`` the environment is really created with ``rattler.install``. Not emulated: GPU
detection (``__cuda`` only from ``CONDA_OVERRIDE_CUDA``), ``defaults`` channel semantics beyond its URLs,
``--file``, ``update`` / ``remove``, ``env list`` (no driver calls it), token (``/t/<token>/``) channels,
libmamba 2.0's ``null`` for empty lists and the ``log_history`` of mamba after 2.8.1 (recorded samples under
``backends/<tool>/tests/recorded`` cover those).

:func:`real_tool` finds a REAL conda / mamba / micromamba for integration tests: ``ENVCORE_TEST_REAL_<TOOL>``
(an executable's path or name) or the tool on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the version each flavor reports unless told otherwise
DEFAULT_VERSIONS = {"conda": "24.11.3", "mamba": "2.0.5", "micromamba": "2.0.5"}
CONDA_OF_MAMBA1 = "24.9.2"  # the conda a mamba 1.x installation reports next to its own version
DEFAULT_ALIAS = "https://conda.anaconda.org"
DEFAULTS_URLS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")
DEFAULT_OSX = {"osx-arm64": "11.0", "osx-64": "10.15"}
ARCHSPEC = {"64": "x86_64", "aarch64": "aarch64", "arm64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}


def write_conda_cli(bin_dir: Path, flavor: str = "conda", version: str | None = None) -> Path:
    """Write an executable named ``flavor`` (``conda``, ``mamba`` or ``micromamba``) into ``bin_dir``.

    ``version`` defaults to :data:`DEFAULT_VERSIONS`; ``mamba`` with ``1.x`` speaks mamba 1 (conda's output),
    with ``2.x`` libmamba's. A conda-style installation root (``bin_dir/.<flavor>-root``) holds ``pkgs``.
    """
    if flavor not in DEFAULT_VERSIONS:
        raise ValueError(f"unknown flavor {flavor!r}; use one of {', '.join(DEFAULT_VERSIONS)}")
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / flavor
    args = [
        sys.executable,
        "-m",
        "envcore.testing.condacli",
        "--flavor",
        flavor,
        "--flavor-version",
        version or DEFAULT_VERSIONS[flavor],
        "--install-root",
        str(bin_dir.resolve() / f".{flavor}-root"),
    ]
    path.write_text(f'#!/bin/sh\nexec {" ".join(shlex.quote(a) for a in args)} "$@"\n')
    path.chmod(0o755)
    return path


def real_tool(tool: str) -> tuple[str | None, str]:
    """``(executable, "")`` of a real ``tool`` (``conda``, ``mamba``, ``micromamba``) for integration tests, or
    ``(None, reason)`` to skip with. ``ENVCORE_TEST_REAL_<TOOL>`` wins over PATH; a value that is not an
    executable is returned as given, so the test fails loudly instead of skipping."""
    variable = f"ENVCORE_TEST_REAL_{tool.upper()}"
    given = os.environ.get(variable, "").strip()
    if given:
        return (shutil.which(given) if os.sep not in given else None) or given, ""
    found = shutil.which(tool)
    if found:
        return found, ""
    return None, f"no real {tool}: set {variable} to its executable or put `{tool}` on PATH"


# --- the executable -------------------------------------------------------------------------------------


class ToolError(Exception):
    """Ends the command with ``rc``; ``stdout``/``stderr`` are what the real tool would print."""

    def __init__(self, rc: int, stdout: str = "", stderr: str = "") -> None:
        super().__init__(stderr or stdout)
        self.rc, self.stdout, self.stderr = rc, stdout, stderr


@dataclass
class Tool:
    flavor: str
    version: str
    install_root: Path
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def libmamba(self) -> bool:
        """micromamba and mamba >= 2 are the libmamba CLI; conda and mamba 1.x print conda's JSON."""
        return self.flavor == "micromamba" or (self.flavor == "mamba" and self.major >= 2)

    def version_text(self) -> str:
        if self.flavor == "conda":
            return f"conda {self.version}"
        if not self.libmamba:
            return f"mamba {self.version}\nconda {CONDA_OF_MAMBA1}"
        return self.version

    # -- configuration, as the tools read it --

    @functools.cached_property
    def rc(self) -> dict[str, Any]:
        import yaml

        home = Path(self.environ.get("HOME", "~")).expanduser()
        paths = [home / ".condarc", home / ".config/conda/.condarc", home / ".conda/.condarc"]
        if self.libmamba:
            paths.append(home / ".mambarc")
        paths += [Path(self.environ[v]) for v in ("CONDARC", "MAMBARC") if self.environ.get(v)]
        merged: dict[str, Any] = {}
        for path in paths:
            if path.is_file():
                data = yaml.safe_load(path.read_text()) or {}
                if isinstance(data, dict):
                    merged.update(data)
        return merged

    def root_prefix(self, given: str | None = None) -> Path:
        if self.libmamba:
            root = given or self.environ.get("MAMBA_ROOT_PREFIX")
            if root:
                return Path(root).expanduser().absolute()
            home = Path(self.environ.get("HOME", "~")).expanduser()
            return home / (".local/share/mamba" if self.major >= 2 else "micromamba")
        return self.install_root

    def pkgs_dirs(self, root: Path) -> list[Path]:
        raw = self.environ.get("CONDA_PKGS_DIRS")
        if raw:
            return [Path(p).expanduser().absolute() for p in raw.split(",") if p.strip()]
        configured = self.rc.get("pkgs_dirs")
        if isinstance(configured, list) and configured:
            return [Path(str(p)).expanduser().absolute() for p in configured]
        return [root / "pkgs"]

    def subdir(self, given: str | None = None) -> str:
        if given or self.environ.get("CONDA_SUBDIR") or self.environ.get("MAMBA_PLATFORM"):
            return given or self.environ.get("CONDA_SUBDIR") or self.environ["MAMBA_PLATFORM"]
        return str(self.rc.get("subdir") or host_subdir())

    def channel_url(self, channel: str) -> list[str]:
        if "://" in channel:
            return [channel.rstrip("/")]
        if channel.startswith(("/", ".", "~")):
            return [Path(channel).expanduser().absolute().as_uri()]
        if channel == "defaults":
            return list(DEFAULTS_URLS)
        alias = str(self.rc.get("channel_alias") or DEFAULT_ALIAS).rstrip("/")
        return [f"{alias}/{channel.strip('/')}"]

    def channels(self, given: Sequence[str], override: bool) -> list[str]:
        names = list(given)
        if not override:
            configured = self.rc.get("channels")
            if isinstance(configured, list) and configured:
                names += [str(c) for c in configured]
            elif not self.libmamba:
                names.append("defaults")
        return list(dict.fromkeys(url for name in names for url in self.channel_url(name)))

    def add_pip_as_python_dependency(self) -> bool:
        """conda's and libmamba's ``add_pip_as_python_dependency`` (default true: an environment with python
        gets pip too), from ``CONDA_``/``MAMBA_ADD_PIP_AS_PYTHON_DEPENDENCY`` or the rc files."""
        value = (
            self.environ.get("CONDA_ADD_PIP_AS_PYTHON_DEPENDENCY")
            or self.environ.get("MAMBA_ADD_PIP_AS_PYTHON_DEPENDENCY")
            or str(self.rc.get("add_pip_as_python_dependency", True))
        )
        return value.strip().lower() not in ("false", "no", "off", "0")

    def strict_priority(self, strict_flag: bool) -> bool:
        value = (
            self.environ.get("CONDA_CHANNEL_PRIORITY")
            or self.environ.get("MAMBA_CHANNEL_PRIORITY")
            or str(self.rc.get("channel_priority", "flexible"))
        )
        return strict_flag or value.lower() == "strict"

    def virtual_packages(self, subdir: str) -> list[tuple[str, str, str]]:
        env = self.environ
        family, _, machine = subdir.partition("-")
        found = [("__archspec", "1", env.get("CONDA_OVERRIDE_ARCHSPEC") or ARCHSPEC.get(machine, machine))]
        if family != "win":
            found.append(("__unix", "0", "0"))
        if family == "linux":
            host_linux = platform.system() == "Linux"
            linux = env.get("CONDA_OVERRIDE_LINUX") or (
                platform.release().split("-")[0] if host_linux else "0"
            )
            found.append(("__linux", linux, "0"))
            libc, libc_version = platform.libc_ver()
            glibc = env.get("CONDA_OVERRIDE_GLIBC", libc_version if libc == "glibc" else "")
            if glibc:
                found.append(("__glibc", glibc, "0"))
        if family == "osx":
            osx = env.get("CONDA_OVERRIDE_OSX", platform.mac_ver()[0])
            if osx:
                found.append(("__osx", osx, "0"))
        if family == "win":
            found.append(("__win", env.get("CONDA_OVERRIDE_WIN", "0"), "0"))
        cuda = env.get("CONDA_OVERRIDE_CUDA", "")  # no GPU detection: only the override
        if cuda:
            found.append(("__cuda", cuda, "0"))
        return found


def host_subdir() -> str:
    system, machine = platform.system(), platform.machine().lower()
    arm = machine in ("arm64", "aarch64")
    if system == "Darwin":
        return "osx-arm64" if arm else "osx-64"
    if system == "Windows":
        return "win-arm64" if arm else "win-64"
    return "linux-aarch64" if arm else {"x86_64": "linux-64"}.get(machine, f"linux-{machine}")


def _dumps(tool: Tool, data: Any) -> str:
    # conda: json.dumps(indent=2, sort_keys=True); libmamba: nlohmann dump(4) of sorted maps
    return json.dumps(data, indent=4 if tool.libmamba else 2, sort_keys=True)


def _base_url(record: Any) -> str:
    url = str(record.url)
    return url[: -len(f"/{record.subdir}/{record.file_name}")] if url.endswith(record.file_name) else url


def conda_record(record: Any) -> dict[str, Any]:
    """A FETCH entry of conda: the full PackageRecord dump."""
    data: dict[str, Any] = json.loads(record.to_json())
    data["channel"] = f"{_base_url(record)}/{record.subdir}"
    data.setdefault("depends", [])
    data.setdefault("constrains", [])
    return data


def dist_fields(record: Any) -> dict[str, Any]:
    """A LINK entry of conda / mamba 1.x (``PackageRecord.dist_fields_dump``): no url, no hashes."""
    base = _base_url(record)
    fn = record.file_name
    return {
        "base_url": base,
        "build_number": record.build_number,
        "build_string": str(record.build),
        "channel": base.rstrip("/").rsplit("/", 1)[-1],
        "dist_name": fn[: -len(".tar.bz2")] if fn.endswith(".tar.bz2") else fn.rsplit(".", 1)[0],
        "name": record.name.normalized,
        "platform": record.subdir,
        "version": str(record.version),
    }


def libmamba_record(record: Any) -> dict[str, Any]:
    """A FETCH / LINK entry of libmamba (``to_json(PackageInfo)``)."""
    data: dict[str, Any] = {
        "name": record.name.normalized,
        "version": str(record.version),
        "channel": _base_url(record),
        "url": str(record.url),
        "subdir": record.subdir,
        "fn": record.file_name,
        "size": record.size or 0,
        "timestamp": int(record.timestamp.timestamp() * 1000) if record.timestamp else 0,
        "build": str(record.build),
        "build_string": str(record.build),
        "build_number": record.build_number,
        "license": record.license or "",
        "track_features": ",".join(record.track_features),
        "depends": list(record.depends),
        "constrains": list(record.constrains),
    }
    if str(record.noarch) not in ("NoArchType(None)", "None", ""):
        data["noarch"] = "python" if record.noarch.python else "generic"
    if record.md5:
        data["md5"] = record.md5.hex()
    if record.sha256:
        data["sha256"] = record.sha256.hex()
    return data


def _cached(record: Any, pkgs_dirs: Sequence[Path]) -> bool:
    fn = record.file_name
    dist = fn[: -len(".tar.bz2")] if fn.endswith(".tar.bz2") else fn.rsplit(".", 1)[0]
    return any(
        (d / fn).is_file() or (d / dist / "info" / "repodata_record.json").is_file() for d in pkgs_dirs
    )


def _spec_channels(tool: Tool, specs: Sequence[str]) -> tuple[list[str], list[str]]:
    """``channel::name ...`` specs: the channel as a URL (also added to the sources) and the rewritten spec."""
    out, extra = [], []
    for spec in specs:
        if "::" in spec:
            channel, _, rest = spec.rpartition("::")
            url = tool.channel_url(channel)[0]
            extra.append(url)
            spec = f"{url}::{rest}"
        out.append(spec)
    return out, extra


def _client() -> Any:
    from rattler.networking import AuthenticationMiddleware, Client

    return Client([AuthenticationMiddleware()])  # reads $NETRC / ~/.netrc, as curl and requests do


def _solve_error(tool: Tool, problems: list[str], missing: list[str], channels: list[str]) -> ToolError:
    if tool.flavor == "conda":
        if missing:
            dashed = "".join(f"\n  - {m}" for m in missing)
            chans = "".join(f"\n  - {c}" for c in channels)
            message = (
                f"The following packages are not available from current channels:\n{dashed}\n\n"
                f"Current channels:\n{chans}\n\nTo search for alternate channels that may provide the conda "
                "package you're\nlooking for, navigate to\n\n    https://anaconda.org\n\nand use the search bar "
                "at the top of the page.\n"
            )
            data = {
                "caused_by": "None",
                "channel_urls": channels,
                "error": f"PackagesNotFoundError: {message}",
                "exception_name": "PackagesNotFoundError",
                "exception_type": "<class 'conda.exceptions.PackagesNotFoundError'>",
                "message": message,
                "packages": missing,
            }
        else:
            message = "Could not solve for environment specs\n" + "\n".join(problems)
            data = {
                "caused_by": "None",
                "error": f"LibMambaUnsatisfiableError: {message}",
                "exception_name": "LibMambaUnsatisfiableError",
                "exception_type": "<class 'conda_libmamba_solver.exceptions.LibMambaUnsatisfiableError'>",
                "message": message,
            }
        return ToolError(1, _dumps(tool, data) + "\n")
    lines = [f"nothing provides requested {m}" for m in missing] + problems
    if not tool.libmamba:  # mamba 1.x prints solver.explain_problems() and returns 1, no JSON
        return ToolError(1, "Could not solve for environment specs\n" + "\n".join(lines) + "\n")
    stderr = "".join(f"error    libmamba {line}\n" for line in lines)
    stderr += "critical libmamba Could not solve for environment specs\n"
    return ToolError(1, _dumps(tool, {"solver_problems": lines, "success": False}) + "\n", stderr)


def _channel_error(tool: Tool, exc: Exception, channels: list[str]) -> ToolError:
    text = " ".join(str(exc).split())
    if tool.flavor == "conda":
        message = f"HTTP error while reading the channels {', '.join(channels)}: {text}"
        data = {
            "caused_by": "None",
            "error": f"CondaHTTPError: {message}",
            "exception_name": "CondaHTTPError",
            "exception_type": "<class 'conda.exceptions.CondaHTTPError'>",
            "message": message,
        }
        return ToolError(1, _dumps(tool, data) + "\n")
    return ToolError(1, "", f"critical libmamba Could not read the channels: {text}\n")


def create(tool: Tool, argv: Sequence[str], command: str) -> str:
    import rattler
    import rattler.exceptions

    parser = argparse.ArgumentParser(prog=f"{tool.flavor} {command}")
    parser.add_argument("-n", "--name")
    parser.add_argument("-p", "--prefix")
    parser.add_argument("-c", "--channel", action="append", default=[])
    parser.add_argument("--override-channels", action="store_true")
    parser.add_argument("--platform", "--subdir", dest="platform")
    parser.add_argument("-d", "--dry-run", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-y", "--yes", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("--strict-channel-priority", action="store_true")
    if tool.libmamba:
        parser.add_argument("-r", "--root-prefix")
    parser.add_argument("specs", nargs="*")
    args = parser.parse_args(argv)
    root = tool.root_prefix(getattr(args, "root_prefix", None))
    if args.prefix:
        prefix = Path(args.prefix).expanduser().absolute()
    elif args.name:
        prefix = root / "envs" / args.name
    else:
        raise ToolError(2, "", f"{tool.flavor} {command}: error: one of -n NAME or -p PREFIX is required\n")
    if not args.specs:
        raise ToolError(1, "", f"{tool.flavor} {command}: error: no package specifications given\n")
    if args.override_channels and not args.channel:
        raise ToolError(1, "", "CondaValueError: Overriding channels requires at least one channel.\n")
    specs, spec_channels = _spec_channels(tool, args.specs)
    channels = list(dict.fromkeys([*tool.channels(args.channel, args.override_channels), *spec_channels]))
    if not channels:
        raise ToolError(1, "", "critical libmamba No channels were given: use -c or a .condarc.\n")
    try:
        for spec in specs:
            rattler.MatchSpec(spec)
    except Exception as exc:
        raise ToolError(1, "", f"InvalidMatchSpec: {exc}\n") from None
    subdir = tool.subdir(args.platform)
    platforms: list[Any] = [subdir, "noarch"]
    pkgs_dirs = tool.pkgs_dirs(root)
    gateway = rattler.Gateway(cache_dir=pkgs_dirs[0] / "cache", client=_client())
    virtual = [
        rattler.GenericVirtualPackage(rattler.PackageName(n), rattler.Version(v), rattler.BuildString(b))
        for n, v, b in tool.virtual_packages(subdir)
    ]
    names = [rattler.MatchSpec(s).name.normalized for s in specs]
    try:
        found = asyncio.run(
            gateway.query(channels, platforms, [n for n in names if not n.startswith("__")], recursive=False)
        )
        available = {r.name.normalized for per_channel in found for r in per_channel}
        missing = [
            s for s, n in zip(args.specs, names, strict=True) if not n.startswith("__") and n not in available
        ]
        if missing:
            raise _solve_error(tool, [], missing, channels)
        priority = (
            rattler.ChannelPriority.Strict
            if tool.strict_priority(args.strict_channel_priority)
            else rattler.ChannelPriority.Disabled
        )
        records = asyncio.run(
            rattler.solve(
                sources=channels,
                specs=specs,
                gateway=gateway,
                platforms=platforms,
                virtual_packages=virtual,
                channel_priority=priority,
            )
        )
        solved = {r.name.normalized for r in records}
        if tool.add_pip_as_python_dependency() and "python" in solved and "pip" not in solved:
            # the real tools make pip a dependency of python (when a channel has pip)
            has_pip = asyncio.run(gateway.query(channels, platforms, ["pip"], recursive=False))
            if any(per_channel for per_channel in has_pip):
                records = asyncio.run(
                    rattler.solve(
                        sources=channels,
                        specs=[*specs, "pip"],
                        gateway=gateway,
                        platforms=platforms,
                        virtual_packages=virtual,
                        channel_priority=priority,
                    )
                )
    except rattler.exceptions.SolverError as exc:
        problems = [line.strip(" │└─├") for line in str(exc).splitlines() if line.strip(" │└─├")]
        raise _solve_error(tool, problems, [], channels) from None
    except ToolError:
        raise
    except Exception as exc:  # gateway / fetch errors: unreadable channel, 401, ...
        raise _channel_error(tool, exc, channels) from None
    by_name = {r.name.normalized: r for r in records}
    ordered = [
        by_name[r.name.normalized] for r in rattler.PackageRecord.sort_topologically(list[Any](records))
    ]
    fetch = [r for r in ordered if not _cached(r, pkgs_dirs)]
    if not args.dry_run:
        asyncio.run(
            rattler.install(
                ordered, target_prefix=prefix, cache_dir=pkgs_dirs[0], show_progress=False, client=_client()
            )
        )
    if not args.json:
        lines = [
            f"  {r.name.normalized:<24} {r.version!s:<12} {r.build!s:<20} {_base_url(r)}" for r in ordered
        ]
        tail = "Dry run. Not executing the transaction." if args.dry_run else "Transaction finished"
        return (
            f"\n## Package Plan ##\n\n  environment location: {prefix}\n\n"
            + "\n".join(lines)
            + f"\n\n{tail}\n"
        )
    if tool.libmamba:
        actions: dict[str, Any] = {
            "FETCH": [libmamba_record(r) for r in fetch],
            "LINK": [libmamba_record(r) for r in ordered],
        }
    else:
        actions = {"FETCH": [conda_record(r) for r in fetch], "LINK": [dist_fields(r) for r in ordered]}
    if not actions["FETCH"]:
        del actions["FETCH"]
    actions["PREFIX"] = str(prefix)
    result: dict[str, Any] = {"actions": actions, "prefix": str(prefix), "success": True}
    if args.dry_run or tool.libmamba:
        result["dry_run"] = bool(args.dry_run)
    return _dumps(tool, result) + "\n"


def info(tool: Tool, argv: Sequence[str]) -> str:
    parser = argparse.ArgumentParser(prog=f"{tool.flavor} info")
    parser.add_argument("--json", action="store_true")
    if tool.libmamba:
        parser.add_argument("-r", "--root-prefix")
    args = parser.parse_args(argv)
    root = tool.root_prefix(getattr(args, "root_prefix", None))
    subdir = tool.subdir()
    channels = [f"{c}/{s}" for c in tool.channels([], False) for s in (subdir, "noarch")]
    virtual = tool.virtual_packages(subdir)
    data: dict[str, Any]
    if tool.libmamba:
        data = {
            "libmamba version": tool.version,
            f"{tool.flavor} version": tool.version,
            "curl version": "libcurl/8.10.1 OpenSSL/3.3.2 zlib/1.3.1 zstd/1.5.6 libssh2/1.11.0 nghttp2/1.64.0",
            "libarchive version": "libarchive 3.7.4 zlib/1.3.1 liblzma/5.6.3 bz2lib/1.0.8 libzstd/1.5.6",
            "envs directories": [str(root / "envs")],
            "package cache": [str(p) for p in tool.pkgs_dirs(root)],
            "environment": "None",
            "env location": "-",
            "user config files": [str(Path(tool.environ.get("HOME", "~")).expanduser() / ".mambarc")],
            "populated config files": [],
            "virtual packages": [f"{n}={v}={b}" for n, v, b in virtual],
            "channels": channels,
            "base environment": str(root),
            "platform": subdir,
        }
    else:
        data = {
            "active_prefix": None,
            "active_prefix_name": None,
            "channels": channels,
            "conda_build_version": "not installed",
            "conda_env_version": tool.version if tool.flavor == "conda" else CONDA_OF_MAMBA1,
            "conda_location": str(root / "lib/python3.12/site-packages/conda"),
            "conda_prefix": str(root),
            "conda_version": tool.version if tool.flavor == "conda" else CONDA_OF_MAMBA1,
            "default_prefix": str(root),
            "envs_dirs": [str(root / "envs")],
            "pkgs_dirs": [str(p) for p in tool.pkgs_dirs(root)],
            "platform": subdir,
            "python_version": "3.12.7.final.0",
            "root_prefix": str(root),
            "root_writable": True,
            "solver": {
                "default": True,
                "name": "libmamba",
                "user_agent": "solver/libmamba conda-libmamba-solver/24.9.0",
            },
            "virtual_pkgs": [[n, v, b] for n, v, b in virtual],
        }
        if tool.flavor == "mamba":
            data["mamba_version"] = tool.version
    if not args.json:
        return "".join(f"{k:>23} : {v}\n" for k, v in data.items())
    return _dumps(tool, data) + "\n"


def config(tool: Tool, argv: Sequence[str]) -> str:
    parser = argparse.ArgumentParser(prog=f"{tool.flavor} config")
    parser.add_argument("action", nargs="?", default=None)
    parser.add_argument("keys", nargs="*")
    parser.add_argument("--show", nargs="*")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-r", "--root-prefix")
    args = parser.parse_args(argv)
    keys = list(args.keys) + list(args.show or [])
    if args.action not in (None, "list"):
        keys.insert(0, args.action)
    root = tool.root_prefix(args.root_prefix)
    values: dict[str, Any] = {
        "pkgs_dirs": [str(p) for p in tool.pkgs_dirs(root)],
        "envs_dirs": [str(root / "envs")],
        "channels": list(tool.rc.get("channels") or ([] if tool.libmamba else ["defaults"])),
        "root_prefix": str(root),
        "subdir": tool.subdir(),
        "platform": tool.subdir(),
        "channel_alias": str(tool.rc.get("channel_alias") or DEFAULT_ALIAS),
    }
    unknown = [k for k in keys if k not in values]
    if unknown:
        raise ToolError(1, "", f"CondaKeyError: {unknown[0]!r}: invalid configuration key\n")
    shown = {k: values[k] for k in keys} if keys else values
    if args.json:
        return _dumps(tool, shown) + "\n"
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in shown.items())


def list_prefix(tool: Tool, argv: Sequence[str]) -> str:
    parser = argparse.ArgumentParser(prog=f"{tool.flavor} list")
    parser.add_argument("-p", "--prefix", required=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    meta = Path(args.prefix) / "conda-meta"
    if not meta.is_dir():
        raise ToolError(1, "", f"EnvironmentLocationNotFound: Not a conda environment: {args.prefix}\n")
    rows = []
    for path in sorted(meta.glob("*.json")):
        rec = json.loads(path.read_text())
        url = str(rec.get("url", ""))
        base = url[: -len(f"/{rec.get('subdir')}/{rec.get('fn')}")] if url else ""
        rows.append(
            {
                "base_url": base,
                "build_number": rec.get("build_number", 0),
                "build_string": rec.get("build", ""),
                "channel": base.rstrip("/").rsplit("/", 1)[-1],
                "dist_name": path.stem,
                "name": rec.get("name"),
                "platform": rec.get("subdir"),
                "version": rec.get("version"),
            }
        )
    if args.json:
        return _dumps(tool, rows) + "\n"
    return "".join(f"{r['name']:<24} {r['version']:<12} {r['build_string']}\n" for r in rows)


def run(argv: Sequence[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run one command line of the test executable; returns (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="condacli", add_help=False)
    parser.add_argument("--flavor", choices=sorted(DEFAULT_VERSIONS), required=True)
    parser.add_argument("--flavor-version")
    parser.add_argument("--install-root", default=str(Path.home() / ".envcore-condacli"))
    ours, rest = parser.parse_known_args(argv)
    tool = Tool(
        ours.flavor,
        ours.flavor_version or DEFAULT_VERSIONS[ours.flavor],
        Path(ours.install_root),
        dict(os.environ if environ is None else environ),
    )
    if "--version" in rest[:1] or rest[:1] == ["-V"]:
        return 0, tool.version_text() + "\n", ""
    commands: dict[str, Callable[[Tool, Sequence[str]], str]] = {
        "create": lambda t, a: create(t, a, "create"),
        "install": lambda t, a: create(t, a, "install"),
        "info": info,
        "config": config,
        "list": list_prefix,
    }
    if not rest or rest[0] not in commands:
        given = rest[0] if rest else ""
        return (
            2,
            "",
            f"{tool.flavor}: error: unknown or missing command {given!r}; use one of {', '.join(commands)}\n",
        )
    try:
        return 0, commands[rest[0]](tool, rest[1:]), ""
    except ToolError as exc:
        return exc.rc, exc.stdout, exc.stderr
    except SystemExit as exc:  # argparse usage errors
        return int(exc.code or 0), "", ""
    except Exception:  # a bug here, or something the real tool would also report as an unexpected error
        import traceback

        return 1, "", traceback.format_exc()


def main() -> None:
    rc, out, err = run(sys.argv[1:])
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # py-rattler can crash while the interpreter shuts down: leave without finalizers


if __name__ == "__main__":
    main()
else:  # the pytest fixtures; the executable itself does not pay for importing pytest
    import pytest

    @pytest.fixture(scope="session")
    def conda_cli_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
        """A directory holding ``conda``, ``mamba`` and ``micromamba`` test executables (default versions)."""
        bin_dir = tmp_path_factory.mktemp("conda-cli-bin")
        for flavor in DEFAULT_VERSIONS:
            write_conda_cli(bin_dir, flavor)
        return bin_dir

    @pytest.fixture(scope="session")
    def make_conda_cli(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
        """``make_conda_cli("mamba", "1.5.12")``: one test executable, alone in a fresh directory."""

        def make(flavor: str = "conda", version: str | None = None) -> Path:
            return write_conda_cli(tmp_path_factory.mktemp(f"{flavor}-bin"), flavor, version)

        return make
