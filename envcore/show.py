"""How environments are printed: the original extension's ``pretty_print`` layout, and a JSON form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envcore.types import LockedPackage, PackageKind, ResolvedEnvironment


def _alias_display(resolved: str) -> str:
    name, _, tag = resolved.rpartition("/")
    return f"{name}:{tag}" if name else resolved


def _by_kind(env: ResolvedEnvironment) -> tuple[list[LockedPackage], list[LockedPackage]]:
    """The conda and the PyPI packages of ``env``, each sorted by name."""
    conda = sorted((p for p in env.packages if p.kind is PackageKind.CONDA), key=lambda p: p.name)
    pypi = sorted((p for p in env.packages if p.kind is PackageKind.PYPI), key=lambda p: p.name)
    return conda, pypi


def pretty(
    env: ResolvedEnvironment,
    *,
    is_default: bool = False,
    aliases: tuple[Sequence[str], Sequence[str]] = ((), ()),
    local_instances: Sequence[str] = (),
) -> str:
    immutable, mutable = aliases
    conda, pypi = _by_kind(env)
    lines = [
        f"{'DEFAULT ' if is_default else ''}Environment of type {env.env_type.value} full hash {env.req_id}:{env.full_id}"
    ]
    if immutable or mutable:
        shown = [_alias_display(a) for a in immutable] + [f"{_alias_display(a)} (mutable)" for a in mutable]
        lines.append(f"Aliases {', '.join(shown)}")
    lines += [
        f"Arch {env.arch}",
        f"Available on {', '.join(env.resolved_archs)}",
        "",
        f"Resolved on {env.resolved_on.replace('T', ' ')}",
        f"Resolved by {env.resolved_by}",
    ]
    if env.resolver:
        lines.append(f"Resolved with {env.resolver}")
    lines.append("")
    if local_instances:
        lines += [f"Locally present as {', '.join(local_instances)}", ""]
    lines.append(f"User-requested packages {', '.join(d.replace('*', 'x') for d in sorted(env.deps))}")
    if env.sources:
        lines.append(f"User sources {', '.join(env.sources)}")
    if env.extras:
        lines.append(f"Extra resolution flags {', '.join(env.extras)}")
    lines.append("")
    if conda:
        lines.append(
            "Conda Packages installed " + ", ".join(f"{p.name}=={p.version}-{p.build}" for p in conda)
        )
    if pypi:
        lines.append("Pypi Packages installed " + ", ".join(f"{p.name}=={p.version}" for p in pypi))
    return "\n".join(lines) + "\n"


def quiet(
    env: ResolvedEnvironment,
    *,
    aliases: tuple[Sequence[str], Sequence[str]] = ((), ()),
    local_instances: Sequence[str] = (),
) -> str:
    """The original's one-line form for scripts (``--quiet``): ids, aliases (``(m)``: mutable), arch, when and by
    whom, co-resolved archs, requests, sources, ``conda:`` and ``pypi:`` packages, local prefixes; ``NONE``
    for no sources or prefixes."""
    immutable, mutable = aliases
    conda, pypi = _by_kind(env)
    fields = (
        env.req_id,
        env.full_id,
        ",".join([*map(_alias_display, immutable), *(f"{_alias_display(a)}(m)" for a in mutable)]),
        env.arch,
        env.resolved_on.replace(" ", "T", 1),  # datetime.isoformat(), as the original prints it
        env.resolved_by,
        ",".join(env.resolved_archs),
        ",".join(env.deps),
        ",".join(env.sources) or "NONE",
        "conda:" + ",".join(f"{p.name}=={p.version}-{p.build}" for p in conda),
        "pypi:" + ",".join(f"{p.name}=={p.version}" for p in pypi),
        ",".join(local_instances) or "NONE",
    )
    return " ".join(fields)


def as_json(
    env: ResolvedEnvironment,
    *,
    is_default: bool = False,
    aliases: tuple[Sequence[str], Sequence[str]] = ((), ()),
    local_instances: Sequence[str] = (),
) -> dict[str, Any]:
    from envcore import description  # (only the JSON form needs it)

    return {
        "req_id": env.req_id,
        "full_id": env.full_id,
        "arch": env.arch,
        "is_default": is_default,
        "aliases": [_alias_display(a) for a in aliases[0]],
        "mutable_aliases": [_alias_display(a) for a in aliases[1]],
        "local_instances": list(local_instances),
        "env": description.to_dict(env),
    }


def explicit(env: ResolvedEnvironment) -> str:
    """The conda packages of ``env`` as conda's explicit specification (``conda list --explicit``: one
    ``URL#md5`` line each, ``#sha256:`` where no md5 is known), which ``conda create --file``, mamba and
    micromamba install without solving. Virtual packages are not packages; PyPI packages cannot be listed."""
    conda = [p for p in env.packages if p.kind is PackageKind.CONDA]  # the resolver's (installation) order
    lines = [
        f"# The conda packages of the environment {env.req_id}:{env.full_id}, exported by envcore.",
        "# This file may be used to create an environment using:",
        "# $ conda create --name <env> --file <this file>",
        f"# platform: {env.arch}",
        "@EXPLICIT",
    ]
    for pkg in conda:
        if pkg.name.startswith("__"):
            continue
        file = pkg.source
        lines.append(f"{file.url}#{file.md5}" if file.md5 else f"{file.url}#sha256:{file.sha256}")
    return "\n".join(lines) + "\n"
