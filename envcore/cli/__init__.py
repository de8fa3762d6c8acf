"""The ``envcore`` command line.

Sub-commands are imported only when used, so ``envcore --help`` stays fast. Every :class:`EnvcoreError`
is printed as one paragraph and exits non-zero; a traceback is shown only with ``--verbose`` or
``METAFLOW_DEBUG_CONDA=1``. The process ends through ``os._exit`` after flushing, because py-rattler's
runtime can crash while the interpreter finalises (see the toolchain notes).
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import click

from envcore import __version__
from envcore.errors import EnvcoreError, clipped, close_match

if TYPE_CHECKING:
    from envcore.aliases import PathspecLookup
    from envcore.config import Config
    from envcore.plugins import Registry

# name -> (import path, one-line help shown by `envcore --help` without importing the command)
COMMANDS = {
    "resolve": ("envcore.cli.env_cmds:resolve", "Resolve requirements into a locked environment."),
    "create": ("envcore.cli.env_cmds:create", "Hydrate an environment into a local prefix."),
    "get": ("envcore.cli.env_cmds:get", "Fetch an environment from the store."),
    "show": ("envcore.cli.env_cmds:show", "Show a resolved environment."),
    "alias": ("envcore.cli.env_cmds:alias", "Give an environment a name."),
    "plugins": ("envcore.cli.plugins_cmd:plugins", "List plugins, their backends and status."),
    "config": ("envcore.cli.config_cmd:config", "Show configuration values and their sources."),
}


class App:
    """What every command shares: output settings, configuration and the plugin registry (built lazily).
    A front end (the Metaflow integration) subclasses it to change what the commands print."""

    #: ``show`` puts the "### Environment for ..." header above a single environment too (the original's form)
    headers_always = False

    def hint(self, message: str) -> str:
        """``message`` with commands named as this front end names them (``envcore show`` here)."""
        return message

    def __init__(
        self,
        verbose: bool = False,
        quiet: bool = False,
        *,
        config: Config | None = None,
        pathspec_lookup: PathspecLookup | None = None,
    ) -> None:
        self.verbose = verbose
        self.quiet = quiet
        self.pathspec_lookup = (
            pathspec_lookup  # answers step:Flow/Run/Step aliases (the Metaflow integration)
        )
        if config is not None:
            self.loaded_config = self.config = config

    @cached_property
    def loaded_config(self) -> Config:
        """The configuration as loaded, its values not checked yet (``envcore config show`` lists bad ones)."""
        from envcore.config import Config

        config = Config.load()
        if self.verbose and not config.debug:  # --verbose: the detailed output METAFLOW_DEBUG_CONDA=1 gives
            config.set_debug("--verbose")
        return config

    @cached_property
    def config(self) -> Config:
        config = self.loaded_config
        self.verbose = self.verbose or config.debug
        config.values()  # every setting is checked up front: a bad value fails every command, not some
        return config

    @cached_property
    def registry(self) -> Registry:
        from envcore import plugincache
        from envcore.plugins import build_registry

        registry = build_registry(self.config)
        for problem in _plugin_setting_problems(registry):
            self.echo(f"envcore: warning: {problem}", err=True)
        modules = (
            getattr(sys.modules.get(info.module), "__file__", None) for info in registry.plugins.values()
        )
        plugincache.remember_commands(
            {name: entry.record.summary for name, entry in registry.commands.items()},
            [m for m in modules if m],
            self.config.environ,
        )
        return registry

    def echo(self, message: str = "", *, err: bool = False) -> None:
        if not self.quiet:
            click.echo(message, err=err)

    def debug(self, message: str) -> None:
        if self.verbose:
            from envcore.progress import debug_line

            debug_line(f"debug[envcore]: {message}")


def _set_flag(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    app = ctx.find_object(App)
    if value and app is not None and param.name:
        setattr(app, param.name, True)


def with_output_flags(command: click.Command) -> click.Command:
    """``command`` also taking ``-v/--verbose`` and ``-q/--quiet`` after its name (``envcore resolve -v``), as
    the group does before it; options of the command's own with those names win."""
    taken = {opt for param in command.params for opt in getattr(param, "opts", ())}
    for name, opts, help_text in (
        ("verbose", ("-v", "--verbose"), "Detailed output and tracebacks (as envcore -v)."),
        ("quiet", ("-q", "--quiet"), "Print only results and errors (as envcore -q)."),
    ):
        if not taken & set(opts):
            command.params.append(
                click.Option(
                    [*opts, name], is_flag=True, expose_value=False, callback=_set_flag, help=help_text
                )
            )
    if isinstance(command, click.Group):  # envcore config show -q
        for sub in command.commands.values():
            with_output_flags(sub)
    return command


def _sentence(text: str) -> str:
    """``text`` ending with one full stop (a plugin's error may end with one already, or with ``?``)."""
    text = text.rstrip()
    return text if text.endswith((".", "?", "!")) else f"{text}."


def _module_problem(error: str) -> str:
    """What is wrong with a plugin module that failed, and its fix: it breaks the hook contract, or it cannot be
    imported."""
    from envcore.plugins import BROKEN_CONTRACT, SETTING_CLASH

    if error.startswith(BROKEN_CONTRACT):
        return (
            f"does not follow envcore's hook contract: {_sentence(error.removeprefix(BROKEN_CONTRACT))} Commands "
            "that need its backends will fail; fix the module (see envcore.hookspecs)."
        )
    if error.startswith(SETTING_CLASH):
        said = _sentence(error.removeprefix("it "))
        return f"{said} It is left out: commands that need its backends will fail."
    return (
        f"cannot be imported: {_sentence(error)} Commands that need its backends will fail; fix the setting or "
        "install the module."
    )


def _plugin_setting_problems(registry: Registry) -> list[str]:
    """What the plugin settings ask for and does not happen: a module of METAFLOW_ENVCORE_PLUGIN_MODULES that
    cannot be imported, a name of METAFLOW_ENVCORE_PLUGINS or METAFLOW_ENVCORE_DISABLED_PLUGINS that no plugin
    has. (A plugin installed by its distribution that fails is only reported by ``envcore plugins`` and by the
    commands that select it.)"""
    problems = [
        f"the plugin module {info.module} (METAFLOW_ENVCORE_PLUGIN_MODULES) {_module_problem(info.error or '')}"
        for info in registry.plugins.values()
        if info.status == "failed" and info.distribution is None
    ]
    for setting in ("ENVCORE_PLUGINS", "ENVCORE_DISABLED_PLUGINS"):
        unknown = [name for name in registry.config.name_list(setting) or [] if name not in registry.plugins]
        if unknown:
            problems.append(
                f"METAFLOW_{setting} names {', '.join(map(repr, unknown))}, which no installed plugin is called "
                f"(installed: {', '.join(sorted(registry.plugins))}). Check the names with `envcore plugins`."
            )
    return problems + misspelled_settings(registry.config)


def misspelled_settings(config: Config) -> list[str]:
    """Environment variables and config file keys that look like envcore settings and are none, so that a typo
    is not silently a default: every unknown ``METAFLOW_ENVCORE_*`` (envcore's own prefix), a
    ``METAFLOW_CONDA_*`` close to a known name (others may be Metaflow's or another extension's), and a file's
    key that names a setting without the ``METAFLOW_`` prefix (which Metaflow's config file keys carry)."""
    names = set(config.names())
    found = _unknown_keys(names, config.environ, "")
    for path, data in config.files:
        found += _unknown_keys(names, data, f" in {path}")
        found += [
            f"{key} in {path} is not read: the keys of Metaflow's config file carry the METAFLOW_ prefix. Rename "
            f"it METAFLOW_{key}."
            for key in data
            if key in names
        ]
    return found


def _unknown_keys(names: set[str], keys: Iterable[str], where: str) -> list[str]:
    found = []
    for key in keys:
        name = key.removeprefix("METAFLOW_")
        if not key.startswith(("METAFLOW_ENVCORE_", "METAFLOW_CONDA_")) or name in names:
            continue
        close = close_match(name, names, cutoff=0.85)
        if close or name.startswith("ENVCORE_"):
            meant = f" Did you mean METAFLOW_{close}?" if close else ""
            found.append(
                f"{key}{where} is not a setting envcore knows, so it is ignored.{meant} See `envcore config show`."
            )
    return found


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *self._plugin_command_summaries(ctx)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module, _, attr = COMMANDS[cmd_name][0].partition(":")
            return with_output_flags(getattr(importlib.import_module(module), attr))
        entry = self._plugin_commands(ctx).get(cmd_name)
        return with_output_flags(entry.record.factory()) if entry else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short) for name, (_, short) in COMMANDS.items()]
        rows += [
            (name, summary or "(plugin command)")
            for name, summary in self._plugin_command_summaries(ctx).items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _plugin_command_summaries(self, ctx: click.Context) -> dict[str, str]:
        """Plugin commands (name: summary), without those named as a built-in one (which always wins)."""
        from envcore import plugincache

        app = ctx.find_object(App)
        if app is not None and "registry" not in vars(app):
            known = plugincache.commands(app.config.environ if "config" in vars(app) else os.environ)
            if known is not None:
                return {n: s for n, s in known.items() if n not in COMMANDS}
        found = self._plugin_commands(ctx)
        return {n: found[n].record.summary for n in sorted(found) if n not in COMMANDS}

    def _plugin_commands(self, ctx: click.Context) -> dict[str, Any]:
        app = ctx.find_object(App)
        if app is None:
            return {}
        try:
            return app.registry.commands
        except EnvcoreError:
            return {}  # reported by the command that needs the registry


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-v", "--verbose", is_flag=True, help="Detailed output and tracebacks (or METAFLOW_DEBUG_CONDA=1)."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only results and errors.")
@click.version_option(__version__, prog_name="envcore")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """Reproducible environments: resolve requirements into locked environments, cache them in a store,
    name them, and hydrate them anywhere.

    Backends (resolvers, stores, naming) are plugins chosen by Metaflow configuration; see
    `envcore plugins` and `envcore config show`.
    """
    app = ctx.ensure_object(App)
    app.verbose = app.verbose or verbose
    app.quiet = quiet


def _wants_traceback(argv: Sequence[str]) -> bool:
    from envcore.configfiles import debug_requested

    return debug_requested(os.environ) or "-v" in argv or "--verbose" in argv


def _print_traceback() -> None:
    import traceback  # only --verbose errors need it

    traceback.print_exc()


def format_error(exc: EnvcoreError, prog_name: str = "envcore") -> str:
    """One paragraph for the user; whatever a message carries, never a URL's password, a secret query
    parameter or a private key, nor a word of more than 200 characters (the last line of defence: messages are
    redacted and bounded where they are made)."""
    import textwrap  # only errors need it

    from envcore.config import redact_text

    words = redact_text(f"{prog_name}: {exc.message}").split(" ")  # (a library's error may repeat a value)
    return textwrap.fill(
        " ".join(clipped(word, 200) for word in words),
        width=100,
        break_long_words=False,
        break_on_hyphens=False,
    )


def run(
    argv: Sequence[str] | None = None,
    *,
    app: App | None = None,
    command: click.Command | None = None,
    prog_name: str = "envcore",
    user_errors: tuple[type[Exception], ...] = (),
) -> int:
    """Run the CLI (or another click ``command`` sharing its error handling, as ``metaflow environment`` does)
    and return the exit code; never raises for user errors. ``user_errors`` are other exception types whose
    message (their ``message`` attribute, else their text) is for the user, as an :class:`EnvcoreError`'s is."""
    argv = list(sys.argv[1:] if argv is None else argv)
    app = app or App()
    app.verbose = app.verbose or _wants_traceback(argv)
    from envcore.progress import envcore_warnings_to

    with envcore_warnings_to(lambda text: _show_warning(app, text)):
        return _run_command(argv, app, command or cli, prog_name, user_errors)


def _run_command(
    argv: list[str],
    app: App,
    command: click.Command,
    prog_name: str,
    user_errors: tuple[type[Exception], ...],
) -> int:
    try:
        result = command.main(args=argv, prog_name=prog_name, standalone_mode=False, obj=app)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except EnvcoreError as exc:
        if app.verbose:
            _print_traceback()
        click.echo(format_error(exc, prog_name), err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except user_errors as exc:
        if app.verbose:
            _print_traceback()
        click.echo(format_error(EnvcoreError(getattr(exc, "message", None) or str(exc)), prog_name), err=True)
        return 1
    except Exception as exc:
        if app.verbose:
            _print_traceback()
        if isinstance(exc, OSError) and exc.filename is not None:
            # a path of this machine that cannot be used (a file where a folder is expected, no permission, a
            # full or read-only disk): the configuration or the machine, not envcore
            click.echo(format_error(EnvcoreError(_path_problem(exc)), prog_name), err=True)
            return 1
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRORS:  # writing the output (> /dev/full)
            click.echo(
                format_error(
                    EnvcoreError(
                        f"Cannot write: {exc.strerror}. Check where the output goes (a file, a pipe) and the free "
                        "space of the folders envcore is configured with."
                    ),
                    prog_name,
                ),
                err=True,
            )
            return 1
        from envcore.config import redact_text

        click.echo(
            redact_text(
                f"{prog_name}: internal error: {type(exc).__name__}: {exc}. This is a bug in envcore or a plugin; "
                "run again with --verbose for the traceback and report it."
            ),
            err=True,
        )
        return 3
    return result if isinstance(result, int) else 0


_WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS})


def _path_problem(exc: OSError) -> str:
    path = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    return (
        f"Cannot use {path}: {exc.strerror or exc}. Check the folders envcore is configured with "
        "(METAFLOW_ENVCORE_CACHE_DIR for its cache and environments, METAFLOW_CONDA_LOCALROOT for a local "
        "store), their permissions and free space; run with --verbose for the traceback."
    )


def _show_warning(app: App, text: str) -> None:
    """An :class:`~envcore.errors.EnvcoreWarning` (a resolver's), above any live bar; nothing with --quiet."""
    if not app.quiet:
        from envcore.config import redact_text
        from envcore.progress import debug_line

        debug_line(redact_text(f"envcore: warning: {text}"))


def quiet_library_logs(verbose: bool) -> None:
    """Libraries' log records (gcsfs, azure, botocore...) reach stderr only with ``--verbose``: otherwise
    Python's last-resort handler would print their warnings and retry tracebacks around envcore's own
    one-paragraph error."""
    import logging

    if verbose:

        class AboveBars(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                from envcore.progress import debug_line

                debug_line(self.format(record))

        handler = AboveBars()
        handler.setFormatter(logging.Formatter("debug[%(name)s]: %(message)s"))
        logging.basicConfig(level=logging.INFO, handlers=[handler])
    else:
        logging.getLogger().addHandler(logging.NullHandler())


def main() -> None:
    import signal

    from envcore.tools import exit_process, sigterm_as_interrupt

    quiet_library_logs(_wants_traceback(sys.argv[1:]))
    terminated = sigterm_as_interrupt()  # as Ctrl-C: stop, clean up, say so
    code = run()
    exit_process(128 + signal.SIGTERM if terminated else code)
