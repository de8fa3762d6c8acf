"""``envcore resolve | create | get | show | alias``: the environment commands."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from envcore import uptodate
from envcore.cli import App
from envcore.errors import AliasError, EnvironmentNotFound, InvalidAlias, UsageError, echoed
from envcore.platforms import local_arch, runs_here
from envcore.types import SYS

if TYPE_CHECKING:
    from envcore.environments import Environments
    from envcore.naming import Alias
    from envcore.specs import Spec
    from envcore.types import ResolvedEnvironment


def _once(ctx: click.Context, param: click.Parameter, values: tuple[object, ...]) -> object:
    """The value of a single-valued option (declared repeatable so that a repeat is seen): given twice, it is
    refused, where click kept the last and dropped the others silently (``--using a --using b``)."""
    if len(values) > 1:
        raise UsageError(
            f"{param.opts[-1]} is given {len(values)} times ({', '.join(echoed(str(v)) for v in values)}), and it "
            "takes one value. Give it once."
        )
    return values[0] if values else None


# One parameter type for every path option (click's are stateless): each click.Path looks its name up in
# gettext's catalogues, ~65 us (LANG=C.UTF-8), 6 times when the module was imported.
_PATH = click.Path(path_type=Path)


def _spec_from_options(
    requirements: tuple[Path, ...],
    env_file: Path | None,
    pyproject: Path | None,
    conda: tuple[str, ...],
    pypi: tuple[str, ...],
    channels: tuple[str, ...],
    indices: tuple[str, ...],
    *,
    allow_empty: bool = False,
    extras: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
    sys_pkgs: tuple[str, ...] = (),
    constraints: tuple[Path, ...] = (),
) -> Spec:
    from envcore import specs

    files = [("requirements", p) for p in requirements]
    files += [(kind, p) for kind, p in (("environment", env_file), ("pyproject", pyproject)) if p is not None]
    locks = [p for p in (*requirements, pyproject) if p is not None and pylock_name(p)]
    if locks:
        raise UsageError(
            f"{locks[0]} is a PEP 751 lock file (pylock.toml), not a list of requirements: give it with "
            f"--pylock {locks[0]} to install exactly what it locks."
        )
    if len({kind for kind, _ in files}) > 1:
        # The original only refused all three together and silently merged two (reference §1(l)2).
        raise UsageError("Can only specify one of -r, -f or -p; resolve each file separately.")
    if (extras or groups) and pyproject is None:
        raise UsageError(
            "--extra and --group choose optional dependencies and dependency groups of a pyproject.toml: give "
            "the project with -p pyproject.toml."
        )
    # the option says the format, not the file's name; several -r are read together, as pip reads them
    parts = [specs.load(path, kind, extras=extras, groups=groups) for kind, path in files]
    if constraints and not (parts or pypi):
        raise UsageError(
            "-c/--constraint limits the versions of PyPI packages that something requires, and nothing is "
            "required here: give the requirements too (-r requirements.txt, --pypi NAME)."
        )
    if conda or pypi or channels or indices or sys_pkgs or constraints:
        # --conda as an environment.yml dependency, --pypi as a requirements.txt line; repeated ones AND-ed
        parts.append(
            specs.from_command_line(
                conda=conda,
                pypi=pypi,
                channels=channels,
                indices=indices,
                sys_pkgs=sys_pkgs,
                constraints=constraints,
            )
        )
    if not parts and allow_empty:
        return specs.Spec(origin="the command line")
    if not parts:
        raise UsageError(
            "Nothing to resolve: give a file (-r requirements.txt, -f environment.yml, -p pyproject.toml) or "
            "packages (--conda NAME[==VERSION], --pypi NAME[==VERSION])."
        )
    return specs.merge(*parts) if len(parts) > 1 else parts[0]


def pylock_name(path: Path) -> bool:
    from envcore.pylock import FILE_NAME

    return bool(re.match(FILE_NAME, path.name))


def _spec_from_pylock(app: App, path: Path, channels: tuple[str, ...], others: Mapping[str, object]) -> Spec:
    """The specification of ``--pylock FILE``: the complete PyPI side of a PyPI-only environment."""
    from envcore import pylock

    given = [option for option, value in others.items() if value]
    if given:
        raise UsageError(
            f"--pylock cannot be combined with {', '.join(given)}: the lock file is the whole PyPI side of a "
            "PyPI-only environment, installed as locked. Lock the other packages into the file instead."
        )
    from envcore.specs import check_channel

    checked = tuple(check_channel(c.strip(), f"in --channel {c!r}") for c in channels)
    lock = pylock.load(path)
    pylock.stash(app.config, lock)
    return pylock.to_spec(lock, checked)


def _spec_from_explicit(
    app: App, path: Path, archs: Sequence[str], pypi_side: Spec | None, others: Mapping[str, object]
) -> tuple[Spec, tuple[str, ...]]:
    """The specification of ``--explicit FILE`` (the whole conda side, python included, locked), with the PyPI
    requirements of ``pypi_side`` (-r, --pypi, --index) resolved against it, and the architecture it is for
    (the file's own)."""
    from envcore import explicit, specs
    from envcore import resolve as resolving
    from envcore.types import CONDA, PYPI

    given = [option for option, value in others.items() if value]
    if pypi_side is not None:  # a requirements.txt can name conda packages and channels (--conda-pkg, ...)
        conda_side = [r.name for r in pypi_side.requirements if r.category != PYPI]
        conda_side += list(pypi_side.sources.get(CONDA, ()))
        given += [f"{', '.join(conda_side)} of {pypi_side.origin}"] if conda_side else []
    if given:
        raise UsageError(
            f"--explicit cannot be combined with {', '.join(given)}: the explicit file is the whole conda side, "
            "python included, installed as listed, and another conda package would need a solve (as would other "
            "channels, python or a base). Export the environment again with the other packages in it, or resolve "
            "from an environment.yml (-f) instead; PyPI packages can be added with -r requirements.txt or --pypi."
        )
    found = explicit.load(path)
    targets = explicit.targets(found, [resolving.check_arch(a) for a in archs], resolving.local_arch())
    spec = explicit.to_spec(found, explicit.stash(app.config, found))
    return (specs.merge(spec, pypi_side) if pypi_side else spec), targets


def _spec_from_environment(envs: Environments, ref: str, archs: Sequence[str]) -> Spec:
    """The requirements, python and sources ``ref`` was resolved from (``--from``), found for this machine's
    architecture, one of ``archs``, or any other."""
    from envcore import resolve as resolving
    from envcore import specs

    env = None
    for arch in dict.fromkeys(
        (resolving.local_arch(), *archs, *resolving.KNOWN_ARCHS)
    ):  # (the original: all)
        try:
            env = envs.find(ref, arch)
            break
        except EnvironmentNotFound:
            continue  # not resolved for this architecture: try the next
    if env is None:
        env = envs.find(ref, resolving.local_arch())  # fails with the message of an unknown environment
    python = next((t.partition("==")[2] for t in env.deps if t.startswith("conda::python==")), None)
    sources: dict[str, tuple[str, ...]] = {}
    warnings: list[str] = []
    for tstr in env.sources:
        category, _, source = tstr.partition("::")
        missing = resolving.missing_local_path(source)
        if missing:  # a folder of the machine that resolved it: its packages come from the other sources
            warnings.append(
                f"The {category} source {source} of {ref} is a folder of the machine that resolved it, and "
                f"{missing} does not exist here: resolving without it."
            )
            continue
        sources[category] = (*sources.get(category, ()), source)
    # The virtual packages its arch gets anyway, at the version it gets them here (__glibc 2.27 for
    # linux-aarch64), are taken anew for each target; the others were asked for (__cuda=12.2 of an
    # environment.yml, --sys-pkg __glibc==2.28, or the older glibc of the machine that resolved it for itself),
    # and are kept: resolved again, the environment loads where it loaded.
    defaults = {r.name: r.spec for r in resolving.sys_packages(envs.config, env.arch, ())}
    asked = [r for r in resolving.virtual_packages_of(env) if defaults.get(r.name) != r.spec]
    return specs.Spec(
        requirements=(*resolving.requirements_of(env), *asked),
        sources=sources,
        python=python or None,
        origin=f"the requirements of {ref}",
        warnings=tuple(warnings),
    )


def _print_warnings(app: App, spec: Spec) -> None:
    """The warnings of the specification (ignored lines and sections), on stderr unless --quiet; never with
    a URL's user:password@."""
    from envcore.config import redact_text

    for warning in dict.fromkeys(spec.warnings):
        app.echo(f"envcore: warning: {redact_text(warning)}", err=True)


def _warn_of_undeclared_extras(app: App, fresh: list[ResolvedEnvironment]) -> None:
    """Extras of the request that the resolved wheels do not declare (resolvers leave them out): said once."""
    if not any(dep.startswith("pypi::") and "[" in dep for env in fresh for dep in env.deps):
        return  # nothing asked for an extra: no import
    from envcore.pypi import undeclared_extras

    for warning in dict.fromkeys(w for env in fresh for w in undeclared_extras(env, app.config.cache_dir())):
        app.echo(f"envcore: warning: {warning}", err=True)


def _environments(app: App) -> Environments:
    from envcore.environments import Environments
    from envcore.progress import for_terminal

    return Environments(
        lambda: app.registry,  # built when first needed
        config=app.config,
        progress=for_terminal(quiet=app.quiet),
        pathspec_lookup=app.pathspec_lookup,
    )


def describe(app: App, envs: Environments, env: ResolvedEnvironment, *, as_json: bool = False) -> str:
    """``env`` as ``show`` prints it: the original's layout, its one-line form with --quiet, or JSON."""
    from envcore import show

    default = envs.record.default_full_id(env.arch, env.req_id) == env.full_id
    aliases = envs.aliases_of(env.req_id, env.full_id)
    prefixes = [str(p) for p in envs.local_copies(env)]
    if as_json:
        return json.dumps(
            show.as_json(env, is_default=default, aliases=aliases, local_instances=prefixes), indent=1
        )
    if app.quiet:
        return show.quiet(env, aliases=aliases, local_instances=prefixes)
    return show.pretty(env, is_default=default, aliases=aliases, local_instances=prefixes)


@click.command()
@click.option(
    "-r",
    "--requirement",
    "requirements",
    type=_PATH,
    multiple=True,
    help="requirements.txt (repeatable: read together, as pip reads them)",
)
@click.option(
    "-c",
    "--constraint",
    "constraints",
    type=_PATH,
    multiple=True,
    help="A constraints file, as pip's -c: versions for PyPI packages, applied only where something requires "
    "them (repeatable; the uv and pip resolvers).",
)
@click.option("-f", "--file", "env_file", type=_PATH, multiple=True, help="environment.yml")
@click.option("-p", "--pyproject", type=_PATH, multiple=True, help="pyproject.toml")
@click.option(
    "--extra",
    "extras",
    multiple=True,
    metavar="NAME",
    help="With -p: also the optional dependencies NAME ([project.optional-dependencies]; repeatable).",
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="NAME",
    help="With -p: also the dependency group NAME ([dependency-groups] or poetry's; repeatable).",
)
@click.option(
    "--pylock",
    "pylock_file",
    type=_PATH,
    multiple=True,
    callback=_once,
    metavar="FILE",
    help="pylock.toml (PEP 751): install exactly what it locks (a PyPI-only environment; no resolution).",
)
@click.option(
    "--explicit",
    "explicit_file",
    type=_PATH,
    multiple=True,
    callback=_once,
    metavar="FILE",
    help="A conda explicit file (@EXPLICIT, as conda list --explicit and show --format explicit write it): "
    "install exactly its packages, checked by their hashes (no conda solve); PyPI packages from -r / --pypi "
    "(as pip freeze lists them) are resolved against its python.",
)
@click.option("--conda", multiple=True, metavar="NAME[==VER]", help="A conda package (repeatable).")
@click.option("--pypi", multiple=True, metavar="NAME[==VER]", help="A PyPI package (repeatable).")
@click.option(
    "--sys-pkg",
    "sys_pkgs",
    multiple=True,
    metavar="NAME==VER",
    help="A virtual package to resolve against: __glibc==2.28, __cuda==12.4 (repeatable).",
)
@click.option("--channel", "channels", multiple=True, help="An extra conda channel (repeatable).")
@click.option("--index", "indices", multiple=True, help="An extra PyPI index (repeatable).")
@click.option(
    "--python",
    multiple=True,
    callback=_once,
    help="Python version constraint (default: this interpreter's X.Y.*).",
)
@click.option(
    "--arch", "archs", multiple=True, help="Target architecture (repeatable; default: this machine)."
)
@click.option("--alias", "aliases", multiple=True, metavar="NAME[:TAG]", help="Alias to give the result.")
@click.option(
    "--using",
    multiple=True,
    callback=_once,
    metavar="ENV",
    help="Extend ENV (alias or REQ_ID:FULL_ID), keeping its pins.",
)
@click.option(
    "--using-pathspec",
    multiple=True,
    callback=_once,
    metavar="FLOW/RUN/STEP",
    help="Extend the environment of a step's run.",
)
@click.option(
    "--from",
    "from_env",
    multiple=True,
    callback=_once,
    metavar="ENV",
    help="Resolve the requirements of ENV again (e.g. for another --arch), with the virtual packages it asked "
    "for (a --sys-pkg replaces one); its pins are not kept.",
)
@click.option(
    "--from-pathspec",
    multiple=True,
    callback=_once,
    metavar="FLOW/RUN/STEP",
    help="Resolve the requirements of a step's environment again.",
)
@click.option(
    "--set-default/--no-set-default",
    default=True,
    show_default=True,
    help="Record a new resolution as the default for its requirements (reused by later resolves).",
)
@click.option("--force/--no-force", default=False, help="Resolve again even if a resolution is known.")
@click.option("--dry-run/--no-dry-run", default=False, help="Resolve and print; store nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the resolved environments as JSON.")
@click.pass_obj
def resolve(
    app: App,
    requirements: tuple[Path, ...],
    constraints: tuple[Path, ...],
    env_file: tuple[Path, ...],
    pyproject: tuple[Path, ...],
    extras: tuple[str, ...],
    groups: tuple[str, ...],
    pylock_file: Path | None,
    explicit_file: Path | None,
    conda: tuple[str, ...],
    pypi: tuple[str, ...],
    sys_pkgs: tuple[str, ...],
    channels: tuple[str, ...],
    indices: tuple[str, ...],
    python: str | None,
    archs: tuple[str, ...],
    aliases: tuple[str, ...],
    using: str | None,
    using_pathspec: str | None,
    from_env: str | None,
    from_pathspec: str | None,
    set_default: bool,
    force: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Resolve requirements into a locked environment for each --arch, cache it in the store (packages, then
    the description) and record it locally as the default for its requirements.

    Without --force, a requirement set resolved before is reused without calling the resolver. Several --arch
    are co-resolved and share one full id. Each --alias (NAME or NAME:TAG) is checked before resolving and
    written after caching; tags other than latest, candidate and stable are immutable.
    """
    from envcore import naming
    from envcore import resolve as resolving
    from envcore.progress import done

    wanted = [naming.parse_alias(a) for a in dict.fromkeys(aliases)]
    for option, given_files, name in (
        ("-f", env_file, "environment.yml"),
        ("-p", pyproject, "pyproject.toml"),
    ):
        if len(given_files) > 1:  # (a single-valued option kept the last one, dropping the others silently)
            raise UsageError(
                f"{option} is given {len(given_files)} times ({', '.join(map(str, given_files))}): an environment "
                f"is resolved from one {name}. Give one, or resolve each separately."
            )
    one_env_file, one_pyproject = (env_file or (None,))[0], (pyproject or (None,))[0]
    if using and using_pathspec:
        raise UsageError("Cannot specify both --using-pathspec and --using; give one base environment.")
    base_ref = using or (f"step:{using_pathspec}" if using_pathspec else None)
    if base_ref:
        naming.parse_alias(base_ref)
    if from_env and from_pathspec:
        raise UsageError("Cannot specify both --from-pathspec and --from; give one environment.")
    from_ref = from_env or (f"step:{from_pathspec}" if from_pathspec else None)
    targets = tuple(dict.fromkeys(archs)) or (resolving.local_arch(),)
    envs = _environments(app)
    if from_ref:
        given: dict[str, object] = {
            "-r": requirements,
            "-c": constraints,
            "-f": env_file,
            "-p": pyproject,
            "--extra": extras,
            "--group": groups,
            "--pylock": pylock_file,
            "--explicit": explicit_file,
        }
        given |= {"--using": base_ref, "--python": python}
        if any(given.values()):
            raise UsageError(
                f"Cannot specify --from with {', '.join(k for k, v in given.items() if v)}: --from takes the "
                "requirements (and python) of that environment; add packages with --conda and --pypi."
            )
        naming.parse_alias(from_ref)
        spec = _spec_from_environment(envs, from_ref, targets)
        if conda or pypi or channels or indices or sys_pkgs:
            from envcore import specs

            extra = _spec_from_options((), None, None, conda, pypi, channels, indices, sys_pkgs=sys_pkgs)
            # a --sys-pkg replaces the virtual package ENV was asked for (resolve it for another glibc)
            given_sys = {r.name for r in extra.requirements if r.category == SYS}
            kept = tuple(r for r in spec.requirements if not (r.category == SYS and r.name in given_sys))
            spec = specs.merge(replace(spec, requirements=kept), extra)
    elif explicit_file is not None:
        others: dict[str, object] = {
            "--conda": conda,
            "-f": env_file,
            "-p": pyproject,
            "--pylock": pylock_file,
        }
        others |= {"--extra": extras, "--group": groups, "--channel": channels, "--sys-pkg": sys_pkgs}
        others |= {"--using": base_ref, "--python": python, "--index": not (requirements or pypi) and indices}
        others |= {"-c": not (requirements or pypi) and constraints}
        pypi_side = (  # the PyPI side, resolved against the file's conda side
            _spec_from_options(requirements, None, None, (), pypi, (), indices, constraints=constraints)
            if (requirements or pypi) and not any(others.values())
            else None
        )
        spec, targets = _spec_from_explicit(app, explicit_file, archs, pypi_side, others)
    elif pylock_file is not None:
        others = {"-r": requirements, "-c": constraints, "-f": env_file, "-p": pyproject, "--conda": conda}
        others |= {"--extra": extras, "--group": groups}
        others |= {"--pypi": pypi, "--index": indices, "--using": base_ref, "--sys-pkg": sys_pkgs}
        spec = _spec_from_pylock(app, pylock_file, channels, others)
    else:
        spec = _spec_from_options(
            requirements,
            one_env_file,
            one_pyproject,
            conda,
            pypi,
            channels,
            indices,
            allow_empty=bool(base_ref),
            extras=extras,
            groups=groups,
            sys_pkgs=sys_pkgs,
            constraints=constraints,
        )
    if python is not None and not python.strip():
        raise UsageError(
            "--python is empty. Give a version such as 3.11 (any 3.11.x), or leave the option out."
        )
    _print_warnings(app, spec)
    bases = {a: envs.find(base_ref, resolving.check_arch(a)) if base_ref else None for a in targets}
    requests = [
        resolving.build_request(
            spec,
            app.config,
            resolving.check_arch(a),
            python=python,
            base=bases[a],
            coresolved=targets if len(targets) > 1 else (),
        )
        for a in targets
    ]
    envs.store  # noqa: B018 (a store that cannot be made, e.g. an unknown name, is named before resolving)
    _check_aliases_before_resolving(envs, wanted, resolving.req_id(app.registry, requests[0]))
    started = time.monotonic()
    results = envs.resolve(requests, force=force)
    fresh = [env for env, new in results if new]
    if fresh:  # the original's words (whole seconds there: hundredths here, as a resolve takes less)
        count = f"{len(fresh)} environment{'s' if len(fresh) > 1 else ''}"
        app.echo(f"    {done(f'Resolving {count}', started)}", err=True)
    elif wanted:
        app.echo(
            "    No environments to resolve, aliasing only. Use --force to force re-resolution", err=True
        )
    else:
        app.echo("    No environments to resolve, use --force to force re-resolution", err=True)
    if dry_run:
        app.echo("    Dry-run -- not caching or aliasing", err=True)
    else:
        first = results[0][0]
        envs.refuse_bound_aliases(
            wanted, (first.req_id, first.full_id), then="The new resolution was not stored."
        )
        results = [
            (envs.save(env, set_default=set_default) if new else envs.ensure_stored(env), new)
            for env, new in results
        ]
        for alias, changed in envs.write_aliases(wanted, (first.req_id, first.full_id)):
            app.echo(f"    {'Aliased' if changed else 'Already aliased'} as {alias.display}", err=True)
        _warn_of_undeclared_extras(app, [env for env, new in results if new])
    if as_json:
        from envcore import description  # (only --json needs it)

        payload = {
            env.arch: {
                "req_id": env.req_id,
                "full_id": env.full_id,
                "newly_resolved": new,
                "env": description.to_dict(env),
            }
            for env, new in results
        }
        click.echo(json.dumps(payload, indent=1))
        return
    for env, _ in results:
        click.echo(env.arch if app.quiet else f"### Environment for architecture {env.arch}")
        click.echo(describe(app, envs, env))


# What show and get report as not found (NOT_FOUND with --quiet): an unknown name or step, an environment the
# store lacks (for the arch). A malformed ENV (InvalidAlias) is bad input, and a record or store that cannot be
# read an error of its own: neither says that ENV does not exist.
NOT_FOUND = (AliasError, EnvironmentNotFound)

PATHSPEC_OPTION = click.option(
    "--pathspec",
    is_flag=True,
    help="ENV is a step's pathspec Flow/Run/Step (the same as step:Flow/Run/Step).",
)


def step_ref(env: str, pathspec: bool) -> str:
    """``env`` as an environment reference: with --pathspec, the environment of the step ``env``."""
    if not pathspec:
        return env
    if env.startswith("step:") or len([p for p in env.split("/") if p]) not in (3, 4):
        raise UsageError(
            f"{env!r} is not a pathspec: with --pathspec, give a step as Flow/Run/Step (e.g. MyFlow/12/start)."
        )
    return f"step:{env}"


@click.command()
@click.argument("env")
@click.option(
    "--name",
    multiple=True,
    callback=_once,
    help="Name of the local environment (default metaflowtmp_<req>_<full>, as the original: a prefix of its "
    "own, apart from the metaflow_<req>_<full> one steps run in, so that what is installed there never changes "
    "a step's).",
)
@click.option("--force/--no-force", default=False, help="Recreate it even if it exists and is complete.")
@click.option(
    "--verify",
    is_flag=True,
    help="Install from package files hashed again (those of the local package cache too), their unpacked "
    "copies in the installers' caches checked (rattler) or unpacked anew (uv); an existing environment is "
    "re-created.",
)
@click.option(
    "--exist-ok/--no-exist-ok",
    default=True,
    show_default=True,
    help="A complete environment already at NAME is not an error (--no-exist-ok: it is, as in the original).",
)
@click.option(
    "--arch",
    multiple=True,
    callback=_once,
    help="Architecture of the environment to create (default: this machine's), e.g. osx-64 on an Apple silicon "
    "Mac (Rosetta). One that cannot run here is created only without PyPI packages (nothing is run to install "
    "it), to be used at the same path on a machine of that architecture.",
)
@PATHSPEC_OPTION
@click.pass_obj
def create(
    app: App,
    env: str,
    name: str | None,
    force: bool,
    verify: bool,
    exist_ok: bool,
    arch: str | None,
    pathspec: bool,
) -> None:
    """Hydrate ENV (NAME[:TAG], REQ_ID:FULL_ID or step:Flow/Run/Step) into a local environment: fetch from the
    store, verify, extract, link."""
    from envcore import resolve as resolving

    envs = _environments(app)
    resolved = envs.find(
        step_ref(env, pathspec), resolving.check_arch(arch) if arch else resolving.local_arch()
    )
    prefix = envs.prefix_for(resolved, created_name(resolved) if name is None else name)
    started = time.monotonic()
    # False: it was complete already; any_arch: an environment of another arch is created where it safely can be
    created = envs.create(resolved, prefix, force=force, verify=verify, any_arch=True)
    if not (created or exist_ok):
        raise UsageError(
            f"Environment '{prefix.name}' already exists at {prefix}; use --force to force recreating it "
            "(or --exist-ok to accept it)."
        )
    if app.quiet:
        click.echo(prefix / "bin" / "python")
        return
    verb = "created" if created else "already exists and is complete"
    took = f" in {time.monotonic() - started:.2f} s" if created else ""
    what = f"Environment {resolved.req_id}:{resolved.full_id}"
    if resolved.arch != local_arch():
        what += f" for {resolved.arch}"
    use = f"run {prefix / 'bin' / 'python'}"
    if not runs_here(resolved.arch):
        use = f"it runs on a {resolved.arch} machine at this same path (its files name it)"
    click.echo(f"{what} {verb} at {prefix}{took}; {use}")


def created_name(env: ResolvedEnvironment) -> str:
    """The prefix ``create`` makes without ``--name``: the original's ``metaflowtmp_<req>_<full>``, with the
    architecture added when it is not this machine's (an environment resolved for several architectures has one
    full id for all)."""
    name = uptodate.created_dir_name(env.req_id, env.full_id)
    return name if env.arch == local_arch() else f"{name}_{env.arch}"


@click.command()
@click.argument("env")
@click.option(
    "--default/--no-default",
    default=True,
    show_default=True,
    help="Make it the default for its requirement id (a later resolve of the same requirements reuses it).",
)
@click.option(
    "--arch", multiple=True, callback=_once, help="Architecture of the environment (default: this machine)."
)
@click.option("--json", "as_json", is_flag=True, help="Show it as `show --json` does.")
@PATHSPEC_OPTION
@click.pass_obj
def get(app: App, env: str, default: bool, arch: str | None, as_json: bool, pathspec: bool) -> None:
    """Fetch ENV's description from the store and record it locally (and its package files, for this
    machine's architecture), then show it (with --json, as `show --json` does)."""
    from envcore import hydrate
    from envcore import resolve as resolving

    envs = _environments(app)
    target = resolving.check_arch(arch) if arch else resolving.local_arch()
    ref = step_ref(env, pathspec)
    try:
        resolved = envs.find(ref, target)
    except NOT_FOUND as exc:
        if not app.quiet or isinstance(exc, InvalidAlias):
            raise
        click.echo(f"{ref}@{target}\nNOT_FOUND")  # the original's form for scripts, as show prints it
        raise click.exceptions.Exit(1) from None
    if default:
        envs.record.set_default(resolved.arch, resolved.req_id, resolved.full_id)
    if resolved.arch == resolving.local_arch():
        hydrate.fetch_packages(app.registry, resolved, envs.store, progress=envs.progress)
    if app.quiet and not as_json:
        click.echo(f"{ref}@{target}")
    click.echo(describe(app, envs, resolved, as_json=as_json))


@click.command()
@click.argument("refs", nargs=-1, required=True, metavar="ENV...")
@click.option(
    "--arch", multiple=True, callback=_once, help="Architecture of the environment (default: this machine)."
)
@click.option(
    "--format",
    "fmt",
    multiple=True,
    callback=_once,
    type=click.Choice(["text", "json", "pylock", "explicit"]),
    help="text (default); json; pylock: the PyPI packages as a PEP 751 pylock.toml (for uv pip install -r); "
    "explicit: the conda packages as conda's explicit file (for conda/micromamba create --file).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (same as --format json).")
@PATHSPEC_OPTION
@click.pass_obj
def show(
    app: App, refs: tuple[str, ...], arch: str | None, fmt: str | None, as_json: bool, pathspec: bool
) -> None:
    """Show each ENV (NAME[:TAG], REQ_ID:FULL_ID or step:Flow/Run/Step): type, aliases, ids, archs, when and by
    whom it was resolved, requested packages, sources, the conda and PyPI packages it installs, and where it
    is present locally. With several, each comes under a "### Environment for '<ENV>' (arch '<ARCH>'):"
    header, one that is not found says so, and the exit status is 1 if any was not found. With --format
    pylock, print its PyPI packages as a pylock.toml instead (conda packages, python included, are not in it);
    with --format explicit, its conda packages as conda's explicit file (PyPI packages are not in it)."""
    from envcore import resolve as resolving

    if as_json and fmt not in (None, "json"):
        raise UsageError(f"Cannot specify both --json and --format {fmt}; give one of them.")
    as_json = as_json or fmt == "json"
    if fmt in ("pylock", "explicit") and len(refs) > 1:
        raise UsageError(f"--format {fmt} shows one environment; give one ENV.")
    refs = tuple(step_ref(ref, pathspec) for ref in refs)
    envs = _environments(app)
    target = resolving.check_arch(arch) if arch else resolving.local_arch()
    if len(refs) == 1 and (as_json or fmt in ("pylock", "explicit") or not (app.headers_always or app.quiet)):
        resolved = envs.find(refs[0], target)
        if fmt == "explicit":
            from envcore import show as showing
            from envcore.types import PackageKind

            pypi_side = [p for p in resolved.packages if p.kind is PackageKind.PYPI]
            click.echo(showing.explicit(resolved), nl=False)
            if pypi_side:
                app.echo(
                    f"envcore: warning: {resolved.req_id}:{resolved.full_id} also installs {len(pypi_side)} PyPI "
                    "package(s), which an explicit file cannot hold: export them with --format pylock.",
                    err=True,
                )
            return
        if fmt == "pylock":
            from envcore import pylock

            cache_dir = app.config.cache_dir()
            click.echo(pylock.export(resolved, resolving.source_credentials(app.config), cache_dir), nl=False)
            conda_side = pylock.conda_python_distributions(resolved, cache_dir)
            if conda_side:
                app.echo(
                    f"envcore: warning: the conda side of {resolved.req_id}:{resolved.full_id} also installs Python "
                    f"distributions ({', '.join(conda_side)}) that a pylock.toml "
                    "cannot hold: an environment made from this file alone lacks them if its packages need them.",
                    err=True,
                )
            return
        click.echo(describe(app, envs, resolved, as_json=as_json))
        return
    shown: dict[str, object] = {}
    missing = 0
    for ref in refs:
        try:
            resolved = envs.find(ref, target)
        except NOT_FOUND as exc:
            if (len(refs) == 1 and not app.quiet) or isinstance(exc, InvalidAlias):
                raise
            missing += 1
            if as_json:
                shown[ref] = {"error": app.hint(exc.message)}
            elif app.quiet:  # the original's form for scripts
                click.echo(f"{ref}@{target}\nNOT_FOUND")
            else:
                click.echo(
                    f"### Environment for '{ref}' (arch '{target}') was not found: {app.hint(exc.message)}\n"
                )
            continue
        if as_json:
            shown[ref] = json.loads(describe(app, envs, resolved, as_json=True))
        else:
            click.echo(f"{ref}@{target}" if app.quiet else f"### Environment for '{ref}' (arch '{target}'):")
            click.echo(describe(app, envs, resolved))
    if shown:
        click.echo(json.dumps(shown, indent=1))
    if missing:
        raise click.exceptions.Exit(1)


def _check_aliases_before_resolving(envs: Environments, wanted: list[Alias], req_id: str) -> None:
    """Refuse, before the (slow) resolution, aliases that can never be written: pathspecs and ids, and
    immutable names already bound to other requirements."""
    for alias in wanted:
        envs.aliases.check_writable(alias)
        current = None if alias.mutable else envs.aliases.lookup(alias)
        if current is not None and current[0] != req_id:
            raise AliasError(
                f"Alias {alias.display!r} is not mutable and already refers to {current[0]}:{current[1]}, an "
                "environment of other requirements. Choose a new tag, or one of the mutable tags latest, "
                "candidate, stable. Nothing was resolved."
            )


@click.command()
@click.argument("env")
@click.argument("names", nargs=-1, required=True, metavar="NAME[:TAG]...")
@PATHSPEC_OPTION
@click.pass_obj
def alias(app: App, env: str, names: tuple[str, ...], pathspec: bool) -> None:
    """Give ENV (an alias, REQ_ID:FULL_ID or step:Flow/Run/Step) the aliases NAME[:TAG]. Tags other than
    latest, candidate and stable are immutable: they can be written once."""
    envs = _environments(app)
    target = step_ref(env, pathspec)
    done = envs.alias(target, names)
    ids = ":".join(envs.aliases.resolve(target))  # what the names are bound to, whatever ENV names later
    what = ids if ids == env else f"{ids} ({env})"
    for display, changed in done:
        click.echo(f"{display} {'now refers to' if changed else 'already referred to'} {what}")
