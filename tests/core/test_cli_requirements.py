"""``envcore resolve`` with requirements from the command line and from files, end to end against the test
universe: what is requested, what gets installed, and the error and warning paragraphs of bad input."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from envcore.testing.channel import Universe
from envcore.testing.fixtures import AuthEndpoint, TokenChannel

from .test_cli import envcore


@pytest.fixture
def cli_env(universe: Universe, tmp_path: Path) -> dict[str, str]:
    """The settings of envcore/demo.py: the universe's channel and index, a local store and cache."""
    return {
        "METAFLOW_DEFAULT_DATASTORE": "local",
        "METAFLOW_CONDA_LOCALROOT": str(tmp_path / "store"),
        "METAFLOW_CONDA_CHANNELS": universe.channel_url,
        "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": universe.simple_url,
        "METAFLOW_ENVCORE_CACHE_DIR": str(tmp_path / "cache"),
    }


@pytest.fixture
def run(cli_env: dict[str, str]) -> Any:
    """``envcore resolve --dry-run ARGS...`` against the universe."""

    def run(*args: str) -> Any:
        return envcore("resolve", "--dry-run", *args, env=cli_env)

    return run


def the_env(out: Any) -> dict[str, Any]:
    """The one environment of a successful ``--json`` resolution."""
    assert out.returncode == 0, out.stderr
    (env,) = [v["env"] for v in json.loads(out.stdout).values()]
    return env


def resolved(out: Any) -> tuple[list[str], dict[str, str]]:
    """(requested deps, installed name -> version) of a successful ``--json`` resolution."""
    env = the_env(out)
    return env["deps"], {p["envcore"]["name"]: p["envcore"]["version"] for p in env["packages"]}


def resolve_yml(run: Any, path: Path, text: str) -> tuple[dict[str, str], list[str]]:
    """(installed name -> version, sources) of resolving the environment.yml ``text``, written at ``path``."""
    path.write_text(text)
    env = the_env(run("--json", "-f", str(path)))
    return {p["envcore"]["name"]: p["envcore"]["version"] for p in env["packages"]}, env["sources"]


def failed(out: Any, code: int = 2) -> str:
    """The one error paragraph of a failed command (never an internal error)."""
    assert out.returncode == code, (out.stdout, out.stderr)
    assert "internal error" not in out.stderr and "Traceback" not in out.stderr
    return " ".join(out.stderr.split())


_MM = f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.mark.parametrize(("given", "python"), [(_MM, f"{_MM}.*"), (f"=={_MM}", f"{_MM}.*"), ("3", "3.*")])
def test_python_option_means_any_patch_version(run: Any, given: str, python: str) -> None:
    deps, installed = resolved(run("--json", "--conda", "fx-core", "--python", given))
    assert f"conda::python=={python}" in deps and installed["python"] == platform.python_version()


def test_python_option_is_checked_before_resolving(run: Any) -> None:
    message = failed(run("--conda", "fx-core", "--python", "abc"))
    assert message.startswith("envcore: 'abc' is not a python version (in --python 'abc').")


def test_a_package_repeated_on_the_command_line_keeps_every_constraint(run: Any) -> None:
    deps, installed = resolved(run("--json", "--conda", "fx-core>=1.1", "--conda", "fx-core<2"))
    assert "conda::fx-core==>=1.1,<2" in deps and installed["fx-core"] == "1.1.0"
    conflict = failed(run("--pypi", "fx-core==1.0.0", "--pypi", "fx-core==2.0.0"), code=1)
    assert "cannot be resolved" in conflict and "fx-core" in conflict


@pytest.mark.parametrize(
    ("args", "dep", "name", "version"),
    [
        (["--pypi", "fx-core==v1"], "pypi::fx-core==v1", "fx-core", "1.0.0"),
        (["--pypi", "fx-core==1.*"], "pypi::fx-core==1.*", "fx-core", "1.1.0"),
        (["--conda", "fx-core<2,>=1.1"], "conda::fx-core==<2,>=1.1", "fx-core", "1.1.0"),
        (["--conda", "fx-http=1"], "conda::fx-http==1.*", "fx-http", "1.2.0"),  # not exactly 1 (1.0.0)
        (["--conda", "fx-core=1.0.0=py_0"], "conda::fx-core==1.0.0 py_0", "fx-core", "1.0.0"),
    ],
)
def test_command_line_values_are_read_as_file_entries(
    run: Any, tmp_path: Path, args: list[str], dep: str, name: str, version: str
) -> None:
    deps, installed = resolved(run("--json", *args))
    assert dep in deps and installed[name] == version
    option, value = args
    path = tmp_path / "spec"
    path.write_text(f"dependencies:\n  - '{value}'\n" if option == "--conda" else f"{value}\n")
    same = run("--json", "-f" if option == "--conda" else "-r", str(path))
    assert (
        json.loads(same.stdout)["linux-64"]["req_id"]
        == json.loads(run("--json", *args).stdout)["linux-64"]["req_id"]
    )


def test_environment_yml_version_with_build_is_exact(run: Any, tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text("dependencies:\n  - fx-core=1.1.0=py_0\n")
    deps, installed = resolved(run("--json", "-f", str(tmp_path / "environment.yml")))
    assert "conda::fx-core==1.1.0 py_0" in deps and installed["fx-core"] == "1.1.0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pypi", "fx-core==abc"], "Could not parse 'fx-core==abc'"),
        (["--pypi", "fx-core==abc"], "(in --pypi 'fx-core==abc')"),
        (["--conda", "fx-core<2,"], "(in --conda 'fx-core<2,')"),
        (["--channel", "http://[::1"], "'http://[::1' is not a conda channel (in --channel 'http://[::1')"),
        (["--index", "not a url"], "'not a url' is not a package index URL (in --index 'not a url')"),
        (["--index", "ftp://x/y"], "'ftp://x/y' is not a package index URL"),
        (["--conda", "fx-core=1.0.0=py-0"], "is not a conda version constraint"),
    ],
)
def test_bad_command_line_values_are_one_paragraph(run: Any, args: list[str], message: str) -> None:
    text = failed(run("--conda", "fx-app", *args) if args[0] in ("--channel", "--index") else run(*args))
    assert message in text and "(in @conda)" not in text


def test_a_file_that_is_not_utf8_is_a_spec_error(run: Any, tmp_path: Path) -> None:
    (tmp_path / "latin.txt").write_bytes(b"fx-core==1.0.0\n\xff\n")
    assert "latin.txt is not UTF-8 text (byte 0xff on line 2)" in failed(
        run("-r", str(tmp_path / "latin.txt"))
    )


def test_pip_compile_output_with_a_bom_and_hashes_resolves_with_warnings(
    run: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "requirements.txt"
    path.write_bytes(
        b"\xef\xbb\xbf-i https://alice:s3cret@pypi.example/simple\n"
        b"fx-core==1.0.0 \\\n    --hash=sha256:aaaa \\\n    --hash=sha256:bbbb\n    # via -r requirements.in\n"
    )
    out = run("--json", "-r", str(path))
    deps, installed = resolved(out)
    assert "pypi::fx-core==1.0.0" in deps and installed["fx-core"] == "1.0.0"
    warnings = " ".join(out.stderr.split())
    assert "envcore: warning: -i https://pypi.example/simple (line 1 of" in warnings
    assert "--hash options of" in warnings and "are ignored" in warnings
    assert "s3cret" not in out.stderr and "alice" not in out.stderr
    quiet = envcore("--quiet", "resolve", "--dry-run", "-r", str(path), env=cli_env)
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


def test_ignored_environment_yml_sections_are_reported(run: Any, tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text("name: x\nprefix: /opt/x\ndependencies:\n  - fx-core\n")
    out = run("-f", str(tmp_path / "environment.yml"))
    assert out.returncode == 0, out.stderr
    assert "envcore: warning: The section 'prefix' of" in out.stderr


def test_the_option_says_the_format_not_the_file_name(run: Any, tmp_path: Path) -> None:
    (tmp_path / "env1.yml").write_text('[project]\ndependencies = ["fx-core==1.0.0"]\n')
    (tmp_path / "envfile").write_text("dependencies:\n  - fx-core=1.1\n")
    deps, _ = resolved(run("--json", "-p", str(tmp_path / "env1.yml")))
    assert "pypi::fx-core==1.0.0" in deps
    deps, _ = resolved(run("--json", "-f", str(tmp_path / "envfile")))
    assert "conda::fx-core==1.1.*" in deps


def test_a_file_given_as_dash_is_read_from_standard_input(cli_env: dict[str, str]) -> None:
    def piped(option: str, text: str) -> Any:
        return subprocess.run(
            [str(Path(sys.executable).parent / "envcore"), "resolve", "--dry-run", "--json", option, "-"],
            input=text,
            capture_output=True,
            text=True,
            env={**os.environ, **cli_env},
            timeout=120,
        )

    deps, _ = resolved(piped("-f", "dependencies:\n  - fx-core=1.1\n"))
    assert "conda::fx-core==1.1.*" in deps
    deps, _ = resolved(piped("-r", "fx-core==1.0.0\n"))
    assert "pypi::fx-core==1.0.0" in deps
    (Path(cli_env["METAFLOW_ENVCORE_CACHE_DIR"]).parent / "pins.txt").write_text("fx-http==1.1.0\n")
    deps, _ = resolved(piped("-r", f"-r {Path(cli_env['METAFLOW_ENVCORE_CACHE_DIR']).parent / 'pins.txt'}\n"))
    assert "pypi::fx-http==1.1.0" in deps
    assert "(line 1 of standard input)" in failed(piped("-r", "fx-core==\n"))


def test_several_requirement_files_are_read_together_and_two_environment_files_refused(
    run: Any, tmp_path: Path
) -> None:
    """``-r a.txt -r b.txt`` as pip reads it (the option kept only the last, dropping a.txt silently); two -f or
    -p are refused rather than one of them dropped."""
    (tmp_path / "a.txt").write_text("fx-core>=1.1\n")
    (tmp_path / "b.txt").write_text("fx-http==1.1.0\nfx-core<2\n")
    deps, installed = resolved(run("--json", "-r", str(tmp_path / "a.txt"), "-r", str(tmp_path / "b.txt")))
    assert deps[:2] == ["pypi::fx-core==>=1.1,<2", "pypi::fx-http==1.1.0"], deps
    assert installed["fx-core"] == "1.1.0" and installed["fx-http"] == "1.1.0"
    for option, name, text in (
        ("-f", "e{}.yml", "dependencies: [fx-core]\n"),
        ("-p", "p{}.toml", "[project]\n"),
    ):
        first, second = (tmp_path / name.format(1), tmp_path / name.format(2))
        first.write_text(text)
        second.write_text(text)
        what = "environment.yml" if option == "-f" else "pyproject.toml"
        assert failed(run(option, str(first), option, str(second))) == (
            f"envcore: {option} is given 2 times ({first}, {second}): an environment is resolved from one {what}. "
            "Give one, or resolve each separately."
        )


@pytest.mark.parametrize(
    ("command", "option", "values"),
    [
        ("resolve", "--python", ("3.10", "3.11")),
        ("resolve", "--using", ("team/a:v1", "team/b:v1")),
        ("resolve", "--from", ("team/a:v1", "team/b:v1")),
        ("resolve", "--pylock", ("a/pylock.toml", "b/pylock.toml")),
        ("resolve", "--explicit", ("a.txt", "b.txt")),
        ("create", "--name", ("one", "two")),
        ("create", "--arch", ("linux-64", "osx-arm64")),
        ("get", "--arch", ("linux-64", "osx-arm64")),
        ("show", "--format", ("json", "pylock")),
    ],
)
def test_a_single_valued_option_given_twice_is_refused(
    cli_env: dict[str, str], command: str, option: str, values: tuple[str, str]
) -> None:
    """Before, click kept the last value and dropped the others silently (``--using a --using b`` extended b only,
    ``--name one --name two`` made two), as -f and -p did."""
    env_ref = () if command == "resolve" else ("team/env:v1",)
    out = envcore(command, *env_ref, option, values[0], option, values[1], env=cli_env)
    assert failed(out) == (
        f"envcore: {option} is given 2 times ({', '.join(repr(v) for v in values)}), and it takes one value. "
        "Give it once."
    )


def test_requirement_files_that_include_others_resolve_as_pip_reads_them(
    run: Any, universe: Universe, tmp_path: Path
) -> None:
    """requirements-dev.txt with ``-r requirements/base.txt``: the included file's own relative paths
    (``--find-links``, a further ``-r``) are read from its folder, wherever envcore runs; its warnings name it."""
    (tmp_path / "requirements").mkdir()
    for name in ("fx_app", "fx_core", "fx_http", "fx_web", "fx_pyyaml"):
        for wheel in universe.wheels_dir.glob(f"{name}-*.whl"):
            shutil.copy(wheel, tmp_path / "requirements")
    (tmp_path / "requirements" / "pins.txt").write_text("fx-http==1.1.0 --hash=sha256:abcd\n")
    (tmp_path / "requirements" / "base.txt").write_text(
        "--no-index\n--find-links .\n-r pins.txt\nfx-core>=1.1\n"
    )
    (tmp_path / "requirements-dev.txt").write_text("# dev tools\r\n-r requirements/base.txt\r\nfx-app\r\n")
    out = run("--json", "-r", str(tmp_path / "requirements-dev.txt"))
    deps, installed = resolved(out)
    assert deps[:3] == ["pypi::fx-http==1.1.0", "pypi::fx-core==>=1.1", "pypi::fx-app"], deps
    assert (
        installed["fx-http"] == "1.1.0" and installed["fx-core"] == "1.1.0" and installed["fx-app"] == "1.0.0"
    )
    assert "--hash options of " + str(tmp_path / "requirements" / "pins.txt") in " ".join(out.stderr.split())
    # the same files in an environment.yml's pip section, from its folder (conda runs pip there)
    (tmp_path / "environment.yml").write_text(
        "dependencies:\n  - fx-yaml\n  - pip:\n    - -r requirements/pins.txt\n"
    )
    deps, installed = resolved(run("--json", "-f", str(tmp_path / "environment.yml")))
    assert "pypi::fx-http==1.1.0" in deps and installed["fx-http"] == "1.1.0" and "fx-yaml" in installed
    (tmp_path / "requirements" / "base.txt").write_text("-r ../requirements-dev.txt\n")
    message = failed(run("-r", str(tmp_path / "requirements-dev.txt")))
    assert "the requirement files include each other (line 1 of " + str(
        tmp_path / "requirements" / "base.txt"
    ) in (message)


@pytest.mark.parametrize(
    ("option", "name", "text", "message"),
    [
        ("-p", "pyproject.toml", '[project]\ndependencies = "fx-core"\n', "must be a list of strings"),
        ("-p", "pyproject.toml", '[project]\nname = "x"\ndynamic = ["dependencies"]\n', "are dynamic"),
        ("-f", "environment.yml", "dependencies: fx-core\n", "must be a list"),
        ("-f", "environment.yml", "dependencies:\n  - 123\n", "The dependency 123 is a number"),
    ],
)
def test_files_of_the_wrong_shape_are_one_paragraph(
    run: Any, tmp_path: Path, option: str, name: str, text: str, message: str
) -> None:
    (tmp_path / name).write_text(text)
    assert message in failed(run(option, str(tmp_path / name)))


# --- direct references, URL channels, nodefaults, malformed lines ------------------------------------------


def pypi_files(out: Any) -> dict[str, dict[str, Any]]:
    """name -> the locked file of each PyPI package of a successful ``--json`` resolution."""
    assert out.returncode == 0, out.stderr
    env = the_env(out)
    return {
        p["envcore"]["name"]: next(iter(p["envcore"]["files"].values()))
        for p in env["packages"]
        if p["_type"] == "pypi"
    }


def test_a_direct_reference_to_a_local_wheel_is_locked_as_its_file(
    run: Any, universe: Universe, tmp_path: Path
) -> None:
    wheel = universe.wheels_dir / "fx_core-1.0.0-py3-none-any.whl"
    (tmp_path / "r.txt").write_text(f"fx-core @ {wheel.as_uri()}\n")
    out = run("--json", "-r", str(tmp_path / "r.txt"))
    deps, installed = resolved(out)
    assert (
        f"pypi::fx-core@{wheel.as_uri()}" in deps and installed["fx-core"] == "1.0.0"
    )  # not the newest 2.0.0
    file = pypi_files(out)["fx-core"]
    assert file["url"] == wheel.as_uri() and not file.get("built")
    assert file["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_a_projects_local_wheels_are_found_from_its_folder(
    run: Any, universe: Universe, tmp_path: Path
) -> None:
    """A monorepo's pyproject.toml names its libraries with hatch's {root:uri}, uv's ${PROJECT_ROOT} and
    relative paths; envcore (run from elsewhere) locks those very files."""
    project = tmp_path / "apps" / "app" / "pyproject.toml"
    for folder, wheel in [
        ("libs", "fx_core-1.0.0"),
        ("libs", "fx_http-1.0.0"),
        ("apps/app/dist", "fx_legacy-1.0.0"),
    ]:
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(universe.wheels_dir / f"{wheel}-py3-none-any.whl", tmp_path / folder)
    project.write_text(
        '[project]\nname = "app"\ndependencies = [\n'
        '  "fx-core @ {root:parent:parent:uri}/libs/fx_core-1.0.0-py3-none-any.whl",\n'
        '  "fx-legacy @ ./dist/fx_legacy-1.0.0-py3-none-any.whl",\n]\n'
        "[project.optional-dependencies]\n"
        'http = ["fx-http @ file:///${PROJECT_ROOT}/../../libs/fx_http-1.0.0-py3-none-any.whl"]\n'
    )
    out = run("--json", "-p", str(project), "--extra", "http")
    _, installed = resolved(out)
    assert (
        installed.keys() - {"python"} == {"fx-core", "fx-http", "fx-legacy"}
        and installed["fx-core"] == "1.0.0"
    )
    files = pypi_files(out)
    assert files["fx-http"]["url"] == (tmp_path / "libs" / "fx_http-1.0.0-py3-none-any.whl").as_uri()
    assert (
        files["fx-legacy"]["url"] == (project.parent / "dist" / "fx_legacy-1.0.0-py3-none-any.whl").as_uri()
    )


@pytest.mark.parametrize("form", ["bare path", "name @ file URL"])
def test_a_direct_reference_to_an_sdist_is_built_into_a_wheel(
    run: Any, universe: Universe, tmp_path: Path, form: str
) -> None:
    sdist = universe.wheels_dir / "fx_src-0.9.0.tar.gz"
    (tmp_path / "r.txt").write_text(f"{sdist}\n" if form == "bare path" else f"fx-src @ {sdist.as_uri()}\n")
    out = run("--json", "-r", str(tmp_path / "r.txt"))
    deps, installed = resolved(out)
    assert f"pypi::fx-src@{sdist.as_uri()}" in deps  # named from the file name, not "fx-src-0-9-0"
    assert installed["fx-src"] == "0.9.0" and "fx-core" in installed  # its dependency, from the index
    file = pypi_files(out)["fx-src"]
    assert file["built"] is True and file["url"] == sdist.as_uri()


def test_a_local_directory_is_built_into_a_wheel_named_by_its_pyproject(
    run: Any, universe: Universe, tmp_path: Path
) -> None:
    with tarfile.open(universe.wheels_dir / "fx_src-0.9.0.tar.gz") as archive:
        archive.extractall(tmp_path / "src", filter="data")
    project = tmp_path / "src" / "fx_src-0.9.0"
    (tmp_path / "r.txt").write_text("./src/fx_src-0.9.0\n")  # relative to the current directory, as pip
    out = run("--json", "-r", str(tmp_path / "r.txt"))
    deps, installed = resolved(out)
    assert f"pypi::fx-src@{project.as_uri()}" in deps and installed["fx-src"] == "0.9.0"
    file = pypi_files(out)["fx-src"]
    assert file["built"] is True and file["url"] == project.as_uri()
    cross = failed(run("--arch", "osx-arm64", "-r", str(tmp_path / "r.txt")), code=1)
    assert "must be built into a wheel" in cross and "osx-arm64" in cross


def test_a_url_channel_qualifies_a_conda_package(run: Any, universe: Universe, tmp_path: Path) -> None:
    chan2 = tmp_path / "chan2"
    shutil.copytree(universe.root / "channel", chan2)
    out = run("--json", "--conda", f"{chan2.as_uri()}::fx-core")
    deps, installed = resolved(out)
    assert f"conda::{chan2.as_uri()}::fx-core" in deps and installed["fx-core"] == "2.0.0"
    env = the_env(out)
    (core,) = [p for p in env["packages"] if p["envcore"]["name"] == "fx-core"]
    assert core["url"].startswith(chan2.as_uri() + "/")  # from chan2, not the configured channel
    (tmp_path / "environment.yml").write_text(f"dependencies:\n  - {chan2.as_uri()}::fx-core=1.1\n")
    deps, installed = resolved(run("--json", "-f", str(tmp_path / "environment.yml")))
    assert f"conda::{chan2.as_uri()}::fx-core==1.1.*" in deps and installed["fx-core"] == "1.1.0"


def test_nodefaults_is_not_a_channel(
    run: Any, universe: Universe, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """As conda reads it: the file's channels only, without the configured ones (METAFLOW_CONDA_CHANNELS)."""
    path = tmp_path / "environment.yml"
    configured = (tmp_path / "configured-elsewhere").as_uri()
    cli_env["METAFLOW_CONDA_CHANNELS"] = configured  # would fail: no such channel
    installed, sources = resolve_yml(
        run, path, f"channels:\n  - {universe.channel_url}\n  - nodefaults\ndependencies:\n  - fx-core=1.1\n"
    )
    assert installed["fx-core"] == "1.1.0"
    assert not any("nodefaults" in s or "configured-elsewhere" in s for s in sources)
    path.write_text(f"channels:\n  - {universe.channel_url}\ndependencies:\n  - fx-core=1.1\n")
    assert "configured-elsewhere" in failed(run("-f", str(path)), 1)  # without nodefaults, it is used


@pytest.mark.parametrize("line", ["fx-core===", "fx-core===abc", "fx-core @ https://"])
def test_a_malformed_pypi_requirement_names_its_file_and_line(run: Any, tmp_path: Path, line: str) -> None:
    (tmp_path / "r.txt").write_text(f"fx-http\n{line}\n")
    message = failed(run("-r", str(tmp_path / "r.txt")))
    assert f"(line 2 of {tmp_path / 'r.txt'})" in message and "requirements.in" not in message


def test_quiet_and_verbose_also_follow_the_sub_command(cli_env: dict[str, str]) -> None:
    """``envcore resolve ... -q`` as ``envcore -q resolve ...`` (before, "No such option '-q'")."""
    before = envcore("-q", "resolve", "--dry-run", "--conda", "fx-core", env=cli_env)
    after = envcore("resolve", "--dry-run", "--conda", "fx-core", "-q", env=cli_env)
    assert before.returncode == after.returncode == 0, after.stderr
    # the one-line form: <arch>, then ids (and the resolution date, which differs)
    assert len(after.stdout.splitlines()) == 2 and "Resolved" not in after.stdout + after.stderr
    assert [line.split()[:2] for line in before.stdout.splitlines()] == [
        line.split()[:2] for line in after.stdout.splitlines()
    ]
    verbose = envcore("resolve", "--dry-run", "--conda", "fx-nosuch", "--verbose", env=cli_env)
    assert verbose.returncode != 0 and "Traceback (most recent call last)" in verbose.stderr
    shown = envcore("config", "show", "-q", env=cli_env)
    assert shown.returncode == 0 and "METAFLOW_CONDA_CHANNELS" in shown.stdout


def test_a_bad_default_index_setting_is_named(run: Any, cli_env: dict[str, str]) -> None:
    """Before: "fx-core was not found in the package registry", naming neither the setting nor its value."""
    cli_env["METAFLOW_CONDA_DEFAULT_PYPI_SOURCE"] = "notaurl"
    message = failed(run("--pypi", "fx-core"))
    assert message.startswith(
        "envcore: 'notaurl' is not a package index URL (in METAFLOW_CONDA_DEFAULT_PYPI_SOURCE, from env var)."
    )
    conda_only = run("--conda", "fx-core")  # does not read it
    assert conda_only.returncode == 0, conda_only.stderr


def test_a_local_index_or_find_links_folder_that_is_not_there_is_refused(
    run: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Before, uv read a missing file:// index or --find-links folder as empty: fx-core came from the other
    index, or the resolution failed with 'not found', naming neither the path nor where it was given."""
    missing = tmp_path / "no-index"
    message = failed(run("--pypi", "fx-core", "--index", missing.as_uri()))
    assert message.startswith(f"envcore: The PyPI index {missing.as_uri()} is not on this machine: {missing}")
    (tmp_path / "requirements.txt").write_text(f"--find-links {tmp_path / 'no-wheels'}\nfx-core\n")
    message = failed(run("-r", str(tmp_path / "requirements.txt")))
    assert message.startswith(
        f"envcore: The --find-links location {tmp_path / 'no-wheels'} is not on this machine"
    )
    cli_env["METAFLOW_CONDA_DEFAULT_PYPI_SOURCE"] = missing.as_uri()
    assert "The PyPI index" in failed(run("--pypi", "fx-core"))
    assert run("--conda", "fx-core").returncode == 0  # a conda environment reads no index
    missing.mkdir()  # an index that is there, even empty, is the user's to give
    assert "The PyPI index" not in run("--pypi", "fx-core").stderr


def test_from_an_environment_whose_local_index_is_gone_resolves_without_it(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """``--from`` copies the sources of an environment resolved on another machine: a local folder of that
    machine is left out with a warning (refusing it would leave no way to use --from)."""
    extra = tmp_path / "team-wheels"
    extra.mkdir()
    first = envcore(
        "resolve", "--pypi", "fx-core", "--index", extra.as_uri(), "--alias", "t/p/e:v1", env=cli_env
    )
    assert first.returncode == 0, first.stderr
    extra.rmdir()
    again = envcore("resolve", "--dry-run", "--json", "--from", "t/p/e:v1", env=cli_env)
    env = the_env(again)
    assert f"pypi::{extra.as_uri()}" not in env["sources"]
    warning = " ".join(again.stderr.split())
    assert (
        f"envcore: warning: The pypi source {extra.as_uri()} of t/p/e:v1 is a folder of the machine"
        in warning
    )


def test_plugin_settings_that_do_not_take_effect_are_warned_about(cli_env: dict[str, str]) -> None:
    """Before, a module of METAFLOW_ENVCORE_PLUGIN_MODULES that cannot be imported, or an unknown name in
    METAFLOW_ENVCORE_PLUGINS, went unsaid: the command ran without them."""
    for extra, warning in (
        (
            {"METAFLOW_ENVCORE_PLUGIN_MODULES": "no.such.mod"},
            "envcore: warning: the plugin module no.such.mod (METAFLOW_ENVCORE_PLUGIN_MODULES) cannot be imported",
        ),
        (
            {"METAFLOW_ENVCORE_PLUGINS": "builtin,rattler,typo"},
            "envcore: warning: METAFLOW_ENVCORE_PLUGINS names 'typo', which no installed plugin is called",
        ),
        (
            {"METAFLOW_ENVCORE_DISABLED_PLUGINS": "mamba,nope"},
            "envcore: warning: METAFLOW_ENVCORE_DISABLED_PLUGINS names 'nope', which no installed plugin is called",
        ),
    ):
        out = envcore("resolve", "--dry-run", "--conda", "fx-core", env={**cli_env, **extra})
        assert out.returncode == 0 and warning in " ".join(out.stderr.split()), out.stderr
        quiet = envcore("-q", "resolve", "--dry-run", "--conda", "fx-core", env={**cli_env, **extra})
        assert quiet.returncode == 0 and "warning" not in quiet.stderr


def test_an_extra_index_in_the_pip_section_of_an_environment_yml_is_used(
    run: Any, universe: Universe, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """The configured index lacks fx-extras; the pip section's --extra-index-url has it."""
    lacking = tmp_path / "lacking"
    shutil.copytree(universe.root / "simple", lacking)
    shutil.rmtree(lacking / "fx-extras")
    cli_env["METAFLOW_CONDA_DEFAULT_PYPI_SOURCE"] = lacking.as_uri() + "/"
    path = tmp_path / "environment.yml"
    path.write_text("dependencies:\n  - fx-core\n  - pip:\n    - fx-extras\n")
    assert "fx-extras" in failed(run("-f", str(path)), 1)
    installed, sources = resolve_yml(
        run,
        path,
        f"dependencies:\n  - fx-core\n  - pip:\n    - --extra-index-url {universe.simple_url}\n    - fx-extras\n",
    )
    assert installed["fx-extras"] == "0.4.0" and f"pypi::{universe.simple_url}" in sources


def test_extras_and_groups_of_a_project_file_are_resolved(run: Any, tmp_path: Path) -> None:
    project = tmp_path / "pyproject.toml"
    project.write_text(
        '[project]\nname = "demo"\ndependencies = ["fx-core"]\n'
        '[project.optional-dependencies]\nweb = ["fx-web"]\n[dependency-groups]\ntest = ["fx-extras"]\n'
    )
    deps, installed = resolved(run("--json", "-p", str(project)))
    assert "fx-web" not in installed and "fx-extras" not in installed
    deps, installed = resolved(run("--json", "-p", str(project), "--extra", "web", "--group", "test"))
    assert {"pypi::fx-web", "pypi::fx-extras"} <= set(deps)
    assert {"fx-web", "fx-extras", "fx-core"} <= set(installed)
    message = failed(run("--pypi", "fx-core", "--extra", "web"))
    assert "--extra and --group choose optional dependencies" in message and "-p pyproject.toml" in message


def test_a_git_repository_is_built_at_the_commit_its_revision_names(
    run: Any, git_project: tuple[Path, str], tmp_path: Path
) -> None:
    repo, commit = git_project
    (tmp_path / "r.txt").write_text(f"fx-src @ git+{repo.as_uri()}@v0.9.0\n")
    out = run("--json", "-r", str(tmp_path / "r.txt"))
    deps, installed = resolved(out)
    assert f"pypi::fx-src@git+{repo.as_uri()}@v0.9.0" in deps and installed["fx-src"] == "0.9.0"
    file = pypi_files(out)["fx-src"]
    assert file["built"] is True and file["url"] == f"git+{repo.as_uri()}@{commit}"  # the tag, pinned
    cross = failed(run("--arch", "osx-arm64", "-r", str(tmp_path / "r.txt")), code=1)
    assert "must be built into a wheel" in cross and "osx-arm64" in cross
    (tmp_path / "bad.txt").write_text(f"fx-src @ git+{repo.as_uri()}@no-such-tag\n")
    bad = failed(run("-r", str(tmp_path / "bad.txt")), code=1)
    assert "no-such-tag" in bad and "Check the repository URL and the revision" in bad
    (tmp_path / "relative.txt").write_text("fx-src @ git+file:repo\n")
    assert "names a repository by a relative path" in failed(run("-r", str(tmp_path / "relative.txt")))


@pytest.mark.parametrize(
    "where", ["METAFLOW_CONDA_CHANNELS", "environment.yml", "package channel", "METAFLOW_CONDA_CHANNEL_ALIAS"]
)
def test_a_channel_token_is_used_and_kept_out_of_everything_stored_and_printed(
    cli_env: dict[str, str], token_channel: TokenChannel, tmp_path: Path, where: str
) -> None:
    """anaconda.org's /t/<TOKEN>/channel: the token goes with the request's credentials (rattler reads the
    channel with it, envcore's download of each package for the store too), never into the environment's
    sources, package URLs, store keys, files or output."""
    args = ["--conda", "fx-core"]
    if where == "METAFLOW_CONDA_CHANNELS":
        cli_env[where] = token_channel.url_with_token
    elif where == "METAFLOW_CONDA_CHANNEL_ALIAS":  # the channel by name, joined to an alias with the token
        cli_env[where] = token_channel.url_with_token.removesuffix("/channel")
        cli_env["METAFLOW_CONDA_CHANNELS"] = "channel"
    elif where == "environment.yml":
        (tmp_path / "env.yml").write_text(
            f"channels: [{token_channel.url_with_token}, nodefaults]\ndependencies: [fx-core]\n"
        )
        args = ["-f", str(tmp_path / "env.yml")]
    else:  # fx-core from the token channel, python from the configured (file://) one
        args = ["--conda", f"{token_channel.url_with_token}::fx-core"]
    out = envcore("resolve", "--json", *args, "--alias", "team/token:v1", env=cli_env)
    env = the_env(out)
    assert {p["envcore"]["name"] for p in env["packages"]} >= {"fx-core", "python"}
    assert all(
        p["url"].startswith(token_channel.url) for p in env["packages"] if not p["url"].startswith("file:")
    )
    created = envcore("create", "team/token:v1", "--name", "tok", env=cli_env)
    assert created.returncode == 0, created.stderr
    python = tmp_path / "cache" / "envs" / "tok" / "bin" / "python"
    assert subprocess.run([python, "-c", "import fx_core"], check=False).returncode == 0
    shown = envcore("show", "team/token:v1", "--json", env=cli_env)
    printed = "".join(o.stdout + o.stderr for o in (out, created, shown))
    assert token_channel.token not in printed
    stored = [p for root in ("store", "cache") for p in (tmp_path / root).rglob("*") if p.is_file()]
    assert stored and not [
        p for p in stored if not p.is_symlink() and token_channel.token.encode() in p.read_bytes()
    ]


def test_a_channel_token_fails_cleanly_with_a_resolver_that_cannot_use_it(
    cli_env: dict[str, str], token_channel: TokenChannel
) -> None:
    """The conda binary would keep the token in the URLs it returns: refused before it runs."""
    cli_env.update(
        METAFLOW_CONDA_CHANNELS=token_channel.url_with_token, METAFLOW_CONDA_DEPENDENCY_RESOLVER="conda"
    )
    out = envcore("resolve", "--dry-run", "--conda", "fx-core", env=cli_env)
    message = failed(out)
    assert token_channel.token not in out.stdout + out.stderr
    assert "resolver 'conda' cannot use" in message and "METAFLOW_CONDA_DEPENDENCY_RESOLVER" in message


@pytest.mark.parametrize("where", ["--channel", "METAFLOW_CONDA_CHANNEL_ALIAS"])
def test_a_token_envcore_cannot_keep_apart_is_refused_without_showing_it(
    run: Any, cli_env: dict[str, str], where: str
) -> None:
    """A token deeper in the path, or in the channel alias, would be kept in descriptions and store keys."""
    token = "ab-12345678-abcd-1234-abcd-123456789012"
    args = ["--conda", "fx-core"]
    if where == "--channel":
        args += ["--channel", f"https://repo.example.com/api/t/{token}/private"]
    else:
        cli_env[where] = f"https://repo.example.com/api/t/{token}"
    out = run(*args)
    message = failed(out)
    assert token not in out.stderr + out.stdout
    assert "carries an access token (/t/<TOKEN>/)" in message and "/t/<TOKEN>" in message
    assert ("channel alias" in message) == (where == "METAFLOW_CONDA_CHANNEL_ALIAS")


@pytest.mark.parametrize("second", ["a channel with another token", "an index with a password"])
def test_sources_on_one_host_with_different_credentials_are_refused(
    cli_env: dict[str, str], token_channel: TokenChannel, second: str
) -> None:
    """Resolvers get one credential per host: a second source there with other credentials would be sent the
    first's (a 401 far from its cause, or worse); refused up front, showing neither secret."""
    other = "other-token-1234567890"
    cli_env["METAFLOW_CONDA_CHANNELS"] = token_channel.url_with_token
    host = token_channel.url.removesuffix("/channel").removeprefix("http://")
    if second.startswith("a channel"):
        args = ["--channel", f"http://{host}/t/{other}/channel", "--conda", "fx-core"]
    else:
        args = ["--conda", "fx-core", "--pypi", "fx-extras", "--index", f"http://me:{other}@{host}/simple/"]
    out = envcore("resolve", "--dry-run", *args, env=cli_env)
    message = failed(out)
    assert token_channel.token not in out.stdout + out.stderr and other not in out.stdout + out.stderr
    assert f"Two sources on {host.partition(':')[0]} carry different credentials" in message
    assert "METAFLOW_CONDA_SRCS_AUTH_INFO" in message


def test_credentials_are_not_sent_to_another_port_of_their_host(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Before, a channel's password went with every request to an index on another port of the same host
    (envcore's own downloads, and uv through the netrc file); a port in METAFLOW_CONDA_SRCS_AUTH_INFO's keys was
    ignored without a word (a 401 followed)."""
    cli_env["METAFLOW_CONDA_CHANNELS"] = "http://alice:s3cret@127.0.0.1:9/channel"
    cli_env["METAFLOW_CONDA_DEFAULT_PYPI_SOURCE"] = "http://127.0.0.1:10/simple/"
    out = envcore("resolve", "--dry-run", "--pypi", "fx-core", env=cli_env)
    message = failed(out)
    assert message.startswith(
        "envcore: The source http://127.0.0.1:9/channel carries credentials and http://127.0.0.1:10/simple/, on "
        "the same host at another port, none."
    )
    assert "s3cret" not in out.stdout + out.stderr
    cli_env["METAFLOW_CONDA_CHANNELS"] = "http://127.0.0.1:9/channel"
    cli_env["METAFLOW_CONDA_SRCS_AUTH_INFO"] = '{"127.0.0.1:9": ["alice", "s3cret"]}'
    out = envcore("resolve", "--dry-run", "--pypi", "fx-core", env=cli_env)
    assert "with the key '127.0.0.1:9', which is not a host name" in failed(out)
    assert "s3cret" not in out.stdout + out.stderr


def test_a_short_channel_token_with_dots_is_kept_out_of_everything_stored_and_printed(
    cli_env: dict[str, str], universe: Universe, tmp_path: Path
) -> None:
    """Before, only tokens of 8 or more of [A-Za-z0-9_-] were taken out: ``/t/ab.S3CRET/`` was stored in the
    description, the store's keys and the repodata cache, and printed."""
    from envcore.testing.servers import serve_directory

    token = "ab.S3CRET"
    with serve_directory(universe.root, token=token) as served:
        cli_env["METAFLOW_CONDA_CHANNELS"] = f"{served.url}/t/{token}/channel"
        out = envcore("resolve", "--conda", "fx-core", "--alias", "team/short:v1", env=cli_env)
        assert out.returncode == 0, out.stderr
    assert "S3CRET" not in out.stdout + out.stderr
    stored = [p for root in ("store", "cache") for p in (tmp_path / root).rglob("*")]
    assert stored and not [p for p in stored if "S3CRET" in str(p)]
    assert not [p for p in stored if p.is_file() and not p.is_symlink() and b"S3CRET" in p.read_bytes()]


@pytest.mark.parametrize("closed", ["2>&-", ">&-"])
def test_a_closed_output_stream_is_no_error(cli_env: dict[str, str], closed: str) -> None:
    """Before, with stderr closed every command failed ('NoneType' object has no attribute 'isatty'), and with
    stdout closed a traceback followed the command's work (exit 1)."""
    envcore_bin = shutil.which("envcore") or str(Path(sys.executable).with_name("envcore"))
    for command in ("resolve --dry-run --conda fx-core", "plugins"):
        done = subprocess.run(
            f"{envcore_bin} {command} {closed}",
            shell=True,
            env={**os.environ, **cli_env},
            capture_output=True,
        )
        assert done.returncode == 0, done.stderr
        assert b"Traceback" not in done.stderr


def test_output_to_a_full_device_is_a_one_paragraph_error(cli_env: dict[str, str]) -> None:
    """Before: 'internal error: OSError: [Errno 28] No space left on device. This is a bug in envcore', exit 3."""
    if not Path("/dev/full").exists():
        pytest.skip("this system has no /dev/full")
    envcore_bin = shutil.which("envcore") or str(Path(sys.executable).with_name("envcore"))
    done = subprocess.run(
        f"{envcore_bin} config show > /dev/full",
        shell=True,
        env={**os.environ, **cli_env},
        capture_output=True,
    )
    assert done.returncode == 1 and b"internal error" not in done.stderr
    assert b"envcore: Cannot write: No space left on device." in done.stderr


@pytest.mark.parametrize("resolver", ["uv", "pip"])
def test_an_index_that_refuses_the_credentials_is_named(
    cli_env: dict[str, str], auth_wheel_index: AuthEndpoint, auth_channel: AuthEndpoint, resolver: str
) -> None:
    """Before, a wrong password said 'fx-http was not found in the package registry ... Change the
    requirement' (uv) or 'ERROR: Exception:' (pip); a channel's 401 said 'Check the channel names'."""
    cli_env["METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER"] = resolver
    wrong = auth_wheel_index.url_with_credentials.replace(auth_wheel_index.password, "not-the-password")
    cli_env["METAFLOW_CONDA_DEFAULT_PYPI_SOURCE"] = wrong
    out = envcore("resolve", "--dry-run", "--pypi", "fx-http", env=cli_env)
    message = " ".join(out.stderr.split())
    assert out.returncode != 0 and "internal error" not in message
    assert (
        f"The PyPI index {auth_wheel_index.url} answers 401 (Unauthorized) with the credentials given"
        in message
    )
    assert "not-the-password" not in out.stderr
    wrong = auth_channel.url_with_credentials.replace(auth_channel.password, "not-the-password")
    out = envcore("resolve", "--dry-run", "--conda", f"{wrong}::fx-core", env=cli_env)
    message = " ".join(out.stderr.split())
    assert "401 Unauthorized" in message and "Check the channel's credentials" in message


def test_the_caching_line_says_how_long_it_took(cli_env: dict[str, str]) -> None:
    """Every phase line carries its time; caching said only 'Caching 2 item(s) to file:///...'."""
    import re

    out = envcore("resolve", "--conda", "fx-web", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert re.search(r"Caching \d+ item\(s\) to \S+ \.\.\. done in \d+\.\d\d seconds\.", out.stderr), (
        out.stderr
    )


def test_each_arch_of_a_coresolved_resolve_has_its_own_caching_lines(cli_env: dict[str, str]) -> None:
    """Before: 'Caching 1 item(s) to file:///... done' (or 'All environments already cached in ...') once per
    arch, word for word the same: which arch was which could not be told."""
    archs = ("linux-64", "osx-arm64")
    first = envcore("resolve", "--conda", "fx-web", *(f"--arch={a}" for a in archs), env=cli_env)
    again = envcore("resolve", "--force", "--conda", "fx-web", *(f"--arch={a}" for a in archs), env=cli_env)
    for out in (first, again):
        assert out.returncode == 0, out.stderr
        lines = [line.strip() for line in out.stderr.splitlines() if "cached" in line or "Caching" in line]
        assert len(lines) == len(set(lines)) >= 2, out.stderr
        assert all(any(f"for {a} " in line for line in lines) for a in archs), out.stderr
    assert "The environment for osx-arm64 is already cached in " in again.stderr, again.stderr


def ignored(out: Any) -> list[str]:
    """The warning lines of requirements left out by their markers."""
    return [line for line in out.stderr.splitlines() if "envcore: warning: Ignoring " in line]


def test_a_requirement_whose_marker_does_not_hold_is_said_to_be_left_out(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """pip says "Ignoring NAME: markers ... don't match your environment"; envcore left them out silently. Said
    once for all the archs of a resolve, only when resolving (not when a resolution is reused), not with
    --quiet."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        'fx-web==2.0.0\nfx-http ; sys_platform == "win32"\nfx-extras>=0.3 ; python_version < "3.8"\n'
    )
    args = ("resolve", "--json", "-r", str(requirements), "--arch", "linux-64", "--arch", "osx-arm64")
    first = envcore(*args, env=cli_env)
    assert first.returncode == 0, first.stderr
    python = platform.python_version()
    assert ignored(first) == [
        f'envcore: warning: Ignoring fx-http: its marker (sys_platform == "win32") does not hold for linux-64, '
        f"osx-arm64 with python {python}, the targets it was resolved for, so it is not in the environment.",
        f'envcore: warning: Ignoring fx-extras>=0.3: its marker (python_version < "3.8") does not hold for '
        f"linux-64, osx-arm64 with python {python}, the targets it was resolved for, so it is not in the "
        "environment.",
    ], first.stderr
    for env in json.loads(first.stdout).values():
        names = {p["envcore"]["name"] for p in env["env"]["packages"]}
        assert "fx-web" in names and not names & {"fx-http", "fx-extras"}, names
    assert ignored(envcore(*args, env=cli_env)) == []  # reused: nothing was evaluated
    assert ignored(envcore("--quiet", *args, "--force", env=cli_env)) == []
    (one,) = ignored(
        envcore("resolve", "--dry-run", "--pypi", 'fx-core ; platform_machine == "arm64"', env=cli_env)
    )
    assert f"does not hold for linux-64 with python {python}, the target it was resolved for" in one, one
    held = envcore(
        "resolve",
        "--dry-run",
        "--arch",
        "osx-arm64",
        "--pypi",
        'fx-core ; platform_machine == "arm64"',
        env=cli_env,
    )
    assert held.returncode == 0 and ignored(held) == [], held.stderr
