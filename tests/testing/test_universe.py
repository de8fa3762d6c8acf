"""The test universe, checked with the real tools: py-rattler, conda-package-handling and uv."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

import pytest

from envcore.testing.channel import Universe, build_universe
from envcore.testing.channel import main as channel_main
from envcore.testing.condapkg import PLACEHOLDER, wheel_to_conda
from envcore.testing.fixtures import AuthEndpoint, NetworkBlockedError, WheelIndex

rattler = pytest.importorskip("rattler", reason="py-rattler (dev dependency) is not installed")
SolverError = pytest.importorskip("rattler.exceptions").SolverError
cph = pytest.importorskip("conda_package_handling.api", reason="conda-package-handling is not installed")

UV = Path(sys.executable).parent / "uv"


def _vp(name: str, version: str, build: str = "0") -> Any:
    return rattler.GenericVirtualPackage(
        rattler.PackageName(name), rattler.Version(version), rattler.BuildString(build)
    )


LINUX = [_vp("__unix", "0"), _vp("__linux", "6.1"), _vp("__glibc", "2.36"), _vp("__archspec", "1", "x86_64")]
OSX_ARM = [_vp("__unix", "0"), _vp("__osx", "14.0"), _vp("__archspec", "1", "arm64")]


def _xy(universe: Universe) -> str:
    return ".".join(universe.python_version.split(".")[:2])


def _solve(channel: str, specs: list[str], platform: str, virtual: list[Any], cache: Path) -> dict[str, Any]:
    records = asyncio.run(
        rattler.solve(
            sources=[channel],
            specs=specs,
            gateway=rattler.Gateway(cache_dir=cache),
            platforms=[platform, "noarch"],
            virtual_packages=virtual,
        )
    )
    return {r.name.normalized: r for r in records}


def _tree(root: Path) -> dict[str, tuple[str, str]]:
    """Relative path -> (kind, content digest or link target), with the executable bit."""
    tree = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            tree[rel] = ("link", os.readlink(path))
        elif path.is_file():
            tree[rel] = (
                f"file{oct(path.stat().st_mode & 0o111)}",
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    return tree


# --- package files --------------------------------------------------------------------------------------


def test_every_package_reads_back_with_rattler(universe: Universe) -> None:
    assert len(universe.conda_packages) > 40
    for path in universe.conda_packages:
        index = rattler.IndexJson.from_package_archive(path)
        assert f"{index.name.normalized}-{index.version}-{index.build}" == path.name.removesuffix(
            ".conda"
        ).removesuffix(".tar.bz2")
        assert index.subdir == path.parent.name
        assert index.timestamp is not None
        paths = rattler.PathsJson.from_package_archive(path)
        assert paths.paths, path.name
        assert all(e.sha256 is not None for e in paths.paths), path.name


def test_text_placeholders_are_recorded(universe: Universe) -> None:
    prefixed = universe.channel_dir / "noarch" / "fx-prefixed-1.0.0-py_0.conda"
    marked = {
        e.relative_path.as_posix(): e.prefix_placeholder
        for e in rattler.PathsJson.from_package_archive(prefixed).paths
        if e.prefix_placeholder
    }
    assert set(marked) == {"etc/fx-prefixed.conf", "site-packages/fx_prefixed/__init__.py"}
    assert {(str(p.file_mode), p.placeholder) for p in marked.values()} == {('FileMode("text")', PLACEHOLDER)}


def test_host_python_package_layout(universe: Universe) -> None:
    if not universe.real_python:
        pytest.skip(f"python in the universe is a stub: {universe.python_note}")
    (python,) = [p for p in universe.conda_packages if p.name.startswith("python-") and "h0_host" in p.name]
    entries = {e.relative_path.as_posix(): e for e in rattler.PathsJson.from_package_archive(python).paths}
    xy = _xy(universe)
    assert entries["bin/python"].path_type.softlink
    assert entries["bin/python"].sha256 == entries[f"bin/python{xy}"].sha256  # hash of the link target
    assert entries[f"lib/python{xy}/os.py"].path_type.hardlink
    assert entries[f"lib/python{xy}/_sysconfigdata__linux_x86_64-linux-gnu.py"].prefix_placeholder is not None
    assert not any("/test/" in p or "__pycache__" in p for p in entries)


def test_noarch_python_entry_points_go_to_link_json(universe: Universe, tmp_path: Path) -> None:
    for name, entry_point in (
        ("pip-", "pip = pip._internal.cli.main:main"),
        ("fx-app-", "fx-app = fx_app:main"),
    ):
        (path,) = [
            p for p in universe.conda_packages if p.name.startswith(name) and p.name.endswith(".conda")
        ]
        cph.extract(str(path), dest_dir=str(tmp_path / path.name), components="info")
        link = json.loads((tmp_path / path.name / "info" / "link.json").read_text())
        assert link["noarch"]["type"] == "python" and entry_point in link["noarch"]["entry_points"]


def test_both_formats_extract_to_identical_trees(universe: Universe, tmp_path: Path) -> None:
    trees: dict[str, dict[str, dict[str, tuple[str, str]]]] = {}
    for path in universe.conda_packages:
        dest = tmp_path / path.name
        cph.extract(str(path), dest_dir=str(dest))
        assert (dest / "info" / "index.json").is_file(), path.name
        fmt = ".conda" if path.name.endswith(".conda") else ".tar.bz2"
        dist = path.name.removesuffix(fmt)
        trees.setdefault(f"{path.parent.name}/{dist}", {})[fmt] = _tree(dest)
    pairs = {dist: t for dist, t in trees.items() if len(t) == 2}
    assert len(pairs) >= 20
    for dist, by_format in pairs.items():
        assert by_format[".conda"] == by_format[".tar.bz2"], dist
    assert list(trees["noarch/fx-vintage-0.9.0-py_0"]) == [".tar.bz2"]  # the .tar.bz2-only package


def test_repodata_lists_every_package_with_hashes(universe: Universe) -> None:
    listed = set()
    for subdir in ("linux-64", "linux-aarch64", "osx-64", "osx-arm64", "win-64", "noarch"):
        repodata = json.loads((universe.channel_dir / subdir / "repodata.json").read_text())
        assert repodata["info"] == {"subdir": subdir}
        for key, suffix in (("packages", ".tar.bz2"), ("packages.conda", ".conda")):
            for filename, record in repodata[key].items():
                assert filename.endswith(suffix)
                data = (universe.channel_dir / subdir / filename).read_bytes()
                assert record["sha256"] == hashlib.sha256(data).hexdigest()
                assert record["md5"] == hashlib.md5(data).hexdigest()
                assert record["size"] == len(data)
                assert record["subdir"] == subdir and record["timestamp"] > 0
                assert ("noarch" in record) == (subdir == "noarch")
                listed.add(universe.channel_dir / subdir / filename)
    assert listed == set(universe.conda_packages)


def test_wheel_to_conda_keeps_record_and_entry_points(universe: Universe) -> None:
    wheel = universe.wheels_dir / "fx_app-1.0.0-py3-none-any.whl"
    pkg = wheel_to_conda(wheel, conda_names={"fx-pyyaml": "fx-yaml"})
    assert (pkg.name, pkg.version, pkg.noarch) == ("fx-app", "1.0.0", "python")
    assert pkg.entry_points == ("fx-app = fx_app:main",)
    assert pkg.depends == ("python >=3.8", "fx-web >=2.0", "fx-http >=1.1", "fx-yaml >=5")
    record = next(f for f in pkg.files if f.path.endswith(".dist-info/RECORD")).data.decode()
    assert "fx_app-1.0.0.dist-info/INSTALLER,," in record and "fx_app/__init__.py,sha256=" in record

    pip = next(p for p in universe.conda_packages if p.name.startswith("pip-"))
    with zipfile.ZipFile(pip) as zf:
        assert any(n.startswith("info-") for n in zf.namelist())
    paths = {e.relative_path.as_posix() for e in rattler.PathsJson.from_package_archive(pip).paths}
    assert "site-packages/pip/__init__.py" in paths


# --- conda solves and installs ---------------------------------------------------------------------------


def test_solve_linux_64(universe: Universe, conda_channel: str, tmp_path: Path) -> None:
    xy = _xy(universe)
    solved = _solve(
        conda_channel, [f"python {xy}.*", "pip", "fx-app", "fx-native"], "linux-64", LINUX, tmp_path
    )
    assert (str(solved["fx-native"].build), solved["fx-native"].subdir) == ("h0_cpu", "linux-64")
    assert str(solved["python"].build) == ("h0_host_cpython" if universe.real_python else "h0_stub")
    # diamond + renamed dependency; fx-http 1.4.0 needs python >=3.99
    assert {n: str(r.version) for n, r in solved.items() if n.startswith("fx-")} == {
        "fx-app": "1.0.0",
        "fx-web": "2.1.0",
        "fx-http": "1.2.0",
        "fx-core": "2.0.0",
        "fx-yaml": "6.0.1",
        "fx-native": "1.0.0",
    }


def test_solve_over_http_matches_file_channel(
    conda_channel: str, conda_channel_http: str, tmp_path: Path
) -> None:
    specs = ["pip", "fx-app", "fx-native"]
    over_file = _solve(conda_channel, specs, "linux-64", LINUX, tmp_path / "a")
    over_http = _solve(conda_channel_http, specs, "linux-64", LINUX, tmp_path / "b")
    assert {n: r.file_name for n, r in over_http.items()} == {n: r.file_name for n, r in over_file.items()}
    assert over_http["fx-app"].url.startswith(conda_channel_http)


def test_solve_foreign_osx_arm64(universe: Universe, conda_channel: str, tmp_path: Path) -> None:
    solved = _solve(
        conda_channel, ["python", "pip", "fx-app", "fx-native", "fx-ffmpeg"], "osx-arm64", OSX_ARM, tmp_path
    )
    assert (str(solved["fx-native"].build), solved["fx-native"].subdir) == ("h0_cpu", "osx-arm64")
    assert (str(solved["python"].build), solved["python"].subdir) == ("h0_stub", "osx-arm64")
    assert solved["fx-ffmpeg"].subdir == "osx-arm64"


@pytest.mark.parametrize(
    ("platform", "virtual", "tool"),
    [
        ("linux-aarch64", [*LINUX[:3], _vp("__archspec", "1", "aarch64")], "bin/fx-ffmpeg"),
        ("osx-64", [_vp("__unix", "0"), _vp("__osx", "13.0")], "bin/fx-ffmpeg"),
        ("win-64", [_vp("__win", "0")], "Library/bin/fx-ffmpeg.bat"),
    ],
)
def test_every_subdir_solves_with_a_stub_python(
    universe: Universe, conda_channel: str, tmp_path: Path, platform: str, virtual: list[Any], tool: str
) -> None:
    solved = _solve(conda_channel, ["python", "pip", "fx-core", "fx-ffmpeg"], platform, virtual, tmp_path)
    assert (str(solved["python"].build), solved["python"].subdir) == ("h0_stub", platform)
    ffmpeg = universe.channel_dir / platform / solved["fx-ffmpeg"].file_name
    assert [e.relative_path.as_posix() for e in rattler.PathsJson.from_package_archive(ffmpeg).paths] == [
        tool
    ]


@pytest.mark.parametrize(("cuda", "build"), [(None, "h0_cpu"), ("12.4", "h1_cuda12"), ("11.8", "h0_cpu")])
def test_cuda_build_needs_cuda(conda_channel: str, tmp_path: Path, cuda: str | None, build: str) -> None:
    virtual = LINUX + ([_vp("__cuda", cuda)] if cuda else [])
    assert (
        str(_solve(conda_channel, ["fx-native"], "linux-64", virtual, tmp_path)["fx-native"].build) == build
    )


@pytest.mark.parametrize(
    ("specs", "platform", "virtual", "message"),
    [
        (["fx-legacy", "fx-modern"], "linux-64", LINUX, "fx-core"),
        (["fx-native"], "osx-arm64", OSX_ARM[:1], "__osx"),
        (["fx-native"], "linux-64", LINUX[:2], "__glibc"),
    ],
    ids=["conflicting-pins", "no-osx", "no-glibc"],
)
def test_unsatisfiable(
    conda_channel: str, tmp_path: Path, specs: list[str], platform: str, virtual: list[Any], message: str
) -> None:
    with pytest.raises(SolverError, match=message):
        _solve(conda_channel, specs, platform, virtual, tmp_path)


def test_installed_env_runs(universe: Universe, conda_channel: str, tmp_path: Path) -> None:
    if not universe.real_python:
        pytest.skip(f"python in the universe is a stub: {universe.python_note}")
    xy = _xy(universe)
    specs = [f"python {xy}.*", "pip", "fx-app", "fx-native", "fx-prefixed", "fx-ffmpeg", "fx-vintage"]
    records = list(_solve(conda_channel, specs, "linux-64", LINUX, tmp_path / "gw").values())
    prefix = (tmp_path / "env").resolve()
    asyncio.run(
        rattler.install(records, target_prefix=str(prefix), cache_dir=tmp_path / "pkgs", show_progress=False)
    )

    def run(*args: str | Path) -> str:
        return subprocess.run(
            [str(a) for a in args], capture_output=True, text=True, check=True, timeout=60
        ).stdout

    code = "import sys, fx_app, fx_native, fx_prefixed, fx_vintage, fx_yaml; print(sys.prefix, fx_app.__version__, fx_native.BUILD, fx_prefixed.PREFIX)"
    assert run(prefix / "bin" / "python", "-c", code).split() == [
        str(prefix),
        "1.0.0",
        "linux-64/h0_cpu",
        str(prefix),
    ]
    assert f"{prefix}/lib/python{xy}/site-packages/pip" in run(prefix / "bin" / "pip", "--version")
    assert run(prefix / "bin" / "fx-app") == "fx-app 1.0.0 (noarch/py_0)\n"
    assert run(prefix / "bin" / "fx-ffmpeg") == "fx-ffmpeg 6.1.0 (linux-64)\n"
    assert (prefix / "etc" / "fx-prefixed.conf").read_text() == f"prefix = {prefix}\n"
    assert (
        run(
            prefix / "bin" / "python",
            "-c",
            "import ssl, sqlite3, ctypes, sysconfig; print(sysconfig.get_config_var('prefix'))",
        )
        == f"{prefix}\n"
    )


def test_cli_builds_a_stub_python_universe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert channel_main(["--out", str(tmp_path / "u"), "--format", ".conda", "--stub-python"]) == 0
    out = capsys.readouterr().out
    assert "stub (not requested (real_python=False))" in out and "--find-links" in out
    linux = json.loads((tmp_path / "u" / "channel" / "linux-64" / "repodata.json").read_text())
    assert [r["build"] for r in linux["packages.conda"].values() if r["name"] == "python"] == ["h0_stub"]
    assert not list((tmp_path / "u" / "channel").glob("*/fx-core-*.tar.bz2"))
    assert len(list((tmp_path / "u" / "channel").glob("*/fx-vintage-*.tar.bz2"))) == 1  # its only format


# --- the PyPI side ---------------------------------------------------------------------------------------


def _uv(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    if not UV.is_file():
        pytest.skip(f"uv is not installed next to {sys.executable}")
    cmd = [
        str(UV),
        "pip",
        "compile",
        "--cache-dir",
        str(cwd / "uv-cache"),
        "--python",
        sys.executable,
        *map(str, args),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120)


def _pins(tmp_path: Path, *args: str | Path, reqs: str = "fx-app\nfx-native\nfx-extras\n") -> dict[str, str]:
    (tmp_path / "req.in").write_text(reqs)
    result = _uv("req.in", "--no-header", "--no-annotate", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return dict(line.split("==") for line in result.stdout.split())


EXPECTED_PINS = {
    "fx-app": "1.0.0",
    "fx-core": "2.0.0",
    "fx-extras": "0.4.0",
    "fx-http": "1.2.0",
    "fx-native": "1.0.0",
    "fx-pyyaml": "6.0.1",
    "fx-web": "2.1.0",
}


def test_uv_find_links(wheel_index: WheelIndex, tmp_path: Path) -> None:
    pins = _pins(tmp_path, "--no-index", "--find-links", wheel_index.find_links)
    # a bare directory cannot say a file is yanked, so 1.3.0 wins there
    assert pins == {**EXPECTED_PINS, "fx-http": "1.3.0"}


@pytest.mark.parametrize("via", ["file", "http"])
def test_uv_simple_index(wheel_index: WheelIndex, tmp_path: Path, via: str) -> None:
    url = wheel_index.simple_url if via == "file" else wheel_index.http_url
    assert _pins(tmp_path, "--index-url", url) == EXPECTED_PINS  # yanked 1.3.0 and python>=3.99 1.4.0 skipped
    assert _pins(tmp_path, "--index-url", url, reqs="fx-core>=2.1.0rc1\n") == {"fx-core": "2.1.0rc1"}


@pytest.mark.parametrize(
    ("platform", "wheel_tag"),
    [("aarch64-apple-darwin", "macosx_11_0_arm64"), ("x86_64-manylinux2014", "manylinux2014")],
)
def test_uv_picks_the_platform_wheel(
    wheel_index: WheelIndex, tmp_path: Path, platform: str, wheel_tag: str
) -> None:
    (tmp_path / "req.in").write_text("fx-native\n")
    args = ["--index-url", wheel_index.simple_url, "--python-platform", platform, "-o", "pylock.toml"]
    result = _uv("req.in", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lock = tomllib.loads((tmp_path / "pylock.toml").read_text())
    (native,) = [p for p in lock["packages"] if p["name"] == "fx-native"]
    assert [w["url"].rsplit("/", 1)[1] for w in native["wheels"]] == [
        next(p.name for p in wheel_index.find_links.glob("fx_native-1.0.0-*.whl") if wheel_tag in p.name)
    ]


def test_simple_index_hashes_and_metadata(universe: Universe) -> None:
    link = re.compile(r'<a href="([^"#]+)#sha256=([0-9a-f]{64})"([^>]*)>')
    page = (universe.simple_dir / "fx-http" / "index.html").read_text()
    yanked = set()
    for href, digest, attrs in link.findall(page):
        target = (universe.simple_dir / "fx-http" / href).resolve()
        assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
        assert "data-requires-python=" in attrs
        if target.name.endswith(".whl"):
            meta = hashlib.sha256(target.with_name(target.name + ".metadata").read_bytes()).hexdigest()
            assert (
                f'data-core-metadata="sha256={meta}"' in attrs
                and f'data-dist-info-metadata="sha256={meta}"' in attrs
            )
        if "data-yanked" in attrs:
            yanked.add(target.name)
    assert yanked == {"fx_http-1.3.0-py3-none-any.whl", "fx_http-1.3.0.tar.gz"}
    projects = set(re.findall(r'href="([^"/]+)/"', (universe.simple_dir / "index.html").read_text()))
    assert projects == {p.name for p in universe.projects if p.in_pypi}
    assert "fx-yaml" not in projects and "fx-pyyaml" in projects


def test_every_wheel_installs_and_imports(
    universe: Universe, wheel_index: WheelIndex, tmp_path: Path
) -> None:
    if not UV.is_file():
        pytest.skip(f"uv is not installed next to {sys.executable}")
    venv = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=60)
    install = [
        str(UV),
        "pip",
        "install",
        "-q",
        "--cache-dir",
        str(tmp_path / "c"),
        "--python",
        str(venv / "bin" / "python"),
    ]
    subprocess.run(
        [
            *install,
            "--no-index",
            "--find-links",
            str(wheel_index.find_links),
            "fx-app",
            "fx-native",
            "fx-extras",
        ],
        check=True,
        timeout=60,
    )
    expected = {**EXPECTED_PINS, "fx-http": "1.3.0"}  # --find-links: see test_uv_find_links
    modules = {p.import_name: expected[p.name] for p in universe.projects if p.name in expected}
    code = f"import importlib, json; print(json.dumps({{m: importlib.import_module(m).__version__ for m in {list(modules)!r}}}))"
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == modules


# --- servers and the offline guard ---------------------------------------------------------------------


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_http_server(conda_channel_http: str, wheel_index: WheelIndex) -> None:
    assert _get(f"{conda_channel_http}/noarch/repodata.json") == 200
    assert _get(f"{wheel_index.http_url}fx-app/") == 200
    assert _get(f"{conda_channel_http}/noarch/missing.conda") == 404


def test_basic_auth_variant(
    auth_channel: AuthEndpoint, auth_wheel_index: AuthEndpoint, tmp_path: Path
) -> None:
    repodata = f"{auth_channel.url}/noarch/repodata.json"
    assert _get(repodata) == 401
    assert _get(repodata, (auth_channel.user, "wrong")) == 401
    assert _get(repodata, (auth_channel.user, auth_channel.password)) == 200
    assert _get(f"{auth_wheel_index.url}fx-app/", (auth_wheel_index.user, auth_wheel_index.password)) == 200
    # uv takes credentials from the URL
    (tmp_path / "req.in").write_text("fx-core<2\n")
    assert _uv("req.in", "--index-url", auth_wheel_index.url, cwd=tmp_path).returncode != 0
    ok = _uv("req.in", "--no-header", "--index-url", auth_wheel_index.url_with_credentials, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "fx-core==1.1.0" in ok.stdout


def test_offline_guard(offline: None, wheel_index: WheelIndex) -> None:
    with pytest.raises(NetworkBlockedError, match="offline"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with pytest.raises(NetworkBlockedError), socket.socket() as sock:
        sock.connect(("10.255.255.1", 443))
    with pytest.raises(NetworkBlockedError):
        socket.create_connection(("example.org", 443), timeout=1)
    assert _get(f"{wheel_index.http_url}fx-core/") == 200  # loopback stays allowed


# --- reproducibility -----------------------------------------------------------------------------------


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "repodata.json" and not p.name.startswith("python-")
    }


def _repodata_without_python(channel: Path) -> dict[str, Any]:
    out = {}
    for path in sorted(channel.glob("*/repodata.json")):
        data = json.loads(path.read_text())
        for key in ("packages", "packages.conda"):
            data[key] = {k: v for k, v in data[key].items() if v["name"] != "python"}
        out[path.parent.name] = data
    return out


def test_builds_are_byte_reproducible(universe: Universe, tmp_path: Path) -> None:
    again = build_universe(tmp_path / "elsewhere" / "universe")
    assert again.root != universe.root
    first, second = _digests(universe.root), _digests(again.root)
    assert len(first) > 100
    assert first == second
    assert _repodata_without_python(universe.channel_dir) == _repodata_without_python(again.channel_dir)
    shutil.rmtree(again.root)
