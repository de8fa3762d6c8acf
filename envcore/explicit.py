"""conda explicit files (``@EXPLICIT``): a fully locked conda environment as the input of an environment, read
without solving.

``envcore resolve --explicit FILE`` reads what ``conda list --explicit [--md5]`` and ``envcore show --format
explicit`` write: an ``@EXPLICIT`` line, then one package URL per line, each optionally followed by ``#<md5>``
or ``#sha256:<hex>``. Each package is fetched, checked against the hash the line gives (a line without one is
warned about, and the sha256 computed on download is recorded), and described from its own ``info/index.json``
(name, version, build, subdir, depends). Nothing is solved: the packages, and their order, are the file's.
PyPI requirements given with it (``-r requirements.txt``, ``--pypi``) are resolved against them, as the PyPI
side of a mixed environment is (:func:`resolver_for`).

How the file reaches the reader, as a pylock.toml does (:mod:`envcore.pylock`): the request carries the file's
packages as exact conda pins, its python, the channels of its URLs (the configured ones are not added), and one
conda flag ``--explicit=sha256:<digest>``, the sha256 of the file's normalised content; all enter the req id. The
normalised file is kept under ``<cache dir>/explicit/<digest>.json``, where :class:`ExplicitReader` reads it.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from envcore.config import Config, conda_token, redact_text, redact_url, secret_query_names
from envcore.errors import (
    EnvcoreError,
    EnvcoreWarning,
    IntegrityError,
    ResolutionError,
    SpecError,
    UsageError,
)
from envcore.frozen import record
from envcore.stashed import StashedInputReader, stashed_input
from envcore.types import (
    CONDA,
    PYPI,
    EnvType,
    LockedPackage,
    PackageFile,
    PackageKind,
    Requirement,
    Resolver,
    ResolveRequest,
)

if TYPE_CHECKING:
    from envcore.fetch import PackageCache
    from envcore.plugins import Registry
    from envcore.specs import Spec

NAME = "conda_explicit"
FLAG = "--explicit=sha256:"
_EXTS = (".conda", ".tar.bz2")
_FIX = "Export it again (conda list --explicit --md5 > FILE, or envcore show ENV --format explicit > FILE)."


@record
class Entry:
    """One package line: its URL and the hashes it gives (``line``: where it is in the file, for messages)."""

    line: int
    url: str
    md5: str | None = None
    sha256: str | None = None

    @property
    def file_name(self) -> str:
        return unquote(urlsplit(self.url).path).rsplit("/", 1)[-1]

    @property
    def subdir(self) -> str:
        """The folder the URL names the package in (``linux-64``, ``noarch``), as channels lay them out."""
        parts = unquote(urlsplit(self.url).path).rstrip("/").split("/")
        return parts[-2] if len(parts) > 1 else ""

    @property
    def channel(self) -> str:
        return self.url.rsplit("/", 2)[0]


@record
class ExplicitFile:
    origin: str
    platform: str | None  # its ``# platform:`` line
    entries: tuple[Entry, ...]

    @property
    def digest(self) -> str:
        """sha256 of what matters: the platform and each URL with its hashes (not comments nor line numbers)."""
        data = [self.platform, [(e.url, e.md5, e.sha256) for e in self.entries]]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()

    @property
    def arch(self) -> str | None:
        """The platform the file is for: its ``# platform:`` line, else the one subdir its URLs name."""
        if self.platform:
            return self.platform
        subdirs = {e.subdir for e in self.entries} - {"noarch"}
        return next(iter(subdirs)) if len(subdirs) == 1 else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ExplicitFile:
        data = json.loads(text)
        return cls(
            origin=data["origin"],
            platform=data["platform"],
            entries=tuple(Entry(**e) for e in data["entries"]),
        )


def _bad(origin: str, what: str, fix: str = _FIX) -> SpecError:
    return SpecError(redact_text(f"{origin} is not a usable conda explicit file: {what}. {fix}"))


def _entry(text: str, number: int, origin: str) -> Entry:
    where = f"line {number}"
    url, _, fragment = text.partition("#")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "file") or not parts.path:
        raise _bad(
            origin, f"{where} ({text[:100]!r}) is not a package URL", "Write one package URL per line."
        )
    if redact_url(url) != url or secret_query_names(url) or conda_token(url):
        raise _bad(
            origin,
            f"the URL of {where} carries credentials, which envcore does not keep in an environment",
            "Write the URL without user:password@ or a token and give the credentials of its host in "
            'METAFLOW_CONDA_SRCS_AUTH_INFO (e.g. {"HOST": ["USER", "PASSWORD"]}).',
        )
    fragment = fragment.strip().lower()
    md5 = fragment if re.fullmatch(r"[0-9a-f]{32}", fragment) else None
    sha256 = re.fullmatch(r"sha256[:=]([0-9a-f]{64})", fragment)
    if fragment and not (md5 or sha256):
        raise _bad(
            origin,
            f"the hash of {where} ({fragment[:80]!r}) is neither an md5 (32 hex digits) nor sha256:<64 hex digits>",
        )
    entry = Entry(line=number, url=url, md5=md5, sha256=sha256[1] if sha256 else None)
    if not entry.file_name.endswith(_EXTS):
        raise _bad(origin, f"{where} names {entry.file_name!r}, not a conda package (.conda or .tar.bz2)")
    return entry


def parse(text: str, origin: str = "the explicit file") -> ExplicitFile:
    """Read and check an explicit file (nothing is fetched)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "@EXPLICIT"), None)
    if start is None:
        raise _bad(
            origin,
            "it has no @EXPLICIT line, which starts the package URLs of an explicit file",
            "Give a file that conda list --explicit or envcore show ENV --format explicit wrote; give "
            "an environment.yml with -f, a requirements.txt with -r, and a pylock.toml with --pylock.",
        )
    platform = None
    entries: list[Entry] = []
    for index, raw in enumerate(lines):
        line, number = raw.strip(), index + 1
        if line.startswith("#"):
            comment = line.lstrip("#").strip()
            if comment.startswith("platform:"):
                platform = comment.partition(":")[2].strip() or None
            elif re.match(r"pip\b", comment):
                raise _bad(
                    origin,
                    f"line {number} is a PyPI package ({comment[:80]}), and an explicit file holds conda "
                    "packages only",
                    "Remove its pip lines and give the PyPI packages beside it in a requirements.txt (envcore "
                    "resolve --explicit FILE -r requirements.txt), which are resolved against its python.",
                )
        elif line and index < start:
            raise _bad(origin, f"line {number} ({line[:80]!r}) comes before @EXPLICIT")
        elif line and index > start:
            entries.append(_entry(line, number, origin))
    if not entries:
        raise _bad(
            origin, "it lists no packages after @EXPLICIT, so there is nothing to install", "Check it."
        )
    names: dict[str, Entry] = {}
    for entry in entries:
        name = _split_file_name(entry.file_name)[0]
        if name in names:
            raise _bad(
                origin,
                f"lines {names[name].line} and {entry.line} both give {name}",
                "Keep one of them.",
            )
        names[name] = entry
    found = ExplicitFile(origin=origin, platform=platform, entries=tuple(entries))
    subdirs = sorted({e.subdir for e in entries} - {"noarch", platform or ""})
    known = [s for s in subdirs if re.fullmatch(r"(linux|osx|win)-\w+", s)]
    if len(known) > 1 or (platform and known):
        of = f"# platform: {platform} and " if platform else ""
        raise _bad(
            origin,
            f"it mixes platforms ({of}packages of {', '.join(known)}: {_lines_of(entries, known)}), and an "
            "environment is for one",
            "Export one file per platform.",
        )
    return found


def _lines_of(entries: Sequence[Entry], subdirs: Sequence[str]) -> str:
    return ", ".join(f"line {e.line}" for e in entries if e.subdir in subdirs)[:200]


def _split_file_name(file_name: str) -> tuple[str, str, str]:
    """(name, version, build) of ``name-version-build.conda``."""
    stem = file_name.removesuffix(".conda").removesuffix(".tar.bz2")
    if stem.count("-") < 2:
        return stem, "", ""
    name, version, build = stem.rsplit("-", 2)
    return name, version, build


def load(path: Path) -> ExplicitFile:
    from envcore.specs import read_text

    path = Path(path)
    text = read_text(
        path, f"the explicit file {path}"
    )  # (UTF-16 with its byte order mark too, as pip reads files)
    return parse(text, str(path))


# --- from a file to a request --------------------------------------------------------------------------


def targets(found: ExplicitFile, archs: Sequence[str], local: str) -> tuple[str, ...]:
    """The architecture an environment of ``found`` is resolved for: its own (``--arch`` may only repeat it)."""
    arch = found.arch
    if not archs:
        return (arch or local,)
    others = [a for a in archs if a != arch] if arch else list(archs[1:])
    if others:
        mine = f"is for {arch}" if arch else "names no platform, so it is for one architecture"
        raise UsageError(
            f"{found.origin} {mine}, and --arch {' --arch '.join(archs)} asks for "
            f"{'another' if len(others) == 1 else 'others'}: an explicit file locks the packages of one "
            "platform. Leave --arch out, or export a file for each platform."
        )
    return tuple(dict.fromkeys(archs))


def to_spec(found: ExplicitFile, digest: str) -> Spec:
    """The specification of an environment of ``found``: its packages as exact pins, its python, the channels
    of its URLs only, and the flag naming the file by digest."""
    from envcore.specs import Spec

    pins = []
    python = None
    for entry in found.entries:
        name, version, build = _split_file_name(entry.file_name)
        if name == "python":
            python = version
        else:
            pins.append(Requirement(category=CONDA, name=name, spec=f"{version} {build}".strip()))
    return Spec(
        requirements=tuple(pins),
        sources={CONDA: tuple(dict.fromkeys(e.channel for e in found.entries))},
        extras={CONDA: (FLAG + digest,)},
        python=python,
        origin=f"the explicit file {found.origin}",
        nodefaults=True,
    )


def digest_of(request: ResolveRequest) -> str | None:
    flags = [f for f in request.extras.get(CONDA, ()) if f.startswith(FLAG)]
    return flags[0][len(FLAG) :] if flags else None


# --- the reader -----------------------------------------------------------------------------------------


def resolver_for(registry: Registry, request: ResolveRequest) -> tuple[str, Resolver]:
    """The reader of the request's explicit file and its name; with PyPI requirements, composed as the conda
    side with the configured PyPI resolver (``CONDA_PYPI_DEPENDENCY_RESOLVER``), which resolves them for the
    file's python and platform as a mixed environment's PyPI side is resolved."""
    reader = ExplicitReader(registry.config, digest_of(request))
    if not request.of(PYPI):
        return NAME, reader
    from envcore.compose import ComposedResolver

    pypi = registry.resolver_plugin(EnvType.PYPI_ONLY)
    if EnvType.CONDA_ONLY in pypi.env_types:
        raise UsageError(
            f"The PyPI resolver {pypi.name} (METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER) solves the conda side too, "
            "so it cannot resolve PyPI packages against the conda packages of an explicit file. Set "
            "METAFLOW_CONDA_PYPI_DEPENDENCY_RESOLVER to a PyPI-only resolver such as uv, or resolve the PyPI "
            "packages apart."
        )
    composed = ComposedResolver(
        (NAME, reader),
        (pypi.name, registry.resolver_named(pypi.name)),
        registry.config.cache_dir(),
        debug=registry.config.debug,
    )
    return f"{NAME}+{pypi.name}", composed


class ExplicitReader(StashedInputReader):
    """The packages of an explicit file, fetched, checked and described from themselves (a resolver that
    solves nothing). ``digest``: the file's, when the request it is given does not carry its flag (the conda
    side of a composition)."""

    def __init__(self, config: Config, digest: str | None = None) -> None:
        super().__init__(config)
        self.digest = digest

    def load(self, request: ResolveRequest) -> ExplicitFile:
        digest = self.digest or digest_of(request) or ""
        try:
            return ExplicitFile.from_json(stashed_input(self.config, "explicit", digest))
        except (OSError, ValueError, KeyError, TypeError):
            raise ResolutionError(
                f"The explicit file with digest {digest} is not in envcore's cache; it is recorded when `envcore "
                "resolve --explicit FILE` reads the file. Resolve again from the file."
            ) from None

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        from envcore.fetch import PackageCache, in_parallel

        found = self.load(request)
        cache = PackageCache(self.config.cache_dir())
        packages = in_parallel(lambda e: self._one(found, e, request, cache), found.entries)
        unhashed = [e for e in found.entries if not (e.md5 or e.sha256)]
        if unhashed:
            lines = ", ".join(f"{e.line} ({e.file_name})" for e in unhashed[:5])
            more = f" and {len(unhashed) - 5} more" if len(unhashed) > 5 else ""
            warnings.warn(
                EnvcoreWarning(
                    f"{found.origin} gives no hash for {len(unhashed)} package(s), on line"
                    f"{'s' if len(unhashed) > 1 else ''} {lines}{more}: they are "
                    "not verified against the list. The sha256 of each as downloaded now is recorded, and checked "
                    "from now on. Export with hashes (conda list --explicit --md5) to verify them."
                ),
                stacklevel=2,
            )
        return packages

    def _one(
        self, found: ExplicitFile, entry: Entry, request: ResolveRequest, cache: PackageCache
    ) -> LockedPackage:
        from envcore.fetch import digest_file
        from envcore.formats.conda import CondaFormat

        name = entry.file_name
        where = f"{name} (line {entry.line} of {found.origin})"
        path = cache.get(_file(entry, entry.sha256 or ""), name) if entry.sha256 else None
        if path is None:
            path, sha256, md5 = _download(entry, where, cache, request.credentials)
        else:  # (the package cache keeps files by sha256: the one of this line)
            sha256, md5 = entry.sha256 or "", entry.md5 or digest_file(path, "md5")
        try:
            index = CondaFormat().metadata(path)
        except EnvcoreError as exc:
            raise ResolutionError(f"{where}: {exc.message}") from None
        subdir = str(index.get("subdir") or entry.subdir)
        if subdir not in (request.arch, "noarch"):
            raise ResolutionError(
                f"{where} is a package for {subdir}, and the environment is for {request.arch}: an explicit file "
                "locks the packages of one platform. Export one file per platform."
            )
        ext = next(e for e in _EXTS if name.endswith(e))
        return LockedPackage(
            kind=PackageKind.CONDA,
            name=str(index.get("name") or _split_file_name(name)[0]),
            version=str(index.get("version") or _split_file_name(name)[1]),
            build=str(index.get("build") or _split_file_name(name)[2]),
            filename=name[: -len(ext)],
            files=(_file(entry, sha256, md5, path.stat().st_size),),
            subdir=subdir,
            channel=entry.channel,
            depends=tuple(str(d) for d in index.get("depends", ())),
        )


def _file(entry: Entry, sha256: str, md5: str | None = None, size: int | None = None) -> PackageFile:
    ext = next(e for e in _EXTS if entry.file_name.endswith(e))
    return PackageFile(url_format=ext, url=entry.url, sha256=sha256, md5=md5 or entry.md5, size=size)


def _download(
    entry: Entry, where: str, cache: PackageCache, credentials: Mapping[str, tuple[str, str]]
) -> tuple[Path, str, str]:
    """The package of ``entry`` fetched into the package cache once its hash matched the line's, with its
    sha256 and md5."""
    from envcore.fetch import digest_file, download

    tmp = cache.temp()
    try:
        try:
            download(entry.url, tmp, credentials)
        except EnvcoreError as exc:
            raise ResolutionError(
                f"Cannot fetch {where}: {exc.message} An explicit file is installed from the URLs it lists: "
                "each must still be served (or be copied where a line can name it)."
            ) from None
        sha256, md5 = digest_file(tmp, "sha256"), digest_file(tmp, "md5")
        for algorithm, given, actual in (("md5", entry.md5, md5), ("sha256", entry.sha256, sha256)):
            if given and given != actual:
                raise IntegrityError(
                    f"{where} has {algorithm} {actual}, and the file gives {given}: the channel serves other bytes "
                    "than the ones listed, so the package was not used. Check the channel, or export the file "
                    "again from an environment made with what it serves now."
                )
        return (
            cache.put_verified(tmp, _file(entry, sha256, md5), entry.file_name, redact_url(entry.url)),
            sha256,
            md5,
        )
    finally:
        tmp.unlink(missing_ok=True)


def stash(config: Config, found: ExplicitFile) -> str:
    """Keep ``found`` where the reader finds it by digest; returns the digest."""
    from envcore.stashed import stash_input

    digest = found.digest
    stash_input(config, "explicit", digest, found.to_json())
    return digest


__all__ = [
    "FLAG",
    "NAME",
    "Entry",
    "ExplicitFile",
    "ExplicitReader",
    "load",
    "parse",
    "resolver_for",
    "stash",
    "to_spec",
]
