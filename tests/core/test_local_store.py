"""The local store across processes: the protocol itself is covered by the conformance kit
(tests/testing/test_conformance.py); here, races and kills between real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envcore.errors import KeyConflict, StorageError
from envcore.local_store import LocalStore

RACER = """
import sys
from envcore.errors import PreconditionFailed
from envcore.local_store import LocalStore
store = LocalStore(sys.argv[1])
try:
    store.put_bytes("envs/aliases/generic/team/env/v1", sys.argv[2].encode(), if_absent=True)
    print("won")
except PreconditionFailed:
    print("lost")
"""

COUNTER = """
import sys
from envcore.errors import PreconditionFailed
from envcore.local_store import LocalStore
store = LocalStore(sys.argv[1])
for _ in range(int(sys.argv[2])):
    while True:
        info = store.stat("counter")
        with store.open("counter") as fh:
            value = int(fh.read())
        try:
            store.put_bytes("counter", str(value + 1).encode(), if_version=info.version)
            break
        except PreconditionFailed:
            pass
"""

WRITER = """
import sys
from pathlib import Path
from envcore.local_store import LocalStore
store = LocalStore(sys.argv[1])
src = Path(sys.argv[2])
i = 0
while True:
    store.put_file(f"packages/big-{i % 3}", src)
    i += 1
"""


def run_all(code: str, args: list[list[str]]) -> list[str]:
    procs = [
        subprocess.Popen([sys.executable, "-c", code, *a], stdout=subprocess.PIPE, text=True) for a in args
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    return outputs


def test_eight_processes_racing_on_create_if_absent_have_one_winner(tmp_path: Path) -> None:
    outcomes = run_all(RACER, [[str(tmp_path), f"writer-{i}"] for i in range(8)])
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    winner = outcomes.index("won")
    with LocalStore(tmp_path).open("envs/aliases/generic/team/env/v1") as fh:
        assert fh.read() == f"writer-{winner}".encode()


def test_compare_and_swap_loses_no_update_across_processes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("counter", b"0")
    run_all(COUNTER, [[str(tmp_path), "25"] for _ in range(4)])
    with store.open("counter") as fh:
        assert int(fh.read()) == 100


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5])
def test_a_writer_killed_mid_write_leaves_whole_objects_only(tmp_path: Path, delay: float) -> None:
    src = tmp_path / "src.bin"
    payload = os.urandom(1 << 20) * 24  # 24 MiB: a kill lands inside a copy
    src.write_bytes(payload)
    root = tmp_path / "store"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(src)])
    store = LocalStore(root)
    deadline = time.monotonic() + 60  # a loaded machine may take long to import and publish once
    while not list(store.list("packages/")) and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)  # then a kill lands anywhere in a later copy
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    objects = list(store.list("packages/"))
    assert objects, "the writer published nothing before it was killed"
    for info in objects:
        assert info.size == len(payload)
        with store.open(info.key) as fh:
            assert fh.read() == payload
    store.put_bytes("after", b"ok")  # the dead writer's lock does not block others


def test_keys_cannot_escape_the_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    for key in ("../x", "/abs", "a//b", "a/./b", ".envcore-tmp/x", ""):
        with pytest.raises(StorageError, match="not a valid store key"):
            store.put_bytes(key, b"x")
    assert not (tmp_path / "x").exists()


def test_an_object_cannot_be_nested_under_another(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("a/b", b"1")
    with pytest.raises(StorageError, match="parent of it is an object"):
        store.put_bytes("a/b/c", b"2")
    with store.open("a/b") as fh:
        assert fh.read() == b"1"


@pytest.mark.parametrize("if_absent", [False, True])
def test_an_object_cannot_take_the_name_of_a_folder_of_objects(tmp_path: Path, if_absent: bool) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("a/b/c", b"1")
    with pytest.raises(KeyConflict, match="it is the folder of other objects"):
        store.put_bytes("a/b", b"2", if_absent=if_absent)
    with store.open("a/b/c") as fh:
        assert fh.read() == b"1"


def test_a_store_root_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    store = LocalStore(tmp_path / "a-file" / "store")
    with pytest.raises(
        StorageError, match=r"Cannot write to the local store at .*a-file/store: Not a directory"
    ):
        store.put_bytes("k", b"x")
    assert (tmp_path / "a-file").read_text() == "x"


UMASKED_WRITER = """
import os, sys
from pathlib import Path
os.umask(int(sys.argv[2], 8))
from envcore.local_store import LocalStore
store = LocalStore(Path(sys.argv[1]))
store.put_bytes("envs/linux-64/req/full/env", b"{}")
source = Path(sys.argv[1]).parent / "source.whl"
source.write_bytes(b"wheel")
store.put_file("packages/pypi/x/x.whl", source)
"""


@pytest.mark.parametrize(("umask", "mode"), [("022", 0o644), ("002", 0o664), ("077", 0o600)])
def test_objects_get_the_permissions_of_files_the_user_creates(tmp_path: Path, umask: str, mode: int) -> None:
    """A store a team shares (one folder, several users) stays readable by the team: objects are made as any
    file of the writer is (0666 less its umask), not private as a temporary file would be."""
    root = tmp_path / "store"
    subprocess.run([sys.executable, "-c", UMASKED_WRITER, str(root), umask], check=True, timeout=60)
    for key in ("envs/linux-64/req/full/env", "packages/pypi/x/x.whl"):
        assert (root / key).stat().st_mode & 0o777 == mode, key
    assert LocalStore(root).stat("packages/pypi/x/x.whl") is not None
    assert (root / "packages/pypi/x/x.whl").read_bytes() == b"wheel"


def test_temporary_files_of_interrupted_writers_are_removed_once_abandoned(tmp_path: Path) -> None:
    """Before, each Ctrl-C during caching could leave a partly written file (9.4 MB seen) in the store's
    temporary folder for good."""
    from envcore.local_store import ABANDONED_AFTER, TMP_DIR

    tmp_dir = tmp_path / "store" / TMP_DIR
    tmp_dir.mkdir(parents=True)
    abandoned, live = tmp_dir / ".tmp-1-abandoned", tmp_dir / ".tmp-2-live"
    abandoned.write_bytes(b"x" * 1000)
    live.write_bytes(b"y")
    old = time.time() - ABANDONED_AFTER - 60
    os.utime(abandoned, (old, old))
    LocalStore(tmp_path / "store").put_bytes("k", b"v")
    assert not abandoned.exists() and live.exists()
