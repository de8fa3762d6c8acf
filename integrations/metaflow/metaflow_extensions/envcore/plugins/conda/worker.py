"""The worker subprocess: ``python -m metaflow_extensions.envcore.plugins.conda.worker REQUEST RESULT``.

REQUEST holds a pickle of ``(config files, op, payload)`` written by :class:`.session.Session`; RESULT gets
``("ok", value)`` or ``("error", message)``. Progress goes to stderr. The process ends with ``os._exit``
after flushing, because py-rattler can crash while the interpreter finalises.
"""

from __future__ import annotations

import os
import pickle
import sys
import sysconfig
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

MESSAGES: list[str] = []
# how long the work went on after its last resolution (caching it): the launcher's 'Resolving ... done in'
# leaves it out, as the caching lines that follow say it
TIMINGS: dict[str, float] = {}


def _debug() -> bool:
    return os.environ.get("METAFLOW_DEBUG_CONDA", "").lower() not in ("", "0", "false")


def _progress(message: str) -> None:
    """Progress is shown by the launcher after the work (its own line stays whole); at once when debugging."""
    if _debug():
        print(f"    {message}", file=sys.stderr, flush=True)
    else:
        MESSAGES.append(message)


def _resolve(envs: Any, payload: Any) -> Any:
    requests, force, cache, keep, names, labels = payload
    envs.names.update(names)  # the aliases the launcher found bases by: failures to extend name them
    # sysconfig fills its variables lazily and not thread-safely (uv's find_uv_bin reads them): fill them
    # before the threads start.
    sysconfig.get_config_vars()

    import threading
    import time

    resolved_at = [time.monotonic()]
    lock = threading.Lock()

    def one(request: Any, label: str) -> Any:
        from envcore.errors import EnvcoreError

        try:
            ((env, new),) = envs.resolve([request], force=force)
            with lock:
                resolved_at[0] = max(resolved_at[0], time.monotonic())
            if not keep:  # a dry run: neither cached nor recorded
                return env, new
            if not cache:  # a datastore in CONDA_IGNORE_CACHING_DATASTORES: recorded on this machine only
                return (envs.save(env, cache=False) if new else env), new
            return (envs.save(env, name=label) if new else envs.ensure_stored(env, name=label)), new
        except EnvcoreError as exc:  # reported per request: the launcher names the steps that need it
            return exc.message

    from envcore.tools import in_this_work, new_work, result_of, stop_work

    pool = ThreadPoolExecutor(max_workers=min(4, len(requests)))
    with new_work() as work:
        futures = [
            pool.submit(in_this_work(one), r, label) for r, label in zip(requests, labels, strict=True)
        ]
        try:
            results = [result_of(future) for future in futures]
            TIMINGS["after_resolving"] = time.monotonic() - resolved_at[0]
            return results
        except KeyboardInterrupt:  # the tools under way are stopped, the threads left to end (see stop_work)
            _stopping()
            stop_work(pool, futures, work)
            raise
        finally:
            pool.shutdown(wait=False)


def _stopping() -> None:
    """Interrupted: later signals (the launcher's SIGTERM after a terminal's Ctrl-C reached both) no longer cut
    the cleanup short; the launcher kills the worker if it takes too long."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _store(envs: Any, payload: Any) -> Any:
    return [envs.ensure_stored(env, name=label) for env, label in payload]


def _create(envs: Any, payload: Any) -> Any:
    env, prefix, force, credentials = payload
    return envs.create(env, Path(prefix), force=force, credentials=credentials)


def run(request: Path) -> tuple[str, Any]:
    from metaflow_extensions.envcore.plugins.conda import messages
    from metaflow_extensions.envcore.plugins.conda.settings import build_config

    from envcore.environments import Environments
    from envcore.errors import EnvcoreError
    from envcore.plugins import build_registry

    files, op, payload = pickle.loads(request.read_bytes())
    try:
        config = build_config(files)
        envs = Environments(build_registry(config), progress=_progress)
        handler = {"resolve": _resolve, "store": _store, "create": _create}[op]
        with messages.warnings_as_lines(_progress):  # a resolver's (a yanked pin)
            result = handler(envs, payload)
        return "ok", (result, MESSAGES, TIMINGS)
    except EnvcoreError as exc:
        if _debug():
            traceback.print_exc()
        return "error", exc.message


def main() -> None:
    import signal

    from envcore.tools import exit_process, sigterm_as_interrupt

    terminated = sigterm_as_interrupt()  # as Ctrl-C: stop, end the tools, no result
    code = 1
    try:
        status, value = run(Path(sys.argv[1]))
        Path(sys.argv[2]).write_bytes(pickle.dumps((status, value)))
        code = 0 if status == "ok" else 1
    except KeyboardInterrupt:  # the launcher stopped it (or Ctrl-C reached it): it says so, not this
        _stopping()
        code = 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    except BaseException as exc:  # anything else is a bug: say so, with the traceback
        traceback.print_exc()
        message = f"internal error in the envcore worker: {type(exc).__name__}: {exc}"
        Path(sys.argv[2]).write_bytes(pickle.dumps(("error", message)))
    finally:
        exit_process(code)  # no tool outlives the worker, no credential file stays


if __name__ == "__main__":
    main()
