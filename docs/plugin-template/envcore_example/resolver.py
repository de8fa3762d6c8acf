"""A small but real resolver: pure-Python wheels from a PEP 503 index on the local disk, newest version
that every constraint seen so far allows, dependencies read from each wheel's METADATA. It does not
backtrack: a conflict found late is reported, naming the package."""

from __future__ import annotations

import html
import re
import zipfile
from collections.abc import Sequence
from email.parser import Parser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from packaging.requirements import Requirement as Pep508
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from envcore.config import Config
from envcore.errors import BackendUnavailable, ResolutionError
from envcore.pypi import conda_python_packages, warn_yanked
from envcore.types import PYPI, LockedPackage, PackageFile, PackageKind, ResolveRequest

_ANCHOR = re.compile(r"<a\s([^>]*)>")
_ATTR = re.compile(r'([\w-]+)="([^"]*)"')
_YANKED = re.compile(r"\bdata-yanked\b")
_WHEEL = re.compile(r"(.+\.whl)#sha256=([0-9a-f]{64})$")


class ExampleResolver:
    def __init__(self, config: Config) -> None:
        self.config = config

    def check(self) -> None:
        return None  # nothing external to find

    def version(self) -> str:
        return "envcore-example 0.1.0"

    def _candidates(
        self, index: str, name: str, python: str | None
    ) -> list[tuple[Version, str, str, str | None]]:
        """(version, url, sha256, yanked) of the installable pure-Python wheels of ``name``, newest first:
        ``yanked`` is the reason the index gives (PEP 592; "" for none), None when it is not; files whose
        Requires-Python excludes ``python`` are left out (PEP 503)."""
        page_url = urljoin(index, f"{canonicalize_name(name)}/")
        parts = urlsplit(page_url)
        if parts.scheme != "file":
            raise BackendUnavailable(f"envcore-example reads file:// indexes only, not {index}.")
        page = Path(unquote(parts.path)) / "index.html"
        if not page.exists():
            return []
        found = []
        for anchor in _ANCHOR.findall(page.read_text()):
            attrs = {k: html.unescape(v) for k, v in _ATTR.findall(anchor)}
            wheel = _WHEEL.match(attrs.get("href", ""))
            if wheel is None:
                continue
            requires_python = attrs.get("data-requires-python")
            if python and requires_python and Version(python) not in SpecifierSet(requires_python):
                continue
            url = urljoin(page_url, wheel.group(1))
            _, version, _, tags = parse_wheel_filename(url.rsplit("/", 1)[1])
            if any(t.interpreter.startswith("py3") and t.platform == "any" for t in tags):
                yanked = attrs.get("data-yanked", "" if _YANKED.search(anchor) else None)
                found.append((version, url, wheel.group(2), yanked))
        return sorted(found, reverse=True)

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        index = (request.sources.get(PYPI) or ("",))[0]
        wanted = [
            Pep508(f"{r.name}{'==' + r.spec if r.spec[:1].isdigit() else r.spec}") for r in request.of(PYPI)
        ]
        # the Python packages the conda side installs (composed with a conda resolver) stay as they are
        installed = conda_python_packages(request.installed, request.installed_distributions)
        constraints = {name: SpecifierSet(f"=={pkg.version}") for name, pkg in installed.items()}
        chosen: dict[str, LockedPackage] = {}
        requires: dict[str, list[str]] = {}
        while wanted:
            req = wanted.pop(0)
            name = canonicalize_name(req.name)
            constraints[name] = constraints.get(name, SpecifierSet()) & req.specifier
            if name in chosen:
                if chosen[name].version not in constraints[name]:
                    raise ResolutionError(
                        f"{name} {chosen[name].version} was chosen, but {req} needs another version; "
                        "envcore-example does not backtrack: pin it."
                    )
                continue
            candidates = self._candidates(index, name, request.python_version)
            # SpecifierSet.filter applies PEP 440: no pre-release unless a specifier names one (fx==2.1.0rc1)
            # or nothing else matches (SpecifierSet.contains accepts pre-releases since packaging 26)
            allowed = set(constraints[name].filter(v for v, *_ in candidates))
            # a yanked release only for an exact pin (PEP 592), and said
            pinned = any(s.operator in ("==", "===") for s in constraints[name])
            match = next((c for c in candidates if c[0] in allowed and (c[3] is None or pinned)), None)
            if match is None:
                raise ResolutionError(
                    f"No wheel of {name} matches {constraints[name] or 'any version'} in {index}."
                )
            version, url, sha256, yanked = match
            if yanked is not None:
                warn_yanked(name, str(version), yanked)
            filename = url.rsplit("/", 1)[1]
            chosen[name] = LockedPackage(
                kind=PackageKind.PYPI,
                name=name,
                version=str(version),
                filename=filename[: -len(".whl")],
                files=(PackageFile(url_format=".whl", url=url, sha256=sha256),),
            )
            deps = [Pep508(d) for d in _requires(Path(unquote(urlsplit(url).path)))]
            requires[name] = [canonicalize_name(d.name) for d in deps]
            wanted += deps
        return _install_order(chosen, requires)


def _install_order(chosen: dict[str, LockedPackage], requires: dict[str, list[str]]) -> list[LockedPackage]:
    """Every package after its dependencies (depth first, by name for a stable result)."""
    order: list[LockedPackage] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        done.add(name)
        for dep in sorted(requires.get(name, ())):
            if dep in chosen:
                visit(dep)
        order.append(chosen[name])

    for name in sorted(chosen):
        visit(name)
    return order


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(zf.read(name).decode())
    return [d for d in metadata.get_all("Requires-Dist") or [] if ";" not in d]
