"""``metaflow environment ...``: handed over, arguments untouched, to the envcore commands in
:mod:`metaflow_extensions.envcore.plugins.conda.commands` (Metaflow's CLI uses its own vendored click)."""

from metaflow._vendor import click


@click.group()
def cli() -> None:
    pass


@cli.command(
    name="environment",
    help="Execution environment related commands (resolve, create, get, show, alias).",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def environment(args: tuple[str, ...]) -> None:
    from metaflow_extensions.envcore.plugins.conda import messages

    missing = messages.envcore_missing()
    if missing:
        raise click.ClickException(messages.commands(missing))
    from metaflow_extensions.envcore.plugins.conda.commands import main

    main(list(args))
