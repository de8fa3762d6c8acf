"""Real flows, run as ``python flow.py --environment=conda run`` subprocesses against the test universe.

The universe (a conda channel and a PyPI index, the only sources) gets two more packages, as Metaflow pins
them: ``requests`` (Metaflow imports it in every task) and ``boto3`` (for the S3 datastore), each made from
the one installed here with its dependencies bundled in. Each test has its own store, caches and Metaflow
datastore (``Machine``); a second machine shares only the store. ``s3_machine`` uses moto's S3 server on
127.0.0.1 for both the Metaflow datastore and the envcore store.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from envcore.testing.channel import PROJECTS, Project, Release, Universe, build_universe, index_channel
from envcore.testing.condapkg import site_packages_package, write_package
from envcore.testing.servers import ServerDidNotStart, moto_server

FLOWS = Path(__file__).parent / "flows"
BIN = Path(sys.executable).parent
TIMEOUT = 300
# Packages the universe gets from what is installed here: (name, (dist, top-level names)..., requirements).
# boto3 is Metaflow's pin for the S3 datastore; its botocore keeps the S3 and STS service models only.
BUNDLES: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...], tuple[str, ...]], ...] = (
    (
        "requests",
        tuple((d, (d,)) for d in ("requests", "urllib3", "idna", "certifi", "charset_normalizer")),
        (),
    ),
    (
        "boto3",
        (
            ("boto3", ("boto3",)),
            ("botocore", ("botocore",)),
            ("s3transfer", ("s3transfer",)),
            ("jmespath", ("jmespath",)),
            ("python-dateutil", ("dateutil",)),
            ("six", ("six.py",)),
        ),
        ("requests",),  # for urllib3
    ),
)
BOTOCORE_DATA = ("s3", "sts")


def _keep(parts: tuple[str, ...]) -> bool:
    if "__pycache__" in parts:
        return False
    if parts[:2] == ("botocore", "data") and len(parts) > 3:
        return parts[2] in BOTOCORE_DATA
    return True


def _bundle_files(name: str, dists: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[str, dict[str, bytes]]:
    version = importlib.metadata.version(name)
    files: dict[str, bytes] = {}
    for dist_name, tops in dists:
        dist = importlib.metadata.distribution(dist_name)
        for item in dist.files or []:
            if item.parts[0] in tops and _keep(item.parts):
                files["/".join(item.parts)] = Path(str(dist.locate_file(item))).read_bytes()
    info = f"{name}-{version}.dist-info"
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: >=3.8\n"
        f"Summary: {name} and its dependencies, bundled for the Metaflow integration tests\n"
    ).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = "".join(f"{p},,\n" for p in sorted(files)) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    return version, files


def add_bundles(universe: Universe) -> None:
    """``requests`` and ``boto3`` as noarch conda packages and wheels, then the channel and index refreshed."""
    root = universe.simple_dir / "index.html"
    for name, dists, requires in BUNDLES:
        version, files = _bundle_files(name, dists)
        if requires:
            info = f"{name}-{version}.dist-info/METADATA"
            files[info] += "".join(f"Requires-Dist: {r}\n" for r in requires).encode()
        depends = ("python >=3.8", *requires)
        write_package(site_packages_package(files, depends=depends), universe.channel_dir, ".conda")
        wheel = f"{name}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(universe.wheels_dir / wheel, "w", zipfile.ZIP_DEFLATED) as zf:
            for member, data in sorted(files.items()):
                zf.writestr(zipfile.ZipInfo(member, (2020, 1, 1, 0, 0, 0)), data)
        digest = hashlib.sha256((universe.wheels_dir / wheel).read_bytes()).hexdigest()
        page = universe.simple_dir / name
        page.mkdir(exist_ok=True)
        (page / "index.html").write_text(
            f'<!DOCTYPE html>\n<html><body>\n<a href="../../wheels/{wheel}#sha256={digest}" '
            f'data-requires-python="&gt;=3.8">{wheel}</a><br>\n</body></html>\n'
        )
        root.write_text(root.read_text().replace("</body>", f'<a href="{name}/">{name}</a>\n</body>'))
    index_channel(universe.channel_dir)


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
    add_bundles(universe)
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
        temp = self.root / "tmp"  # (uv run leaves a uv-HASH.lock there for each project environment)
        temp.mkdir(parents=True, exist_ok=True)
        env.update(
            TMPDIR=str(temp),
            HOME=str(self.root / "home"),
            USERNAME="tester",
            PIP_CONFIG_FILE=os.devnull,
            METAFLOW_HOME=str(self.root / "mfhome"),
            METAFLOW_DEFAULT_DATASTORE="local",
            METAFLOW_DEFAULT_METADATA="local",
            METAFLOW_DATASTORE_SYSROOT_LOCAL=str(self.datastore),
            # (Metaflow's default is /tmp/metaflow_client, where every run of these tests left its folders)
            METAFLOW_CLIENT_CACHE_PATH=str(self.root / "client-cache"),
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


# --- S3 (moto's server, as storage/s3/tests/conftest.py starts it) -----------------------------------------

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret-value-0001"}


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def new_bucket(self) -> str:
        name = f"mf-envcore-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def env(self, bucket: str) -> dict[str, str]:
        """What a machine (or a node) needs to use the bucket: Metaflow's S3 settings and AWS credentials."""
        return {
            **S3_CREDENTIALS,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "METAFLOW_DEFAULT_DATASTORE": "s3",
            "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{bucket}/metaflow",
            "METAFLOW_CONDA_S3ROOT": f"s3://{bucket}/envcore",
            "METAFLOW_S3_ENDPOINT_URL": self.endpoint,
        }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    try:
        with moto_server(tmp_path_factory.mktemp("moto") / "server.log") as port:
            yield S3Server(endpoint=f"http://127.0.0.1:{port}")
    except ServerDidNotStart as exc:
        pytest.fail(str(exc))


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def s3_machine(tmp_path: Path, mf_universe: Universe, s3_server: S3Server, s3_bucket: str) -> Machine:
    """A machine whose Metaflow datastore and envcore store are both in a fresh bucket of moto's server."""
    store = tmp_path / "unused-local-store"
    return Machine(
        root=tmp_path / "s3", store=store, universe=mf_universe, extra_env=s3_server.env(s3_bucket)
    )


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


def two_step_flow(path: Path, start_decorators: str, name: str = "OneDecoratedStepFlow") -> Path:
    """A flow file at ``path``: ``start`` (with ``start_decorators``, one per line) then ``end``."""
    path.write_text(
        "from metaflow import FlowSpec, conda, named_env, pypi, resources, step\n\n\n"
        f"class {name}(FlowSpec):\n"
        + "".join(f"    {line}\n" for line in start_decorators.splitlines())
        + "    @step\n"
        "    def start(self):\n"
        "        self.next(self.end)\n\n"
        "    @step\n"
        "    def end(self):\n"
        "        pass\n\n\n"
        'if __name__ == "__main__":\n'
        f"    {name}()\n"
    )
    return path
