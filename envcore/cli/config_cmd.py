"""``envcore config``: every configuration key, its value and where it came from."""

from __future__ import annotations

import json

import click

from envcore.cli import App


@click.group()
def config() -> None:
    """Inspect configuration (METAFLOW_* variables and the Metaflow config file)."""


@config.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def show(app: App, as_json: bool) -> None:
    """Show every key with its value and source; secrets are masked."""
    _ = app.registry  # building it adds the plugins' settings to the configuration
    values = app.config.values()
    if as_json:
        rows = [
            {"key": v.env_name, "value": v.shown(), "source": v.source, "secret": v.secret} for v in values
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(v.env_name) for v in values)
    for v in values:
        click.echo(f"{v.env_name:<{width}}  {json.dumps(v.shown()):<30}  ({v.source})")
