"""The bare tools envcore drives, used as baselines: py-rattler's solver and installer, uv, and pip (the
installer the original extension drives, and the resolver of envcore's ``pip`` backend).

Importable (in-process baselines) and runnable as a process (``python -m bench.bare solve|install ...``), so
that a whole ``envcore`` process is compared with a whole bare-tool process: interpreter start, ``import
rattler`` and the work. The process ends with ``os._exit`` after flushing: py-rattler's runtime can crash while
the interpreter finalises (see the offline toolchain notes).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# What envcore's rattler resolver adds for linux-64 on this machine (the request's sys:: packages).
VIRTUAL = (("__unix", "0", "0"), ("__linux", "5.10", "0"), ("__glibc", "2.36", "0"))


def virtual_packages() -> list[Any]:
    import rattler

    return [
        rattler.GenericVirtualPackage(rattler.PackageName(n), rattler.Version(v), rattler.BuildString(b))
        for n, v, b in VIRTUAL
    ]


def solve(channel: str, specs: Sequence[str], platform: str, gateway: Any) -> list[Any]:
    """One ``rattler.solve`` of ``specs`` on ``channel`` for ``platform`` + noarch."""
    import rattler

    return asyncio.run(
        rattler.solve(
            sources=[channel],
            specs=list(specs),
            gateway=gateway,
            platforms=[platform, "noarch"],  # type: ignore[list-item]
            virtual_packages=virtual_packages(),
        )
    )


def uv_command() -> list[str]:
    uv = Path(sys.executable).parent / "uv"
    return [str(uv)] if uv.exists() else [sys.executable, "-m", "uv"]


INSTALLERS = ("uv", "pip")


def wheel_install_command(installer: str, python: Path, cache: Path) -> list[str]:
    """The bare command that installs local wheels (appended) into ``python``'s environment, no dependencies,
    no index, no bytecode (as envcore's default), its own fresh cache. pip runs from this interpreter and
    installs for the prefix's (``--python``, pip >= 22.3), as a user's ``pip install`` in the environment would."""
    if installer == "pip":
        return [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--isolated"),
            *(
                "--disable-pip-version-check",
                "--root-user-action=ignore",
                "--no-deps",
                "--no-index",
                "--no-compile",
            ),
            *("--cache-dir", str(cache / "pip")),
        ]
    return [
        *uv_command(),
        *("pip", "install", "--quiet", "--python", str(python), "--no-deps", "--offline", "--no-index"),
        *("--no-config", "--cache-dir", str(cache / "uv")),
    ]


def install(
    conda_files: Sequence[Path], wheels: Sequence[Path], prefix: Path, cache: Path, installer: str = "uv"
) -> None:
    """``rattler.install`` of local conda archives (records read from the archives, as envcore does), then
    ``uv pip install`` (or ``pip install``: ``installer``) of local wheels into the prefix's python
    (:func:`wheel_install_command`); fresh caches under ``cache``."""
    import rattler

    async def records() -> list[rattler.RepoDataRecord]:
        out = []
        for path in conda_files:
            record = await rattler.RepoDataRecord.from_package_archive(path)
            out.append(
                rattler.RepoDataRecord(
                    package_record=record,
                    file_name=path.name,
                    url=path.resolve().as_uri(),
                    channel=path.parent.resolve().as_uri(),
                )
            )
        return out

    asyncio.run(
        rattler.install(
            asyncio.run(records()),
            target_prefix=prefix.resolve(),
            cache_dir=cache / "rattler",
            show_progress=False,
            execute_link_scripts=False,
        )
    )
    if wheels:
        subprocess.run(
            [*wheel_install_command(installer, prefix / "bin" / "python", cache), *map(str, wheels)],
            check=True,
            env={**os.environ, "UV_NO_PROGRESS": "1"},
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("solve", help="rattler.solve of SPECS on CHANNEL")
    p.add_argument("--channel", required=True)
    p.add_argument("--platform", required=True)
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument(
        "--import", dest="imports", action="append", default=[], help="also import this module (repeatable)"
    )
    p.add_argument("specs", nargs="+")
    p = sub.add_parser("install", help="rattler.install + uv pip install (or pip install) of local files")
    p.add_argument("--installer", choices=INSTALLERS, default="uv", help="what installs the wheels")
    p.add_argument("--prefix", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    import rattler

    if args.what == "solve":
        for module in args.imports:
            importlib.import_module(module)
        records = solve(args.channel, args.specs, args.platform, rattler.Gateway(cache_dir=args.cache_dir))
        print(len(records))
    else:
        conda = [f for f in args.files if not f.name.endswith(".whl")]
        wheels = [f for f in args.files if f.name.endswith(".whl")]
        install(conda, wheels, args.prefix, args.cache_dir, args.installer)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
