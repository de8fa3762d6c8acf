"""Reproducible months later when the channel and the index were rebuilt in place: every package file replaced
by another build of the same name (same name, version and build string, other bytes and hashes), as a channel
that re-uploads a package does. A machine that resolved and installed today's builds still creates the old
environment with the old files: rattler's unpacked copies (kept by name, version and build) and uv's are not
taken for the old ones."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rattler.package import PathsJson

from envcore.fetch import digest_file
from envcore.testing.channel import PROJECTS, build_universe

from ..conftest import Run, env_ids
from .test_months_later import KINDS, _described, _exactly


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
