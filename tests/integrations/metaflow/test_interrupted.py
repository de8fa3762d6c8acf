"""A flow run stopped while envcore resolves its environments (SIGTERM from a supervisor or ``kill``, Ctrl-C):
nothing of envcore's goes on after it. The launcher (Metaflow's process) runs envcore in a worker subprocess,
and the worker runs the tool; before, a stopped launcher left the worker resolving, tool and all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envcore.testing.fixtures import hanging_conda, hanging_pids, process_running, processes_end

from .conftest import FLOWS, Machine

WORKER = "metaflow_extensions.envcore.plugins.conda.worker"


def _workers_of(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and WORKER.encode() in cmdline:
            found.append(int(entry))
    return found


@pytest.mark.parametrize(
    "stopped", ["launcher-sigterm", "launcher-sigint", "worker-sigterm", "terminal-ctrl-c"]
)
def test_a_stopped_run_leaves_no_worker_and_no_tool(machine: Machine, tmp_path: Path, stopped: str) -> None:
    tool, started = hanging_conda(tmp_path)
    env = machine.env(METAFLOW_CONDA_DEPENDENCY_RESOLVER="conda", METAFLOW_ENVCORE_CONDA_EXE=str(tool))
    work = machine.root / "work"
    work.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(
        [sys.executable, FLOWS / "conda_per_step.py", "--environment=conda", "run"],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # signals go to the launcher alone, as from a supervisor or `kill`
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal (not ignored)
    ) as launcher:
        deadline = time.monotonic() + 120
        while not hanging_pids(started):  # a step's tool (the other step's may start too)
            assert time.monotonic() < deadline and launcher.poll() is None, launcher.communicate()
            time.sleep(0.05)
        (worker,) = _workers_of(launcher.pid)
        if stopped == "worker-sigterm":
            os.kill(worker, signal.SIGTERM)
        elif stopped == "terminal-ctrl-c":  # the terminal's process group: launcher, worker and tool at once
            os.killpg(launcher.pid, signal.SIGINT)
        else:
            launcher.send_signal(signal.SIGTERM if stopped == "launcher-sigterm" else signal.SIGINT)
        out, err = launcher.communicate(timeout=30)
    tools = hanging_pids(started)  # every tool started, before the signal or after it
    assert processes_end(worker, *tools, within=15), (
        f"left running: worker {process_running(worker)}, tools {[p for p in tools if process_running(p)]}"
    )
    assert "internal error" not in out + err and "Traceback" not in err, err
    left = list((machine.root / "tmp").glob("envcore-*"))  # the worker's request (and its tools' inputs)
    assert left == [], left
    if stopped == "launcher-sigterm":
        assert launcher.returncode == -signal.SIGTERM  # ended by the signal, as without envcore's handling
    elif stopped == "worker-sigterm":
        assert launcher.returncode != 0
        assert "The envcore worker was stopped by SIGTERM before it finished" in out + err, out + err
    else:
        assert launcher.returncode != 0


LAUNCHER = """
import os, signal, subprocess, sys, time
from metaflow_extensions.envcore.plugins.conda import session
class SlowToReturn(subprocess.Popen):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        print(self.pid, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # the signal comes once the worker runs, inside Popen
        time.sleep(0.1)
subprocess.Popen = SlowToReturn
with session._sigterm_cleans_up():
    session._run_worker(["sleep", "30"])
"""


def test_a_launcher_stopped_while_it_starts_the_worker_stops_the_worker() -> None:
    """SIGTERM raised inside subprocess.Popen once the worker was forked left the worker unknown to the launcher,
    to resolve on after the run had ended. Now the signal takes effect once the launcher holds the worker."""
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, text=True)
    assert launcher.stdout is not None
    worker = int(launcher.stdout.readline())
    try:
        assert launcher.wait(timeout=30) == -signal.SIGTERM
        assert processes_end(worker, within=5), "the worker outlived the launcher"
    finally:
        launcher.kill()
        if process_running(worker):  # (a failure: not left running for 30 s)
            os.kill(worker, signal.SIGKILL)
