"""The local record: alias writes append to a journal (cost independent of the record's size), rewrites fold
it in, crashes leave old or new states only, and racing processes lose no update."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from envcore import record as record_mod
from envcore.errors import StorageError
from envcore.record import LocalRecord

A = ("a" * 40, "1" * 40)
B = ("b" * 40, "2" * 40)


def new(tmp_path: Path) -> LocalRecord:
    return LocalRecord(tmp_path / "conda_v2.cnd", 10)


def test_alias_writes_append_and_every_reader_sees_them(tmp_path: Path) -> None:
    rec = new(tmp_path)
    rec.update(lambda data: data["mappings"].update({"F/1/s": list(A)}))
    before = rec.path.stat()
    for i in range(100):
        rec.set_alias(f"team/env{i}:latest", A, mutable=True)
    rec.set_alias("team/env:v1", B, mutable=False)
    after = rec.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten
    other = new(tmp_path)  # another process's view
    assert other.alias("team/env99:latest") == A and other.alias("team/env:v1") == B
    assert other.alias("F/1/s") == A
    assert other.aliases_of(A) == ([], sorted(f"team/env{i}:latest" for i in range(100)))
    rec.set_alias("team/env0:latest", B, mutable=True)  # a later line wins
    assert other.alias("team/env0:latest") == B


def test_a_rewrite_folds_the_journal_in_and_a_no_op_writes_nothing(tmp_path: Path) -> None:
    rec = new(tmp_path)
    rec.set_alias("team/env:v1", A, mutable=False)
    rec.update(lambda data: data["mappings"].update({"F/1/s": list(B)}))
    assert not Path(rec.log_path).exists()
    assert json.loads(rec.path.read_bytes())["aliases"] == {"team/env:v1": list(A)}
    before = rec.path.stat()
    rec.update(lambda data: data["mappings"].update({"F/1/s": list(B)}))
    rec.set_alias("team/env:v1", A, mutable=False)
    after = rec.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not Path(rec.log_path).exists()


def test_the_journal_is_compacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record_mod, "COMPACT_AFTER", 10)
    rec = new(tmp_path)
    for i in range(25):
        rec.set_alias(f"team/env{i}:v1", A, mutable=False)
    assert len(json.loads(rec.path.read_bytes())["aliases"]) >= 10
    assert Path(rec.log_path).read_bytes().count(b"\n") <= 11
    assert len(new(tmp_path).read()["aliases"]) == 25


def test_a_torn_line_is_ignored_then_cut_off(tmp_path: Path) -> None:
    rec = new(tmp_path)
    rec.set_alias("team/env:v1", A, mutable=False)
    with Path(rec.log_path).open("ab") as fh:
        fh.write(b'["aliases","team/env:v2",["' + b"b" * 20)  # a crash in the middle of an append
    fresh = new(tmp_path)
    assert fresh.alias("team/env:v1") == A and fresh.alias("team/env:v2") is None
    fresh.set_alias("team/env:v3", B, mutable=False)
    assert new(tmp_path).read()["aliases"] == {"team/env:v1": list(A), "team/env:v3": list(B)}


def test_a_journal_of_another_record_is_ignored(tmp_path: Path) -> None:
    rec = new(tmp_path)
    rec.set_alias("team/env:v1", A, mutable=False)
    log = Path(rec.log_path).read_bytes()
    rec.update(lambda data: data["aliases"].pop("team/env:v1"))  # folds the journal in, removes it
    Path(rec.log_path).write_bytes(log)  # as if the process died before removing it
    assert new(tmp_path).alias("team/env:v1") is None
    rec.path.write_text(json.dumps({"version": 1, "aliases": {"x:v1": list(B)}}))  # another tool's rewrite
    fresh = new(tmp_path)
    assert fresh.alias("x:v1") == B and fresh.alias("team/env:v1") is None
    fresh.set_alias("y:v1", A, mutable=False)
    assert set(new(tmp_path).read()["aliases"]) == {"x:v1", "y:v1"}


def test_a_damaged_journal_is_reported(tmp_path: Path) -> None:
    rec = new(tmp_path)
    rec.set_alias("team/env:v1", A, mutable=False)
    with Path(rec.log_path).open("ab") as fh:
        fh.write(b"{not json\n")
    with pytest.raises(StorageError, match=r"journal .* is damaged"):
        new(tmp_path).read()


WRITER = """
import sys
from pathlib import Path
from envcore.record import LocalRecord
import envcore.record
envcore.record.COMPACT_AFTER = 7
path, index = Path(sys.argv[1]), int(sys.argv[2])
rec = LocalRecord(path, 60)
for i in range(40):
    if i % 10 == 9:
        rec.update(lambda data: data["mappings"].update({f"F/{index}/{i}": ["a" * 40, "b" * 40]}))
    else:
        rec.set_alias(f"p{index}/env{i}:latest", (f"{index:040x}", f"{i:040x}"), mutable=True)
"""


def test_racing_processes_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "conda_v2.cnd"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)]) for n in range(6)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    data = LocalRecord(path, 10).read()
    assert len(data["mutable_aliases"]) == 6 * 36 and len(data["mappings"]) == 6 * 4
    assert data["mutable_aliases"]["p5/env8:latest"] == [f"{5:040x}", f"{8:040x}"]


def test_reads_parse_again_only_what_changed(tmp_path: Path) -> None:
    rec, other = new(tmp_path), new(tmp_path)  # two processes' views of one record
    rec.update(lambda data: data["mappings"].update({"F/1/s": list(A)}))
    first = rec.read()
    assert rec.read() is first  # the same bytes: not parsed again
    other.set_alias("team/env:v1", B, mutable=False)  # journal changed
    assert rec.alias("team/env:v1") == B and rec.read() is not first
    journaled = rec.read()
    other.update(lambda data: data["mappings"].update({"F/2/s": list(B)}))  # record rewritten
    assert rec.alias("F/2/s") == B and rec.alias("team/env:v1") == B and rec.read() is not journaled
