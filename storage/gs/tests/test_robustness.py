"""Robustness of envcore-gs against fake-gcs-server and a silent listener on 127.0.0.1: no secret in any
message of the real ``envcore`` command, and a silent endpoint fails clearly within bounded time. (A local
write failure is checked by the conformance kit.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envcore.config import Config
from envcore.errors import StorageError
from envcore.testing.robustness import (
    assert_clear_and_secret_free,
    envcore,
    silent_endpoint,
    stat_at_a_silent_endpoint,
)

# --- the tests -------------------------------------------------------------------------------------------

# a made-up service-account key: the PEM body is not a real key (google-auth fails to load it)
FAKE_KEY = {
    "type": "service_account",
    "project_id": "test",
    "private_key_id": "0123456789abcdef0123456789abcdef01234567",
    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCPRIVKEYSECRET1\n"
    "-----END PRIVATE KEY-----\n",
    "client_email": "envcore@test.iam.gserviceaccount.com",
    "token_uri": "http://127.0.0.1:9/token",
}


def _store(root: str) -> Any:
    from envcore_gs.store import GSStore

    return GSStore.from_config(root, Config.load())


def test_a_silent_endpoint_is_one_clear_error_in_bounded_time(
    gcs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint that accepts connections and never answers: the bucket probe's 3 attempts of
    METAFLOW_GS_READ_TIMEOUT (15 s by default: ~47 s measured), not 3 x 120 s; 1 s here keeps it short."""

    def open_store(port: int) -> Any:
        monkeypatch.setenv("METAFLOW_GS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("METAFLOW_GS_READ_TIMEOUT", "1")
        return _store("gs://bucket/conda_env")

    message, took, port = stat_at_a_silent_endpoint(open_store)
    assert message.startswith(
        f"The GCS endpoint http://127.0.0.1:{port} accepted the connection but did not answer for "
        "gs://bucket/conda_env within 1 s, 3 times."
    ), message
    assert "METAFLOW_GS_ENDPOINT_URL" in message and "METAFLOW_GS_READ_TIMEOUT" in message
    assert 3 <= took < 30, took


def test_no_secret_in_any_message_of_the_cli(
    gcs_server: Any, gcs_env: dict[str, str], tmp_path: Path
) -> None:
    """A raw access token (checked by gcsfs against Google's tokeninfo, here through a refusing proxy on
    127.0.0.1), an inline JSON key, and a password in the endpoint appear in no output of the real command;
    a key file that does not exist is said as such."""
    token, password = "ya29.TOKENSECRET777", "EndpointPw555"
    key = json.dumps(FAKE_KEY)
    secrets = [token, password, "CPRIVKEYSECRET1", FAKE_KEY["private_key_id"]]
    root = f"gs://{gcs_server.new_bucket()}/conda_env"
    env = {**gcs_env, "METAFLOW_DEFAULT_DATASTORE": "gs", "METAFLOW_CONDA_GSROOT": root}
    host = gcs_server.endpoint.removeprefix("http://")
    proxy = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1"}
    with silent_endpoint() as port:
        cases: dict[str, tuple[dict[str, str], str]] = {
            "raw token": ({"METAFLOW_GS_TOKEN": token, **proxy}, "credentials for gs://"),
            "json key": ({"METAFLOW_GS_TOKEN": key, **proxy}, "credentials for gs://"),
            "missing key file": (
                {"METAFLOW_GS_TOKEN": str(tmp_path / "no-such-key.json")},
                f"names the key file '{tmp_path / 'no-such-key.json'}', which does not exist",
            ),
            "refused": ({"METAFLOW_GS_ENDPOINT_URL": f"http://bob:{password}@127.0.0.1:9"}, "127.0.0.1:9"),
            "silent": (
                {"METAFLOW_GS_ENDPOINT_URL": f"http://bob:{password}@127.0.0.1:{port}"},
                f"The GCS endpoint http://127.0.0.1:{port} accepted the connection but did not answer",
            ),
            "server": ({"METAFLOW_GS_ENDPOINT_URL": f"http://bob:{password}@{host}"}, ""),
        }
        for case, (extra, phrase) in cases.items():
            run_env = {**env, "METAFLOW_GS_READ_TIMEOUT": "1", **extra}
            if case == "server":  # the endpoint works: the command runs to its own answer
                done = envcore(tmp_path / case, "show", "team/proj/env:v1", **run_env)
                shown = done.stdout + done.stderr
                assert not [s for s in secrets if s in shown], shown
                continue
            done = envcore(tmp_path / case.replace(" ", "-"), "show", "team/proj/env:v1", **run_env)
            assert_clear_and_secret_free(done, secrets, phrase)


def test_an_endpoint_lost_mid_operation_is_one_clear_error_in_seconds(
    stoppable_gcs_server: tuple[Any, Callable[[], None]],
    gcs_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The emulator stops after the store's first calls: every call after it gives up on the refused connection
    after 3 attempts (~4 s measured; gcsfs's nested retries took 33 s for a stat, ~4 minutes for a download)."""
    server, stop = stoppable_gcs_server
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.endpoint)
    store = _store(f"gs://{server.new_bucket()}/conda_env")
    store.put_bytes("packages/a.conda", b"a" * 1000)
    stop()

    def read() -> None:
        with store.open("packages/a.conda") as stream:
            stream.read()

    calls: dict[str, Callable[[], object]] = {
        "stat": lambda: store.stat("packages/a.conda"),
        "get_file": lambda: store.get_file("packages/a.conda", tmp_path / "a.conda"),
        "open": read,
        "put_bytes": lambda: store.put_bytes("packages/b.conda", b"b"),
    }
    for call, run in calls.items():
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            run()
        took = time.monotonic() - started
        key = "packages/b.conda" if call == "put_bytes" else "packages/a.conda"
        assert info.value.message == (
            f"Cannot reach the GCS endpoint {server.endpoint} for gs://{store.bucket}/conda_env/{key} (connection "
            "refused, 3 attempts). Check METAFLOW_GS_ENDPOINT_URL / STORAGE_EMULATOR_HOST and the network."
        ), call
        assert took < 10, (call, took)
