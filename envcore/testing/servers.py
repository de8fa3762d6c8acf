"""Servers on 127.0.0.1 for tests: a directory over http (optionally behind basic auth) from a daemon thread,
and external server processes (moto's S3, emulators) started on a free port and waited for."""

from __future__ import annotations

import base64
import contextlib
import functools
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True, kw_only=True, slots=True)
class ServedDirectory:
    """A running server. ``url`` is ``http://127.0.0.1:<port>`` (no trailing slash, no credentials)."""

    root: Path
    url: str
    port: int
    user: str | None = None
    password: str | None = None

    @property
    def url_with_credentials(self) -> str:
        """``url`` with ``user:password@`` in it (just ``url`` without auth)."""
        if self.user is None:
            return self.url
        return self.url.replace("http://", f"http://{self.user}:{self.password}@", 1)


class _Handler(SimpleHTTPRequestHandler):
    # keep-alive: pip, uv and rattler fetch many small files from one server
    protocol_version = "HTTP/1.1"

    def __init__(
        self, *args: Any, expected_authorization: str | None, token: str | None = None, **kwargs: Any
    ) -> None:
        self.expected_authorization = expected_authorization
        self.token = token
        super().__init__(*args, **kwargs)

    def _authorized(self) -> bool:
        if self.token is not None:  # anaconda.org's way: every path starts with /t/<TOKEN>/, else 403
            prefix = f"/t/{self.token}/"
            if not self.path.startswith(prefix):
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
            self.path = self.path[len(prefix) - 1 :]
            return True
        if (
            self.expected_authorization is None
            or self.headers.get("Authorization") == self.expected_authorization
        ):
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="envcore-test"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_GET(self) -> None:
        if self._authorized():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._authorized():
            super().do_HEAD()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read tool output, not an access log


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-transfer is normal (range probing, cancelled downloads)


@contextmanager
def serve_directory(
    root: Path, *, auth: tuple[str, str] | None = None, token: str | None = None
) -> Iterator[ServedDirectory]:
    """Serve ``root`` read-only on ``127.0.0.1`` at a free port until the block exits. With
    ``auth=(user, password)`` every request without those basic-auth credentials gets 401; with ``token``,
    ``root`` is served under ``/t/<token>/`` only (a conda channel token, as anaconda.org reads it), 403 elsewhere."""
    expected = None
    if auth is not None:
        expected = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    handler = functools.partial(_Handler, directory=str(root), expected_authorization=expected, token=token)
    server = _Server(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name=f"envcore-http-{port}", daemon=True
    )
    thread.start()
    try:
        yield ServedDirectory(
            root=Path(root),
            url=f"http://127.0.0.1:{port}",
            port=port,
            user=auth[0] if auth else None,
            password=auth[1] if auth else None,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerDidNotStart(RuntimeError):
    """An external test server did not answer in time; the message carries its log's tail."""


@contextmanager
def server_process(
    argv: Callable[[int], Sequence[str]],
    log: Path,
    *,
    name: str,
    timeout: float = 30,
    graceful: bool = True,
    ready: Callable[[int], bool] | None = None,
    attempts: int = 3,
) -> Iterator[int]:
    """Run ``argv(port)`` (a server listening on 127.0.0.1:port, a free port) until the block exits: ready when
    ``ready(port)`` (default: the port accepts connections); :class:`ServerDidNotStart` with the log's tail if it
    times out, or dies ``attempts`` times. A free port is free when chosen, not when the server binds it (another
    process may take it meanwhile, and the server ends with "address in use"): a server that dies before it is
    ready is started again on another port. ``graceful=False`` kills it at the end instead of asking it to stop
    (for servers whose stop waits for every keep-alive connection)."""
    is_ready = ready or _accepts_connections
    for attempt in range(1, attempts + 1):
        port = free_port()
        with open(log, "wb") as out:
            proc = subprocess.Popen(list(argv(port)), stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and not is_ready(port):
            if time.monotonic() > deadline:
                proc.kill()
                raise ServerDidNotStart(
                    f"{name} did not start on 127.0.0.1:{port} within {timeout:.0f} s: "
                    f"{log.read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.05)
        if proc.poll() is None:
            break
        if attempt == attempts:
            raise ServerDidNotStart(
                f"{name} ended before it was ready ({attempts} ports tried; the last, 127.0.0.1:{port}): "
                f"{log.read_text(errors='replace')[-2000:]}"
            )
    try:
        yield port
    finally:
        if graceful:
            proc.terminate()
        else:
            proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def moto_server(log: Path) -> contextlib.AbstractContextManager[int]:
    """moto's S3 server (``moto[server]`` installed): ``with moto_server(log) as port: ...``."""
    return server_process(
        lambda port: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        log,
        name="moto's S3 server",
    )
