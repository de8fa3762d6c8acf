"""Load on 2 cores: a flow's worth of 50 distinct environments resolved and cached in one process, then 20
environments hydrated by 20 concurrent ``envcore create`` processes; no errors, no deadlock, bounded memory."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from ..conftest import ENVCORE
from .conftest import ReliabilityReport

RELIABILITY_CATEGORY = "environments under load"

RESOLVE_BATCH = """
import json, os, sys
from envcore import resolve as resolving, specs
from envcore.config import Config
from envcore.environments import Environments
from envcore.plugins import build_registry
combos = json.loads(sys.argv[1])
config = Config.load()
registry = build_registry(config)
requests = [
    resolving.build_request(specs.from_decorator(libraries={c: "" for c in conda}, packages={p: "" for p in pypi}),
                            config, resolving.local_arch())
    for conda, pypi in combos
]
envs = Environments(registry)
refs = []
for env, _ in envs.resolve(requests):
    env = envs.save(env)
    refs.append(f"{env.req_id}:{env.full_id}")
print(json.dumps(refs))
sys.stdout.flush()
os._exit(0)
"""

CONDA = [
    "fx-core",
    "fx-http",
    "fx-web",
    "fx-app",
    "fx-ffmpeg",
    "fx-native",
    "fx-yaml",
    "fx-legacy",
    "fx-prefixed",
]
PYPI = ["", "fx-extras"]


# Runs argv[2:] as a child and writes its peak RSS (KiB, from wait4) to the file argv[1]. A process forked from
# pytest carries pytest's own peak in its ru_maxrss (Linux keeps the pre-exec mm's high-water mark); a child
# of this small interpreter carries at most this interpreter's.
MEASURED = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measured(argv: list[str], where: Path) -> list[str]:
    """``argv`` run through MEASURED, its peak RSS written to ``where``."""
    return [sys.executable, "-c", MEASURED, str(where), *argv]


def finish(proc: subprocess.Popen[str], peak_file: Path) -> tuple[int, str, str, float]:
    """Wait for ``proc`` (killed after 10 minutes): its exit code, output, and the peak RSS (MiB) of the command
    it measured (and of that command's own children)."""
    assert proc.stdout is not None and proc.stderr is not None
    watchdog = threading.Timer(600, proc.kill)  # a hung process fails the test instead of hanging it
    watchdog.start()
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    out = proc.stdout.read()
    reader.join()
    proc.wait()
    watchdog.cancel()
    return proc.returncode, out, err[0], int(peak_file.read_text()) / 1024


@pytest.mark.slow
def test_fifty_environments_then_twenty_concurrent_hydrations(
    world: dict[str, Path], machine_env: Callable[..., dict[str, str]], reliability_report: ReliabilityReport
) -> None:
    pairs = itertools.product(itertools.combinations(CONDA, 2), PYPI)
    combos = [(list(conda), [pypi] if pypi else []) for conda, pypi in pairs][:50]
    assert len(combos) == 50
    peaks = world["a"].parent / "peaks"
    peaks.mkdir()
    code, out, err, peak_mib = finish(
        subprocess.Popen(
            measured([sys.executable, "-c", RESOLVE_BATCH, json.dumps(combos)], peaks / "resolve"),
            env=machine_env("a"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
        peaks / "resolve",
    )
    assert code == 0, err[-3000:]
    refs = json.loads(out)
    assert len(set(refs)) == 50
    env = machine_env("b")
    procs = [
        subprocess.Popen(
            measured([ENVCORE, "create", ref, "--name", f"e{i}"], peaks / f"create-{i}"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, ref in enumerate(refs[:20])
    ]
    results = [finish(p, peaks / f"create-{i}") for i, p in enumerate(procs)]
    assert [code for code, *_ in results] == [0] * 20, [err[-500:] for _, _, err, _ in results if err]
    peak_mib = max(peak_mib, *(peak for *_, peak in results))
    for i in range(20):
        python = world["b"] / "cache" / "envs" / f"e{i}" / "bin" / "python"
        assert subprocess.run([python, "-c", "pass"], check=False).returncode == 0
    print(f"peak RSS of one process: {peak_mib:.0f} MiB")
    assert peak_mib < 1024
    reliability_report.record("environments under load", len(refs))
    reliability_report.record("racing processes", len(procs))
    reliability_report.note(f"load: peak RSS of one process {peak_mib:.0f} MiB")
