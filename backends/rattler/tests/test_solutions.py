"""A resolver keeps its solutions as long as its gateway keeps the repodata they were solved from: the same
request is solved once, also by threads asking at the same time; a failure is not kept; ``refresh`` reads the
channels again."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from envcore_rattler.resolver import RattlerResolver

from envcore.config import Config
from envcore.errors import ResolutionError
from envcore.platforms import local_arch
from envcore.resolve import sys_packages
from envcore.testing.channel import Universe
from envcore.types import CONDA, SYS, LockedPackage, Requirement, ResolveRequest

PYTHON = Requirement(category=CONDA, name="python", spec=f"{sys.version_info[0]}.{sys.version_info[1]}.*")


@pytest.fixture
def channel(universe: Universe, tmp_path: Path) -> Path:
    """A channel of the universe's repodata alone (enough to solve), that a test may change."""
    source = Path(universe.channel_url.removeprefix("file://"))
    for subdir in ("noarch", local_arch()):
        (tmp_path / "channel" / subdir).mkdir(parents=True)
        shutil.copy(source / subdir / "repodata.json", tmp_path / "channel" / subdir / "repodata.json")
    return tmp_path / "channel"


def make_resolver(tmp_path: Path) -> tuple[RattlerResolver, list[int]]:
    """A resolver whose actual solves are counted."""
    config = Config.load(
        environ={
            "METAFLOW_ENVCORE_CACHE_DIR": str(tmp_path / "cache"),
            "HOME": os.environ.get("HOME", "/tmp"),
        }
    )
    resolver = RattlerResolver(config)
    solves: list[int] = []
    solve = resolver._solve

    def counted(*args: object, **kwargs: object) -> list[LockedPackage]:
        solves.append(1)
        return solve(*args, **kwargs)  # type: ignore[arg-type]

    resolver._solve = counted  # type: ignore[method-assign]
    return resolver, solves


def request(channel: Path, *packages: str, extra_sys: Sequence[Requirement] = ()) -> ResolveRequest:
    config = Config.load(environ={"HOME": os.environ.get("HOME", "/tmp")})
    wanted = tuple(Requirement(category=CONDA, name=name, spec="") for name in packages)
    return ResolveRequest(
        arch=local_arch(),
        requirements=(*wanted, PYTHON, *sys_packages(config, local_arch(), []), *extra_sys),
        sources={CONDA: (f"file://{channel}",)},
    )


def versions(packages: Sequence[LockedPackage]) -> dict[str, str]:
    return {p.name: p.version for p in packages}


def drop_newest(channel: Path, name: str) -> None:
    for path in channel.glob("*/repodata.json"):
        data = json.loads(path.read_text())
        for table in ("packages", "packages.conda"):
            records = data.get(table, {})
            newest = max((r["version"] for r in records.values() if r["name"] == name), default=None)
            data[table] = {f: r for f, r in records.items() if (r["name"], r["version"]) != (name, newest)}
        path.write_text(json.dumps(data))


def test_the_same_request_is_solved_once_and_refresh_reads_the_channel_again(
    channel: Path, tmp_path: Path
) -> None:
    resolver, solves = make_resolver(tmp_path)
    first = resolver.resolve(request(channel, "fx-core"))
    assert versions(first)["fx-core"] == "2.0.0"
    drop_newest(channel, "fx-core")
    again = resolver.resolve(request(channel, "fx-core"))
    assert again == first and len(solves) == 1  # as the gateway's repodata: read once in its life
    resolver.refresh()
    assert versions(resolver.resolve(request(channel, "fx-core")))["fx-core"] == "1.1.0"
    assert len(solves) == 2


def test_threads_asking_for_one_solution_at_once_share_one_solve(channel: Path, tmp_path: Path) -> None:
    resolver, solves = make_resolver(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: resolver.resolve(request(channel, "fx-app")), range(16)))
    assert len(solves) == 1
    assert all(r == results[0] for r in results) and "fx-app" in versions(results[0])


def test_different_inputs_are_different_solutions(channel: Path, tmp_path: Path) -> None:
    resolver, solves = make_resolver(tmp_path)
    resolver.resolve(request(channel, "fx-core"))
    resolver.resolve(request(channel, "fx-app"))
    old_glibc = Requirement(category=SYS, name="__glibc", spec="2.17")
    resolver.resolve(request(channel, "fx-core", extra_sys=[old_glibc]))
    assert len(solves) == 3


def test_a_failure_is_not_kept(channel: Path, tmp_path: Path) -> None:
    resolver, solves = make_resolver(tmp_path)
    for _ in range(2):
        with pytest.raises(ResolutionError, match="cannot be resolved"):
            resolver.resolve(request(channel, "fx-no-such-package"))
    assert len(solves) == 2


def test_packages_shared_by_environments_are_converted_once(channel: Path, tmp_path: Path) -> None:
    """A flow's environments share most packages: each is made into envcore's record once per resolver (by URL
    and sha256), and the environments hold that same record."""
    resolver, _ = make_resolver(tmp_path)
    web = {p.name: p for p in resolver.resolve(request(channel, "fx-web"))}
    app = {p.name: p for p in resolver.resolve(request(channel, "fx-app"))}
    shared = set(web) & set(app)
    assert {"python", "fx-core"} <= shared
    assert all(web[name] is app[name] for name in shared)
    fresh, _ = make_resolver(tmp_path / "other")  # another resolver converts its own
    again = {p.name: p for p in fresh.resolve(request(channel, "fx-web"))}
    assert again == web and all(again[name] is not web[name] for name in web)


def test_packages_come_in_dependency_order_with_or_without_sha256(channel: Path, tmp_path: Path) -> None:
    """A solution's packages are in rattler's topological order (each after the packages it depends on),
    matched to the sorted records by sha256, or by name when the channel gives no sha256 (older channels)."""
    resolver, _ = make_resolver(tmp_path)
    hashed = list(resolver.resolve(request(channel, "fx-web", "fx-app")))
    assert len(hashed) > 3 and all(p.source.sha256 for p in hashed)
    place = {p.name: i for i, p in enumerate(hashed)}
    for i, pkg in enumerate(hashed):
        assert all(place[d.split()[0]] < i for d in pkg.depends if d.split()[0] in place), pkg.name
    for path in channel.glob("*/repodata.json"):
        data = json.loads(path.read_text())
        for table in ("packages", "packages.conda"):
            for record in data.get(table, {}).values():
                record.pop("sha256", None)
        path.write_text(json.dumps(data))
    unhashed, _ = make_resolver(tmp_path / "other")
    by_name = list(unhashed.resolve(request(channel, "fx-web", "fx-app")))
    assert not any(p.source.sha256 for p in by_name)
    assert [(p.name, p.version, p.build) for p in by_name] == [(p.name, p.version, p.build) for p in hashed]
