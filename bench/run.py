"""envcore against the bare tools and the disk, side by side in one run: ``python -m bench.run [--reps N]``.

Each row times envcore and its baseline on the same inputs (the test universe, built here), ``--reps`` times
each, interleaved, and prints min and median of both and the ratio of the minima. Processes are timed from
outside (fork + exec included) where a user would start one; library calls are timed in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENVCORE = str(BIN / "envcore")


def timed(fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    started = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - started


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, list[float], str, list[float]]] = []

    def add(self, what: str, ours: list[float], baseline_name: str, baseline: list[float]) -> None:
        self.rows.append((what, ours, baseline_name, baseline))
        self.print_row(self.rows[-1])

    @staticmethod
    def print_row(row: tuple[str, list[float], str, list[float]]) -> None:
        what, ours, name, base = row
        ratio = min(ours) / min(base) if min(base) > 0 else float("inf")
        print(
            f"{what:<44} {min(ours) * 1000:9.1f} {statistics.median(ours) * 1000:9.1f}   "
            f"{name:<34} {min(base) * 1000:9.1f} {statistics.median(base) * 1000:9.1f}   {ratio:7.2f}x",
            flush=True,
        )


def header() -> None:
    print(
        f"{'envcore':<44} {'min ms':>9} {'med ms':>9}   {'baseline':<34} {'min ms':>9} {'med ms':>9}   {'ratio':>8}"
    )
    print("-" * 128)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    reps = args.reps
    from envcore.testing.channel import build_universe

    work = Path(tempfile.mkdtemp(prefix="envcore-bench-"))
    started = time.perf_counter()
    universe = build_universe(work / "universe")
    print(f"universe built in {time.perf_counter() - started:.2f} s at {work}")
    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("METAFLOW_", "CONDA_", "PIP_", "UV_"))
    }
    env = dict(
        base_env,
        METAFLOW_HOME=str(work / "mfhome"),
        METAFLOW_CONDA_LOCALROOT=str(work / "store"),
        METAFLOW_CONDA_CHANNELS=universe.channel_url,
        METAFLOW_CONDA_DEFAULT_PYPI_SOURCE=universe.simple_url,
        METAFLOW_ENVCORE_CACHE_DIR=str(work / "cache-a"),
        PIP_CONFIG_FILE=os.devnull,
    )
    os.environ.update({k: v for k, v in env.items() if k.startswith(("METAFLOW_", "PIP_CONFIG"))})
    table = Table()
    header()

    def cli(*argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([ENVCORE, *argv], env={**env, **extra}, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"envcore {' '.join(argv)} failed: {done.stderr}")
        return done

    # --- start-up ---------------------------------------------------------------------------------
    help_times = [timed(cli, "--help") for _ in range(reps)]
    bare = [timed(subprocess.run, [sys.executable, "-c", "pass"], check=True) for _ in range(reps)]
    table.add("envcore --help (process)", help_times, "python -c pass", bare)

    # --- resolve: library calls vs bare tools -----------------------------------------------------
    import rattler

    from envcore import resolve as resolving
    from envcore import specs
    from envcore.config import Config
    from envcore.plugins import build_registry

    config = Config.load()
    registry = build_registry(config)
    conda_spec = specs.from_decorator(libraries={"fx-app": "", "fx-ffmpeg": ""})
    request = resolving.build_request(conda_spec, config, resolving.local_arch())
    conda_resolver = registry.resolver_named("rattler")
    virtual = [
        rattler.GenericVirtualPackage(
            rattler.PackageName("__glibc"), rattler.Version("2.36"), rattler.BuildString("0")
        )
    ]
    py = f"{sys.version_info[0]}.{sys.version_info[1]}.*"
    gateway = rattler.Gateway(cache_dir=work / "bare-rattler-cache")

    def bare_solve() -> list[rattler.RepoDataRecord]:
        return asyncio.run(
            rattler.solve(
                sources=[universe.channel_url],
                specs=["fx-app", "fx-ffmpeg", f"python {py}"],
                gateway=gateway,
                platforms=[resolving.local_arch(), "noarch"],
                virtual_packages=virtual,
            )
        )

    ours, base = [], []
    for _ in range(reps):
        ours.append(timed(lambda: conda_resolver.resolve(request)))
        base.append(timed(bare_solve))
    table.add("resolve conda (rattler backend, library)", ours, "rattler.solve", base)
    ours, base = [], []
    for _ in range(reps):
        ours.append(timed(lambda: resolving.resolve(registry, request)))
        base.append(timed(bare_solve))
    table.add("resolve conda (core: resolve + checks + ids)", ours, "rattler.solve", base)

    pypi_spec = specs.from_decorator(packages={"fx-web": "", "fx-extras": ""})
    pypi_request = resolving.build_request(pypi_spec, config, resolving.local_arch())
    reqs_in = work / "requirements.in"
    reqs_in.write_text("fx-web\nfx-extras\n")
    uv = [sys.executable, "-m", "uv"]
    pyver = ".".join(map(str, sys.version_info[:3]))
    uv_compile = [
        *uv,
        "pip",
        "compile",
        "--quiet",
        "--no-config",
        "--index-url",
        universe.simple_url,
        "--python-version",
        pyver,
        "--cache-dir",
        str(work / "bare-uv-cache"),
        str(reqs_in),
    ]
    ours, base = [], []
    for _ in range(reps):
        ours.append(timed(lambda: resolving.resolve(registry, pypi_request)))
        base.append(timed(lambda: subprocess.run(uv_compile, check=True, capture_output=True, env=base_env)))
    table.add("resolve pypi-only (rattler python + uv)", ours, "uv pip compile", base)
    mixed_spec = specs.merge(conda_spec, specs.from_decorator(packages={"fx-extras": ""}))
    mixed_request = resolving.build_request(mixed_spec, config, resolving.local_arch())
    ours, base = [], []
    for _ in range(reps):
        ours.append(timed(lambda: resolving.resolve(registry, mixed_request)))
        base.append(
            timed(bare_solve)
            + timed(lambda: subprocess.run(uv_compile, check=True, capture_output=True, env=base_env))
        )
    table.add("resolve mixed (rattler-uv)", ours, "rattler.solve + uv pip compile", base)
    ours = [
        timed(cli, "resolve", "--conda", "fx-app", "--conda", "fx-ffmpeg", "--force", "--dry-run")
        for _ in range(reps)
    ]
    table.add(
        "envcore resolve --force --dry-run (CLI)",
        ours,
        "rattler.solve (in-process)",
        [timed(bare_solve) for _ in range(reps)],
    )

    # --- scale: a flow-like batch of distinct environments ------------------------------------------
    from envcore.environments import Environments

    names = [
        "fx-core",
        "fx-http",
        "fx-web",
        "fx-app",
        "fx-ffmpeg",
        "fx-native",
        "fx-yaml",
        "fx-legacy",
        "fx-modern",
        "fx-prefixed",
    ]
    for size in (1, 10, 50):
        batch = []
        for i in range(size):
            pkgs = {names[i % len(names)]: "", names[(i * 3 + 1) % len(names)]: ""}
            if {"fx-legacy", "fx-modern"} <= set(pkgs):
                pkgs.pop("fx-modern")
            batch.append(
                resolving.build_request(
                    specs.from_decorator(libraries=pkgs, python=f"{py[:-2]}"),
                    config,
                    resolving.local_arch(),
                )
            )
        envs = Environments(registry)
        t = timed(envs.resolve, batch, force=True)
        table.add(
            f"resolve a batch of {size} environments",
            [t],
            "one rattler.solve x count",
            [min(timed(bare_solve) for _ in range(2)) * size],
        )

    # --- hydrate: cold, warm, no-op ---------------------------------------------------------------------
    out = cli("resolve", "--conda", "fx-app", "--conda", "fx-ffmpeg", "--pypi", "fx-extras")
    ref = next(line.split()[-1] for line in out.stdout.splitlines() if " full hash " in line)
    cold, warm, noop = [], [], []
    for i in range(reps):
        cache = work / f"cache-b{i}"
        where = {"METAFLOW_ENVCORE_CACHE_DIR": str(cache)}
        cold.append(timed(cli, "create", ref, "--name", "cold", **where))
        warm.append(timed(cli, "create", ref, "--name", "cold", "--force", **where))
        noop.append(timed(cli, "create", ref, "--name", "cold", **where))
    prefix = work / "cache-b0" / "envs" / "cold"
    files = _local_files(work / "cache-b0", ref)
    bare_cold = [_bare_install(files, work / f"bare-{i}", uv) for i in range(reps)]
    table.add("hydrate cold: store -> new prefix (CLI)", cold, "rattler.install + uv pip install", bare_cold)
    cp_al, cp_a = [], []
    for i in range(reps):
        cp_al.append(timed(subprocess.run, ["cp", "-al", str(prefix), str(work / f"cpal-{i}")], check=True))
        cp_a.append(timed(subprocess.run, ["cp", "-a", str(prefix), str(work / f"cpa-{i}")], check=True))
    table.add("hydrate warm: package cache present (CLI)", warm, "cp -al of the finished prefix", cp_al)
    table.add("hydrate warm: package cache present (CLI)", warm, "cp -a of the finished prefix", cp_a)
    table.add("create of an existing environment (CLI)", noop, "python -c pass", bare)

    # --- store: caching packages, alias lookup among 1,000 ---------------------------------------------
    from envcore import cache as caching
    from envcore.aliases import Aliases
    from envcore.environments import Environments as Envs
    from envcore.local_store import LocalStore
    from envcore.naming import parse_alias

    env_obj = Envs(registry).find(ref, resolving.local_arch())
    sizes = sum(p.stat().st_size for p in files.values())
    ours, base = [], []
    for i in range(reps):
        store = LocalStore(work / f"store-copy-{i}")
        ours.append(timed(caching.cache_environment, config, store, env_obj))
        dest = work / f"raw-copy-{i}"
        dest.mkdir()
        base.append(timed(_copy_all, files.values(), dest))
    table.add(
        f"cache {len(files)} packages ({sizes / 1e6:.1f} MB) to a local store",
        ours,
        "copy of the same files",
        base,
    )
    aliases = Aliases(LocalStore(work / "store"), Envs(registry).record)
    req, full = ref.split(":")
    for i in range(1000):
        aliases.store.put_bytes(f"envs/aliases/generic/team/env{i}/v1", f'["{req}", "{full}"]'.encode())  # type: ignore[union-attr]
    aliases.write(parse_alias("team/bench:v1"), (req, full))
    lookups = [
        timed(lambda: cli("get", "team/env500:v1", METAFLOW_ENVCORE_CACHE_DIR=str(work / "cache-b0")))
        for _ in range(reps)
    ]
    table.add("envcore get of one alias among 1,001", lookups, "python -c pass", bare)
    print(
        "S3 transfer rows: not measured by this script yet (envcore-s3 is tested against moto in storage/s3)."
    )
    sys.stdout.flush()
    shutil.rmtree(work, ignore_errors=True)
    os._exit(0)  # py-rattler can crash at interpreter exit (offline-toolchain notes)


def _copy_all(paths: object, dest: Path) -> None:
    for path in paths:  # type: ignore[attr-defined]
        shutil.copyfile(path, dest / path.name)


def _local_files(cache: Path, ref: str) -> dict[str, Path]:
    return {
        p.name: p
        for p in (cache / "pkgs").rglob("*")
        if p.is_file() and p.suffix in (".conda", ".bz2", ".whl")
    }


def _bare_install(files: dict[str, Path], prefix: Path, uv: list[str]) -> float:
    """rattler.install of the conda files, then uv pip install of the wheels: what envcore drives, bare."""
    import rattler

    async def records() -> list[rattler.RepoDataRecord]:
        out = []
        for path in files.values():
            if path.suffix == ".whl":
                continue
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

    started = time.perf_counter()
    asyncio.run(
        rattler.install(
            asyncio.run(records()),
            target_prefix=prefix,
            cache_dir=prefix.parent / f"{prefix.name}-rc",
            show_progress=False,
            execute_link_scripts=False,
        )
    )
    wheels = [str(p) for p in files.values() if p.suffix == ".whl"]
    subprocess.run(
        [
            *uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(prefix / "bin" / "python"),
            "--no-deps",
            "--offline",
            "--no-index",
            "--no-config",
            "--cache-dir",
            str(prefix.parent / f"{prefix.name}-uvc"),
            *wheels,
        ],
        check=True,
    )
    return time.perf_counter() - started


if __name__ == "__main__":
    raise SystemExit(main())
