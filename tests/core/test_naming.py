"""Ids, alias grammar and store keys, checked against the original extension's verified vectors."""

from __future__ import annotations

import pytest

from envcore.errors import AliasError
from envcore.naming import (
    AliasKind,
    DefaultNaming,
    alias_key,
    env_key,
    full_id_alias_key,
    package_key,
    parse_alias,
)
from envcore.types import LockedPackage, PackageFile, PackageKind

naming = DefaultNaming()
REQ = "6b88aff611645340863fe8776a79ac67b4fc66ce"
FULL = "7a918c85e7a144e3f3ac4a64f0e236f670f71667"


def conda_pkg(filename: str, md5: str) -> LockedPackage:
    file = PackageFile(url_format=".tar.bz2", url=f"https://x/{filename}.tar.bz2", sha256="0" * 64, md5=md5)
    return LockedPackage(
        kind=PackageKind.CONDA, name="pandas", version="1.4.0", filename=filename, files=(file,)
    )


def test_req_id_matches_the_original() -> None:
    deps = [
        "conda::python==3.10.*",
        "conda::pandas==1.4.0",
        "conda::requests==>=2.21.0",
        "sys::__glibc==2.27=0",
    ]
    assert naming.req_id(deps, ["conda::conda-forge"], []) == REQ


def test_req_id_ignores_order_of_deps_and_sources() -> None:
    deps = [
        "sys::__glibc==2.27=0",
        "conda::requests==>=2.21.0",
        "conda::python==3.10.*",
        "conda::pandas==1.4.0",
    ]
    assert naming.req_id(deps, ["conda::conda-forge"], []) == REQ
    a = naming.req_id(["conda::x"], ["conda::a", "conda::b"], [])
    assert a == naming.req_id(["conda::x"], ["conda::b", "conda::a"], [])


def test_req_id_changes_with_any_input() -> None:
    base = naming.req_id(["conda::x"], ["conda::a"], [])
    assert base != naming.req_id(["conda::x==1"], ["conda::a"], [])
    assert base != naming.req_id(["conda::x"], ["conda::b"], [])
    assert base != naming.req_id(["conda::x"], ["conda::a"], ["pypi::--pre"])


def test_req_id_refuses_untyped_strings() -> None:
    with pytest.raises(ValueError, match="category"):
        naming.req_id(["numpy"], [], [])


def test_full_id_matches_the_original() -> None:
    assert naming.full_id([conda_pkg("pandas-1.4.0-py38h43a58ef_0", "abc")], "linux-64") == FULL


def test_full_id_depends_on_arch_hash_and_unique_keys() -> None:
    pkgs = [conda_pkg("pandas-1.4.0-py38h43a58ef_0", "abc")]
    assert naming.full_id(pkgs, "osx-arm64") != FULL
    assert naming.full_id([conda_pkg("pandas-1.4.0-py38h43a58ef_0", "abd")], "linux-64") != FULL
    assert naming.full_id(pkgs, "linux-64", {"uv_lock_content_hash": "1"}) != FULL


def test_coresolved_full_id_is_order_independent() -> None:
    a, b = [conda_pkg("a-1-0", "1")], [conda_pkg("b-1-0", "2")]
    one = naming.coresolved_full_id({"linux-64": a, "osx-arm64": b})
    assert one == naming.coresolved_full_id({"osx-arm64": b, "linux-64": a})
    assert one != naming.coresolved_full_id({"linux-64": b, "osx-arm64": a})


@pytest.mark.parametrize(
    ("text", "kind", "path", "mutable", "display"),
    [
        ("team/env", AliasKind.GENERIC, "team/env/latest", True, "team/env:latest"),
        ("team/env:v1", AliasKind.GENERIC, "team/env/v1", False, "team/env:v1"),
        ("a:stable", AliasKind.GENERIC, "a/stable", True, "a:stable"),
        ("a_b-c:candidate", AliasKind.GENERIC, "a_b-c/candidate", True, "a_b-c:candidate"),
        (f"{REQ}:{FULL}", AliasKind.IDS, f"{REQ}:{FULL}", False, f"{REQ}:{FULL}"),
        ("step:Flow/12/start", AliasKind.PATHSPEC, "Flow/12/start", False, "step:Flow/12/start"),
        ("step:Flow/12/start/7", AliasKind.PATHSPEC, "Flow/12/start", False, "step:Flow/12/start/7"),
    ],
)
def test_alias_grammar(text: str, kind: AliasKind, path: str, mutable: bool, display: str) -> None:
    alias = parse_alias(text)
    assert (alias.kind, alias.path, alias.mutable, alias.display) == (kind, path, mutable, display)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (REQ, "REQ_ID:FULL_ID"),
        ("Team/env", "lowercase"),
        ("team env", "lowercase"),
        ("/team/env", "start or end"),
        ("team/env/", "start or end"),
        ("team//env", "start or end"),
        ("team/env:V1", "tag name"),
        ("team/env:", "tag name"),
        ("team/env:a/b", "tag name"),
        ("step:Flow/1", "pathspec alias"),
        ("", "lowercase"),
        ("team/" + "b" * 101 + ":v1", r"\(109 characters\).*each part .* at most 100"),
        ("team/env:" + "v" * 101, "at most 100"),
        ("/".join(["ab"] * 90), "at most 255 characters"),
    ],
)
def test_bad_aliases_are_refused_with_the_fix(text: str, message: str) -> None:
    with pytest.raises(AliasError, match=message):
        parse_alias(text)


def test_store_keys_follow_the_original_layout() -> None:
    assert env_key("linux-64", REQ, FULL) == f"envs/linux-64/{REQ}/{FULL}/env"
    assert alias_key(parse_alias("mlp/x/y")) == "envs/aliases/generic/mlp/x/y/latest"
    assert full_id_alias_key(FULL, envs_dirname="e") == f"e/aliases/full-id/{FULL}"
    key = package_key(
        "conda",
        "https://user:secret@conda.anaconda.org/conda-forge/linux-64/x-1-0.tar.bz2",
        "x-1-0.conda",
        "ab",
    )
    assert (
        key
        == "packages/conda/conda.anaconda.org/conda-forge/linux-64/x-1-0.tar.bz2/x-1-0.conda/ab/x-1-0.conda"
    )
    assert "secret" not in key
    with_port = package_key(
        "pypi", "http://127.0.0.1:8080/simple/w-1-py3-none-any.whl", "w-1-py3-none-any.whl", "h"
    )
    assert with_port.startswith("packages/pypi/127.0.0.1:8080/simple/")


def test_pathspec_aliases_have_no_store_key() -> None:
    with pytest.raises(ValueError, match="only generic"):
        alias_key(parse_alias("step:F/1/s"))
