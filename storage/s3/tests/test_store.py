"""envcore-s3 against a real S3 server (moto's, on 127.0.0.1): the conformance kit unmodified, the errors a
user meets, and the main job end to end through the ``envcore`` command with the store in a bucket."""

from __future__ import annotations

import sys
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

S3Server = Any  # storage/s3/tests/conftest.py: the moto server fixture

ENVCORE = str(Path(sys.executable).with_name("envcore"))


def _store(root: str) -> Store:
    from envcore_s3.store import S3Store

    return S3Store.from_config(root, Config.load())


class TestS3Conformance(StorageConformance):
    @pytest.fixture
    def store(self, s3_server: S3Server, aws_env: dict[str, str]) -> Store:
        return _store(f"s3://{s3_server.new_bucket()}/conda_env")

    @pytest.fixture
    def secrets(self, s3_credentials: dict[str, str]) -> list[str]:
        return list(s3_credentials.values())


def test_selected_by_metaflow_configuration(
    s3_server: S3Server, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.new_bucket()
    monkeypatch.setenv("METAFLOW_DEFAULT_DATASTORE", "s3")
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_S3", f"s3://{bucket}/metaflow")
    store = build_registry(Config.load()).store()
    assert store.url == f"s3://{bucket}/metaflow/conda_env"
    store.put_bytes("x", b"1")
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["metaflow/conda_env/x"]


def test_missing_bucket_is_one_clear_paragraph(
    s3_server: S3Server, aws_env: dict[str, str], s3_credentials: dict[str, str]
) -> None:
    store = _store("s3://no-such-bucket-here/conda_env")
    with pytest.raises(StorageError) as info:
        store.put_bytes("x", b"1")
    assert "The bucket 'no-such-bucket-here' does not exist" in info.value.message
    assert s3_credentials["AWS_SECRET_ACCESS_KEY"] not in info.value.message


@pytest.mark.parametrize("setting", ["METAFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
def test_wrong_endpoint_is_one_clear_paragraph(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    """The message names the setting the endpoint came from (it named METAFLOW_S3_ENDPOINT_URL always)."""
    monkeypatch.delenv("METAFLOW_S3_ENDPOINT_URL")
    monkeypatch.setenv(setting, "http://127.0.0.1:9")
    store = _store("s3://bucket/conda_env")
    with pytest.raises(StorageError) as info:
        store.stat("x")
    assert info.value.message == (
        f"Cannot reach the S3 endpoint http://127.0.0.1:9 for s3://bucket/conda_env/x. Check {setting} and the "
        "network."
    )


@pytest.mark.parametrize("setting", ["METAFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
def test_an_endpoint_that_is_not_s3_is_said_to_be_so(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, setting: str
) -> None:
    """A web server that is no S3 service (fake-gcs-server and Azurite answer alike): the 404 to a HEAD read as
    a missing environment, the 501 to a PUT as a raw HTTP error; a listing of the bucket tells S3 from it."""
    from envcore.testing.robustness import envcore
    from envcore.testing.servers import serve_directory

    monkeypatch.delenv("METAFLOW_S3_ENDPOINT_URL")
    with serve_directory(tmp_path) as server:
        monkeypatch.setenv(setting, server.url)
        store = _store("s3://bucket/conda_env")
        for call, status in ((lambda: store.stat("x"), 404), (lambda: store.put_bytes("x", b"1"), 501)):
            with pytest.raises(StorageError) as info:
                call()
            assert info.value.message == (
                f"The endpoint {server.url} answered HTTP {status} for s3://bucket/conda_env/x but does not look "
                "like S3 (no S3 error code or x-amz header, in that answer nor in one to a listing of the bucket). "
                f"Check {setting}: it must be an S3-compatible service's URL, such as http://127.0.0.1:9000 for "
                "MinIO (Azure Blob Storage and Google Cloud Storage have datastores of their own: "
                "METAFLOW_DEFAULT_DATASTORE=azure or gs)."
            )
        env = {k: v for k, v in aws_env.items() if k != "METAFLOW_S3_ENDPOINT_URL"}
        env.update(
            {setting: server.url, "METAFLOW_DEFAULT_DATASTORE": "s3", "METAFLOW_CONDA_S3ROOT": "s3://b/e"}
        )
        done = envcore(tmp_path / "cli", "show", "team/proj/env:v1", **env)  # was: not found
        said = " ".join(done.stderr.split())
        assert done.returncode == 1 and said.startswith(
            f"envcore: The endpoint {server.url} answered HTTP 404"
        )
        assert "does not look like S3" in said and "Traceback" not in said


@pytest.mark.parametrize("endpoint", ["127.0.0.1:9000", "minio:9000", "ftp://h/x", "http://[zz]/"])
def test_an_endpoint_that_is_no_http_url_is_a_configuration_error(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    from envcore.errors import ConfigError

    monkeypatch.setenv("METAFLOW_S3_ENDPOINT_URL", endpoint)
    with pytest.raises(
        ConfigError, match=r"^METAFLOW_S3_ENDPOINT_URL is '.*', which is not an http\(s\) URL"
    ):
        _store("s3://bucket/conda_env")


@pytest.mark.parametrize("root", ["s3://bucket/team-a?x=1", "s3://bucket/team-b#frag", "s3:///no-bucket"])
def test_a_root_whose_parts_would_be_dropped_is_refused(aws_env: dict[str, str], root: str) -> None:
    from envcore.errors import ConfigError

    with pytest.raises(ConfigError, match="is not an s3://bucket/prefix URL"):
        _store(root)


@pytest.mark.parametrize("root", ["s3://{}/conda_env/", "s3://{}//conda_env", "s3://{}//conda_env//"])
def test_slashes_around_the_prefix_leave_the_keys_as_they_are(
    s3_server: S3Server, aws_env: dict[str, str], root: str
) -> None:
    bucket = s3_server.new_bucket()
    store = _store(root.format(bucket))
    store.put_bytes("x", b"1")
    assert store.url == f"s3://{bucket}/conda_env"
    assert [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]] == [
        "conda_env/x"
    ]


def test_a_sysroot_with_slashes_around_it_gives_the_usual_keys(
    s3_server: S3Server, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.new_bucket()
    monkeypatch.setenv("METAFLOW_DEFAULT_DATASTORE", "s3")
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_S3", f"s3://{bucket}//metaflow//")
    build_registry(Config.load()).store().put_bytes("x", b"1")
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["metaflow/conda_env/x"]


@pytest.mark.parametrize("root", ["s3://bucket/team//conda_env", "s3://bucket//team//conda_env/"])
def test_an_empty_segment_inside_the_prefix_is_refused(aws_env: dict[str, str], root: str) -> None:
    """S3 keys are literal: team//conda_env/x and team/conda_env/x are two objects. Dropping the empty segment
    would move the store away from what it already holds, silently; keeping it is most likely a typo."""
    from envcore.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        _store(root)
    assert info.value.message == (
        f"The S3 store root {root!r} has an empty path segment ('//'). S3 keys are literal, so it is not the same "
        "place as s3://bucket/team/conda_env: write the root without it in METAFLOW_CONDA_S3ROOT (or "
        "METAFLOW_DATASTORE_SYSROOT_S3, which it comes from when unset), and copy what it already holds to the "
        "new root (aws s3 sync) or resolve the environments again."
    )


def test_a_large_file_goes_up_in_parts(s3_server: S3Server, aws_env: dict[str, str], tmp_path: Path) -> None:
    store = _store(f"s3://{s3_server.new_bucket()}/conda_env")
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * (40 * 4096))  # 40 MiB: three 16 MiB parts
    info = store.put_file("packages/big.conda", src)
    assert info.size == src.stat().st_size and info.version.strip('"').endswith("-3")  # multipart ETag
    out = tmp_path / "out.bin"
    store.get_file("packages/big.conda", out)
    assert out.read_bytes() == src.read_bytes()


def test_main_job_through_a_bucket(
    s3_server: S3Server, aws_env: dict[str, str], universe: Universe, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket()
    root = f"s3://{bucket}/conda_env"
    run_main_job(
        universe,
        tmp_path,
        {**aws_env, "METAFLOW_DEFAULT_DATASTORE": "s3", "METAFLOW_CONDA_S3ROOT": root},
        root,
        alias="team/s3:v1",
    )
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket, MaxKeys=1000)["Contents"]]
    assert any(k.startswith("conda_env/envs/aliases/generic/team/s3/v1") for k in keys)
    assert any(k.startswith("conda_env/packages/conda/") for k in keys)


def test_with_no_endpoint_set_messages_name_the_aws_endpoint_tried(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With neither setting, boto3 talks to AWS itself: messages named it "the S3 endpoint AWS". They are built
    here from botocore's own exception objects, without contacting AWS."""
    import botocore.exceptions

    monkeypatch.delenv("METAFLOW_S3_ENDPOINT_URL")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    store: Any = _store("s3://bucket/conda_env")
    assert store.client.meta.endpoint_url == "https://s3.amazonaws.com"  # us-east-1 (aws_env)
    tried = (
        "the AWS S3 endpoint https://s3.amazonaws.com (no endpoint set: METAFLOW_S3_ENDPOINT_URL / "
        "AWS_ENDPOINT_URL_S3)"
    )
    url = "https://bucket.s3.amazonaws.com/conda_env/x"
    unreachable = store._error(botocore.exceptions.EndpointConnectionError(endpoint_url=url), "x")
    assert unreachable.message == (
        f"Cannot reach {tried} for s3://bucket/conda_env/x. Check the network and any proxy in between; to use "
        "another S3 service (MinIO...), set METAFLOW_S3_ENDPOINT_URL to its URL."
    )
    silent = store._error(botocore.exceptions.ConnectTimeoutError(endpoint_url=url), "x")
    assert silent.message.startswith("The AWS S3 endpoint https://s3.amazonaws.com (no endpoint set: ")
    assert "did not accept a connection for s3://bucket/conda_env/x within" in silent.message
    no_bucket = botocore.exceptions.ClientError(
        {"Error": {"Code": "NoSuchBucket"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "PutObject"
    )
    assert store._error(no_bucket, "x").message.startswith(f"The bucket 'bucket' does not exist at {tried}. ")
    assert "AWS for" not in unreachable.message + silent.message and "endpoint AWS" not in repr(store)


def test_a_package_deleted_from_the_bucket_is_put_back_by_create(
    s3_server: S3Server, aws_env: dict[str, str], universe: Universe, tmp_path: Path
) -> None:
    """The bucket keeps the description but lost a package file: a machine with an empty package cache hydrates
    it from its source (hash checked), puts it back in the bucket, and says so in one line."""
    from envcore.testing.mainjob import envcore_on

    bucket = s3_server.new_bucket()
    root = f"s3://{bucket}/conda_env"
    store_env = {**aws_env, "METAFLOW_DEFAULT_DATASTORE": "s3", "METAFLOW_CONDA_S3ROOT": root}
    store_env |= {"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    resolved = envcore_on(
        tmp_path, "a", universe, "resolve", "--conda", "fx-app", "--alias", "team/heal:v1", **store_env
    )
    assert resolved.returncode == 0, resolved.stderr
    client = s3_server.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, MaxKeys=1000)["Contents"]]
    (key,) = [k for k in keys if k.startswith("conda_env/packages/conda/") and "/fx-core-" in k]
    kept = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.delete_object(Bucket=bucket, Key=key)
    created = envcore_on(tmp_path, "b", universe, "create", "team/heal:v1", "--name", "w", **store_env)
    assert created.returncode == 0, created.stderr
    (line,) = [line for line in created.stderr.splitlines() if "is missing from the store" in line]
    assert f"(s3://{bucket}/{key}): fetched it from its source" in line and line.endswith(
        "put it back in the store."
    )
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == kept
    again = envcore_on(tmp_path, "c", universe, "create", "team/heal:v1", "--name", "w", **store_env)
    assert again.returncode == 0 and "missing from the store" not in again.stderr, again.stderr


def test_a_package_damaged_in_the_bucket_is_replaced_by_create_or_left_in_place(
    s3_server: S3Server, aws_env: dict[str, str], universe: Universe, tmp_path: Path
) -> None:
    """The bucket keeps the description but holds other bytes under a package's key: while the package's source
    cannot be read, ``create`` says so in one paragraph and leaves the object as it is; once it can, the object
    is replaced by the source's file (hash checked), said in one line."""
    import hashlib
    import shutil

    from envcore.testing.mainjob import envcore_on

    copy = tmp_path / "universe"  # a private copy, made unreachable below
    shutil.copytree(universe.root, copy, symlinks=True)
    bucket = s3_server.new_bucket()
    root = f"s3://{bucket}/conda_env"
    store_env = {**aws_env, "METAFLOW_DEFAULT_DATASTORE": "s3", "METAFLOW_CONDA_S3ROOT": root}
    store_env |= {"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    store_env |= {"METAFLOW_CONDA_CHANNELS": (copy / "channel").as_uri()}
    resolved = envcore_on(
        tmp_path, "a", universe, "resolve", "--conda", "fx-app", "--alias", "team/heal:v1", **store_env
    )
    assert resolved.returncode == 0, resolved.stderr
    client = s3_server.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, MaxKeys=1000)["Contents"]]
    (key,) = [k for k in keys if k.startswith("conda_env/packages/conda/") and "/fx-core-" in k]
    good = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    damaged = bytes(b ^ 0xFF for b in good)  # the same size, other bytes
    client.put_object(Bucket=bucket, Key=key, Body=damaged)
    hashes = (
        f"sha256 {hashlib.sha256(damaged).hexdigest()[:12]}... where the environment records "
        f"{hashlib.sha256(good).hexdigest()[:12]}..."
    )
    (copy / "channel").rename(copy / "channel-gone")
    failed = envcore_on(tmp_path, "b", universe, "create", "team/heal:v1", "--name", "w", **store_env)
    message = " ".join(failed.stderr.split())
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    # the object's URL, a long word the CLI cuts (keeping its start and its end), then both hashes
    assert f"(s3://{bucket}/conda_env/packages/conda/" in message and f"{key[-30:]})" in message, message
    assert f" is damaged ({hashes}), and its source cannot be read either" in message, message
    assert "The damaged object is left in place." in message and "delete the object" in message
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == damaged
    (copy / "channel-gone").rename(copy / "channel")
    created = envcore_on(tmp_path, "b", universe, "create", "team/heal:v1", "--name", "w", **store_env)
    assert created.returncode == 0, created.stderr
    (line,) = [line for line in created.stderr.splitlines() if " is damaged (" in line]
    assert (
        f"(s3://{bucket}/{key}) is damaged ({hashes}): fetched it from its source ({copy.as_uri()}/" in line
    )
    assert line.endswith("whose file has the recorded hash, and replaced the store's copy."), line
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == good
    again = envcore_on(tmp_path, "c", universe, "create", "team/heal:v1", "--name", "w", **store_env)
    assert again.returncode == 0 and "damaged" not in again.stderr, again.stderr
