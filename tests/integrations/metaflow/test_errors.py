"""Bad decorators give Metaflow-style errors (a headline, one message naming the step and the attribute,
no traceback) before anything runs."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from ...conftest import store_another
from .conftest import Machine, both


def _flow(tmp_path: Path, decorators: str, flow_decorators: str = "") -> Path:
    path = tmp_path / "bad_flow.py"
    path.write_text(
        textwrap.dedent(
            """\
            from metaflow import FlowSpec, step, conda, conda_base, pypi, pypi_base, named_env

            {flow_decorators}
            class BadFlow(FlowSpec):
                {decorators}
                @step
                def start(self):
                    self.next(self.end)

                @step
                def end(self):
                    pass


            if __name__ == "__main__":
                BadFlow()
            """
        ).format(decorators=decorators, flow_decorators=flow_decorators)
    )
    return path


@pytest.mark.parametrize(
    ("decorators", "flow_decorators", "expected"),
    [
        (
            '@conda(libraries="fx-core")',
            "",
            "In step 'start' (@conda), the attribute 'libraries' must be a dict of package name to version",
        ),
        ("@conda(python=3.10)", "", "In step 'start' (@conda), the attribute 'python' must be a string"),
        (
            "@conda(python=3.11)",
            "",
            "with run --with, quote it inside the value: --with 'conda:python=\"3.11\"'",
        ),
        ('@pypi(extra_indices="http://x")', "", "the attribute 'extra_indices' must be a list of strings"),
        (  # the value without its credentials (before: got 'https://alice:pw-S3CRET@h.example/simple')
            '@pypi(extra_indices="https://alice:pw-S3CRET@h.example/simple")',
            "",
            "must be a list of strings, e.g. extra_indices=[\"...\"]; got 'https://h.example/simple' (str).",
        ),
        (
            '@conda(packages={"fx-core": "1.0.0"})',
            "",
            "Decorator 'conda' does not support the attribute 'packages'",
        ),
        (
            "",
            '@pypi_base(python="3.10")\n@conda_base(python="3.11")',
            "python is specified with incompatible values: 3.11 and 3.10",
        ),
        (
            '@named_env(name="team/env", pathspec="F/1/start")',
            "",
            "cannot specify both `name` and `pathspec` in a decorator",
        ),
        (
            "@named_env(fetch_at_exec=True)",
            "",
            "In step 'start', a 'fetch_at_exec' environment needs to have an environment specified with '@named_env'",
        ),
        (
            '@named_env(name="team/env", fetch_at_exec=True)\n    @conda(libraries={"fx-core": ""})',
            "",
            "a 'fetch_at_exec' environment cannot have any additional requirements",
        ),
        (
            '@named_env(name="team/nosuch")',
            "",
            "In step 'start': base environment 'team/nosuch' not found",
        ),
        ('@conda(libraries={"fx-nosuch": ""})', "", "Step(s): start:"),
        (  # the decorators as written (before: "incompatible values: False and True")
            '@pypi(disabled=True)\n    @conda(libraries={"fx-core": "2.0.0"})',
            "",
            "@pypi is disabled (disabled=True) but @conda on the same step asks for fx-core",
        ),
    ],
)
def test_bad_decorators(
    machine: Machine, tmp_path: Path, decorators: str, flow_decorators: str, expected: str
) -> None:
    flow = _flow(tmp_path, decorators, flow_decorators)
    out = machine.run(sys.executable, flow, "--environment=conda", "run", check=False)
    text = " ".join(both(out).split())
    assert out.returncode == 1, text
    assert expected in text
    if "does not support" not in expected:  # Metaflow's own check fails at import, with its traceback
        assert "Traceback" not in text
    assert "Workflow starting" not in text


def test_packages_of_a_disabled_decorator_are_ignored_with_a_warning(
    machine: Machine, tmp_path: Path
) -> None:
    """As the original, which dropped them silently."""
    flow = _flow(tmp_path, '@conda(disabled=True, libraries={"fx-core": "2.0.0"})')
    out = machine.run(sys.executable, flow, "--environment=conda", "environment", "resolve")
    assert (
        "Warning: In step 'start' (@conda): disabled=True, so what it also asks for (fx-core) is ignored"
        in " ".join(out.stderr.split())
    ), out.stderr


def test_decorators_need_the_conda_environment(machine: Machine, tmp_path: Path) -> None:
    flow = _flow(tmp_path, '@conda(libraries={"fx-core": ""})')
    out = machine.run(sys.executable, flow, "run", check=False)
    assert out.returncode == 1
    assert "The @conda decorator requires --environment=conda" in " ".join(both(out).split())


@pytest.mark.parametrize(
    ("decorators", "expected", "absent"),
    [
        # the hint names the Metaflow commands, not envcore's
        (
            '@named_env(name="team/nosuch")',
            "Check its spelling (and the store settings), or resolve it with "
            "`metaflow environment resolve --alias`",
            "`envcore ",
        ),
        # Metaflow's printer drops `*` (its bold marker): the glob stays visible, the step is named once
        ('@pypi(packages={"fx-core": "1.*.3"})', "'1.\u2217.3' is not a valid version", "In step 'start': "),
        ('@conda(libraries={"fx-core": "9.*"})', "fx-core 9.\u2217", "fx-core 9.."),
    ],
)
def test_messages_for_metaflow_users(
    machine: Machine, tmp_path: Path, decorators: str, expected: str, absent: str
) -> None:
    flow = _flow(tmp_path, decorators)
    out = machine.run(sys.executable, flow, "--environment=conda", "run", check=False)
    text = " ".join(both(out).split())
    assert out.returncode == 1, text
    assert expected in text and absent not in text
    assert text.count("step 'start'") <= 1, text  # never twice


def test_command_hints_name_metaflow_environment(machine: Machine) -> None:
    out = machine.metaflow("environment", "show", "team/nosuch", check=False)
    text = " ".join(out.stderr.split())
    assert out.returncode == 1, text
    assert "`metaflow environment resolve --alias`" in text and "`envcore " not in text


def test_flow_environment_command_errors(machine: Machine) -> None:
    out = machine.flow("base_override", "environment", "resolve", "--alias", "Bad/Name", check=False)
    text = " ".join(out.stderr.split())
    assert out.returncode == 1, text
    assert "Invalid environment alias 'Bad/Name'" in text and "Traceback" not in text
    out = machine.flow("base_override", "environment", "show", "nosuch", check=False)
    text = " ".join(out.stderr.split())
    # the steps in the graph's order (before: by name, "end, override, start")
    assert out.returncode == 1 and "Unknown step(s) nosuch; the flow has start, override, end." in text, text


@pytest.mark.parametrize("command", ["show", "resolve"])
def test_an_output_file_that_cannot_be_written_is_one_message(
    machine: Machine, tmp_path: Path, command: str
) -> None:
    """Before: a traceback ending in FileNotFoundError: [Errno 2] No such file or directory: '.../.tmp-...'."""
    path = tmp_path / "no-such-folder" / "envs.json"
    out = machine.flow("base_override", "environment", command, "--output", str(path), check=False)
    text = " ".join(out.stderr.split())
    assert out.returncode == 1, text
    assert f"Cannot write --output {path}: No such file or directory." in text and "Traceback" not in text


def test_a_bad_setting_met_while_a_run_looks_for_resolved_environments_is_one_message(
    machine: Machine, tmp_path: Path
) -> None:
    path = _flow(tmp_path, '@conda(libraries={"fx-core": "1.1.0"})')
    done = machine.run(
        sys.executable,
        path,
        "--environment=conda",
        "run",
        check=False,
        METAFLOW_CONDA_USE_REMOTE_LATEST=":all:",
    )
    text = " ".join(both(done).split())
    assert done.returncode == 1 and "Traceback" not in text and "Internal error" not in text, text
    assert "METAFLOW_CONDA_USE_REMOTE_LATEST" in text and "must be :none:, :username:, :any:" in text, text


@pytest.mark.parametrize("fetch_at_exec", [False, True])
def test_a_missing_substitution_variable_names_the_step(
    machine: Machine, tmp_path: Path, fetch_at_exec: bool
) -> None:
    decorator = f'@named_env(name="team/@{{NO_SUCH_VAR_X}}", fetch_at_exec={fetch_at_exec})'
    done = machine.run(sys.executable, _flow(tmp_path, decorator), "--environment=conda", "run", check=False)
    text = " ".join(both(done).split())
    assert done.returncode == 1 and "Traceback" not in text, text
    assert "In step 'start': Could not find 'NO_SUCH_VAR_X' in the environment" in text, text
    known_later = "are known only to @named_env(..., fetch_at_exec=True), when the task starts"
    assert (known_later in text) is not fetch_at_exec, text


def test_a_failed_extension_names_the_environment_as_the_flow_does(machine: Machine, tmp_path: Path) -> None:
    req = tmp_path / "core.txt"
    req.write_text("fx-core==2.0.0\n")
    machine.metaflow("environment", "resolve", "--alias", "team/core-two", "-r", str(req))
    decorators = '@named_env(name="team/core-two")\n    @conda(libraries={"fx-core": "1.0.0"})'
    done = machine.run(sys.executable, _flow(tmp_path, decorators), "--environment=conda", "run", check=False)
    text = " ".join(both(done).split())
    assert done.returncode == 1 and "Traceback" not in text, text
    assert "Step(s): start: Cannot extend team/core-two (" in text, text


@pytest.mark.parametrize("command", ["resolve", "show"])
def test_envcore_warnings_of_the_environment_commands_are_one_line(
    machine: Machine, other_machine: Machine, tmp_path: Path, command: str
) -> None:
    """A stored resolution a newer envcore wrote, passed over by CONDA_USE_REMOTE_LATEST on another machine, is said
    as a run says it (one ``Warning:`` line): neither dropped (Metaflow's CLI ignores Python's warnings) nor
    Python's raw form (its file and line, ``EnvcoreWarning:``)."""
    flow = _flow(tmp_path, """@pypi(packages={"fx-web": "", "fx-core": ";sys_platform == 'win32'"})""")
    resolved = json.loads(
        machine.run(sys.executable, flow, "--environment=conda", "environment", "resolve", "--json").stdout
    )
    start = next(iter(resolved["start"].values()))
    ref = f"{start['req_id']}:{start['full_id']}"
    newer = store_another(machine.store, ref, by="zed", on="2099-01-01 00:00:00", schema=2)
    out = other_machine.run(  # which shares the store only: its stored resolutions are looked at
        sys.executable,
        flow,
        "--environment=conda",
        "environment",
        command,
        METAFLOW_CONDA_USE_REMOTE_LATEST=":any:",
    )
    text = " ".join(both(out).split())
    said = "Warning: METAFLOW_CONDA_USE_REMOTE_LATEST skipped 1 stored resolution(s) written by envcore 9.1.0"
    assert text.count(said) == 1 and newer in text, text
    assert "EnvcoreWarning" not in text and "warnings.warn(" not in text and "Traceback" not in text, text
