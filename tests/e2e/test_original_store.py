"""A store written by the original extension (metaflow-netflixext): its descriptions have no ``envcore``
block, conda files are known by md5 only. envcore reads them, verifies every file by the hash recorded, and
hydrates."""

from __future__ import annotations

import json
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
