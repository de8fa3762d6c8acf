"""Install verified local wheels into an environment's python with uv, offline and without dependencies."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from envcore.config import Config
from envcore.errors import EnvcoreError
from envcore.progress import new_entries
from envcore.tools import run_tool, says_disk_full, tail, tool_env
from envcore.types import LockedPackage, ResolveRequest
from envcore_uv.executable import uv_executable


class UvInstaller:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.cache_dir = config.cache_dir() / "uv"

    def check(self) -> None:
        uv_executable(self.config)

    def install_progress(
        self, packages: Sequence[tuple[LockedPackage, Path]], prefix: Path
    ) -> Callable[[], int]:
        """The wheels uv has unpacked so far: it links them all into the prefix at the end, after unpacking each
        into a new folder of its cache's ``archive-v0`` (wheels it had unpacked before count only at the end)."""
        return new_entries(self.cache_dir / "archive-v0")  # made by uv with the first wheel it unpacks

    def forget(self, packages: Sequence[tuple[LockedPackage, Path]]) -> None:
        """``uv cache clean`` of the wheels' names: uv keeps no record to check its unpacked copies against, so
        they are all unpacked anew (uv waits for other uv processes using its cache)."""
        if not packages or not self.cache_dir.is_dir():
            return
        names = sorted({package.name for package, _ in packages})
        args = [uv_executable(self.config), "cache", "clean", "--cache-dir", str(self.cache_dir), *names]
        done = run_tool(
            args, what="uv cache clean", env=tool_env({"UV_NO_PROGRESS": "1"}), debug=self.config.debug
        )
        if done.returncode != 0:
            raise EnvcoreError(
                f"Clearing uv's unpacked copies of {len(names)} wheel(s) from {self.cache_dir} failed: "
                f"{tail(done.stderr, 6)}. Check that folder's permissions, or remove it."
            )

    def install(self, packages: Sequence[tuple[LockedPackage, Path]], prefix: Path) -> None:
        if not packages:
            return
        python = prefix / "bin" / "python"
        if not python.exists():
            raise EnvcoreError(
                f"Cannot install PyPI packages into {prefix}: it has no bin/python. The environment must include "
                "a conda python; resolve it again."
            )
        args = [
            uv_executable(self.config),
            "pip",
            "install",
            "--python",
            str(python),
            "--no-deps",
            "--offline",
            "--no-index",
            "--no-config",
            "--quiet",
            "--cache-dir",
            str(self.cache_dir),
            *(str(path) for _, path in packages),
        ]
        # uv leaves a lock file per environment in the temporary directory (uv-HASH.lock, never removed: one
        # per prefix hydrated). envcore holds the prefix alone while it installs: uv's temporary directory is one
        # in the prefix, removed after (a prefix left partial by a kill is made again whole)
        temp = prefix / ".envcore-uv-tmp"
        temp.mkdir(exist_ok=True)
        try:
            done = run_tool(
                args,
                what="uv pip install",
                env=tool_env({"UV_NO_PROGRESS": "1", "TMPDIR": str(temp)}),
                debug=self.config.debug,
            )
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        if done.returncode != 0:
            if says_disk_full(done.stderr):
                raise EnvcoreError(
                    f"Installing {len(packages)} wheel(s) into {prefix} failed: the disk is full (No space left on "
                    "device). The wheels are fine: free disk space there (or set METAFLOW_ENVCORE_CACHE_DIR to a "
                    "larger disk) and run the command again."
                )
            raise EnvcoreError(
                f"Installing {len(packages)} wheel(s) into {prefix} failed: {tail(done.stderr, 6)}. Run `envcore create "
                "--verify` to hash the wheels again and fetch the damaged ones anew; report the error if it persists."
            )

    def build_wheel(self, sdist: Path, out_dir: Path, request: ResolveRequest) -> Path:
        """``uv build --wheel`` of one sdist with a local python of the environment's version (never
        downloaded), build dependencies from the request's indexes."""
        from envcore import pypi  # (here: installing wheels needs neither it nor the resolver)
        from envcore_uv.resolver import index_args

        version = ".".join((request.python_version or "").split(".")[:2])
        # this interpreter when it is that version: uv would search PATH, where a pyenv shim of a version pyenv
        # does not select fails the build ("python3.10: command not found")
        this = f"{sys.version_info[0]}.{sys.version_info[1]}"
        stderr, wheel = pypi.build_one_wheel(
            [
                uv_executable(self.config),
                "build",
                "--wheel",
                "--no-config",
                "--quiet",
                "--python",
                sys.executable if version == this else version,
                "--cache-dir",
                str(self.cache_dir),
                "--out-dir",
                str(out_dir),
                *index_args(request, resolving=False),
                str(sdist),
            ],
            request,
            out_dir,
            what="uv build",
            env={"UV_NO_PROGRESS": "1", "UV_PYTHON_DOWNLOADS": "never"},
            debug=self.config.debug,
        )
        if wheel is None:
            raise EnvcoreError(
                f"uv build of {sdist.name} with python {version} failed: {tail(stderr, 6)}. Building needs a "
                f"python {version} interpreter on this machine and the package's build dependencies on the index"
            )
        return wheel
