"""Network faults in front of everything envcore talks to, from a fault-injecting proxy on 127.0.0.1
(``faultproxy``): the conda channel's repodata (read by the rattler resolver), the wheel index pages and
metadata (read by uv), the package files (downloaded by envcore), and the S3 store (moto's server, behind the
proxy through METAFLOW_S3_ENDPOINT_URL). Bursts of 5xx, connection resets, truncated bodies, slow answers
and lost answers are retried to a complete, hash-verified store; a persistent fault ends with one clear
paragraph within a bounded time, and leaves no partial object and no description."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from envcore.testing.servers import ServerDidNotStart, moto_server, serve_directory

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
    assert verified(world["store"]) >= 8
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


# --- the S3 store: moto's server behind the proxy -------------------------------------------------------------

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret-value-0001"}


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, once for this module."""
    try:
        with moto_server(tmp_path_factory.mktemp("moto") / "server.log") as port:
            yield f"http://127.0.0.1:{port}"
    except ServerDidNotStart as exc:
        pytest.fail(str(exc))


class S3World:
    """A fresh bucket, read directly (``objects``), and envcore's environment pointing at it through a proxy."""

    def __init__(self, endpoint: str, proxy: FaultProxy) -> None:
        import boto3  # type: ignore[import-untyped]

        self.proxy = proxy
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self.bucket = f"envcore-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=self.bucket)
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


@pytest.fixture
def s3(moto_endpoint: str) -> Iterator[S3World]:
    with fault_proxy(moto_endpoint) as faulty:
        yield S3World(moto_endpoint, faulty)


def s3_verified(objects: dict[str, bytes]) -> int:
    packages = {k: v for k, v in objects.items() if k.startswith("conda_env/packages/")}
    bad = [k for k, v in packages.items() if not hash_ok(k, v)]
    assert bad == [], bad
    return len(packages)


S3_SELECT: dict[str, Select] = {
    "5xx": lambda method, path: True,  # every request: HEAD, GET, list, PUT
    "reset": lambda method, path: True,
    "lost": lambda method, path: method == "PUT",  # the write happens, its answer is lost
    "truncate": lambda method, path: method == "GET" and "/packages/" in path,
}


@pytest.mark.parametrize(("mode", "failures"), [("5xx", 2), ("reset", 1), ("lost", 1), ("truncate", 1)])
def test_s3_faults_are_retried_to_a_verified_bucket(
    run: Run,
    world: dict[str, Path],
    s3: S3World,
    reliability_report: ReliabilityReport,
    mode: str,
    failures: int,
) -> None:
    s3.proxy.plan.arm(mode, failures, S3_SELECT[mode])
    out = run("resolve", "--conda", "fx-app", "--pypi", "fx-extras", **s3.env)
    (ref,) = env_ids(out.stdout)
    injected = s3.proxy.plan.faults
    objects = s3.objects()
    assert s3_verified(objects) >= 8
    assert [k for k in objects if k.endswith("/env")]  # the description, after its packages
    s3.proxy.plan.arm(mode, failures, S3_SELECT[mode])  # hydration on another machine meets the same faults
    run("create", ref, "--name", "s3", machine="b", **s3.env)
    injected += s3.proxy.plan.faults
    reliability_report.record("fault runs", 2)
    reliability_report.record("faults injected", injected)
    assert injected >= 8 or (mode == "truncate" and injected >= 1)
    python = world["b"] / "cache" / "envs" / "s3" / "bin" / "python"
    assert subprocess.run([python, "-c", "import fx_app, fx_extras"], check=False).returncode == 0


def test_a_persistent_s3_fault_is_a_clear_error_and_writes_no_description(
    run: Run, s3: S3World, reliability_report: ReliabilityReport
) -> None:
    s3.proxy.plan.arm("5xx", 10**6, lambda method, path: method == "PUT" and "fx-core-" in path)
    started = time.monotonic()
    out = run("resolve", "--conda", "fx-app", "--pypi", "fx-extras", check=False, **s3.env)
    took = time.monotonic() - started
    reliability_report.record("fault runs")
    reliability_report.record("faults injected", s3.proxy.plan.faults)
    reliability_report.note(f"persistent 5xx on one S3 upload: clear error after {took:.1f} s")
    one_paragraph(out, f"s3://{s3.bucket}/conda_env/packages/", "fx-core-", "kept answering 503", "attempts")
    assert took < PERSISTENT_BOUND
    objects = s3.objects()
    assert not [k for k in objects if "fx-core-" in k]  # no partial object
    assert not [k for k in objects if k.endswith("/env") or "/envs/" in k]  # no description, no alias
    s3_verified(objects)  # the packages that did go up are complete
