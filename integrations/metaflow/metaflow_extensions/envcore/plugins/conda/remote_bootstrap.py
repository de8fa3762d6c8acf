"""On a remote node, before the step: hydrate the step's environment from the store.

``python -m metaflow_extensions.envcore.plugins.conda.remote_bootstrap FLOW STEP --arch ARCH
(--req-id REQ --full-id FULL | --fetch NAME)``, run from the directory the code package was extracted in.
envcore and the plugins come from the code package (``.mf_meta/envcore_node``), loaded by module path
(``METAFLOW_ENVCORE_PLUGIN_MODULES``); configuration comes from the ``METAFLOW_*`` variables Metaflow passes
to remote tasks. Writes ``_env_id`` (JSON ``[req_id, full_id, arch]``), ``_env_path`` and the
``__conda_python`` link in the working directory. Ends through ``os._exit`` (py-rattler, see the toolchain
notes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

NODE_DIR = "envcore_node"
PYTHON_LINK = "__conda_python"


def _node_packages() -> Path:
    """``<code package>/.mf_meta/envcore_node``: this file is ``<code package>/.mf_code/metaflow_extensions/
    envcore/plugins/conda/remote_bootstrap.py``."""
    code_dir = Path(__file__).resolve().parents[4]
    return code_dir.parent / ".mf_meta" / NODE_DIR


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="remote_bootstrap")
    parser.add_argument("flow")
    parser.add_argument("step")
    parser.add_argument("--arch", required=True)
    parser.add_argument("--req-id")
    parser.add_argument("--full-id")
    parser.add_argument("--fetch", help="a named environment, looked up now (fetch_at_exec)")
    parser.add_argument(
        "--needs", type=json.loads, default={}, help="what it must have: JSON name -> constraint"
    )
    args = parser.parse_args(argv)
    if not args.fetch and not (args.req_id and args.full_id):
        parser.error("give --req-id and --full-id, or --fetch")
    return args


def bootstrap(args: argparse.Namespace, workdir: Path) -> Path:
    packages = _node_packages()
    if packages.is_dir():
        sys.path.insert(0, str(packages))
    from metaflow_extensions.envcore.plugins.conda.settings import build_config
    from metaflow_extensions.envcore.plugins.conda.substitution import substitute

    from envcore.environments import Environments
    from envcore.errors import EnvcoreError
    from envcore.plugins import build_registry

    config = build_config([])
    # plugins are loaded when first needed: a reused node that has the environment loads none
    envs = Environments(
        lambda: build_registry(config), progress=lambda m: print(f"    {m}", flush=True), config=config
    )
    if args.fetch:
        ref = substitute(args.fetch, {})
        env = envs.find(ref, args.arch)
        print(f"    Environment '{ref}' is {env.req_id}:{env.full_id}", flush=True)
        if args.needs:
            from metaflow_extensions.envcore.plugins.conda.requirements import fetched_lacks, unsatisfied

            lacking = unsatisfied(env, args.needs)
            if lacking:
                raise EnvcoreError(fetched_lacks(ref, args.step, lacking))
    else:
        env = envs.find(f"{args.req_id}:{args.full_id}", args.arch)
    prefix = envs.prefix_for(env, None)
    started = time.monotonic()
    print("    Setting up the environment ...", end="", flush=True)
    created = envs.create(env, prefix)
    print(f" done in {time.monotonic() - started:.1f} s." if created else " already there.", flush=True)
    (workdir / "_env_id").write_text(json.dumps([env.req_id, env.full_id, env.arch]))
    (workdir / "_env_path").write_text(str(prefix))
    link = workdir / PYTHON_LINK
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(prefix / "bin" / "python")
    return prefix


def main() -> None:
    code = 0
    try:
        args = _parse(sys.argv[1:])
        bootstrap(args, Path.cwd())
    except SystemExit as exc:
        code = int(exc.code or 0)
    except BaseException as exc:
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        if os.environ.get("METAFLOW_DEBUG_CONDA", "").lower() not in ("", "0", "false"):
            traceback.print_exc()
        print(f"\nCannot bootstrap the environment of this step: {message}", file=sys.stderr, flush=True)
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
