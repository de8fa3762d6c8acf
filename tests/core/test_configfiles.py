"""Answers kept in the cache directory (``envcore.configfiles.remember_json``)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from envcore.configfiles import remember_json


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
