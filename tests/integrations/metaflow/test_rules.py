"""The original's merge and override rules, checked on what is resolved (no task runs)."""

from __future__ import annotations

import json

from envcore.resolve import local_arch

from .conftest import Machine


def _packages(env: dict[str, object]) -> dict[str, str]:
    return {p["envcore"]["name"]: p["envcore"]["version"] for p in env["packages"]}  # type: ignore[attr-defined,index]


def _builds(env: dict[str, object]) -> dict[str, str]:
    return {p["envcore"]["name"]: p["envcore"]["build"] for p in env["packages"]}  # type: ignore[attr-defined,index]


def test_flow_merge_step_override_and_sys_packages(machine: Machine) -> None:
    out = machine.flow("merge_rules", "environment", "resolve", "--json")
    data = json.loads(out.stdout)
    start, gpu, end = (data[s][local_arch()] for s in ("start", "gpu", "end"))
    # flow @conda_base fx-core>=1.1 AND step @conda fx-core<2; @pypi_base applies to every step
    assert _packages(start["env"])["fx-core"] == "1.1.0"
    assert "fx-extras" in _packages(start["env"])
    assert start["env"]["env_type"] == "mixed"
    # the step's fx-core replaces the flow's constraint; its fx-extras replaces the flow's
    assert _packages(end["env"])["fx-core"] == "2.0.0"
    assert _packages(end["env"])["fx-extras"] == "0.3.0"
    # @sys_packages: the CUDA build of fx-native
    assert "cuda" in _builds(gpu["env"])["fx-native"]
    assert any(d.startswith("sys::__cuda==12.4") for d in gpu["env"]["deps"])
    assert len({start["req_id"], gpu["req_id"], end["req_id"]}) == 3
    # @resources(gpu=1) without @sys_packages: CONDA_SYS_DEFAULT_GPU_PACKAGES (none by default)
    assert _builds(data["on_gpu"][local_arch()]["env"])["fx-native"].endswith("cpu")
    setting = {"METAFLOW_CONDA_SYS_DEFAULT_GPU_PACKAGES": json.dumps({"__cuda": "12.2"})}
    out = machine.flow("merge_rules", "environment", "resolve", "--json", "gpu", "on_gpu", **setting)
    data = json.loads(out.stdout)
    on_gpu = data["on_gpu"][local_arch()]["env"]
    assert "cuda" in _builds(on_gpu)["fx-native"] and "sys::__cuda==12.2=0" in on_gpu["deps"]
    assert data["gpu"][local_arch()]["req_id"] == gpu["req_id"]  # its own @sys_packages win
