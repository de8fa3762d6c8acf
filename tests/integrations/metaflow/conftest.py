"""Real flows, run as ``python flow.py --environment=conda run`` subprocesses against the test universe.

The universe (a conda channel and a PyPI index, the only sources) gets one more package: ``requests`` as
Metaflow pins it, made from the ``requests`` installed here with its dependencies (urllib3, idna, certifi,
charset_normalizer) bundled in, because Metaflow imports it in every task. Each test has its own store,
caches and Metaflow datastore (``Machine``); a second machine shares only the store.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from envcore.testing.channel import PROJECTS, Project, Release, Universe, build_universe, index_channel
from envcore.testing.condapkg import site_packages_package, write_package

FLOWS = Path(__file__).parent / "flows"
BIN = Path(sys.executable).parent
TIMEOUT = 300
BUNDLED = ("requests", "urllib3", "idna", "certifi", "charset_normalizer")


def _requests_files() -> tuple[str, dict[str, bytes]]:
    version = importlib.metadata.version("requests")
    files: dict[str, bytes] = {}
    for dist_name in BUNDLED:
        dist = importlib.metadata.distribution(dist_name)
        for item in dist.files or []:
            if item.parts[0] == dist_name and "__pycache__" not in item.parts:
                files["/".join(item.parts)] = Path(str(dist.locate_file(item))).read_bytes()
    info = f"requests-{version}.dist-info"
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: requests\nVersion: {version}\nRequires-Python: >=3.8\n"
        "Summary: requests and its dependencies, bundled for the Metaflow integration tests\n"
    ).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = "".join(f"{p},,\n" for p in sorted(files)) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    return version, files


def add_requests(universe: Universe) -> None:
    """``requests`` as a noarch conda package and a wheel, then the channel and index refreshed."""
    version, files = _requests_files()
    write_package(site_packages_package(files, depends=("python >=3.8",)), universe.channel_dir, ".conda")
    index_channel(universe.channel_dir)
    wheel = f"requests-{version}-py3-none-any.whl"
    with zipfile.ZipFile(universe.wheels_dir / wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(files.items()):
            zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
    digest = hashlib.sha256((universe.wheels_dir / wheel).read_bytes()).hexdigest()
    page = universe.simple_dir / "requests"
    page.mkdir(exist_ok=True)
    (page / "index.html").write_text(
        f'<!DOCTYPE html>\n<html><body>\n<a href="../../wheels/{wheel}#sha256={digest}" '
        f'data-requires-python="&gt;=3.8">{wheel}</a><br>\n</body></html>\n'
    )
    root = universe.simple_dir / "index.html"
    root.write_text(root.read_text().replace("</body>", '<a href="requests/">requests</a>\n</body>'))


@pytest.fixture(scope="session")
def mf_universe(tmp_path_factory: pytest.TempPathFactory) -> Universe:
    from envcore import specs

    if not hasattr(specs, "from_decorator"):  # the core's specification module is still being written
        pytest.skip("envcore.specs does not provide from_decorator/merge/override yet")
    kernel = Project(
        name="ipykernel", summary="stands in for Jupyter's kernel", releases=(Release(version="6.29.5"),)
    )
    universe = build_universe(tmp_path_factory.mktemp("mf-universe"), projects=[*PROJECTS, kernel])
    if not universe.real_python:
        pytest.skip(f"the universe has no real python for this machine ({universe.python_note})")
    add_requests(universe)
    return universe


@dataclass
class Machine:
    """One user's machine: its own Metaflow home, caches and datastore; the store may be shared."""

    root: Path
    store: Path
    universe: Universe
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def datastore(self) -> Path:
        return self.root / "datastore"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("METAFLOW_", "CONDA_", "UV_", "PIP_", "MAMBA_"))
        }
        env.update(
            HOME=str(self.root / "home"),
            USERNAME="tester",
            PIP_CONFIG_FILE=os.devnull,
            METAFLOW_HOME=str(self.root / "mfhome"),
            METAFLOW_DEFAULT_DATASTORE="local",
            METAFLOW_DEFAULT_METADATA="local",
            METAFLOW_DATASTORE_SYSROOT_LOCAL=str(self.datastore),
            METAFLOW_CONDA_LOCALROOT=str(self.store),
            METAFLOW_CONDA_CHANNELS=self.universe.channel_url,
            METAFLOW_CONDA_DEFAULT_PYPI_SOURCE=self.universe.simple_url,
            METAFLOW_ENVCORE_CACHE_DIR=str(self.cache),
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def run(
        self, *args: str | Path, check: bool = True, cwd: Path | None = None, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        workdir = cwd or self.root / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [str(a) for a in args],
            cwd=workdir,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        if check:
            assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def flow(
        self, name: str, *args: str, check: bool = True, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        """``python flows/<name>.py --environment=conda <args>``."""
        return self.run(
            sys.executable, FLOWS / f"{name}.py", "--environment=conda", *args, check=check, **extra
        )

    def metaflow(self, *args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
        return self.run(BIN / "metaflow", *args, check=check, **extra)

    def envcore(self, *args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
        return self.run(BIN / "envcore", *args, check=check, **extra)


@pytest.fixture
def machine(tmp_path: Path, mf_universe: Universe) -> Iterator[Machine]:
    yield Machine(root=tmp_path / "a", store=tmp_path / "store", universe=mf_universe)


@pytest.fixture
def other_machine(tmp_path: Path, mf_universe: Universe) -> Machine:
    return Machine(root=tmp_path / "b", store=tmp_path / "store", universe=mf_universe)


_PRINTED = re.compile(r"\[(?P<run>[^/\]]+)/(?P<step>[^/\]]+)/(?P<task>[^ \]]+) \(pid \d+\)\] (?P<text>.*)$")


def printed(output: str) -> dict[str, list[str]]:
    """What each step printed, by step name (Metaflow prefixes task output with ``[run/step/task (pid)]``)."""
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        match = _PRINTED.search(line)
        if match and match["text"] not in ("Task is starting.", "Task finished successfully."):
            found.setdefault(match["step"], []).append(match["text"])
    return found


def reports(output: str) -> dict[str, dict[str, str]]:
    """``key=value`` words of the lines steps printed, by step: ``{"start": {"fx-core": "1.0.0", ...}}``."""
    out: dict[str, dict[str, str]] = {}
    for step, lines in printed(output).items():
        for line in lines:
            words = dict(w.split("=", 1) for w in line.split() if "=" in w)
            words.pop("step", None)
            out.setdefault(step, {}).update(words)
    return out


def run_id(output: str) -> str:
    match = re.search(r"Workflow starting \(run-id (\S+)\)", output)
    assert match, output
    return match.group(1)


def metadata(machine: Machine, pathspec: str, field_name: str) -> str:
    """A metadata field of a task, read through Metaflow's client in a subprocess."""
    code = (
        "import sys; from metaflow import Task, namespace; namespace(None); "
        f"print(Task({pathspec!r}).metadata_dict.get({field_name!r}, ''))"
    )
    return machine.run(sys.executable, "-c", code).stdout.strip()


def both(done: subprocess.CompletedProcess[str]) -> str:
    """Metaflow prints task output on stdout and its own progress on stderr."""
    return done.stdout + done.stderr
