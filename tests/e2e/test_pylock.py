"""pylock.toml (PEP 751) end to end through the ``envcore`` command: locks written by uv (``uv pip compile`` and
``uv export``) become PyPI-only environments without a resolver, ``show --format pylock`` exports the PyPI part
of an environment that uv installs, the export read back gives the same packages, and bad input fails cleanly
with the store unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envcore.resolve import local_arch

from ..conftest import Run, env_ids, snapshot

UV = str(Path(sys.executable).with_name("uv"))
pytestmark = pytest.mark.skipif(
    local_arch() != "linux-64", reason="the universe's binary wheels are x86_64/arm64"
)


def uv(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_", "VIRTUAL_ENV"))}
    done = subprocess.run(
        [UV, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def compile_lock(world: dict[str, Path], folder: Path, *requirements: str) -> Path:
    """``uv pip compile --universal -o pylock.toml`` against the world's universe, offline."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "req.in").write_text("".join(r + "\n" for r in requirements))
    index = (world["universe"] / "simple").as_uri() + "/"
    uv("pip", "compile", "-q", "--offline", "--no-cache", "--no-config", "--universal", "--index-url", index,
       "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}", "req.in", "-o", "pylock.toml",
       cwd=folder)  # fmt: skip
    return folder / "pylock.toml"


def pypi_packages(run: Run, ref: str, *extra: str) -> dict[str, tuple[str, str]]:
    """name -> (version, sha256 of the file) of the PyPI packages of ``ref``."""
    env = json.loads(run("show", ref, "--json", *extra).stdout)["env"]
    return {
        p["envcore"]["name"]: (p["envcore"]["version"], p["hashes"][p["url_format"]])
        for p in env["packages"]
        if p["_type"] == "pypi"
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wheel_only_lock(world: dict[str, Path], path: Path, requires_python: str = ">=3.8") -> Path:
    """fx-native (manylinux x86_64 and macOS arm64 wheels, no sdist) and fx-core, written by another tool."""
    wheels = world["universe"] / "wheels"
    native = sorted(wheels.glob("fx_native-1.0.0-*.whl"))
    core = wheels / "fx_core-2.0.0-py3-none-any.whl"

    def entry(p: Path) -> str:
        return f'{{ url = "{p.as_uri()}", hashes = {{ sha256 = "{_sha256(p)}" }} }}'

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'lock-version = "1.0"\ncreated-by = "hand"\nrequires-python = "{requires_python}"\n\n'
        f'[[packages]]\nname = "fx-native"\nversion = "1.0.0"\nwheels = [{", ".join(entry(p) for p in native)}]\n\n'
        f'[[packages]]\nname = "fx-core"\nversion = "2.0.0"\nwheels = [{entry(core)}]\n'
    )
    return path


def test_uv_lock_resolves_exports_and_round_trips(run: Run, world: dict[str, Path], tmp_path: Path) -> None:
    lock = compile_lock(world, tmp_path / "in", "fx-app", "fx-native", "fx-extras==0.3.0", "fx-src")
    out = run("resolve", "--pylock", str(lock))
    assert "Environment of type pypi-only" in out.stdout
    assert "+ pylock_toml " in out.stdout  # "Resolved with rattler <v> + pylock_toml <v>"
    (ref,) = env_ids(out.stdout)
    locked = pypi_packages(run, ref)
    assert {n: v for n, (v, _) in locked.items()} == {
        "fx-app": "1.0.0",
        "fx-core": "2.0.0",
        "fx-extras": "0.3.0",
        "fx-http": "1.2.0",  # the lock also has 1.4.0, for python >= 3.99
        "fx-native": "1.0.0",
        "fx-pyyaml": "6.0.1",
        "fx-src": "0.9.0",  # sdist only: built on this machine
        "fx-web": "2.1.0",
    }

    exported = tmp_path / "out" / "pylock.toml"
    exported.parent.mkdir()
    exported.write_text(run("show", ref, "--format", "pylock").stdout)
    text = exported.read_text()
    assert 'created-by = "envcore"' in text and 'lock-version = "1.0"' in text
    assert "manylinux" in text and "macosx" not in text  # the wheels of this environment only
    assert 'name = "python"' not in text  # conda's python is not part of it
    target = tmp_path / "target"
    uv("pip", "install", "--offline", "--no-cache", "--no-config", "--python", sys.executable, "--target",
       str(target), "-r", str(exported), cwd=tmp_path)  # fmt: skip
    code = "import fx_app, fx_native, fx_src; print(fx_app.__version__, fx_src.__version__)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
    )
    assert done.stdout.split() == ["1.0.0", "0.9.0"], done.stderr

    again = run("resolve", "--pylock", str(exported))
    (ref2,) = env_ids(again.stdout)
    assert ref2.split(":")[0] != ref.split(":")[0]  # another lock file, another req id ...
    assert pypi_packages(run, ref2) == locked  # ... and the same packages
    assert ref2.split(":")[1] == ref.split(":")[1]

    shutil.rmtree(world["universe"])  # machine B has the store only
    run("create", ref, "--name", "lk", machine="b")
    python = world["b"] / "cache" / "envs" / "lk" / "bin" / "python"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["1.0.0", "0.9.0"], done.stderr
    # the export names fx-src's sdist by the hash kept when it was built: the index is gone
    assert run("show", ref, "--format", "pylock", machine="b").stdout == text


def test_uv_export_of_a_project(run: Run, world: dict[str, Path], tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    index = (world["universe"] / "simple").as_uri() + "/"
    (project / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0.1"\nrequires-python = ">=3.10"\n'
        'dependencies = ["fx-web==2.0.0", "fx-native; sys_platform == \'darwin\'"]\n'
        '[dependency-groups]\ndev = ["fx-pyyaml==5.4.0"]\n'
        f'[[tool.uv.index]]\nurl = "{index}"\ndefault = true\n'
    )
    uv("lock", "--offline", "--no-cache", "-q", cwd=project)
    uv("export", "--frozen", "--format", "pylock.toml", "-o", "pylock.toml", "-q", cwd=project)
    out = run("resolve", "--pylock", str(project / "pylock.toml"))
    (ref,) = env_ids(out.stdout)
    versions = {n: v for n, (v, _) in pypi_packages(run, ref).items()}
    assert versions == {"fx-web": "2.0.0", "fx-core": "2.0.0", "fx-pyyaml": "5.4.0"}  # no fx-native on linux


def test_req_id_follows_the_content_of_the_lock(run: Run, world: dict[str, Path], tmp_path: Path) -> None:
    first = compile_lock(world, tmp_path / "a", "fx-extras==0.3.0")
    second = compile_lock(world, tmp_path / "b", "fx-extras==0.4.0")
    ref_a, ref_b = (env_ids(run("resolve", "--pylock", str(p)).stdout)[0] for p in (first, second))
    assert ref_a.split(":")[0] != ref_b.split(":")[0]
    same = tmp_path / "c" / "pylock.toml"
    same.parent.mkdir()
    same.write_text("# the same lock, other comments\n" + first.read_text().replace("\n\n", "\n\n\n"))
    again = run("resolve", "--pylock", str(same))
    assert env_ids(again.stdout) == [ref_a]
    assert "No environments to resolve, use --force to force re-resolution" in again.stderr


def test_co_resolution_picks_each_archs_wheel(run: Run, world: dict[str, Path], tmp_path: Path) -> None:
    lock = _wheel_only_lock(world, tmp_path / "pylock.toml")
    out = run("resolve", "--pylock", str(lock), "--arch", "linux-64", "--arch", "osx-arm64")
    refs = env_ids(out.stdout)
    assert len(refs) == 2 and len(set(refs)) == 1  # one req id and one full id for both archs
    mac = run("show", refs[0], "--arch", "osx-arm64", "--format", "pylock").stdout
    assert "macosx_11_0_arm64" in mac and "manylinux" not in mac
    assert "sys_platform == 'darwin' and platform_machine == 'arm64'" in mac


def test_mixed_environment_exports_its_pypi_part(run: Run, tmp_path: Path) -> None:
    out = run("resolve", "--conda", "fx-ffmpeg", "--pypi", "fx-extras==0.3.0")
    (ref,) = env_ids(out.stdout)
    exported = tmp_path / "pylock.toml"
    exported.write_text(run("show", ref, "--format", "pylock").stdout)
    text = exported.read_text()
    assert 'name = "fx-extras"' in text and "fx-ffmpeg" not in text
    done = subprocess.run(
        [UV, "pip", "install", "--dry-run", "--offline", "--no-cache", "--no-config", "--python", sys.executable,
         "--target", str(tmp_path / "t"), "-r", str(exported)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "fx-extras==0.3.0" in done.stderr


def test_conda_only_environment_has_nothing_to_export(run: Run) -> None:
    (ref,) = env_ids(run("resolve", "--conda", "fx-ffmpeg").stdout)
    out = run("show", ref, "--format", "pylock", check=False)
    assert out.returncode == 2
    assert "conda-only: it has no PyPI packages to export" in " ".join(out.stderr.split())


@pytest.mark.parametrize(
    ("case", "args", "expected"),
    [
        ("malformed", (), "is not a usable pylock.toml: it is not valid TOML"),
        ("version", (), "its lock-version is '2.0', and envcore reads PEP 751 lock files of version 1"),
        ("foreign", ("--arch", "linux-aarch64"), "fx-native 1.0.0 in {lock} has no wheel for linux-aarch64"),
        ("python", (), "requires python >=3.99, and the environment for linux-64 has python"),
        ("mixing", ("--pypi", "fx-core"), "--pylock cannot be combined with --pypi"),
        ("setting", (), "METAFLOW_PYLOCK_TOML_DEPENDENCY_RESOLVER"),
    ],
)
def test_bad_input_fails_in_one_paragraph_and_changes_nothing(
    run: Run, world: dict[str, Path], tmp_path: Path, case: str, args: tuple[str, ...], expected: str
) -> None:
    lock = _wheel_only_lock(world, tmp_path / "pylock.toml", ">=3.99" if case == "python" else ">=3.8")
    if case == "malformed":
        lock.write_text(lock.read_text().replace('version = "1.0.0"', 'version = "1.0.0'))
    elif case == "version":
        lock.write_text(lock.read_text().replace('lock-version = "1.0"', 'lock-version = "2.0"'))
    extra = {"METAFLOW_PYLOCK_TOML_DEPENDENCY_RESOLVER": "nope"} if case == "setting" else {}
    run("resolve", "--pypi", "fx-core")  # the store holds something to keep
    before = snapshot(world["store"])
    out = run("resolve", "--pylock", str(lock), *args, check=False, **extra)
    assert out.returncode != 0
    message = " ".join(out.stderr.split())
    assert message.startswith("envcore: ") and "Traceback" not in out.stderr
    assert "\n\n" not in out.stderr.strip()
    assert expected.format(lock=lock) in message
    assert snapshot(world["store"]) == before


def test_an_export_names_the_python_distributions_of_the_conda_side(run: Run, tmp_path: Path) -> None:
    """fx-extras needs fx-core, which the conda side installs here: a pylock.toml cannot hold it, so the export
    says so (before, an environment made from the file alone silently lacked it)."""
    out = run("resolve", "--conda", "fx-core==2.0.0", "--pypi", "fx-extras")
    (ref,) = env_ids(out.stdout)
    shown = run("show", ref, "--format", "pylock")
    assert "fx-core" not in shown.stdout.split("lock-version")[1]  # not as a package of the file
    assert "this file does not hold: fx-core 2.0.0" in shown.stdout
    assert "envcore: warning: the conda side of " in shown.stderr  # as every warning begins
    assert "also installs Python distributions (fx-core 2.0.0) that a pylock.toml cannot hold" in " ".join(
        shown.stderr.split()
    )
    assert run("-q", "show", ref, "--format", "pylock").stderr == ""
    plain = run("resolve", "--pypi", "fx-extras")  # PyPI-only: fx-core is one of its PyPI packages
    (ref,) = env_ids(plain.stdout)
    shown = run("show", ref, "--format", "pylock")
    assert "conda side also installs" not in shown.stdout + shown.stderr


def test_an_export_names_a_distribution_the_conda_side_installs_under_another_name(run: Run) -> None:
    """conda's fx-yaml installs the distribution fx-pyyaml: the export names fx-pyyaml, which is what a user of
    the file alone would need (it named the conda package, fx-yaml, which PyPI does not have), where this machine
    knows what the package installs: the resolving machine, and one that has the package in its cache. Another
    machine names the conda package."""
    out = run("resolve", "--conda", "fx-yaml==6.0.1", "--pypi", "fx-web")
    (ref,) = env_ids(out.stdout)
    shown = run("show", ref, "--format", "pylock")
    assert "this file does not hold: fx-pyyaml 6.0.1 of conda's fx-yaml" in shown.stdout
    assert "also installs Python distributions (fx-pyyaml 6.0.1 of conda's fx-yaml) that" in " ".join(
        shown.stderr.split()
    )
    fresh = run("show", ref, "--format", "pylock", machine="b")  # nothing known of fx-yaml there
    assert "this file does not hold: fx-yaml 6.0.1\n" in fresh.stdout
    run("create", ref, "--name", "e", machine="b")  # the package cache now has fx-yaml's archive
    hydrated = run("show", ref, "--format", "pylock", machine="b")
    assert "this file does not hold: fx-pyyaml 6.0.1 of conda's fx-yaml" in hydrated.stdout
