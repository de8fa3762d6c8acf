"""Months later, when the sources are gone or changed: what the store holds still serves. ``CONDA_USE_REMOTE_LATEST``
passes over stored resolutions a newer envcore wrote (and says so); a resolve the channel or the index can no
longer answer names the stored resolution of the same requirements that ``:any:`` would reuse; an extension of
a named environment keeps its base's packages when the channel has since removed one of them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ..conftest import Run, env_ids, store_another
from .test_months_later import KINDS, _described, _exactly


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_remote_latest_skips_resolutions_a_newer_envcore_wrote_with_one_warning(
    run: Run, world: dict[str, Path]
) -> None:
    """``:any:`` failed outright on the first stored description it could not read."""
    (alice,) = env_ids(run("resolve", *KINDS["conda"], METAFLOW_USER="alice").stdout)
    bob = store_another(world["store"], alice, by="bob", on="2099-01-01 00:00:00", schema=2)
    carol = store_another(world["store"], alice, by="carol", on="2098-01-01 00:00:00")
    latest = {"METAFLOW_CONDA_USE_REMOTE_LATEST": ":any:", "METAFLOW_USER": "dave"}

    out = run("resolve", *KINDS["conda"], machine="b", **latest)
    assert env_ids(out.stdout) == [carol]  # the newest readable one; bob's is newer, unreadable here
    warnings = [line for line in out.stderr.splitlines() if line.startswith("envcore: warning:")]
    assert len(warnings) == 1, out.stderr
    assert "Traceback" not in out.stderr and "resolved by carol" in out.stderr, out.stderr
    text = _one_line(out.stderr)
    assert "skipped 1 stored resolution(s) written by envcore 9.1.0" in text, text
    assert bob in text and "Upgrade envcore and its plugins to 9.1.0 or later" in text, text
    assert "the newest one it can read is used" in text, text

    # one written by a newer envcore, and no other: resolved here, as when nothing is stored
    (ffmpeg,) = env_ids(run("resolve", "--conda", "fx-ffmpeg", METAFLOW_USER="alice").stdout)
    (newer_path,) = world["store"].glob(f"envs/*/{ffmpeg.replace(':', '/')}/env")
    body = json.loads(newer_path.read_text())
    body["envcore"].update(schema=2, version="9.1.0")
    newer_path.write_text(json.dumps(body))
    out = run("resolve", "--conda", "fx-ffmpeg", machine="b", **latest)
    assert "Resolving 1 environment ... done in " in out.stderr, out.stderr
    text = _one_line(out.stderr)
    assert "skipped 1 stored resolution(s) written by envcore 9.1.0" in text and ffmpeg in text, text
    assert "no other stored resolution fits, so the requirements are resolved instead" in text, text
    assert json.loads(newer_path.read_text()) == body  # (the same full id: its description is left as it is)

    # asked for by its ids, it is refused as before
    refused = run("show", bob, machine="b", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "was written by envcore 9.1.0 (description schema 2)" in _one_line(refused.stderr)


def test_a_resolve_the_gone_channel_cannot_answer_names_the_stored_resolution_to_reuse(
    run: Run, world: dict[str, Path]
) -> None:
    """The error said the channel could not be read, not that the store holds a resolution of the same
    requirements (by someone else, earlier) that ``CONDA_USE_REMOTE_LATEST=:any:`` reuses."""
    stored = {
        kind: env_ids(run("resolve", *KINDS[kind], METAFLOW_USER="alice").stdout)[0]
        for kind in ("mixed", "conda")
    }
    shutil.rmtree(world["universe"])

    for kind, setting in (("mixed", ":none:"), ("conda", ":username:")):  # (b's user has none stored)
        failed = run(
            "resolve",
            *KINDS[kind],
            machine="b",
            check=False,
            METAFLOW_USER="bob",
            METAFLOW_CONDA_USE_REMOTE_LATEST=setting,
        )
        text = _one_line(failed.stderr)
        assert failed.returncode != 0 and "Traceback" not in failed.stderr, failed.stderr
        assert "\n\n" not in failed.stderr.strip(), failed.stderr  # one paragraph
        assert (
            f"The store holds a resolution of these requirements: {stored[kind]}, resolved by alice on "
            in text
        ), text
        assert "METAFLOW_CONDA_USE_REMOTE_LATEST=:any: reuses it" in text, text

    # with it, the stored resolution is used and created on a fresh machine
    out = run("resolve", *KINDS["mixed"], machine="b", METAFLOW_CONDA_USE_REMOTE_LATEST=":any:")
    assert env_ids(out.stdout) == [stored["mixed"]]
    run("create", stored["mixed"], "--name", "again", machine="b")
    _exactly(world["b"] / "cache" / "envs" / "again", _described(world["store"], stored["mixed"]))

    # requirements nobody resolved before: the failure alone
    failed = run("resolve", "--conda", "fx-prefixed", machine="b", check=False)
    assert failed.returncode != 0 and "METAFLOW_CONDA_USE_REMOTE_LATEST" not in failed.stderr, failed.stderr


def _remove_from_channel(channel: Path, filename: str) -> None:
    """The conda package ``filename`` (NAME-VERSION-BUILD) removed from ``channel``: its files and its
    repodata entries, in every format and subdir."""
    for repodata in channel.glob("*/repodata.json"):
        data = json.loads(repodata.read_text())
        for key in ("packages", "packages.conda"):
            data[key] = {n: r for n, r in data[key].items() if not n.startswith(f"{filename}.")}
        repodata.write_text(json.dumps(data))
    removed = [p for p in channel.glob(f"*/{filename}.*") if p.name != "repodata.json"]
    assert removed
    for path in removed:
        path.unlink()


def _remove_from_index(universe: Path, project: str, version: str) -> None:
    """Every file of ``project`` ``version`` removed from the universe's wheels and its simple index page."""
    stem = f"{project.replace('-', '_')}-{version}"
    removed = list((universe / "wheels").glob(f"{stem}[-.]*"))
    assert removed
    for path in removed:
        path.unlink()
    page = universe / "simple" / project / "index.html"
    page.write_text("".join(line for line in page.read_text().splitlines(True) if stem not in line))


@pytest.mark.parametrize("kind", ["conda", "mixed"])
def test_extending_a_base_whose_package_left_the_channel_keeps_the_bases_packages(
    run: Run, world: dict[str, Path], kind: str
) -> None:
    """The base's packages were pinned by version and build: a package the channel (or the index) removed
    since could not be found, and the extension failed ("the new requirements need fx-web 2.1.0 -> 2.0.0")."""
    request = ("--conda", "fx-app") if kind == "conda" else KINDS["mixed"]
    (base,) = env_ids(run("resolve", *request, "--alias", "team/base:v1").stdout)
    base_files = _described(world["store"], base)
    assert base_files["fx-web"][0] == "2.1.0"
    _remove_from_channel(world["universe"] / "channel", "fx-web-2.1.0-py_0")
    if kind == "mixed":
        assert base_files["fx-extras"][0] == "0.4.0"
        _remove_from_index(world["universe"], "fx-extras", "0.4.0")

    (extended,) = env_ids(
        run("resolve", "--using", "team/base:v1", "--conda", "fx-prefixed", machine="b").stdout
    )
    extended_files = _described(world["store"], extended)
    assert set(extended_files) == {*base_files, "fx-prefixed"}
    assert {n: extended_files[n] for n in base_files} == base_files
    req, full = base.split(":")
    (base_path,) = world["store"].glob(f"envs/*/{req}/{full}/env")
    (ext_path,) = world["store"].glob(f"envs/*/{extended.replace(':', '/')}/env")
    kept = {p["filename"]: p for p in json.loads(base_path.read_text())["packages"]}
    for package in json.loads(ext_path.read_text())["packages"]:
        if package["filename"] in kept:  # version, build, files and hashes as the base has them
            assert package["envcore"] == kept[package["filename"]]["envcore"], package["filename"]
    run("create", extended, "--name", "ext", machine="b")
    _exactly(world["b"] / "cache" / "envs" / "ext", extended_files)
