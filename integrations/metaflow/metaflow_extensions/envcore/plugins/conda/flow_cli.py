"""``python flow.py --environment=conda environment resolve | show``: the environments of a flow's steps.

``resolve [--force] [--alias NAME]... [--arch ARCH]... [--json] [STEPS]...`` resolves what is not resolved
yet (everything with ``--force``), caches and records it, and prints each environment once with the steps
that use it. ``show [--json] [STEPS]...`` resolves nothing: it says what each step would run in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from metaflow._vendor import click
from metaflow.exception import MetaflowException

if TYPE_CHECKING:
    from metaflow_extensions.envcore.plugins.conda.environment import CondaEnvironment, StepEnvironment

    from envcore.environments import Environments
    from envcore.types import Requirement, ResolvedEnvironment


def describe(
    envs: Environments, env: ResolvedEnvironment, *, as_dict: bool = False, quiet: bool = False
) -> Any:
    """The original's layout (type, ids, aliases, archs, resolved on/by, local copies, packages); ``quiet``: its
    one-line form for scripts."""
    from envcore import show

    is_default = envs.record.default_full_id(env.arch, env.req_id) == env.full_id
    aliases = envs.aliases_of(env.req_id, env.full_id)
    local = [str(p) for p in envs.local_copies(env)]
    if as_dict:
        return show.as_json(env, is_default=is_default, aliases=aliases, local_instances=local)
    if quiet:
        return show.quiet(env, aliases=aliases, local_instances=local)
    return show.pretty(env, is_default=is_default, aliases=aliases, local_instances=local)


def _environment(obj: Any) -> CondaEnvironment:
    from metaflow_extensions.envcore.plugins.conda.environment import CondaEnvironment

    if not isinstance(obj.environment, CondaEnvironment):
        raise MetaflowException("'environment' requires a Conda environment: add --environment=conda.")
    return obj.environment


def _check_steps(obj: Any, steps: tuple[str, ...]) -> list[str] | None:
    if not steps:
        return None
    names = sorted((s.name for s in obj.flow), key=lambda name: _order(obj, name))  # start first
    unknown = [s for s in steps if s not in names]
    if unknown:
        raise MetaflowException(f"Unknown step(s) {', '.join(unknown)}; the flow has {', '.join(names)}.")
    return list(steps)


def _order(obj: Any, step_name: str) -> int:
    """Steps in the graph's order (start first)."""
    nodes = list(getattr(obj.graph, "sorted_nodes", []))
    return nodes.index(step_name) if step_name in nodes else len(nodes)


@click.group()
def cli() -> None:
    pass


class _Group(click.Group):
    """envcore's errors (a malformed alias, an unreachable store...) as Metaflow's, without a traceback, and its
    warnings as ``Warning:`` lines, as a run says them."""

    def invoke(self, ctx: Any) -> Any:
        from metaflow_extensions.envcore.plugins.conda import messages

        from envcore.errors import EnvcoreError

        try:
            with messages.warnings_as_lines(lambda line: ctx.obj.echo(f"    {line}")):
                return super().invoke(ctx)
        except EnvcoreError as exc:
            raise MetaflowException(messages.for_printer(exc.message)) from None


@cli.group(cls=_Group, help="Environments of the flow's steps (with --environment=conda).")
@click.pass_obj
def environment(obj: Any) -> None:
    env = _environment(obj)
    env._quiet = bool(getattr(obj, "is_quiet", False))
    # envcore's progress on stderr, as the original's for these commands (stdout has the results, JSON too)
    env._logger = lambda message: obj.echo(message, no_bold=True)


def _bold(obj: Any, line: str) -> None:
    """A line whose ``*name*`` parts Metaflow's echo renders bold (as the original prints them), on stdout."""
    obj.echo_always(line, err=False)


@environment.command(help="Resolve the environments of the steps (all, or STEPS) and cache them.")
@click.option("--force/--no-force", default=False, help="Resolve again even if already resolved.")
@click.option(
    "--dry-run/--no-dry-run",
    default=False,
    help="Only resolve: nothing is cached, recorded or aliased (--alias is checked, not written).",
)
@click.option(
    "--alias", "aliases", multiple=True, help="Alias (NAME[:TAG]) for the one environment resolved."
)
@click.option("--arch", "archs", multiple=True, help="Resolve for this architecture instead (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print {step: {arch: {req_id, full_id, ...}}} as JSON.")
@click.option(
    "--output", type=click.Path(dir_okay=False), metavar="PATH", help="Also write the --json form to PATH."
)
@click.argument("steps", nargs=-1)
@click.pass_obj
def resolve(
    obj: Any,
    force: bool,
    dry_run: bool,
    aliases: tuple[str, ...],
    archs: tuple[str, ...],
    as_json: bool,
    output: str | None,
    steps: tuple[str, ...],
) -> None:
    from metaflow_extensions.envcore.plugins.conda.environment import is_quiet

    from envcore import description, naming

    env = _environment(obj)
    wanted = [naming.parse_alias(a) for a in aliases]  # malformed aliases fail before any resolution

    def one_environment(planned: dict[str, list[StepEnvironment]]) -> None:
        """With --alias, the steps must share one environment: said before resolving (as the original)."""
        from envcore.resolve import req_id

        groups: dict[object, list[str]] = {}
        for name, infos in sorted(planned.items(), key=lambda item: _order(obj, item[0])):
            for info in infos:
                if info.request is not None:  # its requirements (and the base it extends), whatever the arch
                    base = info.request.base
                    key: object = (req_id(env.session().registry, info.request), base and base.full_id)
                elif info.env is not None:  # a named environment used as it is
                    key = (info.env.req_id, info.env.full_id)
                else:
                    continue
                groups.setdefault(key, []).append(f"{name} ({info.arch})" if len(archs) > 1 else name)
        _refuse_several([list(dict.fromkeys(names)) for names in groups.values()])

    planned = env.resolve_steps(
        obj.echo,
        _check_steps(obj, steps),
        force=force,
        archs=list(archs) or None,
        check=one_environment if wanted else None,
        dry_run=dry_run,
    )
    by_env: dict[tuple[str, str, str], tuple[ResolvedEnvironment, list[str], bool]] = {}
    for name, infos in sorted(planned.items(), key=lambda item: _order(obj, item[0])):
        for info in infos:
            if info.env is not None:
                key = (info.env.arch, info.env.req_id, info.env.full_id)
                found = by_env.setdefault(key, (info.env, [], info.newly_resolved))
                found[1].append(name)
    envs = env.session().environments
    refs = {(k[1], k[2]) for k in by_env}
    if wanted and len(refs) != 1:  # (several archs resolved apart)
        _refuse_several([[f"{n} ({r.arch})" for n in names] for r, names, _ in by_env.values()])
    if not force and not any(new for _, _, new in by_env.values()):
        obj.echo(  # the original's words (aliasing: those of `metaflow environment resolve --alias`)
            "    No environments to resolve, aliasing only. Use --force to force re-resolution"
            if wanted and not dry_run
            else "    No environments to resolve, use --force to force re-resolution"
        )
    if wanted and not dry_run:
        for alias, changed in envs.write_aliases(wanted, next(iter(refs))):
            obj.echo(f"    {'Aliased' if changed else 'Already aliased'} as {alias.display}")
    if as_json or output is not None:
        payload: dict[str, dict[str, Any]] = {}
        for resolved, names, new in by_env.values():
            for name in names:
                payload.setdefault(name, {})[resolved.arch] = {
                    "req_id": resolved.req_id,
                    "full_id": resolved.full_id,
                    "newly_resolved": new,
                    "env": description.to_dict(resolved),
                }
        _write_output(output, payload)
        if as_json:
            click.echo(json.dumps(payload, indent=1))
            _dry_run_said(obj, dry_run)
            return
    several_archs = len({resolved.arch for resolved, _, _ in by_env.values()}) > 1
    for resolved, names, _ in by_env.values():
        if is_quiet():  # the original's form for scripts: the steps, then the environment's one line
            click.echo(",".join(names))
            click.echo(describe(envs, resolved, quiet=True))
            continue
        arch = f" ({resolved.arch})" if several_archs else ""
        _bold(obj, f"### Environment for step{'s' * (len(names) > 1)} *{', '.join(names)}*{arch} ###")
        click.echo(describe(envs, resolved))
    _dry_run_said(obj, dry_run)


def _dry_run_said(obj: Any, dry_run: bool) -> None:
    if dry_run:
        obj.echo("    Dry-run -- not caching or aliasing")  # the original's words


def _refuse_several(steps_by_env: list[list[str]]) -> None:
    """--alias names one environment: refused unless the steps have exactly one (the original's words)."""
    if not steps_by_env:
        raise MetaflowException(
            "Cannot specify aliases: the steps have no environment to resolve/cache (they run without one, "
            "disabled, or fetch a named environment at execution)."
        )
    if len(steps_by_env) > 1:
        raise MetaflowException(
            f"Cannot specify aliases if more than one environment to resolve/cache -- found {len(steps_by_env)} "
            "environments: "
            + "; ".join(f"one for step(s) {', '.join(names)}" for names in steps_by_env)
            + ". Give the steps to alias."
        )


def _states(info: StepEnvironment, envs: Environments, local_only: bool = False) -> list[str]:
    from envcore.cache import env_key
    from envcore.errors import StorageError

    if info.disabled:
        return ["disabled"]
    if info.fetch_at_exec:
        return [f"fetch-at-exec of {info.merged.named}"]
    states = [f"derived from {info.merged.named}"] if info.merged.named else []
    if info.env is None:
        return [*states, "unresolved"]
    states.append("resolved")
    if not local_only:
        try:
            if envs.store.stat(env_key(envs.config, info.env)) is not None:
                states.append("cached")
        except StorageError:
            pass  # the store cannot be reached: not said either way
    if envs.local_copies(info.env):
        states.append("locally present")
    return states


@environment.command(help="Show what each step (all, or STEPS) runs in, without resolving anything.")
@click.option("--json", "as_json", is_flag=True, help="Print {step: {...}} as JSON.")
@click.option(
    "--output", type=click.Path(dir_okay=False), metavar="PATH", help="Also write the --json form to PATH."
)
@click.option(
    "--local-only/--no-local-only",
    default=False,
    help="Look for resolved environments on this machine only, not in the store.",
)
@click.argument("steps", nargs=-1)
@click.pass_obj
def show(obj: Any, as_json: bool, output: str | None, local_only: bool, steps: tuple[str, ...]) -> None:
    from metaflow.metaflow_environment import InvalidEnvironmentException
    from metaflow_extensions.envcore.plugins.conda import messages
    from metaflow_extensions.envcore.plugins.conda.environment import is_quiet, step_arch

    from envcore.config import redact_text
    from envcore.errors import EnvcoreError
    from envcore.resolve import req_id

    env = _environment(obj)
    wanted = _check_steps(obj, steps)
    envs = env.session().environments
    payload: dict[str, Any] = {}
    as_json = as_json or is_quiet()  # quiet, as the original: nothing printed, only --output written
    divider = "\n" + "=" * (len("Step ") + max((len(s.name) for s in obj.flow), default=0))
    headed: list[str] = []

    def head(name: str, arch: str) -> None:
        """A step's header, after a divider from the step before (as the original)."""
        if headed:
            click.echo(divider)
        headed.append(name)
        _bold(obj, f"Step *{name}* ({arch})")

    for step in sorted(obj.flow, key=lambda s: _order(obj, s.name)):
        if wanted is not None and step.name not in wanted:
            continue
        try:
            info = env.plan_step(step)
            if info.env is None and info.request is not None:
                info.env = (
                    envs.record.environment(info.request.arch, req_id(envs.registry, info.request))
                    if local_only
                    else envs.known(info.request)
                )
        except (InvalidEnvironmentException, EnvcoreError) as exc:
            # as the original: the step's error is its state, and the other steps are still shown
            error = str(getattr(exc, "message", exc))
            if as_json or output is not None:
                payload[step.name] = {"is_disabled": False, "error": error.replace(messages.STAR, "*")}
            else:
                head(step.name, step_arch(step, env._remote_commands()))
                obj.echo_always(f"\t{messages.for_printer(error)}", err=False)
                obj.echo_always("", err=False)
            continue
        states = _states(info, envs, local_only)
        if as_json or output is not None:
            request = info.request
            payload[step.name] = {
                "is_disabled": info.disabled,
                "error": None,
                "is_fetch_at_exec": info.fetch_at_exec,
                "from_env_name": info.merged.named,
                "arch": info.arch,
                "states": states,
                "requested": list(info.request.requirements and [r.tstr for r in info.request.requirements])
                if info.request
                else [],
                # the original's fields: what was asked for, by category
                "requested_hash": req_id(envs.registry, request) if request else None,
                "requested_packages": _by_category(request.requirements) if request else {},
                "requested_sources": [
                    redact_text(f"{category}::{source}")
                    for category, sources in (request.sources.items() if request else ())
                    for source in sources
                ],
                "env_id": info.env_id,
                "env": describe(envs, info.env, as_dict=True) if info.env else None,
            }
            if as_json:
                continue
        head(step.name, info.arch)
        click.echo(f"\tEnvironment is {', '.join(states)}")
        if info.env is not None:
            click.echo(describe(envs, info.env))
        elif info.request is not None:
            click.echo("\tRequested packages " + ", ".join(r.tstr for r in info.request.requirements))
            click.echo("")
    _write_output(output, payload)
    if as_json and not is_quiet():
        click.echo(json.dumps(payload, indent=1))


def _write_output(output: str | bytes | None, payload: dict[str, Any]) -> None:
    """The --json form written to ``output`` (the original's ``--output PATH``), whole or not at all."""
    from envcore.record import write_atomic

    if output is None:
        return
    path = os.path.abspath(os.fsdecode(output))  # (Metaflow's vendored click may give bytes)
    try:
        write_atomic(path, json.dumps(payload, indent=1).encode(), private=False)
    except OSError as exc:  # a folder that does not exist or cannot be written, a full disk
        raise MetaflowException(
            f"Cannot write --output {path}: {exc.strerror}. Check that its folder exists and can be written."
        ) from None


def _by_category(requirements: Sequence[Requirement]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for requirement in requirements:
        found.setdefault(requirement.category, {})[requirement.name] = requirement.spec
    return found


@environment.command(name="bootstrap-commands", hidden=True)
@click.argument("step_name")
@click.pass_obj
def bootstrap_commands(obj: Any, step_name: str) -> None:
    """The shell commands a remote node runs before STEP_NAME, as JSON (for debugging and tests)."""
    env = _environment(obj)
    env.resolve_steps(obj.echo, _check_steps(obj, (step_name,)))
    click.echo(json.dumps(env.bootstrap_commands(step_name, env.session().datastore_type), indent=1))
