"""From a user's specification to a locked environment: build the request, pick the resolver, check its result.

Decisions that differ from the original extension (reference §1(l)):

* The default python is ``X.Y.*`` of the launching interpreter for the CLI too (the original used the exact
  patch version on the CLI and ``X.Y.*`` in decorators, so "the same" spec got two req ids).
* The envcore CLI does not inject Metaflow's own pins (``requests``...); the Metaflow integration does.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from envcore.config import (
    TOKEN_LIKE_PATH,
    Config,
    Value,
    conda_token,
    parsed_url,
    redact_channel,
    redact_text,
    redact_url,
)
from envcore.errors import ConfigError, EnvcoreError, ResolutionError, SpecError, UsageError
from envcore.platforms import DEFAULT_OSX
from envcore.platforms import local_arch as local_arch
from envcore.plugins import RESOLVER_SETTINGS, Registry
from envcore.types import (
    CONDA,
    CONDA_TOKEN_USER,
    NPCONDA,
    PYPI,
    SYS,
    BatchResolver,
    Capability,
    EnvType,
    LockedPackage,
    PackageKind,
    Requirement,
    ResolvedEnvironment,
    Resolver,
    ResolveRequest,
)

if TYPE_CHECKING:
    from envcore.progress import Progress
    from envcore.specs import Spec

KNOWN_ARCHS = (
    "linux-64",
    "linux-aarch64",
    "linux-ppc64le",
    "linux-s390x",
    "osx-64",
    "osx-arm64",
    "win-64",
    "win-arm64",
)
SYS_PACKAGES = ("__cuda", "__glibc")
_MARKER_NAMES = (  # PEP 508's environment markers
    "os_name",
    "sys_platform",
    "platform_machine",
    "platform_python_implementation",
    "platform_release",
    "platform_system",
    "platform_version",
    "python_version",
    "python_full_version",
    "implementation_name",
    "implementation_version",
)


def check_arch(arch: str) -> str:
    if arch not in KNOWN_ARCHS:
        raise UsageError(f"Unknown architecture {arch!r}. Use a conda subdir: {', '.join(KNOWN_ARCHS)}.")
    return arch


def default_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}.*"


def sys_version(version: str) -> str:
    """The original's virtual-package version form: ``2.27`` -> ``2.27=0``; ``x=0=0`` -> ``x=0``."""
    while version.endswith("=0=0"):
        version = version[:-2]
    return version if version.endswith("=0") else f"{version}=0"


def host_glibc() -> str:
    """This machine's glibc version, as ``platform.libc_ver`` finds it first (without importing platform)."""
    try:
        found = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):  # not glibc, or not POSIX
        return ""
    name, _, version = found.partition(" ")
    return version if name == "glibc" else ""


def _local_virtual_packages(environ: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    glibc = environ.get("CONDA_OVERRIDE_GLIBC") or host_glibc()
    if glibc:
        found["__glibc"] = glibc
    if environ.get("CONDA_OVERRIDE_CUDA"):
        found["__cuda"] = environ["CONDA_OVERRIDE_CUDA"]
    return found


def sys_packages(config: Config, arch: str, requested: Iterable[Requirement]) -> tuple[Requirement, ...]:
    """Virtual packages that go in the request: the local ones when resolving for this machine, else
    ``CONDA_SYS_DEFAULT_PACKAGES[arch]``; the user's own ``@sys_packages`` win."""
    if arch == local_arch():
        found = _local_virtual_packages(config.environ)
    else:
        found = dict(_default_sys_packages(config).get(arch, {}))
        if arch == "linux-64" and "__glibc" in found and config.environ.get("CONDA_OVERRIDE_GLIBC"):
            found["__glibc"] = config.environ["CONDA_OVERRIDE_GLIBC"]
    for req in requested:
        found[req.name] = req.spec
    return tuple(
        Requirement(category=SYS, name=name, spec=sys_version(version))
        for name, version in sorted(found.items())
    )


def _default_sys_packages(config: Config) -> dict[str, dict[str, str]]:
    """``CONDA_SYS_DEFAULT_PACKAGES``, every arch's virtual packages checked as ``--sys-pkg`` values are."""
    setting = config.value("CONDA_SYS_DEFAULT_PACKAGES")
    good = 'Set it to a map of conda subdirs to virtual packages, such as {"linux-64": {"__glibc": "2.27"}}.'
    return {
        arch: _virtual_packages(setting, packages, good, arch)
        for arch, packages in _per_arch(setting, setting.value, good).items()
    }


def gpu_packages(config: Config, arch: str) -> dict[str, str]:
    """``CONDA_SYS_DEFAULT_GPU_PACKAGES``: the virtual packages a step that asks for a GPU is resolved with, in
    the original's form (``{"__cuda": "12.2"}``) or one such per arch (``{"linux-64": {"__cuda": "12.2"}}``)."""
    setting = config.value("CONDA_SYS_DEFAULT_GPU_PACKAGES")
    value = setting.value or {}
    good = (
        f'Set it to a map of {" or ".join(SYS_PACKAGES)} to a version, such as {{"__cuda": "12.2"}}, or one '
        'such map per conda subdir ({"linux-64": {"__cuda": "12.2"}}).'
    )
    if isinstance(value, dict) and any(key in KNOWN_ARCHS for key in value):
        per_arch = {
            a: _virtual_packages(setting, p, good, a) for a, p in _per_arch(setting, value, good).items()
        }
        return per_arch.get(arch, {})
    return _virtual_packages(setting, value, good)


def _per_arch(setting: Value, value: object, good: str) -> dict[str, object]:
    """A setting's map of conda subdirs to values; a ConfigError (ending with ``good``) naming what is not."""
    if not isinstance(value, dict):
        raise ConfigError(f"{setting.describe()}, which is not a map of conda subdirs. {good}")
    unknown = [arch for arch in value if arch not in KNOWN_ARCHS]
    if unknown:
        raise ConfigError(
            f"{setting.describe()}, which names {', '.join(map(repr, unknown))}, not a conda subdir (one of "
            f"{', '.join(KNOWN_ARCHS)}). {good}"
        )
    return value


def _virtual_packages(setting: Value, packages: object, good: str, arch: str = "") -> dict[str, str]:
    """``{"__cuda": "12.2"}`` of a setting (for ``arch``), each checked as a ``--sys-pkg`` value is."""
    from envcore.specs import sys_requirement

    at = f" for {arch}" if arch else ""
    where = f"in {setting.env_name}{at}"
    if not isinstance(packages, dict):
        raise ConfigError(
            f"{setting.describe()}, which{at} is not a map of virtual packages to versions. {good}"
        )
    checked = {}
    for name, version in packages.items():
        if isinstance(version, bool) or not isinstance(version, (str, int, float)):
            raise ConfigError(
                f"{setting.describe()}, which gives {name}{at} a version that is not text. {good}"
            )
        try:
            checked[name] = sys_requirement(name, str(version), where).spec
        except SpecError as exc:
            raise ConfigError(f"{setting.describe()}, which is not valid: {exc} {good}") from None
    return checked


# (compiled at its first use, by re's cache: only a failed resolve reads it)
_UNMET_VIRTUAL = (
    r"(__\w+)[^,;]*?, for which no candidates were found"  # rattler
    r"|nothing provides (?:requested )?(__\w+)"  # libsolv (conda, mamba 1)
    r"|(__\w+)[^,;]*?,? (?:which )?is missing on the system"  # libmamba 2
)


def unmet_system_feature(reason: str, arch: str) -> str | None:
    """The fix to give when the solver's ``reason`` is a virtual package no target of ``arch`` provides (a
    feature of the system: a driver, a C library, an OS version), else None."""
    match = re.search(_UNMET_VIRTUAL, reason)
    if match is None:
        return None
    name = next(group for group in match.groups() if group)
    if name in SYS_PACKAGES:
        version = "12.4" if name == "__cuda" else "2.28"
        default = (
            f"CONDA_OVERRIDE_{name[2:].upper()}={version} for this machine's architecture"
            if arch == local_arch()
            else f'METAFLOW_CONDA_SYS_DEFAULT_PACKAGES ({{"{arch}": {{"{name}": "{version}"}}}})'
        )
        return (
            f"{arch} is resolved without {name} at that version, a feature of the system it runs on (a virtual "
            f"package). If the machines it runs on have it, declare it: --sys-pkg {name}=={version} (envcore "
            f"resolve, or a requirements.txt line), the @sys_packages decorator of a flow, or as the default, "
            f"{default}. Otherwise choose a version of the package that does not need it."
        )
    if name == "__osx" and arch in DEFAULT_OSX:
        return (
            f"{arch} is resolved for macOS {DEFAULT_OSX[arch]} and newer, as its wheels are (envcore's default; "
            "__osx cannot be declared): choose a version of the package built for it."
        )
    return f"The package needs {name}, which {arch} does not provide: choose one built for {arch}."


def _check_target_settings(config: Config) -> None:
    """Every setting about targets is checked when resolving, also the ones that have no effect here
    (CONDA_ALL_ARCHS, CONDA_SYS_MARKERS): a bad value is refused, never stored nor silently dropped."""
    _default_sys_packages(config)
    gpu_packages(config, local_arch())
    archs = config.value("CONDA_ALL_ARCHS")
    if not all(arch in KNOWN_ARCHS for arch in archs.value):
        raise ConfigError(
            f"{archs.describe()}, but it must list conda subdirs ({', '.join(KNOWN_ARCHS)}), such as "
            '["linux-64", "osx-arm64"].'
        )
    markers = config.value("CONDA_SYS_MARKERS")
    good = (
        "Set it to a map of conda subdirs to PEP 508 marker values, such as "
        f'{{"linux-64": {{"platform_machine": "x86_64"}}}} (marker names: {", ".join(_MARKER_NAMES)}).'
    )
    for arch, values in _per_arch(markers, markers.value, good).items():
        if not isinstance(values, dict) or not all(
            name in _MARKER_NAMES and isinstance(value, str) for name, value in values.items()
        ):
            raise ConfigError(
                f"{markers.describe()}, which for {arch} is not a map of marker names to text. {good}"
            )


def _sys_union(config: Config, archs: Iterable[str], requested: list[Requirement]) -> tuple[Requirement, ...]:
    """The virtual packages of architectures resolved together: every one any of them has, each at the lowest
    version among them (what the oldest target provides), so all get one set, whatever the order of ``archs``,
    hence one req id."""
    return _lowest(req for arch in sorted(set(archs)) for req in sys_packages(config, arch, requested))


def _lowest(virtual: Iterable[Requirement]) -> tuple[Requirement, ...]:
    """Each virtual package once, at the lowest of its versions in ``virtual``, sorted by name."""
    union: dict[str, Requirement] = {}
    for req in virtual:
        if req.name not in union or _version_key(req.spec) < _version_key(union[req.name].spec):
            union[req.name] = req
    return tuple(union[name] for name in sorted(union))


def _version_key(spec: str) -> tuple[tuple[int, str], ...]:
    """``2.27=0`` -> ((2, ""), (27, "")): a virtual package's version, comparable (``2.4`` < ``2.27``)."""
    parts = re.split(r"[.\-_]", spec.split("=", 1)[0])
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in parts)


def _dedup(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def channel_name(config: Config, channel: str) -> str:
    """URLs under the channel alias become names again, so ids do not depend on the mirror in use; a relative path
    (``./chan``) becomes the folder it names, which a name would not say."""
    from envcore.config import local_channel

    folder = local_channel(channel)
    if folder is not None:
        return folder.rstrip("/") or "/"
    alias = config.channel_alias() + "/"
    for prefix in (alias, "https://conda.anaconda.org/"):
        if channel.startswith(prefix):
            return channel[len(prefix) :].strip("/")
    return channel.rstrip("/")


def build_request(
    spec: Spec,
    config: Config,
    arch: str,
    *,
    python: str | None = None,
    base: ResolvedEnvironment | None = None,
    coresolved: Sequence[str] = (),
) -> ResolveRequest:
    """The request for one architecture: the user's requirements plus python, virtual packages and the
    default sources, exactly the inputs of the req id.

    With ``coresolved`` (all archs resolved together), the virtual packages are the union over those archs,
    as the original does, so that every arch gets the same req id and one alias names them all."""
    check_arch(arch)
    _check_target_settings(config)
    if python:  # the --python of the CLI: 3.11 means 3.11.*, as python="3.11" does in decorators and files
        from envcore.specs import python_spec as parse_python

        python = parse_python(python, f"in --python {python!r}")
    if python and spec.python:
        raise UsageError(
            f"Cannot specify --python if the python dependency is already set in {spec.origin} "
            f"(python {spec.python}). Remove one of them."
        )
    python_spec = python or spec.python or default_python()
    user = [
        r for r in spec.requirements if r.category != SYS and not (r.category == CONDA and r.name == "python")
    ]
    virtual = _sys_union(config, (arch, *coresolved), [r for r in spec.requirements if r.category == SYS])
    if base is not None:  # the base's requests AND-ed with the new ones, as the original merges them
        from envcore.specs import combine

        python_spec = _base_python(base, python, spec)
        user = list(combine([*requirements_of(base), *user]))
        virtual = _lowest((*virtual, *virtual_packages_of(base)))  # what the base was resolved for, too
    requirements = (*user, Requirement(category=CONDA, name="python", spec=python_spec), *virtual)
    channels, where = ((), "") if spec.nodefaults else config.conda_channels()  # nodefaults: the spec's only
    if channels:
        from envcore.specs import check_channel

        for channel in channels:  # a bad setting is named as such
            check_channel(channel, f"in METAFLOW_CONDA_CHANNELS or the channels of .condarc, from {where}")
    raw_conda = (*spec.sources.get(CONDA, ()), *channels)
    if spec.nodefaults and not raw_conda:
        raise SpecError(
            f"The channels of {spec.origin} are only nodefaults, which leaves none to resolve from (nodefaults "
            "drops the configured METAFLOW_CONDA_CHANNELS). List the channels to use, or remove nodefaults."
        )
    _refuse_conda_tokens(config, spec, channels, where)
    sources: dict[str, tuple[str, ...]] = {
        CONDA: _dedup(channel_name(config, redact_channel(c)) for c in raw_conda)
    }
    draft = ResolveRequest(arch=arch, requirements=tuple(requirements), base=base)
    raw_pypi: tuple[str, ...] = ()
    if draft.env_type is not EnvType.CONDA_ONLY:
        defaults, where = config.pypi_sources()
        _check_indices(config, defaults, where)
        raw_pypi = (*defaults, *spec.sources.get(PYPI, ()))
        sources[PYPI] = _dedup(redact_url(s) for s in raw_pypi)
    extras, find_links = _extras_without_credentials(spec.extras)
    return replace(
        draft,
        sources=sources,  # never with credentials: they enter ids and descriptions
        extras=extras,
        python=python_spec,
        credentials=source_credentials(
            config, (*raw_pypi, *find_links), channels=(*raw_conda, config.channel_alias(as_configured=True))
        ),
    )


def _extras_without_credentials(
    extras: Mapping[str, tuple[str, ...]],
) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """The resolver options, each ``--find-links URL`` without the ``user:password@`` of its URL (the
    options enter ids and descriptions), and those URLs as given (their credentials go with the request's)."""
    find_links: list[str] = []
    cleaned: dict[str, tuple[str, ...]] = {}
    for kind, flags in extras.items():
        if not flags:
            continue
        kept = []
        for flag in flags:
            option, _, value = flag.partition(" ")
            if option == "--find-links" and value:
                find_links.append(value)
                flag = f"{option} {redact_url(value)}"
            kept.append(flag)
        cleaned[kind] = tuple(kept)
    return cleaned, find_links


def _refuse_conda_tokens(config: Config, spec: Spec, configured: Sequence[str], where: str) -> None:
    """A channel token at the start of a channel URL's path (anaconda.org's ``/t/<TOKEN>/channel``, also in
    the channel alias) is taken out of the URL into the request's credentials. One elsewhere in the path would
    be kept in the environment's sources, package URLs and store keys: refused, naming where it came from."""
    found = [(c, spec.origin) for c in spec.sources.get(CONDA, ())]
    found += [(c, f"METAFLOW_CONDA_CHANNELS or the channels of .condarc ({where})") for c in configured]
    found.append(
        (
            config.channel_alias(as_configured=True),
            "the channel alias (METAFLOW_CONDA_CHANNEL_ALIAS or .condarc)",
        )
    )
    for channel, origin in found:
        path = urlsplit(channel).path if "://" in channel else channel
        if "/t/" not in path or not re.search(TOKEN_LIKE_PATH, path) or conda_token(channel):
            continue
        shown = redact_text(channel)  # /t/<TOKEN>
        raise ConfigError(
            f"The conda channel {shown} (from {origin}) carries an access token (/t/<TOKEN>/) where envcore cannot "
            "keep it apart from the channel: it would be kept in the environment's description, its package "
            "URLs and the store's keys, readable by everyone who reads the store. Write the token right after "
            "the host (https://HOST/t/<TOKEN>/channel), as anaconda.org does, or give the channel's credentials "
            "as user:password@ in its URL or in METAFLOW_CONDA_SRCS_AUTH_INFO."
        )


def _check_indices(config: Config, indices: Sequence[str], where: str) -> None:
    """The configured indices checked as URLs: a bad setting is named as such, not as a package the index
    lacks."""
    from envcore.specs import check_index

    first = config.value("CONDA_DEFAULT_PYPI_SOURCE")
    for i, index in enumerate(indices):
        if i == 0 and first.value:
            check_index(index, f"in METAFLOW_CONDA_DEFAULT_PYPI_SOURCE, from {first.source}")
        else:
            check_index(index, f"in pip's configuration, from {where}")


def source_credentials(
    config: Config, sources: Iterable[str] = (), *, channels: Iterable[str] = ()
) -> dict[str, tuple[str, str]]:
    """host -> (user, password): ``CONDA_SRCS_AUTH_INFO``, then ``user:password@`` in source URLs (as the
    original) or, for conda ``channels``, a channel token in their path (``(CONDA_TOKEN_USER, token)``), then the system keyring for http(s) sources still without credentials (``ENVCORE_KEYRING``).
    Resolvers receive them apart from the URLs, which stay clean. Two sources on one host with different
    credentials are a ConfigError: one credential per host is all a resolver gets."""
    found = _credentials(config)
    configured = set(found)
    channels = list(channels)
    sources = [*channels, *sources]
    given_by: dict[str, str] = {}  # host -> the source whose credentials it has
    for source in sources:
        parts = urlsplit(source)
        if not parts.hostname or parts.hostname in configured:
            continue
        token = conda_token(source) if source in channels else None
        if token:  # a conda channel token (https://HOST/t/<TOKEN>/channel): put back into paths when fetching
            credential = (CONDA_TOKEN_USER, token)
        elif parts.username:
            credential = (unquote(parts.username), unquote(parts.password or ""))
        else:
            continue
        if parts.hostname in given_by and found[parts.hostname] != credential:
            raise ConfigError(
                f"Two sources on {parts.hostname} carry different credentials: "
                f"{redact_text(given_by[parts.hostname])} and {redact_text(source)}. Resolvers get one "
                "credential per host, so one source would be sent the other's. Use one account or token for "
                "both, or set the credential of the host in METAFLOW_CONDA_SRCS_AUTH_INFO (then the URLs need "
                "none)."
            )
        found[parts.hostname] = credential
        given_by.setdefault(parts.hostname, source)
    _refuse_credentials_for_another_port(sources, given_by)
    if str(config.get("ENVCORE_KEYRING")) == "auto":
        for source in sources:
            parts = urlsplit(source)
            if (
                parts.scheme in ("http", "https")
                and parts.hostname
                and parts.hostname not in found
                and parts.hostname not in PUBLIC_HOSTS
            ):
                kept = _from_keyring(redact_url(source), parts.hostname)
                if kept is not None:
                    found[parts.hostname] = kept
    return found


def _refuse_credentials_for_another_port(sources: Sequence[str], given_by: Mapping[str, str]) -> None:
    """Credentials go to a host, as a netrc file gives them to pip, uv and conda: a source without credentials
    on the host of one with them, at another port (another server, maybe someone else's), would be sent them."""
    for source in sources:
        parts = urlsplit(source)
        holder = given_by.get(parts.hostname or "")
        if holder is None or parts.username or conda_token(source):
            continue
        if _port(source) != _port(holder):
            raise ConfigError(
                f"The source {redact_text(holder)} carries credentials and {redact_text(source)}, on the same host "
                "at another port, none. Resolvers and the tools they drive get credentials per host (as from a "
                "netrc file), so the second would be sent the first's. If both are one service, give the second "
                "the same credentials; else reach one of them by another host name, or give the credentials of "
                "the host in METAFLOW_CONDA_SRCS_AUTH_INFO to send them to every port."
            )


def _port(url: str) -> int | None:
    """The port ``url`` reaches (the scheme's default when it names none); None for a URL that does not parse."""
    parts = parsed_url(url)
    return None if parts is None else parts.port or {"http": 80, "https": 443}.get(parts.scheme)


# Public indexes and channels never need credentials: no keyring lookup (its backend discovery costs ~0.2 s).
PUBLIC_HOSTS = frozenset(
    {
        "pypi.org",
        "files.pythonhosted.org",
        "conda.anaconda.org",
        "repo.anaconda.com",
        "conda-static.anaconda.org",
    }
)


def _from_keyring(url: str, host: str) -> tuple[str, str] | None:
    """(user, password) the keyring holds for the source URL or its host (pip's lookup order), if the
    ``keyring`` package is installed and has a usable backend."""
    try:
        import keyring
        import keyring.backends.fail
        import keyring.errors
    except ImportError:
        return None
    if isinstance(keyring.get_keyring(), keyring.backends.fail.Keyring):
        return None  # installed, but no backend on this machine
    for service in (url, host):
        try:
            credential = keyring.get_credential(service, None)
        except (keyring.errors.KeyringError, RuntimeError):
            return None  # no usable backend: as if no keyring were installed
        if credential is not None and credential.username and credential.password:
            return credential.username, credential.password
    return None


def requirements_of(env: ResolvedEnvironment) -> list[Requirement]:
    """The user requirements recorded in ``env`` (its ``deps``), without python and virtual packages."""
    found = []
    for tstr in env.deps:
        category, _, value = tstr.partition("::")
        value, _, marker = value.partition(";")
        url = ""
        if category == PYPI:
            value, _, url = value.partition("@")  # pypi::fx-core@file:///wheels/fx_core-1.0-py3-none-any.whl
        name, _, spec = value.partition("==")
        channel, _, name = name.rpartition("::")  # conda::conda-forge::numpy==1.21, conda::https://h/c::numpy
        name, _, extras = name.partition("[")  # pypi::requests[socks]==>=2
        if category in (CONDA, PYPI, NPCONDA) and name != "python":
            found.append(
                Requirement(
                    category=category,
                    name=name,
                    spec=_solvable(category, name, spec),
                    marker=marker or None,
                    channel=channel or None,
                    extras=tuple(e.strip() for e in extras.rstrip("]").split(",") if e.strip()),
                    url=url or None,
                    stated=None if url else spec + (f";{marker}" if marker else ""),  # hashed as recorded
                )
            )
    return found


def _solvable(category: str, name: str, spec: str) -> str:
    """A recorded conda version as the solvers read it: a decorator's text is recorded as written (``>= 1.0,
    <3``, ``2.0.0=py_0``); PyPI specifiers are read by pip and uv as they are."""
    if category == PYPI or not spec:
        return spec
    from envcore.specs import conda_requirement

    try:
        return conda_requirement(name, spec, "").spec
    except SpecError:
        return spec  # (the resolver names it)


def virtual_packages_of(env: ResolvedEnvironment) -> tuple[Requirement, ...]:
    """The virtual packages ``env`` was resolved for (its ``sys::`` deps: ``sys::__cuda==12.2=0``)."""
    found = []
    for tstr in env.deps:
        category, _, value = tstr.partition("::")
        name, _, spec = value.partition("==")
        if category == SYS and name and spec:
            found.append(Requirement(category=SYS, name=name, spec=spec))
    return tuple(found)


def _base_python(base: ResolvedEnvironment, option: str | None, spec: Spec) -> str:
    """The base's python, which an extension keeps: ``--python`` is refused, a python the requirements ask
    for must be the base's (as the original)."""
    python = next((p for p in base.packages if p.kind is PackageKind.CONDA and p.name == "python"), None)
    if python is None:
        raise UsageError(
            f"Cannot determine the Python version of the base environment {base.req_id}:{base.full_id}: it has no "
            "python package."
        )
    if option:
        raise UsageError(
            f"Cannot specify a Python version ({option}) when extending an environment: the base environment "
            f"has python {python.version}, which is kept. Remove --python."
        )
    if spec.python and not _version_fits(python.version, spec.python):
        raise UsageError(
            f"The base environment's Python version ({python.version}) does not match the one specified in "
            f"{spec.origin} ({spec.python}): an extended environment keeps the base's python. Remove the python "
            "requirement, or extend an environment made with the python you want."
        )
    return python.version


def _version_fits(version: str, conda_spec: str) -> bool:
    """Whether ``version`` satisfies a conda version spec (``3.11.*``, ``>=3.10,<3.12``, ``3.10.*|3.11.*``)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        for alternative in conda_spec.replace(" ", "").split("|"):
            parts = [p if p[0] in "<>=!~" else f"=={p}" for p in alternative.split(",") if p]
            if Version(version) in SpecifierSet(",".join(parts)):
                return True
    except (InvalidSpecifier, InvalidVersion):
        pass
    return False


def _credentials(config: Config) -> dict[str, tuple[str, str]]:
    value = config.value("CONDA_SRCS_AUTH_INFO")
    if not isinstance(value.value, dict) or not all(
        isinstance(v, (list, tuple)) and len(v) == 2 for v in value.value.values()
    ):
        raise ConfigError(f"{value.describe()}, but it must map hosts to [user, password].")
    not_hosts = [str(k) for k in value.value if not re.fullmatch(r"[^\s/:@]+|\[[0-9A-Fa-f:.]+\]", str(k))]
    if not_hosts:
        raise ConfigError(
            f"{value.describe()}, with the key {not_hosts[0]!r}, which is not a host name. Its keys are host "
            "names (pypi.example.com, 10.0.0.5): credentials apply to every port and path of a host, as a netrc "
            "file's do, which the tools envcore drives read. Write the host alone."
        )
    return {str(host): (str(user), str(pw)) for host, (user, pw) in value.value.items()}


def id_inputs(request: ResolveRequest) -> tuple[list[str], list[str], list[str]]:
    """The TStr lists (deps, sources, extras) that the req id hashes."""
    deps = [r.tstr for r in request.requirements]
    sources = [f"{cat}::{s}" for cat, items in request.sources.items() for s in items]
    extras = [f"{cat}::{e}" for cat, items in request.extras.items() for e in items]
    return deps, sources, extras


def req_id(registry: Registry, request: ResolveRequest) -> str:
    return registry.naming().req_id(*id_inputs(request))


def resolver_for(registry: Registry, env_type: EnvType) -> tuple[str, Resolver]:
    """The resolver that locks ``env_type`` environments, and its name for messages (once per registry). A
    resolver that only locks PyPI packages is composed with the conda resolver, which provides python."""
    return registry.kept((resolver_for, env_type), lambda: _select_resolver(registry, env_type))


def _select_resolver(registry: Registry, env_type: EnvType) -> tuple[str, Resolver]:
    from envcore.builtin import COMPOSITION

    plugin = registry.resolver_plugin(env_type)
    pure_pypi = env_type is EnvType.PYPI_ONLY and EnvType.CONDA_ONLY not in plugin.env_types
    if plugin.name != COMPOSITION and not pure_pypi:
        return plugin.name, registry.resolver(env_type)
    from envcore import compose  # with its PyPI helpers: only to compose a resolver (not for conda only)

    pypi = plugin.name if pure_pypi else registry.resolver_plugin(EnvType.PYPI_ONLY).name
    return compose.ComposedResolver.with_conda(registry, pypi)


def base_pins(base: ResolvedEnvironment) -> tuple[Requirement, ...]:
    """An exact pin of every package of ``base`` (virtual packages aside): a conda package at its version and
    build (a CUDA build stays a CUDA build), a PyPI one at its version."""
    return tuple(
        Requirement(category=CONDA, name=pkg.name, spec=f"{pkg.version} {pkg.build}".strip())
        if pkg.kind is PackageKind.CONDA
        else Requirement(category=PYPI, name=pkg.name, spec=pkg.version)
        for pkg in base.packages
        if not (pkg.kind is PackageKind.CONDA and pkg.name.startswith("__"))
    )


def _with_base_files(
    packages: Sequence[LockedPackage], base: ResolvedEnvironment
) -> tuple[LockedPackage, ...]:
    """Each package of ``base`` as the base holds it: a channel or index that now serves other bytes under the
    same name, version, build and file name (a rebuild uploaded in place) would otherwise give an extension
    other files than its base, months later. The base's files are in the store."""
    kept = {(p.kind, p.name, p.version, p.build, p.filename): p for p in base.packages}
    return tuple(kept.get((p.kind, p.name, p.version, p.build, p.filename), p) for p in packages)


def _extend(
    registry: Registry,
    resolver: Resolver,
    request: ResolveRequest,
    base: ResolvedEnvironment,
    base_name: str | None,
) -> Sequence[LockedPackage]:
    """Resolve with every package of the base kept at its version (as the original does: what the new
    requirements add must fit them); when they cannot all be kept, name those that would have to change.
    Messages name the base as the user did (``base_name``, an alias), with its ids."""
    from envcore.specs import combine

    ids = f"{base.req_id}:{base.full_id}"
    shown = f"{base_name} ({ids})" if base_name else ids

    pinned = replace(request, requirements=combine([*request.requirements, *base_pins(base)]))
    try:
        return _with_base_files(resolver.resolve(pinned), base)
    except ResolutionError as exc:
        kept = exc
        again = _with_stored_files(registry, resolver, pinned, base, exc.message)
        if again is not None:
            return again
        try:
            free = tuple(resolver.resolve(request))
        except ResolutionError:  # not even the base's requests and the new ones fit together
            raise ResolutionError(f"Cannot extend {shown}: {kept.message}") from None

    def shown_version(pkg: LockedPackage) -> str:
        return f"{pkg.version} ({pkg.build})" if pkg.kind is PackageKind.CONDA and pkg.build else pkg.version

    before = {(p.kind, p.name): shown_version(p) for p in base.packages}
    changed = sorted(
        f"{p.name} {before[(p.kind, p.name)]} -> {shown_version(p)}"
        for p in free
        if (p.kind, p.name) in before and before[(p.kind, p.name)] != shown_version(p)
    )
    if not changed:  # the free answer keeps the base's packages: the pinned request failed for its own reason
        raise ResolutionError(f"Cannot extend {shown} keeping its packages: {kept.message}")
    raise ResolutionError(
        f"Cannot extend {shown} keeping its packages: the new requirements need {', '.join(changed)}. Relax the "
        "new requirements, or resolve from scratch (without --using) to let those packages change."
    )


def _with_stored_files(
    registry: Registry, resolver: Resolver, pinned: ResolveRequest, base: ResolvedEnvironment, failure: str
) -> tuple[LockedPackage, ...] | None:
    """``pinned`` (an extension of ``base``) resolved again with the files of the base's packages its failure
    names taken from the store: wheels as a ``--find-links`` folder, conda packages into the package cache (the
    PyPI side reads which distributions they install). A channel or index that has since removed one of them
    then no longer stops the extension from keeping it; each new failure that names other base packages fetches
    those too. None when a failure names none (the first failure is the one to report), or the store lacks one."""
    import shutil

    from envcore.cache import package_keys
    from envcore.fetch import PackageCache, from_store
    from envcore.pypi import canonicalize
    from envcore.tools import scratch_folder

    cache, fetched = PackageCache(registry.config.cache_dir()), set[str]()
    with scratch_folder("base-files") as folder:
        while True:
            named = {canonicalize(word) for word in re.findall(r"[A-Za-z0-9][A-Za-z0-9._-]*", failure)}
            wanted = [
                p
                for p in base.packages
                if canonicalize(p.name) in named and p.filename not in fetched and not p.name.startswith("__")
            ]
            if not wanted:
                return None
            try:
                store = registry.store()
                for pkg in wanted:
                    file, name = pkg.files[0], pkg.filename + pkg.files[0].url_format
                    found = cache.get(file, name) or from_store(
                        store, package_keys(registry.config, pkg)[file.url_format], cache, file, name
                    )
                    if pkg.kind is PackageKind.PYPI:
                        shutil.copyfile(found, os.path.join(folder, name))
                    fetched.add(pkg.filename)
                links = (*pinned.extras.get(PYPI, ()), f"--find-links={folder}")
                again = (
                    replace(pinned, extras={**pinned.extras, PYPI: links}) if os.listdir(folder) else pinned
                )
                return _with_base_files(resolver.resolve(again), base)
            except ResolutionError as exc:
                failure = exc.message
            except (EnvcoreError, OSError):
                return None


def _check_conda_tokens(registry: Registry, resolver_name: str, request: ResolveRequest) -> None:
    """A conda channel token reaches only conda resolvers that put it back into what they fetch and keep it out
    of what they return (``Capability.CONDA_TOKEN``)."""
    hosts = sorted(host for host, (user, _) in request.credentials.items() if user == CONDA_TOKEN_USER)
    if not hosts:
        return
    for name in resolver_name.split("+"):
        entry = registry.resolvers.get(name)
        if entry is None or Capability.CONDA_TOKEN in entry.record.capabilities:
            continue
        if entry.record.env_types & {EnvType.CONDA_ONLY, EnvType.MIXED}:
            raise ConfigError(
                f"The conda channels of {', '.join(hosts)} are read with an access token (/t/<TOKEN>/), which the "
                f"resolver {name!r} cannot use without keeping it in what it writes. Choose a resolver that can (rattler, the "
                f"default) in METAFLOW_{RESOLVER_SETTINGS[next(iter(entry.record.env_types))]}, or give the "
                "channels' credentials as user:password@ in their URLs if their server accepts them."
            )


def missing_local_path(location: str) -> str | None:
    """The path of ``location`` (a ``file://`` URL or a path) when it is on this machine's file system and not
    there; None otherwise (other URLs included)."""
    parts = urlsplit(location)
    if parts.scheme not in ("file", ""):
        return None
    path = unquote(parts.path) if parts.scheme else location
    return None if os.path.exists(path) else path


def _check_local_pypi_sources(request: ResolveRequest) -> None:
    """A PyPI index or ``--find-links`` folder on this machine (``file://`` or a path) that is not there is
    refused: pip and uv read it as empty and resolve without it, from the other indexes or not at all."""
    if not request.of(PYPI):
        return
    from envcore.pypi import find_links, read_indexes

    for location, what in [
        *((i, "PyPI index") for i in read_indexes(request)),
        *((f, "--find-links location") for f in find_links(request)),
    ]:
        path = missing_local_path(location)
        if path:
            raise SpecError(
                f"The {what} {redact_url(location)} is not on this machine: {path} does not exist. A missing "
                "local index would be read as empty and the environment resolved without it. Check the path "
                "(--index, METAFLOW_CONDA_DEFAULT_PYPI_SOURCE, or --index-url / --extra-index-url / --find-links in "
                "the requirements file), or create the index there."
            )


def _refused_index(request: ResolveRequest) -> str | None:
    if not request.of(PYPI) or not any(s.startswith("http") for s in request.sources.get(PYPI, ())):
        return None
    from envcore import pypi

    return pypi.refused_index(request)


def _reads_pylock(request: ResolveRequest) -> bool:
    return any(flag.startswith("--pylock=") for flag in request.extras.get(PYPI, ()))


def _reads_explicit(request: ResolveRequest) -> bool:
    return any(flag.startswith("--explicit=") for flag in request.extras.get(CONDA, ()))


def ignored_by_markers(resolved: Iterable[tuple[ResolveRequest, ResolvedEnvironment]]) -> list[str]:
    """One line per PyPI requirement that the environments ``resolved`` (fresh resolutions of their requests)
    go without because its marker does not hold for their target (arch and the python they got), naming the
    targets, as pip says "Ignoring NAME: markers ... don't match your environment". A pylock.toml's packages
    are left out: a lock for several platforms holds the others' packages by design."""
    targets: dict[tuple[str, str], dict[str, list[str]]] = {}  # (requirement, marker) -> python -> archs
    for request, env in resolved:
        marked = [r for r in request.of(PYPI) if r.marker]
        if not marked or _reads_pylock(request):
            continue
        # here: packaging (~8 ms of a command's start) only for requirements with markers
        from envcore.pypi import pep508
        from envcore.specs import not_applicable

        python = next(
            (p.version for p in env.packages if p.kind is PackageKind.CONDA and p.name == "python"),
            request.python or default_python(),
        )
        try:
            dropped = not_applicable(marked, python_version=python, arch=env.arch)
        except SpecError:  # (a marker the resolver read its own way: nothing to say for it)
            continue
        for req in dropped:
            shown = pep508(replace(req, marker=None))
            by_python = targets.setdefault((shown, req.marker or ""), {})
            by_python.setdefault(python, []).append(env.arch)
    lines = []
    for (shown, marker), by_python in targets.items():
        where = " and ".join(
            f"{', '.join(sorted(set(archs)))} with python {python}" for python, archs in by_python.items()
        )
        lines.append(
            f"Ignoring {shown}: its marker ({marker}) does not hold for {where}, the "
            f"target{'s' if len(by_python) > 1 or len(next(iter(by_python.values()))) > 1 else ''} it was "
            "resolved for, so it is not in the environment."
        )
    return lines


def batch_resolver(registry: Registry, request: ResolveRequest) -> tuple[str, BatchResolver] | None:
    """The resolver of ``request`` (its name, itself) when it locks batches (:class:`BatchResolver`) and the
    request is plain: no base to extend, no pylock.toml or explicit file to read."""
    if request.base is not None or _reads_pylock(request) or _reads_explicit(request):
        return None
    return registry.kept((batch_resolver, request.env_type), lambda: _batching(registry, request.env_type))


def _batching(registry: Registry, env_type: EnvType) -> tuple[str, BatchResolver] | None:
    name, resolver = resolver_for(registry, env_type)
    return (name, resolver) if isinstance(resolver, BatchResolver) else None  # a Protocol check: ~10 us


def _check_reference_hashes(request: ResolveRequest, packages: Sequence[LockedPackage]) -> None:
    """A direct reference's ``#sha256=`` (``NAME @ URL#sha256=...``, as pip checks it) against the file the
    resolver locked for it."""
    for req in request.requirements:
        if req.url is None or "sha256=" not in req.url:
            continue
        given = re.search(r"[#&]sha256=([0-9a-fA-F]{64})\b", req.url)
        if given is None:
            continue
        from envcore.pypi import filename_of

        file_name = filename_of(req.url)
        for pkg in packages:
            for file in pkg.files:
                same = not file.built and filename_of(file.url) == file_name
                if same and file.sha256.lower() != given[1].lower():
                    raise ResolutionError(
                        f"{file_name}, which {req.name} names, has sha256 {file.sha256}, not the {given[1]} its "
                        f"URL gives (#sha256=). Check the file, or correct the hash in the requirement."
                    )


def resolve(
    registry: Registry,
    request: ResolveRequest,
    *,
    base_name: str | None = None,
    solved: Sequence[LockedPackage] | EnvcoreError | None = None,
    progress: Progress | None = None,
    known_req_id: str | None = None,
) -> ResolvedEnvironment:
    """Lock ``request`` with the configured resolver for its environment type, and check the result. With a
    base environment (``request.base``, called ``base_name`` by the user), every base pin the new requirements
    allow is kept. ``solved``: the answer of the resolver's batch call for this request, already made.
    ``progress``: where source distributions being built are shown. ``known_req_id``: the request's req id
    (:func:`req_id`), when the caller has it."""
    env_type = request.env_type
    if _reads_pylock(request):  # a pylock.toml: read, not resolved (envcore.pylock, imported only when used)
        from envcore import pylock

        name, resolver = pylock.resolver_for(registry)
        request_for_builds = pylock.without_flag(request)
    elif _reads_explicit(request):  # a conda explicit file: fetched and read, not solved (its PyPI side is)
        from envcore import explicit

        name, resolver = explicit.resolver_for(registry, request)
        request_for_builds = request
    else:
        name, resolver = resolver_for(registry, env_type)
        request_for_builds = request
    _check_conda_tokens(registry, name, request)
    if request_for_builds is request:  # a pylock.toml names its files: the indexes are not read
        _check_local_pypi_sources(request)
    registry.checked(name, resolver)
    try:
        if isinstance(solved, EnvcoreError):
            raise solved
        packages: Sequence[LockedPackage] = (
            _extend(registry, resolver, request, request.base, base_name)
            if request.base
            else tuple(resolver.resolve(request) if solved is None else solved)
        )
    except ResolutionError as exc:
        refusal = _refused_index(request)
        if refusal is not None:
            raise ResolutionError(f"{refusal}.") from exc
        raise
    registry.check_locked(name, packages)
    _check_reference_hashes(request, packages)
    version = registry.version_of(name, resolver)
    if any(p.is_sdist for p in packages):
        from envcore import build  # sdists are rare: their machinery stays out of every start-up

        packages = build.build_sdists(registry, request_for_builds, packages, local_arch(), progress)
    naming = registry.naming()
    deps, sources, extras = id_inputs(request)
    return ResolvedEnvironment(
        req_id=known_req_id or naming.req_id(deps, sources, extras),
        full_id=naming.full_id(packages, request.arch, {}),
        arch=request.arch,
        env_type=env_type,
        deps=tuple(deps),
        sources=tuple(sources),
        extras=tuple(extras),
        packages=tuple(packages),
        resolved_on=datetime.now().isoformat(sep=" "),
        resolved_by=registry.config.username()
        + (  # as the original: only when the base's packages are used as they are
            f" (compatible with {request.base.req_id}:{request.base.full_id})"
            if request.base and {p.filename for p in packages} == {p.filename for p in request.base.packages}
            else ""
        ),
        resolved_archs=(request.arch,),
        resolver=f"{name.partition('+')[0]} {version}",
    )
