"""Environment ids, alias grammar and the store's key layout — all compatible with the original extension.

* **req id** = sha1 of the space-joined ``<category>::<value>`` strings of deps, then sources, then extras,
  each sorted by category then value (so list order never matters; reference §1(d)).
* **full id** = sha1 of the sorted ``<filename>#<hash>`` of every package, the arch and the sorted
  ``key:value`` unique keys. **Co-resolved** environments share one full id over all their archs.
* **Aliases**: ``name`` (= ``name:latest``), ``name:tag``, ``REQ:FULL`` and ``step:Flow/Run/Step[/Task]``.
  ``latest``, ``candidate`` and ``stable`` are mutable tags; every other tag is written once.

Differences from the original (reference §1(f)): ``name:`` (an empty tag) is refused instead of silently
becoming ``name/``, and a tag is validated before anything is resolved.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from urllib.parse import urlsplit

from envcore.errors import ConfigError, InvalidAlias, echoed
from envcore.frozen import record
from envcore.types import CATEGORIES, LockedPackage
from envcore.uptodate import MUTABLE_TAGS as MUTABLE_TAGS

_ID = r"[0-9a-f]{40}"
_NAME = r"[-a-z0-9_/]+"
_TAG = r"[-a-z0-9_]+"


def _sha1(items: Iterable[str]) -> str:
    return hashlib.sha1(" ".join(items).encode("utf-8")).hexdigest()


def _by_category(tstrs: Sequence[str]) -> list[str]:
    """``<cat>::<value>`` strings sorted per category (categories sorted), as the original hashes them."""
    grouped: dict[str, list[str]] = {}
    for item in tstrs:
        category, sep, _ = item.partition("::")
        if not sep or category not in (*CATEGORIES, "pip"):
            raise ValueError(f"{item!r} is not a '<category>::<value>' string")
        grouped.setdefault(category, []).append(item)
    return [item for category in sorted(grouped) for item in sorted(grouped[category])]


def package_tags(packages: Sequence[LockedPackage]) -> list[str]:
    return sorted(f"{p.filename}#{p.id_hash}" for p in packages)


class DefaultNaming:
    """The original's naming scheme (``envcore.naming`` plugin ``default``)."""

    def req_id(self, deps: Sequence[str], sources: Sequence[str], extras: Sequence[str]) -> str:
        return _sha1([*_by_category(deps), *_by_category(sources), *_by_category(extras)])

    def full_id(
        self, packages: Sequence[LockedPackage], arch: str, unique_keys: Mapping[str, str] | None = None
    ) -> str:
        keys = [f"{k}:{v}" for k, v in sorted((unique_keys or {}).items())]
        return _sha1([*package_tags(packages), arch, *keys])

    def coresolved_full_id(self, per_arch: Mapping[str, Sequence[LockedPackage]]) -> str:
        return _sha1([item for arch in sorted(per_arch) for item in (arch, *package_tags(per_arch[arch]))])


# --- aliases -------------------------------------------------------------------------------------------


class AliasKind(str, Enum):
    GENERIC = "generic"
    IDS = "both-id"
    PATHSPEC = "pathspec"


@record(kw_only=False)
class Alias:
    """A parsed environment reference. ``path`` is the original's resolved form (``team/env/latest``,
    ``Flow/Run/Step``, ``REQ:FULL``)."""

    kind: AliasKind
    path: str
    text: str

    @property
    def mutable(self) -> bool:
        return self.kind is AliasKind.GENERIC and self.path.rsplit("/", 1)[1] in MUTABLE_TAGS

    @property
    def display(self) -> str:
        """``team/env:latest`` — how the original prints an alias."""
        if self.kind is not AliasKind.GENERIC:
            return self.text
        name, _, tag = self.path.rpartition("/")
        return f"{name}:{tag}"

    @property
    def ids(self) -> tuple[str, str]:
        if self.kind is not AliasKind.IDS:
            raise ValueError(f"{self.text} is not a REQ:FULL id pair")
        req, _, full = self.path.partition(":")
        return req, full


def is_env_id(text: str) -> bool:
    return bool(re.fullmatch(_ID, text))


# Aliases become folders and file names (at most 255 bytes each on most file systems) and store keys (at most
# 1,024 bytes on S3, with the envs folder and the caches' roots before them): generous limits within both.
MAX_ALIAS_PART = 100
MAX_ALIAS_LENGTH = 255


def parse_alias(text: str) -> Alias:
    """Parse and validate an environment reference; raise :class:`InvalidAlias` with the fix on bad input."""
    raw = text.strip()
    if raw.startswith("step:"):
        parts = raw[len("step:") :].split("/")
        if len(parts) not in (3, 4) or not all(parts):
            raise InvalidAlias(
                f"Invalid format for environment alias: {text!r}. A pathspec alias is step:Flow/Run/Step "
                "(or step:Flow/Run/Step/Task)."
            )
        return Alias(AliasKind.PATHSPEC, "/".join(parts[:3]), raw)
    name, sep, tag = raw.partition(":")
    if sep and is_env_id(name) and is_env_id(tag):
        return Alias(AliasKind.IDS, raw, raw)
    if is_env_id(raw):
        raise InvalidAlias(
            f"Invalid format for environment alias: {text!r}. An environment id alone is ambiguous; write "
            "REQ_ID:FULL_ID (both ids, as printed by `envcore resolve`)."
        )
    if not name or not re.fullmatch(_NAME, name):
        raise InvalidAlias(
            f"Invalid environment alias {text!r}: an environment name must contain only lowercase alphanumeric "
            "characters, dashes, underscores and forward slashes (e.g. team/project/env:v1)."
        )
    if name.startswith("/") or name.endswith("/") or "//" in name:
        raise InvalidAlias(
            f"Invalid environment alias {text!r}: an environment name must not start or end with '/' or contain "
            "'//'."
        )
    if sep and not re.fullmatch(_TAG, tag):
        raise InvalidAlias(
            f"Invalid environment alias {text!r}: an environment tag name must contain only lowercase "
            "alphanumeric characters, dashes and underscores (and must not be empty). Write NAME or NAME:TAG."
        )
    path = f"{name}/{tag or 'latest'}"
    if len(path) > MAX_ALIAS_LENGTH or max(len(part) for part in path.split("/")) > MAX_ALIAS_PART:
        raise InvalidAlias(
            f"Invalid environment alias {echoed(raw, 60)}: a name and tag may have at most "
            f"{MAX_ALIAS_LENGTH} characters, and each part between '/' (and the tag) at most {MAX_ALIAS_PART} "
            "(they become file names and store keys). Choose a shorter name."
        )
    return Alias(AliasKind.GENERIC, path, raw)


# --- store keys ----------------------------------------------------------------------------------------


def refuse_empty_segment(
    store: str, root: str, location: str, prefix: str, settings: str, copy_with: str
) -> None:
    """Refuse a cloud store's root whose ``prefix`` has an empty segment inside it (``team//envs``): object keys
    are literal, so dropping it would move the store away from what it holds, and keeping it is most likely a
    typo that splits a team's store in two. ``location``: the root up to the prefix (``s3://bucket``);
    ``settings``: where the root comes from; ``copy_with``: the tool that copies a store's objects."""
    if "//" in prefix.strip("/"):
        tidy = "/".join(filter(None, prefix.split("/")))
        raise ConfigError(
            f"The {store} store root {root!r} has an empty path segment ('//'). {store} keys are literal, so it is "
            f"not the same place as {location}/{tidy}: write the root without it in {settings}, and copy what it "
            f"already holds to the new root ({copy_with}) or resolve the environments again."
        )


def env_key(arch: str, req_id: str, full_id: str, *, envs_dirname: str = "envs") -> str:
    return f"{envs_dirname}/{arch}/{req_id}/{full_id}/env"


def env_prefix(arch: str, req_id: str, *, envs_dirname: str = "envs") -> str:
    return f"{envs_dirname}/{arch}/{req_id}/"


def alias_key(alias: Alias, *, envs_dirname: str = "envs") -> str:
    if alias.kind is not AliasKind.GENERIC:
        raise ValueError(f"only generic aliases are stored; {alias.text} is a {alias.kind.value} alias")
    return f"{envs_dirname}/aliases/generic/{alias.path}"


def full_id_alias_key(full_id: str, *, envs_dirname: str = "envs") -> str:
    return f"{envs_dirname}/aliases/full-id/{full_id}"


def safe_netloc(url: str) -> str:
    """``host[:port]`` of ``url`` without any ``user:password@``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def package_key(
    kind: str, url: str, filename: str, file_hash: str, *, packages_dirname: str = "packages"
) -> str:
    """``packages/<kind>/<host>/<url path>/<filename>/<hash>/<filename>`` — the original's layout, keyed by the
    package's source URL (with credentials stripped) so that every environment shares one copy."""
    parts = urlsplit(url)
    host = "_local" if parts.scheme == "file" or parts.scheme.endswith("+file") else safe_netloc(url)
    path = parts.path.strip("/")
    return "/".join(p for p in (packages_dirname, kind, host, path, filename, file_hash, filename) if p)
