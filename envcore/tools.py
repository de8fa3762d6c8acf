"""Running external tools the same way everywhere: argument lists, a scrubbed environment, timeouts, and the
tool's output kept for ``--verbose``."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

from envcore.configfiles import recall, remember, remembered_file
from envcore.errors import BackendUnavailable, EnvcoreError
from envcore.progress import debug_line

if TYPE_CHECKING:
    import threading
    from concurrent.futures import Executor, Future

    from envcore.config import Config

T = TypeVar("T")
P = ParamSpec("P")

# Variables that would make a tool read the user's own configuration instead of what envcore passes.
SCRUBBED_PREFIXES = ("PIP_", "UV_", "CONDA_", "POETRY_", "MAMBA_", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


def tool_env(
    extra: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = {
        k: v
        for k, v in (os.environ if environ is None else environ).items()
        if not k.startswith(SCRUBBED_PREFIXES)
    }
    env.update(extra or {})
    return env


def find_executable(
    config: Config, setting: str, names: Iterable[str], unavailable: Callable[[str], Exception]
) -> str | None:
    """The absolute path of the executable that ``setting`` names (a name looked up on the configuration's PATH,
    or a path), else of the first of ``names`` found on that PATH; None when neither gives one. A setting that
    names no executable file raises ``unavailable(why)``: a backend's one-paragraph error with its fix."""
    search = config.environ.get("PATH") or os.environ.get("PATH", "")
    value = config.value(setting)
    if value.value:
        configured = str(value.value)
        found = which(configured, path=search) if os.sep not in configured else None
        path = found or os.path.expanduser(configured)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise unavailable(f"{value.describe()}, which is not an executable file")
        return os.path.abspath(path)
    for name in names:
        found = which(name, path=search)
        if found:
            return os.path.abspath(found)
    return None


def which(command: str, path: str | None = None) -> str | None:
    """``shutil.which(command, path=path)``. A command with a folder part (``/venv/bin/uv``) is checked as shutil
    checks it, without importing shutil (and its bz2, lzma: ~9M instructions, a PyPI resolve's only use of it)."""
    if os.path.dirname(command):
        executable = os.path.exists(command) and os.access(command, os.F_OK | os.X_OK)
        return command if executable and not os.path.isdir(command) else None
    import shutil

    return shutil.which(command, path=path)


# What a process that ends early (Ctrl-C, SIGTERM) must not leave behind: the tools it runs, and the files of
# credentials it wrote for them, each with the work it belongs to (see new_work). The CLI calls end_tools()
# before it exits.
class Work:
    """One piece of work (:func:`new_work`); ``stopped`` once :func:`end_tools` stopped it: a tool it starts
    afterwards (the signal came while the tool was being started) is stopped as soon as it runs."""

    stopped = False


_RUNNING: dict[subprocess.Popen[str], Work | None] = {}
_SECRET_FILES: dict[Path, Work | None] = {}
_WORK: ContextVar[Work | None] = ContextVar("envcore_work", default=None)


@contextlib.contextmanager
def new_work() -> Iterator[Work]:
    """One piece of work (such as one ``Environments.resolve``) in this thread: the tools started and the
    credential files written until it ends, here and in the threads it starts with :func:`in_this_work`, belong
    to it, and :func:`stop_work` for it stops those alone. Within another piece of work, it is that one."""
    current = _WORK.get()
    if current is not None:
        yield current
        return
    work = Work()
    token = _WORK.set(work)
    try:
        yield work
    finally:
        _WORK.reset(token)


def in_this_work(call: Callable[P, T]) -> Callable[P, T]:
    """``call``, to run in another thread, as part of the work this thread does (:func:`new_work`)."""
    work = _WORK.get()

    def part(*args: P.args, **kwargs: P.kwargs) -> T:
        token = _WORK.set(work)
        try:
            return call(*args, **kwargs)
        finally:
            _WORK.reset(token)

    return part


def write_netrc(credentials: Mapping[str, tuple[str, str]], *paths: Path) -> Path:
    """The credentials as a netrc file (0600) at each of ``paths`` (the first is returned): how uv, pip, conda
    and libmamba take them, never on a command line. Each file is removed by :func:`end_tools` if its owner's
    temporary folder is not."""
    text = "".join(f"machine {host} login {user} password {pw}\n" for host, (user, pw) in credentials.items())
    for path in paths:
        path.touch(mode=0o600)
        path.write_text(text)
        _SECRET_FILES[path] = _WORK.get()
    return paths[0]


SCRATCH_LOCK = ".envcore-in-use"  # in every scratch folder, locked by the process that uses the folder
EMPTY_SCRATCH_AGE = 600.0  # seconds: an empty envcore-* folder this old is what a kill mid-removal left
_swept = False


@contextlib.contextmanager
def scratch_folder(kind: str) -> Iterator[str]:
    """A private temporary folder, ``envcore-KIND-*`` in the temporary directory, removed afterwards as
    ``tempfile.TemporaryDirectory`` does. A process killed before it could remove its folder (SIGKILL; tools'
    inputs and netrc files inside) does not leave it for good: the folder's lock file is held while it is in use,
    and the first scratch folder a process makes removes those whose lock nobody holds any longer (the kernel
    drops a dead process's locks, whatever its pid namespace). The lock file is removed last, so a kill during
    the removal leaves the folder to the next sweep, or at worst empty."""
    global _swept
    if not _swept:
        _swept = True
        remove_abandoned_scratch(Path(temp_dir()))
    folder = Path(_private_folder(temp_dir(), f"envcore-{kind}-"))
    taking, held = folder / f"{SCRATCH_LOCK}.new", folder / SCRATCH_LOCK
    try:
        with open(taking, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            taking.rename(held)  # only a locked file carries the name sweepers look for
            try:
                yield str(folder)
            finally:  # the lock is unlinked before it goes: a sweeper that opened it sees it unlinked
                _empty_but_the_lock(folder)
                held.unlink(missing_ok=True)
                for path in [p for p in list(_SECRET_FILES) if p.is_relative_to(folder)]:
                    _SECRET_FILES.pop(path, None)  # gone with the folder: no longer for end_tools
    finally:
        taking.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()


def temp_dir() -> str:
    """``tempfile.gettempdir()``: the first of ``$TMPDIR``, ``$TEMP``, ``$TMP``, /tmp, /var/tmp, /usr/tmp and the
    current folder that is a folder this process may write to. Worked out here, unless tempfile is loaded
    already (then its answer, ``tempfile.tempdir`` included): a resolve's scratch folder would otherwise import
    tempfile, with shutil, bz2, lzma and random (~17M instructions, ~3% of a CLI mixed resolve)."""
    loaded = sys.modules.get("tempfile")
    if loaded is not None:
        return str(loaded.gettempdir())
    for candidate in (
        *(os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP")),
        "/tmp",
        "/var/tmp",
        "/usr/tmp",
        ".",
    ):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            with contextlib.suppress(OSError):  # (the current folder, removed)
                return os.path.abspath(candidate)
    import tempfile  # none fits: tempfile's own error says so

    return tempfile.gettempdir()


def _private_folder(parent: str, prefix: str) -> str:
    """A new folder ``PREFIX*`` in ``parent`` that only this user can enter, as ``tempfile.mkdtemp`` makes it."""
    while True:
        folder = os.path.join(parent, prefix + os.urandom(6).hex())
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue
        return folder


def _empty_but_the_lock(folder: Path) -> None:
    def writable_and_again(function: Callable[..., object], path: str, _: object) -> None:
        with contextlib.suppress(OSError):  # a tool's read-only folder (git objects, build trees)
            os.chmod(os.path.dirname(path), 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
            function(path)

    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in list(entries):
            if entry.name == SCRATCH_LOCK:
                continue
            if entry.is_dir(follow_symlinks=False):
                import shutil  # only for a folder inside: a resolve's inputs are files

                shutil.rmtree(entry.path, onerror=writable_and_again)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def remove_abandoned_scratch(temp_dir: Path) -> int:
    """Remove the scratch folders in ``temp_dir`` whose process has gone (their lock is free), and the empty
    ones a kill during a removal left (older than ``EMPTY_SCRATCH_AGE``); how many."""
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(temp_dir):
            if not entry.name.startswith("envcore-") or not entry.is_dir(follow_symlinks=False):
                continue
            folder = Path(entry.path)
            try:
                lock = open(folder / SCRATCH_LOCK)  # noqa: SIM115 - held while the folder is removed
            except OSError:  # not a scratch folder, another user's, removed meanwhile, or left empty
                removed += _remove_if_old_and_empty(folder)
                continue
            with lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # in use
                if not _same_file(lock.fileno(), folder / SCRATCH_LOCK):
                    continue  # its owner finished and unlinked it while this process waited
                _empty_but_the_lock(folder)
                (folder / SCRATCH_LOCK).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
            removed += 1
    return removed


def _remove_if_old_and_empty(folder: Path) -> int:
    """A folder a kill left empty, or holding only the lock file it was taking (nothing is written before the
    lock is taken), once older than ``EMPTY_SCRATCH_AGE``: 1 if removed."""
    try:
        if time.time() - folder.stat().st_mtime < EMPTY_SCRATCH_AGE:
            return 0  # perhaps being made: its lock file comes right after the folder
        (folder / f"{SCRATCH_LOCK}.new").unlink(missing_ok=True)
        folder.rmdir()  # fails unless empty: a folder with anything else in it is not envcore's to judge
    except OSError:
        return 0
    return 1


def _same_file(fd: int, path: Path) -> bool:
    try:
        there, held = path.stat(), os.fstat(fd)
    except OSError:
        return False
    return (there.st_dev, there.st_ino) == (held.st_dev, held.st_ino)


SIGNAL_SLICE = 0.2  # seconds the main thread waits on a worker at a time (see result_of)


def result_of(future: Future[T]) -> T:
    """``future.result()``, waited for in slices: a signal the kernel hands to a worker thread (SIGTERM from a
    supervisor, SIGINT) runs its Python handler only once the main thread runs Python again, and one wait for a
    tool's minutes held the command that long."""
    from concurrent.futures import wait

    while not future.done():
        wait([future], timeout=SIGNAL_SLICE)
    return future.result()


def join(thread: threading.Thread) -> None:
    """``thread.join()``, in slices, as :func:`result_of` waits."""
    while thread.is_alive():
        thread.join(SIGNAL_SLICE)


_EVERY = object()


def end_tools(work: Work | object = _EVERY) -> None:
    """Stop the tools still running and remove the credential files still there (an interrupted command): every
    one, or those of ``work`` (:func:`new_work`) and of no known work (a plugin's own threads). A tool of
    ``work`` that is being started meanwhile is stopped by :func:`run_tool` once it runs."""

    def ended(owner: object | None) -> bool:
        return work is _EVERY or owner is work or owner is None

    if isinstance(work, Work):
        work.stopped = True  # before the look at _RUNNING: run_tool registers its tool, then looks at this
    for proc, owner in list(_RUNNING.items()):
        if ended(owner):
            kill_tool(proc)
    for path, owner in list(_SECRET_FILES.items()):
        if ended(owner):
            with contextlib.suppress(OSError):
                path.unlink()
            _SECRET_FILES.pop(path, None)


# seconds an interrupted command gives its worker threads to end once their tools are stopped
UNWIND_WAIT = 5.0


def stop_work(pool: Executor, futures: Iterable[Future[Any]], work: Work) -> None:
    """After an interruption in the thread that waits for ``futures``, parts of ``work`` (:func:`new_work`):
    ``pool`` is shut down without waiting (what has not started is cancelled), the tools of ``work`` under way
    are stopped (:func:`end_tools`; another piece of work of the process, a library caller's resolve in another
    thread, goes on), which ends the work waiting for them, and the threads get :data:`UNWIND_WAIT` seconds to
    leave as they do after a failure, their scratch folders (the tools' inputs) removed. Otherwise the process
    ends with those folders in place, or, in a library caller, the work goes on after the interruption."""
    from concurrent.futures import wait

    pool.shutdown(wait=False, cancel_futures=True)
    end_tools(work)
    wait(list(futures), timeout=UNWIND_WAIT)


def sigterm_as_interrupt() -> list[int]:
    """From now on SIGTERM (a supervisor stopping the process) is raised in the main thread as Ctrl-C is
    (KeyboardInterrupt), so that the work stops and cleans up; the list returned gets its number when it came,
    for the exit status (143 rather than 130)."""
    import signal

    came: list[int] = []

    def on_sigterm(signum: int, frame: object) -> None:
        came.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    return came


def exit_process(code: int) -> NoReturn:
    """End a process that ran envcore's work: no tool left running and no credential file (:func:`end_tools`),
    the output flushed, then ``os._exit`` (py-rattler can crash while the interpreter finalises)."""
    import sys

    end_tools()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """In the main thread, where Python runs signal handlers: SIGINT and SIGTERM that come during the block
    take effect once it has ended, through the handlers they had. For starting a process and listing it as
    one step: raised inside ``subprocess.Popen`` once the child is forked, Ctrl-C (KeyboardInterrupt) left the
    child running unknown, to go on after the command had ended (a tool writing into a prefix)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    handlers = {
        number: signal.getsignal(number)
        for number in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(number) is not None  # a handler set outside Python: left alone
    }
    for number in handlers:
        signal.signal(number, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
        for signum in dict.fromkeys(came):
            signal.raise_signal(signum)  # its own handler now: KeyboardInterrupt, or the default's end


class ToolNotStarted(BackendUnavailable):
    """:func:`run_tool` could not start the tool; ``why`` says why in a few words (``Exec format error``), for a
    backend's own message."""

    def __init__(self, message: str, *, why: str) -> None:
        super().__init__(message)
        self.why = why


def kill_tool(proc: subprocess.Popen[str]) -> None:
    """Kill a tool of :func:`run_tool` and the processes it started: its process group (each tool starts a
    session of its own). Killing the tool alone left what it ran (conda-lock's micromamba, a wrapper script's
    child) running, holding the tool's output pipes open, so the wait for its output went on after a timeout
    or an interruption (the command left its scratch folder behind when it ended)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:  # (the group is gone: the tool has ended, or it was not started as its leader)
        with contextlib.suppress(OSError):
            proc.kill()


def run_tool(
    args: Sequence[str | Path],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 1800,
    debug: bool = False,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool (given ``stdin`` as its input, if any) and return its completed process (whatever its exit
    code); the caller turns failures into errors a person can act on. ``what`` names the tool in messages."""
    argv = [str(a) for a in args]
    if debug:
        debug_line(f"debug[envcore tools]: {what}: {' '.join(argv)}")
        if stdin:
            from envcore.config import redact_text

            debug_line(f"debug[envcore tools]: {what} input:\n{redact_text(stdin.rstrip())}")
    work = _WORK.get()
    proc: subprocess.Popen[str] | None = None
    try:
        with signals_deferred():  # a Ctrl-C now would leave the tool started and not listed, running on
            try:
                proc = subprocess.Popen(
                    argv,
                    env=dict(env) if env is not None else tool_env(),
                    cwd=cwd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                    start_new_session=True,  # its own process group, for kill_tool
                )
            except FileNotFoundError:
                raise ToolNotStarted(
                    f"{what} is not installed here ({argv[0]} not found). Install it or set its path.",
                    why="not found",
                ) from None
            except OSError as exc:  # (a script without its #! line, another machine's binary, no permission)
                why = str(exc.strerror or exc)
                raise ToolNotStarted(
                    f"{what} could not be started ({argv[0]}: {why}). Check that it is a program for this machine (a "
                    "script needs its #! line) that may be run, or set the path of another.",
                    why=why,
                ) from None
            _RUNNING[proc] = work
        if work is not None and work.stopped:  # stopped while the tool was being started: end_tools missed it
            kill_tool(proc)
        try:
            stdout, stderr = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tool(proc)
            proc.communicate()
            raise EnvcoreError(f"{what} did not finish within {timeout:.0f} s and was stopped.") from None
    finally:
        if proc is not None:
            _RUNNING.pop(proc, None)
            if proc.returncode is None:  # interrupted while waiting: the tool does not outlive the command
                kill_tool(proc)
    done = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    if debug and done.stderr.strip():
        debug_line(f"debug[envcore tools]: {what} stderr:\n{done.stderr.rstrip()}")
    return done


def run_remembered(
    args: Sequence[str | Path], cache_dir: Path, *, what: str, timeout: float = 60, debug: bool = False
) -> subprocess.CompletedProcess[str]:
    """:func:`run_tool` for a question whose answer only the tool's binary decides, such as ``tool --version``:
    a successful answer is remembered in ``cache_dir/tools`` with the binary's identity (path, inode, size,
    mtime) and given again, without a process, while the binary is the same file."""
    argv = [str(a) for a in args]
    binary = which(argv[0])
    try:
        info = os.stat(binary) if binary else None
    except OSError:
        info = None
    if info is None:
        return run_tool(argv, what=what, timeout=timeout, debug=debug)
    identity = [binary, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, argv[1:]]
    path = remembered_file(cache_dir, "", [binary, argv[1:]])  # one file per tool and question
    stdout = recall(path, identity)
    if isinstance(stdout, str):
        return subprocess.CompletedProcess(argv, 0, stdout, "")
    done = run_tool(argv, what=what, timeout=timeout, debug=debug)
    if done.returncode == 0:
        remember(path, identity, done.stdout)
    return done


def says_disk_full(text: str) -> bool:
    """Whether a tool's error text reports a full disk (ENOSPC, as Rust and C tools word it)."""
    return "No space left on device" in text or "os error 28" in text


def tail(text: str, lines: int = 12) -> str:
    """The last lines of a tool's output, folded into one line for a one-paragraph error, without the final full
    stop (the sentence it is put in has one)."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " ".join(kept).rstrip(". ")
