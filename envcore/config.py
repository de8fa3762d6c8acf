"""Configuration, read the way Metaflow reads it, without importing Metaflow.

A key ``NAME`` is looked up as the environment variable ``METAFLOW_NAME``, then in the directory-local
``.metaflow/config.json`` (nearest one walking up from the working directory), then in
``$METAFLOW_HOME/config[_<METAFLOW_PROFILE>].json`` (``~/.metaflowconfig`` by default), then the declared
default — the order of ``metaflow.metaflow_config_funcs.from_conf``. Values given as strings are converted to
the type of the setting (JSON for lists and dicts, ``0``/``false``/empty for false booleans). Every value
remembers where it came from, so errors can say "from env var" or "from /home/me/.metaflowconfig/config.json".
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from envcore import configfiles
from envcore.errors import ConfigError, PluginError, echoed
from envcore.frozen import record
from envcore.types import Setting

DEFAULT_CHANNEL_ALIAS = "https://conda.anaconda.org"
DEFAULT_PYPI_INDEX = "https://pypi.org/simple"
DEFAULT_CHANNELS = ("conda-forge",)

# The keys of the original extension that apply to envcore, with envcore's defaults for the embedded setup.
CORE_SETTINGS: tuple[Setting, ...] = (
    Setting(name="DEFAULT_DATASTORE", default="local", help="Store type: local, s3, gs, azure, ..."),
    Setting(name="DATASTORE_SYSROOT_LOCAL", help="Root of Metaflow's local datastore"),
    Setting(name="DATASTORE_SYSROOT_S3", help="Root of Metaflow's S3 datastore"),
    Setting(name="DATASTORE_SYSROOT_GS", help="Root of Metaflow's GCS datastore"),
    Setting(name="DATASTORE_SYSROOT_AZURE", help="Root of Metaflow's Azure datastore"),
    Setting(name="CONDA_LOCALROOT", help="Package/env cache root for the local store"),
    Setting(name="CONDA_S3ROOT", help="Package/env cache root on S3"),
    Setting(name="CONDA_GSROOT", help="Package/env cache root on GCS"),
    Setting(name="CONDA_AZUREROOT", help="Package/env cache root on Azure"),
    Setting(name="CONDA_PACKAGES_DIRNAME", default="packages", help="Package prefix under the root"),
    Setting(name="CONDA_ENVS_DIRNAME", default="envs", help="Environment/alias prefix under the root"),
    Setting(name="CONDA_MAGIC_FILE_V2", default=configfiles.RECORD_FILE, help="Name of the local manifest"),
    Setting(name="CONDA_DEPENDENCY_RESOLVER", default="rattler", help="Resolver for conda-only environments"),
    Setting(name="CONDA_PYPI_DEPENDENCY_RESOLVER", default="uv", help="Resolver for pypi-only environments"),
    Setting(
        name="CONDA_MIXED_DEPENDENCY_RESOLVER",
        default="rattler-uv",
        help="Resolver for mixed conda+PyPI environments ('none' to refuse them)",
    ),
    Setting(
        name="PYLOCK_TOML_DEPENDENCY_RESOLVER", default="pylock_toml", help="Reader of pylock.toml input"
    ),
    Setting(
        name="CONDA_PREFERRED_FORMAT",
        default="none",
        choices=(".conda", ".tar.bz2", "none"),
        help="Conda format every cached package must have (others are transmuted)",
    ),
    Setting(name="CONDA_DEFAULT_PYPI_SOURCE", help="First PyPI index (else pip's configuration, else PyPI)"),
    Setting(
        name="CONDA_SRCS_AUTH_INFO",
        default={},
        kind="json",
        secret=True,
        help='Basic auth per host: {"host": ["user", "password"]}',
    ),
    Setting(
        name="ENVCORE_KEYRING",
        default="auto",
        choices=("auto", "off"),
        help="auto: ask the system keyring (if the keyring package is installed) for private sources' credentials",
    ),
    Setting(
        name="CONDA_USE_REMOTE_LATEST",
        default=":none:",
        help="Use the newest stored resolution when none is local: :none:, :username:, :any: or user1,user2",
    ),
    Setting(
        name="CONDA_LOCK_TIMEOUT",
        default=configfiles.LOCK_TIMEOUT,
        kind="int",
        minimum=0,
        help="Seconds to wait for a lock",
    ),
    Setting(
        name="CONDA_SYS_DEFAULT_PACKAGES",
        default={arch: {"__glibc": "2.27"} for arch in ("linux-64", "linux-aarch64", "linux-ppc64le")},
        kind="json",
        help="Virtual packages per arch when resolving for a foreign arch",
    ),
    Setting(
        name="CONDA_SYS_DEFAULT_GPU_PACKAGES",
        default={},
        kind="json",
        help='Virtual packages of a step asking for a GPU: {"__cuda": "12.2"}, or one such map per arch',
    ),
    Setting(
        name="CONDA_ALL_ARCHS",
        default=["linux-64", "osx-64", "osx-arm64"],
        kind="json",
        help="Read for compatibility, no effect: `resolve --from` searches every known architecture",
    ),
    Setting(
        name="CONDA_REMOTE_COMMANDS", default=["batch", "kubernetes"], kind="json", help="Remote decorators"
    ),
    Setting(
        name="CONDA_IGNORE_CACHING_DATASTORES",
        default=[],
        kind="json",
        help='Datastores whose flow runs do not cache environments in the store (e.g. ["local"])',
    ),
    Setting(
        name="CONDA_SYS_MARKERS",
        default={},
        kind="json",
        help="Read for compatibility, no effect: markers are evaluated for each target's own platform",
    ),
    Setting(name="CONDA_CHANNELS", kind="json", help="Default conda channels (list or comma separated)"),
    Setting(name="CONDA_CHANNEL_ALIAS", help="URL prefix for channel names (else .condarc channel_alias)"),
    Setting(
        name="CONDA_TEST",
        default=False,
        kind="bool",
        help="Read for compatibility, no effect: the CLI always caches into the store, local ones too",
    ),
    Setting(name="DEBUG_CONDA", default=False, kind="bool", help="Detailed output and hook tracing"),
    Setting(name="ENVCORE_PLUGINS", kind="json", help="Allow-list of plugin names (list or comma separated)"),
    Setting(name="ENVCORE_DISABLED_PLUGINS", kind="json", help="Block-list of plugin names"),
    Setting(name="ENVCORE_PLUGIN_MODULES", kind="json", help="Plugin modules to load by import path"),
    Setting(name="ENVCORE_NAMING", default="default", help="Naming scheme for environment ids"),
    Setting(name="ENVCORE_CONDA_INSTALLER", default="rattler", help="Installer of conda packages"),
    Setting(name="ENVCORE_PYPI_INSTALLER", default="uv", help="Installer of PyPI wheels"),
    Setting(
        name="ENVCORE_CACHE_DIR", help="Local package cache, environments and records (default XDG cache)"
    ),
)

SETTING_KINDS = ("str", "int", "float", "bool", "json")


@record(kw_only=False)
class Value:
    """One configuration value and where it came from."""

    name: str
    value: Any
    source: str  # "env var", "<path>", "default"
    secret: bool = False

    @property
    def env_name(self) -> str:
        return f"METAFLOW_{self.name}"

    def shown(self) -> Any:
        """The value as it may be displayed: secrets masked, and ``user:password@`` removed from URLs."""
        if self.secret and self.value not in (None, "", {}, []):
            return "********"
        return _redacted(self.value)

    def describe(self) -> str:
        origin = "default" if self.source == "default" else f"from {self.source}"
        return f"`{self.env_name}` is {json.dumps(self.shown())} ({origin})"


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


def _boolean(text: str) -> bool:
    """Metaflow's reading of a boolean (false: 0, false or empty), refusing the words it would read as true
    against their meaning (no, off: METAFLOW_DEBUG_CONDA=no would turn debugging on) and anything else."""
    word = text.strip().lower()
    if word in configfiles.TRUE_WORDS or word in configfiles.FALSE_WORDS:
        return word in configfiles.TRUE_WORDS
    meant = (
        " (which Metaflow reads as true: only 0, false and empty are false)"
        if word in ("no", "n", "off")
        else ""
    )
    raise ValueError(f"it is not a boolean{meant}")


def _number(raw: Any, *, whole: bool) -> int | float:
    """A finite number (whole with ``whole``) from text or a config file's JSON number."""
    import math

    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError("it is not a number")
    number = float(raw) if isinstance(raw, str) and not whole else raw
    if isinstance(number, str):
        return int(number)  # (ValueError for 1.5 or 1e3)
    if not math.isfinite(number):
        raise ValueError("it is not a finite number")
    if whole and number != int(number):
        raise ValueError("it is not a whole number")
    return int(number) if whole else float(number)


def convert(setting: Setting, raw: Any, source: str) -> Any:
    """Convert a raw value to the setting's kind, as ``from_conf`` does for the type of its default."""
    if raw is None or (setting.kind == "str" and isinstance(raw, str)):
        return raw
    try:
        if setting.kind == "json" and _is_list_setting(setting):
            return _name_list(raw)
        if setting.kind == "json":
            value = json.loads(raw) if isinstance(raw, str) else raw
            if setting.default is not None and type(value) is not type(setting.default):
                raise ValueError(f"expected a JSON {type(setting.default).__name__}")
            return value
        if setting.kind == "bool":
            return raw if isinstance(raw, bool) else _boolean(str(raw))
        if setting.kind in ("int", "float"):
            number = _number(raw, whole=setting.kind == "int")
            if setting.minimum is not None and number < setting.minimum:
                raise ValueError(f"it is less than {setting.minimum:g}")
            return number
        if isinstance(raw, (list, dict)):  # from a config file's JSON
            raise ValueError("it is not a string")
        return str(raw)
    except ValueError as exc:
        # worded only for the error: a resolve converts ~30 values, each redacted and quoted for nothing before
        name = f"METAFLOW_{setting.name}"
        where = "default" if source == "default" else f"from {source}"
        shown = "********" if setting.secret else echoed(raw)
        hidden = setting.secret or _redacted(raw) != raw  # positions in it would point into what is not shown
        reason = exc.msg if hidden and isinstance(exc, json.JSONDecodeError) else exc
        at_least = f" of at least {setting.minimum:g}" if setting.minimum is not None else ""
        names = setting.default or _LIST_EXAMPLES.get(setting.name, ["name1", "name2"])
        example = {
            "json": f"a JSON list or names separated by commas, such as {json.dumps(names)} or {','.join(names)}"
            if _is_list_setting(setting)
            else f"a JSON value such as {json.dumps(setting.default)}",
            "int": f"a whole number{at_least}",
            "float": f"a number{at_least}",
            "str": "a string",
            "bool": "1 or true, or 0 or false",
        }
        raise ConfigError(
            f"`{name}` is {shown} ({where}), which is not valid: {reason}. Set it to "
            f"{example.get(setting.kind, 'a ' + setting.kind)}."
        ) from None


# examples of the list-valued settings without a default, for errors
_LIST_EXAMPLES = {
    "CONDA_CHANNELS": ["conda-forge", "bioconda"],
    "ENVCORE_PLUGIN_MODULES": ["my_company.envcore_plugins"],
    "ENVCORE_PLUGINS": ["rattler", "uv"],
    "ENVCORE_DISABLED_PLUGINS": ["conda-lock"],
}


def _is_list_setting(setting: Setting) -> bool:
    """A JSON setting holding a list of names: its default is a list, or None (CONDA_CHANNELS, ENVCORE_PLUGINS)."""
    return setting.kind == "json" and (setting.default is None or isinstance(setting.default, list))


def _name_list(raw: Any) -> list[str]:
    """A list-valued setting read as users write it: a JSON list of names, or names separated by commas (also
    as one JSON string); not a JSON null, boolean or object."""
    value = raw
    if isinstance(raw, str):
        text = raw.strip()
        if text in ("null", "true", "false") or text.startswith("{"):
            raise ValueError(
                f"it is {'a JSON object' if text.startswith('{') else text}, not a list of names"
            )
        value = json.loads(text) if text.startswith(("[", '"')) else text
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("it is not a list of names")
    return value


def store_root_settings(datastore: str, setting: str = "") -> tuple[str, str, str]:
    """The settings a store's root is read from, in order: its own ``setting`` (a plugin's ``root_setting``; ""
    if none), ``CONDA_<DS>ROOT`` and ``DATASTORE_SYSROOT_<DS>`` (``<DS>``: the name in capitals, ``-`` as ``_``)."""
    ds = datastore.upper().replace("-", "_")
    return setting, f"CONDA_{ds}ROOT", f"DATASTORE_SYSROOT_{ds}"


# settings naming a folder of every store (a key prefix): inside the root, whatever the store
STORE_FOLDER_SETTINGS = frozenset({"CONDA_ENVS_DIRNAME", "CONDA_PACKAGES_DIRNAME"})


def _is_store_folder(value: object) -> bool:
    return isinstance(value, str) and all(part not in ("", ".", "..") for part in value.split("/"))


class Config:
    """Typed access to configuration values, each with its source.

    Build it with :meth:`load`; pass it to everything that needs configuration (there is no global).
    """

    def __init__(
        self,
        settings: Iterable[Setting],
        environ: Mapping[str, str],
        files: Iterable[tuple[str | Path, Mapping[str, Any]]] = (),
    ) -> None:
        self._settings: dict[str, Setting] = {}
        self._environ = dict(environ)
        self._files = [(str(where), data) for where, data in files]  # (path or label, its METAFLOW_* keys)
        self._cache: dict[str, Value] = {}
        self._complete = False  # every plugin's settings are declared: reading another name is a bug
        self.add_settings(settings)

    @classmethod
    def load(
        cls,
        settings: Iterable[Setting] = CORE_SETTINGS,
        environ: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Config:
        environ = os.environ if environ is None else environ
        return cls(settings, environ, configfiles.config_files(environ, str(cwd) if cwd else None))

    @property
    def environ(self) -> Mapping[str, str]:
        return self._environ

    @property
    def files(self) -> list[tuple[str, Mapping[str, Any]]]:
        """The configuration files read, highest precedence first: (path, its keys)."""
        return self._files

    def add_settings(self, settings: Iterable[Setting]) -> None:
        for setting in settings:
            if setting.kind not in SETTING_KINDS:
                raise ConfigError(
                    f"Setting {setting.name} declares kind {setting.kind!r}; use one of {SETTING_KINDS}."
                )
            self._settings.setdefault(setting.name, setting)

    def settings(self) -> list[Setting]:
        return list(self._settings.values())

    def declared_all(self) -> None:
        """Every setting is declared from here on (:func:`envcore.plugins.build_registry` calls this once the
        plugins' settings are added): reading a setting that envcore and no loaded plugin declares is then a
        :class:`PluginError` naming it (before, a bare ``Config.load()`` reads it as its raw text: a plugin's
        settings are declared to the registry's configuration only)."""
        self._complete = True

    def value(self, name: str) -> Value:
        if name in self._cache:
            return self._cache[name]
        setting = self._settings.get(name)
        if setting is None:
            if self._complete:
                raise _undeclared(name)
            setting = Setting(name=name)
        env_name = f"METAFLOW_{name}"
        raw, source = self._set(name) or (setting.default, "default")
        value = Value(name, convert(setting, raw, source), source, setting.secret)
        if setting.choices and value.value not in setting.choices:
            raise ConfigError(
                f"{value.describe()}, but it must be one of: {', '.join(setting.choices)}. "
                f"Set {env_name} to one of these."
            )
        if name in STORE_FOLDER_SETTINGS and not _is_store_folder(value.value):
            raise ConfigError(
                f"{value.describe()}, but it must be a folder inside the store's root: names separated by '/', "
                f"without '.', '..' or an empty part. Set {env_name} to such a name, such as "
                f"{setting.default!r} (the default)."
            )
        self._cache[name] = value
        return value

    def get(self, name: str) -> Any:
        return self.value(name).value

    def source(self, name: str) -> str:
        """Where ``METAFLOW_<name>`` is set ("env var", a config file's path), or "default"; read without
        converting, so also for a value that is not valid."""
        found = self._set(name)
        return found[1] if found is not None else "default"

    def _set(self, name: str) -> tuple[Any, str] | None:
        """The unconverted value of ``METAFLOW_<name>`` and where it is set; None when it is not (a JSON null in
        a config file means "not set": a typed null would reach code that expects the kind)."""
        found = configfiles.raw_value(name, self._environ, self._files)
        return found if found is not None and found[0] is not None else None

    def names(self) -> list[str]:
        """Every known setting (without the ``METAFLOW_`` prefix), sorted."""
        return sorted(self._settings)

    def values(self) -> list[Value]:
        return [self.value(name) for name in self.names()]

    # --- derived values -------------------------------------------------------------------------------

    @property
    def debug(self) -> bool:
        return bool(self.get("DEBUG_CONDA"))

    def set_debug(self, source: str) -> None:
        """Detailed output from here on, as ``METAFLOW_DEBUG_CONDA=1`` gives it (``--verbose``: ``source``)."""
        self._cache["DEBUG_CONDA"] = Value("DEBUG_CONDA", True, source)

    def name_list(self, name: str) -> list[str] | None:
        """A list-valued setting (a JSON list or names separated by commas: see :func:`convert`); ``None`` when
        unset."""
        value = self.get(name)
        return None if value is None else list(value)

    def store_root(self, datastore: str, setting: str = "") -> Value:
        """The store's own root ``setting`` (a plugin's ``root_setting``) if given and set, else
        ``CONDA_<DS>ROOT``, else ``DATASTORE_SYSROOT_<DS>/conda_env``, with its source (``<DS>`` is the name in
        capitals, ``-`` as ``_``: a name a shell can export)."""
        _, root_name, sysroot_name = store_root_settings(datastore, setting)
        if setting:
            own = self.value(setting)
            if own.value:
                return own
        root = self.value(root_name)
        if root.value:
            return root
        sysroot = self.value(sysroot_name)
        if sysroot.value:
            return Value(root.name, sysroot.value.rstrip("/") + "/conda_env", sysroot.source)
        if datastore == "local":
            return Value(root.name, str(self.cache_dir() / "store"), "default")
        names = [f"METAFLOW_{n}" for n in store_root_settings(datastore, setting) if n]
        raise ConfigError(
            f"No store root is configured for the {datastore!r} datastore. Set {', '.join(names[:-1])} or "
            f"{names[-1]} (the folder or bucket path the store keeps environments in)."
        )

    def cache_dir(self) -> Path:
        return Path(configfiles.cache_dir(self.get("ENVCORE_CACHE_DIR"), self._environ))

    def store_scope(self) -> str:
        """:func:`envcore.configfiles.store_scope` of this configuration."""
        return configfiles.store_scope(self._environ, self._files)

    def username(self) -> str:
        for var in ("METAFLOW_USER", "SUDO_USER", "USERNAME", "USER", "LOGNAME", "LNAME"):  # then as getpass
            if self._environ.get(var):
                return self._environ[var]
        return _login_name()

    # --- default sources, as users already configure them -----------------------------------------------

    def _condarc(self) -> dict[str, Any]:
        home = Path(self._environ.get("HOME", "~")).expanduser()
        merged: dict[str, Any] = {}
        rc_env = self._environ.get("CONDARC")
        candidates = [Path("/etc/conda/.condarc"), home / ".config/conda/.condarc", home / ".condarc"]
        for path in [*candidates, *([Path(rc_env)] if rc_env else [])]:
            if not path.is_file():
                continue
            import yaml  # only when a .condarc exists: keeps every command's start-up light

            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(
                    f"The conda configuration {path} is not valid YAML ({exc}). Fix or remove it."
                ) from None
            if isinstance(data, dict):
                merged.update(data)
        return merged

    def conda_channels(self) -> tuple[tuple[str, ...], str]:
        """Default conda channels and where they came from."""
        configured = self.name_list("CONDA_CHANNELS")
        if configured:
            return tuple(configured), self.value("CONDA_CHANNELS").source
        if self._environ.get("CONDA_CHANNELS"):
            return tuple(
                c.strip() for c in self._environ["CONDA_CHANNELS"].split(",") if c.strip()
            ), "CONDA_CHANNELS"
        channels = self._condarc().get("channels")
        if isinstance(channels, list) and channels:
            return tuple(str(c) for c in channels if c != "defaults") or DEFAULT_CHANNELS, ".condarc"
        return DEFAULT_CHANNELS, "default"

    def channel_alias(self, *, as_configured: bool = False) -> str:
        """The URL channel names are joined to, without credentials (``user:password@``, a channel token: see
        :func:`redact_channel`; ``as_configured`` keeps them, for the request's credentials)."""
        setting = self.value("CONDA_CHANNEL_ALIAS")
        alias = str(setting.value or self._condarc().get("channel_alias") or DEFAULT_CHANNEL_ALIAS).rstrip(
            "/"
        )
        parts = parsed_url(alias)
        if parts is None or not (
            bool(parts.hostname) if parts.scheme in ("http", "https") else parts.scheme == "file"
        ):
            where = setting.describe() if setting.value else "channel_alias in .condarc"
            raise ConfigError(
                f"The conda channel alias {redact_channel(alias)!r} is not an http(s) or file URL ({where}): channel "
                "names are joined to it. Set METAFLOW_CONDA_CHANNEL_ALIAS to a URL such as "
                f"{DEFAULT_CHANNEL_ALIAS}, or give channels as URLs."
            )
        return alias if as_configured else redact_channel(alias).rstrip("/")

    def channel_url(self, channel: str) -> str:
        """A channel name (``conda-forge``) as a URL through the channel alias; URLs pass unchanged, a folder of
        this machine (see :func:`local_channel`) is its file URL."""
        if "://" in channel:
            return channel.rstrip("/")
        folder = local_channel(channel)
        if folder is not None:
            return Path(folder).as_uri()
        return f"{self.channel_alias()}/{channel.strip('/')}"

    def pypi_sources(self) -> tuple[tuple[str, ...], str]:
        """The default PyPI index first, then pip's configured extra indices, and where they came from."""
        first = self.value("CONDA_DEFAULT_PYPI_SOURCE")
        index, extras, source = _pip_index_config(self._environ)
        if first.value:
            return (first.value, *extras), first.source
        return (index or DEFAULT_PYPI_INDEX, *extras), source if index or extras else "default"


def local_channel(channel: str) -> str | None:
    """The folder a channel given as a path names, absolute, as conda reads one: ``/abs``, or ``./rel``, ``../rel``
    (from the current folder) and ``~/chan``; None for a name (``conda-forge``, ``org/label/dev``) or a URL."""
    if "://" in channel or not channel.startswith(("/", "./", "..", "~")):
        return None
    return channel if channel.startswith("/") else os.path.abspath(os.path.expanduser(channel))


def _undeclared(name: str) -> PluginError:
    """The error of reading a setting nobody declared, naming the module that reads it (the first caller outside
    this module and ``envcore.tools``, whose ``find_executable`` reads a backend's setting for it)."""
    import sys

    frame = sys._getframe(2)
    while frame.f_back and frame.f_globals.get("__name__") in (__name__, "envcore.tools"):
        frame = frame.f_back
    return PluginError(
        f"The setting METAFLOW_{name} is read by {frame.f_globals.get('__name__')} but declared neither by "
        "envcore nor by any loaded plugin: undeclared, it would be read as its raw text, untyped, and `envcore "
        f"config show` would not list it. Declare it in the plugin's envcore_settings hook (`yield Setting(name="
        f"{name!r}, default=..., kind='str', help='...')`, envcore.types.Setting), or correct the name if it is "
        "misspelled. This is a bug in the plugin; report it to its authors."
    )


def _pip_index_config(environ: Mapping[str, str]) -> tuple[str | None, tuple[str, ...], str]:
    """pip's own ``index-url`` / ``extra-index-url`` (env vars, then config files, pip's precedence)."""
    if environ.get("PIP_INDEX_URL") or environ.get("PIP_EXTRA_INDEX_URL"):
        from_env = tuple(environ.get("PIP_EXTRA_INDEX_URL", "").split())
        return environ.get("PIP_INDEX_URL"), from_env, "PIP_INDEX_URL"
    home = Path(environ.get("HOME", "~")).expanduser()
    xdg = Path(environ.get("XDG_CONFIG_HOME", home / ".config"))
    if environ.get("PIP_CONFIG_FILE"):
        files = [Path(environ["PIP_CONFIG_FILE"])]
    else:
        files = [
            Path("/etc/pip.conf"),
            Path("/etc/xdg/pip/pip.conf"),
            home / ".pip/pip.conf",
            xdg / "pip/pip.conf",
        ]
    index: str | None = None
    extras: tuple[str, ...] = ()
    source = "default"
    files = [path for path in files if path.is_file()]
    if not files:
        return index, extras, source
    import configparser  # here: most machines have no pip configuration file

    for path in files:
        parser = configparser.ConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError):
            continue
        for section in ("global", "install"):
            if parser.has_option(section, "index-url"):
                index, source = parser.get(section, "index-url").strip(), str(path)
            if parser.has_option(section, "extra-index-url"):
                extras, source = tuple(parser.get(section, "extra-index-url").split()), str(path)
    return index, extras, source


def parsed_url(text: str) -> SplitResult | None:
    """``text`` split as a URL, or None when it cannot be: a bad port, or a bracketed host that is no IPv6
    address (``urlsplit`` raises for these only when asked, or not at all)."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises ValueError for a bad host or port)
    except ValueError:
        return None
    host = parts.netloc.rpartition("@")[2]
    bracketed = re.search(r"\[([^\]]*)\]", host) if "[" in host else None
    if bracketed:  # checked by urlsplit from Python 3.11.4 only
        import ipaddress

        try:
            ipaddress.IPv6Address(bracketed[1].partition("%")[0])
        except ValueError:
            return None
    return parts


def redact_url(url: str) -> str:
    """``url`` without ``user:password@`` (also of a URL too malformed to parse: this words errors)."""
    try:
        parts = urlsplit(url)
        if not (parts.username or parts.password):
            # a password with '/', which no parser reads
            found = re.match(_USERINFO, url) if "@" in url else None
            return found["scheme"] + url[found.end() :] if found else url
    except ValueError:  # e.g. a bracketed host that is no IPv6 address
        return re.sub(r"(//)[^/?#]*@", r"\1", url)
    host = parts.hostname or ""
    given = parts.netloc.rpartition("@")[2]
    if given.startswith("[") and ":" not in host:  # a bracketed host Python < 3.11.4 accepts ([zz]): as given
        return parts._replace(netloc=given).geturl()
    host = f"[{host}]" if ":" in host else host  # IPv6
    try:
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:  # a bad port: still never shown with the credentials (this words errors)
        netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=netloc).geturl()


def redact_channel(channel: str) -> str:
    """A conda channel URL without ``user:password@`` and without the channel token its path may start with
    (anaconda.org's ``/t/<TOKEN>/channel``; see :func:`conda_token`). Only channels: other URLs may have such
    paths."""
    token = _conda_token_match(channel)
    if token is None:
        return redact_url(channel)
    parts = urlsplit(redact_url(channel))
    return parts._replace(path=parts.path[token.end() :]).geturl()


# A conda channel token: the path segment after /t/ at the start of an http(s) URL's path, where anaconda.org
# and conda write it (https://conda.anaconda.org/t/<TOKEN>/channel, or a channel alias ending with it), whatever
# its length and characters (conda's and mamba's patterns differ; a token either leaves out would be stored in
# clear). So a channel cannot sit in a top folder named "t" of an http(s) server.
CONDA_TOKEN_PATH = r"/t/(?P<token>[^/]+)(?=/|$)"
# One elsewhere in a path: conda's own pattern (at least 8 characters), which envcore refuses in a channel.
TOKEN_LIKE_PATH = r"/t/[A-Za-z0-9_-]{8,}(?=/|$)"
_CONDA_TOKEN_TEXT = "(?i)" r"(?P<host>https?://[^/\s'\"]+)/t/[^/\s'\")]+|/t/[A-Za-z0-9_-]{8,}(?=[/\s'\")]|$)"


def conda_token(url: str) -> str | None:
    """The conda channel token the path of ``url`` (an http(s) conda channel or package URL) starts with
    (``/t/<TOKEN>/...``), if any."""
    found = _conda_token_match(url)
    return found["token"] if found else None


def _conda_token_match(url: str) -> re.Match[str] | None:
    if "/t/" not in url:
        return None
    parts = urlsplit(url)
    return re.match(CONDA_TOKEN_PATH, parts.path) if parts.scheme.lower() in ("http", "https") else None


# user:password@ in a URL, up to the last '@' before the path (as URL parsers read a password with an '@'),
# also with a '/' in the password (not valid in a URL, and so not parsed as one, but what a base64 token
# holds): a ':' before the first '/', not followed by a port
_USERINFO = r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?:[^/\s]+|[^/@\s:]*:(?!\d*(?:/|$))[^@\s]*)@"
# a query parameter whose name says it is a secret (?access_token=, &sig=, ?api_key=...): its value
_SECRET_WORDS = "token|secret|password|passwd|signature|sig|key|credential"
# (not the brackets, quotes or sentence punctuation the URL is written in: "(https://h/c?token=tok): failed")
_SECRET_PARAM = (
    "(?i)"
    rf"(?P<name>[?&;][^=&\s#]*(?:{_SECRET_WORDS})[^=&\s#]*=)[^&\s#'\"()<>\[\]{{}}]+?"
    r"(?=[.,:;!?]*(?:[&\s#'\"()<>\[\]{}]|$))"
)


def secret_query_names(url: str) -> list[str]:
    """The names of ``url``'s query parameters that say they hold a secret (``token``, ``sig``, ``api_key``...)."""
    if "?" not in url:
        return []
    from urllib.parse import parse_qsl

    return [k for k, _ in parse_qsl(urlsplit(url).query) if re.search(_SECRET_WORDS, k, re.IGNORECASE)]


_PRIVATE_KEY = "(?s)" r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----"


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each of ``secrets`` (a store's token, key or password, as its plugin knows them) masked,
    ``user:password@`` removed from every URL in it, the values of secret-named query parameters
    (``access_token=``, ``sig=``...) and conda channel tokens (``/t/<TOKEN>``) masked, and private-key blocks
    removed (for messages)."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "********")
    # each pattern only where it can match (what most texts, a package name or a number, give: nothing to
    # compile or scan; a CLI resolve redacts ~30 setting values and options)
    if "://" in text:
        text = re.sub(_USERINFO, r"\g<scheme>", text)
    if "?" in text or "&" in text or ";" in text:
        text = re.sub(_SECRET_PARAM, r"\g<name>********", text)
    if "/t/" in text or "/T/" in text:
        text = re.sub(_CONDA_TOKEN_TEXT, lambda m: f"{m['host'] or ''}/t/<TOKEN>", text)
    if "-----BEGIN " in text:
        text = re.sub(_PRIVATE_KEY, "[private key]", text)
    return text


@functools.cache
def _login_name() -> str:
    """The account's name from the password database (read once: every resolve records its user): what
    ``getpass.getuser()`` gives once the caller found none of its variables, without loading ``termios``."""
    try:
        import pwd  # only when no variable names the user

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, OSError):  # no password database (Windows), or no entry for this uid
        return "unknown"
