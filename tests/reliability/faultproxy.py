"""A fault-injecting reverse proxy on 127.0.0.1: forwards every request (any method, any body) to an upstream
http server and, for the requests a plan selects, answers with a fault instead. Used in front of the test
universe (repodata, index pages, package files) and in front of the cloud stores' servers (moto's S3,
fake-gcs-server, Azurite)."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade", "expect"}
MODES = ("5xx", "reset", "truncate", "slow", "lost")


@dataclass
class FaultPlan:
    """The first ``failures`` requests for each selected ``(method, name)`` get ``mode``; later ones pass. A
    request's name is its path, unless ``name`` tells it from the body too (a GCS multipart upload names its
    object in the body, not in the path).

    Modes: ``5xx`` (503, empty body), ``reset`` (TCP reset before the request reaches upstream), ``truncate``
    (a 200 or 206 answer cut to a third of its body, then the connection closed; other answers pass), ``slow`` (0.3 s delay, then
    a normal answer), ``lost`` (upstream applies the request, the client gets a reset instead of the answer).
    """

    mode: str = "5xx"
    failures: int = 0
    select: Callable[[str, str], bool] = lambda method, name: False
    name: Callable[[str, bytes], str] = lambda path, body: path
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)  # selected requests, by (method, name)
    faults: int = 0  # faults injected
    lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(
        self,
        mode: str,
        failures: int,
        select: Callable[[str, str], bool],
        name: Callable[[str, bytes], str] | None = None,
    ) -> None:
        assert mode in MODES, mode
        with self.lock:
            self.mode, self.failures, self.select = mode, failures, select
            self.name = name or (lambda path, body: path)
            self.seen.clear()
            self.faults = 0

    def decide(self, method: str, name: str) -> str | None:
        """The fault for this request, or None to forward it untouched."""
        if not self.select(method, name):
            return None
        with self.lock:
            self.seen[(method, name)] += 1
            if self.seen[(method, name)] > self.failures:
                return None
            self.faults += 1
            return self.mode

    def undo(self, method: str, name: str) -> None:
        """The selected fault did not apply to this answer (a truncation of an empty or error body)."""
        with self.lock:
            self.seen[(method, name)] -= 1
            self.faults -= 1
            if self.seen[(method, name)] <= 0:
                del self.seen[(method, name)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()  # with linger 0: RST, the client sees "connection reset by peer"
        self.close_connection = True

    def _handle(self) -> None:
        body = self._body()
        plan = self.server.plan
        name = plan.name(self.path, body)
        fault = plan.decide(self.command, name)
        if fault == "reset":
            return self._reset()
        if fault == "5xx":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if fault == "slow":
            time.sleep(0.3)
        upstream = http.client.HTTPConnection(
            self.server.upstream_host, self.server.upstream_port, timeout=60
        )
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        if fault == "lost":
            return self._reset()
        if fault == "truncate" and (self.command == "HEAD" or answer.status not in (200, 206) or not data):
            plan.undo(self.command, name)
            fault = None
        self.send_response(answer.status, answer.reason)
        for key, value in answer.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        length = answer.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length or "0")
        self.end_headers()
        if self.command == "HEAD":
            return None
        if fault == "truncate":
            self.wfile.write(data[: len(data) // 3])
            self.wfile.flush()
            self.close_connection = True
            return None
        self.wfile.write(data)
        return None

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, plan: FaultPlan) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.plan = plan
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that give up mid-answer are expected here


@dataclass(frozen=True)
class FaultProxy:
    url: str
    plan: FaultPlan


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """A proxy to ``upstream`` (``http://host:port``) on a free port of 127.0.0.1, until the block exits."""
    plan = FaultPlan()
    server = _ProxyServer(upstream, plan)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield FaultProxy(url=f"http://127.0.0.1:{server.server_address[1]}", plan=plan)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
