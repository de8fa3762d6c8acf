"""``metaflow environment ...`` and ``python flow.py --environment=conda environment ...`` against real
stores and runs."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

from envcore.resolve import local_arch

from .conftest import BIN, Machine, both, printed, reports, run_id


def _ids(stdout: str) -> list[str]:
    return [line.split()[-1] for line in stdout.splitlines() if " full hash " in line]


def test_resolve_show_create_get_alias(machine: Machine, other_machine: Machine, tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("fx-core==1.1.0\n")
    out = machine.metaflow("environment", "resolve", "-r", str(req), "--alias", "team/req-env")
    (ref,) = _ids(out.stdout)
    assert "### Environment for architecture " + local_arch() in out.stdout
    assert "Environment of type pypi-only" in out.stdout
    assert "pypi::requests==>=2.21.0" in out.stdout  # Metaflow's own requirement, on the PyPI side
    assert "Aliased as team/req-env:latest" in out.stderr

    # another machine: same store, nothing local
    shown = other_machine.metaflow("environment", "show", "team/req-env").stdout
    assert f"### Environment for 'team/req-env' (arch '{local_arch()}'):" in shown
    assert f"full hash {ref}" in shown and "Aliases team/req-env:latest (mutable)" in shown
    other_machine.metaflow("environment", "alias", "team/req-env", "team/req-env:v1")
    created = other_machine.metaflow("environment", "create", "team/req-env:v1", "--name", "work")
    python = other_machine.cache / "envs" / "work" / "bin" / "python"
    assert str(python.parent.parent) in created.stdout
    done = subprocess.run(
        [python, "-c", "import fx_core; print(fx_core.__version__)"], capture_output=True, text=True
    )
    assert done.stdout.strip() == "1.1.0", done.stderr
    got = machine.metaflow("environment", "get", "team/req-env:v1")
    assert (
        f"full hash {ref}" in got.stdout and "Environment of type pypi-only" in got.stdout
    )  # the description
    both_shown = machine.metaflow("environment", "show", "team/req-env", "team/nothing", check=False)
    assert both_shown.returncode == 1
    assert f"### Environment for 'team/req-env' (arch '{local_arch()}'):" in both_shown.stdout
    assert f"### Environment for 'team/nothing' (arch '{local_arch()}') was not found" in both_shown.stdout


def test_create_for_another_arch(machine: Machine) -> None:
    other = "linux-aarch64" if local_arch() == "linux-64" else "linux-64"  # cannot run here
    out = machine.metaflow(
        "environment", "resolve", "--conda", "fx-core", "--arch", local_arch(), "--arch", other
    )
    ref = _ids(out.stdout)[0]
    created = machine.metaflow("environment", "create", ref, "--arch", other)
    prefix = machine.cache / "envs" / f"metaflowtmp_{ref.replace(':', '_')}_{other}"
    assert f"Environment {ref} for {other} created at {prefix}" in created.stdout
    assert json.loads((prefix / ".metaflowenv").read_text()) == [*ref.split(":"), other]
    quiet = machine.metaflow("environment", "--quiet", "create", ref, "--arch", other)
    assert quiet.stdout.splitlines()[-1] == str(prefix / "bin" / "python")  # (after Metaflow's banner)
    kernel = machine.metaflow(
        "environment", "create", ref, "--arch", other, "--name", "nb", "--install-notebook", check=False
    )
    text = " ".join(kernel.stderr.split())
    assert kernel.returncode == 2 and "Traceback" not in text
    assert f"--install-notebook needs an environment that runs on this {local_arch()} machine" in text


def test_skip_metaflow_deps_and_errors(machine: Machine) -> None:
    out = machine.metaflow("environment", "resolve", "--conda", "fx-core", "--skip-metaflow-deps")
    assert "requests" not in out.stdout.split("User-requested packages")[1].split("\n")[0]
    bad = machine.metaflow("environment", "resolve", "--conda", "fx-core", "--alias", "Bad/Name", check=False)
    assert bad.returncode == 2  # bad input, as a bad option
    assert "metaflow environment: Invalid environment alias 'Bad/Name'" in " ".join(bad.stderr.split())
    assert "Traceback" not in bad.stderr
    unknown = machine.metaflow("environment", "show", "team/nothing", check=False)
    assert unknown.returncode == 1 and "does not refer to a known environment" in unknown.stderr
    no_run = machine.metaflow("environment", "show", "step:NoSuchFlow/1/start", check=False)
    assert no_run.returncode == 1 and no_run.stderr.startswith("metaflow environment: ")
    assert "Traceback" not in no_run.stderr and "internal error" not in no_run.stderr


def test_step_pathspecs_from_a_finished_run(machine: Machine, other_machine: Machine, tmp_path: Path) -> None:
    # local runs upload their code package only when asked to (remote runs always do)
    out = machine.flow("conda_per_step", "run", METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE="1")
    pathspec = f"CondaPerStepFlow/{run_id(both(out))}/start"
    env_line = next(line for line in both(out).splitlines() if "Creating Conda environment" in line)
    req, full = env_line.split("environment ")[1].replace("(", "").replace(")...", "").split()
    # machine B shares the store and the run's metadata (datastore), not the local record
    shared = {"METAFLOW_DATASTORE_SYSROOT_LOCAL": str(machine.datastore)}
    shown = other_machine.metaflow("environment", "show", "--pathspec", pathspec, **shared).stdout
    assert f"### Environment for 'step:{pathspec}'" in shown and f"full hash {req}:{full}" in shown
    assert (
        f"full hash {req}:{full}"
        in other_machine.metaflow("environment", "show", f"step:{pathspec}", **shared).stdout
    )
    into = tmp_path / "debug"
    other_machine.metaflow(
        "environment", "create", pathspec, "--pathspec", "--name", "dbg", "--into-dir", str(into), **shared
    )
    assert (into / "conda_per_step.py").exists()
    done = subprocess.run(
        [into / "__conda_python", "-c", "import fx_core; print(fx_core.__version__)"],
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "1.0.0", done.stderr


def test_fetch_at_exec_with_run_id_and_parameter_substitution(machine: Machine) -> None:
    out = machine.flow("build_in_env", "run", "--my_var", "7")
    text = both(out)
    seen = reports(text)
    run = run_id(text)
    assert seen["start"]["alias"] == f"test/build_in_step/id_{run}_{run}_7"
    assert seen["end"]["fx-core"] == "1.1.0"
    assert f"Environment 'test/build_in_step/id_{run}_{run}_7' is " in text


def test_fetch_at_exec_by_task_id_gives_each_task_its_environment(machine: Machine, tmp_path: Path) -> None:
    for version in ("1.0.0", "2.0.0"):
        req = tmp_path / f"fx-core-{version}.txt"
        req.write_text(f"fx-core=={version}\n")
        machine.metaflow("environment", "resolve", "--alias", f"team/core-{version[0]}", "-r", str(req))
    for task in range(1, 9):  # the run's task ids: start is 1, the foreach's tasks follow
        machine.envcore("alias", f"team/core-{1 + task % 2}", f"team/task-{task}")
    text = both(machine.flow("per_task_env", "run"))
    seen = [dict(w.split("=", 1) for w in line.split() if "=" in w) for line in printed(text)["fan"]]
    assert len(seen) == 3, text
    for words in seen:  # fx-core 1.0.0 for even task ids, 2.0.0 for odd ones
        assert words["fx-core"] == ("1.0.0" if int(words["task"]) % 2 == 0 else "2.0.0"), text


def test_flow_level_resolve_and_show(machine: Machine, tmp_path: Path) -> None:
    show = machine.flow("base_override", "environment", "show")
    assert "Step start (" in show.stdout and "\tEnvironment is unresolved" in show.stdout
    assert "Step end (" in show.stdout and "\tEnvironment is disabled" in show.stdout

    resolved = machine.flow("base_override", "environment", "resolve")
    assert "Resolving 2 environments ... done in" in resolved.stderr
    assert "### Environment for step start ###" in resolved.stdout
    assert "### Environment for step override ###" in resolved.stdout
    assert len(_ids(resolved.stdout)) == 2
    again = machine.flow("base_override", "environment", "resolve", "start")
    assert "No environments to resolve, use --force to force re-resolution" in again.stderr
    forced = machine.flow(
        "base_override", "environment", "resolve", "--force", "--alias", "team/start-env", "start"
    )
    assert "Resolving 1 environment ... done in" in forced.stderr
    assert "Aliases team/start-env:latest (mutable)" in forced.stdout
    refused = machine.flow("base_override", "environment", "resolve", "--alias", "team/two", check=False)
    assert refused.returncode == 1
    assert "Cannot specify aliases if more than one environment" in " ".join(refused.stderr.split())

    data = json.loads(machine.flow("base_override", "environment", "show", "--json").stdout)
    assert data["end"]["is_disabled"] is True
    assert data["start"]["states"] == ["resolved", "cached"]
    assert data["start"]["error"] is None and data["start"]["requested_hash"] == data["start"]["env_id"][0]
    assert "fx-core" in data["start"]["requested_packages"]["conda"]
    assert any(s.startswith("conda::file://") for s in data["start"]["requested_sources"])
    local = machine.flow("base_override", "environment", "show", "--local-only", "--json").stdout
    assert json.loads(local)["start"]["states"] == ["resolved"]  # the store is not asked
    written = tmp_path / "show.json"
    machine.flow("base_override", "environment", "show", "--output", str(written))
    assert json.loads(written.read_text()) == data
    umask = os.umask(0o22)
    os.umask(umask)
    # a file for the user, as open() makes it (before: 0600, the private mode of envcore's own records)
    assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask
    machine.flow("base_override", "environment", "resolve", "start", "--output", str(written))
    assert set(json.loads(written.read_text())) == {"start"}
    assert data["start"]["env"]["req_id"] == data["start"]["env_id"][0]
    # a run uses what was resolved, and then it is locally present
    run = machine.flow("base_override", "run")
    assert "Resolving" not in run.stderr
    assert "locally present" in machine.flow("base_override", "environment", "show", "start").stdout


def test_flow_level_resolve_refuses_an_alias_for_several_environments_before_resolving(
    machine: Machine,
) -> None:
    """As the original: before, every environment was resolved (minutes, on a real channel), cached and
    recorded, and only then was the alias refused."""
    refused = machine.flow("base_override", "environment", "resolve", "--alias", "team/two", check=False)
    text = " ".join(refused.stderr.split())
    assert refused.returncode == 1, text
    assert (
        "found 2 environments: one for step(s) start; one for step(s) override. Give the steps to alias."
        in text
    )
    assert "Resolving" not in text and not machine.store.exists(), text
    data = json.loads(machine.flow("base_override", "environment", "show", "--json").stdout)
    assert data["start"]["states"] == data["override"]["states"] == ["unresolved"]
    disabled = machine.flow(
        "base_override", "environment", "resolve", "--alias", "team/e", "end", check=False
    )
    assert disabled.returncode == 1
    assert "Cannot specify aliases: the steps have no environment to resolve/cache" in " ".join(
        disabled.stderr.split()
    )


def test_flow_level_resolve_dry_run_resolves_and_keeps_nothing(machine: Machine) -> None:
    """The original's --dry-run (before: "No such option: --dry-run")."""
    dry = machine.flow("base_override", "environment", "resolve", "--dry-run", "--alias", "team/dry", "start")
    assert "### Environment for step start ###" in dry.stdout and len(_ids(dry.stdout)) == 1
    assert "Resolving 1 environment ... done in" in dry.stderr
    assert "Dry-run -- not caching or aliasing" in dry.stderr and "Aliased" not in dry.stderr
    assert not machine.store.exists()
    data = json.loads(machine.flow("base_override", "environment", "show", "--json", "start").stdout)
    assert data["start"]["states"] == ["unresolved"]
    assert machine.metaflow("environment", "show", "team/dry", check=False).returncode == 1


def test_create_with_a_notebook_kernel(machine: Machine, tmp_path: Path) -> None:
    out = machine.flow("conda_per_step", "run", METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE="1")
    pathspec = f"CondaPerStepFlow/{run_id(both(out))}/end"
    into = tmp_path / "nb"
    data = tmp_path / "jupyter"
    done = machine.metaflow(
        "environment", "create", "--name", "nbenv", "--install-notebook", "--into-dir", str(into),
        "--pathspec", pathspec, JUPYTER_DATA_DIR=str(data),
    )  # fmt: skip
    assert f"Jupyter kernel 'Metaflow {pathspec}' installed" in done.stdout
    assert f"Source `{into / 'metaflow_setup.sh'}`" in done.stdout
    (kernel,) = list((data / "kernels").iterdir())
    spec = json.loads((kernel / "kernel.json").read_text())
    assert spec["display_name"] == f"Metaflow {pathspec}"
    assert spec["argv"][1:3] == ["-m", "ipykernel_launcher"]
    assert spec["env"]["PYTHONPATH"].split(":")[0] == str(into)
    # the kernel's environment is the step's plus ipykernel (a derived environment), and it imports Metaflow
    # (from the code package) and the flow's files, as a task does
    check = (
        "import fx_core, ipykernel, metaflow, conda_per_step; from metaflow import Flow; "
        "print(fx_core.__version__, ipykernel.__version__, metaflow.__file__)"
    )
    kernel_env = {**machine.env(), **spec["env"]}
    versions = subprocess.run(
        [spec["argv"][0], "-c", check], capture_output=True, text=True, env=kernel_env, cwd=tmp_path
    )
    assert versions.stdout.split()[:2] == ["2.0.0", "6.29.5"], versions.stderr
    assert versions.stdout.split()[2].startswith(str(into))
    assert (into / "conda_per_step.py").exists()


def test_into_dir_setup_reads_the_run(machine: Machine, tmp_path: Path) -> None:
    out = machine.flow("conda_per_step", "run", METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE="1")
    pathspec = f"CondaPerStepFlow/{run_id(both(out))}/start"
    into = tmp_path / "dbg"
    machine.metaflow("environment", "create", "--into-dir", str(into), "--pathspec", pathspec)
    # sourcing metaflow_setup.sh: the environment's python, Metaflow and the flow's code, the run readable
    read = (
        "import sys, fx_core, metaflow; from metaflow import Step, namespace; namespace(None); "
        f"print(fx_core.__version__, metaflow.__file__, sys.executable); print(Step({pathspec!r}).task.stdout)"
    )
    script = f". ./metaflow_setup.sh && python -c {shlex.quote(read)}"
    done = machine.run("sh", "-c", script, cwd=into)
    version, metaflow_file, python = done.stdout.split()[:3]
    assert version == "1.0.0" and metaflow_file.startswith(str(into)) and "/envs/" in python
    assert "step=start" in done.stdout
    # `__conda_python` is the executable to use, from anywhere
    direct = machine.run(into / "__conda_python", "-c", "from metaflow import Flow; import conda_per_step")
    assert direct.returncode == 0


def _fake_index(root: Path, name: str, version: str, module: str) -> str:
    """A PEP 503 index at ``root`` with one wheel of ``name`` whose ``module`` says it is the fake one."""
    wheel = root / "wheels" / f"{name}-{version}-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    info = f"{name}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"FAKE = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{p},,\n" for p in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as zf:
        for member, text in files.items():
            zf.writestr(member, text)
    page = root / "simple" / name
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        f'<html><body><a href="../../wheels/{wheel.name}">{wheel.name}</a></body></html>'
    )
    return (root / "simple").as_uri() + "/"


def test_into_dir_without_a_code_package(machine: Machine, tmp_path: Path) -> None:
    out = machine.flow("conda_per_step", "run")  # a local run stores no code package by default
    pathspec = f"CondaPerStepFlow/{run_id(both(out))}/start"
    into = tmp_path / "nothing"
    args = ("environment", "create", "--name", "nocode", "--into-dir", str(into), "--pathspec", pathspec)
    # the original's fallback: the Metaflow the run used, from the PyPI sources; --strict (the default) wants
    # exactly what the run had, and this extension came from this checkout (an editable install: PYTHONPATH)
    done = machine.metaflow(*args, check=False)
    text = " ".join(done.stderr.split())
    assert done.returncode == 1, text
    assert text.startswith(
        f"metaflow environment: Step {pathspec} has no code package, and the Metaflow its run "
        "used cannot be installed as it was: the extension 'envcore' came from PYTHONPATH"
    ), text
    assert "Use --no-strict" in text and "METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE=1" in text
    assert "internal error" not in text and "Traceback" not in text
    assert not into.exists() and not (machine.cache / "envs" / "nocode").exists()
    # --no-strict: Metaflow at the run's version (a stand-in here), the extension left out, with a warning
    version = importlib.metadata.version("metaflow")
    index = _fake_index(tmp_path / "index", "metaflow", version, "metaflow")
    done = machine.metaflow(*args, "--no-strict", METAFLOW_CONDA_DEFAULT_PYPI_SOURCE=index)
    assert "Warning: the extension 'envcore' came from PYTHONPATH" in " ".join(done.stderr.split())
    assert f"the Metaflow of step:{pathspec}'s run (metaflow=={version}) in .mf_code" in " ".join(
        both(done).split()
    )
    assert (into / ".mf_code" / "metaflow" / "__init__.py").exists()
    ran = machine.run(
        "sh", "-c", ". ./metaflow_setup.sh && python -c 'import metaflow; print(metaflow.FAKE)'", cwd=into
    )
    assert ran.stdout.strip() == version
    direct = machine.run(into / "__conda_python", "-c", "import metaflow, fx_core; print(metaflow.FAKE)")
    assert direct.stdout.strip() == version
    # the sources lack it: one paragraph naming them
    elsewhere = tmp_path / "elsewhere"
    again = machine.metaflow(*args[:5], str(elsewhere), *args[6:], "--no-strict", check=False)
    text = " ".join(again.stderr.split())
    assert (
        again.returncode == 1
        and f"Installing metaflow=={version} into {elsewhere / '.mf_code'} failed" in text
    ), text
    assert "Check that the PyPI sources" in text and "Traceback" not in text and not elsewhere.exists()


def test_task_environment_info(machine: Machine) -> None:
    out = machine.flow("conda_per_step", "run", METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE="1")
    pathspec = f"CondaPerStepFlow/{run_id(both(out))}/start"
    code = (
        "import json; from metaflow import Step, namespace; namespace(None); "
        f"task = Step({pathspec!r}).task; "
        "print(json.dumps([task.environment_info, task.metadata_dict['conda_env_id']]))"
    )
    info, env_id = json.loads(machine.run(sys.executable, "-c", code).stdout)
    assert info["type"] == "conda", info
    assert [info["req_id"], info["full_id"], info["arch"]] == json.loads(env_id)
    assert "conda::fx-core==1.0.0" in info["user_deps"].split("; ")
    assert any(p.startswith("fx-core-1.0.0") for p in info["all_packages"].split("; "))
    assert (machine.root / "client-cache").is_dir()  # the client's cache is the machine's: none in /tmp


def test_quiet_file_output_holds_the_quiet_output_without_metaflows_banner(
    machine: Machine, tmp_path: Path
) -> None:
    machine.envcore("resolve", "--conda", "fx-core", "--alias", "team/qf:v1")
    written = tmp_path / "quiet.txt"
    done = machine.metaflow("environment", "--quiet-file-output", str(written), "show", "team/qf:v1")
    lines = written.read_text().splitlines()
    assert lines[0] == f"team/qf:v1@{local_arch()}" and len(lines) == 2, written.read_text()
    assert lines[1] in done.stdout and "Metaflow (" in done.stdout  # (the banner is Metaflow's, on stdout)
    missing = tmp_path / "no-such-folder" / "quiet.txt"
    refused = machine.metaflow("environment", "--quiet-file-output", str(missing), "show", "x", check=False)
    text = " ".join(refused.stderr.split())
    # before: "Cannot use PATH: ... Check the folders envcore is configured with (METAFLOW_ENVCORE_CACHE_DIR ..."
    assert refused.returncode == 1 and "METAFLOW_ENVCORE_CACHE_DIR" not in text, text
    assert f"Cannot write --quiet-file-output {missing}: No such file or directory." in text, text


def test_a_requirements_file_is_read_as_the_resolve_reads_it_for_metaflows_pins(
    machine: Machine,
) -> None:
    """``-r -``: the command looks at the file to put Metaflow's pins on its side, then resolves it; standard
    input, read by the first, used to reach the second empty (an environment of python and the pins only)."""
    (machine.root / "work").mkdir(parents=True, exist_ok=True)
    (machine.root / "work" / "base.txt").write_text("fx-http==1.1.0\n")
    done = subprocess.run(
        [str(BIN / "metaflow"), "environment", "resolve", "--dry-run", "-r", "-"],
        input="-r base.txt\nfx-core==1.1.0\n",
        cwd=machine.root / "work",
        env=machine.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Environment of type pypi-only" in done.stdout and "names no packages" not in done.stderr
    requested = next(line for line in done.stdout.splitlines() if line.startswith("User-requested packages"))
    for dep in ("pypi::fx-http==1.1.0", "pypi::fx-core==1.1.0", "pypi::requests==>=2.21.0"):
        assert dep in requested, requested
    # the option, not the file's name, says its format here too (a .yml given to -r was read as an environment)
    (machine.root / "work" / "deps.yml").write_text("fx-core==1.1.0\n")
    named = machine.metaflow("environment", "resolve", "--dry-run", "-r", "deps.yml")
    assert "Environment of type pypi-only" in named.stdout and "pypi::requests==>=2.21.0" in named.stdout
