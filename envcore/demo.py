"""The main job, end to end on the embedded default (local store, rattler + uv), on a fresh machine.

``python -m envcore.demo [--workdir DIR]`` builds a small real conda channel and wheel index (the test
universe), resolves a mixed conda + PyPI environment for this machine and for osx-arm64 (co-resolved),
caches it in a local store, then — with the channel and index moved out of reach and an empty package
cache, as on another machine — hydrates it from the store alone and runs python in it. Every step goes
through the installed ``envcore`` command, as a user would run it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ENVIRONMENT_YML = """\
name: demo
channels:
  - {channel}
dependencies:
  - python={python}
  - fx-app
  - fx-ffmpeg
  - pip:
    - fx-extras
"""
CHECK = "import fx_app, fx_extras, sys; print(f'python {sys.version.split()[0]}: fx_app', fx_app.__version__, 'fx_extras', fx_extras.__version__)"


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.monotonic()


def _done(started: float) -> None:
    print(f"   ({time.monotonic() - started:.2f} s)", flush=True)


def _run(args: list[str], env: dict[str, str]) -> str:
    print("$ " + " ".join(a if " " not in a else repr(a) for a in args), flush=True)
    done = subprocess.run(args, env=env, text=True, capture_output=True)
    sys.stderr.write(done.stderr)
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        raise SystemExit(f"demo: `{' '.join(args[:2])}` failed with exit code {done.returncode}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    from envcore.testing.channel import build_universe

    parser = argparse.ArgumentParser(prog="python -m envcore.demo", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(".demo"), help="where to put everything (wiped)")
    args = parser.parse_args(argv)
    work = args.workdir.absolute()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    envcore = str(Path(sys.executable).with_name("envcore"))
    total = time.monotonic()

    started = _step("Build a real conda channel and wheel index on this machine (no internet needed)")
    universe = build_universe(work / "universe")
    print(
        f"   channel {universe.channel_url}\n   index   {universe.simple_url}\n   python  {universe.python_version}"
    )
    _done(started)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("METAFLOW_", "CONDA_", "PIP_", "UV_"))}
    env.update(
        METAFLOW_HOME=str(work / "metaflowconfig"),
        METAFLOW_DEFAULT_DATASTORE="local",
        METAFLOW_CONDA_LOCALROOT=str(work / "store"),
        METAFLOW_CONDA_CHANNELS=universe.channel_url,
        METAFLOW_CONDA_DEFAULT_PYPI_SOURCE=universe.simple_url,
        METAFLOW_ENVCORE_CACHE_DIR=str(work / "machine-a"),
        PIP_CONFIG_FILE=os.devnull,  # this machine's pip indexes are not part of the demo
    )
    spec = work / "environment.yml"
    spec.write_text(
        ENVIRONMENT_YML.format(
            channel=universe.channel_url, python=".".join(universe.python_version.split(".")[:2])
        )
    )

    started = _step("Plugins and configuration in use")
    _run([envcore, "plugins"], env)
    _done(started)

    started = _step(
        "Machine A: resolve a mixed environment for this machine and osx-arm64, cache it in the store"
    )
    print(spec.read_text())
    from envcore.resolve import local_arch

    out = _run([envcore, "resolve", "-f", str(spec), "--arch", local_arch(), "--arch", "osx-arm64"], env)
    env_id = next(line.split()[-1] for line in out.splitlines() if " full hash " in line)
    _done(started)

    started = _step("Machine B: no channel, no index, empty caches — hydrate from the store alone")
    hidden = universe.root.with_name("universe-unreachable")
    universe.root.rename(hidden)
    env["METAFLOW_ENVCORE_CACHE_DIR"] = str(work / "machine-b")
    out = _run([envcore, "create", env_id, "--name", "demo"], env)
    prefix = work / "machine-b" / "envs" / "demo"
    _done(started)

    started = _step("Run python inside the hydrated environment")
    _run([str(prefix / "bin" / "python"), "-c", CHECK], env)
    _run([str(prefix / "bin" / "fx-ffmpeg"), "--version"], env)
    _done(started)

    started = _step("Create again: already complete, nothing to do")
    _run([envcore, "create", env_id, "--name", "demo"], env)
    _done(started)
    hidden.rename(universe.root)
    print(f"\nDemo finished in {time.monotonic() - total:.2f} s; everything is in {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
