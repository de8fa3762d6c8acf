"""A real S3 server on 127.0.0.1 (moto's), started once per session; each test gets a fresh bucket."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from envcore.testing.servers import ServerDidNotStart, moto_server

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret-value-0001"}


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", **_lower(CREDENTIALS))

    def new_bucket(self) -> str:
        name = f"envcore-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


def _lower(creds: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": creds["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": creds["AWS_SECRET_ACCESS_KEY"],
    }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    try:
        with moto_server(tmp_path_factory.mktemp("moto") / "server.log") as port:
            yield S3Server(endpoint=f"http://127.0.0.1:{port}")
    except ServerDidNotStart as exc:
        pytest.fail(str(exc))


@pytest.fixture
def s3_credentials() -> dict[str, str]:
    return dict(CREDENTIALS)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, s3_server: S3Server) -> dict[str, str]:
    env = {**CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1", "METAFLOW_S3_ENDPOINT_URL": s3_server.endpoint}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    return env
