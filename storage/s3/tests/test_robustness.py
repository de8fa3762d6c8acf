"""Robustness of envcore-s3 against moto's server and a silent listener on 127.0.0.1: no secret in any
message of the real ``envcore`` command, and a silent endpoint fails clearly within bounded time. (A local
write failure is checked by the conformance kit.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from envcore.config import Config
from envcore.testing.robustness import (
    assert_clear_and_secret_free,
    envcore,
    silent_endpoint,
    stat_at_a_silent_endpoint,
)

# --- the tests -------------------------------------------------------------------------------------------


def _store(root: str) -> Any:
    from envcore_s3.store import S3Store

    return S3Store.from_config(root, Config.load())


def test_a_silent_endpoint_is_one_clear_error_in_bounded_time(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint that accepts connections and never answers: 3 attempts of METAFLOW_S3_READ_TIMEOUT (15 s
    by default: ~46 s measured), not botocore's 6 x 60 s; 1 s here keeps the test short."""

    def open_store(port: int) -> Any:
        monkeypatch.setenv("METAFLOW_S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("METAFLOW_S3_READ_TIMEOUT", "1")
        return _store("s3://bucket/conda_env")

    message, took, port = stat_at_a_silent_endpoint(open_store)
    assert message.startswith(
        f"The S3 endpoint http://127.0.0.1:{port} did not answer for s3://bucket/conda_env/x within 1 s, 3 times."
    )
    assert "METAFLOW_S3_ENDPOINT_URL" in message and "METAFLOW_S3_READ_TIMEOUT" in message
    assert 3 <= took < 30, took  # 3 attempts of 1 s, and botocore's backoff (< 1 s, then < 2 s)


def test_no_secret_in_any_message_of_the_cli(
    s3_server: Any, aws_env: dict[str, str], s3_credentials: dict[str, str], tmp_path: Path
) -> None:
    """A password in METAFLOW_S3_ENDPOINT_URL (and the AWS keys) appear in no output of the real command,
    whichever way the endpoint fails: refused, silent, or a real server that rejects the request."""
    password = "EndpointPw555"
    secrets = [password, *s3_credentials.values()]
    env = {**aws_env, "METAFLOW_DEFAULT_DATASTORE": "s3", "METAFLOW_CONDA_S3ROOT": "s3://envbucket/conda_env"}
    host = s3_server.endpoint.removeprefix("http://")
    with silent_endpoint() as port:
        cases = {
            "refused": (
                f"http://bob:{password}@127.0.0.1:9",
                "Cannot reach the S3 endpoint http://127.0.0.1:9",
            ),
            "silent": (
                f"http://bob:{password}@127.0.0.1:{port}",
                f"S3 endpoint http://127.0.0.1:{port} did not",
            ),
            "server": (f"http://bob:{password}@{host}", "envcore: "),
        }
        for case, (endpoint, phrase) in cases.items():
            done = envcore(
                tmp_path / case,
                "show",
                "team/proj/env:v1",
                **{**env, "METAFLOW_S3_ENDPOINT_URL": endpoint, "METAFLOW_S3_READ_TIMEOUT": "1"},
            )
            assert_clear_and_secret_free(done, secrets, phrase)


def test_the_store_repr_hides_the_endpoint_password(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METAFLOW_S3_ENDPOINT_URL", "http://bob:EndpointPw555@127.0.0.1:9")
    store = _store("s3://bucket/conda_env")
    assert "EndpointPw555" not in repr(store) and "127.0.0.1:9" in repr(store)
