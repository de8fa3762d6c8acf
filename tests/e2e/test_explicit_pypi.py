"""``resolve --explicit FILE -r requirements.txt``: an explicit file is the whole conda side, python included,
and the PyPI requirements are resolved against it (its python, its platform, its Python packages kept), as
``conda list --explicit`` plus ``pip freeze`` reproduce an environment."""

from __future__ import annotations

import json
from pathlib import Path

from envcore.resolve import local_arch

from ..conftest import Run
from .test_explicit import _conda_packages, _exported


def test_an_explicit_file_with_a_requirements_txt_is_a_mixed_environment(run: Run, tmp_path: Path) -> None:
    ref, path = _exported(run, tmp_path, "fx-core")
    exported = _conda_packages(run, ref)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("fx-extras==0.3.0\n")
    elsewhere = {"machine": "b", "METAFLOW_CONDA_LOCALROOT": str(tmp_path / "other-store")}
    done = run("resolve", "--explicit", str(path), "-r", str(requirements), "--json", **elsewhere)
    (entry,) = json.loads(done.stdout).values()
    assert entry["newly_resolved"] and "warning" not in done.stderr, done.stderr
    assert entry["env"]["envcore"]["resolver"].startswith("conda_explicit "), entry["env"]["envcore"]
    back = f"{entry['req_id']}:{entry['full_id']}"
    assert _conda_packages(run, back, **elsewhere) == exported  # the file's packages, nothing solved
    pypi = {
        p["envcore"]["name"]: p["envcore"]["version"]
        for p in entry["env"]["packages"]
        if p["_type"] == "pypi"
    }
    assert pypi == {"fx-extras": "0.3.0"}  # fx-core is the conda side's: kept, not installed again
    prefix = Path(run("--quiet", "create", back, "--name", "work", **elsewhere).stdout.strip()).parent.parent
    for record in (prefix / "conda-meta").glob("*.json"):
        meta = json.loads(record.read_text())
        assert (meta["version"], meta["build"], meta["sha256"]) == exported[meta["name"]], meta
    assert len(list((prefix / "conda-meta").glob("*.json"))) == len(exported)
    (site,) = prefix.glob("lib/python3*/site-packages")
    assert [d.name for d in site.glob("fx_extras-*.dist-info")] == ["fx_extras-0.3.0.dist-info"]
    # the same files: the same ids, reused without resolving; again with --force, resolved to the same
    again = run("resolve", "--explicit", str(path), "-r", str(requirements), "--json", **elsewhere)
    (same,) = json.loads(again.stdout).values()
    ids = (entry["req_id"], entry["full_id"])
    assert (same["req_id"], same["full_id"], same["newly_resolved"]) == (*ids, False)
    third = {"METAFLOW_CONDA_LOCALROOT": str(tmp_path / "third-store")}  # machine a, which exported it
    forced = run(
        "resolve", "--explicit", str(path), "--pypi", "fx-extras==0.3.0", "--force", "--json", **third
    )
    (fresh,) = json.loads(forced.stdout).values()
    assert fresh["newly_resolved"] and (fresh["req_id"], fresh["full_id"]) == ids


def test_the_pypi_side_of_an_explicit_file_fails_in_one_paragraph(
    run: Run, world: dict[str, Path], tmp_path: Path
) -> None:
    ref, path = _exported(run, tmp_path, "fx-core")

    def refused(*args: str, code: int) -> str:
        done = run("resolve", "--explicit", str(path), *args, check=False, machine="b")
        assert done.returncode == code, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.startswith("envcore: "), done.stderr
        return " ".join(done.stderr.split())

    said = refused("--pypi", "fx-nowhere", code=1)
    assert "The PyPI requirements cannot be resolved for " in said, said
    assert "fx-nowhere was not found" in said, said
    said = refused("--pypi", "fx-core<1", code=1)  # the conda side installs fx-core: pip must not replace it
    assert "conflicts with the conda package fx-core" in said, said
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("--conda-pkg fx-web\nfx-extras\n")
    said = refused("-r", str(requirements), code=2)
    assert f"--explicit cannot be combined with fx-web of the requirements file {requirements}" in said, said
    assert "another conda package would need a solve" in said and "-f" in said, said
    said = refused("--pypi", "fx-extras", "--pylock", str(tmp_path / "pylock.toml"), code=2)
    assert "--explicit cannot be combined with --pylock" in said, said
    # nothing of the refused resolves was stored
    assert not (world["store"] / "envs" / local_arch()).exists() or [
        p.name for p in (world["store"] / "envs" / local_arch()).iterdir()
    ] == [ref.split(":")[0]]
