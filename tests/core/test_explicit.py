"""Reading conda explicit files (``resolve --explicit``): what a line may hold, and the paragraph for each line
that is not a package of the file's platform."""

from __future__ import annotations

from pathlib import Path

import pytest

from envcore import explicit
from envcore.errors import SpecError, UsageError

CHANNEL = "https://conda.example.org/forge"
MD5 = "0a7ef8cf986d76e97f3967bfab2379d2"
SHA256 = "ab" * 32


def explicit_file(*lines: str, platform: str = "linux-64") -> str:
    return "\n".join([f"# platform: {platform}", "@EXPLICIT", *lines]) + "\n"


def refused(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        explicit.parse(text, "env.txt")
    return caught.value.message


def test_md5_sha256_and_no_hash_are_read_with_their_line_and_platform() -> None:
    found = explicit.parse(
        explicit_file(
            f"{CHANNEL}/linux-64/python-3.11.7-h0_0.conda#{MD5}",
            "",
            f"{CHANNEL}/noarch/fx-core-2.0.0-py_0.tar.bz2#sha256:{SHA256.upper()}",
            f"{CHANNEL}/linux-64/fx-http-1.2.0-py_0.conda",
        ),
        "env.txt",
    )
    assert found.arch == "linux-64"
    assert [(e.line, e.md5, e.sha256, e.subdir) for e in found.entries] == [
        (3, MD5, None, "linux-64"),
        (5, None, SHA256, "noarch"),
        (6, None, None, "linux-64"),
    ]
    spec = explicit.to_spec(found, "d" * 64)
    assert spec.python == "3.11.7" and spec.nodefaults and spec.sources == {"conda": (CHANNEL,)}
    assert [(r.name, r.spec) for r in spec.requirements] == [
        ("fx-core", "2.0.0 py_0"),
        ("fx-http", "1.2.0 py_0"),
    ]
    assert spec.extras == {"conda": (explicit.FLAG + "d" * 64,)}
    # comments and line numbers are not the content: the same packages, the same digest
    again = explicit.parse(
        "# exported long ago\n\n" + explicit_file(*(e.url for e in found.entries)), "other"
    )
    assert again.digest != found.digest  # (the hashes are part of it)
    assert explicit.parse(explicit_file(*(e.url for e in found.entries)), "x").digest == again.digest


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("fx-core==2.0.0", "line 3 ('fx-core==2.0.0') is not a package URL"),
        (
            f"{CHANNEL}/noarch/fx_core-2.0.0-py3-none-any.whl",
            "line 3 names 'fx_core-2.0.0-py3-none-any.whl', not a conda",
        ),
        (f"{CHANNEL}/noarch/fx-core-2.0.0-py_0.conda#abc", "the hash of line 3 ('abc') is neither an md5"),
        (
            "https://u:secret@h.example/c/noarch/fx-core-2.0.0-py_0.conda",
            "the URL of line 3 carries credentials",
        ),
        (
            "https://h.example/t/tk-0123456789abcdef/c/noarch/x-1-0.conda",
            "the URL of line 3 carries credentials",
        ),
        (
            f"{CHANNEL}/osx-arm64/fx-core-2.0.0-0.conda",
            "it mixes platforms (# platform: linux-64 and packages of ",
        ),
    ],
)
def test_a_line_that_is_not_a_package_of_the_platform_is_named(line: str, said: str) -> None:
    message = refused(explicit_file(line))
    assert message.startswith("env.txt is not a usable conda explicit file: ") and said in message, message
    assert "secret" not in message and "tk-0123456789abcdef" not in message


def test_the_file_must_be_explicit_and_hold_conda_packages_only() -> None:
    assert "it has no @EXPLICIT line" in refused(f"{CHANNEL}/noarch/fx-core-2.0.0-py_0.conda\n")
    assert "line 1 ('fx-core') comes before @EXPLICIT" in refused("fx-core\n@EXPLICIT\n")
    assert "it lists no packages after @EXPLICIT" in refused(explicit_file())
    pip = refused(explicit_file(f"{CHANNEL}/noarch/a-1-0.conda", "# pip fx-extras==0.4.0"))
    assert "line 4 is a PyPI package (pip fx-extras==0.4.0)" in pip, pip
    assert "envcore resolve --explicit FILE -r requirements.txt" in pip, pip
    twice = refused(explicit_file(f"{CHANNEL}/noarch/a-1-0.conda", f"{CHANNEL}/noarch/a-2-0.conda"))
    assert "lines 3 and 4 both give a" in twice, twice


def test_the_target_is_the_files_platform() -> None:
    found = explicit.parse(explicit_file(f"{CHANNEL}/noarch/a-1-0.conda"), "env.txt")
    assert explicit.targets(found, [], "osx-arm64") == ("linux-64",)
    assert explicit.targets(found, ["linux-64"], "osx-arm64") == ("linux-64",)
    with pytest.raises(
        UsageError, match=r"env\.txt is for linux-64, and --arch linux-64 --arch osx-64 asks for"
    ):
        explicit.targets(found, ["linux-64", "osx-64"], "osx-arm64")
    unplaced = explicit.parse("@EXPLICIT\n" + f"{CHANNEL}/noarch/a-1-0.conda\n", "env.txt")
    assert explicit.targets(unplaced, [], "osx-arm64") == ("osx-arm64",)


def test_a_file_is_read_as_requirement_files_are(tmp_path: Path) -> None:
    """PowerShell's ``conda list --explicit > env.txt`` writes UTF-16 with its byte order mark, read as such; a
    file in another encoding is named as one. Before, both said "Cannot read the explicit file env.txt: 'utf-8'
    codec can't decode byte 0xff in position 0: invalid start byte. Check the path."."""
    text = explicit_file(f"{CHANNEL}/noarch/fx-core-2.0.0-py_0.conda#{MD5}")
    (tmp_path / "env.txt").write_text(text, encoding="utf-16")
    assert explicit.load(tmp_path / "env.txt") == explicit.parse(text, str(tmp_path / "env.txt"))
    (tmp_path / "env.txt").write_bytes(text.replace("fx-core", "fx-c\xf6re").encode("latin-1"))
    with pytest.raises(SpecError) as caught:
        explicit.load(tmp_path / "env.txt")
    assert caught.value.message == (
        f"the explicit file {tmp_path / 'env.txt'} is not UTF-8 text (byte 0xf6 on line 3). Save it with the UTF-8 "
        "encoding, or check that it is the file you meant."
    )
