from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from envcore import plugincache
from envcore.config import Config
from envcore.errors import BackendUnavailable, ConfigError, PluginError
from envcore.plugins import BROKEN_CONTRACT, build_registry, has_credentials
from envcore.types import EnvType, LockedPackage, PackageFile, PackageKind

from .conftest import InstallPlugin, resolver_plugin_code, settle, wait_for_settled_sys_path


def test_builtins_are_registered_explicitly() -> None:
    registry = build_registry(Config.load())
    assert registry.plugins["builtin"].distribution == "envcore"
    assert {"store:local", "naming:default"} <= set(registry.plugins["builtin"].provides)
    assert set(registry.stores) >= {"local"}


def test_hook_specifications_and_implementations_are_found_as_pluggy_finds_them() -> None:
    """envcore's manager reads markers off a module's functions without pluggy's static inspection of every name:
    the same specifications (of envcore.hookspecs) and implementations (of every installed plugin) as pluggy's."""
    import pluggy

    from envcore import hookspecs
    from envcore.plugins import _PluginManager

    registry = build_registry(Config.load())
    ours, pluggys = _PluginManager("envcore"), pluggy.PluginManager("envcore")
    modules = [hookspecs, *(plugin for _, plugin in registry.pm.list_name_plugin())]
    assert len(modules) > 2
    for module in modules:
        for name in dir(module):
            assert ours.parse_hookspec_opts(module, name) == pluggys.parse_hookspec_opts(module, name), name
            assert ours.parse_hookimpl_opts(module, name) == pluggys.parse_hookimpl_opts(module, name), name
    assert sum(ours.parse_hookspec_opts(hookspecs, name) is not None for name in dir(hookspecs)) == len(
        [name for name in dir(hookspecs) if name.startswith("envcore_")]
    )


def test_entry_point_plugin_is_found_with_its_distribution(install_plugin: InstallPlugin) -> None:
    install_plugin(
        "envcore-pixi", {"pixi": "envcore_pixi.plugin"}, {"envcore_pixi.plugin": resolver_plugin_code("pixi")}
    )
    registry = build_registry(Config.load())
    info = registry.plugins["pixi"]
    assert (info.distribution, info.version, info.status) == ("envcore-pixi", "1.0", "loaded")
    assert info.provides == ["resolver:pixi"]
    # its declared setting joined the configuration, and the factory receives it
    assert registry.config.get("ENVCORE_PIXI_EXE") == "pixi-bin"
    with pytest.raises(BackendUnavailable, match="pixi-bin is not on PATH"):
        registry.resolver_named("pixi").check()


def test_plugin_by_module_path(install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch) -> None:
    site = install_plugin("unused", {}, {"envcore_remote.plugin": resolver_plugin_code("remote")})
    assert site.is_dir()
    monkeypatch.setenv("METAFLOW_ENVCORE_PLUGIN_MODULES", "envcore_remote.plugin")
    registry = build_registry(Config.load())
    assert registry.plugins["remote"].module == "envcore_remote.plugin"
    assert "remote" in registry.resolvers
    monkeypatch.setenv("METAFLOW_ENVCORE_PLUGIN_MODULES", "custom=envcore_remote.plugin")
    assert "custom" in build_registry(Config.load()).plugins


def test_plugin_names_are_lower_case_wherever_they_come_from(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, METAFLOW_ENVCORE_PLUGIN_MODULES=Pixi=module loaded a plugin named 'Pixi', which the allow- and
    block-lists (and a remote node, given it back as Pixi=module) then had to spell so."""
    install_plugin("unused", {}, {"envcore_remote.plugin": resolver_plugin_code("remote")})
    install_plugin("unused2", {}, {"MyCo.plugin": resolver_plugin_code("myco")})
    monkeypatch.setenv("METAFLOW_ENVCORE_PLUGIN_MODULES", "Pixi=envcore_remote.plugin")
    with pytest.raises(ConfigError) as info:
        build_registry(Config.load())
    assert info.value.message == (
        "`METAFLOW_ENVCORE_PLUGIN_MODULES` is [\"Pixi=envcore_remote.plugin\"] (from env var), but 'Pixi', the name "
        "it gives envcore_remote.plugin, is not a plugin name: plugin names, as backend names, are lower-case "
        "letters, digits, '-', '_' or '.' (and METAFLOW_ENVCORE_PLUGINS and METAFLOW_ENVCORE_DISABLED_PLUGINS "
        "match them exactly). Write pixi=envcore_remote.plugin."
    )
    monkeypatch.setenv("METAFLOW_ENVCORE_PLUGIN_MODULES", "my plugin=envcore_remote.plugin")
    with pytest.raises(ConfigError, match=r"'my plugin', the name it gives .* Give it such a name\."):
        build_registry(Config.load())
    # a name envcore gives a module path is lower-case; so must be an entry point's
    monkeypatch.setenv("METAFLOW_ENVCORE_PLUGIN_MODULES", "MyCo.plugin")
    install_plugin("envcore-upper", {"Upper": "envcore_remote.plugin"}, {})
    registry = build_registry(Config.load())
    assert registry.plugins["myco.plugin"].status == "loaded" and "myco" in registry.resolvers
    upper = registry.plugins["Upper"]
    assert (upper.status, upper.error) == (
        "failed",
        "its entry point is named 'Upper', which is not a plugin name: plugin names, as backend names, are "
        "lower-case letters, digits, '-', '_' or '.'. Rename the entry point (the distribution's "
        "[project.entry-points.envcore])",
    )


def test_same_plugin_by_entry_point_and_module_path_is_loaded_once(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(
        "envcore-pixi", {"pixi": "envcore_pixi.plugin"}, {"envcore_pixi.plugin": resolver_plugin_code("pixi")}
    )
    monkeypatch.setenv("METAFLOW_ENVCORE_PLUGIN_MODULES", "envcore_pixi.plugin")
    registry = build_registry(Config.load())
    assert registry.plugins["pixi"].distribution == "envcore-pixi"
    # under other names too (NAME=module.path), even twice: it is the plugin already loaded
    monkeypatch.setenv("METAFLOW_ENVCORE_PLUGIN_MODULES", "ds=envcore_pixi.plugin,x=envcore_pixi.plugin")
    registry = build_registry(Config.load())
    assert registry.plugins["pixi"].status == "loaded" and "pixi" in registry.resolvers


def test_allow_and_block_lists(install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(
        "envcore-pixi", {"pixi": "envcore_pixi.plugin"}, {"envcore_pixi.plugin": resolver_plugin_code("pixi")}
    )
    monkeypatch.setenv("METAFLOW_ENVCORE_DISABLED_PLUGINS", "pixi")
    registry = build_registry(Config.load())
    assert registry.plugins["pixi"].status == "blocked"
    assert "pixi" not in registry.resolvers
    monkeypatch.delenv("METAFLOW_ENVCORE_DISABLED_PLUGINS")
    monkeypatch.setenv("METAFLOW_ENVCORE_PLUGINS", '["other"]')
    monkeypatch.setenv("METAFLOW_CONDA_DEPENDENCY_RESOLVER", "pixi")
    registry = build_registry(Config.load())
    assert registry.plugins["pixi"].status == "not-allowed"
    with pytest.raises(ConfigError) as refused:
        registry.resolver_plugin(EnvType.CONDA_ONLY)
    # before: "installed but not-allowed by METAFLOW_ENVCORE_PLUGINS / METAFLOW_ENVCORE_DISABLED_PLUGINS ... or
    # choose one of: (none installed)", where the installed resolvers are left out by that setting
    assert (
        "no resolver named 'pixi' is loaded. The plugin 'pixi' is installed but left out by METAFLOW_ENVCORE_PLUGINS "
        "(which does not list it)" in refused.value.message
    )
    assert refused.value.message.endswith(
        "choose one of: (none that METAFLOW_ENVCORE_PLUGINS and METAFLOW_ENVCORE_DISABLED_PLUGINS allow)."
    )


def test_import_failure_is_recorded_and_fails_only_when_selected(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(
        "envcore-broken",
        {"broken": "envcore_broken.plugin"},
        {"envcore_broken.plugin": "import no_such_module\n"},
    )
    registry = build_registry(Config.load())
    info = registry.plugins["broken"]
    assert info.status == "failed"
    assert info.error == "ModuleNotFoundError: No module named 'no_such_module'"
    assert registry.store().url  # other commands still work
    monkeypatch.setenv("METAFLOW_CONDA_DEPENDENCY_RESOLVER", "broken")
    registry = build_registry(Config.load())
    with pytest.raises(ConfigError) as info_:
        registry.resolver_plugin(EnvType.CONDA_ONLY)
    assert "envcore-broken 1.0" in info_.value.message
    assert "failed to load: ModuleNotFoundError" in info_.value.message


def test_a_broken_plugin_named_unlike_the_backend_asked_for_is_named_in_the_error(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the distribution envcore-acme registers the plugin "acme" that would provide the resolver "pixi"
    install_plugin(
        "envcore-acme",
        {"acme": "envcore_acme.plugin"},
        {"envcore_acme.plugin": "import no_such_module\n"},
    )
    monkeypatch.setenv("METAFLOW_CONDA_DEPENDENCY_RESOLVER", "pixi")
    with pytest.raises(ConfigError) as info:
        build_registry(Config.load()).resolver_plugin(EnvType.CONDA_ONLY)
    message = info.value.message
    assert "no resolver named 'pixi' is installed" in message
    assert "failed to load and may provide it: acme (envcore-acme 1.0" in message
    assert "ModuleNotFoundError: No module named 'no_such_module'" in message


def test_duplicate_names_fail_naming_both_distributions(install_plugin: InstallPlugin) -> None:
    install_plugin(
        "envcore-pixi", {"pixi": "envcore_pixi.plugin"}, {"envcore_pixi.plugin": resolver_plugin_code("pixi")}
    )
    install_plugin(
        "pixi-fork",
        {"pixi-fork": "pixi_fork.plugin"},
        {"pixi_fork.plugin": resolver_plugin_code("pixi")},
        version="2.0",
    )
    with pytest.raises(PluginError) as info:
        build_registry(Config.load())
    assert "resolver 'pixi'" in info.value.message
    assert "envcore-pixi 1.0" in info.value.message
    assert "pixi-fork 2.0" in info.value.message


def _left_out(name: str) -> str:
    """Build the registry; ``name`` must be reported as failed while the rest works: its error."""
    registry = build_registry(Config.load())
    info = registry.plugins[name]
    assert info.status == "failed"
    assert not info.provides and name not in registry.resolvers
    assert name not in {n for n, _ in registry.pm.list_name_plugin()}
    assert "local" in registry.stores  # every other plugin is there
    assert info.error
    return info.error


def test_a_misspelled_hook_leaves_the_plugin_out_with_a_guess(install_plugin: InstallPlugin) -> None:
    code = """
        from envcore import hookimpl

        @hookimpl
        def envcore_resolver():
            return []
    """
    install_plugin("envcore-typo", {"typo": "envcore_typo.plugin"}, {"envcore_typo.plugin": code})
    assert "Did you mean 'envcore_resolvers' (instead of 'envcore_resolver')?" in _left_out("typo")


def test_a_hook_yielding_a_wrong_record_leaves_the_plugin_out(install_plugin: InstallPlugin) -> None:
    code = """
        from envcore import hookimpl
        from envcore.types import Setting

        @hookimpl
        def envcore_settings():
            yield Setting(name="ENVCORE_BAD_FINE")

        @hookimpl
        def envcore_resolvers():
            yield {"name": "dict"}
    """
    install_plugin("envcore-bad", {"bad": "envcore_bad.plugin"}, {"envcore_bad.plugin": code})
    assert "envcore_resolvers() yielded dict, but it must yield ResolverPlugin records" in _left_out("bad")
    assert (
        "ENVCORE_BAD_FINE" not in Config.load().names()
    )  # all or nothing: its good records are left out too


@pytest.mark.parametrize(
    ("body", "returned"),
    [
        ("return None", "None"),
        ("pass", "None"),
        ("return 3", "int"),
        (
            "return ResolverPlugin(name='alone', env_types=frozenset(), factory=print, summary='x')",
            "ResolverPlugin",
        ),
        ("return 'pixi'", "str"),
        ("return {'name': 'pixi'}", "dict"),
    ],
)
def test_a_hook_returning_no_records_leaves_the_plugin_out(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch, body: str, returned: str
) -> None:
    """Before, None was read as no records (a hook that forgot to yield registered nothing, silently), a value
    that is not iterable was said as the hook raising a TypeError, and text was read letter by letter."""
    code = f"""
        from envcore import hookimpl
        from envcore.types import ResolverPlugin

        @hookimpl
        def envcore_resolvers():
            {body}
    """
    install_plugin("envcore-norec", {"norec": "envcore_norec.plugin"}, {"envcore_norec.plugin": code})
    assert _left_out("norec") == (
        f"{BROKEN_CONTRACT}envcore_resolvers() returned {returned} instead of its ResolverPlugin records. Yield "
        "each record from it (or return a list of them; an empty one to register nothing)."
    )
    # a command that asks for a backend it does not provide names the plugin and the hook
    monkeypatch.setenv("METAFLOW_CONDA_DEPENDENCY_RESOLVER", "norec")
    with pytest.raises(ConfigError) as info:
        build_registry(Config.load()).resolver_plugin(EnvType.CONDA_ONLY)
    assert "'norec' (envcore-norec 1.0) failed to load" in info.value.message
    assert f"envcore_resolvers() returned {returned} instead" in info.value.message


def test_a_hook_returning_an_empty_list_registers_nothing(install_plugin: InstallPlugin) -> None:
    code = "from envcore import hookimpl\n\n@hookimpl\ndef envcore_resolvers():\n    return []\n"
    install_plugin("envcore-empty", {"empty": "envcore_empty.plugin"}, {"envcore_empty.plugin": code})
    assert build_registry(Config.load()).plugins["empty"].status == "loaded"


def test_unknown_resolver_message(monkeypatch: pytest.MonkeyPatch, install_plugin: InstallPlugin) -> None:
    install_plugin(
        "envcore-pixi", {"pixi": "envcore_pixi.plugin"}, {"envcore_pixi.plugin": resolver_plugin_code("pixi")}
    )
    monkeypatch.setenv("METAFLOW_CONDA_DEPENDENCY_RESOLVER", "quantum")
    registry = build_registry(Config.load())
    with pytest.raises(ConfigError) as info:
        registry.resolver_plugin(EnvType.CONDA_ONLY)
    message, _, choices = info.value.message.rpartition(", or choose one of: ")
    assert message == (
        "`METAFLOW_CONDA_DEPENDENCY_RESOLVER` is \"quantum\" (from env var), but no resolver named 'quantum' is "
        "installed. Install the distribution that provides it"
    )
    names = choices.rstrip(".").split(", ")
    assert {"pixi", "rattler"} <= set(names) and names == sorted(names)
    # a near miss is guessed; one of envcore's own resolvers, not installed, is found in its repository
    monkeypatch.setenv("METAFLOW_CONDA_DEPENDENCY_RESOLVER", "ratler")
    with pytest.raises(
        ConfigError, match=r"no resolver named 'ratler' is installed\. Did you mean 'rattler'\?"
    ):
        build_registry(Config.load()).resolver_plugin(EnvType.CONDA_ONLY)
    monkeypatch.setenv("METAFLOW_ENVCORE_DISABLED_PLUGINS", "micromamba")
    monkeypatch.setenv("METAFLOW_CONDA_DEPENDENCY_RESOLVER", "micromamba")
    with pytest.raises(ConfigError) as info:
        build_registry(Config.load()).resolver_plugin(EnvType.CONDA_ONLY)
    assert (
        "is installed but left out by METAFLOW_ENVCORE_DISABLED_PLUGINS (which lists it)"
        in info.value.message
    )
    monkeypatch.delenv("METAFLOW_ENVCORE_DISABLED_PLUGINS")
    missing = build_registry(Config.load())._unknown(
        "resolver", "CONDA_DEPENDENCY_RESOLVER", "poetry", ["uv"]
    )
    assert (
        "Install the distribution that provides it, envcore-poetry (in envcore's repository's backends/poetry"
        in (missing.message)
    )
    # an installer too (before: no hint, as its kind was neither 'store' nor 'resolver')
    missing = build_registry(Config.load())._unknown("pypi installer", "ENVCORE_PYPI_INSTALLER", "uv", [])
    assert "envcore-uv (in envcore's repository's backends/uv folder" in missing.message


def test_none_resolver_refuses_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAFLOW_CONDA_MIXED_DEPENDENCY_RESOLVER", "none")
    with pytest.raises(ConfigError, match="Cannot resolve environments in mixed mode"):
        build_registry(Config.load()).resolver_plugin(EnvType.MIXED)


def test_debug_traces_hooks(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("METAFLOW_DEBUG_CONDA", "1")
    build_registry(Config.load())
    assert "debug[envcore plugins]: builtin.envcore_storage() -> ['local']" in capsys.readouterr().err


def _pkg(url: str, sha256: str = "a" * 64, fmt: str = ".whl") -> LockedPackage:
    return LockedPackage(
        kind=PackageKind.PYPI,
        name="x",
        version="1",
        filename="x-1-py3-none-any",
        files=(PackageFile(url_format=fmt, url=url, sha256=sha256),),
    )


def test_what_the_configuration_selects_is_built_once_per_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flow asks for its resolver and naming scheme once per environment: each registry builds them once (the
    composed mixed resolver included); a failure is not kept, so the next call reports it again."""
    from envcore import resolve

    registry = build_registry(Config.load())
    for env_type in (EnvType.CONDA_ONLY, EnvType.MIXED, EnvType.PYPI_ONLY):
        first = resolve.resolver_for(registry, env_type)
        assert resolve.resolver_for(registry, env_type)[1] is first[1]
    assert registry.naming() is registry.naming()
    assert build_registry(Config.load()).naming() is not registry.naming()

    calls = []

    def failing() -> object:
        calls.append(1)
        raise ConfigError("not configured")

    for _ in range(2):
        with pytest.raises(ConfigError, match="not configured"):
            registry.kept("broken", failing)
    assert len(calls) == 2
    assert registry.kept("broken", lambda: 42) == 42 and registry.kept("broken", failing) == 42

    monkeypatch.setenv("METAFLOW_ENVCORE_NAMING", "nosuch")
    misconfigured = build_registry(Config.load())
    for _ in range(2):
        with pytest.raises(ConfigError, match="no naming scheme named 'nosuch'"):
            misconfigured.naming()


def test_core_checks_resolver_results() -> None:
    registry = build_registry(Config.load())
    registry.check_locked("r", [_pkg("https://h.example/x.whl")])
    bad = [
        (_pkg("https://u:p@h.example/x.whl"), "carries credentials"),
        (_pkg("https://h.example/x.whl?token=abc"), "carries credentials"),
        (_pkg("https://h.example/x.whl", sha256="nothex"), "no well-formed sha256"),
        (_pkg("https://h.example/x.rpm", fmt=".rpm"), "no registered package format"),
    ]
    for pkg, message in bad:
        with pytest.raises(PluginError, match=message):
            registry.check_locked("r", [pkg])
    one = _pkg("https://h.example/x.whl")
    with pytest.raises(PluginError, match=r"x twice \(1 and 1\)"):
        registry.check_locked("r", [one, one])
    with pytest.raises(PluginError, match="returned a generator, not a sequence"):
        registry.check_locked("r", (p for p in [one]))  # type: ignore[arg-type]


def test_results_sharing_package_objects_are_each_checked_whole() -> None:
    """A flow's environments share package objects (checked once each), yet every result is judged whole: a
    package that failed is refused each time, one that passed still counts in another result's duplicates."""
    registry = build_registry(Config.load())
    shared, other = _pkg("https://h.example/x.whl"), _pkg("https://h.example/y.whl")
    bad = _pkg("https://h.example/x.whl", sha256="nothex")
    registry.check_locked("r", [shared])
    registry.check_locked("r", [shared])
    for _ in range(2):
        with pytest.raises(PluginError, match="no well-formed sha256"):
            registry.check_locked("r", [bad])
        with pytest.raises(PluginError, match="no well-formed sha256"):
            registry.check_locked("r", [shared, replace(bad, name="z")])
    with pytest.raises(PluginError, match=r"x twice"):
        registry.check_locked("r", [shared, other])


class _BuildString:  # what a py-rattler record's build is: not a str
    def __repr__(self) -> str:
        return 'BuildString("py_0")'


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"build": _BuildString()},
            r"package 'x-1-py3-none-any': build is BuildString\(\"py_0\"\) of type _BuildString, not str",
        ),
        ({"version": 1}, "version is 1 of type int, not str"),
        (
            {"files": [PackageFile(url_format=".whl", url="https://h/x.whl", sha256="a" * 64)]},
            "of type list, not tuple",
        ),
        ({"depends": ("a", 2)}, "depends is .*, not tuple of str"),
        ({"channel": b"conda-forge"}, "channel is b'conda-forge' of type bytes, not str or None"),
        ({"kind": "pypi"}, "kind is 'pypi' of type str, not PackageKind"),
    ],
)
def test_core_checks_the_field_types_of_resolver_results(changes: dict[str, object], message: str) -> None:
    """A wrong type would otherwise fail much later (JSON, hashing) as an internal error naming no plugin."""
    registry = build_registry(Config.load())
    with pytest.raises(PluginError, match=f"Resolver 'r' returned an invalid result: .*{message}"):
        registry.check_locked("r", [replace(_pkg("https://h.example/x.whl"), **changes)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"size": "10"}, "size is '10' of type str, not int or None"),
        ({"built": 1}, "built is 1 of type int, not bool"),
    ],
)
def test_core_checks_the_field_types_of_package_files(changes: dict[str, object], message: str) -> None:
    registry = build_registry(Config.load())
    file = replace(PackageFile(url_format=".whl", url="https://h.example/x.whl", sha256="a" * 64), **changes)  # type: ignore[arg-type]
    with pytest.raises(PluginError, match=f"a file of package 'x-1-py3-none-any': {message}"):
        registry.check_locked("r", [replace(_pkg("https://h.example/x.whl"), files=(file,))])


def test_has_credentials() -> None:
    assert has_credentials("https://user@host/x")
    assert has_credentials("https://h/x?X-Amz-Signature=1")
    assert not has_credentials("https://h/simple/x/?page=2")


def test_entry_points_are_remembered_until_the_installation_changes(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    cache = str(tmp_path / "cache")
    site = install_plugin(
        "envcore-one", {"one": "envcore_one.plugin"}, {"envcore_one.plugin": resolver_plugin_code("one")}
    )
    assert ("one", "envcore_one.plugin", "envcore-one", "1.0") in plugincache.entry_points("envcore", cache)
    assert not (tmp_path / "cache" / "plugins").exists()  # just installed: not remembered yet (racy)
    settle(site, seconds_ago=20)
    wait_for_settled_sys_path()
    plugincache.entry_points("envcore", cache)
    (remembered,) = (tmp_path / "cache" / "plugins").glob("entry-points-envcore-*.json")
    # a planted entry shows that the next call reads the file instead of scanning the installation
    data = json.loads(remembered.read_text())
    data["entry_points"].append(["planted", "envcore_planted", None, None])
    remembered.write_text(json.dumps(data))
    assert ("planted", "envcore_planted", None, None) in plugincache.entry_points("envcore", cache)
    install_plugin(
        "envcore-two", {"two": "envcore_two.plugin"}, {"envcore_two.plugin": resolver_plugin_code("two")}
    )
    names = [name for name, *_ in plugincache.entry_points("envcore", cache)]
    assert "two" in names and "planted" not in names  # the site folder changed: scanned again
    registry = build_registry(Config.load(environ={"METAFLOW_ENVCORE_CACHE_DIR": cache}))
    assert {"one", "two"} <= set(registry.resolvers)


def test_a_cache_that_cannot_be_written_only_costs_the_scan(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    site = install_plugin(
        "envcore-one", {"one": "envcore_one.plugin"}, {"envcore_one.plugin": resolver_plugin_code("one")}
    )
    settle(site, seconds_ago=20)
    for _ in range(2):
        found = plugincache.entry_points("envcore", str(blocked / "cache"))
        assert ("one", "envcore_one.plugin", "envcore-one", "1.0") in found
    assert plugincache.commands({"METAFLOW_ENVCORE_CACHE_DIR": str(blocked / "cache")}) is None
    plugincache.remember_commands({"x": ""}, [], {"METAFLOW_ENVCORE_CACHE_DIR": str(blocked / "cache")})
    assert blocked.read_text() == "a file where the cache folder would be"


def test_remembered_commands_are_rewritten_only_when_they_change(tmp_path: Path) -> None:
    """Every command remembers the plugin commands: an unchanged answer leaves the file alone (no write and
    rename per command, no churn between processes sharing the cache)."""
    environ = {"METAFLOW_ENVCORE_CACHE_DIR": str(tmp_path / "cache"), "METAFLOW_HOME": str(tmp_path / "home")}
    module = tmp_path / "plugin.py"
    module.write_text("")
    settle(tmp_path, seconds_ago=20)
    wait_for_settled_sys_path()
    plugincache.remember_commands({"x": "does x"}, [str(module)], environ)
    (remembered,) = (tmp_path / "cache" / "plugins").glob("commands-*.json")
    inode = remembered.stat().st_ino
    plugincache.remember_commands({"x": "does x"}, [str(module)], environ)
    assert remembered.stat().st_ino == inode
    assert plugincache.commands(environ) == {"x": "does x"}
    plugincache.remember_commands({"x": "does x", "y": "does y"}, [str(module)], environ)
    assert remembered.stat().st_ino != inode
    assert plugincache.commands(environ) == {"x": "does x", "y": "does y"}


@pytest.mark.parametrize("group", ["envcore", "console_scripts", "pytest11"])
def test_entry_points_read_from_dist_infos_match_importlib_metadata(group: str) -> None:
    """The fast reader gives importlib.metadata's answer for this whole installation (editable installs and
    all), for envcore's group and for groups with many entries."""
    found = plugincache._read_dist_infos(group)
    assert found is not None
    assert found == plugincache._from_importlib_metadata(group)
    if group == "envcore":  # the in-tree backends, installed editable
        assert {"envcore-rattler", "envcore-uv", "envcore-s3"} <= {dist for _, _, dist, _ in found}


def test_dist_info_reader_follows_importlib_metadata_on_odd_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for site, version in ((first, "2.0"), (second, "1.0")):  # the same distribution twice: the first wins
        info = site / f"Odd.Name-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: Odd.Name\nVersion: {version}\n\nName: not-a-header\n"
        )
        (info / "entry_points.txt").write_text(
            f"# a comment\n[console_scripts]\nodd = odd:main\n\n[ envcore ]\nignored = x\n"
            f"[envcore]\n  spaced   =  odd_plugin.v{version.replace('.', '')} [extra]  \n# odd = no\n"
        )
    other = first / "other_dist-0.1.dist-info"
    other.mkdir()
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: other-dist\nVersion: 0.1\n")
    monkeypatch.setattr("sys.path", [str(tmp_path / "missing"), str(first), str(second)])
    found = plugincache._read_dist_infos("envcore")
    assert found == [("spaced", "odd_plugin.v20 [extra]", "Odd.Name", "2.0")]
    assert found == plugincache._from_importlib_metadata("envcore")


def test_eggs_zip_files_and_undecodable_files_are_left_to_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    egg = site / "legacy-1.0.egg-info"
    egg.mkdir(parents=True)
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: legacy\nVersion: 1.0\n")
    (egg / "entry_points.txt").write_text("[envcore]\nlegacy = legacy_plugin\n")
    monkeypatch.setattr("sys.path", [str(site)])
    assert plugincache._read_dist_infos("envcore") is None
    expected = [("legacy", "legacy_plugin", "legacy", "1.0")]
    assert plugincache.entry_points("envcore", str(tmp_path / "cache")) == expected
    (egg.parent / "legacy-1.0.egg-info").rename(egg.parent / "legacy-1.0.dist-info")
    (egg.parent / "legacy-1.0.dist-info" / "entry_points.txt").write_bytes(b"[envcore]\nlegacy = \xff\n")
    assert plugincache._read_dist_infos("envcore") is None  # not UTF-8: left to importlib.metadata
    zipped = tmp_path / "bundle.zip"
    zipped.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip archive
    monkeypatch.setattr("sys.path", [str(zipped), str(site)])
    assert plugincache._read_dist_infos("envcore") is None


STORE_FACTORY = """
from envcore import hookimpl
from envcore.types import StoragePlugin


def broken(root, config):
    {body}


@hookimpl
def envcore_storage():
    yield StoragePlugin(name="{name}", summary="a store whose factory is broken", factory=broken)
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("raise RuntimeError('boom')", "failed: RuntimeError: boom. This is a bug in the plugin"),
        ("return None", "returned None instead of the object. This is a bug in the plugin"),
    ],
)
def test_a_failing_factory_names_the_backend_and_its_plugin(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch, body: str, message: str
) -> None:
    install_plugin(
        "envcore-brokenstore",
        {"brokenstore": "envcore_brokenstore.plugin"},
        {"envcore_brokenstore.plugin": STORE_FACTORY.format(body=body, name="brokenstore")},
    )
    monkeypatch.setenv("METAFLOW_DEFAULT_DATASTORE", "brokenstore")
    monkeypatch.setenv("METAFLOW_CONDA_BROKENSTOREROOT", "/tmp/x")
    with pytest.raises(PluginError) as info:
        build_registry(Config.load()).store()
    assert info.value.message.startswith(
        "The factory of the store 'brokenstore', from the plugin 'brokenstore' (envcore-brokenstore 1.0), "
    )
    assert message in info.value.message


SLOPPY_STORE = """
from envcore import hookimpl
from envcore.errors import MissingObject
from envcore.types import StoragePlugin


class Sloppy:
    url = "sloppy://x"

    def stat(self, key):
        return (key, 1)  # not an ObjectInfo

    def open(self, key):
        raise MissingObject(key)  # an envcore error: passed on as it is

    def put_bytes(self, key, data, *, if_absent=False, if_version=None):
        raise KeyError("internal bug")

    def list(self, prefix):
        yield {"key": prefix}

    # no get_file, put_file, delete


@hookimpl
def envcore_storage():
    yield StoragePlugin(name="sloppy", summary="a store that breaks the contract", factory=lambda r, c: Sloppy())
"""


def test_a_plugin_store_that_breaks_the_contract_is_named(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    from envcore.errors import MissingObject

    install_plugin(
        "envcore-sloppy", {"sloppy": "envcore_sloppy.plugin"}, {"envcore_sloppy.plugin": SLOPPY_STORE}
    )
    monkeypatch.setenv("METAFLOW_DEFAULT_DATASTORE", "sloppy")
    monkeypatch.setenv("METAFLOW_CONDA_SLOPPYROOT", "sloppy://x")
    store = build_registry(Config.load()).store()
    start = "The store sloppy://x (from the plugin 'sloppy' (envcore-sloppy 1.0)) "
    for call, problem in (
        (lambda: store.stat("k"), "returned tuple from stat() instead of an ObjectInfo or None"),
        (lambda: store.put_bytes("k", b"1"), "failed in put_bytes() with KeyError: 'internal bug'"),
        (lambda: list(store.list("p/")), "returned dict from list() instead of an ObjectInfo"),
        (lambda: store.delete("k"), "has no method delete()"),
    ):
        with pytest.raises(PluginError) as info:
            call()
        assert info.value.message.startswith(start + problem), info.value.message
        assert "This is a bug in the plugin" in info.value.message
    with pytest.raises(MissingObject):
        store.open("k")


BAD_FIELDS = """
from envcore import hookimpl
from envcore.types import ResolverPlugin


@hookimpl
def envcore_resolvers():
    yield ResolverPlugin(name="badfields", env_types={env_types}, factory={factory}, summary={summary})
"""


@pytest.mark.parametrize(
    ("env_types", "factory", "summary", "problem"),
    [
        (
            'frozenset({"conda-only"})',
            "print",
            '"x"',
            "env_types is frozenset({'conda-only'}), not a frozenset of EnvType",
        ),
        ("frozenset()", '"not callable"', '"x"', "factory is 'not callable', not a callable"),
        ("frozenset()", "print", "None", "summary is None of type NoneType, not str"),
    ],
)
def test_records_are_type_checked_when_registered(
    install_plugin: InstallPlugin,
    monkeypatch: pytest.MonkeyPatch,
    env_types: str,
    factory: str,
    summary: str,
    problem: str,
) -> None:
    install_plugin(
        "envcore-badfields",
        {"badfields": "envcore_badfields.plugin"},
        {
            "envcore_badfields.plugin": BAD_FIELDS.format(
                env_types=env_types, factory=factory, summary=summary
            )
        },
    )
    error = _left_out("badfields")
    assert error.startswith(f"{BROKEN_CONTRACT}envcore_resolvers() yielded a ResolverPlugin whose")
    assert problem in error
    assert error.endswith("This is a bug in the plugin; report it to its authors.")
    # a command that selects its resolver names the plugin and what is wrong with it
    monkeypatch.setenv("METAFLOW_CONDA_DEPENDENCY_RESOLVER", "badfields")
    with pytest.raises(ConfigError) as info:
        build_registry(Config.load()).resolver_plugin(EnvType.CONDA_ONLY)
    assert (
        "the plugin providing resolver 'badfields' (envcore-badfields 1.0) failed to load"
        in info.value.message
    )
    assert problem in info.value.message


def test_a_hook_without_the_marker_leaves_the_plugin_out(install_plugin: InstallPlugin) -> None:
    code = resolver_plugin_code("nomarker").replace("    @hookimpl\n", "")
    assert "@hookimpl" not in code
    install_plugin(
        "envcore-nomarker", {"nomarker": "envcore_nomarker.plugin"}, {"envcore_nomarker.plugin": code}
    )
    error = _left_out("nomarker")
    assert error.startswith(
        f"{BROKEN_CONTRACT}it defines envcore_resolvers, envcore_settings without the @hookimpl"
    )


ODD_HOOKS = """
from envcore import hookimpl
from envcore.types import ResolverPlugin, Setting, EnvType


class Touchy:
    def __getattr__(self, name):
        raise AssertionError(f"registration read {name} of a module attribute")


touchy = Touchy()


@hookimpl(specname="envcore_resolvers")
def my_resolvers():
    yield ResolverPlugin(name="odd", env_types=frozenset({EnvType.CONDA_ONLY}), factory=print, summary="odd")


class Settings:
    @hookimpl
    def envcore_settings(self):
        yield Setting(name="ENVCORE_ODD_LEVEL", default="1", help="how odd")


envcore_settings = Settings().envcore_settings
"""


def test_plugin_modules_register_as_pluggy_registers_them(install_plugin: InstallPlugin) -> None:
    """Registration skips a module's unmarked names without inspecting them (for speed), yet finds what pluggy
    finds: an implementation named by ``specname``, a bound method, and never reads attributes of other values."""
    install_plugin("envcore-odd", {"odd": "envcore_odd.plugin"}, {"envcore_odd.plugin": ODD_HOOKS})
    registry = build_registry(Config.load())
    assert registry.plugins["odd"].status == "loaded", registry.plugins["odd"].error
    assert registry.resolvers["odd"].plugin == "odd"
    assert registry.config.get("ENVCORE_ODD_LEVEL") == "1"


SETTINGS_PLUGIN = """
from envcore import hookimpl
from envcore.types import Setting


@hookimpl
def envcore_settings():
    yield Setting({fields})
"""


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ('name="ENVCORE_M5_WORKERS", default="many", kind="int"', "default 'many' is not a valid int"),
        ('name="ENVCORE_M5_MODE", kind="string"', "kind is 'string', not one of str, int, float, bool, json"),
        (
            'name="METAFLOW_ENVCORE_M5"',
            "name 'METAFLOW_ENVCORE_M5' starts with METAFLOW_; declare it without the prefix (ENVCORE_M5)",
        ),
        ('name="envcore_m5"', "name 'envcore_m5' is not an upper-case key"),
    ],
)
def test_a_malformed_setting_declaration_leaves_its_plugin_out(
    install_plugin: InstallPlugin, fields: str, problem: str
) -> None:
    """Before, a bad default only failed `envcore config show`, naming neither the plugin nor its declaration;
    a prefixed name became METAFLOW_METAFLOW_...; a core name was silently ignored."""
    install_plugin(
        "envcore-m5",
        {"m5": "envcore_m5.plugin"},
        {"envcore_m5.plugin": SETTINGS_PLUGIN.format(fields=fields)},
    )
    assert problem in _left_out("m5")


def test_a_setting_declared_otherwise_by_envcore_or_another_plugin_names_both(
    install_plugin: InstallPlugin,
) -> None:
    """Before, it named neither how the declarations differ nor the other plugin's distribution, and the CLI
    said it as an import failure (test_cli)."""
    install_plugin(
        "envcore-m5",
        {"m5": "envcore_m5.plugin"},
        {"envcore_m5.plugin": SETTINGS_PLUGIN.format(fields='name="CONDA_CHANNELS", kind="int", default=1')},
    )
    assert _left_out("m5") == (
        "it declares the setting CONDA_CHANNELS, which envcore itself declares otherwise (default 1, not None; "
        "kind 'int', not 'json'; help '', not 'Default conda channels (list or comma separated)'): one of the "
        "two declarations would be ignored. Give the plugin's setting a name of its own, such as "
        "M5_CONDA_CHANNELS (prefixed with the plugin's name), or read envcore's without declaring it."
    )
    for name, kind in (("one", "str"), ("two-b", "int")):
        install_plugin(
            f"envcore-{name}",
            {name: f"envcore_{name.replace('-', '_')}.plugin"},
            {
                f"envcore_{name.replace('-', '_')}.plugin": SETTINGS_PLUGIN.format(
                    fields=f'name="SHARED_WORKERS", kind="{kind}", default="1" if "{kind}" == "str" else 1'
                )
            },
        )
    assert _left_out("two-b") == (
        "it declares the setting SHARED_WORKERS, which the plugin 'one' (envcore-one 1.0) declares otherwise "
        "(default 1, not '1'; kind 'int', not 'str'): one of the two declarations would be ignored. Give the "
        "plugin's setting a name of its own, such as TWO_B_SHARED_WORKERS (prefixed with the plugin's name), or "
        "declare it exactly as that plugin does."
    )


def test_selecting_a_backend_of_a_plugin_left_out_says_to_fix_it_not_to_reinstall_it(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = resolver_plugin_code("clashy").replace(
        'Setting(name="ENVCORE_CLASHY_EXE"', 'Setting(name="CONDA_TEST"'
    )
    install_plugin("envcore-clashy", {"clashy": "envcore_clashy.plugin"}, {"envcore_clashy.plugin": code})
    monkeypatch.setenv("METAFLOW_CONDA_DEPENDENCY_RESOLVER", "clashy")
    with pytest.raises(ConfigError) as info:
        build_registry(Config.load()).resolver_plugin(EnvType.CONDA_ONLY)
    message = info.value.message
    assert (
        "(envcore-clashy 1.0) failed to load: it declares the setting CONDA_TEST, which envcore itself"
        in message
    )
    assert "or read envcore's without declaring it. Fix it, or choose one of: " in message, message


def test_a_setting_no_one_declares_is_refused_when_read_through_the_registry(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, an undeclared setting was read as its raw text, untyped and unlisted, without a word: a misspelled
    or forgotten declaration went unnoticed."""
    code = resolver_plugin_code("pixi").replace(
        'self.exe = config.get("ENVCORE_PIXI_EXE")', 'self.exe = config.get("ENVCORE_PIXI_EXEC")'
    )
    install_plugin("envcore-pixi", {"pixi": "envcore_pixi.plugin"}, {"envcore_pixi.plugin": code})
    monkeypatch.setenv("METAFLOW_ENVCORE_PIXI_EXEC", "/opt/pixi")
    registry = build_registry(Config.load())
    with pytest.raises(PluginError) as info:
        registry.resolver_named("pixi")
    assert info.value.message == (
        "The setting METAFLOW_ENVCORE_PIXI_EXEC is read by envcore_pixi.plugin but declared neither by envcore nor "
        "by any loaded plugin: undeclared, it would be read as its raw text, untyped, and `envcore config show` "
        "would not list it. Declare it in the plugin's envcore_settings hook (`yield Setting(name="
        "'ENVCORE_PIXI_EXEC', default=..., kind='str', help='...')`, envcore.types.Setting), or correct the name "
        "if it is misspelled. This is a bug in the plugin; report it to its authors."
    )
    # read for a backend by envcore (find_executable): the backend is named
    from envcore.tools import find_executable

    def read_for_me() -> object:
        return find_executable(registry.config, "ENVCORE_NOT_DECLARED_EXE", (), BackendUnavailable)

    with pytest.raises(
        PluginError, match=r"METAFLOW_ENVCORE_NOT_DECLARED_EXE is read by tests\.core\.test_plugins "
    ):
        read_for_me()
    # what the registry declares is read as declared; a configuration no registry completed reads it as before
    assert registry.config.get("ENVCORE_PIXI_EXE") == "pixi-bin"
    assert Config.load().get("ENVCORE_PIXI_EXEC") == "/opt/pixi"


def test_two_plugins_may_declare_the_same_setting_alike(install_plugin: InstallPlugin) -> None:
    for name in ("one", "two"):
        install_plugin(
            f"envcore-{name}",
            {name: f"envcore_{name}.plugin"},
            {f"envcore_{name}.plugin": SETTINGS_PLUGIN.format(fields='name="SHARED_ENDPOINT_URL"')},
        )
    registry = build_registry(Config.load())
    assert registry.plugins["one"].status == registry.plugins["two"].status == "loaded"
    assert "SHARED_ENDPOINT_URL" in registry.config.names()


def test_a_setting_whose_default_is_below_its_minimum_leaves_its_plugin_out(
    install_plugin: InstallPlugin,
) -> None:
    fields = 'name="ENVCORE_M6_WORKERS", default=0, kind="int", minimum=1'
    install_plugin(
        "envcore-m6",
        {"m6": "envcore_m6.plugin"},
        {"envcore_m6.plugin": SETTINGS_PLUGIN.format(fields=fields)},
    )
    assert "default 0 is below its minimum" in _left_out("m6")


STORE_PLUGIN = """
from envcore import hookimpl
from envcore.types import StoragePlugin


@hookimpl
def envcore_storage():
    yield StoragePlugin(name="shardfs", factory=lambda root, config: None, summary="x", root_setting="{root}")
"""


@pytest.mark.parametrize("root", ["", "SHARDFS_BUCKET"])
def test_config_lists_the_root_settings_of_plugin_stores(install_plugin: InstallPlugin, root: str) -> None:
    """Before, `envcore config show` listed the built-in stores' roots only."""
    install_plugin(
        "envcore-shardfs",
        {"shardfs": "envcore_shardfs.plugin"},
        {"envcore_shardfs.plugin": STORE_PLUGIN.format(root=root)},
    )
    names = build_registry(Config.load()).config.names()
    assert {"CONDA_SHARDFSROOT", "DATASTORE_SYSROOT_SHARDFS"} <= set(names)
    if root:  # a plugin's own root setting
        assert root in names
    assert "CONDA_S3ROOT" in names  # the built-in declarations stay


@pytest.mark.parametrize(
    ("setting", "env_type"),
    [
        ("CONDA_DEPENDENCY_RESOLVER", EnvType.CONDA_ONLY),
        ("CONDA_PYPI_DEPENDENCY_RESOLVER", EnvType.PYPI_ONLY),
    ],
)
def test_no_resolver_names_the_mode_as_the_original(
    setting: str, env_type: EnvType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"METAFLOW_{setting}", "none")
    with pytest.raises(ConfigError) as info:
        build_registry(Config.load()).resolver_plugin(env_type)
    assert f"Cannot resolve environments in {env_type.value} mode because no resolver is configured" in str(
        info.value
    )


def test_every_setting_the_in_tree_backends_read_is_declared() -> None:
    """A registry's configuration refuses an undeclared setting: every name envcore's own backends and stores
    read (``config.get("X")``, ``config.value("X")``, a setting named for ``find_executable``) is declared."""
    import re

    root = Path(__file__).resolve().parents[2]
    read = re.compile(
        r"""(?:config\.(?:get|value)\(|_setting\(config, |find_executable\([\w.]+, |\b(?:setting|SETTING) = """
        r"""|_find\()["']([A-Z][A-Z0-9_]+)["']"""
    )
    found = {
        (name, str(path.relative_to(root)))
        for folder in ("backends", "storage")
        for path in (root / folder).glob("*/envcore_*/*.py")
        for name in read.findall(path.read_text(encoding="utf-8"))
    }
    assert len(found) >= 20, found  # the pattern still finds the reads
    declared = set(build_registry(Config.load()).config.names())
    assert sorted(f"{name} ({path})" for name, path in found if name not in declared) == []
