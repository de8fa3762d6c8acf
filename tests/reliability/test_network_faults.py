"""Network faults between envcore and a package server: 5xx bursts, connection resets, truncated bodies and
slow responses on every package download, from a fault-injecting server on 127.0.0.1 in front of the
universe. Downloads retry with backoff and end complete (verified by hash) or with a clear error; the store
never holds a corrupt or partial object."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ..conftest import env_ids, snapshot

Run = Callable[..., subprocess.CompletedProcess[str]]
ARCHIVES = (".conda", ".tar.bz2", ".whl")


class FaultyHandler(SimpleHTTPRequestHandler):
    """Serves the universe; the first ``failures`` requests for each package archive get ``mode``."""

    protocol_version = "HTTP/1.1"

    def __init__(self, *args: Any, plan: dict[str, Any], **kwargs: Any) -> None:
        self.plan = plan
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        if not self.path.endswith(ARCHIVES):
            return super().do_GET()
        with self.plan["lock"]:
            self.plan["seen"][self.path] += 1
            attempt = self.plan["seen"][self.path]
        if attempt > self.plan["failures"]:
            return super().do_GET()
        mode = self.plan["mode"]
        if mode == "5xx":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif mode == "reset":
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.connection.shutdown(socket.SHUT_RDWR)  # the client sees the connection reset mid-request
            self.close_connection = True
        elif mode == "truncate":
            data = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 3])
            self.close_connection = True
        elif mode == "slow":
            time.sleep(0.3)
            super().do_GET()


@pytest.fixture
def faulty_server(world: dict[str, Path]) -> Iterator[tuple[str, dict[str, Any]]]:
    plan: dict[str, Any] = {"mode": "5xx", "failures": 0, "seen": Counter(), "lock": threading.Lock()}
    handler = partial(FaultyHandler, directory=str(world["universe"]), plan=plan)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", plan
    finally:
        server.shutdown()


def verified(store: Path) -> int:
    """Every package object's bytes match the hash in its key (``.../<hash>/<file>``); returns the count."""
    count = 0
    for path in store.rglob("*"):
        if path.is_file() and path.name.endswith(ARCHIVES):
            expected = path.parent.name
            algo = hashlib.md5 if len(expected) == 32 else hashlib.sha256
            assert algo(path.read_bytes()).hexdigest() == expected, path
            count += 1
    return count


@pytest.mark.parametrize(("mode", "failures"), [("5xx", 2), ("reset", 1), ("truncate", 2), ("slow", 1)])
def test_transient_faults_are_retried_to_a_verified_store(
    run: Run, world: dict[str, Path], faulty_server: tuple[str, dict[str, Any]], mode: str, failures: int
) -> None:
    url, plan = faulty_server
    plan.update(mode=mode, failures=failures)
    out = run(
        "resolve",
        "--conda",
        "fx-app",
        "--pypi",
        "fx-extras",
        METAFLOW_CONDA_CHANNELS=f"{url}/channel",
        METAFLOW_CONDA_DEFAULT_PYPI_SOURCE=f"{url}/simple/",
    )
    assert env_ids(out.stdout)
    assert verified(world["store"]) >= 8
    attempts = 1 if mode == "slow" else failures + 1  # a slow answer is not retried: it is a success
    assert plan["seen"] and all(n == attempts for n in plan["seen"].values()), plan["seen"]


def test_a_persistent_fault_is_a_clear_error_and_writes_no_description(
    run: Run, world: dict[str, Path], faulty_server: tuple[str, dict[str, Any]]
) -> None:
    url, plan = faulty_server
    plan.update(mode="5xx", failures=1000)
    before = snapshot(world["store"])
    started = time.monotonic()
    out = run(
        "resolve",
        "--conda",
        "fx-app",
        METAFLOW_CONDA_CHANNELS=f"{url}/channel",
        check=False,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "Could not download" in " ".join(out.stderr.split()) and "Check the network" in out.stderr
    assert time.monotonic() - started < 60  # bounded
    assert not [p for p in world["store"].rglob("env") if p.is_file()]  # no description without its packages
    verified(world["store"])
    assert (
        all(k.startswith("packages/") for k in snapshot(world["store"])) or snapshot(world["store"]) == before
    )
