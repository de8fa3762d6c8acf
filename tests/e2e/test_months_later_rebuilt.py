"""Reproducible months later when the channel and the index were rebuilt in place: every package file replaced
by another build of the same name (same name, version and build string, other bytes and hashes), as a channel
that re-uploads a package does. A machine that resolved and installed today's builds still creates the old
environment with the old files: rattler's unpacked copies (kept by name, version and build) and uv's are not
taken for the old ones. And the months-later round trip on an S3 store (moto's server): the bucket alone
re-creates an old environment by alias, by ids and by ``:latest`` once the channel and index are gone."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from rattler.package import PathsJson

from envcore.fetch import digest_file
from envcore.testing.channel import PROJECTS, build_universe
from envcore.testing.servers import ServerDidNotStart, moto_server

from ..conftest import Run, env_ids
from .test_months_later import KINDS, _described, _every_project_gains_a_release, _exactly, _installed

_KEYS = {"aws_access_key_id": "testing-key-id", "aws_secret_access_key": "testing-secret-value-0001"}


def _docstrings(prefix: Path) -> dict[str, str]:
    """The first line of every fx module the prefix holds, by module."""
    return {
        init.parent.name: init.read_text().splitlines()[0]
        for init in prefix.glob("lib/python*/site-packages/fx_*/__init__.py")
    }


def test_the_old_builds_are_installed_after_the_channel_replaced_them_under_the_same_names(
    run: Run, world: dict[str, Path]
) -> None:
    (old,) = env_ids(run("resolve", *KINDS["mixed"], "--alias", "team/mixed:v1").stdout)
    build_universe(
        world["universe"], projects=[replace(p, summary=f"{p.summary}, REBUILT") for p in PROJECTS]
    )
    # machine b, later: today's builds are resolved and installed first (into its rattler and uv caches)
    (new,) = env_ids(run("resolve", *KINDS["mixed"], "--force", machine="b").stdout)
    assert new != old and new.split(":")[0] == old.split(":")[0]
    old_files, new_files = _described(world["store"], old), _described(world["store"], new)
    assert {n: v for n, (v, _) in old_files.items()} == {n: v for n, (v, _) in new_files.items()}
    assert all(old_files[n][1] != new_files[n][1] for n in old_files if n.startswith("fx-")), (old, new)
    envs = world["b"] / "cache" / "envs"
    run("create", new, "--name", "today", machine="b")

    run("create", "team/mixed:v1", "--name", "then", machine="b")
    _exactly(envs / "then", old_files)
    then, today = _docstrings(envs / "then"), _docstrings(envs / "today")
    assert set(then) == set(today) and len(then) >= 5
    assert not any("REBUILT" in line for line in then.values()), then
    assert all("REBUILT" in line for line in today.values()), today  # (today's prefix is left as it was)
    stored = [p for p in world["store"].glob("packages/conda/**/fx-*.conda") if p.is_file()]
    olds = [p for p in stored if digest_file(p, "sha256") in {sha for _, sha in old_files.values()}]
    assert sorted(p.name.rsplit("-", 2)[0] for p in olds) == [
        "fx-app",
        "fx-core",
        "fx-http",
        "fx-web",
        "fx-yaml",
    ]
    (site,) = (envs / "then").glob("lib/python*/site-packages")  # where noarch python's site-packages/ goes
    for archive in olds:  # every file of the old builds, as their archives hold it
        for path in PathsJson.from_package_archive(archive).paths:
            if path.path_type.hardlink and path.sha256 is not None:
                relative = Path(path.relative_path)
                file = (
                    site.parent / relative
                    if relative.parts[0] == "site-packages"
                    else envs / "then" / relative
                )
                assert digest_file(file, "sha256") == path.sha256.hex(), path


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, once for this module."""
    try:
        with moto_server(tmp_path_factory.mktemp("moto") / "server.log") as port:
            yield f"http://127.0.0.1:{port}"
    except ServerDidNotStart as exc:
        pytest.fail(str(exc))


def test_an_s3_store_recreates_the_old_environments_by_alias_ids_and_latest_after_the_sources_are_gone(
    run: Run, world: dict[str, Path], s3_endpoint: str
) -> None:
    import boto3

    bucket = f"envcore-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **_KEYS).create_bucket(
        Bucket=bucket
    )
    s3 = {
        "AWS_ACCESS_KEY_ID": _KEYS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": _KEYS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "METAFLOW_DEFAULT_DATASTORE": "s3",
        "METAFLOW_CONDA_S3ROOT": f"s3://{bucket}/envcore",
        "METAFLOW_S3_ENDPOINT_URL": s3_endpoint,
    }
    request = KINDS["mixed"]  # (conda and PyPI packages: test_months_later runs each kind on the local store)
    (old,) = env_ids(run("resolve", *request, "--alias", "team/env:v1", "--alias", "team/env", **s3).stdout)
    _every_project_gains_a_release(world["universe"])
    out = run("resolve", *request, "--force", "--alias", "team/env:v2", "--alias", "team/env", **s3).stdout
    (new,) = env_ids(out)
    assert new != old
    world["c"] = world["a"].with_name("machine-c")
    described = {  # as the bucket holds them: read back by a third machine
        ref: {
            str(canonicalize_name(p["envcore"]["name"])): (
                p["envcore"]["version"],
                p["envcore"]["files"][p["url_format"]]["sha256"],
            )
            for p in json.loads(run("show", ref, "--json", machine="c", **s3).stdout)["env"]["packages"]
        }
        for ref in (old, new)
    }
    shutil.rmtree(world["universe"])
    assert not world["store"].exists()  # (everything went to the bucket)
    envs = world["b"] / "cache" / "envs"
    for name, expected in (("team/env:v1", old), (old, old), ("team/env", new)):
        run("create", name, "--name", name.replace("/", "-").replace(":", "-"), machine="b", **s3)
        _exactly(envs / name.replace("/", "-").replace(":", "-"), described[expected])
    assert _installed(envs / "team-env-v1")["fx-app"][0] == "1.0.0"
    assert _installed(envs / "team-env")["fx-app"][0] == "11.0.0"


def test_extending_an_old_environment_after_the_channel_rebuilt_its_packages_keeps_the_bases_files(
    run: Run, world: dict[str, Path]
) -> None:
    """``--using`` pins the base's packages by version and build; the channel's rebuilds of the same names were
    taken, so the extension had every base package with other bytes than the base."""
    (base,) = env_ids(run("resolve", "--conda", "fx-app", "--alias", "team/base:v1").stdout)
    build_universe(
        world["universe"], projects=[replace(p, summary=f"{p.summary}, REBUILT") for p in PROJECTS]
    )
    (extended,) = env_ids(
        run("resolve", "--using", "team/base:v1", "--pypi", "fx-extras", machine="b").stdout
    )
    base_files, extended_files = _described(world["store"], base), _described(world["store"], extended)
    assert set(extended_files) == {*base_files, "fx-extras"}
    assert {n: extended_files[n] for n in base_files} == base_files
    run("create", extended, "--name", "ext", machine="b")
    _exactly(world["b"] / "cache" / "envs" / "ext", extended_files)
    assert not any(
        "REBUILT" in line
        for line in _docstrings(world["b"] / "cache" / "envs" / "ext").values()
        if not line.startswith('"""fx-extras')
    )
