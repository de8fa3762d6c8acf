"""pytest fixtures of the envcore test kit. Opt in with ``pytest_plugins = ["envcore.testing.fixtures"]``."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envcore.testing import kit_needs_pytest

try:
    import pytest
except ImportError as missing:  # the kit is a pytest plugin and pytest test classes
    raise ImportError(kit_needs_pytest(__name__)) from missing

from envcore.config import Config
from envcore.testing.channel import Universe, build_universe
from envcore.testing.condacli import conda_cli_bin, make_conda_cli  # noqa: F401  (conda-CLI test executables)
from envcore.testing.servers import ServedDirectory, serve_directory

SCRUBBED_PREFIXES = ("METAFLOW_", "CONDA_", "PIP_", "UV_", "POETRY_", "MAMBA_", "ENVCORE_")


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A clean configuration world for every test: no ``METAFLOW_*``/``CONDA_*``/``PIP_*``/``UV_*``/
    ``POETRY_*`` variables, ``HOME``, ``XDG_*`` and ``METAFLOW_HOME`` inside the test's tmp dir, and pip's
    machine-wide configuration turned off. Yields the fake home directory."""
    for name in list(os.environ):
        if name.startswith(SCRUBBED_PREFIXES):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    (home / ".metaflowconfig").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("METAFLOW_HOME", str(home / ".metaflowconfig"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.chdir(tmp_path)
    yield home


# --- the test universe: a conda channel and a wheel index built from one table --------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class WheelIndex:
    """The universe's PyPI side: ``find_links`` (a directory for ``--find-links``), ``simple_url``
    (``file://…/simple/``) and ``http_url`` (``http://127.0.0.1:PORT/simple/``) for ``--index-url``."""

    find_links: Path
    simple_url: str
    http_url: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthEndpoint:
    """An http URL that answers 401 unless given ``user``/``password`` by basic auth."""

    url: str
    user: str
    password: str
    url_with_credentials: str


AUTH_USER = "envcore"
AUTH_PASSWORD = "s3cret-test-only"


def universe_config(universe: Universe, home: Path) -> Config:
    """The configuration of a machine that resolves from ``universe`` (its conda channel and wheel index), with
    its envcore cache and Metaflow home under ``home``; the rest of the environment as it is."""
    return Config.load(
        environ={
            **os.environ,
            "METAFLOW_CONDA_CHANNELS": universe.channel_url,
            "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": universe.simple_url,
            "METAFLOW_ENVCORE_CACHE_DIR": str(home / "cache"),
            "METAFLOW_HOME": str(home / "mfhome"),
        }
    )


@pytest.fixture(scope="session")
def universe(tmp_path_factory: pytest.TempPathFactory) -> Universe:
    """The test universe (conda channel, wheels, simple index), built once per session (~0.5-1 s)."""
    return build_universe(tmp_path_factory.mktemp("universe"))


@pytest.fixture(scope="session")
def conda_channel(universe: Universe) -> str:
    """``file://`` URL of the universe's conda channel."""
    return universe.channel_url


@pytest.fixture(scope="session")
def _universe_http(universe: Universe) -> Iterator[ServedDirectory]:
    with serve_directory(universe.root) as served:
        yield served


@pytest.fixture(scope="session")
def _universe_http_auth(universe: Universe) -> Iterator[ServedDirectory]:
    with serve_directory(universe.root, auth=(AUTH_USER, AUTH_PASSWORD)) as served:
        yield served


@pytest.fixture(scope="session")
def conda_channel_http(_universe_http: ServedDirectory) -> str:
    """``http://127.0.0.1:PORT/channel``: the conda channel over http."""
    return f"{_universe_http.url}/channel"


@pytest.fixture(scope="session")
def wheel_index(universe: Universe, _universe_http: ServedDirectory) -> WheelIndex:
    """The universe's wheels and sdists: a ``--find-links`` dir, a ``file://`` and an http simple index."""
    return WheelIndex(
        find_links=universe.wheels_dir,
        simple_url=universe.simple_url,
        http_url=f"{_universe_http.url}/simple/",
    )


def _auth_endpoint(served: ServedDirectory, path: str) -> AuthEndpoint:
    assert served.user is not None and served.password is not None
    return AuthEndpoint(
        url=f"{served.url}/{path}",
        user=served.user,
        password=served.password,
        url_with_credentials=f"{served.url_with_credentials}/{path}",
    )


@pytest.fixture(scope="session")
def auth_channel(_universe_http_auth: ServedDirectory) -> AuthEndpoint:
    """The conda channel behind basic auth."""
    return _auth_endpoint(_universe_http_auth, "channel")


CONDA_TOKEN = "tk-0f1e2d3c-test-only"


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenChannel:
    """The universe's conda channel served only under ``/t/<token>/`` (anaconda.org's channel tokens)."""

    url: str  # http://127.0.0.1:PORT/channel, which answers 403
    token: str
    url_with_token: str  # http://127.0.0.1:PORT/t/<token>/channel


@pytest.fixture(scope="session")
def token_channel(universe: Universe) -> Iterator[TokenChannel]:
    """The conda channel behind a channel token."""
    with serve_directory(universe.root, token=CONDA_TOKEN) as served:
        yield TokenChannel(
            url=f"{served.url}/channel",
            token=CONDA_TOKEN,
            url_with_token=f"{served.url}/t/{CONDA_TOKEN}/channel",
        )


@pytest.fixture(scope="session")
def auth_wheel_index(_universe_http_auth: ServedDirectory) -> AuthEndpoint:
    """The simple index (``…/simple/``) behind basic auth."""
    return _auth_endpoint(_universe_http_auth, "simple/")


@pytest.fixture
def git_project(universe: Universe, tmp_path: Path) -> tuple[Path, str]:
    """The universe's fx-src as a git repository with the tag v0.9.0 and a later commit on its branch:
    (its path, the tagged commit). Skipped where git is not on PATH."""
    import shutil
    import subprocess
    import tarfile

    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not on PATH")
    with tarfile.open(universe.wheels_dir / "fx_src-0.9.0.tar.gz") as archive:
        archive.extractall(tmp_path / "git", filter="data")
    repo = tmp_path / "git" / "fx_src-0.9.0"

    def run_git(*args: str) -> str:
        identity = ["-c", "user.email=t@example.invalid", "-c", "user.name=t"]
        done = subprocess.run(
            [git, "-C", str(repo), *identity, *args], check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "v0.9.0"], ["tag", "v0.9.0"]):
        run_git(*args)
    commit = run_git("rev-parse", "HEAD")
    (repo / "later.txt").write_text("a later commit on the branch\n")
    run_git("add", "-A")
    run_git("commit", "-qm", "later")
    return repo, commit


# --- offline guard ----------------------------------------------------------------------------------------


class NetworkBlockedError(RuntimeError):
    """A test using the ``offline`` fixture tried to reach a non-loopback address."""


def _loopback(address: object) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths and other local families
    host = str(address[0]).split("%")[0]
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name: even resolving it would leave the machine
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def _refuse(address: object) -> NetworkBlockedError:
    return NetworkBlockedError(
        f"network access to {address!r} blocked: this test uses the `offline` fixture, which only allows "
        "127.0.0.0/8 and ::1. Serve what the test needs locally (see envcore.testing.servers)."
    )


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Block every non-loopback connection made through Python sockets in this process. Native code
    (py-rattler's Rust client) and subprocesses are not covered: run those under ``unshare -n``."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_create_connection = socket.create_connection

    def connect(self: socket.socket, address: Any) -> None:
        if not _loopback(address):
            raise _refuse(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not _loopback(address):
            raise _refuse(address)
        return real_connect_ex(self, address)

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        if not _loopback(address):  # before the DNS lookup create_connection would do
            raise _refuse(address)
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)


def signal_thread(pid: int, tid: int, signum: int) -> None:
    """Send ``signum`` to one thread of another process, as the kernel may hand a process's signal to any of its
    threads (glibc's ``tgkill``; Python sends to its own threads only). Skips the test where the C library has
    none (glibc 2.30 or newer has)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "tgkill"):
        pytest.skip("this C library has no tgkill (glibc 2.30 or newer has)")
    if libc.tgkill(pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill({pid}, {tid}, {signum}) failed")


def hanging_conda(folder: Path, in_a_child: bool = False) -> tuple[Path, Path]:
    """A conda executable in ``folder`` that answers ``--version`` and hangs in anything else (a solve that
    never ends), and the file each of its processes adds its pid to, a line, once it hangs (read it with
    :func:`hanging_pids`): for stopping envcore while its tools work. ``in_a_child``: the tool hangs in a
    process it started, which holds its output open (as a wrapper script's child, conda-lock's solver), and
    that process's pid is the one added."""
    tool, started = folder / "conda", folder / "started"
    hang = (
        f"sleep 120 &\necho $! >> {started}\nwait\n"
        if in_a_child
        else f"echo $$ >> {started}\nexec sleep 120\n"
    )
    tool.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then echo "conda 24.1.0"; exit 0; fi\n{hang}')
    tool.chmod(0o755)
    return tool, started


def hanging_pids(started: Path) -> list[int]:
    """The pids the processes of :func:`hanging_conda` have added to ``started`` so far. (One file each tool
    overwrote was read empty when a flow's two steps started two at once.)"""
    try:
        lines = started.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return []
    return [int(line) for line in lines if line.endswith("\n")]


def process_running(pid: int) -> bool:
    """Whether process ``pid`` still runs: a zombie does not (it ended; its parent has not reaped it). Linux."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def processes_end(*pids: int, within: float) -> bool:
    """Whether every one of ``pids`` has ended within ``within`` seconds (:func:`process_running`)."""
    import time

    deadline = time.monotonic() + within
    while any(map(process_running, pids)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
