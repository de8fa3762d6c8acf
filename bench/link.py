"""A store reached over a network, for the bench: large conda packages, and a TCP relay on 127.0.0.1 that passes
a server's answers on at a set bandwidth (one budget for all connections, as one network link).

The test universe's packages are small and its stores answer at the disk's speed, so fetching them costs
next to nothing beside installing them. A remote node hydrates hundreds of MB from S3 over a link of a few
hundred MB/s; these rows show how hydration compares there with the download of the same bytes, and how much of
it a download -> extract pipeline could hide (its fetch and install phases are timed apart).
"""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

CHUNK = 64 * 1024


class _Pacer:
    """Hands out the link's time: a chunk of n bytes may pass n / rate seconds after the previous one."""

    def __init__(self, bytes_per_second: float) -> None:
        self.rate = bytes_per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self, size: int) -> None:
        with self._lock:
            done = self._next = max(time.monotonic(), self._next) + size / self.rate
        delay = done - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _pipe(source: socket.socket, sink: socket.socket, pacer: _Pacer | None) -> None:
    try:
        while chunk := source.recv(CHUNK):
            if pacer is not None:
                pacer.wait(len(chunk))
            sink.sendall(chunk)
    except OSError:
        pass  # either side hung up
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Relay(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    upstream: tuple[str, int]
    pacer: _Pacer


class _Connection(socketserver.BaseRequestHandler):
    server: _Relay

    def handle(self) -> None:
        with socket.create_connection(self.server.upstream) as upstream:
            requests = threading.Thread(target=_pipe, args=(self.request, upstream, None), daemon=True)
            requests.start()
            _pipe(upstream, self.request, self.server.pacer)  # the answers: paced
            requests.join()


@contextmanager
def throttled(upstream_url: str, bytes_per_second: float) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` relaying to ``upstream_url`` (``http://host:port``), its answers at most
    ``bytes_per_second`` over all connections together."""
    upstream = urlsplit(upstream_url)
    server = _Relay(("127.0.0.1", 0), _Connection)
    server.upstream, server.pacer = (
        (upstream.hostname or "127.0.0.1", upstream.port or 80),
        _Pacer(bytes_per_second),
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="bench-link", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def large_packages(channel: Path, count: int, files: int, file_size: int) -> list[str]:
    """``count`` noarch conda packages (``bench-large-<i>``) of ``files`` incompressible files of
    ``file_size`` bytes each, written to ``channel`` and indexed; returns their names."""
    from envcore.testing.channel import index_channel
    from envcore.testing.condapkg import CondaPackage, PkgFile, write_package

    names = [f"bench-large-{i}" for i in range(count)]
    for name in names:
        payload = tuple(
            PkgFile(path=f"share/{name}/part-{j:04d}.bin", data=os.urandom(file_size)) for j in range(files)
        )
        write_package(CondaPackage(name=name, version="1.0", noarch="generic", files=payload), channel)
    index_channel(channel)
    return names
