"""Named environments over a real store: immutable tags written once (exactly one winner among racing
processes), mutable tags replaced by compare-and-swap, lookups local-first except for mutable tags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from envcore.aliases import Aliases
from envcore.errors import AliasError, StorageError
from envcore.local_store import LocalStore
from envcore.naming import parse_alias
from envcore.record import LocalRecord

A = ("a" * 40, "1" * 40)
B = ("b" * 40, "2" * 40)


def aliases_for(tmp_path: Path, machine: str, store: bool = True) -> Aliases:
    record = LocalRecord(tmp_path / machine / "conda_v2.cnd", 10)
    Path(record.path).parent.mkdir(parents=True, exist_ok=True)
    return Aliases(LocalStore(tmp_path / "store") if store else None, record)


def test_immutable_alias_is_written_once(tmp_path: Path) -> None:
    aliases = aliases_for(tmp_path, "a")
    v1 = parse_alias("team/env:v1")
    assert aliases.write(v1, A) is True
    assert aliases.write(v1, A) is False  # same target: a no-op success
    with pytest.raises(AliasError) as info:
        aliases.write(v1, B)
    assert "team/env:v1" in info.value.message and A[1] in info.value.message
    assert aliases_for(tmp_path, "b").resolve("team/env:v1") == A


def test_mutable_alias_moves_and_every_machine_sees_the_store(tmp_path: Path) -> None:
    first, second = aliases_for(tmp_path, "a"), aliases_for(tmp_path, "b")
    assert first.write(parse_alias("team/env"), A)
    assert second.resolve("team/env:latest") == A  # recorded on machine b now
    assert first.write(parse_alias("team/env:latest"), B)
    assert second.resolve("team/env") == B  # mutable: the store wins over b's local record


def test_immutable_alias_is_answered_locally_once_known(tmp_path: Path) -> None:
    aliases = aliases_for(tmp_path, "a")
    aliases.write(parse_alias("team/env:v1"), A)
    for path in (tmp_path / "store").rglob("v1"):
        path.unlink()
    assert aliases.resolve("team/env:v1") == A


def test_unknown_alias_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(AliasError, match=r"'x/y:latest' does not refer to a known environment locally or in"):
        aliases_for(tmp_path, "a").resolve("x/y")


def test_ids_and_pathspecs(tmp_path: Path) -> None:
    record = LocalRecord(tmp_path / "r.cnd", 10)
    seen: list[str] = []

    def lookup(pathspec: str) -> tuple[str, str] | None:
        seen.append(pathspec)
        return B if pathspec == "Flow/1/start" else None

    aliases = Aliases(None, record, pathspec_lookup=lookup)
    assert aliases.resolve(f"{A[0]}:{A[1]}") == A
    assert aliases.resolve("step:Flow/1/start/3") == B
    assert seen == ["Flow/1/start"]
    with pytest.raises(AliasError, match="only names"):
        aliases.write(parse_alias("step:Flow/1/start"), A)


def test_a_step_envcore_alone_does_not_know_points_to_metaflow(tmp_path: Path) -> None:
    """Without the Metaflow integration (no pathspec lookup), a step this machine did not run is not "a known
    environment to resolve with --alias": the message says where such a step is found."""
    aliases = aliases_for(tmp_path, "a")
    with pytest.raises(AliasError) as info:
        aliases.resolve("step:Flow/2/end/7")
    message = info.value.message
    assert "names a step of a Metaflow run" in message, message
    assert "`metaflow environment show step:Flow/2/end`" in message, message
    assert "--alias" not in message, message


def test_damaged_alias_object_is_reported_not_used(tmp_path: Path) -> None:
    aliases = aliases_for(tmp_path, "a")
    aliases.store.put_bytes("envs/aliases/generic/team/env/v2", b"{not json")  # type: ignore[union-attr]
    with pytest.raises(StorageError, match="damaged"):
        aliases.resolve("team/env:v2")


def test_a_damaged_mutable_alias_is_replaced_and_an_immutable_one_never(tmp_path: Path) -> None:
    aliases = aliases_for(tmp_path, "a")
    store = aliases.store
    assert store is not None
    for tag in ("latest", "v3"):
        store.put_bytes(f"envs/aliases/generic/team/env/{tag}", b"xx")
    assert aliases.write(parse_alias("team/env:latest"), A) is True  # the repair the message names
    assert aliases_for(tmp_path, "b").resolve("team/env:latest") == A
    with pytest.raises(StorageError) as info:
        aliases.write(parse_alias("team/env:v3"), A)
    assert "is damaged" in info.value.message and "delete that object" in info.value.message
    with store.open("envs/aliases/generic/team/env/v3") as fh:
        assert fh.read() == b"xx"  # untouched


RACER = """
import json, sys
from pathlib import Path
from envcore.aliases import Aliases
from envcore.errors import AliasError
from envcore.local_store import LocalStore
from envcore.naming import parse_alias
from envcore.record import LocalRecord
root, index = Path(sys.argv[1]), int(sys.argv[2])
record = LocalRecord(root / f"machine-{index}.cnd", 30)
ref = (f"{index:040x}", f"{index:040x}")
try:
    Aliases(LocalStore(root / "store"), record).write(parse_alias(sys.argv[3]), ref)
    print("won")
except AliasError as exc:
    print("lost", exc)
"""


def race(tmp_path: Path, alias: str, n: int) -> list[str]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path), str(i + 1), alias], stdout=subprocess.PIPE, text=True
        )
        for i in range(n)
    ]
    return [p.communicate(timeout=120)[0].strip() for p in procs]


def test_sixteen_racers_on_an_immutable_alias_have_exactly_one_winner(tmp_path: Path) -> None:
    outcomes = race(tmp_path, "team/env:v1", 16)
    winners = [i + 1 for i, o in enumerate(outcomes) if o == "won"]
    assert len(winners) == 1, outcomes
    expected = f"{winners[0]:040x}"
    losers = [o for o in outcomes if o != "won"]
    assert all("team/env:v1" in o and f"{expected}:{expected}" in o for o in losers), losers
    assert aliases_for(tmp_path, "check").resolve("team/env:v1") == (expected, expected)


def test_racers_on_a_mutable_alias_all_succeed_and_one_target_remains(tmp_path: Path) -> None:
    outcomes = race(tmp_path, "team/env:candidate", 8)
    assert outcomes == ["won"] * 8
    final = aliases_for(tmp_path, "check").resolve("team/env:candidate")
    assert final[0] in {f"{i:040x}" for i in range(1, 9)} and final[0] == final[1]


def test_nested_alias_names_in_a_local_store_are_one_clear_error_either_way(tmp_path: Path) -> None:
    aliases = aliases_for(tmp_path, "a")
    aliases.write(parse_alias("coll"), A)  # coll/latest
    with pytest.raises(AliasError, match=r"'coll/latest:v1' cannot be stored next to the aliases"):
        aliases.write(parse_alias("coll/latest:v1"), B)
    other = aliases_for(tmp_path / "other", "a")
    other.write(parse_alias("coll/latest:v1"), B)
    with pytest.raises(AliasError, match=r"'coll:latest' cannot be stored next to the aliases"):
        other.write(parse_alias("coll"), A)
    assert aliases.resolve("coll") == A and other.resolve("coll/latest:v1") == B
    # checked before anything is resolved, naming the alias in the way
    with pytest.raises(
        AliasError, match=r"coll:latest is an alias, whose name coll/latest:v1 would need as a"
    ):
        aliases.check_writable(parse_alias("coll/latest:v1"))
    with pytest.raises(AliasError, match=r"coll/latest is the folder of other aliases \(coll/latest:v1\)"):
        other.check_writable(parse_alias("coll"))
    aliases.check_writable(parse_alias("coll:v2"))  # beside it: fine
