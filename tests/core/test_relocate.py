"""Relocating a finished prefix: which files name it, and how each kind is rewritten."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envcore import relocate


def _prefix(root: Path, name: str) -> Path:
    """A small finished prefix: a text file and a binary file with the prefix (declared in conda-meta), a
    wheel script (found through RECORD), a plain file, an absolute and a relative symlink."""
    prefix = root / name
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "bin").mkdir()
    site = prefix / "lib" / "python3.11" / "site-packages"
    (site / "tool-1.0.dist-info").mkdir(parents=True)
    (prefix / "etc").mkdir()
    p = str(prefix).encode()
    (prefix / "etc" / "conf.txt").write_bytes(b"home=" + p + b"/share\n" + b"again " + p + b"\n")
    (prefix / "lib" / "libx.so").write_bytes(b"\x7fELF" + p + b"/lib\0" + b"\0" * 64 + b"tail\0")
    (prefix / "bin" / "tool").write_bytes(b"#!" + p + b"/bin/python\nimport tool\n")
    os.chmod(prefix / "bin" / "tool", 0o755)
    (prefix / "bin" / "plain").write_bytes(b"no prefix here\n")
    (prefix / "bin" / "abs-link").symlink_to(prefix / "bin" / "plain")
    (prefix / "bin" / "rel-link").symlink_to("plain")
    (site / "tool-1.0.dist-info" / "RECORD").write_text(
        "../../../bin/tool,sha256=x,10\ntool/__init__.py,sha256=y,1\n"
    )
    meta = {
        "paths_data": {
            "paths": [
                {"_path": "etc/conf.txt", "prefix_placeholder": "/opt/placeholder", "file_mode": "text"},
                {"_path": "lib/libx.so", "prefix_placeholder": "/opt/placeholder", "file_mode": "binary"},
                {"_path": "bin/plain", "path_type": "hardlink"},
                {"_path": "bin/abs-link", "path_type": "softlink"},
                {"_path": "bin/rel-link", "path_type": "softlink"},
            ]
        }
    }
    (prefix / "conda-meta" / "pkg-1.0-0.json").write_text(json.dumps(meta))
    relocate.write_manifest(prefix)
    return prefix


def test_manifest_lists_exactly_the_files_naming_the_prefix(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path, "source-prefix")
    manifest = relocate.read_manifest(prefix)
    assert manifest.pop("signature").startswith("15:")  # the prefix's paths: 15 of them
    assert manifest == {
        "prefix": str(prefix),
        "text": ["bin/tool", "etc/conf.txt"],
        "binary": ["lib/libx.so"],
        "links": ["bin/abs-link"],
    }


def test_clone_rewrites_named_files_and_links_the_rest(tmp_path: Path) -> None:
    source = _prefix(tmp_path, "source-prefix")
    dest = tmp_path / "dst"  # shorter: binary strings can shrink
    assert relocate.clone(source, dest)
    new, old = str(dest).encode(), str(source).encode()
    conf = (dest / "etc" / "conf.txt").read_bytes()
    assert conf == b"home=" + new + b"/share\nagain " + new + b"\n"
    lib = (dest / "lib" / "libx.so").read_bytes()
    assert len(lib) == len((source / "lib" / "libx.so").read_bytes())  # offsets kept
    assert lib.startswith(b"\x7fELF" + new + b"/lib\0") and lib.endswith(b"tail\0")
    assert (dest / "bin" / "tool").read_bytes().startswith(b"#!" + new + b"/bin/python\n")
    assert os.access(dest / "bin" / "tool", os.X_OK)
    assert (dest / "bin" / "plain").stat().st_ino == (source / "bin" / "plain").stat().st_ino
    assert os.readlink(dest / "bin" / "abs-link") == str(dest / "bin" / "plain")
    assert os.readlink(dest / "bin" / "rel-link") == "plain"
    assert relocate.read_manifest(dest)["prefix"] == str(dest)
    for path in dest.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.name != relocate.MANIFEST:
            assert old not in path.read_bytes(), path


def test_a_source_with_files_added_or_removed_is_not_cloned_and_pycache_does_not_count(
    tmp_path: Path,
) -> None:
    """A created environment a user changed (pip install, rm) is not copied into other prefixes; running its
    python (which writes __pycache__) is no change."""
    source = _prefix(tmp_path, "source-prefix")
    cache = source / "lib" / "python3.11" / "site-packages" / "__pycache__"
    cache.mkdir()
    (cache / "tool.cpython-311.pyc").write_bytes(b"pyc")
    assert relocate.clone(source, tmp_path / "d1")
    assert relocate.read_manifest(tmp_path / "d1")["signature"] == relocate.read_manifest(source)["signature"]
    added = source / "lib" / "python3.11" / "site-packages" / "userpkg.py"
    added.write_text("x = 1\n")
    assert not relocate.clone(source, tmp_path / "d2")
    added.unlink()
    (source / "bin" / "plain").unlink()
    assert not relocate.clone(source, tmp_path / "d3")
    assert not [p for p in tmp_path.iterdir() if "d2" in p.name or "d3" in p.name]  # nothing left of them
    assert relocate.clone(tmp_path / "d1", tmp_path / "d4")  # a clone is signed as its source was


def test_binary_strings_never_grow_the_clone_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    source = _prefix(tmp_path, "src")
    dest = tmp_path / "a-much-longer-destination-prefix"
    assert not relocate.clone(source, dest)
    assert not dest.exists()


def test_a_moved_prefix_is_not_a_source(tmp_path: Path) -> None:
    source = _prefix(tmp_path, "source-prefix")
    moved = source.rename(tmp_path / "moved")
    assert not relocate.clone(moved, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_a_prefix_without_manifest_is_not_a_source(tmp_path: Path) -> None:
    source = _prefix(tmp_path, "source-prefix")
    (source / relocate.MANIFEST).unlink()
    assert not relocate.clone(source, tmp_path / "dst")


def test_a_manifest_of_an_earlier_version_is_read_and_the_clone_gets_the_current_one(tmp_path: Path) -> None:
    source = _prefix(tmp_path, "source-prefix")
    current = relocate.read_manifest(source)
    (source / relocate.MANIFEST).unlink()
    (source / ".envcore-relocate.json").write_text(
        json.dumps(current, indent=0)
    )  # as earlier versions wrote it
    dest = tmp_path / "dst"
    assert relocate.clone(source, dest)
    assert (dest / "etc" / "conf.txt").read_bytes().count(str(dest).encode()) == 2
    assert not (dest / ".envcore-relocate.json").exists()
    assert relocate.read_manifest(dest) == {**current, "prefix": str(dest)}


def test_a_damaged_manifest_refuses_the_clone(tmp_path: Path) -> None:
    source = _prefix(tmp_path, "source-prefix")
    text = (source / relocate.MANIFEST).read_text()
    (source / relocate.MANIFEST).write_text(text + "\0Xnot-a-kind")
    assert not relocate.clone(source, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_a_read_only_folder_is_filled_then_made_read_only(tmp_path: Path) -> None:
    source = _prefix(tmp_path, "source-prefix")
    (source / "share" / "data").mkdir(parents=True)
    (source / "share" / "data" / "table.csv").write_text("a,b\n")
    (source / "share" / "data").chmod(0o555)
    relocate.write_manifest(source)  # made with these files
    dest = tmp_path / "dst"
    try:
        assert relocate.clone(source, dest)
        assert (dest / "share" / "data" / "table.csv").read_text() == "a,b\n"
        assert (dest / "share" / "data").stat().st_mode & 0o777 == 0o555
        assert (dest / "bin").stat().st_mode & 0o777 == (source / "bin").stat().st_mode & 0o777
    finally:
        for folder in (source, dest):
            if (folder / "share" / "data").exists():
                (folder / "share" / "data").chmod(0o755)


def test_the_linker_makes_every_link_or_raises_the_first_error_once_its_helper_stopped(
    tmp_path: Path,
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    names = [f"f{n}" for n in range(300)]
    for name in names:
        (tmp_path / "src" / name).write_text(name)
    pairs = [(str(tmp_path / "src" / n), str(tmp_path / "dst" / n)) for n in names]
    linker = relocate._Linker()
    for start in range(0, 300, 30):  # as the walk hands over folders
        linker.add(pairs[start : start + 30])
    linker.finish(walked=True)
    assert all((tmp_path / "dst" / n).stat().st_ino == (tmp_path / "src" / n).stat().st_ino for n in names)

    again = [(s, f"{d}.2") for s, d in pairs]
    missing = (str(tmp_path / "src" / "gone"), str(tmp_path / "dst" / "gone"))
    linker = relocate._Linker()
    for start in range(0, 300, 30):
        linker.add(again[start : start + 30] + ([missing] if start == 150 else []))
    with pytest.raises(FileNotFoundError, match="gone"):
        linker.finish(walked=True)
    assert not (tmp_path / "dst" / "gone").exists()

    linker = relocate._Linker()  # a walk that failed: what is left is not linked, and finish raises nothing
    linker.add([missing])
    linker.finish(walked=False)


def test_the_fast_path_of_a_clone_imports_neither_json_nor_re(tmp_path: Path) -> None:
    """The warm ``envcore create`` clones in the fast path: json (with re) alone cost more than half of it."""
    import subprocess
    import sys

    source = _prefix(tmp_path, "source-prefix")
    code = (
        "import sys; from envcore import relocate; "
        f"assert relocate.clone({str(source)!r}, {str(tmp_path / 'dst')!r}); "
        "print(sorted(m for m in ('json', 're', 'pathlib', 'shutil', 'subprocess', 'threading') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_prefix_index_forgets_removed_prefixes_before_ones_still_there(tmp_path: Path) -> None:
    index = relocate.PrefixIndex.in_cache(tmp_path / "cache", lock_timeout=5)
    (tmp_path / "cache" / "prefixes").mkdir(parents=True)
    kept = tmp_path / "kept"
    kept.mkdir()
    index.add("key", kept)
    for n in range(20):  # more than the 16 the index holds, each removed before the next is added
        removed = tmp_path / f"removed-{n}"
        removed.mkdir()
        index.add("key", removed)
        removed.rmdir()
    last = tmp_path / "last"
    last.mkdir()
    index.add("key", last)
    assert index.candidates("key") == [str(kept), str(last)]


@pytest.mark.parametrize("dest_name", ["with space", "long" * 30])
def test_scripts_cloned_to_a_prefix_a_shebang_cannot_name_still_run(tmp_path: Path, dest_name: str) -> None:
    """A '#!' line cannot name a path with a space, nor one longer than the kernel reads: the clone's scripts
    start as conda's and the installers' do for such a prefix (/bin/sh running python; env for the rest)."""
    prefix = tmp_path / "src"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python3.11").symlink_to(sys.executable)
    (prefix / "bin" / "shell").symlink_to("/bin/sh")
    p = str(prefix).encode()
    scripts = {
        "tool": b"#!" + p + b"/bin/python3.11\nimport sys\nprint('tool', sys.prefix != '', sys.argv[1:])\n",
        "tool-e": b"#!"
        + p
        + b"/bin/python3.11 -E\nimport sys\nprint('tool-e', sys.flags.ignore_environment)\n",
        "sh-tool": b"#!" + p + b"/bin/shell\necho sh-tool " + p + b"\n",
    }
    for name, body in scripts.items():
        (prefix / "bin" / name).write_bytes(body)
        os.chmod(prefix / "bin" / name, 0o755)
    relocate._write_manifest(prefix, {"text": [f"bin/{name}" for name in scripts]})
    dest = tmp_path / dest_name
    assert relocate.clone(prefix, dest)

    def run(name: str, *args: str) -> str:
        path = f"{dest / 'bin'}:{os.environ['PATH']}"  # where '#!/usr/bin/env shell' finds it
        done = subprocess.run(
            [dest / "bin" / name, *args], capture_output=True, text=True, env={"PATH": path}
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run("tool", "a b") == "tool True ['a b']\n"
    assert run("tool-e") == "tool-e 1\n"
    assert run("sh-tool") == f"sh-tool {dest}\n"
    assert (dest / "bin" / "tool").read_bytes().startswith(b"#!/bin/sh\n'''exec' \"" + str(dest).encode())
    assert (dest / "bin" / "sh-tool").read_bytes().startswith(b"#!/usr/bin/env shell\n")


def test_scripts_keep_their_shebang_where_it_can_name_the_new_prefix(tmp_path: Path) -> None:
    source = _prefix(tmp_path, "source-prefix")
    dest = tmp_path / "dst"
    assert relocate.clone(source, dest)
    assert (dest / "bin" / "tool").read_bytes() == b"#!" + str(dest).encode() + b"/bin/python\nimport tool\n"
