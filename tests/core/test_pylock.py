"""envcore.pylock: reading PEP 751 lock files (any tool), choosing files per target without resolving, the
req-id inputs, the resolver selection, and the export that uv reads back."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from envcore import pylock
from envcore.config import Config
from envcore.errors import ConfigError, ResolutionError, SpecError, UsageError
from envcore.plugins import build_registry
from envcore.resolve import id_inputs
from envcore.testing.channel import Universe
from envcore.types import (
    CONDA,
    PYPI,
    EnvType,
    LockedPackage,
    PackageFile,
    PackageKind,
    Requirement,
    ResolvedEnvironment,
    ResolveRequest,
)

UV = str(Path(sys.executable).with_name("uv"))
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
PY_FULL = f"{PY}.{sys.version_info.micro}"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _entry(path: Path, *, hashed: bool = True) -> str:
    hashes = f'{{ sha256 = "{_sha(path)}" }}' if hashed else "{}"
    return f'{{ url = "{path.as_uri()}", hashes = {hashes} }}'


def _lock(*packages: str, header: str = "") -> str:
    return f'lock-version = "1.0"\ncreated-by = "pdm"\n{header}\n' + "\n".join(
        f"[[packages]]\n{p}\n" for p in packages
    )


@pytest.fixture
def wheels(universe: Universe) -> Path:
    return universe.wheels_dir


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config.load(environ={"METAFLOW_ENVCORE_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)})


@pytest.fixture
def native(wheels: Path) -> str:
    files = sorted(wheels.glob("fx_native-1.0.0-*.whl"))
    assert len(files) == 2  # manylinux x86_64 and macOS arm64
    return f'name = "fx-native"\nversion = "1.0.0"\nwheels = [{", ".join(_entry(p) for p in files)}]'


def _request(
    config: Config, lock: pylock.Pylock, arch: str = "linux-64", python: str = PY_FULL
) -> ResolveRequest:
    spec = pylock.to_spec(lock)
    pylock.stash(config, lock)
    return ResolveRequest(
        arch=arch,
        requirements=(*spec.requirements, Requirement(category=CONDA, name="python", spec=f"{PY}.*")),
        extras=spec.extras,
        python_version=python,
    )


def _resolve(config: Config, text: str, arch: str = "linux-64", python: str = PY_FULL) -> list[LockedPackage]:
    lock = pylock.parse(text, "pylock.toml")
    return list(pylock.PylockResolver(config).resolve(_request(config, lock, arch, python)))


# --- reading --------------------------------------------------------------------------------------------


def test_reads_what_uv_pip_compile_writes(universe: Universe, tmp_path: Path) -> None:
    (tmp_path / "req.in").write_text("fx-app\nfx-native\n")
    subprocess.run(
        [UV, "pip", "compile", "-q", "--offline", "--no-cache", "--no-config", "--universal", "--index-url",
         universe.simple_url, "--python-version", PY, "req.in", "-o", "pylock.toml"],
        cwd=tmp_path, check=True, capture_output=True, env={k: v for k, v in os.environ.items() if k[:3] != "UV_"},
    )  # fmt: skip
    lock = pylock.load(tmp_path / "pylock.toml")
    assert lock.created_by == "uv" and lock.requires_python == f">={PY}"
    by_name = {p.name: p for p in lock.packages}
    assert {"fx-app", "fx-core", "fx-http", "fx-native", "fx-pyyaml", "fx-web"} <= set(by_name)
    assert len(by_name["fx-native"].wheels) == 2 and by_name["fx-native"].sdist is not None
    assert all(w.sha256 and w.url.startswith("file://") for p in lock.packages for w in p.wheels)


def test_any_tool_and_relative_paths(wheels: Path, tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    wheel = shutil.copy(wheels / "fx_core-2.0.0-py3-none-any.whl", tmp_path / "dist")
    text = _lock(
        f'name = "FX_Core"\nwheels = [{{ path = "dist/{Path(wheel).name}", hashes = {{ sha256 = "{_sha(Path(wheel))}" }} }}]'
    )
    (tmp_path / "pylock.toml").write_text(text)
    lock = pylock.load(tmp_path / "pylock.toml")
    (pkg,) = lock.packages
    assert lock.created_by == "pdm"
    assert (pkg.name, pkg.version) == ("fx-core", "2.0.0")  # canonical name; version from the wheel's name
    assert pkg.wheels[0].url == Path(wheel).resolve().as_uri()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('lock-version = "1.0\n', "it is not valid TOML"),
        ('lock-version = "2.0"\ncreated-by = "x"\n', "its lock-version is '2.0'"),
        ('created-by = "x"\n', "its lock-version is None"),
        (_lock('version = "1.0"\nwheels = []'), "the name of packages[0] must be a non-empty string"),
        (
            _lock('name = "a"\nversion = "1.0"'),
            "package a has no wheels, sdist, archive, vcs or directory entry",
        ),
        (
            _lock('name = "a"\nmarker = "os_name =="\nsdist = { url = "https://x/a-1.0.tar.gz" }'),
            "is not a valid marker",
        ),
        (
            _lock('name = "a"\nsdist = { url = "https://x/a-1.0.tar.gz", hashes = { sha256 = "xyz" } }'),
            "is not 64 hex digits",
        ),
        (
            _lock('name = "a"\nwheels = [{ url = "a-1.0-py3-none-any.whl", hashes = {} }]'),
            "is not an absolute URL",
        ),
        (
            _lock('name = "a"\nversion = "one"\nsdist = { url = "https://x/a.tar.gz" }'),
            "is not a PEP 440 version",
        ),
        ('lock-version = "1.0"\ncreated-by = "x"\n', "it lists no packages"),
        (
            _lock('name = "a"\nwheels = [{ url = "https://u:hush@x/a-1.0-py3-none-any.whl", hashes = {} }]'),
            "(https://x/a-1.0-py3-none-any.whl) carries credentials",
        ),
        (
            _lock(
                'name = "a"\nwheels = [{ url = "https://x/a-1.0-py3-none-any.whl?token=hush", hashes = {} }]'
            ),
            "carries credentials",
        ),
    ],
)
def test_malformed_locks_are_one_paragraph_spec_errors(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as err:
        pylock.parse(text, "pylock.toml")
    assert "hush" not in err.value.message
    assert expected in err.value.message and err.value.message.startswith(
        "pylock.toml is not a usable pylock.toml"
    )
    assert "\n" not in err.value.message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="Cannot read the lock file"):
        pylock.load(tmp_path / "pylock.toml")


def test_a_lock_is_read_as_requirement_files_are(native: str, tmp_path: Path) -> None:
    """UTF-16 with its byte order mark (PowerShell's ``>``) is read as such, and a file in another encoding is
    named as one. Before, both said "Cannot read the lock file ...: 'utf-8' codec can't decode byte 0xff in
    position 0: invalid start byte. Check the path."."""
    path = tmp_path / "pylock.toml"
    text = _lock(native)
    path.write_text(text, encoding="utf-16")
    assert pylock.load(path).digest == pylock.parse(text).digest
    path.write_bytes(f"# r\xe9sum\xe9\n{text}".encode("latin-1"))
    with pytest.raises(SpecError) as err:
        pylock.load(path)
    assert err.value.message == (
        f"the lock file {path} is not UTF-8 text (byte 0xe9 on line 1). Save it with the UTF-8 encoding, or "
        "check that it is the file you meant."
    )


def test_digest_follows_content_not_layout(native: str, wheels: Path) -> None:
    text = _lock(native)
    same = "# a comment\n\n" + text.replace("\n", "\n\n")
    other = _lock(native.replace("fx-native", "fx-native2"))
    assert pylock.parse(text).digest == pylock.parse(same, "elsewhere/pylock.toml").digest
    assert pylock.parse(text).digest != pylock.parse(other).digest


def test_spec_and_req_id_inputs(config: Config, native: str, wheels: Path) -> None:
    core = f'name = "fx-core"\nversion = "2.0.0"\nmarker = "sys_platform == \'linux\'"\nwheels = [{_entry(wheels / "fx_core-2.0.0-py3-none-any.whl")}]'
    lock = pylock.parse(_lock(native, core))
    request = _request(config, lock)
    deps, _, extras = id_inputs(request)
    assert "pypi::fx-native==1.0.0" in deps
    assert 'pypi::fx-core==2.0.0;sys_platform == "linux"' in deps
    assert extras == [f"pypi::--pylock=sha256:{lock.digest}"]
    assert request.env_type is EnvType.PYPI_ONLY
    assert pylock.is_pylock(request) and not pylock.is_pylock(pylock.without_flag(request))
    assert (config.cache_dir() / "pylock" / f"{lock.digest}.json").is_file()


# --- choosing files -------------------------------------------------------------------------------------


def test_best_wheel_per_arch(config: Config, native: str) -> None:
    linux = _resolve(config, _lock(native), "linux-64")
    mac = _resolve(config, _lock(native), "osx-arm64")
    assert [p.filename.split("-")[-1] for p in linux] == ["manylinux_2_17_x86_64.manylinux2014_x86_64"]
    assert [p.filename.split("-")[-1] for p in mac] == ["macosx_11_0_arm64"]
    assert linux[0].source.url_format == ".whl" and len(linux[0].source.sha256) == 64


def test_an_osx_target_takes_wheels_for_macos_12(config: Config, wheels: Path, tmp_path: Path) -> None:
    """A lock lists the wheels of every platform: an osx target takes the newest one for macOS 12, as the uv and
    pip resolvers (and the original) resolve osx targets, never one that needs a newer macOS (it took
    macosx_14_0)."""
    source = next(wheels.glob("fx_native-1.0.0-*-macosx_11_0_arm64.whl"))
    copies = [source]
    for macos in ("12_0", "13_0", "14_0"):
        copies.append(tmp_path / source.name.replace("11_0", macos))
        shutil.copy(source, copies[-1])
    entry = f'name = "fx-native"\nversion = "1.0.0"\nwheels = [{", ".join(_entry(p) for p in copies)}]'
    mac = _resolve(config, _lock(entry), "osx-arm64")
    assert [p.filename.split("-")[-1] for p in mac] == ["macosx_12_0_arm64"]


def test_no_usable_wheel_for_a_foreign_arch(config: Config, native: str) -> None:
    with pytest.raises(ResolutionError) as err:
        _resolve(config, _lock(native), "linux-aarch64")
    assert "fx-native 1.0.0 in pylock.toml has no wheel for linux-aarch64 with python" in err.value.message
    assert "and no sdist" in err.value.message


def test_sdist_is_emitted_for_the_core_to_build(config: Config, wheels: Path) -> None:
    sdist = wheels / "fx_src-0.9.0.tar.gz"
    (pkg,) = _resolve(config, _lock(f'name = "fx-src"\nversion = "0.9.0"\nsdist = {_entry(sdist)}'))
    assert (pkg.filename, pkg.source.url_format, pkg.source.sha256) == (
        "fx_src-0.9.0",
        ".tar.gz",
        _sha(sdist),
    )


def test_hashless_wheel_is_hashed(config: Config, wheels: Path) -> None:
    wheel = wheels / "fx_core-2.0.0-py3-none-any.whl"
    (pkg,) = _resolve(config, _lock(f'name = "fx-core"\nwheels = [{_entry(wheel, hashed=False)}]'))
    assert (pkg.source.sha256, pkg.source.size) == (_sha(wheel), wheel.stat().st_size)


def test_markers_groups_and_python(config: Config, wheels: Path) -> None:
    def pkg(name: str, version: str, marker: str) -> str:
        wheel = wheels / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        return f'name = "{name}"\nversion = "{version}"\nmarker = "{marker}"\nwheels = [{_entry(wheel)}]'

    text = _lock(
        pkg("fx-http", "1.2.0", "python_full_version < '3.99'"),
        pkg("fx-http", "1.4.0", "python_full_version >= '3.99'"),
        pkg("fx-core", "2.0.0", "sys_platform == 'linux'"),
        pkg("fx-web", "2.0.0", "sys_platform == 'darwin'"),
        pkg("fx-pyyaml", "6.0.1", "'dev' in dependency_groups"),
        pkg("fx-extras", "0.3.0", "'docs' in dependency_groups or 'x' in extras"),
        header='default-groups = ["dev"]',
    )
    assert {(p.name, p.version) for p in _resolve(config, text)} == {
        ("fx-http", "1.2.0"),
        ("fx-core", "2.0.0"),
        ("fx-pyyaml", "6.0.1"),
    }
    assert {p.name for p in _resolve(config, text, "osx-arm64")} == {"fx-http", "fx-web", "fx-pyyaml"}


def test_python_must_satisfy_requires_python(config: Config, native: str) -> None:
    with pytest.raises(ResolutionError) as err:
        _resolve(config, _lock(native, header='requires-python = ">=3.99"'))
    assert (
        f"requires python >=3.99, and the environment for linux-64 has python {PY_FULL}" in err.value.message
    )
    assert "--python" in err.value.message
    per_package = native.replace('version = "1.0.0"', 'version = "1.0.0"\nrequires-python = "<3"')
    with pytest.raises(ResolutionError, match=r"fx-native 1\.0\.0 in pylock\.toml requires python <3"):
        _resolve(config, _lock(per_package))


def test_environments_of_the_lock(config: Config, native: str) -> None:
    text = _lock(native, header="environments = [\"sys_platform == 'darwin'\"]")
    assert len(_resolve(config, text, "osx-arm64")) == 1
    with pytest.raises(ResolutionError, match="is only for the environments"):
        _resolve(config, text, "linux-64")


def test_vcs_and_directory_only_fail_when_selected(config: Config, native: str) -> None:
    vcs = 'name = "proj"\nmarker = "sys_platform == \'win32\'"\nvcs = { type = "git", url = "https://x/p.git", commit-id = "abc" }'
    assert len(_resolve(config, _lock(native, vcs))) == 1
    directory = 'name = "demo"\ndirectory = { path = ".", editable = true }'
    with pytest.raises(
        ResolutionError, match=r"demo in pylock.toml is a local directory .*--no-emit-project"
    ):
        _resolve(config, _lock(native, directory))


def test_overlapping_markers(config: Config, wheels: Path) -> None:
    a, b = (wheels / f"fx_core-{v}-py3-none-any.whl" for v in ("1.1.0", "2.0.0"))
    text = _lock(
        f'name = "fx-core"\nversion = "1.1.0"\nwheels = [{_entry(a)}]',
        f'name = "fx-core"\nversion = "2.0.0"\nwheels = [{_entry(b)}]',
    )
    with pytest.raises(ResolutionError, match="gives fx-core twice"):
        _resolve(config, text)


def test_resolver_needs_a_lock(config: Config, native: str) -> None:
    resolver = pylock.PylockResolver(config)
    plain = ResolveRequest(
        arch="linux-64", requirements=(Requirement(category=PYPI, name="x"),), python_version=PY_FULL
    )
    with pytest.raises(ResolutionError, match="cannot resolve requirements"):
        resolver.resolve(plain)
    lock = pylock.parse(_lock(native))
    request = _request(config, lock)
    (config.cache_dir() / "pylock" / f"{lock.digest}.json").unlink()
    with pytest.raises(ResolutionError, match="is not in envcore's cache"):
        resolver.resolve(request)


# --- selection ------------------------------------------------------------------------------------------


def test_setting_selects_the_resolver(tmp_path: Path) -> None:
    registry = build_registry(Config.load(environ={"HOME": str(tmp_path)}))
    name, resolver = pylock.resolver_for(registry)
    assert name.endswith("+pylock_toml") and resolver.version()
    assert registry.resolvers["pylock_toml"].record.env_types == {EnvType.PYPI_ONLY}
    other = build_registry(
        Config.load(environ={"HOME": str(tmp_path), "METAFLOW_PYLOCK_TOML_DEPENDENCY_RESOLVER": "nope"})
    )
    with pytest.raises(ConfigError, match="PYLOCK_TOML_DEPENDENCY_RESOLVER"):
        pylock.resolver_for(other)


# --- export ---------------------------------------------------------------------------------------------


def _env(
    packages: tuple[LockedPackage, ...], env_type: EnvType = EnvType.PYPI_ONLY, arch: str = "linux-64"
) -> ResolvedEnvironment:
    python = LockedPackage(
        kind=PackageKind.CONDA, name="python", version=PY_FULL, filename=f"python-{PY_FULL}-h0",
        files=(PackageFile(url_format=".conda", url="https://c/python.conda", sha256="a" * 64, md5="b" * 32),),
    )  # fmt: skip
    return ResolvedEnvironment(
        req_id="1" * 40, full_id="2" * 40, arch=arch, env_type=env_type, deps=(), sources=(), extras=(),
        packages=(python, *packages), resolved_on="", resolved_by="", resolved_archs=(arch,),
    )  # fmt: skip


def test_export_reads_back_the_same_packages(config: Config, native: str, wheels: Path) -> None:
    sdist = wheels / "fx_src-0.9.0.tar.gz"
    text = _lock(native, f'name = "fx-src"\nversion = "0.9.0"\nsdist = {_entry(sdist)}')
    locked = _resolve(config, text)
    built = LockedPackage(
        kind=PackageKind.PYPI, name="fx-app", version="1.0.0", filename="fx_app-1.0.0-py3-none-any",
        files=(PackageFile(url_format=".whl", url=(wheels / "fx_app-1.0.0.tar.gz").as_uri(), sha256="c" * 64, built=True),),
    )  # fmt: skip
    exported = pylock.export(_env((*locked, built)))
    data = tomllib.loads(exported)
    assert (data["lock-version"], data["created-by"], data["requires-python"]) == (
        "1.0",
        "envcore",
        f"=={PY}.*",
    )
    assert data["environments"] == ["sys_platform == 'linux' and platform_machine == 'x86_64'"]
    by_name = {p["name"]: p for p in data["packages"]}
    assert set(by_name) == {"fx-native", "fx-src", "fx-app"}  # no python: conda packages are not in it
    assert by_name["fx-native"]["wheels"][0]["hashes"]["sha256"] == locked[0].source.sha256
    # a wheel envcore built exists in the store only: the lock names its sdist, hashed from the source
    assert by_name["fx-app"]["sdist"]["hashes"]["sha256"] == _sha(wheels / "fx_app-1.0.0.tar.gz")
    again = pylock.parse(exported)
    assert {(p.name, p.version) for p in again.packages} == {
        ("fx-native", "1.0.0"),
        ("fx-src", "0.9.0"),
        ("fx-app", "1.0.0"),
    }
    assert {p.filename: p.source.sha256 for p in _resolve(config, exported)}.items() >= {
        p.filename: p.source.sha256 for p in locked
    }.items()
    with pytest.raises(ResolutionError, match="is only for the environments"):
        _resolve(config, exported, "osx-arm64")


def test_export_of_an_unreachable_built_sdist_and_of_a_conda_only_env() -> None:
    built = LockedPackage(
        kind=PackageKind.PYPI, name="gone", version="1.0", filename="gone-1.0-py3-none-any",
        files=(PackageFile(url_format=".whl", url="file:///nonexistent/gone-1.0.tar.gz", sha256="c" * 64, built=True),),
    )  # fmt: skip
    with pytest.raises(ResolutionError, match=r"gone 1\.0 was built by envcore from its sdist"):
        pylock.export(_env((built,)))
    with pytest.raises(UsageError, match="conda-only: it has no PyPI packages"):
        pylock.export(_env((), EnvType.CONDA_ONLY))


def test_toml_strings_are_escaped() -> None:
    tricky = 'a"b\\c\nd\x7fé'
    assert tomllib.loads(f"x = {pylock._quote(tricky)}")["x"] == tricky


@pytest.mark.parametrize("name", ["pylock.toml", "pylock.dev.toml"])
def test_pep751_file_names(name: str) -> None:
    assert re.match(pylock.FILE_NAME, name)
    assert not re.match(pylock.FILE_NAME, "pyproject.toml") and not re.match(
        pylock.FILE_NAME, "pylock.a.b.toml"
    )


def test_explicit_export_lists_conda_files_with_md5_else_sha256_and_no_virtual_packages() -> None:
    """``show --format explicit``: conda's own hash when the description has it, sha256 otherwise (conda and
    micromamba read both); virtual packages and PyPI packages are not files of the conda side."""
    from envcore import show

    no_md5 = LockedPackage(
        kind=PackageKind.CONDA, name="zlib", version="1.3", filename="zlib-1.3-h0",
        files=(PackageFile(url_format=".conda", url="https://c/zlib-1.3-h0.conda", sha256="d" * 64),),
    )  # fmt: skip
    virtual = LockedPackage(
        kind=PackageKind.CONDA, name="__glibc", version="2.36", filename="__glibc-2.36-0",
        files=(PackageFile(url_format=".conda", url="https://c/none", sha256="e" * 64),),
    )  # fmt: skip
    wheel = LockedPackage(
        kind=PackageKind.PYPI, name="x", version="1", filename="x-1-py3-none-any",
        files=(PackageFile(url_format=".whl", url="https://p/x-1-py3-none-any.whl", sha256="f" * 64),),
    )  # fmt: skip
    text = show.explicit(_env((no_md5, virtual, wheel), EnvType.MIXED))
    assert text.endswith(
        "# platform: linux-64\n@EXPLICIT\n"
        f"https://c/python.conda#{'b' * 32}\nhttps://c/zlib-1.3-h0.conda#sha256:{'d' * 64}\n"
    )


def test_a_locks_packages_for_other_platforms_are_not_said_to_be_ignored(
    config: Config, native: str, wheels: Path
) -> None:
    """A lock for several platforms holds the others' packages by design: resolve warns of requirements left out
    by their markers (``ignored_by_markers``), but not of a lock's."""
    from envcore.resolve import ignored_by_markers

    core = f'name = "fx-core"\nversion = "2.0.0"\nmarker = "sys_platform == \'win32\'"\nwheels = [{_entry(wheels / "fx_core-2.0.0-py3-none-any.whl")}]'
    request = _request(config, pylock.parse(_lock(native, core)))
    env = ResolvedEnvironment(
        req_id="r", full_id="f", arch="linux-64", env_type=EnvType.PYPI_ONLY, deps=(), sources=(), extras=(),
        packages=(), resolved_on="", resolved_by="", resolved_archs=("linux-64",),
    )  # fmt: skip
    assert ignored_by_markers([(request, env)]) == []
    (said,) = ignored_by_markers([(pylock.without_flag(request), env)])  # the same pins as requirements
    assert said.startswith(
        'Ignoring fx-core==2.0.0: its marker (sys_platform == "win32") does not hold for linux-64'
    )
