"""A store written by the original extension (metaflow-netflixext): its descriptions have no ``envcore``
block, conda files are known by md5 only. envcore reads them, verifies every file by the hash recorded, and
hydrates."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from ..conftest import env_ids

Run = Callable[..., subprocess.CompletedProcess[str]]


def as_the_original_wrote_it(description: Path) -> None:
    data = json.loads(description.read_text())
    data.pop("envcore")
    for pkg in data["packages"]:
        pkg.pop("envcore")  # hashes: md5 for conda, sha256 for PyPI; cache_info: the store keys
    description.write_text(json.dumps(data))


def test_environment_described_by_the_original_is_hydrated(run: Run, world: dict[str, Path]) -> None:
    out = run(
        "resolve",
        "--conda",
        "fx-app",
        "--conda",
        "fx-ffmpeg",
        "--pypi",
        "fx-extras",
        "--alias",
        "team/old:v1",
    )
    (ref,) = env_ids(out.stdout)
    (description,) = [p for p in world["store"].rglob("env") if p.parent.name == ref.split(":")[1]]
    as_the_original_wrote_it(description)

    shown = run("show", "team/old:v1", machine="b")
    assert "fx-app==1.0.0" in shown.stdout and "fx-extras==0.4.0" in shown.stdout
    run("create", "team/old:v1", "--name", "old", machine="b")
    python = world["b"] / "cache" / "envs" / "old" / "bin" / "python"
    subprocess.run([python, "-c", "import fx_app, fx_extras"], check=True)
    assert (world["b"] / "cache" / "envs" / "old" / "bin" / "fx-ffmpeg").exists()


def test_md5_of_the_original_is_checked(run: Run, world: dict[str, Path]) -> None:
    out = run("resolve", "--conda", "fx-app")
    (ref,) = env_ids(out.stdout)
    (description,) = [p for p in world["store"].rglob("env") if p.parent.name == ref.split(":")[1]]
    as_the_original_wrote_it(description)
    data = json.loads(description.read_text())
    app = next(p for p in data["packages"] if p["filename"].startswith("fx-app-"))
    fmt = app["url_format"]
    app["hashes"][fmt] = "0" * 32  # the store's file no longer matches what the description records
    description.write_text(json.dumps(data))
    done = run("create", ref, "--name", "bad", machine="b", check=False)
    assert done.returncode != 0
    message = " ".join(done.stderr.split())
    assert "has md5" in message and "0" * 32 in message and "Traceback" not in done.stderr


def _description_of(world: dict[str, Path], ref: str) -> Path:
    (description,) = [p for p in world["store"].rglob("env") if p.parent.name == ref.split(":")[1]]
    return description


def test_a_wheel_the_original_built_from_an_sdist_is_read_where_its_description_says(
    run: Run, world: dict[str, Path]
) -> None:
    """The original keeps a wheel it built as its sdist (``url``, ``url_format: .tar.gz``) with the wheel's
    name as ``filename``, both hashes, and the wheel's store key in ``cache_info``: envcore refused it
    ("Invalid sdist filename"), and computed another key than the one that store uses."""
    (ref,) = env_ids(run("resolve", "--pypi", "fx-src", "--alias", "team/src:v1").stdout)
    description = _description_of(world, ref)
    data = json.loads(description.read_text())
    (built,) = [p for p in data["packages"] if p["filename"].startswith("fx_src-")]
    wheel = built["envcore"]["files"][".whl"]
    as_the_original_wrote_it(description)
    data = json.loads(description.read_text())
    (pkg,) = [p for p in data["packages"] if p["filename"].startswith("fx_src-")]
    pkg["url_format"] = ".tar.gz"
    pkg["hashes"] = {".tar.gz": wheel["sdist_sha256"], ".whl": wheel["sha256"]}
    old_key = pkg["cache_info"][".whl"]["url"]
    new_key = old_key.replace("packages/pypi/_fake/", "packages/pypi/")  # another layout than envcore's
    (world["store"] / new_key).parent.mkdir(parents=True)
    (world["store"] / old_key).rename(world["store"] / new_key)
    pkg["cache_info"] = {".whl": {"_type": "pypi", "url": new_key}}
    description.write_text(json.dumps(data))

    assert "fx-src==0.9.0" in run("show", "team/src:v1", machine="b").stdout
    run("create", "team/src:v1", "--name", "src", machine="b")
    python = world["b"] / "cache" / "envs" / "src" / "bin" / "python"
    subprocess.run([python, "-c", "import fx_src"], check=True)


def test_the_originals_earlier_pip_naming_is_read_as_pypi(run: Run, world: dict[str, Path]) -> None:
    """Earlier versions of the original wrote ``_type: pip``, ``env_type: pip-only`` and ``pip::`` requirements,
    which it still reads: envcore refused the first two and dropped the requirement when extending (``--from``
    resolved python alone)."""
    (ref,) = env_ids(run("resolve", "--pypi", "fx-extras", "--alias", "team/legacy:v1").stdout)
    description = _description_of(world, ref)
    as_the_original_wrote_it(description)
    data = json.loads(description.read_text())
    data["env_type"] = "pip-only"
    data["deps"] = [d.replace("pypi::", "pip::") for d in data["deps"]]
    for pkg in data["packages"]:
        pkg["_type"] = "pip" if pkg["_type"] == "pypi" else pkg["_type"]
        for info in pkg.get("cache_info", {}).values():
            info["_type"] = pkg["_type"]
    description.write_text(json.dumps(data))

    shown = run("show", "team/legacy:v1", machine="b").stdout
    assert "fx-extras==0.4.0" in shown and "pypi::fx-extras" in shown and "pip::" not in shown, shown
    run("create", "team/legacy:v1", "--name", "legacy", machine="b")
    python = world["b"] / "cache" / "envs" / "legacy" / "bin" / "python"
    subprocess.run([python, "-c", "import fx_extras"], check=True)
    (again,) = env_ids(run("resolve", "--from", "team/legacy:v1", "--dry-run", machine="b").stdout)
    assert again.split(":")[0] == ref.split(":")[0]  # the same requirements: pypi::fx-extras kept


def test_packages_are_fetched_where_the_description_says_the_store_has_them(
    run: Run, world: dict[str, Path]
) -> None:
    """A store written with another METAFLOW_CONDA_PACKAGES_DIRNAME: its descriptions name where their package
    files are (``cache_info``), which a machine with the default setting did not read ("not in the store")."""
    (ref,) = env_ids(
        run(
            "resolve", "--conda", "fx-app", "--pypi", "fx-extras", METAFLOW_CONDA_PACKAGES_DIRNAME="pkgs-a"
        ).stdout
    )
    assert (world["store"] / "pkgs-a").is_dir() and not (world["store"] / "packages").exists()
    run("create", ref, "--name", "elsewhere", machine="b")
    python = world["b"] / "cache" / "envs" / "elsewhere" / "bin" / "python"
    subprocess.run([python, "-c", "import fx_app, fx_extras"], check=True)
    # the machine that resolved it, with the default setting, its package cache gone and the sources out of
    # reach: its own record of the environment says where the store keeps the files too
    shutil.rmtree(world["a"] / "cache" / "pkgs")
    shutil.rmtree(world["universe"])
    run("create", ref, "--name", "again")
    python = world["a"] / "cache" / "envs" / "again" / "bin" / "python"
    subprocess.run([python, "-c", "import fx_app, fx_extras"], check=True)
