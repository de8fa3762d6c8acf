"""Progress of long work (resolving, downloading, uploading, installing), shown the way a terminal user expects.

Two kinds of output: *notices* (``progress("Using ... resolved by bob")``: what the user should know, one
line, always shown unless ``--quiet``) and *tasks* (counted work: resolving, fetching, uploading, installing).
On a terminal, a task is a live tqdm bar (``Fetching packages: ████  7/12, 4.1 MB 00:00``) replaced by its
one-line summary with timing when done. Elsewhere (CI logs, pipes) each task is just that summary line.
``--quiet`` shows nothing.

Library code receives a :class:`Progress`; a plain ``Callable[[str], None]`` (what older callers pass) is
wrapped by :func:`as_progress`, which shows notices and summaries through it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from pathlib import Path

    from tqdm import tqdm


class Task:
    """Counts units (and optionally bytes) of one task; safe to advance from worker threads.

    ``poll``, when given, counts the units done so far from outside (a tool that reports nothing while it
    works: the packages it has linked into a prefix): a live bar asks it as it redraws."""

    def __init__(
        self, owner: Progress, title: str, total: int, poll: Callable[[], int] | None = None
    ) -> None:
        self.owner, self.title, self.total, self.poll = owner, title, total, poll
        self.done = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._moving: dict[int, int] = {}  # per thread: the bytes so far of the file it is moving

    def advance(self, units: int = 1, nbytes: int = 0) -> None:
        """``units`` more done, and ``nbytes`` more moved: the calling thread's file in flight (see
        :func:`moving`) is done with."""
        with self._lock:
            self.done += units
            self.bytes += nbytes
            self._moving.pop(threading.get_ident(), None)
        self.owner._render(self)

    @property
    def shown_bytes(self) -> int:
        """The bytes moved so far, the files in flight included (what a live bar shows)."""
        with self._lock:
            return self.bytes + sum(self._moving.values())

    @contextmanager
    def counting(self) -> Iterator[None]:
        """While it lasts, what the calling thread reports with :func:`moving` (a download under way) counts in
        this task's bytes, until the thread's next :meth:`advance`."""
        before = getattr(_current, "task", None)
        _current.task = self
        try:
            yield
        finally:
            _current.task = before
            with self._lock:
                self._moving.pop(threading.get_ident(), None)

    def _moved(self, nbytes: int) -> None:
        with self._lock:
            self._moving[threading.get_ident()] = nbytes
        self.owner._render(self)

    def finish(self) -> None:
        """All ``total`` units are done (whatever ``poll`` last saw)."""
        with self._lock:
            self.done = max(self.done, self.total)
        self.owner._render(self)

    def _polled(self) -> None:
        seen = self.poll() if self.poll is not None else 0
        with self._lock:
            if seen <= self.done:
                return
            self.done = min(seen, self.total)
        self.owner._render(self)


_current = threading.local()  # .task: the task the thread's transfers count for (Task.counting)


def moving(nbytes: int) -> None:
    """The file the calling thread is moving (downloading) has ``nbytes`` so far: a live bar counts them before
    the file is done (a large file no longer leaves the bar's bytes still for minutes). Nothing outside
    :meth:`Task.counting`; 0 when a transfer starts again."""
    task = getattr(_current, "task", None)
    if task is not None:
        task._moved(nbytes)


class Progress:
    """Notices (``progress("...")``) and tasks (``with progress.task("Fetching packages", n) as t``)."""

    def __init__(self, notice: Callable[[str], None] = lambda _: None) -> None:
        self._notice = notice

    def __call__(self, message: str) -> None:
        self._notice(message)

    @contextmanager
    def task(
        self,
        title: str,
        total: int,
        summary: Callable[[Task], str] | None = None,
        *,
        poll: Callable[[], int] | None = None,
    ) -> Iterator[Task]:
        """A counted task; on success its summary (default: ``<title>: <n> in <s> s``; empty: none) is shown
        as a notice. ``poll``: see :class:`Task` (asked only where a live bar is drawn)."""
        task = Task(self, title, total, poll)
        stop = self._start(task)
        interrupted = False
        try:
            yield task
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            stop(interrupted)
        text = (
            summary(task) if summary else f"{title}: {task.done} in {time.monotonic() - task.started:.2f} s"
        )
        if total and text:
            self(text)

    def _start(self, task: Task) -> Callable[[bool], None]:
        """Begin showing ``task``; returns what stops it (told whether the user interrupted the task). Nothing
        except on a terminal."""
        return lambda interrupted: None

    def _render(self, task: Task) -> None:
        """Draw the live status line; nothing except on a terminal."""


class TerminalProgress(Progress):
    """Notices as lines and each task as a live tqdm bar (count, MB, elapsed) on ``stream`` (a terminal),
    replaced by the task's summary line when it ends."""

    def __init__(self, stream: TextIO, indent: str = "    ") -> None:
        super().__init__(lambda message: self._line(message))
        self.stream, self.indent = stream, indent
        self._bars: dict[int, tqdm[Any]] = {}
        self._lock = threading.Lock()

    def _start(self, task: Task) -> Callable[[bool], None]:
        from tqdm import tqdm  # here: only terminals draw bars (tqdm costs ~40 ms to import)

        # a terminal of unknown size (0 x 0, e.g. a fresh pty) makes tqdm hide its bar: use 100 x 24
        size = terminal_size(self.stream)
        columns = min(size.columns, 120)
        desc, layout = bar_layout(f"{self.indent}{task.title}", task.total, columns)
        bar = tqdm(
            total=task.total,
            desc=desc,
            file=self.stream,
            leave=False,
            ncols=columns,
            nrows=size.lines,
            bar_format=layout,
        )
        with self._lock:
            self._bars[id(task)] = bar
        stopped = threading.Event()

        def tick() -> None:  # keeps the clock moving while a step with no counted units runs
            while not stopped.wait(0.25):
                try:
                    task._polled()
                except OSError:
                    pass  # what the poll looks at is being built or removed: the next tick sees it
                columns = min(terminal_size(self.stream).columns, 120)
                with self._lock:
                    if columns != bar.ncols:  # the terminal was resized: the bar is laid out for it again
                        bar.desc, bar.bar_format = bar_layout(
                            f"{self.indent}{task.title}", task.total, columns
                        )
                        bar.ncols = columns
                        # from a clean line, not padded to the old width (which would wrap on a narrower one)
                        self.stream.write("\r\x1b[K")
                        bar.sp = bar.status_printer(bar.fp)
                    bar.refresh()

        ticker = threading.Thread(target=tick, name="envcore-progress", daemon=True)
        ticker.start()

        def stop(interrupted: bool) -> None:
            stopped.set()
            ticker.join()
            with self._lock:
                self._bars.pop(id(task), None)
                if interrupted and not self._bars:
                    # Ctrl-C: the bar stays as it was (how far the task got), the cursor at its end, where the
                    # terminal echoed ^C and the interruption's own line break ends the line. Cleared, it left a
                    # blank line above 'Aborted.' (and the ^C alone). An outer bar is kept instead of this one.
                    bar.refresh()
                    bar.sp = None  # what draws it: closed without it, the bar is let go of but not cleared
                bar.close()

        return stop

    def _render(self, task: Task) -> None:
        with self._lock:
            bar = self._bars.get(id(task))
            if bar is None:
                return
            nbytes = task.shown_bytes
            if nbytes:  # before the count is drawn: the line drawn shows both
                bar.set_postfix_str(size_text(nbytes), refresh=False)
            bar.update(task.done - bar.n)

    def _line(self, message: str) -> None:
        from tqdm import tqdm

        with self._lock:
            tqdm.write(f"{self.indent}{message}", file=self.stream)


BAR_WIDTH, MIN_BAR_WIDTH, MIN_DESC = 20, 10, 24  # columns


def bar_layout(desc: str, total: int, columns: int) -> tuple[str, str]:
    """The description and tqdm ``bar_format`` of a live bar that fits ``columns`` with its count, bytes and
    elapsed time at their widest (``12/12, 999.9 MB 00:00``): the bar narrows to 10 columns, then the
    description is shortened (a store's long URL), then the bar goes (with the indent). (A fixed 20-column bar
    pushed the count, bytes and time off an 80-column terminal behind a store's URL: tqdm cuts the line at its
    end.)"""
    tail = len(f" {total}/{total}, 999.9 MB 00:00")  # (past an hour, tqdm cuts the seconds)
    room = columns - 1 - tail - len(": ")  # the last column left free: a full line wraps on some terminals
    width = min(BAR_WIDTH, room - len(desc) - 1)
    with_bar = "{desc}: {bar:%d} {n_fmt}/{total_fmt}{postfix} {elapsed}"
    if width >= MIN_BAR_WIDTH:
        return desc, with_bar % width
    if room - MIN_BAR_WIDTH - 1 >= MIN_DESC:
        return _shortened(desc, room - MIN_BAR_WIDTH - 1), with_bar % MIN_BAR_WIDTH
    return _shortened(desc.lstrip(), room), "{desc}: {n_fmt}/{total_fmt}{postfix} {elapsed}"


def _shortened(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def size_text(nbytes: float) -> str:
    """``nbytes`` as a person reads it: 512 B, 4.1 kB, 9.5 MB, 1.2 GB (decimal units, as the summaries')."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} B"


def done(title: str, started: float) -> str:
    """A phase's closing line, in the words every phase uses: ``TITLE ... done in 0.31 seconds.`` (``started``:
    its ``time.monotonic()``)."""
    return f"{title} ... done in {time.monotonic() - started:.2f} seconds."


def debug_line(text: str) -> None:
    """A debug line (``METAFLOW_DEBUG_CONDA=1``, ``--verbose``) on stderr, above a live bar rather than through
    it."""
    if sys.stderr is None:
        return
    if "tqdm" in sys.modules:  # a bar may be drawn: tqdm.write clears it, writes the line and redraws it
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)


def new_entries(folder: Path, suffix: str = "") -> Callable[[], int]:
    """A task's ``poll`` for a tool that reports nothing while it works but leaves one entry per unit in
    ``folder``: how many entries ending with ``suffix`` the folder has gained since this call (0 while it does
    not exist)."""

    def names() -> set[str]:
        try:
            return {name for name in os.listdir(folder) if name.endswith(suffix)}
        except FileNotFoundError:
            return set()

    before = names()
    return lambda: len(names() - before)


def as_progress(progress: Progress | Callable[[str], None] | None) -> Progress:
    if isinstance(progress, Progress):
        return progress
    return Progress(progress) if progress is not None else Progress()


def terminal_size(stream: TextIO) -> os.terminal_size:
    """The size of the terminal ``stream`` writes to (``COLUMNS`` and ``LINES`` first, as
    :func:`shutil.get_terminal_size`, which asks stdout's: a pipe when the results are redirected, so the bars on
    stderr were laid out for 100 columns and wrapped on a narrower terminal); 100 x 24 when unknown."""
    import shutil

    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):  # not a file (io.UnsupportedOperation is both)
        return shutil.get_terminal_size((100, 24))

    def given(name: str) -> int:
        try:
            return int(os.environ[name])
        except (KeyError, ValueError):
            return 0

    return os.terminal_size((given("COLUMNS") or size.columns or 100, given("LINES") or size.lines or 24))


def _draws_bars(stream: TextIO) -> bool:
    """A terminal that can redraw a bar in place and has room for its count: not ``TERM=dumb`` (no cursor
    control) nor narrower than 40 columns (the bar would drop its count and bytes)."""
    return os.environ.get("TERM") != "dumb" and terminal_size(stream).columns >= 40


def for_terminal(*, quiet: bool, stream: TextIO | None = None) -> Progress:
    """What a CLI shows: live bars on a terminal, one line per notice and finished task elsewhere."""
    stream = stream or sys.stderr
    if quiet:
        return Progress()
    if stream.isatty() and _draws_bars(stream):
        return TerminalProgress(stream)

    lock = threading.Lock()  # notices come from transfer threads too: one whole line each

    def line(message: str) -> None:
        with lock:
            print(f"    {message}", file=stream, flush=True)

    return Progress(line)


@contextmanager
def envcore_warnings_to(emit: Callable[[str], object]) -> Iterator[None]:
    """While it lasts, the text of each :class:`~envcore.errors.EnvcoreWarning` (raised in any thread: a
    resolver's) goes to ``emit`` once, on one line, for the caller to show its way; other warnings are shown as
    Python shows them."""
    import warnings

    from envcore.errors import EnvcoreWarning

    emitted: set[str] = set()
    python_shows = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if not issubclass(category, EnvcoreWarning):
            python_shows(message, category, *args, **kwargs)
            return
        text = " ".join(str(message).split())
        if text not in emitted:
            emitted.add(text)
            emit(text)

    with warnings.catch_warnings():
        warnings.simplefilter("always", EnvcoreWarning)
        warnings.showwarning = show
        yield
