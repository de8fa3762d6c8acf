"""The kit's test servers: started on a free port, ready when they answer, and started again on another port when
one dies before it is ready (the port chosen was taken before the server bound it)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from envcore.testing.servers import ServerDidNotStart, server_process

# Listens on the port it is given, unless this is its first start (a marker file): then it ends, as a server that
# found its port taken does.
SERVER = """
import pathlib, socket, sys, time
marker = pathlib.Path(sys.argv[2])
if not marker.exists():
    marker.write_text("died once")
    sys.exit("address already in use")
with socket.create_server(("127.0.0.1", int(sys.argv[1]))) as server:
    while True:
        server.accept()[0].close()
"""


def test_a_server_that_dies_before_it_is_ready_is_started_again_on_another_port(tmp_path: Path) -> None:
    ports: list[int] = []

    def argv(port: int) -> list[str]:
        ports.append(port)
        return [sys.executable, "-c", SERVER, str(port), str(tmp_path / "marker")]

    with server_process(argv, tmp_path / "log", name="flaky") as port:
        assert port == ports[-1] and len(ports) == 2
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_server_that_keeps_dying_is_named_with_its_log(tmp_path: Path) -> None:
    always = [sys.executable, "-c", "import sys; sys.exit('address already in use')"]
    with (
        pytest.raises(
            ServerDidNotStart,
            match=r"dies ended before it was ready \(3 ports tried; .*address already in use",
        ),
        server_process(lambda port: always, tmp_path / "log", name="dies"),
    ):
        pass
