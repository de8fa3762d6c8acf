"""Answers kept in the cache directory (``envcore.configfiles.remember_json``, ``keep_newest``)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from envcore.configfiles import keep_newest, remember_json


def test_writers_at_once_leave_one_whole_answer(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "answers" / "one.json"
    values = [{"writer": w, "items": list(range(w * 100))} for w in range(8)]
    seen: list[object] = []

    def write(value: dict[str, object]) -> None:
        for _ in range(40):
            remember_json(path, value)
            seen.append(json.loads(path.read_text()))  # a reader never sees half of an answer

    threads = [threading.Thread(target=write, args=(v,)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert json.loads(path.read_text()) in values
    assert len(seen) == 320 and all(answer in values for answer in seen)
    assert [p.name for p in path.parent.iterdir()] == ["one.json"]  # no temporary file left


def test_an_answer_that_cannot_be_kept_is_dropped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    blocker = root / "cache"
    blocker.write_text("a file where the folder should be")
    remember_json(blocker / "answer.json", [1, 2])  # no error: the next command works it out again
    remember_json(root / "set.json", {1, 2})  # not JSON: dropped, no temporary file left
    assert blocker.read_text() == "a file where the folder should be"
    assert sorted(p.name for p in root.iterdir()) == ["cache"]


def test_keep_newest_removes_the_oldest_files_only(tmp_path: Path) -> None:
    import os

    folder = tmp_path / "memories"
    keep_newest(folder, 2)  # no folder yet: nothing to do
    folder.mkdir()
    for age, name in enumerate(["d.json", "c.json", "b.json", "a.json"]):
        (folder / name).write_text("{}")
        os.utime(folder / name, (5000 - age, 5000 - age))  # d newest, a oldest
    (folder / "x.json.123.456.tmp").write_text("{")  # being written by another process: left alone
    os.utime(folder / "x.json.123.456.tmp", (1, 1))
    keep_newest(folder, 4)
    assert len(list(folder.iterdir())) == 5  # within the bound: nothing removed
    keep_newest(folder, 2)
    assert sorted(p.name for p in folder.iterdir()) == ["c.json", "d.json", "x.json.123.456.tmp"]
    keep_newest(folder, 0)
    assert [p.name for p in folder.iterdir()] == ["x.json.123.456.tmp"]
