"""The conda-CLI test executable itself (envcore.testing.condacli): each flavor's version line, JSON shapes,
package-cache awareness of FETCH, configuration commands, and a real (non dry-run) create."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from envcore.testing.channel import Universe
from envcore.testing.condacli import write_conda_cli


def _run(exe: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], **env}
    return subprocess.run([exe, *args], capture_output=True, text=True, env=environ, timeout=120)


@pytest.mark.parametrize(
    ("flavor", "version", "expected"),
    [
        ("conda", None, "conda 24.11.3"),
        ("mamba", "1.5.12", "mamba 1.5.12\nconda 24.9.2"),
        ("mamba", "2.0.5", "2.0.5"),
        ("micromamba", None, "2.0.5"),
    ],
)
def test_version_lines(tmp_path: Path, flavor: str, version: str | None, expected: str) -> None:
    assert _run(write_conda_cli(tmp_path, flavor, version), "--version").stdout.strip() == expected


@pytest.mark.parametrize(("flavor", "version"), [("conda", None), ("mamba", "1.5.12"), ("micromamba", None)])
def test_dry_run_shapes_and_package_cache(
    universe: Universe, tmp_path: Path, flavor: str, version: str | None
) -> None:
    exe = write_conda_cli(tmp_path / "bin", flavor, version)
    pkgs = tmp_path / "pkgs"
    args = ["create", "-y", "--dry-run", "--json", "-p", str(tmp_path / "env"), "--override-channels"]
    args += ["-c", universe.channel_url, "fx-http==1.1.0", "python"]
    done = _run(exe, *args, CONDA_PKGS_DIRS=str(pkgs), CONDA_SUBDIR="linux-64")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["success"] and data["dry_run"] and data["actions"]["PREFIX"] == str(tmp_path / "env")
    link, fetch = data["actions"]["LINK"], data["actions"]["FETCH"]
    assert len(link) == len(fetch) and all(r["sha256"] and r["md5"] and r["url"] for r in fetch)
    if flavor == "micromamba":
        assert all(r["url"] and r["sha256"] for r in link)
    else:  # conda's dist fields: no url, no hashes
        assert all("url" not in r and r["dist_name"] and r["base_url"] for r in link)
    core = next(r for r in fetch if r["name"] == "fx-core")
    (pkgs / core["fn"]).parent.mkdir(parents=True, exist_ok=True)
    (pkgs / core["fn"]).write_bytes(b"cached")  # now in the package cache: not fetched any more
    again = json.loads(_run(exe, *args, CONDA_PKGS_DIRS=str(pkgs), CONDA_SUBDIR="linux-64").stdout)
    assert {r["name"] for r in again["actions"]["FETCH"]} == {r["name"] for r in fetch} - {"fx-core"}


def test_info_and_config(tmp_path: Path) -> None:
    pkgs = str(tmp_path / "p1")
    conda = write_conda_cli(tmp_path, "conda")
    info = json.loads(_run(conda, "info", "--json", CONDA_PKGS_DIRS=pkgs, CONDA_OVERRIDE_GLIBC="2.17").stdout)
    assert info["pkgs_dirs"] == [pkgs] and ["__glibc", "2.17", "0"] in info["virtual_pkgs"]
    assert json.loads(
        _run(conda, "config", "--show", "pkgs_dirs", "--json", CONDA_PKGS_DIRS=pkgs).stdout
    ) == {"pkgs_dirs": [pkgs]}
    micromamba = write_conda_cli(tmp_path, "micromamba")
    shown = _run(micromamba, "config", "list", "pkgs_dirs", "--json", CONDA_PKGS_DIRS=pkgs)
    assert json.loads(shown.stdout) == {"pkgs_dirs": [pkgs]}
    info = json.loads(
        _run(micromamba, "info", "--json", CONDA_SUBDIR="osx-arm64", CONDA_OVERRIDE_OSX="13.0").stdout
    )
    assert info["platform"] == "osx-arm64" and "__osx=13.0=0" in info["virtual packages"]


def test_real_create_and_list(universe: Universe, tmp_path: Path) -> None:
    exe = write_conda_cli(tmp_path / "bin", "micromamba")
    prefix = tmp_path / "env"
    args = ["create", "-y", "--json", "-p", str(prefix), "-c", universe.channel_url, "fx-app", "python"]
    done = _run(exe, *args, CONDA_PKGS_DIRS=str(tmp_path / "pkgs"))
    assert done.returncode == 0 and json.loads(done.stdout)["dry_run"] is False, done.stderr
    ran = subprocess.run([prefix / "bin" / "python", "-c", "import fx_app"], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    listed = json.loads(_run(exe, "list", "-p", str(prefix), "--json").stdout)
    assert {"fx-app", "python"} <= {r["name"] for r in listed}


def test_usage_errors(tmp_path: Path) -> None:
    conda = write_conda_cli(tmp_path, "conda")
    assert _run(conda, "nonsense").returncode == 2
    assert _run(conda, "create", "--dry-run", "python").returncode == 2  # neither -n nor -p
    assert _run(conda, "create", "-r", "/x", "-p", "/y", "python").returncode == 2  # -r is micromamba's
