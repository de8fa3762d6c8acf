"""A real Azure Blob service on 127.0.0.1 (Azurite, from npm), started once per session; each test gets a fresh
container. Azurite is installed into ``tests/node_modules`` from ``package-lock.json`` when it is absent."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from envcore.testing.servers import ServerDidNotStart, server_process

HERE = Path(__file__).parent
AZURITE = HERE / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented by Microsoft; valid only for the emulator).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CLEAR_ENV = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "METAFLOW_AZURE_STORAGE_CONNECTION_STRING",
    "METAFLOW_AZURE_STORAGE_ACCOUNT_KEY",
    "METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT",
)


@dataclass(frozen=True)
class Azurite:
    endpoint: str  # http://127.0.0.1:<port>/devstoreaccount1

    @property
    def connection_string(self) -> str:
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={self.endpoint};"

    def client(self):  # type: ignore[no-untyped-def]
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def new_container(self) -> str:
        name = f"envcore-{uuid.uuid4().hex[:12]}"
        self.client().create_container(name)
        return name

    def blob_names(self, container: str) -> list[str]:
        return [b.name for b in self.client().get_container_client(container).list_blobs()]


def install_azurite() -> Path:
    """``npm ci`` (or ``npm install``) into tests/node_modules unless Azurite is there; safe to run twice."""
    if AZURITE.exists():
        return AZURITE
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "npm is not installed: the Azure tests need Node.js and npm to install Azurite (tests/package.json)"
        )
    with open(HERE / ".npm-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time; the others find it done
        if not AZURITE.exists():
            verb = "ci" if (HERE / "package-lock.json").exists() else "install"
            done = subprocess.run(
                [npm, verb, "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True, timeout=900
            )
            if done.returncode != 0 or not AZURITE.exists():
                pytest.fail(
                    f"`npm {verb}` of Azurite in {HERE} failed ({done.returncode}): {done.stderr[-2000:]}"
                )
    return AZURITE


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    binary = install_azurite()
    data = tmp_path_factory.mktemp("azurite")

    def argv(port: int) -> list[str]:
        return [
            *(
                str(binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--location",
                str(data / "db"),
            ),
            *("--skipApiVersionCheck", "--loose", "--disableTelemetry"),
        ]

    # killed at the end: a graceful stop waits for every keep-alive connection of this process to close, up to
    # minutes; the data directory is temporary, so nothing is lost
    try:
        with server_process(argv, data / "azurite.log", name="Azurite", timeout=90, graceful=False) as port:
            yield Azurite(endpoint=f"http://127.0.0.1:{port}/{ACCOUNT}")
    except ServerDidNotStart as exc:
        pytest.fail(str(exc))


@pytest.fixture
def azure_env(monkeypatch: pytest.MonkeyPatch, azurite: Azurite) -> dict[str, str]:
    """Metaflow-style configuration: the blob endpoint setting and an account key."""
    for key in CLEAR_ENV:
        monkeypatch.delenv(key, raising=False)
    env = {
        "METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT": azurite.endpoint,
        "METAFLOW_AZURE_STORAGE_ACCOUNT_KEY": KEY,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def account_key() -> str:
    return KEY
