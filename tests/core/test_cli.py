"""The ``envcore`` CLI through its installed console script, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import InstallPlugin, resolver_plugin_code, settle, wait_for_settled_sys_path

ENVCORE = shutil.which("envcore", path=str(Path(sys.executable).parent))


def envcore(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert ENVCORE, "the envcore console script is not installed next to the test interpreter"
    return subprocess.run(
        [ENVCORE, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120
    )


def test_help_lists_the_commands() -> None:
    out = envcore("--help")
    assert out.returncode == 0
    for command in ("resolve", "create", "get", "show", "alias", "plugins", "config"):
        assert f"  {command} " in out.stdout


@pytest.mark.parametrize("args", [("-v", "plugins"), ("plugins", "--verbose")])
def test_verbose_gives_the_detailed_output_of_metaflow_debug_conda(args: tuple[str, ...]) -> None:
    """Before, --verbose gave tracebacks only; the debug lines (plugins, tool command lines) needed the variable."""
    out = envcore(*args, env={"METAFLOW_DEBUG_CONDA": ""})
    assert out.returncode == 0 and "debug[envcore plugins]: registered plugin builtin" in out.stderr
    assert "debug[" not in envcore("plugins", env={"METAFLOW_DEBUG_CONDA": ""}).stderr
    shown = envcore("-v", "config", "show", env={"METAFLOW_DEBUG_CONDA": ""}).stdout
    assert any(
        line.startswith("METAFLOW_DEBUG_CONDA") and "(--verbose)" in line for line in shown.splitlines()
    )


def test_plugins_json_lists_the_builtins() -> None:
    out = envcore("plugins", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    builtin = next(p for p in data["plugins"] if p["name"] == "builtin")
    assert builtin["status"] == "loaded"
    assert "store:local" in builtin["provides"]
    assert data["selected"]["CONDA_DEPENDENCY_RESOLVER"] == "rattler"


def test_plugins_check_reports_unavailable_backends(install_plugin: InstallPlugin) -> None:
    site = install_plugin(
        "envcore-pixi", {"pixi": "envcore_pixi.plugin"}, {"envcore_pixi.plugin": resolver_plugin_code("pixi")}
    )
    out = envcore("plugins", "--check", "--json", env={"PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["resolvers"]["pixi"] == {
        "available": False,
        "version": None,
        "reason": "pixi-bin is not on PATH",
        "executables": ["pixi"],  # what it drives (its ResolverPlugin's executables)
    }
    pixi = next(p for p in data["plugins"] if p["name"] == "pixi")
    assert (pixi["distribution"], pixi["version"]) == ("envcore-pixi", "1.0")


def test_plugins_shows_import_failures_and_keeps_working(install_plugin: InstallPlugin) -> None:
    site = install_plugin(
        "envcore-broken", {"broken": "envcore_broken.plugin"}, {"envcore_broken.plugin": "1/0\n"}
    )
    out = envcore("plugins", env={"PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    assert "broken           failed" in out.stdout
    assert "ZeroDivisionError: division by zero" in out.stdout


def test_plugins_aligns_long_names_and_lists_contract_breakers(install_plugin: InstallPlugin) -> None:
    """A plugin loaded by module path is named after it; a plugin that breaks the hook contract is listed as
    failed, with what is wrong, and the other commands keep working."""
    code = "from envcore import hookimpl\n\n@hookimpl\ndef envcore_resolver():\n    return []\n"
    site = install_plugin("envcore-typo", {"typo": "envcore_typo.plugin"}, {"envcore_typo.plugin": code})
    env = {"PYTHONPATH": str(site), "METAFLOW_ENVCORE_PLUGIN_MODULES": "a.rather.long.module.path.plugin"}
    out = envcore("plugins", env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    long_name = next(line for line in lines if line.startswith("a.rather.long.module.path.plugin "))
    builtin = next(line for line in lines if line.startswith("builtin "))
    assert long_name.index("failed") == builtin.index("loaded")  # the status column holds
    assert "Did you mean 'envcore_resolvers' (instead of 'envcore_resolver')?" in out.stdout
    assert envcore("config", "show", env=env).returncode == 0
    # a hook with arguments its spec has not: one line, said as a contract (the module imported), one full stop
    code = "from envcore import hookimpl\n\n@hookimpl\ndef envcore_storage(config):\n    return []\n"
    site = install_plugin("unused", {}, {"envcore_args.plugin": code})
    env = {"PYTHONPATH": str(site), "METAFLOW_ENVCORE_PLUGIN_MODULES": "envcore_args.plugin"}
    warned = envcore("show", "x/y:v1", env=env).stderr
    (line,) = [line for line in warned.splitlines() if "envcore_args.plugin" in line]
    assert "does not follow envcore's hook contract" in line and "cannot be imported" not in line
    assert "(its registration hooks: none)" in line and ".." not in line
    # a hook without the marker, or a registration hook that raises: also the contract, not an import failure
    for number, code in enumerate(
        (
            "def envcore_storage():\n    return []\n",
            "from envcore import hookimpl\n\n@hookimpl\ndef envcore_storage():\n    raise ValueError('no')\n",
        )
    ):
        site = install_plugin(f"unused{number}", {}, {"envcore_bad.plugin": code})
        env = {"PYTHONPATH": str(site), "METAFLOW_ENVCORE_PLUGIN_MODULES": "envcore_bad.plugin"}
        (line,) = [
            line for line in envcore("show", "x/y:v1", env=env).stderr.splitlines() if "envcore_bad" in line
        ]
        assert "does not follow envcore's hook contract" in line and "cannot be imported" not in line, line
    # a setting envcore declares otherwise: said as such, naming the setting and both declarations' owners
    code = "from envcore import hookimpl\nfrom envcore.types import Setting\n\n@hookimpl\ndef envcore_settings():\n"
    code += "    yield Setting(name='CONDA_LOCK_TIMEOUT', default='soon')\n"
    site = install_plugin("unused-clash", {}, {"envcore_clash.plugin": code})
    env = {"PYTHONPATH": str(site), "METAFLOW_ENVCORE_PLUGIN_MODULES": "envcore_clash.plugin"}
    (line,) = [line for line in envcore("plugins", env=env).stderr.splitlines() if "envcore_clash" in line]
    assert line.startswith(
        "envcore: warning: the plugin module envcore_clash.plugin (METAFLOW_ENVCORE_PLUGIN_MODULES) declares the "
        "setting CONDA_LOCK_TIMEOUT, which envcore itself declares otherwise (default 'soon', not 3600;"
    ), line
    assert line.endswith(
        "or read envcore's without declaring it. It is left out: commands that need its backends will fail."
    ), line
    assert "install the module" not in line and "cannot be imported" not in line, line


def test_config_show_masks_secrets_and_names_sources() -> None:
    out = envcore(
        "config",
        "show",
        "--json",
        env={"METAFLOW_CONDA_SRCS_AUTH_INFO": '{"h": ["u", "s3cret"]}', "METAFLOW_CONDA_TEST": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert "s3cret" not in out.stdout
    rows = {row["key"]: row for row in json.loads(out.stdout)}
    assert rows["METAFLOW_CONDA_SRCS_AUTH_INFO"]["value"] == "********"
    assert (rows["METAFLOW_CONDA_TEST"]["value"], rows["METAFLOW_CONDA_TEST"]["source"]) == (True, "env var")
    assert rows["METAFLOW_CONDA_LOCK_TIMEOUT"] == {
        "key": "METAFLOW_CONDA_LOCK_TIMEOUT",
        "value": 3600,
        "source": "default",
        "secret": False,
        "valid": True,
    }


def test_bad_config_is_one_paragraph_without_traceback() -> None:
    out = envcore("resolve", "--conda", "fx-core", env={"METAFLOW_CONDA_LOCK_TIMEOUT": "soon"})
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("envcore: `METAFLOW_CONDA_LOCK_TIMEOUT` is 'soon' (from env var)")
    verbose = envcore(
        "--verbose", "resolve", "--conda", "fx-core", env={"METAFLOW_CONDA_LOCK_TIMEOUT": "soon"}
    )
    assert "Traceback" in verbose.stderr


def test_a_long_word_of_an_error_is_cut() -> None:
    """A library's error may repeat a user's value (rattler: "no candidates were found for NAME"): no word of
    the paragraph has more than 200 characters."""
    from envcore.cli import format_error
    from envcore.errors import ResolutionError

    message = format_error(ResolutionError(f"no candidates were found for {'x' * 3000}. Check the name."))
    assert " ".join(message.split()) == (
        f"envcore: no candidates were found for {'x' * 160}...{'x' * 39}. (cut from 3001 characters) Check the name."
    )


def test_config_show_lists_every_key_and_names_the_bad_ones() -> None:
    bad = {"METAFLOW_CONDA_LOCK_TIMEOUT": "soon", "METAFLOW_CONDA_SRCS_AUTH_INFO": "{bad secret"}
    out = envcore("config", "show", env=bad)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert rows["METAFLOW_CONDA_LOCK_TIMEOUT"].split()[1:] == ["<not", "valid>", "(env", "var)"]
    assert rows["METAFLOW_CONDA_SRCS_AUTH_INFO"].split()[1:] == ["<not", "valid>", "(env", "var)"]
    assert "(default)" in rows["METAFLOW_CONDA_DEPENDENCY_RESOLVER"]  # the other keys are listed as usual
    message = " ".join(out.stderr.split())
    assert "`METAFLOW_CONDA_LOCK_TIMEOUT` is 'soon'" in message
    assert "Set it to a JSON value such as {}" in message and "bad secret" not in out.stdout + out.stderr
    as_json = {row["key"]: row for row in json.loads(envcore("config", "show", "--json", env=bad).stdout)}
    assert as_json["METAFLOW_CONDA_LOCK_TIMEOUT"] == {
        "key": "METAFLOW_CONDA_LOCK_TIMEOUT",
        "value": None,
        "source": "env var",
        "secret": False,
        "valid": False,
    }
    assert as_json["METAFLOW_CONDA_SRCS_AUTH_INFO"]["secret"] is True
    assert as_json["METAFLOW_CONDA_DEPENDENCY_RESOLVER"]["valid"] is True


def test_unknown_resolver_is_reported_with_its_source(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("fx-app==1.0\n")
    out = envcore("resolve", "--conda", "fx-ffmpeg", env={"METAFLOW_CONDA_DEPENDENCY_RESOLVER": "nosuch"})
    assert out.returncode == 2, out.stderr
    message = " ".join(out.stderr.split())
    assert message.startswith(
        "envcore: `METAFLOW_CONDA_DEPENDENCY_RESOLVER` is \"nosuch\" (from env var), but no resolver named 'nosuch' "
        "is installed. Install the distribution that provides it"
    )
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resolve"], "Nothing to resolve"),
        (["resolve", "-r", "a.txt", "-f", "b.yml"], "Can only specify one of -r, -f or -p"),
        (["resolve", "--conda", "x", "--arch", "linux-65"], "Unknown architecture 'linux-65'"),
        (["resolve", "--conda", "x", "--python", " "], "--python is empty"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    out = envcore(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_alias_is_one_paragraph_naming_where_it_looked() -> None:
    out = envcore("create", "team/env:v1")
    assert out.returncode == 1
    text = " ".join(out.stderr.split())
    assert "'team/env:v1' does not refer to a known environment locally or in file://" in text
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) <= 3


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("METAFLOW_DEFAULT_DATASTORE", "no store named 'bogus' is installed"),
        ("METAFLOW_CONDA_LOCALROOT", "is a file, not a folder. Point METAFLOW_CONDA_LOCALROOT"),
    ],
)
def test_a_store_that_cannot_be_made_is_named_before_resolving(
    setting: str, message: str, tmp_path: Path
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    value = "bogus" if setting == "METAFLOW_DEFAULT_DATASTORE" else str(a_file)
    out = envcore("resolve", "--conda", "fx-nowhere", env={setting: value})
    text = " ".join(out.stderr.split())
    assert out.returncode in (1, 2) and message in text, text
    assert "fx-nowhere" not in text and "Resolving" not in text and "Traceback" not in text, text


def test_a_misspelled_setting_is_warned_about_with_the_name_meant() -> None:
    out = envcore(
        "plugins",
        env={
            "METAFLOW_CONDA_CHANELS": "conda-forge",  # a typo of a known name
            "METAFLOW_ENVCORE_CACHEDIR": "/tmp/x",  # envcore's own prefix: never someone else's
            "METAFLOW_CONDA_PACKAGE_S3ROOT": "s3://b/p",  # OSS Metaflow's: not close to one of envcore's
        },
    )
    text = " ".join(out.stderr.split())
    assert out.returncode == 0, text
    assert "METAFLOW_CONDA_CHANELS is not a setting envcore knows, so it is ignored. Did you mean " in text
    assert "METAFLOW_CONDA_CHANNELS?" in text and "Did you mean METAFLOW_ENVCORE_CACHE_DIR?" in text, text
    assert "S3ROOT" not in text, text


def test_a_misspelled_key_of_the_config_file_is_warned_about_by_config_show_and_plugins(
    tmp_path: Path,
) -> None:
    """Before: only environment variables were checked, and only by the commands that load plugins; a typo in
    config.json (or a key without Metaflow's METAFLOW_ prefix) was silently the default, in `config show` too."""
    (tmp_path / "config.json").write_text(
        json.dumps({"METAFLOW_CONDA_DEPENDENCY_RESOLVR": "mamba", "DEFAULT_DATASTORE": "s3"})
    )
    env = {"METAFLOW_HOME": str(tmp_path), "METAFLOW_PROFILE": "", "METAFLOW_CONDA_CHANELS": "conda-forge"}
    for args in (("config", "show"), ("plugins",)):
        out = envcore(*args, env=env)
        text = " ".join(out.stderr.split())
        assert out.returncode == 0, text
        assert (
            f"METAFLOW_CONDA_DEPENDENCY_RESOLVR in {tmp_path / 'config.json'} is not a setting envcore knows, so it "
            "is ignored. Did you mean METAFLOW_CONDA_DEPENDENCY_RESOLVER?"
        ) in text, text
        assert (
            f"DEFAULT_DATASTORE in {tmp_path / 'config.json'} is not read: the keys of Metaflow's config file carry "
            "the METAFLOW_ prefix. Rename it METAFLOW_DEFAULT_DATASTORE."
        ) in text, text
        assert "METAFLOW_CONDA_CHANELS is not a setting envcore knows" in text, text


def test_version() -> None:
    out = envcore("--version")
    assert out.returncode == 0
    from envcore import __version__

    assert out.stdout.strip() == f"envcore, version {__version__}"


COMMAND_PLUGIN = """
    import os

    import click

    from envcore import hookimpl
    from envcore.types import CommandPlugin

    with open(os.environ["PLUGIN_LOADS"], "a") as log:
        log.write("loaded\\n")

    @hookimpl
    def envcore_cli_commands():
        yield CommandPlugin(
            name="{name}",
            factory=lambda: click.Command("{name}", callback=lambda: click.echo("hi")),
            summary="{summary}",
        )
"""


def test_help_lists_plugin_commands_without_loading_plugins_each_time(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    loads = tmp_path / "loads.log"
    env = {"METAFLOW_ENVCORE_CACHE_DIR": str(tmp_path / "cache"), "PLUGIN_LOADS": str(loads)}
    assert "hello" not in envcore("--help", env=env).stdout
    site = install_plugin(
        "envcore-hello",
        {"hello": "envcore_hello.plugin"},
        {"envcore_hello.plugin": COMMAND_PLUGIN.format(name="hello", summary="Say hello.")},
    )
    settle(site, seconds_ago=20)  # (a change of the last 2 s is never remembered: file times are coarse)
    wait_for_settled_sys_path(site)
    env["PYTHONPATH"] = str(site)  # a newly installed distribution: found
    first = envcore("--help", env=env)
    assert "  hello    Say hello." in first.stdout  # its summary, from the record: the command is not built
    assert loads.read_text() == "loaded\n"
    second = envcore("--help", env=env)
    assert second.stdout == first.stdout
    assert loads.read_text() == "loaded\n"  # answered from the remembered list
    # the plugin's module is edited: found again
    module = site / "envcore_hello" / "plugin.py"
    module.write_text(textwrap.dedent(COMMAND_PLUGIN.format(name="howdy", summary="")))
    settle(site, seconds_ago=10)
    third = envcore("--help", env=env)
    assert "  howdy    (plugin command)" in third.stdout and "hello" not in third.stdout
    assert envcore("howdy", env=env).stdout == "hi\n"
    # the plugin is disabled by configuration: gone at once
    env["METAFLOW_ENVCORE_DISABLED_PLUGINS"] = "hello"
    assert "howdy" not in envcore("--help", env=env).stdout


def test_a_plugin_command_named_as_a_built_in_one_is_not_listed_twice(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    site = install_plugin(
        "envcore-shadow",
        {"shadow": "envcore_shadow.plugin"},
        {"envcore_shadow.plugin": COMMAND_PLUGIN.format(name="resolve", summary="")},
    )
    env = {
        "METAFLOW_ENVCORE_CACHE_DIR": str(tmp_path / "cache"),
        "PLUGIN_LOADS": str(tmp_path / "loads.log"),
        "PYTHONPATH": str(site),
    }
    listed = [
        line.split()[0]
        for line in envcore("--help", env=env).stdout.split("Commands:")[1].splitlines()
        if line
    ]
    assert listed.count("resolve") == 1
    assert "Nothing to resolve" in envcore("resolve", env=env).stderr  # the built-in command runs


def test_start_up_objects_are_frozen_and_collection_is_on_when_the_command_runs() -> None:
    """The entry point pauses the cyclic garbage collector while it imports, then freezes what was imported:
    the command itself runs with collection on (its garbage is collected), and start-up objects are never
    traversed again."""
    probe = textwrap.dedent(
        """
        import gc, sys
        import envcore.cli
        def command():
            print(gc.isenabled(), gc.get_freeze_count() > 1000, flush=True)
        envcore.cli.main = command
        sys.argv = ["envcore", "--help"]
        from envcore.__main__ import main
        main()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["True", "True"]


def test_plugins_check_names_a_selected_backend_that_is_not_installed(tmp_path: Path) -> None:
    """Before, `plugins --check` listed METAFLOW_DEFAULT_DATASTORE = nope as a plain value and exited 0."""
    env = {"METAFLOW_ENVCORE_CACHE_DIR": str(tmp_path)}
    assert envcore("plugins", "--check", env=env).returncode == 0
    out = envcore("plugins", "--check", env={**env, "METAFLOW_DEFAULT_DATASTORE": "nope"})
    assert out.returncode == 1
    assert 'selected backend unusable: `METAFLOW_DEFAULT_DATASTORE` is "nope"' in out.stdout
    as_json = envcore("plugins", "--check", "--json", env={**env, "METAFLOW_DEFAULT_DATASTORE": "nope"})
    assert as_json.returncode == 1 and "no store named 'nope'" in as_json.stdout
    # a selected resolver that is installed but cannot run here (no mamba binary): exit 1 too
    no_mamba = {**env, "METAFLOW_CONDA_DEPENDENCY_RESOLVER": "mamba", "PATH": "/usr/bin:/bin"}
    out = envcore("plugins", "--check", env=no_mamba)
    assert out.returncode == 1, out.stdout
    assert (
        "METAFLOW_CONDA_DEPENDENCY_RESOLVER selects the resolver mamba, which cannot run here" in out.stdout
    )


def test_plugins_check_names_a_resolver_that_breaks_the_contract_and_lists_the_others(tmp_path: Path) -> None:
    """A resolver without check(), or whose check() raises what is no envcore error (an OSError of a missing
    program), is unavailable with its plugin named; it was an internal error, or a message about the cache."""
    (tmp_path / "broken_resolvers.py").write_text(
        "from envcore import hookimpl\n"
        "from envcore.types import EnvType, ResolverPlugin\n\n"
        "class NoCheck:\n    def __init__(self, config): pass\n\n"
        "class Raises:\n    def __init__(self, config): pass\n"
        "    def check(self):\n        raise FileNotFoundError(2, 'No such file or directory', 'pixi-not-here')\n\n"
        "@hookimpl\ndef envcore_resolvers():\n"
        "    for name, factory in (('nocheck', NoCheck), ('raises', Raises)):\n"
        "        yield ResolverPlugin(name=name, env_types=frozenset({EnvType.CONDA_ONLY}), factory=factory,\n"
        "                             summary='broken', executables=('pixi',))\n"
    )
    env = {
        "PYTHONPATH": str(tmp_path),
        "METAFLOW_ENVCORE_PLUGIN_MODULES": "broken_resolvers",
        "METAFLOW_ENVCORE_CACHE_DIR": str(tmp_path / "cache"),
    }
    out = envcore("plugins", "--check", env=env)
    text = " ".join(out.stdout.split())
    assert out.returncode == 0 and "internal error" not in out.stderr, out.stderr  # neither is selected
    assert "resolver nocheck unavailable: its check() or version() failed with AttributeError" in text, text
    assert "resolver raises unavailable: its check() or version() failed with FileNotFoundError" in text, text
    assert "a bug in the plugin broken_resolvers" in text and "(drives pixi)" in text, text
    assert "resolver rattler available" in text, text


def test_a_malformed_alias_is_bad_input_and_an_unknown_one_a_failure(tmp_path: Path) -> None:
    """Exit status 2 for bad input (a malformed alias, as a malformed --name or option); 1 for an alias that is
    well formed but refers to nothing. Before, both exited 1."""
    env = {"METAFLOW_CONDA_LOCALROOT": str(tmp_path / "store"), "METAFLOW_DEFAULT_DATASTORE": "local"}
    malformed = envcore("show", "Team/Env", env=env)
    assert malformed.returncode == 2 and "Invalid environment alias 'Team/Env'" in malformed.stderr
    as_alias = envcore("alias", "team/env", "step:Flow/1/start", env=env)
    assert as_alias.returncode == 2 and "cannot be given as an alias" in as_alias.stderr
    unknown = envcore("show", "team/env", env=env)
    assert unknown.returncode == 1 and "does not refer to a known environment" in unknown.stderr


def test_plugins_check_lists_a_hook_returning_none_as_broken(tmp_path: Path) -> None:
    """Before, a registration hook returning None was read as no records: the plugin was listed as loaded."""
    (tmp_path / "forgot_yield.py").write_text(
        "from envcore import hookimpl\n\n@hookimpl\ndef envcore_resolvers():\n    return None\n"
    )
    env = {
        "PYTHONPATH": str(tmp_path),
        "METAFLOW_ENVCORE_PLUGIN_MODULES": "forgot_yield",
        "METAFLOW_ENVCORE_CACHE_DIR": str(tmp_path / "cache"),
    }
    out = envcore("plugins", "--check", env=env)
    # it provides no selected backend: listed as broken, not an error of the command
    assert out.returncode == 0 and "internal error" not in out.stderr, out.stderr
    (row,) = [line.split() for line in out.stdout.splitlines() if line.startswith("forgot_yield ")]
    assert row[1:] == ["failed", "module", "forgot_yield"], row
    said = " ".join(out.stdout.split())
    assert (
        "error: it does not follow the envcore hook contract: envcore_resolvers() returned None instead"
        in said
    )
    warning = " ".join(out.stderr.split())
    assert "the plugin module forgot_yield (METAFLOW_ENVCORE_PLUGIN_MODULES) does not follow" in warning, (
        warning
    )
