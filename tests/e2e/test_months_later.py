"""Reproducible months later: environments resolved and cached, then the world moves on (the channel and the
index gain newer releases, then are gone; a newer resolution takes ``:latest``; the package cache of a machine
is damaged; a newer envcore writes the store). ``create`` of the old environment on a fresh machine gives
exactly the old packages, byte for byte, from the store."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from dataclasses import replace
from pathlib import Path

from packaging.utils import canonicalize_name

from envcore.testing.channel import PROJECTS, build_universe

from ..conftest import Run, env_ids, snapshot

KINDS = {
    "conda": ("--conda", "fx-app", "--conda", "fx-ffmpeg"),
    "pypi": ("--pypi", "fx-extras"),
    "mixed": ("--conda", "fx-app", "--pypi", "fx-extras"),
}


def _described(store: Path, ref: str) -> dict[str, tuple[str, str]]:
    """{name: (version, sha256)} of every package the stored description of ``ref`` records."""
    req, full = ref.split(":")
    (path,) = store.glob(f"envs/*/{req}/{full}/env")
    packages = json.loads(path.read_text())["packages"]
    return {
        str(canonicalize_name(p["envcore"]["name"])): (
            p["envcore"]["version"],
            p["envcore"]["files"][p["url_format"]]["sha256"],
        )
        for p in packages
    }


def _installed(prefix: Path) -> dict[str, tuple[str, str]]:
    """{name: (version, sha256 or "")} of what the prefix holds: conda packages by their conda-meta record (with
    the sha256 of the file installed), PyPI ones by their dist-info (installed by uv, not by a conda package)."""
    found = {}
    for record in (prefix / "conda-meta").glob("*.json"):
        meta = json.loads(record.read_text())
        found[str(canonicalize_name(meta["name"]))] = (meta["version"], meta["sha256"])
    for info in prefix.glob("lib/python*/site-packages/*.dist-info"):
        if (info / "INSTALLER").is_file() and (info / "INSTALLER").read_text().strip() == "uv":
            headers = dict(line.split(": ", 1) for line in (info / "METADATA").read_text().splitlines()[:3])
            found[str(canonicalize_name(headers["Name"]))] = (headers["Version"], "")
    return found


def _exactly(prefix: Path, described: dict[str, tuple[str, str]]) -> None:
    installed = _installed(prefix)
    assert set(installed) == set(described), (installed, described)
    for name, (version, sha256) in installed.items():
        assert version == described[name][0] and sha256 in ("", described[name][1]), (
            name,
            installed,
            described,
        )


def _every_project_gains_a_release(root: Path) -> None:
    """The universe at ``root`` rebuilt in place (same URLs) with a newer release of every project."""
    newer = []
    for project in PROJECTS:
        last = project.releases[-1]
        major = int(last.version.split(".")[0]) + 10
        release = replace(last, version=f"{major}.0.0", yanked=None, requires_python=">=3.8")
        newer.append(replace(project, releases=(*project.releases, release)))
    build_universe(root, projects=newer)


def test_an_old_environment_is_created_exactly_after_its_sources_moved_on_and_went_away(
    run: Run, world: dict[str, Path]
) -> None:
    old = {}
    for kind, request in KINDS.items():
        out = run("resolve", *request, "--alias", f"team/{kind}:v1", "--alias", f"team/{kind}").stdout
        (old[kind],) = env_ids(out)
    _every_project_gains_a_release(world["universe"])
    new = {}
    for kind, request in KINDS.items():  # a colleague, later: a resolution of today's channel takes :latest
        out = run(
            "resolve", *request, "--force", "--alias", f"team/{kind}:v2", "--alias", f"team/{kind}"
        ).stdout
        (new[kind],) = env_ids(out)
        assert new[kind] != old[kind] and new[kind].split(":")[0] == old[kind].split(":")[0]
    shutil.rmtree(world["universe"])  # the channel and the index are gone
    envs = world["b"] / "cache" / "envs"
    for kind in KINDS:  # a fresh machine: its own home, an empty package cache
        run("create", f"team/{kind}:v1", "--name", f"{kind}-v1", machine="b")
        _exactly(envs / f"{kind}-v1", _described(world["store"], old[kind]))
        run("create", old[kind], "--name", f"{kind}-ids", machine="b")
        _exactly(envs / f"{kind}-ids", _described(world["store"], old[kind]))
        run("create", f"team/{kind}", "--name", f"{kind}-latest", machine="b")
        _exactly(envs / f"{kind}-latest", _described(world["store"], new[kind]))
    assert _installed(envs / "mixed-v1")["fx-app"][0] == "1.0.0"
    assert _installed(envs / "mixed-latest")["fx-app"][0] == "11.0.0"


def test_resolving_the_same_requirements_later_reuses_the_recorded_resolution_unless_forced(
    run: Run, world: dict[str, Path]
) -> None:
    """As the original: the resolution this machine knows for the requirements is used (said, with its id),
    and ``--force`` resolves today's channel."""
    (first,) = env_ids(run("resolve", *KINDS["mixed"]).stdout)
    _every_project_gains_a_release(world["universe"])
    again = run("resolve", *KINDS["mixed"])
    assert env_ids(again.stdout) == [first]
    assert "use --force to force re-resolution" in again.stderr
    (forced,) = env_ids(run("resolve", *KINDS["mixed"], "--force").stdout)
    assert forced != first and forced.split(":")[0] == first.split(":")[0]


def _edit_wheel(path: Path) -> None:
    """Rewrite the wheel at ``path`` as a well-formed wheel whose module says it was tampered with."""
    with zipfile.ZipFile(path) as wheel:
        members = [(info, wheel.read(info)) for info in wheel.infolist()]
    with zipfile.ZipFile(path, "w") as wheel:
        for info, data in members:
            wheel.writestr(
                info, data + b"\nTAMPERED = True\n" if info.filename.endswith("__init__.py") else data
            )


def test_a_package_file_changed_in_the_package_cache_is_hashed_set_aside_and_fetched_again(
    run: Run, world: dict[str, Path]
) -> None:
    """A wheel edited in the package cache (a wheel's size is not recorded) was installed: presence in the
    cache was taken as verified. A conda package damaged at the same size reached the installer."""
    (pypi,) = env_ids(run("resolve", *KINDS["pypi"]).stdout)
    (mixed,) = env_ids(run("resolve", *KINDS["mixed"]).stdout)
    run("create", pypi, "--name", "first", machine="b")
    pkgs = world["b"] / "cache" / "pkgs"
    (wheel,) = pkgs.glob("*/fx_extras-*.whl")
    _edit_wheel(wheel)
    (python,) = pkgs.glob("*/python-*.conda")
    data = bytearray(python.read_bytes())
    data[len(data) // 2] ^= 0xFF
    python.write_bytes(bytes(data))
    shutil.rmtree(world["universe"])  # fetched again from the store

    run("create", mixed, "--name", "second", machine="b")
    prefix = world["b"] / "cache" / "envs" / "second"
    _exactly(prefix, _described(world["store"], mixed))
    code = "import fx_extras; print(getattr(fx_extras, 'TAMPERED', False))"
    assert (
        subprocess.run([prefix / "bin" / "python", "-c", code], capture_output=True, text=True).stdout
        == "False\n"
    )
    quarantined = sorted(p.name.split("-", 1)[1] for p in (world["b"] / "cache" / "quarantine").iterdir())
    assert quarantined == sorted([python.name, wheel.name])


def test_a_description_written_by_a_newer_envcore_is_refused_naming_it_and_unknown_fields_are_ignored(
    run: Run, world: dict[str, Path]
) -> None:
    (newer,) = env_ids(run("resolve", *KINDS["conda"], "--alias", "team/newer:v1").stdout)
    (extended,) = env_ids(run("resolve", *KINDS["pypi"], "--alias", "team/extended:v1").stdout)
    for ref, edit in (
        (newer, {"schema": 2, "version": "9.1.0"}),
        (extended, {"digest": "blake3"}),  # a field this envcore does not know, at the schema it reads
    ):
        req, full = ref.split(":")
        (path,) = world["store"].glob(f"envs/*/{req}/{full}/env")
        data = json.loads(path.read_text())
        data["envcore"].update(edit)
        data["provenance"] = {"builder": "ci"}
        for package in data["packages"]:
            package["envcore"]["licence"] = "MIT"
        path.write_text(json.dumps(data))
    before = snapshot(world["store"])

    for command in (["show", "team/newer:v1"], ["create", "team/newer:v1", "--name", "n"]):
        refused = run(*command, machine="b", check=False)
        message = " ".join(refused.stderr.split())
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert "was written by envcore 9.1.0 (description schema 2); this envcore" in message, message
        assert "Upgrade envcore and its plugins to 9.1.0 or later" in message, message
    run("resolve", *KINDS["conda"], "--force", machine="b")  # resolving again leaves it as it is
    assert snapshot(world["store"]) == before

    run("create", "team/extended:v1", "--name", "e", machine="b")
    _exactly(world["b"] / "cache" / "envs" / "e", _described(world["store"], extended))


def test_a_pylock_export_recreates_the_environment_after_the_index_is_gone(
    run: Run, world: dict[str, Path], tmp_path: Path
) -> None:
    """``resolve --pylock`` reads no index: the configured one being gone refused it."""
    (ref,) = env_ids(run("resolve", *KINDS["pypi"]).stdout)
    lock = tmp_path / "pylock.toml"
    lock.write_text(run("show", ref, "--format", "pylock").stdout)
    shutil.rmtree(world["universe"] / "simple")
    shutil.rmtree(world["universe"] / "wheels")

    (again,) = env_ids(run("resolve", "--pylock", str(lock), machine="b").stdout)
    assert again.split(":")[1] == ref.split(":")[1]  # the same packages (the request names the lock)
    run("create", again, "--name", "p", machine="b")
    _exactly(world["b"] / "cache" / "envs" / "p", _described(world["store"], ref))
