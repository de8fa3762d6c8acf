"""The Runner API: ``metaflow.Runner(flow_file, environment="conda").run()`` from a user's program runs every
step in its environment, exactly as the command line does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .conftest import FLOWS, Machine

PROGRAM = """
import json, sys
from metaflow import Runner

with Runner(sys.argv[1], environment="conda", show_output=False).run() as running:
    run = running.run
    print(json.dumps({
        "status": running.status,
        "successful": run.successful,
        "stdout": {s: run[s].task.stdout for s in ("start", "end")},
        "env_id": {s: run[s].task.metadata_dict.get("conda_env_id") for s in ("start", "end")},
        "stderr": running.stderr,
    }))
"""


def test_runner_runs_each_step_in_its_environment(machine: Machine) -> None:
    done = machine.run(sys.executable, "-c", PROGRAM, FLOWS / "conda_per_step.py")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "successful" and result["successful"], result["stderr"]
    seen = {
        step: dict(w.split("=", 1) for w in text.split() if "=" in w)
        for step, text in result["stdout"].items()
    }
    assert seen["start"]["fx-core"] == "1.0.0" and seen["end"]["fx-core"] == "2.0.0"
    for step in ("start", "end"):
        python = Path(seen[step]["python"])
        assert python.is_relative_to(machine.cache) and python != Path(sys.executable)
        assert len(json.loads(result["env_id"][step])) == 3
    assert "Resolving 2 environments ..." in result["stderr"]


HELPER = """
import json, sys
from metaflow import FlowAPI

api = FlowAPI(sys.argv[1], environment="conda")
resolved = api.environment().resolve("start")
dry = api.environment().resolve("end", dry_run=True)
shown = api.environment().show()
try:
    api.environment().show(timeout=0.01)
    late = ""
except RuntimeError as exc:
    late = str(exc)
print(json.dumps({
    "resolved": {
        step: {arch: [env.req_id, env.full_id, new, {p.name: p.version for p in env.packages}]
               for arch, (env, new) in per_arch.items()}
        for step, per_arch in resolved.items()
    },
    "dry": {step: {arch: new for arch, (_, new) in per_arch.items()} for step, per_arch in dry.items()},
    "shown": shown,
    "late": late,
}))
"""


def test_runner_environment_helper_resolves_and_shows(machine: Machine) -> None:
    """``FlowAPI(flow, environment="conda").environment().resolve(...)/.show()``, as in the original."""
    flow = FLOWS / "conda_per_step.py"
    first = machine.flow("conda_per_step", "environment", "resolve", "--json", "start")
    known = json.loads(first.stdout)["start"]
    done = machine.run(sys.executable, "-c", HELPER, flow)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    ((arch, (req_id, full_id, new, packages)),) = result["resolved"]["start"].items()
    assert [req_id, full_id] == [known[arch]["req_id"], known[arch]["full_id"]] and new is False
    assert packages["fx-core"] == "1.0.0"
    assert set(result["shown"]) == {"start", "end"}
    assert "resolved" in result["shown"]["start"]["states"]
    assert result["dry"] == {"end": {arch: True}}  # resolved, then neither cached nor recorded:
    assert result["shown"]["end"]["states"] == ["unresolved"]
    assert "did not finish within 0.01 s" in result["late"]
