"""A resolve stopped from outside (SIGTERM from a supervisor, SIGINT to envcore's process alone) while the conda
tool works: envcore ends at once, stops the tool, and leaves no file of credentials behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envcore.testing.fixtures import hanging_conda, hanging_pids, processes_end, signal_thread


@pytest.mark.parametrize("in_a_child", [False, True], ids=["tool", "tool-in-a-child"])
@pytest.mark.parametrize("to_a_worker", [False, True], ids=["to-the-process", "to-a-worker-thread"])
@pytest.mark.parametrize(("sent", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_resolve_stops_the_tool_and_removes_the_credentials(
    tmp_path: Path, sent: signal.Signals, code: int, to_a_worker: bool, in_a_child: bool
) -> None:
    """Before: SIGTERM left the netrc files (the password in clear) and the tool running; SIGINT to the process
    alone waited for the tool to finish. The kernel may hand a process's signal to any of its threads: one a
    worker thread got waited for the tool (its Python handler runs in the main thread, which waited for the
    worker without a timeout), as the kit's resolve under load once did. A tool that works in a child process
    (``in_a_child``) had only itself stopped: the child ran on, holding the tool's output open, so envcore
    ended without removing the scratch folder."""
    tool, started = hanging_conda(tmp_path, in_a_child)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("METAFLOW_")},
        "METAFLOW_CONDA_DEPENDENCY_RESOLVER": "conda",
        "METAFLOW_ENVCORE_CONDA_EXE": str(tool),
        "METAFLOW_CONDA_CHANNELS": "http://alice:S3cretPW@127.0.0.1:9/channel",
        "METAFLOW_ENVCORE_CACHE_DIR": str(tmp_path / "cache"),
        "METAFLOW_CONDA_LOCALROOT": str(tmp_path / "store"),
        "TMPDIR": str(temp),
    }
    envcore = Path(sys.executable).with_name("envcore")
    with subprocess.Popen(
        [envcore, "resolve", "--conda", "fx-web"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal (not ignored)
    ) as proc:
        deadline = time.monotonic() + 60
        while not hanging_pids(started):
            assert time.monotonic() < deadline and proc.poll() is None, (
                proc.stderr.read() if proc.stderr else ""
            )
            time.sleep(0.05)
        assert list(temp.rglob("*netrc"))  # the tool was given the credentials by file
        if to_a_worker:
            workers = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
            assert workers, "the resolve runs in a worker thread"
            signal_thread(proc.pid, workers[0], sent)
        else:
            proc.send_signal(sent)
        assert proc.wait(timeout=20) == code
    assert list(temp.rglob("*netrc")) == []
    assert list(temp.glob("envcore-*")) == []  # the resolve's scratch folder (the tool's inputs) too
    assert processes_end(*hanging_pids(started), within=5), "the tool outlived envcore"
