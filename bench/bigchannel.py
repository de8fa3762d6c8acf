"""A synthetic conda channel of realistic size for the bench's scale rows (issue 11): only ``repodata.json``
files (the packages do not exist: resolution reads nothing else), written in about a second.

Shape, like a slice of conda-forge (~38k records, ~3k names, ~15 MB of repodata): ``python`` (3.9-3.12 and the
bench's own X.Y, five patch releases each) on a few C libraries; C libraries (``syn-lib*``, one build per
version); compiled Python modules (``syn-py*``, one build per version and python, ``py311h..._0`` depending on
``python >=3.11,<3.12.0a0``); noarch Python packages (``syn-na*``, ``pyhd8ed1ab_0``). Packages sit on levels;
each depends on 1-3 packages of lower levels (mostly the level just below: dependency chains, no cycles), with
``>=``, ``>=,<`` and ``.*`` constraints that the newest version of the dependency always satisfies, so any
request of top-level packages is solvable. A top-level package pulls ~45 packages (median), a pair ~125.
Deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

PYTHONS = ("3.9", "3.10", "3.11", "3.12")
LEVELS = 6
BASE_LIBS = ("syn-libzlib", "syn-libffi", "syn-openssl", "syn-libsqlite", "syn-ncurses")


@dataclass(frozen=True)
class BigChannel:
    path: Path
    url: str
    records: int  # over all subdirs
    names: int
    top: tuple[str, ...]  # the packages of the highest level (the longest chains), for requests
    megabytes: float  # of repodata.json, all subdirs
    closure: dict[str, int]  # number of packages each of ``top`` depends on, directly or not


def _versions(rng: random.Random) -> list[str]:
    major = rng.randint(0, 5)
    out = []
    for minor in range(rng.randint(3, 8)):
        out.append(f"{major}.{minor}.{rng.randint(0, 4)}")
    if rng.random() < 0.3:
        out.append(f"{major + 1}.0.0")
    return out


def _constraint(rng: random.Random, versions: list[str]) -> str:
    """A constraint that the newest of ``versions`` satisfies."""
    newest = versions[-1]
    kind = rng.random()
    if kind < 0.45:
        return f">={rng.choice(versions)}"
    if kind < 0.8:
        return f">={rng.choice(versions)},<{int(newest.split('.')[0]) + 1}.0a0"
    if kind < 0.9:
        return f"{newest.split('.')[0]}.*"
    return ""


def _hashes(filename: str) -> tuple[str, str]:
    data = filename.encode()
    return hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()


def build_big_channel(
    root: Path,
    subdir: str = "linux-64",
    *,
    pythons: tuple[str, ...] = (),
    libs: int = 900,
    pymods: int = 1200,
    noarchs: int = 900,
    seed: int = 11,
) -> BigChannel:
    """Write ``root/<subdir>/repodata.json`` and ``root/noarch/repodata.json``; ``pythons`` (``X.Y``) are added
    to the four python versions of the channel (the bench's interpreter: requests pin its ``X.Y.*``)."""
    rng = random.Random(seed)
    all_pythons = sorted({*PYTHONS, *pythons}, key=lambda v: tuple(map(int, v.split("."))))
    glibc = ["__glibc >=2.17,<3.0.a0"] if subdir.startswith("linux") else []
    mixed = [(f"syn-py{i:04d}", "pymod") for i in range(pymods)] + [
        (f"syn-na{i:04d}", "noarch") for i in range(noarchs)
    ]
    rng.shuffle(mixed)
    clibs = [(f"syn-lib{i:04d}", "lib") for i in range(libs)]
    # levels: a package depends on packages of lower levels (chains without cycles), most often the level just
    # below, sometimes a foundation (levels 0-1, shared by many)
    levels: list[list[tuple[str, str]]] = [[(name, "lib") for name in BASE_LIBS]]
    levels.append(clibs[: libs // 3])
    levels.append(clibs[libs // 3 :])
    per = len(mixed) // LEVELS
    levels += [mixed[i * per : (i + 1) * per if i < LEVELS - 1 else len(mixed)] for i in range(LEVELS)]
    versions = {name: _versions(rng) for level in levels for name, _ in level}
    versions["python"] = [f"{py}.{patch}" for py in all_pythons for patch in range(0, 9, 2)]
    arch_pkgs: dict[str, dict[str, object]] = {}
    noarch_pkgs: dict[str, dict[str, object]] = {}

    def add(
        target: dict[str, dict[str, object]],
        sub: str,
        name: str,
        version: str,
        build: str,
        depends: list[str],
    ) -> None:
        filename = f"{name}-{version}-{build}.conda"
        md5, sha256 = _hashes(filename)
        target[filename] = {
            "build": build,
            "build_number": int(build.rsplit("_", 1)[-1]),
            "depends": depends,
            "license": "BSD-3-Clause",
            "md5": md5,
            "name": name,
            "sha256": sha256,
            "size": 10_000 + len(filename) * 97,
            "subdir": sub,
            "timestamp": 1_700_000_000_000,
            "version": version,
        }

    for version in versions["python"]:
        depends = [*glibc, *(f"{lib} >={versions[lib][0]}" for lib in BASE_LIBS)]
        add(arch_pkgs, subdir, "python", version, "h9a8b7c6_0", depends)
    closure: dict[str, frozenset[str]] = {}
    for li, level in enumerate(levels):
        for name, kind in level:
            chosen: set[str] = set()
            if li:
                for _ in range(rng.randint(1, 3)):
                    below = li - 1 if rng.random() < 0.6 else rng.randrange(li)
                    if kind == "lib":
                        below = min(below, 1)
                    chosen.add(rng.choice(levels[below])[0])
            closure[name] = frozenset(chosen).union(*(closure[d] for d in chosen))
            for vi, version in enumerate(versions[name]):
                deps = [f"{d} {_constraint(rng, versions[d])}".strip() for d in sorted(chosen)]
                tag = hashlib.sha1(f"{name}{version}".encode()).hexdigest()[:7]
                if kind == "lib":
                    add(arch_pkgs, subdir, name, version, f"h{tag}_{vi % 3}", [*glibc, *deps])
                elif kind == "pymod":
                    for py in all_pythons:
                        major, minor = py.split(".")
                        pin = f"python >={py},<{major}.{int(minor) + 1}.0a0"
                        add(arch_pkgs, subdir, name, version, f"py{major}{minor}h{tag}_0", [*deps, pin])
                else:
                    add(noarch_pkgs, "noarch", name, version, "pyhd8ed1ab_0", [*deps, "python >=3.9"])
    size = 0
    for sub, packages in ((subdir, arch_pkgs), ("noarch", noarch_pkgs)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        body = {"info": {"subdir": sub}, "packages": {}, "packages.conda": packages, "repodata_version": 1}
        size += (root / sub / "repodata.json").write_text(json.dumps(body, separators=(",", ":")))
    top = tuple(name for name, _ in levels[-1])
    return BigChannel(
        path=root,
        url=root.resolve().as_uri(),
        records=len(arch_pkgs) + len(noarch_pkgs),
        names=len(versions),
        top=top,
        megabytes=size / 1e6,
        closure={name: len(closure[name]) for name in top},
    )
