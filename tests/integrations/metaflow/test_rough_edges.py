"""Rough edges an explorer found, each checked with real flows and commands: --quiet, rebuilding environments,
step references that name no environment, bold markers, the original's group and --local-only options, a bad
step in the flow's ``environment show``, messages about ``disabled``, and the resolve messages."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import Machine, both, reports, run_id, two_step_flow

FLOWS = Path(__file__).parent / "flows"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ")
PROGRESS = (
    "Caching ",
    "already cached in",
    "Fetching and verifying",
    "already in the package cache",
    "Installing ",
    "Extracting and",
)


def flow(machine: Machine, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return machine.run(sys.executable, FLOWS / f"{name}.py", "--environment=conda", *args, check=check)


def progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(p in line for p in PROGRESS)]


def test_quiet_progress_and_force_rebuild(machine: Machine) -> None:
    quiet = flow(machine, "edges", "--quiet", "run")  # a new environment: resolved, cached, created
    assert reports(both(quiet))["start"]["fx-core"] == "1.1.0"
    assert progress_lines(both(quiet)) == [], both(quiet)

    # the environment loses a package: --force-rebuild-environments builds it again from the package files
    (site,) = machine.cache.glob("envs/metaflow_*/lib/python3*/site-packages")
    shutil.rmtree(site / "fx_core")
    rebuilt = flow(machine, "edges", "--force-rebuild-environments", "run")
    text = both(rebuilt)
    assert reports(text)["start"]["fx-core"] == "1.1.0", text
    assert "Creating Conda environment" in text and "Using existing Conda environment" not in text
    assert (site / "fx_core").is_dir()
    # without --quiet, envcore's progress is Metaflow's: timestamped, as the original's messages are
    shown = progress_lines(rebuilt.stdout)
    assert any("Installing " in line for line in shown), text
    assert all(TIMESTAMP.match(line) for line in shown), shown
    assert progress_lines(rebuilt.stderr) == [], rebuilt.stderr
    # what was found and installed comes before the line that closes the work, whose time has hundredths
    # (before, after it, and "done in 0 seconds" where the lines before said 0.6 s)
    assert re.search(
        r"Extracting and linking Conda environment \.\.\. done in \d+\.\d\d seconds\.$", shown[-1]
    )
    assert any("Installing " in line for line in shown[:-1]), shown

    # the same environment is used as it is by the next run
    again = flow(machine, "edges", "run")
    assert "Using existing Conda environment" in both(again)


def test_step_references_that_name_no_environment(machine: Machine) -> None:
    rid = run_id(both(flow(machine, "edges", "run")))
    plain = machine.run(sys.executable, FLOWS / "undecorated.py", "run")  # not --environment=conda
    plain_rid = run_id(both(plain))

    def show(pathspec: str) -> str:
        done = machine.metaflow("environment", "show", "--pathspec", pathspec, check=False)
        assert done.returncode == 1, both(done)
        return " ".join(both(done).split())

    assert (
        "ran without a Conda environment: it is disabled (disabled=True in its @conda or @pypi, or in the flow"
        in (show(f"EdgesFlow/{rid}/end"))
    )
    assert f"Run 'EdgesFlow/{rid}' has no step 'nope' (its steps: end, start)" in show(
        f"EdgesFlow/{rid}/nope"
    )
    assert "Flow 'EdgesFlow' has no run '12345'" in show("EdgesFlow/12345/start")
    assert "No flow named 'NoSuchFlow' is known" in show("NoSuchFlow/1/start")
    assert "has no recorded environment id: its run did not use --environment=conda" in show(
        f"UndecoratedFlow/{plain_rid}/start"
    )
    for text in (show(f"EdgesFlow/{rid}/end"), show("NoSuchFlow/1/start")):
        assert "resolve --alias" not in text
    # the step that ran in one is shown
    assert (
        "Environment of type conda-only"
        in machine.metaflow("environment", "show", "--pathspec", f"EdgesFlow/{rid}/start").stdout
    )


def test_flow_show_carries_on_and_bold_markers(machine: Machine) -> None:
    shown = flow(machine, "bad_step", "environment", "show")  # exit 0, as the original
    out = shown.stdout
    assert "*" not in "".join(line for line in out.splitlines() if line.startswith("Step ")), out
    start, mid, end = (out.index(f"Step {s} (") for s in ("start", "mid", "end"))
    assert start < mid < end, out
    assert "team/nope" in out[mid:end] and "Environment is unresolved" in out[start:mid]
    assert "Environment is disabled" in out[end:]

    resolved = flow(machine, "bad_step", "environment", "resolve", "start")
    assert re.search(r"Resolving 1 environment \.\.\. done in \d+\.\d\d seconds\.", resolved.stderr), (
        resolved.stderr
    )
    assert "### Environment for step start ###" in resolved.stdout
    aliased = flow(machine, "bad_step", "environment", "resolve", "--alias", "team/edges", "start")
    assert "No environments to resolve, aliasing only. Use --force to force re-resolution" in aliased.stderr
    assert "Aliased as team/edges:latest" in aliased.stderr
    quiet = flow(machine, "bad_step", "--quiet", "environment", "resolve", "--force", "start")
    assert progress_lines(both(quiet)) == [], both(quiet)
    steps, line = quiet.stdout.splitlines()  # the original's quiet form: the steps, the environment's line
    assert steps == "start" and re.fullmatch(r"[0-9a-f]{40} [0-9a-f]{40} .*", line), line
    shown = flow(machine, "bad_step", "--quiet", "environment", "show")
    assert shown.stdout == "", shown.stdout


def test_group_options_and_local_only(machine: Machine, other_machine: Machine, tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("fx-core==1.1.0\n")
    options = ("--no-quiet", "--metadata", "local", "--datastore", "local", "--environment", "conda")
    machine.metaflow("environment", *options, "resolve", "-r", str(req), "--alias", "team/lo")
    quiet = machine.metaflow("environment", "--quiet", "resolve", "--force", "-r", str(req))
    assert progress_lines(quiet.stderr) == [], quiet.stderr

    assert (
        "Environment of type"
        in machine.metaflow("environment", *options, "show", "--local-only", "team/lo").stdout
    )
    # another machine shares the store, not the local record: --local-only does not look in the store
    assert (
        "Environment of type"
        in other_machine.metaflow("environment", "show", "--non-local", "team/lo").stdout
    )
    third = Machine(root=tmp_path / "c", store=machine.store, universe=machine.universe)
    missing = third.metaflow("environment", "show", "--local-only", "team/lo", check=False)
    assert missing.returncode == 1 and "known environment locally" in " ".join(both(missing).split()), both(
        missing
    )
    not_created = third.metaflow("environment", "create", "--local-only", "team/lo", check=False)
    assert not_created.returncode == 1 and not list(third.cache.glob("envs/metaflow*")), both(not_created)
    third.metaflow("environment", "create", "team/lo")
    assert list(third.cache.glob("envs/metaflowtmp_*"))  # the original's name for what create makes


def failing_run(machine: Machine, tmp_path: Path, start_decorators: str) -> str:
    """A two-step flow whose ``start`` has ``start_decorators``, run: it must fail (exit 1); its output."""
    source = two_step_flow(tmp_path / "one_decorated_step.py", start_decorators)
    done = machine.run(sys.executable, source, "--environment=conda", "run", check=False)
    text = " ".join(both(done).split())
    assert done.returncode == 1, text
    assert "Traceback" not in text, text
    return text


def test_fetch_at_exec_of_an_environment_without_what_metaflow_needs(
    machine: Machine, tmp_path: Path
) -> None:
    machine.envcore("resolve", "--conda", "fx-core==1.0.0", "--alias", "team/bare-env")
    text = failing_run(machine, tmp_path, '@named_env(name="team/bare-env", fetch_at_exec=True)')
    assert "No module named" not in text, text
    assert (
        "The environment 'team/bare-env' that step 'start' fetches at execution lacks what Metaflow needs "
        "in a task: requests>=2.21.0" in text
    ), text
    assert "metaflow environment resolve --alias team/bare-env" in text, text


def test_a_python_version_on_a_named_environment_names_the_decorator(
    machine: Machine, tmp_path: Path
) -> None:
    machine.envcore("resolve", "--conda", "fx-core==1.0.0", "--alias", "team/base-env")
    text = failing_run(machine, tmp_path, '@named_env(name="team/base-env")\n@conda(python="3.10")')
    python = platform.python_version()  # the universe's python is this interpreter's
    assert (
        f"The base environment's Python version ({python}) does not match the one specified in step" in text
    )
    assert "(3.10.\u2217): an extended environment keeps the base's python" in text, text
    assert "--python" not in text, text
    assert "Remove python= from the step's @conda or @pypi decorator (or the flow's), or name an" in text, (
        text
    )


def test_a_conflict_with_metaflows_own_requirement_says_so(machine: Machine, tmp_path: Path) -> None:
    note = "Metaflow adds requests>=2.21.0 to every step's environment: it needs it in each task."
    for decorator in ("@conda(libraries=", "@pypi(packages="):
        text = failing_run(machine, tmp_path, decorator + '{"requests": "<2.21"})')
        assert "Step(s): start: The " in text, text
        assert "requests<2.21" in text.replace(" <", "<") and note in text, text


def test_an_extra_the_wheel_does_not_declare_is_warned_about(machine: Machine, tmp_path: Path) -> None:
    source = two_step_flow(tmp_path / "extra_flow.py", '@pypi(packages={"fx-core[fsat]": ""})')
    resolved = machine.run(sys.executable, source, "--environment=conda", "environment", "resolve")
    text = " ".join(both(resolved).split())
    assert (
        "Warning: Step(s): start: fx-core 2.0.0 has no extra 'fsat' (it declares none), so the resolver left "
        "it out. Check the spelling of fx-core[fsat]." in text
    ), text
    again = machine.run(sys.executable, source, "--environment=conda", "environment", "resolve")
    assert "has no extra" not in both(again), both(again)  # said when resolved, not on every run


def test_a_yanked_pin_is_warned_about(machine: Machine, tmp_path: Path) -> None:
    source = two_step_flow(tmp_path / "yanked_flow.py", '@pypi(packages={"fx-http": "1.3.0"})')
    resolved = machine.run(sys.executable, source, "--environment=conda", "environment", "resolve")
    text = " ".join(both(resolved).split())
    assert "Warning: fx-http 1.3.0 is yanked on its index (broken import)" in text, text
    assert "EnvcoreWarning" not in text, text  # Metaflow's way, not Python's


def test_a_step_in_its_own_environment_that_launches_a_conda_flow_is_told_how(
    machine: Machine, tmp_path: Path
) -> None:
    """The step's python has Metaflow and the extension (the code package) but not envcore: launching a conda
    flow there (as Runner does) or `metaflow environment` says so and what to do, not a traceback."""
    nested = two_step_flow(tmp_path / "nested.py", '@conda(libraries={"fx-core": "1.0.0"})', "NestedFlow")
    launcher = tmp_path / "launcher.py"
    launcher.write_text(
        "import subprocess, sys\n"
        "from metaflow import FlowSpec, conda, step\n\n\n"
        "class LauncherFlow(FlowSpec):\n"
        '    @conda(libraries={"fx-core": "1.0.0"})\n'
        "    @step\n"
        "    def start(self):\n"
        "        for args in (\n"
        f'            [{str(nested)!r}, "--environment=conda", "run"],\n'
        '            ["-m", "metaflow.cmd.main_cli", "environment", "show", "team/x"],\n'
        "        ):\n"
        "            done = subprocess.run([sys.executable, *args], capture_output=True, text=True)\n"
        '            print("nested", done.returncode, " ".join(done.stderr.split()).replace("=", ":"))\n'
        "        self.next(self.end)\n\n"
        "    @step\n"
        "    def end(self):\n"
        "        pass\n\n\n"
        'if __name__ == "__main__":\n'
        "    LauncherFlow()\n"
    )
    text = both(machine.run(sys.executable, launcher, "--environment=conda", "run"))
    lines = [line for line in text.splitlines() if " nested " in line]
    assert len(lines) == 2, text
    for line in lines:
        assert "Traceback" not in line and "nested 1 " in line, line
        assert "envcore is not installed in this Python" in line, line
        assert "give that step @conda(disabled:True)" in line, line


def test_the_worker_tells_how_long_caching_went_on_after_resolving() -> None:
    """Before: 'Resolving 2 environments ... done in 6.02 seconds.' counted the 5 seconds of caching that the
    next lines ('Caching 6 item(s) to ... done in 5.01 seconds.') reported again: the launcher now leaves out
    what the worker did after its last resolution."""
    import time

    from metaflow_extensions.envcore.plugins.conda import worker

    class Envs:  # resolves at once, caches slowly
        names: dict[str, str] = {}

        def resolve(self, requests: list[object], force: bool) -> list[tuple[object, bool]]:
            return [(requests[0], True)]

        def save(self, env: object, name: str) -> object:
            time.sleep(0.3)
            return env

    assert worker._resolve(Envs(), (["a", "b"], False, True, True, {}, ["", ""])) == [
        ("a", True),
        ("b", True),
    ]
    assert worker.TIMINGS["after_resolving"] >= 0.3
