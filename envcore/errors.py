"""The one error tree of envcore.

Every error a user can cause is an :class:`EnvcoreError`. Its message is one paragraph that says what is
wrong, where the offending value came from and how to fix it; the CLI prints it without a traceback
(unless ``--verbose``) and exits with :attr:`EnvcoreError.exit_code`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's, nor collections.abc at run time: the no-op `create` imports this module
if TYPE_CHECKING:
    from collections.abc import Iterable


class EnvcoreWarning(UserWarning):
    """Something a person should know of a result that stands (a pinned release its publisher yanked): the CLI
    prints it as ``envcore: warning: ...``; a library caller sees a Python warning."""


def clipped(text: str, limit: int = 100) -> str:
    """``text`` cut to about ``limit`` characters when it is longer, its start and its end kept (a store key's
    file name, a path's last part) and its length said: a message never repeats a value (a user's, or a
    library's error) unbounded."""
    if len(text) <= limit:
        return text
    tail = min(40, limit // 4)
    return f"{text[: limit - tail]}...{text[-tail:]} (cut from {len(text)} characters)"


def echoed(value: object, limit: int = 100) -> str:
    """``value`` as a message quotes it (a string's repr), redacted (see :func:`envcore.config.redact_text`;
    before it is cut: a cut URL could keep a password its redaction no longer recognises), then cut to
    ``limit`` characters as :func:`clipped` cuts."""
    from envcore.config import redact_text  # (which imports this module)

    shown = redact_text(value if isinstance(value, str) else repr(value))
    if len(shown) > limit:
        return f"{shown[:limit]!r}... ({len(shown)} characters)"
    return repr(shown) if isinstance(value, str) else shown


def close_match(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The one of ``choices`` closest to ``word``, if one is close enough to be what was meant (a message's "Did
    you mean ...?")."""
    import difflib

    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return found[0] if found else None


class EnvcoreError(Exception):
    """Base of every error envcore reports to a person."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(EnvcoreError):
    """A configuration value is invalid or names something that does not exist."""

    exit_code = 2


class UsageError(EnvcoreError):
    """The command line is inconsistent (conflicting options, missing argument)."""

    exit_code = 2


class SpecError(EnvcoreError):
    """A requirement specification (decorator, requirements.txt, environment.yml, pyproject.toml) is malformed."""

    exit_code = 2


class PluginError(EnvcoreError):
    """A plugin is broken: it failed to import, registered a duplicate name or a malformed record."""


class BackendUnavailable(EnvcoreError):
    """A backend is installed but cannot run here (missing executable, unsupported version)."""


class ResolutionError(EnvcoreError):
    """Requirements cannot be resolved (unsatisfiable, unknown package, conflicting pins)."""


class StorageError(EnvcoreError):
    """The store failed or holds something unexpected."""


class NewerDescription(StorageError):
    """A stored environment description was written by a newer envcore (a schema this one does not read):
    ``writer`` is that envcore's version ("" when it does not say), ``resolved_by`` who resolved it (as its
    description says, if it does)."""

    def __init__(self, message: str, *, writer: str = "", resolved_by: str = "") -> None:
        super().__init__(message)
        self.writer, self.resolved_by = writer, resolved_by


class PreconditionFailed(StorageError):
    """A conditional write lost: the object exists (create-if-absent) or changed (compare-and-swap)."""


class KeyConflict(StorageError):
    """A key cannot be written because the store keeps keys as paths: an object would be both a file and the
    folder of other objects (``a/b`` and ``a/b/c``; file-system stores only)."""


class IntegrityError(EnvcoreError):
    """A file's content does not match its recorded hash. Where a file was hashed, ``actual`` is the hash it has
    and ``kept`` where its bytes were set aside (both empty otherwise)."""

    def __init__(self, message: str, *, actual: str = "", kept: str = "") -> None:
        super().__init__(message)
        self.actual, self.kept = actual, kept


class EditedDescription(IntegrityError):
    """A file matches the hash its environment's id is made from, not another hash its description records:
    the description was most likely changed after it was written."""


class FormatError(EnvcoreError):
    """A package archive is malformed or hostile (path traversal, links outside the prefix, devices)."""


class AliasError(EnvcoreError):
    """An alias is malformed, unknown, or would rebind an immutable name."""


class InvalidAlias(AliasError):
    """An alias is malformed: bad input, as a bad option (exit status 2, where unknown aliases give 1)."""

    exit_code = 2


class LockTimeout(EnvcoreError):
    """A lock could not be acquired within ``METAFLOW_CONDA_LOCK_TIMEOUT`` seconds."""


class EnvironmentNotFound(StorageError):
    """The store (or, where it is not looked in, this machine) has no description of the environment for the
    architecture asked for: what ``show`` and ``get`` report as not found (``NOT_FOUND`` with ``--quiet``),
    where other storage errors (a damaged record, a store that cannot be reached) are errors of their own."""


class MissingObject(StorageError):
    """The store has no object under the requested key."""
