"""``envcore config``: every configuration key, its value and where it came from."""

from __future__ import annotations

import json

import click

from envcore.cli import App, format_error, misspelled_settings
from envcore.errors import ConfigError, EnvcoreError


@click.group()
def config() -> None:
    """Inspect configuration (METAFLOW_* variables and the Metaflow config file)."""


@config.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def show(app: App, as_json: bool) -> None:
    """Show every key with its value and source; secrets are masked. A value that is not valid is shown as
    such, with why on stderr (exit status 1): the other keys are still listed. A variable or config file key
    that looks like a setting and is none (a typo) is warned about."""
    from envcore.plugins import build_registry

    config = app.loaded_config
    problems: list[str] = []
    try:
        build_registry(config)  # adds the plugins' settings to the configuration
    except EnvcoreError as exc:
        problems.append(f"The plugins could not be loaded, so their settings are not listed: {exc.message}")
    rows: list[dict[str, object]] = []
    secret = {setting.name for setting in config.settings() if setting.secret}
    for name in config.names():
        try:
            v = config.value(name)
        except ConfigError as exc:
            problems.append(exc.message)
            rows.append(
                {
                    "key": f"METAFLOW_{name}",
                    "value": None,
                    "source": config.source(name),
                    "secret": name in secret,
                    "valid": False,
                }
            )
            continue
        rows.append(
            {"key": v.env_name, "value": v.shown(), "source": v.source, "secret": v.secret, "valid": True}
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        width = max(len(str(r["key"])) for r in rows)
        for r in rows:
            shown = json.dumps(r["value"]) if r["valid"] else "<not valid>"
            click.echo(f"{r['key']:<{width}}  {shown:<30}  ({r['source']})")
    for warning in misspelled_settings(config):  # set, and read by no one: a typo is not silently a default
        app.echo(f"envcore: warning: {warning}", err=True)
    for problem in problems:
        click.echo(format_error(EnvcoreError(problem)), err=True)
    if problems:
        raise click.exceptions.Exit(1)
