from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envcore import resolve
from envcore.config import CORE_SETTINGS, Config
from envcore.errors import ConfigError
from envcore.types import Setting


def write_profile(home: Path, values: dict[str, object], profile: str | None = None) -> Path:
    path = home / ".metaflowconfig" / (f"config_{profile}.json" if profile else "config.json")
    path.write_text(json.dumps(values))
    return path


def test_default_when_nothing_is_set() -> None:
    value = Config.load().value("CONDA_DEPENDENCY_RESOLVER")
    assert (value.value, value.source) == ("rattler", "default")


def test_env_var_beats_profile_beats_default(isolated_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_profile(isolated_config, {"METAFLOW_CONDA_DEPENDENCY_RESOLVER": "mamba"})
    value = Config.load().value("CONDA_DEPENDENCY_RESOLVER")
    assert (value.value, value.source) == ("mamba", str(path))
    monkeypatch.setenv("METAFLOW_CONDA_DEPENDENCY_RESOLVER", "micromamba")
    value = Config.load().value("CONDA_DEPENDENCY_RESOLVER")
    assert (value.value, value.source) == ("micromamba", "env var")


def test_local_config_dir_sits_between_env_and_profile(
    isolated_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profile(isolated_config, {"METAFLOW_CONDA_LOCK_TIMEOUT": 10})
    local = tmp_path / "project" / ".metaflow"
    local.mkdir(parents=True)
    (local / "config.json").write_text(json.dumps({"METAFLOW_CONDA_LOCK_TIMEOUT": "20"}))
    (tmp_path / "project" / "sub").mkdir()
    value = Config.load(cwd=tmp_path / "project" / "sub").value("CONDA_LOCK_TIMEOUT")
    assert (value.value, value.source) == (20, str(local / "config.json"))


def test_named_profile(isolated_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_profile(isolated_config, {"METAFLOW_DEFAULT_DATASTORE": "s3"}, profile="prod")
    monkeypatch.setenv("METAFLOW_PROFILE", "prod")
    assert Config.load().value("DEFAULT_DATASTORE").source == str(path)
    monkeypatch.setenv("METAFLOW_PROFILE", "nosuch")
    with pytest.raises(ConfigError, match="METAFLOW_PROFILE is 'nosuch'"):
        Config.load()


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("CONDA_LOCK_TIMEOUT", "300", 300),
        ("CONDA_TEST", "0", False),
        ("CONDA_TEST", "false", False),
        ("CONDA_TEST", "", False),
        ("CONDA_TEST", "yes", True),
        ("CONDA_ALL_ARCHS", '["linux-64"]', ["linux-64"]),
        ("CONDA_SRCS_AUTH_INFO", '{"h": ["u", "p"]}', {"h": ["u", "p"]}),
        ("ENVCORE_PLUGINS", "rattler, uv", ["rattler", "uv"]),
        ("ENVCORE_PLUGINS", '["rattler"]', ["rattler"]),
        # every list-valued setting reads a comma list (before, only those without a default did)
        ("CONDA_ALL_ARCHS", "linux-64, osx-64", ["linux-64", "osx-64"]),
        ("CONDA_REMOTE_COMMANDS", "batch", ["batch"]),
        ("CONDA_CHANNELS", '"conda-forge,bioconda"', ["conda-forge", "bioconda"]),
    ],
)
def test_conversions(monkeypatch: pytest.MonkeyPatch, name: str, raw: str, expected: object) -> None:
    monkeypatch.setenv(f"METAFLOW_{name}", raw)
    assert Config.load().get(name) == expected


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        (
            "CONDA_LOCK_TIMEOUT",
            "soon",
            "`METAFLOW_CONDA_LOCK_TIMEOUT` is 'soon' (from env var), which is not valid",
        ),
        (
            "CONDA_ALL_ARCHS",
            "[1]",
            "`METAFLOW_CONDA_ALL_ARCHS` is '[1]' (from env var), which is not valid: it is not a list of names. Set "
            'it to a JSON list or names separated by commas, such as ["linux-64", "osx-64", "osx-arm64"] or '
            "linux-64,osx-64,osx-arm64.",
        ),
        ("CONDA_ALL_ARCHS", '{"a": 1}', "it is a JSON object, not a list of names"),
        # before: the channel https://conda.anaconda.org/null
        (
            "CONDA_CHANNELS",
            "null",
            "`METAFLOW_CONDA_CHANNELS` is 'null' (from env var), which is not valid: it is null, not a list of "
            'names. Set it to a JSON list or names separated by commas, such as ["conda-forge", "bioconda"] or '
            "conda-forge,bioconda.",
        ),
        ("ENVCORE_PLUGINS", "true", "it is true, not a list of names"),
        ("CONDA_PREFERRED_FORMAT", ".zip", "must be one of: .conda, .tar.bz2, none"),
        # a store folder outside the root (before: "'../x/linux-64/.../env' is not a valid store key", after the
        # packages were cached)
        ("CONDA_ENVS_DIRNAME", "../x", "must be a folder inside the store's root"),
        ("CONDA_ENVS_DIRNAME", "/envs", "must be a folder inside the store's root"),
        ("CONDA_PACKAGES_DIRNAME", "pkgs//conda", "such as 'packages' (the default)"),
        ("CONDA_PACKAGES_DIRNAME", "", "must be a folder inside the store's root"),
    ],
)
def test_bad_values_are_one_paragraph(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, message: str
) -> None:
    monkeypatch.setenv(f"METAFLOW_{name}", raw)
    with pytest.raises(ConfigError) as info:
        Config.load().get(name)
    assert message in info.value.message
    assert "\n" not in info.value.message


def test_a_store_folder_may_have_several_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAFLOW_CONDA_ENVS_DIRNAME", "team/envs")
    assert Config.load().get("CONDA_ENVS_DIRNAME") == "team/envs"


def test_secrets_are_masked_and_never_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAFLOW_CONDA_SRCS_AUTH_INFO", '{"h": ["u", "hunter2"]}')
    value = Config.load().value("CONDA_SRCS_AUTH_INFO")
    assert value.shown() == "********"
    assert "hunter2" not in value.describe()
    monkeypatch.setenv("METAFLOW_CONDA_SRCS_AUTH_INFO", '{"h": ["u", "hunter2"')
    with pytest.raises(ConfigError) as info:
        Config.load().get("CONDA_SRCS_AUTH_INFO")
    assert "hunter2" not in info.value.message


def test_plugin_settings_join(monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config.load()
    config.add_settings([Setting(name="ENVCORE_PIXI_EXE", default="pixi")])
    assert config.value("ENVCORE_PIXI_EXE").value == "pixi"
    monkeypatch.setenv("METAFLOW_ENVCORE_PIXI_EXE", "/opt/pixi")
    assert (
        Config.load([*CORE_SETTINGS, Setting(name="ENVCORE_PIXI_EXE")]).get("ENVCORE_PIXI_EXE") == "/opt/pixi"
    )


def test_store_roots(monkeypatch: pytest.MonkeyPatch, isolated_config: Path) -> None:
    config = Config.load()
    assert config.store_root("local").value == str(isolated_config / ".cache" / "envcore" / "store")
    with pytest.raises(ConfigError, match="METAFLOW_CONDA_S3ROOT"):
        config.store_root("s3")
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://bucket/metaflow/")
    assert Config.load().store_root("s3").value == "s3://bucket/metaflow/conda_env"
    monkeypatch.setenv("METAFLOW_CONDA_S3ROOT", "s3://other/envs")
    assert Config.load().store_root("s3").value == "s3://other/envs"


def test_channels_and_alias(monkeypatch: pytest.MonkeyPatch, isolated_config: Path) -> None:
    assert Config.load().conda_channels() == (("conda-forge",), "default")
    (isolated_config / ".condarc").write_text(
        "channels: [bioconda, conda-forge]\nchannel_alias: http://127.0.0.1:9/\n"
    )
    config = Config.load()
    assert config.conda_channels() == (("bioconda", "conda-forge"), ".condarc")
    assert config.channel_url("conda-forge") == "http://127.0.0.1:9/conda-forge"
    monkeypatch.setenv("METAFLOW_CONDA_CHANNEL_ALIAS", "https://mirror.example/c")
    monkeypatch.setenv("METAFLOW_CONDA_CHANNELS", "fx")
    config = Config.load()
    assert config.channel_url("conda-forge") == "https://mirror.example/c/conda-forge"
    assert config.channel_url("https://x.example/ch/") == "https://x.example/ch"
    assert config.conda_channels() == (("fx",), "env var")


@pytest.mark.parametrize("given", ["./chan", "../work/chan", "~/chan", "/abs/chan/"])
def test_a_channel_that_is_a_path_of_this_machine_is_that_folder(
    monkeypatch: pytest.MonkeyPatch, isolated_config: Path, tmp_path: Path, given: str
) -> None:
    """As conda reads them: before, ./chan and ../x/chan were joined to the channel alias as names
    (https://conda.anaconda.org/./chan, which anaconda.org serves as its channel 'chan')."""
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("HOME", str(tmp_path / "work"))
    folder = Path("/abs/chan") if given.startswith("/") else tmp_path / "work" / given.lstrip("~/")
    config = Config.load()
    assert config.channel_url(given) == Path(os.path.normpath(folder)).as_uri()
    assert resolve.channel_name(config, given) == (
        "/abs/chan" if given.startswith("/") else os.path.normpath(folder)  # (an absolute one: as before)
    )
    assert resolve.channel_name(config, "chan") == "chan"  # a name


def test_pypi_sources(monkeypatch: pytest.MonkeyPatch, isolated_config: Path) -> None:
    assert Config.load().pypi_sources() == (("https://pypi.org/simple",), "default")
    conf = isolated_config / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = http://127.0.0.1:1/simple\nextra-index-url = http://127.0.0.1:2/simple\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    assert Config.load().pypi_sources() == (
        ("http://127.0.0.1:1/simple", "http://127.0.0.1:2/simple"),
        str(conf),
    )
    monkeypatch.setenv("METAFLOW_CONDA_DEFAULT_PYPI_SOURCE", "http://127.0.0.1:3/simple")
    assert Config.load().pypi_sources()[0] == ("http://127.0.0.1:3/simple", "http://127.0.0.1:2/simple")


PARITY = [
    # name, default, env value or None, profile value or None
    ("CONDA_DEPENDENCY_RESOLVER", "rattler", None, "mamba"),
    ("CONDA_DEPENDENCY_RESOLVER", "rattler", "conda", "mamba"),
    ("CONDA_LOCK_TIMEOUT", 3600, "120", None),
    ("CONDA_LOCK_TIMEOUT", 3600, None, 77),
    ("CONDA_TEST", False, "0", None),
    ("CONDA_TEST", False, "True", None),
    ("CONDA_ALL_ARCHS", ["linux-64", "osx-64", "osx-arm64"], '["osx-arm64"]', None),
    ("CONDA_ALL_ARCHS", ["linux-64", "osx-64", "osx-arm64"], None, ["linux-64"]),
    (
        "CONDA_SYS_DEFAULT_PACKAGES",
        {"linux-64": {"__glibc": "2.27"}},
        '{"linux-64": {"__glibc": "2.17"}}',
        None,
    ),
    ("CONDA_DEFAULT_PYPI_SOURCE", None, "http://127.0.0.1/simple", None),
    ("CONDA_DEFAULT_PYPI_SOURCE", None, None, None),
]


def test_parity_with_metaflow_from_conf(isolated_config: Path, tmp_path: Path) -> None:
    """Same inputs, same values as ``metaflow.metaflow_config_funcs.from_conf`` (run in a fresh process,
    since Metaflow caches its configuration)."""
    for i, (name, default, env_value, profile_value) in enumerate(PARITY):
        home = tmp_path / f"mf{i}"
        home.mkdir()
        if profile_value is not None:
            (home / "config.json").write_text(json.dumps({f"METAFLOW_{name}": profile_value}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("METAFLOW_")}
        env["METAFLOW_HOME"] = str(home)
        if env_value is not None:
            env[f"METAFLOW_{name}"] = env_value
        code = (
            "import json,sys; from metaflow.metaflow_config_funcs import from_conf;"
            f"print(json.dumps(from_conf({name!r}, json.loads(sys.argv[1]))))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(default)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        theirs = json.loads(out.stdout.strip().splitlines()[-1])
        ours = Config.load(environ=env).get(name)
        assert ours == theirs, (name, env_value, profile_value)


def test_a_store_root_comes_from_the_plugins_own_setting_then_the_usual_ones(
    monkeypatch: pytest.MonkeyPatch, isolated_config: Path
) -> None:
    from envcore.config import Config
    from envcore.errors import ConfigError

    monkeypatch.setenv("METAFLOW_SQLITE_PATH", "/data/envs.db")
    monkeypatch.setenv("METAFLOW_CONDA_SQLITE_FILEROOT", "/other")
    config = Config.load()
    assert config.store_root("sqlite-file", "SQLITE_PATH").value == "/data/envs.db"
    assert config.store_root("sqlite-file").value == "/other"  # a name with '-' reads CONDA_SQLITE_FILEROOT
    monkeypatch.delenv("METAFLOW_SQLITE_PATH")
    monkeypatch.delenv("METAFLOW_CONDA_SQLITE_FILEROOT")
    with pytest.raises(ConfigError) as info:
        Config.load().store_root("sqlite-file", "SQLITE_PATH")
    assert (
        "Set METAFLOW_SQLITE_PATH, METAFLOW_CONDA_SQLITE_FILEROOT or METAFLOW_DATASTORE_SYSROOT_SQLITE_FILE"
        in (info.value.message)
    )


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET https://oauth2.example/tokeninfo?access_token=ya29.SECRET777 failed", "ya29.SECRET777"),
        ("https://acct.blob.example/c?se=2026-12&sp=rl&sv=2022-11-02&sig=kTRLdiQv%2BHd5", "kTRLdiQv%2BHd5"),
        ("http://bob:EndpointPw555@127.0.0.1:45199 refused", "EndpointPw555"),
        (
            '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADAN\\n-----END PRIVATE KEY-----\\n"}',
            "MIIEvQ",
        ),
        ("https://h/simple/?api_key=abc123&page=2", "abc123"),
        ("cannot read https://conda.anaconda.org/t/tk-4b1d-secret/private/noarch", "tk-4b1d-secret"),
        ("cannot read 'http://127.0.0.1:41127/t/ab.SECRETDOT.cd/channel'", "SECRETDOT"),
        ("'http://alice:Pw/SECRETSLASH2@127.0.0.1:1/simple/' is not a package index URL", "SECRETSLASH2"),
        ("http://alice:pa#SECRETHASH@h/simple", "SECRETHASH"),
        ("http://alice:p@SECRETAT@h/simple refused", "SECRETAT"),  # as URL parsers read it: the last '@'
    ],
)
def test_messages_are_redacted_of_every_kind_of_secret(text: str, secret: str) -> None:
    from envcore.config import redact_text

    redacted = redact_text(text)
    assert secret not in redacted
    assert redacted.split("?")[0].split("//")[-1][:3] in text  # the rest of the message stays readable


def test_a_json_error_points_into_the_value_shown_only() -> None:
    """A position in the raw value would point past the credentials the message leaves out: said without it."""
    raw = '["http://alice:hunter2@127.0.0.1:9/chan"'
    with pytest.raises(ConfigError) as info:
        Config.load(environ={"METAFLOW_CONDA_CHANNELS": raw}).get("CONDA_CHANNELS")
    message = info.value.message
    assert "hunter2" not in message and "column" not in message
    assert (
        """is '["http://127.0.0.1:9/chan"' (from env var), which is not valid: Expecting ',' delimiter."""
        in message
    )
    with pytest.raises(ConfigError) as info:
        Config.load(environ={"METAFLOW_CONDA_CHANNELS": raw.replace("alice:hunter2@", "")}).get(
            "CONDA_CHANNELS"
        )
    assert (
        "Expecting ',' delimiter: line 1 column 27 (char 26)." in info.value.message
    )  # a position in what is shown


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Could not read the conda channels (http://h:9/chan?token=tok_abc123): request failed",
            "Could not read the conda channels (http://h:9/chan?token=********): request failed",
        ),
        ("see 'https://h/c?sig=a%2Bb.c', then", "see 'https://h/c?sig=********', then"),
        ("at [https://h/?api_key=k:1]. Retry.", "at [https://h/?api_key=********]. Retry."),
        (
            "url: /tokeninfo?access_token=ya29.X (Caused by",
            "url: /tokeninfo?access_token=******** (Caused by",
        ),
    ],
)
def test_a_masked_query_value_leaves_the_rest_of_the_message(text: str, expected: str) -> None:
    """Only the secret value is masked, not the bracket, quote or punctuation the message closes it with."""
    from envcore.config import redact_text

    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[("1", True), ("true", True), ("True", True), ("yes", True), ("on", True)],
        *[("0", False), ("false", False), ("", False), ("FALSE", False)],
    ],
)
def test_booleans_as_metaflow_reads_them(raw: str, expected: bool) -> None:
    assert Config.load(environ={"METAFLOW_DEBUG_CONDA": raw}).get("DEBUG_CONDA") is expected


@pytest.mark.parametrize(("raw", "meant"), [("no", True), ("off", True), ("maybe", False), ("2", False)])
def test_a_word_that_is_no_boolean_is_refused(raw: str, meant: bool) -> None:
    """Metaflow reads every word but 0, false and empty as true: METAFLOW_DEBUG_CONDA=no turned debugging on."""
    with pytest.raises(ConfigError) as info:
        Config.load(environ={"METAFLOW_DEBUG_CONDA": raw}).get("DEBUG_CONDA")
    message = info.value.message
    assert message.startswith(
        f"`METAFLOW_DEBUG_CONDA` is {raw!r} (from env var), which is not valid: it is not a"
    )
    assert ("which Metaflow reads as true" in message) is meant
    assert message.endswith("Set it to 1 or true, or 0 or false.")


@pytest.mark.parametrize(("raw", "ok"), [("0", True), ("30", True), ("-5", False)])
def test_a_number_below_its_minimum_is_refused(raw: str, ok: bool) -> None:
    """METAFLOW_CONDA_LOCK_TIMEOUT=-5 was accepted."""
    config = Config.load(environ={"METAFLOW_CONDA_LOCK_TIMEOUT": raw})
    if ok:
        assert config.get("CONDA_LOCK_TIMEOUT") == int(raw)
        return
    with pytest.raises(ConfigError) as info:
        config.get("CONDA_LOCK_TIMEOUT")
    assert info.value.message == (
        "`METAFLOW_CONDA_LOCK_TIMEOUT` is '-5' (from env var), which is not valid: it is less than 0. Set it "
        "to a whole number of at least 0."
    )


@pytest.mark.parametrize(
    ("value", "debug", "leaves_the_fast_path"),
    [
        ("1", True, True),
        ("true", True, True),
        ("yes", True, True),
        ("no", False, True),
        ("maybe", False, True),
        ("", False, False),
        ("0", False, False),
        (" FALSE ", False, False),
    ],
)
def test_debug_is_read_before_the_configuration_loads(
    value: str, debug: bool, leaves_the_fast_path: bool
) -> None:
    """The traceback switch and the fast path of create read METAFLOW_DEBUG_CONDA before the configuration
    loads. A value it refuses ("no", which Metaflow reads as true) leaves the fast path, so that the full one
    refuses it, but shows no traceback: the refusal is one paragraph."""
    from envcore.configfiles import debug_requested

    assert debug_requested({"METAFLOW_DEBUG_CONDA": value}) is debug
    assert debug_requested({"METAFLOW_DEBUG_CONDA": value}, or_refused=True) is leaves_the_fast_path
    assert debug_requested({}) is False


def test_a_conda_channel_token_at_the_start_of_the_path_is_taken_out_of_the_url() -> None:
    from envcore.config import conda_token, redact_channel, redact_url

    assert conda_token("https://conda.anaconda.org/t/tk-12345678/priv") == "tk-12345678"
    assert (
        redact_channel("https://conda.anaconda.org/t/tk-12345678/priv") == "https://conda.anaconda.org/priv"
    )
    assert redact_channel("http://u:p@127.0.0.1:8080/t/tk-12345678/c/") == "http://127.0.0.1:8080/c/"
    for kept in ("https://h/api/t/tk-12345678/priv", "file:///t/tk-12345678/priv"):
        assert conda_token(kept) is None and redact_channel(kept) == kept
    # whatever its length and characters (before: 8 or more of [A-Za-z0-9_-], so these were stored in clear)
    for token in ("short", "ab.SECRET.cd", "a~b+c"):
        assert conda_token(f"http://127.0.0.1:8/t/{token}/c") == token
        assert redact_channel(f"http://127.0.0.1:8/t/{token}/c") == "http://127.0.0.1:8/c"
    # other URLs (a PyPI index at /t/<team>/simple) keep such paths
    assert redact_url("https://pypi.example/t/teamname1/simple") == "https://pypi.example/t/teamname1/simple"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"METAFLOW_USER": "mf", "SUDO_USER": "sudo", "USER": "user"}, "mf"),
        ({"SUDO_USER": "sudo", "USER": "user", "LOGNAME": "log"}, "sudo"),
        ({"USER": "user", "LOGNAME": "log"}, "user"),
        ({"LOGNAME": "log", "LNAME": "l"}, "log"),  # as getpass.getuser() reads them
        ({"LNAME": "l"}, "l"),
    ],
)
def test_the_user_a_resolve_records_comes_from_the_first_variable_set(
    variables: dict[str, str], expected: str
) -> None:
    assert Config.load(environ=variables).username() == expected


def test_without_user_variables_the_user_is_this_accounts_name() -> None:
    """The password database's name for this uid, read without getpass (which loads termios)."""
    import pwd

    script = (
        "import sys; from envcore.config import Config; "
        "print(Config.load(environ={}).username(), 'getpass' in sys.modules, 'termios' in sys.modules)"
    )
    names = ("METAFLOW_USER", "SUDO_USER", "USERNAME", "USER", "LOGNAME", "LNAME")
    env = {k: v for k, v in os.environ.items() if k not in names}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [pwd.getpwuid(os.getuid()).pw_name, "False", "False"]


def test_a_null_in_a_config_file_means_not_set(isolated_config: Path) -> None:
    write_profile(isolated_config, {"METAFLOW_CONDA_LOCK_TIMEOUT": None, "METAFLOW_CONDA_ENVS_DIRNAME": None})
    config = Config.load()
    assert config.value("CONDA_LOCK_TIMEOUT").source == "default" and config.get("CONDA_LOCK_TIMEOUT") == 3600
    assert config.get("CONDA_ENVS_DIRNAME") == "envs"  # not "None": descriptions would go to <store>/None/


@pytest.mark.parametrize("alias", ["::bad::", "conda-forge", "https://u:secret@h.example:99999", "ftp://h/c"])
def test_a_channel_alias_that_is_no_url_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, alias: str
) -> None:
    monkeypatch.setenv("METAFLOW_CONDA_CHANNEL_ALIAS", alias)
    with pytest.raises(ConfigError) as err:
        Config.load().channel_url("fx")
    message = err.value.message
    assert "is not an http(s) or file URL" in message and "METAFLOW_CONDA_CHANNEL_ALIAS" in message
    assert "secret" not in message


def test_redacting_never_fails_and_keeps_ipv6_hosts_whole() -> None:
    from envcore.config import redact_url

    assert redact_url("https://u:p@h.example:99999/x") == "https://h.example:99999/x"
    assert redact_url("https://u:p@[::1]:8080/simple") == "https://[::1]:8080/simple"
    assert redact_url("https://U:P@Host.Example/simple") == "https://host.example/simple"


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("https://h.example:8080/simple", "h.example"),
        ("https://[::1]:8080/simple", "::1"),
        ("file:///srv/channel", None),
        ("https://h.example:99999/x", "bad port"),
        ("https://h.example:http/x", "bad port"),
        ("https://[zz]/links", "bad bracketed host"),
    ],
)
def test_a_url_that_cannot_be_split_is_none_not_an_error_later(text: str, host: str | None) -> None:
    from envcore.config import parsed_url

    parts = parsed_url(text)
    if host and host.startswith("bad"):
        assert parts is None
    else:
        assert parts is not None and parts.hostname == host


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("CONDA_LOCK_TIMEOUT", [], "it is not a number"),
        ("CONDA_LOCK_TIMEOUT", 1e400, "it is not a finite number"),
        ("CONDA_LOCK_TIMEOUT", 1.5, "it is not a whole number"),
        ("CONDA_LOCK_TIMEOUT", True, "it is not a number"),
        ("CONDA_ENVS_DIRNAME", ["a"], "it is not a string"),
        ("CONDA_SYS_DEFAULT_PACKAGES", 5, "expected a JSON dict"),
    ],
)
def test_a_config_file_value_of_the_wrong_json_type_is_a_config_error(
    isolated_config: Path, name: str, value: object, problem: str
) -> None:
    """They were internal errors (TypeError, OverflowError) or taken as they were (1.5 as 1, [] as a dict)."""
    write_profile(isolated_config, {f"METAFLOW_{name}": value})
    with pytest.raises(ConfigError) as err:
        Config.load().get(name)
    assert f"`METAFLOW_{name}`" in err.value.message and problem in err.value.message


def test_a_whole_number_in_a_config_file_is_taken(isolated_config: Path) -> None:
    write_profile(isolated_config, {"METAFLOW_CONDA_LOCK_TIMEOUT": 20.0})
    assert Config.load().get("CONDA_LOCK_TIMEOUT") == 20


def test_redacting_a_url_too_malformed_to_parse_still_drops_its_credentials() -> None:
    from envcore.config import redact_url

    assert redact_url("https://u:hush@[zz]/links") == "https://[zz]/links"
