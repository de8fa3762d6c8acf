"""Progress of long work (resolving, downloading, uploading, installing), shown the way a terminal user expects.

Two kinds of output: *notices* (``progress("Using ... resolved by bob")``: what the user should know, one
line, always shown unless ``--quiet``) and *tasks* (counted work: resolving, fetching, uploading, installing).
On a terminal, a task is one status line rewritten in place (``Fetching packages  7/12  4.1 MB  0.3 s``) and
replaced by its one-line summary when done. Elsewhere (CI logs, pipes) tasks show nothing unless the user asked
for detail (``--verbose`` or ``METAFLOW_DEBUG_CONDA=1``), and then only their summaries.

Library code receives a :class:`Progress`; a plain ``Callable[[str], None]`` (what older callers pass) is
wrapped by :func:`as_progress`, which shows notices and summaries through it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


class Task:
    """Counts units (and optionally bytes) of one task; safe to advance from worker threads."""

    def __init__(self, owner: Progress, title: str, total: int) -> None:
        self.owner, self.title, self.total = owner, title, total
        self.done = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def advance(self, units: int = 1, nbytes: int = 0) -> None:
        with self._lock:
            self.done += units
            self.bytes += nbytes
        self.owner._render(self)

    def status(self) -> str:
        size = f"  {self.bytes / 1e6:.1f} MB" if self.bytes else ""
        return f"{self.title}  {self.done}/{self.total}{size}  {time.monotonic() - self.started:.1f} s"


class Progress:
    """Notices (``progress("...")``) and tasks (``with progress.task("Fetching packages", n) as t``)."""

    def __init__(
        self, notice: Callable[[str], None] = lambda _: None, detail: Callable[[str], None] | None = None
    ) -> None:
        self._notice = notice
        self._detail = notice if detail is None else detail

    def __call__(self, message: str) -> None:
        self._notice(message)

    @contextmanager
    def task(self, title: str, total: int, summary: Callable[[Task], str] | None = None) -> Iterator[Task]:
        """A counted task; on success its summary (default: ``<title>: <n> in <s> s``; empty: none) is shown
        as a notice."""
        task = Task(self, title, total)
        stop = self._start(task)
        try:
            yield task
        finally:
            stop()
            self._clear()
        text = (
            summary(task) if summary else f"{title}: {task.done} in {time.monotonic() - task.started:.2f} s"
        )
        if total and text:
            self._detail(text)

    def _start(self, task: Task) -> Callable[[], None]:
        """Begin showing ``task``; returns what stops it. Nothing except on a terminal."""
        return lambda: None

    def _render(self, task: Task, force: bool = False) -> None:
        """Draw the live status line; nothing except on a terminal."""

    def _clear(self) -> None:
        """Remove the live status line, if one is drawn."""


class TerminalProgress(Progress):
    """Notices as lines and tasks as one live status line on ``stream`` (a terminal), redrawn at most 10 times
    a second."""

    INTERVAL = 0.1

    def __init__(self, stream: TextIO, indent: str = "    ") -> None:
        super().__init__(lambda message: self._line(message))
        self.stream, self.indent = stream, indent
        self._drawn = False
        self._last = 0.0
        self._lock = threading.Lock()

    def _start(self, task: Task) -> Callable[[], None]:
        """Draw at once, then keep the clock moving while a step with no counted units runs."""
        stopped = threading.Event()

        def tick() -> None:
            while not stopped.wait(0.25):
                self._render(task, force=True)

        self._render(task, force=True)
        ticker = threading.Thread(target=tick, name="envcore-progress", daemon=True)
        ticker.start()

        def stop() -> None:
            stopped.set()
            ticker.join()

        return stop

    def _line(self, message: str) -> None:
        with self._lock:
            self._erase()
            self.stream.write(f"{self.indent}{message}\n")
            self.stream.flush()

    def _render(self, task: Task, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.INTERVAL and task.done < task.total:
            return
        with self._lock:
            self._last = now
            self._erase()
            self.stream.write(f"{self.indent}{task.status()}")
            self.stream.flush()
            self._drawn = True

    def _clear(self) -> None:
        with self._lock:
            self._erase()
            self.stream.flush()

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False


def as_progress(progress: Progress | Callable[[str], None] | None) -> Progress:
    if isinstance(progress, Progress):
        return progress
    return Progress(progress) if progress is not None else Progress()


def for_terminal(*, verbose: bool, quiet: bool, stream: TextIO | None = None) -> Progress:
    """What a CLI shows: live progress on a terminal; elsewhere notices only with ``verbose``."""
    stream = stream or sys.stderr
    if quiet:
        return Progress()
    if stream.isatty():
        return TerminalProgress(stream)

    def line(message: str) -> None:
        print(f"    {message}", file=stream, flush=True)

    return Progress(line, detail=line if verbose else lambda _: None)
