"""The plugin manager: finds plugins, validates what they register, and selects backends from configuration.

Plugins come from three places, in this order: the built-ins (registered explicitly), the ``envcore``
entry-point group, and ``METAFLOW_ENVCORE_PLUGIN_MODULES`` (import paths, for remote nodes that have no
installed metadata). ``METAFLOW_ENVCORE_PLUGINS`` (allow-list) and ``METAFLOW_ENVCORE_DISABLED_PLUGINS``
(block-list) filter them by name. A plugin that fails to import is recorded with its error and only fails
a command that selects one of its backends. Build the manager with :func:`build_registry` and pass it on.
"""

from __future__ import annotations

import importlib
import re
import threading
import traceback
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import fields
from functools import partial
from types import FunctionType, MethodType, ModuleType
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import pluggy

from envcore import hookspecs, plugincache
from envcore.config import (
    SETTING_KINDS,
    Config,
    conda_token,
    convert,
    secret_query_names,
    store_root_settings,
)
from envcore.errors import ConfigError, EnvcoreError, PluginError, close_match, echoed
from envcore.types import (
    Capability,
    CommandPlugin,
    EnvType,
    Installer,
    InstallerPlugin,
    LockedPackage,
    NamingPlugin,
    NamingScheme,
    PackageFile,
    PackageFormat,
    PackageFormatPlugin,
    PackageKind,
    Resolver,
    ResolverPlugin,
    Setting,
    StoragePlugin,
    Store,
)

ENTRY_POINT_GROUP = "envcore"
BUILTIN = "builtin"
# the resolvers of envcore's repository (backends/<name>), each a distribution of its own
_IN_TREE_RESOLVERS = ("rattler", "uv", "pip", "poetry", "conda", "mamba", "micromamba", "conda-lock")
# how a plugin module that imported but breaks the hook contract is described (``envcore plugins``, warnings)
BROKEN_CONTRACT = "it does not follow the envcore hook contract: "
# how a plugin left out for declaring a setting envcore or another plugin declares otherwise is described
SETTING_CLASH = "it declares the setting "
CHECKED_KEPT = 50_000  # packages remembered as checked (the rattler resolver keeps as many converted)
RESOLVER_SETTINGS = {
    EnvType.CONDA_ONLY: "CONDA_DEPENDENCY_RESOLVER",
    EnvType.PYPI_ONLY: "CONDA_PYPI_DEPENDENCY_RESOLVER",
    EnvType.MIXED: "CONDA_MIXED_DEPENDENCY_RESOLVER",
}
INSTALLER_SETTINGS = {
    PackageKind.CONDA: "ENVCORE_CONDA_INSTALLER",
    PackageKind.PYPI: "ENVCORE_PYPI_INSTALLER",
}
_NAME = r"^[a-z0-9][a-z0-9_.-]*$"
_SETTING_NAME = r"^[A-Z][A-Z0-9_]*$"  # a Metaflow key without its METAFLOW_ prefix
_HEX = {"sha256": r"^[0-9a-f]{64}$", "md5": r"^[0-9a-f]{32}$"}

R = TypeVar("R")
T = TypeVar("T")


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, finding a module plugin's hook implementations, and the hook specifications of
    :mod:`envcore.hookspecs`, without inspecting every name the module holds (pluggy reads each one through
    ``inspect.getattr_static``: most of the cost of registering a plugin, and ~1.7M instructions of adding the
    specifications, on every command). A module's attributes are plain values, so only functions carrying the
    ``envcore_impl`` (``envcore_spec``) marker can be implementations (specifications), and a function's marker
    is read from it, as pluggy's lookup would (it finds the function itself). pluggy decides about bound methods
    and about namespaces that are not modules."""

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        if isinstance(plugin, ModuleType) and not isinstance(vars(plugin).get(name), MethodType):
            return _module_marker(plugin, name, f"{self.project_name}_impl")  # type: ignore[return-value]
        return super().parse_hookimpl_opts(plugin, name)

    def parse_hookspec_opts(
        self, module_or_class: ModuleType | type, name: str
    ) -> pluggy.HookspecOpts | None:
        if isinstance(module_or_class, ModuleType) and not isinstance(
            vars(module_or_class).get(name), MethodType
        ):
            return _module_marker(module_or_class, name, f"{self.project_name}_spec")  # type: ignore[return-value]
        return super().parse_hookspec_opts(module_or_class, name)


def _module_marker(module: ModuleType, name: str, marker: str) -> dict[str, Any] | None:
    """The options of ``marker`` on the function ``name`` of ``module`` (pluggy's static lookup finds the function
    itself); None for any other value."""
    value = vars(module).get(name)
    opts = getattr(value, marker, None) if isinstance(value, FunctionType) else None
    return opts if isinstance(opts, dict) else None


class PluginInfo:
    """What ``envcore plugins`` reports about one plugin. A plain class (as a ``@dataclass(slots=True)`` would
    behave: compared and shown by its fields): a dataclass compiles its methods at every start (~1 ms)."""

    _FIELDS = ("name", "module", "distribution", "version", "status", "error", "provides")
    __slots__ = _FIELDS

    def __init__(
        self,
        name: str,
        module: str,
        distribution: str | None = None,
        version: str | None = None,
        status: str = "loaded",  # loaded | failed | blocked | not-allowed
        error: str | None = None,
        provides: list[str] | None = None,
    ) -> None:
        self.name = name
        self.module = module
        self.distribution = distribution
        self.version = version
        self.status = status
        self.error = error
        self.provides: list[str] = [] if provides is None else provides

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable: unhashable, as a dataclass that is not frozen

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"{type(self).__qualname__}({shown})"

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}" if self.distribution else f"module {self.module}"


class Registered(Generic[T]):
    """A record and the plugin that registered it. A plain slotted class, as :class:`PluginInfo`: a
    :func:`~envcore.frozen.record` costs ~0.15 ms to make at every start and ~3 us per instance (~40 a command)."""

    __slots__ = ("plugin", "record")

    def __init__(self, record: T, plugin: str) -> None:
        self.record = record
        self.plugin = plugin

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}(record={self.record!r}, plugin={self.plugin!r})"


def _debug(config: Config, message: str) -> None:
    if config.debug:
        from envcore.progress import debug_line

        debug_line(f"debug[envcore plugins]: {message}")


class Registry:
    """Everything the plugins registered, and the selection of backends by configuration."""

    def __init__(self, pm: pluggy.PluginManager, config: Config) -> None:
        self.pm = pm
        self.config = config
        self.plugins: dict[str, PluginInfo] = {}
        self.resolvers: dict[str, Registered[ResolverPlugin]] = {}
        self._kept: dict[Hashable, Any] = {}  # what kept() built, by key
        self._lock = threading.RLock()
        self.installers: dict[str, Registered[InstallerPlugin]] = {}
        self.formats: dict[str, Registered[PackageFormatPlugin]] = {}  # by extension
        self.stores: dict[str, Registered[StoragePlugin]] = {}
        self.namings: dict[str, Registered[NamingPlugin]] = {}
        self.commands: dict[str, Registered[CommandPlugin]] = {}
        # packages that passed check_locked, by id (held, so that no other object takes the id): the resolvers'
        # results share their package objects across a flow's environments (each checked once, not per result)
        self._checked: dict[int, LockedPackage] = {}

    def kept(self, key: Hashable, build: Callable[[], R]) -> R:
        """``build()``, once per registry and ``key`` (a failure is not kept): what the configuration selects
        does not change while a registry lives, and a flow asks for it once per environment."""
        if key not in self._kept:
            with self._lock:
                if key not in self._kept:
                    self._kept[key] = build()
        return self._kept[key]  # type: ignore[no-any-return]

    # --- selection ------------------------------------------------------------------------------------

    def _unknown(self, kind: str, setting: str, name: str, choices: Iterable[str]) -> ConfigError:
        value = self.config.value(setting)
        failed = [p for p in self.plugins.values() if p.status == "failed" and name in (p.name, p.module)]
        if failed:
            error = failed[0].error or ""
            fix = "Fix it" if error.startswith((BROKEN_CONTRACT, SETTING_CLASH)) else "Reinstall it"
            return ConfigError(
                f"{value.describe()}, and the plugin providing {kind} {name!r} ({failed[0].origin}) failed to "
                f"load: {error.rstrip('.')}. {fix}, or choose one of: {', '.join(sorted(choices)) or 'none'}."
            )
        blocked = [p for p in self.plugins.values() if p.status != "loaded" and p.name == name]
        close = close_match(name, choices)
        # envcore's own: stores under storage/, resolvers and installers (rattler, uv) under backends/
        folder, names = (
            ("storage", ("s3", "gs", "azure")) if kind == "store" else ("backends", _IN_TREE_RESOLVERS)
        )
        if blocked:
            by = (
                "METAFLOW_ENVCORE_DISABLED_PLUGINS (which lists it)"
                if blocked[0].status == "blocked"
                else "METAFLOW_ENVCORE_PLUGINS (which does not list it)"
            )
            hint = f"The plugin {name!r} is installed but left out by {by}; change that setting"
        elif close:
            hint = f"Did you mean {close!r}? Else install the distribution that provides it"
        elif name in names:
            hint = (
                f"Install the distribution that provides it, envcore-{name} (in envcore's repository's "
                f"{folder}/{name} folder; envcore is not published on PyPI, and a project named envcore there is "
                "another one)"
            )
        else:
            hint = "Install the distribution that provides it"
        broken = [p for p in self.plugins.values() if p.status == "failed"]
        if broken and not blocked:  # one of them may be the one (a plugin may be named unlike its backends)
            hint = (
                f"{hint}. These plugins failed to load and may provide it: "
                + "; ".join(f"{p.name} ({p.origin}): {p.error}" for p in broken)
                + " (run with --verbose for their tracebacks)"
            )
        return ConfigError(
            f"{value.describe()}, but no {kind} named {name!r} is {'loaded' if blocked else 'installed'}. {hint}, or "
            "choose one of: "
            f"{', '.join(sorted(choices)) or self._none_to_choose()}."
        )

    def _none_to_choose(self) -> str:
        """What a list of backends to choose from says when it is empty: none installed, or none the plugin
        settings let load (an installed backend they leave out is not "none installed")."""
        if any(p.status in ("blocked", "not-allowed") for p in self.plugins.values()):
            return "(none that METAFLOW_ENVCORE_PLUGINS and METAFLOW_ENVCORE_DISABLED_PLUGINS allow)"
        return "(none installed)"

    def resolver_plugin(self, env_type: EnvType) -> ResolverPlugin:
        setting = RESOLVER_SETTINGS[env_type]
        name = str(self.config.get(setting))
        choices = [n for n, r in self.resolvers.items() if env_type in r.record.env_types]
        if name == "none":
            raise ConfigError(
                f"Cannot resolve environments in {env_type.value} mode because no resolver is "
                f"configured ({self.config.value(setting).describe()}). Set METAFLOW_{setting} to one of: "
                f"{', '.join(sorted(choices)) or self._none_to_choose()}."
            )
        entry = self.resolvers.get(name)
        if entry is None:
            raise self._unknown("resolver", setting, name, choices)
        plugin: ResolverPlugin = entry.record
        if env_type not in plugin.env_types:
            raise ConfigError(
                f"{self.config.value(setting).describe()}, but resolver {name!r} cannot resolve {env_type.value} "
                f"environments (it handles {', '.join(sorted(t.value for t in plugin.env_types))}). "
                f"Choose one of: {', '.join(sorted(choices)) or self._none_to_choose()}."
            )
        return plugin

    def resolver(self, env_type: EnvType) -> Resolver:
        return self.resolver_named(self.resolver_plugin(env_type).name)

    def resolver_named(self, name: str) -> Resolver:
        """The resolver ``name``, built once per registry (so it can keep caches across environments)."""
        entry = self.resolvers.get(name)
        if entry is None:
            raise PluginError(
                f"No resolver named {name!r} is installed; installed resolvers: {', '.join(sorted(self.resolvers))}."
            )
        return self.kept(
            ("resolver", name),
            lambda: self._build(f"the resolver {name!r}", entry.plugin, entry.record.factory, self.config),
        )

    def checked(self, name: str, resolver: Resolver) -> None:
        """``resolver.check()`` before its first use: once per registry and resolver (a backend's tool does not
        change while a registry lives, and asking uv or conda costs a process each time)."""
        self.kept(("checked", name), resolver.check)

    def version_of(self, name: str, resolver: Resolver) -> str:
        """``resolver.version()``, once per registry and resolver; asked after resolving (for the description),
        so that a resolver need not load its library to be checked (the rattler resolver imports py-rattler
        when it first solves)."""
        return self.kept(("version", name), resolver.version)

    def installer(self, kind: PackageKind) -> Installer:
        setting = INSTALLER_SETTINGS[kind]
        name = str(self.config.get(setting))
        entry = self.installers.get(name)
        if entry is None or entry.record.kind is not kind:
            choices = [n for n, r in self.installers.items() if r.record.kind is kind]
            raise self._unknown(f"{kind.value} installer", setting, name, choices)
        return self._build(
            f"the {kind.value} installer {name!r}", entry.plugin, entry.record.factory, self.config
        )

    def store(self, datastore: str | None = None) -> Store:
        name = datastore or str(self.config.get("DEFAULT_DATASTORE"))
        entry = self.stores.get(name)
        if entry is None:
            raise self._unknown("store", "DEFAULT_DATASTORE", name, self.stores)
        plugin: StoragePlugin = entry.record
        root = self.config.store_root(name, plugin.root_setting)
        store = self._build(f"the store {name!r}", entry.plugin, plugin.factory, str(root.value), self.config)
        return store if entry.plugin == BUILTIN else PluginStore(store, self._origin(entry.plugin))

    def naming(self) -> NamingScheme:
        """The configured naming scheme, built once per registry."""
        return self.kept(("naming",), self._naming)

    def _naming(self) -> NamingScheme:
        name = str(self.config.get("ENVCORE_NAMING"))
        entry = self.namings.get(name)
        if entry is None:
            raise self._unknown("naming scheme", "ENVCORE_NAMING", name, self.namings)
        return self._build(f"the naming scheme {name!r}", entry.plugin, entry.record.factory)

    def package_format(self, extension: str) -> PackageFormat:
        entry = self.formats.get(extension)
        if entry is None:
            raise PluginError(
                f"No package format is registered for {extension!r} files; registered: "
                f"{', '.join(sorted(self.formats)) or 'none'}. Install the plugin that provides it."
            )
        return self._build(f"the {extension} package format", entry.plugin, entry.record.factory)

    def _origin(self, plugin: str) -> str:
        """``'s3' (envcore-s3 0.2.0)``: a plugin as messages name it."""
        info = self.plugins.get(plugin)
        return f"{plugin!r} ({info.origin})" if info else repr(plugin)

    def _build(self, what: str, plugin: str, factory: Callable[..., R], *args: Any) -> R:
        """``factory(*args)``; a failure, or no object at all, is a PluginError naming the backend (``what``) and
        the ``plugin`` that registered it."""
        origin = self._origin(plugin)
        try:
            built = factory(*args)
        except EnvcoreError:
            raise
        except Exception as exc:
            raise PluginError(
                f"The factory of {what}, from the plugin {origin}, failed: {type(exc).__name__}: {exc}. This is "
                "a bug in the plugin (or its installation); run with --verbose for the traceback and report it "
                "to its authors."
            ) from exc
        if built is None:
            raise PluginError(
                f"The factory of {what}, from the plugin {origin}, returned None instead of the object. This is "
                "a bug in the plugin; report it to its authors."
            )
        return built

    # --- checking what plugins return -----------------------------------------------------------------

    def check_locked(self, resolver_name: str, packages: Sequence[LockedPackage]) -> None:
        """The core's own check of a resolver's result: a sequence with one package per kind and name, hashes,
        credentials, known formats."""
        problems: list[str] = []
        untrusted_result: object = packages  # plugins can return anything
        if not isinstance(untrusted_result, Sequence):
            problems.append(f"returned a {type(untrusted_result).__name__}, not a sequence (a list or tuple)")
            packages = list(packages)
        seen: dict[tuple[object, str], str] = {}
        for item in packages:
            if isinstance(item, LockedPackage):
                key = (item.kind, item.name.lower().replace("_", "-"))
                if key in seen:
                    problems.append(f"{item.name} twice ({seen[key]} and {item.version})")
                seen.setdefault(key, item.version)
        for item in packages:
            if self._checked.get(id(item)) is item:
                continue
            untrusted: object = item  # plugins can return anything
            if not isinstance(untrusted, LockedPackage):
                problems.append(f"returned {type(untrusted).__name__} instead of LockedPackage")
                continue
            pkg = untrusted
            mistyped = _mistyped(pkg, _LOCKED_FIELDS)
            if not mistyped and not all(isinstance(d, str) for d in pkg.depends):
                mistyped = f"depends is {pkg.depends!r:.60}, not tuple of str"
            if mistyped:
                problems.append(f"package {pkg.filename!r}: {mistyped}")
                continue
            if not pkg.files:
                problems.append(f"package {pkg.filename!r} has no file")
            for f in pkg.files:
                mistyped = _mistyped(f, _FILE_FIELDS) if isinstance(f, PackageFile) else "not a PackageFile"
                if mistyped:
                    problems.append(f"a file of package {pkg.filename!r}: {mistyped}")
                    continue
                if not re.match(_HEX["sha256"], f.sha256 or ""):
                    problems.append(f"{pkg.filename}{f.url_format} has no well-formed sha256 ({f.sha256!r})")
                if f.md5 is not None and not re.match(_HEX["md5"], f.md5):
                    problems.append(f"{pkg.filename}{f.url_format} has a malformed md5 ({f.md5!r})")
                if has_credentials(f.url) or (pkg.kind is PackageKind.CONDA and conda_token(f.url)):
                    problems.append(f"the URL of {pkg.filename}{f.url_format} carries credentials")
                if f.url_format not in self.formats:
                    problems.append(f"{pkg.filename}{f.url_format} has no registered package format")
        if problems:
            raise PluginError(
                f"Resolver {resolver_name!r} returned an invalid result: {'; '.join(problems[:5])}"
                f"{' (and more)' if len(problems) > 5 else ''}. This is a bug in the plugin; report it to its authors."
            )
        if len(self._checked) > CHECKED_KEPT:
            self._checked.clear()
        self._checked.update((id(item), item) for item in packages)


# The field types of what a resolver returns (the dataclasses do not check them): a rattler BuildString for a
# str, or a list for a tuple, would otherwise fail much later, in JSON or hashing, naming no plugin.
_OPTIONAL_STR = (str, type(None))
_LOCKED_FIELDS: dict[str, tuple[type, ...]] = {
    "kind": (PackageKind,),
    "name": (str,),
    "version": (str,),
    "filename": (str,),
    "files": (tuple,),
    "build": (str,),
    "subdir": _OPTIONAL_STR,
    "channel": _OPTIONAL_STR,
    "depends": (tuple,),
}
_FILE_FIELDS: dict[str, tuple[type, ...]] = {
    "url_format": (str,),
    "url": (str,),
    "sha256": (str,),
    "md5": _OPTIONAL_STR,
    "size": (int, type(None)),
    "built": (bool,),
}


def _mistyped(record: object, fields: Mapping[str, tuple[type, ...]]) -> str:
    """The first field of ``record`` whose value is not of its declared type (``bool`` is no ``int`` here), as
    ``field is <value> of type <type>, not <types>``; "" when all are."""
    for name, types in fields.items():
        value = getattr(record, name)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            return f"{name} is {value!r:.60} of type {type(value).__name__}, not {wanted}"
    return ""


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries a ``user:password@`` or a secret-named query parameter. (A conda channel token,
    ``/t/<TOKEN>/`` at the start of the path, is one only in conda URLs: :func:`envcore.config.conda_token`.)"""
    if "@" not in url and "?" not in url:
        return False  # (no user info, no query: the common case, without parsing)
    parts = urlsplit(url)
    if parts.username or parts.password:
        return True
    return bool(secret_query_names(url))


# --- building -------------------------------------------------------------------------------------------


def _plugin_name_for_module(module_path: str) -> str:
    """A plugin loaded by path without a name: ``envcore_pixi.plugin`` is ``pixi``, another module its path, in
    lower case as every plugin name."""
    top = module_path.split(".")[0]
    return (
        top.removeprefix("envcore_").replace("_", "-") if top.startswith("envcore_") else module_path
    ).lower()


def _candidates(config: Config) -> list[tuple[str, str, Callable[[], ModuleType], str | None, str | None]]:
    """(name, module path, loader, distribution, version) of every plugin to consider, in load order."""
    found: list[tuple[str, str, Callable[[], ModuleType], str | None, str | None]] = [
        (name, value, partial(plugincache.load, value), dist, version)
        for name, value, dist, version in plugincache.entry_points(ENTRY_POINT_GROUP, str(config.cache_dir()))
    ]
    for item in config.name_list("ENVCORE_PLUGIN_MODULES") or []:
        name, _, path = item.rpartition("=")
        name, path = name.strip(), path.strip()
        if name and not re.match(_NAME, name):
            fix = f"Write {name.lower()}={path}" if re.match(_NAME, name.lower()) else "Give it such a name"
            raise ConfigError(
                f"{config.value('ENVCORE_PLUGIN_MODULES').describe()}, but {name!r}, the name it gives {path}, "
                "is not a plugin name: plugin names, as backend names, are lower-case letters, digits, '-', '_' "
                "or '.' (and METAFLOW_ENVCORE_PLUGINS and METAFLOW_ENVCORE_DISABLED_PLUGINS match them "
                f"exactly). {fix}."
            )
        found.append(
            (
                name or _plugin_name_for_module(path),
                path,
                partial(importlib.import_module, path),
                None,
                None,
            )
        )
    return found


def build_registry(config: Config | None = None, *, builtins: Sequence[ModuleType] | None = None) -> Registry:
    """Build the plugin manager and collect every registration; raise on broken contracts (duplicates,
    misspelled hooks). Import failures are recorded, not raised."""
    config = config or Config.load()
    pm = _PluginManager("envcore")
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm, config)
    allowed = config.name_list("ENVCORE_PLUGINS")
    blocked = set(config.name_list("ENVCORE_DISABLED_PLUGINS") or [])

    if builtins is None:
        from envcore import builtin

        builtins = [builtin]
    from envcore import __version__

    for i, module in enumerate(builtins):
        _register(registry, BUILTIN if i == 0 else module.__name__, module, "envcore", __version__)

    for name, path, load, dist, version in _candidates(config):
        if name in registry.plugins and registry.plugins[name].module == path:
            continue  # the same plugin through an entry point and a module path
        info = PluginInfo(name=name, module=path, distribution=dist, version=version)
        # an entry point's name (one METAFLOW_ENVCORE_PLUGIN_MODULES gives is checked by _candidates)
        if dist and not re.match(_NAME, name):
            info.status = "failed"
            info.error = (
                f"its entry point is named {name!r}, which is not a plugin name: plugin names, as backend "
                "names, are lower-case letters, digits, '-', '_' or '.'. Rename the entry point (the "
                "distribution's [project.entry-points.envcore])"
            )
        elif name in blocked:
            info.status = "blocked"
        elif allowed is not None and name not in allowed:
            info.status = "not-allowed"
        if info.status != "loaded":
            registry.plugins.setdefault(name, info)
            continue
        try:
            module = load()
        except Exception as exc:
            info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
            _debug(config, f"plugin {name} failed to import:\n{traceback.format_exc()}")
            registry.plugins.setdefault(name, info)
            continue
        if name in registry.plugins and registry.plugins[name].status == "loaded":
            other = registry.plugins[name]
            raise PluginError(
                f"Two plugins are named {name!r}: {other.origin} and {info.origin}. Uninstall one of them (blocking "
                "the name with METAFLOW_ENVCORE_DISABLED_PLUGINS would block both); one loaded by module path can "
                "take another name: METAFLOW_ENVCORE_PLUGIN_MODULES=OTHER_NAME=module.path."
            )
        _register(registry, name, module, dist, version, path)

    records: dict[str, list[Registered[Any]]] = {
        hook: _collect(registry, hook, kind) for hook, kind in _REGISTRATIONS.items()
    }
    _setting_conflicts(registry, records["envcore_settings"])
    failed = {name for name, info in registry.plugins.items() if info.status == "failed"}
    for name in failed & {name for name, _ in registry.pm.list_name_plugin()}:
        registry.pm.unregister(name=name)  # none of its records is used: it is all or nothing
    kept = {hook: [r for r in found if r.plugin not in failed] for hook, found in records.items()}
    config.add_settings(s.record for s in kept["envcore_settings"])
    _index(registry, kept)
    config.add_settings(_store_root_settings(registry))
    config.declared_all()
    return registry


def _store_root_settings(registry: Registry) -> list[Setting]:
    """The root settings every store is found by (``CONDA_<DS>ROOT``, ``DATASTORE_SYSROOT_<DS>`` and a plugin's
    ``root_setting``), so that ``envcore config show`` lists those of plugin stores too (envcore declares its own
    stores'; declarations already made win)."""
    return [
        Setting(name=root, help=f"Root of the {name} store")
        for name, entry in registry.stores.items()
        for root in store_root_settings(name, entry.record.root_setting)
        if root
    ]


# every registration hook and the record type it yields, in the order they are collected
_REGISTRATIONS: dict[str, type] = {
    "envcore_settings": Setting,
    "envcore_resolvers": ResolverPlugin,
    "envcore_installers": InstallerPlugin,
    "envcore_package_formats": PackageFormatPlugin,
    "envcore_storage": StoragePlugin,
    "envcore_naming": NamingPlugin,
    "envcore_cli_commands": CommandPlugin,
}


def _fail(registry: Registry, info: PluginInfo, error: str) -> None:
    """Leave out a plugin that breaks the hook contract, as one that fails to import: ``envcore plugins`` shows
    it as failed with ``error``, a command that selects one of its backends names it, and every other command
    runs without it."""
    info.status, info.error = "failed", error
    registry.plugins[info.name] = info
    _debug(registry.config, f"plugin {info.name} ({info.origin}) left out: {error}")


def _register(
    registry: Registry,
    name: str,
    module: ModuleType,
    dist: str | None,
    version: str | None,
    path: str | None = None,
) -> None:
    info = PluginInfo(name=name, module=path or module.__name__, distribution=dist, version=version)
    already = registry.pm.get_name(module)
    if already is not None:  # the same module under a second name (NAME=module.path of an installed plugin)
        _debug(
            registry.config, f"plugin {name} ({info.module}) is the plugin {already}, already loaded: skipped"
        )
        return None
    try:
        registry.pm.register(module, name=name)
        registry.pm.check_pending()
    except pluggy.PluginValidationError as exc:
        registry.pm.unregister(name=name)
        known = [h for h in dir(hookspecs) if h.startswith("envcore_")]
        unknown = [
            h
            for h in dir(module)
            if h.startswith("envcore") and h not in known and callable(getattr(module, h))
        ]
        guess = close_match(unknown[0], known) if unknown else None
        hint = f" Did you mean {guess!r} (instead of {unknown[0]!r})?" if guess else ""
        if "can not be found in the hookspec" in str(exc):
            hint += " envcore's hooks take the arguments envcore.hookspecs gives them (its registration hooks: none)."
        said = " ".join(str(exc).split()).rstrip(".")
        return _fail(registry, info, f"{BROKEN_CONTRACT}{said}.{hint}")
    unmarked = [
        h
        for h in dir(module)
        if h.startswith("envcore_")
        and hasattr(hookspecs, h)
        and callable(getattr(module, h))
        and registry.pm.parse_hookimpl_opts(module, h) is None
    ]
    if unmarked:  # pluggy ignores a function without the marker: the plugin would silently provide nothing
        registry.pm.unregister(name=name)
        return _fail(
            registry,
            info,
            f"{BROKEN_CONTRACT}it defines {', '.join(unmarked)} without the @hookimpl marker, so envcore would "
            "not call it. "
            "Decorate it with `from envcore import hookimpl` / `@hookimpl`.",
        )
    registry.plugins[name] = info
    _debug(registry.config, f"registered plugin {name} from {info.origin}")


def _collect(registry: Registry, hook_name: str, record_type: type[T]) -> list[Registered[T]]:
    """Call one registration hook plugin by plugin, so every record is attributed to its plugin; a plugin whose
    hook raises or yields a malformed record is left out (:func:`_fail`)."""
    out: list[Registered[T]] = []
    for impl in getattr(registry.pm.hook, hook_name).get_hookimpls():
        info = registry.plugins[impl.plugin_name]
        try:
            returned = impl.function()
            records = None if _not_records(returned) else list(returned)
        except Exception as exc:
            _debug(registry.config, f"{impl.plugin_name}.{hook_name}() failed:\n{traceback.format_exc()}")
            _fail(registry, info, f"{BROKEN_CONTRACT}{hook_name}() raised {type(exc).__name__}: {exc}")
            continue
        if records is None:
            _fail(
                registry,
                info,
                f"{BROKEN_CONTRACT}{hook_name}() returned "
                f"{'None' if returned is None else type(returned).__name__} instead of its "
                f"{record_type.__name__} records. Yield each record from it (or return a list of them; an empty "
                "one to register nothing).",
            )
            continue
        if registry.config.debug:  # (the text is not built otherwise: ~50 us a command)
            names = [getattr(r, "name", r) for r in records]
            _debug(registry.config, f"{impl.plugin_name}.{hook_name}() -> {names}")
        problems = (_problem(record, record_type, hook_name) for record in records)
        problem = next((p for p in problems if p), None)
        if problem:
            _fail(
                registry,
                info,
                f"{BROKEN_CONTRACT}{problem}. This is a bug in the plugin; report it to its authors.",
            )
            continue
        out += [Registered(record, impl.plugin_name) for record in records]
    return out


def _not_records(returned: object) -> bool:
    """Whether what a registration hook returned cannot hold its records: None (a hook that forgot to yield or
    return them), a value that is not iterable (a record returned alone), or text or a mapping."""
    return not isinstance(returned, Iterable) or isinstance(returned, (str, bytes, Mapping))


def _problem(record: object, record_type: type, hook_name: str) -> str | None:
    if not isinstance(record, record_type):
        return (
            f"{hook_name}() yielded {type(record).__name__}, but it must yield {record_type.__name__} records"
        )
    problem = _setting_problem(record) if isinstance(record, Setting) else _record_problem(record)
    if problem:
        return f"{hook_name}() yielded a {record_type.__name__} whose {problem}"
    name = getattr(record, "name", "")
    if record_type is not Setting and not re.match(_NAME, name):
        return f"{hook_name}() registered the name {name!r}; names must be lowercase letters, digits, '-', '_' or '.'"
    return None


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "summary": (str,),
    "root_setting": (str,),
    "kind": (PackageKind,),
    "extensions": (tuple,),
    "executables": (tuple,),
}
_FIELD_MEMBERS: dict[str, type] = {"env_types": EnvType, "capabilities": Capability}


def _setting_problem(setting: Setting) -> str | None:
    if not isinstance(setting.name, str) or not re.match(_SETTING_NAME, setting.name):
        return f"name {setting.name!r} is not an upper-case key such as MYPLUGIN_TIMEOUT"
    if setting.name.startswith("METAFLOW_"):
        return (
            f"name {setting.name!r} starts with METAFLOW_; declare it without the prefix ({setting.name[9:]})"
        )
    if setting.kind not in SETTING_KINDS:
        return f"kind is {setting.kind!r}, not one of {', '.join(SETTING_KINDS)}"
    if setting.minimum is not None and (setting.kind not in ("int", "float") or not _number(setting.minimum)):
        return f"minimum is {setting.minimum!r}: only an int or float setting has one, and it is a number"
    try:
        convert(setting, setting.default, "default")
    except ConfigError:
        below = setting.minimum is not None and _number(setting.default) and setting.default < setting.minimum
        return f"default {setting.default!r} is {'below its minimum' if below else 'not a valid ' + setting.kind}"
    return None


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _setting_conflicts(registry: Registry, settings: list[Registered[Setting]]) -> None:
    """Leave out a plugin that declares a setting envcore or another plugin declares otherwise: one of the two
    declarations would be silently ignored."""
    declared: dict[str, tuple[Setting, str]] = {s.name: (s, "envcore") for s in registry.config.settings()}
    for entry in settings:
        setting, owner = declared.setdefault(entry.record.name, (entry.record, entry.plugin))
        if owner != entry.plugin and setting != entry.record:
            other = "envcore itself" if owner == "envcore" else f"the plugin {registry._origin(owner)}"
            pairs = (
                (f.name, getattr(entry.record, f.name), getattr(setting, f.name)) for f in fields(Setting)
            )
            differ = "; ".join(
                f"{n} {echoed(mine, 60)}, not {echoed(its, 60)}" for n, mine, its in pairs if mine != its
            )
            own = re.sub(r"[^A-Z0-9]+", "_", entry.plugin.upper()).strip("_") + "_"
            example = "" if entry.record.name.startswith(own) else f", such as {own}{entry.record.name}"
            _fail(
                registry,
                registry.plugins[entry.plugin],
                f"{SETTING_CLASH}{entry.record.name}, which {other} declares otherwise ({differ}): one of the two "
                f"declarations would be ignored. Give the plugin's setting a name of its own{example} (prefixed "
                "with the plugin's name), "
                + (
                    "or read envcore's without declaring it."
                    if owner == "envcore"
                    else "or declare it exactly as that plugin does."
                ),
            )


def _record_problem(record: object) -> str | None:
    """What is wrong with a registration record's fields (the types its dataclass declares), if anything."""
    factory = getattr(record, "factory", None)
    if hasattr(record, "factory") and not callable(factory):
        return f"factory is {factory!r}, not a callable"
    declared = {
        name: types
        for name, types in _FIELD_TYPES.items()
        if hasattr(record, name) and not (name == "kind" and isinstance(record, Setting))
    }  # a setting's kind is the name of a value type ("int", "json")
    if mistyped := _mistyped(record, declared):
        return mistyped
    for field_name, member in _FIELD_MEMBERS.items():
        values = getattr(record, field_name, None)
        if values is not None and (
            not isinstance(values, (set, frozenset)) or not all(isinstance(v, member) for v in values)
        ):
            return f"{field_name} is {values!r}, not a frozenset of {member.__name__}"
    return None


def _index(registry: Registry, records: Mapping[str, list[Registered[Any]]]) -> None:
    def put(table: dict[str, Registered[Any]], key: str, entry: Registered[Any], kind: str) -> None:
        if key in table and table[key].plugin != entry.plugin:
            first, second = registry.plugins[table[key].plugin], registry.plugins[entry.plugin]
            raise PluginError(
                f"Two plugins register the {kind} {key!r}: {first.name} ({first.origin}) and {second.name} "
                f"({second.origin}). Uninstall one, or block one with METAFLOW_ENVCORE_DISABLED_PLUGINS."
            )
        table[key] = entry
        registry.plugins[entry.plugin].provides.append(f"{kind}:{key}")

    tables: dict[str, tuple[dict[str, Registered[Any]], str]] = {
        "envcore_resolvers": (registry.resolvers, "resolver"),
        "envcore_installers": (registry.installers, "installer"),
        "envcore_storage": (registry.stores, "store"),
        "envcore_naming": (registry.namings, "naming"),
        "envcore_cli_commands": (registry.commands, "command"),
    }
    for hook, (table, kind) in tables.items():
        for entry in records[hook]:
            put(table, entry.record.name, entry, kind)
    for entry in records["envcore_package_formats"]:
        for ext in entry.record.extensions:
            put(registry.formats, ext, entry, "format")


class PluginStore:
    """A plugin's store, whose mistakes name it: an exception from one of its methods that is no
    :class:`EnvcoreError` (which says what went wrong) nor ``OSError`` (a local file), a missing method, or a
    result of the wrong type is a :class:`PluginError` naming the store, its plugin and the method, instead of
    an internal error of envcore."""

    def __init__(self, store: Store, plugin: str) -> None:
        self._store, self._plugin = store, plugin

    @property
    def url(self) -> str:
        return str(self._store.url)

    def __repr__(self) -> str:
        return repr(self._store)

    def _fault(self, problem: str) -> PluginError:
        return PluginError(
            f"The store {self.url} (from the plugin {self._plugin}) {problem}. This is a bug in the "
            "plugin: a store implements every method of envcore.types.Store, returns ObjectInfo where it says so, "
            "and raises envcore.errors.StorageError (MissingObject, PreconditionFailed) for what goes wrong; run "
            "with --verbose for the traceback and report it to its authors."
        )

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        function = getattr(self._store, method, None)
        if not callable(function):
            raise self._fault(f"has no method {method}()")
        try:
            return function(*args, **kwargs)
        except (EnvcoreError, OSError):
            raise
        except Exception as exc:
            raise self._fault(f"failed in {method}() with {type(exc).__name__}: {exc}") from exc

    def _info(self, method: str, found: Any, *, optional: bool = False) -> Any:
        from envcore.types import ObjectInfo

        if not (isinstance(found, ObjectInfo) or (optional and found is None)):
            wanted = "an ObjectInfo or None" if optional else "an ObjectInfo"
            raise self._fault(f"returned {type(found).__name__} from {method}() instead of {wanted}")
        return found

    def stat(self, key: str) -> Any:
        return self._info("stat", self._call("stat", key), optional=True)

    def open(self, key: str) -> Any:
        return self._call("open", key)

    def get_file(self, key: str, dest: Any) -> None:
        self._call("get_file", key, dest)

    def put_file(self, key: str, src: Any) -> Any:
        return self._info("put_file", self._call("put_file", key, src))

    def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_version: str | None = None
    ) -> Any:
        found = self._call("put_bytes", key, data, if_absent=if_absent, if_version=if_version)
        return self._info("put_bytes", found)

    def list(self, prefix: str) -> Any:
        listing = iter(self._call("list", prefix))
        while True:
            try:
                item = next(listing)
            except StopIteration:
                return
            except (EnvcoreError, OSError):
                raise
            except Exception as exc:
                raise self._fault(f"failed in list() with {type(exc).__name__}: {exc}") from exc
            yield self._info("list", item)

    def delete(self, key: str) -> None:
        self._call("delete", key)
