"""Serve a directory over http on 127.0.0.1, optionally behind basic auth, from a daemon thread."""

from __future__ import annotations

import base64
import functools
import threading
from collections.abc import Iterator
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

    def __init__(self, *args: Any, expected_authorization: str | None, **kwargs: Any) -> None:
        self.expected_authorization = expected_authorization
        super().__init__(*args, **kwargs)

    def _authorized(self) -> bool:
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
def serve_directory(root: Path, *, auth: tuple[str, str] | None = None) -> Iterator[ServedDirectory]:
    """Serve ``root`` read-only on ``127.0.0.1`` at a free port until the block exits. With
    ``auth=(user, password)`` every request without those basic-auth credentials gets 401."""
    expected = None
    if auth is not None:
        expected = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    handler = functools.partial(_Handler, directory=str(root), expected_authorization=expected)
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
