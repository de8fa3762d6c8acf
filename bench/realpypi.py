"""Opt-in rows of the bench on a real PyPI workload (issue 11): ``python -m bench --real-pypi``.

The same popular requirements resolved by envcore (library call and CLI, PyPI-only: python from the universe's
conda channel, then ``uv pip compile`` against https://pypi.org/simple) and by a bare ``uv pip compile`` of
the same requirements for the same python version and platform, each side with its own uv cache, warmed once.
Then a cold hydrate of the resolved environment (python from the store + the downloaded wheels) against
``python -m bench.bare install`` of the same store files. When pypi.org does not answer, a note says so.
"""

from __future__ import annotations

import itertools
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.run import PY, Row, interleaved, run, store_keys

if TYPE_CHECKING:
    from bench.run import Bench

INDEX = "https://pypi.org/simple"
# Popular packages with cp311 manylinux x86_64 wheels (or pure wheels): ~30 locked wheels, ~80 MB.
REQUIREMENTS = ("requests", "pandas", "scikit-learn", "pyyaml", "boto3", "rich")
PIP_REPS = 3  # repetitions of the pip-installed hydrate row
HYDRATE_BUDGET = 60.0  # seconds for one repetition of both hydrate sides; above it the rows are skipped


def reachable(url: str = f"{INDEX}/pip/", timeout: float = 5.0) -> str | None:
    """None when ``url`` answers; else why not."""
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return None if resp.status == 200 else f"{url} answered HTTP {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} is not reachable ({type(exc).__name__}: {getattr(exc, 'reason', exc)})"


def measure(bench: Bench, requirements: Sequence[str] = REQUIREMENTS) -> None:
    """Add the real-PyPI rows to ``bench.table``; a note instead when PyPI is unreachable or a row fails."""
    why = reachable()
    if why:
        bench.table.note(f"real-PyPI rows not measured: {why}.")
        return
    try:
        _resolve(bench, list(requirements))
    except (Exception, SystemExit) as exc:  # run() raises SystemExit with the tool's stderr
        bench.table.note(f"real-PyPI rows not measured: {type(exc).__name__}: {str(exc)[-400:]}")
        return
    try:
        _hydrate(bench, list(requirements))
    except (Exception, SystemExit) as exc:
        bench.table.note(f"real-PyPI hydrate rows not measured: {type(exc).__name__}: {str(exc)[-400:]}")


def _settings(bench: Bench) -> dict[str, str]:
    # python still comes from a conda channel: the universe's (a real python built from this interpreter)
    return {
        "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": INDEX,
        "METAFLOW_CONDA_LOCALROOT": str(bench.work / "realpypi-store"),
        "METAFLOW_ENVCORE_CACHE_DIR": str(bench.work / "realpypi-cache"),
    }


def _uv_compile(bench: Bench, requirements: list[str], platform: str | None) -> list[str]:
    reqs = bench.work / "realpypi-requirements.in"
    reqs.write_text("".join(f"{r}\n" for r in requirements))
    argv = [bench.uv, "pip", "compile", "--quiet", "--no-config", "--no-header", "--index-url", INDEX]
    argv += ["--python-version", bench.pyver, "--cache-dir", str(bench.work / "realpypi-bare-uv-cache")]
    if platform:  # the platform envcore's uv resolver passes (x86_64-manylinux_2_NN)
        argv += ["--python-platform", platform]
    return [*argv, str(reqs)]


def _resolve(bench: Bench, requirements: list[str]) -> None:
    from envcore import resolve as resolving
    from envcore import specs
    from envcore.resolve import local_arch

    arch = local_arch()
    extra = _settings(bench)
    registry = bench.registry(**extra)
    request = resolving.build_request(
        specs.from_decorator(packages=dict.fromkeys(requirements, "")), bench.config(**extra), arch
    )
    try:
        from envcore_uv.resolver import python_platform

        platform: str | None = python_platform(request)
    except ImportError:
        platform = None
    label = " ".join(requirements)

    def ours() -> Any:
        return resolving.resolve(registry, request)

    bare = bench.proc(_uv_compile(bench, requirements, platform))
    started = time.perf_counter()
    resolved = ours()  # warm: imports, envcore's uv cache (index pages, metadata)
    cold_ours = time.perf_counter() - started
    started = time.perf_counter()
    bare()  # warm: the bare tool's own uv cache
    cold_bare = time.perf_counter() - started
    wheels = [p for p in resolved.packages if p.source.url_format == ".whl"]
    group = f"resolve, real PyPI: {label}"
    a, b = interleaved(bench.reps, ours, bare)
    bench.table.add(
        Row(group, f"library: resolve() -> {len(wheels)} wheels", a, "uv pip compile (process)", b)
    )
    cli_argv = ["--quiet", "resolve", *itertools.chain(*(("--pypi", r) for r in requirements))]
    cli = bench.proc(bench.envcore(*cli_argv, "--force", "--dry-run"), env={**bench.env, **extra})
    cli()
    a, b = interleaved(bench.reps, cli, bare)
    bench.table.add(Row(group, f"CLI: envcore resolve --pypi x{len(requirements)}", a, "uv pip compile", b))
    offline = bench.proc([*_uv_compile(bench, requirements, platform), "--offline"])
    offline()
    a, b = interleaved(bench.reps, offline, bare)
    bench.table.add(  # the share of the network: uv revalidates every index page, even with a warm cache
        Row(group, "  bare: uv pip compile --offline (warm cache)", a, "  bare: uv pip compile (online)", b)
    )
    bench.table.note(
        f"real PyPI ({INDEX}, live network): both sides warm, own uv cache each, same python {bench.pyver}"
        f"{f' and --python-platform {platform}' if platform else ''}; the first (cold-cache) resolve took "
        f"{cold_ours:.1f} s (envcore) and {cold_bare:.1f} s (uv). uv revalidates every index page with "
        "pypi.org on each resolve, so both sides carry the same round trips (see the --offline row)."
    )


def _hydrate(bench: Bench, requirements: list[str]) -> None:
    extra = _settings(bench)
    # resolve again through the CLI, this time caching the packages (wheels downloaded from PyPI) in the store
    ref, env = bench.resolved_by_cli(*itertools.chain(*(("--pypi", r) for r in requirements)), **extra)
    store = Path(extra["METAFLOW_CONDA_LOCALROOT"])
    files = [store / key for key in store_keys(bench.config(**extra), env)]
    wheels = [f for f in files if f.name.endswith(".whl")]
    size = sum(f.stat().st_size for f in files)
    counter = itertools.count()

    def cold_cli() -> object:
        cache = bench.work / f"realpypi-cold-{next(counter)}"
        return run(
            bench.envcore("create", ref, "--name", "env"),
            {**bench.env, **extra, "METAFLOW_ENVCORE_CACHE_DIR": str(cache)},
        )

    def bare_cli() -> object:
        where = bench.work / f"realpypi-bare-{next(counter)}"
        return run(
            [PY, "-m", "bench.bare", "install", "--prefix", where / "env", "--cache-dir", where, *files],
            bench.base_env,
        )

    started = time.perf_counter()
    cold_cli(), bare_cli()  # bytecode, uv's interpreter cache for the host python
    once = time.perf_counter() - started
    group = (
        f"hydrate cold, real PyPI: {len(files) - len(wheels)} conda (python) + {len(wheels)} wheels "
        f"({size / 1e6:.0f} MB)"
    )
    if once > HYDRATE_BUDGET:
        bench.table.note(
            f"real-PyPI hydrate rows not measured: one repetition of both sides took {once:.0f} s "
            f"(> {HYDRATE_BUDGET:.0f} s)."
        )
        return

    def bare_pip_cli() -> object:
        where = bench.work / f"realpypi-bare-{next(counter)}"
        argv = [PY, "-m", "bench.bare", "install", "--installer", "pip", "--prefix", where / "env"]
        return run([*argv, "--cache-dir", where, *files], bench.base_env)

    a, b = interleaved(bench.reps, cold_cli, bare_cli)
    name = "cold: envcore create (store -> new prefix)"
    bench.table.add(Row(group, name, a, "python -m bench.bare install", b))
    _cleanup(bench.work, "realpypi-cold-", "realpypi-bare-")
    # pip in uv's place (the original extension's installer), fewer repetitions: several seconds each
    a, b = interleaved(min(bench.reps, PIP_REPS), cold_cli, bare_pip_cli)
    bench.table.add(Row(group, name, a, "  ... with pip in uv's place", b))
    _cleanup(bench.work, "realpypi-cold-", "realpypi-bare-")


def _cleanup(work: Path, *prefixes: str) -> None:
    """Remove the hydrated prefixes (hundreds of MB) as soon as the row is done."""
    import shutil

    for path in work.iterdir():
        if path.name.startswith(prefixes):
            shutil.rmtree(path, ignore_errors=True)
