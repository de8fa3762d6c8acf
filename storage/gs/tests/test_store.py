"""envcore-gs against a real GCS JSON API server (fake-gcs-server, on 127.0.0.1): the conformance kit
unmodified, the errors a user meets, large uploads, and the main job end to end through the ``envcore``
command with the store in a bucket."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envcore.config import Config
from envcore.errors import StorageError
from envcore.plugins import build_registry
from envcore.testing.channel import Universe
from envcore.testing.conformance import StorageConformance
from envcore.testing.mainjob import run_main_job
from envcore.types import Store

GCSServer = Any  # storage/gs/tests/conftest.py: the fake-gcs-server fixture

ENVCORE = str(Path(sys.executable).with_name("envcore"))


def _store(root: str) -> Any:
    from envcore_gs.store import GSStore

    return GSStore.from_config(root, Config.load())


class TestGSConformance(StorageConformance):
    @pytest.fixture
    def store(self, gcs_server: GCSServer, gcs_env: dict[str, str]) -> Store:
        return _store(f"gs://{gcs_server.new_bucket()}/conda_env")  # type: ignore[no-any-return]


def test_selected_by_metaflow_configuration(
    gcs_server: GCSServer, gcs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = gcs_server.new_bucket()
    monkeypatch.setenv("METAFLOW_DEFAULT_DATASTORE", "gs")
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_GS", f"gs://{bucket}/metaflow")
    store = build_registry(Config.load()).store()
    assert store.url == f"gs://{bucket}/metaflow/conda_env"
    store.put_bytes("x", b"1")
    assert gcs_server.names(bucket) == ["metaflow/conda_env/x"]


def test_the_plain_json_api_client_is_used(gcs_server: GCSServer, gcs_env: dict[str, str]) -> None:
    """gcsfs.GCSFileSystem probes buckets over gRPC (60 s against an emulator); the store never uses it."""
    import gcsfs.core  # type: ignore[import-untyped]

    assert os.environ.get("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT") is None
    store = _store(f"gs://{gcs_server.new_bucket()}/conda_env")
    started = time.monotonic()
    store.put_bytes("x", b"1")
    assert type(store._client()).__bases__ == (gcsfs.core.GCSFileSystem,) and time.monotonic() - started < 10


def test_missing_bucket_is_one_clear_paragraph(gcs_server: GCSServer, gcs_env: dict[str, str]) -> None:
    store = _store("gs://no-such-bucket-here/conda_env")
    with pytest.raises(StorageError) as info:
        store.put_bytes("x", b"1")
    assert (
        f"The bucket 'no-such-bucket-here' does not exist at the GCS endpoint {gcs_server.endpoint}"
        in info.value.message
    )
    assert "METAFLOW_CONDA_GSROOT" in info.value.message and "\n" not in info.value.message


def test_wrong_endpoint_is_one_clear_paragraph_and_fast(
    gcs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METAFLOW_GS_ENDPOINT_URL", "http://127.0.0.1:9")
    store = _store("gs://bucket/conda_env")
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"Cannot reach the GCS endpoint http://127\.0\.0\.1:9"):
        store.stat("x")
    assert time.monotonic() - started < 10  # not gcsfs's six retries with backoff


def test_a_bad_root_is_a_config_error() -> None:
    from envcore.errors import ConfigError

    with pytest.raises(ConfigError, match="not a gs://bucket/prefix URL"):
        _store("s3://bucket/conda_env")
    # GCS object names are literal: team//envs is not team/envs, and is most likely a typo (refused, as S3's)
    with pytest.raises(ConfigError) as info:
        _store("gs://bucket/team//conda_env")
    assert info.value.message == (
        "The GCS store root 'gs://bucket/team//conda_env' has an empty path segment ('//'). GCS keys are literal, "
        "so it is not the same place as gs://bucket/team/conda_env: write the root without it in "
        "METAFLOW_CONDA_GSROOT (or METAFLOW_DATASTORE_SYSROOT_GS, which it comes from when unset), and copy what it "
        "already holds to the new root (gcloud storage rsync --recursive) or resolve the environments again."
    )
    assert _store("gs://bucket//conda_env/").url == "gs://bucket/conda_env"  # slashes around it: as before


def test_a_long_credentials_error_says_it_is_cut() -> None:
    """gcsfs's error is cut to its start, marked as cut (not ended mid-phrase with unbalanced quotes), and
    its token masked."""
    from envcore_gs.store import GSStore

    store = GSStore("bkt", "conda_env", endpoint=None, token="ya29.SECRET123")
    detail = "GET /tokeninfo?access_token=ya29.SECRET123 (Caused by " + "x" * 300 + ")"
    message = store._credentials_error(ConnectionError(detail)).message
    assert "ya29.SECRET123" not in message
    assert "(ConnectionError: GET /tokeninfo?access_token=******** (Caused by xxx" in message
    shown = len(detail) - len("ya29.SECRET123") + 8  # the masked detail's length
    assert f"xxx...{'x' * 39}) (cut from {shown} characters)). Check METAFLOW_GS_TOKEN" in message


@pytest.mark.parametrize("concurrency", ["8", "1"])
def test_a_large_file_goes_up_in_parts(
    gcs_server: GCSServer,
    gcs_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    concurrency: str,
) -> None:
    """40 MiB: three 16 MiB parts composed by the service (concurrency 8), or one resumable upload of three
    16 MiB chunks (concurrency 1); no part is left behind or listed."""
    monkeypatch.setenv("METAFLOW_GS_TRANSFER_CONCURRENCY", concurrency)
    bucket = gcs_server.new_bucket()
    store = _store(f"gs://{bucket}/conda_env")
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * (40 * 4096))
    info = store.put_file("packages/big.conda", src)
    assert info.size == src.stat().st_size == 40 * 1024 * 1024
    assert gcs_server.names(bucket) == ["conda_env/packages/big.conda"]
    meta = gcs_server.object(bucket, "conda_env/packages/big.conda")
    assert meta["generation"] == info.version and int(meta["size"]) == info.size
    if concurrency == "8":  # GCS counts the components; fake-gcs-server does not report the count
        assert meta.get("componentCount", 3) == 3
    out = tmp_path / "out.bin"
    store.get_file("packages/big.conda", out)
    assert out.read_bytes() == src.read_bytes()
    assert [i.key for i in store.list("")] == ["packages/big.conda"]


def test_main_job_through_a_bucket(
    gcs_server: GCSServer, gcs_env: dict[str, str], universe: Universe, tmp_path: Path
) -> None:
    bucket = gcs_server.new_bucket()
    root = f"gs://{bucket}/conda_env"
    run_main_job(
        universe,
        tmp_path,
        {**gcs_env, "METAFLOW_DEFAULT_DATASTORE": "gs", "METAFLOW_CONDA_GSROOT": root},
        root,
        alias="team/gs:v1",
    )
    names = gcs_server.names(bucket)
    assert any(k.startswith("conda_env/envs/aliases/generic/team/gs/v1") for k in names)
    assert any(k.startswith("conda_env/packages/conda/") for k in names)


def test_a_broken_read_resumes_on_the_same_generation(gcs_server: GCSServer, gcs_env: dict[str, str]) -> None:
    """A dropped stream resumes at its offset; if the object was replaced meanwhile, the read fails clearly
    instead of mixing two versions."""
    store = _store(f"gs://{gcs_server.new_bucket()}/conda_env")
    payload = os.urandom(3_000_000)
    store.put_bytes("k", payload)
    with store.open("k") as fh:
        first = fh.read(1000)
        fh.raw._release()  # the connection drops
        assert first + fh.read() == payload
    with store.open("k") as fh:
        fh.read(1000)
        fh.raw._release()
        store.put_bytes("k", b"new")
        with pytest.raises(StorageError, match="was replaced or deleted while being read"):
            fh.read()


NO_ENDPOINT = "(no endpoint set: METAFLOW_GS_ENDPOINT_URL / STORAGE_EMULATOR_HOST)"
GOOGLE_ADVICE = (
    "Check the network and any proxy in between (HTTPS_PROXY); to use another GCS service (an emulator...), set "
    "METAFLOW_GS_ENDPOINT_URL to its URL."
)


def test_with_no_endpoint_set_messages_name_google_s_endpoint_and_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With neither setting, gcsfs talks to Google itself: messages named it "the GCS endpoint Google Cloud
    Storage" and advised the endpoint settings. Built here from the exceptions aiohttp raises, without
    contacting Google."""
    import asyncio

    import aiohttp
    from aiohttp.client_reqrep import ConnectionKey
    from envcore_gs.store import GSStore

    for name in ("METAFLOW_GS_ENDPOINT_URL", "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_UNIVERSE_DOMAIN"):
        monkeypatch.delenv(name, raising=False)
    store = _store("gs://bucket/conda_env")
    assert store.endpoint is None and "endpoint=None" in repr(store)
    tried = f"the Google Cloud Storage endpoint https://storage.googleapis.com {NO_ENDPOINT}"
    google = ConnectionKey("storage.googleapis.com", 443, True, True, None, None, None, None)
    lookup = aiohttp.ClientConnectorDNSError(
        google, socket.gaierror(-3, "Temporary failure in name resolution")
    )
    assert store._error(lookup, "x").message == (
        f"Cannot reach {tried} for gs://bucket/conda_env/x (the name could not be resolved, 3 attempts). "
        f"{GOOGLE_ADVICE}"
    )
    refused = aiohttp.ClientConnectorError(google, ConnectionRefusedError(111, "Connection refused"))
    assert "(connection refused, 3 attempts)" in store._error(refused, "x").message
    silent = store._error(asyncio.TimeoutError(), "x").message
    assert silent.startswith(
        f"The Google Cloud Storage endpoint https://storage.googleapis.com {NO_ENDPOINT} "
    )
    assert "accepted the connection but did not answer" in silent
    assert (
        "Check the network and any proxy in between; on a slow link raise METAFLOW_GS_READ_TIMEOUT" in silent
    )
    assert store._missing_bucket().message.startswith(f"The bucket 'bucket' does not exist at {tried}. ")
    busy = store._error(_http_error(503), "x").message
    assert busy.endswith("throttling: retry later.") and "METAFLOW_GS_ENDPOINT_URL" not in busy
    assert GSStore("b", "p", endpoint=None, token="anon")._location == "https://storage.googleapis.com"


def _http_error(code: int) -> Exception:
    from gcsfs.retry import HttpError  # type: ignore[import-untyped]

    return HttpError({"code": code, "message": "Service Unavailable"})  # type: ignore[no-any-return]


def test_with_no_endpoint_set_an_unreachable_service_is_named_as_gcsfs_tried_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole path (gcsfs's client, the bucket probe, its retries): the store is set up as with no endpoint
    set, while gcsfs itself is sent to a closed port on 127.0.0.1 (its emulator variable, read by gcsfs only)."""
    from envcore_gs.store import GSStore

    with socket_closed() as port:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        store = GSStore("bucket", "conda_env", endpoint=None, token="anon")
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            store.stat("x")
    assert info.value.message == (
        f"Cannot reach the Google Cloud Storage endpoint http://127.0.0.1:{port} {NO_ENDPOINT} for "
        f"gs://bucket/conda_env (connection refused, 3 attempts). {GOOGLE_ADVICE}"
    )
    assert time.monotonic() - started < 10


@contextlib.contextmanager
def socket_closed() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
