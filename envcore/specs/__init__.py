"""What the user asks for: decorator arguments, ``requirements.txt``, ``environment.yml`` and ``pyproject.toml``
turned into one :class:`Spec` (reference §1(a), §1(g)).

Decisions that differ from the original extension (reference §1(l)):

* ``environment.yml`` is parsed as YAML (the original's line parser silently misread flow style and bad
  indentation); a malformed file is an error naming the line.
* ``python="3.10"`` means ``3.10.*`` everywhere (decorators, files and ``--python`` alike), and an
  environment.yml entry ``numpy=1.21`` means ``1.21.*`` as it does for conda (the original read it as exactly
  1.21); with a build (``numpy=1.21=py311_0``) the version is exact, as conda reads it.
* ``--conda`` values are read as environment.yml dependencies and ``--pypi`` values as requirements.txt
  lines; a package given twice gets both constraints.
* ``--hash`` options of pip-compile output (and ``--require-hashes``) are ignored with a warning (hashes are not
  checked); ``-r FILE`` includes another requirements file, as pip reads it (the original refused it).
* ``@pypi(extras=...)`` is kept and enters the req id.
* A marker that cannot be decided for the target is an error naming the package, never silently dropped; so
  is one on the machine's kernel (``platform_release``, ``platform_version``), which a locked environment
  hydrated elsewhere cannot know.
* A key given twice in an environment.yml is an error (YAML loaders keep the last one, dropping the first
  list); ``defaults`` among its channels means the configured channels, as ``conda env export`` writes it;
  ``python=3.11.7=BUILD`` pins python and drops the build with a warning.
* Relative paths are read as the tools read them: ``--find-links`` beside the requirements file when there
  (pip), local projects in an environment.yml's pip section from the file's folder (conda runs pip there).
* Poetry's dependency tables keep what each key says (``git``/``tag``/``branch``/``rev``, ``url``, ``path``,
  ``markers``, ``python``, ``platform``, ``optional`` with ``[tool.poetry.extras]``); what envcore cannot keep
  (several constraints, unknown keys) is refused, and what it reads more loosely (a package's ``source``,
  ``[tool.uv.sources]``, explicit uv indexes) is said in a warning.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field, replace
from pathlib import Path
from typing import Any

from envcore import TYPE_CHECKING
from envcore.errors import SpecError, echoed
from envcore.frozen import record
from envcore.types import CONDA, NPCONDA, PYPI, SYS, Requirement

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet
# packaging is imported where PyPI requirements are parsed: compiling its grammars would cost every command,
# conda-only ones too, a fifth of its start-up

SYS_ALLOWED = ("__cuda", "__glibc")
# patterns are kept as text and compiled on first use through re's cache: compiled at import, those of the
# core's modules cost every command about 2 ms, most of them for what the command never parses
_CONDA_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_CONDA_ENTRY = r"(?P<name>[A-Za-z0-9_][A-Za-z0-9_.\-]*)\s*(?P<rest>.*)"  # after CHANNEL::
NODEFAULTS = "nodefaults"  # in a channel list, as conda reads it: do not add the default channels
DEFAULTS = "defaults"  # conda's default channels: here the configured ones, added after a spec's own anyway
_OPERATORS = ("==", ">=", "<=", "!=", "~=", ">", "<", "=")


@record
class Spec:
    """Requested packages (python apart), sources and resolver flags per category, and where they came from."""

    requirements: tuple[Requirement, ...] = ()
    sources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    extras: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    python: str | None = None
    origin: str = "the specification"
    warnings: tuple[str, ...] = ()
    # ``nodefaults`` among the channels: only these channels, not the configured ones
    nodefaults: bool = False


def _fail(what: str, where: str, fix: str) -> SpecError:
    from envcore.config import redact_text  # only on errors: no user:password@ of a URL in any message

    said = f" ({where})" if where and not what.startswith(where) else ""  # ("FILE must be ...": said once)
    return SpecError(redact_text(f"{what}{said}. {fix}"))


# --- single values -------------------------------------------------------------------------------------


_PYTHON_PART = r"(?:==|!=|>=|<=|~=|>|<|=)?\d+(?:\.\d+)*(?:\.\*)?"


def python_spec(value: str, where: str) -> str:
    """``3.10`` (or ``==3.10``) -> ``3.10.*`` and ``3`` -> ``3.*``; exact versions and ranges are kept."""
    text = str(value).replace(" ", "").removeprefix("==")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return f"{text}.*"
    if not all(re.fullmatch(_PYTHON_PART, part) for part in text.split(",")):
        raise _fail(
            f"{echoed(value)} is not a python version",
            where,
            "Write a version such as 3.11 (any 3.11.x), 3.11.7 or a range such as >=3.10,<3.12.",
        )
    return text


def conda_requirement(key: str, version: str, where: str, category: str = CONDA) -> Requirement:
    """A conda package from ``[channel::]name`` and a version (``1.2.3`` exact, ``>=1,<2`` a range, ``""`` any)."""
    channel, sep, name = key.strip().rpartition("::")  # the last '::': a channel URL has ':' in it
    name, channel = name.strip(), channel.strip()
    version = str(version).strip()
    if version:  # (most requirements give none: no pattern to compile for them, here and below)
        version = re.sub(r"^(?:==)?([0-9*][A-Za-z0-9_.*+!]*)=([A-Za-z0-9_.*]+)$", r"\1 \2", version)
    if not re.fullmatch(_CONDA_NAME, name) or (sep and not channel):
        raise _fail(f"Could not parse conda package {echoed(key)}", where, "Write NAME or CHANNEL::NAME.")
    if version in _OPERATORS:
        raise _fail(f"The version of {name} is {version} without a version", where, _CONDA_FORMS)
    if channel:
        from envcore.config import redact_channel

        # credentials (user:password@, a channel token) stay out of ids and descriptions
        channel = redact_channel(check_channel(channel, where))
    if version.startswith("==") and not any(c in version[2:] for c in "<>=!,|"):
        version = version[2:].strip()
    if version:  # "1.2.* build" keeps its space
        version = " ".join(re.sub(r"\s*([,|<>=!~]+)\s*", r"\1", version).split())
        version = re.sub(r"(^|[,|(])==([^,|() ]*\*)", r"\1\2", version)  # ==1.* is the glob 1.*
    if not _conda_version_ok(version):
        raise _fail(
            f"{echoed(version)} is not a conda version constraint for {name}",
            where,
            "Write an exact version (1.2.3), a range (>=1.2,<2) or a glob (1.2.*), optionally followed by a build "
            "string (1.2.3 py_0).",
        )
    return Requirement(category=category, name=name, spec=version, channel=channel or None)


_CONDA_TOKEN = r"(?:==|!=|>=|<=|~=|>|<|=)?[0-9*][A-Za-z0-9_.*+!]*"


def _conda_version_ok(version: str) -> bool:
    """A version spec (``1.2.3``, ``>=1,<2``, ``1.*|2.*``) and an optional build (letters, digits, ``_``, ``.``,
    ``*``: ``py3.11_cuda12.1_0`` as pytorch's), as conda and the default resolver (py-rattler) read them."""
    if not version:
        return True
    ver, _, build = version.partition(" ")
    if build and not re.fullmatch(r"[A-Za-z0-9_.*]+", build):
        return False
    return all(
        re.fullmatch(_CONDA_TOKEN, t) for t in re.split(r"[,|]", ver.replace("(", "").replace(")", ""))
    )


def match_spec(req: Requirement, channel_url: str | None = None) -> str:
    """``req`` as a conda MatchSpec string, for conda-compatible solvers: ``1.2.3`` is exact, operators and
    globs pass through; ``channel_url`` pins the package to that channel."""
    name = f"{channel_url}::{req.name}" if channel_url else req.name
    spec = req.spec.strip()
    if not spec:
        return name
    if spec.startswith(("=", "<", ">", "!", "~")) or any(c in spec for c in "*,|"):
        return f"{name} {spec}"
    return f"{name} =={spec}"


def sys_requirement(name: str, version: str, where: str) -> Requirement:
    name, version = name.strip(), str(version).strip()
    if name not in SYS_ALLOWED:
        raise _fail(
            f"System package {echoed(name)} not allowed",
            where,
            f"Values allowed are: {', '.join(SYS_ALLOWED)}.",
        )
    if not version:
        raise _fail(
            f"System package {echoed(name)} requires a version", where, f"Write {name}==VERSION, e.g. 2.27."
        )
    op = next((o for o in _OPERATORS if version.startswith(o)), "")
    if op not in ("", "=", "=="):
        raise _fail(
            f"System package {echoed(name)} requires a specific version not {echoed(version)}",
            where,
            f"Write {name}==VERSION.",
        )
    version = version[len(op) :].strip()
    if not re.fullmatch(_SYS_VERSION, version):
        raise _fail(
            f"System package {echoed(name)} has the version {echoed(version)}, which is not one",
            where,
            f"Write {name}==VERSION with numbers, e.g. {'12.4' if name == '__cuda' else '2.27'}.",
        )
    return Requirement(category=SYS, name=name, spec=version)


_SYS_VERSION = r"\d+(\.\d+)*(=[\w.]+)?"  # 2.27, or the original's 2.27=0


def _split_sys(text: str) -> tuple[str, str]:
    """``__glibc==2.27``, ``__glibc=2.27`` or ``__glibc 2.27`` -> (name, version); other operators are kept
    in the version so that :func:`sys_requirement` can name them."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_]+)\s*(.*?)\s*", text)
    name, rest = (match[1], match[2]) if match else (text.strip(), "")
    return name, rest


def _pypi_spec(specifier: SpecifierSet) -> str:
    specs = list(specifier)
    if len(specs) == 1 and specs[0].operator == "==":
        return specs[0].version  # "1.4.0" or "1.4.*", rendered name==1.4.0 as the original
    return str(specifier)


# a direct reference without a name: a VCS or archive URL, or a local path (absolute, ./, ../ or ~)
_MACHINE_MARKERS = r"\bplatform_(release|version)\b"  # os.uname(): not decidable for a target
_BARE_REFERENCE = r"^(git\+|hg\+|svn\+|bzr\+|https?://|file:|ssh://|\.{0,2}/|~/)"
_DIST_FILE = r"^[^\s;@<>=!~\[]+\.(whl|tar\.gz|zip)$"  # fx_core-1.0-py3-none-any.whl, a local file
_PATH_WITH_EXTRAS_OR_MARKER = r"(?P<ref>[^\s;\[]+?)\s*(?:\[(?P<extras>[^\]]*)\])?\s*(?:;\s*(?P<marker>.+))?"
_LOCAL_FOLDER = r"^(\.{1,2}|[^\s;@<>=!~\[]+/)$"  # ".", "..", "mypkg/": folders, as pip reads them


def _reference_url(text: str, where: str, base: Path | None = None) -> str:
    """A direct reference as a URL: a path (``/x``, ``./x``, ``~/x``, ``file:x``) becomes an absolute
    ``file://`` URL (relative to ``base``, by default the current directory, as pip reads it); other URLs must
    name a host."""
    from urllib.parse import unquote, urlsplit

    def absolute(path: Path) -> str:
        return Path(os.path.abspath(path if base is None else base / path)).as_uri()

    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*):", text)
    if scheme is None or len(scheme[1]) == 1:  # no scheme (or a Windows drive letter): a path
        return absolute(Path(text).expanduser())
    if scheme[1].lower() == "file":
        path = unquote(urlsplit(text).path)
        return text if path.startswith("/") else absolute(Path(path))
    if scheme[1].lower().endswith("+file"):  # a repository on this machine (git+file:///srv/repo@v1)
        if not urlsplit(text).path.startswith("/"):
            raise _fail(
                f"{echoed(text)} names a repository by a relative path",
                where,
                f"Write {scheme[1]}:///absolute/path.",
            )
        return text
    from envcore.config import parsed_url

    parts = parsed_url(text)
    if parts is None or not parts.hostname:
        raise _fail(
            f"{echoed(text)} is not a URL with a host",
            where,
            "Write NAME @ https://HOST/PATH or a local path.",
        )
    return text


def _directory_name(path: Path, url: str, where: str) -> str:
    """The project name a local directory declares in its pyproject.toml."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    try:
        name = tomllib.loads((path / "pyproject.toml").read_text("utf-8")).get("project", {}).get("name")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError):
        name = None
    if not isinstance(name, str) or not name.strip():
        raise _fail(
            f"Cannot tell the project name of the directory {path}: it has no [project].name in a pyproject.toml",
            where,
            f"Write NAME @ {url}.",
        )
    return name.strip()


def _reference_name(url: str, where: str) -> str:
    """The name of a direct reference without one: ``#egg=``, then the wheel or sdist file name, a local
    directory's pyproject.toml, or the repository of a VCS URL."""
    from urllib.parse import unquote, urlsplit

    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        parse_sdist_filename,
        parse_wheel_filename,
    )

    egg = re.search(r"[#&]egg=([A-Za-z0-9_.\-]+)", url)
    if egg:
        return egg.group(1)
    parts = urlsplit(url)
    filename = unquote(parts.path.rstrip("/").rsplit("/", 1)[-1])
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[0])
        if filename.endswith((".tar.gz", ".zip")):
            return str(parse_sdist_filename(filename)[0])
    except (InvalidWheelFilename, InvalidSdistFilename):
        raise _fail(
            f"{echoed(filename)} is not the file name of a wheel (NAME-VERSION-TAGS.whl) or a source distribution "
            "(NAME-VERSION.tar.gz)",
            where,
            f"Write NAME @ {url}.",
        ) from None
    if parts.scheme == "file" and Path(unquote(parts.path)).is_dir():
        return _directory_name(Path(unquote(parts.path)), url, where)
    if parts.scheme == "file" and not Path(unquote(parts.path)).exists():
        raise _fail(
            f"{unquote(parts.path)} does not exist",
            where,
            "Check the path (relative ones start from the current folder).",
        )
    if "+" in parts.scheme:  # git+https://host/org/repo.git@ref
        name = re.sub(r"\.git$", "", filename.split("@")[0])
        if name:
            return name
    raise _fail(f"Could not derive a package name from {echoed(url)}", where, f"Write NAME @ {url}.")


def _direct_reference(url: str, where: str) -> str:
    """``url`` checked for a direct reference: never with credentials (they would enter ids and
    descriptions)."""
    from urllib.parse import urlsplit

    from envcore.config import redact_text

    parts = urlsplit(url)
    secret_user = parts.password or (parts.username and not parts.scheme.endswith("ssh"))  # not ssh's git@
    if secret_user or redact_text(f"?{parts.query}") != f"?{parts.query}":
        raise _fail(
            f"The URL {echoed(url)} carries credentials, which envcore does not store in an environment's requirements",
            where,
            "Write the URL without user:password@ and give the credentials for its host in "
            'METAFLOW_CONDA_SRCS_AUTH_INFO (e.g. {"HOST": ["USER", "PASSWORD"]}).',
        )
    return url


def _check_specifier(text: str, specifier: SpecifierSet, where: str) -> None:
    """What packaging accepts but resolvers (uv, pip) reject: ``===`` without a version or with one they
    cannot read."""
    from packaging.version import InvalidVersion, Version

    for spec in specifier:
        if not spec.version:
            raise _fail(
                f"Could not parse {echoed(text)}: {spec.operator} has no version",
                where,
                "Write a PEP 508 requirement such as pandas>=2.1 or pandas==2.1.4.",
            )
        if spec.operator == "===":
            try:
                Version(spec.version)
            except InvalidVersion:
                raise _fail(
                    f"Could not parse {echoed(text)}: {echoed(spec.version)} is not a version",
                    where,
                    "Write a PEP 440 version, such as pandas===2.1.4 or pandas==2.1.4.",
                ) from None


def pypi_requirement(text: str, where: str, base: Path | None = None) -> Requirement:
    """A PEP 508 requirement, or a bare URL / path (``git+https://...``, ``./pkg``, ``/x/pkg-1.0.tar.gz``), as
    a PyPI requirement; paths become absolute ``file://`` URLs (relative ones read from ``base``, by default
    the current directory)."""
    text = text.strip()
    # ./pkg[extra], .[a], pkg/ ; python_version > "3"
    path_with = re.fullmatch(_PATH_WITH_EXTRAS_OR_MARKER, text)
    if path_with and (
        re.match(_BARE_REFERENCE, path_with["ref"]) or re.match(_LOCAL_FOLDER, path_with["ref"])
    ):
        url = _direct_reference(_reference_url(path_with["ref"], where, base), where)
        extras = f"[{path_with['extras']}]" if path_with["extras"] else ""
        marker = f" ; {path_with['marker']}" if path_with["marker"] else ""
        return pypi_requirement(f"{_reference_name(url, where)}{extras} @ {url}{marker}", where)
    if re.match(_BARE_REFERENCE, text) or re.match(_DIST_FILE, text) or re.match(_LOCAL_FOLDER, text):
        url = _direct_reference(_reference_url(text, where, base), where)
        return Requirement(category=PYPI, name=_reference_name(url, where), url=url)
    req = _plain_pep508(text) or _pep508(text, where)
    if req.name.lower() == "python":
        raise _fail(
            f"{echoed(text)} names python", where, "Set python with the python argument or setting instead."
        )
    if req.specifier is not None:
        _check_specifier(text, req.specifier, where)
    if req.marker and (machine_only := re.search(_MACHINE_MARKERS, req.marker)):
        raise _fail(
            f"The marker of {req.name} ({req.marker}) names {machine_only[0]}, the kernel of the machine that will "
            "run the environment, which a locked environment cannot know (it is hydrated on other machines)",
            where,
            "Remove that part of the marker, or choose by sys_platform, platform_machine or python_version.",
        )
    return Requirement(
        category=PYPI,
        name=req.name,
        spec="" if req.specifier is None else _pypi_spec(req.specifier),
        extras=tuple(sorted(req.extras)),
        marker=req.marker,
        url=_direct_reference(_reference_url(req.url, where, base), where) if req.url else None,
    )


# A name, extras and version specifiers, nothing else (no marker, no URL, no parentheses): most requirements.
# Parsed without packaging.requirements, whose import (with packaging.markers: their grammars are compiled
# then) costs ~10 ms a process; the specifiers are still packaging's. Anything else, or anything this cannot
# read, goes to packaging itself, which also words the errors.
_PLAIN_PEP508 = (
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
    r"(?:\[\s*(?P<extras>[A-Za-z0-9][A-Za-z0-9._-]*(?:\s*,\s*[A-Za-z0-9][A-Za-z0-9._-]*)*)?\s*\])?\s*"
    r"(?P<specifier>[<>=!~][^;@()\[\]]*)?"
)


class _Pep508Parts:
    # plain classes, not NamedTuples (this and _Reading): typing.NamedTuple compiles each one's __new__, ~0.8M
    # instructions when the module is imported, for two records read by name only
    __slots__ = ("extras", "marker", "name", "specifier", "url")

    def __init__(
        self,
        name: str,
        extras: frozenset[str],
        specifier: SpecifierSet | None,  # None: none written (and packaging.specifiers not imported)
        marker: str | None,
        url: str | None,
    ) -> None:
        self.name = name
        self.extras = extras
        self.specifier = specifier
        self.marker = marker
        self.url = url


def _plain_pep508(text: str) -> _Pep508Parts | None:
    """``text`` read as :class:`packaging.requirements.Requirement` reads it, when it is plain; else None."""
    plain = re.fullmatch(_PLAIN_PEP508, text)
    if plain is None or not all(part.strip() for part in (plain["specifier"] or "x").split(",")):
        return None  # (SpecifierSet, unlike a requirement, accepts an empty part: "x>=1,")
    specifier = None
    if plain["specifier"]:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            specifier = SpecifierSet(plain["specifier"])
        except InvalidSpecifier:
            return None
    extras = frozenset(e.strip() for e in (plain["extras"] or "").split(",") if e.strip())
    return _Pep508Parts(plain["name"], extras, specifier, None, None)


# conda's forms of a version, NAME=1.2 and NAME 1.2, where PEP 508 wants NAME==1.2
_CONDA_STYLE = r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:=|\s)\s*(?P<version>[0-9][A-Za-z0-9.*+!]*)"


def _pep508_fix(text: str) -> str:
    """How to write ``text``, which packaging refused, as a PEP 508 requirement: the likely intent of the
    mistakes users make most (conda's version forms, constraints without commas, two requirements on one line),
    else an example."""
    conda = re.fullmatch(_CONDA_STYLE, text)
    if conda:
        return (
            f"Write {conda['name']}=={conda['version']}: a PyPI requirement takes PEP 508's == for a version "
            f"({echoed(text)} is conda's form)."
        )
    head, *rest = text.split() or [""]
    plain = _plain_pep508(head)
    if rest and plain and all(w[0] in "<>=!~" for w in rest):
        return f"Separate the version constraints with commas: {head}{',' if plain.specifier else ''}{','.join(rest)}."
    if rest and plain and all(_plain_pep508(word) for word in rest):
        return "Write each requirement on a line of its own."
    return "Write a PEP 508 requirement such as pandas>=2.1."


def _pep508(text: str, where: str) -> _Pep508Parts:
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as Pep508

    try:
        req = Pep508(text)
    except InvalidRequirement as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "invalid requirement"
        raise _fail(f"Could not parse {echoed(text)}: {detail}", where, _pep508_fix(text)) from None
    return _Pep508Parts(
        req.name, frozenset(req.extras), req.specifier, str(req.marker) if req.marker else None, req.url
    )


def _pypi_decorator_requirement(key: str, version: str, where: str) -> Requirement:
    """A ``@pypi`` package: its version is a version (``1.4.0``: exactly it; ``1.4.*``: a prefix) or a
    specifier, optionally with more specifiers after a comma and a marker after ``;``, as the original reads it
    (and as ``req_parser`` writes ``pkg==1.0 ; python_version < "3.12"``: ``1.0;python_version < "3.12"``)."""
    specifier, semicolon, marker = str(version).strip().partition(";")
    first, comma, more = specifier.strip().partition(",")
    if first and first[0].isdigit() and first.endswith(".*"):
        first = f"=={first}"  # a prefix match, checked as a specifier below
    elif first and first[0].isalnum():  # a version (v2.0.0 is one), not a specifier, marker or @ URL
        from packaging.utils import canonicalize_version
        from packaging.version import InvalidVersion, Version

        try:
            first = "==" + canonicalize_version(Version(first))
        except InvalidVersion:
            raise _fail(
                f"{echoed(str(version).strip())} is not a valid version of {key}",
                where,
                "Write a PEP 440 version such as 1.4.0, or a specifier such as >=1.4,<2.",
            ) from None
    return pypi_requirement(f"{key}{first}{comma}{more}{semicolon}{marker}", where)


# --- decorators ----------------------------------------------------------------------------------------


def _canonical(version: object) -> str:
    """A PyPI decorator's version as the original keeps it (``packaging``'s ``canonicalize_version``: a version
    loses its trailing zeros, ``1.0.0`` -> ``1``; a specifier is kept as written)."""
    from packaging.utils import canonicalize_version

    return canonicalize_version(str(version))


def _as_stated(req: Requirement, version: str) -> Requirement:
    """``req`` hashed as the original hashes a decorator's package: its version text as written (leading
    blanks dropped), not normalised. (A URL is kept in envcore's form.)"""
    return req if req.url else replace(req, stated=version.lstrip())


def check_index(url: str, where: str) -> str:
    """A PyPI index URL (``http``, ``https`` or ``file``), else a :class:`SpecError` naming ``where``."""
    from envcore.config import parsed_url

    parts = parsed_url(url)
    if parts is None or parts.scheme not in ("http", "https", "file") or not (parts.netloc or parts.path):
        raise _fail(
            f"{echoed(url)} is not a package index URL",
            where,
            "Give an http://, https:// or file:// URL of a simple index, such as https://pypi.org/simple."
            + _ENCODE_HINT * ("@" in url),
        )
    refuse_secret_query(url, where)
    return url


def refuse_secret_query(url: str, where: str) -> None:
    """A channel, index or find-links URL whose query carries a secret (``?token=``, ``&sig=``...) is refused: the
    URL is kept in the environment's description and enters its ids, readable by everyone who reads the store."""
    from envcore.config import secret_query_names

    names = secret_query_names(url)
    if names:
        raise _fail(
            f"The URL {url} carries a secret in its query ({', '.join(names)})",
            where,
            "envcore keeps channel, index and find-links URLs in the environment's description and ids, readable "
            "by everyone who reads the store, so it does not use such URLs. Give the credentials as user:password@ "
            "in the URL, in METAFLOW_CONDA_SRCS_AUTH_INFO or in the keyring (METAFLOW_ENVCORE_KEYRING=auto), or a "
            "conda channel's token in its path (https://HOST/t/TOKEN/CHANNEL).",
        )


def check_channel(channel: str, where: str) -> str:
    """A conda channel: a name (``conda-forge``, ``conda-forge/label/dev``) or a URL that parses."""
    from envcore.config import parsed_url

    if "://" in channel:
        parts = parsed_url(channel)
        ok = parts is not None and bool(parts.scheme and (parts.netloc or parts.scheme == "file"))
        if ok:
            refuse_secret_query(channel, where)
    else:
        ok = bool(re.fullmatch(r"[A-Za-z0-9_.~/\-]+", channel))
    if not ok:
        raise _fail(
            f"{echoed(channel)} is not a conda channel",
            where,
            "Give a channel name (conda-forge) or a URL (https://conda.example.com/channel, file:///path)."
            + _ENCODE_HINT * ("@" in channel),
        )
    return channel


_ENCODE_HINT = (
    " A password in a URL must have its '/', '?', '#', '@' and ':' percent-encoded (%2F, %3F, %23, %40, %3A), "
    "or be given in METAFLOW_CONDA_SRCS_AUTH_INFO."
)


Located = tuple[str, str]  # (a value as given, where it was given)


def _sources(conda: Iterable[Located] = (), pypi: Iterable[Located] = ()) -> dict[str, tuple[str, ...]]:
    """Channels and indices, each checked once (naming where it was given), in order, without repeats."""
    found = {
        CONDA: tuple(
            dict.fromkeys(
                check_channel(c.strip(), where)
                for c, where in conda
                if c and c.strip() not in ("", NODEFAULTS, DEFAULTS)
            )
        ),
        PYPI: tuple(dict.fromkeys(check_index(p.strip(), where) for p, where in pypi if p and p.strip())),
    }
    return {k: v for k, v in found.items() if v}


def _nodefaults(conda: Iterable[Located]) -> bool:
    """``nodefaults`` among the channels: conda's word for "only these channels", never a channel itself."""
    return any(c and c.strip() == NODEFAULTS for c, _ in conda)


def from_decorator(
    *,
    libraries: Mapping[str, str] | None = None,
    packages: Mapping[str, str] | None = None,
    channels: Sequence[str] | None = None,
    extra_indices: Sequence[str] | None = None,
    extras: Sequence[str] | None = None,
    python: str | None = None,
    conda_only: Mapping[str, str] | None = None,
    sys_packages: Mapping[str, str] | None = None,
    origin: str = "@conda",
) -> Spec:
    reqs: list[Requirement] = []
    pinned_python = python
    for key, version in (libraries or {}).items():
        if key.rpartition("::")[2].strip() == "python":
            pinned_python = pinned_python or str(version)
            continue
        reqs.append(_as_stated(conda_requirement(key, version, f"in {origin}"), str(version)))
    reqs += [
        _as_stated(conda_requirement(k, v, f"in {origin}", NPCONDA), _canonical(v))
        for k, v in (conda_only or {}).items()
    ]
    reqs += [
        _as_stated(_pypi_decorator_requirement(k, v, f"in {origin}"), _canonical(v))
        for k, v in (packages or {}).items()
    ]
    reqs += [sys_requirement(k, v, f"in {origin}") for k, v in (sys_packages or {}).items()]
    flags = tuple(dict.fromkeys(e if e.startswith("-") else f"--{e}" for e in (extras or ())))
    conda = [(c, f"in {origin}") for c in channels or ()]
    conda += _credential_channels([*(libraries or {}), *(conda_only or {})], f"in {origin}")
    return Spec(
        requirements=tuple(reqs),
        sources=_sources(conda, [(i, f"in {origin}") for i in extra_indices or ()]),
        extras={PYPI: flags} if flags else {},
        python=python_spec(pinned_python, f"in {origin}") if pinned_python else None,
        origin=origin,
        nodefaults=_nodefaults(conda),
    )


def from_command_line(
    *,
    conda: Sequence[str] = (),
    pypi: Sequence[str] = (),
    channels: Sequence[str] = (),
    indices: Sequence[str] = (),
    sys_pkgs: Sequence[str] = (),
    constraints: Sequence[Path] = (),
) -> Spec:
    """``--conda`` values read as environment.yml dependencies, ``--pypi`` values as requirements.txt lines,
    ``--sys-pkg`` values as a requirements.txt's ``--sys-pkg`` lines, ``-c FILE`` as a requirements.txt's
    ``-c FILE`` line; a package given twice gets both constraints (AND-ed, as the original merges
    decorators)."""
    reqs: list[Requirement] = []
    python: str | None = None
    for item in conda:
        where = f"in --conda {echoed(item)}"
        key, version = _conda_entry(item, where)
        if key.rpartition("::")[2] == "python":
            found = python_spec(version, where) if version else None
            if found and python and found != python:
                raise _fail(
                    f"python is given twice with different versions ({python} and {found})",
                    where,
                    "Give python once.",
                )
            python = found or python
            continue
        reqs.append(conda_entry(item, where))
    reqs += [pypi_requirement(item, f"in --pypi {echoed(item)}") for item in pypi]
    reqs += [sys_requirement(*_split_sys(item), f"in --sys-pkg {echoed(item)}") for item in sys_pkgs]
    for option, values, what in (
        ("--channel", channels, "a channel name or URL"),
        ("--index", indices, "a URL"),
    ):
        if any(not v.strip() for v in values):  # e.g. --channel "$CHANNEL" with the variable unset
            raise _fail(f"{option} is given an empty value", "on the command line", f"Give it {what}.")
    conda_sources = [(c, f"in --channel {echoed(c)}") for c in channels]
    conda_sources += _credential_channels(conda, "in --conda")
    sources = _sources(conda_sources, [(i, f"in --index {echoed(i)}") for i in indices])
    flags = [
        flag
        for path in constraints
        for flag in _constraints(str(path), f"in -c {path}", None, None, frozenset(), os.environ)
    ]
    return Spec(
        requirements=combine(reqs),
        sources=sources,
        extras={PYPI: tuple(dict.fromkeys(flags))} if flags else {},
        python=python,
        origin="the command line",
        nodefaults=_nodefaults(conda_sources),
    )


# --- requirements.txt ----------------------------------------------------------------------------------


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(first line number, line) with continuations joined and comments removed."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        if joined:
            yield start, joined
    if pending.strip():
        yield start, pending.strip()


_ENV_VAR = r"\$\{([A-Z0-9_]+)\}"  # pip's (and uv's) ${NAME} in a requirements file


def _expand_variables(line: str, where: str, environ: Mapping[str, str]) -> str:
    """``${NAME}`` replaced by the environment variable NAME, as pip does (a token in an index URL, usually);
    unlike pip, an unset (or empty) variable is an error rather than text sent to an index."""

    def value(match: re.Match[str]) -> str:
        found = environ.get(match[1])
        if not found:
            raise _fail(
                f"{match[0]} names the environment variable {match[1]}, which is not set",
                where,
                f"Set {match[1]} before running envcore, or write the value itself.",
            )
        return found

    return re.sub(_ENV_VAR, value, line) if "${" in line else line


_CONSTRAINT = ("-c", "--constraint")
_BINARY = ("--only-binary", "--no-binary")
_VALUED_OPTIONS = frozenset(
    ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "--conda-channel")
) | {"--conda-pkg", "--sys-pkg", "-r", "--requirement", *_CONSTRAINT, *_BINARY}
_INCLUDE = ("-r", "--requirement")
_REFUSED_OPTIONS = {
    ("-e", "--editable"): (
        "is an editable install, which a locked environment cannot hold: it points into a working copy on this "
        "machine, and the environment is hydrated on others",
        "Write the path or URL without -e (. or ./pkg) to have the project built into a wheel and locked, or "
        "leave the line out (uv export --no-emit-project leaves out the project itself).",
    ),
}


def _option(line: str) -> tuple[str, str]:
    """(option, value) of a requirements file's option line, as pip splits it: ``--name VALUE``,
    ``--name=VALUE``, ``-x VALUE``, ``-xVALUE``; ("", "") for a requirement."""
    long = re.fullmatch(r"(--[a-z][a-z-]*)(?:(?:=|\s+)(.*))?", line)
    if long:
        return long[1], (long[2] or "").strip()
    short = re.fullmatch(r"(-[A-Za-z])\s*=?\s*(.*)", line)
    return (short[1], short[2].strip()) if short else ("", "")


def _find_links(value: str, base: Path | None, where: str) -> str:
    """A ``--find-links`` location as pip reads it from a file: a relative path is taken beside the file when it
    is there (else from the current directory); paths are written absolute (the same text, the same place)."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]+:", value):
        from envcore.config import parsed_url

        if parsed_url(value) is None:
            raise _fail(f"{echoed(value)} is not a URL", where, "Give --find-links a URL or a folder.")
        return value
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None and (base / path).exists():
        path = base / path
    return os.path.abspath(path)


def _refuse_explicit(text: str, origin: str) -> None:
    """A conda explicit file (``@EXPLICIT`` and package URLs, as ``show --format explicit`` writes) is named as
    such: it is a list of files for one arch, not requirements."""
    if re.search(r"^@EXPLICIT\s*$", text, re.MULTILINE):
        raise _fail(
            f"{origin} is a conda explicit file (@EXPLICIT), a list of package files for one arch, not "
            "requirements",
            "",
            "Give it with --explicit FILE to install exactly its packages, or resolve from the requirements it "
            "was made from (resolve --from ENV for the environment it was exported from).",
        )


def _included(
    value: str, where: str, base: Path | None, folder: str | None, seen: frozenset[Path], **kw: Any
) -> Spec:
    """The requirements file that ``-r FILE`` names, read as pip reads it: a relative path from the folder of
    the file that names it (``base``; else the current folder). ``folder`` is that folder as messages name it
    (None: by its absolute path); ``seen``, the files being read (a cycle is an error); ``kw``, the rest of
    :func:`parse_requirements_txt`'s options."""
    path, shown = _named_file("-r", value, where, base, folder, seen)
    kw.update(base=path.parent, _seen=seen | {path}, _folder=os.path.dirname(shown))
    return parse_requirements_txt(read_text(path, shown), shown, **kw)


def _binary_choice(option: str, value: str, where: str) -> str:
    """The value of ``--only-binary`` / ``--no-binary`` as pip takes it: ``:all:``, ``:none:`` or package names
    separated by commas (written canonical and sorted: the same choice, the same req id)."""
    if value in (":all:", ":none:"):
        return value
    names = [n.strip() for n in value.split(",")]
    if not all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", n) for n in names):
        raise _fail(
            f"{option} {value} names no packages: it takes :all:, :none: or package names separated by commas",
            where,
            f"Write {option} :all: or {option} name1,name2.",
        )
    return ",".join(sorted({_normalized(n) for n in names}))


def _named_file(
    option: str, value: str, where: str, base: Path | None, folder: str | None, seen: frozenset[Path]
) -> tuple[Path, str]:
    """The file a ``-r FILE`` or ``-c FILE`` line names, and that file as messages show it (see :func:`_included`)."""
    from urllib.parse import unquote, urlsplit

    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]+:", value):  # (pip reads -r file:x.txt, and URLs)
        if not value.lower().startswith("file:"):
            raise _fail(
                f"{option} {value} names a file by a URL other than file:, which envcore does not download",
                where,
                "Download it and give its path, so that what is resolved is what you reviewed.",
            )
        value = unquote(urlsplit(value).path)
    path = Path(os.path.abspath((base or Path.cwd()) / Path(value).expanduser()))
    if path in seen:
        raise _fail(
            f"{option} {value} includes {path}, which is already being read: the "
            f"{'requirement' if option == '-r' else 'constraints'} files include each other",
            where,
            f"Remove one of the {option} lines of the cycle.",
        )
    shown = str(path) if folder is None else os.path.normpath(os.path.join(folder, os.path.expanduser(value)))
    if not path.is_file():
        raise _fail(
            f"{option} {value} names {path}, which {'is a folder' if path.is_dir() else 'does not exist'}",
            where,
            "Check the path; a relative one is read from the folder of the file that names it, as pip reads it.",
        )
    return path, shown


def _constraints(
    value: str,
    where: str,
    base: Path | None,
    folder: str | None,
    seen: frozenset[Path],
    environ: Mapping[str, str],
) -> list[str]:
    """The constraints of the file that ``-c FILE`` names, each as the request's PyPI option
    ``--constraint=NAME<SPEC ; MARKER`` (:func:`envcore.pypi.user_constraints` reads them), as pip reads a
    constraints file: versions of packages that are installed only if something requires them
    (a constraints file's own ``-c`` lines too). A constraint names a package and versions: no extras, no URL
    or path (pip refuses those as well), no other option."""
    from envcore.pypi import CONSTRAINT_OPTION, pep508

    path, shown = _named_file("-c", value, where, base, folder, seen)
    found: list[str] = []
    for number, line in _logical_lines(read_text(path, shown).removeprefix("\ufeff")):
        at = f"line {number} of {shown}"
        line = _expand_variables(line, at, environ)
        option, inner = _option(line)
        if option in _CONSTRAINT and inner:
            found += _constraints(inner, at, path.parent, os.path.dirname(shown), seen | {path}, environ)
            continue
        if line.startswith("-"):
            raise _fail(
                f"{echoed(line)} is an option, which a constraints file cannot hold (only -c FILE)",
                at,
                "Move the option to the requirements file, or remove it.",
            )
        line = re.sub(r"\s+--hash(?:=|\s+)\S*", "", line)
        reference = any(re.match(form, line) for form in (_BARE_REFERENCE, _DIST_FILE, _LOCAL_FOLDER))
        req = None if reference else pypi_requirement(line, at)
        if req is None or req.url or req.extras:
            raise _fail(
                f"{echoed(line)} has {'extras' if req and not req.url else 'a URL or path'}, which a constraint "
                "cannot have (pip refuses them too): a constraint names a package and the versions it may take",
                at,
                "Write the package's name with a version range (for example fx-core<2), or move the line to the "
                "requirements file.",
            )
        if req.spec or req.marker:  # (the name canonical: the same constraint, the same req id)
            canonical = replace(req, name=_normalized(req.name))
            found.append(CONSTRAINT_OPTION + pep508(canonical))
    return found


_FROZEN_FIX = (
    "pip freeze writes such lines for packages conda or a build installed: write {name}==VERSION instead (pip list "
    "--format=freeze prints them so), or correct the path."
)


def _existing(req: Requirement, where: str, fix: str = _FROZEN_FIX) -> Requirement:
    """``req``, unless it is ``NAME @ file://PATH`` and PATH is not on this machine, which the resolver would only
    report as a distribution not found, without the line (``pip freeze`` writes such lines for what conda or a
    build installed: ``@ file:///home/conda/feedstock_root/...``). Checked where files are read, not for
    decorators, which a remote task reads again where local paths are not."""
    from urllib.parse import unquote, urlsplit

    if (
        req.url
        and req.url.startswith("file:")
        and not os.path.exists(path := unquote(urlsplit(req.url).path))
    ):
        raise _fail(
            f"{req.name} @ {req.url} names {path}, which does not exist on this machine",
            where,
            fix.format(name=req.name),
        )
    return req


_PATH_FIX = "Correct the path (a relative one is read from the folder of {origin})."
_PROJECT_PATH_FIX = "Correct the path (a relative one is read from the project's folder)."


def parse_requirements_txt(
    text: str,
    origin: str = "requirements.txt",
    *,
    unit: str = "line",
    environ: Mapping[str, str] | None = None,
    base: Path | None = None,
    paths_from_base: bool = False,
    _seen: frozenset[Path] = frozenset(),
    _folder: str | None = None,
) -> Spec:
    """A requirements file as pip reads it (the options envcore can honour; see the error for the others), with
    ``${NAME}`` replaced by the variable NAME of ``environ`` (default: this process's). ``unit`` names what the
    numbers count (``entry`` for the pip section of an environment.yml). ``base`` is the file's folder:
    relative ``--find-links`` and ``-r`` paths are read from there (as pip does; ``--find-links`` only when
    there), and, with ``paths_from_base``, local project paths too (conda runs pip from an environment.yml's
    folder; pip itself reads them from the current directory). ``-r FILE`` brings in that file's requirements,
    sources and options where the line is."""
    _refuse_explicit(text, origin)
    environ = os.environ if environ is None else environ
    reqs: list[Requirement] = []
    conda_sources: list[Located] = []
    pypi_sources: list[Located] = []
    flags: list[str] = []
    warnings: list[str] = []
    hashed: list[str] = []
    python: str | None = None
    included: list[Spec] = []
    for number, line in _logical_lines(text.removeprefix("\ufeff")):
        where = f"{unit} {number} of {origin}"
        line = _expand_variables(line, where, environ)
        option, value = _option(line)
        refused = next((said for names, said in _REFUSED_OPTIONS.items() if option in names), None)
        if refused:
            raise _fail(f"{echoed(line)} {refused[0]}", where, refused[1])
        if option in _VALUED_OPTIONS and not value:
            raise _fail(f"{option} has no value", where, f"Write {option} VALUE on one line.")
        if option in _VALUED_OPTIONS - {"--conda-pkg", "--sys-pkg"} and len(value.split()) > 1:
            raise _fail(
                f"{echoed(line)} gives {option} more than one value (or another option after it)",
                where,
                "Write each option on a line of its own.",
            )
        if option in _CONSTRAINT:
            found = _constraints(value, where, base, _folder, _seen, environ)
            flags += found
        elif option in _INCLUDE:
            kw = {"environ": environ, "paths_from_base": paths_from_base}
            included.append(_included(value, where, base, _folder, _seen, **kw))
            reqs += included[-1].requirements
        elif option == "--require-hashes" and not value:
            hashed.append(where)
        elif option in ("--pre", "--no-index", "--prefer-binary") and not value:
            flags.append(option)
        elif option in _BINARY:
            flags.append(f"{option} {_binary_choice(option, value, where)}")
        elif option in ("-i", "--index-url"):
            from envcore.config import redact_text

            warnings.append(
                redact_text(
                    f"{option} {value} ({where}) is ignored: the main index comes from CONDA_DEFAULT_PYPI_SOURCE "
                    "or pip's configuration; use --extra-index-url to add an index."
                )
            )
        elif option == "--extra-index-url" and value:
            pypi_sources.append((value, where))
        elif option in ("-f", "--find-links"):
            refuse_secret_query(value, where)
            flags.append(f"--find-links {_find_links(value, base, where)}")
        elif option == "--trusted-host":
            flags.append(f"{option} {value}")
        elif option == "--conda-channel" and value:
            conda_sources.append((value, where))
        elif option == "--conda-pkg" and value:
            # NAME=VER is exact here, as the original reads it (its req ids too); elsewhere conda's 1.0.*
            reqs.append(conda_entry(re.sub(_SINGLE_EQUALS, r"\1==", value), where, NPCONDA))
            conda_sources += _credential_channels([value], where)
        elif option == "--sys-pkg" and value:
            reqs.append(sys_requirement(*_split_sys(value), where))
        elif line.startswith("-"):
            raise _fail(
                f"{echoed(line)} is not a supported line in a requirements.txt",
                where,
                "Supported options: -r/--requirement, -c/--constraint, --extra-index-url, -i/--index-url, "
                "-f/--find-links, --trusted-host, --pre, --no-index, --only-binary, --no-binary, --prefer-binary, "
                "--conda-channel, --conda-pkg, --sys-pkg, and --hash after a requirement and --require-hashes "
                "(both ignored).",
            )
        else:
            line, hashes = re.subn(r"\s+--hash(?:=|\s+)\S*", "", line)
            if hashes:
                hashed.append(where)
            if re.match(r"^python\s*[<>=!~]", line) or line == "python":
                python = python_spec(line[len("python") :], where) if line != "python" else python
            else:
                reqs.append(
                    _existing(pypi_requirement(line, where, base if paths_from_base else None), where)
                )
    if hashed:
        warnings.append(
            f"The --hash options of {origin} ({hashed[0]}{' and others' if len(hashed) > 1 else ''}) are ignored: "
            "envcore resolves the requirements again and records and verifies the hash of every file it locks, "
            "but does not check the hashes of a requirements file. Use --pylock FILE to install exactly what a "
            "lock file pins."
        )
    own = Spec(
        origin=f"the requirements file {origin}",
        sources=_sources(conda_sources, pypi_sources),
        extras={PYPI: tuple(dict.fromkeys(flags))} if flags else {},
        python=python,
        warnings=tuple(warnings),
        nodefaults=_nodefaults(conda_sources),
    )
    merged = merge(own, *included)  # (python must agree; sources and options of every file, in order)
    return replace(
        merged,
        requirements=combine(reqs),  # a package on two lines gets both constraints (as --pypi twice)
        origin=f"the requirements file {origin}",
        warnings=(*(w for spec in included for w in spec.warnings), *warnings),
    )


# --- environment.yml and --conda -----------------------------------------------------------------------


def _split_build(text: str) -> tuple[str, str]:
    """``1.2.3 py_0`` or ``1.2.3=py_0`` -> (``1.2.3``, ``py_0``); a version alone -> (version, "")."""
    text = " ".join(re.sub(r"\s*([,|<>=!~]+)\s*", r"\1", text).split())
    if " " in text:
        version, _, build = text.partition(" ")
        return version, build
    match = re.fullmatch(r"(.*[^=<>!~,|])=([^=<>!~,|]+)", text)
    return (match[1], match[2]) if match else (text, "")


def _entry_version(rest: str) -> str:
    """The version part of a conda entry, as conda reads it: ``=1.0`` is ``1.0.*``, ``==1.0`` and `` 1.0`` are
    exact, `` >=1.0`` and ``= >=1.0`` are ranges, and a version followed by a build (``=1.0=py_0``,
    ``==1.0=py_0``, `` 1.0 py_0``) is exact: ``1.0 py_0``."""
    rest = rest.strip()
    if not rest or rest in _OPERATORS:
        return rest  # no version (most entries: no pattern to compile), or an operator without one (refused)
    fuzzy = rest.startswith("=") and not rest.startswith("==")
    version, build = _split_build(rest[1:] if fuzzy else rest)
    if version.startswith("==") and not version[2:].startswith(("<", ">", "!", "~", "=")):
        version = version[2:]
    elif fuzzy and not build and re.match(r"^[\d*]", version) and not re.search(r"[*,|]", version):
        version = f"{version}.*"  # conda's pkg=1.21 means 1.21.*
    return f"{version} {build}" if build else version


_CONDA_FORMS = "Write NAME, NAME=1.2 (any 1.2.x), NAME==1.2.3, NAME>=1.2,<2 or NAME=1.2.3=BUILD."


def _conda_entry(text: str, where: str) -> tuple[str, str]:
    """``[channel::]name[version]`` as conda reads an environment.yml dependency -> (key, version). The
    channel ends at the last ``::``, so a URL (``https://host/chan::pkg``, ``file:///path::pkg``) is one."""
    text = _without_brackets(str(text).strip(), where)
    channel, sep, rest = text.rpartition("::")
    match = re.fullmatch(_CONDA_ENTRY, rest.strip())
    if not match or (sep and not channel.strip()):
        raise _fail(f"Could not parse conda package {echoed(text)}: it is not a package", where, _CONDA_FORMS)
    key = (channel.strip() + "::" if sep else "") + match["name"]
    return key, _entry_version(match["rest"])


# (compiled at their first use, by re's cache: most conda entries have no brackets)
_BRACKETED = r"(?P<head>[^\[\]]*?)\s*\[(?P<body>[^\[\]]*)\]"
_BRACKET_PAIR = r"\s*(\w+)\s*=\s*(?:'([^']*)'|\"([^\"]*)\"|([^,'\"\s]+))\s*(?:,|$)"


def _without_brackets(text: str, where: str) -> str:
    """Conda's bracket form (``numpy[version='>=1.20,<2', build=py*]``, ``numpy[channel=conda-forge]``) in the
    plain one (``conda-forge::numpy >=1.20,<2 py*``); any other text as it is."""
    match = re.fullmatch(_BRACKETED, text) if "[" in text else None
    if match is None:
        return text
    fields: dict[str, str] = {}
    body = match["body"]
    position = 0
    while position < len(body.rstrip()):
        pair = re.compile(_BRACKET_PAIR).match(body, position)
        if pair is None or pair.end() == position:
            raise _fail(
                f"Could not parse the brackets of {echoed(text)}", where, "Write NAME[version='>=1.2,<2']."
            )
        fields[pair[1]] = next(v for v in pair.groups()[1:] if v is not None)
        position = pair.end()
    unknown = sorted(set(fields) - {"version", "build", "channel"})
    head = match["head"]
    channel = fields.get("channel")
    written_version = re.fullmatch(_CONDA_ENTRY, head.rpartition("::")[2].strip())
    if (
        unknown
        or ("version" in fields and written_version and written_version["rest"])
        or (channel and "::" in head)
    ):
        raise _fail(
            f"Could not read {echoed(text)}: "
            + (f"the key {unknown[0]!r} is not one envcore reads" if unknown else "it gives a thing twice"),
            where,
            "Give the version, build and channel once: NAME[version='>=1.2,<2', build=py_0, channel=conda-forge].",
        )
    version = fields.get("version", "")
    build = fields.get("build")
    plain = f"{channel}::{head}" if channel else head
    if build:
        plain += f" {version or '*'} {build}"
    elif version:
        plain += f" {version}" if version[0] in "<>=!~" else f"=={version}"
    return plain


def _credential_channels(keys: Iterable[str], where: str) -> list[Located]:
    """The channel URLs of ``CHANNEL::NAME`` keys that carry credentials (``user:password@`` or a conda token
    ``/t/<TOKEN>/``), for the spec's sources: the resolver takes the credentials of sources (and searches a
    package's channel, as conda does), while the requirement itself keeps the URL without them."""
    from urllib.parse import urlsplit

    from envcore.config import conda_token

    found: list[Located] = []
    for key in keys:
        channel = str(key).rpartition("::")[0].strip()
        if "://" in channel and ("@" in channel or "/t/" in channel):
            try:
                if urlsplit(channel).username or conda_token(channel):
                    found.append((channel, where))
            except ValueError:
                continue  # checked (and reported) by conda_requirement
    return found


_SINGLE_EQUALS = r"^([^\s=<>!~]+)\s*=\s*(?=[^=<>!~\s])"


def conda_entry(text: str, where: str, category: str = CONDA) -> Requirement:
    """One conda dependency written as in an environment.yml (also ``--conda`` and ``--conda-pkg``)."""
    key, version = _conda_entry(text, where)
    channel = key.rpartition("::")[0]
    if channel:
        check_channel(channel, where)  # a bad channel is named as such, not as a bad version
    try:
        return conda_requirement(key, version, where, category)
    except SpecError:
        written = re.fullmatch(_CONDA_ENTRY, str(text).strip().rpartition("::")[2].strip())
        raise _fail(
            f"Could not parse conda package {echoed(str(text).strip())}: {echoed(written['rest'] if written else version)} is "
            "not a conda version constraint",
            where,
            _CONDA_FORMS,
        ) from None


def _string_list(value: object, what: str, where: str, example: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(
            f"{what} must be a list of strings, not {echoed(value)}",
            where,
            f"Write {example}.",
        )
    return value


ALIAS_REFUSED = "which envcore expands only as a merge key's value (<<: *name)"


def _load_yaml(text: str) -> object:
    """``yaml.safe_load``, except that a key given twice in one mapping is an error (PyYAML keeps the last
    value: a second ``dependencies:`` would silently drop the first list), and so is an alias (``*name``)."""
    import yaml  # only for environment.yml: a quarter of the CLI's start-up otherwise
    from yaml.constructor import ConstructorError

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
            """Refuses an alias (a few of them, expanded, make a file of gigabytes), but as the value of a merge key
            (``<<: *name``), which is flattened into one mapping; ``index`` is a mapping value's key node."""
            merged = getattr(index, "tag", None) == "tag:yaml.org,2002:merge"
            if self.check_event(yaml.AliasEvent) and not merged:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"it uses the YAML alias *{event.anchor}, {ALIAS_REFUSED}", event.start_mark
                )
            return super().compose_node(parent, index)

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
            seen: set[object] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)):
                    continue  # (an unhashable key is the constructor's own error)
                if key in seen:
                    raise ConstructorError(
                        None, None, f"the key {echoed(key)} is given twice", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep)

    return yaml.load(text, Loader=StrictLoader)  # (a SafeLoader)


def _item_lines(text: str, key: str) -> list[int]:
    """The line of each item of the list under the top-level ``key`` of a YAML text (for errors)."""
    import yaml

    try:
        root = yaml.compose(text.removeprefix("\ufeff"), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    if isinstance(root, yaml.MappingNode):
        for name, value in root.value:
            if name.value == key and isinstance(value, yaml.SequenceNode):
                return [item.start_mark.line + 1 for item in value.value]
    return []


def _check_section(entry: Mapping[object, object], where: str, *, followed: bool) -> None:
    """A ``- pip:`` (or ``- sys:``) section that YAML read otherwise than meant: packages not indented under it
    (an empty section, then dependencies that would be read as conda packages), or ``NAME: VERSION`` lines
    (keys beside it)."""
    key = "pip" if "pip" in entry else "sys"
    others = [k for k in entry if k not in ("pip", "sys")]
    example = f"'- {key}:' followed by '- NAME' lines indented under it (deeper than the '-' before {key}:)"
    if others:
        raise _fail(
            f"The {key} section is followed by {echoed(others[0])}: ..., which YAML reads as a key beside {key}:, "
            "not as a package",
            where,
            f"Write its packages as a list: {example}.",
        )
    if entry[key] is None and followed:
        raise _fail(
            f"The {key} section is empty, and the dependencies after it would be read as conda packages",
            where,
            f"If they are meant for {key}, write {example}; else remove the empty '- {key}:'.",
        )


def parse_environment_yml(text: str, origin: str = "environment.yml", *, base: Path | None = None) -> Spec:
    """An environment.yml as conda reads it; ``base`` is its folder, where relative paths of PyPI packages are
    read from (conda runs pip there)."""
    import yaml

    _refuse_explicit(text, origin)
    try:
        data = _load_yaml(text.removeprefix("\ufeff"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}, column {mark.column + 1} of {origin}" if mark else origin
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        verdict, fix = (
            ("is ambiguous", "Keep one of them, with all their entries.")
            if "given twice" in problem
            else ("is refused", "Write the value out where the alias is.")
            if ALIAS_REFUSED in problem
            else ("is not valid YAML", "Fix the indentation or quoting there.")
        )
        raise _fail(f"{origin} {verdict}: {problem}", line, fix) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail(
            f"{origin} must be a mapping with channels and dependencies",
            origin,
            "See the conda environment file format.",
        )
    if {"package", "metadata"} <= set(data) and "dependencies" not in data:
        raise _fail(
            f"{origin} is a conda-lock lock file (metadata and package), a list of locked packages, not an "
            "environment file",
            "",
            "Resolve from the environment.yml it was made from (its metadata.sources names it).",
        )
    warnings = [
        f"The section {echoed(key)} of {origin} is ignored (envcore reads name, channels, dependencies and "
        "pypi-indices)."
        for key in data
        if key not in ("name", "channels", "dependencies", "pypi-indices")
    ]

    def strings(key: str) -> list[str]:
        return _string_list(data.get(key), f"{key} in {origin}", origin, f"{key}: followed by '- item' lines")

    dependencies = data.get("dependencies")
    if dependencies is not None and not isinstance(dependencies, list):
        raise _fail(
            f"dependencies in {origin} must be a list, not {echoed(dependencies)}",
            origin,
            "Write dependencies: followed by '- NAME[=VERSION]' lines.",
        )
    reqs: list[Requirement] = []
    channel_keys: list[str] = []
    pip_lines: list[str] = []
    pip_at = 0
    python: str | None = None
    python_entries = 0
    lines = _item_lines(text, "dependencies")
    for i, entry in enumerate(dependencies or []):
        where = f"line {lines[i]} of {origin}" if i < len(lines) else f"dependencies of {origin}"
        if isinstance(entry, dict) and set(entry) & {"pip", "sys"}:
            _check_section(entry, where, followed=i + 1 < len(dependencies or []))
            pip_at = len(reqs) if not pip_lines else pip_at  # its requirements go where the section is
            pip_lines += _string_list(
                entry.get("pip"),
                "pip",
                where,
                "'- pip:' followed by '- NAME' lines (quote an entry with ': ' in it)",
            )
            for item in _string_list(entry.get("sys"), "sys", where, "'- sys:' followed by '- __glibc=2.27'"):
                reqs.append(sys_requirement(*_split_sys(item), f"sys dependencies of {origin}"))
            continue
        if not isinstance(entry, str) or not entry.strip():
            what = (
                "A dependency is empty"
                if entry is None
                else f"The dependency {echoed(entry)} is a boolean (YAML reads yes, no, on, off so), not a package name"
                if isinstance(entry, bool)
                else f"The dependency {echoed(entry)} is a number, not a package name"
                if isinstance(entry, (int, float))
                else f"The dependency {echoed(entry)} is not understood"
            )
            raise _fail(
                what,
                where,
                "Write '- NAME[=VERSION]', '- pip:' or '- sys:'; quote a value YAML would read as a number or a "
                "boolean.",
            )
        text = entry.strip()
        if "::" not in text and re.match(_BARE_REFERENCE, text):  # CHANNEL_URL::NAME is a conda package
            reqs.append(
                _existing(pypi_requirement(text, where, base), where, _PATH_FIX.format(origin=origin))
            )
            continue
        key, version = _conda_entry(text, where)
        channel, _, name = key.rpartition("::")
        if name == "python":
            if channel:
                warnings.append(
                    f"The channel {channel} of python in {origin} is not kept: python comes from the environment's "
                    "channels."
                )
            python_entries += 1
            if python_entries > 1:
                raise _fail(
                    "Python versions specified multiple times in the YAML file",
                    origin,
                    "Keep one python entry.",
                )
            version, _, build = version.partition(
                " "
            )  # python=3.11.7=h0_cpython, as `conda env export` writes
            if build:
                warnings.append(
                    f"The build {build} of python in {origin} is not kept: envcore pins python {version} and the "
                    "resolver picks a build of it for the target."
                )
            python = python_spec(version, where) if version else None
            continue
        reqs.append(conda_entry(text, where))
        channel_keys.append(text)
    channels = [(c, origin) for c in strings("channels")]
    channels += _credential_channels(channel_keys, f"dependencies of {origin}")
    spec = Spec(
        requirements=combine(reqs),
        sources=_sources(channels, [(i, origin) for i in strings("pypi-indices")]),
        python=python,
        origin=f"the environment file {origin}",
        warnings=tuple(warnings),
        nodefaults=_nodefaults(channels),
    )
    if not pip_lines:
        return spec
    # conda hands the pip section to pip as a requirements file: its options (--extra-index-url, --pre,
    # --find-links...) are read as in one
    pip = parse_requirements_txt(
        "\n".join(pip_lines),
        f"the pip section of {origin}",
        unit="entry",
        base=base,
        paths_from_base=True,
        _folder=None if base is None else os.path.dirname(origin),
    )
    merged = merge(spec, pip)
    return replace(
        merged, requirements=combine([*reqs[:pip_at], *pip.requirements, *reqs[pip_at:]]), origin=spec.origin
    )


# --- pyproject.toml ------------------------------------------------------------------------------------


def _platform_marker(platform: str) -> str:
    """Poetry's ``platform = "linux"`` (``"!=win32"``, ``"linux || darwin"``) as a marker."""
    alternatives = []
    for alternative in platform.split("||"):
        negated = alternative.strip().startswith("!=")
        value = alternative.strip().removeprefix("!=").strip()
        alternatives.append(f'sys_platform {"!=" if negated else "=="} "{value}"')
    return " or ".join(alternatives)


def _poetry_constraint(value: str, name: str = "python", where: str = "") -> str:
    """Poetry's ``^1.2.3`` / ``~1.2`` / ``*`` / ``1.2`` / ``>=1 <2`` as a PEP 440 specifier."""
    value = value.strip()
    if value in ("", "*"):
        return ""
    if "||" in value:
        raise _fail(
            f"The version of {name} ({value}) is an alternative (||), which a PEP 440 specifier cannot say",
            where,
            "Give one range, or use markers to choose by platform or python.",
        )
    if re.search(r"\d\s+[<>=!~^]", value):  # ">=1 <2": poetry's space is a comma
        return ",".join(_poetry_constraint(part, name, where) for part in value.split())
    if value[0] in "^~" and value[1:2] != "=":
        parts = [int(p) for p in value[1:].split(".") if p.isdigit()]
        if not parts:
            return value
        if value[0] == "^":
            idx = next((i for i, p in enumerate(parts) if p != 0), len(parts) - 1)
        else:
            idx = min(1, len(parts) - 1) if len(parts) > 1 else 0
        upper = [*parts[:idx], parts[idx] + 1]
        return f">={value[1:]},<{'.'.join(map(str, upper))}"
    return f"=={value}" if value[0].isdigit() else value


def _table(data: Mapping[str, object], key: str, origin: str) -> dict[str, object]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _fail(
            f"[{key}] of {origin} must be a table, not {echoed(value)}", origin, f"Write [{key}] as a table."
        )
    return value


def _normalized(name: str) -> str:
    """A project, extra or group name as PEP 503 / 685 / 735 compare them."""
    return re.sub(r"[-_.]+", "-", name).lower()


# the project's folder in a dependency's URL: hatch's {root:uri} ({root:parent:uri}: its parent), and uv's and
# pdm's ${PROJECT_ROOT} (written file:///${PROJECT_ROOT}/lib or ${PROJECT_ROOT}/lib)
_PROJECT_ROOT = (
    r"(?:\{root(?P<parents>(?::parent)*):uri\}|(?P<file>file://(?:/(?=\$))?)?\$\{PROJECT_ROOT\})"
    r"(?P<path>/[^\s;#]*)?"
)


def _project_requirements(items: list[str], where: str, base: Path | None) -> list[Requirement]:
    """PEP 508 requirements of a project (``base``: its folder, where relative paths and the project root of
    hatch's ``{root:uri}`` and uv's ``${PROJECT_ROOT}`` are)."""
    root = Path(os.path.abspath(base or Path.cwd()))

    def expanded(match: re.Match[str]) -> str:
        folder = root
        for _ in range((match["parents"] or "").count(":parent")):
            folder = folder.parent
        path = Path(os.path.normpath(f"{folder}{match['path'] or ''}"))
        return path.as_uri() if match[0].startswith(("{", "file:")) else str(path)

    out = []
    for item in items:
        if re.match(r"^python\s*([<>=!~]|$)", item):
            raise _fail(
                f"{echoed(item)} names python",
                where,
                "Python specification should be specified as 'requires-python'.",
            )
        req = pypi_requirement(re.sub(_PROJECT_ROOT, expanded, item), where, base)
        out.append(_existing(req, where, _PROJECT_PATH_FIX))
    return out


_POETRY_KEYS = frozenset(
    (
        "version",
        "extras",
        "markers",
        "python",
        "platform",
        "optional",
        "develop",
        "allow-prereleases",
        "source",
    )
) | {"git", "branch", "tag", "rev", "subdirectory", "path", "url"}


def _python_marker(constraint: str, where: str) -> str:
    """Poetry's ``python = "<3.8"`` (``^3.9``, ``>=3.8,<3.11``, ``~2.7 || ^3.6``) of a dependency as a marker."""
    alternatives = []
    for alternative in constraint.split("||"):
        clauses = []
        for clause in filter(None, (c.strip() for c in _poetry_constraint(alternative).split(","))):
            match = re.fullmatch(r"(==|!=|>=|<=|~=|>|<)\s*(\d+(?:\.\d+)*)(\.\*)?", clause)
            if match is None:
                raise _fail(
                    f"{echoed(constraint)} is not a python constraint", where, 'Write python = ">=3.9,<3.12".'
                )
            operator, version, _ = match.groups()
            field_name = "python_version" if version.count(".") <= 1 else "python_full_version"
            clauses.append(f'{field_name} {operator} "{version}"')
        if not clauses:
            return ""  # any python
        alternatives.append(" and ".join(clauses))
    return " or ".join(f"({a})" for a in alternatives) if len(alternatives) > 1 else alternatives[0]


def _poetry_url(name: str, entry: Mapping[str, object], where: str) -> str | None:
    """The direct reference of a poetry ``git``, ``url`` or ``path`` dependency, as PEP 508 writes it."""
    if "git" in entry:
        repository = str(entry["git"])
        scp = re.fullmatch(r"([\w.-]+@[\w.-]+):(.+)", repository)  # git@github.com:org/repo.git
        repository = f"ssh://{scp[1]}/{scp[2]}" if scp else repository
        refs = [str(entry[k]) for k in ("tag", "branch", "rev") if k in entry]
        if len(refs) > 1:
            raise _fail(f"{name} names more than one of tag, branch and rev", where, "Keep one of them.")
        url = f"git+{repository}" if not repository.startswith("git+") else repository
        url += f"@{refs[0]}" if refs else ""
        return url + (f"#subdirectory={entry['subdirectory']}" if "subdirectory" in entry else "")
    if "url" in entry:
        return str(entry["url"]) + (
            f"#subdirectory={entry['subdirectory']}" if "subdirectory" in entry else ""
        )
    if "path" in entry:
        return str(entry["path"]) if str(entry["path"]).startswith(("/", "~")) else f"./{entry['path']}"
    return None


class _Reading:
    """A pyproject.toml being read: its name in messages, its folder (for ``path`` dependencies), and the
    warnings said so far."""

    __slots__ = ("base", "origin", "warnings")

    def __init__(self, origin: str, base: Path | None, warnings: list[str]) -> None:
        self.origin = origin
        self.base = base
        self.warnings = warnings


def _poetry_requirement(
    name: str, value: object, where: str, reading: _Reading, *, optional_too: bool = False
) -> Requirement | None:
    """One entry of a poetry dependencies table as a requirement; None for an optional one (it comes in by
    ``--extra`` through ``[tool.poetry.extras]``) unless ``optional_too``."""
    if isinstance(value, list):
        raise _fail(
            f"{name} has several constraints (a list of tables), which envcore cannot choose between",
            where,
            f"Give {name} one constraint (use markers to choose by platform or python).",
        )
    entry: Mapping[str, object] = value if isinstance(value, dict) else {"version": str(value)}
    unknown = sorted(set(entry) - _POETRY_KEYS)
    if unknown:
        raise _fail(
            f"{name} has the key {echoed(unknown[0])}, which envcore does not read",
            where,
            f"Remove it, or write {name} as a requirement in [project].dependencies.",
        )
    if entry.get("optional") and not optional_too:
        return None
    if "source" in entry:
        reading.warnings.append(
            f"{name} names the poetry source {echoed(entry['source'])} ({where}): envcore looks every package up on all "
            "of the project's indexes, not only that one."
        )
    markers = [str(entry["markers"])] if entry.get("markers") else []
    if "python" in entry and (python := _python_marker(str(entry["python"]), where)):
        markers.append(python)
    if "platform" in entry:
        markers.append(_platform_marker(str(entry["platform"])))
    extras = entry.get("extras") or []
    text = name + (f"[{','.join(map(str, extras))}]" if isinstance(extras, list) and extras else "")
    url = _poetry_url(name, entry, where)
    ignored = [k for k in ("version", "allow-prereleases") if k in entry and (url or k != "version")]
    if ignored:
        reading.warnings.append(
            f"{' and '.join(ignored)} of {name} ({where}) {'is' if len(ignored) == 1 else 'are'} not kept: "
            + ("its reference decides what is installed." if url else "pre-releases come with --pre only.")
        )
    text += f" @ {url}" if url else _poetry_constraint(str(entry.get("version", "*")), name, where)
    if markers:
        text += (
            (" " if url else "") + "; " + " and ".join(f"({m})" if len(markers) > 1 else m for m in markers)
        )
    req = pypi_requirement(text, where, reading.base)
    return _existing(req, where, _PROJECT_PATH_FIX)


def _poetry_requirements(
    table: Mapping[str, object], where: str, reading: _Reading
) -> tuple[list[Requirement], str | None]:
    """The (non-optional) requirements of a poetry dependencies table, and its python constraint."""
    reqs, python = [], None
    for name, value in table.items():
        if name == "python":
            python = _poetry_constraint(str(value.get("version", "*") if isinstance(value, dict) else value))
            continue
        req = _poetry_requirement(name, value, where, reading)
        if req is not None:
            reqs.append(req)
    return reqs, python


def _chosen(
    available: Mapping[str, object], wanted: Sequence[str], what: str, where: str, flag: str
) -> list[str]:
    """The keys of ``available`` that ``wanted`` names (normalised), or an error listing what there is."""
    keys = {_normalized(k): k for k in available}
    missing = [w for w in wanted if _normalized(w) not in keys]
    if missing:
        raise _fail(
            f"There are no {what} named {', '.join(map(repr, missing))}",
            where,
            f"Give {flag} one of: {', '.join(sorted(available))}." if available else f"Remove {flag}.",
        )
    return [keys[_normalized(w)] for w in wanted]


def _extra_requirements(
    data: Mapping[str, object], poetry: Mapping[str, object], extras: Sequence[str], reading: _Reading
) -> list[Requirement]:
    """The optional dependencies of ``extras``: ``[project.optional-dependencies]``, where an entry naming the
    project itself (``me[a,b]``, as in ``all = ["me[a,b]"]``) brings those extras in, or poetry's
    ``[tool.poetry.extras]``, whose entries name optional packages of ``[tool.poetry.dependencies]``."""
    origin = reading.origin
    project = _table(data, "project", origin)
    optional = _table(project, "optional-dependencies", origin)
    poetry_extras = _table(poetry, "extras", f"[tool.poetry] of {origin}")
    available = {**poetry_extras, **optional}
    where = f"[project.optional-dependencies] of {origin}"
    me = _normalized(str(project.get("name", "")))
    pending, seen, out = _chosen(available, extras, "optional dependencies", where, "--extra"), set(), []
    while pending:
        key = pending.pop(0)
        if key in seen:
            continue
        seen.add(key)
        if key not in optional:
            out += _poetry_extra(poetry, key, reading)
            continue
        for req in _project_requirements(
            _string_list(optional[key], f"[project.optional-dependencies].{key}", origin, f'{key} = ["x"]'),
            f"[project.optional-dependencies].{key} of {origin}",
            reading.base,
        ):
            if me and _normalized(req.name) == me:
                pending += _chosen(available, req.extras, "optional dependencies", where, "--extra")
            else:
                out.append(req)
    return out


def _poetry_extra(poetry: Mapping[str, object], extra: str, reading: _Reading) -> list[Requirement]:
    where = f"[tool.poetry.extras].{extra} of {reading.origin}"
    table = _table(poetry, "dependencies", f"[tool.poetry] of {reading.origin}")
    names = {_normalized(name): name for name in table}
    out = []
    for member in _string_list(
        _table(poetry, "extras", reading.origin)[extra], "an extra", where, f'{extra} = ["x"]'
    ):
        name = names.get(_normalized(member))
        if name is None:
            raise _fail(
                f"{echoed(member)} is not in [tool.poetry.dependencies]",
                where,
                f"Add {member} there as optional.",
            )
        req = _poetry_requirement(name, table[name], where, reading, optional_too=True)
        out += [req] if req is not None else []
    return out


def _group_requirements(
    data: Mapping[str, object], poetry: Mapping[str, object], groups: Sequence[str], reading: _Reading
) -> list[Requirement]:
    """PEP 735 ``[dependency-groups]`` (with ``{include-group = "..."}``, and uv's legacy
    ``[tool.uv].dev-dependencies`` in the group ``dev``, as uv reads them) and poetry's
    ``[tool.poetry.group.NAME.dependencies]``, by group name."""
    origin = reading.origin
    pep735 = _table(data, "dependency-groups", origin)
    uv_dev = _table(_table(data, "tool", origin), "uv", f"[tool] of {origin}").get("dev-dependencies")
    if uv_dev is not None:
        dev = next((k for k in pep735 if _normalized(k) == "dev"), "dev")
        uv_list = _string_list(uv_dev, "[tool.uv].dev-dependencies", origin, 'dev-dependencies = ["x"]')
        given = pep735.get(dev, [])
        pep735 = {**pep735, dev: [*(given if isinstance(given, list) else [given]), *uv_list]}
    poetry_groups = _table(poetry, "group", f"[tool.poetry] of {origin}")
    if "dev-dependencies" in poetry and "dev" not in poetry_groups:  # poetry before 1.2: the group "dev"
        poetry_groups = {**poetry_groups, "dev": {"dependencies": poetry["dev-dependencies"]}}
    available = {**dict.fromkeys(poetry_groups), **dict.fromkeys(pep735)}
    keys = {_normalized(k): k for k in pep735}
    out: list[Requirement] = []
    pending = _chosen(available, groups, "dependency groups", f"[dependency-groups] of {origin}", "--group")
    _refuse_group_cycles(pep735, pending, origin)
    seen: set[str] = set()
    while pending:
        name = pending.pop(0)
        if _normalized(name) in seen:
            continue
        seen.add(_normalized(name))
        where = f"[dependency-groups].{name} of {origin}"
        items = pep735.get(keys.get(_normalized(name), name), [])
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, dict) and isinstance(item.get("include-group"), str):
                pending += _chosen(
                    pep735, [item["include-group"]], "dependency groups", where, "include-group"
                )
            elif isinstance(item, str):
                out += _project_requirements([item], where, reading.base)
            else:
                raise _fail(
                    f"{echoed(item)} is neither a requirement nor an include-group table",
                    where,
                    'Write "name>=1.0" or {include-group = "other"}.',
                )
        if name in poetry_groups:
            group = _table(poetry_groups, name, f"[tool.poetry.group] of {origin}")
            where = f"[tool.poetry.group.{name}.dependencies] of {origin}"
            out += _poetry_requirements(_table(group, "dependencies", where), where, reading)[0]
    return out


def _refuse_group_cycles(pep735: Mapping[str, object], chosen: Sequence[str], origin: str) -> None:
    """PEP 735: a tool reports groups that include each other (as uv and pip do), instead of reading the cycle
    as if it were not there."""
    keys = {_normalized(k): k for k in pep735}

    def includes(name: str) -> list[str]:
        items = pep735.get(keys.get(_normalized(name), name), [])
        return [
            item["include-group"]
            for item in (items if isinstance(items, list) else [items])
            if isinstance(item, dict) and isinstance(item.get("include-group"), str)
        ]

    finished: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        names = [_normalized(c) for c in chain]
        if _normalized(name) in names:
            cycle = " -> ".join((*chain[names.index(_normalized(name)) :], name))
            raise _fail(
                f"The dependency groups include each other in a cycle ({cycle})",
                f"[dependency-groups] of {origin}",
                "Remove one of these {include-group = ...} entries.",
            )
        if _normalized(name) not in finished:
            for included in includes(name):
                visit(included, (*chain, name))
            finished.add(_normalized(name))

    for name in chosen:
        visit(name, ())


def parse_pyproject(
    text: str,
    origin: str = "pyproject.toml",
    *,
    extras: Sequence[str] = (),
    groups: Sequence[str] = (),
    base: Path | None = None,
) -> Spec:
    """``[project].dependencies`` (or poetry's), ``requires-python`` and the project's extra indices; with
    ``extras`` and ``groups``, those optional dependencies and dependency groups too (as ``uv pip compile
    --extra/--group``). ``base`` is the project's folder, where poetry's ``path`` dependencies are."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    try:
        data = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise _fail(f"{origin} is not valid TOML: {exc}", origin, "Fix the file.") from None
    project = _table(data, "project", origin)
    tool = _table(data, "tool", origin)
    poetry = _table(tool, "poetry", f"[tool] of {origin}")
    dynamic = project.get("dynamic")
    dynamic = dynamic if isinstance(dynamic, list) else []
    from_files = _table(
        _table(tool, "setuptools", f"[tool] of {origin}"), "dynamic", f"[tool.setuptools] of {origin}"
    )
    if "dependencies" in dynamic:
        lines = _setuptools_files(from_files.get("dependencies"), origin, base)
        if lines is None:
            raise _fail(
                f"The dependencies of {origin} are dynamic (computed by its build backend), so envcore cannot read "
                "them",
                f"[project].dynamic of {origin}",
                "List them in [project].dependencies, read them from files with [tool.setuptools.dynamic] "
                'dependencies = {file = ["requirements.txt"]}, or give them in a requirements file with -r.',
            )
        reqs = [req for line, where in lines for req in _project_requirements([line], where, base)]
    else:
        reqs = _project_requirements(
            _string_list(
                project.get("dependencies"), "[project].dependencies", origin, 'dependencies = ["x"]'
            ),
            f"[project].dependencies of {origin}",
            base,
        )
    if "optional-dependencies" in dynamic and extras:
        tables = _table(from_files, "optional-dependencies", f"[tool.setuptools.dynamic] of {origin}")
        optional = {
            name: [line for line, _ in _setuptools_files(v, origin, base) or []] for name, v in tables.items()
        }
        data = {**data, "project": {**project, "optional-dependencies": optional}}
    python = project.get("requires-python")
    if python is not None and not isinstance(python, str):
        raise _fail(
            f"requires-python must be a string, not {echoed(python)}",
            origin,
            'Write requires-python = ">=3.10".',
        )
    reading = _Reading(origin, base, [])
    warnings = reading.warnings
    where = f"[tool.poetry.dependencies] of {origin}"
    poetry_reqs, poetry_python = _poetry_requirements(
        _table(poetry, "dependencies", f"[tool.poetry] of {origin}"), where, reading
    )
    reqs += poetry_reqs
    python = python or poetry_python
    if extras:
        reqs += _extra_requirements(data, poetry, extras, reading)
    if groups:
        reqs += _group_requirements(data, poetry, groups, reading)
    indices = [s["url"] for s in _tables(poetry.get("source"), "tool.poetry.source", origin) if "url" in s]
    uv = _table(tool, "uv", f"[tool] of {origin}")
    uv_indexes = _tables(uv.get("index"), "tool.uv.index", origin)
    indices += [s["url"] for s in uv_indexes if "url" in s]
    warnings += [
        f"The index {echoed(s.get('name', s['url']))} of [[tool.uv.index]] in {origin} is explicit: envcore looks every "
        "package up on all of the project's indexes, not only those that name it."
        for s in uv_indexes
        if s.get("explicit") and "url" in s
    ]
    if _table(uv, "sources", f"[tool.uv] of {origin}"):
        warnings.append(
            f"[tool.uv.sources] of {origin} is not read: envcore takes those packages from the indexes. Write a "
            "direct reference in [project].dependencies instead (NAME @ git+https://..., NAME @ file:///...)."
        )
    pixi = _table(tool, "pixi", f"[tool] of {origin}")
    if {"dependencies", "pypi-dependencies", "feature", "target"} & set(pixi):
        conda = _table(pixi, "dependencies", f"[tool.pixi] of {origin}")
        example = " ".join(f"--conda {name}" for name in list(conda)[:3]) or "--conda NAME"
        warnings.append(
            f"The pixi dependencies of {origin} ([tool.pixi]) are not read: envcore reads the project's "
            f"[project] dependencies only. Give the conda packages on the command line ({example}) or resolve "
            "from an environment.yml with -f."
        )
    return Spec(
        requirements=combine(reqs),
        sources=_sources((), [(i, origin) for i in indices]),
        python=python_spec(python, f"requires-python of {origin}") if python else None,
        origin=f"the project file {origin}",
        warnings=tuple(warnings),
    )


def _setuptools_files(value: object, origin: str, base: Path | None) -> list[tuple[str, str]] | None:
    """The requirements (each with where it is written) of setuptools' ``{file = [...]}`` in
    ``[tool.setuptools.dynamic]``, read as setuptools reads them: requirement lines and comments, from the
    project's folder; None when ``value`` is not such a table."""
    files = value.get("file") if isinstance(value, dict) else None
    files = [files] if isinstance(files, str) else files
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        return None
    lines = []
    for name in files:
        path = (base or Path.cwd()) / name
        shown = os.path.normpath(os.path.join(os.path.dirname(origin), name))
        for number, line in _logical_lines(read_text(path, shown).removeprefix("\ufeff")):
            where = f"line {number} of {shown}, which [tool.setuptools.dynamic] of {origin} reads"
            if line.startswith("-"):
                raise _fail(
                    f"{echoed(line)} is an option, and setuptools reads only requirements from {shown}",
                    where,
                    "Remove it there, or give the file itself with -r.",
                )
            lines.append((line, where))
    return lines


def _tables(value: object, key: str, origin: str) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, dict) and isinstance(v.get("url", ""), str) for v in value
    ):
        raise _fail(
            f"[[{key}]] of {origin} must be tables with a url", origin, f'Write [[{key}]] url = "...".'
        )
    return value


@functools.cache
def _stdin() -> bytes:
    """Standard input, read once: a second reader (the Metaflow command looks at a file before envcore's own
    command reads it) gets the same text rather than nothing."""
    return sys.stdin.buffer.read()


def read_text(path: Path, shown: str) -> str:
    """The text of a requirement file (``-``: standard input), which must be UTF-8 (a byte order mark is
    allowed), or UTF-16 or UTF-32 with their byte order mark, and hold no NUL; else a :class:`SpecError` naming
    it as ``shown``."""
    try:
        data = _stdin() if str(path) == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise SpecError(f"Cannot read {shown}: {exc.strerror or exc}. Check the path.") from None
    import codecs

    # a byte order mark says the encoding, as pip reads it (PowerShell's `pip freeze > requirements.txt` is UTF-16;
    # UTF-32's marks first: UTF-16 LE's is the start of UTF-32 LE's)
    boms = (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    )
    encoding = next((name for bom, name in boms if data.startswith(bom)), "utf-8-sig")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        if encoding != "utf-8-sig":
            raise SpecError(
                f"{shown} starts with the byte order mark of {encoding.upper()} but is not {encoding.upper()} text. "
                "Save it with the UTF-8 encoding."
            ) from None
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"{shown} is not UTF-8 text (byte {data[exc.start]:#04x} on line {line}). Save it with the UTF-8 "
            "encoding, or check that it is the file you meant."
        ) from None
    if "\x00" in text:  # not a text file (/proc/self/environ): none of its content is repeated
        line = text[: text.index("\x00")].count("\n") + 1
        raise SpecError(
            f"{shown} is not a text file (it holds a NUL character on line {line}). Check that it is the file you "
            "meant."
        )
    return text


def load(
    path: Path, kind: str | None = None, *, extras: Sequence[str] = (), groups: Sequence[str] = ()
) -> Spec:
    """A spec from a file of ``kind`` (``requirements``, ``environment`` or ``pyproject``, as the CLI's -r, -f
    and -p say); without ``kind``, by its name: ``*.yml``/``*.yaml``, ``*.toml``, anything else as
    requirements.txt. The file must be UTF-8 (a byte order mark is allowed); ``-`` is standard input (as uv
    reads it), its relative paths read from the current folder."""
    stdin = str(path) == "-"
    shown = "standard input" if stdin else str(path)
    text = read_text(path, shown)
    named = _kind_by_name(Path(path).name)
    try:
        return _parse(text, path, kind or named, shown, extras, groups)
    except SpecError as exc:
        if (
            stdin
            or kind in (None, named)
            or not Path(path).name.endswith((".yml", ".yaml", ".toml", ".txt", ".in"))
        ):
            raise
        option, what = _KINDS[named]
        raise SpecError(
            f"{exc.message} {shown} is named like {what}, and was read as {_KINDS[kind][1]}: if it is {what}, give it "
            f"with {option}."
        ) from None


_KINDS = {
    "requirements": ("-r", "a requirements file"),
    "environment": ("-f", "an environment.yml"),
    "pyproject": ("-p", "a pyproject.toml"),
}


def _kind_by_name(name: str) -> str:
    return (
        "environment"
        if name.endswith((".yml", ".yaml"))
        else "pyproject"
        if name.endswith(".toml")
        else "requirements"
    )


def _parse(
    text: str, path: Path, kind: str, shown: str, extras: Sequence[str], groups: Sequence[str]
) -> Spec:
    stdin = str(path) == "-"
    if kind == "pyproject":
        return _said_if_empty(
            parse_pyproject(
                text, shown, extras=extras, groups=groups, base=Path(os.path.abspath(path)).parent
            ),
            shown,
        )
    if extras or groups:
        raise SpecError(
            f"--extra and --group choose optional dependencies of a pyproject.toml, and {shown} is read as "
            f"{_KINDS[kind][1]}. Give the project with -p."
        )
    base = Path(os.path.abspath(path)).parent
    if kind == "environment":
        return _said_if_empty(parse_environment_yml(text, shown, base=base), shown)
    seen = frozenset() if stdin else frozenset({Path(os.path.abspath(path))})
    folder = "" if stdin else os.path.dirname(shown)  # where files it includes are named from
    return _said_if_empty(parse_requirements_txt(text, shown, base=base, _seen=seen, _folder=folder), shown)


def _said_if_empty(spec: Spec, shown: str) -> Spec:
    if spec.requirements or spec.python:
        return spec
    return replace(
        spec, warnings=(*spec.warnings, f"{shown} names no packages: the environment holds python only.")
    )


# --- combining -----------------------------------------------------------------------------------------


def _and(a: Requirement, b: Requirement) -> Requirement | None:
    """Both constraints at once (comma-joined, duplicates dropped), as the original merges decorators; None
    when one requirement cannot say both (URLs, different markers or channels, conda builds or ``|``)."""
    extras = tuple(sorted({*a.extras, *b.extras}))
    if (a.url, a.marker, a.channel) != (b.url, b.marker, b.channel):
        return None
    if a.url:
        return replace(a, extras=extras) if a.spec == b.spec else None
    if not b.spec or a.spec == b.spec or not a.spec:
        return replace(a if b.spec in ("", a.spec) else b, extras=extras, stated=_stated_and(a, b))
    if a.category == SYS:  # a virtual package is one fact about the target machine
        raise SpecError(
            f"The system package {a.name} is given twice, with the versions {a.spec} and {b.spec}. Give it once."
        )
    conda = a.category != PYPI
    if conda and any(c in r.spec for r in (a, b) for c in " |()"):
        return None

    def parts(req: Requirement) -> list[str]:
        return [p if p[0] in "<>=!~" or (conda and "*" in p) else f"=={p}" for p in req.spec.split(",") if p]

    joined = list(dict.fromkeys([*parts(a), *parts(b)]))
    spec = ",".join(joined)
    if len(joined) == 1 and joined[0].startswith("==") and not joined[0].startswith("==="):
        spec = joined[0][2:]
    return replace(a, spec=spec, extras=extras, stated=_stated_and(a, b))


def _stated_and(a: Requirement, b: Requirement) -> str | None:
    """Two decorators' version texts AND-ed as the original merges them (``merge_dep_dicts``: comma-joined, a
    part already given dropped, ``==`` put before a later bare version), so that the merge hashes as there."""
    if a.stated is None and b.stated is None:
        return None
    first, second = (
        [p for p in (r.spec if r.stated is None else r.stated).split(",") if p and p != "*"] for r in (a, b)
    )
    given = {p.lstrip("=") for p in first}
    joined = [*first, *(p for p in second if p.lstrip("=") not in given)]
    return ",".join(joined[:1] + [p if p[0] in "~<>!=" else f"=={p}" for p in joined[1:]])


def combine(reqs: Iterable[Requirement]) -> tuple[Requirement, ...]:
    """Constraints on one package AND-ed into one requirement; those that cannot be (see :func:`_and`) are
    kept apart, for the resolver to satisfy together."""
    out: list[Requirement] = []
    first: dict[tuple[str, str], int] = {}
    for req in reqs:
        key = (req.category, _normalized(req.name) if req.category == PYPI else req.name.lower())
        joined = _and(out[first[key]], req) if key in first else None
        if joined is not None:
            out[first[key]] = joined
            continue
        first.setdefault(key, len(out))
        out.append(req)
    return tuple(out)


def _combine_sources(specs: Sequence[Spec], attr: str) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        for category, items in getattr(spec, attr).items():
            out[category] = tuple(dict.fromkeys((*out.get(category, ()), *items)))
    return out


def merge(*specs: Spec) -> Spec:
    """Specs at the same level (flow decorators together): constraints on one package are AND-ed; python must
    agree."""
    python: str | None = None
    python_origin = ""
    for spec in specs:
        if spec.python is not None:
            if python is not None and python != spec.python:
                raise SpecError(
                    f"python is specified with incompatible values: {python} ({python_origin}) and {spec.python} "
                    f"({spec.origin}). Give python once, or the same value everywhere."
                )
            python, python_origin = spec.python, spec.origin
    return Spec(
        requirements=combine(r for spec in specs for r in spec.requirements),
        sources=_combine_sources(specs, "sources"),
        extras=_combine_sources(specs, "extras"),
        python=python,
        origin=" and ".join(s.origin for s in specs),
        warnings=tuple(w for s in specs for w in s.warnings),
        nodefaults=any(s.nodefaults for s in specs),
    )


def override(base: Spec, top: Spec) -> Spec:
    """``top`` (a step) over ``base`` (its flow): top's python and per-package constraints replace base's."""
    by_key = {(r.category, r.name.lower()): r for r in base.requirements}
    by_key.update({(r.category, r.name.lower()): r for r in top.requirements})
    return Spec(
        requirements=tuple(by_key.values()),
        sources=_combine_sources((base, top), "sources"),
        extras=_combine_sources((base, top), "extras"),
        python=top.python or base.python,
        origin=f"{top.origin} over {base.origin}",
        warnings=(*base.warnings, *top.warnings),
        nodefaults=top.nodefaults or base.nodefaults,
    )


# --- markers -------------------------------------------------------------------------------------------

_PLATFORM = {
    "linux": ("linux", "Linux", "posix"),
    "osx": ("darwin", "Darwin", "posix"),
    "win": ("win32", "Windows", "nt"),
}
_MACHINE = {"64": "x86_64", "aarch64": "aarch64", "arm64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}


def marker_environments(python_version: str, arch: str) -> list[dict[str, str]]:
    """PEP 508 marker environments of a target (arch + python): one for an exact python version, two (lowest
    and highest patch) for ``X.Y`` or a range. Shared by every backend that evaluates markers itself."""
    family, _, machine = arch.partition("-")
    sys_platform, system, os_name = _PLATFORM.get(family, ("linux", "Linux", "posix"))
    machine_name = "AMD64" if arch == "win-64" else _MACHINE.get(machine, machine)
    numbers = re.findall(r"\d+", python_version)
    if len(numbers) < 2:
        raise SpecError(f"{echoed(python_version)} is not a python version to evaluate markers with.")
    short = f"{numbers[0]}.{numbers[1]}"
    exact = len(numbers) >= 3 and "*" not in python_version and not re.search(r"[<>!~,]", python_version)
    fulls = [".".join(numbers[:3])] if exact else [f"{short}.0", f"{short}.99"]
    base = {
        "python_version": short,
        "sys_platform": sys_platform,
        "platform_system": system,
        "os_name": os_name,
        "platform_machine": machine_name,
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    return [{**base, "python_full_version": full, "implementation_version": full} for full in fulls]


def applicable(
    requirements: Sequence[Requirement], *, python_version: str, arch: str
) -> tuple[Requirement, ...]:
    """The requirements whose markers hold for the target python and arch (markers are then dropped)."""
    environments = marker_environments(python_version, arch)
    return tuple(
        replace(req, marker=None) if req.marker else req
        for req in requirements
        if _marker_holds(req, environments, python_version)
    )


def not_applicable(
    requirements: Sequence[Requirement], *, python_version: str, arch: str
) -> tuple[Requirement, ...]:
    """The requirements whose markers do not hold for the target python and arch (pip's "Ignoring NAME:
    markers ... don't match your environment")."""
    environments = marker_environments(python_version, arch)
    return tuple(req for req in requirements if not _marker_holds(req, environments, python_version))


def _marker_holds(req: Requirement, environments: Sequence[Mapping[str, str]], python_version: str) -> bool:
    if not req.marker:
        return True
    from packaging.markers import InvalidMarker, Marker, UndefinedEnvironmentName

    try:
        marker = Marker(req.marker)
        answers = {marker.evaluate(dict(env)) for env in environments}
    except (InvalidMarker, UndefinedEnvironmentName) as exc:
        raise SpecError(f"The marker of {req.name} ({req.marker}) cannot be evaluated: {exc}.") from None
    if len(answers) > 1:
        raise SpecError(
            f"Ambiguous package marker for {req.name}: '{req.marker}' depends on the python patch level, which "
            f"python {python_version} does not fix. Pin python exactly, or use python_version in the marker."
        )
    return answers == {True}


__all__ = [
    "Spec",
    "applicable",
    "conda_requirement",
    "from_decorator",
    "load",
    "merge",
    "not_applicable",
    "override",
    "parse_environment_yml",
    "parse_pyproject",
    "parse_requirements_txt",
    "pypi_requirement",
]
