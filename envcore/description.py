"""The environment description stored under ``envs/<arch>/<req>/<full>/env``: JSON with the original
extension's fields (``deps``, ``sources``, ``extras``, ``packages`` with ``_type``/``filename``/``url``/
``url_format``/``hashes``/``cache_info``, ``resolved_on``, ``resolved_by``, ``resolved_archs``, ``env_type``,
``accurate_source``), plus an ``envcore`` block per package (sha256 of every format, size, name, version,
build, depends) and at the top level (schema version, resolver, the version of envcore that wrote it), which the
original ignores when reading. A description of a newer schema is refused, naming the envcore that wrote it;
fields this envcore does not know are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from envcore import __version__
from envcore.errors import NewerDescription, StorageError
from envcore.types import EnvType, LockedPackage, PackageFile, PackageKind, ResolvedEnvironment

SCHEMA = 1
# How earlier versions of the original named PyPI packages, dependencies and environments; read as ``pypi``.
LEGACY_PIP = "pip"
LEGACY_ENV_TYPES = {"pip-only": "pypi-only"}


def _modern_dep(dep: str) -> str:
    """``pip::name`` (earlier versions of the original) as ``pypi::name``."""
    return f"pypi::{dep[5:]}" if dep.startswith(f"{LEGACY_PIP}::") else dep


def package_to_dict(pkg: LockedPackage, cache_keys: Mapping[str, str] | None = None) -> dict[str, Any]:
    src = pkg.source
    hashes = {
        f.url_format: (f.md5 if pkg.kind is PackageKind.CONDA and f.md5 else f.sha256) for f in pkg.files
    }
    data: dict[str, Any] = {
        "_type": pkg.kind.value,
        "filename": pkg.filename,
        "url": src.url,
        "url_format": src.url_format,
        "hashes": hashes,
    }
    keys = cache_keys or {f.url_format: f.stored_key for f in pkg.files if f.stored_key}
    if keys:
        data["cache_info"] = {fmt: {"_type": pkg.kind.value, "url": key} for fmt, key in keys.items()}
    data["envcore"] = {
        "name": pkg.name,
        "version": pkg.version,
        "build": pkg.build,
        "subdir": pkg.subdir,
        "channel": pkg.channel,
        "depends": list(pkg.depends),
        "files": {
            f.url_format: {"url": f.url, "sha256": f.sha256, "md5": f.md5, "size": f.size}
            | ({"built": True} if f.built else {})
            | ({"sdist_sha256": f.sdist_sha256, "sdist_size": f.sdist_size} if f.sdist_sha256 else {})
            for f in pkg.files
        },
    }
    return data


def package_from_dict(data: Mapping[str, Any]) -> LockedPackage:
    if "envcore" not in data:
        return _original_package(data)
    extra = data["envcore"]
    stored = cache_keys_of(data)
    files = tuple(
        PackageFile(
            url_format=fmt,
            url=f["url"],
            sha256=f["sha256"],
            md5=f.get("md5"),
            size=f.get("size"),
            built=bool(f.get("built", False)),
            sdist_sha256=f.get("sdist_sha256"),
            sdist_size=f.get("sdist_size"),
            stored_key=stored.get(fmt),
        )
        for fmt, f in sorted(extra["files"].items(), key=lambda kv: kv[0] != data["url_format"])
    )
    return LockedPackage(
        kind=_kind(data["_type"]),
        name=extra["name"],
        version=extra["version"],
        build=extra.get("build", ""),
        filename=data["filename"],
        files=files,
        subdir=extra.get("subdir"),
        channel=extra.get("channel"),
        depends=tuple(extra.get("depends", ())),
    )


def _original_package(data: Mapping[str, Any]) -> LockedPackage:
    """A package as the original extension describes it: name, version and build come from the file name; its
    ``hashes`` are md5 for conda files and sha256 for PyPI ones (the only hash it records). A wheel it built
    from an sdist keeps the sdist as its source (``url``, ``url_format``) with the wheel's name as
    ``filename`` and both files' hashes: here, the built wheel of that sdist, as envcore records one."""
    kind = _kind(data["_type"])
    filename, source_format = str(data["filename"]), str(data["url_format"])
    hashes: Mapping[str, Any] = data["hashes"]
    stored = cache_keys_of(data)
    if kind is PackageKind.CONDA:
        name, version, build = filename.rsplit("-", 2)
    elif source_format != ".whl" and ".whl" in hashes and (built := _wheel_name_version(filename)):
        name, version = built
        wheel = PackageFile(
            url_format=".whl",
            url=str(data["url"]),
            sha256=str(hashes[".whl"]),
            built=True,
            sdist_sha256=str(hashes[source_format]) if source_format in hashes else None,
            stored_key=stored.get(".whl"),
        )
        return LockedPackage(
            kind=kind, name=name, version=version, build="", filename=filename, files=(wheel,)
        )
    else:
        name, version = _pypi_name_version(filename + source_format)
        build = ""
    files = tuple(
        PackageFile(
            url_format=fmt,
            url=str(data["url"]),
            sha256="" if kind is PackageKind.CONDA else str(digest),
            md5=str(digest) if kind is PackageKind.CONDA else None,
            stored_key=stored.get(fmt),
        )
        for fmt, digest in sorted(hashes.items(), key=lambda kv: kv[0] != source_format)
    )
    return LockedPackage(kind=kind, name=name, version=version, build=build, filename=filename, files=files)


def _kind(value: str) -> PackageKind:
    """A package's ``_type``; ``pip`` is how earlier versions of the original named PyPI packages."""
    return PackageKind.PYPI if value == LEGACY_PIP else PackageKind(value)


def _wheel_name_version(filename: str) -> tuple[str, str] | None:
    """Name and version of ``filename`` read as a wheel's (without ``.whl``); None when it is none."""
    from packaging.utils import InvalidWheelFilename

    try:
        return _pypi_name_version(filename + ".whl")
    except InvalidWheelFilename:
        return None


def _pypi_name_version(file_name: str) -> tuple[str, str]:
    from packaging.utils import parse_sdist_filename, parse_wheel_filename

    if file_name.endswith(".whl"):
        name, version, _, _ = parse_wheel_filename(file_name)
    else:
        name, version = parse_sdist_filename(file_name)
    return str(name), str(version)


def cache_keys_of(data: Mapping[str, Any]) -> dict[str, str]:
    """{format: store key} of a package as its description records them (``cache_info``)."""
    info = data.get("cache_info")
    if not isinstance(info, dict):
        return {}
    return {
        fmt: entry["url"]
        for fmt, entry in info.items()
        if isinstance(entry, dict) and isinstance(entry.get("url"), str) and _relative_key(entry["url"])
    }


def _relative_key(key: str) -> bool:
    """A store key as envcore and the original write them: relative, without '..' or empty parts."""
    parts = key.split("/")
    return bool(key) and all(part not in ("", ".", "..") for part in parts) and "\\" not in key


def to_dict(
    env: ResolvedEnvironment, cache_keys: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, Any]:
    """``cache_keys`` maps a package filename to its {format: store key}."""
    keys = cache_keys or {}
    return {
        "deps": list(env.deps),
        "sources": list(env.sources),
        "extras": list(env.extras),
        "packages": [package_to_dict(p, keys.get(p.filename)) for p in env.packages],
        "resolved_on": env.resolved_on,
        "resolved_by": env.resolved_by,
        "resolved_archs": list(env.resolved_archs),
        "env_type": env.env_type.value,
        "accurate_source": env.accurate_source,
        "full_id_unique_keys": dict(env.full_id_unique_keys),
        "envcore": {"schema": SCHEMA, "resolver": env.resolver, "version": __version__},
    }


def from_dict(
    data: Mapping[str, Any], *, req_id: str, full_id: str, arch: str, where: str = "recorded on this machine"
) -> ResolvedEnvironment:
    if newer_schema(data):
        raise _newer(data, where)
    return ResolvedEnvironment(
        req_id=req_id,
        full_id=full_id,
        arch=arch,
        env_type=EnvType(LEGACY_ENV_TYPES.get(data["env_type"], data["env_type"])),
        deps=tuple(_modern_dep(d) for d in data["deps"]),
        sources=tuple(data.get("sources", ())),
        extras=tuple(data.get("extras", ())),
        packages=tuple(package_from_dict(p) for p in data["packages"]),
        resolved_on=str(data["resolved_on"]),
        resolved_by=str(data["resolved_by"]),
        resolved_archs=tuple(data.get("resolved_archs", (arch,))),
        resolver=str(data.get("envcore", {}).get("resolver", "")),
        accurate_source=bool(data.get("accurate_source", True)),
        full_id_unique_keys=dict(data.get("full_id_unique_keys", {})),
    )


def dumps(env: ResolvedEnvironment, cache_keys: Mapping[str, Mapping[str, str]] | None = None) -> bytes:
    return json.dumps(to_dict(env, cache_keys), indent=1, sort_keys=True).encode()


def loads(raw: bytes, *, req_id: str, full_id: str, arch: str, where: str) -> ResolvedEnvironment:
    """Parse a stored description; a damaged or foreign one is a one-paragraph :class:`StorageError`."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise _unreadable(where, exc) from None
    return parse(data, req_id=req_id, full_id=full_id, arch=arch, where=where)


def parse(data: Any, *, req_id: str, full_id: str, arch: str, where: str) -> ResolvedEnvironment:
    """:func:`loads` of a description already decoded from JSON."""
    try:
        if not isinstance(data, dict):
            raise ValueError("it is not a JSON object")
        if newer_schema(data):
            raise _newer(data, where)
        schema = data.get("envcore", {}).get("schema")
        if schema is not None and (isinstance(schema, bool) or schema != SCHEMA):
            # None: written by the original extension, read as it wrote it
            raise ValueError(f"its schema version is {schema!r}, this envcore reads {SCHEMA}")
        check_shape(data)
        return from_dict(data, req_id=req_id, full_id=full_id, arch=arch)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise _unreadable(where, exc) from None


def _unreadable(where: str, why: Exception) -> StorageError:
    return StorageError(
        f"The environment description {where} cannot be read ({why}). Resolve the environment again with "
        "`envcore resolve --force`, which replaces a damaged description."
    )


def _newer(data: Mapping[str, Any], where: str) -> NewerDescription:
    """A description of a schema this envcore does not know is not guessed at: its fields may mean otherwise."""
    block = data["envcore"]
    version = block.get("version")
    writer = f"envcore {version}" if isinstance(version, str) and version else "a newer envcore"
    resolved_by = data.get("resolved_by")
    return NewerDescription(
        f"The environment description {where} was written by {writer} (description schema {block['schema']}); "
        f"this envcore ({__version__}) reads schema {SCHEMA} and does not guess at the rest. Upgrade envcore and "
        f"its plugins{f' to {version} or later' if writer != 'a newer envcore' else ''} on this machine to use "
        "it. The description is left as it is (`resolve --force` does not replace it).",
        writer=version if writer != "a newer envcore" else "",
        resolved_by=resolved_by if isinstance(resolved_by, str) else "",
    )


def newer_schema(data: Any) -> bool:
    """Whether ``data`` was written by a newer envcore (a schema this one does not know): left as it is."""
    envcore = data.get("envcore") if isinstance(data, dict) else None
    schema = envcore.get("schema") if isinstance(envcore, dict) else None
    return isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA


def check_shape(data: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first field that is not what envcore (or, without the ``envcore`` blocks,
    the original) writes: a damaged description is refused as such, never met later as a crash."""
    for field in ("deps", "sources", "extras", "resolved_archs"):
        _need(field not in data or _strings(data[field]), f"{field!r} is not a list of strings")
    _need(isinstance(data.get("packages"), list), "'packages' is not a list")
    for number, pkg in enumerate(data["packages"], 1):
        _need(isinstance(pkg, dict), f"package {number} is not an object")
        what = f"package {number} ({pkg.get('filename')!r})"
        _need(
            pkg.get("_type") in {*(kind.value for kind in PackageKind), LEGACY_PIP},
            f"{what} has the type {pkg.get('_type')!r}",
        )
        for field in ("filename", "url", "url_format"):
            _need(isinstance(pkg.get(field), str) and bool(pkg[field]), f"{what} has no {field!r}")
        extra = pkg.get("envcore")
        if extra is None:  # as the original writes it
            _need(isinstance(pkg.get("hashes"), dict) and bool(pkg["hashes"]), f"{what} has no 'hashes'")
            continue
        _need(isinstance(extra, dict), f"{what} has a malformed 'envcore' block")
        for field in ("name", "version"):
            _need(isinstance(extra.get(field), str) and bool(extra[field]), f"{what} has no {field!r}")
        _need(_strings(extra.get("depends", [])), f"{what}'s 'depends' is not a list of strings")
        files = extra.get("files")
        _need(
            isinstance(files, dict) and pkg["url_format"] in files, f"{what} has no {pkg['url_format']} file"
        )
        for fmt, file in files.items():
            _need(
                isinstance(file, dict)
                and isinstance(file.get("url"), str)
                and isinstance(file.get("sha256"), str)
                and isinstance(file.get("md5"), (str, type(None)))
                and _size(file.get("size")),
                f"{what}'s {fmt} file is malformed (url, sha256, md5, size)",
            )


def edited_package(stored: Mapping[str, Any], fresh: Mapping[str, Any]) -> str | None:
    """The first package a stored description records otherwise than a fresh one of the same full id (the
    stored one was edited after it was written: the full id hashes file names and one hash only); None when
    they agree. Compared is what installs: name, version, build, and the hashes and size of each file both
    record (writers may add transmuted formats; a resolver may not know a hash or size), except wheels built
    from sdists (builds differ by machine)."""
    fresh_packages = {p["filename"]: p.get("envcore") for p in fresh["packages"]}
    for pkg in stored["packages"]:
        ours, theirs = pkg.get("envcore"), fresh_packages.get(pkg["filename"])
        if ours is None or theirs is None:
            continue  # written by the original (or not in the fresh one: another id, not compared)
        if pkg["_type"] == PackageKind.CONDA.value and any(
            ours.get(k) != theirs.get(k) for k in ("name", "version", "build")
        ):  # as in repodata (PyPI resolvers may spell a name or version otherwise)
            return str(pkg["filename"])
        for fmt, file in ours["files"].items():
            other = theirs["files"].get(fmt)
            if other is None or file.get("built") or other.get("built"):
                continue
            if any(file.get(k) and other.get(k) and file[k] != other[k] for k in ("sha256", "md5", "size")):
                return str(pkg["filename"])
    return None


def _need(ok: bool, problem: str) -> None:
    if not ok:
        raise ValueError(problem)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _size(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


def now() -> str:
    return datetime.now().isoformat()
