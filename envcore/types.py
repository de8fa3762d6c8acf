"""Records and protocols that cross the plugin boundary.

Records are frozen, keyword-only and slotted: a plugin builds them, the core validates them
(:mod:`envcore.plugins`) and never mutates them. Behaviour is expressed as narrow
:class:`typing.Protocol` s, built lazily by a record's ``factory`` so that registering a plugin imports
nothing heavy.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable

from envcore.frozen import record

if TYPE_CHECKING:
    import click

    from envcore.config import Config
    from envcore.errors import EnvcoreError


class PackageKind(str, enum.Enum):
    """The ecosystem a package file belongs to."""

    CONDA = "conda"
    PYPI = "pypi"


class EnvType(str, enum.Enum):
    """What an environment is made of; selects the resolver setting that applies."""

    CONDA_ONLY = "conda-only"
    PYPI_ONLY = "pypi-only"
    MIXED = "mixed"


class Capability(str, enum.Enum):
    """Optional abilities a resolver declares; the conformance kit skips what is not declared."""

    CROSS_PLATFORM = "cross-platform"  # resolves for a subdir other than the local one
    VIRTUAL_PACKAGES = "virtual-packages"  # honours __glibc / __cuda / __osx
    AUTH = "auth"  # resolves against sources that need credentials
    EXTEND = "extend"  # keeps the pins of a base environment (ResolveRequest.base)
    OFFLINE = "offline"  # needs no network but the configured sources
    CONDA_TOKEN = "conda-token"  # reads conda channels with a token (credentials of user CONDA_TOKEN_USER)


# The user of a credential that is a conda channel token (anaconda.org's /t/<TOKEN>/), its password the token:
# ResolveRequest.credentials maps the channel's host to (CONDA_TOKEN_USER, token). Requests for such channels go
# to resolvers that declare Capability.CONDA_TOKEN; they put the token back into the path of what they fetch.
CONDA_TOKEN_USER = "<conda-token>"

# Requirement categories, as in the original's "<category>::<value>" strings.
CONDA, PYPI, NPCONDA, SYS = "conda", "pypi", "npconda", "sys"
CATEGORIES = (CONDA, PYPI, NPCONDA, SYS)


@record
class Requirement:
    """One requested package, as the user stated it (after normalisation).

    ``spec`` is the version constraint without the name: a conda match-spec version (``1.2.3`` is exact,
    ``>=1,<2`` a range) or a PEP 440 specifier for PyPI; ``""`` means any version. ``stated`` is the version as
    a decorator gave it (``>= 1.0, <3``, ``2.0.0=py_0``), which the original writes into the dependency string
    and hashes without normalising it: kept, so that a decorator's environment has the original's ids.
    """

    category: str
    name: str
    spec: str = ""
    channel: str | None = None
    extras: tuple[str, ...] = ()
    marker: str | None = None
    url: str | None = None
    stated: str | None = field(default=None, compare=False)

    @property
    def value(self) -> str:
        """The dependency string the original stores and hashes (``name==spec``, ``name`` or with a marker)."""
        name = f"{self.channel}::{self.name}" if self.channel else self.name
        if self.extras:
            name += "[" + ",".join(self.extras) + "]"
        if self.stated is not None:  # the original's dict_to_strlist
            return (
                name
                if not self.stated
                else name + self.stated
                if self.stated[0] == ";"
                else f"{name}=={self.stated}"
            )
        if self.url:
            text = f"{name}@{self.url}"
        elif self.spec:
            text = f"{name}=={self.spec}"
        else:
            text = name
        return f"{text};{self.marker}" if self.marker else text

    @property
    def tstr(self) -> str:
        return f"{self.category}::{self.value}"


@record
class PackageFile:
    """One downloadable file of a package, in one format. ``url`` never carries credentials."""

    url_format: str  # ".conda", ".tar.bz2", ".whl", ".tar.gz", ".zip"
    url: str
    sha256: str
    md5: str | None = None
    size: int | None = None
    built: bool = False  # a wheel envcore built from the sdist at ``url``: only the store has it
    # of a built wheel: its sdist's hash and size (a pylock.toml names the sdist, not the wheel)
    sdist_sha256: str | None = None
    sdist_size: int | None = None
    # where the store holds it, as the description read from that store says (its ``cache_info``): a store
    # written by the original extension, or with another METAFLOW_CONDA_PACKAGES_DIRNAME; None: computed
    stored_key: str | None = field(default=None, compare=False)

    @property
    def digest(self) -> tuple[str, str]:
        """(algorithm, hex digest) a copy is verified with: sha256, or md5 when that is all that is known (conda
        files in descriptions written by the original extension)."""
        return ("sha256", self.sha256) if self.sha256 else ("md5", self.md5 or "")


@record
class LockedPackage:
    """An exact package of a resolved environment.

    ``filename`` has no extension (``numpy-1.26.4-py311h64a7726_0``, ``requests-2.31.0-py3-none-any``);
    ``files[0]`` is the file the resolver chose; transmuted formats are appended by the cache.
    """

    kind: PackageKind
    name: str
    version: str
    filename: str
    files: tuple[PackageFile, ...]
    build: str = ""
    subdir: str | None = None
    channel: str | None = None
    depends: tuple[str, ...] = ()

    @property
    def source(self) -> PackageFile:
        return self.files[0]

    def file(self, url_format: str) -> PackageFile | None:
        return next((f for f in self.files if f.url_format == url_format), None)

    @property
    def is_sdist(self) -> bool:
        """A PyPI package locked as a source distribution: it must be built into a wheel (envcore.build)."""
        return self.kind is PackageKind.PYPI and self.source.url_format != ".whl"

    @property
    def id_hash(self) -> str:
        """The hash the original puts in the full id: md5 for conda, sha256 for PyPI."""
        src = self.source
        if self.kind is PackageKind.CONDA and src.md5:
            return src.md5
        return src.sha256


@record
class ResolveRequest:
    """What a resolver is asked to lock, for one target architecture.

    For a PyPI resolver inside a composition, ``python_version`` is the exact python the conda side
    chose and ``installed`` lists the Python packages it installs, which must be kept as they are
    (``envcore.pypi.conda_python_packages(request.installed, request.installed_distributions)`` names them as
    PyPI does).
    ``credentials`` maps host -> (user, password), or -> (``CONDA_TOKEN_USER``, token) for a conda channel
    token; it is never part of ``repr`` or equality.
    """

    arch: str
    requirements: tuple[Requirement, ...]
    sources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    extras: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    python: str | None = None
    python_version: str | None = None
    installed: tuple[LockedPackage, ...] = ()
    #: Python distributions of ``installed`` named otherwise than their conda package (canonical name -> the
    #: package's name, read from its files: ``matplotlib`` -> ``matplotlib-base``)
    installed_distributions: Mapping[str, str] = field(default_factory=dict)
    base: ResolvedEnvironment | None = None
    credentials: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False, compare=False)

    def of(self, *categories: str) -> tuple[Requirement, ...]:
        return tuple([r for r in self.requirements if r.category in categories])

    @property
    def env_type(self) -> EnvType:
        # python itself is always a conda requirement (PyPI-only environments run on a conda python)
        conda = pypi = False
        for r in self.requirements:  # (one pass: asked several times per environment of a flow)
            if r.category == PYPI:
                pypi = True
            elif r.category == CONDA and r.name != "python":
                conda = True
        if self.base is not None:
            conda = conda or self.base.env_type is not EnvType.PYPI_ONLY
            pypi = pypi or self.base.env_type is not EnvType.CONDA_ONLY
        if conda and pypi:
            return EnvType.MIXED
        return EnvType.PYPI_ONLY if pypi else EnvType.CONDA_ONLY


@record
class ResolvedEnvironment:
    """A locked environment for one architecture: what the store keeps under ``envs/<arch>/<req>/<full>/env``."""

    req_id: str
    full_id: str
    arch: str
    env_type: EnvType
    deps: tuple[str, ...]
    sources: tuple[str, ...]
    extras: tuple[str, ...]
    packages: tuple[LockedPackage, ...]
    resolved_on: str
    resolved_by: str
    resolved_archs: tuple[str, ...]
    resolver: str = ""
    accurate_source: bool = True
    full_id_unique_keys: Mapping[str, str] = field(default_factory=dict)


@record
class ObjectInfo:
    """What a store knows of one object. ``version`` changes whenever the content is replaced."""

    key: str
    size: int
    version: str


# --- Protocols: the behaviour behind each record's factory -------------------------------------------


@runtime_checkable
class Resolver(Protocol):
    """Locks requirements into exact packages for one architecture."""

    def check(self) -> None:
        """Return if the backend can run here; else raise :class:`~envcore.errors.BackendUnavailable`."""

    def version(self) -> str:
        """The version of the tool doing the work (recorded in every resolved environment)."""

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        """Return the locked packages (a sequence, one per kind and name), conda packages in install order
        (dependencies first) and PyPI packages after them in any order (wheels are installed as one batch), or
        raise :class:`~envcore.errors.ResolutionError`."""


@runtime_checkable
class BatchResolver(Resolver, Protocol):
    """What a resolver implements to lock many environments in one call (a flow's): the core then asks it once
    for all the requests of a batch that need solving, instead of once per request from worker threads."""

    def resolve_batch(
        self, requests: Sequence[ResolveRequest]
    ) -> list[Sequence[LockedPackage] | EnvcoreError]:
        """One answer per request, in order: its packages (as :meth:`Resolver.resolve` returns them), or the
        error :meth:`Resolver.resolve` would raise for it."""


@runtime_checkable
class Installer(Protocol):
    """Puts verified local package files into a prefix. An installer whose class sets ``installs_any_arch =
    True`` runs nothing of what it installs (no link scripts, no interpreter): ``envcore create --arch`` uses it
    for an architecture that cannot run on this machine."""

    def check(self) -> None: ...

    def install(self, packages: Sequence[tuple[LockedPackage, Path]], prefix: Path) -> None:
        """Install ``(package, local file)`` pairs into ``prefix``; files are already hash-verified."""


@runtime_checkable
class InstallProgress(Protocol):
    """What an installer may implement so that a live progress bar moves while it works, when the tool it
    drives reports nothing until the end. Without it, the core counts what lands in the prefix's standard layout
    (``conda-meta/*.json``, new ``*.dist-info`` folders)."""

    def install_progress(
        self, packages: Sequence[tuple[LockedPackage, Path]], prefix: Path
    ) -> Callable[[], int]:
        """Called just before :meth:`Installer.install` of ``packages``: a count of those it has got through so
        far (read from outside, e.g. its cache; asked from another thread while it runs, never after)."""
        ...


@runtime_checkable
class CachingInstaller(Protocol):
    """What an installer implements when it links prefixes from unpacked copies of packages that it keeps
    between installs: a file edited in one prefix is edited in those copies too, and in every prefix made from
    them later. ``envcore create --verify`` calls :meth:`forget` with the package files it has just hashed again,
    before :meth:`Installer.install`: the installer drops its copies of them that differ from those files
    (waiting for other processes installing from them), so that they are unpacked anew."""

    def forget(self, packages: Sequence[tuple[LockedPackage, Path]]) -> None: ...


@runtime_checkable
class WheelBuilder(Protocol):
    """What a PyPI installer implements to let envcore use source distributions: build one into a wheel for
    this machine (the request gives the target python in ``python_version``, and the indexes, options and
    credentials for build dependencies)."""

    def build_wheel(self, sdist: Path, out_dir: Path, request: ResolveRequest) -> Path: ...


@runtime_checkable
class PackageFormat(Protocol):
    """Reads, checks and extracts one archive format."""

    def check(self, archive: Path) -> None:
        """Refuse a hostile or malformed archive (:class:`~envcore.errors.FormatError`) without extracting it."""

    def extract(self, archive: Path, dest: Path) -> None:
        """Extract into ``dest``; raise :class:`~envcore.errors.FormatError` on hostile or malformed content."""

    def metadata(self, archive: Path) -> Mapping[str, Any]:
        """The package's own metadata (conda ``info/index.json``, wheel ``METADATA`` fields)."""


@runtime_checkable
class Store(Protocol):
    """A flat key space of immutable-until-replaced objects. Keys use ``/`` and never start with it."""

    @property
    def url(self) -> str:
        """Where the store is, for messages; never contains credentials."""

    def stat(self, key: str) -> ObjectInfo | None: ...

    def open(self, key: str) -> AbstractContextManager[IO[bytes]]:
        """Stream an object; the call itself raises :class:`~envcore.errors.MissingObject` if absent (not the
        ``with`` block entered later)."""

    def get_file(self, key: str, dest: Path) -> None: ...

    def put_file(self, key: str, src: Path) -> ObjectInfo:
        """Atomically publish a file: readers see the old object or the whole new one."""

    def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_version: str | None = None
    ) -> ObjectInfo:
        """Atomic put; ``if_absent`` = create-if-absent, ``if_version`` = compare-and-swap.

        A lost condition raises :class:`~envcore.errors.PreconditionFailed`.
        """

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, recursively, in key order."""

    def delete(self, key: str) -> None: ...


@runtime_checkable
class NamingScheme(Protocol):
    """Computes environment ids and parses aliases."""

    def req_id(self, deps: Sequence[str], sources: Sequence[str], extras: Sequence[str]) -> str: ...

    def full_id(
        self, packages: Sequence[LockedPackage], arch: str, unique_keys: Mapping[str, str] | None = None
    ) -> str: ...

    def coresolved_full_id(self, per_arch: Mapping[str, Sequence[LockedPackage]]) -> str: ...


# --- Registration records -----------------------------------------------------------------------------


@record
class ResolverPlugin:
    """A resolver. ``env_types`` says which environments it can lock on its own; ``executables`` names the
    programs it drives, for people (``envcore plugins --check`` shows them): whether they can run here is
    what its ``check()`` says."""

    name: str
    env_types: frozenset[EnvType]
    factory: Callable[[Config], Resolver]
    summary: str
    capabilities: frozenset[Capability] = frozenset()
    executables: tuple[str, ...] = ()


@record
class InstallerPlugin:
    """An installer for one package kind (conda archives or wheels)."""

    name: str
    kind: PackageKind
    factory: Callable[[Config], Installer]
    summary: str


@record
class PackageFormatPlugin:
    """An archive format, known by its file extensions (``.conda``)."""

    name: str
    kind: PackageKind
    extensions: tuple[str, ...]
    factory: Callable[[], PackageFormat]
    summary: str = ""


@record
class StoragePlugin:
    """A store for one Metaflow datastore type (``local``, ``s3``, ``gs``, ``azure``)."""

    name: str
    factory: Callable[[str, Config], Store]
    summary: str
    root_setting: str = ""  # e.g. "CONDA_S3ROOT"; defaults to CONDA_<NAME>ROOT


@record
class NamingPlugin:
    name: str
    factory: Callable[[], NamingScheme]
    summary: str = ""


@record
class Setting:
    """A configuration key (without the ``METAFLOW_`` prefix) and how to read it."""

    name: str
    default: Any = None
    kind: str = "str"  # "str" | "int" | "float" | "bool" | "json"
    help: str = ""
    secret: bool = False
    choices: tuple[str, ...] | None = None
    minimum: float | None = None  # the least value of an "int" or "float" setting (e.g. 0 for a timeout)


@record
class CommandPlugin:
    """An extra ``envcore`` sub-command; ``summary`` is its line in ``envcore --help`` (listed without building
    the command)."""

    name: str
    factory: Callable[[], click.Command]
    summary: str = ""
