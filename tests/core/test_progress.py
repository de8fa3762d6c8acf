"""Progress output: live on a terminal, silent in logs unless asked for, never mixed into results."""

from __future__ import annotations

import io
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from envcore.progress import Progress, TerminalProgress, as_progress, for_terminal, size_text

from ..conftest import ENVCORE, env_ids

Run = Callable[..., subprocess.CompletedProcess[str]]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _a_capable_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bars are drawn on a terminal that can redraw them: whatever TERM and COLUMNS the tests run with."""
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "100")


@pytest.mark.parametrize("variable", [("TERM", "dumb"), ("COLUMNS", "20")])
def test_a_terminal_that_cannot_redraw_a_bar_gets_lines(
    monkeypatch: pytest.MonkeyPatch, variable: tuple[str, str]
) -> None:
    """Before: TERM=dumb got carriage-return bars, and 20 columns a bar cut to 'Fetching package' (no count)."""
    monkeypatch.setenv(*variable)
    out = FakeTerminal()
    progress = for_terminal(quiet=False, stream=out)
    with progress.task("Fetching packages", 2) as task:
        task.advance(2)
    assert not isinstance(progress, TerminalProgress)
    assert out.getvalue() == "" or "\r" not in out.getvalue()


def test_terminal_shows_a_live_bar_then_the_summary() -> None:
    out = FakeTerminal()
    progress = for_terminal(quiet=False, stream=out)
    assert isinstance(progress, TerminalProgress)
    with progress.task("Fetching packages", 3) as task:
        for _ in range(3):
            task.advance(1, 1_500_000)
            time.sleep(0.3)  # let the ticker redraw
    progress("a notice")
    text = out.getvalue()
    assert "Fetching packages:" in text and "3/3" in text and "4.5 MB" in text
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-2].startswith("    Fetching packages: 3 in ") and lines[-1] == "    a notice"


@pytest.mark.parametrize("columns", [40, 60, 80, 100])
def test_a_bar_keeps_its_count_bytes_and_time_on_a_narrow_terminal(
    monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    """Before: a fixed 20-column bar behind a store's URL pushed the count, the bytes and the time off an
    80-column terminal (tqdm cuts the line at its end), and small files showed as '0.0 MB'."""
    monkeypatch.setenv("COLUMNS", str(columns))
    out = FakeTerminal()
    progress = for_terminal(quiet=False, stream=out)
    assert isinstance(progress, TerminalProgress)
    with progress.task("Caching packages in s3://a-company-bucket/metaflow/envcore", 12) as task:
        task.advance(11, 4_100)
        time.sleep(0.3)  # let the ticker redraw
    drawn = [line for line in out.getvalue().split("\r") if "/12" in line]
    assert drawn, out.getvalue()
    for line in drawn:
        assert len(line) < columns, line
        assert line.rstrip().endswith(("00:00", "00:01")), line
    assert any(line.rstrip().endswith("11/12, 4.1 kB 00:00") for line in drawn), drawn


def test_a_bar_is_laid_out_again_when_the_terminal_is_resized(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the width read when the bar started was kept: made narrower, the terminal wrapped each redraw
    (padded to the old width) onto new lines."""
    out = FakeTerminal()
    progress = for_terminal(quiet=False, stream=out)
    with progress.task("Fetching packages", 7) as task:
        task.advance(3, 2_000_000)
        time.sleep(0.3)
        monkeypatch.setenv("COLUMNS", "45")
        time.sleep(0.6)  # a redraw or more
        drawn = out.getvalue()
    assert "\x1b[K" in drawn, repr(drawn)
    after = [line for line in drawn.split("\x1b[K")[-1].split("\r") if line]
    assert after and all(len(line) < 45 and "3/7, 2.0 MB" in line for line in after), after


def test_a_bar_fits_the_terminal_of_stderr_when_stdout_is_redirected() -> None:
    """Before: the size was asked of stdout, a pipe with ``envcore create ... > out.txt``: the bar was laid out
    for 100 columns and, on a 60-column terminal, each redraw wrapped onto a new line."""
    import fcntl
    import struct
    import sys
    import termios

    script = (
        "import time\nfrom envcore.progress import for_terminal\n"
        "with for_terminal(quiet=False).task('Caching packages in file:///a/long/store/path/x', 7) as t:\n"
        "    t.advance(6, 9_000_000)\n    time.sleep(0.4)\n"
    )
    primary, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    try:
        subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=60,
            check=True,
        )
    finally:
        os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    drawn = [line for line in b"".join(chunks).decode().replace("\n", "\r").split("\r") if "6/7" in line]
    assert drawn and all(len(line) < 60 for line in drawn), drawn


def test_a_40_column_terminal_keeps_a_short_title_whole() -> None:
    """Before: room was kept for an elapsed time past an hour ('0:00:00'), and 40 columns showed
    'Fetching packa…: 0/7 00:00'."""
    from envcore.progress import bar_layout

    desc, layout = bar_layout("    Fetching packages", 7, 40)
    assert desc == "Fetching packages" and "{bar" not in layout


def test_ctrl_c_leaves_the_bar_as_it_was_with_the_cursor_at_its_end() -> None:
    """Before: the bar was cleared, and the terminal showed a blank line (or the echoed ^C alone) above
    'Aborted.', without how far the task got. An inner bar (a build within a resolution) is cleared, the outer
    one kept."""
    from tqdm import tqdm

    out = FakeTerminal()
    progress = for_terminal(quiet=False, stream=out)
    with (
        pytest.raises(KeyboardInterrupt),
        progress.task("Resolving 1 environment(s)", 1),
        progress.task("Fetching packages", 7) as task,
    ):
        task.advance(3, 2_000_000)
        raise KeyboardInterrupt
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("    Resolving 1 environment(s): ") and " 0/1 " in last, repr(out.getvalue())
    assert "\n" not in last and last == last.rstrip()  # the cursor at its end
    assert not [bar for bar in tqdm._instances if "environment(s)" in bar.desc]  # let go of  # type: ignore[attr-defined]


def test_the_clock_moves_while_an_uncounted_step_runs() -> None:
    out = FakeTerminal()
    progress = for_terminal(quiet=False, stream=out)
    with progress.task("Installing conda package(s)", 7):
        time.sleep(1.2)
    drawn = [line for line in out.getvalue().split("\r") if "Installing conda package(s):" in line]
    assert len({line.strip() for line in drawn}) >= 2  # at least two different elapsed times shown


def test_a_polled_count_moves_the_bar_while_a_silent_tool_works() -> None:
    out = FakeTerminal()
    progress = for_terminal(quiet=False, stream=out)
    linked: list[str] = []
    with progress.task("Installing conda package(s)", 5, poll=lambda: len(linked)) as task:
        for name in ("a", "b", "c"):
            linked.append(name)  # what a tool that reports nothing leaves behind as it works
            time.sleep(0.35)  # a tick or more
        assert task.done == 3
        task.finish()
    drawn = out.getvalue()
    assert all(f" {n}/5" in drawn for n in (1, 2, 3, 5)), drawn
    assert "    Installing conda package(s): 5 in " in drawn


def test_a_poll_is_asked_only_where_a_bar_is_drawn() -> None:
    log = io.StringIO()

    def poll() -> int:
        raise AssertionError("asked")

    with for_terminal(quiet=False, stream=log).task("Installing wheel(s)", 2, poll=poll) as task:
        time.sleep(0.3)
        task.finish()
    assert log.getvalue().startswith("    Installing wheel(s): 2 in ")


def test_logs_get_one_line_per_notice_and_finished_task() -> None:
    log = io.StringIO()
    progress = for_terminal(quiet=False, stream=log)
    with progress.task("Fetching packages", 2, lambda t: f"Fetched {t.done}") as task:
        task.advance(2)
    progress("Using an existing resolution")
    assert log.getvalue() == "    Fetched 2\n    Using an existing resolution\n"


def test_quiet_wins_even_on_a_terminal() -> None:
    out = FakeTerminal()
    progress = for_terminal(quiet=True, stream=out)
    with progress.task("x", 1) as task:
        task.advance()
    progress("notice")
    assert out.getvalue() == ""


def test_plain_callables_receive_notices_and_summaries() -> None:
    seen: list[str] = []
    progress = as_progress(seen.append)
    with progress.task("Uploading", 2, lambda t: f"Uploaded {t.done}") as task:
        task.advance(2)
    progress("done")
    assert seen == ["Uploaded 2", "done"]
    assert isinstance(as_progress(None), Progress)


def _stderr_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    primary, secondary = os.openpty()
    try:
        done = subprocess.run(
            [ENVCORE, *args],
            env={**{k: v for k, v in env.items() if k != "COLUMNS"}, "TERM": "xterm"},
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=300,
        )
    finally:
        os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the terminal's other side is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    return done.returncode, b"".join(chunks).decode()


def test_create_shows_bars_on_a_terminal_and_lines_in_a_log(
    run: Run, machine_env: Callable[..., dict[str, str]]
) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-app", "--pypi", "fx-extras").stdout)
    code, shown = _stderr_on_a_terminal(["create", ref, "--name", "live"], machine_env("b"))
    assert code == 0, shown
    assert "\r" in shown  # a live bar was drawn and redrawn
    for phase in (
        "Fetching and verifying 7 package(s) (",  # fx-pyyaml comes from conda (fx-yaml): no wheel of it
        "Installing 6 conda package(s) ... done in ",
        "Installing 1 wheel(s) ... done in ",
    ):
        assert phase in shown, shown
    logged = run(
        "create",
        ref,
        "--name",
        "logged",
        machine="b",
        METAFLOW_ENVCORE_CACHE_DIR=str(Path(machine_env("b")["METAFLOW_ENVCORE_CACHE_DIR"]) / "other"),
    )
    assert "Fetching and verifying 7 package(s)" in logged.stderr and "\r" not in logged.stderr
    # every phase says its time in the same words (before: '... done in 0.21 seconds.' for resolving and caching,
    # 'in 0.05 s' for fetching and installing)
    timed = [line for line in logged.stderr.splitlines() if re.search(r" in \d+\.\d+ ?s", line)]
    assert len(timed) == 3 and all(re.search(r" \.\.\. done in \d+\.\d\d seconds\.$", t) for t in timed), (
        timed
    )
    assert "created at" in logged.stdout
    code, shown = _stderr_on_a_terminal(["--quiet", "create", ref, "--name", "quiet"], machine_env("b"))
    assert code == 0 and shown == ""


def test_fetch_summary_tells_fetched_files_from_cached_ones(
    run: Run, machine_env: Callable[..., dict[str, str]]
) -> None:
    """``get`` (and a create that fetches) says which files it fetched and which the package cache held."""
    (ref,) = env_ids(run("resolve", "--conda", "fx-app", "--pypi", "fx-extras").stdout)
    first = run("get", ref, machine="b")
    assert "Fetching and verifying 7 package(s)" in first.stderr, first.stderr
    assert "already in the package cache" not in first.stderr
    again = run("get", ref, machine="b")
    assert "All 7 package(s) already in the package cache (" in again.stderr, again.stderr
    assert "Fetching and verifying" not in again.stderr
    cache = Path(machine_env("b")["METAFLOW_ENVCORE_CACHE_DIR"]) / "pkgs"
    (wheel,) = cache.glob("*/fx_extras-*.whl")
    size = size_text(wheel.stat().st_size)  # uv records no size: it was said as 0 B
    wheel.unlink()
    partly = run("get", ref, machine="b")
    assert f"Fetching and verifying 1 package(s) ({size}; " in partly.stderr, partly.stderr
    assert "; 6 other(s) already in the package cache) ... done in " in partly.stderr
    assert run("--quiet", "get", ref, machine="b").stderr == ""


def test_a_bar_counts_the_bytes_of_a_download_under_way() -> None:
    """Before: the bytes of a file were counted when it was done: a 9.5 MB download left the bar at
    '6/7, 0.0 MB' for as long as it took."""
    from envcore.progress import moving

    out = FakeTerminal()
    progress = for_terminal(quiet=False, stream=out)
    with progress.task("Fetching packages", 1) as task:

        def fetch() -> None:
            with task.counting():
                moving(0)
                moving(3_000_000)  # a download's first 3 MB
                time.sleep(0.4)  # a redraw or more
                task.advance(1, 5_000_000)  # done: 5 MB in all

        worker = threading.Thread(target=fetch)
        worker.start()
        worker.join()
        assert task.shown_bytes == task.bytes == 5_000_000  # the file in flight is not counted twice
    drawn = out.getvalue()
    assert "0/1, 3.0 MB" in drawn, drawn
    moving(1)  # outside a task's counting: nothing


def test_a_download_reports_its_bytes_as_they_come(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import functools
    import http.server

    from envcore import fetch

    (tmp_path / "big.bin").write_bytes(b"x" * 300_000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen: list[int] = []
    monkeypatch.setattr(fetch, "moving", seen.append)
    try:
        fetch.download(f"http://127.0.0.1:{server.server_address[1]}/big.bin", tmp_path / "got")
    finally:
        server.shutdown()
    assert seen[0] == 0 and seen[-1] == 300_000 and len([n for n in seen if 0 < n < 300_000]) >= 2, seen
