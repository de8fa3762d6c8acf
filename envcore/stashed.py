"""Locked inputs the CLI reads (a pylock.toml, a conda explicit file), kept normalised in envcore's cache by
their digest, and the base of the built-in resolvers that read them back (they solve nothing)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envcore.config import Config


def stash_input(config: Config, kind: str, digest: str, text: str) -> None:
    """Keep a locked input (``kind``: ``pylock``, ``explicit``), normalised as ``text``, where its reader finds
    it by ``digest`` (content-addressed, so never stale), written atomically."""
    import tempfile

    folder = config.cache_dir() / kind
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, folder / f"{digest}.json")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def stashed_input(config: Config, kind: str, digest: str) -> str:
    """The text :func:`stash_input` kept (OSError when it is not there)."""
    return (config.cache_dir() / kind / f"{digest}.json").read_text()


class StashedInputReader:
    """A built-in resolver that reads a stashed locked input: nothing to check, envcore's own version."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def check(self) -> None:
        return None

    def version(self) -> str:
        from envcore import __version__

        return __version__
