"""The Python distributions conda packages install under other names, read from the packages' files."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from envcore.condadists import distribution_names, renamed_distributions
from envcore.formats.conda import CondaFormat
from envcore.testing.channel import Universe
from envcore.types import LockedPackage, PackageFile, PackageKind


def test_names_come_from_the_metadata_folders() -> None:
    paths = [
        "lib/python3.11/site-packages/fx_pyyaml-5.4.0.dist-info/METADATA",
        "lib/python3.11/site-packages/matplotlib-3.8.0-py3.11.egg-info",  # an old egg-info file
        "lib/python3.11/site-packages/PyYAML-6.0.1.dist-info/RECORD",
        "Lib/site-packages/torch-2.1.0.dist-info/WHEEL",  # windows
        "lib/python3.11/site-packages/fx_yaml/__init__.py",
        "bin/fx-yaml-5.4.0.dist-info",  # not under site-packages
    ]
    assert distribution_names(paths) == {"fx-pyyaml", "matplotlib", "pyyaml", "torch"}


def _locked(archive: Path) -> LockedPackage:
    index = CondaFormat().metadata(archive)
    ext = ".conda" if archive.name.endswith(".conda") else ".tar.bz2"
    return LockedPackage(
        kind=PackageKind.CONDA,
        name=index["name"],
        version=index["version"],
        build=index["build"],
        filename=archive.name[: -len(ext)],
        files=(
            PackageFile(
                url_format=ext, url=archive.as_uri(), sha256=hashlib.sha256(archive.read_bytes()).hexdigest()
            ),
        ),
        depends=tuple(index.get("depends", ())),
    )


def test_only_renamed_distributions_are_reported_and_remembered(universe: Universe, tmp_path: Path) -> None:
    by_name = {p.name.rsplit("-", 2)[0]: p for p in universe.conda_packages if p.name.endswith(".conda")}
    packages = [_locked(by_name[n]) for n in ("fx-yaml", "fx-core", "python")]
    cache = tmp_path / "cache"
    assert renamed_distributions(packages, cache, {}) == {"fx-pyyaml": "fx-yaml"}  # fx-core is fx-core
    remembered = sorted(p.name for p in (cache / "dists").iterdir())
    assert remembered == sorted(f"{p.source.sha256}.json" for p in packages[:2])  # python is not read
    # one remembered, one forgotten: the forgotten one is read again, each answer in its place
    (cache / "dists" / f"{packages[0].source.sha256}.json").unlink()
    assert renamed_distributions(packages, cache, {}) == {"fx-pyyaml": "fx-yaml"}
    assert sorted(p.name for p in (cache / "dists").iterdir()) == remembered
    # remembered by the file's hash: the archives are not needed again
    for path in (cache / "pkgs").rglob("*.conda"):
        path.unlink()
    nowhere = PackageFile(url_format=".conda", url="file:///nowhere/x.conda", sha256="")
    moved = [replace(p, files=(replace(nowhere, sha256=p.source.sha256),)) for p in packages]
    assert renamed_distributions(moved, cache, {}) == {"fx-pyyaml": "fx-yaml"}


def test_a_package_that_cannot_be_read_is_a_resolution_error_naming_it(
    universe: Universe, tmp_path: Path
) -> None:
    from envcore.errors import ResolutionError

    archive = next(
        p for p in universe.conda_packages if p.name.startswith("fx-yaml-5.4.0") and p.suffix == ".conda"
    )
    copy = tmp_path / archive.name
    copy.write_bytes(archive.read_bytes())
    package = _locked(copy)
    copy.unlink()  # the channel lists it, but does not serve it
    with pytest.raises(ResolutionError) as info:
        renamed_distributions([package], tmp_path / "cache", {})
    message = info.value.message
    assert message.startswith(
        "Could not read which Python distributions the conda package fx-yaml 5.4.0 installs"
    )
    assert str(copy.name) in message and message.endswith(
        "Check that the file exists."
    )  # the download's advice
    assert not (tmp_path / "cache" / "dists").exists() or not list((tmp_path / "cache" / "dists").iterdir())
