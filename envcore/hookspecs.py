"""Every envcore hook, and nothing else.

All hooks are *registration* hooks: each is called once, when the plugin manager is built, and returns an
iterable of frozen records (:mod:`envcore.types`; ``None`` or a record alone is refused). None is
``firstresult``: every plugin contributes, and the core picks the backend named by configuration
(``METAFLOW_*``), so installing a plugin never changes what is selected. Records are validated by the core
(:mod:`envcore.plugins`) before anyone sees them.

A plugin is a module with functions decorated by :data:`envcore.hookimpl`, found through the ``envcore``
entry-point group or the ``METAFLOW_ENVCORE_PLUGIN_MODULES`` setting. Keep plugin modules light: put heavy
imports inside the factories.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from envcore.types import (
    CommandPlugin,
    InstallerPlugin,
    NamingPlugin,
    PackageFormatPlugin,
    ResolverPlugin,
    Setting,
    StoragePlugin,
)

hookspec = pluggy.HookspecMarker("envcore")


@hookspec
def envcore_resolvers() -> Iterable[ResolverPlugin]:
    """Register resolvers, selected by ``CONDA_DEPENDENCY_RESOLVER``, ``CONDA_PYPI_DEPENDENCY_RESOLVER`` and
    ``CONDA_MIXED_DEPENDENCY_RESOLVER`` according to the environment types they declare.

    Example::

        @envcore.hookimpl
        def envcore_resolvers():
            yield ResolverPlugin(
                name="pixi",
                env_types=frozenset({EnvType.CONDA_ONLY}),
                factory=lambda config: PixiResolver(config),  # imported lazily
                summary="Resolve with the pixi CLI",
                capabilities=frozenset({Capability.CROSS_PLATFORM}),
                executables=("pixi",),
            )
    """


@hookspec
def envcore_installers() -> Iterable[InstallerPlugin]:
    """Register installers that put verified package files into a prefix, one package kind each.

    Example::

        @envcore.hookimpl
        def envcore_installers():
            yield InstallerPlugin(name="uv", kind=PackageKind.PYPI, factory=UvInstaller, summary="uv pip install")
    """


@hookspec
def envcore_package_formats() -> Iterable[PackageFormatPlugin]:
    """Register archive formats by file extension; every locked file must have a registered format.

    Example::

        @envcore.hookimpl
        def envcore_package_formats():
            yield PackageFormatPlugin(
                name="conda-v2", kind=PackageKind.CONDA, extensions=(".conda",), factory=CondaV2Format
            )
    """


@hookspec
def envcore_storage() -> Iterable[StoragePlugin]:
    """Register stores, selected by ``DEFAULT_DATASTORE``; the root comes from ``CONDA_<NAME>ROOT`` or
    ``DATASTORE_SYSROOT_<NAME>/conda_env``.

    Example::

        @envcore.hookimpl
        def envcore_storage():
            yield StoragePlugin(name="s3", factory=lambda root, config: S3Store(root, config),
                                summary="Amazon S3 and compatible services")
    """


@hookspec
def envcore_naming() -> Iterable[NamingPlugin]:
    """Register naming schemes (environment ids), selected by ``ENVCORE_NAMING``.

    Example::

        @envcore.hookimpl
        def envcore_naming():
            yield NamingPlugin(name="sha256", factory=Sha256Naming, summary="sha256 ids")
    """


@hookspec
def envcore_settings() -> Iterable[Setting]:
    """Declare configuration keys (without ``METAFLOW_``), read like every Metaflow setting and listed by
    ``envcore config show``. Declare every key the plugin reads: the registry's configuration refuses the
    others (a :class:`~envcore.errors.PluginError` naming the key, where ``config.get`` reads it).

    Example::

        @envcore.hookimpl
        def envcore_settings():
            yield Setting(name="ENVCORE_PIXI_EXE", default="pixi", help="Path to the pixi executable")
    """


@hookspec
def envcore_cli_commands() -> Iterable[CommandPlugin]:
    """Add sub-commands to the ``envcore`` CLI.

    Example::

        @envcore.hookimpl
        def envcore_cli_commands():
            yield CommandPlugin(
                name="pixi-info", factory=lambda: pixi_info_command, summary="Show pixi's view of an environment."
            )
    """
