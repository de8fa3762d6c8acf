"""envcore-azure against a real Azure Blob service (Azurite, on 127.0.0.1): the conformance kit unmodified, the
errors a user meets, block uploads, and the main job end to end through the ``envcore`` command."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from envcore.config import Config
from envcore.errors import ConfigError, MissingObject, StorageError
from envcore.plugins import build_registry
from envcore.testing.channel import Universe
from envcore.testing.conformance import StorageConformance
from envcore.testing.mainjob import run_main_job
from envcore.types import Store

Azurite = Any  # storage/azure/tests/conftest.py: the Azurite fixture

ENVCORE = str(Path(sys.executable).with_name("envcore"))


def _store(root: str) -> Any:
    from envcore_azure.store import AzureStore

    return AzureStore.from_config(root, Config.load())


class TestAzureConformance(StorageConformance):
    @pytest.fixture
    def store(self, azurite: Azurite, azure_env: dict[str, str]) -> Store:
        return _store(f"azure://{azurite.new_container()}/conda_env")  # type: ignore[no-any-return]

    @pytest.fixture
    def secrets(self, account_key: str) -> list[str]:
        return [account_key]


def test_connection_string(
    azurite: Azurite, azure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, account_key: str
) -> None:
    for key in azure_env:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    store = _store(f"azure://{azurite.new_container()}/cs")
    info = store.put_bytes("a/b", b"hello")
    assert store.stat("a/b") == info and repr(store).endswith("auth='connection string')")
    with pytest.raises(MissingObject) as missing:
        store.open("nope")
    for shown in (repr(store), store.url, missing.value.message):
        assert account_key not in shown and azurite.connection_string not in shown


def test_selected_by_metaflow_configuration(
    azurite: Azurite, azure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    container = azurite.new_container()
    monkeypatch.setenv("METAFLOW_DEFAULT_DATASTORE", "azure")
    monkeypatch.setenv(
        "METAFLOW_DATASTORE_SYSROOT_AZURE", f"{container}/metaflow"
    )  # Metaflow's form: no scheme
    store = build_registry(Config.load()).store()
    assert store.url == f"azure://{container}/metaflow/conda_env"
    store.put_bytes("x", b"1")
    assert azurite.blob_names(container) == ["metaflow/conda_env/x"]


def test_root_forms() -> None:
    from envcore_azure.store import parse_root

    assert parse_root("azure://my-container/a/b/") == ("my-container", "a/b")
    assert parse_root("my-container/metaflow/conda_env") == ("my-container", "metaflow/conda_env")
    assert parse_root("my-container") == ("my-container", "")
    for bad in ("s3://bucket/x", "https://acct.blob.core.windows.net/c/x", "My_Container/x", "ab/x"):
        with pytest.raises(ConfigError, match="METAFLOW_CONDA_AZUREROOT"):
            parse_root(bad)
    assert parse_root("azure://my-container//a/b//") == ("my-container", "a/b")  # slashes around: as before
    for typo in (
        "azure://my-container/a//b",
        "my-container/a//b",
    ):  # blob names are literal: refused, as S3's
        with pytest.raises(ConfigError) as info:
            parse_root(typo)
        assert info.value.message == (
            f"The Azure store root {typo!r} has an empty path segment ('//'). Azure keys are literal, so it is not "
            "the same place as azure://my-container/a/b: write the root without it in METAFLOW_CONDA_AZUREROOT (or "
            "METAFLOW_DATASTORE_SYSROOT_AZURE, which it comes from when unset), and copy what it already holds to "
            "the new root (azcopy sync) or resolve the environments again."
        )


def test_missing_container_is_one_clear_paragraph(
    azurite: Azurite, azure_env: dict[str, str], account_key: str, tmp_path: Path
) -> None:
    store = _store("azure://no-such-container/conda_env")
    src = tmp_path / "f"
    src.write_bytes(b"x")
    attempts = [
        lambda: store.put_bytes("x", b"1"),
        lambda: store.put_bytes("x", b"1", if_absent=True),
        lambda: store.put_file("x", src),
        lambda: store.get_file("x", tmp_path / "out"),
        lambda: store.open("x"),
        lambda: list(store.list("")),
        lambda: store.stat("x"),  # a HEAD has no body, but the service's error code is in a header
    ]
    for attempt in attempts:
        with pytest.raises(StorageError) as info:
            attempt()
        assert info.value.message == (
            f"The container 'no-such-container' does not exist at the Azure Blob endpoint {azurite.endpoint}. "
            "Create it, or fix "
            "METAFLOW_CONDA_AZUREROOT / METAFLOW_DATASTORE_SYSROOT_AZURE."
        )
        assert account_key not in info.value.message


def test_wrong_endpoint_is_one_clear_paragraph(
    azure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT", "http://127.0.0.1:9/devstoreaccount1")
    store = _store("azure://container/conda_env")
    started = time.monotonic()
    with pytest.raises(
        StorageError, match=r"Cannot reach the Azure Blob endpoint http://127\.0\.0\.1:9/devstore"
    ):
        store.stat("x")
    assert time.monotonic() - started < 30  # retried with backoff, not for minutes


def test_an_endpoint_that_is_not_azure(
    azure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "-d", str(tmp_path), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.05)
        monkeypatch.setenv("METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT", f"http://127.0.0.1:{port}/acct")
        store = _store("azure://container/conda_env")
        with pytest.raises(StorageError, match="does not look like Azure Blob Storage"):
            store.stat("x")  # a 404 from elsewhere is not "no such object"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_wrong_key_is_denied_without_showing_it(
    azurite: Azurite, azure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = base64.b64encode(b"not the key of this account, 64 bytes long, not the key ..").decode()
    monkeypatch.setenv("METAFLOW_AZURE_STORAGE_ACCOUNT_KEY", wrong)
    store = _store(f"azure://{azurite.new_container()}/conda_env")
    with pytest.raises(StorageError, match=r"Access to azure://.*/conda_env/x was denied") as info:
        store.put_bytes("x", b"1")
    assert wrong not in info.value.message and wrong not in repr(store)


def test_a_key_that_is_not_base64_is_named_as_such(
    azurite: Azurite, azure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from envcore.errors import ConfigError

    monkeypatch.setenv("METAFLOW_AZURE_STORAGE_ACCOUNT_KEY", "notbase64!!")
    with pytest.raises(ConfigError, match=r"account key .* is set but is not base64") as info:
        _store(f"azure://{azurite.new_container()}/conda_env").stat("x")
    assert "notbase64" not in info.value.message


def test_a_large_file_goes_up_in_blocks(azurite: Azurite, azure_env: dict[str, str], tmp_path: Path) -> None:
    container = azurite.new_container()
    store = _store(f"azure://{container}/conda_env")
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * (40 * 4096))  # 40 MiB: five 8 MiB blocks
    info = store.put_file("packages/big.conda", src)
    assert info.size == src.stat().st_size
    blob = azurite.client().get_blob_client(container, "conda_env/packages/big.conda")
    committed, _ = blob.get_block_list("committed")
    assert [b.size for b in committed] == [8 * 1024 * 1024] * 5
    out = tmp_path / "out" / "big.conda"
    store.get_file("packages/big.conda", out)
    assert out.read_bytes() == src.read_bytes() and not list(out.parent.glob(".big.conda.*"))


def test_listing_follows_pages(azurite: Azurite, azure_env: dict[str, str]) -> None:
    store = _store(f"azure://{azurite.new_container()}/conda_env")
    store.page_size = 7
    keys = [f"k/{i:03d}" for i in range(30)]
    for key in reversed(keys):
        store.put_bytes(key, b".")
    assert [i.key for i in store.list("k/")] == keys


def test_a_blob_replaced_while_read_fails_instead_of_mixing(
    azurite: Azurite, azure_env: dict[str, str]
) -> None:
    store = _store(f"azure://{azurite.new_container()}/conda_env")
    store.put_bytes("big", b"a" * (12 * 1024 * 1024))
    with store.open("big") as fh:
        assert fh.read(1024 * 1024) == b"a" * (1024 * 1024)
        store.put_bytes("big", b"b" * (12 * 1024 * 1024))
        with pytest.raises(StorageError, match="was replaced while it was being read"):
            fh.read()


def test_main_job_through_a_container(
    azurite: Azurite, azure_env: dict[str, str], universe: Universe, tmp_path: Path
) -> None:
    container = azurite.new_container()
    root = f"azure://{container}/conda_env"
    run_main_job(
        universe,
        tmp_path,
        {**azure_env, "METAFLOW_DEFAULT_DATASTORE": "azure", "METAFLOW_CONDA_AZUREROOT": root},
        root,
        alias="team/azure:v1",
    )
    keys = azurite.blob_names(container)
    assert any(k.startswith("conda_env/envs/aliases/generic/team/azure/v1") for k in keys)
    assert any(k.startswith("conda_env/packages/conda/") for k in keys)


def test_machines_uploading_the_same_large_file_at_once_all_succeed(
    azurite: Azurite, azure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Several machines caching one package (content-addressed key: same content) race to commit its block
    list; the first commit discards the others' uncommitted blocks, which must not fail them."""
    from envcore_azure import store as module

    monkeypatch.setitem(module.CLIENT_OPTIONS, "max_single_put_size", 1024 * 1024)  # blocks from 1 MiB up
    monkeypatch.setitem(module.CLIENT_OPTIONS, "max_block_size", 256 * 1024)
    container = azurite.new_container()
    stores = [_store(f"azure://{container}/conda_env") for _ in range(3)]
    for n in range(6):
        key, src = f"packages/pkg{n}.conda", tmp_path / f"pkg{n}.conda"
        src.write_bytes(bytes([n]) * 1000 + bytes(range(256)) * (16 * 1024))  # ~4 MiB: 17 blocks
        barrier = threading.Barrier(len(stores))

        def upload(store: Any, key: str = key, src: Path = src, barrier: threading.Barrier = barrier) -> Any:
            barrier.wait()  # all commit at about the same time
            return store.put_file(key, src)

        with ThreadPoolExecutor(len(stores)) as pool:
            infos = list(pool.map(upload, stores))
        assert {i.size for i in infos} == {src.stat().st_size}
        blob = azurite.client().get_blob_client(container, f"conda_env/{key}")
        assert blob.download_blob().readall() == src.read_bytes()


NO_ENDPOINT = (
    "(made from AZURE_STORAGE_ACCOUNT_NAME; no endpoint set: METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT)"
)
ACCOUNT_ADVICE = (
    "Check the account name in AZURE_STORAGE_ACCOUNT_NAME, the network and any proxy in between (HTTPS_PROXY); to "
    "use another endpoint (Azurite, another Azure cloud...), set METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT to "
    "its URL."
)


@pytest.fixture
def account_only(monkeypatch: pytest.MonkeyPatch, account_key: str) -> None:
    """No endpoint set: an account name (its endpoint is made from it) and its key."""
    from .conftest import CLEAR_ENV

    for name in (
        *CLEAR_ENV,
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "envcoretest")
    monkeypatch.setenv("AZURE_STORAGE_KEY", account_key)


def test_with_no_endpoint_set_an_unreachable_service_names_the_account_s_endpoint(
    account_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole path (azure-core's pipeline and its retries), without contacting Azure: requests go through a
    proxy on a closed port of 127.0.0.1, as through a proxy that is down."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed.getsockname()[1]}")
        store = _store("azure://container/conda_env")
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            store.stat("x")
    assert info.value.message == (
        f"Cannot reach the Azure Blob endpoint https://envcoretest.blob.core.windows.net {NO_ENDPOINT} for "
        f"azure://container/conda_env/x (after retries). {ACCOUNT_ADVICE}"
    )
    assert time.monotonic() - started < 45  # the retries' backoff (~22 s measured), not minutes


def test_with_no_endpoint_set_messages_name_the_account_s_endpoint_and_the_setting(
    account_only: None, account_key: str
) -> None:
    """Built from the exceptions azure-core raises: a silent endpoint, a missing container, a busy service."""
    from azure.core.exceptions import ServiceResponseTimeoutError

    store = _store("azure://container/conda_env")
    tried = f"the Azure Blob endpoint https://envcoretest.blob.core.windows.net {NO_ENDPOINT}"
    silent = store._error(ServiceResponseTimeoutError("Read timed out"), "x").message
    assert silent == (
        f"{tried[0].upper()}{tried[1:]} did not answer for azure://container/conda_env/x within 10 s, 4 times. "
        "Check the account name in AZURE_STORAGE_ACCOUNT_NAME, the network and any proxy in between; on a slow "
        "link raise METAFLOW_AZURE_READ_TIMEOUT."
    )
    missing = FileNotFoundError(2, "No such container")
    assert store._error(missing, "x").message.startswith(
        f"The container 'container' does not exist at {tried}. "
    )
    assert account_key not in silent + repr(store)
