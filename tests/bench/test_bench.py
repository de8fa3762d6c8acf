"""The bench (``python -m bench``) runs on this machine and prints the whole table: one repetition, every row.

Nothing here judges a figure (speed is measured by the bench, not by tests); this keeps the bench from rotting
between the runs that measure: each section runs, each goal row gets a verdict, each miss is listed with its
floor where the bench has one, and the JSON holds every row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GROUPS = (
    "[start-up]",
    "[resolve, library call",
    "[resolve, CLI",
    "[scale: a flow-like batch",
    "[scale: a flow's PyPI-only environments",
    "[scale on a synthetic channel",
    "[resolver backends",
    "[hydrate ",
    "[store: aliases",
    "[store transfer",
    "packages from S3 (moto server",
    "MB/s link (moto on 127.0.0.1 behind bench.link",
)
# rows whose goal the bench compares with a measured floor
FLOORED = (
    "envcore resolve --conda x2",
    "resolve 50 environments",
    "warm: envcore create (package cache present)",
)


@pytest.mark.slow
def test_one_repetition_of_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METAFLOW_", "PYTHONDONTWRITEBYTECODE"))}
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--reps", "1", "--no-gs", "--no-azure", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for group in GROUPS:
        assert group in run.stdout, f"{group} missing from:\n{run.stdout}"
    figures = json.loads(out.read_text())
    rows = figures["rows"]
    assert len(rows) >= 45
    assert all(min(r["ours"]) > 0 and min(r["base"]) > 0 for r in rows)
    goals = [r for r in rows if r["goal"] is not None or r["goal_ms"] is not None]
    assert len(goals) >= 14
    assert {r["verdict"] for r in goals} <= {"ok", "MISS"}
    met = sum(r["verdict"] == "ok" for r in goals)
    assert f"{met} of {len(goals)} goals met; {len(rows)} rows" in run.stdout
    for r in goals:
        if r["verdict"] == "MISS":
            assert f"MISS {r['name'].strip()} / {r['baseline'].strip()}: {r['ratio']:.2f}x" in run.stdout
    baselines = {r["baseline"].strip() for r in rows}  # the bare tools the developers' guide names, pip too
    assert {"bare pip install --dry-run --report", "rattler.install + pip install"} <= baselines, baselines
    for name in FLOORED:
        floored = [r for r in goals if r["name"] == name]
        assert floored and all(r["floor"] for r in floored), name
    assert "real-PyPI workload of issue 11 is not measured" in " ".join(figures["notes"])


def test_only_the_sections_asked_for_run(tmp_path: Path) -> None:
    """``--only`` (for a quick A/B of one part): the start-up rows alone, said in a note."""
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METAFLOW_", "PYTHONDONTWRITEBYTECODE"))}
    args = ["--reps", "1", "--no-s3", "--no-gs", "--no-azure", "--only", "startup", "--json", str(out)]
    run = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert {r["group"] for r in figures["rows"]} == {"start-up"}, figures["rows"]
    assert "[resolve, library call" not in run.stdout
    assert figures["notes"] == ["Only the sections startup were run (--only)."]
