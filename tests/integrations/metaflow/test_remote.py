"""Remote execution without a cluster: a "node" is an empty directory with an empty HOME and caches, a
python with no envcore (nor Metaflow) installed, the code package and the store. The step's bootstrap
commands run there in a subprocess, then the step itself, as Kubernetes or Batch would run them.

With the local store the code package comes from ``package save``; with S3 (moto's server on 127.0.0.1) the
run's datastore and the envcore store are both in the bucket, and the node runs Metaflow's own package
commands (download the code package with boto3, extract it) before the bootstrap commands."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import Machine, S3Server, both, reports, run_id, two_step_flow

# What a node image provides (Metaflow installs requests on its nodes; the bootstrap commands pip-install
# the rest unless METAFLOW_SKIP_INSTALL_DEPENDENCIES is set, which a node with them preinstalled sets).
NODE_PACKAGES = (
    "requests", "urllib3", "idna", "certifi", "charset_normalizer",
    "pluggy", "yaml", "packaging", "click", "fsspec", "backports", "rattler", "uv",
    "tqdm", "boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six",
)  # fmt: skip


@pytest.fixture(scope="session")
def node_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``pip install --target`` style directory with the node's third-party packages (links)."""
    from uv import find_uv_bin

    site = tmp_path_factory.mktemp("node-site")
    for name in NODE_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, name
        if spec.submodule_search_locations:
            (site / name).symlink_to(next(iter(spec.submodule_search_locations)))
        else:  # a single module (six)
            (site / Path(spec.origin).name).symlink_to(spec.origin)
    (site / "bin").mkdir()
    (site / "bin" / "uv").symlink_to(find_uv_bin())
    return site


@dataclass
class Node:
    root: Path
    bin: Path
    site: Path
    store: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.root / "home"),
            "USERNAME": "tester",
            "PYTHONPATH": f"{self.root / '.mf_code'}:{self.site}",  # as Metaflow's package commands set it
            "METAFLOW_DEFAULT_DATASTORE": "local",
            "METAFLOW_CLIENT_CACHE_PATH": str(self.root / "client-cache"),
            "METAFLOW_CONDA_LOCALROOT": str(self.store),
            "METAFLOW_SKIP_INSTALL_DEPENDENCIES": "1",
        }
        env.update(extra)
        return env

    def sh(self, script: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return self.exec(["bash", "-c", script], **extra)

    def exec(self, argv: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=self.root,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=300,
        )


def _new_node(tmp_path: Path, node_site: Path, store: Path) -> Node:
    root, bin_dir = tmp_path / "node", tmp_path / "node-bin"
    (root / "home").mkdir(parents=True)
    bin_dir.mkdir()
    interpreter = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (bin_dir / "python").symlink_to(interpreter)
    return Node(root=root, bin=bin_dir, site=node_site, store=store)


@pytest.fixture
def node(tmp_path: Path, node_site: Path, machine: Machine) -> Node:
    return _new_node(tmp_path, node_site, machine.store)


def _ship(machine: Machine, node: Node, flow: str, step: str) -> list[str]:
    """The code package extracted on the node, and the step's bootstrap commands."""
    package = machine.root / "package.tgz"
    machine.flow(flow, "package", "save", str(package))
    with tarfile.open(package) as tar:
        tar.extractall(node.root, filter="data")
    commands: list[str] = json.loads(machine.flow(flow, "environment", "bootstrap-commands", step).stdout)
    return commands


def test_node_hydrates_from_the_store_and_runs_the_step(machine: Machine, node: Node) -> None:
    out = machine.flow("conda_per_step", "run")
    run = run_id(both(out))
    start_dir = machine.datastore / ".metaflow" / "CondaPerStepFlow" / run / "start"
    (start_task,) = [p.name for p in start_dir.iterdir() if not p.name.startswith("_")]
    commands = _ship(machine, node, "conda_per_step", "end")
    assert any("pip install" in c and "py-rattler==" in c for c in commands)
    assert any("METAFLOW_ENVCORE_PLUGIN_MODULES=" in c and "envcore_rattler.plugin" in c for c in commands)
    # the node's python has no envcore: it comes from the code package only
    bare = node.sh("python -c 'import envcore'", PYTHONPATH=str(node.site))
    assert bare.returncode != 0 and "No module named 'envcore'" in bare.stderr

    step = (
        "./__conda_python -u conda_per_step.py --environment=conda --datastore=local --metadata=local --quiet "
        f"step end --run-id {run} --task-id 99 --input-paths {run}/start/{start_task}"
    )
    done = node.sh(" && ".join([*commands, step]), METAFLOW_DATASTORE_SYSROOT_LOCAL=str(machine.datastore))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Bootstrapping environment ..." in done.stdout and "Environment bootstrapped." in done.stdout
    seen = dict(w.split("=", 1) for w in done.stdout.split() if "=" in w)
    assert seen["fx-core"] == "2.0.0"
    python = Path(seen["python"])
    assert python == node.root / "__conda_python"
    assert Path(os.path.realpath(python)).is_relative_to(node.root / "home" / ".cache" / "envcore" / "envs")
    env_id = json.loads((node.root / "_env_id").read_text())
    # the task registered its environment in the run's metadata (the local provider's files)
    meta_dir = machine.datastore / ".metaflow" / "CondaPerStepFlow" / run / "end" / "99" / "_meta"
    records = [json.loads(p.read_text()) for p in meta_dir.glob("*.json")]
    (recorded,) = [r["value"] for r in records if r.get("field_name") == "conda_env_id"]
    assert json.loads(recorded) == env_id
    # a reused node: the environment is there, nothing is fetched or installed
    again = node.sh(
        " && ".join([*commands, step.replace("--task-id 99", "--task-id 100")]),
        METAFLOW_DATASTORE_SYSROOT_LOCAL=str(machine.datastore),
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Setting up the environment ... already there." in again.stdout
    assert json.loads((node.root / "_env_id").read_text()) == env_id


def test_node_fetches_a_named_environment_at_execution(machine: Machine, node: Node) -> None:
    out = machine.flow("build_in_env", "run", "--my_var", "5")
    run = run_id(both(out))
    assert reports(both(out))["end"]["fx-core"] == "1.1.0"
    commands = _ship(machine, node, "build_in_env", "end")
    assert any("--fetch" in c and "@{METAFLOW_RUN_ID}" in c for c in commands)
    check = "./__conda_python -c 'import fx_core; print(\"fx-core=\" + fx_core.__version__)'"
    done = node.sh(
        " && ".join([*commands, check]),
        METAFLOW_RUN_ID=run,
        METAFLOW_RUN_ID_BASE=run,
        METAFLOW_INIT_MY_VAR="5",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Environment 'test/build_in_step/id_{run}_{run}_5' is " in done.stdout
    assert "fx-core=1.1.0" in done.stdout


def test_node_refuses_a_fetched_environment_without_what_metaflow_needs(machine: Machine, node: Node) -> None:
    machine.envcore("resolve", "--conda", "fx-core==1.1.0", "--alias", "test/build_in_step/id_77_77_5")
    commands = _ship(machine, node, "build_in_env", "end")
    assert any("--needs" in c and "requests" in c for c in commands)
    done = node.sh(
        " && ".join(commands), METAFLOW_RUN_ID="77", METAFLOW_RUN_ID_BASE="77", METAFLOW_INIT_MY_VAR="5"
    )
    assert done.returncode != 0
    message = " ".join(done.stderr.split())
    assert "Traceback" not in message, message
    assert (
        "Cannot bootstrap the environment of this step: The environment 'test/build_in_step/id_77_77_5' that step "
        "'end' fetches at execution lacks what Metaflow needs in a task: requests>=2.21.0." in message
    ), message


def test_node_without_the_environment_in_the_store_fails_clearly(machine: Machine, node: Node) -> None:
    commands = _ship(machine, node, "conda_per_step", "end")
    done = node.sh(" && ".join(commands), METAFLOW_CONDA_LOCALROOT=str(node.root / "empty-store"))
    assert done.returncode != 0
    assert "Cannot bootstrap the environment of this step" in done.stderr
    assert "Traceback" not in done.stderr


def _task_meta(
    datastore: Path, flow: str, run: str, step: str, task: str | None = None
) -> tuple[str, dict[str, str]]:
    """The task id (of the step's one task if not given) and its metadata fields (the local provider's
    files)."""
    step_dir = datastore / ".metaflow" / flow / run / step
    if task is None:
        (task,) = [p.name for p in step_dir.iterdir() if not p.name.startswith("_")]
    records = [json.loads(p.read_text()) for p in (step_dir / task / "_meta").glob("*.json")]
    return task, {r["field_name"]: r["value"] for r in records if "field_name" in r}


def test_node_with_the_s3_datastore_and_store(
    s3_machine: Machine, s3_server: S3Server, s3_bucket: str, tmp_path: Path, node_site: Path
) -> None:
    """Run, code package and envcore store all in S3: the node downloads the code package with Metaflow's
    own commands, loads envcore-s3 from it by module path and hydrates from the bucket alone."""
    machine = s3_machine
    # a local run uploads its code package only when asked (remote decorators always do)
    out = machine.flow(
        "conda_per_step", "--datastore=s3", "run", METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE="1"
    )
    run = run_id(both(out))
    assert reports(both(out))["end"]["fx-core"] == "2.0.0"
    store_keys = s3_server.keys(s3_bucket, "envcore/")
    assert any(k.endswith((".conda", ".tar.bz2")) for k in store_keys), store_keys
    assert not machine.store.exists()  # nothing went to a local store
    start_task, start_meta = _task_meta(machine.datastore, "CondaPerStepFlow", run, "start")
    code = json.loads(start_meta["code-package"])
    assert code["ds_type"] == "s3" and code["location"].startswith(f"s3://{s3_bucket}/metaflow/")

    commands: list[str] = json.loads(
        machine.flow("conda_per_step", "--datastore=s3", "environment", "bootstrap-commands", "end").stdout
    )
    assert any("METAFLOW_ENVCORE_PLUGIN_MODULES=" in c and "envcore_s3.plugin" in c for c in commands)
    assert any("pip install" in c and "boto3==" in c for c in commands)
    step = (
        "./__conda_python -u conda_per_step.py --environment=conda --datastore=s3 --metadata=local --quiet "
        f"step end --run-id {run} --task-id 99 --input-paths {run}/start/{start_task}"
    )
    # The node's entry point as Metaflow's Kubernetes plugin builds it (without its log capture): log
    # variables, Metaflow's package commands (download with boto3, extract), then ours and the step, all in
    # one `bash -c "..."` split with shlex.
    entry = (
        "import json, shlex, sys; from metaflow.metaflow_environment import MetaflowEnvironment; "
        "from metaflow.mflog import export_mflog_env_vars; "
        "url, meta, run, ours = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]); "
        "logs = export_mflog_env_vars(flow_name='CondaPerStepFlow', run_id=run, step_name='end', task_id=99, "
        "retry_count=0, datastore_type='s3', stdout_path='$PWD/.logs/out', stderr_path='$PWD/.logs/err'); "
        "init = ' && '.join(MetaflowEnvironment(None).get_package_commands(url, 's3', meta)); "
        "cmd = 'true && mkdir -p $PWD/.logs && %s && %s && (%s)' % (logs, init, ' && '.join(ours)); "
        "print(json.dumps(shlex.split('bash -c \"%s\"' % cmd)))"
    )
    argv = json.loads(
        machine.run(
            sys.executable,
            "-c",
            entry,
            code["location"],
            code["metadata"],
            run,
            json.dumps([*commands, step]),
        ).stdout
    )
    node = _new_node(tmp_path, node_site, tmp_path / "no-local-store")
    done = node.exec(
        argv,
        PYTHONPATH=str(node.site),  # the package commands add the code package's directory
        METAFLOW_DATASTORE_SYSROOT_LOCAL=str(machine.datastore),  # the local metadata provider's files
        **s3_server.env(s3_bucket),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    workdir = node.root / "metaflow"  # Metaflow's package commands work there
    assert (workdir / ".mf_meta" / "envcore_node" / "envcore_s3" / "store.py").is_file()
    assert "Environment bootstrapped." in done.stdout
    seen = dict(w.split("=", 1) for w in done.stdout.split() if "=" in w)
    assert seen["fx-core"] == "2.0.0"
    assert Path(seen["python"]) == workdir / "__conda_python"
    assert Path(os.path.realpath(seen["python"])).is_relative_to(node.root / "home" / ".cache" / "envcore")
    assert not node.store.exists()
    _, end_meta = _task_meta(machine.datastore, "CondaPerStepFlow", run, "end", "99")
    assert json.loads(end_meta["conda_env_id"]) == json.loads((workdir / "_env_id").read_text())
    # the task's artifacts and logs went to the bucket
    assert s3_server.keys(s3_bucket, f"metaflow/CondaPerStepFlow/{run}/end/99/")


def test_a_reused_resolution_is_cached_into_a_new_store_for_a_remote_step(
    machine: Machine, tmp_path: Path
) -> None:
    flow = two_step_flow(
        tmp_path / "remote_flow.py", '@resources(cpu=1)\n@conda(libraries={"fx-core": "1.0.0"})'
    )
    # @resources stands for @kubernetes here: this machine has no cluster to validate the real one against
    remote = {"METAFLOW_CONDA_REMOTE_COMMANDS": '["resources"]'}
    machine.run(sys.executable, flow, "--environment=conda", "environment", "resolve", **remote)
    other = tmp_path / "moved-store"  # the site moved to another store since
    done = machine.run(
        sys.executable, flow, "--environment=conda", "environment", "bootstrap-commands", "start",
        METAFLOW_CONDA_LOCALROOT=str(other), **remote,
    )  # fmt: skip
    assert "Resolving" not in both(done)  # reused from this machine's record...
    assert any(p.name == "env" for p in other.rglob("env")), both(done)  # ...and cached where the node looks
