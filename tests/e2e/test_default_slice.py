"""The embedded default end to end, through the installed ``envcore`` command, against the real universe:
resolve -> store -> (another machine) create -> run python."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from envcore.resolve import local_arch
from envcore.testing.channel import Universe

from ..conftest import env_ids, snapshot

Run = Callable[..., subprocess.CompletedProcess[str]]


def test_mixed_environment_from_store_alone(run: Run, world: dict[str, Path], universe: Universe) -> None:
    out = run("resolve", "--conda", "fx-ffmpeg", "--conda", "fx-app", "--pypi", "fx-extras")
    (ref,) = env_ids(out.stdout)
    assert "Environment of type mixed" in out.stdout
    assert "fx-extras==" in out.stdout and "fx-ffmpeg==6.1.0" in out.stdout
    # machine B: nothing local, and the channel and index are gone: only the store remains
    shutil.rmtree(world["universe"])
    created = run("create", ref, "--name", "work", machine="b")
    prefix = world["b"] / "cache" / "envs" / "work"
    assert str(prefix) in created.stdout
    code = "import fx_app, fx_extras; print(fx_app.__version__, fx_extras.__version__)"
    result = subprocess.run(
        [prefix / "bin" / "python", "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["1.0.0", "0.4.0"]
    tool = subprocess.run([prefix / "bin" / "fx-ffmpeg"], capture_output=True, text=True)
    assert tool.returncode == 0, tool.stderr
    # no cache directory tag (rattler writes one): backup tools would skip the environment
    assert not (prefix / "CACHEDIR.TAG").exists()
    again = run("create", ref, "--name", "work", machine="b")
    assert "already exists and is complete" in again.stdout


def test_a_distribution_the_conda_side_installs_under_another_name_is_kept(
    run: Run, world: dict[str, Path]
) -> None:
    """conda's fx-yaml installs the Python distribution fx-pyyaml (as conda-forge's matplotlib-base installs
    matplotlib). Before, the PyPI side did not see it: fx-extras 0.4.0 brought fx-pyyaml 6.0.1 from PyPI, which
    replaced the conda files, and the environment imported another fx_yaml than its lock said."""
    out = run("resolve", "--json", "--conda", "fx-yaml==5.4.0", "--pypi", "fx-extras")
    (resolved,) = json.loads(out.stdout).values()
    env = resolved["env"]
    pypi = {p["envcore"]["name"]: p["envcore"]["version"] for p in env["packages"] if p["_type"] == "pypi"}
    assert pypi == {"fx-extras": "0.3.0", "fx-core": "2.0.0"}  # 0.4.0 needs fx-pyyaml>=6: conda has 5.4.0
    ref = f"{resolved['req_id']}:{resolved['full_id']}"
    run("create", ref, "--name", "renamed")
    python = world["a"] / "cache" / "envs" / "renamed" / "bin" / "python"
    done = subprocess.run(
        [python, "-c", "import fx_yaml; print(fx_yaml.__version__)"], capture_output=True, text=True
    )
    assert done.stdout.strip() == "5.4.0", done.stderr
    # a PyPI requirement on the renamed distribution is held to the conda version
    refused = run("resolve", "--conda", "fx-yaml==5.4.0", "--pypi", "fx-pyyaml>=6", check=False)
    message = " ".join(refused.stderr.split())
    assert refused.returncode != 0 and "conflicts with the conda package fx-yaml 5.4.0" in message, message


def test_pypi_only_environment_runs_on_conda_python(run: Run, world: dict[str, Path]) -> None:
    out = run("resolve", "--pypi", "fx-web==2.0.0")
    (ref,) = env_ids(out.stdout)
    assert "Environment of type pypi-only" in out.stdout
    assert "python==" in out.stdout.split("Conda Packages installed")[1]
    run("create", ref, "--name", "p", machine="b")
    python = world["b"] / "cache" / "envs" / "p" / "bin" / "python"
    done = subprocess.run(
        [python, "-c", "import fx_web, sys; print(fx_web.__version__, sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    version, prefix = done.stdout.split()
    assert version == "2.0.0"
    assert Path(prefix) == python.parent.parent
    # nothing left in the temporary directory: no scratch folder, no uv-HASH.lock per prefix uv installed into
    assert sorted(p.name for p in (world["b"] / "tmp").iterdir()) == []


def test_cross_arch_ids_differ_and_builds_match_the_arch(run: Run) -> None:
    ids = {}
    for arch in ("osx-arm64", "linux-aarch64"):
        out = run("resolve", "--conda", "fx-native", "--arch", arch, "--json")
        data = json.loads(out.stdout)[arch]
        ids[arch] = (data["req_id"], data["full_id"])
        subdirs = {p["envcore"]["subdir"] for p in data["env"]["packages"]}
        assert subdirs <= {arch, "noarch"}, subdirs
    assert ids["osx-arm64"] != ids["linux-aarch64"]
    assert len({i[0] for i in ids.values()}) == 2


def test_co_resolution_shares_a_full_id(run: Run) -> None:
    out = run("resolve", "--conda", "fx-app", "--arch", local_arch(), "--arch", "osx-arm64", "--json")
    data = json.loads(out.stdout)
    assert data[local_arch()]["full_id"] == data["osx-arm64"]["full_id"]
    assert sorted(data["osx-arm64"]["env"]["resolved_archs"]) == sorted([local_arch(), "osx-arm64"])


def test_cuda_build_only_when_cuda_is_requested(run: Run, tmp_path: Path) -> None:
    plain = json.loads(run("resolve", "--conda", "fx-native", "--json").stdout)[local_arch()]
    builds = {p["envcore"]["name"]: p["envcore"]["build"] for p in plain["env"]["packages"]}
    assert builds["fx-native"].endswith("cpu")
    req = tmp_path / "requirements.txt"
    req.write_text("--conda-pkg fx-native\n--sys-pkg __cuda==12.4\n")
    cuda = json.loads(run("resolve", "-r", str(req), "--json").stdout)[local_arch()]
    builds = {p["envcore"]["name"]: p["envcore"]["build"] for p in cuda["env"]["packages"]}
    assert "cuda" in builds["fx-native"]


def test_conda_packages_of_a_pypi_only_environment_must_not_use_python(run: Run, tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("--conda-pkg fx-ffmpeg\nfx-extras\n")  # a native tool beside PyPI packages: fine
    env = json.loads(run("resolve", "-r", str(req), "--json").stdout)[local_arch()]["env"]
    assert env["env_type"] == "pypi-only"
    req.write_text("--conda-pkg fx-core\nfx-extras\n")  # a python package from conda: the mixed mode's job
    refused = run("resolve", "-r", str(req), check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    message = " ".join(refused.stderr.split())
    assert "Cannot specify a non-python Conda dependency that uses python: fx-core" in message


def test_default_resolution_is_reused_without_a_resolver(run: Run, world: dict[str, Path]) -> None:
    first = env_ids(run("resolve", "--conda", "fx-app").stdout)
    shutil.rmtree(world["universe"])  # a resolver call would now fail
    again = run("resolve", "--conda", "fx-app")
    assert env_ids(again.stdout) == first
    assert "No environments to resolve, use --force to force re-resolution" in again.stderr
    forced = run("resolve", "--conda", "fx-app", "--force", check=False)
    assert forced.returncode != 0
    assert "Traceback" not in forced.stderr


def test_ids_are_stable_across_fresh_machines(run: Run) -> None:
    a = env_ids(run("resolve", "--conda", "fx-app", "--pypi", "fx-extras==0.4.0").stdout)
    b = env_ids(run("resolve", "--conda", "fx-app", "--pypi", "fx-extras==0.4.0", machine="b").stdout)
    assert a == b


def test_preferred_format_transmutes_into_the_store(run: Run, world: dict[str, Path]) -> None:
    out = run("resolve", "--conda", "fx-vintage", "--json", METAFLOW_CONDA_PREFERRED_FORMAT=".conda")
    data = json.loads(out.stdout)[local_arch()]
    vintage = next(p for p in data["env"]["packages"] if p["envcore"]["name"] == "fx-vintage")
    assert vintage["url_format"] == ".tar.bz2"
    assert set(vintage["hashes"]) == {".tar.bz2", ".conda"}
    stored = [p.name for p in world["store"].rglob("fx-vintage-*") if p.is_file()]
    assert any(n.endswith(".conda") for n in stored) and any(n.endswith(".tar.bz2") for n in stored)
    ref = f"{data['req_id']}:{data['full_id']}"
    shutil.rmtree(world["universe"])
    run("create", ref, "--name", "v", machine="b", METAFLOW_CONDA_PREFERRED_FORMAT=".conda")
    cached = list((world["b"] / "cache" / "pkgs").rglob("fx-vintage-*"))
    assert [p.name for p in cached if not p.name.endswith((".checked", ".verified"))] == [
        vintage["filename"] + ".conda"
    ]


def test_machines_transmute_a_package_into_the_same_bytes(run: Run, world: dict[str, Path]) -> None:
    """The .conda made of a .tar.bz2 held the time it was made: each machine cached its own copy (another md5,
    another key) and wrote the description of the same full id again."""
    first = run("resolve", "--conda", "fx-vintage", METAFLOW_CONDA_PREFERRED_FORMAT=".conda")
    time.sleep(2.1)  # zip times count in steps of 2 seconds
    second = run("resolve", "--conda", "fx-vintage", machine="b", METAFLOW_CONDA_PREFERRED_FORMAT=".conda")
    assert env_ids(first.stdout) == env_ids(second.stdout)
    (made,) = [p for p in world["store"].rglob("fx-vintage-*.conda") if p.is_file()]
    with zipfile.ZipFile(made) as archive:
        assert {entry.date_time for entry in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert "writing the description again" not in second.stderr, second.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--conda", "fx-core==9.9"], "cannot be resolved"),
        (["--conda", "fx-nosuch"], "fx-nosuch"),
        (["--conda", "fx-legacy", "--conda", "fx-modern"], "cannot be resolved"),
        (["--conda", "fx-web==1.9.0", "--pypi", "fx-web==2.1.0"], "conflicts with the conda package fx-web"),
        (["--pypi", "fx-nosuch"], "fx-nosuch"),
        (["--conda", "fx-app", "--arch", "sparc-64"], "Unknown architecture 'sparc-64'"),
    ],
)
def test_bad_input_is_one_paragraph_and_leaves_the_store_alone(
    run: Run, world: dict[str, Path], args: list[str], message: str
) -> None:
    run("resolve", "--conda", "fx-core")
    before = snapshot(world["store"])
    out = run("resolve", *args, check=False)
    assert out.returncode in (1, 2)
    assert message in " ".join(out.stderr.split())
    assert "Traceback" not in out.stderr
    assert snapshot(world["store"]) == before


def test_a_foreign_target_takes_the_wheels_its_glibc_loads(run: Run) -> None:
    """linux-aarch64 defaults to glibc 2.27: fx-glibc 2.0.0 (manylinux_2_27), not 3.0.0 (2_28 only); --sys-pkg
    raises it. A pin of 3.0.0 at 2.27 is refused with the way out."""

    def chosen(*args: str) -> list[str]:
        out = run("resolve", "--arch", "linux-aarch64", "--pypi", "fx-glibc", *args, "--dry-run", "--json")
        packages = json.loads(out.stdout)["linux-aarch64"]["env"]["packages"]
        return [p["filename"] for p in packages if p["filename"].startswith("fx_glibc")]

    assert [f.split("-")[1] for f in chosen()] == ["2.0.0"]
    assert [f.split("-")[1] for f in chosen("--sys-pkg", "__glibc==2.28")] == ["3.0.0"]
    refused = run("resolve", "--arch", "linux-aarch64", "--pypi", "fx-glibc==3.0.0", "--dry-run", check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    message = " ".join(refused.stderr.split())
    # the pin to change named first, the release it brings (fx-kernels, too new itself) as an aside
    wheels = "fx-glibc 3.0.0 (glibc 2.28) need a newer glibc (as do those of the dependency fx-kernels 1.0.0"
    assert wheels in message, message
    assert "--sys-pkg __glibc==2.28" in message, message
    # an environment resolved again for a newer glibc: the --sys-pkg replaces the one it was asked for
    for_aarch64 = ("resolve", "--arch", "linux-aarch64", "--pypi", "fx-glibc")
    run(*for_aarch64, "--sys-pkg", "__cuda==12.4", "--alias", "t/g:v1")
    again = run(
        "resolve", "--from", "t/g:v1", "--arch", "linux-aarch64", "--sys-pkg", "__cuda==12.8", "--json"
    )
    deps = json.loads(again.stdout)["linux-aarch64"]["env"]["deps"]
    assert "sys::__cuda==12.8=0" in deps and "sys::__cuda==12.4=0" not in deps, deps
    # the glibc it was asked for is kept too (resolved again, it loads where it loaded); the default is not
    # recorded as asked (taken anew), and a --sys-pkg replaces it
    run(*for_aarch64, "--sys-pkg", "__glibc==2.28", "--alias", "t/g:v2")
    for alias, given, glibc in (
        ("t/g:v2", (), "2.28"),
        ("t/g:v1", (), "2.27"),
        ("t/g:v2", ("__glibc==2.27",), "2.27"),
    ):
        sys_pkgs = [x for pkg in given for x in ("--sys-pkg", pkg)]
        again = run("resolve", "--from", alias, "--arch", "linux-aarch64", *sys_pkgs, "--dry-run", "--json")
        env = json.loads(again.stdout)["linux-aarch64"]["env"]
        assert f"sys::__glibc=={glibc}=0" in env["deps"], (alias, given, env["deps"])
        versions = [
            p["filename"].split("-")[1] for p in env["packages"] if p["filename"].startswith("fx_glibc")
        ]
        assert versions == ["3.0.0" if glibc == "2.28" else "2.0.0"], (alias, given, versions)


def test_a_yanked_pin_is_resolved_with_one_warning(run: Run) -> None:
    """fx-http 1.3.0 is yanked (PEP 592): pinned, it is taken and said once, as a line of envcore's own (uv
    warns so; envcore ran it quietly and said nothing); --quiet says nothing; a range takes 1.2.0 silently."""
    said = "envcore: warning: fx-http 1.3.0 is yanked on its index (broken import)"
    pinned = run("resolve", "--pypi", "fx-http==1.3.0", "--dry-run")
    assert pinned.stderr.count(said) == 1 and "EnvcoreWarning" not in pinned.stderr, pinned.stderr
    assert "fx-http==1.3.0" in pinned.stdout
    quiet = run("--quiet", "resolve", "--pypi", "fx-http==1.3.0", "--force", "--dry-run")
    assert "yanked" not in quiet.stderr, quiet.stderr
    ranged = run("resolve", "--pypi", "fx-http>=1.2", "--dry-run")
    assert "yanked" not in ranged.stderr and "fx-http==1.2.0" in ranged.stdout, ranged.stdout + ranged.stderr
