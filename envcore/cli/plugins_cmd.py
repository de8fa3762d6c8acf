"""``envcore plugins``: what is installed, what it provides, and whether it can run here."""

from __future__ import annotations

import json
from typing import Any

import click

from envcore.cli import App
from envcore.errors import EnvcoreError


def _resolver_checks(app: App) -> dict[str, dict[str, Any]]:
    """Each installed resolver's ``check()``: available with its version, or why not. One that breaks the
    Resolver contract (no ``check``, or it raises something other than an envcore error) is unavailable,
    named with its plugin, and the others are still checked."""
    checks: dict[str, dict[str, Any]] = {}
    for name in sorted(app.registry.resolvers):
        entry = app.registry.resolvers[name]
        found: dict[str, Any] = {"executables": list(entry.record.executables)}
        try:
            resolver = app.registry.resolver_named(name)
            resolver.check()
            checks[name] = {**found, "available": True, "version": resolver.version(), "reason": None}
        except EnvcoreError as exc:
            checks[name] = {**found, "available": False, "version": None, "reason": exc.message}
        except Exception as exc:  # a plugin's bug: said, and the listing goes on
            reason = (
                f"its check() or version() failed with {type(exc).__name__}: {exc} (a bug in the plugin "
                f"{entry.plugin}: check() raises envcore.errors.BackendUnavailable when the resolver cannot run)"
            )
            checks[name] = {**found, "available": False, "version": None, "reason": reason}
    return checks


def _selection_problems(app: App) -> list[str]:
    """What the configuration selects and cannot be built here: a resolver, installer, store or naming scheme
    that no installed plugin provides (or a store without its root). A resolver set to ``none`` is a choice."""
    from envcore.plugins import RESOLVER_SETTINGS
    from envcore.types import PackageKind

    registry = app.registry
    attempts: list[Any] = [
        lambda env_type=env_type: registry.resolver_plugin(env_type)
        for env_type, setting in RESOLVER_SETTINGS.items()
        if str(app.config.get(setting)) != "none"
    ]
    attempts += [lambda kind=kind: registry.installer(kind) for kind in PackageKind]
    attempts += [registry.store, registry.naming]
    problems = []
    for attempt in attempts:
        try:
            attempt()
        except EnvcoreError as exc:
            problems.append(exc.message)
    return list(dict.fromkeys(problems))


def _unavailable_selected(app: App, checks: dict[str, dict[str, Any]]) -> list[str]:
    """The selected resolvers that are installed and cannot run here (``check()`` failed)."""
    from envcore.plugins import RESOLVER_SETTINGS

    found = []
    for setting in RESOLVER_SETTINGS.values():
        name = str(app.config.get(setting))
        result = checks.get(name)
        if result is not None and not result["available"]:
            found.append(
                f"METAFLOW_{setting} selects the resolver {name}, which cannot run here: {result['reason']}"
            )
    return list(dict.fromkeys(found))


def _selected(app: App) -> dict[str, str]:
    from envcore.plugins import INSTALLER_SETTINGS, RESOLVER_SETTINGS

    keys = [*RESOLVER_SETTINGS.values(), *INSTALLER_SETTINGS.values(), "DEFAULT_DATASTORE", "ENVCORE_NAMING"]
    return {key: str(app.config.get(key)) for key in keys}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--check",
    is_flag=True,
    help="Also check that each resolver can run here, and why not, and that every backend the configuration "
    "selects is installed (exit 1 if not).",
)
@click.pass_obj
def plugins(app: App, as_json: bool, check: bool) -> None:
    """List installed plugins: name, distribution, version, status and the backends they provide."""
    registry = app.registry
    checks = _resolver_checks(app) if check else {}
    problems = [*_selection_problems(app), *_unavailable_selected(app, checks)] if check else []
    rows = [
        {
            "name": p.name,
            "distribution": p.distribution,
            "version": p.version,
            "module": p.module,
            "status": p.status,
            "error": p.error,
            "provides": sorted(p.provides),
        }
        for p in registry.plugins.values()
    ]
    if as_json:
        payload: dict[str, Any] = {"plugins": rows, "selected": _selected(app)}
        if check:
            payload["resolvers"] = checks
            payload["selection_problems"] = problems
        click.echo(json.dumps(payload, indent=2))
        if problems:
            raise click.exceptions.Exit(1)
        return
    width = max([16, *(len(str(row["name"])) for row in rows)])  # a module path can be a long name
    for row in rows:
        origin = (
            f"{row['distribution']} {row['version']}" if row["distribution"] else f"module {row['module']}"
        )
        click.echo(f"{row['name']:<{width}} {row['status']:<12} {origin}")
        if row["provides"]:
            click.echo(f"{'':<{width}} provides {', '.join(row['provides'])}")
        if row["error"]:
            click.echo(f"{'':<{width}} error: {row['error']}")
    click.echo("")
    for key, value in _selected(app).items():
        click.echo(f"METAFLOW_{key} = {value}")
    if check:
        click.echo("")
        for name, result in checks.items():
            state = (
                f"available ({result['version']})"
                if result["available"]
                else f"unavailable: {result['reason']}"
            )
            drives = f" (drives {', '.join(result['executables'])})" if result["executables"] else ""
            click.echo(f"resolver {name:<12} {state}{drives}")
        for problem in problems:
            click.echo(f"selected backend unusable: {problem}")
        if problems:
            raise click.exceptions.Exit(1)
