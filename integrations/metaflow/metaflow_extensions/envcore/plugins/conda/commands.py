"""``metaflow environment resolve | create | get | show | alias``: the ``envcore`` commands themselves, run
with Metaflow's configuration, plus what only a Metaflow user needs:

* ``resolve`` adds Metaflow's own requirements (``requests``, the datastore's client) unless
  ``--skip-metaflow-deps``, so the environment can run a step;
* ``--pathspec`` (and ``step:Flow/Run/Step`` references) are answered from the run's task metadata;
* ``show`` prints the original's ``### Environment for '<ref>' (arch '<arch>'):`` header;
* ``create --into-dir DIR`` also downloads the step's code package into DIR with ``__conda_python``.
"""

from __future__ import annotations

import functools
import inspect
import os
import shutil
import sys
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from envcore.cli import App, env_cmds
from envcore.cli import run as cli_run
from envcore.errors import EnvcoreError, UsageError
from envcore.platforms import runs_here

if TYPE_CHECKING:
    from metaflow_extensions.envcore.plugins.conda.session import Session

    from envcore.config import Config
    from envcore.plugins import Registry

PROG = "metaflow environment"


class MetaflowApp(App):
    """The envcore CLI's shared state, configured from Metaflow's configuration: step references are answered
    from the runs' metadata, ``show`` heads every environment as the original does, and hints name
    ``metaflow environment ...``."""

    headers_always = True

    def __init__(self, session: Session, verbose: bool = False, quiet: bool = False) -> None:
        super().__init__(verbose=verbose, quiet=quiet, pathspec_lookup=session.pathspec_lookup)
        self.session = session
        self.local_only = False  # --local-only: the commands do not consult the store

    def hint(self, message: str) -> str:
        from metaflow_extensions.envcore.plugins.conda import messages

        return messages.commands(message)

    @cached_property
    def config(self) -> Config:
        config = self.session.config
        self.verbose = self.verbose or config.debug
        return config

    @cached_property
    def registry(self) -> Registry:
        return local_only_registry(self.session.registry) if self.local_only else self.session.registry

    def local_ids(self, ref: str, arch: str) -> str:
        """``ref`` as ``REQ_ID:FULL_ID``, found with local information only (the local record, and a run's
        metadata for ``step:`` references): what ``--local-only`` means, as in the original."""
        from envcore.environments import Environments

        envs = Environments(
            lambda: local_only_registry(self.session.registry),
            config=self.config,
            pathspec_lookup=self.pathspec_lookup,
        )
        env = envs.find(ref, arch)
        return f"{env.req_id}:{env.full_id}"

    def step_ref(self, text: str, is_pathspec: bool = False) -> str:
        """``Flow/Run/Step`` (with ``--pathspec``) or ``step:Flow/Run/Step`` as ``REQ_ID:FULL_ID``, from the
        local record or the run's metadata; anything else unchanged."""
        if is_pathspec and not text.startswith("step:"):
            text = f"step:{text}"
        if not text.startswith("step:"):
            return text
        req_id, full_id = self.session.environments.aliases.resolve(text)
        return f"{req_id}:{full_id}"


class _LocalOnlyRegistry:
    """The registry, but its store is not available (``--local-only``)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)

    def store(self, datastore: str | None = None) -> Any:
        from envcore.errors import EnvironmentNotFound

        raise EnvironmentNotFound(
            "It is not known locally, and with --local-only the store is not looked in. Run without "
            "--local-only, or fetch it first with `metaflow environment get`."
        )


def local_only_registry(registry: Registry) -> Registry:
    return cast("Registry", _LocalOnlyRegistry(registry))


LOCAL_ONLY = click.Option(
    ["--local-only/--non-local"],
    default=False,
    show_default=True,
    help="Use only local information (the local record, and runs' metadata) to find the environment.",
)


def _app(ctx: click.Context) -> MetaflowApp:
    app = ctx.find_object(MetaflowApp)
    assert app is not None
    return app


def _extend(command: click.Command, *extra: click.Parameter, help_suffix: str = "") -> click.Command:
    """A copy of an envcore command with more parameters; its callback is set by the caller."""
    return click.Command(
        name=command.name,
        params=[*command.params, *extra],
        help=inspect.cleandoc(command.help or "") + help_suffix,
        short_help=command.short_help,
    )


# --- resolve ---------------------------------------------------------------------------------------------


def _pypi_only(app: MetaflowApp, kwargs: dict[str, Any]) -> bool:
    from envcore import specs
    from envcore.types import CONDA, PYPI

    categories: set[str] = set()
    for kind, key in (
        ("requirements", "requirements"),
        ("environment", "env_file"),
        ("pyproject", "pyproject"),
    ):
        for path in kwargs[key]:  # (each option is repeatable)
            try:  # (read as the command reads it: the option says the format; standard input is read once)
                categories |= {r.category for r in specs.load(path, kind).requirements}
            except EnvcoreError:
                pass  # the command itself reports the file's problem
    if kwargs["conda"]:
        categories.add(CONDA)
    if kwargs["pypi"]:
        categories.add(PYPI)
    if kwargs["using"]:
        from envcore.resolve import local_arch

        base = app.session.environments.find(kwargs["using"], (kwargs["archs"] or (local_arch(),))[0])
        return base.env_type.value == "pypi-only" and CONDA not in categories
    return PYPI in categories and CONDA not in categories


def _resolve(skip_metaflow_deps: bool, local_only: bool, **kwargs: Any) -> None:
    ctx = click.get_current_context()
    app = _app(ctx)
    if kwargs["using_pathspec"]:
        if kwargs["using"]:
            raise UsageError("Cannot specify both --using-pathspec and --using; give one base environment.")
        kwargs["using"], kwargs["using_pathspec"] = app.step_ref(kwargs["using_pathspec"], True), None
    elif kwargs["using"]:
        kwargs["using"] = app.step_ref(kwargs["using"])
    if local_only:  # the base (--using) and the cloned (--from) environments are looked up locally only
        from envcore.resolve import check_arch, local_arch

        arch = check_arch(kwargs["archs"][0]) if kwargs["archs"] else local_arch()
        if kwargs["from_pathspec"] and not kwargs["from_env"]:
            kwargs["from_env"], kwargs["from_pathspec"] = f"step:{kwargs['from_pathspec']}", None
        for key in ("using", "from_env"):
            if kwargs[key]:
                kwargs[key] = app.local_ids(kwargs[key], arch)
    if not skip_metaflow_deps:
        from metaflow.metaflow_config import get_pinned_conda_libs
        from metaflow_extensions.envcore.plugins.conda.requirements import as_constraint

        from envcore.resolve import default_python

        pins = get_pinned_conda_libs(kwargs["python"] or default_python(), app.session.datastore_type)
        wanted = tuple(f"{name}{as_constraint(spec)}" for name, spec in pins.items())
        side = "pypi" if _pypi_only(app, kwargs) else "conda"
        kwargs[side] = (*kwargs[side], *wanted)
    ctx.invoke(env_cmds.resolve, **kwargs)


resolve = _extend(
    env_cmds.resolve,
    click.Option(
        ["--skip-metaflow-deps"],
        is_flag=True,
        help="Do not add what Metaflow needs to run a step (requests...).",
    ),
    LOCAL_ONLY,
    help_suffix="\n\nMetaflow's own requirements are added (see --skip-metaflow-deps).",
)
resolve.callback = _resolve


# --- create ----------------------------------------------------------------------------------------------


def _create(
    pathspec: bool,
    into_dir: Path | None,
    install_notebook: bool,
    local_only: bool,
    strict: bool,
    **kwargs: Any,
) -> None:
    from metaflow_extensions.envcore.plugins.conda import code_package

    from envcore import resolve as resolving

    ctx = click.get_current_context()
    app = _app(ctx)
    original = kwargs["env"]
    is_step = pathspec or original.startswith("step:")
    step_path = original.removeprefix("step:") if is_step else None
    if install_notebook and not kwargs["name"]:
        raise UsageError("--install-notebook requires --name (the environment the kernel runs in).")
    if into_dir is not None:
        into_dir = into_dir.absolute()
        if into_dir.exists() and (not into_dir.is_dir() or any(into_dir.iterdir())) and not kwargs["force"]:
            raise UsageError(f"'{into_dir}' is not a directory or not empty -- use --force to force.")
    arch = resolving.check_arch(kwargs["arch"]) if kwargs["arch"] else resolving.local_arch()
    if install_notebook and not runs_here(arch):
        raise UsageError(
            f"--install-notebook needs an environment that runs on this {resolving.local_arch()} machine, not "
            f"one for {arch}: a Jupyter kernel runs its python here. Leave out --arch {arch} (or "
            "--install-notebook)."
        )
    kwargs["env"] = app.step_ref(original, pathspec)
    if local_only:  # only an environment known locally is created
        kwargs["env"] = app.local_ids(kwargs["env"], arch)
    # the step's code package, or the Metaflow its run used, is looked up before anything is created
    code = code_package.step_code(step_path) if into_dir is not None and step_path else None
    wanted = code_package.run_metaflow(step_path) if into_dir is not None and step_path and not code else None
    if wanted is not None and wanted.problems:
        if strict:
            raise EnvcoreError(
                f"Step {step_path} has no code package, and the Metaflow its run used cannot be installed as it "
                f"was: {'; '.join(wanted.problems)}. Use --no-strict to install the latest public versions "
                "instead, or run the flow with METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE=1 so that its steps keep "
                "their code package (local runs store one only then)."
            )
        for problem in wanted.problems:
            app.echo(f"Warning: {problem}.", err=True)
    envs = app.session.environments
    env = envs.find(kwargs["env"], arch)
    if install_notebook:
        from metaflow_extensions.envcore.plugins.conda import notebook

        app.echo("    Resolving an environment compatible with Jupyter ...", err=True)
        env, derived = notebook.with_kernel(envs, env)
        if derived:
            kwargs["env"] = f"{env.req_id}:{env.full_id}"
    ctx.invoke(env_cmds.create, **kwargs)
    name = env_cmds.created_name(env) if kwargs["name"] is None else kwargs["name"]
    python = envs.prefix_for(env, name) / "bin" / "python"
    code_env: dict[str, str] = {}
    if into_dir is not None:
        made = not into_dir.exists()
        try:
            install = None
            if wanted is not None:
                install = functools.partial(
                    code_package.install_metaflow, python=python, wanted=wanted, config=app.config
                )
            code_env = code_package.download_into(into_dir, python, code, install)
        except BaseException:
            if made:
                shutil.rmtree(into_dir, ignore_errors=True)
            raise
        app.echo(
            f"Code package for step:{step_path} downloaded into '{into_dir}' -- `__conda_python` is the "
            "executable to use"
            if code is not None
            else f"'{into_dir}' has `__conda_python`, the executable to use, and the Metaflow of step:{step_path}'s "
            f"run ({', '.join(wanted.requirements)}) in {code_package.METAFLOW_DIR}"
            if wanted is not None
            else f"'{into_dir}' has `__conda_python`, the executable to use"
        )
        if code_env:
            app.echo(
                f"Source `{into_dir / code_package.SETUP_SCRIPT}` to use the installed Metaflow environment."
            )
    if install_notebook:
        from metaflow_extensions.envcore.plugins.conda import notebook

        display = f"Metaflow {step_path or original}"
        settings = code_package.kernel_env(code_env, into_dir) if into_dir is not None else None
        kernel = notebook.install_kernel(python, display, settings)
        app.echo(f"Jupyter kernel '{display}' installed in {kernel}")


create = _extend(  # (--pathspec is the core's option, read here through Metaflow's run metadata)
    env_cmds.create,
    click.Option(
        ["--into-dir"],
        type=click.Path(path_type=Path),
        help="Also put `__conda_python` into DIR and, with --pathspec, the step's code package (without one, "
        "the Metaflow its run used, from the PyPI sources: see --strict) and metaflow_setup.sh (source it to use "
        "Metaflow and the flow's code with the environment).",
    ),
    click.Option(
        ["--strict/--no-strict"],
        default=True,
        show_default=True,
        help="With --into-dir and a step without a code package: fail unless the Metaflow (and extensions) its "
        "run used can be installed at the versions it used (--no-strict: the latest public ones instead).",
    ),
    click.Option(
        ["--install-notebook/--no-install-notebook"],
        default=False,
        help="Also install a Jupyter kernel 'Metaflow <ENV>' running in it (ipykernel is added if missing).",
    ),
    LOCAL_ONLY,
)
create.callback = _create


# --- get / show / alias: the core's commands (MetaflowApp answers step references and sets show's form) ---


get = env_cmds.get


def _show(local_only: bool, **kwargs: Any) -> None:
    ctx = click.get_current_context()
    _app(
        ctx
    ).local_only = local_only  # the store is not looked in (an environment not known locally: not found)
    ctx.invoke(env_cmds.show, **kwargs)


show = _extend(env_cmds.show, LOCAL_ONLY)
show.callback = _show


def _alias(local_only: bool, **kwargs: Any) -> None:
    from envcore.resolve import local_arch

    ctx = click.get_current_context()
    app = _app(ctx)
    if local_only:  # the source environment is found locally; the aliases are written to the store
        kwargs["env"] = app.local_ids(app.step_ref(kwargs["env"], kwargs["pathspec"]), local_arch())
        kwargs["pathspec"] = False
    ctx.invoke(env_cmds.alias, **kwargs)


alias = _extend(env_cmds.alias, LOCAL_ONLY)
alias.callback = _alias


# --- the group -------------------------------------------------------------------------------------------


class _Group(click.Group):
    """Errors name ``metaflow environment ...`` where envcore's hints name ``envcore ...``."""

    def invoke(self, ctx: click.Context) -> Any:
        from metaflow.exception import MetaflowException
        from metaflow_extensions.envcore.plugins.conda import messages

        try:
            return super().invoke(ctx)
        except EnvcoreError as exc:
            exc.args = (messages.commands(exc.message), *exc.args[1:])
            raise
        except MetaflowException as exc:
            exc.message = messages.commands(str(exc.message)).replace(messages.STAR, "*")
            raise


def _types(kind: str) -> list[str]:
    """The names of Metaflow's datastores or metadata providers (the original's choices)."""
    from metaflow import plugins

    return [str(p.TYPE) for p in getattr(plugins, kind)]


# The original's group options: --quiet/--no-quiet, --metadata, --datastore, --environment, --conda-root.
@click.group(cls=_Group, name="environment", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Tracebacks and details (or METAFLOW_DEBUG_CONDA=1).")
@click.option(
    "--quiet/--no-quiet", "-q", default=False, show_default=True, help="Print only results and errors."
)
@click.option(
    "--metadata",
    type=click.Choice(_types("METADATA_PROVIDERS")),
    help="Metadata provider that step:Flow/Run/Step references are read from (default: Metaflow's "
    "DEFAULT_METADATA).",
)
@click.option(
    "--datastore",
    type=click.Choice(_types("DATASTORES")),
    help="Datastore whose store to use (default: Metaflow's DEFAULT_DATASTORE).",
)
@click.option(
    "--environment",
    type=click.Choice(["conda"]),
    default="conda",
    show_default=True,
    help="Type of environment to manage (conda is the only one).",
)
@click.option("--conda-root", help="Root of the store (default: METAFLOW_CONDA_<DATASTORE>ROOT).")
@click.option(
    "--quiet-file-output",
    type=click.Path(dir_okay=False, path_type=Path),
    hidden=True,  # as the original's
    help="Run quiet and also write the output to PATH (what scripts read, without Metaflow's banner).",
)
@click.pass_context
def group(
    ctx: click.Context,
    verbose: bool,
    quiet: bool,
    metadata: str | None,
    datastore: str | None,
    environment: str,
    conda_root: str | None,
    quiet_file_output: Path | None,
) -> None:
    """Execution environment related commands: the envcore commands, with Metaflow's configuration."""
    from metaflow_extensions.envcore.plugins.conda import pathspecs
    from metaflow_extensions.envcore.plugins.conda.session import Session

    if metadata:
        from metaflow import metadata as use_metadata

        use_metadata(metadata)
    overrides = {}
    if conda_root:
        kind = datastore or os.environ.get("METAFLOW_DEFAULT_DATASTORE") or _default_datastore()
        overrides[f"METAFLOW_CONDA_{kind.upper()}ROOT"] = conda_root
    if quiet_file_output is not None:
        quiet = True
        try:
            copy = quiet_file_output.open("w")
        except OSError as exc:  # the user's path, not one of envcore's folders
            raise EnvcoreError(
                f"Cannot write --quiet-file-output {quiet_file_output}: {exc.strerror}. Check that its folder "
                "exists and can be written."
            ) from None
        sys.stdout = _Tee(sys.stdout, copy)
    session = Session(datastore, pathspec_lookup=pathspecs.lookup, overrides=overrides, quiet=quiet)
    ctx.obj = MetaflowApp(session, verbose=verbose, quiet=quiet)


class _Tee:
    """stdout, also written to a file, flushed at each write (the command ends through ``os._exit``)."""

    def __init__(self, stream: Any, copy: Any) -> None:
        self._stream, self._copy = stream, copy

    def write(self, text: str) -> int:
        self._copy.write(text)
        self._copy.flush()
        return int(self._stream.write(text))

    def __getattr__(self, name: str) -> Any:  # flush, isatty, encoding...: the stream's
        return getattr(self._stream, name)


def _default_datastore() -> str:
    from metaflow.metaflow_config import DEFAULT_DATASTORE

    return str(DEFAULT_DATASTORE)


for _command in (resolve, create, get, show, alias):
    group.add_command(_command)


def run(argv: Sequence[str]) -> int:
    """Run ``metaflow environment ARGV`` and return the exit code; errors are one paragraph, as envcore's are
    (a MetaflowException from a lookup included)."""
    from metaflow.exception import MetaflowException

    return cli_run(argv, command=group, prog_name=PROG, user_errors=(MetaflowException,))


def main(argv: Sequence[str]) -> None:
    """Entry point of the ``metaflow environment`` command: ends through ``os._exit`` after flushing,
    because resolving and hydrating use py-rattler, which can crash while the interpreter finalises."""
    code = run(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
