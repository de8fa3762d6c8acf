"""``Runner(flow_file, environment="conda").environment()``: the flow-level ``environment`` commands from a
program (Metaflow's ``runner_cli`` extension point; ``FlowAPI`` is the original's name for ``Runner``).

* ``.resolve(*steps, arch=None, alias=None, force=False, dry_run=False, timeout=1200)`` ->
  ``{step: {arch: (ResolvedEnvironment, newly_resolved)}}``;
* ``.show(*steps, timeout=60)`` -> ``{step: {is_disabled, is_fetch_at_exec, from_env_name, arch, states,
  requested, env_id, env}}``.

Each runs ``python flow.py <the Runner's options> environment resolve|show --json`` with the Runner's
environment variables and directory; a failure or a timeout raises ``RuntimeError`` with the command's
error output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envcore.types import ResolvedEnvironment


class EnvironmentRunnerCLI:
    name = "environment"

    def __init__(self, runner: Any) -> None:
        self._runner = runner

    def _command(self, build: Callable[[Any], list[str]]) -> list[str]:
        from metaflow.runner.utils import with_dir

        runner = self._runner
        with with_dir(runner.cwd):
            group = runner.api(**runner.top_level_kwargs).environment()
            return [sys.executable, *build(group)]

    def _run(self, command: list[str], timeout: float) -> Any:
        runner = self._runner
        try:
            done = subprocess.run(
                command,
                env=runner.env_vars,
                cwd=runner.cwd,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"`{' '.join(command[1:])}` did not finish within {timeout} s.") from None
        if done.returncode != 0 or "{" not in done.stdout:
            raise RuntimeError(
                f"`{' '.join(command[1:])}` failed (exit status {done.returncode}):\n{done.stderr.strip()}"
            )
        return json.loads(done.stdout[done.stdout.index("{") :])

    def resolve(
        self,
        *steps: str,
        arch: str | Sequence[str] | None = None,
        alias: str | Sequence[str] | None = None,
        force: bool = False,
        dry_run: bool = False,
        timeout: float = 1200,
    ) -> dict[str, dict[str, tuple[ResolvedEnvironment, bool]]]:
        """Resolve the environments of ``steps`` (all by default) as ``environment resolve`` does (with
        ``dry_run``, nothing is cached, recorded or aliased)."""
        from envcore import description

        archs = [arch] if isinstance(arch, str) else list(arch or [])
        aliases = [alias] if isinstance(alias, str) else list(alias or [])
        command = self._command(
            lambda group: group.resolve(
                steps=list(steps), archs=archs, aliases=aliases, force=force, dry_run=dry_run, as_json=True
            )
        )
        data = self._run(command, timeout)
        return {
            step: {
                a: (
                    description.from_dict(v["env"], req_id=v["req_id"], full_id=v["full_id"], arch=a),
                    bool(v["newly_resolved"]),
                )
                for a, v in per_arch.items()
            }
            for step, per_arch in data.items()
        }

    def show(self, *steps: str, timeout: float = 60) -> dict[str, dict[str, Any]]:
        """What each step (all by default) runs in, resolving nothing (``environment show``)."""
        command = self._command(lambda group: group.show(steps=list(steps), as_json=True))
        result: dict[str, dict[str, Any]] = self._run(command, timeout)
        return result
