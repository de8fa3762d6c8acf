"""The user guide's flows, run for real: each step prints from inside its own hydrated environment."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from envcore.resolve import local_arch

from ...conftest import store_moved_resolution
from .conftest import Machine, both, metadata, reports, run_id


def _in_envs(machine: Machine, python: str) -> bool:
    return Path(python).parent.parent.parent == machine.cache / "envs"


def test_conda_versions_per_step_and_a_second_run_reuses_them(machine: Machine) -> None:
    out = machine.flow("conda_per_step", "run")
    seen = reports(both(out))
    assert seen["start"]["fx-core"] == "1.0.0"
    assert seen["end"]["fx-core"] == "2.0.0"
    assert _in_envs(machine, seen["start"]["python"]) and _in_envs(machine, seen["end"]["python"])
    assert seen["start"]["python"] != seen["end"]["python"]
    assert "Resolving 2 environments ... done in" in both(out)
    assert both(out).count("Creating Conda environment") == 2
    # two environments cached in one run: each caching line names its steps (they read the same before)
    caching = [line for line in both(out).splitlines() if "Caching " in line]
    assert len(caching) == 2, both(out)
    assert any(" for step start to " in line for line in caching), caching
    assert any(" for step end to " in line for line in caching), caching

    again = machine.flow("conda_per_step", "run")
    assert "Resolving" not in both(again)
    assert both(again).count("Using existing Conda environment") == 2
    assert reports(both(again)) == seen


def test_a_datastore_listed_in_ignore_caching_runs_without_caching_in_the_store(machine: Machine) -> None:
    ignore = {"METAFLOW_CONDA_IGNORE_CACHING_DATASTORES": '["local"]'}
    out = machine.flow("conda_per_step", "run", **ignore)
    seen = reports(both(out))
    assert seen["start"]["fx-core"] == "1.0.0" and seen["end"]["fx-core"] == "2.0.0"
    assert "Caching" not in both(out)
    assert not machine.store.exists() or not any(p.is_file() for p in machine.store.rglob("*"))
    again = machine.flow("conda_per_step", "run", **ignore)  # recorded on this machine: nothing to resolve
    assert "Resolving" not in both(again)
    cached = machine.flow("conda_per_step", "--force-rebuild-environments", "run")  # (resolves again)
    assert "Caching" in both(cached) and any(machine.store.rglob("env")), both(cached)


def test_pypi_versions_per_step(machine: Machine) -> None:
    seen = reports(both(machine.flow("pypi_per_step", "run")))
    assert seen["start"]["fx-web"] == "2.0.0"
    assert seen["end"]["fx-web"] == "1.9.0"
    assert _in_envs(machine, seen["start"]["python"])


def test_mixed_conda_tool_and_pypi_package_with_extras(machine: Machine) -> None:
    seen = reports(both(machine.flow("mixed", "run")))
    assert seen["start"]["fx-extras"] == "0.4.0"
    assert seen["start"]["tool"] == "6.1.0"  # the conda-only binary, found on PATH
    assert Path(seen["start"]["tool_path"]).parent == Path(seen["start"]["python"]).parent
    assert seen["end"]["fx-core"] == "2.1.0rc1"  # extras=["pre"] is honoured (the original ignored it)


def test_base_override_disabled_and_undecorated_steps(machine: Machine) -> None:
    seen = reports(both(machine.flow("base_override", "run")))
    assert seen["start"] | {"python": ""} == {"python": "", "fx-core": "1.0.0", "fx-yaml": "5.4.0"}
    assert seen["override"] == {"fx-core": "1.1.0", "fx-yaml": "5.4.0"}
    assert seen["end"] == {"python": sys.executable, "fx-core-importable": "no"}


def test_undecorated_steps_get_python_and_metaflow_requirements(machine: Machine) -> None:
    out = machine.flow("undecorated", "run")
    seen = reports(both(out))
    assert _in_envs(machine, seen["start"]["python"])
    assert seen["start"]["prefix"] == str(Path(seen["start"]["python"]).parent.parent)
    assert seen["start"]["requests"]  # Metaflow's own pin, from the environment
    assert seen["end"]["python"] == seen["start"]["python"]  # same requirements: one environment
    assert "Resolving 1 environment ..." in both(out)


def test_with_takes_a_python_version_and_a_range_on_the_command_line(machine: Machine) -> None:
    """Metaflow hands `--with` decorators to each task as a spec it writes with strings bare: its parser then
    read python="3.11" back as the float 3.11 and refused it in the task (after the launcher had resolved)."""
    spec = 'pypi:python="3.11",packages={"fx-core": ">=1.0,<2"}'
    out = machine.flow("undecorated", "run", "--with", spec)
    seen = reports(both(out))
    assert _in_envs(machine, seen["start"]["python"]) and seen["end"]["python"] == seen["start"]["python"]


def _ids(text: str) -> list[str]:
    """``req:full`` of every "Creating/Using existing Conda environment REQ (FULL)" line, in order."""
    found = re.findall(
        r"(?:Creating|Using existing) Conda environment ([0-9a-f]{40}) \(([0-9a-f]{40})\)", text
    )
    return [f"{req}:{full}" for req, full in found]


def test_task_metadata_records_the_environment_id(machine: Machine) -> None:
    out = machine.flow("conda_per_step", "run")
    run = run_id(both(out))
    recorded = json.loads(metadata(machine, f"CondaPerStepFlow/{run}/start/1", "conda_env_id"))
    assert recorded[2] == local_arch()
    assert f"{recorded[0]}:{recorded[1]}" == _ids(both(out))[0]


def test_named_environments_by_alias_pathspec_and_extended(machine: Machine) -> None:
    made = machine.envcore(
        "resolve", "--conda", "fx-core==1.0.0", "--conda", "requests", "--alias", "team/core-env"
    )
    (named,) = [line.split()[-1] for line in made.stdout.splitlines() if " full hash " in line]
    source = machine.flow("conda_per_step", "run")
    pathspec = f"CondaPerStepFlow/{run_id(both(source))}/end"

    out = machine.flow("named_env", "run", SOURCE_PATHSPEC=pathspec)
    text = both(out)
    seen = reports(text)
    assert seen["start"]["fx-core"] == "1.0.0"
    assert seen["by_pathspec"]["fx-core"] == "2.0.0"  # the environment `end` of that run ran in
    assert seen["end"]["fx-core"] == "1.0.0" and seen["end"]["fx-yaml"] == "6.0.1"
    ids = _ids(text)
    assert ids[0] == named  # used exactly as named: it has everything Metaflow needs
    assert ids[1] == _ids(both(source))[1]
    assert ids[2] != named  # extended with fx-yaml: a new environment keeping the named one's pins
    assert "Resolving 1 environment ..." in text  # only the extension was resolved


def test_named_environment_without_metaflow_requirements_is_extended(machine: Machine) -> None:
    made = machine.envcore("resolve", "--conda", "fx-core==1.0.0", "--alias", "team/core-env")
    (named,) = [line.split()[-1] for line in made.stdout.splitlines() if " full hash " in line]
    source = machine.flow("conda_per_step", "run")
    out = machine.flow("named_env", "run", SOURCE_PATHSPEC=f"CondaPerStepFlow/{run_id(both(source))}/start")
    seen = reports(both(out))
    assert seen["start"]["fx-core"] == "1.0.0"
    assert _ids(both(out))[0] != named  # requests added on top of the named environment's pins


def test_steps_extending_two_resolutions_of_the_same_requirements_each_keep_their_base(
    machine: Machine, tmp_path: Path
) -> None:
    """team/two:v1 and team/two:v2 are two resolutions of the same requirements (the channel moved on between
    them), so their extensions with fx-yaml share a req id: each step still runs on its own base (both ran
    on one of them: the launcher kept one environment per req id)."""

    arch = local_arch()
    first = json.loads(
        machine.envcore(
            "resolve", "--conda", "fx-core", "--conda", "requests", "--alias", "team/two:v1", "--json"
        ).stdout
    )[arch]
    later = json.loads(
        machine.envcore("resolve", "--conda", "fx-core==1.1.0", "--conda", "requests", "--json").stdout
    )[arch]
    moved_full = store_moved_resolution(machine.store, arch, first, later, "fx-core")
    machine.envcore("alias", f"{first['req_id']}:{moved_full}", "team/two:v2")

    flow = tmp_path / "two_bases.py"
    flow.write_text(
        "from metaflow import FlowSpec, conda, named_env, step\n\n\n"
        "class TwoBasesFlow(FlowSpec):\n"
        '    @named_env(name="team/two:v1")\n'
        '    @conda(libraries={"fx-yaml": "6.0.1"})\n'
        "    @step\n"
        "    def start(self):\n"
        "        import fx_core\n\n"
        '        print(f"step=start fx-core={fx_core.__version__}")\n'
        "        self.next(self.end)\n\n"
        '    @named_env(name="team/two:v2")\n'
        '    @conda(libraries={"fx-yaml": "6.0.1"})\n'
        "    @step\n"
        "    def end(self):\n"
        "        import fx_core\n\n"
        '        print(f"step=end fx-core={fx_core.__version__}")\n\n\n'
        'if __name__ == "__main__":\n'
        "    TwoBasesFlow()\n"
    )
    out = machine.run(sys.executable, flow, "--environment=conda", "run")
    seen = reports(both(out))
    assert seen["start"]["fx-core"] == "2.0.0", both(out)
    assert seen["end"]["fx-core"] == "1.1.0", both(out)


@pytest.mark.parametrize("caching", ["store", "ignored"])
def test_steps_with_different_credentials_for_one_host_each_download_with_their_own(
    machine: Machine, tmp_path: Path, caching: str
) -> None:
    """One step's channel takes a token (/t/<TOKEN>/), another step's index a password, on one host (as an
    Artifactory serves both). Before, the credentials of all the steps resolved together were kept in one map by
    host, so one step's packages were fetched with the other's credential: `Access to http://127.0.0.1:.../
    python-3.11.7-h0_host_cpython.conda was denied (HTTP 403)` and the run failed. With the local datastore in
    CONDA_IGNORE_CACHING_DATASTORES the files are fetched from their sources when the environment is created:
    that was done without any credentials (`fx_core-2.0.0-py3-none-any.whl ... is missing from the store ...,
    and its source cannot be read either: Access ... was denied (HTTP 401)`)."""
    ignore = {"METAFLOW_CONDA_IGNORE_CACHING_DATASTORES": '["local"]'} if caching == "ignored" else {}
    from envcore.testing.servers import serve_directory

    token, password = "tk-qa-T0KEN-only", "pw-qa-S3CRET"
    root = machine.universe.root
    with (
        serve_directory(root, token=token) as channel,
        serve_directory(root, auth=("alice", password)) as index,
    ):
        flow = tmp_path / "two_credentials.py"
        flow.write_text(
            "from metaflow import FlowSpec, conda, pypi, step\n\n\n"
            "class TwoCredentialsFlow(FlowSpec):\n"
            f'    @conda(libraries={{"fx-app": ""}}, channels=["{channel.url}/t/{token}/channel"])\n'
            "    @step\n"
            "    def start(self):\n"
            "        import fx_app\n\n"
            '        print("step=start fx-app=yes")\n'
            "        self.next(self.end)\n\n"
            f'    @pypi(packages={{"fx-extras": "0.3.0"}}, extra_indices=["{index.url_with_credentials}/simple/"])\n'
            "    @step\n"
            "    def end(self):\n"
            "        import fx_extras\n\n"
            '        print(f"step=end fx-extras={fx_extras.__version__}")\n\n\n'
            'if __name__ == "__main__":\n'
            "    TwoCredentialsFlow()\n"
        )
        out = machine.run(sys.executable, flow, "--environment=conda", "run", check=False, **ignore)
    assert out.returncode == 0, both(out)
    assert reports(both(out)) == {"start": {"fx-app": "yes"}, "end": {"fx-extras": "0.3.0"}}
    assert ("Caching" in both(out)) is (caching == "store")
    assert token not in both(out) and password not in both(out)
