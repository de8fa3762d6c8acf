"""Running external tools: finding a backend's executable; answers only a tool's binary decides (``--version``)
are remembered per binary; scratch folders that killed processes left are removed."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envcore.config import CORE_SETTINGS, Config
from envcore.errors import BackendUnavailable
from envcore.testing.fixtures import process_running, processes_end, signal_thread
from envcore.tools import SCRATCH_LOCK, find_executable, remove_abandoned_scratch, run_remembered, tail
from envcore.types import Setting


def _tool(path: Path, log: Path, *, version: str, code: int = 0) -> Path:
    path.write_text(f'#!/bin/sh\necho run >> "{log}"\necho "tool {version}"\necho oops >&2\nexit {code}\n')
    path.chmod(0o755)
    return path


def _unavailable(why: str) -> BackendUnavailable:
    return BackendUnavailable(f"The tool cannot run: {why}.")


def _finding(tmp_path: Path, **environ: str) -> str | None:
    config = Config.load((*CORE_SETTINGS, Setting(name="ENVCORE_TOOL_EXE")), environ=environ, cwd=tmp_path)
    return find_executable(config, "ENVCORE_TOOL_EXE", ("tool-b", "tool-a"), _unavailable)


def test_an_executable_is_the_configured_one_else_the_first_name_on_path(tmp_path: Path) -> None:
    bin_dir, other = tmp_path / "bin", tmp_path / "other"
    for folder in (bin_dir, other):
        folder.mkdir()
    for tool in (bin_dir / "tool-a", bin_dir / "tool-b", other / "mine"):
        _tool(tool, tmp_path / "runs.log", version="1.0")
    (bin_dir / "not-executable").write_text("#!/bin/sh\n")
    path = f"{bin_dir}{os.pathsep}{other}"
    assert _finding(tmp_path, PATH=path) == str(bin_dir / "tool-b")  # the names in their order
    assert _finding(tmp_path, PATH=str(tmp_path)) is None
    assert _finding(tmp_path, PATH=path, METAFLOW_ENVCORE_TOOL_EXE="mine") == str(other / "mine")  # on PATH
    assert _finding(tmp_path, PATH="", METAFLOW_ENVCORE_TOOL_EXE=str(other / "mine")) == str(other / "mine")
    for wrong in ("missing-tool", str(bin_dir / "not-executable"), str(bin_dir)):
        with pytest.raises(BackendUnavailable) as err:
            _finding(tmp_path, PATH=path, METAFLOW_ENVCORE_TOOL_EXE=wrong)
        assert (
            "METAFLOW_ENVCORE_TOOL_EXE" in err.value.message
            and "which is not an executable file" in err.value.message
        )


def test_a_version_is_asked_once_per_binary(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    tool = _tool(tmp_path / "tool", log, version="1.0")
    cache = tmp_path / "cache"
    first = run_remembered([tool, "--version"], cache, what="tool")
    again = run_remembered([tool, "--version"], cache, what="tool")
    assert first.stdout == again.stdout == "tool 1.0\n" and again.returncode == 0
    assert log.read_text().count("run") == 1
    other_args = run_remembered([tool, "-V"], cache, what="tool")  # another question: asked
    assert other_args.stdout == "tool 1.0\n" and log.read_text().count("run") == 2

    _tool(tool, log, version="2.0")  # upgraded in place: another size and mtime
    os.utime(tool, ns=(1, 1))
    assert run_remembered([tool, "--version"], cache, what="tool").stdout == "tool 2.0\n"
    assert log.read_text().count("run") == 3
    replaced = tmp_path / "new-tool"  # replaced by another file (same size and mtime, other inode)
    _tool(replaced, log, version="3.0")
    os.utime(replaced, ns=(1, 1))
    os.replace(replaced, tool)
    assert run_remembered([tool, "--version"], cache, what="tool").stdout == "tool 3.0\n"


def test_failures_and_unwritable_caches_are_not_remembered(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    broken = _tool(tmp_path / "broken", log, version="0", code=3)
    for _ in range(2):
        done = run_remembered([broken, "--version"], tmp_path / "cache", what="broken")
        assert done.returncode == 3 and done.stderr == "oops\n"
    assert log.read_text().count("run") == 2
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    tool = _tool(tmp_path / "tool", log, version="1.0")
    for _ in range(2):
        assert run_remembered([tool, "--version"], blocked, what="tool").stdout == "tool 1.0\n"
    assert log.read_text().count("run") == 4


def test_a_tool_reads_its_input_and_one_that_reads_none_is_not_held_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from envcore.tools import run_tool

    given = "a\nb @ https://someone:hunter2@example.com/b.whl"
    echoed = run_tool(
        [sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"],
        what="t",
        stdin=given,
        debug=True,
    )
    assert (echoed.returncode, echoed.stdout) == (0, given.upper() + "\n")
    said = capsys.readouterr().err  # --verbose shows the input, without a password
    assert "debug[envcore tools]: t input:\na\nb @ https://example.com/b.whl" in said, said
    assert "hunter2" not in said and "someone" not in said, said
    large = "x" * (1 << 20)  # more than a pipe holds, to a tool that exits without reading it
    ignored = run_tool([sys.executable, "-c", "raise SystemExit(3)"], what="t", stdin=large)
    assert ignored.returncode == 3
    assert (
        run_tool([sys.executable, "-c", "import sys; print(repr(sys.stdin.read()))"], what="t").stdout
        == "''\n"
    )


def test_a_tools_last_lines_fold_into_a_sentence_without_its_full_stop() -> None:
    output = "Resolving...\n\n  error: no solution found\n  cause: fx-core was not found.\n"
    assert tail(output, 2) == "error: no solution found cause: fx-core was not found"
    assert f"uv failed: {tail(output, 1)}. Fix it." == "uv failed: cause: fx-core was not found. Fix it."


HOLD_SCRATCH = """
import sys, time
from envcore.tools import scratch_folder
with scratch_folder("uv") as folder:
    open(folder + "/netrc", "w").close()
    print(folder, flush=True)
    time.sleep(60)
"""


def _holding_scratch(temp_dir: Path) -> tuple[subprocess.Popen[str], Path]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRATCH],
        env={**os.environ, "TMPDIR": str(temp_dir)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_scratch_folders_of_killed_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    killed, abandoned = _holding_scratch(tmp_path)
    alive, in_use = _holding_scratch(tmp_path)
    try:
        killed.send_signal(signal.SIGKILL)  # no cleanup: the folder and its netrc stay
        killed.wait()
        assert (abandoned / "netrc").exists() and (abandoned / SCRATCH_LOCK).exists()
        unlocked = tmp_path / "envcore-uv-older"  # an older envcore's, or not a scratch folder: no lock file
        unlocked.mkdir()
        assert remove_abandoned_scratch(tmp_path) == 1
        assert not abandoned.exists()
        assert (in_use / "netrc").exists() and unlocked.is_dir()
    finally:
        alive.kill()
        alive.wait()
    # the next process that makes a scratch folder sweeps: the live one's folder is abandoned now
    done = subprocess.run(
        [sys.executable, "-c", "from envcore.tools import scratch_folder\nwith scratch_folder('x'): pass"],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        check=True,
    )
    assert done.returncode == 0
    assert sorted(tmp_path.glob("envcore-*")) == [unlocked]


KILLED_AS_THE_LOCK_GOES = """
import os, pathlib, signal, sys
from envcore.tools import SCRATCH_LOCK, remove_abandoned_scratch, scratch_folder
real_unlink = pathlib.Path.unlink

def unlink_then_die(path, missing_ok=False):  # SIGKILL the moment a scratch folder's lock file is gone
    real_unlink(path, missing_ok=missing_ok)
    if path.name == SCRATCH_LOCK:
        os.kill(os.getpid(), signal.SIGKILL)

def rename_and_die(path, target):  # SIGKILL before the lock being taken gets its name
    if pathlib.Path(target).name == SCRATCH_LOCK:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(path, target)

real_rename = pathlib.Path.rename
pathlib.Path.unlink = unlink_then_die
if sys.argv[1] == "take":
    pathlib.Path.rename = rename_and_die
    with scratch_folder("uv") as folder:
        pass
elif sys.argv[1] == "use":
    with scratch_folder("uv") as folder:
        print(folder, flush=True)
        open(folder + "/netrc", "w").close()
        os.makedirs(folder + "/clone/.git/objects")
        open(folder + "/clone/.git/objects/ab", "w").close()
        os.chmod(folder + "/clone/.git/objects", 0o500)  # as a tool leaves it: read-only
else:
    remove_abandoned_scratch(pathlib.Path(sys.argv[2]))
"""


def _killed_as_the_lock_goes(temp_dir: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", KILLED_AS_THE_LOCK_GOES, *args],
        env={**os.environ, "TMPDIR": str(temp_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done.stdout.strip()


def test_a_kill_while_a_scratch_folder_is_removed_leaves_no_file_behind(tmp_path: Path) -> None:
    # the lock file goes last: killed right after it, the folder is empty (its netrc was removed before)
    folder = Path(_killed_as_the_lock_goes(tmp_path, "use"))
    assert folder.parent == tmp_path and folder.is_dir() and list(folder.iterdir()) == []
    assert remove_abandoned_scratch(tmp_path) == 0  # empty and new: it could be a folder being made
    an_hour_ago = time.time() - 3600
    os.utime(folder, (an_hour_ago, an_hour_ago))
    assert remove_abandoned_scratch(tmp_path) == 1
    assert not folder.exists()

    # a sweeper killed while it removes an abandoned folder leaves it empty too, or to the next sweep
    killed, abandoned = _holding_scratch(tmp_path)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    _killed_as_the_lock_goes(tmp_path, "sweep", str(tmp_path))
    assert abandoned.is_dir() and list(abandoned.iterdir()) == []

    # killed while taking its lock: the folder holds that file only, swept once old as an empty one
    for folder in tmp_path.glob("envcore-*"):
        folder.rmdir()
    _killed_as_the_lock_goes(tmp_path, "take")
    (taking,) = tmp_path.glob("envcore-uv-*")
    assert [p.name for p in taking.iterdir()] == [f"{SCRATCH_LOCK}.new"]
    assert remove_abandoned_scratch(tmp_path) == 0
    os.utime(taking, (an_hour_ago, an_hour_ago))
    assert remove_abandoned_scratch(tmp_path) == 1
    assert not taking.exists()


WAITS_FOR_A_WORKER = """
import os, signal, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from envcore.tools import join, result_of
signal.signal(signal.SIGTERM, lambda *_: os._exit(143))  # as envcore leaves: not waiting for the pool's threads
def work():
    print(threading.get_native_id(), flush=True)
    time.sleep(30)
if sys.argv[1] == "join":
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    join(thread)
else:
    result_of(ThreadPoolExecutor(1).submit(work))
"""


@pytest.mark.parametrize("waits", ["join", "result_of"])
def test_a_signal_a_worker_thread_gets_stops_the_main_thread_waiting_for_it(waits: str) -> None:
    """The kernel may hand a process's SIGTERM to a worker thread; Python runs the handler in the main thread,
    which a wait without timeout held until the worker ended (a tool's minutes)."""
    child = subprocess.Popen(
        [sys.executable, "-c", WAITS_FOR_A_WORKER, waits], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    worker = int(child.stdout.readline())
    signal_thread(child.pid, worker, signal.SIGTERM)
    try:
        assert child.wait(timeout=10) == 143
    finally:
        child.kill()


def _sleep_in_a_scratch_folder(folders: list[str]) -> int:
    """A tool's run in a scratch folder (its path appended to ``folders``), as a resolver's: the exit code."""
    from envcore import tools

    with tools.scratch_folder("stop") as folder:
        folders.append(folder)
        return tools.run_tool(["sleep", "30"], what="sleep").returncode


def test_a_tool_that_times_out_is_stopped_with_what_it_started(tmp_path: Path) -> None:
    """The tool's child holds its output open: killing the tool alone left run_tool waiting for that output
    past the timeout, as long as the child ran (30 s here), and the child running after."""
    from envcore.errors import EnvcoreError
    from envcore.tools import run_tool

    pid_file = tmp_path / "child"
    started = time.monotonic()
    with pytest.raises(EnvcoreError, match="did not finish within 1 s"):
        run_tool(["sh", "-c", f"sleep 30 & echo $! > {pid_file}; wait"], what="t", timeout=1)
    child = int(pid_file.read_text())
    try:
        assert time.monotonic() - started < 10
        assert processes_end(child, within=5), "the tool's child outlived it"
    finally:
        if process_running(child):  # (a failure: not left running)
            os.kill(child, signal.SIGKILL)


def test_stopping_interrupted_work_ends_its_tools_and_lets_its_threads_clean_up() -> None:
    """stop_work: the tool a worker thread waits for is stopped, and the thread leaves its scratch folder
    removed, as after a failure (an interrupted command's threads had been left with their folders)."""
    from concurrent.futures import ThreadPoolExecutor

    from envcore import tools

    folders: list[str] = []
    sleeper = functools.partial(_sleep_in_a_scratch_folder, folders)

    pool = ThreadPoolExecutor(1)
    with tools.new_work() as work:
        future = pool.submit(tools.in_this_work(sleeper))
        deadline = time.monotonic() + 10
        while not tools._RUNNING and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        tools.stop_work(pool, [future], work)
    assert time.monotonic() - started < 2 and future.done()
    assert future.result() == -signal.SIGKILL
    assert not Path(folders[0]).exists()


def test_a_tool_being_started_when_its_work_is_stopped_is_stopped_once_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The signal came after the tool had started but before run_tool had listed it (a loaded machine: the CI's
    SIGTERM test once found the scratch folder left): stop_work found no tool to stop and waited its 5 s for a
    thread that waited for the tool. Now the tool is stopped as soon as run_tool lists it."""
    import subprocess
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from envcore import tools

    running, stopping = threading.Event(), threading.Event()

    class SlowToReturn(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            running.set()
            stopping.wait(10)  # the work is stopped in this window
            time.sleep(0.1)

    monkeypatch.setattr(tools.subprocess, "Popen", SlowToReturn)
    folders: list[str] = []
    sleeper = functools.partial(_sleep_in_a_scratch_folder, folders)

    pool = ThreadPoolExecutor(1)
    with tools.new_work() as work:
        future = pool.submit(tools.in_this_work(sleeper))
        assert running.wait(10)
        assert not tools._RUNNING  # not listed yet
        started = time.monotonic()
        threading.Timer(0.2, stopping.set).start()
        tools.stop_work(pool, [future], work)
    assert time.monotonic() - started < 2 and future.done()
    assert future.result() == -signal.SIGKILL
    assert not Path(folders[0]).exists()


STOPPED_WHILE_STARTING = """
import os, signal, subprocess, sys, time
from envcore import tools
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal: a suite run with & ignores it
class SlowToReturn(subprocess.Popen):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        print(self.pid, flush=True)
        os.kill(os.getpid(), int(sys.argv[1]))  # the signal comes once the tool runs, inside Popen
        time.sleep(0.1)
tools.subprocess.Popen = SlowToReturn
terminated = tools.sigterm_as_interrupt()  # as the envcore command and the Metaflow worker do
try:
    tools.run_tool(["sleep", "30"], what="sleep")
except KeyboardInterrupt:
    tools.exit_process(143 if terminated else 130)
"""


@pytest.mark.parametrize(("sent", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_the_main_thread_while_it_starts_a_tool_stops_the_tool(sent: int, code: int) -> None:
    """A tool run in the main thread (an installer while a prefix is built): Ctrl-C or SIGTERM raised inside
    subprocess.Popen once the tool was forked left it running, unknown to end_tools, after the command had ended.
    Now the signal takes effect once run_tool has listed its tool."""
    child = subprocess.Popen(
        [sys.executable, "-c", STOPPED_WHILE_STARTING, str(int(sent))], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    tool = int(child.stdout.readline())
    try:
        assert child.wait(timeout=30) == code
        assert processes_end(tool, within=5), "the tool outlived the command"
    finally:
        child.kill()
        if process_running(tool):  # (a failure: not left running for 30 s)
            os.kill(tool, signal.SIGKILL)


def test_stopping_one_piece_of_work_leaves_another_going(tmp_path: Path) -> None:
    """Two resolves of a library caller, each in its own thread, each with a tool and a credential file (the
    second's tool started in a thread it hands its work to, as the early PyPI resolve does): stopping the first
    stops its tool, removes its file, and leaves the second's; a tool of no known work is stopped too."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from envcore import tools

    started: dict[str, threading.Event] = {
        name: threading.Event() for name in ("first", "second", "nobody's")
    }
    codes: dict[str, int] = {}

    secrets = tmp_path / "secrets"
    secrets.mkdir()

    def sleeper(name: str) -> None:
        tools.write_netrc({"example.org": ("user", "pw")}, secrets / f"{name}.netrc")
        started[name].set()
        codes[name] = tools.run_tool(["sleep", "30"], what=name).returncode

    def second() -> None:
        with tools.new_work():
            inner = threading.Thread(target=tools.in_this_work(sleeper), args=("second",))
            inner.start()
            inner.join()

    others = [threading.Thread(target=second), threading.Thread(target=sleeper, args=("nobody's",))]
    for thread in others:
        thread.start()
    pool = ThreadPoolExecutor(1)
    try:
        with tools.new_work() as first:
            future = pool.submit(tools.in_this_work(sleeper), "first")
            assert all(event.wait(10) for event in started.values())
            deadline = time.monotonic() + 10
            while len(tools._RUNNING) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(tools._RUNNING) == 3
            tools.stop_work(pool, [future], first)
        others[1].join(5)
        assert codes == {"first": -signal.SIGKILL, "nobody's": -signal.SIGKILL}
        assert len(tools._RUNNING) == 1 and others[0].is_alive()
        assert sorted(p.name for p in secrets.iterdir()) == ["second.netrc"]
    finally:
        tools.end_tools()
        for thread in others:
            thread.join(5)
    assert codes["second"] == -signal.SIGKILL and not (secrets / "second.netrc").exists()


def test_credential_files_removed_with_their_scratch_folder_are_no_longer_listed(tmp_path: Path) -> None:
    """A long-running library process resolves again and again: the netrc files of finished resolves went with
    their folders, so end_tools need not remember them."""
    from envcore import tools

    kept = tmp_path / "kept.netrc"
    tools.write_netrc({"example.org": ("user", "pw")}, kept)
    with tools.scratch_folder("netrc") as folder:
        inside = Path(folder) / "netrc"
        tools.write_netrc({"example.org": ("user", "pw")}, inside)
        assert inside in tools._SECRET_FILES
    assert not inside.exists() and inside not in tools._SECRET_FILES
    assert kept in tools._SECRET_FILES
    tools.end_tools()
    assert not kept.exists() and kept not in tools._SECRET_FILES


WHERE_SCRATCH_GOES = """
import os, sys
from envcore.tools import scratch_folder, temp_dir
ours = temp_dir()
with scratch_folder("x") as folder:
    mode = oct(os.stat(folder).st_mode & 0o777)
loaded = sorted({"tempfile", "shutil"} & set(sys.modules))
import tempfile
print(ours, tempfile.gettempdir(), os.path.dirname(folder), os.path.basename(folder)[:10], mode, loaded)
"""


def test_scratch_folders_go_where_tempfile_would_put_them_without_importing_it(tmp_path: Path) -> None:
    """``tempfile``'s rules for the temporary directory ($TMPDIR, $TEMP, $TMP, then /tmp...: the first this
    process may write to), worked out without importing it (and shutil, bz2, lzma, random)."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    environ = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "TEMP", "TMP")}
    for chosen in (
        {"TMPDIR": str(tmp_path)},
        {"TMPDIR": str(tmp_path / "missing"), "TEMP": str(a_file), "TMP": str(tmp_path)},
        {"TMPDIR": str(tmp_path / "missing")},
        {},
    ):
        done = subprocess.run(
            [sys.executable, "-c", WHERE_SCRATCH_GOES],
            env={**environ, **chosen},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        ours, theirs, parent, name, mode, loaded = done.stdout.split(maxsplit=5)
        assert ours == theirs == parent and name == "envcore-x-" and mode == "0o700", done.stdout
        assert loaded.strip() == "[]"


@pytest.mark.parametrize(
    ("content", "mode", "why"),
    [("echo hi\n", 0o755, "Exec format error"), ("#!/bin/sh\necho hi\n", 0o644, "Permission denied")],
)
def test_a_tool_that_cannot_be_started_is_one_paragraph(
    tmp_path: Path, content: str, mode: int, why: str
) -> None:
    """A script without its #! line, or a file that may not be run: a backend's error, not an OSError whose
    file name the CLI took for a folder of envcore's configuration ("Cannot use ...: check the folders")."""
    from envcore import tools

    tool = tmp_path / "tool"
    tool.write_text(content)
    tool.chmod(mode)
    with pytest.raises(tools.ToolNotStarted) as info:
        tools.run_tool([tool, "--version"], what="the tool")
    assert info.value.why == why
    assert info.value.message == (
        f"the tool could not be started ({tool}: {why}). Check that it is a program for this machine (a script "
        "needs its #! line) that may be run, or set the path of another."
    )
    assert isinstance(info.value, BackendUnavailable) and not tools._RUNNING
