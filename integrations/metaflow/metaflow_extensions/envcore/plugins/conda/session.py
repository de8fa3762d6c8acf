"""envcore as the Metaflow launcher process uses it: configuration from Metaflow's own, the plugin registry,
the :class:`~envcore.environments.Environments` workflow, and the worker subprocess that does everything
touching py-rattler (resolving, hydrating).

Why a worker: py-rattler can crash while the interpreter finalises (see the toolchain notes). The launcher
is Metaflow's own process and its exit status is the run's, so it never runs rattler itself; the worker
ends through ``os._exit`` like the ``envcore`` CLI.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metaflow.metaflow_environment import InvalidEnvironmentException
from metaflow_extensions.envcore.plugins.conda import messages
from metaflow_extensions.envcore.plugins.conda.settings import (
    ConfigFiles,
    build_config,
    metaflow_config_files,
)

if TYPE_CHECKING:
    from envcore.config import Config
    from envcore.environments import Environments
    from envcore.plugins import Registry
    from envcore.types import ResolvedEnvironment, ResolveRequest

WORKER = "metaflow_extensions.envcore.plugins.conda.worker"


# seconds an interrupted launcher gives the worker to stop its tools before it kills it
WORKER_STOP_WAIT = 10.0


class _Terminated(BaseException):
    """SIGTERM reached the launcher while it worked with a worker."""


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


@contextlib.contextmanager
def _sigterm_cleans_up() -> Iterator[None]:
    """SIGTERM, where Metaflow leaves it at its default (the process ends at once), is raised in the block
    instead, so that the block ends what it started (the worker, its scratch folder with the request); the
    process then ends by the signal, as it would have."""
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_worker(argv: list[str], **popen: Any) -> int:
    """Run the worker to its end and return its exit status. Interrupted (Ctrl-C, or SIGTERM through
    :func:`_sigterm_cleans_up`), the launcher stops the worker first, which stops its tools: left behind, it
    would go on resolving or installing, tools and all, after the run was stopped."""
    from envcore.tools import signals_deferred

    proc: subprocess.Popen[bytes] | None = None
    try:
        with signals_deferred():  # not raised inside Popen, the worker started and unknown here
            proc = subprocess.Popen(argv, **popen)
        return proc.wait()
    except BaseException:
        if proc is None:
            raise
        proc.terminate()  # the worker ends its tools (as the envcore command does)
        try:
            proc.wait(timeout=WORKER_STOP_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def _no_result(returncode: int) -> str:
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    try:
        stopped = f"was stopped by {signal.Signals(number).name}" if number else ""
    except ValueError:
        stopped = ""
    if stopped:
        return f"The envcore worker {stopped} before it finished (exit status {returncode}). Run the command again."
    return (
        f"The envcore worker stopped without a result (exit status {returncode}). Run again with "
        "METAFLOW_DEBUG_CONDA=1 for details."
    )


class EnvcoreFailure(InvalidEnvironmentException):
    headline = "Environment error"


def _echo_err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Session:
    """Everything the launcher needs from envcore, built on first use."""

    def __init__(
        self,
        datastore_type: str | None = None,
        progress: Callable[[str], None] = _echo_err,
        pathspec_lookup: Callable[[str], tuple[str, str] | None] | None = None,
        overrides: Mapping[str, str] | None = None,
        quiet: bool | Callable[[], bool] = False,
    ) -> None:
        """``quiet`` (or a function that says, when a message comes): progress is not shown at all."""
        self.overrides = dict(overrides or {})
        self._quiet = quiet
        if datastore_type:
            self.overrides["METAFLOW_DEFAULT_DATASTORE"] = datastore_type
        self.progress = progress
        self.pathspec_lookup = pathspec_lookup
        self._messages: list[str] = []
        self.timings: dict[str, float] = {}  # the last worker's (see worker.TIMINGS)

    @property
    def quiet(self) -> bool:
        return bool(self._quiet() if callable(self._quiet) else self._quiet)

    def say(self, message: str) -> None:
        """Progress, unless quiet."""
        if not self.quiet:
            self.progress(message)

    @cached_property
    def files(self) -> ConfigFiles:
        return metaflow_config_files()

    @property
    def datastore_type(self) -> str:
        return str(self.config.get("DEFAULT_DATASTORE"))

    @cached_property
    def config(self) -> Config:
        return build_config(self.files, self.overrides)

    @cached_property
    def registry(self) -> Registry:
        from envcore.plugins import build_registry

        return build_registry(self.config)

    @cached_property
    def environments(self) -> Environments:
        from envcore.environments import Environments

        return Environments(
            self.registry, progress=lambda m: self.say(f"    {m}"), pathspec_lookup=self.pathspec_lookup
        )

    # --- the worker -----------------------------------------------------------------------------------

    def _call(self, op: str, payload: Any) -> Any:
        from envcore.tools import scratch_folder

        with _sigterm_cleans_up(), scratch_folder("worker") as tmp:
            request, result = Path(tmp) / "request", Path(tmp) / "result"
            request.write_bytes(pickle.dumps((self.files, op, payload)))
            env = {**os.environ, **self.overrides}
            returncode = _run_worker(
                [sys.executable, "-m", WORKER, str(request), str(result)],
                env=env,
                stdin=subprocess.DEVNULL,
                # the worker reports progress through its result; what tools print is progress too
                stdout=subprocess.DEVNULL if self.quiet else sys.stderr,
            )
            if not result.exists():
                raise EnvcoreFailure(_no_result(returncode))
            status, value = pickle.loads(result.read_bytes())
        if status != "ok":
            raise EnvcoreFailure(messages.for_printer(str(value)))
        result, reported, self.timings = value
        self._messages.extend(reported)
        return result

    def flush_messages(self) -> None:
        """Show what the worker reported (caching, reuse), after the line that announced the work."""
        for message in dict.fromkeys(self._messages):
            self.say(f"    {message}")
        self._messages.clear()

    def resolve(
        self,
        requests: Sequence[ResolveRequest],
        *,
        force: bool = False,
        cache: bool = True,
        keep: bool = True,
        labels: Sequence[str] = (),
    ) -> list[tuple[ResolvedEnvironment, bool] | str]:
        """Resolve (or reuse) each request on its own, cache the new ones in the store (unless not ``cache``)
        and record them (neither unless ``keep``: a dry run). A request that cannot be resolved gives its error
        message instead. ``labels``: what the caching lines call each request's environment ('' for nothing)."""
        if not requests:
            return []
        named = list(labels) or [""] * len(requests)
        result: list[tuple[ResolvedEnvironment, bool] | str] = self._call(
            "resolve", (list(requests), force, cache, keep, self.environments.names, named)
        )
        return result

    def ensure_stored(self, envs: Sequence[ResolvedEnvironment], labels: Sequence[str] = ()) -> None:
        """Cache in the store each of ``envs`` (resolutions this machine reuses) that the store lacks;
        ``labels``: what the caching lines call each."""
        self._call("store", list(zip(envs, list(labels) or [""] * len(envs), strict=True)))

    def create(
        self,
        env: ResolvedEnvironment,
        prefix: Path,
        *,
        force: bool = False,
        credentials: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        """Hydrate ``env`` into ``prefix``; with ``force``, build it again even if complete (the old prefix is
        kept until the new one is built). ``credentials``: those of the request it was resolved from, for
        package files the store lacks."""
        self._call("create", (env, str(prefix), force, dict(credentials or {})))
