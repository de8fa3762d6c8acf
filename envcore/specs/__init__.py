"""What the user asks for: decorator arguments, ``requirements.txt``, ``environment.yml`` and ``pyproject.toml``
turned into one :class:`Spec` (reference §1(a), §1(g)).

Decisions that differ from the original extension (reference §1(l)):

* ``environment.yml`` is parsed as YAML (the original's line parser silently misread flow style and bad
  indentation); a malformed file is an error naming the line.
* ``python="3.10"`` means ``3.10.*`` everywhere (decorators and files alike), and an environment.yml entry
  ``numpy=1.21`` means ``1.21.*`` as it does for conda (the original read it as exactly 1.21).
* ``@pypi(extras=...)`` is kept and enters the req id.
* A marker that cannot be decided for the target is an error naming the package, never silently dropped.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from envcore import TYPE_CHECKING
from envcore.errors import SpecError
from envcore.types import CONDA, NPCONDA, PYPI, SYS, Requirement

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet
# packaging is imported where PyPI requirements are parsed: compiling its grammars would cost every command,
# conda-only ones too, a fifth of its start-up

SYS_ALLOWED = ("__cuda", "__glibc")
_CONDA_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_CONDA_VERSION = re.compile(r"[A-Za-z0-9_.*,|<>=!~ +]*")
_CONDA_ENTRY = re.compile(r"(?:(?P<channel>[^\s:]+)::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9_.\-]*)\s*(?P<rest>.*)")
_OPERATORS = ("==", ">=", "<=", "!=", "~=", ">", "<", "=")


@dataclass(frozen=True, kw_only=True, slots=True)
class Spec:
    """Requested packages (python apart), sources and resolver flags per category, and where they came from."""

    requirements: tuple[Requirement, ...] = ()
    sources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    extras: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    python: str | None = None
    origin: str = "the specification"
    warnings: tuple[str, ...] = ()


def _fail(what: str, where: str, fix: str) -> SpecError:
    return SpecError(f"{what} ({where}). {fix}")


# --- single values -------------------------------------------------------------------------------------


def python_spec(value: str, where: str) -> str:
    """``3.10`` -> ``3.10.*``; exact versions and ranges are kept."""
    text = value.strip().removeprefix("==").strip()
    if re.fullmatch(r"\d+\.\d+", text):
        return f"{text}.*"
    if not re.fullmatch(r"[0-9.*,<>=!~ ]+", text):
        raise _fail(
            f"{value!r} is not a python version",
            where,
            "Write a version such as 3.11, 3.11.7 or >=3.10,<3.12.",
        )
    return text.replace(" ", "")


def conda_requirement(key: str, version: str, where: str, category: str = CONDA) -> Requirement:
    """A conda package from ``[channel::]name`` and a version (``1.2.3`` exact, ``>=1,<2`` a range, ``""`` any)."""
    channel, sep, name = key.strip().rpartition("::")
    name = name.strip()
    version = str(version).strip()
    if not _CONDA_NAME.fullmatch(name) or (sep and not channel):
        raise _fail(f"Could not parse conda package {key!r}", where, "Write NAME or CHANNEL::NAME.")
    if version.startswith("==") and not any(c in version[2:] for c in "<>=!,|"):
        version = version[2:].strip()
    if not _CONDA_VERSION.fullmatch(version):
        raise _fail(
            f"{version!r} is not a conda version constraint for {name}",
            where,
            "Write an exact version (1.2.3), a range (>=1.2,<2) or a glob (1.2.*).",
        )
    version = " ".join(re.sub(r"\s*([,|<>=!~]+)\s*", r"\1", version).split())  # "1.2.* build" keeps its space
    return Requirement(category=category, name=name, spec=version, channel=channel or None)


def sys_requirement(name: str, version: str, where: str) -> Requirement:
    name, version = name.strip(), str(version).strip()
    if name not in SYS_ALLOWED:
        raise _fail(
            f"System package {name!r} not allowed",
            where,
            f"Values allowed are: {', '.join(SYS_ALLOWED)}.",
        )
    if not version:
        raise _fail(
            f"System package {name!r} requires a version", where, f"Write {name}==VERSION, e.g. 2.27."
        )
    op = next((o for o in _OPERATORS if version.startswith(o)), "")
    if op not in ("", "=", "=="):
        raise _fail(
            f"System package {name!r} requires a specific version not {version!r}",
            where,
            f"Write {name}==VERSION.",
        )
    return Requirement(category=SYS, name=name, spec=version[len(op) :].strip())


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


def pypi_requirement(text: str, where: str) -> Requirement:
    """A PEP 508 requirement, or a bare URL / path (``git+https://...``, ``./pkg``), as a PyPI requirement."""
    text = text.strip()
    if re.match(r"^(git\+|hg\+|https?://|file:|ssh://|\.{0,2}/)", text):
        url = text
        tail = re.sub(r"[#@].*$", "", text.rstrip("/")).rsplit("/", 1)[-1]
        egg = re.search(r"#egg=([A-Za-z0-9_.\-]+)", text)
        name = egg.group(1) if egg else re.sub(r"(\.git|\.zip|\.tar\.gz|-\d.*\.whl)$", "", tail)
        if not name:
            raise _fail(f"Could not derive a package name from {text!r}", where, "Write NAME @ URL.")
        return Requirement(category=PYPI, name=name, url=url)
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as Pep508

    try:
        req = Pep508(text)
    except InvalidRequirement as exc:
        raise _fail(
            f"Could not parse {text!r}: {exc}", where, "Write a PEP 508 requirement such as pandas>=2.1."
        ) from None
    if req.name.lower() == "python":
        raise _fail(
            f"{text!r} names python", where, "Set python with the python argument or setting instead."
        )
    return Requirement(
        category=PYPI,
        name=req.name,
        spec=_pypi_spec(req.specifier),
        extras=tuple(sorted(req.extras)),
        marker=str(req.marker) if req.marker else None,
        url=req.url,
    )


def _pypi_decorator_requirement(key: str, version: str, where: str) -> Requirement:
    version = str(version).strip()
    if version and version[0].isdigit():
        from packaging.utils import canonicalize_version
        from packaging.version import InvalidVersion, Version

        try:
            version = "==" + canonicalize_version(Version(version))
        except InvalidVersion:
            raise _fail(
                f"{version!r} is not a valid version of {key}",
                where,
                "Write a PEP 440 version such as 1.4.0.",
            ) from None
    req = pypi_requirement(f"{key}{version}", where)
    return req


# --- decorators ----------------------------------------------------------------------------------------


def _sources(conda: Iterable[str] = (), pypi: Iterable[str] = ()) -> dict[str, tuple[str, ...]]:
    found = {
        CONDA: tuple(dict.fromkeys(c for c in conda if c)),
        PYPI: tuple(dict.fromkeys(p for p in pypi if p)),
    }
    return {k: v for k, v in found.items() if v}


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
        reqs.append(conda_requirement(key, version, f"in {origin}"))
    reqs += [conda_requirement(k, v, f"in {origin}", NPCONDA) for k, v in (conda_only or {}).items()]
    reqs += [_pypi_decorator_requirement(k, v, f"in {origin}") for k, v in (packages or {}).items()]
    reqs += [sys_requirement(k, v, f"in {origin}") for k, v in (sys_packages or {}).items()]
    flags = tuple(dict.fromkeys(e if e.startswith("-") else f"--{e}" for e in (extras or ())))
    return Spec(
        requirements=tuple(reqs),
        sources=_sources(channels or (), extra_indices or ()),
        extras={PYPI: flags} if flags else {},
        python=python_spec(pinned_python, f"in {origin}") if pinned_python else None,
        origin=origin,
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


def parse_requirements_txt(text: str, origin: str = "requirements.txt") -> Spec:
    reqs: list[Requirement] = []
    conda_sources: list[str] = []
    pypi_sources: list[str] = []
    flags: list[str] = []
    warnings: list[str] = []
    python: str | None = None
    for number, line in _logical_lines(text):
        where = f"line {number} of {origin}"
        option, _, value = re.sub(r"^(-[a-z]|--[a-z-]+)=", r"\1 ", line).partition(" ")
        value = value.strip()
        if line.startswith("-") and option in ("--pre", "--no-index") and not value:
            flags.append(option)
        elif option in ("-i", "--index-url"):
            warnings.append(
                f"{option} {value} ({where}) is ignored: the main index comes from CONDA_DEFAULT_PYPI_SOURCE or "
                "pip's configuration; use --extra-index-url to add an index."
            )
        elif option == "--extra-index-url" and value:
            pypi_sources.append(value)
        elif option in ("-f", "--find-links", "--trusted-host") and value:
            flags.append(f"{'--find-links' if option == '-f' else option} {value}")
        elif option == "--conda-channel" and value:
            conda_sources.append(value)
        elif option == "--conda-pkg" and value:
            match = _CONDA_ENTRY.fullmatch(value)
            if not match:
                raise _fail(
                    f"Could not parse conda package {value!r}", where, "Write --conda-pkg NAME[==VERSION]."
                )
            reqs.append(
                conda_requirement(
                    (match["channel"] + "::" if match["channel"] else "") + match["name"],
                    _entry_version(match["rest"]),
                    where,
                    NPCONDA,
                )
            )
        elif option == "--sys-pkg" and value:
            reqs.append(sys_requirement(*_split_sys(value), where))
        elif line.startswith("-"):
            raise _fail(
                f"{line!r} is not a supported line in a requirements.txt",
                where,
                "Supported options: --extra-index-url, -i/--index-url, -f/--find-links, --trusted-host, --pre, "
                "--no-index, --conda-channel, --conda-pkg, --sys-pkg; editable installs, constraints, nested "
                "requirement files and hashes are not.",
            )
        elif re.match(r"^python\s*[<>=!~]", line) or line == "python":
            python = python_spec(line[len("python") :], where) if line != "python" else python
        else:
            reqs.append(pypi_requirement(line, where))
    return Spec(
        requirements=tuple(reqs),
        sources=_sources(conda_sources, pypi_sources),
        extras={PYPI: tuple(dict.fromkeys(flags))} if flags else {},
        python=python,
        origin=f"the requirements file {origin}",
        warnings=tuple(warnings),
    )


# --- environment.yml -----------------------------------------------------------------------------------


def _entry_version(rest: str) -> str:
    """The version part of a conda entry: ``=1.0``, ``==1.0``, `` >=1.0``, ``= >=1.0``, `` 1.0``."""
    rest = rest.strip()
    if rest.startswith("==") and not rest[2:].lstrip().startswith(("<", ">", "!", "~")):
        return rest[2:].strip()
    if rest.startswith("=") and not rest.startswith("=="):
        rest = rest[1:].strip()
        if not re.match(r"^[\d*]", rest):
            return rest  # "pkg = >=1.0"
        version, _, build = rest.partition("=")
        version = version if version.endswith("*") else f"{version}.*"  # conda's pkg=1.21 means 1.21.*
        return f"{version} {build}" if build else version
    return rest


def parse_environment_yml(text: str, origin: str = "environment.yml") -> Spec:
    import yaml  # only for environment.yml: a quarter of the CLI's start-up otherwise

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}, column {mark.column + 1} of {origin}" if mark else origin
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise _fail(
            f"{origin} is not valid YAML: {problem}", line, "Fix the indentation or quoting there."
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail(
            f"{origin} must be a mapping with channels and dependencies",
            origin,
            "See the conda environment file format.",
        )
    warnings = [
        f"The section {key!r} of {origin} is ignored."
        for key in data
        if key not in ("name", "channels", "dependencies", "pypi-indices")
    ]

    def strings(key: str) -> list[str]:
        value = data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(
                f"{key} in {origin} must be a list of strings",
                origin,
                f"Write {key}: followed by '- item' lines.",
            )
        return value

    reqs: list[Requirement] = []
    python: str | None = None
    for entry in data.get("dependencies") or []:
        where = f"dependencies of {origin}"
        if isinstance(entry, dict) and set(entry) <= {"pip", "sys"}:
            for item in entry.get("pip") or []:
                reqs.append(pypi_requirement(str(item), f"pip dependencies of {origin}"))
            for item in entry.get("sys") or []:
                reqs.append(sys_requirement(*_split_sys(str(item)), f"sys dependencies of {origin}"))
            continue
        if not isinstance(entry, (str, int, float)):
            raise _fail(
                f"The dependency {entry!r} is not understood",
                where,
                "Write '- NAME[=VERSION]', '- pip:' or '- sys:'.",
            )
        text = str(entry).strip()
        if re.match(r"^(git\+|https?://|ssh://|/)", text):
            reqs.append(pypi_requirement(text, where))
            continue
        match = _CONDA_ENTRY.fullmatch(text)
        if not match:
            raise _fail(
                f"Could not parse conda package {text!r}",
                where,
                "Write '- NAME', '- NAME=1.2' or '- NAME>=1.2'.",
            )
        version = _entry_version(match["rest"])
        if match["name"] == "python":
            if python is not None:
                raise _fail(
                    "Python versions specified multiple times in the YAML file",
                    origin,
                    "Keep one python entry.",
                )
            python = python_spec(version, where) if version else None
            continue
        key = (match["channel"] + "::" if match["channel"] else "") + match["name"]
        reqs.append(conda_requirement(key, version, where))
    return Spec(
        requirements=tuple(reqs),
        sources=_sources(strings("channels"), strings("pypi-indices")),
        python=python,
        origin=f"the environment file {origin}",
        warnings=tuple(warnings),
    )


# --- pyproject.toml ------------------------------------------------------------------------------------


def _poetry_constraint(value: str) -> str:
    """Poetry's ``^1.2.3`` / ``~1.2`` / ``*`` / ``1.2`` as a PEP 440 specifier."""
    value = value.strip()
    if value in ("", "*"):
        return ""
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


def parse_pyproject(text: str, origin: str = "pyproject.toml") -> Spec:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(f"{origin} is not valid TOML: {exc}", origin, "Fix the file.") from None
    project = data.get("project", {})
    tool = data.get("tool", {})
    poetry = tool.get("poetry", {})
    reqs: list[Requirement] = []
    where = f"[project].dependencies of {origin}"
    for item in project.get("dependencies", []):
        req = pypi_requirement(item, where) if not re.match(r"^python\s*([<>=!~]|$)", item) else None
        if req is None:
            raise _fail(
                f"{item!r} names python",
                where,
                "Python specification should be specified as 'requires-python'.",
            )
        reqs.append(req)
    python = project.get("requires-python")
    for name, value in poetry.get("dependencies", {}).items():
        constraint = value.get("version", "*") if isinstance(value, dict) else str(value)
        if name == "python":
            python = python or _poetry_constraint(constraint)
            continue
        extras = value.get("extras", []) if isinstance(value, dict) else []
        text_req = f"{name}{'[' + ','.join(extras) + ']' if extras else ''}{_poetry_constraint(constraint)}"
        reqs.append(pypi_requirement(text_req, f"[tool.poetry.dependencies] of {origin}"))
    indices = [s["url"] for s in poetry.get("source", []) if "url" in s]
    indices += [s["url"] for s in tool.get("uv", {}).get("index", []) if "url" in s]
    return Spec(
        requirements=tuple(reqs),
        sources=_sources((), indices),
        python=python_spec(python, f"requires-python of {origin}") if python else None,
        origin=f"the project file {origin}",
    )


def load(path: Path) -> Spec:
    """A spec from a file, by its name: ``*.yml``/``*.yaml``, ``*.toml``, anything else as requirements.txt."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(f"Cannot read {path}: {exc.strerror or exc}. Check the path.") from None
    name = Path(path).name
    if name.endswith((".yml", ".yaml")):
        return parse_environment_yml(text, str(path))
    if name.endswith(".toml"):
        return parse_pyproject(text, str(path))
    return parse_requirements_txt(text, str(path))


# --- combining -----------------------------------------------------------------------------------------


def _and(a: Requirement, b: Requirement) -> Requirement:
    """Both constraints at once (comma-joined, duplicates dropped), as the original merges decorators."""

    def parts(req: Requirement) -> list[str]:
        return [p if p[0] in "<>=!~" else f"=={p}" for p in req.spec.split(",") if p]

    joined = list(dict.fromkeys([*parts(a), *parts(b)]))
    spec = ",".join(joined)
    if len(joined) == 1 and joined[0].startswith("==") and not joined[0].startswith("==="):
        spec = joined[0][2:]
    return replace(a, spec=spec, extras=tuple(sorted({*a.extras, *b.extras})))


def _combine_sources(specs: Sequence[Spec], attr: str) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        for category, items in getattr(spec, attr).items():
            out[category] = tuple(dict.fromkeys((*out.get(category, ()), *items)))
    return out


def merge(*specs: Spec) -> Spec:
    """Specs at the same level (flow decorators together): constraints on one package are AND-ed; python must
    agree."""
    by_key: dict[tuple[str, str], Requirement] = {}
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
        for req in spec.requirements:
            key = (req.category, req.name.lower())
            by_key[key] = _and(by_key[key], req) if key in by_key else req
    return Spec(
        requirements=tuple(by_key.values()),
        sources=_combine_sources(specs, "sources"),
        extras=_combine_sources(specs, "extras"),
        python=python,
        origin=" and ".join(s.origin for s in specs),
        warnings=tuple(w for s in specs for w in s.warnings),
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
        raise SpecError(f"{python_version!r} is not a python version to evaluate markers with.")
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
    kept = []
    for req in requirements:
        if not req.marker:
            kept.append(req)
            continue
        from packaging.markers import InvalidMarker, Marker, UndefinedEnvironmentName

        try:
            marker = Marker(req.marker)
            answers = {marker.evaluate(env) for env in environments}
        except (InvalidMarker, UndefinedEnvironmentName) as exc:
            raise SpecError(f"The marker of {req.name} ({req.marker}) cannot be evaluated: {exc}.") from None
        if len(answers) > 1:
            raise SpecError(
                f"Ambiguous package marker for {req.name}: '{req.marker}' depends on the python patch level, which "
                f"python {python_version} does not fix. Pin python exactly, or use python_version in the marker."
            )
        if answers == {True}:
            kept.append(replace(req, marker=None))
    return tuple(kept)


__all__ = [
    "Spec",
    "applicable",
    "conda_requirement",
    "from_decorator",
    "load",
    "merge",
    "override",
    "parse_environment_yml",
    "parse_pyproject",
    "parse_requirements_txt",
    "pypi_requirement",
]
