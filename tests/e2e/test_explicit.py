"""``show --format explicit``: the conda side of an environment as conda's explicit file (``@EXPLICIT`` and one
``URL#md5`` per package, in installation order), which conda, mamba and micromamba install without solving."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import unquote, urlsplit

from envcore.resolve import local_arch

from ..conftest import Run, env_ids


def test_the_conda_side_is_exported_as_an_explicit_file(run: Run) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-app", "--pypi", "fx-extras").stdout)
    done = run("show", ref, "--format", "explicit")
    lines = done.stdout.splitlines()
    assert lines[lines.index("@EXPLICIT") - 1].startswith("# platform: ")
    entries = lines[lines.index("@EXPLICIT") + 1 :]
    described = json.loads(run("show", ref, "--json").stdout)["env"]["packages"]
    conda = {p["envcore"]["name"] for p in described if p["_type"] == "conda"}
    assert len(entries) == len(conda) and Path(urlsplit(entries[0]).path).name.startswith("python-")
    for entry in entries:
        url, _, md5 = entry.partition("#")
        data = Path(unquote(urlsplit(url).path)).read_bytes()
        assert hashlib.md5(data).hexdigest() == md5, entry  # the file the line names, as conda checks it
    assert "1 PyPI package(s), which an explicit file cannot hold" in done.stderr


def test_a_pypi_only_environment_exports_its_python_and_one_env_is_shown(run: Run) -> None:
    """A PyPI-only environment runs on conda's python: that is its conda side."""
    (pypi_only,) = env_ids(run("resolve", "--pypi", "fx-extras").stdout)
    done = run("show", pypi_only, "--format", "explicit")
    (entry,) = done.stdout.splitlines()[done.stdout.splitlines().index("@EXPLICIT") + 1 :]
    assert Path(urlsplit(entry).path).name.startswith("python-")
    assert (
        "PyPI package(s), which an explicit file cannot hold: export them with --format pylock" in done.stderr
    )
    done = run("show", pypi_only, pypi_only, "--format", "explicit", check=False)
    assert done.returncode == 2 and "--format explicit shows one environment" in done.stderr


# --- resolve --explicit: an explicit file as the input of an environment ---------------------------------


def _conda_packages(run: Run, ref: str, **extra: str) -> dict[str, tuple[str, str, str]]:
    """name -> (version, build, sha256 of the file) of the conda packages of ``ref``."""
    env = json.loads(run("show", ref, "--json", **extra).stdout)["env"]
    return {
        p["envcore"]["name"]: (
            p["envcore"]["version"],
            p["envcore"]["build"],
            p["envcore"]["files"][p["url_format"]]["sha256"],
        )
        for p in env["packages"]
        if p["_type"] == "conda" and not p["envcore"]["name"].startswith("__")
    }


def _exported(run: Run, tmp_path: Path, *packages: str) -> tuple[str, Path]:
    """(ref, explicit file) of an environment of the conda ``packages``, resolved and exported on machine a."""
    (ref,) = env_ids(run("resolve", *(f"--conda={p}" for p in packages)).stdout)
    path = tmp_path / "env.txt"
    path.write_text(run("show", ref, "--format", "explicit").stdout)
    return ref, path


def test_an_exported_environment_is_brought_back_from_its_explicit_file(
    run: Run, world: dict[str, Path], tmp_path: Path
) -> None:
    """On another machine with another store: nothing solved, every package fetched and checked by the file's
    md5, described from its own metadata, created with the same files; a second resolve reuses it."""
    ref, path = _exported(run, tmp_path, "fx-app")
    exported = _conda_packages(run, ref)
    elsewhere = {"machine": "b", "METAFLOW_CONDA_LOCALROOT": str(tmp_path / "other-store")}
    done = run("resolve", "--explicit", str(path), "--json", **elsewhere)
    (entry,) = json.loads(done.stdout).values()
    assert entry["newly_resolved"] and "warning" not in done.stderr, done.stderr
    assert entry["env"]["envcore"]["resolver"].startswith("conda_explicit ")
    back = f"{entry['req_id']}:{entry['full_id']}"
    assert _conda_packages(run, back, **elsewhere) == exported
    described = {p["envcore"]["name"]: p for p in entry["env"]["packages"]}
    assert described["fx-app"]["envcore"]["depends"], described["fx-app"]  # read from the package itself
    assert entry["full_id"] == ref.split(":")[1]  # the same files: the same full id
    prefix = Path(run("--quiet", "create", back, "--name", "work", **elsewhere).stdout.strip()).parent.parent
    for record in (prefix / "conda-meta").glob("*.json"):
        meta = json.loads(record.read_text())
        assert (meta["version"], meta["build"], meta["sha256"]) == exported[meta["name"]], meta
    assert {json.loads(r.read_text())["name"] for r in (prefix / "conda-meta").glob("*.json")} == set(
        exported
    )
    again = run("resolve", "--explicit", str(path), "--json", **elsewhere)
    assert not json.loads(again.stdout)[local_arch()]["newly_resolved"]


def test_an_explicit_file_without_hashes_is_warned_of_and_its_sha256_recorded(
    run: Run, tmp_path: Path
) -> None:
    ref, path = _exported(run, tmp_path, "fx-core")
    lines = path.read_text().splitlines()
    start = lines.index("@EXPLICIT")
    path.write_text(
        "\n".join([*lines[: start + 1], *(line.split("#")[0] for line in lines[start + 1 :])]) + "\n"
    )
    done = run("resolve", "--explicit", str(path), "--json", machine="b")
    said = " ".join(done.stderr.split())
    assert f"{path} gives no hash for {len(lines) - start - 1} package(s), on lines {start + 2} (" in said, (
        said
    )
    assert "not verified against the list" in said, said
    (entry,) = json.loads(done.stdout).values()
    expected = _conda_packages(run, ref)
    assert _conda_packages(run, f"{entry['req_id']}:{entry['full_id']}", machine="b") == expected


def test_bad_explicit_files_are_one_paragraph_naming_the_line(
    run: Run, world: dict[str, Path], tmp_path: Path
) -> None:
    ref, path = _exported(run, tmp_path, "fx-core")
    text = path.read_text()
    lines = text.splitlines()
    number, first = next((n + 1, line) for n, line in enumerate(lines) if "/fx-core-" in line)
    url, _, md5 = first.partition("#")
    python_line = next(line for line in lines if "/python-" in line)

    def refused(content: str, *args: str, code: int = 2) -> str:
        bad = tmp_path / "bad.txt"
        bad.write_text(content)
        done = run("resolve", "--explicit", str(bad), *args, check=False, machine="b")
        assert done.returncode == code, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.startswith("envcore: "), done.stderr
        return " ".join(done.stderr.split())

    said = refused(text.replace("@EXPLICIT\n", ""))
    assert "is not a usable conda explicit file: it has no @EXPLICIT line" in said, said
    said = refused(text + "# pip fx-extras @ https://example.org/fx_extras-0.4.0-py3-none-any.whl\n")
    assert f"line {len(lines) + 1} is a PyPI package (pip fx-extras" in said, said
    assert "an explicit file holds conda packages only" in said, said
    gone = url.replace("/fx-core-", "/fx-gone-")
    said = refused(text.replace(first, gone), code=1)
    assert "Cannot fetch fx-gone-" in said and f"(line {number} of " in said, said
    said = refused(text.replace(md5, "0" * 32), code=1)
    assert f"(line {number} of " in said and f"has md5 {md5}, and the file gives {'0' * 32}" in said, said
    other = "osx-arm64" if "linux-64" in text else "linux-64"
    said = refused(text, "--arch", other)
    assert f"is for {ref and local_arch()}, and --arch {other} asks for another" in said, said
    mixed = text.replace(python_line, python_line.replace(f"/{local_arch()}/", f"/{other}/"))
    said = refused(mixed)
    assert "it mixes platforms (# platform: " in said and f"line {lines.index(python_line) + 1}" in said, said
    said = refused(text, "--conda", "fx-core")
    assert "--explicit cannot be combined with --conda" in said, said
    # nothing of the refused files was stored
    assert [p.name for p in (world["store"] / "envs" / local_arch()).iterdir()] == [ref.split(":")[0]]
